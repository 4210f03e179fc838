/* SPDX-License-Identifier: MIT */
/*
 * zframe: permessage-deflate (RFC 7692) in the engine, on proto/deflate.c.
 * Each shard holds one compressor and one inflater, both reset per
 * message; no connection holds zlib state. A push frame is compressed
 * once, by the shard that sequences it, into a twin (struct eng_buf's z)
 * that every connection which negotiated the extension sends instead of
 * the plain frame. Below conn, pub and http: it calls none of them.
 */
#ifndef RC_ENGINE_ZFRAME_H
#define RC_ENGINE_ZFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "deflate.h"
#include "eng.h"

/* The compressor's window: 2^15, so offers asking for less are declined. */
#define ENG_ZFRAME_WBITS	15

/* What eng_conn.deflate holds: negotiated, and the 101's answer. */
enum {
	ENG_DEFLATE_NO = 0,	/* plain connection */
	ENG_DEFLATE_YES,	/* negotiated */
	ENG_DEFLATE_YES_SMAX,	/* ... and server_max_window_bits echoed */
};

/* The shard's compressor and inflater (zlib's ~300 KiB). 0 or -ENOMEM. */
int eng_zframe_init(struct eng_shard *s);
void eng_zframe_exit(struct eng_shard *s);

/*
 * The ENG_DEFLATE_* a connection gets from its upgrade's offers @o (hs.h)
 * with --deflate: NO when off, when nothing was offered or when no offer
 * can be honoured by a 2^ENG_ZFRAME_WBITS compressor (deflate_accept()).
 */
uint8_t eng_zframe_negotiate(const struct eng_cfg *cfg,
			     const struct deflate_offers *o);

/*
 * Writes the Sec-WebSocket-Extensions line the 101 carries for @deflate
 * (ENG_DEFLATE_*) into @out, NUL-ended: none (0) for a plain connection.
 * Returns its length, or -ENOSPC (DEFLATE_ANSWER_MAX is enough).
 */
ssize_t eng_zframe_answer(uint8_t deflate, char *out, size_t cap);

/*
 * Whether a frame sequenced now should be compressed: some shard among
 * @shards (a bitmap of cfg.shards bits; NULL: every shard) has an open
 * connection that negotiated the extension.
 */
bool eng_zframe_wanted(const struct eng *e, const uint64_t *shards);

/*
 * Compresses push frame @f once, on its sequencing shard @s, when its
 * payload is --deflate-min or more and the result is smaller: @f->z is
 * then the compressed frame (RSV1 set, in the arena), owned by @f and
 * freed with it. @f must not change after this (stamps come first).
 * Counted: deflate calls, bytes in and out. A failure leaves @f plain.
 */
void eng_zframe_attach(struct eng_shard *s, struct eng_buf *f);

/*
 * eng_zframe_attach() when @s has a compressor and eng_zframe_wanted()
 * says some shard of @shards needs it: a frame @s sequences (after its
 * stamps, before any other shard sees it).
 */
void eng_zframe_once(struct eng_shard *s, struct eng_buf *f,
		     const uint64_t *shards);

/*
 * Frames @f[0..@n) read back from Redis for the one connection @slot,
 * @gen of @s (a recovery, a page of unread), that nothing else holds
 * yet: each compressed once, on @s, if that connection is still there
 * and negotiated the extension. Others keep them plain.
 */
void eng_zframe_read(struct eng_shard *s, uint32_t slot, uint32_t gen,
		     struct eng_buf **f, size_t n);

/*
 * What a kept frame @f occupies, its compressed twin included: what
 * --history-memory and --inbox-memory count.
 */
static inline size_t eng_zframe_kept(const struct eng_buf *f)
{
	return sizeof(*f) + f->cap + (f->z ? sizeof(*f->z) + f->z->cap : 0);
}

/*
 * A frame only one connection will send (a reply, an echo: @b, one
 * reference, taken over), compressed as eng_zframe_attach() would.
 * Returns the compressed frame (a heap buffer; @b dropped), or @b as it
 * is when it is not one whole data frame or compressing does not pay.
 */
struct eng_buf *eng_zframe_own(struct eng_shard *s, struct eng_buf *b);

/*
 * Inflates a client's compressed message @p[0..@n) (unmasked payload, all
 * its frames' bytes in order) with @s's inflater into a new buffer,
 * payload after WS_MAX_SERVER_HDR bytes of room (b->len its size), as
 * conn.h's on_assembled() takes it. The inflated size may not pass @max:
 * the buffer grows as inflating goes, never past @max. Returns 0 with
 * *@out set, -EMSGSIZE (1009), -EILSEQ (1007: not DEFLATE, or refers to
 * an earlier message) or -ENOMEM.
 */
int eng_zframe_inflate(struct eng_shard *s, const uint8_t *p, size_t n,
		       uint64_t max, struct eng_buf **out);

/* Appends /stats' "deflate" object (the counters summed) into @out. */
size_t eng_zframe_stats(struct eng *e, char *out, size_t cap);

#endif
