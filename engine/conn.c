/* SPDX-License-Identifier: MIT */
/*
 * conn.c: one connection's life on its shard. Bytes arrive in provided
 * buffers and are parsed in place; only a request head or a frame cut by a
 * read boundary, or a fragmented message, is copied into memory of the
 * connection's own (struct eng_rx), which is freed as soon as it empties.
 * Sends go out one at a time from a queue of buffer references. Closing
 * is deferred: eng_conn_kill() cancels the socket's I/O, and the slot is
 * closed and reused only after every SQE that references it completed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "auth.h"
#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "hs.h"
#include "lat.h"
#include "timer.h"
#include "ud.h"
#include "user.h"	/* ENG_CLOSE_EXPIRED */

bool eng_conn_alive(const struct eng_conn *c)
{
	return c->state != ENG_CONN_FREE && c->state != ENG_CONN_DEAD;
}

static bool parsing(const struct eng_conn *c)
{
	return c->state == ENG_CONN_HTTP || c->state == ENG_CONN_WS ||
	       c->state == ENG_CONN_CLOSING;
}

/* The connection a CQE belongs to, or NULL when it is stale. */
static struct eng_conn *lookup(struct eng_shard *s, uint64_t ud)
{
	uint32_t slot = ring_ud_slot(ud);
	struct eng_conn *c;

	if (slot >= s->nr_conns)
		return NULL;
	c = &s->conns[slot];
	if (c->state == ENG_CONN_FREE || c->gen != ring_ud_gen(ud))
		return NULL;
	return c;
}

static uint64_t ud_of(struct eng_shard *s, struct eng_conn *c, unsigned op)
{
	return ring_ud(op, eng_slot(s, c), c->gen);
}

/* ---- endpoints --------------------------------------------------------- */

/* Written before the shards start, read-only after (eng_endpoint_add). */
static const struct eng_endpoint *endpoints[ENG_CONN_KINDS];

int eng_endpoint_add(const struct eng_endpoint *ep)
{
	if (ep->kind >= ENG_CONN_KINDS)
		return -EINVAL;
	if (endpoints[ep->kind] && endpoints[ep->kind] != ep)
		return -EEXIST;
	endpoints[ep->kind] = ep;
	return 0;
}

const struct eng_endpoint *eng_endpoint_find(const struct eng_shard *s,
					     const struct hs_str *path)
{
	for (unsigned k = 0; k < ENG_CONN_KINDS; k++) {
		const struct eng_endpoint *ep = endpoints[k];
		size_t n;

		if (!ep || !ep->path)
			continue;
		n = strlen(ep->path);
		if (path->len < n || memcmp(path->p, ep->path, n) ||
		    (!ep->prefix && path->len != n))
			continue;
		if (!ep->enabled || ep->enabled(s))
			return ep;
	}
	return NULL;
}

/* @c's endpoint; one that does nothing for a kind nobody registered. */
static const struct eng_endpoint *endpoint(const struct eng_conn *c)
{
	static const struct eng_endpoint none = { .name = "none" };

	return endpoints[c->kind] ? endpoints[c->kind] : &none;
}

/* ---- transports -------------------------------------------------------- */

static bool plain_recv(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		       size_t n);
static int plain_send(struct eng_shard *s, struct eng_conn *c);

/* Plain: the socket's bytes are the connection's own. */
static const struct eng_xport plain = {
	.name = "plain",
	.id = ENG_XPORT_PLAIN,
	.recv = plain_recv,
	.send = plain_send,
};

/* Written before the shards start, read-only after (eng_xport_add). */
static const struct eng_xport *xports[ENG_XPORTS] = {
	[ENG_XPORT_PLAIN] = &plain,
};

int eng_xport_add(const struct eng_xport *x)
{
	if (x->id >= ENG_XPORTS)
		return -EINVAL;
	if (xports[x->id] && xports[x->id] != x)
		return -EEXIST;
	xports[x->id] = x;
	return 0;
}

/* @c's transport; plain for one nobody registered. */
static const struct eng_xport *xport(const struct eng_conn *c)
{
	return xports[c->xport] ? xports[c->xport] : &plain;
}

/* ---- teardown ---------------------------------------------------------- */

/* /stats reads the shard's totals from other threads. */
static void rx_publish(struct eng_shard *s)
{
	atomic_store_explicit(&s->stats.partial_bytes, s->rx_held,
			      memory_order_relaxed);
	atomic_store_explicit(&s->stats.partial_alloc, s->rx_alloc,
			      memory_order_relaxed);
}

static void rx_free(struct eng_shard *s, struct eng_conn *c)
{
	if (!c->rx)
		return;
	s->rx_held -= c->rx->held;
	s->rx_alloc -= c->rx->alloc;
	rx_publish(s);
	eng_free(c->rx->part);
	eng_buf_put(c->rx->msg);
	eng_free(c->rx);
	c->rx = NULL;
}

/* Every change of state goes here: the shard's /ws bitmap follows it. */
static void set_state(struct eng_shard *s, struct eng_conn *c, uint8_t st)
{
	bool was = eng_conn_deliverable(c);
	uint32_t i;

	c->state = st;
	if (was == eng_conn_deliverable(c))
		return;
	i = eng_slot(s, c);
	s->push_bits[i / 64] ^= UINT64_C(1) << (i % 64);
	if (was)
		s->nr_push--;
	else
		s->nr_push++;
}

/* Returns the slot to FREE once the kernel has closed it. */
static void release(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_endpoint *ep = endpoint(c);
	struct eng_sq *q = c->sq_head;

	if (ep->on_close)
		ep->on_close(s, c);
	while (q) {
		struct eng_sq *next = q->next;

		eng_buf_put(q->buf);
		eng_free(q);
		q = next;
	}
	rx_free(s, c);
	if (xport(c)->release)
		xport(c)->release(s, c);
	eng_timer_del(s, c);
	c->sq_head = c->sq_tail = NULL;
	c->queued = 0;
	c->sent = 0;
	c->gen++;		/* late CQEs for the old connection are stale */
	set_state(s, c, ENG_CONN_FREE);
	c->flags = 0;
	atomic_fetch_sub_explicit(&s->stats.conns, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&s->eng->nconns, 1, memory_order_relaxed);
	ENG_STAT_ADD(s, closed, 1);
}

