/* SPDX-License-Identifier: MIT */
/*
 * buf.c: engine memory and send buffers. Allocations go through mimalloc,
 * whose per-thread heaps keep a shard's small objects local to its core;
 * a sanitizer build uses libc malloc instead so that ASan sees them all.
 * A send buffer is refcounted: every queue entry that references it holds
 * one reference, and the last put frees it.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#ifdef RC_HAVE_MIMALLOC
#include <mimalloc.h>

void *eng_malloc(size_t n)
{
	return mi_malloc(n);
}

void *eng_realloc(void *p, size_t n)
{
	return mi_realloc(p, n);
}

void eng_free(void *p)
{
	mi_free(p);
}

void eng_mem_collect(void)
{
	mi_collect(true);	/* force: decommit freed spans now */
}
#else
void *eng_malloc(size_t n)
{
	return malloc(n);
}

void *eng_realloc(void *p, size_t n)
{
	return realloc(p, n);
}

void eng_free(void *p)
{
	free(p);
}

void eng_mem_collect(void)
{
}
#endif

struct eng_buf *eng_buf_new(size_t cap)
{
	struct eng_buf *b;

	if (cap > UINT32_MAX)
		return NULL;
	b = eng_malloc(sizeof(*b) + cap);
	if (!b)
		return NULL;
	memset(b, 0, sizeof(*b));
	atomic_init(&b->refs, 1);
	b->kind = ENG_BUF_HEAP;
	b->cap = (uint32_t)cap;
	return b;
}

void eng_buf_put(struct eng_buf *b)
{
	if (!b)
		return;
	/* acq_rel: the freeing thread must see every writer's stores */
	if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	eng_buf_put(b->z);	/* what sent it holds references of its own */
	if (b->kind == ENG_BUF_ARENA || (b->flags & ENG_BUF_F_FRAME))
		eng_arena_free(b);
	else
		eng_free(b);
}

void eng_bufs_put(struct eng_buf **v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		eng_buf_put(v[i]);
	eng_free(v);
}

void eng_buf_seal(struct eng_buf *b, uint8_t *payload, uint8_t op, size_t n)
{
	uint8_t hdr[WS_MAX_SERVER_HDR];
	size_t h = ws_write_header(hdr, op, true, n);

	/* The header ends where the payload starts: no byte is moved. */
	b->start = (uint32_t)(payload - h - b->data);
	memcpy(b->data + b->start, hdr, h);
	b->len = (uint32_t)(h + n);
}
