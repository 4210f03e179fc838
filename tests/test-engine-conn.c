/* SPDX-License-Identifier: MIT */
/*
 * Description: the per-connection state stays within its budget. A shard
 * holds tens of thousands of connections, so every byte of struct
 * eng_conn counts; ENG_CONN_BUDGET is the documented ceiling. The check
 * is made at build time; the run prints the sizes for the record.
 */
#include <stdio.h>

#include "chan.h"
#include "conn.h"
#include "helpers.h"

_Static_assert(sizeof(struct eng_conn) <= ENG_CONN_BUDGET,
	       "struct eng_conn is over budget");

int main(void)
{
	printf("sizeof(struct eng_conn) = %zu (budget %d)\n",
	       sizeof(struct eng_conn), ENG_CONN_BUDGET);
	printf("sizeof(struct eng_rx) = %zu (only while bytes are split)\n",
	       sizeof(struct eng_rx));
	printf("sizeof(struct eng_sq) = %zu (per queued frame)\n",
	       sizeof(struct eng_sq));
	printf("sizeof(struct eng_sub) = %zu (per subscription)\n",
	       sizeof(struct eng_sub));
	printf("sizeof(struct eng_chan) = %zu + name (per channel and shard)\n",
	       sizeof(struct eng_chan));
	return T_EXIT_PASS;
}
