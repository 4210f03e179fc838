/* SPDX-License-Identifier: MIT */
/*
 * pusher_count.c: how many Pusher connections of this node subscribe to
 * each Pusher channel (pusher_eng.h), counted by pusher.c as they
 * subscribe, unsubscribe and close, and what the HTTP API's queries read
 * of it: GET /apps/{id}/channels and /channels/{name}. One table for the
 * node under a mutex, as for presence members: subscribing is rare beside
 * the fan-out, and a query must see every shard's subscribers at once.
 * With Redis each node counts its own only (docs/PUSHER.md).
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

#define BUCKETS		1024	/* a power of two */
#define LIST_MAX	(256 * 1024)	/* bytes of a GET channels answer */
#define COUNT_TICKS	(1000 / ENG_TICK_MS)	/* a count sent at most so often */

struct count {
	struct count *next;
	uint64_t hash;
	uint32_t n;			/* subscriptions on this node */
	uint32_t sent_tick;		/* shard 0's tick of the last count sent */
	bool announce, due, sent;	/* sub_count: the app's; a change unsent */
	uint8_t len, clen;
	char name[ENG_CHAN_MAX + 1];	/* the engine's: "!p:ID:..." */
	char ch[PUSHER_CHANNEL_MAX + 1];	/* Pusher's */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct count *table[BUCKETS];
static unsigned ndue;		/* entries with due set */

static struct count **slot_of(const char *name, size_t len, uint64_t h)
{
	struct count **pp = &table[h & (BUCKETS - 1)];

	while (*pp && ((*pp)->len != len || memcmp((*pp)->name, name, len)))
		pp = &(*pp)->next;
	return pp;
}

unsigned eng_pusher_count_add(const char *name, size_t len,
			      struct json_slice ch, int delta, bool announce)
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
		/* a leave not counted (no memory at its join) stops at 0 */
		e->n = delta < 0 && e->n < (uint32_t)-delta ? 0 : e->n + delta;
		n = e->n;
		if (e->announce && !e->due && n) {
			e->due = true;
			__atomic_add_fetch(&ndue, 1, __ATOMIC_RELAXED);
		}
		if (!n) {
			__atomic_sub_fetch(&ndue, e->due, __ATOMIC_RELAXED);
			*pp = e->next;
			free(e);
		}
	}
	pthread_mutex_unlock(&lock);
	return n;
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

void eng_pusher_tick(struct eng_shard *s)
{
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
	"{\"error\":\"info=user_count is not served (yet)\"}\n";

/*
 * {"channels":{"NAME":{} or {"subscription_count":N}, ...}}: app @app's
 * occupied channels whose Pusher name begins with @prefix, into @out.
 * Returns its length, or -E2BIG past @cap.
 */
static ssize_t list(const struct pusher_app *app, struct json_slice prefix,
		    bool counts, char *out, size_t cap)
{
	size_t n = 0, idl = app->id_len;
	ssize_t ret = 0;
	int w;

	w = snprintf(out, cap, "{\"channels\":{");
	n = (size_t)w;
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < BUCKETS && !ret; i++)
		for (struct count *e = table[i]; e && !ret; e = e->next) {
			/* "!p:" or "!h:", the id, ':' */
			if (e->len < idl + 4 || memcmp(e->name + 3, app->id, idl) ||
			    e->name[3 + idl] != ':' || e->clen < prefix.len ||
			    memcmp(e->ch, prefix.p, prefix.len))
				continue;
			if (n + json_escape_max(e->clen) + 64 > cap) {
				ret = -E2BIG;
				break;
			}
			if (out[n - 1] != '{')
				out[n++] = ',';
			n += json_escape(out + n, e->ch, e->clen);
			w = counts ? snprintf(out + n, cap - n,
					      ":{\"subscription_count\":%u}",
					      e->n) :
				     snprintf(out + n, cap - n, ":{}");
			n += (size_t)w;
		}
	pthread_mutex_unlock(&lock);
	if (ret || n + 4 > cap)
		return -E2BIG;
	memcpy(out + n, "}}\n", 3);
	return (ssize_t)(n + 3);
}

void eng_pusher_channels(struct eng_shard *s, struct eng_conn *c,
			 const struct pusher_app *app,
			 const struct eng_pusher_query *q)
{
	char *out;
	ssize_t n;

	if (q->user_count) {
		say(s, c, 400, no_users);
		return;
	}
	out = malloc(LIST_MAX);
	n = out ? list(app, q->prefix, q->subscription_count, out, LIST_MAX) :
		  -ENOMEM;
	if (n < 0)
		say(s, c, 503, "{\"error\":\"answer too large\"}\n");
	else
		answer(s, c, 200, out, (size_t)n);
	free(out);
}

void eng_pusher_channel(struct eng_shard *s, struct eng_conn *c,
			const struct pusher_app *app, struct json_slice ch,
			const struct eng_pusher_query *q)
{
	char name[ENG_CHAN_MAX + 1], body[128];
	int len, kind = pusher_channel_kind(ch.p, ch.len), w;
	unsigned n;

	len = kind < 0 ? -EINVAL : eng_pusher_chan_name(app, ch.p, ch.len,
							  name);
	if (len < 0) {
		say(s, c, 400, "{\"error\":\"invalid channel name\"}\n");
		return;
	}
	if (q->user_count) {
		say(s, c, 400, no_users);
		return;
	}
	n = eng_pusher_count_get(name, (size_t)len);
	w = q->subscription_count ?
	    snprintf(body, sizeof(body), "{\"occupied\":%s,"
		     "\"subscription_count\":%u}\n", n ? "true" : "false", n) :
	    snprintf(body, sizeof(body), "{\"occupied\":%s}\n",
		     n ? "true" : "false");
	answer(s, c, 200, body, (size_t)w);
}
