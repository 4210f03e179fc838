/* SPDX-License-Identifier: MIT */
/*
 * bridge_pusher.c: the scripts of Pusher presence across nodes with one
 * Redis (pusher_presence.c asks them through rreq.c). Each runs whole in
 * Redis, so the one that sees a user's first connection in a channel, on
 * any node, is the one that publishes member_added, and the one that sees
 * its last go publishes member_removed: two nodes racing cannot both. A
 * node that dies loses its members with its heartbeat key (LUA_REAP in
 * bridge_presence.c publishes their member_removed).
 */
#include "bridge_int.h"

#define STR_(x)	#x
#define STR(x)	STR_(x)

/*
 * Keys, with P the presence prefix and R a channel's Redis channel:
 * P pq:NODE (R "\0" uid -> its connections on NODE), P pt:R (uid -> its
 * connections on every node), P pm:R (uid -> "ID\0STR\0INFO": the JSON of
 * its user_id, that unescaped, its user_info's JSON or ""), P pr:R (uid -> the
 * member_removed event published when it goes).
 */

/*
 * A node with no key yet gets one, "new", which its beat takes as not
 * alive before (eng_lua_beat), so that what it had is written again.
 * ARGV: prefix, node, R, uid, member ("ID\0STR\0INFO"), member_added (the
 * event as published, skipping the joining connection), member_removed.
 * Returns {1 first connection | 0 | -1 channel full, every member's
 * "ID\0STR\0INFO" joined by "\0"}.
 */
const char eng_lua_pjoin[] =
	"local p, node, rch, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
	"local pm = p .. 'pm:' .. rch\n"
	"if redis.call('HEXISTS', pm, u) == 0 and\n"
	"   redis.call('HLEN', pm) >= 100 then\n"
	"  return {-1, ''}\n"
	"end\n"
	/* a node known before its first beat, so that its death is seen */
	"local nk = p .. 'node:' .. node\n"
	"if redis.call('EXISTS', nk) == 0 then\n"
	"  redis.call('SET', nk, 'new', 'EX', " STR(R_NODE_TTL) ")\n"
	"end\n"
	"redis.call('SADD', p .. 'nodes', node)\n"
	"redis.call('HINCRBY', p .. 'pq:' .. node, rch .. '\\0' .. u, 1)\n"
	"local first = 0\n"
	"if redis.call('HINCRBY', p .. 'pt:' .. rch, u, 1) == 1 then\n"
	"  first = 1\n"
	"  redis.call('HSET', pm, u, ARGV[5])\n"
	"  redis.call('HSET', p .. 'pr:' .. rch, u, ARGV[7])\n"
	"  redis.call('PUBLISH', rch, ARGV[6])\n"
	"end\n"
	"return {first, table.concat(redis.call('HVALS', pm), '\\0')}\n";
const size_t eng_lua_pjoin_len = sizeof(eng_lua_pjoin) - 1;

/*
 * ARGV: prefix, node, R, uid. Returns {1 when it was the user's last
 * connection (member_removed published), else 0, ""}. A count already
 * gone (this node was reaped while cut off) changes nothing more.
 */
const char eng_lua_pleave[] =
	"local p, node, rch, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
	"local q, f = p .. 'pq:' .. node, rch .. '\\0' .. u\n"
	"local n = tonumber(redis.call('HINCRBY', q, f, -1))\n"
	"if n <= 0 then redis.call('HDEL', q, f) end\n"
	"if n < 0 then return {0, ''} end\n"
	"local pt = p .. 'pt:' .. rch\n"
	"if tonumber(redis.call('HINCRBY', pt, u, -1)) > 0 then\n"
	"  return {0, ''}\n"
	"end\n"
	"redis.call('HDEL', pt, u)\n"
	"redis.call('HDEL', p .. 'pm:' .. rch, u)\n"
	"local ev = redis.call('HGET', p .. 'pr:' .. rch, u)\n"
	"redis.call('HDEL', p .. 'pr:' .. rch, u)\n"
	"if ev then redis.call('PUBLISH', rch, ev) end\n"
	"return {1, ''}\n";
const size_t eng_lua_pleave_len = sizeof(eng_lua_pleave) - 1;
