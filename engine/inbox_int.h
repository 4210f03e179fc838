/* SPDX-License-Identifier: MIT */
/*
 * inbox_int.h: what inbox.c and inbox_handover.c share and nothing else
 * includes: a shard's inboxes, their rings and their bytes.
 */
#ifndef RC_ENGINE_INBOX_INT_H
#define RC_ENGINE_INBOX_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "inbox.h"
#include "lru.h"

struct eng_iread;
struct eng_backlog;

struct eng_ient {
	struct eng_buf *f;		/* one reference; NULL: acked */
	uint64_t n;
	uint32_t tick;			/* s->tick when kept */
};

struct eng_inbox {
	struct eng_lru_link lru;	/* first: the shard's list or shelf */
	struct eng_chan *ch;		/* borrowed: owns this */
	bool shelved;			/* emptied for memory: on the shelf */
	uint64_t last;			/* the newest N given */
	uint64_t evicted;		/* gone unacked: room, ttl, memory */
	uint32_t last_tick;		/* when the newest came */
	uint32_t cap, used, head;	/* ring; used counts holes too */
	uint32_t live;			/* unacked */
	struct eng_ient *ent;		/* owned */
	char epoch[ENG_INBOX_EPOCH_LEN + 1];
};

_Static_assert(offsetof(struct eng_inbox, lru) == 0, "a link is its record");

#define BACKLOG_BUCKETS	64

struct eng_inboxes {
	struct eng_lru lru;		/* least recently pushed to first */
	struct eng_lru shelf;		/* emptied for memory, oldest first */
	size_t budget;			/* bytes: this shard's share */
	size_t held;			/* bytes: frames, rings, inboxes */
	struct eng_iread *reads;	/* Redis reads under way */
	/* unread still to send, by slot: every send completion looks */
	struct eng_backlog *backlogs[BACKLOG_BUCKETS];
	uint32_t nbacklogs;
	bool draining;			/* in eng_inbox_drain() */
};

/* The shard's inbox bytes moved by @delta, and its /stats copy. */
static inline void inbox__held(struct eng_shard *s, ssize_t delta)
{
	s->inboxes->held += (size_t)delta;
	atomic_store_explicit(&s->stats.inbox_bytes, s->inboxes->held,
			      memory_order_relaxed);
}

/* @b's @i-th entry from its oldest. */
static inline struct eng_ient *inbox__at(const struct eng_inbox *b, uint32_t i)
{
	return &b->ent[(b->head + i) % b->cap];
}

#endif
