# SPDX-License-Identifier: MIT
"""ringcast's options as an operator meets them: --help (word for word,
against test_options_help.txt, and against README.md's option table),
every option's refusal of a bad value (exit 2 and the exact line on
stderr), the RINGCAST_* variables, --redis-url-file, the checks between
options, values at the edge of what is allowed, and what a start with
some of them says in its ready line."""

import os
import re
import tempfile

import rc
from rc import expect, expect_eq

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "..", "..", "README.md")
KEY = "k" * 16
SEE = " (see --help)\n"
# Pairing check that runs after every option is parsed: a run that ends
# with it has had all its options accepted (and touched no file or port).
PAIRS = "ringcast: --tls-cert and --tls-key go together, in pairs" + SEE
UNPAIRED = ["--tls-cert", "/nonexistent/cert.pem"]


def clean_env(**extra):
    """The environment without any RINGCAST_* variable the engine reads."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RINGCAST_API_KEY", "RINGCAST_JWT_SECRET",
                        "RINGCAST_REDIS_URL", "RINGCAST_REDIS_CLUSTER",
                        "RINGCAST_FAULT_MAIL")}
    env.update(extra)
    return env


def run(exe, args, env=None):
    p = rc.subprocess.run([exe] + list(args), env=env or clean_env(),
                          capture_output=True, timeout=30)
    return (p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace"))


def expect_exit(exe, args, status, err, env=None, what=None):
    """@exe @args exits with @status, printing exactly @err on stderr."""
    got, _, stderr = run(exe, args, env)
    what = what or " ".join(args)
    expect_eq(got, status, "exit status of %r" % what)
    expect_eq(stderr, err, "stderr of %r" % what)


def bad(label, value):
    return "ringcast: invalid value for --%s: '%s'%s" % (label, value, SEE)


def help_text(exe):
    status, out, err = run(exe, ["--help"])
    expect_eq(status, 0, "--help exit status")
    expect_eq(err, "", "--help stderr")
    return out


def check_help(exe):
    """--help prints the text it always printed, and -h the same."""
    out = help_text(exe)
    with open(os.path.join(HERE, "test_options_help.txt")) as f:
        want = f.read()
    if out != want:
        a, b = out.splitlines(), want.splitlines()
        n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]),
                 min(len(a), len(b)))
        raise AssertionError("--help differs from test_options_help.txt at "
                             "line %d: %r, want %r" %
                             (n + 1, a[n] if n < len(a) else None,
                              b[n] if n < len(b) else None))
    status, short, _ = run(exe, ["-h"])
    expect(status == 0 and short == out, "-h is not --help (status %d)",
           status)
    for line in out.splitlines():
        expect(len(line) <= 80, "--help line over 80 columns: %r", line)


def help_options(text):
    """The long options --help lists, in its order."""
    return re.findall(r"^  (?:-h, )?--([a-z0-9-]+)", text, re.M)


def check_help_parses(exe):
    """Each option --help lists is one the parser knows: given a bad value
    (or, for a flag, a value it takes none of) it is never 'unknown'."""
    names = help_options(help_text(exe))
    expect(len(names) >= 40, "--help lists only %d options", len(names))
    for name in names:
        if name == "help":
            continue
        _, _, err = run(exe, ["--" + name, "\x01"] + UNPAIRED)
        expect("unknown option --%s " % name not in err,
               "--%s is in --help but not parsed: %r", name, err)


def check_readme(exe):
    """README.md's option table names only options --help lists."""
    names = set(help_options(help_text(exe)))
    with open(README) as f:
        text = f.read()
    table = text.split("| option | default | what it does |", 1)[1]
    table = table.split("\n\n", 1)[0]
    listed = []
    for row in table.splitlines()[2:]:
        listed += re.findall(r"`--([a-z0-9-]+)", row.split("|")[1])
    expect(len(listed) >= 20, "README's option table: %d options", len(listed))
    for name in listed:
        expect(name in names, "README lists --%s, which --help does not",
               name)


