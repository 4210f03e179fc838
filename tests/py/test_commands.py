# SPDX-License-Identifier: MIT
"""The /ws command protocol, one raw-frame client per check: seq echoed
verbatim (numbers of every spelling, strings with escapes) or left out
when absent; every error reply (malformed, unknown command, bad channel
name, too many subscriptions, too large) with the connection still
serving a heartbeat afterwards and nothing of a failed command applied
(/stats counts the subscriptions); --max-subs; publish refused without
--client-publish and delivered with it; a binary message closes 1003."""

import json

import rc
from rc import OP_TEXT, OP_BINARY, expect, expect_eq

MALFORMED = {"code": 400, "msg": "malformed command"}
BAD_NAMES = ["", "a b", "x" * 129, "caf\u00e9", "a#b", "a\u0000b",
             "news\n", "a,b", "*", ">", "a?b", "\\", "a\"b", "%41"]
GOOD_NAMES = ["x" * 128, "Az09_.:@/=-", "-", "a/b/c", "user@host",
              "k=v"]


class Cmds(rc.RawWs):
    """A /ws connection that sends commands and reads their replies."""

    def __init__(self, eng):
        super().__init__(eng.host, eng.port, path="/ws")
        self.hb = 0

    def ask_raw(self, text):
        self.send(OP_TEXT, text)
        f = self.recv_message()
        expect_eq(f.op, OP_TEXT, "reply opcode")
        return f.payload.decode()

    def ask(self, text):
        raw = self.ask_raw(text)
        try:
            return json.loads(raw)
        except ValueError:
            raise AssertionError("reply to %s is not JSON: %s"
                                 % (rc.short(text), rc.short(raw)))

    def expect_reply(self, text, want):
        got = self.ask(text)
        expect(got == want, "to %s: got %s, want %s", rc.short(text, 200),
               got, want)

    def cmd(self, cmd, seq, want_code, want_msg=None, **data):
        got = self.ask(rc.push_cmd(cmd, seq=seq, **data))
        want = {"seq": seq, "cmd": cmd, "code": want_code}
        if want_msg is not None:
            want["msg"] = want_msg
        got_part = {k: got.get(k) for k in want}
        expect(got_part == want, "%r: got %s, want %s (data %s)", cmd,
               got, want, rc.short(data, 60))
        return got

    def heartbeat(self):
        """Must answer: the connection survived whatever came before."""
        self.hb += 1
        seq = "hb%d" % self.hb
        got = self.ask(rc.push_cmd("heartbeat", seq=seq))
        expect(got.get("seq") == seq and got.get("cmd") == "heartbeat"
               and got.get("code") == 200, "heartbeat after an error: %s",
               got)


def subs_total(eng):
    return rc.stats(eng)["total"]["subscriptions"]


def check_seq_echo(eng):
    tokens = ["0", "7", "-3", "1.5", "-0.25", "1e3", "-2E-2",
              "12345678901234567890", '"s-1"', '""',
              r'"a\"b\\c\n\u00e9 \ud83d\ude00 \/"', '"caf\u00e9 raw"']
    with Cmds(eng) as ws:
        for tok in tokens:
            raw = ws.ask_raw('{"seq":%s,"cmd":"heartbeat"}' % tok)
            got = json.loads(raw)
            expect(got.get("seq") == json.loads(tok) and
                   got.get("cmd") == "heartbeat" and got.get("code") == 200,
                   "seq %s: reply %s", tok, raw)
            expect('"seq":%s' % tok in raw, "seq %s not echoed verbatim: "
                   "%s", tok, raw)
        # seq after cmd, whitespace around everything
        got = ws.ask(' { "cmd" : "heartbeat" , "seq" : 9 } ')
        expect(got.get("seq") == 9 and got.get("code") == 200,
               "seq after cmd: %s", got)
        for text in ('{"cmd":"heartbeat"}',
                     '{"cmd":"subscribe","data":{"channels":["q"]}}'):
            got = ws.ask(text)
            expect("seq" not in got and got.get("code") == 200 and
                   got.get("cmd") == json.loads(text)["cmd"],
                   "without seq: %s -> %s", text, got)
        got = ws.ask('{"seq":1,"cmd":"subscribe","data":{"channels":'
                     '["news","room:7"]}}')
        expect_eq(got, {"seq": 1, "cmd": "subscribe", "code": 200,
                        "msg": "ok"}, "subscribe reply")
        got = ws.ask('{"seq":2,"cmd":"unsubscribe","data":{"channels":'
                     '["news"]}}')
        expect_eq(got, {"seq": 2, "cmd": "unsubscribe", "code": 200,
                        "msg": "ok"}, "unsubscribe reply")


