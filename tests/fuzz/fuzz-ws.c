/* SPDX-License-Identifier: MIT */
/*
 * fuzz-ws: a server's receive loop over the frame decoder. The first input
 * byte picks a chunk size; the rest arrives in chunks of that size, and each
 * frame's payload is unmasked and UTF-8 checked piece by piece as it
 * arrives, as the engine does with provided buffers. Close and control
 * frames are handled whole. It stops at the first error, or when the input
 * runs out. Bit 6 of the first byte says permessage-deflate was
 * negotiated, which admits RSV1 where a message starts.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "ws.h"

#define MAX_MSG		4096

static void check_header_roundtrip(const struct ws_frame *f, unsigned ext)
{
	uint8_t out[WS_MAX_HDR];
	struct ws_frame g;
	size_t n;

	/* our encoder's output, masked, must decode to the same frame */
	n = ws_write_header(out, f->opcode, f->fin, f->len);
	assert(n <= WS_MAX_SERVER_HDR && !(out[1] & 0x80));
	out[1] |= 0x80;
	if (f->rsv1)
		out[0] |= WS_RSV1;
	memcpy(out + n, f->key, 4);
	assert(ws_parse_ext(&g, out, n + 4, UINT64_MAX, ext) ==
	       (ssize_t)(n + 4));
	assert(g.len == f->len && g.opcode == f->opcode && g.fin == f->fin &&
	       g.rsv1 == f->rsv1);
	/* RSV1 only where a compressed message may start */
	assert(!f->rsv1 || ((ext & WS_EXT_DEFLATE) &&
			    (f->opcode == WS_OP_TEXT ||
			     f->opcode == WS_OP_BINARY)));
}

static int run(uint8_t *buf, size_t size, size_t chunk, unsigned ext)
{
	uint8_t text[MAX_MSG];	/* the text message so far, for a cross-check */
	struct ws_msg m;
	struct ws_frame f;
	size_t have = 0, pos = 0, got, piece;
	bool is_text = false;
	uint16_t code;
	ssize_t ret;
	int err;

	memset(&m, 0, sizeof(m));
	for (;;) {
		ret = ws_parse_ext(&f, buf + pos, have - pos, MAX_MSG, ext);
		if (ret == -EAGAIN) {
			if (have == size)
				return 0;
			have = have + chunk < size ? have + chunk : size;
			continue;
		}
		if (ret < 0)
			return (int)ret;
		check_header_roundtrip(&f, ext);
		err = ws_msg_frame(&m, &f, MAX_MSG);
		if (err)
			return err;
		pos += (size_t)ret;
		/* a compressed text's UTF-8 is the inflater's to check */
		if (f.opcode == WS_OP_TEXT)
			is_text = !m.deflate;
		else if (f.opcode == WS_OP_BINARY)
			is_text = false;
		assert(m.deflate == (m.opcode && f.rsv1) || f.opcode == WS_OP_CONT ||
		       ws_is_control(f.opcode));

		/* the payload, in whatever pieces have arrived; an empty one
		 * still runs once, since an empty FIN frame ends a message */
		got = 0;
		do {
			if (got < f.len && have == pos) {
				if (have == size)
					return 0;
				have = have + chunk < size ? have + chunk : size;
				continue;
			}
			piece = have - pos;
			if (piece > f.len - got)
				piece = (size_t)(f.len - got);
			ws_unmask(buf + pos, piece, f.key, got);
			if (!ws_is_control(f.opcode) && is_text) {
				err = ws_utf8_feed(&m.utf8, buf + pos, piece,
						   f.fin && got + piece == f.len);
				if (err)
					return err;
				memcpy(text + m.len - f.len + got, buf + pos,
				       piece);
			}
			pos += piece;
			got += piece;
		} while (got < f.len);

		if (f.opcode == WS_OP_CLOSE) {
			err = ws_close_parse(buf + pos - f.len, f.len, &code);
			if (!err)
				assert(code == WS_CLOSE_NO_STATUS ||
				       (code >= 1000 && code < 5000));
			return err ? err : 1;
		}
		if (!ws_is_control(f.opcode) && f.fin) {
			/* pieces that all passed mean the whole text is valid */
			if (is_text)
				assert(json_utf8_valid(text, m.len));
			ws_msg_end(&m);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t chunk;
	uint8_t *buf;
	int ret;

	if (!size)
		return 0;
	/* 1..64 bytes per chunk, or all at once */
	chunk = data[0] ? (size_t)(data[0] & 63) + 1 : size;
	buf = malloc(size > 1 ? size - 1 : 1);
	memcpy(buf, data + 1, size - 1);
	ret = run(buf, size - 1, chunk, data[0] & 0x40 ? WS_EXT_DEFLATE : 0);
	if (ret < 0)
		assert(ws_close_code(ret) == WS_CLOSE_PROTOCOL ||
		       ws_close_code(ret) == WS_CLOSE_BAD_DATA ||
		       ws_close_code(ret) == WS_CLOSE_TOO_BIG);
	free(buf);
	return 0;
}
