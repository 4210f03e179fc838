# SPDX-License-Identifier: MIT
"""The Pusher front door (issue 26, docs/PUSHER.md) driven by the
official clients: pusher-js 8 under Node connects to /app/{key}, its
private and presence channels authorized by the official `pusher` server
SDK, and the SDK's trigger() publishes through /apps/{id}/events, from
another node on the redis axis (tests/js/pusher_clients.mjs). Bad input:
an unknown key closes 4001 and pusher-js stops; a bad signature gets
pusher:subscription_error; a signed publish replayed after 600 s, a
wrong signature or body_md5 get 401; malformed JSON gets pusher:error
and the connection stays; oversized names and data are refused. The
apps come from --pusher-app, RINGCAST_PUSHER_APPS and
--pusher-apps-file, and a bad one stops the engine without its secret
in the message."""

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import time
import urllib.parse

import websockets

import rc
from rc import expect, expect_eq

APP = {"id": "42", "key": "key-42", "secret": "s3cret-42"}
APP2 = {"id": "43", "key": "key-43", "secret": "s3cret-43"}
SPEC = "%(id)s:%(key)s:%(secret)s"
JS = os.path.join(rc.HERE, "..", "js", "pusher_clients.mjs")
NODE_TIMEOUT = 120


def pusher_js(scenario, engs, app=APP):
    """Runs pusher_clients.mjs @scenario against @engs; its JSON."""
    env = dict(os.environ)
    if rc.TLS:
        env["NODE_EXTRA_CA_CERTS"] = rc.tls_files()[0]
    cfg = {"host": engs[0].host, "ports": [e.port for e in engs],
           "tls": rc.TLS, "app": app}
    p = subprocess.run(["node", JS, scenario, json.dumps(cfg)], env=env,
                       capture_output=True, text=True, timeout=NODE_TIMEOUT)
    expect(p.returncode == 0, "pusher_clients %s: exit %d: %s %s", scenario,
           p.returncode, p.stderr[-2000:], p.stdout[-500:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def signed(app, method, path, body, ts=None, secret=None):
    """The query the Pusher SDKs sign (done here apart from the SDK)."""
    params = {"auth_key": app["key"], "auth_timestamp": str(
        int(time.time()) if ts is None else ts), "auth_version": "1.0"}
    if body:
        params["body_md5"] = hashlib.md5(body).hexdigest()
    q = "&".join("%s=%s" % kv for kv in sorted(params.items()))
    sig = hmac.new((secret or app["secret"]).encode(),
                   ("%s\n%s\n%s" % (method, path, q)).encode(),
                   hashlib.sha256).hexdigest()
    return q + "&auth_signature=" + sig


def trigger(eng, body, app=APP, **kw):
    """POST /apps/{id}/events with @body (a dict or bytes), signed."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    path = "/apps/%s/events" % app["id"]
    return rc.api(eng, "POST", path + "?" + signed(app, "POST", path, body,
                                                   **kw), body)


def ws_url(eng, key=APP["key"]):
    return eng.url("/app/%s?protocol=7&client=js&version=8.4.0&flash=false"
                   % key)


async def connected(eng, key=APP["key"]):
    ws = await rc.ws_connect(ws_url(eng, key))
    ev = json.loads(await rc.ws_recv(ws))
    expect_eq(ev["event"], "pusher:connection_established", "first event")
    return ws, json.loads(ev["data"])


async def event(ws):
    ev = json.loads(await rc.ws_recv(ws))
    if isinstance(ev.get("data"), str) and ev["event"].startswith("pusher"):
        ev["data"] = json.loads(ev["data"])
    return ev


def engine_args(*more):
    return ["--pusher-app", SPEC % APP, "--pusher-app", SPEC % APP2,
            "--pusher-client-events", APP["id"], "--pusher-watchlist",
            APP["id"]] + list(more)


# ---------------------------------------------------------------- checks

def check_official_clients(engs):
    out = pusher_js("fanout", engs)
    for sid in out["socket_ids"]:
        expect(sid.count(".") == 1 and sid.replace(".", "").isdigit(),
               "socket_id %r is not ^\\d+\\.\\d+$", sid)
    expect(out["socket_ids"][0] != out["socket_ids"][1], "same socket_id")
    expect_eq(out["me"], "u2", "presence members.me")
    want = {"n": 0, "text": "x\u00e9\"\\\n"}
    got = out["events"]
    expect_eq(len(got), 6, "events received (3 channels, 2 clients)")
    expect_eq(out["multi"], 6, "one trigger to 3 channels: received")
    expect_eq(out["batched"], [0, 0, 1, 1, 2, 2], "a batch: received")
    for i, (chan, data) in enumerate(got):
        want["n"] = ["room-1", "private-room", "presence-room"].index(chan)
        expect_eq(data, want, "event %d on %s" % (i, chan))


def check_presence(engs):
    out = pusher_js("presence", engs[:1])
    expect_eq(sorted(out["b"]), ["u1", "u2"], "members b saw")
    expect_eq(sorted(out["c"]), ["u1", "u2"], "members c saw")
    expect_eq(out["infoA"], {"name": 'Ann "A" \u00e9'}, "u1's user_info")
    expect_eq(out["seen"], [["added", "u2"], ["removed", "u2"]],
              "member events a heard")
    expect_eq(out["countA"], 1, "members left")


def check_client_events(engs):
    out = pusher_js("client", engs)
    expect_eq(out["private-chat"], {"data": {"hi": "private-chat"},
                                    "sender_saw": ["news"]}, "private")
    expect_eq(out["presence-chat"], {"data": {"hi": "presence-chat"},
                                     "user_id": "sender",
                                     "sender_saw": ["news"]}, "presence")


async def check_client_refusals(eng):
    """Client events: not on a public channel, not on one not joined,
    not for an app without them; answered pusher:error, still open."""
    ws, _ = await connected(eng)
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": {"channel": "pub"}}))
    await event(ws)
    for chan, what in (("pub", "public channel"),
                       ("private-not-joined", "channel not joined")):
        await ws.send(json.dumps({"event": "client-x", "channel": chan,
                                  "data": {}}))
        ev = await event(ws)
        expect_eq((ev["event"], ev["data"]["code"]), ("pusher:error", 4009),
                  what)
    await ws.close()
    ws, _ = await connected(eng, APP2["key"])
    await ws.send(json.dumps({"event": "client-x", "channel": "private-a",
                              "data": {}}))
    ev = await event(ws)
    expect("not enabled" in ev["data"]["message"], "app 2: %r", ev)
    await ws.send('{"event":"pusher:ping"}')
    expect_eq((await event(ws))["event"], "pusher:pong", "still open")
    await ws.close()


def channel_auth(app, sid, channel, channel_data=None):
    """The auth an app's endpoint signs (done here apart from the SDK)."""
    msg = "%s:%s" % (sid, channel) + (":" + channel_data if channel_data
                                      else "")
    return app["key"] + ":" + hmac.new(app["secret"].encode(), msg.encode(),
                                       hashlib.sha256).hexdigest()


def check_cache(engs):
    """Cache channels with pusher-js: cache_miss before any event, the
    last event to a later subscriber on another node, each after
    subscription_succeeded."""
    out = pusher_js("cache", engs)
    ok = "pusher:subscription_succeeded"
    for name in ("cache-c", "private-cache-c", "presence-cache-c"):
        expect_eq(out[name]["a"], [ok, "pusher:cache_miss", "state"],
                  "%s: the first subscriber's events" % name)
        expect_eq(out[name]["b"], [ok, "state"],
                  "%s: the later subscriber's events" % name)
        expect_eq(out[name]["data"], {"v": name}, "%s: the event" % name)


def check_watchlist(engs):
    """pusher-js's user.watchlist: those online at sign-in, then one
    coming online and going offline, on the other node."""
    out = pusher_js("watchlist", engs)
    expect_eq(out["seen"], [["online", ["wc"]], ["online", ["wb"]],
                            ["offline", ["wb"]]], "watchlist events")


def signin_msg(hello, uid, watchlist=None, **more):
    """pusher:signin as @uid (watching @watchlist, with @more fields in
    its user data), signed as an app's user endpoint signs it."""
    ud = dict(id=uid, **more)
    if watchlist is not None:
        ud["watchlist"] = watchlist
    ud = json.dumps(ud)
    sig = hmac.new(APP["secret"].encode(), ("%s::user::%s" % (
        hello["socket_id"], ud)).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"event": "pusher:signin", "data": {
        "auth": APP["key"] + ":" + sig, "user_data": ud}})


async def signin(ws, hello, uid, watchlist=None):
    await ws.send(signin_msg(hello, uid, watchlist))


async def check_watchlist_limit(eng):
    """A watchlist of 101 ids: signed in all the same, pusher:error 4302
    for the watchlist, the connection still open."""
    ws, hello = await connected(eng)
    await signin(ws, hello, "wx", [str(i) for i in range(101)])
    got = {}
    for _ in range(2):
        ev = await event(ws)
        got[ev["event"]] = ev["data"]
    expect_eq(sorted(got), ["pusher:error", "pusher:signin_success"],
              "the answers to the signin")
    expect_eq(got["pusher:error"]["code"], 4302, "the watchlist's error")
    await ws.send('{"event":"pusher:ping"}')
    expect_eq((await event(ws))["event"], "pusher:pong", "still open")
    await ws.close()


async def check_signin_queue_full(eng):
    """--shards 1 --max-pending-bytes 600: a second connection of a
    watching user, whose channels are all registered already, sends a
    ping and its signin in one write; its signin_success, behind the
    pong, finds the queue over the bound: closed as a slow consumer
    (1008), the engine up (it used the dropped frame again), the
    first connection still served."""
    a, hello = await connected(eng)
    await signin(a, hello, "qf", ["qw"])
    expect_eq((await event(a))["event"], "pusher:signin_success", "a in")
    b, hello = await connected(eng)
    b.transport.write(rc.build_frame(1, '{"event":"pusher:ping"}') +
                      rc.build_frame(1, signin_msg(hello, "qf", ["qw"],
                                                   pad="p" * 800)))
    for _ in range(3):	# the pong may come before the close
        try:
            await rc.ws_recv(b)
        except websockets.ConnectionClosed:
            break
    expect_eq(b.close_code, 1008, "b's close, over --max-pending-bytes")
    await a.send('{"event":"pusher:ping"}')
    expect_eq((await event(a))["event"], "pusher:pong", "a still served")
    await a.close()


async def cache_replay(eng, chan):
    """A new subscriber of @chan on @eng: the event after its
    subscription_succeeded (None for a plain channel's nothing)."""
    ws, _ = await connected(eng)
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": {"channel": chan}}))
    expect_eq((await event(ws))["event"],
              "pusher_internal:subscription_succeeded", "subscribed")
    await ws.send('{"event":"pusher:ping"}')
    ev = await event(ws)
    await ws.close()
    return None if ev["event"] == "pusher:pong" else ev


async def check_cache_ttl(engs):
    """--pusher-cache-ttl 1s: the event is replayed on the other node,
    then, once expired, cache_miss; a plain channel replays nothing."""
    for chan in ("cache-ttl", "plain-ttl"):
        status, _ = trigger(engs[-1], {"name": "s", "channel": chan,
                                       "data": "{\"v\":1}"})
        expect_eq(status, 200, "publish to %s" % chan)
    expect_eq(await cache_replay(engs[0], "plain-ttl"), None,
              "a plain channel's subscriber")
    ev = await cache_replay(engs[0], "cache-ttl")
    expect_eq(ev, {"event": "s", "channel": "cache-ttl", "data": '{"v":1}'},
              "replayed")
    deadline = time.monotonic() + 30
    while ev["event"] != "pusher:cache_miss":
        expect(time.monotonic() < deadline, "still cached after 30 s: %r",
               ev)
        await asyncio.sleep(0.2)
        ev = await cache_replay(engs[0], "cache-ttl")


async def client_refusals(eng, chan, n):
    """Sends @n client events at once on @chan; how many got 4301 (the
    others none, the connection still open)."""
    ws, hello = await connected(eng)
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
        "channel": chan,
        "auth": channel_auth(APP, hello["socket_id"], chan)}}))
    expect_eq((await event(ws))["event"],
              "pusher_internal:subscription_succeeded", "subscribed")
    for i in range(n):
        await ws.send(json.dumps({"event": "client-x", "channel": chan,
                                  "data": {"i": i}}))
    await ws.send('{"event":"pusher:ping"}')
    refused = 0
    for _ in range(n + 1):
        ev = await event(ws)
        if ev["event"] == "pusher:pong":
            break
        expect_eq((ev["event"], ev["data"]["code"]), ("pusher:error", 4301),
                  "answer to a client event")
        refused += 1
    await ws.close()
    return refused


