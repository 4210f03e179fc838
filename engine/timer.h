/* SPDX-License-Identifier: MIT */
/*
 * timer: a timing wheel of ENG_TICK_MS ticks over a shard's connection
 * slots (timer.c). One timer per connection, linked through its slot.
 */
#ifndef RC_ENGINE_TIMER_H
#define RC_ENGINE_TIMER_H

#include <stdint.h>
#include <time.h>

#include "eng.h"

void eng_timer_init(struct eng_shard *s);
/* (Re)arms @c's timer for tick @due. */
void eng_timer_set(struct eng_shard *s, struct eng_conn *c, uint32_t due);
void eng_timer_del(struct eng_shard *s, struct eng_conn *c);
/* Fires every timer due up to tick @now (eng_conn_on_timer). */
void eng_timer_advance(struct eng_shard *s, uint32_t now);

/* The tick at which wall-clock second @t arrives (token expiry). */
static inline uint32_t eng_unix_to_tick(const struct eng_shard *s, int64_t t)
{
	int64_t d = t - s->t0_unix;

	if (d <= 0)
		return 0;
	if (d > (int64_t)(UINT32_MAX / (1000 / ENG_TICK_MS)) - 1)
		return UINT32_MAX - 1;
	return (uint32_t)(d * (1000 / ENG_TICK_MS));
}

/* CLOCK_MONOTONIC in ns: finer than ticks, for the batch window. */
static inline uint64_t eng_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint32_t eng_ms_to_ticks(unsigned ms)
{
	/* 64-bit: a duration near UINT_MAX ms must not round to 0 ticks */
	return (uint32_t)(((uint64_t)ms + ENG_TICK_MS - 1) / ENG_TICK_MS);
}

#endif
