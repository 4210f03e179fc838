/* SPDX-License-Identifier: MIT */
/*
 * Description: json_cmd_parse() on every command shape, in every member
 * order, with unknown members, escapes, wrong types, too many channels,
 * oversized and malformed documents (every truncated prefix too), always
 * from exact heap copies followed by JSON_PADDING bytes of '"', so ASan
 * sees a read past the padding and stray reads of it show as errors;
 * json_valid() at every size across several 64-byte blocks, with the input
 * ending at a PROT_NONE page; json_escape() on every control character and
 * round trips through the parser.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"
#include "json.h"

#define MAX_DOC		4096
#define MAX_CHANS	4

static struct json_parser *jp;
static char *cur;		/* the padded copy the last parse() saw */
static size_t cur_len;

/* What a command should parse to; NULL members are absent. */
struct want {
	const char *cmd, *seq, *channel, *data, *token;
	const char *chans[MAX_CHANS + 1];
};

static int parse(struct json_parser *p, const char *json, size_t len,
		 struct json_cmd *cmd, struct json_slice *chans,
		 unsigned max_chans)
{
	free(cur);
	cur = malloc(len + JSON_PADDING);
	if (!cur)
		abort();
	memcpy(cur, json, len);
	memset(cur + len, '"', JSON_PADDING);
	cur_len = len;
	return json_cmd_parse(p, cur, len, cmd, chans, max_chans);
}

static int slice_is(struct json_slice s, const char *want)
{
	if (!want)
		return !s.p && !s.len;
	return s.p && s.len == strlen(want) && !memcmp(s.p, want, s.len);
}

/* Raw slices are echoed verbatim, so they must point into the input. */
static int in_input(struct json_slice s)
{
	return !s.p || (s.p >= cur && s.p + s.len <= cur + cur_len);
}

static int check_len(const char *json, size_t len, int want_ret,
		     const struct want *w)
{
	struct json_slice chans[MAX_CHANS];
	struct json_cmd c;
	unsigned i, n = 0;
	int ret;

	ret = parse(jp, json, len, &c, chans, MAX_CHANS);
	if (ret != want_ret)
		T_FAIL("%.*s: got %d, want %d", (int)len, json, ret, want_ret);
	if (ret)
		return 0;
	if (!slice_is(c.cmd, w->cmd) || !slice_is(c.seq, w->seq) ||
	    !slice_is(c.channel, w->channel) || !slice_is(c.data, w->data) ||
	    !slice_is(c.token, w->token))
		T_FAIL("%.*s: cmd '%.*s' seq '%.*s' channel '%.*s' "
		       "data '%.*s' token '%.*s'", (int)len, json,
		       (int)c.cmd.len, c.cmd.p, (int)c.seq.len, c.seq.p,
		       (int)c.channel.len, c.channel.p,
		       (int)c.data.len, c.data.p, (int)c.token.len, c.token.p);
	if (!in_input(c.seq) || !in_input(c.data))
		T_FAIL("%.*s: raw slice outside the input", (int)len, json);
	while (w->chans[n])
		n++;
	if (c.nchannels != n)
		T_FAIL("%.*s: %u channels, want %u", (int)len, json,
		       c.nchannels, n);
	for (i = 0; i < n; i++)
		if (!slice_is(chans[i], w->chans[i]))
			T_FAIL("%.*s: channel %u is '%.*s'", (int)len, json, i,
			       (int)chans[i].len, chans[i].p);
	return 0;
}

static int check(const char *json, int want_ret, const struct want *w)
{
	return check_len(json, strlen(json), want_ret, w);
}

static int bad(const char *json)
{
	return check(json, -EBADMSG, NULL);
}

/* Joins @n members in the order @perm gives into "{m,m,...}" at @out. */
static void join(char *out, const char **m, const unsigned *perm, unsigned n)
{
	unsigned i;

	strcpy(out, "{");
	for (i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, m[perm[i]]);
	}
	strcat(out, "}");
}

/* Steps @a[0..n) to the next permutation; 0 after the last one. */
static int next_perm(unsigned *a, unsigned n)
{
	unsigned i, j, t;

	if (n < 2)
		return 0;
	for (i = n - 1; i > 0 && a[i - 1] >= a[i]; i--)
		;
	if (!i)
		return 0;
	for (j = n - 1; a[j] <= a[i - 1]; j--)
		;
	t = a[i - 1], a[i - 1] = a[j], a[j] = t;
	for (j = n - 1; i < j; i++, j--)
		t = a[i], a[i] = a[j], a[j] = t;
	return 1;
}

