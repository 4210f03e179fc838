# SPDX-License-Identifier: MIT
"""Two engine nodes on a real Redis Cluster of three masters and three
replicas, made by redis-cli --cluster create on free loopback ports.

- fanout: 200 channels whose slots fall on all three masters; subscribers
  on both nodes get every message once, in order per channel, although
  each node is subscribed on a master and its replica; each master and
  its replica list exactly their shard's channels (PUBSUB SHARDCHANNELS,
  both nodes on each: SHARDNUMSUB) and each master carried exactly its
  own channels' SPUBLISHes.
- failover: a master is killed while 10 of its channels get 20 messages
  a second each, published through both nodes in turn; its replica is
  promoted and publishing resumes on every channel. Per node and per
  channel, every message answered 200 arrived once, in order, but those
  answered within 50 ms of the kill (none is lost in practice); each node
  counts one resubscribe per channel of the dead master.
- manual failover: the same load while CLUSTER FAILOVER makes another
  master's replica take over: nothing answered 200 is lost.
- standby behind: a replica frozen (SIGSTOP) while its master passes on
  300 messages of one channel, then the master killed and the replica
  let go: the standby takes over with its copies of all 300 still to
  come, and each node skips them all (none twice, none lost).
- replica death: the same load while a master's replica is killed:
  nothing answered 200 is lost, and nothing is counted as resubscribed.
- reshard: redis-cli --cluster reshard moves 1500 slots while messages
  flow; afterwards every channel is subscribed on its new master (and
  its replica) by both nodes and delivers, each moved channel counted
  once as a resubscribe, and no channel saw a message twice or out of
  order.
- features: history recovery across nodes (the stream in the channel's
  slot), inboxes kept on one node and acked on the other (the user's
  slot), presence of a user's devices on both nodes and a kick (the
  presence keys' one slot), as the single-Redis tests check them.
- bad: seeds nobody answers on, a Redis without cluster mode, and a
  cluster with slots no master serves give /healthz 503 with the reason,
  never a crash; bad options stop the engine at start-up.
"""

import asyncio
import json
import re
import signal
import socket
import subprocess
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

import rc
import redisd
import test_history as th
import test_inbox as ti
import test_users as tu
from rc import expect, expect_eq

PREFIX = "ringcast:"
KEY = "cluster-key-0123456789"
CHANNELS = ["c%d" % i for i in range(200)]


def rname(c):
    return PREFIX + "ch:" + c


def owners(cl):
    """channel -> the port of the master serving its slot, as Redis
    itself hashes the name (CLUSTER KEYSLOT)."""
    node = cl.live()[0]
    smap = redisd.Cluster.slot_map(node)
    return {c: smap[node.command("CLUSTER", "KEYSLOT", rname(c))]
            for c in CHANNELS}


def healthz(eng):
    status, body = rc.api(eng, "GET", "/healthz")
    return status, body if isinstance(body, bytes) else json.dumps(body)


def engine(exe, cl):
    return rc.Engine(exe, "--shards", "2", "--api-key", KEY,
                     "--max-subs", "400", "--redis-cluster", cl.seeds())


async def subscribe_all(eng):
    ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
    await ws.send(json.dumps({"seq": 1, "cmd": "subscribe",
                              "data": {"channels": CHANNELS}}))
    reply = json.loads(await rc.ws_recv(ws))
    expect_eq(reply.get("code"), 200, "subscribe reply %r" % reply)
    return ws


async def collect(ws, done, timeout=30):
    """Pushes from @ws, channel -> [data...], until done(got) holds."""
    got = {}
    deadline = time.monotonic() + timeout
    while not done(got):
        left = deadline - time.monotonic()
        expect(left > 0, "pushes still missing after %ss", timeout)
        m = json.loads(await rc.ws_recv(ws, left))
        expect_eq(m.get("cmd"), "push", "a push")
        got.setdefault(m["channel"], []).append(m["data"])
    return got


