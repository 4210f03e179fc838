# SPDX-License-Identifier: MIT
"""Channel history and recovery with Redis: two engines (nodes A and B,
--shards 2 each) on one real redis-server.

- across: a subscriber of node A leaves, 500 messages are published on
  node B, it comes back on node B with its offset and epoch: recovered,
  exactly those 500 in order, then live messages without a gap or a
  duplicate at the seam; again while publishing goes on during the
  recovery.
- errors: an offset from the future (400, nothing subscribed), a wrong
  epoch (recovered:false with the current position), a channel without
  history; the history command reads Redis from any node; a raw PUBLISH
  on a history channel is delivered without an offset.
- backlog: a recovery on node B missing 600 x 8 KB published on node A
  says "recovered":false, "reason":"backlog" instead of closing 1008.
- kill9: node A is killed (SIGKILL) while its subscribers receive; they
  reconnect to node B with their last position and lose nothing.
- freeze: Redis is stopped (SIGSTOP) for 10 s while a publisher keeps
  publishing on node B; node A's subscribers see every offset once, in
  order, with no gap: every publish answered 200 among them, none
  answered 503 (node A reads back from the stream what its subscriber
  link missed while it was down).
- restart: Redis with an append-only file is killed (SIGKILL) and
  started again while publishing goes on: the epoch survives and nothing
  is lost. Without persistence the history is gone: the pushes carry a
  new epoch, offsets begin again and a recovery from the old position
  says recovered:false. Never a silent gap.
- flushed: Redis loses its data (FLUSHALL) under a channel's clients; a
  recovery from the old position says recovered:false with the
  channel's new epoch and offset 0 at once, and that epoch is the one
  the next message carries and a later recovery goes on from.
- limit0: a history command with limit 0 is answered 200, no messages.
- big-reads: 20 clients read at once the history of a channel holding
  200 x 64 KB: Redis's memory stays bounded (each read is cut at the
  per-read byte bound, the reply says "more" and where to go on), the
  node stays healthy throughout, and paging with data.offset reads every
  message once, in order.
- big-recovery: a recovery missing 24 x 64 KB is read in pages and
  says recovered:true with every message; one missing 80 x 64 KB (more
  than --max-pending-bytes) says recovered:false with reason "backlog",
  instead of closing the connection as a slow consumer, which stays open
  and live.
- big-fill: 40 x 64 KB appear in a channel's stream without reaching
  node A's link (written into Redis as the publish script would, minus
  the PUBLISH); the next message shows A the gap, which it reads back
  page by page: its subscriber sees every offset once, in order.
- read-budget (--redis-max-reading 1M): reads past the node's budget of
  bytes in flight are answered 503 "redis busy", each command once, on a
  connection that stays open.
"""

import asyncio
import json
import signal
import threading

import rc
import redisd
from rc import expect, expect_eq
from test_history import backlog, command, publish, push, ws_open

NS = ("--namespace", "chat:history=100000,ttl=10m")


def node(exe, redis, *extra):
    return rc.Engine(exe, "--shards", "2", "--redis", redis.url, *NS,
                     *extra)


async def healthy(*engines):
    for eng in engines:
        await rc.await_state("node %d up" % eng.port, lambda: rc.api(
            eng, "GET", "/healthz")[0] == 200)


async def subscribed(eng, chan, redis):
    ws = await ws_open(eng)
    expect_eq((await command(ws, 1, "subscribe", channels=[chan]))["code"],
              200, "subscribe")
    return ws


async def position(a, b, chan, redis):
    """Subscribes on @a, publishes "first" on @b: the (offset, epoch) the
    subscriber saw."""
    ws = await subscribed(a, chan, redis)
    publish(b, chan, "first")
    m = await push(ws)
    await ws.close()
    return m["offset"], m["epoch"]


async def read_to(ws, last, seen):
    """Appends (epoch, offset, data) of every push to @seen up to offset
    @last."""
    while not seen or seen[-1][1] < last:
        m = await push(ws)
        seen.append((m.get("epoch"), m.get("offset"), m["data"]))


def unbroken(seen, what):
    """One epoch, every offset once, in order."""
    expect(len({e for e, _, _ in seen}) == 1, "%s: epochs %r", what,
           {e for e, _, _ in seen})
    offs = [o for _, o, _ in seen]
    for i in range(1, len(offs)):
        expect(offs[i] == offs[i - 1] + 1, "%s: offset %r after %r (at "
               "%d of %d; around: %r)", what, offs[i], offs[i - 1], i,
               len(offs), seen[max(0, i - 3):i + 3])


