/* SPDX-License-Identifier: MIT */
/*
 * inbox_redis.c: the shards' side of inboxes with Redis (inbox.h): an
 * ack, a listing or a page of a new connection's unread goes to Redis
 * through the bridge (rreq.c), and its answer comes back here, to
 * inbox.c.
 */
#include "inbox.h"
#include "mail.h"
#include "rreq.h"
#include "zframe.h"

/* The bridge filled @p's answer in, or Redis could not be asked. */
static void ask_done(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_ibreq *q = p->ibreq;

	if (q->kind == ENG_IB_REPLAY && p->result >= 0)
		eng_zframe_read(s, q->slot, q->gen, q->frames, q->nframes);
	eng_inbox_redis_done(s, p->ibreq, p->result);
	p->ibreq = NULL;
}

int eng_inbox_redis_ask(struct eng_shard *s, struct eng_ibreq *q,
			const char *uid, size_t ulen)
{
	return eng_rreq_inbox(s, q, uid, ulen, ask_done);
}
