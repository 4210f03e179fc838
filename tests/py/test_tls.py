# SPDX-License-Identifier: MIT
"""wss:// and https:// with --tls-cert and --tls-key.

The test makes its own CA and an ECDSA P-256 server certificate with the
openssl command line, then drives the engine with real TLS clients:
python3-websockets and http.client with an ssl context trusting the CA,
`openssl s_client` for each TLS 1.3 cipher suite, Node's ws, and the C
client tests/tls-client.c (KeyUpdate mid-stream, a tampered and an
oversized record). Handshake limits: garbage instead of a ClientHello, a
client that never sends one (the handshake deadline), and the cap on
handshakes in progress. SIGHUP reloads the certificates; several are
chosen by SNI.
"""

import asyncio
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import websockets

import rc
from rc import expect, expect_eq

TMP = tempfile.mkdtemp(prefix="ringcast-tls-")
CA = os.path.join(TMP, "ca.pem")
CERT = os.path.join(TMP, "cert.pem")
KEY = os.path.join(TMP, "key.pem")
SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
          "TLS_CHACHA20_POLY1305_SHA256"]


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def issue(name, cn, sans):
    """A key and a certificate the test CA signs for @cn with @sans (a
    subjectAltName value), as TMP/@name.pem and TMP/@name.key."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    cert = os.path.join(TMP, name + ".pem")
    key = os.path.join(TMP, name + ".key")
    csr = os.path.join(TMP, name + ".csr")
    ext = os.path.join(TMP, name + ".cnf")
    openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % sans)
    openssl("x509", "-req", "-in", csr, "-CA", CA, "-CAkey",
            os.path.join(TMP, "ca.key"), "-CAcreateserial", "-out", cert,
            "-days", "2", "-extfile", ext)
    return cert, key


def make_certs():
    """A CA, and a certificate for localhost and 127.0.0.1 it signed."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            os.path.join(TMP, "ca.key"), "-out", CA, "-days", "2", "-subj",
            "/CN=ringcast test CA")
    cert, key = issue("server", "localhost", "DNS:localhost,IP:127.0.0.1")
    os.rename(cert, CERT)
    os.rename(key, KEY)


def client_ctx():
    ctx = ssl.create_default_context(cafile=CA)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def tls_engine(exe, *args):
    return rc.Engine(exe, "--tls-cert", CERT, "--tls-key", KEY,
                     "--ping-interval", "0", *args)


def https(eng, method, path, body=None, conn=None):
    c = conn or http.client.HTTPSConnection("127.0.0.1", eng.port,
                                            context=client_ctx(),
                                            timeout=rc.IO_TIMEOUT)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        if conn is None:
            c.close()


def tls_stats(eng):
    st, body = https(eng, "GET", "/stats")
    expect_eq(st, 200, "GET /stats over https")
    return json.loads(body)["tls"]


REFUSED = [0]


def wait_stats(eng, pred, what, timeout=rc.IO_TIMEOUT):
    """Polls /stats until @pred(tls) holds (bounded). A request refused
    (by the cap under test) is counted in REFUSED and made again."""
    deadline = time.monotonic() + timeout
    t = None
    while True:
        try:
            t = tls_stats(eng)
        except (OSError, ssl.SSLError):
            REFUSED[0] += 1
        if t is not None and pred(t):
            return t
        if time.monotonic() > deadline:
            raise AssertionError("%s: /stats tls %s" % (what, t))
        time.sleep(0.05)


# ------------------------------------------------------------------ checks

