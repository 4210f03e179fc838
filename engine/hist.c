/* SPDX-License-Identifier: MIT */
/*
 * hist.c: channel history on the owner shard (hist.h).
 *
 * Each history channel has a ring of (frame, offset, tick) entries that
 * grows by doubling up to its namespace's N. The shard keeps its history
 * channels in one list, least recently appended first: the budget evicts
 * from the front, and the tick walks it for expired messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/types.h>

#include "broker.h"
#include "buf.h"
#include "catchup.h"
#include "chan.h"
#include "conn.h"
#include "hist.h"
#include "hist_int.h"
#include "lru.h"
#include "mail.h"
#include "sub.h"
#include "zframe.h"

_Static_assert(ENG_EPOCH_LEN <= ENG_CU_EPOCH, "an epoch fits a catch-up's");

static uint32_t epoch_base;		/* drawn at start: tells restarts apart */
static atomic_uint epoch_seq;		/* tells histories of a run apart */

/*
 * A recovery, on the asking shard: the subscription holds what is
 * delivered while the read is out, and the answer's messages go first,
 * then those held that came after them (@cu: catchup.h).
 */
struct eng_hrec {
	struct eng_hrec *next;
	struct eng_sub *sub;		/* borrowed: HOLDING or SKIPPING */
	struct eng_hreq *h;		/* owned until sent */
	const struct eng_hreq *sent;	/* in flight: to match its answer */
	struct eng_catchup cu;		/* held: one reference each */
	bool failed;			/* @h failed as it was sent: tick */
};

/*
 * A history command's read in flight, on the asking shard: a connection
 * has at most one per channel, and a SINCE read keeps the epoch it asked
 * for, which the answer overwrites.
 */
struct eng_hread {
	struct eng_hread *next;		/* in its bucket */
	const struct eng_hreq *h;	/* in flight: to match its answer */
	uint32_t slot, gen;		/* the asking connection */
	uint64_t hash;			/* the channel's */
	char epoch[ENG_EPOCH_LEN + 1];	/* SINCE: asked for ("" none) */
};

void eng_hist_global_init(void)
{
	while (getrandom(&epoch_base, sizeof(epoch_base), 0) !=
	       sizeof(epoch_base))
		;
}

int eng_hist_init(struct eng_shard *s)
{
	s->hists = eng_malloc(sizeof(*s->hists));
	if (!s->hists)
		return -ENOMEM;
	memset(s->hists, 0, sizeof(*s->hists));
	if (s->nr_conns) {
		s->hists->nreads = eng_malloc(s->nr_conns);
		if (!s->hists->nreads) {
			eng_free(s->hists);
			s->hists = NULL;
			return -ENOMEM;
		}
		memset(s->hists->nreads, 0, s->nr_conns);
	}
	s->hists->budget = (size_t)(s->eng->cfg.history_memory /
				    s->eng->cfg.shards);
	return 0;
}

static size_t ent_bytes(const struct eng_buf *f)
{
	return sizeof(struct eng_hent) + eng_zframe_kept(f);
}

/* Drops @h's oldest message. */
static void drop_oldest(struct eng_shard *s, struct eng_hist *h)
{
	struct eng_hent *e = &h->ent[h->head];

	hist__held(s, -(ssize_t)ent_bytes(e->f));
	ENG_STAT_SUB(s, hist_msgs, 1);
	eng_buf_put(e->f);
	e->f = NULL;
	h->head = (h->head + 1) % h->cap;
	h->n--;
}

/* Frees @h; its channel may go too. */
static void free_hist(struct eng_shard *s, struct eng_hist *h)
{
	struct eng_chan *ch = h->ch;

	while (h->n)
		drop_oldest(s, h);
	eng_lru_del(&s->hists->lru, &h->lru);
	hist__held(s, -(ssize_t)((size_t)h->cap * sizeof(*h->ent)));
	eng_free(h->ent);
	eng_free(h);
	ch->hist = NULL;
}

void eng_hist_drop(struct eng_shard *s, struct eng_chan *ch)
{
	if (ch->hist)
		free_hist(s, ch->hist);
}

/* Frames as a catch-up's items: placed by their stamped offset. */
static uint64_t frame_pos(const void *p, char epoch[ENG_CU_EPOCH + 1])
{
	return eng_hist_offset_of(p, epoch);
}

