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
 * that serves every slot; what does differ is chosen once, at start-up
 * (struct bridge_mode).
 *
 * Each of the bridge's jobs has a file (bridge_int.h, which only they
 * include, lists what they share): this one is the thread and its ring,
 * the links and their lifecycle, health and figures; bridge_req.c the
 * requests, bridge_sub.c the subscriptions, bridge_msg.c the messages,
 * bridge_hist.c and bridge_inbox.c the scripts' reads, bridge_presence.c
 * presence, bridge_map.c the slot map and bridge_table.c the tables.
 */
#include <sys/random.h>
#include <unistd.h>

#include "bridge_int.h"

void bridge__set_reason(struct eng_bridge *r, const char *fmt, const char *a,
			const char *b)
{
	pthread_mutex_lock(&r->lock);
	snprintf(r->reason, sizeof(r->reason), fmt, a, b);
	pthread_mutex_unlock(&r->lock);
}

/* Whether a link's Redis is loading its dataset. */
static bool links_loading(const struct eng_bridge *r)
{
	bool loading = r->cluster && r->mapl.loading;

	for (unsigned i = 0; i < r->nnodes; i++)
		loading |= r->nodes[i].c[R_SUB].loading ||
			   r->nodes[i].c[R_PUB].loading;
	return loading;
}

void bridge__update_health(struct eng_bridge *r)
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
			bridge__set_reason(r, "redis cluster: %s have no "
					   "master%s", what, "");
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
		bridge__mark_all(&r->chans, true);
	} else {
		if (bridge__node_for(r, r->pres_slot) == (int)(l->cfg.idx / 2))
			r->next_beat = 0;	/* the presence keys' master */
		if (r->fills_waiting)
			bridge__send_fills(r);
	}
	/* said before /healthz can say 200 */
	if (r->loading_said && !links_loading(r)) {
		r->loading_said = false;
		fprintf(stderr, "ringcast: redis: the dataset is loaded\n");
	}
	bridge__update_health(r);
}

void bridge__link_refused(struct eng_resp *l, void *arg, const char *err)
{
	struct eng_bridge *r = arg;

	fprintf(stderr, "ringcast: redis %s: %s\n", l->cfg.role, err);
	bridge__set_reason(r, "redis %s: %s", l->cfg.role, err);
}

void bridge__link_loading(struct eng_resp *l, void *arg)
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
	bridge__set_reason(r, "%s%s", "redis: loading the dataset", "");
	r->loading_said = true;
	bridge__update_health(r);
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
	bridge__set_reason(r, "%s%s", why, "");
	if (r->cluster)
		r->map_due = true;	/* a master died, maybe: where now? */
	if (l->cfg.idx % 2 == R_PUB) {
		/*
		 * Requests in flight: their fate is unknown, so they failed,
		 * with the link's reason (-ETIMEDOUT: Redis froze).
		 */
		struct eng_rreq *p;

		while ((p = bridge__fifo_pop(r, n)))
			bridge__ack_pub(r, p, err == -ETIMEDOUT ? err :
					-ECONNRESET);
	} else {
		for (size_t i = 0; i < r->chans.nbuckets; i++)
			for (struct rchan *ch = r->chans.buckets[i]; ch;
			     ch = ch->next) {
				int k = bridge__sub_at(ch, idx);

				if (k >= 0)
					bridge__sub_drop(r, ch, (unsigned)k,
							 true);
			}
	}
	bridge__update_health(r);
}

static void link_reply(struct eng_resp *l, void *arg, redisReply *rep);

const struct eng_resp_ops bridge__link_ops = {
	.ready = link_ready,
	.reply = link_reply,
	.down = link_down,
	.refused = bridge__link_refused,
	.loading = bridge__link_loading,
};


static bool str_eq(const redisReply *e, const char *lit)
{
	size_t n = strlen(lit);

	return e->type == REDIS_REPLY_STRING && e->len == n &&
	       !memcmp(e->str, lit, n);
}

