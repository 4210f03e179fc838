/* SPDX-License-Identifier: MIT */
/*
 * tlsio_int.h: what tlsio.c (handshakes, records, the transport),
 * tlsio_ctx.c (the SSL_CTX, certificates, SNI, reload) and tlsio_ho.c
 * (a connection's TLS state carried to a new process) share, and
 * nothing else includes.
 */
#ifndef RC_ENGINE_TLSIO_INT_H
#define RC_ENGINE_TLSIO_INT_H

#include <openssl/ssl.h>

#include "eng.h"
#include "tlsio.h"

struct eng_ho_buf;
struct eng_ho_rd;

/* Bits of eng_tls.flags. */
enum {
	T_ESTABLISHED	= 1 << 0,	/* handshake done: rl is live */
	T_CLOSE_SENT	= 1 << 1,	/* close_notify (or an alert) sealed */
	T_FAILED	= 1 << 2,	/* counted; nothing more is processed */
	T_TIMED_OUT	= 1 << 3,	/* the handshake deadline passed */
	T_SSL		= 1 << 4,	/* TLS 1.2: hs->ssl kept for life */
};

#define NO_ALERT	0xff

#define SEAL_IOV	64		/* queue entries sealed in one send */
#define SEAL_BYTES	(256u << 10)	/* plaintext sealed in one send */

/* A send's sealed bytes fit what a hand-over carries (TLS_HO_MAX_OUT). */
_Static_assert(2 * SEAL_BYTES <= TLS_HO_MAX_OUT,
	       "a sealed send must fit a hand-over record");

/* What only a handshake needs: freed once it ends. */
struct hs {
	SSL *ssl;			/* owned; its BIOs with it */
	uint8_t secret[2][TLS_MAX_SECRET]; /* client's, server's: _0 */
	uint8_t len[2];
};

/* A buffer of the connection's own, its lengths in front of its bytes. */
struct tbuf {
	uint32_t len;			/* bytes in b */
	uint32_t aux;			/* part: bytes allocated; out: sent */
	uint8_t b[];
};

/* A TLS connection's own state, beside its struct eng_conn. */
struct eng_tls {
	struct tls_rl rl;		/* records, once T_ESTABLISHED */
	struct hs *hs;			/* while handshaking, else NULL */
	struct tbuf *part;		/* a record cut by a read, else NULL */
	struct tbuf *out;		/* sealed bytes of the send in flight */
	uint8_t flags;			/* T_* */
	uint8_t alert;			/* owed at close, or NO_ALERT */
	uint32_t covered;		/* bytes of the queue's head out
					 * holds when it was carried over
					 * (the new queue is one entry) */
};

/*
 * With the shard's slot pointer, 256 bytes beside struct eng_conn (the
 * issue's budget), and within the allocator's 256-byte size class.
 */
_Static_assert(sizeof(struct eng_tls) <= 248,
	       "struct eng_tls grew past its 248 bytes");

/* Counts @delta bytes of TLS state on @s (/stats tls.state_bytes). */
static inline void tlsio__account(struct eng_shard *s, int64_t delta)
{
	atomic_fetch_add_explicit(&s->tls->state_bytes, (uint64_t)delta,
				  memory_order_relaxed);
}

/*
 * SSL_CTX_set_keylog_callback()'s callback (tlsio.c): keeps the two
 * application traffic secrets in the handshake's own state.
 */
void tlsio__keylog(const SSL *ssl, const char *line);

/*
 * The SSL_CTX a new handshake on @s starts from (tlsio_ctx.c): the one
 * of the last reload. A reference the shard owns, freed at its exit.
 */
SSL_CTX *tlsio__shard_ctx(struct eng_shard *s);

/*
 * Registers the TLS transport (tlsio.c, eng_xport_add). Once, from
 * eng_tls_init(). Returns 0 or -errno.
 */
int tlsio__xport_register(void);

/*
 * tlsio.c's buffers, for tlsio_ho.c. tlsio__carry() keeps @n bytes at @p
 * of a record of @size bytes in @t->part (counted against
 * --max-partial-memory): 0, -ENOBUFS or -ENOMEM. tlsio__out_new() gives
 * @t->out room for @cap sealed bytes: 0 or -ENOMEM.
 */
int tlsio__carry(struct eng_shard *s, struct eng_tls *t, const uint8_t *p,
		 size_t n, size_t size);
int tlsio__out_new(struct eng_shard *s, struct eng_tls *t, size_t cap);

/*
 * The send queue's bytes the send in flight (or cancelled) covers: its
 * c->nflight first entries, the head's c->sent bytes aside.
 */
uint32_t tlsio__covers(const struct eng_conn *c);

/*
 * @t's handshake ended (tlsio.c): it no longer counts against the cap;
 * @fail >= 0 counts it as failed for that reason (ENG_TLS_FAIL_*).
 */
void tlsio__hs_over(struct eng_shard *s, struct eng_tls *t, int fail);

/*
 * The transport's hand-over (tlsio_ho.c), as struct eng_xport's ho_save
 * and ho_load (conn.h); the record is docs/HANDOVER.md's "The TLS
 * record". ho_save: -EAGAIN while the handshake runs or a send is in
 * flight, -EOPNOTSUPP for TLS 1.2 (its SSL* cannot be carried), -EPIPE
 * for a connection ending. ho_load: -EINVAL for a malformed record,
 * -EPROTONOSUPPORT for another version, -ENOTSUP without TLS here.
 */
int tlsio__ho_save(struct eng_shard *s, struct eng_conn *c,
		   struct eng_ho_buf *b);
int tlsio__ho_load(struct eng_shard *s, struct eng_conn *c,
		   struct eng_ho_rd *r);

#endif
