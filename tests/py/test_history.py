# SPDX-License-Identifier: MIT
"""Channel history and recovery, on each broker of the broker axis
(RINGCAST_TEST_BROKER): embedded (one engine, --shards 2), redis (two
engines, nodes A and B with --shards 2 each, on one real redis-server)
and cluster (the same two on a Redis Cluster of three masters).  A check
written for two nodes subscribes on A and publishes or recovers on B;
embedded, A and B are the one engine.

On every broker:
- offsets: pushes on a channel of a namespace with history carry "epoch"
  and "offset" (1, 2, 3, ...); other channels' pushes do not.
- recover: a subscriber of node A leaves, 500 messages are published on
  node B, it comes back on node B with its last offset and epoch:
  "recovered":true with the current offset, exactly those 500 in order,
  then live messages, no gap and no duplicate at the seam.
- recover-racing: the same while a publisher keeps publishing during the
  recovery.
- errors: an offset from the future (400, and no subscription is left), a
  negative or non-number offset, a missing epoch, a channel without
  history, several channels at once, a bad epoch; a wrong epoch is
  "recovered":false with the current position, and live messages flow
  from there; the history command reads what was published on the other
  node; a channel without history has no history.
- backlog: a recovery on node B missing 600 x 8 KB published on node A,
  more than --max-pending-bytes: "recovered":false with
  "reason":"backlog" (not a 1008 before the reply), live messages from
  there, the missed ones read in pages.
- history: the last N messages of a channel, bounded by limit; a channel
  never published has epoch null and offset 0.
- history-offset: with data.offset, the first N after that offset; limit
  0 gives the position only.
- limit0: a history command with limit 0 is answered 200, no messages,
  the newest offset.
- big-recovery: a recovery missing 24 x 64 KB says recovered:true with
  every message; one missing 80 x 64 KB (more than --max-pending-bytes)
  says recovered:false with reason "backlog", instead of closing the
  connection as a slow consumer, which stays open and live.

Embedded only (one engine's own memory):
- gap: more messages than the history holds were missed: "recovered":false
  with the current offset, and live messages flow from there.
- expiry (ttl=1s): messages go after their ttl; the history starts again
  under a new epoch, and an old position is not "recovered".
- budget (--history-memory 64K): old messages are evicted and counted,
  the bytes stay near the budget.
- restart: a new engine has new epochs: an old position is not recovered.
- pages: a history of 1000 x 32 KB comes in pages of at most 256 KiB of
  messages, with "more" and "next", read on with "offset" and "epoch":
  together every offset once, in order; another epoch's offset reads
  nothing.
- amplify: 40 connections each ask that history and never read: RSS grows
  by a page each, not by the history (before: 1.2 GB); a bystander's
  heartbeat is answered; a second read of a channel while the first is in
  flight gets 429, and so does a 17th read in flight of one connection;
  every command one reply.

On redis only (one redis-server the test drives):
- kill9: node A is killed (SIGKILL) while its subscribers receive; they
  reconnect to node B with their last position and lose nothing.
- freeze: Redis is stopped (SIGSTOP) for 10 s while a publisher keeps
  publishing on node B; node A's subscribers see every offset once, in
  order, with no gap: every publish answered 200 among them, none
  answered 503 (node A reads back from the stream what its subscriber
  link missed while it was down).
- restart-redis: Redis with an append-only file is killed (SIGKILL) and
  started again while publishing goes on: the epoch survives and nothing
  is lost. Without persistence the history is gone: the pushes carry a
  new epoch, offsets begin again and a recovery from the old position
  says recovered:false. Never a silent gap.
- flushed: Redis loses its data (FLUSHALL) under a channel's clients; a
  recovery from the old position says recovered:false with the
  channel's new epoch and offset 0 at once, and that epoch is the one
  the next message carries and a later recovery goes on from.
- big-reads: 20 clients read at once the history of a channel holding
  200 x 64 KB: Redis's memory stays bounded (each read is cut at the
  per-read byte bound, the reply says "more" and where to go on), the
  node stays healthy throughout, and paging with data.offset reads every
  message once, in order.
- big-fill: 40 x 64 KB appear in a channel's stream without reaching
  node A's link (written into Redis as the publish script would, minus
  the PUBLISH); the next message shows A the gap, which it reads back
  page by page: its subscriber sees every offset once, in order.
- read-budget (--redis-max-reading 1M): reads past the node's budget of
  bytes in flight are answered 503 "redis busy", each command once, on a
  connection that stays open.
- errors, on redis: a raw PUBLISH on a history channel from outside is
  delivered without an offset.
"""

