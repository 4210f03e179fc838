# SPDX-License-Identifier: MIT
"""HTTP publishing: --api-key (401 without the right Bearer token, 200
with it, and nothing delivered for a refused publish); 405, 411, 413 and
the 400s (channel names, bodies neither JSON nor UTF-8); a channel with
no subscriber; POST /broadcast reaching every /ws client on both shards
and no /echo client; pipelined requests on one keep-alive connection
answered in order and published in that order, written at once and in
small pieces; Connection: close honoured; without a key, the API
refuses what a page elsewhere makes a browser send (a foreign Origin, a
Host that is no name of ours), with a key the key decides; wrong keys
are counted, logged now and then, and end a /ws connection at the
third; --demo opens client publishing to its rooms only."""

import json
import random
import threading

import rc
import redisd
from rc import OP_TEXT, expect, expect_eq

KEY = "sekret-\u00e9".encode().hex()   # any token; hex keeps it ASCII
MAX_MESSAGE = 64 << 10


def raw_request(method, path, body=b"", headers=(), length=True):
    """One request as bytes; Content-Length unless @length is False."""
    if isinstance(path, str):
        path = path.encode()
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    lines += [("%s: %s" % h).encode() for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(eng, data):
    """Sends @data on a fresh connection, returns the first response."""
    s = rc.connect(eng.host, eng.port)
    try:
        s.sendall(data)
        r, _ = rc.read_response(s)
    finally:
        s.close()
    return r


def subscriber(eng, channels, path="/ws"):
    ws = rc.RawWs(eng.host, eng.port, path=path)
    if channels:
        ws.send(OP_TEXT, rc.push_cmd("subscribe", seq=1, channels=channels))
        got = json.loads(ws.recv_message().payload)
        expect_eq(got, {"seq": 1, "cmd": "subscribe", "code": 200,
                        "msg": "ok"}, "subscribe reply")
    return ws


def next_push(ws):
    return json.loads(ws.recv_message().payload)


def check_api_key(eng):
    auth = [(), (("Authorization", "Bearer wrong"),),
            (("Authorization", "Bearer " + KEY[:-1]),),
            (("Authorization", "Bearer " + KEY + "x"),),
            (("Authorization", "Basic " + KEY),),
            (("Authorization", KEY),),
            (("Authorization", "Bearer"),)]
    good = (("Authorization", "Bearer " + KEY),)
    with subscriber(eng, ["x"]) as ws:
        for i, hdrs in enumerate(auth):
            for path in ("/publish/x", "/broadcast"):
                r = exchange(eng, raw_request("POST", path, b'"refused"',
                                              hdrs))
                expect_eq(r.status, 401, "POST %s with %s" % (path, hdrs))
        r = exchange(eng, raw_request("POST", "/publish/x", b'"good"',
                                      good))
        expect_eq(r.status, 200, "POST /publish/x with the key")
        expect_eq(json.loads(r.body), {"ok": True}, "body")
        expect_eq(next_push(ws), {"cmd": "push", "channel": "x",
                                  "data": "good"}, "first push")
        r = exchange(eng, raw_request("POST", "/broadcast", b'"all"', good))
        expect_eq(r.status, 200, "POST /broadcast with the key")
        expect_eq(next_push(ws), {"cmd": "broadcast", "data": "all"},
                  "broadcast")
    # /stats shows what /online protects: behind the key too. /healthz
    # stays open for load balancers.
    for hdrs in auth:
        r = exchange(eng, raw_request("GET", "/stats", b"", hdrs))
        expect_eq(r.status, 401, "GET /stats with %s" % (hdrs,))
    r = exchange(eng, raw_request("GET", "/stats", b"", good))
    expect_eq(r.status, 200, "GET /stats with the key")
    expect("total" in json.loads(r.body), "/stats body: %s", r.body[:80])
    r = exchange(eng, raw_request("GET", "/healthz", b""))
    expect_eq(r.status, 200, "GET /healthz without the key")
    # a wrong key costs a connection: no pipelined guesses
    r = rc.http_request(eng.host, eng.port,
                        raw_request("GET", "/stats", b"", auth[1],
                                    length=False) +
                        raw_request("GET", "/healthz", length=False))
    expect(r.status == 401 and r.closed and
           r.has_token("Connection", "close"),
           "a wrong key left the connection open: %r", r)


def check_405(eng):
    for method, path in (("GET", "/publish/x"), ("PUT", "/publish/x"),
                         ("DELETE", "/publish/x"), ("GET", "/broadcast"),
                         ("PUT", "/broadcast"), ("POST", "/stats"),
                         ("PATCH", "/publish/x")):
        r = exchange(eng, raw_request(method, path, b"{}"))
        expect_eq(r.status, 405, "%s %s" % (method, path))


def check_411(eng):
    for path in ("/publish/x", "/broadcast"):
        for hdrs in ((), (("Transfer-Encoding", "chunked"),)):
            body = b"2\r\n{}\r\n0\r\n\r\n" if hdrs else b""
            r = exchange(eng, raw_request("POST", path, body, hdrs,
                                          length=False))
            expect_eq(r.status, 411, "POST %s without Content-Length, "
                      "headers %s" % (path, hdrs))
            expect_eq(r.status_line, "HTTP/1.1 411 Length Required",
                      "411's status line")


def check_host(eng):
    """RFC 9112 3.2: an HTTP/1.1 request without Host is a 400, for every
    path; HTTP/1.0 needs none."""
    for method, path in (("GET", "/stats"), ("GET", "/healthz"),
                         ("POST", "/publish/h"), ("GET", "/nope")):
        data = raw_request(method, path, b"{}").replace(b"Host: 127.0.0.1\r\n", b"")
        r = exchange(eng, data)
        expect_eq(r.status, 400, "%s %s without Host" % (method, path))
    data = b"GET /healthz HTTP/1.0\r\n\r\n"
    expect_eq(exchange(eng, data).status, 200, "HTTP/1.0 without Host")


def check_expect(eng):
    """Expect: 100-continue gets 100 Continue before the body is sent (curl
    otherwise waits a second on every body over 1 KiB), then the final
    answer; another expectation is a 417."""
    body = json.dumps({"pad": "z" * 2000}).encode()
    with subscriber(eng, ["cont"]) as ws:
        s = rc.connect(eng.host, eng.port)
        try:
            head = raw_request("POST", "/publish/cont", body,
                               (("Expect", "100-continue"),))
            s.sendall(head[:len(head) - len(body)])
            r, rest = rc.read_head(s)
            expect(r.startswith(b"HTTP/1.1 100 Continue\r\n"),
                   "interim answer: %r", r[:40])
            s.sendall(body)
            final, _ = rc.read_response(s, rest)
            expect_eq(final.status, 200, "publish after 100 Continue")
        finally:
            s.close()
        got = json.loads(ws.recv_message().payload)
        expect_eq(got["data"], json.loads(body), "delivered body")
    r = exchange(eng, raw_request("POST", "/publish/cont", b"{}",
                                  (("Expect", "something-else"),)))
    expect_eq(r.status, 417, "unknown expectation")


def check_413(eng):
    with subscriber(eng, ["big"]) as ws:
        for path in ("/publish/big", "/broadcast"):
            r = exchange(eng, raw_request("POST", path,
                                          b"x" * (MAX_MESSAGE + 1)))
            expect_eq(r.status, 413, "POST %s, one byte too many" % path)
        body = b'"' + b"y" * (MAX_MESSAGE - 2) + b'"'
        r = exchange(eng, raw_request("POST", "/publish/big", body))
        expect_eq(r.status, 200, "POST of exactly --max-message")
        got = ws.recv_message().payload
        expect(body in got, "the largest message is not verbatim")


def check_400(eng):
    names = [b"", b"a%20b", b"caf\xc3\xa9", b"a#b", b"x" * 129, b"a*b",
             b"a,b", b"a\\b", b"a%4", b"a%zz", b"%25", b"a\"b", b"[x]"]
    for name in names:
        r = exchange(eng, raw_request("POST", b"/publish/" + name, b"{}"))
        expect_eq(r.status, 400, "POST /publish/%s" % rc.short(name))
    bodies = [b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80",
              b"ok\xf4\x90\x80\x80", b'{"a":"\xff"}', b"trunc\xe2\x82",
              b"\x80"]
    for body in bodies:
        for path in ("/publish/x", "/broadcast"):
            r = exchange(eng, raw_request("POST", path, body))
            expect_eq(r.status, 400, "POST %s body %r" % (path, body))


def check_names_and_bodies(eng):
    """Valid edge cases are published, and to the right channel."""
    long = "L" * 128
    with subscriber(eng, ["a/b/c", long, "nobody.else"]) as ws:
        c = rc.http_conn(eng)
        rc.publish(c, "nobody.here", b"{}")
        rc.publish(c, "a/b/c", "\u00e9t\u00e9".encode())
        rc.publish(c, long, b" [1, 2] ")
        rc.publish(c, "a/b/c", b"")
        c.close()
        pushes = [ws.recv_message().payload for _ in range(3)]
    got = {}
    for raw in pushes:
        m = json.loads(raw)
        got.setdefault(m["channel"], []).append(m["data"])
        if m["channel"] == long:
            expect(b" [1, 2] " in raw, "JSON not verbatim: %r", raw)
    expect_eq(got, {"a/b/c": ["\u00e9t\u00e9", ""], long: [[1, 2]]},
              "pushes")


def check_broadcast(eng):
    wss = [subscriber(eng, ["c%d" % (i % 3)] if i % 2 else [])
           for i in range(16)]
    try:
        up = [sh["upgraded"] for sh in rc.stats(eng)["shards"]]
        expect(len(up) == 2 and min(up) > 0, "/ws clients not on both "
               "shards: upgraded per shard %s", up)
        echos = [rc.RawWs(eng.host, eng.port, path="/echo")
                 for _ in range(6)]
        try:
            c = rc.http_conn(eng)
            rc.post(c, "/broadcast", b'{"b": [1, 2]}')
            status, body = rc.post(c, "/broadcast",
                                   "plain \u00e9".encode())
            expect_eq(status, 200, "POST /broadcast")
            c.close()
            for i, ws in enumerate(wss):
                raws = [ws.recv_message().payload for _ in range(2)]
                got = [json.loads(r) for r in raws]
                expect_eq(got, [{"cmd": "broadcast", "data": {"b": [1, 2]}},
                                {"cmd": "broadcast", "data": "plain \u00e9"}],
                          "client %d broadcasts" % i)
                expect(b'{"b": [1, 2]}' in raws[0], "not verbatim: %r",
                       raws[0])
            # An /echo client's next message is its echo, not a broadcast.
            for e in echos:
                e.echo(OP_TEXT, b"still echo")
        finally:
            for e in echos:
                e.close()
    finally:
        for ws in wss:
            ws.close()


def pipeline(n, rng):
    """@n requests and what each must answer: (request, check)."""
    reqs, checks = [], []
    sent = {"pipe": [], "pipe2": [], "broadcast": []}
    for i in range(n):
        k = rng.randrange(10)
        if k == 0:
            reqs.append(raw_request("GET", "/stats"))
            checks.append(("stats", None))
        elif k == 1:
            reqs.append(raw_request("GET", "/healthz"))
            checks.append(("healthz", None))
        elif k == 2:
            reqs.append(raw_request("POST", "/broadcast", b"%d" % i))
            checks.append(("ok", None))
            sent["broadcast"].append(i)
        else:
            ch = "pipe" if k < 8 else "pipe2"
            pad = b" " * rng.choice([0, 10, 3000, 20000])
            body = b'{"i":%d}' % i + pad
            reqs.append(raw_request("POST", "/publish/" + ch, body))
            checks.append(("ok", None))
            sent[ch].append(i)
    return reqs, checks, sent


def check_pipelined(eng):
    rng = random.Random(7)
    for rnd, pieces in enumerate((False, True)):
        reqs, checks, sent = pipeline(60, rng)
        with subscriber(eng, ["pipe", "pipe2"]) as ws:
            s = rc.connect(eng.host, eng.port)
            data = b"".join(reqs)
            t = None
            if pieces:
                # Small writes: requests cut anywhere. From a thread while
                # this one reads, but not over TLS: an ssl socket is not
                # safe to write and read from two threads at once (it
                # failed as an EOF now and then, whichever engine).
                cuts = sorted(rng.sample(range(1, len(data)), 300))
                parts = [data[a:b] for a, b in
                         zip([0] + cuts, cuts + [len(data)])]
                if rc.TLS:
                    for p in parts:
                        s.sendall(p)
                else:
                    t = threading.Thread(target=lambda: [s.sendall(p)
                                                         for p in parts])
                    t.start()
            else:
                s.sendall(data)
            buf = b""
            for i, (kind, _) in enumerate(checks):
                r, buf = rc.read_response(s, buf)
                what = "round %d response %d (%s)" % (rnd, i, kind)
                expect_eq(r.status, 200, what)
                if kind == "stats":
                    expect("total" in json.loads(r.body), "%s: %s", what,
                           rc.short(r.body))
                elif kind == "healthz":
                    expect(b"ok" in r.body and b"{" not in r.body,
                           "%s: %s", what, rc.short(r.body))
                else:
                    expect_eq(json.loads(r.body), {"ok": True}, what)
            if t:
                t.join(30)
            s.close()
            # Per channel in request order; broadcasts all there (the
            # spec orders them against nothing).
            got = {"pipe": [], "pipe2": [], "broadcast": []}
            want = sum(len(v) for v in sent.values())
            for _ in range(want):
                m = next_push(ws)
                if m["cmd"] == "broadcast":
                    got["broadcast"].append(m["data"])
                else:
                    got[m["channel"]].append(m["data"]["i"])
            got["broadcast"].sort()
            expect_eq(got, sent, "round %d: pushes in request order" % rnd)


def check_connection_close(eng):
    for req in (raw_request("POST", "/publish/x", b"{}",
                            [("Connection", "close")]),
                raw_request("GET", "/stats", b"",
                            [("Connection", "close")], length=False)):
        # A second request in the same write must not be answered.
        r = rc.http_request(eng.host, eng.port,
                            req + raw_request("POST", "/publish/x", b"{}"))
        expect_eq(r.status, 200, "status")
        expect(r.closed, "connection left open after Connection: close")
        n = int(r.header("Content-Length"))
        expect(r.body[n:] == b"", "answered past Connection: close: %s",
               rc.short(r.body[n:]))


def guarded(eng, method, path, host, origin=None, key=None, body=None):
    """Status of one request from what a browser would send: Host @host
    (its port added), Origin @origin, a text/plain body for a POST."""
    hdrs = [("Origin", origin)] if origin else []
    if key:
        hdrs.append(("Authorization", "Bearer " + key))
    if method == "POST":
        hdrs.append(("Content-Type", "text/plain"))
    post = method == "POST"
    data = raw_request(method, path, (body or b'"from a page"') if post
                       else b"", hdrs, length=post)
    data = data.replace(b"Host: 127.0.0.1", ("Host: %s:%d" % (host, eng.port))
                        .encode(), 1)
    return exchange(eng, data).status


# What a page elsewhere can make a browser send without any key.
API = (("POST", "/publish/news"), ("POST", "/broadcast"),
       ("POST", "/users/bob/push?persist=1"), ("POST", "/users/bob/disconnect"),
       ("GET", "/stats"), ("GET", "/metrics"), ("GET", "/online"),
       ("GET", "/users/bob"), ("GET", "/users/bob/inbox"))
EVIL = "https://evil.example"


def check_cross_site(eng):
    """Without an API key the API refuses a foreign Origin (a cross-site
    "simple" POST included) and a Host that is a name it was not given
    (DNS rebinding, with or without the page's own Origin): 403, and
    nothing published, broadcast or kept. Requests without Origin for
    an address or localhost, and the engine's own pages' Origin, pass."""
    host = eng.host
    with subscriber(eng, ["news"]) as ws:
        for method, path in API:
            for h, origin in ((host, EVIL), ("localhost", EVIL),
                              (host, "null"),
                              (host, "http://%s:%d.evil.example" %
                               (host, eng.port)),
                              ("rebound.example", None),
                              ("rebound.example",
                               "http://rebound.example:%d" % eng.port)):
                got = guarded(eng, method, path, h, origin)
                expect_eq(got, 403, "%s %s, Host %s, Origin %s"
                          % (method, path, h, origin))
        for h, origin in ((host, None), ("localhost", None), ("[::1]", None),
                          (host, "http://%s:%d" % (host, eng.port)),
                          ("localhost", "http://localhost:%d" % eng.port)):
            got = guarded(eng, "POST", "/publish/news", h, origin,
                          body=b'"marker"')
            expect_eq(got, 200, "publish, Host %s, Origin %s" % (h, origin))
            expect_eq(next_push(ws), {"cmd": "push", "channel": "news",
                                      "data": "marker"},
                      "first push after the refusals")
    r = exchange(eng, raw_request("GET", "/users/bob/inbox", length=False))
    expect_eq((r.status, json.loads(r.body)["unread"]), (200, 0),
              "bob's inbox after refused pushes")
    # Open to all: /healthz, and the files pages load cross-site.
    for path in ("/healthz", "/ringcast.js", "/"):
        expect_eq(guarded(eng, "GET", path, "rebound.example", EVIL), 200,
                  "GET %s from a page elsewhere" % path)


def check_allowed_lists(eng):
    """--allowed-hosts names the Host may carry, --allowed-origins pages
    elsewhere that may call the API; anything else still gets 403."""
    for h, origin, want in (("push.example", None, 200),
                            ("PUSH.example", None, 200),
                            ("a.dev.example", None, 200),
                            ("dev.example", None, 403),
                            ("other.example", None, 403),
                            (eng.host, "http://app.example:3000", 200),
                            (eng.host, "http://app.example:3001", 403),
                            ("push.example", "http://push.example:%d"
                             % eng.port, 200),
                            ("push.example", EVIL, 403)):
        for method, path in (("POST", "/publish/x"), ("GET", "/stats")):
            got = guarded(eng, method, path, h, origin)
            expect_eq(got, want, "%s %s, Host %s, Origin %s"
                      % (method, path, h, origin))


def check_key_decides(eng):
    """With an API key the key decides: a browser never sends it on its
    own, so Origin and Host are not checked; without it, 401."""
    for method, path in API:
        for key, want in ((KEY, None), (None, 401), ("wrong", 401)):
            got = guarded(eng, method, path, "rebound.example", EVIL, key)
            if want:
                expect_eq(got, want, "%s %s with key %s" % (method, path,
                                                            key))
            else:
                expect(got < 400, "%s %s from a page elsewhere with the "
                       "key: %d", method, path, got)


def sys_cmd(token, seq):
    """The /ws sys command with @token (None: no token at all)."""
    data = {} if token is None else {"token": token}
    return json.dumps({"seq": seq, "cmd": "sys", "data": data})


def key_failed_metric(eng):
    """ringcast_key_failed_total from /metrics, or None."""
    status, body = rc.api(eng, "GET", "/metrics", key=KEY)
    expect_eq(status, 200, "GET /metrics")
    for line in body.decode().splitlines():
        if line.startswith("ringcast_key_failed_total "):
            return int(float(line.split()[1]))
    return None


def check_key_guesses(eng):
    """The API key is no oracle: a /ws connection that sends 3 wrong keys
    to sys gets close 4029 after the third reply, asking without a key
    is no guess, and every wrong key (/ws or HTTP) is counted in /stats
    and /metrics and logged, a line now and then, not one each."""
    before = rc.stats(eng)["total"].get("key_failed")
    expect(before is not None, "no key_failed in /stats")
    with subscriber(eng, []) as ws:
        # The status page asks without a key to learn whether one is needed.
        for i in range(4):
            for token in (None, ""):
                ws.send(OP_TEXT, sys_cmd(token, i))
                expect_eq(next_push(ws), {"seq": i, "cmd": "sys",
                                          "code": 403,
                                          "msg": "api key needed"},
                          "sys without a key")
        for i in range(2):
            ws.send(OP_TEXT, sys_cmd("guess-%d-0123456789" % i, 10 + i))
            expect_eq(next_push(ws)["code"], 403, "wrong key %d" % i)
        ws.send(OP_TEXT, sys_cmd("guess-2-0123456789", 12))
        expect_eq(next_push(ws)["code"], 403, "third wrong key")
        f = ws.recv_frame()
        expect_eq((f.op, f.close_code(), f.payload[2:]),
                  (rc.OP_CLOSE, 4029, b"too many bad keys"), "close")
        ws.send_close(4029)	# the engine closes TCP on our answer
        ws.expect_eof()
    with subscriber(eng, []) as ws:
        ws.send(OP_TEXT, sys_cmd(KEY, 1))
        expect_eq(next_push(ws)["code"], 200, "sys with the key afterwards")
    for i in range(40):
        r = exchange(eng, raw_request("GET", "/stats", b"",
                                      (("Authorization", "Bearer x%d" % i),),
                                      length=False))
        expect_eq(r.status, 401, "GET /stats with a wrong key")
    got = rc.stats(eng)["total"]["key_failed"]
    expect_eq(got - before, 43, "key_failed after 3 + 40 wrong keys")
    expect_eq(key_failed_metric(eng), got, "ringcast_key_failed_total")
    lines = [l for l in eng.log if "wrong API key" in l]
    expect(lines, "no log line about the wrong keys")
    expect(len(lines) <= 10, "%d log lines for 43 wrong keys", len(lines))


def answer_on(s, data, what):
    """Sends @data on keep-alive socket @s; returns the Response."""
    s.sendall(data)
    r, rest = rc.read_response(s)
    expect_eq(rest, b"", "%s: bytes after the answer" % what)
    return r


def expect_kept(r, status, what):
    expect_eq(r.status, status, what)
    expect(r.header("Keep-Alive") and not r.has_token("Connection", "close"),
           "%s: answered as if closing: %r", what, r)


def check_errors_keep_alive(eng):
    """An error answer to a request read whole keeps the connection (the
    next request on it is served); one whose request could not be read
    whole (its end unknown) says Connection: close and closes."""
    with rc.connect(eng.host, eng.port) as s:
        for status, data in (
                (404, raw_request("GET", "/nope", length=False)),
                (405, raw_request("PUT", "/publish/x", b"{}")),
                (400, raw_request("POST", "/publish/bad%ZZ", b"{}")),
                (400, raw_request("POST", "/publish/x", b"\xff\xfe")),
                (403, raw_request("POST", "/publish/x", b"{}",
                                  (("Origin", EVIL),))),
                (411, raw_request("POST", "/publish/x", length=False)),
                (200, raw_request("GET", "/healthz", length=False))):
            what = "%s on a kept connection" % data.split(b"\r\n")[0]
            expect_kept(answer_on(s, data, what), status, what)
    big = raw_request("POST", "/publish/x", b"").replace(
        b"Content-Length: 0", b"Content-Length: %d" % (MAX_MESSAGE + 1))
    for status, data in (
            (413, big),
            (411, raw_request("POST", "/publish/x", b"2\r\n{}\r\n0\r\n\r\n",
                              (("Transfer-Encoding", "chunked"),),
                              length=False)),
            (417, raw_request("POST", "/publish/x", b"{}",
                              (("Expect", "later"),))),
            (400, raw_request("GET", "/healthz", length=False)
             .replace(b"Host: 127.0.0.1\r\n", b"")),
            (400, b"GET /healthz HTTP/1.1 extra\r\nHost: a\r\n\r\n"),
            (431, raw_request("GET", "/healthz", length=False,
                              headers=(("X-Big", "b" * 9000),)))):
        r = rc.http_request(eng.host, eng.port,
                            data + raw_request("GET", "/healthz",
                                               length=False))
        what = "%d for %s" % (status, data.split(b"\r\n")[0][:40])
        expect_eq(r.status, status, what)
        expect(r.has_token("Connection", "close") and r.closed and
               r.header("Keep-Alive") is None,
               "%s: connection not closed as answered: %r", what, r)


def check_503_keep_alive(eng):
    """A publish the broker cannot take (Redis unreachable) gets 503 and
    the connection stays, as docs/PROTOCOL.md says."""
    with rc.connect(eng.host, eng.port) as s:
        for i in range(2):
            r = answer_on(s, raw_request("POST", "/publish/x", b"{}"),
                          "publish with Redis down")
            expect_kept(r, 503, "publish %d with Redis down" % i)


def ws_publish(ws, channel, seq):
    ws.send(OP_TEXT, rc.push_cmd("publish", seq=seq, channel=channel,
                                 data={"n": seq}))
    m = next_push(ws)
    while m.get("cmd") == "push":	# its own message, subscribed
        m = next_push(ws)
    return m["code"], m["msg"]


def check_demo_publish(eng, everywhere):
    """--demo lets clients publish to its rooms (demo:*) only, unless
    --client-publish opens every channel."""
    with subscriber(eng, []) as ws:
        expect_eq(ws_publish(ws, "demo:lobby", 1), (200, "ok"),
                  "publish to demo:lobby")
        for i, ch in enumerate(("news", "demo", "demox:a", "$sys")):
            want = (200, "ok") if everywhere and ch[0] != "$" else \
                (403, "publish not allowed") if ch[0] != "$" else None
            got = ws_publish(ws, ch, 2 + i)
            if want:
                expect_eq(got, want, "publish to %s" % ch)
            else:
                expect(got[0] >= 400, "publish to $sys: %s", got)


def checks(run):
    with run.section():
        with rc.Engine(run.exe, "--shards", "2", "--api-key", KEY) as eng:
            run.check("api-key", check_api_key, eng)
        with rc.Engine(run.exe, "--shards", "2", "--echo",
                       "--max-message", "64K") as eng:
            run.check("405", check_405, eng)
            run.check("411", check_411, eng)
            run.check("host", check_host, eng)
            run.check("expect", check_expect, eng)
            run.check("413", check_413, eng)
            run.check("400", check_400, eng)
            run.check("names-and-bodies", check_names_and_bodies, eng)
            run.check("broadcast", check_broadcast, eng)
            run.check("pipelined", check_pipelined, eng)
            run.check("connection-close", check_connection_close, eng)
            run.check("errors-keep-alive", check_errors_keep_alive, eng)
        with rc.Engine(run.exe, "--shards", "1", "--redis",
                       "redis://127.0.0.1:%d" % redisd.free_port()) as eng:
            run.check("503-keep-alive", check_503_keep_alive, eng)
        with rc.Engine(run.exe, "--shards", "2") as eng:
            run.check("cross-site", check_cross_site, eng)
        with rc.Engine(run.exe, "--demo") as eng:
            run.check("cross-site-demo", check_cross_site, eng)
            run.check("demo-publish", check_demo_publish, eng, False)
        with rc.Engine(run.exe, "--demo", "--client-publish") as eng:
            run.check("demo-publish-all", check_demo_publish, eng, True)
        with rc.Engine(run.exe, "--allowed-hosts",
                       "push.example,*.dev.example", "--allowed-origins",
                       "http://app.example:3000") as eng:
            run.check("allowed-lists", check_allowed_lists, eng)
        with rc.Engine(run.exe, "--api-key", KEY) as eng:
            run.check("key-decides", check_key_decides, eng)
        with rc.Engine(run.exe, "--shards", "2", "--api-key", KEY) as eng:
            run.check("key-guesses", check_key_guesses, eng)


if __name__ == "__main__":
    rc.main("publish_http", checks, open_publish=True)
