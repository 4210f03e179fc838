/* SPDX-License-Identifier: MIT */
/*
 * Description: ring/ against the real kernel. A ring with a sparse
 * fixed-file table; a provided buffer ring feeding a multishot recv on a
 * socketpair, running dry (-ENOBUFS ends the multishot) and recovering
 * once buffers are recycled, publishing part of a larger pool and reusing
 * the last buffer given back first; a MSG_RING mailbox message between rings;
 * the user_data codec; ending a connection's pending recv and send; the
 * epoll backend behind the same operations.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"
#include "ring.h"
#include "ud.h"

#define NBUF	8
#define BUFSZ	64

static int wait_cqe(struct ring *r, struct io_uring_cqe *out)
{
	struct io_uring_cqe *cqe;
	int ret = io_uring_submit_and_wait(&r->uring, 1);

	if (ret < 0)
		return ret;
	ret = io_uring_peek_cqe(&r->uring, &cqe);
	if (ret < 0)
		return ret;
	*out = *cqe;
	io_uring_cqe_seen(&r->uring, cqe);
	return 0;
}

static void arm_recv(struct ring *r, struct ring_bufs *b)
{
	struct io_uring_sqe *sqe = ring_sqe(r);

	io_uring_prep_recv_multishot(sqe, 0, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = b->bgid;
	io_uring_sqe_set_data64(sqe, ring_ud(2, 0, 7));
}

static int test_ud(void)
{
	uint64_t ud = ring_ud(5, 123456, 0xdeadbeef);
	int x;

	T_CHECK(ring_ud_op(ud) == 5);
	T_CHECK(ring_ud_slot(ud) == 123456);
	T_CHECK(ring_ud_gen(ud) == 0xdeadbeef);
	ud = ring_ud_ptr(9, &x);
	T_CHECK(ring_ud_op(ud) == 9 && ring_ud_to_ptr(ud) == &x);
	return 0;
}

static int test_bufs_recv(void)
{
	struct io_uring_cqe cqe;
	struct ring_bufs b;
	struct ring r;
	unsigned held[NBUF + 1], nheld = 0, i;
	char msg[16];
	int sv[2], fd;

	T_CHECK(ring_init(&r, 64, 64, RING_F_SINGLE) == 0);
	T_CHECK(r.nr_files == 64);
	T_CHECK(ring_bufs_init(&r, &b, 3, 6, BUFSZ) == -EINVAL); /* not 2^n */
	T_CHECK(ring_bufs_init(&r, &b, 3, NBUF, BUFSZ) == 0);
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fd = sv[0];
	T_CHECK(io_uring_register_files_update(&r.uring, 0, &fd, 1) == 1);
	close(sv[0]);	/* the fixed table holds its own reference */

	arm_recv(&r, &b);
	/* Each write is read into its own buffer; hold them all. */
	for (i = 0; i < NBUF; i++) {
		int n = snprintf(msg, sizeof(msg), "msg%u", i);

		T_CHECK(write(sv[1], msg, (size_t)n) == n);
		T_CHECK(wait_cqe(&r, &cqe) == 0);
		T_CHECK(cqe.res == n);
		T_CHECK(cqe.flags & IORING_CQE_F_BUFFER);
		T_CHECK(cqe.flags & IORING_CQE_F_MORE);
		held[nheld] = ring_bufs_bid(cqe.flags);
		T_CHECK(!memcmp(ring_bufs_ptr(&b, held[nheld]), msg, (size_t)n));
		nheld++;
	}
	/* The group is empty: the next read ends the multishot. */
	T_CHECK(write(sv[1], "late", 4) == 4);
	T_CHECK(wait_cqe(&r, &cqe) == 0);
	T_CHECK(cqe.res == -ENOBUFS);
	T_CHECK(!(cqe.flags & IORING_CQE_F_MORE));

	/* Give one back and re-arm: the waiting bytes arrive, not lost. */
	ring_bufs_recycle(&b, held[0]);
	ring_bufs_refill(&b);
	arm_recv(&r, &b);
	T_CHECK(wait_cqe(&r, &cqe) == 0);
	T_CHECK(cqe.res == 4);
	T_CHECK(ring_bufs_bid(cqe.flags) == held[0]);
	T_CHECK(!memcmp(ring_bufs_ptr(&b, held[0]), "late", 4));

	/* EOF ends the multishot with res 0. */
	for (i = 1; i < nheld; i++)
		ring_bufs_recycle(&b, held[i]);
	ring_bufs_refill(&b);
	close(sv[1]);
	T_CHECK(wait_cqe(&r, &cqe) == 0);
	T_CHECK(cqe.res == 0 && !(cqe.flags & IORING_CQE_F_MORE));

	ring_bufs_exit(&r, &b);
	ring_exit(&r);
	return 0;
}

