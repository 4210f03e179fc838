/* SPDX-License-Identifier: MIT */
/*
 * ring: one event loop per shard behind one interface, with two backends.
 * The io_uring backend is the engine's own: a ring, its fixed-file table
 * (sockets as direct descriptors), a provided buffer ring and the mailbox
 * between rings (IORING_OP_MSG_RING). The epoll backend (ep.c) does the
 * same operations with non-blocking sockets and epoll, as a good epoll
 * server does, and hands back completions shaped like io_uring's CQEs, so
 * that the engine above runs unchanged on both and a benchmark compares
 * only the I/O model. Knows nothing of WebSocket or of the engine.
 * A struct ring is owned by the thread that called ring_init() on it; with
 * IORING_SETUP_SINGLE_ISSUER only that thread may submit to it.
 */
#ifndef RC_RING_RING_H
#define RC_RING_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Newer than the liburing 2.3 headers; the kernel has both since 6.2. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE	(1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED	(1U << 31)
#endif

/* The kernel's cap on one fixed-file table (IORING_MAX_FIXED_FILES). */
#define RING_MAX_FILES	(1u << 20)

/* Bits of ring_init()'s @flags. */
#define RING_F_SINGLE	(1u << 0)	/* one thread submits: try DEFER_TASKRUN */
#define RING_F_EPOLL	(1u << 1)	/* the epoll backend */
#define RING_F_SHARED	(1u << 2)	/* its thread drives other rings
					 * too (struct ring_set): no
					 * DEFER_TASKRUN, whose completions
					 * run only while this ring is
					 * waited on */

struct ring_ep;

struct ring {
	struct io_uring uring;		/* io_uring; with epoll, a small one
					 * for posting mail to io_uring rings */
	unsigned setup_flags;		/* IORING_SETUP_* that the kernel took */
	unsigned nr_files;		/* fixed-file table size (epoll: fds) */
	struct ring_ep *ep;		/* owned; NULL on the io_uring backend */
	struct __kernel_timespec ts;	/* ring_timeout()'s, until submitted */
};

static inline bool ring_is_epoll(const struct ring *r)
{
	return r->ep != NULL;
}

/*
 * Creates a ring of @entries SQEs (4x as many CQEs). With RING_F_SINGLE it
 * asks for SINGLE_ISSUER | DEFER_TASKRUN and falls back to COOP_TASKRUN,
 * then to no flags, on kernels that refuse them. When @nr_files > 0 it
 * registers a sparse fixed-file table of that size, which the kernel caps
 * at RLIMIT_NOFILE. Returns 0 or -errno; on failure nothing is left set up.
 */
int ring_init(struct ring *r, unsigned entries, unsigned nr_files,
	      unsigned flags);

/* Tears down the ring; the fixed files and buffer rings go with it. */
void ring_exit(struct ring *r);

/*
 * Returns a free SQE, submitting what is queued when the SQ is full.
 * Returns NULL only when the kernel refuses the submission (then the
 * caller's operation is lost and it must fail the connection).
 */
struct io_uring_sqe *ring_sqe(struct ring *r);

/*
 * Posts a message to ring @to (owned by another thread): a CQE with
 * user_data @ud and res @res appears there. From io_uring to io_uring it
 * is one MSG_RING SQE, whose own completion is skipped on success and
 * comes back with user_data @self_ud on failure. An epoll ring receives
 * through a locked queue and an eventfd. Returns 0, or -EBUSY/-ENOMEM
 * when the message could not even be queued.
 */
int ring_mbox_post(struct ring *from, struct ring *to, uint64_t ud,
		   int32_t res, uint64_t self_ud);

/*
 * The operations. Each queues one operation whose completion comes back
 * as a CQE with user_data @ud (res and flags as io_uring's own), except
 * where "no CQE on success" is said. Each returns 0, or -EBUSY when it
 * could not be queued (the caller fails what depended on it).
 */

/* Multishot accept on listener @lfd; res is the new connection's slot. */
int ring_accept(struct ring *r, int lfd, uint64_t ud);
/* Multishot recv on @slot into buffers of @b (IORING_CQE_F_BUFFER). */
int ring_recv(struct ring *r, unsigned slot, unsigned short bgid,
	      uint64_t ud);
/* One send of @len bytes at @p (borrowed until the CQE). */
int ring_send(struct ring *r, unsigned slot, const void *p, size_t len,
	      uint64_t ud);
/* One sendmsg of @mh's iovecs (@mh and what it points to borrowed until
 * the CQE): several queued frames in one operation. */
int ring_sendmsg(struct ring *r, unsigned slot, struct msghdr *mh,
		 uint64_t ud);
