/* SPDX-License-Identifier: MIT */
/*
 * zframe.c: permessage-deflate on a shard. The negotiation's answer, a
 * push frame's compressed twin made once by the shard that sequences it,
 * and a client's compressed message inflated within --max-message. The
 * zlib streams are the shard's, reset per message (proto/deflate.c), so
 * a compressed frame is valid for every connection that negotiated.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "deflate.h"
#include "zframe.h"

#define OUT_KEEP	(256u << 10)	/* output room kept between messages */

/* A shard's deflate state: the streams and the compressor's output. */
struct eng_zip {
	struct deflate_tx *tx;
	struct deflate_rx *rx;
	uint8_t *out;		/* compressed bytes, before their frame */
	size_t cap;		/* bytes at out */
};

int eng_zframe_init(struct eng_shard *s)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	struct eng_zip *z;

	if (!cfg->deflate)
		return 0;	/* nobody negotiates: no zlib memory at all */
	z = eng_malloc(sizeof(*z));
	if (!z)
		return -ENOMEM;
	memset(z, 0, sizeof(*z));
	s->zip = z;
	z->tx = deflate_tx_new(cfg->deflate_level, ENG_ZFRAME_WBITS);
	z->rx = deflate_rx_new();
	return z->tx && z->rx ? 0 : -ENOMEM;
}

void eng_zframe_exit(struct eng_shard *s)
{
	struct eng_zip *z = s->zip;

	if (!z)
		return;
	deflate_tx_free(z->tx);
	deflate_rx_free(z->rx);
	eng_free(z->out);
	eng_free(z);
	s->zip = NULL;
}

uint8_t eng_zframe_negotiate(const struct eng_cfg *cfg,
			     const struct deflate_offers *o)
{
	int smax;

	if (!cfg->deflate || !o->n)
		return ENG_DEFLATE_NO;
	smax = deflate_accept(o, ENG_ZFRAME_WBITS);
	if (smax < 0)
		return ENG_DEFLATE_NO;
	return smax ? ENG_DEFLATE_YES_SMAX : ENG_DEFLATE_YES;
}

ssize_t eng_zframe_answer(uint8_t deflate, char *out, size_t cap)
{
	if (deflate == ENG_DEFLATE_NO) {
		if (cap)
			*out = '\0';
		return 0;
	}
	/* the window is fixed, so the only value to echo is its own */
	return deflate_write_answer(out, cap, deflate == ENG_DEFLATE_YES_SMAX ?
				    ENG_ZFRAME_WBITS : 0);
}

bool eng_zframe_wanted(const struct eng *e, const uint64_t *shards)
{
	for (unsigned i = 0; i < e->cfg.shards; i++) {
		if (shards && !(shards[i / 64] & (1ull << (i % 64))))
			continue;
		if (atomic_load_explicit(&e->shards[i].stats.deflate_conns,
					 memory_order_relaxed))
			return true;
	}
	return false;
}

/*
 * The payload of @f when it is one whole final data frame (what else a
 * buffer may hold is left alone), else NULL.
 */
static const uint8_t *payload_of(const struct eng_buf *f, size_t *n)
{
	const uint8_t *h = f->data + f->start;
	uint8_t l7;
	size_t hl;
	uint64_t len = 0;

	if (f->len < 2 || (h[0] & 0xf0) != 0x80 || ws_is_control(h[0] & 0x0f))
		return NULL;	/* not final, RSV set already, or control */
	l7 = h[1] & 0x7f;
	hl = l7 == 127 ? 10 : l7 == 126 ? 4 : 2;
	if (f->len < hl)
		return NULL;
	for (size_t i = 2; i < hl; i++)
		len = len << 8 | h[i];
	if ((hl == 2 ? l7 : len) != f->len - hl)
		return NULL;	/* more than one frame */
	*n = f->len - hl;
	return h + hl;
}

/*
 * Compresses @p[0..@n) into the shard's output. Returns the compressed
 * length, 0 when it is not worth it (short, or not smaller), or -errno.
 */
static ssize_t squeeze(struct eng_shard *s, const uint8_t *p, size_t n)
{
	struct eng_zip *z = s->zip;
	size_t need = n + DEFLATE_SLACK;
	ssize_t got;

	if (!z || n < s->eng->cfg.deflate_min || n < 2)
		return 0;
	/* one large message does not keep its room after it */
	if (z->cap < need || (z->cap > OUT_KEEP && need <= OUT_KEEP)) {
		uint8_t *np = eng_realloc(z->out, need);

		if (!np)
			return -ENOMEM;
		z->out = np;
		z->cap = need;
	}
	got = deflate_compress(z->tx, p, n, z->out, n - 1);
	ENG_STAT_ADD(s, deflate_calls, 1);
	ENG_STAT_ADD(s, deflate_in, n);
	if (got > 0)
		ENG_STAT_ADD(s, deflate_out, got);
	else
		ENG_STAT_ADD(s, deflate_out, n);	/* sent as it was */
	return got;
}

/*
 * A frame of opcode @op, RSV1 set, around the shard's @n output bytes:
 * in the arena for a push frame's twin, on the heap for a reply.
 */
