# SPDX-License-Identifier: MIT
"""Subscription churn under load, --shards 2: 4 HTTP publishers publish
without pause to 8 channels (each channel has one publisher and a counter
n), while 24 clients in 2 worker processes subscribe, unsubscribe, and
now and then drop their connection (close or abort) and come back.  Each
client checks, per channel: no push after its unsubscribe reply until it
subscribes again; n strictly increasing on a connection; and from the
subscribe reply to the unsubscribe reply, no gap.  At the end every
client leaves while the publishers still run; then /stats must settle at
no subscription, no channel, no live frame and one connection (the stats
request), and the engine must exit 0 on SIGTERM."""

import asyncio
import json
import random
import threading

import rc
from rc import expect

CHANNELS = ["churn.%d" % i for i in range(8)]
PUBLISHERS = 4
WORKERS = 2
CLIENTS = 12                # per worker
ITERATIONS = 300
WAIT = 30                   # seconds for pushes that must come


# ---------------------------------------------------------------- worker

class Client:
    """One client, reconnecting now and then.  Channel states: out, in
    (subscribe answered), sub (subscribe sent, not answered) and unsub
    (unsubscribe sent, not answered)."""

    def __init__(self, url, k, seed):
        self.url = url
        self.k = k
        self.rng = random.Random(seed)
        self.seq = 0
        self.bad = []
        self.pushes = 0
        self.commands = 0
        self.reconnects = 0
        self.ws = None

    def violation(self, text):
        if len(self.bad) < 10:
            self.bad.append("client %d conn %d: %s"
                            % (self.k, self.reconnects, text))

    async def connect(self):
        self.ws = await rc.ws_connect(self.url, ping_interval=None)
        self.state = dict.fromkeys(CHANNELS, "out")
        self.last = dict.fromkeys(CHANNELS, -1)
        self.chain = dict.fromkeys(CHANNELS, None)
        self.replies = {}
        self.tick = asyncio.Event()
        self.reader = asyncio.ensure_future(self.read(self.ws))

    async def read(self, ws):
        import websockets
        try:
            async for raw in ws:
                self.take(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    def take(self, m):
        if "code" in m:
            fut, chans = self.replies.pop(m.get("seq"), (None, None))
            if fut is None:
                return self.violation("reply to nothing: %s" % m)
            if m.get("code") == 200:
                for c in chans:
                    if m["cmd"] == "subscribe" and self.state[c] == "sub":
                        self.state[c] = "in"
                        self.chain[c] = None
                    elif m["cmd"] == "unsubscribe":
                        self.state[c] = "out"
            fut.set_result(m)
            return
        if m.get("cmd") != "push" or m.get("channel") not in self.state:
            return self.violation("unexpected message %s" % m)
        c, n = m["channel"], m["data"]["n"]
        st = self.state[c]
        self.pushes += 1
        if st == "out":
            self.violation("push %s n=%d after the unsubscribe reply"
                           % (c, n))
        if n <= self.last[c]:
            self.violation("push %s n=%d after n=%d" % (c, n, self.last[c]))
        if st in ("in", "unsub"):
            if self.chain[c] is not None and n != self.chain[c]:
                self.violation("push %s n=%d, want n=%d (gap while "
                               "subscribed)" % (c, n, self.chain[c]))
            self.chain[c] = n + 1
        self.last[c] = n
        self.tick.set()

    async def command(self, cmd, chans):
        """Sends @cmd for @chans and awaits its reply; the reader applies
        the new states the moment the reply arrives."""
        self.seq += 1
        self.commands += 1
        for c in chans:
            if cmd == "subscribe" and self.state[c] == "out":
                self.state[c] = "sub"
            elif cmd == "unsubscribe" and self.state[c] == "in":
                self.state[c] = "unsub"
        fut = asyncio.get_running_loop().create_future()
        self.replies[self.seq] = (fut, chans)
        await self.ws.send(rc.push_cmd(cmd, seq=self.seq, channels=chans))
        m = await asyncio.wait_for(fut, WAIT)
        expect(m.get("code") == 200, "client %d: %s %s: %s", self.k, cmd,
               chans, m)

    async def pushes_on(self, chans, count):
        """Waits until each channel of @chans got @count more pushes."""
        want = {c: self.last[c] for c in chans}
        seen = dict.fromkeys(chans, 0)
        while min(seen.values()) < count:
            self.tick.clear()
            await asyncio.wait_for(self.tick.wait(), WAIT)
            for c in chans:
                if self.last[c] != want[c]:
                    seen[c] += 1
                    want[c] = self.last[c]

    async def leave(self, abort):
        if abort:
            self.ws.transport.abort()
        else:
            await self.ws.close()
        await asyncio.wait_for(self.reader, WAIT)

    async def run(self, io):
        await self.connect()
        for it in range(ITERATIONS):
            io.progress(100)
            op = self.rng.random()
            chans = self.rng.sample(CHANNELS, self.rng.randint(1, 3))
            if op < 0.45:
                await self.command("subscribe", chans)
                await self.pushes_on(chans, 2)
            elif op < 0.92:
                await self.command("unsubscribe", chans)
                others = [c for c in CHANNELS if self.state[c] == "in"]
                if others:
                    await self.pushes_on(others[:1], 3)
            else:
                await self.leave(abort=self.rng.random() < 0.5)
                self.reconnects += 1
                await self.connect()


async def worker(config, io):
    clients = [Client(config["url"], k, config["seed"] * 100 + k)
               for k in config["clients"]]
    await asyncio.gather(*(c.run(io) for c in clients))
    io.say("done", bad=[b for c in clients for b in c.bad],
           pushes=sum(c.pushes for c in clients),
           commands=sum(c.commands for c in clients),
           reconnects=sum(c.reconnects for c in clients))
    await io.next()         # "leave", while the publishers still run
    await asyncio.gather(*(c.leave(abort=c.k % 2 == 0) for c in clients))
    io.say("left")


# ---------------------------------------------------------------- parent

def publisher(eng, mine, stop, report):
    conn = rc.http_conn(eng, timeout=60)
    n = dict.fromkeys(mine, 0)
    try:
        while not stop.is_set():
            for c in mine:
                rc.publish(conn, c, json.dumps({"c": c, "n": n[c]}).encode())
                n[c] += 1
    except Exception as e:
        report.append("publisher %s: %s: %s" % (mine, type(e).__name__, e))
    finally:
        conn.close()
    report.append(sum(n.values()))


def check_churn(eng):
    stop = threading.Event()
    report = []
    threads = [threading.Thread(target=publisher, args=(
                   eng, CHANNELS[p::PUBLISHERS], stop, report))
               for p in range(PUBLISHERS)]
    workers = []
    try:
        for t in threads:
            t.start()
        for k in range(WORKERS):
            workers.append(rc.Worker(__file__, {
                "url": eng.url("/ws"), "seed": k,
                "clients": list(range(k * CLIENTS, (k + 1) * CLIENTS))}))
        bad, pushes, commands, reconnects = [], 0, 0, 0
        for w in workers:
            m = w.recv("done", 120)     # of silence: see rc.Worker
            bad += m["bad"]
            pushes += m["pushes"]
            commands += m["commands"]
            reconnects += m["reconnects"]
        for w in workers:
            w.send({"ev": "leave"})
        for w in workers:
            w.recv("left", 60)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        for w in workers:
            w.close()
    errors = [r for r in report if isinstance(r, str)]
    published = sum(r for r in report if not isinstance(r, str))
    print("  %d published, %d pushes checked, %d commands, %d reconnects"
          % (published, pushes, commands, reconnects))
    for b in bad[:20]:
        print("  " + b)
    expect(not errors, "; ".join(errors))
    expect(not bad, "%d violations", len(bad))
    expect(pushes > 0 and reconnects > 0, "nothing churned")


def check_settled(eng):
    rc.wait_stats(eng, lambda s: s["total"]["connections"] == 1
                  and s["total"]["subscriptions"] == 0
                  and s["total"]["channels"] == 0
                  and s["frames_live"] == 0
                  and all(sh["channels"] == 0 and sh["subscriptions"] == 0
                          for sh in s["shards"]),
                  "connections 1, subscriptions 0, channels 0, "
                  "frames_live 0")


def checks(run):
    with run.section(), rc.Engine(run.exe, "--shards", "2",
                                  "--max-pending-bytes", "64M") as eng:
        if run.check("churn", check_churn, eng, timeout=300):
            run.check("settled", check_settled, eng)


if __name__ == "__main__":
    rc.main("churn", checks, worker=worker, open_publish=True)
