# SPDX-License-Identifier: MIT
"""A real browser against the engine: headless Chromium (Debian's chromium
package), driven over the DevTools protocol by cdp.py, opens ringcast
WebSockets with its own WebSocket implementation from a page served on
127.0.0.1.  The page records each socket's events in order (open,
message, error, close), and the test reads them back one by one, so an
event that happens while Python is busy (a close during shutdown) is
kept, not missed.

- browser-subscribe: PROTOCOL.md's Quick example: the page subscribes to
  "news" from onopen, gets the 200 reply, and a POST /publish/news of
  {"title":"hello"} arrives as {"cmd":"push","channel":"news",...}.
- browser-token: --auth required --jwt-secret: the page connects with
  ?token= (HS256 from jwtmint.py) and gets a POST /users/alice/push; a
  tampered token fails in the browser (error and close 1006, no open),
  the browser logs the 401 and the engine counts one auth failure.
- browser-close: SIGTERM: the page's socket closes with 1001 and the
  engine exits 0.
- browser-origin: --allowed-origins naming the page's origin lets its
  socket open; a list without it makes the browser's socket fail (error,
  close 1006, a 403 in the browser's log).
"""

import asyncio
import json
import signal

import cdp
import jwtmint
import rc
from rc import expect, expect_eq, short

SECRET = "browser-secret-0123456789abcdef0123456789"
WAIT_MS = 20000

# record() opens socket NAME and queues its events; the Quick example's
# subscribe goes out from onopen when @hello is given.  next() hands out
# the oldest event, or {type: "timeout"} after @ms.
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>ringcast browser test</title>
<link rel="icon" href="data:,">
<script>
"use strict";
const socks = {};

function record(name, url, hello) {
	const s = { ws: new WebSocket(url), queue: [], wake: null };
	const push = (ev) => {
		s.queue.push(ev);
		if (s.wake)
			s.wake();
	};
	s.ws.onopen = () => {
		push({ type: "open" });
		if (hello)
			s.ws.send(hello);
	};
	s.ws.onmessage = (e) => push({ type: "message",
		text: typeof e.data === "string" ? e.data : null });
	s.ws.onerror = () => push({ type: "error" });
	s.ws.onclose = (e) => push({ type: "close", code: e.code,
		reason: e.reason, clean: e.wasClean });
	socks[name] = s;
}

