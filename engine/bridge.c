/* SPDX-License-Identifier: MIT */
/*
 * bridge.c: the Redis bridge, one thread with its own io_uring ring. It
 * owns two connections to Redis: the subscriber, which SUBSCRIBEs to the
 * channels this node has subscribers for and turns every message into the
 * same encode-once push frame the embedded broker makes, handed to the
 * channel's owner shard exactly as a local publish is; and the publisher,
 * which PUBLISHes what clients of this node publish and reports how many
 * nodes received it. Reads and writes go through the ring; RESP is parsed
 * with hiredis's redisReader and commands formatted with
 * redisFormatCommandArgv (hiredis's own I/O is not used).
 *
 * Interest comes from the owner shards: a channel whose first subscriber
 * on this node appears is SUBSCRIBEd, its last leaving UNSUBSCRIBEs, both
 * batched per loop turn. The owner's acknowledgement waits for Redis to
 * confirm the SUBSCRIBE, so a message published after a client's
 * subscribe reply reaches it. When Redis goes away the bridge reconnects
 * with capped exponential backoff and jitter and subscribes again; the
 * engine keeps serving its clients meanwhile and /healthz says 503. The
 * two connections are RESP links (resp.c); this file is what the bridge
 * does with them.
 *
 * On a Redis Cluster (--redis-cluster) there is a pair of links per
 * master and per replica the map names (struct rnode), and everything
 * goes by hash slot (cluster.c): channels are SSUBSCRIBEd on their slot's
 * master, which delivers, and on one of its replicas, a standby that takes
 * over when the master dies (struct rchan); requests are written to the
 * master of their hslot, and a third link reads the slot map (CLUSTER
 * SLOTS) from the seeds, again whenever a MOVED, a server's SUNSUBSCRIBE
 * or a lost link says it changed. One Redis is the same with one node
 * that serves every slot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bridge.h"
#include "buf.h"
#include "chan.h"
#include "cluster.h"
#include "hist.h"
#include "inbox.h"
#include "json.h"
#include "mail.h"
#include "pub.h"
#include "resp.h"
#include "rreq.h"
#include "ud.h"
#include "user.h"

#define R_BATCH		512		/* channels per (UN)SUBSCRIBE */
#define R_TICK_MS	100
#define R_BEAT_MS	1000		/* presence heartbeat */
#define R_COLLECT_S	10		/* after a burst: heap given back */
#define R_QUIET_BYTES	65536		/* received in a tick: still quiet */
#define R_NODE_TTL	5		/* s: a node silent this long is dead */
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
 * over (sub_drop()): a gap, never a message twice.
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
 * which wait here meanwhile.
 */
struct rhist {
	uint64_t last;			/* the offset handed on last */
	char epoch[ENG_EPOCH_LEN + 1];	/* ... its epoch; "" none yet */
	bool filling;			/* a read for the gap is out */
	bool stale;			/* the link went down: read once back */
	bool skip;			/* a read failed: take the next as is */
	bool want;			/* a read waits for the publisher link */
	struct eng_buf **held;		/* came during the read: owned */
	uint32_t n, cap;
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

struct eng_bridge {
	struct eng *eng;		/* borrowed */
	struct ring ring;
	pthread_t thread;
	bool up;
	bool stopping;
	bool cluster;			/* --redis-cluster */
	struct rnode *nodes;		/* owned: 1, or R_NODES_MAX on a cluster */
	unsigned nnodes;
	size_t queued;			/* bytes of requests awaiting, all nodes */
	size_t reading;			/* read bytes reserved, all nodes */
	struct eng_rreq *wait_head;	/* replays waiting for reading room */
	struct eng_rreq *wait_tail;
	/* cluster only */
	uint16_t *map;			/* owned: slot -> node, or ENG_SLOT_NONE */
	uint16_t *rmap;			/* owned: slot -> a replica of its node */
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
};

static void hist_filled(struct eng_bridge *r, struct eng_hreq *q,
			long long result);
static void on_request_mail(struct eng_bridge *r, struct eng_rreq *p);
static void send_fills(struct eng_bridge *r);
static void prim_pick(struct eng_bridge *r, struct rchan *ch);

static uint64_t now_ms(void)
{
	return eng_resp_now_ms();
}

static void set_reason(struct eng_bridge *r, const char *fmt, const char *a,
		       const char *b)
{
	pthread_mutex_lock(&r->lock);
	snprintf(r->reason, sizeof(r->reason), fmt, a, b);
	pthread_mutex_unlock(&r->lock);
}

/* The node that serves hash slot @slot: -1 when none does (yet). */
static int node_for(const struct eng_bridge *r, uint16_t slot)
{
	if (!r->cluster)
		return 0;
	if (!r->map || r->map[slot] == ENG_SLOT_NONE)
		return -1;
	return r->map[slot];
}

/* A replica of the master of @slot (cluster), -1 when none is known. */
static int replica_for(const struct eng_bridge *r, uint16_t slot)
{
	if (!r->cluster || !r->rmap || r->rmap[slot] == ENG_SLOT_NONE)
		return -1;
	return r->rmap[slot];
}

/* The link of @role to the master of @slot, or NULL. */
static struct eng_resp *link_for(struct eng_bridge *r, uint16_t slot,
				 int role)
{
	int n = node_for(r, slot);

	return n < 0 ? NULL : &r->nodes[n].c[role];
}

static bool ready_for(struct eng_bridge *r, uint16_t slot, int role)
{
	struct eng_resp *l = link_for(r, slot, role);

	return l && eng_resp_ready(l);
}

/*
 * Healthy: every slot has a master and this node's two links to each
 * master that serves slots are up. A cluster's reason names no host
 * either: the log does.
 */
/* Whether a link's Redis is loading its dataset. */
static bool links_loading(const struct eng_bridge *r)
{
	bool loading = r->cluster && r->mapl.loading;

	for (unsigned i = 0; i < r->nnodes; i++)
		loading |= r->nodes[i].c[R_SUB].loading ||
			   r->nodes[i].c[R_PUB].loading;
	return loading;
}

static void update_health(struct eng_bridge *r)
{
	unsigned masters = 0, up = 0;
	int ok = 1;

	for (unsigned i = 0; i < r->nnodes; i++) {
		struct rnode *n = &r->nodes[i];
		bool sub = eng_resp_ready(&n->c[R_SUB]);
		bool pub = eng_resp_ready(&n->c[R_PUB]);

		atomic_store_explicit(&n->shown, n->slots << 2 |
				      (unsigned)pub << 1 | (unsigned)sub,
				      memory_order_relaxed);
		if (r->cluster && !n->slots)
			continue;
		masters++;
		if (sub && pub)
			up++;
		else
			ok = 0;
	}
	atomic_store(&r->masters, masters);
	atomic_store_explicit(&r->nnodes_pub, r->nnodes, memory_order_release);
	atomic_store(&r->uncovered_pub, r->uncovered);
	atomic_store(&r->masters_up, up);
	if (r->cluster && r->uncovered) {
		char what[64];

		ok = 0;
		snprintf(what, sizeof(what), "%u of %u slots", r->uncovered,
			 ENG_SLOTS);
		if (!r->map_error[0])
			set_reason(r, "redis cluster: %s have no master%s",
				   what, "");
	}
	if (ok) {
		pthread_mutex_lock(&r->lock);
		r->reason[0] = '\0';
		pthread_mutex_unlock(&r->lock);
	}
	atomic_store(&r->loading, links_loading(r));
	atomic_store_explicit(&r->healthy, ok, memory_order_release);
}

bool eng_bridge_healthy(struct eng_bridge *r, char *why, size_t len)
{
	if (atomic_load_explicit(&r->healthy, memory_order_acquire))
		return true;
	pthread_mutex_lock(&r->lock);
	snprintf(why, len, "%s", r->reason[0] ? r->reason : "connecting");
	pthread_mutex_unlock(&r->lock);
	return false;
}

void eng_bridge_figures(struct eng_bridge *r, struct eng_bridge_figs *f)
{
	f->up = atomic_load(&r->healthy);
	f->reconnects = atomic_load(&r->reconnects);
	f->messages = atomic_load(&r->messages);
	f->rejected = atomic_load(&r->rejected);
	f->publishes = atomic_load(&r->publishes);
	f->channels = r->chans.count;
	f->errors = atomic_load(&r->errors);
	f->mail_errors = atomic_load(&r->mail_errors);
	f->refused = atomic_load(&r->refused);
	f->pending = atomic_load(&r->pending);
	f->fills = atomic_load(&r->fills);
	f->gaps = atomic_load(&r->gaps);
	f->loading = atomic_load(&r->loading);
	f->reading = atomic_load(&r->reading_pub);
	f->reads_refused = atomic_load(&r->reads_refused);
	f->cluster = r->cluster;
	f->masters = atomic_load(&r->masters);
	f->masters_up = atomic_load(&r->masters_up);
	f->moved = atomic_load(&r->moved);
	f->maps = atomic_load(&r->maps);
	f->resubscribes = atomic_load(&r->resubscribes);
	f->takeovers = atomic_load(&r->takeovers);
}

/*
 * Writes what /healthz says when unhealthy ("" when healthy) as a JSON
 * string into @out (R_REASON_JSON bytes). Redis's error texts are not
 * ours: bytes outside printable ASCII are shown as '?', so it is UTF-8.
 */
#define R_REASON_JSON	(6 * sizeof(((struct eng_bridge *)0)->reason) + 2)
static size_t reason_json(struct eng_bridge *r, char *out)
{
	char why[sizeof(r->reason)] = "";
	size_t len;

	if (eng_bridge_healthy(r, why, sizeof(why)))
		why[0] = '\0';
	len = strlen(why);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)why[i];

		if (ch < 0x20 || ch > 0x7e)
			why[i] = '?';
	}
	return json_escape(out, why, len);
}

size_t eng_bridge_stats(struct eng_bridge *r, char *out, size_t cap)
{
	struct eng_bridge_figs f;
	char why[R_REASON_JSON];
	size_t n;

	eng_bridge_figures(r, &f);
	why[reason_json(r, why)] = '\0';
	n = (size_t)snprintf(out, cap,
		"{\"up\":%s,\"loading\":%s,\"reason\":%s,"
		"\"reconnects\":%llu,\"messages\":%llu,"
		"\"rejected\":%llu,\"publishes\":%llu,\"channels\":%llu,"
		"\"error_replies\":%llu,\"mailbox_errors\":%llu,"
		"\"over_budget\":%llu,\"pending_bytes\":%llu,"
		"\"history_fills\":%llu,\"history_gaps\":%llu,"
		"\"reading_bytes\":%llu,\"reads_refused\":%llu",
		f.up ? "true" : "false", f.loading ? "true" : "false", why,
		(unsigned long long)f.reconnects,
		(unsigned long long)f.messages,
		(unsigned long long)f.rejected,
		(unsigned long long)f.publishes,
		(unsigned long long)f.channels,
		(unsigned long long)f.errors,
		(unsigned long long)f.mail_errors,
		(unsigned long long)f.refused,
		(unsigned long long)f.pending,
		(unsigned long long)f.fills,
		(unsigned long long)f.gaps,
		(unsigned long long)f.reading,
		(unsigned long long)f.reads_refused);
	if (n < cap && f.cluster) {
		/* every master met, with the slots it serves now (0: none) */
		unsigned k = atomic_load_explicit(&r->nnodes_pub,
						  memory_order_acquire);

		n += (size_t)snprintf(out + n, cap - n,
			",\"cluster\":{\"masters\":%u,\"masters_up\":%u,"
			"\"uncovered_slots\":%u,\"slot_maps\":%llu,"
			"\"moved\":%llu,\"resubscribes\":%llu,"
			"\"takeovers\":%llu,\"links\":[",
			f.masters, f.masters_up,
			(unsigned)atomic_load(&r->uncovered_pub),
			(unsigned long long)f.maps,
			(unsigned long long)f.moved,
			(unsigned long long)f.resubscribes,
			(unsigned long long)f.takeovers);
		for (unsigned i = 0; i < k && n < cap; i++) {
			const struct rnode *nd = &r->nodes[i];
			unsigned v = atomic_load_explicit(&nd->shown,
							  memory_order_relaxed);
			/* the host is what CLUSTER SLOTS or -MOVED said */
			char host[6 * ENG_CLUSTER_HOST_MAX + 2];
			size_t hl = strlen(nd->addr.host);

			if (json_utf8_valid(nd->addr.host, hl))
				hl = json_escape(host, nd->addr.host, hl);
			else
				hl = (size_t)snprintf(host, sizeof(host),
						      "\"?\"");
			n += (size_t)snprintf(out + n, cap - n,
				"%s{\"master\":\"%.*s:%u\",\"slots\":%u,"
				"\"subscriber\":%s,\"publisher\":%s}",
				i ? "," : "", (int)hl - 2, host + 1,
				nd->addr.port,
				v >> 2, v & 1 ? "true" : "false",
				v & 2 ? "true" : "false");
		}
		if (n < cap)
			n += (size_t)snprintf(out + n, cap - n, "]}");
	}
	if (n < cap)
		n += (size_t)snprintf(out + n, cap - n, "}");
	return n;
}

