/* SPDX-License-Identifier: MIT */
/*
 * bridge_int.h: what the files of the Redis bridge share, and nothing
 * outside them includes: its structs, its constants and the functions one
 * bridge file calls in another. Every one of them runs on the bridge
 * thread. bridge.c says what the bridge does; the API is bridge.h.
 */
#ifndef RC_ENGINE_BRIDGE_INT_H
#define RC_ENGINE_BRIDGE_INT_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "bridge.h"
#include "buf.h"
#include "chan.h"
#include "cluster.h"
#include "catchup.h"
#include "hist.h"
#include "inbox.h"
#include "json.h"
#include "mail.h"
#include "pub.h"
#include "resp.h"
#include "rreq.h"
#include "sub.h"
#include "ud.h"
#include "user.h"

#define R_BATCH		512		/* channels per (UN)SUBSCRIBE */
#define R_TICK_MS	100
#define R_BEAT_MS	1000		/* presence heartbeat */
#define R_COLLECT_S	10		/* after a burst: heap given back */
#define R_QUIET_BYTES	65536		/* received in a tick: still quiet */
#define R_NODE_TTL	5		/* s: a node silent this long is dead */
#define R_OUTBOX_MAX	10000	/* webhook records Redis holds a list */

/*
 * Lua shared by the Pusher scripts and the reaping (bridge_pusher.c,
 * bridge_presence.c). A webhook record is "NAME\0APP\0CHANNEL\0UID\0N"
 * (UID and N may be empty); outbox(k, r) appends one to list k, bounded
 * (the oldest go), which a node's next count script takes
 * (eng_lua_pcount); none when k is "" (on a cluster, where the node
 * that ran the script sends the webhook). gone(p, rch, u, wk, pub): user
 * u's last connection in Redis channel rch went: its member entries
 * deleted, its member_removed published with command pub, its webhook
 * record to list wk; returns "APP\0CH" ("" for a watchlist's channel).
 */
#define R_LUA_PUSHER \
	"local function outbox(k, r)\n" \
	"  if k == '' then return end\n" \
	"  redis.call('RPUSH', k, r)\n" \
	"  redis.call('LTRIM', k, -" R_STR(R_OUTBOX_MAX) ", -1)\n" \
	"end\n" \
	"local function gone(p, rch, u, wk, pub)\n" \
	"  redis.call('HDEL', p .. 'pt:' .. rch, u)\n" \
	"  redis.call('HDEL', p .. 'pm:' .. rch, u)\n" \
	"  local ev = redis.call('HGET', p .. 'pr:' .. rch, u)\n" \
	"  redis.call('HDEL', p .. 'pr:' .. rch, u)\n" \
	"  if ev then redis.call(pub, rch, ev) end\n" \
	"  local pn = redis.call('HGET', p .. 'pn', rch)\n" \
	"  if not pn then return '' end\n" \
	"  local app, ch = string.match(pn, '^([^%z]*)%z(.*)$')\n" \
	"  local pu = p .. 'pu:' .. app\n" \
	"  if tonumber(redis.call('HINCRBY', pu, ch, -1)) <= 0 then\n" \
	"    redis.call('HDEL', pu, ch)\n" \
	"    redis.call('HDEL', p .. 'pn', rch)\n" \
	"  end\n" \
	"  outbox(wk, 'member_removed\\0' .. pn .. '\\0' .. u .. '\\0')\n" \
	"  return pn\n" \
	"end\n"
#define R_STR_(x)	#x
#define R_STR(x)	R_STR_(x)
#define R_NODES_MAX	ENG_BRIDGE_NODES_MAX	/* cluster: masters, ever */
#define R_MAP_IDX	(2 * R_NODES_MAX)	/* the slot-map link's slot */
#define R_SEEDS_MAX	ENG_CLUSTER_SEEDS_MAX
#define R_REDIRECTS	5		/* MOVED/ASK a request may follow */
#define R_MAP_MS	10000		/* the slot map, asked again ... */
#define R_MAP_BAD_MS	500		/* ... or this soon while unhealthy */
#define R_NOSUB		0xff		/* struct rchan's prim, gone: none */
#define R_DUP_MAX	1024		/* hashes a struct rdup holds: 8 KiB */