# Each option's refusal of a bad value, in --help's order.
BAD_VALUES = (
    (["--listen", "1.2.3.4"], bad("listen", "1.2.3.4")),
    (["--listen", ":80"], bad("listen", ":80")),
    (["--listen", "127.0.0.1:65536"], bad("listen", "127.0.0.1:65536")),
    (["--shards", "0"], bad("shards", "0")),
    (["--shards", "1025"], bad("shards", "1025")),
    (["--threads", "0"], bad("threads (1 to 1024)", "0")),
    (["--max-conns", "0"], bad("max-conns", "0")),
    (["--max-conns", "+5"], bad("max-conns", "+5")),
    (["--max-message", "0"], bad("max-message", "0")),
    (["--max-message", "4294963200"], bad("max-message", "4294963200")),
    (["--max-message", "1T"], bad("max-message", "1T")),
    (["--allowed-origins", "https://a.com/x"],
     bad("allowed-origins (SCHEME://HOST[:PORT],... with HOST or *.DOMAIN)",
         "https://a.com/x")),
    (["--allowed-hosts", "a.example:80"],
     bad("allowed-hosts (NAME,... with NAME or *.DOMAIN, no port)",
         "a.example:80")),
    (["--namespace", "chat"],
     bad("namespace (NAME:history=N,ttl=DUR, N up to 100000, at most 16 of "
         "them)", "chat")),
    (["--namespace", "a:history=1,ttl=1s", "--namespace",
      "a:history=2,ttl=1s"],
     bad("namespace (given twice)", "a:history=2,ttl=1s")),
    (["--inbox-max", "0"], bad("inbox-max (1 to 100000)", "0")),
    (["--inbox-max", "100001"], bad("inbox-max (1 to 100000)", "100001")),
    (["--inbox-ttl", "999ms"], bad("inbox-ttl (1s at least)", "999ms")),
    (["--inbox-memory", "65535"], bad("inbox-memory (64K at least)",
                                      "65535")),
    (["--history-memory", "1K"], bad("history-memory (64K at least)", "1K")),
    (["--max-partial-memory", "1K"], bad("max-partial-memory (64K at least)",
                                         "1K")),
    # a secret is never echoed back
    (["--api-key", "fifteen-bytes.."],
     bad("api-key (16 to 255 bytes; `openssl rand -hex 16` makes one)",
         "...")),
    (["--api-key", "k" * 256],
     bad("api-key (16 to 255 bytes; `openssl rand -hex 16` makes one)",
         "...")),
    (["--max-subs", "65535"], bad("max-subs (0 to 65534)", "65535")),
    (["--max-pending-bytes", "0"], bad("max-pending-bytes", "0")),
    (["--max-pending-bytes", "4G"], bad("max-pending-bytes", "4G")),
    (["--arena-size", "1023K"], bad("arena-size (1M and up)", "1023K")),
    (["--auth", "maybe"], bad("auth (off, optional, required)", "maybe")),
    (["--jwt-secret", ""], bad("jwt-secret (1 to 511 bytes)", "...")),
    (["--jwt-secret", "s" * 512], bad("jwt-secret (1 to 511 bytes)", "...")),
    (["--jwt-public-key", ""], bad("jwt-public-key", "")),
    (["--jwt-leeway", "3601"], bad("jwt-leeway (0 to 3600 seconds)",
                                   "3601")),
    (["--max-conns-per-user", "4294967296"],
     bad("max-conns-per-user", "4294967296")),
    (["--redis", "http://x"],
     bad("redis (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])", "http://x")),
    (["--redis", "redis://h:0"],
     bad("redis (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])",
         "redis://h:0")),
    (["--redis", "redis://h/1000001"],
     bad("redis (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])",
         "redis://h/1000001")),
    (["--redis-cluster", "h"],
     bad("redis-cluster ([redis://[[USER]:PASSWORD@]]HOST:PORT"
         "[,HOST:PORT...], up to 16)", "h")),
    (["--redis-timeout", "199ms"], bad("redis-timeout (200ms at least)",
                                       "199ms")),
    (["--redis-max-pending", "4095"], bad("redis-max-pending (4K at least)",
                                          "4095")),
    (["--redis-max-reading", "1K"], bad("redis-max-reading (4K at least)",
                                        "1K")),
    (["--redis-prefix", "a b"],
     bad("redis-prefix (up to 63 channel-name characters)", "a b")),
    (["--redis-prefix", "p" * 64],
     bad("redis-prefix (up to 63 channel-name characters)", "p" * 64)),
    (["--zc-threshold", "4G"], bad("zc-threshold", "4G")),
    (["--batch-window", "2s"],
     bad("batch-window (0 to 1s; us, ms or s)", "2s")),
    (["--batch-window", "1000001us"],
     bad("batch-window (0 to 1s; us, ms or s)", "1000001us")),
    (["--ping-interval", "soon"], bad("ping-interval", "soon")),
    (["--ping-interval", "4294968s"], bad("ping-interval", "4294968s")),
    (["--idle-timeout", "-1"], bad("idle-timeout", "-1")),
    (["--handshake-timeout", "0"], bad("handshake-timeout", "0")),
    (["--http-idle-timeout", "500ms"],
     bad("http-idle-timeout (0, or 1s at least)", "500ms")),
    (["--pusher-webhook", "http://h/x"],
     bad("pusher-webhook (ID=URL, the URL http:// or https://, at most 16)",
         "http://h/x")),
    (["--pusher-webhook", "1=ftp://h/x"],
     bad("pusher-webhook (ID=URL, the URL http:// or https://, at most 16)",
         "1=ftp://h/x")),
    (["--pusher-webhook", "1=http://"],
     bad("pusher-webhook (ID=URL, the URL http:// or https://, at most 16)",
         "1=http://")),
    (["--pusher-webhook-events", "1=member_added,nope"],
     bad("pusher-webhook-events (ID=EVENT,... of channel_occupied, "
         "channel_vacated, member_added, member_removed, client_event, "
         "subscription_count, cache_miss)", "1=member_added,nope")),
    (["--webhook", "https://h x"],
     bad("webhook (an http:// or https:// URL)", "https://h x")),
    (["--webhook-secret", "short"],
     bad("webhook-secret (16 to 255 bytes; `openssl rand -hex 16` makes "
         "one)", "...")),
    (["--webhook-events", "member_added"],
     bad("webhook-events (EVENT,... of channel_occupied, channel_vacated, "
         "user_online, user_offline)", "member_added")),
    (["--webhook-batch", "0"], bad("webhook-batch (1 to 1000)", "0")),
    (["--webhook-window", "61s"], bad("webhook-window (0 to 60s)", "61s")),
    (["--webhook-queue", "0"], bad("webhook-queue (1 to 10000000)", "0")),
    (["--webhook-retries", "101"], bad("webhook-retries (0 to 100)", "101")),
    (["--webhook-backoff", "1ms"], bad("webhook-backoff (10ms to 60s)",
                                       "1ms")),
    (["--webhook-timeout", "50ms"], bad("webhook-timeout (100ms to 120s)",
                                        "50ms")),
    (["--tls-cert", ""], bad("tls-cert (at most 16)", "")),
    (["--tls-key", ""], bad("tls-key (at most 16)", "")),
    (["--tls-min", "1.1"], bad("tls-min (1.2 or 1.3)", "1.1")),
    (["--tls-max-handshakes", "1000001"],
     bad("tls-max-handshakes (1 to 1000000)", "1000001")),
    (["--io", "poll"], bad("io (uring, epoll)", "poll")),
    (["--recv-buffers", "3"],
     bad("recv-buffers (a power of two up to 32768)", "3")),
    (["--recv-buffers", "65536"],
     bad("recv-buffers (a power of two up to 32768)", "65536")),
    (["--recv-buffer-size", "255"], bad("recv-buffer-size (256 to 1M)",
                                        "255")),
    (["--recv-buffer-size", "1025K"], bad("recv-buffer-size (256 to 1M)",
                                          "1025K")),
)


