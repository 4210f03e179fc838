/* SPDX-License-Identifier: MIT */
/*
 * conn: one connection on its shard: its life, timers and deferred close
 * (conn.c), what it sends (conn_send.c), what it receives, the upgrade
 * and frames in (conn_recv.c); below them its transport, above them its
 * endpoint, both through tables (struct eng_xport, struct eng_endpoint).
 * Every function here runs on the connection's own shard.
 */
#ifndef RC_ENGINE_CONN_H
#define RC_ENGINE_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "eng.h"
#include "ws.h"

struct eng_ho_buf;	/* handover.h */
struct eng_ho_rd;

#define ENG_CONN_BUDGET		80	/* bytes; checked at build time */
#define ENG_SLOW_WAIT_MS	30000	/* a slow consumer to read its 1008 */

struct hs_str;

/* Connection states. */
enum {
	ENG_CONN_FREE = 0,
	ENG_CONN_HTTP,		/* reading the request head */
	ENG_CONN_WS,		/* open WebSocket */
	ENG_CONN_CLOSING,	/* our close frame is queued or sent */
	ENG_CONN_DRAIN,		/* last response queued: close once sent */
	ENG_CONN_DEAD,		/* cancelling I/O, then close_direct */
	ENG_CONN_HANDED,	/* live hand-over: written out, the new
				 * process to serve it (conn_handover.c) */
};

/*
 * What a connection is, once its first request is read: the index of its
 * endpoint (struct eng_endpoint, below). Every connection starts as HTTP.
 */
enum {
	ENG_CONN_K_HTTP = 0,	/* plain HTTP requests (keep-alive) */
	ENG_CONN_K_ECHO,	/* WebSocket on /echo */
	ENG_CONN_K_PUSH,	/* WebSocket on /ws: the push protocol */
	ENG_CONN_K_PUSHER,	/* WebSocket on /app/{key}: Pusher's */
};

/* Bits of eng_conn.flags. */
#define ENG_CONN_F_RECV		(1u << 0)	/* multishot recv armed */
#define ENG_CONN_F_SEND		(1u << 1)	/* one send in flight */
#define ENG_CONN_F_CLOSE_FD	(1u << 2)	/* close_direct in flight */
#define ENG_CONN_F_REARM	(1u << 3)	/* recv to re-arm: ran dry */
#define ENG_CONN_F_PEER_CLOSED	(1u << 4)	/* peer's close frame seen */
#define ENG_CONN_F_SHUT		(1u << 5)	/* shutdown(SHUT_WR) issued */
#define ENG_CONN_F_WAIT		(1u << 6)	/* HTTP: reply awaits a publish */
#define ENG_CONN_F_KEEP		(1u << 7)	/* HTTP: keep-alive after reply */
#define ENG_CONN_F_ADMITTED	(1u << 8)	/* user: counted by the owner */
#define ENG_CONN_F_RESUME	(1u << 9)	/* listed in resume[] */
#define ENG_CONN_F_CANCEL	(1u << 10)	/* cancel in flight */
#define ENG_CONN_F_SHUTTING	(1u << 11)	/* shutdown in flight */
#define ENG_CONN_F_CONTINUED	(1u << 12)	/* HTTP: 100 Continue sent */
#define ENG_CONN_F_FLUSH	(1u << 13)	/* listed in flushq[] */
#define ENG_CONN_F_NOW		(1u << 14)	/* ... with more than deliveries */
#define ENG_CONN_F_RCANCEL	(1u << 15)	/* dead: its recv's cancel sent */

/* One entry of a connection's send queue: a reference, not a copy. */
struct eng_sq {
	struct eng_sq *next;
	struct eng_buf *buf;	/* one reference owned by this entry */
};

/*
 * Receive state that exists only while a connection holds bytes of its
 * own: a request head or a frame split across reads, or a fragmented
 * message being assembled. NULL on an idle connection.
 */