/* ---- the tables ------------------------------------------------------------ */

static struct rchan *rchan_find(struct rtable *t, const char *name,
				size_t len, uint64_t hash)
{
	struct rchan *ch = t->buckets[hash & (t->nbuckets - 1)];

	for (; ch; ch = ch->next)
		if (ch->hash == hash && ch->len == len &&
		    !memcmp(ch->name, name, len))
			return ch;
	return NULL;
}

static void rchan_grow(struct rtable *t)
{
	size_t n = t->nbuckets * 2;
	struct rchan **b = calloc(n, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct rchan *ch = t->buckets[i];

		while (ch) {
			struct rchan *next = ch->next;

			ch->next = b[ch->hash & (n - 1)];
			b[ch->hash & (n - 1)] = ch;
			ch = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

static void rhist_free(struct rhist *h)
{
	if (!h)
		return;
	while (h->n)
		eng_buf_put(h->held[--h->n]);
	free(h->held);
	free(h);
}

static struct rchan *rchan_get(struct rtable *t, const char *name,
			       size_t len)
{
	uint64_t hash = eng_chan_hash(name, len);
	struct rchan *ch = rchan_find(t, name, len, hash);

	if (ch)
		return ch;
	ch = calloc(1, sizeof(*ch) + len);
	if (!ch)
		return NULL;
	ch->hash = hash;
	ch->len = (uint16_t)len;
	ch->prim = ch->gone = R_NOSUB;
	ch->slot = eng_cluster_slot(name, len);
	memcpy(ch->name, name, len);
	if (t->count >= t->nbuckets)
		rchan_grow(t);
	ch->next = t->buckets[hash & (t->nbuckets - 1)];
	t->buckets[hash & (t->nbuckets - 1)] = ch;
	t->count++;
	return ch;
}

static void rchan_free(struct rtable *t, struct rchan *ch)
{
	struct rchan **pp = &t->buckets[ch->hash & (t->nbuckets - 1)];

	while (*pp != ch)
		pp = &(*pp)->next;
	*pp = ch->next;
	t->count--;
	rhist_free(ch->hist);
	free(ch->dup);
	free(ch->apps);
	free(ch);
}

static int rtable_init(struct rtable *t)
{
	t->nbuckets = 64;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	return t->buckets ? 0 : -ENOMEM;
}

static void rtable_exit(struct rtable *t)
{
	for (size_t i = 0; t->buckets && i < t->nbuckets; i++) {
		struct rchan *ch = t->buckets[i];

		while (ch) {
			struct rchan *next = ch->next;

			rhist_free(ch->hist);
			free(ch->dup);
			free(ch->apps);
			free(ch);
			ch = next;
		}
	}
	free(t->buckets);
	free(t->dirty);
	t->buckets = NULL;
	t->dirty = NULL;
}

static void mark_dirty(struct rtable *t, struct rchan *ch)
{
	if (ch->dirty)
		return;
	if (t->ndirty == t->dcap) {
		size_t cap = t->dcap ? t->dcap * 2 : 256;
		struct rchan **d = realloc(t->dirty, cap * sizeof(*d));

		if (!d)
			return;	/* picked up at the next reconnect */
		t->dirty = d;
		t->dcap = cap;
	}
	ch->dirty = 1;
	t->dirty[t->ndirty++] = ch;
}

/* Marks every entry of @t, or only those wanted (@desired_only). */
static void mark_all(struct rtable *t, bool desired_only)
{
	for (size_t i = 0; i < t->nbuckets; i++)
		for (struct rchan *ch = t->buckets[i]; ch; ch = ch->next)
			if (!desired_only || ch->desired)
				mark_dirty(t, ch);
}

/* ---- acknowledgements back to the shards ------------------------------- */

/* Requests written to a node's publisher, answered in this order. */
static void fifo_push(struct eng_bridge *r, struct rnode *n,
		      struct eng_rreq *p)
{
	p->next = NULL;
	if (n->fifo_tail)
		n->fifo_tail->next = p;
	else
		n->fifo_head = p;
	n->fifo_tail = p;
	r->queued += p->len;
	atomic_store_explicit(&r->pending, r->queued, memory_order_relaxed);
}

static struct eng_rreq *fifo_pop(struct eng_bridge *r, struct rnode *n)
{
	struct eng_rreq *p = n->fifo_head;

	if (!p)
		return NULL;
	n->fifo_head = p->next;
	if (!n->fifo_head)
		n->fifo_tail = NULL;
	r->queued -= p->len;
	atomic_store_explicit(&r->pending, r->queued, memory_order_relaxed);
	return p;
}

static void ack_sub(struct eng_bridge *r, struct rchan *ch)
{
	struct eng_rsub *m;

	if (!ch->ack)
		return;
	ch->ack = 0;
	m = eng_malloc(sizeof(*m) + ch->len);
	if (!m) {
		atomic_fetch_add(&r->mail_errors, 1);
		return;
	}
	m->from = ch->owner;
	m->add = 1;
	m->len = ch->len;
	memcpy(m->name, ch->name, ch->len);
	eng_mail_post(&r->mail, ch->owner, ENG_OP_R_SUB_ACK, m);
}

/* @p's read is answered, or goes no further: its bytes are free again. */
static void read_done(struct eng_bridge *r, struct eng_rreq *p)
{
	r->reading -= p->reserve;
	p->reserve = 0;
	atomic_store_explicit(&r->reading_pub, r->reading,
			      memory_order_relaxed);
}

static void ack_pub(struct eng_bridge *r, struct eng_rreq *p, long long n)
{
	read_done(r, p);
	p->result = n;
	if (p->from == ENG_BRIDGE) {	/* our own: nobody waits */
		if (p->op == ENG_RQ_BEAT && n == 0)
			r->resync = true;	/* our presence had expired */
		if (p->op == ENG_RQ_HREAD) {
			hist_filled(r, p->hreq, n);
			p->hreq = NULL;
		}
		eng_free(p);
		return;
	}
	eng_mail_post(&r->mail, p->from, ENG_OP_R_REPLY, p);
}

/* ---- the links ----------------------------------------------------------- */

/* Which of @ch's subscriptions was asked of node @idx: 0, 1 or -1. */
static int sub_at(const struct rchan *ch, unsigned idx)
{
	for (int k = 0; k < 2; k++)
		if (ch->sub[k].requested && ch->sub[k].node == idx)
			return k;
	return -1;
}

/* Drops the first @k entries of @d's list. */
static void dup_drop(struct rdup *d, uint16_t k)
{
	d->n = (uint16_t)(d->n - k);
	memmove(d->e, d->e + k, d->n * sizeof(d->e[0]));
}

/* Empties @d's list: nothing is owed either way. */
static void dup_clear(struct rdup *d)
{
	d->n = 0;
	d->forgot = false;
}

/*
 * Whether @d's standby is further behind than the list holds: its next
 * copies may be of forgotten messages, which cannot be told from new ones.
 */
static bool dup_lost(const struct rdup *d)
{
	return d && d->forgot && d->ahead == DUP_PRIM;
}

/*
 * Lists hash @x, from stream @side, in @ch's dup. Full at R_DUP_MAX (or
 * out of memory), the list forgets its older half and says so.
 */
static void dup_push(struct rchan *ch, uint64_t x, uint8_t side)
{
	struct rdup *d = ch->dup;

	if (!d) {
		d = malloc(sizeof(*d) + 4 * sizeof(d->e[0]));
		if (!d)
			return;
		d->draining = false;
		d->cap = 4;
		dup_clear(d);
		ch->dup = d;
	} else if (d->ahead != side) {
		dup_clear(d);	/* the other's list is left behind: stale */
	}
	if (d->n == d->cap && d->cap < R_DUP_MAX) {
		uint16_t cap = (uint16_t)(d->cap * 2);
		struct rdup *g = realloc(d, sizeof(*d) + cap * sizeof(d->e[0]));

		if (g) {
			g->cap = cap;
			ch->dup = d = g;
		}
	}
	if (d->n == d->cap) {
		dup_drop(d, d->n / 2);	/* far behind: forget the older */
		d->forgot = true;
	}
	d->ahead = side;
	d->e[d->n++] = x;
}

/*
 * Finds hash @x in @d's list and drops it with everything before it (the
 * other stream lost those): true; false when it is not listed.
 */
static bool dup_take(struct rdup *d, uint64_t x)
{
	for (uint16_t i = 0; d && i < d->n; i++)
		if (d->e[i] == x) {
			dup_drop(d, (uint16_t)(i + 1));
			return true;
		}
	return false;
}

struct batch;
static void put_interest(struct eng_bridge *r, unsigned node, bool sub,
			 struct rchan *ch, struct batch *b);

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
 * slot's master (flush_interest(), prim_pick()): a replica that took over
 * may lose the slot next (a reshard moves it from a master and its
 * replicas alike).
 */
static void sub_drop(struct eng_bridge *r, struct rchan *ch, unsigned k,
		     bool may_switch)
{
	struct rdup *d = ch->dup;

	ch->sub[k].requested = ch->sub[k].confirmed = 0;
	if (ch->prim != k) {
		if (ch->desired)
			prim_pick(r, ch);	/* the other waited for it */
		return;
	}
	if (may_switch && ch->sub[!k].confirmed && !dup_lost(d)) {
		ch->prim = (uint8_t)!k;
		if (d) {
			d->draining = d->n && d->ahead == DUP_PRIM;
			if (!d->draining)
				dup_clear(d);	/* listed by the standby: lost */
		}
		ch->again = ch->desired;
		atomic_fetch_add_explicit(&r->takeovers, 1,
					  memory_order_relaxed);
		return;
	}
	if (ch->sub[!k].requested && dup_lost(d)) {
		struct rsub *s = &ch->sub[!k];

		put_interest(r, s->node, false, ch, NULL);
		s->requested = s->confirmed = 0;
		mark_dirty(&r->chans, ch);
	}
	ch->prim = R_NOSUB;
	ch->gone = ch->sub[k].node;
	if (d)
		dup_clear(d);
	if (ch->desired) {
		ch->again = 1;
		if (ch->hist)
			ch->hist->stale = true;
	}
}

/*
 * A message of @ch whose payload hashes to @x came on node @idx's link:
 * whether it goes on. The delivering stream's do, but for those a standby
 * that took over showed already; the standby's never do, and are matched
 * against the other's instead.
 */
static bool dup_pass(struct rchan *ch, unsigned idx, uint64_t x)
{
	int k = sub_at(ch, idx);
	struct rdup *d = ch->dup;

	if (k < 0 || !ch->sub[k].confirmed)
		return idx == ch->gone;	/* what it sent before we left */
	if (!ch->sub[!k].confirmed && ch->prim == k && !(d && d->draining))
		return true;		/* no standby: nothing to list */
	if (k != ch->prim) {
		if (d && d->draining)
			return false;	/* aligned once the other is */
		if (d && d->n && d->ahead == DUP_PRIM) {
			/* not listed: from before (or forgotten) */
			if (dup_take(d, x))
				d->forgot = false;	/* caught up */
		} else {
			dup_push(ch, x, DUP_STANDBY);
		}
		return false;
	}
	if (d && d->draining) {
		if (dup_take(d, x)) {
			d->draining = d->n > 0;
			return false;	/* the lost one handed it on */
		}
		d->draining = false;	/* past them: new from here on */
		dup_clear(d);
	}
	if (!ch->sub[!k].confirmed)
		return true;
	if (!(d && d->n && d->ahead == DUP_STANDBY && dup_take(d, x)))
		dup_push(ch, x, DUP_PRIM);
	return true;
}

/* The node a link of its belongs to; cfg.idx is node * 2 + role. */
static struct rnode *node_of(struct eng_bridge *r, const struct eng_resp *l)
{
	return &r->nodes[l->cfg.idx / 2];
}

/*
 * A link is ready: the subscriber subscribes to everything wanted, the
 * publisher beats at once (which tells whether our presence survived).
 */
static void link_ready(struct eng_resp *l, void *arg)
{
	struct eng_bridge *r = arg;

	if (l->cfg.idx % 2 == R_SUB) {
		mark_all(&r->chans, true);
	} else {
		if (node_for(r, r->pres_slot) == (int)(l->cfg.idx / 2))
			r->next_beat = 0;	/* the presence keys' master */
		if (r->fills_waiting)
			send_fills(r);
	}
	/* said before /healthz can say 200 */
	if (r->loading_said && !links_loading(r)) {
		r->loading_said = false;
		fprintf(stderr, "ringcast: redis: the dataset is loaded\n");
	}
	update_health(r);
}

/* The hello got an error (a wrong password, an unknown db). */
static void link_refused(struct eng_resp *l, void *arg, const char *err)
{
	struct eng_bridge *r = arg;

	fprintf(stderr, "ringcast: redis %s: %s\n", l->cfg.role, err);
	set_reason(r, "redis %s: %s", l->cfg.role, err);
}

/*
 * Redis answered a link's hello with -LOADING: it is reading its dataset
 * back. Said as such (not as a refusal), once per link made; resp.c says
 * hello again until Redis is ready.
 */
static void link_loading(struct eng_resp *l, void *arg)
{
	struct eng_bridge *r = arg;

	if (r->cluster)
		fprintf(stderr, "ringcast: redis: loading the dataset (%s "
			"link, %s %s:%u); waiting for it\n", l->cfg.role,
			l == &r->mapl ? "seed" : "master", l->cfg.host,
			l->cfg.port);
	else
		fprintf(stderr, "ringcast: redis: loading the dataset (%s "
			"link); waiting for it\n", l->cfg.role);
	set_reason(r, "%s%s", "redis: loading the dataset", "");
	r->loading_said = true;
	update_health(r);
}

/*
 * A link went down (or an attempt failed): say why, fail what waited
 * on it, and let the subscriber subscribe to everything again next time.
 */
static void link_down(struct eng_resp *l, void *arg, bool was_up, int err,
		      const char *why)
{
	struct eng_bridge *r = arg;

	struct rnode *n = node_of(r, l);
	unsigned idx = l->cfg.idx / 2;

	if (was_up && !r->stopping && r->cluster)
		fprintf(stderr, "ringcast: %s (%s %s:%u); reconnecting\n", why,
			n->slots ? "master" : "replica", n->addr.host,
			n->addr.port);
	else if (was_up && !r->stopping)
		fprintf(stderr, "ringcast: %s; reconnecting\n", why);
	set_reason(r, "%s%s", why, "");
	if (r->cluster)
		r->map_due = true;	/* a master died, maybe: where now? */
	if (l->cfg.idx % 2 == R_PUB) {
		/*
		 * Requests in flight: their fate is unknown, so they failed,
		 * with the link's reason (-ETIMEDOUT: Redis froze).
		 */
		struct eng_rreq *p;

		while ((p = fifo_pop(r, n)))
			ack_pub(r, p, err == -ETIMEDOUT ? err : -ECONNRESET);
	} else {
		for (size_t i = 0; i < r->chans.nbuckets; i++)
			for (struct rchan *ch = r->chans.buckets[i]; ch;
			     ch = ch->next) {
				int k = sub_at(ch, idx);

				if (k >= 0)
					sub_drop(r, ch, (unsigned)k, true);
			}
	}
	update_health(r);
}

static void link_reply(struct eng_resp *l, void *arg, redisReply *rep);

static const struct eng_resp_ops link_ops = {
	.ready = link_ready,
	.reply = link_reply,
	.down = link_down,
	.refused = link_refused,
	.loading = link_loading,
};

/* ---- replies ------------------------------------------------------------ */

static bool str_eq(const redisReply *e, const char *lit)
{
	size_t n = strlen(lit);

	return e->type == REDIS_REPLY_STRING && e->len == n &&
	       !memcmp(e->str, lit, n);
}

/* What a script (rreq.c) stamped a message with. */
enum { STAMP_HIST, STAMP_INBOX };

/*
 * Whether @p[0..@len) is an epoch as the scripts write them: lowercase
 * hex. One someone else left in Redis must not reach the JSON it goes
 * into unescaped (ids, offsets, replies).
 */
static bool epoch_ok(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		      (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/*
 * The push frame of message @data for channel (STAMP_HIST) or user
 * (STAMP_INBOX) @name, stamped with @epoch and offset or N @n; NULL when
 * the message cannot be carried.
 */
static struct eng_buf *stamped_frame(struct eng_bridge *r, int kind,
				     const char *name, size_t nlen,
				     const char *epoch, uint64_t n,
				     const char *data, size_t len)
{
	const uint8_t *d = (const uint8_t *)data;
	struct eng_buf *f;
	bool json;

	if (len > r->eng->cfg.max_message)
		return NULL;
	json = json_valid(r->json, data, len);
	if (!json && !json_utf8_valid(data, len))
		return NULL;
	f = kind == STAMP_HIST ? eng_pub_hist_frame(name, nlen, d, len, json) :
	    eng_pub_inbox_frame(name, nlen, d, len, json);
	if (f && kind == STAMP_HIST)
		eng_hist_stamp(f, epoch, n);
	else if (f)
		eng_inbox_stamp(f, epoch, n);
	return f;
}

/* "EPOCH N:MESSAGE", as the scripts PUBLISH it (after their marker). */
static struct eng_buf *stamped_message(struct eng_bridge *r, int kind,
				       const char *name, size_t nlen,
				       const char *p, size_t len)
{
	size_t elen = kind == STAMP_HIST ? ENG_EPOCH_LEN : ENG_INBOX_EPOCH_LEN;
	char epoch[ENG_EPOCH_LEN + 1];
	size_t i = elen;
	uint64_t n = 0;

	if (len < elen + 2 || !epoch_ok(p, elen))
		return NULL;
	memcpy(epoch, p, elen);
	epoch[elen] = '\0';
	for (; i < len && p[i] >= '0' && p[i] <= '9' && i < 40; i++)
		n = n * 10 + (uint64_t)(p[i] - '0');
	if (i == len || p[i] != ':' || !n)
		return NULL;
	return stamped_frame(r, kind, name, nlen, epoch, n, p + i + 1,
			     len - i - 1);
}

static long long int_at(const redisReply *rep, size_t i)
{
	const redisReply *e = rep->element[i];

	return e->type == REDIS_REPLY_INTEGER ? e->integer : 0;
}


/*
 * An inbox script's answer (rreq.c) into @q: an ack's {acked, unread,
 * evicted} or {-1}; a read's {epoch or nil, unread, evicted, more, N,
 * [message,] ...}. A replay's page also says where the next one goes on
 * (q->after, the last N read, even one no frame could carry) and whether
 * there is one (q->more).
 */
static int inbox_answer(struct eng_bridge *r, struct eng_ibreq *q,
			const redisReply *rep)
{
	const redisReply *ep;
	size_t step = q->kind == ENG_IB_REPLAY ? 2 : 1, n;

	if (rep->type != REDIS_REPLY_ARRAY || !rep->elements)
		return -EPROTO;
	if (q->kind == ENG_IB_ACK) {
		if (rep->elements == 1) {
			q->status = ENG_IB_UNKNOWN;
			return 0;
		}
		if (rep->elements != 3)
			return -EPROTO;
		q->acked = (uint64_t)int_at(rep, 0);
		q->unread = (uint64_t)int_at(rep, 1);
		q->evicted = (uint64_t)int_at(rep, 2);
		q->n = 0;
		return 0;
	}
	if (rep->elements < 4 || (rep->elements - 4) % step)
		return -EPROTO;
	ep = rep->element[0];
	if (ep->type != REDIS_REPLY_STRING || ep->len != strlen(q->epoch) ||
	    memcmp(ep->str, q->epoch, ep->len))
		q->after = 0;	/* none, or another inbox: from its start */
	q->n = 0;
	q->epoch[0] = '\0';
	if (ep->type != REDIS_REPLY_STRING)
		return 0;		/* no inbox: nothing unread */
	if (ep->len != ENG_INBOX_EPOCH_LEN || !epoch_ok(ep->str, ep->len))
		return -EPROTO;
	memcpy(q->epoch, ep->str, ep->len);
	q->epoch[ep->len] = '\0';
	q->unread = (uint64_t)int_at(rep, 1);
	q->evicted = (uint64_t)int_at(rep, 2);
	n = (rep->elements - 4) / step;
	if (q->kind == ENG_IB_LIST) {
		for (size_t i = 0; i < n && i < ENG_INBOX_IDS; i++)
			q->ids[q->n++] = (uint64_t)int_at(rep, 4 + i);
		return 0;
	}
	q->more = int_at(rep, 3) != 0;
	if (n)
		q->after = (uint64_t)int_at(rep, 4 + 2 * (n - 1));
	q->frames = eng_malloc((n ? n : 1) * sizeof(*q->frames));
	if (!q->frames)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const redisReply *d = rep->element[4 + 2 * i + 1];
		struct eng_buf *f = d->type != REDIS_REPLY_STRING ? NULL :
			stamped_frame(r, STAMP_INBOX, q->name + 1,
				      q->len - 1u, q->epoch,
				      (uint64_t)int_at(rep, 4 + 2 * i), d->str,
				      d->len);

		if (f)		/* one no frame can carry: left unread */
			q->frames[q->nframes++] = f;
	}
	return 0;
}

/* Drops what pages before had read: the answer will not use them. */
static void hist_drop_frames(struct eng_hreq *h)
{
	while (h->n)
		eng_buf_put(h->frames[--h->n]);
	h->bytes = 0;
	h->more = false;
}

/*
 * A history read's answer (rreq.c's script): {epoch or nil, top, first,
 * more, message, ...} judged as hist.c's owner judges its own ring, into
 * @h; a page after a cut one (h->more) adds to the frames it has.
 */
static int hist_answer(struct eng_bridge *r, struct eng_hreq *h,
		       const redisReply *rep)
{
	uint64_t after = h->more ? h->next : h->after;	/* this page's */
	const redisReply *ep;
	struct eng_buf **frames;
	uint64_t top, first;
	bool more;
	size_t n;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4 ||
	    rep->element[1]->type != REDIS_REPLY_INTEGER ||
	    rep->element[2]->type != REDIS_REPLY_INTEGER ||
	    rep->element[3]->type != REDIS_REPLY_INTEGER)
		return -EPROTO;
	ep = rep->element[0];
	if (ep->type == REDIS_REPLY_STRING && (ep->len != ENG_EPOCH_LEN ||
					       !epoch_ok(ep->str, ep->len)))
		return -EPROTO;
	top = (uint64_t)rep->element[1]->integer;
	first = (uint64_t)rep->element[2]->integer;
	more = rep->element[3]->integer != 0;
	n = rep->elements - 4;
	h->top = top;
	h->more = false;
	if (ep->type != REDIS_REPLY_STRING) {
		/* no history at all: none to recover, offsets start anew */
		h->status = h->kind == ENG_HREQ_RECOVER ? ENG_HREQ_GAP :
			    ENG_HREQ_OK;
		h->epoch[0] = '\0';
		hist_drop_frames(h);
		return 0;
	}
	if (h->kind == ENG_HREQ_RECOVER) {
		if (strlen(h->epoch) != ep->len ||
		    memcmp(h->epoch, ep->str, ep->len))
			h->status = ENG_HREQ_GAP;	/* another history now */
		else if (after > top)
			h->status = ENG_HREQ_FUTURE;
		else if (after < top && (first != after + 1 || !n ||
					 (!more && first + n - 1 != top)))
			h->status = ENG_HREQ_GAP;	/* some are gone */
		else
			h->status = ENG_HREQ_OK;
	} else {
		h->status = ENG_HREQ_OK;
	}
	memcpy(h->epoch, ep->str, ep->len);
	h->epoch[ep->len] = '\0';
	if (h->status != ENG_HREQ_OK)
		hist_drop_frames(h);
	if (h->status != ENG_HREQ_OK || !n)
		return 0;
	frames = eng_realloc(h->frames, (h->n + n) * sizeof(*h->frames));
	if (!frames) {
		h->status = ENG_HREQ_NOMEM;
		hist_drop_frames(h);
		return 0;
	}
	h->frames = frames;
	for (size_t i = 0; i < n; i++) {
		const redisReply *d = rep->element[4 + i];
		struct eng_buf *f = d->type != REDIS_REPLY_STRING ? NULL :
			stamped_frame(r, STAMP_HIST, h->name, h->len, h->epoch,
				      first + i, d->str, d->len);

		if (!f) {	/* a message no frame can carry: not recovered */
			h->status = h->kind == ENG_HREQ_RECOVER ?
				    ENG_HREQ_GAP : ENG_HREQ_NOMEM;
			hist_drop_frames(h);
			return 0;
		}
		h->frames[h->n++] = f;
		h->bytes += d->len;
	}
	h->more = more;			/* cut by the read's byte bound */
	h->next = first + n - 1;
	return 0;
}

/* ---- history channels: no gap on the way in ---------------------------- */

static void hist_live(struct eng_bridge *r, struct rchan *rc,
		      struct eng_buf *f);

/* Reads what @rc missed after @h->last; later messages wait meanwhile. */
static void hist_fill(struct eng_bridge *r, struct rchan *rc,
		      struct rhist *h)
{
	size_t skip = strlen(r->eng->cfg.redis_prefix) + 3;	/* P ch: */
	struct eng_hreq *q;
	struct eng_rreq *p;

	h->filling = true;	/* later messages wait from now on */
	if (!ready_for(r, rc->slot, R_PUB)) {
		h->want = true;		/* sent once the link is back */
		r->fills_waiting = true;
		return;
	}
	q = eng_malloc(sizeof(*q));
	if (!q || rc->len <= skip || rc->len - skip > ENG_CHAN_MAX)
		goto fail;
	memset(q, 0, sizeof(*q));
	q->kind = ENG_HREQ_RECOVER;
	q->len = (uint8_t)(rc->len - skip);
	memcpy(q->name, rc->name + skip, q->len);
	memcpy(q->epoch, h->epoch, sizeof(h->epoch));
	q->after = h->last;
	p = eng_rreq_hread_new(&r->eng->cfg, q);
	if (!p)
		goto fail;
	q = NULL;
	p->from = ENG_BRIDGE;
	atomic_fetch_add_explicit(&r->fills, 1, memory_order_relaxed);
	on_request_mail(r, p);	/* may answer at once: hist_filled() */
	return;
fail:
	eng_free(q);
	h->filling = false;
	h->skip = true;
	atomic_fetch_add_explicit(&r->gaps, 1, memory_order_relaxed);
}

/* Hands the waiting messages on again, as if they came now. */
static void hist_release(struct eng_bridge *r, struct rchan *rc,
			 struct rhist *h)
{
	struct eng_buf **held = h->held;
	uint32_t n = h->n;

	h->held = NULL;
	h->n = h->cap = 0;
	for (uint32_t i = 0; i < n; i++)
		hist_live(r, rc, held[i]);
	free(held);
}

static void hand_on(struct eng_bridge *r, struct rhist *h, struct eng_buf *f,
		    const char *epoch, uint64_t off)
{
	memcpy(h->epoch, epoch, sizeof(h->epoch));
	h->last = off;
	eng_pub_inject(&r->mail, f);
}

/* Message @f (taken over) of history channel @rc, in the link's order. */
static void hist_live(struct eng_bridge *r, struct rchan *rc,
		      struct eng_buf *f)
{
	char epoch[ENG_EPOCH_LEN + 1];
	uint64_t off = eng_hist_offset_of(f, epoch);
	struct rhist *h = rc ? rc->hist : NULL;

	if (rc && !h)
		h = rc->hist = calloc(1, sizeof(*h));
	if (!h) {		/* not wanted here, or no memory: as it is */
		eng_pub_inject(&r->mail, f);
		return;
	}
	if (h->filling) {
		if (h->n == h->cap) {
			uint32_t cap = h->cap ? h->cap * 2 : 64;
			struct eng_buf **held = cap > ENG_HIST_HOLD ? NULL :
				realloc(h->held, cap * sizeof(*held));

			if (!held) {	/* too many: give the read up */
				h->filling = false;
				h->skip = true;
				atomic_fetch_add_explicit(&r->gaps, 1,
							  memory_order_relaxed);
				hist_release(r, rc, h);
				hist_live(r, rc, f);
				return;
			}
			h->held = held;
			h->cap = cap;
		}
		h->held[h->n++] = f;
		return;
	}
	if (strcmp(epoch, h->epoch)) {
		/* the first message seen here, or a history begun again */
		h->last = h->epoch[0] ? 0 : off - 1;
		memcpy(h->epoch, epoch, sizeof(h->epoch));
		h->skip = false;
	}
	if (off <= h->last) {
		eng_buf_put(f);		/* read back already */
	} else if (off == h->last + 1 || h->skip) {
		h->skip = false;
		hand_on(r, h, f, epoch, off);
	} else {
		h->filling = true;	/* hold @f first */
		hist_live(r, rc, f);
		hist_fill(r, rc, h);
		if (!h->filling)	/* could not even ask */
			hist_release(r, rc, h);
	}
}

/* The answer to hist_fill()'s read (@q is ours to free). */
static void hist_filled(struct eng_bridge *r, struct eng_hreq *q,
			long long result)
{
	char name[ENG_CHAN_MAX + 128];
	size_t len = eng_rreq_channel(&r->eng->cfg, name, sizeof(name),
				      q->name, q->len);
	struct rchan *rc = rchan_find(&r->chans, name, len,
				      eng_chan_hash(name, len));
	struct rhist *h = rc ? rc->hist : NULL;

	if (h && h->filling && (result == -ENOTCONN || result == -ECONNRESET ||
				result == -ETIMEDOUT)) {
		h->want = true;		/* the link failed: again once back */
		r->fills_waiting = true;
	} else if (h && h->filling) {
		bool more = false;

		h->filling = false;
		if (result >= 0 && q->status == ENG_HREQ_OK &&
		    !strcmp(q->epoch, h->epoch)) {
			for (uint32_t i = 0; i < q->n; i++) {
				uint64_t off = q->after + 1 + i;

				if (off > h->last) {
					hand_on(r, h, q->frames[i], q->epoch,
						off);
					q->frames[i] = NULL;
				}
			}
			more = q->more;
		} else {
			h->skip = true;		/* lost: say so in /stats */
			atomic_fetch_add_explicit(&r->gaps, 1,
						  memory_order_relaxed);
		}
		/* cut by the read's bound: the next page, the rest waiting */
		if (more)
			hist_fill(r, rc, h);
		if (!h->filling)
			hist_release(r, rc, h);
	}
	eng_hreq_free(q);
}

/* The publisher link is back: the reads that waited for it go. */
static void send_fills(struct eng_bridge *r)
{
	r->fills_waiting = false;
	for (size_t i = 0; i < r->chans.nbuckets; i++)
		for (struct rchan *ch = r->chans.buckets[i]; ch;
		     ch = ch->next) {
			struct rhist *h = ch->hist;

			if (!h || !h->want)
				continue;
			h->want = false;
			hist_fill(r, ch, h);
			if (!h->filling)
				hist_release(r, ch, h);
		}
}

/* A pub/sub message: becomes a push frame for the channel's owner. */
static void on_message(struct eng_bridge *r, const redisReply *chan,
		       const redisReply *payload)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	size_t plen = strlen(cfg->redis_prefix);
	const char *name = NULL;
	size_t nlen = 0;
	struct eng_buf *f;
	bool json, user = false;

	if (chan->len == r->all_len && !memcmp(chan->str, r->all, r->all_len)) {
		name = NULL;
	} else if (chan->len > plen + 3 && !memcmp(chan->str, cfg->redis_prefix,
						   plen) &&
		   !memcmp(chan->str + plen, "ch:", 3)) {
		name = chan->str + plen + 3;
		nlen = chan->len - plen - 3;
		if (!eng_chan_name_ok(name, nlen))
			goto reject;
	} else if (chan->len > plen + 5 && !memcmp(chan->str, cfg->redis_prefix,
						   plen) &&
		   !memcmp(chan->str + plen, "user:", 5)) {
		name = chan->str + plen + 5;
		nlen = chan->len - plen - 5;
		user = true;
		if (!eng_chan_name_ok(name, nlen))
			goto reject;
	} else {
		goto reject;
	}
	if (payload->type != REDIS_REPLY_STRING)
		goto reject;
	if (name && !user && payload->len && (uint8_t)payload->str[0] == 0xff) {
		/* a history channel's message, from its script (rreq.c) */
		f = !eng_ns_find(cfg, name, nlen) ? NULL :
		    stamped_message(r, STAMP_HIST, name, nlen,
				    payload->str + 1, payload->len - 1);
		if (!f)
			goto reject;
		atomic_fetch_add_explicit(&r->messages, 1,
					  memory_order_relaxed);
		hist_live(r, rchan_find(&r->chans, chan->str, chan->len,
					eng_chan_hash(chan->str, chan->len)), f);
		return;
	}
	if (user && payload->len && (uint8_t)payload->str[0] == 0xfe) {
		/* a kept push, from the inbox script (rreq.c) */
		f = stamped_message(r, STAMP_INBOX, name, nlen,
				    payload->str + 1, payload->len - 1);
		if (!f)
			goto reject;
		goto inject;
	}
	if (payload->len > cfg->max_message)
		goto reject;
	json = json_valid(r->json, payload->str, payload->len);
	if (!json && !json_utf8_valid(payload->str, payload->len))
		goto reject;	/* a text frame cannot carry it */
	if (user)
		f = eng_pub_user_frame(name, nlen, (const uint8_t *)payload->str,
				       payload->len, json);
	else
		f = eng_pub_frame(name, nlen, (const uint8_t *)payload->str,
				  payload->len, json);
	if (!f)
		goto reject;
inject:
	atomic_fetch_add_explicit(&r->messages, 1, memory_order_relaxed);
	eng_pub_inject(&r->mail, f);
	return;
reject:
	atomic_fetch_add_explicit(&r->rejected, 1, memory_order_relaxed);
}


/*
 * Copies the comma-separated list @in (@len bytes) into @out, keeping only
 * the entries that fit whole: a user's apps on every node may be more
 * than one answer holds, and half a name would be a wrong name.
 */
static void csv_whole(char *out, size_t cap, const char *in, size_t len)
{
	size_t n = len < cap ? len : cap - 1;

	if (n < len)		/* cut: back to the end of the last whole entry */
		while (n && in[n] != ',')
			n--;
	memcpy(out, in, n);
	out[n] = '\0';
}

/*
 * A client's recovery whose read was cut by its byte bound (@p answered,
 * h->more): the next page is read into the same answer, as a request of
 * its own, and @p is done. Past half of what the connection may hold
 * (--max-pending-bytes; the rest is room for what else it is sent) the
 * recovery cannot be delivered at once: it is answered "recovered":false
 * rather than closed as a slow consumer. False when @p is to be answered
 * now.
 */
static bool hist_next_page(struct eng_bridge *r, struct eng_rreq *p)
{
	struct eng_hreq *h = p->hreq;
	struct eng_rreq *q;

	if (p->from == ENG_BRIDGE || h->kind != ENG_HREQ_RECOVER ||
	    h->status != ENG_HREQ_OK)
		return false;
	if (h->bytes > r->eng->cfg.max_pending / 2) {
		h->status = ENG_HREQ_BACKLOG;	/* more than it may hold */
		hist_drop_frames(h);
		return false;
	}
	if (!h->more)
		return false;
	q = eng_rreq_hread_new(&r->eng->cfg, h);
	if (!q) {
		h->status = ENG_HREQ_NOMEM;
		hist_drop_frames(h);
		return false;
	}
	q->from = p->from;
	q->kind = p->kind;
	q->slot = p->slot;
	q->gen = p->gen;
	q->page = true;
	p->hreq = NULL;
	read_done(r, p);
	eng_free(p);
	on_request_mail(r, q);
	return true;
}

/* A reply on the publisher connection, for the request at the FIFO head. */
static void on_pub_reply(struct eng_bridge *r, struct eng_rreq *p,
			 const redisReply *rep)
{
	if (rep->type == REDIS_REPLY_ERROR) {
		/* Once: the rest are counted (/stats redis.error_replies). */
		atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
		if (!r->logged_error) {
			r->logged_error = true;
			fprintf(stderr, "ringcast: redis: request failed: %.*s; "
				"further errors are counted in /stats\n",
				(int)rep->len, rep->str);
		}
		ack_pub(r, p, -EIO);
		return;
	}
	switch (p->op) {
	case ENG_RQ_QUERY:
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
			break;
		if (rep->element[1]->type == REDIS_REPLY_STRING)
			csv_whole(p->text, sizeof(p->text),
				  rep->element[1]->str, rep->element[1]->len);
		ack_pub(r, p, int_at(rep, 0));
		return;
	case ENG_RQ_HPUBLISH:	/* {receivers, offset, epoch} */
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
			break;
		p->r2 = int_at(rep, 1);
		ack_pub(r, p, int_at(rep, 0));
		return;
	case ENG_RQ_HREAD: {
		int ret = hist_answer(r, p->hreq, rep);

		if (!ret && hist_next_page(r, p))
			return;
		ack_pub(r, p, ret);
		return;
	}
	case ENG_RQ_IBOX: {
		int ret = inbox_answer(r, p->ibreq, rep);

		ack_pub(r, p, ret);
		return;
	}
	case ENG_RQ_ONLINE:
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
			break;
		p->r2 = int_at(rep, 1);
		p->r3 = int_at(rep, 2);
		ack_pub(r, p, int_at(rep, 0));
		return;
	default:
		if (rep->type != REDIS_REPLY_INTEGER)
			break;
		ack_pub(r, p, rep->integer);
		return;
	}
	ack_pub(r, p, -EPROTO);
}

/* "kick UID" on <prefix>ctl: to the user's owner shard. */
static void on_ctl(struct eng_bridge *r, const redisReply *payload)
{
	struct eng_owner_mail *m;
	const char *uid;
	size_t len;

	if (payload->type != REDIS_REPLY_STRING || payload->len < 6 ||
	    memcmp(payload->str, "kick ", 5))
		goto reject;
	uid = payload->str + 5;
	len = payload->len - 5;
	if (!eng_chan_name_ok(uid, len))
		goto reject;
	m = eng_malloc(sizeof(*m));	/* the owner frees it: engine heap */
	if (!m)
		goto reject;
	memset(m, 0, sizeof(*m));
	m->kind = ENG_OWN_KICK;
	m->from = ENG_BRIDGE;
	m->slot = UINT32_MAX;		/* nobody waits for the answer */
	m->len = (uint8_t)eng_user_key(m->name, uid, len);
	eng_mail_post(&r->mail, eng_mail_owner(r->eng, eng_chan_hash(m->name,
		      m->len)), ENG_OP_USER, m);
	return;
reject:
	atomic_fetch_add_explicit(&r->rejected, 1, memory_order_relaxed);
}

/* The subscription a reply's element @e names, or NULL. */
static struct rchan *sub_of(struct eng_bridge *r, const redisReply *e)
{
	return e->type != REDIS_REPLY_STRING ? NULL :
	       rchan_find(&r->chans, e->str, e->len,
			  eng_chan_hash(e->str, e->len));
}

/*
 * If none of @ch's subscriptions delivers, the one that will: the one on
 * the slot's master once Redis confirmed it (a replica's lag behind its
 * master would be lost when it hands over to the master), else one that
 * no other is pending beside. Its owner may answer now, and a history
 * channel reads back what it missed while it had none.
 */
static void prim_pick(struct eng_bridge *r, struct rchan *ch)
{
	struct rhist *h = ch->hist;
	int m = node_for(r, ch->slot);
	unsigned k;

	if (ch->prim != R_NOSUB)
		return;
	for (k = 0; k < 2; k++)
		if (ch->sub[k].confirmed && (ch->sub[k].node == m ||
					     !ch->sub[!k].requested ||
					     ch->sub[!k].confirmed))
			break;
	if (k == 2)
		return;
	ch->prim = (uint8_t)k;
	if (ch->dup) {			/* aligned from here on */
		dup_clear(ch->dup);
		ch->dup->draining = false;
	}
	if (ch->again && r->cluster)
		atomic_fetch_add_explicit(&r->resubscribes, 1,
					  memory_order_relaxed);
	ch->again = 0;
	ack_sub(r, ch);
	if (h && h->stale && h->epoch[0] && !h->filling) {
		h->stale = false;
		hist_fill(r, ch, h);
		if (!h->filling)
			hist_release(r, ch, h);
	}
}

/*
 * Redis confirmed @ch's subscription on node @idx: the delivering one, if
 * none is, or the standby, matched against it from here on.
 */
static void on_subscribed(struct eng_bridge *r, struct rchan *ch,
			  unsigned idx)
{
	int k = sub_at(ch, idx);

	if (k < 0 || ch->sub[k].confirmed)
		return;
	ch->sub[k].confirmed = 1;
	if (ch->prim == R_NOSUB)
		prim_pick(r, ch);
	else if (ch->dup && !ch->dup->draining)
		dup_clear(ch->dup);
}

/*
 * A cluster node dropped @ch itself (an SUNSUBSCRIBE we did not ask for:
 * its slot moved away): the standby delivers if it can, and the channel
 * is subscribed again where the map says, once it has been read again.
 */
static void on_dropped(struct eng_bridge *r, struct rchan *ch, unsigned idx)
{
	int k = sub_at(ch, idx);

	/* else the answer to our own SUNSUBSCRIBE */
	if (!ch->desired || k < 0 || !ch->sub[k].confirmed)
		return;
	sub_drop(r, ch, (unsigned)k, true);
	mark_dirty(&r->chans, ch);
	r->map_due = true;
}

/*
 * An error on a cluster master's subscriber link: an SSUBSCRIBE refused
 * (-MOVED: the slot is elsewhere; -CLUSTERDOWN, -TRYAGAIN). Whatever it
 * has not confirmed is asked again: at once where a MOVED points, else
 * after the map has been read again.
 */
static int node_add(struct eng_bridge *r, const struct eng_cluster_addr *a);
static void map_set(struct eng_bridge *r, uint16_t slot, int node);

static void on_sub_error(struct eng_bridge *r, unsigned idx,
			 const redisReply *rep)
{
	struct eng_cluster_addr to;
	bool ask, moved;
	uint16_t slot;
	int n;

	r->map_due = true;
	moved = eng_cluster_redirect(rep->str, rep->len, &slot, &to, &ask) &&
		!ask;
	if (moved && (n = node_add(r, &to)) >= 0) {
		map_set(r, slot, n);
		atomic_fetch_add_explicit(&r->moved, 1, memory_order_relaxed);
	}
	for (size_t i = 0; i < r->chans.nbuckets; i++)
		for (struct rchan *ch = r->chans.buckets[i]; ch; ch = ch->next) {
			int k = sub_at(ch, idx);

			if (k < 0 || ch->sub[k].confirmed)
				continue;
			ch->sub[k].requested = 0;
			prim_pick(r, ch);	/* a replica's may deliver */
			if (moved) {
				mark_dirty(&r->chans, ch);
			} else {
				/* as while Redis is down: the owner must not
				 * wait for a cluster that may stay down */
				ack_sub(r, ch);
				r->resub_due = true;
			}
		}
}

static bool redirect(struct eng_bridge *r, struct eng_rreq *p,
		     const redisReply *rep);

/*
 * Cluster: whether message @rep (smessage, channel, payload) from node
 * @idx goes on, or is a standby's copy (or of a channel not wanted).
 */
static bool pass(struct eng_bridge *r, const redisReply *rep, unsigned idx)
{
	struct rchan *ch = sub_of(r, rep->element[1]);
	const redisReply *d = rep->element[2];

	return ch && dup_pass(ch, idx, d->type != REDIS_REPLY_STRING ? 0 :
			      eng_chan_hash(d->str, d->len));
}

/* A reply on a ready link: the publisher's in FIFO order, or a push. */
static void link_reply(struct eng_resp *l, void *arg, redisReply *rep)
{
	struct eng_bridge *r = arg;
	unsigned idx = l->cfg.idx / 2;
	const redisReply *k;

	if (l->cfg.idx % 2 == R_PUB) {
		struct eng_rreq *p = fifo_pop(r, node_of(r, l));

		if (p && !(r->cluster && rep->type == REDIS_REPLY_ERROR &&
			   redirect(r, p, rep)))
			on_pub_reply(r, p, rep);
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR && r->cluster) {
		on_sub_error(r, idx, rep);
		return;
	}
	/* Subscriber: message, subscribe and unsubscribe confirmations. */
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
		return;
	k = rep->element[0];
	if (str_eq(k, "message") || str_eq(k, "smessage")) {
		const redisReply *ch = rep->element[1];

		if (r->cluster && !pass(r, rep, idx))
			return;
		if (ch->type == REDIS_REPLY_STRING && ch->len == r->ctl_len &&
		    !memcmp(ch->str, r->ctl, r->ctl_len))
			on_ctl(r, rep->element[2]);
		else
			on_message(r, ch, rep->element[2]);
	} else if (str_eq(k, "subscribe") || str_eq(k, "ssubscribe")) {
		struct rchan *ch = sub_of(r, rep->element[1]);

		if (ch)
			on_subscribed(r, ch, idx);
	} else if (str_eq(k, "sunsubscribe")) {
		struct rchan *ch = sub_of(r, rep->element[1]);

		if (ch)
			on_dropped(r, ch, idx);
	}
}

/* ---- batching ------------------------------------------------------------ */

/* One (UN)SUBSCRIBE being built: up to R_BATCH channels. */
struct batch {
	const char *argv[R_BATCH + 1];
	size_t lens[R_BATCH + 1];
	int n;
};

static void batch_send(struct eng_resp *c, struct batch *b)
{
	if (b->n > 1)
		eng_resp_put_cmd(c, b->n, b->argv, b->lens);
	b->n = 1;
}

/*
 * Asks node @node to (un)subscribe @ch. One Redis takes channels in
 * batches of R_BATCH; a cluster master takes one per SSUBSCRIBE, since a
 * command's channels must share a slot and a refused one is refused whole.
 */
static void put_interest(struct eng_bridge *r, unsigned node, bool sub,
			 struct rchan *ch, struct batch *b)
{
	struct eng_resp *c = &r->nodes[node].c[R_SUB];

	if (!eng_resp_ready(c))
		return;
	if (r->cluster) {
		const char *argv[2] = { sub ? "SSUBSCRIBE" : "SUNSUBSCRIBE",
					ch->name };
		size_t lens[2] = { sub ? 10 : 12, ch->len };

		eng_resp_put_cmd(c, 2, argv, lens);
		return;
	}
	b->argv[b->n] = ch->name;
	b->lens[b->n] = ch->len;
	if (++b->n == R_BATCH + 1)
		batch_send(c, b);
}

/* Sends what the channels that changed need, then acks and frees. */
static void flush_interest(struct eng_bridge *r)
{
	struct batch sub = { .argv = { "SUBSCRIBE" }, .lens = { 9 }, .n = 1 };
	struct batch uns = { .argv = { "UNSUBSCRIBE" }, .lens = { 11 },
			     .n = 1 };

	for (size_t i = 0; i < r->chans.ndirty; i++) {
		struct rchan *ch = r->chans.dirty[i];
		/* where it belongs: its slot's master, and a replica of it */
		int want[2] = { node_for(r, ch->slot),
				replica_for(r, ch->slot) };
		bool keep[2];

		for (unsigned k = 0; k < 2; k++) {
			const struct rsub *s = &ch->sub[k];

			/* a slot without a master: keep what may come back */
			keep[k] = s->requested && ch->desired &&
				  (want[0] < 0 || s->node == want[0] ||
				   s->node == want[1]);
		}
		for (unsigned k = 0; k < 2; k++) {
			if (!ch->sub[k].requested || keep[k])
				continue;
			/* not wanted, or its slot moved: leave that node */
			put_interest(r, ch->sub[k].node, false, ch, &uns);
			sub_drop(r, ch, k, keep[!k]);
		}
		for (unsigned w = 0; w < 2 && ch->desired; w++) {
			int t = want[w];
			unsigned k = ch->sub[0].requested ? 1 : 0;

			if (t < 0 || sub_at(ch, (unsigned)t) >= 0 ||
			    ch->sub[k].requested ||
			    !eng_resp_ready(&r->nodes[t].c[R_SUB]))
				continue;
			put_interest(r, (unsigned)t, true, ch, &sub);
			if (ch->gone == t)
				ch->gone = R_NOSUB;	/* its own from now */
			ch->sub[k].node = (uint8_t)t;
			ch->sub[k].requested = 1;
			ch->sub[k].confirmed = 0;
		}
		if (ch->again && ch->prim != R_NOSUB && r->cluster &&
		    ch->sub[ch->prim].node == want[0]) {
			/* a replica that took over is its slot's master now */
			ch->again = 0;
			atomic_fetch_add_explicit(&r->resubscribes, 1,
						  memory_order_relaxed);
		}
	}
	if (!r->cluster) {
		batch_send(&r->nodes[0].c[R_SUB], &sub);
		batch_send(&r->nodes[0].c[R_SUB], &uns);
	}
	for (size_t i = 0; i < r->chans.ndirty; i++) {
		struct rchan *ch = r->chans.dirty[i];

		ch->dirty = 0;
		/*
		 * While Redis is down an owner must not wait: ack at once. Nor
		 * when nothing was sent because Redis has confirmed already
		 * (a channel dropped and wanted again within one batch, or
		 * wanted again by a new owner): no answer would come.
		 */
		if (!ready_for(r, ch->slot, R_SUB) ||
		    (ch->ack && ch->prim != R_NOSUB))
			ack_sub(r, ch);
		if (!ch->desired && !ch->sub[0].requested &&
		    !ch->sub[1].requested && !ch->ack)
			rchan_free(&r->chans, ch);
	}
	r->chans.ndirty = 0;
	for (unsigned i = 0; i < r->nnodes; i++)
		eng_resp_flush(&r->nodes[i].c[R_SUB]);
}

/* ---- mail from the shards --------------------------------------------- */

static void on_sub_mail(struct eng_bridge *r, struct eng_rsub *m)
{
	struct rchan *ch = rchan_get(&r->chans, m->name, m->len);

	if (ch) {
		ch->desired = m->add;
		ch->owner = m->from;
		if (m->add)
			ch->ack = 1;
		mark_dirty(&r->chans, ch);
	}
	eng_free(m);
}

/*
 * Writes @p on node @node's publisher link, behind what is in flight;
 * false (and @p answered) when that link is not up.
 */
static bool send_to(struct eng_bridge *r, int node, struct eng_rreq *p)
{
	struct eng_resp *c = node < 0 ? NULL : &r->nodes[node].c[R_PUB];

	if (!c || !eng_resp_ready(c)) {
		ack_pub(r, p, -ENOTCONN);
		return false;
	}
	if (eng_resp_put_raw(c, p->data, p->len) < 0) {
		ack_pub(r, p, -ENOMEM);
		return false;
	}
	fifo_push(r, &r->nodes[node], p);
	eng_resp_flush(c);
	return true;
}

/* The bytes a read's answer may take: see read_admitted(). */
static uint64_t read_reserve(const struct eng_bridge *r)
{
	return r->eng->cfg.max_message > ENG_RREQ_READ_MAX ?
	       r->eng->cfg.max_message : ENG_RREQ_READ_MAX;
}

static bool read_room(const struct eng_bridge *r)
{
	return !r->reading || r->reading + read_reserve(r) <=
			      r->eng->cfg.redis_max_reading;
}

/*
 * A history read or a connection's inbox replay: its answer may be as
 * large as ENG_RREQ_READ_MAX (or one message, when that is larger), and
 * Redis builds it in memory, so the node keeps such bytes in flight under
 * --redis-max-reading. Past it a client's history read or recovery is
 * answered 503 at once, and a replay (which no command waits for) waits
 * its turn, sent as answers free room (send_waiting()). The first read
 * always goes, and so do our own (a gap to fill) and the later pages of
 * a read already let through.
 */
static bool read_admitted(struct eng_bridge *r, struct eng_rreq *p)
{
	uint64_t reserve = read_reserve(r);

	if (p->op != ENG_RQ_HREAD && (p->op != ENG_RQ_IBOX ||
				      p->ibreq->kind != ENG_IB_REPLAY))
		return true;
	if (p->from != ENG_BRIDGE && !p->page && !read_room(r)) {
		if (p->op == ENG_RQ_IBOX) {
			p->next = NULL;
			if (r->wait_tail)
				r->wait_tail->next = p;
			else
				r->wait_head = p;
			r->wait_tail = p;
			return false;
		}
		atomic_fetch_add_explicit(&r->reads_refused, 1,
					  memory_order_relaxed);
		p->hreq->status = ENG_HREQ_BUSY;	/* said so: not UNAVAIL */
		ack_pub(r, p, 0);
		return false;
	}
	p->reserve = reserve;
	r->reading += reserve;
	atomic_store_explicit(&r->reading_pub, r->reading,
			      memory_order_relaxed);
	return true;
}

/* Replays that waited for reading room, while there is some. */
static void send_waiting(struct eng_bridge *r)
{
	while (r->wait_head && read_room(r)) {
		struct eng_rreq *p = r->wait_head;

		r->wait_head = p->next;
		if (!r->wait_head)
			r->wait_tail = NULL;
		on_request_mail(r, p);
	}
}

static void on_request_mail(struct eng_bridge *r, struct eng_rreq *p)
{
	if (!ready_for(r, p->hslot, R_PUB)) {
		ack_pub(r, p, -ENOTCONN);
		return;
	}
	if (!read_admitted(r, p))
		return;
	/*
	 * A Redis that reads slowly (or froze, until the timeout says so)
	 * must not make us hold everything: past the budget, refuse now.
	 * Our own requests are few (a beat a second, presence per user).
	 */
	if (p->from != ENG_BRIDGE &&
	    r->queued + p->len > r->eng->cfg.redis_max_pending) {
		atomic_fetch_add_explicit(&r->refused, 1, memory_order_relaxed);
		ack_pub(r, p, -ENOBUFS);
		return;
	}
	if (p->op == ENG_RQ_PUBLISH || p->op == ENG_RQ_HPUBLISH)
		atomic_fetch_add_explicit(&r->publishes, 1,
					  memory_order_relaxed);
	send_to(r, node_for(r, p->hslot), p);
}

/*
 * A cluster master answered @p with -MOVED or -ASK: @p goes again to the
 * master named (after ASKING, for an ASK), R_REDIRECTS times at most. A
 * MOVED also corrects the map for that slot, and the map is read again.
 * False when @rep is no redirection, or one too many.
 */
static bool redirect(struct eng_bridge *r, struct eng_rreq *p,
		     const redisReply *rep)
{
	struct eng_cluster_addr to;
	uint16_t slot;
	bool ask;
	int n;

	if (!eng_cluster_redirect(rep->str, rep->len, &slot, &to, &ask))
		return false;
	atomic_fetch_add_explicit(&r->moved, 1, memory_order_relaxed);
	r->map_due = true;
	n = node_add(r, &to);
	if (n < 0 || p->redirects >= R_REDIRECTS)
		return false;
	p->redirects++;
	if (!ask) {
		map_set(r, slot, n);
	} else if (eng_resp_ready(&r->nodes[n].c[R_PUB])) {
		struct eng_rreq *a = eng_rreq_new(ENG_RQ_QUIET, 1,
			(const char *[]){ "ASKING" }, (size_t[]){ 6 });

		if (!a || !send_to(r, n, a))
			return false;
	}
	send_to(r, n, p);
	return true;
}

/* Sends a presence request of the bridge's own (no shard waits for it). */
static void own_request(struct eng_bridge *r, uint8_t op, int argc,
			const char **argv, const size_t *lens)
{
	struct eng_rreq *p = eng_rreq_new(op, argc, argv, lens);

	if (p) {
		p->hslot = r->pres_slot;
		on_request_mail(r, p);
	}
}

/* A user's count on this node changed (from its owner shard). */
static void on_presence_mail(struct eng_bridge *r, struct eng_rpres *m)
{
	struct rchan *u = rchan_get(&r->pres, m->uid, m->len);

	if (u) {
		u->conns = m->conns;
		free(u->apps);
		u->apps = strdup(m->apps);
		mark_dirty(&r->pres, u);
	}
	eng_free(m);
}

void eng_bridge_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_bridge *r = self;

	(void)res;
	switch (op) {
	case ENG_OP_R_SUBSCRIBE:
		on_sub_mail(r, ptr);
		break;
	case ENG_OP_R_REQUEST:
		on_request_mail(r, ptr);
		break;
	case ENG_OP_R_PRESENCE:
		on_presence_mail(r, ptr);
		break;
	}
}

/* This node's authenticated connections and users, as decimal text. */
static void node_counts(struct eng_bridge *r, char conns[24], char users[24])
{
	unsigned long long c = 0, u = 0;

	for (unsigned i = 0; i < r->eng->cfg.shards; i++) {
		c += atomic_load(&r->eng->shards[i].stats.user_conns);
		u += atomic_load(&r->eng->shards[i].stats.users_owned);
	}
	snprintf(conns, 24, "%llu", c);
	snprintf(users, 24, "%llu", u);
}

/* Writes changed presence, a batch of users per EVAL. */
static void flush_presence(struct eng_bridge *r)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	const char *argv[4 + 4 + R_BATCH * 3];
	size_t lens[4 + 4 + R_BATCH * 3];
	char counts[R_BATCH][12], nc[24], nu[24];
	struct rtable *t = &r->pres;
	size_t i = 0;

	if (!ready_for(r, r->pres_slot, R_PUB))
		return;		/* written again in full after the next beat */
	node_counts(r, nc, nu);
	while (i < t->ndirty) {
		int n = 0, k = 0;

		argv[n] = "EVAL";
		lens[n++] = 4;
		argv[n] = eng_lua_presence;
		lens[n++] = strlen(eng_lua_presence);
		argv[n] = "1";
		lens[n++] = 1;
		argv[n] = r->pkeys;
		lens[n++] = r->pkeys_len;
		argv[n] = r->pkeys;
		lens[n++] = r->pkeys_len;
		argv[n] = cfg->node_id;
		lens[n++] = strlen(cfg->node_id);
		argv[n] = nc;
		lens[n++] = strlen(nc);
		argv[n] = nu;
		lens[n++] = strlen(nu);
		for (; i < t->ndirty && k < R_BATCH; i++, k++) {
			struct rchan *u = t->dirty[i];

			argv[n] = u->name;
			lens[n++] = u->len;
			lens[n] = (size_t)snprintf(counts[k], sizeof(counts[k]),
						   "%u", u->conns);
			argv[n++] = counts[k];
			argv[n] = u->apps ? u->apps : "";
			lens[n] = strlen(argv[n]);
			n++;
		}
		own_request(r, ENG_RQ_PRESENCE, n, argv, lens);
	}
	for (i = 0; i < t->ndirty; i++) {
		struct rchan *u = t->dirty[i];

		u->dirty = 0;
		if (!u->conns)
			rchan_free(t, u);
	}
	t->ndirty = 0;
}

