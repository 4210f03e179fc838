/* SPDX-License-Identifier: MIT */
/*
 * Description: proto/pusher.c. Apps from specs and text (comments, line
 * numbers, every malformed field); channel and user signatures against
 * the worked example of Pusher's auth-signatures page and at every
 * boundary (wrong key, wrong length, upper-case hex, another socket's
 * signature, channel_data changed by one byte or left out); the HTTP
 * API's signed query (sorting, decoding, duplicates, body_md5, the 600 s
 * window on both sides); channel classification with prefixes anywhere
 * but the start; event names and socket ids; client messages with data
 * as an object and as a string, from exact heap copies and every
 * truncated prefix; server events parsed back as the JSON pusher-js
 * reads, escapes included, and -ENOSPC at every short size.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "pusher.h"

#define MAX_DOC		4096

static struct json_parser *jp, *jv;

static struct json_slice S(const char *s)
{
	return (struct json_slice){ s, strlen(s) };
}

static const struct json_slice NONE = { NULL, 0 };

static int watchlist(struct json_parser *jp);

static int is(struct json_slice s, const char *want)
{
	if (!want)
		return !s.p;
	return s.p && s.len == strlen(want) && !memcmp(s.p, want, s.len);
}

/* Pusher's worked example (pusher.com/docs/channels/library_auth_reference/auth-signatures). */
static struct pusher_apps apps;
static const struct pusher_app *doc_app;

static int test_apps(void)
{
	static const struct {
		const char *spec;
		int ret;
	} cases[] = {
		{ "1:key:secret", 0 },
		{ "app-2:k.2:c2VjcmV0+/=~_-.", 0 },
		{ "1:other:secret", -EEXIST },		/* id twice */
		{ "3:key:secret", -EEXIST },		/* key twice */
		{ "", -EINVAL },
		{ "4:key4", -EINVAL },
		{ ":key5:s", -EINVAL },
		{ "6::s", -EINVAL },
		{ "7:key7:", -EINVAL },
		{ "8:ke:y8:s", -EINVAL },		/* ':' in a key */
		{ "9:key9:s:s", -EINVAL },		/* ':' in a secret */
		{ "1 0:key10:s", -EINVAL },
		{ "11:key 11:s", -EINVAL },
		{ "12:key12:s\n", -EINVAL },
		{ "13:key#13:s", -EINVAL },
		{ "14:key14:s,t", -EINVAL },
		{ "15:k\xc3\xa9y:s", -EINVAL },
	};
	const char *text = "# apps\n100:k100:s100, 101:k101:s101\n"
			   "\n  102:k102:s102 # a comment: 9:x:y\r\n"
			   "103:k103:bad!secret\n104:k104:s104\n";
	struct pusher_apps a;
	char longid[PUSHER_ID_MAX + 12];
	const char *why = NULL;
	unsigned line, i;
	int ret;

	pusher_apps_init(&a);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why = NULL;
		ret = pusher_apps_add(&a, cases[i].spec, strlen(cases[i].spec),
				      &why);
		if (ret != cases[i].ret)
			T_FAIL("'%s': %d, want %d", cases[i].spec, ret,
			       cases[i].ret);
		T_CHECK(!ret || why);
	}
	T_CHECK(a.n == 2);
	memset(longid, 'a', sizeof(longid));
	memcpy(longid + PUSHER_ID_MAX + 1, ":k:s", 4);
	T_CHECK(pusher_apps_add(&a, longid, PUSHER_ID_MAX + 5, &why) == -EINVAL);
	memmove(longid + PUSHER_ID_MAX, longid + PUSHER_ID_MAX + 1, 4);
	T_CHECK(pusher_apps_add(&a, longid, PUSHER_ID_MAX + 4, &why) == 0);

	ret = pusher_apps_parse(&a, text, strlen(text), &line, &why);
	T_CHECK(ret == -EINVAL && line == 5 && why);
	T_CHECK(a.n == 6);	/* the three before the bad one stay */
	T_CHECK(pusher_app_by_key(&a, "k102", 4) &&
		!strcmp(pusher_app_by_key(&a, "k102", 4)->secret, "s102"));
	T_CHECK(!pusher_app_by_key(&a, "k104", 4));
	T_CHECK(!pusher_app_by_key(&a, "k10", 3));
	T_CHECK(!pusher_app_by_key(&a, "k1000", 5));
	T_CHECK(pusher_app_by_id(&a, "app-2", 5) &&
		!strcmp(pusher_app_by_id(&a, "app-2", 5)->key, "k.2"));
	T_CHECK(!pusher_app_by_id(&a, "key", 3));
	T_CHECK(pusher_apps_parse(&a, " # nothing\n\n", 12, &line, &why) == 0);
	/* growth keeps every app (4, 8, 16 ...) */
	for (i = 0; i < 40; i++) {
		char spec[32];
		int n = snprintf(spec, sizeof(spec), "g%u:gk%u:gs%u", i, i, i);

		T_CHECK(pusher_apps_add(&a, spec, (size_t)n, &why) == 0);
	}
	for (i = 0; i < 40; i++) {
		char key[16];
		int n = snprintf(key, sizeof(key), "gk%u", i);

		T_CHECK(pusher_app_by_key(&a, key, (size_t)n));
	}
	T_CHECK(pusher_app_by_key(&a, "k100", 4));
	pusher_apps_exit(&a);
	T_CHECK(a.n == 0 && !a.v);
	pusher_apps_exit(&a);
	return 0;
}

