# SPDX-License-Identifier: MIT
"""Mailbox failures, in a build with -Dfault_inject=true: with
RINGCAST_FAULT_MAIL=N every Nth post of each mail op between rings
fails (shards and the Redis bridge alike), in turn at once and as the
failure a refused MSG_RING brings back.  Under that, on two shards,
with the embedded broker and with Redis, without and with JWT users:
every subscribe is answered 200 (the interest and its acks are posted
again), every HTTP publish is answered 200 or 503 (and a kept
connection's next request after a 503 is answered too), unsubscribes and
disconnects go through, no connection is left behind; users are all
admitted and presence counts them exactly, up and down again, on this
node and in Redis; and the engine still stops with status 0 (in the
sanitized build: nothing leaked).

Per mail op, from /stats "mail": every op the engine has was faulted
in some run (a new op nobody faults fails the test); every failed post
of an op that is posted again was posted again; each failed publish
(PUB from a shard, R_REQUEST through Redis) was answered 503.  Lost by
design, since a late one would break the channel's order: deliveries
between shards, and a message from Redis whose post to its channel's
owner failed (PUB from the bridge)."""

import asyncio
import json
import os
import random
import re

import websockets

import jwtmint
import rc
import redisd
from rc import expect, expect_eq
from test_pusher import APP, SPEC, batch, trigger

CHANNELS = ["fault%d" % i for i in range(32)]
CLIENTS = 48
ROUNDS = 3


async def subscribe(ws, seq, chans):
    """'ok' for a 200, 'closed' for a 1011 close; anything else fails."""
    try:
        await ws.send(rc.push_cmd("subscribe", seq=seq, channels=chans))
        while True:
            m = json.loads(await rc.ws_recv(ws))
            if m.get("seq") == seq:
                expect_eq(m.get("code"), 200, "subscribe reply %s" % m)
                return "ok"
            expect_eq(m.get("cmd"), "push", "frame before the reply")
    except websockets.ConnectionClosed:
        expect_eq(ws.close_code, 1011, "close of a failed subscribe")
        return "closed"
    except asyncio.TimeoutError:
        raise AssertionError("subscribe to %s never answered" % chans)


async def client(eng, rng, outcomes):
    for r in range(ROUNDS):
        ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
        try:
            got = await subscribe(ws, 1, rng.sample(CHANNELS, 6))
            outcomes.append(got)
            if got == "ok" and r % 2:
                await ws.send(rc.push_cmd("unsubscribe", seq=2,
                                          channels=CHANNELS[:4]))
        finally:
            await ws.close()


# What a failed post of each op does, as the subsystem that owns the op
# registered its kind (engine/pub.c, sub.c, user.c, rreq.c, hist.c,
# inbox.c): posted again, undone (its waiter hears 503), or lost.
RETRIED = {"pub_ack", "interest", "interest_ack", "r_sub_ack", "r_reply",
           "user", "user_ack", "r_subscribe", "r_presence", "hist_ack",
           "inbox", "inbox_ack"}
UNDONE = {"pub", "r_request", "hist"}
LOST = {"deliver"}
FAULTED = set()     # the ops faulted over every run of this test


def mail(eng):
    return rc.stats(eng)["mail"]


async def check_mail(eng, want, codes=None, redis=False):
    """Every op in @want was faulted; every failed retried op was posted
    again (awaited: retries go at the next tick); each failed publish was
    answered 503 (@codes: the HTTP publishes' statuses; with @redis a
    PUB comes from the bridge, where nobody waits).  Adds the ops
    faulted to FAULTED."""
    m = await rc.await_state(
        "every failed post of a retried op posted again",
        lambda: mail(eng),
        lambda m: all(m["retried"][op] == m["failed"][op]
                      for op in RETRIED))
    failed = {op for op, n in m["failed"].items() if n}
    print("     faults: %s" % {op: m["failed"][op] for op in sorted(failed)})
    expect_eq(set(m["failed"]), RETRIED | UNDONE | LOST, "mail ops")
    missing = set(want) - failed
    expect(not missing, "never faulted here: %s", sorted(missing))
    if codes is not None:
        undone = m["failed"]["r_request"] + (0 if redis else
                                             m["failed"]["pub"])
        expect_eq(codes.get(503, 0), undone, "publishes answered 503")
    FAULTED.update(failed)


