/* SPDX-License-Identifier: MIT */
/*
 * Description: a connection's send queue (engine/conn_send.c, the
 * conn__sq_* operations), without a ring: frames pushed, the iovecs a
 * send takes (at most ENG_IOV_MAX, the first from its unsent bytes on),
 * completions that end inside a frame, on a frame's end and past several,
 * the window moving along a queue longer than one send, the queue emptied
 * and filled again, a slow consumer's drop that keeps what the send in
 * flight covers, the latency sample, and every reference given back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn_int.h"
#include "helpers.h"
#include "lat.h"

#define NBUF	(ENG_IOV_MAX + 8)

static struct eng_shard *shard;
static struct eng_buf *bufs[NBUF];	/* the test's own reference each */

/* The test's shard: a connection table and zeroed counters, no ring. */
static struct eng_conn *conn_at(uint32_t slot)
{
	struct eng_conn *c = &shard->conns[slot];

	memset(c, 0, sizeof(*c));
	c->state = ENG_CONN_WS;
	return c;
}

/*
 * Frame @i: @len bytes of (i + k) from @start on, as a sealed frame
 * would sit after header room. The test keeps a reference of its own, so
 * refs says whether the queue still holds it.
 */
static struct eng_buf *frame(unsigned i, uint32_t len, uint32_t start)
{
	struct eng_buf *b = eng_buf_new(start + len);

	if (!b)
		return NULL;
	b->start = start;
	b->len = len;
	for (uint32_t k = 0; k < len; k++)
		b->data[start + k] = (uint8_t)(i + k);
	bufs[i] = eng_buf_get(b);
	return b;
}

static unsigned refs(unsigned i)
{
	return atomic_load(&bufs[i]->refs);
}

static void drop_all(void)
{
	for (unsigned i = 0; i < NBUF; i++) {
		eng_buf_put(bufs[i]);
		bufs[i] = NULL;
	}
}

/* Pushes frames @from..@to-1 of @len bytes each to @c. */
static int push_range(struct eng_conn *c, unsigned from, unsigned to,
		      uint32_t len)
{
	for (unsigned i = from; i < to; i++) {
		struct eng_buf *b = frame(i, len, i % 3 ? 0 : 14);

		T_CHECK(b);
		T_CHECK(conn__sq_push(c, b) == 0);
	}
	return 0;
}

/* What a send does to the queue: the iovecs it takes, in flight. */
static unsigned send_now(struct eng_conn *c, struct iovec *iov)
{
	unsigned n = conn__sq_iov(c, iov, ENG_IOV_MAX);

	c->nflight = (uint16_t)n;
	c->flags |= ENG_CONN_F_SEND;
	return n;
}

/* ... and its completion, @res bytes on the wire. */
static void complete(struct eng_conn *c, uint32_t res)
{
	c->flags &= ~ENG_CONN_F_SEND;
	conn__sq_sent(shard, c, res);
}

static int test_push_and_iov(void)
{
	struct eng_conn *c = conn_at(1);
	struct iovec iov[ENG_IOV_MAX];

	T_CHECK(push_range(c, 0, 3, 10) == 0);
	T_CHECK(c->queued == 30);
	T_CHECK(c->sq_head->buf == bufs[0] && c->sq_tail->buf == bufs[2]);
	T_CHECK(c->sq_tail->next == NULL);
	T_CHECK(conn__sq_iov(c, iov, ENG_IOV_MAX) == 3);
	for (unsigned i = 0; i < 3; i++) {
		T_CHECK(iov[i].iov_len == 10);
		T_CHECK(iov[i].iov_base == bufs[i]->data + bufs[i]->start);
		T_CHECK(refs(i) == 2);		/* the test's and the queue's */
	}
	/* a smaller window takes the head first */
	T_CHECK(conn__sq_iov(c, iov, 2) == 2);
	T_CHECK(iov[0].iov_base == bufs[0]->data + bufs[0]->start);
	conn__sq_free(c);
	T_CHECK(!c->sq_head && !c->sq_tail && !c->queued && !c->sent);
	for (unsigned i = 0; i < 3; i++)
		T_CHECK(refs(i) == 1);
	drop_all();
	return 0;
}

