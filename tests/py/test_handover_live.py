# SPDX-License-Identifier: MIT
"""A new process takes over the open connections of a running one
(docs/HANDOVER.md, level 2: --take-over-mode live, the default).

- live: 300 /ws clients (python3-websockets, users u0..u299 on 4
  history channels), 20 of them with kept pushes, 10 offline users
  with inboxes, 2 Node `ws` clients with permessage-deflate, and 4
  publishers on keep-alive HTTP connections publishing {"n": i} through
  the hand-over (a request closed unanswered is sent again). A new
  process takes over: no client sees a close, every client gets every
  message answered 200 exactly once and in order, then asks a heartbeat
  on the same connection, answered; a client that connects during the
  hand-over is served; `history` and the inboxes answer the same after;
  a user push reaches a carried user; the old process exits 0; /stats
  and the logs say how many went live and the bytes.
- partial: a frame half received (half a command's frame sent, the
  hand-over, the rest: it is answered; over TLS the rest's record is
  cut in two too) and a send queue half sent (a client that does not
  read, 6 MiB published to it, reads after: every message whole and in
  order).
- crash: a new process (this script) that dies in the middle of the
  connections (at the first of two CONNS messages), then one that takes
  them all and dies before READY: the old one serves on, its clients
  unaffected (a publish reaches the /ws one, its user push too, a
  command is answered; kept-alive HTTP ones answer; a reader whose send
  was under way reads the rest of its queue, whole and in order).
- version: a new process (this script) that reads another connection
  format: the old one drains instead (level 1, close 1012), says why,
  counts it.
- pusher: pusher-js 8 clients (tests/js/handover_pusher_live.mjs) on
  a public, a private and a presence channel, two signed in (one
  watching the other), the `pusher` server SDK publishing to each
  channel and to a user through the hand-over: each client gets every
  event answered 200 once and in order, its connection never leaves
  `connected` (same socket_id, no pusher:error), the members stay and
  nobody hears member_added or member_removed; the HTTP API counts the
  same; a client event, a fourth subscriber's subscription_count, a
  terminate of the user and its watchlist offline work after; the
  webhooks say nothing of the hand-over (no occupied, vacated, member
  or repeated count events).
- redis (the redis axis alone, test_handover_live-redis): both
  processes on one redis-server; /ws clients on a history channel
  published to over HTTP, on a channel published to with Redis's own
  PUBLISH, and a user's connections pushed to over HTTP, through the
  hand-over: no close, every message once and in order; then a new process (this script) that subscribes what the old
  one names and dies after its connections came: the old one serves on,
  nothing lost, nothing twice; a Pusher connection with Redis is not
  carried (pusher:error 4200, close 4200) while the take-over is live.
- fds: both processes under RLIMIT_NOFILE 1024 (prlimit), 3,000 idle
  keep-alive HTTP connections and a /ws user carried live on io_uring:
  the regular fds made for the sockets are streamed on both sides (their
  direct descriptors do not count against the limit), so none is
  drained; each still answers on the same connection, the /ws one gets a
  publish, /stats says how many went and the fds it held at once.
- broken: an old process (this script) that goes after the first CONNS
  message, its listener and two idle connections in it: the new process
  (whose shards took them) lets them go without a byte on the wire and
  exits 1, saying so; the old one's sockets serve on.
"""

import asyncio
import json
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import websockets

import rc
from rc import expect, expect_eq
from test_handover import (CHANS, Publisher, history, inbox, keep, recv,
                           send)
from test_users import KEY, SECRET, token

NCLIENTS = 300
KEPT = 20
OFFLINE = 10
JS = os.path.join(rc.HERE, "..", "js", "handover_ws.js")


def args(sock, *more):
    return ("--shards", "2", "--namespace", "h:history=100000,ttl=10m",
            "--auth", "optional", "--jwt-secret", SECRET, "--api-key", KEY,
            "--max-pending-bytes", "32m", "--max-message", "1m",
            "--handover-socket", sock) + more


def hello_live(live=1):
    """A new process's hello asking live, reading connection format
    @live."""
    return struct.pack(">IHHIHBBIH", 0x5243484f, 1, 1, 7, 1, 1, 0,
                       os.getpid(), live)


async def client(eng, i, log):
    """User u@i on CHANS[i % 4] until its {"end": true}, then a
    heartbeat on the same connection; returns (ns, kept ids)."""
    chan, uid = CHANS[i % len(CHANS)], "u%d" % i
    got, ids = [], set()
    ws = await rc.ws_connect(eng.url("/ws"), extra_headers={
        "Authorization": "Bearer " + token(uid)})
    r = await rc.ws_command(ws, "subscribe", 1, channels=[chan])
    expect_eq(r["code"], 200, "%s's subscribe" % uid)
    log["subscribed"] += 1
    if log["subscribed"] == NCLIENTS:
        log["all"].set()
    for _ in range(100000):
        m = json.loads(await rc.ws_recv(ws, 120))
        if m.get("cmd") == "push" and "user" in m:
            ids.add(m.get("id") or m["data"])
        elif m.get("cmd") == "push":
            if m["data"].get("end"):
                break
            got.append(m["data"]["n"])
    # the same connection, served by the new process
    r = await rc.ws_command(ws, "heartbeat", 2)
    expect_eq(r["code"], 200, "%s's heartbeat after" % uid)
    await ws.close()
    expect_eq(ws.close_code, 1000, "%s's close (ours)" % uid)
    return got, ids


