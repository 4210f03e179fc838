/* SPDX-License-Identifier: MIT */
/*
 * mail: every message between rings. Each shard and the Redis bridge run
 * one ring on one thread; what one asks of another travels as a pointer
 * in a MSG_RING completion (ring_mbox_post), and the struct it points to
 * belongs to the mail until its reader takes it. This module owns
 * posting, with fault injection in test builds, the retry or undoing of
 * failed mail, the per-kind counters, and which shard owns a channel. It
 * knows no kind of mail itself: each subsystem declares its own (its
 * struct, its reader, what a failed post of it does) next to its code,
 * in a table of struct eng_mail_kind registered with ENG_MAIL_KINDS().
 *
 * Mail is allocated with eng_malloc() and freed with eng_free() on
 * whichever thread ends up with it: mimalloc frees across threads.
 *
 * Order: mail between two rings is read in the order it was posted, which
 * is what keeps a channel's messages in order on every shard. A failed
 * post breaks that, so deliveries are never posted again; what is posted
 * again (acks, interest, user mail, bridge mail) carries no order of its
 * own, or is refreshed to the poster's current state before it goes.
 */
#ifndef RC_ENGINE_MAIL_H
#define RC_ENGINE_MAIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "eng.h"

/* The Redis bridge's id where a shard id would be, as sender or reader;
 * as a sender it also means that nobody awaits a reply. */
#define ENG_BRIDGE	0xffff

/* ---- posting ------------------------------------------------------------ */

/*
 * A handler for mail @op: @self is the reader (struct eng_shard, or the
 * bridge's struct eng_redis), @ptr the mail, which the handler owns.
 * @res is the completion's res: 0 for mail read, -errno for a failed post.
 */
typedef void eng_mail_fn(void *self, unsigned op, void *ptr, int32_t res);
/* Frees mail @ptr and what it holds, telling nobody. */
typedef void eng_mail_free_fn(void *ptr);
/* The shard (or ENG_BRIDGE) mail @ptr goes to when it is posted again. */
typedef unsigned eng_mail_to_fn(const struct eng *e, const void *ptr);

/* What a failed post of a kind does. */
enum {
	ENG_MAIL_LOSE = 0,	/* freed, counted: a late delivery breaks order */
	ENG_MAIL_RETRY,		/* listed and posted again at the next tick */
	ENG_MAIL_UNDO,		/* the waiter is told now (503, a close, an error) */
};

/*
 * One kind of mail, declared by the subsystem that posts it, next to the
 * struct it carries. Mail to a shard is read by @read on the shard; mail
 * to the bridge by the handler the bridge gave eng_mail_bridge().
 */
struct eng_mail_kind {
	unsigned op;			/* ENG_OP_*: its user_data op */
	const char *name;		/* in /stats and /metrics */
	bool to_bridge;			/* read by the bridge; else by a shard */
	uint8_t on_fail;		/* ENG_MAIL_* */
	eng_mail_fn *read;		/* to a shard: the reader's handler */
	eng_mail_fn *undo;		/* UNDO: on the poster, owns the mail */
	eng_mail_fn *refresh;		/* RETRY, optional: bring up to date */
	eng_mail_free_fn *free;		/* NULL: a flat struct, eng_free() */
	eng_mail_to_fn *to;		/* RETRY to a shard: where it goes */
};

/*
 * Registers the @n kinds of @kinds, which stay borrowed (static tables).
 * Returns 0; -ERANGE when an op is no mail op (ENG_OP_PUB up to
 * ENG_OP_MAX); -EEXIST when an op is registered already, or twice in
 * @kinds; -EINVAL when a kind lacks what its rule needs: a name, a reader
 * for shard mail and none for the bridge's, undo for ENG_MAIL_UNDO, @to
 * for ENG_MAIL_RETRY to a shard. On error nothing is registered. The
 * table is read without a lock: register before any ring starts.
 */
int eng_mail_register(const struct eng_mail_kind *kinds, unsigned n);

/* ENG_MAIL_KINDS()'s: eng_mail_register() or abort, naming @file. */
void eng_mail__load(const struct eng_mail_kind *kinds, unsigned n,
		    const char *file);

/*
 * Registers a subsystem's table @kinds (an array) when the program
 * loads, before main() runs (as DPDK's RTE_INIT does): every binary that
 * links the subsystem reads its mail, and no list elsewhere names it. A
 * table eng_mail_register() refuses is a programmer's error: abort().
 */