/*
 * A pool larger than RING_BUFS_WANT0 publishes only that many buffers,
 * the lowest first; a recv that finds them all taken doubles what the
 * next refill publishes, and recycled buffers come back last in, first
 * out, so the memory in use stays the memory used last.
 */
static int test_bufs_lifo(void)
{
	enum { POOL = 2 * RING_BUFS_WANT0 };
	struct io_uring_cqe cqe;
	struct ring_bufs b;
	struct ring r;
	unsigned i;
	int sv[2], fd;

	T_CHECK(ring_init(&r, 64, 4, RING_F_SINGLE) == 0);
	T_CHECK(ring_bufs_init(&r, &b, 5, POOL, BUFSZ) == 0);
	T_CHECK(b.want == RING_BUFS_WANT0 && b.published == RING_BUFS_WANT0);
	T_CHECK(b.nfree == POOL - RING_BUFS_WANT0);
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fd = sv[0];
	T_CHECK(io_uring_register_files_update(&r.uring, 0, &fd, 1) == 1);
	close(sv[0]);

	arm_recv(&r, &b);
	for (i = 0; i < RING_BUFS_WANT0; i++) {
		T_CHECK(write(sv[1], "m", 1) == 1);
		T_CHECK(wait_cqe(&r, &cqe) == 0);
		T_CHECK(cqe.res == 1 && (cqe.flags & IORING_CQE_F_MORE));
		T_CHECK(ring_bufs_bid(cqe.flags) == i);	/* in address order */
	}
	T_CHECK(write(sv[1], "late", 4) == 4);
	T_CHECK(wait_cqe(&r, &cqe) == 0);
	T_CHECK(cqe.res == -ENOBUFS);
	ring_bufs_starved(&b);
	for (i = 0; i < RING_BUFS_WANT0; i++)
		ring_bufs_recycle(&b, i);
	ring_bufs_refill(&b);
	T_CHECK(b.want == POOL && b.published == POOL && b.nfree == 0);

	/* The last buffer given back is the next one filled. */
	arm_recv(&r, &b);
	T_CHECK(wait_cqe(&r, &cqe) == 0);
	T_CHECK(cqe.res == 4);
	T_CHECK(ring_bufs_bid(cqe.flags) == RING_BUFS_WANT0 - 1);
	T_CHECK(!memcmp(ring_bufs_ptr(&b, RING_BUFS_WANT0 - 1), "late", 4));
	ring_bufs_recycle(&b, RING_BUFS_WANT0 - 1);

	/* At the whole pool the want stops growing. */
	ring_bufs_starved(&b);
	ring_bufs_refill(&b);
	T_CHECK(b.want == POOL);
	close(sv[1]);
	T_CHECK(wait_cqe(&r, &cqe) == 0);
	T_CHECK(cqe.res == 0);
	ring_bufs_exit(&r, &b);
	ring_exit(&r);
	return 0;
}

static int test_mbox(void)
{
	struct io_uring_cqe cqe;
	struct ring a, b;
	uint64_t ud = ring_ud(7, 42, 1);

	T_CHECK(ring_init(&a, 8, 0, 0) == 0);
	T_CHECK(ring_init(&b, 8, 0, RING_F_SINGLE) == 0);
	T_CHECK(ring_mbox_post(&a, &b, ud, 1234, 99) == 0);
	T_CHECK(io_uring_submit(&a.uring) == 1);
	T_CHECK(wait_cqe(&b, &cqe) == 0);
	T_CHECK(cqe.user_data == ud);
	T_CHECK(cqe.res == 1234);
	/* The sender's own CQE is skipped on success. */
	T_CHECK(io_uring_cq_ready(&a.uring) == 0);
	ring_exit(&a);
	ring_exit(&b);
	return 0;
}

/* Collects completions for the epoll test. */
struct got {
	struct ring_cqe cqe[16];
	unsigned n;
};

static void collect(void *arg, struct ring_cqe *cqe)
{
	struct got *g = arg;

	if (g->n < 16)
		g->cqe[g->n++] = *cqe;
}

/* Runs @r until a completion with @ud arrives; returns its index. */
static int wait_ud(struct ring *r, struct got *g, uint64_t ud)
{
	for (int spins = 0; spins < 100; spins++) {
		for (unsigned i = 0; i < g->n; i++)
			if (g->cqe[i].user_data == ud)
				return (int)i;
		if (ring_run(r, 1, collect, g) < 0)
			return -1;
	}
	return -1;
}

