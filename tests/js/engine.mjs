// SPDX-License-Identifier: MIT
// What the Node tests share: the engine as a child process on a loopback
// port (started again on the same port after a kill), its HTTP API with
// the API key, and bounded waits.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';

export const KEY = 'js-key-0123456789abcdef';
export const engines = new Set();	// running: killed after each check

export function expect(cond, what) {
	if (!cond)
		throw new Error(what);
}

// @got and @want as JSON, equal.
export function same(got, want, what) {
	expect(JSON.stringify(got) === JSON.stringify(want),
	       what + ': got ' + JSON.stringify(got) + ', want ' +
	       JSON.stringify(want));
}

// Runs each [name, fn] of @checks in turn, awaiting fn(...@args), and
// prints "ok" or "FAIL" with the error and the log of every engine still
// running; then kills those engines, so a failed check leaves none
// behind. Prints @label's summary; resolves to the number that failed.
export async function runChecks(label, checks, ...args) {
	let failed = 0;
	for (const [name, fn] of checks) {
		const t0 = Date.now();
		try {
			await fn(...args);
			console.log('ok   ' + name + ' (' + (Date.now() - t0) / 1000 + 's)');
		} catch (e) {
			failed++;
			console.log('FAIL ' + name + ': ' + (e.stack || e));
			for (const eng of engines)
				console.log('---- engine ----\n' + eng.log);
		}
		for (const eng of [...engines])
			await eng.kill();
	}
	console.log(label + ': ' + (failed ? failed + ' FAILED' : 'all passed'));
	return failed;
}

// A condition, polled with a bound so a lost event fails instead of
// hanging (what it waits for is state another process changes).
export function until(what, test, ms = 20000) {
	return new Promise((resolve, reject) => {
		const t0 = Date.now();
		const poll = async () => {
			let v;
			try {
				v = await test();
			} catch (e) {
				return reject(e);
			}
			if (v)
				return resolve(v);
			if (Date.now() - t0 > ms)
				return reject(new Error('timed out waiting for ' + what));
			setTimeout(poll, 10);
		};
		poll();
	});
}

// A CA and a certificate for 127.0.0.1 it signed, by the openssl command
// line, in a temporary directory: {ca (PEM text), cert, key (paths)}.
// Made once per process.
let certs = null;
export function makeCerts() {
	if (certs)
		return certs;
	const d = mkdtempSync(pathJoin(tmpdir(), 'ringcast-js-tls-'));
	const ssl = (...a) => execFileSync('openssl', a, { cwd: d, stdio: 'ignore' });
	const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
		    '-nodes', '-days', '2'];
	writeFileSync(pathJoin(d, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
	ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem',
	    '-subj', '/CN=ringcast test CA');
	ssl('req', ...ec, '-keyout', 'key.pem', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
	ssl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
	    '-CAcreateserial', '-out', 'cert.pem', '-days', '2', '-extfile', 'ext.cnf');
	certs = { ca: readFileSync(pathJoin(d, 'ca.pem')), cert: pathJoin(d, 'cert.pem'),
		  key: pathJoin(d, 'key.pem') };
	return certs;
}

// One request with node:https trusting @ca (Node's fetch takes no CA);
// resolves to [status, body text].
function httpsCall(url, ca, method, headers, body) {
	return new Promise((resolve, reject) => {
		const req = request(url, { method, headers, ca }, (r) => {
			let text = '';
			r.setEncoding('utf8');
			r.on('data', (d) => { text += d; });
			r.on('end', () => resolve([r.statusCode, text]));
			r.on('error', reject);
		});
		req.on('error', reject);
		req.end(body);
	});
}

export class Engine {
	// With @ca (the PEM of the CA that signed the engine's --tls-cert),
	// the engine speaks TLS and the API is called over https:// trusting it.
	// RINGCAST_TEST_TLS=1 (suite tls) gives every engine makeCerts()'.
	constructor(exe, args, port = 0, ca = null) {
		this.exe = exe;
		this.args = args;
		this.port = port;
		this.ca = ca;
		if (!ca && process.env.RINGCAST_TEST_TLS === '1') {
			const t = makeCerts();
			this.args = [...args, '--tls-cert', t.cert, '--tls-key', t.key];
			this.ca = t.ca;
		}
		this.log = '';
	}

	start() {
		this.past = (this.past ?? '') + this.log;	// a restart's first life
		this.log = '';
		const argv = ['--listen', '127.0.0.1:' + this.port, '--shards', '2',
			      '--api-key', KEY, ...this.args];
		if (process.env.RINGCAST_TEST_IO)
			argv.push('--io', process.env.RINGCAST_TEST_IO);
		this.proc = spawn(this.exe, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
		engines.add(this);
		this.exited = new Promise((r) => this.proc.on('exit', r));
		return new Promise((resolve, reject) => {
			this.proc.stderr.on('data', (d) => {
				this.log += d;
				const m = /listening on 127\.0\.0\.1:(\d+)/.exec(this.log);
				if (m && !this.up) {
					this.up = true;
					this.port = Number(m[1]);
					resolve(this);
				}
			});
			this.proc.on('exit', (code) => {
				if (!this.up)
					reject(new Error('engine exited ' + code + ': ' + this.log));
			});
		});
	}

	async kill() {
		this.proc.kill('SIGKILL');
		await this.exited;
		this.up = false;
		engines.delete(this);
	}

	async stop() {
		this.proc.kill('SIGTERM');
		await this.exited;
		engines.delete(this);
	}

	get ws() {
		return (this.ca ? 'wss' : 'ws') + '://127.0.0.1:' + this.port + '/ws';
	}

	get origin() {
		return (this.ca ? 'https' : 'http') + '://127.0.0.1:' + this.port;
	}

	async api(method, path, body) {
		const headers = { Authorization: 'Bearer ' + KEY };
		const [status, text] = this.ca ?
			await httpsCall(this.origin + path, this.ca, method, headers, body) :
			await fetch(this.origin + path, { method, body, headers }).then(
				async (r) => [r.status, await r.text()]);
		expect(status === 200, method + ' ' + path + ': ' + status +
		       ' ' + text);
		return JSON.parse(text);
	}

	publish(channel, data) {
		return this.api('POST', '/publish/' + encodeURIComponent(channel),
				JSON.stringify(data));
	}

	async stats() {
		return this.api('GET', '/stats');
	}
}

