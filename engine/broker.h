/* SPDX-License-Identifier: MIT */
/*
 * broker: where a message or a question about users goes, chosen once at
 * start-up (broker.c): the embedded broker (the shards sequence
 * everything themselves) or Redis (every node hears it back from Redis).
 * HTTP and /ws handlers call one function per action through e->broker.
 * Each function answers @c itself, later, and returns 0; or returns
 * -errno having answered nothing (the caller answers 503).
 */
#ifndef RC_ENGINE_BROKER_H
#define RC_ENGINE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng.h"

struct eng_hreq; struct eng_ibreq;	/* mail.h */

/*
 * A new /ws reply frame like @reply with another @code and @msg (push.c's
 * eng_push_reword, passed by the /ws side so that a broker needs not know
 * it); NULL: no memory.
 */
typedef struct eng_buf *eng_reword_fn(const struct eng_buf *reply, int code,
				      const char *msg);

/*
 * A counted publish is done: @result 0 (handed to every node; embedded:
 * sequenced by its channel's owner shard), or -errno (not published,
 * or, for -ETIMEDOUT, -ECONNRESET and -EPROTO, may have been:
 * eng_broker_failed_code()). Called on the shard that published, with
 * the @arg it gave; or with @s NULL and @result 0, on the owner's thread,
 * for one sequenced whose answer could not go back (the engine stops):
 * then it only counts, answering nobody.
 */
typedef void eng_pub_fin_fn(struct eng_shard *s, void *arg, long long result);

/* Who a publish goes to; INBOX: a user, kept until acked (inbox.h). */
enum { ENG_TO_CHANNEL = 0, ENG_TO_USER, ENG_TO_ALL, ENG_TO_INBOX };

struct eng_broker {
	const char *name;		/* for the start-up line */
	/*
	 * Histories and inboxes live in this process (the embedded broker):
	 * a take-over carries them to the new one (handover.h). Redis's
	 * stay in Redis.
	 */
	bool state_here;
	/*
	 * Publishes @payload (verbatim when @json, else as a JSON string)
	 * to channel or user @name (@to), or to everyone (ENG_TO_ALL,
	 * @name NULL). @ok and @err (taken over) are a /ws client's replies
	 * on success and failure, @reword makes @err say why it failed; an
	 * HTTP client passes NULL for all three and gets the broker's own
	 * JSON answer. On -errno both are dropped. @c NULL (with @ok and
	 * @err NULL): nobody is answered, and a failure after the return
	 * is not told (the Pusher API's publishes to all channels but
	 * the last).
	 */
	int (*publish)(struct eng_shard *s, struct eng_conn *c, uint8_t to,
		       const char *name, size_t len, const uint8_t *payload,
		       size_t plen, bool json, struct eng_buf *ok,
		       struct eng_buf *err, eng_reword_fn *reword);
	/*
	 * Publishes JSON frame @payload to channel @name, answering
	 * nobody: @fin(@s, @arg, result) is called once it is done or has
	 * failed, maybe before the return (the embedded broker), when and
	 * only when 0 is returned. For a client that waits on several
	 * publishes (the Pusher API's channels and batches): every
	 * failure is told, not only the last one's.
	 */
	int (*publish_fin)(struct eng_shard *s, const char *name, size_t len,
			   const uint8_t *payload, size_t plen,
			   eng_pub_fin_fn *fin, void *arg);
	/* GET /users/{uid}, POST /users/{uid}/disconnect, GET /online. */
	int (*user_query)(struct eng_shard *s, struct eng_conn *c,
			  const char *uid, size_t len);
	int (*user_kick)(struct eng_shard *s, struct eng_conn *c,
			 const char *uid, size_t len);
	int (*online)(struct eng_shard *s, struct eng_conn *c);

	/*
	 * The shards' side, where the two differ: each shard calls these
	 * and never asks which broker it has.
	 *
	 * hist_read: sends history read @h (taken over): to the channel's
	 * owner shard, or to Redis; its answer comes back to hist.c, also
	 * when it could not be asked. Returns 0, or -ENOMEM with @h still
	 * the caller's.
	 */
	int (*hist_read)(struct eng_shard *s, struct eng_hreq *h);
	/*
	 * inbox_ask: the same for @q (taken over), an ack, a listing or a
	 * replay's page of user @uid's inbox: to the user's owner, or to
	 * Redis; the answer comes back to inbox.c.
	 */
	int (*inbox_ask)(struct eng_shard *s, struct eng_ibreq *q,
			 const char *uid, size_t ulen);
	/*
	 * joined: @c, a user's connection, was admitted (before its 101's
	 * backlog goes): with Redis its unread are read from there.
	 */
	void (*joined)(struct eng_shard *s, struct eng_conn *c);
	/*
	 * interest: on @ch's owner, the shards with subscribers of @ch
	 * changed (@before: how many there were; @from's bit set or cleared
	 * by @add). True when the interest may be acknowledged now; false
	 * when the acknowledgement waits for Redis to confirm (queued: @m,
	 * or the owner's own when @m is NULL). See eng_sub_owner_update().
	 */
	bool (*interest)(struct eng_shard *s, struct eng_chan *ch,
			 unsigned before, bool add, struct eng_owner_mail *m);
	/* presence: user @ch's count on this node changed (on its owner). */
	void (*presence)(struct eng_shard *s, struct eng_chan *ch);
};

extern const struct eng_broker eng_broker_embedded, eng_broker_redis;

/*
 * The HTTP status telling what a publish that failed with @err may have
 * done: 503, not published, safe to send again; 504, Redis got it and no
 * answer came, so it may have been published.
 */
int eng_broker_failed_code(long long err);

/* /healthz: true, or false with the reason in @why (Redis down). */
bool eng_broker_healthy(struct eng *e, char *why, size_t len);

struct eng_bridge_figs;		/* bridge.h */

/*
 * /stats' part of the broker: `,"redis":{...}` written to @out (at most
 * eng_broker_stats_max() bytes); the embedded broker writes nothing and
 * returns 0.
 */
size_t eng_broker_stats_max(const struct eng *e);
size_t eng_broker_stats(struct eng *e, char *out, size_t cap);

/*
 * The Redis figures for /metrics and $sys into @f; false (and @f left
 * alone) on the embedded broker, which has none.
 */
bool eng_broker_figures(struct eng *e, struct eng_bridge_figs *f);

#endif
