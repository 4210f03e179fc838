/* SPDX-License-Identifier: MIT */
/*
 * pusher_int.h: what the Pusher endpoint's files share and nobody else
 * reads: the record each Pusher connection has beside its struct
 * eng_conn (pusher.c), which a live hand-over carries (pusher_ho.c).
 */
#ifndef RC_ENGINE_PUSHER_INT_H
#define RC_ENGINE_PUSHER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "chan.h"
#include "pusher_eng.h"

struct eng_ho_buf;
struct eng_ho_rd;

/* A presence channel a connection joined, as whom. */
struct join {
	struct join *next;
	size_t len, clen, ulen;
	char name[ENG_CHAN_MAX + 1];		/* the engine's */
	char ch[PUSHER_CHANNEL_MAX + 1];	/* Pusher's */
	char uid[];				/* user_id, unescaped */
};

/*
 * What a Pusher connection holds besides struct eng_conn, by slot, in a
 * table of the shard's slot count: kept small, every slot has one. The
 * socket_id is its two numbers (pusher_socket_id_print() writes it).
 */
struct pconn {
	struct join *joins;	/* presence channels joined */
	char *uid;		/* signed in as (pusher:signin), or NULL */
	uint32_t gen;		/* the slot's generation it belongs to */
	uint32_t ev_tick;	/* tick its current second of events began */
	uint32_t sid[2];	/* socket_id */
	uint16_t app;		/* index in the apps' table, plus one */
	uint8_t ev_n;		/* client events in that second */
};

#define PUSHER_PCONN_BUDGET	40	/* bytes a slot; idle memory, issue 26 */
_Static_assert(sizeof(struct pconn) <= PUSHER_PCONN_BUDGET,
	       "struct pconn grew past PUSHER_PCONN_BUDGET");

#define ENG_PUSHER_MALFORMED	4300	/* pusher:error: a message unread */

/* The app of Pusher connection @pc on @s. */
static inline const struct pusher_app *eng_pusher__app(struct eng_shard *s,
						       const struct pconn *pc)
{
	return &s->eng->cfg.pusher->apps.v[pc->app - 1];
}

/* Sends @c pusher:error @code with @msg (or fails @c: no memory). */
void eng_pusher__error(struct eng_shard *s, struct eng_conn *c, int code,
		       const char *msg);

/*
 * An empty ping frame (one reference): what a publish's sender gets when
 * Pusher answers nothing; its WebSocket answers it, pusher-js never sees
 * it. NULL: no memory.
 */
struct eng_buf *eng_pusher__ping_frame(void);

/* @pc's join of presence channel @name[0..@len) (the engine's), or NULL. */
struct join *eng_pusher__joined(struct pconn *pc, const char *name,
				size_t len);

/* A client-* event @m from @c (pusher_client.c). */
void eng_pusher__client_event(struct eng_shard *s, struct eng_conn *c,
			      struct pconn *pc, const struct pusher_msg *m);

/* @c's record: NULL when it has none (it is not a Pusher connection). */
struct pconn *eng_pusher__pconn(struct eng_shard *s, struct eng_conn *c);

/*
 * @c's record, made for a connection becoming a Pusher one (zeroed: a
 * slot's last Pusher connection left it clean). NULL: no memory.
 */
struct pconn *eng_pusher__pconn_new(struct eng_shard *s, struct eng_conn *c);

/* @pc's socket_id as text in @buf (PUSHER_SOCKET_ID_OWN + 1 bytes). */
static inline struct json_slice eng_pusher__sid(const struct pconn *pc,
						char *buf)
{
	return (struct json_slice){ buf, pusher_socket_id_print(pc->sid, buf) };
}

/*
 * A live hand-over of @c (eng_endpoint ho_save and ho_load, conn.h;
 * docs/PUSHER.md has the record). eng_pusher__ho_save() appends @c's
 * record to @b: 0, -EAGAIN while a subscribe's answer is held for its
 * channel's registration, -EOPNOTSUPP for a connection without a record
 * (refused), or -ENOMEM when @b failed. eng_pusher__ho_load()
 * reads one from @r into @c's fresh record and counts again what lives
 * outside the connection (presence members, subscription counts, the
 * user's watch channel), announcing nothing: 0; -EINVAL for a record it
 * cannot read (nothing kept); -ENOENT for an app this process lacks;
 * -ENOMEM.
 */
int eng_pusher__ho_save(struct eng_shard *s, struct eng_conn *c,
			struct eng_ho_buf *b);
int eng_pusher__ho_load(struct eng_shard *s, struct eng_conn *c,
			struct eng_ho_rd *r);

/*
 * The old process forgets @c (record @pc), which the new one now
 * serves (on_close of an ENG_CONN_HANDED connection): its subscriptions
 * ended and counted out, its presence joins and its user's watch
 * membership counted out of this node's tables, all without a word (no
 * member_removed, no channel_vacated or other webhook, no owner shard
 * told); @pc is left clean.
 */
void eng_pusher__ho_gone(struct eng_shard *s, struct eng_conn *c,
			 struct pconn *pc);

#endif
