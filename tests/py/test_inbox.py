# SPDX-License-Identifier: MIT
"""A user's offline inbox (--shards 2, JWT users), on the broker of the
broker axis: embedded (one engine), or redis (two engines, A and B, on one
real redis-server, where the inboxes live), or cluster (the same two on a
Redis Cluster of three masters). On each: offline, ack, devices (on A and
B), errors, backlog; with Redis or a cluster, redis-nodes. Embedded only:
evict, ttl, restart, memory. Redis only: the other redis-* checks.

- offline: pushes with ?persist=1 to a user with no connection are kept;
  the user's next connection gets them after the 101, oldest first, each
  with its id; GET /users/{uid}/inbox lists them.
- ack: an acked message is not sent again; one not acked is sent again
  on the next connection, once per connection: a message a connection
  got live is not sent to it twice.
- devices: two connections of one user both get a kept push live; an ack
  from one removes it for every later connection.
- evict (--inbox-max 5): the oldest go, counted in "evicted" (the client
  sees the gap in the ids too); the newest 5 stay.
- ttl (--inbox-ttl 3s): kept messages expire and are counted (the
  emptied inbox stays a second ttl, so the count is read in that window).
- errors: an id of another user, an id not yet given, a malformed id,
  an N past 2**64 - 1 (400 "unknown id", nothing acked, never wrapped
  round to an id that exists); no ids (400); more than 100 (413);
  an anonymous connection (403); persist=maybe (400).
- restart: an inbox on the embedded broker does not survive a restart.
- memory (--inbox-memory 2M): 40 users, one after the other, each kept 8
  pushes of 32 KB, 10 MB in all (20 MB as frames): the engine holds at
  most 2 MiB of them (/stats "inbox" "bytes", its own accounting: the
  frame arena hides so little from RSS), the least recently pushed to
  lost theirs, counted in
  "memory_evicted" and in each one's "evicted", which the first user
  still reads; the last user has all 8, reads and acks them. With
  --inbox-memory 64K and one push to each of 1500 users, the emptied
  inboxes themselves are over the bound: the oldest go (the first
  user's reads as new), the bytes stay bounded, the last user has his.

With Redis (two engines, A and B, on one real redis-server, where the
inboxes live):
- redis-nodes: kept on A while offline, read on B, acked on B, nothing
  again on A; two devices of one user on A and B both get a kept push
  live and an ack on one ends it for the other; while the unread are
  read for a new connection, kept pushes keep coming: each reaches it
  once.
- backlog: 600 kept pushes of 8 KB, more than
  --max-pending-bytes lets a connection hold: every upgrade gets its 101,
  then all 600, oldest first, as it reads, and stays open.
- redis-epoch: an inbox whose epoch someone else wrote into Redis
  (quotes, a backslash, a control character): no JSON the engine writes
  carries it; the kept push it would stamp is refused (counted in
  redis.rejected) and GET /users/{uid}/inbox is 503, while a user with a
  sound inbox is served.
- redis-replay-live: 500 x 32 KB unread, read page by page, and 100
  more kept while the client has not read them: all 600 arrive once, in
  the order kept.
- redis-limits (--inbox-max 5, --inbox-ttl 2s): eviction and expiry are
  counted; an unknown id (an N past 2**64 - 1 too) is 400 and acks
  nothing; the inbox of an engine
  restarted is still there (it is Redis's).
- redis-replay-bound: a user with 1000 x 8 KB unread opens 60
  connections at once and reads them together: each gets all 1000, in
  order, read from Redis a page at a time as it drains, and stays open;
  Redis's memory stays bounded and the node healthy throughout; they
  stay unread until acked.
"""

import asyncio
import json
import threading

import rc
import redisd
from rc import expect, expect_eq
from test_history import bounded
from test_users import KEY, SECRET, user_ws

ARGS = ("--shards", "2", "--auth", "optional", "--jwt-secret", SECRET,
        "--api-key", KEY)