async def check_wss_pubsub(eng):
    """Subscribe over wss://, publish over https://, get every push in
    order, small ones and ones of several records each."""
    sizes = [10, 1000, 20000, 5, 70000, 16384, 16385, 300] * 4
    url = "wss://127.0.0.1:%d/ws" % eng.port
    async with rc.ws_connect(url, ssl=client_ctx()) as ws:
        await ws.send(rc.push_cmd("subscribe", seq=1, channels=["news"]))
        reply = json.loads(await rc.ws_recv(ws))
        expect_eq(reply, {"seq": 1, "cmd": "subscribe", "code": 200,
                          "msg": "ok"}, "subscribe reply")
        conn = http.client.HTTPSConnection("127.0.0.1", eng.port,
                                           context=client_ctx(),
                                           timeout=rc.IO_TIMEOUT)
        loop = asyncio.get_running_loop()
        try:
            for i, n in enumerate(sizes):
                body = json.dumps({"i": i, "pad": "x" * n})
                st, got = await loop.run_in_executor(
                    None, https, eng, "POST", "/publish/news", body, conn)
                expect(st == 200, "publish %d: %d %s", i, st, got)
        finally:
            conn.close()
        for i, n in enumerate(sizes):
            m = json.loads(await rc.ws_recv(ws))
            expect(m.get("cmd") == "push" and m.get("channel") == "news",
                   "push %d: %s", i, rc.short(m))
            expect(m["data"]["i"] == i and len(m["data"]["pad"]) == n,
                   "push %d out of order or cut", i)


async def check_backpressure(eng):
    """A subscriber that stops reading: the engine's sealed sends go out
    in parts as the socket drains, and every push still arrives whole and
    in order (about 12 MB against a few MB of socket buffers)."""
    n, size = 120, 100000
    url = "wss://127.0.0.1:%d/ws" % eng.port
    async with rc.ws_connect(url, ssl=client_ctx(), max_queue=1,
                             read_limit=1 << 14) as ws:
        await ws.send(rc.push_cmd("subscribe", seq=1, channels=["bulk"]))
        reply = json.loads(await rc.ws_recv(ws))
        expect_eq(reply.get("code"), 200, "subscribe")
        conn = http.client.HTTPSConnection("127.0.0.1", eng.port,
                                           context=client_ctx(),
                                           timeout=rc.IO_TIMEOUT)
        loop = asyncio.get_running_loop()
        try:
            for i in range(n):
                body = json.dumps({"i": i, "pad": chr(97 + i % 26) * size})
                st, got = await loop.run_in_executor(
                    None, https, eng, "POST", "/publish/bulk", body, conn)
                expect(st == 200, "publish %d: %d %s", i, st, got)
        finally:
            conn.close()
        for i in range(n):
            m = json.loads(await rc.ws_recv(ws, 60))
            expect(m["data"]["i"] == i and
                   m["data"]["pad"] == chr(97 + i % 26) * size,
                   "push %d out of order or damaged", i)


async def check_wss_echo_big(eng):
    """Client messages over 16 KiB (several records, split across reads)
    come back whole on /echo."""
    url = "wss://127.0.0.1:%d/echo" % eng.port
    async with rc.ws_connect(url, ssl=client_ctx()) as ws:
        for n in (17000, 100000, 1, 40000):
            data = os.urandom(n)
            await ws.send(data)
            got = await rc.ws_recv(ws)
            expect(got == data, "echo of %d bytes differs (%d back)", n,
                   len(got))


def check_s_client_suites(eng):
    """openssl s_client with each TLS 1.3 suite: GET /healthz."""
    for suite in SUITES:
        p = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % eng.port,
             "-servername", "localhost", "-tls1_3", "-ciphersuites", suite,
             "-CAfile", CA, "-verify_return_error", "-brief", "-ign_eof"],
            input=b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                  b"Connection: close\r\n\r\n",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        out, err = p.stdout.decode(), p.stderr.decode()
        expect("Ciphersuite: " + suite in err, "%s: not negotiated: %s",
               suite, err)
        expect(out.startswith("HTTP/1.1 200 OK") and out.endswith("ok\n"),
               "%s: GET /healthz answered %r", suite, out)