struct eng_rx {
	uint8_t *part;		/* unconsumed bytes carried to the next read */
	uint32_t plen;		/* bytes in part, consumed ones included */
	uint32_t pcap;		/* bytes allocated for part */
	uint32_t want;		/* unconsumed bytes needed before a re-parse */
	uint32_t poff;		/* bytes of part already consumed; 0 if !plen */
	struct eng_buf *msg;	/* fragments so far, after header room */
	struct ws_msg ws;	/* sequencing and UTF-8 state */
	uint32_t held;		/* in the shard's rx_held: unconsumed + msg */
	uint32_t alloc;		/* in the shard's rx_alloc: pcap + msg cap */
};

/*
 * One connection, indexed by its fixed-file slot. Kept small because a
 * shard holds tens of thousands: the budget is ENG_CONN_BUDGET bytes,
 * asserted below and reported by tests/test-engine-conn.c.
 */
struct eng_conn {
	uint32_t gen;		/* bumped when the slot is freed */
	uint8_t state;		/* ENG_CONN_* */
	uint8_t kind : 4;	/* ENG_CONN_K_*: its endpoint */
	uint8_t xport : 2;	/* ENG_XPORT_*: its transport */
	uint8_t deflate : 2;	/* ENG_DEFLATE_* (zframe.h) */
	uint16_t flags;		/* ENG_CONN_F_* */
	uint16_t nsubs;		/* entries in subs */
	uint16_t nflight;	/* queue entries the send in flight covers */
	uint32_t tprev, tnext;	/* timer wheel links (slots), ENG_NIL ends */
	uint32_t tdue;		/* tick the timer fires at */
	uint32_t last_rx;	/* tick of the last byte received */
	uint32_t last_ping;	/* tick of our last ping */
	uint32_t sent;		/* bytes of the queue head already sent */
	uint32_t queued;	/* bytes queued, unsent: <= max_pending */
	struct eng_sq *sq_head;	/* send queue; head is in flight if F_SEND */
	struct eng_sq *sq_tail;
	struct eng_rx *rx;	/* NULL while idle */
	struct eng_sub *subs;	/* this connection's subscriptions */
	struct eng_auth *auth;	/* owned; NULL when anonymous */
};

_Static_assert(sizeof(struct eng_conn) <= ENG_CONN_BUDGET,
	       "struct eng_conn grew past ENG_CONN_BUDGET");

/* A vectored send in flight: several queued frames in one sendmsg. */
#define ENG_IOV_MAX	16
struct eng_sendv {
	struct msghdr mh;
	struct iovec iov[ENG_IOV_MAX];
	uint32_t slot, gen;
};

/* A send_zc in flight: its buffer stays referenced until the NOTIF. */
struct eng_zc {
	struct eng_buf *buf;	/* one reference, dropped at the NOTIF */
	uint32_t slot, gen;
};

static inline uint32_t eng_slot(const struct eng_shard *s,
				const struct eng_conn *c)
{
	return (uint32_t)(c - s->conns);
}

/* An open /ws connection: broadcasts and pushes go to it. */
static inline bool eng_conn_deliverable(const struct eng_conn *c)
{
	return c->state == ENG_CONN_WS && c->kind == ENG_CONN_K_PUSH;
}

/*
 * Closes the connections of @s holding the most partial-message bytes
 * (1009; an HTTP request is dropped) until @extra more bytes fit within
 * its share of --max-partial-memory. For what the transport carries
 * besides (a TLS record cut by a read): the largest holder pays, not the
 * one that tipped the total. False if nothing is left to close and
 * @extra still does not fit.
 */
bool eng_rx_room(struct eng_shard *s, size_t extra);

/* True until the connection is being torn down (DEAD) or free. */
bool eng_conn_alive(const struct eng_conn *c);

/*
 * A new connection in @slot (accept's result) on transport @xport
 * (ENG_XPORT_*, the listener's): arms its recv and timer.
 */
void eng_conn_accepted(struct eng_shard *s, uint32_t slot, unsigned xport);

/*
 * Queues @b (one reference, taken over) on @c's send queue and sends it
 * when no send is in flight. Over --max-pending-bytes @c is closed as a
 * slow consumer (1008) and @b dropped. Returns 0, or -errno after
 * dropping @b.
 */
