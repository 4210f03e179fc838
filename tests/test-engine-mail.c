/* SPDX-License-Identifier: MIT */
/*
 * Description: the mail table (engine/mail.c) with kinds of the test's
 * own, between real rings: two shards and a bridge. Registration refuses
 * an op out of range, a duplicate and a kind without what its rule
 * needs, and registers nothing of a refused table; mail is read by its
 * kind's handler on the shard it was posted to (at once when posted to
 * the poster itself), and by the bridge's handler at ENG_BRIDGE; a failed
 * post is counted, then undone, posted again (brought up to date first,
 * to where its kind says) or freed; stopping undoes or frees instead of
 * posting; what is left at exit is freed; /stats counts per kind. The
 * shards' rings are io_uring, then epoll (--io epoll), the bridge's
 * io_uring as it always is. In a
 * -Dfault_inject=true build, RINGCAST_FAULT_MAIL fails posts for real,
 * at once and as a failure completion. Nothing leaks: every mail made is
 * freed once.
 */
#include <stdatomic.h>
#include <stdbool.h>

#include "helpers.h"
#include "mail.h"
#include "ring.h"
#include "ud.h"

/* The test's mail: where a retry goes, and what happened to it. */
struct tmail {
	unsigned to;
	unsigned refreshed;
};

/* What the handlers saw. */
static struct {
	unsigned reads, undos, refreshes, bridge_reads;
	void *self;			/* of the last handler called */
	unsigned op;
	void *ptr;
	int32_t res;
	long live;			/* mail made, not yet freed */
} seen;

static struct tmail *tmail_new(unsigned to)
{
	struct tmail *t = eng_malloc(sizeof(*t));

	if (t) {
		t->to = to;
		t->refreshed = 0;
		seen.live++;
	}
	return t;
}

static void t_free(void *ptr)
{
	seen.live--;
	eng_free(ptr);
}

static void note(void *self, unsigned op, void *ptr, int32_t res)
{
	seen.self = self;
	seen.op = op;
	seen.ptr = ptr;
	seen.res = res;
}

/* Every handler owns the mail it is given: each frees it. */
static void t_read(void *self, unsigned op, void *ptr, int32_t res)
{
	note(self, op, ptr, res);
	seen.reads++;
	t_free(ptr);
}

static void t_bridge_read(void *self, unsigned op, void *ptr, int32_t res)
{
	note(self, op, ptr, res);
	seen.bridge_reads++;
	t_free(ptr);
}

static void t_undo(void *self, unsigned op, void *ptr, int32_t res)
{
	note(self, op, ptr, res);
	seen.undos++;
	t_free(ptr);
}

static void t_refresh(void *self, unsigned op, void *ptr, int32_t res)
{
	(void)self;
	(void)op;
	(void)res;
	((struct tmail *)ptr)->refreshed++;
	seen.refreshes++;
}

static unsigned t_to(const struct eng *e, const void *ptr)
{
	(void)e;
	return ((const struct tmail *)ptr)->to;
}

/* The test's kinds, on ops no engine subsystem is linked in to claim. */
#define OP_UNDO		ENG_OP_PUB
#define OP_RETRY	ENG_OP_PUB_ACK
#define OP_LOSE		ENG_OP_DELIVER
#define OP_BRIDGE	ENG_OP_R_SUBSCRIBE
#define OP_FREE		ENG_OP_INTEREST	/* no free: eng_free() */

static const struct eng_mail_kind kinds[] = {
	{ .op = OP_FREE, .name = "t_flat", .on_fail = ENG_MAIL_LOSE,
	  .read = t_read },
	{ .op = OP_UNDO, .name = "t_undo", .on_fail = ENG_MAIL_UNDO,
	  .read = t_read, .undo = t_undo, .free = t_free },
	{ .op = OP_RETRY, .name = "t_retry", .on_fail = ENG_MAIL_RETRY,
	  .read = t_read, .refresh = t_refresh, .free = t_free, .to = t_to },
	{ .op = OP_LOSE, .name = "t_lose", .on_fail = ENG_MAIL_LOSE,
	  .read = t_read, .free = t_free },
	{ .op = OP_BRIDGE, .name = "t_bridge", .to_bridge = true,
	  .on_fail = ENG_MAIL_RETRY, .refresh = t_refresh, .free = t_free },
};

enum { K_FLAT, K_UNDO, K_RETRY, K_LOSE, K_BRIDGE };