static int test_partial_send(void)
{
	struct eng_conn *c = conn_at(1);
	struct iovec iov[ENG_IOV_MAX];

	T_CHECK(push_range(c, 0, 3, 10) == 0);
	T_CHECK(send_now(c, iov) == 3);
	/* ends inside the second frame: the first goes, 5 of the second */
	complete(c, 15);
	T_CHECK(refs(0) == 1 && refs(1) == 2 && refs(2) == 2);
	T_CHECK(c->sq_head->buf == bufs[1] && c->sent == 5);
	T_CHECK(c->queued == 15 && c->nflight == 0);
	/* the next send starts at the second frame's sixth byte */
	T_CHECK(send_now(c, iov) == 2);
	T_CHECK(iov[0].iov_base == bufs[1]->data + bufs[1]->start + 5);
	T_CHECK(iov[0].iov_len == 5 && iov[1].iov_len == 10);
	T_CHECK(((uint8_t *)iov[0].iov_base)[0] == (uint8_t)(1 + 5));
	/* ends exactly on a frame's end */
	complete(c, 5);
	T_CHECK(refs(1) == 1 && c->sent == 0);
	T_CHECK(c->sq_head->buf == bufs[2] && c->sq_tail->buf == bufs[2]);
	/* a byte at a time through the last */
	for (unsigned k = 0; k < 10; k++) {
		T_CHECK(c->sq_head && c->sent == k);
		T_CHECK(send_now(c, iov) == 1 && iov[0].iov_len == 10 - k);
		complete(c, 1);
	}
	T_CHECK(!c->sq_head && !c->sq_tail && !c->queued && !c->sent);
	T_CHECK(refs(2) == 1);
	drop_all();
	return 0;
}

/*
 * More frames than one send takes: each send's window starts where the
 * last stopped, and the queue, once empty, fills again from its head.
 */
static int test_window_and_refill(void)
{
	struct eng_conn *c = conn_at(1);
	struct iovec iov[ENG_IOV_MAX];
	unsigned n;

	T_CHECK(push_range(c, 0, ENG_IOV_MAX + 5, 8) == 0);
	T_CHECK(send_now(c, iov) == ENG_IOV_MAX);
	T_CHECK(iov[ENG_IOV_MAX - 1].iov_base ==
		bufs[ENG_IOV_MAX - 1]->data + bufs[ENG_IOV_MAX - 1]->start);
	/* all of the window but the last frame's last 3 bytes */
	complete(c, ENG_IOV_MAX * 8 - 3);
	T_CHECK(c->sq_head->buf == bufs[ENG_IOV_MAX - 1] && c->sent == 5);
	T_CHECK(refs(ENG_IOV_MAX - 2) == 1 && refs(ENG_IOV_MAX - 1) == 2);
	n = send_now(c, iov);
	T_CHECK(n == 6);		/* the cut frame and the 5 after */
	T_CHECK(iov[0].iov_len == 3 && iov[5].iov_len == 8);
	T_CHECK(iov[5].iov_base == bufs[ENG_IOV_MAX + 4]->data +
				   bufs[ENG_IOV_MAX + 4]->start);
	complete(c, 3 + 5 * 8);
	T_CHECK(!c->sq_head && !c->sq_tail && c->queued == 0);
	/* emptied: the next push is head and tail at once */
	T_CHECK(push_range(c, ENG_IOV_MAX + 5, ENG_IOV_MAX + 7, 4) == 0);
	T_CHECK(c->sq_head->buf == bufs[ENG_IOV_MAX + 5]);
	T_CHECK(c->sq_tail->buf == bufs[ENG_IOV_MAX + 6]);
	T_CHECK(c->sq_head->next == c->sq_tail && c->queued == 8);
	T_CHECK(send_now(c, iov) == 2 && iov[0].iov_len == 4);
	complete(c, 8);
	T_CHECK(!c->sq_head && !c->sq_tail);
	for (unsigned i = 0; i < ENG_IOV_MAX + 7; i++)
		T_CHECK(refs(i) == 1);
	drop_all();
	return 0;
}

