# SPDX-License-Identifier: MIT
"""Channel history and recovery on the embedded broker (--shards 2).

- offsets: pushes on a channel of a namespace with history carry "epoch"
  and "offset" (1, 2, 3, ...); other channels' pushes do not.
- recover: a subscriber leaves, 500 messages are published, it comes back
  with its last offset and epoch: "recovered":true, exactly those 500 in
  order, then live messages, no gap and no duplicate at the seam; again
  while a publisher keeps publishing during the recovery.
- gap: more messages than the history holds were missed: "recovered":false
  with the current offset, and live messages flow from there.
- errors: an offset from the future (400, and no subscription is left), a
  negative or non-number offset, a missing epoch, a channel without
  history, several channels at once; a wrong epoch is "recovered":false.
- history: the last N messages of a channel, bounded by limit; a channel
  never published has epoch null and offset 0.
- history-offset: with data.offset, the first N after that offset; limit
  0 gives the position only.
- expiry (ttl=1s): messages go after their ttl; the history starts again
  under a new epoch, and an old position is not "recovered".
- budget (--history-memory 64K): old messages are evicted and counted,
  the bytes stay near the budget.
- restart: a new engine has new epochs: an old position is not recovered.
- backlog: a recovery missing 600 x 8 KB, more than --max-pending-bytes:
  "recovered":false with "reason":"backlog" (not a 1008 before the
  reply), live messages from there, the missed ones read in pages.
- pages: a history of 1000 x 32 KB comes in pages of at most 256 KiB of
  messages, with "more" and "next", read on with "offset" and "epoch":
  together every offset once, in order; another epoch's offset reads
  nothing.
- amplify: 40 connections each ask that history and never read: RSS grows
  by a page each, not by the history (before: 1.2 GB); a bystander's
  heartbeat is answered; a second read of a channel while the first is in
  flight gets 429, and so does a 17th read in flight of one connection;
  every command one reply.
"""

import asyncio
import json
import threading

import rc
from rc import expect, expect_eq

