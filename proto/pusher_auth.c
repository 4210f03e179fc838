/* SPDX-License-Identifier: MIT */
/*
 * pusher_auth: the HMAC-SHA256 signatures of the Pusher protocol: channel
 * authorization, user sign-in, webhooks and the HTTP API's signed query
 * with body_md5 (pusher.h has the contracts). Signatures are always
 * checked over the bytes received and compared with CRYPTO_memcmp(), so
 * neither a re-serialization nor the time a compare takes can be used
 * against a secret.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "pusher.h"

static const char hexdig[] = "0123456789abcdef";

/* ---- Signatures ---- */

static void to_hex(char *hex, const unsigned char *md, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		hex[2 * i] = hexdig[md[i] >> 4];
		hex[2 * i + 1] = hexdig[md[i] & 15];
	}
}

/*
 * HMAC-SHA256 with @app's secret over @parts[0..@n) back to back, in hex.
 * Parts spare the caller a copy of channel_data or of a request.
 */
static int hmac_hex(const struct pusher_app *app,
		    const struct json_slice *parts, unsigned n,
		    char hex[PUSHER_SIG_HEX])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 digest, 0),
		OSSL_PARAM_construct_end(),
	};
	unsigned char md[32];
	EVP_MAC_CTX *ctx = NULL;
	size_t mdlen = 0;
	EVP_MAC *mac;
	unsigned i;
	int ok;

	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (mac)
		ctx = EVP_MAC_CTX_new(mac);
	ok = ctx && EVP_MAC_init(ctx, (const unsigned char *)app->secret,
				 app->secret_len, params) == 1;
	for (i = 0; ok && i < n; i++)
		ok = EVP_MAC_update(ctx, (const unsigned char *)parts[i].p,
				    parts[i].len) == 1;
	ok = ok && EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) == 1 &&
	     mdlen == sizeof(md);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	if (!ok)
		return -ENOMEM;
	to_hex(hex, md, sizeof(md));
	OPENSSL_cleanse(md, sizeof(md));
	return 0;
}

static struct json_slice lit(const char *s)
{
	return (struct json_slice){ s, strlen(s) };
}

int pusher_sign_hex(const struct pusher_app *app, const void *msg,
		    size_t len, char hex[PUSHER_SIG_HEX])
{
	struct json_slice part = { msg, len };

	return hmac_hex(app, &part, 1, hex);
}

int pusher_webhook_sign(const struct pusher_app *app, const void *body,
			size_t len, char hex[PUSHER_SIG_HEX])
{
	return pusher_sign_hex(app, body, len, hex);
}

/* `KEY:HEX` of @parts into @out, NUL-terminated; returns its length. */
static ssize_t make_auth(const struct pusher_app *app,
			 const struct json_slice *parts, unsigned n, char *out)
{
	int ret;

	memcpy(out, app->key, app->key_len);
	out[app->key_len] = ':';
	ret = hmac_hex(app, parts, n, out + app->key_len + 1);
	if (ret < 0)
		return ret;
	out[app->key_len + 1 + PUSHER_SIG_HEX] = '\0';
	return (ssize_t)(app->key_len + 1 + PUSHER_SIG_HEX);
}

/*
 * Compares a received `KEY:HEX` @auth with the one @parts make. The
 * lengths and the key are public; the hex is compared in constant time.
 */
static int check_auth(const struct pusher_app *app,
		      const struct json_slice *parts, unsigned n,
		      struct json_slice auth)
{
	char want[PUSHER_AUTH_MAX + 1];
	ssize_t len;
	int diff;

	if (!auth.p || auth.len != app->key_len + 1 + PUSHER_SIG_HEX ||
	    memcmp(auth.p, app->key, app->key_len) ||
	    auth.p[app->key_len] != ':')
		return -EACCES;
	len = make_auth(app, parts, n, want);
	if (len < 0)
		return (int)len;
	diff = CRYPTO_memcmp(auth.p + app->key_len + 1, want + app->key_len + 1,
			     PUSHER_SIG_HEX);
	OPENSSL_cleanse(want, sizeof(want));
	return diff ? -EACCES : 0;
}

