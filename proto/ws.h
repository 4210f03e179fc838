/* SPDX-License-Identifier: MIT */
/*
 * ws: RFC 6455 framing for the server side. A frame-header decoder, payload
 * unmasking in pieces, message sequencing (fragmentation, control frames
 * interleaved, size limit), incremental UTF-8 validation across fragments,
 * close-frame parsing, and the server frame encoder. Pure: no I/O, no
 * malloc. Errors are -errno values that ws_close_code() maps to the close
 * code the RFC asks for.
 */
#ifndef RC_PROTO_WS_H
#define RC_PROTO_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
	WS_OP_CONT	= 0x0,
	WS_OP_TEXT	= 0x1,
	WS_OP_BINARY	= 0x2,
	WS_OP_CLOSE	= 0x8,
	WS_OP_PING	= 0x9,
	WS_OP_PONG	= 0xa,
};

#define WS_MAX_HDR		14	/* 2 + 8 length + 4 mask */
#define WS_MAX_SERVER_HDR	10	/* server frames are not masked */
#define WS_MAX_CONTROL		125	/* control frame payload */
#define WS_RSV1			0x40	/* first header byte: compressed */

/* ws_parse_ext() flags: what the connection negotiated. */
#define WS_EXT_DEFLATE		(1u << 0)	/* permessage-deflate */

enum {
	WS_CLOSE_NORMAL		= 1000,
	WS_CLOSE_GOING_AWAY	= 1001,
	WS_CLOSE_PROTOCOL	= 1002,
	WS_CLOSE_UNSUPPORTED	= 1003,
	WS_CLOSE_NO_STATUS	= 1005,	/* never on the wire */
	WS_CLOSE_BAD_DATA	= 1007,
	WS_CLOSE_POLICY		= 1008,
	WS_CLOSE_TOO_BIG	= 1009,
	WS_CLOSE_INTERNAL	= 1011,
	WS_CLOSE_SERVICE_RESTART = 1012,	/* reconnect: a new process */
};

static inline bool ws_is_control(uint8_t opcode)
{
	return opcode & 0x8;
}

/* One decoded frame header. */
struct ws_frame {
	uint64_t len;		/* payload bytes */
	uint8_t key[4];		/* masking key */
	uint8_t opcode;		/* WS_OP_* */
	uint8_t fin;		/* 1 on the last frame of a message */
	uint8_t hdr_len;	/* 2..14: payload starts here */
	uint8_t rsv1;		/* 1: a compressed message starts here */
};

/*
 * Decodes the header of one client frame at @buf[0..@len). Returns the
 * header length when complete, -EAGAIN when more bytes are needed, and
 * -EPROTO for: RSV bits set (no extension is negotiated), a reserved opcode,
 * an unmasked frame, a control frame that is fragmented or longer than 125,
 * a 64-bit length with the top bit set, or a length not in its shortest
 * encoding. -EMSGSIZE when the payload alone exceeds @max_payload.
 */
ssize_t ws_parse(struct ws_frame *f, const uint8_t *buf, size_t len,
		 uint64_t max_payload);

/*
 * ws_parse() for a connection that negotiated the extensions in @ext
 * (WS_EXT_*); with @ext 0 it is ws_parse(). With WS_EXT_DEFLATE, RSV1 may
 * be set on a TEXT or BINARY frame, the first of a message, and marks the
 * message compressed (f->rsv1; RFC 7692 section 6). RSV1 on a control or
 * CONT frame, or without the extension, and RSV2 or RSV3 always, are
 * -EPROTO (close 1002), decided by the first byte.
 */
ssize_t ws_parse_ext(struct ws_frame *f, const uint8_t *buf, size_t len,
		     uint64_t max_payload, unsigned ext);

/*
 * Unmasks @n bytes at @p in place with @key; @off is the offset of @p
 * within the frame's payload, so a payload can be unmasked in pieces.
 */
void ws_unmask(uint8_t *p, size_t n, const uint8_t key[4], uint64_t off);

/*
 * Writes an unmasked server frame header for a payload of @len into @out
 * (WS_MAX_SERVER_HDR bytes are enough). Returns the header length: 2, 4 or
 * 10, the shortest encoding. For a compressed message, OR WS_RSV1 into
 * @out[0] of its first frame.
 */
size_t ws_write_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len);

/*
 * Writes a whole close frame: code (omitted when 0) and @reason (at most
 * 123 bytes, truncated), into @out, which needs 2 + 125 bytes. Returns the
 * frame length.
 */
size_t ws_write_close(uint8_t *out, uint16_t code, const char *reason);

/* Incremental UTF-8 state: the bytes of a code point split across pieces. */
struct ws_utf8 {
	uint8_t carry[4];
	uint8_t ncarry;
};

/*
 * Validates the next @n bytes of a text message. @fin says these are its
 * last bytes. Fails as early as the bytes allow: a code point that no
 * continuation could make valid fails at once, even split across pieces.
 * Returns 0, or -EILSEQ (close 1007). Validation itself is simdjson's.
 */
int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *p, size_t n, bool fin);

/*
 * The data message in progress on one connection. Zero it to start. For a
 * compressed message, len counts compressed bytes, and UTF-8 is checked on
 * the inflated bytes (deflate_inflate()), never on the payload.
 */
struct ws_msg {
	uint64_t len;		/* payload bytes of the message so far */
	uint8_t opcode;		/* TEXT or BINARY while a message is open */
	uint8_t deflate;	/* its first frame had RSV1: inflate it */
	struct ws_utf8 utf8;
};

/*
 * Admits frame @f into the message sequence. Control frames are always
 * admitted (they may interleave). A data frame must continue the open
 * message (CONT) or start a new one (TEXT/BINARY) when none is open, else
 * -EPROTO, as is RSV1 on a frame that does not start a message. The
 * message's total payload may not exceed @max_message (-EMSGSIZE); for a
 * compressed one that bounds the compressed bytes, and the inflater bounds
 * the rest. A message's first frame sets m->deflate from f->rsv1. On
 * success the frame's length is counted, and a FIN frame leaves @m ready
 * for the next message once ws_msg_end() is called.
 */
int ws_msg_frame(struct ws_msg *m, const struct ws_frame *f,
		 uint64_t max_message);

/* Closes the message after its FIN frame's payload was handled. */
void ws_msg_end(struct ws_msg *m);

/*
 * Parses a close frame's (unmasked) payload. Sets *@code to the code, or to
 * WS_CLOSE_NO_STATUS when the payload is empty. Returns 0, or -EPROTO for a
 * 1-byte payload, a code that may not be sent (below 1000, 1004-1006, 1015,
 * 1016-2999, 5000 and up), or a reason that is not valid UTF-8.
 */
int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code);

/* The close code for a negative error from this module: 1002, 1007, 1009. */
uint16_t ws_close_code(int err);

#endif