import asyncio
import json
import signal
import threading

import rc
import redisd
from rc import expect, expect_eq

# A Redis history is read back after a freeze or a node's death: it keeps
# far more than the embedded one needs.
NS_REDIS = ("--namespace", "chat:history=100000,ttl=10m")
NS = (NS_REDIS if rc.BROKER != "embedded" else
      ("--namespace", "chat:history=1000,ttl=10m")) + \
     ("--namespace", "tiny:history=10,ttl=10m",
      "--namespace", "short:history=10,ttl=1s")


async def ws_open(eng):
    return await rc.ws_connect(eng.url("/ws"), ping_interval=None)


async def command(ws, seq, cmd, **data):
    await ws.send(json.dumps({"seq": seq, "cmd": cmd, "data": data}))
    return await rc.ws_reply(ws, seq)


async def push(ws):
    m = json.loads(await rc.ws_recv(ws))
    expect(m.get("cmd") == "push", "not a push: %r", m)
    return m


def publish(eng, chan, value):
    status, doc = rc.api(eng, "POST", "/publish/" + chan, json.dumps(value))
    expect_eq(status, 200, "POST /publish/%s (%r)" % (chan, doc))


async def check_offsets(eng):
    ws = await ws_open(eng)
    m = await command(ws, 1, "subscribe", channels=["chat:o", "plain"])
    expect_eq(m["code"], 200, "subscribe")
    for i in range(3):
        publish(eng, "chat:o", {"i": i})
    publish(eng, "plain", "p")
    got = [await push(ws) for _ in range(4)]
    epochs = {g.get("epoch") for g in got[:3]}
    expect(len(epochs) == 1 and isinstance(got[0]["epoch"], str),
           "one epoch for the channel: %r", got)
    expect_eq([g.get("offset") for g in got[:3]], [1, 2, 3], "offsets")
    expect_eq(got[3], {"cmd": "push", "channel": "plain", "data": "p"},
              "a channel without history is pushed as before")
    await ws.close()


async def subscribed(eng, chan):
    ws = await ws_open(eng)
    expect_eq((await command(ws, 1, "subscribe", channels=[chan]))["code"],
              200, "subscribe")
    return ws


async def position(a, chan, b=None):
    """Subscribes on @a, publishes "first" on @b (or @a): the (offset,
    epoch) the subscriber saw."""
    ws = await subscribed(a, chan)
    publish(b or a, chan, "first")
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


async def missed(a, b, chan, count):
    """A subscriber of @chan on node @a leaves, {"n": 0} to {"n": @count
    - 1} are published on node @b, and it comes back on @b with its last
    position: returns (ws, offset, epoch, the subscribe's reply)."""
    offset, epoch = await position(a, chan, b)
    for n in range(count):
        publish(b, chan, {"n": n})
    ws = await ws_open(b)
    r = await command(ws, 2, "subscribe", channel=chan, offset=offset,
                      epoch=epoch)
    return ws, offset, epoch, r


async def check_recover(a, b):
    ws, offset, epoch, r = await missed(a, b, "chat:r", 500)
    expect_eq((r["code"], r["data"]), (200, {"recovered": True,
                                            "epoch": epoch,
                                            "offset": offset + 500}),
              "recovery on the other node")
    seen = []
    await read_to(ws, offset + 500, seen)
    expect_eq([(o, d) for _, o, d in seen],
              [(offset + 1 + n, {"n": n}) for n in range(500)],
              "the 500 missed, in order")
    # the seam: live messages follow at once
    for n in range(500, 510):
        publish(a, "chat:r", {"n": n})
    await read_to(ws, offset + 510, seen)
    unbroken(seen, "recovered then live")
    expect_eq([d for _, _, d in seen[500:]],
              [{"n": n} for n in range(500, 510)], "live after the seam")
    await ws.close()