def check_bad_values(exe):
    for args, err in BAD_VALUES:
        expect_exit(exe, args + ["--listen", "127.0.0.1:0"], 2, err)


def check_webhook_options(exe):
    """What the webhook options need of the others: a --webhook secret
    (the option or RINGCAST_WEBHOOK_SECRET, 16 bytes at least), and an
    app of that ID for the per-app ones."""
    base = ["--listen", "127.0.0.1:0"]
    expect_exit(exe, base + ["--webhook", "http://127.0.0.1:9/h"], 2,
                "ringcast: --webhook needs --webhook-secret (or "
                "RINGCAST_WEBHOOK_SECRET): its receiver checks "
                "X-Ringcast-Signature with it\n")
    expect_exit(exe, base + ["--webhook", "http://127.0.0.1:9/h"], 2,
                "ringcast: RINGCAST_WEBHOOK_SECRET: 16 to 255 bytes\n",
                env=clean_env(RINGCAST_WEBHOOK_SECRET="short"))
    app = ["--pusher-app", "7:k7:s7"]
    expect_exit(exe, base + app + ["--pusher-webhook", "8=https://h/x"], 2,
                "ringcast: --pusher-webhook 8=...: no Pusher app has this "
                "ID\n")
    expect_exit(exe, base + app + ["--pusher-webhook-events",
                                   "9=client_event"], 2,
                "ringcast: --pusher-webhook-events 9=...: no Pusher app has "
                "this ID\n")


