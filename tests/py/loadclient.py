# SPDX-License-Identifier: MIT
"""Load helper for test_big.py: one process holding many idle WebSockets.

    loadclient.py --url URL --count K [--local-addr IP] [--handshakes N]
                  [--name NAME] [--ca FILE]

(--ca: a wss:// URL's server certificate is checked against FILE.)

Talks to its parent through lines on stdout and stdin:
    progress OPEN FAILED RSS_KB     every 1000 handshakes
    ready OPEN FAILED               all handshakes tried; waits for "go"
    result OK BAD                   after "go": one unique message per
                                    connection echoed and compared
    closed SHUTDOWN OTHER           every connection closed by the server
                                    (the parent sends the engine SIGTERM):
                                    SHUTDOWN with 1001 "server shutting
                                    down", OTHER otherwise (an idle
                                    timeout's 1001 among them)
    error TEXT                      up to 10 samples of what went wrong
It exits 0 after "closed", or 1 when stdin reaches EOF first (the parent
is gone).  Each connection keeps only its websockets protocol object.
"""

import argparse
import asyncio
import os
import resource
import ssl
import sys

import websockets

SHUTDOWN = "1001 server shutting down"      # the close SIGTERM brings

def say(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


class Load:
    def __init__(self, args):
        self.args = args
        self.conns = []
        self.failed = 0
        self.errors = 0

    def error(self, text):
        self.errors += 1
        if self.errors <= 10:
            say("error", text)

    async def open_one(self, sem, i):
        kw = {}
        if self.args.local_addr:
            kw["local_addr"] = (self.args.local_addr, 0)
        if self.args.ca:
            kw["ssl"] = ssl.create_default_context(cafile=self.args.ca)
        async with sem:
            try:
                ws = await websockets.connect(
                    self.args.url, compression=None, ping_interval=None,
                    open_timeout=30, close_timeout=30, max_size=1 << 16,
                    max_queue=1, read_limit=1 << 12, write_limit=1 << 12,
                    **kw)
            except Exception as e:
                self.failed += 1
                self.error("connect %d: %s: %s" % (i, type(e).__name__, e))
                return
        self.conns.append(ws)
        n = len(self.conns) + self.failed
        if n % 1000 == 0:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            say("progress", len(self.conns), self.failed, rss)

    async def echo_one(self, i, ws):
        msg = "%s:%d:%s" % (self.args.name, i, os.urandom(6).hex())
        try:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 120)
        except Exception as e:
            self.error("echo %d: %s: %s" % (i, type(e).__name__, e))
            return False
        if got != msg:
            self.error("echo %d: got %r, want %r" % (i, got[:80], msg))
            return False
        return True

    async def closed_code(self, ws):
        """The server's close as "CODE REASON", None if none came."""
        try:
            await asyncio.wait_for(ws.wait_closed(), 300)
        except asyncio.TimeoutError:
            return None
        return "%s %s" % (ws.close_code, ws.close_reason)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--local-addr")
    p.add_argument("--handshakes", type=int, default=500)
    p.add_argument("--name", default=str(os.getpid()))
    p.add_argument("--ca")
    args = p.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin),
                                 sys.stdin)

    async def wait_line(word):
        while True:
            line = await stdin.readline()
            if not line:
                say("error", "stdin closed while waiting for", word)
                sys.exit(1)
            if line.strip() == word.encode():
                return

    load = Load(args)
    sem = asyncio.Semaphore(args.handshakes)
    await asyncio.gather(*(load.open_one(sem, i) for i in range(args.count)))
    say("ready", len(load.conns), load.failed)

    await wait_line("go")
    oks = await asyncio.gather(*(load.echo_one(i, ws)
                                 for i, ws in enumerate(load.conns)))
    say("result", sum(oks), len(oks) - sum(oks))

    codes = await asyncio.gather(*(load.closed_code(ws)
                                   for ws in load.conns))
    others = [c for c in codes if c != SHUTDOWN]
    for c in sorted(set(others), key=str)[:10]:
        say("error", "close %r x%d" % (c, others.count(c)))
    say("closed", len(codes) - len(others), len(others))


if __name__ == "__main__":
    asyncio.run(main())
