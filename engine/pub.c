/* SPDX-License-Identifier: MIT */
/*
 * pub.c: publishing and fan-out across shards.
 *
 * A message is encoded once, on the shard that received it, into one push
 * frame in the shared arena. Each channel has an owner shard (its name's
 * hash modulo the shard count) that sequences its messages: the frame
 * goes to the owner (IORING_OP_MSG_RING), the owner hands a reference to
 * every shard with subscribers (again MSG_RING, in the owner's order),
 * and each shard queues that same frame on its local subscribers. Mail
 * between two rings arrives in the order it was posted, so every
 * subscriber of a channel sees its messages in the owner's order, on any
 * shard. The publisher is answered once the owner has sequenced the
 * message, so two publishes answered one after the other are delivered
 * in that order too. Broadcasts are sequenced by shard 0.
 *
 * The owner learns which shards have subscribers from interest mail: a
 * shard whose first local subscriber of a channel appears tells the
 * owner, and holds that subscriber's reply until the owner acknowledges,
 * so a message published after a subscribe reply always finds the
 * subscriber. The last subscriber leaving withdraws the interest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eng.h"
#include "ud.h"

/* One publish in flight; owned by the publishing shard. */
struct eng_pub {
	struct eng_buf *frame;		/* one reference */
	struct eng_buf *reply;		/* owned; queued when sequenced */
	uint32_t slot, gen;		/* the publishing connection */
	uint16_t from;			/* the publishing shard */
	uint16_t owner;
	uint32_t shards;		/* set by the owner: shards reached */
};


static const char push_head[] = "{\"cmd\":\"push\",\"channel\":\"";
static const char push_mid[] = "\",\"data\":";
static const char bcast_head[] = "{\"cmd\":\"broadcast\",\"data\":";

static unsigned owner_of(const struct eng_shard *s, uint64_t hash)
{
	/* The high bits: the low ones pick the bucket in every table. */
	return (unsigned)((hash >> 32) % s->eng->cfg.shards);
}

static struct eng_shard *shard(struct eng_shard *s, unsigned id)
{
	return &s->eng->shards[id];
}


static void drop(struct eng_shard *s, unsigned op, void *ptr, int res,
		 bool quiet);

/* Posts mail to ring @to; a failed post comes back with FAILED set. */
static void post_fd(struct eng_shard *s, struct ring *to, unsigned op,
		    void *ptr, int32_t res)
{
	int ret;

	/*
	 * Stopping, the other shards may have read their last mail: what
	 * we would send is undone here instead, so nothing is left unread.
	 */
	if (s->stopping) {
		drop(s, op, ptr, -ESHUTDOWN, true);
		return;
	}

	if (s->eng->redis && to == eng_redis_ring(s->eng))
		ret = ring_mbox_post(&s->ring, to, ring_ud_ptr(op, ptr), res,
				     ring_ud_ptr(op | ENG_OP_FAILED, ptr));
	else
		ret = eng_post(s->eng, &s->ring, to, op, ptr, res);

	if (ret < 0) {
		/* No SQE even after flushing: the same path as a failure. */
		struct ring_cqe cqe = {
			.user_data = ring_ud_ptr(op | ENG_OP_FAILED, ptr),
			.res = ret,
		};
		eng_pub_mail(s, &cqe);
	}
}

static void post(struct eng_shard *s, unsigned to, unsigned op, void *ptr,
		 int32_t res)
{
	post_fd(s, &shard(s, to)->ring, op, ptr, res);
}