async def check_across(a, b, redis):
    offset, epoch = await position(a, b, "chat:r", redis)
    for n in range(500):
        publish(b, "chat:r", {"n": n})
    ws = await ws_open(b)
    r = await command(ws, 2, "subscribe", channel="chat:r", offset=offset,
                      epoch=epoch)
    expect_eq((r["code"], r["data"]), (200, {"recovered": True,
                                            "epoch": epoch,
                                            "offset": offset + 500}),
              "recovery on the other node")
    seen = []
    await read_to(ws, offset + 500, seen)
    expect_eq([(o, d) for _, o, d in seen],
              [(offset + 1 + n, {"n": n}) for n in range(500)],
              "the 500 missed, in order")
    for n in range(500, 510):
        publish(a, "chat:r", {"n": n})
    await read_to(ws, offset + 510, seen)
    unbroken(seen, "recovered then live")
    expect_eq([d for _, _, d in seen[500:]],
              [{"n": n} for n in range(500, 510)], "live after the seam")
    await ws.close()

    # Publishing goes on (on node A) while the client recovers on B.
    offset, epoch = await position(a, b, "chat:race", redis)
    for n in range(300):
        publish(b, "chat:race", {"n": n})
    stop = threading.Event()
    sent = [300]

    def keep_publishing():
        while not stop.is_set() and sent[0] < 900:
            publish(a, "chat:race", {"n": sent[0]})
            sent[0] += 1

    t = threading.Thread(target=keep_publishing)
    t.start()
    try:
        ws = await ws_open(b)
        r = await command(ws, 2, "subscribe", channel="chat:race",
                          offset=offset, epoch=epoch)
        expect_eq(r["data"]["recovered"], True, "recovered while racing")
    finally:
        stop.set()
        await asyncio.to_thread(t.join)
    seen = []
    await read_to(ws, offset + sent[0], seen)
    expect_eq([(o, d) for _, o, d in seen],
              [(offset + 1 + n, {"n": n}) for n in range(sent[0])],
              "no gap and no duplicate across the recovery")
    await rc.ws_quiet(ws, 9, "after the last message")
    await ws.close()


async def check_backlog(a, b, redis):
    """A recovery on node B missing 600 x 8 KB published on node A."""
    offset, epoch = await position(a, b, "chat:bk", redis)
    await backlog(b, a, "chat:bk", offset, epoch)


async def check_errors(a, b, redis):
    offset, epoch = await position(a, b, "chat:e", redis)
    ws = await ws_open(b)
    r = await command(ws, 1, "subscribe", channel="chat:e",
                      offset=offset + 5, epoch=epoch)
    expect_eq((r["code"], r["msg"]), (400, "offset from the future"),
              "a future offset")
    r = await command(ws, 2, "subscribe", channel="plain", offset=1,
                      epoch=epoch)
    expect_eq((r["code"], r["msg"]), (400, "channel has no history"),
              "recovery on a channel without history")
    publish(a, "chat:e", "after")
    await rc.ws_quiet(ws, 3, "after refused recoveries")
    r = await command(ws, 4, "subscribe", channel="chat:e", offset=offset,
                      epoch="0" * 16)
    expect_eq((r["code"], r["data"]), (200, {"recovered": False,
                                            "epoch": epoch,
                                            "offset": offset + 1}),
              "a wrong epoch: not recovered, the current position")
    publish(a, "chat:e", "live")
    m = await push(ws)
    expect_eq((m["offset"], m["data"]), (offset + 2, "live"),
              "live after a failed recovery")
    r = await command(ws, 5, "history", channel="chat:e", limit=2)
    expect_eq([(h["offset"], h["data"]) for h in r["data"]["messages"]],
              [(offset + 1, "after"), (offset + 2, "live")],
              "history read from Redis")
    r = await command(ws, 6, "history", channel="chat:never")
    expect_eq((r["code"], r["data"]), (200, {"epoch": None, "offset": 0,
                                            "messages": []}),
              "history of a channel never published")
    # A raw PUBLISH from outside: delivered, kept nowhere, no offset.
    redis.command("PUBLISH", "ringcast:ch:chat:e", '"raw"')
    m = await push(ws)
    expect_eq(m, {"cmd": "push", "channel": "chat:e", "data": "raw"},
              "a raw PUBLISH on a history channel")
    await ws.close()


