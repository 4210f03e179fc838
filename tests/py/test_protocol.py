# SPDX-License-Identifier: MIT
"""RFC 6455 framing rules, driven by a raw-frame client (rc.RawWs) so the
test can send what no library would: unmasked frames, RSV bits, reserved
opcodes, oversized or fragmented control frames, bad continuation
sequences, non-minimal lengths, invalid UTF-8 (fail-fast, Autobahn 6.4.x),
every valid and invalid close code, and the --max-message limit (1009).
The cases follow Autobahn|Testsuite categories 1-7 and 9."""

import rc
from rc import OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG
from rc import build_frame as F, close_payload as CP
from rc import expect, expect_eq

VALID_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
               1013, 1014, 3000, 3999, 4000, 4999)
INVALID_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                 5000, 65535)
BAD_UTF8 = (
    b"\xff",                        # never valid
    b"\x80",                        # lone continuation byte
    b"\xc0\x80",                    # overlong NUL
    b"\xc1\xbf",                    # overlong 2-byte
    b"\xe0\x80\xaf",                # overlong 3-byte
    b"\xf0\x80\x80\xaf",            # overlong 4-byte
    b"\xed\xa0\x80",                # UTF-16 surrogate U+D800
    b"\xed\xbf\xbf",                # UTF-16 surrogate U+DFFF
    b"\xf4\x90\x80\x80",            # U+110000, above the Unicode range
    b"\xf8\x88\x80\x80\x80",        # 5-byte form
    b"\xce",                        # truncated at the end of the message
    b"\xe2\x82",                    # truncated 3-byte sequence
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    b"hello\xffworld",
)
GOOD_UTF8 = (
    b"\x7f",
    b"\xc2\x80",                    # U+0080
    b"\xdf\xbf",                    # U+07FF
    b"\xe0\xa0\x80",                # U+0800
    b"\xed\x9f\xbf",                # U+D7FF, just below the surrogates
    b"\xee\x80\x80",                # U+E000, just above them
    b"\xef\xbf\xbf",                # U+FFFF
    b"\xf0\x90\x80\x80",            # U+10000
    b"\xf4\x8f\xbf\xbf",            # U+10FFFF, the last code point
    "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001f600 \u20ac".encode(),
)
KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"