struct eng_buf *eng_pub_frame(const char *chan, size_t clen,
			      const uint8_t *payload, size_t plen, bool json)
{
	size_t body = (json ? plen : json_escape_max(plen)) + 1 +
		      (chan ? sizeof(push_head) + clen + sizeof(push_mid)
			    : sizeof(bcast_head));
	struct eng_buf *b = eng_arena_buf(WS_MAX_SERVER_HDR + body);
	uint8_t *p, *start;
	size_t n, h;

	if (!b)
		return NULL;
	/*
	 * The envelope goes after header room; the header is written last,
	 * right-aligned against it, once the length is known.
	 */
	start = p = b->data + WS_MAX_SERVER_HDR;
	if (chan) {
		memcpy(p, push_head, sizeof(push_head) - 1);
		p += sizeof(push_head) - 1;
		b->name_off = (uint32_t)(p - b->data);
		b->name_len = (uint8_t)clen;
		memcpy(p, chan, clen);	/* names need no escaping */
		p += clen;
		memcpy(p, push_mid, sizeof(push_mid) - 1);
		p += sizeof(push_mid) - 1;
	} else {
		memcpy(p, bcast_head, sizeof(bcast_head) - 1);
		p += sizeof(bcast_head) - 1;
		b->flags |= ENG_BUF_F_BCAST;
	}
	if (json) {
		memcpy(p, payload, plen);
		p += plen;
	} else {
		p += json_escape((char *)p, (const char *)payload, plen);
	}
	*p++ = '}';
	n = (size_t)(p - start);
	{
		uint8_t hdr[WS_MAX_SERVER_HDR];

		h = ws_write_header(hdr, WS_OP_TEXT, true, n);
		b->start = (uint32_t)(WS_MAX_SERVER_HDR - h);
		memcpy(b->data + b->start, hdr, h);
	}
	b->len = (uint32_t)(h + n);
	return b;
}

static const char user_head[] = "{\"cmd\":\"push\",\"user\":\"";

/* {"cmd":"push","user":"UID","data":...}: a user push, encoded once. */
struct eng_buf *eng_pub_user_frame(const char *uid, size_t ulen,
				   const uint8_t *payload, size_t plen,
				   bool json)
{
	struct eng_buf *b = eng_pub_frame(uid, ulen, payload, plen, json);
	size_t neu = sizeof(user_head) - 1;
	uint8_t hdr[WS_MAX_SERVER_HDR], *end, *env;
	size_t n, h;

	if (!b)
		return NULL;
	/*
	 * The channel frame with "user" for "channel": the shorter head is
	 * written in place, ending where the name starts, and the header
	 * moves up against it.
	 */
	end = b->data + b->start + b->len;
	env = b->data + b->name_off - neu;
	memcpy(env, user_head, neu);
	n = (size_t)(end - env);
	h = ws_write_header(hdr, WS_OP_TEXT, true, n);
	b->start = (uint32_t)(env - h - b->data);
	memcpy(b->data + b->start, hdr, h);
	b->len = (uint32_t)(h + n);
	b->flags |= ENG_BUF_F_USER;
	return b;
}

/* ---- delivery on one shard --------------------------------------------- */

/* The index key of push frame @f: its channel, or its user's key. */
static size_t frame_key(const struct eng_buf *f, char *buf)
{
	const char *name = (const char *)f->data + f->name_off;

	if (f->flags & ENG_BUF_F_KICK) {	/* stored as the key already */
		memcpy(buf, name, f->name_len);
		return f->name_len;
	}
	if (f->flags & ENG_BUF_F_USER)
		return eng_user_key(buf, name, f->name_len);
	memcpy(buf, name, f->name_len);
	return f->name_len;
}

static bool deliverable(const struct eng_conn *c)
{
	return c->state == ENG_CONN_WS && c->kind == ENG_CONN_K_PUSH;
}

/*
 * Queues @f on every local target. The batch's references are taken in
 * one atomic add and the unused ones given back in one subtraction, so
 * shards do not bounce the refcount's cache line once per subscriber; the
 * caller's own reference keeps @f alive meanwhile, and no send can
 * complete before this loop returns to the ring.
 */