static void frame_drop(void *p)
{
	eng_buf_put(p);
}

const struct eng_catchup_ops eng_hist_frame_ops = { frame_pos, frame_drop };

static void free_rec(struct eng_hrec *rec)
{
	eng_catchup_exit(&rec->cu);
	eng_hreq_free(rec->h);
	eng_free(rec);
}

/* Takes the record of @sub (or of read @h) off the list; NULL: none. */
static struct eng_hrec *take_rec(struct eng_shard *s,
				 const struct eng_sub *sub,
				 const struct eng_hreq *h)
{
	for (struct eng_hrec **pp = &s->hists->recs; *pp; pp = &(*pp)->next) {
		struct eng_hrec *rec = *pp;

		if ((sub && rec->sub == sub) || (h && rec->sent == h)) {
			*pp = rec->next;
			return rec;
		}
	}
	return NULL;
}

void eng_hist_exit(struct eng_shard *s)
{
	if (!s->hists)
		return;
	while (s->hists->recs) {
		struct eng_hrec *rec = s->hists->recs;

		s->hists->recs = rec->next;
		free_rec(rec);
	}
	while (s->hists->lru.head)
		free_hist(s, (struct eng_hist *)s->hists->lru.head);
	for (unsigned i = 0; i < READ_BUCKETS; i++)
		while (s->hists->reads[i]) {
			struct eng_hread *r = s->hists->reads[i];

			s->hists->reads[i] = r->next;
			eng_free(r);
		}
	eng_free(s->hists->nreads);
	eng_free(s->hists);
	s->hists = NULL;
}

/* Room for one more entry: the ring doubles up to the namespace's N. */
static int grow(struct eng_shard *s, struct eng_hist *h)
{
	uint32_t cap = h->cap ? h->cap * 2 : 8;
	struct eng_hent *ent;

	if (cap > h->ns->history)
		cap = h->ns->history;
	ent = eng_malloc((size_t)cap * sizeof(*ent));
	if (!ent)
		return -ENOMEM;
	for (uint32_t i = 0; i < h->n; i++)
		ent[i] = h->ent[(h->head + i) % h->cap];
	hist__held(s, (ssize_t)((size_t)(cap - h->cap) * sizeof(*ent)));
	eng_free(h->ent);
	h->ent = ent;
	h->cap = cap;
	h->head = 0;
	return 0;
}

uint64_t eng_hist_append(struct eng_shard *s, struct eng_chan *ch,
			 struct eng_buf *f)
{
	struct eng_hist *h = ch ? ch->hist : NULL;
	struct eng_hists *l = s->hists;
	struct eng_hent *e;

	if (!ch)
		goto nomem;
	if (!h) {
		h = eng_malloc(sizeof(*h));
		if (!h)
			goto nomem;
		memset(h, 0, sizeof(*h));
		h->ch = ch;
		/* a new history, a new name: offsets restart under it */
		snprintf(h->epoch, sizeof(h->epoch), "%08x%08x", epoch_base,
			 atomic_fetch_add(&epoch_seq, 1) + 1);
		h->ns = eng_ns_find(&s->eng->cfg, ch->name, ch->len);
		if (!h->ns) {
			eng_free(h);
			goto nomem;	/* cannot happen: the frame said so */
		}
		ch->hist = h;
		eng_lru_add_tail(&l->lru, &h->lru);
	} else {
		eng_lru_touch(&l->lru, &h->lru);
	}
	if (h->n == h->cap && h->cap < h->ns->history && grow(s, h) < 0 &&
	    !h->n)
		goto nomem;
	if (h->n == h->cap)
		drop_oldest(s, h);	/* the N-th newest goes: not counted */
	e = &h->ent[(h->head + h->n) % h->cap];
	e->f = eng_buf_get(f);
	e->offset = ++h->top;
	e->tick = s->tick;
	h->n++;
	eng_hist_stamp(f, h->epoch, e->offset);
	if (ch->shards)		/* the twin first: it is counted too */
		eng_zframe_once(s, f, ch->shards);
	hist__held(s, (ssize_t)ent_bytes(f));
	ENG_STAT_ADD(s, hist_msgs, 1);
	/* Over budget: the oldest messages of the least recent channels. */
	while (l->held > l->budget && l->lru.head &&
	       ((struct eng_hist *)l->lru.head != h || h->n > 1)) {
		struct eng_hist *old = (struct eng_hist *)l->lru.head;
		struct eng_chan *och = old->ch;

		drop_oldest(s, old);
		ENG_STAT_ADD(s, hist_evicted, 1);
		if (!old->n && old != h) {
			free_hist(s, old);
			eng_chan_maybe_free(&s->chans, och);
		}
	}
	return h->top;
nomem:
	ENG_STAT_ADD(s, hist_lost, 1);
	eng_hist_stamp(f, NULL, 0);
	return 0;
}

