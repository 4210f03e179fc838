/* SPDX-License-Identifier: MIT */
/*
 * pub: publishing and fan-out across shards (pub.c). A message is encoded
 * once into a push frame in the shared arena; the channel's owner shard
 * sequences it and hands the same frame to every shard with subscribers,
 * in its own order, and each shard queues it on its local subscribers.
 * Broadcasts are sequenced by shard 0.
 */
#ifndef RC_ENGINE_PUB_H
#define RC_ENGINE_PUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"	/* eng_pub_fin_fn */
#include "eng.h"
#include "frame.h"	/* the frames it publishes */

/*
 * Publishes @frame (its reference taken over) for @c: to the owner of its
 * channel or user, which sequences it; @reply (taken over) is queued on
 * @c once it is sequenced. An HTTP publisher reads no further request
 * until then. Returns 0, or -ENOMEM after dropping both.
 */
int eng_publish(struct eng_shard *s, struct eng_conn *c,
		struct eng_buf *frame, struct eng_buf *reply);

/*
 * Publishes @frame (its reference taken over) to the owner of its
 * channel as eng_publish() does, answering nobody: @fin(@s, @arg, 0)
 * once the owner has sequenced it, or -EAGAIN when the hand-off to the
 * owner failed; maybe before the return, and only when 0 is returned.
 * Returns 0, or -ENOMEM after dropping @frame.
 */
int eng_publish_fin(struct eng_shard *s, struct eng_buf *frame,
		    eng_pub_fin_fn *fin, void *arg);

/*
 * On the owner: hands @f to every shard with subscribers of @ch, itself
 * included, in its own order. Returns the shards reached.
 */
unsigned eng_pub_fanout(struct eng_shard *s, struct eng_buf *f,
			struct eng_chan *ch);

/*
 * A message that arrived from Redis, on the bridge's thread (@m is the
 * bridge's mailer), or one of the engine's own ($sys, from a shard's):
 * to its owner as a local publish is, but with nobody to answer.
 * @frame's reference is taken over.
 */
void eng_pub_inject(struct eng_mailer *m, struct eng_buf *frame);

/*
 * ENG_OP_PUB and ENG_OP_PUB_ACK: one publish, publisher -> owner -> back.
 * pub.c registers their kinds of mail, and DELIVER's (a push frame).
 */
struct eng_pub {
	struct eng_buf *frame;		/* one reference */
	struct eng_buf *reply;		/* owned; queued when sequenced */
	uint32_t slot, gen;		/* the publishing connection */
	uint16_t from;			/* the publishing shard, or ENG_BRIDGE */
	uint16_t owner;
	uint32_t shards;		/* set by the owner: shards reached */
	eng_pub_fin_fn *fin;		/* told instead of the connection */
	void *arg;
};

/*
 * Whether @c is the connection @id[0..@len) names, which the frame being
 * delivered skips (frame.h's eng_frame_skip): set once, before the shards
 * start, by the endpoint whose ids they are (pusher.c); NULL: none.
 */
extern bool (*eng_pub_skip)(struct eng_shard *s, struct eng_conn *c,
			    const char *id, size_t len);

#endif
