/* SPDX-License-Identifier: MIT */
/*
 * http.c: the plain HTTP side of the port. Routes a parsed request to the
 * WebSocket upgrades (/ws, /echo), the embedded broker's publish and
 * broadcast, /stats and /healthz. Publishing is the only request with a
 * body; it waits until the whole body is here (bounded by --max-message)
 * and is answered once the message has been sequenced. Connections are
 * kept alive between requests, errors included, unless the client asks
 * not to, the request was an upgrade, or an error leaves unknown where
 * the next request starts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "metrics.h"
#include "broker.h"
#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "handover.h"
#include "hs.h"
#include "http.h"
#include "inbox.h"
#include "json.h"
#include "mail.h"
#include "push.h"
#include "pusher_eng.h"
#include "tlsio.h"
#include "user.h"
#include "webhook.h"
#include "www.h"
#include "zframe.h"

static const struct hs_limits hs_lim = {
	.max_bytes = HS_DEF_MAX_BYTES,
	.max_headers = HS_DEF_MAX_HEADERS,
};

static const char json_type[] = "application/json";

#define STAT(sh, f) \
	((unsigned long long)atomic_load_explicit(&(sh)->stats.f, \
						  memory_order_relaxed))

/* Methods and paths are case-sensitive, unlike header names. */
static bool str_is(const struct hs_str *s, const char *lit)
{
	size_t n = strlen(lit);

	return s->len == n && !memcmp(s->p, lit, n);
}

static bool has_prefix(const struct hs_str *s, const char *lit)
{
	size_t n = strlen(lit);

	return s->len >= n && !memcmp(s->p, lit, n);
}

/*
 * Authorization: Bearer <--api-key>, compared in constant time whatever
 * the lengths: both sides are hashed first, so neither a wrong length nor
 * a wrong byte answers sooner than another (a length check alone would
 * tell an attacker the key's length).
 */
static bool authorized(const struct eng_cfg *cfg, const struct hs_req *req)
{
	const struct hs_str *a = &req->authorization;

	if (!cfg->api_key[0])
		return true;
	/* the scheme is public; only what follows it is the secret */
	if (!a->p || a->len < 7 || strncasecmp(a->p, "Bearer ", 7))
		return false;
	return eng_auth_key_ok(cfg, a->p + 7, a->len - 7);
}

static void reply(struct eng_shard *s, struct eng_conn *c, int status,
		  const char *extra)
{
	eng_conn_http_reply(s, c, status, extra, NULL, NULL, 0);
}

static void reply_json(struct eng_shard *s, struct eng_conn *c, int status,
		       const char *body)
{
	eng_conn_http_reply(s, c, status, NULL, json_type, body, strlen(body));
}

/*
 * An error after which the stream cannot be trusted to resume at the
 * next request (where the request ends is unknown): answer, then close.
 */
static void reply_close(struct eng_shard *s, struct eng_conn *c, int status,
			const char *body)
{
	c->flags &= ~ENG_CONN_F_KEEP;
	if (body)
		reply_json(s, c, status, body);
	else
		reply(s, c, status, NULL);
}

/* Case-insensitive: scheme and host are (RFC 6454 4). */
static bool ieq(const char *a, const char *b, size_t n)
{
	return !strncasecmp(a, b, n);
}

/*
 * Whether @o is in the comma-separated @list: an entry is an origin
 * (https://app.example.com:8443), or one whose host starts with the
 * label '*' (for *.example.com), which matches any host below it.
 */
static bool origin_allowed(const char *list, const struct hs_str *o)
{
	const char *e = list;

	while (*e) {
		const char *end = strchr(e, ',');
		size_t n = end ? (size_t)(end - e) : strlen(e);
		const char *star = memchr(e, '*', n);

		if (!star) {
			if (o->len == n && ieq(o->p, e, n))
				return true;
		} else {
			/* "https://" then "*" then ".example.com[:port]" */
			size_t pre = (size_t)(star - e), suf = n - pre - 1;

			if (o->len > pre + suf && ieq(o->p, e, pre) &&
			    ieq(o->p + o->len - suf, star + 1, suf) &&
			    !memchr(o->p + pre, '/', o->len - pre - suf))
				return true;
		}
		e += n + (end ? 1 : 0);
	}
	return false;
}

