/* SPDX-License-Identifier: MIT */
/*
 * bufs.c: provided buffer rings. The kernel takes a buffer from the group
 * for each recv completion, so receive memory is shared by all the
 * connections of a shard and follows traffic, not connection count. Only
 * part of the pool is published at a time, from a stack of free buffers
 * (ring.h says why); epoll's reads take from the same stack.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ring.h"
#include "ring_int.h"

int ring_bufs_init(struct ring *r, struct ring_bufs *b, unsigned short bgid,
		   unsigned nr, size_t size)
{
	struct io_uring_buf_reg reg;
	size_t ring_bytes = nr * sizeof(struct io_uring_buf);
	unsigned i;
	int ret;

	if (!nr || (nr & (nr - 1)) || nr > 32768 || !size)
		return -EINVAL;
	memset(b, 0, sizeof(*b));
	/* Buffers untouched by the kernel stay unbacked until first use. */
	b->mem = mmap(NULL, nr * size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b->mem == MAP_FAILED) {
		b->mem = NULL;
		return -errno;
	}
	b->free = malloc(nr * sizeof(*b->free));
	if (!b->free) {
		ret = -ENOMEM;
		goto err_mem;
	}
	/* Buffer 0 on top: the first reads use the lowest addresses. */
	for (i = 0; i < nr; i++)
		b->free[i] = (unsigned short)(nr - 1 - i);
	b->nfree = nr;
	b->size = size;
	b->nr = nr;
	b->bgid = bgid;
	if (r->ep) {
		ring__ep_set_bufs(r, b);
		return 0;
	}

	/* The ring itself must be page aligned: mmap gives that. */
	b->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->br == MAP_FAILED) {
		ret = -errno;
		goto err_free;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)b->br;
	reg.ring_entries = nr;
	reg.bgid = bgid;
	ret = io_uring_register_buf_ring(&r->uring, &reg, 0);
	if (ret < 0)
		goto err_ring;
	io_uring_buf_ring_init(b->br);
	b->want = nr < RING_BUFS_WANT0 ? nr : RING_BUFS_WANT0;
	ring_bufs_refill(b);
	return 0;

err_ring:
	munmap(b->br, ring_bytes);
	b->br = NULL;
err_free:
	free(b->free);
	b->free = NULL;
err_mem:
	munmap(b->mem, nr * size);
	b->mem = NULL;
	return ret;
}

void ring_bufs_refill(struct ring_bufs *b)
{
	unsigned mask = io_uring_buf_ring_mask(b->nr);
	int n = 0;

	if (!b->br)
		return;
	if (b->starved) {
		b->starved = false;
		b->want = b->want * 2 < b->nr ? b->want * 2 : b->nr;
	}
	/*
	 * @published counts buffers not yet recycled, so it is never below
	 * what the ring really holds: a buffer the kernel took but whose
	 * completion is still unread keeps the count up until recycled.
	 */
	while (b->published < b->want && b->nfree) {
		unsigned bid = b->free[--b->nfree];

		io_uring_buf_ring_add(b->br, ring_bufs_ptr(b, bid), b->size,
				      bid, mask, n++);
		b->published++;
	}
	/* advance() publishes the entries with a release store of the tail */
	if (n)
		io_uring_buf_ring_advance(b->br, n);
}

void ring_bufs_exit(struct ring *r, struct ring_bufs *b)
{
	if (!b->mem)
		return;
	if (b->br) {
		io_uring_unregister_buf_ring(&r->uring, b->bgid);
		munmap(b->br, b->nr * sizeof(struct io_uring_buf));
		b->br = NULL;
	}
	munmap(b->mem, b->nr * b->size);
	free(b->free);
	b->free = NULL;
	b->mem = NULL;
}
