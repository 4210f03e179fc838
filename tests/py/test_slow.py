# SPDX-License-Identifier: MIT
"""Slow consumers, --max-pending-bytes 1M: two raw-socket subscribers
with a 4 KiB receive buffer subscribe and then read nothing, next to fast
websockets subscribers (a worker process) on the same channel.  192 MiB
of 16 KiB messages are published, paced by the fast subscribers only:
they must get every message in order.  A stalled one, when it reads,
must find a prefix of the messages followed by close 1008 "slow
consumer": one reads as soon as /stats shows the slow closes, the other
only once everything is published (the spec sets no deadline for it).
/stats counts two slow closes and some dropped frames; the engine's
VmRSS, sampled throughout, grows by less than 64 MB.  A keep-alive HTTP
client that pipelines requests and reads no answer is dropped the same
way."""

import asyncio
import json
import socket

import rc
from rc import OP_TEXT, expect, expect_eq

SIZE = 16 << 10
COUNT = 12288               # 192 MiB per subscriber
FAST = 2
WINDOW = 32                 # messages published ahead of the fast ones
RSS_BOUND_MB = 64
CHANNEL = "slow"


def body(n):
    head = b'{"n":%d,"pad":"' % n
    return head + b"p" * (SIZE - len(head) - 2) + b'"}'


class Stalled(rc.RawWs):
    """A /ws client whose socket buffer is small before it connects, so
    the engine cannot park megabytes in the kernel on its behalf."""

    def __init__(self, eng):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(rc.IO_TIMEOUT)
        self.sock.connect((eng.host, eng.port))
        self.sock = rc.tls_wrap(self.sock, eng.host)
        self.timeout = 60
        self.buf = b""
        self.handshake(eng.host, "/ws")


# ---------------------------------------------------------------- worker

async def fast_one(url, state, io, k):
    async with rc.ws_connect(url, ping_interval=None) as ws:
        await ws.send(rc.push_cmd("subscribe", seq=k, channels=[CHANNEL]))
        reply = json.loads(await rc.ws_recv(ws))
        expect(reply.get("code") == 200, "subscribe: %s", reply)
        state["ready"] += 1
        if state["ready"] == FAST:
            io.say("ready")
        for n in range(COUNT):
            raw = await rc.ws_recv(ws, 60)
            m = json.loads(raw)
            expect(m["channel"] == CHANNEL and m["data"]["n"] == n and
                   raw.endswith(body(n).decode() + "}"),
                   "fast %d: message %s, want n=%d", k, rc.short(raw), n)
            state["got"][k] = n + 1
            low = min(state["got"])
            if low % 16 == 0 and low > state["said"]:
                state["said"] = low
                io.say("got", n=low)
    if ws.close_code != 1000:
        raise AssertionError("fast %d closed with %s" % (k, ws.close_code))


async def worker(config, io):
    state = {"ready": 0, "got": [0] * FAST, "said": 0}
    await asyncio.gather(*(fast_one(config["url"], state, io, k)
                           for k in range(FAST)))
    io.say("done", n=min(state["got"]))


# ---------------------------------------------------------------- parent

def stalled_subscriber(eng):
    ws = Stalled(eng)
    ws.send(OP_TEXT, rc.push_cmd("subscribe", seq=1, channels=[CHANNEL]))
    expect_eq(json.loads(ws.recv_message().payload),
              {"seq": 1, "cmd": "subscribe", "code": 200, "msg": "ok"},
              "stalled subscribe")
    return ws


def read_stalled(ws, what):
    """A prefix of the messages, then close 1008, then EOF."""
    n = 0
    while True:
        try:
            f = ws.recv_frame()
        except EOFError as e:
            raise AssertionError("%s: after %d messages: %s, want close "
                                 "1008" % (what, n, e))
        if f.op != OP_TEXT:
            break
        m = json.loads(f.payload)
        expect(m["data"]["n"] == n, "%s got message %s, want n=%d", what,
               m["data"]["n"], n)
        n += 1
    expect(f.op == rc.OP_CLOSE, "%s: want close 1008, got %r", what, f)
    expect_eq(f.close_code(), 1008, what + " close code")
    expect_eq(f.payload[2:], b"slow consumer", what + " close reason")
    ws.expect_eof()
    ws.close()
    print("  %s subscriber got %d messages (%d KiB) before 1008"
          % (what, n, n * SIZE >> 10))
    expect(n < COUNT, "%s subscriber got everything", what)


