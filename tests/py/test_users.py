# SPDX-License-Identifier: MIT
"""Users, on each broker of the broker axis (RINGCAST_TEST_BROKER), with
HS256 tokens from jwtmint.py.

Embedded: one node (--shards 2, --auth optional).

- push: alice has 3 connections from two apps, spread over both shards
  (checked with /stats shards[*].upgraded); POST /users/alice/push reaches
  each exactly once, payload verbatim if JSON, else a JSON string; bob,
  carol and an anonymous connection get nothing.
- presence: GET /users/{uid} and GET /online agree with what is open.
- api-key: /users/* and /online need the key; a refused request does
  nothing.
- kick: POST /users/alice/disconnect closes all three with 4003, presence
  returns to 0, bob stays.
- claims: the channels claim allows exact names and prefix* patterns,
  refuses the rest with 403 (subscribe and client publish); no claim, no
  restriction.
- refresh (--jwt-leeway 0): a refreshed connection outlives its first
  token (a push reaches it after connections with the same first expiry
  were closed with 4001); refresh with another user's token is 403, with
  a bad one 401, on an anonymous connection 403; rights follow the token:
  a narrower claim drops the subscriptions it no longer allows, with an
  unsubscribed push before the reply, and nothing of them arrives after.
- http-client: user pushes from Python's http.client (head and body in
  two writes; rc.api writes a request in one).
- limit: --max-conns-per-user 2 refuses the third with 429 and keeps the
  first two; a slot freed by a close can be used again. On redis too
  (one node).
- slash-ids: a user id with '/' (team/ann) is reached with %2F in the path
  (push, presence, kick); a channel name in /publish/ may be
  percent-encoded too; a bad escape is 400 and a sub-path that is no
  route 404.  On redis too, the answers counting the nodes.

Redis: two nodes on one real redis-server (free loopback port), --shards
2 each, --auth required.

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
- hostile-apps: app names written into Redis by someone else (quotes,
  backslashes, control characters, a '<', bytes that are not UTF-8):
  GET /users/{uid} still answers JSON, each UTF-8 name as it was, the
  others (and one longer than any app claim) left out; 8 apps of the
  longest a claim allows are all listed.
"""

import json
import time
import traceback

import jwtmint
import rc
from jwtmint import claims
from rc import expect, expect_eq

SECRET = "users-secret-0123456789abcdef0123456789"
KEY = "users-api-key-42"
KICK = (4003, "disconnected by the server")
EXPIRED = (4001, "token expired")
OFFLINE = {"online": False, "connections": 0, "apps": []}


def token(sub, ttl=3600, **more):
    return jwtmint.hs256(claims(sub, ttl=ttl, **more), SECRET)


async def user_ws(eng, sub=None, tok=None, **more):
    """A /ws connection of user @sub (token in the Authorization header),
    or an anonymous one when neither @sub nor @tok is given."""
    hdrs = None
    if sub is not None or tok is not None:
        hdrs = {"Authorization": "Bearer " + (tok or token(sub, **more))}
    return await rc.ws_connect(eng.url("/ws"), extra_headers=hdrs,
                               ping_interval=None)


def shard_upgrades(eng):
    return [s["upgraded"] for s in rc.stats(eng)["shards"]]


async def spread(eng, sub, apps, exp=None):
    """Connects user @sub once per entry of @apps (None: no app claim),
    with tokens expiring at @exp if given, so that every shard holds at
    least one of them: a connection that would leave a shard empty is
    closed and tried again.  Returns [(ws, shard)].  Connections are made
    one at a time, so the shard whose upgrade count moved took it."""
    n = len(rc.stats(eng)["shards"])
    expect(len(apps) >= n, "%d connections cannot cover %d shards",
           len(apps), n)
    kept = []
    for _ in range(200):
        before = shard_upgrades(eng)
        app = apps[len(kept)]
        c = claims(sub, app=app)
        if exp is not None:
            c["exp"] = exp
        ws = await user_ws(eng, tok=jwtmint.hs256(c, SECRET))
        after = await rc.await_state(
                "the upgrade in /stats", lambda: shard_upgrades(eng),
                lambda a: sum(a) == sum(before) + 1)
        shard = [k for k in range(n) if after[k] != before[k]][0]
        covered = {s for _, s in kept} | {shard}
        if n - len(covered) > len(apps) - len(kept) - 1:
            await ws.close()
            continue
        kept.append((ws, shard))
        if len(kept) == len(apps):
            return kept
    raise AssertionError("200 connections of %s never covered %d shards"
                         % (sub, n))


