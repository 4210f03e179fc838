/* SPDX-License-Identifier: MIT */
/*
 * auth: JWT at the upgrade (auth.c, libjwt). The engine's configured keys
 * pick the algorithm, so "none" and algorithm confusion are refused.
 */
#ifndef RC_ENGINE_AUTH_H
#define RC_ENGINE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng.h"

#define ENG_MAX_PATTERNS	64	/* entries in a "channels" claim */
#define ENG_JWT_LEEWAY		10	/* default --jwt-leeway, seconds */
#define ENG_KEY_MIN		16	/* bytes in --api-key, at least */
#define ENG_KEY_STRIKES		3	/* wrong keys that end a /ws client */
#define ENG_CLOSE_BAD_KEYS	4029	/* ... with this close code */

/* Who a connection is, from its token; owned by the connection. */
struct eng_auth {
	int64_t exp;			/* unix seconds, 0 = no expiry */
	uint8_t uid_len;
	uint8_t app_len;
	uint8_t has_chans;		/* a "channels" claim restricts */
	uint16_t npat;
	char uid[ENG_CHAN_MAX + 1];
	char app[ENG_APP_MAX + 1];
	char *pat[];			/* npat patterns, strings follow */
};

/*
 * True when @p[0..@n) is --api-key, compared in constant time (as
 * digests, so not even its length leaks); always true with no key set.
 */
bool eng_auth_key_ok(const struct eng_cfg *cfg, const char *p, size_t n);

/*
 * A request or command on @s carried a wrong API key (@where says which
 * way it came, for the log): counts it (key_failed) and logs it, one line
 * every 10 s at most for the whole process, saying how many came since
 * the last, so that a guesser cannot flood the log.
 */
void eng_auth_key_failed(struct eng_shard *s, const char *where);

/* Loads the keys of @cfg; 0, or -errno with *@why set. */
int eng_auth_init(const struct eng_cfg *cfg, const char **why);
void eng_auth_exit(void);

/*
 * Verifies token @tok: signature, exp and nbf with the leeway, claims.
 * On success *@out is a new eng_auth (the caller's); on failure returns
 * -errno with *@why a short reason for the 401.
 */
int eng_auth_verify(struct eng_shard *s, const char *tok, size_t len,
		    struct eng_auth **out, const char **why);

/* May @a (NULL: anonymous) subscribe to or publish on channel @name? */
bool eng_auth_channel_ok(const struct eng_auth *a, const char *name,
			 size_t len);

/*
 * A live hand-over (handover.h): @a (NULL: anonymous) written to @b as
 * present u8, then exp i64, uid, app (u8 length each), has_chans u8,
 * npat u16 and each pattern (u8 length); read back into a new eng_auth
 * (*@out, the caller's; NULL when absent). The load returns 0, or
 * -EBADMSG for a record that is not one (a name or pattern not valid).
 */
struct eng_ho_buf;
struct eng_ho_rd;
void eng_auth_ho_save(struct eng_ho_buf *b, const struct eng_auth *a);
int eng_auth_ho_load(struct eng_ho_rd *r, struct eng_auth **out);

/* The token of a request: ?token= or Authorization: Bearer. */
struct hs_str;
bool eng_auth_token(const struct hs_str *query, const struct hs_str *authz,
		    const char **tok, size_t *len);

#endif