def check_errors(eng):
    malformed = ['{', '', 'not json', '[]', 'null', '"str"', '17',
                 '{"seq":1,"cmd":"heartbeat"} trailing',
                 '{"seq":1,"cmd":"heartbeat"}{}',
                 '{"seq":1,"cmd":7}', '{"seq":1,"cmd":null}',
                 '{"seq":true,"cmd":"heartbeat"}',
                 '{"seq":null,"cmd":"heartbeat"}',
                 '{"seq":[1],"cmd":"heartbeat"}',
                 '{"seq":{"a":1},"cmd":"heartbeat"}', '{"seq":1}',
                 '{"seq":1,"cmd":"subscribe","data":{"channels":"news"}}',
                 '{"seq":1,"cmd":"subscribe","data":["news"]}',
                 '{"seq":1,"cmd":"subscribe","data":"news"}',
                 '{"seq":1,"cmd":"unsubscribe","data":{"channels":7}}',
                 '{"seq":1,"cmd":"heartbeat"']
    with Cmds(eng) as ws:
        ws.cmd("subscribe", 0, 200, "ok", channels=["base"])
        base = subs_total(eng)
        for text in malformed:
            ws.expect_reply(text, MALFORMED)
            ws.heartbeat()
        # A channel that is not a string: a wrong member type, or a bad
        # name; 400 either way, and nothing applied.
        got = ws.ask('{"seq":3,"cmd":"subscribe","data":{"channels":'
                     '["ok.0",1]}}')
        expect(got.get("code") == 400 and got.get("msg") in
               ("malformed command", "bad channel name"),
               "channel 1: %s", got)
        ws.heartbeat()
        for seq, cmd in ((4, "dance"), ("x", "SUBSCRIBE"), (5, "x" * 300)):
            ws.cmd(cmd, seq, 400, "unknown command")
            ws.heartbeat()
        ws.expect_reply('{"cmd":"dance"}', {"cmd": "dance", "code": 400,
                                            "msg": "unknown command"})
        ws.heartbeat()
        for i, name in enumerate(BAD_NAMES):
            chans = ["ok.%d" % i, name, "ok2.%d" % i]
            ws.cmd("subscribe", 10 + i, 400, "bad channel name",
                   channels=chans)
            ws.heartbeat()
            ws.cmd("unsubscribe", "u%d" % i, 400, "bad channel name",
                   channels=["base", name])
            ws.heartbeat()
        s = rc.stats(eng)["total"]
        expect(s["subscriptions"] == base and s["channels"] == 1,
               "failed commands applied something: subscriptions %d "
               "(want %d), channels %d (want 1)", s["subscriptions"], base,
               s["channels"])
        # Still subscribed to base (the bad unsubscribes left it), and
        # the valid names in the bad commands are free to use.
        ws.cmd("subscribe", 60, 200, "ok", channels=GOOD_NAMES)
        ws.cmd("subscribe", 61, 200, "ok", channels=["base", "base"])
        ws.cmd("unsubscribe", 62, 200, "ok", channels=["never", "never2"])
        s = rc.stats(eng)["total"]
        expect_eq(s["subscriptions"], base + len(GOOD_NAMES),
                  "subscriptions after the good names")
        ws.cmd("unsubscribe", 63, 200, "ok", channels=GOOD_NAMES + ["base"])
        expect_eq(subs_total(eng), base - 1, "subscriptions after leaving")


def check_max_subs_one_command(eng):
    """Default --max-subs 100: one more than that, in one command."""
    with Cmds(eng) as ws:
        chans = ["many.%d" % i for i in range(101)]
        ws.cmd("subscribe", 51, 413, "too many subscriptions",
               channels=chans)
        ws.heartbeat()
        expect_eq(subs_total(eng), 0, "subscriptions after the refusal")
        ws.cmd("subscribe", 52, 200, "ok", channels=chans[:100])
        expect_eq(subs_total(eng), 100, "subscriptions at the limit")


def check_empty_cmd(eng):
    """An empty command name is unknown, and echoed as sent."""
    with Cmds(eng) as ws:
        ws.cmd("", 5, 400, "unknown command")
        ws.heartbeat()


def check_one_channel(eng):
    """data.channel names one channel (no offset: a plain subscribe);
    a subscribe or unsubscribe naming none, or both forms, is refused."""
    with Cmds(eng) as ws:
        ws.cmd("subscribe", 1, 200, "ok", channel="solo")
        expect_eq(subs_total(eng), 1, "subscriptions after data.channel")
        http = rc.http_conn(eng)
        rc.publish(http, "solo", b'"one"')
        http.close()
        got = json.loads(ws.recv_message().payload)
        expect_eq(got, {"cmd": "push", "channel": "solo", "data": "one"},
                  "push to the data.channel subscription")
        for cmd in ("subscribe", "unsubscribe"):
            ws.cmd(cmd, 2, 400, "channels needed")
            ws.heartbeat()
            ws.cmd(cmd, 3, 400, "channels needed", channels=[])
            ws.heartbeat()
            ws.cmd(cmd, 4, 400, "channel or channels, not both",
                   channel="solo", channels=["solo2"])
            ws.heartbeat()
        expect_eq(subs_total(eng), 1, "subscriptions after the refusals")
        ws.cmd("unsubscribe", 5, 200, "ok", channel="solo")
        expect_eq(subs_total(eng), 0, "subscriptions after unsubscribe")


