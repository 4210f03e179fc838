/* SPDX-License-Identifier: MIT */
/*
 * tlsio_int.h: what tlsio.c (handshakes, records, the transport) and
 * tlsio_ctx.c (the SSL_CTX, certificates, SNI, reload) share, and
 * nothing else includes.
 */
#ifndef RC_ENGINE_TLSIO_INT_H
#define RC_ENGINE_TLSIO_INT_H

#include <openssl/ssl.h>

#include "eng.h"

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

#endif
