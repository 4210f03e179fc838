// SPDX-License-Identifier: MIT
// ringcast.js: the client of ringcast's /ws protocol (docs/PROTOCOL.md),
// one ES module with no dependencies. It keeps a connection open whatever
// happens to it: reconnects with exponential backoff and full jitter,
// subscribes again to every channel (recovering what was missed from the
// last offset on channels with history), refreshes the token before it
// expires, and tells the application what went wrong with typed errors.
// Browsers use their WebSocket; Node passes one (the `ws` package).

const OPEN = 1;

// What went wrong, as `err.kind`:
//   'closed'        the server closed the connection (err.code, err.reason)
//   'auth'          the token was refused or expired without a refresh
//   'not_allowed'   a command the server refused with 403
//   'kicked'        the server disconnected this user (4003): no reconnect
//   'slow_consumer' the server closed with 1008: reading too slowly
//   'timeout'       no reply to a command, or to a heartbeat, in time
//   'request'       any other error reply (err.code, err.message)
export class RingcastError extends Error {
	constructor(kind, message, extra = {}) {
		super(message);
		this.name = 'RingcastError';
		this.kind = kind;
		this.code = extra.code ?? null;
		this.reason = extra.reason ?? null;
		this.command = extra.command ?? null;
	}
}

// A close code's kind of error.
function closeKind(code) {
	if (code === 4001)
		return 'auth';
	if (code === 4003)
		return 'kicked';
	if (code === 1008)
		return 'slow_consumer';
	return 'closed';
}

// An error reply's kind.
function replyKind(code) {
	if (code === 401)
		return 'auth';
	if (code === 403)
		return 'not_allowed';
	return 'request';
}

// The `exp` claim of a JWT, in ms since the epoch, or null.
export function tokenExpiry(token) {
	try {
		const part = token.split('.')[1];
		const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
		const pad = b64 + '='.repeat((4 - b64.length % 4) % 4);
		const json = typeof atob === 'function' ? atob(pad) :
			Buffer.from(pad, 'base64').toString('binary');
		const exp = JSON.parse(json).exp;
		return typeof exp === 'number' ? exp * 1000 : null;
	} catch {
		return null;
	}
}

// The wait before reconnect attempt @attempt (0 = the first): full
// jitter, a uniform draw below the exponential bound, so that a thousand
// clients dropped at once do not come back at once.
export function backoff(attempt, minDelay, maxDelay, random = Math.random) {
	const cap = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 30));
	return Math.floor(random() * cap);
}

export class Client {
	// url: ws://HOST:PORT/ws. Options:
	//   token       a JWT for ?token=, or none
	//   getToken    async () => a fresh token: called before `exp` (then
	//               sent with `refresh`) and before reconnecting after 4001
	//   refreshBefore  ms before `exp` to refresh (default 30000)
	//   WebSocket   the constructor (default globalThis.WebSocket)
	//   minDelay, maxDelay  reconnect backoff bounds, ms (500, 30000)
	//   heartbeat   ms between heartbeats, 0 for none (default 25000)
	//   timeout     ms a reply may take (default 10000)
	constructor(url, opts = {}) {
		this.url = url;
		this.token = opts.token ?? null;
		this.getToken = opts.getToken ?? null;
		this.refreshBefore = opts.refreshBefore ?? 30000;
		this.WebSocket = opts.WebSocket ?? globalThis.WebSocket;
		this.minDelay = opts.minDelay ?? 500;
		this.maxDelay = opts.maxDelay ?? 30000;
		this.heartbeat = opts.heartbeat ?? 25000;
		this.timeout = opts.timeout ?? 10000;
		if (!this.WebSocket)
			throw new TypeError('ringcast: no WebSocket: pass opts.WebSocket');
		this.state = 'idle';	// idle, connecting, open, closed
		this.ws = null;
		this.seq = 0;
		this.pending = new Map();	// seq -> {resolve, reject, timer, cmd}
		this.channels = new Map();	// name -> {handlers, epoch, offset}
		this.listeners = new Map();	// event -> Set of functions
		this.seen = new Set();		// inbox ids delivered, bounded
		this.attempt = 0;
		this.timers = { retry: null, beat: null, refresh: null };
		this.waiting = [];		// resolved at the next open
	}

	// ---- events: open, close, error, state, push, user, broadcast,
	// ---- recovered, unsubscribed
	on(event, fn) {
		if (!this.listeners.has(event))
			this.listeners.set(event, new Set());
		this.listeners.get(event).add(fn);
		return () => this.off(event, fn);
	}

	off(event, fn) {
		this.listeners.get(event)?.delete(fn);
	}

