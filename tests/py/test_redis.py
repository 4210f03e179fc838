# SPDX-License-Identifier: MIT
"""Two engine nodes on one real redis-server (free loopback port).

- delivery: subscribers on both nodes; messages published with redis-cli,
  with a raw RESP PUBLISH, and over HTTP on either node reach every
  subscriber once, in order; HTTP publish reports how many nodes got it.
- interest: a node subscribes to a Redis channel only while it has a
  subscriber for it, and a node without one receives nothing for it.
- faults: redis-server killed and started again on the same port: clients
  stay connected, /healthz goes 503 then 200, delivery resumes; a node
  started while Redis is down comes up and connects later; with Redis
  frozen, a client that sends far ahead of its waiting publish is dropped.
- loading: a Redis restarted on a large append-only file answers -LOADING
  for seconds; /healthz, /stats and the log say so (not "Permission
  denied"), publishes get 503, and the node is ready once Redis is.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess

import rc
import redisd
from rc import expect, expect_eq

PREFIX = "ringcast:"


async def subscribe(eng, channels, seq=1):
    ws = await rc.ws_connect(eng.url("/ws"), ping_interval=None)
    await ws.send(json.dumps({"seq": seq, "cmd": "subscribe",
                              "data": {"channels": channels}}))
    reply = json.loads(await rc.ws_recv(ws))
    expect_eq(reply.get("code"), 200, "subscribe reply %r" % reply)
    return ws


async def recv_push(ws, timeout=10):
    m = json.loads(await rc.ws_recv(ws, timeout))
    expect(m.get("cmd") in ("push", "broadcast"), "not a push: %r", m)
    return m


def numsub(redis, channel):
    r = redis.command("PUBSUB", "NUMSUB", PREFIX + "ch:" + channel)
    return r[1]


async def check_delivery(a, b, redis):
    subs = []
    for eng in (a, b):
        for i in range(10):
            subs.append(await subscribe(eng, ["news"], i))
    await rc.await_state("both nodes subscribed",
                   lambda: numsub(redis, "news") == 2)
    sent = []
    for k in range(60):
        payload = json.dumps({"k": k})
        how = k % 4
        if how == 0:
            out = redisd.redis_cli(redis.port, "PUBLISH",
                                   PREFIX + "ch:news", payload)
            expect_eq(out, "2", "redis-cli PUBLISH receivers")
        elif how == 1:
            expect_eq(redis.command("PUBLISH", PREFIX + "ch:news", payload),
                      2, "PUBLISH receivers")
        else:
            eng = a if how == 2 else b
            status, body = rc.api(eng, "POST", "/publish/news", payload)
            expect_eq(status, 200, "HTTP publish status")
            expect_eq(body, {"ok": True, "nodes": 2}, "HTTP publish reply")
        sent.append(k)
    # A broadcast through Redis reaches both nodes' clients too.
    status, body = rc.api(b, "POST", "/broadcast", b'"all"')
    expect_eq(status, 200, "broadcast status")
    # A broadcast is sequenced by shard 0 and a channel message by the
    # channel's owner, so their relative order is not defined
    # (docs/PROTOCOL.md, Guarantees): only the channel's order is checked.
    for n, ws in enumerate(subs):
        frames = [await recv_push(ws) for _ in range(len(sent) + 1)]
        bcast = [m for m in frames if m.get("cmd") == "broadcast"]
        expect_eq(bcast, [{"cmd": "broadcast", "data": "all"}],
                  "subscriber %d: the broadcast, once" % n)
        got = [m["data"]["k"] for m in frames if m.get("cmd") == "push"]
        expect_eq(got, sent, "subscriber %d: messages in order" % n)
    for ws in subs:
        await ws.close()
    await rc.await_state("no node subscribed to news",
                   lambda: numsub(redis, "news") == 0)


async def check_interest(a, b, redis):
    ws = await subscribe(a, ["only-a"])
    expect_eq(numsub(redis, "only-a"), 1, "NUMSUB with a subscriber on A")
    before_b = rc.stats(b)["redis"]["messages"]
    before_a = rc.stats(a)["redis"]["messages"]
    for k in range(5):
        expect_eq(redis.command("PUBLISH", PREFIX + "ch:only-a", str(k)), 1,
                  "PUBLISH reaches exactly one node")
    got = [(await recv_push(ws))["data"] for _ in range(5)]
    expect_eq(got, [0, 1, 2, 3, 4], "pushes on A")
    expect_eq(rc.stats(a)["redis"]["messages"] - before_a, 5, "A's messages")
    expect_eq(rc.stats(b)["redis"]["messages"] - before_b, 0,
              "B received nothing for a channel it has no subscriber for")
    # Unsubscribing the last client drops the Redis subscription.
    await ws.send(json.dumps({"seq": 2, "cmd": "unsubscribe",
                              "data": {"channels": ["only-a"]}}))
    expect_eq(json.loads(await rc.ws_recv(ws))["code"], 200, "unsubscribe")
    await rc.await_state("NUMSUB back to 0",
                   lambda: numsub(redis, "only-a") == 0)
    await ws.close()


def healthz(eng):
    return rc.api(eng, "GET", "/healthz")[0]


async def check_restart(a, b, redis):
    subs = [await subscribe(a, ["r"]), await subscribe(b, ["r"])]
    await rc.await_state("subscribed", lambda: numsub(redis, "r") == 2)
    redis.kill()
    for eng in (a, b):
        await rc.await_state("/healthz 503", lambda: healthz(eng) == 503)
        status, body = rc.api(eng, "GET", "/healthz")
        expect(b"redis" in body, "503 says why: %r", body)
        status, _ = rc.api(eng, "POST", "/publish/r", b"1")
        expect_eq(status, 503, "publish while Redis is down")
    # Clients stay connected and served meanwhile.
    for ws in subs:
        await ws.send('{"seq":7,"cmd":"heartbeat"}')
        expect_eq(json.loads(await rc.ws_recv(ws))["code"], 200,
                  "heartbeat while Redis is down")
    redis.start()
    for eng in (a, b):
        await rc.await_state("/healthz 200", lambda: healthz(eng) == 200)
    await rc.await_state("resubscribed", lambda: numsub(redis, "r") == 2)
    status, body = rc.api(a, "POST", "/publish/r", b'{"after":1}')
    expect_eq((status, body), (200, {"ok": True, "nodes": 2}),
              "publish after restart")
    for ws in subs:
        expect_eq((await recv_push(ws))["data"], {"after": 1},
                  "delivery resumed")
        await ws.close()
    for eng in (a, b):
        expect(rc.stats(eng)["redis"]["reconnects"] >= 2,
               "reconnects counted: %r", rc.stats(eng)["redis"])


async def check_late_redis(exe, redis):
    redis.kill()
    with rc.Engine(exe, "--shards", "2", "--redis", redis.url) as c:
        expect_eq(healthz(c), 503, "healthz without Redis")
        ws = await subscribe(c, ["late"])	# served without Redis
        redis.start()
        await rc.await_state("/healthz 200", lambda: healthz(c) == 200)
        await rc.await_state("subscribed", lambda: numsub(redis, "late") == 1)
        expect_eq(redis.command("PUBLISH", PREFIX + "ch:late", "1"), 1,
                  "PUBLISH")
        expect_eq((await recv_push(ws))["data"], 1, "late delivery")
        await ws.close()


def check_wait_backlog(exe, redis):
    """A publish through Redis waits for PUBLISH's answer, and the engine
    parses nothing more of that connection meanwhile. With Redis frozen
    (SIGSTOP) the wait lasts; a client that keeps sending is dropped once
    it is --max-pending-bytes (here 256K, above one 64K request) ahead,
    not buffered without end; and closed, not read on and thrown away
    for as long as it keeps sending (64 MiB here, far more than the
    socket buffers hold between the drop and the close)."""
    with rc.Engine(exe, "--shards", "1", "--redis", redis.url,
                   "--max-pending-bytes", "256K",
                   "--max-message", "64K") as eng:
        # Frozen before the links are up, the publish would get 503 at
        # once ("not connected") instead of waiting.
        rc.wait_stats(eng, lambda st: st["redis"]["up"], "redis links up")
        before = rc.stats(eng)["total"]
        s = rc.connect(eng.host, eng.port)
        req = (b"POST /publish/frozen HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Length: 2\r\n\r\n{}")
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            sent = 0
            reset = False
            try:
                s.sendall(req)
                for _ in range(640):
                    s.sendall(req * 1500)
                    sent += len(req) * 1500
            except (BrokenPipeError,) + rc.CLOSED_ERRORS:
                reset = True
            except socket.timeout:
                # what the engine holds, while Redis is still frozen
                st = rc.stats(eng)
                raise AssertionError(
                    "the engine stopped reading %d bytes in, without "
                    "closing: total %s, redis %s" % (sent, st["total"],
                                                     st.get("redis")))
            expect(reset, "all %d bytes taken on a connection that was "
                   "to be dropped after 256K", sent)
        finally:
            redis.proc.send_signal(signal.SIGCONT)
            s.close()
        # the close completes on the engine's own schedule: await it
        rc.wait_stats(eng, lambda st: st["total"]["connections"] <= 1,
                      "the dropped connection gone")


async def check_url_kept_secret(exe):
    """The Redis URL, password and all, may come from RINGCAST_REDIS_URL
    or from a file (--redis-url-file), not only from the command line
    that ps shows; a bad one stops the engine without printing it."""
    pw = "s3cret-%d" % os.getpid()
    with redisd.Redis() as redis:
        redis.command("CONFIG", "SET", "requirepass", pw)
        url = "redis://:%s@127.0.0.1:%d" % (pw, redis.port)
        path = os.path.join(redis.dir, "url")
        with open(path, "w") as f:
            f.write(url + "\n")
        saved = os.environ.get("RINGCAST_REDIS_URL")
        for how, args, env in (("RINGCAST_REDIS_URL", (), url),
                               ("--redis-url-file", ("--redis-url-file",
                                                     path), None)):
            if env:
                os.environ["RINGCAST_REDIS_URL"] = env
            else:
                os.environ.pop("RINGCAST_REDIS_URL", None)
            try:
                with rc.Engine(exe, "--shards", "1", *args) as eng:
                    await rc.await_state(
                        "Redis up (AUTH passed) with the URL from %s" % how,
                        lambda: rc.stats(eng).get("redis", {}),
                        lambda r: r.get("up") is True)
                    with open("/proc/%d/cmdline" % eng.proc.pid,
                              "rb") as f:
                        expect(pw.encode() not in f.read(),
                               "password on the command line (%s)", how)
            finally:
                if saved is None:
                    os.environ.pop("RINGCAST_REDIS_URL", None)
                else:
                    os.environ["RINGCAST_REDIS_URL"] = saved
        bad = "redis://:%s@" % pw
        env = dict(os.environ, RINGCAST_REDIS_URL=bad)
        p = subprocess.run([exe, "--listen", "127.0.0.1:0"], env=env,
                           capture_output=True, timeout=10)
        expect_eq(p.returncode, 2, "exit status with a bad RINGCAST_REDIS_URL")
        err = p.stderr.decode(errors="replace")
        expect("RINGCAST_REDIS_URL" in err and pw not in err,
               "stderr: %r", err)


async def check_healthz_names_no_host(exe):
    """/healthz is open to anyone: while the link waits (here on a server
    that accepts and never answers AUTH), it says 503 and why, without
    naming Redis's address."""
    import socket
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        port = mute.getsockname()[1]
        url = "redis://:pw@127.0.0.1:%d" % port
        with rc.Engine(exe, "--shards", "1", "--redis", url) as eng:
            status, body = rc.api(eng, "GET", "/healthz")
            expect_eq(status, 503, "healthz while Redis does not answer")
            text = body.decode() if isinstance(body, bytes) else str(body)
            expect("redis" in text and "127.0.0.1" not in text and
                   str(port) not in text, "/healthz body %r", text)


