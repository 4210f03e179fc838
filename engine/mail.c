/* SPDX-License-Identifier: MIT */
/*
 * mail.c: posting between rings, the table of mail kinds, retries and
 * fault injection. See mail.h for the rules every kind follows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "buf.h"
#include "chan.h"
#include "hist.h"
#include "inbox.h"
#include "mail.h"
#include "pub.h"
#include "rreq.h"
#include "sub.h"
#include "ud.h"
#include "user.h"

/* What a failed post of a kind does. */
enum {
	MAIL_LOSE = 0,	/* freed, counted: a late delivery breaks order */
	MAIL_RETRY,	/* listed and posted again at the next tick */
	MAIL_UNDO,	/* the waiter is told now (503, a close, an error) */
};

struct mail_kind {
	const char *name;	/* in /stats */
	bool to_bridge;		/* read by the bridge; else by a shard */
	uint8_t on_fail;	/* MAIL_* */
	eng_mail_fn *read;	/* the reader's handler */
	eng_mail_fn *undo;	/* MAIL_UNDO: on the poster, owns the mail */
	eng_mail_fn *refresh;	/* MAIL_RETRY: bring up to date first */
};

#define SHARD(n, fail, fn)	{ n, false, fail, fn, NULL, NULL }

static const struct mail_kind kinds[ENG_OP_MAX] = {
	[ENG_OP_PUB] = { "pub", false, MAIL_UNDO, eng_pub_mail, eng_pub_undo,
			 NULL },
	[ENG_OP_PUB_ACK] = SHARD("pub_ack", MAIL_RETRY, eng_pub_mail),
	[ENG_OP_DELIVER] = SHARD("deliver", MAIL_LOSE, eng_pub_mail),
	[ENG_OP_INTEREST] = SHARD("interest", MAIL_RETRY, eng_sub_mail),
	[ENG_OP_INTEREST_ACK] = SHARD("interest_ack", MAIL_RETRY,
				      eng_sub_mail),
	[ENG_OP_R_SUB_ACK] = SHARD("r_sub_ack", MAIL_RETRY, eng_sub_mail),
	[ENG_OP_R_REPLY] = SHARD("r_reply", MAIL_RETRY, eng_rreq_mail),
	[ENG_OP_USER] = SHARD("user", MAIL_RETRY, eng_user_mail),
	[ENG_OP_USER_ACK] = SHARD("user_ack", MAIL_RETRY, eng_user_mail),
	[ENG_OP_R_SUBSCRIBE] = { "r_subscribe", true, MAIL_RETRY,
				 eng_bridge_mail, NULL, eng_sub_refresh },
	[ENG_OP_R_REQUEST] = { "r_request", true, MAIL_UNDO, eng_bridge_mail,
			       eng_rreq_undo, NULL },
	[ENG_OP_R_PRESENCE] = { "r_presence", true, MAIL_RETRY,
				eng_bridge_mail, NULL, eng_user_refresh },
	[ENG_OP_HIST] = { "hist", false, MAIL_UNDO, eng_hist_mail,
			  eng_hist_undo, NULL },
	[ENG_OP_HIST_ACK] = SHARD("hist_ack", MAIL_RETRY, eng_hist_mail),
	[ENG_OP_INBOX] = SHARD("inbox", MAIL_RETRY, eng_inbox_mail),
	[ENG_OP_INBOX_ACK] = SHARD("inbox_ack", MAIL_RETRY, eng_inbox_mail),
};

/* Mail whose post failed, to be posted again. */
struct eng_retry {
	struct eng_retry *next;
	unsigned op;
	unsigned to;			/* a shard, or ENG_BRIDGE */
	void *ptr;			/* owned: the mail */
};

static atomic_uint_fast64_t failed_n[ENG_OP_MAX], retried_n[ENG_OP_MAX];

static const struct mail_kind *kind_of(unsigned op)
{
	return op < ENG_OP_MAX && kinds[op].read ? &kinds[op] : NULL;
}