	emit(event, ...args) {
		for (const fn of [...(this.listeners.get(event) ?? [])]) {
			try {
				fn(...args);
			} catch (e) {
				queueMicrotask(() => { throw e; });
			}
		}
	}

	setState(s) {
		if (this.state !== s) {
			this.state = s;
			this.emit('state', s);
		}
	}

	// Opens the connection; resolves at the first open. Safe to call once.
	connect() {
		if (this.state === 'idle' || this.state === 'closed') {
			this.closing = false;
			this.open();
		}
		return this.ready();
	}

	// Resolves when the connection is open (at once if it is).
	ready() {
		if (this.state === 'open')
			return Promise.resolve();
		return new Promise((resolve, reject) =>
			this.waiting.push({ resolve, reject }));
	}

	// Closes for good: no reconnect.
	close() {
		this.closing = true;
		this.clearTimers();
		this.setState('closed');
		if (this.ws && this.ws.readyState <= OPEN)
			this.ws.close(1000, 'bye');
		this.failPending(new RingcastError('closed', 'client closed'));
		for (const w of this.waiting.splice(0))
			w.reject(new RingcastError('closed', 'client closed'));
	}

	clearTimers() {
		clearTimeout(this.timers.retry);
		clearInterval(this.timers.beat);
		clearTimeout(this.timers.refresh);
		this.timers = { retry: null, beat: null, refresh: null };
	}

	open() {
		this.setState('connecting');
		let url = this.url;
		if (this.token)
			url += (url.includes('?') ? '&' : '?') + 'token=' +
				encodeURIComponent(this.token);
		let ws;
		try {
			ws = new this.WebSocket(url);
		} catch (e) {
			this.lost(1006, String(e.message || e));
			return;
		}
		this.ws = ws;
		let refused = null;
		ws.onopen = () => this.opened(ws);
		ws.onmessage = (ev) => this.message(ev.data);
		// The close that follows says the rest. Node's ws also says why
		// a handshake failed ("Unexpected server response: 401"); a
		// browser never does.
		ws.onerror = (ev) => {
			const m = /server response: (\d+)/.exec(ev?.message ?? '');
			if (m)
				refused = Number(m[1]);
		};
		ws.onclose = (ev) => {
			if (this.ws !== ws)
				return;
			this.ws = null;
			if (refused === 401 || refused === 403)
				this.lost(4001, 'refused with HTTP ' + refused);
			else
				this.lost(ev.code, ev.reason || '');
		};
	}

	opened(ws) {
		if (this.ws !== ws)
			return;
		this.attempt = 0;
		this.setState('open');
		this.armRefresh();
		if (this.heartbeat > 0)
			this.timers.beat = setInterval(() => this.beat(),
						       this.heartbeat);
		this.resubscribe();
		this.emit('open');
		for (const w of this.waiting.splice(0))
			w.resolve();
	}

	// The connection is gone: say why, then come back unless told not to.
	lost(code, reason) {
		clearInterval(this.timers.beat);
		clearTimeout(this.timers.refresh);
		this.failPending(new RingcastError('closed',
			'connection closed (' + code + ')', { code, reason }));
		this.emit('close', { code, reason });
		if (this.closing)
			return;
		const kind = closeKind(code);
		if (code !== 1000 && code !== 1001 && code !== 1005 &&
		    code !== 1006)
			this.emit('error', new RingcastError(kind,
				'closed by the server: ' + code +
				(reason ? ' ' + reason : ''), { code, reason }));
		// kicked, or a token refused with no way to get another: final
		if (kind === 'kicked' || (kind === 'auth' && !this.getToken)) {
			this.setState('closed');
			for (const w of this.waiting.splice(0))
				w.reject(new RingcastError(kind, kind === 'kicked' ?
					'disconnected by the server' :
					'token refused: ' + reason, { code, reason }));
			return;
		}
		this.setState('connecting');
		const delay = backoff(this.attempt++, this.minDelay, this.maxDelay);
		this.timers.retry = setTimeout(async () => {
			if (kind === 'auth' && this.getToken) {
				try {
					this.token = await this.getToken();
				} catch (e) {
					this.emit('error', new RingcastError('auth',
						'getToken failed: ' + e));
				}
			}
			if (!this.closing)
				this.open();
		}, delay);
		this.emit('reconnecting', { attempt: this.attempt, delay });
	}

	// Gives up on a connection that stopped answering: a close handshake
	// would wait for the very peer that is gone, so the socket is
	// abandoned (terminated where the WebSocket can) and replaced now.
	drop(why) {
		const ws = this.ws;
		if (!ws)
			return;
		this.ws = null;		// its own close event is ignored
		try {
			if (typeof ws.terminate === 'function')
				ws.terminate();
			else
				ws.close(4000, 'heartbeat timeout');
		} catch {
			// closing a socket that is already gone
		}
		this.emit('error', new RingcastError('timeout', why));
		this.lost(1006, why);
	}

