/* SPDX-License-Identifier: MIT */
/*
 * pusher_api.c: the Pusher HTTP API on /apps/{id}/... (pusher_eng.h):
 * POST events, signed as the server SDKs sign (pusher_api_check: the
 * signature, body_md5 and auth_timestamp within 600 s, compared in
 * constant time). The event is encoded once, as the frame Pusher clients
 * get, and published to the app's engine channel through the broker.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "broker.h"
#include "chan.h"
#include "conn.h"
#include "frame.h"
#include "hs.h"
#include "json.h"
#include "pusher_eng.h"
#include "rreq.h"


static void reply(struct eng_shard *s, struct eng_conn *c, int status,
		  const char *msg)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);

	eng_conn_http_reply(s, c, status, NULL, "application/json", body,
			    (size_t)n);
}

#define CHANNELS_MAX	100	/* channels of one event: Pusher's */
#define BATCH_MAX	10	/* events of one batch: Pusher's */

static bool space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/*
 * The elements of JSON array @raw (valid JSON: the parser checked it),
 * each's text trimmed, into @v. Returns how many, or -E2BIG over @max.
 */
static int items(struct json_slice raw, struct json_slice *v, unsigned max)
{
	const char *p = raw.p + 1, *end = raw.p + raw.len - 1, *start;
	unsigned n = 0, depth = 0;
	bool str = false;

	while (p < end && space(*p))
		p++;
	if (p == end)
		return 0;
	for (start = p; p <= end; p++) {
		if (str) {
			if (*p == '\\')
				p++;
			else if (*p == '"')
				str = false;
		} else if (*p == '"') {
			str = true;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if ((*p == '}' || *p == ']') && depth) {
			depth--;
		} else if (p == end || (*p == ',' && !depth)) {
			const char *e = p;

			while (e > start && space(e[-1]))
				e--;
			if (n == max)
				return -E2BIG;
			v[n++] = (struct json_slice){ start, (size_t)(e - start) };
			for (start = p + 1; start < end && space(*start);)
				start++;
		}
	}
	return (int)n;
}

#define INFO_MAX	500	/* channels whose info one script reads */

/* One event of a publish, as read from its JSON object. */
struct pev {
	struct json_slice name, data, skip;	/* data: its JSON text */
	struct json_slice ch[CHANNELS_MAX];
	unsigned nch;
	bool counts;		/* "info" asks for either below */
	bool subs, users;	/* subscription_count, user_count */
};

/*
 * Reads and checks event object @doc[0..@len) into @e (its slices valid
 * until @s->json parses again): "name", "data" a string, "channel" or
 * "channels" (one to 100 names), "socket_id" optional. Returns 0, or the
 * HTTP status to refuse it with, *@why set.
 */
static int read_event(struct eng_shard *s, const char *doc, size_t len,
		      struct pev *e, const char **why)
{
	struct json_member m[] = {
		{ .key = "channel" }, { .key = "channels" }, { .key = "name" },
		{ .key = "data" }, { .key = "socket_id" }, { .key = "info" },
	};
	int n;

	*why = "not a JSON object";
	if (json_get_members(s->json, doc, len, m, 6) < 0)
		return 400;
	*why = "name, data and info must be strings";
	if (m[2].type != JSON_STRING || m[3].type != JSON_STRING ||
	    (m[4].type != JSON_ABSENT && m[4].type != JSON_STRING) ||
	    (m[5].type != JSON_ABSENT && m[5].type != JSON_STRING))
		return 400;
	e->subs = m[5].type == JSON_STRING &&
		  memmem(m[5].str.p, m[5].str.len, "subscription_count", 18);
	e->users = m[5].type == JSON_STRING &&
		   memmem(m[5].str.p, m[5].str.len, "user_count", 10);
	e->counts = e->subs || e->users;
	*why = "data over --pusher-max-data (10 KB by default)";
	if (m[3].str.len > s->eng->cfg.pusher->max_data)
		return 413;
	*why = "invalid event name";
	if (pusher_event_name_check(m[2].str.p, m[2].str.len, false) < 0)
		return 400;
	*why = "invalid socket_id";
	if (m[4].type == JSON_STRING &&
	    !pusher_socket_id_valid(m[4].str.p, m[4].str.len))
		return 400;
	e->name = m[2].str;
	e->data = m[3].raw;
	e->skip = m[4].type == JSON_STRING ? m[4].str : (struct json_slice){ 0 };
	*why = "channel or channels (1 to 100) needed";
	if (m[0].type == JSON_STRING && m[1].type == JSON_ABSENT) {
		e->ch[0] = m[0].str;
		e->nch = 1;
	} else if (m[1].type == JSON_ARRAY && m[0].type == JSON_ABSENT) {
		n = items(m[1].raw, e->ch, CHANNELS_MAX);
		if (n <= 0)
			return 400;
		e->nch = (unsigned)n;
	} else {
		return 400;
	}
	*why = "invalid channel name";
	for (unsigned i = 0; i < e->nch; i++) {
		struct json_slice *c = &e->ch[i];

		if (m[1].type == JSON_ARRAY) {	/* a string, no escapes */
			if (c->len < 2 || c->p[0] != '"' ||
			    memchr(c->p, '\\', c->len))
				return 400;
			*c = (struct json_slice){ c->p + 1, c->len - 2 };
		}
		if (pusher_channel_kind(c->p, c->len) < 0)
			return 400;
	}
	return 0;
}

/*
 * The publishes one request makes (every channel of every event), each
 * counted when done; the last to end answers the client: {} when all
 * were published, else 503 (or 504 when those that failed may have
 * been) saying how many failed. @left starts at 1, held while they are
 * made, so that one ending at once cannot answer early. Atomic, since a
 * publish whose answer was lost to a stop ends on its owner's thread.
 */
struct tally {
	atomic_uint left;
	unsigned made, failed;
	int status;		/* 503 or 504 once one failed */
	uint32_t slot, gen;	/* the client */
	char *ok;		/* the answer when all went: NULL, {} */
	size_t ok_len;
};

static void tally_end(struct eng_shard *s, void *arg, long long result)
{
	struct tally *t = arg;
	struct eng_conn *c = s ? &s->conns[t->slot] : NULL;
	char body[160];
	int n;

	if (result < 0) {
		int st = eng_broker_failed_code(result);

		t->failed++;
		t->status = t->status == 503 ? 503 : st;
	}
	if (--t->left)
		return;
	if (c && c->gen == t->gen && eng_conn_alive(c)) {
		c->flags &= ~ENG_CONN_F_WAIT;
		if (t->failed)
			n = snprintf(body, sizeof(body), "{\"error\":\"%u of %u "
				     "publishes failed: %s\"}\n", t->failed,
				     t->made, t->status == 503 ?
				     "not published" : "may be published");
		else if (t->ok)
			n = 0;
		else
			n = snprintf(body, sizeof(body), "{}\n");
		eng_conn_http_reply(s, c, t->failed ? t->status : 200, NULL,
				    "application/json", n ? body : t->ok,
				    n ? (size_t)n : t->ok_len);
		eng_conn_resume(s, c);
	}
	free(t->ok);
	free(t);
}

/* A tally for @c, which reads no further request until answered. */
static struct tally *tally_new(struct eng_shard *s, struct eng_conn *c)
{
	struct tally *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->left = 1;
	t->slot = eng_slot(s, c);
	t->gen = c->gen;
	c->flags |= ENG_CONN_F_WAIT;
	return t;
}

/*
 * Publishes @e to each of its channels, encoded once per channel, each
 * counted in @t. One that cannot be made is counted as failed (503) and
 * the rest are not tried; returns false then.
 */
static bool publish(struct eng_shard *s, struct tally *t,
		    const struct pusher_app *app, const struct pev *e)
{
	size_t cap = 64 + json_escape_max(e->name.len) +
		     json_escape_max(PUSHER_CHANNEL_MAX) + e->data.len +
		     sizeof(ENG_FRAME_SKIP) + e->skip.len;
	char name[ENG_CHAN_MAX + 1], *ev = malloc(cap);
	int ret = ev ? 0 : -ENOMEM;

	for (unsigned i = 0; !ret && i < e->nch; i++) {
		int nlen = eng_pusher_chan_name(app, e->ch[i].p, e->ch[i].len,
						name);
		ssize_t n = nlen < 0 ? -EINVAL :
			    eng_pusher_skip_event(ev, cap, e->skip, e->name,
						  e->ch[i], e->data,
						  (struct json_slice){ 0 });

		t->left++;
		t->made++;
		if (n >= 0)	/* a cache channel's: kept ahead of the publish */
			eng_pusher_cache_put(s, name, (size_t)nlen, e->name,
					     e->ch[i], e->data);
		ret = n < 0 ? (int)n :
		      s->eng->broker->publish_fin(s, name, (size_t)nlen,
						  (const uint8_t *)ev,
						  (size_t)n, tally_end, t);
	}
	free(ev);
	if (ret < 0) {		/* the one not made */
		t->failed++;
		t->status = 503;
		t->left--;
	}
	return !ret;
}

/*
 * With "info": the answer's counts, this node's, appended to @t->ok
 * (grown as needed): {"NAME":{"user_count":U,"subscription_count":N},
 * ...} of @e's channels for an event (@whole), or {...} of a batch's
 * event; user_count for presence channels only, each as asked. With one
 * Redis, Redis's answer replaces it (ask_info). False: no memory.
 */
static bool info(struct tally *t, const struct pusher_app *app,
		 const struct pev *e, bool whole)
{
	size_t need = t->ok_len + 64 + e->nch * (json_escape_max(
		PUSHER_CHANNEL_MAX) + 80);
	char name[ENG_CHAN_MAX + 1], *o = realloc(t->ok, need);
	size_t n = t->ok_len;

	if (!o)
		return false;
	t->ok = o;
	for (unsigned i = 0; i < e->nch; i++) {
		int len = eng_pusher_chan_name(app, e->ch[i].p, e->ch[i].len,
					       name);
		unsigned cnt = len < 0 ? 0 :
			       eng_pusher_count_get(name, (size_t)len);
		bool users = e->users && e->ch[i].len >= 9 &&
			     !memcmp(e->ch[i].p, "presence-", 9);

		if (whole) {
			o[n++] = i ? ',' : '{';
			n += json_escape(o + n, e->ch[i].p, e->ch[i].len);
			o[n++] = ':';
		}
		o[n++] = '{';
		if (users)
			n += (size_t)snprintf(o + n, need - n,
					      "\"user_count\":%u",
					      len < 0 ? 0 : eng_pusher_user_count(
						      name, (size_t)len));
		if (e->subs)
			n += (size_t)snprintf(o + n, need - n,
					      "%s\"subscription_count\":%u",
					      users ? "," : "", cnt);
		o[n++] = '}';
	}
	if (whole)
		o[n++] = '}';
	t->ok_len = n;
	return true;
}

/*
 * What one channel's info asks of Redis (eng_lua_pinfo): a flag, N
 * nothing, S subscription_count, U user_count, B both, then the name.
 */
struct info_ask {
	unsigned n;
	char *v[INFO_MAX];
	size_t len[INFO_MAX];
};

/* @e's channels (each asking nothing when @e asks no info) into @a. */
static bool ask_add(struct info_ask *a, const struct pev *e)
{
	char flag = !e->counts ? 'N' : e->subs && e->users ? 'B' :
		    e->subs ? 'S' : 'U';

	for (unsigned i = 0; i < e->nch; i++) {
		char *v = a->n < INFO_MAX ? malloc(1 + e->ch[i].len) : NULL;

		if (!v)
			return false;
		v[0] = flag;
		memcpy(v + 1, e->ch[i].p, e->ch[i].len);
		a->len[a->n] = 1 + e->ch[i].len;
		a->v[a->n++] = v;
	}
	return true;
}

/* Redis's info in place of this node's, then the tally's hold let go. */
static void info_done(struct eng_shard *s, struct eng_rreq *p)
{
	struct tally *t = p->arg;

	if (p->result >= 0 && p->blob) {	/* else this node's stays */
		free(t->ok);
		t->ok = malloc(p->blob_len);
		t->ok_len = t->ok ? p->blob_len : 0;
		if (t->ok)
			memcpy(t->ok, p->blob, p->blob_len);
	}
	tally_end(s, t, 0);
}

/*
 * With one Redis, the info of @a read there (every live node's counts)
 * for @t's answer, in the @form of an event ('e') or a batch ('b');
 * asked before the publishes, so answered before them. Frees @a's.
 */
static void ask_info(struct eng_shard *s, struct eng_conn *c,
		     struct tally *t, const struct pusher_app *app,
		     struct info_ask *a, const char *form)
{
	const char *argv[2 + INFO_MAX] = { app->id, form };
	size_t lens[2 + INFO_MAX] = { app->id_len, 1 };
	struct eng_rreq *p;

	memcpy(argv + 2, a->v, a->n * sizeof(*argv));
	memcpy(lens + 2, a->len, a->n * sizeof(*lens));
	p = eng_rreq_pusher(s->eng, ENG_PS_INFO, 2 + (int)a->n, argv, lens);
	if (p) {
		p->arg = t;
		p->done = info_done;
		t->left++;
		eng_rreq_send(s, c, p);
	}
	for (unsigned i = 0; i < a->n; i++)
		free(a->v[i]);
	a->n = 0;
}

/* Appends @s to @t->ok; false: no memory. */
static bool ok_add(struct tally *t, const char *s)
{
	size_t len = strlen(s);
	char *o = realloc(t->ok, t->ok_len + len);

	if (!o)
		return false;
	memcpy(o + t->ok_len, s, len);
	t->ok = o;
	t->ok_len += len;
	return true;
}

/* POST /apps/{id}/events, its signature checked: the body published. */
static void events(struct eng_shard *s, struct eng_conn *c,
		   const struct pusher_app *app, const uint8_t *body,
		   size_t len)
{
	struct pev *e = malloc(sizeof(*e));
	const char *why = "out of memory";
	int status = e ? read_event(s, (const char *)body, len, e, &why) : 503;
	struct tally *t = status ? NULL : tally_new(s, c);

	if (status || !t) {
		reply(s, c, status ? status : 503, why);
	} else if (e->counts &&
		   !(ok_add(t, "{\"channels\":") && info(t, app, e, true) &&
		     ok_add(t, "}\n"))) {
		t->made = 1;		/* told as one not published */
		tally_end(s, t, -ENOMEM);
	} else {
		if (e->counts && eng_pusher_counts_across()) {
			struct info_ask a = { 0 };

			if (ask_add(&a, e))
				ask_info(s, c, t, app, &a, "e");
			for (unsigned i = 0; i < a.n; i++)
				free(a.v[i]);
		}
		publish(s, t, app, e);
		tally_end(s, t, 0);	/* the hold let go */
	}
	free(e);
}

/*
 * POST /apps/{id}/batch_events, {"batch":[event, ...]}: up to 10 events,
 * each with "channel"; all are checked before any is published.
 */
static void batch(struct eng_shard *s, struct eng_conn *c,
		  const struct pusher_app *app, const uint8_t *body,
		  size_t len)
{
	struct json_member m = { .key = "batch" };
	struct json_slice v[BATCH_MAX];
	const char *why = "batch: an array of 1 to 10 events";
	char *copy = malloc(len + 1);
	struct pev *e = malloc(sizeof(*e));
	struct info_ask a = { 0 };
	struct tally *t = NULL;
	int n = -1, status = 400;
	bool any = false;	/* an event asks for info */

	/* the parser is used again for each event: the array stays here */
	if (copy && e &&
	    !json_get_members(s->json, (const char *)body, len, &m, 1) &&
	    m.type == JSON_ARRAY) {
		memcpy(copy, m.raw.p, m.raw.len);
		n = items((struct json_slice){ copy, m.raw.len }, v, BATCH_MAX);
	}
	if (!copy || !e)
		status = 503, why = "out of memory";
	if (n > 0)
		status = 0;
	for (int i = 0; !status && i < n; i++) {	/* every one checked first */
		status = read_event(s, v[i].p, v[i].len, e, &why);
		any |= !status && e->counts;
	}
	if (!status && !(t = tally_new(s, c)))
		status = 503, why = "out of memory";
	if (status)
		reply(s, c, status, why);
	for (int i = 0; t && any && i < n && eng_pusher_counts_across(); i++) {
		/* every event's info asked of Redis first, in order */
		if (read_event(s, v[i].p, v[i].len, e, &why) || !ask_add(&a, e)) {
			for (unsigned k = 0; k < a.n; k++)
				free(a.v[k]);
			a.n = 0;
			break;
		}
		if (i == n - 1)
			ask_info(s, c, t, app, &a, "b");
	}
	for (int i = 0; t && i < n; i++) {	/* then read again, sent */
		if (read_event(s, v[i].p, v[i].len, e, &why)) {
			t->failed++;	/* read once already: cannot be */
			t->status = 503;
			break;
		}
		if (any && !(ok_add(t, i ? "," : "{\"batch\":[") &&
			     (e->counts ? info(t, app, e, false) :
			      ok_add(t, "{}")))) {
			t->failed++;	/* no answer to make: told as failed */
			t->status = 503;
			break;
		}
		if (!publish(s, t, app, e))
			break;
	}
	if (t && any && !t->failed && !ok_add(t, "]}\n")) {
		t->failed++;
		t->status = 503;
	}
	if (t)
		tally_end(s, t, 0);
	free(copy);
	free(e);
}

int eng_pusher_user_key(const struct pusher_app *app, const char *uid,
			size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	int n = snprintf(out, ENG_CHAN_MAX + 1, "%cu:%s:", ENG_PUSHER_MARK,
			 app->id);

	if (!len || n + 40 > ENG_CHAN_MAX ||
	    !EVP_Digest(uid, len, md, &mdlen, EVP_sha256(), NULL))
		return -EINVAL;
	for (unsigned i = 0; i < 20; i++)
		snprintf(out + n + 2 * i, 3, "%02x", md[i]);
	return n + 40;
}

static int hexval(char ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' :
	       ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
	       ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* @in percent-decoded ('+' a space) into @out (@cap); length or -1. */
static ssize_t decode(struct json_slice in, char *out, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < in.len; i++, n++) {
		char ch = in.p[i];

		if (n == cap)
			return -1;
		if (ch == '%') {
			int hi = i + 2 < in.len ? hexval(in.p[i + 1]) : -1;
			int lo = hi < 0 ? -1 : hexval(in.p[i + 2]);

			if (lo < 0)
				return -1;
			ch = (char)(hi << 4 | lo);
			i += 2;
		}
		out[n] = ch == '+' ? ' ' : ch;
	}
	return (ssize_t)n;
}

/*
 * Reads a GET query's filter_by_prefix and info (a comma list) into @q
 * (the signature already checked it whole). False: malformed.
 */
static bool read_query(struct json_slice query, struct eng_pusher_query *q)
{
	const char *p = query.p, *end = query.p + query.len;
	char info[128];

	memset(q, 0, sizeof(*q));
	q->prefix.p = q->buf;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p)), *eq;
		const char *stop = amp ? amp : end;
		struct json_slice v;
		ssize_t n;

		eq = memchr(p, '=', (size_t)(stop - p));
		v = eq ? (struct json_slice){ eq + 1, (size_t)(stop - eq - 1) } :
			 (struct json_slice){ stop, 0 };
		if (eq && eq - p == 16 && !memcmp(p, "filter_by_prefix", 16)) {
			n = decode(v, q->buf, sizeof(q->buf));
			if (n < 0)
				return false;
			q->prefix.len = (size_t)n;
		} else if (eq && eq - p == 4 && !memcmp(p, "info", 4)) {
			n = decode(v, info, sizeof(info) - 1);
			if (n < 0)
				return false;
			info[n] = '\0';
			for (char *sv, *t = strtok_r(info, ",", &sv); t;
			     t = strtok_r(NULL, ",", &sv))
				if (!strcmp(t, "subscription_count"))
					q->subscription_count = true;
				else if (!strcmp(t, "user_count"))
					q->user_count = true;
		}
		p = stop + 1;
	}
	return true;
}

