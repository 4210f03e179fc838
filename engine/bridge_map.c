/* SPDX-License-Identifier: MIT */
/*
 * bridge_map.c: routing by hash slot and the cluster's slot map, on the
 * bridge thread. One Redis serves every slot as node 0; on a cluster a
 * third link reads CLUSTER SLOTS from the seeds, then the masters, and a
 * node (a pair of links) is added for every master and replica it names.
 */
#include "bridge_int.h"

int bridge__node_for(const struct eng_bridge *r, uint16_t slot)
{
	return r->map[slot] == ENG_SLOT_NONE ? -1 : r->map[slot];
}

int bridge__replica_for(const struct eng_bridge *r, uint16_t slot)
{
	return r->rmap[slot] == ENG_SLOT_NONE ? -1 : r->rmap[slot];
}

/* The link of @role to the master of @slot, or NULL. */
static struct eng_resp *link_for(struct eng_bridge *r, uint16_t slot,
				 int role)
{
	int n = bridge__node_for(r, slot);

	return n < 0 ? NULL : &r->nodes[n].c[role];
}

bool bridge__ready_for(struct eng_bridge *r, uint16_t slot, int role)
{
	struct eng_resp *l = link_for(r, slot, role);

	return l && eng_resp_ready(l);
}

int bridge__node_add(struct eng_bridge *r, const struct eng_cluster_addr *a)
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
	if (bridge__link_init(r, &n->c[R_SUB], "subscriber", n->addr.host,
			      n->addr.port, 0, 2 * i + R_SUB,
			      &bridge__link_ops) < 0)
		return -1;
	if (bridge__link_init(r, &n->c[R_PUB], "publisher", n->addr.host,
			      n->addr.port, 0, 2 * i + R_PUB,
			      &bridge__link_ops) < 0) {
		eng_resp_exit(&n->c[R_SUB]);
		return -1;
	}
	r->nnodes++;
	eng_resp_poll(&n->c[R_SUB], now_ms());
	eng_resp_poll(&n->c[R_PUB], now_ms());
	return (int)i;
}

void bridge__map_set(struct eng_bridge *r, uint16_t slot, int node)
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
	/* bridge__flush_interest() moves them */
	bridge__mark_all(&r->chans, true);
}

void bridge__map_ask(struct eng_bridge *r)
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
	int n = a ? bridge__node_add(f->r, a) : -1;
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
		bridge__set_reason(r, "redis cluster: %s%s", err, "");
		bridge__update_health(r);
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
		/* bridge__flush_interest() moves them */
		bridge__mark_all(&r->chans, true);
		if (r->fills_waiting)
			bridge__send_fills(r);
	}
	bridge__update_health(r);
}

static void map_ready(struct eng_resp *l, void *arg)
{
	(void)l;
	bridge__map_ask(arg);
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
		bridge__set_reason(r, "%s%s", why, "");
	r->map_at = (r->map_at + 1) % n;
	a = r->map_at < r->nseeds ? &r->seeds[r->map_at] :
	    &r->nodes[r->map_at - r->nseeds].addr;
	l->cfg.host = a->host;		/* both outlive the link */
	l->cfg.port = a->port;
	bridge__update_health(r);
}

const struct eng_resp_ops bridge__map_ops = {
	.ready = map_ready,
	.reply = map_reply,
	.down = map_down,
	.refused = bridge__link_refused,
	.loading = bridge__link_loading,
};