# Keys of 100 bytes in the append-only file: seconds of loading, enough to
# be seen by polling on any machine, and about 150 MB in Redis.
LOADING_KEYS = 1000000


async def check_loading(exe):
    with redisd.Redis(aof=True, args=("--enable-debug-command",
                                      "local")) as redis:
        expect_eq(redis.command("DEBUG", "POPULATE", LOADING_KEYS, "fill",
                                100, timeout=120), "OK", "DEBUG POPULATE")
        # POPULATE writes no AOF: a rewrite puts the dataset in it.
        redis.command("BGREWRITEAOF")
        await rc.await_state(
            "the AOF rewritten", lambda: redis.info("persistence"),
            lambda i: i["aof_rewrite_in_progress"] == "0" and
            i["aof_rewrite_scheduled"] == "0" and
            i["aof_last_bgrewrite_status"] == "ok", timeout=120)
        with rc.Engine(exe, "--shards", "2", "--redis", redis.url) as eng:
            await rc.await_state("/healthz 200", lambda: healthz(eng) == 200)
            redis.restart(loading_ok=True)
            # Polled until seen, while Redis says it is still loading.
            seen = []
            for _ in range(20000):
                status, body = rc.api(eng, "GET", "/healthz")
                st = rc.stats(eng)["redis"]
                loading = redis.info("persistence")["loading"] == "1"
                seen.append((status, body, st.get("reason"),
                             st.get("loading"), loading))
                if status == 503 and body == b"redis: loading the dataset\n" \
                        and st.get("loading") is True and \
                        st.get("reason") == "redis: loading the dataset":
                    break
                expect(loading or status == 503,
                       "Redis finished loading before /healthz and /stats "
                       "said so; saw %s", seen[-5:])
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("never said loading: %s" % seen[-5:])
            expect(loading, "Redis loading when /healthz said so: %s",
                   seen[-3:])
            status, body = rc.api(eng, "POST", "/publish/l", b"1")
            expect_eq(status, 503, "publish while Redis loads (%r)" % body)
            await rc.await_state("/healthz 200 once loaded",
                                 lambda: healthz(eng) == 200, timeout=120)
            st = rc.stats(eng)["redis"]
            expect(st["up"] is True and st["loading"] is False and
                   st["reason"] == "", "/stats once loaded: %r", st)
            status, body = rc.api(eng, "POST", "/publish/l", b"2")
            expect_eq((status, body), (200, {"ok": True, "nodes": 0}),
                      "publish once loaded")
            # stderr is read by a thread of the test's: await the line
            log = await rc.await_state(
                "the log saying loading, then loaded",
                lambda: "\n".join(eng.log),
                lambda t: "redis: the dataset is loaded" in t)
            expect("redis: loading the dataset" in log and
                   "Permission denied" not in log, "log: %s", log[-2000:])


def checks(run):
    with run.section("setup"):
        with redisd.Redis() as redis:
            args = ("--shards", "2", "--redis", redis.url)
            with rc.Engine(run.exe, *args) as a, \
                    rc.Engine(run.exe, *args) as b:
                run.check("two-nodes", check_delivery, a, b, redis,
                          timeout=120)
                run.check("interest", check_interest, a, b, redis)
                run.check("restart", check_restart, a, b, redis,
                          timeout=120)
            run.check("redis-down-at-start", check_late_redis, run.exe,
                      redis, timeout=120)
            run.check("wait-backlog", check_wait_backlog, run.exe, redis)
        run.check("url-kept-secret", check_url_kept_secret, run.exe)
        run.check("healthz-names-no-host", check_healthz_names_no_host,
                  run.exe)
        run.check("loading", check_loading, run.exe, timeout=300)


if __name__ == "__main__":
    rc.main("redis", checks)
