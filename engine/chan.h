/* SPDX-License-Identifier: MIT */
/*
 * chan: a shard's channel index and its subscriptions (chan.c). A channel
 * record exists on a shard while it has local subscribers, or on the
 * channel's owner shard while any shard has; a user is a channel too,
 * named ENG_USER_MARK + user id. Names are hashed with a per-process key.
 */
#ifndef RC_ENGINE_CHAN_H
#define RC_ENGINE_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng.h"

/* Internal channel names of users start with this byte, never valid in
 * a channel name, so a client cannot subscribe to another's messages. */
#define ENG_USER_MARK	'\x01'

/* Pusher channels (pusher_eng.h) start with this byte, never valid in a
 * client's name either: a /ws client cannot read or write them. Their
 * frames are the Pusher events as published (frame.h). */
#define ENG_PUSHER_MARK	'!'

/* One connection's subscription to one channel. */
struct eng_sub {
	struct eng_sub *prev;	/* in the channel's list */
	struct eng_sub *next;
	struct eng_sub *cnext;	/* in the connection's list */
	struct eng_chan *chan;	/* borrowed: lives while it has subs */
	uint32_t slot;		/* the subscriber */
	uint8_t recovering;	/* ENG_SUB_*: live, or not yet */
};

enum {
	ENG_SUB_LIVE = 0,
	ENG_SUB_RECOVERING,	/* no delivery: its history comes first */
	ENG_SUB_HOLDING,	/* ... through Redis: deliveries held (hist.h) */
	ENG_SUB_SKIPPING,	/* ... answered: skips what the answer had */
};

/* A subscribe reply waiting for the owner shard to register interest. */
struct eng_wait {
	struct eng_wait *next;		/* in the channel's waiters */
	struct eng_pend *pend;
};

struct eng_pend {
	struct eng_buf *reply;		/* owned; sent when count hits 0 */
	struct eng_buf *then;		/* owned, or NULL; sent after it */
	uint32_t slot, gen;		/* the subscriber */
	uint32_t count;			/* channels still unacknowledged */
};

/* A user's presence on this node, kept by the user's owner shard. */
struct eng_pres {
	uint32_t conns;
	uint32_t napps;
	bool told;		/* embedded: user_online's webhook queued */
	struct {
		uint32_t n;
		char name[ENG_APP_MAX + 1];
	} app[ENG_PRES_APPS];
};

/* Owner's view of the channel's Redis subscription. */
enum { ENG_R_NONE = 0, ENG_R_PENDING, ENG_R_CONFIRMED };

/*
 * A channel as one shard sees it: its local subscribers, and on the
 * channel's owner shard (the sequencer for its messages), which shards
 * have subscribers at all.
 */
struct eng_chan {
	struct eng_chan *next;		/* hash chain */
	uint64_t hash;
	struct eng_sub *subs;		/* local subscribers */
	uint32_t nsubs;
	uint32_t nshards;		/* owner: bits set in shards */
	uint64_t *shards;		/* owner: bitmap, NULL when empty */
	struct eng_wait *waiters;	/* replies held until registered */
	uint8_t pending;		/* interest sent to owner, no ack yet */
	uint8_t registered;		/* owner knows this shard has subs */
	uint8_t rstate;			/* owner, Redis: ENG_R_* */
	struct eng_pres *pres;		/* owner of a user: presence */
	uint8_t local_rack;		/* owner: own ack awaits Redis */
	struct eng_owner_mail *racks;	/* owner: acks awaiting Redis */
	struct eng_hist *hist;		/* owner: history (hist.c), or NULL */
	struct eng_inbox *inbox;	/* owner of a user: inbox.c's, or NULL */
	uint16_t len;
	char name[];
};

/*
 * ENG_OP_INTEREST and ENG_OP_USER, and their acks: what a shard asks of a
 * channel's or a user's owner shard, answered in the same struct. Their
 * kinds of mail are sub.c's and user.c's.
 */
struct eng_owner_mail {
	struct eng_owner_mail *next;	/* owner: in racks */
	uint16_t from;			/* the asking shard, or ENG_BRIDGE */
	uint8_t add;
	uint8_t len;
	uint8_t kind;			/* ENG_OWN_* */
	uint8_t ok;			/* JOIN: admitted */
	uint8_t counted;		/* LEAVE: was admitted */
	uint8_t last;			/* LEAVE: none left on that shard */
	uint8_t app_len;
	uint8_t live;			/* JOIN: handed over live (no 101) */
	uint32_t slot, gen;		/* JOIN, QUERY, KICK: the connection */
	uint32_t conns;			/* QUERY, KICK: the user's connections */
	char app[ENG_APP_MAX + 1];
	char name[ENG_CHAN_MAX + 2];	/* channel, or "\x01" + user id */
	char apps[8 * (ENG_APP_MAX + 3)];	/* QUERY: "web","ios" */
	char wskey[32];			/* JOIN: Sec-WebSocket-Key for the 101 */
	struct eng_buf **frames;	/* JOIN's ack: the unread, owned */
	uint32_t nframes;
};

/* What an eng_owner_mail asks of the owner. */
enum {
	ENG_OWN_INTEREST = 0,	/* this shard has subscribers, or not */
	ENG_OWN_JOIN,		/* admit one more connection of a user */
	ENG_OWN_LEAVE,		/* a user's connection left (or was refused) */
	ENG_OWN_QUERY,		/* GET /users/{uid} */
	ENG_OWN_KICK,		/* POST /users/{uid}/disconnect */
};

/* Draws the hash key; once, before any shard starts. */
void eng_chan_global_init(void);
uint64_t eng_chan_hash(const char *name, size_t len);
/* A client-given channel (or user id): 1..ENG_CHAN_MAX printable bytes. */
bool eng_chan_name_ok(const char *p, size_t len);
/* A channel a node may hear from Redis: a client's, or a Pusher one. */
bool eng_chan_wire_ok(const char *p, size_t len);

int eng_chans_init(struct eng_chans *t);
void eng_chans_exit(struct eng_chans *t);
/* The record of @name, or NULL. */
struct eng_chan *eng_chan_find(struct eng_chans *t, const char *name,
			       size_t len, uint64_t hash);
/* The record of @name, made if missing; NULL only out of memory. */
struct eng_chan *eng_chan_get(struct eng_chans *t, const char *name,
			      size_t len, uint64_t hash);
/* Frees @ch if nothing refers to it any more (subs, owner state). */
void eng_chan_maybe_free(struct eng_chans *t, struct eng_chan *ch);

/* @c's subscription to @ch, or NULL. */
struct eng_sub *eng_sub_find(struct eng_conn *c, const struct eng_chan *ch);
/* Subscribes @c (in @slot) to @ch; 0 or -ENOMEM. */
int eng_sub_add(struct eng_conn *c, uint32_t slot, struct eng_chan *ch);
/* Takes @sub out of its channel's list only. */
void eng_sub_unlink(struct eng_sub *sub);
/* Takes @sub out of both lists and frees it; @ch is not freed. */
void eng_sub_del(struct eng_conn *c, struct eng_sub *sub);

#endif
