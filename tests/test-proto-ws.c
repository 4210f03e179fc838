/* SPDX-License-Identifier: MIT */
/*
 * Description: ws_parse() on every length encoding and every rule of RFC 6455
 * section 5, each frame fed as every truncated prefix (exact-size heap
 * copies, so ASan sees any read past len) and one byte at a time; unmasking
 * in pieces; message sequencing; close payloads; UTF-8 across pieces, split
 * at every byte, against simdjson on every short string of edge bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "json.h"
#include "ws.h"

static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
static int nframes;

/*
 * Builds a client frame header: byte 0 as given, the mask bit when @masked,
 * @len in @enc extra bytes (0: the 7-bit field, 2 or 8), then the key.
 */
static size_t hdr(uint8_t *out, uint8_t b0, int masked, int enc, uint64_t len)
{
	size_t n = 2;
	int i;

	out[0] = b0;
	out[1] = masked ? 0x80 : 0;
	if (enc == 0) {
		out[1] |= (uint8_t)len;
	} else {
		out[1] |= enc == 2 ? 126 : 127;
		for (i = enc - 1; i >= 0; i--)
			out[n++] = (uint8_t)(len >> (8 * i));
	}
	if (masked) {
		memcpy(out + n, key, 4);
		n += 4;
	}
	return n;
}

struct ws_ctx {
	struct ws_frame *f;
	uint64_t max;
};

static ssize_t ws_fn(void *ctx, const uint8_t *p, size_t n)
{
	struct ws_ctx *c = ctx;

	return ws_parse(c->f, p, n, c->max);
}

/*
 * ws_parse() on @in fed in every way t_check_prefixes() knows: a valid
 * header is -EAGAIN until complete; an error shows as -EAGAIN or that
 * error, first at @at bytes when @at is not 0.
 */
static int check_frame(const char *name, const uint8_t *in, size_t len,
		       uint64_t max, ssize_t want, size_t at,
		       struct ws_frame *f)
{
	struct ws_ctx c = { f, max };

	nframes++;
	if (t_check_prefixes(name, "header", in, len, want, at, ws_fn, &c))
		return 1;
	return ws_parse(f, in, len, max) != want;
}

static int test_lengths(void)
{
	static const struct {
		uint64_t len;
		int enc;
	} lens[] = {
		{ 0, 0 }, { 1, 0 }, { 125, 0 }, { 126, 2 }, { 127, 2 },
		{ 65535, 2 }, { 65536, 8 }, { 1ull << 40, 8 },
		{ (1ull << 63) - 1, 8 },
	};
	struct ws_frame f;
	uint8_t b[WS_MAX_HDR];
	size_t i, n;
	char name[64];

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		n = hdr(b, 0x82, 1, lens[i].enc, lens[i].len);
		snprintf(name, sizeof(name), "len %llu",
			 (unsigned long long)lens[i].len);
		if (check_frame(name, b, n, UINT64_MAX, (ssize_t)n, 0, &f))
			return 1;
		T_CHECK(f.len == lens[i].len && f.hdr_len == n);
		T_CHECK(f.opcode == WS_OP_BINARY && f.fin == 1);
		T_CHECK(!memcmp(f.key, key, 4));
		/* the payload limit is inclusive */
		T_CHECK(ws_parse(&f, b, n, lens[i].len) == (ssize_t)n);
		if (lens[i].len &&
		    check_frame(name, b, n, lens[i].len - 1, -EMSGSIZE,
				2 + (size_t)lens[i].enc, &f))
			return 1;
	}

	n = hdr(b, 0x01, 1, 0, 3);
	if (check_frame("text !fin", b, n, 100, (ssize_t)n, 0, &f))
		return 1;
	T_CHECK(f.opcode == WS_OP_TEXT && f.fin == 0 && f.len == 3);
	n = hdr(b, 0x80, 1, 0, 3);
	if (check_frame("cont fin", b, n, 100, (ssize_t)n, 0, &f))
		return 1;
	T_CHECK(f.opcode == WS_OP_CONT && f.fin == 1);
	n = hdr(b, 0x89, 1, 0, 125);
	if (check_frame("ping 125", b, n, 100, -EMSGSIZE, 2, &f))
		return 1;
	if (check_frame("ping 125", b, n, 125, (ssize_t)n, 0, &f))
		return 1;
	T_CHECK(f.opcode == WS_OP_PING && f.len == 125);
	return 0;
}

