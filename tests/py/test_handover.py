# SPDX-License-Identifier: MIT
"""A new process takes over from a running one (docs/HANDOVER.md, level
1: the listeners and the embedded broker's state, then a paced drain).

- drain: 300 clients (users u0..u299, 4 history channels), 20 of them
  with kept pushes, 10 offline users with inboxes, a Pusher client (Node
  `ws`), and 4 publishers publishing {"n": i} through the hand-over (a
  request closed unanswered was not done and is sent again). A new
  process with --take-over on the same port: every client is closed
  with 1012 and reconnects, recovering with "recovered":true, and ends
  with every message answered 200 exactly once and in order; the Pusher
  client gets pusher:error 4200 and close 4200; a GET loop on the port
  never sees a refused connection; a client that connects during the
  hand-over recovers a quiet channel from offset 0; `history` and the
  inboxes answer the same afterwards; the old process exits 0; /stats
  says what was handed over (--take-over-mode drain: level 1 asked for).
- crash: a new process that dies after taking the listeners, before
  READY (played by this script on the socket): the old one serves on,
  counts it (peer_lost), publishes still reach its clients, and a real
  take-over afterwards succeeds, and a third process takes over from
  that one (the socket is the new process's once it accepts).
- socket: a plain file at PATH, or a socket a process listens on, stop
  a fresh start; the file is removed at the stop. Garbage on the
  socket (an HTTP request, a hello without the magic) is counted and
  the old process serves on.
- redis (the redis axis alone): the state is Redis's and not sent
  (fallbacks.broker); in a drain (asked: live with one Redis is
  test_handover_live-redis's) a client closed with 1012 recovers from
  Redis on the new process.
- version: an old process (played by this script) whose state format
  the new binary does not read: the new one serves on the listener it
  was given, installs nothing, counts it (state_version), a recovery
  says "recovered":false, and the old process gets READY.
"""

import asyncio
import http.client
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading

import rc
from rc import expect, expect_eq
from test_users import KEY, SECRET, token

NCLIENTS = 300
CHANS = ["h:c%d" % i for i in range(4)]
KEPT = 20		# online users with kept pushes
OFFLINE = 10		# offline users with inboxes
APP = "42:key-42:s3cret-42"
JS = os.path.join(rc.HERE, "..", "js", "handover_pusher.js")


def args(sock, *more):
    return ("--shards", "2", "--namespace", "h:history=100000,ttl=10m",
            "--auth", "optional", "--jwt-secret", SECRET, "--api-key", KEY,
            "--pusher-app", APP, "--handover-socket", sock) + more


# ---------------------------------------------------------------- the wire

def msg(t, body=b"", fds=()):
    return struct.pack(">IB", len(body) + 1, t) + body, list(fds)


def send(s, t, body=b"", fds=()):
    data, fds = msg(t, body, fds)
    if fds:
        socket.send_fds(s, [data], fds)
    else:
        s.sendall(data)


def recv(s):
    """One message: (type, body, fds)."""
    head, fds, _, _ = socket.recv_fds(s, 5, 253)
    while len(head) < 5:
        more = s.recv(5 - len(head))
        expect(more, "hand-over socket closed inside a header")
        head += more
    n, t = struct.unpack(">IB", head)
    body = b""
    while len(body) < n - 1:
        part, more_fds, _, _ = socket.recv_fds(s, n - 1 - len(body), 253)
        expect(part, "hand-over socket closed inside a message")
        body += part
        fds += more_fds
    return t, body, fds


def hello(state=1, mode=0):
    return struct.pack(">IHHIHBBI", 0x5243484f, 1, state, 3, 1, mode, 0,
                       os.getpid())


# ---------------------------------------------------------------- clients

class Publisher(threading.Thread):
    """Publishes {"n": 0, 1, ...} on @chan until @stop is set, then
    {"end": true}. A connection closed before its answer (the
    old process closes a publishing request unanswered while it hands
    over) is opened again and the same n sent again; a refused one is
    counted. self.ok: the n answered 200, in order."""

    def __init__(self, eng, chan, stop):
        super().__init__(daemon=True)
        self.eng, self.chan, self.stop = eng, chan, stop
        self.ok, self.retries, self.refused = [], 0, 0
        self.error = None
        self.half = threading.Event()

    def post(self, conn, body):
        conn.request("POST", "/publish/" + self.chan, body=json.dumps(body),
                     headers={"Authorization": "Bearer " + KEY})
        r = conn.getresponse()
        return r.status, r.read()

    def run(self):
        conn, n, ended = None, 0, False
        try:
            for _ in range(200000):		# bounded: the stop comes first
                if ended:
                    break
                if conn is None:
                    conn = rc.http_conn(self.eng)
                body = {"end": True} if self.stop.is_set() else {"n": n}
                try:
                    status, got = self.post(conn, body)
                except ConnectionRefusedError:
                    self.refused += 1
                    conn = None
                    continue
                except (ConnectionError, http.client.HTTPException):
                    self.retries += 1	# not done: sent again
                    conn.close()
                    conn = None
                    continue
                expect(status == 200, "publish %s: %d %s", body, status, got)
                if "end" in body:
                    ended = True
                else:
                    self.ok.append(n)
                    n += 1
                    if n == 100:
                        self.half.set()
        except Exception as e:		# the check reports it
            self.error = e
        finally:
            if conn:
                conn.close()
            self.half.set()


