/* SPDX-License-Identifier: MIT */
/*
 * pusher: apps, names and codes of the Pusher Channels protocol v7
 * (pusher.h has the contracts). pusher_auth.c signs and checks,
 * pusher_msg.c reads a client's messages and writes the server's events.
 * Pure: libcrypto's CSPRNG and the JSON layer's UTF-8 check are all it
 * uses besides libc.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "pusher.h"

const char *pusher_code_text(int code)
{
	switch (code) {
	case PUSHER_SSL_ONLY:		return "SSL only: use wss://";
	case PUSHER_APP_NOT_FOUND:	return "application does not exist";
	case PUSHER_APP_DISABLED:	return "application disabled";
	case PUSHER_OVER_QUOTA:		return "application over connection quota";
	case PUSHER_PATH_NOT_FOUND:	return "path not found";
	case PUSHER_BAD_VERSION:	return "invalid version string format";
	case PUSHER_PROTOCOL_UNSUPPORTED:
					return "unsupported protocol version";
	case PUSHER_NO_PROTOCOL:	return "no protocol version supplied";
	case PUSHER_UNAUTHORIZED:	return "connection is unauthorized";
	case PUSHER_OVER_CAPACITY:	return "over capacity";
	case PUSHER_RECONNECT:		return "generic reconnect immediately";
	case PUSHER_PONG_TIMEOUT:	return "pong reply not received";
	case PUSHER_INACTIVITY:		return "closed after inactivity";
	case PUSHER_CLIENT_EVENT_RATE:
		return "client event rejected due to rate limit";
	case PUSHER_WATCHLIST_LIMIT:	return "watchlist over its limit";
	default:			return NULL;
	}
}

/* ---- Apps ---- */

/* [A-Za-z0-9_.-]: what an id or key may hold (URL path, `KEY:HEX`). */
static bool name_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* A secret adds the rest of base64 and its URL form: ~ + / =. */
static bool secret_byte(unsigned char c)
{
	return name_byte(c) || c == '~' || c == '+' || c == '/' || c == '=';
}

/* Checks @s[0..@len) as 1 to @max bytes that @ok accepts. */
static bool field_ok(const char *s, size_t len, size_t max,
		     bool (*ok)(unsigned char))
{
	size_t i;

	if (!len || len > max)
		return false;
	for (i = 0; i < len; i++)
		if (!ok((unsigned char)s[i]))
			return false;
	return true;
}

void pusher_apps_init(struct pusher_apps *a)
{
	memset(a, 0, sizeof(*a));
}

void pusher_apps_exit(struct pusher_apps *a)
{
	/* the secrets must not linger in freed memory */
	if (a->v)
		OPENSSL_cleanse(a->v, (size_t)a->cap * sizeof(*a->v));
	free(a->v);
	pusher_apps_init(a);
}

static const struct pusher_app *find(const struct pusher_apps *a,
				     const char *s, size_t len, bool by_key)
{
	unsigned i;

	for (i = 0; i < a->n; i++) {
		const struct pusher_app *app = &a->v[i];
		size_t n = by_key ? app->key_len : app->id_len;

		if (n == len && !memcmp(by_key ? app->key : app->id, s, len))
			return app;
	}
	return NULL;
}

const struct pusher_app *pusher_app_by_key(const struct pusher_apps *a,
					   const char *s, size_t len)
{
	return find(a, s, len, true);
}

const struct pusher_app *pusher_app_by_id(const struct pusher_apps *a,
					  const char *s, size_t len)
{
	return find(a, s, len, false);
}