/* io_uring only: send_zc from fixed buffer 0; a NOTIF CQE follows. */
int ring_send_zc(struct ring *r, unsigned slot, const void *p, size_t len,
		 uint64_t ud);
/* Closes @slot; its CQE says the slot may be reused. */
int ring_close(struct ring *r, unsigned slot, uint64_t ud);
/*
 * Ends what is in flight on @slot: io_uring shuts the writing half down
 * (a send ends with -EPIPE; end a recv with ring_cancel() of its
 * user_data), epoll drops the socket's pending operations, recv and send.
 * The caller waits for their completions and for this one's before
 * closing the slot, or a late shutdown could hit the connection that
 * reuses it.
 */
int ring_cancel_slot(struct ring *r, unsigned slot, uint64_t ud);
/* Cancels the operation whose user_data is @target. */
int ring_cancel(struct ring *r, uint64_t target, uint64_t ud);
/* shutdown(SHUT_WR) on @slot. */
int ring_shutdown_wr(struct ring *r, unsigned slot, uint64_t ud);
/* A one-shot timer of @ms; its CQE has res -ETIME. */
int ring_timeout(struct ring *r, unsigned ms, uint64_t ud);

/*
 * A live hand-over (engine/handover.h). ring_stop_recv(): ends @slot's
 * recv (user_data @recv_ud), whose last CQE says -ECANCELED; this one's
 * own CQE is @ud's. ring_stop_send(): ends a send pending on @slot
 * (-ECANCELED, nothing of it sent; one that completed meanwhile says so
 * as ever), its own CQE @ud. ring_fd_install(): a regular descriptor of
 * the process for @slot's socket, in the CQE of @ud (res: the fd, ours
 * to close; O_CLOEXEC): io_uring's IORING_OP_FIXED_FD_INSTALL (Linux
 * 6.8), an epoll slot dup()ed. Closing either leaves the other open.
 */
int ring_stop_recv(struct ring *r, unsigned slot, uint64_t recv_ud,
		   uint64_t ud);
/*
 * Submits what is queued and lets the kernel finish what it deferred (a
 * cancelled recv leaves the table later cancels search), reaping
 * nothing: the CQEs wait for the next ring_run(). 0 or -errno.
 */
int ring_flush(struct ring *r);
int ring_stop_send(struct ring *r, unsigned slot, uint64_t ud);
int ring_fd_install(struct ring *r, unsigned slot, uint64_t ud);

/*
 * Makes socket @fd (taken over: closed here whatever happens) a
 * connection of the ring, as an accept would: io_uring registers it in
 * the fixed-file table at @slot (free: the caller knows), epoll makes it
 * non-blocking and watches it, at the slot its number is. Returns the
 * slot, or -errno.
 */
int ring_adopt(struct ring *r, int fd, unsigned slot);

/*
 * Operations on an ordinary descriptor @fd of the process table, not a
 * fixed slot: a client connection of the ring's own (the Redis link).
 * io_uring only (-EOPNOTSUPP on epoll). The kernel looks @fd up when the
 * SQE is submitted (the next ring_run() or ring_submit()), not when it
 * is queued: closed before then, its number may already name another
 * socket of the process (on epoll shards, a client just accepted), which
 * the operation would then read or write. So close @fd only after the
 * CQEs of what was queued on it; shutdown(2) ends them promptly.
 */
/* connect(2); @addr is read at submission, so it may go once submitted. */
int ring_fd_connect(struct ring *r, int fd, const struct sockaddr *addr,
		    socklen_t len, uint64_t ud);
/* One recv of at most @len bytes into @p (borrowed until the CQE). */
int ring_fd_recv(struct ring *r, int fd, void *p, size_t len, uint64_t ud);
/* One send of @len bytes at @p (borrowed until the CQE), no SIGPIPE. */
int ring_fd_send(struct ring *r, int fd, const void *p, size_t len,
		 uint64_t ud);

/* Registers @iov as fixed buffer 0 (io_uring only; -EOPNOTSUPP else). */
int ring_register_buffer(struct ring *r, const struct iovec *iov);

/*
 * A completion as both backends hand it out: io_uring's user_data, res
 * and flags (IORING_CQE_F_*), copied out of the CQ so that the engine
 * above never sees a liburing type.
 */
struct ring_cqe {
	uint64_t user_data;
	int32_t res;
	uint32_t flags;
};

/*
 * Submits what is queued and waits for at least @min completions (0: do
 * not block), then calls @fn for each completion available and consumes
 * them. Returns the number handled, or -errno.
 */
typedef void ring_cqe_fn(void *arg, struct ring_cqe *cqe);
int ring_run(struct ring *r, unsigned min, ring_cqe_fn *fn, void *arg);
/* As ring_run() with @min 1, but waits no longer than @wait_ns. */
int ring_run_for(struct ring *r, uint64_t wait_ns, ring_cqe_fn *fn,
		 void *arg);

