// SPDX-License-Identifier: MIT
// The official Pusher clients against a running ringcast (test_pusher.py
// runs it): pusher-js 8 (its Node build) connecting to /app/{key}, with
// private and presence channels authorized by the official `pusher`
// server SDK (authorizeChannel, as an app's auth endpoint would), and the
// SDK's trigger() publishing through ringcast's /apps/{id}/events.
// Usage: node pusher_clients.mjs SCENARIO CONFIG_JSON; CONFIG_JSON holds
// host, ports (one per node), tls, app {id,key,secret}. Prints one JSON
// line of results and exits 0, or says what failed and exits 1. Every
// wait is for an event, bounded by a deadline that only turns a hang
// into a failure.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const PusherJs = require('pusher-js');
const PusherServer = require('pusher');
const DEADLINE_MS = 30000;

const [scenario, cfgText] = process.argv.slice(2);
const cfg = JSON.parse(cfgText);
const sdkFor = (port, secret) => new PusherServer({
    appId: cfg.app.id, key: cfg.app.key, secret: secret || cfg.app.secret,
    host: cfg.host, port: String(port), useTLS: cfg.tls,
});

function fail(msg) {
    console.error('pusher_clients ' + scenario + ': ' + msg);
    process.exit(1);
}

// Resolves when @emitter emits @event (once), or fails after a deadline.
function once(emitter, event, what) {
    return new Promise((resolve) => {
        const t = setTimeout(() => fail('no ' + (what || event)), DEADLINE_MS);
        const cb = (data) => {
            clearTimeout(t);
            emitter.unbind(event, cb);
            resolve(data);
        };
        emitter.bind(event, cb);
    });
}

