// SPDX-License-Identifier: MIT
// proto/pusher against the official Pusher server SDK for Node (`pusher`
// 5 from npm, installed into tests/js/node_modules by tests/install-deps):
// for fixed inputs, the SDK's authorizeChannel(), authenticateUser(),
// createSignedQueryString() (with its clock pinned) and webhook signature
// must equal what tests/pusher-sign computes, byte for byte; and
// proto/pusher must accept what the SDK signs and refuse it when one input
// changes. The SDK's own WebHook class must accept our webhook signature.
// Usage: node test_pusher_sdk.mjs <build>/tests/pusher-sign
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let Pusher;
try {
    Pusher = require('pusher');
} catch (e) {
    console.error('test_pusher_sdk: the npm package pusher is missing: ' +
                  'run tests/install-deps (' + e.message + ')');
    process.exit(1);
}
const sdkVersion = require('pusher/package.json').version;
if (!sdkVersion.startsWith('5.')) {
    console.error(`test_pusher_sdk: pusher ${sdkVersion}, want 5.x`);
    process.exit(1);
}

const tool = process.argv[2];
const apps = [
    { appId: '3', key: '278d425bdf160c739803', secret: '7ad3773142a6692b25b8' },
    { appId: 'app-1', key: 'app-key', secret: 'c2Vj+cmV0/==' },
    { appId: '99', key: 'K.k_k-k', secret: 'x' },
];
const sockets = ['1234.1234', '0.0', '4294967295.4294967295', '12.0034'];
const channels = [
    'private-foobar', 'presence-room', 'private-encrypted-x', 'cache-y',
    'private-cache-a=@,.;_-', 'presence-cache-Z9',
];
const members = [
    { user_id: '1' },
    { user_id: 10, user_info: { name: 'Mr. Channels' } },
    { user_id: 'ü"\\x', user_info: { name: 'Zoë \u2028 </script>', tags: [1, null, true] } },
];
const users = [
    { id: '12345' },
    { id: 'ü\n"', user_info: { a: 'b' }, watchlist: ['1', '2'] },
];
const now = 1700000000;

const requests = []; // [line sent to the tool, check of its answer]
let failed = 0, passed = 0;

function expect(cond, what) {
    if (cond) {
        passed++;
    } else {
        failed++;
        console.error('FAIL: ' + what);
    }
}

function add(req, check) {
    requests.push([JSON.stringify(req), check]);
}

function appSpec(a) {
    return `${a.appId}:${a.key}:${a.secret}`;
}

// The SDK with its clock at @t seconds: createSignedQueryString reads Date.now().
function signedQuery(pusher, opts, t) {
    const real = Date.now;
    Date.now = () => t * 1000;
    try {
        return pusher.createSignedQueryString(opts);
    } finally {
        Date.now = real;
    }
}

// The SDK's query without auth_signature, minus the SDK's own parameters.
function ownParams(params) {
    return Object.keys(params || {}).map((k) => k + '=' + params[k]).join('&');
}

