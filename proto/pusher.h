/* SPDX-License-Identifier: MIT */
/*
 * pusher: the Pusher Channels protocol v7 without I/O (issue 26). Apps
 * (ID:KEY:SECRET), the HMAC-SHA256 signatures Pusher uses (channel
 * authorization, user sign-in, the HTTP API's signed query, webhooks),
 * channel, event and socket_id names, a client's event parsed with the
 * JSON layer, and the server's events encoded. docs/PUSHER.md names the
 * sources of each rule. The engine's /app/{key} endpoint is built on it.
 */
#ifndef RC_PROTO_PUSHER_H
#define RC_PROTO_PUSHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "json.h"

/*
 * Close and pusher:error codes (the Pusher protocol page; pusher-js
 * getCloseAction() decides what the client does). 4000-4099: do not
 * reconnect with the same parameters; 4100-4199: reconnect with backoff;
 * 4200-4299: reconnect at once; 4300-4399: other errors, which pusher-js
 * treats as "refused" when they close the socket, so send them only as
 * pusher:error where the client should go on.
 */
enum pusher_code {
	PUSHER_SSL_ONLY			= 4000,	/* use wss:// */
	PUSHER_APP_NOT_FOUND		= 4001,	/* no app with this key */
	PUSHER_APP_DISABLED		= 4003,
	PUSHER_OVER_QUOTA		= 4004,	/* app's connection quota */
	PUSHER_PATH_NOT_FOUND		= 4005,
	PUSHER_BAD_VERSION		= 4006,	/* invalid version string */
	PUSHER_PROTOCOL_UNSUPPORTED	= 4007,
	PUSHER_NO_PROTOCOL		= 4008,	/* no protocol= given */
	PUSHER_UNAUTHORIZED		= 4009,
	PUSHER_OVER_CAPACITY		= 4100,	/* server full: back off */
	PUSHER_RECONNECT		= 4200,	/* generic: come back now */
	PUSHER_PONG_TIMEOUT		= 4201,	/* no pong to our ping */
	PUSHER_INACTIVITY		= 4202,	/* closed after inactivity */
	PUSHER_CLIENT_EVENT_RATE	= 4301,	/* pusher:error, no close */
	PUSHER_WATCHLIST_LIMIT		= 4302,	/* the same: a bad watchlist */
};

/* A short English meaning of @code, or NULL when it is not one above. */
const char *pusher_code_text(int code);

/* ---- Apps ---- */

#define PUSHER_ID_MAX		64	/* bytes of an app id */
#define PUSHER_KEY_MAX		64	/* bytes of an app key */
#define PUSHER_SECRET_MAX	128	/* bytes of an app secret */

/* One app: its id (in /apps/{id}), key (in /app/{key}) and secret. */
struct pusher_app {
	char id[PUSHER_ID_MAX + 1];		/* NUL-terminated */
	char key[PUSHER_KEY_MAX + 1];		/* NUL-terminated */
	char secret[PUSHER_SECRET_MAX + 1];	/* NUL-terminated */
	size_t id_len, key_len, secret_len;
	bool client_events;	/* clients may send client-* events */
	bool sub_count;		/* pusher_internal:subscription_count sent */
	uint8_t client_rate;	/* client events a second a connection may
				 * send; 0: Pusher's 10 */
	bool watchlist;		/* user_data.watchlist is served */
};

/* The apps a server serves; pusher_apps_init() makes it empty. */
struct pusher_apps {
	struct pusher_app *v;		/* malloc'd, @n used of @cap */
	unsigned n, cap;
};

void pusher_apps_init(struct pusher_apps *a);
/* Frees the table and wipes the secrets. Safe on an empty table. */
void pusher_apps_exit(struct pusher_apps *a);

/*
 * Adds one app written `ID:KEY:SECRET` (@spec[0..@len), not
 * NUL-terminated). ID and KEY are 1 to 64 bytes of [A-Za-z0-9_.-]; SECRET
 * is 1 to 128 bytes of [A-Za-z0-9_.~+/=-] (hex, base64 and their URL
 * forms). No ID and no KEY may appear twice. Returns 0; -EINVAL with
 * *@why set to a static message for a malformed spec; -EEXIST for a
 * repeated id or key; -ENOMEM.
 */
int pusher_apps_add(struct pusher_apps *a, const char *spec, size_t len,
		    const char **why);

