/* SPDX-License-Identifier: MIT */
/*
 * inbox: a user's offline inbox (inbox.c); with Redis it lives there and
 * this module is the shards' side of it (scripts: bridge_inbox.c). A push
 * to a user with persist (POST /users/{uid}/push?persist=1) is kept on
 * the user's owner shard until one of the user's connections acks it: it
 * goes at once to every connection the user has, and to each one that
 * opens later while it is unacked. Each message has an id, "EPOCH-N": N
 * counts the user's messages from 1, EPOCH names this inbox (drawn when
 * it is made; a restart, or an inbox that stayed empty past its ttl, gets
 * a new one), so an id is never taken for another user's or an older
 * inbox's. Bounded per user by --inbox-max (the oldest goes) and
 * --inbox-ttl, and for all of a shard's users by its share of
 * --inbox-memory (the least recently pushed to lose their oldest); what
 * goes unacked is counted as evicted, which the user sees (an inbox
 * stays, empty, a second ttl for that). Everything here
 * runs on the user's owner shard, but
 * eng_inbox_ask(), which runs on the asking one.
 */
#ifndef RC_ENGINE_INBOX_H
#define RC_ENGINE_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "eng.h"

#define ENG_INBOX_MAX		100000	/* --inbox-max at most */
#define ENG_INBOX_EPOCH_LEN	8	/* hex characters */

struct eng_ibreq;
struct eng_owner_mail;
struct json_slice;

int eng_inbox_init(struct eng_shard *s);
void eng_inbox_exit(struct eng_shard *s);

/* Drops messages past --inbox-ttl, and inboxes empty that long. */
void eng_inbox_tick(struct eng_shard *s);

/*
 * Stamps push frame @f (eng_pub_inbox_frame()) with the next id of @ch's
 * user and keeps a reference; past --inbox-max the oldest unacked goes,
 * past the shard's share of --inbox-memory other users' oldest first.
 * @ch NULL (no memory): the frame says "id":null and nothing is kept.
 */
void eng_inbox_append(struct eng_shard *s, struct eng_chan *ch,
		      struct eng_buf *f);

/*
 * A connection of @ch's user was admitted: references to the user's
 * unacked messages, oldest first, go into @m (frames, nframes) for the
 * joining shard to send after the 101. Out of memory they do not; they
 * stay for the next connection.
 */
void eng_inbox_replay(struct eng_chan *ch, struct eng_owner_mail *m);

/*
 * Sends @c, a new connection of a user, the @n unread in @frames (taken
 * over, array and references): at once what half of --max-pending-bytes
 * has room for, the rest as @c drains (eng_inbox_drain(), /ws's endpoint
 * after each send), so a backlog larger than a connection may hold is
 * never a slow consumer's. Out of memory none go; they stay unread.
 */
void eng_inbox_backlog(struct eng_shard *s, struct eng_conn *c,
		       struct eng_buf **frames, uint32_t n);
void eng_inbox_drain(struct eng_shard *s, struct eng_conn *c);

/*
 * For @c's user @uid: an ack of the @n ids in @ids (ENG_IB_ACK), or a
 * listing (ENG_IB_LIST, @ids unused). @c is a /ws client (@seq echoed in
 * the reply) or an HTTP one (GET /users/{uid}/inbox). The answer comes
 * later. Returns 0; -EINVAL when an id is not one (the caller answers
 * 400), -E2BIG past ENG_INBOX_IDS, -ENOMEM.
 */
int eng_inbox_ask(struct eng_shard *s, struct eng_conn *c, uint8_t kind,
		  const char *uid, size_t ulen, const struct json_slice *ids,
		  unsigned n, const char *seq, size_t seq_len);

/*
 * Writes ,"id":"@epoch-@n" into push frame @f (eng_pub_inbox_frame())
 * before anyone sees it, and marks it ENG_BUF_F_STAMPED (frame.c, which
 * any module may call).
 */
void eng_inbox_stamp(struct eng_buf *f, const char *epoch, uint64_t n);
/* A stamped frame's N (0: none) and, in @epoch, its EPOCH (frame.c). */
uint64_t eng_inbox_id_of(const struct eng_buf *f, char *epoch);

/*
 * Whether @c's unread still go out (a backlog, a Redis replay): a live
 * hand-over carries a connection only once they have.
 */
bool eng_inbox_busy(struct eng_shard *s, const struct eng_conn *c);

