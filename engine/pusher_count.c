/* SPDX-License-Identifier: MIT */
/*
 * pusher_count.c: how many Pusher connections of this node subscribe to
 * each Pusher channel (pusher_eng.h), counted by pusher.c as they
 * subscribe, unsubscribe and close, and what the HTTP API's queries read
 * of it: GET /apps/{id}/channels and /channels/{name}. One table for the
 * node under a mutex, as for presence members: subscribing is rare beside
 * the fan-out, and a query must see every shard's subscribers at once.
 * With one Redis the table is also written to Redis by shard 0's tick,
 * the changes of a tick in one script (eng_lua_pcount), which counts
 * every node's and says which channel became occupied or vacated; the
 * queries then read Redis (pusher_query.c). On the embedded broker (and
 * a cluster, so far, per node) the webhooks' transitions are this
 * table's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "conn.h"
#include "frame.h"
#include "hs.h"
#include "pub.h"
#include "pusher_eng.h"
#include "rreq.h"
#include "webhook.h"

#define BUCKETS		1024	/* a power of two */
#define LIST_MAX	(256 * 1024)	/* bytes of a GET channels answer */
#define COUNT_TICKS	(1000 / ENG_TICK_MS)	/* a count sent at most so often */
#define SYNC_TICKS	(500 / ENG_TICK_MS)	/* Redis asked at least so often */
#define SYNC_MAX	256	/* channels one count script writes */
#define NATIVE_APP	"/ws"	/* the app of /ws channels in Redis: no
				   Pusher app id has a '/' */

struct count {
	struct count *next;
	uint64_t hash;
	uint32_t n;			/* subscriptions on this node */
	uint32_t sent_tick;		/* shard 0's tick of the last count sent */
	uint32_t synced, sending;	/* Redis: n as written, being written */
	uint32_t peak;			/* Redis: the most since written */
	bool announce, due, sent;	/* sub_count: the app's; a change unsent */
	bool flying;			/* Redis: in the script out now */
	bool native;			/* a /ws channel: n 1 while this node
					   has subscribers (NATIVE_APP) */
	uint8_t len, clen;
	char name[ENG_CHAN_MAX + 1];	/* the engine's: "!p:ID:..." */
	char ch[PUSHER_CHANNEL_MAX + 1];	/* Pusher's */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct count *table[BUCKETS];
static unsigned ndue;		/* entries with due set */
static bool across;		/* one Redis: the counts are written there */
static bool syncing;		/* shard 0: a count script is out */
static bool resync;		/* Redis lost ours: write them all again */
static unsigned changes;	/* since the last script */
static uint32_t synced_tick;

static void native_count(const char *name, size_t len, bool on);

void eng_pusher_count_init(struct eng *e)
{
	/* nothing to count or to take without Pusher apps or a webhook */
	across = e->redis == &eng_rreq_single && (e->cfg.pusher ||
						   e->cfg.webhook);
	/* the /ws channels are counted only for --webhook's sake */
	if (across && e->cfg.webhook && e->cfg.webhook->url)
		e->occupancy = native_count;
}

bool eng_pusher_counts_across(void)
{
	return across;
}

size_t eng_pusher_app_of(const char *name, size_t len, const char **id)
{
	const char *colon = len > 3 ? memchr(name + 3, ':', len - 3) : NULL;

	*id = name + 3;
	return colon ? (size_t)(colon - name - 3) : 0;
}

/* The app @e counts for in Redis: its id, or NATIVE_APP; its length. */
static size_t app_id(const struct count *e, const char **id)
{
	if (e->native) {
		*id = NATIVE_APP;
		return sizeof(NATIVE_APP) - 1;
	}
	return eng_pusher_app_of(e->name, e->len, id);
}

/* channel_occupied or channel_vacated of @e, seen by this node's table. */
static void local_hook(const struct count *e, const char *what, long long n)
{
	const char *id;
	size_t idl = eng_pusher_app_of(e->name, e->len, &id);

	eng_webhook_pusher_id(id, idl, &(struct eng_webhook_ev){
		.name = what, .channel = { e->ch, e->clen }, .count = n });
}

static struct count **slot_of(const char *name, size_t len, uint64_t h)
{
	struct count **pp = &table[h & (BUCKETS - 1)];