// @promise, or a failure after the deadline.
function within(promise, what) {
    let t;
    const late = new Promise(() => {
        t = setTimeout(() => fail('no ' + what), DEADLINE_MS);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(t));
}

// A pusher-js client of the app on @port; @auth signs its channels.
function client(port, opts = {}) {
    const auth = opts.auth || sdkFor(cfg.ports[0]);
    const signer = opts.signer || auth;
    return new PusherJs(opts.key || cfg.app.key, {
        userAuthentication: {
            customHandler: ({ socketId }, cb) => cb(null,
                signer.authenticateUser(socketId, Object.assign(
                    { id: opts.user || 'u1', name: 'N' },
                    opts.watchlist ? { watchlist: opts.watchlist } : {}))),
        },
        cluster: 'ringcast', wsHost: cfg.host, wsPort: port, wssPort: port,
        forceTLS: cfg.tls, enabledTransports: ['ws', 'wss'],
        disableStats: true,
        channelAuthorization: {
            customHandler: ({ socketId, channelName }, cb) => {
                const user = channelName.startsWith('presence-') ?
                    { user_id: opts.user || 'u1',
                      user_info: { name: 'Ann "A" \u00e9' } } : undefined;
                cb(null, auth.authorizeChannel(socketId, channelName, user));
            },
        },
    });
}

// Until @p is connected (it may be already: the event went by).
async function connected(p) {
    if (p.connection.state !== 'connected')
        await once(p.connection, 'connected', 'connected');
}

async function subscribed(p, name) {
    const ch = p.subscribe(name);
    const data = await once(ch, 'pusher:subscription_succeeded',
                            'subscription_succeeded on ' + name);
    return [ch, data];
}

// A client on node 0 and one on node 1 on public, private and presence
// channels; the SDK publishes on node 1; each event reaches both once.
async function fanout() {
    const a = client(cfg.ports[0]), b = client(cfg.ports[1], { user: 'u2' });
    const names = ['room-1', 'private-room', 'presence-room'];
    const out = { socket_ids: [], events: [] };

    for (const p of [a, b]) {
        await connected(p);
        out.socket_ids.push(p.connection.socket_id);
    }
    const chans = [];
    for (const n of names) {
        const [ca] = await subscribed(a, n);
        const [cb, members] = await subscribed(b, n);
        chans.push([ca, cb]);
        if (n.startsWith('presence-'))
            out.me = members.me.id;
    }
    const sdk = sdkFor(cfg.ports[1]);
    for (let i = 0; i < names.length; i++) {
        const payload = { n: i, text: 'x\u00e9"\\\n' };
        const got = chans[i].map((c) => once(c, 'news', 'news on ' +
                                             names[i]));
        const r = await sdk.trigger(names[i], 'news', payload);
        if (r.status !== 200)
            fail('trigger answered ' + r.status);
        for (const d of await Promise.all(got))
            out.events.push([names[i], d]);
    }
    // one trigger to three channels, then a batch of three events
    const all = chans.flat();
    let got = all.map((c) => once(c, 'multi', 'multi'));
    let r = await sdk.trigger(names, 'multi', { all: true });
    if (r.status !== 200)
        fail('trigger to 3 channels answered ' + r.status);
    out.multi = (await Promise.all(got)).length;
    got = all.map((c) => once(c, 'batched', 'batched'));
    r = await sdk.triggerBatch(names.map((n, i) => (
        { channel: n, name: 'batched', data: { i } })));
    if (r.status !== 200)
        fail('triggerBatch answered ' + r.status);
    out.batched = (await Promise.all(got)).map((d) => d.i);
    a.disconnect();
    b.disconnect();
    return out;
}

// A private channel authorized with another secret: subscription_error.
async function badauth() {
    const p = client(cfg.ports[0],
                     { auth: sdkFor(cfg.ports[0], 'not-the-secret') });
    await connected(p);
    const ch = p.subscribe('private-x');
    const err = await once(ch, 'pusher:subscription_error',
                           'subscription_error');
    p.disconnect();
    return { error: err };
}

// An unknown key: close 4001, which pusher-js takes as refused: it
// disconnects (a retry would go back to connecting or unavailable).
async function unknownkey() {
    const p = client(cfg.ports[0], { key: 'no-such-key' });
    const states = [];
    p.connection.bind('state_change', (s) => states.push(s.current));
    const err = await once(p.connection, 'error', 'error');
    if (p.connection.state !== 'disconnected')
        await once(p.connection, 'disconnected', 'disconnected');
    return { error: err.error, states, state: p.connection.state };
}

// Presence on one node: u1 (a), then u2 twice (b, then c). a hears
// u2 added once, at its first connection, and removed once, at its last.
async function presence() {
    const port = cfg.ports[0], name = 'presence-p';
    const a = client(port, { user: 'u1' });
    const [ca] = await subscribed(a, name);
    const seen = [];
    ca.bind('pusher:member_added', (m) => seen.push(['added', m.id]));
    ca.bind('pusher:member_removed', (m) => seen.push(['removed', m.id]));
    const b = client(port, { user: 'u2' });
    const addedB = once(ca, 'pusher:member_added', 'member_added');
    const [, membersB] = await subscribed(b, name);
    await addedB;
    const c = client(port, { user: 'u2' });
    const [cc, membersC] = await subscribed(c, name);
    const out = { b: [], c: [], infoA: membersB.get('u1').info };
    membersB.each((m) => out.b.push(m.id));
    membersC.each((m) => out.c.push(m.id));
    // c goes first: u2 still has b, so nothing is said
    const goneC = once(ca, 'pusher:member_removed', 'member_removed');
    c.disconnect();
    b.disconnect();
    await goneC;
    out.seen = seen;
    out.countA = ca.members.count;
    a.disconnect();
    void cc;
    return out;
}

// Client events on a private and a presence channel, the receiver on
// the other node: the other subscribers get them (with user_id on presence), the sender not:
// the first event it sees on the channel is the server's that follows.
async function clientEvents() {
    const port = cfg.ports[0];
    const [s, r] = [client(port, { user: 'sender' }),
                    client(cfg.ports[1], { user: 'rcpt' })];
    const out = {};
    for (const name of ['private-chat', 'presence-chat']) {
        const [cs] = await subscribed(s, name);
        const [cr] = await subscribed(r, name);
        const sent = [];
        cs.bind_global((ev) => {
            if (!ev.startsWith('pusher')) sent.push(ev);
        });
        const got = new Promise((resolve) => cr.bind('client-msg',
            (data, meta) => resolve({ data, user_id: meta && meta.user_id })));
        const news = once(cs, 'news', 'news on ' + name);
        if (!cs.trigger('client-msg', { hi: name }))
            fail('trigger refused on ' + name);
        out[name] = await got;
        await sdkFor(port).trigger(name, 'news', 'after');
        await news;
        out[name].sender_saw = sent;
    }
    s.disconnect();
    r.disconnect();
    return out;
}

// pusher.signin() with the SDK's authenticateUser(), then the SDK's
// sendToUser() on the other node reaches the user's channel.
async function user() {
    const p = client(cfg.ports[0], { user: 'u9' });
    p.signin();
    await within(p.user.signinDonePromise, 'signin');
    const ch = p.user.serverToUserChannel;
    if (!ch)
        fail('no server-to-user channel after signin');
    if (!ch.subscribed)
        await once(ch, 'pusher:subscription_succeeded',
                   'subscription_succeeded on ' + ch.name);
    const got = once(p.user, 'hello', 'hello');
    await sdkFor(cfg.ports[1]).sendToUser('u9', 'hello', { x: 1 });
    const out = { channel: ch.name, data: await got, id: p.user.user_data.id };
    p.disconnect();
    return out;
}

// A signin signed with another secret: pusher:error and close 4009,
// which pusher-js takes as refused.
async function badsignin() {
    const p = client(cfg.ports[0],
                     { signer: sdkFor(cfg.ports[0], 'not-the-secret') });
    await connected(p);
    const errors = [];
    p.connection.bind('error', (e) => errors.push(e));
    const gone = once(p.connection, 'disconnected', 'disconnected');
    p.signin();
    await gone;
    return { errors, state: p.connection.state };
}

// The SDK's get() of @path with @params: [status, the JSON answer]
// (the SDK throws a RequestError, with the status, for a non-2xx).
async function sdkGet(sdk, path, params) {
    try {
        const r = await within(sdk.get({ path, params }), 'get ' + path);
        return [r.status, await r.json()];
    } catch (e) {
        if (e.status === undefined)
            throw e;
        return [e.status, JSON.parse(e.body)];
    }
}

// Until @cond(answer) holds for get(@path): bounded in tries and time.
async function getUntil(sdk, path, params, cond, what) {
    for (let i = 0; i < 300; i++) {
        const [, doc] = await sdkGet(sdk, path, params);
        if (cond(doc))
            return doc;
        await new Promise((r) => setTimeout(r, 50));
    }
    fail('never ' + what);
}

// Two clients, one on each node (or both on the one), subscribed; the
// SDK's get() of /channels, /channels/{name} and .../users on the last
// node, which counts both (with Redis, once each node has written its
// counts: waited for), then after an unsubscribe and the disconnects.
async function queries() {
    const last = cfg.ports[cfg.ports.length - 1];
    const a = client(cfg.ports[0]), b = client(last, { user: 'u2' });
    const sdk = sdkFor(last);
    const out = {};

    await subscribed(a, 'q-room');
    await subscribed(b, 'q-room');
    await subscribed(a, 'q-other');
    await subscribed(b, 'private-q');
    await subscribed(a, 'presence-q');
    await subscribed(b, 'presence-q');
    out.pone = await getUntil(sdk, '/channels/presence-q',
                              { info: 'user_count,subscription_count' },
                              (d) => d.subscription_count === 2,
                              'both nodes counted');
    out.pusers = await sdkGet(sdk, '/channels/presence-q/users', {});
    const r = await within(sdk.trigger(['presence-q', 'q-room'], 'e', 'x',
        { info: 'user_count,subscription_count' }), 'trigger with info');
    out.pinfo = [r.status, await r.json()];
    out.plist = await sdkGet(sdk, '/channels', { info: 'user_count',
                                                filter_by_prefix: 'presence-' });
    out.nousers = await sdkGet(sdk, '/channels/q-room/users', {});
    out.all = await sdkGet(sdk, '/channels', {});
    out.counts = await sdkGet(sdk, '/channels',
                              { info: 'subscription_count' });
    out.priv = await sdkGet(sdk, '/channels',
                            { filter_by_prefix: 'private-' });
    out.one = await sdkGet(sdk, '/channels/q-room',
                           { info: 'subscription_count' });
    out.plain = await sdkGet(sdk, '/channels/q-room', {});
    out.users = await sdkGet(sdk, '/channels', { info: 'user_count' });
    b.unsubscribe('q-room');
    out.after = await getUntil(sdk, '/channels/q-room',
                               { info: 'subscription_count' },
                               (d) => d.subscription_count === 1,
                               'one subscriber left');
    a.disconnect();
    b.disconnect();
    out.gone = await getUntil(sdk, '/channels', {},
                              (d) => !Object.keys(d.channels).some(
                                  (n) => n.startsWith('q') ||
                                      n === 'private-q'),
                              'the channels gone');
    out.none = await sdkGet(sdk, '/channels/q-room', {});
    return out;
}

// Two connections signed in as u7 (one per node) and one as u8; the
// SDK's terminateUserConnections('u7') on node 1: both u7's close (with
// the code pusher-js gets), u8's stays.
async function terminate() {
    const a = client(cfg.ports[0], { user: 'u7' });
    const b = client(cfg.ports[1], { user: 'u7' });
    const c = client(cfg.ports[0], { user: 'u8' });
    const out = { codes: [] };

    for (const p of [a, b, c]) {
        p.signin();
        await within(p.user.signinDonePromise, 'signin');
    }
    const gone = [a, b].map((p) => new Promise((resolve) => {
        p.connection.bind('error', (e) => {
            if (e.type === 'WebSocketError' || e.type === 'PusherError')
                out.codes.push((e.data || e.error?.data || {}).code);
        });
        p.connection.bind('disconnected', resolve);
    }));
    const r = await within(sdkFor(cfg.ports[1]).terminateUserConnections(
        'u7'), 'terminateUserConnections');
    out.status = r.status;
    await within(Promise.all(gone), 'u7 disconnected');
    out.states = [a, b, c].map((p) => p.connection.state);
    c.disconnect();
    return out;
}

// Until @ch's pusher:subscription_count says @n (it may have already).
function countIs(ch, n) {
    if (ch.subscriptionCount === n)
        return Promise.resolve(n);
    return new Promise((resolve) => {
        const t = setTimeout(() => fail('subscription_count never ' + n +
                                        ' (' + ch.subscriptionCount + ')'),
                             DEADLINE_MS);
        const cb = (d) => {
            if (d.subscription_count !== n)
                return;
            clearTimeout(t);
            ch.unbind('pusher:subscription_count', cb);
            resolve(n);
        };
        ch.bind('pusher:subscription_count', cb);
    });
}

// pusher_internal:subscription_count as clients come and go: a sees 1,
// then 4 after three more joined at once, then 1 again; how many counts
// it was sent in all.
async function subcount() {
    const a = client(cfg.ports[0]);
    const others = [0, 1, 2].map(() => client(cfg.ports[0]));
    const [ch] = await subscribed(a, 'sc-room');
    let sent = 0;
    ch.bind('pusher:subscription_count', () => sent++);
    const out = { first: await countIs(ch, 1) };
    await Promise.all(others.map((p) => subscribed(p, 'sc-room')));
    out.joined = await countIs(ch, 4);
    for (const p of others)
        p.unsubscribe('sc-room');
    out.left = await countIs(ch, 1);
    out.sent = sent;
    a.disconnect();
    others.forEach((p) => p.disconnect());
    return out;
}

// Cache channels: a subscriber before any event gets pusher:cache_miss
// after subscription_succeeded; the SDK publishes on the last node; a
// subscriber there after it gets that event, after its
// subscription_succeeded. Each client's events in order, per channel.
async function cache() {
    const out = {};
    const sdk = sdkFor(cfg.ports[cfg.ports.length - 1]);
    for (const name of ['cache-c', 'private-cache-c', 'presence-cache-c']) {
        const a = client(cfg.ports[0], { user: 'ca' });
        const b = client(cfg.ports[cfg.ports.length - 1], { user: 'cb' });
        const seqA = [], seqB = [];
        const chA = a.channel(name) || a.subscribe(name);
        chA.bind_global((ev) => seqA.push(ev));
        await once(chA, 'pusher:cache_miss', 'cache_miss on ' + name);
        const live = once(chA, 'state', 'state on ' + name + ' (live)');
        const r = await sdk.trigger(name, 'state', { v: name });
        if (r.status !== 200)
            fail('trigger answered ' + r.status);
        await live;
        const chB = b.subscribe(name);
        chB.bind_global((ev) => seqB.push(ev));
        const data = await once(chB, 'state', 'state on ' + name +
                                ' (cached)');
        out[name] = { a: seqA.filter((e) => !e.includes('member')),
                      b: seqB, data };
        a.disconnect();
        b.disconnect();
    }
    return out;
}

// Watchlists: wc signs in on the last node; then wa, on node 0, with
// the watchlist [wb, wc], hears wc online at once; wb signs in on the
// last node (online), then goes (offline). What wa's watchlist emitted,
// in order.
async function watchlist() {
    const last = cfg.ports[cfg.ports.length - 1];
    const signedIn = async (p) => {
        p.signin();
        await within(p.user.signinDonePromise, 'signin');
    };
    const c = client(last, { user: 'wc' });
    await signedIn(c);
    const a = client(cfg.ports[0], { user: 'wa', watchlist: ['wb', 'wc'] });
    const seen = [];
    const next = (name) => once(a.user.watchlist, name, name);
    for (const name of ['online', 'offline'])
        a.user.watchlist.bind(name, (ev) => seen.push([name, ev.user_ids]));
    let ev = next('online');
    await signedIn(a);
    await ev;
    const b = client(last, { user: 'wb' });
    ev = next('online');
    await signedIn(b);
    await ev;
    ev = next('offline');
    b.disconnect();
    await ev;
    a.disconnect();
    c.disconnect();
    return { seen };
}

const run = { fanout, badauth, unknownkey, presence, queries, terminate,
              subcount, cache, watchlist,
              client: clientEvents, user, badsignin }[scenario];
if (!run)
    fail('unknown scenario');
run().then((out) => {
    console.log(JSON.stringify(out));
    process.exit(0);
}, (e) => fail(e.stack || String(e)));
