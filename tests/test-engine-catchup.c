/* SPDX-License-Identifier: MIT */
/*
 * Description: the catch-up helper (engine/catchup.c) driven through
 * every order a read and the live stream can come in: read first, live
 * first, interleaved, a read that fails, duplicates across the boundary,
 * more than the hold bound, a catch-up that only notes, a consumer that
 * stops and one that begins a new read while it is handed items. Every
 * case checks the exact order items reach the consumer and which are let
 * go. Also eng_hist_judge(), the one judgement of a recovery's read.
 */
#include "catchup.h"
#include "helpers.h"
#include "hist.h"
#include "mail.h"

/* An item: where it stands, and its name in the logs. */
struct item {
	uint64_t n;
	const char *epoch;
};

#define LOG_MAX	64

/* What a case saw: items handed on, items dropped (their numbers). */
static struct {
	uint64_t got[LOG_MAX], dropped[LOG_MAX];
	unsigned ngot, ndropped;
	unsigned stop_after;		/* the consumer closes after this many */
	struct eng_catchup *again;	/* re-hold here: a consumer reading */
	uint64_t again_at;		/* ... from this item on */
} lg;

static uint64_t pos_of(const void *p, char epoch[ENG_CU_EPOCH + 1])
{
	const struct item *it = p;

	snprintf(epoch, ENG_CU_EPOCH + 1, "%s", it->epoch);
	return it->n;
}

static void drop(void *p)
{
	if (lg.ndropped < LOG_MAX)
		lg.dropped[lg.ndropped++] = ((struct item *)p)->n;
}

static const struct eng_catchup_ops ops = { pos_of, drop };

static bool consume(void *arg, void *p)
{
	struct item *it = p;

	(void)arg;
	if (lg.again && it->n >= lg.again_at) {
		/* a gap again: this one and those after wait for a read */
		if (!eng_catchup_reading(lg.again))
			eng_catchup_begin(lg.again);
		if (eng_catchup_live(lg.again, p) != ENG_CU_HELD)
			return false;
		return true;
	}
	if (lg.ngot < LOG_MAX)
		lg.got[lg.ngot++] = it->n;
	return !lg.stop_after || lg.ngot < lg.stop_after;
}

static void reset(void)
{
	memset(&lg, 0, sizeof(lg));
}

/* Items 0..19 of epoch "e1" (index = number; 0 stands nowhere). */
static struct item e1[20];
static struct item e2[4] = { { 1, "e2" }, { 2, "e2" }, { 3, "e2" },
			     { 4, "e2" } };

/* Checks that @log holds exactly the @n numbers of @want. */
static int same(const char *what, const uint64_t *log, unsigned got,
		const uint64_t *want, unsigned n)
{
	if (got != n)
		T_FAIL("%s: %u items, want %u", what, got, n);
	for (unsigned i = 0; i < n; i++)
		if (log[i] != want[i])
			T_FAIL("%s[%u]: %llu, want %llu", what, i,
			       (unsigned long long)log[i],
			       (unsigned long long)want[i]);
	return 0;
}

#define GOT(...) do {							\
	const uint64_t w_[] = { __VA_ARGS__ };				\
	if (same("got", lg.got, lg.ngot, w_, sizeof(w_) / sizeof(w_[0])))\
		return 1;						\
} while (0)
#define DROPPED(...) do {						\
	const uint64_t w_[] = { __VA_ARGS__ };				\
	if (same("dropped", lg.dropped, lg.ndropped, w_,		\
		 sizeof(w_) / sizeof(w_[0])))				\
		return 1;						\
} while (0)

/* Offers e1[n] live and checks the outcome; a PASS goes to the log. */
static int live(struct eng_catchup *cu, uint64_t n, int want)
{
	int got = eng_catchup_live(cu, &e1[n]);

	if (got != want)
		T_FAIL("live %llu: outcome %d, want %d", (unsigned long long)n,
		       got, want);
	if (got == ENG_CU_PASS)
		consume(NULL, &e1[n]);
	return 0;
}

/*
 * The read's @n @items to the consumer as the engine's callers hand them:
 * a slot set NULL when taken. Returns what the last call returned.
 */
