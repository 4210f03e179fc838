/* SPDX-License-Identifier: MIT */
/*
 * bridge_hist.c: history through Redis: the publish and read scripts
 * (the shards send them, rreq.c), and on the bridge thread the read's
 * answer into push frames, judged for recovery, read page by page; and a
 * history channel's messages handed on without a gap, a gap read back
 * from the channel's stream before later messages go on.
 */
#include "bridge_int.h"

/*
 * History channels (docs/PROTOCOL.md). Keys, with P the prefix and C the
 * channel: P hmeta:C (a hash: "epoch", "top", the newest offset) and
 * P hist:C (a stream whose entry ids are OFFSET-0, fields t, the publish
 * time in ms, and d, the message). Both expire ttl after the last publish;
 * a history created again gets a new epoch, so offsets of the old one are
 * never taken for offsets of the new.
 *
 * Publish. ARGV: prefix, channel, message, N, ttl ms, a fresh epoch, the
 * Redis channel (P ch:C) and the command that publishes on it. The
 * message goes out as "\xff" EPOCH OFFSET ":" MESSAGE: the 0xff byte is
 * never UTF-8, so no raw PUBLISH looks like it. Returns {receivers,
 * offset, epoch}.
 */
const char eng_lua_hpub[] =
	"local p, c = ARGV[1], ARGV[2]\n"
	"local m, s = p .. 'hmeta:' .. c, p .. 'hist:' .. c\n"
	"local ep = redis.call('HGET', m, 'epoch')\n"
	"if not ep then\n"
	"  ep = ARGV[6]\n"
	"  redis.call('DEL', s)\n"
	"  redis.call('HSET', m, 'epoch', ep, 'top', 0)\n"
	"end\n"
	"local off = redis.call('HINCRBY', m, 'top', 1)\n"
	"local t = redis.call('TIME')\n"
	"local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	"redis.call('XADD', s, 'MAXLEN', ARGV[4], off .. '-0', 't', ms,"
	" 'd', ARGV[3])\n"
	"redis.call('PEXPIRE', s, ARGV[5])\n"
	"redis.call('PEXPIRE', m, ARGV[5])\n"
	"local n = redis.call(ARGV[8], ARGV[7],"
	" '\\255' .. ep .. off .. ':' .. ARGV[3])\n"
	"return {n, off, ep}\n";
const size_t eng_lua_hpub_len = sizeof(eng_lua_hpub) - 1;

/*
 * Read. ARGV: prefix, channel, after, max, mode, ttl ms, a fresh epoch,
 * a byte budget. Mode "last": the newest max; "after": up to max above
 * after; "recover": the same, and a channel with no history is created,
 * under the fresh epoch and at offset 0, as a publish would: the client
 * is told at once the position the next message goes on from, which a
 * history lost with Redis's data would otherwise leave unknown.
 *
 * Returns {epoch or nil, top, first, more, message, ...}: the messages
 * have offsets first, first + 1, ...; those older than ttl are left out
 * (from the oldest end). The stream is read a few entries at a time and
 * the read stops before the message that would pass the budget (the
 * first always goes), with more 1: neither the script nor its reply
 * holds much more than the budget, whatever the channel keeps.
 */
const char eng_lua_hread[] =
	"local p, c, mode = ARGV[1], ARGV[2], ARGV[5]\n"
	"local after, max = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
	"local budget = tonumber(ARGV[8])\n"
	"local m, s = p .. 'hmeta:' .. c, p .. 'hist:' .. c\n"
	"local ep = redis.call('HGET', m, 'epoch')\n"
	"if not ep and mode ~= 'recover' then return {false, 0, 0, 0} end\n"
	"if not ep then\n"
	"  redis.call('DEL', s)\n"
	"  redis.call('HSET', m, 'epoch', ARGV[7], 'top', 0)\n"
	"  redis.call('PEXPIRE', m, ARGV[6])\n"
	"  return {ARGV[7], 0, 0, 0}\n"
	"end\n"
	"local top = tonumber(redis.call('HGET', m, 'top'))\n"
	"if mode == 'last' then after = math.max(top - max, 0) end\n"
	"if after >= top or max <= 0 then return {ep, top, 0, 0} end\n"
	"local t = redis.call('TIME')\n"
	"local cut = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"
	" - tonumber(ARGV[6])\n"
	"local out, first, size, from = {ep, top, 0, 0}, 0, 0, '(' .. after .. '-0'\n"
	"while max > 0 do\n"
	"  local e = redis.call('XRANGE', s, from, '+', 'COUNT', math.min(max, 16))\n"
	"  if #e == 0 then break end\n"
	"  for _, x in ipairs(e) do\n"
	"    from = '(' .. x[1]\n"
	"    if first > 0 or tonumber(x[2][2]) >= cut then\n"
	"      local d = x[2][4]\n"
	"      if first > 0 and size + #d > budget then\n"
	"        out[4] = 1\n"
	"        max = 0\n"
	"        break\n"
	"      end\n"
	"      if first == 0 then\n"
	"        first = tonumber(string.match(x[1], '^(%d+)'))\n"
	"      end\n"
	"      out[#out + 1] = d\n"
	"      size = size + #d\n"
	"      max = max - 1\n"
	"      if max == 0 then break end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"out[3] = first\n"
	"return out\n";
const size_t eng_lua_hread_len = sizeof(eng_lua_hread) - 1;

/* Drops what pages before had read: the answer will not use them. */
static void hist_drop_frames(struct eng_hreq *h)
{
	while (h->n)
		eng_buf_put(h->frames[--h->n]);
	h->bytes = 0;
	h->more = false;
}

int bridge__hist_answer(struct eng_bridge *r, struct eng_hreq *h,
			const redisReply *rep)
{
	uint64_t after = h->more ? h->next : h->after;	/* this page's */
	char epoch[ENG_EPOCH_LEN + 1];
	const redisReply *ep;
	struct eng_buf **frames;
	uint64_t top, first, last;
	bool more;
	size_t n;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4 ||
	    rep->element[1]->type != REDIS_REPLY_INTEGER ||
	    rep->element[2]->type != REDIS_REPLY_INTEGER ||
	    rep->element[3]->type != REDIS_REPLY_INTEGER)
		return -EPROTO;
	ep = rep->element[0];
	if (ep->type == REDIS_REPLY_STRING &&
	    (ep->len != ENG_EPOCH_LEN || !bridge__epoch_ok(ep->str, ep->len)))
		return -EPROTO;
	top = (uint64_t)rep->element[1]->integer;
	first = (uint64_t)rep->element[2]->integer;
	more = rep->element[3]->integer != 0;
	n = rep->elements - 4;
	h->top = top;
	h->more = false;
	if (ep->type == REDIS_REPLY_STRING) {
		memcpy(epoch, ep->str, ep->len);
		epoch[ep->len] = '\0';
	}
	/* the newest it gave, or top when cut short by the budget */
	last = !n ? 0 : more ? top : first + n - 1;
	h->status = h->kind != ENG_HREQ_RECOVER ? ENG_HREQ_OK :
		    (uint8_t)eng_hist_judge(h->epoch, after,
					    ep->type == REDIS_REPLY_STRING ?
					    epoch : NULL, top, first, last);
	if (ep->type != REDIS_REPLY_STRING) {
		/* no history at all: none to recover, offsets start anew */
		h->epoch[0] = '\0';
		hist_drop_frames(h);
		return 0;
	}
	memcpy(h->epoch, epoch, sizeof(epoch));
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
			bridge__stamped_frame(r, STAMP_HIST, h->name, h->len,
					      h->epoch, first + i, d->str,
					      d->len);

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

void bridge__hist_fill(struct eng_bridge *r, struct rchan *rc,
		       struct rhist *h)
{
	size_t skip = strlen(r->eng->cfg.redis_prefix) + 3;	/* P ch: */
	struct eng_hreq *q;
	struct eng_rreq *p;

	eng_catchup_begin(&h->cu);	/* later messages wait from now on */
	if (!bridge__ready_for(r, rc->slot, R_PUB)) {
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
	memcpy(q->epoch, h->cu.top.epoch, sizeof(h->cu.top.epoch));
	q->after = h->cu.top.n;
	p = eng_rreq_hread_new(r->eng, q);
	if (!p)
		goto fail;
	q = NULL;
	p->from = ENG_BRIDGE;
	atomic_fetch_add_explicit(&r->fills, 1, memory_order_relaxed);
	/* may answer at once: bridge__hist_filled() */
	bridge__on_request_mail(r, p);
	return;
fail:
	eng_free(q);
	eng_catchup_end(&h->cu);
	h->skip = true;
	atomic_fetch_add_explicit(&r->gaps, 1, memory_order_relaxed);
}

/* A history channel's link, as the consumer of its catch-up. */
struct to_link {
	struct eng_bridge *r;
	struct rchan *rc;
};

/* A held message goes through bridge__hist_live() again: a gap holds. */
static bool again(void *arg, void *p)
{
	struct to_link *to = arg;

	bridge__hist_live(to->r, to->rc, p);
	return true;
}

void bridge__hist_release(struct eng_bridge *r, struct rchan *rc,
			  struct rhist *h)
{
	struct to_link to = { r, rc };

	eng_catchup_release(&h->cu, again, &to);
}

/* A message of a read goes to the owner (the catch-up's top now). */
static bool inject(void *arg, void *p)
{
	struct eng_bridge *r = arg;

	eng_pub_inject(&r->mail, p);
	return true;
}

static void hand_on(struct eng_bridge *r, struct rhist *h, struct eng_buf *f,
		    const char *epoch, uint64_t off)
{
	eng_catchup_at(&h->cu, epoch, off);
	eng_pub_inject(&r->mail, f);
}

void bridge__hist_live(struct eng_bridge *r, struct rchan *rc,
		       struct eng_buf *f)
{
	char epoch[ENG_EPOCH_LEN + 1];
	uint64_t off = eng_hist_offset_of(f, epoch);
	struct rhist *h = rc ? rc->hist : NULL;

	if (rc && !h) {
		h = rc->hist = calloc(1, sizeof(*h));
		if (h)
			eng_catchup_init(&h->cu, &eng_hist_frame_ops,
					 ENG_HIST_HOLD);
	}
	if (!h) {		/* not wanted here, or no memory: as it is */
		eng_pub_inject(&r->mail, f);
		return;
	}
	switch (eng_catchup_live(&h->cu, f)) {
	case ENG_CU_HELD:		/* a read is out: after it */
		return;
	case ENG_CU_FULL:		/* too many: give the read up */
		eng_catchup_end(&h->cu);
		h->skip = true;
		atomic_fetch_add_explicit(&r->gaps, 1, memory_order_relaxed);
		bridge__hist_release(r, rc, h);
		bridge__hist_live(r, rc, f);
		return;
	case ENG_CU_SKIP:
		eng_buf_put(f);		/* read back already */
		return;
	}
	if (strcmp(epoch, h->cu.top.epoch)) {
		/* the first message seen here, or a history begun again */
		eng_catchup_at(&h->cu, epoch,
			       h->cu.top.epoch[0] ? 0 : off - 1);
		h->skip = false;
	}
	if (off == h->cu.top.n + 1 || h->skip) {
		h->skip = false;
		hand_on(r, h, f, epoch, off);
	} else {
		eng_catchup_begin(&h->cu);	/* hold @f first */
		bridge__hist_live(r, rc, f);
		bridge__hist_fill(r, rc, h);
		if (!eng_catchup_reading(&h->cu))	/* could not even ask */
			bridge__hist_release(r, rc, h);
	}
}

void bridge__hist_filled(struct eng_bridge *r, struct eng_hreq *q,
			 long long result)
{
	char name[ENG_CHAN_MAX + 128];
	size_t len = eng_rreq_channel(&r->eng->cfg, name, sizeof(name),
				      q->name, q->len);
	struct rchan *rc = bridge__rchan_find(&r->chans, name, len,
					      eng_chan_hash(name, len));
	struct rhist *h = rc ? rc->hist : NULL;
	bool reading = h && eng_catchup_reading(&h->cu);

	if (reading && (result == -ENOTCONN || result == -ECONNRESET ||
			result == -ETIMEDOUT)) {
		h->want = true;		/* the link failed: again once back */
		r->fills_waiting = true;
	} else if (reading) {
		bool more = false;

		eng_catchup_end(&h->cu);
		if (result >= 0 && q->status == ENG_HREQ_OK &&
		    !strcmp(q->epoch, h->cu.top.epoch)) {
			/* those not handed on already, in order */
			for (uint32_t i = 0; i < q->n; i++)
				if (eng_catchup_read(&h->cu, q->frames[i],
						     inject, r))
					q->frames[i] = NULL;
			more = q->more;
		} else {
			h->skip = true;		/* lost: say so in /stats */
			atomic_fetch_add_explicit(&r->gaps, 1,
						  memory_order_relaxed);
		}
		/* cut by the read's bound: the next page, the rest waiting */
		if (more)
			bridge__hist_fill(r, rc, h);
		if (!eng_catchup_reading(&h->cu))
			bridge__hist_release(r, rc, h);
	}
	eng_hreq_free(q);
}

void bridge__send_fills(struct eng_bridge *r)
{
	r->fills_waiting = false;
	for (size_t i = 0; i < r->chans.nbuckets; i++)
		for (struct rchan *ch = r->chans.buckets[i]; ch;
		     ch = ch->next) {
			struct rhist *h = ch->hist;

			if (!h || !h->want)
				continue;
			h->want = false;
			bridge__hist_fill(r, ch, h);
			if (!eng_catchup_reading(&h->cu))
				bridge__hist_release(r, ch, h);
		}
}

bool bridge__hist_next_page(struct eng_bridge *r, struct eng_rreq *p)
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
	q = eng_rreq_hread_new(r->eng, h);
	if (!q) {
		h->status = ENG_HREQ_NOMEM;
		hist_drop_frames(h);
		return false;
	}
	q->from = p->from;
	q->kind = p->kind;
	q->slot = p->slot;
	q->gen = p->gen;
	q->done = p->done;
	q->page = true;
	p->hreq = NULL;
	bridge__read_done(r, p);
	eng_free(p);
	bridge__on_request_mail(r, q);
	return true;
}