static struct ring *ring_of(struct eng *e, unsigned to)
{
	return to == ENG_BRIDGE ? eng_bridge_ring(e) : &e->shards[to].ring;
}

/* Frees mail @op carrying @ptr, telling nobody. */
static void free_mail(unsigned op, void *ptr)
{
	switch (op) {
	case ENG_OP_DELIVER:
		eng_buf_put(ptr);
		break;
	case ENG_OP_PUB:
	case ENG_OP_PUB_ACK: {
		struct eng_pub *pub = ptr;

		eng_buf_put(pub->reply);
		eng_buf_put(pub->frame);
		eng_free(pub);
		break;
	}
	case ENG_OP_R_REQUEST:
	case ENG_OP_R_REPLY: {
		struct eng_rreq *p = ptr;

		eng_buf_put(p->ok);
		eng_buf_put(p->err);
		eng_hreq_free(p->hreq);
		eng_ibreq_free(p->ibreq);
		eng_free(p);
		break;
	}
	case ENG_OP_HIST:
	case ENG_OP_HIST_ACK:
		eng_hreq_free(ptr);
		break;
	case ENG_OP_INBOX:
	case ENG_OP_INBOX_ACK:
		eng_ibreq_free(ptr);
		break;
	case ENG_OP_USER:
	case ENG_OP_USER_ACK: {
		struct eng_owner_mail *m = ptr;

		for (uint32_t i = 0; i < m->nframes; i++)
			eng_buf_put(m->frames[i]);
		eng_free(m->frames);
		eng_free(m);
		break;
	}
	default:	/* owner mail, rsub, rpres: flat structs */
		eng_free(ptr);
		break;
	}
}

/* Where mail @op carrying @ptr goes: what a retry posts it to. */
static unsigned to_of(const struct eng *e, unsigned op, const void *ptr)
{
	const struct eng_owner_mail *m = ptr;

	switch (op) {
	case ENG_OP_PUB:
		return ((const struct eng_pub *)ptr)->owner;
	case ENG_OP_PUB_ACK:
		return ((const struct eng_pub *)ptr)->from;
	case ENG_OP_INTEREST_ACK:
	case ENG_OP_USER_ACK:
		return m->from;
	case ENG_OP_INTEREST:
	case ENG_OP_USER:	/* the owner of the channel, or of the user */
		return eng_mail_owner(e, eng_chan_hash(m->name, m->len));
	case ENG_OP_R_SUB_ACK:
		return ((const struct eng_rsub *)ptr)->from;
	case ENG_OP_R_REPLY:
		return ((const struct eng_rreq *)ptr)->from;
	case ENG_OP_HIST: {
		const struct eng_hreq *h = ptr;

		return eng_mail_owner(e, eng_chan_hash(h->name, h->len));
	}
	case ENG_OP_HIST_ACK:
		return ((const struct eng_hreq *)ptr)->from;
	case ENG_OP_INBOX: {
		const struct eng_ibreq *q = ptr;

		return eng_mail_owner(e, eng_chan_hash(q->name, q->len));
	}
	case ENG_OP_INBOX_ACK:
		return ((const struct eng_ibreq *)ptr)->from;
	default:
		return ENG_BRIDGE;
	}
}

/* ---- fault injection (test builds) -------------------------------------- */

#ifdef RC_FAULT_INJECT
static unsigned fault_every;			/* 0: off */
static atomic_uint fault_count[ENG_OP_MAX];

void eng_mail_fault_init(void)
{
	const char *v = getenv("RINGCAST_FAULT_MAIL");

	fault_every = v ? (unsigned)strtoul(v, NULL, 10) : 0;
	if (fault_every)
		fprintf(stderr, "ringcast: test build: every %uth post of "
			"each mail op fails\n", fault_every);
}