/*
 * Every order of @top's members, and of @data's (the members of "data",
 * appended to @top when @data is not NULL), parses to @w.
 */
static int check_orders(const char **top, unsigned ntop, const char **data,
			unsigned ndata, const struct want *w)
{
	unsigned pt[6] = { 0, 1, 2, 3, 4, 5 }, pd[6] = { 0, 1, 2, 3, 4, 5 };
	const char *m[7];
	char inner[1024], outer[2048], dm[1100];

	do {
		memcpy(m, top, ntop * sizeof(*m));
		if (data) {
			join(inner, data, pd, ndata);
			snprintf(dm, sizeof(dm), "\"data\":%s", inner);
			m[ntop] = dm;
		}
		do {
			join(outer, m, pt, ntop + !!data);
			if (check(outer, 0, w))
				return 1;
		} while (next_perm(pt, ntop + !!data));
	} while (data && next_perm(pd, ndata));
	return 0;
}

static int test_shapes(void)
{
	const char *sub[] = { "\"seq\":1", "\"cmd\":\"subscribe\"",
			      "\"x-trace\":{\"id\":[1,{\"a\":null}]}" };
	const char *sub_d[] = { "\"channels\":[\"news\",\"room:7\"]",
				"\"token\":\"t0\"", "\"extra\":[[],{}]" };
	const struct want w_sub = { .cmd = "subscribe", .seq = "1",
				    .token = "t0",
				    .chans = { "news", "room:7" } };
	const char *unsub[] = { "\"seq\":\"u-2\"", "\"cmd\":\"unsubscribe\"" };
	const char *unsub_d[] = { "\"channels\":[\"news\"]" };
	const struct want w_unsub = { .cmd = "unsubscribe", .seq = "\"u-2\"",
				      .chans = { "news" } };
	const char *pub[] = { "\"seq\":-3", "\"cmd\":\"publish\"",
			      "\"v\":2" };
	const char *pub_d[] = { "\"channel\":\"room:7\"",
				"\"data\":{\"text\":\"hi\",\"n\":[1,2.5]}" };
	const struct want w_pub = { .cmd = "publish", .seq = "-3",
				    .channel = "room:7",
				    .data = "{\"text\":\"hi\",\"n\":[1,2.5]}" };
	const char *hb[] = { "\"seq\":4", "\"cmd\":\"heartbeat\"",
			     "\"ts\":1700000000123" };
	const struct want w_hb = { .cmd = "heartbeat", .seq = "4" };
	const char *ref[] = { "\"cmd\":\"refresh\"" };
	const char *ref_d[] = { "\"token\":\"eyJhbGciOiJIUzI1NiJ9.e30.x\"",
				"\"ttl\":60" };
	const struct want w_ref = { .cmd = "refresh",
				    .token = "eyJhbGciOiJIUzI1NiJ9.e30.x" };

	if (check_orders(sub, 3, sub_d, 3, &w_sub) ||
	    check_orders(unsub, 2, unsub_d, 1, &w_unsub) ||
	    check_orders(pub, 3, pub_d, 2, &w_pub) ||
	    check_orders(hb, 3, NULL, 0, &w_hb) ||
	    check_orders(ref, 1, ref_d, 2, &w_ref))
		return 1;

	/* blanks everywhere JSON allows them */
	return check(" \t\r\n{ \"cmd\" : \"publish\" ,\n \"data\" : { "
		     "\"channel\" : \"c\" , \"data\" : [ 1 , 2 ] } , "
		     "\"seq\" : 7 }\n ", 0,
		     &(struct want){ .cmd = "publish", .seq = "7",
				     .channel = "c", .data = "[ 1 , 2 ]" });
}

static int test_seq(void)
{
	static const char *const ok[] = {
		"0", "42", "-1", "-0", "3.25", "-1.5e-7", "1E+300",
		"18446744073709551615", "-9223372036854775808", "1e308",
		"123456789012345678901234.5", "\"\"", "\"abc\"",
		"\"a\\\"b\\\\c\\u00e9\\n\"", "\"\xc3\xa9\xe2\x82\xac\"",
	};
	static const char *const wrong[] = {
		"{}", "{\"a\":1}", "[]", "[1]", "true", "false", "null",
		/* valid JSON, but past simdjson's integers and doubles */
		"18446744073709551616", "-9223372036854775809", "1e400",
	};
	char doc[256];
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
		/* seq last, then first: the token is followed by } or , */
		snprintf(doc, sizeof(doc), "{\"cmd\":\"c\",\"seq\":%s  }",
			 ok[i]);
		if (check(doc, 0, &(struct want){ .cmd = "c", .seq = ok[i] }))
			return 1;
		snprintf(doc, sizeof(doc), "{\"seq\":\n%s\n,\"cmd\":\"c\"}",
			 ok[i]);
		if (check(doc, 0, &(struct want){ .cmd = "c", .seq = ok[i] }))
			return 1;
	}
	for (i = 0; i < sizeof(wrong) / sizeof(*wrong); i++) {
		snprintf(doc, sizeof(doc), "{\"cmd\":\"c\",\"seq\":%s}",
			 wrong[i]);
		if (bad(doc))
			return 1;
	}
	return check("{\"cmd\":\"c\"}", 0, &(struct want){ .cmd = "c" });
}