/* The newest offset of @ch (0: none yet), its lowest kept and epoch. */
static const char *hist_top(const struct eng_chan *ch, uint64_t *top,
			    uint64_t *oldest)
{
	const struct eng_hist *h = ch ? ch->hist : NULL;

	*top = h ? h->top : 0;
	*oldest = h && h->n ? h->ent[h->head].offset : *top + 1;
	return h ? h->epoch : NULL;
}

/*
 * Takes references to @ch's messages above @after, oldest first, into
 * @q->frames: at most @max of them and q->max_bytes of frames (one
 * whatever its size when q->lone); q->more when some within @max did
 * not fit. With @all, either every one of them or, past the bytes, none
 * (q->more then says so). Returns how many, or -ENOMEM.
 */
static int read_page(const struct eng_chan *ch, struct eng_hreq *q,
		     uint64_t after, uint32_t max, bool all)
{
	const struct eng_hist *h = ch ? ch->hist : NULL;
	uint32_t first = 0, got = 0;
	size_t bytes = 0;

	if (!h)
		return 0;
	/* a ring's offsets follow one another from its oldest */
	if (h->n && after >= h->ent[h->head].offset)
		first = after - h->ent[h->head].offset + 1 >= h->n ? h->n :
			(uint32_t)(after - h->ent[h->head].offset + 1);
	for (uint32_t i = first; i < h->n && got < max; i++, got++) {
		const struct eng_buf *f = h->ent[(h->head + i) % h->cap].f;

		if (bytes + f->len > q->max_bytes && !(got == 0 && q->lone)) {
			q->more = 1;
			break;
		}
		bytes += f->len;
	}
	if (q->more && all)
		return 0;
	if (!got)
		return 0;
	q->frames = eng_malloc((size_t)got * sizeof(*q->frames));
	if (!q->frames)
		return -ENOMEM;
	for (uint32_t i = 0; i < got; i++)
		q->frames[i] = eng_buf_get(h->ent[(h->head + first + i) %
						  h->cap].f);
	return (int)got;
}

static void answer_failed(struct eng_shard *s);

void eng_hist_tick(struct eng_shard *s)
{
	struct eng_hist *h, *next;

	if (!s->hists)
		return;
	answer_failed(s);
	if (s->tick % (1000 / ENG_TICK_MS))
		return;		/* once a second is fine-grained enough */
	for (h = (struct eng_hist *)s->hists->lru.head; h; h = next) {
		uint32_t ttl = h->ns->ttl_ms / ENG_TICK_MS;

		next = (struct eng_hist *)h->lru.next;
		while (h->n && s->tick - h->ent[h->head].tick >= ttl)
			drop_oldest(s, h);
		if (!h->n) {
			struct eng_chan *ch = h->ch;

			free_hist(s, h);
			eng_chan_maybe_free(&s->chans, ch);
		}
	}
}

/* ---- reads for clients: the history command and recovery ----------------- */

static void answered(struct eng_shard *s, struct eng_hreq *h);

int eng_hist_owner_read(struct eng_shard *s, struct eng_hreq *h)
{
	eng_mail_post(&s->mail, eng_mail_owner(s->eng, eng_chan_hash(h->name,
		      h->len)), ENG_OP_HIST, h);
	return 0;
}

/*
 * Sends @rec's read through the broker: to the channel's owner, or to
 * Redis. A read answered at once with an error (our own shard owns the
 * channel, or the post failed) is not answered here, from inside
 * whatever registered the channel (its answer drops the subscription,
 * and maybe the channel with it): it waits, failed, for the next tick.
 */
static void send_rec(struct eng_shard *s, struct eng_hrec *rec)
{
	struct eng_hreq *h = rec->h;

	rec->h = NULL;
	rec->sent = h;
	s->hists->sending = true;
	if (s->eng->broker->hist_read(s, h) < 0) {
		h->status = ENG_HREQ_NOMEM;
		answered(s, h);
	}
	s->hists->sending = false;
}

