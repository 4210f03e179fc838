/* SPDX-License-Identifier: MIT */
/*
 * Description: permessage-deflate (RFC 7692) in proto/: the offers of
 * Chrome, Firefox, Safari and malformed ones through hs_parse() and
 * deflate_accept(); the RFC's section 7.2.3 bytes both ways; no context
 * carried between messages; round trips over many sizes checked against a
 * plain zlib inflater (what a browser runs); fragmented input; output given
 * room in steps; the inflation bound (a bomb); RSV1 rules in ws_parse_ext().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#include "deflate.h"
#include "helpers.h"
#include "hs.h"
#include "ws.h"

static const uint8_t hello_sync[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
				      0x00 };

static struct deflate_tx *tx;
static struct deflate_rx *rx;

/*
 * Inflates @in[0..@n) split into pieces of @piece bytes (0: one piece),
 * with output room given @step bytes at a time (0: all of @cap at once),
 * into @out, at most @max bytes. Returns deflate_inflate()'s final result;
 * *@len is the inflated length.
 */
static int inflate_msg(const uint8_t *in, size_t n, size_t piece, size_t step,
		       uint8_t *out, size_t cap, uint64_t max, size_t *len)
{
	struct deflate_io io = { .out = out, .out_len = step ? 0 : cap };
	size_t off = 0, k, given = io.out_len;
	int ret, fin, rounds = 0;

	deflate_rx_begin(rx, max);
	do {
		k = piece && n - off > piece ? piece : n - off;
		fin = off + k == n;
		io.in = in + off;
		io.in_len = k;
		off += k;
		while ((ret = deflate_inflate(rx, &io, fin)) == -ENOBUFS &&
		       given < cap && ++rounds < 1 << 22) {
			k = cap - given < step ? cap - given : step;
			io.out_len += k;
			given += k;
		}
	} while (ret >= 0 && off < n);
	*len = (size_t)(io.out - out);
	return ret;
}

/* The RFC's payloads inflate to "Hello"; one byte less room is 1009. */
static int test_rfc_vectors(void)
{
	static const struct {
		const char *name;
		uint8_t in[16];
		size_t n;
	} v[] = {
		{ "7.2.3.1", { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 }, 7 },
		{ "7.2.3.3 stored", { 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65,
				      0x6c, 0x6c, 0x6f, 0x00 }, 11 },
		{ "7.2.3.4 BFINAL", { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00,
				      0x00 }, 8 },
		{ "7.2.3.5 two blocks", { 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00,
					  0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
					  0x00 }, 13 },
	};
	uint8_t out[16];
	size_t i, len, piece;
	int ret;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		for (piece = 0; piece <= 3; piece++) {
			ret = inflate_msg(v[i].in, v[i].n, piece, 0, out,
					  sizeof(out), 5, &len);
			if (ret != 1 || len != 5 || memcmp(out, "Hello", 5))
				T_FAIL("%s piece %zu: ret %d len %zu", v[i].name,
				       piece, ret, len);
		}
		ret = inflate_msg(v[i].in, v[i].n, 0, 0, out, sizeof(out), 4,
				  &len);
		if (ret != -EMSGSIZE || len != 4)
			T_FAIL("%s bound 4: ret %d len %zu", v[i].name, ret, len);
	}
	return 0;
}

/*
 * 7.2.3.2: with context takeover the second "Hello" is f2 00 11 00 00,
 * a reference into the first. Both sides agreed to no takeover, so the
 * compressor never sends it and the inflater refuses it.
 */