/*
 * With Redis the inbox lives there (rreq.c). eng_inbox_redis_replay():
 * @c, a user's connection, was admitted: its unread are read a page at a
 * time and sent to it as a backlog, the next page once that backlog has
 * gone out (eng_inbox_drain()); a page that fails ends it, the rest stay
 * unread. eng_inbox_pass(): whether kept push @f goes to slot @slot live
 * (not while that connection's replay is under way: a page brings it in
 * order; not when a page had it already). eng_inbox_forget(): @c closes
 * (its backlog and replay go too, on both brokers).
 * eng_inbox_redis_done(): the bridge's answer to @q (@result < 0: Redis
 * could not be asked).
 */
void eng_inbox_redis_replay(struct eng_shard *s, struct eng_conn *c);
bool eng_inbox_pass(struct eng_shard *s, uint32_t slot, struct eng_buf *f);
void eng_inbox_forget(struct eng_shard *s, struct eng_conn *c);
void eng_inbox_redis_done(struct eng_shard *s, struct eng_ibreq *q,
			  long long result);
/*
 * The brokers' inbox asks (broker.h inbox_ask): @q (taken over) for user
 * @uid's inbox to the user's owner shard (inbox.c), or to Redis
 * (inbox_redis.c), whose answer comes back to eng_inbox_redis_done(),
 * also when Redis could not be asked. Returns 0, or -ENOMEM with @q
 * still the caller's.
 */
int eng_inbox_owner_ask(struct eng_shard *s, struct eng_ibreq *q,
			const char *uid, size_t ulen);
int eng_inbox_redis_ask(struct eng_shard *s, struct eng_ibreq *q,
			const char *uid, size_t ulen);

/*
 * Between inbox.c and inbox_reply.c only (the asking shard's side), each
 * freeing @q: inbox__answer(), the answer to @q goes to its client;
 * inbox__unavailable(), Redis could not be asked: a 503 to it.
 */
void inbox__answer(struct eng_shard *s, struct eng_ibreq *q);
void inbox__unavailable(struct eng_shard *s, struct eng_ibreq *q);

#define ENG_INBOX_IDS	100	/* ids one ack or listing holds */

/*
 * ENG_OP_INBOX and ENG_OP_INBOX_ACK: an ack of a user's messages, or a
 * listing of its inbox, asking shard -> the user's owner -> back.
 * inbox.c registers their kinds of mail.
 */
struct eng_ibreq {
	uint32_t slot, gen;		/* the asking connection */
	uint16_t from;			/* the asking shard */
	uint8_t kind;			/* ENG_IB_ACK or ENG_IB_LIST */
	uint8_t http;			/* GET /users/{uid}/inbox */
	uint8_t len;			/* of name */
	uint8_t seq_len;
	uint8_t status;			/* answer: ENG_IB_OK or _UNKNOWN */
	char name[ENG_CHAN_MAX + 2];	/* the user's index key */
	char seq[64];			/* the command's seq, raw JSON */
	char epoch[12];			/* ack: the ids'; a replay's page: the
					 * inbox it goes on in ("" the first);
					 * answer: the inbox's */
	uint32_t n;			/* ids asked, then ids listed */
	uint64_t unread, evicted, acked;	/* answer */
	uint64_t ids[ENG_INBOX_IDS];	/* ack: asked; list: the oldest */
	struct eng_buf **frames;	/* REPLAY (Redis): the unread, owned */
	uint32_t nframes;
	uint64_t after;			/* REPLAY: the page starts after this
					 * N; answer: the newest N it read */
	uint8_t more;			/* REPLAY answer: cut by its budget */
};

enum {
	ENG_IB_ACK = 0,
	ENG_IB_LIST,
	ENG_IB_REPLAY,		/* with Redis: a page of a new connection's
				 * unread */
	/* status */
	ENG_IB_OK = 0,
	ENG_IB_UNKNOWN,		/* an id this inbox never gave */
};

/* Frees @q, its frames included; NULL is a no-op. Inline, as hist.h's. */
static inline void eng_ibreq_free(struct eng_ibreq *q)
{
	if (q) {
		eng_bufs_put(q->frames, q->nframes);
		eng_free(q);
	}
}

/*
 * A take-over (handover.h, docs/HANDOVER.md), inbox_handover.c:
 * eng_inbox_dump() writes every inbox of @s as a state record to @b and
 * returns how many; eng_inbox_load() reads one record's rest from @r, of
 * user key @name (@len bytes), and installs it on @s, its owner here.
 * Returns 1, 0 (already there), -EBADMSG or -ENOMEM.
 */
struct eng_ho_buf;
struct eng_ho_rd;
unsigned eng_inbox_dump(struct eng_shard *s, struct eng_ho_buf *b);
int eng_inbox_load(struct eng_shard *s, const char *name, size_t len,
		   struct eng_ho_rd *r);

#endif