async def check_client_rate(eng):
    """Over 10 client events a second: pusher:error 4301 for those
    dropped, and the connection stays."""
    refused = await client_refusals(eng, "private-rate", 200)
    expect(refused >= 1, "200 client events at once, none refused")


async def check_keepalive(eng):
    """--pusher-activity-timeout 1s: activity_timeout 1, then our
    pusher:ping after a second of silence; a client that answers it stays
    (it gets the next ping), one that does not is closed with 4201."""
    answers, _ = await connected(eng)
    silent, hello = await connected(eng)
    expect_eq(hello["activity_timeout"], 1, "activity_timeout")
    for ws in (answers, silent):
        expect_eq((await event(ws))["event"], "pusher:ping", "our ping")
    await answers.send('{"event":"pusher:pong","data":{}}')
    code, _ = await rc.ws_await_close(silent)
    expect_eq(code, 4201, "no pong: the close")
    expect_eq((await event(answers))["event"], "pusher:ping",
              "the client that answered: pinged again, still open")
    await answers.close()


async def check_rate_option(eng):
    """--pusher-client-event-rate 42=3: of 10 client events sent at once,
    at most 6 pass (two windows of a second), the rest get 4301."""
    refused = await client_refusals(eng, "private-rate3", 10)
    expect(refused >= 4, "10 client events at a rate of 3: %d refused",
           refused)