enum { R_SUB = 0, R_PUB = 1 };

/* One subscription of a channel, on one Redis node. */
struct rsub {
	uint8_t node;			/* the node it is asked of */
	uint8_t requested;		/* (S)SUBSCRIBE sent on its link */
	uint8_t confirmed;		/* ... and Redis answered it */
};

/*
 * An entry of one of the bridge's tables: a Redis channel this node wants
 * (or has just stopped wanting), or a user's presence on this node.
 *
 * On a cluster a channel is subscribed twice: on its slot's master and on
 * one of the master's replicas, which Redis 7 sends every message of the
 * master's shard channels over the cluster bus, in the master's order, and
 * which keeps its subscribers when it is promoted. The messages of one of
 * the two, @prim, go on; the other's only keep @dup up to date, so that
 * when @prim is lost (its master died) the standby takes over without a
 * message lost or repeated.
 */
struct rchan {
	struct rchan *next;
	uint8_t desired;		/* some shard has subscribers */
	uint8_t ack;			/* the owner waits for confirmation */
	uint8_t dirty;			/* listed in its dirty list */
	uint8_t prim;			/* the sub[] delivering, or R_NOSUB */
	uint8_t gone;			/* a node left while it delivered */
	uint8_t again;			/* lost its delivering sub: count */
	uint8_t ho;			/* wanted by a hand-over alone */
	uint16_t owner;			/* shard to acknowledge */
	uint16_t len;
	uint16_t slot;			/* cluster: its hash slot */
	struct rsub sub[2];		/* [1]: cluster only */
	uint64_t hash;
	uint32_t conns;			/* presence: connections here */
	char *apps;			/* presence: "ios,web", malloc'd */
	struct rhist *hist;		/* a history channel's: malloc'd */
	struct rdup *dup;		/* cluster: malloc'd */
	char name[];
};

/*
 * Which messages of a channel one of its two subscriptions has shown and
 * the other not yet (a hash of each payload, oldest first). Both show the
 * same messages in the same order, the replica's a few milliseconds
 * later (or, on a busy machine, seconds later); so the standby's next
 * messages are, in order, those listed, and the delivering one's next
 * messages are those a standby @ahead listed. One the other skips (the
 * cluster bus lost it) is dropped when a later one matches. No clock:
 * however far behind, a copy is matched by count and order alone. A list
 * full at R_DUP_MAX forgets its older half and says so (@forgot) until the
 * other matches one still listed: a standby that far behind cannot tell
 * its copies of forgotten messages from new ones, so it does not take
 * over (bridge__sub_drop()): a gap, never a message twice.
 */
struct rdup {
	uint8_t ahead;			/* DUP_PRIM or DUP_STANDBY listed them */
	bool draining;			/* took over: what is listed went on */
	bool forgot;			/* older ones than e[0] were dropped */
	uint16_t n, cap;
	uint64_t e[];			/* the payloads' hashes */
};

enum { DUP_PRIM, DUP_STANDBY };

/*
 * A history channel as the subscriber link sees it. The offsets handed to
 * the owner follow each other: a gap (the link was down, or came back
 * late) is read from the channel's stream before later messages go on,
 * which wait meanwhile in @cu (catchup.h: its top is the offset handed on
 * last and its epoch, "" none yet; reading while a read for a gap is out).
 */
struct rhist {
	struct eng_catchup cu;		/* held: came during the read, owned */
	bool stale;			/* the link went down: read once back */
	bool skip;			/* a read failed: take the next as is */
	bool want;			/* a read waits for the publisher link */
};