static int read_all(struct eng_catchup *cu, struct item **items, unsigned n)
{
	int ret = 0;

	for (unsigned i = 0; i < n && ret >= 0; i++) {
		ret = eng_catchup_read(cu, items[i], consume, NULL);
		if (ret)
			items[i] = NULL;
	}
	return ret;
}

/* A read of e1[from..to] answered: its items to the consumer, top @to. */
static int answer(struct eng_catchup *cu, uint64_t from, uint64_t to)
{
	struct item *items[20];
	unsigned n = 0;

	for (uint64_t i = from; i <= to; i++)
		items[n++] = &e1[i];
	T_CHECK(read_all(cu, items, n) >= 0);
	for (unsigned i = 0; i < n; i++)
		T_CHECK(items[i] == NULL);	/* none was had before */
	eng_catchup_at(cu, "e1", to);
	return 0;
}

/* The answer comes before anything live: later duplicates are skipped. */
static int test_read_first(void)
{
	struct eng_catchup cu;

	reset();
	eng_catchup_init(&cu, &ops, 8);
	eng_catchup_begin(&cu);
	if (answer(&cu, 1, 3))
		return 1;
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == 0);
	T_CHECK(!eng_catchup_reading(&cu));
	if (live(&cu, 2, ENG_CU_SKIP) || live(&cu, 3, ENG_CU_SKIP) ||
	    live(&cu, 4, ENG_CU_PASS))
		return 1;
	GOT(1, 2, 3, 4);
	T_CHECK(lg.ndropped == 0);
	eng_catchup_exit(&cu);
	return 0;
}

/* Everything live comes first and waits; the read had part of it. */
static int test_live_first(void)
{
	struct eng_catchup cu;

	reset();
	eng_catchup_init(&cu, &ops, 8);
	eng_catchup_begin(&cu);
	for (uint64_t n = 2; n <= 5; n++)
		if (live(&cu, n, ENG_CU_HELD))
			return 1;
	T_CHECK(cu.n == 4 && lg.ngot == 0);
	if (answer(&cu, 1, 3))
		return 1;
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == 2);
	GOT(1, 2, 3, 4, 5);
	DROPPED(2, 3);
	T_CHECK(cu.n == 0);
	eng_catchup_exit(&cu);
	return 0;
}

/*
 * Interleaved: some live ones wait, the answer comes having had more than
 * them (the read was ahead), and the live stream catches up afterwards.
 */
static int test_interleaved(void)
{
	struct eng_catchup cu;

	reset();
	eng_catchup_init(&cu, &ops, 8);
	eng_catchup_begin(&cu);
	if (live(&cu, 3, ENG_CU_HELD) || live(&cu, 4, ENG_CU_HELD))
		return 1;
	if (answer(&cu, 2, 6))
		return 1;
	/* none held went: still skipping what the read had */
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == 0);
	if (live(&cu, 5, ENG_CU_SKIP) || live(&cu, 6, ENG_CU_SKIP) ||
	    live(&cu, 7, ENG_CU_PASS) || live(&cu, 8, ENG_CU_PASS))
		return 1;
	GOT(2, 3, 4, 5, 6, 7, 8);
	DROPPED(3, 4);
	eng_catchup_exit(&cu);
	return 0;
}

/*
 * The read fails: nothing was had; the holder either hands the held on
 * as they are (a gap fill) or lets them go (a recovery said lost).
 */
static int test_read_fails(void)
{
	struct eng_catchup cu;

	reset();
	eng_catchup_init(&cu, &ops, 8);
	eng_catchup_begin(&cu);
	if (live(&cu, 5, ENG_CU_HELD) || live(&cu, 6, ENG_CU_HELD))
		return 1;
	eng_catchup_end(&cu);
	T_CHECK(!eng_catchup_reading(&cu));
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == 2);
	if (live(&cu, 7, ENG_CU_PASS))	/* not reading: goes now */
		return 1;
	GOT(5, 6, 7);
	T_CHECK(lg.ndropped == 0);

	reset();
	eng_catchup_begin(&cu);
	if (live(&cu, 8, ENG_CU_HELD) || live(&cu, 9, ENG_CU_HELD))
		return 1;
	eng_catchup_exit(&cu);		/* the recovery gives up */
	DROPPED(8, 9);
	T_CHECK(lg.ngot == 0);
	return 0;
}

