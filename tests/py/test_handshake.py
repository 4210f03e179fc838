# SPDX-License-Identifier: MIT
"""HTTP side of the engine: the /echo upgrade (accept key computed here,
independently), every rejected handshake with its status code,
`Connection: close` and the server closing the socket, /healthz, 404s (a
plain request's keeping its connection), a request written one byte at
a time, a first frame in the request's packet, the command line
(--help, bad options, the default address), and --allowed-origins."""

import os
import subprocess
import threading

import rc
from rc import expect, expect_eq

ECHO_ARGS = ("--echo", "--shards", "2")
KEY = "test-key-0123456789abcdef"


def check_upgrade(eng):
    key = rc.new_key()
    s = rc.connect(eng.host, eng.port)
    with s:
        s.sendall(rc.upgrade_request(host=eng.host, key=key))
        head, rest = rc.read_head(s)
        r = rc.Response(head)
        expect_eq(r.status, 101, "status")
        expect_eq(r.header("Sec-WebSocket-Accept"), rc.accept_for(key),
                  "Sec-WebSocket-Accept")
        expect(r.has_token("Upgrade", "websocket"), "Upgrade header: %r", r)
        expect(r.has_token("Connection", "upgrade"),
               "Connection header: %r", r)
        expect_eq(rest, b"", "bytes after the 101 head")


def check_accept_vector():
    # RFC 6455 1.3 example, to prove accept_for() itself is right.
    expect_eq(rc.accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
              "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 accept vector")


def check_upgrade_variants(eng):
    """Accepted spellings: header names and tokens are case-insensitive,
    Connection is a token list, extra headers are ignored."""
    variants = [
        dict(upgrade="WebSocket", connection="upgrade"),
        dict(connection="keep-alive, Upgrade"),
        dict(extra=[("Origin", "http://example.com"),
                    ("Sec-WebSocket-Protocol", "chat"),
                    ("User-Agent", "rc-test")]),
    ]
    for v in variants:
        req = rc.upgrade_request(host=eng.host, **v)
        with rc.RawWs(eng.host, eng.port, handshake=False) as ws:
            ws.send_raw(req)
            head, ws.buf = rc.read_head(ws.sock)
            r = rc.Response(head)
            expect_eq(r.status, 101, "status for %s" % v)
            ws.echo(rc.OP_TEXT, b"variant")
    req = rc.upgrade_request(host=eng.host).decode()
    req = req.replace("Sec-WebSocket-Key", "sec-websocket-key")
    req = req.replace("Upgrade: websocket", "UPGRADE: websocket")
    with rc.RawWs(eng.host, eng.port, handshake=False) as ws:
        ws.send_raw(req.encode())
        head, ws.buf = rc.read_head(ws.sock)
        expect_eq(rc.Response(head).status, 101, "status, lowercase names")


def expect_error(eng, req, status, what):
    r = rc.http_request(eng.host, eng.port, req)
    expect_eq(r.status, status, "%s: status" % what)
    expect(r.has_token("Connection", "close"),
           "%s: no 'Connection: close' in %r", what, r)
    expect(r.closed, "%s: server did not close the connection", what)
    return r