/* Two shards and a bridge, each with its ring and mailer. */
static unsigned shard_flags;		/* 0, then RING_F_EPOLL */
static struct eng e;
static struct eng_shard shards[2];
static struct ring bridge_ring;
static struct eng_mailer bridge_mail;
static bool bridge_stopping;
static atomic_uint_fast64_t bridge_errors;

static void on_cqe(void *arg, struct ring_cqe *cqe)
{
	if (eng_mail_is(ring_ud_op(cqe->user_data)))
		eng_mail_read(arg, cqe);
}

/*
 * Submits what @from queued, then turns @m's ring until *@count reaches
 * @want: bounded in turns and in time (each turn waits 100 ms at most).
 */
static int pump(struct ring *from, struct eng_mailer *m,
		const unsigned *count, unsigned want)
{
	if (ring_submit(from) < 0)
		return -1;
	for (int turn = 0; turn < 50 && *count < want; turn++)
		if (ring_run_for(m->ring, 100000000ull, on_cqe, m) < 0)
			return -1;
	return *count == want ? 0 : -1;
}

static int setup(void)
{
	memset(&e, 0, sizeof(e));
	memset(shards, 0, sizeof(shards));
	e.cfg.shards = 2;
	e.shards = shards;
	for (unsigned i = 0; i < 2; i++) {
		struct eng_shard *s = &shards[i];

		s->eng = &e;
		s->id = i;
		if (ring_init(&s->ring, 16, 0, shard_flags) < 0)
			return -1;
		eng_mail_init(&s->mail, &e, &s->ring, i, s, &s->stopping,
			      &s->stats.mbox_errors);
	}
	if (ring_init(&bridge_ring, 16, 0, 0) < 0)
		return -1;
	eng_mail_init(&bridge_mail, &e, &bridge_ring, ENG_BRIDGE, &bridge_mail,
		      &bridge_stopping, &bridge_errors);
	eng_mail_bridge(&bridge_ring, t_bridge_read);
	return 0;
}

static void teardown(void)
{
	eng_mail_bridge(NULL, NULL);
	eng_mail_exit(&bridge_mail);
	ring_exit(&bridge_ring);
	for (unsigned i = 0; i < 2; i++) {
		eng_mail_exit(&shards[i].mail);
		ring_exit(&shards[i].ring);
	}
}

/* Failed and retried posts of @op so far. */
static int counts(unsigned op, uint64_t *failed, uint64_t *retried)
{
	const char *name;

	return eng_mail_counts(op, &name, failed, retried) ? 0 : -1;
}

/* The counts at snapshot(): each pass checks what it added. */
static uint64_t base_f[ENG_OP_MAX], base_r[ENG_OP_MAX];

static void snapshot(void)
{
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		counts(kinds[i].op, &base_f[kinds[i].op],
		       &base_r[kinds[i].op]);
}

/* @op failed @df times and was posted again @dr times since snapshot(). */
static bool grew(unsigned op, uint64_t df, uint64_t dr)
{
	uint64_t f, r;

	return counts(op, &f, &r) == 0 && f - base_f[op] == df &&
	       r - base_r[op] == dr;
}

/*
 * Refused tables register nothing: an op out of range, a duplicate (in
 * the table or already registered), a kind missing what its rule needs.
 */