/* A reply on a ready link: the publisher's in FIFO order, or a push. */
static void link_reply(struct eng_resp *l, void *arg, redisReply *rep)
{
	struct eng_bridge *r = arg;
	unsigned idx = l->cfg.idx / 2;
	const redisReply *k;

	if (l->cfg.idx % 2 == R_PUB) {
		struct eng_rreq *p = bridge__fifo_pop(r, node_of(r, l));

		if (p && !(rep->type == REDIS_REPLY_ERROR &&
			   r->mode->redirect(r, p, rep)))
			bridge__on_pub_reply(r, p, rep);
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		r->mode->sub_error(r, idx, rep);
		return;
	}
	/* Subscriber: message, subscribe and unsubscribe confirmations. */
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
		return;
	k = rep->element[0];
	if (str_eq(k, "message") || str_eq(k, "smessage")) {
		const redisReply *ch = rep->element[1];

		if (!r->mode->pass(r, rep, idx) ||
		    bridge__ho_took(r, ch, rep->element[2]))
			return;
		/*
		 * Stopping: a shard with no connection left may exit once
		 * its mail is read, and what we posted after would be left
		 * unread: nobody is left to deliver to anyway.
		 */
		if (atomic_load_explicit(&r->eng->drained,
					 memory_order_relaxed))
			return;
		if (ch->type == REDIS_REPLY_STRING && ch->len == r->ctl_len &&
		    !memcmp(ch->str, r->ctl, r->ctl_len))
			bridge__on_ctl(r, rep->element[2]);
		else
			bridge__on_message(r, ch, rep->element[2]);
	} else if (str_eq(k, "subscribe") || str_eq(k, "ssubscribe")) {
		struct rchan *ch = bridge__sub_of(r, rep->element[1]);

		if (ch)
			bridge__on_subscribed(r, ch, idx);
	} else if (str_eq(k, "sunsubscribe")) {
		struct rchan *ch = bridge__sub_of(r, rep->element[1]);

		if (ch)
			bridge__on_dropped(r, ch, idx);
	}
}

/* The mail to the bridge: R_SUBSCRIBE, R_REQUEST and R_PRESENCE. */
static void read_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_bridge *r = self;

	(void)res;
	switch (op) {
	case ENG_OP_R_SUBSCRIBE:
		bridge__on_sub_mail(r, ptr);
		break;
	case ENG_OP_R_REQUEST:
		bridge__on_request_mail(r, ptr);
		break;
	case ENG_OP_R_PRESENCE:
		bridge__on_presence_mail(r, ptr);
		break;
	}
}