/* Closes the fixed file once no SQE of this connection is in flight. */
static void maybe_close_fd(struct eng_shard *s, struct eng_conn *c)
{
	/*
	 * Not while anything naming the slot is in flight: a cancel or a
	 * shutdown still on its way would hit whoever reuses the slot.
	 */
	if (c->state != ENG_CONN_DEAD ||
	    (c->flags & (ENG_CONN_F_RECV | ENG_CONN_F_SEND | ENG_CONN_F_CLOSE_FD |
			 ENG_CONN_F_CANCEL | ENG_CONN_F_SHUTTING)))
		return;
	if (ring_close(&s->ring, eng_slot(s, c), ud_of(s, c, ENG_OP_CLOSE))) {
		/* No SQE: retry from the timer rather than leak the slot. */
		eng_timer_set(s, c, s->tick + 1);
		return;
	}
	c->flags |= ENG_CONN_F_CLOSE_FD;
}

void eng_conn_kill(struct eng_shard *s, struct eng_conn *c)
{
	if (c->state == ENG_CONN_FREE || c->state == ENG_CONN_DEAD)
		return;
	set_state(s, c, ENG_CONN_DEAD);
	eng_timer_del(s, c);
	rx_free(s, c);
	/* TLS: close_notify or the alert owed, before the shutdown below */
	if (xport(c)->close)
		xport(c)->close(s, c);
	if ((c->flags & (ENG_CONN_F_RECV | ENG_CONN_F_SEND)) &&
	    !ring_cancel_slot(&s->ring, eng_slot(s, c),
			      ud_of(s, c, ENG_OP_CONN_CANCEL)))
		c->flags |= ENG_CONN_F_CANCEL;
	/*
	 * The recv is cancelled by its user_data (one lookup, and never
	 * another connection's: the gen differs), not by SHUT_RD: after
	 * SHUT_RD a recv reads on while the peer sends, and a socket closed
	 * with nothing left unread after it sends no reset, so a peer blocked
	 * on our zero window hung until the kernel gave the orphan up. Its
	 * completion is nobody's: the recv's last one says it ended.
	 */
	if ((c->flags & ENG_CONN_F_RECV) &&
	    !ring_cancel(&s->ring, ud_of(s, c, ENG_OP_RECV),
			 ring_ud(ENG_OP_CANCEL, 0, 0)))
		c->flags |= ENG_CONN_F_RCANCEL;
	maybe_close_fd(s, c);
}

/* A cancel or a shutdown of this connection's completed. */
void eng_conn_on_cancel(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_conn *c = lookup(s, cqe->user_data);

	if (!c)
		return;
	/*
	 * One op tag serves both; at most one of each is in flight, so two
	 * completions clear the two flags in whichever order they come.
	 */
	if (c->flags & ENG_CONN_F_CANCEL)
		c->flags &= ~ENG_CONN_F_CANCEL;
	else
		c->flags &= ~ENG_CONN_F_SHUTTING;
	maybe_close_fd(s, c);
}

void eng_conn_on_close(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_conn *c = lookup(s, cqe->user_data);

	/* Even a failed close leaves nothing of ours in the kernel. */
	if (c && c->state == ENG_CONN_DEAD)
		release(s, c);
}

/* ---- sending ----------------------------------------------------------- */

static bool xport_send(struct eng_shard *s, struct eng_conn *c);

static void flush(struct eng_shard *s, struct eng_conn *c)
{
	if ((c->flags & ENG_CONN_F_SEND) || c->state == ENG_CONN_DEAD)
		return;
	if (xport_send(s, c))
		return;		/* on its way, or the connection died */
	if (c->state == ENG_CONN_DRAIN && !(c->flags & ENG_CONN_F_SHUT)) {
		/*
		 * Everything is sent: half-close so the peer sees EOF, and
		 * keep reading until it closes too. Closing with unread bytes
		 * would send an RST that can destroy the response before the
		 * peer reads it.
		 */
		if (ring_shutdown_wr(&s->ring, eng_slot(s, c),
				     ud_of(s, c, ENG_OP_CONN_CANCEL))) {
			eng_conn_kill(s, c);
			return;
		}
		c->flags |= ENG_CONN_F_SHUT | ENG_CONN_F_SHUTTING;
	}
}

/*
 * ---- transport ---------------------------------------------------------
 * Every byte a connection receives or sends passes here: xport_recv()
 * takes what a read brought, xport_send() puts the send queue on the
 * wire, xport_sent() says how much of the queue a send's completion
 * covers, each through the connection's transport (struct eng_xport).
 * Plain connections go straight through; receive, reassembly, the frame
 * parser and the send queue above know nothing of the wire.
 */

/*
 * Puts @c's bytes on the wire, through its transport. Returns false when
 * there was nothing to send, true when a send went out or @c had to be
 * killed.
 */
static bool xport_send(struct eng_shard *s, struct eng_conn *c)
{
	int r = xport(c)->send(s, c);

	if (r < 0)
		eng_conn_kill(s, c);
	return r != 0;
}

/*
 * Plain: puts the head of @c's queue (or several entries) on the wire.
 * Returns 1 when a send went out, 0 when there was nothing to send, or
 * -errno.
 */
static int plain_send(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_buf *b;
	const uint8_t *p;
	uint32_t len;

	if (!c->sq_head)
		return 0;
	b = c->sq_head->buf;
	p = b->data + b->start + c->sent;
	len = b->len - c->sent;
	/*
	 * One send in flight per socket: two sends on one stream can
	 * complete out of order once one of them goes async.
	 */
	if (b->kind == ENG_BUF_ARENA && s->fixed_arena &&
	    len >= s->eng->cfg.zc_threshold) {
		struct eng_zc *zc = eng_malloc(sizeof(*zc));

		if (!zc)
			return -ENOMEM;
		/* kernel owns b until the NOTIF cqe; see eng_conn_on_send_zc() */
		zc->buf = eng_buf_get(b);
		zc->slot = eng_slot(s, c);
		zc->gen = c->gen;
		if (ring_send_zc(&s->ring, zc->slot, p, len,
				 ring_ud_ptr(ENG_OP_SEND_ZC, zc))) {
			eng_buf_put(zc->buf);
			eng_free(zc);
			return -EAGAIN;
		}
		ENG_STAT_ADD(s, zc_sends, 1);
		c->nflight = 1;
	} else if (c->sq_head->next) {
		/*
		 * Several frames wait: one sendmsg takes them all (up to
		 * ENG_IOV_MAX), one operation and one completion instead of
		 * one per frame. The kernel reads every buffer it covers
		 * until the CQE; sent() pops them after it.
		 */
		struct eng_sendv *v = eng_malloc(sizeof(*v));
		struct eng_sq *q = c->sq_head;
		unsigned n = 0;

		if (!v)
			return -ENOMEM;
		for (; q && n < ENG_IOV_MAX; q = q->next, n++) {
			v->iov[n].iov_base = q->buf->data + q->buf->start +
					     (n ? 0 : c->sent);
			v->iov[n].iov_len = q->buf->len - (n ? 0 : c->sent);
		}
		memset(&v->mh, 0, sizeof(v->mh));
		v->mh.msg_iov = v->iov;
		v->mh.msg_iovlen = n;
		v->slot = eng_slot(s, c);
		v->gen = c->gen;
		if (ring_sendmsg(&s->ring, v->slot, &v->mh,
				 ring_ud_ptr(ENG_OP_SENDV, v))) {
			eng_free(v);
			return -EAGAIN;
		}
		c->nflight = (uint16_t)n;
	} else if (ring_send(&s->ring, eng_slot(s, c), p, len,
			     ud_of(s, c, ENG_OP_SEND))) {
		return -EAGAIN;	/* the kernel reads b until this SEND's CQE */
	} else {
		c->nflight = 1;
	}
	c->flags |= ENG_CONN_F_SEND;
	ENG_STAT_ADD(s, sends, 1);
	return 1;
}

