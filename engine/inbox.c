/* SPDX-License-Identifier: MIT */
/*
 * inbox.c: users' offline inboxes on their owner shards (inbox.h).
 *
 * An inbox is a ring of (frame, N, tick) entries in N order; an ack turns
 * an entry into a hole (frame NULL), and holes at the oldest end are
 * dropped at once, those inside when room is needed. The ring doubles up
 * to --inbox-max. The shard keeps its inboxes in one list, least recently
 * pushed to first, which the tick walks for what the ttl ends and which
 * --inbox-memory evicts from: the bytes of the frames kept, the rings
 * and the inboxes are counted against the shard's share of it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "buf.h"
#include "catchup.h"
#include "chan.h"
#include "conn.h"
#include "inbox.h"
#include "inbox_int.h"
#include "json.h"
#include "lru.h"
#include "auth.h"
#include "broker.h"
#include "mail.h"
#include "rreq.h"
#include "user.h"
#include "zframe.h"


/*
 * With Redis: a new connection's unread, read a page at a time (each at
 * most a read's byte budget), the next only once the connection's
 * backlog has gone out, so that neither Redis nor the node holds more
 * than a page of it whatever the inbox keeps. Kept pushes that reach the
 * connection live meanwhile are not sent: Redis kept each before it was
 * published, so a page reads it, in order; one newer than the last page
 * asks for one more page. Once the last page is out, live ones the pages
 * had are skipped, until one they did not have comes (Redis may answer a
 * page before the live flow caught up with it). The catch-up (catchup.h)
 * holds none of them: it notes the newest held back, and its top is the
 * newest N the pages read, under their inbox's EPOCH ("": none yet).
 */
struct eng_iread {
	struct eng_iread *next;
	uint32_t slot, gen;
	uint8_t state;			/* READ_* */
	bool more;			/* the last page was cut */
	struct eng_catchup cu;		/* holds nothing: freed with this */
};

_Static_assert(ENG_INBOX_EPOCH_LEN <= ENG_CU_EPOCH, "an EPOCH fits");

enum {
	READ_PAGE,		/* a page is asked for */
	READ_SENDING,		/* a page answered, going out as it drains */
	READ_DONE,		/* all read: live ones pass, not those read */
};

/*
 * A new connection's unread that did not fit its send queue at once:
 * sent as it drains (eng_inbox_drain()), never more than half of
 * --max-pending-bytes queued, so that the 101 always goes first and live
 * messages keep room behind them.
 */
struct eng_backlog {
	struct eng_backlog *next;
	uint32_t slot, gen;		/* the connection */
	uint32_t i, n;			/* the next to send; how many */
	struct eng_buf **frames;	/* owned: references i..n-1 */
};


int eng_inbox_init(struct eng_shard *s)
{
	s->inboxes = eng_malloc(sizeof(*s->inboxes));
	if (!s->inboxes)
		return -ENOMEM;
	memset(s->inboxes, 0, sizeof(*s->inboxes));
	s->inboxes->budget = (size_t)(s->eng->cfg.inbox_memory /
				      s->eng->cfg.shards);
	return 0;
}

/* What a kept frame costs: the ring's entry is counted with the ring. */
static ssize_t frame_bytes(const struct eng_buf *f)
{
	return (ssize_t)eng_zframe_kept(f);
}

/* Lets go of @e's frame: acked, dropped or the shard stops. */
static void put_ent(struct eng_shard *s, struct eng_inbox *b,
		    struct eng_ient *e)
{
	inbox__held(s, -frame_bytes(e->f));
	eng_buf_put(e->f);
	e->f = NULL;
	b->live--;
	ENG_STAT_SUB(s, inbox_msgs, 1);
}

/* Why an unacked message goes unread. */
enum { DROP_MAX, DROP_TTL, DROP_MEMORY };

/* Drops the oldest entry; one unacked is counted as evicted (@why). */
static void drop_oldest(struct eng_shard *s, struct eng_inbox *b, int why)
{
	struct eng_ient *e = inbox__at(b, 0);

	if (e->f) {
		put_ent(s, b, e);
		b->evicted++;
		if (why == DROP_TTL)
			ENG_STAT_ADD(s, inbox_expired, 1);
		else if (why == DROP_MEMORY)
			ENG_STAT_ADD(s, inbox_mem_evicted, 1);
		else
			ENG_STAT_ADD(s, inbox_evicted, 1);
	}
	b->head = (b->head + 1) % b->cap;
	b->used--;
}

