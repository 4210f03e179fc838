// SPDX-License-Identifier: MIT
// The official Pusher clients in Chromium against the engine's Pusher
// endpoint (docs/PUSHER.md), as a web app would use them: the page and
// its auth endpoint come from a small site on another loopback port
// (its own origin), which serves pusher-js's browser build and Laravel
// Echo's, and signs channel auth with the `pusher` server SDK's
// authorizeChannel(); the SDK's trigger() publishes through the engine's
// signed /apps/{id}/events, as a Laravel app's PusherBroadcaster does.
// - pusher-js: pusher-js 8 (dist/web) in two pages connects to
//   /app/{key}, gets a socket_id, subscribes to a public, a private and a
//   presence channel (auth by POST /pusher/auth), receives events the SDK
//   publishes, sees member_added and member_removed (the other page
//   closed), and a client event from one page reaches the other with the
//   sender's user_id and not the sender.
// - echo: Laravel Echo 2 with its Pusher connector: channel().listen()
//   with Laravel's event names (App\Events\X without the leading dot,
//   broadcastAs names with it), private() through /broadcasting/auth
//   with a CSRF header, a private channel the endpoint refuses (403 to
//   .error()), join().here/joining/leaving, whisper() and
//   listenForWhisper(), and toOthers() (the SDK's socket_id exclusion).
// Every page records its events in a queue and the test takes them one
// kind at a time, waiting with a deadline, so nothing is missed while
// the test is busy. With RINGCAST_TEST_TLS=1 (suite tls) the engine
// speaks TLS and the pages and the SDK use wss:// and https://.
// Usage: node test_pusher_browser.mjs ENGINE_PATH
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Agent } from 'node:https';
import { createRequire } from 'node:module';
import { Engine, expect, runChecks, same } from '../js/engine.mjs';
import { launchChromium } from './chromium.mjs';

const require = createRequire(import.meta.url);
const PusherServer = require('pusher');
const exe = process.argv[2];
const APP = { id: '4242', key: 'browser-key-0123456789',
	      secret: 'browser-secret-abcdef0123456789' };
const CSRF = 'csrf-token-for-echo';
const WAIT_MS = 20000;

// The clients' browser builds, as a site would serve them; a missing
// one fails the test with what to run.
function npmFile(path) {
	try {
		return readFileSync(new URL('./node_modules/' + path,
					    import.meta.url));
	} catch (e) {
		console.log('FAIL tests/browser/node_modules/' + path + ': ' +
			    e.code + ' (run tests/install-deps)');
		process.exit(1);
	}
}
const SCRIPTS = {
	'/pusher.min.js': npmFile('pusher-js/dist/web/pusher.min.js'),
	'/echo.iife.js': npmFile('laravel-echo/dist/echo.iife.js'),
};

// note() queues an event under a kind; take() hands out the oldest event
// of a kind, or {timeout: kind, have: [...]} after @ms. One take() at a
// time per page (the test awaits each).
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>ringcast pusher test</title>
<meta name="csrf-token" content="${CSRF}">
<link rel="icon" href="data:,">
<script src="/pusher.min.js"></script>
<script src="/echo.iife.js"></script>
<script>
"use strict";
const queue = [];
let wake = null;
let pusher = null, echo = null;

function note(kind, data) {
	queue.push({ kind, data: data === undefined ? null : data });
	if (wake)
		wake();
}

async function take(kind, ms) {
	const deadline = Date.now() + ms;
	for (;;) {
		const i = queue.findIndex((e) => e.kind === kind);
		if (i >= 0)
			return { data: queue.splice(i, 1)[0].data };
		const left = deadline - Date.now();
		if (left <= 0)
			return { timeout: kind, have: queue.map((e) => e.kind) };
		await new Promise((r) => {
			wake = r;
			setTimeout(r, left);
		});
		wake = null;
	}
}

const has = (kind) => queue.some((e) => e.kind === kind);

function clientOpts(cfg) {
	return { cluster: "ringcast", wsHost: cfg.host, wsPort: cfg.port,
		 wssPort: cfg.port, forceTLS: cfg.tls,
		 enabledTransports: ["ws", "wss"], disableStats: true };
}

