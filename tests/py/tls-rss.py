# SPDX-License-Identifier: MIT
"""The engine's VmRSS slope per idle TLS connection, 1.2 against 1.3.

Usage: tls-rss.py ENGINE CERT KEY CA [N]   (N connections each, 1000)
Starts the engine with --tls-min 1.2, opens N idle TLS 1.3 connections
(handshake done, nothing sent), then N idle TLS 1.2 ones, and prints the
engine's VmRSS growth per connection for each. A measurement, not a test.
"""

import json
import os
import socket
import ssl
import subprocess
import sys
import time


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    exe, cert, key, ca = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    port = 47900 + os.getpid() % 50
    eng = subprocess.Popen([exe, "--listen", "127.0.0.1:%d" % port,
                            "--shards", "1", "--tls-cert", cert,
                            "--tls-key", key, "--tls-min", "1.2",
                            "--handshake-timeout", "10m",
                            "--ping-interval", "0"],
                           stderr=subprocess.PIPE)
    try:
        eng.stderr.readline()           # "listening on ..."
        held = []

        def stats_conns():
            ctx = ssl.create_default_context(cafile=ca)
            with socket.create_connection(("127.0.0.1", port)) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET /stats HTTP/1.1\r\nHost: localhost\r\n"
                              b"Connection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
            body = json.loads(data.split(b"\r\n\r\n", 1)[1])
            if "tls" not in body:
                raise RuntimeError(data[:300])
            return body["tls"]["conns"]

        def open_n(version):
            ctx = ssl.create_default_context(cafile=ca)
            ctx.minimum_version = ctx.maximum_version = version
            for _ in range(n):
                raw = socket.create_connection(("127.0.0.1", port))
                held.append(ctx.wrap_socket(raw, server_hostname="localhost"))
            # until the engine has finished every handshake (bounded)
            for _ in range(600):
                if stats_conns() >= len(held) + 1:
                    return
                time.sleep(0.1)
            raise RuntimeError("handshakes not done")

        base = rss_kb(eng.pid)
        open_n(ssl.TLSVersion.TLSv1_3)
        mid = rss_kb(eng.pid)
        open_n(ssl.TLSVersion.TLSv1_2)
        end = rss_kb(eng.pid)
        print("TLS 1.3: %.0f B per idle connection" % ((mid - base) * 1024 / n))
        print("TLS 1.2: %.0f B per idle connection" % ((end - mid) * 1024 / n))
        for s in held:
            s.close()
    finally:
        eng.terminate()
        eng.wait(30)


if __name__ == "__main__":
    main()
