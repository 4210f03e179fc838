/* SPDX-License-Identifier: MIT */
/*
 * conn_recv.c: what a connection receives. Bytes arrive in provided
 * buffers and go through the connection's transport; they are parsed in
 * place, a request head by the connection's endpoint (plain HTTP), a
 * WebSocket frame here, and its message handed to the endpoint. Only a
 * request head or a frame cut by a read boundary, or a fragmented
 * message, is copied into memory of the connection's own (struct
 * eng_rx), which is freed as soon as it empties, and all of it is held
 * within --max-partial-memory.
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "conn_int.h"
#include "handover.h"
#include "hs.h"
#include "timer.h"
#include "zframe.h"

static bool parsing(const struct eng_conn *c)
{
	return c->state == ENG_CONN_HTTP || c->state == ENG_CONN_WS ||
	       c->state == ENG_CONN_CLOSING;
}

/* /stats reads the shard's totals from other threads. */
static void rx_publish(struct eng_shard *s)
{
	atomic_store_explicit(&s->stats.partial_bytes, s->rx_held,
			      memory_order_relaxed);
	atomic_store_explicit(&s->stats.partial_alloc, s->rx_alloc,
			      memory_order_relaxed);
}

void conn__rx_free(struct eng_shard *s, struct eng_conn *c)
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
	const struct eng_endpoint *ep = conn__endpoint(c);

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
	const struct eng_endpoint *ep = conn__endpoint(c);

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
			conn__set_state(s, c, ENG_CONN_DRAIN);
			conn__flush(s, c);
			return;
		}
		/* Echo the peer's code (RFC 6455 5.5.1), then close. */
		conn__send_close(s, c, code == WS_CLOSE_NO_STATUS ? 0 : code, NULL,
			   ENG_CONN_DRAIN);
		return;
	}
}

/*
 * A compressed message's bytes @p[0..@n), all of them: inflated within
 * --max-message by the shard's inflater, its text checked, then to the
 * endpoint as an assembled message. False when @c failed instead.
 */
