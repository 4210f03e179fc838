/* SPDX-License-Identifier: MIT */
/*
 * user_redis.c: presence with Redis (user.h): a user's owner shard tells
 * the bridge the user's count on this node (R_PRESENCE), which writes it,
 * batched, so that other nodes can count it.
 */
#include <string.h>

#include "chan.h"
#include "mail.h"
#include "user.h"

void eng_user_redis_presence(struct eng_shard *s, struct eng_chan *ch)
{
	struct eng_rpres *m = eng_mail_alloc(&s->mail, sizeof(*m));

	if (!m)
		return;
	m->len = (uint8_t)(ch->len - 1);
	memcpy(m->uid, ch->name + 1, m->len);	/* past ENG_USER_MARK */
	m->conns = eng_user_presence_of(ch, m->apps, sizeof(m->apps), false);
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_PRESENCE, m);
}

/*
 * An R_PRESENCE failed and goes again: with the count as it is now, since
 * a later one may have been posted meanwhile and the bridge keeps the last
 * it reads.
 */
void eng_user_refresh(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_shard *s = self;
	struct eng_rpres *m = ptr;
	char key[ENG_CHAN_MAX + 2];
	size_t len = eng_user_key(key, m->uid, m->len);

	(void)op;
	(void)res;
	m->conns = eng_user_presence_of(eng_chan_find(&s->chans, key, len,
						      eng_chan_hash(key, len)),
					m->apps, sizeof(m->apps), false);
}
