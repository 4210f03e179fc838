/* SPDX-License-Identifier: MIT */
/*
 * inbox_handover.c: a shard's inboxes written out for a take-over, and
 * read back in the new process by the shard that owns each user there
 * (inbox.h, docs/HANDOVER.md). An inbox keeps its EPOCH, its ids and
 * what it counted as evicted, so that ids a client holds still ack; the
 * acked ones (holes) are not carried, and each message keeps its age.
 */
#include <errno.h>
#include <string.h>

#include "chan.h"
#include "frame.h"
#include "handover.h"
#include "inbox_int.h"
#include "zframe.h"

unsigned eng_inbox_dump(struct eng_shard *s, struct eng_ho_buf *b)
{
	struct eng_lru *lists[2];
	unsigned count = 0;

	if (!s->inboxes)
		return 0;
	lists[0] = &s->inboxes->lru;
	lists[1] = &s->inboxes->shelf;
	for (int k = 0; k < 2; k++)
		for (struct eng_lru_link *l = lists[k]->head; l; l = l->next) {
			const struct eng_inbox *x = (const struct eng_inbox *)l;
			size_t at;

			eng_ho_put_u8(b, ENG_HO_R_INBOX);
			at = b->len;
			eng_ho_put_u32(b, 0);	/* the record's length */
			eng_ho_put_u16(b, x->ch->len);
			eng_ho_put(b, x->ch->name, x->ch->len);
			eng_ho_put(b, x->epoch, ENG_INBOX_EPOCH_LEN);
			eng_ho_put_u64(b, x->last);
			eng_ho_put_u64(b, x->evicted);
			eng_ho_put_u32(b, (s->tick - x->last_tick) *
					  ENG_TICK_MS);
			eng_ho_put_u32(b, x->live);
			for (uint32_t i = 0; i < x->used; i++) {
				const struct eng_ient *e = inbox__at(x, i);

				if (!e->f)
					continue;	/* acked */
				eng_ho_put_u64(b, e->n);
				eng_ho_put_u32(b, (s->tick - e->tick) *
						  ENG_TICK_MS);
				eng_frame_save(b, e->f);
			}
			if (b->err)
				return count;
			for (int j = 0; j < 4; j++)
				b->p[at + j] = (uint8_t)((b->len - at - 4) >>
							 (24 - 8 * j));
			count++;
		}
	return count;
}

/* An inbox for @n messages, at most --inbox-max. */
static struct eng_inbox *new_box(struct eng_shard *s, struct eng_chan *ch,
				 uint32_t n)
{
	uint32_t cap = 8, max = s->eng->cfg.inbox_max;
	struct eng_inbox *x = eng_malloc(sizeof(*x));

	if (!x)
		return NULL;
	memset(x, 0, sizeof(*x));
	while (cap < n && cap < max)
		cap *= 2;
	if (cap > max)
		cap = max;
	x->ent = eng_malloc((size_t)cap * sizeof(*x->ent));
	if (!x->ent) {
		eng_free(x);
		return NULL;
	}
	x->cap = cap;
	x->ch = ch;
	ch->inbox = x;
	eng_lru_add_tail(&s->inboxes->lru, &x->lru);
	inbox__held(s, (ssize_t)(sizeof(*x) + (size_t)cap * sizeof(*x->ent)));
	return x;
}

int eng_inbox_load(struct eng_shard *s, const char *name, size_t len,
		   struct eng_ho_rd *r)
{
	const uint8_t *epoch = eng_ho_get(r, ENG_INBOX_EPOCH_LEN);
	uint64_t last = eng_ho_get_u64(r), evicted = eng_ho_get_u64(r);
	uint32_t quiet = eng_ho_get_u32(r) / ENG_TICK_MS;
	uint32_t n = eng_ho_get_u32(r);
	uint32_t ttl = s->eng->cfg.inbox_ttl_ms / ENG_TICK_MS;
	struct eng_inbox *x;
	struct eng_chan *ch;

	if (r->err)
		return -EBADMSG;
	ch = eng_chan_get(&s->chans, name, len, eng_chan_hash(name, len));
	if (!ch)
		return -ENOMEM;
	if (ch->inbox)
		return 0;	/* cannot happen: one record a user */
	x = new_box(s, ch, n);
	if (!x) {
		eng_chan_maybe_free(&s->chans, ch);
		return -ENOMEM;
	}
	memcpy(x->epoch, epoch, ENG_INBOX_EPOCH_LEN);
	x->epoch[ENG_INBOX_EPOCH_LEN] = '\0';
	x->last = last;
	x->evicted = evicted;
	x->last_tick = s->tick - quiet;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id = eng_ho_get_u64(r);
		uint32_t age = eng_ho_get_u32(r) / ENG_TICK_MS;
		struct eng_buf *f = eng_frame_load(r);
		struct eng_ient *e;

		if (!f)
			return r->err ? -EBADMSG : -ENOMEM;
		if (f->len < ENG_HO_FRAME_MIN) {	/* its id reads from the end */
			eng_buf_put(f);
			return -EBADMSG;
		}
		/* a smaller --inbox-max keeps the newest; a ttl run out, none */
		if (n - i > x->cap || age >= ttl) {
			x->evicted++;
			eng_buf_put(f);
			continue;
		}
		e = &x->ent[x->used];
		e->f = f;
		e->n = id;
		e->tick = s->tick - age;	/* wraps as ticks do */
		x->used++;
		x->live++;
		inbox__held(s, (ssize_t)eng_zframe_kept(f));
		ENG_STAT_ADD(s, inbox_msgs, 1);
	}
	return 1;
}
