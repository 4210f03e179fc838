# SPDX-License-Identifier: MIT
"""1000 websockets clients held open at once against --shards 2; then each
echoes 10 messages of its own (half lock-step, half pipelined, text and
binary mixed) and every reply is checked against what that client sent.
Finally each client closes with 1000 and must get 1000 back."""

import asyncio
import os

import rc
from rc import expect

CLIENTS = 1000
MESSAGES = 10
HANDSHAKES = 200        # bound on handshakes in flight, not on clients


def message(i, j):
    """Unique per client and message; every 3rd one binary."""
    tag = "client %d message %d " % (i, j)
    if j % 3 == 2:
        return tag.encode() + os.urandom(16 + (i * 7 + j) % 300)
    return tag + "\u03ba\u1f79\u03c3\u03bc\u03b5" * ((i + j) % 40)


async def client(url, i, sem, all_up, state):
    async with sem:
        try:
            ws = await rc.ws_connect(url, open_timeout=30)
        finally:
            # Everyone waits for every handshake to be tried, not for a
            # time: on a loaded machine the last may come minutes later.
            state["tried"] += 1
            if state["tried"] == CLIENTS:
                all_up.set()
    try:
        state["up"] += 1
        await all_up.wait()
        msgs = [message(i, j) for j in range(MESSAGES)]
        if i % 2:
            for m in msgs:
                await ws.send(m)
            got = [await rc.ws_recv(ws, 30) for _ in msgs]
        else:
            got = []
            for m in msgs:
                await ws.send(m)
                got.append(await rc.ws_recv(ws, 30))
        for j, (g, m) in enumerate(zip(got, msgs)):
            if g != m:
                state["bad"].append("client %d message %d: got %s, want %s"
                                    % (i, j, rc.short(g), rc.short(m)))
        state["verified"] += sum(g == m for g, m in zip(got, msgs))
    finally:
        await ws.close()
    if ws.close_code != 1000:
        state["bad"].append("client %d: close code %s, want 1000"
                            % (i, ws.close_code))


async def check_many_clients(eng):
    url = eng.url()
    sem = asyncio.Semaphore(HANDSHAKES)
    all_up = asyncio.Event()
    state = {"tried": 0, "up": 0, "verified": 0, "bad": []}
    results = await asyncio.gather(
        *(client(url, i, sem, all_up, state) for i in range(CLIENTS)),
        return_exceptions=True)
    errors = [(i, r) for i, r in enumerate(results) if r is not None]
    for i, e in errors[:10]:
        print("  client %d: %s: %s" % (i, type(e).__name__, e))
    for b in state["bad"][:10]:
        print("  " + b)
    expect(not errors, "%d clients raised (first: %s)", len(errors),
           errors[:1])
    expect(state["up"] == CLIENTS, "only %d of %d clients connected",
           state["up"], CLIENTS)
    expect(not state["bad"], "%d bad replies or closes", len(state["bad"]))
    expect(state["verified"] == CLIENTS * MESSAGES, "verified %d of %d",
           state["verified"], CLIENTS * MESSAGES)


async def check_still_serving(eng):
    async with rc.ws_connect(eng.url()) as ws:
        await ws.send("after the crowd")
        expect(await rc.ws_recv(ws) == "after the crowd", "echo after")


def checks(run):
    with run.section(), rc.Engine(run.exe, "--echo", "--shards", "2") as eng:
        run.check("1000-clients", check_many_clients, eng, timeout=240)
        run.check("still-serving", check_still_serving, eng)


if __name__ == "__main__":
    rc.main("concurrency", checks)