/* What a request to /apps/{id}@rest[0..@len) is; 0: none served. */
enum { R_NONE, R_EVENTS, R_BATCH, R_CHANNELS, R_CHANNEL, R_TERMINATE,
       R_USERS };

static int route(const char *rest, size_t len, struct json_slice *ch)
{
	if (len == 7 && !memcmp(rest, "/events", 7))
		return R_EVENTS;
	if (len == 13 && !memcmp(rest, "/batch_events", 13))
		return R_BATCH;
	if (len == 9 && !memcmp(rest, "/channels", 9))
		return R_CHANNELS;
	if (len > 10 + 6 && !memcmp(rest, "/channels/", 10) &&
	    !memcmp(rest + len - 6, "/users", 6) &&
	    !memchr(rest + 10, '/', len - 10 - 6)) {
		*ch = (struct json_slice){ rest + 10, len - 10 - 6 };
		return R_USERS;
	}
	if (len > 10 && !memcmp(rest, "/channels/", 10) &&
	    !memchr(rest + 10, '/', len - 10)) {
		*ch = (struct json_slice){ rest + 10, len - 10 };
		return R_CHANNEL;
	}
	if (len > 7 + 22 && !memcmp(rest, "/users/", 7) &&
	    !memcmp(rest + len - 22, "/terminate_connections", 22) &&
	    !memchr(rest + 7, '/', len - 7 - 22)) {
		*ch = (struct json_slice){ rest + 7, len - 7 - 22 };
		return R_TERMINATE;
	}
	return R_NONE;
}