def expect_once_in_order(seen, what):
    """@seen strictly increasing; else say the first repeat or step back,
    where it is and the seqs around it (the whole list is too long)."""
    bad = next((i for i in range(1, len(seen)) if seen[i] <= seen[i - 1]),
               None)
    if bad is None:
        return
    kind = "repeated" if seen[bad] in seen[:bad] else "out of order"
    raise AssertionError(
        "%s: #%r %s at position %d of %d (after #%r); around it: %r"
        % (what, seen[bad], kind, bad, len(seen), seen[bad - 1],
           seen[max(0, bad - 6):bad + 6]))


def publish(eng, channel, data):
    return rc.api(eng, "POST", "/publish/" + channel, json.dumps(data),
                  key=KEY)


def replicas_of(cl):
    """master port -> its live replicas, as CLUSTER SLOTS lists them."""
    live = {n.port: n for n in cl.live()}
    out = {}
    for r in cl.live()[0].command("CLUSTER", "SLOTS"):
        out.setdefault(r[2][1], set()).update(
            x[1] for x in r[3:] if x[1] in live)
    return {m: [live[p] for p in sorted(ps)] for m, ps in out.items()}


def shard_state(cl, own, replicas):
    """Per master, and its replicas if @replicas: (channels it lists,
    channels both nodes subscribed), against what its shard holds."""
    out = []
    reps = replicas_of(cl) if replicas else {}
    for m in cl.masters():
        want = {rname(c) for c in CHANNELS if own[c] == m.port}
        for n in [m] + reps.get(m.port, []):
            listed = {c.decode() for c in
                      n.command("PUBSUB", "SHARDCHANNELS", PREFIX + "ch:*")}
            counts = n.command("PUBSUB", "SHARDNUMSUB", *sorted(want))
            twice = all(k == 2 for k in counts[1::2])
            out.append((n.port, listed == want, twice))
    return out


def wanted_slots(cl):
    """The slot of every Redis channel the nodes subscribe: CHANNELS',
    the broadcast channel's and the kick channel's."""
    node = cl.live()[0]
    names = [rname(c) for c in CHANNELS] + [PREFIX + "all", PREFIX + "ctl"]
    return [int(node.command("CLUSTER", "KEYSLOT", n)) for n in names]


def counts(eng):
    """The node's (resubscribes, takeovers), from /stats."""
    st = rc.stats(eng)["redis"]["cluster"]
    return st["resubscribes"], st["takeovers"]


async def await_counts(engines, since, want, what):
    """Each engine counts @want (resubscribes, takeovers) more than
    @since, no more."""
    for e, n in zip(engines, since):
        got = await rc.await_state(
            "%s: %s (resubscribes, takeovers) on %d" % (what, want, e.port),
            lambda: tuple(x - y for x, y in zip(counts(e), n)),
            lambda k: k[0] >= want[0] and k[1] >= want[1], timeout=30)
        expect_eq(got, want, "%s: (resubscribes, takeovers) on %d"
                  % (what, e.port))


async def await_subscribed(cl, own, what, replicas=True):
    await rc.await_state(
        what, lambda: shard_state(cl, own, replicas),
        lambda st: all(ok and twice for _, ok, twice in st), timeout=30)


def spublish_calls(node):
    info = node.command("INFO", "commandstats").decode()
    m = re.search(r"cmdstat_spublish:calls=(\d+)", info)
    return int(m.group(1)) if m else 0