def check_stop_with_members(eng):
    """Presence members still connected when the engine stops: it stops
    cleanly (the with block checks its exit status)."""
    async def join():
        cd = json.dumps({"user_id": "stays"})
        for _ in range(2):
            ws, hello = await connected(eng)
            await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
                "channel": "presence-stop", "channel_data": cd,
                "auth": channel_auth(APP, hello["socket_id"],
                                     "presence-stop", cd)}}))
            ev = await event(ws)
            expect_eq(ev["event"], "pusher_internal:subscription_succeeded",
                      "joined")
            held.append(ws)
    held = []
    loop = asyncio.new_event_loop()
    loop.run_until_complete(join())
    eng.stop()
    loop.close()


def check_user(engs):
    out = pusher_js("user", engs)
    expect_eq(out, {"channel": "#server-to-user-u9", "data": {"x": 1},
                    "id": "u9"}, "signin and sendToUser")


def check_bad_signin(engs):
    out = pusher_js("badsignin", engs)
    codes = [(e.get("type"), (e.get("data") or e.get("error", {}).get("data")
                              or {}).get("code")) for e in out["errors"]]
    expect(("PusherError", 4009) in codes, "no pusher:error 4009: %s",
           codes)
    expect_eq(codes[-1], ("WebSocketError", 4009), "the close")
    expect_eq(out["state"], "disconnected", "pusher-js's state")


async def check_user_channel_refused(eng):
    """#server-to-user-{id}: only for the user signed in as {id}."""
    ws, _ = await connected(eng)
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": {"channel": "#server-to-user-u9"}}))
    ev = await event(ws)
    expect_eq((ev["event"], ev["data"]["status"]),
              ("pusher:subscription_error", 401), "not signed in")
    await ws.close()


def check_bad_auth(engs):
    err = pusher_js("badauth", engs)["error"]
    expect_eq((err.get("type"), err.get("status")), ("AuthError", 401),
              "subscription_error")


def check_unknown_key(engs):
    out = pusher_js("unknownkey", engs)
    expect_eq(out["error"]["data"]["code"], 4001, "close code")
    expect_eq(out["state"], "disconnected", "pusher-js's state")
    expect("unavailable" not in out["states"], "pusher-js retried: %s",
           out["states"])