/* Holes at the oldest end serve nobody. */
static void trim_holes(struct eng_inbox *b)
{
	while (b->used && !inbox__at(b, 0)->f) {
		b->head = (b->head + 1) % b->cap;
		b->used--;
	}
}

static void free_box(struct eng_shard *s, struct eng_inbox *b)
{
	while (b->used)
		drop_oldest(s, b, DROP_MAX);
	eng_lru_del(b->shelved ? &s->inboxes->shelf : &s->inboxes->lru,
		    &b->lru);
	b->ch->inbox = NULL;
	inbox__held(s, -(ssize_t)(sizeof(*b) + (size_t)b->cap * sizeof(*b->ent)));
	eng_free(b->ent);
	eng_free(b);
}

static void free_backlog(struct eng_backlog *bl)
{
	while (bl->i < bl->n)
		eng_buf_put(bl->frames[bl->i++]);
	eng_free(bl->frames);
	eng_free(bl);
}

/* Takes @slot's backlog off its bucket; NULL: none. */
static struct eng_backlog *take_backlog(struct eng_shard *s, uint32_t slot)
{
	struct eng_backlog **pp = &s->inboxes->backlogs[slot %
							BACKLOG_BUCKETS];

	for (; *pp; pp = &(*pp)->next) {
		struct eng_backlog *bl = *pp;

		if (bl->slot == slot) {
			*pp = bl->next;
			s->inboxes->nbacklogs--;
			return bl;
		}
	}
	return NULL;
}

static void put_backlog(struct eng_shard *s, struct eng_backlog *bl)
{
	struct eng_backlog **head = &s->inboxes->backlogs[bl->slot %
							  BACKLOG_BUCKETS];

	bl->next = *head;
	*head = bl;
	s->inboxes->nbacklogs++;
}

void eng_inbox_exit(struct eng_shard *s)
{
	if (!s->inboxes)
		return;
	for (unsigned i = 0; i < BACKLOG_BUCKETS; i++)
		while (s->inboxes->backlogs[i]) {
			struct eng_backlog *bl = s->inboxes->backlogs[i];

			s->inboxes->backlogs[i] = bl->next;
			free_backlog(bl);
		}
	while (s->inboxes->reads) {
		struct eng_iread *r = s->inboxes->reads;

		s->inboxes->reads = r->next;
		eng_free(r);
	}
	while (s->inboxes->lru.head || s->inboxes->shelf.head) {
		struct eng_inbox *b = (struct eng_inbox *)(s->inboxes->lru.head ?
			s->inboxes->lru.head : s->inboxes->shelf.head);
		struct eng_chan *ch = b->ch;

		/* a restart loses them: documented, not evictions */
		while (b->used) {
			struct eng_ient *e = inbox__at(b, 0);

			if (e->f)
				put_ent(s, b, e);
			b->head = (b->head + 1) % b->cap;
			b->used--;
		}
		free_box(s, b);
		eng_chan_maybe_free(&s->chans, ch);
	}
	eng_free(s->inboxes);
	s->inboxes = NULL;
}

/*
 * Room for one more entry: holes inside go first, then the ring doubles
 * up to --inbox-max, then the oldest unacked goes.
 */
static int make_room(struct eng_shard *s, struct eng_inbox *b)
{
	uint32_t max = s->eng->cfg.inbox_max, cap, j = 0;
	struct eng_ient *ent;

	if (b->used < b->cap)
		return 0;
	if (b->live < b->used) {		/* compact in place */
		for (uint32_t i = 0; i < b->used; i++)
			if (inbox__at(b, i)->f)
				b->ent[(b->head + j++) % b->cap] = *inbox__at(b, i);
		b->used = j;
		return 0;
	}
	if (b->cap >= max) {
		drop_oldest(s, b, DROP_MAX);
		return 0;
	}
	cap = b->cap ? b->cap * 2 : 8;
	if (cap > max)
		cap = max;
	ent = eng_malloc((size_t)cap * sizeof(*ent));
	if (!ent) {
		if (!b->used)
			return -ENOMEM;
		drop_oldest(s, b, DROP_MAX);
		return 0;
	}
	for (uint32_t i = 0; i < b->used; i++)
		ent[i] = *inbox__at(b, i);
	inbox__held(s, (ssize_t)((size_t)(cap - b->cap) * sizeof(*ent)));
	eng_free(b->ent);
	b->ent = ent;
	b->cap = cap;
	b->head = 0;
	return 0;
}