	failPending(err) {
		for (const [, p] of this.pending) {
			clearTimeout(p.timer);
			p.reject(err);
		}
		this.pending.clear();
	}

	// ---- commands ----------------------------------------------------

	// Sends a command once open; resolves with the reply's data (or the
	// whole reply when it has none), rejects with a RingcastError.
	async request(cmd, data) {
		if (this.state !== 'open')
			await this.ready();
		return this.send(cmd, data);
	}

	send(cmd, data) {
		const seq = ++this.seq;
		const msg = data === undefined ? { seq, cmd } : { seq, cmd, data };
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				this.pending.delete(seq);
				reject(new RingcastError('timeout', cmd + ': no reply in ' +
							 this.timeout + ' ms', { command: cmd }));
				this.emit('timeout', cmd);
				if (cmd === 'heartbeat')
					this.drop('no answer to a heartbeat in ' +
						  this.timeout + ' ms');
			}, this.timeout);
			this.pending.set(seq, { resolve, reject, timer, cmd });
			try {
				this.ws.send(JSON.stringify(msg));
			} catch (e) {
				clearTimeout(timer);
				this.pending.delete(seq);
				reject(new RingcastError('closed', String(e.message || e)));
			}
		});
	}

	reply(msg) {
		const p = this.pending.get(msg.seq);
		if (!p)
			return;
		this.pending.delete(msg.seq);
		clearTimeout(p.timer);
		if (msg.code === 200)
			p.resolve(msg.data ?? msg);
		else
			p.reject(new RingcastError(replyKind(msg.code),
				(msg.cmd ?? p.cmd) + ': ' + msg.msg,
				{ code: msg.code, command: p.cmd }));
	}

	beat() {
		if (this.state === 'open')
			this.send('heartbeat').catch(() => {});
	}

	// Subscribes @handler(data, push) to @channel; returns a function that
	// removes it (and unsubscribes once no handler is left). Resolves once
	// the server has the subscription. On a channel with history, @from
	// ({epoch, offset}, as a history() reply gives them) starts after that
	// message: what came between arrives first.
	async subscribe(channel, handler, from) {
		let ch = this.channels.get(channel);
		const first = !ch;
		if (first) {
			ch = { handlers: new Set(), epoch: null, offset: 0,
			       confirmed: null };
			if (from?.epoch) {
				ch.epoch = from.epoch;
				ch.offset = from.offset ?? 0;
			}
			this.channels.set(channel, ch);
		}
		ch.handlers.add(handler);
		const remove = () => this.unsubscribe(channel, handler);
		if (first && this.state === 'open')
			ch.confirmed = this.subscribeOne(channel, ch);
		else if (first)
			await this.ready();	// resubscribe() sends it
		try {
			await ch.confirmed;
		} catch (e) {
			// refused (403, a bad name): forget it, or every reconnect
			// would ask again
			if (this.channels.get(channel) === ch)
				this.channels.delete(channel);
			throw e;
		}
		return remove;
	}

	async unsubscribe(channel, handler) {
		const ch = this.channels.get(channel);
		if (!ch)
			return;
		if (handler)
			ch.handlers.delete(handler);
		if (handler && ch.handlers.size)
			return;
		this.channels.delete(channel);
		if (this.state === 'open')
			await this.send('unsubscribe', { channels: [channel] });
	}

	// One channel, recovering from its last offset when it has one. Every
	// recovery ends in a `recovered` event, once the channel is subscribed.
	async subscribeOne(channel, ch) {
		let refused = false;
		if (ch.epoch !== null) {
			try {
				const r = await this.send('subscribe',
					{ channel, offset: ch.offset, epoch: ch.epoch });
				if (r.recovered === false) {
					ch.epoch = r.epoch ?? null;
					ch.offset = r.offset ?? 0;
				}
				this.emit('recovered', { channel, recovered: !!r.recovered,
							 epoch: r.epoch, offset: r.offset });
				return;
			} catch (e) {
				if (e.code !== 400)
					throw e;
				// an offset the history never reached (a Redis that
				// lost its last writes), or no history: subscribe
				// afresh, and nothing missed comes back
				ch.epoch = null;
				refused = true;
			}
		}
		await this.send('subscribe', { channels: [channel] });
		if (refused)
			this.emit('recovered', { channel, recovered: false });
	}

	// After each open: every channel again, plain ones 256 a command.
	// Each channel's `confirmed` settles with its reply.
	resubscribe() {
		const plain = [];
		const fail = (e) => { this.emit('error', e); };
		for (const [name, ch] of this.channels) {
			if (ch.sys) {
				ch.confirmed = this.send('sys', { token: this.sysKey });
				ch.confirmed.catch(fail);
			} else if (ch.epoch !== null) {
				ch.confirmed = this.subscribeOne(name, ch);
				ch.confirmed.catch(fail);
			} else {
				plain.push(name);
			}
		}
		for (let i = 0; i < plain.length; i += 256) {
			const names = plain.slice(i, i + 256);
			const p = this.send('subscribe', { channels: names });
			p.catch(fail);
			for (const name of names)
				this.channels.get(name).confirmed = p;
		}
	}

	// The node's own figures, once a second, for a status page: needs the
	// engine's API key (none when it has none). @handler(figures).
	async system(key, handler) {
		this.sysKey = key ?? '';
		let ch = this.channels.get('$sys');
		if (!ch) {
			ch = { handlers: new Set(), epoch: null, offset: 0,
			       confirmed: null, sys: true };
			this.channels.set('$sys', ch);
			if (this.state === 'open')
				ch.confirmed = this.send('sys', { token: this.sysKey });
			else
				await this.ready();
		}
		ch.handlers.add(handler);
		try {
			await ch.confirmed;
		} catch (e) {
			if (this.channels.get('$sys') === ch)
				this.channels.delete('$sys');
			throw e;
		}
		return () => this.channels.delete('$sys');
	}

	// Publishes @data on @channel (the engine needs --client-publish).
	publish(channel, data) {
		return this.request('publish', { channel, data });
	}

	// Acknowledges inbox messages by id: they are not sent again.
	ack(ids) {
		return this.request('ack', { ids: Array.isArray(ids) ? ids : [ids] });
	}

	// This user's unread inbox: {unread, evicted, ids}.
	inbox() {
		return this.request('inbox');
	}

	// The last @limit messages of @channel, or with @offset the first
	// @limit after it. A reply with `more` holds part of them: call again
	// with its `next` as @offset for the rest.
	history(channel, limit, offset) {
		const data = { channel };

		if (limit !== undefined)
			data.limit = limit;
		if (offset !== undefined)
			data.offset = offset;
		return this.request('history', data);
	}

	// ---- the token ---------------------------------------------------

	armRefresh() {
		clearTimeout(this.timers.refresh);
		const exp = this.token ? tokenExpiry(this.token) : null;
		if (!exp || !this.getToken)
			return;
		const wait = Math.max(0, exp - this.refreshBefore - Date.now());
		// setTimeout holds at most 2^31-1 ms: re-arm from there
		this.timers.refresh = setTimeout(() => {
			if (Date.now() < exp - this.refreshBefore)
				this.armRefresh();
			else
				this.refresh().catch((e) => this.emit('error', e));
		}, Math.min(wait, 2 ** 31 - 1));
	}

	// Fetches a fresh token and sends it; resolves once the server took it.
	async refresh() {
		const token = await this.getToken();
		this.token = token;
		try {
			await this.request('refresh', { token });
		} finally {
			this.armRefresh();
		}
	}

	// ---- what arrives ------------------------------------------------

	message(raw) {
		let msg;
		try {
			msg = JSON.parse(typeof raw === 'string' ? raw : raw.toString());
		} catch {
			return;
		}
		if (msg.code !== undefined) {
			this.reply(msg);
		} else if (msg.cmd === 'push' && msg.channel !== undefined) {
			this.channelPush(msg);
		} else if (msg.cmd === 'push' && msg.user !== undefined) {
			if (msg.id !== undefined) {
				if (this.seen.has(msg.id))
					return;	// another connection's, or a replay
				this.seen.add(msg.id);
				if (this.seen.size > 10000)
					this.seen.delete(this.seen.values().next().value);
			}
			this.emit('user', msg.data, msg);
		} else if (msg.cmd === 'broadcast') {
			this.emit('broadcast', msg.data, msg);
		} else if (msg.cmd === 'unsubscribed') {
			for (const name of msg.data?.channels ?? [])
				this.channels.delete(name);
			this.emit('unsubscribed', msg.data);
		}
	}

	channelPush(msg) {
		const ch = this.channels.get(msg.channel);
		if (!ch)
			return;
		if (msg.epoch !== undefined) {
			if (msg.epoch === ch.epoch && msg.offset <= ch.offset)
				return;	// had it: a recovery's seam
			ch.epoch = msg.epoch;
			ch.offset = msg.offset;
		}
		this.emit('push', msg.channel, msg.data, msg);
		for (const fn of [...ch.handlers]) {
			try {
				fn(msg.data, msg);
			} catch (e) {
				queueMicrotask(() => { throw e; });
			}
		}
	}
}

export default Client;
