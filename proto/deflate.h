/* SPDX-License-Identifier: MIT */
/*
 * deflate: permessage-deflate (RFC 7692) for a server that compresses each
 * message once, for every receiver. Negotiation always answers
 * server_no_context_takeover and client_no_context_takeover, so a message's
 * compressed bytes depend on the message alone: one compressor and one
 * inflater per thread, reset per message, and no zlib state per connection.
 * Raw DEFLATE is zlib's. Errors are -errno values that ws_close_code() maps
 * to the close code the RFC asks for.
 */
#ifndef RC_PROTO_DEFLATE_H
#define RC_PROTO_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * zlib's raw deflate takes windows of 2^9 to 2^15 bytes; RFC 7692 also
 * allows 2^8, which zlib cannot produce, so an offer that asks the server
 * for 8 bits is always declined.
 */
#define DEFLATE_MIN_WBITS	9
#define DEFLATE_MAX_WBITS	15
#define DEFLATE_MAX_OFFERS	8	/* permessage-deflate offers kept */
#define DEFLATE_ANSWER_MAX	160	/* deflate_write_answer() fits in this */
#define DEFLATE_SLACK		8	/* deflate_compress() room past @limit */

/*
 * The well-formed permessage-deflate offers of a request, in the client's
 * order of preference, across every Sec-WebSocket-Extensions line.
 * hs_parse() fills it in struct hs_req (hs_deflate_offers() parses one
 * header value); zeroed means no offer.
 */
struct deflate_offers {
	/* per offer: its server_max_window_bits (8..15), 0 when absent */
	uint8_t smax[DEFLATE_MAX_OFFERS];
	uint8_t n;		/* offers in smax[] */
	uint8_t declined;	/* offers declined as malformed (saturates) */
	uint8_t broken;		/* the client's no-context-takeover is broken
				 * (deflate_ua_broken()): decline them all */
};

/*
 * Whether the User-Agent @ua[0..@len) is Safari 15.0 to 15.3, whose
 * permessage-deflate ignores client_no_context_takeover: its messages
 * refer to earlier ones, which an inflater reset per message refuses.
 * hs_parse() sets deflate_offers.broken from it.
 */
int deflate_ua_broken(const char *ua, size_t len);

/*
 * Chooses the first offer in @o that a compressor with a 2^@wbits window
 * can honour: any offer without server_max_window_bits, or one asking for
 * a window of @wbits or more. Returns the server_max_window_bits to
 * answer, the offer's own value (8..15), or 0 to answer without it; or
 * -ENOENT when no offer can be honoured or @o->broken is set (the
 * connection stays plain), and
 * -EINVAL when @wbits is not DEFLATE_MIN_WBITS..DEFLATE_MAX_WBITS.
 */
int deflate_accept(const struct deflate_offers *o, unsigned wbits);

/*
 * Writes the response header line for deflate_accept()'s @smax:
 * "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover;
 * client_no_context_takeover[; server_max_window_bits=N]\r\n" and a NUL
 * into @out. Returns its length (without the NUL), -ENOSPC when @cap is too
 * small (DEFLATE_ANSWER_MAX is enough), or -EINVAL for a bad @smax.
 */
ssize_t deflate_write_answer(char *out, size_t cap, int smax);

/*
 * A compressor: one zlib deflate stream, reset before every message, so
 * its output never refers to an earlier message. One per thread; not
 * thread-safe. Opaque. Holds about 2^(@wbits + 2) + 128 KiB.
 */
struct deflate_tx;

/*
 * Creates a compressor at zlib @level (1 fastest .. 9 smallest) with a
 * 2^@wbits window (DEFLATE_MIN_WBITS..DEFLATE_MAX_WBITS; negotiate with the
 * same @wbits). Returns NULL when out of memory or on bad arguments. All
 * its memory is allocated here. deflate_tx_free(NULL) is a no-op.
 */
struct deflate_tx *deflate_tx_new(int level, unsigned wbits);
void deflate_tx_free(struct deflate_tx *tx);

/*
 * Compresses the message @in[0..@n) into @out as the payload of a frame
 * with RSV1 set (ws.h WS_RSV1): raw DEFLATE ending in a sync flush, whose
 * trailing 00 00 ff ff is removed (RFC 7692 section 7.2.1). The result
 * depends only on @in, the level and the window, so it is valid for every
 * connection that negotiated the extension with deflate_accept(). @out
 * needs room for @limit + DEFLATE_SLACK bytes (zlib must never run out of
 * room mid-flush; past the result they are scratch). Returns the length,
 * 1..@limit, or 0 when it would be longer than @limit: pass @limit =
 * @n - 1, so 0 means "not smaller, send it plain" (compression stops as
 * soon as the output passes the limit). -EINVAL for a NULL @tx, -EIO if
 * zlib misbehaves.
 */
ssize_t deflate_compress(struct deflate_tx *tx, const uint8_t *in, size_t n,
			 uint8_t *out, size_t limit);

/*
 * An inflater: one zlib inflate stream with a 2^15 window (enough for any
 * client window), reset per message. One per thread; not thread-safe.
 * Opaque. Holds about 40 KiB, all allocated by deflate_rx_new().
 */
struct deflate_rx;

/* Returns NULL when out of memory. deflate_rx_free(NULL) is a no-op. */
struct deflate_rx *deflate_rx_new(void);
void deflate_rx_free(struct deflate_rx *rx);

/* Bytes zlib holds for @rx; inflating never changes it. */
size_t deflate_rx_mem(const struct deflate_rx *rx);

/*
 * Starts a client's compressed message, whose inflated size may not pass
 * @max bytes. The inflater is the thread's: a message must be inflated
 * from deflate_rx_begin() to its end without another message in between,
 * so a fragmented message is assembled (compressed) first, or its pieces
 * are fed one after another in one go.
 */
void deflate_rx_begin(struct deflate_rx *rx, uint64_t max);

/* The input and output of deflate_inflate(), advanced as it works. */
struct deflate_io {
	const uint8_t *in;	/* compressed bytes not yet consumed */
	size_t in_len;
	uint8_t *out;		/* where the next inflated byte goes */
	size_t out_len;		/* room left there */
};

/*
 * Inflates the compressed bytes @io->in (unmasked frame payload, or a piece
 * of it, in order) into @io->out. @fin says these are the message's last
 * compressed bytes: then 00 00 ff ff is appended (RFC 7692 section 7.2.2)
 * and the message must end on a DEFLATE block boundary. Returns 1 when the
 * message is complete; 0 when @io->in is consumed and more is expected
 * (!@fin); -ENOBUFS when @io->out is full with the bound not reached (give
 * more room and call again with the rest of @io->in and the same @fin);
 * -EMSGSIZE when the inflated size would pass deflate_rx_begin()'s @max
 * (close 1009; nothing past @max was written or allocated); -EILSEQ when
 * the data is not valid DEFLATE, or refers to bytes before the message
 * (client_no_context_takeover was agreed) (close 1007). After an error
 * the message is dead: begin the next one.
 */
int deflate_inflate(struct deflate_rx *rx, struct deflate_io *io, int fin);

#endif