def keep(eng, uid, value):
    status, doc = rc.api(eng, "POST", "/users/%s/push?persist=1" % uid,
                         json.dumps(value), key=KEY)
    expect(status == 200 and doc.get("ok") is True,
           "kept push to %s: %r", uid, (status, doc))


def inbox(eng, uid):
    status, doc = rc.api(eng, "GET", "/users/%s/inbox" % uid, key=KEY)
    expect_eq(status, 200, "GET /users/%s/inbox (%r)" % (uid, doc))
    return doc


async def command(ws, seq, cmd, **data):
    await ws.send(json.dumps({"seq": seq, "cmd": cmd, "data": data}))
    return await rc.ws_reply(ws, seq)


async def pushes(ws, n):
    got = []
    for _ in range(n):
        m = json.loads(await rc.ws_recv(ws))
        expect_eq(m.get("cmd"), "push", "a push")
        got.append(m)
    return got


async def check_offline(eng):
    expect_eq(inbox(eng, "olga"), {"unread": 0, "evicted": 0, "ids": []},
              "an inbox never pushed to")
    for i in range(3):
        keep(eng, "olga", {"i": i})
    listed = inbox(eng, "olga")
    expect_eq((listed["unread"], len(listed["ids"])), (3, 3), "listed")
    ws = await user_ws(eng, "olga")
    got = await pushes(ws, 3)
    expect_eq([(m["user"], m["data"]) for m in got],
              [("olga", {"i": i}) for i in range(3)], "kept, in order")
    expect_eq([m["id"] for m in got], listed["ids"], "ids as listed")
    await rc.ws_quiet(ws, 1, "after the unread")
    await ws.close()


async def check_ack(eng):
    keep(eng, "ada", "a")
    keep(eng, "ada", "b")
    ws = await user_ws(eng, "ada")
    a, b = await pushes(ws, 2)
    keep(eng, "ada", "c")
    (c,) = await pushes(ws, 1)
    r = await command(ws, 1, "ack", ids=[a["id"], c["id"]])
    expect_eq((r["code"], r["data"]), (200, {"acked": 2, "unread": 1}),
              "ack of two")
    r = await command(ws, 2, "ack", ids=[a["id"]])
    expect_eq((r["code"], r["data"]), (200, {"acked": 0, "unread": 1}),
              "an ack again changes nothing")
    r = await command(ws, 3, "inbox")
    expect_eq(r["data"], {"unread": 1, "evicted": 0, "ids": [b["id"]]},
              "the inbox command")
    await ws.close()
    ws = await user_ws(eng, "ada")
    (again,) = await pushes(ws, 1)
    expect_eq((again["id"], again["data"]), (b["id"], "b"),
              "the unacked one, again, on the next connection")
    keep(eng, "ada", "d")
    (d,) = await pushes(ws, 1)
    expect_eq(d["data"], "d", "live after the unread")
    await rc.ws_quiet(ws, 4, "each message once per connection")
    r = await command(ws, 5, "ack", ids=[b["id"], d["id"]])
    expect_eq(r["data"], {"acked": 2, "unread": 0}, "all acked")
    await ws.close()
    ws = await user_ws(eng, "ada")
    await rc.ws_quiet(ws, 6, "nothing unread")
    await ws.close()


async def check_devices(a, b=None, uid="dev"):
    """A phone on @a and a laptop on @b (or @a too): both get a kept
    message, with one id; acked on the phone, it is not unread on the
    laptop's next connection."""
    b = b or a
    phone = await user_ws(a, uid)
    laptop = await user_ws(b, uid)
    keep(b, uid, "both")
    (p,) = await pushes(phone, 1)
    (l,) = await pushes(laptop, 1)
    expect_eq(p, l, "both devices get it, with one id")
    r = await command(phone, 1, "ack", ids=[p["id"]])
    expect_eq(r["data"], {"acked": 1, "unread": 0}, "acked on the phone")
    await laptop.close()
    laptop = await user_ws(b, uid)
    await rc.ws_quiet(laptop, 2, "acked on the other device")
    await laptop.close()
    await phone.close()