/*
 * A recovery holds its subscription's deliveries from the start and
 * sends its read only once the owner (and, with Redis, Redis) has
 * registered this shard's interest in the channel: every message is then
 * either in what the read returns or among those held. A read sent
 * earlier could reach the owner before the interest (after an
 * unsubscribe whose withdrawal is still on its way, say), and the
 * messages between would be in neither.
 */
static int recover_ask(struct eng_shard *s, struct eng_conn *c,
		       struct eng_hreq *h)
{
	struct eng_chan *ch = eng_chan_find(&s->chans, h->name, h->len,
					    eng_chan_hash(h->name, h->len));
	struct eng_sub *sub = ch ? eng_sub_find(c, ch) : NULL;
	struct eng_hrec *rec = eng_malloc(sizeof(*rec));

	if (!sub || !rec) {
		eng_free(rec);
		eng_free(h);
		return -ENOMEM;
	}
	memset(rec, 0, sizeof(*rec));
	eng_catchup_init(&rec->cu, &eng_hist_frame_ops, ENG_HIST_HOLD);
	eng_catchup_begin(&rec->cu);
	rec->sub = sub;
	rec->h = h;
	rec->next = s->hists->recs;
	s->hists->recs = rec;
	sub->recovering = ENG_SUB_HOLDING;
	if (ch->registered && !ch->pending)
		send_rec(s, rec);
	return 0;
}

void eng_hist_registered(struct eng_shard *s, struct eng_chan *ch)
{
	struct eng_hrec *rec, *next;

	for (rec = s->hists->recs; rec; rec = next) {
		next = rec->next;	/* a failure is only marked: see send_rec */
		if (rec->h && !rec->failed && rec->sub->chan == ch)
			send_rec(s, rec);
	}
}

/* @f was delivered to @sub while its read is out: it waits for it. */
static void hold(struct eng_shard *s, struct eng_sub *sub, struct eng_buf *f)
{
	struct eng_hrec *rec;

	for (rec = s->hists->recs; rec && rec->sub != sub; rec = rec->next)
		;
	if (!rec)
		return;
	switch (eng_catchup_live(&rec->cu, f)) {
	case ENG_CU_HELD:
		eng_buf_get(f);		/* the reference the catch-up keeps */
		break;
	case ENG_CU_FULL:		/* recovered:false, and live from there */
		eng_catchup_drop(&rec->cu);
		break;
	}
}

bool eng_hist_pass(struct eng_shard *s, struct eng_sub *sub,
		   struct eng_buf *f)
{
	struct eng_hrec *rec;

	if (sub->recovering == ENG_SUB_RECOVERING)
		return false;
	if (sub->recovering == ENG_SUB_HOLDING) {
		hold(s, sub, f);
		return false;
	}
	/* SKIPPING: the read was ahead of this shard's deliveries */
	rec = take_rec(s, sub, NULL);
	if (rec && eng_catchup_live(&rec->cu, f) == ENG_CU_SKIP) {
		rec->next = s->hists->recs;	/* not yet past it */
		s->hists->recs = rec;
		return false;
	}
	if (rec)
		free_rec(rec);
	sub->recovering = ENG_SUB_LIVE;
	return true;
}

struct eng_hreq *eng_hist_forget(struct eng_shard *s, struct eng_sub *sub)
{
	struct eng_hrec *rec = take_rec(s, sub, NULL);
	struct eng_hreq *h = NULL;

	if (!rec)
		return NULL;
	/* a read in flight finds no record: its answer says so then */
	h = rec->h;
	rec->h = NULL;
	free_rec(rec);
	return h;
}

/* The bucket of @slot's reads of the channel hashed @hash. */
static struct eng_hread **reads_of(struct eng_shard *s, uint32_t slot,
				   uint64_t hash)
{
	return &s->hists->reads[(hash ^ slot * 0x9e3779b9u) % READ_BUCKETS];
}

/* Whether @c has a read of the channel hashed @hash in flight. */
static bool reading(struct eng_shard *s, struct eng_conn *c, uint64_t hash,
		    const char *name, size_t len)
{
	uint32_t slot = eng_slot(s, c);
	struct eng_chan *ch = eng_chan_find(&s->chans, name, len, hash);
	struct eng_sub *sub = ch ? eng_sub_find(c, ch) : NULL;

	if (sub && sub->recovering == ENG_SUB_HOLDING)
		return true;	/* a recovery waiting for its answer */
	for (struct eng_hread *r = *reads_of(s, slot, hash); r; r = r->next)
		if (r->slot == slot && r->gen == c->gen && r->hash == hash)
			return true;
	return false;
}

