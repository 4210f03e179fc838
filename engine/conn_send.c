/* SPDX-License-Identifier: MIT */
/*
 * conn_send.c: what a connection sends. Frames and answers are queued as
 * references to shared buffers (struct eng_sq), never copied; the queue
 * goes out once per loop turn (or --batch-window, for deliveries), all of
 * it in one send, through the connection's transport; a send's
 * completion pops what it finished. A queue past --max-pending-bytes is a
 * slow consumer's: what is not on the wire is dropped and a 1008 sent.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "buf.h"
#include "conn_int.h"
#include "hs.h"
#include "lat.h"
#include "timer.h"
#include "zframe.h"

static bool xport_send(struct eng_shard *s, struct eng_conn *c);

void conn__flush(struct eng_shard *s, struct eng_conn *c)
{
	/* quiesced for a hand-over: what is queued stays, to be carried */
	if ((c->flags & ENG_CONN_F_SEND) || c->state == ENG_CONN_DEAD ||
	    (s->ho_mute && eng_conn_ho_quiet(s, c)))
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
				     conn__ud(s, c, ENG_OP_CONN_CANCEL))) {
			eng_conn_kill(s, c);
			return;
		}
		c->flags |= ENG_CONN_F_SHUT | ENG_CONN_F_SHUTTING;
	}
}

/*
 * The transport seam, its sending side: xport_send() puts the send queue
 * on the wire, xport_sent() says how much of it a send's completion
 * covers, each through the connection's transport (struct eng_xport);
 * xport_recv() in conn_recv.c takes what a read brought. Plain goes
 * straight through; the send queue above knows nothing of the wire.
 */

/*
 * Puts @c's bytes on the wire, through its transport. Returns false when
 * there was nothing to send, true when a send went out or @c had to be
 * killed.
 */
static bool xport_send(struct eng_shard *s, struct eng_conn *c)
{
	int r = conn__xport(c)->send(s, c);

	if (r < 0)
		eng_conn_kill(s, c);
	return r != 0;
}

/*
 * Plain: puts the head of @c's queue (or several entries) on the wire.
 * Returns 1 when a send went out, 0 when there was nothing to send, or
 * -errno.
 */
int conn__plain_send(struct eng_shard *s, struct eng_conn *c)
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
		unsigned n;

		if (!v)
			return -ENOMEM;
		n = conn__sq_iov(c, v->iov, ENG_IOV_MAX);
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
			     conn__ud(s, c, ENG_OP_SEND))) {
		return -EAGAIN;	/* the kernel reads b until this SEND's CQE */
	} else {
		c->nflight = 1;
	}
	c->flags |= ENG_CONN_F_SEND;
	ENG_STAT_ADD(s, sends, 1);
	return 1;
}