/* socket_id:channel[:channel_data] as parts; returns how many. */
static unsigned channel_parts(struct json_slice *parts, struct json_slice sid,
			      struct json_slice channel, struct json_slice cd)
{
	parts[0] = sid;
	parts[1] = lit(":");
	parts[2] = channel;
	if (!cd.p)
		return 3;
	parts[3] = lit(":");
	parts[4] = cd;
	return 5;
}

ssize_t pusher_channel_auth(const struct pusher_app *app,
			    struct json_slice socket_id,
			    struct json_slice channel,
			    struct json_slice channel_data, char *out)
{
	struct json_slice parts[5];
	unsigned n = channel_parts(parts, socket_id, channel, channel_data);

	return make_auth(app, parts, n, out);
}

int pusher_channel_auth_check(const struct pusher_app *app,
			      struct json_slice socket_id,
			      struct json_slice channel,
			      struct json_slice channel_data,
			      struct json_slice auth)
{
	struct json_slice parts[5];
	unsigned n = channel_parts(parts, socket_id, channel, channel_data);

	return check_auth(app, parts, n, auth);
}

/* socket_id::user::user_data as parts (pusher-http-node lib/auth.js). */
static void user_parts(struct json_slice *parts, struct json_slice sid,
		       struct json_slice user_data)
{
	parts[0] = sid;
	parts[1] = lit("::user::");
	parts[2] = user_data;
}

ssize_t pusher_user_auth(const struct pusher_app *app,
			 struct json_slice socket_id,
			 struct json_slice user_data, char *out)
{
	struct json_slice parts[3];

	user_parts(parts, socket_id, user_data);
	return make_auth(app, parts, 3, out);
}

int pusher_user_auth_check(const struct pusher_app *app,
			   struct json_slice socket_id,
			   struct json_slice user_data, struct json_slice auth)
{
	struct json_slice parts[3];

	user_parts(parts, socket_id, user_data);
	return check_auth(app, parts, 3, auth);
}

/* ---- The HTTP API ---- */

/* One query parameter; both slices point into a caller's buffer. */
struct param {
	struct json_slice key, val;
};

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decodes @s[0..@n) into @out as a form does ('+' is a space);
 * with @lower, ASCII letters are lower-cased too. Returns the length or
 * -EBADMSG for a broken %-escape.
 */
static ssize_t decode(char *out, const char *s, size_t n, bool lower)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi = i + 2 < n ? unhex(s[i + 1]) : -1;
			int lo = i + 2 < n ? unhex(s[i + 2]) : -1;

			if (hi < 0 || lo < 0)
				return -EBADMSG;
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (lower && c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[o++] = c;
	}
	return (ssize_t)o;
}

static int param_cmp(const struct param *a, const struct param *b)
{
	size_t n = a->key.len < b->key.len ? a->key.len : b->key.len;
	int c = memcmp(a->key.p, b->key.p, n);

	if (c)
		return c;
	return a->key.len < b->key.len ? -1 : a->key.len > b->key.len;
}

/*
 * Splits query @q into @v (at most PUSHER_QUERY_PARAMS), sorted by key.
 * With @buf, keys and values are percent-decoded (keys lower-cased) into
 * it (q.len bytes suffice); without, they point into @q as they are.
 * Empty pieces ("a=1&&b=2") are skipped. Returns the count, -EBADMSG
 * (a bad escape, a key twice) or -E2BIG.
 */