	while (*pp && ((*pp)->len != len || memcmp((*pp)->name, name, len)))
		pp = &(*pp)->next;
	return pp;
}

/*
 * @delta to @name's count; @quiet: a connection carried by a live
 * hand-over, which no webhook and no subscription_count tells.
 */
static unsigned change(const char *name, size_t len, struct json_slice ch,
		       int delta, bool announce, bool quiet)
{
	uint64_t h = eng_chan_hash(name, len);
	struct count **pp, *e;
	unsigned n = 0;

	if (len > ENG_CHAN_MAX || ch.len > PUSHER_CHANNEL_MAX)
		return 0;
	pthread_mutex_lock(&lock);
	pp = slot_of(name, len, h);
	e = *pp;
	if (!e && delta > 0 && (e = calloc(1, sizeof(*e)))) {
		e->hash = h;
		e->len = (uint8_t)len;
		memcpy(e->name, name, len);
		e->clen = (uint8_t)ch.len;
		memcpy(e->ch, ch.p, ch.len);
		e->announce = announce;
		*pp = e;
	}
	if (e) {
		uint32_t was = e->n;

		/* a leave not counted (no memory at its join) stops at 0 */
		e->n = delta < 0 && e->n < (uint32_t)-delta ? 0 : e->n + delta;
		n = e->n;
		if (across) {
			__atomic_add_fetch(&changes, 1, __ATOMIC_RELAXED);
			e->peak = n > e->peak ? n : e->peak;
		} else if (n != was && !quiet) {
			if (!was)
				local_hook(e, "channel_occupied", -1);
			else if (!n)
				local_hook(e, "channel_vacated", -1);
			local_hook(e, "subscription_count", n);
		}
		if (e->announce && !e->due && n && !quiet) {
			e->due = true;
			__atomic_add_fetch(&ndue, 1, __ATOMIC_RELAXED);
		}
		if (!n && !e->synced && !e->flying && !e->peak) {
			__atomic_sub_fetch(&ndue, e->due, __ATOMIC_RELAXED);
			*pp = e->next;
			free(e);
		}
	}
	pthread_mutex_unlock(&lock);
	return n;
}

unsigned eng_pusher_count_add(const char *name, size_t len,
			      struct json_slice ch, int delta, bool announce)
{
	return change(name, len, ch, delta, announce, false);
}

void eng_pusher_count_carry(const char *name, size_t len,
			    struct json_slice ch, int delta, bool announce)
{
	change(name, len, ch, delta, announce, true);
}

/*
 * eng->occupancy, with one Redis and --webhook: /ws channel @name (not a
 * user's, not Pusher's) got its first subscriber on this node (@on) or
 * lost its last (sub_redis.c). Counted as one, for the next count script,
 * whose records say when no node holds one.
 */
static void native_count(const char *name, size_t len, bool on)
{
	uint64_t h = eng_chan_hash(name, len);
	struct count **pp, *e;

	if (len > ENG_CHAN_MAX || len > PUSHER_CHANNEL_MAX)
		return;
	pthread_mutex_lock(&lock);
	pp = slot_of(name, len, h);
	e = *pp;
	if (!e && on && (e = calloc(1, sizeof(*e)))) {
		e->hash = h;
		e->len = (uint8_t)len;
		memcpy(e->name, name, len);
		e->clen = (uint8_t)len;
		memcpy(e->ch, name, len);
		e->native = true;
		*pp = e;
	}
	if (e && e->native) {
		e->n = on;
		e->peak = e->peak > e->n ? e->peak : e->n;
		__atomic_add_fetch(&changes, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&lock);
}

unsigned eng_pusher_count_get(const char *name, size_t len)
{
	struct count *e;
	unsigned n;

	pthread_mutex_lock(&lock);
	e = *slot_of(name, len, eng_chan_hash(name, len));
	n = e ? e->n : 0;
	pthread_mutex_unlock(&lock);
	return n;
}

size_t eng_pusher_count_ch(const char *name, size_t len, char *out)
{
	struct count *e;
	size_t n = 0;

	pthread_mutex_lock(&lock);
	e = *slot_of(name, len, eng_chan_hash(name, len));
	if (e) {
		n = e->clen;
		memcpy(out, e->ch, n);
	}
	pthread_mutex_unlock(&lock);
	return n;
}

/* pusher_internal:subscription_count of @e to its subscribers here. */
static void send_count(struct eng_shard *s, const struct count *e)
{
	char out[128 + 2 * 6 * PUSHER_CHANNEL_MAX];
	ssize_t n = pusher_enc_sub_count(out, sizeof(out),
					 (struct json_slice){ e->ch, e->clen },
					 e->n);
	struct eng_buf *f = n < 0 ? NULL :
			    eng_pub_frame(e->name, e->len, (const uint8_t *)out,
					  (size_t)n, true);

	if (f)		/* this node's subscribers only: its own count */
		eng_pub_inject(&s->mail, f);
}

/* ---- with one Redis: this node's counts written, webhooks taken ------ */

/* "NAME\0APP\0CH\0UID\0N" records (eng_lua_pcount's) into webhooks. */
static void records(char *blob, size_t len)
{
	static const char *const known[] = {
		"channel_occupied", "channel_vacated", "member_added",
		"member_removed", "subscription_count",
	};
	struct json_slice f[5];
	char *p = blob;

	while (len && eng_pusher_fields(&p, blob + len, f, 5)) {
		const char *name = NULL;

		for (unsigned i = 0; i < sizeof(known) / sizeof(*known); i++)
			if (strlen(known[i]) == f[0].len &&
			    !memcmp(known[i], f[0].p, f[0].len))
				name = known[i];
		if (!name && f[0].len > 5 && !memcmp(f[0].p, "user_", 5)) {
			eng_webhook_native(f[0].len == 11 ? "user_online" :
					   "user_offline", (struct json_slice){ 0 },
					   f[3]);
			continue;
		}
		if (!name)
			continue;
		if (f[1].len == sizeof(NATIVE_APP) - 1 &&
		    !memcmp(f[1].p, NATIVE_APP, f[1].len)) {
			if (name[0] == 'c')	/* channel_occupied, _vacated */
				eng_webhook_native(name, f[2],
						   (struct json_slice){ 0 });
			continue;
		}
		eng_webhook_pusher_id(f[1].p, f[1].len, &(struct eng_webhook_ev){
			.name = name, .channel = f[2],
			.user_id = f[3].len ? f[3] : (struct json_slice){ 0 },
			.count = f[4].len ? strtoll(f[4].p, NULL, 10) : -1 });
	}
}

/* The count script's answer, on shard 0. */
static void synced_done(struct eng_shard *s, struct eng_rreq *p)
{
	(void)s;
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < BUCKETS; i++)
		for (struct count **pp = &table[i], *e; (e = *pp);) {
			/*
			 * The script wrote this batch after finding our counts
			 * gone (result 1), so those are right; the others are
			 * Redis's no more and go again.
			 */
			if (e->flying && p->result >= 0)
				e->synced = e->sending;
			else if (p->result == 1)
				e->synced = 0;
			e->flying = false;
			if (!e->n && !e->synced && !e->peak) {
				__atomic_sub_fetch(&ndue, e->due,
						   __ATOMIC_RELAXED);
				*pp = e->next;
				free(e);
				continue;
			}
			pp = &e->next;
		}
	if (p->result == 1)
		resync = true;
	syncing = false;
	pthread_mutex_unlock(&lock);
	if (p->result >= 0 && p->blob)
		records(p->blob, p->blob_len);
}

/* "APP\0CH" of @e and count @n as a pair of @argv at *@argc, in @buf. */
static char *pair(const struct count *e, uint32_t n, const char **argv,
		  size_t *lens, int *argc, char *buf)
{
	const char *id;
	size_t idl = app_id(e, &id);

	argv[*argc] = buf;
	memcpy(buf, id, idl);
	buf[idl] = '\0';
	memcpy(buf + idl + 1, e->ch, e->clen);
	lens[(*argc)++] = idl + 1 + e->clen;
	buf += idl + 1 + e->clen;
	argv[*argc] = buf;
	lens[(*argc)++] = (size_t)sprintf(buf, "%u", n);
	return buf + lens[*argc - 1] + 1;
}

/*
 * With the lock: up to SYNC_MAX changed entries into @argv from 1 on. A
 * count that went higher since it was written goes as its peak first,
 * then as it is: a channel occupied and vacated within a tick is both.
 */
static int collect(const char **argv, size_t *lens, char *buf)
{
	int argc = 1;

	for (unsigned i = 0; i < BUCKETS && argc < 1 + 2 * SYNC_MAX; i++)
		for (struct count *e = table[i];
		     e && argc < 1 + 2 * SYNC_MAX; e = e->next) {
			const char *id;

			if ((e->n == e->synced && e->peak <= e->n) ||
			    !app_id(e, &id))
				continue;
			if (e->peak > e->n && e->peak > e->synced &&
			    argc + 4 <= 1 + 2 * SYNC_MAX)
				buf = pair(e, e->peak, argv, lens, &argc, buf);
			buf = pair(e, e->n, argv, lens, &argc, buf);
			e->peak = 0;
			e->sending = e->n;
			e->flying = true;
		}
	return argc;
}

/*
 * Shard 0, each tick with one Redis: the changed counts written, when
 * there are any, else every SYNC_TICKS to take the webhook records; one
 * script out at a time.
 */
static void sync_counts(struct eng_shard *s)
{
	const char *argv[1 + 2 * SYNC_MAX];
	size_t lens[1 + 2 * SYNC_MAX];
	struct eng_rreq *p = NULL;
	char *buf;
	int argc;

	if (syncing || (!__atomic_load_n(&changes, __ATOMIC_RELAXED) && !resync &&
			s->tick - synced_tick < SYNC_TICKS))
		return;
	buf = malloc(SYNC_MAX * (PUSHER_ID_MAX + PUSHER_CHANNEL_MAX + 16));
	if (!buf)
		return;
	argv[0] = s->eng->cfg.node_id;	/* after the keys' prefix (rreq.h) */
	lens[0] = strlen(argv[0]);
	pthread_mutex_lock(&lock);
	resync = false;	/* synced_done() has marked what goes again */
	changes = 0;
	argc = collect(argv, lens, buf);
	p = eng_rreq_pusher(s->eng, ENG_PS_COUNT, argc, argv, lens);
	syncing = p != NULL;
	if (!p)		/* no memory: those go again next tick */
		for (unsigned i = 0; i < BUCKETS; i++)
			for (struct count *e = table[i]; e; e = e->next)
				e->flying = false;
	pthread_mutex_unlock(&lock);
	free(buf);
	synced_tick = s->tick;
	if (p) {
		p->done = synced_done;
		eng_rreq_send_own(s, p);
	}
}

void eng_pusher_tick(struct eng_shard *s)
{
	if (!s->id && across)
		sync_counts(s);
	eng_pusher_reap_tick(s);
	if (s->id || !__atomic_load_n(&ndue, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < BUCKETS && ndue; i++)
		for (struct count *e = table[i]; e; e = e->next) {
			if (!e->due || (e->sent &&
					s->tick - e->sent_tick < COUNT_TICKS))
				continue;
			send_count(s, e);
			e->due = false;
			e->sent = true;
			e->sent_tick = s->tick;
			__atomic_sub_fetch(&ndue, 1, __ATOMIC_RELAXED);
		}
	pthread_mutex_unlock(&lock);
}

void eng_pusher_count_clear(void)
{
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < BUCKETS; i++)
		while (table[i]) {
			struct count *e = table[i];

			table[i] = e->next;
			free(e);
		}
	__atomic_store_n(&ndue, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&lock);
}

static void answer(struct eng_shard *s, struct eng_conn *c, int status,
		   const char *body, size_t len)
{
	eng_conn_http_reply(s, c, status, NULL, "application/json", body, len);
}

static void say(struct eng_shard *s, struct eng_conn *c, int status,
		const char *body)
{
	answer(s, c, status, body, strlen(body));
}

static const char no_users[] =
	"{\"error\":\"user_count is for presence channels only\"}\n";

static bool presence(const char *ch, size_t len)
{
	return len >= 9 && !memcmp(ch, "presence-", 9);
}

/* One channel's info object, as @q asks, at @out; its length. */
static size_t info_json(char *out, const struct eng_pusher_query *q,
			unsigned long long subs, unsigned long long users)
{
	size_t n = 1;

	out[0] = '{';
	if (q->user_count)
		n += (size_t)sprintf(out + n, "\"user_count\":%llu", users);
	if (q->subscription_count)
		n += (size_t)sprintf(out + n, "%s\"subscription_count\":%llu",
				     q->user_count ? "," : "", subs);
	out[n++] = '}';
	return n;
}

/* The start of a GET channels answer in @out (LIST_MAX bytes). */
static size_t list_open(char *out)
{
	memcpy(out, "{\"channels\":{", 13);
	return 13;
}

/* One more channel @ch of a listing at @out + *@n; false when full. */
static bool list_add(char *out, size_t *n, const struct eng_pusher_query *q,
		     const char *ch, size_t len, unsigned long long subs,
		     unsigned long long users)
{
	if (*n + json_escape_max(len) + 96 > LIST_MAX)
		return false;
	if (out[*n - 1] != '{')
		out[(*n)++] = ',';
	*n += json_escape(out + *n, ch, len);
	out[(*n)++] = ':';
	*n += info_json(out + *n, q, subs, users);
	return true;
}

static void list_close(struct eng_shard *s, struct eng_conn *c, char *out,
		       size_t n, bool ok)
{
	if (!ok || n + 4 > LIST_MAX) {
		say(s, c, 503, "{\"error\":\"answer too large\"}\n");
		return;
	}
	memcpy(out + n, "}}\n", 3);
	answer(s, c, 200, out, n + 3);
}

/*
 * The listing of app @app's occupied channels on this node whose Pusher
 * name begins with @q->prefix, into @out; false past LIST_MAX.
 */
static bool list(const struct pusher_app *app,
		 const struct eng_pusher_query *q, char *out, size_t *n)
{
	size_t idl = app->id_len;
	bool ok = true;

	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < BUCKETS && ok; i++)
		for (struct count *e = table[i]; e && ok; e = e->next) {
			/* "!p:" or "!h:", the id, ':' */
			if (!e->n || e->native || e->len < idl + 4 ||
			    memcmp(e->name + 3, app->id, idl) ||
			    e->name[3 + idl] != ':' || e->clen < q->prefix.len ||
			    memcmp(e->ch, q->prefix.p, q->prefix.len))
				continue;
			ok = list_add(out, n, q, e->ch, e->clen, e->n,
				      q->user_count ?
				      eng_pusher_user_count(e->name, e->len) : 0);
		}
	pthread_mutex_unlock(&lock);
	return ok;
}

