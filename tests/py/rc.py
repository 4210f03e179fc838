# SPDX-License-Identifier: MIT
"""Shared helpers for the ringcast integration tests.

Every test script runs as `/usr/bin/python3 test_x.py ENGINE_PATH`.  This
module starts the engine on a free loopback port and parses its ready
line (Engine), runs named checks and reports them (Run), speaks raw HTTP
(http_request) and raw RFC 6455 frames (RawWs), so that the tests can send
exactly the bytes a well-behaved client library would refuse to send.
A script's last lines are `rc.main(TITLE, checks)`: checks(run) holds
only its checks.  The environment picks the axes a script runs on:
RINGCAST_TEST_IO (the I/O backend), RINGCAST_TEST_TLS, RINGCAST_TEST_ARGS
(more engine options) and RINGCAST_TEST_BROKER (the broker its engines
share: broker(), nodes(), only_on()).

No helper sleeps: each one blocks on an event (a line, a byte, EOF, a
process exit) with a generous timeout so that a hang fails the test.
The suite must pass on a machine busy with other work (a load average of
10 on two CPUs): a bound here is never what a test measures, and the
clients and the engine are set up so that a test that lags behind is
not closed for it (see ws_connect() and Engine).
"""

import asyncio
import base64
import contextlib
import hashlib
import inspect
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
READY_RE = re.compile(r"listening on ([0-9.]+):(\d+)")

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

# Generous upper bounds: they only turn a hang into a failure, so they
# leave room for a process that gets a sixth of a CPU.
READY_TIMEOUT = 30
IO_TIMEOUT = 30
EXIT_TIMEOUT = 30
# A websockets client's closing handshake: a client that closes behind
# a backlog waits this long for the engine's close before it gives up
# with 1006 (websockets' own default is 10 s).
CLOSE_TIMEOUT = 60
# The engine's --idle-timeout unless a test gives its own: the default
# (90 s since the client last sent a byte) closes with 1001 a subscriber
# that only receives and lags so far behind that its pong is still
# queued, which on a loaded machine a flood of a minute does.
IDLE_TIMEOUT = "1h"


def accept_for(key):
    """Sec-WebSocket-Accept for @key (str or bytes), per RFC 6455 4.2.2."""
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def b64(n):
    """base64 of @n random bytes."""
    return base64.b64encode(os.urandom(n)).decode()


def new_key():
    return b64(16)


# ---------------------------------------------------------------- engine

def die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies, so
    a killed or crashed test leaves no engine or load client behind."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG,
                                            signal.SIGKILL)


_engines = []
# what an engine dies of by itself (a sanitizer's abort, a bad pointer),
# not the SIGTERM or SIGKILL of a test
CRASH_SIGNALS = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS,
                 signal.SIGILL, signal.SIGFPE)


def print_engines(engines):
    for e in engines:
        print("---- engine %s stderr ----" % " ".join(e.argv))
        print(e.output()[-20000:])
    sys.stdout.flush()