def check_too_large(eng):
    """--max-subs 1000: 256 channels in a command is the most."""
    with Cmds(eng) as ws:
        chans = ["big.%d" % i for i in range(257)]
        ws.cmd("unsubscribe", 0, 413, "too large", channels=chans)
        ws.heartbeat()
        ws.cmd("subscribe", 1, 413, "too large", channels=chans)
        ws.heartbeat()
        expect_eq(subs_total(eng), 0, "subscriptions after 257")
        ws.cmd("subscribe", 2, 200, "ok", channels=chans[:256])
        expect_eq(subs_total(eng), 256, "subscriptions after 256")
        ws.cmd("unsubscribe", 3, 200, "ok", channels=chans[:256])
        expect_eq(subs_total(eng), 0, "subscriptions after unsubscribe")


def check_max_subs(eng):
    """--max-subs 3, per connection; duplicates do not count."""
    with Cmds(eng) as ws, Cmds(eng) as other:
        ws.cmd("subscribe", 1, 200, "ok", channels=["a", "b"])
        ws.cmd("subscribe", 2, 413, "too many subscriptions",
               channels=["c", "d"])
        ws.heartbeat()
        expect_eq(subs_total(eng), 2, "subscriptions after the refusal")
        ws.cmd("subscribe", 3, 200, "ok", channels=["c"])
        ws.cmd("subscribe", 4, 200, "ok", channels=["a", "b", "c"])
        ws.cmd("subscribe", 5, 413, "too many subscriptions",
               channels=["d"])
        ws.heartbeat()
        other.cmd("subscribe", 1, 200, "ok", channels=["d", "e", "f"])
        expect_eq(subs_total(eng), 6, "subscriptions of two connections")
        ws.cmd("unsubscribe", 6, 200, "ok", channels=["a"])
        ws.cmd("subscribe", 7, 200, "ok", channels=["d"])
        ws.cmd("subscribe", 8, 413, "too many subscriptions",
               channels=["a"])
        expect_eq(subs_total(eng), 6, "subscriptions at the end")


def check_publish_refused(eng):
    with Cmds(eng) as sub, Cmds(eng) as pub:
        sub.cmd("subscribe", 1, 200, "ok", channels=["room:7"])
        pub.cmd("publish", 5, 403, "publish not allowed", channel="room:7",
                data={"x": 1})
        pub.heartbeat()
        # The same channel keeps publish order: the marker must be the
        # first push, so the refused message was never sent.
        http = rc.http_conn(eng)
        rc.publish(http, "room:7", b'{"marker":1}')
        http.close()
        got = json.loads(sub.recv_message().payload)
        expect_eq(got, {"cmd": "push", "channel": "room:7",
                        "data": {"marker": 1}}, "first push")


def check_publish_allowed(eng):
    with Cmds(eng) as sub, Cmds(eng) as pub:
        sub.cmd("subscribe", 1, 200, "ok", channels=["room:7"])
        datas = [{"x": [1, 2]}, "hi \u00e9 \"q\"", 42, [], {"nested":
                 {"a": [None, True, -1.5]}}]
        for i, d in enumerate(datas):
            pub.cmd("publish", 10 + i, 200, channel="room:7", data=d)
        for d in datas:
            got = json.loads(sub.recv_message().payload)
            expect_eq(got, {"cmd": "push", "channel": "room:7", "data": d},
                      "push of a client publish")
        pub.cmd("publish", 20, 400, channel="room:7")
        pub.heartbeat()
        pub.cmd("publish", 21, 400, "bad channel name", channel="room 7",
                data=1)
        pub.heartbeat()
        # The refused ones sent nothing: the next push is the marker.
        pub.cmd("publish", 22, 200, channel="room:7", data="marker")
        got = json.loads(sub.recv_message().payload)
        expect_eq(got.get("data"), "marker", "push after refused ones")


def check_binary(eng):
    with Cmds(eng) as ws:
        ws.cmd("subscribe", 1, 200, "ok", channels=["bin"])
        ws.send(OP_BINARY, b'{"seq":2,"cmd":"heartbeat"}')
        ws.expect_close(1003)
    with Cmds(eng) as ws:
        ws.heartbeat()


def checks(run):
    with run.section():
        with rc.Engine(run.exe, "--shards", "2") as eng:
            run.check("seq-echo", check_seq_echo, eng)
            run.check("errors", check_errors, eng)
            run.check("publish-refused", check_publish_refused, eng)
            run.check("binary-1003", check_binary, eng)
            run.check("empty-cmd", check_empty_cmd, eng)
            run.check("one-channel", check_one_channel, eng)
            run.check("max-subs-one-command", check_max_subs_one_command,
                      eng)
        with rc.Engine(run.exe, "--shards", "2", "--max-subs", "3",
                       "--client-publish") as eng:
            run.check("max-subs-3", check_max_subs, eng)
            run.check("publish-allowed", check_publish_allowed, eng)
        with rc.Engine(run.exe, "--max-subs", "1000") as eng:
            run.check("too-large", check_too_large, eng)


if __name__ == "__main__":
    rc.main("commands", checks, open_publish=True)