/*
 * Calls @fn for each completion already in the CQ and consumes them,
 * without entering the kernel: for a ring whose thread has exited, whose
 * late completions only need freeing. Returns the number handled.
 */
int ring_reap(struct ring *r, ring_cqe_fn *fn, void *arg);

/* Submits what is queued without waiting. */
int ring_submit(struct ring *r);

/*
 * Several io_uring rings driven by one thread: a ring of the set's own
 * polls each member's fd, which is readable while the member's CQ holds
 * completions, so the thread sleeps on all of them at once. Members are
 * made with RING_F_SHARED; epoll rings cannot be members.
 */
struct ring_set {
	struct io_uring uring;		/* the polls' completions */
	unsigned n;			/* members */
	int *fds;			/* owned: each member's ring fd */
};

/* A set for up to @n members; 0 or -errno. */
int ring_set_init(struct ring_set *w, unsigned n);
void ring_set_exit(struct ring_set *w);
/* Adds @r (an io_uring ring, not epoll); 0 or -errno. */
int ring_set_add(struct ring_set *w, struct ring *r);
/*
 * Sleeps until a member may have completions, or @wait_ns have passed
 * (UINT64_MAX: no limit; 0: only takes what the polls reported). The
 * caller then runs each member with ring_run(r, 0, ...). 0 or -errno.
 */
int ring_set_wait(struct ring_set *w, uint64_t wait_ns);

/*
 * A provided buffer ring (IORING_REGISTER_PBUF_RING): @nr buffers of
 * @size bytes from which the kernel picks one per multishot recv
 * completion. liburing 2.3 has no io_uring_setup_buf_ring(), so the ring
 * is mmapped and registered here.
 *
 * The kernel takes buffers in ring order, so a ring holding the whole
 * pool would cycle through all of it and make every buffer resident.
 * Instead only @want buffers are published at a time and the rest wait
 * on a stack, the most recently used on top: the memory touched, and
 * kept in cache, follows the reads in flight, not the pool's size.
 * @want starts at RING_BUFS_WANT0 and doubles, up to @nr, at the refill
 * after a recv found the ring empty.
 */
struct ring_bufs {
	struct io_uring_buf_ring *br;	/* shared with the kernel; NULL: epoll */
	uint8_t *mem;			/* nr * size bytes of buffers */
	size_t size;			/* bytes per buffer */
	unsigned nr;			/* buffers, a power of two */
	unsigned short bgid;		/* buffer group id */
	bool starved;			/* a recv saw -ENOBUFS since the refill */
	unsigned short *free;		/* stack of ids neither published nor
					 * held by the caller */
	unsigned nfree;
	unsigned published;		/* io_uring: published, not recycled */
	unsigned want;			/* io_uring: buffers to keep published */
};

/* The buffers published at first (all of them if the pool is smaller). */
#define RING_BUFS_WANT0	64

/*
 * Creates buffer group @bgid of @nr (a power of two, at most 32768)
 * buffers of @size bytes and publishes the first RING_BUFS_WANT0 of them.
 * Returns 0 or -errno; on failure nothing is left allocated or
 * registered.
 */
int ring_bufs_init(struct ring *r, struct ring_bufs *b, unsigned short bgid,
		   unsigned nr, size_t size);

/* Unregisters the group and frees its memory. */
void ring_bufs_exit(struct ring *r, struct ring_bufs *b);

/*
 * Publishes buffers from the top of the stack until @want are in the
 * ring, doubling @want first if the group was starved. Call it once per
 * batch of completions, before waiting again: recycled buffers reach the
 * kernel only here. A no-op on epoll, whose reads take from the stack.
 */
void ring_bufs_refill(struct ring_bufs *b);

/* The buffer the kernel named in a CQE's flags. */
static inline uint8_t *ring_bufs_ptr(const struct ring_bufs *b, unsigned bid)
{
	return b->mem + (size_t)bid * b->size;
}

static inline unsigned ring_bufs_bid(uint32_t cqe_flags)
{
	return cqe_flags >> IORING_CQE_BUFFER_SHIFT;
}

/*
 * Gives buffer @bid back, on top of the stack. The caller must not touch
 * the buffer afterwards: on epoll the next read may fill it at once.
 */
static inline void ring_bufs_recycle(struct ring_bufs *b, unsigned bid)
{
	b->free[b->nfree++] = (unsigned short)bid;
	if (b->br)
		b->published--;
}

/* A recv ended with -ENOBUFS: publish more at the next refill. */
static inline void ring_bufs_starved(struct ring_bufs *b)
{
	b->starved = true;
}

#endif
