# SPDX-License-Identifier: MIT
"""A real redis-server for the tests, on a free loopback port (never 6379),
and a minimal RESP client to drive it (PUBLISH, PUBSUB NUMSUB).

The server runs in a temporary directory, without persistence unless
asked for an append-only file (aof=True: fsync on every write, so a
kill -9 loses nothing acknowledged), and is killed when the test ends;
restart() starts it again on the same port and directory.
"""

import shutil
import socket
import subprocess
import tempfile
import time

import rc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortTaken(AssertionError):
    """redis-server could not bind a port picked as free."""


class Redis:
    def __init__(self, aof=False, cluster=False, args=()):
        self.aof = aof
        self.cluster = cluster
        self.args = list(args)		# more redis-server options
        self.pick_ports()
        self.dir = tempfile.mkdtemp(prefix="ringcast-redis-")
        self.proc = None
        self.started = False

    def pick_ports(self, taken=()):
        """A free port (never 6379), and one for a cluster's bus; none of
        @taken. Free when asked: another process may take it before the
        server binds it, which start() survives on a first start."""
        self.port = free_port()
        while self.port == 6379 or self.port in taken:
            self.port = free_port()
        self.bus_port = None
        if self.cluster:
            self.bus_port = free_port()
            while self.bus_port in (6379, self.port) or \
                    self.bus_port in taken:
                self.bus_port = free_port()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout=20, taken=(), loading_ok=False):
        """Starts the server; returns once it answers PING, or with
        @loading_ok once it answers at all (-LOADING while it reads its
        append-only file back)."""
        for attempt in range(5):
            try:
                return self._start(timeout, loading_ok)
            except PortTaken:
                # only a first start may move: restart() keeps the port
                if self.started or attempt == 4:
                    raise
                self.pick_ports(taken)

    def _start(self, timeout, loading_ok):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes" if self.aof else "no",
             "--appendfsync", "always", "--dir", self.dir,
             "--loglevel", "warning"] +
            (["--cluster-enabled", "yes", "--cluster-config-file",
              "nodes.conf", "--cluster-node-timeout", "1000",
              # the bus on a free port too, not port + 10000
              "--cluster-port", str(self.bus_port),
              "--cluster-replica-validity-factor", "0"]
             if self.cluster else []) + self.args,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=rc.die_with_parent)
        # Ready when it answers PING: the only event redis offers.
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.command("PING") == "PONG":
                    self.started = True
                    return self
            except OSError:
                pass
            except AssertionError as e:
                # -LOADING: up, reading its dataset back; ready later
                if "LOADING" not in str(e):
                    raise
                if loading_ok:
                    self.started = True
                    return self
            if self.proc.poll() is not None:
                out = self.proc.stdout.read()
                if b"Address already in use" in out:
                    raise PortTaken(out)
                raise AssertionError("redis-server exited: %s" % out)
            if time.monotonic() > deadline:
                raise AssertionError("redis-server not ready")
            time.sleep(0.02)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, loading_ok=False):
        self.kill()
        return self.start(loading_ok=loading_ok)

    def command(self, *args, timeout=10):
        """Sends one command, returns the decoded reply."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=timeout) as s:
            s.sendall(encode(args))
            return read_reply(s.makefile("rb"))

    def info(self, section):
        """INFO @section as a dict of strings (it answers while loading)."""
        text = self.command("INFO", section).decode()
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """A Redis Cluster of @masters masters with @replicas replicas each,
    made by redis-cli --cluster create as an operator would, on free
    loopback ports. A failed master's replica takes over within about two
    seconds (cluster-node-timeout 1000 ms)."""

    def __init__(self, masters=3, replicas=1):
        self.nodes = [Redis(cluster=True)
                      for _ in range(masters * (1 + replicas))]
        self.replicas = replicas

    def start(self, timeout=60):
        taken = set()
        for n in self.nodes:
            n.start(taken=taken)
            taken |= {n.port, n.bus_port}
        if len(self.nodes) == 1:
            # redis-cli creates 3 masters at least: one takes every slot
            self.nodes[0].command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        else:
            redis_cli(self.nodes[0].port, "--cluster", "create",
                      *["127.0.0.1:%d" % n.port for n in self.nodes],
                      "--cluster-replicas", str(self.replicas),
                      "--cluster-yes")
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout=60):
        """Until every live node says cluster_state:ok and every slot's
        master is known the same way by all of them."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                maps = [self.slot_map(n) for n in self.live()]
                oks = [b"cluster_state:ok" in n.command("CLUSTER", "INFO")
                       for n in self.live()]
                if all(oks) and all(m == maps[0] for m in maps) and \
                        len(maps[0]) == 16384:
                    return
            except (OSError, AssertionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the cluster did not settle")
            time.sleep(0.1)

    def live(self):
        return [n for n in self.nodes if n.proc and n.proc.poll() is None]

    @staticmethod
    def slot_map(node):
        """slot -> master port, as CLUSTER SLOTS on @node says."""
        m = {}
        for r in node.command("CLUSTER", "SLOTS"):
            for s in range(r[0], r[1] + 1):
                m[s] = r[2][1]
        return m

    def masters(self):
        """The live masters, as Redis objects, in port order."""
        ports = set(self.slot_map(self.live()[0]).values())
        return sorted((n for n in self.live() if n.port in ports),
                      key=lambda n: n.port)

    def node_id(self, node):
        return node.command("CLUSTER", "MYID").decode()

    def seeds(self, n=2):
        """The first @n nodes still running: a node a test killed is no
        seed for an engine started after it."""
        return ",".join("127.0.0.1:%d" % x.port for x in self.live()[:n])

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *a):
        for n in self.nodes:
            n.kill()
            shutil.rmtree(n.dir, ignore_errors=True)


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise AssertionError("redis error: %s" % rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    raise AssertionError("bad RESP line %r" % line)


def redis_cli(port, *args):
    """Runs the real redis-cli, as an operator would.  The bound only
    catches a hang: --cluster create waits for the nodes to agree, which
    takes its time on a loaded machine."""
    out = subprocess.run(["redis-cli", "-p", str(port)] + list(args),
                         capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise AssertionError("redis-cli failed: %s" % out.stderr)
    return out.stdout.strip()