static int test_register(void)
{
	struct eng_mail_kind bad;
	struct eng_mail_kind two[2];
	const char *name;
	uint64_t f, r;

	/* Nothing else in this binary registers these ops. */
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		T_CHECK(!eng_mail_counts(kinds[i].op, &name, &f, &r));

	bad = kinds[K_LOSE];
	bad.op = ENG_OP_MAX;
	T_CHECK(eng_mail_register(&bad, 1) == -ERANGE);
	bad.op = ENG_OP_STOP;		/* a user_data op, not mail */
	T_CHECK(eng_mail_register(&bad, 1) == -ERANGE);

	bad = kinds[K_LOSE];
	bad.name = NULL;
	T_CHECK(eng_mail_register(&bad, 1) == -EINVAL);
	bad = kinds[K_LOSE];
	bad.read = NULL;		/* shard mail nobody reads */
	T_CHECK(eng_mail_register(&bad, 1) == -EINVAL);
	bad = kinds[K_UNDO];
	bad.undo = NULL;		/* undone by nothing */
	T_CHECK(eng_mail_register(&bad, 1) == -EINVAL);
	bad = kinds[K_RETRY];
	bad.to = NULL;			/* posted again to nowhere */
	T_CHECK(eng_mail_register(&bad, 1) == -EINVAL);
	bad = kinds[K_BRIDGE];
	bad.read = t_read;		/* the bridge reads its own mail */
	T_CHECK(eng_mail_register(&bad, 1) == -EINVAL);
	bad = kinds[K_LOSE];
	bad.on_fail = ENG_MAIL_UNDO + 1;
	T_CHECK(eng_mail_register(&bad, 1) == -EINVAL);

	/* A duplicate in one table: its first kind is not registered either. */
	two[0] = kinds[K_LOSE];
	two[1] = kinds[K_LOSE];
	T_CHECK(eng_mail_register(two, 2) == -EEXIST);
	two[1] = kinds[K_LOSE];
	two[1].op = ENG_OP_MAX;
	T_CHECK(eng_mail_register(two, 2) == -ERANGE);
	T_CHECK(!eng_mail_counts(OP_LOSE, &name, &f, &r));

	T_CHECK(eng_mail_register(kinds, sizeof(kinds) / sizeof(kinds[0])) == 0);
	T_CHECK(eng_mail_register(&kinds[K_RETRY], 1) == -EEXIST);
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		T_CHECK(eng_mail_counts(kinds[i].op, &name, &f, &r));
		T_CHECK(!strcmp(name, kinds[i].name) && f == 0 && r == 0);
	}
	T_CHECK(!eng_mail_counts(ENG_OP_MAX, &name, &f, &r));
	T_CHECK(!eng_mail_counts(ENG_OP_USER, &name, &f, &r));
	return 0;
}

/*
 * Mail is read on the shard it was posted to, by its kind's handler;
 * to the poster itself, at once; to the bridge, by the bridge's handler.
 * Mail to shards is counted in e.mail until read; the bridge's is not.
 */
static int test_post(void)
{
	struct tmail *t = tmail_new(1);
	unsigned want;

	T_CHECK(t);
	want = seen.reads + 1;
	eng_mail_post(&shards[0].mail, 1, OP_LOSE, t);
	T_CHECK(atomic_load(&e.mail) == 1);
	T_CHECK(pump(&shards[0].ring, &shards[1].mail, &seen.reads, want) == 0);
	T_CHECK(seen.self == &shards[1] && seen.op == OP_LOSE &&
		seen.ptr == t && seen.res == 0);
	T_CHECK(atomic_load(&e.mail) == 0);

	t = tmail_new(0);
	T_CHECK(t);
	want = seen.reads + 1;
	eng_mail_post(&shards[0].mail, 0, OP_RETRY, t);	/* to itself */
	T_CHECK(seen.reads == want && seen.self == &shards[0] &&
		seen.ptr == t);
	T_CHECK(atomic_load(&e.mail) == 0);

	t = tmail_new(ENG_BRIDGE);
	T_CHECK(t);
	want = seen.bridge_reads + 1;
	eng_mail_post(&shards[1].mail, ENG_BRIDGE, OP_BRIDGE, t);
	T_CHECK(atomic_load(&e.mail) == 0);
	T_CHECK(pump(&shards[1].ring, &bridge_mail, &seen.bridge_reads,
		     want) == 0);
	T_CHECK(seen.self == &bridge_mail && seen.op == OP_BRIDGE &&
		seen.ptr == t);
	T_CHECK(shards[0].stats.mbox_errors == 0 &&
		shards[1].stats.mbox_errors == 0);
	return 0;
}

/*
 * A failed post comes back to its poster as its own completion, op or-ed
 * with ENG_OP_FAILED, as a refused MSG_RING does (and the fault injector);
 * e.mail counted shard mail when it was posted. Returns once the poster
 * has counted the failure.
 */
static int fail_post(struct eng_shard *s, unsigned op, void *t)
{
	uint64_t f0, f = 0, r;

	if (counts(op, &f0, &r) < 0)
		return -1;
	if (op != OP_BRIDGE)
		atomic_fetch_add(&e.mail, 1);
	if (ring_mbox_post(&s->ring, &s->ring,
			   ring_ud_ptr(op | ENG_OP_FAILED, t), -EOVERFLOW,
			   0) < 0 || ring_submit(&s->ring) < 0)
		return -1;
	for (int turn = 0; turn < 50; turn++) {
		if (ring_run_for(&s->ring, 100000000ull, on_cqe, &s->mail) < 0 ||
		    counts(op, &f, &r) < 0)
			return -1;
		if (f == f0 + 1)
			return 0;
	}
	return -1;
}

