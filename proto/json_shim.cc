/* SPDX-License-Identifier: MIT */
/*
 * json_shim: the only C++ in ringcast, a thin extern "C" layer over
 * simdjson. Built with -fno-exceptions and SIMDJSON_EXCEPTIONS=0, so every
 * simdjson call returns an error_code; json_errno() is the one place those
 * become -errno for the C side. A command is parsed twice: the DOM parser
 * validates the whole document (ondemand is lazy and would let malformed
 * JSON inside a skipped member through), then one ondemand pass picks the
 * members out, because only ondemand can hand back data.data's raw text.
 * Commands are small; both parsers are sized once, in json_parser_new().
 * Note that DOM picks its SIMD kernel at run time, but ondemand is inlined
 * here with the kernel our -march allows: on baseline x86-64, the scalar
 * fallback, which takes a little over half of a command's parse time.
 */
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include <simdjson.h>

#include "json.h"

namespace od = simdjson::ondemand;

/* Callers pad by JSON_PADDING; simdjson must not want more. */
static_assert(JSON_PADDING >= simdjson::SIMDJSON_PADDING,
	      "JSON_PADDING is smaller than simdjson's padding");

struct json_parser {
	simdjson::dom::parser dom;	/* validates: json_valid, cmd pass 1 */
	od::parser od;			/* extracts: cmd pass 2 */
	char *vbuf;			/* json_valid's padded copy */
	size_t max_doc;			/* enforced; the parsers hold >= 32 */

	explicit json_parser(size_t cap) noexcept
		: dom(cap), od(cap), vbuf(nullptr), max_doc(0)
	{
	}
};

namespace {

/* The one simdjson -> -errno mapping. */
int json_errno(simdjson::error_code e)
{
	switch (e) {
	case simdjson::SUCCESS:
		return 0;
	case simdjson::MEMALLOC:
		return -ENOMEM;
	case simdjson::CAPACITY:
	case simdjson::DEPTH_ERROR:
		return -E2BIG;
	default:
		return -EBADMSG;
	}
}

void set_slice(struct json_slice *s, std::string_view v)
{
	s->p = v.data();
	s->len = v.size();
}

/*
 * raw_json_token() and object/array raw_json() run on to the start of the
 * next token, so they carry the blanks after the value; drop them.
 */
std::string_view trim_blanks(std::string_view v)
{
	while (!v.empty() && (v.back() == ' ' || v.back() == '\t' ||
			      v.back() == '\n' || v.back() == '\r'))
		v.remove_suffix(1);
	return v;
}

/*
 * The raw text of any value. simdjson 3.0.1 has no value::raw_json(): a
 * scalar is one token, and objects and arrays know their own span.
 */
int raw_value(od::value &v, struct json_slice *out)
{
	std::string_view raw;
	simdjson::error_code e;
	od::json_type t;
	od::object o;
	od::array a;

	if ((e = v.type().get(t)))
		return json_errno(e);
	switch (t) {
	case od::json_type::object:
		if (!(e = v.get_object().get(o)))
			e = o.raw_json().get(raw);
		break;
	case od::json_type::array:
		if (!(e = v.get_array().get(a)))
			e = a.raw_json().get(raw);
		break;
	default:
		raw = v.raw_json_token();
		break;
	}
	if (e)
		return json_errno(e);
	set_slice(out, trim_blanks(raw));
	return 0;
}

int get_str(od::value &v, struct json_slice *out)
{
	std::string_view s;
	simdjson::error_code e;

	if ((e = v.get_string().get(s)))
		return json_errno(e);
	set_slice(out, s);
	return 0;
}

int parse_channels(od::value &v, struct json_cmd *cmd,
		   struct json_slice *chans, unsigned max_chans)
{
	simdjson::error_code e;
	std::string_view s;
	od::array a;

	if ((e = v.get_array().get(a)))
		return json_errno(e);
	bool big = false;