static int test_types(void)
{
	static const char *const wrong[] = {
		/* cmd missing or not a string */
		"{}", "{\"seq\":1}", "{\"cmd\":1}", "{\"cmd\":null}",
		"{\"cmd\":[\"subscribe\"]}", "{\"cmd\":{}}", "{\"cmd\":true}",
		"{\"Cmd\":\"x\"}", "{\"data\":{\"cmd\":\"x\"}}",
		/* data not an object */
		"{\"cmd\":\"c\",\"data\":[]}", "{\"cmd\":\"c\",\"data\":\"x\"}",
		"{\"cmd\":\"c\",\"data\":null}", "{\"cmd\":\"c\",\"data\":0}",
		/* channels not an array of strings */
		"{\"cmd\":\"c\",\"data\":{\"channels\":\"a\"}}",
		"{\"cmd\":\"c\",\"data\":{\"channels\":{\"a\":1}}}",
		"{\"cmd\":\"c\",\"data\":{\"channels\":null}}",
		"{\"cmd\":\"c\",\"data\":{\"channels\":[1]}}",
		"{\"cmd\":\"c\",\"data\":{\"channels\":[\"a\",null]}}",
		"{\"cmd\":\"c\",\"data\":{\"channels\":[\"a\",[\"b\"]]}}",
		/* a wrong type beats too many channels */
		"{\"cmd\":\"c\",\"data\":{\"channels\":[\"a\",\"b\",\"c\",\"d\",5]}}",
		/* channel and token not strings */
		"{\"cmd\":\"c\",\"data\":{\"channel\":7}}",
		"{\"cmd\":\"c\",\"data\":{\"channel\":[\"a\"]}}",
		"{\"cmd\":\"c\",\"data\":{\"token\":false}}",
		"{\"cmd\":\"c\",\"data\":{\"token\":{}}}",
		/* a member we read, twice */
		"{\"cmd\":\"a\",\"cmd\":\"b\"}",
		"{\"cmd\":\"a\",\"seq\":1,\"seq\":2}",
		"{\"cmd\":\"a\",\"data\":{},\"data\":{}}",
		"{\"cmd\":\"a\",\"data\":{\"data\":1,\"data\":2}}",
		"{\"cmd\":\"a\",\"data\":{\"channel\":\"x\",\"channel\":\"y\"}}",
		"{\"cmd\":\"a\",\"c\\u006dd\":\"b\"}",
	};
	size_t i;

	for (i = 0; i < sizeof(wrong) / sizeof(*wrong); i++)
		if (bad(wrong[i]))
			return 1;
	/* unknown members may repeat; an empty cmd is present */
	return check("{\"x\":1,\"x\":2,\"cmd\":\"\"}", 0,
		     &(struct want){ .cmd = "" }) ||
	       check("{\"cmd\":\"c\",\"data\":{}}", 0,
		     &(struct want){ .cmd = "c" }) ||
	       check("{\"cmd\":\"c\",\"data\":{\"channels\":[]}}", 0,
		     &(struct want){ .cmd = "c" });
}

