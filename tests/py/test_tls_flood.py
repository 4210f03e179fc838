# SPDX-License-Identifier: MIT
"""TLS handshake floods and garbage against --tls-max-handshakes.

Clients that open TCP and then send half a ClientHello, or nothing, and
never finish: the engine holds at most the cap in progress, closes the
ones past it at once (failed.cap), closes the stuck ones at the
handshake deadline (failed.timeout), and meanwhile a well-behaved client
still gets through and makes a pub/sub round trip.  Clients that send
garbage instead of a ClientHello are closed and counted, and cost the
engine no resident memory that stays.
"""

import asyncio
import json
import select
import socket
import ssl
import threading
import time

import websockets

import rc
from rc import expect, expect_eq

CAP = 8
FLOOD = 2 * CAP			# stuck clients held open at a time
FLOOD_RENEW = 2		# new stuck clients per 20 ms tick at most
FLOOD_OPENS = 6000		# and at most this many (a minute's worth)
GARBAGE = 2000
GARBAGE_BATCH = 50
# RSS the engine may gain over GARBAGE clients (well under 1 KiB each):
# what stays is allocator noise, not per-client state.
GARBAGE_RSS_KIB = 1024


def client_hello():
    """The first flight of a real TLS 1.3 client, from a memory BIO."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def raw_connect(eng):
    return socket.create_connection((eng.host, eng.port),
                                    timeout=rc.IO_TIMEOUT)


class Flood:
    """A thread holding FLOOD stuck clients open (half a ClientHello or
    nothing), opening a new one for each the engine closes (FLOOD_RENEW
    per 20 ms tick, so that the flood lasts across deadlines), until
    stopped or FLOOD_OPENS were opened.  .opens counts the clients it
    made, .closed those the engine closed."""

    def __init__(self, eng):
        self.eng = eng
        self.half = client_hello()[:60]
        self.opens = 0
        self.closed = 0
        self.error = None
        self.socks = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self):
        s = raw_connect(self.eng)
        if self.opens % 2:
            s.sendall(self.half)
        self.opens += 1
        self.socks.append(s)

    def _run(self):
        try:
            while not self._stop.is_set():
                for _ in range(FLOOD_RENEW if self.opens >= FLOOD else FLOOD):
                    if len(self.socks) < FLOOD and self.opens < FLOOD_OPENS:
                        self._open()
                r, _, _ = select.select(self.socks, [], [], 0.02)
                for s in r:
                    try:
                        data = s.recv(4096)
                    except ConnectionResetError:
                        data = b""
                    if data:
                        raise AssertionError("engine sent %s to a stuck "
                                             "client" % rc.short(data))
                    self.closed += 1
                    self.socks.remove(s)
                    s.close()
                if r:
                    self._stop.wait(0.02)	# the tick's pace
        except Exception as e:
            self.error = e

    def start(self):
        self._thread.start()

    def stop(self):
        """Ends the flood and closes the stuck clients still open."""
        self._stop.set()
        self._thread.join(30)
        for s in self.socks:
            s.close()


def tls_stats(eng, refused):
    """/stats' tls object over https, or None when the engine turned the
    request away (the cap under test); refused[0] counts those."""
    try:
        return rc.stats(eng)["tls"]
    except (OSError, ssl.SSLError, ConnectionError):
        refused[0] += 1
        return None


def all_failed(t):
    return sum(t["failed"].values())


async def retried(what, refused, fn):
    """Awaits fn() until the engine lets it through (bounded): a refusal
    at the cap closes the TCP connection before or in the handshake."""
    deadline = time.monotonic() + 120
    for _ in range(5000):
        try:
            return await fn()
        except (OSError, ssl.SSLError, asyncio.TimeoutError,
                websockets.InvalidHandshake, websockets.ConnectionClosed):
            refused[0] += 1
        expect(time.monotonic() < deadline, "%s never got through the "
               "flood (%d refusals)", what, refused[0])
        await asyncio.sleep(0.01)
    raise AssertionError("%s: no way through the flood" % what)


def check_flood(exe):
    """2x the cap of never-finishing clients, renewed as the engine
    closes them: handshaking never exceeds the cap, clients past it are
    refused and the stuck ones time out (both counted, every client
    once), and a good client subscribes and gets a publish."""
    with rc.Engine(exe, "--shards", "1", "--tls-max-handshakes", str(CAP),
                   "--handshake-timeout", "2s") as eng:
        refused = [0]
        before = tls_stats(eng, refused)
        expect(before is not None, "/stats refused before any flood")
        seen = []

        async def good_client():
            ws = await retried("wss subscribe", refused, lambda: rc.ws_connect(
                    eng.url("/ws"), open_timeout=10))
            try:
                m = await rc.ws_command(ws, "subscribe", 1,
                                        channels=["flood"])
                expect(m.get("code") == 200, "subscribe: %s", m)

                async def pub():
                    st, body = await asyncio.get_running_loop(
                            ).run_in_executor(None, rc.api, eng, "POST",
                                              "/publish/flood", b'{"n":1}')
                    expect_eq(st, 200, "publish status")
                await retried("https publish", refused, pub)
                push = json.loads(await rc.ws_recv(ws, 60))
                expect(push.get("cmd") == "push"
                       and push.get("data") == {"n": 1},
                       "push: %s", rc.short(push, 200))
            finally:
                await ws.close()

        flood = Flood(eng)
        flood.start()
        try:
            deadline = time.monotonic() + 60
            # the flood fills the cap; the first CAP stuck clients must
            # reach their deadline (renewals keep it full meanwhile)
            while flood.error is None:
                t = tls_stats(eng, refused)
                if t is not None:
                    seen.append(t["handshaking"])
                    if t["failed"]["timeout"] >= \
                            before["failed"]["timeout"] + CAP:
                        break
                expect(time.monotonic() < deadline, "%d stuck clients "
                       "timed out within 60s, want %d", t and
                       t["failed"]["timeout"], CAP)
                time.sleep(0.05)
            asyncio.run(asyncio.wait_for(good_client(), 150))
            t = tls_stats(eng, refused)
            if t is not None:
                seen.append(t["handshaking"])
        finally:
            flood.stop()
        expect(flood.error is None, "flood: %s", flood.error)
        expect(seen and max(seen) <= CAP, "handshaking %s, cap %d",
               seen, CAP)
        deadline = time.monotonic() + 60
        while True:
            t = tls_stats(eng, refused)
            if t is not None and t["handshaking"] == 0:
                break
            expect(time.monotonic() < deadline, "handshaking %s after "
                   "the flood", t)
            time.sleep(0.05)
        d = {k: t["failed"][k] - before["failed"][k] for k in t["failed"]}
        print("flood: %d stuck clients, %d requests refused, failures %s, "
              "handshaking at most %d" % (flood.opens, refused[0], d,
                                          max(seen)))
        expect(d["cap"] >= 1, "no client refused at the cap: %s", d)
        expect(d["timeout"] >= 1, "no stuck client timed out: %s", d)
        expect_eq(all_failed(t) - all_failed(before),
                  flood.opens + refused[0],
                  "failures counted (flood %d, refused requests %d, by "
                  "reason %s)" % (flood.opens, refused[0], d))


def check_garbage(exe):
    """GARBAGE clients that send an HTTP request to the TLS port: each is
    closed with nothing sent back and counted, and the engine's RSS does
    not grow with them."""
    with rc.Engine(exe, "--shards", "1") as eng:
        refused = [0]
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

        def batch(n):
            socks = [raw_connect(eng) for _ in range(n)]
            try:
                for s in socks:
                    s.sendall(req)
                for s in socks:
                    data, closed = rc.recv_until_eof(s)
                    expect(closed and not data, "garbage client: closed %s,"
                           " got %s", closed, rc.short(data))
            finally:
                for s in socks:
                    s.close()

        batch(GARBAGE_BATCH)		# warm the allocator's pages
        before = tls_stats(eng, refused)
        rss0 = rc.vm_rss_kb(eng.proc.pid)
        for _ in range(GARBAGE // GARBAGE_BATCH):
            batch(GARBAGE_BATCH)
        deadline = time.monotonic() + 60
        while True:
            t = tls_stats(eng, refused)
            if t and t["failed"]["garbage"] >= before["failed"]["garbage"] \
                    + GARBAGE:
                break
            expect(time.monotonic() < deadline, "garbage counted: %s", t)
            time.sleep(0.05)
        expect_eq(t["failed"]["garbage"] - before["failed"]["garbage"],
                  GARBAGE, "garbage clients counted")
        expect_eq(t["handshaking"], 0, "handshaking after garbage")
        grew = rc.vm_rss_kb(eng.proc.pid) - rss0
        print("rss grew %d KiB over %d garbage clients" % (grew, GARBAGE))
        if rc.uses_mimalloc(exe):
            expect(grew < GARBAGE_RSS_KIB, "RSS grew %d KiB over %d garbage "
                   "clients", grew, GARBAGE)


def checks(run):
    run.check("flood", check_flood, run.exe, timeout=240)
    run.check("garbage", check_garbage, run.exe, timeout=240)


if __name__ == "__main__":
    # every Engine here speaks TLS, as on the tls axis
    rc.TLS = True
    rc.main("tls_flood", checks)