/* GET channels' and channels/{name}'s answers from Redis (eng_lua_pchans). */
static void queried(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_conn *c = &s->conns[p->slot];
	struct eng_pusher_query q = {
		.subscription_count = p->r2 & 1, .user_count = p->r2 & 2,
	};
	struct json_slice f[3];
	char *out = NULL, *b = p->blob;
	size_t n = 0;
	bool ok = true;

	if (c->gen != p->gen || !eng_conn_alive(c))
		return;
	c->flags &= ~ENG_CONN_F_WAIT;
	if (p->result < 0 || !b || !(out = malloc(LIST_MAX))) {
		say(s, c, 503, "{\"error\":\"redis could not be asked\"}\n");
		goto out;
	}
	if (!(p->r2 & 4))
		n = list_open(out);
	while (p->blob_len && ok &&
	       eng_pusher_fields(&b, p->blob + p->blob_len, f, 3)) {
		if (p->r2 & 4) {	/* one channel */
			unsigned long long subs = strtoull(f[1].p, NULL, 10);
			char body[160];
			int w = sprintf(body, "{\"occupied\":%s",
					subs ? "true" : "false");

			if (q.user_count || q.subscription_count) {
				int at = w;	/* its '{' becomes ',' */

				w += (int)info_json(body + w, &q, subs,
						    strtoull(f[2].p, NULL, 10));
				body[at] = ',';
			} else {
				body[w++] = '}';
			}
			body[w++] = '\n';
			answer(s, c, 200, body, (size_t)w);
			goto out;
		}
		ok = list_add(out, &n, &q, f[0].p, f[0].len,
			      strtoull(f[1].p, NULL, 10),
			      strtoull(f[2].p, NULL, 10));
	}
	if (p->r2 & 4)
		say(s, c, 503, "{\"error\":\"redis answered nothing\"}\n");
	else
		list_close(s, c, out, n, ok);
out:
	free(out);
	eng_conn_resume(s, c);
}