async def check_evict(exe):
    with rc.Engine(exe, *ARGS, "--inbox-max", "5") as eng:
        for i in range(8):
            keep(eng, "eve", i)
        listed = inbox(eng, "eve")
        expect_eq((listed["unread"], listed["evicted"]), (5, 3),
                  "the oldest 3 evicted")
        ws = await user_ws(eng, "eve")
        got = await pushes(ws, 5)
        expect_eq([m["data"] for m in got], [3, 4, 5, 6, 7], "the newest")
        expect_eq([int(m["id"].split("-")[1]) for m in got],
                  [4, 5, 6, 7, 8], "the ids show the gap")
        r = await command(ws, 1, "inbox")
        expect_eq(r["data"]["evicted"], 3, "evicted, as the client sees")
        expect_eq(rc.stats(eng)["inbox"]["evicted"], 3, "/stats")
        await ws.close()


async def check_ttl(exe):
    # 3 s, not 1: the emptied inbox (and its count) stays a second ttl,
    # a window a loaded machine's polls missed when it was 1 s
    with rc.Engine(exe, *ARGS, "--inbox-ttl", "3s") as eng:
        keep(eng, "tim", "soon gone")
        expect_eq(inbox(eng, "tim")["unread"], 1, "kept")
        # Expiry has no event: ask until it happened (15 s at most).
        doc = await rc.await_state("the kept push expired",
                                   lambda: inbox(eng, "tim"),
                                   lambda d: d["unread"] == 0, timeout=15)
        expect_eq(doc["evicted"], 1, "counted as evicted for the user")
        expect_eq(rc.stats(eng)["inbox"]["expired"], 1, "/stats expired")
        ws = await user_ws(eng, "tim")
        await rc.ws_quiet(ws, 1, "nothing after the ttl")
        await ws.close()


async def check_errors(eng):
    keep(eng, "bob", "bob's")
    keep(eng, "ann", "ann's")
    bob = await user_ws(eng, "bob")
    (theirs,) = await pushes(bob, 1)
    ann = await user_ws(eng, "ann")
    (mine,) = await pushes(ann, 1)
    epoch, n = mine["id"].split("-")
    for seq, ids, code, msg in (
            (1, [theirs["id"]], 400, "unknown id"),
            (2, ["%s-%d" % (epoch, int(n) + 5)], 400, "unknown id"),
            (3, [mine["id"], theirs["id"]], 400, "unknown id"),
            (4, ["nonsense"], 400, "unknown id"),
            (5, ["%s-0" % epoch], 400, "unknown id"),
            # past 2**64 - 1: refused, not wrapped to mine (before: acked)
            (8, ["%s-%d" % (epoch, 2**64 + int(n))], 400, "unknown id"),
            (9, ["%s-%d" % (epoch, 10 * 2**64 + int(n))], 400,
             "unknown id"),
            (6, [], 400, "ids needed"),
            (7, ["%s-%d" % (epoch, i + 1) for i in range(101)], 413,
             "too many ids")):
        r = await command(ann, seq, "ack", ids=ids)
        expect_eq((r["code"], r["msg"]), (code, msg), "ack %r" % ids[:3])
    expect_eq(inbox(eng, "ann")["unread"], 1, "nothing was acked")
    expect_eq(inbox(eng, "bob")["unread"], 1, "nor bob's")
    anon = await user_ws(eng)
    r = await command(anon, 1, "ack", ids=[mine["id"]])
    expect_eq((r["code"], r["msg"]), (403, "no user: connect with a token"),
              "an anonymous ack")
    status, doc = rc.api(eng, "POST", "/users/ann/push?persist=maybe",
                         b'"x"', key=KEY)
    expect_eq((status, doc), (400, {"error": "persist is 1 or 0"}),
              "persist=maybe")
    status, _ = rc.api(eng, "GET", "/users/ann/inbox")
    expect_eq(status, 401, "the inbox needs the API key")
    for ws in (bob, ann, anon):
        await ws.close()