static void send_close(struct eng_shard *s, struct eng_conn *c, uint16_t code,
		       const char *reason, uint8_t next);

/*
 * A slow consumer: its queue hit --max-pending-bytes. Frames not yet on
 * the wire are dropped (only the one in flight stays), the connection is
 * told 1008 and drained. Its memory is bounded from here on.
 */
static void slow(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_sq *q, *keep = NULL;
	unsigned n = 0;

	/* Frames the send in flight covers stay until its completion. */
	q = c->sq_head;
	if (q && (c->flags & ENG_CONN_F_SEND)) {
		struct eng_sq *last = q;

		for (unsigned i = 1; i < c->nflight && last->next; i++)
			last = last->next;
		keep = q;
		q = last->next;
		last->next = NULL;
		c->sq_tail = last;
	}
	while (q) {
		struct eng_sq *next = q->next;

		c->queued -= q->buf->len;
		eng_buf_put(q->buf);
		eng_free(q);
		q = next;
		n++;
	}
	c->sq_head = keep;
	if (!keep)
		c->sq_tail = NULL;	/* else the last kept, set above */
	ENG_STAT_ADD(s, dropped, n);
	ENG_STAT_ADD(s, slow_closed, 1);
	send_close(s, c, WS_CLOSE_POLICY, "slow consumer", ENG_CONN_DRAIN);
	/*
	 * A stalled reader may still come back and read its close: hold it
	 * (bounded: the frames of the send in flight and the close) a while longer.
	 */
	if (c->state == ENG_CONN_DRAIN)
		eng_timer_set(s, c, s->tick + eng_ms_to_ticks(ENG_SLOW_WAIT_MS));
}

/*
 * Appends @b, taking over the caller's reference; never fails softly.
 * @now: not a delivery, so it goes this loop turn whatever the window.
 */
static int queue_as(struct eng_shard *s, struct eng_conn *c,
		    struct eng_buf *b, bool now)
{
	struct eng_sq *q = eng_malloc(sizeof(*q));

	if (!q) {
		eng_buf_put(b);
		eng_conn_kill(s, c);
		return -ENOMEM;
	}
	q->next = NULL;
	q->buf = b;
	if (c->sq_tail)
		c->sq_tail->next = q;
	else
		c->sq_head = q;
	c->sq_tail = q;
	c->queued += b->len;
	ENG_STAT_ADD(s, frames_out, 1);
	if (!(c->flags & ENG_CONN_F_FLUSH)) {
		if (s->nr_flushq == s->nr_conns) {
			flush(s, c);	/* a slot listed twice filled it: now */
			return 0;
		}
		/* the batch window runs from the first frame waiting */
		if (!s->nr_flushq && s->eng->cfg.batch_window_us)
			s->flush_at = eng_now_ns() +
				      s->eng->cfg.batch_window_us * 1000ull;
		c->flags |= ENG_CONN_F_FLUSH;
		s->flushq[s->nr_flushq++] = eng_slot(s, c);
	}
	if (now && !(c->flags & ENG_CONN_F_NOW)) {
		c->flags |= ENG_CONN_F_NOW;
		s->nr_flushnow++;	/* a hint: the loop recounts */
	}
	return 0;
}

void eng_conn_flushed(struct eng_shard *s, struct eng_conn *c)
{
	if (!(c->flags & ENG_CONN_F_FLUSH))
		return;		/* its slot was listed twice: flushed once */
	if (c->flags & ENG_CONN_F_NOW)
		s->nr_flushnow--;
	c->flags &= ~(ENG_CONN_F_FLUSH | ENG_CONN_F_NOW);
	flush(s, c);
}

static int queue(struct eng_shard *s, struct eng_conn *c, struct eng_buf *b)
{
	return queue_as(s, c, b, true);
}

static int queue_bounded(struct eng_shard *s, struct eng_conn *c,
			 struct eng_buf *b, bool now)
{
	if (!eng_conn_alive(c) || c->state == ENG_CONN_DRAIN) {
		eng_buf_put(b);
		return -EPIPE;
	}
	/*
	 * The bound is on what waits behind: a lone frame larger than it
	 * (a big echo or message) still goes when the queue is empty.
	 */
	if (c->queued &&
	    (uint64_t)c->queued + b->len > s->eng->cfg.max_pending) {
		ENG_STAT_ADD(s, dropped, 1);
		eng_buf_put(b);
		slow(s, c);
		return -ENOBUFS;
	}
	return queue_as(s, c, b, now);
}

int eng_conn_queue(struct eng_shard *s, struct eng_conn *c,
		   struct eng_buf *b)
{
	return queue_bounded(s, c, b, true);
}

int eng_conn_deliver(struct eng_shard *s, struct eng_conn *c,
		     struct eng_buf *b)
{
	return queue_bounded(s, c, b, false);
}

/*
 * A send of @c's completed with @res (bytes on the wire, or -errno).
 * Returns how many bytes of the send queue that finished, or -EINPROGRESS
 * when the transport sent a rest of its own and the queue waits for it.
 */
static int xport_sent(struct eng_shard *s, struct eng_conn *c, int res)
{
	return xport(c)->sent ? xport(c)->sent(s, c, res) : res;
}

static void sent(struct eng_shard *s, struct eng_conn *c, int res);

void eng_conn_on_send(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_conn *c = lookup(s, cqe->user_data);

	if (c)
		sent(s, c, cqe->res);
}