struct rtable {
	struct rchan **buckets;
	size_t nbuckets, count;
	struct rchan **dirty;		/* entries changed since the flush */
	size_t ndirty, dcap;
};

/*
 * A Redis master and this node's two links to it: the subscriber and the
 * publisher (requests, answered in order). Without a cluster there is
 * one, the --redis server. Never freed before the bridge: the links'
 * configurations borrow @addr.
 */
struct rnode {
	struct eng_cluster_addr addr;
	struct eng_resp c[2];		/* R_SUB, R_PUB */
	struct eng_rreq *fifo_head;	/* R_PUB: requests awaiting replies */
	struct eng_rreq *fifo_tail;
	uint32_t slots;			/* cluster: slots the map gives it */
	atomic_uint shown;		/* for /stats: slots << 2 | pub << 1 | sub */
};

/*
 * What differs between one Redis and a cluster, chosen once by
 * eng_bridge_init() so that no event asks again: how a link's error
 * replies and messages are taken, and how interest is sent. (Routing
 * needs no entry: one Redis has a slot map too, every slot on node 0.)
 */
struct bridge_mode {
	/* an error answering @p: sent on elsewhere (true), or its answer */
	bool (*redirect)(struct eng_bridge *r, struct eng_rreq *p,
			 const redisReply *rep);
	/* an error on node @idx's subscriber link */
	void (*sub_error)(struct eng_bridge *r, unsigned idx,
			  const redisReply *rep);
	/* whether message @rep from node @idx goes on */
	bool (*pass)(struct eng_bridge *r, const redisReply *rep,
		     unsigned idx);
	const char *subscribe;		/* (S)SUBSCRIBE */
	const char *unsubscribe;	/* (S)UNSUBSCRIBE */
	int batch;			/* channels per command */
	const struct eng_rreq_mode *req;	/* the shards' requests' words */
};

/* A live hand-over's part on the bridge (bridge_ho.c). */
struct rho {
	char marker[128];		/* its marker's Redis channel */
	size_t mlen;
	uint8_t *names;			/* malloc'd: u16 length + name each */
	size_t nlen;
	uint32_t n;			/* ... how many (the old one's) */
	atomic_int cmd;			/* ENG_BHO_* asked, or 0 */
	atomic_int state;		/* ENG_BHO_* */
	bool take;			/* the new process's side */
	bool releasing;			/* ENG_BHO_END: held ones going on */
	uint64_t end_by;		/* ms: ... the marker awaited until */
	struct rheld *head, *tail;	/* malloc'd: after the marker */
	size_t held;			/* ... their bytes */
	uint64_t lost;			/* ... dropped past the bound */
};