def read_to_close_notify(eng, request):
    """Sends @request over TLS and reads to the end. The end must be the
    engine's close_notify: a bare TCP close raises SSLEOFError here."""
    ctx = client_ctx()
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF	# set by default
    raw = rc.connect(eng.host, eng.port, timeout=20)
    with ctx.wrap_socket(raw, server_hostname="localhost",
                         suppress_ragged_eofs=False) as s:
        s.sendall(request)
        data = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    raise AssertionError("no end after 1000 reads")


def check_close_notify(eng):
    """An answer with Connection: close ends with close_notify."""
    data = read_to_close_notify(eng, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
    expect(data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok\n"),
           "GET /healthz: %r", data)


def check_alpn(eng):
    """ALPN: http/1.1 when offered; a client offering only h2 goes on
    without ALPN rather than being refused."""
    for offer, want in ((["h2", "http/1.1"], "http/1.1"), (["h2"], None)):
        ctx = client_ctx()
        ctx.set_alpn_protocols(offer)
        raw = rc.connect(eng.host, eng.port)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            expect_eq(s.selected_alpn_protocol(), want, "ALPN for %s" % offer)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            head = s.recv(4096)
        expect(head.startswith(b"HTTP/1.1 200"), "answer %r", head)


def check_garbage(eng):
    """Plain HTTP on the TLS port: closed at once, counted."""
    before = tls_stats(eng)["failed"]["garbage"]
    with rc.connect(eng.host, eng.port) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = rc.recv_until_eof(s)
    expect(closed, "garbage: connection left open")
    expect_eq(data, b"", "garbage: bytes sent back")
    wait_stats(eng, lambda t: t["failed"]["garbage"] == before + 1,
               "garbage counted")


def check_alerts(eng):
    """A tampered record gets bad_record_mac (20), a header over the
    limit record_overflow (22), a record that authenticates but has an
    unknown inner content type or holds a ClientHello unexpected_message
    (10); then the connection closes. A record cut by the client's EOF is
    dropped unopened and the engine closes with close_notify (0): RFC 8446
    6.1 asks for close_notify or an error alert before the close, and no
    record failed. Half a record and then silence is closed by the
    handshake deadline, as the first request is not whole."""
    exe = os.environ["RINGCAST_TLS_CLIENT"]
    for mode, want in (("tamper", "alert 20"), ("overflow", "alert 22"),
                       ("badtype", "alert 10"), ("clienthello", "alert 10"),
                       ("truncated", "alert 0\nclosed"),
                       ("partial", "sent\nclosed")):
        p = subprocess.run([exe, "127.0.0.1", str(eng.port), CA, mode],
                           stdout=subprocess.PIPE, timeout=90)
        out = p.stdout.decode()
        expect(p.returncode == 0 and out.strip() == want,
               "%s: %r (status %d)", mode, out, p.returncode)


def check_key_update(eng):
    """KeyUpdate from the client mid-stream, with update_requested (the
    engine's own KeyUpdate must come though nothing is queued) and
    without; pushes keep arriving."""
    exe = os.environ["RINGCAST_TLS_CLIENT"]
    p = subprocess.Popen([exe, "127.0.0.1", str(eng.port), CA, "keyupdate",
                          "ku"], stdout=subprocess.PIPE,
                         preexec_fn=rc.die_with_parent)
    with rc.reaped(p):
        def line():
            ln = p.stdout.readline().decode().strip()
            expect(ln and not ln.startswith("error"), "client: %r", ln)
            return ln
        expect_eq(line(), "ready", "client")
        for i in range(1, 6):
            st, body = https(eng, "POST", "/publish/ku",
                             json.dumps({"n": i}))
            expect_eq(st, 200, "publish %d" % i)
            expect_eq(line(), "push %d" % i, "client")
            if i == 1:
                expect_eq(line(), "server updated", "client")
        expect_eq(line(), "done", "client")
        expect_eq(p.wait(rc.EXIT_TIMEOUT), 0, "client status")


def check_node(eng):
    """Node's ws over wss:// with the CA: an echo."""
    script = """
const WebSocket = require('ws');
const fs = require('fs');
const ws = new WebSocket(process.argv[1], { ca: fs.readFileSync(process.argv[2]),
                                            perMessageDeflate: false });
const want = 'node over wss ' + 'y'.repeat(20000);
ws.on('open', () => ws.send(want));
ws.on('message', (d) => {
    console.log(d.toString() === want ? 'ok' : 'differs');
    ws.close(1000);
});
ws.on('close', () => process.exit(0));
ws.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
"""
    env = dict(os.environ, NODE_PATH=rc.node_path())
    p = subprocess.run(["node", "-e", script,
                        "wss://127.0.0.1:%d/echo" % eng.port, CA],
                       env=env, stdout=subprocess.PIPE, timeout=30)
    expect_eq(p.stdout.decode().strip(), "ok", "node ws over wss")


RINGCAST_JS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "..", "..", "clients", "js", "ringcast.js")


