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

#include "eng.h"

struct eng_hreq;	/* mail.h */
struct eng_sub;		/* chan.h */

#define ENG_NS_MAX		16	/* --namespace entries */
#define ENG_NS_NAME_MAX		32	/* bytes in a namespace name */
#define ENG_HIST_MAX		100000	/* history=N at most */
#define ENG_HIST_LIMIT		1000	/* messages one history reply holds */
#define ENG_EPOCH_LEN		16	/* hex characters */
#define ENG_HIST_HOLD		65536	/* deliveries held while recovering */
#define ENG_HIST_LAST		UINT64_MAX	/* history: the newest, not
						 * those after an offset */

/* One --namespace: channels "NAME:..." (NAME "" : names without ':'). */
struct eng_ns {
	char name[ENG_NS_NAME_MAX + 1];
	uint8_t len;
	uint32_t history;		/* messages kept per channel */
	uint32_t ttl_ms;		/* each for this long */
};

/*
 * Parses "NAME:history=N,ttl=DUR" into @ns. Returns 0 or -EINVAL. DUR as
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
 * The newest offset of @ch (0: nothing published yet), its epoch (NULL:
 * no history now) and up to @max references to its messages with an
 * offset above @after, oldest first, in @out (each taken: eng_buf_put()
 * them). *@oldest is the lowest offset still kept (top + 1 when none
 * is). Returns how many. @ch may be NULL.
 */
unsigned eng_hist_read(struct eng_chan *ch, uint64_t after,
		       struct eng_buf **out, unsigned max, uint64_t *top,
		       uint64_t *oldest, const char **epoch);


/*
 * Writes @epoch (NULL: zeros) and @offset (0: null) into the room
 * eng_pub_hist_frame() kept at the end of push frame @f, before anyone
 * sees it, and marks it ENG_BUF_F_STAMPED.
 */
void eng_hist_stamp(struct eng_buf *f, const char *epoch, uint64_t offset);

/* A stamped frame's offset (0: null) and, in @epoch, its epoch. */
uint64_t eng_hist_offset_of(const struct eng_buf *f,
			    char epoch[ENG_EPOCH_LEN + 1]);

/* Drops expired messages; called every tick. */
void eng_hist_tick(struct eng_shard *s);

/*
 * Mail handlers (mail.h) for HIST, on the owner, and HIST_ACK, on the
 * asking shard; and HIST's undo when it never reached the owner.
 */
void eng_hist_mail(void *self, unsigned op, void *ptr, int32_t res);
void eng_hist_undo(void *self, unsigned op, void *ptr, int32_t res);

/*
 * A history read for @c: the "history" command (@recover false: the last
 * @max messages of @name) or a recovering subscribe (messages above
 * @after under @epoch; @c already holds the subscription, marked
 * recovering). The reply goes to @c later. Returns 0 or -ENOMEM.
 */
int eng_hist_ask(struct eng_shard *s, struct eng_conn *c, bool recover,
		 const char *name, size_t len, uint64_t after,
		 const char *epoch, size_t elen, uint32_t max,
		 const char *seq, size_t seq_len);

/*
 * Recovery through Redis (the subscription is ENG_SUB_HOLDING), on the
 * asking shard. eng_hist_registered(): @ch's subscription is confirmed
 * (sub.c): its recoveries read Redis now; what is delivered meanwhile
 * waits for the read (up to ENG_HIST_HOLD, past which the recovery says
 * recovered:false). eng_hist_forget(): @sub goes before it is live. And
 * the answer itself, from rreq.c: @result < 0 when Redis could not be
 * asked.
 */
void eng_hist_registered(struct eng_shard *s, struct eng_chan *ch);
void eng_hist_forget(struct eng_shard *s, struct eng_sub *sub);

/*
 * Whether @f goes to @sub, which is not live yet (sub->recovering): no
 * while its history is read (held, with Redis); with Redis, after the
 * answer, no for the messages the answer had already, then yes (and
 * @sub is live).
 */
bool eng_hist_pass(struct eng_shard *s, struct eng_sub *sub,
		   struct eng_buf *f);
void eng_hist_redis_done(struct eng_shard *s, struct eng_hreq *h,
			 long long result);

/* @ch is going away: its history with it. */
void eng_hist_drop(struct eng_shard *s, struct eng_chan *ch);

#endif
