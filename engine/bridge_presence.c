/* SPDX-License-Identifier: MIT */
/*
 * bridge_presence.c: presence in Redis: its scripts (a user's presence
 * and who is online are the shards' queries, rreq.c), and on the bridge
 * thread this node's: users' counts as their owner shards report them,
 * written a batch per EVAL; the heartbeat that keeps this node alive; its
 * leaving at a clean stop.
 */
#include "bridge_int.h"

/*
 * Presence keys, with P the prefix: P node:ID (a live node: "conns users",
 * 5 s expiry, renewed every second), P nodes (node ids), P nu:ID (the
 * users on node ID), P pres:UID (node -> "conns app,app"), P online
 * (users -> number of nodes they are on). Scripts ignore nodes whose key
 * expired and reap them, so a dead node stops counting within about six
 * seconds; a dead node's Pusher presence members go with it, their
 * member_removed published by the script that reaps them (bridge_pusher.c;
 * on a cluster its slots go to P pdead, reaped slot by slot there).
 */

/* Drops every trace of nodes whose key expired. */
#define LUA_REAP R_LUA_PUSHER \
	"local function reap(p)\n" \
	"  for _, id in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do\n" \
	"    if redis.call('EXISTS', p .. 'node:' .. id) == 0 then\n" \
	"      local nu = p .. 'nu:' .. id\n" \
	"      for _, u in ipairs(redis.call('SMEMBERS', nu)) do\n" \
	"        redis.call('HDEL', p .. 'pres:' .. u, id)\n" \
	"        if tonumber(redis.call('ZINCRBY', p .. 'online', -1, u))" \
	" <= 0 then\n" \
	"          redis.call('ZREM', p .. 'online', u)\n" \
	"          outbox(p .. 'wh', 'user_offline\\0\\0\\0' .. u .. '\\0')\n" \
	"        end\n" \
	"      end\n" \
	"      redis.call('DEL', nu)\n" \
	"      local q = p .. 'pq:' .. id\n" \
	"      local h = redis.call('HGETALL', q)\n" \
	"      for i = 1, #h, 2 do\n" \
	"        local rch, u = string.match(h[i], '^([^%z]*)%z(.*)$')\n" \
	"        local pt = p .. 'pt:' .. rch\n" \
	"        if tonumber(redis.call('HINCRBY', pt, u, -h[i + 1]))" \
	" <= 0 then\n" \
	"          gone(p, rch, u, p .. 'wh', 'PUBLISH')\n" \
	"        end\n" \
	"      end\n" \
	"      redis.call('DEL', q)\n" \
	"      local cq = p .. 'cq:' .. id\n" \
	"      h = redis.call('HGETALL', cq)\n" \
	"      for i = 1, #h, 2 do\n" \
	"        local app, ch = string.match(h[i], '^([^%z]+)%z(.*)$')\n" \
	"        if app then\n" \
	"          local ct = p .. 'ct:' .. app\n" \
	"          if tonumber(redis.call('HINCRBY', ct, ch, -h[i + 1]))" \
	" <= 0 then\n" \
	"            redis.call('HDEL', ct, ch)\n" \
	"            outbox(p .. 'wh', 'channel_vacated\\0' .. h[i] .. " \
	"'\\0\\0')\n" \
	"          end\n" \
	"        end\n" \
	"      end\n" \
	"      redis.call('DEL', cq)\n" \
	"      local ps = p .. 'pslots:' .. id\n" \
	"      for _, r in ipairs(redis.call('SMEMBERS', ps)) do\n" \
	"        redis.call('SADD', p .. 'pdead', id .. '\\0' .. r)\n" \
	"      end\n" \
	"      redis.call('DEL', ps)\n" \
	"      redis.call('SREM', p .. 'nodes', id)\n" \
	"    end\n" \
	"  end\n" \
	"end\n"

/*
 * ARGV: prefix, node, ttl, conns, users. Returns 1 if we were alive (a
 * key "new", made by a Pusher join before our first beat, is not).
 */