static int test_channels(void)
{
	static const char none[] =
		"{\"cmd\":\"s\",\"data\":{\"channels\":[]}}";
	static const char one[] =
		"{\"cmd\":\"s\",\"data\":{\"channels\":[\"a\"]}}";
	struct json_slice chans[1];
	struct json_cmd c;
	int ret;

	if (check("{\"cmd\":\"s\",\"data\":{\"channels\":"
		  "[\"a\",\"b\",\"c\",\"d\"]}}", 0,
		  &(struct want){ .cmd = "s",
				  .chans = { "a", "b", "c", "d" } }) ||
	    check("{\"cmd\":\"s\",\"data\":{\"channels\":"
		  "[\"a\",\"b\",\"c\",\"d\",\"e\"]}}", -E2BIG, NULL))
		return 1;
	/* max_chans 0 takes an empty array only; chans is never touched */
	ret = parse(jp, none, sizeof(none) - 1, &c, NULL, 0);
	if (ret)
		T_FAIL("empty channels, max 0: %d", ret);
	ret = parse(jp, one, sizeof(one) - 1, &c, chans, 0);
	if (ret != -E2BIG)
		T_FAIL("one channel, max 0: %d", ret);

	/* names are unescaped, into the parser's memory */
	return check("{\"cmd\":\"subscrib\\u0065\",\"data\":{"
		     "\"channel\":\"room\\u003a7\",\"token\":\"a\\/b\\\"c\","
		     "\"channels\":[\"room\\u003a7\",\"tab\\there\","
		     "\"\\ud83d\\ude00\",\"\"]}}", 0,
		     &(struct want){ .cmd = "subscribe", .channel = "room:7",
				     .token = "a/b\"c",
				     .chans = { "room:7", "tab\there",
						"\xf0\x9f\x98\x80", "" } }) ||
	       /* keys are unescaped too */
	       check("{\"c\\u006dd\":\"x\",\"\\u0064ata\":{\"ch\\u0061nnel\":"
		     "\"y\"}}", 0, &(struct want){ .cmd = "x", .channel = "y" });
}

static int test_data(void)
{
	static const char *const vals[] = {
		"{}", "[]", "{ \"a\" : [ 1 , 2 ] ,\n\t\"b\" : { } }",
		"[ 1 , { \"b\" : null } , [ ] , \"]\" ]", "\"\"",
		"\"str \\\"ing\\\" \\u00e9 }\"", "0", "-1.5e3", "123456789012",
		"true", "false", "null", "{\"data\":{\"data\":[]}}",
	};
	char doc[512];
	size_t i;

	for (i = 0; i < sizeof(vals) / sizeof(*vals); i++) {
		/* followed by blanks and }, then by , */
		snprintf(doc, sizeof(doc), "{\"cmd\":\"p\",\"data\":"
			 "{\"data\": %s \r\n\t}}", vals[i]);
		if (check(doc, 0, &(struct want){ .cmd = "p",
						   .data = vals[i] }))
			return 1;
		snprintf(doc, sizeof(doc), "{\"data\":{\"data\":%s,"
			 "\"channel\":\"c\"},\"cmd\":\"p\"}", vals[i]);
		if (check(doc, 0, &(struct want){ .cmd = "p", .channel = "c",
						   .data = vals[i] }))
			return 1;
	}
	/* a top-level "data" member is the data object, never data.data */
	return check("{\"cmd\":\"p\",\"data\":{\"channel\":\"c\"}}", 0,
		     &(struct want){ .cmd = "p", .channel = "c" });
}

static int test_malformed(void)
{
	static const char *const docs[] = {
		/* not an object at the top */
		"", " ", "[]", "[{\"cmd\":\"x\"}]", "\"cmd\"", "1", "null",
		"true",
		/* truncated, trailing garbage, trailing commas */
		"{\"cmd\":\"x\"", "{\"cmd\":\"x", "{\"cmd\":", "{",
		"{\"cmd\":\"x\"} x", "{\"cmd\":\"x\"}{}", "{\"cmd\":\"x\"}}",
		"{\"cmd\":\"x\"} 1", "{\"cmd\":\"x\"}\"",
		"{\"cmd\":\"x\",}", "{,\"cmd\":\"x\"}",
		"{\"cmd\":\"x\",\"data\":{\"channels\":[\"a\",]}}",
		"{\"cmd\":\"x\" \"seq\":1}", "{\"cmd\" \"x\"}",
		"{'cmd':'x'}", "{cmd:\"x\"}",
		/* broken inside members we skip */
		"{\"cmd\":\"x\",\"junk\":[1,2,,3]}",
		"{\"cmd\":\"x\",\"junk\":[1,2}",
		"{\"cmd\":\"x\",\"junk\":{\"a\" 1}}",
		"{\"cmd\":\"x\",\"junk\":{\"a\":1,}}",
		"{\"cmd\":\"x\",\"junk\":tru}",
		"{\"cmd\":\"x\",\"junk\":nul}",
		"{\"cmd\":\"x\",\"junk\":truex}",
		"{\"cmd\":\"x\",\"junk\":01}",
		"{\"cmd\":\"x\",\"junk\":1.}",
		"{\"cmd\":\"x\",\"junk\":-}",
		"{\"cmd\":\"x\",\"junk\":+1}",
		"{\"cmd\":\"x\",\"junk\":NaN}",
		"{\"cmd\":\"x\",\"junk\":\"\\x\"}",
		"{\"cmd\":\"x\",\"junk\":\"\\u12\"}",
		"{\"cmd\":\"x\",\"junk\":\"a\nb\"}",
		"{\"cmd\":\"x\",\"data\":{\"junk\":[}]}}",
		"{\"cmd\":\"x\",\"data\":{\"junk\":1e}}",
		"{\"cmd\":\"x\",\"data\":{\"data\":[1 2]}}",
		"{\"cmd\":\"x\",\"data\":{\"data\":{\"a\":01}}}",
		/* invalid UTF-8, in a member we read and in one we skip */
		"{\"cmd\":\"\xff\"}", "{\"cmd\":\"\xc3\"}",
		"{\"cmd\":\"x\",\"junk\":\"\xc0\xaf\"}",
		"{\"cmd\":\"x\",\"junk\":\"\xed\xa0\x80\"}",
		"{\"cmd\":\"x\",\"data\":{\"data\":\"\xf4\x90\x80\x80\"}}",
	};
	static const char full[] =
		"{\"seq\":12,\"cmd\":\"publish\",\"data\":{\"channel\":\"c\","
		"\"data\":{\"a\":[true,null,\"s\"]}}}";
	size_t i;

	for (i = 0; i < sizeof(docs) / sizeof(*docs); i++)
		if (bad(docs[i]))
			return 1;
	/* a NUL byte inside the length is not the end */
	if (check_len("{\"cmd\":\"x\"}\0", 12, -EBADMSG, NULL))
		return 1;
	/* every proper prefix of a command is malformed */
	for (i = 0; i < sizeof(full) - 1; i++)
		if (check_len(full, i, -EBADMSG, NULL))
			return 1;
	return check_len(full, sizeof(full) - 1, 0,
			 &(struct want){ .cmd = "publish", .seq = "12",
					 .channel = "c",
					 .data = "{\"a\":[true,null,\"s\"]}" });
}