def bad_requests(host):
    up = rc.upgrade_request
    pad = "x" * 9000
    many = [("X-H%d" % i, "v") for i in range(60)]   # 5 + 60 = 65 headers
    return [
        ("POST", up(method="POST", host=host), 405),
        ("PUT", up(method="PUT", host=host), 405),
        ("garbage", b"\x01\x02 hello\r\n\r\n", 400),
        ("no HTTP version", b"GET /echo\r\nHost: a\r\n\r\n", 400),
        ("header without colon",
         up(host=host, extra=[("X-Bad", "v")]).replace(b"X-Bad: v",
                                                       b"X-Bad v"), 400),
        ("head over 8192 bytes", up(host=host, extra=[("X-Pad", pad)]), 431),
        ("65 headers", up(host=host, extra=many), 431),
        ("no Sec-WebSocket-Version",
         up(host=host, skip=("Sec-WebSocket-Version",)), 426),
        ("Sec-WebSocket-Version 8", up(host=host, version="8"), 426),
        ("Sec-WebSocket-Version 14", up(host=host, version="14"), 426),
        ("no Sec-WebSocket-Key", up(host=host, skip=("Sec-WebSocket-Key",)),
         400),
        ("key not base64", up(host=host, key="not base64 at all!!!!!!"), 400),
        ("key of 15 bytes", up(host=host, key=rc.b64(15)), 400),
        ("key of 17 bytes", up(host=host, key=rc.b64(17)), 400),
        ("empty key", up(host=host, key=""), 400),
        ("no Upgrade", up(host=host, skip=("Upgrade",)), 400),
        ("Upgrade: h2c", up(host=host, upgrade="h2c"), 400),
        ("no Connection", up(host=host, skip=("Connection",)), 400),
        ("Connection: keep-alive", up(host=host, connection="keep-alive"),
         400),
        ("HTTP/1.0", up(host=host, proto="HTTP/1.0"), 400),
        ("no Host", up(host=host, skip=("Host",)), 400),
    ]


def check_bad_handshakes(eng):
    failures = []
    for what, req, status in bad_requests(eng.host):
        try:
            r = expect_error(eng, req, status, what)
            if status == 426:
                expect_eq(r.header("Sec-WebSocket-Version"), "13",
                          "%s: Sec-WebSocket-Version header" % what)
        except (AssertionError, OSError) as e:
            failures.append(str(e))
    expect(not failures, "\n    ".join([""] + failures))


def check_limits_inclusive(eng):
    """The limits are "over 8192 bytes" and "more than 64 headers": a head
    of exactly 8192 bytes and exactly 64 headers must upgrade."""
    many = [("X-H%d" % i, "v") for i in range(59)]   # 5 + 59 = 64
    req = rc.upgrade_request(host=eng.host, extra=many)
    with rc.RawWs(eng.host, eng.port, handshake=False) as ws:
        ws.send_raw(req)
        head, ws.buf = rc.read_head(ws.sock)
        expect_eq(rc.Response(head).status, 101, "status with 64 headers")
    base = rc.upgrade_request(host=eng.host, extra=[("X-Pad", "")])
    req = rc.upgrade_request(host=eng.host,
                             extra=[("X-Pad", "p" * (8192 - len(base)))])
    expect_eq(len(req), 8192, "test head size")
    with rc.RawWs(eng.host, eng.port, handshake=False) as ws:
        ws.send_raw(req)
        head, ws.buf = rc.read_head(ws.sock)
        expect_eq(rc.Response(head).status, 101,
                  "status with an 8192-byte head")
        ws.echo(rc.OP_BINARY, b"\x00\xff")


def check_healthz(eng):
    for req in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close"
                b"\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"):
        s = rc.connect(eng.host, eng.port)
        with s:
            s.sendall(req)
            head, body = rc.read_head(s)
            r = rc.Response(head)
            expect_eq(r.status, 200, "/healthz status")
            n = r.header("Content-Length")
            if n is not None:
                while len(body) < int(n):
                    chunk = s.recv(4096)
                    expect(chunk, "/healthz body truncated: %r", body)
                    body += chunk
            else:
                more, closed = rc.recv_until_eof(s)
                expect(closed, "/healthz without Content-Length must "
                       "close to end the body")
                body += more
            expect_eq(body, b"ok\n", "/healthz body")


