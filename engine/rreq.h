/* SPDX-License-Identifier: MIT */
/*
 * rreq: the shards' side of requests that go through Redis (rreq.c). A
 * shard formats a command into a struct eng_rreq, the bridge writes it
 * and hands the reply back, and the shard answers its client. The Lua
 * scripts those requests run are declared here.
 */
#ifndef RC_ENGINE_RREQ_H
#define RC_ENGINE_RREQ_H

#include <stddef.h>
#include <stdint.h>

#include "eng.h"
#include "hist.h"

/*
 * The Lua scripts run with EVAL, each defined next to the code that reads
 * its answer, where its ARGV and answer are described: the heartbeat,
 * presence writes, leaving, a user's presence and who is online
 * (bridge_presence.c); history publish and read (bridge_hist.c); inbox
 * keep, read and ack (bridge_inbox.c). Each _len is the script's strlen().
 */
extern const char eng_lua_beat[], eng_lua_presence[], eng_lua_leave[];
extern const char eng_lua_query[], eng_lua_online[];
extern const char eng_lua_hpub[], eng_lua_hread[];
extern const char eng_lua_ikeep[], eng_lua_iread[], eng_lua_iack[];
extern const size_t eng_lua_query_len, eng_lua_online_len;
extern const size_t eng_lua_hpub_len, eng_lua_hread_len;
extern const size_t eng_lua_ikeep_len, eng_lua_iread_len, eng_lua_iack_len;

/*
 * The Redis channel of a channel or user index key (@name NULL: the
 * broadcast channel): <prefix>ch:NAME, <prefix>user:UID, <prefix>all.
 */
size_t eng_rreq_channel(const struct eng_cfg *cfg, char *out, size_t cap,
			const char *name, size_t len);

/*
 * The hash tag of the presence keys on a cluster: they are read together
 * (who is online on which node), so they share one slot.
 */
#define ENG_RREQ_PRESENCE_TAG	"presence"
#define ENG_RREQ_KEYS_MAX	96	/* a key prefix, NUL included */

/*
 * The prefix of the keys that go with Redis channel @chan (NULL: the
 * presence keys) into @out, its slot into @hslot. On a cluster it is
 * "P{TAG}", TAG naming @chan's slot, so a script's keys and the channel
 * it publishes on share one slot; else P (and slot 0). Returns its length.
 */
size_t eng_rreq_keys(const struct eng_cfg *cfg, char *out, size_t cap,
		     const char *chan, size_t clen, uint16_t *hslot);

/*
 * Bytes of messages one history or inbox read through Redis returns at
 * most (a single larger message still goes, alone): the script reads the
 * stream a few entries at a time and stops there, so that neither Redis
 * nor the node holds a channel's whole history for one command.
 */
#define ENG_RREQ_READ_MAX	(1u << 20)

/* Formats @argv into a new request of kind @op (ENG_RQ_*); NULL: no memory. */
struct eng_rreq *eng_rreq_new(uint8_t op, int argc, const char **argv,
			      const size_t *lens);

/*
 * PUBLISH for @c on the channel or user index key @chan (NULL: everyone).
 * @ok and @err (taken over) are a /ws client's replies; an HTTP client
 * (both NULL) gets {"ok":true,"nodes":N} or a 503. Returns 0, or -ENOMEM
 * after dropping both.
 */
int eng_rreq_publish(struct eng_shard *s, struct eng_conn *c,
		     const char *chan, size_t clen, const void *payload,
		     size_t plen, struct eng_buf *ok, struct eng_buf *err);

/*
 * As eng_rreq_publish() for a channel of namespace @ns, which keeps
 * history: one script appends the message to the channel's stream in
 * Redis with the next offset and publishes it with that offset.
 */
int eng_rreq_hpublish(struct eng_shard *s, struct eng_conn *c,
		      const struct eng_ns *ns, const char *chan, size_t clen,
		      const void *payload, size_t plen, struct eng_buf *ok,
		      struct eng_buf *err);

/*
 * Reads what history request @h (taken over) asks of Redis; the bridge
 * fills its answer in and hist.c gets it back (eng_hist_redis_done()),
 * also when Redis could not be asked. Returns 0, or -ENOMEM with @h
 * still the caller's.
 */