def check_command_line(exe):
    """What getopt itself refuses, and that the first problem is the one
    reported (argv's order), with --help only where it comes first."""
    unknown = "ringcast: unknown option %s" + SEE
    needs = "ringcast: option %s needs a value" + SEE
    for args, err in (
            (["--no-such-option"], unknown % "--no-such-option"),
            (["-x"], unknown % "-x"),
            (["--echo=1"], unknown % "--echo=1"),
            (["--help=x"], unknown % "--help=x"),
            # an abbreviation that fits two options
            (["--redis-max", "1"], unknown % "--redis-max"),
            # the value missing at the end of the line: a known option
            (["--listen", "127.0.0.1:0", "--shards"], needs % "--shards"),
            (["--listen", "127.0.0.1:0", "--api-key"], needs % "--api-key"),
            (["extra"], "ringcast: unexpected argument 'extra'" + SEE),
            (["--", "--shards"],
             "ringcast: unexpected argument '--shards'" + SEE),
            # an abbreviation that fits one, and --name=value
            (["--shard", "x"], bad("shards", "x")),
            (["--listen=1.2.3.4"], bad("listen", "1.2.3.4")),
            (["--shards", "x", "--max-conns", "0"], bad("shards", "x")),
            (["--shards", "x", "--help"], bad("shards", "x"))):
        expect_exit(exe, args, 2, err)
    status, out, _ = run(exe, ["--help", "--shards", "x"])
    expect(status == 0 and out == help_text(exe),
           "--help before a bad value: status %d", status)


def check_environment(exe):
    """RINGCAST_* variables: a value that does not fit stops the engine,
    even before --help; the errors name the variable, never its text."""
    url_err = ("ringcast: RINGCAST_REDIS_URL is not a Redis URL "
               "(redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])\n")
    cluster_err = ("ringcast: RINGCAST_REDIS_CLUSTER is not a list of seeds "
                   "([redis://[[USER]:PASSWORD@]]HOST:PORT[,HOST:PORT...])\n")
    for var, value, err in (
            ("RINGCAST_API_KEY", "k" * 600,
             "ringcast: RINGCAST_API_KEY is 600 bytes long, at most 255 are "
             "taken\n"),
            ("RINGCAST_JWT_SECRET", "s" * 600,
             "ringcast: RINGCAST_JWT_SECRET is 600 bytes long, at most 511 "
             "are taken\n"),
            ("RINGCAST_REDIS_URL", "http://secret@x", url_err),
            ("RINGCAST_REDIS_CLUSTER", "secret@", cluster_err)):
        for tail in ([], ["--help"]):
            expect_exit(exe, ["--listen", "127.0.0.1:0"] + tail, 2, err,
                        env=clean_env(**{var: value}),
                        what="%s=%s... %s" % (var, value[:8], tail))
    short = clean_env(RINGCAST_API_KEY="short")
    expect_exit(exe, ["--listen", "127.0.0.1:0"], 2,
                "ringcast: RINGCAST_API_KEY is 5 bytes long; an API key "
                "needs 16 at least, or it can be guessed (`openssl rand "
                "-hex 16` makes one)\n", env=short, what="a short key")
    # ... which --help and --api-key still get past
    status, _, _ = run(exe, ["--help"], env=short)
    expect_eq(status, 0, "--help with a short RINGCAST_API_KEY")
    expect_exit(exe, ["--listen", "127.0.0.1:0", "--api-key", KEY] +
                UNPAIRED, 2, PAIRS, env=short, what="--api-key over it")
    # Good values, and options over variables.
    for env in ({"RINGCAST_API_KEY": KEY, "RINGCAST_JWT_SECRET": "s"},
                {"RINGCAST_REDIS_URL": "redis://u:p@h:1/2"},
                {"RINGCAST_REDIS_CLUSTER": "redis://:p@h:1,h:2"},
                {"RINGCAST_REDIS_URL": "redis://h",
                 "RINGCAST_REDIS_CLUSTER": "h:1"}):
        for args in ([], ["--redis", "redis://h"], ["--redis-cluster", "h:1"]):
            expect_exit(exe, ["--listen", "127.0.0.1:0"] + args + UNPAIRED,
                        2, PAIRS, env=clean_env(**env),
                        what="%s with %s" % (args, env))
    # A key from the environment opens other addresses.
    expect_exit(exe, ["--listen", "0.0.0.0:0"] + UNPAIRED, 2, PAIRS,
                env=clean_env(RINGCAST_API_KEY=KEY), what="key from env")