def publishes(eng, n, rng):
    """Each publish is answered 200 or 503 on a connection of its own."""
    codes = {}
    for i in range(n):
        status, _ = rc.api(eng, "POST", "/publish/" + rng.choice(CHANNELS),
                           body=json.dumps({"i": i}))
        expect(status in (200, 503), "publish %d: status %d", i, status)
        codes[status] = codes.get(status, 0) + 1
    return codes


async def check_faults(eng, ops, redis):
    rng = random.Random(11)
    outcomes = []
    pub = asyncio.to_thread(publishes, eng, 120, random.Random(12))
    _, codes = await asyncio.gather(
        asyncio.gather(*(client(eng, random.Random(rng.random()), outcomes)
                         for _ in range(CLIENTS))),
        pub)
    expect_eq(len(outcomes), CLIENTS * ROUNDS, "subscribes answered")
    ok = outcomes.count("ok")
    print("     subscribes: %d ok, %d closed 1011; publishes: %s"
          % (ok, outcomes.count("closed"), codes))
    expect_eq(ok, CLIENTS * ROUNDS, "subscribes answered 200")
    st = rc.stats(eng)["total"]
    expect(st["mailbox_errors"] > 0, "no mailbox post failed: %s", st)
    # Every client is gone; the engine must agree (nothing stuck).
    await rc.await_state("connections closed", lambda: rc.stats(eng),
                         lambda s: s["total"]["connections"] <= 1)
    await check_mail(eng, ops, codes, redis)


USERS = ["fu%d" % i for i in range(8)]
SECRET = "fault-secret"


async def check_faults_users(eng, ops):
    """Users under mailbox failures: every upgrade is admitted, presence
    counts every connection (JOIN) and, once they close, none (LEAVE),
    and user pushes, queries and kicks are answered."""
    rng = random.Random(13)
    conns = []
    for i in range(40):
        uid = USERS[i % len(USERS)]
        tok = jwtmint.hs256(jwtmint.claims(uid, app="web"), SECRET)
        conns.append((uid, await rc.ws_connect(
            eng.url("/ws"), extra_headers={"Authorization": "Bearer " + tok},
            ping_interval=None)))
    for uid in USERS:
        want = sum(1 for u, _ in conns if u == uid)
        await rc.await_state(
            "GET /users/%s counts %d" % (uid, want),
            lambda: rc.api(eng, "GET", "/users/" + uid),
            lambda r: r[0] == 200 and r[1].get("connections") == want)
    for _ in range(20):
        uid = rng.choice(USERS)
        status, doc = rc.api(eng, "POST", "/users/%s/push" % uid, b'{"x":1}')
        expect(status in (200, 503), "user push: %d %s", status, doc)
    # Kicks of users nobody is connected as: answered, and with Redis
    # carried to every node's owner shard (the bridge's USER mail).
    for i in range(12):
        status, doc = rc.api(eng, "POST", "/users/ghost%d/disconnect" % i)
        expect(status in (200, 503), "kick: %d %s", status, doc)
    for _, ws in conns:
        await ws.close()
    for uid in USERS:
        await rc.await_state(
            "GET /users/%s offline" % uid,
            lambda: rc.api(eng, "GET", "/users/" + uid),
            lambda r: r[0] == 200 and r[1].get("connections") == 0)
    await check_mail(eng, ops)


async def check_faults_inbox(eng, ops):
    """Inboxes under mailbox failures: kept pushes are answered 200 or
    503, and every ack and inbox command (and GET /users/{uid}/inbox)
    is answered: acks and listings are posted again until they arrive."""
    for i in range(30):
        status, _ = rc.api(eng, "POST", "/users/ivy/push?persist=1",
                           json.dumps(i))
        expect(status in (200, 503), "kept push: %d", status)
    tok = jwtmint.hs256(jwtmint.claims("ivy"), SECRET)
    ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None,
                             extra_headers={"Authorization": "Bearer " + tok})
    for seq in range(1, 41):
        status, doc = rc.api(eng, "GET", "/users/ivy/inbox")
        expect_eq(status, 200, "GET inbox (%r)" % doc)
        ids = doc["ids"][:1]
        await ws.send(rc.push_cmd("ack" if ids else "inbox", seq=seq,
                                  ids=ids))
        while True:	# pushes of the unread may come first
            m = json.loads(await rc.ws_recv(ws))
            if m.get("seq") == seq:
                break
        expect_eq(m["code"], 200, "answer %r" % m)
    await ws.close()
    await check_mail(eng, ops)