def node_client(eng, chan):
    env = dict(os.environ, NODE_PATH=rc.node_path())
    p = subprocess.Popen(["node", JS, eng.url("/ws"), chan],
                         stdout=subprocess.PIPE, text=True, env=env)
    expect_eq(p.stdout.readline().strip(), "subscribed", "the Node client")
    return p


async def check_live(exe, d):
    sock = os.path.join(d, "live.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock)) as old:
        rc.post_many(old, "/publish/h:quiet", [json.dumps({"q": i})
                                               for i in range(10)], key=KEY)
        for j in range(OFFLINE):
            keep(old, "off%d" % j, 3)
        quiet = await history(old, "h:quiet")
        boxes = {"off%d" % j: inbox(old, "off%d" % j)
                 for j in range(OFFLINE)}
        log = {"subscribed": 0, "all": asyncio.Event()}
        tasks = [asyncio.ensure_future(client(old, i, log))
                 for i in range(NCLIENTS)]
        await asyncio.wait_for(log["all"].wait(), 120)
        for i in range(KEPT):
            keep(old, "u%d" % i, 2)
        boxes.update({"u%d" % i: inbox(old, "u%d" % i) for i in range(KEPT)})
        nodes = [await loop.run_in_executor(None, node_client, old, c)
                 for c in CHANS[:2]]
        stop = threading.Event()
        pubs = [Publisher(old, c, stop) for c in CHANS]
        for p in pubs:
            p.start()
        for p in pubs:
            await loop.run_in_executor(None, p.half.wait, 60)
        new = rc.Engine(exe, *args(sock, "--take-over", sock),
                        listen="127.0.0.1:%d" % old.port)
        try:
            starting = loop.run_in_executor(None, new.start)
            # a client during the hand-over: whoever accepts it serves it
            ws = await rc.ws_connect(old.url("/ws"))
            r = await rc.ws_command(ws, "subscribe", 1, channel="h:quiet",
                                    offset=0, epoch=quiet["epoch"])
            expect(r["data"].get("recovered") is True, "latecomer: %s", r)
            late = [json.loads(await rc.ws_recv(ws))["data"]["q"]
                    for _ in range(10)]
            expect_eq(late, list(range(10)), "latecomer's recovery")
            await starting
            expect_eq(await loop.run_in_executor(None, old.wait, 120), 0,
                      "the old process's exit status")
            r = await rc.ws_command(ws, "heartbeat", 2)
            expect_eq(r["code"], 200, "latecomer after")
            await ws.close()
            # a carried user is registered: a push reaches it
            stop.set()
            for p in pubs:
                await loop.run_in_executor(None, p.join, 120)
                expect(p.error is None, "publisher %s: %r", p.chan, p.error)
            results = await asyncio.wait_for(asyncio.gather(*tasks), 180)
            ok = {p.chan: p.ok for p in pubs}
            for i, (got, ids) in enumerate(results):
                chan = CHANS[i % len(CHANS)]
                expect(got == ok[chan], "u%d on %s: %d messages, want the "
                       "%d answered 200, once each, in order", i, chan,
                       len(got), len(ok[chan]))
                if i < KEPT:
                    expect_eq(ids, set(boxes["u%d" % i]["ids"]),
                              "u%d's kept pushes" % i)
            for k, p in enumerate(nodes):
                out, _ = await loop.run_in_executor(None, p.communicate,
                                                    None, 60)
                expect_eq(json.loads(out)["got"], ok[CHANS[k]],
                          "the Node client on %s" % CHANS[k])
            expect_eq(await history(new, "h:quiet"), quiet,
                      "history afterwards")
            for uid, doc in boxes.items():
                expect_eq(inbox(new, uid), doc, "inbox of %s afterwards" % uid)
            ho = rc.stats(new)["handover"]
            expect_eq((ho["mode_asked"], ho["mode"]), ("live", "live"),
                      "the new process's modes")
            expect(ho["live"] >= NCLIENTS + len(nodes) and
                   ho["live_bytes"] > 0, "connections taken live: %s", ho)
            logs = old.output()
            expect("handed over live" in logs, "the old log: %s", logs[-600:])
        finally:
            new.stop() if new.alive() else new.kill()


class CutTLS:
    """A TLS client on @sock through memory BIOs, so that a record it
    seals can go out cut (seal(), then the bytes raw on .sock)."""

    def __init__(self, sock, host):
        self.sock, self.inc, self.out = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = rc.tls_ctx().wrap_bio(self.inc, self.out,
                                         server_hostname=host)
        for _ in range(100):
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                expect(self.pull(), "closed in the handshake")
        self.sock.sendall(self.out.read())	# our Finished

    def pull(self):
        self.sock.sendall(self.out.read())
        got = self.sock.recv(1 << 16)
        self.inc.write(got)
        return got

    def seal(self, data):
        self.obj.write(data)
        return self.out.read()

    def sendall(self, data):
        self.sock.sendall(self.seal(data))

    def recv(self, n):
        for _ in range(100000):
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                if not self.pull():
                    return b""
        raise AssertionError("no record within 100000 reads")

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def raw_ws(eng):
    """A raw /ws client: (socket, leftover bytes after the 101); over
    TLS a CutTLS."""
    s = socket.create_connection(("127.0.0.1", eng.port), timeout=60)
    if rc.TLS:
        s = CutTLS(s, "127.0.0.1")
    s.sendall(rc.upgrade_request("/ws"))
    head, rest = rc.read_head(s)
    expect(b" 101 " in head.split(b"\r\n")[0], "upgrade: %s", head[:80])
    return s, rest


def read_frames(s, buf, n, timeout=60):
    """@n server frames' payloads from @s (unmasked, 7/16/64-bit
    lengths), after what @buf holds; a ping (a connection quiet for
    --ping-interval on a loaded host) is not counted."""
    out = []
    s.settimeout(timeout)
    while len(out) < n:
        while True:
            if len(buf) >= 2:
                ln, hl = buf[1] & 0x7f, 2
                if ln == 126 and len(buf) >= 4:
                    ln, hl = struct.unpack(">H", buf[2:4])[0], 4
                elif ln == 127 and len(buf) >= 10:
                    ln, hl = struct.unpack(">Q", buf[2:10])[0], 10
                if (buf[1] & 0x7f) < 126 or hl > 2:
                    if len(buf) >= hl + ln:
                        break
            more = s.recv(1 << 16)
            expect(more, "closed after %d frames", len(out))
            buf += more
        if buf[0] & 0x0f != 0x9:
            out.append(buf[hl:hl + ln])
        buf = buf[hl + ln:]
    return out, buf


BIG = "x" * (256 << 10)


def stalled(eng, chan):
    """A raw /ws reader on @chan that stalls: a small window, 6 MiB
    published behind it, more than the kernel's buffers take (tcp_wmem's
    4 MiB at most): a send is under way.  (socket, leftover bytes)."""
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", eng.port))
    slow = rc.tls_wrap(slow, "127.0.0.1")
    slow.sendall(rc.upgrade_request("/ws"))
    head, sbuf = rc.read_head(slow)
    slow.sendall(rc.build_frame(0x1, rc.push_cmd(
        "subscribe", 1, channels=[chan]).encode()))
    (reply,), sbuf = read_frames(slow, sbuf, 1)
    expect_eq(json.loads(reply)["code"], 200, "the slow one's subscribe")
    rc.post_many(eng, "/publish/" + chan, [json.dumps({"n": i, "pad": BIG})
                                           for i in range(24)], key=KEY)
    return slow, sbuf


def read_stalled(slow, sbuf):
    """What stalled() published, read: whole, once each, in order."""
    got, sbuf = read_frames(slow, sbuf, 24)
    ns = [json.loads(p)["data"]["n"] for p in got]
    expect_eq(ns, list(range(24)), "the queue, whole and in order")
    expect(all(json.loads(p)["data"]["pad"] == BIG for p in got),
           "a message cut")


async def check_partial(exe, d):
    sock = os.path.join(d, "partial.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock)) as old:
        half, rest = raw_ws(old)
        frame = rc.build_frame(0x1, rc.push_cmd("subscribe", 1,
                                                 channels=["p:half"]).encode())
        half.sendall(frame[:len(frame) // 2])
        # over TLS, the frame's rest in a record cut too: half of it read
        late = frame[len(frame) // 2:]
        if rc.TLS:
            late = half.seal(late)
            half.sock.sendall(late[:len(late) // 2])
            late = late[len(late) // 2:]
        slow, sbuf = stalled(old, "p:big")
        new = rc.Engine(exe, *args(sock, "--take-over", sock),
                        listen="127.0.0.1:%d" % old.port)
        with new:
            expect_eq(await loop.run_in_executor(None, old.wait, 120), 0,
                      "the old process's exit status")
            ho = rc.stats(new)["handover"]
            expect(ho["live"] >= 2 and ho["live_bytes"] > (1 << 20),
                   "the queue went with it: %s", ho)
            getattr(half, "sock", half).sendall(late)
            (reply,), rest = read_frames(half, rest, 1)
            expect_eq(json.loads(reply)["code"], 200,
                      "the frame completed after the hand-over")
            await loop.run_in_executor(None, read_stalled, slow, sbuf)
            rc.post_many(new, "/publish/p:half", [json.dumps({"n": 1})],
                         key=KEY)
            (m,), rest = read_frames(half, rest, 1)
            expect_eq(json.loads(m)["data"], {"n": 1}, "subscribed after")
        half.close()
        slow.close()


def fake_new(sock, live, ready, die_at=None):
    """A new process of this script's: hello asking live (format @live),
    everything the old one sends read (fds closed); READY when @ready,
    else it dies (at the first message of type @die_at, if given).
    Returns the types received and the fds' count."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(rc.READY_TIMEOUT)
    s.connect(sock)
    send(s, 1, hello_live(live))
    types, nfds, mode = [], 0, None
    while True:
        t, body, fds = recv(s)
        types.append(t)
        if t == 1:
            mode = body[14]
        if t == 7:
            nfds += len(fds)
        for f in fds:
            os.close(f)
        if t == 4 or t == die_at:
            break
    if ready:
        send(s, 5, struct.pack(">III", 2, 0, 0))
    s.close()
    return types, nfds, mode


def get(conn):
    """GET /healthz on keep-alive @conn: its status."""
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    r.read()
    return r.status


async def check_crash(exe, d):
    sock = os.path.join(d, "crash.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock)) as old:
        ws = await rc.ws_connect(old.url("/ws"), extra_headers={
            "Authorization": "Bearer " + token("crash")})
        r = await rc.ws_command(ws, "subscribe", 1, channels=["h:crash"])
        expect_eq(r["code"], 200, "subscribe")
        # a send under way, cancelled by each attempt: the old process
        # sends its rest (on TLS: the records it had sealed) after
        slow, sbuf = stalled(old, "p:crash")
        # idle HTTP connections: more than one CONNS message's 253 fds
        idle = [rc.http_conn(old) for _ in range(300)]
        for c in idle:
            expect_eq(get(c), 200, "healthz")
        # dies at the first CONNS, then after all of them: before READY
        for n, die_at in enumerate((7, None)):
            types, nfds, mode = await loop.run_in_executor(
                None, fake_new, sock, 1, False, die_at)
            expect_eq((mode, 7 in types), (1, True),
                      "live: connections sent, %s" % types)
            # the stalled reader's record, past 4 MiB, may go alone
            expect(0 < nfds <= 253 if die_at else nfds > 300,
                   "fds received: %d", nfds)
            await rc.await_state("the old process counting the loss",
                                 lambda: rc.stats(old)["handover"]
                                 ["fallbacks"]["peer_lost"],
                                 lambda v, n=n: v == n + 1)
        for c in idle[::30]:	# the same connections, served on
            expect_eq(get(c), 200, "an idle one after")
        for c in idle:
            c.close()
        rc.post_many(old, "/publish/h:crash", [json.dumps({"n": 0})], key=KEY)
        m = json.loads(await rc.ws_recv(ws))
        expect_eq((m["cmd"], m["data"]), ("push", {"n": 0}),
                  "a publish after the failed take-over")
        status, _ = rc.api(old, "POST", "/users/crash/push",
                           json.dumps({"u": 1}), key=KEY)
        expect_eq(status, 200, "user push")
        m = json.loads(await rc.ws_recv(ws))
        expect_eq(m["data"], {"u": 1}, "the user still counted")
        r = await rc.ws_command(ws, "heartbeat", 2)
        expect_eq(r["code"], 200, "a command after")
        await ws.close()
        await loop.run_in_executor(None, read_stalled, slow, sbuf)
        slow.close()


async def check_version(exe, d):
    sock = os.path.join(d, "version.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock)) as old:
        ws = await rc.ws_connect(old.url("/ws"))
        r = await rc.ws_command(ws, "subscribe", 1, channels=["h:v"])
        expect_eq(r["code"], 200, "subscribe")
        types, nfds, mode = await loop.run_in_executor(
            None, fake_new, sock, 99, True)
        expect_eq((mode, 7 in types), (0, False), "a drain: no connections")
        expect_eq((await rc.ws_await_close(ws, 60))[0], 1012, "drained")
        expect_eq(await loop.run_in_executor(None, old.wait, 120), 0,
                  "the old process's exit status")
        expect("format 99" in old.output(), "the log says why")


PUSHER_JS = os.path.join(rc.HERE, "..", "js", "handover_pusher_live.mjs")
PUSHER_APP = {"id": "42", "key": "key-42", "secret": "s3cret-42"}
PUSHER_CHANS = ["room-live", "private-live", "presence-live"]


def pusher_args(sock, url, *more):
    return args(sock, "--pusher-app", "%(id)s:%(key)s:%(secret)s" %
                PUSHER_APP, "--pusher-client-events", "42",
                "--pusher-watchlist", "42", "--pusher-subscription-count",
                "42", "--pusher-webhook", "42=" + url, "--webhook-window",
                "50ms", "--webhook-backoff", "50ms", *more)


def node_line(p, want):
    """The next line of Node client @p, which starts with @want; what
    follows it."""
    line = p.stdout.readline()
    expect(line.startswith(want), "the Pusher clients said %r, not %s",
           line[:300], want)
    return line[len(want):].strip()


def pusher_hooks(evs):
    """The webhooks of the run up to the fourth subscriber: each channel
    occupied once and never vacated, each member added once and never
    removed, each count one more than the last: no event for the
    hand-over."""
    for ev in evs:
        expect(ev["name"] not in ("channel_vacated", "member_removed"),
               "webhook %s", ev)
    occupied = [e["channel"] for e in evs if e["name"] == "channel_occupied"]
    expect_eq(sorted(set(occupied)), sorted(occupied), "occupied once each")
    for ch in PUSHER_CHANS:
        expect(ch in occupied, "%s occupied: %s", ch, occupied)
    added = sorted(e["user_id"] for e in evs if e["name"] == "member_added")
    expect_eq(added, ["ua", "ub", "uc"], "member_added")
    for ch in set(e["channel"] for e in evs):
        n = [e["subscription_count"] for e in evs
             if e["name"] == "subscription_count" and e["channel"] == ch]
        expect_eq(n, list(range(1, len(n) + 1)), "%s's counts" % ch)


def check_pusher(exe, d):
    from test_webhook import Receiver
    sock = os.path.join(d, "pusher.sock")
    rcv = Receiver()
    node = None
    try:
        with rc.Engine(exe, *pusher_args(sock, rcv.url)) as old:
            cfg = {"host": old.host, "port": old.port, "app": PUSHER_APP,
                   "tls": rc.TLS}
            node = subprocess.Popen(["node", PUSHER_JS, json.dumps(cfg)],
                                    stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
            node_line(node, "ready")
            with rc.Engine(exe, *pusher_args(sock, rcv.url, "--take-over",
                                             sock),
                           listen="127.0.0.1:%d" % old.port) as new:
                expect_eq(old.wait(120), 0, "the old process's exit status")
                node.stdin.write("handed\n")
                node.stdin.flush()
                out = json.loads(node_line(node, "result"))
                pusher_checked(out)
                # the fourth subscriber's count: every earlier webhook is in
                evs = rcv.wait("room-live's count 4", lambda evs: any(
                    e["name"] == "subscription_count" and
                    e["channel"] == "room-live" and
                    e["subscription_count"] == 4 for e in evs))
                pusher_hooks(evs)
                node.stdin.write("terminate\n")
                node.stdin.flush()
                after = json.loads(node_line(node, "after"))
                expect_eq(after["status"], 200, "terminate")
                expect_eq(after["watch"], [["on", ["ua"]], ["off", ["ua"]]],
                          "B's watchlist")
                expect_eq(after["member_events"], [[["-", "ua"]]] * 2,
                          "ua's leave, heard")
                expect_eq(after["states"], [[], []], "B's and C's states")
                ho = rc.stats(new)["handover"]
                expect(ho["live"] >= 3 and not ho["fallbacks"]["conn"],
                       "connections taken live: %s", ho)
                expect_eq(node.wait(60), 0, "the Pusher clients' exit")
    finally:
        if node and node.poll() is None:
            node.kill()
            node.wait()
        rcv.close()


def pusher_checked(out):
    """What the carried Pusher clients saw (handover_pusher_live.mjs)."""
    expect_eq(out["socket_ids"], out["before"]["socket_ids"], "socket_ids")
    expect_eq(out["states"], [[], [], []], "connection states after setup")
    expect_eq(out["errors"], [[], [], []], "errors")
    everyone = ["ua", "ub", "uc"]
    expect_eq(out["members"], [everyone] * 3, "presence members")
    expect_eq(out["member_events"], [[], [], []], "member events")
    for i, got in enumerate(out["got"]):
        for ch in PUSHER_CHANS:
            ok = out["ok"][ch]
            expect(got[ch] == ok, "client %d on %s: %d events, want the %d "
                   "answered 200, once each, in order", i, ch,
                   len(got[ch]), len(ok))
    expect_eq(out["user_got"], out["ok"]["user ua"], "ua's user events")
    expect_eq(out["watch"], [["on", ["ua"]]], "B's watchlist so far")
    expect_eq((out["users"][0], sorted(u["id"] for u in
                                       out["users"][1]["users"])),
              (200, everyone), "GET users after")
    expect_eq(out["room"], [200, {"occupied": True, "subscription_count": 3}],
              "GET channel after")
    expect_eq(out["client_events"], [[], [["private-live", 1]]] +
              [[["private-live", 1]]], "the client event after")
    # A and B heard the set-up's last count before the hand-over: the
    # fourth subscriber's is the next; C may hear the broadcast of 3 late
    # (its own subscribe's 3 came first). A count the new process sent
    # of its own (the carried ones counted aloud) would be 3 to all.
    counts = out["counts_after"]
    expect_eq(counts[:2], [[["room-live", 4]]] * 2,
              "A's and B's subscription_count after")
    expect(counts[2][-1:] == [["room-live", 4]] and
           all(k == 3 for _, k in counts[2][:-1]),
           "C's subscription_count after: %s", counts[2])
class RawPublisher(threading.Thread):
    """PUBLISHes {"n": 0, 1, ...} with Redis's own command on Redis
    channel @rchan until @stop is set, then {"end": true}: self.ok, the
    n Redis took (all of them: a PUBLISH is not refused)."""

    def __init__(self, rchan, stop):
        super().__init__(daemon=True)
        self.rchan, self.stop = rchan, stop
        self.ok, self.error = [], None
        self.half = threading.Event()

    def run(self):
        s = socket.create_connection(("127.0.0.1", rc.broker().port), 10)
        f = s.makefile("rb")
        try:
            for n in range(200000):		# bounded: the stop comes first
                end = self.stop.is_set()
                body = json.dumps({"end": True} if end else {"n": n})
                s.sendall(resp("PUBLISH", self.rchan, body))
                line = f.readline()
                expect(line.startswith(b":"), "PUBLISH: %r", line)
                if end:
                    break
                self.ok.append(n)
                if n == 100:
                    self.half.set()
                time.sleep(0.001)	# a rate (1,000 a second), not a wait
        except Exception as e:		# the check reports it
            self.error = e
        finally:
            self.half.set()
            s.close()


def resp(*words):
    """A Redis command in RESP."""
    out = b"*%d\r\n" % len(words)
    for w in words:
        w = w.encode() if isinstance(w, str) else w
        out += b"$%d\r\n%s\r\n" % (len(w), w)
    return out


def resp_array(f):
    """One RESP array of bulk strings and integers from file @f."""
    head = f.readline()
    expect(head.startswith(b"*"), "RESP: %r", head)
    out = []
    for _ in range(int(head[1:])):
        line = f.readline()
        if line.startswith(b"$"):
            out.append(f.read(int(line[1:]) + 2)[:-2])
        else:
            out.append(line[1:].strip())
    return out


class UserPublisher(Publisher):
    """Publisher's pushes to user @uid instead of a channel."""

    def post(self, conn, body):
        conn.request("POST", "/users/%s/push" % self.chan,
                     body=json.dumps(body),
                     headers={"Authorization": "Bearer " + KEY})
        r = conn.getresponse()
        return r.status, r.read()


async def rclient(eng, chan, log):
    """A /ws client on @chan (a user's connection for "user:UID") until
    its {"end": true}: the ns received; a close fails it (websockets
    raises)."""
    got = []
    if chan.startswith("user:"):
        ws = await rc.ws_connect(eng.url("/ws"), extra_headers={
            "Authorization": "Bearer " + token(chan[5:])})
    else:
        ws = await rc.ws_connect(eng.url("/ws"))
        r = await rc.ws_command(ws, "subscribe", 1, channels=[chan])
        expect_eq(r["code"], 200, "subscribe to " + chan)
    log["n"] += 1
    if log["n"] == log["want"]:
        log["all"].set()
    for _ in range(200000):
        m = json.loads(await rc.ws_recv(ws, 120))
        if m.get("cmd") == "push":
            if m["data"].get("end"):
                break
            got.append(m["data"]["n"])
    r = await rc.ws_command(ws, "heartbeat", 2)
    expect_eq(r["code"], 200, "a heartbeat after")
    await ws.close()
    return got


async def redis_run(old, start_new, tag, nclients=40):
    """@nclients clients on old, a third on a history channel published
    to over HTTP, a third on one PUBLISHed to in Redis, a third the
    connections of a user pushed to over HTTP (all named after @tag: a
    check's own); start_new() while they publish; every client gets
    every message once, in order."""
    loop = asyncio.get_running_loop()
    chans = ["h:" + tag, "r:" + tag, "user:u-" + tag]
    log = {"n": 0, "want": nclients, "all": asyncio.Event()}
    tasks = [asyncio.ensure_future(rclient(old, chans[i % 3], log))
             for i in range(nclients)]
    await asyncio.wait_for(log["all"].wait(), 120)
    stop = threading.Event()
    pubs = [Publisher(old, chans[0], stop),
            RawPublisher("ringcast:ch:" + chans[1], stop),
            UserPublisher(old, chans[2][5:], stop)]
    for p in pubs:
        p.start()
    for p in pubs:
        await loop.run_in_executor(None, p.half.wait, 60)
    await start_new()
    stop.set()
    for p in pubs:
        await loop.run_in_executor(None, p.join, 120)
        expect(p.error is None, "publisher: %r", p.error)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 180)
    print("published: %d over HTTP (%d sent again), %d with PUBLISH, %d "
          "user pushes" % (len(pubs[0].ok), pubs[0].retries,
                           len(pubs[1].ok), len(pubs[2].ok)))
    for i, got in enumerate(results):
        want = pubs[i % 3].ok
        expect(got == want, "client %d on %s: %d messages, want the %d "
               "published, once each, in order (first off at %s)", i,
               chans[i % 3], len(got), len(want),
               next((k for k, (a, b) in enumerate(zip(got, want))
                     if a != b), min(len(got), len(want))))


async def check_redis_live(exe, d):
    sock = os.path.join(d, "redis-live.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock), broker=True) as old:
        new = rc.Engine(exe, *args(sock, "--take-over", sock), broker=True,
                        listen="127.0.0.1:%d" % old.port)

        async def start_new():
            await loop.run_in_executor(None, new.start)
            expect_eq(await loop.run_in_executor(None, old.wait, 120), 0,
                      "the old process's exit status")
        try:
            await redis_run(old, start_new, "live")
            ho = rc.stats(new)["handover"]
            expect_eq((ho["mode"], ho["fallbacks"]["live"]), ("live", 0),
                      "live with one Redis")
            expect(ho["live"] >= 40, "connections taken live: %s", ho)
            expect("stream cut at" in old.output(), "the old log: %s",
                   old.output()[-600:])
        finally:
            new.stop() if new.alive() else new.kill()


def fake_new_redis(sock):
    """A new process of this script's on the same Redis: hello asking
    live (with the Redis capability), the channels the old one names
    SUBSCRIBEd with the marker, SUBSCRIBED said; it dies at the first
    CONNS. Returns the channels named."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(rc.READY_TIMEOUT)
    s.connect(sock)
    send(s, 1, struct.pack(">IHHIHBBIH", 0x5243484f, 1, 1, 15, 1, 1, 1,
                           os.getpid(), 1))
    names, marker = [], None
    r = socket.create_connection(("127.0.0.1", rc.broker().port), 10)
    try:
        for _ in range(1000):
            t, body, fds = recv(s)
            for f in fds:
                os.close(f)
            if t == 8:
                mlen = struct.unpack(">H", body[1:3])[0]
                marker = body[3:3 + mlen].decode()
                off = 3 + mlen + 4
                while off < len(body):
                    k = struct.unpack(">H", body[off:off + 2])[0]
                    names.append(body[off + 2:off + 2 + k].decode())
                    off += 2 + k
                if body[0]:
                    r.sendall(resp("SUBSCRIBE", marker, *names))
                    f = r.makefile("rb")
                    confirmed = 0
                    for _ in range(100000):	# messages may come between
                        if confirmed == len(names) + 1:
                            break
                        if resp_array(f)[0] == b"subscribe":
                            confirmed += 1
                    send(s, 9, struct.pack(">I", len(names)))
            if t == 7:
                break
            expect(t in (1, 2, 8), "before the connections: type %d" % t)
    finally:
        r.close()
        s.close()
    return names


async def check_redis_crash(exe, d):
    sock = os.path.join(d, "redis-crash.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock), broker=True) as old:
        seen = []

        async def start_new():
            seen.extend(await loop.run_in_executor(None, fake_new_redis,
                                                   sock))
            await rc.await_state("the old process counting the loss",
                                 lambda: rc.stats(old)["handover"]
                                 ["fallbacks"]["peer_lost"],
                                 lambda v: v == 1)
        await redis_run(old, start_new, "crash")
        expect("ringcast:ch:h:crash" in seen and "ringcast:ch:r:crash" in seen
               and any(n.startswith("ringcast:user:") for n in seen),
               "the channels named: %s", seen)


FDS_LIMIT = 1024
FDS_CONNS = 3000


def limited(eng):
    """@eng started under RLIMIT_NOFILE FDS_LIMIT, soft and hard (the
    engine raises its soft limit to the hard one)."""
    eng.argv = ["prlimit", "--nofile=%d:%d" % (FDS_LIMIT, FDS_LIMIT),
                "--"] + eng.argv
    return eng


async def check_fds(exe, d):
    if os.environ.get("RINGCAST_TEST_IO") == "epoll" or rc.TLS:
        # epoll holds a regular fd per connection anyway; over TLS the
        # same streaming carries them, but 3,000 handshakes would cost
        # the check more than it shows
        print("fds: io_uring over plain TCP only; skipped here")
        return
    sock = os.path.join(d, "fds.sock")
    loop = asyncio.get_running_loop()
    more = ("--shards", "4", "--handover-socket", sock)
    with limited(rc.Engine(exe, *args(sock)[2:], *more)) as old:
        ws = await rc.ws_connect(old.url("/ws"), extra_headers={
            "Authorization": "Bearer " + token("fds")})
        r = await rc.ws_command(ws, "subscribe", 1, channels=["h:fds"])
        expect_eq(r["code"], 200, "subscribe")

        def open_idle():
            conns = [rc.http_conn(old) for _ in range(FDS_CONNS)]
            for c in conns:
                expect_eq(get(c), 200, "healthz before")
            return conns
        idle = await loop.run_in_executor(None, open_idle)
        new = limited(rc.Engine(exe, *args(sock)[2:], *more, "--take-over",
                                sock, listen="127.0.0.1:%d" % old.port))
        try:
            await loop.run_in_executor(None, new.start)
            expect_eq(await loop.run_in_executor(None, old.wait, 180), 0,
                      "the old process's exit status")
            logs = old.output()
            expect("%d connections handed over live" % (FDS_CONNS + 1)
                   in logs and "0 connections drained" in logs,
                   "every one carried, none drained: %s", logs[-900:])

            def ask_idle():
                for c in idle:	# the same connections, the new process
                    expect_eq(get(c), 200, "an idle one after")
                    c.close()
            await loop.run_in_executor(None, ask_idle)
            rc.post_many(new, "/publish/h:fds", [json.dumps({"n": 1})],
                         key=KEY)
            m = json.loads(await rc.ws_recv(ws))
            expect_eq((m["cmd"], m["data"]), ("push", {"n": 1}),
                      "a publish after, on the carried /ws connection")
            r = await rc.ws_command(ws, "heartbeat", 2)
            expect_eq(r["code"], 200, "a command after")
            await ws.close()
            ho = rc.stats(new)["handover"]
            expect(ho["live"] == FDS_CONNS + 1 and
                   ho["fallbacks"]["conn"] == 0 and
                   0 < ho["fds_peak"] < FDS_LIMIT,
                   "the new process's count and fds: %s", ho)
        finally:
            new.stop() if new.alive() else new.kill()


def idle_record():
    """A connection record (format 1) of an HTTP connection between
    requests, with nothing held and no timer."""
    rec = struct.pack(">BBBBHIII", 1, 0, 0, 0, 0, 0, 0, 0xffffffff)
    return rec + struct.pack(">IIII", 0, 0, 0, 0)


async def check_broken(exe, d):
    sock = os.path.join(d, "broken.sock")
    loop = asyncio.get_running_loop()
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(sock)
    ls.listen(1)
    # the new process's second shard binds the port too
    lst = socket.create_server(("127.0.0.1", 0), reuse_port=True)
    pairs = []
    for _ in range(2):
        c = socket.create_connection(lst.getsockname())
        pairs.append((c, lst.accept()[0]))
    new = rc.Engine(exe, *args(os.path.join(d, "next.sock"), "--take-over",
                                sock))

    def old_side():
        ls.settimeout(rc.READY_TIMEOUT)
        s, _ = ls.accept()
        s.settimeout(rc.READY_TIMEOUT)
        t, _, _ = recv(s)
        expect_eq(t, 1, "the new process's hello")
        # shards 2, mode live, no Redis, connection format 1
        send(s, 1, struct.pack(">IHHIHBBIH", 0x5243484f, 1, 1, 7, 2, 1, 0,
                               os.getpid(), 1))
        send(s, 2, struct.pack(">HHB", 1, 1, 1), [lst.fileno()])
        rec = idle_record()
        body = struct.pack(">HH", 1, len(pairs)) + b"".join(
            struct.pack(">BI", 3, len(rec)) + rec for _ in pairs)
        send(s, 7, body, [srv.fileno() for _, srv in pairs])
        s.close()	# gone before STATE_END
    t = threading.Thread(target=old_side)
    t.start()
    try:
        await loop.run_in_executor(None, new.start)
        t.join(60)
        expect_eq(await loop.run_in_executor(None, new.wait, 120), 1,
                  "the new process's exit status")
        expect("broke off" in new.output(), "its log: %s",
               new.output()[-600:])
        for k, (c, srv) in enumerate(pairs):
            # nothing came from the new process: ours is the first byte
            srv.sendall(b"ours %d" % k)
            c.settimeout(rc.IO_TIMEOUT)
            expect_eq(c.recv(64), b"ours %d" % k, "the carried socket's "
                      "first bytes, from the old side")
    finally:
        new.stop() if new.alive() else new.kill()
        for c, srv in pairs:
            c.close()
            srv.close()
        lst.close()
        ls.close()


async def check_pusher_redis(exe, d):
    """With Redis a Pusher connection is not carried: it gets
    pusher:error 4200 and close 4200 (its client reconnects), while the
    take-over itself stays live."""
    sock = os.path.join(d, "pusher-redis.sock")
    more = ("--pusher-app", "%(id)s:%(key)s:%(secret)s" % PUSHER_APP)
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock, *more), broker=True) as old:
        p = await rc.ws_connect(old.url("/app/%s?protocol=7" %
                                        PUSHER_APP["key"]))
        est = json.loads(await asyncio.wait_for(p.recv(), 30))
        expect_eq(est["event"], "pusher:connection_established",
                  "the Pusher client's first event")
        await p.send(json.dumps({"event": "pusher:subscribe",
                                 "data": {"channel": "room-r"}}))
        ok = json.loads(await asyncio.wait_for(p.recv(), 30))
        expect_eq(ok["event"], "pusher_internal:subscription_succeeded",
                  "the subscribe's answer")
        new = rc.Engine(exe, *args(sock, "--take-over", sock, *more),
                        broker=True, listen="127.0.0.1:%d" % old.port)
        try:
            await loop.run_in_executor(None, new.start)
            events = []
            try:
                for _ in range(100):	# bounded: the close comes first
                    events.append(json.loads(
                        await asyncio.wait_for(p.recv(), 60)))
            except websockets.ConnectionClosed:
                pass
            codes = [(json.loads(e["data"]) if isinstance(e["data"], str)
                      else e["data"]).get("code") for e in events
                     if e.get("event") == "pusher:error"]
            expect_eq(codes, [4200], "pusher:error codes before the close")
            expect_eq(p.close_code, 4200, "the close code")
            expect_eq(await loop.run_in_executor(None, old.wait, 120), 0,
                      "the old process's exit status")
            ho = rc.stats(new)["handover"]
            expect_eq(ho["mode"], "live", "the take-over's mode")
        finally:
            new.stop() if new.alive() else new.kill()


def checks(run):
    with tempfile.TemporaryDirectory() as d:
        if rc.only_on("redis"):
            run.check("redis-live", check_redis_live, run.exe, d,
                      timeout=300)
            run.check("redis-crash", check_redis_crash, run.exe, d)
            run.check("pusher-redis", check_pusher_redis, run.exe, d)
            return
        run.check("live", check_live, run.exe, d, timeout=300)
        run.check("partial", check_partial, run.exe, d)
        run.check("crash", check_crash, run.exe, d)
        run.check("version", check_version, run.exe, d)
        run.check("pusher", check_pusher, run.exe, d, timeout=300)
        run.check("fds", check_fds, run.exe, d, timeout=300)
        run.check("broken", check_broken, run.exe, d)


if __name__ == "__main__":
    rc.main("handover_live", checks)
