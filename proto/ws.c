/* SPDX-License-Identifier: MIT */
/*
 * ws: RFC 6455 framing for the server side. The header decoder is stateless
 * and decides at the first byte that breaks a rule, so a bad frame fails on
 * a prefix. UTF-8 validity is simdjson's (json_utf8_valid); this file only
 * carries a code point cut between pieces and asks simdjson whether any
 * completion of it could still be valid, which gives the early failure
 * RFC 6455 section 8.1 asks for.
 */
#include <errno.h>
#include <string.h>

#include "json.h"
#include "ws.h"

static int reserved_opcode(uint8_t op)
{
	return (op >= 0x3 && op <= 0x7) || op >= 0xb;
}

/*
 * Whether byte 0's RSV bits are allowed: only RSV1, only with
 * permessage-deflate, only where a message starts (RFC 7692 section 6.1).
 */
static int rsv_ok(uint8_t b0, uint8_t op, unsigned ext)
{
	if (!(b0 & 0x70))
		return 1;
	return (b0 & 0x70) == WS_RSV1 && (ext & WS_EXT_DEFLATE) &&
	       (op == WS_OP_TEXT || op == WS_OP_BINARY);
}

ssize_t ws_parse(struct ws_frame *f, const uint8_t *buf, size_t len,
		 uint64_t max_payload)
{
	return ws_parse_ext(f, buf, len, max_payload, 0);
}

ssize_t ws_parse_ext(struct ws_frame *f, const uint8_t *buf, size_t len,
		     uint64_t max_payload, unsigned ext)
{
	uint8_t op, l7;
	size_t hdr, nlen, i;
	uint64_t plen;

	if (len < 1)
		return -EAGAIN;
	op = buf[0] & 0x0f;
	if (!rsv_ok(buf[0], op, ext) || reserved_opcode(op))
		return -EPROTO;
	if (ws_is_control(op) && !(buf[0] & 0x80))
		return -EPROTO;
	if (len < 2)
		return -EAGAIN;
	/* RFC 6455 section 5.1: a server must fail an unmasked client frame. */
	if (!(buf[1] & 0x80))
		return -EPROTO;
	l7 = buf[1] & 0x7f;
	if (ws_is_control(op) && l7 > WS_MAX_CONTROL)
		return -EPROTO;

	nlen = l7 == 127 ? 8 : l7 == 126 ? 2 : 0;
	if (nlen == 8) {
		/* The top bit and a non-minimal length show early. */
		if (len > 2 && (buf[2] & 0x80))
			return -EPROTO;
		if (len >= 8 && !(buf[2] | buf[3] | buf[4] | buf[5] |
				  buf[6] | buf[7]))
			return -EPROTO;
	}
	if (len < 2 + nlen)
		return -EAGAIN;
	plen = l7;
	if (nlen) {
		plen = 0;
		for (i = 0; i < nlen; i++)
			plen = plen << 8 | buf[2 + i];
		if (nlen == 2 && plen < 126)
			return -EPROTO;
	}
	if (plen > max_payload)
		return -EMSGSIZE;
	hdr = 2 + nlen + 4;
	if (len < hdr)
		return -EAGAIN;

	f->len = plen;
	memcpy(f->key, buf + 2 + nlen, 4);
	f->opcode = op;
	f->fin = buf[0] >> 7;
	f->hdr_len = (uint8_t)hdr;
	f->rsv1 = !!(buf[0] & WS_RSV1);
	return (ssize_t)hdr;
}

void ws_unmask(uint8_t *p, size_t n, const uint8_t key[4], uint64_t off)
{
	uint8_t rk[8];
	uint64_t k, w;
	size_t i = 0;
	unsigned j;

	/* Rotate the key so rk[0] applies to p[0]; 8 is a multiple of 4. */
	for (j = 0; j < 8; j++)
		rk[j] = key[(off + j) & 3];
	memcpy(&k, rk, 8);
	/* memcpy() keeps unaligned access legal; it compiles to movs. */
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		w ^= k;
		memcpy(p + i, &w, 8);
	}
	for (; i < n; i++)
		p[i] ^= rk[i & 7];
}

