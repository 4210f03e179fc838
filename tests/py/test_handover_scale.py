# SPDX-License-Identifier: MIT
"""The hand-over at issue 28's size: 10,000 connections (docs/HANDOVER.md).

- live (level 2): 10,000 /ws connections on 500 history channels: 300
  python3-websockets clients (users u0..u299, 20 with kept pushes), 50
  of Chromium's own WebSockets in one headless page, and the rest on
  Node's `ws` (tests/js/handover_bulk.js, two processes, a tenth with
  permessage-deflate), every one a user; 10 offline users with inboxes;
  a quiet history channel. Publishers publish {"n": i} at 1,000 a
  second over keep-alive HTTP (a request closed unanswered is sent
  again) while a new process takes over: every client gets every
  message answered 200 exactly once and in order, sees no close and
  no reconnect, and its heartbeat after is answered on the same
  connection; a client that connects during the hand-over is served;
  `history` and the inboxes answer the same afterwards; the old
  process exits 0.
- drain (level 1): 10,000 Node `ws` clients drained at --drain-rate
  (close 1012) while the publishers go on: every one connects again,
  subscribes from its last offset, is told "recovered":true and ends
  with every message once and in order (a reconnect that fails before
  its upgrade is tried again, counted and printed).
The longest gap a client saw between two messages, the connections
carried and the hand-over's phases are printed, never asserted.

RINGCAST_HO_PROTOCOLS (a comma list, "ws,pusher" by default) says the
protocols of the live check: "pusher" adds 200 pusher-js clients (of
the 10,000) on the Pusher endpoint, published to through the Pusher
HTTP API; "wss" makes the engine speak TLS and every client use wss://
and https:// (test_handover_scale-tls). RINGCAST_HO_CONNS sets the
count (10,000).
"""

import asyncio
import hashlib
import hmac
import http.client
import json
import os
import re
import resource
import subprocess
import tempfile
import threading
import time

import rc
from rc import expect, expect_eq
from test_handover import history, inbox, keep
from test_users import KEY, SECRET, token

PROTOCOLS = set(os.environ.get("RINGCAST_HO_PROTOCOLS",
                               "ws,pusher").split(","))
if "wss" in PROTOCOLS:
    rc.TLS = True	# every engine with a certificate, every client on TLS
CONNS = int(os.environ.get("RINGCAST_HO_CONNS", "10000"))
PY = 300		# python3-websockets clients
KEPT = 20		# of them with kept pushes
OFFLINE = 10		# offline users with inboxes
BROWSER = 50		# Chromium's sockets
PUSHER = 200 if "pusher" in PROTOCOLS else 0
NODES = 2		# Node processes for the rest
CHANS, PREFIX = 500, "h:s"
PCHANS, PPREFIX = 10, "ho-p"	# the Pusher clients' channels
RATE = 1000		# messages a second, all publishers together
PUBLISHERS = 8
ATTEMPTS = 20000	# a publish's: each frozen moment closes one unanswered
APP = {"id": "42", "key": "key-42", "secret": "s3cret-42"}
DEADLINE = 150		# s: a bound that turns a hang into a failure
BULK = os.path.join(rc.HERE, "..", "js", "handover_bulk.js")
PAGE = os.path.join(rc.HERE, "..", "browser", "handover_page.mjs")


def args(sock, *more):
    # 10,000 TLS handshakes on a loaded host take longer than the 10 s
    # a client gets by default to finish its own
    slow = ("--handshake-timeout", "120s") if rc.TLS else ()
    return ("--shards", "2", "--namespace", "h:history=100000,ttl=10m",
            "--auth", "optional", "--jwt-secret", SECRET, "--api-key", KEY,
            "--pusher-app", "%(id)s:%(key)s:%(secret)s" % APP,
            "--max-pending-bytes", "32m", "--handover-socket",
            sock) + slow + more


def chan(g):
    return PREFIX + str(g % CHANS)


# ---------------------------------------------------------------- publishers

class Tally:
    """Messages answered 200 by every publisher, waited on."""

    def __init__(self):
        self.cond = threading.Condition()
        self.total = 0
        self.t0 = time.monotonic()

    def add(self):
        with self.cond:
            self.total += 1
            self.cond.notify_all()

    def wait(self, n, timeout=DEADLINE):
        with self.cond:
            expect(self.cond.wait_for(lambda: self.total >= n, timeout),
                   "publishers stuck at %d of %d", self.total, n)


