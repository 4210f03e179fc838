/* SPDX-License-Identifier: MIT */
/*
 * fuzz-json: json_cmd_parse() and json_valid() on the same input, which
 * must agree: a command that parses is valid JSON, and its raw slices
 * (seq, data.data) are valid JSON on their own, inside the input. Every
 * unescaped string it returns is valid UTF-8 and survives json_escape()
 * and a second parse unchanged; so does the input itself, when it is
 * valid UTF-8. The input sits in an exact heap copy followed by
 * JSON_PADDING bytes, so ASan flags any read past the padding.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define MAX_DOC		2048	/* below libFuzzer's 4096: -E2BIG gets hit */
#define MAX_CHANS	3
#define ESC_DOC		(6 * MAX_DOC + 16)

static struct json_parser *jp;	/* parses the input */
static struct json_parser *jv;	/* checks, so jp's slices stay valid */

/* @s escaped, then parsed back as a command name, must be @s again. */
static void check_roundtrip(const char *s, size_t len)
{
	struct json_slice chans[1];
	struct json_cmd c;
	size_t n;
	char *doc;

	if (len > MAX_DOC)
		return;
	doc = malloc(json_escape_max(len) + 16 + JSON_PADDING);
	assert(doc);
	memcpy(doc, "{\"cmd\":", 7);
	n = json_escape(doc + 7, s, len);
	assert(n <= json_escape_max(len));
	assert(json_valid(jv, doc + 7, n));
	doc[7 + n] = '}';
	memset(doc + 8 + n, 0, JSON_PADDING);
	assert(json_cmd_parse(jv, doc, 8 + n, &c, chans, 0) == 0);
	assert(c.cmd.len == len && !memcmp(c.cmd.p, s, len));
	free(doc);
}

static void check_unescaped(struct json_slice s)
{
	if (!s.p) {
		assert(!s.len);
		return;
	}
	assert(json_utf8_valid(s.p, s.len));
	check_roundtrip(s.p, s.len);
}

static void check_raw(struct json_slice s, const char *buf, size_t len)
{
	if (!s.p) {
		assert(!s.len);
		return;
	}
	assert(s.p >= buf && s.p + s.len <= buf + len);
	assert(json_valid(jv, s.p, s.len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_slice chans[MAX_CHANS];
	struct json_cmd c;
	unsigned i;
	bool valid;
	char *buf;
	int ret;

	if (!jp) {
		jp = json_parser_new(MAX_DOC);
		jv = json_parser_new(ESC_DOC);
		assert(jp && jv);
	}
	buf = malloc(size + JSON_PADDING);
	assert(buf);
	memcpy(buf, data, size);
	/* padding that would look like more JSON if anyone parsed it */
	memset(buf + size, '1', JSON_PADDING);

	ret = json_cmd_parse(jp, buf, size, &c, chans, MAX_CHANS);
	valid = json_valid(jv, buf, size);
	assert(ret == 0 || ret == -EBADMSG || ret == -E2BIG);
	if (size > MAX_DOC)
		assert(ret == -E2BIG);
	/* a command must be valid JSON; invalid JSON is never a command */
	if (ret == 0) {
		assert(valid);
		assert(c.cmd.p && c.nchannels <= MAX_CHANS);
		check_raw(c.seq, buf, size);
		check_raw(c.data, buf, size);
		check_unescaped(c.cmd);
		check_unescaped(c.channel);
		check_unescaped(c.token);
		for (i = 0; i < c.nchannels; i++)
			check_unescaped(chans[i]);
	}

	/* the JWT date reader: a number only from valid JSON */
	{
		double v;

		ret = json_get_number(jv, buf, size, "exp", &v);
		assert(ret == 0 || ret == -ENOENT || ret == -EBADMSG ||
		       ret == -E2BIG);
		if (ret == 0)
			assert(valid && v == v);	/* never NaN */
	}

	/* the JWT duplicate-claim check: an answer only for valid JSON */
	ret = json_unique_keys(jv, buf, size);
	assert(ret == 0 || ret == -EEXIST || ret == -EBADMSG || ret == -E2BIG);
	if (ret == 0 || ret == -EEXIST)
		assert(valid);

	if (json_utf8_valid(buf, size))
		check_roundtrip(buf, size);
	free(buf);
	return 0;
}