def check_slow(eng, state):
    """Two stalled subscribers: one reads as soon as /stats shows the
    slow closes, the other is left for check_late_reader()."""
    prompt = stalled_subscriber(eng)
    state["late"] = stalled_subscriber(eng)
    w = rc.Worker(__file__, {"url": eng.url("/ws")})
    try:
        w.recv("ready", 60)
        base = rc.vm_rss_kb(eng.proc.pid)
        peak = base
        conn = rc.http_conn(eng, timeout=60)
        acked = 0
        for n in range(COUNT):
            # Flow control for the fast ones: they must never have more
            # than WINDOW messages (512 KiB) queued in the engine.
            while n - acked > WINDOW:
                acked = w.recv("got", 60)["n"]
            rc.publish(conn, CHANNEL, body(n))
            if n % 256 == 0:
                peak = max(peak, rc.vm_rss_kb(eng.proc.pid))
            if prompt and n % 64 == 0 and \
                    rc.stats(eng)["total"]["slow_closed"] >= 2:
                read_stalled(prompt, "prompt")
                prompt = None
        conn.close()
        expect(prompt is None, "no slow close after %d MiB published",
               COUNT * SIZE >> 20)
        while acked < COUNT:       # COUNT is a multiple of 16
            acked = w.recv("got", 60)["n"]
        expect_eq(w.recv("done", 120)["n"], COUNT, "fast subscribers got")
        peak = max(peak, rc.vm_rss_kb(eng.proc.pid))
    finally:
        w.close()
    grew = (peak - base) / 1024
    print("  VmRSS %d MB at start, grew %.1f MB at most, %d MB published "
          "to the channel" % (base // 1024, grew, COUNT * SIZE >> 20))
    expect(grew < RSS_BOUND_MB, "engine VmRSS grew %.1f MB, bound %d MB",
           grew, RSS_BOUND_MB)
    st = rc.stats(eng)["total"]
    expect_eq(st["slow_closed"], 2, "slow_closed")
    expect(st["dropped"] > 0, "dropped %d, want > 0", st["dropped"])


def check_late_reader(eng, state):
    """The spec: the stalled reader, reading only now that the fast ones
    are done, still finds its 1008 after a prefix of the messages."""
    expect("late" in state, "no late reader: slow-consumer failed early")
    read_stalled(state.pop("late"), "late")


def check_still_serving(eng):
    rc.wait_stats(eng, lambda s: s["frames_live"] == 0 and
                  s["total"]["connections"] == 1,
                  "frames_live 0, connections 1")
    with rc.RawWs(eng.host, eng.port, path="/ws") as ws:
        ws.send(OP_TEXT, rc.push_cmd("subscribe", seq=1, channels=["s2"]))
        expect_eq(json.loads(ws.recv_message().payload)["code"], 200,
                  "subscribe")


def check_http_reader_stalls(eng):
    """A keep-alive client pipelines GET /stats and reads no answer: its
    answers pile up past --max-pending-bytes (1M) once the kernel's
    buffers are full, and the engine drops it and counts a slow close
    rather than queue answers without end."""
    before = rc.stats(eng)["total"]["slow_closed"]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(rc.IO_TIMEOUT)
    s.connect((eng.host, eng.port))
    s = rc.tls_wrap(s, eng.host)
    req = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    # About 1.5 KB each: 12,000 answers are 18 MB, far past the kernel's
    # send buffer plus the 1M bound.
    try:
        for _ in range(40):
            s.sendall(req * 300)
    except (BrokenPipeError,) + rc.CLOSED_ERRORS:
        pass		# dropped while we were still writing: fine
    rc.wait_stats(eng, lambda st: st["total"]["slow_closed"] > before,
                  "a slow close for the stalled HTTP reader")
    data, closed = rc.recv_until_eof(s)
    expect(closed, "stalled HTTP reader still open after its slow close")
    s.close()


def checks(run):
    state = {}
    with run.section(), rc.Engine(run.exe, "--shards", "2",
                                  "--max-pending-bytes", "1M") as eng:
        run.check("slow-consumer", check_slow, eng, state, timeout=240)
        run.check("late-reader", check_late_reader, eng, state)
        run.check("still-serving", check_still_serving, eng)
        run.check("http-reader-stalls", check_http_reader_stalls, eng)


if __name__ == "__main__":
    rc.main("slow", checks, worker=worker, open_publish=True)