static void deliver(struct eng_shard *s, struct eng_buf *f)
{
	uint32_t want = 0, used = 0;

	if ((f->flags & ENG_BUF_F_BCAST)) {
		for (uint32_t i = 0; i < s->nr_conns; i++)
			want += deliverable(&s->conns[i]);
		if (!want)
			return;
		atomic_fetch_add_explicit(&f->refs, want, memory_order_relaxed);
		for (uint32_t i = 0; i < s->nr_conns && used < want; i++) {
			if (!deliverable(&s->conns[i]))
				continue;
			used++;
			eng_conn_queue(s, &s->conns[i], f);
		}
	} else {
		char name[ENG_CHAN_MAX + 2];
		size_t len = frame_key(f, name);
		struct eng_chan *ch = eng_chan_find(&s->chans, name, len,
						    eng_chan_hash(name, len));
		struct eng_sub *sub, *next;

		if (!ch || !ch->nsubs)
			return;
		if (f->flags & ENG_BUF_F_KICK) {
			/* Each connection closes: take its reference first. */
			for (sub = ch->subs; sub; sub = next) {
				next = sub->next;
				eng_conn_kick(s, &s->conns[sub->slot],
					      eng_buf_get(f));
			}
			return;
		}
		want = ch->nsubs;
		atomic_fetch_add_explicit(&f->refs, want, memory_order_relaxed);
		/* @next first: a slow subscriber is unsubscribed in queue() */
		for (sub = ch->subs; sub && used < want; sub = next) {
			struct eng_conn *c = &s->conns[sub->slot];

			next = sub->next;
			if (!deliverable(c))
				continue;
			used++;
			eng_conn_queue(s, c, f);
		}
	}
	if (used < want)
		atomic_fetch_sub_explicit(&f->refs, want - used,
					  memory_order_relaxed);
	ENG_STAT_ADD(s, delivered, used);
}

/* ---- sequencing on the owner ------------------------------------------- */

static void finish(struct eng_shard *s, struct eng_pub *pub)
{
	struct eng_conn *c = &s->conns[pub->slot];

	if (c->gen == pub->gen && eng_conn_alive(c)) {
		if (c->kind == ENG_CONN_K_HTTP) {
			c->flags &= ~ENG_CONN_F_WAIT;
			eng_conn_http_done(s, c, pub->reply);
			pub->reply = NULL;
			eng_conn_resume(s, c);
		} else {
			eng_conn_queue(s, c, pub->reply);
			pub->reply = NULL;
		}
	}
	eng_buf_put(pub->reply);
	eng_buf_put(pub->frame);
	eng_free(pub);
}

/*
 * The owner hands @f to every shard with subscribers of @ch, itself
 * included, in its own order. Returns the shards reached.
 */
unsigned eng_pub_fanout(struct eng_shard *s, struct eng_buf *f,
			struct eng_chan *ch)
{
	unsigned nshards = s->eng->cfg.shards, i, reached = 0;

	for (i = 0; ch && ch->shards && i < nshards; i++) {
		if (!(ch->shards[i / 64] & (1ull << (i % 64))))
			continue;
		reached++;
		if (i == s->id) {
			deliver(s, f);
			continue;
		}
		eng_buf_get(f);
		post(s, i, ENG_OP_DELIVER, f, 0);
	}
	return reached;
}

static void sequence(struct eng_shard *s, struct eng_pub *pub)
{
	struct eng_buf *f = pub->frame;
	unsigned nshards = s->eng->cfg.shards, i, reached = 0;

	ENG_STAT_ADD(s, published, 1);
	if ((f->flags & ENG_BUF_F_BCAST)) {
		for (i = 0; i < nshards; i++) {
			if (i == s->id)
				continue;
			eng_buf_get(f);
			post(s, i, ENG_OP_DELIVER, f, 0);
		}
		deliver(s, f);
		reached = nshards;
	} else {
		char name[ENG_CHAN_MAX + 2];
		size_t len = frame_key(f, name);

		reached = eng_pub_fanout(s, f, eng_chan_find(&s->chans, name,
					 len, eng_chan_hash(name, len)));
	}
	pub->shards = reached;
	if (pub->from == ENG_BRIDGE) {	/* from Redis: nobody waits */
		eng_buf_put(pub->frame);
		eng_free(pub);
	} else if (pub->from == s->id)
		finish(s, pub);
	else
		post(s, pub->from, ENG_OP_PUB_ACK, pub, 0);
}

int eng_publish(struct eng_shard *s, struct eng_conn *c,
		struct eng_buf *frame, struct eng_buf *reply)
{
	struct eng_pub *pub = eng_malloc(sizeof(*pub));
	unsigned owner = 0;