def check_url_file(exe):
    """--redis-url-file: the URL from a file's first line, errors naming
    the file and never the URL."""
    with tempfile.TemporaryDirectory() as d:
        good, bad_file = os.path.join(d, "good"), os.path.join(d, "bad")
        with open(good, "w") as f:
            f.write("redis://user:pw@127.0.0.1:6390/3\r\nignored\n")
        with open(bad_file, "w") as f:
            f.write("http://user:pw@host\n")
        missing = os.path.join(d, "missing")
        for args, err in (
                ([good], PAIRS),
                ([bad_file], "ringcast: the first line of %s is not a Redis "
                 "URL (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])\n"
                 % bad_file),
                ([missing], "ringcast: --redis-url-file %s: No such file or "
                 "directory\n" % missing),
                ([d], "ringcast: the first line of %s is not a Redis URL "
                 "(redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])\n" % d)):
            expect_exit(exe, ["--listen", "127.0.0.1:0",
                              "--redis-url-file"] + args + UNPAIRED, 2, err)
        exclusive = ("ringcast: --redis-cluster and --redis (or "
                     "--redis-url-file) exclude each other: one Redis, or "
                     "one cluster\n")
        for args in (["--redis-url-file", good, "--redis-cluster", "h:1"],
                     ["--redis-cluster", "h:1", "--redis-url-file", good]):
            expect_exit(exe, ["--listen", "127.0.0.1:0"] + args, 2,
                        exclusive)


def check_between_options(exe):
    """The checks between options, each on its own."""
    env = clean_env()
    exclusive = ("ringcast: --redis-cluster and --redis (or "
                 "--redis-url-file) exclude each other: one Redis, or one "
                 "cluster\n")
    # a prefix with { or } is no channel name, cluster or not
    braces = bad("redis-prefix (up to 63 channel-name characters)", "a{b}")
    refuse = ("ringcast: refusing to listen on %s without an API key: anyone "
              "who reaches the port could publish, push to any user and kick "
              "them. Set --api-key (or RINGCAST_API_KEY), listen on "
              "127.0.0.1, or pass --insecure-open" + SEE)
    no_secret = ("ringcast: --auth %s needs --jwt-secret or --jwt-public-key"
                 + SEE)
    threads = ("ringcast: --threads needs --io uring: an epoll shard waits "
               "in its own epoll_wait\n")
    loop = ["--listen", "127.0.0.1:0"]
    for args, err in (
            (loop + ["--redis", "redis://h", "--redis-cluster", "h:1"],
             exclusive),
            (loop + ["--redis-cluster", "h:1", "--redis", "redis://h"],
             exclusive),
            (loop + ["--redis-cluster", "h:1", "--redis-prefix", "a{b}"],
             braces),
            (loop + ["--redis-prefix", "a{b}", "--redis-cluster", "h:1"],
             braces),
            (["--listen", "0.0.0.0:0"], refuse % "0.0.0.0"),
            (["--listen", "192.0.2.1:0", "--demo"], refuse % "192.0.2.1"),
            (["--listen", "localhost:0"], refuse % "localhost"),
            (loop + ["--auth", "optional"], no_secret % "optional"),
            (loop + ["--auth", "required"], no_secret % "required"),
            (loop + ["--tls-key", "/nonexistent/key.pem"], PAIRS),
            (loop + ["--shards", "4", "--threads", "2", "--io", "epoll"],
             threads),
            (loop + ["--threads", "2", "--io", "epoll"] +
             ["--shards", "3"], threads)):
        expect_exit(exe, args, 2, err, env=env)
    # a missing public key is reported with its path
    status, _, err = run(exe, loop + ["--auth", "required",
                                      "--jwt-public-key", "/nonexistent.pem"])
    expect(status == 2 and err.startswith(
        "ringcast: --jwt-public-key /nonexistent.pem: "),
        "missing --jwt-public-key: status %d, %r", status, err)