bool eng_hist_busy(const struct eng_shard *s, const struct eng_conn *c)
{
	return s->hists && s->hists->nreads &&
	       s->hists->nreads[c - s->conns];
}

/* Takes the record of history read @h off its list; NULL: none. */
static struct eng_hread *read_take(struct eng_shard *s,
				   const struct eng_hreq *h)
{
	struct eng_hread **pp = reads_of(s, h->slot,
					 eng_chan_hash(h->name, h->len));

	for (; *pp; pp = &(*pp)->next) {
		struct eng_hread *r = *pp;

		if (r->h == h) {
			*pp = r->next;
			if (s->hists->nreads)
				s->hists->nreads[r->slot]--;
			return r;
		}
	}
	return NULL;
}

int eng_hist_ask(struct eng_shard *s, struct eng_conn *c, unsigned kind,
		 const char *name, size_t len, uint64_t after,
		 const char *epoch, size_t elen, uint32_t max,
		 const char *seq, size_t seq_len)
{
	uint64_t hash = eng_chan_hash(name, len);
	struct eng_hread *r;
	struct eng_hreq *h;
	size_t room;

	if (len > ENG_CHAN_MAX || seq_len > sizeof(h->seq) ||
	    elen > ENG_EPOCH_LEN)
		return -EINVAL;
	if (kind != ENG_HREQ_RECOVER && reading(s, c, hash, name, len))
		return -EBUSY;
	if (kind != ENG_HREQ_RECOVER && s->hists->nreads &&
	    s->hists->nreads[eng_slot(s, c)] >= ENG_HIST_READS)
		return -EAGAIN;
	h = eng_mail_alloc(&s->mail, sizeof(*h));
	if (!h)
		return -ENOMEM;
	memset(h, 0, sizeof(*h));
	h->slot = eng_slot(s, c);
	h->gen = c->gen;
	h->from = (uint16_t)s->id;
	h->kind = (uint8_t)kind;
	h->len = (uint8_t)len;
	memcpy(h->name, name, len);
	h->seq_len = (uint8_t)seq_len;
	if (seq_len)	/* @seq is NULL without one */
		memcpy(h->seq, seq, seq_len);
	if (elen)
		memcpy(h->epoch, epoch, elen);
	h->after = after;
	h->max = max;
	/* what @c has room for now; the answer is fitted again on arrival */
	room = hist__room(s, c, ENG_HIST_SLACK);
	if (kind != ENG_HREQ_RECOVER && room > ENG_HIST_PAGE)
		room = ENG_HIST_PAGE;
	h->max_bytes = room > UINT32_MAX ? UINT32_MAX : (uint32_t)room;
	h->lone = !c->queued;
	if (kind == ENG_HREQ_RECOVER)
		return recover_ask(s, c, h);
	r = eng_malloc(sizeof(*r));
	if (!r) {
		eng_free(h);
		return -ENOMEM;
	}
	r->h = h;
	r->slot = h->slot;
	r->gen = h->gen;
	r->hash = hash;
	memcpy(r->epoch, h->epoch, sizeof(r->epoch));
	r->next = *reads_of(s, h->slot, hash);
	*reads_of(s, h->slot, hash) = r;	/* first: the answer may be ours */
	if (s->hists->nreads)
		s->hists->nreads[h->slot]++;
	if (s->eng->broker->hist_read(s, h) < 0) {
		eng_free(read_take(s, h));
		eng_free(h);
		return -ENOMEM;
	}
	return 0;
}

int eng_hist_judge(const char *asked, uint64_t after, const char *epoch,
		   uint64_t top, uint64_t first, uint64_t last)
{
	if (!epoch || strcmp(epoch, asked))
		return ENG_HREQ_GAP;		/* another history now */
	if (after > top)
		return ENG_HREQ_FUTURE;
	if (after < top && (first != after + 1 || last != top))
		return ENG_HREQ_GAP;		/* some are gone already */
	return ENG_HREQ_OK;
}