	if (!pub) {
		eng_buf_put(frame);
		eng_buf_put(reply);
		return -ENOMEM;
	}
	if (!(frame->flags & ENG_BUF_F_BCAST)) {
		char name[ENG_CHAN_MAX + 2];
		size_t len = frame_key(frame, name);

		owner = owner_of(s, eng_chan_hash(name, len));
	}
	pub->frame = frame;
	pub->reply = reply;
	pub->slot = eng_slot(s, c);
	pub->gen = c->gen;
	pub->from = (uint16_t)s->id;
	pub->owner = (uint16_t)owner;
	pub->shards = 0;
	/* An HTTP publisher reads no further request until answered. */
	if (c->kind == ENG_CONN_K_HTTP)
		c->flags |= ENG_CONN_F_WAIT;
	if (owner == s->id)
		sequence(s, pub);
	else
		post(s, owner, ENG_OP_PUB, pub, 0);
	return 0;
}

/*
 * A message that arrived from Redis (called on the bridge thread): to the
 * channel's owner, as a local publish is, but with nobody to answer.
 */
void eng_pub_inject(struct eng *e, struct ring *from, struct eng_buf *frame)
{
	struct eng_pub *pub = eng_malloc(sizeof(*pub));
	unsigned owner = 0;

	if (!pub) {
		eng_buf_put(frame);
		return;
	}
	if (!(frame->flags & ENG_BUF_F_BCAST)) {
		char name[ENG_CHAN_MAX + 2];
		size_t len = frame_key(frame, name);

		owner = (unsigned)((eng_chan_hash(name, len) >> 32) %
				   e->cfg.shards);
	}
	memset(pub, 0, sizeof(*pub));
	pub->frame = frame;
	pub->from = ENG_BRIDGE;
	pub->owner = (uint16_t)owner;
	if (eng_post(e, from, &e->shards[owner].ring, ENG_OP_PUB, pub, 0) < 0) {
		eng_buf_put(frame);
		eng_free(pub);
	}
}

/*
 * The user's presence on this node changed: with Redis, the bridge writes
 * it (batched) so that other nodes can count it.
 */
void eng_pub_presence(struct eng_shard *s, struct eng_chan *ch)
{
	if (s->eng->redis)
		eng_redis_presence(s, ch);
}

/* ---- interest ---------------------------------------------------------- */

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
			atomic_fetch_sub_explicit(&s->stats.chans_owned, 1,
						  memory_order_relaxed);
	}
	if (!ch->nshards) {
		eng_free(ch->shards);
		ch->shards = NULL;
	}
}

/* Releases the replies held for @ch: the owner now knows this shard. */
static void release_waiters(struct eng_shard *s, struct eng_chan *ch)
{
	struct eng_wait *w = ch->waiters;

	ch->waiters = NULL;
	while (w) {
		struct eng_wait *next = w->next;
		struct eng_pend *pd = w->pend;

		if (--pd->count == 0) {
			struct eng_conn *c = &s->conns[pd->slot];

			if (c->gen == pd->gen && eng_conn_alive(c)) {
				eng_conn_queue(s, c, pd->reply);
				pd->reply = NULL;
			}
			eng_buf_put(pd->reply);
			eng_free(pd);
		}
		eng_free(w);
		w = next;
	}
}

/* Tells the Redis bridge whether this node needs channel @ch. */
static void redis_interest(struct eng_shard *s, struct eng_chan *ch, bool add)
{
	char name[ENG_CHAN_MAX + 128];
	size_t len = eng_redis_name(&s->eng->cfg, name, sizeof(name), ch->name,
				ch->len);
	struct eng_rsub *m = malloc(sizeof(*m) + len);

	if (!m) {
		ENG_STAT_ADD(s, mbox_errors, 1);
		return;
	}
	m->from = (uint16_t)s->id;
	m->add = add;
	m->len = (uint16_t)len;
	memcpy(m->name, name, len);
	post_fd(s, eng_redis_ring(s->eng), ENG_OP_R_SUBSCRIBE, m, 0);
}

/*
 * The owner records that shard @from has (or no longer has) subscribers
 * of @ch. Returns true when @from may be acknowledged now; false when
 * the acknowledgement must wait for Redis to confirm the SUBSCRIBE (the
 * caller has queued it: @m on racks, or local_rack for the owner itself).
 */
