// SPDX-License-Identifier: MIT
// Thousands of clients in one Node process for test_handover_scale.py:
// node handover_bulk.js CONFIG_JSON. CONFIG_JSON holds url, count, first
// (the first client's number), chans and prefix (client g is on channel
// prefix + g % chans), proto ("ws": Node's `ws` on /ws, user n<g> with
// an HS256 token of secret; "pusher": pusher-js on the Pusher endpoint,
// app key, event "m"), mode ("live": a close or a reconnect is a
// failure; "drain": a /ws client closed with 1012 connects again and
// subscribes from its last offset, which must say recovered:true; one
// whose reconnect fails before the upgrade tries again, counted in
// hangups), tls and deadline_ms.
// Each client keeps its channel's pushes {"n": i}: the i-th must be
// n = i (every message once, in order). At {"end": true} a /ws client
// asks a heartbeat on the same connection (it must be answered 200).
// Prints "subscribed" once every client is subscribed, "primed" once
// every one has a message, then one JSON line once every one is done:
// {count, done, failed, closes, reconnects, recovered, hangups, bad,
// counts, maxgap} (counts: channel -> {messages received: clients}; maxgap: the
// longest wait between two messages of a client, ms); then exits 0.
// Past deadline_ms it prints "fail deadline" and what it has, exit 1.
'use strict';
const crypto = require('crypto');

const cfg = JSON.parse(process.argv[2]);
const OPENING = 256;		// handshakes under way at once
const ATTEMPTS = 5;		// connections per client in a drain
const sum = { count: cfg.count, done: 0, failed: 0, closes: {},
	      reconnects: 0, recovered: 0, hangups: 0, bad: [], counts: {},
	      maxgap: 0 };
let subscribed = 0, primed = 0, opening = 0, next = 0;
const clients = [];

const b64u = (b) => Buffer.from(b).toString('base64url');

function token(sub) {
	const now = Math.floor(Date.now() / 1000);
	const head = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' })) + '.' +
		b64u(JSON.stringify({ sub: sub, iat: now, exp: now + 3600 }));
	return head + '.' + crypto.createHmac('sha256', cfg.secret)
		.update(head).digest('base64url');
}

function bad(c, what) {
	if (sum.bad.length < 10)
		sum.bad.push('client ' + c.g + ' on ' + c.chan + ': ' + what);
	if (!c.failed) {
		c.failed = true;
		sum.failed++;
	}
}

function finish(c) {
	if (c.finished)
		return;
	c.finished = true;
	sum.done++;
	const per = sum.counts[c.chan] || (sum.counts[c.chan] = {});
	per[c.got] = (per[c.got] || 0) + 1;
	if (sum.done === cfg.count) {
		console.log(JSON.stringify(sum));
		for (const o of clients)
			o.close();
		process.exit(0);
	}
}

// One push's data for client @c: the next n, or the end.
function onData(c, data) {
	if (data && data.end) {
		c.end();
		return;
	}
	const now = Date.now();
	if (c.last)
		sum.maxgap = Math.max(sum.maxgap, now - c.last);
	c.last = now;
	if (!data || data.n !== c.got)
		bad(c, 'message ' + c.got + ' was ' + JSON.stringify(data));
	if (c.got++ === 0 && ++primed === cfg.count)
		console.log('primed');
}

function subscribedOnce(c) {
	opening--;
	openMore();
	if (++subscribed === cfg.count)
		console.log('subscribed');
}

// A /ws client: its token's user, its channel, its own reconnects.
function wsClient(g) {
	const WebSocket = require('ws');
	const c = { g: g, chan: cfg.prefix + (g % cfg.chans), got: 0,
		    attempt: 0, epoch: null, offset: null };
	const connect = () => {
		c.attempt++;
		const ws = new WebSocket(cfg.url, {
			perMessageDeflate: g % 10 === 0,
			headers: { Authorization: 'Bearer ' + token('n' + g) },
		});
		c.ws = ws;
		c.opened = false;
		c.err = null;
		ws.on('open', () => {
			c.opened = true;
			const data = c.epoch ? { channel: c.chan, epoch: c.epoch,
						 offset: c.offset }
					     : { channels: [c.chan] };
			ws.send(JSON.stringify({ seq: c.attempt, cmd: 'subscribe',
						 data: data }));
		});
		ws.on('message', (raw) => onWs(c, raw));
		ws.on('close', (code) => onClose(c, code, connect));
		ws.on('error', (e) => {
			c.err = e.message;	/* the close that follows says */
		});
	};
	c.end = () => c.ws.send(JSON.stringify({ seq: 100, cmd: 'heartbeat' }));
	c.close = () => c.ws.close(1000);
	c.start = connect;
	return c;
}