async def check_memory(exe):
    pad = "m" * (32 << 10)
    with rc.Engine(exe, *ARGS, "--inbox-memory", "2M") as eng:
        for u in range(40):
            for i in range(8):
                keep(eng, "mem%d" % u, {"i": i, "pad": pad})
        st = rc.stats(eng)["inbox"]
        expect(0 < st["bytes"] <= 2 << 20, "bytes held %r", st)
        expect_eq(st["messages"] + st["memory_evicted"], 320,
                  "every push kept or counted %r" % st)
        expect(st["memory_evicted"] >= 200, "evicted by memory %r", st)
        first = inbox(eng, "mem0")
        expect_eq(first["unread"] + first["evicted"], 8,
                  "the first user sees what went %r" % first)
        expect(first["evicted"] > 0, "the first user lost some %r", first)
        last = inbox(eng, "mem39")
        expect_eq((last["unread"], last["evicted"]), (8, 0),
                  "the last one pushed to has all")
        ws = await user_ws(eng, "mem39")
        got = await pushes(ws, 8)
        expect_eq([m["data"]["i"] for m in got], list(range(8)),
                  "mem39's pushes, oldest first")
        r = await command(ws, 1, "ack", ids=[m["id"] for m in got])
        expect_eq((r["code"], r["data"]), (200, {"acked": 8, "unread": 0}),
                  "mem39 acks them all")
        await ws.close()
    with rc.Engine(exe, *ARGS, "--inbox-memory", "64K") as eng:
        for u in range(1500):
            keep(eng, "few%d" % u, u)
        st = rc.stats(eng)["inbox"]
        expect(0 < st["bytes"] <= 64 << 10, "bytes held %r", st)
        expect_eq(inbox(eng, "few0"), {"unread": 0, "evicted": 0, "ids": []},
                  "the first user's inbox went, emptied")
        expect_eq(inbox(eng, "few1499")["unread"], 1, "the last one's push")


async def check_restart(exe):
    with rc.Engine(exe, *ARGS) as eng:
        keep(eng, "rex", "before")
    with rc.Engine(exe, *ARGS) as eng:
        expect_eq(inbox(eng, "rex")["unread"], 0, "lost with the process")


async def check_redis_nodes(a, b):
    await rc.healthy(a, b)
    keep(a, "rio", "one")
    keep(a, "rio", "two")
    expect_eq(inbox(b, "rio")["unread"], 2, "listed on the other node")
    ws = await user_ws(b, "rio")
    got = await pushes(ws, 2)
    expect_eq([m["data"] for m in got], ["one", "two"], "read on B")
    r = await command(ws, 1, "ack", ids=[m["id"] for m in got])
    expect_eq(r["data"], {"acked": 2, "unread": 0}, "acked on B")
    await ws.close()
    ws = await user_ws(a, "rio")
    await rc.ws_quiet(ws, 2, "acked on the other node")
    await ws.close()

    await check_devices(a, b, "sam")

    # A new connection's unread are read while kept pushes keep coming:
    # each reaches it once (the read and the live flow overlap).
    for i in range(50):
        keep(a, "kim", i)
    stop = threading.Event()
    sent = [50]

    def keep_going():
        while not stop.is_set() and sent[0] < 400:
            keep(a, "kim", sent[0])
            sent[0] += 1

    t = threading.Thread(target=keep_going)
    t.start()
    try:
        ws = await user_ws(b, "kim")
        first = await pushes(ws, 60)
    finally:
        stop.set()
        t.join(30)
    got = first + await pushes(ws, sent[0] - 60)
    expect_eq(sorted(m["data"] for m in got), list(range(sent[0])),
              "every kept push once")
    await rc.ws_quiet(ws, 3, "no second copy")
    await ws.close()