def presence(eng, uid, key=KEY):
    status, doc = rc.api(eng, "GET", "/users/" + uid, key=key)
    expect_eq(status, 200, "GET /users/%s status (%s)" % (uid, rc.short(doc)))
    return doc


def online(eng, key=KEY):
    status, doc = rc.api(eng, "GET", "/online", key=key)
    expect_eq(status, 200, "GET /online status (%s)" % rc.short(doc))
    return doc


def sorted_apps(doc):
    """@doc with its apps list sorted: the spec does not order it, and
    sorted() equality still refuses a duplicate."""
    if isinstance(doc, dict) and isinstance(doc.get("apps"), list):
        doc = dict(doc, apps=sorted(doc["apps"]))
    return doc


async def settle_presence(eng, uid, want, key=KEY):
    """Presence counts closes when the engine gets to them: poll."""
    return await rc.await_state("GET /users/%s == %s" % (uid, want),
                                lambda: sorted_apps(presence(eng, uid, key)),
                                lambda d: d == want)


def push_user(eng, uid, body, key=KEY, want=None):
    status, doc = rc.api(eng, "POST", "/users/%s/push" % uid, body, key=key)
    want = {"ok": True} if want is None else want
    expect_eq((status, doc), (200, want), "POST /users/%s/push" % uid)


async def expect_pushes(ws, uid, sent, what):
    """@ws receives one user push per (body, value) of @sent, in any
    order, then nothing (a heartbeat's reply comes next).  A JSON body
    must appear verbatim in the frame."""
    got = []
    for _ in sent:
        raw = await rc.ws_recv(ws)
        m = json.loads(raw)
        expect(isinstance(m, dict) and m.get("cmd") == "push"
               and m.get("user") == uid and set(m) == {"cmd", "user",
                                                       "data"},
               "%s: not a push to %s: %s", what, uid, rc.short(raw, 200))
        got.append(raw)
    for body, value in sent:
        match = [r for r in got if json.loads(r)["data"] == value]
        expect(match, "%s: push %s missing; got %s", what,
               rc.short(body), rc.short(got, 300))
        raw = match[0]
        got.remove(raw)
        if is_json(body):
            expect(body.decode().strip() in raw, "%s: JSON payload %s not"
                   " verbatim in %s", what, rc.short(body), rc.short(raw))
    await rc.ws_quiet(ws, 9000, what)


def is_json(body):
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


class Step:
    """Named steps inside one check that share its connections; a failed
    step is recorded and the check goes on only if @fatal is false."""

    def __init__(self, run):
        self.run = run
        self.failed = []

    async def __call__(self, name, coro, fatal=False):
        t0 = time.monotonic()
        try:
            await coro
        except Exception as e:
            self.run.fail(name, e)
            self.failed.append(name)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
            if fatal:
                raise
            return False
        print("ok   %s (%.1fs)" % (name, time.monotonic() - t0))
        return True


# ---------------------------------------------------------------- push

PAYLOADS = [(b'{"n":1}', {"n": 1}),
            (b'{"a": [1, 2], "t": "x y"}', {"a": [1, 2], "t": "x y"}),
            (b'[1,{"b":null}]', [1, {"b": None}]),
            (b'"quoted"', "quoted"),
            (b'42', 42),
            (b'hello', "hello"),
            ('caf\u00e9 "q" \\ \U0001f600'.encode(), 'caf\u00e9 "q" \\ '
             '\U0001f600'),
            (b'', "")]


async def kicked(eng, uid, want, conns):
    """POST /users/@uid/disconnect on @eng answers @want, and closes each
    of @conns with 4003."""
    status, doc = rc.api(eng, "POST", "/users/%s/disconnect" % uid, b"",
                         key=KEY)
    expect_eq((status, doc), (200, want),
              "POST /users/%s/disconnect on :%d" % (uid, eng.port))
    for i, ws in enumerate(conns):
        expect_eq(await rc.ws_await_close(ws), KICK,
                  "%s #%d close" % (uid, i))