def check_not_found(eng):
    # / is the status page, /demo the demo (with --demo only): neither
    # is a WebSocket endpoint.
    for path in ("/", "/status", "/nope", "/echo/x", "/healthzz", "/demo"):
        req = rc.upgrade_request(path=path, host=eng.host)
        expect_error(eng, req, 404, "upgrade to %s" % path)
    # A plain request read whole keeps its connection after a 404.
    with rc.connect(eng.host, eng.port) as s:
        for path in ("/nope", "/echo/x", "/healthzz", "/demo",
                     "/ringcast.jsx", "/healthz"):
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                      .encode())
            r, _ = rc.read_response(s)
            expect_eq(r.status, 200 if path == "/healthz" else 404,
                      "GET %s" % path)
            expect(not r.has_token("Connection", "close"),
                   "GET %s: closed after a 404: %r", path, r)
    for path, ctype in (("/", "text/html"), ("/status", "text/html"),
                        ("/ringcast.js", "text/javascript")):
        r = rc.http_request(eng.host, eng.port,
                            ("GET %s HTTP/1.1\r\nHost: x\r\n"
                             "Connection: close\r\n\r\n" % path).encode())
        expect_eq(r.status, 200, "GET %s" % path)
        expect((r.header("content-type") or "").startswith(ctype),
               "GET %s: type %s", path, r.header("content-type"))


def check_echo_disabled(exe):
    with rc.Engine(exe, "--shards", "1") as eng:
        expect_error(eng, rc.upgrade_request(host=eng.host), 404,
                     "/echo without --echo")
        r = rc.http_request(eng.host, eng.port,
                            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
        expect_eq(r.status, 200, "/healthz without --echo")


def check_byte_writes(eng):
    key = rc.new_key()
    req = rc.upgrade_request(host=eng.host, key=key)
    with rc.RawWs(eng.host, eng.port, handshake=False) as ws:
        for i in range(len(req)):
            ws.send_raw(req[i:i + 1])
        head, ws.buf = rc.read_head(ws.sock)
        r = rc.Response(head)
        expect_eq(r.status, 101, "status, 1-byte writes")
        expect_eq(r.header("Sec-WebSocket-Accept"), rc.accept_for(key),
                  "accept, 1-byte writes")
        ws.echo(rc.OP_TEXT, b"one byte at a time")


def check_first_frame_in_request(eng):
    first = rc.build_frame(rc.OP_TEXT, b"in the same packet")
    second = rc.build_frame(rc.OP_BINARY, b"\x01\x02\x03")
    with rc.RawWs(eng.host, eng.port, first=first + second) as ws:
        f = ws.recv_message()
        expect_eq((f.op, f.payload), (rc.OP_TEXT, b"in the same packet"),
                  "first frame echo")
        f = ws.recv_message()
        expect_eq((f.op, f.payload), (rc.OP_BINARY, b"\x01\x02\x03"),
                  "second frame echo")
    # Half a frame with the request, the rest in a second write.
    third = rc.build_frame(rc.OP_TEXT, b"split after the request")
    with rc.RawWs(eng.host, eng.port, first=third[:5]) as ws:
        ws.send_raw(third[5:])
        f = ws.recv_message()
        expect_eq(f.payload, b"split after the request",
                  "frame split across the request's packet")


def check_open_default(exe):
    """Without an API key the engine listens on loopback only: any other
    address is refused at start (status 2, the reason on stderr) unless
    --insecure-open says so; with a key any address is fine."""
    env = dict(os.environ)
    env.pop("RINGCAST_API_KEY", None)
    for listen in ("0.0.0.0:0", "192.0.2.1:0"):
        p = subprocess.run([exe, "--listen", listen], env=env,
                           capture_output=True, timeout=10)
        expect_eq(p.returncode, 2, "exit status on %s without a key" % listen)
        err = p.stderr.decode(errors="replace")
        expect("--api-key" in err and "--insecure-open" in err,
               "stderr does not say what to do: %r", err)
    for args in (("--insecure-open",), ("--api-key", KEY)):
        with rc.Engine(exe, *args, listen="0.0.0.0:0") as eng:
            r = rc.api(eng, "GET", "/healthz")
            expect_eq(r[0], 200, "/healthz on 0.0.0.0 with %s" % (args,))
    with rc.Engine(exe, listen="127.0.0.3:0") as eng:
        expect_eq(rc.api(eng, "GET", "/healthz")[0], 200,
                  "/healthz on 127.0.0.3 without a key")


def start_bare(exe, env, *args):
    """Runs @exe with @args and no --listen in a network namespace of its
    own (unshare -rn), where port 8080 is free whatever else runs on this
    machine; returns its stderr up to the ready line (or its exit) and
    stops it. Without unshare it runs here and a port 8080 already taken
    shows the address in the bind error instead."""
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True,
                           timeout=10)
    argv = ([exe] if probe.returncode else ["unshare", "-rn", exe])
    p = subprocess.Popen(argv + list(args), env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, preexec_fn=rc.die_with_parent)
    lines, ready = [], threading.Event()

    def drain():
        for raw in p.stderr:
            lines.append(raw.decode(errors="replace"))
            if "listening on" in lines[-1]:
                ready.set()
        ready.set()		# EOF: it exited

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    with rc.reaped(p):
        ready.wait(rc.READY_TIMEOUT)
        if p.poll() is None:
            p.terminate()
        p.wait(rc.EXIT_TIMEOUT)
        t.join(rc.EXIT_TIMEOUT)
    return "".join(lines)


