/* SPDX-License-Identifier: MIT */
/*
 * conn.c: one connection's life on its shard: accept, its states, its
 * timers (ping, idle, handshake and token deadlines), the kick and the
 * graceful stop, and the deferred close: eng_conn_kill() cancels the
 * socket's I/O, and the slot is closed and reused only after every SQE
 * that references it completed. Also the tables of endpoints and
 * transports (conn.h), which are all it knows of either. What it sends
 * is conn_send.c's, what it receives conn_recv.c's.
 */
#include <errno.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "conn_int.h"
#include "handover.h"
#include "hs.h"
#include "timer.h"
#include "user.h"	/* ENG_CLOSE_EXPIRED */

bool eng_conn_alive(const struct eng_conn *c)
{
	return c->state != ENG_CONN_FREE && c->state != ENG_CONN_DEAD;
}

/* Written before the shards start, read-only after (eng_endpoint_add). */
const struct eng_endpoint *conn__endpoints[ENG_CONN_KINDS];

int eng_endpoint_add(const struct eng_endpoint *ep)
{
	if (ep->kind >= ENG_CONN_KINDS)
		return -EINVAL;
	if (conn__endpoints[ep->kind] && conn__endpoints[ep->kind] != ep)
		return -EEXIST;
	conn__endpoints[ep->kind] = ep;
	return 0;
}

