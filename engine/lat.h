/* SPDX-License-Identifier: MIT */
/*
 * lat: the engine's own latency, publish sequenced to send completed,
 * sampled (lat.c): one publish in ENG_LAT_EVERY is stamped by its
 * sequencer (eng_buf.t_us), and its sends are timed on one connection
 * slot in ENG_LAT_EVERY. So a sample costs a clock read, and an unsampled
 * frame one test of t_us. A low module: the send path records here, and
 * /metrics (metrics.c) reads the shards' buckets.
 */
#ifndef RC_ENGINE_LAT_H
#define RC_ENGINE_LAT_H

#include <stdint.h>

#include "buf.h"
#include "eng.h"
#include "timer.h"

#define ENG_LAT_EVERY	16

/* Microseconds of CLOCK_MONOTONIC, modulo 2^32, never 0 (0: unstamped). */
static inline uint32_t eng_lat_now(void)
{
	uint32_t t = (uint32_t)(eng_now_ns() / 1000);

	return t ? t : 1;
}

/* The sequencer's side: stamps every ENG_LAT_EVERY-th publish @f. */
static inline void eng_lat_stamp(struct eng_shard *s, struct eng_buf *f)
{
	if (++s->lat_seq % ENG_LAT_EVERY == 0)
		f->t_us = eng_lat_now();
}

/* Records @us in @s's histogram (only @s's thread writes it). */
void eng_lat_record(struct eng_shard *s, uint32_t us);

/* Upper bounds of the histogram's buckets, µs; the last is +Inf. */
extern const uint32_t eng_lat_bounds[ENG_LAT_BUCKETS];

#endif
