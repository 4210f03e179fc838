// SPDX-License-Identifier: MIT
// A second, independent client for test_shutdown.py: Node's `ws` module.
// Usage: node node_client.js URL
// Echoes a text, a binary and a two-fragment text message through URL,
// checks each reply, prints "echoed", then waits for the server to close
// and prints "close CODE REASON".  Any error prints "error ..." and exits 1.
'use strict';
const WebSocket = require('ws');

const ws = new WebSocket(process.argv[2], { perMessageDeflate: false });
const tag = 'node ' + process.pid + ' ' + Date.now();
const want = [
	{ data: Buffer.from(tag + ' text \u03ba\u1f79\u03c3\u03bc\u03b5'),
	  binary: false },
	{ data: Buffer.from([0, 255, 1, 254, 2]), binary: true },
	{ data: Buffer.from(tag + ' first half, second half'), binary: false },
];
let got = 0;

function fail(msg) {
	console.log('error ' + msg);
	process.exit(1);
}

ws.on('open', () => {
	ws.send(want[0].data.toString());
	ws.send(want[1].data, { binary: true });
	const s = want[2].data.toString();
	const cut = s.indexOf(' second');
	ws.send(s.slice(0, cut), { fin: false });
	ws.send(s.slice(cut), { fin: true });
});

ws.on('message', (data, isBinary) => {
	const w = want[got];
	if (!w)
		fail('unexpected message ' + data.toString());
	if (isBinary !== w.binary || !Buffer.from(data).equals(w.data))
		fail('echo ' + got + ' differs: ' + data.toString('hex'));
	if (++got === want.length)
		console.log('echoed');
});

ws.on('close', (code, reason) => {
	console.log('close ' + code + ' ' + reason.toString());
	process.exit(got === want.length ? 0 : 1);
});

ws.on('error', (e) => fail(e.message));
