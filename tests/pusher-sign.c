/* SPDX-License-Identifier: MIT */
/*
 * pusher-sign: proto/pusher's signatures on requests read from stdin, one
 * JSON object a line, for tests/js/test_pusher_sdk.mjs to hold against
 * the official Pusher server SDK. Each request names an app ("app":
 * "ID:KEY:SECRET") and an "op"; the answer is one line, fields split by
 * tabs:
 *   channel  socket_id channel [channel_data] auth -> our auth, check(auth)
 *   user     socket_id user_data auth              -> our auth, check(auth)
 *   api      method path query body params ts now  -> our signed query
 *            of params at ts, check(query at now), why
 *   webhook  body                                  -> our signature
 * A check prints 0 or the negative errno. Exits 1 on a request it cannot
 * read, so a broken harness is not taken for agreement.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher.h"

#define LINE_MAX_	65536

enum { APP, OP, SID, CHANNEL, CDATA, UDATA, AUTH, METHOD, PATH, QUERY, BODY,
       PARAMS, TS, NOW, NFIELDS };

static int request(struct json_parser *jp, const char *line, size_t len)
{
	struct json_member m[NFIELDS] = {
		[APP] = { .key = "app" }, [OP] = { .key = "op" },
		[SID] = { .key = "socket_id" }, [CHANNEL] = { .key = "channel" },
		[CDATA] = { .key = "channel_data" },
		[UDATA] = { .key = "user_data" }, [AUTH] = { .key = "auth" },
		[METHOD] = { .key = "method" }, [PATH] = { .key = "path" },
		[QUERY] = { .key = "query" }, [BODY] = { .key = "body" },
		[PARAMS] = { .key = "params" }, [TS] = { .key = "ts" },
		[NOW] = { .key = "now" },
	};
	static char out[LINE_MAX_];
	struct pusher_apps apps;
	const struct pusher_app *app;
	const char *why = "";
	struct json_slice op;
	ssize_t n;
	int ret;

	if (json_get_members(jp, line, len, m, NFIELDS) < 0 ||
	    m[APP].type != JSON_STRING || m[OP].type != JSON_STRING)
		return -EINVAL;
	pusher_apps_init(&apps);
	ret = pusher_apps_add(&apps, m[APP].str.p, m[APP].str.len, &why);
	if (ret < 0) {
		fprintf(stderr, "pusher-sign: app: %s\n", why);
		return ret;
	}
	app = &apps.v[0];
	op = m[OP].str;
	if (op.len == 7 && !memcmp(op.p, "channel", 7)) {
		n = pusher_channel_auth(app, m[SID].str, m[CHANNEL].str,
					m[CDATA].str, out);
		ret = pusher_channel_auth_check(app, m[SID].str, m[CHANNEL].str,
						m[CDATA].str, m[AUTH].str);
		printf("%s\t%d\n", n > 0 ? out : "-", ret);
	} else if (op.len == 4 && !memcmp(op.p, "user", 4)) {
		n = pusher_user_auth(app, m[SID].str, m[UDATA].str, out);
		ret = pusher_user_auth_check(app, m[SID].str, m[UDATA].str,
					     m[AUTH].str);
		printf("%s\t%d\n", n > 0 ? out : "-", ret);
	} else if (op.len == 3 && !memcmp(op.p, "api", 3)) {
		struct pusher_api_req r = {
			m[METHOD].str, m[PATH].str, m[PARAMS].str, m[BODY].str,
		};
		double ts = 0, now = 0;

		if (m[TS].type != JSON_NUMBER || m[NOW].type != JSON_NUMBER ||
		    sscanf(m[TS].raw.p, "%lf", &ts) != 1 ||
		    sscanf(m[NOW].raw.p, "%lf", &now) != 1) {
			pusher_apps_exit(&apps);
			return -EINVAL;
		}
		n = pusher_api_sign(app, &r, (int64_t)ts, out, sizeof(out));
		r.query = m[QUERY].str;
		ret = pusher_api_check(app, &r, (int64_t)now, &why);
		printf("%s\t%d\t%s\n", n > 0 ? out : "-", ret, ret ? why : "");
	} else if (op.len == 7 && !memcmp(op.p, "webhook", 7)) {
		ret = pusher_webhook_sign(app, m[BODY].str.p, m[BODY].str.len,
					  out);
		printf("%.*s\n", ret ? 1 : PUSHER_SIG_HEX, ret ? "-" : out);
	} else {
		pusher_apps_exit(&apps);
		return -EINVAL;	/* an op we do not know */
	}
	pusher_apps_exit(&apps);
	return 0;
}

int main(void)
{
	struct json_parser *jp = json_parser_new(LINE_MAX_);
	static char line[LINE_MAX_];
	int ret = 0;

	if (!jp)
		return 1;
	while (fgets(line, sizeof(line), stdin)) {
		size_t len = strcspn(line, "\n");

		if (request(jp, line, len) < 0) {
			fprintf(stderr, "pusher-sign: bad request: %.*s\n",
				(int)len, line);
			ret = 1;
			break;
		}
		fflush(stdout);
	}
	json_parser_free(jp);
	return ret;
}