async def check_redis_limits(exe):
    with redisd.Redis() as redis:
        args = ARGS + ("--redis", redis.url, "--inbox-max", "5",
                       "--inbox-ttl", "2s")
        with rc.Engine(exe, *args) as a:
            await rc.healthy(a)
            for i in range(8):
                keep(a, "eve", i)
            listed = inbox(a, "eve")
            expect_eq((listed["unread"], listed["evicted"]), (5, 3),
                      "evicted in Redis")
            ws = await user_ws(a, "eve")
            got = await pushes(ws, 5)
            expect_eq([m["data"] for m in got], [3, 4, 5, 6, 7], "newest")
            epoch, n = got[0]["id"].split("-")
            for seq, ids in ((1, ["%s-99" % epoch]),
                             (2, ["0badcafe-1", got[0]["id"]]),
                             # wraps to 1 unless refused (before: 200)
                             (3, ["%s-%d" % (epoch, 2**64 + 1)])):
                r = await command(ws, seq, "ack", ids=ids)
                expect_eq((r["code"], r["msg"]), (400, "unknown id"),
                          "ack %r" % ids)
            expect_eq(inbox(a, "eve")["unread"], 5, "nothing acked")
            await ws.close()
        with rc.Engine(exe, *args) as a:
            await rc.healthy(a)
            expect_eq(inbox(a, "eve")["unread"], 5, "kept across a restart")
            doc = await rc.await_state("the kept pushes expired",
                                       lambda: inbox(a, "eve"),
                                       lambda d: d["unread"] == 0,
                                       timeout=15)
            expect_eq(doc["evicted"], 8, "expiry counted as evicted")


async def check_redis_epoch(exe):
    with redisd.Redis() as redis:
        with rc.Engine(exe, *ARGS, "--redis", redis.url) as a:
            await rc.healthy(a)
            redis.command("HSET", "ringcast:inboxm:zed", "epoch",
                          b'a"\\b\x01cde', "last", 0, "evicted", 0)
            ws = await user_ws(a, "zed")
            keep(a, "zed", "hostile")
            keep(a, "ned", "sound")
            status, doc = rc.api(a, "GET", "/users/zed/inbox", key=KEY)
            expect(status == 503 and b'a"' not in doc,
                   "zed's inbox: %r", (status, doc))
            expect_eq(inbox(a, "ned")["unread"], 1, "ned's inbox")
            rc.wait_stats(a, lambda st: st["redis"]["rejected"] >= 1,
                          "the stamped push refused")
            m = await command(ws, 1, "heartbeat")	# nothing came before
            expect_eq(m.get("code"), 200, "zed's connection: %r" % m)
            await ws.close()


async def check_backlog(eng, uid):
    """600 kept pushes of 8 KB, more than --max-pending-bytes (4 MiB):
    every upgrade of the user gets its 101 and then all of them, in
    order, as it reads (before: a close frame instead of the 101, or 101
    then 1008)."""
    pad = "x" * (8 << 10)
    for i in range(600):
        keep(eng, uid, {"i": i, "pad": pad})
    for attempt in range(2):
        ws = await user_ws(eng, uid)	# fails unless the answer is a 101
        got = await pushes(ws, 600)
        expect_eq([m["data"]["i"] for m in got], list(range(600)),
                  "upgrade %d: the kept pushes, oldest first" % attempt)
        ids = [m["id"] for m in got]
        expect_eq(len(set(ids)), 600, "upgrade %d: 600 ids" % attempt)
        m = await command(ws, 1, "heartbeat")
        expect_eq(m["code"], 200, "upgrade %d: open after them" % attempt)
        await ws.close()