/*
 * Duplicates across the boundary: an item the read had comes live again
 * after it; one of another epoch (a history begun again) is never had;
 * an item that stands nowhere is never skipped.
 */
static int test_duplicates(void)
{
	struct eng_catchup cu;
	struct eng_cu_pos p = { 3, "e2" };

	reset();
	eng_catchup_init(&cu, &ops, 8);
	eng_catchup_begin(&cu);
	if (live(&cu, 4, ENG_CU_HELD) || live(&cu, 4, ENG_CU_HELD) ||
	    live(&cu, 5, ENG_CU_HELD))
		return 1;
	if (answer(&cu, 3, 4))
		return 1;
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == 1);
	if (live(&cu, 4, ENG_CU_SKIP) || live(&cu, 0, ENG_CU_PASS))
		return 1;
	T_CHECK(eng_catchup_live(&cu, &e2[0]) == ENG_CU_PASS);
	T_CHECK(!eng_catchup_had(&cu, &p));
	GOT(3, 4, 5, 0);
	DROPPED(4, 4);
	/* a read's item the consumer had stays with the read's owner */
	{
		struct item *items[] = { &e1[4], &e1[5], &e1[6] };

		reset();
		eng_catchup_at(&cu, "e1", 5);
		T_CHECK(read_all(&cu, items, 3) == 1);
		T_CHECK(items[0] == &e1[4] && items[1] == &e1[5] &&
			items[2] == NULL);
		T_CHECK(cu.top.n == 6);
		GOT(6);
	}
	eng_catchup_exit(&cu);
	return 0;
}

/* Over the bound: FULL, nothing more taken until the next read. */
static int test_over_bound(void)
{
	struct eng_catchup cu;

	reset();
	eng_catchup_init(&cu, &ops, 3);
	eng_catchup_begin(&cu);
	for (uint64_t n = 1; n <= 3; n++)
		if (live(&cu, n, ENG_CU_HELD))
			return 1;
	if (live(&cu, 4, ENG_CU_FULL) || live(&cu, 5, ENG_CU_FULL))
		return 1;
	T_CHECK(cu.lost && cu.n == 3);
	/* a recovery: let go, lost; what comes still is not taken */
	eng_catchup_drop(&cu);
	DROPPED(1, 2, 3);
	if (live(&cu, 6, ENG_CU_FULL))
		return 1;
	/* a new read: held again, up to the bound */
	eng_catchup_begin(&cu);
	T_CHECK(!cu.lost);
	for (uint64_t n = 7; n <= 9; n++)
		if (live(&cu, n, ENG_CU_HELD))
			return 1;
	if (live(&cu, 10, ENG_CU_FULL))
		return 1;
	/* a gap fill: given up, what it held goes as it is */
	reset();
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == 3);
	GOT(7, 8, 9);
	if (live(&cu, 10, ENG_CU_PASS))
		return 1;
	GOT(7, 8, 9, 10);
	eng_catchup_exit(&cu);
	return 0;
}

/* A catch-up that only notes (the inbox): behind until a read has them. */
static int test_noted(void)
{
	struct eng_catchup cu;

	reset();
	eng_catchup_init(&cu, &ops, 0);
	eng_catchup_begin(&cu);
	T_CHECK(!eng_catchup_behind(&cu));
	if (live(&cu, 2, ENG_CU_NOTED) || live(&cu, 3, ENG_CU_NOTED))
		return 1;
	T_CHECK(cu.n == 0 && cu.noted.n == 3);
	eng_catchup_at(&cu, "e1", 2);	/* a page up to 2 */
	T_CHECK(eng_catchup_behind(&cu));
	eng_catchup_begin(&cu);		/* the next page */
	T_CHECK(!eng_catchup_behind(&cu));
	if (live(&cu, 4, ENG_CU_NOTED))
		return 1;
	eng_catchup_at(&cu, "e1", 4);
	T_CHECK(!eng_catchup_behind(&cu));
	T_CHECK(eng_catchup_live(&cu, &e2[0]) == ENG_CU_NOTED);
	T_CHECK(eng_catchup_behind(&cu));	/* another epoch */
	eng_catchup_at(&cu, "e1", 4);
	eng_catchup_end(&cu);
	if (live(&cu, 4, ENG_CU_SKIP) || live(&cu, 5, ENG_CU_PASS))
		return 1;
	GOT(5);
	T_CHECK(lg.ndropped == 0);
	eng_catchup_exit(&cu);
	return 0;
}

