/* SPDX-License-Identifier: MIT */
/*
 * fuzz-deflate: permessage-deflate's two parsers of client bytes. Byte 0
 * picks one. Even: the rest is a Sec-WebSocket-Extensions value, parsed
 * alone and inside a request by hs_parse(), which must agree; every choice
 * and answer stays in range; the same bytes as a User-Agent go through
 * deflate_ua_broken(). Odd: bytes 1-3 pick an inflation bound, a
 * piece size and an output step, and the rest is a compressed message,
 * inflated whole and in pieces into buffers of exactly the bound (ASan
 * sees any write past it); both ways must give the same result and bytes,
 * zlib's memory must not grow, and what inflated must survive a round trip
 * through the compressor.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deflate.h"
#include "hs.h"

static struct deflate_tx *tx;
static struct deflate_rx *rx;

static void offers(const uint8_t *v, size_t n)
{
	static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\n"
				   "Sec-WebSocket-Extensions: ";
	char ans[DEFLATE_ANSWER_MAX], resp[512];
	struct hs_str key = { "dGhlIHNhbXBsZSBub25jZQ==", 24 };
	struct deflate_offers o = { 0 }, ua;
	size_t len = sizeof(head) - 1 + n + 4;
	struct hs_req r;
	unsigned w, i;
	uint8_t *req;
	int smax;

	hs_deflate_offers(&o, (const char *)v, n);
	/* the same bytes as a User-Agent: a broken one declines all */
	ua = o;
	ua.broken = (uint8_t)deflate_ua_broken((const char *)v, n);
	assert(!ua.broken || deflate_accept(&ua, 15) == -ENOENT);
	assert(o.n <= DEFLATE_MAX_OFFERS);
	for (i = 0; i < o.n; i++)
		assert(!o.smax[i] || (o.smax[i] >= 8 && o.smax[i] <= 15));
	for (w = DEFLATE_MIN_WBITS; w <= DEFLATE_MAX_WBITS; w++) {
		smax = deflate_accept(&o, w);
		assert(smax == -ENOENT || smax == 0 ||
		       (smax >= (int)w && smax <= DEFLATE_MAX_WBITS));
		if (smax < 0)
			continue;
		assert(deflate_write_answer(ans, sizeof(ans), smax) > 0);
		assert(hs_write_101_ext(resp, sizeof(resp), &key, ans) > 0);
	}

	/* the same value on a request line: hs_parse() must see the same
	 * (a CR or LF would make more lines of it) */
	if (memchr(v, '\r', n) || memchr(v, '\n', n))
		return;
	req = malloc(len);
	memcpy(req, head, sizeof(head) - 1);
	memcpy(req + sizeof(head) - 1, v, n);
	memcpy(req + len - 4, "\r\n\r\n", 4);
	if (hs_parse(&r, req, len, NULL) == (ssize_t)len)
		assert(!memcmp(&r.deflate, &o, sizeof(o)));
	free(req);
}

/* Inflates @in in @piece-byte pieces, output room in @step-byte steps. */
static int run(const uint8_t *in, size_t n, size_t piece, size_t step,
	       uint8_t *out, size_t max, size_t *len)
{
	struct deflate_io io = { .out = out, .out_len = step ? 0 : max };
	size_t off = 0, k, given = io.out_len;
	int ret;

	deflate_rx_begin(rx, max);
	do {
		k = piece && n - off > piece ? piece : n - off;
		io.in = in + off;
		io.in_len = k;
		off += k;
		while ((ret = deflate_inflate(rx, &io, off == n)) == -ENOBUFS) {
			assert(given < max);	/* the bound is not reached */
			k = max - given < step ? max - given : step;
			io.out_len += k;
			given += k;
		}
		assert(io.in_len == 0 || ret < 0);
	} while (ret == 0 && off < n);
	assert(ret == 1 || ret == -EMSGSIZE || ret == -EILSEQ);
	*len = (size_t)(io.out - out);
	assert(*len <= max);
	return ret;
}

static void inflates(const uint8_t *p, size_t size)
{
	size_t max, piece, step, n, len1, len2;
	uint8_t *a, *b, *c;
	size_t mem = deflate_rx_mem(rx);
	ssize_t cn;
	int r1, r2;

	if (size < 3)
		return;
	max = ((size_t)p[0] + 1) * 64;
	piece = p[1];
	step = (size_t)p[2] * 4;
	p += 3;
	n = size - 3;
	a = malloc(max);
	b = malloc(max);
	r1 = run(p, n, 0, 0, a, max, &len1);
	r2 = run(p, n, piece, step, b, max, &len2);
	assert(r1 == r2 && len1 == len2 && !memcmp(a, b, len1));
	assert(deflate_rx_mem(rx) == mem);

	if (r1 == 1) {
		/* what inflated compresses and inflates back the same */
		c = malloc(len1 + 64 + DEFLATE_SLACK);
		cn = deflate_compress(tx, a, len1, c, len1 + 64);
		assert(cn > 0);
		assert(run(c, (size_t)cn, 0, 0, b, max, &len2) == 1);
		assert(len2 == len1 && !memcmp(a, b, len1));
		free(c);
	}
	free(a);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!tx) {
		tx = deflate_tx_new(6, 15);
		rx = deflate_rx_new();
		assert(tx && rx);
	}
	if (!size)
		return 0;
	if (data[0] & 1)
		inflates(data + 1, size - 1);
	else
		offers(data + 1, size - 1);
	return 0;
}
