/* SPDX-License-Identifier: MIT */
/*
 * deflate: permessage-deflate's choice of offer, its answer, and the
 * per-thread compressor and inflater on zlib. Both streams are reset before
 * every message (no context takeover either way), which is what lets one
 * compressed copy of a publication serve every receiver. zlib allocates
 * through a counting allocator, only in the *_new() functions.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* next_in is const then: compressed input is never written */
#define ZLIB_CONST
#include <zlib.h>

#include "deflate.h"

#define MEM_LEVEL	8	/* zlib's default: a 64 KiB hash head table */

/* The sync-flush marker RFC 7692 strips from, and appends to, a message. */
static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };

int deflate_accept(const struct deflate_offers *o, unsigned wbits)
{
	unsigned i;

	if (wbits < DEFLATE_MIN_WBITS || wbits > DEFLATE_MAX_WBITS)
		return -EINVAL;
	if (o->broken)
		return -ENOENT;
	/* The client lists offers by preference; take the first we honour. */
	for (i = 0; i < o->n && i < DEFLATE_MAX_OFFERS; i++) {
		if (!o->smax[i])
			return 0;
		if (o->smax[i] >= wbits && o->smax[i] <= DEFLATE_MAX_WBITS)
			return o->smax[i];
	}
	return -ENOENT;
}

int deflate_ua_broken(const char *ua, size_t len)
{
	static const char ver[] = " Version/15.";
	const char *p = memmem(ua, len, ver, sizeof(ver) - 1);
	const char *end = ua + len;
	unsigned minor = 0, digits = 0;

	if (!p)
		return 0;
	/* "Version/15.N" then a space or ".patch"; N from 0 to 3 */
	for (p += sizeof(ver) - 1; p < end && *p >= '0' && *p <= '9'; p++) {
		if (++digits > 2)
			return 0;
		minor = minor * 10 + (unsigned)(*p - '0');
	}
	if (!digits || minor > 3 || p >= end || (*p != ' ' && *p != '.'))
		return 0;
	/* Safari's token follows; other WebKit browsers have their own */
	return memmem(p, (size_t)(end - p), " Safari/", 8) != NULL;
}

ssize_t deflate_write_answer(char *out, size_t cap, int smax)
{
	char bits[32] = "";
	int n;

	if (smax && (smax < 8 || smax > DEFLATE_MAX_WBITS))
		return -EINVAL;
	/* A window the client asked us to keep to is echoed (7.1.2.1). */
	if (smax)
		snprintf(bits, sizeof(bits), "; server_max_window_bits=%d",
			 smax);
	n = snprintf(out, cap, "Sec-WebSocket-Extensions: permessage-deflate; "
		     "server_no_context_takeover; client_no_context_takeover"
		     "%s\r\n", bits);
	if (n < 0)
		return -EINVAL;
	return (size_t)n < cap ? n : -ENOSPC;
}

/*
 * zlib's allocations, counted in *@opaque. Each block carries its size in
 * front so the count can go down again on free.
 */
static voidpf zalloc(voidpf opaque, uInt items, uInt size)
{
	size_t *count = opaque, n;
	max_align_t *p;

	if (size && items > (SIZE_MAX - sizeof(*p)) / size)
		return Z_NULL;
	n = (size_t)items * size;
	p = malloc(sizeof(*p) + n);
	if (!p)
		return Z_NULL;
	memcpy(p, &n, sizeof(n));
	*count += n;
	return p + 1;
}

static void zfree(voidpf opaque, voidpf ptr)
{
	size_t *count = opaque, n;
	max_align_t *p;

	if (!ptr)
		return;
	p = (max_align_t *)ptr - 1;
	memcpy(&n, p, sizeof(n));
	*count -= n;
	free(p);
}

/* Routes @z's allocations through the counting allocator into *@mem. */
static void counted(z_stream *z, size_t *mem)
{
	z->zalloc = zalloc;
	z->zfree = zfree;
	z->opaque = mem;
}