/* Completes a send's bookkeeping: @res bytes of the head went out. */
static void sent(struct eng_shard *s, struct eng_conn *c, int res)
{
	struct eng_sq *q;

	c->flags &= ~ENG_CONN_F_SEND;
	res = xport_sent(s, c, res);
	if (res == -EINPROGRESS)
		return;		/* the transport's own rest is on its way */
	if (res < 0 || c->state == ENG_CONN_DEAD) {
		/* EPIPE, ECONNRESET, ECANCELED: the peer is gone. */
		eng_conn_kill(s, c);
		maybe_close_fd(s, c);
		return;
	}
	ENG_STAT_ADD(s, bytes_out, res);
	c->queued -= (uint32_t)res;
	c->nflight = 0;
	/* Pop every frame the send finished; the last may be partial. */
	while ((q = c->sq_head) && res > 0) {
		uint32_t left = q->buf->len - c->sent;

		if ((uint32_t)res < left) {
			c->sent += (uint32_t)res;
			break;
		}
		res -= (int)left;
		if (q->buf->t_us && eng_slot(s, c) % ENG_LAT_EVERY == 0)
			eng_lat_record(s, eng_lat_now() - q->buf->t_us);
		c->sq_head = q->next;
		if (!c->sq_head)
			c->sq_tail = NULL;
		c->sent = 0;
		eng_buf_put(q->buf);
		eng_free(q);
	}
	if (endpoint(c)->on_drained)	/* e.g. a user's unread waiting */
		endpoint(c)->on_drained(s, c);
	flush(s, c);
}

void eng_conn_on_sendv(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_sendv *v = ring_ud_to_ptr(cqe->user_data);
	struct eng_conn *c = &s->conns[v->slot];

	if (c->gen == v->gen && c->state != ENG_CONN_FREE)
		sent(s, c, cqe->res);
	eng_free(v);
}

void eng_conn_on_send_zc(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_zc *zc = ring_ud_to_ptr(cqe->user_data);
	struct eng_conn *c;

	if (cqe->flags & IORING_CQE_F_NOTIF) {
		/* The kernel is done with the pages: drop its reference. */
		if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
			ENG_STAT_ADD(s, zc_copied, 1);
		eng_buf_put(zc->buf);
		eng_free(zc);
		return;
	}
	c = &s->conns[zc->slot];
	if (c->gen == zc->gen && c->state != ENG_CONN_FREE)
		sent(s, c, cqe->res);
	/* Without F_MORE no notification follows. */
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		eng_buf_put(zc->buf);
		eng_free(zc);
	}
}

/* Sends one complete frame built from @payload (copied). */
int eng_conn_send_frame(struct eng_shard *s, struct eng_conn *c, uint8_t op,
			const void *payload, size_t len)
{
	struct eng_buf *b = eng_buf_new(WS_MAX_SERVER_HDR + len);
	size_t h;

	if (!b) {
		eng_conn_kill(s, c);
		return -ENOMEM;
	}
	h = ws_write_header(b->data, op, true, len);
	if (len)
		memcpy(b->data + h, payload, len);
	b->len = (uint32_t)(h + len);
	return eng_conn_queue(s, c, b);
}

/* Queues a close frame and moves to @next (CLOSING or DRAIN). */
static void send_close(struct eng_shard *s, struct eng_conn *c, uint16_t code,
		       const char *reason, uint8_t next)
{
	struct eng_buf *b = eng_buf_new(2 + WS_MAX_CONTROL);

	if (!b) {
		eng_conn_kill(s, c);
		return;
	}
	b->len = (uint32_t)ws_write_close(b->data, code, reason);
	set_state(s, c, next);
	eng_timer_set(s, c, s->tick + eng_ms_to_ticks(ENG_CLOSE_WAIT_MS));
	rx_free(s, c);		/* no message will complete now */
	queue(s, c, b);
}

void eng_conn_close_ws(struct eng_shard *s, struct eng_conn *c, uint16_t code,
		       const char *reason)
{
	if (c->state == ENG_CONN_WS)
		send_close(s, c, code, reason, ENG_CONN_CLOSING);
}

/* Fails the WebSocket connection (RFC 6455 7.1.7) with @code. */
void eng_conn_fail(struct eng_shard *s, struct eng_conn *c, uint16_t code)
{
	ENG_STAT_ADD(s, proto_errors, 1);
	if (c->state == ENG_CONN_CLOSING) {
		/*
		 * Our close is out already and a second one is not allowed
		 * (RFC 6455 5.5.1): stop parsing and finish what is queued.
		 */
		set_state(s, c, ENG_CONN_DRAIN);
		rx_free(s, c);
		flush(s, c);
		return;
	}
	/* The stream can no longer be parsed: send, half-close, drain. */
	send_close(s, c, code, NULL, ENG_CONN_DRAIN);
}

/*
 * Answers an HTTP request. Requests that asked for it, and those http.c
 * will not read past (ENG_CONN_F_KEEP cleared), close the connection
 * after the reply; others, errors included, keep it for the next.
 */
void eng_conn_http_reply(struct eng_shard *s, struct eng_conn *c, int status,
			 const char *extra, const char *ctype,
			 const char *body, size_t len)
{
	struct eng_buf *b;
	char text[64];
	ssize_t n;

	if (!body) {
		len = (size_t)snprintf(text, sizeof(text), "%s\n",
				       hs_reason(status));
		body = text;
	}
	if (status >= 400)
		ENG_STAT_ADD(s, http_errors, 1);
	/* the status line and fixed headers take under 256 bytes */
	b = eng_buf_new(256 + (extra ? strlen(extra) : 0) +
			(ctype ? strlen(ctype) : 0) + len);
	if (!b) {
		eng_conn_kill(s, c);
		return;
	}
	n = hs_write_response((char *)b->data, b->cap, status, extra, ctype,
			      body, len, eng_conn_keep_s(s, c));
	if (n < 0) {
		eng_buf_put(b);
		eng_conn_kill(s, c);
		return;
	}
	b->len = (uint32_t)n;
	eng_conn_http_done(s, c, b);
}

unsigned eng_conn_keep_s(const struct eng_shard *s, const struct eng_conn *c)
{
	/* rounded down: a pool that trusts it never meets our close */
	return c->flags & ENG_CONN_F_KEEP ? s->eng->cfg.http_idle_ms / 1000
					  : 0;
}

/*
 * Times kept-alive @c after an answer: the handshake timeout for the next
 * request if its first bytes are here (@begun), else the idle timeout
 * until they come (eng_conn_on_recv then starts the handshake's).
 */
static void http_rearm(struct eng_shard *s, struct eng_conn *c, bool begun)
{
	const struct eng_cfg *cfg = &s->eng->cfg;

	eng_timer_set(s, c, s->tick + eng_ms_to_ticks(begun ? cfg->handshake_ms
								: cfg->http_idle_ms));
}

/*
 * Queues a complete HTTP response @b (taking its reference), then keeps
 * the connection for the next request or drains and closes it, as the
 * request's ENG_CONN_F_KEEP says.
 */