async def check_fanout(cl, a, b, subs):
    await await_replicas(cl, (a, b))
    own = owners(cl)
    expect_eq(len(set(own.values())), 3, "masters the channels fall on")
    for m in cl.masters():
        m.command("CONFIG", "RESETSTAT")
    subs += [await subscribe_all(a), await subscribe_all(b)]
    await await_subscribed(cl, own, "each master holding its channels, "
                           "subscribed by both nodes", replicas=False)
    for k in range(3):
        for i, c in enumerate(CHANNELS):
            status, doc = publish(a if (i + k) % 2 else b, c, {"k": k})
            expect_eq(status, 200, "publish %s %d: %r" % (c, k, doc))
            expect_eq(doc.get("nodes"), 2, "nodes that got %s" % c)
    for ws in subs:
        got = await collect(ws, lambda g: sum(map(len, g.values())) >=
                            3 * len(CHANNELS))
        for c in CHANNELS:
            expect_eq([d["k"] for d in got.get(c, [])], [0, 1, 2],
                      "messages of %s" % c)
    for m in cl.masters():
        mine = sum(1 for c in CHANNELS if own[c] == m.port)
        expect_eq(spublish_calls(m), 3 * mine,
                  "SPUBLISHes master %d carried" % m.port)
    st = rc.stats(a)["redis"]["cluster"]
    expect_eq((st["masters"], st["masters_up"], st["uncovered_slots"]),
              (3, 3, 0), "cluster figures in /stats")
    links = {l["master"]: l for l in st["links"] if l["slots"]}
    expect_eq(sorted(links), sorted("127.0.0.1:%d" % m.port
                                    for m in cl.masters()),
              "masters linked, in /stats")
    expect_eq(sum(l["slots"] for l in links.values()), 16384, "slots")
    expect(all(l["subscriber"] and l["publisher"] for l in links.values()),
           "links down: %s", links)
    status, body = rc.api(a, "GET", "/metrics", key=KEY)
    expect_eq(status, 200, "/metrics")
    fams = {f.name: f for f in
            text_string_to_metric_families(body.decode())}
    linked = [x.value for x in fams["ringcast_redis_cluster_masters"].samples
              if x.labels.get("state") == "linked"]
    expect_eq(linked, [3], "linked masters in /metrics")
    expect("ringcast_redis_cluster_moved" in fams, "no MOVED counter")


LOAD_CHANNELS = 10      # of the killed master, as issue 23 measured
LOAD_RATE = 20          # messages a second on each
STANDBY_BURST = 300     # more than a standby's list held before
KILL_SLACK = 0.05       # s: what a master answered this close to its
                        # death may die with it


def replicas_listed(cl):
    """Every live node's CLUSTER SLOTS names a replica for every range."""
    return all(len(r) > 3 for n in cl.live()
               for r in n.command("CLUSTER", "SLOTS"))


async def await_replicas(cl, engines):
    """Until the cluster lists every master's replica and each engine
    has read a slot map since then."""
    await rc.await_state("every master's replica listed",
                         lambda: replicas_listed(cl), timeout=60)
    for e in engines:
        def maps():
            return rc.stats(e)["redis"]["cluster"]["slot_maps"]
        since = maps()
        await rc.await_state("a slot map read by %d" % e.port, maps,
                             lambda n: n > since, timeout=30)


class Load:
    """LOAD_CHANNELS publishers, each on its own channel at LOAD_RATE,
    through both engines in turn; every answer is kept with the times
    its request was sent and its answer read."""

    def __init__(self, engines, chans, key):
        self.engines = engines
        self.key = key
        self.answers = {c: [] for c in chans}   # (seq, status, sent, read)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i, c))
                        for i, c in enumerate(chans)]

    def run(self, i, chan):
        seq = 0
        due = time.monotonic()
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                status, _ = publish(self.engines[(seq + i) % 2], chan,
                                    {self.key: seq})
            except OSError:
                status = 0      # no answer: as a 504
            self.answers[chan].append((seq, status, sent,
                                       time.monotonic()))
            seq += 1
            due += 1.0 / LOAD_RATE
            # the load's pace, not a wait for an event
            self.stop.wait(max(0.0, due - time.monotonic()))

    def ok_since(self, t):
        """The fewest publishes answered 200 after @t, over channels."""
        return min(sum(1 for _, st, _, read in list(a)
                       if st == 200 and read > t)
                   for a in self.answers.values())

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        for t in self.threads:
            t.join()


