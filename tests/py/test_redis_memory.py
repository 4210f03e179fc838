# SPDX-License-Identifier: MIT
"""Memory after a storm from Redis (one engine, --shards 2, one real
redis-server).

- storm: 1000 messages of 256 KB PUBLISHed to Redis in one pipelined
  burst, far more than the 64 MiB frame arena holds while two
  subscribers read them (--max-pending-bytes 1G: the test's readers are
  slower than Redis, and the point is a burst they do read); each gets
  every one, in order. Once they are all read (/stats frames_live 0),
  the engine's RSS comes back to within 8 MiB of what it was before the
  burst, within 30 s (mimalloc builds: a sanitizer's malloc says nothing
  of ours). Before: the frames the bridge thread built past the arena
  were freed by the shards into pages only that idle thread reclaims,
  and RSS stayed 22 to 30 MiB up (under 1 MiB since).
"""

import asyncio
import json
import socket
import threading
import time

import rc
import redisd
from rc import expect, expect_eq

N = 1000
SIZE = 256 << 10
BOUND_KIB = 8 << 10


def publish_burst(port, errors):
    """PUBLISHes the N messages on one connection, 100 to a write."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            f = s.makefile("rb")
            for first in range(0, N, 100):
                s.sendall(b"".join(redisd.encode((
                    "PUBLISH", "ringcast:ch:storm",
                    json.dumps({"i": i, "pad": "s" * SIZE})))
                    for i in range(first, first + 100)))
                for _ in range(100):
                    redisd.read_reply(f)
    except (OSError, AssertionError) as e:
        errors.append(e)


async def read_all(ws):
    for i in range(N):
        m = json.loads(await rc.ws_recv(ws, 60))
        expect_eq((m.get("cmd"), m.get("data", {}).get("i")), ("push", i),
                  "message %d" % i)


async def check_storm(exe):
    with redisd.Redis() as redis:
        with rc.Engine(exe, "--shards", "2", "--redis", redis.url,
                       "--max-pending-bytes", "1G") as eng:
            await rc.await_state("redis up", lambda: rc.api(
                eng, "GET", "/healthz")[0], lambda st: st == 200)
            subs = []
            for _ in range(2):
                ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
                m = await rc.ws_command(ws, "subscribe", 1,
                                        channels=["storm"])
                expect_eq(m["code"], 200, "subscribe")
                subs.append(ws)
            await rc.await_state("the node subscribed in Redis", lambda:
                                 redis.command("PUBSUB", "NUMSUB",
                                               "ringcast:ch:storm")[1],
                                 lambda n: n == 1)
            base = rc.vm_rss_kb(eng.proc.pid)
            errors = []
            pub = threading.Thread(target=publish_burst,
                                   args=(redis.port, errors))
            pub.start()
            try:
                await asyncio.gather(*(read_all(ws) for ws in subs))
            finally:
                pub.join(60)
            expect(not errors, "publishing: %r", errors)
            st = rc.wait_stats(eng, lambda s: s["frames_live"] == 0,
                               "every frame freed")
            expect(st["arena_fallbacks"] > 0,
                   "the burst outran the arena (else this proves nothing)")
            if rc.uses_mimalloc(exe):
                deadline = time.monotonic() + 30
                while True:
                    grew = rc.vm_rss_kb(eng.proc.pid) - base
                    if grew < BOUND_KIB:
                        break
                    expect(time.monotonic() < deadline,
                           "RSS still %d KiB above its %d KiB before the "
                           "burst after 30 s", grew, base)
                    await asyncio.sleep(0.2)
            print("  RSS %d KiB before the burst, %d KiB above it after; "
                  "%d frames past the arena" % (
                      base, rc.vm_rss_kb(eng.proc.pid) - base,
                      st["arena_fallbacks"]))
            m = await rc.ws_command(subs[0], "heartbeat", 2)
            expect_eq(m["code"], 200, "a subscriber after the storm")
            for ws in subs:
                await ws.close()


def checks(run):
    run.check("storm", check_storm, run.exe, timeout=150)


if __name__ == "__main__":
    rc.main("redis-memory", checks)