unsigned conn__sq_cut(struct eng_conn *c)
{
	struct eng_sq *q, *keep = NULL;
	unsigned n = 0;

	/*
	 * Frames the send in flight covers stay until its completion; so do
	 * those of one a hand-over cancelled (c->nflight kept): TLS sealed
	 * them, and sends the rest of those records before anything else.
	 */
	q = c->sq_head;
	if (q && ((c->flags & ENG_CONN_F_SEND) || c->nflight)) {
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
	return n;
}

void conn__sq_free(struct eng_conn *c)
{
	struct eng_sq *q = c->sq_head;

	while (q) {
		struct eng_sq *next = q->next;

		eng_buf_put(q->buf);
		eng_free(q);
		q = next;
	}
	c->sq_head = c->sq_tail = NULL;
	c->queued = 0;
	c->sent = 0;
}

/*
 * A slow consumer: its queue hit --max-pending-bytes. Frames not yet on
 * the wire are dropped (only the one in flight stays), the connection is
 * told 1008 and drained. Its memory is bounded from here on.
 */
static void slow(struct eng_shard *s, struct eng_conn *c)
{
	ENG_STAT_ADD(s, dropped, conn__sq_cut(c));
	ENG_STAT_ADD(s, slow_closed, 1);
	conn__send_close(s, c, WS_CLOSE_POLICY, "slow consumer", ENG_CONN_DRAIN);
	/*
	 * A stalled reader may still come back and read its close: hold it
	 * (bounded: the frames of the send in flight and the close) a while longer.
	 */
	if (c->state == ENG_CONN_DRAIN)
		eng_timer_set(s, c, s->tick + eng_ms_to_ticks(ENG_SLOW_WAIT_MS));
}

int conn__sq_push(struct eng_conn *c, struct eng_buf *b)
{
	struct eng_sq *q = eng_malloc(sizeof(*q));

	if (!q)
		return -ENOMEM;
	q->next = NULL;
	q->buf = b;
	if (c->sq_tail)
		c->sq_tail->next = q;
	else
		c->sq_head = q;
	c->sq_tail = q;
	c->queued += b->len;
	return 0;
}

unsigned conn__sq_iov(const struct eng_conn *c, struct iovec *iov,
		      unsigned max)
{
	const struct eng_sq *q = c->sq_head;
	unsigned n = 0;

	for (; q && n < max; q = q->next, n++) {
		iov[n].iov_base = q->buf->data + q->buf->start +
				  (n ? 0 : c->sent);
		iov[n].iov_len = q->buf->len - (n ? 0 : c->sent);
	}
	return n;
}

/*
 * Appends @b, taking over the caller's reference; never fails softly.
 * @now: not a delivery, so it goes this loop turn whatever the window.
 */
static int queue_as(struct eng_shard *s, struct eng_conn *c,
		    struct eng_buf *b, bool now)
{
	if (conn__sq_push(c, b) < 0) {
		eng_buf_put(b);
		eng_conn_kill(s, c);
		return -ENOMEM;
	}
	ENG_STAT_ADD(s, frames_out, 1);
	if (!(c->flags & ENG_CONN_F_FLUSH)) {
		if (s->nr_flushq == s->nr_conns) {
			conn__flush(s, c);	/* a slot listed twice filled it: now */
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
	conn__flush(s, c);
}

int conn__queue(struct eng_shard *s, struct eng_conn *c, struct eng_buf *b)
{
	return queue_as(s, c, b, true);
}

/*
 * To a connection that negotiated permessage-deflate, a push frame that
 * has a compressed twin (zframe.h) goes as the twin, @b's reference for
 * one of the twin's; a frame of its own (a reply, an echo) is compressed
 * now. Its data messages are counted, compressed or plain.
 */
static struct eng_buf *pick(struct eng_shard *s, const struct eng_conn *c,
			    struct eng_buf *b)
{
	struct eng_buf *z = b->z;

	if (!c->deflate || c->kind == ENG_CONN_K_HTTP || b->len < 2 ||
	    ws_is_control(b->data[b->start] & 0x0f))
		return b;
	if (!z) {
		/* never a shared frame: that is compressed once, or not */
		if (!(b->flags & ENG_BUF_F_FRAME) &&
		    atomic_load_explicit(&b->refs, memory_order_relaxed) == 1)
			b = eng_zframe_own(s, b);
		if (b->data[b->start] & WS_RSV1)
			ENG_STAT_ADD(s, sent_deflated, 1);
		else
			ENG_STAT_ADD(s, sent_plain, 1);
		return b;
	}
	ENG_STAT_ADD(s, sent_deflated, 1);
	eng_buf_get(z);		/* first: @b's may be the last, freeing z's */
	eng_buf_put(b);
	return z;
}

static int queue_bounded(struct eng_shard *s, struct eng_conn *c,
			 struct eng_buf *b, bool now)
{
	if (!eng_conn_alive(c) || c->state == ENG_CONN_DRAIN) {
		eng_buf_put(b);
		return -EPIPE;
	}
	b = pick(s, c, b);
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
	return conn__xport(c)->sent ? conn__xport(c)->sent(s, c, res) : res;
}

static void sent(struct eng_shard *s, struct eng_conn *c, int res);

void eng_conn_on_send(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_conn *c = conn__lookup(s, cqe->user_data);

	if (c)
		sent(s, c, cqe->res);
}

void conn__sq_sent(struct eng_shard *s, struct eng_conn *c, uint32_t res)
{
	struct eng_sq *q;

	c->queued -= res;
	c->nflight = 0;
	/* Pop every frame the send finished; the last may be partial. */
	while ((q = c->sq_head) && res > 0) {
		uint32_t left = q->buf->len - c->sent;

		if (res < left) {
			c->sent += res;
			break;
		}
		res -= left;
		if (q->buf->t_us && eng_slot(s, c) % ENG_LAT_EVERY == 0)
			eng_lat_record(s, eng_lat_now() - q->buf->t_us);
		c->sq_head = q->next;
		if (!c->sq_head)
			c->sq_tail = NULL;
		c->sent = 0;
		eng_buf_put(q->buf);
		eng_free(q);
	}
}

/* Completes a send's bookkeeping: @res bytes of the head went out. */
static void sent(struct eng_shard *s, struct eng_conn *c, int res)
{
	c->flags &= ~ENG_CONN_F_SEND;
	if (res == -ECANCELED && c->state != ENG_CONN_DEAD) {
		/*
		 * A hand-over stopped it: all stays queued. The transport is
		 * told first: what it sealed for the send is spent and kept,
		 * and c->nflight still counts the entries it covers (a cut
		 * keeps them; tlsio sends the sealed rest first).
		 */
		(void)xport_sent(s, c, res);
		conn__flush(s, c);	/* unless still quiesced */
		return;
	}
	res = xport_sent(s, c, res);
	if (res == -EINPROGRESS)
		return;		/* the transport's own rest is on its way */
	if (res < 0 || c->state == ENG_CONN_DEAD) {
		/* EPIPE, ECONNRESET, ECANCELED: the peer is gone. */
		eng_conn_kill(s, c);
		conn__maybe_close_fd(s, c);
		return;
	}
	ENG_STAT_ADD(s, bytes_out, res);
	conn__sq_sent(s, c, (uint32_t)res);
	if (conn__endpoint(c)->on_drained)	/* e.g. a user's unread waiting */
		conn__endpoint(c)->on_drained(s, c);
	conn__flush(s, c);
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
void conn__send_close(struct eng_shard *s, struct eng_conn *c, uint16_t code,
		       const char *reason, uint8_t next)
{
	struct eng_buf *b = eng_buf_new(2 + WS_MAX_CONTROL);

	if (!b) {
		eng_conn_kill(s, c);
		return;
	}
	b->len = (uint32_t)ws_write_close(b->data, code, reason);
	conn__set_state(s, c, next);
	eng_timer_set(s, c, s->tick + eng_ms_to_ticks(ENG_CLOSE_WAIT_MS));
	conn__rx_free(s, c);		/* no message will complete now */
	conn__queue(s, c, b);
}

void eng_conn_close_ws(struct eng_shard *s, struct eng_conn *c, uint16_t code,
		       const char *reason)
{
	if (c->state == ENG_CONN_WS)
		conn__send_close(s, c, code, reason, ENG_CONN_CLOSING);
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
		conn__set_state(s, c, ENG_CONN_DRAIN);
		conn__rx_free(s, c);
		conn__flush(s, c);
		return;
	}
	/* The stream can no longer be parsed: send, half-close, drain. */
	conn__send_close(s, c, code, NULL, ENG_CONN_DRAIN);
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
		conn__http_rearm(s, c, c->rx && c->rx->plen > c->rx->poff);
	} else {
		conn__set_state(s, c, ENG_CONN_DRAIN);
		eng_timer_set(s, c, s->tick +
			      eng_ms_to_ticks(ENG_CLOSE_WAIT_MS));
	}
	conn__queue(s, c, b);
}
