/* SPDX-License-Identifier: MIT */
/*
 * bridge_inbox.c: users' inboxes in Redis: the scripts that keep, read
 * and ack (the shards send them, rreq.c), and on the bridge thread their
 * answers: an ack's counts, a listing's ids, a read's messages into push
 * frames.
 */
#include "bridge_int.h"

/*
 * Users' inboxes (docs/PROTOCOL.md, "Offline inbox"). Keys, with U the
 * user id: P inboxm:U (a hash: "epoch", "last", the newest N, and
 * "evicted") and P inbox:U (a stream of the unacked, entry ids N-0,
 * fields t, the time in ms, and d). Both expire two ttl after the last
 * kept push, as the embedded inbox does.
 *
 * Keep. ARGV: prefix, uid, message, max, ttl ms, a fresh epoch, the Redis
 * channel (P user:U) and the command that publishes on it. Past max the
 * oldest go (counted in evicted). The message goes out as "\xfe" EPOCH N
 * ":" MESSAGE. Returns {receivers, N, epoch}.
 */
#define LUA_INBOX_KEYS \
	"local p, u = ARGV[1], ARGV[2]\n" \
	"local m, s = p .. 'inboxm:' .. u, p .. 'inbox:' .. u\n" \
	"local t = redis.call('TIME')\n" \
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

/* Drops the entries older than @ttl ms from the oldest end, counted. */
#define LUA_INBOX_EXPIRE \
	"local function expire(ttl)\n" \
	"  while true do\n" \
	"    local e = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)[1]\n" \
	"    if not e or tonumber(e[2][2]) >= now - ttl then return end\n" \
	"    redis.call('XDEL', s, e[1])\n" \
	"    redis.call('HINCRBY', m, 'evicted', 1)\n" \
	"  end\n" \
	"end\n"

const char eng_lua_ikeep[] = LUA_INBOX_KEYS LUA_INBOX_EXPIRE
	"local ep = redis.call('HGET', m, 'epoch')\n"
	"if not ep then\n"
	"  ep = ARGV[6]\n"
	"  redis.call('DEL', s)\n"
	"  redis.call('HSET', m, 'epoch', ep, 'last', 0, 'evicted', 0)\n"
	"end\n"
	"expire(tonumber(ARGV[5]))\n"
	"local over = redis.call('XLEN', s) - tonumber(ARGV[4]) + 1\n"
	"if over > 0 then\n"
	"  for _, e in ipairs(redis.call('XRANGE', s, '-', '+', 'COUNT', over))"
	" do\n"
	"    redis.call('XDEL', s, e[1])\n"
	"  end\n"
	"  redis.call('HINCRBY', m, 'evicted', over)\n"
	"end\n"
	"local n = redis.call('HINCRBY', m, 'last', 1)\n"
	"redis.call('XADD', s, n .. '-0', 't', now, 'd', ARGV[3])\n"
	"redis.call('PEXPIRE', s, 2 * tonumber(ARGV[5]))\n"
	"redis.call('PEXPIRE', m, 2 * tonumber(ARGV[5]))\n"
	"local r = redis.call(ARGV[8], ARGV[7],"
	" '\\254' .. ep .. n .. ':' .. ARGV[3])\n"
	"return {r, n, ep}\n";
const size_t eng_lua_ikeep_len = sizeof(eng_lua_ikeep) - 1;

/*
 * Read. ARGV: prefix, uid, ttl ms, at most this many, "1": with the
 * messages, a byte budget for them, and for a replay the N and the epoch
 * its page goes on after (an epoch not the inbox's: from its start, as
 * the inbox is a new one). Returns {epoch or nil, unread, evicted, more,
 * N, [message,] ...}, oldest first. As the history read, it reads a few
 * entries at a time and stops before the message that would pass the
 * budget (the first always goes), with more 1: the next page goes on
 * after the last N.
 */