class Publisher(threading.Thread):
    """Publishes {"n": 0, 1, ...} to each of @chans in turn, @rate a
    second, on one keep-alive connection, until @stop; then {"end":
    true} to each. A request closed unanswered (the old process does
    that to a publish while it hands over) is sent again on a new
    connection; a refused connection is counted. self.ok[ch]: the n
    answered 200 there, in order. @pusher: through the Pusher HTTP API
    (event "m"), else POST /publish."""

    def __init__(self, eng, chans, rate, stop, tally, pusher=False):
        super().__init__(daemon=True)
        self.eng, self.chans, self.rate = eng, chans, rate
        self.stop, self.tally, self.pusher = stop, tally, pusher
        self.ok = {c: [] for c in chans}
        self.retries = self.refused = 0
        self.error = None

    def request(self, ch, data):
        if not self.pusher:
            return "/publish/" + ch, json.dumps(data).encode(), {
                "Authorization": "Bearer " + KEY}
        body = json.dumps({"name": "m", "channels": [ch],
                           "data": json.dumps(data)}).encode()
        path = "/apps/%s/events" % APP["id"]
        q = "auth_key=%s&auth_timestamp=%d&auth_version=1.0&body_md5=%s" % (
            APP["key"], int(time.time()), hashlib.md5(body).hexdigest())
        sig = hmac.new(APP["secret"].encode(), ("POST\n%s\n%s" % (path, q))
                       .encode(), hashlib.sha256).hexdigest()
        return "%s?%s&auth_signature=%s" % (path, q, sig), body, {}

    def post(self, ch, data):
        """@data to @ch until answered: its status and body."""
        for _ in range(ATTEMPTS):
            if self.conn is None:
                self.conn = rc.http_conn(self.eng)
            path, body, hdrs = self.request(ch, data)
            try:
                self.conn.request("POST", path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                return r.status, r.read()
            except ConnectionRefusedError:
                self.refused += 1
            except (ConnectionError, http.client.HTTPException):
                self.retries += 1	# not done: sent again
            self.conn.close()
            self.conn = None
        raise AssertionError("%s: %d attempts unanswered" % (ch, ATTEMPTS))

    def run(self):
        self.conn = None
        t0, sent = time.monotonic(), 0
        try:
            for k in range(10 ** 7):	# bounded: the stop comes first
                # the pace: wait for the stop until the next one is due
                due = t0 + sent / self.rate - time.monotonic()
                if due > 1:
                    t0, sent = time.monotonic(), 0
                if self.stop.wait(max(0.0, due)):
                    break
                ch = self.chans[k % len(self.chans)]
                n = len(self.ok[ch])
                status, got = self.post(ch, {"n": n})
                expect(status == 200, "publish %d to %s: %d %s", n, ch,
                       status, got)
                self.ok[ch].append(n)
                sent += 1
                self.tally.add()
            for ch in self.chans:
                status, got = self.post(ch, {"end": True})
                expect(status == 200, "end of %s: %d", ch, status)
        except Exception as e:		# the check reports it
            self.error = e
        finally:
            if self.conn:
                self.conn.close()


def publishers(eng, stop, tally):
    per = [[chan(g) for g in range(k, CHANS, PUBLISHERS)]
           for k in range(PUBLISHERS)]
    pubs = [Publisher(eng, c, RATE / PUBLISHERS, stop, tally) for c in per]
    if PUSHER:
        pubs.append(Publisher(eng, [PPREFIX + str(k) for k in range(PCHANS)],
                              RATE / 20, stop, tally, pusher=True))
    for p in pubs:
        p.start()
    return pubs


async def wind_up(old, stop, tally, pubs):
    """Waits for the old process's exit (status 0), then for a second's
    publishes more (all the new process's), and stops the publishers:
    (when the old one was gone, channel -> the n answered 200 there)."""
    loop = asyncio.get_running_loop()
    expect_eq(await loop.run_in_executor(None, old.wait, DEADLINE), 0,
              "the old process's exit status")
    gone = time.monotonic()
    await loop.run_in_executor(None, tally.wait, tally.total + RATE)
    stop.set()
    print("publishers: %d answered 200 in %.1fs" % (
        tally.total, time.monotonic() - tally.t0))
    ok = {}
    for p in pubs:
        await loop.run_in_executor(None, p.join, DEADLINE)
        expect(p.error is None, "publisher: %r", p.error)
        ok.update(p.ok)
    expect_eq(sum(p.refused for p in pubs), 0, "refused publishes")
    return gone, ok


# ---------------------------------------------------------------- clients

class Bulk:
    """A Node process of clients (handover_bulk.js, or Chromium's page
    for @page): its lines read by a thread; wait() for one."""

    def __init__(self, url, first, count, mode="live", proto="ws",
                 page=False):
        cfg = {"url": url, "first": first, "count": count, "mode": mode,
               "proto": proto, "secret": SECRET, "tls": rc.TLS,
               "key": APP["key"], "deadline_ms": DEADLINE * 1000,
               "chans": PCHANS if proto == "pusher" else CHANS,
               "prefix": PPREFIX if proto == "pusher" else PREFIX}
        env = dict(os.environ, NODE_PATH=rc.node_path())
        if rc.TLS:
            env["NODE_EXTRA_CA_CERTS"] = rc.tls_files()[0]
        self.what = "%s clients %d.." % ("Chromium's" if page else proto,
                                         first)
        self.proc = subprocess.Popen(["node", PAGE if page else BULK,
                                      json.dumps(cfg)],
                                     stdout=subprocess.PIPE, text=True,
                                     env=env, preexec_fn=rc.die_with_parent)
        self.lines, self.cond = [], threading.Condition()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.strip())
                self.cond.notify_all()
        with self.cond:
            self.lines.append("fail: exited")
            self.cond.notify_all()

    def wait(self, word):
        """Waits for line @word (or, for None, the JSON summary)."""
        def seen():
            for ln in self.lines:
                if ln.startswith("fail") or (
                        ln == word if word else ln.startswith("{")):
                    return ln
            return False
        with self.cond:
            ln = self.cond.wait_for(seen, DEADLINE)
        expect(ln and not ln.startswith("fail"), "%s: %r waiting for %s "
               "(%s)", self.what, ln, word, self.lines[-3:])
        return None if word else json.loads(ln)

    def summary(self):
        s = self.wait(None)
        expect_eq(self.proc.wait(rc.EXIT_TIMEOUT), 0, self.what + " exit")
        return s

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def py_client(eng, i, log):
    """User u@i on chan(i) until its {"end": true}, then a heartbeat on
    the same connection: (ns received, kept ids, longest gap in s)."""
    uid = "u%d" % i
    got, ids, gap, last = [], set(), 0.0, None
    ws = await rc.ws_connect(eng.url("/ws"), extra_headers={
        "Authorization": "Bearer " + token(uid)})
    r = await rc.ws_command(ws, "subscribe", 1, channels=[chan(i)])
    expect_eq(r["code"], 200, "%s's subscribe" % uid)
    log.tick("subscribed")
    for _ in range(100000):
        m = json.loads(await rc.ws_recv(ws, DEADLINE))
        if m.get("cmd") == "push" and "user" in m:
            ids.add(m.get("id") or m["data"])
        elif m.get("cmd") == "push":
            if m["data"].get("end"):
                break
            now = time.monotonic()
            gap = max(gap, now - last) if last else gap
            last = now
            got.append(m["data"]["n"])
            if len(got) == 1:
                log.tick("primed")
    r = await rc.ws_command(ws, "heartbeat", 2)
    expect_eq(r["code"], 200, "%s's heartbeat after" % uid)
    await ws.close()
    expect_eq(ws.close_code, 1000, "%s's close (ours)" % uid)
    return got, ids, gap


