# SPDX-License-Identifier: MIT
"""SIGTERM and SIGINT: every open WebSocket (python websockets, a raw
client in the middle of a fragmented message, Node's `ws` module) gets
close 1001 and then TCP close, a half-done handshake is dropped, and the
engine exits with status 0."""

import asyncio
import os
import signal

import rc
from rc import OP_TEXT, OP_PING, OP_PONG
from rc import expect, expect_eq

CLIENTS = 4


def raw_mid_message(ws):
    """After the signal: the close must still come, mid-message."""
    ws.expect_close(1001)


async def check_signal(exe, sig):
    with rc.Engine(exe, "--echo", "--shards", "2") as eng:
        clients = []
        for i in range(CLIENTS):
            ws = await rc.ws_connect(eng.url(), ping_interval=None)
            clients.append(ws)
            await ws.send("client %d" % i)
            expect_eq(await rc.ws_recv(ws), "client %d" % i, "echo")
        raw = rc.RawWs(eng.host, eng.port)
        half = rc.connect(eng.host, eng.port)
        with raw, half:
            raw.send(OP_TEXT, b"open message", fin=False)
            raw.send(OP_PING, b"sync")
            f = raw.recv_frame()
            expect_eq((f.op, f.payload), (OP_PONG, b"sync"), "pong")
            half.sendall(rc.upgrade_request(host=eng.host)[:20])

            eng.send_signal(sig)
            for i, ws in enumerate(clients):
                code, _ = await rc.ws_await_close(ws, 20)
                expect_eq(code, 1001, "client %d close code" % i)
            await asyncio.to_thread(raw_mid_message, raw)
            _, closed = await asyncio.to_thread(rc.recv_until_eof, half, 20)
            expect(closed, "half-done handshake not closed on shutdown")
        status = await asyncio.to_thread(eng.wait)
        expect_eq(status, 0, "exit status after %s"
                  % signal.Signals(sig).name)


async def check_node(exe):
    with rc.Engine(exe, "--echo") as eng:
        env = dict(os.environ, NODE_PATH=rc.node_path())
        node = await asyncio.create_subprocess_exec(
            "node", os.path.join(rc.HERE, "node_client.js"), eng.url(),
            env=env, stdout=asyncio.subprocess.PIPE)
        try:
            line = await asyncio.wait_for(node.stdout.readline(), 20)
            expect_eq(line.strip(), b"echoed", "node client")
            eng.send_signal(signal.SIGTERM)
            line = await asyncio.wait_for(node.stdout.readline(), 20)
            expect(line.startswith(b"close 1001"),
                   "node client on SIGTERM: %r, want 'close 1001'", line)
            expect_eq(await asyncio.wait_for(node.wait(), 20), 0,
                      "node client exit status")
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
        expect_eq(await asyncio.to_thread(eng.wait), 0, "engine exit status")


def check_idle_engine(exe):
    for sig in (signal.SIGTERM, signal.SIGINT):
        with rc.Engine(exe) as eng:
            eng.stop(sig)


def checks(run):
    run.check("idle-engine", check_idle_engine, run.exe)
    run.check("sigterm", check_signal, run.exe, signal.SIGTERM)
    run.check("sigint", check_signal, run.exe, signal.SIGINT)
    run.check("node-ws", check_node, run.exe)


if __name__ == "__main__":
    rc.main("shutdown", checks)
