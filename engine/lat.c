/* SPDX-License-Identifier: MIT */
/*
 * lat.c: the sampled publish-to-send latency histogram's buckets (lat.h).
 * Only the shard's own thread adds to them; /metrics reads them relaxed.
 */
#include "lat.h"

/* Bucket bounds, µs: 50 µs to 10 s, about three per decade. */
const uint32_t eng_lat_bounds[ENG_LAT_BUCKETS] = {
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 500000, 1000000, 2500000, 10000000,
};

void eng_lat_record(struct eng_shard *s, uint32_t us)
{
	unsigned i = 0;

	while (i < ENG_LAT_BUCKETS && us > eng_lat_bounds[i])
		i++;
	ENG_STAT_ADD(s, lat[i], 1);
	ENG_STAT_ADD(s, lat_sum_us, us);
}