const char eng_lua_iread[] = LUA_INBOX_KEYS LUA_INBOX_EXPIRE
	"local ep = redis.call('HGET', m, 'epoch')\n"
	"if not ep then return {false, 0, 0, 0} end\n"
	"expire(tonumber(ARGV[3]))\n"
	"local out = {ep, redis.call('XLEN', s),"
	" tonumber(redis.call('HGET', m, 'evicted')), 0}\n"
	"local left, budget, size, from = tonumber(ARGV[4]),"
	" tonumber(ARGV[6]), 0, '-'\n"
	"if ARGV[8] == ep then from = '(' .. ARGV[7] .. '-0' end\n"
	"while left > 0 do\n"
	"  local e = redis.call('XRANGE', s, from, '+', 'COUNT',"
	" math.min(left, 16))\n"
	"  if #e == 0 then return out end\n"
	"  for _, x in ipairs(e) do\n"
	"    from = '(' .. x[1]\n"
	"    if ARGV[5] == '1' then\n"
	"      if #out > 4 and size + #x[2][4] > budget then\n"
	"        out[4] = 1\n"
	"        return out\n"
	"      end\n"
	"      size = size + #x[2][4]\n"
	"    end\n"
	"    out[#out + 1] = tonumber(string.match(x[1], '^(%d+)'))\n"
	"    if ARGV[5] == '1' then out[#out + 1] = x[2][4] end\n"
	"    left = left - 1\n"
	"  end\n"
	"end\n"
	"out[4] = 1\n"
	"return out\n";
const size_t eng_lua_iread_len = sizeof(eng_lua_iread) - 1;

/*
 * Ack. ARGV: prefix, uid, epoch, N, ... Every N must be this inbox's
 * (its epoch, not above last), or nothing is acked: {-1}. Else
 * {acked, unread, evicted}.
 */
const char eng_lua_iack[] = LUA_INBOX_KEYS
	"local ep = redis.call('HGET', m, 'epoch')\n"
	"local last = tonumber(redis.call('HGET', m, 'last') or '0')\n"
	"if ep ~= ARGV[3] then return {-1} end\n"
	"for i = 4, #ARGV do\n"
	"  if tonumber(ARGV[i]) > last then return {-1} end\n"
	"end\n"
	"local n = 0\n"
	"for i = 4, #ARGV do n = n + redis.call('XDEL', s, ARGV[i] .. '-0') end\n"
	"return {n, redis.call('XLEN', s),"
	" tonumber(redis.call('HGET', m, 'evicted'))}\n";
const size_t eng_lua_iack_len = sizeof(eng_lua_iack) - 1;

int bridge__inbox_answer(struct eng_bridge *r, struct eng_ibreq *q,
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
		q->acked = (uint64_t)bridge__int_at(rep, 0);
		q->unread = (uint64_t)bridge__int_at(rep, 1);
		q->evicted = (uint64_t)bridge__int_at(rep, 2);
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
	if (ep->len != ENG_INBOX_EPOCH_LEN ||
	    !bridge__epoch_ok(ep->str, ep->len))
		return -EPROTO;
	memcpy(q->epoch, ep->str, ep->len);
	q->epoch[ep->len] = '\0';
	q->unread = (uint64_t)bridge__int_at(rep, 1);
	q->evicted = (uint64_t)bridge__int_at(rep, 2);
	n = (rep->elements - 4) / step;
	if (q->kind == ENG_IB_LIST) {
		for (size_t i = 0; i < n && i < ENG_INBOX_IDS; i++)
			q->ids[q->n++] = (uint64_t)bridge__int_at(rep, 4 + i);
		return 0;
	}
	q->more = bridge__int_at(rep, 3) != 0;
	if (n)
		q->after = (uint64_t)bridge__int_at(rep, 4 + 2 * (n - 1));
	q->frames = eng_malloc((n ? n : 1) * sizeof(*q->frames));
	if (!q->frames)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const redisReply *d = rep->element[4 + 2 * i + 1];
		struct eng_buf *f = d->type != REDIS_REPLY_STRING ? NULL :
			bridge__stamped_frame(r, STAMP_INBOX, q->name + 1,
					      q->len - 1u, q->epoch,
					      (uint64_t)bridge__int_at(rep,
							4 + 2 * i),
					      d->str, d->len);

		if (f)		/* one no frame can carry: left unread */
			q->frames[q->nframes++] = f;
	}
	return 0;
}
