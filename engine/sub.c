/* SPDX-License-Identifier: MIT */
/*
 * sub.c: subscribe, unsubscribe and interest.
 *
 * The owner of a channel (eng_mail_owner) learns which shards have
 * subscribers from interest mail: a shard whose first local subscriber
 * of a channel appears tells the owner, and holds that subscriber's reply
 * until the owner acknowledges, so a message published after a subscribe
 * reply always finds the subscriber. The last subscriber leaving
 * withdraws the interest. With Redis the owner also tells the bridge
 * whether this node needs the channel, and its acknowledgements wait for
 * Redis to confirm the SUBSCRIBE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "hist.h"
#include "mail.h"
#include "sub.h"
#include "user.h"

static void set_bit(struct eng_shard *s, struct eng_chan *ch, unsigned id,
		    bool on)
{
	unsigned words = (s->eng->cfg.shards + 63) / 64;
	uint64_t bit = 1ull << (id % 64);

	if (!ch->shards) {
		if (!on)
			return;
		ch->shards = eng_malloc(words * sizeof(uint64_t));
		if (!ch->shards)
			return;	/* counted below as a mailbox error */
		memset(ch->shards, 0, words * sizeof(uint64_t));
	}
	if (on && !(ch->shards[id / 64] & bit)) {
		ch->shards[id / 64] |= bit;
		if (ch->nshards++ == 0)
			ENG_STAT_ADD(s, chans_owned, 1);
	} else if (!on && (ch->shards[id / 64] & bit)) {
		ch->shards[id / 64] &= ~bit;
		if (--ch->nshards == 0)
			ENG_STAT_SUB(s, chans_owned, 1);
	}
	if (!ch->nshards) {
		eng_free(ch->shards);
		ch->shards = NULL;
	}
}

/* @pd's replies, in order, to @c; what is queued is no longer @pd's. */
static int send_pend(struct eng_shard *s, struct eng_conn *c,
		     struct eng_pend *pd)
{
	int ret = pd->reply ? eng_conn_queue(s, c, pd->reply) : 0;

	pd->reply = NULL;
	if (pd->then && !ret)
		ret = eng_conn_queue(s, c, pd->then);
	else
		eng_buf_put(pd->then);
	pd->then = NULL;
	return ret;
}

static void pend_free(struct eng_pend *pd)
{
	eng_buf_put(pd->reply);
	eng_buf_put(pd->then);
	eng_free(pd);
}

/*
 * Releases the replies held for @ch, the owner now knowing this shard,
 * in the order they were held: the list is newest first, so reversed.
 */
static void release_waiters(struct eng_shard *s, struct eng_chan *ch)
{
	struct eng_wait *w = NULL, *q = ch->waiters;

	ch->waiters = NULL;
	while (q) {
		struct eng_wait *next = q->next;

		q->next = w;
		w = q;
		q = next;
	}
	while (w) {
		struct eng_wait *next = w->next;
		struct eng_pend *pd = w->pend;

		if (--pd->count == 0) {
			struct eng_conn *c = &s->conns[pd->slot];

			if (c->gen == pd->gen && eng_conn_alive(c))
				send_pend(s, c, pd);
			pend_free(pd);
		}
		eng_free(w);
		w = next;
	}
}

/*
 * The owner records that shard @from has (or no longer has) subscribers
 * of @ch. Returns true when @from may be acknowledged now; false when
 * the acknowledgement must wait for Redis to confirm the SUBSCRIBE (the
 * caller has queued it: @m on racks, or local_rack for the owner itself).
 */
bool eng_sub_owner_update(struct eng_shard *s, struct eng_chan *ch,
			  unsigned from, bool add, struct eng_owner_mail *m)
{
	unsigned before = ch->nshards;

	set_bit(s, ch, from, add);
	return s->eng->broker->interest(s, ch, before, add, m);
}

/* Acknowledges @m: to its shard, or to ourselves when we sent it. */
static void ack(struct eng_shard *s, struct eng_owner_mail *m)
{
	eng_mail_post(&s->mail, m->from, m->kind == ENG_OWN_INTEREST ?
		      ENG_OP_INTEREST_ACK : ENG_OP_USER_ACK, m);
}