int eng_conn_queue(struct eng_shard *s, struct eng_conn *c,
		   struct eng_buf *b);
/*
 * The same for a fan-out delivery: it may wait out --batch-window, where
 * what eng_conn_queue() queues (replies, pongs, a close) goes on the
 * loop turn it was queued in, and takes the deliveries waiting with it.
 */
int eng_conn_deliver(struct eng_shard *s, struct eng_conn *c,
		     struct eng_buf *b);

/* Queues one frame of opcode @op carrying a copy of @payload. */
int eng_conn_send_frame(struct eng_shard *s, struct eng_conn *c, uint8_t op,
			const void *payload, size_t len);

/*
 * Answers @c's HTTP request: status line, @extra headers (CRLF-ended, or
 * NULL), and a body of type @ctype. Closes after it unless keep-alive.
 */
void eng_conn_http_reply(struct eng_shard *s, struct eng_conn *c, int status,
			 const char *extra, const char *ctype,
			 const char *body, size_t len);

/*
 * What @c's HTTP answer says of the connection, as hs_write_response()'s
 * @keep_s: the idle seconds it stays open (--http-idle-timeout) when the
 * request keeps it, else 0 (Connection: close).
 */
unsigned eng_conn_keep_s(const struct eng_shard *s, const struct eng_conn *c);

/* Queues a prebuilt HTTP response @b (taken over) for a waiting request. */
void eng_conn_http_done(struct eng_shard *s, struct eng_conn *c,
			struct eng_buf *b);

/*
 * @c's request was answered: parse what it sent meanwhile after this
 * batch (eng_conn_resumed, from the shard loop), not from inside a
 * handler that may be deep in another connection's parse.
 */
void eng_conn_resume(struct eng_shard *s, struct eng_conn *c);
void eng_conn_resumed(struct eng_shard *s, struct eng_conn *c);

/*
 * Closes open WebSocket @c with @code and @reason (plain text, at most
 * 123 bytes) for a reason of the engine's, not a protocol error: what is
 * queued goes first, then the close; a no-op on a closing connection.
 */
void eng_conn_close_ws(struct eng_shard *s, struct eng_conn *c, uint16_t code,
		       const char *reason);

/* Fails @c: close frame @code (WebSocket) or a plain close (HTTP). */
void eng_conn_fail(struct eng_shard *s, struct eng_conn *c, uint16_t code);

/* Sends the 101 for key @key and makes @c a WebSocket of @kind. */
void eng_conn_upgrade(struct eng_shard *s, struct eng_conn *c,
		      const struct hs_str *key, uint8_t kind);

/* The token of @c changed (refresh): its expiry timer follows. */
void eng_conn_reschedule(struct eng_shard *s, struct eng_conn *c);

