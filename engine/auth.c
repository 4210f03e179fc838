/* SPDX-License-Identifier: MIT */
/*
 * auth.c: JWT authentication at the upgrade, with libjwt and OpenSSL.
 *
 * The algorithm a token may use is decided by the engine's keys, never by
 * the token: HS256 only when --jwt-secret is set, RS256 or ES256 only when
 * --jwt-public-key holds a key of that type. The header's "alg" is read
 * first (simdjson) and a token whose algorithm has no key here is refused
 * before libjwt sees it, so "none" and algorithm confusion (an HS256 token
 * "signed" with the public key as its secret) cannot pass; libjwt's own
 * algorithm after verification is checked again. Claims: "sub" is the
 * user id, "exp" and "nbf" are enforced with --jwt-leeway seconds of
 * leeway, "app" names the client platform, "channels" lists the channels
 * or "prefix*" patterns the user may subscribe to.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"
#include "chan.h"
#include "conn.h"
#include "handover.h"
#include "json.h"
#include "hs.h"
#include "timer.h"

static unsigned char *pubkey;	/* PEM bytes, NUL-terminated */
static size_t pubkey_len;
static jwt_alg_t pubkey_alg;	/* JWT_ALG_RS256 or JWT_ALG_ES256 */

bool eng_auth_key_ok(const struct eng_cfg *cfg, const char *p, size_t n)
{
	unsigned char want[EVP_MAX_MD_SIZE], got[EVP_MAX_MD_SIZE];
	size_t klen = strlen(cfg->api_key);
	unsigned wn = 0, gn = 0;

	if (!klen)
		return true;
	if (!p)
		return false;
	if (!EVP_Digest(cfg->api_key, klen, want, &wn, EVP_sha256(), NULL) ||
	    !EVP_Digest(p, n, got, &gn, EVP_sha256(), NULL))
		return false;
	return wn == gn && CRYPTO_memcmp(want, got, wn) == 0;
}

/* The next time (CLOCK_MONOTONIC ms) a wrong key may be logged, and how
 * many came since the last line: shared by every shard. */
static atomic_uint_fast64_t key_log_at, key_unlogged;

void eng_auth_key_failed(struct eng_shard *s, const char *where)
{
	uint64_t now = eng_now_ns() / 1000000;
	uint_fast64_t at = atomic_load_explicit(&key_log_at,
						memory_order_relaxed);

	ENG_STAT_ADD(s, key_failed, 1);
	atomic_fetch_add_explicit(&key_unlogged, 1, memory_order_relaxed);
	/* one shard wins the slot; the others only count */
	if (now < at || !atomic_compare_exchange_strong(&key_log_at, &at,
							now + 10000))
		return;
	fprintf(stderr, "ringcast: shard %u: wrong API key on %s (%llu since "
		"the last such line; one line per 10 s at most)\n", s->id,
		where, (unsigned long long)atomic_exchange(&key_unlogged, 0));
}

int eng_auth_init(const struct eng_cfg *cfg, const char **why)
{
	EVP_PKEY *key;
	BIO *bio;
	FILE *f;
	long n;

	if (!cfg->jwt_pubkey_file[0])
		return 0;
	f = fopen(cfg->jwt_pubkey_file, "rb");
	if (!f) {
		*why = strerror(errno);
		return -errno;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	if (n <= 0 || n > 65536) {
		fclose(f);
		*why = "not a PEM public key (size)";
		return -EINVAL;
	}
	pubkey = malloc((size_t)n + 1);
	if (!pubkey || fread(pubkey, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		*why = "cannot read it";
		return -EIO;
	}
	fclose(f);
	pubkey[n] = '\0';
	pubkey_len = (size_t)n;

	/* The key's type fixes the one algorithm tokens may use with it. */
	bio = BIO_new_mem_buf(pubkey, (int)n);
	key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (!key) {
		*why = "not a PEM public key";
		return -EINVAL;
	}
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_RSA:
		pubkey_alg = JWT_ALG_RS256;
		break;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_bits(key) == 256) {
			pubkey_alg = JWT_ALG_ES256;
			break;
		}
		/* fall through */
	default:
		EVP_PKEY_free(key);
		*why = "neither an RSA nor a P-256 EC key";
		return -EINVAL;
	}
	EVP_PKEY_free(key);
	return 0;
}

void eng_auth_exit(void)
{
	free(pubkey);
	pubkey = NULL;
}

