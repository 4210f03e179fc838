/* SPDX-License-Identifier: MIT */
/*
 * bridge_table.c: the bridge's tables (bridge_int.h, struct rtable): the
 * Redis channels this node wants and the users present on it, by name,
 * each with the list of entries changed since it was last flushed.
 */
#include "bridge_int.h"

struct rchan *bridge__rchan_find(struct rtable *t, const char *name,
				 size_t len, uint64_t hash)
{
	struct rchan *ch = t->buckets[hash & (t->nbuckets - 1)];

	for (; ch; ch = ch->next)
		if (ch->hash == hash && ch->len == len &&
		    !memcmp(ch->name, name, len))
			return ch;
	return NULL;
}

static void rchan_grow(struct rtable *t)
{
	size_t n = t->nbuckets * 2;
	struct rchan **b = calloc(n, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct rchan *ch = t->buckets[i];

		while (ch) {
			struct rchan *next = ch->next;

			ch->next = b[ch->hash & (n - 1)];
			b[ch->hash & (n - 1)] = ch;
			ch = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

static void rhist_free(struct rhist *h)
{
	if (!h)
		return;
	eng_catchup_exit(&h->cu);
	free(h);
}

struct rchan *bridge__rchan_get(struct rtable *t, const char *name,
				size_t len)
{
	uint64_t hash = eng_chan_hash(name, len);
	struct rchan *ch = bridge__rchan_find(t, name, len, hash);

	if (ch)
		return ch;
	ch = calloc(1, sizeof(*ch) + len);
	if (!ch)
		return NULL;
	ch->hash = hash;
	ch->len = (uint16_t)len;
	ch->prim = ch->gone = R_NOSUB;
	ch->slot = eng_cluster_slot(name, len);
	memcpy(ch->name, name, len);
	if (t->count >= t->nbuckets)
		rchan_grow(t);
	ch->next = t->buckets[hash & (t->nbuckets - 1)];
	t->buckets[hash & (t->nbuckets - 1)] = ch;
	t->count++;
	return ch;
}

void bridge__rchan_free(struct rtable *t, struct rchan *ch)
{
	struct rchan **pp = &t->buckets[ch->hash & (t->nbuckets - 1)];

	while (*pp != ch)
		pp = &(*pp)->next;
	*pp = ch->next;
	t->count--;
	rhist_free(ch->hist);
	free(ch->dup);
	free(ch->apps);
	free(ch);
}

int bridge__rtable_init(struct rtable *t)
{
	t->nbuckets = 64;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	return t->buckets ? 0 : -ENOMEM;
}

void bridge__rtable_exit(struct rtable *t)
{
	for (size_t i = 0; t->buckets && i < t->nbuckets; i++) {
		struct rchan *ch = t->buckets[i];

		while (ch) {
			struct rchan *next = ch->next;

			rhist_free(ch->hist);
			free(ch->dup);
			free(ch->apps);
			free(ch);
			ch = next;
		}
	}
	free(t->buckets);
	free(t->dirty);
	t->buckets = NULL;
	t->dirty = NULL;
}

void bridge__mark_dirty(struct rtable *t, struct rchan *ch)
{
	if (ch->dirty)
		return;
	if (t->ndirty == t->dcap) {
		size_t cap = t->dcap ? t->dcap * 2 : 256;
		struct rchan **d = realloc(t->dirty, cap * sizeof(*d));

		if (!d)
			return;	/* picked up at the next reconnect */
		t->dirty = d;
		t->dcap = cap;
	}
	ch->dirty = 1;
	t->dirty[t->ndirty++] = ch;
}

void bridge__mark_all(struct rtable *t, bool desired_only)
{
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct rchan *ch = t->buckets[i]; ch; ch = ch->next)
			if (!desired_only || ch->desired)
				bridge__mark_dirty(t, ch);
}