class Engine:
    """One engine process.  stderr is drained by a thread into self.log.

    Use as a context manager: on a clean exit of the `with` block the
    engine gets SIGTERM and must exit with status 0 (so every test also
    checks the engine did not crash); on an exception it is killed.
    The engine's idle timeout is IDLE_TIMEOUT unless @args set one (the
    tests of the timeout do).  With @broker, the engine joins the broker
    of the broker axis (broker_args(); nothing on embedded).
    """

    def __init__(self, exe, *args, listen="127.0.0.1:0", broker=False):
        self.exe = exe
        args = [str(a) for a in args]
        self.broker = broker and BROKER != "embedded"
        if broker:
            args += broker_args()
        if "--idle-timeout" not in args:
            args = ["--idle-timeout", IDLE_TIMEOUT] + args
        self.argv = [exe, "--listen", listen] + args
        # meson runs the integration suite a second time on the epoll
        # backend (suite epoll) with RINGCAST_TEST_IO=epoll.
        if os.environ.get("RINGCAST_TEST_IO"):
            self.argv += ["--io", os.environ["RINGCAST_TEST_IO"]]
        # ... and the fan-out tests again with a batch window set.
        self.argv += os.environ.get("RINGCAST_TEST_ARGS", "").split()
        # ... and the integration tests again over TLS (suite tls).
        if TLS and "--tls-cert" not in args:
            _, cert, key = tls_files()
            self.argv += ["--tls-cert", cert, "--tls-key", key]
        # /stats needs the API key when the engine has one.
        self.api_key = os.environ.get("RINGCAST_API_KEY")
        if "--api-key" in self.argv:
            self.api_key = self.argv[self.argv.index("--api-key") + 1]
        self.log = []
        self.host = None
        self.port = None
        self.proc = None
        self.returncode = None
        self._ready = threading.Event()
        _engines.append(self)

    def start(self):
        try:
            self.proc = subprocess.Popen(self.argv,
                                         stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE,
                                         preexec_fn=die_with_parent)
        except OSError as e:
            raise AssertionError("cannot run %s: %s" % (self.exe, e))
        threading.Thread(target=self._drain, args=(self.proc.stderr, ""),
                         daemon=True).start()
        threading.Thread(target=self._drain,
                         args=(self.proc.stdout, "[stdout] "),
                         daemon=True).start()
        if not self._ready.wait(READY_TIMEOUT) or self.port is None:
            rc = self.proc.poll()
            self.kill()
            raise AssertionError("engine %s did not print 'listening on"
                                 " ADDR:PORT' (exit status %r)"
                                 % (" ".join(self.argv), rc))
        if self.broker:	# Redis's links up: else a publish gets 503
            wait_until("node %d up" % self.port, lambda: api(
                self, "GET", "/healthz")[0] == 200)
        return self

    def _drain(self, pipe, tag):
        for raw in pipe:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.append(tag + line)
            m = READY_RE.search(line)
            if not tag and m and self.port is None:
                self.host, self.port = m.group(1), int(m.group(2))
                self._ready.set()
        # EOF: the process is gone; wake start() if it still waits.
        self._ready.set()

    def url(self, path="/echo", host=None):
        return "%s://%s:%d%s" % ("wss" if TLS else "ws", host or self.host,
                                 self.port, path)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=EXIT_TIMEOUT):
        """Waits for the process to exit; returns its status."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("engine did not exit within %ss"
                                 % timeout)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=EXIT_TIMEOUT):
        """Sends @sig and asserts a clean exit (status 0)."""
        rc = self.proc.poll()
        if rc is not None:
            raise AssertionError("engine died before shutdown "
                                 "(status %d)" % rc)
        self.send_signal(sig)
        rc = self.wait(timeout)
        if rc != 0:
            raise AssertionError("engine exited with status %d "
                                 "after %s, want 0"
                                 % (rc, signal.Signals(sig).name))
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self):
        return "\n".join(self.log)

    def __enter__(self):
        return self.start()

    def __exit__(self, etype, exc, tb):
        if etype is None and self.proc.returncode is None:
            try:
                self.stop()
            finally:
                self.kill()
        else:
            self.kill()
        return False


# ---------------------------------------------------------------- broker axis

# meson's broker axis sets RINGCAST_TEST_BROKER: "embedded" (the default:
# no Redis), "redis" (one redis-server) or "cluster" (a Redis Cluster of
# three masters). A test runs the same checks on each and marks the few
# that only make sense on one (only_on()); the server is started on first
# use, shared by the test's engines and killed when the test ends.
BROKERS = ("embedded", "redis", "cluster")
BROKER = os.environ.get("RINGCAST_TEST_BROKER") or "embedded"
if BROKER not in BROKERS:
    raise SystemExit("RINGCAST_TEST_BROKER=%s: want one of %s"
                     % (BROKER, ", ".join(BROKERS)))
_broker = []


def broker():
    """The axis's server: None on embedded, else a redisd.Redis (redis)
    or redisd.Cluster (cluster), started on the first call."""
    if BROKER == "embedded":
        return None
    if not _broker:
        import atexit
        import redisd
        srv = redisd.Redis() if BROKER == "redis" else \
            redisd.Cluster(masters=3, replicas=0)
        atexit.register(srv.__exit__)
        _broker.append(srv.__enter__())
    return _broker[0]


def broker_args():
    """The engine options that join the axis's broker: none on
    embedded, --redis URL or --redis-cluster SEEDS."""
    srv = broker()
    if srv is None:
        return []
    if BROKER == "redis":
        return ["--redis", srv.url]
    return ["--redis-cluster", srv.seeds(3)]


def only_on(*brokers):
    """Whether the axis's broker is one of @brokers: for the checks that
    only make sense there (a raw PUBLISH into one redis-server, a new
    epoch after an engine restart)."""
    return BROKER in brokers


def wait_until(what, pred, timeout=60):
    """Polls @pred() until it holds, blocking: for a state with no event
    (a node's /healthz turning 200) while no client is open to serve."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s"
                                 % (timeout, what))
        time.sleep(0.05)


async def healthy(*engines):
    """Until GET /healthz answers 200 on each of @engines: an engine on
    Redis says 503 until its links are up."""
    for eng in engines:
        await await_state("node %d up" % eng.port, lambda: api(
            eng, "GET", "/healthz")[0] == 200)


@contextlib.contextmanager
def nodes(exe, *args, count=2):
    """@count engines started with @args on the axis's broker, as a list,
    once /healthz says they are up.  On embedded there is no other node:
    the list is one engine @count times, so that what a check does "on
    another node" it does on the same one."""
    with contextlib.ExitStack() as stack:
        n = 1 if BROKER == "embedded" else count
        engs = [stack.enter_context(Engine(exe, *args, broker=True))
                for _ in range(n)]	# each up: Engine.start() waits
        yield engs * count if n == 1 else engs