/* base64url without padding, as JWS uses it; returns bytes or -1. */
static int b64url_decode(const char *in, size_t len, unsigned char *out,
			 size_t cap)
{
	char small[1024] = "", *buf = small;	/* a header fits; claims not */
	size_t n = 0, i;
	int r = -1;

	if ((len * 3) / 4 + 3 > cap || len > ENG_MAX_TOKEN)
		return -1;
	if (len + 3 > sizeof(small) && !(buf = eng_malloc(len + 4)))
		return -1;
	for (i = 0; i < len; i++) {
		char ch = in[i];

		if (ch == '-')
			ch = '+';
		else if (ch == '_')
			ch = '/';
		else if (ch == '+' || ch == '/' || ch == '=')
			goto out;	/* not base64url */
		buf[n++] = ch;
	}
	while (n % 4)
		buf[n++] = '=';
	r = EVP_DecodeBlock(out, (unsigned char *)buf, (int)n);
	/* EVP_DecodeBlock counts the padding as zero bytes: drop them */
	for (i = len; r >= 0 && i % 4; i++)
		r--;
out:
	if (buf != small)
		eng_free(buf);
	return r < 0 ? -1 : r;
}

static bool uid_ok(const char *p, size_t n)
{
	return eng_chan_name_ok(p, n);
}

static bool app_ok(const char *p, size_t n)
{
	if (!n || n > ENG_APP_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
		      ch == '.'))
			return false;
	}
	return true;
}

/* A pattern is a channel name, or a name prefix followed by '*'. */
static bool pattern_ok(const char *p, size_t n)
{
	if (n && p[n - 1] == '*')
		return n == 1 || eng_chan_name_ok(p, n - 1);
	return eng_chan_name_ok(p, n);
}

/* The algorithm allowed for a header "alg", or JWT_ALG_INVAL. */
static jwt_alg_t allowed_alg(const struct eng_cfg *cfg,
			     const struct json_slice *alg)
{
	if (alg->len == 5 && !memcmp(alg->p, "HS256", 5))
		return cfg->jwt_secret[0] ? JWT_ALG_HS256 : JWT_ALG_INVAL;
	if (alg->len == 5 && !memcmp(alg->p, "RS256", 5))
		return pubkey && pubkey_alg == JWT_ALG_RS256 ? JWT_ALG_RS256
							     : JWT_ALG_INVAL;
	if (alg->len == 5 && !memcmp(alg->p, "ES256", 5))
		return pubkey && pubkey_alg == JWT_ALG_ES256 ? JWT_ALG_ES256
							     : JWT_ALG_INVAL;
	return JWT_ALG_INVAL;	/* "none" and everything else */
}

/* Copies the claims we use into one allocation the connection owns. */
static int take_claims(struct eng_shard *s, jwt_t *jwt, int64_t exp,
		       struct eng_auth **out, const char **why)
{
	struct json_slice pats[ENG_MAX_PATTERNS];
	const char *sub = jwt_get_grant(jwt, "sub");
	const char *app = jwt_get_grant(jwt, "app");
	char *chans = jwt_get_grants_json(jwt, "channels");
	struct eng_auth *a;
	unsigned npat = 0, i;
	size_t blob = 0, off;

	if (!sub || !uid_ok(sub, strlen(sub))) {
		*why = "sub claim missing or not a valid user id";
		goto bad;
	}
	if (app && !app_ok(app, strlen(app))) {
		*why = "app claim is not a short name";
		goto bad;
	}
	if (chans) {
		if (json_string_array(s->json, chans, strlen(chans), pats,
				      ENG_MAX_PATTERNS, &npat) < 0) {
			*why = "channels claim is not a short list of strings";
			goto bad;
		}
		for (i = 0; i < npat; i++) {
			if (!pattern_ok(pats[i].p, pats[i].len)) {
				*why = "channels claim has a bad pattern";
				goto bad;
			}
			blob += pats[i].len + 1;
		}
	}
	a = eng_malloc(sizeof(*a) + npat * sizeof(a->pat[0]) + blob);
	if (!a) {
		*why = "out of memory";
		free(chans);
		return -ENOMEM;
	}
	memset(a, 0, sizeof(*a));
	a->exp = exp;
	a->uid_len = (uint8_t)strlen(sub);
	memcpy(a->uid, sub, a->uid_len);
	if (app) {
		a->app_len = (uint8_t)strlen(app);
		memcpy(a->app, app, a->app_len);
	}
	a->has_chans = chans != NULL;
	a->npat = (uint16_t)npat;
	off = 0;
	for (i = 0; i < npat; i++) {
		char *dst = (char *)&a->pat[npat] + off;

		memcpy(dst, pats[i].p, pats[i].len);
		dst[pats[i].len] = '\0';
		a->pat[i] = dst;
		off += pats[i].len + 1;
	}
	free(chans);
	*out = a;
	return 0;
bad:
	free(chans);
	return -EACCES;
}