/* Every second: this node is alive, with these counts. */
static void beat(struct eng_bridge *r)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	char c[24], u[24], ttl[8];
	const char *argv[9] = { "EVAL", eng_lua_beat, "1", r->pkeys, r->pkeys,
				cfg->node_id, ttl, c, u };
	size_t lens[9] = { 4, strlen(eng_lua_beat), 1, r->pkeys_len,
			   r->pkeys_len, strlen(cfg->node_id), 0, 0, 0 };

	node_counts(r, c, u);
	lens[6] = (size_t)snprintf(ttl, sizeof(ttl), "%u", R_NODE_TTL);
	lens[7] = strlen(c);
	lens[8] = strlen(u);
	own_request(r, ENG_RQ_BEAT, 9, argv, lens);
}

/* A clean stop: remove this node's presence now, not in 5 s. */
static void leave(struct eng_bridge *r)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	const char *argv[6] = { "EVAL", eng_lua_leave, "1", r->pkeys, r->pkeys,
				cfg->node_id };
	size_t lens[6] = { 4, strlen(eng_lua_leave), 1, r->pkeys_len,
			   r->pkeys_len, strlen(cfg->node_id) };

	if (ready_for(r, r->pres_slot, R_PUB))
		own_request(r, ENG_RQ_QUIET, 6, argv, lens);
}