static int test_sizes(void)
{
	struct json_parser *small;
	struct json_slice chans[MAX_CHANS];
	struct json_cmd c;
	char doc[MAX_DOC + 64];
	size_t n;
	int ret;

	/* {"cmd":"x","pad":"aaaa"} grown to exactly MAX_DOC, then one more */
	for (n = MAX_DOC - 1; n <= MAX_DOC + 1; n++) {
		memset(doc, 'a', n);
		memcpy(doc, "{\"cmd\":\"x\",\"pad\":\"", 18);
		memcpy(doc + n - 2, "\"}", 2);
		if (check_len(doc, n, n > MAX_DOC ? -E2BIG : 0,
			      &(struct want){ .cmd = "x" }))
			return 1;
		if (json_valid(jp, doc, n) != (n <= MAX_DOC))
			T_FAIL("json_valid at %zu bytes", n);
	}

	/* nesting beyond simdjson's depth limit is too big, not malformed */
	n = 0;
	n += (size_t)sprintf(doc, "{\"cmd\":\"x\",\"deep\":");
	memset(doc + n, '[', 1100);
	memset(doc + n + 1100, ']', 1100);
	memcpy(doc + n + 2200, "}", 2);
	if (check(doc, -E2BIG, NULL))
		return 1;

	/* tiny parsers still work, and enforce their own limit */
	small = json_parser_new(11);
	if (!small)
		T_FAIL("json_parser_new(11)");
	ret = parse(small, "{\"cmd\":\"x\"}", 11, &c, chans, MAX_CHANS);
	if (ret || !slice_is(c.cmd, "x"))
		T_FAIL("11-byte parser: %d", ret);
	ret = parse(small, "{\"cmd\":\"xy\"}", 12, &c, chans, MAX_CHANS);
	if (ret != -E2BIG || !json_valid(small, "[1]", 3) ||
	    json_valid(small, "[1,2,3,4,50]", 12))
		T_FAIL("11-byte parser: %d", ret);
	json_parser_free(small);

	small = json_parser_new(0);
	if (!small)
		T_FAIL("json_parser_new(0)");
	if (parse(small, "1", 1, &c, chans, 1) != -E2BIG ||
	    parse(small, "", 0, &c, chans, 1) != -EBADMSG ||
	    json_valid(small, "1", 1) || json_valid(small, "", 0))
		T_FAIL("0-byte parser");
	json_parser_free(small);
	json_parser_free(NULL);
	return 0;
}

/*
 * json_valid() on @doc placed so its last byte is the last readable one
 * before a PROT_NONE page (@page), and in an exact heap copy.
 */
