/* SPDX-License-Identifier: MIT */
/*
 * bridge_ho.c: the bridge's part of a live hand-over with one Redis
 * (docs/HANDOVER.md "With Redis"), on the bridge thread. One Redis
 * server sends every subscriber connection its messages in the one order
 * it ran the PUBLISHes in, so a marker published on a channel both
 * processes subscribe to cuts both streams at the same place. The old
 * process delivers what comes before it and holds what comes after it
 * (the connections it hands over may yet resume); the new process drops
 * what comes before it and holds what comes after it until its carried
 * connections are subscribed. The handover thread asks, the bridge
 * does, each loop turn: struct rho's fields before ho.cmd are the
 * asker's until it stores cmd, the bridge's after.
 */
#include "bridge_int.h"

#define HOLD_MAX	(256u << 20)	/* bytes held: past it, dropped */
#define LET_GO		1024	/* held messages let go a loop turn */
#define MARKER_MS	10000	/* the new one waits this for the marker */

struct rheld {
	struct rheld *next;
	uint32_t clen, plen;
	char data[];			/* the channel, then the payload */
};

/* Whether Redis channel @c is the marker's. */
static bool is_marker(const struct rho *h, const redisReply *c)
{
	return c->type == REDIS_REPLY_STRING && c->len == h->mlen &&
	       !memcmp(c->str, h->marker, h->mlen);
}

/* Wants Redis channel @name for the hand-over, unless it is wanted. */
static int want(struct eng_bridge *r, const char *name, size_t len)
{
	struct rchan *ch = bridge__rchan_get(&r->chans, name, len);

	if (!ch)
		return -ENOMEM;
	if (!ch->desired) {
		ch->desired = 1;
		ch->ho = 1;	/* ours alone: unwanted again at the end */
		bridge__mark_dirty(&r->chans, ch);
	}
	return 0;
}

/* The channels wanted here (the marker's aside), as u16 length + name. */
static int snapshot(struct eng_bridge *r, struct rho *h)
{
	size_t cap = 4096, len = 0;
	uint8_t *p = malloc(cap);
	uint32_t n = 0;

	for (size_t i = 0; p && i < r->chans.nbuckets; i++)
		for (struct rchan *ch = r->chans.buckets[i]; p && ch;
		     ch = ch->next) {
			if (!ch->desired || ch->ho)
				continue;
			if (len + 2 + ch->len > cap) {
				uint8_t *g = realloc(p, cap * 2 + ch->len);

				if (!g) {
					free(p);
					p = NULL;
					break;
				}
				p = g;
				cap = cap * 2 + ch->len;
			}
			p[len++] = (uint8_t)(ch->len >> 8);
			p[len++] = (uint8_t)ch->len;
			memcpy(p + len, ch->name, ch->len);
			len += ch->len;
			n++;
		}
	h->names = p;
	h->nlen = p ? len : 0;
	h->n = p ? n : 0;
	return p ? 0 : -ENOMEM;
}

/* A command from the handover thread. */
static void begin(struct eng_bridge *r, struct rho *h, int cmd)
{
	int ret = want(r, h->marker, h->mlen);

	if (cmd == ENG_BHO_GIVE && ret == 0)
		ret = snapshot(r, h);
	for (size_t off = 0; cmd == ENG_BHO_TAKE && ret == 0 &&
	     off + 2 <= h->nlen;) {
		size_t len = (size_t)h->names[off] << 8 | h->names[off + 1];

		if (off + 2 + len > h->nlen || !len || len > ENG_CHAN_MAX + 128)
			break;
		ret = want(r, (const char *)h->names + off + 2, len);
		off += 2 + len;
	}
	h->take = cmd == ENG_BHO_TAKE;
	atomic_store(&h->state, ret < 0 ? ENG_BHO_FAILED : ENG_BHO_SUBSCRIBING);
}

/* Every channel wanted here is confirmed by Redis (one Redis: sub[0]). */
static bool all_confirmed(const struct eng_bridge *r)
{
	for (size_t i = 0; i < r->chans.nbuckets; i++)
		for (struct rchan *ch = r->chans.buckets[i]; ch; ch = ch->next)
			if (ch->desired && !ch->sub[0].confirmed)
				return false;
	return true;
}

/* The marker, PUBLISHed on the publisher link: no shard waits for it. */
static void publish(struct eng_bridge *r, struct rho *h)
{
	const char *argv[3] = { "PUBLISH", h->marker, "ringcast-handover" };
	size_t lens[3] = { 7, h->mlen, 17 };
	struct eng_rreq *p = eng_rreq_new(ENG_RQ_QUIET, 3, argv, lens);

	if (!p) {
		atomic_store(&h->state, ENG_BHO_FAILED);
		return;
	}
	atomic_store(&h->state, ENG_BHO_AWAIT);
	bridge__on_request_mail(r, p);
}

/*
 * What was held goes on as if it came now, in its order, LET_GO a loop
 * turn (a burst all at once would fill the shards' rings, and a post
 * that fails is retried later, out of order); what comes meanwhile is
 * held behind it. Once none is left, what only the hand-over wanted is
 * unwanted again.
 */