int pusher_apps_add(struct pusher_apps *a, const char *spec, size_t len,
		    const char **why)
{
	const char *end = spec + len, *k, *s;
	struct pusher_app *app;

	k = memchr(spec, ':', len);
	s = k ? memchr(k + 1, ':', (size_t)(end - k - 1)) : NULL;
	if (!s) {
		*why = "an app is ID:KEY:SECRET";
		return -EINVAL;
	}
	k++;
	s++;
	if (!field_ok(spec, (size_t)(k - 1 - spec), PUSHER_ID_MAX, name_byte)) {
		*why = "app ID: 1 to 64 bytes of A-Z a-z 0-9 _ . -";
		return -EINVAL;
	}
	if (!field_ok(k, (size_t)(s - 1 - k), PUSHER_KEY_MAX, name_byte)) {
		*why = "app KEY: 1 to 64 bytes of A-Z a-z 0-9 _ . -";
		return -EINVAL;
	}
	if (!field_ok(s, (size_t)(end - s), PUSHER_SECRET_MAX, secret_byte)) {
		*why = "app SECRET: 1 to 128 bytes of A-Z a-z 0-9 _ . - ~ + / =";
		return -EINVAL;
	}
	if (pusher_app_by_id(a, spec, (size_t)(k - 1 - spec))) {
		*why = "app ID given twice";
		return -EEXIST;
	}
	if (pusher_app_by_key(a, k, (size_t)(s - 1 - k))) {
		*why = "app KEY given twice";
		return -EEXIST;
	}
	if (a->n == a->cap) {
		unsigned n = a->n, cap = a->cap ? 2 * a->cap : 4;
		struct pusher_app *v = calloc(cap, sizeof(*v));

		/* not realloc: the old copy of the secrets is wiped first */
		if (!v) {
			*why = "out of memory";
			return -ENOMEM;
		}
		if (n)
			memcpy(v, a->v, n * sizeof(*v));
		pusher_apps_exit(a);
		a->v = v;
		a->cap = cap;
		a->n = n;
	}
	app = &a->v[a->n++];
	memset(app, 0, sizeof(*app));
	app->id_len = (size_t)(k - 1 - spec);
	app->key_len = (size_t)(s - 1 - k);
	app->secret_len = (size_t)(end - s);
	memcpy(app->id, spec, app->id_len);
	memcpy(app->key, k, app->key_len);
	memcpy(app->secret, s, app->secret_len);
	return 0;
}

static bool spec_sep(char c)
{
	return c == '\n' || c == '\r' || c == ',' || c == ' ' || c == '\t';
}

int pusher_apps_parse(struct pusher_apps *a, const char *text, size_t len,
		      unsigned *line, const char **why)
{
	size_t i = 0, j;
	int ret;

	*line = 1;
	while (i < len) {
		if (spec_sep(text[i])) {
			*line += text[i++] == '\n';
			continue;
		}
		if (text[i] == '#') {	/* a comment, to the end of its line */
			while (i < len && text[i] != '\n')
				i++;
			continue;
		}
		for (j = i; j < len && !spec_sep(text[j]) && text[j] != '#'; j++)
			;
		ret = pusher_apps_add(a, text + i, j - i, why);
		if (ret < 0)
			return ret;
		i = j;
	}
	return 0;
}

/* ---- Names ---- */

/* Pusher's channel alphabet: [A-Za-z0-9_=@,.;-]. */
static bool channel_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '=' ||
	       c == '@' || c == ',' || c == '.' || c == ';';
}

/* Longest first, so private-encrypted-cache- is not read as private-. */
static const struct {
	const char *prefix;
	int kind;
} prefixes[] = {
	{ "private-encrypted-cache-",
	  PUSHER_CH_PRIVATE | PUSHER_CH_ENCRYPTED | PUSHER_CH_CACHE },
	{ "private-encrypted-", PUSHER_CH_PRIVATE | PUSHER_CH_ENCRYPTED },
	{ "private-cache-", PUSHER_CH_PRIVATE | PUSHER_CH_CACHE },
	{ "private-", PUSHER_CH_PRIVATE },
	{ "presence-cache-", PUSHER_CH_PRESENCE | PUSHER_CH_CACHE },
	{ "presence-", PUSHER_CH_PRESENCE },
	{ "cache-", PUSHER_CH_CACHE },
};

int pusher_channel_kind(const char *name, size_t len)
{
	size_t i, skip = 0, ulen = strlen(PUSHER_USER_PREFIX);
	int kind = 0;

	if (!len || len > PUSHER_CHANNEL_MAX)
		return -EINVAL;
	if (len > ulen && !memcmp(name, PUSHER_USER_PREFIX, ulen)) {
		skip = ulen;	/* '#' is allowed here only */
		kind = PUSHER_CH_USER;
	}
	for (i = skip; i < len; i++)
		if (!channel_byte((unsigned char)name[i]))
			return -EINVAL;
	if (kind)
		return kind;
	/* anchored: only a name's start says what it is */
	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t n = strlen(prefixes[i].prefix);

		if (len >= n && !memcmp(name, prefixes[i].prefix, n))
			return prefixes[i].kind;
	}
	return 0;
}