def check_bare_default(exe):
    """A bare `ringcast` starts: without an API key on 127.0.0.1:8080,
    saying how to open it to other hosts; with a key (option or
    environment) on 0.0.0.0:8080."""
    env = dict(os.environ)
    env.pop("RINGCAST_API_KEY", None)
    io = ["--io", os.environ["RINGCAST_TEST_IO"]] \
        if os.environ.get("RINGCAST_TEST_IO") else []
    for args, extra, want in (
            ((), {}, "127.0.0.1:8080"),
            (("--api-key", KEY), {}, "0.0.0.0:8080"),
            ((), {"RINGCAST_API_KEY": KEY}, "0.0.0.0:8080")):
        err = start_bare(exe, dict(env, **extra), "--shards", "1", *io,
                         *args)
        what = "ringcast %s%s" % (" ".join(args),
                                  " with RINGCAST_API_KEY" if extra else "")
        expect("listening on " + want in err or
               "listen %s: Address already in use" % want in err,
               "%s: not on %s: %r", what, want, err)
        hint = "--api-key" in err and "--listen 0.0.0.0" in err
        expect(hint == (want.startswith("127.")),
               "%s: hint on how to open it %s: %r", what,
               "missing" if not hint else "printed with a key", err)


def check_cli(exe):
    p = subprocess.run([exe, "--help"], capture_output=True, timeout=10)
    expect_eq(p.returncode, 0, "--help exit status")
    expect(p.stdout.strip(), "--help printed nothing on stdout")
    for argv, name in ((["--no-such-option"], "--no-such-option"),
                       (["--max-message", "lots"], "--max-message"),
                       (["--ping-interval", "soon"], "--ping-interval"),
                       (["--shards", "x"], "--shards"),
                       # strtoull() alone reads " -1" as 2^64 - 1
                       (["--max-conns", " -1"], "--max-conns"),
                       (["--max-conns", "+5"], "--max-conns"),
                       (["--max-pending-bytes", " 4M"], "--max-pending-bytes"),
                       (["--idle-timeout", "-1s"], "--idle-timeout"),
                       # a user's own subscription would wrap the count
                       (["--max-subs", "65535"], "--max-subs"),
                       (["--allowed-origins", "example.com"],
                        "--allowed-origins"),
                       (["--allowed-origins", "https://a.com/path"],
                        "--allowed-origins"),
                       (["--allowed-origins", "https://a.*.com"],
                        "--allowed-origins"),
                       (["--allowed-origins", "https://a.com,"],
                        "--allowed-origins"),
                       (["--allowed-hosts", "a.example:8080"],
                        "--allowed-hosts"),
                       (["--allowed-hosts", "*.a.example,"],
                        "--allowed-hosts"),
                       (["--allowed-hosts", "a.*.example"],
                        "--allowed-hosts"),
                       (["--allowed-hosts", "*"], "--allowed-hosts"),
                       # a short key is guessed; 16 bytes at least
                       (["--api-key", "fifteen-bytes.."], "16"),
                       # Keep-Alive: timeout=N counts whole seconds
                       (["--http-idle-timeout", "500ms"],
                        "--http-idle-timeout"),
                       (["--redis-timeout", "10ms"], "--redis-timeout"),
                       (["--redis-max-pending", "1K"],
                        "--redis-max-pending"),
                       (["--max-partial-memory", "1K"],
                        "--max-partial-memory")):
        p = subprocess.run([exe] + argv + ["--listen", "127.0.0.1:0"],
                           capture_output=True, timeout=10)
        expect_eq(p.returncode, 2, "exit status for %s" % argv)
        expect(name in p.stderr.decode(errors="replace"),
               "stderr for %s does not name %s: %r", argv, name, p.stderr)
    env = dict(os.environ, RINGCAST_API_KEY="short")
    p = subprocess.run([exe, "--listen", "127.0.0.1:0"], env=env,
                       capture_output=True, timeout=10)
    err = p.stderr.decode(errors="replace")
    expect_eq(p.returncode, 2, "exit status with a 5-byte RINGCAST_API_KEY")
    expect("RINGCAST_API_KEY" in err and "16" in err,
           "stderr does not say the key is too short: %r", err)
    # A secret from the environment that does not fit stops the engine;
    # it must never start without the key it was given.
    for var in ("RINGCAST_API_KEY", "RINGCAST_JWT_SECRET"):
        env = dict(os.environ, **{var: "k" * 600})
        p = subprocess.run([exe, "--listen", "127.0.0.1:0"], env=env,
                           capture_output=True, timeout=10)
        expect_eq(p.returncode, 2, "exit status with a 600-byte %s" % var)
        expect(var in p.stderr.decode(errors="replace"),
               "stderr does not name %s: %r", var, p.stderr)