def close_cases():
    """(name, frames to send, close codes accepted in reply)."""
    c = []
    c.append(("unmasked text", [F(OP_TEXT, b"hi", mask=False)], 1002))
    c.append(("unmasked ping", [F(OP_PING, b"hi", mask=False)], 1002))
    c.append(("unmasked close", [F(OP_CLOSE, CP(1000), mask=False)], 1002))
    for rsv in range(1, 8):
        c.append(("rsv %d on text" % rsv, [F(OP_TEXT, b"x", rsv=rsv)],
                  1002))
    c.append(("rsv 4 on ping", [F(OP_PING, b"x", rsv=4)], 1002))
    c.append(("rsv 2 on continuation", [F(OP_TEXT, b"a", fin=False),
                                        F(OP_CONT, b"b", rsv=2)], 1002))
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        c.append(("reserved opcode %#x" % op, [F(op, b"")], 1002))
        c.append(("reserved opcode %#x with payload" % op,
                  [F(op, b"reserved")], 1002))
    c.append(("reserved opcode after valid text",
              [F(OP_TEXT, b"ok"), F(0x5, b"")], 1002))
    for op in (OP_PING, OP_PONG, OP_CLOSE):
        p = CP(1000, b"r" * 124) if op == OP_CLOSE else b"p" * 126
        c.append(("control %#x with 126 bytes" % op, [F(op, p)], 1002))
        c.append(("fragmented control %#x" % op,
                  [F(op, CP(1000) if op == OP_CLOSE else b"p", fin=False)],
                  1002))
    c.append(("continuation, no message open", [F(OP_CONT, b"x")], 1002))
    c.append(("continuation fin=0, no message open",
              [F(OP_CONT, b"x", fin=False)], 1002))
    c.append(("continuation after a finished message",
              [F(OP_TEXT, b"done"), F(OP_CONT, b"x")], 1002))
    for first, second in ((OP_TEXT, OP_TEXT), (OP_TEXT, OP_BINARY),
                          (OP_BINARY, OP_TEXT), (OP_BINARY, OP_BINARY)):
        c.append(("op %d while fragmented op %d is open" % (second, first),
                  [F(first, b"a", fin=False), F(second, b"b")], 1002))
    c.append(("text fin=0 while fragmented message open",
              [F(OP_TEXT, b"a", fin=False), F(OP_CONT, b"b", fin=False),
               F(OP_TEXT, b"c", fin=False)], 1002))
    c.append(("16-bit length for 5 bytes", [F(OP_TEXT, b"hello",
                                               len_form=16)], 1002))
    c.append(("64-bit length for 5 bytes", [F(OP_TEXT, b"hello",
                                               len_form=64)], 1002))
    c.append(("64-bit length for 200 bytes", [F(OP_BINARY, b"b" * 200,
                                                 len_form=64)], 1002))
    c.append(("16-bit length for 0 bytes", [F(OP_BINARY, b"",
                                               len_form=16)], 1002))
    c.append(("16-bit length on a ping", [F(OP_PING, b"p", len_form=16)],
              1002))
    for bad in BAD_UTF8:
        c.append(("invalid UTF-8 %r" % bad, [F(OP_TEXT, bad)], 1007))
    c.append(("invalid UTF-8 truncated at the last fragment",
              [F(OP_TEXT, KOSME + b"\xce", fin=False), F(OP_CONT, b"")],
              1007))
    c.append(("invalid UTF-8 in the 3rd fragment",
              [F(OP_TEXT, b"ab", fin=False), F(OP_CONT, b"cd", fin=False),
               F(OP_CONT, b"\xc0\xaf")], 1007))
    for code in VALID_CODES:
        c.append(("close %d" % code, [F(OP_CLOSE, CP(code))], code))
    c.append(("close 1000 with reason", [F(OP_CLOSE, CP(1000, "bye"))],
              1000))
    c.append(("close 4001 with 123-byte reason",
              [F(OP_CLOSE, CP(4001, "\u03ba" * 61 + "x"))], 4001))
    c.append(("close mid-message",
              [F(OP_TEXT, b"half", fin=False), F(OP_CLOSE, CP(1000))],
              1000))
    c.append(("close, empty payload", [F(OP_CLOSE, b"")], (None, 1000)))
    # Autobahn 7.1.x: nothing is answered after the client's close.
    c.append(("frames after close",
              [F(OP_CLOSE, CP(1000)), F(OP_TEXT, b"late"),
               F(OP_PING, b"late")], 1000))
    c.append(("echo, then close, then a fragment",
              [F(OP_TEXT, b"first"), F(OP_CLOSE, CP(1000)),
               F(OP_CONT, b"late")], 1000))
    c.append(("close, 1-byte payload", [F(OP_CLOSE, b"\x03")], 1002))
    for code in INVALID_CODES:
        c.append(("close with invalid code %d" % code,
                  [F(OP_CLOSE, CP(code))], 1002))
    c.append(("close reason not UTF-8",
              [F(OP_CLOSE, CP(1000, b"\xce\xba\xff"))], 1002))
    c.append(("close reason truncated UTF-8",
              [F(OP_CLOSE, CP(1000, b"ok\xe2\x82"))], 1002))
    return c


def check_close_cases(eng):
    failures = []
    for name, frames, codes in close_cases():
        try:
            with rc.RawWs(eng.host, eng.port) as ws:
                ws.send_raw(b"".join(frames))
                # Valid frames sent before the bad one are echoed first.
                ws.expect_close(codes, skip_data=True)
        except (AssertionError, OSError, EOFError) as e:
            failures.append("%s: %s" % (name, e))
    expect(not failures, "%d of %d cases:\n    %s", len(failures),
           len(close_cases()), "\n    ".join(failures))


