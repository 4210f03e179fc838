// SPDX-License-Identifier: MIT
// Chromium's own WebSocket against the engine, from a page on another
// loopback port (so its Origin is not the engine's): the page records
// each socket's events in order and the test reads them back one by one,
// so an event that comes while the test is busy (a close at shutdown) is
// kept, not missed.
// - subscribe: PROTOCOL.md's Quick example: subscribe from onopen, the 200
//   reply, then a POST /publish/news of {"title":"hello"} arrives verbatim.
// - token: --auth required: ?token= lets the socket in and a user push
//   arrives; a tampered token fails in the browser (error, close 1006, no
//   open), Chromium's console names the 401, the engine counts one auth
//   failure, and the good socket still gets the next push.
// - close: SIGTERM closes the page's socket with 1001; the engine exits 0.
// - origin: --allowed-origins naming the page's origin lets it in; a list
//   without it fails the socket (close 1006, a 403 in the console).
// - deflate: --deflate on: a 4 KiB JSON push reaches the page compressed
//   (the engine's counters say so) and the page's own publish arrives
//   compressed and is inflated.
// With RINGCAST_TEST_TLS=1 (suite tls) the engine speaks TLS and each of
// these runs over wss://.
// Usage: node test_browser.mjs ENGINE_PATH
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { Engine, engines, expect, runChecks, same } from '../js/engine.mjs';
import { launchChromium } from './chromium.mjs';

const exe = process.argv[2];
const SECRET = 'browser-secret-0123456789abcdef0123456789';
const WAIT_MS = 20000;

// record() opens socket NAME and queues its events; the subscribe goes
// out from onopen when @hello is given. next() hands out the oldest
// event, or {type: "timeout"} after @ms.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>ringcast browser test</title>
<link rel="icon" href="data:,">
<script>
"use strict";
const socks = {};

function record(name, url, hello) {
	const s = { ws: new WebSocket(url), queue: [], wake: null };
	const push = (ev) => {
		s.queue.push(ev);
		if (s.wake)
			s.wake();
	};
	s.ws.onopen = () => {
		push({ type: "open" });
		if (hello)
			s.ws.send(hello);
	};
	s.ws.onmessage = (e) => push({ type: "message",
		text: typeof e.data === "string" ? e.data : null });
	s.ws.onerror = () => push({ type: "error" });
	s.ws.onclose = (e) => push({ type: "close", code: e.code,
		reason: e.reason, clean: e.wasClean });
	socks[name] = s;
}

