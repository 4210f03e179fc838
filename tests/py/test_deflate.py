# SPDX-License-Identifier: MIT
"""permessage-deflate (RFC 7692, issue 27) with --deflate on: what is
answered to Chrome's, Firefox's and other offers (and to none, to Safari
15.0-15.3 and with --deflate off); /echo with python websockets'
compression in both directions at many sizes, text and binary, whole and
fragmented, and with a raw client that splits compressed messages at any
byte and puts pings between the pieces (Autobahn 12.x/13.x-like); what
fails: an inflation bomb (1009), RSV1 on a control or continuation frame
and a compressed message on a connection that negotiated nothing (1002),
a message that refers back to an earlier one although
client_no_context_takeover was agreed, bad DEFLATE and bad UTF-8 inside
it (1007). Fan-out: subscribers of which half negotiated get the same
messages, and each publication is compressed once, whatever the number
of subscribers (deflate calls counted in /stats); history recovery
replays those compressed frames (embedded broker), and a history page
is compressed as a reply; with Redis (test_deflate-redis) a message
from Redis is compressed once by its owner shard too, and a recovery's
and an inbox replay's frames read back from Redis are compressed for a
client that negotiated (RSV1, inflating to the messages). history_memory
(embedded): --history-memory counts a kept frame's compressed copy, and
the bound holds counting both. Node's ws with
perMessageDeflate: echoes both ways at many sizes, fragmented, and
pushes to a node subscriber."""

import asyncio
import json
import os
import random
import subprocess
import zlib

import rc
import test_inbox
import test_users
from rc import expect, expect_eq

OFFER_CHROME = "permessage-deflate; client_max_window_bits"
ANSWER = ("permessage-deflate; server_no_context_takeover; "
          "client_no_context_takeover")
SAFARI_15_2 = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
               "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.2 "
               "Safari/605.1.15")
SIZES = (0, 1, 2, 64, 127, 128, 129, 200, 1000, 4096, 65535, 65536, 65537,
         200000, 1000000)


def deflate(data, level=6, wbits=15):
    """One message compressed on its own: the sync flush's tail cut."""
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data):
    d = zlib.decompressobj(-15)
    return d.decompress(data + b"\x00\x00\xff\xff")


def json_text(n, rnd):
    """About @n bytes of JSON with the repetition push payloads have."""
    items, size = [], 2
    while size < n:
        it = {"id": rnd.randrange(10 ** 9), "price": rnd.randrange(10 ** 6),
              "side": rnd.choice(("buy", "sell")), "sym": "BTC-USD"}
        items.append(it)
        size += len(json.dumps(it)) + 1
    return json.dumps(items) if n >= 2 else "x" * n


class ZWs(rc.RawWs):
    """A raw client that offers @offer and reads compressed frames."""

    def __init__(self, eng, path="/echo", offer=OFFER_CHROME, extra=()):
        self.offer = offer
        self.extra = list(extra)
        self.negotiated = False
        super().__init__(eng.host, eng.port, path)

    def handshake(self, host, path="/echo", first=b""):
        key = rc.new_key()
        extra = [("Sec-WebSocket-Extensions", self.offer)] if self.offer \
            else []
        extra += self.extra
        self.sock.sendall(rc.upgrade_request(path, host, key, extra=extra))
        head, self.buf = rc.read_head(self.sock, timeout=self.timeout)
        r = rc.Response(head)
        expect_eq(r.status, 101, "upgrade status")
        self.negotiated = r.header("Sec-WebSocket-Extensions") is not None
        return r

    def recv_frame(self):
        b0 = self._recv_exact(1)[0]
        rsv = (b0 >> 4) & 7
        expect(rsv in (0, 4), "server frame has RSV bits %d", rsv)
        expect(rsv == 0 or self.negotiated, "RSV1 without the extension")
        # the rest as RawWs reads it, with the RSV bits taken off
        self.buf = bytes([b0 & 0x8F]) + self.buf
        f = super().recv_frame()
        f.rsv = rsv
        expect(not (rsv and f.op >= 8), "compressed control frame %r", f)
        return f

    def recv_data(self):
        """The next data message, inflated; (opcode, payload, rsv)."""
        f = self.recv_frame()
        expect(f.op in (rc.OP_TEXT, rc.OP_BINARY), "want data, got %r "
               "(close code %r)", f, f.close_code())
        expect(f.fin, "server message is fragmented: %r", f)
        return f.op, inflate(f.payload) if f.rsv else f.payload, f.rsv

    def send_deflated(self, op, data, pieces=1, ping=False):
        """@data compressed, in @pieces frames (RSV1 on the first), with a
        ping between every two when @ping."""
        z = deflate(data)
        cuts = sorted(random.Random(len(data) + pieces).randrange(len(z) + 1)
                      for _ in range(pieces - 1))
        parts = [z[a:b] for a, b in zip([0] + cuts, cuts + [len(z)])]
        for i, p in enumerate(parts):
            self.send(op if i == 0 else rc.OP_CONT, p,
                      fin=i == len(parts) - 1, rsv=4 if i == 0 else 0)
            if ping and i < len(parts) - 1:
                self.send(rc.OP_PING, b"between %d" % i)
                f = self.recv_frame()
                expect_eq((f.op, f.payload), (rc.OP_PONG, b"between %d" % i),
                          "pong between fragments")