async def check_recover_racing(a, b):
    """Publishing goes on (on node A) while the client recovers on B."""
    offset, epoch = await position(a, "chat:race", b)
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
        await asyncio.sleep(0)
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


async def then_live(ws, r, want, publisher, chan, what):
    """Subscribe reply @r is 200 with data @want, "recovered":false at
    the current offset; a message published on @publisher after it comes
    to @ws with the next offset."""
    expect_eq((r["code"], r["data"]), (200, want), what)
    publish(publisher, chan, "live")
    m = await push(ws)
    expect_eq((m["offset"], m["data"]), (want["offset"] + 1, "live"),
              "live after a failed recovery (%s)" % what)


async def check_gap(eng):
    ws, offset, epoch, r = await missed(eng, eng, "tiny:g", 20)
    await then_live(ws, r, {"recovered": False, "epoch": epoch,
                            "offset": offset + 20}, eng, "tiny:g",
                    "recovery past what is kept")
    await ws.close()


async def check_errors(a, b):
    offset, epoch = await position(a, "chat:e", b)
    ws = await ws_open(b)
    for seq, data, code, msg in (
            (1, dict(channel="chat:e", offset=offset + 5, epoch=epoch), 400,
             "offset from the future"),
            (2, dict(channel="chat:e", offset=-1, epoch=epoch), 400,
             "malformed command"),
            (3, dict(channel="chat:e", offset="3", epoch=epoch), 400,
             "malformed command"),
            (4, dict(channel="chat:e", offset=1.5, epoch=epoch), 400,
             "malformed command"),
            (5, dict(channel="chat:e", offset=1), 400,
             "recovery needs offset and epoch"),
            (6, dict(channel="plain", offset=1, epoch=epoch), 400,
             "channel has no history"),
            (7, dict(channels=["chat:e", "chat:f"], offset=1, epoch=epoch),
             400, "one channel, as data.channel"),
            (8, dict(channel="chat:e", offset=1, epoch="x" * 40), 400,
             "bad epoch")):
        if msg == "malformed command":	# such a reply has no seq
            await ws.send(json.dumps({"seq": seq, "cmd": "subscribe",
                                      "data": data}))
            r = json.loads(await rc.ws_recv(ws))
        else:
            r = await command(ws, seq, "subscribe", **data)
        expect_eq((r["code"], r["msg"]), (code, msg), "subscribe %r" % data)
    # nothing was subscribed by any of them
    publish(a, "chat:e", "after")
    await rc.ws_quiet(ws, 20, "after refused recoveries")
    r = await command(ws, 21, "subscribe", channel="chat:e", offset=offset,
                      epoch="0" * 16)
    await then_live(ws, r, {"recovered": False, "epoch": epoch,
                            "offset": offset + 1}, a, "chat:e",
                    "a wrong epoch: not recovered, the current position")
    r = await command(ws, 22, "history", channel="chat:e", limit=2)
    expect_eq([(h["offset"], h["data"]) for h in r["data"]["messages"]],
              [(offset + 1, "after"), (offset + 2, "live")],
              "history read from the other node")
    r = await command(ws, 23, "history", channel="plain")
    expect_eq((r["code"], r["msg"]), (400, "channel has no history"),
              "history of a channel without history")
    if rc.only_on("redis"):
        # A raw PUBLISH from outside: delivered, kept nowhere, no offset.
        rc.broker().command("PUBLISH", "ringcast:ch:chat:e", '"raw"')
        m = await push(ws)
        expect_eq(m, {"cmd": "push", "channel": "chat:e", "data": "raw"},
                  "a raw PUBLISH on a history channel")
    await ws.close()