static int test_no_context_takeover(void)
{
	static const uint8_t second[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
	uint8_t out[16 + DEFLATE_SLACK];
	size_t len;
	int i;

	for (i = 0; i < 3; i++) {
		T_CHECK(deflate_compress(tx, (const uint8_t *)"Hello", 5, out,
					 16) == sizeof(hello_sync));
		T_CHECK(!memcmp(out, hello_sync, sizeof(hello_sync)));
		T_CHECK(inflate_msg(out, sizeof(hello_sync), 0, 0, out + 8, 8,
				    5, &len) == 1 && len == 5);
	}
	T_CHECK(inflate_msg(second, sizeof(second), 0, 0, out, 16, 16,
			    &len) == -EILSEQ);
	/* an error is final until the next message */
	T_CHECK(deflate_inflate(rx, &(struct deflate_io){ 0 }, 1) == -EILSEQ);
	/* "Hello" is 7 bytes compressed: not smaller than 5 */
	T_CHECK(deflate_compress(tx, (const uint8_t *)"Hello", 5, out, 4) == 0);
	T_CHECK(deflate_compress(tx, (const uint8_t *)"", 0, out, 0) == 0);
	T_CHECK(deflate_compress(NULL, out, 1, out, 0) == -EINVAL);
	return 0;
}

/* What a browser does with a compressed frame: zlib, tail appended. */
static int zlib_inflate(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
			size_t *len)
{
	static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };
	z_stream z = { 0 };
	int ret;

	if (inflateInit2(&z, -15) != Z_OK)
		return -1;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	z.next_in = in;
	z.avail_in = (uInt)n;
	ret = inflate(&z, Z_SYNC_FLUSH);
	if (ret == Z_OK || ret == Z_BUF_ERROR) {
		z.next_in = tail;
		z.avail_in = 4;
		ret = inflate(&z, Z_SYNC_FLUSH);
	}
	*len = cap - z.avail_out;
	inflateEnd(&z);
	return ret == Z_OK || ret == Z_STREAM_END ? 0 : -1;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* JSON-like text: what a push server mostly sends. */
static void fill_json(uint8_t *p, size_t n)
{
	static const char *words[] = { "{\"channel\":\"prices\",", "\"seq\":",
				       "\"bid\":1.2345,", "\"ask\":1.2347},",
				       "\"symbol\":\"EURUSD\"," };
	size_t i = 0, k, w;

	while (i < n) {
		w = next_rand() % 5;
		k = strlen(words[w]);
		if (k > n - i)
			k = n - i;
		memcpy(p + i, words[w], k);
		i += k;
	}
}

static int round_trip(const char *kind, const uint8_t *in, size_t n)
{
	size_t cap = n + (n >> 10) + 64, len;
	uint8_t *c = malloc(cap + DEFLATE_SLACK), *c2 = malloc(n + DEFLATE_SLACK);
	uint8_t *out = malloc(n + 1);
	ssize_t cn, small;
	int ret = 1;

	if (!c || !c2 || !out)
		goto out;
	cn = deflate_compress(tx, in, n, c, cap);
	if (cn <= 0) {
		fprintf(stderr, "%s %zu: compress %zd\n", kind, n, cn);
		goto out;
	}
	/* with the engine's limit: the same bytes, or 0 when not smaller */
	small = deflate_compress(tx, in, n, c2, n ? n - 1 : 0);
	if (small != ((size_t)cn < n ? cn : 0) ||
	    (small > 0 && memcmp(c, c2, (size_t)cn))) {
		fprintf(stderr, "%s %zu: limit n-1 gave %zd, %zd alone\n",
			kind, n, small, cn);
		goto out;
	}
	memset(out, 0xa5, n + 1);
	if (zlib_inflate(c, (size_t)cn, out, n + 1, &len) || len != n ||
	    memcmp(out, in, n)) {
		fprintf(stderr, "%s %zu: zlib reads %zu bytes\n", kind, n, len);
		goto out;
	}
	/* whole; in 3 pieces; room in steps of 1000 bytes */
	if (inflate_msg(c, (size_t)cn, 0, 0, out, n, n, &len) != 1 ||
	    len != n || memcmp(out, in, n) ||
	    inflate_msg(c, (size_t)cn, (size_t)cn / 3 + 1, 1000, out, n, n,
			&len) != 1 || len != n || memcmp(out, in, n)) {
		fprintf(stderr, "%s %zu: inflate\n", kind, n);
		goto out;
	}
	if (n && inflate_msg(c, (size_t)cn, 0, 0, out, n, n - 1,
			     &len) != -EMSGSIZE) {
		fprintf(stderr, "%s %zu: bound n-1 passed\n", kind, n);
		goto out;
	}
	ret = 0;
out:
	free(c);
	free(c2);
	free(out);
	return ret;
}

static int test_round_trips(void)
{
	static const size_t sizes[] = { 0, 1, 2, 125, 126, 127, 1000, 4096,
					32767, 32768, 32769, 65535, 65536,
					65537, 1 << 20 };
	size_t i, k, n, max = 1 << 20;
	uint8_t *p = malloc(max);
	uint8_t c[1024 + DEFLATE_SLACK];
	int ret = 0;

	T_CHECK(p);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && !ret; i++) {
		n = sizes[i];
		fill_json(p, n);
		ret |= round_trip("json", p, n);
		for (k = 0; k < n; k++)
			p[k] = (uint8_t)next_rand();
		ret |= round_trip("random", p, n);
		memset(p, 'a', n);
		ret |= round_trip("zeros", p, n);
	}
	/* 1 KiB of JSON shrinks; 1 KiB of noise is sent plain */
	fill_json(p, 1024);
	T_CHECK(deflate_compress(tx, p, 1024, c, 1023) > 0);
	for (k = 0; k < 1024; k++)
		p[k] = (uint8_t)next_rand();
	T_CHECK(deflate_compress(tx, p, 1024, c, 1023) == 0);
	free(p);
	return ret;
}