/* ---- the cluster's slot map -------------------------------------------- */

/* Sets link @l up toward @host:@port, as role @role of user_data @idx. */
static int link_init(struct eng_bridge *r, struct eng_resp *l,
		     const char *role, const char *host, uint16_t port,
		     unsigned db, unsigned idx, const struct eng_resp_ops *ops)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	struct eng_resp_cfg lc = {
		.role = role,
		.host = host,
		.port = port,
		.user = cfg->redis_user,
		.password = cfg->redis_password,
		.db = db,
		.op_connect = ENG_OP_R_CONNECT,
		.op_recv = ENG_OP_R_RECV,
		.op_send = ENG_OP_R_SEND,
		.idx = idx,
		.timeout_ms = cfg->redis_timeout_ms,
	};

	return eng_resp_init(l, &r->ring, &lc, ops, r);
}

/*
 * The node of master @a, linked to from now on if it is new: its index,
 * or -1 when R_NODES_MAX masters were seen already (or no memory).
 */
static int node_add(struct eng_bridge *r, const struct eng_cluster_addr *a)
{
	struct rnode *n;
	unsigned i;

	for (i = 0; i < r->nnodes; i++)
		if (r->nodes[i].addr.port == a->port &&
		    !strcmp(r->nodes[i].addr.host, a->host))
			return (int)i;
	if (!r->cluster || r->nnodes == R_NODES_MAX)
		return -1;
	n = &r->nodes[i];
	n->addr = *a;
	n->c[R_SUB].fd = n->c[R_PUB].fd = -1;
	if (link_init(r, &n->c[R_SUB], "subscriber", n->addr.host,
		      n->addr.port, 0, 2 * i + R_SUB, &link_ops) < 0)
		return -1;
	if (link_init(r, &n->c[R_PUB], "publisher", n->addr.host,
		      n->addr.port, 0, 2 * i + R_PUB, &link_ops) < 0) {
		eng_resp_exit(&n->c[R_SUB]);
		return -1;
	}
	r->nnodes++;
	eng_resp_poll(&n->c[R_SUB], now_ms());
	eng_resp_poll(&n->c[R_PUB], now_ms());
	return (int)i;
}