static struct eng_buf *zbuf(struct eng_shard *s, uint8_t op, size_t n,
			    bool arena)
{
	struct eng_buf *b = arena ? eng_arena_buf(WS_MAX_SERVER_HDR + n) :
				    eng_buf_new(WS_MAX_SERVER_HDR + n);

	if (!b)
		return NULL;
	memcpy(b->data + WS_MAX_SERVER_HDR, s->zip->out, n);
	eng_buf_seal(b, b->data + WS_MAX_SERVER_HDR, op, n);
	b->data[b->start] |= WS_RSV1;
	return b;
}

void eng_zframe_attach(struct eng_shard *s, struct eng_buf *f)
{
	size_t n;
	const uint8_t *p = payload_of(f, &n);
	ssize_t got;

	if (f->z || !p)
		return;		/* compressed once already, or a close */
	got = squeeze(s, p, n);
	if (got <= 0)
		return;
	f->z = zbuf(s, f->data[f->start] & 0x0f, (size_t)got, true);
	if (f->z)
		f->z->t_us = f->t_us;	/* the latency sample follows */
}

void eng_zframe_once(struct eng_shard *s, struct eng_buf *f,
		     const uint64_t *shards)
{
	if (s->zip && eng_zframe_wanted(s->eng, shards))
		eng_zframe_attach(s, f);
}

void eng_zframe_read(struct eng_shard *s, uint32_t slot, uint32_t gen,
		     struct eng_buf **f, size_t n)
{
	const struct eng_conn *c = slot < s->nr_conns ? &s->conns[slot] : NULL;

	if (!s->zip || !c || c->gen != gen || !c->deflate)
		return;
	for (size_t i = 0; i < n; i++)
		if (f[i])
			eng_zframe_attach(s, f[i]);
}

struct eng_buf *eng_zframe_own(struct eng_shard *s, struct eng_buf *b)
{
	size_t n;
	const uint8_t *p = payload_of(b, &n);
	struct eng_buf *z;
	ssize_t got;

	if (b->z || !p)
		return b;
	got = squeeze(s, p, n);
	if (got <= 0)
		return b;
	z = zbuf(s, b->data[b->start] & 0x0f, (size_t)got, false);
	if (!z)
		return b;	/* no memory: it goes as it is */
	eng_buf_put(b);
	return z;
}

/* Grows @b to @cap bytes of payload room, at most. 0 or -ENOMEM. */
static int grow(struct eng_buf **b, size_t cap)
{
	struct eng_buf *nb = eng_realloc(*b, sizeof(**b) + WS_MAX_SERVER_HDR +
					 cap);

	if (!nb)
		return -ENOMEM;
	nb->cap = (uint32_t)(WS_MAX_SERVER_HDR + cap);
	*b = nb;
	return 0;
}

int eng_zframe_inflate(struct eng_shard *s, const uint8_t *p, size_t n,
		       uint64_t max, struct eng_buf **out)
{
	struct eng_zip *z = s->zip;
	struct deflate_io io = { .in = p, .in_len = n };
	/* a guess at the ratio; room doubles from there, up to @max */
	uint64_t room = (uint64_t)n * 4 + 256;
	struct eng_buf *b;
	int ret;

	if (!z)
		return -EILSEQ;		/* cannot happen: not negotiated */
	if (room > max)
		room = max;
	b = eng_buf_new(WS_MAX_SERVER_HDR + room);
	if (!b)
		return -ENOMEM;
	deflate_rx_begin(z->rx, max);
	io.out = b->data + WS_MAX_SERVER_HDR;
	io.out_len = room;
	while ((ret = deflate_inflate(z->rx, &io, 1)) == -ENOBUFS) {
		size_t used = room - io.out_len;

		if (room == max) {	/* cannot be: full at @max is a probe */
			ret = -EMSGSIZE;
			break;
		}
		room = room * 2 > max ? max : room * 2;
		if (grow(&b, room) < 0) {
			ret = -ENOMEM;
			break;
		}
		io.out = b->data + WS_MAX_SERVER_HDR + used;
		io.out_len = room - used;
	}
	if (ret != 1) {
		eng_buf_put(b);
		return ret < 0 ? ret : -EILSEQ;
	}
	b->len = (uint32_t)(room - io.out_len);
	ENG_STAT_ADD(s, inflated, 1);
	*out = b;
	return 0;
}

size_t eng_zframe_stats(struct eng *e, char *out, size_t cap)
{
	static const size_t at[] = {
		offsetof(struct eng_stats, deflate_conns),
		offsetof(struct eng_stats, deflate_calls),
		offsetof(struct eng_stats, deflate_in),
		offsetof(struct eng_stats, deflate_out),
		offsetof(struct eng_stats, sent_deflated),
		offsetof(struct eng_stats, sent_plain),
		offsetof(struct eng_stats, inflated),
	};
	unsigned long long v[7] = { 0 };
	int n;

	for (unsigned i = 0; i < e->cfg.shards; i++)
		for (unsigned k = 0; k < 7; k++)
			v[k] += atomic_load_explicit(
				(atomic_uint_fast64_t *)((char *)&e->shards[i].stats +
							 at[k]),
				memory_order_relaxed);
	n = snprintf(out, cap, "{\"enabled\":%s,\"connections\":%llu,"
		     "\"calls\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,"
		     "\"sent_compressed\":%llu,\"sent_plain\":%llu,"
		     "\"inflated\":%llu}", e->cfg.deflate ? "true" : "false",
		     v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap ? cap - 1 : 0;
}
