# SPDX-License-Identifier: MIT
"""Memory that clients control with messages they have not finished.

- announced: a frame header announcing 3 MiB, followed by 100 bytes,
  costs what arrived (/stats partial_bytes and partial_alloc), not what
  the header announced.
- fragments: while a fragmented message is assembled, the bytes carried
  between reads are given back once consumed: what is allocated stays
  within twice what is held.
- budget (--max-partial-memory 4M, one shard): A holds 2.5 MiB of a
  message, then B sends 2 MiB of its own; past the budget A, which holds
  the most, is closed with 1009, B is not, and B's message completes and
  comes back whole; the counters return to 0.
- purge: 40 clients each holding 1 MiB, then gone: the engine's RSS comes
  back down (mimalloc builds; a sanitizer build uses libc malloc).
"""


import rc
from rc import OP_BINARY, OP_CONT, expect, expect_eq

MIB = 1 << 20


def partial(eng):
    t = rc.stats(eng)["total"]
    return t["partial_bytes"], t["partial_alloc"], t["partial_closed"]


def await_held(eng, pred, what):
    return rc.wait_stats(eng, lambda s: pred(s["total"]["partial_bytes"]),
                         what)["total"]


def check_announced(eng):
    conns = []
    try:
        for _ in range(20):
            ws = rc.RawWs(eng.host, eng.port)
            frame = rc.build_frame(OP_BINARY, b"a" * (3 * MIB))
            ws.send_raw(frame[:14 + 100])	# 2 + 8 + 4 bytes of header
            conns.append(ws)
        t = await_held(eng, lambda v: v == 20 * 114,
                       "20 x 114 bytes held")
        expect(t["partial_alloc"] <= 20 * 4096, "allocated for 20 frames "
               "that announced 3 MiB and sent 100 bytes: %d",
               t["partial_alloc"])
    finally:
        for ws in conns:
            ws.close()
    await_held(eng, lambda v: v == 0, "nothing held after the closes")


def check_fragments(eng):
    ws = rc.RawWs(eng.host, eng.port)
    try:
        first = rc.build_frame(OP_BINARY, b"f" * (800 << 10), fin=False)
        # in pieces, so that the fragment is carried over several reads
        for k in range(0, len(first), 64 << 10):
            ws.send_raw(first[k:k + (64 << 10)])
        t = await_held(eng, lambda v: v == 800 << 10,
                       "the first fragment assembled")
        expect(t["partial_alloc"] <= 2 * t["partial_bytes"] + 4096,
               "allocated %d for %d held: carried bytes kept after use",
               t["partial_alloc"], t["partial_bytes"])
        ws.send(OP_CONT, b"g" * 1000, fin=True)
        f = ws.recv_frame()
        expect_eq((f.op, len(f.payload)), (OP_BINARY, (800 << 10) + 1000),
                  "the echo of the whole message")
    finally:
        ws.close()
    await_held(eng, lambda v: v == 0, "nothing held after the message")


def check_budget(eng):
    a = rc.RawWs(eng.host, eng.port)
    b = rc.RawWs(eng.host, eng.port)
    try:
        fa = rc.build_frame(OP_BINARY, b"A" * (3 * MIB + MIB // 2))
        fb = rc.build_frame(OP_BINARY, b"B" * (3 * MIB + MIB // 2))
        a.send_raw(fa[:14 + 5 * MIB // 2])
        await_held(eng, lambda v: v == 14 + 5 * MIB // 2, "A's 2.5 MiB held")
        b.send_raw(fb[:14 + 2 * MIB])
        a.expect_close(1009)
        b.send_raw(fb[14 + 2 * MIB:])
        f = b.recv_frame()
        expect_eq((f.op, len(f.payload)), (OP_BINARY, 3 * MIB + MIB // 2),
                  "B's message, echoed whole")
        expect(f.payload == b"B" * len(f.payload), "B's payload intact")
        held, alloc, closed = partial(eng)
        expect_eq((held, closed), (0, 1), "held and closed after B's echo")
    finally:
        a.close()
        b.close()


async def check_purge(eng, exe):
    before = rc.vm_rss_kb(eng.proc.pid)
    conns = []
    try:
        for _ in range(40):
            ws = rc.RawWs(eng.host, eng.port)
            ws.send_raw(rc.build_frame(OP_BINARY, b"p" * (2 * MIB))
                        [:14 + MIB])
            conns.append(ws)
        await_held(eng, lambda v: v == 40 * (14 + MIB), "40 MiB held")
        peak = rc.vm_rss_kb(eng.proc.pid)
        expect(peak - before > 30 * 1024, "RSS grew by %d KiB only for "
               "40 MiB held", peak - before)
    finally:
        for ws in conns:
            ws.close()
    await_held(eng, lambda v: v == 0, "nothing held")
    if not rc.uses_mimalloc(exe):
        print("     (libc malloc: the purge is mimalloc's, not checked)")
        return
    # Memory has no event: poll RSS until it is back within 8 MiB.
    await rc.await_state("RSS back near %d KiB" % before,
                         lambda: rc.vm_rss_kb(eng.proc.pid),
                         lambda v: v < before + 8 * 1024)


def checks(run):
    with run.section("setup"):
        with rc.Engine(run.exe, "--shards", "1", "--echo",
                       "--max-message", "4M") as eng:
            run.check("announced", check_announced, eng)
            run.check("fragments", check_fragments, eng)
            run.check("purge", check_purge, eng, run.exe)
        with rc.Engine(run.exe, "--shards", "1", "--echo",
                       "--max-message", "4M",
                       "--max-partial-memory", "4M") as eng:
            run.check("budget", check_budget, eng)


if __name__ == "__main__":
    rc.main("partial", checks)