static struct eng_inbox *new_box(struct eng_shard *s, struct eng_chan *ch)
{
	struct eng_inbox *b = eng_malloc(sizeof(*b));
	uint32_t r;

	if (!b)
		return NULL;
	memset(b, 0, sizeof(*b));
	b->ch = ch;
	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (uint32_t)(uintptr_t)b ^ s->tick;
	snprintf(b->epoch, sizeof(b->epoch), "%08x", r);
	ch->inbox = b;
	eng_lru_add_tail(&s->inboxes->lru, &b->lru);
	inbox__held(s, (ssize_t)sizeof(*b));
	return b;
}

/*
 * Over the shard's share of --inbox-memory: the users least recently
 * pushed to lose their oldest unacked (counted as evicted). An inbox
 * left empty gives back its ring and goes on the shelf, so that its user
 * still reads what went and acks keep their EPOCH; only when the shelf
 * alone is over the budget do its oldest go too. @b's newest message
 * stays.
 */
static void squeeze(struct eng_shard *s, struct eng_inbox *b)
{
	struct eng_inboxes *l = s->inboxes;

	while (l->held > l->budget) {
		struct eng_inbox *old = (struct eng_inbox *)l->lru.head;

		if (old && (old != b || b->used > 1) && old->used) {
			drop_oldest(s, old, DROP_MEMORY);
			trim_holes(old);
		} else if (old && old != b) {		/* empty: shelved */
			inbox__held(s, -(ssize_t)((size_t)old->cap *
					   sizeof(*old->ent)));
			eng_free(old->ent);
			old->ent = NULL;
			old->cap = old->head = 0;
			eng_lru_del(&l->lru, &old->lru);
			eng_lru_add_tail(&l->shelf, &old->lru);
			old->shelved = true;
		} else if (l->shelf.head) {
			struct eng_chan *ch;

			old = (struct eng_inbox *)l->shelf.head;
			ch = old->ch;
			free_box(s, old);
			eng_chan_maybe_free(&s->chans, ch);
		} else {
			return;
		}
	}
}

void eng_inbox_append(struct eng_shard *s, struct eng_chan *ch,
		      struct eng_buf *f)
{
	struct eng_inbox *b = ch ? ch->inbox : NULL;
	struct eng_ient *e;

	if (ch && !b)
		b = new_box(s, ch);
	if (!b || make_room(s, b) < 0)
		return;		/* "id":null: the template says so already */
	if (b->shelved) {	/* pushed to again: back on the list */
		eng_lru_del(&s->inboxes->shelf, &b->lru);
		eng_lru_add_tail(&s->inboxes->lru, &b->lru);
		b->shelved = false;
	} else {
		eng_lru_touch(&s->inboxes->lru, &b->lru);
	}
	e = inbox__at(b, b->used);
	e->f = eng_buf_get(f);
	e->n = ++b->last;
	e->tick = s->tick;
	b->used++;
	b->live++;
	b->last_tick = s->tick;
	ENG_STAT_ADD(s, inbox_msgs, 1);
	eng_inbox_stamp(f, b->epoch, e->n);
	if (ch->shards)		/* the twin first: it is counted too */
		eng_zframe_once(s, f, ch->shards);
	inbox__held(s, frame_bytes(f));
	squeeze(s, b);
}

void eng_inbox_replay(struct eng_chan *ch, struct eng_owner_mail *m)
{
	struct eng_inbox *b = ch->inbox;

	if (!b || !b->live)
		return;
	m->frames = eng_malloc((size_t)b->live * sizeof(*m->frames));
	if (!m->frames)
		return;
	for (uint32_t i = 0; i < b->used; i++)
		if (inbox__at(b, i)->f)
			m->frames[m->nframes++] = eng_buf_get(inbox__at(b, i)->f);
}