async def check_push(eng, step):
    alice = await spread(eng, "alice", ["ios", "web", "web"])
    print("     alice on shards %s" % [s for _, s in alice])
    alice = [ws for ws, _ in alice]
    bob = [await user_ws(eng, "bob", app="android") for _ in range(2)]
    carol_id = "c@x.io:7=_.-"
    carol = await user_ws(eng, carol_id)
    anon = await user_ws(eng)

    async def push():
        for body, _ in PAYLOADS:
            push_user(eng, "alice", body)
        for i, ws in enumerate(alice):
            await expect_pushes(ws, "alice", PAYLOADS, "alice #%d" % i)
        push_user(eng, carol_id, b'{"to":"carol"}')
        await expect_pushes(carol, carol_id, [(b'{"to":"carol"}',
                                               {"to": "carol"})], "carol")
        for i, ws in enumerate(bob + [anon]):
            await rc.ws_quiet(ws, 1, "bystander #%d" % i)
        push_user(eng, "nobody", b'"x"')	# no connection: still 200
        await anon.close()
    await step("push", push())

    async def presence_agrees():
        await settle_presence(eng, "alice", {"online": True,
                                             "connections": 3,
                                             "apps": ["ios", "web"]})
        expect_eq(sorted_apps(presence(eng, "bob")),
                  {"online": True, "connections": 2, "apps": ["android"]},
                  "GET /users/bob")
        c = presence(eng, carol_id)
        expect_eq((c.get("online"), c.get("connections")), (True, 1),
                  "GET /users/%s %s" % (carol_id, c))
        expect_eq(presence(eng, "nobody"), OFFLINE, "GET /users/nobody")
        expect_eq(online(eng), {"users": 3, "connections": 6},
                  "GET /online")
    await step("presence", presence_agrees())

    async def api_key():
        for method, path, body in (("GET", "/users/alice", None),
                                   ("GET", "/online", None),
                                   ("POST", "/users/alice/push", b'"no"'),
                                   ("POST", "/users/alice/disconnect", b"")):
            for key in (None, "wrong", KEY + "x", KEY[:-1]):
                status, doc = rc.api(eng, method, path, body, key=key)
                expect_eq(status, 401, "%s %s with key %r (%s)"
                          % (method, path, key, rc.short(doc)))
        # Nothing happened: no push, no close.
        for i, ws in enumerate(alice):
            await rc.ws_quiet(ws, 2, "alice #%d after refused calls" % i)
        expect_eq(presence(eng, "alice")["connections"], 3,
                  "alice after refused calls")
    await step("api-key", api_key())

    async def kick():
        await kicked(eng, "alice", {"ok": True, "connections": 3}, alice)
        await settle_presence(eng, "alice", OFFLINE)
        expect_eq(online(eng), {"users": 2, "connections": 3},
                  "GET /online after the kick")
        for i, ws in enumerate(bob):
            await rc.ws_quiet(ws, 3, "bob #%d after alice's kick" % i)
        status, doc = rc.api(eng, "POST", "/users/alice/disconnect", b"",
                             key=KEY)
        expect_eq((status, doc), (200, {"ok": True, "connections": 0}),
                  "second disconnect of alice")
        push_user(eng, "alice", b'"gone"')
        for i, ws in enumerate(bob):
            await rc.ws_quiet(ws, 4, "bob #%d after a push to alice" % i)
        # A kick is not a ban: alice may come back.
        ws = await user_ws(eng, "alice", app="web")
        push_user(eng, "alice", b'"back"')
        await expect_pushes(ws, "alice", [(b'"back"', "back")], "alice back")
        await ws.close()
    await step("kick", kick())
    for ws in bob + [carol]:
        await ws.close()
    await settle_presence(eng, "bob", OFFLINE)
    expect_eq(online(eng), {"users": 0, "connections": 0},
              "GET /online when everybody left")
    expect(not step.failed, "steps failed: %s", ", ".join(step.failed))


# ---------------------------------------------------------------- claims

async def subscribe(ws, seq, channels):
    return await rc.ws_command(ws, "subscribe", seq, channels=channels)


async def expect_code(ws, seq, cmd, code, msg=None, **data):
    m = await rc.ws_command(ws, cmd, seq, **data)
    expect_eq(m.get("code"), code, "%s %s: reply %s" % (cmd, data, m))
    expect_eq(m.get("cmd"), cmd, "reply's cmd")
    if msg is not None:
        expect_eq(m.get("msg"), msg, "%s %s: msg" % (cmd, data))
    return m