def check_ringcast_js(eng):
    """ringcast.js in Node over wss://, with ws given the test CA."""
    script = """
import fs from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(process.argv[1]);
const WebSocket = require('ws');
const { Client } = await import(process.argv[1]);
const ca = fs.readFileSync(process.argv[3]);
class TlsWebSocket extends WebSocket {
    constructor(url, protocols) { super(url, protocols, { ca }); }
}
const c = new Client(process.argv[2], { WebSocket: TlsWebSocket,
                                        heartbeat: 0, timeout: 5000 });
await c.connect();
await c.subscribe('js', (d) => { console.log('push ' + d.n); process.exit(0); });
console.log('subscribed');
setTimeout(() => { console.log('no push'); process.exit(1); }, 20000);
"""
    env = dict(os.environ, NODE_PATH=rc.node_path())
    p = subprocess.Popen(["node", "--input-type=module", "-e", script,
                          os.path.abspath(RINGCAST_JS),
                          "wss://127.0.0.1:%d/ws" % eng.port, CA],
                         env=env, stdout=subprocess.PIPE,
                         preexec_fn=rc.die_with_parent)
    with rc.reaped(p):
        expect_eq(p.stdout.readline().strip(), b"subscribed", "ringcast.js")
        st, body = https(eng, "POST", "/publish/js", json.dumps({"n": 7}))
        expect_eq(st, 200, "publish")
        expect_eq(p.stdout.readline().strip(), b"push 7", "ringcast.js")
        expect_eq(p.wait(rc.EXIT_TIMEOUT), 0, "node status")


def check_status_page(eng):
    """The status page and ringcast.js come over https:// too."""
    for path, want in (("/", b"<html"), ("/ringcast.js", b"WebSocket")):
        st, body = https(eng, "GET", path)
        expect(st == 200 and want in body[:200000], "GET %s: %d, %d bytes",
               path, st, len(body))


def check_stats(eng):
    """/stats and /metrics count what the checks before did."""
    st, body = https(eng, "GET", "/metrics")
    expect_eq(st, 200, "GET /metrics over https")
    text = body.decode()
    for want in ("ringcast_tls_handshakes_total ",
                 'ringcast_tls_handshake_failures_total{reason="garbage"} 1',
                 # check_alerts: four error alerts; close_notify is none
                 "ringcast_tls_alerts_total 4", "ringcast_tls_state_bytes "):
        expect(want in text, "/metrics has no %r", want)
    t = tls_stats(eng)
    expect(t["handshakes"] >= 10, "handshakes %d", t["handshakes"])
    expect(t["alerts"] >= 4, "alerts %d", t["alerts"])
    # this very request's connection holds its state: a few hundred bytes
    expect(t["conns"] >= 1 and 0 < t["state_bytes"] <= 4096 * t["conns"],
           "state %s", t)


