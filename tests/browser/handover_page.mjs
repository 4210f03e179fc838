// SPDX-License-Identifier: MIT
// Chromium's own WebSockets for test_handover_scale.py: one headless
// page holds CONFIG.count sockets on /ws (client g: user b<g> by
// ?token=, channel prefix + g % chans), each keeping its channel's
// pushes {"n": i} (the i-th must be n = i) until {"end": true}, then a
// heartbeat answered 200 on the same socket.
// Usage: node handover_page.mjs CONFIG_JSON (url, count, first, chans,
// prefix, secret, deadline_ms). Prints "subscribed" once every socket
// is, "primed" once every one has a message, then one JSON line
// {count, done, failed, closes, bad, counts, maxgap} as handover_bulk.js
// does.
import { createHmac } from 'node:crypto';
import { launchChromium } from './chromium.mjs';

const cfg = JSON.parse(process.argv[2]);
const b64u = (s) => Buffer.from(s).toString('base64url');

function token(sub) {
	const now = Math.floor(Date.now() / 1000);
	const head = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' })) + '.' +
		b64u(JSON.stringify({ sub: sub, iat: now, exp: now + 3600 }));
	return head + '.' + createHmac('sha256', cfg.secret).update(head)
		.digest('base64url');
}

// In the page: opens the sockets; window.ho holds the tally.
function open(list) {
	const ho = { subscribed: 0, primed: 0, done: 0, failed: 0, closes: {},
		     bad: [], counts: {}, maxgap: 0, n: list.length };
	window.ho = ho;
	const bad = (c, what) => {
		if (ho.bad.length < 10)
			ho.bad.push('socket ' + c.g + ': ' + what);
		if (!c.failed) {
			c.failed = true;
			ho.failed++;
		}
	};
	const finish = (c) => {
		if (c.finished)
			return;
		c.finished = true;
		ho.done++;
		const per = ho.counts[c.chan] || (ho.counts[c.chan] = {});
		per[c.got] = (per[c.got] || 0) + 1;
	};
	for (const s of list) {
		const c = { g: s.g, chan: s.chan, got: 0 };
		const ws = new WebSocket(s.url);
		ws.onopen = () => ws.send(JSON.stringify({
			seq: 1, cmd: 'subscribe', data: { channels: [c.chan] } }));
		ws.onmessage = (e) => {
			const m = JSON.parse(e.data);
			if (m.seq === 1) {
				if (m.code !== 200)
					bad(c, 'subscribe ' + m.code);
				ho.subscribed++;
			} else if (m.seq === 2) {
				if (m.code !== 200)
					bad(c, 'heartbeat ' + m.code);
				c.closing = true;
				finish(c);
				ws.close(1000);
			} else if (m.cmd === 'push' && m.data && m.data.end) {
				ws.send(JSON.stringify({ seq: 2, cmd: 'heartbeat' }));
			} else if (m.cmd === 'push' && !('user' in m)) {
				const now = Date.now();
				if (c.last)
					ho.maxgap = Math.max(ho.maxgap, now - c.last);
				c.last = now;
				if (m.data.n !== c.got)
					bad(c, 'message ' + c.got + ' was ' +
					    JSON.stringify(m.data));
				if (c.got++ === 0)
					ho.primed++;
			}
		};
		ws.onclose = (e) => {
			if (c.closing)
				return;
			ho.closes[e.code] = (ho.closes[e.code] || 0) + 1;
			bad(c, 'closed ' + e.code);
			finish(c);
		};
	}
}

const browser = await launchChromium();
let code = 1;
try {
	const page = await browser.newPage({ ignoreHTTPSErrors: true });
	const list = [];
	for (let i = 0; i < cfg.count; i++) {
		const g = cfg.first + i;
		list.push({ g: g, chan: cfg.prefix + (g % cfg.chans),
			    url: cfg.url + '?token=' + token('b' + g) });
	}
	await page.evaluate(open, list);
	const wait = { timeout: cfg.deadline_ms, polling: 50 };
	for (const [what, field] of [['subscribed', 'subscribed'],
				     ['primed', 'primed'], [null, 'done']]) {
		await page.waitForFunction((f) => window.ho[f] === window.ho.n,
					   field, wait);
		if (what)
			console.log(what);
	}
	const ho = await page.evaluate(() => window.ho);
	console.log(JSON.stringify({ count: ho.n, done: ho.done,
				     failed: ho.failed, closes: ho.closes,
				     bad: ho.bad, counts: ho.counts,
				     maxgap: ho.maxgap }));
	code = 0;
} catch (e) {
	console.log('fail ' + e.message);
} finally {
	await browser.close();
}
process.exit(code);
