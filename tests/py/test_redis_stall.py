# SPDX-License-Identifier: MIT
"""A Redis that stops answering (SIGSTOP) is found and bounded.

- idle: with nothing asked of it, a frozen Redis is still found (the
  engine PINGs an idle link): /healthz goes 503, and 200 once it thaws.
- waiting: a publish that reached a frozen Redis is answered 504 ("may be
  published") within --redis-timeout (1 s) plus 1 s, not left hanging; meanwhile
  new publishes get 503 ("not published") at once, and a message refused
  with 503 is never delivered, even after Redis thaws.
- budget: with a long timeout and a small --redis-max-pending, /ws
  publishes past the budget get a 503 reply at once; /stats shows the
  queued bytes within the budget and RSS grows by far less than what was
  offered (6.4 MiB); after the thaw every accepted publish is
  answered 200 and delivered in order, the queue is empty again, and the
  link never went down (the timeout is far off).
- strangers: Redis is frozen and thawed 20 times, each freeze until the
  links time out, while clients read /healthz, each on a connection of
  its own: every client gets an HTTP response, never bytes meant for
  Redis (a link's socket closed while a send on it was queued gave its
  number to the next client accepted, which read the heartbeat's EVAL),
  and none waits in vain. Each freeze has a chance of the race, not a
  certainty; test-engine-resp makes it happen every time.
"""

import json
import signal
import threading

import rc
import redisd
from rc import expect, expect_eq


def healthz(eng):
    return rc.api(eng, "GET", "/healthz")[0]


async def links_up(eng):
    """Both Redis links ready: a freeze starting earlier would be read as
    "connecting", not as the deadline the checks are about."""
    await rc.await_state("/healthz 200 before the freeze",
                         lambda: healthz(eng) == 200)


async def subscribe(eng, channel):
    ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
    await ws.send(json.dumps({"seq": 0, "cmd": "subscribe",
                              "data": {"channels": [channel]}}))
    expect_eq(json.loads(await rc.ws_recv(ws)).get("code"), 200,
              "subscribe reply")
    return ws


async def pushes_until(ws, last):
    """The data of every push up to and including @last."""
    got = []
    while True:
        m = json.loads(await rc.ws_recv(ws))
        expect_eq(m.get("cmd"), "push", "a push")
        got.append(m["data"])
        if m["data"] == last:
            return got


async def check_idle(eng, redis):
    await links_up(eng)
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        await rc.await_state("/healthz 503 with nothing asked of Redis",
                             lambda: healthz(eng) == 503)
        _, body = rc.api(eng, "GET", "/healthz")
        expect(b"redis" in body and b"no answer within 1000 ms" in body,
               "503 says why: %r", body)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    await rc.await_state("/healthz 200 after the thaw",
                         lambda: healthz(eng) == 200)


async def check_waiting(eng, redis):
    ws = await subscribe(eng, "st")
    await rc.await_state("Redis lists the subscription", lambda: redis.command(
        "PUBSUB", "NUMSUB", "ringcast:ch:st")[1] == 1)
    await links_up(eng)
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        # The answer is due at --redis-timeout (1 s); the client's own
        # bound (rc.IO_TIMEOUT) only turns a publish left hanging into
        # a failure: how soon the 504 comes is the scheduler's on a
        # loaded machine.
        status, body = rc.api(eng, "POST", "/publish/st", b'"m1"')
        expect_eq(status, 504, "a publish Redis never answered: %r" % body)
        expect("may be published" in body.get("error", ""),
               "504 says the message may be published: %r", body)
        await rc.await_state("/healthz 503 while Redis is frozen",
                             lambda: healthz(eng) == 503)
        status, body = rc.api(eng, "POST", "/publish/st", b'"m2"')
        expect_eq(status, 503, "a publish while the link is down: %r"
                  % body)
        expect("not published" in body.get("error", ""),
               "503 says the message was not published: %r", body)
        st = rc.stats(eng)["redis"]
        expect(st["up"] is False, "/stats redis.up: %r", st)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    await rc.await_state("/healthz 200 after the thaw",
                         lambda: healthz(eng) == 200)
    # The subscriber link was made again too; m3 goes out once it is.
    await rc.await_state("subscription back", lambda: redis.command(
        "PUBSUB", "NUMSUB", "ringcast:ch:st")[1] == 1)
    status, body = rc.api(eng, "POST", "/publish/st", b'"m3"')
    expect_eq((status, body), (200, {"ok": True, "nodes": 1}),
              "publish after the thaw")
    got = await pushes_until(ws, "m3")
    expect("m2" not in got, "a message refused with 503 was delivered: %r",
           got)
    await ws.close()