/* Tells the owner whether this shard has subscribers of @ch. */
static void interest(struct eng_shard *s, struct eng_chan *ch, bool add)
{
	unsigned owner = eng_mail_owner(s->eng, ch->hash);
	struct eng_owner_mail *m;

	/*
	 * Stopping, every shard is dropping everything: mail now would only
	 * bounce between shards that no longer read it.
	 */
	if (s->stopping)
		return;

	if (owner == s->id) {
		/* We own it: the same record serves both roles. */
		if (eng_sub_owner_update(s, ch, s->id, add, NULL))
			ch->registered = add;
		else
			ch->pending = 1;
		return;
	}
	m = eng_mail_alloc(&s->mail, sizeof(*m));
	if (!m)
		return;
	m->kind = ENG_OWN_INTEREST;
	m->from = (uint16_t)s->id;
	m->add = add;
	m->len = (uint8_t)ch->len;
	memcpy(m->name, ch->name, ch->len);
	ch->pending = 1;
	eng_mail_post(&s->mail, owner, ENG_OP_INTEREST, m);
}

/*
 * The local subscriber count of @ch changed: keep the owner in step.
 * May free @ch: callers do not touch it afterwards.
 */
static void sync_interest(struct eng_shard *s, struct eng_chan *ch)
{
	/* A user's shards are tracked by JOIN and LEAVE (user.c). */
	if (ch->name[0] != ENG_USER_MARK && !ch->pending) {
		if (ch->nsubs && !ch->registered)
			interest(s, ch, true);
		else if (!ch->nsubs && ch->registered)
			interest(s, ch, false);
	}
	if (!ch->pending && ch->registered && ch->waiters)
		release_waiters(s, ch);
	if (!ch->pending && ch->registered)
		eng_hist_registered(s, ch);
	eng_chan_maybe_free(&s->chans, ch);
}

static void on_interest(struct eng_shard *s, struct eng_owner_mail *m)
{
	uint64_t hash = eng_chan_hash(m->name, m->len);
	struct eng_chan *ch;

	if (m->add)
		ch = eng_chan_get(&s->chans, m->name, m->len, hash);
	else
		ch = eng_chan_find(&s->chans, m->name, m->len, hash);
	if (!ch) {
		if (m->add)
			ENG_STAT_ADD(s, mbox_errors, 1);	/* no memory */
		ack(s, m);
		return;
	}
	if (eng_sub_owner_update(s, ch, m->from, m->add, m))
		ack(s, m);
	eng_chan_maybe_free(&s->chans, ch);
}

static void on_interest_ack(struct eng_shard *s, struct eng_owner_mail *m)
{
	uint64_t hash = eng_chan_hash(m->name, m->len);
	struct eng_chan *ch = eng_chan_find(&s->chans, m->name, m->len, hash);

	if (ch) {
		ch->pending = 0;
		ch->registered = m->add;
	}
	eng_free(m);
	if (ch)
		sync_interest(s, ch);
}

/*
 * The owner's record of the channel that Redis channel @r names
 * ("<prefix>ch:NAME" or "<prefix>user:UID"), or NULL.
 */
static struct eng_chan *rsub_chan(struct eng_shard *s,
				  const struct eng_rsub *r)
{
	size_t plen = strlen(s->eng->cfg.redis_prefix);
	char key[ENG_CHAN_MAX + 2];
	size_t len = 0;

	if (r->len > plen + 3 && !memcmp(r->name + plen, "ch:", 3) &&
	    r->len - plen - 3 <= ENG_CHAN_MAX) {
		len = r->len - plen - 3;
		memcpy(key, r->name + plen + 3, len);
	} else if (r->len > plen + 5 && !memcmp(r->name + plen, "user:", 5) &&
		   r->len - plen - 5 <= ENG_CHAN_MAX) {
		len = eng_user_key(key, r->name + plen + 5, r->len - plen - 5);
	}
	if (!len)
		return NULL;
	return eng_chan_find(&s->chans, key, len, eng_chan_hash(key, len));
}

