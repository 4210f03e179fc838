/* SPDX-License-Identifier: MIT */
/*
 * pusher_api.c: the Pusher HTTP API on /apps/{id}/... (pusher_eng.h):
 * POST events, signed as the server SDKs sign (pusher_api_check: the
 * signature, body_md5 and auth_timestamp within 600 s, compared in
 * constant time). The event is encoded once, as the frame Pusher clients
 * get, and published to the app's engine channel through the broker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "chan.h"
#include "conn.h"
#include "frame.h"
#include "hs.h"
#include "json.h"
#include "pusher_eng.h"


static void reply(struct eng_shard *s, struct eng_conn *c, int status,
		  const char *msg)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);

	eng_conn_http_reply(s, c, status, NULL, "application/json", body,
			    (size_t)n);
}

/* The one channel of "channel", or of a "channels" array of one. */
static bool one_channel(const struct json_member *m, struct json_slice *ch,
			const char **why)
{
	const char *p, *end;

	if (m[0].type == JSON_STRING && m[1].type == JSON_ABSENT) {
		*ch = m[0].str;
		return true;
	}
	if (m[1].type != JSON_ARRAY || m[0].type != JSON_ABSENT) {
		*why = "channel or channels needed";
		return false;
	}
	/* a valid array: ["name"], a channel name needing no escape */
	p = m[1].raw.p + 1;
	end = m[1].raw.p + m[1].raw.len - 1;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' ||
			   end[-1] == '\n' || end[-1] == '\r'))
		end--;
	if (end - p < 2 || *p != '"' || end[-1] != '"' ||
	    memchr(p + 1, '"', (size_t)(end - p - 2)) ||
	    memchr(p + 1, '\\', (size_t)(end - p - 2))) {
		*why = "one channel per event (more are not supported yet)";
		return false;
	}
	*ch = (struct json_slice){ p + 1, (size_t)(end - p - 2) };
	return true;
}

/* POST /apps/{id}/events, its signature checked: the body published. */
static void events(struct eng_shard *s, struct eng_conn *c,
		   const struct pusher_app *app, const uint8_t *body,
		   size_t len)
{
	struct json_member m[] = {
		{ .key = "channel" }, { .key = "channels" }, { .key = "name" },
		{ .key = "data" }, { .key = "socket_id" },
	};
	char name[ENG_CHAN_MAX + 1], *ev;
	const char *why = NULL;
	struct json_slice ch;
	size_t cap;
	ssize_t n;
	int nlen;

	if (json_get_members(s->json, (const char *)body, len, m, 5) < 0) {
		reply(s, c, 400, "body is not a JSON object");
		return;
	}
	if (m[2].type != JSON_STRING || m[3].type != JSON_STRING ||
	    (m[4].type != JSON_ABSENT && m[4].type != JSON_STRING)) {
		reply(s, c, 400, "name and data must be strings");
		return;
	}
	if (m[3].str.len > ENG_PUSHER_DATA_MAX) {
		reply(s, c, 413, "data over 10 KB");
		return;
	}
	if (pusher_event_name_check(m[2].str.p, m[2].str.len, false) < 0) {
		reply(s, c, 400, "invalid event name");
		return;
	}
	if (m[4].type == JSON_STRING &&
	    !pusher_socket_id_valid(m[4].str.p, m[4].str.len)) {
		reply(s, c, 400, "invalid socket_id");
		return;
	}
	if (!one_channel(m, &ch, &why)) {
		reply(s, c, 400, why);
		return;
	}
	if (pusher_channel_kind(ch.p, ch.len) < 0) {
		reply(s, c, 400, "invalid channel name");
		return;
	}
	nlen = eng_pusher_chan_name(app, ch.p, ch.len, name);
	/* the frame, encoded once: event name, channel and data as sent */
	cap = 64 + json_escape_max(m[2].str.len) + json_escape_max(ch.len) +
	      m[3].raw.len + sizeof(ENG_FRAME_SKIP) + m[4].str.len;
	ev = malloc(cap);
	n = ev && nlen > 0 ? eng_pusher_skip_event(ev, cap, m[4].str, m[2].str,
						   ch, m[3].raw,
						   (struct json_slice){ 0 })
			   : -ENOMEM;
	if (n < 0 || s->eng->broker->publish(s, c, ENG_TO_CHANNEL, name,
					     (size_t)nlen, (const uint8_t *)ev,
					     (size_t)n, true, NULL, NULL,
					     NULL) < 0)
		reply(s, c, 503, "not published");
	free(ev);
}

void eng_pusher_api(struct eng_shard *s, struct eng_conn *c,
		    const struct hs_req *req, const uint8_t *body, size_t len)
{
	const struct eng_pusher_cfg *pc = s->eng->cfg.pusher;
	const struct pusher_app *app;
	struct pusher_api_req ar;
	const char *p = req->path.p + 6, *slash, *why = "unauthorized";
	size_t rest = req->path.len - 6;
	int ret;

	slash = memchr(p, '/', rest);
	app = pc && slash ? pusher_app_by_id(&pc->apps, p, (size_t)(slash - p))
			  : NULL;
	if (!app) {
		reply(s, c, 404, "no such app");
		return;
	}
	rest -= (size_t)(slash - p);
	if (rest != 7 || memcmp(slash, "/events", 7)) {
		reply(s, c, 404, "not served (yet): only POST events");
		return;
	}
	if (req->method.len != 4 || memcmp(req->method.p, "POST", 4)) {
		eng_conn_http_reply(s, c, 405, "Allow: POST\r\n", NULL, NULL, 0);
		return;
	}
	ar = (struct pusher_api_req){
		.method = { req->method.p, req->method.len },
		.path = { req->path.p, req->path.len },
		.query = { req->query.p, req->query.len },
		.body = { (const char *)body, len },
	};
	ret = pusher_api_check(app, &ar, (int64_t)time(NULL), &why);
	if (ret == -EACCES)
		reply(s, c, 401, why);
	else if (ret == -EBADMSG || ret == -E2BIG)
		reply(s, c, 400, ret == -E2BIG ? "query too long" : why);
	else if (ret < 0)
		reply(s, c, 503, "out of memory");
	else
		events(s, c, app, body, len);
}