/*
 * 16 MiB of one byte is about 16 KiB compressed. Against a 64 KiB bound
 * the inflater stops at 64 KiB in a buffer of exactly that size (ASan
 * sees any write past it), and zlib allocates nothing.
 */
static int test_bomb(void)
{
	size_t n = 16 << 20, bound = 64 << 10, mem = deflate_rx_mem(rx), len;
	uint8_t *big = malloc(n), *c = malloc(n / 64), *out = malloc(bound);
	ssize_t cn;
	int ret;

	T_CHECK(big && c && out);
	memset(big, 'x', n);
	cn = deflate_compress(tx, big, n, c, n / 64 - DEFLATE_SLACK);
	T_CHECK(cn > 0 && cn < (ssize_t)(n / 500));
	ret = inflate_msg(c, (size_t)cn, 0, 0, out, bound, bound, &len);
	T_CHECK(ret == -EMSGSIZE && len == bound);
	T_CHECK(ws_close_code(ret) == WS_CLOSE_TOO_BIG);
	/* growing room in steps changes nothing */
	ret = inflate_msg(c, (size_t)cn, 4096, 1 << 12, out, bound, bound,
			  &len);
	T_CHECK(ret == -EMSGSIZE && len == bound);
	T_CHECK(deflate_rx_mem(rx) == mem && mem > 32 << 10);
	/* with room for it all, the same bytes come back */
	ret = inflate_msg(c, (size_t)cn, 0, 0, big, n, n, &len);
	T_CHECK(ret == 1 && len == n && big[0] == 'x' && big[n - 1] == 'x');
	T_CHECK(deflate_rx_mem(rx) == mem);
	free(big);
	free(c);
	free(out);
	return 0;
}

/* Bad streams are 1007, never a crash; the next message still works. */
static int test_bad_data(void)
{
	static const uint8_t btype3[] = { 0xff, 0xff, 0xff };
	uint8_t text[2048], c[2048 + DEFLATE_SLACK], out[4096];
	size_t len;
	ssize_t cn;
	int ret;

	T_CHECK(inflate_msg(btype3, sizeof(btype3), 0, 0, out, sizeof(out),
			    sizeof(out), &len) == -EILSEQ);
	T_CHECK(ws_close_code(-EILSEQ) == WS_CLOSE_BAD_DATA);
	fill_json(text, sizeof(text));
	cn = deflate_compress(tx, text, sizeof(text), c, sizeof(text) - 1);
	T_CHECK(cn > 16);
	/* cut in half: the message stops inside a block */
	ret = inflate_msg(c, (size_t)cn / 2, 0, 0, out, sizeof(out),
			  sizeof(out), &len);
	T_CHECK(ret == -EILSEQ);
	/* an empty payload is an empty message */
	T_CHECK(inflate_msg(c, 0, 0, 0, out, sizeof(out), sizeof(out),
			    &len) == 1 && len == 0);
	T_CHECK(inflate_msg(c, (size_t)cn, 0, 0, out, sizeof(out), sizeof(out),
			    &len) == 1 && len == sizeof(text));
	/* !fin with all input used: waiting for more */
	deflate_rx_begin(rx, 100);
	T_CHECK(deflate_inflate(rx, &(struct deflate_io){ hello_sync, 3, out,
							  sizeof(out) }, 0) == 0);
	return 0;
}