# Values at the edges of what each option takes: all accepted (the run
# ends at the pairing check, after every option was parsed).
GOOD = (
    ["--listen", "127.0.0.1:65535", "--shards", "1024", "--threads", "1024"],
    ["--listen=127.0.0.1:0", "--shard", "1", "--max-conns", "1"],
    ["--max-message", "4294963199", "--max-message", "1", "--max-message",
     "64k"],
    ["--allowed-origins", "https://app.example.com,https://*.example.org,"
     "http://localhost:3000", "--allowed-hosts", "push.example.com,*.a.b"],
    ["--namespace", ":history=5,ttl=1s"] +
    sum((["--namespace", "n%d:history=100000,ttl=1h" % i]
         for i in range(15)), []),
    ["--inbox-max", "1", "--inbox-max", "100000", "--inbox-ttl", "1s",
     "--inbox-memory", "64K", "--history-memory", "65536",
     "--max-partial-memory", "1g"],
    ["--echo", "--demo", "--client-publish", "--api-key", KEY,
     "--insecure-open"],
    ["--api-key", "k" * 255, "--max-subs", "0", "--max-subs", "65534",
     "--max-pending-bytes", "4294967295", "--arena-size", "1M"],
    ["--auth", "off", "--auth", "optional", "--jwt-secret", "s" * 511,
     "--jwt-leeway", "0", "--jwt-leeway", "3600"],
    ["--max-conns-per-user", "4294967295", "--max-conns-per-user", "0"],
    ["--redis", "redis://u:p@h:65535/1000000", "--redis", "redis://:p@h",
     "--redis", "redis://h/", "--redis-prefix", "p" * 63],
    ["--redis-cluster", "redis://u:p@a:1,b:2", "--redis-cluster",
     ",".join("h%d:%d" % (i, i + 1) for i in range(16)),
     "--redis-prefix", "x:"],
    ["--redis-prefix", "a-b.c@d/e=f_", "--redis-timeout", "200ms",
     "--redis-max-pending", "4K", "--redis-max-reading", "4096"],
    ["--zc-threshold", "0", "--zc-threshold", "4294967295",
     "--batch-window", "0", "--batch-window", "250us",
     "--batch-window", "1000000us", "--batch-window", "1s"],
    ["--ping-interval", "0", "--ping-interval", "2", "--idle-timeout", "1m",
     "--idle-timeout", "1h", "--handshake-timeout", "1ms",
     "--http-idle-timeout", "0", "--http-idle-timeout", "1s"],
    ["--tls-min", "1.2", "--tls-min", "1.3", "--tls-max-handshakes", "1",
     "--tls-max-handshakes", "1000000"],
    ["--io", "uring", "--io", "epoll", "--recv-buffers", "1",
     "--recv-buffers", "32768", "--recv-buffer-size", "256",
     "--recv-buffer-size", "1M"],
)