static int valid_at_edge(char *page, size_t psz, const char *doc, size_t n,
			 bool want)
{
	char *heap = malloc(n ? n : 1);

	memcpy(page + psz - n, doc, n);
	memcpy(heap, doc, n);
	if (json_valid(jp, page + psz - n, n) != want ||
	    json_valid(jp, heap, n) != want) {
		free(heap);
		T_FAIL("json_valid(%.*s) != %d", (int)n, doc, want);
	}
	free(heap);
	return 0;
}

static int test_valid(void)
{
	static const char *const ok[] = {
		"{}", "[]", "0", "-0.5e+3", "\"\"", "true", "false", "null",
		" \n\t{\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\"}\r\n ",
		"\"\xe2\x80\xa8\"", "[1,2,[3,[4]]]", "12345678901234567890",
	};
	static const char *const ko[] = {
		"", " ", "{", "[1,2", "{\"a\":}", "tru", "nul", "1 2", "[1,]",
		"{\"a\":1}}", "\"\xff\"", "01", "\"abc", "[\"\\q\"]", "+1",
		"{\"a\":1} /",
	};
	long psz = sysconf(_SC_PAGESIZE);
	char *map, doc[320];
	size_t i, n;
	int err = 0;

	map = mmap(NULL, 2 * (size_t)psz, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED || mprotect(map + psz, (size_t)psz, PROT_NONE))
		T_FAIL("mmap: %s", strerror(errno));

	for (i = 0; !err && i < sizeof(ok) / sizeof(*ok); i++)
		err = valid_at_edge(map, (size_t)psz, ok[i], strlen(ok[i]),
				    true);
	for (i = 0; !err && i < sizeof(ko) / sizeof(*ko); i++)
		err = valid_at_edge(map, (size_t)psz, ko[i], strlen(ko[i]),
				    false);

	/* every size from 1 to 300: a number, a string, an array */
	for (n = 1; !err && n <= 300; n++) {
		/* 0.777...: integers stop at 20 digits in simdjson */
		memset(doc, '7', n);
		if (n > 2)
			memcpy(doc, "0.", 2);
		err = valid_at_edge(map, (size_t)psz, doc, n, true);
		if (n < 2 || err)
			continue;
		doc[0] = '"';
		memset(doc + 1, 'x', n - 2);
		doc[n - 1] = '"';
		err = valid_at_edge(map, (size_t)psz, doc, n, true) ||
		      valid_at_edge(map, (size_t)psz, doc, n - 1, false);
		doc[0] = '[';
		memset(doc + 1, ' ', n - 2);
		doc[n - 1] = ']';
		err = err || valid_at_edge(map, (size_t)psz, doc, n, true) ||
		      valid_at_edge(map, (size_t)psz, doc, n - 1, false);
		doc[n - 1] = ',';
		err = err || valid_at_edge(map, (size_t)psz, doc, n, false);
	}
	munmap(map, 2 * (size_t)psz);
	return err;
}

