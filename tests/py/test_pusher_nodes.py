# SPDX-License-Identifier: MIT
"""Pusher presence across nodes (issue 26, docs/PUSHER.md): with one
Redis or a Redis Cluster, two nodes share a presence channel's members. The list in
subscription_succeeded holds every node's members; member_added goes out
once, to every node's subscribers, at a user's first connection on any
node, and member_removed at its last, also when the node holding it is
killed (its members expire with its heartbeat), and a watchlist's
online and offline (its user's node killed). Whether an event did
not come is judged by a sentinel published after it: Redis delivers a
channel's messages in order, so anything sent before the sentinel
arrives before it."""

import asyncio
import json

import websockets

import rc
from rc import expect, expect_eq
from test_pusher import APP, channel_auth, connected, engine_args, event, \
    signed, signin, trigger

CH = "presence-nodes"


async def join(eng, uid):
    """A connection to @eng joined to CH as @uid; (ws, members seen)."""
    return await join_as(eng, uid, CH)


async def join_as(eng, uid, ch):
    ws, hello = await connected(eng)
    cd = json.dumps({"user_id": uid, "user_info": {"n": uid}})
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
        "channel": ch, "channel_data": cd,
        "auth": channel_auth(APP, hello["socket_id"], ch, cd)}}))
    while True:
        ev = await event(ws)
        if ev["event"] == "pusher_internal:subscription_succeeded":
            return ws, ev["data"]["presence"]


sentinels = [0]


async def until_sentinel(ws, eng):
    """What @ws receives before a sentinel event published on @eng."""
    sentinels[0] += 1
    tag = "s%d" % sentinels[0]
    status, _ = trigger(eng, {"name": "sentinel", "channel": CH,
                              "data": tag})
    expect_eq(status, 200, "sentinel published")
    got = []
    for _ in range(100):
        ev = await event(ws)
        if ev["event"] == "sentinel":
            if ev["data"] == tag:
                return got
            continue    # an earlier one, for another connection
        got.append((ev["event"].split(":")[-1], ev["data"].get("user_id")))
    raise AssertionError("no sentinel after %r" % got)


def pres_count(uid):
    """User @uid's connections in CH on every node, as Redis holds them."""
    srv = rc.broker()
    rch = "ringcast:ch:!p:%s:%s" % (APP["id"], CH)
    v = srv.command("HGET", "ringcast:pt:" + rch, uid)
    return int(v) if v else 0


def users(eng):
    """GET channels/CH/users on @eng, signed: the user ids, sorted."""
    path = "/apps/%s/channels/%s/users" % (APP["id"], CH)
    status, doc = rc.api(eng, "GET", path + "?" + signed(APP, "GET", path,
                                                         None))
    expect_eq(status, 200, "GET users")
    return sorted(u["id"] for u in doc["users"])


async def check_members(engs):
    a, m = await join(engs[0], "u1")
    expect_eq(m["ids"], ["u1"], "a's members")
    b, m = await join(engs[1], "u2")
    expect_eq(sorted(m["ids"]), ["u1", "u2"], "b's members, both nodes")
    expect_eq(m["hash"]["u1"], {"n": "u1"}, "u1's info, from node 0")
    expect_eq(await until_sentinel(a, engs[1]),
              [("member_added", "u2")], "a hears u2 once")
    for i, eng in enumerate(engs):
        expect_eq(users(eng), ["u1", "u2"], "node %d's users, both" % i)
    # u2 again, on the other node: no member_added anywhere
    c, m = await join(engs[0], "u2")
    expect_eq(sorted(m["ids"]), ["u1", "u2"], "c's members")
    expect_eq(await until_sentinel(a, engs[1]), [], "u2's 2nd connection")
    expect_eq(await until_sentinel(b, engs[0]), [], "b, u2's 2nd")
    await b.close()
    if rc.only_on("redis"):
        await rc.await_state("b's leave counted", lambda: pres_count("u2")
                             == 1)
    expect_eq(await until_sentinel(a, engs[1]), [],
              "u2 left one node, still on the other")
    await c.close()
    # its leave has run (and published member_removed) before the sentinel
    await rc.await_state("c's leave counted", lambda: users(engs[1])
                         == ["u1"])
    expect_eq(await until_sentinel(a, engs[1]),
              [("member_removed", "u2")], "u2's last connection")
    await a.close()


def watch_event(ev):
    return ev["event"], ev["data"]["events"]


async def check_node_dies(engs):
    a, _ = await join(engs[0], "v1")
    d, _ = await join(engs[1], "v2")
    e, _ = await join(engs[1], "v2")
    expect_eq(await until_sentinel(a, engs[0]),
              [("member_added", "v2")], "v2 on node 1, once")
    # a watcher on node 0 of k1, signed in on node 1
    w, hello = await connected(engs[0])
    await signin(w, hello, "w0", ["k1"])
    expect_eq((await event(w))["event"], "pusher:signin_success", "w0")
    k, hello = await connected(engs[1])
    await signin(k, hello, "k1")
    expect_eq(watch_event(await event(w)), (
        "pusher_internal:watchlist_events",
        [{"name": "online", "user_ids": ["k1"]}]), "k1 online")
    engs[1].kill()
    ev = await event(a)    # within the heartbeat's expiry
    expect_eq((ev["event"], ev["data"]), ("pusher_internal:member_removed",
                                          {"user_id": "v2"}),
              "v2 gone with its node")
    expect_eq(watch_event(await event(w)), (
        "pusher_internal:watchlist_events",
        [{"name": "offline", "user_ids": ["k1"]}]), "k1 gone with its node")
    await w.close()
    expect_eq(await until_sentinel(a, engs[0]), [], "once only")
    f, m = await join(engs[0], "v3")
    expect_eq(sorted(m["ids"]), ["v1", "v3"], "members after the death")
    await a.close()
    await f.close()
    for ws in (d, e, k):    # their node is gone: what they had, then EOF
        for _ in range(100):
            try:
                await rc.ws_recv(ws)
            except websockets.ConnectionClosed:
                break


async def check_full(engs):
    """100 users in a channel: the 101st, on the other node, gets
    subscription_error LimitReached 4100 and stays open, unsubscribed."""
    held = []
    for i in range(100):
        ws, _ = await join_as(engs[i % 2], "f%d" % i, "presence-full")
        held.append(ws)
    ws, hello = await connected(engs[1])
    cd = json.dumps({"user_id": "over"})
    await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
        "channel": "presence-full", "channel_data": cd,
        "auth": channel_auth(APP, hello["socket_id"], "presence-full", cd)}}))
    ev = await event(ws)
    expect_eq((ev["event"], ev["data"].get("type"), ev["data"].get("status")),
              ("pusher:subscription_error", "LimitReached", 4100),
              "the 101st user")
    status, _ = trigger(engs[0], {"name": "e", "channel": "presence-full",
                                  "data": "x"})
    expect_eq(status, 200, "publish")
    await ws.send('{"event":"pusher:ping"}')
    expect_eq((await event(ws))["event"], "pusher:pong",
              "open, and not subscribed")
    await ws.close()
    for w in held:  # unread member events fill their queues: no handshake
        w.transport.abort()


def body(run):
    with run.section(), rc.nodes(run.exe, *engine_args()) as engs:
        run.check("presence: every node's members, first join, last leave",
                  check_members, engs)
        run.check("presence: 100 users, the 101st on the other node refused",
                  check_full, engs)
        if not rc.only_on("embedded"):
            run.check("presence: a node killed, its members removed once",
                      check_node_dies, engs)


if __name__ == "__main__":
    rc.main("test_pusher_nodes", body)