/*
 * POST .../users/{@uid}/terminate_connections: a frame skipping
 * ENG_PUSHER_TERMINATE published to the user's channel, on every node,
 * which closes each connection signed in as @uid (pusher.c); {} once
 * published.
 */
static void terminate(struct eng_shard *s, struct eng_conn *c,
		      const struct pusher_app *app, struct json_slice uid)
{
	static const char ev[] = ENG_FRAME_SKIP ENG_PUSHER_TERMINATE
				 "\",\"event\":\"terminate\"}";
	char id[PUSHER_CHANNEL_MAX], key[ENG_CHAN_MAX + 1];
	ssize_t n = decode(uid, id, sizeof(id));
	int klen = n > 0 ? eng_pusher_user_key(app, id, (size_t)n, key) : -1;
	struct tally *t = klen < 0 ? NULL : tally_new(s, c);

	if (klen < 0 || !t) {
		reply(s, c, klen < 0 ? 400 : 503, klen < 0 ? "invalid user id" :
		      "out of memory");
		return;
	}
	t->left++;
	t->made++;
	if (s->eng->broker->publish_fin(s, key, (size_t)klen,
					(const uint8_t *)ev, sizeof(ev) - 1,
					tally_end, t) < 0)
		tally_end(s, t, -ENOMEM);
	tally_end(s, t, 0);	/* the hold let go */
}

