/* SPDX-License-Identifier: MIT */
/*
 * bufs.c: provided buffer rings. The kernel takes a buffer from the group
 * for each recv completion, so receive memory is shared by all the
 * connections of a shard and follows traffic, not connection count.
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
	if (r->ep) {
		/* epoll: the same pool, handed out by us instead. */
		b->mem = mmap(NULL, nr * size, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (b->mem == MAP_FAILED) {
			b->mem = NULL;
			return -errno;
		}
		b->free = malloc(nr * sizeof(*b->free));
		if (!b->free) {
			munmap(b->mem, nr * size);
			b->mem = NULL;
			return -ENOMEM;
		}
		for (i = 0; i < nr; i++)
			b->free[i] = (unsigned short)(nr - 1 - i);
		b->nfree = nr;
		b->size = size;
		b->nr = nr;
		b->bgid = bgid;
		ring__ep_set_bufs(r, b);
		return 0;
	}

	/* The ring itself must be page aligned: mmap gives that. */
	b->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->br == MAP_FAILED)
		return -errno;
	/* Buffers untouched by the kernel stay unbacked until first use. */
	b->mem = mmap(NULL, nr * size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b->mem == MAP_FAILED) {
		ret = -errno;
		goto err_ring;
	}

	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)b->br;
	reg.ring_entries = nr;
	reg.bgid = bgid;
	ret = io_uring_register_buf_ring(&r->uring, &reg, 0);
	if (ret < 0)
		goto err_mem;

	b->size = size;
	b->nr = nr;
	b->bgid = bgid;
	io_uring_buf_ring_init(b->br);
	for (i = 0; i < nr; i++)
		io_uring_buf_ring_add(b->br, ring_bufs_ptr(b, i), size, i,
				      io_uring_buf_ring_mask(nr), i);
	io_uring_buf_ring_advance(b->br, nr);
	return 0;

err_mem:
	munmap(b->mem, nr * size);
err_ring:
	munmap(b->br, ring_bytes);
	b->br = NULL;
	b->mem = NULL;
	return ret;
}

void ring_bufs_exit(struct ring *r, struct ring_bufs *b)
{
	if (b->free) {
		munmap(b->mem, b->nr * b->size);
		free(b->free);
		b->free = NULL;
		b->mem = NULL;
		return;
	}
	if (!b->br)
		return;
	io_uring_unregister_buf_ring(&r->uring, b->bgid);
	munmap(b->mem, b->nr * b->size);
	munmap(b->br, b->nr * sizeof(struct io_uring_buf));
	b->br = NULL;
	b->mem = NULL;
}
