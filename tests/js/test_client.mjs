// SPDX-License-Identifier: MIT
// ringcast.js in Node 20 with Debian's `ws`, against the built engine:
// subscribe and publish; reconnect after the engine is killed and started
// again on the same port, with every channel resubscribed; recovery of
// what a dropped connection missed on a history channel, each message
// once and in order, and a recovery refused with 400 reported as
// recovered:false; backoff within its bounds; a token refreshed before
// it expires (a client without getToken is closed with 4001 at the same
// expiry, the refreshed one stays); typed errors for 4001, 4003, 1008,
// a refused token and a refused channel; inbox pushes acked from one
// device and gone for the other; an engine frozen with SIGSTOP found dead
// by the heartbeat, and the connection made again once it thaws.
// Usage: node test_client.mjs ENGINE_PATH   (NODE_PATH must find ws)
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { Client, RingcastError, backoff } from '../../clients/js/ringcast.js';
import { Engine, engines, expect, same, until } from './engine.mjs';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const SECRET = 'js-secret-of-at-least-32-bytes-long';
let failed = 0;

function once(client, event, ms = 20000) {
	return new Promise((resolve, reject) => {
		const t = setTimeout(() => reject(new Error('no ' + event +
			' event in ' + ms + ' ms')), ms);
		const off = client.on(event, (...a) => {
			clearTimeout(t);
			off();
			resolve(a);
		});
	});
}

function jwt(claims) {
	const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
	const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims);
	return head + '.' + createHmac('sha256', SECRET).update(head)
		.digest('base64url');
}

function client(url, opts = {}) {
	return new Client(url, { WebSocket, minDelay: 50, maxDelay: 500,
				 heartbeat: 0, timeout: 5000, ...opts });
}

// ---- the checks ------------------------------------------------------

async function checkPubSub() {
	const eng = await new Engine(process.argv[2], []).start();
	const c = client(eng.ws);
	try {
		await c.connect();
		const got = [];
		await c.subscribe('news', (d) => got.push(d));
		for (let i = 0; i < 5; i++)
			await eng.publish('news', { i });
		await until('5 pushes', () => got.length === 5);
		expect(JSON.stringify(got.map((d) => d.i)) === '[0,1,2,3,4]',
		       'order: ' + JSON.stringify(got));
		let err = null;
		await c.publish('news', 1).catch((e) => { err = e; });
		expect(err instanceof RingcastError && err.kind === 'not_allowed' &&
		       err.code === 403, 'publish without --client-publish: ' + err);
	} finally {
		c.close();
		await eng.stop();
	}
}

async function checkReconnect() {
	const eng = await new Engine(process.argv[2], []).start();
	const c = client(eng.ws);
	const delays = [];
	c.on('reconnecting', (e) => delays.push(e));
	try {
		await c.connect();
		const got = { a: [], b: [] };
		await c.subscribe('a', (d) => got.a.push(d));
		await c.subscribe('b', (d) => got.b.push(d));
		await eng.kill();
		await once(c, 'close');
		// down for a while: several attempts, each within its bound
		await until('3 failed attempts', () => delays.length >= 4);
		// listen first: the client may open before start() returns
		const opened = once(c, 'open');
		await eng.start();
		await opened;
		// opened() sent the subscribes: publish once they are answered
		await c.channels.get('a').confirmed;
		await c.channels.get('b').confirmed;
		await eng.publish('a', 'after-a');
		await eng.publish('b', 'after-b');
		await until('both pushes', () => got.a.length && got.b.length);
		expect(got.a[0] === 'after-a' && got.b[0] === 'after-b',
		       'after restart: ' + JSON.stringify(got));
		for (const d of delays) {
			const cap = Math.min(500, 50 * 2 ** (d.attempt - 1));
			expect(d.delay >= 0 && d.delay < cap,
			       'attempt ' + d.attempt + ' waited ' + d.delay +
			       ', bound ' + cap);
		}
	} finally {
		c.close();
		await eng.stop();
	}
}

function checkBackoff() {
	for (let n = 0; n < 40; n++) {
		const cap = Math.min(30000, 500 * 2 ** n);
		expect(backoff(n, 500, 30000, () => 0) === 0, 'low end');
		const hi = backoff(n, 500, 30000, () => 0.999999);
		expect(hi < cap && hi >= cap * 0.99, 'high end ' + hi + ' ' + cap);
	}
	// full jitter: draws spread over the whole range
	const draws = Array.from({ length: 2000 }, () => backoff(3, 100, 1e6));
	expect(Math.min(...draws) < 80 && Math.max(...draws) > 720,
	       'jitter range ' + Math.min(...draws) + '..' + Math.max(...draws));
}

// An engine keeping the history of chat:*, and a client connected to it
// that notes its recovered events.
async function withHistory() {
	const eng = await new Engine(process.argv[2], ['--namespace', 'chat:history=100,ttl=1m'])
		.start();
	const c = client(eng.ws);
	const recovered = [];
	c.on('recovered', (e) => recovered.push(e));
	await c.connect();
	return [eng, c, recovered];
}