async def check_faults_history(eng, ops, redis=False):
    """History reads under mailbox failures: every history command and
    every recovering subscribe is answered, 200 or (its read never
    reached the owner, or Redis) 503, and a 503 leaves no subscription
    behind.  With @redis the reads are Redis requests too, so failed
    requests are not all publishes."""
    codes = publishes_to(eng, "f:1", 30)
    for i in range(30):
        ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
        try:
            await ws.send(rc.push_cmd("history", seq=1, channel="f:1",
                                      limit=5))
            h = await rc.ws_reply(ws, 1)
            expect(h["code"] in (200, 503), "history: %r", h)
            if h["code"] != 200:
                continue
            await ws.send(rc.push_cmd("subscribe", seq=2, channel="f:1",
                                      offset=max(h["data"]["offset"] - 3,
                                                 0),
                                      epoch=h["data"]["epoch"] or ""))
            r = await rc.ws_reply(ws, 2)
            expect(r["code"] in (200, 503), "recovering subscribe: %r", r)
            if r["code"] == 503:
                await ws.send(rc.push_cmd("unsubscribe", seq=3,
                                          channels=["f:1"]))
                await rc.ws_reply(ws, 3)
        finally:
            await ws.close()
    await rc.await_state("connections closed", lambda: rc.stats(eng),
                         lambda s: s["total"]["connections"] <= 1)
    await check_mail(eng, ops, None if redis else codes)


def publishes_to(eng, chan, n):
    codes = {}
    for i in range(n):
        status, _ = rc.api(eng, "POST", "/publish/" + chan,
                           body=json.dumps({"i": i}))
        expect(status in (200, 503), "publish %d: status %d", i, status)
        codes[status] = codes.get(status, 0) + 1
    return codes


def check_faults_kept(eng):
    """Publishes on one kept connection: one whose hand-off to the owner
    failed is answered 503, and the next request on that connection is
    still read and answered (the channels are spread over both shards,
    so some hand-offs cross and every third of those fails)."""
    rng = random.Random(13)
    conn = rc.http_conn(eng)
    codes = {}
    m0 = mail(eng)["failed"]["pub"]
    try:
        for i in range(60):
            try:
                status, _ = rc.post(conn, "/publish/" + rng.choice(CHANNELS),
                                    json.dumps({"i": i}))
            except (TimeoutError, OSError) as err:
                raise AssertionError("publish %d on the kept connection "
                                     "(after %s): no answer: %r"
                                     % (i, codes, err)) from None
            expect(status in (200, 503), "publish %d: status %d", i, status)
            codes[status] = codes.get(status, 0) + 1
    finally:
        conn.close()
    print("     kept connection: %s" % codes)
    expect(codes.get(503, 0) > 0, "no publish failed: %s", codes)
    expect_eq(codes.get(503, 0), mail(eng)["failed"]["pub"] - m0,
              "publishes answered 503")


