/* SPDX-License-Identifier: MIT */
/*
 * conn_handover.c: one connection in a live hand-over (conn.h, handover.h,
 * docs/HANDOVER.md). In the old process it is quiesced (no more reads, no
 * new sends), written out as a record with its transport's and its
 * endpoint's own, and once the new process holds it, forgotten without a
 * byte on the wire; or resumed as it was when the hand-over fails. In the
 * new process the record rebuilds it on a slot of the new ring.
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "conn_int.h"
#include "handover.h"
#include "timer.h"

#define NO_TIMER	UINT32_MAX	/* a record's timer: none armed */

static void mark(struct eng_shard *s, struct eng_conn *c, bool on)
{
	uint32_t i = eng_slot(s, c);
	uint64_t bit = UINT64_C(1) << (i % 64);

	if (!s->ho_bits)
		return;
	if (on)
		s->ho_bits[i / 64] |= bit;
	else
		s->ho_bits[i / 64] &= ~bit;
}

/* Whether @c's state, endpoint and transport @x can be carried at all. */
static bool carried_kind(const struct eng_conn *c, const struct eng_xport *x)
{
	return (c->state == ENG_CONN_WS || c->state == ENG_CONN_HTTP) &&
	       conn__endpoint(c)->ho_save && x->ho_save;
}

bool eng_conn_ho_stop(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_xport *x = conn__xport(c);

	if (!carried_kind(c, x))
		return false;
	/* a handshake reads on: eng_conn_ho_ready() stops it at its end */
	if (x->ho_ready && !x->ho_ready(s, c))
		return false;
	mark(s, c, true);
	/* its last completion says -ECANCELED: on_recv leaves it be */
	if (c->flags & ENG_CONN_F_RECV)
		ring_stop_recv(&s->ring, eng_slot(s, c),
			       conn__ud(s, c, ENG_OP_RECV),
			       ring_ud(ENG_OP_CANCEL, 0, 0));
	/* no SQE: F_RECV stays, it is busy, and is not carried */
	return true;
}

bool eng_conn_ho_later(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_xport *x = conn__xport(c);

	return carried_kind(c, x) && x->ho_ready && !eng_conn_ho_quiet(s, c) &&
	       !x->ho_ready(s, c);
}

void eng_conn_ho_ready(struct eng_shard *s, struct eng_conn *c)
{
	if (s->ho_bits && !s->ho_mute && !eng_conn_ho_quiet(s, c))
		eng_conn_ho_stop(s, c);
}

void eng_conn_ho_stop_send(struct eng_shard *s, struct eng_conn *c)
{
	if (c->flags & ENG_CONN_F_SEND)
		ring_stop_send(&s->ring, eng_slot(s, c),
			       ring_ud(ENG_OP_CANCEL, 0, 0));
}

bool eng_conn_ho_busy(const struct eng_conn *c)
{
	return c->flags & (ENG_CONN_F_RECV | ENG_CONN_F_SEND |
			   ENG_CONN_F_CANCEL | ENG_CONN_F_SHUTTING |
			   ENG_CONN_F_CLOSE_FD);
}

/* Ticks since @t, as milliseconds. */
static uint32_t ago_ms(const struct eng_shard *s, uint32_t t)
{
	uint64_t ms = (uint64_t)(s->tick - t) * ENG_TICK_MS;

	return ms > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)ms;
}

/* A length-prefixed record of @fn's (a transport's or an endpoint's). */
static int put_sub(struct eng_shard *s, struct eng_conn *c,
		   struct eng_ho_buf *b,
		   int (*fn)(struct eng_shard *, struct eng_conn *,
			     struct eng_ho_buf *))
{
	size_t at = b->len;
	uint32_t n;
	int ret;

	eng_ho_put_u32(b, 0);
	ret = fn ? fn(s, c, b) : 0;
	if (ret < 0 || b->err)
		return ret < 0 ? ret : -ENOMEM;
	n = (uint32_t)(b->len - at - 4);
	b->p[at] = (uint8_t)(n >> 24);
	b->p[at + 1] = (uint8_t)(n >> 16);
	b->p[at + 2] = (uint8_t)(n >> 8);
	b->p[at + 3] = (uint8_t)n;
	return 0;
}

/* Whether @c is somewhere a record can describe (else: drained). */
static bool carriable(const struct eng_conn *c)
{
	const struct eng_rx *rx = c->rx;

	if (c->flags & (ENG_CONN_F_WAIT | ENG_CONN_F_RESUME |
			ENG_CONN_F_REARM | ENG_CONN_F_PEER_CLOSED))
		return false;
	/* a message being assembled from fragments: not carried */
	if (rx && (rx->msg || rx->ws.opcode))
		return false;
	if (c->state == ENG_CONN_WS)
		return true;
	/* HTTP between requests (its last answer may be queued still) */
	return c->state == ENG_CONN_HTTP && c->kind == ENG_CONN_K_HTTP &&
	       (!rx || rx->plen == rx->poff);
}

