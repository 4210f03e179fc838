# SPDX-License-Identifier: MIT
"""Headless Chromium for the browser tests, driven over the Chrome DevTools
Protocol (CDP) with the `websockets` module of Debian's /usr/bin/python3.

Chromium runs with a fresh profile in a temporary directory, under a small
reaper (reap_main(), this file run with --reap) that outlives every process
Chromium forks, so close() returns only when all of them are gone and can
then remove the profile.  The DevTools address comes from Chromium's
"DevTools listening on ws://..." stderr line, which a thread waits for;
nothing here sleeps.

Chromium.page() opens a fresh tab on a URL and yields a Page whose
evaluate() runs JavaScript there and awaits its promise.  Site serves that
page from 127.0.0.1 in a thread: a loopback page talking to a loopback
engine, rather than about:blank, whose opaque origin Chromium's local
network access rules might treat as public.  Every CDP call is bounded by
TIMEOUT.
"""

import asyncio
import http.server
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import asynccontextmanager

import rc
from rc import expect, short

CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 20
LISTENING_RE = re.compile(r"DevTools listening on (ws://\S+)")

# Headless, no GPU, no sandbox (tests may run as root), and nothing that
# reaches for the network on its own; --user-data-dir is added per run.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0"]


class Chromium:
    """One headless Chromium.  Use as a context manager: start() returns
    once DevTools listens; close() runs even when the block raises."""

    def __init__(self, exe=CHROMIUM):
        self.exe = exe
        self.profile = None
        self.proc = None
        self.browser_url = None  # ws://127.0.0.1:PORT/devtools/browser/ID
        self.devtools = None  # ws://127.0.0.1:PORT
        self.log = []
        self._ready = threading.Event()

    def start(self):
        self.profile = tempfile.mkdtemp(prefix="ringcast-chromium-")
        argv = [self.exe] + FLAGS + ["--user-data-dir=" + self.profile,
                                     "about:blank"]
        # Through reap_main(), which outlives every process Chromium
        # forks; die_with_parent covers a test killed with SIGKILL.
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(
                                          __file__), "--reap"] + argv,
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE,
                                     preexec_fn=rc.die_with_parent)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(TIMEOUT) or self.browser_url is None:
            status = self.proc.poll()
            self.close()
            raise AssertionError("chromium printed no 'DevTools listening "
                                 "on ws://...' line within %ss (exit "
                                 "status %r): %s" % (TIMEOUT, status,
                                                     self.output()[-2000:]))
        self.devtools = self.browser_url.split("/devtools/")[0]
        return self

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.log.append(line)
            m = LISTENING_RE.search(line)
            if m and self.browser_url is None:
                self.browser_url = m.group(1)
                self._ready.set()
        # EOF: Chromium is gone; wake start() if it still waits.
        self._ready.set()

    def close(self):
        """Stops Chromium and all its processes, then removes the
        profile (nothing writes to it any more)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def output(self):
        return "\n".join(self.log)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.close()
        return False

    @asynccontextmanager
    async def page(self, url):
        """A new tab that has loaded @url (its load event fired), closed
        on exit.  Tabs are made on the browser's own DevTools socket and
        driven on the page's (/devtools/page/TARGET_ID)."""
        browser = await Session.open(self.browser_url)
        try:
            r = await browser.call("Target.createTarget", url="about:blank")
            target = r["targetId"]
            try:
                page = await Page.open("%s/devtools/page/%s"
                                       % (self.devtools, target))
                try:
                    await page.load(url)
                    yield page
                finally:
                    await page.close()
            finally:
                # Best effort, so that a dead browser does not hide the
                # first error: close() kills whatever is left anyway.
                try:
                    await browser.call("Target.closeTarget", targetId=target)
                except Exception:
                    pass
        finally:
            await browser.close()