/* Whether @name (@n bytes) ends with the label-aligned @suffix. */
static bool below(const char *name, size_t n, const char *suffix, size_t sn)
{
	return n > sn && name[n - sn - 1] == '.' &&
	       ieq(name + n - sn, suffix, sn);
}

/*
 * Whether Host @h names this engine for a page: an address (no DNS was
 * asked, so no rebinding), localhost and names below it (browsers
 * resolve those to loopback themselves), or a name in @list
 * (--allowed-hosts: NAME or *.DOMAIN, comma-separated). The port is
 * not compared: a rebound name reaches the port the page asked for.
 */
static bool host_allowed(const char *list, const struct hs_str *h)
{
	const char *colon = memrchr(h->p, ':', h->len);
	size_t n = h->len;
	char ip[64];

	if (h->len && h->p[0] == '[') {		/* [v6]:port */
		const char *end = memchr(h->p, ']', h->len);
		size_t len = end ? (size_t)(end - h->p) - 1 : 0;
		struct in6_addr a6;

		if (!len || len >= sizeof(ip))
			return false;
		memcpy(ip, h->p + 1, len);
		ip[len] = '\0';
		return inet_pton(AF_INET6, ip, &a6) == 1;
	}
	if (colon)
		n = (size_t)(colon - h->p);
	if (n < sizeof(ip)) {
		struct in_addr a4;

		memcpy(ip, h->p, n);
		ip[n] = '\0';
		if (inet_pton(AF_INET, ip, &a4) == 1)
			return true;
	}
	if ((n == 9 && ieq(h->p, "localhost", 9)) ||
	    below(h->p, n, "localhost", 9))
		return true;
	while (*list) {
		const char *end = strchr(list, ',');
		size_t len = end ? (size_t)(end - list) : strlen(list);

		if (list[0] == '*' ? below(h->p, n, list + 2, len - 2) :
		    (n == len && ieq(h->p, list, n)))
			return true;
		list += len + (end ? 1 : 0);
	}
	return false;
}

/*
 * Whether Origin @o is a page this engine served: its host[:port] is the
 * request's Host, whatever the scheme (a TLS proxy may front us).
 */
static bool same_origin(const struct hs_str *o, const struct hs_str *host)
{
	const char *rest = memmem(o->p, o->len, "://", 3);
	size_t n;

	if (!rest || !host->p)
		return false;
	rest += 3;
	n = (size_t)(o->p + o->len - rest);
	return n == host->len && ieq(rest, host->p, n);
}

/*
 * Without an API key, whoever reaches the port may use the API, and a
 * browser on this host reaches it for any page it shows. So a keyless
 * engine refuses what only a page elsewhere sends: an Origin that is
 * neither the engine's own pages' nor in --allowed-origins (a
 * cross-site POST, even a "simple" text/plain one), and a Host that is
 * a name it was not given (DNS rebinding). Clients that are no browser
 * send no Origin and an address or a name of ours. False: 403 sent.
 */
static bool page_ok(struct eng_shard *s, struct eng_conn *c,
		    const struct hs_req *req)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	const char *why = NULL;

	if (req->host.p && !host_allowed(cfg->hosts, &req->host))
		why = "{\"error\":\"host not allowed\"}\n";
	else if (req->origin.p && !same_origin(&req->origin, &req->host) &&
		 !origin_allowed(cfg->origins, &req->origin))
		why = "{\"error\":\"origin not allowed\"}\n";
	if (!why)
		return true;
	reply_json(s, c, 403, why);
	return false;
}

/*
 * The guard of every API endpoint: the key when there is one (a browser
 * never sends it on its own, so Origin and Host need no check), else
 * page_ok(). False: 401 or 403 sent.
 */