async def client(eng, i, log):
    """User u@i on channel CHANS[i % 4] until its {"end": true}: every
    reconnect recovers; returns (ns received, kept ids, closes seen)."""
    import websockets
    chan, uid = CHANS[i % len(CHANS)], "u%d" % i
    got, ids, closes = [], set(), []
    epoch = offset = None
    for attempt in range(10):
        try:
            ws = await rc.ws_connect(eng.url("/ws"), extra_headers={
                "Authorization": "Bearer " + token(uid)})
        except ConnectionRefusedError:
            log["refused"] += 1
            raise
        sub = {"channels": [chan]}
        if epoch:
            sub = {"channel": chan, "epoch": epoch, "offset": offset}
        await ws.send(rc.push_cmd("subscribe", attempt + 1, **sub))
        try:
            for _ in range(100000):
                m = json.loads(await rc.ws_recv(ws, 60))
                if m.get("seq") == attempt + 1:
                    expect_eq(m["code"], 200, "%s's subscribe" % uid)
                    if epoch:
                        expect(m["data"].get("recovered") is True,
                               "%s: reconnect not recovered: %s", uid, m)
                        log["recovered"] += 1
                    else:
                        log["subscribed"] += 1
                        if log["subscribed"] == NCLIENTS:
                            log["all"].set()
                elif m.get("cmd") == "push" and "user" in m:
                    ids.add(m["id"])
                elif m.get("cmd") == "push":
                    epoch, offset = m["epoch"], m["offset"]
                    if m["data"].get("end"):
                        await ws.close()
                        return got, ids, closes
                    got.append(m["data"]["n"])
        except websockets.ConnectionClosed:
            closes.append(ws.close_code)
    raise AssertionError("%s: still not done after 10 connections" % uid)


class Prober(threading.Thread):
    """GET /healthz on the port again and again until stopped: every
    attempt must be answered; a refused connection is counted."""

    def __init__(self, eng):
        super().__init__(daemon=True)
        self.eng, self.stop = eng, threading.Event()
        self.ok = self.refused = 0
        self.other = []

    def run(self):
        for _ in range(1000000):
            if self.stop.is_set():
                return
            try:
                status, _ = rc.api(self.eng, "GET", "/healthz")
                if status == 200:
                    self.ok += 1
                else:
                    self.other.append(status)
            except ConnectionRefusedError:
                self.refused += 1
            except Exception as e:	# reset by a drained process: say so
                self.other.append(repr(e))


async def history(eng, chan):
    ws = await rc.ws_connect(eng.url("/ws"))
    r = await rc.ws_command(ws, "history", 1, channel=chan, limit=1000)
    await ws.close()
    expect_eq(r["code"], 200, "history of " + chan)
    return r["data"]


def inbox(eng, uid):
    status, doc = rc.api(eng, "GET", "/users/%s/inbox" % uid, key=KEY)
    expect_eq(status, 200, "inbox of " + uid)
    return doc


def keep(eng, uid, n):
    for j in range(n):
        status, doc = rc.api(eng, "POST", "/users/%s/push?persist=1" % uid,
                             json.dumps({"kept": j}), key=KEY)
        expect_eq(status, 200, "kept push to " + uid)