/* What each kind's rule does with a failed post, and the counters. */
static int test_failed(void)
{
	struct eng_shard *s = &shards[0];
	struct tmail *t;
	unsigned want, reads = seen.reads, undos = seen.undos;
	long live;
	char out[512];
	void *flat;

	snapshot();
	/* UNDO: the poster's undo has it, with the failure's res. */
	t = tmail_new(1);
	T_CHECK(t);
	T_CHECK(fail_post(s, OP_UNDO, t) == 0);
	T_CHECK(seen.undos == undos + 1 && seen.self == s && seen.op == OP_UNDO &&
		seen.ptr == t && seen.res == -EOVERFLOW);
	T_CHECK(grew(OP_UNDO, 1, 0));

	/* LOSE: freed by the kind's free, nobody told; without one, flat. */
	live = seen.live;
	t = tmail_new(1);
	T_CHECK(t);
	T_CHECK(fail_post(s, OP_LOSE, t) == 0);
	T_CHECK(seen.live == live && seen.reads == reads);
	T_CHECK(grew(OP_LOSE, 1, 0));
	flat = eng_malloc(64);		/* eng_free()d: ASan sees a leak */
	T_CHECK(flat);
	T_CHECK(fail_post(s, OP_FREE, flat) == 0);
	T_CHECK(seen.reads == reads);

	/*
	 * RETRY: listed, then at eng_mail_retry() brought up to date and
	 * posted to where its kind says, shard 1; counted as retried.
	 */
	t = tmail_new(1);
	T_CHECK(t);
	T_CHECK(fail_post(s, OP_RETRY, t) == 0);
	T_CHECK(s->mail.retry != NULL && t->refreshed == 0);
	want = seen.reads + 1;
	eng_mail_retry(&s->mail);
	T_CHECK(t->refreshed == 1 && s->mail.retry == NULL);
	T_CHECK(pump(&s->ring, &shards[1].mail, &seen.reads, want) == 0);
	T_CHECK(seen.self == &shards[1] && seen.ptr == t && seen.res == 0);
	T_CHECK(grew(OP_RETRY, 1, 1));

	/* RETRY to the bridge: posted again to ENG_BRIDGE, @to not asked. */
	t = tmail_new(0);
	T_CHECK(t);
	T_CHECK(fail_post(s, OP_BRIDGE, t) == 0);
	want = seen.bridge_reads + 1;
	eng_mail_retry(&s->mail);
	T_CHECK(t->refreshed == 1);
	T_CHECK(pump(&s->ring, &bridge_mail, &seen.bridge_reads, want) == 0);
	T_CHECK(seen.ptr == t && seen.self == &bridge_mail);
	T_CHECK(grew(OP_BRIDGE, 1, 1));

	/* Each failure bumped the poster's error count once. */
	T_CHECK(s->stats.mbox_errors == 5);
	T_CHECK(atomic_load(&e.mail) == 0);

	/* /stats, on the first pass: failed, then retried, per kind in op
	 * order. */
	if (shard_flags)
		return 0;
	T_CHECK(eng_mail_stats(out, sizeof(out)) < sizeof(out));
	if (strcmp(out, "{\"failed\":{\"t_undo\":1,\"t_retry\":1,"
		   "\"t_lose\":1,\"t_flat\":1,\"t_bridge\":1},"
		   "\"retried\":{\"t_undo\":0,\"t_retry\":1,\"t_lose\":0,"
		   "\"t_flat\":0,\"t_bridge\":1}}"))
		T_FAIL("stats: %s", out);
	return 0;
}

/* Stopping: posts are undone or freed, never made or listed. */
static int test_stopping(void)
{
	struct eng_shard *s = &shards[0];
	struct tmail *t;
	long live = seen.live;
	unsigned undos = seen.undos, reads = seen.reads;

	s->stopping = true;
	t = tmail_new(1);
	T_CHECK(t);
	eng_mail_post(&s->mail, 1, OP_UNDO, t);
	T_CHECK(seen.undos == undos + 1 && seen.res == -ESHUTDOWN);
	t = tmail_new(1);
	T_CHECK(t);
	eng_mail_post(&s->mail, 1, OP_RETRY, t);
	T_CHECK(seen.live == live && s->mail.retry == NULL);
	T_CHECK(atomic_load(&e.mail) == 0);
	/* A failure while stopping is not listed for a retry either. */
	t = tmail_new(1);
	T_CHECK(t);
	T_CHECK(fail_post(s, OP_RETRY, t) == 0);
	T_CHECK(seen.live == live && s->mail.retry == NULL);
	T_CHECK(seen.reads == reads);
	s->stopping = false;
	return 0;
}