	for (auto el : a) {
		/* a wrong type is -EBADMSG even past max_chans */
		if ((e = el.get_string().get(s)))
			return json_errno(e);
		if (cmd->nchannels == max_chans) {
			big = true;	/* keep checking types; keep the rest */
			continue;
		}
		set_slice(&chans[cmd->nchannels++], s);
	}
	return big ? -E2BIG : 0;
}

/* Bits for the members we read, to refuse duplicates. */
enum {
	SEEN_CMD	= 1 << 0,
	SEEN_SEQ	= 1 << 1,
	SEEN_DATA	= 1 << 2,
	SEEN_CHANNELS	= 1 << 3,
	SEEN_CHANNEL	= 1 << 4,
	SEEN_DDATA	= 1 << 5,
	SEEN_TOKEN	= 1 << 6,
	SEEN_LIMIT	= 1 << 7,
	SEEN_OFFSET	= 1 << 8,
	SEEN_EPOCH	= 1 << 9,
	SEEN_IDS	= 1 << 10,
};

/* An integer from 0 to 2^62 into *@out; else -EBADMSG. */
int get_count(od::value &v, long long *out)
{
	int64_t n;

	if (v.get_int64().get(n) || n < 0 || n > (int64_t(1) << 62))
		return -EBADMSG;
	*out = n;
	return 0;
}

/*
 * Marks @bit in @seen; a member read twice is -EBADMSG, so that no other
 * reader of the same bytes (first wins or last wins) can disagree with us.
 */
int see(unsigned *seen, unsigned bit)
{
	if (*seen & bit)
		return -EBADMSG;
	*seen |= bit;
	return 0;
}

int parse_data(od::value &v, struct json_cmd *cmd, struct json_slice *chans,
	       unsigned max_chans, unsigned *seen)
{
	simdjson::error_code e;
	std::string_view key;
	od::object obj;
	od::field f;
	int ret, big = 0;

	if ((e = v.get_object().get(obj)))
		return json_errno(e);
	for (auto r : obj) {
		if ((e = std::move(r).get(f)) ||
		    (e = f.unescaped_key().get(key)))
			return json_errno(e);
		if (key == "channels" || key == "ids") {
			bool ids = key == "ids";

			/* one array of strings: channels or ids, not both */
			ret = *seen & (SEEN_CHANNELS | SEEN_IDS) ? -EBADMSG :
			      see(seen, ids ? SEEN_IDS : SEEN_CHANNELS);
			if (!ret)
				ret = parse_channels(f.value(), cmd, chans,
						     max_chans);
			if (ids) {
				cmd->nids = cmd->nchannels;
				cmd->nchannels = 0;
			}
		} else if (key == "channel") {
			ret = see(seen, SEEN_CHANNEL);
			if (!ret)
				ret = get_str(f.value(), &cmd->channel);
		} else if (key == "token") {
			ret = see(seen, SEEN_TOKEN);
			if (!ret)
				ret = get_str(f.value(), &cmd->token);
		} else if (key == "limit") {
			ret = see(seen, SEEN_LIMIT);
			if (!ret)
				ret = get_count(f.value(), &cmd->limit);
		} else if (key == "offset") {
			ret = see(seen, SEEN_OFFSET);
			if (!ret)
				ret = get_count(f.value(), &cmd->offset);
		} else if (key == "epoch") {
			ret = see(seen, SEEN_EPOCH);
			if (!ret)
				ret = get_str(f.value(), &cmd->epoch);
		} else if (key == "data") {
			ret = see(seen, SEEN_DDATA);
			if (!ret)
				ret = raw_value(f.value(), &cmd->data);
		} else {
			continue;	/* ondemand skips it for us */
		}
		if (ret == -E2BIG)
			big = ret;	/* the other members still count */
		else if (ret)
			return ret;
	}
	return big;
}

int parse_seq(od::value &v, struct json_slice *out)
{
	simdjson::error_code e;
	od::json_type t;

	if ((e = v.type().get(t)))
		return json_errno(e);
	if (t != od::json_type::number && t != od::json_type::string)
		return -EBADMSG;
	set_slice(out, trim_blanks(v.raw_json_token()));
	return 0;
}

int parse_cmd(json_parser *p, const char *buf, size_t len,
	      struct json_cmd *cmd, struct json_slice *chans,
	      unsigned max_chans)
{
	const uint8_t *u = reinterpret_cast<const uint8_t *>(buf);
	simdjson::error_code e;
	std::string_view key;
	unsigned seen = 0;
	od::document doc;
	od::object top;
	od::field f;
	int ret, big = 0;

	/* pass 1: the whole document, strictly; the caller padded @buf */
	if ((e = p->dom.parse(u, len, false).error()))
		return json_errno(e);

	/* pass 2: known members only; unknown ones were checked above */
	if ((e = p->od.iterate(buf, len, len + JSON_PADDING).get(doc)) ||
	    (e = doc.get_object().get(top)))
		return json_errno(e);
	for (auto r : top) {
		if ((e = std::move(r).get(f)) ||
		    (e = f.unescaped_key().get(key)))
			return json_errno(e);
		if (key == "cmd") {
			ret = see(&seen, SEEN_CMD);
			if (!ret)
				ret = get_str(f.value(), &cmd->cmd);
		} else if (key == "seq") {
			ret = see(&seen, SEEN_SEQ);
			if (!ret)
				ret = parse_seq(f.value(), &cmd->seq);
		} else if (key == "data") {
			ret = see(&seen, SEEN_DATA);
			if (!ret)
				ret = parse_data(f.value(), cmd, chans,
						 max_chans, &seen);
		} else {
			continue;
		}
		if (ret == -E2BIG)
			big = ret;	/* cmd and seq are still wanted */
		else if (ret)
			return ret;
	}
	/* "" is a present cmd with len 0: test the bit, not the length */
	if (!(seen & SEEN_CMD))
		return -EBADMSG;
	if (!cmd->cmd.p)
		cmd->cmd.p = "";	/* present, however simdjson spells "" */
	return big;
}

}	/* namespace */