async def under_load(cl, a, b, subs, master, what, event, takeover=True):
    """Publishes LOAD_CHANNELS channels of @master through both nodes
    while event() makes its replica take over (or, not @takeover, kills
    the replica); returns when the nodes are healthy again and published
    another second. Every message answered 200 must reach both nodes
    once, in order, but those answered within the window event() returns
    (t0, t1), in which the master may have died before passing them on;
    each node counts one resubscribe and one takeover per channel of
    @master that moved."""
    own = owners(cl)
    chans = [c for c in CHANNELS if own[c] == master.port][:LOAD_CHANNELS]
    expect_eq(len(chans), LOAD_CHANNELS, "channels of %d" % master.port)
    smap = redisd.Cluster.slot_map(master)
    theirs = sum(1 for s in wanted_slots(cl) if smap[s] == master.port) \
        if takeover else 0
    since = [counts(e) for e in (a, b)]
    # Pushes are read all along, so that the flood never backs up.
    readers = [asyncio.create_task(collect(ws, lambda g: all(
        any(d.get("after") == what for d in g.get(c, [])) for c in CHANNELS),
        timeout=180)) for ws in subs]
    with Load((a, b), chans, what) as load:
        await rc.await_state("a second of load before the %s" % what,
                             lambda: load.ok_since(0),
                             lambda n: n >= LOAD_RATE, timeout=60)
        slot = int(master.command("CLUSTER", "KEYSLOT", rname(chans[0])))
        t0 = time.monotonic()
        window = event()
        if takeover:
            await rc.await_state("the replica taking over", lambda:
                                 redisd.Cluster.slot_map(cl.live()[0])[slot],
                                 lambda port: port != master.port,
                                 timeout=60)
        await rc.await_state("both nodes healthy after the %s" % what,
                             lambda: [healthz(e)[0] for e in (a, b)],
                             lambda st: st == [200, 200], timeout=30)
        resumed = time.monotonic() - t0
        cl.wait_ok()
        own = owners(cl)
        expect((own[chans[0]] != master.port) == takeover,
               "the replica took over, or not")
        await await_subscribed(cl, own, "both nodes subscribed on the "
                               "promoted replica", replicas=False)
        healthy = time.monotonic()
        await rc.await_state("a second of load after the %s" % what,
                             lambda: load.ok_since(healthy),
                             lambda n: n >= LOAD_RATE, timeout=60)
    for c in CHANNELS:
        status, doc = publish(b, c, {"after": what})
        expect_eq(status, 200, "publish to %s after the %s" % (c, what))
    forbidden = []
    for name, task in zip("ab", readers):
        got = await task
        lost, excused = {}, 0
        for c in chans:
            seen = [d[what] for d in got.get(c, []) if what in d]
            expect_once_in_order(seen, "node %s: %s once each, in order"
                                 % (name, c))
            ans = {s: (st, sent, read) for s, st, sent, read
                   in load.answers[c]}
            expect(not [s for s in seen if ans[s][0] == 503],
                   "node %s got a message answered 503 on %s", name, c)
            miss = [s for s in ans if ans[s][0] == 200 and s not in seen]
            ok = [s for s in miss if window and
                  ans[s][2] >= window[0] and ans[s][1] <= window[1]]
            excused += len(ok)
            if len(miss) > len(ok):
                lost[c] = len(miss) - len(ok)
                forbidden += ["%s %s #%d answered %+.3fs from the %s" %
                              (name, c, s, ans[s][2] - t0, what)
                              for s in miss if s not in ok]
        total = sum(len(load.answers[c]) for c in chans)
        ok = sum(1 for c in chans for x in load.answers[c] if x[1] == 200)
        print("%s: node %s: %d publishes on %d channels of the master, %d "
              "answered 200, %d refused; lost %d (per channel: %s)%s; "
              "healthy again after %.1fs"
              % (what, name, total, len(chans), ok, total - ok,
                 sum(lost.values()), lost or "none",
                 ", %d more within %dms of the kill" % (
                     excused, KILL_SLACK * 1000) if window else "",
                 resumed))
    expect(not forbidden, "answered 200 and lost: %s", forbidden[:20])
    await await_subscribed(cl, owners(cl), "both nodes subscribed on "
                           "every master and its replica")
    # once each: the standby took over, and serves the slot now
    await await_counts((a, b), since, (theirs, theirs), what)