def pusher_node(eng):
    env = dict(os.environ, NODE_PATH=rc.node_path())
    if rc.TLS:
        env["NODE_EXTRA_CA_CERTS"] = rc.tls_files()[0]
    p = subprocess.Popen(["node", JS, eng.url("/app/key-42?protocol=7")],
                         stdout=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline().strip()
    expect_eq(line, "established", "the Pusher client")
    return p


async def check_drain(exe, d):
    sock = os.path.join(d, "drain.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock, "--drain-rate", "200")) as old:
        expect_eq(os.stat(sock).st_mode & 0o777, 0o600, "socket's mode")
        rc.post_many(old, "/publish/h:quiet", [json.dumps({"q": i})
                                               for i in range(10)], key=KEY)
        for j in range(OFFLINE):
            keep(old, "off%d" % j, 3)
        quiet = await history(old, "h:quiet")
        boxes = {u: inbox(old, u) for u in ["off%d" % j
                                            for j in range(OFFLINE)]}
        log = {"refused": 0, "recovered": 0, "subscribed": 0,
               "all": asyncio.Event()}
        tasks = [asyncio.ensure_future(client(old, i, log))
                 for i in range(NCLIENTS)]
        await asyncio.wait_for(log["all"].wait(), 120)
        for i in range(KEPT):
            keep(old, "u%d" % i, 2)
        boxes.update({"u%d" % i: inbox(old, "u%d" % i) for i in range(KEPT)})
        node = await loop.run_in_executor(None, pusher_node, old)
        stop = threading.Event()
        pubs = [Publisher(old, c, stop) for c in CHANS]
        for p in pubs:
            p.start()
        for p in pubs:
            await loop.run_in_executor(None, p.half.wait, 60)
        prober = Prober(old)
        prober.start()
        new = rc.Engine(exe, *args(sock, "--take-over", sock,
                                   "--take-over-mode", "drain"),
                        listen="127.0.0.1:%d" % old.port)
        try:
            await loop.run_in_executor(None, new.start)
            expect_eq(new.port, old.port, "the new process's port")
            # a client during the hand-over: the quiet channel from 0
            ws = await rc.ws_connect(new.url("/ws"))
            r = await rc.ws_command(ws, "subscribe", 1, channel="h:quiet",
                                    offset=0, epoch=quiet["epoch"])
            expect(r["data"].get("recovered") is True, "latecomer: %s", r)
            late = [json.loads(await rc.ws_recv(ws))["data"]["q"]
                    for _ in range(10)]
            expect_eq(late, list(range(10)), "latecomer's recovery")
            await ws.close()
            rc_old = await loop.run_in_executor(None, old.wait, 120)
            expect_eq(rc_old, 0, "the old process's exit status")
            stop.set()
            for p in pubs:
                await loop.run_in_executor(None, p.join, 120)
                expect(p.error is None, "publisher %s: %r", p.chan, p.error)
            results = await asyncio.wait_for(asyncio.gather(*tasks), 180)
            prober.stop.set()
            await loop.run_in_executor(None, prober.join, 30)
            out, _ = await loop.run_in_executor(None, node.communicate, None,
                                                60)
            expect_eq(out.split(), ["error", "4200", "close", "4200"],
                      "the Pusher client's end")
            check_results(pubs, results, log, prober)
            expect_eq(await history(new, "h:quiet"), quiet,
                      "history afterwards")
            for uid, doc in boxes.items():
                expect_eq(inbox(new, uid), doc, "inbox of %s afterwards" % uid)
            for i in range(KEPT):
                expect_eq(results[i][1], set(boxes["u%d" % i]["ids"]),
                          "u%d's kept pushes" % i)
            check_stats(old, new)
        finally:
            new.stop() if new.alive() else new.kill()


def check_results(pubs, results, log, prober):
    ok = {p.chan: p.ok for p in pubs}
    for i, (got, _, closes) in enumerate(results):
        chan = CHANS[i % len(CHANS)]
        expect(got == ok[chan], "u%d on %s: %d messages, want the %d "
               "answered 200, once each, in order (first difference at %s)",
               i, chan, len(got), len(ok[chan]), next(
                   (k for k, (a, b) in enumerate(zip(got, ok[chan]))
                    if a != b), min(len(got), len(ok[chan]))))
        expect_eq(closes, [1012], "u%d's closes" % i)
    expect_eq(log["refused"], 0, "refused /ws connections")
    expect_eq(log["recovered"], NCLIENTS, "recovered reconnects")
    expect_eq(sum(p.refused for p in pubs), 0, "refused publishes")
    expect_eq(prober.refused, 0, "refused probes")
    expect(prober.ok > 0, "no probe answered")
    expect(not [o for o in prober.other if isinstance(o, int)],
           "a probe answered but not 200: %s", prober.other[:5])


def check_stats(old, new):
    ho = rc.stats(new)["handover"]
    expect_eq((ho["role"], ho["mode_asked"], ho["mode"]),
              ("taken", "drain", "drain"), "the new process's modes")
    expect_eq(ho["listeners"], 2, "listeners taken")
    expect_eq((ho["fallbacks"]["live"], ho["live"]), (0, 0),
              "drain asked: nothing live")
    expect(ho["histories"] >= len(CHANS) + 1 and
           ho["inboxes"] >= KEPT + OFFLINE, "state installed: %s", ho)
    logs = old.output()
    expect("mode drain" in logs, "the old process's log says the mode")
    expect("connections drained" in logs, "the drain in the log")


async def check_crash(exe, d):
    sock = os.path.join(d, "crash.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock)) as old:
        ws = await rc.ws_connect(old.url("/ws"))
        r = await rc.ws_command(ws, "subscribe", 1, channels=["h:crash"])
        expect_eq(r["code"], 200, "subscribe")

        def crash():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(rc.IO_TIMEOUT)
            s.connect(sock)
            send(s, 1, hello(mode=0))
            t, _, _ = recv(s)
            expect_eq(t, 1, "the old process's hello")
            t, body, fds = recv(s)
            expect_eq((t, len(fds)), (2, 2), "listeners")
            for f in fds:
                os.close(f)
            s.close()	# dies before READY, with the state on the way

        def garbage(data):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(rc.IO_TIMEOUT)
            s.connect(sock)
            s.sendall(data)
            try:	# closed: at once (a reset: our bytes were unread)
                expect_eq(s.recv(64), b"", "garbage answered")
            except ConnectionResetError:
                pass
            s.close()

        # an HTTP request (its length 1.2 GB), a hello without the magic
        for n, data in enumerate([b"GET / HTTP/1.1\r\n\r\n",
                                  msg(1, b"x" * 20)[0]]):
            await loop.run_in_executor(None, garbage, data)
            await rc.await_state("garbage %d counted" % n, lambda: rc.stats(
                old)["handover"]["fallbacks"]["peer_lost"],
                lambda v, n=n: v == n + 1)
        await loop.run_in_executor(None, crash)
        await rc.await_state("the old process counting the loss",
                             lambda: rc.stats(old).get("handover", {}).get(
                                 "fallbacks", {}).get("peer_lost"),
                             lambda v: v == 3)
        stop = threading.Event()
        pub = Publisher(old, "h:crash", stop)
        pub.start()
        m = json.loads(await rc.ws_recv(ws))
        expect_eq((m["cmd"], m["data"]["n"]), ("push", 0),
                  "a publish after the failed take-over")
        stop.set()
        await loop.run_in_executor(None, pub.join, 60)
        expect(pub.error is None, "publisher: %r", pub.error)
        await ws.close()
        new = rc.Engine(exe, *args(sock, "--take-over", sock,
                                   "--take-over-mode", "drain"),
                        listen="127.0.0.1:%d" % old.port)
        with new:
            expect_eq(await loop.run_in_executor(None, old.wait, 120), 0,
                      "the old process's exit status")
            ho = rc.stats(new)["handover"]
            expect_eq((ho["mode_asked"], ho["fallbacks"]["live"]),
                      ("drain", 0), "drain asked, no fallback")
            # the socket is the new process's now: the next upgrade
            with rc.Engine(exe, *args(sock, "--take-over", sock),
                           listen="127.0.0.1:%d" % old.port) as third:
                expect_eq(await loop.run_in_executor(None, new.wait, 120),
                          0, "the second process's exit status")
                expect_eq(rc.stats(third)["handover"]["listeners"], 2,
                          "listeners handed on")


async def check_version(exe, d):
    sock = os.path.join(d, "version.sock")
    lst = socket.socket()
    # as the engine's own: the new process's other shard binds the port too
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock)
    os.chmod(sock, 0o600)
    srv.listen(1)
    srv.settimeout(rc.READY_TIMEOUT)
    seen = {}

    def old():
        s, _ = srv.accept()
        s.settimeout(rc.READY_TIMEOUT)
        t, body, _ = recv(s)
        seen["hello"] = t
        send(s, 1, hello(state=99))
        send(s, 2, struct.pack(">HHB", 1, 1, 1), [lst.fileno()])
        send(s, 3, b"\x07\x00\x00\x00\x03abc")	# a format of the future
        send(s, 4, struct.pack(">BIIQ", 1, 0, 0, 8))
        seen["ready"] = recv(s)[0]
        s.close()

    t = threading.Thread(target=old, daemon=True)
    t.start()
    # systemd's side: the new process says it is the service's main one
    sd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sd.bind(os.path.join(d, "notify"))
    sd.settimeout(rc.READY_TIMEOUT)
    os.environ["NOTIFY_SOCKET"] = os.path.join(d, "notify")
    try:
        new = rc.Engine(exe, *args(os.path.join(d, "next.sock"),
                                   "--take-over", sock))
        with new:
            del os.environ["NOTIFY_SOCKET"]
            expect_eq(sd.recv(256).decode(), "MAINPID=%d\nREADY=1"
                      % new.proc.pid, "sd_notify")
            t.join(rc.READY_TIMEOUT)
            expect_eq(seen, {"hello": 1, "ready": 5}, "the hellos, READY")
            expect_eq(new.port, lst.getsockname()[1], "serves on ours")
            ho = rc.stats(new)["handover"]
            expect_eq((ho["fallbacks"]["state_version"], ho["histories"]),
                      (1, 0), "state not installed")
            ws = await rc.ws_connect(new.url("/ws"))
            r = await rc.ws_command(ws, "subscribe", 1, channel="h:v",
                                    offset=5, epoch="0123456789abcdef")
            expect(r["data"].get("recovered") is False, "recovery: %s", r)
            await ws.close()
            expect("state format 99" in new.output(), "the log says why")
    finally:
        os.environ.pop("NOTIFY_SOCKET", None)
        sd.close()
        srv.close()
        lst.close()


def check_socket(exe, d):
    """A file that is not a socket, and a socket a process listens on,
    stop a fresh start with --handover-socket (exit 1, said why)."""
    path = os.path.join(d, "file")
    open(path, "w").close()
    p = subprocess.run([exe, "--listen", "127.0.0.1:0", "--handover-socket",
                        path], capture_output=True, text=True,
                       timeout=rc.EXIT_TIMEOUT)
    expect(p.returncode == 1 and "is not a socket" in p.stderr,
           "a plain file: %d %s", p.returncode, p.stderr)
    sock = os.path.join(d, "live.sock")
    with rc.Engine(exe, "--handover-socket", sock):
        p = subprocess.run([exe, "--listen", "127.0.0.1:0",
                            "--handover-socket", sock], capture_output=True,
                           text=True, timeout=rc.EXIT_TIMEOUT)
        expect(p.returncode == 1 and "--take-over" in p.stderr,
               "a live socket: %d %s", p.returncode, p.stderr)
    expect(not os.path.exists(sock), "socket left behind at the stop")


async def check_redis(exe, d):
    """With Redis the state is Redis's: not sent (fallbacks.broker), and
    a drained client recovers all the same, from Redis."""
    sock = os.path.join(d, "redis.sock")
    loop = asyncio.get_running_loop()
    with rc.Engine(exe, *args(sock), broker=True) as old:
        await rc.healthy(old)
        ws = await rc.ws_connect(old.url("/ws"))
        r = await rc.ws_command(ws, "subscribe", 1, channels=["h:r"])
        expect_eq(r["code"], 200, "subscribe")
        rc.post_many(old, "/publish/h:r", [json.dumps({"n": i})
                                           for i in range(5)], key=KEY)
        last = [json.loads(await rc.ws_recv(ws)) for _ in range(5)][-1]
        new = rc.Engine(exe, *args(sock, "--take-over", sock,
                                   "--take-over-mode", "drain"),
                        broker=True, listen="127.0.0.1:%d" % old.port)
        with new:
            expect_eq((await rc.ws_await_close(ws, 60))[0], 1012, "close")
            expect_eq(await loop.run_in_executor(None, old.wait, 120), 0,
                      "the old process's exit status")
            await rc.healthy(new)
            rc.post_many(new, "/publish/h:r", [json.dumps({"n": 5})],
                         key=KEY)
            ws = await rc.ws_connect(new.url("/ws"))
            r = await rc.ws_command(ws, "subscribe", 1, channel="h:r",
                                    epoch=last["epoch"],
                                    offset=last["offset"])
            expect(r["data"].get("recovered") is True, "recovery: %s", r)
            m = json.loads(await rc.ws_recv(ws))
            expect_eq(m["data"], {"n": 5}, "the message missed")
            await ws.close()
            ho = rc.stats(new)["handover"]
            expect_eq((ho["fallbacks"]["broker"], ho["histories"]), (1, 0),
                      "state left in Redis")
            expect_eq((ho["mode"], ho["fallbacks"]["live"]), ("drain", 0),
                      "the drain asked")


def checks(run):
    with tempfile.TemporaryDirectory() as d:
        if rc.only_on("redis"):
            run.check("redis", check_redis, run.exe, d)
            return
        run.check("drain", check_drain, run.exe, d, timeout=300)
        run.check("crash", check_crash, run.exe, d)
        run.check("version", check_version, run.exe, d)
        run.check("socket", check_socket, run.exe, d)


if __name__ == "__main__":
    rc.main("handover", checks)