async def check_history(eng):
    ws = await ws_open(eng)
    r = await command(ws, 1, "history", channel="chat:never")
    expect_eq((r["code"], r["data"]), (200, {"epoch": None, "offset": 0,
                                            "messages": []}),
              "history of a channel never published")
    for n in range(30):
        publish(eng, "chat:h", {"n": n})
    r = await command(ws, 2, "history", channel="chat:h", limit=5)
    msgs = r["data"]["messages"]
    expect_eq([m["data"] for m in msgs], [{"n": n} for n in range(25, 30)],
              "the last 5")
    expect_eq([m["offset"] for m in msgs], list(range(26, 31)),
              "their offsets")
    expect_eq(r["data"]["offset"], 30, "the newest offset")
    r = await command(ws, 3, "history", channel="tiny:h2")
    expect_eq(r["data"]["messages"], [], "empty history")
    for n in range(15):
        publish(eng, "tiny:h2", n)
    r = await command(ws, 4, "history", channel="tiny:h2", limit=100)
    expect_eq([m["data"] for m in r["data"]["messages"]], list(range(5, 15)),
              "a history of 10 holds the last 10")
    # no seq (and no epoch): the reply has none either
    await ws.send(json.dumps({"cmd": "history",
                              "data": {"channel": "tiny:h2", "limit": 1}}))
    r = json.loads(await rc.ws_recv(ws))
    expect_eq((r.get("seq", "none"), r["code"], len(r["data"]["messages"])),
              ("none", 200, 1), "history without seq")
    await ws.close()


async def check_expiry(eng):
    offset, epoch = await position(eng, "short:x")
    ws = await ws_open(eng)
    # Expiry has no event: ask until the history is gone (10 s at most).
    for seq in range(100, 300):
        r = await command(ws, seq, "history", channel="short:x")
        if r["data"]["epoch"] is None:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("short:x still has history after its ttl")
    publish(eng, "short:x", "again")
    r = await command(ws, 2, "history", channel="short:x")
    expect(r["data"]["epoch"] not in (None, epoch),
           "a history begun again has a new epoch: %r", r["data"])
    expect_eq(r["data"]["offset"], 1, "offsets begin again")
    r = await command(ws, 3, "subscribe", channel="short:x", offset=offset,
                      epoch=epoch)
    expect_eq(r["data"]["recovered"], False, "recovery after the ttl")
    await ws.close()


async def check_budget(exe):
    with rc.Engine(exe, "--shards", "1", "--namespace",
                   "big:history=1000,ttl=10m", "--history-memory",
                   "64K") as eng:
        body = "x" * 4000
        for n in range(60):
            publish(eng, "big:%d" % (n % 3), body)
        h = rc.stats(eng)["history"]
        expect(h["evicted"] > 0, "nothing evicted: %r", h)
        expect(h["bytes"] <= (64 << 10) + 8192, "history bytes over the "
               "budget: %r", h)
        expect(h["messages"] >= 3, "the newest of each kept: %r", h)


async def check_restart_embedded(exe):
    with rc.Engine(exe, "--shards", "2", *NS) as eng:
        offset, epoch = await position(eng, "chat:z")
    with rc.Engine(exe, "--shards", "2", *NS) as eng:
        publish(eng, "chat:z", "new life")
        ws = await ws_open(eng)
        r = await command(ws, 1, "subscribe", channel="chat:z",
                          offset=offset, epoch=epoch)
        expect_eq((r["data"]["recovered"], r["data"]["offset"]), (False, 1),
                  "recovery across a restart")
        expect(r["data"]["epoch"] != epoch, "same epoch after a restart")
        await ws.close()


BIG = ("--shards", "2", "--namespace", "big:history=1000,ttl=10m",
       "--history-memory", "256M")
PAGE = 256 << 10


def fill(eng, chan, n, size):
    rc.publish_many(eng, chan, (json.dumps({"i": i, "pad": "x" * size})
                                for i in range(n)))


async def check_pages(exe):
    """A history larger than a page comes in pages, each within 256 KiB
    of messages, which together are the history once, in order."""
    with rc.Engine(exe, *BIG) as eng:
        fill(eng, "big:p", 1000, 32 << 10)
        ws = await ws_open(eng)
        r = await command(ws, 1, "history", channel="big:p", limit=1000)
        top, epoch = r["data"]["offset"], r["data"]["epoch"]
        seen, seq = [], 1
        while True:
            d = r["data"]
            got = [m["offset"] for m in d["messages"]]
            size = sum(len(json.dumps(m)) for m in d["messages"])
            expect(size <= PAGE, "a page of %d bytes", size)
            expect(got, "an empty page (reply %s)", rc.short(d))
            seen += got
            if not d.get("more"):
                break
            expect_eq(d["next"], got[-1], "next: the last offset given")
            expect(seq < 200, "more than 200 pages")
            seq += 1
            r = await command(ws, seq, "history", channel="big:p",
                              offset=d["next"], epoch=epoch, limit=1000)
            expect_eq(r["code"], 200, "page %d" % seq)
        expect(seq > 100, "only %d pages for 32 MB" % seq)
        expect_eq(seen, list(range(top - 999, top + 1)),
                  "the pages hold every offset once")
        # another epoch: nothing of this one is read as its
        r = await command(ws, 500, "history", channel="big:p", offset=0,
                          epoch="0" * 16)
        expect_eq((r["data"]["epoch"], r["data"]["messages"]),
                  (epoch, []), "history from an offset of another epoch")
        await ws.close()


