/* SPDX-License-Identifier: MIT */
/*
 * hs: the HTTP/1.1 request-head parser and the WebSocket opening handshake.
 * hs_parse() is stateless and rescans the whole buffer on every call, the
 * way picohttpparser does; one pass is O(n) and decides at the first byte
 * that makes the head malformed, so a bad prefix fails without waiting for
 * the rest. The response writers format into caller memory only.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "hs.h"

#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define GUID_LEN	(sizeof(WS_GUID) - 1)
#define MAX_KEY_LEN	128	/* valid keys are 24; bounds a stack buffer */

/* tchar from RFC 9110 section 5.6.2, as a 256-entry table. */
static const uint8_t tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
	['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
	['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static inline int lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int mem_ieq(const char *a, size_t alen, const char *lit)
{
	size_t i;

	for (i = 0; i < alen; i++) {
		/* stop at lit's end: a shorter lit never matches */
		if (!lit[i] || lower((uint8_t)a[i]) != lower((uint8_t)lit[i]))
			return 0;
	}
	return lit[i] == '\0';
}

int hs_str_eq(const struct hs_str *s, const char *lit)
{
	if (!s->p)
		return 0;
	return mem_ieq(s->p, s->len, lit);
}

static inline int is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* Whether the comma-separated list @v..@v+@n holds token @tok (any case). */
static int list_has(const char *v, size_t n, const char *tok)
{
	size_t i = 0, s, e;

	while (i < n) {
		while (i < n && (is_ows(v[i]) || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && is_ows(v[e - 1]))
			e--;
		if (e > s && mem_ieq(v + s, e - s, tok))
			return 1;
	}
	return 0;
}

/*
 * The end of the list element starting at @i: the next comma outside a
 * quoted-string, or @n. An unterminated quote runs to @n.
 */
static size_t elem_end(const char *v, size_t n, size_t i)
{
	int quoted = 0;

	for (; i < n; i++) {
		if (quoted && v[i] == '\\')
			i++;		/* quoted-pair: skip the escaped byte */
		else if (v[i] == '"')
			quoted = !quoted;
		else if (!quoted && v[i] == ',')
			break;
	}
	return i < n ? i : n;
}

static size_t skip_ows(const char *v, size_t n, size_t i)
{
	while (i < n && is_ows((uint8_t)v[i]))
		i++;
	return i;
}

static size_t skip_token(const char *v, size_t n, size_t i)
{
	while (i < n && tchar[(uint8_t)v[i]])
		i++;
	return i;
}

/*
 * Reads a parameter value at *@i: a token, or a quoted-string whose
 * unescaped text must be a token (RFC 6455 section 9.1). Up to @cap - 1
 * bytes of the text go to @out with a NUL; a longer one is cut to
 * @cap - 1, which no valid window value is. Returns 0, or -EBADMSG.
 */
static int param_value(const char *v, size_t n, size_t *i, char *out,
		       size_t cap)
{
	size_t k = *i, len = 0;
	uint8_t c;

	if (k < n && v[k] != '"') {
		*i = skip_token(v, n, k);
		if (*i == k)
			return -EBADMSG;
		len = *i - k < cap - 1 ? *i - k : cap - 1;
		memcpy(out, v + k, len);
		out[len] = '\0';
		return 0;
	}
	for (k++; k < n && v[k] != '"'; k++) {
		if (v[k] == '\\' && ++k >= n)
			return -EBADMSG;
		c = (uint8_t)v[k];
		if (!tchar[c])
			return -EBADMSG;
		if (len < cap - 1)
			out[len++] = (char)c;
	}
	if (k >= n || len == 0)
		return -EBADMSG;
	out[len] = '\0';
	*i = k + 1;
	return 0;
}

/* A window-bits value: 8..15 in decimal, no leading zero. 0 if not. */
static unsigned window_bits(const char *s)
{
	if (s[0] >= '8' && s[0] <= '9' && !s[1])
		return (unsigned)(s[0] - '0');
	if (s[0] == '1' && s[1] >= '0' && s[1] <= '5' && !s[2])
		return 10u + (unsigned)(s[1] - '0');
	return 0;
}

/*
 * The parameters of one permessage-deflate offer, @v[@i..@n) after its
 * name. Sets *@smax to server_max_window_bits, 0 when absent. Returns 0
 * for an offer we may accept, -EBADMSG to decline it.
 */
static int deflate_params(const char *v, size_t n, size_t i, uint8_t *smax)
{
	enum { SNCT = 1, CNCT = 2, SMAX = 4, CMAX = 8 };
	unsigned seen = 0, bit, bits;
	size_t ns, ne;
	char val[4];
	int has_val;

	*smax = 0;
	for (i = skip_ows(v, n, i); i < n; i = skip_ows(v, n, i)) {
		if (v[i] != ';')
			return -EBADMSG;
		ns = skip_ows(v, n, i + 1);
		ne = skip_token(v, n, ns);
		if (ne == ns)
			return -EBADMSG;
		i = skip_ows(v, n, ne);
		has_val = i < n && v[i] == '=';
		if (has_val) {
			i = skip_ows(v, n, i + 1);
			if (param_value(v, n, &i, val, sizeof(val)))
				return -EBADMSG;
		}
		if (mem_ieq(v + ns, ne - ns, "server_no_context_takeover"))
			bit = SNCT;
		else if (mem_ieq(v + ns, ne - ns, "client_no_context_takeover"))
			bit = CNCT;
		else if (mem_ieq(v + ns, ne - ns, "server_max_window_bits"))
			bit = SMAX;
		else if (mem_ieq(v + ns, ne - ns, "client_max_window_bits"))
			bit = CMAX;
		else
			return -EBADMSG;	/* not defined for an offer */
		if (seen & bit)
			return -EBADMSG;	/* 7.1: a repeat declines */
		seen |= bit;
		bits = has_val ? window_bits(val) : 0;
		if ((bit & (SNCT | CNCT)) && has_val)
			return -EBADMSG;
		/* client_max_window_bits alone says "I can take a value" */
		if ((bit == SMAX && !bits) || (bit == CMAX && has_val && !bits))
			return -EBADMSG;
		if (bit == SMAX)
			*smax = (uint8_t)bits;
	}
	return 0;
}

void hs_deflate_offers(struct deflate_offers *o, const char *v, size_t len)
{
	size_t i = 0, e, ns, ne;
	uint8_t smax;

	while (i < len) {
		e = elem_end(v, len, i);
		ns = skip_ows(v, e, i);
		ne = skip_token(v, e, ns);
		/* Other extensions and empty elements are not ours. */
		if (mem_ieq(v + ns, ne - ns, "permessage-deflate")) {
			if (deflate_params(v, e, ne, &smax)) {
				if (o->declined < UINT8_MAX)
					o->declined++;
			} else if (o->n < DEFLATE_MAX_OFFERS) {
				o->smax[o->n++] = smax;
			}
		}
		i = e + 1;
	}
}

static int parse_content_length(const char *v, size_t n, int64_t *out)
{
	int64_t x = 0;
	size_t i;

	if (!n)
		return -EBADMSG;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EBADMSG;
		if (x > (INT64_MAX - 9) / 10)
			return -EBADMSG;	/* no sane body is this big */
		x = x * 10 + (v[i] - '0');
	}
	*out = x;
	return 0;
}

static void set_once(struct hs_str *dst, const char *v, size_t n)
{
	if (!dst->p) {
		dst->p = v;
		dst->len = (uint32_t)n;
	}
}

/* Records one complete header line: the fields the handshake needs. */
static int on_header(struct hs_req *r, const char *name, size_t nlen,
		     const char *v, size_t vlen)
{
	int64_t cl;

	/* Dispatch on length first so most unknown headers cost one compare. */
	switch (nlen) {
	case 4:
		if (mem_ieq(name, nlen, "host")) {
			/* RFC 9112 section 3.2: more than one Host is a 400. */
			if (r->host.p)
				return -EBADMSG;
			set_once(&r->host, v, vlen);
		}
		break;
	case 6:
		if (mem_ieq(name, nlen, "origin"))
			set_once(&r->origin, v, vlen);
		else if (mem_ieq(name, nlen, "expect"))
			/* RFC 9110 10.1.1: 100-continue is the only one */
			r->flags |= mem_ieq(v, vlen, "100-continue") ?
				    HS_F_EXPECT_CONTINUE : HS_F_EXPECT_OTHER;
		break;
	case 7:
		if (mem_ieq(name, nlen, "upgrade") &&
		    list_has(v, vlen, "websocket"))
			r->flags |= HS_F_UPGRADE_WS;
		break;
	case 10:
		if (mem_ieq(name, nlen, "connection")) {
			if (list_has(v, vlen, "upgrade"))
				r->flags |= HS_F_CONN_UPGRADE;
			if (list_has(v, vlen, "close"))
				r->flags |= HS_F_CONN_CLOSE;
		} else if (mem_ieq(name, nlen, "user-agent") &&
			   deflate_ua_broken(v, vlen)) {
			r->deflate.broken = 1;
		}
		break;
	case 13:
		if (mem_ieq(name, nlen, "authorization"))
			set_once(&r->authorization, v, vlen);
		break;
	case 14:
		if (mem_ieq(name, nlen, "content-length")) {
			if (parse_content_length(v, vlen, &cl))
				return -EBADMSG;
			/* Differing lengths invite smuggling; repeats are fine. */
			if (r->content_length >= 0 && r->content_length != cl)
				return -EBADMSG;
			r->content_length = cl;
		}
		break;
	case 17:
		if (mem_ieq(name, nlen, "transfer-encoding"))
			r->flags |= HS_F_CHUNKED;
		else if (mem_ieq(name, nlen, "sec-websocket-key")) {
			if (r->ws_key.p)
				r->flags |= HS_F_DUP_KEY;
			set_once(&r->ws_key, v, vlen);
		}
		break;
	case 21:
		if (mem_ieq(name, nlen, "sec-websocket-version")) {
			if (r->ws_version.p)
				r->flags |= HS_F_DUP_VERSION;
			set_once(&r->ws_version, v, vlen);
		}
		break;
	case 22:
		if (mem_ieq(name, nlen, "sec-websocket-protocol"))
			set_once(&r->ws_protocol, v, vlen);
		break;
	case 24:
		if (mem_ieq(name, nlen, "sec-websocket-extensions")) {
			set_once(&r->ws_extensions, v, vlen);
			/* RFC 9110 5.3: repeated lines are one list */
			hs_deflate_offers(&r->deflate, v, vlen);
		}
		break;
	}
	return 0;
}

/* Consumes CRLF at *@i: a lone CR waits for more, anything else is malformed. */
static int crlf(const uint8_t *b, size_t n, size_t *i)
{
	if (*i >= n)
		return -EAGAIN;
	if (b[*i] != '\r')
		return -EBADMSG;
	if (++*i >= n)
		return -EAGAIN;
	if (b[*i] != '\n')
		return -EBADMSG;
	++*i;
	return 0;
}

static ssize_t request_line(struct hs_req *r, const uint8_t *b, size_t n)
{
	static const char ver[] = "HTTP/1.";
	size_t i = 0, s, k, q;
	int ret;

	while (i < n && tchar[b[i]])
		i++;
	if (i >= n)
		return -EAGAIN;
	if (b[i] != ' ' || !i)
		return -EBADMSG;
	r->method.p = (const char *)b;
	r->method.len = (uint32_t)i;

	/* The target: visible ASCII only; raw UTF-8 must be percent-encoded. */
	s = ++i;
	q = 0;
	while (i < n && b[i] > ' ' && b[i] < 0x7f) {
		if (b[i] == '?' && !q)
			q = i;
		i++;
	}
	if (i >= n)
		return -EAGAIN;
	if (b[i] != ' ' || i == s)
		return -EBADMSG;
	r->path.p = (const char *)b + s;
	r->path.len = (uint32_t)((q ? q : i) - s);
	r->query.p = q ? (const char *)b + q + 1 : (const char *)b + i;
	r->query.len = q ? (uint32_t)(i - q - 1) : 0;

	i++;
	for (k = 0; k < sizeof(ver) - 1; k++, i++) {
		if (i >= n)
			return -EAGAIN;
		if (b[i] != (uint8_t)ver[k])
			return -EBADMSG;
	}
	if (i >= n)
		return -EAGAIN;
	if (b[i] < '0' || b[i] > '9')
		return -EBADMSG;
	r->minor_version = b[i++] - '0';
	ret = crlf(b, n, &i);
	return ret ? ret : (ssize_t)i;
}

/* Parses b[0..n) left to right; every return is decided by the bytes seen. */
static ssize_t parse_head(struct hs_req *r, const uint8_t *b, size_t n,
			  unsigned max_headers)
{
	size_t i, ns, nl, vs, ve;
	ssize_t ret;

	ret = request_line(r, b, n);
	if (ret < 0)
		return ret;
	i = (size_t)ret;

	for (;;) {
		if (i >= n)
			return -EAGAIN;
		if (b[i] == '\r') {
			ret = crlf(b, n, &i);
			return ret ? ret : (ssize_t)i;
		}
		/* obs-fold (RFC 9112 section 5.2): rejecting is safest. */
		if (is_ows(b[i]))
			return -EBADMSG;
		if (++r->nheaders > max_headers)
			return -EMSGSIZE;

		/* No whitespace is allowed between the name and the colon. */
		ns = i;
		while (i < n && tchar[b[i]])
			i++;
		if (i >= n)
			return -EAGAIN;
		if (b[i] != ':' || i == ns)
			return -EBADMSG;
		nl = i++ - ns;

		while (i < n && is_ows(b[i]))
			i++;
		vs = ve = i;
		for (; i < n && b[i] != '\r'; i++) {
			if (is_ows(b[i]))
				continue;
			/* field-vchar / obs-text: any control byte is malformed */
			if (b[i] < 0x20 || b[i] == 0x7f)
				return -EBADMSG;
			ve = i + 1;
		}
		ret = crlf(b, n, &i);
		if (ret)
			return ret;
		ret = on_header(r, (const char *)b + ns, nl,
				(const char *)b + vs, ve - vs);
		if (ret)
			return ret;
	}
}

ssize_t hs_parse(struct hs_req *r, const uint8_t *buf, size_t len,
		 const struct hs_limits *lim)
{
	size_t max_bytes = lim ? lim->max_bytes : HS_DEF_MAX_BYTES;
	unsigned max_headers = lim ? lim->max_headers : HS_DEF_MAX_HEADERS;
	struct hs_req t;
	ssize_t ret;

	memset(&t, 0, sizeof(t));
	t.content_length = -1;
	ret = parse_head(&t, buf, len < max_bytes ? len : max_bytes,
			 max_headers);
	/*
	 * An unfinished head that already fills max_bytes can never fit, so
	 * say so now: a caller whose buffer is exactly max_bytes would
	 * otherwise wait forever for a byte it has no room to receive.
	 */
	if (ret == -EAGAIN && len >= max_bytes)
		return -EMSGSIZE;
	if (ret >= 0)
		*r = t;
	return ret;
}

static int b64_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/*
 * 16 bytes of base64 are 22 symbols and "==". The 4 spare bits of the last
 * symbol are not required to be zero, as most decoders do not check them.
 */
static int valid_key(const struct hs_str *k)
{
	uint32_t i;

	if (!k->p || k->len != 24 || k->p[22] != '=' || k->p[23] != '=')
		return 0;
	for (i = 0; i < 22; i++)
		if (!b64_char((uint8_t)k->p[i]))
			return 0;
	return 1;
}

int hs_check_upgrade(const struct hs_req *r)
{
	/* Methods are case-sensitive (RFC 9110 section 9.1). */
	if (r->method.len != 3 || memcmp(r->method.p, "GET", 3))
		return 405;
	if (r->minor_version < 1 || !r->host.p)
		return 400;
	if (!(r->flags & HS_F_UPGRADE_WS) || !(r->flags & HS_F_CONN_UPGRADE))
		return 400;
	if ((r->flags & HS_F_DUP_KEY) || !valid_key(&r->ws_key))
		return 400;
	if ((r->flags & HS_F_DUP_VERSION) || !r->ws_version.p ||
	    r->ws_version.len != 2 || memcmp(r->ws_version.p, "13", 2))
		return 426;
	return 0;
}

int hs_accept_key(const struct hs_str *key, char out[HS_ACCEPT_LEN + 1])
{
	unsigned char in[MAX_KEY_LEN + GUID_LEN];
	unsigned char md[SHA_DIGEST_LENGTH];

	if (!key || !key->p || !key->len || key->len > MAX_KEY_LEN)
		return -EINVAL;
	memcpy(in, key->p, key->len);
	memcpy(in + key->len, WS_GUID, GUID_LEN);
	SHA1(in, key->len + GUID_LEN, md);
	/* 20 bytes encode to HS_ACCEPT_LEN chars, then it writes a NUL */
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
	return 0;
}

/* snprintf() that turns truncation into -ENOSPC. */
static ssize_t fmt_ret(int n, size_t cap)
{
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= cap)
		return -ENOSPC;
	return n;
}

ssize_t hs_write_101_ext(char *out, size_t cap, const struct hs_str *key,
			 const char *extra)
{
	char acc[HS_ACCEPT_LEN + 1];
	int ret;

	ret = hs_accept_key(key, acc);
	if (ret)
		return ret;
	return fmt_ret(snprintf(out, cap,
				"HTTP/1.1 101 Switching Protocols\r\n"
				"Upgrade: websocket\r\n"
				"Connection: Upgrade\r\n"
				"Sec-WebSocket-Accept: %s\r\n%s\r\n", acc,
				extra ? extra : ""), cap);
}

ssize_t hs_write_101(char *out, size_t cap, const struct hs_str *key)
{
	return hs_write_101_ext(out, cap, key, NULL);
}

ssize_t hs_write_response(char *out, size_t cap, int status,
			  const char *extra, const char *ctype,
			  const void *body, size_t body_len, unsigned keep_s)
{
	/* RFC 9110 section 8.6: no Content-Length on 1xx and 204, so no body. */
	int bodiless = status < 200 || status == 204;
	char conn[48];
	ssize_t n;

	if (bodiless && body_len)
		return -EINVAL;
	/* a pool that knows the idle limit never reuses a closed socket */
	if (keep_s)
		snprintf(conn, sizeof(conn), "Keep-Alive: timeout=%u\r\n",
			 keep_s);
	else
		strcpy(conn, "Connection: close\r\n");
	if (bodiless)
		n = fmt_ret(snprintf(out, cap,
				     "HTTP/1.1 %d %s\r\n%s"
				     "Cache-Control: no-store\r\n%s\r\n",
				     status, hs_reason(status), extra ? extra : "",
				     conn), cap);
	else
		n = fmt_ret(snprintf(out, cap,
				     "HTTP/1.1 %d %s\r\n%s"
				     "Content-Type: %s\r\n"
				     "Content-Length: %zu\r\n"
				     "Cache-Control: no-store\r\n%s\r\n",
				     status, hs_reason(status), extra ? extra : "",
				     ctype ? ctype : "text/plain", body_len,
				     conn), cap);
	if (n < 0)
		return n;
	/* like snprintf(), always leave a NUL: handy in logs and tests */
	if (body_len >= cap - (size_t)n)
		return -ENOSPC;
	if (body_len)
		memcpy(out + n, body, body_len);
	out[n + body_len] = '\0';
	return n + (ssize_t)body_len;
}

const char *hs_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 417: return "Expectation Failed";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	}
	return "Unknown";
}

int hs_error_status(int err)
{
	return err == -EMSGSIZE ? 431 : 400;
}
