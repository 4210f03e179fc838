/* SPDX-License-Identifier: MIT */
/*
 * chan.c: a shard's channel index. Channel -> its local subscriptions (a
 * doubly linked list, so unsubscribe is O(1)) and connection -> its
 * subscriptions (a singly linked list, bounded by --max-subs), so
 * subscribe, unsubscribe and disconnect never scan other connections.
 * One struct eng_sub (40 bytes) per subscription; one struct eng_chan
 * (48 bytes + name) per channel with a local subscriber or, on the
 * channel's owner shard, with a subscriber anywhere.
 *
 * The table hashes names with a per-process random key, so a client
 * cannot choose names that all land in one bucket without knowing it.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "mail.h"

static uint64_t hash_key;	/* set once in eng_chan_global_init() */

void eng_chan_global_init(void)
{
	if (getrandom(&hash_key, sizeof(hash_key), 0) != sizeof(hash_key))
		hash_key = (uint64_t)(uintptr_t)&hash_key ^ 0x9e3779b97f4a7c15ull;
}

/* A keyed multiply-xorshift hash over 8-byte words. */
uint64_t eng_chan_hash(const char *name, size_t len)
{
	uint64_t h = hash_key ^ (len * 0x9e3779b97f4a7c15ull);

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, name, 8);
		h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
		h ^= h >> 31;
		name += 8;
		len -= 8;
	}
	if (len) {
		uint64_t w = 0;

		memcpy(&w, name, len);
		h = (h ^ w) * 0x94d049bb133111ebull;
		h ^= h >> 29;
	}
	h = (h ^ (h >> 32)) * 0xd6e8feb86659fd93ull;
	return h ^ (h >> 32);
}

bool eng_chan_name_ok(const char *p, size_t len)
{
	if (!len || len > ENG_CHAN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9'))
			continue;
		if (!strchr("_-.:@/=", ch) || !ch)
			return false;
	}
	return true;
}

bool eng_chan_wire_ok(const char *p, size_t len)
{
	if (len > 1 && p[0] == ENG_PUSHER_MARK)
		return eng_chan_name_ok(p + 1, len - 1);
	return eng_chan_name_ok(p, len);
}

/*
 * Frees @ch and what only it holds: owner state, held replies and acks.
 * At exit nobody waits for them any more.
 */
static void chan_drop(struct eng_chan *ch)
{
	struct eng_wait *w = ch->waiters;
	struct eng_owner_mail *m = ch->racks;

	while (w) {
		struct eng_wait *next = w->next;

		if (--w->pend->count == 0) {
			eng_buf_put(w->pend->reply);
			eng_buf_put(w->pend->then);
			eng_free(w->pend);
		}
		eng_free(w);
		w = next;
	}
	while (m) {
		struct eng_owner_mail *next = m->next;

		eng_free(m);
		m = next;
	}
	eng_free(ch->pres);
	eng_free(ch->shards);
	eng_free(ch);
}

int eng_chans_init(struct eng_chans *t)
{
	t->nbuckets = 64;
	t->count = 0;
	t->buckets = eng_malloc(t->nbuckets * sizeof(*t->buckets));
	if (!t->buckets)
		return -ENOMEM;
	memset(t->buckets, 0, t->nbuckets * sizeof(*t->buckets));
	return 0;
}

void eng_chans_exit(struct eng_chans *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct eng_chan *ch = t->buckets[i];

		while (ch) {
			struct eng_chan *next = ch->next;

			chan_drop(ch);
			ch = next;
		}
	}
	eng_free(t->buckets);
	t->buckets = NULL;
}

struct eng_chan *eng_chan_find(struct eng_chans *t, const char *name,
			       size_t len, uint64_t hash)
{
	struct eng_chan *ch = t->buckets[hash & (t->nbuckets - 1)];

	for (; ch; ch = ch->next)
		if (ch->hash == hash && ch->len == len &&
		    !memcmp(ch->name, name, len))
			return ch;
	return NULL;
}

/* Doubles the bucket array; on failure the table just stays denser. */
static void grow(struct eng_chans *t)
{
	size_t n = t->nbuckets * 2;
	struct eng_chan **b = eng_malloc(n * sizeof(*b));

	if (!b)
		return;
	memset(b, 0, n * sizeof(*b));
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct eng_chan *ch = t->buckets[i];

		while (ch) {
			struct eng_chan *next = ch->next;
			struct eng_chan **head = &b[ch->hash & (n - 1)];

			ch->next = *head;
			*head = ch;
			ch = next;
		}
	}
	eng_free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

struct eng_chan *eng_chan_get(struct eng_chans *t, const char *name,
			      size_t len, uint64_t hash)
{
	struct eng_chan *ch = eng_chan_find(t, name, len, hash);
	struct eng_chan **head;

	if (ch)
		return ch;
	ch = eng_malloc(sizeof(*ch) + len + 1);
	if (!ch)
		return NULL;
	memset(ch, 0, sizeof(*ch));
	ch->hash = hash;
	ch->len = (uint16_t)len;
	memcpy(ch->name, name, len);
	ch->name[len] = '\0';
	if (t->count >= t->nbuckets)
		grow(t);
	head = &t->buckets[hash & (t->nbuckets - 1)];
	ch->next = *head;
	*head = ch;
	t->count++;
	return ch;
}

/* Frees @ch once nothing refers to it: no subscriber, no remote shard. */
void eng_chan_maybe_free(struct eng_chans *t, struct eng_chan *ch)
{
	struct eng_chan **pp;

	if (ch->subs || ch->nshards || ch->waiters || ch->pending ||
	    ch->racks || ch->local_rack || ch->pres || ch->hist || ch->inbox)
		return;
	pp = &t->buckets[ch->hash & (t->nbuckets - 1)];
	while (*pp != ch)
		pp = &(*pp)->next;
	*pp = ch->next;
	t->count--;
	eng_free(ch->shards);
	eng_free(ch);
}

struct eng_sub *eng_sub_find(struct eng_conn *c, const struct eng_chan *ch)
{
	struct eng_sub *sub;

	for (sub = c->subs; sub; sub = sub->cnext)
		if (sub->chan == ch)
			return sub;
	return NULL;
}

int eng_sub_add(struct eng_conn *c, uint32_t slot, struct eng_chan *ch)
{
	struct eng_sub *sub = eng_malloc(sizeof(*sub));

	if (!sub)
		return -ENOMEM;
	sub->chan = ch;
	sub->slot = slot;
	sub->recovering = 0;
	sub->prev = NULL;
	sub->next = ch->subs;
	if (ch->subs)
		ch->subs->prev = sub;
	ch->subs = sub;
	ch->nsubs++;
	sub->cnext = c->subs;
	c->subs = sub;
	c->nsubs++;
	return 0;
}

/* Unlinks @sub from its channel only; the caller fixes the conn list. */
void eng_sub_unlink(struct eng_sub *sub)
{
	struct eng_chan *ch = sub->chan;

	if (sub->prev)
		sub->prev->next = sub->next;
	else
		ch->subs = sub->next;
	if (sub->next)
		sub->next->prev = sub->prev;
	ch->nsubs--;
}

void eng_sub_del(struct eng_conn *c, struct eng_sub *sub)
{
	struct eng_sub **pp = &c->subs;

	while (*pp != sub)
		pp = &(*pp)->cnext;
	*pp = sub->cnext;
	c->nsubs--;
	eng_sub_unlink(sub);
	eng_free(sub);
}
