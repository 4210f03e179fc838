/* SPDX-License-Identifier: MIT */
/*
 * Description: ringcast-tune's numbers for the engine still match the
 * engine. tune/ links no engine code, so its per-connection budget and
 * its fixed-file cap are constants; this test fails when the engine's
 * budget outgrows them. Both checks are made at build time; the run
 * prints the figures for the record.
 */
#include <stdio.h>

#include "conn.h"
#include "helpers.h"
#include "tune.h"
#include "ud.h"

/* A slot's share of the shard's per-slot arrays (core.c sizes them): one
 * rearm entry, two resume entries, one flushq entry. */
#define SLOT_BYTES	(sizeof(*((struct eng_shard *)0)->rearm) + \
			 2 * sizeof(*((struct eng_shard *)0)->resume) + \
			 sizeof(*((struct eng_shard *)0)->flushq))

/*
 * Against the budget, not today's size: conn.h holds the struct to
 * ENG_CONN_BUDGET, this holds tune/ to the same figure.
 */
_Static_assert(ENG_CONN_BUDGET + SLOT_BYTES <= TUNE_CONN_USER_BYTES,
	       "TUNE_CONN_USER_BYTES (tune/tune.h) is below ENG_CONN_BUDGET "
	       "+ a slot's arrays: raise it");
/* A slot must fit the 24 bits user_data gives it (ring/ud.h). */
_Static_assert(TUNE_FILES_PER_RING_MAX - 1 <= RING_UD_SLOT_MAX,
	       "a ring may hold more files than ud.h can address");

int main(void)
{
	printf("engine: struct eng_conn %zu bytes (budget %d) + slot arrays "
	       "%zu; tune budget %d\n", sizeof(struct eng_conn),
	       ENG_CONN_BUDGET, SLOT_BYTES, TUNE_CONN_USER_BYTES);
	return T_EXIT_PASS;
}