static int test_bad_frames(void)
{
	static const uint8_t bad_ops[] = { 3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe,
					   0xf };
	struct ws_frame f;
	uint8_t b[WS_MAX_HDR];
	char name[32];
	size_t i, n;

	n = hdr(b, 0x81, 0, 0, 5);
	if (check_frame("unmasked", b, n, 100, -EPROTO, 2, &f))
		return 1;
	n = hdr(b, 0x82, 0, 8, 70000);
	if (check_frame("unmasked 64", b, n, 100, -EPROTO, 2, &f))
		return 1;
	for (i = 0; i < 3; i++) {
		n = hdr(b, (uint8_t)(0x81 | (0x40 >> i)), 1, 0, 5);
		snprintf(name, sizeof(name), "rsv%zu", i + 1);
		if (check_frame(name, b, n, 100, -EPROTO, 1, &f))
			return 1;
	}
	for (i = 0; i < sizeof(bad_ops); i++) {
		n = hdr(b, (uint8_t)(0x80 | bad_ops[i]), 1, 0, 5);
		snprintf(name, sizeof(name), "opcode %x", bad_ops[i]);
		if (check_frame(name, b, n, 100, -EPROTO, 1, &f))
			return 1;
	}
	n = hdr(b, 0x09, 1, 0, 5);
	if (check_frame("ping !fin", b, n, 100, -EPROTO, 1, &f))
		return 1;
	n = hdr(b, 0x08, 1, 0, 0);
	if (check_frame("close !fin", b, n, 100, -EPROTO, 1, &f))
		return 1;
	n = hdr(b, 0x88, 1, 2, 126);
	if (check_frame("close 126", b, n, 1000, -EPROTO, 2, &f))
		return 1;
	n = hdr(b, 0x8a, 1, 8, 70000);
	if (check_frame("pong 64", b, n, UINT64_MAX, -EPROTO, 2, &f))
		return 1;

	/* lengths not in their shortest encoding */
	n = hdr(b, 0x82, 1, 2, 125);
	if (check_frame("125 in 16", b, n, 1000, -EPROTO, 4, &f))
		return 1;
	n = hdr(b, 0x82, 1, 2, 0);
	if (check_frame("0 in 16", b, n, 1000, -EPROTO, 4, &f))
		return 1;
	n = hdr(b, 0x82, 1, 8, 65535);
	if (check_frame("65535 in 64", b, n, UINT64_MAX, -EPROTO, 8, &f))
		return 1;
	n = hdr(b, 0x82, 1, 8, 5);
	if (check_frame("5 in 64", b, n, UINT64_MAX, -EPROTO, 8, &f))
		return 1;
	n = hdr(b, 0x82, 1, 8, 1ull << 63);
	if (check_frame("64-bit msb", b, n, UINT64_MAX, -EPROTO, 3, &f))
		return 1;
	n = hdr(b, 0x82, 1, 8, UINT64_MAX);
	if (check_frame("64-bit max", b, n, UINT64_MAX, -EPROTO, 3, &f))
		return 1;
	return 0;
}

static int test_write_header(void)
{
	static const uint64_t lens[] = { 0, 125, 126, 65535, 65536,
					 (1ull << 63) - 1 };
	uint8_t out[WS_MAX_SERVER_HDR], in[WS_MAX_HDR];
	struct ws_frame f;
	size_t i, n, want;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		n = ws_write_header(out, WS_OP_TEXT, i & 1, lens[i]);
		want = lens[i] < 126 ? 2 : lens[i] <= 0xffff ? 4 : 10;
		T_CHECK(n == want);
		T_CHECK(!(out[1] & 0x80));
		T_CHECK(out[0] == ((i & 1) ? 0x81 : 0x01));
		/* masked by a client, the same header must decode the same */
		memcpy(in, out, n);
		in[1] |= 0x80;
		memcpy(in + n, key, 4);
		T_CHECK(ws_parse(&f, in, n + 4, UINT64_MAX) == (ssize_t)(n + 4));
		T_CHECK(f.len == lens[i] && f.fin == (i & 1));
	}
	n = ws_write_header(out, WS_OP_BINARY, true, 0x0102030405060708ull);
	T_CHECK(n == 10 && out[1] == 127 && out[2] == 1 && out[9] == 8);
	n = ws_write_header(out, WS_OP_PONG, true, 300);
	T_CHECK(n == 4 && out[0] == 0x8a && out[2] == 1 && out[3] == 44);
	return 0;
}

