/* SPDX-License-Identifier: MIT */
/*
 * Description: hs_parse() on valid, malformed and oversized request heads,
 * each fed as every truncated prefix (in an exact-size heap copy, so ASan
 * sees any read past len) and one byte at a time; the RFC 6455 upgrade
 * checks, Sec-WebSocket-Accept, and the response writers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "hs.h"

#define RL	"GET /chat?room=1 HTTP/1.1\r\n"
#define HOST	"Host: example.com\r\n"
#define UPG	"Upgrade: websocket\r\n"
#define CONN	"Connection: Upgrade\r\n"
#define KEY	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER	"Sec-WebSocket-Version: 13\r\n"
#define GOOD	RL HOST UPG CONN KEY VER "\r\n"

static int nchecks;

struct hs_ctx {
	struct hs_req *r;
	const struct hs_limits *lim;
};

static ssize_t hs_fn(void *ctx, const uint8_t *p, size_t n)
{
	struct hs_ctx *c = ctx;

	return hs_parse(c->r, p, n, c->lim);
}

/*
 * hs_parse() on @in[0..@len) fed in every way t_check_prefixes() knows,
 * against @want, the whole input's result (@at: where an error must first
 * show, when not 0). @r gets the result.
 */
static int check_parse(const char *name, const char *in, size_t len,
		       ssize_t want, size_t at, const struct hs_limits *lim,
		       struct hs_req *r)
{
	struct hs_ctx c = { r, lim };

	nchecks++;
	if (t_check_prefixes(name, "head", (const uint8_t *)in, len, want, at,
			     hs_fn, &c))
		return 1;
	/* leave @r pointing into @in, which outlives the heap copies */
	return hs_parse(r, (const uint8_t *)in, len, lim) != want;
}

static int str_is(const struct hs_str *s, const char *lit)
{
	return s->p && s->len == strlen(lit) && !memcmp(s->p, lit, s->len);
}