async def check_claims(eng):
    ws = await user_ws(eng, "dora", channels=["news", "room:*"])
    seq = iter(range(1, 1000))
    for ch in (["news"], ["room:7"], ["room:x:y"], ["news", "room:1"]):
        await expect_code(ws, next(seq), "subscribe", 200, channels=ch)
    for ch in (["other"], ["news2"], ["new"], ["room"], ["rooms:1"],
               ["Room:1"], ["xroom:1"]):
        await expect_code(ws, next(seq), "subscribe", 403,
                          "channel not allowed", channels=ch)
    await expect_code(ws, next(seq), "publish", 403, "channel not allowed",
                      channel="other", data={"x": 1})
    await expect_code(ws, next(seq), "publish", 200, channel="room:9",
                      data={"x": 2})
    # Still open, and the allowed subscriptions deliver; the refused
    # ones do not.
    for ch, body in (("other", b'"not for dora"'), ("room:7", b'{"r":7}')):
        status, doc = rc.api(eng, "POST", "/publish/" + ch, body, key=KEY)
        expect_eq((status, doc), (200, {"ok": True}), "publish to " + ch)
    m = json.loads(await rc.ws_recv(ws))
    expect_eq(m, {"cmd": "push", "channel": "room:7", "data": {"r": 7}},
              "push on an allowed pattern")
    await rc.ws_quiet(ws, next(seq), "dora")
    await ws.close()
    # An empty list allows nothing; no claim allows everything.
    ws = await user_ws(eng, "eve", channels=[])
    await expect_code(ws, 1, "subscribe", 403, "channel not allowed",
                      channels=["news"])
    await ws.close()
    ws = await user_ws(eng, "finn")
    await expect_code(ws, 1, "subscribe", 200, channels=["other", "x:y",
                                                         "room:7"])
    await expect_code(ws, 2, "publish", 200, channel="anywhere", data=1)
    await ws.close()


# ---------------------------------------------------------------- refresh

async def check_refresh(eng):
    # Everything up to the refresh (seq 12) must happen before exp1: a
    # few connections and a dozen commands, which take seconds on a
    # loaded machine.
    exp1 = int(time.time()) + 20
    first = jwtmint.hs256(dict(claims("rita", channels=["before"]),
                               exp=exp1), SECRET)
    rita = await user_ws(eng, tok=first)
    # Two connections with the same first expiry, on both shards: their
    # 4001 proves every shard has passed exp1.
    doomed = await spread(eng, "sam", [None, None], exp=exp1)
    await expect_code(rita, 1, "subscribe", 200, channels=["before"])
    await expect_code(rita, 2, "subscribe", 403, "channel not allowed",
                      channels=["after"])
    await expect_code(rita, 3, "refresh", 403, "token is for another user",
                      token=token("sam"))
    for seq, what, bad in ((4, "bad signature", jwtmint.tamper(token("rita"))),
                           (5, "expired", token("rita", ttl=-60)),
                           (6, "alg none", jwtmint.unsigned(claims("rita"))),
                           (7, "malformed", "abc"),
                           (8, "no sub", token(None))):
        m = await expect_code(rita, seq, "refresh", 401, token=bad)
        expect(isinstance(m.get("msg"), str) and m["msg"],
               "refresh with %s: msg %r, want the reason", what, m.get("msg"))
    await expect_code(rita, 12, "refresh", 200,
                      token=token("rita", channels=["before", "both"]))
    await expect_code(rita, 13, "subscribe", 200, channels=["both"])
    # A narrower claim: what it no longer allows is dropped, and said so
    # before the refresh's reply.
    await rita.send(rc.push_cmd("refresh", 9, token=token(
        "rita", channels=["after", "both"])))
    m = json.loads(await rc.ws_recv(rita))
    expect_eq(m, {"cmd": "unsubscribed",
                  "data": {"reason": "not allowed by the new token",
                           "channels": ["before"]}},
              "the push before a narrowing refresh's reply")
    expect_eq((await rc.ws_reply(rita, 9))["code"], 200, "refresh reply")
    for chan, body in (("before", b'"dropped"'), ("both", b'"kept"')):
        status, _ = rc.api(eng, "POST", "/publish/" + chan, body, key=KEY)
        expect_eq(status, 200, "POST /publish/" + chan)
    m = json.loads(await rc.ws_recv(rita))
    expect_eq((m.get("channel"), m.get("data")), ("both", "kept"),
              "only the channel still allowed is delivered")
    await expect_code(rita, 10, "subscribe", 200, channels=["after"])
    await expect_code(rita, 11, "subscribe", 403, "channel not allowed",
                      channels=["before"])
    for i, (ws, shard) in enumerate(doomed):
        expect_eq(await rc.ws_await_close(ws, timeout=40), EXPIRED,
                  "unrefreshed connection #%d (shard %d)" % (i, shard))
    expect(time.time() >= exp1, "closed before its exp")
    push_user(eng, "rita", b'"still here"')
    await expect_pushes(rita, "rita", [(b'"still here"', "still here")],
                        "rita after her first token's exp")
    await rita.close()
    anon = await user_ws(eng)
    await expect_code(anon, 1, "refresh", 403, token=token("rita"))
    await rc.ws_quiet(anon, 2, "anonymous after refresh")
    await anon.close()