/*
 * Reads NumericDate claim @name of the claims object @grants into *@t:
 * seconds since the epoch, a fraction allowed (RFC 7519 section 2). An
 * absent claim gives -1. Returns 0, or -EBADMSG when the claim is not a
 * non-negative number of a sane size (libjwt's integer getter reads a
 * fraction or a string as 0).
 */
static int numeric_date(struct eng_shard *s, const char *grants,
			const char *name, double *t)
{
	int ret = json_get_number(s->json, grants, strlen(grants), name, t);

	if (ret == -ENOENT) {
		*t = -1;
		return 0;
	}
	if (ret < 0 || !(*t >= 0 && *t < 1e15))	/* also refuses NaN */
		return -EBADMSG;
	return 0;
}

/*
 * Checks that the signed claims at @p (the token past its first dot,
 * signature included) name no claim twice. Called after the signature
 * was verified, so the segment is well formed base64url.
 */
static int claims_unique(struct eng_shard *s, const char *p, size_t len)
{
	const char *dot = memchr(p, '.', len);
	unsigned char *body;
	int n, ret;

	if (!dot)
		return -EBADMSG;
	body = eng_malloc(ENG_MAX_TOKEN);	/* decoded is shorter */
	if (!body)
		return -ENOMEM;
	n = b64url_decode(p, (size_t)(dot - p), body, ENG_MAX_TOKEN);
	ret = n > 0 ? json_unique_keys(s->json, (const char *)body,
				       (size_t)n) : -EBADMSG;
	eng_free(body);
	return ret;
}

int eng_auth_verify(struct eng_shard *s, const char *tok, size_t len,
		    struct eng_auth **out, const char **why)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	const char *dot = memchr(tok, '.', len);
	unsigned char head[768];
	struct json_slice alg = { 0 };
	const unsigned char *key;
	char *copy = NULL;
	jwt_t *jwt = NULL;
	jwt_alg_t want;
	int n, ret = -EACCES, key_len;
	char *grants = NULL;		/* libjwt's copy; free() */
	double exp, nbf;
	time_t now = time(NULL);

	*out = NULL;
	if (!len) {
		*why = "missing token";
		return -EACCES;
	}
	if (!dot || len > ENG_MAX_TOKEN) {
		*why = "malformed token";
		return -EACCES;
	}
	n = b64url_decode(tok, (size_t)(dot - tok), head, sizeof(head));
	if (n <= 0 || json_get_string(s->json, (const char *)head, (size_t)n,
				      "alg", &alg) < 0) {
		*why = "malformed token header";
		return -EACCES;
	}
	want = allowed_alg(cfg, &alg);
	if (want == JWT_ALG_INVAL) {
		*why = "token algorithm not accepted";
		return -EACCES;
	}
	if (want == JWT_ALG_HS256) {
		key = (const unsigned char *)cfg->jwt_secret;
		key_len = (int)strlen(cfg->jwt_secret);
	} else {
		key = pubkey;
		key_len = (int)pubkey_len;
	}
	copy = eng_malloc(len + 1);	/* libjwt wants a C string */
	if (!copy) {
		*why = "out of memory";
		return -ENOMEM;
	}
	memcpy(copy, tok, len);
	copy[len] = '\0';
	if (jwt_decode(&jwt, copy, key, key_len) || !jwt ||
	    jwt_get_alg(jwt) != want) {
		*why = "bad signature or malformed token";
		goto out;
	}
	/*
	 * libjwt keeps the last of two claims of one name, other readers the
	 * first: a token that names two users must not pass as either.
	 */
	if (claims_unique(s, dot + 1, len - (size_t)(dot + 1 - tok)) < 0) {
		*why = "duplicate or malformed claims";
		goto out;
	}
	grants = jwt_get_grants_json(jwt, NULL);	/* all claims */
	if (!grants) {
		*why = "out of memory";
		ret = -ENOMEM;
		goto out;
	}
	if (numeric_date(s, grants, "exp", &exp) < 0 ||
	    numeric_date(s, grants, "nbf", &nbf) < 0) {
		*why = "exp or nbf claim is not a number";
		goto out;
	}
	if (exp >= 0 && (double)now > exp + cfg->jwt_leeway) {
		*why = "token expired";
		goto out;
	}
	if (nbf >= 0 && (double)now + cfg->jwt_leeway < nbf) {
		*why = "token not yet valid";
		goto out;
	}
	/* Whole seconds for the expiry timer: a fraction ends it sooner. */
	ret = take_claims(s, jwt, exp >= 0 ? (int64_t)exp : 0, out, why);