/*
 * Every fault_every-th post of each op fails, in turn at once (-EBUSY,
 * as when no SQE can be had) and as the failure completion a refused
 * MSG_RING brings back, so both failure paths run for real. Counting per
 * op makes every kind fail, however rare, once it is posted N times.
 */
static bool fault(struct eng_mailer *m, unsigned op, void *ptr, int *ret)
{
	uint64_t self_ud = ring_ud_ptr(op | ENG_OP_FAILED, ptr);
	unsigned n;

	if (!fault_every)
		return false;
	n = atomic_fetch_add_explicit(&fault_count[op], 1,
				      memory_order_relaxed) + 1;
	if (n % fault_every)
		return false;
	if ((n / fault_every) & 1)
		*ret = -EBUSY;
	else
		*ret = ring_mbox_post(m->ring, m->ring, self_ud, -EOVERFLOW,
				      self_ud);
	return true;
}
#endif

/* ---- failure and retry --------------------------------------------------- */

/* Lists @ptr to be posted again; false when out of memory or stopping. */
static bool retry_later(struct eng_mailer *m, unsigned op, void *ptr)
{
	struct eng_retry *r;

	if (*m->stopping)
		return false;
	r = eng_malloc(sizeof(*r));
	if (!r)
		return false;
	r->op = op;
	r->to = to_of(m->eng, op, ptr);
	r->ptr = ptr;
	r->next = m->retry;
	m->retry = r;
	return true;
}

/* A post of ours failed with @res: count it, then retry, undo or lose it. */
static void failed(struct eng_mailer *m, unsigned op, void *ptr, int res)
{
	const struct mail_kind *k = kind_of(op);

	atomic_fetch_add_explicit(m->errors, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&failed_n[op], 1, memory_order_relaxed);
	/* Once per poster: the rest are counted in /stats ("mail"). */
	if (!m->logged) {
		char who[32];

		m->logged = true;
		if (m->id == ENG_BRIDGE)
			snprintf(who, sizeof(who), "redis bridge");
		else
			snprintf(who, sizeof(who), "shard %u", m->id);
		fprintf(stderr, "ringcast: %s: a mail post (%s) failed: %s; "
			"further failures are counted in /stats\n", who,
			k->name, strerror(-res));
	}
	if (k->on_fail == MAIL_UNDO)
		k->undo(m->self, op, ptr, res);
	else if (k->on_fail != MAIL_RETRY || !retry_later(m, op, ptr))
		free_mail(op, ptr);
}

void eng_mail_retry(struct eng_mailer *m)
{
	struct eng_retry *r = m->retry;

	m->retry = NULL;	/* what fails again is listed anew */
	while (r) {
		struct eng_retry *next = r->next;
		const struct mail_kind *k = kind_of(r->op);

		if (k->refresh)
			k->refresh(m->self, r->op, r->ptr, 0);
		atomic_fetch_add_explicit(&retried_n[r->op], 1,
					  memory_order_relaxed);
		eng_mail_post(m, r->to, r->op, r->ptr);
		eng_free(r);
		r = next;
	}
}

/* ---- posting and reading -------------------------------------------------- */

void eng_mail_init(struct eng_mailer *m, struct eng *e, struct ring *ring,
		   unsigned id, void *self, const bool *stopping,
		   atomic_uint_fast64_t *errors)
{
	memset(m, 0, sizeof(*m));
	m->eng = e;
	m->ring = ring;
	m->id = (uint16_t)id;
	m->self = self;
	m->stopping = stopping;
	m->errors = errors;
}

void eng_mail_exit(struct eng_mailer *m)
{
	while (m->retry) {
		struct eng_retry *next = m->retry->next;

		free_mail(m->retry->op, m->retry->ptr);
		eng_free(m->retry);
		m->retry = next;
	}
}

void *eng_mail_alloc(struct eng_mailer *m, size_t size)
{
	void *p = eng_malloc(size);

	if (!p) {
		atomic_fetch_add_explicit(m->errors, 1, memory_order_relaxed);
		return NULL;
	}
	return memset(p, 0, size);
}