class Session:
    """One CDP connection: call() sends a command and awaits its answer
    (matched by id); events are queued by method name for event()."""

    def __init__(self, ws, url):
        self.ws = ws
        self.url = url
        self.ids = itertools.count(1)
        self.pending = {}  # id -> future of the answer
        self.events = {}  # method -> asyncio.Queue of params
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url):
        import websockets
        ws = await websockets.connect(url, max_size=64 << 20,
                                      compression=None, ping_interval=None,
                                      open_timeout=TIMEOUT,
                                      close_timeout=TIMEOUT)
        return cls(ws, url)

    def _queue(self, method):
        return self.events.setdefault(method, asyncio.Queue())

    async def _read(self):
        err = None
        try:
            async for raw in self.ws:
                m = json.loads(raw)
                if "id" in m:
                    fut = self.pending.pop(m["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(m)
                elif "method" in m:
                    self._queue(m["method"]).put_nowait(m.get("params", {}))
        except Exception as e:
            err = e
        # The socket is gone: fail whoever still waits for an answer.
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(AssertionError(
                        "DevTools socket %s closed (%r) before the answer"
                        % (self.url, err)))
        self.pending.clear()

    async def call(self, method, timeout=TIMEOUT, **params):
        """Sends CDP command @method; returns its result or raises."""
        i = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send(json.dumps({"id": i, "method": method,
                                       "params": params}))
        try:
            m = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AssertionError("CDP %s: no answer within %ss"
                                 % (method, timeout))
        if "error" in m:
            raise AssertionError("CDP %s: %s" % (method, m["error"]))
        return m.get("result", {})

    async def event(self, method, timeout=TIMEOUT):
        """The params of the next event @method (once its domain is
        enabled)."""
        try:
            return await asyncio.wait_for(self._queue(method).get(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError("CDP: no %s event within %ss"
                                 % (method, timeout))

    async def close(self):
        await self.ws.close()
        self.reader.cancel()
        try:
            await self.reader
        except asyncio.CancelledError:
            pass


class Page(Session):
    """A tab's CDP session, with the Page and Log domains enabled: the
    browser's own log (Log.entryAdded) says why a WebSocket failed, which
    the page's JavaScript is never told."""

    async def load(self, url):
        await self.call("Page.enable")
        await self.call("Log.enable")
        r = await self.call("Page.navigate", url=url)
        expect(not r.get("errorText"), "navigating to %s: %s", url,
               r.get("errorText"))
        await self.event("Page.loadEventFired")

    async def evaluate(self, expr, timeout=TIMEOUT):
        """Runs JavaScript @expr in the page, awaits it if it is a promise,
        and returns its value (JSON-serializable values only)."""
        r = await self.call("Runtime.evaluate", timeout=timeout,
                            expression=expr, awaitPromise=True,
                            returnByValue=True)
        exc = r.get("exceptionDetails")
        if exc:
            what = exc.get("exception", {}).get("description") or exc.get(
                    "text")
            raise AssertionError("JavaScript %s threw: %s"
                                 % (short(expr, 120), what))
        return r["result"].get("value")

    async def log_entry(self, pred, what, timeout=TIMEOUT):
        """The text of the next browser log entry for which @pred(text)
        holds; the log arrives on its own schedule, after the events the
        page saw."""
        seen = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                e = await self.event("Log.entryAdded", max(left, 0))
            except AssertionError:
                raise AssertionError("no browser log entry for %s within "
                                     "%ss; saw %s" % (what, timeout,
                                                      short(seen, 600)))
            text = e["entry"]["text"]
            if pred(text):
                return text
            seen.append(text)


class Site:
    """Serves one HTML page at / from 127.0.0.1 on a free port, in a
    thread; anything else is 404.  Context manager."""

    def __init__(self, html):
        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.server.shutdown()
        self.server.server_close()
        return False


# ---------------------------------------------------------------- reaper

PR_SET_CHILD_SUBREAPER = 36


def children():
    """Pids of this process's children, from /proc."""
    me = str(os.getpid())
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 is the ppid; comm (field 2) may hold spaces: skip it.
        if stat[stat.rindex(")") + 2:].split()[1] == me:
            out.append(int(d))
    return out


def kill_all(group):
    """SIGKILLs process group @group (Chromium's) and every child."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in children():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reap_main(argv):
    """`cdp.py --reap ARGV...`: runs ARGV (Chromium) in a session of its
    own and reaps whatever it leaves.  Chromium's zygotes and crashpad
    handlers are orphaned when the browser process exits (crashpad at
    once: it double-forks), and in a container PID 1 may never reap
    them.  As a child subreaper this process inherits them instead; when
    the browser exits, or on SIGTERM, it kills Chromium's process group
    and its remaining children, and exits once none is left."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Until the browser runs, SIGTERM simply ends this process.
    try:
        browser = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                   start_new_session=True,
                                   preexec_fn=rc.die_with_parent)
    except OSError as e:
        sys.stderr.write("cannot run %s: %s (tests/install-deps installs "
                         "chromium)\n" % (argv[0], e))
        return 127
    signal.signal(signal.SIGTERM, lambda sig, frame: kill_all(browser.pid))
    status, gone = 0, False
    while True:
        try:
            pid, st = os.wait()
        except ChildProcessError:
            return status
        if pid == browser.pid:
            status, gone = os.waitstatus_to_exitcode(st), True
        # Once the browser is gone, whatever is left is its debris.
        if gone:
            kill_all(browser.pid)


if __name__ == "__main__" and sys.argv[1:2] == ["--reap"]:
    sys.exit(reap_main(sys.argv[2:]))
