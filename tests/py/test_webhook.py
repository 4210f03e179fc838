# SPDX-License-Identifier: MIT
"""Webhooks (docs/PUSHER.md, webhook.h): a receiver of our own (Python's
http.server on a loopback port) records every request, and each one a
Pusher app got is validated by the official `pusher` SDK's WebHook class
(tests/js/pusher_webhook.mjs), which must also refuse it with a wrong
secret. On the embedded broker one node; on Redis two, where
channel_occupied and channel_vacated come once for a channel whatever
node its subscribers are on, member_added and member_removed once per
user, and a node killed with members on it yields their member_removed
(and its channels' channel_vacated) once, sent by the node that reaps it.
On a Redis Cluster two nodes too, for the member events so far (the
channel counts and the /ws protocol's webhooks are per node there).
Whether an event came only once is judged after a later event that the
same node sends (a sentinel channel's vacated), never after a sleep.
ringcast's own /ws protocol: --webhook, signed with X-Ringcast-Signature.
"""

import asyncio
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import tempfile
import threading

import jwtmint
import rc
from jwtmint import claims
from rc import expect, expect_eq
from test_pusher import APP, channel_auth, connected, event, \
    engine_args
from test_pusher_nodes import join_as

JS = os.path.join(rc.HERE, "..", "js", "pusher_webhook.mjs")
NATIVE_SECRET = "webhook-secret-0123456789abcdef"
JWT_SECRET = "webhook-jwt-secret-0123456789abcdef0123"
FAST = ["--webhook-window", "50ms", "--webhook-backoff", "50ms"]