# ---------------------------------------------------------------- tls axis

# meson's suite tls sets RINGCAST_TEST_TLS=1: every Engine then speaks TLS
# with a certificate made once per test process (and shared with its
# workers through RINGCAST_TEST_TLS_DIR), and the helpers below connect
# with wss:// and https:// trusting that CA.
TLS = os.environ.get("RINGCAST_TEST_TLS") == "1"


def tls_files():
    """(CA, certificate, key) paths: a test CA and an ECDSA P-256
    certificate for localhost and 127.0.0.1 it signed, made on first use
    by the openssl command line in a temporary directory."""
    import tempfile
    d = os.environ.get("RINGCAST_TEST_TLS_DIR")
    if not d:
        import atexit
        import shutil
        d = tempfile.mkdtemp(prefix="ringcast-tls-axis-")
        atexit.register(shutil.rmtree, d, True)	# the maker's, not workers'
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-days", "2"]
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for cmd in (["req", "-x509", *ec, "-keyout", "ca.key", "-out",
                     "ca.pem", "-subj", "/CN=ringcast test CA"],
                    ["req", *ec, "-keyout", "key.pem", "-out", "srv.csr",
                     "-subj", "/CN=localhost"],
                    ["x509", "-req", "-in", "srv.csr", "-CA", "ca.pem",
                     "-CAkey", "ca.key", "-CAcreateserial", "-out",
                     "cert.pem", "-days", "2", "-extfile", "ext.cnf"]):
            subprocess.run(["openssl"] + cmd, cwd=d, check=True, timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.environ["RINGCAST_TEST_TLS_DIR"] = d
        # ... and with Node's clients (node_client.js, ws)
        os.environ["NODE_EXTRA_CA_CERTS"] = os.path.join(d, "ca.pem")
    return tuple(os.path.join(d, f) for f in ("ca.pem", "cert.pem",
                                                "key.pem"))


def tls_ctx():
    """A client ssl context trusting the test CA.  The chain is checked,
    not the name: the tests reach the engine as 0.0.0.0 or 127.0.0.3 too
    (test_tls checks the name)."""
    ctx = ssl.create_default_context(cafile=tls_files()[0])
    ctx.check_hostname = False
    return ctx


def tls_wrap(sock, host):
    """@sock with a TLS handshake done over it on the tls axis, else
    @sock itself."""
    return tls_ctx().wrap_socket(sock, server_hostname=host) if TLS else sock


# What a read sees when the peer is gone: a reset, or on the tls axis a
# TLS connection that ended without close_notify (a server that closes
# with our bytes unread sends RST, which cuts its close_notify too).
CLOSED_ERRORS = (ConnectionResetError, ssl.SSLEOFError,
                 ssl.SSLZeroReturnError)


# ---------------------------------------------------------------- runner

class Run:
    """Runs named checks, keeps going after a failure, reports at the end.

    A check is a function that raises on failure; if it returns a
    coroutine, that runs under asyncio.run() with @timeout.  finish()
    prints each engine's stderr if anything failed and exits 0 or 1; a
    failed check prints at once that of an engine which crashed (one
    SIGTERM'd by a timeout never reaches finish()), and so does SIGTERM.
    """

    def __init__(self, title):
        self.title = title
        self.failed = []
        self.told = set()	# crashed engines whose stderr is printed
        if len(sys.argv) != 2:
            print("usage: %s ENGINE_PATH" % sys.argv[0])
            sys.exit(2)
        self.exe = sys.argv[1]
        # meson's timeout sends SIGTERM: unwind so `finally` and
        # Engine.__exit__ still run and print what they know.
        signal.signal(signal.SIGTERM, self._terminated)

    @staticmethod
    def _terminated(sig, frame):
        print("FAIL: test terminated by SIGTERM (timeout?)")
        print_engines(_engines)	# finish() will not run
        raise SystemExit(1)

    def _crashed(self):
        """Prints, once, the stderr of each engine that died of a
        CRASH_SIGNALS: at the check that saw it, for the test may well
        time out before finish()."""
        dead = [e for e in _engines if e not in self.told and
                e.proc is not None and -(e.proc.poll() or 0) in CRASH_SIGNALS]
        for e in dead:
            self.told.add(e)
            print("engine on port %s died of %s" % (
                e.port, signal.Signals(-e.proc.poll()).name))
        print_engines(dead)

    def check(self, name, fn, *args, timeout=120, **kw):
        t0 = time.monotonic()
        try:
            r = fn(*args, **kw)
            if inspect.iscoroutine(r):
                asyncio.run(asyncio.wait_for(r, timeout))
        except Exception as e:
            self.failed.append(name)
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
            if not isinstance(e, AssertionError):
                traceback.print_exc(file=sys.stdout)
            self._crashed()
            return False
        print("ok   %s (%.1fs)" % (name, time.monotonic() - t0))
        sys.stdout.flush()
        return True

    def fail(self, name, e):
        """Records a failure that happened outside check()."""
        self.failed.append(name)
        print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
        sys.stdout.flush()

    @contextlib.contextmanager
    def section(self, name="engine", errors=AssertionError):
        """A block whose setup may fail (an engine that does not start or
        does not exit cleanly): the failure (one of @errors) is recorded
        as @name and the test goes on after the block.  `with
        run.section(), Engine(...)` catches the engine's start too."""
        try:
            yield
        except errors as e:
            self.fail(name, e)

    def finish(self):
        if self.failed:
            print_engines(_engines)
            print("%s: %d FAILED: %s" % (self.title, len(self.failed),
                                         ", ".join(self.failed)))
            sys.exit(1)
        print("%s: all passed" % self.title)
        sys.exit(0)


def main(title, body, worker=None, open_publish=False):
    """The whole of a test script: `python3 test_x.py ENGINE` runs
    body(Run(@title)) and exits with its result; `python3 test_x.py
    --worker` (a Worker's process) runs coroutine @worker instead.  With
    @open_publish the tests' RINGCAST_API_KEY is dropped, for the engine
    and the workers it starts, so that publishing needs no key."""
    if open_publish:
        os.environ.pop("RINGCAST_API_KEY", None)
    if worker is not None and sys.argv[1:] == ["--worker"]:
        worker_main(worker)
    run = Run(title)
    body(run)
    run.finish()


def expect(cond, msg, *args):
    if not cond:
        raise AssertionError(msg % args if args else msg)


def expect_eq(got, want, what):
    if got != want:
        raise AssertionError("%s: got %s, want %s"
                             % (what, short(got), short(want)))


def short(v, n=80):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "...(%d)" % len(v)


# ---------------------------------------------------------------- http

def connect(host, port, timeout=IO_TIMEOUT):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return tls_wrap(s, host)


def recv_until_eof(s, timeout=IO_TIMEOUT):
    """Reads until the peer closes.  Returns (data, closed): closed is
    False if the peer kept the socket open for @timeout seconds.  A
    reset counts as closed: a server that closes with our bytes unread
    sends RST, and Linux still delivers the data queued before it."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, False
        except CLOSED_ERRORS:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def read_head(s, buf=b"", timeout=IO_TIMEOUT):
    """Reads an HTTP response head.  Returns (head bytes, leftover)."""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        expect(left > 0, "no complete HTTP response head within %ss "
               "(got %s)", timeout, short(buf))
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except CLOSED_ERRORS:
            chunk = b""
        expect(chunk, "connection closed before a complete HTTP "
               "response head (got %s)", short(buf))
        buf += chunk
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


class Response:
    def __init__(self, head, body=b"", closed=None):
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        parts = lines[0].split(" ", 2)
        expect(len(parts) >= 2 and parts[0].startswith("HTTP/1."),
               "bad status line %r", lines[0])
        self.status = int(parts[1])
        self.headers = {}
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            self.headers.setdefault(k.strip().lower(), []).append(
                    v.strip())
        self.body = body
        self.closed = closed

    def header(self, name):
        """The single value of header @name, or None."""
        v = self.headers.get(name.lower())
        return ", ".join(v) if v else None

    def has_token(self, name, token):
        v = self.header(name) or ""
        return token.lower() in [t.strip().lower() for t in v.split(",")]

    def __repr__(self):
        return "<%s %r>" % (self.status_line, self.headers)


def http_request(host, port, data, chunk=None, timeout=IO_TIMEOUT):
    """Sends @data (in @chunk-byte writes if given), reads the whole
    response until the server closes.  Returns a Response whose .closed
    tells whether the server closed the connection."""
    s = connect(host, port, timeout)
    try:
        if chunk:
            for i in range(0, len(data), chunk):
                s.sendall(data[i:i + chunk])
        else:
            s.sendall(data)
        raw, closed = recv_until_eof(s, timeout)
    finally:
        s.close()
    expect(b"\r\n\r\n" in raw, "no complete HTTP response (closed=%s, "
           "got %s)", closed, short(raw))
    i = raw.index(b"\r\n\r\n") + 4
    return Response(raw[:i], raw[i:], closed)


def upgrade_request(path="/echo", host="127.0.0.1", key=None, version="13",
                    extra=(), skip=(), method="GET", proto="HTTP/1.1",
                    upgrade="websocket", connection="Upgrade"):
    """Builds an upgrade request.  Header names in @skip are left out;
    @extra is a list of (name, value) appended at the end."""
    hdrs = [("Host", host), ("Upgrade", upgrade),
            ("Connection", connection),
            ("Sec-WebSocket-Key", key if key is not None else new_key()),
            ("Sec-WebSocket-Version", version)]
    hdrs = [(k, v) for k, v in hdrs if k not in skip] + list(extra)
    lines = ["%s %s %s" % (method, path, proto)]
    lines += ["%s: %s" % kv for kv in hdrs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---------------------------------------------------------------- frames

def mask_bytes(payload, key):
    if not payload:
        return b""
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little")
            ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def build_frame(op, payload=b"", fin=True, rsv=0, mask=True, len_form=None,
                length=None):
    """Encodes one client frame.  @rsv is the 3-bit RSV field; @len_form
    forces the 7/16/64-bit length encoding (7, 16 or 64) to build
    non-minimal encodings; @length overrides the encoded length."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (op & 0xF)
    mbit = 0x80 if mask else 0
    if len_form is None:
        len_form = 7 if n < 126 else 16 if n < 65536 else 64
    if len_form == 7:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif len_form == 16:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + mask_bytes(payload, key)


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, op, payload):
        self.fin, self.rsv, self.op, self.payload = fin, rsv, op, payload

    def close_code(self):
        if len(self.payload) >= 2:
            return struct.unpack("!H", self.payload[:2])[0]
        return None

    def __repr__(self):
        return "<frame op=%#x fin=%d rsv=%d len=%d %s>" % (
                self.op, self.fin, self.rsv, len(self.payload),
                short(self.payload[:40], 60))


