/* SPDX-License-Identifier: MIT */
/*
 * pusher_msg: a client's Pusher event read with the JSON layer, and the
 * server's events written with exact JSON escaping, "data" as the
 * JSON-encoded string the protocol asks for (pusher.h has the
 * contracts). No allocation: callers hand in the buffers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pusher.h"

static struct json_slice lit(const char *s)
{
	return (struct json_slice){ s, strlen(s) };
}

/* ---- A client's message ---- */

/* The caller's scratch buffer, filled from the front. */
struct arena {
	char *p;
	size_t len, cap;
};

/* Copies what @s points at into @a and points @s there. */
static int keep(struct arena *a, struct json_slice *s)
{
	if (!s->p)
		return 0;
	if (s->len > a->cap - a->len)
		return -E2BIG;
	memcpy(a->p + a->len, s->p, s->len);
	s->p = a->p + a->len;
	a->len += s->len;
	return 0;
}

static bool opt_string(const struct json_member *m)
{
	return m->type == JSON_ABSENT || m->type == JSON_STRING;
}

/* Reads the members pusher: events carry in @data, an object's text. */
static int data_members(struct json_parser *p, struct json_slice data,
			struct pusher_msg *m, struct arena *a)
{
	struct json_member d[] = {
		{ .key = "channel" }, { .key = "auth" },
		{ .key = "channel_data" }, { .key = "user_data" },
	};
	struct json_slice *out[] = {
		&m->d_channel, &m->d_auth, &m->d_channel_data, &m->d_user_data,
	};
	unsigned i;
	int ret;