static bool key_ok(struct eng_shard *s, struct eng_conn *c,
		   const struct hs_req *req)
{
	static const char bad[] = "{\"error\":\"bad api key\"}\n";

	if (!s->eng->cfg.api_key[0])
		return page_ok(s, c, req);
	if (authorized(&s->eng->cfg, req))
		return true;
	eng_auth_key_failed(s, "HTTP");
	c->flags &= ~ENG_CONN_F_KEEP;	/* a guess costs a connection */
	eng_conn_http_reply(s, c, 401, "WWW-Authenticate: Bearer\r\n",
			    json_type, bad, sizeof(bad) - 1);
	return false;
}

/*
 * A published body is delivered verbatim when it is JSON and as a JSON
 * string when it is other UTF-8 text; anything else cannot go in a text
 * frame. Returns false after answering 400.
 */
static bool payload_ok(struct eng_shard *s, struct eng_conn *c,
		       const uint8_t *body, size_t len, bool *json)
{
	*json = json_valid(s->json, (const char *)body, len);
	if (*json || json_utf8_valid(body, len))
		return true;
	reply_json(s, c, 400, "{\"error\":\"payload is neither JSON nor "
		   "UTF-8 text\"}\n");
	return false;
}

/*
 * An upgrade request to endpoint @ep: what every upgrade checks here, then
 * what @ep checks of its own (a token, say) before its 101.
 */
static void upgrade(struct eng_shard *s, struct eng_conn *c,
		    const struct hs_req *req, const struct eng_endpoint *ep)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	int status = hs_check_upgrade(req);

	if (status == 426) {
		reply(s, c, 426, "Sec-WebSocket-Version: 13\r\n");
		return;
	} else if (status == 405) {
		reply(s, c, 405, "Allow: GET\r\n");
		return;
	} else if (status) {
		reply(s, c, status, NULL);
		return;
	}
	/*
	 * A browser always sends Origin, so a page elsewhere cannot borrow
	 * its user's cookies or network position; other clients can send
	 * anything, which is why this is no authentication.
	 */
	if (cfg->origins[0] && req->origin.p &&
	    !origin_allowed(cfg->origins, &req->origin)) {
		reply(s, c, 403, NULL);
		return;
	}
	/* decided now: the 101 may come later (a user's admission) */
	c->deflate = eng_zframe_negotiate(cfg, &req->deflate);
	if (ep->on_upgrade)
		ep->on_upgrade(s, c, req);
	else
		eng_conn_upgrade(s, c, &req->ws_key, ep->kind);
}

static int hex_val(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch |= 0x20;
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/*
 * A channel name or user id from the path, percent-decoded (RFC 3986
 * 2.1): a user id with a '/' is written %2F. Names never hold '%', so
 * decoding is unambiguous. Returns the length, or -EINVAL for a bad
 * escape or a name outside the rules (chan.h).
 */
static int path_name(const char *p, size_t n, char *out)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (len == ENG_CHAN_MAX)
			return -EINVAL;
		if (p[i] != '%') {
			out[len++] = p[i];
			continue;
		}
		if (n - i < 3 || (hi = hex_val(p[i + 1])) < 0 ||
		    (lo = hex_val(p[i + 2])) < 0)
			return -EINVAL;
		out[len++] = (char)(hi << 4 | lo);
		i += 2;
	}
	return eng_chan_name_ok(out, len) ? (int)len : -EINVAL;
}

/*
 * Query parameter @name as a flag: 1 for "1" or "true", 0 for "0",
 * "false" or absent, -1 for anything else.
 */
static int query_flag(const struct hs_str *q, const char *name)
{
	size_t n = strlen(name);
	const char *p = q->p, *end = q->p + q->len;

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		struct hs_str v = { .p = p + n + 1 };

		if (!amp)
			amp = end;
		if ((size_t)(amp - p) > n && !memcmp(p, name, n) &&
		    p[n] == '=') {
			v.len = (uint32_t)(amp - v.p);
			if (str_is(&v, "1") || str_is(&v, "true"))
				return 1;
			return str_is(&v, "0") || str_is(&v, "false") ? 0 : -1;
		}
		p = amp + 1;
	}
	return 0;
}