/*
 * An R_SUBSCRIBE failed and goes again: it says what the owner wants now,
 * since a later one may have been posted meanwhile, and the bridge reads
 * them in order.
 */
static void refresh_rsub(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_rsub *r = ptr;
	struct eng_chan *ch = rsub_chan(self, r);

	(void)op;
	(void)res;
	r->add = ch && ch->nshards;
}

/* Redis confirmed the SUBSCRIBE: release the acks that waited for it. */
static void on_rsub_ack(struct eng_shard *s, struct eng_rsub *r)
{
	struct eng_chan *ch = rsub_chan(s, r);
	struct eng_owner_mail *m;

	eng_free(r);
	if (!ch)
		return;
	if (ch->rstate == ENG_R_PENDING)
		ch->rstate = ENG_R_CONFIRMED;
	m = ch->racks;
	ch->racks = NULL;
	while (m) {
		struct eng_owner_mail *next = m->next;

		ack(s, m);
		m = next;
	}
	if (ch->local_rack) {
		ch->local_rack = 0;
		ch->pending = 0;
		ch->registered = 1;
	}
	sync_interest(s, ch);
}

/* ---- subscribe and unsubscribe ------------------------------------------ */

/*
 * Subscriptions to the node's own "$" channels, counted: with none, shard
 * 0 publishes no figures (metrics.c), so an idle node sends nothing and
 * its mail carries only what clients did.
 */
static void count_sys(struct eng_shard *s, const struct eng_chan *ch, long d)
{
	if (ch->len && ch->name[0] == '$')
		atomic_fetch_add_explicit(&s->eng->sys_subs, d,
					  memory_order_relaxed);
}

int eng_subscribe(struct eng_shard *s, struct eng_conn *c,
		  const struct json_slice *names, unsigned n,
		  struct eng_buf *reply)
{
	return eng_subscribe_then(s, c, names, n, reply, NULL);
}

int eng_subscribe_then(struct eng_shard *s, struct eng_conn *c,
		       const struct json_slice *names, unsigned n,
		       struct eng_buf *reply, struct eng_buf *then)
{
	struct eng_pend now = { .reply = reply, .then = then };
	struct eng_pend *pd = NULL;
	uint32_t slot = eng_slot(s, c);
	unsigned i;

	for (i = 0; i < n; i++) {
		uint64_t hash = eng_chan_hash(names[i].p, names[i].len);
		struct eng_chan *ch = eng_chan_get(&s->chans, names[i].p,
						   names[i].len, hash);

		if (!ch)
			goto nomem;
		/*
		 * Subscribing twice changes nothing, but its reply too waits
		 * for a registration still pending: a reply means delivered.
		 */
		if (!eng_sub_find(c, ch)) {
			if (eng_sub_add(c, slot, ch) < 0) {
				eng_chan_maybe_free(&s->chans, ch);
				goto nomem;
			}
			ENG_STAT_ADD(s, subscriptions, 1);
			if (ch->nsubs == 1)
				ENG_STAT_ADD(s, channels, 1);
			count_sys(s, ch, 1);
			sync_interest(s, ch);
		}
		if (ch->registered && !ch->pending)
			continue;
		/* Hold the reply until the owner has registered us. */
		if (!pd) {
			pd = eng_malloc(sizeof(*pd));
			if (!pd)
				goto nomem;
			pd->slot = slot;
			pd->gen = c->gen;
			pd->count = 1;	/* ours, dropped below */
			pd->reply = reply;
			pd->then = then;
			reply = then = NULL;
		}
		{
			struct eng_wait *w = eng_malloc(sizeof(*w));

			if (!w)
				goto nomem;
			w->pend = pd;
			w->next = ch->waiters;
			ch->waiters = w;
			pd->count++;
		}
	}
	if (!pd)		/* registered everywhere already */
		return send_pend(s, c, &now);
	if (--pd->count == 0) {	/* every owner answered already */
		send_pend(s, c, pd);
		eng_free(pd);
	}
	return 0;
nomem:
	eng_buf_put(reply);
	eng_buf_put(then);
	if (pd && --pd->count == 0)
		pend_free(pd);
	return -ENOMEM;
}

