/* SPDX-License-Identifier: MIT */
/*
 * handover_redis.c: a live hand-over with one Redis (docs/HANDOVER.md
 * "With Redis"), on the handover threads of both processes. Once the old
 * process is quiesced it sends the new one the Redis channels it is
 * subscribed to and a marker channel of this take-over's own (SUBS); the
 * new one subscribes them all and says so (SUBSCRIBED); the old one
 * publishes the marker; each bridge cuts its stream there (bridge_ho.c).
 * The old one's connections are written out after its cut, with what
 * came before it; what came after is the new one's to deliver, held until
 * its carried connections are subscribed. The old one holds it too until
 * READY: if the take-over fails its connections resume and get it.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"
#include "broker.h"
#include "handover.h"

#define WAIT_MS		30000	/* each step: Redis answers, the peer too */
#define SUBS_PIECE	(1u << 20)	/* bytes of names a message */
#define QUIET_WAITS	2000	/* ms: for the shards' mail to be read */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* True on one Redis (not a cluster): the marker's order holds there. */
static bool one_redis(const struct eng *e)
{
	return !e->broker->state_here && eng_bridge_ho_ok(e);
}

uint32_t eng_ho_redis_caps(const struct eng *e)
{
	return one_redis(e) ? ENG_HO_CAP_REDIS : 0;
}

bool eng_ho_redis_live(const struct eng *e, const struct eng_ho_hello *peer)
{
	return one_redis(e) && peer->redis && (peer->caps & ENG_HO_CAP_REDIS);
}

/* Waits for the bridge to reach @want; -EIO if it failed, or -ETIMEDOUT. */
static int wait_state(struct eng *e, int want)
{
	uint64_t until = now_ms() + WAIT_MS;

	while (now_ms() < until && !atomic_load(&e->ho->exiting)) {
		int st = eng_bridge_ho_state(e);

		if (st == want)
			return 0;
		if (st == ENG_BHO_FAILED)
			return -EIO;
		poll(NULL, 0, 10);
	}
	return -ETIMEDOUT;
}

/* The marker and the names in pieces of SUBS_PIECE: last u8 says the end. */
static int send_subs(int fd, const char *marker, const uint8_t *names,
		     size_t len, uint32_t n)
{
	size_t off = 0;
	int ret = 0;

	do {
		struct eng_ho_buf b = { 0 };
		size_t end = off;

		/* whole names only: a piece ends where one does */
		while (end < len && end - off < SUBS_PIECE)
			end += 2 + ((size_t)names[end] << 8 | names[end + 1]);
		eng_ho_put_u8(&b, end >= len);
		eng_ho_put_u16(&b, (uint16_t)strlen(marker));
		eng_ho_put(&b, marker, strlen(marker));
		eng_ho_put_u32(&b, n);
		eng_ho_put(&b, names + off, end - off);
		ret = b.err ? -ENOMEM : eng_ho_send(fd, ENG_HO_T_SUBS, b.p,
						     b.len, NULL, 0);
		eng_ho_buf_free(&b);
		off = end;
	} while (ret == 0 && off < len);
	return ret;
}

/* The new process's SUBSCRIBED; an optional message we do not know skipped. */
static int wait_subscribed(struct eng *e, int fd)
{
	struct eng_ho_buf msg = { 0 };
	uint64_t until = now_ms() + WAIT_MS;
	int ret = -ETIMEDOUT;

	while (now_ms() < until && !atomic_load(&e->ho->exiting)) {
		unsigned nfds;
		uint8_t type;

		ret = eng_ho_recv(fd, &type, &msg, NULL, &nfds);
		if (ret == -EAGAIN || ret == -EINTR) {
			ret = -ETIMEDOUT;
			continue;	/* a second passed: look again */
		}
		if (ret == 0 && type == ENG_HO_T_SUBSCRIBED)
			break;
		if (ret == 0 && (type & ENG_HO_T_OPTIONAL))
			continue;
		if (ret == 0)
			ret = type == ENG_HO_T_ABORT ? -ECANCELED : -EPROTO;
		break;
	}
	eng_ho_buf_free(&msg);
	return ret;
}