/* /users/{uid}[/push|/disconnect|/inbox], and GET /online. */
static void users(struct eng_shard *s, struct eng_conn *c,
		  const struct hs_req *req, const uint8_t *body, size_t len)
{
	const char *seg = req->path.p + 7, *end = req->path.p + req->path.len;
	const char *slash = memchr(seg, '/', (size_t)(end - seg));
	struct hs_str rest = { .p = slash, .len = (uint32_t)(slash ? end - slash : 0) };
	const char *want = !slash || str_is(&rest, "/inbox") ? "GET" :
			   str_is(&rest, "/push") ||
			   str_is(&rest, "/disconnect") ? "POST" : NULL;
	char uid[ENG_CHAN_MAX];
	int ulen, persist;
	bool json;

	if (!key_ok(s, c, req))
		return;
	if (!want) {
		reply(s, c, 404, NULL);
		return;
	}
	if (!str_is(&req->method, want)) {
		reply(s, c, 405, *want == 'P' ? "Allow: POST\r\n" :
		      "Allow: GET\r\n");
		return;
	}
	ulen = path_name(seg, (size_t)((slash ? slash : end) - seg), uid);
	if (ulen < 0) {
		reply_json(s, c, 400, "{\"error\":\"bad user id\"}\n");
		return;
	}
	if (!slash) {
		if (s->eng->broker->user_query(s, c, uid, (size_t)ulen) < 0)
			reply(s, c, 503, NULL);
		return;
	}
	if (str_is(&rest, "/disconnect")) {
		if (s->eng->broker->user_kick(s, c, uid, (size_t)ulen) < 0)
			reply(s, c, 503, NULL);
		return;
	}
	if (str_is(&rest, "/inbox")) {
		if (eng_inbox_ask(s, c, ENG_IB_LIST, uid, (size_t)ulen, NULL, 0,
				  NULL, 0) < 0)
			reply(s, c, 503, NULL);
		return;
	}
	persist = query_flag(&req->query, "persist");
	if (persist < 0) {
		reply_json(s, c, 400, "{\"error\":\"persist is 1 or 0\"}\n");
		return;
	}
	if (req->content_length < 0) {
		reply(s, c, 411, NULL);
		return;
	}
	if (!payload_ok(s, c, body, len, &json))
		return;
	if (s->eng->broker->publish(s, c, persist ? ENG_TO_INBOX : ENG_TO_USER,
				    uid, (size_t)ulen, body, len, json, NULL,
				    NULL, NULL) < 0)
		reply(s, c, 503, NULL);
}

/* GET /online: users and connections, this node or all (Redis). */
static void online(struct eng_shard *s, struct eng_conn *c,
		   const struct hs_req *req)
{
	if (key_ok(s, c, req) && s->eng->broker->online(s, c) < 0)
		reply(s, c, 503, NULL);
}

/* POST /publish/{channel} and /broadcast. */
static void publish(struct eng_shard *s, struct eng_conn *c,
		    const struct hs_req *req, const uint8_t *body, size_t len)
{
	const struct hs_str *path = &req->path;
	char name[ENG_CHAN_MAX];
	const char *chan = NULL;
	size_t clen = 0;
	bool json;

	if (!str_is(&req->method, "POST")) {
		reply(s, c, 405, "Allow: POST\r\n");
		return;
	}
	if (!key_ok(s, c, req))
		return;
	if (has_prefix(path, "/publish/")) {
		/* the rest of the path: a '/' in a channel needs no escape */
		int n = path_name(path->p + 9, path->len - 9, name);

		if (n < 0) {
			reply_json(s, c, 400, "{\"error\":\"bad channel name\"}\n");
			return;
		}
		chan = name;
		clen = (size_t)n;
	}
	if (!payload_ok(s, c, body, len, &json))
		return;
	if (s->eng->broker->publish(s, c, chan ? ENG_TO_CHANNEL : ENG_TO_ALL,
				    chan, clen, body, len, json, NULL,
				    NULL, NULL) < 0)
		reply(s, c, 503, NULL);
}



