// SPDX-License-Identifier: MIT
// Pusher clients carried by a live hand-over (test_handover_live.py's
// "pusher" check): pusher-js 8 clients A (signed in as ua), B (signed
// in as ub, watching ua) and C on a public, a private and a presence
// channel of one app, and the official `pusher` server SDK publishing
// {"n": i} to each channel and to user ua through the hand-over, one
// request at a time per stream (one closed unanswered, while the old
// process hands over, is sent again: it was not done).
// Usage: node handover_pusher_live.mjs CONFIG_JSON (host, port, app, tls:
// wss:// and https://, the CA trusted through NODE_EXTRA_CA_CERTS).
// Lines out: "ready" once everything is set up and every stream had
// answers; after "handed" on stdin (the old process has exited) a few
// more each, then "end" on each: "result JSON" (what each client saw,
// what was answered 200, the HTTP API's answers); after "terminate" on
// stdin, ua's connections terminated by the SDK: "after JSON". Every
// wait is for an event, bounded by a deadline that only turns a hang
// into a failure (exit 1, saying what).
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const PusherJs = require('pusher-js');
const PusherServer = require('pusher');
const DEADLINE_MS = 60000;
const CHANS = ['room-live', 'private-live', 'presence-live'];
const BEFORE = 3;	// answers per stream before "ready"
const AFTER = 5;	// ... and after "handed"
const RETRIES = 2000;	// of one request closed unanswered

const cfg = JSON.parse(process.argv[2]);
const sdk = new PusherServer({
    appId: cfg.app.id, key: cfg.app.key, secret: cfg.app.secret,
    host: cfg.host, port: String(cfg.port), timeout: DEADLINE_MS,
    useTLS: !!cfg.tls,
});

function fail(msg) {
    console.error('handover_pusher_live: ' + msg);
    process.exit(1);
}

