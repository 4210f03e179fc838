// SPDX-License-Identifier: MIT
// A /ws client for test_handover_live.py, on Node's `ws` module, with
// permessage-deflate: node handover_ws.js URL CHANNEL
// Subscribes to CHANNEL and prints "subscribed"; keeps each push's data.n
// until one with data.end, then asks a heartbeat on the same connection
// and, once it is answered 200, prints {"got":[...]} and closes (1000).
// A close before that prints "close CODE"; anything unexpected prints
// "fail ..." (exit 1).
'use strict';
const WebSocket = require('ws');

const ws = new WebSocket(process.argv[2], { perMessageDeflate: true });
const chan = process.argv[3];
const got = [];

ws.on('open', () => {
	ws.send(JSON.stringify({ seq: 1, cmd: 'subscribe',
				 data: { channels: [chan] } }));
});
ws.on('message', (raw) => {
	let m;
	try {
		m = JSON.parse(raw.toString());
	} catch (e) {
		console.log('fail not JSON: ' + raw.toString().slice(0, 200));
		process.exit(1);
	}
	if (m.seq === 1) {
		console.log(m.code === 200 ? 'subscribed' : 'fail ' + m.code);
	} else if (m.seq === 2) {
		if (m.code !== 200) {
			console.log('fail heartbeat ' + m.code);
			process.exit(1);
		}
		console.log(JSON.stringify({ got: got }));
		ws.close(1000);
	} else if (m.cmd === 'push' && m.data && m.data.end) {
		ws.send(JSON.stringify({ seq: 2, cmd: 'heartbeat' }));
	} else if (m.cmd === 'push') {
		got.push(m.data.n);
	}
});
ws.on('close', (code) => {
	if (code !== 1000 && code !== 1005)
		console.log('close ' + code);
	process.exit(0);
});
ws.on('error', (e) => {
	console.log('fail ' + e.message);
	process.exit(1);
});