static int test_channel_auth(void)
{
	const char *good = "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b466"
			   "2e34fe8c25bba48f5369f135bf843651c3a4";
	struct json_slice sid = S("1234.1234"), ch = S("private-foobar");
	char out[PUSHER_AUTH_MAX + 1], bad[PUSHER_AUTH_MAX + 8];
	const char *cd = "{\"user_id\":10,\"user_info\":{\"name\":\"Mr. C\"}}";
	size_t i;

	T_CHECK(pusher_channel_auth(doc_app, sid, ch, NONE, out) ==
		(ssize_t)strlen(good));
	T_CHECK(!strcmp(out, good));
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, S(good)) == 0);
	/* another socket, another channel, a channel_data not signed */
	T_CHECK(pusher_channel_auth_check(doc_app, S("1234.1235"), ch, NONE,
					  S(good)) == -EACCES);
	T_CHECK(pusher_channel_auth_check(doc_app, sid, S("private-foobaR"),
					  NONE, S(good)) == -EACCES);
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, S(""), S(good)) ==
		-EACCES);
	/* wrong lengths, upper case, wrong key, no key, every flipped digit */
	strcpy(bad, good);
	bad[strlen(bad) - 1] = '\0';
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, S(bad)) ==
		-EACCES);
	strcpy(bad, good);
	strcat(bad, "0");
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, S(bad)) ==
		-EACCES);
	strcpy(bad, good);
	for (i = 21; bad[i]; i++)
		if (bad[i] >= 'a' && bad[i] <= 'f')
			bad[i] = (char)(bad[i] - 'a' + 'A');
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, S(bad)) ==
		-EACCES);
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE,
					  S(good + 21)) == -EACCES);
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE,
					  S(good + 20)) == -EACCES);
	strcpy(bad, good);
	bad[0] = '3';
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, S(bad)) ==
		-EACCES);
	strcpy(bad, good);
	bad[20] = ';';
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, S(bad)) ==
		-EACCES);
	for (i = 21; good[i]; i++) {
		strcpy(bad, good);
		bad[i] = bad[i] == '0' ? '1' : '0';
		T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE,
						  S(bad)) == -EACCES);
	}
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, NONE) ==
		-EACCES);
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, S("")) ==
		-EACCES);

	/* presence: the exact bytes of channel_data, and only with them */
	ch = S("presence-foobar");
	T_CHECK(pusher_channel_auth(doc_app, sid, ch, S(cd), out) > 0);
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, S(cd), S(out)) == 0);
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, NONE, S(out)) ==
		-EACCES);
	for (i = 0; cd[i]; i++) {
		char m[64];

		strcpy(m, cd);
		m[i] ^= 1;
		T_CHECK(pusher_channel_auth_check(doc_app, sid, ch, S(m),
						  S(out)) == -EACCES);
	}
	/* the same bytes re-serialized with a space are not the same */
	T_CHECK(pusher_channel_auth_check(doc_app, sid, ch,
		S("{\"user_id\": 10,\"user_info\":{\"name\":\"Mr. C\"}}"),
		S(out)) == -EACCES);
	/* "a:b" + ":c" must not pass as "a" + ":b:c" */
	T_CHECK(pusher_channel_auth(doc_app, sid, S("presence-x:y"), NONE,
				    out) > 0);
	T_CHECK(pusher_channel_auth_check(doc_app, sid, S("presence-x"), S("y"),
					  S(out)) == 0);	/* why names
			are checked first: ':' is not in the alphabet */
	T_CHECK(pusher_channel_kind("presence-x:y", 12) == -EINVAL);
	return 0;
}

static int test_user_auth(void)
{
	const char *ud = "{\"id\":\"12345\"}";
	char out[PUSHER_AUTH_MAX + 1], hex[PUSHER_SIG_HEX];
	struct json_slice sid = S("1234.1234");

	T_CHECK(pusher_user_auth(doc_app, sid, S(ud), out) > 0);
	T_CHECK(pusher_sign_hex(doc_app, "1234.1234::user::{\"id\":\"12345\"}",
				31, hex) == 0);
	T_CHECK(!memcmp(out + 21, hex, PUSHER_SIG_HEX));
	T_CHECK(pusher_user_auth_check(doc_app, sid, S(ud), S(out)) == 0);
	T_CHECK(pusher_user_auth_check(doc_app, S("1.2"), S(ud), S(out)) ==
		-EACCES);
	T_CHECK(pusher_user_auth_check(doc_app, sid, S("{\"id\":\"12346\"}"),
				       S(out)) == -EACCES);
	/* a channel signature is not a user signature */
	T_CHECK(pusher_channel_auth(doc_app, sid, S(":user:"), S(ud), out) > 0);
	T_CHECK(pusher_user_auth_check(doc_app, sid, S(ud), S(out)) == 0);
	/* ...which is why ':' is outside the channel alphabet */
	T_CHECK(pusher_channel_kind(":user:", 6) == -EINVAL);
	return 0;
}

static int test_webhook(void)
{
	char hex[PUSHER_SIG_HEX], want[PUSHER_SIG_HEX];
	const char *body = "{\"time_ms\":1,\"events\":[]}";

	T_CHECK(pusher_webhook_sign(doc_app, body, strlen(body), hex) == 0);
	T_CHECK(pusher_sign_hex(doc_app, body, strlen(body), want) == 0);
	T_CHECK(!memcmp(hex, want, sizeof(hex)));
	for (size_t i = 0; i < sizeof(hex); i++)
		T_CHECK((hex[i] >= '0' && hex[i] <= '9') ||
			(hex[i] >= 'a' && hex[i] <= 'f'));
	return 0;
}

/* Signs @query for @method @path @body at @ts, then checks it at @now. */
static int api_roundtrip(const char *method, const char *path,
			 const char *query, const char *body, int64_t ts,
			 int64_t now, char *signed_q, size_t cap)
{
	struct pusher_api_req r = { S(method), S(path), S(query), S(body) };
	const char *why = NULL;
	ssize_t n;

	n = pusher_api_sign(doc_app, &r, ts, signed_q, cap);
	if (n < 0)
		return (int)n;
	r.query = (struct json_slice){ signed_q, (size_t)n };
	return pusher_api_check(doc_app, &r, now, &why);
}

static int api_check(const char *method, const char *path, const char *q,
		     const char *body, int64_t now)
{
	struct pusher_api_req r = { S(method), S(path), S(q), S(body) };
	const char *why = NULL;
	int ret = pusher_api_check(doc_app, &r, now, &why);

	if (ret && !why)
		return -1000;	/* every refusal says why */
	return ret;
}