for (const a of apps) {
    const pusher = new Pusher({ ...a, cluster: 'mt1',
        encryptionMasterKeyBase64: Buffer.alloc(32, 7).toString('base64') });
    const spec = appSpec(a);

    for (const sid of sockets) {
        for (const ch of channels) {
            const presence = ch.startsWith('presence-');
            for (const m of presence ? members : [undefined]) {
                const r = pusher.authorizeChannel(sid, ch, m);
                const req = { app: spec, op: 'channel', socket_id: sid,
                              channel: ch, auth: r.auth };
                if (presence)
                    req.channel_data = r.channel_data;
                const what = `${spec} channel ${sid} ${ch} ${r.channel_data || ''}`;
                add(req, ([auth, check]) => {
                    expect(auth === r.auth, `${what}: ours ${auth}, SDK ${r.auth}`);
                    expect(check === '0', `${what}: SDK auth refused (${check})`);
                });
                // the same auth for another socket, or channel_data
                // changed by one byte, must be refused
                add({ ...req, socket_id: sid + '1' }, ([, check]) =>
                    expect(check !== '0', `${what}: auth of another socket taken`));
                if (presence) {
                    const cd = r.channel_data.replace('}', ' }');
                    add({ ...req, channel_data: cd }, ([, check]) =>
                        expect(check !== '0', `${what}: changed channel_data taken`));
                }
            }
        }
        for (const u of users) {
            const r = pusher.authenticateUser(sid, u);
            const req = { app: spec, op: 'user', socket_id: sid,
                          user_data: r.user_data, auth: r.auth };
            const what = `${spec} user ${sid} ${r.user_data}`;
            add(req, ([auth, check]) => {
                expect(auth === r.auth, `${what}: ours ${auth}, SDK ${r.auth}`);
                expect(check === '0', `${what}: SDK auth refused (${check})`);
            });
            add({ ...req, user_data: r.user_data + ' ' }, ([, check]) =>
                expect(check !== '0', `${what}: changed user_data taken`));
        }
    }

    // The HTTP API, as the SDK's trigger(), get() and terminate build it.
    const bodies = [
        { name: 'my-event', channels: ['a', 'presence-b'], data: '{"x":"ü"}' },
        { batch: [{ channel: 'c', name: 'e', data: 'd', socket_id: '1.2' }] },
    ];
    const calls = [
        { method: 'POST', path: `/apps/${a.appId}/events`, body: JSON.stringify(bodies[0]) },
        { method: 'POST', path: `/apps/${a.appId}/batch_events`, body: JSON.stringify(bodies[1]) },
        { method: 'GET', path: `/apps/${a.appId}/channels`,
          params: { filter_by_prefix: 'presence-', info: 'user_count,subscription_count' } },
        { method: 'GET', path: `/apps/${a.appId}/channels/presence-b/users` },
        { method: 'POST', path: `/apps/${a.appId}/users/u1/terminate_connections`, body: '{}' },
    ];
    for (const c of calls) {
        const q = signedQuery(pusher, c, now);
        const what = `${spec} ${c.method} ${c.path}?${q}`;
        const req = { app: spec, op: 'api', method: c.method, path: c.path,
                      query: q, body: c.body || '', params: ownParams(c.params),
                      ts: now, now };
        add(req, ([ours, check, why]) => {
            expect(ours === q, `${what}: ours ${ours}`);
            expect(check === '0', `${what}: SDK request refused (${check} ${why})`);
        });
        // replayed later, or with a body changed, must be refused
        add({ ...req, now: now + 601 }, ([, check]) =>
            expect(check !== '0', `${what}: taken 601 s later`));
        add({ ...req, now: now - 601 }, ([, check]) =>
            expect(check !== '0', `${what}: taken 601 s earlier`));
        add({ ...req, now: now + 600 }, ([, check]) =>
            expect(check === '0', `${what}: refused 600 s later`));
        if (c.body)
            add({ ...req, body: c.body + ' ' }, ([, check]) =>
                expect(check !== '0', `${what}: changed body taken`));
    }

    // Webhooks: our signature is the SDK's, and its WebHook class takes it.
    const hook = JSON.stringify({ time_ms: now * 1000, events: [
        { name: 'member_added', channel: 'presence-b', user_id: 'ü' }] });
    add({ app: spec, op: 'webhook', body: hook }, ([sig]) => {
        const wh = pusher.webhook({ headers: { 'x-pusher-key': a.key,
            'x-pusher-signature': sig, 'content-type': 'application/json' },
            rawBody: hook });
        expect(wh.isValid(), `${spec} webhook: SDK refused our ${sig}`);
        const bad = pusher.webhook({ headers: { 'x-pusher-key': a.key,
            'x-pusher-signature': sig, 'content-type': 'application/json' },
            rawBody: hook + ' ' });
        expect(!bad.isValid(), `${spec} webhook: SDK took a changed body`);
    });
}

const run = spawnSync(tool, { input: requests.map((r) => r[0]).join('\n') + '\n',
                              encoding: 'utf8', timeout: 60000 });
if (run.status !== 0) {
    console.error(`test_pusher_sdk: ${tool} exited ${run.status}: ${run.stderr}`);
    process.exit(1);
}
const lines = run.stdout.split('\n');
if (lines.length !== requests.length + 1) {
    console.error(`test_pusher_sdk: ${lines.length - 1} answers to ${requests.length} requests`);
    process.exit(1);
}
requests.forEach(([, check], i) => check(lines[i].split('\t')));
console.log(`pusher ${sdkVersion}: ${requests.length} requests`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
