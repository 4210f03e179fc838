/* SPDX-License-Identifier: MIT */
/*
 * pusher_cache.c: the last event of Pusher cache channels (cache-,
 * private-cache-, private-encrypted-cache-, presence-cache-), replayed to
 * each new subscriber after its subscription_succeeded, or
 * pusher:cache_miss when there is none (pusher_eng.h). An event the HTTP
 * API publishes is kept for --pusher-cache-ttl, 30 minutes as on Pusher.
 * With Redis it is a key of its own, {keys}pcache:{engine channel} with
 * {keys} the channel's key prefix (eng_rreq_keys: on a Redis Cluster
 * its channel's slot, where a presence channel's members are too), written
 * before the event's PUBLISH on the same link, so every node reads the
 * same, and a presence subscriber's read comes behind its join's member
 * list; otherwise this node's table below, under a mutex, at most
 * ENG_PUSHER_CACHE_BYTES.
 *
 * Why not the engine's history (hist.h) at depth 1: it keeps /ws push
 * frames stamped with an epoch and an offset, in namespaces the operator
 * configures, and answers /ws history replies; a Pusher event is a frame
 * of another shape, and a subscriber wants it as it was published.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "conn.h"
#include "mail.h"
#include "pusher_eng.h"
#include "rreq.h"
#include "timer.h"
#include "webhook.h"

#define BUCKETS		4096	/* the table's hash chains */

/* One channel's last event in this node's table. */
struct entry {
	struct entry *hnext;		/* its bucket's chain */
	struct entry *older, *newer;	/* by when it was put */
	struct eng_buf *frame;		/* sealed; one reference ours */
	uint64_t due_ms;		/* CLOCK_MONOTONIC ms it expires at */
	size_t bytes;			/* counted against the budget */
	uint64_t hash;
	size_t len;
	char name[];			/* the engine channel */
};

/*
 * The table: every entry lives the same TTL (one option for the
 * process), so the list by put time is also the list by expiry, and its
 * oldest is the first to go either way.
 */
static struct {
	pthread_mutex_t lock;
	struct entry *bucket[BUCKETS];
	struct entry *oldest, *newest;
	size_t bytes;			/* of every entry, frames included */
	unsigned n;
} tab = { .lock = PTHREAD_MUTEX_INITIALIZER };

/*
 * Whether the cache is Redis's: with any Redis, one or a cluster (a
 * presence channel's read comes behind the member list its join's
 * answer brings: the same slot, the same link).
 */
static bool in_redis(const struct eng_shard *s)
{
	return s->eng->redis;
}

static uint64_t now_ms(void)
{
	return eng_now_ns() / 1000000;
}

static struct entry **slot_of(const char *name, size_t len, uint64_t hash)
{
	struct entry **pp = &tab.bucket[hash % BUCKETS];

	while (*pp && ((*pp)->hash != hash || (*pp)->len != len ||
		       memcmp((*pp)->name, name, len)))
		pp = &(*pp)->hnext;
	return pp;
}

/* Unlinks and frees @e; the lock is held. */
static void drop(struct entry *e)
{
	struct entry **pp = slot_of(e->name, e->len, e->hash);

	*pp = e->hnext;
	*(e->older ? &e->older->newer : &tab.oldest) = e->newer;
	*(e->newer ? &e->newer->older : &tab.newest) = e->older;
	tab.bytes -= e->bytes;
	tab.n--;
	eng_buf_put(e->frame);
	free(e);
}

/* Drops what expired, then the oldest while @extra bytes do not fit. */
static void trim(size_t extra)
{
	uint64_t now = now_ms();

	while (tab.oldest && (tab.oldest->due_ms <= now ||
			      tab.bytes + extra > ENG_PUSHER_CACHE_BYTES))
		drop(tab.oldest);
}