extern "C" bool json_utf8_valid(const void *p, size_t n)
{
	/* validate_utf8() reads exactly n bytes: no JSON_PADDING here. */
	if (!n)
		return true;
	return simdjson::validate_utf8(static_cast<const char *>(p), n);
}

extern "C" struct json_parser *json_parser_new(size_t max_doc)
{
	/*
	 * The DOM parser refuses capacities under 32 bytes (its
	 * MINIMAL_DOCUMENT_CAPACITY); size both for at least that and
	 * enforce @max_doc ourselves.
	 */
	size_t cap = max_doc < 32 ? 32 : max_doc;
	json_parser *p;

	if (max_doc > simdjson::SIMDJSON_MAXSIZE_BYTES)
		return nullptr;
	p = new (std::nothrow) json_parser(cap);
	if (!p)
		return nullptr;
	p->max_doc = max_doc;
	p->vbuf = static_cast<char *>(std::malloc(cap + JSON_PADDING));
	/*
	 * Allocate everything now, not on the first parse. dom.allocate()
	 * sizes only the parser; the document (tape and strings) would
	 * otherwise grow by each larger input on the hot path.
	 */
	if (!p->vbuf || p->dom.allocate(cap) || p->dom.doc.allocate(cap) ||
	    p->od.allocate(cap)) {
		json_parser_free(p);
		return nullptr;
	}
	/* keep the bytes past any input defined, for sanitizers' sake */
	std::memset(p->vbuf, ' ', cap + JSON_PADDING);
	return p;
}

extern "C" void json_parser_free(struct json_parser *p)
{
	if (!p)
		return;
	std::free(p->vbuf);
	delete p;
}