const char eng_lua_beat[] = LUA_REAP
	"local p, node = ARGV[1], ARGV[2]\n"
	"local v = redis.call('GET', p .. 'node:' .. node)\n"
	"local was = (v and v ~= 'new') and 1 or 0\n"
	"redis.call('SET', p .. 'node:' .. node, ARGV[4] .. ' ' .. ARGV[5],"
	" 'EX', tonumber(ARGV[3]))\n"
	"redis.call('SADD', p .. 'nodes', node)\n"
	"reap(p)\n"
	"return was\n";

/*
 * ARGV: prefix, node, node's conns, node's users, then (uid, conns, apps)
 * triples. The node's own counts are refreshed too, keeping the key's
 * expiry, so /online follows changes without waiting for a beat.
 */
const char eng_lua_presence[] = R_LUA_PUSHER
	"local p, node = ARGV[1], ARGV[2]\n"
	"local nu = p .. 'nu:' .. node\n"
	"if redis.call('EXISTS', p .. 'node:' .. node) == 1 then\n"
	"  redis.call('SET', p .. 'node:' .. node, ARGV[3] .. ' ' .. ARGV[4],"
	" 'KEEPTTL')\n"
	"end\n"
	"for i = 5, #ARGV, 3 do\n"
	"  local u, n = ARGV[i], tonumber(ARGV[i + 1])\n"
	"  if n > 0 then\n"
	"    redis.call('HSET', p .. 'pres:' .. u, node, n .. ' ' .. ARGV[i + 2])\n"
	"    if redis.call('SADD', nu, u) == 1 and\n"
	"       tonumber(redis.call('ZINCRBY', p .. 'online', 1, u)) == 1 then\n"
	"      outbox(p .. 'wh:' .. node, 'user_online\\0\\0\\0' .. u .. '\\0')\n"
	"    end\n"
	"  else\n"
	"    redis.call('HDEL', p .. 'pres:' .. u, node)\n"
	"    if redis.call('SREM', nu, u) == 1 and\n"
	"       tonumber(redis.call('ZINCRBY', p .. 'online', -1, u)) <= 0 then\n"
	"      redis.call('ZREM', p .. 'online', u)\n"
	"      outbox(p .. 'wh:' .. node, 'user_offline\\0\\0\\0' .. u .. '\\0')\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return 0\n";

/* ARGV: prefix, node. Our own traces, on a clean stop. */
const char eng_lua_leave[] =
	"redis.call('DEL', ARGV[1] .. 'node:' .. ARGV[2])\n" LUA_REAP
	"reap(ARGV[1])\n"
	"return 0\n";

/* ARGV: prefix, uid. Returns {connections, "app,app"} on live nodes. */
const char eng_lua_query[] =
	"local p = ARGV[1]\n"
	"local h = redis.call('HGETALL', p .. 'pres:' .. ARGV[2])\n"
	"local n, seen, apps = 0, {}, {}\n"
	"for i = 1, #h, 2 do\n"
	"  if redis.call('EXISTS', p .. 'node:' .. h[i]) == 1 then\n"
	"    local c, a = string.match(h[i + 1], '^(%d+) ?(.*)$')\n"
	"    n = n + tonumber(c)\n"
	"    for app in string.gmatch(a, '[^,]+') do\n"
	"      if not seen[app] then seen[app] = true; apps[#apps + 1] = app end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"table.sort(apps)\n"
	"return {n, table.concat(apps, ',')}\n";
const size_t eng_lua_query_len = sizeof(eng_lua_query) - 1;

/* ARGV: prefix. Returns {users, connections, nodes} of live nodes. */
const char eng_lua_online[] = LUA_REAP
	"local p = ARGV[1]\n"
	"reap(p)\n"
	"local c, nodes = 0, 0\n"
	"for _, id in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do\n"
	"  local v = redis.call('GET', p .. 'node:' .. id)\n"
	"  if v then nodes = nodes + 1; c = c + (tonumber(string.match(v, '^%d+')) or 0) end\n"
	"end\n"
	"return {redis.call('ZCARD', p .. 'online'), c, nodes}\n";
const size_t eng_lua_online_len = sizeof(eng_lua_online) - 1;

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
