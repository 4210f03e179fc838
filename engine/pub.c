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
 * in that order too. Broadcasts are sequenced by shard 0. Which shards
 * have subscribers the owner learns from interest mail (sub.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "frame.h"
#include "hist.h"
#include "inbox.h"
#include "mail.h"
#include "metrics.h"
#include "pub.h"
#include "user.h"
#include "zframe.h"


/* ---- delivery on one shard --------------------------------------------- */

bool (*eng_pub_skip)(struct eng_shard *s, struct eng_conn *c, const char *id,
		     size_t len);

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
		want = s->nr_push;
		if (!want)
			return;
		atomic_fetch_add_explicit(&f->refs, want, memory_order_relaxed);
		/*
		 * The bitmap of open /ws slots, a word at a time: a queue()
		 * that closes a slow consumer clears its bit behind us.
		 */
		for (uint32_t w = 0; w * 64 < s->nr_conns && used < want; w++) {
			uint64_t bits = s->push_bits[w];

			while (bits && used < want) {
				uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(bits);

				bits &= bits - 1;
				if (!eng_conn_deliverable(&s->conns[i]))
					continue;
				used++;
				eng_conn_deliver(s, &s->conns[i], f);
			}
		}
	} else {
		char name[ENG_CHAN_MAX + 2];
		size_t len = frame_key(f, name);
		struct eng_chan *ch = eng_chan_find(&s->chans, name, len,
						    eng_chan_hash(name, len));
		struct eng_sub *sub, *next;
		const char *skip = NULL;
		size_t skip_len = eng_frame_skip(f, &skip);

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
			/* any endpoint's subscriber: /ws or Pusher's */
			if (c->state != ENG_CONN_WS)
				continue;
			if (skip_len && eng_pub_skip &&
			    eng_pub_skip(s, c, skip, skip_len))
				continue;	/* the publisher's own */
			if (sub->recovering && !eng_hist_pass(s, sub, f))
				continue;	/* it gets it from history */
			if ((f->flags & ENG_BUF_F_INBOX) &&
			    !eng_inbox_pass(s, sub->slot, f))
				continue;	/* its unread read had it */
			used++;
			eng_conn_deliver(s, c, f);
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

	if (pub->fin) {
		pub->fin(s, pub->arg, 0);
	} else if (c->gen == pub->gen && eng_conn_alive(c)) {
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
		eng_mail_post(&s->mail, i, ENG_OP_DELIVER, eng_buf_get(f));
	}
	return reached;
}

static void sequence(struct eng_shard *s, struct eng_pub *pub)
{
	struct eng_buf *f = pub->frame;
	unsigned nshards = s->eng->cfg.shards, i, reached = 0;

	/* The engine's own $sys figures are not something anyone published. */
	if (!(f->flags & ENG_BUF_F_SYS))
		ENG_STAT_ADD(s, published, 1);
	eng_lat_stamp(s, f);
	if ((f->flags & ENG_BUF_F_BCAST)) {
		eng_zframe_once(s, f, NULL);
		for (i = 0; i < nshards; i++) {
			if (i == s->id)
				continue;
			eng_mail_post(&s->mail, i, ENG_OP_DELIVER,
				      eng_buf_get(f));
		}
		deliver(s, f);
		reached = nshards;
	} else {
		char name[ENG_CHAN_MAX + 2];
		size_t len = frame_key(f, name);
		uint64_t hash = eng_chan_hash(name, len);
		struct eng_chan *ch;

		if ((f->flags & (ENG_BUF_F_HIST | ENG_BUF_F_STAMPED)) ==
		    ENG_BUF_F_HIST) {	/* Redis's are stamped: kept there */
			/* kept whether or not anyone listens now; compressed
			 * there, after the stamp, so that the twin is counted */
			ch = eng_chan_get(&s->chans, name, len, hash);
			eng_hist_append(s, ch, f);	/* ch NULL: no memory */
		} else if ((f->flags & (ENG_BUF_F_INBOX | ENG_BUF_F_STAMPED)) ==
			   ENG_BUF_F_INBOX) {
			/* kept until acked, online or not (Redis's: there) */
			ch = eng_chan_get(&s->chans, name, len, hash);
			eng_inbox_append(s, ch, f);	/* ch NULL: no memory */
		} else {
			ch = eng_chan_find(&s->chans, name, len, hash);
			if (ch && ch->shards)
				eng_zframe_once(s, f, ch->shards);
		}
		reached = eng_pub_fanout(s, f, ch);
	}
	pub->shards = reached;
	if (pub->from == ENG_BRIDGE) {	/* from Redis: nobody waits */
		eng_buf_put(pub->frame);
		eng_free(pub);
		return;
	}
	eng_mail_post(&s->mail, pub->from, ENG_OP_PUB_ACK, pub);
}

/*
 * Posts @frame (taken over) to the owner of its channel or user, from
 * poster @m; @reply (taken over, may be NULL) waits for the sequencing,
 * or @fin is told of it instead (NULL: the connection is answered).
 * Returns 0, or -ENOMEM after dropping both.
 */