struct ncase {
	const char *name;
	const char *hdr;
	int at15, at10;		/* deflate_accept() with wbits 15 and 10 */
	unsigned n, declined;
};

static const struct ncase ncases[] = {
	{ "chrome", "permessage-deflate; client_max_window_bits", 0, 0, 1, 0 },
	{ "firefox", "permessage-deflate", 0, 0, 1, 0 },
	{ "safari before 15 (webkit)", "x-webkit-deflate-frame",
	  -ENOENT, -ENOENT, 0, 0 },
	{ "none", "", -ENOENT, -ENOENT, 0, 0 },
	{ "smaller window", "permessage-deflate; server_max_window_bits=10",
	  -ENOENT, 10, 1, 0 },
	{ "window 8, which zlib cannot make",
	  "permessage-deflate; server_max_window_bits=8", -ENOENT, -ENOENT,
	  1, 0 },
	{ "preference order",
	  "permessage-deflate; server_max_window_bits=12, permessage-deflate",
	  0, 12, 2, 0 },
	{ "all four", "permessage-deflate; client_max_window_bits=15; "
	  "server_no_context_takeover;client_no_context_takeover ; "
	  "server_max_window_bits = 15", 15, 15, 1, 0 },
	{ "unknown first", "foo, bar; x=\"a,b\", permessage-deflate",
	  0, 0, 1, 0 },
	{ "quoted", "permessage-deflate; client_max_window_bits=\"10\"",
	  0, 0, 1, 0 },
	{ "quoted-pair", "permessage-deflate; server_max_window_bits=\"1\\2\"",
	  -ENOENT, 12, 1, 0 },
	{ "empty elements", ",, ,permessage-deflate ,", 0, 0, 1, 0 },
	{ "case", "PerMessage-Deflate; Client_Max_Window_Bits", 0, 0, 1, 0 },
	{ "other token", "permessage-deflate-x", -ENOENT, -ENOENT, 0, 0 },
	{ "bad then good", "permessage-deflate; a, permessage-deflate",
	  0, 0, 1, 1 },
	{ "bare server_max_window_bits",
	  "permessage-deflate; server_max_window_bits", -ENOENT, -ENOENT, 0, 1 },
	{ "window 16", "permessage-deflate; server_max_window_bits=16",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "window 7", "permessage-deflate; client_max_window_bits=7",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "leading zero", "permessage-deflate; server_max_window_bits=010",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "hex", "permessage-deflate; server_max_window_bits=0x9",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "value on a flag", "permessage-deflate; server_no_context_takeover=1",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "repeat", "permessage-deflate; client_no_context_takeover; "
	  "client_no_context_takeover", -ENOENT, -ENOENT, 0, 1 },
	{ "repeat, one bare", "permessage-deflate; client_max_window_bits; "
	  "client_max_window_bits=10", -ENOENT, -ENOENT, 0, 1 },
	{ "unknown parameter", "permessage-deflate; x-unknown",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "empty parameter", "permessage-deflate;", -ENOENT, -ENOENT, 0, 1 },
	{ "no name", "permessage-deflate; =10", -ENOENT, -ENOENT, 0, 1 },
	{ "unterminated quote",
	  "permessage-deflate; client_max_window_bits=\"10, permessage-deflate",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "empty quote", "permessage-deflate; client_max_window_bits=\"\"",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "space in quote", "permessage-deflate; client_max_window_bits=\"1 0\"",
	  -ENOENT, -ENOENT, 0, 1 },
	{ "junk after name", "permessage-deflate x", -ENOENT, -ENOENT, 0, 1 },
	{ "empty value", "permessage-deflate; client_max_window_bits=",
	  -ENOENT, -ENOENT, 0, 1 },
};