/* Ends, in the inboxes of @list, what @ttl (ticks) ends. */
static void age(struct eng_shard *s, struct eng_lru *list, uint32_t ttl)
{
	struct eng_inbox *b, *next;

	for (b = (struct eng_inbox *)list->head; b; b = next) {
		next = (struct eng_inbox *)b->lru.next;
		while (b->used && s->tick - inbox__at(b, 0)->tick >= ttl)
			drop_oldest(s, b, DROP_TTL);
		/*
		 * Kept empty for a ttl after its last message expired, so
		 * that an ack racing another device's finds its inbox and the
		 * user can still read what the ttl took.
		 */
		if (!b->used && s->tick - b->last_tick >= 2 * ttl) {
			struct eng_chan *ch = b->ch;

			free_box(s, b);
			eng_chan_maybe_free(&s->chans, ch);
		}
	}
}

void eng_inbox_tick(struct eng_shard *s)
{
	uint32_t ttl = s->eng->cfg.inbox_ttl_ms / ENG_TICK_MS;

	if (!s->inboxes || s->tick % (1000 / ENG_TICK_MS))
		return;		/* once a second */
	age(s, &s->inboxes->lru, ttl);
	age(s, &s->inboxes->shelf, ttl);	/* empty: the second ttl */
}

/* ---- acks and listings ---------------------------------------------------- */

/* "EPOCH-N" into @epoch and *@n; false when it is not an id. */
static bool parse_id(const struct json_slice *id, char *epoch, uint64_t *n)
{
	size_t i;

	if (id->len < ENG_INBOX_EPOCH_LEN + 2 || id->len > 40 ||
	    id->p[ENG_INBOX_EPOCH_LEN] != '-')
		return false;
	for (i = 0; i < ENG_INBOX_EPOCH_LEN; i++)
		if (!((id->p[i] >= '0' && id->p[i] <= '9') ||
		      (id->p[i] >= 'a' && id->p[i] <= 'f')))
			return false;
	memcpy(epoch, id->p, ENG_INBOX_EPOCH_LEN);
	epoch[ENG_INBOX_EPOCH_LEN] = '\0';
	*n = 0;
	for (i = ENG_INBOX_EPOCH_LEN + 1; i < id->len; i++) {
		uint64_t d = (uint64_t)(id->p[i] - '0');

		/* past UINT64_MAX is no id: never wrapped round to one */
		if (id->p[i] < '0' || id->p[i] > '9' ||
		    *n > (UINT64_MAX - d) / 10)
			return false;
		*n = *n * 10 + d;
	}
	return *n > 0;
}

int eng_inbox_ask(struct eng_shard *s, struct eng_conn *c, uint8_t kind,
		  const char *uid, size_t ulen, const struct json_slice *ids,
		  unsigned n, const char *seq, size_t seq_len)
{
	char epoch[ENG_INBOX_EPOCH_LEN + 1];
	struct eng_ibreq *q;

	if (n > ENG_INBOX_IDS)
		return -E2BIG;
	if (seq_len > sizeof(q->seq))
		return -EINVAL;
	q = eng_mail_alloc(&s->mail, sizeof(*q));
	if (!q)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		if (!parse_id(&ids[i], epoch, &q->ids[i]) ||
		    (i && strcmp(epoch, q->epoch))) {
			/* not an id, or two inboxes': one is not this one */
			eng_free(q);
			return -EINVAL;
		}
		memcpy(q->epoch, epoch, sizeof(epoch));
	}
	q->n = n;
	q->kind = kind;
	q->http = c->kind == ENG_CONN_K_HTTP;
	q->slot = eng_slot(s, c);
	q->gen = c->gen;
	q->from = (uint16_t)s->id;
	q->len = (uint8_t)eng_user_key(q->name, uid, ulen);
	q->seq_len = (uint8_t)seq_len;
	if (seq_len)		/* HTTP asks with none: NULL */
		memcpy(q->seq, seq, seq_len);
	if (q->http)		/* before: an answer may come at once */
		c->flags |= ENG_CONN_F_WAIT;
	if (s->eng->broker->inbox_ask(s, q, uid, ulen) < 0) {
		c->flags &= ~ENG_CONN_F_WAIT;
		eng_free(q);
		return -ENOMEM;
	}
	return 0;
}