async def check_ws_protocol(eng):
    ws, hello = await connected(eng)
    expect(hello["activity_timeout"] > 0, "activity_timeout %r", hello)
    await ws.send('{"event":"pusher:ping","data":{}}')
    expect_eq((await event(ws))["event"], "pusher:pong", "pong")
    # data as a JSON string, as the protocol page shows it
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": json.dumps({"channel": "s-1"})}))
    ev = await event(ws)
    expect_eq((ev["event"], ev["channel"]),
              ("pusher_internal:subscription_succeeded", "s-1"), "subscribe")
    for bad in ("{", "[1]", '{"event":1}', '{"data":{}}', "\u00e9"):
        await ws.send(bad)
        ev = await event(ws)
        expect_eq(ev["event"], "pusher:error", "answer to %r" % bad)
    # names the engine's alphabet lacks, or too long with the app's id:
    # hashed, yet delivered as named
    for name in ("x,y;z=@.", "L" * 164):
        await ws.send(json.dumps({"event": "pusher:subscribe",
                                  "data": {"channel": name}}))
        expect_eq((await event(ws))["channel"], name, "subscribed")
        status, _ = trigger(eng, {"name": "h", "channel": name, "data": "!"})
        expect_eq(status, 200, "publish to %s" % name[:10])
        expect_eq(json.loads(await rc.ws_recv(ws)),
                  {"event": "h", "channel": name, "data": "!"}, name[:10])
    long_name = "c" * 165
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": {"channel": long_name}}))
    ev = await event(ws)
    expect_eq((ev["event"], ev["data"]["status"]),
              ("pusher:subscription_error", 400), "165-byte channel")
    # private- without an auth, and one with another app's key
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": {"channel": "private-p"}}))
    expect_eq((await event(ws))["data"]["type"], "AuthError", "no auth")
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
        "channel": "presence-p", "auth": APP["key"] + ":" + "0" * 64,
        "channel_data": '{"user_id":"1"}'}}))
    expect_eq((await event(ws))["data"]["status"], 401, "bad presence sig")
    # still open, still subscribed: an HTTP publish reaches it
    status, _ = trigger(eng, {"name": "e", "channel": "s-1", "data": "d"})
    expect_eq(status, 200, "publish")
    ev = json.loads(await rc.ws_recv(ws))
    expect_eq(ev, {"event": "e", "channel": "s-1", "data": "d"}, "event")
    await ws.send(json.dumps({"event": "pusher:unsubscribe",
                              "data": {"channel": "s-1"}}))
    await ws.send('{"event":"pusher:ping"}')
    expect_eq((await event(ws))["event"], "pusher:pong", "pong after")
    status, _ = trigger(eng, {"name": "e", "channel": "s-1", "data": "2"})
    await ws.send('{"event":"pusher:ping"}')
    expect_eq((await event(ws))["event"], "pusher:pong",
              "nothing but the pong after unsubscribing")
    await ws.close()


async def check_raw_close_codes(eng):
    for path, code in (("/app/nope?protocol=7", 4001),
                       ("/app/%s" % APP["key"], 4008),
                       ("/app/%s?protocol=3" % APP["key"], 4007)):
        ws = await rc.ws_connect(eng.url(path))
        got, _ = await rc.ws_await_close(ws)
        expect_eq(got, code, path)


async def check_apps_apart(eng):
    """The same channel name in two apps: two channels."""
    a, _ = await connected(eng, APP["key"])
    b, _ = await connected(eng, APP2["key"])
    for ws in (a, b):
        await ws.send(json.dumps({"event": "pusher:subscribe",
                                  "data": {"channel": "same"}}))
        await event(ws)
    expect_eq(trigger(eng, {"name": "e", "channel": "same", "data": "2"},
                      app=APP2)[0], 200, "publish to app 2")
    ev = json.loads(await rc.ws_recv(b))
    expect_eq(ev["data"], "2", "app 2's client")
    expect_eq(trigger(eng, {"name": "e", "channel": "same", "data": "1"})[0],
              200, "publish to app 1")
    ev = json.loads(await rc.ws_recv(a))
    expect_eq(ev["data"], "1", "app 1's client got its own app's first")
    # app 2's client got nothing of app 1: its next message is a pong
    await b.send('{"event":"pusher:ping"}')
    expect_eq((await event(b))["event"], "pusher:pong", "app 2 after")
    await a.close()
    await b.close()
    # a /ws client cannot name a Pusher channel's engine name
    ws = await rc.ws_connect(eng.url("/ws"))
    await ws.send(rc.push_cmd("subscribe", seq=1, channels=["!p:42:same"]))
    got = json.loads(await rc.ws_recv(ws))
    expect_eq(got["code"], 400, "/ws subscribing to a Pusher channel")
    await ws.close()


async def check_socket_id_skipped(engs):
    """A publish with a socket_id reaches every subscriber but that one,
    on both nodes; the frame sent holds no trace of it."""
    a, ha = await connected(engs[0])
    b, hb = await connected(engs[1])
    for ws in (a, b):
        await ws.send(json.dumps({"event": "pusher:subscribe",
                                  "data": {"channel": "skip-me"}}))
        await event(ws)
    doc = {"name": "e", "channel": "skip-me", "data": "1",
           "socket_id": ha["socket_id"]}
    expect_eq(trigger(engs[1], doc)[0], 200, "publish skipping a")
    got = await rc.ws_recv(b)
    expect_eq(json.loads(got), {"event": "e", "channel": "skip-me",
                                "data": "1"}, "b's event")
    doc.update(data="2", socket_id=hb["socket_id"])
    expect_eq(trigger(engs[1], doc)[0], 200, "publish skipping b")
    expect_eq(json.loads(await rc.ws_recv(a))["data"], "2",
              "a's first event is the one that skipped b")
    await a.close()
    await b.close()


