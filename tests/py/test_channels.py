# SPDX-License-Identifier: MIT
"""Channels and fan-out at scale, --shards 2: 2,000 /ws subscribers (both
shards must hold some) on 50 channels, 1-3 channels each, held by several
worker processes; 4 HTTP publishers (threads, one keep-alive connection
each) publish 10,000 messages: empty, 100-byte text, JSON of many shapes
and a small share of 64 KiB ones.  Every message is a pure function of
(publisher, sequence), so each worker rebuilds what was published and
checks on every connection: only its channels' messages, each once,
content intact (JSON bytes verbatim in the frame), every publisher's
sequence complete and in order per channel; a fence message per channel
ends the stream.  The parent then checks all subscribers of a channel saw
one identical sequence, and that /stats counts the subscriptions and
returns to zero once everybody has left."""

import asyncio
import hashlib
import json
import random
import threading

import rc
from rc import expect

SEED = 20240611
PUBLISHERS = 4
PER_PUBLISHER = 2500            # 10,000 messages in all
SUBSCRIBERS = 2000
WORKERS = 4
FENCE = PUBLISHERS              # publisher id of the per-channel fences
BIG = 64 << 10

CHANNELS = (["news", "room:7", "user@example.com", "a/b/c", "k=v",
             "x.y-z_0", "A", "9", "-", "_:@/=.-",
             "long:" + "x" * 123]  # exactly 128 bytes, the longest name
            + ["ch.%02d" % i for i in range(39)])
TEXT_CHARS = ("a", "Z", "0", " ", '"', "\\", "/", "\t", "\n", "\r", "\x01",
              "\x1f", "\x7f", "{", "}", "[", "]", ",", ":", "'", "<", "&",
              "\u00e9", "\u20ac", "\u2028", "\U0001f600", "\ufeff")


def text_fill(r, n):
    """About @n UTF-8 bytes of awkward text (never more)."""
    out, size = [], 0
    while True:
        ch = r.choice(TEXT_CHARS)
        k = len(ch.encode())
        if size + k > n:
            return "".join(out)
        out.append(ch)
        size += k


def json_value(r, depth=0):
    k = r.randrange(9 if depth < 4 else 6)
    if k == 0:
        return r.choice([True, False, None])
    if k == 1:
        return r.randrange(-10 ** 6, 10 ** 6)
    if k == 2:
        return r.choice([0.5, -2.5e-3, 1e300, -0.0, 12345678901234567890])
    if k in (3, 4, 5):
        return text_fill(r, r.randrange(0, 30))
    if k in (6, 7):
        return [json_value(r, depth + 1) for _ in range(r.randrange(4))]
    return {text_fill(r, 6): json_value(r, depth + 1)
            for _ in range(r.randrange(4))}


def json_body(r, p, s):
    """A JSON document carrying (p, s), in one of several spellings."""
    shape = r.randrange(5)
    if shape == 0:
        doc = {"p": p, "s": s, "v": json_value(r)}
    elif shape == 1:
        doc = [p, s, json_value(r), json_value(r)]
    elif shape == 2:
        doc = "p%d s%d %s" % (p, s, text_fill(r, 40))
    else:
        doc = {"s": s, "x": [json_value(r) for _ in range(3)], "p": p,
               "nest": [[[[{"d": [1, [2, [3]]]}]]]]}
    style = r.randrange(4)
    if style == 0:
        text = json.dumps(doc, separators=(",", ":"))
    elif style == 1:
        text = json.dumps(doc, ensure_ascii=False)
    elif style == 2:
        text = json.dumps(doc, indent="\t", ensure_ascii=False)
    else:
        # Whitespace around the value is part of the published bytes.
        text = " \r\n\t" + json.dumps(doc, indent=1) + "\n "
    return text.encode()