int eng_conn_ho_settled(struct eng_shard *s, struct eng_conn *c,
			struct eng_ho_buf *scratch)
{
	const struct eng_endpoint *ep = conn__endpoint(c);
	const struct eng_xport *x = conn__xport(c);
	int ret;

	if (!ep->ho_save || !x->ho_save)
		return -EOPNOTSUPP;
	if (!carriable(c))
		return -EAGAIN;
	scratch->len = 0;
	/* a send in flight is not waited for: the save's stop ends it */
	ret = c->flags & ENG_CONN_F_SEND ? 0 : x->ho_save(s, c, scratch);
	scratch->len = 0;
	if (ret == 0)
		ret = ep->ho_save(s, c, scratch);
	return ret == -EOPNOTSUPP ? ret : ret < 0 ? -EAGAIN : 0;
}

int eng_conn_ho_save(struct eng_shard *s, struct eng_conn *c,
		     struct eng_ho_buf *b)
{
	const struct eng_endpoint *ep = conn__endpoint(c);
	const struct eng_xport *x = conn__xport(c);
	const struct eng_rx *rx = c->rx;
	uint32_t unsent = 0;
	size_t start = b->len;
	int ret;

	if (!ep->ho_save || !x->ho_save)
		return -EOPNOTSUPP;
	if (eng_conn_ho_busy(c) || !carriable(c))
		return -EAGAIN;
	eng_ho_put_u8(b, c->state);
	eng_ho_put_u8(b, c->kind);
	eng_ho_put_u8(b, c->xport);
	eng_ho_put_u8(b, c->deflate);
	eng_ho_put_u16(b, c->flags & ENG_CONN_F_KEEP);
	eng_ho_put_u32(b, ago_ms(s, c->last_rx));
	eng_ho_put_u32(b, ago_ms(s, c->last_ping));
	eng_ho_put_u32(b, c->tdue ? (c->tdue > s->tick ? c->tdue - s->tick :
				     0) * ENG_TICK_MS : NO_TIMER);
	/* a frame (or request) half received: its bytes as they came */
	if (rx && rx->plen > rx->poff) {
		eng_ho_put_u32(b, rx->plen - rx->poff);
		eng_ho_put(b, rx->part + rx->poff, rx->plen - rx->poff);
	} else {
		eng_ho_put_u32(b, 0);
	}
	/* the send queue as the bytes still to go, a frame's rest first */
	for (const struct eng_sq *q = c->sq_head; q; q = q->next)
		unsent += q->buf->len - (q == c->sq_head ? c->sent : 0);
	eng_ho_put_u32(b, unsent);
	for (const struct eng_sq *q = c->sq_head; q; q = q->next) {
		uint32_t off = q == c->sq_head ? c->sent : 0;

		eng_ho_put(b, q->buf->data + q->buf->start + off,
			   q->buf->len - off);
	}
	ret = put_sub(s, c, b, x->ho_save);
	if (ret == 0)
		ret = put_sub(s, c, b, ep->ho_save);
	if (ret == 0 && b->err)
		ret = -ENOMEM;
	if (ret < 0)
		b->len = start;	/* nothing of it: the caller drains @c */
	return ret;
}

void eng_conn_ho_handed(struct eng_shard *s, struct eng_conn *c)
{
	conn__set_state(s, c, ENG_CONN_HANDED);
	eng_timer_del(s, c);
}

void eng_conn_ho_resume(struct eng_shard *s, struct eng_conn *c)
{
	mark(s, c, false);
	if (c->state == ENG_CONN_HANDED) {
		conn__set_state(s, c, c->kind == ENG_CONN_K_HTTP ?
				ENG_CONN_HTTP : ENG_CONN_WS);
		if (c->state == ENG_CONN_WS)
			conn__schedule_ws(s, c);
		else
			conn__http_rearm(s, c, false);
	}
	if (!eng_conn_alive(c))
		return;
	/* a recv whose cancel is still on its way is re-armed at its end */
	if (!(c->flags & ENG_CONN_F_RECV))
		conn__arm_recv(s, c);
	conn__flush(s, c);
}

void eng_conn_ho_forget(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_endpoint *ep = conn__endpoint(c);
	bool was = s->stopping;

	mark(s, c, false);
	/*
	 * What the endpoint holds goes as at a stop, telling no owner shard
	 * and not Redis: the connection lives on in the new process, whose
	 * subscriptions and presence are its own now.
	 */
	s->stopping = true;
	if (ep->on_close)
		ep->on_close(s, c);
	s->stopping = was;
	if (c->deflate && c->kind != ENG_CONN_K_HTTP)
		ENG_STAT_SUB(s, deflate_conns, 1);
	c->kind = ENG_CONN_K_HTTP;	/* release()'s on_close: nothing left */
	c->deflate = 0;
	conn__sq_free(c);
	c->queued = c->sent = 0;
	conn__rx_free(s, c);
	eng_timer_del(s, c);
	/* no shutdown, no close_notify: closing ours leaves theirs open */
	conn__set_state(s, c, ENG_CONN_DEAD);
	conn__maybe_close_fd(s, c);
}