/* On the owner: read what @h asks for, then send it back. */
static void answer(struct eng_shard *s, struct eng_hreq *h)
{
	struct eng_chan *ch = eng_chan_find(&s->chans, h->name, h->len,
					    eng_chan_hash(h->name, h->len));
	uint64_t top, oldest, after = h->after;
	const char *epoch = hist_top(ch, &top, &oldest);
	uint32_t max = h->max;
	int got;

	if (h->kind == ENG_HREQ_HISTORY) {
		after = top > max ? top - max : 0;
	} else if (h->kind == ENG_HREQ_SINCE) {
		if (h->epoch[0] && (!epoch || strcmp(epoch, h->epoch)))
			max = 0;	/* another history: its offsets */
	} else {
		/* the ring has every offset from its oldest up to top */
		h->status = (uint8_t)eng_hist_judge(h->epoch, after, epoch, top,
						    after < oldest ? oldest :
						    after + 1, top);
		/* all of them: at most N */
		max = h->status == ENG_HREQ_OK ? (uint32_t)(top - after) : 0;
	}
	snprintf(h->epoch, sizeof(h->epoch), "%s", epoch ? epoch : "");
	h->top = top;
	h->after = after;
	got = max ? read_page(ch, h, after, max,
			      h->kind == ENG_HREQ_RECOVER) : 0;
	if (got < 0)
		h->status = ENG_HREQ_NOMEM;
	else
		h->n = (uint32_t)got;
	if (h->kind == ENG_HREQ_RECOVER && h->more)
		h->status = ENG_HREQ_BACKLOG;	/* more than it may hold */
	eng_mail_post(&s->mail, h->from, ENG_OP_HIST_ACK, h);
}

/* A recovering connection, as the consumer of its catch-up. */
struct to_conn {
	struct eng_shard *s;
	struct eng_conn *c;
};

/*
 * Queues frame @p on the connection @arg, taking the reference; false
 * once it closed (a slow consumer): the catch-up stops there.
 */
static bool queue_one(void *arg, void *p)
{
	struct to_conn *to = arg;

	ENG_STAT_ADD(to->s, delivered, 1);
	return eng_conn_queue(to->s, to->c, p) == 0;
}

/*
 * On the asking shard: the answer goes to its client; for a recovery,
 * @rec (taken off the list: freed here) holds what was delivered
 * meanwhile, and none means the subscription went first.
 */
static void deliver_answer(struct eng_shard *s, struct eng_hreq *h,
			   struct eng_hrec *rec)
{
	struct eng_conn *c = &s->conns[h->slot];
	struct eng_sub *sub = NULL;
	struct eng_buf *r;
	int code = 200;
	const char *msg = "ok";

	if (c->gen != h->gen || !eng_conn_alive(c))
		goto out;
	if (h->kind == ENG_HREQ_RECOVER && !rec) {
		/* its subscription went before the answer: said, not lost */
		code = 409;
		msg = "unsubscribed meanwhile";
	} else if (h->kind == ENG_HREQ_RECOVER) {
		sub = rec->sub;
		if (rec->cu.lost && h->status == ENG_HREQ_OK) {
			h->status = ENG_HREQ_GAP;	/* held too many */
			while (h->n)
				eng_buf_put(h->frames[--h->n]);
		}
	}
	if (code == 200 && (h->status == ENG_HREQ_OK ||
			    h->status == ENG_HREQ_BACKLOG))
		hist__fit(s, c, h);
	if (code != 200) {
		/* said above */
	} else if (h->status == ENG_HREQ_FUTURE) {
		code = 400;
		msg = "offset from the future";
	} else if (h->status == ENG_HREQ_NOMEM) {
		code = 503;
		msg = "out of memory";
	} else if (h->status == ENG_HREQ_BUSY) {
		code = 503;
		msg = "redis busy: too many reads in flight";
	} else if (h->status == ENG_HREQ_UNAVAIL) {
		code = 503;
		msg = "redis unavailable";
	}
	r = hist__reply(h, code, msg);
	if (!r) {
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		goto out;
	}
	if (sub && code != 200) {
		sub->recovering = ENG_SUB_RECOVERING;	/* @rec is ours */
		eng_unsubscribe_one(s, c, sub);	/* nothing else changes */
		sub = NULL;
	}
	if (eng_conn_queue(s, c, r) < 0)
		goto out;	/* closed: a slow consumer */
	if (sub) {
		struct to_conn to = { s, c };
		int went;

		/* the missed messages, then (sub live again) the rest */
		for (uint32_t i = 0; i < h->n; i++) {
			int ret = eng_catchup_read(&rec->cu, h->frames[i],
						   queue_one, &to);

			if (ret)
				h->frames[i] = NULL;	/* taken */
			if (ret < 0)
				goto out;
		}
		/* what the answer had is not sent again: held or to come */
		eng_catchup_at(&rec->cu, h->epoch, h->top);
		went = eng_catchup_release(&rec->cu, queue_one, &to);
		if (went < 0)
			goto out;
		sub->recovering = ENG_SUB_LIVE;
		if (!went) {
			/*
			 * The read was ahead of this shard's deliveries (Redis,
			 * or an answer's mail retried): those still to come
			 * were sent already.
			 */
			sub->recovering = ENG_SUB_SKIPPING;
			rec->next = s->hists->recs;
			s->hists->recs = rec;
			rec = NULL;
		}
	}
out:
	eng_hreq_free(h);
	if (rec)
		free_rec(rec);
}

