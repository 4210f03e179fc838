# SPDX-License-Identifier: MIT
"""Mailbox failures, in a build with -Dfault_inject=true: with
RINGCAST_FAULT_MAIL=N every Nth post between rings fails, in turn at
once and as the failure a refused MSG_RING brings back.  Under that,
on two shards, with the embedded broker and with Redis: every subscribe
is answered 200 (the interest and its acks are posted again), every
HTTP publish is answered 200 or 503, unsubscribes and disconnects go
through, no connection is left behind; JWT users are all admitted and
presence counts them exactly, up and down again; and the engine still
stops with status 0 (in the sanitized build: nothing leaked)."""

import asyncio
import json
import os
import random

import websockets

import jwtmint
import rc
import redisd
from rc import expect, expect_eq

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


def publishes(eng, n, rng):
    """Each publish is answered 200 or 503 on a connection of its own."""
    codes = {}
    for i in range(n):
        status, _ = rc.api(eng, "POST", "/publish/" + rng.choice(CHANNELS),
                           body=json.dumps({"i": i}))
        expect(status in (200, 503), "publish %d: status %d", i, status)
        codes[status] = codes.get(status, 0) + 1
    return codes


async def check_faults(eng):
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


USERS = ["fu%d" % i for i in range(8)]
SECRET = "fault-secret"


async def check_faults_users(eng):
    """Users under mailbox failures: every upgrade is admitted, presence
    counts every connection (JOIN) and, once they close, none (LEAVE),
    and user pushes and queries are answered."""
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
    for _, ws in conns:
        await ws.close()
    for uid in USERS:
        await rc.await_state(
            "GET /users/%s offline" % uid,
            lambda: rc.api(eng, "GET", "/users/" + uid),
            lambda r: r[0] == 200 and r[1].get("connections") == 0)


def main():
    run = rc.Run("faults")
    os.environ["RINGCAST_FAULT_MAIL"] = "3"
    try:
        with rc.Engine(run.exe, "--shards", "2") as eng:
            run.check("faults", check_faults, eng, timeout=120)
    except AssertionError as e:
        run.fail("engine", e)
    try:
        with rc.Engine(run.exe, "--shards", "2", "--auth", "optional",
                       "--jwt-secret", SECRET) as eng:
            run.check("faults-users", check_faults_users, eng, timeout=120)
    except AssertionError as e:
        run.fail("engine with users", e)
    try:
        with redisd.Redis() as redis, \
                rc.Engine(run.exe, "--shards", "2", "--redis",
                          redis.url) as eng:
            run.check("faults-redis", check_faults, eng, timeout=120)
    except AssertionError as e:
        run.fail("engine with redis", e)
    run.finish()


if __name__ == "__main__":
    os.environ.pop("RINGCAST_API_KEY", None)
    main()
