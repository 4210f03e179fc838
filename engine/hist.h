/* SPDX-License-Identifier: MIT */
/*
 * hist: channel history on the embedded broker (hist.c). A channel in a
 * namespace with history (--namespace NAME:history=N,ttl=DUR) keeps its
 * last N push frames for DUR on its owner shard, each stamped with an
 * offset that grows by one per message; the process's epoch names the
 * history, which a restart loses. The frames are the very ones every
 * subscriber was sent: the history holds references, not copies.
 * Everything here runs on the owner shard's thread.
 */
#ifndef RC_ENGINE_HIST_H
#define RC_ENGINE_HIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "eng.h"

struct eng_catchup_ops;	/* catchup.h */
struct eng_sub;		/* chan.h */

#define ENG_NS_MAX		16	/* --namespace entries */
#define ENG_NS_NAME_MAX		32	/* bytes in a namespace name */
#define ENG_HIST_MAX		100000	/* history=N at most */
#define ENG_HIST_LIMIT		1000	/* messages one history reply holds */
#define ENG_EPOCH_LEN		16	/* hex characters */
#define ENG_HIST_HOLD		65536	/* deliveries held while recovering */
#define ENG_HIST_PAGE		(256 << 10)	/* bytes of messages per reply */
#define ENG_HIST_SLACK		1024	/* bytes of a reply besides them */
#define ENG_HIST_READS		16	/* history reads in flight per conn */

/* One --namespace: channels "NAME:..." (NAME "" : names without ':'). */
struct eng_ns {
	char name[ENG_NS_NAME_MAX + 1];
	uint8_t len;
	uint32_t history;		/* messages kept per channel */
	uint32_t ttl_ms;		/* each for this long */
};

/*
 * Namespaces (ns.c, which any module may call). Parses
 * "NAME:history=N,ttl=DUR" into @ns. Returns 0 or -EINVAL. DUR as
 * elsewhere (ms, s, m, h); N from 1 to ENG_HIST_MAX.
 */
int eng_ns_parse(const char *arg, struct eng_ns *ns);

/* The namespace of channel @name with history, or NULL: none kept. */
const struct eng_ns *eng_ns_find(const struct eng_cfg *cfg, const char *name,
				 size_t len);

/*
 * Draws the part of every epoch that tells this run from earlier ones;
 * once, before any shard starts. A history's epoch (ENG_EPOCH_LEN hex
 * characters) changes whenever its offsets restart: a restart, or a
 * history that expired whole and began again.
 */
void eng_hist_global_init(void);

/* Per shard: its history channels, bytes and budget. */
int eng_hist_init(struct eng_shard *s);
void eng_hist_exit(struct eng_shard *s);

/*
 * On @ch's owner: stamps push frame @f (built with room for it, see
 * eng_pub_frame()) with the history's epoch and next offset and keeps a
 * reference. Memory past the shard's share of --history-memory evicts the
 * oldest messages of the channels appended to least recently. Returns
 * the offset, or 0 when no history could be kept (no memory): the frame
 * then says "offset":null.
 */
uint64_t eng_hist_append(struct eng_shard *s, struct eng_chan *ch,
			 struct eng_buf *f);	/* @ch NULL: none could be had */

/*
 * Writes @epoch (NULL: zeros) and @offset (0: null) into the room
 * eng_pub_hist_frame() kept at the end of push frame @f, before anyone
 * sees it, and marks it ENG_BUF_F_STAMPED. This and the next are in
 * frame.c, which any module may call.
 */
void eng_hist_stamp(struct eng_buf *f, const char *epoch, uint64_t offset);

/* A stamped frame's offset (0: null) and, in @epoch, its epoch. */
uint64_t eng_hist_offset_of(const struct eng_buf *f,
			    char epoch[ENG_EPOCH_LEN + 1]);

/* Stamped frames as catch-up items (catchup.h), placed by their offset. */
extern const struct eng_catchup_ops eng_hist_frame_ops;

/* Drops expired messages; called every tick. */
void eng_hist_tick(struct eng_shard *s);

