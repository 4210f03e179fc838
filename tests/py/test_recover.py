# SPDX-License-Identifier: MIT
"""Recovery that races its own unsubscribe, on the broker of the broker
axis (--shards 2: embedded, one node on a real redis-server, or one on a
Redis Cluster).

While a publisher keeps publishing on the channel, a client sends
subscribe(recover from O), unsubscribe, subscribe(recover from O) of that
channel, all in one TCP write ("burst") or 1 ms apart ("paced"), on a new
connection and a new channel each trial (so both shards own some and ask
for some). Each trial must see:

- every command answered exactly once: the first subscribe 200, or 409
  "unsubscribed meanwhile" when the unsubscribe came before its answer;
- the last subscribe answered 200; when it says "recovered":true, the
  pushes after its reply are O+1, O+2, ... with no gap and no duplicate.

A recovery whose history read reached the owner before the subscription
did (re-registration after the unsubscribe) used to skip the messages
published in between while saying "recovered":true; and a recovering
subscribe unsubscribed before its answer used to get no reply at all.
"""

import json
import threading
import time

import rc
from rc import expect, expect_eq

NS = ("--namespace", "race:history=100000,ttl=10m")
TRIALS = 50
BEHIND = 5		# the recovery asks from this many messages back
LIVE = 5		# live pushes read after the recovered ones


class Publisher:
    """Publishes {"n": i} on channel self.chan as fast as one keep-alive
    HTTP connection allows, until stopped (bounded: at most 10 minutes
    of the whole test, enforced by meson's timeout)."""

    def __init__(self, eng):
        self.eng = eng
        self.chan = None
        self.stop = threading.Event()
        self.error = None
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        conn = rc.http_conn(self.eng)
        n = 0
        try:
            while not self.stop.is_set():
                chan = self.chan
                if chan is None:
                    time.sleep(0.001)	# no channel yet: nothing to do
                    continue
                status, _ = rc.post(conn, "/publish/" + chan,
                                    json.dumps({"n": n}))
                # 503: not published (Redis busy, say), and safe to send
                # again; the trials only need messages to flow
                expect(status in (200, 503), "publish: status %d", status)
                n += 1
        except Exception as e:	# the check reports it
            self.error = e
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.t.join(30)
        expect(self.error is None, "publisher: %s", self.error)


def frame(cmd, seq, **data):
    return rc.build_frame(rc.OP_TEXT, rc.push_cmd(cmd, seq, **data))


def tail(offsets):
    """The first few and last few of a list of offsets, for a message."""
    if offsets is None or len(offsets) <= 12:
        return repr(offsets)
    return "%r ... %r (%d)" % (offsets[:6], offsets[-6:], len(offsets))


def message(ws):
    return json.loads(ws.recv_message().payload)


def position(eng, chan, deadline):
    """(top offset, epoch) of @chan once it holds more than BEHIND."""
    with rc.RawWs(eng.host, eng.port, "/ws") as ws:
        for seq in range(1, 1000):
            ws.send_raw(frame("history", seq, channel=chan, limit=1))
            m = message(ws)
            expect_eq((m.get("seq"), m.get("code")), (seq, 200),
                      "history reply %r" % m)
            if m["data"]["offset"] > BEHIND:
                return m["data"]["offset"], m["data"]["epoch"]
            expect(time.monotonic() < deadline, "%s: no messages", chan)
            time.sleep(0.01)	# publishing has no event to await here
    raise AssertionError("%s: never more than %d messages" % (chan, BEHIND))


def trial(eng, chan, paced):
    deadline = time.monotonic() + 20
    top, epoch = position(eng, chan, deadline)
    after = top - BEHIND
    cmds = [frame("subscribe", 1, channel=chan, offset=after, epoch=epoch),
            frame("unsubscribe", 2, channels=[chan]),
            frame("subscribe", 3, channel=chan, offset=after, epoch=epoch)]
    with rc.RawWs(eng.host, eng.port, "/ws") as ws:
        if paced:
            for f in cmds:
                ws.send_raw(f)
                time.sleep(0.001)	# the pace is the scenario
        else:
            ws.send_raw(b"".join(cmds))
        replies = {}
        last = None		# the pushes after the reply to seq 3
        for _ in range(100000):
            expect(time.monotonic() < deadline, "%s: replies %r, pushes "
                   "after the last %s" % (chan, replies, tail(last)))
            try:
                m = message(ws)
            except TimeoutError:
                raise AssertionError("%s: nothing more; replies %r, pushes "
                                     "after the last %s"
                                     % (chan, replies, tail(last)))
            if m.get("cmd") == "push":
                if last is not None:
                    last.append(m["offset"])
            else:
                seq = m.get("seq")
                expect(seq not in replies, "%s: seq %r answered twice: %r "
                       "then %r", chan, seq, replies.get(seq), m)
                replies[seq] = m
                if seq == 3:
                    last = []
            if (len(replies) == 3 and last is not None and
                    (not last or last[-1] >= top + LIVE)):
                if last or not replies[3].get("data", {}).get("recovered"):
                    break
        r = replies[3]
        expect_eq(r.get("code"), 200, "%s: the last subscribe: %r" %
                  (chan, r))
        expect_eq(replies[2].get("code"), 200, "%s: the unsubscribe" % chan)
        # the first: answered before the unsubscribe, or told it came late
        first = (replies[1].get("code"), replies[1].get("msg"))
        expect(first in ((200, "ok"), (409, "unsubscribed meanwhile")),
               "%s: the first subscribe: %r", chan, replies[1])
        if r["data"]["recovered"]:
            want = list(range(after + 1, after + 1 + len(last)))
            expect(last == want, "%s: recovered:true from %d (reply %r) "
                   "but pushes %s", chan, after, r["data"], tail(last))
        ws.send_raw(frame("heartbeat", 4))
        for _ in range(100000):
            m = message(ws)
            if m.get("seq") == 4:
                break
            expect(m.get("cmd") == "push", "%s: a reply after the others: "
                   "%r (had %r)", chan, m, replies)
    return r["data"]["recovered"]


def trials(eng, pub, name, paced):
    recovered = 0
    for i in range(TRIALS):
        pub.chan = "race:%s-%d" % (name, i)
        recovered += trial(eng, pub.chan, paced)
    # the race is only tested if most trials recover
    expect(recovered >= TRIALS // 2, "only %d of %d recovered",
           recovered, TRIALS)


def check(eng, name):
    pub = Publisher(eng)
    try:
        trials(eng, pub, name + "-burst", False)
        trials(eng, pub, name + "-paced", True)
    finally:
        pub.close()


def checks(run):
    # the first letter of the broker's name keeps its channels apart
    with rc.nodes(run.exe, "--shards", "2", *NS, count=1) as (eng,):
        run.check(rc.BROKER, check, eng, rc.BROKER[0])


if __name__ == "__main__":
    rc.main("recover-" + rc.BROKER, checks)