/* The table's side of a put: @f (taken over) replaces what @name kept. */
static void table_put(const char *name, size_t len, struct eng_buf *f,
		      unsigned ttl_ms)
{
	uint64_t hash = eng_chan_hash(name, len);
	size_t bytes = sizeof(struct entry) + len + sizeof(*f) + f->cap;
	struct entry *e = malloc(sizeof(*e) + len), **pp;

	if (!e || bytes > ENG_PUSHER_CACHE_BYTES) {
		free(e);
		eng_buf_put(f);
		return;	/* as if expired: the next subscriber misses */
	}
	*e = (struct entry){ .frame = f, .due_ms = now_ms() + ttl_ms,
			     .bytes = bytes,
			     .hash = hash, .len = len };
	memcpy(e->name, name, len);
	pthread_mutex_lock(&tab.lock);
	pp = slot_of(name, len, hash);
	if (*pp)
		drop(*pp);
	trim(bytes);
	pp = slot_of(name, len, hash);
	e->hnext = *pp;
	*pp = e;
	e->older = tab.newest;
	*(tab.newest ? &tab.newest->newer : &tab.oldest) = e;
	tab.newest = e;
	tab.bytes += bytes;
	tab.n++;
	pthread_mutex_unlock(&tab.lock);
}

/* @name's frame, one reference the caller's, or NULL: none or expired. */
static struct eng_buf *table_get(const char *name, size_t len)
{
	struct eng_buf *f = NULL;
	struct entry **pp;

	pthread_mutex_lock(&tab.lock);
	trim(0);
	pp = slot_of(name, len, eng_chan_hash(name, len));
	if (*pp) {
		f = (*pp)->frame;
		eng_buf_get(f);
	}
	pthread_mutex_unlock(&tab.lock);
	return f;
}

void eng_pusher_cache_clear(void)
{
	pthread_mutex_lock(&tab.lock);
	while (tab.oldest)
		drop(tab.oldest);
	pthread_mutex_unlock(&tab.lock);
}

void eng_pusher_cache_figures(unsigned *entries, size_t *bytes)
{
	pthread_mutex_lock(&tab.lock);
	*entries = tab.n;
	*bytes = tab.bytes;
	pthread_mutex_unlock(&tab.lock);
}

/* ---- with one Redis ------------------------------------------------- */

static const char put_lua[] =
	"redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return {1, ''}";
static const char get_lua[] =
	"local v = redis.call('GET', KEYS[1]) "
	"if v then return {1, v} end return {0, ''}";

/* @name's key, {keys}pcache:{name}, into @out; its length and @hslot. */
static size_t redis_key(const struct eng_shard *s, char *out, size_t cap,
			const char *name, size_t len, uint16_t *hslot)
{
	char rch[ENG_CHAN_MAX + 128], keys[ENG_RREQ_KEYS_MAX];
	size_t rl = eng_rreq_channel(&s->eng->cfg, rch, sizeof(rch), name, len);

	eng_rreq_keys(s->eng, keys, sizeof(keys), rch, rl, hslot);
	return (size_t)snprintf(out, cap, "%spcache:%.*s", keys, (int)len,
				name);
}

/* EVAL @lua over @name's key with @argc more arguments; NULL: no memory. */
static struct eng_rreq *script(const struct eng_shard *s, const char *lua,
			       const char *name, size_t len, int argc,
			       const char **argv, const size_t *lens)
{
	char key[ENG_CHAN_MAX + ENG_RREQ_KEYS_MAX + 16];
	const char *av[6] = { "EVAL", lua, "1", key };
	size_t ls[6] = { 4, strlen(lua), 1, 0 };
	struct eng_rreq *p;
	uint16_t hslot;

	ls[3] = redis_key(s, key, sizeof(key), name, len, &hslot);
	for (int i = 0; i < argc; i++) {
		av[4 + i] = argv[i];
		ls[4 + i] = lens[i];
	}
	p = eng_rreq_new(ENG_RQ_SCRIPT, 4 + argc, av, ls);
	if (p)
		p->hslot = hslot;
	return p;
}

static void put_done(struct eng_shard *s, struct eng_rreq *p)
{
	(void)s;
	(void)p;	/* a lost SET is a later subscriber's cache_miss */
}

/* ---- both ------------------------------------------------------------- */

void eng_pusher_cache_put(struct eng_shard *s, const char *name, size_t len,
			  struct json_slice event, struct json_slice ch,
			  struct json_slice data)
{
	unsigned ttl_ms = s->eng->cfg.pusher->cache_ms;
	int kind = pusher_channel_kind(ch.p, ch.len);
	size_t cap = 64 + json_escape_max(event.len) +
		     json_escape_max(ch.len) + data.len;
	char ttl[24], *ev;
	struct eng_rreq *p;
	ssize_t n;

