/* SPDX-License-Identifier: MIT */
/*
 * catchup.c: a read racing the live stream, held and skipped into one
 * order (catchup.h). The held items are an array that doubles up to the
 * bound; a release takes the array off the catch-up first, because its
 * consumer may start a new read and hold again while it is handed items.
 */
#include <errno.h>
#include <string.h>

#include "catchup.h"
#include "eng.h"

void eng_catchup_init(struct eng_catchup *cu,
		      const struct eng_catchup_ops *ops, uint32_t max)
{
	memset(cu, 0, sizeof(*cu));
	cu->ops = ops;
	cu->max = max;
}

/* Drops @n items of @held from @i on. */
static void drop_from(const struct eng_catchup *cu, void **held, uint32_t i,
		      uint32_t n)
{
	for (; i < n; i++)
		cu->ops->drop(held[i]);
}

void eng_catchup_drop(struct eng_catchup *cu)
{
	drop_from(cu, cu->held, 0, cu->n);
	cu->n = 0;
}

void eng_catchup_exit(struct eng_catchup *cu)
{
	eng_catchup_drop(cu);
	eng_free(cu->held);
	cu->held = NULL;
	cu->cap = 0;
}

void eng_catchup_begin(struct eng_catchup *cu)
{
	cu->reading = true;
	cu->lost = false;
	cu->noted.n = 0;
	cu->noted.epoch[0] = '\0';
}

void eng_catchup_end(struct eng_catchup *cu)
{
	cu->reading = false;
}

bool eng_catchup_had(const struct eng_catchup *cu,
		     const struct eng_cu_pos *pos)
{
	return pos->n && pos->n <= cu->top.n &&
	       !strcmp(pos->epoch, cu->top.epoch);
}

/* Copies @epoch (at most ENG_CU_EPOCH characters) and @n into @pos. */
static void set_pos(struct eng_cu_pos *pos, const char *epoch, uint64_t n)
{
	size_t len = strnlen(epoch, ENG_CU_EPOCH);

	memcpy(pos->epoch, epoch, len);
	pos->epoch[len] = '\0';
	pos->n = n;
}

void eng_catchup_at(struct eng_catchup *cu, const char *epoch, uint64_t n)
{
	set_pos(&cu->top, epoch, n);
}

bool eng_catchup_behind(const struct eng_catchup *cu)
{
	return cu->noted.n && (cu->noted.n > cu->top.n ||
			       strcmp(cu->noted.epoch, cu->top.epoch));
}

/* Room for one more held item, doubling up to the bound; false: none. */
static bool room(struct eng_catchup *cu)
{
	uint32_t cap;
	void **held;

	if (cu->n < cu->cap)
		return true;
	if (cu->n >= cu->max)
		return false;
	cap = cu->cap ? cu->cap * 2 : 16;
	if (cap > cu->max || cap < cu->cap)
		cap = cu->max;
	held = eng_realloc(cu->held, (size_t)cap * sizeof(*held));
	if (!held)
		return false;	/* as if past the bound: the caller's choice */
	cu->held = held;
	cu->cap = cap;
	return true;
}

int eng_catchup_live(struct eng_catchup *cu, void *p)
{
	struct eng_cu_pos pos;

	if (cu->reading) {
		if (cu->lost)
			return ENG_CU_FULL;	/* until the next read */
		if (cu->max && !room(cu)) {
			cu->lost = true;
			return ENG_CU_FULL;
		}
		pos.n = cu->ops->pos(p, pos.epoch);
		cu->noted = pos;
		if (!cu->max)
			return ENG_CU_NOTED;
		cu->held[cu->n++] = p;
		return ENG_CU_HELD;
	}
	pos.n = cu->ops->pos(p, pos.epoch);
	return eng_catchup_had(cu, &pos) ? ENG_CU_SKIP : ENG_CU_PASS;
}

int eng_catchup_read(struct eng_catchup *cu, void *p, eng_catchup_fn *fn,
		     void *arg)
{
	struct eng_cu_pos pos;

	pos.n = cu->ops->pos(p, pos.epoch);
	if (eng_catchup_had(cu, &pos))
		return 0;	/* the caller's still: it frees it */
	if (pos.n)
		cu->top = pos;
	return fn(arg, p) ? 1 : -EPIPE;
}

int eng_catchup_release(struct eng_catchup *cu, eng_catchup_fn *fn,
			void *arg)
{
	void **held = cu->held;
	uint32_t n = cu->n;
	struct eng_cu_pos pos;
	int went = 0;

	/* off @cu first: @fn may hold again, behind these */
	cu->held = NULL;
	cu->n = cu->cap = 0;
	cu->reading = false;
	for (uint32_t i = 0; i < n; i++) {
		pos.n = cu->ops->pos(held[i], pos.epoch);
		if (eng_catchup_had(cu, &pos)) {
			cu->ops->drop(held[i]);
			continue;
		}
		went++;
		if (!fn(arg, held[i])) {
			drop_from(cu, held, i + 1, n);
			went = -EPIPE;
			break;
		}
	}
	eng_free(held);
	return went;
}
