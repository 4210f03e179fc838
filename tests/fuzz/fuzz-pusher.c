/* SPDX-License-Identifier: MIT */
/*
 * fuzz-pusher: proto/pusher on one input as a client's message, a channel
 * name, an event name, a socket id, a WebSocket request target, an apps
 * text and an HTTP API query.
 * A message that parses is valid JSON, its strings are valid UTF-8, and
 * they survive being written into server events (data double encoded)
 * and parsed back unchanged; a channel's kind agrees with its prefix and
 * alphabet; apps that parse are found again by key and id. The input sits
 * in an exact heap copy, so ASan flags any read past it.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pusher.h"

#define MAX_DOC		2048	/* below libFuzzer's 4096: -E2BIG gets hit */
#define OUT_MAX		(6 * 6 * MAX_DOC + 256)

static struct json_parser *jp;	/* parses the input */
static struct json_parser *jv;	/* checks, so jp's results stay */
static char scratch[2 * MAX_DOC + 16];
static char out[OUT_MAX];

static bool starts(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && !memcmp(s, prefix, n);
}

static bool eq(struct json_slice a, struct json_slice b)
{
	return a.len == b.len && (!a.len || !memcmp(a.p, b.p, a.len));
}

/* @s into a pusher:signin_success and back: the same bytes. */
static void check_roundtrip(struct json_slice s)
{
	struct json_member top[] = { { .key = "event" }, { .key = "data" } };
	struct json_member in[] = { { .key = "user_data" } };
	static char copy[OUT_MAX];
	ssize_t n;

	if (!s.p)
		return;
	assert(json_utf8_valid(s.p, s.len));
	n = pusher_enc_signed_in(out, sizeof(out), s);
	assert(n > 0);
	assert(json_get_members(jv, out, (size_t)n, top, 2) == 0);
	assert(top[1].type == JSON_STRING && top[1].str.len <= sizeof(copy));
	memcpy(copy, top[1].str.p, top[1].str.len);
	assert(json_get_members(jv, copy, top[1].str.len, in, 1) == 0);
	assert(in[0].type == JSON_STRING && eq(in[0].str, s));
}

static void check_msg(const char *buf, size_t size)
{
	struct json_member back[] = {
		{ .key = "event" }, { .key = "channel" }, { .key = "data" },
	};
	struct pusher_member mb;
	struct pusher_msg m;
	char mscratch[2 * MAX_DOC + 16];
	ssize_t n;
	int ret;

	ret = pusher_msg_parse(jp, buf, size, &m, scratch, sizeof(scratch));
	assert(ret == 0 || ret == -EBADMSG || ret == -E2BIG);
	if (size > MAX_DOC)
		assert(ret == -E2BIG);
	if (ret)
		return;
	assert(json_valid(jv, buf, size));
	assert(m.event.p);
	check_roundtrip(m.event);
	check_roundtrip(m.channel);
	check_roundtrip(m.d_channel);
	check_roundtrip(m.d_auth);
	check_roundtrip(m.d_channel_data);
	check_roundtrip(m.d_user_data);
	/* a channel event with the data as sent: the same three members */
	n = pusher_enc_event(out, sizeof(out), m.event, m.channel, m.data,
			     (struct json_slice){ NULL, 0 });
	assert(n > 0);
	assert(json_get_members(jv, out, (size_t)n, back, 3) == 0);
	assert(eq(back[0].str, m.event));
	assert(!m.channel.p || eq(back[1].str, m.channel));
	assert(m.data.p ? eq(back[2].raw, m.data) : back[2].type == JSON_NULL);
	/* presence members from whatever channel_data came */
	if (m.d_channel_data.p &&
	    pusher_member_parse(jv, m.d_channel_data, &mb, mscratch,
				sizeof(mscratch)) == 0) {
		assert(mb.id.p && mb.id_str.len);
		n = pusher_enc_member_added(out, sizeof(out), m.d_channel, &mb);
		assert(n > 0 && json_valid(jv, out, (size_t)n));
		n = pusher_enc_presence(out, sizeof(out), m.d_channel, &mb, 1);
		assert(n > 0 && json_valid(jv, out, (size_t)n));
	}
	/* a watchlist from whatever user_data came: ids within bounds */
	if (m.d_user_data.p) {
		struct json_slice ids[PUSHER_WATCHLIST_MAX];
		unsigned k = 0;

		if (pusher_watchlist_parse(jv, m.d_user_data, mscratch,
					   sizeof(mscratch), ids, &k) == 0) {
			assert(k <= PUSHER_WATCHLIST_MAX);
			for (unsigned i = 0; i < k; i++)
				assert(ids[i].len && ids[i].len <=
				       PUSHER_CHANNEL_MAX);
			n = pusher_enc_watchlist(out, sizeof(out), true, ids, k);
			assert(n == -ENOSPC ||
			       (n > 0 && json_valid(jv, out, (size_t)n)));
		} else {
			assert(k == 0);
		}
	}
}