int eng_inbox_owner_ask(struct eng_shard *s, struct eng_ibreq *q,
			const char *uid, size_t ulen)
{
	(void)uid;	/* q->name has the user's key */
	(void)ulen;
	eng_mail_post(&s->mail, eng_mail_owner(s->eng, eng_chan_hash(q->name,
		      q->len)), ENG_OP_INBOX, q);
	return 0;
}

/* ---- a backlog: the unread, as the connection drains --------------------- */

/*
 * Queues @bl's next frames on @c while half of --max-pending-bytes has
 * room for them (one whatever its size into an empty queue). True when
 * nothing is left to send: all went, or @c takes no more.
 */
static bool send_some(struct eng_shard *s, struct eng_conn *c,
		      struct eng_backlog *bl)
{
	uint64_t half = s->eng->cfg.max_pending / 2;

	while (bl->i < bl->n) {
		struct eng_buf *f = bl->frames[bl->i];

		if (c->gen != bl->gen || !eng_conn_alive(c) ||
		    c->state == ENG_CONN_DRAIN)
			return true;
		if (c->queued && (uint64_t)c->queued + f->len > half)
			return false;
		bl->frames[bl->i++] = NULL;
		ENG_STAT_ADD(s, delivered, 1);
		if (eng_conn_queue(s, c, f) < 0)
			return true;
	}
	return true;
}

void eng_inbox_backlog(struct eng_shard *s, struct eng_conn *c,
		       struct eng_buf **frames, uint32_t n)
{
	struct eng_backlog *bl = n ? eng_malloc(sizeof(*bl)) : NULL;

	if (!bl) {	/* none, or no memory: they stay for the next one */
		for (uint32_t i = 0; i < n; i++)
			eng_buf_put(frames[i]);
		eng_free(frames);
		return;
	}
	memset(bl, 0, sizeof(*bl));
	bl->slot = eng_slot(s, c);
	bl->gen = c->gen;
	bl->n = n;
	bl->frames = frames;
	if (send_some(s, c, bl)) {
		free_backlog(bl);
		return;
	}
	put_backlog(s, bl);
}

static void page_sent(struct eng_shard *s, struct eng_conn *c);

void eng_inbox_drain(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_backlog *bl;
	bool all;

	/* a send that completes at once may come back here: once is enough */
	if (!s->inboxes || !s->inboxes->nbacklogs || s->inboxes->draining)
		return;
	bl = take_backlog(s, eng_slot(s, c));
	if (!bl)
		return;
	s->inboxes->draining = true;
	all = send_some(s, c, bl);
	if (all)
		free_backlog(bl);
	else
		put_backlog(s, bl);
	s->inboxes->draining = false;
	if (all)
		page_sent(s, c);	/* with Redis: the next page, if any */
}

/* ---- with Redis: the inbox lives there ------------------------------------ */

/* Kept pushes as a catch-up's items: placed by their id. */
static uint64_t kept_pos(const void *p, char epoch[ENG_CU_EPOCH + 1])
{
	return eng_inbox_id_of(p, epoch);
}

static const struct eng_catchup_ops kept_ops = { kept_pos, NULL };

/* @slot's read record; NULL: none. */
static struct eng_iread *find_read(struct eng_shard *s, uint32_t slot)
{
	struct eng_iread *r = s->inboxes->reads;

	while (r && r->slot != slot)
		r = r->next;
	return r;
}

/* Takes @r off the shard's list and frees it. */
static void end_read(struct eng_shard *s, struct eng_iread *r)
{
	struct eng_iread **pp = &s->inboxes->reads;

	while (*pp != r)
		pp = &(*pp)->next;
	*pp = r->next;
	eng_free(r);
}

/*
 * Asks Redis for @c's next page: the unread after @r's top. Returns 0, or
 * -ENOMEM with nothing asked. @r is not to be used after a 0: a post
 * that fails is answered at once (replayed()), which ends it.
 */