static bool inflated(struct eng_shard *s, struct eng_conn *c, uint8_t op,
		     const uint8_t *p, size_t n)
{
	struct ws_utf8 u = { 0 };
	struct eng_buf *b;
	int ret = eng_zframe_inflate(s, p, n, s->eng->cfg.max_message, &b);

	if (!ret && op == WS_OP_TEXT) {
		ret = ws_utf8_feed(&u, b->data + WS_MAX_SERVER_HDR, b->len,
				   true);
		if (ret < 0)
			eng_buf_put(b);
	}
	if (ret < 0) {
		eng_conn_fail(s, c, ret == -ENOMEM ? WS_CLOSE_INTERNAL :
				    ws_close_code(ret));
		return false;
	}
	on_assembled(s, c, op, b);
	return true;
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
 * The compressed bytes a message of @max may take: DEFLATE stores what it
 * cannot shrink, 5 bytes a block more, and a client's zlib with a small
 * memLevel (python-websockets' 5) cuts blocks of 2 KiB, down to 128 B at
 * memLevel 1: 1/16 covers that. What it inflates to is held to @max.
 */
static uint64_t zmax(uint64_t max)
{
	return max + (max >> 4) + 64;
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
	uint64_t lim = c->deflate ? zmax(max) : max;
	struct ws_msg tmp, *m;
	struct ws_frame f;
	uint8_t *payload;
	ssize_t h;
	int ret;

	h = ws_parse_ext(&f, p, n, lim, c->deflate ? WS_EXT_DEFLATE : 0);
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
	/* a plain message is held to @max, a compressed one's bytes to @lim */
	ret = ws_msg_frame(m, &f, f.rsv1 || m->deflate ? lim : max);
	/* a compressed message's text is checked once inflated */
	if (ret == 0 && m->opcode == WS_OP_TEXT && !m->deflate)
		ret = ws_utf8_feed(&m->utf8, payload, f.len, f.fin);
	if (ret < 0) {
		eng_conn_fail(s, c, ws_close_code(ret));
		return 0;
	}
	if (m == &tmp && f.fin) {	/* the common case: one frame */
		if (!m->deflate)
			on_message(s, c, m->opcode, payload, f.len);
		else if (!inflated(s, c, m->opcode, payload, f.len))
			return 0;
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
		bool zipped = m->deflate, ok;

		c->rx->msg = NULL;
		ws_msg_end(m);
		if (!zipped) {
			on_assembled(s, c, op, b);
			return (size_t)h + f.len;
		}
		ok = inflated(s, c, op, b->data + WS_MAX_SERVER_HDR, b->len);
		eng_buf_put(b);
		if (!ok)
			return 0;
	}
	return (size_t)h + f.len;
nomem:
	eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
	return 0;
}

void eng_conn_upgrade(struct eng_shard *s, struct eng_conn *c,
		      const struct hs_str *key, uint8_t kind)
{
	struct eng_buf *b = eng_buf_new(256 + DEFLATE_ANSWER_MAX);
	char ext[DEFLATE_ANSWER_MAX];
	ssize_t n;

	if (!b) {
		eng_conn_kill(s, c);
		return;
	}
	/* c->deflate was decided at the request (http.c), answered here */
	n = eng_zframe_answer(c->deflate, ext, sizeof(ext));
	if (n >= 0)
		n = hs_write_101_ext((char *)b->data, b->cap, key,
				     n ? ext : NULL);
	if (n < 0) {
		eng_buf_put(b);
		eng_conn_http_reply(s, c, 500, NULL, NULL, NULL, 0);
		return;
	}
	b->len = (uint32_t)n;
	c->kind = kind;
	conn__set_state(s, c, ENG_CONN_WS);
	c->flags &= ~ENG_CONN_F_KEEP;
	c->last_rx = c->last_ping = s->tick;
	ENG_STAT_ADD(s, upgraded, 1);
	if (c->deflate)
		ENG_STAT_ADD(s, deflate_conns, 1);
	conn__schedule_ws(s, c);
	conn__queue(s, c, b);
}

/* A request head (and body) for @c's endpoint: plain HTTP's. */
static size_t http_step(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
			size_t n, size_t *want)
{
	const struct eng_endpoint *ep = conn__endpoint(c);

	if (!ep->on_request) {
		eng_conn_kill(s, c);	/* nobody serves HTTP here */
		return 0;
	}
	/*
	 * Handing over: a request that may change state (a publish, a
	 * push, an ack) would change the old process's copy only. Closed
	 * unanswered, it was not done: its client sends it again, to the
	 * new process. Reads and upgrades go on.
	 */
	if (eng_handover_frozen(s) && n >= 4 && memcmp(p, "GET ", 4)) {
		eng_conn_kill(s, c);
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
		conn__http_rearm(s, c, off < n);
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
		conn__rx_free(s, v);		/* whatever the close left */
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
		conn__rx_free(s, c);	/* idle again: no receive memory of its own */
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

/*
 * The transport seam, its receiving side: what a read brought goes to the
 * connection's transport, whose bytes for the connection come back up
 * through eng_conn_feed() (TLS) or straight to feed() (plain).
 */
static void xport_recv(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		       size_t n)
{
	/* TLS: records opened in place; their plaintext to eng_conn_feed() */
	if (conn__xport(c)->recv(s, c, p, n))
		conn__flush(s, c);	/* handshake output, or a KeyUpdate owed */
}

bool conn__plain_recv(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
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

void conn__arm_recv(struct eng_shard *s, struct eng_conn *c)
{
	/* No buffer of its own: one comes from the shard's pool per read. */
	if (ring_recv(&s->ring, eng_slot(s, c), s->rbufs.bgid,
		      conn__ud(s, c, ENG_OP_RECV))) {
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
		conn__maybe_close_fd(s, c);
	else if (c->state != ENG_CONN_FREE && !(c->flags & ENG_CONN_F_RECV) &&
		 !eng_conn_ho_quiet(s, c))
		conn__arm_recv(s, c);
}

void eng_conn_on_recv(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_conn *c = conn__lookup(s, cqe->user_data);
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
	} else if (cqe->res == -ECANCELED && c->state != ENG_CONN_DEAD) {
		/* a hand-over stopped it (conn_handover.c); resumed meanwhile */
		if (!eng_conn_ho_quiet(s, c))
			conn__arm_recv(s, c);
	} else if (cqe->res <= 0) {
		eng_conn_kill(s, c);	/* EOF, reset, or cancelled */
	} else if (!more && eng_conn_ho_quiet(s, c)) {
		/* quiesced for a hand-over: it reads no more */
	} else if (!more && c->state != ENG_CONN_DEAD) {
		conn__arm_recv(s, c);		/* multishot ended early: go on */
	}
	conn__maybe_close_fd(s, c);
}