def deflate_stats(eng):
    return rc.stats(eng)["deflate"]


def answer_to(eng, offers, path="/echo", ua=None):
    """The Sec-WebSocket-Extensions the 101 carries for @offers (a list
    of header lines), or None."""
    extra = [("Sec-WebSocket-Extensions", o) for o in offers]
    if ua:
        extra.append(("User-Agent", ua))
    s = rc.connect(eng.host, eng.port)
    try:
        s.sendall(rc.upgrade_request(path, eng.host, extra=extra))
        head, _ = rc.read_head(s)
    finally:
        s.close()
    r = rc.Response(head)
    expect_eq(r.status, 101, "upgrade status for %r" % (offers,))
    return r.header("Sec-WebSocket-Extensions")


def check_negotiation(eng):
    cases = [
        ([OFFER_CHROME], ANSWER),
        (["permessage-deflate"], ANSWER),
        (["permessage-deflate; server_max_window_bits=15"],
         ANSWER + "; server_max_window_bits=15"),
        # a smaller window than the compressor's: declined, plain
        (["permessage-deflate; server_max_window_bits=10"], None),
        (["permessage-deflate; server_max_window_bits=10",
          "permessage-deflate; client_max_window_bits=12"], ANSWER),
        (["permessage-deflate; server_max_window_bits=8, "
          "permessage-deflate"], ANSWER),
        (["x-webkit-deflate-frame"], None),
        (["permessage-deflate; bogus=1"], None),
        ([], None),
    ]
    for offers, want in cases:
        expect_eq(answer_to(eng, offers), want, "answer to %r" % offers)
    expect_eq(answer_to(eng, [OFFER_CHROME], path="/ws"), ANSWER,
              "answer on /ws")
    expect_eq(answer_to(eng, [OFFER_CHROME], ua=SAFARI_15_2), None,
              "answer to Safari 15.2")


def check_off(exe):
    with rc.Engine(exe, "--echo", "--deflate", "off") as eng:
        expect_eq(answer_to(eng, [OFFER_CHROME]), None,
                  "answer with --deflate off")
        with ZWs(eng) as ws:
            expect(not ws.negotiated, "negotiated with --deflate off")
            ws.send(rc.OP_TEXT, deflate(b"hello"), rsv=4)
            ws.expect_close(1002)
        expect_eq(deflate_stats(eng)["enabled"], False, "enabled")


