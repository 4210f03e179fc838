# SPDX-License-Identifier: MIT
"""JWT authentication at the /ws upgrade (--auth, --jwt-secret,
--jwt-public-key, --jwt-leeway), with tokens minted by jwtmint.py (hmac
and the openssl CLI), never by the engine's own JWT library.

- mint: jwtmint reproduces RFC 7515 A.1 and openssl verifies its RS256 and
  ES256 signatures, so a refused token is the engine's doing.
- valid HS256, RS256 and ES256 tokens upgrade, each on an engine with the
  matching key, in ?token= and in Authorization: Bearer.
- every refusal is 401, {"error": "..."}, WWW-Authenticate: Bearer
  error="invalid_token", and no upgrade: missing, malformed, bad
  signature, expired, not yet valid, alg none, an algorithm without a key
  (algorithm confusion included), missing or invalid sub.
- the leeway on exp and nbf; a token that expires closes with 4001.
- --auth optional (anonymous allowed, bad tokens still refused) and --auth
  off (tokens ignored); every engine is still serving after its refusals
  and exits 0.
"""

import json
import time

import jwtmint
import rc
from jwtmint import claims
from rc import expect, expect_eq

SECRET = "ringcast-test-secret-0123456789abcdef"
SUB_CHARS = "AZaz09_.:@/=-"


def token_path(token):
    return "/ws?token=" + token


async def connects(eng, token=None, via="query", what="token", seq=1):
    """Upgrades with @token (in the query or the Authorization header)
    and proves the connection serves with a heartbeat; returns it."""
    import websockets
    path, hdrs = "/ws", None
    if token is not None and via == "query":
        path = token_path(token)
    elif token is not None:
        hdrs = {"Authorization": "Bearer " + token}
    try:
        ws = await rc.ws_connect(eng.url(path), extra_headers=hdrs,
                                 ping_interval=None)
    except websockets.InvalidStatusCode as e:
        # Fetch the refusal's body so the failure says why.
        r = rc.ws_upgrade(eng, path, hdrs.items() if hdrs else ())
        raise AssertionError("%s (%s): upgrade refused with %d %s"
                             % (what, via, e.status_code, rc.short(r.body)))
    await rc.ws_quiet(ws, seq, what)
    return ws


async def accepted(eng, token, what, via=("query", "header")):
    for v in via:
        ws = await connects(eng, token, v, what)
        await ws.close()


def expect_401(eng, token, what, via="query"):
    """The upgrade with @token is refused as RFC 6750 says; returns the
    reason."""
    if token is None:
        r = rc.ws_upgrade(eng, "/ws")
    elif via == "query":
        r = rc.ws_upgrade(eng, token_path(token))
    else:
        r = rc.ws_upgrade(eng, "/ws", [("Authorization", "Bearer " + token)])
    what = "%s (%s)" % (what, via)
    reason = rc.refused(r, 401, what)
    www = r.header("WWW-Authenticate") or ""
    expect(www.startswith("Bearer ") and 'error="invalid_token"' in www,
           "%s: WWW-Authenticate %r, want Bearer error=\"invalid_token\"",
           what, www)
    return reason


def upgraded(eng):
    return rc.stats(eng)["total"]["upgraded"]


def refusals(eng, cases, via=("query", "header")):
    """Each (what, token) of @cases is a 401 both ways, and none of them
    upgraded; every case is tried, and the failure lists all that went
    wrong.  Returns {what: reason} for the report."""
    before = upgraded(eng)
    reasons, wrong = {}, []
    for what, token in cases:
        for v in via:
            try:
                reasons[what] = expect_401(eng, token, what, v)
            except AssertionError as e:
                wrong.append("%s (%s): %s" % (what, v, e))
    expect(not wrong, "%d of %d refusals wrong:\n  %s", len(wrong),
           len(cases) * len(via), "\n  ".join(wrong))
    expect_eq(upgraded(eng), before, "upgrades counted during refusals")
    return reasons


