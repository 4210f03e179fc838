/* SPDX-License-Identifier: MIT */
/*
 * json: the C face of simdjson (json_shim.cc). ringcast's C code never sees
 * C++; this header is all it knows of simdjson.
 */
#ifndef RC_PROTO_JSON_H
#define RC_PROTO_JSON_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes simdjson may read past the end of an input it parses. */
#define JSON_PADDING 64

/* True when @p[0..@n) is valid UTF-8 (simdjson's validator). */
bool json_utf8_valid(const void *p, size_t n);

/*
 * A parser: simdjson's ondemand and DOM parsers with their buffers. One
 * per thread (a shard owns one); not thread-safe. Opaque to C.
 */
struct json_parser;

/*
 * Creates a parser for documents of up to @max_doc bytes. Returns NULL
 * when out of memory. json_parser_free(NULL) is a no-op.
 */
struct json_parser *json_parser_new(size_t max_doc);
void json_parser_free(struct json_parser *p);

/* A byte range; not NUL-terminated. */
struct json_slice {
	const char *p;
	size_t len;
};

/*
 * One client command, {"seq":S,"cmd":"NAME","data":{...}}, as ringcast's
 * client protocol defines it (docs/PROTOCOL.md). Absent members have
 * len 0 (and p NULL).
 */
struct json_cmd {
	struct json_slice cmd;		/* the command name, unescaped */
	struct json_slice seq;		/* seq's raw JSON: a number, or a string
					 * with its quotes; echoed verbatim */
	struct json_slice channel;	/* data.channel, unescaped */
	struct json_slice data;		/* data.data's raw JSON, any type */
	struct json_slice token;	/* data.token, unescaped */
	unsigned nchannels;		/* data.channels entries in @chans */
	long long limit;		/* data.limit, an integer; -1: absent */
	long long offset;		/* data.offset, an integer; -1: absent */
	struct json_slice epoch;	/* data.epoch, unescaped */
	unsigned nids;			/* data.ids entries, in @chans too */
};

/*
 * Parses one command from @buf[0..@len), which must be followed by
 * JSON_PADDING readable bytes. The top level must be an object; "cmd" a
 * string; "seq", when present, a number or a string; "data", when present,
 * an object, whose "channels" or "ids" (when present, not both) is an
 * array of strings (into @chans, counted in nchannels or nids),
 * "channel", "token" and "epoch" strings, "limit" and "offset" integers
 * from 0 to 2^62, and "data" any JSON value. Other members
 * are ignored; member order does not matter. The whole document must be
 * valid JSON. Channel names go to @chans, at most @max_chans of them.
 * Returns 0; -EBADMSG for malformed JSON or a member of the wrong type;
 * -E2BIG when the document exceeds the parser's @max_doc (then @cmd is
 * empty) or "channels" has more than @max_chans entries (then the rest of
 * @cmd is filled, with the first @max_chans channels). A present "cmd"
 * always has a non-NULL p, even when empty. Slices point into @buf or into @p and
 * are valid until the next call with @p.
 *
 * Also -EBADMSG: any member above appearing twice (so no other reader can
 * pick a different one), and numbers simdjson cannot hold (integers
 * outside [-2^63, 2^64), magnitudes past a double), even though JSON
 * allows them. Nesting deeper than 1024 is -E2BIG.
 */
int json_cmd_parse(struct json_parser *p, const char *buf, size_t len,
		   struct json_cmd *cmd, struct json_slice *chans,
		   unsigned max_chans);

/*
 * True when @buf[0..@len) is exactly one valid JSON value (surrounding
 * whitespace allowed). @buf needs no padding: the parser copies when it
 * must. False above the parser's @max_doc, and for the numbers and
 * nesting json_cmd_parse() refuses.
 */
bool json_valid(struct json_parser *p, const char *buf, size_t len);

/*
 * Parses @buf[0..@len) (no padding needed) as a JSON object and returns
 * its member @key, which must be a string, in *@out (unescaped, valid
 * until the next call with @p). Returns 0, -ENOENT (no such member),
 * -EBADMSG (not an object, not a string, not JSON) or -E2BIG.
 */
int json_get_string(struct json_parser *p, const char *buf, size_t len,
		    const char *key, struct json_slice *out);

/*
 * As json_get_string(), for a member @key that must be a number (an
 * integer or not, as JWT's NumericDate may be): its value in *@out.
 * Returns 0, -ENOENT (no such member), -EBADMSG (not an object, not a
 * number, not JSON) or -E2BIG.
 */
int json_get_number(struct json_parser *p, const char *buf, size_t len,
		    const char *key, double *out);

/*
 * Parses @buf[0..@len) (no padding needed) as a JSON array of strings
 * into @out, at most @max of them; *@n says how many. Returns 0,
 * -EBADMSG (not JSON, not an array, an element not a string) or -E2BIG.
 * The slices are unescaped and valid until the next call with @p.
 */
int json_string_array(struct json_parser *p, const char *buf, size_t len,
		      struct json_slice *out, unsigned max, unsigned *n);

/*
 * Parses @buf[0..@len) (no padding needed) as a JSON object and checks
 * that no member name appears twice (compared after unescaping), since
 * readers disagree on which of two wins. Returns 0; -EEXIST for a repeated
 * name; -EBADMSG (not JSON, not an object) or -E2BIG (over the parser's
 * @max_doc, or more than 256 members).
 */
int json_unique_keys(struct json_parser *p, const char *buf, size_t len);

/* A JSON value's type, as json_get_members() reports it. */
enum json_type {
	JSON_ABSENT = 0,	/* no such member */
	JSON_STRING,
	JSON_NUMBER,
	JSON_OBJECT,
	JSON_ARRAY,
	JSON_BOOL,
	JSON_NULL,
};

/* One member json_get_members() looks for. */
struct json_member {
	const char *key;	/* in: the member's name, NUL-terminated */
	enum json_type type;	/* out: JSON_ABSENT when not there */
	struct json_slice raw;	/* out: the value's JSON text, as written */
	struct json_slice str;	/* out: a string's value, unescaped */
};

/*
 * Parses @buf[0..@len) (no padding needed) as a JSON object and fills
 * each of @m[0..@n) whose key is a member: its type, its raw JSON text
 * and, for a string, its unescaped value (str.p is non-NULL then, even
 * for ""). Other members are ignored. The whole document must be valid.
 * Returns 0; -EBADMSG (not JSON, not an object, or a looked-for member
 * appearing twice, which readers would resolve differently) or -E2BIG
 * (over the parser's @max_doc). Slices point into @p and are valid until
 * the next call with @p.
 */
int json_get_members(struct json_parser *p, const char *buf, size_t len,
		     struct json_member *m, unsigned n);

/* Bytes json_escape() may write for @len input bytes: quotes included. */
static inline size_t json_escape_max(size_t len)
{
	return 6 * len + 2;
}

/*
 * Writes UTF-8 text @in[0..@len) as a JSON string literal, quotes
 * included, into @out (json_escape_max(@len) bytes are enough): '"', '\\'
 * and control characters escaped (\n, \t, ... or \u00XX), everything else
 * as is. Returns the bytes written. @in must be valid UTF-8.
 */
size_t json_escape(char *out, const char *in, size_t len);

#ifdef __cplusplus
}
#endif

#endif
