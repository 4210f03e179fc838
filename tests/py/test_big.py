# SPDX-License-Identifier: MIT
"""38,000 WebSockets held at once against --shards 2 (suite stress).

More than one client process is needed: each process may hold at most
20000 fds, and one source address has only 28k ephemeral ports, so each
loadclient.py binds its own source address (127.0.0.2, .3, ...).  With
all connections open the engine must still answer /healthz and a fresh
echo; then every connection echoes one unique message; then SIGTERM must
close every one of them with 1001 and the engine must exit 0."""

import asyncio
import os
import signal
import sys
import time

import rc
from rc import expect, expect_eq

TOTAL = 38000
PROCS = 4
PER_PROC = TOTAL // PROCS
HANDSHAKES = 250        # per process: 1000 handshakes in flight at most


def log(msg):
    print("  [%6.1fs] %s" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


T0 = time.monotonic()


class Proc:
    def __init__(self, name, proc):
        self.name = name
        self.proc = proc

    async def line(self, word, timeout):
        """Next line starting with @word; returns its fields after it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            expect(left > 0, "%s: no '%s' line within %ss", self.name, word,
                   timeout)
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(),
                                             left)
            except asyncio.TimeoutError:
                continue
            expect(raw, "%s exited (status %s) before '%s'", self.name,
                   self.proc.returncode, word)
            fields = raw.decode().split()
            if fields and fields[0] == "error":
                # Fail at the first error rather than after every stuck
                # handshake has timed out.
                raise AssertionError("%s: %s" % (self.name,
                                                 " ".join(fields[1:])))
            elif fields and fields[0] == "progress" and word != "progress":
                if int(fields[1]) % 5000 == 0:
                    log("%s: %s open, %s failed, rss %s KiB"
                        % (self.name, fields[1], fields[2], fields[3]))
            elif fields and fields[0] == word:
                return [int(f) for f in fields[1:]]

    def send(self, word):
        self.proc.stdin.write(word.encode() + b"\n")


async def healthy(eng, what):
    r = await asyncio.to_thread(rc.http_request, eng.host, eng.port,
                                b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n", None, 30)
    expect_eq((r.status, r.body), (200, b"ok\n"), "/healthz %s" % what)
    async with rc.ws_connect(eng.url(), open_timeout=30) as ws:
        await ws.send("fresh client " + what)
        expect_eq(await rc.ws_recv(ws, 30), "fresh client " + what,
                  "fresh echo %s" % what)


async def check_big(eng):
    procs = []
    try:
        for i in range(PROCS):
            p = await asyncio.create_subprocess_exec(
                sys.executable, os.path.join(rc.HERE, "loadclient.py"),
                "--url", eng.url(), "--count", str(PER_PROC),
                "--local-addr", "127.0.0.%d" % (i + 2),
                "--handshakes", str(HANDSHAKES), "--name", "lc%d" % i,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                preexec_fn=rc.die_with_parent)
            procs.append(Proc("lc%d" % i, p))

        ready = await asyncio.gather(*(p.line("ready", 400) for p in procs))
        opened = sum(r[0] for r in ready)
        log("open: %d, failed: %d" % (opened, sum(r[1] for r in ready)))
        for p, (ok, failed) in zip(procs, ready):
            expect(ok == PER_PROC and failed == 0, "%s opened %d of %d",
                   p.name, ok, PER_PROC)
        expect_eq(opened, TOTAL, "connections held at once")

        await healthy(eng, "with %d open" % TOTAL)
        for p in procs:
            p.send("go")
        results = await asyncio.gather(*(p.line("result", 200)
                                         for p in procs))
        log("echo results: %s" % results)
        for p, (ok, bad) in zip(procs, results):
            expect(ok == PER_PROC and bad == 0, "%s: %d echoes ok, %d bad",
                   p.name, ok, bad)
        await healthy(eng, "after the echoes")

        eng.send_signal(signal.SIGTERM)
        closed = await asyncio.gather(*(p.line("closed", 200)
                                        for p in procs))
        log("closes (shutdown, other): %s" % closed)
        for p, (down, other) in zip(procs, closed):
            expect(down == PER_PROC and other == 0, "%s: %d closed with "
                   "1001 'server shutting down', %d otherwise", p.name,
                   down, other)
        status = await asyncio.to_thread(eng.wait, 60)
        expect_eq(status, 0, "engine exit status after SIGTERM")
        for p in procs:
            expect_eq(await asyncio.wait_for(p.proc.wait(), 60), 0,
                      "%s exit status" % p.name)
    finally:
        for p in procs:
            if p.proc.returncode is None:
                p.proc.kill()
                await p.proc.wait()


def checks(run):
    with run.section(), rc.Engine(run.exe, "--echo", "--shards", "2",
                                  "--max-conns", str(TOTAL + 1000)) as eng:
        run.check("38k-conns", check_big, eng, timeout=540)


if __name__ == "__main__":
    rc.main("big", checks)