void eng_conn_http_done(struct eng_shard *s, struct eng_conn *c,
			struct eng_buf *b)
{
	if (!eng_conn_alive(c) || c->state == ENG_CONN_DRAIN) {
		eng_buf_put(b);
		return;
	}
	/*
	 * A client that pipelines requests and reads none of the answers
	 * is a slow consumer too; HTTP has no close frame to tell it so.
	 */
	if (c->queued &&
	    (uint64_t)c->queued + b->len > s->eng->cfg.max_pending) {
		ENG_STAT_ADD(s, slow_closed, 1);
		eng_buf_put(b);
		eng_conn_kill(s, c);
		return;
	}
	if (c->flags & ENG_CONN_F_KEEP) {
		/*
		 * Right for an answer that comes later (the request consumed,
		 * what is held is the next one's); one given while parsing
		 * still counts its own bytes as held, and process() times it.
		 */
		http_rearm(s, c, c->rx && c->rx->plen > c->rx->poff);
	} else {
		set_state(s, c, ENG_CONN_DRAIN);
		eng_timer_set(s, c, s->tick +
			      eng_ms_to_ticks(ENG_CLOSE_WAIT_MS));
	}
	queue(s, c, b);
}

/* ---- timers ------------------------------------------------------------ */

/* Sets the next ping or idle deadline of an open connection. */
static void schedule_ws(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	uint32_t due = UINT32_MAX;

	if (cfg->idle_ms)
		due = c->last_rx + eng_ms_to_ticks(cfg->idle_ms);
	if (cfg->ping_ms) {
		uint32_t quiet = c->last_rx > c->last_ping ? c->last_rx
							   : c->last_ping;
		uint32_t p = quiet + eng_ms_to_ticks(cfg->ping_ms);

		if (p < due)
			due = p;
	}
	if (c->auth && c->auth->exp) {
		uint32_t t = eng_unix_to_tick(s, c->auth->exp +
						 s->eng->cfg.jwt_leeway);

		if (t < due)
			due = t;
	}
	if (due == UINT32_MAX)
		eng_timer_del(s, c);
	else
		eng_timer_set(s, c, due);
}

void eng_conn_reschedule(struct eng_shard *s, struct eng_conn *c)
{
	if (c->state == ENG_CONN_WS)
		schedule_ws(s, c);
}

void eng_conn_on_timer(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_cfg *cfg = &s->eng->cfg;

	switch (c->state) {
	case ENG_CONN_HTTP:		/* slowloris: no complete upgrade in time */
		ENG_STAT_ADD(s, timeouts, 1);
		if (xport(c)->timed_out)
			xport(c)->timed_out(s, c);
		eng_conn_kill(s, c);
		return;
	case ENG_CONN_WS:
		if (c->auth && c->auth->exp &&
		    s->tick >= eng_unix_to_tick(s, c->auth->exp +
						s->eng->cfg.jwt_leeway)) {
			/* No refresh came in time (docs/PROTOCOL.md). */
			send_close(s, c, ENG_CLOSE_EXPIRED, "token expired",
				   ENG_CONN_CLOSING);
			return;
		}
		if (cfg->idle_ms &&
		    s->tick - c->last_rx >= eng_ms_to_ticks(cfg->idle_ms)) {
			ENG_STAT_ADD(s, timeouts, 1);
			send_close(s, c, WS_CLOSE_GOING_AWAY, "idle timeout",
				   ENG_CONN_CLOSING);
			return;
		}
		if (cfg->ping_ms) {
			uint32_t quiet = c->last_rx > c->last_ping ?
					 c->last_rx : c->last_ping;

			/* Ping only connections that have been quiet. */
			if (s->tick - quiet >= eng_ms_to_ticks(cfg->ping_ms)) {
				c->last_ping = s->tick;
				if (eng_conn_send_frame(s, c, WS_OP_PING, NULL, 0) < 0)
					return;
			}
		}
		schedule_ws(s, c);
		return;
	case ENG_CONN_CLOSING:	/* the peer did not answer our close */
	case ENG_CONN_DRAIN:	/* or did not read, or did not close */
		eng_conn_kill(s, c);
		return;
	case ENG_CONN_DEAD:		/* close_direct had no SQE: retry */
		maybe_close_fd(s, c);
		return;
	default:
		return;
	}
}

/*
 * POST /users/{uid}/disconnect reached @c: the shared close frame @f
 * (4003, one reference ours) goes out and the connection drains. One
 * still waiting for its 101 is simply dropped.
 */
void eng_conn_kick(struct eng_shard *s, struct eng_conn *c,
		   struct eng_buf *f)
{
	ENG_STAT_ADD(s, kicked, 1);
	if (c->state != ENG_CONN_WS) {
		eng_buf_put(f);
		if (c->state == ENG_CONN_HTTP)
			eng_conn_kill(s, c);
		return;
	}
	set_state(s, c, ENG_CONN_DRAIN);
	eng_timer_set(s, c, s->tick + eng_ms_to_ticks(ENG_CLOSE_WAIT_MS));
	rx_free(s, c);
	queue(s, c, f);
}

/* SIGTERM: 1001 to open connections, drop those still handshaking. */
void eng_conn_go_away(struct eng_shard *s, struct eng_conn *c)
{
	if (c->state == ENG_CONN_HTTP)
		eng_conn_kill(s, c);
	else if (c->state == ENG_CONN_WS)
		send_close(s, c, WS_CLOSE_GOING_AWAY, "server shutting down",
			   ENG_CONN_CLOSING);
}

/* ---- receiving --------------------------------------------------------- */

static struct eng_rx *rx_get(struct eng_conn *c)
{
	if (!c->rx) {
		c->rx = eng_malloc(sizeof(*c->rx));
		if (c->rx)
			memset(c->rx, 0, sizeof(*c->rx));
	}
	return c->rx;
}

/* A complete data message: what the endpoint does with it. */
static void on_message(struct eng_shard *s, struct eng_conn *c, uint8_t op,
		       const uint8_t *p, size_t len)
{
	const struct eng_endpoint *ep = endpoint(c);

	ENG_STAT_ADD(s, msgs_in, 1);
	if (ep->on_message)
		ep->on_message(s, c, op, p, len);
}

/*
 * The last fragment of a fragmented message arrived: its payload sits in
 * @b after WS_MAX_SERVER_HDR bytes of room, which an endpoint may send
 * on without a copy (the echo).
 */
static void on_assembled(struct eng_shard *s, struct eng_conn *c, uint8_t op,
			 struct eng_buf *b)
{
	const struct eng_endpoint *ep = endpoint(c);

	if (!ep->on_assembled) {
		on_message(s, c, op, b->data + WS_MAX_SERVER_HDR, b->len);
		eng_buf_put(b);
		return;
	}
	ENG_STAT_ADD(s, msgs_in, 1);
	ep->on_assembled(s, c, op, b);
}