class Receiver:
    """An HTTP server on a free loopback port recording each POST
    (headers with lower-case names, body) it answered 200; the first
    @fail requests get 500 instead, counted in self.failed."""

    def __init__(self, fail=0):
        self.got, self.failed, self.fail = [], 0, fail
        self.lock = threading.Lock()
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n).decode()
                with me.lock:
                    refuse = me.failed < me.fail
                    if refuse:
                        me.failed += 1
                    else:
                        me.got.append({"headers": {k.lower(): v for k, v in
                                                   self.headers.items()},
                                       "body": body})
                self.send_response(500 if refuse else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def requests(self):
        with self.lock:
            return list(self.got)

    def events(self):
        return [ev for r in self.requests()
                for ev in json.loads(r["body"])["events"]]

    def wait(self, what, pred):
        """Until @pred(events so far) holds; those events."""
        out = []

        def check():
            out[:] = self.events()
            return pred(out)
        try:
            rc.wait_until(what, check)
        except AssertionError as e:
            raise AssertionError("%s; events so far: %s" % (e, out[-20:]))
        return out


def pusher_validated(reqs):
    """Every request checked by the SDK's WebHook: valid with the app's
    secret, invalid with another; their events, in order."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(reqs, f)
        f.flush()
        p = subprocess.run(["node", JS, json.dumps(APP), f.name],
                           capture_output=True, text=True, timeout=120)
    expect(p.returncode == 0, "pusher_webhook.mjs: %s", p.stderr[-2000:])
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for i, r in enumerate(out):
        expect(r["valid"] and not r["forged"], "request %d: valid %s, "
               "with a wrong secret %s: %s", i, r["valid"], r["forged"],
               reqs[i])
        expect(r["time"] > 0, "request %d: time_ms %s", i, r["time"])
    for r in reqs:
        expect_eq(r["headers"].get("content-type"), "application/json",
                  "Content-Type")
        expect_eq(r["headers"].get("x-pusher-key"), APP["key"],
                  "X-Pusher-Key")
    return [ev for r in out for ev in r["events"]]


def named(evs, name, channel):
    return [e for e in evs if e["name"] == name and e["channel"] == channel]


async def subscribe(eng, ch):
    ws, hello = await connected(eng)
    await ws.send(json.dumps({"event": "pusher:subscribe",
                              "data": {"channel": ch}}))
    ev = await event(ws)
    expect_eq(ev["event"], "pusher_internal:subscription_succeeded",
              "subscribed to " + ch)
    return ws, hello


async def join(eng, uid, ch):
    return (await join_as(eng, uid, ch))[0]


sentinels = [0]


async def sentinel(engs, rcv):
    """A channel joined and left on each node, its vacated awaited: what
    the nodes sent before has come."""
    for eng in engs[:2]:
        sentinels[0] += 1
        ch = "wh-sentinel-%d" % sentinels[0]
        ws, _ = await subscribe(eng, ch)
        await ws.close()
        await asyncio.to_thread(rcv.wait, ch + " vacated", lambda evs:
                                named(evs, "channel_vacated", ch))


async def check_channels(engs, rcv):
    """A subscriber on each node, leaving one then the other: occupied
    once, vacated once, subscription_count following."""
    a, _ = await subscribe(engs[0], "wh-room")
    await asyncio.to_thread(rcv.wait, "occupied", lambda evs: named(
        evs, "channel_occupied", "wh-room"))
    b, _ = await subscribe(engs[1], "wh-room")
    await asyncio.to_thread(rcv.wait, "count 2", lambda evs: any(
        e.get("subscription_count") == 2
        for e in named(evs, "subscription_count", "wh-room")))
    await a.close()
    await asyncio.to_thread(rcv.wait, "count 1 again", lambda evs: [
        e["subscription_count"] for e in named(
            evs, "subscription_count", "wh-room")][-1:] == [1])
    expect_eq(named(rcv.events(), "channel_vacated", "wh-room"), [],
              "not vacated with one subscriber left")
    await b.close()
    await asyncio.to_thread(rcv.wait, "vacated", lambda evs: named(
        evs, "channel_vacated", "wh-room"))
    await sentinel(engs, rcv)
    evs = rcv.events()
    expect_eq((len(named(evs, "channel_occupied", "wh-room")),
               len(named(evs, "channel_vacated", "wh-room"))), (1, 1),
              "occupied and vacated, once each")
    expect_eq(named(evs, "channel_vacated", "wh-room")[0],
              {"name": "channel_vacated", "channel": "wh-room"},
              "the event as Pusher sends it")


async def check_members(engs, rcv):
    """User m1 on both nodes, m2 on one: member_added once per user, at
    the first connection; member_removed once, at the last."""
    ch = "presence-wh"
    a = await join(engs[0], "m1", ch)
    b = await join(engs[1], "m1", ch)
    c = await join(engs[1], "m2", ch)
    await asyncio.to_thread(rcv.wait, "m1 and m2 added", lambda evs: len(
        named(evs, "member_added", ch)) >= 2)
    await a.close()
    await c.close()
    await asyncio.to_thread(rcv.wait, "m2 removed", lambda evs: named(
        evs, "member_removed", ch))
    await b.close()
    await asyncio.to_thread(rcv.wait, "m1 removed", lambda evs: len(
        named(evs, "member_removed", ch)) >= 2)
    await sentinel(engs, rcv)
    evs = rcv.events()
    for name in ("member_added", "member_removed"):
        expect_eq(sorted(e["user_id"] for e in named(evs, name, ch)),
                  ["m1", "m2"], name + ", once per user")


async def check_client_event(engs, rcv):
    """A client event on a private channel: its webhook, once, with the
    sender's socket_id and the data as a string."""
    ch = "private-wh"
    socks = []
    for eng in engs[:2]:
        ws, hello = await connected(eng)
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
            "channel": ch, "auth": channel_auth(APP, hello["socket_id"],
                                                ch)}}))
        expect_eq((await event(ws))["event"],
                  "pusher_internal:subscription_succeeded", "joined " + ch)
        socks.append((ws, hello["socket_id"]))
    (a, sid), (b, _) = socks
    await a.send(json.dumps({"event": "client-typing", "channel": ch,
                             "data": {"who": "a"}}))
    expect_eq((await event(b))["event"], "client-typing", "b hears a")
    evs = await asyncio.to_thread(rcv.wait, "client_event", lambda evs:
                                  named(evs, "client_event", ch))
    got = named(evs, "client_event", ch)
    expect_eq(len(got), 1, "one client_event")
    expect_eq((got[0]["event"], json.loads(got[0]["data"]),
               got[0]["socket_id"]), ("client-typing", {"who": "a"}, sid),
              "client_event's fields")
    for ws, _ in socks:
        await ws.close()


