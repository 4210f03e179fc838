/* SPDX-License-Identifier: MIT */
/*
 * mail.c: posting between rings, the registered kinds of mail, retries,
 * undoing, counters and fault injection. See mail.h for the rules every
 * kind follows; the kinds themselves live with their subsystems.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail.h"
#include "ud.h"

/* Registered kinds by op (borrowed); NULL where no kind is. */
static const struct eng_mail_kind *kinds[ENG_OP_MAX];

/* The bridge's ring and its reader of to_bridge kinds (eng_mail_bridge). */
static struct ring *bridge_ring;
static eng_mail_fn *bridge_read;

/* Mail whose post failed, to be posted again. */
struct eng_retry {
	struct eng_retry *next;
	unsigned op;
	unsigned to;			/* a shard, or ENG_BRIDGE */
	void *ptr;			/* owned: the mail */
};

static atomic_uint_fast64_t failed_n[ENG_OP_MAX], retried_n[ENG_OP_MAX];

static const struct eng_mail_kind *kind_of(unsigned op)
{
	return op < ENG_OP_MAX ? kinds[op] : NULL;
}

/* Why kind @k cannot be registered, as -errno; 0 if it can. */
static int kind_check(const struct eng_mail_kind *k)
{
	if (k->op < ENG_OP_PUB || k->op >= ENG_OP_MAX)
		return -ERANGE;
	if (kinds[k->op])
		return -EEXIST;
	if (!k->name || k->on_fail > ENG_MAIL_UNDO ||
	    k->to_bridge == (k->read != NULL) ||
	    (k->on_fail == ENG_MAIL_UNDO && !k->undo) ||
	    (k->on_fail == ENG_MAIL_RETRY && !k->to_bridge && !k->to))
		return -EINVAL;
	return 0;
}

int eng_mail_register(const struct eng_mail_kind *k, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		int ret = kind_check(&k[i]);

		if (ret < 0)
			return ret;
		for (unsigned j = 0; j < i; j++)
			if (k[j].op == k[i].op)
				return -EEXIST;
	}
	for (unsigned i = 0; i < n; i++)
		kinds[k[i].op] = &k[i];
	return 0;
}

void eng_mail__load(const struct eng_mail_kind *k, unsigned n,
		    const char *file)
{
	int ret = eng_mail_register(k, n);

	if (ret < 0) {
		fprintf(stderr, "ringcast: %s: its mail kinds: %s\n", file,
			strerror(-ret));
		abort();
	}
}

void eng_mail_bridge(struct ring *ring, eng_mail_fn *read)
{
	bridge_ring = ring;
	bridge_read = read;
}

static struct ring *ring_of(struct eng *e, unsigned to)
{
	return to == ENG_BRIDGE ? bridge_ring : &e->shards[to].ring;
}

/* Who reads kind @k: its handler, or for the bridge, the bridge's. */
static eng_mail_fn *reader_of(const struct eng_mail_kind *k)
{
	return k->to_bridge ? bridge_read : k->read;
}

/* Frees mail of kind @k carrying @ptr, telling nobody. */
static void free_mail(const struct eng_mail_kind *k, void *ptr)
{
	if (k->free)
		k->free(ptr);
	else
		eng_free(ptr);
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
static bool retry_later(struct eng_mailer *m, const struct eng_mail_kind *k,
			void *ptr)
{
	struct eng_retry *r;

	if (*m->stopping)
		return false;
	r = eng_malloc(sizeof(*r));
	if (!r)
		return false;
	r->op = k->op;
	r->to = k->to_bridge ? ENG_BRIDGE : k->to(m->eng, ptr);
	r->ptr = ptr;
	r->next = m->retry;
	m->retry = r;
	return true;
}

/* A post of ours failed with @res: count it, then retry, undo or lose it. */
static void failed(struct eng_mailer *m, unsigned op, void *ptr, int res)
{
	const struct eng_mail_kind *k = kind_of(op);

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
	if (k->on_fail == ENG_MAIL_UNDO)
		k->undo(m->self, op, ptr, res);
	else if (k->on_fail != ENG_MAIL_RETRY || !retry_later(m, k, ptr))
		free_mail(k, ptr);
}

void eng_mail_retry(struct eng_mailer *m)
{
	struct eng_retry *r = m->retry;

	m->retry = NULL;	/* what fails again is listed anew */
	while (r) {
		struct eng_retry *next = r->next;
		const struct eng_mail_kind *k = kind_of(r->op);

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

		free_mail(kind_of(m->retry->op), m->retry->ptr);
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
	const struct eng_mail_kind *k = kind_of(op);
	struct eng *e = m->eng;
	int ret;

	assert(k);	/* every op posted has its kind registered */
	if (to == m->id) {	/* our own: read now */
		reader_of(k)(m->self, op, ptr, 0);
		return;
	}
	/*
	 * Stopping, the other rings may have read their last mail: what we
	 * would send is undone here instead, quietly, so nothing is left
	 * unread at exit.
	 */
	if (*m->stopping) {
		if (k->on_fail == ENG_MAIL_UNDO)
			k->undo(m->self, op, ptr, -ESHUTDOWN);
		else
			free_mail(k, ptr);
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
	const struct eng_mail_kind *k = kind_of(base);
	void *ptr = ring_ud_to_ptr(cqe->user_data);

	if (op & ENG_OP_FAILED)
		failed(m, base, ptr, cqe->res);
	else
		reader_of(k)(m->self, op, ptr, cqe->res);
	/*
	 * Counted as read only now: what the reader posted on (a publish's
	 * fan-out) is counted first, so a count of 0 means every chain of
	 * mail has ended (a live hand-over with Redis waits for it).
	 */
	if (!k->to_bridge)
		atomic_fetch_sub(&m->eng->mail, 1);
}

static void discard(void *arg, struct ring_cqe *cqe)
{
	const struct eng_mail_kind *k =
		kind_of(ring_ud_op(cqe->user_data) & ~ENG_OP_FAILED);

	(void)arg;
	if (k)
		free_mail(k, ring_ud_to_ptr(cqe->user_data));
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
	*name = kinds[op]->name;
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
			if (!kinds[op])
				continue;
			n += (size_t)snprintf(out + n, n < cap ? cap - n : 0,
					      "%s\"%s\":%llu", first ? "" : ",",
					      kinds[op]->name,
					      (unsigned long long)atomic_load(&v[op]));
			first = false;
		}
		n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "}");
	}
	n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "}");
	return n;
}