/* A MOVED said where @slot lives now: the map follows until read again. */
static void map_set(struct eng_bridge *r, uint16_t slot, int node)
{
	uint16_t old = r->map[slot];

	if (old == node)
		return;
	if (old == ENG_SLOT_NONE)
		r->uncovered--;
	else
		r->nodes[old].slots--;
	r->map[slot] = (uint16_t)node;
	r->rmap[slot] = ENG_SLOT_NONE;	/* its replicas: known at the map */
	r->nodes[node].slots++;
	mark_all(&r->chans, true);	/* flush_interest() moves them */
}

/* Asks for the slot map, if the link is up and no answer is owed. */
static void map_ask(struct eng_bridge *r)
{
	const char *argv[2] = { "CLUSTER", "SLOTS" };
	size_t lens[2] = { 7, 5 };

	if (r->map_out || !eng_resp_ready(&r->mapl))
		return;
	if (eng_resp_put_cmd(&r->mapl, 2, argv, lens) < 0)
		return;
	eng_resp_flush(&r->mapl);
	r->map_out = true;
	r->map_due = false;
	r->map_last = now_ms();
}

struct map_fill {
	struct eng_bridge *r;
	uint16_t *map, *rmap;
	bool replicas;			/* the second pass */
	bool full;			/* some node found no room */
};