// @promise, or a failure after the deadline.
function within(promise, what) {
    let t;
    const late = new Promise(() => {
        t = setTimeout(() => fail('no ' + what), DEADLINE_MS);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(t));
}

// Resolves once @cond() holds, checked whenever @emitter emits @event.
function until(emitter, event, cond, what) {
    if (cond())
        return Promise.resolve();
    return within(new Promise((resolve) => {
        const cb = () => {
            if (!cond())
                return;
            emitter.unbind(event, cb);
            resolve();
        };
        emitter.bind(event, cb);
    }), what);
}

// Lines from stdin, each awaited by next().
const lines = [];
let waiter = null;
createInterface({ input: process.stdin }).on('line', (l) => {
    lines.push(l.trim());
    if (waiter)
        waiter();
});
async function next(want) {
    while (!lines.length)
        await new Promise((r) => { waiter = r; });
    const l = lines.shift();
    if (l !== want)
        fail('stdin said ' + l + ', not ' + want);
}

// One pusher-js client as @user (presence's user_id), its record.
function client(name, user, watchlist) {
    const p = new PusherJs(cfg.app.key, {
        cluster: 'ringcast', wsHost: cfg.host, wsPort: cfg.port,
        wssPort: cfg.port, forceTLS: !!cfg.tls,
        enabledTransports: ['ws', 'wss'], disableStats: true,
        userAuthentication: {
            customHandler: ({ socketId }, cb) => cb(null,
                sdk.authenticateUser(socketId, Object.assign(
                    { id: user }, watchlist ? { watchlist } : {}))),
        },
        channelAuthorization: {
            customHandler: ({ socketId, channelName }, cb) => cb(null,
                sdk.authorizeChannel(socketId, channelName,
                    channelName.startsWith('presence-') ?
                        { user_id: user, user_info: { name: name } } :
                        undefined)),
        },
    });
    const c = { name, user, p, chans: {}, got: {}, ends: 0, states: [],
                errors: [], members: [], counts: [], watch: [],
                user_got: [], user_end: false, client_events: [] };
    p.connection.bind('state_change', (s) => c.states.push(s.current));
    p.connection.bind('error', (e) => c.errors.push(
        JSON.stringify(e.data || e.error || e.type || e)));
    return c;
}

async function setUp(c, chans) {
    const p = c.p;
    if (p.connection.state !== 'connected')
        await until(p.connection, 'state_change',
                    () => p.connection.state === 'connected',
                    c.name + ' connected');
    c.states.length = 0;	// from here on, it stays connected
    for (const n of chans) {
        const ch = p.subscribe(n);
        c.got[n] = [];
        ch.bind('n', (d) => c.got[n].push(d.n));
        ch.bind('end', () => {
            c.ends++;
            if (c.onEnd)
                c.onEnd();
        });
        ch.bind('pusher:member_added', (m) => c.members.push(['+', m.id]));
        ch.bind('pusher:member_removed', (m) => c.members.push(['-', m.id]));
        ch.bind('pusher:subscription_count',
                (d) => c.counts.push([n, d.subscription_count]));
        ch.bind('client-hi', (d) => c.client_events.push([n, d.x]));
        c.chans[n] = ch;
        await until(ch, 'pusher:subscription_succeeded',
                    () => ch.subscribed, c.name + ' on ' + n);
    }
}

async function signIn(c) {
    c.p.user.bind('u', (d) => c.user_got.push(d.n));
    c.p.user.bind('end', () => { c.user_end = true; });
    c.p.user.watchlist.bind('online', (e) => c.watch.push(['on', e.user_ids]));
    c.p.user.watchlist.bind('offline',
                            (e) => c.watch.push(['off', e.user_ids]));
    c.p.signin();
    await within(c.p.user.signinDonePromise, c.name + "'s signin");
    const ch = c.p.user.serverToUserChannel;
    if (!ch)
        fail(c.name + ': no server-to-user channel');
    await until(ch, 'pusher:subscription_succeeded', () => ch.subscribed,
                c.name + "'s user channel");
}

// A stream publishing {"n": 0, 1, ...} through @send until stopped.
function stream(what, ev, send) {
    const s = { what, ok: [], stop: false, retries: 0 };
    s.done = (async () => {
        for (let i = 0; !s.stop; i++) {
            for (let k = 0; ; k++) {
                if (k === RETRIES)
                    fail(what + ': ' + RETRIES + ' tries of ' + i);
                let r;
                try {
                    r = await send(ev, { n: i });
                } catch (e) {
                    if (e.status !== undefined)
                        fail(what + ' answered ' + e.status + ': ' + e.body);
                    s.retries++;	// closed unanswered: not done
                    await new Promise((res) => setTimeout(res, 20));
                    continue;
                }
                if (r.status !== 200)
                    fail(what + ' answered ' + r.status);
                s.ok.push(i);
                break;
            }
        }
    })();
    return s;
}

// Until every stream in @ss has @n answers more than @from's.
async function answered(ss, n, from) {
    for (let k = 0; k < 100000; k++) {
        if (ss.every((s, i) => s.ok.length >= from[i] + n))
            return;
        await new Promise((r) => setTimeout(r, 10));
    }
    fail('streams never answered ' + n);
}

// The presence channel's members as @c sees them, sorted.
function members(c) {
    const ids = [];
    c.chans['presence-live'].members.each((m) => ids.push(m.id));
    return ids.sort();
}

async function sdkGet(path, params) {
    const r = await within(sdk.get({ path, params }), 'get ' + path);
    return [r.status, await r.json()];
}

async function main() {
    const a = client('A', 'ua'), b = client('B', 'ub', ['ua']);
    const c = client('C', 'uc');
    const all = [a, b, c];
    for (const x of all)
        await setUp(x, CHANS);
    await signIn(a);
    await signIn(b);	// ua online already: told at once
    await until(b.p.user.watchlist, 'online', () => b.watch.length === 1,
                'B told ua is online');
    const ss = CHANS.map((n) => stream(n, 'n',
                                       (ev, d) => sdk.trigger(n, ev, d)));
    ss.push(stream('user ua', 'u', (ev, d) => sdk.sendToUser('ua', ev, d)));
    await answered(ss, BEFORE, ss.map(() => 0));
    // the set-up's counts sent (one a second at most) before the
    // hand-over: A and B hear 3 only from the broadcast of the last,
    // after which none is due; C's may come later (its own came first)
    for (const x of all)
        for (const n of CHANS)
            await until(x.chans[n], 'pusher:subscription_count',
                        () => x.counts.some(([m, k]) => m === n && k === 3),
                        x.name + "'s count 3 on " + n);
    const before = {
        socket_ids: all.map((x) => x.p.connection.socket_id),
        members: all.map(members),
        counts: all.map((x) => x.counts.length),
        member_events: all.map((x) => x.members.length),
    };
    console.log('ready');
    await next('handed');
    await answered(ss, AFTER, ss.map((s) => s.ok.length));
    for (const s of ss)
        s.stop = true;
    await Promise.all(ss.map((s) => s.done));
    for (const n of CHANS)
        await within(sdk.trigger(n, 'end', {}), 'end on ' + n);
    await within(sdk.sendToUser('ua', 'end', {}), 'end to ua');
    // the ends come on three channels in any order: a wait bound to one
    // of them would miss the last if it came on another
    for (const x of all)
        await within(new Promise((resolve) => {
            x.onEnd = () => {
                if (x.ends === CHANS.length)
                    resolve();
            };
            x.onEnd();
        }), x.name + "'s ends");
    await until(a.p.user, 'end', () => a.user_end, "ua's end");
    const out = {
        before, ok: Object.fromEntries(ss.map((s) => [s.what, s.ok])),
        retries: ss.map((s) => s.retries),
        socket_ids: all.map((x) => x.p.connection.socket_id),
        states: all.map((x) => x.states), errors: all.map((x) => x.errors),
        members: all.map(members),
        member_events: all.map((x, i) =>
            x.members.slice(before.member_events[i])),
        got: all.map((x) => x.got), user_got: a.user_got,
        watch: b.watch,
    };
    // the HTTP API counts them on the new process as on the old
    out.users = await sdkGet('/channels/presence-live/users', {});
    out.room = await sdkGet('/channels/room-live',
                            { info: 'subscription_count' });
    // a client event after: the others get it, the sender not
    if (!a.chans['private-live'].trigger('client-hi', { x: 1 }))
        fail('client event refused');
    for (const x of [b, c])
        await until(x.chans['private-live'], 'client-hi',
                    () => x.client_events.length === 1,
                    x.name + "'s client event");
    out.client_events = all.map((x) => x.client_events);
    // a fourth subscriber: the first count each carried client hears
    // after the hand-over is 4 (none said 3 again for the carried ones)
    const d = client('D', 'ud');
    await setUp(d, ['room-live']);
    for (const x of all)
        await until(x.chans['room-live'], 'pusher:subscription_count',
                    () => x.counts.some(([n, k]) => n === 'room-live' &&
                                        k === 4), x.name + "'s count 4");
    out.counts_after = all.map((x, i) => x.counts.slice(before.counts[i]));
    console.log('result ' + JSON.stringify(out));
    // ua terminated: its user channel and watch membership came over
    await next('terminate');
    const mark = [b, c].map((x) => x.members.length);
    const status = (await within(sdk.terminateUserConnections('ua'),
                                 'terminate')).status;
    await until(a.p.connection, 'state_change',
                () => a.p.connection.state !== 'connected', 'A closed');
    await until(b.p.user.watchlist, 'offline', () => b.watch.length === 2,
                'B told ua went offline');
    for (const x of [b, c])
        await until(x.chans['presence-live'], 'pusher:member_removed',
                    () => x.members.length > mark[x === b ? 0 : 1],
                    x.name + ' told ua left');
    console.log('after ' + JSON.stringify({
        status, watch: b.watch,
        member_events: [b.members.slice(mark[0]), c.members.slice(mark[1])],
        states: [b.states, c.states] }));
    for (const x of [a, b, c, d])
        x.p.disconnect();
    process.exit(0);
}

main().catch((e) => fail(e.stack || String(e)));