async function checkRecovery() {
	const [eng, c, recovered] = await withHistory();
	try {
		const got = [];
		await c.subscribe('chat:r', (d, m) => got.push([d, m.offset]));
		for (let i = 1; i <= 3; i++)
			await eng.publish('chat:r', i);
		await until('3 pushes', () => got.length === 3);
		c.ws._socket.destroy();	// the network drops, not the server
		for (let i = 4; i <= 8; i++)
			await eng.publish('chat:r', i);
		await until('8 pushes', () => got.length >= 8);
		await until('a recovery', () => recovered.length);
		expect(JSON.stringify(got.map((g) => g[0])) ===
		       '[1,2,3,4,5,6,7,8]', 'recovered: ' + JSON.stringify(got));
		expect(recovered[0].recovered === true, 'recovered flag ' +
		       JSON.stringify(recovered));
		await eng.publish('chat:r', 9);
		await until('9 pushes', () => got.length >= 9);
		expect(got.length === 9 && got[8][0] === 9, 'then live: ' +
		       JSON.stringify(got));
		// history from an offset: the 2 after the 3rd message
		const page = await c.history('chat:r', 2, got[2][1]);
		expect(JSON.stringify(page.messages.map((m) => m.data)) ===
		       '[4,5]' && !page.more, 'history from an offset: ' +
		       JSON.stringify(page));
	} finally {
		c.close();
		await eng.stop();
	}
}

// A recovery the server refuses with 400 (here an offset the channel
// never reached, as after a Redis restart that lost its last writes): the
// channel is subscribed afresh, and the application is told that nothing
// was recovered, as for a reply that says recovered:false.
async function checkRecoveryRefused() {
	const [eng, c, recovered] = await withHistory();
	try {
		await eng.publish('chat:f', 1);
		const h = await c.history('chat:f');
		const got = [];
		await c.subscribe('chat:f', (d) => got.push(d),
				  { epoch: h.epoch, offset: h.offset + 5 });
		same(recovered, [{ channel: 'chat:f', recovered: false }],
		     'recovered events once subscribed');
		await eng.publish('chat:f', 2);
		await until('a live push', () => got.length);
		same(got, [2], 'pushes after the refused recovery');
	} finally {
		c.close();
		await eng.stop();
	}
}

async function checkToken() {
	const eng = await new Engine(process.argv[2], ['--auth', 'required', '--jwt-secret',
				      SECRET, '--jwt-leeway', '0']).start();
	const exp = Math.floor(Date.now() / 1000) + 3;
	let fetched = 0;
	const a = client(eng.ws, {
		token: jwt({ sub: 'ann', exp }), refreshBefore: 2000,
		getToken: () => {
			fetched++;
			return jwt({ sub: 'ann', exp: exp + 600 });
		},
	});
	const b = client(eng.ws, { token: jwt({ sub: 'bob', exp }) });
	const errors = [];
	b.on('error', (e) => errors.push(e));
	try {
		await a.connect();
		await b.connect();
		const [closed] = await once(b, 'close', 15000);
		expect(closed.code === 4001, 'b closed with ' + closed.code);
		await until('b gives up', () => b.state === 'closed');
		expect(errors.some((e) => e.kind === 'auth' && e.code === 4001),
		       'b errors: ' + errors.map(String));
		expect(fetched === 1, 'getToken called ' + fetched + ' times');
		expect(a.state === 'open', 'a is ' + a.state +
		       ' though it refreshed');
		await a.request('heartbeat');	// and still answers
		// a token the engine refuses at the upgrade
		const bad = client(eng.ws, { token: 'x.y.z' });
		const berr = [];
		bad.on('error', (e) => berr.push(e));
		let rejected = null;
		await bad.connect().catch((e) => { rejected = e; });
		expect(rejected instanceof RingcastError && rejected.kind === 'auth',
		       'bad token: ' + rejected);
		// a channel the claim does not cover
		const narrow = client(eng.ws, { token: jwt({ sub: 'cy',
			exp: exp + 600, channels: ['mine'] }) });
		await narrow.connect();
		let refused = null;
		await narrow.subscribe('theirs', () => {}).catch((e) => {
			refused = e;
		});
		expect(refused && refused.kind === 'not_allowed' &&
		       refused.code === 403, 'refused channel: ' + refused);
		expect(!narrow.channels.has('theirs'), 'refused channel kept');
		narrow.close();
	} finally {
		a.close();
		b.close();
		await eng.stop();
	}
}

async function checkKicked() {
	const eng = await new Engine(process.argv[2], ['--auth', 'optional', '--jwt-secret',
				      SECRET]).start();
	const c = client(eng.ws, { token: jwt({ sub: 'kim',
		exp: Math.floor(Date.now() / 1000) + 600 }) });
	const errors = [];
	c.on('error', (e) => errors.push(e));
	try {
		await c.connect();
		await eng.api('POST', '/users/kim/disconnect', '');
		const [closed] = await once(c, 'close');
		expect(closed.code === 4003, 'closed with ' + closed.code);
		expect(errors.length === 1 && errors[0].kind === 'kicked',
		       'errors: ' + errors.map(String));
		expect(c.state === 'closed', 'kicked client is ' + c.state);
	} finally {
		c.close();
		await eng.stop();
	}
}

