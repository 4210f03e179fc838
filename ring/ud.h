/* SPDX-License-Identifier: MIT */
/*
 * ud: the user_data codec. Every SQE ringcast submits carries op:8 |
 * slot:24 | gen:32 (after liburing's examples/proxy.h), so a CQE finds its
 * connection without a lookup and a CQE for a slot that has since been
 * reused (another gen) is recognised as stale. Mailbox messages carry a
 * pointer in the low 56 bits instead of slot and gen.
 */
#ifndef RC_RING_UD_H
#define RC_RING_UD_H

#include <stdint.h>

#define RING_UD_SLOT_MAX	((1u << 24) - 1)
#define RING_UD_PTR_MASK	((UINT64_C(1) << 56) - 1)

static inline uint64_t ring_ud(unsigned op, uint32_t slot, uint32_t gen)
{
	return (uint64_t)op << 56 | (uint64_t)(slot & RING_UD_SLOT_MAX) << 32 |
	       gen;
}

/* A pointer message; user-space pointers on x86-64 and arm64 fit 56 bits. */
static inline uint64_t ring_ud_ptr(unsigned op, const void *p)
{
	return (uint64_t)op << 56 | ((uint64_t)(uintptr_t)p & RING_UD_PTR_MASK);
}

static inline unsigned ring_ud_op(uint64_t ud)
{
	return ud >> 56;
}

static inline uint32_t ring_ud_slot(uint64_t ud)
{
	return (ud >> 32) & RING_UD_SLOT_MAX;
}

static inline uint32_t ring_ud_gen(uint64_t ud)
{
	return (uint32_t)ud;
}

static inline void *ring_ud_to_ptr(uint64_t ud)
{
	return (void *)(uintptr_t)(ud & RING_UD_PTR_MASK);
}

#endif
