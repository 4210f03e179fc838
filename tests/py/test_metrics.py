# SPDX-License-Identifier: MIT
"""GET /metrics, read by Prometheus' own parser (python3-prometheus-client's
text_string_to_metric_families): the API key is required; every family has
HELP and TYPE; the figures match what the test did (N WebSocket clients
open, M publishes to them delivered N*M times, in sends); no label names a
channel or a user; the latency histogram is well formed and has samples;
with Redis, the link figures appear."""

import json

from prometheus_client.parser import text_string_to_metric_families

import rc
from rc import OP_TEXT, expect, expect_eq
import redisd

N = 64
M = 64
KEY = "metrics-key-0123456789"


def scrape(eng, key=KEY):
    c = rc.http_conn(eng)
    hdrs = {"Authorization": "Bearer " + key} if key else {}
    try:
        c.request("GET", "/metrics", headers=hdrs)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def families(text):
    """{name: family} as Prometheus reads them; fails on a parse error."""
    fams = {}
    for f in text_string_to_metric_families(text):
        expect(f.name.startswith("ringcast_"), "family %s", f.name)
        expect(f.documentation, "family %s has no HELP", f.name)
        expect(f.name not in fams, "family %s twice", f.name)
        fams[f.name] = f
    return fams


def total(fams, name, **labels):
    f = fams.get(name)
    expect(f is not None, "no family %s", name)
    return sum(s.value for s in f.samples
               if s.name in (name, name + "_total") and
               all(s.labels.get(k) == v for k, v in labels.items()))


def subscriber(eng, channel):
    ws = rc.RawWs(eng.host, eng.port, path="/ws")
    ws.send(OP_TEXT, rc.push_cmd("subscribe", seq=1, channels=[channel]))
    got = json.loads(ws.recv_message().payload)
    expect_eq(got.get("code"), 200, "subscribe reply")
    return ws


def check_key(eng):
    status, _, _ = scrape(eng, key=None)
    expect_eq(status, 401, "/metrics without the key")
    status, _, _ = scrape(eng, key="wrong")
    expect_eq(status, 401, "/metrics with a wrong key")
    status, ctype, text = scrape(eng)
    expect_eq(status, 200, "/metrics with the key")
    expect(ctype.startswith("text/plain; version=0.0.4"), "type %s", ctype)
    families(text)


def check_counts(eng):
    wss = [subscriber(eng, "secret-room") for _ in range(N)]
    try:
        conn = rc.http_conn(eng)
        for i in range(M):
            rc.publish(conn, "secret-room", b"m%d" % i, key=KEY)
        conn.close()
        for ws in wss:
            got = [json.loads(ws.recv_message().payload)["data"]
                   for _ in range(M)]
            expect_eq(got, ["m%d" % i for i in range(M)], "deliveries")
        status, _, text = scrape(eng)
        expect_eq(status, 200, "/metrics")
        fams = families(text)
        expect("secret-room" not in text, "a channel name in /metrics")
        expect_eq(total(fams, "ringcast_connections", state="websocket"),
                  N, "websocket connections")
        expect(total(fams, "ringcast_connections", state="http") >= 1,
               "this scrape's own connection is not counted")
        expect_eq(total(fams, "ringcast_handshakes"), N, "handshakes")
        expect_eq(total(fams, "ringcast_subscriptions"), N, "subscriptions")
        expect_eq(total(fams, "ringcast_channels"), 1, "channels")
        expect_eq(total(fams, "ringcast_published"), M, "published")
        expect_eq(total(fams, "ringcast_delivered"), N * M, "delivered")
        sends = total(fams, "ringcast_sends")
        frames = total(fams, "ringcast_frames")
        # Every send carries a frame; over TLS a connection also makes
        # up to two that carry none: its handshake's flight and its
        # close_notify.
        bare = 0
        if rc.TLS:
            t = rc.stats(eng)["tls"]
            bare = 2 * (t["handshakes"] + t["handshaking"] +
                        sum(t["failed"].values()))
        expect(0 < sends <= frames + bare, "sends %s, frames %s, TLS "
               "sends without a frame at most %s", sends, frames, bare)
        shards = {s.labels["shard"] for s in
                  fams["ringcast_delivered"].samples}
        expect_eq(shards, {"0", "1"}, "shard labels")
        for f in fams.values():
            for s in f.samples:
                # "reason" only on the TLS handshake failures (tls axis)
                allowed = {"shard", "state", "kind", "le"} | (
                    {"reason"} if s.name.startswith(
                        "ringcast_tls_handshake_failures") else set())
                expect(set(s.labels) <= allowed,
                       "labels %s on %s", s.labels, s.name)
        lat = fams["ringcast_delivery_latency_seconds"]
        expect_eq(lat.type, "histogram", "latency type")
        buckets = [(float(s.labels["le"]), s.value) for s in lat.samples
                   if s.name.endswith("_bucket")]
        counts = [v for _, v in buckets]
        expect(counts == sorted(counts), "buckets not cumulative: %s",
               buckets)
        count = [s.value for s in lat.samples if s.name.endswith("_count")]
        expect_eq(count, [buckets[-1][1]], "count against +Inf bucket")
        # one publish in 16 is stamped, and slots 0, 16, ... are timed
        expect(count[0] > 0, "no latency samples after %d deliveries",
               N * M)
        expect_eq(total(fams, "ringcast_mailbox_errors"), 0, "mail errors")
        expect("ringcast_redis_up" not in fams, "Redis figures without it")
    finally:
        for ws in wss:
            ws.close()


def check_sys_not_published(eng):
    """The node's own $sys figures are not messages anyone published: two
    of them reach a subscriber and ringcast_published stays 0."""
    ws = rc.RawWs(eng.host, eng.port, path="/ws")
    try:
        ws.send(OP_TEXT, rc.push_cmd("sys", seq=1, token=KEY))
        got = json.loads(ws.recv_message().payload)
        expect_eq(got.get("code"), 200, "sys reply")
        for _ in range(2):
            got = json.loads(ws.recv_message().payload)
            expect_eq(got.get("channel"), "$sys", "a $sys push")
        _, _, text = scrape(eng)
        fams = families(text)
        expect_eq(total(fams, "ringcast_published"), 0, "published")
        expect(total(fams, "ringcast_delivered") >= 2, "$sys deliveries")
    finally:
        ws.close()


def check_redis(exe):
    with redisd.Redis() as r:
        with rc.Engine(exe, "--shards", "2", "--api-key", KEY,
                       "--redis", r.url) as eng:
            rc.wait_stats(eng, lambda s: s.get("redis", {}).get("up"),
                          "the Redis links up")
            status, _, text = scrape(eng)
            expect_eq(status, 200, "/metrics")
            fams = families(text)
            expect_eq(total(fams, "ringcast_redis_up"), 1, "redis_up")
            for name in ["ringcast_redis_reconnects",
                         "ringcast_redis_publishes",
                         "ringcast_redis_pending_bytes"]:
                expect(name in fams, "no %s", name)


def checks(run):
    with rc.Engine(run.exe, "--shards", "2", "--api-key", KEY) as eng:
        run.check("key", check_key, eng)
        run.check("counts", check_counts, eng)
    with rc.Engine(run.exe, "--shards", "2", "--api-key", KEY) as eng:
        run.check("sys_not_published", check_sys_not_published, eng)
    run.check("redis", check_redis, run.exe)


if __name__ == "__main__":
    rc.main("metrics", checks)