/* Appends one shard's counters (or their totals) as a JSON object. */
static size_t stats_obj(char *out, size_t cap, struct eng *e, int only)
{
	unsigned long long v[26] = { 0 };
	unsigned i;

	for (i = 0; i < e->cfg.shards; i++) {
		struct eng_shard *sh = &e->shards[i];

		if (only >= 0 && (unsigned)only != i)
			continue;
		v[0] += STAT(sh, conns);
		v[1] += STAT(sh, upgraded);
		v[2] += only >= 0 ? STAT(sh, channels) : STAT(sh, chans_owned);
		v[3] += STAT(sh, subscriptions);
		v[4] += STAT(sh, msgs_in);
		v[5] += STAT(sh, published);
		v[6] += STAT(sh, frames_out);
		v[7] += STAT(sh, delivered);
		v[8] += STAT(sh, bytes_in);
		v[9] += STAT(sh, bytes_out);
		v[10] += STAT(sh, dropped);
		v[11] += STAT(sh, slow_closed);
		v[12] += STAT(sh, proto_errors);
		v[13] += STAT(sh, timeouts);
		v[14] += STAT(sh, zc_sends);
		v[15] += STAT(sh, mbox_errors);
		v[16] += STAT(sh, users_owned);
		v[17] += STAT(sh, user_conns);
		v[18] += STAT(sh, auth_failed);
		v[19] += STAT(sh, kicked);
		v[20] += STAT(sh, user_refused);
		v[21] += STAT(sh, partial_bytes);
		v[22] += STAT(sh, partial_alloc);
		v[23] += STAT(sh, partial_closed);
		v[24] += STAT(sh, sends);
		v[25] += STAT(sh, key_failed);
	}
	return (size_t)snprintf(out, cap,
		"{\"connections\":%llu,\"upgraded\":%llu,\"channels\":%llu,"
		"\"subscriptions\":%llu,\"messages_in\":%llu,"
		"\"published\":%llu,\"frames_out\":%llu,\"delivered\":%llu,"
		"\"bytes_in\":%llu,\"bytes_out\":%llu,\"dropped\":%llu,"
		"\"slow_closed\":%llu,\"protocol_errors\":%llu,"
		"\"timeouts\":%llu,\"zc_sends\":%llu,\"mailbox_errors\":%llu,"
		"\"users_owned\":%llu,\"user_conns\":%llu,\"auth_failed\":%llu,"
		"\"kicked\":%llu,\"user_refused\":%llu,\"partial_bytes\":%llu,"
		"\"partial_alloc\":%llu,\"partial_closed\":%llu,\"sends\":%llu,"
		"\"key_failed\":%llu}",
		v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
		v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17], v[18],
		v[19], v[20], v[21], v[22], v[23], v[24], v[25]);
}

/* 200 "ok", or 503 and the reason while Redis is unreachable. */
static void healthz(struct eng_shard *s, struct eng_conn *c)
{
	char why[512], body[600];
	int n;

	if (eng_broker_healthy(s->eng, why, sizeof(why))) {
		eng_conn_http_reply(s, c, 200, NULL, NULL, "ok\n", 3);
		return;
	}
	n = snprintf(body, sizeof(body), "%s\n", why);
	eng_conn_http_reply(s, c, 503, NULL, NULL, body, (size_t)n);
}

