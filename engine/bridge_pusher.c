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

/*
 * Keys, with P the presence prefix and R a channel's Redis channel:
 * P pq:NODE (R "\0" uid -> its connections on NODE), P pt:R (uid -> its
 * connections on every node), P pm:R (uid -> "ID\0STR\0INFO": the JSON of
 * its user_id, that unescaped, its user_info's JSON or ""), P pr:R (uid -> the
 * member_removed event published when it goes), P pn (R -> "APP\0CH":
 * its app's id and Pusher's name), P pu:APP (CH -> its users). Counts:
 * P cq:NODE ("APP\0CH" -> NODE's subscriptions; "" a marker that it was
 * not reaped), P ct:APP (CH -> subscriptions on every live node). P wh
 * and P wh:NODE: webhook records (R_LUA_PUSHER) the next count script
 * of NODE (or of any node, for wh) takes.
 */

/*
 * ARGV[1] and ARGV[2], prefix and node, as p and node; a node with no
 * key yet gets one, "new", which its beat takes as not alive before
 * (eng_lua_beat), so that what it had is written again.
 */
#define LUA_KNOWN \
	"local p, node = ARGV[1], ARGV[2]\n" \
	"local nk = p .. 'node:' .. node\n" \
	"if redis.call('EXISTS', nk) == 0 then\n" \
	"  redis.call('SET', nk, 'new', 'EX', " R_STR(R_NODE_TTL) ")\n" \
	"end\n" \
	"redis.call('SADD', p .. 'nodes', node)\n"

/*
 * A node with no key yet gets one, "new", which its beat takes as not
 * alive before (eng_lua_beat), so that what it had is written again.
 * ARGV: prefix, node, R, uid, member ("ID\0STR\0INFO"), member_added (the
 * event as published, skipping the joining connection), member_removed,
 * "APP\0CH" (empty for a watchlist's channel: no webhook, no user_count),
 * then (eng_rreq_pusher) the publish command and "1" with one Redis ("0"
 * on a cluster: the keys are R's slot's, the node's key and the webhook
 * records are not there; the caller sends the webhook). Returns {1
 * first connection | 0 | -1 channel full, every member's "ID\0STR\0INFO"
 * joined by "\0"}.
 */
const char eng_lua_pjoin[] = R_LUA_PUSHER
	"local p, node, rch, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
	"local pub, one = ARGV[9], ARGV[10] == '1'\n"
	"local pm = p .. 'pm:' .. rch\n"
	"if redis.call('HEXISTS', pm, u) == 0 and\n"
	"   redis.call('HLEN', pm) >= 100 then\n"
	"  return {-1, ''}\n"
	"end\n"
	/* a node known before its first beat, so that its death is seen */
	"local nk = p .. 'node:' .. node\n"
	"if one and redis.call('EXISTS', nk) == 0 then\n"
	"  redis.call('SET', nk, 'new', 'EX', " R_STR(R_NODE_TTL) ")\n"
	"end\n"
	"if one then redis.call('SADD', p .. 'nodes', node) end\n"
	"redis.call('HINCRBY', p .. 'pq:' .. node, rch .. '\\0' .. u, 1)\n"
	"local first = 0\n"
	"if redis.call('HINCRBY', p .. 'pt:' .. rch, u, 1) == 1 then\n"
	"  first = 1\n"
	"  redis.call('HSET', pm, u, ARGV[5])\n"
	"  redis.call('HSET', p .. 'pr:' .. rch, u, ARGV[7])\n"
	"  redis.call(pub, rch, ARGV[6])\n"
	"  local pn = ARGV[8]\n"
	/* none for a watchlist's channel: neither counted nor hooked */
	"  if pn ~= '' then\n"
	"    local app, ch = string.match(pn, '^([^%z]*)%z(.*)$')\n"
	"    redis.call('HSET', p .. 'pn', rch, pn)\n"
	"    redis.call('HINCRBY', p .. 'pu:' .. app, ch, 1)\n"
	"    outbox(one and p .. 'wh:' .. node or '',\n"
	"           'member_added\\0' .. pn .. '\\0' ..\n"
	"           u .. '\\0')\n"
	"  end\n"
	"end\n"
	"return {first, table.concat(redis.call('HVALS', pm), '\\0')}\n";

/*
 * ARGV: prefix, node, R, uid, then as eng_lua_pjoin's the publish
 * command and "1" with one Redis. Returns {1 when it was the user's last
 * connection (member_removed published), else 0, "" or on a cluster
 * "APP\0CH\0UID" for the caller's webhook}. A count already
 * gone (this node was reaped while cut off) changes nothing more.
 */
