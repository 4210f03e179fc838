/* SPDX-License-Identifier: MIT */
/*
 * The io_uring client side shared by ringcast-bench and ringcast-hoload:
 * a ring per thread whose fixed-file table holds the connections (direct
 * descriptors), a provided-buffer ring for their multishot recvs, and
 * sockets bound to one of many loopback source addresses.
 */
#ifndef BENCH_ULOAD_H
#define BENCH_ULOAD_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#define ULOAD_FD_RESERVE	256	/* regular fds kept for the rest */

struct uload {
	struct io_uring ring;
	struct io_uring_buf_ring *br;	/* buffer group 0 */
	char *bufs;
	unsigned nr_bufs, buf_size, mask;
	unsigned added;			/* recycled since the last advance */
};

/* CLOCK_MONOTONIC in ns. */
uint64_t uload_now_ns(void);

/*
 * Sets up @u on the calling thread (the ring is SINGLE_ISSUER where the
 * kernel has it): a ring with a sparse fixed-file table of @files slots
 * and @nr_bufs (a power of two) buffers of @buf_size bytes, all provided.
 * Returns 0 or -errno; what was set up stays for the process's exit.
 */
int uload_setup(struct uload *u, unsigned files, unsigned nr_bufs,
		unsigned buf_size);

/* An SQE of @u's ring, submitting the full SQ first if need be. */
struct io_uring_sqe *uload_sqe(struct uload *u);

/* Buffer @bid's bytes. */
static inline char *uload_buf(struct uload *u, unsigned bid)
{
	return u->bufs + (size_t)bid * u->buf_size;
}

/* Gives buffer @bid back; uload_wait() makes it visible to the kernel. */
void uload_recycle(struct uload *u, unsigned bid);

/* Arms a multishot recv on fixed slot @slot, from buffer group 0. */
void uload_recv(struct uload *u, unsigned slot, uint64_t user_data);

/*
 * Submits, waits up to 20 ms for a completion, calls @fn on each one, and
 * hands the buffers recycled meanwhile back to the kernel. Returns 0, or
 * the ring's -errno when it cannot go on.
 */
int uload_wait(struct uload *u, void (*fn)(void *arg,
					   struct io_uring_cqe *cqe),
	       void *arg);

/*
 * A TCP socket (CLOEXEC, NODELAY) bound to 127.0.0.@(2 + @idx % @nr_src)
 * with IP_BIND_ADDRESS_NO_PORT, so that connect() picks its port for the
 * whole 4-tuple: each source address has its own ephemeral range.
 * Returns the fd or -errno.
 */
int uload_socket(unsigned idx, unsigned nr_src);

/*
 * Source addresses for @conns connections (or for @conns reconnects on
 * top): as many as keep connect() on its fast path, given the host's
 * ip_local_port_range.
 */
unsigned uload_src_addrs(unsigned conns);

/*
 * Rings (threads) for @conns connections: @want (2 when 0), or more if a
 * ring's fixed table, capped by RLIMIT_NOFILE less ULOAD_FD_RESERVE,
 * would hold too few.
 */
unsigned uload_threads(unsigned conns, unsigned want);

/*
 * Reads byte @ch of an HTTP response head: @match counts the bytes of
 * "\r\n\r\n" seen in a row. Returns whether the head just ended.
 */
bool uload_head_byte(uint8_t *match, uint8_t ch);

/*
 * Takes byte @ch of a server frame's header (unmasked, 10 bytes at most)
 * into @hdr, @len bytes in it so far. Returns the header's size once it
 * is whole, with the payload's length in @payload; 0 while it is not.
 */
unsigned uload_hdr_byte(uint8_t hdr[10], uint8_t *len, uint8_t ch,
			uint64_t *payload);

#endif
