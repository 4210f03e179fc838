/* SPDX-License-Identifier: MIT */
/*
 * hist_int.h: what hist.c and hist_handover.c share and nothing else
 * includes: a shard's history channels, their rings and their bytes.
 */
#ifndef RC_ENGINE_HIST_INT_H
#define RC_ENGINE_HIST_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "hist.h"
#include "lru.h"

struct eng_hrec;
struct eng_hread;

struct eng_hent {
	struct eng_buf *f;		/* one reference */
	uint64_t offset;
	uint32_t tick;			/* s->tick when appended */
};

struct eng_hist {
	struct eng_lru_link lru;	/* first: the shard's list */
	struct eng_chan *ch;		/* borrowed: owns this */
	const struct eng_ns *ns;	/* borrowed: cfg's */
	uint64_t top;			/* newest offset; 0: none yet */
	char epoch[ENG_EPOCH_LEN + 1];	/* this history's name */
	uint32_t cap, n, head;		/* ring; head: the oldest */
	struct eng_hent *ent;		/* owned */
};

_Static_assert(offsetof(struct eng_hist, lru) == 0, "a link is its record");

#define READ_BUCKETS	256

struct eng_hists {
	struct eng_hrec *recs;		/* Redis recoveries under way */
	struct eng_lru lru;		/* least recently appended first */
	size_t budget;			/* bytes: this shard's share */
	size_t held;			/* bytes: frames and rings */
	bool sending;			/* in send_rec() */
	struct eng_hread *reads[READ_BUCKETS];	/* history reads in flight */
	uint8_t *nreads;		/* ... of each slot (NULL: none) */
};

/* The shard's history bytes moved by @delta, and its /stats copy. */
static inline void hist__held(struct eng_shard *s, ssize_t delta)
{
	s->hists->held += (size_t)delta;
	atomic_store_explicit(&s->stats.hist_bytes, s->hists->held,
			      memory_order_relaxed);
}

#endif