def check_slow_consumer(exe):
    """Over --max-pending-bytes a wss:// subscriber that does not read is
    told 1008, as on ws://: what was in flight, then the close frame."""
    async def go(eng):
        url = "wss://127.0.0.1:%d/ws" % eng.port
        async with rc.ws_connect(url, ssl=client_ctx(), max_queue=1,
                                 read_limit=1 << 14) as ws:
            await ws.send(rc.push_cmd("subscribe", seq=1, channels=["s"]))
            expect_eq(json.loads(await rc.ws_recv(ws)).get("code"), 200,
                      "subscribe")
            conn = http.client.HTTPSConnection("127.0.0.1", eng.port,
                                               context=client_ctx(),
                                               timeout=rc.IO_TIMEOUT)
            loop = asyncio.get_running_loop()
            try:
                for i in range(100):
                    await loop.run_in_executor(
                        None, https, eng, "POST", "/publish/s",
                        json.dumps({"i": i, "pad": "z" * 100000}), conn)
            finally:
                conn.close()
            try:
                for _ in range(100):
                    await rc.ws_recv(ws, 30)
            except websockets.ConnectionClosed:
                pass
            expect_eq(ws.close_code, 1008, "close code")

    with tls_engine(exe, "--max-pending-bytes", "1M") as eng:
        asyncio.run(asyncio.wait_for(go(eng), 120))
        # only this very request's connection is left
        wait_stats(eng, lambda t: t["conns"] == 1, "subscriber closed")


def check_partial_budget(exe):
    """Records cut by a read count against --max-partial-memory: with a
    64 KiB share, eight clients holding 8,000 bytes of a record fit, the
    ninth is closed (partial_closed) and the eight stay."""
    client = os.environ["RINGCAST_TLS_CLIENT"]
    procs = []
    with tls_engine(exe, "--shards", "1", "--max-partial-memory", "64K",
                    "--handshake-timeout", "120s") as eng:
        with rc.reaped(procs):
            for i in range(9):
                p = subprocess.Popen([client, "127.0.0.1", str(eng.port), CA,
                                      "partial"], stdout=subprocess.PIPE,
                                     preexec_fn=rc.die_with_parent)
                procs.append(p)
                expect_eq(p.stdout.readline().strip(), b"sent",
                          "client %d" % i)
            expect_eq(procs[8].stdout.readline().strip(), b"closed",
                      "the client over the budget")
            st = json.loads(https(eng, "GET", "/stats")[1])
            expect_eq(st["total"]["partial_closed"], 1, "partial_closed")
            for i, p in enumerate(procs[:8]):
                expect(p.poll() is None, "client %d within budget closed", i)