async def echo_sizes(eng):
    rnd = random.Random(27)
    before = deflate_stats(eng)
    async with rc.ws_connect(eng.url(), compression="deflate") as ws:
        expect_eq(ws.response_headers.get("Sec-WebSocket-Extensions"),
                  ANSWER, "websockets' extension")
        for n in SIZES:
            text = json_text(n, rnd)
            await ws.send(text)
            got = await rc.ws_recv(ws)
            expect(got == text, "text of %d bytes: echo differs (%d)",
                   len(text), len(got))
            data = os.urandom(n)
            await ws.send(data)
            got = await rc.ws_recv(ws)
            expect(got == data, "binary of %d bytes: echo differs", n)
        # --max-message of random bytes: compressed, a little larger,
        # and still a message of the limit's size
        data = os.urandom(1 << 20)
        await ws.send(data)
        got = await rc.ws_recv(ws)
        expect(got == data, "1 MiB of random bytes: echo differs")
        # fragmented by websockets itself: one compressed stream
        parts = [json_text(k, rnd) for k in (10, 3000, 0, 70000, 5)]
        await ws.send(iter(parts))
        got = await rc.ws_recv(ws)
        expect(got == "".join(parts), "fragmented echo differs")
    after = deflate_stats(eng)
    # websockets compresses every message it sends
    expect(after["inflated"] - before["inflated"] >= 2 * len(SIZES),
           "inflated %d, want %d", after["inflated"] - before["inflated"],
           2 * len(SIZES))
    expect(after["sent_compressed"] > before["sent_compressed"],
           "no echo went compressed: %s", after)
    expect(after["bytes_out"] < after["bytes_in"], "no gain: %s", after)


def check_echo_sizes(eng):
    return echo_sizes(eng)


def check_raw_fragments(eng):
    rnd = random.Random(13)
    with ZWs(eng) as ws:
        expect(ws.negotiated, "raw client did not negotiate")
        for n in (0, 1, 300, 5000, 70000):
            for pieces in (1, 2, 3, 7):
                for op in (rc.OP_TEXT, rc.OP_BINARY):
                    data = json_text(n, rnd).encode() if op == rc.OP_TEXT \
                        else os.urandom(n)
                    ws.send_deflated(op, data, pieces, ping=pieces == 3)
                    got = ws.recv_data()
                    expect_eq(got[0], op, "opcode")
                    expect(got[1] == data, "%d bytes in %d pieces: echo "
                           "differs", n, pieces)
                    # a compressible message comes back compressed
                    if op == rc.OP_TEXT and n >= 300:
                        expect_eq(got[2], 4, "RSV1 of the echo")
        # a message that does not shrink comes back plain
        data = os.urandom(1000)
        ws.send_deflated(rc.OP_BINARY, data)
        expect_eq(ws.recv_data(), (rc.OP_BINARY, data, 0), "random echo")
        # a plain message on a negotiated connection is just as fine
        ws.send(rc.OP_TEXT, b"plain too")
        expect_eq(ws.recv_data()[1], b"plain too", "plain echo")


def expect_fail(eng, code, frames, offer=OFFER_CHROME):
    with ZWs(eng, offer=offer) as ws:
        for f in frames:
            ws.send_raw(f)
        ws.expect_close(code)


def check_bomb(exe):
    with rc.Engine(exe, "--echo", "--deflate", "on",
                   "--max-message", "64K") as eng:
        bomb = deflate(b"\0" * (16 << 20), level=9)
        expect(len(bomb) < 64 << 10, "bomb of %d bytes", len(bomb))
        expect_fail(eng, 1009, [rc.build_frame(rc.OP_BINARY, bomb, rsv=4)])
        # fragmented, each piece small
        h = len(bomb) // 2
        expect_fail(eng, 1009, [
            rc.build_frame(rc.OP_BINARY, bomb[:h], fin=False, rsv=4),
            rc.build_frame(rc.OP_CONT, bomb[h:])])
        # compressed bytes past the limit and its sixteenth; a plain
        # message on a deflate connection is held to the limit itself
        expect_fail(eng, 1009, [rc.build_frame(
            rc.OP_BINARY, deflate(os.urandom(72 << 10)), rsv=4)])
        expect_fail(eng, 1009, [rc.build_frame(rc.OP_BINARY,
                                               os.urandom(65 << 10))])
        # just within the limit it is a message
        with ZWs(eng) as ws:
            data = b"\0" * (64 << 10)
            ws.send_deflated(rc.OP_BINARY, data, pieces=2)
            expect(ws.recv_data()[1] == data, "64K of zeros")
        st = rc.stats(eng)
        expect_eq(st["total"]["partial_bytes"], 0, "partial bytes held")