class RawWs:
    """A blocking WebSocket client that sends any bytes asked of it and
    checks what the server sends: server frames must be unmasked, carry
    no RSV bits and use the minimal length encoding."""

    def __init__(self, host, port, path="/echo", timeout=IO_TIMEOUT,
                 handshake=True, first=b""):
        self.sock = connect(host, port, timeout)
        self.timeout = timeout
        self.buf = b""
        if handshake:
            self.handshake(host, path, first)

    def handshake(self, host, path="/echo", first=b""):
        """Upgrades; @first is sent in the same write as the request."""
        key = new_key()
        self.sock.sendall(upgrade_request(path, host, key) + first)
        head, self.buf = read_head(self.sock, timeout=self.timeout)
        r = Response(head)
        expect_eq(r.status, 101, "upgrade status")
        expect_eq(r.header("Sec-WebSocket-Accept"), accept_for(key),
                  "Sec-WebSocket-Accept")
        return r

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, op, payload=b"", **kw):
        self.sock.sendall(build_frame(op, payload, **kw))

    def send_close(self, code=None, reason=b""):
        p = b"" if code is None else close_payload(code, reason)
        self.send(OP_CLOSE, p)

    def _recv_exact(self, n):
        # Collect chunks in a list: a 16 MiB frame would make `buf +=`
        # quadratic.
        have, chunks = len(self.buf), [self.buf]
        deadline = time.monotonic() + self.timeout
        while have < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from server within "
                                   "%ss" % self.timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(65536, n - have))
            except socket.timeout:
                raise TimeoutError("no frame from server within "
                                   "%ss" % self.timeout)
            except CLOSED_ERRORS:
                chunk = b""
            if not chunk:
                self.buf = b"".join(chunks)
                raise EOFError("server closed the connection "
                               "(%d bytes of a frame pending)" % have)
            chunks.append(chunk)
            have += len(chunk)
        buf = b"".join(chunks)
        out, self.buf = buf[:n], buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._recv_exact(2)
        expect(not b1 & 0x80, "server frame is masked")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._recv_exact(2))[0]
            expect(n >= 126, "server used 16-bit length for %d", n)
        elif n == 127:
            n = struct.unpack("!Q", self._recv_exact(8))[0]
            expect(n >= 65536, "server used 64-bit length for %d", n)
        f = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF,
                  self._recv_exact(n))
        expect(f.rsv == 0, "server frame has RSV bits %d", f.rsv)
        if f.op >= 8:
            expect(f.fin and n <= 125, "bad server control %r", f)
        return f

    def recv_message(self):
        """Next data frame, answering nothing; pongs are not expected."""
        f = self.recv_frame()
        expect(f.op in (OP_TEXT, OP_BINARY), "want a data frame, got %r"
               " (close code %r)", f, f.close_code())
        expect(f.fin, "echo is fragmented: %r", f)
        return f

    def echo(self, op, payload, **kw):
        self.send(op, payload, **kw)
        f = self.recv_message()
        expect_eq(f.op, op, "echo opcode")
        expect_eq(f.payload, payload, "echo payload")

    def expect_close(self, codes, reason=None, skip_data=False):
        """Reads the next frame: it must be a close with a code in
        @codes (an int, a tuple; None in it allows an empty payload);
        then the server must close TCP.  With @skip_data, echoes of
        data frames may come first.  Returns the close frame."""
        if isinstance(codes, int) or codes is None:
            codes = (codes,)
        try:
            f = self.recv_frame()
            while skip_data and f.op in (OP_TEXT, OP_BINARY):
                f = self.recv_frame()
        except EOFError:
            raise AssertionError("server closed TCP without a close "
                                 "frame, want close %s" % (codes,))
        expect(f.op == OP_CLOSE, "want close %s, got %r", codes, f)
        expect(len(f.payload) != 1, "server close has 1-byte payload")
        code = f.close_code()
        expect(code in codes, "close code %r, want %s", code, codes)
        if len(f.payload) > 2:
            try:
                got = f.payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise AssertionError("close reason not UTF-8")
            if reason is not None:
                expect_eq(got, reason, "close reason")
        elif reason is not None:
            expect_eq("", reason, "close reason")
        self.expect_eof()
        return f

    def expect_eof(self, timeout=None):
        """The server must close TCP and send nothing more."""
        data, closed = recv_until_eof(self.sock, timeout or self.timeout)
        data = self.buf + data
        self.buf = b""
        expect(not data, "bytes after the close frame: %s", short(data))
        expect(closed, "server did not close TCP within %ss",
               timeout or self.timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False


# ---------------------------------------------------------------- websockets

def ws_connect(url, **kw):
    """websockets.connect() with the options every test wants.  No
    client keepalive: websockets would ping every 20 s and fail the
    connection (1011) when the pong, queued behind what the engine is
    still sending, takes 20 s more; the engine's side of keepalive is
    test_timeouts' to test."""
    import websockets
    kw.setdefault("compression", None)
    kw.setdefault("max_size", 64 << 20)
    kw.setdefault("open_timeout", IO_TIMEOUT)
    kw.setdefault("close_timeout", CLOSE_TIMEOUT)
    kw.setdefault("ping_interval", None)
    kw.setdefault("ping_timeout", None)
    if url.startswith("wss:"):
        kw.setdefault("ssl", tls_ctx())
    return websockets.connect(url, **kw)


async def ws_recv(ws, timeout=IO_TIMEOUT):
    return await asyncio.wait_for(ws.recv(), timeout)


async def ws_await_close(ws, timeout=IO_TIMEOUT):
    """Waits until the server closes @ws; returns (code, reason)."""
    import websockets
    try:
        while True:
            m = await asyncio.wait_for(ws.recv(), timeout)
            raise AssertionError("unexpected message %s while "
                                 "awaiting close" % short(m))
    except websockets.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        raise AssertionError("no close from server within %ss" % timeout)
    await asyncio.wait_for(ws.wait_closed(), timeout)
    return ws.close_code, ws.close_reason


def node_path():
    """NODE_PATH under which require('ws') works (Debian node-ws)."""
    for d in ("/usr/share/nodejs", "/usr/lib/nodejs"):
        if os.path.isfile(os.path.join(d, "ws", "package.json")):
            return d
    raise AssertionError("node-ws not found under /usr/share/nodejs or "
                         "/usr/lib/nodejs")


# ---------------------------------------------------------------- channels

def push_cmd(cmd, seq=None, **data):
    """One /ws command as JSON text; @seq left out when None, "data" when
    no keyword is given."""
    import json
    m = {}
    if seq is not None:
        m["seq"] = seq
    m["cmd"] = cmd
    if data:
        m["data"] = data
    return json.dumps(m, separators=(",", ":"))


def http_conn(eng, timeout=IO_TIMEOUT):
    """A keep-alive http.client connection to @eng."""
    import http.client
    if TLS:
        return http.client.HTTPSConnection(eng.host, eng.port,
                                           timeout=timeout, context=tls_ctx())
    return http.client.HTTPConnection(eng.host, eng.port, timeout=timeout)


def post(conn, path, body, headers=None):
    """POST @body on keep-alive @conn; returns (status, body bytes)."""
    conn.request("POST", path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read()


def publish(conn, channel, body, key=None):
    """POST /publish/@channel and expects 200 {"ok":true}."""
    import json
    hdrs = {"Authorization": "Bearer " + key} if key else {}
    status, got = post(conn, "/publish/" + channel, body, hdrs)
    expect(status == 200, "publish to %s: status %d, body %s", channel,
           status, short(got))
    expect(json.loads(got) == {"ok": True}, "publish to %s: body %s",
           channel, short(got))


def post_many(eng, path, bodies, key=None):
    """POSTs each of @bodies to @path (with `Authorization: Bearer @key`
    when given) on one keep-alive connection, in order; each must be
    answered 200."""
    hdrs = {"Authorization": "Bearer " + key} if key else {}
    conn = http_conn(eng)
    try:
        for i, body in enumerate(bodies):
            status, got = post(conn, path, body, hdrs)
            expect(status == 200, "POST %s #%d: status %d, body %s", path,
                   i, status, short(got))
    finally:
        conn.close()


def publish_many(eng, channel, bodies):
    """POST /publish/@channel of each of @bodies, over one connection."""
    post_many(eng, "/publish/" + channel, bodies)


def stats(eng):
    """GET /stats on a connection of its own (with the engine's API key,
    if it has one); returns the parsed JSON."""
    import json
    c = http_conn(eng)
    hdrs = {"Authorization": "Bearer " + eng.api_key} if eng.api_key else {}
    try:
        c.request("GET", "/stats", headers=hdrs)
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    expect(r.status == 200, "GET /stats: status %d", r.status)
    return json.loads(body)


def wait_stats(eng, pred, what, timeout=60):
    """Polls /stats until pred(stats) holds; returns those stats.  The
    poll is the event here: the engine settles its counters on its own
    schedule (closes, cross-shard frees), and there is nothing to await."""
    deadline = time.monotonic() + timeout
    while True:
        s = stats(eng)
        if pred(s):
            return s
        if time.monotonic() > deadline:
            s.pop("shards", None)
            raise AssertionError("stats never showed %s within %ss; last "
                                 "total %s" % (what, timeout, s))
        time.sleep(0.05)


class HealthWatch:
    """GET /healthz on @eng every 20 ms in a thread, for as long as the
    `with` block runs; .seen holds every status. For "healthy throughout"
    checks: there is no event for staying healthy."""

    def __init__(self, eng):
        self.eng = eng
        self.seen = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for _ in range(100000):		# 2000 s at most
            if self._stop.is_set():
                return
            self.seen.append(api(self.eng, "GET", "/healthz")[0])
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._thread.join(30)


def vm_rss_kb(pid):
    """VmRSS of process @pid in KiB, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def read_response(s, buf=b"", timeout=IO_TIMEOUT):
    """Reads one HTTP response with a Content-Length body from keep-alive
    socket @s.  Returns (Response, leftover bytes)."""
    head, buf = read_head(s, buf, timeout)
    r = Response(head)
    n = r.header("Content-Length")
    expect(n is not None, "response without Content-Length: %r", r)
    n = int(n)
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        expect(left > 0, "response body incomplete within %ss", timeout)
        s.settimeout(left)
        chunk = s.recv(65536)
        expect(chunk, "connection closed inside a response body")
        buf += chunk
    r.body = buf[:n]
    return r, buf[n:]


# ---------------------------------------------------------------- workers

@contextlib.contextmanager
def reaped(procs):
    """A block that owns @procs, one subprocess.Popen or a list of them
    (which the block may still fill): whatever happens in it, each one
    still running at its end is killed, and each is waited for, so no
    client outlives its check."""
    try:
        yield procs
    finally:
        for p in procs if isinstance(procs, list) else [procs]:
            if p.poll() is None:
                p.kill()
            p.wait()


class Worker:
    """A client process for load Python cannot carry in one interpreter:
    `python3 SCRIPT --worker`, which reads one JSON config line on stdin,
    then talks in JSON lines {"ev": NAME, ...} both ways (worker_main()
    is its side).  stderr is inherited so a worker's traceback shows."""

    def __init__(self, script, config):
        import json
        import queue
        self.json = json
        self.lines = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, script, "--worker"],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     preexec_fn=die_with_parent)
        threading.Thread(target=self._drain, daemon=True).start()
        self.send(config)

    def _drain(self):
        for raw in self.proc.stdout:
            self.lines.put(raw)
        self.lines.put(None)

    def send(self, obj):
        self.proc.stdin.write(self.json.dumps(obj).encode() + b"\n")
        self.proc.stdin.flush()

    def recv(self, ev, timeout=60):
        """The worker's next message, which must be event @ev.  A
        "progress" message (WorkerIO.progress()) on the way is passed
        over and gives the worker @timeout again: a long phase is bounded
        by the worker's silence, not by how fast a loaded machine is."""
        import queue
        while True:
            try:
                raw = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("worker %d: no %r (nor progress) "
                                     "within %ss"
                                     % (self.proc.pid, ev, timeout))
            if raw is None:
                self.lines.put(None)
                raise AssertionError("worker %d exited (status %r) before "
                                     "%r" % (self.proc.pid,
                                             self.proc.wait(), ev))
            m = self.json.loads(raw)
            if m.get("ev") != "progress" or ev == "progress":
                break
        if m.get("ev") == "error":
            raise AssertionError("worker %d: %s"
                                 % (self.proc.pid, m.get("text")))
        expect(m.get("ev") == ev, "worker %d: got %s, want %r",
               self.proc.pid, short(m, 300), ev)
        return m

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class WorkerIO:
    """The worker's side of the line protocol."""

    def __init__(self):
        import json
        self.json = json

    def say(self, ev, **kw):
        kw["ev"] = ev
        sys.stdout.write(self.json.dumps(kw) + "\n")
        sys.stdout.flush()

    def progress(self, step=1000):
        """Counts one unit of work; every @step says "progress", which
        keeps the parent's Worker.recv() waiting."""
        self.done = getattr(self, "done", 0) + 1
        if self.done % step == 0:
            self.say("progress", done=self.done)

    async def next(self):
        """Awaits the parent's next message; exits on EOF (parent gone)."""
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            os._exit(1)
        return self.json.loads(line)