struct eng_bridge {
	struct eng *eng;		/* borrowed */
	struct ring ring;
	pthread_t thread;
	bool up;
	bool stopping;
	bool cluster;			/* --redis-cluster */
	const struct bridge_mode *mode;	/* ... and what it changes */
	struct eng_rreq_lua lua;	/* the shards' scripts (e->lua) */
	struct rnode *nodes;		/* owned: 1, or R_NODES_MAX on a cluster */
	unsigned nnodes;
	size_t queued;			/* bytes of requests awaiting, all nodes */
	size_t reading;			/* read bytes reserved, all nodes */
	struct eng_rreq *wait_head;	/* replays waiting for reading room */
	struct eng_rreq *wait_tail;
	uint16_t *map;			/* owned: slot -> node, or ENG_SLOT_NONE */
	uint16_t *rmap;			/* owned: slot -> a replica of its node */
	/* cluster only */
	uint32_t uncovered;		/* slots no master serves (all: no map) */
	struct eng_resp mapl;		/* asks for the slot map */
	struct eng_cluster_addr seeds[R_SEEDS_MAX];
	unsigned nseeds, map_at;	/* mapl goes to seeds, then nodes */
	bool map_out;			/* CLUSTER SLOTS sent, not answered */
	bool map_due;			/* ask again soon: something moved */
	bool resub_due;			/* refused subscriptions: at the next map */
	uint64_t map_last;		/* ms: asked last */
	uint16_t *map_next;		/* owned: on_map()'s scratch, ... */
	uint16_t *rmap_next;		/* ... both */
	uint16_t pres_slot;		/* the presence keys' slot */
	char pkeys[ENG_RREQ_KEYS_MAX];	/* ... and their prefix (rreq.h) */
	size_t pkeys_len;
	char map_error[256];		/* the last CLUSTER SLOTS error logged */
	atomic_uint_fast64_t moved;	/* MOVED and ASK replies followed */
	atomic_uint_fast64_t maps;	/* slot maps read */
	atomic_uint_fast64_t resubscribes;	/* channels moved to a master */
	atomic_uint_fast64_t takeovers;		/* ... a standby delivering */
	atomic_uint masters, masters_up;	/* serving slots; ... linked */
	atomic_uint uncovered_pub;		/* a copy of uncovered */
	atomic_uint nnodes_pub;			/* nodes whose addr is set */
	struct rtable chans;		/* Redis channels wanted */
	struct rtable pres;		/* users' presence on this node */
	uint64_t next_beat;		/* ms: the next heartbeat */
	uint64_t stop_by;		/* ms: give up on last writes */
	bool resync;			/* presence to write again, all */
	uint64_t rx_bytes;		/* received from Redis, all links */
	uint64_t heap_seen;		/* rx_bytes at the last tick */
	uint64_t heap_next;		/* ms: the next collect, if quiet */
	unsigned heap_quiet;		/* quiet collects still to do */
	struct eng_mailer mail;		/* the bridge's posts to shards */
	struct json_parser *json;
	char all[128];			/* <prefix>all */
	size_t all_len;
	char ctl[128];			/* <prefix>ctl: kicks */
	size_t ctl_len;
	pthread_mutex_t lock;		/* guards reason only */
	char reason[512];		/* why unhealthy, "" when healthy */
	atomic_uint_fast64_t reconnects;
	atomic_uint_fast64_t messages;	/* message pushes received */
	atomic_uint_fast64_t rejected;	/* not UTF-8, bad name */
	atomic_uint_fast64_t publishes;
	atomic_uint_fast64_t errors;	/* error replies from Redis */
	atomic_uint_fast64_t refused;	/* over --redis-max-pending */
	atomic_uint_fast64_t pending;	/* a copy of queued, for /stats */
	atomic_uint_fast64_t mail_errors;	/* posts to shards that failed */
	atomic_uint_fast64_t fills;	/* history gaps read back */
	atomic_uint_fast64_t gaps;	/* ... that could not be */
	atomic_bool loading;		/* a link's Redis loads its dataset */
	bool loading_said;		/* ... logged, and its end not yet */
	atomic_uint_fast64_t reading_pub;	/* a copy of reading */
	atomic_uint_fast64_t reads_refused;	/* over --redis-max-reading */
	bool logged_error;		/* the first error reply was logged */
	bool fills_waiting;		/* some rhist wants its read sent */
	atomic_int healthy;
	struct rho ho;			/* a live hand-over's */
};

/* What a script (bridge_hist.c, bridge_inbox.c) stamped a message with. */
enum { STAMP_HIST, STAMP_INBOX };

static inline uint64_t now_ms(void)
{
	return eng_resp_now_ms();
}

/* ---- bridge.c: the thread, the links, health and figures --------------- */

/* Sets why /healthz says 503: @fmt with @a and @b (under r->lock). */
void bridge__set_reason(struct eng_bridge *r, const char *fmt, const char *a,
			const char *b);

/*
 * Healthy: every slot has a master and this node's two links to each
 * master that serves slots are up. A cluster's reason names no host
 * either: the log does.
 */
void bridge__update_health(struct eng_bridge *r);

/* The hello got an error (a wrong password, an unknown db). */
void bridge__link_refused(struct eng_resp *l, void *arg, const char *err);

