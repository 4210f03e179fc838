/* SPDX-License-Identifier: MIT */
/*
 * tlsio_ctx.c: the TLS side every connection starts from: an SSL_CTX per
 * --tls-cert/--tls-key pair (TLS 1.3, or 1.2 with --tls-min 1.2; ALPN
 * http/1.1; no tickets), the others reached from the default one's
 * servername callback by the client's SNI, rebuilt on SIGHUP and handed
 * to the shards at their next handshake. The handshakes themselves and
 * the records are tlsio.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tlsio.h"
#include "tlsio_int.h"

/* TLS 1.2's suites, as Mozilla's "intermediate": ECDHE, AES-GCM, ChaCha20 */
#define TLS12_CIPHERS	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
			"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
			"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const unsigned char alpn_ours[] = "\x08http/1.1";

/* ALPN: http/1.1 if offered; a client offering only others goes on
 * without ALPN rather than failing (it speaks HTTP/1.1 or nothing here). */
static int alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		const unsigned char *in, unsigned inlen, void *arg)
{
	unsigned char *sel;

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto(&sel, outlen, alpn_ours,
				  sizeof(alpn_ours) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/*
 * Why @file (given to option @opt) was refused, for the operator: the
 * system's reason when it cannot be read, else @what and OpenSSL's.
 */
static void ssl_why(char *why, size_t n, const char *opt, const char *file,
		    const char *what)
{
	char err[256] = "unknown error";
	unsigned long e = ERR_peek_last_error();
	FILE *f = fopen(file, "r");

	if (!f) {
		snprintf(why, n, "%s %s: %s", opt, file, strerror(errno));
	} else {
		fclose(f);
		if (e)
			ERR_error_string_n(e, err, sizeof(err));
		snprintf(why, n, "%s %s: %s (%s)", opt, file, what, err);
	}
	ERR_clear_error();
}

/*
 * A server SSL_CTX for the pair @i of --tls-cert and --tls-key, checked:
 * TLS 1.3 only, ALPN http/1.1, no session tickets. Every pair's context
 * is set up alike, as SNI may switch a handshake to any of them. NULL
 * with the reason in @why.
 */
static SSL_CTX *ctx_new(const struct eng_cfg *cfg, unsigned i, char *why,
			size_t why_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		snprintf(why, why_len, "SSL_CTX_new failed");
		ERR_clear_error();
		return NULL;
	}
	/*
	 * 1.3 switches to the record layer of our own after the handshake;
	 * 1.2 (--tls-min 1.2) keeps the SSL*, with ECDHE and AEAD suites
	 * only, no renegotiation and no tickets.
	 */
	SSL_CTX_set_min_proto_version(ctx, cfg->tls_min == 12 ?
					   TLS1_2_VERSION : TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
				 SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		snprintf(why, why_len, "no TLS 1.2 cipher suite");
		goto err;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert[i]) != 1) {
		ssl_why(why, why_len, "--tls-cert", cfg->tls_cert[i],
			"not a PEM certificate chain");
		goto err;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key[i],
					SSL_FILETYPE_PEM) != 1) {
		ssl_why(why, why_len, "--tls-key", cfg->tls_key[i],
			"not a PEM private key, or not the certificate's");
		goto err;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ssl_why(why, why_len, "--tls-key", cfg->tls_key[i],
			"not the key of --tls-cert");
		goto err;
	}
	/*
	 * No tickets: the SSL* is gone after the handshake, so there is no
	 * session to resume, and tx.seq then starts at 0.
	 */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, alpn, NULL);
	SSL_CTX_set_keylog_callback(ctx, tlsio__keylog);
	return ctx;
err:
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * The certificates after the first, for SNI: a reference to each, owned
 * by the default context (its ex_data, freed with it), so a reload that
 * replaces the default lets go of them all once no handshake needs them.
 */
struct sni {
	unsigned n;
	SSL_CTX *ctx[ENG_TLS_MAX_CERTS - 1];
};

static int sni_idx = -1;

static void sni_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
		     long argl, void *argp)
{
	struct sni *x = ptr;

	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (!x)
		return;
	for (unsigned i = 0; i < x->n; i++)
		SSL_CTX_free(x->ctx[i]);
	free(x);
}

static bool names(SSL_CTX *ctx, const char *name)
{
	X509 *leaf = SSL_CTX_get0_certificate(ctx);

	return leaf && X509_check_host(leaf, name, 0,
				       X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
				       NULL) == 1;
}

/*
 * The servername callback, on the default context: the first certificate
 * in --tls-cert order whose names (SAN DNS entries, wildcards; the CN
 * without them) match the client's SNI. No name, or none matching: the
 * default stays.
 */