def worker_main(fn):
    """Runs coroutine fn(config, io) in a worker; an exception becomes an
    "error" message and exit status 1."""
    io = WorkerIO()
    try:
        config = io.json.loads(sys.stdin.readline())
        asyncio.run(fn(config, io))
    except BaseException as e:
        io.say("error", text="%s: %s\n%s" % (type(e).__name__, e,
                                              traceback.format_exc()))
        sys.exit(1)
    sys.exit(0)


# ---------------------------------------------------------------- users

def api(eng, method, path, body=None, key=None, timeout=IO_TIMEOUT):
    """One HTTP request to @eng on a connection of its own, with
    `Authorization: Bearer @key` when @key is given, written in one
    send (as curl does for a small body; http.client writes the body
    separately).  Returns (status, document): the body parsed as JSON,
    or the raw bytes if it is not."""
    import json
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % eng.host,
             "Connection: close"]
    if key:
        lines.append("Authorization: Bearer " + key)
    if body is not None or method == "POST":
        lines.append("Content-Length: %d" % len(body or b""))
    req = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    s = connect(eng.host, eng.port, timeout)
    try:
        s.sendall(req)
        r, _ = read_response(s, timeout=timeout)
    finally:
        s.close()
    try:
        return r.status, json.loads(r.body)
    except ValueError:
        return r.status, r.body