# ---------------------------------------------------------------- client

async def check_http_client(eng):
    """User pushes from Python's http.client, which writes the request
    head and the body in two sends, on one keep-alive connection and on
    fresh ones."""
    ws = await user_ws(eng, "hank")
    conn = rc.http_conn(eng)
    sent = []
    for i in range(20):
        body = ('{"i":%d}' % i).encode()
        c = conn if i % 2 else rc.http_conn(eng)
        status, got = rc.post(c, "/users/hank/push", body,
                              {"Authorization": "Bearer " + KEY})
        expect_eq((status, json.loads(got)), (200, {"ok": True}),
                  "http.client push %d" % i)
        if c is not conn:
            c.close()
        sent.append((body, {"i": i}))
    conn.close()
    await expect_pushes(ws, "hank", sent, "hank")
    await ws.close()


# ---------------------------------------------------------------- limit

async def check_limit(eng):
    dave = [await user_ws(eng, "dave", app="ios"),
            await user_ws(eng, "dave", app="web")]
    before = rc.stats(eng)["total"]["upgraded"]
    # Several attempts, so that both shards see one with high odds.
    for i, app in enumerate(("android", "ios", "web", None)):
        tok = token("dave", app=app)
        r = rc.ws_upgrade(eng, "/ws", [("Authorization", "Bearer " + tok)])
        reason = rc.refused(r, 429, "dave's connection %d" % (i + 3))
        expect_eq(reason, "too many connections for this user",
                  "429 reason")
    expect_eq(rc.stats(eng)["total"]["upgraded"], before,
              "upgrades counted for refused connections")
    for i, ws in enumerate(dave):
        await rc.ws_quiet(ws, 1, "dave #%d after the refusals" % i)
    others = [await user_ws(eng, "erin") for _ in range(2)]
    await dave[0].close()
    await settle_presence(eng, "dave", {"online": True, "connections": 1,
                                        "apps": ["web"]}, key=None)
    dave[0] = await user_ws(eng, "dave", app="android")
    await rc.ws_quiet(dave[0], 2, "dave's connection in the freed slot")
    r = rc.ws_upgrade(eng, "/ws", [("Authorization",
                                    "Bearer " + token("dave"))])
    rc.refused(r, 429, "dave over the limit again")
    for ws in dave + others:
        await ws.close()