int eng_subscribe_recovering(struct eng_shard *s, struct eng_conn *c,
			     const char *name, size_t len)
{
	struct eng_chan *ch = eng_chan_get(&s->chans, name, len,
					   eng_chan_hash(name, len));
	struct eng_sub *sub;

	if (!ch)
		return -ENOMEM;
	if (eng_sub_find(c, ch))
		return -EEXIST;
	if (eng_sub_add(c, eng_slot(s, c), ch) < 0) {
		eng_chan_maybe_free(&s->chans, ch);
		return -ENOMEM;
	}
	sub = eng_sub_find(c, ch);
	sub->recovering = ENG_SUB_RECOVERING;
	ENG_STAT_ADD(s, subscriptions, 1);
	if (ch->nsubs == 1)
		ENG_STAT_ADD(s, channels, 1);
	count_sys(s, ch, 1);
	sync_interest(s, ch);	/* posted before the history read */
	return 0;
}

static void drop_sub(struct eng_shard *s, struct eng_conn *c,
		     struct eng_sub *sub)
{
	struct eng_chan *ch = sub->chan;
	struct eng_hreq *unsent = NULL;

	if (sub->recovering >= ENG_SUB_HOLDING)	/* a record in hist.c */
		unsent = eng_hist_forget(s, sub);
	eng_sub_del(c, sub);
	ENG_STAT_SUB(s, subscriptions, 1);
	if (!ch->nsubs)
		ENG_STAT_SUB(s, channels, 1);
	count_sys(s, ch, -1);
	sync_interest(s, ch);
	/* last: answering may close @c, which drops what it holds */
	eng_hist_unanswered(s, unsent);
}

void eng_unsubscribe(struct eng_shard *s, struct eng_conn *c,
		     const struct json_slice *names, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t hash = eng_chan_hash(names[i].p, names[i].len);
		struct eng_chan *ch = eng_chan_find(&s->chans, names[i].p,
						    names[i].len, hash);
		struct eng_sub *sub = ch ? eng_sub_find(c, ch) : NULL;

		if (sub)
			drop_sub(s, c, sub);
	}
}

void eng_unsubscribe_one(struct eng_shard *s, struct eng_conn *c,
			 struct eng_sub *sub)
{
	drop_sub(s, c, sub);
}

void eng_unsubscribe_all(struct eng_shard *s, struct eng_conn *c)
{
	while (c->subs)
		drop_sub(s, c, c->subs);
}

static void read_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_shard *s = self;

	(void)res;
	switch (op) {
	case ENG_OP_INTEREST:
		on_interest(s, ptr);
		break;
	case ENG_OP_INTEREST_ACK:
		on_interest_ack(s, ptr);
		break;
	case ENG_OP_R_SUB_ACK:
		on_rsub_ack(s, ptr);
		break;
	}
}

/* Interest goes to the channel's owner; its ack back to the asker. */
ENG_MAIL_TO_OWNER(interest_to, struct eng_owner_mail)
ENG_MAIL_TO_FIELD(interest_from, struct eng_owner_mail, from)
ENG_MAIL_TO_FIELD(rsub_from, struct eng_rsub, from)

/*
 * Every failed post goes again: none carries an order of its own, and an
 * R_SUBSCRIBE is brought up to date first. All are flat structs.
 */
static const struct eng_mail_kind kinds[] = {
	{ .op = ENG_OP_INTEREST, .name = "interest",
	  .on_fail = ENG_MAIL_RETRY, .read = read_mail, .to = interest_to },
	{ .op = ENG_OP_INTEREST_ACK, .name = "interest_ack",
	  .on_fail = ENG_MAIL_RETRY, .read = read_mail, .to = interest_from },
	{ .op = ENG_OP_R_SUBSCRIBE, .name = "r_subscribe", .to_bridge = true,
	  .on_fail = ENG_MAIL_RETRY, .refresh = refresh_rsub },
	{ .op = ENG_OP_R_SUB_ACK, .name = "r_sub_ack",
	  .on_fail = ENG_MAIL_RETRY, .read = read_mail, .to = rsub_from },
};
ENG_MAIL_KINDS(kinds)
