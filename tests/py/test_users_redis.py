# SPDX-License-Identifier: MIT
"""Users across two nodes on one real redis-server (free loopback port),
--shards 2 each, --auth required with HS256 tokens from jwtmint.py.

- interest: a node subscribes to ringcast:user:<uid> only while the user
  has a connection on it (PUBSUB NUMSUB), and drops it when the last one
  leaves.
- push: alice has 3 connections (ios and web on A, web on B); a user push
  over HTTP on A, over HTTP on B and by a raw PUBLISH reaches each of them
  exactly once; bob's connections get nothing; HTTP answers with the
  number of nodes that got it.
- presence: GET /users/{uid} and GET /online say the same on both nodes.
- kick: POST /users/kim/disconnect on one node closes kim's connections on
  both with 4003; presence returns to 0 everywhere.
- node loss: B killed with SIGKILL; within the bound its users stop
  counting on A, and user pushes still reach A's connections.
- slash-ids: test_users's check through Redis: a user id with '/' is
  reached with %2F in the path.
- hostile-apps: app names written into Redis by someone else (quotes,
  backslashes, control characters, a '<', bytes that are not UTF-8):
  GET /users/{uid} still answers JSON, each UTF-8 name as it was, the
  others (and one longer than any app claim) left out; 8 apps of the
  longest a claim allows are all listed.
"""

import json
import time

import rc
import redisd
import test_users as tu
from rc import expect, expect_eq

PREFIX = "ringcast:"
# The spec: heartbeat every 1 s, 5 s expiry, so about 6 s; generous here.
NODE_LOSS_BOUND = 20


def numsub(redis, uid):
    return redis.command("PUBSUB", "NUMSUB", PREFIX + "user:" + uid)[1]


async def await_numsub(redis, uid, n):
    await rc.await_state("NUMSUB %suser:%s == %d" % (PREFIX, uid, n),
                         lambda: numsub(redis, uid), lambda v: v == n)


async def await_everywhere(nodes, what, get, want, timeout=60):
    """Polls @get(node) on every node until it returns @want."""
    for eng in nodes:
        await rc.await_state("%s == %s on :%d" % (what, want, eng.port),
                             lambda: get(eng), lambda v: v == want,
                             timeout=timeout)


def user_doc(uid):
    return lambda eng: tu.sorted_apps(tu.presence(eng, uid))


# Names another writer of Redis may leave in a presence hash.
HOSTILE_APPS = ['q"uote', 'back\\slash', 'ctl\x01\x1f\n\tend', '</script>',
                'caf\u00e9']


def check_hostile_apps(eng, redis):
    node = "intruder-node"
    redis.command("SET", PREFIX + "node:" + node, "1", "EX", "60")
    raw = ",".join(HOSTILE_APPS).encode() + b",bad\xff\xfeutf8," + b"L" * 33
    redis.command("HSET", PREFIX + "pres:mallory", node, b"2 " + raw)
    status, doc = rc.api(eng, "GET", "/users/mallory", key=tu.KEY)
    expect(isinstance(doc, dict), "the answer is JSON: %r", doc)
    expect_eq((status, doc.get("online"), doc.get("connections")),
              (200, True, 2), "GET /users/mallory")
    expect_eq(sorted(doc["apps"]), sorted(HOSTILE_APPS),
              "every UTF-8 name round-trips, the rest are left out")
    longest = ["%d%s" % (i, "a" * 31) for i in range(8)]
    redis.command("HSET", PREFIX + "pres:lena", node,
                  "8 " + ",".join(longest))
    expect_eq(tu.presence(eng, "lena")["apps"], longest,
              "8 apps of 32 bytes, all listed")
    redis.command("DEL", PREFIX + "node:" + node, PREFIX + "pres:mallory",
                  PREFIX + "pres:lena")


