// SPDX-License-Identifier: MIT
// The pages the engine serves, in Debian's Chromium driven by
// playwright-core: two demo pages see each other in the room and chat;
// the engine is killed and started again on the same port, and both
// pages reconnect and chat on without a reload; a tab whose network was
// down while the engine restarted and the other tab talked catches up on
// what was said, each message once, and says some may be missing (its
// recovery was answered recovered:false); the status page, given
// the API key, shows the connection count rise as 200 more clients
// connect. At 320, 360 and 1440 px wide, nothing on any page the engine
// serves (the status page asking for its key and showing its figures,
// the demo's form, a room, a room with the longest names and a long
// message, and the other files as a browser shows them) may be cut off
// or scroll sideways: every element and line of text lies inside the
// viewport and inside any box that clips it; screenshots of the pages go
// to $RINGCAST_ARTIFACTS. Any console error or uncaught exception fails
// the test (while the engine is down, Chromium's own "WebSocket
// connection failed" is expected and allowed). Over TLS (--tls-cert with
// a CA the test makes, in contexts that take its certificate): two demo
// pages chat over https:// and wss://, and the status page shows the
// TLS figures and fits at each width.
// Usage: node test_pages.mjs ENGINE_PATH
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { Engine, KEY, engines, expect, makeCerts, same, until } from '../js/engine.mjs';
import { launchChromium } from './chromium.mjs';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const exe = process.argv[2];
const out = process.env.RINGCAST_ARTIFACTS || pathJoin(tmpdir(), 'ringcast-artifacts');
const WIDE = { width: 1440, height: 900 };
const VIEWPORTS = [{ width: 320, height: 640 }, { width: 360, height: 740 }, WIDE];
const errors = [];
const pages = new Set();	// open: closed after each check, passed or not
let restarting = false;
let failed = 0;

mkdirSync(out, { recursive: true });

async function open(browser, eng, path, viewport, name, headers = {}) {
	// ignoreHTTPSErrors: the TLS engine's certificate is the test's own
	const page = await browser.newPage({ viewport, extraHTTPHeaders: headers,
					     ignoreHTTPSErrors: true });
	pages.add(page);
	page.on('close', () => pages.delete(page));
	page.on('console', (m) => {
		if (m.type() !== 'error')
			return;
		if (restarting && /WebSocket connection to .* failed/.test(m.text()))
			return;
		errors.push(name + ': console: ' + m.text());
	});
	page.on('pageerror', (e) => errors.push(name + ': ' + e.message));
	page.navigations = 0;
	page.on('framenavigated', (f) => {
		if (f === page.mainFrame())
			page.navigations++;
	});
	// the engine has no /favicon.ico (its pages say so), and a 404 is
	// a console error; a browser asks for it beside the other files
	await page.route('**/favicon.ico', (r) => r.fulfill({ status: 204 }));
	await page.goto(eng.origin + path);
	return page;
}

async function join(page, name, room) {
	await page.fill('#name', name);
	await page.fill('#room', room);
	await page.click('#join');
	await page.waitForSelector('#state.open');
}

async function say(page, text) {
	await page.fill('#text', text);
	await page.click('#send');
}

const heard = (page, text) => page.waitForFunction((t) =>
	[...document.querySelectorAll('#messages li')].some((li) =>
		li.textContent.includes(t)), text, { timeout: 60000 });

const present = (page, who) => page.waitForFunction((w) =>
	[...document.querySelectorAll('#members li')].some((li) =>
		li.textContent === w), who, { timeout: 60000 });