async def check_failover(cl, a, b, subs):
    victim = cl.masters()[0]

    def kill():
        # what the master answered just before it died may die with it
        t = time.monotonic()
        victim.kill()
        return (t - KILL_SLACK, time.monotonic())

    await under_load(cl, a, b, subs, victim, "failover", kill)


async def check_manual_failover(cl, a, b, subs):
    """CLUSTER FAILOVER: the master stays up, drops the nodes' channels
    when its replica has taken over, and becomes its replica: nothing
    answered 200 may be lost."""
    reps = replicas_of(cl)
    master = next(m for m in cl.masters() if reps.get(m.port))
    replica = reps[master.port][0]

    def failover():
        expect_eq(replica.command("CLUSTER", "FAILOVER"), "OK",
                  "CLUSTER FAILOVER")
        return None

    await under_load(cl, a, b, subs, master, "manual failover", failover)


async def check_standby_behind(cl, a, b, subs):
    """The replica frozen while its master passes on STANDBY_BURST
    messages of one channel, then the master killed and the replica let
    go: the standby takes over while its copies of all of them are still
    on the way, more than a short list of what went on would hold. Each
    node must skip every one of them: nothing repeated, nothing lost
    (the master passed them all on before it died)."""
    reps = replicas_of(cl)
    master = next(m for m in cl.masters() if reps.get(m.port))
    replica = reps[master.port][0]
    own = owners(cl)
    chan = next(c for c in CHANNELS if own[c] == master.port)
    what = "standby behind"
    before = [rc.stats(e)["redis"]["messages"] for e in (a, b)]
    replica.proc.send_signal(signal.SIGSTOP)
    try:
        with socket.create_connection(("127.0.0.1", master.port),
                                      timeout=30) as s:
            s.sendall(b"".join(redisd.encode(
                ("SPUBLISH", rname(chan), json.dumps({what: i})))
                for i in range(STANDBY_BURST)))
            f = s.makefile("rb")
            for _ in range(STANDBY_BURST):
                redisd.read_reply(f)
        for e, n in zip((a, b), before):
            await rc.await_state(
                "%d messages delivered on %d" % (STANDBY_BURST, e.port),
                lambda: rc.stats(e)["redis"]["messages"] - n,
                lambda k: k >= STANDBY_BURST, timeout=60)
        slot = int(master.command("CLUSTER", "KEYSLOT", rname(chan)))
        master.kill()
    finally:
        replica.proc.send_signal(signal.SIGCONT)
    await rc.await_state("the replica taking over", lambda:
                         redisd.Cluster.slot_map(cl.live()[0])[slot],
                         lambda port: port == replica.port, timeout=60)
    await rc.await_state("both nodes healthy after the %s" % what,
                         lambda: [healthz(e)[0] for e in (a, b)],
                         lambda st: st == [200, 200], timeout=30)
    cl.wait_ok()
    await await_subscribed(cl, owners(cl), "both nodes subscribed on the "
                           "promoted replica", replicas=False)
    status, _ = publish(b, chan, {"after": what})
    expect_eq(status, 200, "publish to %s after the %s" % (chan, what))
    for name, ws in zip("ab", subs):
        got = await collect(ws, lambda g: any(
            d.get("after") == what for d in g.get(chan, [])))
        seen = [d[what] for d in got[chan] if what in d]
        expect_once_in_order(seen, "node %s: %s once each, in order"
                             % (name, chan))
        expect_eq(seen, list(range(STANDBY_BURST)),
                  "node %s: all %d of %s" % (name, STANDBY_BURST, chan))
    print("%s: %d messages the standby had not shown yet, skipped once "
          "each on both nodes" % (what, STANDBY_BURST))


async def check_replica_death(cl, a, b, subs):
    """A replica killed: the nodes' standby there is lost, and nothing
    else; no resubscribe either."""
    reps = replicas_of(cl)
    master = next(m for m in cl.masters() if reps.get(m.port))
    replica = reps[master.port][0]

    def kill():
        replica.kill()
        return None

    await under_load(cl, a, b, subs, master, "replica death", kill,
                     takeover=False)