static void stats(struct eng_shard *s, struct eng_conn *c)
{
	struct eng *e = s->eng;
	size_t cap = 3584 + (size_t)e->cfg.shards * 1024 +
		     eng_broker_stats_max(e), n;
	char *out = eng_malloc(cap);

	if (!out) {
		reply(s, c, 503, NULL);
		return;
	}
	n = (size_t)snprintf(out, cap, "{\"total\":");
	n += stats_obj(out + n, cap - n, e, -1);
	n += eng_broker_stats(e, out + n, cap - n);
	n += eng_handover_stats(e, out + n, cap - n);
	if (e->cfg.nns) {
		uint64_t h[4] = { 0 };

		for (unsigned i = 0; i < e->cfg.shards; i++) {
			struct eng_shard *sh = &e->shards[i];

			h[0] += STAT(sh, hist_bytes);
			h[1] += STAT(sh, hist_msgs);
			h[2] += STAT(sh, hist_evicted);
			h[3] += STAT(sh, hist_lost);
		}
		n += (size_t)snprintf(out + n, cap - n,
				      ",\"history\":{\"bytes\":%llu,"
				      "\"messages\":%llu,\"evicted\":%llu,"
				      "\"lost\":%llu}",
				      (unsigned long long)h[0],
				      (unsigned long long)h[1],
				      (unsigned long long)h[2],
				      (unsigned long long)h[3]);
	}
	{
		uint64_t b[5] = { 0 };

		for (unsigned i = 0; i < e->cfg.shards; i++) {
			b[0] += STAT(&e->shards[i], inbox_msgs);
			b[1] += STAT(&e->shards[i], inbox_evicted);
			b[2] += STAT(&e->shards[i], inbox_expired);
			b[3] += STAT(&e->shards[i], inbox_mem_evicted);
			b[4] += STAT(&e->shards[i], inbox_bytes);
		}
		n += (size_t)snprintf(out + n, cap - n,
				      ",\"inbox\":{\"messages\":%llu,"
				      "\"evicted\":%llu,\"expired\":%llu,"
				      "\"memory_evicted\":%llu,\"bytes\":%llu}",
				      (unsigned long long)b[0],
				      (unsigned long long)b[1],
				      (unsigned long long)b[2],
				      (unsigned long long)b[3],
				      (unsigned long long)b[4]);
	}
	if (e->tls_ctx) {
		n += (size_t)snprintf(out + n, cap - n, ",\"tls\":");
		n += eng_tls_stats(e, out + n, cap - n);
	}
	n += (size_t)snprintf(out + n, cap - n, ",\"deflate\":");
	n += eng_zframe_stats(e, out + n, cap - n);
	if (e->cfg.webhook) {
		n += (size_t)snprintf(out + n, cap - n, ",\"webhooks\":");
		n += eng_webhook_stats_json(out + n, cap - n);
	}
	n += (size_t)snprintf(out + n, cap - n, ",\"mail\":");
	n += eng_mail_stats(out + n, cap - n);
	n += (size_t)snprintf(out + n, cap - n,
			      ",\"frames_live\":%llu,\"arena_bytes\":%zu,"
			      "\"arena_fallbacks\":%llu,\"shards\":[",
			      (unsigned long long)eng_frames_live(),
			      eng_arena_used(),
			      (unsigned long long)eng_arena_fallbacks());
	for (unsigned i = 0; i < e->cfg.shards && n < cap; i++) {
		if (i)
			out[n++] = ',';
		n += stats_obj(out + n, cap - n, e, (int)i);
	}
	n += (size_t)snprintf(out + n, cap - n, "]}\n");
	eng_conn_http_reply(s, c, 200, NULL, json_type, out, n < cap ? n : cap);
	eng_free(out);
}

/*
 * A client that sent Expect: 100-continue waits for this before its body
 * (curl for a second, then sends anyway): tell it to go on, once per
 * request, since the head is parsed again as the body arrives.
 */
static void continue_once(struct eng_shard *s, struct eng_conn *c,
			  const struct hs_req *req)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	struct eng_buf *b;

	if (!(req->flags & HS_F_EXPECT_CONTINUE) ||
	    (c->flags & ENG_CONN_F_CONTINUED))
		return;
	b = eng_buf_new(sizeof(cont));
	if (!b)
		return;		/* the client sends its body after a wait */
	memcpy(b->data, cont, sizeof(cont) - 1);
	b->len = sizeof(cont) - 1;
	c->flags |= ENG_CONN_F_CONTINUED;
	eng_conn_queue(s, c, b);
}

