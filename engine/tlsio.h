/* SPDX-License-Identifier: MIT */
/*
 * tlsio: wss:// and https:// on the engine's port (engine/tlsio.c). With
 * --tls-cert and --tls-key every connection speaks TLS 1.3. OpenSSL runs
 * the handshake over memory BIOs, fed whole records from the ring's
 * receive buffers, its output sent as the connection's own bytes; once it
 * is done the SSL* is freed and the connection keeps only struct tls_rl
 * (proto/tls.h) and the few fields below. From then on records are opened
 * in place in the receive buffers and the plaintext goes up the same
 * receive path as on a plain connection; the send queue keeps its shared
 * plaintext frames, sealed per connection at send time into one buffer.
 * With --tls-min 1.2 a TLS 1.2 connection is the exception: it keeps its
 * SSL* for life, its records going through SSL_read and SSL_write over
 * the same memory BIOs.
 * A live hand-over carries an established TLS 1.3 connection to a new
 * process, keys and sequence numbers, its cut record and unsent sealed
 * bytes (tlsio_ho.c); a TLS 1.2 one is drained.
 * conn.c reaches it only through the transport table (struct eng_xport,
 * conn.h), which eng_tls_init() registers as ENG_XPORT_TLS.
 */
#ifndef RC_ENGINE_TLSIO_H
#define RC_ENGINE_TLSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng.h"
#include "tls.h"

/* Handshake failures, by reason (/stats "tls" "failed"). */
enum {
	ENG_TLS_FAIL_GARBAGE = 0,	/* the first bytes were no TLS record */
	ENG_TLS_FAIL_HANDSHAKE,		/* OpenSSL refused the handshake */
	ENG_TLS_FAIL_TIMEOUT,		/* not done by --handshake-timeout */
	ENG_TLS_FAIL_CAP,		/* over --tls-max-handshakes */
	ENG_TLS_FAIL_CLOSED,		/* the peer left half-way */
	ENG_TLS_FAIL_MAX,
};

/* Their names in /stats and /metrics: "garbage", "handshake", ... */
extern const char *const eng_tls_fail_names[ENG_TLS_FAIL_MAX];

/* A shard's TLS side; NULL in eng_shard when TLS is off. */
struct eng_tls_shard {
	EVP_CIPHER_CTX *cctx;		/* owned: re-keyed for every record */
	SSL_CTX *ctx;			/* a reference: new handshakes' context */
	unsigned gen;			/* eng.tls_gen when ctx was taken */
	struct eng_tls **conn;		/* owned: a slot's TLS state or NULL */
	atomic_uint_fast64_t handshaking; /* handshakes in progress now */
	size_t carried;			/* bytes allocated to cut records */
	atomic_uint_fast64_t conns;	/* established now */
	atomic_uint_fast64_t done;	/* handshakes completed, ever */
	atomic_uint_fast64_t failed[ENG_TLS_FAIL_MAX];
	atomic_uint_fast64_t alerts;	/* records refused: alert, close */
	atomic_uint_fast64_t state_bytes; /* held by struct eng_tls + buffers */
};

/*
 * Reads --tls-cert and --tls-key into @e's SSL_CTX (TLS 1.3 only, ALPN
 * http/1.1, no session tickets); with several pairs, one SSL_CTX each,
 * the first the default, the others reached from its servername
 * callback by the client's SNI name, and registers the TLS transport
 * (eng_xport_add). Once, before the shards start. Does nothing without
 * --tls-cert.
 * Returns 0 or -errno with a sentence for the operator in @why.
 */
int eng_tls_init(struct eng *e, char *why, size_t why_len);
void eng_tls_exit(struct eng *e);

/*
 * SIGHUP, in main's thread: reads the files again into a new SSL_CTX and,
 * when it checks out, makes it the one new handshakes start from (each
 * shard picks it up at its next handshake); handshakes under way keep
 * theirs, established connections hold none. When a file is bad the
 * context in use stays. Either way one line on stderr says what happened,
 * and /stats counts it ("reloads", "reload_failed").
 */
void eng_tls_reload(struct eng *e);

/* A shard's cipher context and slot table, when TLS is on. 0 or -ENOMEM. */
int eng_tls_shard_init(struct eng_shard *s);
void eng_tls_shard_exit(struct eng_shard *s);

/* The TLS state of @slot on @s, or NULL for a plain connection. */
static inline struct eng_tls *eng_tls_at(const struct eng_shard *s,
					 uint32_t slot)
{
	return s->tls ? s->tls->conn[slot] : NULL;
}

/* Every shard's TLS figures, summed (relaxed reads, from any thread). */
struct eng_tls_totals {
	uint64_t conns, handshaking, done, alerts, state_bytes;
	uint64_t reloads, reload_failed;	/* SIGHUP, eng_tls_reload() */
	uint64_t failed[ENG_TLS_FAIL_MAX];
};
void eng_tls_sum(const struct eng *e, struct eng_tls_totals *t);

/* {"conns":..} for /stats: every shard's TLS figures. Returns the length. */
size_t eng_tls_stats(const struct eng *e, char *out, size_t cap);

#endif