static int test_valid_upgrade(void)
{
	static const char req[] = RL HOST UPG CONN KEY VER
		"Origin: https://example.com\r\n"
		"Sec-WebSocket-Protocol: chat, superchat\r\n"
		"Sec-WebSocket-Extensions: permessage-deflate\r\n"
		"Authorization: Bearer x\r\n"
		"\r\n"
		"\x81\x85";	/* a frame already behind the head */
	size_t head = sizeof(req) - 1 - 2;
	char acc[HS_ACCEPT_LEN + 1];
	struct hs_req r;

	if (check_parse("valid", req, sizeof(req) - 1, (ssize_t)head, 0,
			NULL, &r))
		return 1;
	T_CHECK(str_is(&r.method, "GET"));
	T_CHECK(str_is(&r.path, "/chat"));
	T_CHECK(str_is(&r.query, "room=1"));
	T_CHECK(r.minor_version == 1);
	T_CHECK(r.nheaders == 9);
	T_CHECK(r.content_length == -1);
	T_CHECK(str_is(&r.host, "example.com"));
	T_CHECK(str_is(&r.ws_key, "dGhlIHNhbXBsZSBub25jZQ=="));
	T_CHECK(str_is(&r.ws_version, "13"));
	T_CHECK(str_is(&r.ws_protocol, "chat, superchat"));
	T_CHECK(str_is(&r.ws_extensions, "permessage-deflate"));
	T_CHECK(str_is(&r.origin, "https://example.com"));
	T_CHECK(str_is(&r.authorization, "Bearer x"));
	T_CHECK(r.flags == (HS_F_UPGRADE_WS | HS_F_CONN_UPGRADE));
	T_CHECK(hs_check_upgrade(&r) == 0);
	T_CHECK(hs_accept_key(&r.ws_key, acc) == 0);
	T_CHECK(!strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
	return 0;
}

static int test_fields(void)
{
	static const char q[] = "GET /? HTTP/1.1\r\n"
		"Host:\t example.com \t\r\n"
		"X-Empty:\r\n"
		"X-Inner: a  b\r\n"
		"Content-Length: 0042\r\n"
		"Content-Length: 42\r\n"
		"Transfer-Encoding: chunked\r\n"
		"Connection: keep-alive, close\r\n"
		"\r\n";
	static const char plain[] = "OPTIONS * HTTP/1.0\r\n\r\n";
	struct hs_req r, keep;

	if (check_parse("fields", q, sizeof(q) - 1, sizeof(q) - 1, 0, NULL, &r))
		return 1;
	T_CHECK(str_is(&r.path, "/"));
	T_CHECK(r.query.p && r.query.len == 0);
	T_CHECK(str_is(&r.host, "example.com"));
	T_CHECK(r.content_length == 42);
	T_CHECK(r.flags == (HS_F_CHUNKED | HS_F_CONN_CLOSE));
	T_CHECK(r.nheaders == 7);
	T_CHECK(!r.ws_key.p && !r.origin.p);

	if (check_parse("plain", plain, sizeof(plain) - 1, sizeof(plain) - 1,
			0, NULL, &r))
		return 1;
	T_CHECK(str_is(&r.method, "OPTIONS") && str_is(&r.path, "*"));
	T_CHECK(r.minor_version == 0 && r.nheaders == 0 && !r.host.p);
	T_CHECK(r.query.len == 0);

	/* @r is written only on success */
	memset(&r, 0xa5, sizeof(r));
	keep = r;
	T_CHECK(hs_parse(&r, (const uint8_t *)GOOD, 20, NULL) == -EAGAIN);
	T_CHECK(hs_parse(&r, (const uint8_t *)"GET /\n", 6, NULL) == -EBADMSG);
	T_CHECK(!memcmp(&r, &keep, sizeof(r)));
	return 0;
}

struct hcase {
	const char *name;
	const char *in;
	size_t len;
	ssize_t parse;	/* 0: the whole input is one valid head */
	int status;	/* hs_check_upgrade(), or hs_error_status() */
	size_t at;	/* for errors: bytes needed to see it; 0 = unchecked */
};

#define C(n, lit, p, st, a) { n, lit, sizeof(lit) - 1, p, st, a }

static const struct hcase cases[] = {
	C("good", GOOD, 0, 0, 0),
	C("conn list", RL HOST "Upgrade: WebSocket\r\n"
	  "Connection: keep-alive, Upgrade\r\n" KEY VER "\r\n", 0, 0, 0),
	C("conn list nows", RL HOST "Upgrade: h2c,websocket\r\n"
	  "Connection: ,,keep-alive,UPGRADE ,\r\n" KEY VER "\r\n", 0, 0, 0),
	C("conn split", RL HOST UPG "Connection: keep-alive\r\n"
	  "Connection: upgrade\r\n" KEY VER "\r\n", 0, 0, 0),
	C("ows version", RL HOST UPG CONN KEY
	  "Sec-WebSocket-Version: \t13 \t\r\n\r\n", 0, 0, 0),
	C("cl dup same", RL HOST UPG CONN KEY VER "Content-Length: 5\r\n"
	  "Content-Length: 5\r\n\r\n", 0, 0, 0),

	/* hs_check_upgrade() */
	C("post", "POST /chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n",
	  0, 405, 0),
	C("get lower", "get /chat HTTP/1.1\r\n" HOST UPG CONN KEY VER "\r\n",
	  0, 405, 0),
	C("http/1.0", "GET /chat HTTP/1.0\r\n" HOST UPG CONN KEY VER "\r\n",
	  0, 400, 0),
	C("no host", RL UPG CONN KEY VER "\r\n", 0, 400, 0),
	C("no upgrade", RL HOST CONN KEY VER "\r\n", 0, 400, 0),
	C("upgrade h2c", RL HOST "Upgrade: h2c\r\n" CONN KEY VER "\r\n",
	  0, 400, 0),
	C("upgrade wsx", RL HOST "Upgrade: websocketx\r\n" CONN KEY VER
	  "\r\n", 0, 400, 0),
	C("no connection", RL HOST UPG KEY VER "\r\n", 0, 400, 0),
	C("conn keep-alive", RL HOST UPG "Connection: keep-alive\r\n" KEY VER
	  "\r\n", 0, 400, 0),
	C("conn upgraded", RL HOST UPG "Connection: upgraded\r\n" KEY VER
	  "\r\n", 0, 400, 0),
	C("no key", RL HOST UPG CONN VER "\r\n", 0, 400, 0),
	C("short key", RL HOST UPG CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n"
	  VER "\r\n", 0, 400, 0),
	C("long key", RL HOST UPG CONN
	  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE=\r\n" VER "\r\n",
	  0, 400, 0),
	C("key no pad", RL HOST UPG CONN
	  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA\r\n" VER "\r\n",
	  0, 400, 0),
	C("key bad char", RL HOST UPG CONN
	  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==\r\n" VER "\r\n",
	  0, 400, 0),
	C("key empty", RL HOST UPG CONN "Sec-WebSocket-Key:\r\n" VER "\r\n",
	  0, 400, 0),
	C("dup key", RL HOST UPG CONN KEY KEY VER "\r\n", 0, 400, 0),
	C("version 8", RL HOST UPG CONN KEY "Sec-WebSocket-Version: 8\r\n"
	  "\r\n", 0, 426, 0),
	C("version 130", RL HOST UPG CONN KEY "Sec-WebSocket-Version: 130\r\n"
	  "\r\n", 0, 426, 0),
	C("no version", RL HOST UPG CONN KEY "\r\n", 0, 426, 0),
	C("dup version", RL HOST UPG CONN KEY VER VER "\r\n", 0, 426, 0),

	/* malformed: 400 from hs_parse(), found at the first bad byte */
	C("lf request line", "GET / HTTP/1.1\n" HOST "\r\n", -EBADMSG, 400, 15),
	C("lf header", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
	  -EBADMSG, 400, 24),
	C("lf end", "GET / HTTP/1.1\r\nHost: a\r\n\n", -EBADMSG, 400, 26),
	C("cr no lf", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", -EBADMSG, 400, 25),
	C("obs-fold", "GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n", -EBADMSG, 400, 25),
	C("obs-fold tab", "GET / HTTP/1.1\r\nX-A: b\r\n\tc\r\n\r\n",
	  -EBADMSG, 400, 25),
	C("leading ws", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", -EBADMSG, 400, 17),
	C("ctl value", "GET / HTTP/1.1\r\nX-A: b\x01" "c\r\n\r\n",
	  -EBADMSG, 400, 23),
	C("del value", "GET / HTTP/1.1\r\nX-A: b\x7f\r\n\r\n", -EBADMSG, 400, 23),
	C("nul value", "GET / HTTP/1.1\r\nX-A: \0\r\n\r\n", -EBADMSG, 400, 22),
	C("ctl name", "GET / HTTP/1.1\r\nX\x01: b\r\n\r\n", -EBADMSG, 400, 18),
	C("space colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", -EBADMSG, 400, 21),
	C("empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", -EBADMSG, 400, 17),
	C("paren name", "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", -EBADMSG, 400, 19),
	C("no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", -EBADMSG, 400, 21),
	C("utf8 name", "GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n", -EBADMSG, 400, 18),
	C("two spaces", "GET  / HTTP/1.1\r\n\r\n", -EBADMSG, 400, 5),
	C("tab method", "GET\t/ HTTP/1.1\r\n\r\n", -EBADMSG, 400, 4),
	C("no target", "GET HTTP/1.1\r\n\r\n", -EBADMSG, 400, 13),
	C("leading crlf", "\r\nGET / HTTP/1.1\r\n\r\n", -EBADMSG, 400, 1),
	C("empty", "\r\n\r\n", -EBADMSG, 400, 1),
	C("utf8 target", "GET /\xc3\xa9 HTTP/1.1\r\n\r\n", -EBADMSG, 400, 6),
	C("http/2", "GET / HTTP/2.0\r\n\r\n", -EBADMSG, 400, 12),
	C("http lower", "GET / http/1.1\r\n\r\n", -EBADMSG, 400, 7),
	C("http/1.x", "GET / HTTP/1.x\r\n\r\n", -EBADMSG, 400, 14),
	C("http/1.10", "GET / HTTP/1.10\r\n\r\n", -EBADMSG, 400, 15),
	C("no version", "GET /\r\n\r\n", -EBADMSG, 400, 6),
	C("dup host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
	  -EBADMSG, 400, 34),
	C("cl alpha", "GET / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n",
	  -EBADMSG, 400, 37),
	C("cl neg", "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
	  -EBADMSG, 400, 36),
	C("cl plus", "GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
	  -EBADMSG, 400, 36),
	C("cl empty", "GET / HTTP/1.1\r\nContent-Length: \r\n\r\n",
	  -EBADMSG, 400, 34),
	C("cl list", "GET / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
	  -EBADMSG, 400, 38),
	C("cl overflow", "GET / HTTP/1.1\r\n"
	  "Content-Length: 99999999999999999999\r\n\r\n", -EBADMSG, 400, 54),
	C("cl dup differ", "GET / HTTP/1.1\r\nContent-Length: 5\r\n"
	  "Content-Length: 6\r\n\r\n", -EBADMSG, 400, 54),
};

static int test_cases(void)
{
	const struct hcase *c;
	struct hs_req r;
	size_t i;
	int st;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c = &cases[i];
		if (check_parse(c->name, c->in, c->len,
				c->parse ? c->parse : (ssize_t)c->len, c->at,
				NULL, &r))
			return 1;
		st = c->parse ? hs_error_status((int)c->parse) :
			hs_check_upgrade(&r);
		if (st != c->status)
			T_FAIL("%s: status %d, want %d", c->name, st, c->status);
	}
	return 0;
}

/* "GET / HTTP/1.1\r\nX: aaa...\r\n\r\n", exactly @len bytes (>= 22). */
static char *head_of(size_t len)
{
	char *s = malloc(len + 1);

	memset(s, 'a', len);
	memcpy(s, "GET / HTTP/1.1\r\nX: ", 19);
	memcpy(s + len - 4, "\r\n\r\n", 4);
	s[len] = '\0';
	return s;
}

static int test_limits(void)
{
	struct hs_limits lim = { .max_bytes = 64, .max_headers = 4 };
	struct hs_limits def = { HS_DEF_MAX_BYTES, HS_DEF_MAX_HEADERS };
	char many[2048], *s;
	struct hs_req r;
	size_t n;
	int i, ret;

	s = head_of(64);
	ret = check_parse("64 of 64", s, 64, 64, 0, &lim, &r);
	free(s);
	if (ret)
		return 1;
	/* 65 bytes cannot fit: the 64th byte already proves it */
	s = head_of(65);
	ret = check_parse("65 of 64", s, 65, -EMSGSIZE, 64, &lim, &r);
	free(s);
	if (ret)
		return 1;
	T_CHECK(hs_error_status(-EMSGSIZE) == 431);

	/* a malformed byte inside the limit is still a 400 */
	T_CHECK(hs_parse(&r, (const uint8_t *)"GET / HTTP/1.1\r\n\x01", 17,
			 &lim) == -EBADMSG);

	s = head_of(HS_DEF_MAX_BYTES + 100);
	ret = check_parse("9k default", s, HS_DEF_MAX_BYTES + 100, -EMSGSIZE,
			  HS_DEF_MAX_BYTES, NULL, &r);
	free(s);
	if (ret)
		return 1;
	s = head_of(HS_DEF_MAX_BYTES);
	ret = hs_parse(&r, (const uint8_t *)s, HS_DEF_MAX_BYTES, &def);
	free(s);
	T_CHECK(ret == HS_DEF_MAX_BYTES);

	/* four headers fit, the first byte of a fifth is too many */
	n = (size_t)sprintf(many, "GET / HTTP/1.1\r\n");
	for (i = 0; i < 4; i++)
		n += (size_t)sprintf(many + n, "X-%d: v\r\n", i);
	strcpy(many + n, "\r\n");
	if (check_parse("4 headers", many, n + 2, (ssize_t)n + 2, 0, &lim, &r))
		return 1;
	T_CHECK(r.nheaders == 4);
	strcpy(many + n, "X-4: v\r\n\r\n");
	if (check_parse("5 headers", many, n + 10, -EMSGSIZE, n + 1, &lim, &r))
		return 1;

	n = (size_t)sprintf(many, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HS_DEF_MAX_HEADERS + 1; i++)
		n += (size_t)sprintf(many + n, "X-%d: v\r\n", i);
	strcpy(many + n, "\r\n");
	if (check_parse("65 headers", many, n + 2, -EMSGSIZE, 0, NULL, &r))
		return 1;
	return 0;
}

static int test_accept(void)
{
	struct hs_str k = { "dGhlIHNhbXBsZSBub25jZQ==", 24 };
	struct hs_str empty = { "", 0 };
	char acc[HS_ACCEPT_LEN + 1];

	T_CHECK(hs_accept_key(&k, acc) == 0);
	T_CHECK(!strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
	T_CHECK(strlen(acc) == HS_ACCEPT_LEN);
	T_CHECK(hs_accept_key(&empty, acc) == -EINVAL);
	return 0;
}

/* @fn must write @want exactly with cap >= its length, and -ENOSPC below. */
#define CHECK_WRITER(want, cap_var, call) do {				\
	size_t wl = strlen(want);					\
	for (cap_var = 0; cap_var <= wl + 1; cap_var++) {		\
		char *out = malloc(cap_var ? cap_var : 1);		\
		ssize_t ret = (call);					\
		int ok = cap_var <= wl ? ret == -ENOSPC :		\
			(ret == (ssize_t)wl && !memcmp(out, want, wl));	\
		free(out);						\
		if (!ok)						\
			T_FAIL("cap %zu: got %zd for \"%s\"",		\
			       cap_var, ret, want);			\
	}								\
} while (0)

static int test_writers(void)
{
	static const char r101[] = "HTTP/1.1 101 Switching Protocols\r\n"
		"Upgrade: websocket\r\nConnection: Upgrade\r\n"
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
	static const char r404[] = "HTTP/1.1 404 Not Found\r\n"
		"Allow: GET\r\nContent-Type: text/plain\r\n"
		"Content-Length: 4\r\nCache-Control: no-store\r\n"
		"Connection: close\r\n\r\nnope";
	static const char r200[] = "HTTP/1.1 200 OK\r\n"
		"Content-Type: application/json\r\n"
		"Content-Length: 2\r\nCache-Control: no-store\r\n"
		"Keep-Alive: timeout=60\r\n\r\n{}";
	static const char r204[] = "HTTP/1.1 204 No Content\r\n"
		"Cache-Control: no-store\r\nConnection: close\r\n\r\n";
	struct hs_str k = { "dGhlIHNhbXBsZSBub25jZQ==", 24 };
	static const int listed[] = { 101, 200, 204, 400, 401, 403, 404, 405,
				      408, 413, 426, 429, 431, 500, 503 };
	char out[64];
	size_t cap, i;

	nchecks += 4;
	CHECK_WRITER(r101, cap, hs_write_101(out, cap, &k));
	CHECK_WRITER(r404, cap, hs_write_response(out, cap, 404,
			"Allow: GET\r\n", NULL, "nope", 4, 0));
	CHECK_WRITER(r200, cap, hs_write_response(out, cap, 200, NULL,
			"application/json", "{}", 2, 60));
	CHECK_WRITER(r204, cap, hs_write_response(out, cap, 204, NULL, NULL,
			NULL, 0, 0));
	T_CHECK(hs_write_response(out, sizeof(out), 204, NULL, NULL, "x", 1,
				  0) == -EINVAL);

	for (i = 0; i < sizeof(listed) / sizeof(listed[0]); i++)
		if (!strcmp(hs_reason(listed[i]), "Unknown"))
			T_FAIL("no reason for %d", listed[i]);
	T_CHECK(!strcmp(hs_reason(400), "Bad Request"));
	T_CHECK(!strcmp(hs_reason(431), "Request Header Fields Too Large"));
	T_CHECK(!strcmp(hs_reason(299), "Unknown"));
	T_CHECK(hs_error_status(-EBADMSG) == 400);
	T_CHECK(hs_error_status(-EMSGSIZE) == 431);
	return 0;
}

/* Expect: 100-continue, any other expectation, and the reasons used. */
static int test_expect(void)
{
	static const char cont[] = "POST /p HTTP/1.1\r\nHost: h\r\n"
		"Expect: 100-Continue \r\nContent-Length: 5\r\n\r\n";
	static const char other[] = "POST /p HTTP/1.1\r\nHost: h\r\n"
		"Expect: 100-continue, x\r\n\r\n";
	struct hs_req r;

	if (check_parse("expect", cont, sizeof(cont) - 1, sizeof(cont) - 1,
			0, NULL, &r))
		return 1;
	T_CHECK(r.flags == HS_F_EXPECT_CONTINUE);
	if (check_parse("expect other", other, sizeof(other) - 1,
			sizeof(other) - 1, 0, NULL, &r))
		return 1;
	T_CHECK(r.flags == HS_F_EXPECT_OTHER);
	T_CHECK(!strcmp(hs_reason(100), "Continue"));
	T_CHECK(!strcmp(hs_reason(411), "Length Required"));
	T_CHECK(!strcmp(hs_reason(417), "Expectation Failed"));
	return 0;
}

static int test_str_eq(void)
{
	struct hs_str s = { "WebSocket", 9 }, none = { NULL, 0 };

	T_CHECK(hs_str_eq(&s, "websocket"));
	T_CHECK(hs_str_eq(&s, "WEBSOCKET"));
	T_CHECK(!hs_str_eq(&s, "websockets"));
	T_CHECK(!hs_str_eq(&s, "websocke"));
	T_CHECK(!hs_str_eq(&none, ""));
	s.len = 0;
	T_CHECK(hs_str_eq(&s, ""));
	return 0;
}

int main(void)
{
	if (test_valid_upgrade() || test_fields() || test_cases() ||
	    test_limits() || test_accept() || test_writers() || test_expect() ||
	    test_str_eq())
		return T_EXIT_FAIL;
	printf("test-proto-hs: %d parser inputs, %zu table cases: ok\n",
	       nchecks, sizeof(cases) / sizeof(cases[0]));
	return T_EXIT_PASS;
}
