# SPDX-License-Identifier: MIT
"""/echo with a real client (python websockets): text and binary messages
at every length-encoding boundary up to the 1 MiB default limit,
fragmented messages, ping/pong payloads, and many pipelined messages
coming back in order."""

import asyncio
import os
import random

import rc
from rc import expect, expect_eq

SIZES = (0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20)
CHARS = ("a", "Z", "~", "\u00e9", "\u03ba", "\u20ac", "\ud55c",
         "\U0001f600", "\U00010348")


def text_of(n, rnd):
    """A str whose UTF-8 encoding is exactly @n bytes, mixing 1- to
    4-byte sequences so the engine's UTF-8 check sees all of them."""
    parts, size = [], 0
    while size < n:
        c = rnd.choice(CHARS)
        b = len(c.encode())
        if size + b > n:
            c, b = "x", 1
        parts.append(c)
        size += b
    s = "".join(parts)
    assert len(s.encode()) == n
    return s


async def check_sizes(eng):
    rnd = random.Random(1)
    async with rc.ws_connect(eng.url()) as ws:
        for n in SIZES:
            msg = text_of(n, rnd)
            await ws.send(msg)
            got = await rc.ws_recv(ws)
            expect(isinstance(got, str), "text %d came back as %s", n,
                   type(got).__name__)
            expect(got == msg, "text of %d bytes: echo differs (len %d)",
                   n, len(got.encode()))
            data = os.urandom(n)
            await ws.send(data)
            got = await rc.ws_recv(ws)
            expect(isinstance(got, bytes), "binary %d came back as %s", n,
                   type(got).__name__)
            expect(got == data, "binary of %d bytes: echo differs "
                   "(len %d)", n, len(got))


async def check_fragmented(eng):
    rnd = random.Random(2)
    async with rc.ws_connect(eng.url()) as ws:
        cases = [
            ["Hello, ", "fragmented ", "world"],
            ["", "empty first and last", ""],
            [text_of(1000, rnd) for _ in range(5)],
            [text_of(65536, rnd) for _ in range(16)],    # 1 MiB total
            [b"\x00\x01", b"", b"\xff" * 300],
            [os.urandom(70000), os.urandom(1)],
            [os.urandom(65536) for _ in range(16)],      # 1 MiB total
        ]
        for frags in cases:
            await ws.send(frags)
            got = await rc.ws_recv(ws)
            want = frags[0][:0].join(frags)
            expect_eq(type(got), type(want), "type of %d-fragment echo"
                      % len(frags))
            expect(got == want, "%d fragments of %s: echo differs",
                   len(frags), [len(f) for f in frags])
        # A message after the fragmented ones still echoes alone.
        await ws.send("after")
        expect_eq(await rc.ws_recv(ws), "after", "message after fragments")


async def check_ping(eng):
    async with rc.ws_connect(eng.url(), ping_interval=None) as ws:
        for payload in (b"", b"x", b"ping payload", os.urandom(125)):
            waiter = await ws.ping(payload)
            # websockets resolves the waiter only for a pong carrying
            # the same payload, so this checks the echo of the payload.
            await asyncio.wait_for(waiter, rc.IO_TIMEOUT)
        await ws.send("still open")
        expect_eq(await rc.ws_recv(ws), "still open", "echo after pings")


async def check_pipelined(eng):
    count = 3000
    msgs = []
    for i in range(count):
        if i % 3 == 0:
            msgs.append(b"bin-%d-" % i + os.urandom(i % 200))
        else:
            msgs.append("text-%d-%s" % (i, "\u03ba" * (i % 50)))

    async with rc.ws_connect(eng.url(), max_queue=None) as ws:
        async def writer():
            for m in msgs:
                await ws.send(m)
        w = asyncio.create_task(writer())
        for i, m in enumerate(msgs):
            got = await rc.ws_recv(ws)
            if got != m:
                raise AssertionError("pipelined message %d: got %s, want "
                                     "%s" % (i, rc.short(got), rc.short(m)))
        await asyncio.wait_for(w, rc.IO_TIMEOUT)


async def check_two_clients(eng):
    """Two connections at once do not see each other's echoes."""
    async with rc.ws_connect(eng.url()) as a, rc.ws_connect(eng.url()) as b:
        for i in range(50):
            await a.send("a%d" % i)
            await b.send(b"b%d" % i)
        for i in range(50):
            expect_eq(await rc.ws_recv(a), "a%d" % i, "client a echo")
            expect_eq(await rc.ws_recv(b), b"b%d" % i, "client b echo")


async def check_large(eng):
    """Autobahn 9.1/9.2-sized messages, whole and in 64 KiB fragments."""
    rnd = random.Random(3)
    big_text = text_of(16 << 20, rnd)
    big_bin = os.urandom(16 << 20)
    async with rc.ws_connect(eng.url(), ping_interval=None) as ws:
        for msg in (big_text, big_bin):
            await ws.send(msg)
            got = await rc.ws_recv(ws, 60)
            expect(got == msg, "16 MiB %s: echo differs",
                   type(msg).__name__)
        frags = [big_bin[i:i + 65536] for i in range(0, 4 << 20, 65536)]
        await ws.send(frags)
        got = await rc.ws_recv(ws, 60)
        expect(got == big_bin[:4 << 20], "4 MiB in 64 KiB fragments: "
               "echo differs")


def checks(run):
    with run.section(), rc.Engine(run.exe, "--echo", "--shards", "2") as eng:
        run.check("sizes", check_sizes, eng)
        run.check("fragmented", check_fragmented, eng)
        run.check("ping", check_ping, eng)
        run.check("pipelined", check_pipelined, eng)
        run.check("two-clients", check_two_clients, eng)
    with run.section("engine --max-message 16M"), \
            rc.Engine(run.exe, "--echo", "--max-message", "16M") as eng:
        run.check("large", check_large, eng, timeout=120)


if __name__ == "__main__":
    rc.main("echo", checks)