async def backlog(subscriber, publisher, chan, offset, epoch):
    """A recovery missing 600 x 8 KB, more than --max-pending-bytes: not
    a 1008 before its reply, but "recovered":false with the reason, live
    messages from there, and the missed ones read back in history pages.
    Returns the (top, epoch) of the reply."""
    pad = "x" * (8 << 10)
    rc.publish_many(publisher, chan, (json.dumps({"n": n, "pad": pad})
                                      for n in range(600)))
    ws = await ws_open(subscriber)
    r = await command(ws, 2, "subscribe", channel=chan, offset=offset,
                      epoch=epoch)
    await then_live(ws, r, {"recovered": False, "reason": "backlog",
                            "epoch": epoch, "offset": offset + 600},
                    publisher, chan,
                    "a recovery of more than a connection may hold")
    seen, after = [], offset
    for seq in range(10, 200):
        r = await command(ws, seq, "history", channel=chan, offset=after,
                          epoch=epoch, limit=1000)
        seen += [m["offset"] for m in r["data"]["messages"]]
        if not r["data"].get("more"):
            break
        after = r["data"]["next"]
    expect_eq(seen, list(range(offset + 1, offset + 602)),
              "the missed ones, read back in pages")
    await ws.close()


async def check_backlog(a, b):
    """A recovery on node B missing 600 x 8 KB published on node A."""
    offset, epoch = await position(a, "chat:bk", b)
    await backlog(b, a, "chat:bk", offset, epoch)


def inflight(eng):
    """Two reads of one channel in one write: the second, while the first
    is in flight, gets 429 (for channels another shard owns; the own
    shard answers at once). Each command is answered once."""
    busy = 0
    for i in range(16):
        chan = "big:f%d" % i
        with rc.RawWs(eng.host, eng.port, "/ws") as ws:
            ws.send_raw(b"".join(rc.build_frame(rc.OP_TEXT, rc.push_cmd(
                "history", seq, channel=chan, limit=5)) for seq in (1, 2)))
            got = {}
            for _ in range(2):
                m = json.loads(ws.recv_message().payload)
                expect(m["seq"] not in got, "seq %r answered twice",
                       m["seq"])
                got[m["seq"]] = m
            expect_eq(got[1]["code"], 200, "the first read")
            if got[2]["code"] == 429:
                expect_eq(got[2]["msg"], "history read in flight",
                          "the second read")
                busy += 1
            else:
                expect_eq(got[2]["code"], 200, "the second read")
    expect(busy > 0, "no read of 16 channels was refused in flight")
    # 64 channels in one write: about half are another shard's, read in
    # flight together, past the 16 a connection may have
    with rc.RawWs(eng.host, eng.port, "/ws") as ws:
        ws.send_raw(b"".join(rc.build_frame(rc.OP_TEXT, rc.push_cmd(
            "history", i, channel="big:m%d" % i, limit=5))
            for i in range(64)))
        got = {}
        for _ in range(64):
            m = json.loads(ws.recv_message().payload)
            expect(m["seq"] not in got, "seq %r answered twice", m["seq"])
            got[m["seq"]] = m
        codes = sorted((m["code"], m["msg"]) for m in got.values())
        expect((429, "too many history reads in flight") in codes,
               "64 reads at once, none refused: %r" % codes)
        expect(set(codes) <= {(200, "ok"),
                              (429, "too many history reads in flight")},
               "replies %r" % set(codes))


