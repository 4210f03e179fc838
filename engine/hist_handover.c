/* SPDX-License-Identifier: MIT */
/*
 * hist_handover.c: a shard's histories written out for a take-over, and
 * read back in the new process by the shard that owns each channel there
 * (hist.h, docs/HANDOVER.md). A history keeps its epoch and offsets, so
 * that a client recovering from the old process's offset recovers on the
 * new one; each message keeps its age, so its ttl runs on.
 */
#include <errno.h>
#include <string.h>

#include "chan.h"
#include "frame.h"
#include "handover.h"
#include "hist_int.h"
#include "zframe.h"

unsigned eng_hist_dump(struct eng_shard *s, struct eng_ho_buf *b)
{
	unsigned count = 0;

	if (!s->hists)
		return 0;
	for (struct eng_lru_link *l = s->hists->lru.head; l; l = l->next) {
		const struct eng_hist *h = (const struct eng_hist *)l;
		size_t at;

		eng_ho_put_u8(b, ENG_HO_R_HIST);
		at = b->len;
		eng_ho_put_u32(b, 0);	/* the record's length, below */
		eng_ho_put_u16(b, h->ch->len);
		eng_ho_put(b, h->ch->name, h->ch->len);
		eng_ho_put(b, h->epoch, ENG_EPOCH_LEN);
		eng_ho_put_u64(b, h->top);
		eng_ho_put_u32(b, h->n);
		for (uint32_t i = 0; i < h->n; i++) {
			const struct eng_hent *e = &h->ent[(h->head + i) % h->cap];

			eng_ho_put_u64(b, e->offset);
			eng_ho_put_u32(b, (s->tick - e->tick) * ENG_TICK_MS);
			eng_frame_save(b, e->f);
		}
		if (b->err)
			return count;
		/* the length counts what follows it */
		for (int k = 0; k < 4; k++)
			b->p[at + k] = (uint8_t)((b->len - at - 4) >> (24 - 8 * k));
		count++;
	}
	return count;
}

/* A ring for @n messages, at most the namespace's N. */
static struct eng_hist *new_hist(struct eng_shard *s, struct eng_chan *ch,
				 const struct eng_ns *ns, uint32_t n)
{
	struct eng_hist *h = eng_malloc(sizeof(*h));
	uint32_t cap = 8;

	if (!h)
		return NULL;
	memset(h, 0, sizeof(*h));
	while (cap < n && cap < ns->history)
		cap *= 2;
	if (cap > ns->history)
		cap = ns->history;
	h->ent = eng_malloc((size_t)cap * sizeof(*h->ent));
	if (!h->ent) {
		eng_free(h);
		return NULL;
	}
	h->cap = cap;
	h->ch = ch;
	h->ns = ns;
	ch->hist = h;
	eng_lru_add_tail(&s->hists->lru, &h->lru);
	hist__held(s, (ssize_t)((size_t)cap * sizeof(*h->ent)));
	return h;
}

int eng_hist_load(struct eng_shard *s, const char *name, size_t len,
		  struct eng_ho_rd *r)
{
	const struct eng_ns *ns = eng_ns_find(&s->eng->cfg, name, len);
	const uint8_t *epoch = eng_ho_get(r, ENG_EPOCH_LEN);
	uint64_t top = eng_ho_get_u64(r);
	uint32_t n = eng_ho_get_u32(r);
	struct eng_chan *ch;
	struct eng_hist *h;

	if (r->err)
		return -EBADMSG;
	if (!ns)
		return 0;	/* no history in this process's options */
	ch = eng_chan_get(&s->chans, name, len, eng_chan_hash(name, len));
	if (!ch)
		return -ENOMEM;
	if (ch->hist)
		return 0;	/* cannot happen: one record a channel */
	h = new_hist(s, ch, ns, n);
	if (!h) {
		eng_chan_maybe_free(&s->chans, ch);
		return -ENOMEM;
	}
	memcpy(h->epoch, epoch, ENG_EPOCH_LEN);
	h->epoch[ENG_EPOCH_LEN] = '\0';
	h->top = top;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t offset = eng_ho_get_u64(r);
		uint32_t age = eng_ho_get_u32(r) / ENG_TICK_MS;
		struct eng_buf *f = eng_frame_load(r);
		struct eng_hent *e;

		if (!f)
			return r->err ? -EBADMSG : -ENOMEM;
		/* a push frame with its stamp, which reads back from its end */
		if (f->len < ENG_HO_FRAME_MIN) {
			eng_buf_put(f);
			return -EBADMSG;
		}
		/* a smaller N here keeps the newest; a ttl run out, none */
		if (n - i > h->cap || age >= ns->ttl_ms / ENG_TICK_MS) {
			eng_buf_put(f);
			continue;
		}
		e = &h->ent[(h->head + h->n) % h->cap];
		e->f = f;
		e->offset = offset;
		e->tick = s->tick - age;	/* wraps as ticks do */
		h->n++;
		hist__held(s, (ssize_t)(sizeof(*e) + eng_zframe_kept(f)));
		ENG_STAT_ADD(s, hist_msgs, 1);
	}
	return 1;
}