/*
 * Read @h is answered (or failed): to its client, with the record of its
 * recovery if that still stands. One that failed while being sent waits
 * for the tick (see send_rec()).
 */
static void answered(struct eng_shard *s, struct eng_hreq *h)
{
	struct eng_hrec *rec = take_rec(s, NULL, h);
	struct eng_hread *r = h->kind != ENG_HREQ_RECOVER ? read_take(s, h) :
			      NULL;

	/* an answer from Redis says the epoch it read, not the one asked */
	if (r && h->kind == ENG_HREQ_SINCE && r->epoch[0] &&
	    strcmp(r->epoch, h->epoch)) {
		while (h->n)
			eng_buf_put(h->frames[--h->n]);
		h->more = 0;	/* none of them: nothing to read on */
	}
	eng_free(r);

	/* an answer of our own, read at once: only an error must wait */
	if (rec && s->hists->sending && (h->status == ENG_HREQ_FUTURE ||
					 h->status == ENG_HREQ_NOMEM ||
					 h->status == ENG_HREQ_UNAVAIL)) {
		rec->h = h;
		rec->sent = NULL;
		rec->failed = true;
		rec->next = s->hists->recs;
		s->hists->recs = rec;
		return;
	}
	deliver_answer(s, h, rec);
}

void eng_hist_unanswered(struct eng_shard *s, struct eng_hreq *h)
{
	if (h)
		deliver_answer(s, h, NULL);
}

/* Answers the reads that failed while being sent. */
static void answer_failed(struct eng_shard *s)
{
	for (unsigned i = 0; i < 1024; i++) {	/* the rest next tick */
		struct eng_hrec *rec = s->hists->recs;
		struct eng_hreq *h;

		while (rec && !rec->failed)
			rec = rec->next;
		if (!rec)
			return;
		take_rec(s, rec->sub, NULL);
		h = rec->h;
		rec->h = NULL;
		rec->failed = false;
		deliver_answer(s, h, rec);
	}
}

void eng_hist_redis_done(struct eng_shard *s, struct eng_hreq *h,
			 long long result)
{
	if (result < 0)
		h->status = ENG_HREQ_UNAVAIL;
	answered(s, h);
}

static void read_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	(void)res;
	if (op == ENG_OP_HIST)
		answer(self, ptr);
	else
		answered(self, ptr);
}

/* HIST never reached the owner: 503, and a held subscription goes. */
static void undo_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_hreq *h = ptr;

	(void)op;
	(void)res;
	h->status = ENG_HREQ_NOMEM;
	answered(self, h);
}

static void free_hreq(void *ptr)
{
	eng_hreq_free(ptr);
}

ENG_MAIL_TO_FIELD(hreq_from, struct eng_hreq, from)

/* A read that never reached the owner is answered; an answer goes again. */
static const struct eng_mail_kind kinds[] = {
	{ .op = ENG_OP_HIST, .name = "hist", .on_fail = ENG_MAIL_UNDO,
	  .read = read_mail, .undo = undo_mail, .free = free_hreq },
	{ .op = ENG_OP_HIST_ACK, .name = "hist_ack", .on_fail = ENG_MAIL_RETRY,
	  .read = read_mail, .free = free_hreq, .to = hreq_from },
};
ENG_MAIL_KINDS(kinds)