def check_echo_frames(eng):
    with rc.RawWs(eng.host, eng.port) as ws:
        for n in (0, 1, 125, 126, 65535, 65536, 100000):
            ws.echo(OP_BINARY, bytes(i & 0xFF for i in range(n)))
            ws.echo(OP_TEXT, b"t" * n)
        for good in GOOD_UTF8:
            ws.echo(OP_TEXT, good)
        for bad in BAD_UTF8:
            ws.echo(OP_BINARY, bad)     # binary is not UTF-8 checked
        # A fragmented message comes back as one unfragmented frame.
        ws.send_raw(F(OP_BINARY, b"ab", fin=False) + F(OP_CONT, b"",
                    fin=False) + F(OP_CONT, b"cd"))
        f = ws.recv_message()
        expect_eq((f.op, f.payload), (OP_BINARY, b"abcd"), "fragments")
        ws.send_close(1000)
        ws.expect_close(1000)


def check_ping_pong(eng):
    with rc.RawWs(eng.host, eng.port) as ws:
        for p in (b"", b"a", b"\x00\xff binary", bytes(range(125))):
            ws.send(OP_PING, p)
            f = ws.recv_frame()
            expect_eq((f.op, f.payload), (OP_PONG, p), "pong")
        # An unsolicited pong is ignored: the next reply is the echo.
        ws.send(OP_PONG, b"unsolicited")
        ws.send(OP_PONG, b"")
        ws.echo(OP_TEXT, b"after pongs")


def check_control_between_fragments(eng):
    with rc.RawWs(eng.host, eng.port) as ws:
        ws.send_raw(F(OP_TEXT, b"Hello, ", fin=False) +
                    F(OP_PING, b"mid-message") +
                    F(OP_CONT, b"World", fin=False) +
                    F(OP_PONG, b"ignored") +
                    F(OP_PING, b"") +
                    F(OP_CONT, b"!"))
        f = ws.recv_frame()
        expect_eq((f.op, f.payload), (OP_PONG, b"mid-message"),
                  "first reply (pong before the message)")
        f = ws.recv_frame()
        expect_eq((f.op, f.payload), (OP_PONG, b""), "second pong")
        f = ws.recv_message()
        expect_eq((f.op, f.payload), (OP_TEXT, b"Hello, World!"),
                  "message around the pings")


def check_utf8_fail_fast(eng):
    # Autobahn 6.4.1 and 6.4.2: the close must come after fragment 2,
    # while the message is still open.  A ping after fragment 1 proves
    # the server did not fail on the incomplete (but so far valid) tail.
    cases = (
        (KOSME, b"\xf4\x90\x80\x80", b"edited"),
        (KOSME + b"\xf4", b"\x90", b"\x80\x80edited"),
    )
    for frag1, frag2, frag3 in cases:
        with rc.RawWs(eng.host, eng.port) as ws:
            ws.send(OP_TEXT, frag1, fin=False)
            ws.send(OP_PING, b"alive")
            f = ws.recv_frame()
            expect_eq((f.op, f.payload), (OP_PONG, b"alive"),
                      "reply to the ping after fragment 1 %r" % frag1)
            ws.send(OP_CONT, frag2, fin=False)
            # Do not send fragment 3: the close must arrive without it.
            ws.expect_close(1007)


def check_utf8_split(eng):
    msg = KOSME + b" \xf0\x9f\x98\x80 \xe2\x82\xac \xf4\x8f\xbf\xbf"
    with rc.RawWs(eng.host, eng.port) as ws:
        for i in range(len(msg) + 1):
            ws.send_raw(F(OP_TEXT, msg[:i], fin=False) +
                        F(OP_CONT, msg[i:]))
            f = ws.recv_message()
            expect_eq((f.op, f.payload), (OP_TEXT, msg),
                      "split at byte %d" % i)
        # One byte per fragment.
        frames = [F(OP_TEXT, msg[:1], fin=False)]
        frames += [F(OP_CONT, msg[i:i + 1], fin=False)
                   for i in range(1, len(msg))]
        frames.append(F(OP_CONT, b""))
        ws.send_raw(b"".join(frames))
        f = ws.recv_message()
        expect_eq(f.payload, msg, "one byte per fragment")