extern "C" int json_cmd_parse(struct json_parser *p, const char *buf,
			      size_t len, struct json_cmd *cmd,
			      struct json_slice *chans, unsigned max_chans)
{
	std::memset(cmd, 0, sizeof(*cmd));
	cmd->limit = cmd->offset = -1;
	if (len > p->max_doc)
		return -E2BIG;
	return parse_cmd(p, buf, len, cmd, chans, max_chans);
}

extern "C" bool json_valid(struct json_parser *p, const char *buf,
			   size_t len)
{
	const uint8_t *u = reinterpret_cast<const uint8_t *>(p->vbuf);

	if (len > p->max_doc)
		return false;
	/*
	 * We cannot know what follows @buf, so it always goes through our
	 * padded copy; simdjson's own realloc_if_needed would do the same
	 * copy, into a buffer it might have to malloc.
	 */
	std::memcpy(p->vbuf, buf, len);
	return !p->dom.parse(u, len, false).error();
}

/*
 * Parses @buf as a JSON object into @p's DOM and finds member @key.
 * Returns 0, or -errno as the json_get_*() contracts say.
 */
static int member(struct json_parser *p, const char *buf, size_t len,
		  const char *key, simdjson::dom::element *el)
{
	const uint8_t *u = reinterpret_cast<const uint8_t *>(p->vbuf);
	simdjson::dom::element doc;
	simdjson::dom::object obj;
	simdjson::error_code e;

	if (len > p->max_doc)
		return -E2BIG;
	std::memcpy(p->vbuf, buf, len);
	if ((e = p->dom.parse(u, len, false).get(doc)) ||
	    (e = doc.get_object().get(obj)) ||
	    (e = obj.at_key(key).get(*el)))
		return e == simdjson::NO_SUCH_FIELD ? -ENOENT : json_errno(e);
	return 0;
}

extern "C" int json_get_string(struct json_parser *p, const char *buf,
			       size_t len, const char *key,
			       struct json_slice *out)
{
	simdjson::dom::element el;
	std::string_view sv;
	int ret = member(p, buf, len, key, &el);

	if (ret < 0)
		return ret;
	if (el.get_string().get(sv))
		return -EBADMSG;
	set_slice(out, sv);
	return 0;
}

extern "C" int json_get_number(struct json_parser *p, const char *buf,
			       size_t len, const char *key, double *out)
{
	simdjson::dom::element el;
	int ret = member(p, buf, len, key, &el);

	if (ret < 0)
		return ret;
	/* get_double() takes integers too, converted */
	if (el.get_double().get(*out))
		return -EBADMSG;
	return 0;
}

extern "C" int json_string_array(struct json_parser *p, const char *buf,
				 size_t len, struct json_slice *out,
				 unsigned max, unsigned *n)
{
	const uint8_t *u = reinterpret_cast<const uint8_t *>(p->vbuf);
	simdjson::dom::element doc;
	simdjson::dom::array arr;
	simdjson::error_code e;

	*n = 0;
	if (len > p->max_doc)
		return -E2BIG;
	std::memcpy(p->vbuf, buf, len);
	if ((e = p->dom.parse(u, len, false).get(doc)))
		return json_errno(e);
	if ((e = doc.get_array().get(arr)))
		return json_errno(e);
	for (simdjson::dom::element el : arr) {
		std::string_view sv;

		if ((e = el.get_string().get(sv)))
			return json_errno(e);
		if (*n == max)
			return -E2BIG;
		set_slice(&out[(*n)++], sv);
	}
	return 0;
}

extern "C" int json_unique_keys(struct json_parser *p, const char *buf,
				size_t len)
{
	const uint8_t *u = reinterpret_cast<const uint8_t *>(p->vbuf);
	std::string_view keys[256];
	simdjson::dom::element doc;
	simdjson::dom::object obj;
	simdjson::error_code e;
	size_t n = 0;

	if (len > p->max_doc)
		return -E2BIG;
	std::memcpy(p->vbuf, buf, len);
	if ((e = p->dom.parse(u, len, false).get(doc)))
		return json_errno(e);
	if ((e = doc.get_object().get(obj)))
		return json_errno(e);
	/* The DOM keeps every member, repeats included, in document order. */
	for (simdjson::dom::key_value_pair kv : obj) {
		for (size_t i = 0; i < n; i++)
			if (keys[i] == kv.key)
				return -EEXIST;
		if (n == sizeof(keys) / sizeof(keys[0]))
			return -E2BIG;
		keys[n++] = kv.key;
	}
	return 0;
}