async def check_redis_replay_live(exe):
    """500 x 32 KB unread (16 MB: more than the connection's queue, its
    page and the sockets' buffers hold, so the replay is still under way
    while the client does not read) are read on B, and 100 more are kept
    on A meanwhile: the connection gets all 600 once, in the order kept
    (the live ones come through the pages too)."""
    with redisd.Redis() as redis:
        args = ARGS + ("--redis", redis.url, "--inbox-max", "1000",
                       "--max-pending-bytes", "1M")
        with rc.Engine(exe, *args) as a, rc.Engine(exe, *args) as b:
            await rc.healthy(a, b)
            pad = "x" * (32 << 10)
            for i in range(500):
                keep(a, "liv", {"i": i, "pad": pad})
            ws = await user_ws(b, "liv")
            try:
                got = await pushes(ws, 50)
                for i in range(500, 600):
                    keep(a, "liv", {"i": i})
                got += await pushes(ws, 550)
                order = [m["data"]["i"] for m in got]
                bad = [k for k in range(600) if order[k] != k][:1]
                expect(not bad, "every kept push once, in order: at %r "
                       "came %r", bad, order[bad[0]:bad[0] + 5] if bad
                       else None)
                expect_eq(len(set(m["id"] for m in got)), 600, "600 ids")
                await rc.ws_quiet(ws, 1, "no second copy")
            finally:
                await ws.close()


async def replay_all(ws, n, what):
    """Reads @n pushes from @ws, each within 60 s: the inbox ids they
    carry, which must be 1..@n in order."""
    seen = []
    for _ in range(n):
        try:
            m = json.loads(await rc.ws_recv(ws, 60))
        except asyncio.TimeoutError:
            raise AssertionError("%s: %d of %d unread, then nothing for 60 s"
                                 % (what, len(seen), n)) from None
        expect(m.get("cmd") == "push", "%s: not a push: %r", what,
               rc.short(m, 200))
        seen.append(int(m["id"].split("-")[1]))
    expect_eq(seen, list(range(1, n + 1)), "%s: every unread, in order"
              % what)


async def check_redis_replay_bound(exe):
    """A user with 1000 x 8 KB unread (8 MB) opens 60 connections at once
    and reads them all together: each gets all 1000, oldest first, then
    nothing; the reads go page by page, so Redis's memory stays within
    the bound and /healthz says 200 throughout (before: each got the
    oldest 1 MiB, then nothing)."""
    with redisd.Redis() as redis:
        with rc.Engine(exe, *ARGS, "--redis", redis.url) as eng:
            await rc.healthy(eng)
            rc.post_many(eng, "/users/lee/push?persist=1",
                         [json.dumps("x" * 8190)] * 1000, KEY)
            base = int(redis.info("memory")["used_memory"])
            conns = []
            try:
                with rc.HealthWatch(eng) as health:
                    for _ in range(60):
                        conns.append(await user_ws(eng, "lee"))
                    await asyncio.gather(*(
                        replay_all(ws, 1000, "connection %d" % i)
                        for i, ws in enumerate(conns)))
                    for i, ws in enumerate(conns):
                        await rc.ws_quiet(ws, 1000 + i, "after the replay")
                bounded(redis, base, health, "60 replays")
                expect_eq(inbox(eng, "lee")["unread"], 1000,
                          "unread until acked")
            finally:
                for ws in conns:
                    await ws.close()


def checks(run):
    with run.section("setup"), rc.nodes(run.exe, *ARGS) as (a, b):
        run.check("offline", check_offline, a)
        run.check("ack", check_ack, a)
        run.check("devices", check_devices, a, b)
        run.check("errors", check_errors, a)
        run.check("backlog", check_backlog, b, "bea", timeout=120)
        if rc.only_on("redis", "cluster"):
            run.check("redis-nodes", check_redis_nodes, a, b, timeout=120)
    if rc.only_on("embedded"):
        run.check("evict", check_evict, run.exe)
        run.check("ttl", check_ttl, run.exe)
        run.check("restart", check_restart, run.exe)
        run.check("memory", check_memory, run.exe, timeout=120)
    if rc.only_on("redis"):
        run.check("redis-limits", check_redis_limits, run.exe)
        run.check("redis-replay-live", check_redis_replay_live, run.exe,
                  timeout=120)
        run.check("redis-replay-bound", check_redis_replay_bound, run.exe,
                  timeout=240)
        run.check("redis-epoch", check_redis_epoch, run.exe)


if __name__ == "__main__":
    rc.main("inbox-" + rc.BROKER, checks)