// What does not fit across @page's viewport: the page wider than it
// (scrollWidth over clientWidth), an element or a line of text reaching
// past its left or right edge, or past the edge of a box that clips or
// scrolls it (so hidden, or shown only by scrolling sideways). Elements
// not rendered (display: none) have no box and are skipped.
const misfits = (page) => page.evaluate(() => {
	const root = document.documentElement;
	const vw = root.clientWidth;
	const bad = [];
	if (root.scrollWidth > vw)
		bad.push('scrollWidth ' + root.scrollWidth + ' > clientWidth ' + vw);
	const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
		(typeof el.className === 'string' && el.className ?
			'.' + el.className.split(' ').join('.') : '');
	// the horizontal bounds @el must keep inside
	const bounds = (el) => {
		let lo = 0, hi = vw, why = 'the viewport';
		for (let a = el.parentElement; a && a !== root; a = a.parentElement) {
			if (getComputedStyle(a).overflowX === 'visible')
				continue;
			const r = a.getBoundingClientRect();
			if (r.left > lo)
				[lo, why] = [r.left, name(a)];
			if (r.right < hi)
				[hi, why] = [r.right, name(a)];
		}
		return [lo, hi, why];
	};
	const out = (r, lo, hi) => r.width > 0 &&
		(r.left < lo - 0.5 || r.right > hi + 0.5);
	const check = (what, el, rects, inked = () => true) => {
		const [lo, hi, why] = bounds(el);
		const r = [...rects].find((r) => out(r, lo, hi));
		if (r && inked(lo, hi))
			bad.push(what + ' spans ' + Math.round(r.left) + '..' +
				 Math.round(r.right) + ', outside ' + why + ' ' +
				 Math.round(lo) + '..' + Math.round(hi));
	};
	// Whether a word of text node @t is out: a blank at the end of a
	// wrapped line may hang past the edge unseen.
	const inked = (t) => (lo, hi) => {
		const range = document.createRange();
		for (const m of t.data.matchAll(/\S+/g)) {
			range.setStart(t, m.index);
			range.setEnd(t, m.index + m[0].length);
			if ([...range.getClientRects()].some((r) => out(r, lo, hi)))
				return true;
		}
		return false;
	};
	for (const el of document.body.querySelectorAll('*')) {
		if (getComputedStyle(el).visibility !== 'hidden')
			check(name(el), el, [el.getBoundingClientRect()]);
	}
	const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	for (let t = walk.nextNode(); t; t = walk.nextNode()) {
		if (!t.textContent.trim() || !t.parentElement ||
		    getComputedStyle(t.parentElement).visibility === 'hidden')
			continue;
		const range = document.createRange();
		range.selectNodeContents(t);
		check('text "' + t.textContent.trim().slice(0, 30) + '" in ' +
		      name(t.parentElement), t.parentElement, range.getClientRects(),
		      inked(t));
	}
	return bad;
});

async function fits(page, what) {
	const bad = await misfits(page);
	expect(bad.length === 0, what + ' does not fit:\n  ' +
	       bad.slice(0, 20).join('\n  '));
}

// @path at 320, 360 and 1440 px wide, after @prepare: nothing may be cut
// off or scroll sideways; a screenshot of each goes to $RINGCAST_ARTIFACTS.
async function shots(browser, eng, path, name, prepare) {
	for (const vp of VIEWPORTS) {
		const w = vp.width;
		const page = await open(browser, eng, path, vp, name + '@' + w);
		if (prepare)
			await prepare(page, w);
		await fits(page, name + ' at ' + w + ' px');
		await page.screenshot({ path: pathJoin(out, name + '-' + w + '.png'),
					fullPage: true });
		await page.close();
	}
}

// Ann's and Bob's demo pages, each in its own browser context, in @room
// and seeing each other there.
async function pair(browser, eng, room) {
	const a = await open(browser, eng, '/demo', WIDE, 'ann');
	const b = await open(browser, eng, '/demo', WIDE, 'bob');
	await join(a, 'ann', room);
	await join(b, 'bob', room);
	await present(a, 'bob');
	await present(b, 'ann');
	return [a, b];
}

async function checkDemo(browser) {
	const eng = await new Engine(exe, ['--demo']).start();
	const [a, b] = await pair(browser, eng, 'r1');
	await say(a, 'hello from ann');
	await heard(b, 'hello from ann');
	await say(b, 'hi ann, bob here');
	await heard(a, 'hi ann, bob here');

	// the engine dies and comes back on the same port
	restarting = true;
	await eng.kill();
	await a.waitForSelector('#state:not(.open)');
	await b.waitForSelector('#state:not(.open)');
	await eng.start();
	await a.waitForSelector('#state.open', { timeout: 30000 });
	await b.waitForSelector('#state.open', { timeout: 30000 });
	restarting = false;
	// the pages subscribed again on their own: wait until both are in
	await until('both pages subscribed again', async () =>
		(await eng.stats()).total.subscriptions >= 2);
	await say(a, 'still here after the restart');
	await heard(b, 'still here after the restart');
	await say(b, 'me too');
	await heard(a, 'me too');
	expect(a.navigations === 1 && b.navigations === 1,
	       'a page reloaded: ' + a.navigations + ', ' + b.navigations);

	await shots(browser, eng, '/demo', 'demo-join', (p) =>
		p.waitForSelector('#state.open'));
	await shots(browser, eng, '/demo', 'demo', async (p, w) => {
		await join(p, 'cy at ' + w, 'r1');
		await present(p, 'ann');
		await say(p, 'cy says hi at ' + w + ' px');
		await heard(p, 'cy says hi at ' + w + ' px');
	});
	// the longest name and room the form takes, and a long message, all
	// without a space to break at
	await shots(browser, eng, '/demo', 'demo-long', async (p, w) => {
		const text = 'W'.repeat(300);
		await join(p, ('dee' + w).padEnd(32, 'M'), 'R'.repeat(40));
		await say(p, text);
		await heard(p, text);
	});
	await a.close();
	await b.close();
	await eng.stop();
}