def check_protocol_errors(eng):
    z = deflate(b"x" * 200)
    # RSV1 on a control frame, on a continuation
    expect_fail(eng, 1002, [rc.build_frame(rc.OP_PING, b"p", rsv=4)])
    expect_fail(eng, 1002, [rc.build_frame(rc.OP_CLOSE,
                                           rc.close_payload(1000), rsv=4)])
    expect_fail(eng, 1002, [
        rc.build_frame(rc.OP_TEXT, z[:5], fin=False, rsv=4),
        rc.build_frame(rc.OP_CONT, z[5:], rsv=4)])
    # RSV2, RSV3 are no extension's
    expect_fail(eng, 1002, [rc.build_frame(rc.OP_TEXT, z, rsv=2)])
    # compressed without negotiation
    expect_fail(eng, 1002, [rc.build_frame(rc.OP_TEXT, z, rsv=4)],
                offer=None)
    expect_fail(eng, 1002, [rc.build_frame(rc.OP_TEXT, z, rsv=4)],
                offer="permessage-deflate; server_max_window_bits=9")


def check_bad_data(eng):
    # a second message that refers to the first: context takeover
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    text = b'{"greeting":"hello, hello, hello world"}' * 4
    m1 = c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH)
    m2 = c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH)
    expect(len(m2) < len(m1) // 2, "second message is not a back-reference")
    with ZWs(eng) as ws:
        ws.send(rc.OP_TEXT, m1[:-4], rsv=4)
        expect_eq(ws.recv_data()[1], text, "first message")
        ws.send(rc.OP_TEXT, m2[:-4], rsv=4)
        ws.expect_close(1007)
    # not DEFLATE at all; cut inside a block; invalid UTF-8 in the text
    expect_fail(eng, 1007, [rc.build_frame(rc.OP_TEXT, b"\xff" * 40,
                                           rsv=4)])
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    cut = z.compress(os.urandom(3000)) + z.flush(zlib.Z_SYNC_FLUSH)
    expect_fail(eng, 1007, [rc.build_frame(rc.OP_BINARY, cut[:100],
                                           rsv=4)])
    bad = b"caf\xc3" + b"x" * 300
    expect_fail(eng, 1007, [rc.build_frame(rc.OP_TEXT, deflate(bad),
                                           rsv=4)])


async def ws_commands(eng):
    """/ws with a compressing client: commands inflated, replies fine."""
    async with rc.ws_connect(eng.url("/ws"), compression="deflate") as ws:
        await ws.send(rc.push_cmd("subscribe", seq=1, channels=["z:" +
                                                                 "c" * 100]))
        reply = json.loads(await rc.ws_recv(ws))
        expect_eq(reply.get("code"), 200, "subscribe reply %s" % reply)


def check_ws_commands(eng):
    return ws_commands(eng)


def raw_subscribe(eng, channels, offer=OFFER_CHROME):
    ws = ZWs(eng, "/ws", offer)
    ws.send(rc.OP_TEXT, rc.push_cmd("subscribe", seq=1, channels=channels))
    reply = json.loads(ws.recv_data()[1])
    expect_eq(reply.get("code"), 200, "raw subscribe reply %s" % reply)
    return ws


async def fan_subscribe(eng, i):
    ws = await rc.ws_connect(eng.url("/ws"),
                             compression="deflate" if i % 2 else None)
    await ws.send(rc.push_cmd("subscribe", seq=i, channels=["fan"]))
    reply = json.loads(await rc.ws_recv(ws))
    expect_eq(reply.get("code"), 200, "subscribe reply %s" % reply)
    return ws


async def expect_pushes(ws, want, who):
    """@ws receives @want, (cmd, JSON text) pairs, in order."""
    for cmd, body in want:
        m = json.loads(await rc.ws_recv(ws))
        expect_eq((m["cmd"], m["data"]), (cmd, json.loads(body)), who)


async def fan_out(eng):
    rnd = random.Random(7)
    big = [json_text(1024, rnd) for _ in range(10)]
    small = json.dumps({"n": 1})
    # plain subscribers alone: nothing is compressed (the earlier checks'
    # deflate connections gone first)
    await asyncio.to_thread(rc.wait_until, "deflate connections closed",
                            lambda: deflate_stats(eng)["connections"] == 0)
    subs = [await fan_subscribe(eng, i) for i in range(0, 8, 2)]
    before = deflate_stats(eng)
    await asyncio.to_thread(rc.publish_many, eng, "fan", big[:2])
    for i, ws in enumerate(subs):
        await expect_pushes(ws, [("push", b) for b in big[:2]],
                            "plain subscriber %d" % i)
    expect_eq(deflate_stats(eng)["calls"], before["calls"],
              "deflate calls without a deflate subscriber")
    # then as many that negotiated, and a raw one that reads the frames
    subs += [await fan_subscribe(eng, i) for i in range(1, 8, 2)]
    raw = raw_subscribe(eng, ["fan"])
    try:
        zsubs = 1 + sum(1 for ws in subs if ws.response_headers.get(
            "Sec-WebSocket-Extensions"))
        expect_eq(zsubs, 5, "subscribers that negotiated")
        before = deflate_stats(eng)
        await asyncio.to_thread(rc.publish_many, eng, "fan", big + [small])
        # a broadcast: sequenced by shard 0, delivered by both
        await asyncio.to_thread(rc.post_many, eng, "/broadcast", [big[0]])
        want = [("push", b) for b in big + [small]] + [("broadcast", big[0])]
        for i, ws in enumerate(subs):
            await expect_pushes(ws, want, "subscriber %d" % i)
        sizes = []
        for cmd, body in want:
            op, data, rsv = raw.recv_data()
            m = json.loads(data)
            expect_eq((m["cmd"], m["data"]), (cmd, json.loads(body)),
                      "raw subscriber's message")
            sizes.append((len(body), rsv))
        expect(all(rsv == 4 for n, rsv in sizes if n >= 1000),
               "1 KiB JSON not compressed: %s", sizes)
        expect_eq(sizes[10][1], 0, "a small message's RSV1")
        after = deflate_stats(eng)
        delta = {k: after[k] - before[k] for k in after if k != "enabled"}
        # once per publication (10 + the broadcast), not per subscriber,
        # and not for the small one
        expect_eq(delta["calls"], 11, "deflate calls (%s)" % delta)
        expect_eq(delta["sent_compressed"], 11 * zsubs, "sent compressed")
        expect_eq(delta["sent_plain"], zsubs, "sent plain")
        expect(delta["bytes_out"] * 2.5 <= delta["bytes_in"],
               "1 KiB JSON shrank less than 2.5x: %s", delta)
    finally:
        raw.close()
        for ws in subs:
            await ws.close()


def check_fan_out(eng):
    return fan_out(eng)


def check_recovery(eng):
    """History replays send the frames kept, compressed once at
    publication; a plain client recovering the same gets them plain. With
    Redis the replays are read back from Redis, and compressed once each
    on the shard that gets the read's answer, for a client that
    negotiated."""
    rnd = random.Random(9)
    bodies = [json_text(1024, rnd) for _ in range(5)]
    live = raw_subscribe(eng, ["h:x"])
    try:
        before = deflate_stats(eng)["calls"]
        rc.publish_many(eng, "h:x", bodies)
        pushes = []
        for body in bodies:
            op, data, rsv = live.recv_data()
            m = json.loads(data)
            expect_eq((m["data"], rsv), (json.loads(body), 4), "live push")
            pushes.append(m)
        expect_eq(deflate_stats(eng)["calls"] - before, 5, "deflate calls")
        for offer in (OFFER_CHROME, None):
            with ZWs(eng, "/ws", offer) as ws:
                ws.send(rc.OP_TEXT, rc.push_cmd(
                    "subscribe", seq=5, channel="h:x",
                    offset=pushes[0]["offset"] - 1,
                    epoch=pushes[0]["epoch"]))
                reply = json.loads(ws.recv_data()[1])
                expect_eq(reply["data"].get("recovered"), True,
                          "recovery reply %s" % reply)
                for m in pushes:
                    op, data, rsv = ws.recv_data()
                    expect_eq(json.loads(data), m, "replayed push")
                    expect_eq(rsv, 4 if offer else 0, "replay's RSV1")
                # a history page is a reply of its own: compressed as sent
                ws.send(rc.OP_TEXT, rc.push_cmd(
                    "history", seq=6, channel="h:x",
                    offset=pushes[0]["offset"] - 1,
                    epoch=pushes[0]["epoch"]))
                op, data, rsv = ws.recv_data()
                page = json.loads(data)
                expect_eq(len(page["data"]["messages"]), 5, "history page")
                expect_eq(rsv, 4 if offer else 0, "history page's RSV1")
        # with Redis the 5 read back for the client that negotiated too
        expect_eq(deflate_stats(eng)["calls"] - before,
                  6 if rc.only_on("embedded") else 11,
                  "deflate calls after the replays (5 pushes, 1 page)")
    finally:
        live.close()


def check_inbox_replay(exe):
    """A new connection's unread, replayed: with Redis read back from
    Redis and compressed for a connection that negotiated (the embedded
    broker keeps them plain: no connection of the user negotiated when
    they were pushed)."""
    rnd = random.Random(11)
    bodies = [json_text(1024, rnd) for _ in range(3)]
    with rc.Engine(exe, "--deflate", "on", *test_inbox.ARGS,
                   broker=True) as eng:
        for b in bodies:
            test_inbox.keep(eng, "zoe", json.loads(b))
        for offer in (OFFER_CHROME, None):
            auth = [("Authorization", "Bearer " + test_users.token("zoe"))]
            with ZWs(eng, "/ws", offer, auth) as ws:
                for b in bodies:
                    op, data, rsv = ws.recv_data()
                    m = json.loads(data)
                    expect_eq((m["cmd"], m["data"]), ("push", json.loads(b)),
                              "replayed unread")
                    expect_eq(rsv, 4 if offer and rc.only_on("redis") else 0,
                              "an unread's RSV1 (offer %r)" % offer)


def hist_bytes(eng):
    return rc.stats(eng)["history"]


def check_history_memory(exe):
    """--history-memory counts a kept frame's compressed copy: the same
    messages cost more held with a twin than without, by at least the
    compressed bytes, and the bound holds counting both."""
    rnd = random.Random(13)
    bodies = [json_text(1024, rnd) for _ in range(10)]
    with rc.Engine(exe, "--deflate", "on", "--shards", "1",
                   "--history-memory", "64K",
                   "--namespace", "m:history=1000,ttl=1m") as eng:
        sub = raw_subscribe(eng, ["m:z"])
        try:
            st0 = hist_bytes(eng)
            rc.publish_many(eng, "m:plain", bodies)	# nobody: no twin
            st1, z1 = hist_bytes(eng), deflate_stats(eng)
            rc.publish_many(eng, "m:z", bodies)
            for b in bodies:
                expect_eq(sub.recv_data()[2], 4, "a live push's RSV1")
            st2, z2 = hist_bytes(eng), deflate_stats(eng)
            expect_eq(st2["messages"], 20, "kept, none evicted %r" % st2)
            plain = st1["bytes"] - st0["bytes"]
            twins = st2["bytes"] - st1["bytes"]
            zout = z2["bytes_out"] - z1["bytes_out"]
            expect(twins - plain >= zout, "the compressed copies (%d bytes) "
                   "not counted: %d bytes held plain, %d with twins",
                   zout, plain, twins)
            # past the bound: the oldest go, what stays fits counting both
            for _ in range(8):
                rc.publish_many(eng, "m:z", bodies)
                for b in bodies:
                    sub.recv_data()
            st3 = hist_bytes(eng)
            expect(st3["bytes"] <= 64 << 10 and st3["evicted"] > 0,
                   "history over --history-memory: %r", st3)
        finally:
            sub.close()


NODE_ECHO = r"""
const WebSocket = require('ws');
const fs = require('fs');
const [url, ca] = process.argv.slice(1);
const opts = { perMessageDeflate: { threshold: 0 } };
if (ca)
    opts.ca = fs.readFileSync(ca);
const ws = new WebSocket(url, opts);
const want = [];
const sizes = [0, 1, 100, 127, 128, 1000, 4096, 65535, 65536, 300000];
let seed = 1;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
function json(n) {
    const a = [];
    for (let len = 2; len < n; len += JSON.stringify(a[a.length - 1]).length + 1)
        a.push({ id: rnd() % 1000, side: rnd() % 2 ? 'buy' : 'sell' });
    return JSON.stringify(a);
}
ws.on('open', () => {
    if (ws.extensions !== 'permessage-deflate')
        fail('extensions: ' + ws.extensions);
    for (const n of sizes) {
        want.push(Buffer.from(json(n)));
        ws.send(want[want.length - 1].toString());
        const b = Buffer.alloc(n, 0x61 + n % 26);
        want.push(b);
        ws.send(b, { binary: true });
    }
    // one message in three compressed fragments
    const parts = [json(3000), json(10), json(70000)];
    want.push(Buffer.from(parts.join('')));
    parts.forEach((p, i) => ws.send(p, { fin: i === 2, compress: true }));
});
let got = 0;
ws.on('message', (d) => {
    if (!Buffer.from(d).equals(want[got]))
        fail('echo ' + got + ' differs (' + d.length + ' bytes)');
    if (++got === want.length) {
        console.log('ok ' + got);
        ws.close(1000);
    }
});
ws.on('close', () => process.exit(got === want.length ? 0 : 1));
ws.on('error', (e) => fail(e.message));
function fail(m) { console.log('error ' + m); process.exit(1); }
"""


def run_node(script, *args):
    env = dict(os.environ, NODE_PATH=rc.node_path())
    p = subprocess.run(["node", "-e", script] + list(args), env=env,
                       stdout=subprocess.PIPE, timeout=120)
    return p.stdout.decode().strip()


def check_node_echo(eng):
    before = deflate_stats(eng)
    ca = rc.tls_files()[0] if rc.TLS else ""
    out = run_node(NODE_ECHO, eng.url(), ca)
    expect_eq(out, "ok 21", "node ws echo")
    after = deflate_stats(eng)
    expect(after["inflated"] - before["inflated"] >= 21,
           "node's messages were not compressed: %s", after)
    expect(after["sent_compressed"] - before["sent_compressed"] >= 10,
           "echoes to node were not compressed: %s", after)


def checks(run):
    exe = run.exe
    with run.section(), \
            rc.Engine(exe, "--echo", "--deflate", "on", "--shards", "2",
                      "--namespace", "h:history=100,ttl=1m", broker=True) \
            as eng:
        run.check("negotiation", check_negotiation, eng)
        run.check("echo_sizes", check_echo_sizes, eng)
        run.check("raw_fragments", check_raw_fragments, eng)
        run.check("protocol_errors", check_protocol_errors, eng)
        run.check("bad_data", check_bad_data, eng)
        run.check("ws_commands", check_ws_commands, eng)
        run.check("fan_out", check_fan_out, eng)
        run.check("node_echo", check_node_echo, eng)
        run.check("recovery", check_recovery, eng)
    run.check("off", check_off, exe)
    run.check("inbox_replay", check_inbox_replay, exe)
    if rc.only_on("embedded"):
        run.check("history_memory", check_history_memory, exe)
    run.check("bomb", check_bomb, exe)


if __name__ == "__main__":
    rc.main("permessage-deflate", checks, open_publish=True)