/* The query @q of app @app (@ch: one channel, else a listing) to Redis. */
static void ask_redis(struct eng_shard *s, struct eng_conn *c,
		      const struct pusher_app *app, const struct json_slice *ch,
		      const struct eng_pusher_query *q)
{
	const char *argv[3] = { app->id, ch ? "1" : "0",
				ch ? ch->p : q->prefix.p };
	size_t lens[3] = { app->id_len, 1, ch ? ch->len : q->prefix.len };
	struct eng_rreq *p = eng_rreq_pusher(s->eng, ENG_PS_CHANS, 3, argv,
					     lens);

	if (!p) {
		say(s, c, 503, "{\"error\":\"out of memory\"}\n");
		return;
	}
	p->r2 = (q->subscription_count ? 1 : 0) | (q->user_count ? 2 : 0) |
		(ch ? 4 : 0);
	p->done = queried;
	eng_rreq_send(s, c, p);
}

void eng_pusher_channels(struct eng_shard *s, struct eng_conn *c,
			 const struct pusher_app *app,
			 const struct eng_pusher_query *q)
{
	char *out;
	size_t n;
	bool ok;

	if (q->user_count && !presence(q->prefix.p, q->prefix.len)) {
		say(s, c, 400, no_users);
		return;
	}
	if (across) {
		ask_redis(s, c, app, NULL, q);
		return;
	}
	out = malloc(LIST_MAX);
	if (!out) {
		say(s, c, 503, "{\"error\":\"out of memory\"}\n");
		return;
	}
	n = list_open(out);
	ok = list(app, q, out, &n);
	list_close(s, c, out, n, ok);
	free(out);
}