/*
 * A ring_set sleeps for two member rings at once: mail posted to the
 * second wakes it, and only that ring holds the completion; a timer on
 * the first wakes it too; with nothing due it returns after its limit.
 */
static int test_set(void)
{
	struct ring a, m[2];
	struct ring_set set;
	struct got g = { .n = 0 };
	uint64_t ud = ring_ud(7, 43, 2);

	T_CHECK(ring_init(&a, 8, 0, 0) == 0);
	T_CHECK(ring_set_init(&set, 2) == 0);
	for (int i = 0; i < 2; i++) {
		T_CHECK(ring_init(&m[i], 8, 0, RING_F_SINGLE | RING_F_SHARED) == 0);
		T_CHECK(ring_set_add(&set, &m[i]) == 0);
	}
	T_CHECK(ring_set_wait(&set, 1000000) == 0);	/* 1 ms, nothing due */
	T_CHECK(ring_run(&m[0], 0, collect, &g) == 0);
	T_CHECK(ring_run(&m[1], 0, collect, &g) == 0);

	T_CHECK(ring_mbox_post(&a, &m[1], ud, 5, 99) == 0);
	T_CHECK(io_uring_submit(&a.uring) == 1);
	T_CHECK(ring_set_wait(&set, UINT64_MAX) == 0);	/* no limit: woken */
	T_CHECK(ring_run(&m[0], 0, collect, &g) == 0);
	T_CHECK(ring_run(&m[1], 0, collect, &g) == 1);
	T_CHECK(g.n == 1 && g.cqe[0].user_data == ud && g.cqe[0].res == 5);

	T_CHECK(ring_timeout(&m[0], 1, ring_ud(7, 44, 0)) == 0);
	T_CHECK(ring_submit(&m[0]) >= 0);
	T_CHECK(ring_set_wait(&set, UINT64_MAX) == 0);
	T_CHECK(ring_run(&m[0], 0, collect, &g) == 1);
	T_CHECK(g.n == 2 && g.cqe[1].res == -ETIME);

	ring_set_exit(&set);
	for (int i = 0; i < 2; i++)
		ring_exit(&m[i]);
	ring_exit(&a);
	return 0;
}

/*
 * ring_cancel_slot() on io_uring ends a send stuck behind a peer that does
 * not read, then completes itself; ring_cancel() of its user_data ends the
 * multishot recv (SHUT_RD would not, while the peer sends); the slot then
 * closes and the peer sees EOF.
 */