def check_faults_pusher(eng):
    """Pusher's HTTP API under mailbox failures: an event is answered 200
    only once each of its channels' publishes was sequenced by the
    channel's owner shard, and 503 saying how many failed when a
    hand-off to an owner failed; so the publishes sequenced are exactly
    those the answers count as made, and the failed ones are the PUB
    posts that failed."""
    rng = random.Random(14)
    published0 = rc.stats(eng)["total"]["published"]
    failed0 = mail(eng)["failed"]["pub"]
    codes, made, lost = {}, 0, 0
    for i in range(60):
        if i % 10 == 9:     # a batch: one channel an event
            chans = rng.sample(CHANNELS, 2)
            status, doc = batch(eng, [{"name": "e", "channel": ch,
                                       "data": str(i)} for ch in chans],
                                whole=True)
        else:               # one channel, or several
            chans = rng.sample(CHANNELS, 1 if i % 3 else 3)
            status, doc = trigger(eng, {"name": "e", "channels": chans,
                                        "data": str(i)})
        codes[status] = codes.get(status, 0) + 1
        if status == 200:
            expect_eq(doc, {}, "event %d: answer" % i)
            made += len(chans)
            continue
        expect_eq(status, 503, "event %d: status (%s)" % (i, doc))
        m = re.match(r"(\d+) of (\d+) publishes failed: not published",
                     doc.get("error", ""))
        expect(m, "event %d: 503 says %s", i, doc)
        expect_eq(int(m.group(2)), len(chans), "event %d: publishes" % i)
        made += len(chans) - int(m.group(1))
        lost += int(m.group(1))
    print("     pusher events: %s; publishes made %d, failed %d"
          % (codes, made, lost))
    expect_eq(rc.stats(eng)["total"]["published"] - published0, made,
              "publishes sequenced (answered as made)")
    expect_eq(mail(eng)["failed"]["pub"] - failed0, lost,
              "failed hand-offs (answered as failed)")
    expect(codes.get(503, 0) > 0, "no hand-off failed: %s", codes)


def checks(run):
    os.environ["RINGCAST_FAULT_MAIL"] = "3"
    users = ("--auth", "optional", "--jwt-secret", SECRET)
    shard = {"pub", "pub_ack", "deliver", "interest", "interest_ack"}
    with run.section(), rc.Engine(run.exe, "--shards", "2") as eng:
        run.check("faults", check_faults, eng, shard, False, timeout=120)
    with run.section("publishes on a kept connection"), \
            rc.Engine(run.exe, "--shards", "2") as eng:
        run.check("faults-kept", check_faults_kept, eng, timeout=120)
    with run.section("Pusher's HTTP API"), \
            rc.Engine(run.exe, "--shards", "2", "--pusher-app",
                      SPEC % APP) as eng:
        run.check("faults-pusher", check_faults_pusher, eng, timeout=120)
    with run.section("engine with users"), \
            rc.Engine(run.exe, "--shards", "2", *users) as eng:
        run.check("faults-users", check_faults_users, eng,
                  {"user", "user_ack"}, timeout=120)
    with run.section("engine with inboxes"), \
            rc.Engine(run.exe, "--shards", "2", *users) as eng:
        run.check("faults-inbox", check_faults_inbox, eng,
                  {"inbox", "inbox_ack"}, timeout=120)
    with run.section("engine with history"), \
            rc.Engine(run.exe, "--shards", "2", "--namespace",
                      "f:history=50,ttl=10m") as eng:
        run.check("faults-history", check_faults_history, eng,
                  {"hist", "hist_ack"}, timeout=120)
    with run.section("engine with history in Redis"), \
            redisd.Redis() as redis, \
            rc.Engine(run.exe, "--shards", "2", "--redis", redis.url,
                      "--namespace", "f:history=50,ttl=10m") as eng:
        run.check("faults-history-redis", check_faults_history, eng,
                  {"r_request", "r_reply"}, True, timeout=120)
    with run.section("engine with redis"), redisd.Redis() as redis, \
            rc.Engine(run.exe, "--shards", "2", "--redis",
                      redis.url) as eng:
        run.check(
            "faults-redis", check_faults, eng,
            {"pub", "deliver", "r_subscribe", "r_sub_ack", "r_request",
             "r_reply"}, True, timeout=120)
    with run.section("engine with redis and users"), \
            redisd.Redis() as redis, \
            rc.Engine(run.exe, "--shards", "2", "--redis", redis.url,
                      *users) as eng:
        run.check(
            "faults-redis-users", check_faults_users, eng,
            {"user", "user_ack", "r_presence", "r_request", "r_reply"},
            timeout=120)
    with run.section("every op faulted"):
        expect_eq(FAULTED, RETRIED | UNDONE | LOST, "ops faulted in all")


if __name__ == "__main__":
    rc.main("faults", checks, open_publish=True)