def check_bad_files(exe):
    """A certificate or key that cannot be used stops start-up, saying
    which file and why; so does one of the pair alone."""
    missing = os.path.join(TMP, "missing.pem")
    cases = [
        (["--tls-cert", missing, "--tls-key", KEY], missing),
        (["--tls-cert", KEY, "--tls-key", KEY], "not a PEM certificate"),
        (["--tls-cert", CERT, "--tls-key", os.path.join(TMP, "ca.key")],
         "not the certificate's"),
        (["--tls-cert", CERT], "go together"),
        (["--tls-cert", CERT, "--tls-key", KEY, "--tls-min", "1.1"],
         "tls-min"),
    ]
    for args, want in cases:
        p = subprocess.run([exe, "--listen", "127.0.0.1:0"] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        err = p.stderr.decode()
        expect(p.returncode == 2 and want in err,
               "%s: status %d, %r", args, p.returncode, err)


def peer_cert(eng, name="localhost", check=True):
    """The subject CN and serial of the certificate a new client gets,
    asking for @name by SNI (and, if @check, that it is for @name)."""
    ctx = client_ctx()
    ctx.check_hostname = check
    with socket.create_connection(("127.0.0.1", eng.port),
                                  timeout=rc.IO_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            c = s.getpeercert()
    cn = [v for rdn in c["subject"] for k, v in rdn if k == "commonName"]
    return cn[0], c["serialNumber"]


def check_reload(exe):
    """SIGHUP: new clients get the new certificate, an open wss://
    client keeps receiving; a bad file keeps the one in use, counted and
    said on stderr."""
    cert, key = os.path.join(TMP, "live.pem"), os.path.join(TMP, "live.key")
    b_cert, b_key = issue("reload-b", "reload B",
                          "DNS:localhost,IP:127.0.0.1")
    for src, dst in ((CERT, cert), (KEY, key)):
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())

    def swap(src_cert, src_key):
        # rename: the engine never reads a half-written file
        for src, dst in ((src_cert, cert), (src_key, key)):
            with open(src, "rb") as f, open(dst + ".new", "wb") as g:
                g.write(f.read())
            os.rename(dst + ".new", dst)

    async def run(eng):
        url = "wss://127.0.0.1:%d/ws" % eng.port
        first = peer_cert(eng)
        expect_eq(first[0], "localhost", "certificate before SIGHUP")
        async with rc.ws_connect(url, ssl=client_ctx()) as ws:
            await ws.send(rc.push_cmd("subscribe", seq=1, channels=["r"]))
            expect_eq(json.loads(await rc.ws_recv(ws)).get("code"), 200,
                      "subscribe")
            swap(b_cert, b_key)
            eng.send_signal(signal.SIGHUP)
            wait_stats(eng, lambda t: t["reloads"] == 1, "reload counted")
            second = peer_cert(eng)
            expect(second[0] == "reload B" and second[1] != first[1],
                   "after SIGHUP a new client got %s", second)
            for i in range(3):
                st, _ = https(eng, "POST", "/publish/r", json.dumps({"i": i}))
                expect_eq(st, 200, "publish")
                m = json.loads(await rc.ws_recv(ws))
                expect_eq(m.get("data"), {"i": i}, "push to the client of before")
            # a bad certificate file: B stays
            with open(cert + ".new", "w") as g:
                g.write("not a certificate\n")
            os.rename(cert + ".new", cert)
            eng.send_signal(signal.SIGHUP)
            t = wait_stats(eng, lambda t: t["reload_failed"] == 1,
                           "failed reload counted")
            expect_eq(t["reloads"], 1, "reloads after a bad one")
            expect_eq(peer_cert(eng)[0], "reload B", "certificate kept")
            expect("TLS reload failed" in eng.output() and
                   "not a PEM certificate" in eng.output(),
                   "no reason on stderr: %s", eng.output()[-400:])
            st, _ = https(eng, "POST", "/publish/r", json.dumps(9))
            m = json.loads(await rc.ws_recv(ws))
            expect_eq(m.get("data"), 9, "push after the failed reload")

    with rc.Engine(exe, "--tls-cert", cert, "--tls-key", key,
                   "--ping-interval", "0", "--shards", "2") as eng:
        asyncio.run(run(eng))


def check_sni(exe):
    """Three certificates: the client's SNI name picks the one whose SAN
    names it (a wildcard for one label), any other name gets the first;
    wss:// works through the one chosen; SIGHUP reloads them all."""
    b_cert, b_key = issue("sni-b", "sni b", "DNS:b.test,DNS:*.b.test")
    c_new = issue("sni-c2", "sni c", "DNS:c.test")
    c_cert, c_key = issue("sni-c", "sni c", "DNS:c.test")

    async def echo(eng, name):
        url = "wss://%s:%d/echo" % (name, eng.port)
        async with rc.ws_connect(url, ssl=client_ctx(),
                                 server_hostname=name,
                                 host="127.0.0.1") as ws:
            await ws.send("over " + name)
            expect_eq(await rc.ws_recv(ws), "over " + name, "echo")

    with rc.Engine(exe, "--tls-cert", CERT, "--tls-key", KEY,
                   "--tls-cert", b_cert, "--tls-key", b_key,
                   "--tls-cert", c_cert, "--tls-key", c_key,
                   "--ping-interval", "0", "--echo") as eng:
        for name, want in (("localhost", "localhost"), ("b.test", "sni b"),
                           ("x.b.test", "sni b"), ("c.test", "sni c")):
            expect_eq(peer_cert(eng, name)[0], want, "certificate for " + name)
        for name in ("y.x.b.test", "nope.test", "b.test.evil"):
            expect_eq(peer_cert(eng, name, check=False)[0], "localhost",
                      "default certificate for " + name)
        p = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % eng.port,
             "-servername", "x.b.test", "-CAfile", CA, "-verify_return_error",
             "-brief", "-ign_eof"],
            input=b"GET /healthz HTTP/1.1\r\nHost: x.b.test\r\n"
                  b"Connection: close\r\n\r\n",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        err = p.stderr.decode()
        expect("sni b" in err and p.stdout.startswith(b"HTTP/1.1 200 OK"),
               "s_client -servername x.b.test: %s %r", err, p.stdout[:40])
        asyncio.run(echo(eng, "c.test"))
        old = peer_cert(eng, "c.test")[1]
        for src, dst in zip(c_new, (c_cert, c_key)):
            os.rename(src, dst)
        eng.send_signal(signal.SIGHUP)
        wait_stats(eng, lambda t: t["reloads"] == 1, "reload counted")
        expect(peer_cert(eng, "c.test")[1] != old,
               "c.test's certificate not reloaded")
        expect_eq(peer_cert(eng, "b.test")[0], "sni b", "b.test after reload")
        asyncio.run(echo(eng, "b.test"))