void eng_mail_post(struct eng_mailer *m, unsigned to, unsigned op, void *ptr)
{
	const struct mail_kind *k = kind_of(op);
	struct eng *e = m->eng;
	int ret;

	if (to == m->id) {	/* our own: read now */
		k->read(m->self, op, ptr, 0);
		return;
	}
	/*
	 * Stopping, the other rings may have read their last mail: what we
	 * would send is undone here instead, quietly, so nothing is left
	 * unread at exit.
	 */
	if (*m->stopping) {
		if (k->on_fail == MAIL_UNDO)
			k->undo(m->self, op, ptr, -ESHUTDOWN);
		else
			free_mail(op, ptr);
		return;
	}
	/* Mail to shards is counted until read, so none exits with some. */
	if (!k->to_bridge)
		atomic_fetch_add(&e->mail, 1);
#ifdef RC_FAULT_INJECT
	if (fault(m, op, ptr, &ret)) {
		if (ret < 0)
			goto fail;
		return;
	}
#endif
	ret = ring_mbox_post(m->ring, ring_of(e, to), ring_ud_ptr(op, ptr), 0,
			     ring_ud_ptr(op | ENG_OP_FAILED, ptr));
	if (ret == 0)
		return;
#ifdef RC_FAULT_INJECT
fail:
#endif
	if (!k->to_bridge)
		atomic_fetch_sub(&e->mail, 1);
	failed(m, op, ptr, ret);
}

void eng_mail_read(struct eng_mailer *m, const struct ring_cqe *cqe)
{
	unsigned op = ring_ud_op(cqe->user_data);
	unsigned base = op & ~ENG_OP_FAILED;
	const struct mail_kind *k = kind_of(base);
	void *ptr = ring_ud_to_ptr(cqe->user_data);

	if (!k->to_bridge)
		atomic_fetch_sub(&m->eng->mail, 1);
	if (op & ENG_OP_FAILED)
		failed(m, base, ptr, cqe->res);
	else
		k->read(m->self, op, ptr, cqe->res);
}

static void discard(void *arg, struct ring_cqe *cqe)
{
	unsigned op = ring_ud_op(cqe->user_data) & ~ENG_OP_FAILED;

	(void)arg;
	if (kind_of(op))
		free_mail(op, ring_ud_to_ptr(cqe->user_data));
}

void eng_mail_discard(struct ring *r)
{
	ring_reap(r, discard, NULL);
}

int eng_mail_stop(struct ring *from, struct ring *to)
{
	return ring_mbox_post(from, to, ring_ud(ENG_OP_STOP, 0, 0), 0,
			      ring_ud(ENG_OP_MBOX_ERR, 0, 0));
}

bool eng_mail_counts(unsigned op, const char **name, uint64_t *failed,
		     uint64_t *retried)
{
	if (!kind_of(op))
		return false;
	*name = kinds[op].name;
	*failed = atomic_load(&failed_n[op]);
	*retried = atomic_load(&retried_n[op]);
	return true;
}

size_t eng_mail_stats(char *out, size_t cap)
{
	size_t n = 0;

	for (int pass = 0; pass < 2; pass++) {
		atomic_uint_fast64_t *v = pass ? retried_n : failed_n;
		bool first = true;

		n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s\"%s\":{",
				      pass ? "," : "{",
				      pass ? "retried" : "failed");
		for (unsigned op = 0; op < ENG_OP_MAX; op++) {
			if (!kinds[op].read)
				continue;
			n += (size_t)snprintf(out + n, n < cap ? cap - n : 0,
					      "%s\"%s\":%llu", first ? "" : ",",
					      kinds[op].name,
					      (unsigned long long)atomic_load(&v[op]));
			first = false;
		}
		n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "}");
	}
	n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "}");
	return n;
}