async def check_node_dies(engs, rcv):
    """A node killed with members of a presence channel and the only
    subscriber of a channel: the other node's client hears member_removed
    once per user, and the webhooks member_removed and channel_vacated
    come once each, from the node that reaps it."""
    ch = "presence-wh-dead"
    a = await join(engs[0], "d1", ch)
    await join(engs[1], "d2", ch)
    await join(engs[1], "d2", ch)
    await join(engs[1], "d3", ch)
    counted = not rc.only_on("cluster")     # channels: per node there
    await subscribe(engs[1], "wh-dead")
    await asyncio.to_thread(rcv.wait, "members added", lambda evs: len(
        named(evs, "member_added", ch)) == 3 and (not counted or named(
            evs, "channel_occupied", "wh-dead")))
    added = 0
    while added < 2:    # d2's and d3's, to a: what comes next is news
        ev = await event(a)
        added += ev["event"] == "pusher_internal:member_added"
    engs[1].kill()
    gone = []
    while len(gone) < 2:    # within the heartbeat's expiry
        ev = await rc.ws_recv(a, timeout=60)
        ev = json.loads(ev)
        gone.append((ev["event"], json.loads(ev["data"])["user_id"]))
    expect_eq(sorted(gone), [("pusher_internal:member_removed", "d2"),
                             ("pusher_internal:member_removed", "d3")],
              "d2 and d3 gone with their node, once each")
    await asyncio.to_thread(rcv.wait, "reaped", lambda evs: len(named(
        evs, "member_removed", ch)) >= 2 and (not counted or named(
            evs, "channel_vacated", "wh-dead")))
    await sentinel(engs[:1], rcv)
    evs = rcv.events()
    expect_eq(sorted(e["user_id"] for e in named(evs, "member_removed", ch)),
              ["d2", "d3"], "member_removed webhooks, once per user")
    if counted:
        expect_eq(len(named(evs, "channel_vacated", "wh-dead")), 1,
                  "channel_vacated once")
    await a.close()


async def check_retries(engs, rcv):
    """A receiver that answers 500 three times, then 200: the events come
    all the same, and the failures are counted."""
    ws, _ = await subscribe(engs[0], "wh-retry")
    await ws.close()
    await asyncio.to_thread(rcv.wait, "vacated after the failures",
                            lambda evs: named(evs, "channel_vacated",
                                              "wh-retry"))
    expect_eq(rcv.failed, 3, "requests refused")
    evs = rcv.events()
    expect_eq((len(named(evs, "channel_occupied", "wh-retry")),
               len(named(evs, "channel_vacated", "wh-retry"))), (1, 1),
              "both events, after the retries")
    st = rc.stats(engs[0])["webhooks"]
    expect(st["failed"] >= 3 and st["retried"] >= 3 and st["dropped"] == 0,
           "/stats webhooks: %s", st)


async def check_down(engs, rcv):
    """A receiver that never takes one, no retry, a queue of one: events
    are dropped, counted in /stats and /metrics, and logged; the engine
    goes on serving."""
    for i in range(3):
        ws, _ = await subscribe(engs[0], "wh-down-%d" % i)
        await ws.close()
    # dropped from the full queue, and (once the sender has tried, which
    # on a busy host may come after the drops) a request failed
    st = await rc.await_state("events dropped and a send failed",
                              lambda: rc.stats(engs[0])["webhooks"],
                              lambda w: w["dropped"] >= 3 and w["failed"] >= 1)
    expect(st["sent"] == 0, "/stats webhooks: %s", st)
    status, text = rc.api(engs[0], "GET", "/metrics")
    expect(status == 200 and b"ringcast_webhook_events_dropped_total" in
           text, "/metrics: %s", text[:200])
    expect("webhook:" in engs[0].output() and "dropped" in
           engs[0].output(), "a log line: %s", engs[0].output()[-500:])
    ws, _ = await subscribe(engs[0], "wh-down-after")
    await ws.close()


async def checked(fn, engs, rcv):
    """@fn(@engs, @rcv), then every request so far validated by the
    SDK."""
    await fn(engs, rcv)
    await asyncio.to_thread(pusher_validated, rcv.requests())


def native_token(sub):
    return jwtmint.hs256(claims(sub, ttl=3600), JWT_SECRET)


async def native_sentinel(engs, rcv):
    """A /ws channel joined and left on each node, its vacated awaited."""
    for eng in engs[:2]:
        sentinels[0] += 1
        ch = "wh-native-s%d" % sentinels[0]
        ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
        await rc.ws_command(ws, "subscribe", 1, channels=[ch])
        await ws.close()
        await asyncio.to_thread(rcv.wait, ch + " vacated", lambda evs: [
            e for e in evs if e == {"name": "channel_vacated",
                                    "channel": ch}])