out:
	free(grants);
	jwt_free(jwt);
	eng_free(copy);
	return ret;
}

bool eng_auth_channel_ok(const struct eng_auth *a, const char *name,
			 size_t len)
{
	if (!a || !a->has_chans)
		return true;	/* no channels claim: no restriction */
	for (unsigned i = 0; i < a->npat; i++) {
		size_t n = strlen(a->pat[i]);

		if (n && a->pat[i][n - 1] == '*') {
			if (len >= n - 1 && !memcmp(name, a->pat[i], n - 1))
				return true;
		} else if (n == len && !memcmp(name, a->pat[i], len)) {
			return true;
		}
	}
	return false;
}

/* The token in "?token=..." or "Authorization: Bearer ...". */
bool eng_auth_token(const struct hs_str *query, const struct hs_str *authz,
		    const char **tok, size_t *len)
{
	const char *p = query->p, *end = query->p + query->len;

	while (p && p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;

		if (stop - p > 6 && !memcmp(p, "token=", 6)) {
			*tok = p + 6;
			*len = (size_t)(stop - p - 6);
			return true;
		}
		p = amp ? amp + 1 : NULL;
	}
	if (authz->p && authz->len > 7 && !strncasecmp(authz->p, "Bearer ", 7)) {
		*tok = authz->p + 7;
		*len = authz->len - 7;
		return true;
	}
	*tok = NULL;
	*len = 0;
	return false;
}

void eng_auth_ho_save(struct eng_ho_buf *b, const struct eng_auth *a)
{
	eng_ho_put_u8(b, a != NULL);
	if (!a)
		return;
	eng_ho_put_u64(b, (uint64_t)a->exp);
	eng_ho_put_u8(b, a->uid_len);
	eng_ho_put(b, a->uid, a->uid_len);
	eng_ho_put_u8(b, a->app_len);
	eng_ho_put(b, a->app, a->app_len);
	eng_ho_put_u8(b, a->has_chans);
	eng_ho_put_u16(b, a->npat);
	for (unsigned i = 0; i < a->npat; i++) {
		size_t n = strlen(a->pat[i]);

		eng_ho_put_u8(b, (uint8_t)n);
		eng_ho_put(b, a->pat[i], n);
	}
}

int eng_auth_ho_load(struct eng_ho_rd *r, struct eng_auth **out)
{
	const char *uid, *app, *pat[ENG_MAX_PATTERNS];
	uint8_t plen[ENG_MAX_PATTERNS], ulen, alen, chans;
	struct eng_auth *a;
	size_t blob = 0, off = 0;
	uint16_t npat;
	int64_t exp;

	*out = NULL;
	if (!eng_ho_get_u8(r))
		return r->err ? -EBADMSG : 0;
	exp = (int64_t)eng_ho_get_u64(r);
	ulen = eng_ho_get_u8(r);
	uid = (const char *)eng_ho_get(r, ulen);
	alen = eng_ho_get_u8(r);
	app = (const char *)eng_ho_get(r, alen);
	chans = eng_ho_get_u8(r);
	npat = eng_ho_get_u16(r);
	if (r->err || !uid || !uid_ok(uid, ulen) || npat > ENG_MAX_PATTERNS ||
	    (alen && !app_ok(app, alen)))
		return -EBADMSG;
	for (unsigned i = 0; i < npat; i++) {
		plen[i] = eng_ho_get_u8(r);
		pat[i] = (const char *)eng_ho_get(r, plen[i]);
		if (r->err || !pattern_ok(pat[i], plen[i]))
			return -EBADMSG;
		blob += plen[i] + 1u;
	}
	a = eng_malloc(sizeof(*a) + npat * sizeof(a->pat[0]) + blob);
	if (!a)
		return -ENOMEM;
	memset(a, 0, sizeof(*a));
	a->exp = exp;
	a->uid_len = ulen;
	memcpy(a->uid, uid, ulen);
	a->app_len = alen;
	memcpy(a->app, app, alen);
	a->has_chans = chans != 0;
	a->npat = npat;
	for (unsigned i = 0; i < npat; i++) {
		char *dst = (char *)&a->pat[npat] + off;

		memcpy(dst, pat[i], plen[i]);
		dst[plen[i]] = '\0';
		a->pat[i] = dst;
		off += plen[i] + 1u;
	}
	*out = a;
	return 0;
}
