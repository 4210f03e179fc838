/* SPDX-License-Identifier: MIT */
/*
 * user: users as a target (user.c): admission against
 * --max-conns-per-user before the 101, presence, push and kick. A user is
 * an internal channel, ENG_USER_MARK + user id, on the same index, owner
 * sequencing and fan-out as channels.
 */
#ifndef RC_ENGINE_USER_H
#define RC_ENGINE_USER_H

#include <stddef.h>
#include <stdint.h>

#include "chan.h"	/* struct eng_owner_mail, ENG_OWN_* */
#include "eng.h"

#define ENG_CLOSE_EXPIRED	4001	/* token expired, no refresh */
#define ENG_CLOSE_KICKED	4003	/* POST /users/{uid}/disconnect */

/*
 * Writes the index key of user @uid to @out (ENG_CHAN_MAX + 2 bytes).
 * In ns.c, which any module may call.
 */
size_t eng_user_key(char *out, const char *uid, size_t len);

/*
 * @c passed authentication: registers it with its user's owner; the 101
 * (key @key) goes out once the owner admitted it, a 429 if refused.
 */
struct hs_str;
void eng_user_join(struct eng_shard *s, struct eng_conn *c,
		   const struct hs_str *key);

/*
 * @c came in a live hand-over (handover.h), open already, with its
 * token's c->auth and admitted in the old process: registers it with its
 * user's owner again, counted whatever --max-conns-per-user says and
 * without its unread (the old process sent them, or they are in its
 * queue). Returns 0 or -ENOMEM.
 */
int eng_user_rejoin(struct eng_shard *s, struct eng_conn *c);

/* @c is closing: its user's owner counts one connection fewer. */
void eng_user_leave(struct eng_shard *s, struct eng_conn *c);

/*
 * GET /users/{uid} (@kind ENG_OWN_QUERY) or POST .../disconnect
 * (ENG_OWN_KICK) on the embedded broker: asks the owner, which answers
 * @c. Returns 0, or -ENOMEM (the caller answers 503).
 */
int eng_user_query(struct eng_shard *s, struct eng_conn *c, const char *uid,
		   size_t len, uint8_t kind);

/*
 * ENG_OP_R_PRESENCE, owner shard -> bridge: a user's count on this node.
 * user.c registers its kind of mail, and USER's and its ack's.
 */
struct eng_rpres {
	uint32_t conns;
	uint8_t len;
	char uid[ENG_CHAN_MAX + 1];
	char apps[ENG_PRES_APPS * (ENG_APP_MAX + 1)];	/* "ios,web" */
};

/*
 * The user's connections on this node, and its apps written to @out as
 * "ios","web" (@quoted: for a JSON answer) or as ios,web (for Redis).
 * @ch may be NULL: no connection.
 */
uint32_t eng_user_presence_of(const struct eng_chan *ch, char *out,
			      size_t cap, bool quoted);

/*
 * The Redis broker's presence (broker.h; user_redis.c): user @ch's count
 * on this node to the bridge, which writes it for the other nodes.
 */
void eng_user_redis_presence(struct eng_shard *s, struct eng_chan *ch);

/* Before an R_PRESENCE is posted again: the user's count as it is now. */
void eng_user_refresh(void *self, unsigned op, void *ptr, int32_t res);

#endif