static int servername(SSL *ssl, int *alert, void *arg)
{
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	struct sni *x = arg;

	(void)alert;
	if (!name || names(SSL_get_SSL_CTX(ssl), name))
		return SSL_TLSEXT_ERR_OK;
	for (unsigned i = 0; i < x->n; i++) {
		if (names(x->ctx[i], name)) {
			if (!SSL_set_SSL_CTX(ssl, x->ctx[i]))
				return SSL_TLSEXT_ERR_ALERT_FATAL;
			break;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

/* Every pair's context; the default one returned, the others in its sni. */
static SSL_CTX *ctxs_new(const struct eng_cfg *cfg, char *why, size_t why_len)
{
	SSL_CTX *def = ctx_new(cfg, 0, why, why_len);
	struct sni *x;

	if (!def || cfg->tls_ncert < 2)
		return def;
	x = calloc(1, sizeof(*x));
	if (!x || !SSL_CTX_set_ex_data(def, sni_idx, x)) {
		free(x);
		snprintf(why, why_len, "out of memory");
		goto err;
	}
	for (unsigned i = 1; i < cfg->tls_ncert; i++) {
		x->ctx[x->n] = ctx_new(cfg, i, why, why_len);
		if (!x->ctx[x->n])
			goto err;
		x->n++;
	}
	SSL_CTX_set_tlsext_servername_callback(def, servername);
	SSL_CTX_set_tlsext_servername_arg(def, x);
	return def;
err:
	SSL_CTX_free(def);	/* and x, through sni_free */
	return NULL;
}

int eng_tls_init(struct eng *e, char *why, size_t why_len)
{
	SSL_CTX *ctx;

	if (!e->cfg.tls_ncert)
		return 0;
	if (tlsio__xport_register() < 0) {
		snprintf(why, why_len, "the TLS transport is taken");
		return -EEXIST;
	}
	sni_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_free);
	if (sni_idx < 0) {
		snprintf(why, why_len, "SSL_CTX_get_ex_new_index failed");
		return -ENOMEM;
	}
	ctx = ctxs_new(&e->cfg, why, why_len);
	if (!ctx)
		return -EINVAL;
	pthread_mutex_init(&e->tls_lock, NULL);
	atomic_store(&e->tls_ctx, ctx);
	return 0;
}

void eng_tls_reload(struct eng *e)
{
	char why[512];
	SSL_CTX *ctx, *old;

	if (!atomic_load(&e->tls_ctx)) {
		fprintf(stderr, "ringcast: SIGHUP: no TLS, nothing to reload\n");
		return;
	}
	/* built and checked here, in main's thread, off the shards' loops */
	ctx = ctxs_new(&e->cfg, why, sizeof(why));
	if (!ctx) {
		atomic_fetch_add(&e->tls_reload_failed, 1);
		fprintf(stderr, "ringcast: SIGHUP: TLS reload failed, the "
			"certificates in use stay: %s\n", why);
		return;
	}
	pthread_mutex_lock(&e->tls_lock);
	old = atomic_exchange(&e->tls_ctx, ctx);
	atomic_fetch_add(&e->tls_gen, 1);
	pthread_mutex_unlock(&e->tls_lock);
	/* shards and handshakes that still use it hold references of their own */
	SSL_CTX_free(old);
	atomic_fetch_add(&e->tls_reloads, 1);
	fprintf(stderr, "ringcast: SIGHUP: TLS certificates reloaded (%u)\n",
		e->cfg.tls_ncert);
}

void eng_tls_exit(struct eng *e)
{
	SSL_CTX *ctx = atomic_exchange(&e->tls_ctx, NULL);

	if (!ctx)
		return;
	SSL_CTX_free(ctx);
	pthread_mutex_destroy(&e->tls_lock);
}

/*
 * The shard keeps its own reference and trades it for the current one
 * only after a reload, so the lock is taken once per reload per shard,
 * not per handshake.
 */
SSL_CTX *tlsio__shard_ctx(struct eng_shard *s)
{
	struct eng_tls_shard *ts = s->tls;
	struct eng *e = s->eng;

	if (atomic_load_explicit(&e->tls_gen, memory_order_acquire) !=
	    ts->gen) {
		SSL_CTX *ctx;

		pthread_mutex_lock(&e->tls_lock);
		ctx = atomic_load_explicit(&e->tls_ctx, memory_order_relaxed);
		SSL_CTX_up_ref(ctx);
		SSL_CTX_free(ts->ctx);
		ts->ctx = ctx;
		ts->gen = atomic_load_explicit(&e->tls_gen,
					       memory_order_relaxed);
		pthread_mutex_unlock(&e->tls_lock);
	}
	return ts->ctx;
}