async def check_reshard(cl, a, b, subs):
    before = redisd.Cluster.slot_map(cl.live()[0])
    src, dst = cl.masters()[:2]
    since = [counts(e) for e in (a, b)]
    stop = threading.Event()
    sent = [0]

    def flow():
        while not stop.is_set():
            for c in CHANNELS:
                if stop.is_set():
                    break
                publish(a, c, {"r": sent[0]})
                sent[0] += 1

    t = threading.Thread(target=flow)
    t.start()
    try:
        await asyncio.get_running_loop().run_in_executor(None, lambda:
            redisd.redis_cli(src.port, "--cluster", "reshard",
                             "127.0.0.1:%d" % src.port,
                             "--cluster-from", cl.node_id(src),
                             "--cluster-to", cl.node_id(dst),
                             "--cluster-slots", "1500", "--cluster-yes"))
    finally:
        stop.set()
        t.join()
    cl.wait_ok()
    own = owners(cl)
    moved = [c for c in CHANNELS if before[int(cl.live()[0].command(
        "CLUSTER", "KEYSLOT", rname(c)))] != own[c]]
    expect(moved, "no channel's slot moved")
    await await_subscribed(cl, own, "both nodes subscribed where the "
                           "slots now are")
    after = redisd.Cluster.slot_map(cl.live()[0])
    moves = sum(1 for s in wanted_slots(cl) if before[s] != after[s])
    # a master's and its replica's subscriptions both go: the standby
    # may take over for an instant, then the channel moves once
    for e, n in zip((a, b), since):
        got = await rc.await_state(
            "reshard: %d resubscribes on %d" % (moves, e.port),
            lambda: counts(e)[0] - n[0], lambda k: k >= moves, timeout=30)
        expect_eq(got, moves, "reshard: resubscribes on %d" % e.port)
    for c in CHANNELS:
        status, doc = publish(b, c, {"final": 1})
        expect_eq(status, 200, "publish to %s after the reshard" % c)
    for ws in subs:
        got = await collect(ws, lambda g: all(
            any("final" in d for d in g.get(c, [])) for c in CHANNELS))
        for c in CHANNELS:
            rs = [d["r"] for d in got.get(c, []) if "r" in d]
            expect_once_in_order(rs, "once each, in order, on %s" % c)
    print("reshard: %d channels moved, %d publishes during it"
          % (len(moved), sent[0]))


async def check_features(cl, exe):
    seeds = ("--redis-cluster", cl.seeds(3))
    with rc.Engine(exe, "--shards", "2", *th.NS_REDIS, *seeds) as a, \
            rc.Engine(exe, "--shards", "2", *th.NS_REDIS, *seeds) as b:
        await rc.healthy(a, b)
        await th.check_recover(a, b)
        await th.check_recover_racing(a, b)
    with rc.Engine(exe, *ti.ARGS, *seeds) as a, \
            rc.Engine(exe, *ti.ARGS, *seeds) as b:
        await ti.check_redis_nodes(a, b)
        zoe = [await tu.user_ws(a, "zoe", app="ios"),
               await tu.user_ws(b, "zoe", app="web")]
        want = {"online": True, "connections": 2, "apps": ["ios", "web"]}
        for eng in (a, b):
            await rc.await_state("zoe's two devices seen from %d" % eng.port,
                                 lambda: tu.sorted_apps(tu.presence(eng,
                                                                    "zoe")),
                                 lambda d: d == want)
        status, _ = rc.api(b, "POST", "/users/zoe/disconnect", key=tu.KEY)
        expect_eq(status, 200, "kick through the cluster")
        for ws in zoe:
            code, _ = await rc.ws_await_close(ws)
            expect_eq(code, tu.KICK[0], "close code of a kicked device")
        await rc.await_state("zoe gone", lambda: tu.presence(a, "zoe"),
                             lambda d: d == tu.OFFLINE)
    print("features: history, inbox, presence and kick on the cluster")


