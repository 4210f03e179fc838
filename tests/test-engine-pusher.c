/* SPDX-License-Identifier: MIT */
/*
 * Description: a Pusher connection's hand-over record (engine/pusher_ho.c)
 * on the embedded broker: a record as the old process writes it, loaded
 * into a fresh slot, gives the connection back (app, socket_id, user,
 * client-event rate state, presence join) and counts its member again in
 * this node's table; saved again it is the same bytes. A record cut
 * anywhere, of another version or with a member that is not the join's
 * user is refused with -EINVAL and leaves nothing behind; an app this
 * process lacks is -ENOENT. Also what an idle Pusher connection costs
 * (issue 26): struct pconn's size, and a shard's table of them, which
 * takes memory for the slots used only, not for the shard's capacity.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "conn.h"
#include "handover.h"
#include "helpers.h"
#include "pusher_int.h"

#define ROOM	"!p:app1:presence-room"
#define TICK	100

static struct eng e;
static struct eng_pusher_cfg pcfg;
static struct eng_shard sh;
static struct eng_conn conns[4];

static int setup(void)
{
	const char *why = NULL;

	pusher_apps_init(&pcfg.apps);
	T_CHECK(pusher_apps_add(&pcfg.apps, "app1:key1:secret1", 17, &why) == 0);
	e.cfg.pusher = &pcfg;
	sh.eng = &e;
	sh.conns = conns;
	sh.nr_conns = 4;
	sh.tick = TICK;
	for (unsigned i = 0; i < 4; i++)
		conns[i].gen = 7 + i;
	return 0;
}

static void put_s8(struct eng_ho_buf *b, const char *s)
{
	eng_ho_put_u8(b, (uint8_t)strlen(s));
	eng_ho_put(b, s, strlen(s));
}

static void put_s16(struct eng_ho_buf *b, const char *s)
{
	eng_ho_put_u16(b, (uint16_t)strlen(s));
	eng_ho_put(b, s, strlen(s));
}

/*
 * Version 2 as docs/PUSHER.md gives it: app1, socket_id 123.456, 3 client
 * events in a second begun 2 ticks ago, signed in as alice, the embedded
 * broker (no node), no subscription (this shard has no owners to ask;
 * test_handover_live carries them end to end), one presence join as
 * alice. @own: one other channel of that engine name, or NULL.
 */
static void record_own(struct eng_ho_buf *b, uint8_t version, const char *app,
		       const char *member_str, const char *own)
{
	static const char blob_a[] = "\"alice\"", info[] = "{\"n\":1}";

	eng_ho_put_u8(b, version);
	put_s8(b, app);
	eng_ho_put_u32(b, 123);
	eng_ho_put_u32(b, 456);
	eng_ho_put_u8(b, 3);
	eng_ho_put_u16(b, 2);
	put_s16(b, "alice");
	put_s8(b, "");
	eng_ho_put_u16(b, 0);
	eng_ho_put_u16(b, own ? 1 : 0);
	if (own)
		put_s8(b, own);
	eng_ho_put_u16(b, 1);
	put_s8(b, "presence-room");
	put_s16(b, "alice");
	eng_ho_put_u32(b, (uint32_t)(sizeof(blob_a) + strlen(member_str) + 1 +
				     sizeof(info) - 1));
	eng_ho_put(b, blob_a, sizeof(blob_a));	/* its NUL the separator */
	eng_ho_put(b, member_str, strlen(member_str) + 1);
	eng_ho_put(b, info, sizeof(info) - 1);
}

static void record(struct eng_ho_buf *b, uint8_t version, const char *app,
		   const char *member_str)
{
	record_own(b, version, app, member_str, NULL);
}

static int load(struct eng_conn *c, const struct eng_ho_buf *b, size_t len)
{
	struct eng_ho_rd r = { .p = b->p, .len = len };

	return eng_pusher__ho_load(&sh, c, &r);
}

static void unload(struct eng_conn *c)
{
	struct pconn *pc = eng_pusher__pconn(&sh, c);

	while (pc && pc->joins) {
		struct join *j = pc->joins;

		pc->joins = j->next;
		free(j);
	}
	if (pc) {
		free(pc->uid);
		memset(pc, 0, sizeof(*pc));
	}
}