TLS12_SUITES = ["ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305"]


def ctx12():
    ctx = client_ctx()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def check_tls12_refused(eng):
    """Without --tls-min 1.2 a client that speaks only 1.2 is refused,
    and counted as a failed handshake."""
    before = tls_stats(eng)["failed"]["handshake"]
    try:
        with socket.create_connection(("127.0.0.1", eng.port),
                                      timeout=rc.IO_TIMEOUT) as raw:
            with ctx12().wrap_socket(raw, server_hostname="localhost"):
                raise AssertionError("a TLS 1.2 handshake succeeded")
    except ssl.SSLError:
        pass
    wait_stats(eng, lambda t: t["failed"]["handshake"] == before + 1,
               "refused 1.2 handshake counted")


def check_tls12(exe):
    """--tls-min 1.2: s_client -tls1_2 with each suite, websockets over
    1.2 with pushes over 16 KiB and big echoes, 1.3 clients as before."""
    async def run(eng):
        sizes = [10, 20000, 16385, 70000, 5]
        url = "wss://127.0.0.1:%d/ws" % eng.port
        async with rc.ws_connect(url, ssl=ctx12()) as ws:
            expect_eq(ws.transport.get_extra_info("ssl_object").version(),
                      "TLSv1.2", "version")
            await ws.send(rc.push_cmd("subscribe", seq=1, channels=["t"]))
            expect_eq(json.loads(await rc.ws_recv(ws)).get("code"), 200,
                      "subscribe")
            for i, n in enumerate(sizes):
                body = json.dumps({"i": i, "pad": "y" * n})
                st, _ = https(eng, "POST", "/publish/t", body)
                expect_eq(st, 200, "publish")
            for i, n in enumerate(sizes):
                m = json.loads(await rc.ws_recv(ws))
                expect(m["data"]["i"] == i and len(m["data"]["pad"]) == n,
                       "push %d over 1.2 out of order or cut", i)
        url = "wss://127.0.0.1:%d/echo" % eng.port
        async with rc.ws_connect(url, ssl=ctx12()) as ws:
            for n in (17000, 100000, 1):
                data = os.urandom(n)
                await ws.send(data)
                expect(await rc.ws_recv(ws) == data, "1.2 echo of %d", n)

    with tls_engine(exe, "--tls-min", "1.2", "--echo") as eng:
        for suite in TLS12_SUITES:
            p = subprocess.run(
                ["openssl", "s_client", "-connect",
                 "127.0.0.1:%d" % eng.port, "-servername", "localhost",
                 "-tls1_2", "-cipher", suite, "-CAfile", CA,
                 "-verify_return_error", "-brief", "-ign_eof"],
                input=b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                      b"Connection: close\r\n\r\n",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            out, err = p.stdout.decode(), p.stderr.decode()
            expect("Ciphersuite: " + suite in err, "%s: %s", suite, err)
            expect(out.startswith("HTTP/1.1 200 OK") and
                   out.endswith("ok\n"), "%s: /healthz %r", suite, out)
        asyncio.run(run(eng))
        asyncio.run(check_wss_echo_big(eng))
        t = wait_stats(eng, lambda t: t["conns"] == 1, "1.2 clients gone")
        expect_eq(t["failed"]["handshake"], 0, "failed handshakes")


def check_deadline(exe):
    """A TCP client that never sends a ClientHello is closed at the
    handshake deadline and counted as a timeout."""
    with tls_engine(exe, "--handshake-timeout", "1s") as eng:
        with rc.connect(eng.host, eng.port) as s:
            data, closed = rc.recv_until_eof(s, timeout=20)
        expect(closed and not data, "idle client not closed by the deadline")
        wait_stats(eng, lambda t: t["failed"]["timeout"] == 1,
                   "timeout counted")
        # handshake done, no request: the same deadline, with close_notify
        expect_eq(read_to_close_notify(eng, b""), b"", "idle https client")
        expect_eq(tls_stats(eng)["failed"]["timeout"], 1, "timeouts")


def check_cap(exe):
    """Past --tls-max-handshakes idle connections, new ones are closed at
    once; the ones within the cap stay."""
    cap, extra = 4, 3
    with tls_engine(exe, "--shards", "1", "--tls-max-handshakes",
                    str(cap)) as eng:
        # accepted in the order they connect: these hold the cap
        held = [rc.connect(eng.host, eng.port) for _ in range(cap)]
        try:
            for _ in range(extra):
                with rc.connect(eng.host, eng.port) as s:
                    data, closed = rc.recv_until_eof(s)
                expect(closed and not data, "client over the cap kept")
            for s in held:
                s.setblocking(False)
                try:
                    expect(s.recv(1) != b"", "bytes to an idle client")
                    raise AssertionError("a client within the cap closed")
                except BlockingIOError:
                    pass
        finally:
            for s in held:
                s.close()
        REFUSED[0] = 0
        t = wait_stats(eng, lambda t: t["handshaking"] == 0,
                       "held clients gone")
        expect_eq(t["failed"]["cap"], extra + REFUSED[0], "cap refusals")


def checks(run):
    make_certs()
    exe = run.exe
    with run.section(errors=Exception):
        with tls_engine(exe, "--echo", "--shards", "2",
                        "--max-pending-bytes", "64M") as eng:
            run.check("wss_pubsub", check_wss_pubsub, eng, timeout=120)
            run.check("backpressure", check_backpressure, eng, timeout=120)
            run.check("wss_echo_big", check_wss_echo_big, eng)
            run.check("s_client_suites", check_s_client_suites, eng)
            run.check("close_notify", check_close_notify, eng)
            run.check("alpn", check_alpn, eng)
            run.check("garbage", check_garbage, eng)
            run.check("alerts", check_alerts, eng)
            run.check("key_update", check_key_update, eng)
            run.check("node_ws", check_node, eng)
            run.check("ringcast_js", check_ringcast_js, eng)
            run.check("status_page", check_status_page, eng)
            run.check("stats", check_stats, eng)
            run.check("tls12_refused", check_tls12_refused, eng)
        run.check("slow_consumer", check_slow_consumer, exe, timeout=150)
        run.check("partial_budget", check_partial_budget, exe)
        run.check("bad_files", check_bad_files, exe)
        run.check("reload", check_reload, exe)
        run.check("sni", check_sni, exe)
        run.check("tls12", check_tls12, exe)
        run.check("handshake_deadline", check_deadline, exe)
        run.check("handshake_cap", check_cap, exe)


if __name__ == "__main__":
    rc.main("tls", checks)