int eng_ho_redis_give(struct eng *e, int fd)
{
	char marker[96];
	uint64_t nonce = 0;
	const uint8_t *names;
	size_t len;
	uint32_t n;
	int ret;

	if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce))
		nonce ^= now_ms();	/* the pid and the time still differ */
	snprintf(marker, sizeof(marker), "%sho:%d:%016llx",
		 e->cfg.redis_prefix, (int)getpid(),
		 (unsigned long long)nonce);
	ret = eng_bridge_ho(e, ENG_BHO_GIVE, marker, NULL, 0);
	if (ret == 0)
		ret = wait_state(e, ENG_BHO_SUBSCRIBED);
	if (ret < 0)
		return ret;
	names = eng_bridge_ho_names(e, &len, &n);
	ret = send_subs(fd, marker, names, len, n);
	if (ret == 0)
		ret = wait_subscribed(e, fd);
	if (ret == 0)
		ret = eng_bridge_ho(e, ENG_BHO_MARK, NULL, NULL, 0);
	/* everything before the marker is on its way to the shards now */
	if (ret == 0)
		ret = wait_state(e, ENG_BHO_HOLD);
	/*
	 * ... and in their connections' queues once no mail is in flight
	 * (a publish's fan-out is counted before its mail is read: mail.c);
	 * if other mail keeps it busy, SAVE's ticks still come after.
	 */
	for (unsigned i = 0; ret == 0 && i < QUIET_WAITS &&
	     atomic_load(&e->mail); i++)
		poll(NULL, 0, 1);
	if (ret == 0)
		fprintf(stderr, "ringcast: hand-over: %u Redis channels "
			"subscribed by the new process; the stream cut at %s\n",
			n, marker);
	return ret;
}

void eng_ho_redis_end(struct eng *e)
{
	if (eng_bridge_ho_state(e) != ENG_BHO_NONE)
		eng_bridge_ho(e, ENG_BHO_END, NULL, NULL, 0);
}

/* Checks @names (@len bytes) is whole: u16 length + a name, each. */
static bool names_ok(const uint8_t *names, size_t len)
{
	size_t off = 0;

	while (off + 2 <= len) {
		size_t k = (size_t)names[off] << 8 | names[off + 1];

		if (!k || k > ENG_CHAN_MAX + 128 || off + 2 + k > len)
			return false;
		off += 2 + k;
	}
	return off == len;
}

int eng_ho_redis_take(struct eng *e, int fd, const struct eng_ho_buf *msg)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_rd r = { msg->p, msg->len, 0, false };
	uint8_t last = eng_ho_get_u8(&r);
	uint16_t mlen = eng_ho_get_u16(&r);
	const uint8_t *m = eng_ho_get(&r, mlen);
	char marker[96];
	uint32_t n = eng_ho_get_u32(&r);
	struct eng_ho_buf ok = { 0 };
	int ret = 0;

	if (r.err || !one_redis(e) || !mlen || mlen >= sizeof(marker) ||
	    !names_ok(r.p + r.off, r.len - r.off))
		ret = -EPROTO;
	if (ret == 0)
		eng_ho_put(&ho->subs, r.p + r.off, r.len - r.off);
	if (ret == 0 && ho->subs.err)
		ret = -ENOMEM;
	if (ret < 0 || !last) {
		if (ret < 0)
			eng_ho_buf_free(&ho->subs);
		return ret;
	}
	memcpy(marker, m, mlen);
	marker[mlen] = '\0';
	/* the bridge runs from now: it holds what it gets until we say */
	ret = eng_bridge_run(e);
	if (ret == 0)
		ret = eng_bridge_ho(e, ENG_BHO_TAKE, marker, ho->subs.p,
				    ho->subs.len);
	eng_ho_buf_free(&ho->subs);
	if (ret == 0)
		ret = wait_state(e, ENG_BHO_SUBSCRIBED);
	eng_ho_put_u32(&ok, n);
	if (ret == 0)
		ret = ok.err ? -ENOMEM : eng_ho_send(fd, ENG_HO_T_SUBSCRIBED,
						      ok.p, ok.len, NULL, 0);
	eng_ho_buf_free(&ok);
	if (ret == 0)
		fprintf(stderr, "ringcast: take-over: subscribed %u Redis "
			"channels and %s\n", n, marker);
	return ret;
}