/*
 * Redis answered a link's hello with -LOADING: it is reading its dataset
 * back. Said as such (not as a refusal), once per link made; resp.c says
 * hello again until Redis is ready.
 */
void bridge__link_loading(struct eng_resp *l, void *arg);

extern const struct eng_resp_ops bridge__link_ops;

/* Sets link @l up toward @host:@port, as role @role of user_data @idx. */
int bridge__link_init(struct eng_bridge *r, struct eng_resp *l,
		      const char *role, const char *host, uint16_t port,
		      unsigned db, unsigned idx,
		      const struct eng_resp_ops *ops);

/* ---- bridge_table.c: the tables ---------------------------------------- */

/* The entry of @t named @name (@len bytes, hash @hash), or NULL. */
struct rchan *bridge__rchan_find(struct rtable *t, const char *name,
				 size_t len, uint64_t hash);

/* The entry of @t named @name, added (zeroed) if new; NULL: no memory. */
struct rchan *bridge__rchan_get(struct rtable *t, const char *name,
				size_t len);

/* Unlinks @ch from @t and frees it with what it owns. */
void bridge__rchan_free(struct rtable *t, struct rchan *ch);

/* An empty table: 0 or -ENOMEM. */
int bridge__rtable_init(struct rtable *t);

/* Frees every entry of @t and its arrays; @t may be half set up. */
void bridge__rtable_exit(struct rtable *t);

/* Lists @ch as changed, once, for the next flush (dropped if no memory). */
void bridge__mark_dirty(struct rtable *t, struct rchan *ch);

/* Marks every entry of @t, or only those wanted (@desired_only). */
void bridge__mark_all(struct rtable *t, bool desired_only);

/* ---- bridge_req.c: requests -------------------------------------------- */

/* The oldest request awaiting its reply on @n's publisher, or NULL. */
struct eng_rreq *bridge__fifo_pop(struct eng_bridge *r, struct rnode *n);

/* @p's read is answered, or goes no further: its bytes are free again. */
void bridge__read_done(struct eng_bridge *r, struct eng_rreq *p);

/*
 * Answers @p with @n (a count, or -errno): back to the shard that asked,
 * or, for the bridge's own, handled and freed here.
 */
void bridge__ack_pub(struct eng_bridge *r, struct eng_rreq *p, long long n);

/* Element @i of array @rep as an integer; 0 when it is not one. */
long long bridge__int_at(const redisReply *rep, size_t i);

/* A reply on the publisher connection, for the request at the FIFO head. */
void bridge__on_pub_reply(struct eng_bridge *r, struct eng_rreq *p,
			  const redisReply *rep);

/* Replays that waited for reading room, while there is some. */
void bridge__send_waiting(struct eng_bridge *r);

/*
 * Sends request @p (taken over) to its slot's master, or answers it at
 * once: link down, over a budget, or a read waiting its turn.
 */
void bridge__on_request_mail(struct eng_bridge *r, struct eng_rreq *p);

/*
 * A cluster master answered @p with -MOVED or -ASK: @p goes again to the
 * master named (after ASKING, for an ASK), R_REDIRECTS times at most. A
 * MOVED also corrects the map for that slot, and the map is read again.
 * False when @rep is no redirection, or one too many.
 */
bool bridge__redirect(struct eng_bridge *r, struct eng_rreq *p,
		      const redisReply *rep);

/* ---- bridge_sub.c: subscriptions --------------------------------------- */

/* Which of @ch's subscriptions was asked of node @idx: 0, 1 or -1. */
int bridge__sub_at(const struct rchan *ch, unsigned idx);