static int ask_page(struct eng_shard *s, struct eng_conn *c,
		    struct eng_iread *r)
{
	const struct eng_auth *a = c->auth;
	struct eng_ibreq *q = eng_mail_alloc(&s->mail, sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->slot = r->slot;
	q->gen = r->gen;
	q->from = (uint16_t)s->id;
	q->kind = ENG_IB_REPLAY;
	q->len = (uint8_t)eng_user_key(q->name, a->uid, a->uid_len);
	q->after = r->cu.top.n;
	/* an inbox's EPOCH: at most ENG_INBOX_EPOCH_LEN, NUL included */
	memcpy(q->epoch, r->cu.top.epoch, ENG_INBOX_EPOCH_LEN + 1);
	r->state = READ_PAGE;
	/* those held back so far Redis had already: this page reads them */
	eng_catchup_begin(&r->cu);
	if (eng_inbox_redis_ask(s, q, a->uid, a->uid_len) < 0) {
		eng_free(q);
		return -ENOMEM;
	}
	return 0;
}

void eng_inbox_redis_replay(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_iread *r = eng_malloc(sizeof(*r));

	if (!r)			/* they stay for the next connection */
		return;
	memset(r, 0, sizeof(*r));
	eng_catchup_init(&r->cu, &kept_ops, 0);
	r->slot = eng_slot(s, c);
	r->gen = c->gen;
	r->next = s->inboxes->reads;
	s->inboxes->reads = r;
	if (ask_page(s, c, r) < 0)
		end_read(s, r);
}

/* Whether a backlog of @slot's is still going out. */
static bool backlog_left(struct eng_shard *s, uint32_t slot)
{
	struct eng_backlog *bl = s->inboxes->backlogs[slot % BACKLOG_BUCKETS];

	while (bl && bl->slot != slot)
		bl = bl->next;
	return bl != NULL;
}

bool eng_inbox_busy(struct eng_shard *s, const struct eng_conn *c)
{
	uint32_t slot = (uint32_t)(c - s->conns);
	struct eng_iread *r;

	if (!s->inboxes)
		return false;
	if (s->inboxes->nbacklogs && backlog_left(s, slot))
		return true;
	r = s->inboxes->reads ? find_read(s, slot) : NULL;
	return r && r->gen == c->gen;
}

/*
 * @c's backlog went out (or it had none): with Redis, the page it came
 * from is sent, so the next is asked for, when the last was cut or a
 * live push newer than it was held back; else the replay is done.
 */
static void page_sent(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_iread *r;

	if (!s->inboxes->reads)
		return;
	r = find_read(s, eng_slot(s, c));
	if (!r || r->gen != c->gen || r->state != READ_SENDING ||
	    backlog_left(s, r->slot))
		return;
	if (!eng_conn_deliverable(c)) {
		end_read(s, r);
		return;
	}
	if (r->more || eng_catchup_behind(&r->cu)) {
		if (ask_page(s, c, r) < 0)
			end_read(s, r);	/* the rest stay unread */
		return;
	}
	if (!r->cu.top.n) {
		end_read(s, r);		/* nothing read: nothing to skip */
	} else {
		r->state = READ_DONE;
		eng_catchup_end(&r->cu);
	}
}

bool eng_inbox_pass(struct eng_shard *s, uint32_t slot, struct eng_buf *f)
{
	char epoch[ENG_INBOX_EPOCH_LEN + 1];
	struct eng_iread *r;
	uint64_t n;

	if (!s->inboxes || !s->inboxes->reads)
		return true;
	r = find_read(s, slot);
	if (!r || r->gen != s->conns[slot].gen)
		return true;
	n = eng_inbox_id_of(f, epoch);
	if (!n)
		return true;		/* no id: Redis did not keep it */
	/* NOTED: a page reads it, after those before it; SKIP: one had it */
	if (eng_catchup_live(&r->cu, f) != ENG_CU_PASS)
		return false;
	end_read(s, r);			/* caught up */
	return true;
}

void eng_inbox_forget(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_iread *r;
	struct eng_backlog *bl;

	if (!s->inboxes)
		return;
	bl = s->inboxes->draining || !s->inboxes->nbacklogs ? NULL :
	     take_backlog(s, eng_slot(s, c));
	if (bl)
		free_backlog(bl);	/* a stale one (another gen) too */
	if (!s->inboxes->reads)
		return;
	r = find_read(s, eng_slot(s, c));
	if (r && r->gen == c->gen)	/* not another's */
		end_read(s, r);
}

/*
 * A page of a new connection's unread, read from Redis (@result < 0: it
 * could not be): out to the connection as it drains, and once it is out
 * the next page (page_sent()). A failed page ends the replay; what it did
 * not send stays unread, for the next connection.
 */
static void replayed(struct eng_shard *s, struct eng_ibreq *q,
		     long long result)
{
	struct eng_iread *r = find_read(s, q->slot);
	struct eng_conn *c = &s->conns[q->slot];

	if (!r || r->gen != q->gen || r->state != READ_PAGE) {
		eng_ibreq_free(q);	/* the connection is gone */
		return;
	}
	if (result < 0 || c->gen != q->gen || !eng_conn_deliverable(c)) {
		end_read(s, r);
		eng_ibreq_free(q);
		return;
	}
	r->state = READ_SENDING;
	r->more = q->more;
	eng_catchup_at(&r->cu, q->epoch, q->after);
	eng_inbox_backlog(s, c, q->frames, q->nframes);
	q->frames = NULL;
	q->nframes = 0;
	eng_ibreq_free(q);
	/* all of it queued at once, or none: ask on (r may be gone) */
	page_sent(s, c);
}

void eng_inbox_redis_done(struct eng_shard *s, struct eng_ibreq *q,
			  long long result)
{
	if (q->kind == ENG_IB_REPLAY) {
		replayed(s, q, result);
		return;
	}
	if (result >= 0) {
		inbox__answer(s, q);
		return;
	}
	inbox__unavailable(s, q);	/* Redis could not be asked */
}

/* The entry with @n, found by bisection (the ring is in N order). */
static struct eng_ient *find(struct eng_inbox *b, uint64_t n)
{
	uint32_t lo = 0, hi = b->used;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (inbox__at(b, mid)->n < n)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->used && inbox__at(b, lo)->n == n ? inbox__at(b, lo) : NULL;
}

/* On the owner: acks or lists, then the answer goes back. */
static void answer(struct eng_shard *s, struct eng_ibreq *q)
{
	struct eng_chan *ch = eng_chan_find(&s->chans, q->name, q->len,
					    eng_chan_hash(q->name, q->len));
	struct eng_inbox *b = ch ? ch->inbox : NULL;

	if (q->kind == ENG_IB_ACK) {
		/* all known, or nothing changes */
		for (uint32_t i = 0; i < q->n; i++)
			if (!b || strcmp(q->epoch, b->epoch) ||
			    q->ids[i] > b->last)
				q->status = ENG_IB_UNKNOWN;
		for (uint32_t i = 0; b && !q->status && i < q->n; i++) {
			struct eng_ient *e = find(b, q->ids[i]);

			if (e && e->f) {	/* else acked or gone already */
				put_ent(s, b, e);
				q->acked++;
			}
		}
		if (b)
			trim_holes(b);
		q->n = 0;
	} else {
		q->n = 0;
		for (uint32_t i = 0; b && i < b->used && q->n < ENG_INBOX_IDS;
		     i++)
			if (inbox__at(b, i)->f)
				q->ids[q->n++] = inbox__at(b, i)->n;
	}
	snprintf(q->epoch, sizeof(q->epoch), "%s", b ? b->epoch : "");
	q->unread = b ? b->live : 0;
	q->evicted = b ? b->evicted : 0;
	eng_mail_post(&s->mail, q->from, ENG_OP_INBOX_ACK, q);
}

static void read_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	(void)res;
	if (op == ENG_OP_INBOX)
		answer(self, ptr);
	else
		inbox__answer(self, ptr);
}

static void free_ibreq(void *ptr)
{
	eng_ibreq_free(ptr);
}

/* INBOX goes to the user's owner; its answer back to the asker. */
ENG_MAIL_TO_OWNER(ibreq_to, struct eng_ibreq)
ENG_MAIL_TO_FIELD(ibreq_from, struct eng_ibreq, from)

/* Both go again when their post fails: neither carries an order. */
static const struct eng_mail_kind kinds[] = {
	{ .op = ENG_OP_INBOX, .name = "inbox", .on_fail = ENG_MAIL_RETRY,
	  .read = read_mail, .free = free_ibreq, .to = ibreq_to },
	{ .op = ENG_OP_INBOX_ACK, .name = "inbox_ack",
	  .on_fail = ENG_MAIL_RETRY, .read = read_mail, .free = free_ibreq,
	  .to = ibreq_from },
};
ENG_MAIL_KINDS(kinds)