static int test_write_close(void)
{
	uint8_t out[2 + WS_MAX_CONTROL];
	char reason[200];
	uint16_t code;
	size_t n;

	n = ws_write_close(out, 1000, "bye");
	T_CHECK(n == 7 && out[0] == 0x88 && out[1] == 5);
	T_CHECK(out[2] == 0x03 && out[3] == 0xe8 && !memcmp(out + 4, "bye", 3));
	T_CHECK(ws_close_parse(out + 2, n - 2, &code) == 0 && code == 1000);

	n = ws_write_close(out, 1001, NULL);
	T_CHECK(n == 4 && out[1] == 2 && out[3] == 0xe9);
	n = ws_write_close(out, 0, "ignored without a code");
	T_CHECK(n == 2 && out[0] == 0x88 && out[1] == 0);

	memset(reason, 'x', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = '\0';
	n = ws_write_close(out, 1009, reason);
	T_CHECK(n == 2 + WS_MAX_CONTROL && out[1] == WS_MAX_CONTROL);

	/* a 2-byte code point straddling byte 123 is dropped whole */
	reason[122] = (char)0xce;
	reason[123] = (char)0xba;
	n = ws_write_close(out, 1009, reason);
	T_CHECK(n == 2 + 2 + 122 && out[1] == 124);
	T_CHECK(ws_close_parse(out + 2, n - 2, &code) == 0 && code == 1009);
	return 0;
}

static void unmask_ref(uint8_t *p, size_t n, uint64_t off)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] ^= key[(off + i) % 4];
}

static int test_unmask(void)
{
	uint8_t src[80], ref[80], got[80];
	size_t n, i, j;
	uint64_t off;

	for (i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 151 + 7);
	for (n = 0; n <= sizeof(src); n++) {
		for (off = 0; off < 9; off++) {
			memcpy(ref, src, n);
			unmask_ref(ref, n, off);
			memcpy(got, src, n);
			ws_unmask(got, n, key, off);
			if (memcmp(got, ref, n))
				T_FAIL("unmask n %zu off %llu", n,
				       (unsigned long long)off);
		}
	}

	/* in two and three pieces at every split point */
	n = 40;
	memcpy(ref, src, n);
	unmask_ref(ref, n, 0);
	for (i = 0; i <= n; i++) {
		for (j = i; j <= n; j++) {
			memcpy(got, src, n);
			ws_unmask(got, i, key, 0);
			ws_unmask(got + i, j - i, key, i);
			ws_unmask(got + j, n - j, key, j);
			if (memcmp(got, ref, n))
				T_FAIL("unmask pieces at %zu, %zu", i, j);
		}
	}
	/* a big offset keeps its phase */
	memcpy(got, src, 20);
	ws_unmask(got, 20, key, (1ull << 40) + 3);
	memcpy(ref, src, 20);
	unmask_ref(ref, 20, 3);
	T_CHECK(!memcmp(got, ref, 20));
	return 0;
}