function onWs(c, raw) {
	let m;
	try {
		m = JSON.parse(raw.toString());
	} catch (e) {
		bad(c, 'not JSON');
		return;
	}
	if (m.seq === 100) {
		if (m.code !== 200)
			bad(c, 'heartbeat ' + m.code);
		c.closing = true;
		finish(c);
	} else if (m.seq === c.attempt) {
		if (m.code !== 200)
			bad(c, 'subscribe ' + m.code);
		if (c.attempt === 1) {
			subscribedOnce(c);
		} else if (m.data && m.data.recovered === true) {
			sum.recovered++;
		} else {
			bad(c, 'not recovered: ' + JSON.stringify(m.data));
		}
	} else if (m.cmd === 'push' && !('user' in m)) {
		c.epoch = m.epoch;
		c.offset = m.offset;
		onData(c, m.data);
	}
}

function onClose(c, code, again) {
	if (c.closing)
		return;
	/*
	 * A drain's reconnect that failed before its upgrade (a connection
	 * the old process took as it stopped): tried again, counted apart.
	 */
	if (cfg.mode === 'drain' && c.attempt > 1 && !c.opened &&
	    c.attempt < ATTEMPTS) {
		sum.hangups++;
		again();
		return;
	}
	sum.closes[code] = (sum.closes[code] || 0) + 1;
	if (cfg.mode === 'drain' && code === 1012 && c.attempt < ATTEMPTS &&
	    c.epoch) {
		sum.reconnects++;
		again();
		return;
	}
	bad(c, 'closed ' + code + (c.err ? ' (' + c.err + ')' : ''));
	finish(c);
}

// A pusher-js client on channel c.chan, event "m"; leaving the
// connected state is a failure (pusher-js reconnects on its own, which
// a live hand-over must not make it do).
function pusherClient(g) {
	const Pusher = require('pusher-js');
	const c = { g: g, chan: cfg.prefix + (g % cfg.chans), got: 0 };
	c.start = () => {
		const u = new URL(cfg.url);
		c.p = new Pusher(cfg.key, {
			wsHost: u.hostname, wsPort: Number(u.port),
			wssPort: Number(u.port), forceTLS: !!cfg.tls,
			enabledTransports: ['ws'], disableStats: true,
			cluster: 'local', activityTimeout: 600000,
		});
		c.p.connection.bind('state_change', (s) => {
			if (s.previous === 'connected') {
				sum.reconnects++;
				bad(c, 'state ' + s.current);
			}
		});
		c.p.connection.bind('error', (e) => {
			const code = e && e.data && e.data.code;
			if (code)	/* pusher:error's: 4200 is a drain's */
				sum.closes[code] = (sum.closes[code] || 0) + 1;
		});
		const ch = c.p.subscribe(c.chan);
		ch.bind('pusher:subscription_succeeded', () => subscribedOnce(c));
		ch.bind('m', (data) => onData(c, data));
	};
	c.end = () => finish(c);
	c.close = () => c.p.disconnect();
	return c;
}

function openMore() {
	while (opening < OPENING && next < cfg.count) {
		const g = cfg.first + next++;
		const c = cfg.proto === 'pusher' ? pusherClient(g) : wsClient(g);
		clients.push(c);
		opening++;
		c.start();
	}
}

setTimeout(() => {
	console.log('fail deadline: subscribed ' + subscribed + ' primed ' +
		    primed);
	console.log(JSON.stringify(sum));
	process.exit(1);
}, cfg.deadline_ms).unref();
openMore();
