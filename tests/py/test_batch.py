# SPDX-License-Identifier: MIT
"""--batch-window: deliveries to one connection published over several
loop turns go out in fewer sends when a window is set (/stats "sends"
against the same publishes with no window), in order and each once;
replies are not held (a run of awaited HTTP publishes, each answered,
makes the window's test at all); a bad value is refused at start-up.
The fan-out suites also run whole with a window (meson's -window tests)."""

import json
import math
import subprocess
import time

import rc
from rc import OP_TEXT, expect, expect_eq

N = 20


def subscribe(eng, channel):
    ws = rc.RawWs(eng.host, eng.port, path="/ws")
    ws.send(OP_TEXT, rc.push_cmd("subscribe", seq=1, channels=[channel]))
    got = json.loads(ws.recv_message().payload)
    expect_eq(got.get("code"), 200, "subscribe reply %s" % got)
    return ws


def subscriber_sends(exe, window):
    """Publishes N messages one after another (each awaited: a loop turn
    each) to one subscriber; returns the sends that carried them and the
    seconds the publishing took."""
    with rc.Engine(exe, "--shards", "1", "--batch-window", window) as eng:
        ws = subscribe(eng, "b")
        try:
            before = rc.stats(eng)["total"]["sends"]
            conn = rc.http_conn(eng)
            t0 = time.monotonic()
            for i in range(N):
                rc.publish(conn, "b", b"m%d" % i)
            took = time.monotonic() - t0
            got = [json.loads(ws.recv_message().payload)["data"]
                   for _ in range(N)]
            expect_eq(got, ["m%d" % i for i in range(N)],
                      "deliveries, window %s" % window)
            after = rc.stats(eng)["total"]["sends"]
            conn.close()
        finally:
            ws.close()
    # one send per HTTP reply, and the first /stats reply's
    return after - before - N - 1, took


def check_coalesced(exe):
    held, took = subscriber_sends(exe, "1s")
    plain, _ = subscriber_sends(exe, "0")
    print("     sends for %d deliveries: %d with a 1s window (published "
          "in %.2fs), %d without" % (N, held, took, plain))
    # A window opens at the first frame held and lasts 1 s: publishes
    # spread over T seconds (a loaded machine) open at most T + 1.
    bound = max(4, math.floor(took) + 2)
    expect(1 <= held <= bound, "with a 1s window %d deliveries published "
           "in %.2fs took %d sends, want 1 to %d", N, took, held, bound)
    expect(plain > held, "without a window %d sends, with one %d", plain,
           held)


def check_bad_values(exe):
    for v in ["2s", "-1", "1x", "us", "1000001us", ""]:
        p = subprocess.run([exe, "--batch-window", v], capture_output=True,
                           text=True, timeout=10)
        expect_eq(p.returncode, 2, "--batch-window %r exit code" % v)
        expect("--batch-window" in p.stderr, "--batch-window %r: %s", v,
               p.stderr)


def checks(run):
    run.check("coalesced", check_coalesced, run.exe)
    run.check("bad-values", check_bad_values, run.exe)


if __name__ == "__main__":
    rc.main("batch", checks, open_publish=True)