async def check_slash_ids(eng):
    """On Redis, the answers count the nodes that got it: one here."""
    nodes = None if rc.only_on("embedded") else 1
    uid, path = "team/ann", "team%2Fann"
    ws = await user_ws(eng, uid)
    await ws.send(json.dumps({"seq": 1, "cmd": "subscribe",
                              "data": {"channels": ["a/b"]}}))
    expect_eq(json.loads(await rc.ws_recv(ws))["code"], 200, "subscribe")
    await settle_presence(eng, path, {"online": True, "connections": 1,
                                      "apps": []})
    want = {"ok": True} if nodes is None else {"ok": True, "nodes": nodes}
    push_user(eng, path, b'{"n":1}', want=want)
    await expect_pushes(ws, uid, [(b'{"n":1}', {"n": 1})], "push to " + uid)
    for chan in ("a/b", "a%2Fb", "a%2fb"):
        status, doc = rc.api(eng, "POST", "/publish/" + chan, b'"c"',
                             key=KEY)
        expect_eq((status, doc), (200, want), "POST /publish/" + chan)
        m = json.loads(await rc.ws_recv(ws))
        expect_eq((m.get("channel"), m.get("data")), ("a/b", "c"),
                  "push on a/b from /publish/" + chan)
    for method, bad, code in (("GET", "/users/team%2", 400),
                              ("GET", "/users/team%zzann", 400),
                              ("GET", "/users/team%20ann", 400),
                              ("POST", "/publish/a%2", 400),
                              ("GET", "/users/team/ann", 404),
                              ("POST", "/users/team/ann", 404)):
        status, doc = rc.api(eng, method, bad, b"" if method == "POST"
                             else None, key=KEY)
        expect_eq(status, code, "%s %s (%s)" % (method, bad, rc.short(doc)))
    status, doc = rc.api(eng, "POST", "/users/%s/disconnect" % path, b"",
                         key=KEY)
    kicked = {"ok": True, "connections": 1} if nodes is None else want
    expect_eq((status, doc), (200, kicked),
              "POST /users/%s/disconnect" % path)
    expect_eq(await rc.ws_await_close(ws), KICK, uid + " kicked")
    await settle_presence(eng, path, OFFLINE)


# ---------------------------------------------------------------- redis

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
    return lambda eng: sorted_apps(presence(eng, uid))


# Names another writer of Redis may leave in a presence hash.
HOSTILE_APPS = ['q"uote', 'back\\slash', 'ctl\x01\x1f\n\tend', '</script>',
                'caf\u00e9']


def check_hostile_apps(eng, redis):
    node = "intruder-node"
    redis.command("SET", PREFIX + "node:" + node, "1", "EX", "60")
    raw = ",".join(HOSTILE_APPS).encode() + b",bad\xff\xfeutf8," + b"L" * 33
    redis.command("HSET", PREFIX + "pres:mallory", node, b"2 " + raw)
    status, doc = rc.api(eng, "GET", "/users/mallory", key=KEY)
    expect(isinstance(doc, dict), "the answer is JSON: %r", doc)
    expect_eq((status, doc.get("online"), doc.get("connections")),
              (200, True, 2), "GET /users/mallory")
    expect_eq(sorted(doc["apps"]), sorted(HOSTILE_APPS),
              "every UTF-8 name round-trips, the rest are left out")
    longest = ["%d%s" % (i, "a" * 31) for i in range(8)]
    redis.command("HSET", PREFIX + "pres:lena", node,
                  "8 " + ",".join(longest))
    expect_eq(presence(eng, "lena")["apps"], longest,
              "8 apps of 32 bytes, all listed")
    redis.command("DEL", PREFIX + "node:" + node, PREFIX + "pres:mallory",
                  PREFIX + "pres:lena")


