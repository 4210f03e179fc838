/* SPDX-License-Identifier: MIT */
/*
 * bridge_presence.c: this node's presence in Redis, on the bridge thread:
 * users' counts as their owner shards report them, written a batch per
 * EVAL; the heartbeat that keeps this node alive; its leaving at a clean
 * stop.
 */
#include "bridge_int.h"

/* Sends a presence request of the bridge's own (no shard waits for it). */
static void own_request(struct eng_bridge *r, uint8_t op, int argc,
			const char **argv, const size_t *lens)
{
	struct eng_rreq *p = eng_rreq_new(op, argc, argv, lens);

	if (p) {
		p->hslot = r->pres_slot;
		bridge__on_request_mail(r, p);
	}
}

void bridge__on_presence_mail(struct eng_bridge *r, struct eng_rpres *m)
{
	struct rchan *u = bridge__rchan_get(&r->pres, m->uid, m->len);

	if (u) {
		u->conns = m->conns;
		free(u->apps);
		u->apps = strdup(m->apps);
		bridge__mark_dirty(&r->pres, u);
	}
	eng_free(m);
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

void bridge__flush_presence(struct eng_bridge *r)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	const char *argv[4 + 4 + R_BATCH * 3];
	size_t lens[4 + 4 + R_BATCH * 3];
	char counts[R_BATCH][12], nc[24], nu[24];
	struct rtable *t = &r->pres;
	size_t i = 0;

	if (!bridge__ready_for(r, r->pres_slot, R_PUB))
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
			bridge__rchan_free(t, u);
	}
	t->ndirty = 0;
}

void bridge__beat(struct eng_bridge *r)
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

void bridge__leave(struct eng_bridge *r)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	const char *argv[6] = { "EVAL", eng_lua_leave, "1", r->pkeys, r->pkeys,
				cfg->node_id };
	size_t lens[6] = { 4, strlen(eng_lua_leave), 1, r->pkeys_len,
			   r->pkeys_len, strlen(cfg->node_id) };

	if (bridge__ready_for(r, r->pres_slot, R_PUB))
		own_request(r, ENG_RQ_QUIET, 6, argv, lens);
}
