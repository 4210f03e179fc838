/* SPDX-License-Identifier: MIT */
/*
 * bridge_inbox.c: the inbox scripts' answers, on the bridge thread: an
 * ack's counts, a listing's ids, a read's messages into push frames.
 */
#include "bridge_int.h"

int bridge__inbox_answer(struct eng_bridge *r, struct eng_ibreq *q,
			 const redisReply *rep)
{
	const redisReply *ep;
	size_t step = q->kind == ENG_IB_REPLAY ? 2 : 1, n;

	if (rep->type != REDIS_REPLY_ARRAY || !rep->elements)
		return -EPROTO;
	if (q->kind == ENG_IB_ACK) {
		if (rep->elements == 1) {
			q->status = ENG_IB_UNKNOWN;
			return 0;
		}
		if (rep->elements != 3)
			return -EPROTO;
		q->acked = (uint64_t)bridge__int_at(rep, 0);
		q->unread = (uint64_t)bridge__int_at(rep, 1);
		q->evicted = (uint64_t)bridge__int_at(rep, 2);
		q->n = 0;
		return 0;
	}
	if (rep->elements < 4 || (rep->elements - 4) % step)
		return -EPROTO;
	ep = rep->element[0];
	if (ep->type != REDIS_REPLY_STRING || ep->len != strlen(q->epoch) ||
	    memcmp(ep->str, q->epoch, ep->len))
		q->after = 0;	/* none, or another inbox: from its start */
	q->n = 0;
	q->epoch[0] = '\0';
	if (ep->type != REDIS_REPLY_STRING)
		return 0;		/* no inbox: nothing unread */
	if (ep->len != ENG_INBOX_EPOCH_LEN ||
	    !bridge__epoch_ok(ep->str, ep->len))
		return -EPROTO;
	memcpy(q->epoch, ep->str, ep->len);
	q->epoch[ep->len] = '\0';
	q->unread = (uint64_t)bridge__int_at(rep, 1);
	q->evicted = (uint64_t)bridge__int_at(rep, 2);
	n = (rep->elements - 4) / step;
	if (q->kind == ENG_IB_LIST) {
		for (size_t i = 0; i < n && i < ENG_INBOX_IDS; i++)
			q->ids[q->n++] = (uint64_t)bridge__int_at(rep, 4 + i);
		return 0;
	}
	q->more = bridge__int_at(rep, 3) != 0;
	if (n)
		q->after = (uint64_t)bridge__int_at(rep, 4 + 2 * (n - 1));
	q->frames = eng_malloc((n ? n : 1) * sizeof(*q->frames));
	if (!q->frames)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const redisReply *d = rep->element[4 + 2 * i + 1];
		struct eng_buf *f = d->type != REDIS_REPLY_STRING ? NULL :
			bridge__stamped_frame(r, STAMP_INBOX, q->name + 1,
					      q->len - 1u, q->epoch,
					      (uint64_t)bridge__int_at(rep,
							4 + 2 * i),
					      d->str, d->len);

		if (f)		/* one no frame can carry: left unread */
			q->frames[q->nframes++] = f;
	}
	return 0;
}