/*
 * What is left at exit is freed: mail listed for a retry, by
 * eng_mail_exit(); mail unread in a ring, by eng_mail_discard().
 */
static int test_leftovers(void)
{
	struct eng_shard *s = &shards[0];
	long live = seen.live;
	struct tmail *t = tmail_new(1);

	T_CHECK(t);
	T_CHECK(fail_post(s, OP_RETRY, t) == 0);
	T_CHECK(s->mail.retry != NULL && seen.live == live + 1);
	eng_mail_exit(&s->mail);
	T_CHECK(s->mail.retry == NULL && seen.live == live);

	if (shard_flags & RING_F_EPOLL)
		return 0;	/* mail waits in user space: ring_reap() has none */
	t = tmail_new(1);
	T_CHECK(t);
	eng_mail_post(&s->mail, 1, OP_LOSE, t);
	T_CHECK(ring_submit(&s->ring) >= 0);
	/* MSG_RING posts to shard 1's CQ as it is submitted. */
	eng_mail_discard(&shards[1].ring);
	T_CHECK(seen.live == live);
	atomic_store(&e.mail, 0);	/* discarded: nobody read it */
	return 0;
}

#ifdef RC_FAULT_INJECT
/*
 * RINGCAST_FAULT_MAIL=1: every post fails, by turns at once (-EBUSY)
 * and as the failure completion a refused MSG_RING brings back.
 */
static int test_faults(void)
{
	struct eng_shard *s = &shards[0];
	struct tmail *t[2];
	uint64_t f0, r0, f = 0, r = 0;
	unsigned want;

	T_CHECK(counts(OP_RETRY, &f0, &r0) == 0);
	setenv("RINGCAST_FAULT_MAIL", "1", 1);
	eng_mail_fault_init();
	for (int i = 0; i < 2; i++) {
		t[i] = tmail_new(1);
		T_CHECK(t[i]);
		eng_mail_post(&s->mail, 1, OP_RETRY, t[i]);
	}
	/* One failed at once, the other comes back as a completion. */
	T_CHECK(ring_submit(&s->ring) >= 0);
	for (int turn = 0; turn < 50; turn++) {
		T_CHECK(counts(OP_RETRY, &f, &r) == 0);
		if (f == f0 + 2)
			break;
		T_CHECK(ring_run_for(&s->ring, 100000000ull, on_cqe,
				     &s->mail) >= 0);
	}
	T_CHECK(f == f0 + 2 && r == r0);
	setenv("RINGCAST_FAULT_MAIL", "0", 1);
	eng_mail_fault_init();
	want = seen.reads + 2;
	eng_mail_retry(&s->mail);
	T_CHECK(pump(&s->ring, &shards[1].mail, &seen.reads, want) == 0);
	T_CHECK(counts(OP_RETRY, &f, &r) == 0 && r == r0 + 2);
	T_CHECK(atomic_load(&e.mail) == 0);
	return 0;
}
#else
static int test_faults(void)
{
	return 0;	/* a -Dfault_inject=true build runs this one */
}
#endif

/* One pass of the posting tests on shard rings of @flags. */
static int pass(unsigned flags)
{
	int ret;

	shard_flags = flags;
	if (setup() < 0) {
		fprintf(stderr, "ring_init (flags %#x) failed\n", flags);
		return 1;
	}
	ret = test_post() || test_failed() || test_stopping() ||
	      test_leftovers() || test_faults();
	teardown();
	if (ret)
		fprintf(stderr, "failed with shard ring flags %#x\n", flags);
	return ret;
}

int main(void)
{
	int ret;

	ret = test_register() || pass(0) || pass(RING_F_EPOLL);
	if (!ret && seen.live != 0) {
		fprintf(stderr, "%ld mail not freed, or freed twice\n",
			seen.live);
		ret = 1;
	}
	return ret ? T_EXIT_FAIL : T_EXIT_PASS;
}