static int test_end_slot(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	static char fill[65536];
	struct ring r;
	struct ring_bufs b;
	struct got g = { .n = 0 };
	int lfd, cfd, sfd, small = 4096, i;
	ssize_t n;
	long total = 0;

	T_CHECK(ring_init(&r, 64, 64, RING_F_SINGLE) == 0);
	T_CHECK(ring_bufs_init(&r, &b, 0, NBUF, BUFSZ) == 0);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	T_CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	T_CHECK(listen(lfd, 8) == 0);
	T_CHECK(getsockname(lfd, (struct sockaddr *)&sin, &len) == 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	T_CHECK(setsockopt(cfd, SOL_SOCKET, SO_RCVBUF, &small,
			   sizeof(small)) == 0);
	T_CHECK(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	sfd = accept(lfd, NULL, NULL);
	T_CHECK(sfd >= 0);
	T_CHECK(setsockopt(sfd, SOL_SOCKET, SO_SNDBUF, &small,
			   sizeof(small)) == 0);
	/* Fill both buffers: the peer never reads, so a send must wait. */
	while ((n = send(sfd, fill, sizeof(fill), MSG_DONTWAIT)) > 0)
		total += n;
	T_CHECK(n < 0 && errno == EAGAIN && total > 0);
	T_CHECK(io_uring_register_files_update(&r.uring, 0, &sfd, 1) == 1);
	close(sfd);

	T_CHECK(ring_recv(&r, 0, 0, 2) == 0);
	T_CHECK(ring_send(&r, 0, fill, 1024, 3) == 0);
	T_CHECK(ring_submit(&r) >= 0);
	T_CHECK(ring_cancel_slot(&r, 0, 5) == 0);
	T_CHECK(ring_cancel(&r, 2, 6) == 0);
	i = wait_ud(&r, &g, 3);
	T_CHECK(i >= 0 && g.cqe[i].res == -EPIPE);
	i = wait_ud(&r, &g, 2);
	T_CHECK(i >= 0 && g.cqe[i].res == -ECANCELED);
	T_CHECK(!(g.cqe[i].flags & IORING_CQE_F_MORE));
	i = wait_ud(&r, &g, 5);
	T_CHECK(i >= 0 && g.cqe[i].res == 0);
	i = wait_ud(&r, &g, 6);
	T_CHECK(i >= 0 && g.cqe[i].res == 0);
	T_CHECK(ring_close(&r, 0, 4) == 0);
	i = wait_ud(&r, &g, 4);
	T_CHECK(i >= 0 && g.cqe[i].res == 0);

	/* What was queued still arrives, then EOF. */
	T_CHECK(fcntl(cfd, F_SETFL, 0) == 0);
	while ((n = read(cfd, fill, sizeof(fill))) > 0)
		total -= n;
	T_CHECK(n == 0 && total == 0);

	close(cfd);
	close(lfd);
	ring_bufs_exit(&r, &b);
	ring_exit(&r);
	return 0;
}

/*
 * The epoll backend behind the same operations: accept gives a slot,
 * multishot recv hands out pool buffers, a send completes, mail from an
 * io_uring ring arrives, cancel and close complete as io_uring's do.
 */
static int test_epoll(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct ring r, u;
	struct ring_bufs b;
	struct got g = { .n = 0 };
	int lfd, cfd, i, slot;
	char buf[8];

	T_CHECK(ring_init(&r, 64, 1024, RING_F_SINGLE | RING_F_EPOLL) == 0);
	T_CHECK(ring_is_epoll(&r));
	T_CHECK(ring_bufs_init(&r, &b, 0, NBUF, BUFSZ) == 0);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	T_CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	T_CHECK(listen(lfd, 8) == 0);
	T_CHECK(getsockname(lfd, (struct sockaddr *)&sin, &len) == 0);
	T_CHECK(ring_accept(&r, lfd, 1) == 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	T_CHECK(connect(cfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	i = wait_ud(&r, &g, 1);
	T_CHECK(i >= 0 && g.cqe[i].res >= 0);
	T_CHECK(g.cqe[i].flags & IORING_CQE_F_MORE);
	slot = g.cqe[i].res;

	T_CHECK(ring_recv(&r, (unsigned)slot, 0, 2) == 0);
	T_CHECK(write(cfd, "hello", 5) == 5);
	g.n = 0;
	i = wait_ud(&r, &g, 2);
	T_CHECK(i >= 0 && g.cqe[i].res == 5);
	T_CHECK(g.cqe[i].flags & IORING_CQE_F_BUFFER);
	T_CHECK(!memcmp(ring_bufs_ptr(&b, ring_bufs_bid(g.cqe[i].flags)),
			"hello", 5));
	ring_bufs_recycle(&b, ring_bufs_bid(g.cqe[i].flags));

	T_CHECK(ring_send(&r, (unsigned)slot, "world", 5, 3) == 0);
	g.n = 0;
	i = wait_ud(&r, &g, 3);
	T_CHECK(i >= 0 && g.cqe[i].res == 5);
	T_CHECK(read(cfd, buf, 5) == 5 && !memcmp(buf, "world", 5));

	/* Mail from an io_uring ring lands here as a CQE. */
	T_CHECK(ring_init(&u, 8, 0, 0) == 0);
	T_CHECK(ring_mbox_post(&u, &r, 77, 42, 0) == 0);
	g.n = 0;
	i = wait_ud(&r, &g, 77);
	T_CHECK(i >= 0 && g.cqe[i].res == 42);
	ring_exit(&u);

	/* Cancel ends the multishot recv; close frees the slot. */
	T_CHECK(ring_cancel_slot(&r, (unsigned)slot, 0) == 0);
	g.n = 0;
	i = wait_ud(&r, &g, 2);
	T_CHECK(i >= 0 && g.cqe[i].res == -ECANCELED);
	T_CHECK(!(g.cqe[i].flags & IORING_CQE_F_MORE));
	T_CHECK(ring_close(&r, (unsigned)slot, 4) == 0);
	g.n = 0;
	i = wait_ud(&r, &g, 4);
	T_CHECK(i >= 0 && g.cqe[i].res == 0);
	T_CHECK(read(cfd, buf, 1) == 0);	/* the peer sees EOF */

	close(cfd);
	close(lfd);
	ring_bufs_exit(&r, &b);
	ring_exit(&r);
	return 0;
}

int main(void)
{
	if (test_ud() || test_bufs_recv() || test_bufs_lifo() || test_mbox() ||
	    test_set() || test_end_slot() || test_epoll())
		return T_EXIT_FAIL;
	return T_EXIT_PASS;
}