#define REQ "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n" \
	"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
	"Sec-WebSocket-Version: 13\r\n"

static const struct {
	const char *ua;
	unsigned broken;
} uas[] = {
	{ "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
	  "(KHTML, like Gecko) Version/15.2 Safari/605.1.15", 1 },
	{ "Mozilla/5.0 (iPhone; CPU iPhone OS 15_0 like Mac OS X) "
	  "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.0 "
	  "Mobile/15E148 Safari/604.1", 1 },
	{ "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) "
	  "Version/15.3.1 Safari/605.1.15", 1 },
	{ "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) "
	  "Version/15.4 Safari/605.1.15", 0 },
	{ "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) "
	  "Version/16.0 Safari/605.1.15", 0 },
	{ "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
	  "Gecko) Chrome/120.0.0.0 Safari/537.36", 0 },
	{ "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 "
	  "Firefox/120.0", 0 },
	{ "Version/15.1", 0 },
	{ "x Version/15.1 Safari/", 1 },
	{ "x Version/15. Safari/1", 0 },
	{ "x Version/15.123 Safari/1", 0 },
};

static int test_negotiation(void)
{
	static const char nine[] = "permessage-deflate; "
				   "server_max_window_bits=9";
	char req[512];
	struct hs_req r;
	size_t i;
	int n;

	for (i = 0; i < sizeof(ncases) / sizeof(ncases[0]); i++) {
		const struct ncase *c = &ncases[i];

		/* through hs_parse(), as the engine gets it */
		n = snprintf(req, sizeof(req),
			     REQ "Sec-WebSocket-Extensions: %s\r\n\r\n", c->hdr);
		if (hs_parse(&r, (const uint8_t *)req, (size_t)n, NULL) != n ||
		    hs_check_upgrade(&r) != 0)
			T_FAIL("%s: the handshake changed", c->name);
		if (r.deflate.n != c->n || r.deflate.declined != c->declined ||
		    deflate_accept(&r.deflate, 15) != c->at15 ||
		    deflate_accept(&r.deflate, 10) != c->at10)
			T_FAIL("%s: n %u declined %u accept %d/%d, want %u %u "
			       "%d/%d", c->name, r.deflate.n, r.deflate.declined,
			       deflate_accept(&r.deflate, 15),
			       deflate_accept(&r.deflate, 10), c->n,
			       c->declined, c->at15, c->at10);
	}

	/* no header: nothing offered, and nothing else differs */
	n = snprintf(req, sizeof(req), REQ "\r\n");
	T_CHECK(hs_parse(&r, (const uint8_t *)req, (size_t)n, NULL) == n);
	T_CHECK(r.deflate.n == 0 && r.deflate.declined == 0 &&
		!r.ws_extensions.p);
	T_CHECK(deflate_accept(&r.deflate, 15) == -ENOENT);
	T_CHECK(deflate_accept(&r.deflate, 8) == -EINVAL);
	T_CHECK(deflate_accept(&r.deflate, 16) == -EINVAL);

	/* two lines are one list; ws_extensions keeps the first */
	n = snprintf(req, sizeof(req), REQ "Sec-WebSocket-Extensions: x-foo\r\n"
		     "Sec-WebSocket-Extensions: permessage-deflate; "
		     "server_max_window_bits=11\r\n\r\n");
	T_CHECK(hs_parse(&r, (const uint8_t *)req, (size_t)n, NULL) == n);
	T_CHECK(r.ws_extensions.len == 5 && r.deflate.n == 1 &&
		r.deflate.smax[0] == 11);
	T_CHECK(deflate_accept(&r.deflate, 11) == 11);

	/* Safari 15.0-15.3 keeps its context whatever it agreed to */
	for (i = 0; i < sizeof(uas) / sizeof(uas[0]); i++) {
		n = snprintf(req, sizeof(req), REQ "User-Agent: %s\r\n"
			     "Sec-WebSocket-Extensions: permessage-deflate\r\n"
			     "\r\n", uas[i].ua);
		T_CHECK(hs_parse(&r, (const uint8_t *)req, (size_t)n, NULL) == n);
		if (r.deflate.broken != uas[i].broken ||
		    deflate_accept(&r.deflate, 15) != (uas[i].broken ? -ENOENT : 0))
			T_FAIL("user agent %zu: broken %u", i, r.deflate.broken);
	}

	/* offers past DEFLATE_MAX_OFFERS are dropped, not overflowed */
	memset(&r.deflate, 0, sizeof(r.deflate));
	for (i = 0; i < DEFLATE_MAX_OFFERS + 3; i++)
		hs_deflate_offers(&r.deflate, nine, strlen(nine));
	T_CHECK(r.deflate.n == DEFLATE_MAX_OFFERS);
	T_CHECK(deflate_accept(&r.deflate, 9) == 9);
	T_CHECK(deflate_accept(&r.deflate, 10) == -ENOENT);
	return 0;
}

