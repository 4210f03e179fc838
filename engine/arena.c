/* SPDX-License-Identifier: MIT */
/*
 * arena.c: the shared frame arena. A published message becomes one frame,
 * built once in this arena, which every shard's ring registers as fixed
 * buffer 0, so any shard can send it (send_zc from the fixed buffer above
 * the zero-copy threshold). Frames are allocated on one shard and freed
 * on whichever shard drops the last reference, so the allocator is
 * lock-free: power-of-two size classes, each a Treiber stack of free
 * slots with a generation tag against ABA, refilled from a bump pointer.
 * A slot never changes class; memory follows the peak of each size.
 * When the arena is full, frames come from the heap instead (plain send,
 * counted), so nothing is dropped for want of arena space.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "buf.h"
#include "eng.h"

#define ARENA_MIN_SHIFT		8	/* 256-byte smallest slot */
#define ARENA_CLASSES		24	/* up to 2^31 bytes */

struct arena {
	uint8_t *base;
	size_t size;
	_Atomic size_t bump;			/* bytes handed to classes */
	_Atomic uint64_t head[ARENA_CLASSES];	/* tag:32 | (unit + 1):32 */
	atomic_uint_fast64_t fallbacks;		/* frames that went to the heap */
	atomic_int_fast64_t live;		/* push frames not yet freed */
};

static struct arena arena;	/* one per process, shared by all shards */

int eng_arena_init(size_t size)
{
	void *p;

	size = (size + 4095) & ~(size_t)4095;
	/* MAP_POPULATE: registration pins these pages anyway. */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	arena.base = p;
	arena.size = size;
	atomic_init(&arena.bump, 0);
	for (unsigned i = 0; i < ARENA_CLASSES; i++)
		atomic_init(&arena.head[i], 0);
	atomic_init(&arena.fallbacks, 0);
	return 0;
}

void eng_arena_exit(void)
{
	if (arena.base)
		munmap(arena.base, arena.size);
	arena.base = NULL;
}

struct iovec eng_arena_iov(void)
{
	struct iovec iov = { .iov_base = arena.base, .iov_len = arena.size };

	return iov;
}

bool eng_arena_owns(const void *p)
{
	const uint8_t *b = p;

	return arena.base && b >= arena.base && b < arena.base + arena.size;
}

uint64_t eng_frames_live(void)
{
	return (uint64_t)atomic_load_explicit(&arena.live, memory_order_relaxed);
}

uint64_t eng_arena_fallbacks(void)
{
	return atomic_load_explicit(&arena.fallbacks, memory_order_relaxed);
}

size_t eng_arena_used(void)
{
	return atomic_load_explicit(&arena.bump, memory_order_relaxed);
}

static unsigned class_of(size_t bytes)
{
	unsigned c = 0;

	while (((size_t)1 << (c + ARENA_MIN_SHIFT)) < bytes)
		c++;
	return c;
}

static uint8_t *unit_ptr(uint32_t unit)
{
	return arena.base + ((size_t)unit << ARENA_MIN_SHIFT);
}

static void *pop(unsigned cls)
{
	_Atomic uint64_t *head = &arena.head[cls];
	uint64_t old = atomic_load_explicit(head, memory_order_acquire);

	for (;;) {
		uint32_t top = (uint32_t)old, next;
		uint64_t new;

		if (!top)
			return NULL;
		/*
		 * The slot may be popped and rewritten by another thread
		 * under us; then the tag has moved and the CAS fails, so a
		 * stale @next is never installed. Arena memory stays mapped,
		 * so the racy read itself is harmless.
		 */
		next = atomic_load_explicit((_Atomic uint32_t *)unit_ptr(top - 1),
					    memory_order_relaxed);
		new = ((old >> 32) + 1) << 32 | next;
		if (atomic_compare_exchange_weak_explicit(head, &old, new,
				memory_order_acquire, memory_order_acquire))
			return unit_ptr(top - 1);
	}
}

static void push(unsigned cls, void *p)
{
	_Atomic uint64_t *head = &arena.head[cls];
	uint32_t unit = (uint32_t)(((uint8_t *)p - arena.base) >> ARENA_MIN_SHIFT);
	uint64_t old = atomic_load_explicit(head, memory_order_relaxed);

	for (;;) {
		uint64_t new = ((old >> 32) + 1) << 32 | (unit + 1);

		atomic_store_explicit((_Atomic uint32_t *)p, (uint32_t)old,
				      memory_order_relaxed);
		/* release: the next popper sees the link we just wrote */
		if (atomic_compare_exchange_weak_explicit(head, &old, new,
				memory_order_release, memory_order_relaxed))
			return;
	}
}

static void *bump(size_t bytes)
{
	size_t old = atomic_load_explicit(&arena.bump, memory_order_relaxed);

	do {
		if (old + bytes > arena.size)
			return NULL;
	} while (!atomic_compare_exchange_weak_explicit(&arena.bump, &old,
			old + bytes, memory_order_relaxed, memory_order_relaxed));
	return arena.base + old;
}

/*
 * A push frame of @cap bytes: from the arena, or from the heap when the
 * arena is full. Either way it is counted live until its last put.
 */
struct eng_buf *eng_arena_buf(size_t cap)
{
	size_t bytes = sizeof(struct eng_buf) + cap;
	unsigned cls = class_of(bytes);
	struct eng_buf *b = NULL;

	if (arena.base && cls < ARENA_CLASSES) {
		b = pop(cls);
		if (!b)
			b = bump((size_t)1 << (cls + ARENA_MIN_SHIFT));
	}
	if (!b) {
		atomic_fetch_add_explicit(&arena.fallbacks, 1,
					  memory_order_relaxed);
		b = eng_buf_new(cap);
		if (!b)
			return NULL;
	} else {
		memset(b, 0, sizeof(*b));
		atomic_init(&b->refs, 1);
		b->kind = ENG_BUF_ARENA;
		b->cls = (uint8_t)cls;
		b->cap = (uint32_t)(((size_t)1 << (cls + ARENA_MIN_SHIFT)) -
				    sizeof(*b));
	}
	b->flags = ENG_BUF_F_FRAME;
	atomic_fetch_add_explicit(&arena.live, 1, memory_order_relaxed);
	return b;
}

void eng_arena_free(struct eng_buf *b)
{
	if (b->flags & ENG_BUF_F_FRAME)
		atomic_fetch_sub_explicit(&arena.live, 1, memory_order_relaxed);
	if (b->kind == ENG_BUF_ARENA)
		push(b->cls, b);
	else
		eng_free(b);
}