static void on_control(struct eng_shard *s, struct eng_conn *c,
		       const struct ws_frame *f, const uint8_t *p)
{
	uint16_t code;
	int ret;

	switch (f->opcode) {
	case WS_OP_PING:
		if (c->state == ENG_CONN_WS)
			eng_conn_send_frame(s, c, WS_OP_PONG, p, f->len);
		return;
	case WS_OP_PONG:	/* unsolicited pongs are allowed: ignore */
		return;
	case WS_OP_CLOSE:
		ret = ws_close_parse(p, f->len, &code);
		if (ret < 0) {
			eng_conn_fail(s, c, ws_close_code(ret));
			return;
		}
		c->flags |= ENG_CONN_F_PEER_CLOSED;
		if (c->state == ENG_CONN_CLOSING) {
			/* Our close was first; the handshake is complete. */
			set_state(s, c, ENG_CONN_DRAIN);
			flush(s, c);
			return;
		}
		/* Echo the peer's code (RFC 6455 5.5.1), then close. */
		send_close(s, c, code == WS_CLOSE_NO_STATUS ? 0 : code, NULL,
			   ENG_CONN_DRAIN);
		return;
	}
}

/*
 * Appends a fragment's payload to the message being assembled. Returns 0
 * or -ENOMEM. The message stays within max_message (ws_msg_frame).
 */
static int assemble(struct eng_rx *rx, const uint8_t *p, size_t len)
{
	struct eng_buf *b = rx->msg;
	size_t need = WS_MAX_SERVER_HDR + (size_t)b->len + len;

	if (need > b->cap) {
		size_t cap = (size_t)b->cap * 2;
		struct eng_buf *nb;

		if (cap < need)
			cap = need;
		nb = eng_realloc(b, sizeof(*b) + cap);
		if (!nb)
			return -ENOMEM;
		nb->cap = (uint32_t)cap;
		rx->msg = b = nb;
	}
	memcpy(b->data + WS_MAX_SERVER_HDR + b->len, p, len);
	b->len += (uint32_t)len;
	return 0;
}

/*
 * Handles the frame at @p. Returns the bytes it used, or 0 when the frame
 * is incomplete (then *@want is the whole frame's size when known) or the
 * connection failed.
 */
static size_t ws_step(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		      size_t n, size_t *want)
{
	uint64_t max = s->eng->cfg.max_message;
	struct ws_msg tmp, *m;
	struct ws_frame f;
	uint8_t *payload;
	ssize_t h;
	int ret;

	h = ws_parse(&f, p, n, max);
	if (h == -EAGAIN)
		return 0;
	if (h < 0) {
		eng_conn_fail(s, c, ws_close_code((int)h));
		return 0;
	}
	if (n - (size_t)h < f.len) {
		*want = (size_t)h + f.len;
		return 0;
	}
	payload = p + h;
	ws_unmask(payload, f.len, f.key, 0);

	if (ws_is_control(f.opcode)) {
		on_control(s, c, &f, payload);
		return (size_t)h + f.len;
	}
	if (c->state != ENG_CONN_WS)	/* data after our close: ignored */
		return (size_t)h + f.len;

	if (c->rx && c->rx->msg) {
		m = &c->rx->ws;
	} else {
		memset(&tmp, 0, sizeof(tmp));
		m = &tmp;
	}
	ret = ws_msg_frame(m, &f, max);
	if (ret == 0 && m->opcode == WS_OP_TEXT)
		ret = ws_utf8_feed(&m->utf8, payload, f.len, f.fin);
	if (ret < 0) {
		eng_conn_fail(s, c, ws_close_code(ret));
		return 0;
	}
	if (m == &tmp && f.fin) {	/* the common case: one frame */
		on_message(s, c, m->opcode, payload, f.len);
		return (size_t)h + f.len;
	}
	if (m == &tmp) {		/* first fragment: start assembling */
		struct eng_rx *rx = rx_get(c);

		uint64_t cap = 2 * f.len + 256;

		if (cap > max)
			cap = max;
		if (!rx || !(rx->msg = eng_buf_new(WS_MAX_SERVER_HDR + cap)))
			goto nomem;
		rx->ws = tmp;
		m = &rx->ws;
	}
	if (assemble(c->rx, payload, f.len) < 0)
		goto nomem;
	if (f.fin) {
		struct eng_buf *b = c->rx->msg;
		uint8_t op = m->opcode;

		c->rx->msg = NULL;
		ws_msg_end(m);
		on_assembled(s, c, op, b);
	}
	return (size_t)h + f.len;
nomem:
	eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
	return 0;
}

void eng_conn_upgrade(struct eng_shard *s, struct eng_conn *c,
		      const struct hs_str *key, uint8_t kind)
{
	struct eng_buf *b = eng_buf_new(256);
	ssize_t n;

	if (!b) {
		eng_conn_kill(s, c);
		return;
	}
	n = hs_write_101((char *)b->data, b->cap, key);
	if (n < 0) {
		eng_buf_put(b);
		eng_conn_http_reply(s, c, 500, NULL, NULL, NULL, 0);
		return;
	}
	b->len = (uint32_t)n;
	c->kind = kind;
	set_state(s, c, ENG_CONN_WS);
	c->flags &= ~ENG_CONN_F_KEEP;
	c->last_rx = c->last_ping = s->tick;
	ENG_STAT_ADD(s, upgraded, 1);
	schedule_ws(s, c);
	queue(s, c, b);
}

/* A request head (and body) for @c's endpoint: plain HTTP's. */
static size_t http_step(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
			size_t n, size_t *want)
{
	const struct eng_endpoint *ep = endpoint(c);

	if (!ep->on_request) {
		eng_conn_kill(s, c);	/* nobody serves HTTP here */
		return 0;
	}
	return ep->on_request(s, c, p, n, want);
}

/*
 * Parses as much of @p as forms complete units. Returns the bytes used;
 * the rest is an incomplete unit (*@want: its full size when known). An
 * HTTP connection waiting for a publish to be sequenced parses no further
 * request, so replies leave in request order.
 */
static size_t process(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		      size_t n, size_t *want)
{
	uint32_t queued = c->queued;
	size_t off = 0, used;

	*want = 0;
	while (off < n && parsing(c) && !(c->flags & ENG_CONN_F_WAIT)) {
		if (c->state == ENG_CONN_HTTP)
			used = http_step(s, c, p + off, n - off, want);
		else
			used = ws_step(s, c, p + off, n - off, want);
		if (!used)
			break;
		off += used;
	}
	/* Answered here, kept alive: what is left begins the next request. */
	if (c->state == ENG_CONN_HTTP && c->queued != queued &&
	    !(c->flags & ENG_CONN_F_WAIT))
		http_rearm(s, c, off < n);
	return off;
}