/*
 * ENG_OP_HIST and ENG_OP_HIST_ACK: a history read, asking shard -> the
 * channel's owner -> back. RECOVER also means the subscription is held
 * (recovering) on the asking shard until the answer arrives. hist.c
 * registers their kinds of mail.
 */
struct eng_hreq {
	uint32_t slot, gen;		/* the asking connection */
	uint16_t from;			/* the asking shard */
	uint8_t kind;			/* ENG_HREQ_* */
	uint8_t len;			/* of name */
	uint8_t status;			/* answer: ENG_HREQ_* below */
	uint8_t seq_len;		/* of seq */
	char name[ENG_CHAN_MAX];
	char seq[64];			/* the command's seq, raw JSON */
	char epoch[20];			/* asked, then answered ("" none) */
	uint64_t after;			/* messages above this offset */
	uint32_t max;			/* at most this many */
	uint32_t max_bytes;		/* ... of at most this many bytes */
	uint8_t lone;			/* ... but one whatever its size */
	uint8_t more;			/* answer cut short (max_bytes, or a
					 * Redis read's bound: see next) */
	uint32_t n;			/* answer: frames */
	uint64_t top;			/* answer: the newest offset */
	struct eng_buf **frames;	/* answer: owned, n references */
	uint64_t next;			/* a cut Redis read ends here */
	size_t bytes;			/* answer: message bytes in frames */
};

enum {
	ENG_HREQ_HISTORY = 0,	/* the "history" command */
	ENG_HREQ_RECOVER,	/* a subscribe with an offset */
	ENG_HREQ_SINCE,		/* "history" from an offset: above @after */
	/* status */
	ENG_HREQ_OK = 0,	/* recovered, or history read */
	ENG_HREQ_GAP,		/* not recovered: epoch changed or too old */
	ENG_HREQ_FUTURE,	/* an offset above the newest */
	ENG_HREQ_NOMEM,
	ENG_HREQ_UNAVAIL,	/* Redis could not be asked or did not answer */
	ENG_HREQ_BACKLOG,	/* not recovered: more than max_bytes missed */
	ENG_HREQ_BUSY,		/* over the node's --redis-max-reading */
};

/*
 * Frees @h, its frames included; NULL is a no-op. Inline: rreq.c and the
 * bridge, below this module, free what they were handed.
 */
static inline void eng_hreq_free(struct eng_hreq *h)
{
	if (h) {
		eng_bufs_put(h->frames, h->n);
		eng_free(h);
	}
}

/*
 * A history read for @c, of @kind (above): ENG_HREQ_HISTORY, the last
 * @max messages of @name; ENG_HREQ_SINCE, at most @max above @after
 * (none if @epoch, when given, is not the channel's); or ENG_HREQ_RECOVER,
 * a recovering subscribe (every message above @after under @epoch; @c
 * already holds the subscription, marked recovering). The answer holds
 * what @c has room for under --max-pending-bytes, a history's at most
 * ENG_HIST_PAGE bytes of messages. The reply goes to @c later. Returns 0,
 * -EBUSY (@c has a read of @name in flight already: nothing asked),
 * -EAGAIN (ENG_HIST_READS of them, of any channels), -EINVAL or -ENOMEM.
 */
int eng_hist_ask(struct eng_shard *s, struct eng_conn *c, unsigned kind,
		 const char *name, size_t len, uint64_t after,
		 const char *epoch, size_t elen, uint32_t max,
		 const char *seq, size_t seq_len);

/*
 * The judgement of a recovery's read, the same on both brokers: from
 * @after under @asked, of a history named @epoch (NULL: none) whose
 * newest offset is @top, when the read finds @first and @last, the
 * offsets of the oldest and the newest message it can give above @after
 * (the newest it has, @top, when it stops short of it on purpose).
 * Returns ENG_HREQ_OK, ENG_HREQ_GAP (another history, or some messages
 * gone) or ENG_HREQ_FUTURE (mail.h).
 */
int eng_hist_judge(const char *asked, uint64_t after, const char *epoch,
		   uint64_t top, uint64_t first, uint64_t last);