def check_api_refusals(eng):
    body = json.dumps({"name": "e", "channel": "c", "data": "x"}).encode()
    path = "/apps/%s/events" % APP["id"]
    old = int(time.time()) - 660   # the unit test has the 601 s edge
    q = signed(APP, "POST", path, body, ts=old)
    expect_eq(rc.api(eng, "POST", path + "?" + q, body)[0], 401,
              "replayed after 600 s")
    expect_eq(trigger(eng, body, secret="wrong")[0], 401, "wrong secret")
    q = signed(APP, "POST", path, body)
    expect_eq(rc.api(eng, "POST", path + "?" + q, body + b" ")[0], 401,
              "body changed (body_md5)")
    expect_eq(trigger(eng, body, app=dict(APP, id="nope"))[0], 404,
              "unknown app")
    for doc, status, what in (
            (b"{", 400, "malformed JSON"),
            ({"name": "e" * 201, "channel": "c", "data": "x"}, 400,
             "201-byte event name"),
            ({"name": "e", "channel": "c" * 165, "data": "x"}, 400,
             "165-byte channel"),
            ({"name": "e", "channel": "c", "data": "x" * 10241}, 413,
             "10,241-byte data"),
            ({"name": "e", "channel": "c", "data": {"o": 1}}, 400,
             "data not a string"),
            ({"name": "e", "channel": "c", "data": "x",
              "socket_id": "1.x"}, 400, "bad socket_id")):
        expect_eq(trigger(eng, doc)[0], status, what)
    expect_eq(trigger(eng, {"name": "e", "channel": "c",
                            "data": "x" * 10240})[0], 200, "10,240 bytes")
    chans = ["c%d" % i for i in range(101)]
    expect_eq(trigger(eng, {"name": "e", "channels": chans, "data": "x"})[0],
              400, "101 channels")
    expect_eq(trigger(eng, {"name": "e", "channels": chans[:100],
                            "data": "x"})[0], 200, "100 channels")
    expect_eq(trigger(eng, {"name": "e", "channels": [], "data": "x"})[0],
              400, "no channel")


async def check_presence_byte(eng):
    """Presence channel_data changed by one byte after it was signed:
    subscription_error 401, the connection still open."""
    ws, hello = await connected(eng)
    chan, cd = "presence-byte", json.dumps({"user_id": "u1"})
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
        "channel": chan, "channel_data": cd.replace("u1", "u2"),
        "auth": channel_auth(APP, hello["socket_id"], chan, cd)}}))
    ev = await event(ws)
    expect_eq((ev["event"], ev["data"]["type"], ev["data"]["status"]),
              ("pusher:subscription_error", "AuthError", 401),
              "channel_data changed by one byte")
    await ws.send('{"event":"pusher:ping"}')
    expect_eq((await event(ws))["event"], "pusher:pong", "still open")
    await ws.close()


def check_api_timestamps(eng):
    """auth_timestamp: 660 s ahead is refused like 660 s behind; the
    same signed request sent twice within the window is taken twice,
    as Pusher does (an SDK's retry; SECURITY.md)."""
    body = json.dumps({"name": "e", "channel": "c", "data": "x"}).encode()
    path = "/apps/%s/events" % APP["id"]
    q = signed(APP, "POST", path, body, ts=int(time.time()) + 660)
    expect_eq(rc.api(eng, "POST", path + "?" + q, body)[0], 401,
              "660 s in the future")
    q = signed(APP, "POST", path, body)
    for i in range(2):
        expect_eq(rc.api(eng, "POST", path + "?" + q, body)[0], 200,
                  "the same request, sent %d times" % (i + 1))


async def check_max_data(eng):
    """--pusher-max-data 10000: 10,001 bytes of data are 413 from the
    HTTP API and pusher:error from a client; 10,000 pass."""
    expect_eq(trigger(eng, {"name": "e", "channel": "c",
                            "data": "x" * 10001})[0], 413, "10,001 bytes")
    expect_eq(trigger(eng, {"name": "e", "channel": "c",
                            "data": "x" * 10000})[0], 200, "10,000 bytes")
    ws, hello = await connected(eng)
    chan = "private-big"
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
        "channel": chan,
        "auth": channel_auth(APP, hello["socket_id"], chan)}}))
    expect_eq((await event(ws))["event"],
              "pusher_internal:subscription_succeeded", "subscribed")
    await ws.send(json.dumps({"event": "client-x", "channel": chan,
                              "data": "x" * 9999}))
    ev = await event(ws)
    expect_eq((ev["event"], ev["data"]["code"]), ("pusher:error", 4009),
              "a client event of 10,001 bytes of data")
    await ws.close()


def batch(eng, events, app=APP, whole=False):
    body = json.dumps({"batch": events}).encode()
    path = "/apps/%s/batch_events" % app["id"]
    got = rc.api(eng, "POST", path + "?" + signed(app, "POST", path, body),
                 body)
    return got if whole else got[0]


def check_api_answers(eng):
    """Answers as Pusher's: {} for a publish to one channel or many and
    for a batch."""
    for doc in ({"name": "e", "channel": "a", "data": "1"},
                {"name": "e", "channels": ["a", "b", "c"], "data": "1"}):
        expect_eq(trigger(eng, doc), (200, {}), "events %s" % doc)
    ev = {"name": "e", "channel": "a", "data": "1"}
    expect_eq(batch(eng, [ev, dict(ev, channel="b")], whole=True), (200, {}),
              "batch_events")