static int split_query(struct json_slice q, struct param *v, char *buf)
{
	size_t i = 0, used = 0;
	int n = 0, j;

	while (i < q.len) {
		const char *s = q.p + i, *amp, *eq;
		size_t len;
		struct param p;

		amp = memchr(s, '&', q.len - i);
		len = amp ? (size_t)(amp - s) : q.len - i;
		i += len + 1;
		if (!len)
			continue;
		if (n == PUSHER_QUERY_PARAMS)
			return -E2BIG;
		eq = memchr(s, '=', len);
		p.key = (struct json_slice){ s, eq ? (size_t)(eq - s) : len };
		p.val = (struct json_slice){ eq ? eq + 1 : s + len,
					     eq ? len - p.key.len - 1 : 0 };
		if (buf) {
			ssize_t k = decode(buf + used, p.key.p, p.key.len, true);
			ssize_t l;

			if (k < 0)
				return (int)k;
			p.key = (struct json_slice){ buf + used, (size_t)k };
			used += (size_t)k;
			l = decode(buf + used, p.val.p, p.val.len, false);
			if (l < 0)
				return (int)l;
			p.val = (struct json_slice){ buf + used, (size_t)l };
			used += (size_t)l;
		}
		/* insertion sort: a few dozen at most */
		for (j = n; j > 0 && param_cmp(&v[j - 1], &p) > 0; j--)
			v[j] = v[j - 1];
		if (j > 0 && !param_cmp(&v[j - 1], &p))
			return -EBADMSG;
		v[j] = p;
		n++;
	}
	return n;
}

/* The value of parameter @key (lower case) in sorted @v, or p NULL. */
static struct json_slice get_param(const struct param *v, int n,
				   const char *key)
{
	size_t len = strlen(key);
	int i;

	for (i = 0; i < n; i++)
		if (v[i].key.len == len && !memcmp(v[i].key.p, key, len))
			return v[i].val;
	return (struct json_slice){ NULL, 0 };
}

static bool eq_lit(struct json_slice s, const char *l)
{
	return s.p && s.len == strlen(l) && !memcmp(s.p, l, s.len);
}

/* MD5 of @body in lowercase hex into @hex[32] (body_md5). */
static int md5_hex(struct json_slice body, char hex[32])
{
	unsigned char md[16];
	unsigned int n = 0;

	if (EVP_Digest(body.p ? body.p : "", body.len, md, &n, EVP_md5(),
		       NULL) != 1 || n != sizeof(md))
		return -ENOMEM;
	to_hex(hex, md, sizeof(md));
	return 0;
}

/*
 * The signature over "METHOD\nPATH\nk=v&k=v..." of sorted @v, leaving
 * out auth_signature. Parts are fed to the MAC one by one: 4 per param.
 */
static int api_signature(const struct pusher_app *app,
			 const struct pusher_api_req *req,
			 const struct param *v, int n, char hex[PUSHER_SIG_HEX])
{
	struct json_slice parts[4 + 4 * PUSHER_QUERY_PARAMS];
	unsigned k = 0;
	int i;

	assert(n <= PUSHER_QUERY_PARAMS);	/* split_query()'s bound */
	parts[k++] = req->method;
	parts[k++] = lit("\n");
	parts[k++] = req->path;
	parts[k++] = lit("\n");
	for (i = 0; i < n; i++) {
		if (eq_lit(v[i].key, "auth_signature"))
			continue;
		if (k > 4)
			parts[k++] = lit("&");
		parts[k++] = v[i].key;
		parts[k++] = lit("=");
		parts[k++] = v[i].val;
	}
	return hmac_hex(app, parts, k, hex);
}