function watchConnection(p) {
	p.connection.bind("state_change", (s) => note("state:" + s.current));
	p.connection.bind("error", (e) => note("conn-error", JSON.stringify(e)));
}

function startPusher(cfg) {
	pusher = new Pusher(cfg.key, Object.assign(clientOpts(cfg), {
		channelAuthorization: { endpoint: "/pusher/auth",
					transport: "ajax",
					params: { user: cfg.user } },
	}));
	watchConnection(pusher);
}

// The members as plain data: pusher-js hands a Members object.
const members = (m) => ({ count: m.count, me: m.me, members: m.members });

function subscribe(name, events) {
	const ch = pusher.subscribe(name);
	ch.bind("pusher:subscription_succeeded", (d) =>
		note("ok:" + name, name.startsWith("presence-") ? members(d) : true));
	ch.bind("pusher:subscription_error", (e) => note("err:" + name, e));
	ch.bind("pusher:member_added", (m) => note("added:" + name, m));
	ch.bind("pusher:member_removed", (m) => note("removed:" + name, m));
	for (const ev of events)
		ch.bind(ev, (data, meta) => note(name + ":" + ev, { data, meta }));
}

function startEcho(cfg) {
	echo = new Echo.default(Object.assign(clientOpts(cfg), {
		broadcaster: "pusher", key: cfg.key, Pusher,
		authEndpoint: "/broadcasting/auth",
		auth: { headers: { "X-User": cfg.user } },
	}));
	watchConnection(echo.connector.pusher);
}
</script></head><body>ringcast</body></html>`;

const cap = (s) => s[0].toUpperCase() + s.slice(1);

// The page's site: the page, the two scripts, and two auth endpoints:
// pusher-js's (the user in a form field) and Laravel's (the user as the
// session would give it, here a header, and the CSRF token Echo sends).
class Site {
	constructor(sdk) {
		this.sdk = sdk;
		this.auths = 0;
	}

	async start() {
		this.server = createServer((req, res) => this.serve(req, res));
		await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
		this.url = 'http://127.0.0.1:' + this.server.address().port + '/';
		return this;
	}

	serve(req, res) {
		if (req.method === 'GET') {
			const js = SCRIPTS[req.url];
			res.writeHead(200, { 'Content-Type': js ?
				'text/javascript' : 'text/html; charset=utf-8' });
			return res.end(js ?? PAGE);
		}
		let body = '';
		req.setEncoding('utf8');
		req.on('data', (d) => { body += d; });
		req.on('end', () => this.authorize(req, res,
						   new URLSearchParams(body)));
	}

	// Laravel's routes/channels.php in small: private-user.{id} is its
	// owner's only; presence members carry {id, name}.
	authorize(req, res, form) {
		const laravel = req.url === '/broadcasting/auth';
		const user = laravel ? req.headers['x-user'] : form.get('user');
		const sid = form.get('socket_id'), name = form.get('channel_name');
		const deny = (code) => {
			res.writeHead(code);
			res.end();
		};
		this.auths++;
		if (!['/pusher/auth', '/broadcasting/auth'].includes(req.url))
			return deny(404);
		if (laravel && req.headers['x-csrf-token'] !== CSRF)
			return deny(419);
		if (name.startsWith('private-user.') &&
		    name !== 'private-user.' + user)
			return deny(403);
		const member = name.startsWith('presence-') ?
			{ user_id: user, user_info: { id: user, name: cap(user) } } :
			undefined;
		res.writeHead(200, { 'Content-Type': 'application/json' });
		res.end(JSON.stringify(this.sdk.authorizeChannel(sid, name,
								 member)));
	}

	close() {
		this.server.close();
	}
}

function sdkFor(eng) {
	return new PusherServer({
		appId: APP.id, key: APP.key, secret: APP.secret,
		host: '127.0.0.1', port: String(eng.port), useTLS: !!eng.ca,
		agent: eng.ca ? new Agent({ ca: eng.ca }) : undefined,
	});
}

async function openPage(browser, site, eng, user, start) {
	// on the tls axis the engine's certificate is the test's own
	const page = await browser.newPage({ ignoreHTTPSErrors: true });
	page.log = [];
	page.on('console', (m) => page.log.push(m.text()));
	page.on('pageerror', (e) => page.log.push('pageerror: ' + e));
	await page.goto(site.url);
	const cfg = { key: APP.key, host: '127.0.0.1', port: eng.port,
		      tls: !!eng.ca, user };
	await page.evaluate(([fn, c]) => window[fn](c), [start, cfg]);
	return page;
}

// The oldest event of @kind on @page, waited for.
async function take(page, kind) {
	const r = await page.evaluate(([k, ms]) => take(k, ms), [kind, WAIT_MS]);
	expect(!r.timeout, 'no ' + kind + ' (queued: ' +
	       JSON.stringify(r.have) + '; console: ' +
	       JSON.stringify(page.log) + ')');
	return r.data;
}

const queued = (page, kind) => page.evaluate((k) => has(k), kind);

const socketId = (page) => page.evaluate(() =>
	(pusher ?? echo.connector.pusher).connection.socket_id);

async function trigger(sdk, channels, event, data, params) {
	const r = await sdk.trigger(channels, event, data, params);
	expect(r.status === 200, 'trigger ' + event + ': ' + r.status);
}

async function checkPusherJs(browser, site, eng, sdk) {
	const names = ['news', 'private-orders', 'presence-room'];
	const ann = await openPage(browser, site, eng, 'ann', 'startPusher');
	await take(ann, 'state:connected');
	expect(/^\d+\.\d+$/.test(await socketId(ann)), 'socket_id ' +
	       await socketId(ann));
	for (const n of names)
		await ann.evaluate(([name, evs]) => subscribe(name, evs),
				   [n, ['update', 'client-typing']]);
	for (const n of names.slice(0, 2))
		same(await take(ann, 'ok:' + n), true, 'subscribed to ' + n);
	let room = await take(ann, 'ok:presence-room');
	same([room.count, room.me], [1, { id: 'ann', info:
		{ id: 'ann', name: 'Ann' } }], 'presence-room for ann');

	const bob = await openPage(browser, site, eng, 'bob', 'startPusher');
	for (const n of names.slice(1))
		await bob.evaluate(([name, evs]) => subscribe(name, evs),
				   [n, ['update', 'client-typing']]);
	await take(bob, 'ok:private-orders');
	room = await take(bob, 'ok:presence-room');
	same([room.count, Object.keys(room.members).sort()], [2, ['ann', 'bob']],
	     'presence-room for bob');
	same(await take(ann, 'added:presence-room'),
	     { id: 'bob', info: { id: 'bob', name: 'Bob' } }, 'member_added');

	// one SDK trigger to the three channels: ann on each, bob on two
	const payload = { n: 1, text: 'caf\u00e9 "quoted" \\ \n' };
	await trigger(sdk, names, 'update', payload);
	for (const n of names)
		same((await take(ann, n + ':update')).data, payload, 'ann ' + n);
	for (const n of names.slice(1))
		same((await take(bob, n + ':update')).data, payload, 'bob ' + n);

	// a client event from bob: ann gets it, with bob's user_id on the
	// presence channel; bob does not (the next event on the channel
	// comes first)
	for (const n of names.slice(1)) {
		await bob.evaluate(([name]) => pusher.channel(name)
			.trigger('client-typing', { who: 'bob' }), [n]);
		const got = await take(ann, n + ':client-typing');
		same(got.data, { who: 'bob' }, 'client event on ' + n);
		if (n.startsWith('presence-'))
			same(got.meta.user_id, 'bob', 'user_id of the client event');
		await trigger(sdk, n, 'update', { after: n });
		await take(bob, n + ':update');
		expect(!await queued(bob, n + ':client-typing'),
		       'the sender got its own client event on ' + n);
	}

	// bob's tab closes: his one connection goes, so member_removed
	await bob.close();
	same(await take(ann, 'removed:presence-room'),
	     { id: 'bob', info: { id: 'bob', name: 'Bob' } }, 'member_removed');
	await ann.close();
}

// Laravel Echo 2: the calls a Laravel front end makes, and the triggers
// its PusherBroadcaster makes (event names App\Events\X, payloads with
// "socket", socket_id for toOthers()).
async function checkEcho(browser, site, eng, sdk) {
	const ann = await openPage(browser, site, eng, 'ann', 'startEcho');
	await ann.evaluate(() => {
		echo.channel('orders')
			.listen('OrderShipped', (e) => note('shipped', e))
			.listen('.order.custom', (e) => note('custom', e));
		echo.private('user.ann')
			.subscribed(() => note('ok:user.ann'))
			.listen('InvoicePaid', (e) => note('paid', e));
		echo.private('user.bob')
			.error((e) => note('err:user.bob', e));
		echo.join('chat.1')
			.here((users) => note('here', users))
			.joining((u) => note('joining', u))
			.leaving((u) => note('leaving', u))
			.listen('MessagePosted', (e) => note('posted', e))
			.listenForWhisper('typing', (e) => note('whisper', e));
	});
	await take(ann, 'ok:user.ann');
	same(await take(ann, 'here'), [{ id: 'ann', name: 'Ann' }], 'here');
	const err = await take(ann, 'err:user.bob');
	same([err.type, err.status], ['AuthError', 403],
	     "another user's private channel");

	const bob = await openPage(browser, site, eng, 'bob', 'startEcho');
	await bob.evaluate(() => {
		echo.join('chat.1')
			.here((users) => note('here', users))
			.listen('MessagePosted', (e) => note('posted', e))
			.listenForWhisper('typing', (e) => note('whisper', e));
	});
	const here = await take(bob, 'here');
	same(here.map((u) => u.id).sort(), ['ann', 'bob'], "bob's here");
	same(await take(ann, 'joining'), { id: 'bob', name: 'Bob' }, 'joining');

	const order = { order: { id: 7, total: '12.50' }, socket: null };
	await trigger(sdk, 'orders', 'App\\Events\\OrderShipped', order);
	same(await take(ann, 'shipped'), order, 'OrderShipped');
	await trigger(sdk, 'orders', 'order.custom', { id: 8, socket: null });
	same(await take(ann, 'custom'), { id: 8, socket: null }, 'broadcastAs');
	await trigger(sdk, 'private-user.ann', 'App\\Events\\InvoicePaid',
		      { amount: 3, socket: null });
	same(await take(ann, 'paid'), { amount: 3, socket: null },
	     'InvoicePaid');

	// bob whispers; ann hears it, bob does not
	await bob.evaluate(() => echo.join('chat.1')
		.whisper('typing', { name: 'Bob' }));
	same(await take(ann, 'whisper'), { name: 'Bob' }, 'whisper');

	// broadcast(...)->toOthers() from bob's request: X-Socket-ID is bob's
	const bobSid = await bob.evaluate(() => echo.socketId());
	expect(/^\d+\.\d+$/.test(bobSid), 'Echo socketId ' + bobSid);
	const msg = { text: 'hi', socket: bobSid };
	await trigger(sdk, 'presence-chat.1', 'App\\Events\\MessagePosted', msg,
		      { socket_id: bobSid });
	same(await take(ann, 'posted'), msg, 'toOthers to ann');
	const all = { text: 'all', socket: null };
	await trigger(sdk, 'presence-chat.1', 'App\\Events\\MessagePosted', all);
	same(await take(bob, 'posted'), all, 'the next message to bob');
	expect(!await queued(bob, 'posted') && !await queued(bob, 'whisper'),
	       'bob got his own whisper or the toOthers message');
	same(await take(ann, 'posted'), all, 'the next message to ann');

	await bob.evaluate(() => echo.leave('chat.1'));
	same(await take(ann, 'leaving'), { id: 'bob', name: 'Bob' }, 'leaving');
	await bob.close();
	await ann.close();
}

// Each check on an engine of its own, with the app's client events on,
// and a site whose auth endpoint signs with that engine's SDK.
const onEngine = (fn) => async (browser) => {
	const eng = await new Engine(exe, [
		'--pusher-app', APP.id + ':' + APP.key + ':' + APP.secret,
		'--pusher-client-events', APP.id]).start();
	const sdk = sdkFor(eng);
	const site = await new Site(sdk).start();
	try {
		await fn(browser, site, eng, sdk);
	} finally {
		site.close();
	}
};

const browser = await launchChromium();
const failed = await runChecks('pusher-browser', [
	['pusher-js', onEngine(checkPusherJs)],
	['laravel-echo', onEngine(checkEcho)]], browser);
await browser.close();
process.exit(failed ? 1 : 0);