def ws_upgrade(eng, path="/ws", extra=(), timeout=IO_TIMEOUT):
    """Sends a /ws upgrade on a raw socket and returns the Response, with
    its body when it has one (by Content-Length, else up to the close).
    Meant for refused upgrades: a 101's socket is simply closed."""
    s = connect(eng.host, eng.port, timeout)
    try:
        s.sendall(upgrade_request(path, eng.host, extra=extra))
        head, buf = read_head(s, timeout=timeout)
        r = Response(head)
        n = r.header("Content-Length")
        if r.status == 101:
            pass
        elif n is not None:
            deadline = time.monotonic() + timeout
            while len(buf) < int(n):
                left = deadline - time.monotonic()
                expect(left > 0, "%d response body incomplete within %ss",
                       r.status, timeout)
                s.settimeout(left)
                chunk = s.recv(65536)
                expect(chunk, "connection closed inside a response body")
                buf += chunk
            buf = buf[:int(n)]
        else:
            more, r.closed = recv_until_eof(s, timeout)
            buf += more
        r.body = buf
    finally:
        s.close()
    return r


def refused(r, status, what):
    """Checks that upgrade Response @r is HTTP @status with no upgrade and
    a JSON body {"error": "<reason>"}; returns the reason."""
    import json
    expect(r.status == status, "%s: status %d, want %d (%s, body %s)",
           what, r.status, status, r.status_line, short(r.body, 200))
    expect(r.header("Sec-WebSocket-Accept") is None,
           "%s: refusal carries Sec-WebSocket-Accept", what)
    try:
        doc = json.loads(r.body)
    except ValueError:
        raise AssertionError("%s: body is not JSON: %s"
                             % (what, short(r.body, 200)))
    expect(isinstance(doc, dict) and list(doc) == ["error"]
           and isinstance(doc["error"], str) and doc["error"],
           "%s: body %s, want {\"error\": \"<reason>\"}", what,
           short(doc, 200))
    return doc["error"]