async function next(name, ms) {
	const s = socks[name];
	const deadline = Date.now() + ms;
	while (!s.queue.length) {
		const left = deadline - Date.now();
		if (left <= 0)
			return { type: "timeout", readyState: s.ws.readyState };
		await new Promise((wake) => {
			s.wake = wake;
			setTimeout(wake, left);
		});
		s.wake = null;
	}
	return s.queue.shift();
}
</script></head><body>ringcast</body></html>
"""


def js(fn, *args):
    """A call of page function @fn with @args as JSON literals."""
    return "%s(%s)" % (fn, ", ".join(json.dumps(a) for a in args))


async def open_socket(page, name, url, hello=None):
    await page.evaluate(js("record", name, url, hello))


async def next_event(page, name, want, what):
    """The next event of socket @name, which must be of type @want."""
    ev = await page.evaluate(js("next", name, WAIT_MS),
                             timeout=WAIT_MS / 1000 + 10)
    expect(isinstance(ev, dict) and ev.get("type") == want,
           "%s: got event %s, want %s", what, short(ev, 300), want)
    return ev


async def next_json(page, name, what):
    """The next message on socket @name, as (raw text, parsed JSON)."""
    ev = await next_event(page, name, "message", what)
    expect(ev["text"] is not None, "%s: a binary message", what)
    return ev["text"], json.loads(ev["text"])


async def api(eng, method, path, body=None):
    return await asyncio.to_thread(rc.api, eng, method, path, body)


async def subscribed(page, eng, name, url=None):
    """Socket @name to /ws, subscribed to "news" the way the Quick
    example does it."""
    hello = rc.push_cmd("subscribe", 1, channels=["news"])
    await open_socket(page, name, url or eng.url("/ws"), hello)
    await next_event(page, name, "open", "%s open" % name)
    _, reply = await next_json(page, name, "%s subscribe reply" % name)
    expect_eq(reply, {"seq": 1, "cmd": "subscribe", "code": 200,
                      "msg": "ok"}, "%s subscribe reply" % name)


# ---------------------------------------------------------------- checks

async def check_subscribe(exe, chrome, site):
    with rc.Engine(exe) as eng:
        async with chrome.page(site.url) as page:
            await subscribed(page, eng, "news")
            body = b'{"title":"hello"}'
            expect_eq(await api(eng, "POST", "/publish/news", body),
                      (200, {"ok": True}), "POST /publish/news")
            raw, push = await next_json(page, "news", "push")
            expect_eq(push, {"cmd": "push", "channel": "news",
                             "data": {"title": "hello"}}, "push")
            expect(body.decode() in raw, "payload %s not verbatim in %s",
                   body, raw)


async def auth_failures(eng):
    s = await asyncio.to_thread(rc.stats, eng)
    return sum(sh.get("auth_failed", 0) for sh in s["shards"])


async def check_token(exe, chrome, site):
    with rc.Engine(exe, "--auth", "required", "--jwt-secret", SECRET) as eng:
        good = jwtmint.hs256(jwtmint.claims("alice", app="web"), SECRET)
        async with chrome.page(site.url) as page:
            await open_socket(page, "alice", eng.url("/ws?token=" + good))
            await next_event(page, "alice", "open", "alice open")
            expect_eq(await api(eng, "POST", "/users/alice/push",
                                b'{"paid":true}'), (200, {"ok": True}),
                      "POST /users/alice/push")
            _, push = await next_json(page, "alice", "user push")
            expect_eq(push, {"cmd": "push", "user": "alice",
                             "data": {"paid": True}}, "user push")

            before = await auth_failures(eng)
            bad_url = eng.url("/ws?token=" + jwtmint.tamper(good))
            await open_socket(page, "bad", bad_url)
            # RFC 6455 and the WebSocket API: a failed handshake fires
            # error, then close with 1006, and never open.
            await next_event(page, "bad", "error", "bad token")
            ev = await next_event(page, "bad", "close", "bad token")
            expect_eq((ev["code"], ev["clean"]), (1006, False),
                      "bad token close (code, wasClean)")
            expect_eq(await auth_failures(eng), before + 1,
                      "auth_failed in /stats after the bad token")
            # Chromium words a 401 to a WebSocket as "HTTP Authentication
            # failed; no valid credentials available".
            log = await page.log_entry(lambda t: bad_url in t,
                                       "the bad token's socket")
            expect("401" in log or "Authentication failed" in log,
                   "the browser's log does not show a 401: %r", log)

            # The refusal touched only the bad socket.
            expect_eq(await api(eng, "POST", "/users/alice/push",
                                b'"again"'), (200, {"ok": True}),
                      "second POST /users/alice/push")
            _, push = await next_json(page, "alice", "second user push")
            expect_eq(push, {"cmd": "push", "user": "alice",
                             "data": "again"}, "second user push")


async def check_close(exe, chrome, site):
    with rc.Engine(exe) as eng:
        async with chrome.page(site.url) as page:
            await subscribed(page, eng, "bye")
            eng.send_signal(signal.SIGTERM)
            # The page queues the close, so it is read after the engine
            # may already have exited.
            ev = await next_event(page, "bye", "close", "close on SIGTERM")
            expect_eq(ev["code"], 1001, "close code on SIGTERM (reason %r,"
                      " wasClean %s)" % (ev["reason"], ev["clean"]))
            expect_eq(await asyncio.to_thread(eng.wait), 0,
                      "engine exit status after SIGTERM")


async def check_origin(exe, chrome, site):
    page_origin = site.url.rstrip("/")
    with rc.Engine(exe, "--allowed-origins",
                   "https://app.example.com," + page_origin) as eng:
        async with chrome.page(site.url) as page:
            await subscribed(page, eng, "listed")
    with rc.Engine(exe, "--allowed-origins",
                   "https://app.example.com,https://*.example.org") as eng:
        async with chrome.page(site.url) as page:
            url = eng.url("/ws")
            await open_socket(page, "other", url)
            await next_event(page, "other", "error", "origin not listed")
            ev = await next_event(page, "other", "close", "origin not listed")
            expect_eq((ev["code"], ev["clean"]), (1006, False),
                      "close of a socket from an origin not listed")
            log = await page.log_entry(lambda t: url in t,
                                       "the unlisted origin's socket")
            expect("403" in log, "the browser's log does not show a 403: "
                   "%r", log)


def main():
    run = rc.Run("browser")
    chrome = cdp.Chromium()
    try:
        with cdp.Site(PAGE) as site:
            chrome.start()
            run.check("browser-subscribe", check_subscribe, run.exe, chrome,
                      site, timeout=90)
            run.check("browser-token", check_token, run.exe, chrome, site,
                      timeout=90)
            run.check("browser-close", check_close, run.exe, chrome, site,
                      timeout=90)
            run.check("browser-origin", check_origin, run.exe, chrome,
                      site, timeout=90)
    except Exception as e:
        run.fail("browser", e)
    finally:
        chrome.close()
    if run.failed:
        print("---- chromium stderr ----")
        print(chrome.output()[-10000:])
    run.finish()


if __name__ == "__main__":
    main()