int pusher_event_name_check(const char *name, size_t len, bool client)
{
	if (!len || len > PUSHER_EVENT_MAX || !json_utf8_valid(name, len))
		return -EINVAL;
	if (client && (len < 7 || memcmp(name, "client-", 7)))
		return -EINVAL;
	return 0;
}

bool pusher_socket_id_valid(const char *s, size_t len)
{
	size_t i, dot = 0;

	if (len < 3 || len > PUSHER_SOCKET_ID_MAX)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] == '.' && !dot && i > 0 && i + 1 < len)
			dot = i;
		else if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return dot != 0;
}

int pusher_socket_id_new(uint32_t id[2])
{
	return RAND_bytes((unsigned char *)id, 2 * sizeof(*id)) == 1 ? 0 : -EIO;
}

size_t pusher_socket_id_print(const uint32_t id[2], char *out)
{
	return (size_t)snprintf(out, PUSHER_SOCKET_ID_OWN + 1,
				"%" PRIu32 ".%" PRIu32, id[0], id[1]);
}

/* One number of a socket_id at @s[*@i..@len), up to @stop; false if not ours. */
static bool id_part(const char *s, size_t len, size_t *i, char stop,
		    uint32_t *out)
{
	size_t from = *i;
	uint64_t v = 0;

	for (; *i < len && s[*i] != stop; (*i)++) {
		if (s[*i] < '0' || s[*i] > '9' || *i - from >= 10)
			return false;
		v = v * 10 + (uint64_t)(s[*i] - '0');
	}
	/* empty, a leading zero, or past 32 bits: never printed by us */
	if (*i == from || (s[from] == '0' && *i - from > 1) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

int pusher_socket_id_read(const char *s, size_t len, uint32_t id[2])
{
	size_t i = 0;

	if (!id_part(s, len, &i, '.', &id[0]) || i == len)
		return -EINVAL;
	i++;	/* the dot */
	return id_part(s, len, &i, '.', &id[1]) && i == len ? 0 : -EINVAL;
}

/* The value of query parameter @name in @q[0..@len), undecoded, or p NULL. */
static struct json_slice query_param(const char *q, size_t len,
				     const char *name)
{
	size_t i = 0, n = strlen(name);

	while (i < len) {
		const char *s = q + i, *amp = memchr(s, '&', len - i);
		size_t plen = amp ? (size_t)(amp - s) : len - i;

		if (plen > n && s[n] == '=' && !memcmp(s, name, n))
			return (struct json_slice){ s + n + 1, plen - n - 1 };
		i += plen + 1;
	}
	return (struct json_slice){ NULL, 0 };
}

int pusher_ws_target(const char *target, size_t len, struct json_slice *key,
		     unsigned *protocol)
{
	const char *q = memchr(target, '?', len);
	size_t plen = q ? (size_t)(q - target) : len;
	struct json_slice v;

	if (plen <= 5 || memcmp(target, "/app/", 5) ||
	    memchr(target + 5, '/', plen - 5))
		return PUSHER_PATH_NOT_FOUND;
	if (!field_ok(target + 5, plen - 5, PUSHER_KEY_MAX, name_byte))
		return PUSHER_APP_NOT_FOUND;
	*key = (struct json_slice){ target + 5, plen - 5 };
	v = q ? query_param(q + 1, len - plen - 1, "protocol") :
		(struct json_slice){ NULL, 0 };
	/* the spec would infer it from "version"; it names 4008 for this */
	if (!v.p)
		return PUSHER_NO_PROTOCOL;
	if (v.len != 1 || v.p[0] < '5' || v.p[0] > '7')
		return PUSHER_PROTOCOL_UNSUPPORTED;
	*protocol = (unsigned)(v.p[0] - '0');
	return 0;
}