/*
 * The files in the binary (www.h): the status page at / (and /status),
 * /ringcast.js and its types, the pages' /base.css, and /demo with --demo. False when @req names none.
 */
static bool www(struct eng_shard *s, struct eng_conn *c,
		const struct hs_req *req)
{
	/* the pages' scripts and styles are inline, their sockets this host */
	static const char page_hdrs[] =
		"X-Content-Type-Options: nosniff\r\n"
		"Content-Security-Policy: default-src 'self'; "
		"script-src 'self' 'unsafe-inline'; "
		"style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; "
		"img-src 'self' data:; frame-ancestors 'none'\r\n";
	static const char file_hdrs[] =
		"X-Content-Type-Options: nosniff\r\n"
		"Access-Control-Allow-Origin: *\r\n";
	const struct eng_www *f;
	const char *want = NULL;

	if (req->flags & HS_F_UPGRADE_WS)
		return false;	/* a page is no WebSocket endpoint: 404 */
	if (str_is(&req->path, "/") || str_is(&req->path, "/status"))
		want = "/status";
	else if (str_is(&req->path, "/demo") && s->eng->cfg.demo)
		want = "/demo";
	else if (str_is(&req->path, "/ringcast.js") ||
		 str_is(&req->path, "/ringcast.d.ts") ||
		 str_is(&req->path, "/base.css"))
		want = "";
	if (!want)
		return false;
	for (f = eng_www_files; f->path; f++)
		if (*want ? !strcmp(f->path, want) :
		    str_is(&req->path, f->path))
			break;
	if (!f->path)
		return false;
	if (!str_is(&req->method, "GET")) {
		reply(s, c, 405, "Allow: GET\r\n");
		return true;
	}
	eng_conn_http_reply(s, c, 200, *want ? page_hdrs : file_hdrs, f->type,
			    (const char *)f->data, f->len);
	return true;
}

/* A request at @p, as struct eng_endpoint's on_request. */
static size_t on_request(struct eng_shard *s, struct eng_conn *c,
			 const uint8_t *p, size_t n, size_t *want)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	const struct eng_endpoint *ep;
	struct hs_req req;
	ssize_t len = hs_parse(&req, p, n, &hs_lim);
	size_t body = 0;

	if (len == -EAGAIN)
		return 0;
	if (len < 0) {
		reply_close(s, c, hs_error_status((int)len), NULL);
		return 0;
	}
	/* HTTP/1.1 keeps the connection unless asked (or told) not to. */
	if (req.minor_version >= 1 && !(req.flags & HS_F_CONN_CLOSE) &&
	    cfg->http_idle_ms)
		c->flags |= ENG_CONN_F_KEEP;
	else
		c->flags &= ~ENG_CONN_F_KEEP;
	/* a refused upgrade closes: its client wanted no more HTTP */
	ep = eng_endpoint_find(s, &req.path);
	if ((req.flags & HS_F_UPGRADE_WS) || ep)
		c->flags &= ~ENG_CONN_F_KEEP;
	/* RFC 9112 section 3.2: an HTTP/1.1 request without Host is a 400. */
	if (req.minor_version >= 1 && !req.host.p) {
		reply_close(s, c, 400, "{\"error\":\"missing Host header\"}\n");
		return 0;
	}
	/* the body of these is not read: where the next request starts is
	 * not known */
	if (req.flags & HS_F_EXPECT_OTHER) {
		reply_close(s, c, 417, NULL);	/* RFC 9110 10.1.1 */
		return 0;
	}
	if (req.flags & HS_F_CHUNKED) {
		reply_close(s, c, 411, NULL);	/* bodies need Content-Length */
		return 0;
	}
	if (req.content_length > 0) {
		if ((uint64_t)req.content_length > cfg->max_message) {
			reply_close(s, c, 413, NULL);
			return 0;
		}
		body = (size_t)req.content_length;
		if (n - (size_t)len < body) {
			*want = (size_t)len + body;	/* wait for all of it */
			continue_once(s, c, &req);
			return 0;
		}
	}
	c->flags &= ~ENG_CONN_F_CONTINUED;	/* the next request may ask */

	if (ep) {
		upgrade(s, c, &req, ep);
	} else if (has_prefix(&req.path, "/publish/") ||
		   str_is(&req.path, "/broadcast")) {
		if (req.content_length < 0 && str_is(&req.method, "POST"))
			reply(s, c, 411, NULL);
		else
			publish(s, c, &req, p + len, body);
	} else if (has_prefix(&req.path, "/apps/")) {
		eng_pusher_api(s, c, &req, p + len, body);	/* signed */
	} else if (has_prefix(&req.path, "/users/")) {
		users(s, c, &req, p + len, body);
	} else if (str_is(&req.path, "/online")) {
		if (!str_is(&req.method, "GET"))
			reply(s, c, 405, "Allow: GET\r\n");
		else
			online(s, c, &req);
	} else if (str_is(&req.path, "/healthz") ||
		   str_is(&req.path, "/stats") ||
		   str_is(&req.path, "/metrics")) {
		if (!str_is(&req.method, "GET"))
			reply(s, c, 405, "Allow: GET\r\n");
		else if (str_is(&req.path, "/healthz"))
			healthz(s, c);
		else if (!key_ok(s, c, &req))	/* counts /online guards */
			;
		else if (str_is(&req.path, "/stats"))
			stats(s, c);
		else
			eng_metrics_reply(s, c);
	} else if (!www(s, c, &req)) {
		reply(s, c, 404, NULL);
	}
	return (size_t)len + body;
}