class Subscriber:
    """A client of @chan that follows its offsets and, when its node
    goes away, reconnects to another with its last position."""

    def __init__(self, chan):
        self.chan = chan
        self.seen = []
        self.ws = None
        self.recovered = None

    async def start(self, eng):
        self.ws = await ws_open(eng)
        expect_eq((await command(self.ws, 1, "subscribe",
                                 channels=[self.chan]))["code"], 200,
                  "subscribe")

    async def read(self, until):
        """Reads pushes until data @until has been seen."""
        while not self.seen or self.seen[-1][2] != until:
            m = await push(self.ws)
            self.seen.append((m.get("epoch"), m.get("offset"), m["data"]))

    async def move(self, eng):
        """Reconnects to @eng, recovering from the last push seen."""
        epoch, offset, _ = self.seen[-1]
        self.moved_at = len(self.seen)
        self.ws = await ws_open(eng)
        r = await command(self.ws, 2, "subscribe", channel=self.chan,
                          offset=offset, epoch=epoch)
        self.recovered = r["data"]["recovered"]


class Publisher(threading.Thread):
    """Publishes {"n": k} on @eng until told to stop, keeping each
    answer's status."""

    def __init__(self, eng, chan, limit=100000):
        super().__init__()
        self.eng, self.chan, self.limit = eng, chan, limit
        self.status = {}
        self.halt = threading.Event()
        self.progress = threading.Condition()

    def run(self):
        n = 0
        while not self.halt.is_set() and n < self.limit:
            try:
                st, _ = rc.api(self.eng, "POST", "/publish/" + self.chan,
                               json.dumps({"n": n}), timeout=5)
            except OSError:
                st = None
            with self.progress:
                self.status[n] = st
                self.progress.notify_all()
            n += 1

    def wait_for(self, count):
        with self.progress:
            self.progress.wait_for(lambda: len(self.status) >= count, 60)
        expect(len(self.status) >= count, "publisher stuck at %d",
               len(self.status))

    def stop(self):
        self.halt.set()
        self.join(60)


def check_seen(sub, pub, what):
    """@sub saw every offset once from its first push on, every publish
    answered 200 after its first, and none answered 503."""
    unbroken(sub.seen, what)
    got = {d["n"] for _, _, d in sub.seen if isinstance(d, dict)}
    start = min(got)
    ok = {n for n, st in pub.status.items() if st == 200 and n >= start}
    expect(ok <= got, "%s: lost %d publishes answered 200: %r", what,
           len(ok - got), sorted(ok - got)[:10])
    refused = {n for n, st in pub.status.items() if st == 503}
    expect(not (refused & got), "%s: delivered publishes answered 503: "
           "%r", what, sorted(refused & got)[:10])


async def end_marker(pub_node, subs, chan="chat:k"):
    """Publishes "end" and reads every subscriber up to it."""
    publish(pub_node, chan, "end")
    await asyncio.gather(*(s.read("end") for s in subs))
    for s in subs:
        s.seen.pop()


async def check_kill9(exe, redis):
    a = node(exe, redis).start()
    try:
        with node(exe, redis) as b:
            await healthy(a, b)
            subs = [Subscriber("chat:k") for _ in range(10)]
            for s in subs:
                await s.start(a)
            pub = Publisher(b, "chat:k", limit=600)
            pub.start()
            try:
                pub.wait_for(1)
                await asyncio.gather(*(s.read({"n": 0}) for s in subs))
                pub.wait_for(100)
                a.kill()	# SIGKILL, mid-stream
                for s in subs:
                    # what is still in the socket is read first
                    try:
                        while True:
                            m = await push(s.ws)
                            s.seen.append((m.get("epoch"), m.get("offset"),
                                           m["data"]))
                    except Exception:
                        pass
                    await s.move(b)
                    expect_eq(s.recovered, True, "recovered on node B")
            finally:
                pub.stop()
            await end_marker(b, subs)
            for i, s in enumerate(subs):
                check_seen(s, pub, "subscriber %d (moved at %d)"
                           % (i, s.moved_at))
                await s.ws.close()
    finally:
        a.kill()


