/* SPDX-License-Identifier: MIT */
/*
 * hs: the HTTP/1.1 side of ringcast. An incremental request-head parser with
 * limits, the RFC 6455 opening-handshake checks, Sec-WebSocket-Accept, and
 * writers for the few responses the engine sends. Pure: no I/O, no malloc.
 */
#ifndef RC_PROTO_HS_H
#define RC_PROTO_HS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "deflate.h"

#define HS_ACCEPT_LEN		28	/* base64 of a SHA-1 digest */
#define HS_DEF_MAX_BYTES	8192	/* request head, request line included */
#define HS_DEF_MAX_HEADERS	64

/* A byte range borrowed from the caller's buffer; not NUL-terminated. */
struct hs_str {
	const char *p;
	uint32_t len;
};

struct hs_limits {
	size_t max_bytes;	/* head bytes through the blank line */
	unsigned max_headers;	/* header fields */
};

/* Bits of hs_req.flags, set while parsing. */
#define HS_F_UPGRADE_WS		(1u << 0)	/* Upgrade lists "websocket" */
#define HS_F_CONN_UPGRADE	(1u << 1)	/* Connection lists "upgrade" */
#define HS_F_CONN_CLOSE		(1u << 2)	/* Connection lists "close" */
#define HS_F_CHUNKED		(1u << 3)	/* Transfer-Encoding present */
#define HS_F_DUP_KEY		(1u << 4)	/* Sec-WebSocket-Key seen twice */
#define HS_F_DUP_VERSION	(1u << 5)	/* Sec-WebSocket-Version twice */
#define HS_F_EXPECT_CONTINUE	(1u << 6)	/* Expect: 100-continue */
#define HS_F_EXPECT_OTHER	(1u << 7)	/* Expect: anything else (417) */

/*
 * One parsed request head. Every hs_str points into the buffer given to
 * hs_parse() and is valid while that buffer is. Absent headers have p=NULL.
 */
struct hs_req {
	struct hs_str method;
	struct hs_str path;		/* target up to '?', e.g. "/echo" */
	struct hs_str query;		/* after '?', without it; may be empty */
	int minor_version;		/* HTTP/1.x */
	unsigned nheaders;
	unsigned flags;			/* HS_F_* */
	int64_t content_length;		/* -1 when absent */
	struct hs_str host;
	struct hs_str ws_key;		/* Sec-WebSocket-Key */
	struct hs_str ws_version;	/* Sec-WebSocket-Version */
	struct hs_str ws_protocol;	/* Sec-WebSocket-Protocol */
	struct hs_str ws_extensions;	/* Sec-WebSocket-Extensions (the
					 * first line) */
	struct hs_str origin;
	struct hs_str authorization;
	struct deflate_offers deflate;	/* permessage-deflate offers, from
					 * every Extensions line, and the
					 * User-Agent's deflate_ua_broken() */
};

/*
 * Parses one request head from @buf[0..@len). The caller calls again with
 * the same buffer, grown, when more bytes arrive (as picohttpparser does).
 * Returns the head's length through the empty line (the body or the first
 * WebSocket frame starts there) when complete; -EAGAIN when more bytes are
 * needed and the limits still hold; -EMSGSIZE when the head exceeds
 * @lim->max_bytes or @lim->max_headers (answer 431); -EBADMSG when it is
 * malformed (answer 400). @r is filled only on success. Errors show at the
 * first byte that decides them: a prefix of max_bytes with no end of head
 * is already -EMSGSIZE. A NULL @lim means the HS_DEF_* limits.
 */
ssize_t hs_parse(struct hs_req *r, const uint8_t *buf, size_t len,
		 const struct hs_limits *lim);

/*
 * Adds the permessage-deflate offers in one Sec-WebSocket-Extensions value
 * @v[0..@len) to @o, as hs_parse() does for each such header line. The
 * syntax is RFC 6455 section 9.1's: comma-separated extensions, each a
 * token and ";"-separated parameters, a parameter with or without "=" and
 * a token or quoted-string value. Other extensions are ignored. An offer
 * is declined (only counted in @o->declined) when it is malformed, repeats
 * a parameter, has one RFC 7692 section 7.1 does not define for an offer,
 * or has a bad value: a value is a decimal 8..15 without leading zeros,
 * quoted or not; client_max_window_bits may be bare (Chrome sends it so),
 * server_max_window_bits may not, and the two no_context_takeover
 * parameters take none. Offers past DEFLATE_MAX_OFFERS are ignored. Never
 * fails: a bad header only declines, and the handshake goes on plain.
 */
void hs_deflate_offers(struct deflate_offers *o, const char *v, size_t len);

/*
 * Checks a parsed request against RFC 6455 section 4.2.1. Returns 0 for a
 * valid WebSocket upgrade, otherwise the HTTP status to answer:
 * 405 (method not GET), 400 (HTTP/1.0, no Host, Upgrade or Connection
 * tokens missing, Sec-WebSocket-Key missing, repeated, or not 16 bytes of
 * base64), 426 (Sec-WebSocket-Version missing, repeated or not 13).
 */
int hs_check_upgrade(const struct hs_req *r);

/*
 * Computes Sec-WebSocket-Accept for @key (SHA-1 of key + the RFC 6455 GUID,
 * base64) into @out as HS_ACCEPT_LEN chars and a NUL. Returns 0 or -EINVAL.
 */
int hs_accept_key(const struct hs_str *key, char out[HS_ACCEPT_LEN + 1]);

/*
 * Writes the 101 Switching Protocols response for @key into @out.
 * Returns its length, or -ENOSPC when @cap is too small. Like snprintf(),
 * both writers add a NUL after the response and count it in @cap.
 */
ssize_t hs_write_101(char *out, size_t cap, const struct hs_str *key);

/*
 * hs_write_101() with @extra, zero or more "Name: value\r\n" lines (such as
 * deflate_write_answer()'s) before the blank line; NULL for none.
 */
ssize_t hs_write_101_ext(char *out, size_t cap, const struct hs_str *key,
			 const char *extra);

/*
 * Writes a complete response with Content-Length into @out: status line,
 * @extra (zero or more "Name: value\r\n" lines, or NULL), Content-Type
 * @ctype (NULL for text/plain), then "Keep-Alive: timeout=@keep_s" when
 * the connection stays open for @keep_s seconds of idleness, or
 * "Connection: close" when @keep_s is 0, then @body. Returns its length,
 * or -ENOSPC.
 */
ssize_t hs_write_response(char *out, size_t cap, int status,
			  const char *extra, const char *ctype,
			  const void *body, size_t body_len, unsigned keep_s);

/* The reason phrase for @status ("Bad Request"), "Unknown" when unlisted. */
const char *hs_reason(int status);

/* The status to answer for an hs_parse() error: 431, or 400. */
int hs_error_status(int err);

/* Case-insensitive comparison of @s with NUL-terminated @lit. */
int hs_str_eq(const struct hs_str *s, const char *lit);

#endif
