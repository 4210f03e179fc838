# SPDX-License-Identifier: MIT
"""Mints JSON Web Tokens for the tests, independently of the engine's JWT
library: HS256 with hmac/hashlib, RS256 and ES256 by running the real
`openssl` CLI.  Keys are generated fresh for each test run in a temporary
directory (Keys), so no key material lives in the tree.

ES256 (RFC 7518 3.4) signs with the raw 64-byte r||s, not the DER
ECDSA-Sig-Value that `openssl dgst -sign` writes, so der_to_raw() and
raw_to_der() convert between the two.  verify() checks a minted token
with `openssl dgst -verify`, so a token the engine refuses is known to be
a good one.
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import time


def b64u(data):
    """base64url without padding (RFC 7515 2)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def part(obj):
    """One base64url JSON segment; bytes and str are taken as they are."""
    if isinstance(obj, (bytes, str)):
        return b64u(obj)
    return b64u(json.dumps(obj, separators=(",", ":")))


def claims(sub, ttl=3600, **more):
    """Claims for user @sub valid for @ttl seconds from now; a keyword
    set to None is left out (exp=None: a token that never expires)."""
    now = int(time.time())
    c = {"sub": sub, "iat": now, "exp": now + ttl}
    c.update(more)
    return {k: v for k, v in c.items() if v is not None}


def signing_input(alg, body, header=None):
    h = {"alg": alg, "typ": "JWT"} if header is None else header
    return (part(h) + "." + part(body)).encode()


def hs256(body, secret, header=None):
    """An HS256 token over @body (a claims dict, or raw bytes/str)."""
    if isinstance(secret, str):
        secret = secret.encode()
    msg = signing_input("HS256", body, header)
    sig = hmac.new(secret, msg, hashlib.sha256).digest()
    return msg.decode() + "." + b64u(sig)


def unsigned(body, alg="none"):
    """An `alg: none` token: empty signature segment (RFC 7519 6.1)."""
    return signing_input(alg, body).decode() + "."


def tamper(token):
    """@token with one bit of its signature flipped."""
    head, _, sig = token.rpartition(".")
    raw = bytearray(unb64u(sig))
    raw[len(raw) // 2] ^= 0x01
    return head + "." + b64u(bytes(raw))


# ---------------------------------------------------------------- ECDSA DER

def der_len(data, i):
    """(length, next index) of the DER length at @data[@i]."""
    n = data[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    if k == 0 or k > 2:
        raise ValueError("unsupported DER length form %#x" % n)
    return int.from_bytes(data[i + 1:i + 1 + k], "big"), i + 1 + k


def der_to_raw(der, size=32):
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } to r||s, each
    left-padded to @size bytes (32 for P-256)."""
    if der[0] != 0x30:
        raise ValueError("ECDSA signature is not a DER SEQUENCE")
    n, i = der_len(der, 1)
    if i + n != len(der):
        raise ValueError("DER SEQUENCE length %d, have %d" % (n, len(der) - i))
    out = b""
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("DER INTEGER expected at %d" % i)
        n, i = der_len(der, i + 1)
        v = der[i:i + n]
        i += n
        # A positive INTEGER with its top bit set carries a 0x00 byte.
        v = v.lstrip(b"\x00")
        if len(v) > size:
            raise ValueError("ECDSA integer of %d bytes" % len(v))
        out += v.rjust(size, b"\x00")
    if i != len(der):
        raise ValueError("trailing bytes after the DER SEQUENCE")
    return out


def der_int(v):
    v = v.lstrip(b"\x00") or b"\x00"
    if v[0] & 0x80:
        v = b"\x00" + v
    return b"\x02" + bytes([len(v)]) + v


def raw_to_der(raw):
    """r||s back to DER, for `openssl dgst -verify`."""
    half = len(raw) // 2
    body = der_int(raw[:half]) + der_int(raw[half:])
    return b"\x30" + bytes([len(body)]) + body


# ---------------------------------------------------------------- keys

def openssl(*args, data=None):
    """Runs openssl; returns stdout bytes, fails loudly on an error."""
    exe = shutil.which("openssl") or "/usr/bin/openssl"
    p = subprocess.run([exe] + list(args), input=data, capture_output=True,
                       timeout=60)
    if p.returncode:
        raise AssertionError("openssl %s failed: %s"
                             % (" ".join(args), p.stderr.decode(
                                 errors="replace")))
    return p.stdout


class Keys:
    """An RSA 2048 and a P-256 key pair (and spares for "signed by another
    key") in a temporary directory; use as a context manager."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ringcast-jwt-")

    def path(self, name):
        return os.path.join(self.dir, name)

    def __enter__(self):
        for name in ("rsa", "rsa2"):
            openssl("genrsa", "-out", self.path(name + ".pem"), "2048")
            openssl("rsa", "-in", self.path(name + ".pem"), "-pubout",
                    "-out", self.path(name + ".pub"))
        for name in ("ec", "ec2"):
            openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout",
                    "-out", self.path(name + ".pem"))
            openssl("ec", "-in", self.path(name + ".pem"), "-pubout",
                    "-out", self.path(name + ".pub"))
        return self

    def __exit__(self, *a):
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def pub(self, name):
        """The public key file of pair @name ("rsa", "ec", ...)."""
        return self.path(name + ".pub")

    def pub_text(self, name):
        with open(self.pub(name), "rb") as f:
            return f.read()

    def sign(self, name, msg):
        """openssl's signature over @msg with private key @name: PKCS#1
        v1.5 for RSA, DER ECDSA for EC."""
        return openssl("dgst", "-sha256", "-sign", self.path(name + ".pem"),
                       data=msg)

    def rs256(self, body, name="rsa", header=None):
        msg = signing_input("RS256", body, header)
        return msg.decode() + "." + b64u(self.sign(name, msg))

    def es256(self, body, name="ec", header=None, der=False):
        """An ES256 token; @der keeps openssl's DER signature, which JWS
        does not allow (a verifier must refuse it)."""
        msg = signing_input("ES256", body, header)
        sig = self.sign(name, msg)
        return msg.decode() + "." + b64u(sig if der else der_to_raw(sig))

    def verify(self, name, token):
        """True if openssl verifies @token's signature with public key
        @name (RS256 or ES256, by the header's alg)."""
        head, _, sig = token.rpartition(".")
        sig = unb64u(sig)
        if json.loads(unb64u(head.split(".")[0]))["alg"] == "ES256":
            sig = raw_to_der(sig)
        path = self.path("sig.bin")
        with open(path, "wb") as f:
            f.write(sig)
        exe = shutil.which("openssl") or "/usr/bin/openssl"
        p = subprocess.run([exe, "dgst", "-sha256", "-verify", self.pub(name),
                            "-signature", path], input=head.encode(),
                           capture_output=True, timeout=60)
        return p.returncode == 0