/*
 * @ch's subscription @k is gone: its link fell, its node dropped it, or
 * this node left it. If it was the one delivering, the other takes over
 * when Redis has confirmed it and it stays (@may_switch), skipping first
 * what the lost one handed on already; else the channel has none until
 * subscribed again, and a history channel reads back what it missed
 * meanwhile. A standby further behind than its list holds (dup_lost())
 * is no standby: it is left too and subscribed again, its backlog never
 * delivered (a gap, rather than messages twice). Either way one
 * resubscribe is counted, once the channel is delivered again from its
 * slot's master (bridge__flush_interest(),
 * prim_pick()): a replica that took over may lose the slot next (a
 * reshard moves it from a master and its replicas alike).
 */
void bridge__sub_drop(struct eng_bridge *r, struct rchan *ch, unsigned k,
		      bool may_switch);

/* The subscription a reply's element @e names, or NULL. */
struct rchan *bridge__sub_of(struct eng_bridge *r, const redisReply *e);

/*
 * Redis confirmed @ch's subscription on node @idx: the delivering one, if
 * none is, or the standby, matched against it from here on.
 */
void bridge__on_subscribed(struct eng_bridge *r, struct rchan *ch,
			   unsigned idx);

/*
 * A cluster node dropped @ch itself (an SUNSUBSCRIBE we did not ask for:
 * its slot moved away): the standby delivers if it can, and the channel
 * is subscribed again where the map says, once it has been read again.
 */
void bridge__on_dropped(struct eng_bridge *r, struct rchan *ch, unsigned idx);

/*
 * An error on a cluster master's subscriber link: an SSUBSCRIBE refused
 * (-MOVED: the slot is elsewhere; -CLUSTERDOWN, -TRYAGAIN). Whatever it
 * has not confirmed is asked again: at once where a MOVED points, else
 * after the map has been read again.
 */
void bridge__on_sub_error(struct eng_bridge *r, unsigned idx,
			  const redisReply *rep);

/*
 * Cluster: whether message @rep (smessage, channel, payload) from node
 * @idx goes on, or is a standby's copy (or of a channel not wanted).
 */
bool bridge__pass(struct eng_bridge *r, const redisReply *rep, unsigned idx);

/* Sends what the channels that changed need, then acks and frees. */
void bridge__flush_interest(struct eng_bridge *r);

/* A shard wants channel @m->name, or no longer (@m is freed). */
void bridge__on_sub_mail(struct eng_bridge *r, struct eng_rsub *m);

/* ---- bridge_msg.c: messages into push frames --------------------------- */

/*
 * Whether @p[0..@len) is an epoch as the scripts write them: lowercase
 * hex. One someone else left in Redis must not reach the JSON it goes
 * into unescaped (ids, offsets, replies).
 */
bool bridge__epoch_ok(const char *p, size_t len);

/*
 * The push frame of message @data for channel (STAMP_HIST) or user
 * (STAMP_INBOX) @name, stamped with @epoch and offset or N @n; NULL when
 * the message cannot be carried.
 */
struct eng_buf *bridge__stamped_frame(struct eng_bridge *r, int kind,
				      const char *name, size_t nlen,
				      const char *epoch, uint64_t n,
				      const char *data, size_t len);

/* A pub/sub message: becomes a push frame for the channel's owner. */
void bridge__on_message(struct eng_bridge *r, const redisReply *chan,
			const redisReply *payload);

/* "kick UID" on <prefix>ctl: to the user's owner shard. */
void bridge__on_ctl(struct eng_bridge *r, const redisReply *payload);

/*
 * A live hand-over (bridge_ho.c): bridge__ho_run() does what the
 * handover thread asked (eng_bridge_ho()), each loop turn;
 * bridge__ho_took() is true when message @payload on @chan is the
 * hand-over's (the marker, or dropped or held by it) and goes no further
 * now; bridge__ho_free() frees what is held, at the bridge's end.
 */
void bridge__ho_run(struct eng_bridge *r);

bool bridge__ho_took(struct eng_bridge *r, const redisReply *chan,
		     const redisReply *payload);

void bridge__ho_free(struct eng_bridge *r);

/* ---- bridge_hist.c: history reads and gap reads ------------------------ */