/*
 * A slow consumer's drop: what the send in flight covers stays (the
 * kernel reads it until the completion), the rest goes, and the queue
 * goes on after what stayed.
 */
static int test_drop(void)
{
	struct eng_conn *c = conn_at(1);
	struct iovec iov[ENG_IOV_MAX];

	T_CHECK(push_range(c, 0, 2, 10) == 0);
	send_now(c, iov);
	complete(c, 3);			/* 7 bytes of the head left */
	T_CHECK(push_range(c, 2, 6, 10) == 0);
	T_CHECK(send_now(c, iov) == 6);
	c->nflight = 2;			/* as if the send took two */
	T_CHECK(conn__sq_cut(c) == 4);
	T_CHECK(c->queued == 7 + 10);
	T_CHECK(c->sq_head->buf == bufs[0] && c->sq_tail->buf == bufs[1]);
	T_CHECK(c->sq_tail->next == NULL && c->sent == 3);
	for (unsigned i = 2; i < 6; i++)
		T_CHECK(refs(i) == 1);
	T_CHECK(refs(0) == 2 && refs(1) == 2);
	/* the close frame a slow consumer gets goes after them */
	T_CHECK(push_range(c, 6, 7, 4) == 0);
	T_CHECK(c->sq_head->next->next->buf == bufs[6]);
	complete(c, 17);
	T_CHECK(c->sq_head->buf == bufs[6] && c->sq_head == c->sq_tail);
	T_CHECK(c->queued == 4 && c->sent == 0);
	/* nothing in flight: everything goes */
	T_CHECK(conn__sq_cut(c) == 1);
	T_CHECK(!c->sq_head && !c->sq_tail && c->queued == 0);
	for (unsigned i = 0; i < 7; i++)
		T_CHECK(refs(i) == 1);
	drop_all();
	return 0;
}

static uint64_t lat_samples(void)
{
	uint64_t n = 0;

	for (unsigned i = 0; i <= ENG_LAT_BUCKETS; i++)
		n += atomic_load(&shard->stats.lat[i]);
	return n;
}

/* A stamped frame is timed when it has gone, on one slot in 16 only. */
static int test_latency_sample(void)
{
	struct iovec iov[ENG_IOV_MAX];
	uint64_t before = lat_samples();
	struct eng_conn *c;

	/* slot 0 is sampled, slot ENG_LAT_EVERY + 1 is not */
	for (uint32_t i = 0; i < 2; i++) {
		c = conn_at(i * (ENG_LAT_EVERY + 1));
		T_CHECK(push_range(c, 0, 1, 10) == 0);
		bufs[0]->t_us = eng_lat_now();
		send_now(c, iov);
		complete(c, 9);
		T_CHECK(lat_samples() == before);	/* not gone yet */
		complete(c, 1);
		T_CHECK(lat_samples() == before + (i == 0));
		drop_all();
		before = lat_samples();
	}
	return 0;
}

int main(void)
{
	int ret;

	shard = calloc(1, sizeof(*shard));
	if (!shard)
		return T_EXIT_FAIL;
	shard->nr_conns = 2 * ENG_LAT_EVERY;
	shard->conns = calloc(shard->nr_conns, sizeof(*shard->conns));
	if (!shard->conns)
		return T_EXIT_FAIL;
	ret = test_push_and_iov() || test_partial_send() ||
	      test_window_and_refill() || test_drop() ||
	      test_latency_sample();
	free(shard->conns);
	free(shard);
	return ret ? T_EXIT_FAIL : T_EXIT_PASS;
}