	if (kind < 0 || !(kind & PUSHER_CH_CACHE) || !(ev = malloc(cap)))
		return;
	n = pusher_enc_event(ev, cap, event, ch, data, (struct json_slice){ 0 });
	if (n >= 0 && in_redis(s)) {
		const char *argv[2] = { ev, ttl };
		size_t lens[2] = { (size_t)n, 0 };

		lens[1] = (size_t)snprintf(ttl, sizeof(ttl), "%u", ttl_ms);
		p = script(s, put_lua, name, len, 2, argv, lens);
		if (p) {	/* before the PUBLISH, on the same link */
			p->from = (uint16_t)s->id;
			p->kind = ENG_CONN_K_HTTP;
			p->done = put_done;
			eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
		}
	} else if (n >= 0) {
		struct eng_buf *f = eng_pusher_text(ev, (size_t)n);

		if (f)
			table_put(name, len, f, ttl_ms);
	}
	free(ev);
}

/*
 * A subscriber of cache channel @ch of @app found nothing cached: the
 * one place a miss happens, on every path: the cache_miss webhook
 * ({"name":"cache_miss","channel":…}, Pusher's), from this node.
 */
static void cache_missed(struct eng_shard *s, const struct pusher_app *app,
			 struct json_slice ch)
{
	(void)s;
	eng_webhook_pusher(app, &(struct eng_webhook_ev){
		.name = "cache_miss", .channel = ch, .count = -1 });
}

/* What @c gets after subscription_succeeded: @f, or cache_miss. */
static struct eng_buf *after(struct eng_shard *s,
			     const struct pusher_app *app,
			     struct json_slice ch, struct eng_buf *f)
{
	size_t cap = 64 + 2 * json_escape_max(ch.len);
	char *o;
	ssize_t n;

	if (f)
		return f;
	cache_missed(s, app, ch);
	o = malloc(cap);
	n = o ? pusher_enc_cache_miss(o, cap, ch) : -ENOMEM;
	f = n < 0 ? NULL : eng_pusher_text(o, (size_t)n);
	free(o);
	return f;
}

/* Redis's answer to @p, the GET of a subscribe of @c. */
static void got(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_conn *c = &s->conns[p->slot];
	const struct pusher_apps *apps = &s->eng->cfg.pusher->apps;
	struct json_slice ch = { p->text, strlen(p->text) };
	struct json_slice name = { p->text + ch.len + 1,
				   strlen(p->text + ch.len + 1) };
	struct eng_buf *f = NULL;

	if (c->gen != p->gen || !eng_conn_alive(c))
		return;
	/* Redis failing is told as a miss: the subscribe still goes on */
	if (p->result == 1 && p->blob)
		f = eng_pusher_text(p->blob, p->blob_len);
	f = after(s, &apps->v[p->r3], ch, f);
	if (!f)
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
	else if (p->r2)		/* presence: behind the members, held */
		eng_pusher_behind(s, c, name, f);
	else
		eng_pusher_cached(s, c, ch, f);
}

int eng_pusher_cache_get(struct eng_shard *s, struct eng_conn *c,
			 const struct pusher_app *app, const char *name,
			 size_t len, struct json_slice ch, bool presence,
			 struct eng_buf **then)
{
	const struct pusher_apps *apps = &s->eng->cfg.pusher->apps;
	struct eng_rreq *p;

	*then = NULL;
	if (!in_redis(s)) {
		*then = after(s, app, ch, table_get(name, len));
		return *then ? 1 : -ENOMEM;
	}
	p = script(s, get_lua, name, len, 0, NULL, NULL);
	if (!p || ch.len + len + 2 > sizeof(p->text)) {
		eng_free(p);
		return -ENOMEM;
	}
	memcpy(p->text, ch.p, ch.len);	/* "CH\0NAME\0" */
	p->text[ch.len] = '\0';
	memcpy(p->text + ch.len + 1, name, len);
	p->text[ch.len + 1 + len] = '\0';
	p->r2 = presence;
	p->r3 = app - apps->v;
	p->done = got;
	return eng_rreq_send(s, c, p);
}
