// SPDX-License-Identifier: MIT
// Types of ringcast.js, the client of ringcast's /ws protocol.

export type ErrorKind = 'closed' | 'auth' | 'not_allowed' | 'kicked' |
	'slow_consumer' | 'timeout' | 'request';

export class RingcastError extends Error {
	readonly kind: ErrorKind;
	/** The close code, or the error reply's code. */
	readonly code: number | null;
	/** The close reason. */
	readonly reason: string | null;
	/** The command an error reply answered. */
	readonly command: string | null;
}

export type State = 'idle' | 'connecting' | 'open' | 'closed';

export interface Push<T = unknown> {
	cmd: 'push' | 'broadcast';
	channel?: string;
	user?: string;
	data: T;
	/** Channels with history. */
	epoch?: string;
	offset?: number;
	/** Inbox messages (push with persist=1): acknowledge with ack(). */
	id?: string;
}

export interface Options {
	/** A JWT, sent as ?token= at the upgrade. */
	token?: string;
	/** A fresh token: called refreshBefore ms before exp, and after 4001. */
	getToken?: () => Promise<string> | string;
	refreshBefore?: number;
	/** The WebSocket constructor: the browser's, or Node's `ws`. */
	WebSocket?: unknown;
	/** Backoff bounds in ms (default 500 and 30000), full jitter. */
	minDelay?: number;
	maxDelay?: number;
	/** ms between heartbeats (default 25000; 0: none). */
	heartbeat?: number;
	/** ms a reply may take (default 10000). */
	timeout?: number;
}

/** How a recovery went. `recovered: false`: some missed messages will not
 * come (reload the channel's state). Without epoch and offset when the
 * server refused the recovery (400) and the channel was subscribed afresh. */
export interface Recovered {
	channel: string;
	recovered: boolean;
	/**
	 * The channel's epoch now; null when it keeps nothing at the moment
	 * (embedded broker: a history that expired whole), until its next
	 * message begins one. With Redis always a string.
	 */
	epoch?: string | null;
	offset?: number;
}

export interface EventMap {
	open: () => void;
	close: (e: { code: number; reason: string }) => void;
	error: (e: RingcastError) => void;
	state: (s: State) => void;
	reconnecting: (e: { attempt: number; delay: number }) => void;
	push: (channel: string, data: unknown, push: Push) => void;
	user: (data: unknown, push: Push) => void;
	broadcast: (data: unknown, push: Push) => void;
	recovered: (e: Recovered) => void;
	unsubscribed: (e: { reason: string; channels: string[] }) => void;
	timeout: (command: string) => void;
}

export interface ShardFigures {
	conns: number; ws: number; subs: number; in: number; published: number;
	delivered: number; bytes_out: number; slow: number;
}

export interface SystemFigures {
	/** Unix ms. */
	t: number;
	uptime: number;
	redis: 'up' | 'down' | null;
	shards: ShardFigures[];
}

export class Client {
	constructor(url: string, opts?: Options);
	readonly state: State;
	token: string | null;
	connect(): Promise<void>;
	ready(): Promise<void>;
	close(): void;
	on<K extends keyof EventMap>(event: K, fn: EventMap[K]): () => void;
	off<K extends keyof EventMap>(event: K, fn: EventMap[K]): void;
	/** Resolves with a function that removes the handler. */
	subscribe<T = unknown>(channel: string,
		handler: (data: T, push: Push<T>) => void,
		from?: { epoch: string | null; offset: number }):
		Promise<() => Promise<void>>;
	unsubscribe(channel: string, handler?: Function): Promise<void>;
	publish(channel: string, data: unknown): Promise<unknown>;
	ack(ids: string | string[]): Promise<{ acked: number; unread: number }>;
	inbox(): Promise<{ unread: number; evicted: number; ids: string[] }>;
	/**
	 * The last `limit` messages, or with `offset` the first `limit` after
	 * it. `more`: the reply was cut (its size); ask again with `next`.
	 */
	history(channel: string, limit?: number, offset?: number):
		Promise<{ epoch: string | null; offset: number; messages: Push[];
			  more?: boolean; next?: number }>;
	refresh(): Promise<void>;
	/** The node's figures once a second ($sys); needs the API key. */
	system(key: string | null, handler: (figures: SystemFigures) => void):
		Promise<() => void>;
}

/** ms to wait before reconnect attempt n: uniform in [0, min(max, min*2^n)). */
export function backoff(attempt: number, minDelay: number, maxDelay: number,
	random?: () => number): number;
/** A JWT's exp in ms since the epoch, or null. */
export function tokenExpiry(token: string): number | null;

export default Client;