async def cluster_checks(exe):
    with redisd.Cluster() as cl:
        with engine(exe, cl) as a, engine(exe, cl) as b:
            for e in (a, b):
                rc.wait_stats(e, lambda s: s.get("redis", {}).get("up"),
                              "the cluster links up")
            subs = []
            try:
                await check_fanout(cl, a, b, subs)
                await check_failover(cl, a, b, subs)
                await check_manual_failover(cl, a, b, subs)
                await check_standby_behind(cl, a, b, subs)
                await check_replica_death(cl, a, b, subs)
                await check_reshard(cl, a, b, subs)
            finally:
                for ws in subs:
                    await ws.close()
        await check_features(cl, exe)


def unhealthy(eng, why):
    deadline = time.monotonic() + 20
    while True:
        status, body = healthz(eng)
        if status == 503 and why in body.decode():
            return body
        expect(time.monotonic() < deadline,
               "/healthz %d %r, not 503 with %r", status, body, why)
        time.sleep(0.05)


async def subscribe_while_down(eng, r, chan):
    ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
    try:
        await ws.send(json.dumps({"seq": 1, "cmd": "subscribe",
                                  "data": {"channels": [chan]}}))
        reply = json.loads(await rc.ws_recv(ws))
        expect_eq(reply.get("code"), 200, "subscribe while the cluster is "
                  "down: %r" % reply)
        r.command("CLUSTER", "ADDSLOTSRANGE", 10000, 16383)
        await rc.await_state("the cluster up", lambda: healthz(eng)[0],
                             lambda st: st == 200)
        await rc.await_state("subscribed once it is up", lambda: r.command(
            "PUBSUB", "SHARDNUMSUB", rname(chan))[1], lambda n: n == 1)
        status, _ = rc.api(eng, "POST", "/publish/" + chan, '"up"')
        expect_eq(status, 200, "publish once up")
        got = await collect(ws, lambda g: chan in g)
        expect_eq(got[chan], ["up"], "the message")
    finally:
        await ws.close()


def check_bad(exe):
    # nobody listens on the seed
    port = redisd.free_port()
    with rc.Engine(exe, "--redis-cluster", "127.0.0.1:%d" % port) as eng:
        unhealthy(eng, "redis")
        status, _ = rc.api(eng, "POST", "/publish/x", "{}")
        expect_eq(status, 503, "publish with no cluster")
    expect("cluster seed 127.0.0.1:%d" % port in eng.output(),
           "the seed is named in the log: %s" % eng.output())
    # a Redis that is no cluster
    with redisd.Redis() as r:
        with rc.Engine(exe, "--redis-cluster",
                       "127.0.0.1:%d" % r.port) as eng:
            unhealthy(eng, "cluster support disabled")
    # a cluster whose slots are not all served: down until they are; a
    # subscription made meanwhile, to a slot without a master, is answered
    # at once and works once the slot is served
    with redisd.Redis(cluster=True) as r:
        r.command("CLUSTER", "ADDSLOTSRANGE", 0, 9999)
        with rc.Engine(exe, "--redis-cluster",
                       "127.0.0.1:%d" % r.port) as eng:
            unhealthy(eng, "6384 of 16384 slots have no master")
            chan = next(c for c in CHANNELS if
                        r.command("CLUSTER", "KEYSLOT", rname(c)) >= 10000)
            asyncio.run(subscribe_while_down(eng, r, chan))
    for args in (["--redis-cluster", "nohost"],
                 ["--redis-cluster", "a:1,"],
                 ["--redis-cluster", "a:1", "--redis", "redis://a:1"],
                 ["--redis-cluster", "a:1", "--redis-prefix", "x{y}"]):
        p = subprocess.run([exe, "--listen", "127.0.0.1:0"] + args,
                           capture_output=True, text=True, timeout=20)
        expect_eq(p.returncode, 2, "exit status for %s" % args)
        expect("redis" in p.stderr, "no word of it: %r", p.stderr)


def checks(run):
    run.check("cluster", lambda: asyncio.run(cluster_checks(run.exe)),
              timeout=240)
    run.check("bad", check_bad, run.exe, timeout=120)


if __name__ == "__main__":
    rc.main("cluster", checks)