/* The consumer closes midway: the rest are let go, none handed on. */
static int test_consumer_stops(void)
{
	struct eng_catchup cu;
	struct item *items[] = { &e1[1], &e1[2], &e1[3] };

	reset();
	eng_catchup_init(&cu, &ops, 8);
	eng_catchup_begin(&cu);
	for (uint64_t n = 4; n <= 7; n++)
		if (live(&cu, n, ENG_CU_HELD))
			return 1;
	lg.stop_after = 2;
	T_CHECK(read_all(&cu, items, 3) == -EPIPE);
	T_CHECK(items[0] == NULL && items[1] == NULL && items[2] == &e1[3]);
	GOT(1, 2);
	lg.ngot = 0;
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == -EPIPE);
	/* 4 went, 5 went and closed it: 6 and 7 let go */
	GOT(4, 5);
	DROPPED(6, 7);
	T_CHECK(cu.n == 0 && cu.held == NULL);
	eng_catchup_exit(&cu);
	return 0;
}

/*
 * The consumer finds a gap again while it is handed what was held (a
 * gap fill): it begins a new read, and the rest wait behind, in order.
 */
static int test_release_reenters(void)
{
	struct eng_catchup cu;

	reset();
	eng_catchup_init(&cu, &ops, 8);
	eng_catchup_begin(&cu);
	for (uint64_t n = 3; n <= 6; n++)
		if (live(&cu, n, ENG_CU_HELD))
			return 1;
	eng_catchup_end(&cu);
	lg.again = &cu;
	lg.again_at = 5;
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == 4);
	GOT(3, 4);
	T_CHECK(eng_catchup_reading(&cu) && cu.n == 2);
	if (live(&cu, 7, ENG_CU_HELD))
		return 1;
	lg.again = NULL;
	if (answer(&cu, 5, 5))
		return 1;
	T_CHECK(eng_catchup_release(&cu, consume, NULL) == 2);
	GOT(3, 4, 5, 6, 7);
	DROPPED(5);
	eng_catchup_exit(&cu);
	return 0;
}

/* eng_hist_judge(): what a recovery's read can say, on both brokers. */
static int test_judge(void)
{
	/* asked e1 after 5; history e1, top 9, first and last found */
	T_CHECK(eng_hist_judge("e1", 5, "e1", 9, 6, 9) == ENG_HREQ_OK);
	T_CHECK(eng_hist_judge("e1", 9, "e1", 9, 0, 0) == ENG_HREQ_OK);
	T_CHECK(eng_hist_judge("e1", 10, "e1", 9, 0, 0) == ENG_HREQ_FUTURE);
	T_CHECK(eng_hist_judge("e1", 5, "e2", 9, 6, 9) == ENG_HREQ_GAP);
	T_CHECK(eng_hist_judge("e1", 5, NULL, 0, 0, 0) == ENG_HREQ_GAP);
	T_CHECK(eng_hist_judge("e1", 5, "e1", 9, 7, 9) == ENG_HREQ_GAP);
	T_CHECK(eng_hist_judge("e1", 5, "e1", 9, 6, 8) == ENG_HREQ_GAP);
	T_CHECK(eng_hist_judge("e1", 5, "e1", 9, 0, 0) == ENG_HREQ_GAP);
	return 0;
}

int main(void)
{
	for (unsigned i = 0; i < 20; i++)
		e1[i] = (struct item){ i, "e1" };
	if (test_read_first() || test_live_first() || test_interleaved() ||
	    test_read_fails() || test_duplicates() || test_over_bound() ||
	    test_noted() || test_consumer_stops() ||
	    test_release_reenters() || test_judge())
		return T_EXIT_FAIL;
	return T_EXIT_PASS;
}