async def ws_reply(ws, seq, timeout=IO_TIMEOUT):
    """The next message on @ws, which must be the reply to command @seq:
    anything else arriving first (a push) fails the check."""
    import json
    m = json.loads(await ws_recv(ws, timeout))
    expect(isinstance(m, dict) and "code" in m and m.get("seq") == seq,
           "want the reply to seq %r, got %s", seq, short(m, 300))
    return m


async def ws_command(ws, cmd, seq, timeout=IO_TIMEOUT, **data):
    """Sends command @cmd and returns its reply (see ws_reply)."""
    await ws.send(push_cmd(cmd, seq, **data))
    return await ws_reply(ws, seq, timeout)


async def ws_quiet(ws, seq, what="connection"):
    """A heartbeat round trip that must see nothing but its own reply:
    proof that nothing was queued to @ws before it (pushes and replies
    leave a connection in order)."""
    m = await ws_command(ws, "heartbeat", seq)
    expect(m.get("code") == 200, "%s: heartbeat reply %s", what, short(m))


def uses_mimalloc(exe):
    """Whether @exe allocates with mimalloc: a sanitizer build uses libc
    malloc, whose RSS (quarantine, shadow) says nothing about ours."""
    with open(exe, "rb") as f:
        return b"mi_collect" in f.read()


async def await_state(what, get, pred=bool, timeout=60):
    """Polls blocking @get (in a thread, so the event loop keeps serving
    the open sockets) until pred(value) holds; returns that value.  For
    states the engine has no event for: presence settling after a close,
    a Redis key expiring, a subscription Redis now lists."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while True:
        v = await loop.run_in_executor(None, get)
        if pred(v):
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s; "
                                 "last saw %s" % (timeout, what,
                                                  short(v, 300)))
        await asyncio.sleep(0.05)
