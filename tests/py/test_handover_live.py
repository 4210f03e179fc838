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
  hand-over, the rest: it is answered) and a send queue half sent (a
  client that does not read, 6 MiB published to it, reads after: every
  message whole and in order).
- crash: a new process (this script) that dies in the middle of the
  connections (at the first of two CONNS messages), then one that takes
  them all and dies before READY: the old one serves on, its clients
  unaffected (a publish reaches the /ws one, its user push too, a
  command is answered; kept-alive HTTP ones answer).
- version: a new process (this script) that reads another connection
  format: the old one drains instead (level 1, close 1012), says why,
  counts it.
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
Live asked with Redis as the broker is a drain instead, counted:
test_handover-redis checks it.
"""

import asyncio
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading

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


def raw_ws(eng):
    """A raw /ws client: (socket, leftover bytes after the 101)."""
    s = rc.connect("127.0.0.1", eng.port)
    s.sendall(rc.upgrade_request("/ws"))
    head, rest = rc.read_head(s)
    expect(b" 101 " in head.split(b"\r\n")[0], "upgrade: %s", head[:80])
    return s, rest


def read_frames(s, buf, n, timeout=60):
    """@n server frames' payloads from @s (unmasked, 7/16/64-bit
    lengths), after what @buf holds."""
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
        out.append(buf[hl:hl + ln])
        buf = buf[hl + ln:]
    return out, buf


async def check_partial(exe, d):
    sock = os.path.join(d, "partial.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock)) as old:
        half, rest = raw_ws(old)
        frame = rc.build_frame(0x1, rc.push_cmd("subscribe", 1,
                                                 channels=["p:half"]).encode())
        half.sendall(frame[:len(frame) // 2])
        # a reader that stalls: a small window, 6 MiB behind it, more
        # than the kernel's buffers take (tcp_wmem's 4 MiB at most)
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", old.port))
        slow.sendall(rc.upgrade_request("/ws"))
        head, sbuf = rc.read_head(slow)
        slow.sendall(rc.build_frame(0x1, rc.push_cmd(
            "subscribe", 1, channels=["p:big"]).encode()))
        (reply,), sbuf = read_frames(slow, sbuf, 1)
        expect_eq(json.loads(reply)["code"], 200, "the slow one's subscribe")
        big = "x" * (256 << 10)
        rc.post_many(old, "/publish/p:big", [json.dumps({"n": i, "pad": big})
                                             for i in range(24)], key=KEY)
        new = rc.Engine(exe, *args(sock, "--take-over", sock),
                        listen="127.0.0.1:%d" % old.port)
        with new:
            expect_eq(await loop.run_in_executor(None, old.wait, 120), 0,
                      "the old process's exit status")
            ho = rc.stats(new)["handover"]
            expect(ho["live"] >= 2 and ho["live_bytes"] > (1 << 20),
                   "the queue went with it: %s", ho)
            half.sendall(frame[len(frame) // 2:])
            (reply,), rest = read_frames(half, rest, 1)
            expect_eq(json.loads(reply)["code"], 200,
                      "the frame completed after the hand-over")
            got, sbuf = await loop.run_in_executor(None, read_frames, slow,
                                                   sbuf, 24)
            ns = [json.loads(p)["data"]["n"] for p in got]
            expect_eq(ns, list(range(24)), "the queue, whole and in order")
            expect(all(json.loads(p)["data"]["pad"] == big for p in got),
                   "a message cut")
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
            expect(nfds == 253 if die_at else nfds > 300,
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
        # epoll holds a regular fd per connection anyway, and TLS ones
        # are not carried yet: neither fits 3,000 under 1,024
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


def checks(run):
    with tempfile.TemporaryDirectory() as d:
        run.check("live", check_live, run.exe, d, timeout=300)
        run.check("partial", check_partial, run.exe, d)
        run.check("crash", check_crash, run.exe, d)
        run.check("version", check_version, run.exe, d)
        run.check("fds", check_fds, run.exe, d, timeout=300)
        run.check("broken", check_broken, run.exe, d)


if __name__ == "__main__":
    rc.main("handover_live", checks)