ORIGINS = "https://app.example.com,https://*.example.org,http://localhost:3000"


def check_origins(exe):
    """--allowed-origins: an upgrade with an Origin not listed is 403 and
    nothing else; without Origin (not a browser) it goes through."""
    cases = ((None, 101), ("https://app.example.com", 101),
             ("HTTPS://App.Example.COM", 101), ("https://a.example.org", 101),
             ("https://x.y.example.org", 101), ("http://localhost:3000", 101),
             ("https://evil.com", 403), ("https://app.example.com.evil.com",
                                         403),
             ("http://app.example.com", 403), ("https://example.org", 403),
             ("https://.example.org", 403), ("https://a.example.org:8443",
                                             403),
             ("http://localhost:3001", 403), ("null", 403))
    with rc.Engine(exe, "--echo", "--allowed-origins", ORIGINS) as eng:
        for origin, want in cases:
            extra = [("Origin", origin)] if origin else []
            with rc.connect(eng.host, eng.port) as s:
                s.sendall(rc.upgrade_request(host=eng.host, extra=extra))
                head, _ = rc.read_head(s)
                expect_eq(rc.Response(head).status, want,
                          "upgrade with Origin %r" % origin)
                if want == 403:
                    _, closed = rc.recv_until_eof(s)
                    expect(closed, "connection left open after a 403")


def checks(run):
    run.check("accept-vector", check_accept_vector)
    run.check("cli", check_cli, run.exe)
    run.check("open-default", check_open_default, run.exe)
    run.check("bare-default", check_bare_default, run.exe)
    with run.section(), rc.Engine(run.exe, *ECHO_ARGS) as eng:
        run.check("upgrade", check_upgrade, eng)
        run.check("upgrade-variants", check_upgrade_variants, eng)
        run.check("bad-handshakes", check_bad_handshakes, eng)
        run.check("limits-inclusive", check_limits_inclusive, eng)
        run.check("healthz", check_healthz, eng)
        run.check("not-found", check_not_found, eng)
        run.check("byte-writes", check_byte_writes, eng)
        run.check("first-frame-in-request",
                  check_first_frame_in_request, eng)
        # Still serving after all of the above.
        run.check("upgrade-after", check_upgrade, eng)
    run.check("echo-disabled", check_echo_disabled, run.exe)
    run.check("origins", check_origins, run.exe)


if __name__ == "__main__":
    rc.main("handshake", checks)