/*
 * A history read's answer (eng_lua_hread): {epoch or nil, top, first,
 * more, message, ...} judged as hist.c's owner judges its own ring, into
 * @h; a page after a cut one (h->more) adds to the frames it has.
 */
int bridge__hist_answer(struct eng_bridge *r, struct eng_hreq *h,
			const redisReply *rep);

/* Reads what @rc missed after @h handed on last; later ones wait meanwhile. */
void bridge__hist_fill(struct eng_bridge *r, struct rchan *rc,
		       struct rhist *h);

/*
 * Hands the waiting messages on again, as if they came now, but for those
 * handed on already.
 */
void bridge__hist_release(struct eng_bridge *r, struct rchan *rc,
			  struct rhist *h);

/* Message @f (taken over) of history channel @rc, in the link's order. */
void bridge__hist_live(struct eng_bridge *r, struct rchan *rc,
		       struct eng_buf *f);

/* The answer to bridge__hist_fill()'s read (@q is ours to free). */
void bridge__hist_filled(struct eng_bridge *r, struct eng_hreq *q,
			 long long result);

/* The publisher link is back: the reads that waited for it go. */
void bridge__send_fills(struct eng_bridge *r);

/*
 * A client's recovery whose read was cut by its byte bound (@p answered,
 * h->more): the next page is read into the same answer, as a request of
 * its own, and @p is done. Past half of what the connection may hold
 * (--max-pending-bytes; the rest is room for what else it is sent) the
 * recovery cannot be delivered at once: it is answered "recovered":false
 * rather than closed as a slow consumer. False when @p is to be answered
 * now.
 */
bool bridge__hist_next_page(struct eng_bridge *r, struct eng_rreq *p);

/* ---- bridge_inbox.c: inbox answers ------------------------------------- */

/*
 * An inbox script's answer (eng_lua_iread, eng_lua_iack) into @q: an
 * ack's {acked, unread, evicted} or {-1}; a read's {epoch or nil,
 * unread, evicted, more, N, [message,] ...}. A replay's page also says where the next one goes on
 * (q->after, the last N read, even one no frame could carry) and whether
 * there is one (q->more).
 */
int bridge__inbox_answer(struct eng_bridge *r, struct eng_ibreq *q,
			 const redisReply *rep);

/* ---- bridge_presence.c: presence --------------------------------------- */

/* A user's count on this node changed (from its owner shard). */
void bridge__on_presence_mail(struct eng_bridge *r, struct eng_rpres *m);

/* Writes changed presence, a batch of users per EVAL. */
void bridge__flush_presence(struct eng_bridge *r);

/* Every second: this node is alive, with these counts. */
void bridge__beat(struct eng_bridge *r);

/* A clean stop: remove this node's presence now, not in 5 s. */
void bridge__leave(struct eng_bridge *r);

/* ---- bridge_map.c: the slot map ---------------------------------------- */

/* The node that serves hash slot @slot: -1 when none does (yet). */
int bridge__node_for(const struct eng_bridge *r, uint16_t slot);

/* A replica of the master of @slot (cluster), -1 when none is known. */
int bridge__replica_for(const struct eng_bridge *r, uint16_t slot);

/* Whether the link of @role to the master of @slot is up. */
bool bridge__ready_for(struct eng_bridge *r, uint16_t slot, int role);

/*
 * The node of master @a, linked to from now on if it is new: its index,
 * or -1 when R_NODES_MAX masters were seen already (or no memory).
 */
int bridge__node_add(struct eng_bridge *r, const struct eng_cluster_addr *a);

/* A MOVED said where @slot lives now: the map follows until read again. */
void bridge__map_set(struct eng_bridge *r, uint16_t slot, int node);

/* Asks for the slot map, if the link is up and no answer is owed. */
void bridge__map_ask(struct eng_bridge *r);

extern const struct eng_resp_ops bridge__map_ops;

#endif