const struct eng_endpoint *eng_endpoint_find(const struct eng_shard *s,
					     const struct hs_str *path)
{
	for (unsigned k = 0; k < ENG_CONN_KINDS; k++) {
		const struct eng_endpoint *ep = conn__endpoints[k];
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

/* Plain carries nothing of its own in a live hand-over: the socket is all. */
static int plain_ho_save(struct eng_shard *s, struct eng_conn *c,
			 struct eng_ho_buf *b)
{
	(void)s;
	(void)c;
	(void)b;
	return 0;
}

static int plain_ho_load(struct eng_shard *s, struct eng_conn *c,
			 struct eng_ho_rd *r)
{
	(void)s;
	(void)c;
	return r->len ? -EBADMSG : 0;
}

/* Plain: the socket's bytes are the connection's own. */
const struct eng_xport conn__plain = {
	.name = "plain",
	.id = ENG_XPORT_PLAIN,
	.recv = conn__plain_recv,
	.send = conn__plain_send,
	.ho_save = plain_ho_save,
	.ho_load = plain_ho_load,
};

/* Written before the shards start, read-only after (eng_xport_add). */
const struct eng_xport *conn__xports[ENG_XPORTS] = {
	[ENG_XPORT_PLAIN] = &conn__plain,
};

int eng_xport_add(const struct eng_xport *x)
{
	if (x->id >= ENG_XPORTS)
		return -EINVAL;
	if (conn__xports[x->id] && conn__xports[x->id] != x)
		return -EEXIST;
	conn__xports[x->id] = x;
	return 0;
}

/* Every change of state goes here: the shard's /ws bitmap follows it. */
void conn__set_state(struct eng_shard *s, struct eng_conn *c, uint8_t st)
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
	const struct eng_endpoint *ep = conn__endpoint(c);

	if (ep->on_close)
		ep->on_close(s, c);
	conn__sq_free(c);
	conn__rx_free(s, c);
	if (conn__xport(c)->release)
		conn__xport(c)->release(s, c);
	eng_timer_del(s, c);
	if (c->deflate && c->kind != ENG_CONN_K_HTTP)	/* upgraded with it */
		ENG_STAT_SUB(s, deflate_conns, 1);
	c->gen++;		/* late CQEs for the old connection are stale */
	conn__set_state(s, c, ENG_CONN_FREE);
	c->flags = 0;
	/* quiesced for a hand-over, then closed: the slot is not waited for */
	if (eng_conn_ho_quiet(s, c))
		eng_conn_ho_resume(s, c);
	atomic_fetch_sub_explicit(&s->stats.conns, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&s->eng->nconns, 1, memory_order_relaxed);
	ENG_STAT_ADD(s, closed, 1);
}

/* Closes the fixed file once no SQE of this connection is in flight. */
void conn__maybe_close_fd(struct eng_shard *s, struct eng_conn *c)
{
	/*
	 * Not while anything naming the slot is in flight: a cancel or a
	 * shutdown still on its way would hit whoever reuses the slot.
	 */
	if (c->state != ENG_CONN_DEAD ||
	    (c->flags & (ENG_CONN_F_RECV | ENG_CONN_F_SEND | ENG_CONN_F_CLOSE_FD |
			 ENG_CONN_F_CANCEL | ENG_CONN_F_SHUTTING)))
		return;
	if (ring_close(&s->ring, eng_slot(s, c), conn__ud(s, c, ENG_OP_CLOSE))) {
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
	conn__set_state(s, c, ENG_CONN_DEAD);
	eng_timer_del(s, c);
	conn__rx_free(s, c);
	/* TLS: close_notify or the alert owed, before the shutdown below */
	if (conn__xport(c)->close)
		conn__xport(c)->close(s, c);
	if ((c->flags & (ENG_CONN_F_RECV | ENG_CONN_F_SEND)) &&
	    !ring_cancel_slot(&s->ring, eng_slot(s, c),
			      conn__ud(s, c, ENG_OP_CONN_CANCEL)))
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
	    !ring_cancel(&s->ring, conn__ud(s, c, ENG_OP_RECV),
			 ring_ud(ENG_OP_CANCEL, 0, 0)))
		c->flags |= ENG_CONN_F_RCANCEL;
	conn__maybe_close_fd(s, c);
}

/* A cancel or a shutdown of this connection's completed. */
void eng_conn_on_cancel(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_conn *c = conn__lookup(s, cqe->user_data);

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
	conn__maybe_close_fd(s, c);
}

void eng_conn_on_close(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_conn *c = conn__lookup(s, cqe->user_data);

	/* Even a failed close leaves nothing of ours in the kernel. */
	if (c && c->state == ENG_CONN_DEAD)
		release(s, c);
}

/*
 * Times kept-alive @c after an answer: the handshake timeout for the next
 * request if its first bytes are here (@begun), else the idle timeout
 * until they come (eng_conn_on_recv then starts the handshake's).
 */
void conn__http_rearm(struct eng_shard *s, struct eng_conn *c, bool begun)
{
	const struct eng_cfg *cfg = &s->eng->cfg;

	eng_timer_set(s, c, s->tick + eng_ms_to_ticks(begun ? cfg->handshake_ms
								: cfg->http_idle_ms));
}

/* Sets the next ping or idle deadline of an open connection. */
void conn__schedule_ws(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_endpoint *ep = conn__endpoint(c);
	const struct eng_cfg *cfg = &s->eng->cfg;
	uint32_t due = UINT32_MAX;

	if (ep->due)
		due = ep->due(s, c);
	else if (cfg->idle_ms)
		due = c->last_rx + eng_ms_to_ticks(cfg->idle_ms);
	if (cfg->ping_ms && !ep->due) {
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
		conn__schedule_ws(s, c);
}

void eng_conn_on_timer(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_cfg *cfg = &s->eng->cfg;

	switch (c->state) {
	case ENG_CONN_HTTP:		/* slowloris: no complete upgrade in time */
		ENG_STAT_ADD(s, timeouts, 1);
		if (conn__xport(c)->timed_out)
			conn__xport(c)->timed_out(s, c);
		eng_conn_kill(s, c);
		return;
	case ENG_CONN_WS:
		if (c->auth && c->auth->exp &&
		    s->tick >= eng_unix_to_tick(s, c->auth->exp +
						s->eng->cfg.jwt_leeway)) {
			/* No refresh came in time (docs/PROTOCOL.md). */
			conn__send_close(s, c, ENG_CLOSE_EXPIRED, "token expired",
				   ENG_CONN_CLOSING);
			return;
		}
		if (conn__endpoint(c)->on_due) {
			conn__endpoint(c)->on_due(s, c);
			if (c->state == ENG_CONN_WS)
				conn__schedule_ws(s, c);
			return;
		}
		if (cfg->idle_ms &&
		    s->tick - c->last_rx >= eng_ms_to_ticks(cfg->idle_ms)) {
			ENG_STAT_ADD(s, timeouts, 1);
			conn__send_close(s, c, WS_CLOSE_GOING_AWAY, "idle timeout",
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
		conn__schedule_ws(s, c);
		return;
	case ENG_CONN_CLOSING:	/* the peer did not answer our close */
	case ENG_CONN_DRAIN:	/* or did not read, or did not close */
		eng_conn_kill(s, c);
		return;
	case ENG_CONN_DEAD:		/* close_direct had no SQE: retry */
		conn__maybe_close_fd(s, c);
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
	conn__set_state(s, c, ENG_CONN_DRAIN);
	eng_timer_set(s, c, s->tick + eng_ms_to_ticks(ENG_CLOSE_WAIT_MS));
	conn__rx_free(s, c);
	conn__queue(s, c, f);
}

void eng_conn_restart(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_endpoint *ep = conn__endpoint(c);

	if (c->state != ENG_CONN_WS)
		eng_conn_kill(s, c);
	else if (ep && ep->on_restart)
		ep->on_restart(s, c);
	else
		conn__send_close(s, c, WS_CLOSE_SERVICE_RESTART,
				 "service restart", ENG_CONN_CLOSING);
}

/*
 * SIGTERM: 1001 to open connections, drop those still handshaking; after
 * a take-over, what its drain left is told to reconnect instead.
 */
void eng_conn_go_away(struct eng_shard *s, struct eng_conn *c)
{
	if (s->eng->ho && atomic_load(&s->eng->ho->restarting))
		eng_conn_restart(s, c);
	else if (c->state == ENG_CONN_HTTP)
		eng_conn_kill(s, c);
	else if (c->state == ENG_CONN_WS)
		conn__send_close(s, c, WS_CLOSE_GOING_AWAY, "server shutting down",
			   ENG_CONN_CLOSING);
}

void eng_conn_accepted(struct eng_shard *s, uint32_t slot, unsigned xp)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	struct eng_conn *c;
	uint64_t total;

	if (slot >= s->nr_conns)
		return;		/* cannot happen: the table has nr_conns */
	c = &s->conns[slot];
	total = conn__open(s, c, xp);
	if (!total)
		return;
	conn__arm_recv(s, c);
	/* accepted as a live hand-over's quiesce began: it goes too */
	if (s->ho_bits)
		eng_conn_ho_stop(s, c);
	if (total > cfg->max_conns) {
		ENG_STAT_ADD(s, rejected, 1);
		eng_conn_http_reply(s, c, 503, "Retry-After: 5\r\n", NULL, NULL, 0);
		return;
	}
	eng_timer_set(s, c, s->tick + eng_ms_to_ticks(cfg->handshake_ms));
}

uint64_t conn__open(struct eng_shard *s, struct eng_conn *c, unsigned xp)
{
	uint64_t total;

	/*
	 * The kernel hands out a slot only after close_direct emptied it,
	 * so a slot that still looks busy has its close CQE in this batch.
	 */
	if (c->state != ENG_CONN_FREE)
		release(s, c);
	conn__set_state(s, c, ENG_CONN_HTTP);
	c->kind = ENG_CONN_K_HTTP;
	c->xport = xp < ENG_XPORTS ? xp : ENG_XPORT_PLAIN;
	c->deflate = 0;
	c->flags = 0;
	c->nsubs = 0;
	c->subs = NULL;
	c->auth = NULL;
	c->tprev = c->tnext = ENG_NIL;
	c->tdue = 0;
	c->last_rx = c->last_ping = s->tick;
	c->sent = 0;
	c->queued = 0;
	c->nflight = 0;		/* a cut keeps what a send covers */
	c->sq_head = c->sq_tail = NULL;
	c->rx = NULL;
	atomic_fetch_add_explicit(&s->stats.conns, 1, memory_order_relaxed);
	ENG_STAT_ADD(s, accepted, 1);
	total = atomic_fetch_add_explicit(&s->eng->nconns, 1,
					  memory_order_relaxed) + 1;
	if (conn__xport(c)->accept && conn__xport(c)->accept(s, c) < 0) {
		eng_conn_kill(s, c);	/* over TLS's handshake cap */
		return 0;
	}
	return total;
}
