/* SPDX-License-Identifier: MIT */
/*
 * lru: an intrusive list kept least recently used first, for records a
 * shard ages or evicts oldest first (hist.c's histories, inbox.c's
 * inboxes). A record puts its struct eng_lru_link first, so a link is the
 * record's address. Single-threaded, like everything a shard owns.
 */
#ifndef RC_ENGINE_LRU_H
#define RC_ENGINE_LRU_H

#include <stddef.h>

struct eng_lru_link {
	struct eng_lru_link *prev, *next;
};

struct eng_lru {
	struct eng_lru_link *head, *tail;	/* least recently used first */
};

static inline void eng_lru_del(struct eng_lru *l, struct eng_lru_link *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	n->prev = n->next = NULL;
}

static inline void eng_lru_add_tail(struct eng_lru *l, struct eng_lru_link *n)
{
	n->prev = l->tail;
	n->next = NULL;
	if (l->tail)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
}

/* @n was used now: it goes last. */
static inline void eng_lru_touch(struct eng_lru *l, struct eng_lru_link *n)
{
	if (l->tail != n) {
		eng_lru_del(l, n);
		eng_lru_add_tail(l, n);
	}
}

#endif