async def check_freeze(exe, redis):
    with node(exe, redis, "--redis-timeout", "1s") as a, \
            node(exe, redis, "--redis-timeout", "1s") as b:
        await healthy(a, b)
        subs = [Subscriber("chat:f") for _ in range(5)]
        for s in subs:
            await s.start(a)
        pub = Publisher(b, "chat:f")
        pub.start()
        try:
            pub.wait_for(1)
            await asyncio.gather(*(s.read({"n": 0}) for s in subs))
            pub.wait_for(50)
            redis.proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(10)	# the scenario: 10 s frozen
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            await healthy(a, b)
            n = len(pub.status)
            await asyncio.to_thread(pub.wait_for, n + 50)
        finally:
            pub.stop()
        codes = set(pub.status.values())
        expect(503 in codes or 504 in codes, "no publish failed during "
               "the freeze: %r", codes)
        await end_marker(b, subs, "chat:f")
        for i, s in enumerate(subs):
            check_seen(s, pub, "subscriber %d" % i)
            await s.ws.close()
        st = rc.stats(a)["redis"]
        expect(st["reconnects"] >= 1 and st["history_fills"] >= 1 and
               st["history_gaps"] == 0, "node A reconnected and read "
               "back what it missed: %r", st)


async def check_restart(exe):
    with redisd.Redis(aof=True) as redis:
        with node(exe, redis) as a, node(exe, redis) as b:
            await healthy(a, b)
            subs = [Subscriber("chat:k") for _ in range(5)]
            for s in subs:
                await s.start(a)
            pub = Publisher(b, "chat:k")
            pub.start()
            try:
                pub.wait_for(1)
                await asyncio.gather(*(s.read({"n": 0}) for s in subs))
                pub.wait_for(50)
                redis.restart()		# SIGKILL, then the AOF is read
                await healthy(a, b)
                n = len(pub.status)
                await asyncio.to_thread(pub.wait_for, n + 50)
            finally:
                pub.stop()
            await end_marker(b, subs)
            for i, s in enumerate(subs):
                check_seen(s, pub, "subscriber %d (AOF)" % i)
                await s.ws.close()

    with redisd.Redis() as redis:
        with node(exe, redis) as a, node(exe, redis) as b:
            await healthy(a, b)
            offset, epoch = await position(a, b, "chat:gone", redis)
            ws = await subscribed(a, "chat:gone", redis)
            publish(b, "chat:gone", "before")
            m = await push(ws)
            expect_eq((m["offset"], m["epoch"]), (offset + 1, epoch),
                      "before the restart")
            redis.restart()		# no persistence: the history is gone
            await healthy(a, b)
            await rc.await_state("the subscription back in Redis",
                                 lambda: redis.command(
                                     "PUBSUB", "NUMSUB",
                                     "ringcast:ch:chat:gone")[1] >= 1)
            publish(b, "chat:gone", "after")
            m = await push(ws)
            expect(m["epoch"] != epoch and m["offset"] == 1,
                   "a history begun again says so: %r", m)
            await ws.close()
            ws = await ws_open(b)
            r = await command(ws, 2, "subscribe", channel="chat:gone",
                              offset=offset + 1, epoch=epoch)
            expect_eq(r["data"], {"recovered": False, "epoch": m["epoch"],
                                  "offset": 1},
                      "recovery from a lost history")
            await ws.close()


async def check_flushed(a, b, redis):
    offset, epoch = await position(a, b, "chat:flushed", redis)
    expect_eq(redis.command("FLUSHALL"), "OK", "FLUSHALL")
    ws = await ws_open(b)
    r = await command(ws, 1, "subscribe", channel="chat:flushed",
                      offset=offset, epoch=epoch)
    expect_eq(r["code"], 200, "recovery after the flush: %r" % r)
    new = r["data"]["epoch"]
    expect(isinstance(new, str) and len(new) == 16 and new != epoch and
           r["data"] == {"recovered": False, "epoch": new, "offset": 0},
           "recovery from a history Redis lost: the new epoch at once, "
           "offset 0: %r", r["data"])
    publish(a, "chat:flushed", "next")
    m = await push(ws)
    expect_eq((m["epoch"], m["offset"], m["data"]), (new, 1, "next"),
              "the next message under the epoch the reply gave")
    await ws.close()
    ws = await ws_open(a)
    r = await command(ws, 2, "subscribe", channel="chat:flushed", offset=0,
                      epoch=new)
    expect_eq(r["data"], {"recovered": True, "epoch": new, "offset": 1},
              "a recovery from the reply's position")
    m = await push(ws)
    expect_eq((m["epoch"], m["offset"], m["data"]), (new, 1, "next"),
              "recovered from offset 0 of the new epoch")
    await ws.close()