async def check_batch(eng):
    """A batch is checked whole before any event goes: one bad event,
    or more than 10, and none is published."""
    ws, _ = await connected(eng)
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": {"channel": "b"}}))
    await event(ws)
    good = {"name": "e", "channel": "b", "data": "bad batch"}
    expect_eq(batch(eng, [good, dict(good, channel="#x")]), 400,
              "a bad channel in a batch")
    expect_eq(batch(eng, [good] * 11), 400, "11 events")
    expect_eq(batch(eng, []), 400, "no event")
    expect_eq(batch(eng, [dict(good, data="x" * 10241)]), 413, "10 KB")
    expect_eq(batch(eng, [dict(good, data=str(i)) for i in range(10)]), 200,
              "10 events")
    for i in range(10):
        ev = json.loads(await rc.ws_recv(ws))
        expect_eq(ev["data"], str(i), "event %d of the batch" % i)
    await ws.close()


async def check_answered_delivered(eng):
    """An event answered 200 was sequenced on each of its channels,
    whichever shard owns it: published again after that answer, every
    channel's subscriber gets both events, in that order."""
    chans = ["answered%d" % i for i in range(4)]
    ws, _ = await connected(eng)
    for ch in chans:
        await ws.send(json.dumps({"event": "pusher:subscribe",
                                  "data": {"channel": ch}}))
        ev = await event(ws)
        expect_eq(ev["event"], "pusher_internal:subscription_succeeded",
                  "subscribe to %s" % ch)
    for i in range(2):
        expect_eq(trigger(eng, {"name": "e", "channels": chans,
                                "data": str(i)}), (200, {}), "event %d" % i)
    got = {ch: [] for ch in chans}
    for _ in range(2 * len(chans)):
        ev = json.loads(await rc.ws_recv(ws))
        got[ev["channel"]].append(ev["data"])
    expect_eq(got, {ch: ["0", "1"] for ch in chans}, "events per channel")
    await ws.close()


def check_queries(engs):
    """The SDK's get() of /channels, /channels/{name} and its /users:
    every node's subscribers counted (with Redis), a prefix filtered,
    user_count and the users of a presence channel, an unsubscribe and
    the closes seen."""
    # a cluster counts per node, so far (docs/PUSHER.md): one node there
    out = pusher_js("queries", engs[:1] if rc.only_on("cluster") else engs)
    names = lambda doc: sorted(n for n in doc[1]["channels"]
                               if n.startswith("q") or n == "private-q")
    expect_eq(out["all"][0], 200, "GET channels")
    expect_eq(names(out["all"]), ["private-q", "q-other", "q-room"],
              "occupied channels")
    counts = out["counts"][1]["channels"]
    expect_eq((counts["q-room"], counts["q-other"]),
              ({"subscription_count": 2}, {"subscription_count": 1}),
              "subscription counts")
    # other checks' channels may be open still, on either node
    priv = out["priv"][1]["channels"]
    expect_eq((out["priv"][0], priv.get("private-q"),
               [n for n in priv if not n.startswith("private-")]),
              (200, {}, []), "filter_by_prefix")
    expect_eq(out["one"], [200, {"occupied": True,
                                 "subscription_count": 2}], "one channel")
    expect_eq(out["plain"], [200, {"occupied": True}], "without info")
    expect_eq(out["users"][0], 400, "user_count without presence-")
    expect_eq(out["pone"], {"occupied": True, "user_count": 2,
                            "subscription_count": 2}, "a presence channel")
    expect_eq((out["pusers"][0], sorted(u["id"] for u in
                                         out["pusers"][1]["users"])),
              (200, ["u1", "u2"]), "its users")
    expect_eq((out["plist"][0], out["plist"][1]["channels"].get("presence-q")),
              (200, {"user_count": 2}), "user_count in a listing")
    expect_eq(out["nousers"][0], 400, "users of a public channel")
    expect_eq(out["pinfo"], [200, {"channels": {
        "presence-q": {"user_count": 2, "subscription_count": 2},
        "q-room": {"subscription_count": 2}}}],
        "a publish's info: user_count for the presence channel only")
    expect_eq(out["after"], {"occupied": True, "subscription_count": 1},
              "after an unsubscribe")
    expect_eq(names([200, out["gone"]]), [], "after the closes")
    expect_eq(out["none"], [200, {"occupied": False}], "unoccupied")


def check_terminate(engs):
    out = pusher_js("terminate", engs)
    expect_eq(out["status"], 200, "terminateUserConnections")
    expect_eq(out["states"], ["disconnected", "disconnected", "connected"],
              "u7's two connections closed (one per node), u8's not")
    expect(out["codes"] and set(out["codes"]) == {4009},
           "pusher:error and close codes: %s", out["codes"])


def check_sub_count(engs):
    """--pusher-subscription-count: pusher-js's channel.subscriptionCount
    follows joins and leaves; a burst is sent as fewer messages than
    changes (at most one a second a channel)."""
    out = pusher_js("subcount", engs)
    expect_eq((out["first"], out["joined"], out["left"]), (1, 4, 1),
              "counts seen")
    expect(out["sent"] < 7, "7 changes, %d counts sent: none coalesced",
           out["sent"])


def check_query_refusals(eng):
    """GET queries and terminate are signed like the rest; the wrong
    method is 405."""
    path = "/apps/%s/channels" % APP["id"]
    old = int(time.time()) - 660
    expect_eq(rc.api(eng, "GET", path + "?" + signed(
        APP, "GET", path, b"", ts=old))[0], 401, "replayed after 600 s")
    expect_eq(rc.api(eng, "GET", path + "?" + signed(
        APP, "GET", path, b"", secret="wrong"))[0], 401, "wrong secret")
    expect_eq(rc.api(eng, "GET", path)[0], 401, "unsigned")
    expect_eq(rc.api(eng, "POST", path + "?" + signed(
        APP, "POST", path, b""), b"")[0], 405, "POST")
    term = "/apps/%s/users/u1/terminate_connections" % APP["id"]
    expect_eq(rc.api(eng, "POST", term, b"{}")[0], 401, "terminate unsigned")
    expect_eq(rc.api(eng, "GET", term + "?" + signed(
        APP, "GET", term, b""))[0], 405, "terminate with GET")
    bad = "/apps/%s/channels/%s" % (APP["id"], "c" * 165)
    expect_eq(rc.api(eng, "GET", bad + "?" + signed(
        APP, "GET", bad, b""))[0], 400, "165-byte name")