async function next(name, ms) {
	const s = socks[name];
	const deadline = Date.now() + ms;
	while (!s.queue.length) {
		const left = deadline - Date.now();
		if (left <= 0)
			return { type: "timeout", readyState: s.ws.readyState };
		await new Promise((wake) => {
			s.wake = wake;
			setTimeout(wake, left);
		});
		s.wake = null;
	}
	return s.queue.shift();
}
</script></head><body>ringcast</body></html>`;

function jwt(claims) {
	const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
	const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims);
	return head + '.' + createHmac('sha256', SECRET).update(head)
		.digest('base64url');
}

// The same token with one character of its signature changed.
function tamper(token) {
	const last = token.slice(-1) === 'A' ? 'B' : 'A';
	return token.slice(0, -1) + last;
}

class Site {
	async start() {
		this.server = createServer((req, res) => {
			res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
			res.end(PAGE);
		});
		await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
		this.url = 'http://127.0.0.1:' + this.server.address().port + '/';
		return this;
	}

	close() {
		this.server.close();
	}
}

async function openPage(browser, site) {
	// on the tls axis the engine's certificate is the test's own
	const page = await browser.newPage({ ignoreHTTPSErrors: true });
	page.log = [];
	page.on('console', (m) => page.log.push(m.text()));
	await page.goto(site.url);
	return page;
}

const openSocket = (page, name, url, hello = null) =>
	page.evaluate(([n, u, h]) => record(n, u, h), [name, url, hello]);

async function nextEvent(page, name, want, what) {
	const ev = await page.evaluate(([n, ms]) => next(n, ms), [name, WAIT_MS]);
	expect(ev && ev.type === want, what + ': got event ' +
	       JSON.stringify(ev) + ', want ' + want);
	return ev;
}

async function nextJson(page, name, what) {
	const ev = await nextEvent(page, name, 'message', what);
	expect(ev.text !== null, what + ': a binary message');
	return [ev.text, JSON.parse(ev.text)];
}

// A console line about @url, waited for: Chromium logs a failed
// handshake a moment after the socket's close event.
async function logLine(page, url, what) {
	const t0 = Date.now();
	for (;;) {
		const line = page.log.find((l) => l.includes(url));
		if (line)
			return line;
		expect(Date.now() - t0 < WAIT_MS, 'no console line for ' + what +
		       ' in ' + JSON.stringify(page.log));
		await new Promise((r) => setTimeout(r, 20));
	}
}

async function subscribed(page, eng, name, url) {
	const hello = JSON.stringify({ seq: 1, cmd: 'subscribe',
				       data: { channels: ['news'] } });
	await openSocket(page, name, url ?? eng.ws, hello);
	await nextEvent(page, name, 'open', name + ' open');
	const [, reply] = await nextJson(page, name, name + ' subscribe reply');
	same(reply, { seq: 1, cmd: 'subscribe', code: 200, msg: 'ok' },
	     name + ' subscribe reply');
}

async function checkSubscribe(browser, site) {
	const eng = await new Engine(exe, []).start();
	const page = await openPage(browser, site);
	await subscribed(page, eng, 'news');
	const body = '{"title":"hello"}';
	same(await eng.api('POST', '/publish/news', body), { ok: true },
	     'POST /publish/news');
	const [raw, push] = await nextJson(page, 'news', 'push');
	same(push, { cmd: 'push', channel: 'news', data: { title: 'hello' } },
	     'push');
	expect(raw.includes(body), 'payload not verbatim in ' + raw);
	await page.close();
	await eng.stop();
}

const authFailures = async (eng) =>
	(await eng.stats()).shards.reduce((a, s) => a + (s.auth_failed ?? 0), 0);

async function checkToken(browser, site) {
	const eng = await new Engine(exe, ['--auth', 'required', '--jwt-secret',
					   SECRET]).start();
	const good = jwt({ sub: 'alice', app: 'web',
			   exp: Math.floor(Date.now() / 1000) + 600 });
	const page = await openPage(browser, site);
	await openSocket(page, 'alice', eng.ws + '?token=' + good);
	await nextEvent(page, 'alice', 'open', 'alice open');
	same(await eng.api('POST', '/users/alice/push', '{"paid":true}'),
	     { ok: true }, 'POST /users/alice/push');
	const [, push] = await nextJson(page, 'alice', 'user push');
	same(push, { cmd: 'push', user: 'alice', data: { paid: true } },
	     'user push');

	const before = await authFailures(eng);
	const badUrl = eng.ws + '?token=' + tamper(good);
	await openSocket(page, 'bad', badUrl);
	// RFC 6455 and the WebSocket API: a failed handshake fires error,
	// then close with 1006, and never open.
	await nextEvent(page, 'bad', 'error', 'bad token');
	const ev = await nextEvent(page, 'bad', 'close', 'bad token');
	same([ev.code, ev.clean], [1006, false], 'bad token close');
	expect(await authFailures(eng) === before + 1,
	       'auth_failed in /stats after the bad token');
	const line = await logLine(page, badUrl, "the bad token's socket");
	expect(line.includes('401') || line.includes('Authentication failed'),
	       'the console does not show a 401: ' + line);

	// the refusal touched only the bad socket
	same(await eng.api('POST', '/users/alice/push', '"again"'),
	     { ok: true }, 'second POST /users/alice/push');
	const [, again] = await nextJson(page, 'alice', 'second user push');
	same(again, { cmd: 'push', user: 'alice', data: 'again' },
	     'second user push');
	await page.close();
	await eng.stop();
}

async function checkClose(browser, site) {
	const eng = await new Engine(exe, []).start();
	const page = await openPage(browser, site);
	await subscribed(page, eng, 'bye');
	eng.proc.kill('SIGTERM');
	// the page queued the close: read after the engine may have exited
	const ev = await nextEvent(page, 'bye', 'close', 'close on SIGTERM');
	expect(ev.code === 1001, 'close code on SIGTERM: ' + JSON.stringify(ev));
	const code = await eng.exited;
	engines.delete(eng);
	expect(code === 0, 'engine exit status after SIGTERM: ' + code);
	await page.close();
}

async function checkOrigin(browser, site) {
	const origin = site.url.replace(/\/$/, '');
	let eng = await new Engine(exe, ['--allowed-origins',
		'https://app.example.com,' + origin]).start();
	let page = await openPage(browser, site);
	await subscribed(page, eng, 'listed');
	await page.close();
	await eng.stop();

	eng = await new Engine(exe, ['--allowed-origins',
		'https://app.example.com,https://*.example.org']).start();
	page = await openPage(browser, site);
	await openSocket(page, 'other', eng.ws);
	await nextEvent(page, 'other', 'error', 'origin not listed');
	const ev = await nextEvent(page, 'other', 'close', 'origin not listed');
	same([ev.code, ev.clean], [1006, false],
	     'close of a socket from an origin not listed');
	const line = await logLine(page, eng.ws, "the unlisted origin's socket");
	expect(line.includes('403'), 'the console does not show a 403: ' + line);
	await page.close();
	await eng.stop();
}

const deflated = async (eng) => (await eng.stats()).deflate;

// --deflate on: Chromium offers permessage-deflate, receives a 4 KiB push
// compressed (counted by the engine as sent compressed to it) and
// compresses what it sends (a publish, counted as inflated).
async function checkDeflate(browser, site) {
	const eng = await new Engine(exe, ['--deflate', 'on',
					   '--client-publish']).start();
	const page = await openPage(browser, site);
	await subscribed(page, eng, 'news');
	expect((await deflated(eng)).connections === 1,
	       'Chromium did not negotiate: ' + JSON.stringify(await deflated(eng)));
	const items = [];
	for (let i = 0; items.length < 60; i++)
		items.push({ id: i, title: 'story ' + i, tags: ['a', 'b'] });
	const body = JSON.stringify(items);
	let before = await deflated(eng);
	same(await eng.api('POST', '/publish/news', body), { ok: true },
	     'POST /publish/news');
	const [raw, push] = await nextJson(page, 'news', 'compressed push');
	same(push.data, items, 'compressed push');
	expect(raw.includes(body), 'payload not verbatim');
	let after = await deflated(eng);
	expect(after.sent_compressed === before.sent_compressed + 1 &&
	       after.calls === before.calls + 1,
	       'push not sent compressed: ' + JSON.stringify([before, after]));

	before = after;
	const cmd = JSON.stringify({ seq: 2, cmd: 'publish',
				     data: { channel: 'news', data: items } });
	await page.evaluate(([n, t]) => socks[n].ws.send(t), ['news', cmd]);
	for (let k = 0; k < 2; k++) {	// the reply and the push, any order
		const [, m] = await nextJson(page, 'news', 'after a publish');
		if (m.cmd === 'push')
			same(m.data, items, 'own push');
		else
			same([m.seq, m.code], [2, 200], 'publish reply');
	}
	after = await deflated(eng);
	expect(after.inflated > before.inflated,
	       'Chromium sent plain: ' + JSON.stringify([before, after]));
	await page.close();
	await eng.stop();
}

const browser = await launchChromium();
const site = await new Site().start();
const failed = await runChecks('browser', [
	['browser-subscribe', checkSubscribe], ['browser-token', checkToken],
	['browser-close', checkClose], ['browser-origin', checkOrigin],
	['browser-deflate', checkDeflate]], browser, site);
site.close();
await browser.close();
process.exit(failed ? 1 : 0);