const char eng_lua_pleave[] = R_LUA_PUSHER
	"local p, node, rch, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
	"local q, f = p .. 'pq:' .. node, rch .. '\\0' .. u\n"
	"local n = tonumber(redis.call('HINCRBY', q, f, -1))\n"
	"if n <= 0 then redis.call('HDEL', q, f) end\n"
	"if n < 0 then return {0, ''} end\n"
	"local pt = p .. 'pt:' .. rch\n"
	"if tonumber(redis.call('HINCRBY', pt, u, -1)) > 0 then\n"
	"  return {0, ''}\n"
	"end\n"
	"local wk = ARGV[6] == '1' and p .. 'wh:' .. node or ''\n"
	"local pn = gone(p, rch, u, wk, ARGV[5])\n"
	"if wk ~= '' or pn == '' then return {1, ''} end\n"
	"return {1, pn .. '\\0' .. u}\n";

/*
 * This node's subscription counts, absolute (a retry or a repeat
 * changes nothing), and the webhook records waiting. ARGV: prefix,
 * node, then pairs "APP\0CH", count. Each total that moves gives a
 * subscription_count record, and channel_occupied or channel_vacated
 * when it leaves or reaches 0: the script that sees it is the only one
 * that can. Returns {1 when this node's counts were gone (reaped while
 * cut off: the caller writes them all again), else 0, the records
 * (R_LUA_PUSHER's, from wh:NODE and wh too, at most 200 of each) joined
 * by "\0"}.
 */
const char eng_lua_pcount[] = LUA_KNOWN
	"local q = p .. 'cq:' .. node\n"
	"local lost = redis.call('HSETNX', q, '', '1')\n"
	"local out = {}\n"
	"for i = 3, #ARGV - 1, 2 do\n"
	"  local f, n = ARGV[i], tonumber(ARGV[i + 1])\n"
	"  local old = tonumber(redis.call('HGET', q, f) or '0')\n"
	"  local app, ch = string.match(f, '^([^%z]+)%z(.*)$')\n"
	"  if app and n ~= old then\n"
	"    if n > 0 then redis.call('HSET', q, f, n)\n"
	"    else redis.call('HDEL', q, f) end\n"
	"    local ct = p .. 'ct:' .. app\n"
	"    local t = tonumber(redis.call('HINCRBY', ct, ch, n - old))\n"
	"    local was = t - (n - old)\n"
	"    if t <= 0 then redis.call('HDEL', ct, ch); t = 0 end\n"
	"    if was <= 0 and t > 0 then\n"
	"      out[#out + 1] = 'channel_occupied\\0' .. f .. '\\0\\0'\n"
	"    elseif was > 0 and t <= 0 then\n"
	"      out[#out + 1] = 'channel_vacated\\0' .. f .. '\\0\\0'\n"
	"    end\n"
	"    out[#out + 1] = 'subscription_count\\0' .. f .. '\\0\\0' .. t\n"
	"  end\n"
	"end\n"
	"for _, k in ipairs({p .. 'wh:' .. node, p .. 'wh'}) do\n"
	"  local w = redis.call('LRANGE', k, 0, 199)\n"
	"  if #w > 0 then redis.call('LTRIM', k, #w, -1) end\n"
	"  for _, r in ipairs(w) do out[#out + 1] = r end\n"
	"end\n"
	"return {lost, table.concat(out, '\\0')}\n";

/*
 * GET channels (ARGV: prefix, app, "0", the name's prefix) and GET
 * channels/{name} (..., "1", the name): {0, "CH\0subscriptions\0users"
 * for each occupied channel (the one asked, occupied or not), joined by
 * "\0"}, counted on every live node.
 */
const char eng_lua_pchans[] =
	"local p, app, one, s = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
	"local ct, pu = p .. 'ct:' .. app, p .. 'pu:' .. app\n"
	"local out = {}\n"
	"if one == '1' then\n"
	"  out = {s, redis.call('HGET', ct, s) or '0',\n"
	"         redis.call('HGET', pu, s) or '0'}\n"
	"else\n"
	"  local h = redis.call('HGETALL', ct)\n"
	"  for i = 1, #h, 2 do\n"
	"    if string.sub(h[i], 1, #s) == s then\n"
	"      out[#out + 1] = h[i]\n"
	"      out[#out + 1] = h[i + 1]\n"
	"      out[#out + 1] = redis.call('HGET', pu, h[i]) or '0'\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return {0, table.concat(out, '\\0')}\n";

/* ARGV: prefix, R. Returns {0, every member's "ID\0STR\0INFO" joined}. */
const char eng_lua_pusers[] =
	"return {0, table.concat(redis.call('HVALS', ARGV[1] .. 'pm:' .."
	" ARGV[2]), '\\0')}\n";

