/* SPDX-License-Identifier: MIT */
/*
 * sub_redis.c: interest with Redis (sub.h): a channel's owner tells the
 * bridge whether this node needs the channel, and its acknowledgements
 * wait for Redis to confirm the SUBSCRIBE (sub.c releases them).
 */
#include <string.h>

#include "chan.h"
#include "mail.h"
#include "rreq.h"
#include "sub.h"

/* Tells the Redis bridge whether this node needs channel @ch. */
static void redis_interest(struct eng_shard *s, struct eng_chan *ch, bool add)
{
	char name[ENG_CHAN_MAX + 128];
	size_t len = eng_rreq_channel(&s->eng->cfg, name, sizeof(name),
				      ch->name, ch->len);
	struct eng_rsub *m = eng_mail_alloc(&s->mail, sizeof(*m) + len);

	if (!m)
		return;
	m->from = (uint16_t)s->id;
	m->add = add;
	m->len = (uint16_t)len;
	memcpy(m->name, name, len);
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_SUBSCRIBE, m);
}

bool eng_sub_redis_interest(struct eng_shard *s, struct eng_chan *ch,
			    unsigned before, bool add,
			    struct eng_owner_mail *m)
{
	/* "$" names (metrics.h) are this node's own: never asked of Redis */
	if (ch->name[0] == '$')
		return true;
	if (!before && ch->nshards) {
		ch->rstate = ENG_R_PENDING;
		redis_interest(s, ch, true);
	} else if (before && !ch->nshards) {
		ch->rstate = ENG_R_NONE;
		redis_interest(s, ch, false);
	}
	/* a /ws channel (not a user's, nor Pusher's): --webhook's */
	if (s->eng->occupancy && ch->len && ch->name[0] != ENG_USER_MARK &&
	    ch->name[0] != '!' && !before != !ch->nshards)
		s->eng->occupancy(ch->name, ch->len, ch->nshards);
	if (!add || ch->rstate == ENG_R_CONFIRMED)
		return true;
	if (m) {
		m->next = ch->racks;
		ch->racks = m;
	} else {
		ch->local_rack = 1;
	}
	return false;
}