struct deflate_tx {
	z_stream z;
	size_t mem;	/* bytes zlib holds */
};

struct deflate_tx *deflate_tx_new(int level, unsigned wbits)
{
	struct deflate_tx *tx;

	if (level < 1 || level > 9 || wbits < DEFLATE_MIN_WBITS ||
	    wbits > DEFLATE_MAX_WBITS)
		return NULL;
	tx = calloc(1, sizeof(*tx));
	if (!tx)
		return NULL;
	counted(&tx->z, &tx->mem);
	/* Negative window bits: raw DEFLATE, no zlib header or checksum. */
	if (deflateInit2(&tx->z, level, Z_DEFLATED, -(int)wbits, MEM_LEVEL,
			 Z_DEFAULT_STRATEGY) != Z_OK) {
		free(tx);
		return NULL;
	}
	return tx;
}

void deflate_tx_free(struct deflate_tx *tx)
{
	if (!tx)
		return;
	deflateEnd(&tx->z);
	free(tx);
}

ssize_t deflate_compress(struct deflate_tx *tx, const uint8_t *in, size_t n,
			 uint8_t *out, size_t limit)
{
	z_stream *z;
	size_t room, left = n, got;
	uInt chunk;
	int ret, flush;

	if (!tx)
		return -EINVAL;
	z = &tx->z;
	/* deflateReset() keeps the memory but forgets every earlier byte. */
	if (deflateReset(z) != Z_OK)
		return -EIO;
	room = limit + DEFLATE_SLACK;
	if (room < limit || room > UINT_MAX)
		room = UINT_MAX;
	z->next_in = in;
	z->next_out = out;
	z->avail_out = (uInt)room;
	do {
		chunk = left > UINT_MAX ? UINT_MAX : (uInt)left;
		z->avail_in = chunk;
		left -= chunk;
		flush = left ? Z_NO_FLUSH : Z_SYNC_FLUSH;
		ret = deflate(z, flush);
		if (ret != Z_OK && ret != Z_BUF_ERROR)
			return -EIO;
		/*
		 * Out of room means at least limit + 8 bytes, too long once
		 * the 4-byte tail goes. It is also the only way the flush can
		 * be left unfinished (zlib then wants another call, which
		 * would add a second marker): with room left it is complete.
		 */
		if (!z->avail_out)
			return 0;
	} while (left);
	got = room - z->avail_out;
	if (got < sizeof(tail) || memcmp(out + got - 4, tail, sizeof(tail)))
		return -EIO;
	got -= sizeof(tail);
	return got <= limit ? (ssize_t)got : 0;
}

struct deflate_rx {
	z_stream z;
	size_t mem;		/* bytes zlib holds */
	uint64_t max;		/* the message's inflated bound */
	uint64_t total;		/* inflated so far */
	uint64_t seen;		/* compressed bytes fed so far */
	uint8_t ntail;		/* bytes of tail[] fed */
	uint8_t ended;		/* a BFINAL block ended the stream */
	uint8_t flushing;	/* output was filled: zlib may hold more */
	uint8_t dead;		/* an error ended the message */
};

/* The RFC 7692 section 7.2.3.1 "Hello": inflating it makes zlib allocate
 * its window now rather than on a client's first message. */
static const uint8_t hello[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };

struct deflate_rx *deflate_rx_new(void)
{
	struct deflate_rx *rx;
	struct deflate_io io;
	uint8_t out[8];

	rx = calloc(1, sizeof(*rx));
	if (!rx)
		return NULL;
	counted(&rx->z, &rx->mem);
	if (inflateInit2(&rx->z, -MAX_WBITS) != Z_OK) {
		free(rx);
		return NULL;
	}
	deflate_rx_begin(rx, sizeof(out));
	io = (struct deflate_io){ hello, sizeof(hello), out, sizeof(out) };
	if (deflate_inflate(rx, &io, 1) != 1) {
		deflate_rx_free(rx);
		return NULL;
	}
	return rx;
}