static int test_round_trip(void)
{
	struct eng_ho_buf in = { 0 }, out = { 0 };
	char sid[PUSHER_SOCKET_ID_OWN + 1];
	struct pconn *pc;

	record(&in, 2, "app1", "alice");
	T_CHECK(!in.err);
	T_CHECK(load(&conns[1], &in, in.len) == 0);
	pc = eng_pusher__pconn(&sh, &conns[1]);
	T_CHECK(pc && pc->app == 1 && pc->gen == conns[1].gen);
	T_CHECK(eng_pusher__sid(pc, sid).len == 7 && !strcmp(sid, "123.456"));
	T_CHECK(pc->ev_n == 3 && pc->ev_tick == TICK - 2);
	T_CHECK(pc->uid && !strcmp(pc->uid, "alice"));
	T_CHECK(pc->joins && !pc->joins->next &&
		pc->joins->len == strlen(ROOM) &&
		!memcmp(pc->joins->name, ROOM, pc->joins->len) &&
		pc->joins->ulen == 5 && !memcmp(pc->joins->uid, "alice", 5));
	T_CHECK(eng_pusher_user_count(ROOM, strlen(ROOM)) == 1);
	/* written again, from the slot and the node's table: the same */
	T_CHECK(eng_pusher__ho_save(&sh, &conns[1], &out) == 0);
	if (out.len != in.len || memcmp(out.p, in.p, in.len))
		T_FAIL("saved again: %zu bytes, not the %zu loaded", out.len,
		       in.len);
	/* alice's second connection: one member still */
	T_CHECK(load(&conns[2], &in, in.len) == 0);
	T_CHECK(eng_pusher_user_count(ROOM, strlen(ROOM)) == 1);
	unload(&conns[2]);
	eng_ho_buf_free(&in);
	eng_ho_buf_free(&out);
	return 0;
}

/* Each refused: -EINVAL or @ret, slot 3 left without a record. */
static int refused(const struct eng_ho_buf *b, size_t len, int ret)
{
	int got = load(&conns[3], b, len);

	if (got != ret)
		T_FAIL("%zu bytes: %d, not %d", len, got, ret);
	T_CHECK(!eng_pusher__pconn(&sh, &conns[3]));
	T_CHECK(eng_pusher_user_count(ROOM, strlen(ROOM)) == 1);
	return 0;
}

static int test_malformed(void)
{
	struct eng_ho_buf b = { 0 };

	static const char *const foreign[] = {
		"!u:app2:0123456789012345678901234567890123456789", /* not ours */
		"!x:app1:0123456789012345678901234567890123456789", /* no kind */
		"!u:app1", "u:app1:a", "!w:app1:a b", "/ws-channel",
	};

	record_own(&b, 2, "app1", "alice", "!w:app1:abc");
	for (size_t k = 0; k < b.len; k++)
		if (refused(&b, k, -EINVAL))
			return 1;
	eng_ho_buf_free(&b);
	record(&b, 1, "app1", "alice");		/* a version not ours */
	if (refused(&b, b.len, -EINVAL))
		return 1;
	eng_ho_buf_free(&b);
	for (size_t i = 0; i < sizeof(foreign) / sizeof(*foreign); i++) {
		record_own(&b, 2, "app1", "alice", foreign[i]);
		if (refused(&b, b.len, -EINVAL))
			T_FAIL("other channel %s taken", foreign[i]);
		eng_ho_buf_free(&b);
	}
	record(&b, 2, "app1", "bob");		/* not the join's user */
	if (refused(&b, b.len, -EINVAL))
		return 1;
	eng_ho_buf_free(&b);
	record(&b, 2, "app9", "alice");		/* an app we lack */
	if (refused(&b, b.len, -ENOENT))
		return 1;
	eng_ho_buf_free(&b);
	return 0;
}

/* This process's resident bytes now. */
static long resident(void)
{
	long pages = -1, rss = -1;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f && fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = -1;
	if (f)
		fclose(f);
	return rss < 0 ? -1 : rss * sysconf(_SC_PAGESIZE);
}

/* A shard of a million slots: its first Pusher connection costs a page. */
static int test_table_untouched(void)
{
	static struct eng_shard big;
	long before, after;
	struct pconn *pc;

	big.eng = &e;
	big.id = 1;
	big.nr_conns = 1u << 20;	/* a table of 40 MiB */
	big.conns = conns;
	before = resident();
	pc = eng_pusher__pconn_new(&big, &conns[0]);
	after = resident();
	T_CHECK(pc && before > 0 && after > 0);
	T_CHECK(pc->app == 0 && pc->gen == 0 && !pc->uid && !pc->joins);
	if (after - before > 4L << 20)
		T_FAIL("the first connection's record took %ld KiB",
		       (after - before) >> 10);
	return 0;
}

int main(void)
{
	printf("sizeof(struct pconn) = %zu (budget %d)\n",
	       sizeof(struct pconn), PUSHER_PCONN_BUDGET);
	if (setup() || test_round_trip() || test_malformed() ||
	    test_table_untouched())
		return T_EXIT_FAIL;
	unload(&conns[1]);
	pusher_apps_exit(&pcfg.apps);
	return T_EXIT_PASS;
}