/*
 * One range of the map, read twice: the masters first, then the replicas,
 * so that replicas only take the room in the node table masters leave.
 */
static void map_range(void *arg, uint16_t first, uint16_t last,
		      const struct eng_cluster_addr *m,
		      const struct eng_cluster_addr *replica)
{
	struct map_fill *f = arg;
	const struct eng_cluster_addr *a = f->replicas ? replica : m;
	int n = a ? node_add(f->r, a) : -1;
	uint16_t *to = f->replicas ? f->rmap : f->map;

	if (a && n < 0)
		f->full = true;
	for (unsigned s = first; s <= last && n >= 0; s++)
		to[s] = (uint16_t)n;
}

/* The answer to CLUSTER SLOTS: the map from now on, or an error to say. */
static void on_map(struct eng_bridge *r, const redisReply *rep)
{
	uint16_t *next = r->map_next, *rnext = r->rmap_next;
	struct map_fill f = { .r = r, .map = next, .rmap = rnext };
	uint32_t uncovered = 0;
	int ret;

	r->map_out = false;
	for (unsigned s = 0; s < ENG_SLOTS; s++)
		next[s] = rnext[s] = ENG_SLOT_NONE;
	ret = rep->type == REDIS_REPLY_ERROR ? -EPROTO :
	      eng_cluster_parse_slots(rep, r->mapl.cfg.host, map_range, &f);
	if (ret >= 0) {
		f.replicas = true;	/* the same answer: parses again */
		ret = eng_cluster_parse_slots(rep, r->mapl.cfg.host, map_range,
					      &f);
	}
	if (ret < 0) {
		char err[200];

		snprintf(err, sizeof(err), "%s",
			 rep->type == REDIS_REPLY_ERROR ? rep->str :
			 "CLUSTER SLOTS: an answer not understood");
		if (strcmp(err, r->map_error))
			fprintf(stderr, "ringcast: redis cluster %s:%u: %s\n",
				r->mapl.cfg.host, r->mapl.cfg.port, err);
		snprintf(r->map_error, sizeof(r->map_error), "%s", err);
		set_reason(r, "redis cluster: %s%s", err, "");
		update_health(r);
		return;
	}
	if (f.full && !r->map_error[0])
		fprintf(stderr, "ringcast: redis cluster: more than %u nodes;"
			" the others have no link\n", R_NODES_MAX);
	r->map_error[0] = '\0';
	atomic_fetch_add_explicit(&r->maps, 1, memory_order_relaxed);
	for (unsigned i = 0; i < r->nnodes; i++)
		r->nodes[i].slots = 0;
	for (unsigned s = 0; s < ENG_SLOTS; s++) {
		if (next[s] == ENG_SLOT_NONE)
			uncovered++;
		else
			r->nodes[next[s]].slots++;
	}
	r->uncovered = uncovered;
	if (memcmp(next, r->map, ENG_SLOTS * sizeof(*next)) ||
	    memcmp(rnext, r->rmap, ENG_SLOTS * sizeof(*rnext)) ||
	    r->resub_due) {
		memcpy(r->map, next, ENG_SLOTS * sizeof(*next));
		memcpy(r->rmap, rnext, ENG_SLOTS * sizeof(*rnext));
		r->resub_due = false;
		mark_all(&r->chans, true);	/* flush_interest() moves them */
		if (r->fills_waiting)
			send_fills(r);
	}
	update_health(r);
}