async def check_limit0(a, b, redis):
    publish(a, "chat:zero", "one")
    ws = await ws_open(b)
    r = await command(ws, 1, "history", channel="chat:zero", limit=0)
    expect_eq((r["code"], r.get("data", {}).get("messages")), (200, []),
              "history with limit 0: %r" % r)
    expect_eq(r["data"]["offset"], 1, "the newest offset, limit 0")
    await ws.close()


BIG = 64 * 1024


async def big_open(eng):
    """A client that takes a frame of any size."""
    return await rc.ws_connect(eng.url("/ws"), ping_interval=None,
                               max_size=None)


def bounded(redis, base, health, what):
    """Redis's memory peaked less than 64 MB above @base (bytes) while
    @what ran, and /healthz (@health, an rc.HealthWatch) said 200 all the
    while."""
    peak = int(redis.info("memory")["used_memory_peak"])
    expect(peak - base < 64 << 20, "Redis grew %d MB over %d MB for %s",
           (peak - base) >> 20, base >> 20, what)
    expect(health.seen and set(health.seen) == {200},
           "/healthz during %s: %r", what, sorted(set(health.seen)))


def pages_ok(r, first, what):
    """A history reply cut by the read bound: messages from offset
    @first on, one after another, "more" and "next" the last of them."""
    expect_eq(r["code"], 200, "%s: %r" % (what, rc.short(r, 200)))
    d = r["data"]
    offs = [m["offset"] for m in d["messages"]]
    expect(offs and offs == list(range(first, first + len(offs))),
           "%s: offsets %r from %d", what, offs[:5], first)
    return offs


async def check_big_reads(exe):
    with redisd.Redis() as redis:
        with node(exe, redis) as eng:
            await healthy(eng)
            body = json.dumps("x" * (BIG - 2))
            c = rc.http_conn(eng)
            try:
                for _ in range(200):
                    st, doc = rc.post(c, "/publish/chat:big", body)
                    expect_eq(st, 200, "publish 64 KB (%r)" % doc)
            finally:
                c.close()
            base = int(redis.info("memory")["used_memory"])
            with rc.HealthWatch(eng) as health:
                clients = [await big_open(eng) for _ in range(20)]
                for i, ws in enumerate(clients):
                    await ws.send(json.dumps({"seq": i, "cmd": "history",
                                              "data": {"channel": "chat:big",
                                                       "limit": 1000}}))
                replies = [await rc.ws_reply(ws, i, timeout=60)
                           for i, ws in enumerate(clients)]
            bounded(redis, base, health, "20 history reads")
            for i, r in enumerate(replies):
                offs = pages_ok(r, 1, "reader %d" % i)
                expect(r["data"].get("more") is True and
                       r["data"].get("next") == offs[-1] and
                       len(offs) < 200, "reader %d: a cut read says so: "
                       "%d messages, more %r, next %r", i, len(offs),
                       r["data"].get("more"), r["data"].get("next"))
            # Paging on from "next" reads each message once, in order.
            ws, seen = clients[0], pages_ok(replies[0], 1, "page 1")
            for seq in range(100, 400):
                if not replies[0]["data"].get("more"):
                    break
                replies[0] = await command(ws, seq, "history",
                                           channel="chat:big", limit=1000,
                                           offset=seen[-1])
                seen += pages_ok(replies[0], seen[-1] + 1, "page %d" % seq)
            expect_eq(seen, list(range(1, 201)), "every offset, paging")
            expect_eq(replies[0]["data"].get("more"), None,
                      "the last page says no more")
            for ws in clients:
                await ws.close()