def occupied(eng, ch):
    """Whether GET channels/{@ch} says it is occupied."""
    path = "/apps/%s/channels/%s" % (APP["id"], ch)
    return rc.api(eng, "GET", path + "?" + signed(APP, "GET", path, b""))[
        1].get("occupied")


async def check_info(eng):
    """info=subscription_count in events and batch_events: the counts in
    the answer, as Pusher's (with Redis every node's, once written)."""
    ws, _ = await connected(eng)
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": {"channel": "inf"}}))
    await event(ws)
    await rc.await_state("inf counted", lambda: occupied(eng, "inf"))
    ev = {"name": "e", "channel": "inf", "data": "1",
          "info": "subscription_count"}
    expect_eq(trigger(eng, ev), (200, {"channels": {
        "inf": {"subscription_count": 1}}}), "one channel with info")
    many = {"name": "e", "channels": ["inf", "nobody"], "data": "1",
            "info": "subscription_count"}
    expect_eq(trigger(eng, many), (200, {"channels": {
        "inf": {"subscription_count": 1},
        "nobody": {"subscription_count": 0}}}), "two channels with info")
    plain = {"name": "e", "channel": "inf", "data": "1"}
    expect_eq(batch(eng, [ev, plain], whole=True),
              (200, {"batch": [{"subscription_count": 1}, {}]}),
              "batch with info")
    await ws.close()


def check_partial_failure(run):
    """A publish to three channels of which Redis refuses the first (an
    ACL user may PUBLISH only to channels not ending in X): the failure
    is told (503), though the last was published; a batch likewise."""
    import redisd
    with redisd.Redis() as r:
        r.command("ACL", "SETUSER", "rc", "on", ">pw", "+@all", "-publish",
                  "~*", "&*", "(+publish &*[^X])")
        url = r.url.replace("redis://", "redis://rc:pw@")
        with rc.Engine(run.exe, "--redis", url, *engine_args()) as eng:
            rc.wait_until("up", lambda: rc.api(eng, "GET",
                                               "/healthz")[0] == 200)
            ok = {"name": "e", "channel": "ok", "data": "1"}
            expect_eq(trigger(eng, ok), (200, {}), "a channel Redis takes")
            status, doc = trigger(eng, {"name": "e", "data": "1",
                                        "channels": ["noX", "a", "b"]})
            expect_eq(status, 503, "the first of three refused: %r" % doc)
            expect("1 of 3" in doc["error"], "says how many: %r", doc)
            status, doc = batch(eng, [dict(ok, channel="noX"), ok],
                                whole=True)
            expect_eq(status, 503, "the first of a batch refused: %r" % doc)


def check_options(run):
    exe = run.exe

    def refused(args, env=None, words=()):
        p = subprocess.run([exe, "--listen", "127.0.0.1:0"] + args,
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, **(env or {})))
        expect(p.returncode != 0, "%s started", args)
        for w in words:
            expect(w in p.stderr, "%r not in %r", w, p.stderr)
        expect("s3cret" not in p.stderr and "Xsecret" not in p.stderr,
               "a secret in %r", p.stderr)
        return p.stderr

    refused(["--pusher-app", "1:k:s3cret:x"])
    refused(["--pusher-app", "1:k:s3cret", "--pusher-app", "1:k2:s3cret"],
            words=["given twice"])
    refused(["--pusher-client-events", "9", "--pusher-app", SPEC % APP],
            words=["no app has this ID"])
    refused(["--pusher-subscription-count", "9", "--pusher-app",
             SPEC % APP], words=["--pusher-subscription-count 9",
                                 "no app has this ID"])
    refused(["--pusher-app", SPEC % APP, "--pusher-client-event-rate",
             "9=3"], words=["no app has this ID"])
    refused(["--pusher-app", SPEC % APP, "--pusher-watchlist", "9"],
            words=["--pusher-watchlist 9", "no app has this ID"])
    for rate in ("42=0", "42=256", "42", "42=x", "42=3s"):
        refused(["--pusher-app", SPEC % APP, "--pusher-client-event-rate",
                 rate], words=["--pusher-client-event-rate " + rate])
    for bad in ("0", "2M", "x"):
        refused(["--pusher-app", SPEC % APP, "--pusher-max-data", bad],
                words=["--pusher-max-data"])
    for bad in ("0", "500ms", "25h"):
        refused(["--pusher-app", SPEC % APP, "--pusher-cache-ttl", bad],
                words=["--pusher-cache-ttl"])
    for opt in ("--pusher-activity-timeout", "--pusher-pong-timeout"):
        for bad in ("0", "1500ms", "25h"):
            refused(["--pusher-app", SPEC % APP, opt, bad],
                    words=["whole seconds"])
    refused([], env={"RINGCAST_PUSHER_APPS": "1:k:s3cret\n2:k:Xsecret"},
            words=["RINGCAST_PUSHER_APPS, line 2"])
    with tempfile.NamedTemporaryFile("w", suffix=".apps") as f:
        f.write("# apps\n%s\n7:k7:Xsecret!\n" % (SPEC % APP))
        f.flush()
        refused(["--pusher-apps-file", f.name], words=[f.name + ", line 3"])
    refused(["--pusher-apps-file", "/nonexistent/apps"],
            words=["No such file"])