/* Completions of @c's operations, from the shard's dispatch. */
void eng_conn_on_recv(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_send(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_sendv(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_send_zc(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_close(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_cancel(struct eng_shard *s, struct ring_cqe *cqe);

/*
 * Frames queued to @c are sent after the batch (eng_conn_flushed, from
 * the shard loop), so that all of one batch's go in one send; with a
 * batch window, deliveries alone wait until it has passed.
 */
void eng_conn_flushed(struct eng_shard *s, struct eng_conn *c);

/*
 * Bytes @c received, as plaintext (from the transport: TLS records opened
 * in place), into the receive path; ignored once @c stopped parsing.
 * @p is borrowed for the call: what must stay is copied.
 */
void eng_conn_feed(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		   size_t n);

/* Arms @c's recv again after the buffer pool ran dry. */
void eng_conn_rearm(struct eng_shard *s, struct eng_conn *c);

/* @c's timer fired: ping, idle or handshake timeout, token expiry. */
void eng_conn_on_timer(struct eng_shard *s, struct eng_conn *c);

/* Close frame @f (a kick, one reference taken over), then close @c. */
void eng_conn_kick(struct eng_shard *s, struct eng_conn *c,
		   struct eng_buf *f);

/* Graceful stop: 1001 to a WebSocket, a close to anything else. */
void eng_conn_go_away(struct eng_shard *s, struct eng_conn *c);

/*
 * A take-over's drain: open WebSocket @c told to reconnect by its
 * endpoint (on_restart: 1012, or Pusher's 4200); anything else killed.
 */
void eng_conn_restart(struct eng_shard *s, struct eng_conn *c);

/* Tears @c down now: cancels its I/O; the slot frees when that is done. */
void eng_conn_kill(struct eng_shard *s, struct eng_conn *c);

/*
 * ---- a live hand-over (conn_handover.c, handover.h) ---------------------
 * The old process: eng_conn_ho_stop() quiesces @c (its slot marked in
 * s->ho_bits; false: its endpoint or transport cannot be carried, or it
 * is closing, and it is left as it is): its recv is ended; it is still
 * delivered to, and sends until s->ho_mute (a send pending is ended with
 * eng_conn_ho_stop_send(): what it did not send stays queued).
 * eng_conn_ho_settled(): @c is somewhere a record can describe (nothing
 * it asked still out: its transport's and endpoint's ho_save agree,
 * written to @scratch, which is emptied first); -EAGAIN: not yet,
 * -EOPNOTSUPP: never. eng_conn_ho_busy(): an operation of @c's is
 * still on its way. eng_conn_ho_save() writes @c's record
 * (docs/HANDOVER.md: its state, timers, a frame half received, the
 * unsent queue, then its transport's and its endpoint's records):
 * 0, or -EAGAIN / -EOPNOTSUPP when it cannot be carried (then it is
 * resumed and drained). eng_conn_ho_handed(): written out, @c is
 * ENG_CONN_HANDED (no timer, no delivery). eng_conn_ho_resume(): the
 * hand-over failed, or @c stays: as it was, reading and sending again.
 * eng_conn_ho_forget(): the new process holds @c: its slot is freed and
 * its descriptor closed without a byte sent or anyone told.
 * eng_conn_ho_ready(): @c's transport is now ready to be carried (its
 * handshake is done; see struct eng_xport's ho_ready): if a quiesce is
 * on and the save has not begun (s->ho_mute), @c is quiesced now; else
 * nothing (too late: it is drained with what is not carried).
 * eng_conn_ho_later(): @c is not quiesced, but will be once its
 * transport is ready (a TLS handshake under way): the save waits for it.
 */
static inline bool eng_conn_ho_quiet(const struct eng_shard *s,
				     const struct eng_conn *c)
{
	uint32_t i = (uint32_t)(c - s->conns);

	return s->ho_bits && (s->ho_bits[i / 64] >> (i % 64) & 1);
}

bool eng_conn_ho_stop(struct eng_shard *s, struct eng_conn *c);
void eng_conn_ho_stop_send(struct eng_shard *s, struct eng_conn *c);
int eng_conn_ho_settled(struct eng_shard *s, struct eng_conn *c,
			struct eng_ho_buf *scratch);
bool eng_conn_ho_busy(const struct eng_conn *c);
int eng_conn_ho_save(struct eng_shard *s, struct eng_conn *c,
		     struct eng_ho_buf *b);
void eng_conn_ho_handed(struct eng_shard *s, struct eng_conn *c);
void eng_conn_ho_resume(struct eng_shard *s, struct eng_conn *c);
void eng_conn_ho_forget(struct eng_shard *s, struct eng_conn *c);
void eng_conn_ho_ready(struct eng_shard *s, struct eng_conn *c);
bool eng_conn_ho_later(struct eng_shard *s, struct eng_conn *c);

/*
 * The new process: a connection on @slot (its socket now in the ring)
 * from record @r: counted as an accepted one, its state, transport and
 * endpoint loaded, its unsent bytes queued first, its timer armed; it is
 * left quiesced (s->ho_bits, allocated by the caller) until every shard
 * has registered its subscriptions, then eng_conn_ho_resume() starts its
 * reads and sends. Returns 0, or -errno after closing it.
 */
int eng_conn_ho_load(struct eng_shard *s, uint32_t slot,
		     struct eng_ho_rd *r);

/*
 * ---- endpoints ---------------------------------------------------------
 * What a connection of one kind does with what it receives. conn.c calls
 * an endpoint only through this table, by the connection's kind, so a new
 * client protocol is a new endpoint and no edit of conn.c. The owners
 * (http.c: plain HTTP and /echo; push.c: /ws) register theirs once
 * before the shards start (core.c); the table is read-only after that.
 * Every callback runs on the connection's shard; NULL ones do nothing.
 */
struct hs_req;
struct eng_endpoint {
	const char *name;	/* "http", "echo", "ws": for the record */
	const char *path;	/* its upgrade's path; NULL: plain HTTP */
	bool prefix;		/* @path matches as a prefix (/app/{key}) */
	uint8_t kind;		/* ENG_CONN_K_*: c->kind of its connections */
	/* Whether the configuration serves it (NULL: always). */
	bool (*enabled)(const struct eng_shard *s);
	/*
	 * The plain HTTP endpoint only: a request at @p; returns the bytes
	 * used, or 0 while incomplete (*@want: the bytes it needs in all)
	 * or once @c was answered for good.
	 */
	size_t (*on_request)(struct eng_shard *s, struct eng_conn *c,
			     const uint8_t *p, size_t n, size_t *want);
	/*
	 * An upgrade to this endpoint passed the checks every upgrade has
	 * (method, version, key, Origin): admits it with eng_conn_upgrade()
	 * or answers it over HTTP. NULL: upgraded at once.
	 */
	void (*on_upgrade)(struct eng_shard *s, struct eng_conn *c,
			   const struct hs_req *req);
	/* A complete data message @op of @len bytes at @p (borrowed). */
	void (*on_message)(struct eng_shard *s, struct eng_conn *c, uint8_t op,
			   const uint8_t *p, size_t len);
	/*
	 * The same for a message assembled from fragments: its payload sits
	 * in @b (one reference, taken over) after WS_MAX_SERVER_HDR bytes of
	 * room. NULL: on_message(), then @b is dropped.
	 */
	void (*on_assembled)(struct eng_shard *s, struct eng_conn *c,
			     uint8_t op, struct eng_buf *b);
	/*
	 * A keep-alive of its own instead of the engine's pings and
	 * --idle-timeout (NULL: those): due(), the tick @c's timer should
	 * fire at next, read from c->last_rx and c->last_ping; on_due() when
	 * it fired, which may ping (setting last_ping) or close @c.
	 */
	uint32_t (*due)(const struct eng_shard *s, const struct eng_conn *c);
	void (*on_due)(struct eng_shard *s, struct eng_conn *c);
	/* A send of @c's completed: its queue has room again. */
	void (*on_drained)(struct eng_shard *s, struct eng_conn *c);
	/* @c's slot is being freed: what the endpoint holds for it goes. */
	void (*on_close)(struct eng_shard *s, struct eng_conn *c);
	/*
	 * The process hands over to a new one (handover.h): tell @c to
	 * reconnect now, and close it. NULL: close 1012 (service restart).
	 */
	void (*on_restart)(struct eng_shard *s, struct eng_conn *c);
	/*
	 * A live hand-over (handover.h, level 2): ho_save() appends what the
	 * endpoint keeps for @c to @b, a record its ho_load() reads in the
	 * new process on a slot that already holds the connection's own
	 * state (its kind, subscriptions, queue). Each returns 0 or -errno:
	 * a save's error drains @c instead (on_restart), a load's closes
	 * it. NULL ho_save: the endpoint's connections are drained, not
	 * carried live.
	 */
	int (*ho_save)(struct eng_shard *s, struct eng_conn *c,
		       struct eng_ho_buf *b);
	int (*ho_load)(struct eng_shard *s, struct eng_conn *c,
		       struct eng_ho_rd *r);
};

#define ENG_CONN_KINDS	8	/* endpoints the table holds */

/*
 * Makes @ep (static, never freed) the endpoint of connections of kind
 * @ep->kind. Before the shards start only. Returns 0, -EINVAL for a kind
 * out of range or -EEXIST when another holds it.
 */
int eng_endpoint_add(const struct eng_endpoint *ep);

/* The endpoint an upgrade to @path goes to on @s, or NULL: none. */
const struct eng_endpoint *eng_endpoint_find(const struct eng_shard *s,
					     const struct hs_str *path);

/*
 * ---- the transport -----------------------------------------------------
 * What carries a connection's bytes, under receive, reassembly and the
 * send queue, which do not know what the wire is: every byte received
 * and sent passes its transport's table, through xport_recv(),
 * xport_send() and xport_sent() in conn.c. Plain (conn.c's own) goes
 * straight to the socket; TLS (tlsio.c) registers its own. A connection's
 * is set at accept (eng_conn_accepted) and kept for its life. Every
 * callback runs on the connection's shard; NULL ones do nothing.
 */
enum {
	ENG_XPORT_PLAIN = 0,	/* the socket's bytes as they are */
	ENG_XPORT_TLS,		/* TLS records (tlsio.c) */
	ENG_XPORTS = 4,		/* transports the table holds */
};
_Static_assert(ENG_XPORTS <= 4, "eng_conn.xport is 2 bits");

struct eng_xport {
	const char *name;	/* "plain", "tls": for the record */
	uint8_t id;		/* ENG_XPORT_*: c->xport of its connections */
	/*
	 * @c was accepted on it: its state. Returns 0, or -errno (over a
	 * cap, no memory): then @c is closed at once.
	 */
	int (*accept)(struct eng_shard *s, struct eng_conn *c);
	/*
	 * @n bytes a read brought to @c, in the ring's buffer @p (writable,
	 * borrowed for the call). What they carry for the connection goes
	 * up through eng_conn_feed(). Returns true when the transport has
	 * bytes of its own to send (a handshake's, a KeyUpdate owed).
	 */
	bool (*recv)(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		     size_t n);
	/*
	 * Puts @c's bytes on the wire when no send is in flight: its own,
	 * then the send queue (ENG_CONN_F_SEND and c->nflight set for the
	 * entries it covers). Returns 1 when a send went out, 0 when there
	 * was nothing to send, -errno when @c must die.
	 */
	int (*send)(struct eng_shard *s, struct eng_conn *c);
	/*
	 * A send of @c's completed with @res. Returns the bytes of the send
	 * queue it covered, -EINPROGRESS when the transport sent a rest of
	 * its own and the queue waits for it, or -errno. NULL: @res.
	 */
	int (*sent)(struct eng_shard *s, struct eng_conn *c, int res);
	/* @c's teardown began: its last bytes (close_notify), best effort. */
	void (*close)(struct eng_shard *s, struct eng_conn *c);
	/* @c's handshake deadline passed (counted when it closes). */
	void (*timed_out)(struct eng_shard *s, struct eng_conn *c);
	/* @c's slot is being freed: the transport's state goes. */
	void (*release)(struct eng_shard *s, struct eng_conn *c);
	/*
	 * A live hand-over, as the endpoint's ho_save()/ho_load() above:
	 * the transport's state of @c (TLS: the record layer's keys and
	 * sequence numbers, bytes of a record half received or half sent).
	 * ho_save() returns -EAGAIN while @c cannot be carried yet (a
	 * handshake under way): the quiesce waits for it, then drains it.
	 * NULL ho_save: the transport's connections are drained, not
	 * carried (plain has one that writes nothing).
	 */
	int (*ho_save)(struct eng_shard *s, struct eng_conn *c,
		       struct eng_ho_buf *b);
	int (*ho_load)(struct eng_shard *s, struct eng_conn *c,
		       struct eng_ho_rd *r);
	/*
	 * False while @c must go on reading before it can be carried (a
	 * handshake under way): the quiesce leaves it be, and the transport
	 * calls eng_conn_ho_ready() once it is. NULL: always ready.
	 */
	bool (*ho_ready)(struct eng_shard *s, const struct eng_conn *c);
};

/*
 * Makes @x (static, never freed) transport @x->id. Before the shards
 * start only. Returns 0, -EINVAL for an id out of range or -EEXIST when
 * another holds it.
 */
int eng_xport_add(const struct eng_xport *x);

#endif