void deflate_rx_free(struct deflate_rx *rx)
{
	if (!rx)
		return;
	inflateEnd(&rx->z);
	free(rx);
}

size_t deflate_rx_mem(const struct deflate_rx *rx)
{
	return rx->mem;
}

void deflate_rx_begin(struct deflate_rx *rx, uint64_t max)
{
	/* inflateReset() keeps the window's memory, forgets its bytes. */
	inflateReset(&rx->z);
	rx->max = max;
	rx->total = rx->seen = 0;
	rx->ntail = rx->ended = rx->flushing = rx->dead = 0;
}

static int fail(struct deflate_rx *rx, int err)
{
	rx->dead = 1;
	return err;
}

/*
 * Whether the message ends cleanly: on a block boundary (data_type's 128:
 * inflate waits for a block header), or right after a BFINAL block.
 */
static int at_end(struct deflate_rx *rx)
{
	return rx->ended || (rx->z.data_type & 128);
}

int deflate_inflate(struct deflate_rx *rx, struct deflate_io *io, int fin)
{
	z_stream *z = &rx->z;
	const uint8_t *in;
	size_t in_len, used, made, avail;
	uint64_t room;
	uint8_t probe;
	int ret, from_tail, probing;

	if (rx->dead)
		return -EILSEQ;
	for (;;) {
		/* The client's bytes first; at the end, the 4-byte tail. */
		from_tail = !io->in_len && fin && rx->seen;
		in = from_tail ? tail + rx->ntail : io->in;
		in_len = from_tail ? sizeof(tail) - rx->ntail : io->in_len;
		if (!in_len && !rx->flushing) {
			if (!fin)
				return 0;
			/* No bytes at all is an empty message; otherwise it
			 * must not stop inside a block. */
			if (!rx->seen || at_end(rx))
				return 1;
			return fail(rx, -EILSEQ);
		}
		if (rx->ended) {
			if (from_tail) {	/* nothing follows the stream */
				rx->ntail = sizeof(tail);
				continue;
			}
			/* More after a BFINAL block (RFC 7692 7.2.3.4 pads
			 * with a byte): a new stream, still within @max. */
			inflateReset(z);
			rx->ended = 0;
		}

		room = rx->max - rx->total;
		avail = io->out_len < room ? io->out_len : (size_t)room;
		probing = !avail;
		if (probing && room)
			return -ENOBUFS;
		/* At the bound, one byte more into @probe decides. */
		z->next_out = probing ? &probe : io->out;
		z->avail_out = probing ? 1 : avail > UINT_MAX ? UINT_MAX :
			       (uInt)avail;
		z->next_in = in;
		z->avail_in = in_len > UINT_MAX ? UINT_MAX : (uInt)in_len;
		avail = z->avail_out;
		used = z->avail_in;

		ret = inflate(z, Z_SYNC_FLUSH);

		used -= z->avail_in;
		made = avail - z->avail_out;
		if (from_tail) {
			rx->ntail += (uint8_t)used;
		} else {
			io->in += used;
			io->in_len -= used;
			rx->seen += used;
		}
		if (probing && made)
			return fail(rx, -EMSGSIZE);
		if (!probing) {
			io->out += made;
			io->out_len -= made;
			rx->total += made;
		}
		/* A full output may hide more: call again before judging. */
		rx->flushing = !z->avail_out;
		switch (ret) {
		case Z_STREAM_END:
			rx->ended = 1;
			rx->flushing = 0;
			break;
		case Z_OK:
			break;
		case Z_BUF_ERROR:
			/* No progress: only when there was nothing to do. */
			if (used || made || (in_len && !probing))
				return fail(rx, -EILSEQ);
			rx->flushing = 0;
			break;
		case Z_MEM_ERROR:
			return fail(rx, -ENOMEM);
		default:	/* Z_DATA_ERROR: bad data, or a distance
				 * reaching before the message */
			return fail(rx, -EILSEQ);
		}
	}
}