/* A transport's or an endpoint's record, to @fn (NULL: must be empty). */
static int get_sub(struct eng_shard *s, struct eng_conn *c,
		   struct eng_ho_rd *r,
		   int (*fn)(struct eng_shard *, struct eng_conn *,
			     struct eng_ho_rd *))
{
	uint32_t n = eng_ho_get_u32(r);
	struct eng_ho_rd sub = { eng_ho_get(r, n), n, 0, false };

	if (r->err)
		return -EBADMSG;
	if (!fn)
		return n ? -EBADMSG : 0;
	return fn(s, c, &sub);
}

/* @n raw bytes (frames as they go on the wire) as one queue entry. */
static int queue_raw(struct eng_conn *c, const uint8_t *p, uint32_t n)
{
	struct eng_buf *b = eng_buf_new(n);

	if (!b)
		return -ENOMEM;
	memcpy(b->data, p, n);
	b->start = 0;
	b->len = n;
	if (conn__sq_push(c, b) < 0) {
		eng_buf_put(b);
		return -ENOMEM;
	}
	return 0;
}

/* The ticks before now that @ms ago was, at most back to tick 0. */
static uint32_t back(const struct eng_shard *s, uint32_t ms)
{
	uint32_t t = ms / ENG_TICK_MS;

	return t > s->tick ? 0 : s->tick - t;
}

int eng_conn_ho_load(struct eng_shard *s, uint32_t slot,
		     struct eng_ho_rd *r)
{
	struct eng_conn *c = &s->conns[slot];
	uint8_t state = eng_ho_get_u8(r), kind = eng_ho_get_u8(r);
	uint8_t xp = eng_ho_get_u8(r), deflate = eng_ho_get_u8(r);
	uint16_t flags = eng_ho_get_u16(r);
	uint32_t rx_ms = eng_ho_get_u32(r), ping_ms = eng_ho_get_u32(r);
	uint32_t timer_ms = eng_ho_get_u32(r), nrx, nq;
	const uint8_t *rxp, *qp;
	int ret = -EBADMSG;

	nrx = eng_ho_get_u32(r);
	rxp = eng_ho_get(r, nrx);
	nq = eng_ho_get_u32(r);
	qp = eng_ho_get(r, nq);
	/* counted and set up as an accepted one, so that any end is clean */
	if (!conn__open(s, c, xp < ENG_XPORTS ? xp : ENG_XPORT_PLAIN))
		return -ENOMEM;		/* the transport refused it: closed */
	/* it reads and sends once every shard has registered its own */
	mark(s, c, true);
	if (r->err || (state != ENG_CONN_WS && state != ENG_CONN_HTTP) ||
	    kind >= ENG_CONN_KINDS || !conn__endpoints[kind] ||
	    xp >= ENG_XPORTS || !conn__xports[xp] || deflate > 3 ||
	    (state == ENG_CONN_HTTP) != (kind == ENG_CONN_K_HTTP))
		goto fail;
	c->kind = kind & 0xf;
	c->deflate = deflate & 3;
	c->flags |= flags & ENG_CONN_F_KEEP;
	c->last_rx = back(s, rx_ms);
	c->last_ping = back(s, ping_ms);
	if (c->deflate && c->kind != ENG_CONN_K_HTTP)
		ENG_STAT_ADD(s, deflate_conns, 1);
	conn__set_state(s, c, state);
	/* what the old process had not sent goes first */
	if (nq && queue_raw(c, qp, nq) < 0) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = get_sub(s, c, r, conn__xport(c)->ho_load);
	if (ret == 0)
		ret = get_sub(s, c, r, conn__endpoint(c)->ho_load);
	if (ret < 0)
		goto fail;
	if (c->state == ENG_CONN_WS)
		conn__schedule_ws(s, c);
	else if (timer_ms != NO_TIMER)
		eng_timer_set(s, c, s->tick + eng_ms_to_ticks(timer_ms));
	else
		conn__http_rearm(s, c, false);
	if (nrx) {
		/* the frame half received: parsed again, it waits for its rest */
		uint8_t *copy = eng_malloc(nrx);

		if (!copy) {
			ret = -ENOMEM;
			goto fail;
		}
		memcpy(copy, rxp, nrx);
		eng_conn_feed(s, c, copy, nrx);
		eng_free(copy);
	}
	return 0;
fail:
	mark(s, c, false);
	eng_conn_kill(s, c);
	return ret;
}