#define ENG_MAIL_KINDS(kinds)						\
	__attribute__((constructor)) static void mail_kinds_load(void)	\
	{								\
		eng_mail__load(kinds, sizeof(kinds) / sizeof((kinds)[0]), \
			       __FILE__);				\
	}

/*
 * Defines eng_mail_to_fn @fn for mail of struct @type: it goes back to
 * the shard (or ENG_BRIDGE) in its field @field, the asker's.
 */
#define ENG_MAIL_TO_FIELD(fn, type, field)				\
	static unsigned fn(const struct eng *e, const void *ptr)	\
	{								\
		(void)e;						\
		return ((const type *)ptr)->field;			\
	}

/*
 * Defines eng_mail_to_fn @fn for mail of struct @type: it goes to the
 * owner of the channel or user index key in its fields name and len
 * (eng_chan_hash(): the file that expands it includes chan.h).
 */
#define ENG_MAIL_TO_OWNER(fn, type)					\
	static unsigned fn(const struct eng *e, const void *ptr)	\
	{								\
		const type *m = ptr;					\
									\
		return eng_mail_owner(e, eng_chan_hash(m->name, m->len)); \
	}

/*
 * The Redis bridge, once its ring is up (there is one bridge a process):
 * mail posted to ENG_BRIDGE goes to @ring, where @read reads every kind
 * registered to_bridge. NULL and NULL when the bridge is freed.
 */
void eng_mail_bridge(struct ring *ring, eng_mail_fn *read);


/*
 * Sets @m up for poster @self (shard @id, or ENG_BRIDGE) on @ring. Posts
 * are undone instead of made once *@stopping is true: the rings they
 * would go to may have stopped reading. Failures bump *@errors.
 */
void eng_mail_init(struct eng_mailer *m, struct eng *e, struct ring *ring,
		   unsigned id, void *self, const bool *stopping,
		   atomic_uint_fast64_t *errors);

/* Frees what is still listed for a retry. */
void eng_mail_exit(struct eng_mailer *m);

/*
 * A zeroed mail struct of @size bytes for @m to post, from the one heap
 * all mail comes from (eng_malloc: freed by whichever thread reads it).
 * NULL when out of memory, counted as a failed post of @m's.
 */
void *eng_mail_alloc(struct eng_mailer *m, size_t size);

/*
 * Posts mail @op carrying @ptr to @to (a shard id or ENG_BRIDGE); the
 * mail is the reader's from here. Mail to the poster itself is read at
 * once, by a direct call. A post that fails, at once or later as its
 * failure completion, is counted and then, by the op's kind, posted again
 * at the next eng_mail_retry(), undone (its waiter is told) or lost.
 */
void eng_mail_post(struct eng_mailer *m, unsigned to, unsigned op, void *ptr);

/* Is user_data op @op mail (or a failed post of mail)? Inline: per CQE. */
static inline bool eng_mail_is(unsigned op)
{
	op &= ~(unsigned)ENG_OP_FAILED;
	return op >= ENG_OP_PUB && op < ENG_OP_MAX;
}

/*
 * Handles mail completion @cqe (eng_mail_is() said so): mail for @m's
 * poster, read by its handler, or a failed post of its own.
 */
void eng_mail_read(struct eng_mailer *m, const struct ring_cqe *cqe);

/* Posts again what failed since the last call; once per tick. */
void eng_mail_retry(struct eng_mailer *m);

/* Frees the mail still in the CQ of @r, whose thread has exited. */
void eng_mail_discard(struct ring *r);

/* Posts "stop" from a ring of main's to @to; not subject to faults. */
int eng_mail_stop(struct ring *from, struct ring *to);

/* The shard that owns (sequences) a channel or user of hash @hash. */
static inline unsigned eng_mail_owner(const struct eng *e, uint64_t hash)
{
	/* The high bits: the low ones pick the bucket in every table. */
	return (unsigned)((hash >> 32) % e->cfg.shards);
}

/*
 * Appends {"failed":{op:n,...},"retried":{...}} for /stats: failed posts
 * (faults included) and posts made again, per mail op.
 */
size_t eng_mail_stats(char *out, size_t cap);
/* The same for one @op: false when no kind of mail is registered at @op. */
bool eng_mail_counts(unsigned op, const char **name, uint64_t *failed,
		     uint64_t *retried);

#ifdef RC_FAULT_INJECT
/*
 * Test builds (-Dfault_inject=true) only: reads RINGCAST_FAULT_MAIL=N,
 * after which every Nth post of each mail op fails, in turn at once and
 * as a failure completion. Call before the shards start.
 */
void eng_mail_fault_init(void);
#endif

#endif
