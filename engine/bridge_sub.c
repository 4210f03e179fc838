/* SPDX-License-Identifier: MIT */
/*
 * bridge_sub.c: the channels this node wants from Redis, on the bridge
 * thread. Interest from the owner shards is (UN)SUBSCRIBEd in batches
 * per loop turn (SSUBSCRIBE on a cluster, one channel each); the owner's
 * acknowledgement waits for Redis's confirmation. On a cluster each
 * channel has a standby subscription on a replica of its master, matched
 * message by message against the one delivering, which takes over when
 * the master dies.
 */
#include "bridge_int.h"

static void prim_pick(struct eng_bridge *r, struct rchan *ch);

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

int bridge__sub_at(const struct rchan *ch, unsigned idx)
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

static void unsubscribe_now(struct eng_bridge *r, unsigned node,
			    struct rchan *ch);

void bridge__sub_drop(struct eng_bridge *r, struct rchan *ch, unsigned k,
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

		unsubscribe_now(r, s->node, ch);
		s->requested = s->confirmed = 0;
		bridge__mark_dirty(&r->chans, ch);
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
	int k = bridge__sub_at(ch, idx);
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

struct rchan *bridge__sub_of(struct eng_bridge *r, const redisReply *e)
{
	return e->type != REDIS_REPLY_STRING ? NULL :
	       bridge__rchan_find(&r->chans, e->str, e->len,
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
	int m = bridge__node_for(r, ch->slot);
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
	if (h && h->stale && h->cu.top.epoch[0] &&
	    !eng_catchup_reading(&h->cu)) {
		h->stale = false;
		bridge__hist_fill(r, ch, h);
		if (!eng_catchup_reading(&h->cu))
			bridge__hist_release(r, ch, h);
	}
}

void bridge__on_subscribed(struct eng_bridge *r, struct rchan *ch,
			   unsigned idx)
{
	int k = bridge__sub_at(ch, idx);

	if (k < 0 || ch->sub[k].confirmed)
		return;
	ch->sub[k].confirmed = 1;
	if (ch->prim == R_NOSUB)
		prim_pick(r, ch);
	else if (ch->dup && !ch->dup->draining)
		dup_clear(ch->dup);
}

void bridge__on_dropped(struct eng_bridge *r, struct rchan *ch, unsigned idx)
{
	int k = bridge__sub_at(ch, idx);

	/* else the answer to our own SUNSUBSCRIBE */
	if (!ch->desired || k < 0 || !ch->sub[k].confirmed)
		return;
	bridge__sub_drop(r, ch, (unsigned)k, true);
	bridge__mark_dirty(&r->chans, ch);
	r->map_due = true;
}

void bridge__on_sub_error(struct eng_bridge *r, unsigned idx,
			  const redisReply *rep)
{
	struct eng_cluster_addr to;
	bool ask, moved;
	uint16_t slot;
	int n;

	r->map_due = true;
	moved = eng_cluster_redirect(rep->str, rep->len, &slot, &to, &ask) &&
		!ask;
	if (moved && (n = bridge__node_add(r, &to)) >= 0) {
		bridge__map_set(r, slot, n);
		atomic_fetch_add_explicit(&r->moved, 1, memory_order_relaxed);
	}
	for (size_t i = 0; i < r->chans.nbuckets; i++)
		for (struct rchan *ch = r->chans.buckets[i]; ch; ch = ch->next) {
			int k = bridge__sub_at(ch, idx);

			if (k < 0 || ch->sub[k].confirmed)
				continue;
			ch->sub[k].requested = 0;
			prim_pick(r, ch);	/* a replica's may deliver */
			if (moved) {
				bridge__mark_dirty(&r->chans, ch);
			} else {
				/* as while Redis is down: the owner must not
				 * wait for a cluster that may stay down */
				ack_sub(r, ch);
				r->resub_due = true;
			}
		}
}

bool bridge__pass(struct eng_bridge *r, const redisReply *rep, unsigned idx)
{
	struct rchan *ch = bridge__sub_of(r, rep->element[1]);
	const redisReply *d = rep->element[2];

	return ch && dup_pass(ch, idx, d->type != REDIS_REPLY_STRING ? 0 :
			      eng_chan_hash(d->str, d->len));
}


/* One (UN)SUBSCRIBE being built: up to R_BATCH channels, to link @c. */
struct batch {
	struct eng_resp *c;
	const char *argv[R_BATCH + 1];
	size_t lens[R_BATCH + 1];
	int n;
};

static void batch_init(struct batch *b, const char *cmd)
{
	b->c = NULL;
	b->argv[0] = cmd;
	b->lens[0] = strlen(cmd);
	b->n = 1;
}

static void batch_send(struct batch *b)
{
	if (b->n > 1)
		eng_resp_put_cmd(b->c, b->n, b->argv, b->lens);
	b->n = 1;
}

/*
 * Asks node @node to (un)subscribe @ch, in batch @b. One Redis takes
 * channels in batches of R_BATCH; a cluster master takes one per
 * SSUBSCRIBE (r->mode->batch), since a command's channels must share a
 * slot and a refused one is refused whole.
 */
static void put_interest(struct eng_bridge *r, unsigned node,
			 struct rchan *ch, struct batch *b)
{
	struct eng_resp *c = &r->nodes[node].c[R_SUB];

	if (!eng_resp_ready(c))
		return;
	if (b->c != c)
		batch_send(b);	/* another node's: they go one by one */
	b->c = c;
	b->argv[b->n] = ch->name;
	b->lens[b->n] = ch->len;
	if (++b->n == r->mode->batch + 1)
		batch_send(b);
}

/* Asks node @node to unsubscribe @ch at once, alone (bridge__sub_drop()). */
static void unsubscribe_now(struct eng_bridge *r, unsigned node,
			    struct rchan *ch)
{
	struct batch b;

	batch_init(&b, r->mode->unsubscribe);
	put_interest(r, node, ch, &b);
	batch_send(&b);
}

void bridge__flush_interest(struct eng_bridge *r)
{
	struct batch sub, uns;

	batch_init(&sub, r->mode->subscribe);
	batch_init(&uns, r->mode->unsubscribe);

	for (size_t i = 0; i < r->chans.ndirty; i++) {
		struct rchan *ch = r->chans.dirty[i];
		/* where it belongs: its slot's master, and a replica of it */
		int want[2] = { bridge__node_for(r, ch->slot),
				bridge__replica_for(r, ch->slot) };
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
			put_interest(r, ch->sub[k].node, ch, &uns);
			bridge__sub_drop(r, ch, k, keep[!k]);
		}
		for (unsigned w = 0; w < 2 && ch->desired; w++) {
			int t = want[w];
			unsigned k = ch->sub[0].requested ? 1 : 0;

			if (t < 0 || bridge__sub_at(ch, (unsigned)t) >= 0 ||
			    ch->sub[k].requested ||
			    !eng_resp_ready(&r->nodes[t].c[R_SUB]))
				continue;
			put_interest(r, (unsigned)t, ch, &sub);
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
	batch_send(&sub);
	batch_send(&uns);
	for (size_t i = 0; i < r->chans.ndirty; i++) {
		struct rchan *ch = r->chans.dirty[i];

		ch->dirty = 0;
		/*
		 * While Redis is down an owner must not wait: ack at once. Nor
		 * when nothing was sent because Redis has confirmed already
		 * (a channel dropped and wanted again within one batch, or
		 * wanted again by a new owner): no answer would come.
		 */
		if (!bridge__ready_for(r, ch->slot, R_SUB) ||
		    (ch->ack && ch->prim != R_NOSUB))
			ack_sub(r, ch);
		if (!ch->desired && !ch->sub[0].requested &&
		    !ch->sub[1].requested && !ch->ack)
			bridge__rchan_free(&r->chans, ch);
	}
	r->chans.ndirty = 0;
	for (unsigned i = 0; i < r->nnodes; i++)
		eng_resp_flush(&r->nodes[i].c[R_SUB]);
}

void bridge__on_sub_mail(struct eng_bridge *r, struct eng_rsub *m)
{
	struct rchan *ch = bridge__rchan_get(&r->chans, m->name, m->len);

	if (ch) {
		ch->desired = m->add;
		ch->ho = 0;	/* a shard's now */
		ch->owner = m->from;
		if (m->add)
			ch->ack = 1;
		bridge__mark_dirty(&r->chans, ch);
	}
	eng_free(m);
}