static void let_go(struct eng_bridge *r, struct rho *h)
{
	/*
	 * The new one's stream may not have reached the marker yet; it
	 * always does unless our link went down meanwhile (then what it
	 * missed is lost as in any outage): not waited for past MARKER_MS.
	 */
	if (h->take && atomic_load(&h->state) != ENG_BHO_HOLD) {
		if (now_ms() < h->end_by)
			return;
		fprintf(stderr, "ringcast: take-over: the marker did not come "
			"back from Redis in %u s (a link went down?): serving "
			"on; messages of the switch may be missing\n",
			MARKER_MS / 1000);
	}
	for (unsigned i = 0; h->head && i < LET_GO; i++) {
		struct rheld *m = h->head;
		redisReply c = { .type = REDIS_REPLY_STRING, .str = m->data,
				 .len = m->clen };
		redisReply d = { .type = REDIS_REPLY_STRING,
				 .str = m->data + m->clen, .len = m->plen };

		h->head = m->next;
		h->held -= m->clen + m->plen;
		if (m->clen == r->ctl_len && !memcmp(m->data, r->ctl, m->clen))
			bridge__on_ctl(r, &d);
		else
			bridge__on_message(r, &c, &d);
		free(m);
	}
	if (h->head)
		return;
	h->tail = NULL;
	h->releasing = false;
	for (size_t i = 0; i < r->chans.nbuckets; i++)
		for (struct rchan *ch = r->chans.buckets[i]; ch; ch = ch->next)
			if (ch->ho) {
				ch->ho = 0;
				ch->desired = 0;
				bridge__mark_dirty(&r->chans, ch);
			}
	free(h->names);
	h->names = NULL;
	h->nlen = 0;
	atomic_store(&h->state, ENG_BHO_NONE);
}

void bridge__ho_run(struct eng_bridge *r)
{
	struct rho *h = &r->ho;
	int cmd = atomic_exchange(&h->cmd, 0);

	if (cmd == ENG_BHO_GIVE || cmd == ENG_BHO_TAKE)
		begin(r, h, cmd);
	else if (cmd == ENG_BHO_MARK)
		publish(r, h);
	else if (cmd == ENG_BHO_END) {
		h->releasing = true;
		h->end_by = now_ms() + MARKER_MS;
	}
	if (h->releasing)
		let_go(r, h);
	if (atomic_load(&h->state) == ENG_BHO_SUBSCRIBING && !r->chans.ndirty &&
	    all_confirmed(r))
		atomic_store(&h->state, ENG_BHO_SUBSCRIBED);
}

bool bridge__ho_took(struct eng_bridge *r, const redisReply *chan,
		     const redisReply *payload)
{
	struct rho *h = &r->ho;
	int state = atomic_load_explicit(&h->state, memory_order_relaxed);
	struct rheld *m;

	if (state == ENG_BHO_NONE || state == ENG_BHO_FAILED)
		return h->mlen && is_marker(h, chan);	/* a late one */
	if (is_marker(h, chan)) {
		if (state == ENG_BHO_AWAIT ||
		    (h->take && state == ENG_BHO_SUBSCRIBED))
			atomic_store(&h->state, ENG_BHO_HOLD);
		return true;
	}
	if (state != ENG_BHO_HOLD)
		return h->take;	/* before the marker: the old one's */
	if (payload->type != REDIS_REPLY_STRING || chan->len > UINT16_MAX ||
	    h->held + chan->len + payload->len > HOLD_MAX ||
	    !(m = malloc(sizeof(*m) + chan->len + payload->len))) {
		if (!h->lost++)
			fprintf(stderr, "ringcast: hand-over: more than %u MiB "
				"of messages from Redis held: dropping\n",
				HOLD_MAX >> 20);
		return true;
	}
	m->next = NULL;
	m->clen = (uint32_t)chan->len;
	m->plen = (uint32_t)payload->len;
	memcpy(m->data, chan->str, chan->len);
	memcpy(m->data + chan->len, payload->str, payload->len);
	h->held += chan->len + payload->len;
	if (h->tail)
		h->tail->next = m;
	else
		h->head = m;
	h->tail = m;
	return true;
}

void bridge__ho_free(struct eng_bridge *r)
{
	struct rho *h = &r->ho;

	while (h->head) {
		struct rheld *m = h->head;

		h->head = m->next;
		free(m);
	}
	free(h->names);
	h->names = NULL;
}

int eng_bridge_ho(struct eng *e, int cmd, const char *marker,
		  const uint8_t *names, size_t len)
{
	struct eng_bridge *r = e->bridge;
	struct rho *h = r ? &r->ho : NULL;

	if (!h || (marker && strlen(marker) >= sizeof(h->marker)))
		return -EINVAL;
	if (marker) {
		h->mlen = strlen(marker);
		memcpy(h->marker, marker, h->mlen);
	}
	if (names) {
		h->names = malloc(len ? len : 1);
		if (!h->names)
			return -ENOMEM;
		memcpy(h->names, names, len);
		h->nlen = len;
	}
	atomic_store(&h->cmd, cmd);
	return 0;
}

int eng_bridge_ho_state(const struct eng *e)
{
	return e->bridge ? atomic_load(&e->bridge->ho.state) : ENG_BHO_NONE;
}

bool eng_bridge_ho_ok(const struct eng *e)
{
	return e->bridge && !e->bridge->cluster;
}

const uint8_t *eng_bridge_ho_names(const struct eng *e, size_t *len,
				   uint32_t *n)
{
	const struct rho *h = &e->bridge->ho;

	*len = h->nlen;
	*n = h->n;
	return h->names;
}