static int test_answer(void)
{
	static const char plain[] = "Sec-WebSocket-Extensions: "
		"permessage-deflate; server_no_context_takeover; "
		"client_no_context_takeover\r\n";
	static const char key_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
		"Upgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
	struct hs_str key = { "dGhlIHNhbXBsZSBub25jZQ==", 24 };
	char out[DEFLATE_ANSWER_MAX], resp[512], want[512];
	ssize_t n;

	n = deflate_write_answer(out, sizeof(out), 0);
	T_CHECK(n == (ssize_t)strlen(plain) && !strcmp(out, plain));
	n = deflate_write_answer(out, sizeof(out), 10);
	T_CHECK(n > 0 && (size_t)n < sizeof(out));
	T_CHECK(strstr(out, "client_no_context_takeover; "
			    "server_max_window_bits=10\r\n"));
	n = deflate_write_answer(out, sizeof(out), 15);
	T_CHECK(n > 0 && strstr(out, "server_max_window_bits=15\r\n"));
	T_CHECK(deflate_write_answer(out, 20, 0) == -ENOSPC);
	T_CHECK(deflate_write_answer(out, sizeof(out), 7) == -EINVAL);
	T_CHECK(deflate_write_answer(out, sizeof(out), 16) == -EINVAL);

	/* the 101 without extensions is byte for byte what it was */
	snprintf(want, sizeof(want), "%s\r\n", key_101);
	n = hs_write_101(resp, sizeof(resp), &key);
	T_CHECK(n == (ssize_t)strlen(want) && !strcmp(resp, want));
	snprintf(want, sizeof(want), "%s%s\r\n", key_101, plain);
	deflate_write_answer(out, sizeof(out), 0);
	n = hs_write_101_ext(resp, sizeof(resp), &key, out);
	T_CHECK(n == (ssize_t)strlen(want) && !strcmp(resp, want));
	T_CHECK(hs_write_101_ext(resp, 100, &key, out) == -ENOSPC);
	return 0;
}

/* A masked client frame header for @b0 and a short @len, key 0. */
static size_t frame(uint8_t *out, uint8_t b0, uint8_t len)
{
	out[0] = b0;
	out[1] = 0x80 | len;
	memset(out + 2, 0, 4);
	return 6;
}