async def check_amplify(exe):
    """40 connections each ask for a history of 1000 x 32 KB and never
    read: the engine holds a page for each, not the history; a
    bystander's heartbeat is still answered."""
    with rc.Engine(exe, *BIG) as eng:
        fill(eng, "big:a", 1000, 32 << 10)
        before = rc.vm_rss_kb(eng.proc.pid)
        out = rc.stats(eng)["total"]["frames_out"]
        idle = []
        try:
            for i in range(40):
                ws = rc.RawWs(eng.host, eng.port, "/ws")
                idle.append(ws)
                ws.send_raw(rc.build_frame(rc.OP_TEXT, rc.push_cmd(
                    "history", i, channel="big:a", limit=1000)))
            rc.wait_stats(eng, lambda st: st["total"]["frames_out"] >= out + 40,
                          "the 40 replies queued")
            grew = rc.vm_rss_kb(eng.proc.pid) - before
            if rc.uses_mimalloc(exe):
                # a page each (256 KiB and a message) is 11 MiB: before,
                # each reply held the whole 32 MB history
                expect(grew < 128 << 10, "RSS grew by %d KiB", grew)
            by = await ws_open(eng)
            m = await command(by, 1, "heartbeat")
            expect_eq(m["code"], 200, "the bystander's heartbeat")
            await by.close()
        finally:
            for ws in idle:
                ws.close()
        inflight(eng)


async def check_history_offset(eng):
    for n in range(10):
        publish(eng, "chat:ho", n)
    ws = await ws_open(eng)
    r = await command(ws, 1, "history", channel="chat:ho", limit=0)
    expect_eq((r["code"], r["data"]["offset"], r["data"]["messages"]),
              (200, 10, []), "limit 0")
    base = r["data"]["offset"] - 10
    r = await command(ws, 2, "history", channel="chat:ho", limit=3,
                      offset=base + 4)
    expect_eq([(m["offset"], m["data"]) for m in r["data"]["messages"]],
              [(base + 5, 4), (base + 6, 5), (base + 7, 6)],
              "the 3 after offset 4")
    expect("more" not in r["data"], "a whole reply has no more: %r",
           r["data"])
    r = await command(ws, 3, "history", channel="chat:ho", limit=100,
                      offset=base + 10)
    expect_eq(r["data"]["messages"], [], "none after the newest")
    await ws.close()


def node(exe, *extra):
    """A node on the axis's broker."""
    return rc.Engine(exe, "--shards", "2", *NS, *extra, broker=True)


def own_node(exe, redis, *extra):
    """A node on a redis-server of the check's own."""
    return rc.Engine(exe, "--shards", "2", "--redis", redis.url, *NS,
                     *extra)


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


async def flowing(a, b, chan, subscribers, published, limit=100000):
    """@subscribers Subscribers of @chan on node @a and a Publisher on
    node @b: returns (subs, pub) once each subscriber saw the first
    message and @published publishes were answered.  The caller stops
    the publisher."""
    subs = [Subscriber(chan) for _ in range(subscribers)]
    for s in subs:
        await s.start(a)
    pub = Publisher(b, chan, limit)
    pub.start()
    try:
        pub.wait_for(1)
        await asyncio.gather(*(s.read({"n": 0}) for s in subs))
        pub.wait_for(published)
    except BaseException:
        pub.stop()
        raise
    return subs, pub


async def resumed(a, b, pub):
    """Once both nodes are healthy again, 50 more publishes answered."""
    await rc.healthy(a, b)
    n = len(pub.status)
    await asyncio.to_thread(pub.wait_for, n + 50)


async def check_kill9(exe):
    a = node(exe).start()
    try:
        with node(exe) as b:
            await rc.healthy(a, b)
            subs, pub = await flowing(a, b, "chat:k", 10, 100, limit=600)
            try:
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


async def check_freeze(exe):
    redis = rc.broker()
    with node(exe, "--redis-timeout", "1s") as a, \
            node(exe, "--redis-timeout", "1s") as b:
        await rc.healthy(a, b)
        subs, pub = await flowing(a, b, "chat:f", 5, 50)
        try:
            redis.proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(10)	# the scenario: 10 s frozen
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            await resumed(a, b, pub)
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


