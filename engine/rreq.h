/* SPDX-License-Identifier: MIT */
/*
 * rreq: the shards' side of requests that go through Redis (rreq.c). A
 * shard formats a command into a struct eng_rreq, the bridge writes it
 * and hands the reply back, and the request's own completion (p->done,
 * set by whoever asked: a broker, hist_redis.c, inbox_redis.c) takes it.
 * rreq.c sits below them all and below the bridge: what it needs of the
 * bridge (the words of one Redis or a cluster, the scripts) it reads
 * through e->redis and e->lua. The Lua scripts are declared here.
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
 * (bridge_presence.c); Pusher presence join and leave, channel counts,
 * the HTTP API's queries (bridge_pusher.c);
 * history publish and read (bridge_hist.c); inbox keep, read and ack
 * (bridge_inbox.c). Each _len is the script's strlen().
 */
extern const char eng_lua_beat[], eng_lua_presence[], eng_lua_leave[];
extern const char eng_lua_query[], eng_lua_online[];
extern const char eng_lua_pjoin[], eng_lua_pleave[], eng_lua_pcount[];
extern const char eng_lua_pchans[], eng_lua_pusers[], eng_lua_pinfo[];
extern const char eng_lua_pslot[], eng_lua_pdead[], eng_lua_preap[];
extern const char eng_lua_hpub[], eng_lua_hread[];
extern const char eng_lua_ikeep[], eng_lua_iread[], eng_lua_iack[];
extern const size_t eng_lua_query_len, eng_lua_online_len;
extern const size_t eng_lua_hpub_len, eng_lua_hread_len;
extern const size_t eng_lua_ikeep_len, eng_lua_iread_len, eng_lua_iack_len;

/* The Pusher scripts (bridge_pusher.c), by what they do. */
enum {
	ENG_PS_JOIN,		/* a presence member joins */
	ENG_PS_LEAVE,		/* ... leaves */
	ENG_PS_COUNT,		/* this node's channel counts; webhook events */
	ENG_PS_CHANS,		/* GET channels and channels/{name} */
	ENG_PS_USERS,		/* GET channels/{name}/users */
	ENG_PS_INFO,		/* a publish's info */
	ENG_PS_SLOT,		/* cluster: a slot this node has members in */
	ENG_PS_DEAD,		/* ... dead nodes' slots to reap */
	ENG_PS_REAP,		/* ... a dead node's members of one slot */
	ENG_PS_N
};

/*
 * The scripts the shards' requests run, handed to them once at start-up
 * by the bridge (eng_bridge_init() sets e->lua), so that rreq.c, below
 * the bridge, names none of the bridge's symbols.
 */
struct eng_rreq_lua {
	const char *hpub, *hread, *ikeep, *iread, *iack, *query, *online;
	size_t hpub_len, hread_len, ikeep_len, iread_len, iack_len;
	size_t query_len, online_len;
	const char *pusher[ENG_PS_N];	/* Pusher's (bridge_pusher.c) */
};

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
 * What "one Redis or a cluster" changes in a request's words, chosen once
 * at start-up by the bridge (struct bridge_mode sets e->redis): the
 * command that publishes (PUBLISH; on a cluster the sharded SPUBLISH),
 * and the prefix of the keys that go with Redis channel @chan (NULL: the
 * presence keys) into @out, its slot into @hslot: on a cluster "P{TAG}",
 * TAG naming @chan's slot, so that a script's keys and the channel it
 * publishes on share one slot; else P (and slot 0). Returns its length.
 */
struct eng_rreq_mode {
	const char *publish;
	size_t publish_len;
	size_t (*keys)(const struct eng_cfg *cfg, char *out, size_t cap,
		       const char *chan, size_t clen, uint16_t *hslot);
};
extern const struct eng_rreq_mode eng_rreq_single, eng_rreq_cluster;

