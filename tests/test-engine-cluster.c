/* SPDX-License-Identifier: MIT */
/*
 * test-engine-cluster: hash slots as Redis computes them, the per-slot
 * tags, and the parsing of Redis Cluster's answers (engine/cluster.c).
 */
#include <hiredis/hiredis.h>

#include "cluster.h"
#include "helpers.h"

static uint16_t slot_of(const char *s)
{
	return eng_cluster_slot(s, strlen(s));
}

/* Figures from the Redis Cluster specification and CLUSTER KEYSLOT's page. */
static int test_slots(void)
{
	T_CHECK(slot_of("123456789") == (0x31c3 & 16383));
	T_CHECK(slot_of("somekey") == 11058);
	T_CHECK(slot_of("foo{hash_tag}") == 2515);
	/* a tag is what lies between the first { and the first } after it */
	T_CHECK(slot_of("{user1000}.following") == slot_of("user1000"));
	T_CHECK(slot_of("{room1}:a") == slot_of("{room1}:b"));
	T_CHECK(slot_of("foo{}{bar}") == slot_of("foo{}{bar}") &&
		slot_of("foo{}{bar}") != slot_of("bar"));
	T_CHECK(slot_of("foo{{bar}}zap") == slot_of("{bar"));
	T_CHECK(slot_of("foo{bar}{zap}") == slot_of("bar"));
	T_CHECK(slot_of("a{b") == eng_cluster_slot("a{b", 3));
	return 0;
}

static int test_tags(void)
{
	char key[64];

	for (unsigned s = 0; s < ENG_SLOTS; s++) {
		const char *t = eng_cluster_tag((uint16_t)s);

		T_CHECK(t && t[0] && strlen(t) < ENG_CLUSTER_TAG_MAX);
		T_CHECK(slot_of(t) == s);
		snprintf(key, sizeof(key), "p:{%s}hist:x}y{z", t);
		T_CHECK(slot_of(key) == s);
	}
	return 0;
}

/* Counts the slots whose master and first reachable replica are right. */
static void count_range(void *arg, uint16_t first, uint16_t last,
			const struct eng_cluster_addr *m,
			const struct eng_cluster_addr *rp)
{
	unsigned *n = arg;
	bool ok;

	if (first == 0)		/* the "?" replica is passed over */
		ok = !strcmp(m->host, "seed") && m->port == 7000 && rp &&
		     !strcmp(rp->host, "127.0.0.1") && rp->port == 7003;
	else
		ok = !strcmp(m->host, "10.0.0.2") && m->port == 7001 && !rp;
	if (ok)
		*n += (unsigned)(last - first + 1);
}

static int test_parse(void)
{
	/*
	 * CLUSTER SLOTS: [[0,8191,["",7000,"id"],["?",7004,"id3"],
	 * ["127.0.0.1",7003,"id2"]],[8192,16383,[...]]]
	 */
	static const char resp[] =
		"*2\r\n"
		"*5\r\n:0\r\n:8191\r\n*3\r\n$0\r\n\r\n:7000\r\n$2\r\nid\r\n"
		"*3\r\n$1\r\n?\r\n:7004\r\n$3\r\nid3\r\n"
		"*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$3\r\nid2\r\n"
		"*3\r\n:8192\r\n:16383\r\n*3\r\n$8\r\n10.0.0.2\r\n:7001\r\n"
		"$2\r\nid\r\n";
	redisReader *rd = redisReaderCreate();
	struct eng_cluster_addr a[4];
	void *rep = NULL;
	unsigned covered = 0;
	uint16_t slot;
	bool ask;

	T_CHECK(rd);
	redisReaderFeed(rd, resp, sizeof(resp) - 1);
	T_CHECK(redisReaderGetReply(rd, &rep) == REDIS_OK && rep);
	T_CHECK(eng_cluster_parse_slots(rep, "seed", count_range,
					&covered) == 2);
	T_CHECK(covered == ENG_SLOTS);
	freeReplyObject(rep);
	redisReaderFeed(rd, "-ERR This instance has cluster support disabled"
			"\r\n", 49);
	T_CHECK(redisReaderGetReply(rd, &rep) == REDIS_OK && rep);
	T_CHECK(eng_cluster_parse_slots(rep, "seed", count_range,
					&covered) == -EPROTO);
	freeReplyObject(rep);
	redisReaderFree(rd);

	T_CHECK(eng_cluster_redirect("MOVED 3999 127.0.0.1:6381", 25, &slot,
				     a, &ask));
	T_CHECK(slot == 3999 && !ask && a->port == 6381 &&
		!strcmp(a->host, "127.0.0.1"));
	T_CHECK(eng_cluster_redirect("ASK 0 ::1:7000", 14, &slot, a, &ask));
	T_CHECK(slot == 0 && ask && a->port == 7000 && !strcmp(a->host, "::1"));
	T_CHECK(!eng_cluster_redirect("MOVED 16384 h:1", 15, &slot, a, &ask));
	T_CHECK(!eng_cluster_redirect("MOVED 1 h:0", 11, &slot, a, &ask));
	T_CHECK(!eng_cluster_redirect("ERR wrong", 9, &slot, a, &ask));
	T_CHECK(!eng_cluster_redirect("MOVED 12", 8, &slot, a, &ask));

	T_CHECK(eng_cluster_parse_seeds("a:1,127.0.0.1:6380", a, 4) == 2);
	T_CHECK(!strcmp(a[1].host, "127.0.0.1") && a[1].port == 6380);
	T_CHECK(eng_cluster_parse_seeds("a:1,", a, 4) == -EINVAL);
	T_CHECK(eng_cluster_parse_seeds("a", a, 4) == -EINVAL);
	T_CHECK(eng_cluster_parse_seeds("a:70000", a, 4) == -EINVAL);
	T_CHECK(eng_cluster_parse_seeds("a:1,b:2", a, 1) == -EINVAL);
	return 0;
}

int main(void)
{
	if (test_slots() || test_tags() || test_parse())
		return T_EXIT_FAIL;
	return T_EXIT_PASS;
}
