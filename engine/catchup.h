/* SPDX-License-Identifier: MIT */
/*
 * catchup: a read racing the live stream, brought into one order. While a
 * read (of Redis, or of the owner shard's history) is out, the items the
 * live stream brings are held; once it is answered, the read's items go
 * first, then those held that the read did not have already, and later
 * live items the read had are skipped. The only place in the engine that
 * holds and skips: history recovery (hist.c), a new connection's unread
 * (inbox.c) and history gap fills (bridge_hist.c) all go through it.
 *
 * Items are the caller's (frames, in the engine); a catch-up knows them
 * by a pointer and asks ops->pos where one stands in its stream: a number
 * that grows by one per item under an epoch, which changes whenever the
 * numbering starts again. An item with number 0 stands nowhere: it is
 * never skipped. Single-threaded: a catch-up belongs to whoever embeds it.
 */
#ifndef RC_ENGINE_CATCHUP_H
#define RC_ENGINE_CATCHUP_H

#include <stdbool.h>
#include <stdint.h>

#define ENG_CU_EPOCH	16	/* characters of an epoch, at most */

/* Where an item stands: @n counts within @epoch; n 0: nowhere. */
struct eng_cu_pos {
	uint64_t n;
	char epoch[ENG_CU_EPOCH + 1];
};

/* What a catch-up needs of its items' kind; constant, shared. */
struct eng_catchup_ops {
	/* @p's number (0: none) and, into @epoch, its epoch */
	uint64_t (*pos)(const void *p, char epoch[ENG_CU_EPOCH + 1]);
	/* lets go of @p, which goes nowhere now (NULL: never holds) */
	void (*drop)(void *p);
};

/*
 * Hands item @p (taken over) on to the consumer @arg, in order. False:
 * the consumer takes no more (closed), the catch-up stops there.
 */
typedef bool eng_catchup_fn(void *arg, void *p);

struct eng_catchup {
	const struct eng_catchup_ops *ops;	/* borrowed */
	void **held;			/* owned: items, oldest first */
	uint32_t n, cap;		/* held; room for */
	uint32_t max;			/* held at most; 0: noted, not held */
	bool reading;			/* a read is out: live items wait */
	bool lost;			/* more than @max came: see live() */
	struct eng_cu_pos top;		/* the newest the consumer had */
	struct eng_cu_pos noted;	/* the newest that came while reading */
};

/* What eng_catchup_live() did with an item. */
enum {
	ENG_CU_PASS,	/* not taken: hand it on now */
	ENG_CU_SKIP,	/* not taken: the consumer had it already */
	ENG_CU_HELD,	/* taken over: it goes once the read is answered */
	ENG_CU_NOTED,	/* not taken: a read is out, and the next brings it */
	ENG_CU_FULL,	/* not taken: more than @max came meanwhile */
};

/*
 * Sets up @cu, not reading, at no position, for items of @ops. @max
 * bounds what a read may hold (0: the catch-up holds nothing, it only
 * notes where the items that came stand; eng_catchup_behind()).
 */
void eng_catchup_init(struct eng_catchup *cu,
		      const struct eng_catchup_ops *ops, uint32_t max);

/* Lets go of what @cu holds (ops->drop); @cu may be set up again. */
void eng_catchup_exit(struct eng_catchup *cu);

/*
 * A read goes out: from now on live items wait (eng_catchup_live()).
 * What is held already stays, before them; a read that follows a cut one
 * keeps holding so. Forgets a FULL and what was noted.
 */
void eng_catchup_begin(struct eng_catchup *cu);

/*
 * The read is answered or given up: live items no longer wait. What is
 * held stays for eng_catchup_release(); a new read may begin first.
 */
void eng_catchup_end(struct eng_catchup *cu);

static inline bool eng_catchup_reading(const struct eng_catchup *cu)
{
	return cu->reading;
}

/* Whether the consumer had @pos: same epoch, and not past the top. */
bool eng_catchup_had(const struct eng_catchup *cu,
		    const struct eng_cu_pos *pos);

/*
 * The consumer has had everything up to @n under @epoch (which may be
 * another numbering than before: then nothing of the old one is had).
 */
void eng_catchup_at(struct eng_catchup *cu, const char *epoch, uint64_t n);

/*
 * Live item @p came. While a read is out it waits: held (ENG_CU_HELD),
 * or only noted (ENG_CU_NOTED) by a catch-up that holds nothing; past
 * @max held it is not taken (ENG_CU_FULL), nor is any after it until the
 * next eng_catchup_begin(), and what is held stays for the caller to
 * drop or release. Else it is skipped if the consumer had it
 * (ENG_CU_SKIP), and passes (ENG_CU_PASS) if not.
 */
int eng_catchup_live(struct eng_catchup *cu, void *p);

/*
 * Whether an item came during the read that the consumer has not had
 * since: one noted past the top, or under another epoch.
 */
bool eng_catchup_behind(const struct eng_catchup *cu);

/*
 * One of the read's items, @p, oldest first: if the consumer had it, it
 * is not taken (0: it stays its owner's); else it goes to @fn and becomes
 * the top (1; -EPIPE when @fn said stop, the rest are not to be offered).
 * One at a time, so that callers keep their items in arrays of their
 * own type (a struct eng_buf ** is no void **).
 */
int eng_catchup_read(struct eng_catchup *cu, void *p, eng_catchup_fn *fn,
		     void *arg);

/*
 * Ends the read and hands what was held on to @fn, oldest first, but for
 * those the consumer had (dropped). @fn may hold items in @cu again (a new
 * read begun): they go after those already held. Returns how many went to
 * @fn, or -EPIPE once @fn said stop (the rest are dropped).
 */
int eng_catchup_release(struct eng_catchup *cu, eng_catchup_fn *fn,
			void *arg);

/* Lets go of what is held; a FULL stays until the next read begins. */
void eng_catchup_drop(struct eng_catchup *cu);

#endif