static int test_api(void)
{
	/* the signing string of a gist by Pusher's Martyn Loughran */
	const char *gist = "POST\n/apps/3/channels/test_channel/events\n"
		"auth_key=278d425bdf160c739803&auth_timestamp=1272044395&"
		"auth_version=1.0&body_md5=7b3d404f5cde4a0b9b8fb4789a0098cb&"
		"name=foo";
	const char *body = "{\"name\":\"foo\",\"channels\":[\"c\"],\"data\":\"x\"}";
	char q[1024], q2[1100], hex[PUSHER_SIG_HEX];
	const int64_t t = 1353088179;
	struct pusher_api_req r;
	const char *why;
	char *p;

	T_CHECK(pusher_sign_hex(doc_app, gist, strlen(gist), hex) == 0);
	T_CHECK(!memcmp(hex, "309fc4be20f04e53e011b00744642d3fe66c2c7c5686f35e"
			"d6cd2af6f202e445", PUSHER_SIG_HEX));
	/* MD5("asdf"), the same gist */
	r = (struct pusher_api_req){ S("POST"), S("/x"), S(""), S("asdf") };
	T_CHECK(pusher_api_sign(doc_app, &r, t, q, sizeof(q)) > 0);
	T_CHECK(strstr(q, "&body_md5=912ec803b2ce49e4a541068d495ab570&"));
	{
		const char *head = "auth_key=278d425bdf160c739803&"
			"auth_timestamp=1353088179&auth_version=1.0&body_md5=";

		T_CHECK(!strncmp(q, head, strlen(head)));
	}

	T_CHECK(api_roundtrip("POST", "/apps/3/events", "", body, t, t, q,
			      sizeof(q)) == 0);
	/* the window: 600 s either way, not 601 */
	T_CHECK(api_check("POST", "/apps/3/events", q, body, t + 600) == 0);
	T_CHECK(api_check("POST", "/apps/3/events", q, body, t - 600) == 0);
	T_CHECK(api_check("POST", "/apps/3/events", q, body, t + 601) ==
		-EACCES);
	T_CHECK(api_check("POST", "/apps/3/events", q, body, t - 601) ==
		-EACCES);
	/* another method, path, body, app */
	T_CHECK(api_check("GET", "/apps/3/events", q, body, t) == -EACCES);
	T_CHECK(api_check("POST", "/apps/4/events", q, body, t) == -EACCES);
	T_CHECK(api_check("POST", "/apps/3/events", q, "{}", t) == -EACCES);
	T_CHECK(api_check("POST", "/apps/3/events", q, "", t) == -EACCES);
	/* one byte of body_md5 changed, re-signed: the md5 check itself */
	p = strstr(q, "body_md5=") + 9;
	*p = *p == 'a' ? 'b' : 'a';
	T_CHECK(api_check("POST", "/apps/3/events", q, body, t) == -EACCES);

	/* GET with parameters, in any order and case, percent-encoded */
	T_CHECK(api_roundtrip("GET", "/apps/3/channels",
			      "info=user_count,subscription_count&"
			      "filter_by_prefix=presence-", "", t, t, q,
			      sizeof(q)) == 0);
	T_CHECK(strstr(q, "&filter_by_prefix=presence-&info=user_count,"
		       "subscription_count&auth_signature="));
	/* the same parameters sent encoded, reordered, in upper case */
	snprintf(q2, sizeof(q2), "INFO=user_count%%2Csubscription_count&%s", q);
	p = strstr(q2, "&info=");
	memmove(p, strchr(p + 1, '&'), strlen(strchr(p + 1, '&')) + 1);
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == 0);
	/* a parameter twice, also once encoded: refused, not picked */
	snprintf(q2, sizeof(q2), "%s&info=user_count", q);
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == -EBADMSG);
	snprintf(q2, sizeof(q2), "%s&%%69nfo=x", q);
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == -EBADMSG);
	/* bad escapes */
	snprintf(q2, sizeof(q2), "%s&x=%%4", q);
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == -EBADMSG);
	snprintf(q2, sizeof(q2), "%s&x=%%g0", q);
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == -EBADMSG);
	/* an added parameter breaks the signature; empty pieces do not */
	snprintf(q2, sizeof(q2), "%s&x=1", q);
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == -EACCES);
	snprintf(q2, sizeof(q2), "&&%s&", q);
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == 0);

	/* each auth parameter missing or wrong */
	T_CHECK(api_roundtrip("GET", "/apps/3/channels", "", "", t, t, q,
			      sizeof(q)) == 0);
	{
		static const char *const drop[] = {
			"auth_key=", "auth_timestamp=", "auth_version=",
			"auth_signature=",
		};
		for (unsigned i = 0; i < 4; i++) {
			strcpy(q2, q);
			p = strstr(q2, drop[i]);
			*p = 'x';	/* renames it: as good as missing */
			T_CHECK(api_check("GET", "/apps/3/channels", q2, "",
					  t) == -EACCES);
		}
	}
	strcpy(q2, q);
	p = strstr(q2, "auth_version=1.0");
	p[15] = '1';
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == -EACCES);
	/* a body sent without body_md5 in the signed query */
	T_CHECK(api_check("GET", "/apps/3/channels", q, "x", t) == -EACCES);
	/* the signature in upper case */
	strcpy(q2, q);
	for (p = strstr(q2, "auth_signature=") + 15; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	T_CHECK(api_check("GET", "/apps/3/channels", q2, "", t) == -EACCES);
	/* the SDKs' own parameters cannot be passed in */
	r = (struct pusher_api_req){ S("GET"), S("/a"), S("auth_timestamp=1"),
				     S("") };
	T_CHECK(pusher_api_sign(doc_app, &r, t, q, sizeof(q)) == -EINVAL);
	r.query = S("x=1&body_md5=1");
	T_CHECK(pusher_api_sign(doc_app, &r, t, q, sizeof(q)) == -EINVAL);
	/* a timestamp that is not a number, or far too big, or negative */
	T_CHECK(api_roundtrip("GET", "/a", "", "", t, t, q, sizeof(q)) == 0);
	p = strstr(q, "auth_timestamp=") + 15;
	memcpy(p, "1e3", 3);
	T_CHECK(api_check("GET", "/a", q, "", t) == -EACCES);
	T_CHECK(api_roundtrip("GET", "/a", "", "", INT64_MAX / 2, t, q,
			      sizeof(q)) == -EACCES);
	T_CHECK(api_roundtrip("GET", "/a", "", "", -5, t, q, sizeof(q)) ==
		-EACCES);
	/* out of room, over the limits */
	T_CHECK(api_roundtrip("GET", "/a", "", "", t, t, q, 40) == -ENOSPC);
	{
		static char big[PUSHER_QUERY_MAX + 2];
		memset(big, 'a', sizeof(big) - 1);
		T_CHECK(api_check("GET", "/a", big, "", t) == -E2BIG);
		strcpy(big, "");
		for (unsigned i = 0; i <= PUSHER_QUERY_PARAMS; i++)
			sprintf(big + strlen(big), "p%u=1&", i);
		T_CHECK(api_check("GET", "/a", big, "", t) == -E2BIG);
		/* signing what the check would refuse: 27, our 4, the signature */
		strcpy(big, "");
		for (unsigned i = 0; i < PUSHER_QUERY_PARAMS - 5; i++)
			sprintf(big + strlen(big), "p%u=1&", i);
		T_CHECK(api_roundtrip("POST", "/a", big, "x", t, t, q,
				      sizeof(q)) == 0);
		strcat(big, "z=1");
		T_CHECK(api_roundtrip("POST", "/a", big, "x", t, t, q,
				      sizeof(q)) == -E2BIG);
		/* ...with the sign refusing it, not the check */
		r = (struct pusher_api_req){ S("POST"), S("/a"), S(big), S("x") };
		T_CHECK(pusher_api_sign(doc_app, &r, t, q, sizeof(q)) == -E2BIG);
		for (unsigned i = 0; i < 4; i++)
			sprintf(big + strlen(big), "&y%u=1", i);
		T_CHECK(pusher_api_sign(doc_app, &r, t, q, sizeof(q)) == -E2BIG);
		r.query = S(big);
		T_CHECK(pusher_api_sign(doc_app, &r, t, q, sizeof(q)) == -E2BIG);
	}
	why = NULL;
	r = (struct pusher_api_req){ S("GET"), S("/a"), S(""), S("") };
	T_CHECK(pusher_api_check(doc_app, &r, t, &why) == -EACCES && why);
	return 0;
}

