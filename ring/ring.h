/* SPDX-License-Identifier: MIT */
/*
 * ring: one io_uring per shard, its fixed-file table and its provided
 * buffer ring, and the mailbox between rings (IORING_OP_MSG_RING). Knows
 * nothing of WebSocket or of the engine: it sets rings up and moves bytes.
 * A struct ring is owned by the thread that called ring_init() on it; with
 * IORING_SETUP_SINGLE_ISSUER only that thread may submit to it.
 */
#ifndef RC_RING_RING_H
#define RC_RING_RING_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

/* Newer than the liburing 2.3 headers; the kernel has both since 6.2. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE	(1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED	(1U << 31)
#endif

/* Bits of ring_init()'s @flags. */
#define RING_F_SINGLE	(1u << 0)	/* one thread submits: try DEFER_TASKRUN */

struct ring {
	struct io_uring uring;
	unsigned setup_flags;		/* IORING_SETUP_* that the kernel took */
	unsigned nr_files;		/* fixed-file table size, 0 when none */
};

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

/* The ring's fd, the address other rings send mailbox messages to. */
static inline int ring_fd(const struct ring *r)
{
	return r->uring.ring_fd;
}

/*
 * Posts a message to the ring behind @to_fd: a CQE with user_data @ud and
 * res @res appears there. The SQE's own completion on @from is skipped on
 * success; on failure it comes back with user_data @self_ud. Returns 0 or
 * -EBUSY when no SQE could be had.
 */
int ring_mbox_post(struct ring *from, int to_fd, uint64_t ud, int32_t res,
		   uint64_t self_ud);

/*
 * A provided buffer ring (IORING_REGISTER_PBUF_RING): @nr buffers of
 * @size bytes from which the kernel picks one per multishot recv
 * completion. liburing 2.3 has no io_uring_setup_buf_ring(), so the ring
 * is mmapped and registered here.
 */
struct ring_bufs {
	struct io_uring_buf_ring *br;	/* shared with the kernel */
	uint8_t *mem;			/* nr * size bytes of buffers */
	size_t size;			/* bytes per buffer */
	unsigned nr;			/* buffers, a power of two */
	unsigned short bgid;		/* buffer group id */
};

/*
 * Creates buffer group @bgid of @nr (a power of two, at most 32768)
 * buffers of @size bytes and hands them all to the kernel. Returns 0 or
 * -errno; on failure nothing is left allocated or registered.
 */
int ring_bufs_init(struct ring *r, struct ring_bufs *b, unsigned short bgid,
		   unsigned nr, size_t size);

/* Unregisters the group and frees its memory. */
void ring_bufs_exit(struct ring *r, struct ring_bufs *b);

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
 * Gives buffer @bid back to the kernel. The caller must not touch the
 * buffer afterwards: the next recv may fill it at any moment.
 */
static inline void ring_bufs_recycle(struct ring_bufs *b, unsigned bid)
{
	io_uring_buf_ring_add(b->br, ring_bufs_ptr(b, bid), b->size, bid,
			      io_uring_buf_ring_mask(b->nr), 0);
	/* advance() publishes the entry with a release store of the tail */
	io_uring_buf_ring_advance(b->br, 1);
}

#endif