/*
 * A publish's info, every live node's counts, as the answer's JSON.
 * ARGV: prefix, app, "e" (an event: {"channels":{"CH":{...},...}}) or
 * "b" (a batch: {"batch":[{...},...]}), then each channel's flag (N
 * nothing, S subscription_count, U user_count, B both; user_count for
 * presence channels only) and name. Returns {0, the JSON}.
 */
const char eng_lua_pinfo[] =
	"local p, app, form = ARGV[1], ARGV[2], ARGV[3]\n"
	"local ct, pu = p .. 'ct:' .. app, p .. 'pu:' .. app\n"
	"local out = {}\n"
	"for i = 4, #ARGV do\n"
	"  local f, ch = string.sub(ARGV[i], 1, 1), string.sub(ARGV[i], 2)\n"
	"  local o = {}\n"
	"  if (f == 'U' or f == 'B') and string.sub(ch, 1, 9) == 'presence-'"
	" then\n"
	"    o[#o + 1] = '\"user_count\":' .. (redis.call('HGET', pu, ch) or"
	" '0')\n"
	"  end\n"
	"  if f == 'S' or f == 'B' then\n"
	"    o[#o + 1] = '\"subscription_count\":' .."
	" (redis.call('HGET', ct, ch) or '0')\n"
	"  end\n"
	"  local v = '{' .. table.concat(o, ',') .. '}'\n"
	"  if form == 'e' then\n"
	"    v = '\"' .. string.gsub(ch, '[\"\\\\]', '\\\\%0') .. '\":' .. v\n"
	"  end\n"
	"  out[#out + 1] = v\n"
	"end\n"
	"if form == 'e' then\n"
	"  return {0, '{\"channels\":{' .. table.concat(out, ',') .. '}}\\n'}\n"
	"end\n"
	"return {0, '{\"batch\":[' .. table.concat(out, ',') .. ']}\\n'}\n";

/*
 * On a Redis Cluster a channel's keys (pq:NODE, pt:R, pm:R, pr:R, pn,
 * pu:APP) are its slot's, under the prefix eng_rreq_keys gives for R, and
 * a node's death is seen in the presence slot: P pslots:NODE holds, for
 * each slot NODE has members in, one R of that slot (eng_lua_pslot, sent
 * with the slot's first join); when NODE's key expires, LUA_REAP moves
 * them to P pdead as "NODE\0R", and every node's shard 0 takes a few a
 * second (eng_lua_pdead), runs eng_lua_preap on each R's slot, and
 * crosses the entry off. A slot reaped twice changes nothing the second
 * time: its pq:NODE is gone.
 */

/* ARGV: prefix (the presence slot's), node, R. */
const char eng_lua_pslot[] = LUA_KNOWN
	"return {redis.call('SADD', p .. 'pslots:' .. node, ARGV[3]), ''}\n";

/*
 * ARGV: prefix (the presence slot's), how many to list, then entries
 * reaped. Returns {0, at most that many "NODE\0R" left, joined by "\0"}.
 */
const char eng_lua_pdead[] =
	"local k = ARGV[1] .. 'pdead'\n"
	"for i = 3, #ARGV do redis.call('SREM', k, ARGV[i]) end\n"
	"local n = tonumber(ARGV[2])\n"
	"if n <= 0 then return {0, ''} end\n"
	"return {0, table.concat(redis.call('SRANDMEMBER', k, n), '\\0')}\n";

/*
 * ARGV: prefix (R's slot's), dead node, R, then (eng_rreq_pusher) the
 * publish command and "0". Every member of the node's in R's slot goes,
 * member_removed published for each user that had no other node. Returns
 * {0, "APP\0CH\0UID" of each for the caller's webhooks, joined by
 * "\0"}.
 */
const char eng_lua_preap[] = R_LUA_PUSHER
	"local p, node, pub = ARGV[1], ARGV[2], ARGV[4]\n"
	"local q = p .. 'pq:' .. node\n"
	"local h = redis.call('HGETALL', q)\n"
	"local out = {}\n"
	"for i = 1, #h, 2 do\n"
	"  local rch, u = string.match(h[i], '^([^%z]*)%z(.*)$')\n"
	"  if rch and tonumber(redis.call('HINCRBY', p .. 'pt:' .. rch, u,"
	" -h[i + 1])) <= 0 then\n"
	"    local pn = gone(p, rch, u, '', pub)\n"
	"    if pn ~= '' then out[#out + 1] = pn .. '\\0' .. u end\n"
	"  end\n"
	"end\n"
	"redis.call('DEL', q)\n"
	"return {0, table.concat(out, '\\0')}\n";