async function checkSlow() {
	const eng = await new Engine(process.argv[2], ['--max-pending-bytes', '64K']).start();
	const c = client(eng.ws);
	const errors = [];
	c.on('error', (e) => errors.push(e));
	try {
		await c.connect();
		let n = 0;
		await c.subscribe('flood', () => n++);
		c.ws._socket.pause();	// stops reading: the engine's queue grows
		const big = 'x'.repeat(60000);
		let slow = 0;
		for (let i = 0; i < 400 && !slow; i++) {
			await eng.publish('flood', big);
			slow = (await eng.stats()).total.slow_closed;
		}
		expect(slow === 1, 'never a slow consumer');
		c.ws._socket.resume();
		const [closed] = await once(c, 'close');
		expect(closed.code === 1008, 'closed with ' + closed.code);
		expect(errors.some((e) => e.kind === 'slow_consumer'),
		       'errors: ' + errors.map(String));
		await once(c, 'open');	// and comes back
		expect(c.state === 'open', 'state ' + c.state);
	} finally {
		c.close();
		await eng.stop();
	}
}

async function checkInbox() {
	const eng = await new Engine(process.argv[2], ['--auth', 'required',
						       '--jwt-secret', SECRET]).start();
	const token = jwt({ sub: 'ida', exp: Math.floor(Date.now() / 1000) + 600 });
	const a = client(eng.ws, { token });
	const b = client(eng.ws, { token });	// a second device
	const got = [];
	a.on('user', (d, m) => got.push(m));
	try {
		await a.connect();
		await b.connect();
		await eng.api('POST', '/users/ida/push?persist=1', '"kept 1"');
		await eng.api('POST', '/users/ida/push?persist=1', '"kept 2"');
		await until('two kept pushes', () => got.length === 2);
		expect(got.every((m) => typeof m.id === 'string'), 'ids: ' +
		       JSON.stringify(got));
		let box = await b.inbox();
		expect(box.unread === 2, 'unread before ack: ' + JSON.stringify(box));
		const r = await a.ack(got.map((m) => m.id));
		expect(r.acked === 2 && r.unread === 0, 'ack: ' + JSON.stringify(r));
		box = await b.inbox();
		expect(box.unread === 0, 'unread after ack: ' + JSON.stringify(box));
		// a reconnect replays nothing acked, and a replay of the same id
		// (another connection's copy) is not handed out twice
		a.ws._socket.destroy();
		await once(a, 'open');
		await eng.api('POST', '/users/ida/push?persist=1', '"kept 3"');
		await until('the third', () => got.length === 3);
		expect(got[2].data === 'kept 3', 'after reconnect: ' +
		       JSON.stringify(got));
		let err = null;
		await a.ack('nope-1').catch((e) => { err = e; });
		expect(err && err.kind === 'request' && err.code === 400,
		       'ack of an unknown id: ' + err);
	} finally {
		a.close();
		b.close();
		await eng.stop();
	}
}

async function checkHeartbeat() {
	const eng = await new Engine(process.argv[2], []).start();
	const c = client(eng.ws, { heartbeat: 200, timeout: 400 });
	const timeouts = [];
	c.on('timeout', (cmd) => timeouts.push(cmd));
	try {
		await c.connect();
		const got = [];
		await c.subscribe('hb', (d) => got.push(d));
		eng.proc.kill('SIGSTOP');	// frozen: the TCP connection stays up
		try {
			await once(c, 'close', 10000);
		} finally {
			eng.proc.kill('SIGCONT');
		}
		expect(timeouts.includes('heartbeat'), 'timeouts: ' + timeouts);
		await once(c, 'open');
		await c.channels.get('hb').confirmed;
		await eng.publish('hb', 'thawed');
		await until('a push after the thaw', () => got.length === 1);
	} finally {
		c.close();
		await eng.stop();
	}
}

const checks = { pubsub: checkPubSub, backoff: checkBackoff,
		 reconnect: checkReconnect, recovery: checkRecovery,
		 'recovery-refused': checkRecoveryRefused,
		 token: checkToken, kicked: checkKicked, slow: checkSlow,
		 inbox: checkInbox, heartbeat: checkHeartbeat };

for (const [name, fn] of Object.entries(checks)) {
	const t0 = Date.now();
	let timer;
	try {
		await Promise.race([fn(), new Promise((_, reject) => {
			timer = setTimeout(() => reject(new Error('timed out')), 60000);
		})]);
		clearTimeout(timer);
		console.log('ok   ' + name + ' (' + (Date.now() - t0) / 1000 + 's)');
	} catch (e) {
		clearTimeout(timer);
		failed++;
		console.log('FAIL ' + name + ': ' + (e.stack || e));
		for (const eng of engines)
			console.log('---- engine ----\n' + eng.log.slice(-4000));
	}
	for (const eng of [...engines])
		await eng.kill();
}
console.log(failed ? 'client_js: ' + failed + ' FAILED' :
	    'client_js: all passed');
process.exit(failed ? 1 : 0);