async def check_budget(eng, redis, exe):
    size, n = 16 << 10, 400		# 6.4 MiB against a 64K budget
    sub = await subscribe(eng, "budget")
    pub = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
    await links_up(eng)
    rss0 = rc.vm_rss_kb(eng.proc.pid)
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        for k in range(n):
            data = "%04d" % k + "x" * size
            await pub.send(json.dumps({"seq": k + 1, "cmd": "publish",
                                       "data": {"channel": "budget",
                                                "data": data}}))
        # Refusals come at once, while Redis is still frozen.
        refused = {}
        while len(refused) < n - 8:
            m = json.loads(await rc.ws_recv(pub))
            expect_eq(m.get("code"), 503, "a reply while frozen: %r" % m)
            expect("too much is queued" in m.get("msg", ""),
                   "the 503 says why: %r", m)
            refused[m["seq"]] = m
        st = rc.stats(eng)["redis"]
        expect(0 < st["pending_bytes"] <= (64 << 10), "queued bytes "
               "within --redis-max-pending: %r", st)
        # Held twice at most (the request and its RESP copy) plus the
        # allocator's slack: not the 6.4 MiB offered, let alone twice.
        grew = rc.vm_rss_kb(eng.proc.pid) - rss0
        if rc.uses_mimalloc(exe):
            expect(grew < 4096, "RSS grew by %d KiB while Redis was "
                   "frozen", grew)
        expect(st["over_budget"] >= n - 8, "over_budget counted: %r", st)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    answers = dict(refused)
    while len(answers) < n:
        m = json.loads(await rc.ws_recv(pub))
        answers[m["seq"]] = m
    accepted = sorted(k for k, m in answers.items() if m["code"] == 200)
    expect(accepted and all(answers[k]["code"] in (200, 503)
                            for k in answers), "answers: %r",
           {k: m["code"] for k, m in answers.items()})
    expect(len(accepted) * size <= (64 << 10) + size,
           "%d accepted: more than the budget holds", len(accepted))
    got = await pushes_until(sub, "%04d" % (accepted[-1] - 1) +
                             "x" * size)
    expect_eq([int(d[:4]) + 1 for d in got], accepted,
              "delivered: exactly the accepted publishes, in order")
    st = await rc.await_state("nothing queued toward Redis",
                              lambda: rc.stats(eng)["redis"],
                              lambda r: r["pending_bytes"] == 0)
    # A 60 s timeout never fired: the link stayed up throughout.
    expect_eq(st["reconnects"], 0, "reconnects with a 60 s timeout")
    await pub.close()
    await sub.close()


def exchange(eng, req, timeout):
    """The bytes @eng answers @req with on a connection of its own, up to
    its close; None if it kept the connection open for @timeout s."""
    s = rc.connect(eng.host, eng.port, timeout)
    try:
        s.sendall(req)
        data, closed = rc.recv_until_eof(s, timeout)
    finally:
        s.close()
    return data if closed else None


class Strangers(threading.Thread):
    """While @go is set, sends @req over and over, each time on a new
    connection (at most 100000 times), until told to stop; keeps whatever
    was not an HTTP answer."""

    def __init__(self, eng, req, go):
        super().__init__()
        self.eng, self.req, self.go = eng, req, go
        self.done = 0
        self.bad = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set() and self.done < 100000:
            if not self.go.wait(1):
                continue
            try:
                data = exchange(self.eng, self.req, 10)
            except ConnectionError:
                data = b"HTTP/1.1 "	# refused or reset: nothing wrong
            if data is None or not data.startswith(b"HTTP/1.1 "):
                self.bad.append(data)
            self.done += 1


async def check_strangers(eng, redis):
    # Redis is never asked anything here but the engine's own: the
    # presence heartbeat (an EVAL, every second) and the PINGs of an
    # idle link. A heartbeat that is the first request after the freeze
    # is due again on the tick its deadline passes, and is queued just
    # before the link closes.
    req = (b"GET /healthz HTTP/1.1\r\nHost: " + eng.host.encode() +
           b"\r\nConnection: close\r\n\r\n")
    go = threading.Event()
    clients = [Strangers(eng, req, go) for _ in range(6)]
    for c in clients:
        c.start()

    def answers():
        return (sum(c.done for c in clients),
                sum(len(c.bad) for c in clients))
    try:
        for _ in range(20):
            await links_up(eng)
            redis.proc.send_signal(signal.SIGSTOP)
            go.set()
            try:
                # the links time out and close while clients come
                await rc.await_state("/healthz 503 while Redis is frozen",
                                     lambda: healthz(eng) == 503)
                n = answers()[0]
                await rc.await_state("100 more answers after the links "
                                     "went down", answers,
                                     lambda v: v[0] >= n + 100 or v[1])
            finally:
                go.clear()
                redis.proc.send_signal(signal.SIGCONT)
            if answers()[1]:
                break
    finally:
        for c in clients:
            c.halt.set()
        go.set()
        for c in clients:
            c.join(60)
    bad = [b for c in clients for b in c.bad]
    expect(not bad, "%d of %d clients got no HTTP answer: %r", len(bad),
           answers()[0], [b[:48] if b is not None else
                          "nothing within 10 s" for b in bad[:5]])


def checks(run):
    with run.section("setup"), redisd.Redis() as redis:
        with rc.Engine(run.exe, "--shards", "2", "--redis", redis.url,
                       "--redis-timeout", "1s") as eng:
            run.check("idle", check_idle, eng, redis)
            run.check("waiting", check_waiting, eng, redis)
        with rc.Engine(run.exe, "--shards", "2", "--redis", redis.url,
                       "--redis-timeout", "60s", "--client-publish",
                       "--redis-max-pending", "64K") as eng:
            run.check("budget", check_budget, eng, redis, run.exe)
        with rc.Engine(run.exe, "--shards", "2", "--redis", redis.url,
                       "--redis-timeout", "1s") as eng:
            run.check("strangers", check_strangers, eng, redis,
                      timeout=150)


if __name__ == "__main__":
    rc.main("redis-stall", checks)
