// SPDX-License-Identifier: MIT
// A Pusher-protocol client for test_handover.py, on Node's `ws` module:
// node handover_pusher.js URL
// Prints "established" once pusher:connection_established came, then
// "error CODE" for each pusher:error and "close CODE" when the server
// closes, and exits 0; anything unexpected prints "fail ..." (exit 1).
'use strict';
const WebSocket = require('ws');

const ws = new WebSocket(process.argv[2], { perMessageDeflate: false });

ws.on('message', (raw) => {
	let m;
	try {
		m = JSON.parse(raw.toString());
	} catch (e) {
		console.log('fail not JSON: ' + raw.toString().slice(0, 200));
		process.exit(1);
	}
	if (m.event === 'pusher:connection_established') {
		console.log('established');
	} else if (m.event === 'pusher:error') {
		const d = typeof m.data === 'string' ? JSON.parse(m.data) : m.data;
		console.log('error ' + d.code);
	}
});
ws.on('close', (code) => {
	console.log('close ' + code);
	process.exit(0);
});
ws.on('error', (e) => {
	console.log('fail ' + e.message);
	process.exit(1);
});