/*
 * GET .../channels/{@ch}/users: a presence channel's users, on every
 * node with one Redis; 400 for another kind of channel.
 */
static void users(struct eng_shard *s, struct eng_conn *c,
		  const struct pusher_app *app, struct json_slice ch)
{
	char name[ENG_CHAN_MAX + 1];
	int len = pusher_channel_kind(ch.p, ch.len) < 0 ? -EINVAL :
		  eng_pusher_chan_name(app, ch.p, ch.len, name);

	if (len < 0)
		reply(s, c, 400, "invalid channel name");
	else if (ch.len < 9 || memcmp(ch.p, "presence-", 9))
		reply(s, c, 400, "users are for presence channels only");
	else
		eng_pusher_users(s, c, name, (size_t)len);
}

/* The signed request @ar, routed @r, answered. */
static void serve(struct eng_shard *s, struct eng_conn *c,
		  const struct pusher_app *app,
		  const struct pusher_api_req *ar, int r, struct json_slice ch)
{
	struct eng_pusher_query q;
	const uint8_t *body = (const uint8_t *)ar->body.p;

	if (r == R_TERMINATE)
		terminate(s, c, app, ch);
	else if (r == R_USERS)
		users(s, c, app, ch);
	else if (r == R_EVENTS)
		events(s, c, app, body, ar->body.len);
	else if (r == R_BATCH)
		batch(s, c, app, body, ar->body.len);
	else if (!read_query(ar->query, &q))
		reply(s, c, 400, "malformed query");
	else if (r == R_CHANNELS)
		eng_pusher_channels(s, c, app, &q);
	else
		eng_pusher_channel(s, c, app, ch, &q);
}