/*
 * Adds every app in @text[0..@len): the form of RINGCAST_PUSHER_APPS and
 * of an apps file. Specs are separated by newlines, commas, spaces or
 * tabs; '#' starts a comment that runs to the end of its line; blank
 * lines are allowed. On error, returns what pusher_apps_add() does, with
 * *@line the 1-based line of the bad spec; the apps before it stay added.
 * Text without any spec adds nothing and returns 0.
 */
int pusher_apps_parse(struct pusher_apps *a, const char *text, size_t len,
		      unsigned *line, const char **why);

/* The app with key (or id) @s[0..@len), or NULL. */
const struct pusher_app *pusher_app_by_key(const struct pusher_apps *a,
					   const char *s, size_t len);
const struct pusher_app *pusher_app_by_id(const struct pusher_apps *a,
					  const char *s, size_t len);

/* ---- Signatures (HMAC-SHA256, lowercase hex) ---- */

#define PUSHER_SIG_HEX		64	/* hex digits of a signature */
/* `KEY:HEX`, the longest an auth string we make or accept can be. */
#define PUSHER_AUTH_MAX		(PUSHER_KEY_MAX + 1 + PUSHER_SIG_HEX)

/*
 * Writes HMAC-SHA256(@app's secret, @msg[0..@len)) in lowercase hex into
 * @hex (PUSHER_SIG_HEX bytes, no NUL). Returns 0 or -ENOMEM.
 */
int pusher_sign_hex(const struct pusher_app *app, const void *msg,
		    size_t len, char hex[PUSHER_SIG_HEX]);

/*
 * Writes the `auth` a channel subscription carries, `KEY:HEX` of
 * `socket_id:channel` or, when @channel_data.p is not NULL, of
 * `socket_id:channel:channel_data` (presence), into @out (at least
 * PUSHER_AUTH_MAX + 1 bytes; NUL-terminated). Returns its length or
 * -ENOMEM. What an app's auth endpoint does; for tests and tools.
 */
ssize_t pusher_channel_auth(const struct pusher_app *app,
			    struct json_slice socket_id,
			    struct json_slice channel,
			    struct json_slice channel_data, char *out);

/*
 * Checks the @auth a client sent to subscribe to @channel: it must be
 * exactly `KEY:HEX` with @app's key and the lowercase hex the app would
 * have made, over the bytes received (the string @channel_data as
 * unescaped, never re-serialized). @channel_data.p NULL: no
 * channel_data was sent. The signatures are compared in constant time.
 * Returns 0, or -EACCES (wrong key, wrong signature, malformed auth),
 * or -ENOMEM.
 */
int pusher_channel_auth_check(const struct pusher_app *app,
			      struct json_slice socket_id,
			      struct json_slice channel,
			      struct json_slice channel_data,
			      struct json_slice auth);

/* As pusher_channel_auth(), for pusher:signin: `socket_id::user::user_data`. */
ssize_t pusher_user_auth(const struct pusher_app *app,
			 struct json_slice socket_id,
			 struct json_slice user_data, char *out);

/* As pusher_channel_auth_check(), for pusher:signin's auth and user_data. */
int pusher_user_auth_check(const struct pusher_app *app,
			   struct json_slice socket_id,
			   struct json_slice user_data, struct json_slice auth);

/*
 * Writes X-Pusher-Signature for a webhook @body: HMAC-SHA256 of the body
 * in hex (X-Pusher-Key is the app's key). Same returns as pusher_sign_hex().
 */
int pusher_webhook_sign(const struct pusher_app *app, const void *body,
			size_t len, char hex[PUSHER_SIG_HEX]);

/* ---- The HTTP API's signed requests ---- */

#define PUSHER_API_WINDOW	600	/* seconds auth_timestamp may be off */
#define PUSHER_QUERY_MAX	4096	/* bytes of a query we check */
#define PUSHER_QUERY_PARAMS	32	/* parameters of a query we check */

/* One request to /apps/{id}/...; slices are not NUL-terminated. */
struct pusher_api_req {
	struct json_slice method;	/* "POST", "GET", upper case */
	struct json_slice path;		/* "/apps/1/events", no query */
	struct json_slice query;	/* after '?', raw (percent-encoded) */
	struct json_slice body;		/* len 0: none */
};