void eng_pusher_channel(struct eng_shard *s, struct eng_conn *c,
			const struct pusher_app *app, struct json_slice ch,
			const struct eng_pusher_query *q)
{
	char name[ENG_CHAN_MAX + 1], body[160];
	int len, kind = pusher_channel_kind(ch.p, ch.len), w;
	unsigned n;

	len = kind < 0 ? -EINVAL : eng_pusher_chan_name(app, ch.p, ch.len,
							  name);
	if (len < 0) {
		say(s, c, 400, "{\"error\":\"invalid channel name\"}\n");
		return;
	}
	if (q->user_count && !presence(ch.p, ch.len)) {
		say(s, c, 400, no_users);
		return;
	}
	if (across) {
		ask_redis(s, c, app, &ch, q);
		return;
	}
	n = eng_pusher_count_get(name, (size_t)len);
	w = sprintf(body, "{\"occupied\":%s", n ? "true" : "false");
	if (q->user_count || q->subscription_count) {
		int at = w;	/* its '{' becomes ',' */

		w += (int)info_json(body + w, q, n,
				    eng_pusher_user_count(name, (size_t)len));
		body[at] = ',';
	} else {
		body[w++] = '}';
	}
	body[w++] = '\n';
	answer(s, c, 200, body, (size_t)w);
}