# ---------------------------------------------------------------- mint

def check_mint(keys):
    """jwtmint against a published vector and against openssl, so the
    tokens below are right by construction."""
    header = b'{"typ":"JWT",\r\n "alg":"HS256"}'
    body = (b'{"iss":"joe",\r\n "exp":1300819380,\r\n'
            b' "http://example.com/is_root":true}')
    key = jwtmint.unb64u("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0"
                         "gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
    expect_eq(jwtmint.hs256(body, key, header=header),
              "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA"
              "0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc"
              "19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX"
              "k", "RFC 7515 A.1 HS256")
    # A few signatures each: r or s with a top bit set, or shorter than
    # 32 bytes, exercise both directions of the DER conversion.
    for i in range(8):
        t = keys.es256(claims("u%d" % i))
        expect_eq(len(jwtmint.unb64u(t.rsplit(".", 1)[1])), 64,
                  "ES256 raw signature size")
        expect(keys.verify("ec", t), "openssl rejects minted ES256 %s", t)
        expect(not keys.verify("ec2", t), "ES256 verifies with another key")
    t = keys.rs256(claims("u"))
    expect(keys.verify("rsa", t), "openssl rejects minted RS256")
    expect(not keys.verify("rsa2", t), "RS256 verifies with another key")
    expect(not keys.verify("ec", jwtmint.tamper(keys.es256(claims("u")))),
           "a tampered ES256 signature verifies")


# ---------------------------------------------------------------- HS256

def bad_subs():
    return [("no sub", claims(None)),
            ("empty sub", claims("")),
            ("129-byte sub", claims("u" * 129)),
            ("sub with a space", claims("a b")),
            ("sub with %", claims("a%20b")),
            ("non-ASCII sub", claims("jos\u00e9")),
            ("sub with a quote", claims('a"b')),
            ("number sub", claims(42)),
            ("null sub", dict(claims("x"), sub=None)),
            ("array sub", claims(["alice"]))]


async def check_hs256_valid(eng):
    now = int(time.time())
    await accepted(eng, jwtmint.hs256(claims("alice"), SECRET), "HS256")
    await accepted(eng, jwtmint.hs256(claims("bob", app="ios"), SECRET),
                   "HS256 with app")
    await accepted(eng, jwtmint.hs256(claims("c", app="a" * 32,
                                             channels=["x", "y*"]), SECRET),
                   "HS256 with a 32-byte app and channels")
    # The edges of the sub rule: 1 byte, 128 bytes, every allowed sign.
    for sub in ("a", "u" * 128, SUB_CHARS, "user@example.com",
                "tenant/42:user=7"):
        await accepted(eng, jwtmint.hs256(claims(sub), SECRET),
                       "sub %r" % sub)
    # Other query parameters around the token.
    t = jwtmint.hs256(claims("dave"), SECRET)
    for path in ("/ws?v=2&token=" + t, "/ws?token=" + t + "&v=2"):
        ws = await rc.ws_connect(eng.url(path), ping_interval=None)
        await rc.ws_quiet(ws, 1, path[:20])
        await ws.close()
    # iat and nbf in the past are fine.
    await accepted(eng, jwtmint.hs256(claims("e", nbf=now - 100,
                                             iat=now - 100), SECRET),
                   "nbf in the past", via=("query",))


async def check_duplicate_claims(eng):
    """A token naming a claim twice is refused whichever copy a reader
    would take: {"sub":"alice2","sub":"bob2"} is neither user."""
    exp = int(time.time()) + 3600
    for body in ('{"sub":"alice2","sub":"bob2","exp":%d}' % exp,
                 '{"sub":"carol","exp":%d,"exp":%d}' % (exp, exp - 7200),
                 '{"sub":"dan","exp":%d,"channels":["a"],"channels":["*"]}'
                 % exp,
                 '{"sub":"eve","\\u0073ub":"mallory","exp":%d}' % exp):
        reason = expect_401(eng, jwtmint.hs256(body.encode(), SECRET),
                            "duplicate claim in %s" % body)
        expect("duplicate" in reason, "reason %r", reason)
    # The same names once each still pass.
    await accepted(eng, jwtmint.hs256(
        '{"sub":"alice2","exp":%d}' % exp, SECRET), "no duplicate")


async def check_token_limit(eng):
    """The engine runs with --max-message 128: a valid token whose claims
    are far longer is parsed with its own limit, not the message one."""
    pats = ["room-%03d-*" % i for i in range(60)]
    tok = jwtmint.hs256(claims("longclaims", app="web", channels=pats),
                        SECRET)
    expect(len(tok) > 1100, "token of %d bytes", len(tok))
    await accepted(eng, tok, "a %d-byte token" % len(tok), via=("header",))


def check_hs256_refused(eng, keys):
    ok = claims("alice")
    good = jwtmint.hs256(ok, SECRET)
    head, body, sig = good.split(".")
    evil = jwtmint.part(dict(ok, sub="root"))
    now = int(time.time())
    cases = [
        ("malformed: one segment", "abc"),
        ("malformed: two segments", head + "." + body),
        ("malformed: four segments", good + ".x"),
        ("malformed: empty segments", ".."),
        ("malformed: header not JSON",
         jwtmint.b64u("{alg") + "." + body + "." + sig),
        ("malformed: header not an object",
         jwtmint.part(["HS256"]) + "." + body + "." + sig),
        ("malformed: payload not JSON",
         jwtmint.hs256(b'{"sub":"alice"', SECRET)),
        ("malformed: payload not an object",
         jwtmint.hs256(b'"alice"', SECRET)),
        ("malformed: signature not base64url", head + "." + body + ".*!*"),
        ("bad signature: other secret", jwtmint.hs256(ok, SECRET + "x")),
        ("bad signature: flipped bit", jwtmint.tamper(good)),
        ("bad signature: payload swapped", head + "." + evil + "." + sig),
        ("bad signature: empty", head + "." + body + "."),
        ("expired", jwtmint.hs256(claims("alice", ttl=-60), SECRET)),
        ("not yet valid", jwtmint.hs256(claims("alice", nbf=now + 60),
                                        SECRET)),
        # NumericDate may have a fraction; a past one is still past.
        ("expired, fractional exp",
         jwtmint.hs256(dict(ok, exp=now - 60.5), SECRET)),
        ("exp a string", jwtmint.hs256(dict(ok, exp=str(now + 3600)),
                                       SECRET)),
        ("exp negative", jwtmint.hs256(dict(ok, exp=-1), SECRET)),
        ("nbf a string", jwtmint.hs256(dict(ok, nbf=str(now)), SECRET)),
        ("exp null", jwtmint.hs256(dict(ok, exp=None), SECRET)),
        ("alg none", jwtmint.unsigned(ok)),
        ("alg None", jwtmint.unsigned(ok, "None")),
        ("alg none with a signature", jwtmint.unsigned(ok) + sig),
        ("no alg", jwtmint.hs256(ok, SECRET, header={"typ": "JWT"})),
        ("RS256 without a public key", keys.rs256(ok)),
        ("ES256 without a public key", keys.es256(ok)),
        ("HS512 (not a configured algorithm)",
         jwtmint.hs256(ok, SECRET, header={"alg": "HS512", "typ": "JWT"})),
    ]
    cases += [(what, jwtmint.hs256(c, SECRET)) for what, c in bad_subs()]
    reasons = refusals(eng, cases)
    # Missing, with --auth required: no token, or an empty one.
    expect_401(eng, None, "no token")
    expect_401(eng, "", "empty ?token=")
    expect_401(eng, "", "empty Bearer", via="header")
    print("     401 reasons: %s" % json.dumps(sorted(set(reasons.values()))))


async def check_fractional_dates(eng):
    """RFC 7519 NumericDate allows fractions, as JavaScript's
    Date.now() / 1000 gives them: a token with exp and nbf like that is
    let in (libjwt's integer getter alone reads them as 0)."""
    now = time.time()
    body = dict(claims("frac"), exp=now + 3600.25, nbf=now - 0.5)
    await accepted(eng, jwtmint.hs256(body, SECRET), "fractional exp, nbf")


async def check_hs256_leeway(eng):
    """Default leeway 10 s: a token 3 s past exp or 3 s before nbf is
    let in; one that expires while connected is closed with 4001."""
    now = int(time.time())
    await accepted(eng, jwtmint.hs256(claims("f", nbf=now + 3), SECRET),
                   "nbf within the leeway", via=("query",))
    late = jwtmint.hs256(dict(claims("g"), exp=now - 3), SECRET)
    ws = await connects(eng, late, "header", "exp within the leeway")
    code, reason = await rc.ws_await_close(ws, timeout=30)
    expect_eq((code, reason), (4001, "token expired"),
              "close of a connection whose token expired")


async def check_healthy(eng):
    status, body = rc.api(eng, "GET", "/healthz")
    expect_eq(status, 200, "/healthz")
    ws = await connects(eng, jwtmint.hs256(claims("after"), SECRET),
                        "header", "token after the refusals")
    for i in range(2, 5):
        await rc.ws_quiet(ws, i)
    await ws.close()


# ---------------------------------------------------------------- keys

async def check_rs256(eng, keys):
    ok = claims("alice", app="web")
    await accepted(eng, keys.rs256(ok), "RS256")
    pem = keys.pub_text("rsa")
    reasons = refusals(eng, [
        ("RS256 by another key", keys.rs256(ok, "rsa2")),
        ("RS256 flipped bit", jwtmint.tamper(keys.rs256(ok))),
        ("RS256 expired", keys.rs256(claims("alice", ttl=-60))),
        ("RS256 without sub", keys.rs256(claims(None))),
        ("HS256 with only a public key", jwtmint.hs256(ok, SECRET)),
        ("algorithm confusion: HS256 keyed with the PEM",
         jwtmint.hs256(ok, pem)),
        ("algorithm confusion: HS256 keyed with the PEM, no newline",
         jwtmint.hs256(ok, pem.strip())),
        ("ES256 with an RSA key", keys.es256(ok)),
        ("alg none", jwtmint.unsigned(ok)),
    ])
    print("     401 reasons: %s" % json.dumps(sorted(set(reasons.values()))))
    ws = await connects(eng, keys.rs256(claims("after")), "header", "after")
    await ws.close()


async def check_es256(eng, keys):
    ok = claims("alice", app="ios")
    await accepted(eng, keys.es256(ok), "ES256")
    # --jwt-leeway 120 on this engine.
    await accepted(eng, keys.es256(claims("late", ttl=-60)),
                   "ES256 60 s past exp, leeway 120", via=("query",))
    await accepted(eng, keys.es256(claims("early",
                                          nbf=int(time.time()) + 60)),
                   "ES256 60 s before nbf, leeway 120", via=("query",))
    pem = keys.pub_text("ec")
    reasons = refusals(eng, [
        ("ES256 by another key", keys.es256(ok, "ec2")),
        ("ES256 flipped bit", jwtmint.tamper(keys.es256(ok))),
        ("ES256 with a DER signature", keys.es256(ok, der=True)),
        ("ES256 past exp + leeway", keys.es256(claims("alice", ttl=-300))),
        ("ES256 sub too long", keys.es256(claims("u" * 129))),
        ("HS256 with only a public key", jwtmint.hs256(ok, SECRET)),
        ("algorithm confusion: HS256 keyed with the PEM",
         jwtmint.hs256(ok, pem)),
        ("RS256 with an EC key", keys.rs256(ok)),
        ("alg none", jwtmint.unsigned(ok)),
    ])
    print("     401 reasons: %s" % json.dumps(sorted(set(reasons.values()))))
    ws = await connects(eng, keys.es256(claims("after")), "header", "after")
    await ws.close()


# ---------------------------------------------------------------- modes

async def check_optional(eng):
    """--auth optional --jwt-leeway 0: no token is anonymous, a token
    must be valid."""
    ws = await connects(eng, None, "query", "anonymous")
    await ws.close()
    await accepted(eng, jwtmint.hs256(claims("alice"), SECRET), "HS256")
    now = int(time.time())
    refusals(eng, [
        ("malformed", "abc"),
        ("bad signature", jwtmint.hs256(claims("alice"), "wrong")),
        ("expired, leeway 0", jwtmint.hs256(dict(claims("alice"),
                                                 exp=now - 2), SECRET)),
        ("not yet valid, leeway 0",
         jwtmint.hs256(claims("alice", nbf=now + 30), SECRET)),
        ("alg none", jwtmint.unsigned(claims("alice"))),
        ("no sub", jwtmint.hs256(claims(None), SECRET)),
    ])
    ws = await connects(eng, None, "query", "anonymous after refusals")
    await ws.close()


async def check_off(eng):
    """--auth off: tokens, good or bad, are ignored, and a good one does
    not make a user."""
    good = jwtmint.hs256(claims("alice"), SECRET)
    socks = []
    for what, t in (("garbage", "abc"), ("bad signature",
                                         jwtmint.tamper(good)),
                    ("expired", jwtmint.hs256(claims("a", ttl=-600),
                                              SECRET)),
                    ("alg none", jwtmint.unsigned(claims("a"))),
                    ("valid", good)):
        for via in ("query", "header"):
            socks.append(await connects(eng, t, via, what))
    status, doc = rc.api(eng, "GET", "/users/alice")
    expect_eq((status, doc), (200, {"online": False, "connections": 0,
                                    "apps": []}),
              "GET /users/alice with --auth off")
    for ws in socks:
        await ws.close()


def checks(run):
    with run.section(), jwtmint.Keys() as keys:
        run.check("mint", check_mint, keys)
        with rc.Engine(run.exe, "--shards", "2", "--auth", "required",
                       "--jwt-secret", SECRET) as eng:
            run.check("hs256-valid", check_hs256_valid, eng)
            run.check("hs256-refused", check_hs256_refused, eng, keys)
            run.check("hs256-leeway", check_hs256_leeway, eng)
            run.check("fractional-dates", check_fractional_dates, eng)
            run.check("duplicate-claims", check_duplicate_claims, eng)
            run.check("hs256-healthy-after", check_healthy, eng)
        with rc.Engine(run.exe, "--shards", "1", "--auth", "required",
                       "--jwt-secret", SECRET, "--max-message",
                       "128") as eng:
            run.check("token-limit", check_token_limit, eng)
        with rc.Engine(run.exe, "--shards", "1", "--auth", "required",
                       "--jwt-public-key", keys.pub("rsa")) as eng:
            run.check("rs256", check_rs256, eng, keys)
        with rc.Engine(run.exe, "--shards", "1", "--auth", "required",
                       "--jwt-public-key", keys.pub("ec"),
                       "--jwt-leeway", "120") as eng:
            run.check("es256", check_es256, eng, keys)
        with rc.Engine(run.exe, "--shards", "2", "--auth", "optional",
                       "--jwt-secret", SECRET, "--jwt-leeway",
                       "0") as eng:
            run.check("optional", check_optional, eng)
        with rc.Engine(run.exe, "--shards", "1", "--auth", "off",
                       "--jwt-secret", SECRET) as eng:
            run.check("off", check_off, eng)
        with rc.Engine(run.exe, "--shards", "1") as eng:
            run.check("off-by-default", check_off, eng)


if __name__ == "__main__":
    rc.main("auth", checks)