/*
 * Checks a request signed as the Pusher HTTP API requires: the query has
 * auth_key (@app's key), auth_timestamp (decimal seconds within
 * PUSHER_API_WINDOW of @now, either way), auth_version "1.0",
 * auth_signature (lowercase hex of HMAC-SHA256 over "METHOD\nPATH\nQ",
 * where Q is every other parameter, percent-decoded, keys lower-cased,
 * sorted by key and joined as key=value with '&') and, when there is a
 * body, body_md5 (its MD5 in lowercase hex; checked too when sent without
 * a body). Compares in constant time. Returns 0; -EACCES with *@why a
 * static message for Pusher's 401; -EBADMSG with *@why for a malformed
 * query (a bad %-escape, a parameter twice: readers would differ on
 * which counts), Pusher's 400; -E2BIG for a query over PUSHER_QUERY_MAX
 * bytes or PUSHER_QUERY_PARAMS parameters; -ENOMEM.
 */
int pusher_api_check(const struct pusher_app *app,
		     const struct pusher_api_req *req, int64_t now,
		     const char **why);

/*
 * Signs a request as the Pusher server SDKs do: @req->query holds the
 * parameters other than auth_* and body_md5 (raw, may be empty); writes
 * them with auth_key, auth_timestamp=@ts, auth_version=1.0 and, when
 * there is a body, body_md5, sorted, then &auth_signature=..., into @out
 * (NUL-terminated). Keys are not lower-cased here: pass them lower case.
 * Returns the length; -EINVAL when @req->query holds one of those
 * parameters; -E2BIG when it has more than PUSHER_QUERY_PARAMS - 5 (the
 * signed query would be refused); -ENOSPC when @cap is short; -EBADMSG
 * or -ENOMEM.
 */
ssize_t pusher_api_sign(const struct pusher_app *app,
			const struct pusher_api_req *req, int64_t ts,
			char *out, size_t cap);

/* ---- Names ---- */

#define PUSHER_CHANNEL_MAX	164	/* bytes of a channel name */
#define PUSHER_EVENT_MAX	200	/* bytes of an event name */
#define PUSHER_SOCKET_ID_MAX	41	/* "%u.%u" of two 64-bit numbers */
#define PUSHER_USER_PREFIX	"#server-to-user-"

/* What a channel's name makes it; flags. 0 is a public channel. */
enum {
	PUSHER_CH_PRIVATE	= 1 << 0,	/* private-: needs auth */
	PUSHER_CH_PRESENCE	= 1 << 1,	/* presence-: auth + members */
	PUSHER_CH_ENCRYPTED	= 1 << 2,	/* private-encrypted- */
	PUSHER_CH_CACHE		= 1 << 3,	/* keeps its last event */
	PUSHER_CH_USER		= 1 << 4,	/* #server-to-user-{id} */
};

/*
 * Classifies channel @name[0..@len): 1 to PUSHER_CHANNEL_MAX bytes of
 * [A-Za-z0-9_=@,.;-], or PUSHER_USER_PREFIX followed by such bytes. The
 * prefixes count only at the start: private-encrypted-cache-,
 * private-encrypted-, private-cache-, private-, presence-cache-,
 * presence-, cache-. Returns the PUSHER_CH_* flags (>= 0) or -EINVAL.
 * With PUSHER_CH_USER, the user id is @name + strlen(PUSHER_USER_PREFIX).
 */
int pusher_channel_kind(const char *name, size_t len);

/* True for a channel kind that needs an auth to subscribe. */
static inline bool pusher_channel_needs_auth(int kind)
{
	return kind & (PUSHER_CH_PRIVATE | PUSHER_CH_PRESENCE);
}

/*
 * Checks an event name: 1 to PUSHER_EVENT_MAX bytes of valid UTF-8. With
 * @client, it must also start with "client-" (what a client may send on
 * a channel). Returns 0 or -EINVAL.
 */
int pusher_event_name_check(const char *name, size_t len, bool client);

/* True when @s[0..@len) matches ^[0-9]+\.[0-9]+$ within our length. */
bool pusher_socket_id_valid(const char *s, size_t len);

/*
 * A socket_id of ours is two 32-bit numbers, kept as numbers and written
 * "%u.%u" when needed (at most PUSHER_SOCKET_ID_OWN bytes).
 * pusher_socket_id_new() draws them from the OpenSSL CSPRNG into @id:
 * returns 0, or -EIO when the CSPRNG fails. pusher_socket_id_print()
 * writes @id into @out (PUSHER_SOCKET_ID_OWN + 1 bytes, NUL-terminated)
 * and returns the length. pusher_socket_id_read() reads @s[0..@len) into
 * @id only when it is exactly what pusher_socket_id_print() writes (no
 * leading zero, no number past 32 bits), so that comparing numbers is
 * comparing texts: returns 0 or -EINVAL.
 */