static void map_ready(struct eng_resp *l, void *arg)
{
	(void)l;
	map_ask(arg);
}

static void map_reply(struct eng_resp *l, void *arg, redisReply *rep)
{
	(void)l;
	on_map(arg, rep);
}

/*
 * The slot-map link went down, or could not connect: the next attempt
 * goes to the next seed, then to the masters met so far, in turn.
 */
static void map_down(struct eng_resp *l, void *arg, bool was_up, int err,
		     const char *why)
{
	struct eng_bridge *r = arg;
	unsigned n = r->nseeds + r->nnodes;
	const struct eng_cluster_addr *a;

	(void)err;
	r->map_out = false;
	if (!r->stopping && !was_up && strcmp(why, r->map_error)) {
		fprintf(stderr, "ringcast: %s (cluster seed %s:%u)\n", why,
			l->cfg.host, l->cfg.port);
		snprintf(r->map_error, sizeof(r->map_error), "%s", why);
	}
	if (r->uncovered == ENG_SLOTS)
		set_reason(r, "%s%s", why, "");
	r->map_at = (r->map_at + 1) % n;
	a = r->map_at < r->nseeds ? &r->seeds[r->map_at] :
	    &r->nodes[r->map_at - r->nseeds].addr;
	l->cfg.host = a->host;		/* both outlive the link */
	l->cfg.port = a->port;
	update_health(r);
}

static const struct eng_resp_ops map_ops = {
	.ready = map_ready,
	.reply = map_reply,
	.down = map_down,
	.refused = link_refused,
	.loading = link_loading,
};

/* ---- the loop ------------------------------------------------------------ */