static int test_msg(void)
{
	struct ws_msg m;
	struct ws_frame f = { 0 };

	memset(&m, 0, sizeof(m));
	f.opcode = WS_OP_CONT;
	f.len = 1;
	T_CHECK(ws_msg_frame(&m, &f, 100) == -EPROTO);

	/* TEXT, PING inside, CONT, TEXT refused, CONT fin */
	f.opcode = WS_OP_TEXT;
	f.fin = 0;
	f.len = 60;
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0);
	T_CHECK(m.opcode == WS_OP_TEXT && m.len == 60);
	f.opcode = WS_OP_PING;
	f.fin = 1;
	f.len = 125;
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0);
	f.opcode = WS_OP_PONG;
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0);
	T_CHECK(m.opcode == WS_OP_TEXT && m.len == 60);
	f.opcode = WS_OP_CONT;
	f.fin = 0;
	f.len = 30;
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0);
	f.opcode = WS_OP_TEXT;
	T_CHECK(ws_msg_frame(&m, &f, 100) == -EPROTO);
	f.opcode = WS_OP_BINARY;
	T_CHECK(ws_msg_frame(&m, &f, 100) == -EPROTO);
	f.opcode = WS_OP_CONT;
	f.fin = 1;
	f.len = 10;
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0 && m.len == 100);
	ws_msg_end(&m);
	T_CHECK(m.opcode == 0 && m.len == 0 && m.utf8.ncarry == 0);
	f.opcode = WS_OP_CONT;
	T_CHECK(ws_msg_frame(&m, &f, 100) == -EPROTO);

	/* the limit counts the whole message, across fragments */
	f.opcode = WS_OP_BINARY;
	f.fin = 0;
	f.len = 60;
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0);
	f.opcode = WS_OP_CONT;
	f.len = 40;
	T_CHECK(ws_msg_frame(&m, &f, 100) == 0);
	f.len = 1;
	T_CHECK(ws_msg_frame(&m, &f, 100) == -EMSGSIZE);
	ws_msg_end(&m);
	f.opcode = WS_OP_TEXT;
	f.fin = 1;
	f.len = 101;
	T_CHECK(ws_msg_frame(&m, &f, 100) == -EMSGSIZE);
	ws_msg_end(&m);

	/* no wrap-around near UINT64_MAX */
	f.opcode = WS_OP_BINARY;
	f.fin = 0;
	f.len = UINT64_MAX - 10;
	T_CHECK(ws_msg_frame(&m, &f, UINT64_MAX - 5) == 0);
	f.opcode = WS_OP_CONT;
	f.len = 20;
	T_CHECK(ws_msg_frame(&m, &f, UINT64_MAX - 5) == -EMSGSIZE);

	T_CHECK(ws_close_code(-EPROTO) == WS_CLOSE_PROTOCOL);
	T_CHECK(ws_close_code(-EILSEQ) == WS_CLOSE_BAD_DATA);
	T_CHECK(ws_close_code(-EMSGSIZE) == WS_CLOSE_TOO_BIG);
	return 0;
}

static int test_close(void)
{
	static const uint16_t bad[] = { 0, 1, 999, 1004, 1005, 1006, 1015,
					1016, 1100, 2000, 2999, 5000, 65535 };
	static const uint16_t good[] = { 1000, 1001, 1002, 1003, 1007, 1008,
					 1009, 1010, 1011, 1012, 1013, 1014,
					 3000, 3999, 4000, 4999 };
	static const char *bad_reasons[] = { "\xff", "\xed\xa0\x80", "ok\xce",
					     "\xc0\xaf", "\x80" };
	uint8_t p[2 + WS_MAX_CONTROL + 1];
	uint16_t code;
	size_t i, n;

	T_CHECK(ws_close_parse(p, 0, &code) == 0 && code == WS_CLOSE_NO_STATUS);
	p[0] = 0x03;
	T_CHECK(ws_close_parse(p, 1, &code) == -EPROTO);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p[0] = (uint8_t)(bad[i] >> 8);
		p[1] = (uint8_t)bad[i];
		if (ws_close_parse(p, 2, &code) != -EPROTO)
			T_FAIL("close code %u accepted", bad[i]);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		p[0] = (uint8_t)(good[i] >> 8);
		p[1] = (uint8_t)good[i];
		if (ws_close_parse(p, 2, &code) != 0 || code != good[i])
			T_FAIL("close code %u refused", good[i]);
	}
	p[0] = 0x03;
	p[1] = 0xe8;
	memcpy(p + 2, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
	T_CHECK(ws_close_parse(p, 13, &code) == 0 && code == 1000);
	for (i = 0; i < sizeof(bad_reasons) / sizeof(bad_reasons[0]); i++) {
		n = strlen(bad_reasons[i]);
		memcpy(p + 2, bad_reasons[i], n);
		if (ws_close_parse(p, 2 + n, &code) != -EPROTO)
			T_FAIL("close reason %zu accepted", i);
	}
	memset(p + 2, 'x', WS_MAX_CONTROL - 1);
	T_CHECK(ws_close_parse(p, WS_MAX_CONTROL, &code) == 0);
	T_CHECK(ws_close_parse(p, WS_MAX_CONTROL + 1, &code) == -EPROTO);
	return 0;
}

struct u8case {
	const char *s;
	size_t len;
	size_t bad;	/* shortest failing prefix with fin=false; 0: valid */
};

#define FIN_ONLY	((size_t)-1)	/* fails only once fin is set */
#define U(lit, bad)	{ lit, sizeof(lit) - 1, bad }

