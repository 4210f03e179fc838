// SPDX-License-Identifier: MIT
// The pages the engine serves, in Debian's Chromium driven by
// playwright-core: two demo pages see each other in the room and chat;
// the engine is killed and started again on the same port, and both
// pages reconnect and chat on without a reload; a tab whose network was
// down while the engine restarted and the other tab talked catches up on
// what was said, each message once, and says some may be missing (its
// recovery was answered recovered:false); the status page, given
// the API key, shows the connection count rise as 200 more clients
// connect. Screenshots of both pages at 360 and 1440 px wide go to
// $RINGCAST_ARTIFACTS; neither page may scroll sideways at either width,
// and any console error or uncaught exception fails the test (while the
// engine is down, Chromium's own "WebSocket connection failed" is
// expected and allowed).
// Usage: node test_pages.mjs ENGINE_PATH
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { chromium } from 'playwright-core';
import { Engine, KEY, engines, expect, same, until } from '../js/engine.mjs';

const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const exe = process.argv[2];
const out = process.env.RINGCAST_ARTIFACTS || pathJoin(tmpdir(), 'ringcast-artifacts');
const WIDE = { width: 1440, height: 900 }, NARROW = { width: 360, height: 740 };
const errors = [];
const pages = new Set();	// open: closed after each check, passed or not
let restarting = false;
let failed = 0;

mkdirSync(out, { recursive: true });

async function open(browser, eng, path, viewport, name) {
	const page = await browser.newPage({ viewport });
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
	await page.goto('http://127.0.0.1:' + eng.port + path);
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
		li.textContent.includes(t)), text, { timeout: 20000 });

const present = (page, who) => page.waitForFunction((w) =>
	[...document.querySelectorAll('#members li')].some((li) =>
		li.textContent === w), who, { timeout: 20000 });

async function noSideScroll(page, what) {
	const [sw, iw] = await page.evaluate(() =>
		[document.documentElement.scrollWidth, window.innerWidth]);
	expect(sw <= iw, what + ' scrolls sideways: ' + sw + ' > ' + iw);
}

async function shots(browser, eng, path, name, prepare) {
	for (const [vp, w] of [[NARROW, 360], [WIDE, 1440]]) {
		const page = await open(browser, eng, path, vp, name + '@' + w);
		if (prepare)
			await prepare(page, w);
		await noSideScroll(page, name + ' at ' + w + ' px');
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

	await shots(browser, eng, '/demo', 'demo', async (p, w) => {
		await join(p, 'cy at ' + w, 'r1');
		await present(p, 'ann');
		await say(p, 'cy says hi at ' + w + ' px');
		await heard(p, 'cy says hi at ' + w + ' px');
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
		});
	} finally {
		for (const ws of extra)
			ws.terminate();
	}
	await page.close();
	await eng.stop();
}

const browser = await chromium.launch({
	executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
	args: ['--no-sandbox'],
});
for (const [name, fn] of [['demo', checkDemo], ['demo-catch-up', checkCatchUp],
			  ['status', checkStatus]]) {
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