def check_good_values(exe):
    for args in GOOD:
        if not any(a.startswith("--listen") for a in args):
            args = ["--listen", "127.0.0.1:0"] + args
        expect_exit(exe, args + UNPAIRED, 2, PAIRS)
    # 16 --tls-cert (and --tls-key) are allowed, a 17th is not
    certs = sum((["--tls-cert", "/nonexistent/%d" % i] for i in range(16)),
                [])
    expect_exit(exe, ["--listen", "127.0.0.1:0"] + certs, 2, PAIRS)
    expect_exit(exe, ["--listen", "127.0.0.1:0"] + certs +
                ["--tls-cert", "c17"], 2, bad("tls-cert (at most 16)", "c17"))
    keys = sum((["--tls-key", "k%d" % i] for i in range(17)), [])
    expect_exit(exe, ["--listen", "127.0.0.1:0"] + keys, 2,
                bad("tls-key (at most 16)", "k16"))
    # the 17th --namespace
    many = sum((["--namespace", "n%d:history=1,ttl=1s" % i]
                for i in range(17)), [])
    expect_exit(exe, ["--listen", "127.0.0.1:0"] + many, 2,
                bad("namespace (NAME:history=N,ttl=DUR, N up to 100000, at "
                    "most 16 of them)", "n16:history=1,ttl=1s"))


READY = re.compile(r"ringcast: listening on 127\.0\.0\.1:\d+ \((\d+) shards, "
                   r"(\d+) connections per shard, max (\d+); (.*)\)$")


def ready_line(exe, *args):
    """Starts the engine with @args, stops it; its ready line's parts."""
    with rc.Engine(exe, *args) as eng:
        lines = [l for l in eng.log if "listening on" in l]
        log = list(eng.log)
    m = READY.match(lines[0]) if lines else None
    expect(m, "ready line %r", lines)
    return m.groups(), log


def check_starts(exe):
    """What a start with some options says it runs."""
    epoll = os.environ.get("RINGCAST_TEST_IO") == "epoll"
    tail = "; epoll backend" if epoll else ""
    tls = "; TLS 1.3" if rc.TLS else ""
    (shards, _, top, what), _ = ready_line(exe, "--shards", "1",
                                           "--max-conns", "3")
    expect_eq((shards, top, what), ("1", "3", "embedded broker" + tail + tls),
              "ready line of --shards 1 --max-conns 3")
    (shards, per, top, what), log = ready_line(exe, "--shards", "2",
                                               "--max-conns", "10000000000")
    expect_eq((shards, top), ("2", "10000000000"), "shards and max")
    warning = ("ringcast: warning: --max-conns 10000000000 exceeds what 2 "
               "shards hold here (%s each, RLIMIT_NOFILE): raise the nofile "
               "limit (sysctl.d/, tune/) or use --shards %d"
               % (per, (10000000000 + int(per) - 1) // int(per)))
    expect(warning in log, "no warning %r in %r", warning, log)
    # as many threads as shards or more: one each, on either backend
    (shards, _, _, what), _ = ready_line(exe, "--shards", "2", "--threads",
                                         "3")
    expect_eq((shards, what), ("2", "embedded broker" + tail + tls),
              "ready line of --shards 2 --threads 3")
    if epoll:
        return
    (shards, _, _, what), _ = ready_line(exe, "--shards", "2", "--threads",
                                         "1")
    expect_eq(what, "embedded broker" + tls + "; on 1 threads",
              "ready line of --shards 2 --threads 1")
    if not rc.TLS:
        _, cert, key = rc.tls_files()
        (_, _, _, what), _ = ready_line(exe, "--shards", "1", "--tls-cert",
                                        cert, "--tls-key", key, "--tls-min",
                                        "1.2")
        expect_eq(what, "embedded broker; TLS 1.2 and 1.3",
                  "ready line with --tls-min 1.2")


def main():
    r = rc.Run("options")
    r.check("help", check_help, r.exe)
    r.check("help-parses", check_help_parses, r.exe)
    r.check("readme", check_readme, r.exe)
    r.check("bad-values", check_bad_values, r.exe)
    r.check("command-line", check_command_line, r.exe)
    r.check("webhook-options", check_webhook_options, r.exe)
    r.check("environment", check_environment, r.exe)
    r.check("url-file", check_url_file, r.exe)
    r.check("between-options", check_between_options, r.exe)
    r.check("good-values", check_good_values, r.exe)
    r.check("starts", check_starts, r.exe)
    r.finish()


if __name__ == "__main__":
    main()