void eng_pusher_api(struct eng_shard *s, struct eng_conn *c,
		    const struct hs_req *req, const uint8_t *body, size_t len)
{
	const struct eng_pusher_cfg *pc = s->eng->cfg.pusher;
	const struct pusher_app *app;
	struct pusher_api_req ar;
	struct json_slice ch = { 0 };
	const char *p = req->path.p + 6, *slash, *why = "unauthorized";
	const char *method = "POST";
	size_t rest = req->path.len - 6;
	int ret, r;

	slash = memchr(p, '/', rest);
	app = pc && slash ? pusher_app_by_id(&pc->apps, p, (size_t)(slash - p))
			  : NULL;
	if (!app) {
		reply(s, c, 404, "no such app");
		return;
	}
	rest -= (size_t)(slash - p);
	r = route(slash, rest, &ch);
	if (r == R_NONE) {
		reply(s, c, 404, "not served: see docs/PUSHER.md");
		return;
	}
	if (r == R_CHANNELS || r == R_CHANNEL || r == R_USERS)
		method = "GET";
	if (req->method.len != strlen(method) ||
	    memcmp(req->method.p, method, req->method.len)) {
		eng_conn_http_reply(s, c, 405, *method == 'G' ?
				    "Allow: GET\r\n" :
				    "Allow: POST\r\n", NULL, NULL, 0);
		return;
	}
	ar = (struct pusher_api_req){
		.method = { req->method.p, req->method.len },
		.path = { req->path.p, req->path.len },
		.query = { req->query.p, req->query.len },
		.body = { (const char *)body, len },
	};
	ret = pusher_api_check(app, &ar, (int64_t)time(NULL), &why);
	if (ret == -EACCES)
		reply(s, c, 401, why);
	else if (ret == -EBADMSG || ret == -E2BIG)
		reply(s, c, 400, ret == -E2BIG ? "query too long" : why);
	else if (ret < 0)
		reply(s, c, 503, "out of memory");
	else
		serve(s, c, app, &ar, r, ch);
}