int eng_rreq_hread(struct eng_shard *s, struct eng_hreq *h);

/*
 * The request eng_rreq_hread() sends, for the bridge's own reads (@h
 * becomes the request's); NULL out of memory or when @h's channel keeps
 * no history. An @h whose answer so far was cut (h->more) asks for the
 * next page, after h->next. At most ENG_RREQ_READ_MAX bytes come back.
 */
struct eng_rreq *eng_rreq_hread_new(const struct eng_cfg *cfg,
				   struct eng_hreq *h);

/*
 * A push to user @uid kept in its inbox in Redis (eng_lua_ikeep),
 * answered to @c as eng_rreq_publish() answers an HTTP publisher.
 */
int eng_rreq_ikeep(struct eng_shard *s, struct eng_conn *c, const char *uid,
		   size_t ulen, const void *payload, size_t plen);

/*
 * What @q (taken over) asks of user @uid's inbox in Redis: an ack, a
 * listing or a page of a new connection's unread (ENG_IB_*): those after
 * q->after in inbox q->epoch ("": from the oldest), oldest first, at most
 * ENG_RREQ_READ_MAX bytes of them (less when half of --max-pending-bytes
 * is less; one whatever its size), the answer saying whether more are
 * left. The bridge fills the answer in and inbox.c gets it back
 * (eng_inbox_redis_done()). Returns 0, or -ENOMEM with @q still the
 * caller's.
 */
struct eng_ibreq;
int eng_rreq_inbox(struct eng_shard *s, struct eng_ibreq *q, const char *uid,
		   size_t ulen);

/* GET /users/{uid}, POST /users/{uid}/disconnect, GET /online, through
 * Redis; each answers @c later. Returns 0 or -ENOMEM. */
int eng_rreq_query(struct eng_shard *s, struct eng_conn *c, const char *uid,
		   size_t len);
int eng_rreq_kick(struct eng_shard *s, struct eng_conn *c, const char *uid,
		  size_t len);
int eng_rreq_online(struct eng_shard *s, struct eng_conn *c);

/*
 * ENG_OP_R_REQUEST and ENG_OP_R_REPLY: a request that goes through Redis.
 * rreq.c registers their kinds of mail.
 */
struct eng_rreq {
	struct eng_rreq *next;		/* bridge: awaiting its reply */
	uint16_t from;			/* the asking shard, or ENG_BRIDGE */
	uint8_t kind;			/* ENG_CONN_K_HTTP or ENG_CONN_K_PUSH */
	uint8_t op;			/* ENG_RQ_* */
	uint16_t hslot;			/* cluster: the hash slot it goes to */
	uint8_t redirects;		/* cluster: MOVED or ASK so far */
	uint32_t slot, gen;		/* the asking connection */
	long long result;		/* the reply's integer, or -errno */
	long long r2, r3;		/* ONLINE: connections, nodes */
	struct eng_buf *ok, *err;	/* /ws: the replies, prebuilt */
	struct eng_hreq *hreq;		/* HREAD: owned, answered in place */
	struct eng_ibreq *ibreq;	/* IBOX: the same */
	uint64_t reserve;		/* bridge: read bytes it holds (budget) */
	bool page;			/* bridge: a cut read's next page */
	char text[ENG_PRES_APPS * (ENG_APP_MAX + 3)];	/* QUERY: apps */
	size_t len;			/* bytes of the command in data */
	char data[];			/* the command, formatted as RESP */
};

enum {
	ENG_RQ_PUBLISH = 0,	/* PUBLISH: receivers */
	ENG_RQ_QUERY,		/* one user's presence on live nodes */
	ENG_RQ_ONLINE,		/* users, connections, nodes */
	ENG_RQ_PRESENCE,	/* bridge: presence writes, no one waits */
	ENG_RQ_BEAT,		/* bridge: heartbeat; 0 = we had expired */
	ENG_RQ_QUIET,		/* bridge: no reply expected by anyone */
	ENG_RQ_HPUBLISH,	/* a history channel's publish (script) */
	ENG_RQ_HREAD,		/* a history read (script): fills hreq */
	ENG_RQ_IBOX,		/* an inbox read or ack (script): fills ibreq */
};

#endif