#define PUSHER_SOCKET_ID_OWN	21	/* "4294967295.4294967295" */
int pusher_socket_id_new(uint32_t id[2]);
size_t pusher_socket_id_print(const uint32_t id[2], char *out);
int pusher_socket_id_read(const char *s, size_t len, uint32_t id[2]);

/*
 * Reads the request target of a Pusher WebSocket upgrade,
 * "/app/{key}?protocol=7&client=js&version=8.4.0&flash=false" (pusher-js
 * src/core/transports/url_schemes.ts): the path must be exactly /app/
 * and a key of 1 to PUSHER_KEY_MAX bytes of [A-Za-z0-9_.-]; "protocol"
 * must be given, from 5 to 7. Returns 0 with *@key pointing into
 * @target and *@protocol set, or the code to close with:
 * PUSHER_PATH_NOT_FOUND, PUSHER_APP_NOT_FOUND (a key no app can have),
 * PUSHER_NO_PROTOCOL, PUSHER_PROTOCOL_UNSUPPORTED. Whether an app has the
 * key is the caller's lookup (4001 too).
 */
int pusher_ws_target(const char *target, size_t len, struct json_slice *key,
		     unsigned *protocol);

/* ---- A client's message ---- */

/*
 * A client's event, {"event":E,"channel":C,"data":D}. Absent members have
 * p NULL. D of pusher:subscribe and the others may be an object or a
 * JSON string holding one; its members are read from either.
 */
struct pusher_msg {
	struct json_slice event;	/* unescaped */
	struct json_slice channel;	/* top-level "channel", unescaped */
	struct json_slice data;		/* data's JSON text, as sent */
	enum json_type data_type;	/* JSON_ABSENT when no data */
	/* from data, an object or a string holding one: */
	struct json_slice d_channel;	/* "channel" (subscribe, unsubscribe) */
	struct json_slice d_auth;	/* "auth" (subscribe, signin) */
	struct json_slice d_channel_data;	/* "channel_data" (presence) */
	struct json_slice d_user_data;	/* "user_data" (signin) */
};

/*
 * Parses one client message @buf[0..@len) (no padding needed) with @p.
 * The top level must be an object with "event" a string; "channel",
 * when present, a string; "data" anything. When data is an object, or a
 * string whose text is an object, and the event starts with "pusher:",
 * its "channel", "auth", "channel_data" and "user_data" must be strings
 * when present (data "" counts as none); other events' data is left
 * alone (client events carry any JSON). No member read may appear twice.
 * Slices are copied into @scratch (@cap bytes; 2 * @len + 16 always
 * suffice), so they stay valid while @scratch does, whatever @p parses
 * next. Returns 0; -EBADMSG (not JSON, wrong types); -E2BIG (over @p's
 * max_doc, or @cap short).
 */
int pusher_msg_parse(struct json_parser *p, const char *buf, size_t len,
		     struct pusher_msg *m, char *scratch, size_t cap);

/* A presence member: user_id and user_info from channel_data. */
struct pusher_member {
	struct json_slice id;		/* user_id's JSON: "string" or number */
	struct json_slice id_str;	/* user_id unescaped (or the number) */
	struct json_slice info;		/* user_info's JSON; p NULL: none */
};

/*
 * Reads a presence @channel_data (a JSON object) with @p: "user_id" must
 * be a non-empty string or a number (Laravel sends integers) and
 * "user_info", when present, any value. Slices are copied into @scratch
 * (@cap bytes; twice @channel_data's length suffices). Compare users by
 * id_str: "\u0041" and "A" are one user. Returns 0, -EBADMSG or
 * -E2BIG.
 */
int pusher_member_parse(struct json_parser *p, struct json_slice channel_data,
			struct pusher_member *mb, char *scratch, size_t cap);

/*
 * Reads pusher:signin's @user_data (a JSON object) with @p: "id" must be
 * a non-empty string; its unescaped value is copied into @id_out (@cap
 * bytes; @user_data's length suffices), its length returned. -EBADMSG
 * or -E2BIG otherwise.
 */
