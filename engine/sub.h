/* SPDX-License-Identifier: MIT */
/*
 * sub: subscribe, unsubscribe and interest (sub.c). The owner shard of a
 * channel learns which shards have subscribers from interest mail; a
 * shard holds a subscribe reply until the owner has registered it (and,
 * with Redis, until Redis confirmed the SUBSCRIBE), so a message
 * published after the reply always finds the subscriber.
 */
#ifndef RC_ENGINE_SUB_H
#define RC_ENGINE_SUB_H

#include <stdbool.h>
#include <stdint.h>

#include "eng.h"
#include "json.h"

/*
 * Subscribes @c to @n channels; @reply (taken over) is queued once every
 * owner has registered this shard. Returns 0, or -ENOMEM after dropping
 * @reply (the caller fails the connection). eng_subscribe_then(): @then
 * too (taken over, NULL: none), queued right behind @reply (a Pusher
 * cache channel's last event after its subscription_succeeded).
 */
int eng_subscribe(struct eng_shard *s, struct eng_conn *c,
		  const struct json_slice *names, unsigned n,
		  struct eng_buf *reply);
int eng_subscribe_then(struct eng_shard *s, struct eng_conn *c,
		       const struct json_slice *names, unsigned n,
		       struct eng_buf *reply, struct eng_buf *then);
/*
 * Subscribes @c to channel @name, held (recovering) so that nothing is
 * delivered to it until its history is read (hist.h): the owner hears of
 * this shard's interest before that read, so nothing falls between.
 * Returns 0, -EEXIST (already subscribed) or -ENOMEM.
 */
int eng_subscribe_recovering(struct eng_shard *s, struct eng_conn *c,
			     const char *name, size_t len);
void eng_unsubscribe(struct eng_shard *s, struct eng_conn *c,
		     const struct json_slice *names, unsigned n);
void eng_unsubscribe_all(struct eng_shard *s, struct eng_conn *c);
/* Drops the one subscription @sub of @c (from c->subs). */
void eng_unsubscribe_one(struct eng_shard *s, struct eng_conn *c,
			 struct eng_sub *sub);

/*
 * On the owner: shard @from has (@add) or no longer has subscribers of
 * @ch. Returns true when @from may be acknowledged now; false when the
 * acknowledgement waits for Redis to confirm the SUBSCRIBE (then @m is
 * kept on ch->racks, or with @m NULL the owner's own local_rack is set).
 */
bool eng_sub_owner_update(struct eng_shard *s, struct eng_chan *ch,
			  unsigned from, bool add, struct eng_owner_mail *m);

/*
 * ENG_OP_R_SUBSCRIBE and ENG_OP_R_SUB_ACK: owner -> bridge -> owner.
 * sub.c registers their kinds of mail, and INTEREST's and its ack's.
 */
struct eng_rsub {
	uint16_t from;			/* the owner shard */
	uint8_t add;
	uint16_t len;
	char name[];			/* the Redis channel name */
};

/*
 * The Redis broker's interest (broker.h; sub_redis.c): the bridge told
 * when this node first needs @ch or no longer does, and the
 * acknowledgement of an added interest held until Redis confirms.
 */
bool eng_sub_redis_interest(struct eng_shard *s, struct eng_chan *ch,
			    unsigned before, bool add,
			    struct eng_owner_mail *m);

#endif