int bridge__link_init(struct eng_bridge *r, struct eng_resp *l,
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

	if (!r->stopping && bridge__ready_for(r, r->pres_slot, R_PUB) &&
	    now >= r->next_beat) {
		r->next_beat = now + R_BEAT_MS;
		bridge__beat(r);
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
			bridge__map_ask(r);
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
		if (idx == R_MAP_IDX)	/* only a cluster has one */
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
		bridge__leave(r);
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
		if (atomic_load_explicit(&r->ho.cmd, memory_order_relaxed) ||
		    atomic_load_explicit(&r->ho.state, memory_order_relaxed))
			bridge__ho_run(r);
		if (r->chans.ndirty)
			bridge__flush_interest(r);
		if (r->resync) {
			r->resync = false;
			bridge__mark_all(&r->pres, false);
		}
		if (r->pres.ndirty)
			bridge__flush_presence(r);
		if (r->wait_head)
			bridge__send_waiting(r);
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

/* One Redis redirects nothing: an error answers the request. */
static bool no_redirect(struct eng_bridge *r, struct eng_rreq *p,
			const redisReply *rep)
{
	(void)r;
	(void)p;
	(void)rep;
	return false;
}

/* ... nor refuses a SUBSCRIBE for a slot: an error is dropped. */
static void no_sub_error(struct eng_bridge *r, unsigned idx,
			 const redisReply *rep)
{
	(void)r;
	(void)idx;
	(void)rep;
}

/* ... and has one subscription per channel: every message goes on. */
static bool pass_all(struct eng_bridge *r, const redisReply *rep,
		     unsigned idx)
{
	(void)r;
	(void)rep;
	(void)idx;
	return true;
}

/* One Redis, then a cluster (r->cluster), in struct bridge_mode's order. */
static const struct bridge_mode modes[2] = {
	{ no_redirect, no_sub_error, pass_all,
	  "SUBSCRIBE", "UNSUBSCRIBE", R_BATCH, &eng_rreq_single },
	{ bridge__redirect, bridge__on_sub_error, bridge__pass,
	  "SSUBSCRIBE", "SUNSUBSCRIBE", 1, &eng_rreq_cluster },
};

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
	r->mode = &modes[r->cluster];
	e->redis = r->mode->req;	/* the shards' requests say it too */
	r->lua = (struct eng_rreq_lua){
		eng_lua_hpub, eng_lua_hread, eng_lua_ikeep, eng_lua_iread,
		eng_lua_iack, eng_lua_query, eng_lua_online,
		eng_lua_hpub_len, eng_lua_hread_len, eng_lua_ikeep_len,
		eng_lua_iread_len, eng_lua_iack_len, eng_lua_query_len,
		eng_lua_online_len,
		{ eng_lua_pjoin, eng_lua_pleave, eng_lua_pcount,
		  eng_lua_pchans, eng_lua_pusers, eng_lua_pinfo,
		  eng_lua_pslot, eng_lua_pdead, eng_lua_preap },
	};
	e->lua = &r->lua;
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
	r->pkeys_len = eng_rreq_keys(e, r->pkeys, sizeof(r->pkeys),
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
	if (bridge__rtable_init(&r->chans) < 0 ||
	    bridge__rtable_init(&r->pres) < 0)
		goto err;
	r->json = json_parser_new(e->cfg.max_message);
	if (!r->json)
		goto err;
	/* one Redis has a map too: every slot on node 0, no replica */
	r->map = malloc(ENG_SLOTS * sizeof(*r->map));
	r->rmap = malloc(ENG_SLOTS * sizeof(*r->rmap));
	if (!r->map || !r->rmap)
		goto err;
	for (unsigned s = 0; s < ENG_SLOTS; s++) {
		r->map[s] = r->cluster ? ENG_SLOT_NONE : 0;
		r->rmap[s] = ENG_SLOT_NONE;
	}
	if (r->cluster) {
		int n = eng_cluster_parse_seeds(e->cfg.redis_seeds, r->seeds,
						R_SEEDS_MAX);

		/* main.c checked the list: this cannot fail but for memory */
		r->map_next = malloc(ENG_SLOTS * sizeof(*r->map_next));
		r->rmap_next = malloc(ENG_SLOTS * sizeof(*r->rmap_next));
		if (n <= 0 || !r->map_next || !r->rmap_next)
			goto err;
		r->nseeds = (unsigned)n;
		r->uncovered = ENG_SLOTS;
		if (bridge__link_init(r, &r->mapl, "cluster", r->seeds[0].host,
				      r->seeds[0].port, 0, R_MAP_IDX,
				      &bridge__map_ops) < 0)
			goto err;
	} else {
		struct rnode *n = &r->nodes[0];

		snprintf(n->addr.host, sizeof(n->addr.host), "%s",
			 e->cfg.redis_host);
		n->addr.port = e->cfg.redis_port;
		r->nnodes = 1;
		/* pub/sub ignores the db: only the publisher selects */
		if (bridge__link_init(r, &n->c[R_SUB], "subscriber",
				      n->addr.host, n->addr.port, 0, R_SUB,
				      &bridge__link_ops) < 0 ||
		    bridge__link_init(r, &n->c[R_PUB], "publisher",
				      n->addr.host, n->addr.port,
				      e->cfg.redis_db, R_PUB,
				      &bridge__link_ops) < 0)
			goto err;
	}
	/* Broadcasts and kicks: every node wants them, always. */
	all = bridge__rchan_get(&r->chans, r->all, r->all_len);
	if (!all)
		goto err;
	all->desired = 1;
	all = bridge__rchan_get(&r->chans, r->ctl, r->ctl_len);
	if (!all)
		goto err;
	all->desired = 1;
	ret = ring_init(&r->ring, 256, 0, 0);
	if (ret < 0)
		goto err;
	eng_mail_init(&r->mail, e, &r->ring, ENG_BRIDGE, r, &r->stopping,
		      &r->mail_errors);
	eng_mail_bridge(&r->ring, read_mail);
	e->bridge = r;
	return 0;
err:
	json_parser_free(r->json);
	bridge__rtable_exit(&r->chans);
	bridge__rtable_exit(&r->pres);
	nodes_exit(r);
	free(r);
	return ret;
}

int eng_bridge_run(struct eng *e)
{
	struct eng_bridge *r = e->bridge;
	int ret;

	if (r->up)	/* a live hand-over with Redis started it early */
		return 0;
	ret = pthread_create(&r->thread, NULL, bridge_main, r);
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
	eng_mail_bridge(NULL, NULL);
	bridge__ho_free(r);
	ring_exit(&r->ring);
	bridge__rtable_exit(&r->chans);
	bridge__rtable_exit(&r->pres);
	json_parser_free(r->json);
	nodes_exit(r);
	eng_mail_exit(&r->mail);
	pthread_mutex_destroy(&r->lock);
	free(r);
	e->bridge = NULL;
}