static const struct u8case u8cases[] = {
	U("", 0), U("hello", 0), U("\x00", 0),
	U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0),	/* κόσμε */
	U("\xc2\x80", 0), U("\xdf\xbf", 0), U("\xe0\xa0\x80", 0),
	U("\xed\x9f\xbf", 0), U("\xee\x80\x80", 0), U("\xef\xbf\xbf", 0),
	U("\xf0\x90\x80\x80", 0), U("\xf0\x9f\x98\x80", 0),
	U("\xf4\x8f\xbf\xbf", 0),

	U("\x80", 1), U("\xbf", 1), U("a\x80", 2),
	U("\xc0\xaf", 1), U("\xc1\xbf", 1),			/* overlong */
	U("\xe0\x80\xaf", 2), U("\xe0\x9f\xbf", 2),
	U("\xf0\x80\x80\xaf", 2), U("\xf0\x8f\xbf\xbf", 2),
	U("\xed\xa0\x80", 2), U("\xed\xbf\xbf", 2),		/* surrogates */
	U("\xf4\x90\x80\x80", 2), U("\xf5\x80\x80\x80", 1),	/* > U+10FFFF */
	U("\xf8\x88\x80\x80\x80", 1), U("\xfe", 1), U("\xff", 1),
	U("\xc3\x28", 2), U("\xe2\x82\x28", 3), U("\xe2\x82\xac\x80", 4),
	U("ab\xc3\xa9\xa9", 5),
	U("a\xce", FIN_ONLY), U("\xe2\x82", FIN_ONLY),		/* truncated */
	U("\xf0\x9f\x98", FIN_ONLY),
	/* Autobahn 6.4.1 and 6.4.2: fail at the byte, not at fin */
	U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"
	  "\x65\x64\x69\x74\x65\x64", 13),
	U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
	  "edited", 13),
};

/*
 * Feeds @c->s in pieces ending at @cut[0..@ncut) and then at len; the first
 * failing piece must be the one that first reaches c->bad bytes.
 */
static int feed_pieces(const struct u8case *c, const size_t *cut, size_t ncut)
{
	struct ws_utf8 u = { { 0 }, 0 };
	size_t i, start = 0, end;
	uint8_t *piece;
	int ret, want;
	bool fin;

	for (i = 0; i <= ncut; i++) {
		end = i < ncut ? cut[i] : c->len;
		fin = i == ncut;
		/* an exact-size copy, so a read past the piece is caught */
		piece = malloc(end - start + 1);
		memcpy(piece, c->s + start, end - start);
		ret = ws_utf8_feed(&u, piece, end - start, fin);
		free(piece);
		if (!c->bad)
			want = 0;
		else if (c->bad == FIN_ONLY)
			want = fin ? -EILSEQ : 0;
		else
			want = end >= c->bad ? -EILSEQ : 0;
		if (ret != want)
			T_FAIL("utf8 case \"%.*s\"... piece [%zu, %zu) fin %d: "
			       "got %d, want %d", 4, c->s, start, end, fin,
			       ret, want);
		if (ret)
			return 0;
		start = end;
	}
	return 0;
}

static int test_utf8_cases(void)
{
	const struct u8case *c;
	size_t i, j, k, cut[64];

	for (k = 0; k < sizeof(u8cases) / sizeof(u8cases[0]); k++) {
		c = &u8cases[k];
		if (json_utf8_valid(c->s, c->len) != !c->bad)
			T_FAIL("utf8 case %zu: simdjson disagrees", k);
		if (feed_pieces(c, NULL, 0))
			return 1;
		for (i = 0; i <= c->len; i++) {
			cut[0] = i;
			if (feed_pieces(c, cut, 1))
				return 1;
			for (j = i; j <= c->len; j++) {
				cut[1] = j;
				if (feed_pieces(c, cut, 2))
					return 1;
			}
		}
		/* one byte at a time, and a last empty piece with fin */
		for (i = 0; i < c->len; i++)
			cut[i] = i + 1;
		if (feed_pieces(c, cut, c->len))
			return 1;
	}
	return 0;
}

