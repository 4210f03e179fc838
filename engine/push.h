/* SPDX-License-Identifier: MIT */
/*
 * push: the client protocol on /ws (push.c), one JSON command per text
 * message and its reply (docs/PROTOCOL.md), registered as the endpoint of
 * ENG_CONN_K_PUSH connections (conn.h): the upgrade's token and the
 * user's admission, commands in, a user's unread sent as the queue
 * drains, its subscriptions and presence undone at the close.
 */
#ifndef RC_ENGINE_PUSH_H
#define RC_ENGINE_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "eng.h"

struct eng_buf;
struct eng_conn;

/*
 * Registers the /ws endpoint (eng_endpoint_add). Once, before the
 * shards start. Returns 0 or -errno.
 */
int eng_push_register(void);

/*
 * Undoes what a /ws upgrade began on @c: the user's presence and
 * admission, the subscriptions. Its connection may still be HTTP,
 * waiting for the owner to admit the user, so plain HTTP's endpoint
 * closes with it too. Idempotent.
 */
void eng_push_close(struct eng_shard *s, struct eng_conn *c);

/*
 * A new reply frame like @reply (one push.c made, left unchanged) with
 * another @code and @msg (plain text, no quotes); NULL: no memory.
 */
struct eng_buf *eng_push_reword(const struct eng_buf *reply, int code,
				const char *msg);

#endif