int pusher_api_check(const struct pusher_app *app,
		     const struct pusher_api_req *req, int64_t now,
		     const char **why)
{
	char buf[PUSHER_QUERY_MAX], want[PUSHER_SIG_HEX], md5[32];
	struct param v[PUSHER_QUERY_PARAMS];
	struct json_slice ts, sig, bmd5;
	int64_t t = 0;
	size_t i;
	int n, ret;

	if (req->query.len > sizeof(buf)) {
		*why = "query too long";
		return -E2BIG;
	}
	n = split_query(req->query, v, buf);
	if (n < 0) {
		*why = n == -E2BIG ? "too many query parameters" :
		       "malformed query: a bad %-escape or a parameter twice";
		return n;
	}
	if (!eq_lit(get_param(v, n, "auth_key"), app->key)) {
		*why = "auth_key missing or not this app's key";
		return -EACCES;
	}
	if (!eq_lit(get_param(v, n, "auth_version"), "1.0")) {
		*why = "auth_version must be 1.0";
		return -EACCES;
	}
	ts = get_param(v, n, "auth_timestamp");
	for (i = 0; ts.p && i < ts.len && i < 18; i++) {
		if (ts.p[i] < '0' || ts.p[i] > '9')
			break;
		t = t * 10 + (ts.p[i] - '0');
	}
	if (!ts.p || !ts.len || i != ts.len) {
		*why = "auth_timestamp must be seconds since 1970";
		return -EACCES;
	}
	sig = get_param(v, n, "auth_signature");
	if (!sig.p || sig.len != PUSHER_SIG_HEX) {
		*why = "auth_signature missing or not 64 hex digits";
		return -EACCES;
	}
	ret = api_signature(app, req, v, n, want);
	if (ret < 0)
		return ret;
	if (CRYPTO_memcmp(sig.p, want, PUSHER_SIG_HEX)) {
		*why = "invalid signature";
		return -EACCES;
	}
	/* a signed request may be replayed: only within the window */
	if (t > now + PUSHER_API_WINDOW || t < now - PUSHER_API_WINDOW) {
		*why = "auth_timestamp not within 600 s of the server's time";
		return -EACCES;
	}
	bmd5 = get_param(v, n, "body_md5");
	if (!bmd5.p && req->body.len) {
		*why = "body_md5 missing";
		return -EACCES;
	}
	if (bmd5.p) {
		ret = md5_hex(req->body, md5);
		if (ret < 0)
			return ret;
		if (bmd5.len != sizeof(md5) ||
		    CRYPTO_memcmp(bmd5.p, md5, sizeof(md5))) {
			*why = "body_md5 does not match the body";
			return -EACCES;
		}
	}
	return 0;
}

ssize_t pusher_api_sign(const struct pusher_app *app,
			const struct pusher_api_req *req, int64_t ts,
			char *out, size_t cap)
{
	char tsbuf[24], md5[32], hex[PUSHER_SIG_HEX];
	struct param v[PUSHER_QUERY_PARAMS], p;
	int n, i, j, ret, extra = 0;
	size_t len = 0;

	if (req->query.len > PUSHER_QUERY_MAX)
		return -E2BIG;
	n = split_query(req->query, v, NULL);
	if (n < 0)
		return n;
	/* room for our 4 and, in the query checked, auth_signature */
	if (n > PUSHER_QUERY_PARAMS - 5)
		return -E2BIG;
	for (i = 0; i < n; i++)
		if (eq_lit(v[i].key, "auth_key") ||
		    eq_lit(v[i].key, "auth_timestamp") ||
		    eq_lit(v[i].key, "auth_version") ||
		    eq_lit(v[i].key, "auth_signature") ||
		    eq_lit(v[i].key, "body_md5"))
			return -EINVAL;	/* ours to set, as in the SDKs */
	snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
	if (req->body.len) {
		ret = md5_hex(req->body, md5);
		if (ret < 0)
			return ret;
	}
	/* the SDKs' own parameters, merged into the sorted list */
	for (i = 0; i < 4; i++) {
		static const char *const keys[] = {
			"auth_key", "auth_timestamp", "auth_version", "body_md5",
		};
		struct json_slice vals[] = {
			{ app->key, app->key_len }, lit(tsbuf), lit("1.0"),
			{ md5, sizeof(md5) },
		};

		if (i == 3 && !req->body.len)
			break;
		p.key = lit(keys[i]);
		p.val = vals[i];
		for (j = n + extra; j > 0 && param_cmp(&v[j - 1], &p) > 0; j--)
			v[j] = v[j - 1];
		v[j] = p;
		extra++;
	}
	n += extra;
	ret = api_signature(app, req, v, n, hex);
	if (ret < 0)
		return ret;
	for (i = 0; i <= n; i++) {
		struct param *q = i < n ? &v[i] :
			&(struct param){ lit("auth_signature"),
					 { hex, sizeof(hex) } };

		if (len + q->key.len + q->val.len + 2 >= cap)
			return -ENOSPC;
		if (i)
			out[len++] = '&';
		memcpy(out + len, q->key.p, q->key.len);
		len += q->key.len;
		out[len++] = '=';
		memcpy(out + len, q->val.p, q->val.len);
		len += q->val.len;
	}
	out[len] = '\0';
	return (ssize_t)len;
}