async def check_restart_redis(exe):
    with redisd.Redis(aof=True) as redis:
        with own_node(exe, redis) as a, own_node(exe, redis) as b:
            await rc.healthy(a, b)
            subs, pub = await flowing(a, b, "chat:k", 5, 50)
            try:
                redis.restart()		# SIGKILL, then the AOF is read
                await resumed(a, b, pub)
            finally:
                pub.stop()
            await end_marker(b, subs)
            for i, s in enumerate(subs):
                check_seen(s, pub, "subscriber %d (AOF)" % i)
                await s.ws.close()

    with redisd.Redis() as redis:
        with own_node(exe, redis) as a, own_node(exe, redis) as b:
            await rc.healthy(a, b)
            offset, epoch = await position(a, "chat:gone", b)
            ws = await subscribed(a, "chat:gone")
            publish(b, "chat:gone", "before")
            m = await push(ws)
            expect_eq((m["offset"], m["epoch"]), (offset + 1, epoch),
                      "before the restart")
            redis.restart()		# no persistence: the history is gone
            await rc.healthy(a, b)
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


async def check_flushed(a, b):
    redis = rc.broker()
    offset, epoch = await position(a, "chat:flushed", b)
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


async def check_limit0(a, b):
    publish(a, "chat:zero", "one")
    ws = await ws_open(b)
    r = await command(ws, 1, "history", channel="chat:zero", limit=0)
    expect_eq((r["code"], r.get("data", {}).get("messages")), (200, []),
              "history with limit 0: %r" % r)
    expect_eq(r["data"]["offset"], 1, "the newest offset, limit 0")
    await ws.close()


K64 = 64 * 1024


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
        with own_node(exe, redis) as eng:
            await rc.healthy(eng)
            rc.publish_many(eng, "chat:big",
                            [json.dumps("x" * (K64 - 2))] * 200)
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


async def check_big_recovery(a, b):
    body = "x" * (K64 - 2)
    for n, want in ((24, True), (80, False)):
        chan = "chat:bigrec%d" % n
        offset, epoch = await position(a, chan, b)
        rc.publish_many(b, chan, [json.dumps(body)] * n)
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


async def check_big_fill(a, b):
    redis = rc.broker()
    ws = await subscribed(a, "chat:fill")
    publish(b, "chat:fill", "first")	# A's link follows from here
    m = await push(ws)
    offset, epoch = m["offset"], m["epoch"]
    body = json.dumps("x" * (K64 - 2))
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
        with own_node(exe, redis, "--redis-max-reading", "1M") as eng:
            await rc.healthy(eng)
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


def checks(run):
    with run.section("setup"), rc.nodes(run.exe, "--shards", "2",
                                        *NS) as (a, b):
        run.check("offsets", check_offsets, a)
        run.check("recover", check_recover, a, b, timeout=120)
        run.check("recover-racing", check_recover_racing, a, b,
                  timeout=120)
        run.check("errors", check_errors, a, b)
        run.check("backlog", check_backlog, a, b, timeout=120)
        run.check("history", check_history, a)
        run.check("history-offset", check_history_offset, a)
        run.check("limit0", check_limit0, a, b)
        run.check("big-recovery", check_big_recovery, a, b, timeout=120)
        run.check("gap", check_gap, a)
        run.check("expiry", check_expiry, a)
        if rc.only_on("redis"):
            run.check("flushed", check_flushed, a, b)
            run.check("big-fill", check_big_fill, a, b)
    if rc.only_on("embedded"):
        run.check("budget", check_budget, run.exe)
        run.check("pages", check_pages, run.exe, timeout=120)
        run.check("amplify", check_amplify, run.exe, timeout=120)
        run.check("restart", check_restart_embedded, run.exe)
    if rc.only_on("redis"):
        run.check("kill9", check_kill9, run.exe, timeout=120)
        run.check("freeze", check_freeze, run.exe, timeout=120)
        run.check("restart-redis", check_restart_redis, run.exe,
                  timeout=120)
        run.check("big-reads", check_big_reads, run.exe, timeout=240)
        run.check("read-budget", check_read_budget, run.exe, timeout=120)


if __name__ == "__main__":
    rc.main("history-" + rc.BROKER, checks)