	ret = json_get_members(p, data.p, data.len, d, 4);
	if (ret < 0)
		return ret;
	for (i = 0; i < 4; i++) {
		if (!opt_string(&d[i]))
			return -EBADMSG;
		*out[i] = d[i].str;
		ret = keep(a, out[i]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int pusher_msg_parse(struct json_parser *p, const char *buf, size_t len,
		     struct pusher_msg *m, char *scratch, size_t cap)
{
	struct json_member top[] = {
		{ .key = "event" }, { .key = "channel" }, { .key = "data" },
	};
	struct arena a = { scratch, 0, cap };
	struct json_slice inner;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = json_get_members(p, buf, len, top, 3);
	if (ret < 0)
		return ret;
	if (top[0].type != JSON_STRING || !opt_string(&top[1]))
		return -EBADMSG;
	m->event = top[0].str;
	m->channel = top[1].str;
	m->data = top[2].raw;
	m->data_type = top[2].type;
	inner = top[2].str;
	/* the next parse reuses @p's buffers: keep what we return first */
	if ((ret = keep(&a, &m->event)) || (ret = keep(&a, &m->channel)) ||
	    (ret = keep(&a, &m->data)))
		return ret;
	if (m->event.len < 7 || memcmp(m->event.p, "pusher:", 7))
		return 0;	/* a client event's data is its own */
	if (m->data_type == JSON_OBJECT)
		return data_members(p, m->data, m, &a);
	/* the spec's "double" form; "" is no data (a ping may carry it) */
	if (m->data_type == JSON_STRING && inner.len)
		return data_members(p, inner, m, &a);
	return 0;
}

int pusher_member_parse(struct json_parser *p, struct json_slice channel_data,
			struct pusher_member *mb, char *scratch, size_t cap)
{
	struct json_member d[] = { { .key = "user_id" }, { .key = "user_info" } };
	struct arena a = { scratch, 0, cap };
	int ret;

	memset(mb, 0, sizeof(*mb));
	ret = json_get_members(p, channel_data.p, channel_data.len, d, 2);
	if (ret < 0)
		return ret;
	if (d[0].type == JSON_STRING && d[0].str.len)
		mb->id_str = d[0].str;
	else if (d[0].type == JSON_NUMBER)
		mb->id_str = d[0].raw;
	else
		return -EBADMSG;
	mb->id = d[0].raw;
	mb->info = d[1].raw;
	if ((ret = keep(&a, &mb->id)) || (ret = keep(&a, &mb->info)))
		return ret;
	if (d[0].type == JSON_NUMBER)
		mb->id_str = mb->id;
	else
		ret = keep(&a, &mb->id_str);
	return ret;
}

ssize_t pusher_user_id_parse(struct json_parser *p, struct json_slice user_data,
			     char *id_out, size_t cap)
{
	struct json_member d[] = { { .key = "id" } };
	int ret;

	ret = json_get_members(p, user_data.p, user_data.len, d, 1);
	if (ret < 0)
		return ret;
	if (d[0].type != JSON_STRING || !d[0].str.len)
		return -EBADMSG;
	if (d[0].str.len > cap)
		return -E2BIG;
	memcpy(id_out, d[0].str.p, d[0].str.len);
	return (ssize_t)d[0].str.len;
}

int pusher_watchlist_parse(struct json_parser *p, struct json_slice user_data,
			   char *buf, size_t cap, struct json_slice *ids,
			   unsigned *n)
{
	struct json_member d[] = { { .key = "watchlist" } };
	struct json_slice v[PUSHER_WATCHLIST_MAX + 1];
	size_t used = 0;
	int ret;

	*n = 0;
	ret = json_get_members(p, user_data.p, user_data.len, d, 1);
	if (ret < 0 || d[0].type == JSON_ABSENT)
		return ret;
	if (d[0].type != JSON_ARRAY)
		return -EBADMSG;
	if (d[0].raw.len > cap)
		return -E2BIG;
	/* the array's text first: the slices die with the next parse */
	memcpy(buf, d[0].raw.p, d[0].raw.len);
	ret = json_string_array(p, buf, d[0].raw.len, v,
				PUSHER_WATCHLIST_MAX + 1, n);
	if (ret < 0 || *n > PUSHER_WATCHLIST_MAX) {
		*n = 0;
		return ret < 0 ? ret : -E2BIG;
	}
	/* unescaped is never longer than escaped: each fits where it was */
	for (unsigned i = 0; i < *n; i++) {
		if (!v[i].len || v[i].len > PUSHER_CHANNEL_MAX ||
		    used + v[i].len > cap) {
			ret = v[i].len ? -E2BIG : -EBADMSG;
			*n = 0;
			return ret;
		}
		memmove(buf + used, v[i].p, v[i].len);
		ids[i] = (struct json_slice){ buf + used, v[i].len };
		used += v[i].len;
	}
	return 0;
}

/* ---- The server's events ---- */

/*
 * An output buffer. Inside "data" (@nested) every byte written is escaped
 * once more, since a server event's data is JSON text in a JSON string.
 */
struct out {
	char *p;
	size_t len, cap;
	bool nested;
	bool full;		/* something did not fit: -ENOSPC */
};

static void append(struct out *o, const char *s, size_t n)
{
	if (o->full || n > o->cap - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

/* Bytes that go through json_escape() at a time: 6x on the stack. */
#define CHUNK	64

/* Writes JSON text @s; inside data, as the content of a JSON string. */
static void put(struct out *o, const char *s, size_t n)
{
	char esc[6 * CHUNK + 2];
	size_t k, i;

	if (!o->nested) {
		append(o, s, n);
		return;
	}
	for (i = 0; i < n; i += k) {
		k = n - i < CHUNK ? n - i : CHUNK;
		/* json_escape() adds quotes we do not want here */
		append(o, esc + 1, json_escape(esc, s + i, k) - 2);
	}
}

static void put_lit(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Writes UTF-8 text @s as a JSON string literal. */
static void put_str(struct out *o, struct json_slice s)
{
	char esc[6 * CHUNK + 2];
	size_t k, i;

	put(o, "\"", 1);
	for (i = 0; i < s.len; i += k) {
		k = s.len - i < CHUNK ? s.len - i : CHUNK;
		put(o, esc + 1, json_escape(esc, s.p + i, k) - 2);
	}
	put(o, "\"", 1);
}

static void put_u64(struct out *o, uint64_t v)
{
	char num[24];

	put(o, num, (size_t)snprintf(num, sizeof(num), "%" PRIu64, v));
}

/* {"event":@event[,"channel":@channel],"data": */
static void head(struct out *o, struct json_slice event,
		 struct json_slice channel)
{
	put_lit(o, "{\"event\":");
	put_str(o, event);
	if (channel.p) {
		put_lit(o, ",\"channel\":");
		put_str(o, channel);
	}
	put_lit(o, ",\"data\":");
}

/*
 * The head, then "{ and from here on every byte is escaped once more,
 * until finish() closes data and the event.
 */
static void begin(struct out *o, const char *event, struct json_slice channel)
{
	head(o, lit(event), channel);
	put_lit(o, "\"");
	o->nested = true;
	put_lit(o, "{");
}

/* }"} after the data's members; returns the length or -ENOSPC. */
static ssize_t finish(struct out *o)
{
	put_lit(o, "}");
	o->nested = false;
	put_lit(o, "\"}");
	return o->full ? -ENOSPC : (ssize_t)o->len;
}

#define OUT(buf, cap)	{ .p = (buf), .cap = (cap) }
#define NO_CHANNEL	((struct json_slice){ NULL, 0 })

/* An event whose data is {}: pusher-js reads nothing from it. */
static ssize_t empty_event(char *buf, size_t cap, const char *event,
			   struct json_slice channel)
{
	struct out o = OUT(buf, cap);

	begin(&o, event, channel);
	return finish(&o);
}

ssize_t pusher_enc_connected(char *buf, size_t cap, struct json_slice sid,
			     unsigned activity_timeout)
{
	struct out o = OUT(buf, cap);

	begin(&o, "pusher:connection_established", NO_CHANNEL);
	put_lit(&o, "\"socket_id\":");
	put_str(&o, sid);
	put_lit(&o, ",\"activity_timeout\":");
	put_u64(&o, activity_timeout);
	return finish(&o);
}

ssize_t pusher_enc_subscribed(char *buf, size_t cap,
			      struct json_slice channel)
{
	return empty_event(buf, cap, "pusher_internal:subscription_succeeded",
			   channel);
}

ssize_t pusher_enc_presence(char *buf, size_t cap, struct json_slice channel,
			    const struct pusher_member *mb, unsigned n)
{
	struct out o = OUT(buf, cap);
	unsigned i;

	begin(&o, "pusher_internal:subscription_succeeded", channel);
	put_lit(&o, "\"presence\":{\"ids\":[");
	for (i = 0; i < n; i++) {
		if (i)
			put_lit(&o, ",");
		put_str(&o, mb[i].id_str);
	}
	put_lit(&o, "],\"hash\":{");
	for (i = 0; i < n; i++) {
		if (i)
			put_lit(&o, ",");
		put_str(&o, mb[i].id_str);
		put_lit(&o, ":");
		if (mb[i].info.p)
			put(&o, mb[i].info.p, mb[i].info.len);
		else
			put_lit(&o, "null");
	}
	put_lit(&o, "},\"count\":");
	put_u64(&o, n);
	put_lit(&o, "}");
	return finish(&o);
}

ssize_t pusher_enc_sub_error(char *buf, size_t cap, struct json_slice channel,
			     const char *type, const char *error, int status)
{
	struct out o = OUT(buf, cap);

	begin(&o, "pusher:subscription_error", channel);
	put_lit(&o, "\"type\":");
	put_str(&o, lit(type));
	put_lit(&o, ",\"error\":");
	put_str(&o, lit(error));
	put_lit(&o, ",\"status\":");
	put_u64(&o, (uint64_t)(status < 0 ? 0 : status));
	return finish(&o);
}

ssize_t pusher_enc_error(char *buf, size_t cap, int code, const char *message)
{
	struct out o = OUT(buf, cap);

	begin(&o, "pusher:error", NO_CHANNEL);
	put_lit(&o, "\"code\":");
	put_u64(&o, (uint64_t)(code < 0 ? 0 : code));
	put_lit(&o, ",\"message\":");
	put_str(&o, lit(message));
	return finish(&o);
}

ssize_t pusher_enc_pong(char *buf, size_t cap)
{
	return empty_event(buf, cap, "pusher:pong", NO_CHANNEL);
}

ssize_t pusher_enc_watchlist(char *buf, size_t cap, bool online,
			     const struct json_slice *ids, unsigned n)
{
	struct out o = OUT(buf, cap);

	begin(&o, "pusher_internal:watchlist_events", NO_CHANNEL);
	put_lit(&o, online ? "\"events\":[{\"name\":\"online\",\"user_ids\":["
			   : "\"events\":[{\"name\":\"offline\",\"user_ids\":[");
	for (unsigned i = 0; i < n; i++) {
		if (i)
			put_lit(&o, ",");
		put_str(&o, ids[i]);
	}
	put_lit(&o, "]}]");
	return finish(&o);
}

ssize_t pusher_enc_ping(char *buf, size_t cap)
{
	return empty_event(buf, cap, "pusher:ping", NO_CHANNEL);
}

/* member_added and member_removed: user_info only in the first. */
static ssize_t member_event(char *buf, size_t cap, const char *event,
			    struct json_slice channel,
			    const struct pusher_member *mb, bool info)
{
	struct out o = OUT(buf, cap);

	begin(&o, event, channel);
	put_lit(&o, "\"user_id\":");
	put(&o, mb->id.p, mb->id.len);
	if (info && mb->info.p) {
		put_lit(&o, ",\"user_info\":");
		put(&o, mb->info.p, mb->info.len);
	}
	return finish(&o);
}

ssize_t pusher_enc_member_added(char *buf, size_t cap,
				struct json_slice channel,
				const struct pusher_member *mb)
{
	return member_event(buf, cap, "pusher_internal:member_added", channel,
			    mb, true);
}

ssize_t pusher_enc_member_removed(char *buf, size_t cap,
				  struct json_slice channel,
				  const struct pusher_member *mb)
{
	return member_event(buf, cap, "pusher_internal:member_removed",
			    channel, mb, false);
}

ssize_t pusher_enc_signed_in(char *buf, size_t cap,
			     struct json_slice user_data)
{
	struct out o = OUT(buf, cap);

	begin(&o, "pusher:signin_success", NO_CHANNEL);
	put_lit(&o, "\"user_data\":");
	put_str(&o, user_data);
	return finish(&o);
}

ssize_t pusher_enc_cache_miss(char *buf, size_t cap,
			      struct json_slice channel)
{
	return empty_event(buf, cap, "pusher:cache_miss", channel);
}

ssize_t pusher_enc_sub_count(char *buf, size_t cap, struct json_slice channel,
			     uint64_t count)
{
	struct out o = OUT(buf, cap);

	begin(&o, "pusher_internal:subscription_count", channel);
	put_lit(&o, "\"subscription_count\":");
	put_u64(&o, count);
	return finish(&o);
}

ssize_t pusher_enc_event(char *buf, size_t cap, struct json_slice event,
			 struct json_slice channel, struct json_slice data,
			 struct json_slice user_id)
{
	struct out o = OUT(buf, cap);

	head(&o, event, channel);
	if (data.p)
		put(&o, data.p, data.len);
	else
		put_lit(&o, "null");
	if (user_id.p) {
		put_lit(&o, ",\"user_id\":");
		put(&o, user_id.p, user_id.len);
	}
	put_lit(&o, "}");
	return o.full ? -ENOSPC : (ssize_t)o.len;
}