async def check_cluster(a, b, redis, step):
    alice = [await tu.user_ws(a, "alice", app="ios"),
             await tu.user_ws(a, "alice", app="web"),
             await tu.user_ws(b, "alice", app="web")]
    bob = [await tu.user_ws(a, "bob", app="android"),
           await tu.user_ws(b, "bob", app="android")]

    async def interest():
        await await_numsub(redis, "alice", 2)
        await await_numsub(redis, "bob", 2)
        expect_eq(numsub(redis, "nobody"), 0, "NUMSUB of a user nowhere")
    if not await step("interest", interest()):
        return

    async def push():
        sent = []
        for i, eng in enumerate((a, b)):
            body = ('{"via":"http","node":%d}' % i).encode()
            tu.push_user(eng, "alice", body, want={"ok": True, "nodes": 2})
            sent.append((body, json.loads(body)))
        for body in (b'{"via": "redis"}', b"plain text"):
            got = redis.command("PUBLISH", PREFIX + "user:alice", body)
            expect_eq(got, 2, "PUBLISH %s receivers" % body)
            sent.append((body, body.decode() if body == b"plain text"
                         else json.loads(body)))
        for i, ws in enumerate(alice):
            await tu.expect_pushes(ws, "alice", sent, "alice #%d" % i)
        tu.push_user(a, "nobody", b'"x"', want={"ok": True, "nodes": 0})
        for i, ws in enumerate(bob):
            await rc.ws_quiet(ws, 1, "bob #%d" % i)
    await step("push", push())

    async def presence():
        nodes = (a, b)
        await await_everywhere(nodes, "GET /users/alice", user_doc("alice"),
                               {"online": True, "connections": 3,
                                "apps": ["ios", "web"]})
        await await_everywhere(nodes, "GET /users/bob", user_doc("bob"),
                               {"online": True, "connections": 2,
                                "apps": ["android"]})
        await await_everywhere(nodes, "GET /online", tu.online,
                               {"users": 2, "connections": 5, "nodes": 2})
        for eng in nodes:
            expect_eq(tu.presence(eng, "nobody"), tu.OFFLINE,
                      "GET /users/nobody on :%d" % eng.port)
        # bob leaves B: B drops its interest, presence follows.
        await bob.pop().close()
        await await_numsub(redis, "bob", 1)
        await await_everywhere(nodes, "GET /users/bob", user_doc("bob"),
                               {"online": True, "connections": 1,
                                "apps": ["android"]})
        await await_everywhere(nodes, "GET /online", tu.online,
                               {"users": 2, "connections": 4, "nodes": 2})
    await step("presence", presence())

    async def kick():
        kim = [await tu.user_ws(a, "kim", app="web"),
               await tu.user_ws(a, "kim", app="ios"),
               await tu.user_ws(b, "kim", app="web")]
        await await_numsub(redis, "kim", 2)
        await await_everywhere((a, b), "GET /users/kim", user_doc("kim"),
                               {"online": True, "connections": 3,
                                "apps": ["ios", "web"]})
        status, doc = rc.api(b, "POST", "/users/kim/disconnect", b"",
                             key=tu.KEY)
        expect_eq((status, doc), (200, {"ok": True, "nodes": 2}),
                  "POST /users/kim/disconnect on B")
        for i, ws in enumerate(kim):
            expect_eq(await rc.ws_await_close(ws), tu.KICK,
                      "kim #%d close" % i)
        await await_numsub(redis, "kim", 0)
        await await_everywhere((a, b), "GET /users/kim", user_doc("kim"),
                               tu.OFFLINE)
        for i, ws in enumerate(alice + bob):
            await rc.ws_quiet(ws, 2, "bystander #%d after kim's kick" % i)
    await step("kick", kick())

    async def node_loss():
        b.kill()
        t0 = time.monotonic()
        await rc.await_state(
                "A's GET /users/alice without B",
                lambda: user_doc("alice")(a),
                lambda d: d == {"online": True, "connections": 2,
                                "apps": ["ios", "web"]},
                timeout=NODE_LOSS_BOUND)
        await rc.await_state(
                "A's GET /online without B", lambda: tu.online(a),
                lambda d: d == {"users": 2, "connections": 3, "nodes": 1},
                timeout=NODE_LOSS_BOUND)
        print("     B's users gone from A after %.1fs"
              % (time.monotonic() - t0))
        expect_eq(tu.presence(a, "bob")["connections"], 1, "bob on A")
        await await_numsub(redis, "alice", 1)
        tu.push_user(a, "alice", b'"after"', want={"ok": True, "nodes": 1})
        for i, ws in enumerate(alice[:2]):
            await tu.expect_pushes(ws, "alice", [(b'"after"', "after")],
                                   "alice #%d on A after B died" % i)
    async def many_apps():
        """16 apps of 32 bytes across the two nodes (8 each, the most a
        node lists) do not fit one answer: GET /users/{uid} still says
        every connection and lists whole app names, in valid JSON."""
        names = ["%s%02d" % (c * 30, i) for i in range(8) for c in "xy"]
        conns = []
        try:
            for n in names:
                conns.append(await tu.user_ws(a if n[0] == "x" else b,
                                              "many", app=n))
            await many_apps_agree(names)
        finally:
            for ws in conns:
                await ws.close()

    async def many_apps_agree(names):
        for eng in (a, b):
            doc = await rc.await_state(
                "GET /users/many counts 16 on :%d" % eng.port,
                lambda: rc.api(eng, "GET", "/users/many", key=tu.KEY)[1],
                lambda d: not isinstance(d, dict) or
                d.get("connections") == 16)
            expect(isinstance(doc, dict), "not JSON: %r", doc)
            apps = doc["apps"]
            expect(apps and set(apps) <= set(names) and
                   len(set(apps)) == len(apps),
                   "apps %r are not whole, distinct names", apps)
    await step("many-apps", many_apps())
    await step("node-loss", node_loss())
    for ws in alice + bob:
        await ws.close()
    expect(not step.failed, "steps failed: %s", ", ".join(step.failed))


def main():
    run = rc.Run("users-redis")
    step = tu.Step(run)
    try:
        with redisd.Redis() as redis:
            args = ("--shards", "2", "--redis", redis.url, "--auth",
                    "required", "--jwt-secret", tu.SECRET, "--api-key",
                    tu.KEY)
            with rc.Engine(run.exe, *args) as a:
                # B is SIGKILLed by the test: no clean-exit check for it.
                b = rc.Engine(run.exe, *args)
                try:
                    b.start()
                    run.check("two-nodes", check_cluster, a, b, redis, step,
                              timeout=240)
                finally:
                    b.kill()
                run.check("slash-ids", tu.check_slash_ids, a, 1)
                run.check("hostile-apps", check_hostile_apps, a, redis)
    except AssertionError as e:
        run.fail("setup", e)
    run.finish()


if __name__ == "__main__":
    main()