ssize_t pusher_user_id_parse(struct json_parser *p, struct json_slice user_data,
			     char *id_out, size_t cap);

#define PUSHER_WATCHLIST_MAX	100	/* user ids a watchlist holds: Pusher's */

/*
 * Reads pusher:signin's @user_data's "watchlist" with @p: absent (*@n 0)
 * or an array of at most PUSHER_WATCHLIST_MAX non-empty strings, each
 * at most PUSHER_CHANNEL_MAX bytes unescaped, copied into @buf (@cap
 * bytes; @user_data's length suffices) with @ids[i] pointing at them.
 * Returns 0; -EBADMSG (not an array, an element not a string or empty)
 * or -E2BIG (too many, too long, or @buf too small).
 */
int pusher_watchlist_parse(struct json_parser *p, struct json_slice user_data,
			   char *buf, size_t cap, struct json_slice *ids,
			   unsigned *n);

/* ---- The server's events ---- */

/*
 * Each writes one complete event, as JSON text, into @out (@cap bytes, no
 * NUL) and returns its length, or -ENOSPC when @cap is short. Names and
 * strings are escaped; "data" is the JSON-encoded string the protocol
 * asks of server events (pusher-js parses it). Strings given must be
 * valid UTF-8; raw JSON given must be valid JSON.
 */

/* pusher:connection_established, with @activity_timeout in seconds. */
ssize_t pusher_enc_connected(char *out, size_t cap, struct json_slice sid,
			     unsigned activity_timeout);

/* pusher_internal:subscription_succeeded for a channel without members. */
ssize_t pusher_enc_subscribed(char *out, size_t cap,
			      struct json_slice channel);

/*
 * pusher_internal:subscription_succeeded for a presence channel, with
 * @n members: data {"presence":{"ids":[...],"hash":{...},"count":n}}, ids
 * and hash keys as strings.
 */
ssize_t pusher_enc_presence(char *out, size_t cap, struct json_slice channel,
			    const struct pusher_member *mb, unsigned n);

/*
 * pusher:subscription_error on @channel: data {"type":@type,
 * "error":@error,"status":@status}, e.g. "AuthError" and 401.
 */
ssize_t pusher_enc_sub_error(char *out, size_t cap, struct json_slice channel,
			     const char *type, const char *error, int status);

/* pusher:error, data {"code":@code,"message":@message}. */
ssize_t pusher_enc_error(char *out, size_t cap, int code, const char *message);

/*
 * pusher_internal:watchlist_events (pusher-js watchlist.ts), no channel:
 * data {"events":[{"name":"online"|"offline","user_ids":[@ids...]}]},
 * each id a user id unescaped (UTF-8), written as a JSON string.
 */
ssize_t pusher_enc_watchlist(char *out, size_t cap, bool online,
			     const struct json_slice *ids, unsigned n);

/* pusher:pong and pusher:ping (the server's keep-alive), data {}. */
ssize_t pusher_enc_pong(char *out, size_t cap);
ssize_t pusher_enc_ping(char *out, size_t cap);

/* pusher_internal:member_added (user_id, user_info) on @channel. */
ssize_t pusher_enc_member_added(char *out, size_t cap,
				struct json_slice channel,
				const struct pusher_member *mb);

/* pusher_internal:member_removed (user_id only) on @channel. */
ssize_t pusher_enc_member_removed(char *out, size_t cap,
				  struct json_slice channel,
				  const struct pusher_member *mb);

/* pusher:signin_success, data {"user_data":@user_data as a string}. */
ssize_t pusher_enc_signed_in(char *out, size_t cap,
			     struct json_slice user_data);

/* pusher:cache_miss on @channel. */
ssize_t pusher_enc_cache_miss(char *out, size_t cap,
			      struct json_slice channel);

/* pusher_internal:subscription_count, data {"subscription_count":@count}. */
ssize_t pusher_enc_sub_count(char *out, size_t cap, struct json_slice channel,
			     uint64_t count);

/*
 * A channel event, {"event":@event,"channel":@channel,"data":@data} and,
 * when @user_id.p is not NULL, "user_id": @data and @user_id are raw
 * JSON, written as they are (an HTTP publish's data is a JSON string
 * literal; a client event's data any JSON, forwarded as received).
 */
ssize_t pusher_enc_event(char *out, size_t cap, struct json_slice event,
			 struct json_slice channel, struct json_slice data,
			 struct json_slice user_id);

#endif