/*
 * Whether a history command's read of @c's is still out (a live
 * hand-over carries a connection only once its reads are answered).
 */
bool eng_hist_busy(const struct eng_shard *s, const struct eng_conn *c);

/*
 * A recovery holds its subscription (ENG_SUB_HOLDING) from the start, on
 * the asking shard, on both brokers: what is delivered meanwhile waits
 * for the read (up to ENG_HIST_HOLD, past which the recovery says
 * recovered:false), and the read is sent only once this shard's interest
 * in the channel is registered. eng_hist_registered(): @ch's
 * subscription is registered (sub.c): its recoveries read now.
 * eng_hist_forget(): @sub goes before it is live; returns its read if it
 * was never sent (NULL otherwise), which the caller, once done with the
 * subscription, hands to eng_hist_unanswered() to answer 409 (a read in
 * flight is answered so when it comes back).
 */
void eng_hist_registered(struct eng_shard *s, struct eng_chan *ch);
struct eng_hreq *eng_hist_forget(struct eng_shard *s, struct eng_sub *sub);
void eng_hist_unanswered(struct eng_shard *s, struct eng_hreq *h);

/*
 * Whether @f goes to @sub, which is not live yet (sub->recovering): no
 * while its history is read (held, with Redis); with Redis, after the
 * answer, no for the messages the answer had already, then yes (and
 * @sub is live).
 */
bool eng_hist_pass(struct eng_shard *s, struct eng_sub *sub,
		   struct eng_buf *f);
/*
 * The brokers' history reads (broker.h hist_read): @h (taken over) to
 * its channel's owner shard (hist.c), or to Redis (hist_redis.c), whose
 * answer comes back to eng_hist_redis_done(), also when Redis could not
 * be asked. Returns 0, or -ENOMEM with @h still the caller's.
 */
int eng_hist_owner_read(struct eng_shard *s, struct eng_hreq *h);
int eng_hist_redis_read(struct eng_shard *s, struct eng_hreq *h);
/* A read through Redis answered (@result < 0: Redis could not be asked). */
void eng_hist_redis_done(struct eng_shard *s, struct eng_hreq *h,
			 long long result);

/*
 * Between hist.c and hist_reply.c only (the asking shard's side):
 * hist__room(): the bytes @c may still be sent before it is a slow
 * consumer, less @keep. hist__reply(): the reply to @h,
 * {"seq":S,"cmd":"history","code":200,"msg":"ok","data":{"epoch":E,
 * "offset":T,"messages":[push, ...]}} (and "more":true,"next":h->after
 * when cut short), or for a recovery "subscribe" with "data":
 * {"recovered":B,"epoch":E,"offset":T} ("reason":"backlog" when it was
 * too much); errors carry no data; NULL: no memory. hist__fit(): keeps of
 * @h's messages those @c has room for now (its queue may have grown
 * since it asked): a history's page is cut further (h->more, and
 * h->after the offset to ask from next); a recovery's must fit whole, or
 * it is not made (ENG_HREQ_BACKLOG).
 */
size_t hist__room(const struct eng_shard *s, const struct eng_conn *c,
		  size_t keep);
struct eng_buf *hist__reply(const struct eng_hreq *h, int code,
			    const char *msg);
void hist__fit(struct eng_shard *s, const struct eng_conn *c,
	       struct eng_hreq *h);

/*
 * A take-over (handover.h, docs/HANDOVER.md), hist_handover.c:
 * eng_hist_dump() writes every history of @s as a state record to @b and
 * returns how many; eng_hist_load() reads one record's rest from @r, of
 * channel @name (@len bytes), and installs it on @s, its owner here.
 * Returns 1, 0 when this process keeps no history for it, -EBADMSG or
 * -ENOMEM.
 */
struct eng_ho_buf;
struct eng_ho_rd;
unsigned eng_hist_dump(struct eng_shard *s, struct eng_ho_buf *b);
int eng_hist_load(struct eng_shard *s, const char *name, size_t len,
		  struct eng_ho_rd *r);

/* @ch is going away: its history with it. */
void eng_hist_drop(struct eng_shard *s, struct eng_chan *ch);

#endif