static int test_utf8_early(void)
{
	static const uint8_t a[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
				   "\xce\xb5\xf4";
	struct ws_utf8 u = { { 0 }, 0 };

	/* the example from the brief, piece by piece */
	T_CHECK(ws_utf8_feed(&u, a, sizeof(a) - 1, false) == 0);
	T_CHECK(u.ncarry == 1);
	T_CHECK(ws_utf8_feed(&u, (const uint8_t *)"\x90", 1, false) == -EILSEQ);

	/* an incomplete tail is an error when fin comes with no bytes */
	memset(&u, 0, sizeof(u));
	T_CHECK(ws_utf8_feed(&u, (const uint8_t *)"\xe2\x82", 2, false) == 0);
	T_CHECK(ws_utf8_feed(&u, NULL, 0, false) == 0);
	T_CHECK(ws_utf8_feed(&u, NULL, 0, true) == -EILSEQ);
	memset(&u, 0, sizeof(u));
	T_CHECK(ws_utf8_feed(&u, (const uint8_t *)"\xe2\x82", 2, false) == 0);
	T_CHECK(ws_utf8_feed(&u, (const uint8_t *)"\xac", 1, true) == 0);
	T_CHECK(u.ncarry == 0);
	return 0;
}

/* A long text, so simdjson's vector path runs, split at every byte. */
static int test_utf8_long(void)
{
	static const char w[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 "
				"\xf0\x9f\x98\x80 ascii ";
	size_t wl = sizeof(w) - 1, n = 0, i;
	struct u8case c;
	char s[400];

	while (n + wl <= 300) {
		memcpy(s + n, w, wl);
		n += wl;
	}
	c.s = s;
	c.len = n;
	c.bad = 0;
	for (i = 0; i <= n; i++)
		if (feed_pieces(&c, &i, 1))
			return 1;
	/* a surrogate at the end fails at its second byte, wherever the cut */
	memcpy(s + n, "\xed\xa0\x80", 3);
	c.len = n + 3;
	c.bad = n + 2;
	for (i = 0; i <= c.len; i++)
		if (feed_pieces(&c, &i, 1))
			return 1;
	return 0;
}

/*
 * Every string of 1-4 bytes over the bytes where UTF-8 rules change: the
 * verdict whole, in two pieces at every cut and byte by byte must be
 * simdjson's verdict on the whole string.
 */
static int test_utf8_exhaustive(void)
{
	static const uint8_t edge[] = {
		0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
		0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0,
		0xf1, 0xf3, 0xf4, 0xf5, 0xff,
	};
	const size_t ne = sizeof(edge);
	struct ws_utf8 u;
	size_t len, idx, x, i, cut;
	uint8_t s[4] = { 0 };
	bool ok, got;
	int ret;

	for (len = 1; len <= 4; len++) {
		size_t total = 1;

		for (i = 0; i < len; i++)
			total *= ne;
		for (idx = 0; idx < total; idx++) {
			for (x = idx, i = 0; i < len; i++, x /= ne)
				s[i] = edge[x % ne];
			ok = json_utf8_valid(s, len);
			for (cut = 0; cut <= len; cut++) {
				memset(&u, 0, sizeof(u));
				ret = ws_utf8_feed(&u, s, cut, cut == len);
				if (!ret && cut < len)
					ret = ws_utf8_feed(&u, s + cut,
							   len - cut, true);
				if ((ret == 0) != ok)
					T_FAIL("%02x %02x %02x %02x (%zu) cut %zu: "
					       "got %d, simdjson %d", s[0], s[1],
					       s[2], s[3], len, cut, ret, ok);
			}
			memset(&u, 0, sizeof(u));
			got = true;
			for (i = 0; i < len && got; i++)
				got = !ws_utf8_feed(&u, s + i, 1, i == len - 1);
			if (got != ok)
				T_FAIL("bytewise %02x %02x %02x %02x (%zu)",
				       s[0], s[1], s[2], s[3], len);
		}
	}
	return 0;
}

int main(void)
{
	if (test_lengths() || test_bad_frames() || test_write_header() ||
	    test_write_close() || test_unmask() || test_msg() ||
	    test_close() || test_utf8_cases() || test_utf8_early() ||
	    test_utf8_long() || test_utf8_exhaustive())
		return T_EXIT_FAIL;
	printf("test-proto-ws: %d frame inputs, %zu utf8 cases: ok\n",
	       nframes, sizeof(u8cases) / sizeof(u8cases[0]));
	return T_EXIT_PASS;
}