bool eng_pub_owner_update(struct eng_shard *s, struct eng_chan *ch,
			 unsigned from, bool add, struct eng_owner_mail *m)
{
	unsigned before = ch->nshards;

	set_bit(s, ch, from, add);
	if (!s->eng->redis)
		return true;
	if (!before && ch->nshards) {
		ch->rstate = ENG_R_PENDING;
		redis_interest(s, ch, true);
	} else if (before && !ch->nshards) {
		ch->rstate = ENG_R_NONE;
		redis_interest(s, ch, false);
	}
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

/* Acknowledges @m: to its shard, or to ourselves when we sent it. */
static void on_interest_ack(struct eng_shard *s, struct eng_owner_mail *m);

static void ack(struct eng_shard *s, struct eng_owner_mail *m)
{
	bool user = m->kind != ENG_OWN_INTEREST;

	if (m->from == s->id) {
		if (user)
			eng_user_ack(s, m);
		else
			on_interest_ack(s, m);
	} else {
		post(s, m->from, user ? ENG_OP_USER_ACK : ENG_OP_INTEREST_ACK,
		     m, 0);
	}
}

/* Tells the owner whether this shard has subscribers of @ch. */
static void interest(struct eng_shard *s, struct eng_chan *ch, bool add)
{
	unsigned owner = owner_of(s, ch->hash);
	struct eng_owner_mail *m;

	/*
	 * Stopping, every shard is dropping everything: mail now would only
	 * bounce between shards that no longer read it.
	 */
	if (s->stopping)
		return;

	if (owner == s->id) {
		/* We own it: the same record serves both roles. */
		if (eng_pub_owner_update(s, ch, s->id, add, NULL))
			ch->registered = add;
		else
			ch->pending = 1;
		return;
	}
	m = eng_malloc(sizeof(*m));
	if (!m) {
		ENG_STAT_ADD(s, mbox_errors, 1);
		return;
	}
	memset(m, 0, sizeof(*m));
	m->kind = ENG_OWN_INTEREST;
	m->from = (uint16_t)s->id;
	m->add = add;
	m->len = (uint8_t)ch->len;
	memcpy(m->name, ch->name, ch->len);
	ch->pending = 1;
	post(s, owner, ENG_OP_INTEREST, m, 0);
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
	if (eng_pub_owner_update(s, ch, m->from, m->add, m))
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

/* Redis confirmed the SUBSCRIBE: release the acks that waited for it. */
static void on_rsub_ack(struct eng_shard *s, struct eng_rsub *r)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	size_t plen = strlen(cfg->redis_prefix);
	char key[ENG_CHAN_MAX + 2];
	struct eng_chan *ch = NULL;
	struct eng_owner_mail *m;
	size_t len = 0;

	/* "<prefix>ch:NAME" or "<prefix>user:UID" back to our index key */
	if (r->len > plen + 3 && !memcmp(r->name + plen, "ch:", 3) &&
	    r->len - plen - 3 <= ENG_CHAN_MAX) {
		len = r->len - plen - 3;
		memcpy(key, r->name + plen + 3, len);
	} else if (r->len > plen + 5 && !memcmp(r->name + plen, "user:", 5) &&
		   r->len - plen - 5 <= ENG_CHAN_MAX) {
		len = eng_user_key(key, r->name + plen + 5, r->len - plen - 5);
	}
	if (len)
		ch = eng_chan_find(&s->chans, key, len, eng_chan_hash(key, len));
	free(r);
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

int eng_subscribe(struct eng_shard *s, struct eng_conn *c,
		  const struct json_slice *names, unsigned n,
		  struct eng_buf *reply)
{
	struct eng_pend *pd = NULL;
	uint32_t slot = eng_slot(s, c);
	unsigned i;

	for (i = 0; i < n; i++) {
		uint64_t hash = eng_chan_hash(names[i].p, names[i].len);
		struct eng_chan *ch = eng_chan_get(&s->chans, names[i].p,
						   names[i].len, hash);

		if (!ch)
			goto nomem;
		if (eng_sub_find(c, ch))
			continue;	/* subscribing twice is a no-op */
		if (eng_sub_add(c, slot, ch) < 0) {
			eng_chan_maybe_free(&s->chans, ch);
			goto nomem;
		}
		ENG_STAT_ADD(s, subscriptions, 1);
		if (ch->nsubs == 1)
			ENG_STAT_ADD(s, channels, 1);
		sync_interest(s, ch);
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
			reply = NULL;
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
	if (reply)
		return eng_conn_queue(s, c, reply);
	if (pd && --pd->count == 0) {	/* every owner answered already */
		eng_conn_queue(s, c, pd->reply);
		eng_free(pd);
	}
	return 0;
nomem:
	eng_buf_put(reply);
	if (pd && --pd->count == 0) {
		eng_buf_put(pd->reply);
		eng_free(pd);
	}
	return -ENOMEM;
}

static void drop_sub(struct eng_shard *s, struct eng_conn *c,
		     struct eng_sub *sub)
{
	struct eng_chan *ch = sub->chan;

	eng_sub_del(c, sub);
	atomic_fetch_sub_explicit(&s->stats.subscriptions, 1,
				  memory_order_relaxed);
	if (!ch->nsubs)
		atomic_fetch_sub_explicit(&s->stats.channels, 1,
					  memory_order_relaxed);
	sync_interest(s, ch);
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

void eng_unsubscribe_all(struct eng_shard *s, struct eng_conn *c)
{
	while (c->subs)
		drop_sub(s, c, c->subs);
}

/* ---- mail -------------------------------------------------------------- */

/* A post that failed (or, stopping, was not made): undo what it carried. */
/* Frees what mail @op carried, telling nobody (undone, or at exit). */
static void free_mail(unsigned op, void *ptr)
{
	switch (op) {
	case ENG_OP_DELIVER:
		eng_buf_put(ptr);
		break;
	case ENG_OP_PUB:
	case ENG_OP_PUB_ACK: {
		struct eng_pub *pub = ptr;

		eng_buf_put(pub->reply);
		eng_buf_put(pub->frame);
		eng_free(pub);
		break;
	}
	case ENG_OP_INTEREST:
	case ENG_OP_INTEREST_ACK:
	case ENG_OP_USER:
	case ENG_OP_USER_ACK:
		eng_free(ptr);	/* the owner or the asker keeps stale state */
		break;
	case ENG_OP_R_SUBSCRIBE:
	case ENG_OP_R_SUB_ACK:
	case ENG_OP_R_PRESENCE:
		free(ptr);	/* bridge mail is malloc'd on either side */
		break;
	case ENG_OP_R_REQUEST:
	case ENG_OP_R_REPLY: {
		struct eng_rreq *p = ptr;

		eng_buf_put(p->ok);
		eng_buf_put(p->err);
		free(p);
		break;
	}
	default:
		break;
	}
}

/* A post that failed (or, stopping, was not made): undo what it carried. */
static void drop(struct eng_shard *s, unsigned op, void *ptr, int res,
		 bool quiet)
{
	if (!quiet) {
		ENG_STAT_ADD(s, mbox_errors, 1);
		fprintf(stderr, "ringcast: shard %u: mailbox post (op %u) "
			"failed: %s\n", s->id, op, strerror(-res));
	}
	if (op == ENG_OP_PUB) {
		struct eng_pub *pub = ptr;
		struct eng_conn *c = &s->conns[pub->slot];

		/* Never sequenced: the publisher hears of it. */
		if (c->gen == pub->gen && eng_conn_alive(c)) {
			if (c->kind == ENG_CONN_K_HTTP)
				eng_conn_http_reply(s, c, 503, NULL, NULL,
						    NULL, 0);
			else
				eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		}
	} else if (op == ENG_OP_R_REQUEST) {
		struct eng_rreq *p = ptr;

		/* The bridge never saw it: answer as for Redis down. */
		p->result = res < 0 ? res : -EIO;
		eng_rreq_ack(s, p);
		return;
	} else if (!s->stopping && eng_retry_later(s, op, ptr) == 0) {
		return;		/* posted again at the next tick */
	}
	free_mail(op, ptr);
}

/*
 * After every shard thread has exited: mail that reached a ring too late
 * to be read (the kernel runs a dead thread's pending work into its CQ)
 * is only freed. Reads the CQ memory; never enters the kernel.
 */
static void discard(void *arg, struct ring_cqe *cqe)
{
	(void)arg;
	free_mail(ring_ud_op(cqe->user_data) & ~ENG_OP_FAILED,
		  ring_ud_to_ptr(cqe->user_data));
}

void eng_pub_discard_leftovers(struct eng_shard *s)
{
	ring_reap(&s->ring, discard, NULL);
}

/*
 * The other shard never saw @ptr, and someone waits for it: a subscribe
 * (its channel stays pending), a publisher (its next request is held),
 * a joining connection or a user query; or a user's count depends on it
 * (a LEAVE). Lists it to be posted again at the next tick. The post may
 * have failed inside our caller, so nothing here touches a channel.
 * Deliveries are never sent again: a late one would break the channel's
 * order. Returns 0, or -ENOMEM (then the caller drops the mail).
 */
int eng_retry_later(struct eng_shard *s, unsigned op, void *ptr)
{
	struct eng_owner_mail *m = ptr;	/* for the interest and user ops */
	struct eng_retry *r;

	if (op != ENG_OP_INTEREST && op != ENG_OP_INTEREST_ACK &&
	    op != ENG_OP_PUB_ACK && op != ENG_OP_USER &&
	    op != ENG_OP_USER_ACK)
		return -EINVAL;
	r = eng_malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->op = op;
	r->ptr = ptr;
	if (op == ENG_OP_PUB_ACK)
		r->to = ((struct eng_pub *)ptr)->from;
	else if (op == ENG_OP_INTEREST_ACK || op == ENG_OP_USER_ACK)
		r->to = m->from;
	else	/* to the owner: of the channel, or of the user's channel */
		r->to = owner_of(s, eng_chan_hash(m->name, m->len));
	r->next = s->retry;
	s->retry = r;
	return 0;
}

void eng_pub_retry(struct eng_shard *s)
{
	struct eng_retry *r = s->retry;

	s->retry = NULL;	/* what fails again is listed anew */
	while (r) {
		struct eng_retry *next = r->next;

		post(s, r->to, r->op, r->ptr, 0);
		eng_free(r);
		r = next;
	}
}

void eng_pub_mail(struct eng_shard *s, struct ring_cqe *cqe)
{
	unsigned op = ring_ud_op(cqe->user_data);
	void *ptr = ring_ud_to_ptr(cqe->user_data);

	if (op & ENG_OP_FAILED) {
		drop(s, op & ~ENG_OP_FAILED, ptr, cqe->res, false);
		return;
	}
	switch (op) {
	case ENG_OP_PUB:
		sequence(s, ptr);
		break;
	case ENG_OP_PUB_ACK:
		finish(s, ptr);
		break;
	case ENG_OP_DELIVER:
		deliver(s, ptr);
		eng_buf_put(ptr);	/* the owner's reference for us */
		break;
	case ENG_OP_INTEREST:
		on_interest(s, ptr);
		break;
	case ENG_OP_INTEREST_ACK:
		on_interest_ack(s, ptr);
		break;
	case ENG_OP_R_SUB_ACK:
		on_rsub_ack(s, ptr);
		break;
	case ENG_OP_R_REPLY:
		eng_rreq_ack(s, ptr);
		break;
	}
}

int eng_pub_init(struct eng_shard *s)
{
	size_t cap = s->eng->cfg.max_message + JSON_PADDING;

	if (eng_chans_init(&s->chans) < 0)
		return -ENOMEM;
	s->json = json_parser_new(s->eng->cfg.max_message);
	s->scratch = eng_malloc(cap);
	if (!s->json || !s->scratch) {
		eng_pub_exit(s);
		return -ENOMEM;
	}
	return 0;
}

void eng_pub_exit(struct eng_shard *s)
{
	while (s->retry) {
		struct eng_retry *next = s->retry->next;

		free_mail(s->retry->op, s->retry->ptr);
		eng_free(s->retry);
		s->retry = next;
	}
	json_parser_free(s->json);
	s->json = NULL;
	eng_free(s->scratch);
	s->scratch = NULL;
	if (s->chans.buckets)
		eng_chans_exit(&s->chans);
}