size_t ws_write_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len)
{
	int i;

	out[0] = (fin ? 0x80 : 0) | (opcode & 0x0f);
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

size_t ws_write_close(uint8_t *out, uint16_t code, const char *reason)
{
	size_t rlen = 0, h;

	/* A reason needs a code in front of it (RFC 6455 section 5.5.1). */
	if (code && reason) {
		rlen = strlen(reason);
		if (rlen > WS_MAX_CONTROL - 2) {
			rlen = WS_MAX_CONTROL - 2;
			/* Cut before a code point, never inside one. */
			while (rlen && ((uint8_t)reason[rlen] & 0xc0) == 0x80)
				rlen--;
		}
	}
	h = ws_write_header(out, WS_OP_CLOSE, true, code ? 2 + rlen : 0);
	if (!code)
		return h;
	out[h] = (uint8_t)(code >> 8);
	out[h + 1] = (uint8_t)code;
	if (rlen)	/* reason may be NULL: memcpy(NULL, 0) is still UB */
		memcpy(out + h + 2, reason, rlen);
	return h + 2 + rlen;
}

/*
 * The length a lead byte announces, from its high bits only: whether the
 * lead is allowed at all is left to simdjson. 0 for a continuation byte.
 */
static unsigned seq_len(uint8_t b)
{
	if (b < 0x80)
		return 1;
	if (b < 0xc0)
		return 0;
	if (b < 0xe0)
		return 2;
	if (b < 0xf0)
		return 3;
	if (b < 0xf8)
		return 4;
	return 1;	/* F8..FF: never valid; let simdjson say so */
}

/*
 * Whether the first @n bytes of a code point of @len bytes can still be
 * completed into valid UTF-8. Only the second byte has a lead-dependent
 * range (E0 A0-BF, ED 80-9F, F0 90-BF, F4 80-8F), and each such range
 * holds 0x80 or 0xBF, so padding with both covers every case.
 */
static bool completable(const uint8_t *s, unsigned n, unsigned len)
{
	uint8_t lo[4], hi[4];

	memcpy(lo, s, n);
	memcpy(hi, s, n);
	memset(lo + n, 0x80, len - n);
	memset(hi + n, 0xbf, len - n);
	return json_utf8_valid(lo, len) || json_utf8_valid(hi, len);
}

int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n, bool fin)
{
	unsigned len = 0, take, k;
	size_t tail = 0;

	if (u->ncarry) {
		len = seq_len(u->carry[0]);
		take = len - u->ncarry;
		if (take > n)
			take = (unsigned)n;
		/* @p may be NULL when @n is 0: no arithmetic on it then */
		if (take) {
			memcpy(u->carry + u->ncarry, p, take);
			u->ncarry += take;
			p += take;
			n -= take;
		}
		if (u->ncarry < len) {
			if (fin || !completable(u->carry, u->ncarry, len))
				return -EILSEQ;
			return 0;
		}
		u->ncarry = 0;
		if (!json_utf8_valid(u->carry, len))
			return -EILSEQ;
	}

	/* Find a code point cut at the end: a lead within the last 3 bytes. */
	for (k = 1; k <= 3 && k <= n; k++) {
		len = seq_len(p[n - k]);
		if (!len)
			continue;
		if (len > k)
			tail = k;
		break;
	}
	if (n > tail && !json_utf8_valid(p, n - tail))
		return -EILSEQ;
	if (tail) {
		if (fin || !completable(p + n - tail, (unsigned)tail, len))
			return -EILSEQ;
		memcpy(u->carry, p + n - tail, tail);
		u->ncarry = (uint8_t)tail;
	}
	return 0;
}

int ws_msg_frame(struct ws_msg *m, const struct ws_frame *f,
		 uint64_t max_message)
{
	if (ws_is_control(f->opcode))
		return 0;
	switch (f->opcode) {
	case WS_OP_CONT:
		/* RSV1 marks a message's first frame only (RFC 7692 6.1) */
		if (!m->opcode || f->rsv1)
			return -EPROTO;
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (m->opcode)
			return -EPROTO;
		memset(m, 0, sizeof(*m));
		m->opcode = f->opcode;
		m->deflate = f->rsv1;
		break;
	default:
		return -EPROTO;
	}
	/* Compare against the room left so the sum cannot overflow. */
	if (m->len > max_message || f->len > max_message - m->len)
		return -EMSGSIZE;
	m->len += f->len;
	return 0;
}

void ws_msg_end(struct ws_msg *m)
{
	memset(m, 0, sizeof(*m));
}

static bool close_code_ok(unsigned c)
{
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
	       (c >= 3000 && c <= 4999);
}

int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code)
{
	uint16_t c;

	if (!n) {
		*code = WS_CLOSE_NO_STATUS;
		return 0;
	}
	if (n == 1 || n > WS_MAX_CONTROL)
		return -EPROTO;
	c = (uint16_t)(p[0] << 8 | p[1]);
	if (!close_code_ok(c))
		return -EPROTO;
	if (n > 2 && !json_utf8_valid(p + 2, n - 2))
		return -EPROTO;
	*code = c;
	return 0;
}

uint16_t ws_close_code(int err)
{
	switch (err) {
	case -EILSEQ:
		return WS_CLOSE_BAD_DATA;
	case -EMSGSIZE:
		return WS_CLOSE_TOO_BIG;
	}
	return WS_CLOSE_PROTOCOL;
}
