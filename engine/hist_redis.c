/* SPDX-License-Identifier: MIT */
/*
 * hist_redis.c: the shards' side of history with Redis (hist.h): a
 * history read or a recovery's read goes to Redis through the bridge
 * (rreq.c), and its answer comes back here, to hist.c as if from an
 * owner. What the recovery holds meanwhile stays in hist.c.
 */
#include "hist.h"
#include "mail.h"
#include "rreq.h"
#include "zframe.h"

/* The bridge filled @p's read in, or Redis could not be asked. */
static void read_done(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_hreq *h = p->hreq;

	/* a recovery's frames go out as they are; a page is one reply */
	if (h->kind == ENG_HREQ_RECOVER && p->result >= 0)
		eng_zframe_read(s, h->slot, h->gen, h->frames, h->n);
	eng_hist_redis_done(s, p->hreq, p->result);
	p->hreq = NULL;
}

int eng_hist_redis_read(struct eng_shard *s, struct eng_hreq *h)
{
	return eng_rreq_hread(s, h, read_done);
}