/* /echo: every message straight back, with --echo (benchmarks, tests). */
static bool echo_enabled(const struct eng_shard *s)
{
	return s->eng->cfg.echo;
}

static void echo_message(struct eng_shard *s, struct eng_conn *c, uint8_t op,
			 const uint8_t *p, size_t len)
{
	eng_conn_send_frame(s, c, op, p, len);
}

/* An assembled message goes back in its own buffer: no copy. */
static void echo_assembled(struct eng_shard *s, struct eng_conn *c,
			   uint8_t op, struct eng_buf *b)
{
	eng_buf_seal(b, b->data + WS_MAX_SERVER_HDR, op, b->len);
	eng_conn_queue(s, c, b);
}

/*
 * A live hand-over (conn.h): an HTTP connection between requests and an
 * /echo one keep nothing of their own; the connection's record is all.
 */
static int ho_save_none(struct eng_shard *s, struct eng_conn *c,
			struct eng_ho_buf *b)
{
	(void)s;
	(void)b;
	/* a /ws upgrade waiting for its user's admission is not carried */
	return c->auth ? -EAGAIN : 0;
}

static int ho_load_none(struct eng_shard *s, struct eng_conn *c,
			struct eng_ho_rd *r)
{
	(void)s;
	(void)c;
	return r->len ? -EBADMSG : 0;
}

static const struct eng_endpoint http_endpoint = {
	.name = "http",
	.kind = ENG_CONN_K_HTTP,
	.on_request = on_request,
	/* a /ws upgrade waiting for its user's admission is still HTTP */
	.on_close = eng_push_close,
	.ho_save = ho_save_none,
	.ho_load = ho_load_none,
};

static const struct eng_endpoint echo_endpoint = {
	.name = "echo",
	.path = "/echo",
	.kind = ENG_CONN_K_ECHO,
	.enabled = echo_enabled,
	.on_message = echo_message,
	.on_assembled = echo_assembled,
	.ho_save = ho_save_none,
	.ho_load = ho_load_none,
};

int eng_http_register(void)
{
	int ret = eng_endpoint_add(&http_endpoint);

	return ret < 0 ? ret : eng_endpoint_add(&echo_endpoint);
}