// How many times each of @texts from @who is on @page's screen.
const counts = (page, who, texts) => page.evaluate(([w, ts]) => {
	const lines = [...document.querySelectorAll('#messages li')]
		.map((li) => li.textContent);
	return ts.map((t) => lines.filter((l) => l === w + t).length);
}, [who, texts]);

const notices = (page) => page.evaluate(() =>
	[...document.querySelectorAll('#messages li.sys')]
		.filter((li) => li.textContent.includes('may be missing')).length);

// Waits until @page shows each of @texts from @who at least once, then
// says how often each is there.
async function shown(page, who, texts, what) {
	let n = [];
	try {
		await until(what, async () => {
			n = await counts(page, who, texts);
			return n.every((k) => k > 0);
		});
	} catch {
		throw new Error(what + ': shown ' + JSON.stringify(n) + ' times');
	}
	return n;
}

// Bob's tab loses its network, the engine restarts (its in-memory
// history gone), Ann says six things, Bob's network comes back: his
// recovery is answered recovered:false, and his tab must read the room's
// history and show each of the six once, with a notice, and keep what
// it showed before once.
async function checkCatchUp(browser) {
	const eng = await new Engine(exe, ['--demo']).start();
	const [a, b] = await pair(browser, eng, 'r2');
	await say(a, 'before the restart');
	await heard(b, 'before the restart');

	restarting = true;
	await b.context().setOffline(true);
	await eng.kill();
	await a.waitForSelector('#state:not(.open)');
	await b.waitForSelector('#state:not(.open)');
	await eng.start();
	await a.waitForSelector('#state.open', { timeout: 30000 });
	await until('ann subscribed again', async () =>
		(await eng.stats()).total.subscriptions >= 1);
	const six = [1, 2, 3, 4, 5, 6].map((i) => 'while bob was away ' + i);
	for (const t of six) {
		await say(a, t);
		await heard(a, t);
	}
	expect(await b.evaluate(() => document.getElementById('state')
		.className !== 'open'), 'bob connected while offline');
	await b.context().setOffline(false);
	await b.waitForSelector('#state.open', { timeout: 30000 });
	restarting = false;

	await shown(b, 'ann', six, 'bob catches up on the six');
	// anything shown twice is on screen before the next live message
	await say(a, 'welcome back');
	await heard(b, 'welcome back');
	same(await counts(b, 'ann', [...six, 'before the restart', 'welcome back']),
	     [1, 1, 1, 1, 1, 1, 1, 1], 'times bob shows each message');
	expect(await notices(b) === 1, 'bob shows ' + await notices(b) +
	       ' notices that messages may be missing, want 1');
	expect(await notices(a) === 1, 'ann shows ' + await notices(a) +
	       ' notices that messages may be missing, want 1');
	await a.close();
	await b.close();
	await eng.stop();
}