/*
 * Brings the shard's totals up to date with @rx after it changed. What a
 * client controls is counted as bytes it sent that are held (carried and
 * not yet parsed, or assembled fragments); what they cost as allocated.
 */
static void rx_count(struct eng_shard *s, struct eng_rx *rx)
{
	uint32_t held = (rx->plen - rx->poff) + (rx->msg ? rx->msg->len : 0);
	uint32_t alloc = rx->pcap + (rx->msg ? rx->msg->cap : 0);

	s->rx_held += (size_t)held - rx->held;
	s->rx_alloc += (size_t)alloc - rx->alloc;
	rx->held = held;
	rx->alloc = alloc;
	if (s->rx_alloc > s->rx_peak)
		s->rx_peak = s->rx_alloc;
	rx_publish(s);
}

/*
 * Past this shard's share of --max-partial-memory, the connection that
 * holds the most is closed (1009; an HTTP request is dropped), however
 * small the one that tipped it over: one client cannot starve the rest.
 * Rare by design, so a scan of the table is fine. @extra: bytes the
 * transport carries besides (a TLS record cut by a read).
 */
bool eng_rx_room(struct eng_shard *s, size_t extra)
{
	while (s->rx_held + extra > s->rx_budget) {
		struct eng_conn *v = NULL;
		uint32_t most = 0;

		for (uint32_t i = 0; i < s->nr_conns; i++) {
			struct eng_rx *rx = s->conns[i].rx;

			if (rx && rx->held > most) {
				most = rx->held;
				v = &s->conns[i];
			}
		}
		if (!v)
			return false;
		ENG_STAT_ADD(s, partial_closed, 1);
		if (v->state == ENG_CONN_WS || v->state == ENG_CONN_CLOSING)
			eng_conn_fail(s, v, WS_CLOSE_TOO_BIG);
		else
			eng_conn_kill(s, v);
		rx_free(s, v);		/* whatever the close left */
	}
	return true;
}

/* After a read changed @c's receive state: count it, bound the total. */
static void rx_settle(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_rx *rx = c->rx;

	if (!rx)
		return;
	if (!rx->plen && !rx->msg) {
		rx_free(s, c);	/* idle again: no receive memory of its own */
		return;
	}
	rx_count(s, rx);
	if (s->rx_held > s->rx_budget)
		eng_rx_room(s, 0);
}

/* Makes room for @cap bytes of carried data. Returns 0 or -ENOMEM. */
static int reserve(struct eng_rx *rx, size_t cap)
{
	uint8_t *np;

	if (cap <= rx->pcap)
		return 0;
	if (cap > UINT32_MAX)
		return -ENOMEM;
	if (cap < 2 * (size_t)rx->pcap)
		cap = 2 * (size_t)rx->pcap;
	np = eng_realloc(rx->part, cap);
	if (!np)
		return -ENOMEM;
	rx->part = np;
	rx->pcap = (uint32_t)cap;
	return 0;
}

/*
 * Gives carried memory back once it is consumed: none when nothing is
 * left (a fragmented message may keep rx for long), and a smaller block
 * when a large one holds little.
 */
static void shrink(struct eng_rx *rx)
{
	uint8_t *np;

	if (!rx->plen) {
		eng_free(rx->part);
		rx->part = NULL;
		rx->pcap = 0;
		return;
	}
	if (rx->pcap <= 65536 || rx->plen > rx->pcap / 4)
		return;
	np = eng_realloc(rx->part, rx->plen);
	if (np) {
		rx->part = np;
		rx->pcap = rx->plen;
	}
}

/*
 * Parses the carried bytes again, once they can complete a unit: a frame
 * or request whose size is known waits until it is all here, and a
 * request head can only complete with a newline, so slowloris-style
 * 1-byte writes cost no re-parse each.
 */
static void drain_part(struct eng_shard *s, struct eng_conn *c, bool newline)
{
	struct eng_rx *rx = c->rx;
	size_t used, want, rest;

	if (!rx || !rx->plen)
		goto out;
	rest = rx->plen - rx->poff;
	if (rest < rx->want)
		return;
	if (!rx->want && c->state == ENG_CONN_HTTP && !newline &&
	    rest <= HS_DEF_MAX_BYTES)
		return;
	used = process(s, c, rx->part + rx->poff, rest, &want);
	if (c->rx != rx)	/* failed or killed: rx is gone */
		return;
	rest = parsing(c) ? rest - used : 0;
	rx->poff += (uint32_t)used;
	/*
	 * A request that waits for its answer stops the parse after it, so
	 * pipelined requests are consumed one at a time: moving the rest
	 * down only once the consumed part outweighs it keeps that linear.
	 */
	if (!rest || rx->poff >= rest) {
		memmove(rx->part, rx->part + rx->poff, rest);
		rx->plen = (uint32_t)rest;
		rx->poff = 0;
		shrink(rx);
	}
	/* room grows with the bytes that arrive, not with what a header
	 * announces */
	rx->want = (uint32_t)want;
out:
	rx_settle(s, c);
}

/*
 * Bytes a client may send ahead while a request of its waits for its
 * answer: a whole further request of the largest size, or the pending
 * bound if that is more. Past it the client is dropped, since replies
 * must leave in order and none can go before the waiting one.
 */
static size_t wait_backlog(const struct eng_cfg *cfg)
{
	size_t one = HS_DEF_MAX_BYTES + (size_t)cfg->max_message;

	return one > cfg->max_pending ? one : cfg->max_pending;
}

static void feed(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		 size_t n)
{
	struct eng_rx *rx = c->rx;
	size_t used, want, rest;

	if ((rx && rx->plen) || (c->flags & ENG_CONN_F_WAIT)) {
		/* Bytes carried from earlier reads come first. */
		rx = rx_get(c);
		if (!rx)
			goto nomem;
		if ((c->flags & ENG_CONN_F_WAIT) && (size_t)rx->plen - rx->poff +
		    n > wait_backlog(&s->eng->cfg)) {
			ENG_STAT_ADD(s, http_errors, 1);
			eng_conn_kill(s, c);
			return;
		}
		if (reserve(rx, (size_t)rx->plen + n) < 0)
			goto nomem;
		memcpy(rx->part + rx->plen, p, n);
		rx->plen += (uint32_t)n;
		if (!(c->flags & ENG_CONN_F_WAIT))
			drain_part(s, c, c->state != ENG_CONN_HTTP ||
					 memchr(p, '\n', n));
		rx_settle(s, c);	/* drain_part may wait for more */
		return;
	}
	used = process(s, c, p, n, &want);
	rest = n - used;
	if (parsing(c) && rest) {
		/* A unit cut by the read: keep what came, room for no more */
		rx = rx_get(c);
		if (!rx || reserve(rx, rest) < 0)
			goto nomem;
		memcpy(rx->part, p + used, rest);
		rx->plen = (uint32_t)rest;
		rx->poff = 0;
		rx->want = (uint32_t)want;
	}
	rx_settle(s, c);
	return;
nomem:
	if (parsing(c))
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
	rx_settle(s, c);
}