def big_body(r, p, s):
    """Exactly 64 KiB, JSON or plain text by the parity of @s."""
    unit = text_fill(r, 50) + "|"
    if s % 2:
        text = "p%d s%d " % (p, s) + unit * ((BIG - 64)
                                              // len(unit.encode()))
        raw = text.encode()
        return raw + b"." * (BIG - len(raw))
    # '{"p": P, "s": S, "blob": "' then the escaped units, then padding.
    head = json.dumps({"p": p, "s": s, "blob": ""})[:-2]
    esc = json.dumps(unit, ensure_ascii=False)[1:-1]
    raw = (head + esc * ((BIG - 64) // len(esc.encode()))).encode()
    return raw + b"." * (BIG - len(raw) - 2) + b'"}'


def message(p, s):
    """(channel, body bytes) of publisher @p's message @s."""
    r = random.Random("%d:%d:%d" % (SEED, p, s))
    channel = r.choice(CHANNELS)
    k = r.random()
    if k < 0.04:
        body = b""
    elif k < 0.055:
        body = big_body(r, p, s)
    elif k < 0.45:
        text = "p%d s%d %s" % (p, s, text_fill(r, 90))
        body = text.encode()
    else:
        body = json_body(r, p, s)
    return channel, body


def fence_body():
    return b'{"fence":true}'


def subscriptions():
    """The channels of each subscriber, 1-3 of them."""
    r = random.Random(SEED)
    return [r.sample(CHANNELS, r.randint(1, 3)) for _ in range(SUBSCRIBERS)]


def ident(data):
    """(p, s) a payload carries, ("e", 0) for the empty one; None if it
    carries none."""
    if isinstance(data, dict):
        if data == {"fence": True}:
            return ("f", 0)
        return (data.get("p"), data.get("s"))
    if isinstance(data, list) and len(data) >= 2:
        return (data[0], data[1])
    if isinstance(data, str):
        if data == "":
            return ("e", 0)
        w = data.split(" ", 2)
        if len(w) >= 2 and w[0][1:].isdigit() and w[1][1:].isdigit():
            return (int(w[0][1:]), int(w[1][1:]))
    return None


# ---------------------------------------------------------------- worker

class Expected:
    """What was published, rebuilt from message()."""

    def __init__(self):
        self.msgs = {}          # (p, s) -> (channel, text, data, is_json)
        self.plan = {c: {p: [] for p in range(PUBLISHERS)}
                     for c in CHANNELS}
        self.empties = dict.fromkeys(CHANNELS, 0)
        for p in range(PUBLISHERS):
            for s in range(PER_PUBLISHER):
                c, body = message(p, s)
                text = body.decode()
                try:
                    data, is_json = json.loads(text), True
                except ValueError:
                    data, is_json = text, False
                if body:
                    self.msgs[(p, s)] = (c, text, data, is_json)
                    self.plan[c][p].append(s)
                else:
                    self.empties[c] += 1


class Sub:
    """One subscriber connection and what it received, per channel."""

    def __init__(self, i, channels):
        self.i = i
        self.channels = channels
        self.got = {c: [] for c in channels}
        self.fenced = set()
        self.errors = []

    def error(self, text):
        if len(self.errors) < 5:
            self.errors.append("sub %d: %s" % (self.i, text))

    def take(self, exp, raw):
        try:
            m = json.loads(raw)
        except ValueError:
            return self.error("not JSON: %s" % rc.short(raw))
        if not isinstance(m, dict) or set(m) != {"cmd", "channel", "data"} \
                or m["cmd"] != "push":
            return self.error("not a push: %s" % rc.short(raw))
        c = m["channel"]
        if c not in self.got:
            return self.error("push for %r, not subscribed" % c)
        if c in self.fenced:
            return self.error("push on %s after its fence: %s"
                              % (c, rc.short(raw)))
        who = ident(m["data"])
        if who is None:
            return self.error("unknown payload on %s: %s"
                              % (c, rc.short(raw)))
        if who == ("f", 0):
            self.fenced.add(c)
            return
        self.got[c].append(who)
        if who == ("e", 0):
            return
        want = exp.msgs.get(who)
        if want is None:
            return self.error("payload %r was never published" % (who,))
        wc, text, data, is_json = want
        if wc != c:
            self.error("message %r published to %s came on %s"
                       % (who, wc, c))
        elif m["data"] != data:
            self.error("message %r on %s: data %s, want %s"
                       % (who, c, rc.short(m["data"]), rc.short(data)))
        elif is_json and text not in raw:
            self.error("message %r on %s: JSON not verbatim in %s"
                       % (who, c, rc.short(raw)))

    def verify(self, exp):
        """Per channel: each publisher's messages all there, in order,
        each once; the right number of empty ones.  Returns
        {channel: digest of the whole sequence}."""
        digests = {}
        for c, seq in self.got.items():
            for p in range(PUBLISHERS):
                mine = [s for q, s in seq if q == p]
                if mine != exp.plan[c][p]:
                    self.error("channel %s publisher %d: got %d messages "
                               "%s, want %d %s"
                               % (c, p, len(mine), rc.short(mine),
                                  len(exp.plan[c][p]),
                                  rc.short(exp.plan[c][p])))
            empties = sum(1 for w in seq if w == ("e", 0))
            if empties != exp.empties[c]:
                self.error("channel %s: %d empty messages, want %d"
                           % (c, empties, exp.empties[c]))
            digests[c] = hashlib.sha1(repr(seq).encode()).hexdigest()
        return digests


async def subscribe(url, sub, sem, io):
    async with sem:
        ws = await rc.ws_connect(url, open_timeout=60)
    await ws.send(rc.push_cmd("subscribe", seq=sub.i,
                              channels=sub.channels))
    reply = json.loads(await rc.ws_recv(ws, 60))
    want = {"seq": sub.i, "cmd": "subscribe", "code": 200, "msg": "ok"}
    expect(reply == want, "sub %d: subscribe reply %s", sub.i, reply)
    io.progress(100)
    return ws


async def receive(ws, sub, exp, io):
    import websockets
    try:
        while len(sub.fenced) < len(sub.channels):
            sub.take(exp, await rc.ws_recv(ws, 120))
            io.progress()
    except websockets.ConnectionClosed:
        # say which close, not only websockets' "no close frame"
        raise AssertionError("sub %d closed (%s %r) after %d messages"
                             % (sub.i, ws.close_code, ws.close_reason,
                                sum(len(v) for v in sub.got.values())))


async def worker(config, io):
    exp = Expected()
    subs = [Sub(i, chans) for i, chans in config["subs"]]
    sem = asyncio.Semaphore(100)
    conns = await asyncio.gather(*(subscribe(config["url"], s, sem, io)
                                   for s in subs))
    io.say("ready")
    await asyncio.gather(*(receive(ws, s, exp, io)
                           for ws, s in zip(conns, subs)))
    digests = {}
    for s in subs:
        for c, d in s.verify(exp).items():
            digests.setdefault(c, set()).add(d)
    errors = [e for s in subs for e in s.errors]
    io.say("result", errors=errors[:10], nerrors=len(errors),
           received=sum(len(v) for s in subs for v in s.got.values()),
           digests={c: sorted(d) for c, d in digests.items()})
    await io.next()         # "close"
    await asyncio.gather(*(ws.close() for ws in conns))
    io.say("closed", codes=sorted(set(ws.close_code for ws in conns)))


# ---------------------------------------------------------------- parent

def publisher(eng, p, failures):
    conn = rc.http_conn(eng, timeout=60)
    try:
        for s in range(PER_PUBLISHER):
            channel, body = message(p, s)
            rc.publish(conn, channel, body)
    except Exception as e:
        failures.append("publisher %d: %s: %s" % (p, type(e).__name__, e))
    finally:
        conn.close()


def check_fanout(eng, workers, subs):
    for w in workers:
        w.recv("ready", timeout=120)
    nsubs = sum(len(c) for c in subs)
    st = rc.stats(eng)
    per_shard = [sh["connections"] for sh in st["shards"]]
    print("  connections per shard %s" % per_shard)
    expect(len(per_shard) == 2 and min(per_shard) > 0,
           "subscribers not on both shards: %s", per_shard)
    t = st["total"]
    expect(t["connections"] == SUBSCRIBERS + 1, "connections %d, want %d "
           "(subscribers and this stats request)", t["connections"],
           SUBSCRIBERS + 1)
    expect(t["subscriptions"] == nsubs, "subscriptions %d, want %d",
           t["subscriptions"], nsubs)
    expect(t["channels"] == len(CHANNELS), "channels %d, want %d",
           t["channels"], len(CHANNELS))
    expect(sum(sh["subscriptions"] for sh in st["shards"]) == nsubs,
           "shards' subscriptions do not add up to %d", nsubs)
    expect(all(0 < sh["channels"] <= len(CHANNELS) for sh in st["shards"]),
           "shard channels %s", [sh["channels"] for sh in st["shards"]])

    failures = []
    threads = [threading.Thread(target=publisher, args=(eng, p, failures))
               for p in range(PUBLISHERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    expect(not any(t.is_alive() for t in threads), "publishers hung")
    expect(not failures, "; ".join(failures))
    conn = rc.http_conn(eng)
    for c in CHANNELS:
        rc.publish(conn, c, fence_body())
    conn.close()

    digests, errors, received = {}, [], 0
    for w in workers:
        # bounded by a worker's silence: it says "progress" as it reads
        m = w.recv("result", timeout=120)
        errors += m["errors"]
        received += m["received"]
        for c, ds in m["digests"].items():
            digests.setdefault(c, set()).update(ds)
    for e in errors[:20]:
        print("  " + e)
    expect(not errors, "subscribers found errors (%d shown)", len(errors))
    split = {c: len(d) for c, d in digests.items() if len(d) != 1}
    expect(not split, "subscribers of a channel saw different sequences: "
           "channel -> number of distinct sequences %s", split)
    per_channel = dict.fromkeys(CHANNELS, 0)
    for p in range(PUBLISHERS):
        for s in range(PER_PUBLISHER):
            per_channel[message(p, s)[0]] += 1
    want = sum(per_channel[c] for chans in subs for c in chans)
    expect(received == want, "received %d messages in all, want %d",
           received, want)
    print("  %d messages published, %d delivered and checked"
          % (PUBLISHERS * PER_PUBLISHER, received))


def check_leave(eng, workers):
    for w in workers:
        w.send({"ev": "close"})
    for w in workers:
        m = w.recv("closed", timeout=120)
        expect(m["codes"] == [1000], "close codes %s, want [1000]",
               m["codes"])
    rc.wait_stats(eng, lambda s: s["total"]["connections"] == 1
                  and s["total"]["subscriptions"] == 0
                  and s["total"]["channels"] == 0
                  and s["frames_live"] == 0,
                  "connections 1, subscriptions 0, channels 0, "
                  "frames_live 0")


def checks(run):
    subs = subscriptions()
    workers = []
    try:
        # Delivery is under test here, not slow consumers: Python workers
        # on a loaded machine must not be closed as such (test_slow is).
        with run.section(), rc.Engine(run.exe, "--shards", "2",
                                      "--max-pending-bytes", "512M") as eng:
            for k in range(WORKERS):
                mine = [(i, subs[i]) for i in range(k, SUBSCRIBERS, WORKERS)]
                workers.append(rc.Worker(__file__, {"url": eng.url("/ws"),
                                                    "subs": mine}))
            if run.check("fanout", check_fanout, eng, workers, subs):
                run.check("leave", check_leave, eng, workers)
    finally:
        for w in workers:
            w.close()


if __name__ == "__main__":
    # Popen inherits the environment: publishing stays open for workers.
    rc.main("channels", checks, worker=worker, open_publish=True)