/* e->redis->keys(), for the bridge and the requests below. */
size_t eng_rreq_keys(const struct eng *e, char *out, size_t cap,
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
 * What a request does with its answer, on the shard that asked it: set
 * by whoever asks, it takes what it wants of @p (p->result < 0: Redis
 * could not be asked, or failed) and clears those fields; rreq.c then
 * frees the rest of @p. rreq.c itself answers nobody.
 */
typedef void eng_rreq_done_fn(struct eng_shard *s, struct eng_rreq *p);

/*
 * Sends @p for connection @c (HTTP: @c waits, ENG_CONN_F_WAIT) with
 * p->done, which the caller has set, to take its answer; if the bridge
 * never sees it, p->done gets -EIO as for Redis down. Returns 0, or
 * -ENOMEM when @p is NULL (a request-maker below ran out of memory).
 */
int eng_rreq_send(struct eng_shard *s, struct eng_conn *c, struct eng_rreq *p);

/*
 * The requests a broker sends for a client (broker.h): each is made and
 * returned, for eng_rreq_send(); NULL out of memory.
 * publish: PUBLISH on the channel or user index key @chan (NULL: everyone);
 * hpublish: for a channel of namespace @ns, which keeps history: one
 * script appends the message to the channel's stream in Redis with the
 * next offset and publishes it with that offset.
 */
struct eng_rreq *eng_rreq_publish(const struct eng *e, const char *chan,
				  size_t clen, const void *payload,
				  size_t plen);
struct eng_rreq *eng_rreq_hpublish(const struct eng *e,
				   const struct eng_ns *ns, const char *chan,
				   size_t clen, const void *payload,
				   size_t plen);

/*
 * Reads what history request @h (taken over) asks of Redis; the bridge
 * fills its answer in and @done gets it back on this shard, also when
 * Redis could not be asked. Returns 0, or -ENOMEM with @h still the
 * caller's.
 */
int eng_rreq_hread(struct eng_shard *s, struct eng_hreq *h,
		   eng_rreq_done_fn *done);

/*
 * The request eng_rreq_hread() sends, for the bridge's own reads (@h
 * becomes the request's); NULL out of memory or when @h's channel keeps
 * no history. An @h whose answer so far was cut (h->more) asks for the
 * next page, after h->next. At most ENG_RREQ_READ_MAX bytes come back.
 */
struct eng_rreq *eng_rreq_hread_new(const struct eng *e,
				   struct eng_hreq *h);

/* A push to user @uid kept in its inbox in Redis (eng_lua_ikeep). */
struct eng_rreq *eng_rreq_ikeep(const struct eng *e, const char *uid,
				size_t ulen, const void *payload, size_t plen);

/*
 * What @q (taken over) asks of user @uid's inbox in Redis: an ack, a
 * listing or a page of a new connection's unread (ENG_IB_*): those after
 * q->after in inbox q->epoch ("": from the oldest), oldest first, at most
 * ENG_RREQ_READ_MAX bytes of them (less when half of --max-pending-bytes
 * is less; one whatever its size), the answer saying whether more are
 * left. The bridge fills the answer in and @done gets it back. Returns 0,
 * or -ENOMEM with @q still the caller's.
 */
struct eng_ibreq;
int eng_rreq_inbox(struct eng_shard *s, struct eng_ibreq *q, const char *uid,
		   size_t ulen, eng_rreq_done_fn *done);

/*
 * A kick of @uid on every node (a PUBLISH on <prefix>ctl), and the
 * presence scripts of GET /users/{uid} and GET /online, for
 * eng_rreq_send().
 */
struct eng_rreq *eng_rreq_kick(const struct eng *e, const char *uid,
			       size_t len);
struct eng_rreq *eng_rreq_query(const struct eng *e, const char *uid,
				size_t len);
struct eng_rreq *eng_rreq_online(const struct eng *e);

/*
 * A Pusher script (bridge_pusher.c): @script (ENG_PS_*), its @argc (at
 * most 11) arguments after the keys' prefix; ENG_PS_COUNT and
 * ENG_PS_INFO take up to ENG_RREQ_PUSHER_ARGS. A channel's script (join,
 * leave, reap: @argv[1] the channel's Redis channel; users: @argv[0])
 * runs on that channel's keys, its slot on a cluster; join, leave and
 * reap get two more arguments, the publish command and "1" with one
 * Redis ("0": a cluster, where the node's liveness and webhook records
 * are not in that slot).
 * The others run on the presence keys. Its answer is {integer,
 * string}: p->result and p->blob (eng_malloc'd, freed after p->done
 * unless it took it). NULL out of memory.
 */
#define ENG_RREQ_PUSHER_ARGS	520
struct eng_rreq *eng_rreq_pusher(const struct eng *e, int script, int argc,
				 const char **argv, const size_t *lens);

/*
 * Sends @p with nobody waiting on a connection (a shard's own request):
 * p->done still gets its answer, or -EIO when the bridge never saw it.
 */
void eng_rreq_send_own(struct eng_shard *s, struct eng_rreq *p);

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
	void (*done)(struct eng_shard *s, struct eng_rreq *p);	/* rreq.h */
	/* a counted publish's (broker.h publish_fin), and its argument */
	void (*fin)(struct eng_shard *s, void *arg, long long result);
	void *arg;
	struct eng_buf *(*reword)(const struct eng_buf *, int, const char *);	/* /ws */
	struct eng_hreq *hreq;		/* HREAD: owned, answered in place */
	struct eng_ibreq *ibreq;	/* IBOX: the same */
	uint64_t reserve;		/* bridge: read bytes it holds (budget) */
	bool page;			/* bridge: a cut read's next page */
	char *blob;			/* SCRIPT: the answer's string */
	size_t blob_len;
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
	ENG_RQ_SCRIPT,		/* {integer, string}: result and blob */
};

#endif