/* A publish was sequenced: go on with requests that arrived meanwhile. */
/*
 * Not at once: the answer may come while this very connection is being
 * parsed (a publish its own shard sequences), and parsing again from in
 * there would handle the same request twice. The shard loop calls
 * eng_conn_resumed() after the batch.
 */
void eng_conn_resume(struct eng_shard *s, struct eng_conn *c)
{
	if (c->flags & ENG_CONN_F_RESUME)
		return;
	c->flags |= ENG_CONN_F_RESUME;
	s->resume[s->nr_resume++] = eng_slot(s, c);
}

void eng_conn_resumed(struct eng_shard *s, struct eng_conn *c)
{
	if (!(c->flags & ENG_CONN_F_RESUME))
		return;		/* freed (and maybe reused) since */
	c->flags &= ~ENG_CONN_F_RESUME;
	if (parsing(c) && !(c->flags & ENG_CONN_F_WAIT))
		drain_part(s, c, true);
}

/* ---- recv and accept --------------------------------------------------- */

/* What a read brought, into the receive path (the transport seam). */
static void xport_recv(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		       size_t n)
{
	/* TLS: records opened in place; their plaintext to eng_conn_feed() */
	if (xport(c)->recv(s, c, p, n))
		flush(s, c);	/* handshake output, or a KeyUpdate owed */
}

static bool plain_recv(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		       size_t n)
{
	feed(s, c, p, n);
	return false;
}

void eng_conn_feed(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		   size_t n)
{
	if (parsing(c))
		feed(s, c, p, n);
}

static void arm_recv(struct eng_shard *s, struct eng_conn *c)
{
	/* No buffer of its own: one comes from the shard's pool per read. */
	if (ring_recv(&s->ring, eng_slot(s, c), s->rbufs.bgid,
		      ud_of(s, c, ENG_OP_RECV))) {
		eng_conn_kill(s, c);
		return;
	}
	c->flags |= ENG_CONN_F_RECV;
}

void eng_conn_rearm(struct eng_shard *s, struct eng_conn *c)
{
	if (!(c->flags & ENG_CONN_F_REARM))
		return;		/* freed and reused since it was listed */
	c->flags &= ~ENG_CONN_F_REARM;
	if (c->state == ENG_CONN_DEAD)
		maybe_close_fd(s, c);
	else if (c->state != ENG_CONN_FREE && !(c->flags & ENG_CONN_F_RECV))
		arm_recv(s, c);
}

void eng_conn_on_recv(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_conn *c = lookup(s, cqe->user_data);
	bool more = cqe->flags & IORING_CQE_F_MORE;
	unsigned bid = ring_bufs_bid(cqe->flags);
	bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;

	if (!c) {
		if (has_buf)
			ring_bufs_recycle(&s->rbufs, bid);
		return;
	}
	if (!more)
		c->flags &= ~ENG_CONN_F_RECV;
	if (cqe->res > 0) {
		ENG_STAT_ADD(s, bytes_in, cqe->res);
		c->last_rx = s->tick;
		/*
		 * A request's first byte: from here it has the handshake
		 * timeout to arrive whole, whatever idle time was left.
		 */
		if (c->state == ENG_CONN_HTTP && !c->rx &&
		    !(c->flags & ENG_CONN_F_WAIT))
			eng_timer_set(s, c, s->tick +
				      eng_ms_to_ticks(s->eng->cfg.handshake_ms));
		if (parsing(c))
			xport_recv(s, c, ring_bufs_ptr(&s->rbufs, bid),
				   (size_t)cqe->res);
		/* DRAIN discards what the peer still sends. */
	}
	if (has_buf)
		ring_bufs_recycle(&s->rbufs, bid);

	if (cqe->res == -ENOBUFS && c->state != ENG_CONN_DEAD) {
		/* The group ran dry; re-arm once this batch refilled it. */
		ENG_STAT_ADD(s, recv_nobufs, 1);
		ring_bufs_starved(&s->rbufs);
		if (!(c->flags & ENG_CONN_F_REARM)) {
			c->flags |= ENG_CONN_F_REARM;
			s->rearm[s->nr_rearm++] = eng_slot(s, c);
		}
	} else if (cqe->res <= 0) {
		eng_conn_kill(s, c);	/* EOF, reset, or cancelled */
	} else if (!more && c->state != ENG_CONN_DEAD) {
		arm_recv(s, c);		/* multishot ended early: go on */
	}
	maybe_close_fd(s, c);
}

void eng_conn_accepted(struct eng_shard *s, uint32_t slot, unsigned xp)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	struct eng_conn *c;
	uint64_t total;

	if (slot >= s->nr_conns)
		return;		/* cannot happen: the table has nr_conns */
	c = &s->conns[slot];
	/*
	 * The kernel hands out a slot only after close_direct emptied it,
	 * so a slot that still looks busy has its close CQE in this batch.
	 */
	if (c->state != ENG_CONN_FREE)
		release(s, c);
	set_state(s, c, ENG_CONN_HTTP);
	c->kind = ENG_CONN_K_HTTP;
	c->xport = xp < ENG_XPORTS ? xp : ENG_XPORT_PLAIN;
	c->flags = 0;
	c->nsubs = 0;
	c->subs = NULL;
	c->auth = NULL;
	c->tprev = c->tnext = ENG_NIL;
	c->tdue = 0;
	c->last_rx = c->last_ping = s->tick;
	c->sent = 0;
	c->queued = 0;
	c->sq_head = c->sq_tail = NULL;
	c->rx = NULL;
	atomic_fetch_add_explicit(&s->stats.conns, 1, memory_order_relaxed);
	ENG_STAT_ADD(s, accepted, 1);
	total = atomic_fetch_add_explicit(&s->eng->nconns, 1,
					  memory_order_relaxed) + 1;
	if (xport(c)->accept && xport(c)->accept(s, c) < 0) {
		eng_conn_kill(s, c);	/* over TLS's handshake cap */
		return;
	}
	arm_recv(s, c);
	if (total > cfg->max_conns) {
		ENG_STAT_ADD(s, rejected, 1);
		eng_conn_http_reply(s, c, 503, "Retry-After: 5\r\n", NULL, NULL, 0);
		return;
	}
	eng_timer_set(s, c, s->tick + eng_ms_to_ticks(cfg->handshake_ms));
}
