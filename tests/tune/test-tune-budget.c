/* SPDX-License-Identifier: MIT */
/*
 * Description: ringcast-tune's numbers for the engine still match the
 * engine. tune/ links no engine code, so its per-connection budget and
 * its fixed-file cap are constants; this test fails when the engine's
 * budget outgrows them.
 */
#include <stdio.h>

#include "eng.h"
#include "helpers.h"
#include "tune.h"
#include "ud.h"

int main(void)
{
	size_t rearm = sizeof(*((struct eng_shard *)0)->rearm);

	printf("engine: struct eng_conn %zu bytes (budget %d) + rearm slot "
	       "%zu; tune budget %d\n", sizeof(struct eng_conn),
	       ENG_CONN_BUDGET, rearm, TUNE_CONN_USER_BYTES);
	/*
	 * Against the budget, not today's size: test-engine-conn holds the
	 * struct to ENG_CONN_BUDGET, this holds tune/ to the same figure.
	 */
	if (sizeof(struct eng_conn) > ENG_CONN_BUDGET ||
	    ENG_CONN_BUDGET + rearm > TUNE_CONN_USER_BYTES) {
		fprintf(stderr, "TUNE_CONN_USER_BYTES (tune/tune.h) is below "
			"ENG_CONN_BUDGET + a rearm slot: raise it\n");
		return T_EXIT_FAIL;
	}
	/* A slot must fit the 24 bits user_data gives it (ring/ud.h). */
	if (TUNE_FILES_PER_RING_MAX - 1 > RING_UD_SLOT_MAX) {
		fprintf(stderr, "a ring may hold more files than ud.h can "
			"address\n");
		return T_EXIT_FAIL;
	}
	return T_EXIT_PASS;
}
