# SPDX-License-Identifier: MIT
"""Timers: --handshake-timeout drops a connection that has not upgraded
(no response, TCP closed) but not one that has; --idle-timeout closes a
silent WebSocket with 1001 "idle timeout"; --ping-interval sends pings,
and a client that answers them stays open well past the idle timeout
while one that ignores them is still closed for idleness; a protocol
error after the idle close brings no second close frame; an idle HTTP
keep-alive connection lasts --http-idle-timeout, not the handshake's."""

import asyncio
import select
import socket
import threading
import time

import rc
from rc import OP_TEXT, OP_CLOSE, OP_PING, OP_PONG
from rc import expect, expect_eq

# Upper bound for a 1-2 s timer to fire: only detects a hang.
TIMER_BOUND = 15


def expect_dropped(s, what):
    data, closed = rc.recv_until_eof(s, TIMER_BOUND)
    expect(closed, "%s: still open after %ss", what, TIMER_BOUND)
    expect_eq(data, b"", "%s: bytes before the drop" % what)


async def check_handshake_timeout(eng):
    async with rc.ws_connect(eng.url(), ping_interval=None) as ws:
        await ws.send("upgraded before the timer")
        await rc.ws_recv(ws)
        half = rc.connect(eng.host, eng.port)
        silent = rc.connect(eng.host, eng.port)
        with half, silent:
            req = rc.upgrade_request(host=eng.host)
            half.sendall(req[:len(req) // 2])
            await asyncio.to_thread(expect_dropped, half, "half request")
            await asyncio.to_thread(expect_dropped, silent,
                                    "silent connection")
        # The handshake timer must not touch an upgraded connection,
        # which by now has lived longer than the timeout.
        expect(ws.open, "upgraded connection closed (code %s)",
               ws.close_code)
        await ws.send("still here")
        expect_eq(await rc.ws_recv(ws), "still here", "echo after timer")


async def check_idle_timeout(eng):
    async with rc.ws_connect(eng.url(), ping_interval=None) as ws:
        code, reason = await rc.ws_await_close(ws, TIMER_BOUND)
        expect_eq((code, reason), (1001, "idle timeout"), "close")


def check_idle_timeout_raw(eng):
    with rc.RawWs(eng.host, eng.port, timeout=TIMER_BOUND) as ws:
        ws.echo(OP_TEXT, b"one message, then silence")
        # --ping-interval 0: the first frame must be the close, no ping.
        ws.expect_close(1001, reason="idle timeout")


def check_no_second_close(eng):
    """A protocol error after the server's own close (an unmasked frame
    in reply to the idle close) brings no second close frame (RFC 6455
    5.5.1): the server only finishes closing."""
    with rc.RawWs(eng.host, eng.port, timeout=TIMER_BOUND) as ws:
        ws.echo(OP_TEXT, b"one message, then silence")
        f = ws.recv_frame()
        expect_eq((f.op, f.close_code()), (OP_CLOSE, 1001), "idle close")
        ws.send(OP_TEXT, b"unmasked, after the close", mask=False)
        ws.expect_eof()


def answer_pings(ws, until, stop_pings=3):
    """Reads frames, answering each ping, until @until() is true after
    at least @stop_pings pings.  Returns the number of pings seen."""
    pings = 0
    while pings < stop_pings or not until():
        f = ws.recv_frame()
        expect(f.op != OP_CLOSE, "closed (code %r) after %d pings",
               f.close_code(), pings)
        expect_eq(f.op, OP_PING, "server frame op")
        ws.send(OP_PONG, f.payload)
        pings += 1
    return pings


def ignore_pings(ws):
    """Never sends a byte; counts pings until the server closes."""
    pings = 0
    deadline = time.monotonic() + TIMER_BOUND
    while True:
        f = ws.recv_frame()
        if f.op != OP_PING:
            break
        pings += 1
        expect(time.monotonic() < deadline, "silent client still open "
               "after %ss and %d pings", TIMER_BOUND, pings)
    expect_eq(f.op, OP_CLOSE, "frame after pings")
    expect_eq(f.close_code(), 1001, "close code for a silent client")
    expect_eq(f.payload[2:], b"idle timeout", "close reason")
    ws.expect_eof()
    return pings


async def check_pings_keep_alive(eng, idle=2.0):
    done = threading.Event()
    async with rc.ws_connect(eng.url(), ping_interval=None) as ws:
        t0 = time.monotonic()

        def responsive():
            with rc.RawWs(eng.host, eng.port, timeout=TIMER_BOUND) as r:
                # Past 1.5 idle timeouts, measured on our side.
                n = answer_pings(r, lambda: time.monotonic() - t0 >
                                 1.5 * idle)
                r.echo(OP_TEXT, b"alive after %d pings" % n)
                r.send_close(1000)
                r.expect_close(1000)
            done.set()
            return n

        def silent():
            with rc.RawWs(eng.host, eng.port, timeout=TIMER_BOUND) as r:
                return ignore_pings(r)

        pongs, ignored = await asyncio.gather(asyncio.to_thread(responsive),
                                              asyncio.to_thread(silent))
        expect(ignored >= 1, "silent client saw no ping before its close")
        # websockets answers pings itself; it sent nothing else.
        expect(done.is_set(), "responsive client did not finish")
        expect(ws.open, "websockets client closed (code %s, reason %r)",
               ws.close_code, ws.close_reason)
        await ws.send("websockets client alive")
        expect_eq(await rc.ws_recv(ws), "websockets client alive",
                  "websockets echo")


def get_healthz(s, host, close=False):
    """GET /healthz on socket @s; returns the Response."""
    s.sendall(("GET /healthz HTTP/1.1\r\nHost: %s\r\n%s\r\n"
               % (host, "Connection: close\r\n" if close else ""))
              .encode())
    r, rest = rc.read_response(s)
    expect_eq((r.status, rest), (200, b""), "/healthz answer")
    return r


def expect_clean_close(s, what):
    """Waits (bounded) for the server to close @s with a FIN, no bytes."""
    s.settimeout(TIMER_BOUND)
    try:
        data = s.recv(4096)
    except socket.timeout:
        raise AssertionError("%s: still open after %ss" % (what, TIMER_BOUND))
    except ConnectionResetError:
        raise AssertionError("%s: reset, not closed" % what)
    expect_eq(data, b"", "%s: bytes before the close" % what)


def publish_split(s, host):
    """POST /publish/ka whose body comes in a read of its own: it is sent
    once the 100 Continue for the head is here."""
    s.sendall(("POST /publish/ka HTTP/1.1\r\nHost: %s\r\nContent-Length: 2"
               "\r\nExpect: 100-continue\r\n\r\n" % host).encode())
    head, rest = rc.read_head(s)
    expect(head.startswith(b"HTTP/1.1 100 "), "no 100 Continue: %r", head)
    s.sendall(b"{}")
    r, rest = rc.read_response(s, rest)
    expect_eq((r.status, rest), (200, b""), "publish answer")
    return r


def check_http_keep_alive(eng):
    """An idle keep-alive connection outlives --handshake-timeout (a
    connection opened after its answer is dropped first, on the same
    shard) and serves the next request, whether its last request came in
    one read or two; idle for --http-idle-timeout it is closed with a
    FIN. Keep-alive answers say Keep-Alive: timeout=N, the last one
    Connection: close."""
    with rc.connect(eng.host, eng.port) as a, \
            rc.connect(eng.host, eng.port) as b:
        kept = ((a, "after a GET", get_healthz),
                (b, "after a POST read in two pieces", publish_split))
        for s, what, first in kept:
            r = first(s, eng.host)
            expect_eq(r.header("Keep-Alive"), "timeout=3",
                      "Keep-Alive %s" % what)
            expect(not r.has_token("Connection", "close"),
                   "Connection: close on a kept connection: %r", r)
        with rc.connect(eng.host, eng.port) as silent:
            expect_dropped(silent, "connection opened after the answers")
        for s, what, _ in kept:
            readable, _, _ = select.select([s], [], [], 0)
            expect(not readable, "idle keep-alive connection %s closed by "
                   "the handshake timeout" % what)
            get_healthz(s, eng.host)
        for s, what, _ in kept:
            expect_clean_close(s, "keep-alive connection idle past "
                               "--http-idle-timeout")
    with rc.connect(eng.host, eng.port) as one:
        r = get_healthz(one, eng.host, close=True)
        expect(r.has_token("Connection", "close"),
               "no Connection: close when closing: %r", r)
        expect_eq(r.header("Keep-Alive"), None, "Keep-Alive when closing")
        expect_clean_close(one, "Connection: close request")


def check_http_partial_after_answer(eng):
    """A request begun in the read that brought the one before it has the
    handshake timeout from its first byte, not the idle time: it is
    dropped while a connection answered just before it is still open."""
    req = ("GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n" % eng.host).encode()
    with rc.connect(eng.host, eng.port) as idle, \
            rc.connect(eng.host, eng.port) as slow:
        get_healthz(idle, eng.host)
        slow.sendall(req + req[:10])
        r, rest = rc.read_response(slow)
        expect_eq((r.status, rest), (200, b""), "first answer")
        expect_dropped(slow, "request begun after an answer")
        readable, _, _ = select.select([idle], [], [], 0)
        expect(not readable, "the idle connection closed first: the begun "
               "request had the idle timeout")


def checks(run):
    configs = (
        (("--handshake-timeout", "1s"),
         [("handshake-timeout", check_handshake_timeout)]),
        (("--idle-timeout", "1s", "--ping-interval", "0"),
         [("idle-timeout", check_idle_timeout),
          ("idle-timeout-raw", check_idle_timeout_raw),
          ("no-second-close", check_no_second_close)]),
        (("--idle-timeout", "1500ms", "--ping-interval", "0"),
         [("idle-timeout-ms", check_idle_timeout)]),
        (("--ping-interval", "300ms", "--idle-timeout", "2s"),
         [("pings-keep-alive", check_pings_keep_alive)]),
        # one shard: the silent connection's timer is on the same wheel
        (("--shards", "1", "--handshake-timeout", "250ms",
          "--http-idle-timeout", "3s"),
         [("http-keep-alive", check_http_keep_alive),
          ("http-partial-after-answer", check_http_partial_after_answer)]),
    )
    for args, checks in configs:
        with run.section("engine " + " ".join(args)), \
                rc.Engine(run.exe, "--echo", "--shards", "2", *args) as eng:
            for name, fn in checks:
                run.check(name, fn, eng)


if __name__ == "__main__":
    rc.main("timeouts", checks)
