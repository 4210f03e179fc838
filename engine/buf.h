/* SPDX-License-Identifier: MIT */
/*
 * buf: send buffers (buf.c) and the shared frame arena (arena.c). A
 * buffer is refcounted bytes on the wire as they are; a push frame is one
 * of these in the arena, which every ring registers, referenced by every
 * connection it goes to. The last reference returns it, on any thread.
 */
#ifndef RC_ENGINE_BUF_H
#define RC_ENGINE_BUF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ws.h"

enum { ENG_BUF_HEAP = 0, ENG_BUF_ARENA };

#define ENG_BUF_F_FRAME		(1u << 0)	/* a push frame: counted live */
#define ENG_BUF_F_BCAST		(1u << 1)	/* for every /ws connection */
#define ENG_BUF_F_USER		(1u << 2)	/* for one user's connections */
#define ENG_BUF_F_KICK		(1u << 3)	/* a close frame: disconnect */
#define ENG_BUF_F_HIST		(1u << 4)	/* room for epoch, offset */
#define ENG_BUF_F_STAMPED	(1u << 5)	/* ... written in (hist.h) */
#define ENG_BUF_F_INBOX		(1u << 6)	/* room for an inbox id */
#define ENG_BUF_F_SYS		(1u << 7)	/* the node's own figures */

struct eng_buf {
	atomic_uint refs;	/* queue entries, mails, the builder */
	uint32_t start;		/* first byte to send: header room before */
	uint32_t len;		/* bytes to send from data + start */
	uint32_t cap;		/* bytes usable in data[] */
	uint8_t kind;		/* ENG_BUF_HEAP or ENG_BUF_ARENA */
	uint8_t cls;		/* arena size class */
	uint8_t flags;		/* ENG_BUF_F_* */
	uint8_t name_len;	/* push frame: channel name at name_off */
	uint32_t name_off;
	uint32_t t_us;		/* sampled: sequenced at (lat.h), or 0 */
	struct eng_buf *z;	/* owned: its compressed twin (zframe.h) */
	uint8_t data[];
};

/* A heap buffer of @cap bytes with one reference; NULL out of memory. */
struct eng_buf *eng_buf_new(size_t cap);

/* Drops one reference; the last frees @b. NULL is a no-op. */
void eng_buf_put(struct eng_buf *b);

/*
 * Drops one reference to each of @v's @n buffers and frees the array
 * (eng_malloc'd): a mail struct's frames, as its owner lets them go.
 */
void eng_bufs_put(struct eng_buf **v, uint32_t n);

static inline struct eng_buf *eng_buf_get(struct eng_buf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

/*
 * Seals the message of @n bytes that starts WS_MAX_SERVER_HDR bytes into
 * @b->data (or at @payload, which must lie in @b with that much room
 * before it) as one final frame of opcode @op: the header is written
 * right-aligned against the payload, and start and len are set to cover
 * header and payload.
 */
void eng_buf_seal(struct eng_buf *b, uint8_t *payload, uint8_t op, size_t n);

/* Gives the calling thread's freed memory back to the system (mimalloc). */
void eng_mem_collect(void);

/* The arena (arena.c): one per process, made before the shards start. */
int eng_arena_init(size_t size);
void eng_arena_exit(void);
/* Its whole extent, for ring_register_buffer(). */
struct iovec eng_arena_iov(void);
bool eng_arena_owns(const void *p);
/* A frame buffer of @cap bytes with one reference (heap if full). */
struct eng_buf *eng_arena_buf(size_t cap);
void eng_arena_free(struct eng_buf *b);
uint64_t eng_arena_fallbacks(void);	/* frames that went to the heap */
uint64_t eng_frames_live(void);
size_t eng_arena_used(void);

#endif