static void arm_tick(struct eng_bridge *r)
{
	ring_timeout(&r->ring, R_TICK_MS, ring_ud(ENG_OP_TIMER, 0, 0));
}

/*
 * After a burst from Redis, give this thread's heap back: the frames it
 * built (those the arena had no room for) are freed by the shards as
 * their clients read them, into pages only this thread reclaims, and it
 * allocates nothing while quiet, so without this a storm's peak stays
 * resident. Once a second while quiet (heartbeats and pings are), for
 * R_COLLECT_S seconds, which slow clients take to drain the rest.
 */
static void give_back(struct eng_bridge *r, uint64_t now)
{
	uint64_t got = r->rx_bytes - r->heap_seen;

	r->heap_seen = r->rx_bytes;
	if (got > R_QUIET_BYTES) {		/* busy: not yet */
		r->heap_quiet = R_COLLECT_S;
		r->heap_next = now;
		return;
	}
	if (r->heap_quiet && now >= r->heap_next) {
		r->heap_quiet--;
		r->heap_next = now + 1000;
		eng_mem_collect();
	}
}

static void on_tick(struct eng_bridge *r)
{
	uint64_t now = now_ms();

	if (r->mail.retry)
		eng_mail_retry(&r->mail);
	give_back(r, now);

	if (!r->stopping && ready_for(r, r->pres_slot, R_PUB) &&
	    now >= r->next_beat) {
		r->next_beat = now + R_BEAT_MS;
		beat(r);
	}

	for (unsigned i = 0; i < r->nnodes; i++)
		for (unsigned k = 0; k < 2; k++)
			if (eng_resp_poll(&r->nodes[i].c[k], now))
				atomic_fetch_add_explicit(&r->reconnects, 1,
							  memory_order_relaxed);
	if (r->cluster && !r->stopping) {
		/* often while something is wrong, else now and then */
		uint64_t every = r->map_due || !atomic_load(&r->healthy) ?
				 R_MAP_BAD_MS : R_MAP_MS;

		eng_resp_poll(&r->mapl, now);
		if (now >= r->map_last + every)
			map_ask(r);
	}
	arm_tick(r);
}

static void dispatch(void *arg, struct ring_cqe *cqe)
{
	struct eng_bridge *r = arg;
	unsigned op = ring_ud_op(cqe->user_data);

	if (eng_mail_is(op)) {
		eng_mail_read(&r->mail, cqe);
		return;
	}
	switch (op) {
	case ENG_OP_R_CONNECT:
	case ENG_OP_R_RECV:
	case ENG_OP_R_SEND: {
		/* the slot says which link: node * 2 + R_SUB or R_PUB */
		uint32_t idx = ring_ud_slot(cqe->user_data);

		if (op == ENG_OP_R_RECV && cqe->res > 0)
			r->rx_bytes += (uint64_t)cqe->res;	/* give_back() */
		if (idx == R_MAP_IDX && r->cluster)
			eng_resp_on_cqe(&r->mapl, op, ring_ud_gen(cqe->user_data),
					cqe->res);
		else if (idx / 2 < r->nnodes)
			eng_resp_on_cqe(&r->nodes[idx / 2].c[idx % 2], op,
					ring_ud_gen(cqe->user_data), cqe->res);
		break;
	}
	case ENG_OP_TIMER:
		on_tick(r);
		break;
	case ENG_OP_STOP:
		r->stopping = true;
		r->stop_by = now_ms() + 1000;
		leave(r);
		break;
	default:
		break;
	}
}

/* Some request written to a link that is still up awaits its answer. */
static bool awaiting(struct eng_bridge *r)
{
	for (unsigned i = 0; i < r->nnodes; i++)
		if (r->nodes[i].fifo_head &&
		    eng_resp_ready(&r->nodes[i].c[R_PUB]))
			return true;
	return false;
}

static void *bridge_main(void *arg)
{
	struct eng_bridge *r = arg;

	arm_tick(r);
	for (unsigned i = 0; i < r->nnodes; i++) {
		eng_resp_poll(&r->nodes[i].c[R_SUB], now_ms());
		eng_resp_poll(&r->nodes[i].c[R_PUB], now_ms());
	}
	if (r->cluster)
		eng_resp_poll(&r->mapl, now_ms());
	/* After a stop, until our last writes are answered (or 1 s). */
	while (!r->stopping || (awaiting(r) && now_ms() < r->stop_by)) {
		int ret = ring_run(&r->ring, 1, dispatch, r);

		if (ret < 0) {
			fprintf(stderr, "ringcast: redis: submit: %s\n",
				strerror(-ret));
			break;
		}
		if (r->chans.ndirty)
			flush_interest(r);
		if (r->resync) {
			r->resync = false;
			mark_all(&r->pres, false);
		}
		if (r->pres.ndirty)
			flush_presence(r);
		if (r->wait_head)
			send_waiting(r);
	}
	while (r->wait_head) {		/* stopping: nobody waits for them */
		struct eng_rreq *p = r->wait_head;

		r->wait_head = p->next;
		eng_ibreq_free(p->ibreq);
		eng_free(p);
	}
	for (unsigned i = 0; i < r->nnodes; i++) {
		eng_resp_down(&r->nodes[i].c[R_SUB], 0, "stopping");
		eng_resp_down(&r->nodes[i].c[R_PUB], 0, "stopping");
	}
	if (r->cluster)
		eng_resp_down(&r->mapl, 0, "stopping");
	return NULL;
}

/* ---- set-up ------------------------------------------------------------- */

/* Closes every link and frees the nodes and the map. */
static void nodes_exit(struct eng_bridge *r)
{
	/* one Redis: node 0 was set up for eng_resp_exit() before nnodes */
	unsigned n = r->cluster ? r->nnodes : 1;

	for (unsigned i = 0; i < n && r->nodes; i++) {
		eng_resp_exit(&r->nodes[i].c[R_SUB]);
		eng_resp_exit(&r->nodes[i].c[R_PUB]);
	}
	eng_resp_exit(&r->mapl);
	free(r->nodes);
	free(r->map);
	free(r->map_next);
	free(r->rmap);
	free(r->rmap_next);
	r->nodes = NULL;
	r->map = r->map_next = r->rmap = r->rmap_next = NULL;
}

/*
 * Sets the bridge up before the shards start, so that interest they post
 * from their first client on waits in its ring; eng_bridge_run() starts
 * the thread. The ring has no SINGLE_ISSUER: main creates it, the bridge
 * thread submits to it.
 */
int eng_bridge_init(struct eng *e)
{
	struct eng_bridge *r = calloc(1, sizeof(*r));
	struct rchan *all;
	int ret = -ENOMEM;

	if (!r)
		return -ENOMEM;
	r->eng = e;
	r->cluster = e->cfg.redis_cluster;
	r->mapl.fd = -1;				/* eng_resp_exit() on err */
	r->nodes = calloc(r->cluster ? R_NODES_MAX : 1, sizeof(*r->nodes));
	if (!r->nodes) {
		free(r);
		return -ENOMEM;
	}
	r->nodes[0].c[R_SUB].fd = r->nodes[0].c[R_PUB].fd = -1;
	pthread_mutex_init(&r->lock, NULL);
	/* Built here, before the shards run: they read them (rreq.c). */
	if (!eng_cluster_tag(0))
		goto err;
	r->pkeys_len = eng_rreq_keys(&e->cfg, r->pkeys, sizeof(r->pkeys),
				     NULL, 0, &r->pres_slot);
	/* /healthz is open: its reasons name no host (main's log does) */
	snprintf(r->reason, sizeof(r->reason), "redis: connecting");
	r->all_len = (size_t)snprintf(r->all, sizeof(r->all), "%sall",
				      e->cfg.redis_prefix);
	{
		uint64_t id = 0;

		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = now_ms() ^ (uint64_t)getpid() << 32;
		snprintf(e->cfg.node_id, sizeof(e->cfg.node_id), "%016llx",
			 (unsigned long long)id);
	}
	r->ctl_len = (size_t)snprintf(r->ctl, sizeof(r->ctl), "%sctl",
				      e->cfg.redis_prefix);
	if (rtable_init(&r->chans) < 0 || rtable_init(&r->pres) < 0)
		goto err;
	r->json = json_parser_new(e->cfg.max_message);
	if (!r->json)
		goto err;
	if (r->cluster) {
		int n = eng_cluster_parse_seeds(e->cfg.redis_seeds, r->seeds,
						R_SEEDS_MAX);

		/* main.c checked the list: this cannot fail but for memory */
		r->map = malloc(ENG_SLOTS * sizeof(*r->map));
		r->map_next = malloc(ENG_SLOTS * sizeof(*r->map_next));
		r->rmap = malloc(ENG_SLOTS * sizeof(*r->rmap));
		r->rmap_next = malloc(ENG_SLOTS * sizeof(*r->rmap_next));
		if (n <= 0 || !r->map || !r->map_next || !r->rmap ||
		    !r->rmap_next)
			goto err;
		r->nseeds = (unsigned)n;
		for (unsigned s = 0; s < ENG_SLOTS; s++)
			r->map[s] = r->rmap[s] = ENG_SLOT_NONE;
		r->uncovered = ENG_SLOTS;
		if (link_init(r, &r->mapl, "cluster", r->seeds[0].host,
			      r->seeds[0].port, 0, R_MAP_IDX, &map_ops) < 0)
			goto err;
	} else {
		struct rnode *n = &r->nodes[0];

		snprintf(n->addr.host, sizeof(n->addr.host), "%s",
			 e->cfg.redis_host);
		n->addr.port = e->cfg.redis_port;
		r->nnodes = 1;
		/* pub/sub ignores the db: only the publisher selects */
		if (link_init(r, &n->c[R_SUB], "subscriber", n->addr.host,
			      n->addr.port, 0, R_SUB, &link_ops) < 0 ||
		    link_init(r, &n->c[R_PUB], "publisher", n->addr.host,
			      n->addr.port, e->cfg.redis_db, R_PUB,
			      &link_ops) < 0)
			goto err;
	}
	/* Broadcasts and kicks: every node wants them, always. */
	all = rchan_get(&r->chans, r->all, r->all_len);
	if (!all)
		goto err;
	all->desired = 1;
	all = rchan_get(&r->chans, r->ctl, r->ctl_len);
	if (!all)
		goto err;
	all->desired = 1;
	ret = ring_init(&r->ring, 256, 0, 0);
	if (ret < 0)
		goto err;
	eng_mail_init(&r->mail, e, &r->ring, ENG_BRIDGE, r, &r->stopping,
		      &r->mail_errors);
	e->bridge = r;
	return 0;
err:
	json_parser_free(r->json);
	rtable_exit(&r->chans);
	rtable_exit(&r->pres);
	nodes_exit(r);
	free(r);
	return ret;
}

int eng_bridge_run(struct eng *e)
{
	struct eng_bridge *r = e->bridge;
	int ret = pthread_create(&r->thread, NULL, bridge_main, r);

	if (ret)
		return -ret;
	r->up = true;
	return 0;
}

void eng_bridge_stop(struct eng *e, struct ring *from)
{
	struct eng_bridge *r = e->bridge;

	if (!r || !r->up)
		return;
	eng_mail_stop(from, &r->ring);
	ring_submit(from);
	pthread_join(r->thread, NULL);
	r->up = false;
}

void eng_bridge_free(struct eng *e)
{
	struct eng_bridge *r = e->bridge;

	if (!r)
		return;
	eng_mail_discard(&r->ring);
	ring_exit(&r->ring);
	rtable_exit(&r->chans);
	rtable_exit(&r->pres);
	json_parser_free(r->json);
	nodes_exit(r);
	eng_mail_exit(&r->mail);
	pthread_mutex_destroy(&r->lock);
	free(r);
	e->bridge = NULL;
}

struct ring *eng_bridge_ring(const struct eng *e)
{
	return &e->bridge->ring;
}