async def check_native(engs, rcv):
    """--webhook: user_online at a user's first connection, user_offline
    at its last; channel_occupied at a channel's first subscriber, on any
    node, channel_vacated when no node holds one; each once, each request
    signed with --webhook-secret."""
    hdrs = {"Authorization": "Bearer " + native_token("w1")}
    socks = [await rc.ws_connect(eng.url("/ws"), extra_headers=hdrs,
                                 ping_interval=None) for eng in engs[:2]]
    for ws in socks:
        await rc.ws_command(ws, "subscribe", 1, channels=["wh-native"])
    await asyncio.to_thread(rcv.wait, "online, occupied", lambda evs: [
        e for e in evs if e["name"] == "user_online"] and [
        e for e in evs if e["name"] == "channel_occupied"])
    await socks[0].close()
    await native_sentinel(engs, rcv)
    names = [e["name"] for e in rcv.events() if "w1" in e.values() or
             "wh-native" in e.values()]
    expect_eq(names, ["user_online", "channel_occupied"] if names[0] ==
              "user_online" else ["channel_occupied", "user_online"],
              "one connection left: still online and occupied")
    await socks[1].close()
    await asyncio.to_thread(rcv.wait, "offline, vacated", lambda evs: [
        e for e in evs if e["name"] == "user_offline"] and [
        e for e in evs if e == {"name": "channel_vacated",
                                "channel": "wh-native"}])
    await native_sentinel(engs, rcv)
    evs = rcv.events()
    expect_eq([e for e in evs if e.get("user_id") == "w1"],
              [{"name": "user_online", "user_id": "w1"},
               {"name": "user_offline", "user_id": "w1"}],
              "online and offline, once each")
    expect_eq([e for e in evs if e.get("channel") == "wh-native"],
              [{"name": "channel_occupied", "channel": "wh-native"},
               {"name": "channel_vacated", "channel": "wh-native"}],
              "occupied and vacated, once each")
    for r in rcv.requests():
        want = hmac.new(NATIVE_SECRET.encode(), r["body"].encode(),
                        hashlib.sha256).hexdigest()
        expect_eq(r["headers"].get("x-ringcast-signature"), want,
                  "X-Ringcast-Signature")
        expect(json.loads(r["body"])["time_ms"] > 0, "time_ms")


@contextlib.contextmanager
def receiving(run, *args, fail=0, count=2):
    """A Receiver (failing its first @fail requests) and nodes started
    with @args, which may name it as {url}."""
    rcv = Receiver(fail)
    try:
        with rc.nodes(run.exe, *(a.format(url=rcv.url) for a in args),
                      count=count) as engs:
            yield engs, rcv
    finally:
        rcv.close()


def body(run):
    hook = ("--pusher-webhook", "%s={url}" % APP["id"])
    with run.section(), receiving(run, *engine_args(*hook, *FAST)) as \
            (engs, rcv):
        for title, fn in (
                ("occupied and vacated once across nodes", check_channels),
                ("member_added and member_removed once per user",
                 check_members),
                ("client_event", check_client_event)):
            if fn is not check_channels or not rc.only_on("cluster"):
                run.check(title, checked, fn, engs, rcv)
        if not rc.only_on("embedded"):
            run.check("a node killed: member_removed and channel_vacated "
                      "once, from the reaper", checked, check_node_dies,
                      engs, rcv)
    with run.section(), receiving(run, *engine_args(
            *hook, "--webhook-window", "0", "--webhook-backoff", "50ms"),
            fail=3, count=1) as (engs, rcv):
        run.check("a failing receiver: retried, nothing lost", checked,
                  check_retries, engs, rcv)
    with run.section(), receiving(run, *engine_args(
            *hook, "--webhook-window", "0", "--webhook-retries", "0",
            "--webhook-queue", "1"), fail=10 ** 9, count=1) as (engs, rcv):
        run.check("a receiver down: dropped, counted, logged", check_down,
                  engs, rcv)
    with run.section(), receiving(
            run, "--auth", "optional", "--jwt-secret", JWT_SECRET,
            "--webhook", "{url}", "--webhook-secret", NATIVE_SECRET,
            *FAST) as (engs, rcv):
        if not rc.only_on("cluster"):   # per node there, so far
            run.check("--webhook: the /ws protocol's events, signed",
                      check_native, engs, rcv)


if __name__ == "__main__":
    rc.main("test_webhook", body)