static void check_names(const char *s, size_t len)
{
	int kind = pusher_channel_kind(s, len);
	size_t i;

	assert(kind >= -EINVAL);
	if (kind >= 0) {
		assert(len && len <= PUSHER_CHANNEL_MAX);
		if (kind & PUSHER_CH_USER)
			assert(starts(s, len, PUSHER_USER_PREFIX) && kind ==
			       PUSHER_CH_USER);
		else
			for (i = 0; i < len; i++)
				assert(s[i] != '#' && s[i] != ':' &&
				       (unsigned char)s[i] > ' ');
		assert(!(kind & PUSHER_CH_PRIVATE) || starts(s, len, "private-"));
		assert(!(kind & PUSHER_CH_PRESENCE) ||
		       starts(s, len, "presence-"));
		assert(!(kind & PUSHER_CH_ENCRYPTED) ||
		       starts(s, len, "private-encrypted-"));
		if (starts(s, len, "private-"))
			assert(kind & PUSHER_CH_PRIVATE);
	}
	if (pusher_event_name_check(s, len, true) == 0)
		assert(starts(s, len, "client-") && len <= PUSHER_EVENT_MAX);
	if (pusher_socket_id_valid(s, len))
		assert(len <= PUSHER_SOCKET_ID_MAX && memchr(s, '.', len));
	{
		struct json_slice key;
		unsigned protocol;
		int ret = pusher_ws_target(s, len, &key, &protocol);

		assert(ret == 0 || (ret >= 4000 && ret < 4100));
		if (!ret)
			assert(key.p == s + 5 && key.len &&
			       key.len <= PUSHER_KEY_MAX &&
			       protocol >= 5 && protocol <= 7);
	}
}

static void check_apps(const char *s, size_t len)
{
	struct pusher_apps a;
	const char *why = NULL;
	unsigned line, i;
	int ret;

	pusher_apps_init(&a);
	ret = pusher_apps_parse(&a, s, len, &line, &why);
	assert(ret == 0 || ret == -EINVAL || ret == -EEXIST);
	assert(ret == 0 || why);
	for (i = 0; i < a.n; i++) {
		assert(pusher_app_by_key(&a, a.v[i].key, a.v[i].key_len) ==
		       &a.v[i]);
		assert(pusher_app_by_id(&a, a.v[i].id, a.v[i].id_len) ==
		       &a.v[i]);
	}
	pusher_apps_exit(&a);
}

static void check_api(const char *s, size_t len)
{
	static const struct pusher_app app = {
		.id = "1", .key = "k", .secret = "s",
		.id_len = 1, .key_len = 1, .secret_len = 1,
	};
	struct pusher_api_req r = {
		{ "POST", 4 }, { "/apps/1/events", 14 }, { s, len }, { s, len },
	};
	const char *why = NULL;
	int ret;

	ret = pusher_api_check(&app, &r, 1700000000, &why);
	/* a signature no one made cannot pass */
	assert(ret == -EACCES || ret == -EBADMSG || ret == -E2BIG);
	assert(why);
	ret = (int)pusher_api_sign(&app, &r, 1700000000, out, sizeof(out));
	assert(ret > 0 || ret == -EINVAL || ret == -EBADMSG || ret == -E2BIG);
	if (ret > 0) {
		bool same = true;	/* decoding changes nothing */
		size_t i;

		for (i = 0; i < len; i++)
			same &= s[i] != '%' && s[i] != '+' &&
				!(s[i] >= 'A' && s[i] <= 'Z');
		r.query = (struct json_slice){ out, (size_t)ret };
		/* signed raw, checked decoded: the same when nothing decodes */
		ret = pusher_api_check(&app, &r, 1700000000, &why);
		if (same)
			assert(ret == 0 || ret == -E2BIG);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf;

	if (!jp) {
		jp = json_parser_new(MAX_DOC);
		jv = json_parser_new(OUT_MAX);
		assert(jp && jv);
	}
	buf = malloc(size ? size : 1);
	assert(buf);
	memcpy(buf, data, size);
	check_msg(buf, size);
	check_names(buf, size);
	check_apps(buf, size);
	if (size <= PUSHER_QUERY_MAX)
		check_api(buf, size);
	free(buf);
	return 0;
}