async def check_sources(eng):
    """Apps from the variable and the file are served."""
    for key in ("key-env", "key-file", APP["key"]):
        ws, hello = await connected(eng, key)
        expect("socket_id" in hello, "hello for %s" % key)
        await ws.close()


def body(run):
    run.check("options: bad apps refused, secrets unsaid", check_options,
              run)
    with run.section(), rc.nodes(run.exe, *engine_args()) as engs:
        run.check("pusher-js and the pusher SDK: public, private, presence",
                  check_official_clients, engs)
        run.check("pusher-js presence on one node: members, first join, "
                  "last leave", check_presence, engs)
        run.check("pusher-js cache channels: cache_miss, then the last "
                  "event, on every node", check_cache, engs)
        run.check("pusher-js watchlists: online at sign-in, then online "
                  "and offline, on every node", check_watchlist, engs)
        run.check("a watchlist of 101 ids: 4302, signed in, still open",
                  check_watchlist_limit, engs[0])
        run.check("pusher-js client events, to the other node",
                  check_client_events, engs)
        run.check("client events refused: public, not joined, app off",
                  check_client_refusals, engs[0])
        run.check("client events over 10 a second: 4301, still open",
                  check_client_rate, engs[0])
        run.check("pusher-js signin, sendToUser from the other node",
                  check_user, engs)
        run.check("pusher-js signin with a bad signature: 4009",
                  check_bad_signin, engs)
        run.check("#server-to-user- refused when not signed in as it",
                  check_user_channel_refused, engs[0])
        run.check("pusher-js: bad signature -> subscription_error",
                  check_bad_auth, engs)
        run.check("pusher-js: unknown key -> 4001, no retry",
                  check_unknown_key, engs)
        run.check("protocol: ping, subscribe forms, errors, unsubscribe",
                  check_ws_protocol, engs[0])
        run.check("close codes of the upgrade", check_raw_close_codes,
                  engs[0])
        run.check("two apps' channels never meet", check_apps_apart,
                  engs[0])
        run.check("socket_id: all subscribers but that one",
                  check_socket_id_skipped, engs)
        run.check("batch_events: checked whole, then published",
                  check_batch, engs[0])
        run.check("HTTP API answers: {} as Pusher's", check_api_answers,
                  engs[-1])
        run.check("HTTP API: an event answered is delivered, in order",
                  check_answered_delivered, engs[0])
        run.check("info=subscription_count in events and batches",
                  check_info, engs[0])
        run.check("the SDK's get(): channels, one channel, counts",
                  check_queries, engs)
        run.check("terminateUserConnections: the user's, on every node",
                  check_terminate, engs)
        run.check("queries and terminate: signed, their method only",
                  check_query_refusals, engs[0])
        run.check("HTTP API refusals: replay, signature, sizes",
                  check_api_refusals, engs[0])
        run.check("HTTP API: auth_timestamp window both ways, a retry taken",
                  check_api_timestamps, engs[0])
        run.check("presence channel_data changed by one byte: 401",
                  check_presence_byte, engs[0])
    with run.section("max data"), rc.Engine(
            run.exe, *engine_args("--pusher-max-data", "10000")) as eng:
        run.check("--pusher-max-data 10000: 10,001 bytes refused",
                  check_max_data, eng)
    with run.section("queue full"), rc.Engine(
            run.exe, *engine_args("--shards", "1", "--max-pending-bytes",
                                  "600")) as eng:
        run.check("a signin_success over --max-pending-bytes: 1008, up",
                  check_signin_queue_full, eng)
    with run.section("cache ttl"), rc.nodes(
            run.exe, *engine_args("--pusher-cache-ttl", "1s")) as engs:
        run.check("--pusher-cache-ttl: replayed, then expired",
                  check_cache_ttl, engs)
    with run.section("subscription count"), rc.nodes(
            run.exe, *engine_args("--pusher-subscription-count", APP["id"]),
            count=1) as engs:
        run.check("pusher_internal:subscription_count, rate-limited",
                  check_sub_count, engs)
    if rc.BROKER == "redis":
        run.check("a failure on any channel is told, not the last's only",
                  check_partial_failure, run)
    with run.section("keep-alive"), rc.Engine(
            run.exe, "--pusher-app", SPEC % APP, "--pusher-client-events",
            APP["id"], "--pusher-activity-timeout", "1s",
            "--pusher-pong-timeout", "1s", "--pusher-client-event-rate",
            APP["id"] + "=3") as eng:
        run.check("pusher:ping after activity_timeout, 4201 without pong",
                  check_keepalive, eng)
        run.check("--pusher-client-event-rate 3: 4301 past it",
                  check_rate_option, eng)
    with run.section("stop"), rc.Engine(
            run.exe, "--pusher-app", SPEC % APP) as eng:
        run.check("stopping with presence members connected",
                  check_stop_with_members, eng)
    with tempfile.NamedTemporaryFile("w", suffix=".apps") as f:
        f.write("# comment\n7:key-file:c2VjcmV0  # trailing\n")
        f.flush()
        os.environ["RINGCAST_PUSHER_APPS"] = "6:key-env:abc"
        try:
            with run.section("sources"), rc.Engine(
                    run.exe, "--pusher-apps-file", f.name,
                    "--pusher-app", SPEC % APP) as eng:
                run.check("apps from the variable, the file, the option",
                          check_sources, eng)
        finally:
            del os.environ["RINGCAST_PUSHER_APPS"]


if __name__ == "__main__":
    rc.main("test_pusher", body)