/* simdjson's type as ours. */
static enum json_type type_of(od::json_type t)
{
	switch (t) {
	case od::json_type::string:
		return JSON_STRING;
	case od::json_type::number:
		return JSON_NUMBER;
	case od::json_type::object:
		return JSON_OBJECT;
	case od::json_type::array:
		return JSON_ARRAY;
	case od::json_type::boolean:
		return JSON_BOOL;
	default:
		return JSON_NULL;
	}
}

/* Fills @m from value @v: type, raw text and, for a string, its value. */
static int fill_member(od::value &v, struct json_member *m)
{
	simdjson::error_code e;
	od::json_type t;
	int ret;

	if ((e = v.type().get(t)))
		return json_errno(e);
	m->type = type_of(t);
	if (m->type != JSON_STRING)
		return raw_value(v, &m->raw);
	/* a string is one token: its raw text first, then its value */
	set_slice(&m->raw, trim_blanks(v.raw_json_token()));
	ret = get_str(v, &m->str);
	if (!ret && !m->str.p)
		m->str.p = "";	/* present, however simdjson spells "" */
	return ret;
}

extern "C" int json_get_members(struct json_parser *p, const char *buf,
				size_t len, struct json_member *m, unsigned n)
{
	const uint8_t *u = reinterpret_cast<const uint8_t *>(p->vbuf);
	simdjson::error_code e;
	std::string_view key;
	od::document doc;
	od::object obj;
	od::field f;
	unsigned i;
	int ret;

	for (i = 0; i < n; i++) {
		m[i].type = JSON_ABSENT;
		m[i].raw = m[i].str = json_slice{nullptr, 0};
	}
	if (len > p->max_doc)
		return -E2BIG;
	/* pass 1 validates all of it, pass 2 (ondemand) picks members */
	std::memcpy(p->vbuf, buf, len);
	if ((e = p->dom.parse(u, len, false).error()))
		return json_errno(e);
	if ((e = p->od.iterate(p->vbuf, len, len + JSON_PADDING).get(doc)) ||
	    (e = doc.get_object().get(obj)))
		return json_errno(e);
	for (auto r : obj) {
		if ((e = std::move(r).get(f)) ||
		    (e = f.unescaped_key().get(key)))
			return json_errno(e);
		for (i = 0; i < n && key != m[i].key; i++)
			;
		if (i == n)
			continue;	/* ondemand skips it */
		if (m[i].type != JSON_ABSENT)
			return -EBADMSG;	/* twice: refuse, as cmd does */
		if ((ret = fill_member(f.value(), &m[i])))
			return ret;
	}
	return 0;
}

extern "C" size_t json_escape(char *out, const char *in, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	size_t i;

	*o++ = '"';
	for (i = 0; i < len; i++) {
		unsigned char c = static_cast<unsigned char>(in[i]);

		if (c >= 0x20 && c != '"' && c != '\\') {
			*o++ = static_cast<char>(c);	/* UTF-8 passes as is */
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"':
		case '\\':
			*o++ = static_cast<char>(c);
			break;
		case '\b':
			*o++ = 'b';
			break;
		case '\f':
			*o++ = 'f';
			break;
		case '\n':
			*o++ = 'n';
			break;
		case '\r':
			*o++ = 'r';
			break;
		case '\t':
			*o++ = 't';
			break;
		default:
			std::memcpy(o, "u00", 3);
			o[3] = hex[c >> 4];
			o[4] = hex[c & 15];
			o += 5;
			break;
		}
	}
	*o++ = '"';
	return static_cast<size_t>(o - out);
}