static int test_names(void)
{
	static const struct {
		const char *name;
		int kind;
	} cases[] = {
		{ "a", 0 },
		{ "my-channel_1=@,.;", 0 },
		{ "private-x", PUSHER_CH_PRIVATE },
		{ "private-", PUSHER_CH_PRIVATE },
		{ "presence-room", PUSHER_CH_PRESENCE },
		{ "private-encrypted-x", PUSHER_CH_PRIVATE | PUSHER_CH_ENCRYPTED },
		{ "private-encrypted-cache-x", PUSHER_CH_PRIVATE |
		  PUSHER_CH_ENCRYPTED | PUSHER_CH_CACHE },
		{ "private-cache-x", PUSHER_CH_PRIVATE | PUSHER_CH_CACHE },
		{ "presence-cache-x", PUSHER_CH_PRESENCE | PUSHER_CH_CACHE },
		{ "cache-x", PUSHER_CH_CACHE },
		{ "cache-private-x", PUSHER_CH_CACHE },
		{ "public-private-x", 0 },	/* anchored: not private */
		{ "foo-private-x", 0 },
		{ "xprivate-x", 0 },
		{ "Private-x", 0 },
		{ "private_x", 0 },
		{ "presence", 0 },
		{ "foo-presence-x", 0 },
		{ "encrypted-x", 0 },
		{ "private-presence-x", PUSHER_CH_PRIVATE },
		{ "presence-private-x", PUSHER_CH_PRESENCE },
		{ "#server-to-user-42", PUSHER_CH_USER },
		{ "#server-to-user-", -EINVAL },
		{ "#server-to-user-4#2", -EINVAL },
		{ "#private-x", -EINVAL },
		{ "x#server-to-user-1", -EINVAL },
		{ "", -EINVAL },
		{ "a b", -EINVAL },
		{ "a:b", -EINVAL },
		{ "a/b", -EINVAL },
		{ "caf\xc3\xa9", -EINVAL },
		{ "a\n", -EINVAL },
	};
	char name[PUSHER_CHANNEL_MAX + 2];
	char sid[PUSHER_SOCKET_ID_MAX + 1], sid2[PUSHER_SOCKET_ID_MAX + 1];
	uint32_t id[2], id2[2], back[2];
	unsigned i;
	ssize_t n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int k = pusher_channel_kind(cases[i].name,
					    strlen(cases[i].name));

		if (k != cases[i].kind)
			T_FAIL("'%s': %d, want %d", cases[i].name, k,
			       cases[i].kind);
	}
	T_CHECK(pusher_channel_kind("a\0b", 3) == -EINVAL);
	T_CHECK(pusher_channel_needs_auth(pusher_channel_kind("presence-x", 10)));
	T_CHECK(!pusher_channel_needs_auth(pusher_channel_kind("cache-x", 7)));
	memset(name, 'a', sizeof(name));
	T_CHECK(pusher_channel_kind(name, PUSHER_CHANNEL_MAX) == 0);
	T_CHECK(pusher_channel_kind(name, PUSHER_CHANNEL_MAX + 1) == -EINVAL);

	T_CHECK(pusher_event_name_check("client-x", 8, true) == 0);
	T_CHECK(pusher_event_name_check("client-", 7, true) == 0);
	T_CHECK(pusher_event_name_check("client", 6, true) == -EINVAL);
	T_CHECK(pusher_event_name_check("my-client-x", 11, true) == -EINVAL);
	T_CHECK(pusher_event_name_check("pusher:x", 8, true) == -EINVAL);
	T_CHECK(pusher_event_name_check("pusher:x", 8, false) == 0);
	T_CHECK(pusher_event_name_check("", 0, false) == -EINVAL);
	T_CHECK(pusher_event_name_check("caf\xc3\xa9", 5, false) == 0);
	T_CHECK(pusher_event_name_check("caf\xc3", 4, false) == -EINVAL);
	{
		char ev[PUSHER_EVENT_MAX + 1];

		memset(ev, 'e', sizeof(ev));
		memcpy(ev, "client-", 7);
		T_CHECK(pusher_event_name_check(ev, PUSHER_EVENT_MAX, true) == 0);
		T_CHECK(pusher_event_name_check(ev, PUSHER_EVENT_MAX + 1,
						true) == -EINVAL);
	}

	T_CHECK(pusher_socket_id_valid("1.2", 3));
	T_CHECK(pusher_socket_id_valid("0123.4567", 9));
	T_CHECK(!pusher_socket_id_valid("1.", 2));
	T_CHECK(!pusher_socket_id_valid(".1", 2));
	T_CHECK(!pusher_socket_id_valid("1..2", 4));
	T_CHECK(!pusher_socket_id_valid("1.2.3", 5));
	T_CHECK(!pusher_socket_id_valid("12", 2));
	T_CHECK(!pusher_socket_id_valid("1.2a", 4));
	T_CHECK(!pusher_socket_id_valid("-1.2", 4));
	T_CHECK(!pusher_socket_id_valid("1.2\n", 4));
	T_CHECK(!pusher_socket_id_valid(" 1.2", 4));
	T_CHECK(!pusher_socket_id_valid("", 0));
	T_CHECK(pusher_socket_id_new(id) == 0 && pusher_socket_id_new(id2) == 0);
	T_CHECK(id[0] != id2[0] || id[1] != id2[1]);
	n = (ssize_t)pusher_socket_id_print(id, sid);
	T_CHECK(n >= 3 && (size_t)n == strlen(sid));
	T_CHECK(pusher_socket_id_valid(sid, (size_t)n));
	/* read back exactly what was printed, and nothing else */
	T_CHECK(pusher_socket_id_read(sid, (size_t)n, back) == 0 &&
		back[0] == id[0] && back[1] == id[1]);
	T_CHECK(pusher_socket_id_print((const uint32_t[2]){ UINT32_MAX,
			UINT32_MAX }, sid2) == PUSHER_SOCKET_ID_OWN);
	T_CHECK(pusher_socket_id_read(sid2, PUSHER_SOCKET_ID_OWN, back) == 0 &&
		back[0] == UINT32_MAX && back[1] == UINT32_MAX);
	T_CHECK(pusher_socket_id_read("0.0", 3, back) == 0 && !back[0]);
	T_CHECK(pusher_socket_id_read("01.2", 4, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read("1.02", 4, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read("4294967296.1", 12, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read("1.12345678901", 13, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read("1.2.3", 5, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read("1.", 2, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read(".1", 2, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read("12", 2, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read("1.2a", 4, back) == -EINVAL);
	T_CHECK(pusher_socket_id_read("", 0, back) == -EINVAL);
	return 0;
}

static int test_ws_target(void)
{
	static const struct {
		const char *target;
		int ret;
		const char *key;
		unsigned protocol;
	} cases[] = {
		{ "/app/278d425bdf160c739803?protocol=7&client=js&version=8.4.0"
		  "&flash=false", 0, "278d425bdf160c739803", 7 },
		{ "/app/k?client=js&protocol=5", 0, "k", 5 },
		{ "/app/k.2_-?protocol=6", 0, "k.2_-", 6 },
		{ "/app/k", PUSHER_NO_PROTOCOL, NULL, 0 },
		{ "/app/k?", PUSHER_NO_PROTOCOL, NULL, 0 },
		{ "/app/k?version=8.4.0", PUSHER_NO_PROTOCOL, NULL, 0 },
		{ "/app/k?xprotocol=7", PUSHER_NO_PROTOCOL, NULL, 0 },
		{ "/app/k?protocol=", PUSHER_PROTOCOL_UNSUPPORTED, NULL, 0 },
		{ "/app/k?protocol=8", PUSHER_PROTOCOL_UNSUPPORTED, NULL, 0 },
		{ "/app/k?protocol=4", PUSHER_PROTOCOL_UNSUPPORTED, NULL, 0 },
		{ "/app/k?protocol=77", PUSHER_PROTOCOL_UNSUPPORTED, NULL, 0 },
		{ "/app/k?protocol=%37", PUSHER_PROTOCOL_UNSUPPORTED, NULL, 0 },
		{ "/app/", PUSHER_PATH_NOT_FOUND, NULL, 0 },
		{ "/app/?protocol=7", PUSHER_PATH_NOT_FOUND, NULL, 0 },
		{ "/app", PUSHER_PATH_NOT_FOUND, NULL, 0 },
		{ "/apps/k?protocol=7", PUSHER_PATH_NOT_FOUND, NULL, 0 },
		{ "/app/k/x?protocol=7", PUSHER_PATH_NOT_FOUND, NULL, 0 },
		{ "/x/app/k?protocol=7", PUSHER_PATH_NOT_FOUND, NULL, 0 },
		{ "/ws", PUSHER_PATH_NOT_FOUND, NULL, 0 },
		{ "", PUSHER_PATH_NOT_FOUND, NULL, 0 },
		{ "/app/k:x?protocol=7", PUSHER_APP_NOT_FOUND, NULL, 0 },
		{ "/app/k%20?protocol=7", PUSHER_APP_NOT_FOUND, NULL, 0 },
	};
	char longkey[PUSHER_KEY_MAX + 32];
	struct json_slice key;
	unsigned i, protocol;
	int ret;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].target);
		char *b = malloc(len ? len : 1);	/* exact: ASan sees */

		memcpy(b, cases[i].target, len);
		key = NONE;
		protocol = 0;
		ret = pusher_ws_target(b, len, &key, &protocol);
		if (ret != cases[i].ret)
			T_FAIL("'%s': %d, want %d", cases[i].target, ret,
			       cases[i].ret);
		if (!ret && (key.p < b || key.len != strlen(cases[i].key) ||
			     memcmp(key.p, cases[i].key, key.len) ||
			     protocol != cases[i].protocol))
			T_FAIL("'%s': key or protocol wrong", cases[i].target);
		free(b);
	}
	strcpy(longkey, "/app/");
	memset(longkey + 5, 'k', PUSHER_KEY_MAX);
	strcpy(longkey + 5 + PUSHER_KEY_MAX, "?protocol=7");
	T_CHECK(pusher_ws_target(longkey, strlen(longkey), &key, &protocol) == 0);
	memset(longkey + 5, 'k', PUSHER_KEY_MAX + 1);
	strcpy(longkey + 6 + PUSHER_KEY_MAX, "?protocol=7");
	T_CHECK(pusher_ws_target(longkey, strlen(longkey), &key, &protocol) ==
		PUSHER_APP_NOT_FOUND);
	return 0;
}

/* pusher_msg_parse() on an exact heap copy of @json. */
static int msg(const char *json, struct pusher_msg *m, char *scratch,
	       size_t cap)
{
	size_t len = strlen(json);
	char *b = malloc(len ? len : 1);
	int ret;

	memcpy(b, json, len);
	ret = pusher_msg_parse(jp, b, len, m, scratch, cap);
	free(b);	/* slices must not point into the input */
	return ret;
}

static int test_msg(void)
{
	static const char *const bad[] = {
		"", "[]", "\"x\"", "{}", "{\"event\":1}",
		"{\"event\":\"x\",\"channel\":1}",
		"{\"event\":\"x\",\"event\":\"y\"}",
		"{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":1}}",
		"{\"event\":\"pusher:subscribe\",\"data\":{\"auth\":null}}",
		("{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"a\","
		 "\"channel\":\"b\"}}"),
		"{\"event\":\"pusher:subscribe\",\"data\":\"{\\\"channel\\\":1}\"}",
		"{\"event\":\"pusher:subscribe\",\"data\":\"not json\"}",
		"{\"event\":\"pusher:subscribe\",\"data\":\"[1]\"}",
		"{\"event\":\"x\"} x",
		"{\"event\":\"x\",\"other\":[}",
	};
	const char *sub = "{\"event\":\"pusher:subscribe\",\"data\":{"
		"\"channel\":\"presence-r\",\"auth\":\"k:ab\","
		"\"channel_data\":\"{\\\"user_id\\\":\\\"u\\\\u0031\\\"}\"}}";
	const char *sub_str = "{\"data\":\"{\\\"channel\\\":\\\"presence-r\\\","
		"\\\"auth\\\":\\\"k:ab\\\",\\\"channel_data\\\":"
		"\\\"{\\\\\\\"user_id\\\\\\\":\\\\\\\"u\\\\\\\\u0031\\\\\\\"}\\\"}\","
		"\"event\":\"pusher:subscribe\",\"x\":[1,{\"y\":2}]}";
	const char *cev = "{\"event\":\"client-typing\",\"channel\":"
		"\"private-c\",\"data\":{\"channel\":5, \"a\" : [1]}}";
	char scratch[2048];
	struct pusher_msg m;
	unsigned i;
	size_t k;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (msg(bad[i], &m, scratch, sizeof(scratch)) != -EBADMSG)
			T_FAIL("'%s' parsed", bad[i]);

	/* data as an object (pusher-js) and as a string (the spec) */
	T_CHECK(msg(sub, &m, scratch, sizeof(scratch)) == 0);
	T_CHECK(is(m.event, "pusher:subscribe") && is(m.channel, NULL));
	T_CHECK(m.data_type == JSON_OBJECT && m.data.p[0] == '{');
	T_CHECK(is(m.d_channel, "presence-r") && is(m.d_auth, "k:ab"));
	T_CHECK(is(m.d_channel_data, "{\"user_id\":\"u\\u0031\"}"));
	T_CHECK(is(m.d_user_data, NULL));
	T_CHECK(msg(sub_str, &m, scratch, sizeof(scratch)) == 0);
	T_CHECK(m.data_type == JSON_STRING && m.data.p[0] == '"');
	T_CHECK(is(m.event, "pusher:subscribe"));
	T_CHECK(is(m.d_channel, "presence-r") && is(m.d_auth, "k:ab"));
	T_CHECK(is(m.d_channel_data, "{\"user_id\":\"u\\u0031\"}"));
	{
		struct pusher_member mb;
		char s2[256];

		/* the same parser: @m's slices stay, they are in scratch */
		T_CHECK(pusher_member_parse(jp, m.d_channel_data, &mb, s2,
					    sizeof(s2)) == 0);
		T_CHECK(is(mb.id, "\"u\\u0031\"") && is(mb.id_str, "u1"));
		T_CHECK(is(mb.info, NULL));
		T_CHECK(is(m.d_channel, "presence-r"));
		T_CHECK(pusher_member_parse(jp, S("{\"user_id\":10,\"user_info\""
			":{\"n\":[1]}}"), &mb, s2, sizeof(s2)) == 0);
		T_CHECK(is(mb.id, "10") && is(mb.id_str, "10"));
		T_CHECK(is(mb.info, "{\"n\":[1]}"));
		T_CHECK(pusher_member_parse(jp, S("{\"user_id\":\"\"}"), &mb,
					    s2, sizeof(s2)) == -EBADMSG);
		T_CHECK(pusher_member_parse(jp, S("{\"user_info\":{}}"), &mb,
					    s2, sizeof(s2)) == -EBADMSG);
		T_CHECK(pusher_member_parse(jp, S("{\"user_id\":null}"), &mb,
					    s2, sizeof(s2)) == -EBADMSG);
		T_CHECK(pusher_member_parse(jp, S("[]"), &mb, s2,
					    sizeof(s2)) == -EBADMSG);
		T_CHECK(pusher_member_parse(jp, S("{\"user_id\":\"abc\"}"), &mb,
					    s2, 3) == -E2BIG);
		T_CHECK(pusher_user_id_parse(jp, S("{\"id\":\"a\\\"b\"}"), s2,
					     sizeof(s2)) == 3 &&
			!memcmp(s2, "a\"b", 3));
		T_CHECK(pusher_user_id_parse(jp, S("{\"id\":1}"), s2,
					     sizeof(s2)) == -EBADMSG);
		T_CHECK(pusher_user_id_parse(jp, S("{\"id\":\"\"}"), s2,
					     sizeof(s2)) == -EBADMSG);
		T_CHECK(pusher_user_id_parse(jp, S("{\"id\":\"abc\"}"), s2,
					     2) == -E2BIG);
		T_CHECK(!watchlist(jp));
	}

	/* a client event's data is forwarded as it came, members unread */
	T_CHECK(msg(cev, &m, scratch, sizeof(scratch)) == 0);
	T_CHECK(is(m.event, "client-typing") && is(m.channel, "private-c"));
	T_CHECK(is(m.data, "{\"channel\":5, \"a\" : [1]}"));
	T_CHECK(is(m.d_channel, NULL));
	T_CHECK(msg("{\"event\":\"client-x\",\"data\":\"a\\nb\"}", &m, scratch,
		    sizeof(scratch)) == 0);
	T_CHECK(is(m.data, "\"a\\nb\"") && m.data_type == JSON_STRING);
	T_CHECK(msg("{\"event\":\"pusher:ping\",\"data\":{}}", &m, scratch,
		    sizeof(scratch)) == 0);
	T_CHECK(is(m.event, "pusher:ping") && is(m.data, "{}"));
	T_CHECK(msg("{\"event\":\"pusher:ping\",\"data\":\"\"}", &m, scratch,
		    sizeof(scratch)) == 0);
	T_CHECK(is(m.data, "\"\"") && is(m.d_channel, NULL));
	T_CHECK(msg("{\"event\":\"pusher:ping\",\"data\":\"{}\"}", &m,
		    scratch, sizeof(scratch)) == 0);
	T_CHECK(msg("{\"event\":\"pusher:ping\"}", &m, scratch,
		    sizeof(scratch)) == 0);
	T_CHECK(m.data_type == JSON_ABSENT && !m.data.p);
	T_CHECK(msg("{\"event\":\"\"}", &m, scratch, sizeof(scratch)) == 0);
	T_CHECK(m.event.p && m.event.len == 0);

	/* 2 * len + 16 of scratch is enough; a little less may not be */
	T_CHECK(msg(sub_str, &m, scratch, 2 * strlen(sub_str) + 16) == 0);
	T_CHECK(msg(sub, &m, scratch, 20) == -E2BIG);
	/* every truncated prefix is refused, nothing read past it */
	for (k = 0; k < strlen(sub_str); k++) {
		char *b = malloc(k ? k : 1);

		memcpy(b, sub_str, k);
		T_CHECK(pusher_msg_parse(jp, b, k, &m, scratch,
					 sizeof(scratch)) == -EBADMSG);
		free(b);
	}
	/* over the parser's max_doc */
	{
		size_t n = MAX_DOC + 1;
		char *b = malloc(n);

		memset(b, ' ', n);
		memcpy(b, "{\"event\":\"x\"}", 13);
		T_CHECK(pusher_msg_parse(jp, b, n, &m, scratch,
					 sizeof(scratch)) == -E2BIG);
		free(b);
	}
	return 0;
}

/* @out[0..@n) is one JSON object whose "data" is a string of JSON. */
static int event_is(const char *out, ssize_t n, const char *event,
		    const char *channel, const char *data)
{
	struct json_member top[] = {
		{ .key = "event" }, { .key = "channel" }, { .key = "data" },
	};

	if (n <= 0 || json_get_members(jv, out, (size_t)n, top, 3))
		T_FAIL("not JSON: %.*s", (int)(n > 0 ? n : 0), out);
	T_CHECK(is(top[0].str, event));
	T_CHECK(is(top[1].str, channel));
	if (!is(top[2].str, data))
		T_FAIL("data %.*s, want %s", (int)top[2].str.len,
		       top[2].str.p, data);
	return 0;
}

/* Every size below @n must give -ENOSPC, and not write past it. */
static int short_sizes(ssize_t (*enc)(char *, size_t), ssize_t n)
{
	char *b;
	ssize_t k;

	for (k = 0; k < n; k++) {
		b = malloc((size_t)k + 1);
		if (enc(b, (size_t)k) != -ENOSPC)
			T_FAIL("size %zd of %zd did not refuse", k, n);
		free(b);
	}
	return 0;
}

static const char *nasty = "a\"b\\c\nd\x01\xc3\xa9</script>";
static ssize_t enc_nasty_error(char *b, size_t cap)
{
	return pusher_enc_error(b, cap, PUSHER_CLIENT_EVENT_RATE, nasty);
}

static ssize_t enc_nasty_presence(char *b, size_t cap)
{
	struct pusher_member mb[2] = {
		{ S("\"u\\\"1\""), S("u\"1"), S("{\"name\":\"A\\\\\\n\"}") },
		{ S("7"), S("7"), NONE },
	};

	return pusher_enc_presence(b, cap, S("presence-r"), mb, 2);
}

static int test_encode(void)
{
	struct pusher_member mb = { S("\"u1\""), S("u1"), S("{\"n\":\"\\\"\"}") };
	char out[2048];
	ssize_t n;

	n = pusher_enc_connected(out, sizeof(out), S("123.456"), 120);
	T_CHECK(n > 0 && (size_t)n == strlen("{\"event\":\"pusher:connection_"
		"established\",\"data\":\"{\\\"socket_id\\\":\\\"123.456\\\","
		"\\\"activity_timeout\\\":120}\"}"));
	T_CHECK(!memcmp(out, "{\"event\":\"pusher:connection_established\","
		"\"data\":\"{\\\"socket_id\\\":\\\"123.456\\\",\\\"activity_"
		"timeout\\\":120}\"}", (size_t)n));
	T_CHECK(!event_is(out, n, "pusher:connection_established", NULL,
			  "{\"socket_id\":\"123.456\",\"activity_timeout\":120}"));

	n = pusher_enc_subscribed(out, sizeof(out), S("ch;1"));
	T_CHECK(!event_is(out, n, "pusher_internal:subscription_succeeded",
			  "ch;1", "{}"));
	n = enc_nasty_presence(out, sizeof(out));
	T_CHECK(!event_is(out, n, "pusher_internal:subscription_succeeded",
		"presence-r", "{\"presence\":{\"ids\":[\"u\\\"1\",\"7\"],"
		"\"hash\":{\"u\\\"1\":{\"name\":\"A\\\\\\n\"},\"7\":null},"
		"\"count\":2}}"));
	T_CHECK(!short_sizes(enc_nasty_presence, n));
	n = pusher_enc_presence(out, sizeof(out), S("presence-r"), NULL, 0);
	T_CHECK(!event_is(out, n, "pusher_internal:subscription_succeeded",
		"presence-r", "{\"presence\":{\"ids\":[],\"hash\":{},"
		"\"count\":0}}"));

	n = pusher_enc_sub_error(out, sizeof(out), S("private-x"), "AuthError",
				 "Invalid \"auth\"", 401);
	T_CHECK(!event_is(out, n, "pusher:subscription_error", "private-x",
		"{\"type\":\"AuthError\",\"error\":\"Invalid \\\"auth\\\"\","
		"\"status\":401}"));
	n = enc_nasty_error(out, sizeof(out));
	T_CHECK(!event_is(out, n, "pusher:error", NULL, "{\"code\":4301,"
		"\"message\":\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9</script>\"}"));
	T_CHECK(!short_sizes(enc_nasty_error, n));
	n = pusher_enc_pong(out, sizeof(out));
	T_CHECK(!event_is(out, n, "pusher:pong", NULL, "{}"));
	n = pusher_enc_ping(out, sizeof(out));
	T_CHECK(!event_is(out, n, "pusher:ping", NULL, "{}"));
	n = pusher_enc_member_added(out, sizeof(out), S("presence-r"), &mb);
	T_CHECK(!event_is(out, n, "pusher_internal:member_added", "presence-r",
			  "{\"user_id\":\"u1\",\"user_info\":{\"n\":\"\\\"\"}}"));
	n = pusher_enc_member_removed(out, sizeof(out), S("presence-r"), &mb);
	T_CHECK(!event_is(out, n, "pusher_internal:member_removed",
			  "presence-r", "{\"user_id\":\"u1\"}"));
	n = pusher_enc_signed_in(out, sizeof(out), S("{\"id\":\"a\\\"\"}"));
	T_CHECK(!event_is(out, n, "pusher:signin_success", NULL,
			  "{\"user_data\":\"{\\\"id\\\":\\\"a\\\\\\\"\\\"}\"}"));
	n = pusher_enc_cache_miss(out, sizeof(out), S("cache-x"));
	T_CHECK(!event_is(out, n, "pusher:cache_miss", "cache-x", "{}"));
	n = pusher_enc_sub_count(out, sizeof(out), S("x"), 12345678901ULL);
	T_CHECK(!event_is(out, n, "pusher_internal:subscription_count", "x",
			  "{\"subscription_count\":12345678901}"));

	/* a channel event: data and user_id as given, raw */
	n = pusher_enc_event(out, sizeof(out), S("client-\"x"), S("presence-r"),
			     S("{\"a\": [1, 2]}"), S("\"u1\""));
	T_CHECK(n > 0 && (size_t)n == strlen("{\"event\":\"client-\\\"x\","
		"\"channel\":\"presence-r\",\"data\":{\"a\": [1, 2]},"
		"\"user_id\":\"u1\"}"));
	T_CHECK(!memcmp(out, "{\"event\":\"client-\\\"x\",\"channel\":"
		"\"presence-r\",\"data\":{\"a\": [1, 2]},\"user_id\":\"u1\"}",
		(size_t)n));
	n = pusher_enc_event(out, sizeof(out), S("e"), NONE, NONE, NONE);
	T_CHECK(n == (ssize_t)strlen("{\"event\":\"e\",\"data\":null}"));
	T_CHECK(pusher_enc_event(out, 10, S("e"), NONE, S("1"), NONE) ==
		-ENOSPC);

	T_CHECK(!strcmp(pusher_code_text(PUSHER_APP_NOT_FOUND),
			"application does not exist"));
	T_CHECK(pusher_code_text(PUSHER_PONG_TIMEOUT));
	T_CHECK(pusher_code_text(PUSHER_WATCHLIST_LIMIT));
	T_CHECK(!pusher_code_text(4002) && !pusher_code_text(1000));
	return 0;
}

/* user_data's watchlist: ids unescaped, bounds, and the event's JSON. */
static int watchlist(struct json_parser *jp)
{
	static char big[4096];
	struct json_slice ids[PUSHER_WATCHLIST_MAX];
	char buf[4096], out[512];
	unsigned n = 9, k = 0;
	ssize_t len;

	T_CHECK(pusher_watchlist_parse(jp, S("{\"id\":\"a\"}"), buf,
				       sizeof(buf), ids, &n) == 0 && n == 0);
	T_CHECK(pusher_watchlist_parse(jp, S("{\"id\":\"a\",\"watchlist\":"
					"[\"b\",\"c\\u0041\"]}"), buf,
				       sizeof(buf), ids, &n) == 0 && n == 2);
	T_CHECK(is(ids[0], "b") && is(ids[1], "cA"));
	T_CHECK(pusher_watchlist_parse(jp, S("{\"watchlist\":[1]}"), buf,
				       sizeof(buf), ids, &n) == -EBADMSG);
	T_CHECK(pusher_watchlist_parse(jp, S("{\"watchlist\":[\"\"]}"), buf,
				       sizeof(buf), ids, &n) == -EBADMSG);
	T_CHECK(pusher_watchlist_parse(jp, S("{\"watchlist\":\"b\"}"), buf,
				       sizeof(buf), ids, &n) == -EBADMSG);
	T_CHECK(pusher_watchlist_parse(jp, S("{\"watchlist\":[\"b\"]}"), buf,
				       3, ids, &n) == -E2BIG);
	/* 100 ids pass, 101 do not */
	k = (unsigned)snprintf(big, sizeof(big), "{\"watchlist\":[\"0\"");
	for (unsigned i = 1; i < PUSHER_WATCHLIST_MAX; i++)
		k += (unsigned)snprintf(big + k, sizeof(big) - k, ",\"%u\"", i);
	snprintf(big + k, sizeof(big) - k, "]}");
	T_CHECK(pusher_watchlist_parse(jp, (struct json_slice){ big,
				       strlen(big) }, buf, sizeof(buf), ids,
				       &n) == 0 && n == PUSHER_WATCHLIST_MAX);
	snprintf(big + k, sizeof(big) - k, ",\"x\"]}");
	T_CHECK(pusher_watchlist_parse(jp, (struct json_slice){ big,
				       strlen(big) }, buf, sizeof(buf), ids,
				       &n) == -E2BIG && n == 0);
	ids[0] = S("u\"1");
	ids[1] = S("u2");
	len = pusher_enc_watchlist(out, sizeof(out), false, ids, 2);
	T_CHECK(!event_is(out, len, "pusher_internal:watchlist_events", NULL,
			  "{\"events\":[{\"name\":\"offline\",\"user_ids\":"
			  "[\"u\\\"1\",\"u2\"]}]}"));
	len = pusher_enc_watchlist(out, sizeof(out), true, ids + 1, 1);
	T_CHECK(!event_is(out, len, "pusher_internal:watchlist_events", NULL,
			  "{\"events\":[{\"name\":\"online\",\"user_ids\":"
			  "[\"u2\"]}]}"));
	T_CHECK(pusher_enc_watchlist(out, 40, true, ids, 2) == -ENOSPC);
	return 0;
}

int main(void)
{
	const char *why = NULL;
	int ret;

	jp = json_parser_new(MAX_DOC);
	jv = json_parser_new(MAX_DOC * 8);
	if (!jp || !jv)
		return T_EXIT_FAIL;
	pusher_apps_init(&apps);
	if (pusher_apps_add(&apps, "3:278d425bdf160c739803:7ad3773142a6692b25b8",
			    43, &why))
		return T_EXIT_FAIL;
	doc_app = pusher_app_by_key(&apps, "278d425bdf160c739803", 20);
	if (!doc_app)
		return T_EXIT_FAIL;
	ret = test_apps() || test_channel_auth() || test_user_auth() ||
	      test_webhook() || test_api() || test_names() ||
	      test_ws_target() || test_msg() ||
	      test_encode();
	pusher_apps_exit(&apps);
	json_parser_free(jp);
	json_parser_free(jv);
	return ret ? T_EXIT_FAIL : T_EXIT_PASS;
}