static int test_escape(void)
{
	static const char *const named[32] = {
		['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n",
		['\r'] = "\\r", ['\t'] = "\\t",
	};
	static const char *const texts[] = {
		"", "plain", "\"", "\\", "\"\\\"", "a\"b\\c/d",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \xe2\x80\xa8\xe2\x80\xa9",
		"\x7f\x01\x1f end", "{\"not\":\"json\"}", "\\u0041",
	};
	char in[128], out[1024], want[16], doc[1200];
	struct json_slice chans[1];
	struct json_cmd c;
	size_t i, n, k;

	/* each control character alone */
	for (i = 0; i < 0x20; i++) {
		in[0] = (char)i;
		n = json_escape(out, in, 1);
		if (named[i])
			snprintf(want, sizeof(want), "\"%s\"", named[i]);
		else
			snprintf(want, sizeof(want), "\"\\u%04zx\"", i);
		if (n != strlen(want) || memcmp(out, want, n))
			T_FAIL("escape 0x%02zx: %.*s", i, (int)n, out);
	}
	if (json_escape(out, "\"", 1) != 4 || memcmp(out, "\"\\\"\"", 4) ||
	    json_escape(out, "\\", 1) != 4 || memcmp(out, "\"\\\\\"", 4) ||
	    json_escape(out, "", 0) != 2 || memcmp(out, "\"\"", 2))
		T_FAIL("escape of quote, backslash or nothing");

	/* all of 0x01..0x7f at once, plus the fixed texts */
	for (i = 0; i < 0x7f; i++)
		in[i] = (char)(i + 1);
	for (k = 0; k <= sizeof(texts) / sizeof(*texts); k++) {
		const char *t = k ? texts[k - 1] : in;
		size_t len = k ? strlen(t) : 0x7f;

		n = json_escape(out, t, len);
		if (n > json_escape_max(len) || !json_valid(jp, out, n))
			T_FAIL("escape of text %zu: %.*s", k, (int)n, out);
		/* non-ASCII bytes pass through untouched */
		for (i = 0; i < len; i++)
			if ((unsigned char)t[i] >= 0x80 &&
			    !memchr(out, t[i], n))
				T_FAIL("escape of text %zu lost byte %zu",
				       k, i);
		/* and the parser unescapes it back to the text */
		n = (size_t)snprintf(doc, sizeof(doc), "{\"cmd\":%.*s}",
				     (int)n, out);
		if (parse(jp, doc, n, &c, chans, 1) || c.cmd.len != len ||
		    memcmp(c.cmd.p, t, len))
			T_FAIL("round trip of text %zu: %.*s", k, (int)n, doc);
	}
	/* the worst case fills json_escape_max() exactly */
	memset(in, 1, 100);
	if (json_escape(out, in, 100) != json_escape_max(100))
		T_FAIL("100 x 0x01 is not json_escape_max(100) bytes");
	return 0;
}

/* json_get_number(): integers and fractions; any other type refused. */
static int test_get_number(void)
{
	static const struct {
		const char *doc;
		int ret;
		double v;
	} cases[] = {
		{ "{\"exp\":1700000000}", 0, 1700000000.0 },
		{ "{\"exp\":1700000000.25}", 0, 1700000000.25 },
		{ "{\"a\":\"x\",\"exp\":-3}", 0, -3.0 },
		{ "{\"exp\":18446744073709551615}", 0, 18446744073709551615.0 },
		{ "{\"nbf\":1}", -ENOENT, 0 },
		{ "{\"exp\":\"1700000000\"}", -EBADMSG, 0 },
		{ "{\"exp\":null}", -EBADMSG, 0 },
		{ "{\"exp\":[1]}", -EBADMSG, 0 },
		{ "{\"exp\":true}", -EBADMSG, 0 },
		{ "[1]", -EBADMSG, 0 },
		{ "{\"exp\":1", -EBADMSG, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		double v = 0;
		int ret = json_get_number(jp, cases[i].doc,
					  strlen(cases[i].doc), "exp", &v);

		if (ret != cases[i].ret || (!ret && v != cases[i].v))
			T_FAIL("json_get_number(%s) = %d, %g", cases[i].doc,
			       ret, v);
	}
	return 0;
}

/* data.limit and data.offset: integers from 0 to 2^62; data.epoch a string. */
static int test_counts(void)
{
	static const char *bad_docs[] = {
		"{\"cmd\":\"x\",\"data\":{\"offset\":-1}}",
		"{\"cmd\":\"x\",\"data\":{\"offset\":1.5}}",
		"{\"cmd\":\"x\",\"data\":{\"offset\":\"3\"}}",
		"{\"cmd\":\"x\",\"data\":{\"offset\":4611686018427387905}}",
		"{\"cmd\":\"x\",\"data\":{\"limit\":null}}",
		"{\"cmd\":\"x\",\"data\":{\"epoch\":7}}",
		"{\"cmd\":\"x\",\"data\":{\"offset\":1,\"offset\":2}}",
		"{\"cmd\":\"x\",\"data\":{\"epoch\":\"a\",\"epoch\":\"b\"}}",
	};
	struct json_slice chans[MAX_CHANS];
	struct json_cmd c;
	const char *ok = "{\"cmd\":\"x\",\"data\":{\"offset\":0,"
			 "\"limit\":4611686018427387904,\"epoch\":\"e\\u0031\"}}";

	for (unsigned i = 0; i < sizeof(bad_docs) / sizeof(bad_docs[0]); i++)
		if (bad(bad_docs[i]))
			return 1;
	if (parse(jp, ok, strlen(ok), &c, chans, MAX_CHANS) ||
	    c.offset != 0 || c.limit != (1ll << 62) || !slice_is(c.epoch, "e1"))
		T_FAIL("%s: offset %lld limit %lld epoch '%.*s'", ok, c.offset,
		       c.limit, (int)c.epoch.len, c.epoch.p);
	if (parse(jp, "{\"cmd\":\"x\"}", 11, &c, chans, MAX_CHANS) ||
	    c.offset != -1 || c.limit != -1 || c.epoch.p)
		T_FAIL("absent members: offset %lld limit %lld", c.offset,
		       c.limit);
	return 0;
}

/* data.ids: an array of strings in @chans, counted apart; not beside
 * data.channels, which uses the same array. */
static int test_ids(void)
{
	static const char *bad_docs[] = {
		"{\"cmd\":\"ack\",\"data\":{\"ids\":[1]}}",
		"{\"cmd\":\"ack\",\"data\":{\"ids\":\"a-1\"}}",
		"{\"cmd\":\"ack\",\"data\":{\"ids\":[],\"ids\":[]}}",
		"{\"cmd\":\"ack\",\"data\":{\"ids\":[],\"channels\":[]}}",
		"{\"cmd\":\"ack\",\"data\":{\"channels\":[],\"ids\":[]}}",
	};
	struct json_slice chans[MAX_CHANS];
	struct json_cmd c;
	const char *ok = "{\"cmd\":\"ack\",\"data\":{\"ids\":[\"a-1\","
			 "\"b-2\"]}}";

	for (unsigned i = 0; i < sizeof(bad_docs) / sizeof(bad_docs[0]); i++)
		if (bad(bad_docs[i]))
			return 1;
	if (parse(jp, ok, strlen(ok), &c, chans, MAX_CHANS) || c.nids != 2 ||
	    c.nchannels || !slice_is(chans[0], "a-1") ||
	    !slice_is(chans[1], "b-2"))
		T_FAIL("%s: nids %u nchannels %u", ok, c.nids, c.nchannels);
	return 0;
}

/* json_get_members(): types, raw text, unescaped strings, repeats. */
static int test_get_members(void)
{
	const char *doc = "{\"s\":\"a\\u0041\\n\", \"n\" : -1.5e3 ,\"o\":"
			  "{\"x\":[1, {}]} ,\"a\":[],\"b\":true,\"z\":null,"
			  "\"e\":\"\",\"skip\":{\"s\":1}}";
	struct json_member m[] = {
		{ .key = "s" }, { .key = "n" }, { .key = "o" }, { .key = "a" },
		{ .key = "b" }, { .key = "z" }, { .key = "e" }, { .key = "q" },
	};
	size_t len = strlen(doc);
	char *b = malloc(len);	/* no padding: the parser copies */

	T_CHECK(b);
	memcpy(b, doc, len);
	T_CHECK(json_get_members(jp, b, len, m, 8) == 0);
	free(b);
	T_CHECK(m[0].type == JSON_STRING && slice_is(m[0].str, "aA\n"));
	T_CHECK(slice_is(m[0].raw, "\"a\\u0041\\n\""));
	T_CHECK(m[1].type == JSON_NUMBER && slice_is(m[1].raw, "-1.5e3"));
	T_CHECK(m[2].type == JSON_OBJECT && slice_is(m[2].raw, "{\"x\":[1, {}]}"));
	T_CHECK(m[3].type == JSON_ARRAY && slice_is(m[3].raw, "[]"));
	T_CHECK(m[4].type == JSON_BOOL && slice_is(m[4].raw, "true"));
	T_CHECK(m[5].type == JSON_NULL && slice_is(m[5].raw, "null"));
	T_CHECK(m[6].type == JSON_STRING && m[6].str.p && !m[6].str.len);
	T_CHECK(m[7].type == JSON_ABSENT && !m[7].raw.p && !m[7].str.p);
	T_CHECK(!m[1].str.p);
	/* a looked-for member twice is refused; an ignored one is not */
	T_CHECK(json_get_members(jp, "{\"s\":1,\"s\":2}", 13, m, 1) ==
		-EBADMSG);
	T_CHECK(json_get_members(jp, "{\"t\":1,\"t\":2}", 13, m, 1) == 0);
	T_CHECK(json_get_members(jp, "[1]", 3, m, 1) == -EBADMSG);
	T_CHECK(json_get_members(jp, "{\"s\":1} 1", 10, m, 1) == -EBADMSG);
	T_CHECK(json_get_members(jp, "{\"s\":[}", 8, m, 1) == -EBADMSG);
	T_CHECK(json_get_members(jp, "", 0, m, 1) == -EBADMSG);
	return 0;
}

int main(void)
{
	int ret;

	jp = json_parser_new(MAX_DOC);
	if (!jp) {
		fprintf(stderr, "json_parser_new: out of memory\n");
		return T_EXIT_FAIL;
	}
	ret = test_shapes() || test_seq() || test_types() ||
	      test_channels() || test_data() || test_malformed() ||
	      test_sizes() || test_valid() || test_escape() ||
	      test_get_number() || test_counts() || test_ids() ||
	      test_get_members();
	json_parser_free(jp);
	free(cur);
	return ret ? T_EXIT_FAIL : T_EXIT_PASS;
}