static int test_ws_rsv1(void)
{
	/* 7.2.3.1's fragmented "Hello": RSV1 on the first frame only */
	static const uint8_t p1[] = { 0xf2, 0x48, 0xcd };
	static const uint8_t p2[] = { 0xc9, 0xc9, 0x07, 0x00 };
	struct deflate_io io;
	struct ws_msg m = { 0 };
	struct ws_frame f;
	uint8_t b[16], out[8];
	unsigned op;

	frame(b, 0xc1, 7);	/* FIN RSV1 TEXT */
	T_CHECK(ws_parse_ext(&f, b, 6, 100, WS_EXT_DEFLATE) == 6 && f.rsv1);
	T_CHECK(ws_parse_ext(&f, b, 6, 100, 0) == -EPROTO);
	T_CHECK(ws_parse(&f, b, 1, 100) == -EPROTO);
	frame(b, 0x81, 7);
	T_CHECK(ws_parse_ext(&f, b, 6, 100, WS_EXT_DEFLATE) == 6 && !f.rsv1);
	T_CHECK(ws_parse(&f, b, 6, 100) == 6 && !f.rsv1);
	T_CHECK(ws_close_code(-EPROTO) == WS_CLOSE_PROTOCOL);

	/* RSV1 on control and CONT frames, RSV2 and RSV3: 1002 at byte 0 */
	for (op = 0; op < 16; op++) {
		int data = op == WS_OP_TEXT || op == WS_OP_BINARY;
		uint8_t b0 = (uint8_t)(0x80 | op);

		if (op != WS_OP_CONT && !data && !ws_is_control((uint8_t)op))
			continue;	/* reserved opcodes fail anyway */
		if (op > WS_OP_PONG)
			continue;
		b[0] = b0 | WS_RSV1;
		T_CHECK((ws_parse_ext(&f, b, 1, 100, WS_EXT_DEFLATE) ==
			 -EAGAIN) == data);
		b[0] = b0 | 0x20;
		T_CHECK(ws_parse_ext(&f, b, 1, 100, WS_EXT_DEFLATE) == -EPROTO);
		b[0] = b0 | 0x10;
		T_CHECK(ws_parse_ext(&f, b, 1, 100, WS_EXT_DEFLATE) == -EPROTO);
		b[0] = b0 | 0x60;
		T_CHECK(ws_parse_ext(&f, b, 1, 100, WS_EXT_DEFLATE) == -EPROTO);
	}

	/* the fragmented message, frame by frame, inflated in pieces */
	deflate_rx_begin(rx, 5);
	io = (struct deflate_io){ p1, sizeof(p1), out, sizeof(out) };
	frame(b, 0x41, sizeof(p1));
	T_CHECK(ws_parse_ext(&f, b, 6, 100, WS_EXT_DEFLATE) == 6);
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0 && m.deflate);
	T_CHECK(deflate_inflate(rx, &io, f.fin) == 0);
	frame(b, 0x80, sizeof(p2));
	T_CHECK(ws_parse_ext(&f, b, 6, 100, WS_EXT_DEFLATE) == 6);
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0 && m.deflate && m.len == 7);
	io.in = p2;
	io.in_len = sizeof(p2);
	T_CHECK(deflate_inflate(rx, &io, f.fin) == 1);
	T_CHECK(io.out - out == 5 && !memcmp(out, "Hello", 5));
	ws_msg_end(&m);
	T_CHECK(!m.deflate);

	/* a continuation claiming RSV1 is refused by the sequencer too */
	frame(b, 0x41, 3);
	T_CHECK(ws_parse_ext(&f, b, 6, 100, WS_EXT_DEFLATE) == 6);
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0);
	f.opcode = WS_OP_CONT;
	f.rsv1 = 1;
	T_CHECK(ws_msg_frame(&m, &f, 100) == -EPROTO);
	return 0;
}

int main(void)
{
	int ret;

	tx = deflate_tx_new(6, 15);
	rx = deflate_rx_new();
	if (!tx || !rx)
		return T_EXIT_FAIL;
	if (deflate_tx_new(0, 15) || deflate_tx_new(10, 15) ||
	    deflate_tx_new(6, 8) || deflate_tx_new(6, 16)) {
		fprintf(stderr, "deflate_tx_new took a bad argument\n");
		return T_EXIT_FAIL;
	}
	ret = test_rfc_vectors() || test_no_context_takeover() ||
	      test_round_trips() || test_bomb() || test_bad_data() ||
	      test_negotiation() || test_answer() || test_ws_rsv1();
	deflate_tx_free(tx);
	deflate_rx_free(rx);
	deflate_tx_free(NULL);
	deflate_rx_free(NULL);
	return ret ? T_EXIT_FAIL : T_EXIT_PASS;
}