def check_frame_bytewise(eng):
    with rc.RawWs(eng.host, eng.port) as ws:
        for payload in (b"bytewise", b"b" * 300, b"p" * 70000):
            data = F(OP_TEXT, payload)
            step = 1 if len(payload) < 1000 else 4096
            for i in range(0, len(data), step):
                ws.send_raw(data[i:i + step])
            f = ws.recv_message()
            expect_eq(f.payload, payload, "frame written in pieces")
        # Many frames in one write come back in order.
        msgs = [b"m%d" % i for i in range(200)]
        ws.send_raw(b"".join(F(OP_BINARY, m) for m in msgs))
        for m in msgs:
            expect_eq(ws.recv_message().payload, m, "batched frames")


def send_tolerant(ws, data):
    """Sends @data; the server may close before reading it all."""
    try:
        ws.send_raw(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def check_max_message(eng, limit):
    with rc.RawWs(eng.host, eng.port) as ws:
        ws.echo(OP_TEXT, b"t" * limit)
        ws.echo(OP_BINARY, b"b" * limit)
        ws.send_raw(F(OP_BINARY, b"x" * (limit // 2), fin=False) +
                    F(OP_CONT, b"y" * (limit - limit // 2)))
        f = ws.recv_message()
        expect_eq(len(f.payload), limit, "fragmented message at the limit")
        # The limit is per message, not per connection.
        ws.echo(OP_TEXT, b"u" * limit)
    over = [
        ("text", [F(OP_TEXT, b"t" * (limit + 1))]),
        ("binary", [F(OP_BINARY, b"b" * (limit + 1))]),
        ("fragments", [F(OP_TEXT, b"a" * (limit // 2), fin=False),
                       F(OP_CONT, b"b" * (limit - limit // 2 + 1))]),
        ("many fragments", [F(OP_BINARY, b"c" * 100, fin=False)] +
         [F(OP_CONT, b"d" * 100, fin=False) for _ in range(limit // 100)] +
         [F(OP_CONT, b"e")]),
    ]
    for name, frames in over:
        with rc.RawWs(eng.host, eng.port) as ws:
            send_tolerant(ws, b"".join(frames))
            try:
                ws.expect_close(1009)
            except AssertionError as e:
                raise AssertionError("%s over %d: %s" % (name, limit, e))


def check_max_message_16m(eng):
    limit = 16 << 20
    data = bytes(range(256)) * (limit // 256)
    with rc.RawWs(eng.host, eng.port, timeout=30) as ws:
        ws.echo(OP_BINARY, data)
        ws.echo(OP_TEXT, b"t" * (2 << 20))    # over the 1M default
    with rc.RawWs(eng.host, eng.port, timeout=30) as ws:
        send_tolerant(ws, F(OP_BINARY, data + b"!"))
        ws.expect_close(1009)


def checks(run):
    with run.section(), rc.Engine(run.exe, "--echo", "--shards", "2") as eng:
        run.check("close-cases", check_close_cases, eng)
        run.check("echo-frames", check_echo_frames, eng)
        run.check("ping-pong", check_ping_pong, eng)
        run.check("control-between-fragments",
                  check_control_between_fragments, eng)
        run.check("utf8-fail-fast", check_utf8_fail_fast, eng)
        run.check("utf8-split", check_utf8_split, eng)
        run.check("frame-bytewise", check_frame_bytewise, eng)
        run.check("max-message-default", check_max_message, eng, 1 << 20)
    for arg, limit in (("1000", 1000), ("2K", 2048)):
        with run.section("engine --max-message " + arg), \
                rc.Engine(run.exe, "--echo", "--max-message", arg) as eng:
            run.check("max-message-" + arg, check_max_message, eng, limit)
    with run.section("engine --max-message 16M"), \
            rc.Engine(run.exe, "--echo", "--max-message", "16M") as eng:
        run.check("max-message-16M", check_max_message_16m, eng)


if __name__ == "__main__":
    rc.main("protocol", checks)