class Log:
    """Counts per word; an event per word set once @n reach it."""

    def __init__(self, n):
        self.n, self.counts, self.events = n, {}, {}

    def event(self, word):
        return self.events.setdefault(word, asyncio.Event())

    def tick(self, word):
        self.counts[word] = self.counts.get(word, 0) + 1
        if self.counts[word] == self.n:
            self.event(word).set()


def tell(what, s):
    """Prints what Node summary @s says went wrong, if anything."""
    if s["failed"] or s["bad"] or s["closes"]:
        print("%s: %d failed, closes %s, reconnects %d (%d failed before "
              "the upgrade, tried again): %s" % (
                  what, s["failed"], s["closes"], s.get("reconnects", 0),
                  s.get("hangups", 0), s["bad"]))


def check_counts(what, s, ok):
    """A Node summary @s: no failure, every client done with the count
    of its channel's answered messages (each checked n = i in order)."""
    expect(s["failed"] == 0 and not s["bad"], "%s: %d failed", what,
           s["failed"])
    expect_eq(s["done"], s["count"], what + " done")
    for ch, per in s["counts"].items():
        expect_eq(per, {str(len(ok[ch])): per.get(str(len(ok[ch])), 0)},
                  "%s on %s: messages received: clients" % (what, ch))


def carried(old):
    """The old process's log: how many it handed over live and drained;
    none drained but the HTTP connections of publishers and probes."""
    log = old.output()
    live = re.search(r"(\d+) connections handed over live", log)
    drained = re.search(r"(\d+) connections drained", log)
    print("the old process: %s live, %s drained" % (
        live and live.group(1), drained and drained.group(1)))
    why = ""
    if os.environ.get("RINGCAST_TEST_IO") == "epoll":
        why = (" (on epoll each carried socket is dup'ed for its CONNS "
               "message: twice the fds, against RLIMIT_NOFILE %d)" %
               resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    expect(drained and int(drained.group(1)) <= PUBLISHERS + 2,
           "the old process drained %s connections it did not carry%s",
           drained and drained.group(1), why)


def split(total, parts):
    return [total // parts + (k < total % parts) for k in range(parts)]


# ---------------------------------------------------------------- checks

async def check_live(exe, d):
    sock = os.path.join(d, "live.sock")
    loop = asyncio.get_running_loop()
    bulks, tasks = [], []
    with rc.Engine(exe, *args(sock)) as old:
        try:
            rc.post_many(old, "/publish/h:quiet", [json.dumps({"q": i})
                                                   for i in range(10)],
                         key=KEY)
            for j in range(OFFLINE):
                keep(old, "off%d" % j, 3)
            quiet = await history(old, "h:quiet")
            boxes = {"off%d" % j: inbox(old, "off%d" % j)
                     for j in range(OFFLINE)}
            t0 = time.monotonic()
            log = Log(PY)
            tasks = [asyncio.ensure_future(py_client(old, i, log))
                     for i in range(PY)]
            first = PY
            bulks.append(Bulk(old.url("/ws"), first, BROWSER, page=True))
            first += BROWSER
            if PUSHER:
                bulks.append(Bulk(old.url("/app/%s" % APP["key"]), 0,
                                  PUSHER, proto="pusher"))
            for n in split(CONNS - PY - BROWSER - PUSHER, NODES):
                bulks.append(Bulk(old.url("/ws"), first, n))
                first += n
            await asyncio.wait_for(log.event("subscribed").wait(), DEADLINE)
            for b in bulks:
                await loop.run_in_executor(None, b.wait, "subscribed")
            print("%d connections subscribed in %.1fs" % (
                CONNS, time.monotonic() - t0))
            for i in range(KEPT):
                keep(old, "u%d" % i, 2)
            boxes.update({"u%d" % i: inbox(old, "u%d" % i)
                          for i in range(KEPT)})
            stop, tally = threading.Event(), Tally()
            pubs = publishers(old, stop, tally)
            # every client has a message before the hand-over
            await asyncio.wait_for(log.event("primed").wait(), DEADLINE)
            for b in bulks:
                await loop.run_in_executor(None, b.wait, "primed")
            new = rc.Engine(exe, *args(sock, "--take-over", sock),
                            listen="127.0.0.1:%d" % old.port)
            try:
                t1 = time.monotonic()
                starting = loop.run_in_executor(None, new.start)
                await latecomer(old, quiet)
                await starting
                t2, ok = await wind_up(old, stop, tally, pubs)
                ho = rc.stats(new)["handover"]
                print("live: %d carried (%d bytes of records), fallbacks "
                      "%s, phases %s; take-over to the old one's exit "
                      "%.1fs; %d messages answered (%d sent again)" % (
                          ho["live"], ho["live_bytes"], ho["fallbacks"],
                          ho["ms"], t2 - t1, sum(map(len, ok.values())),
                          sum(p.retries for p in pubs)))
                results = await asyncio.wait_for(asyncio.gather(
                    *tasks, return_exceptions=True), DEADLINE)
                errs = [r for r in results if isinstance(r, BaseException)]
                if errs:
                    print("python3-websockets clients: %d failed, the "
                          "first: %r" % (len(errs), errs[0]))
                sums = [await loop.run_in_executor(None, b.summary)
                        for b in bulks]
                for b, s in zip(bulks, sums):
                    tell(b.what, s)
                carried(old)
                expect(not errs, "python3-websockets clients failed: %r",
                       errs[:1])
                for i, (got, ids, _) in enumerate(results):
                    expect(got == ok[chan(i)], "u%d on %s: %d messages, "
                           "want the %d answered 200, once each, in order",
                           i, chan(i), len(got), len(ok[chan(i)]))
                    if i < KEPT:
                        expect_eq(ids, set(boxes["u%d" % i]["ids"]),
                                  "u%d's kept pushes" % i)
                gaps = [r[2] for r in results]
                for b, s in zip(bulks, sums):
                    check_counts(b.what, s, ok)
                    gaps.append(s["maxgap"] / 1000)
                expect_eq(await history(new, "h:quiet"), quiet,
                          "history afterwards")
                for uid, doc in boxes.items():
                    expect_eq(inbox(new, uid), doc,
                              "inbox of %s afterwards" % uid)
                print("live: the longest gap a client saw between two "
                      "messages %.2fs" % max(gaps))
                expect_eq((ho["mode_asked"], ho["mode"]), ("live", "live"),
                          "the new process's modes")
                expect(ho["live"] >= CONNS, "connections taken live: %s",
                       ho)
            finally:
                new.stop() if new.alive() else new.kill()
        finally:
            for b in bulks:
                b.kill()
            for t in tasks:
                t.cancel()


async def latecomer(eng, quiet):
    """A client during the hand-over (whoever accepts it serves it)
    recovers the quiet channel from offset 0."""
    ws = await rc.ws_connect(eng.url("/ws"))
    r = await rc.ws_command(ws, "subscribe", 1, channel="h:quiet", offset=0,
                            epoch=quiet["epoch"])
    expect(r["data"].get("recovered") is True, "latecomer: %s", r)
    late = [json.loads(await rc.ws_recv(ws))["data"]["q"] for _ in range(10)]
    expect_eq(late, list(range(10)), "latecomer's recovery")
    await ws.close()


async def check_drain(exe, d):
    sock = os.path.join(d, "drain.sock")
    rate = 1000
    loop = asyncio.get_running_loop()
    bulks = []
    with rc.Engine(exe, *args(sock, "--drain-rate", str(rate))) as old:
        try:
            first = 0
            for n in split(CONNS, NODES):
                bulks.append(Bulk(old.url("/ws"), first, n, mode="drain"))
                first += n
            for b in bulks:
                await loop.run_in_executor(None, b.wait, "subscribed")
            stop, tally = threading.Event(), Tally()
            pubs = publishers(old, stop, tally)
            for b in bulks:
                await loop.run_in_executor(None, b.wait, "primed")
            new = rc.Engine(exe, *args(sock, "--take-over", sock,
                                       "--take-over-mode", "drain"),
                            listen="127.0.0.1:%d" % old.port)
            try:
                t1 = time.monotonic()
                await loop.run_in_executor(None, new.start)
                t2, ok = await wind_up(old, stop, tally, pubs)
                back = 0
                sums = [await loop.run_in_executor(None, b.summary)
                        for b in bulks]
                for b, s in zip(bulks, sums):
                    tell(b.what, s)
                for b, s in zip(bulks, sums):
                    # each closed 1012 (one the old process took as it
                    # stopped could be twice) and recovered each time
                    expect_eq(s["closes"], {"1012": s["reconnects"]},
                              b.what + ": closes")
                    expect(s["reconnects"] >= s["count"] and
                           s["recovered"] == s["reconnects"],
                           "%s: %d reconnects, %d recovered", b.what,
                           s["reconnects"], s["recovered"])
                    s["closes"] = {}	# each was one 1012, as asked
                    check_counts(b.what, s, ok)
                    back += s["recovered"]
                ho = rc.stats(new)["handover"]
                expect_eq((ho["mode"], ho["live"]), ("drain", 0),
                          "the new process's mode")
                print("drain: %d clients back with recovered:true at "
                      "--drain-rate %d (count/rate %.0fs); take-over to the "
                      "old one's exit %.1fs; %d messages answered (%d sent "
                      "again)" % (back, rate, CONNS / rate, t2 - t1,
                                  sum(map(len, ok.values())),
                                  sum(p.retries for p in pubs)))
            finally:
                new.stop() if new.alive() else new.kill()
        finally:
            for b in bulks:
                b.kill()


def checks(run):
    with tempfile.TemporaryDirectory() as d:
        run.check("live", check_live, run.exe, d, timeout=DEADLINE + 60)
        run.check("drain", check_drain, run.exe, d, timeout=DEADLINE + 60)


if __name__ == "__main__":
    rc.main("handover_scale", checks)