async def check_nodes(a, b, redis, step):
    alice = [await user_ws(a, "alice", app="ios"),
             await user_ws(a, "alice", app="web"),
             await user_ws(b, "alice", app="web")]
    bob = [await user_ws(a, "bob", app="android"),
           await user_ws(b, "bob", app="android")]

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
            push_user(eng, "alice", body, want={"ok": True, "nodes": 2})
            sent.append((body, json.loads(body)))
        for body in (b'{"via": "redis"}', b"plain text"):
            got = redis.command("PUBLISH", PREFIX + "user:alice", body)
            expect_eq(got, 2, "PUBLISH %s receivers" % body)
            sent.append((body, body.decode() if body == b"plain text"
                         else json.loads(body)))
        for i, ws in enumerate(alice):
            await expect_pushes(ws, "alice", sent, "alice #%d" % i)
        push_user(a, "nobody", b'"x"', want={"ok": True, "nodes": 0})
        for i, ws in enumerate(bob):
            await rc.ws_quiet(ws, 1, "bob #%d" % i)
    await step("push", push())

    async def agree():
        nodes = (a, b)
        await await_everywhere(nodes, "GET /users/alice", user_doc("alice"),
                               {"online": True, "connections": 3,
                                "apps": ["ios", "web"]})
        await await_everywhere(nodes, "GET /users/bob", user_doc("bob"),
                               {"online": True, "connections": 2,
                                "apps": ["android"]})
        await await_everywhere(nodes, "GET /online", online,
                               {"users": 2, "connections": 5, "nodes": 2})
        for eng in nodes:
            expect_eq(presence(eng, "nobody"), OFFLINE,
                      "GET /users/nobody on :%d" % eng.port)
        # bob leaves B: B drops its interest, presence follows.
        await bob.pop().close()
        await await_numsub(redis, "bob", 1)
        await await_everywhere(nodes, "GET /users/bob", user_doc("bob"),
                               {"online": True, "connections": 1,
                                "apps": ["android"]})
        await await_everywhere(nodes, "GET /online", online,
                               {"users": 2, "connections": 4, "nodes": 2})
    await step("presence", agree())

    async def kick():
        kim = [await user_ws(a, "kim", app="web"),
               await user_ws(a, "kim", app="ios"),
               await user_ws(b, "kim", app="web")]
        await await_numsub(redis, "kim", 2)
        await await_everywhere((a, b), "GET /users/kim", user_doc("kim"),
                               {"online": True, "connections": 3,
                                "apps": ["ios", "web"]})
        await kicked(b, "kim", {"ok": True, "nodes": 2}, kim)
        await await_numsub(redis, "kim", 0)
        await await_everywhere((a, b), "GET /users/kim", user_doc("kim"),
                               OFFLINE)
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
                "A's GET /online without B", lambda: online(a),
                lambda d: d == {"users": 2, "connections": 3, "nodes": 1},
                timeout=NODE_LOSS_BOUND)
        print("     B's users gone from A after %.1fs"
              % (time.monotonic() - t0))
        expect_eq(presence(a, "bob")["connections"], 1, "bob on A")
        await await_numsub(redis, "alice", 1)
        push_user(a, "alice", b'"after"', want={"ok": True, "nodes": 1})
        for i, ws in enumerate(alice[:2]):
            await expect_pushes(ws, "alice", [(b'"after"', "after")],
                                   "alice #%d on A after B died" % i)
    async def many_apps():
        """16 apps of 32 bytes across the two nodes (8 each, the most a
        node lists) do not fit one answer: GET /users/{uid} still says
        every connection and lists whole app names, in valid JSON."""
        names = ["%s%02d" % (c * 30, i) for i in range(8) for c in "xy"]
        conns = []
        try:
            for n in names:
                conns.append(await user_ws(a if n[0] == "x" else b,
                                              "many", app=n))
            await many_apps_agree(names)
        finally:
            for ws in conns:
                await ws.close()

    async def many_apps_agree(names):
        for eng in (a, b):
            doc = await rc.await_state(
                "GET /users/many counts 16 on :%d" % eng.port,
                lambda: rc.api(eng, "GET", "/users/many", key=KEY)[1],
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


def checks(run):
    step = Step(run)
    if rc.only_on("embedded"):
        with run.section(), rc.Engine(
                run.exe, "--shards", "2", "--auth", "optional",
                "--jwt-secret", SECRET, "--jwt-leeway", "0",
                "--api-key", KEY, "--client-publish") as eng:
            run.check("push-presence-kick", check_push, eng, step,
                      timeout=120)
            run.check("claims", check_claims, eng)
            run.check("refresh", check_refresh, eng, timeout=90)
            run.check("http-client", check_http_client, eng)
            run.check("slash-ids", check_slash_ids, eng)
    with run.section(), rc.Engine(
            run.exe, "--shards", "2", "--auth", "required", "--jwt-secret",
            SECRET, "--max-conns-per-user", "2", broker=True) as eng:
        run.check("max-conns-per-user", check_limit, eng)
    if rc.only_on("redis"):
        args = ("--shards", "2", "--auth", "required", "--jwt-secret",
                SECRET, "--api-key", KEY)
        with run.section("setup"), rc.Engine(run.exe, *args,
                                             broker=True) as a:
            # B is SIGKILLed by the test: no clean-exit check for it.
            b = rc.Engine(run.exe, *args, broker=True)
            try:
                b.start()
                run.check("two-nodes", check_nodes, a, b, rc.broker(), step,
                          timeout=240)
            finally:
                b.kill()
            run.check("slash-ids", check_slash_ids, a)
            run.check("hostile-apps", check_hostile_apps, a, rc.broker())


if __name__ == "__main__":
    rc.main("users-" + rc.BROKER, checks)