NS = ("--namespace", "chat:history=1000,ttl=10m",
      "--namespace", "tiny:history=10,ttl=10m",
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


async def position(eng, chan):
    """A subscriber's last (offset, epoch) on @chan after one message."""
    ws = await ws_open(eng)
    expect_eq((await command(ws, 1, "subscribe", channels=[chan]))["code"],
              200, "subscribe")
    publish(eng, chan, "first")
    m = await push(ws)
    await ws.close()
    return m["offset"], m["epoch"]


async def recover_and_check(eng, chan, offset, epoch, want_first,
                            want_last):
    """Recovers from @offset and reads up to @want_last: every offset
    after @offset exactly once, in order."""
    ws = await ws_open(eng)
    r = await command(ws, 2, "subscribe", channel=chan, offset=offset,
                      epoch=epoch)
    expect_eq((r["code"], r["data"]["recovered"], r["data"]["epoch"]),
              (200, True, epoch), "recovery reply %r" % r)
    expect(r["data"]["offset"] >= want_first - 1, "reply offset %r", r)
    seen = []
    while not seen or seen[-1] < want_last:
        m = await push(ws)
        seen.append(m["offset"])
        expect_eq(m["data"], {"n": m["offset"] - offset - 1},
                  "payload of offset %d" % m["offset"])
    expect_eq(seen, list(range(offset + 1, want_last + 1)),
              "offsets after recovery")
    return ws


async def check_recover(eng):
    offset, epoch = await position(eng, "chat:r")
    for n in range(500):
        publish(eng, "chat:r", {"n": n})
    ws = await recover_and_check(eng, "chat:r", offset, epoch, offset + 1,
                                 offset + 500)
    # the seam: live messages follow at once
    for n in range(500, 510):
        publish(eng, "chat:r", {"n": n})
    for n in range(500, 510):
        m = await push(ws)
        expect_eq((m["offset"], m["data"]), (offset + 1 + n, {"n": n}),
                  "live message after the recovered ones")
    await ws.close()


async def check_recover_racing(eng):
    """Publishing goes on while the client recovers."""
    offset, epoch = await position(eng, "chat:race")
    for n in range(300):
        publish(eng, "chat:race", {"n": n})
    stop = threading.Event()
    sent = [300]

    def keep_publishing():
        while not stop.is_set() and sent[0] < 900:
            publish(eng, "chat:race", {"n": sent[0]})
            sent[0] += 1

    t = threading.Thread(target=keep_publishing)
    t.start()
    try:
        ws = await ws_open(eng)
        r = await command(ws, 2, "subscribe", channel="chat:race",
                          offset=offset, epoch=epoch)
        expect_eq(r["data"]["recovered"], True, "recovered while racing")
        await asyncio.sleep(0)
    finally:
        stop.set()
        await asyncio.to_thread(t.join)
    last = offset + sent[0]
    seen = []
    while not seen or seen[-1] < last:
        m = await push(ws)
        expect_eq(m["data"], {"n": m["offset"] - offset - 1},
                  "payload of offset %d" % m["offset"])
        seen.append(m["offset"])
    expect_eq(seen, list(range(offset + 1, last + 1)),
              "no gap and no duplicate across the recovery")
    await rc.ws_quiet(ws, 9, "after the last message")
    await ws.close()


async def check_gap(eng):
    offset, epoch = await position(eng, "tiny:g")
    for n in range(20):
        publish(eng, "tiny:g", {"n": n})
    ws = await ws_open(eng)
    r = await command(ws, 2, "subscribe", channel="tiny:g", offset=offset,
                      epoch=epoch)
    expect_eq((r["code"], r["data"]), (200, {"recovered": False,
                                             "epoch": epoch,
                                             "offset": offset + 20}),
              "recovery past what is kept")
    publish(eng, "tiny:g", "live")
    m = await push(ws)
    expect_eq((m["offset"], m["data"]), (offset + 21, "live"),
              "live after a failed recovery")
    await ws.close()


async def check_errors(eng):
    offset, epoch = await position(eng, "chat:e")
    ws = await ws_open(eng)
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
    publish(eng, "chat:e", "after")
    await rc.ws_quiet(ws, 20, "after refused recoveries")
    r = await command(ws, 21, "subscribe", channel="chat:e", offset=offset,
                      epoch="0" * 16)
    expect_eq((r["code"], r["data"]["recovered"], r["data"]["epoch"]),
              (200, False, epoch), "a wrong epoch: not recovered")
    r = await command(ws, 22, "history", channel="plain")
    expect_eq((r["code"], r["msg"]), (400, "channel has no history"),
              "history of a channel without history")
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


async def check_restart(exe):
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
    conn = rc.http_conn(eng)
    try:
        for i in range(n):
            status, _ = rc.post(conn, "/publish/" + chan,
                                json.dumps({"i": i, "pad": "x" * size}))
            expect_eq(status, 200, "publish %d to %s" % (i, chan))
    finally:
        conn.close()


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
    conn = rc.http_conn(publisher)
    try:
        for n in range(600):
            status, _ = rc.post(conn, "/publish/" + chan,
                                json.dumps({"n": n, "pad": pad}))
            expect_eq(status, 200, "publish %d" % n)
    finally:
        conn.close()
    ws = await ws_open(subscriber)
    r = await command(ws, 2, "subscribe", channel=chan, offset=offset,
                      epoch=epoch)
    expect_eq((r["code"], r["data"]), (200, {"recovered": False,
                                             "reason": "backlog",
                                             "epoch": epoch,
                                             "offset": offset + 600}),
              "a recovery of more than a connection may hold")
    publish(publisher, chan, "live")
    m = await push(ws)
    expect_eq((m["offset"], m["data"]), (offset + 601, "live"),
              "live after a recovery refused for its size")
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


async def check_backlog(eng):
    offset, epoch = await position(eng, "chat:bk")
    await backlog(eng, eng, "chat:bk", offset, epoch)


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


def main():
    run = rc.Run("history")
    try:
        with rc.Engine(run.exe, "--shards", "2", *NS) as eng:
            run.check("offsets", check_offsets, eng)
            run.check("recover", check_recover, eng, timeout=120)
            run.check("recover-racing", check_recover_racing, eng,
                      timeout=120)
            run.check("gap", check_gap, eng)
            run.check("errors", check_errors, eng)
            run.check("backlog", check_backlog, eng, timeout=120)
            run.check("history", check_history, eng)
            run.check("history-offset", check_history_offset, eng)
            run.check("expiry", check_expiry, eng)
    except AssertionError as e:
        run.fail("setup", e)
    run.check("budget", check_budget, run.exe)
    run.check("pages", check_pages, run.exe, timeout=120)
    run.check("amplify", check_amplify, run.exe, timeout=120)
    run.check("restart", check_restart, run.exe)
    run.finish()


if __name__ == "__main__":
    main()