/* @from: the shard to answer, or ENG_BRIDGE for nobody */
static int post_pub(struct eng_mailer *m, uint16_t from, struct eng_buf *frame,
		    struct eng_buf *reply, uint32_t slot, uint32_t gen,
		    eng_pub_fin_fn *fin, void *arg)
{
	struct eng_pub *pub = eng_mail_alloc(m, sizeof(*pub));
	unsigned owner = 0;		/* broadcasts: shard 0 */

	if (!pub) {
		eng_buf_put(frame);
		eng_buf_put(reply);
		return -ENOMEM;
	}
	if (!(frame->flags & ENG_BUF_F_BCAST)) {
		char name[ENG_CHAN_MAX + 2];
		size_t len = frame_key(frame, name);

		owner = eng_mail_owner(m->eng, eng_chan_hash(name, len));
	}
	pub->frame = frame;
	pub->reply = reply;
	pub->slot = slot;
	pub->gen = gen;
	pub->from = from;
	pub->owner = (uint16_t)owner;
	pub->fin = fin;
	pub->arg = arg;
	eng_mail_post(m, owner, ENG_OP_PUB, pub);
	return 0;
}

int eng_publish(struct eng_shard *s, struct eng_conn *c,
		struct eng_buf *frame, struct eng_buf *reply)
{
	int ret;

	/*
	 * An HTTP publisher reads no further request until answered; set
	 * first, since an owner that is this shard answers within the post.
	 */
	if (c->kind == ENG_CONN_K_HTTP)
		c->flags |= ENG_CONN_F_WAIT;
	ret = post_pub(&s->mail, s->mail.id, frame, reply, eng_slot(s, c),
		       c->gen, NULL, NULL);
	if (ret < 0)
		c->flags &= ~ENG_CONN_F_WAIT;
	return ret;
}

int eng_publish_fin(struct eng_shard *s, struct eng_buf *frame,
		    eng_pub_fin_fn *fin, void *arg)
{
	return post_pub(&s->mail, s->mail.id, frame, NULL, 0, 0, fin, arg);
}

/* On the bridge's thread: @m is its mailer, and nobody waits. */
void eng_pub_inject(struct eng_mailer *m, struct eng_buf *frame)
{
	post_pub(m, ENG_BRIDGE, frame, NULL, 0, 0, NULL, NULL);
}

/* ---- mail ---------------------------------------------------------------- */

static void read_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_shard *s = self;

	(void)res;
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
	}
}

/*
 * A PUB never reached its sequencer: the publisher hears of it (503, or
 * 1011 on /ws), or its count's fin does (-EAGAIN, a 503 too). From the
 * bridge nobody waits: the message is lost, and counted as a failed post.
 */
static void free_pub(void *ptr)
{
	struct eng_pub *pub = ptr;

	eng_buf_put(pub->reply);
	eng_buf_put(pub->frame);
	eng_free(pub);
}

static void undo_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_pub *pub = ptr;

	(void)op;
	(void)res;
	if (pub->fin) {
		pub->fin(self, pub->arg, -EAGAIN);
	} else if (pub->from != ENG_BRIDGE) {
		struct eng_shard *s = self;
		struct eng_conn *c = &s->conns[pub->slot];

		if (c->gen == pub->gen && eng_conn_alive(c)) {
			if (c->kind == ENG_CONN_K_HTTP) {
				/* answered: its next request may be read */
				c->flags &= ~ENG_CONN_F_WAIT;
				eng_conn_http_reply(s, c, 503, NULL, NULL,
						    NULL, 0);
				eng_conn_resume(s, c);
			} else {
				eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
			}
		}
	}
	free_pub(pub);
}

/*
 * An ack that cannot go back (the engine stops, or no memory to list it
 * again): its publish was sequenced, so a count waiting for it ends with
 * 0; here, on the owner's thread, with no shard to answer on.
 */
static void free_ack(void *ptr)
{
	struct eng_pub *pub = ptr;

	if (pub->fin)
		pub->fin(NULL, pub->arg, 0);
	free_pub(pub);
}

static void free_deliver(void *ptr)
{
	eng_buf_put(ptr);
}

/* A sequenced publish goes back to its publisher. */
ENG_MAIL_TO_FIELD(pub_from, struct eng_pub, from)

/*
 * What a failed post does: a PUB is undone (its publisher told), an ack
 * posted again; a delivery is lost, since a late one would break the
 * channel's order on that shard.
 */
static const struct eng_mail_kind kinds[] = {
	{ .op = ENG_OP_PUB, .name = "pub", .on_fail = ENG_MAIL_UNDO,
	  .read = read_mail, .undo = undo_mail, .free = free_pub },
	{ .op = ENG_OP_PUB_ACK, .name = "pub_ack", .on_fail = ENG_MAIL_RETRY,
	  .read = read_mail, .free = free_ack, .to = pub_from },
	{ .op = ENG_OP_DELIVER, .name = "deliver", .on_fail = ENG_MAIL_LOSE,
	  .read = read_mail, .free = free_deliver },
};
ENG_MAIL_KINDS(kinds)