async def check_big_recovery(a, b, redis):
    body = "x" * (BIG - 2)
    for n, want in ((24, True), (80, False)):
        chan = "chat:bigrec%d" % n
        offset, epoch = await position(a, b, chan, redis)
        c = rc.http_conn(b)
        try:
            for _ in range(n):
                st, doc = rc.post(c, "/publish/" + chan, json.dumps(body))
                expect_eq(st, 200, "publish 64 KB (%r)" % doc)
        finally:
            c.close()
        ws = await big_open(a)
        r = await command(ws, 1, "subscribe", channel=chan, offset=offset,
                          epoch=epoch)
        data = {"recovered": want, "epoch": epoch, "offset": offset + n}
        if not want:
            data["reason"] = "backlog"
        expect_eq(r.get("data"), data, "a recovery missing %d x 64 KB" % n)
        if want:
            seen = []
            await read_to(ws, offset + n, seen)
            expect_eq([o for _, o, _ in seen],
                      list(range(offset + 1, offset + n + 1)),
                      "every missed message, in order")
        await rc.ws_quiet(ws, 2, "after the recovery")
        publish(b, chan, "live")
        m = await push(ws)
        expect_eq((m["offset"], m["data"]), (offset + n + 1, "live"),
                  "live after the recovery")
        await ws.close()


async def check_big_fill(a, b, redis):
    ws = await subscribed(a, "chat:fill", redis)
    publish(b, "chat:fill", "first")	# A's link follows from here
    m = await push(ws)
    offset, epoch = m["offset"], m["epoch"]
    body = json.dumps("x" * (BIG - 2))
    for n in range(offset + 1, offset + 41):
        redis.command("XADD", "ringcast:hist:chat:fill", "%d-0" % n, "t",
                      int(redis.command("TIME")[0]) * 1000, "d", body)
        redis.command("HINCRBY", "ringcast:hmeta:chat:fill", "top", 1)
    fills = rc.stats(a)["redis"]["history_fills"]
    publish(b, "chat:fill", "after")
    seen = []
    await read_to(ws, offset + 41, seen)
    expect_eq([(e, o) for e, o, _ in seen],
              [(epoch, n) for n in range(offset + 1, offset + 42)],
              "the gap read back, then the message that showed it")
    st = rc.stats(a)["redis"]
    expect(st["history_fills"] > fills and st["history_gaps"] == 0,
           "read back in pages, no gap: %r", st)
    await ws.close()


async def check_read_budget(exe):
    with redisd.Redis() as redis:
        with node(exe, redis, "--redis-max-reading", "1M") as eng:
            await healthy(eng)
            for n in range(40):
                publish(eng, "chat:budget", "x" * 60000)
            # a connection has one read of a channel in flight: 20 of them
            conns = [await big_open(eng) for _ in range(20)]
            for i, c in enumerate(conns):	# all sent before any answer
                await c.send(json.dumps(
                    {"seq": i, "cmd": "history",
                     "data": {"channel": "chat:budget", "limit": 1000}}))
            got = {}
            for i, c in enumerate(conns):
                r = json.loads(await rc.ws_recv(c, 60))
                expect_eq(r.get("seq"), i, "the reply on connection %d" % i)
                got[i] = (r["code"], r["msg"])
            ws = conns.pop()
            for c in conns:
                await c.close()
            codes = sorted(set(got.values()))
            expect((200, "ok") in codes and
                   (503, "redis busy: too many reads in flight") in codes and
                   len(codes) == 2, "replies past the budget: %r", codes)
            st = rc.stats(eng)["redis"]
            expect(st["reads_refused"] >= 1 and st["reading_bytes"] == 0,
                   "/stats: %r", st)
            r = await command(ws, 99, "heartbeat")
            expect_eq(r["code"], 200, "the connection stays open")
            await ws.close()


def main():
    run = rc.Run("history-redis")
    try:
        with redisd.Redis() as redis:
            with node(run.exe, redis) as a, node(run.exe, redis) as b:
                run.check("setup", healthy, a, b)
                run.check("across", check_across, a, b, redis, timeout=120)
                run.check("errors", check_errors, a, b, redis)
                run.check("backlog", check_backlog, a, b, redis,
                          timeout=120)
                run.check("flushed", check_flushed, a, b, redis)
                run.check("limit0", check_limit0, a, b, redis)
                run.check("big-recovery", check_big_recovery, a, b, redis,
                          timeout=120)
                run.check("big-fill", check_big_fill, a, b, redis)
            run.check("kill9", check_kill9, run.exe, redis, timeout=120)
            run.check("freeze", check_freeze, run.exe, redis, timeout=120)
    except AssertionError as e:
        run.fail("setup", e)
    run.check("restart", check_restart, run.exe, timeout=120)
    run.check("big-reads", check_big_reads, run.exe, timeout=240)
    run.check("read-budget", check_read_budget, run.exe, timeout=120)
    run.finish()


if __name__ == "__main__":
    main()