async function checkStatus(browser) {
	const eng = await new Engine(exe, []).start();
	const page = await open(browser, eng, '/', WIDE, 'status');
	await page.waitForSelector('#keybox:not([hidden])');
	await shots(browser, eng, '/', 'status-key', (p) =>
		p.waitForSelector('#keybox:not([hidden])'));
	expect(await page.evaluate(() => document.getElementById('tls').hidden),
	       'TLS figures shown by an engine without TLS');
	await page.fill('#key', 'wrong');
	await page.click('#keyform button');
	await page.waitForFunction(() =>
		document.getElementById('keyerr').textContent.includes('refused'));
	await page.fill('#key', KEY);
	await page.click('#keyform button');
	await page.waitForSelector('#keybox[hidden]', { state: 'attached' });
	const count = async () => Number(await page.textContent('#connections'));
	await until('a first figure', async () => !isNaN(await count()));
	const before = await count();
	const extra = [];
	try {
		for (let i = 0; i < 200; i++)
			extra.push(new WebSocket('ws://127.0.0.1:' + eng.port + '/ws'));
		await Promise.all(extra.map((ws) => new Promise((res, rej) => {
			ws.once('open', res);
			ws.once('error', rej);
		})));
		await until('the page to count 200 more', async () =>
			(await count()) >= before + 200, 15000);
		await shots(browser, eng, '/#key=' + KEY, 'status', async (p) => {
			await p.waitForFunction(() => Number(
				document.getElementById('connections').textContent) >= 200);
			// every figure and every shard's row filled in
			await p.waitForFunction(() =>
				document.getElementById('out-rate').textContent !== '–' &&
				document.querySelectorAll('#shards tr').length === 2);
		});
	} finally {
		for (const ws of extra)
			ws.terminate();
	}
	await page.close();
	await eng.stop();
}

// Plain HTTP to the TLS port: the engine closes it, a handshake failure
// of reason "garbage".
function garbage(eng) {
	return new Promise((resolve, reject) => {
		const s = connect(eng.port, '127.0.0.1', () =>
			s.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
		s.on('error', reject);
		s.on('close', resolve);
	});
}

async function checkTls(browser) {
	const tls = makeCerts();
	const eng = await new Engine(exe, ['--demo', '--tls-cert', tls.cert,
					   '--tls-key', tls.key], 0, tls.ca).start();
	const [a, b] = await pair(browser, eng, 'rt');
	await say(a, 'hello over wss');
	await heard(b, 'hello over wss');
	await say(b, 'hi ann, over wss too');
	await heard(a, 'hi ann, over wss too');
	await a.close();
	await b.close();
	await garbage(eng);
	await until('the garbage counted', async () =>
		(await eng.stats()).tls.failed.garbage === 1);
	await shots(browser, eng, '/#key=' + KEY, 'status-tls', (p) =>
		p.waitForFunction(() => {
			const $ = (id) => document.getElementById(id);
			const rows = [...document.querySelectorAll('#tls-failed tr')]
				.map((tr) => tr.textContent);
			return !$('tls').hidden && Number($('tls-conns').textContent) >= 1 &&
				$('tls-rate').textContent !== '–' &&
				$('tls-bytes').textContent !== '–' &&
				rows.length === 5 && rows.includes('garbage1');
		}));
	await eng.stop();
}

// The engine's other files, as a browser shows them to someone who opens
// them, fit the narrowest screen too.
async function checkFiles(browser) {
	const eng = await new Engine(exe, []).start();
	const auth = { Authorization: 'Bearer ' + KEY };
	for (const path of ['/ringcast.js', '/ringcast.d.ts', '/base.css',
			    '/healthz', '/metrics', '/stats']) {
		const page = await open(browser, eng, path, WIDE, path, auth);
		for (const vp of VIEWPORTS) {
			await page.setViewportSize(vp);
			await fits(page, path + ' at ' + vp.width + ' px');
		}
		await page.close();
	}
	await eng.stop();
}

const browser = await launchChromium();
for (const [name, fn] of [['demo', checkDemo], ['demo-catch-up', checkCatchUp],
			  ['status', checkStatus], ['files', checkFiles],
			  ['tls', checkTls]]) {
	const t0 = Date.now();
	try {
		await fn(browser);
		expect(errors.length === 0, 'page errors:\n' + errors.join('\n'));
		console.log('ok   ' + name + ' (' + (Date.now() - t0) / 1000 + 's)');
	} catch (e) {
		failed++;
		console.log('FAIL ' + name + ': ' + (e.stack || e));
		for (const eng of engines)
			console.log('---- engine ----\n' + eng.past + eng.log);
	}
	for (const page of [...pages])
		await page.close();
	errors.length = 0;
	restarting = false;
	for (const eng of [...engines])
		await eng.kill();
}
await browser.close();
console.log('screenshots in ' + out);
console.log(failed ? 'pages: ' + failed + ' FAILED' : 'pages: all passed');
process.exit(failed ? 1 : 0);
