/* SPDX-License-Identifier: MIT */
/*
 * conn_int.h: what conn.c (a connection's life: accept, state, timers,
 * teardown), conn_send.c (the send queue, slow consumers, the batch
 * window, frames and answers out) and conn_recv.c (receive, reassembly,
 * the upgrade, frames in) share, and nothing else includes but the send
 * queue's unit test. Every function here runs on the connection's shard.
 */
#ifndef RC_ENGINE_CONN_INT_H
#define RC_ENGINE_CONN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "ud.h"

/* The registered endpoints and transports, by kind and by id. */
extern const struct eng_endpoint *conn__endpoints[ENG_CONN_KINDS];
extern const struct eng_xport *conn__xports[ENG_XPORTS];
/* The plain transport: the socket's bytes are the connection's own. */
extern const struct eng_xport conn__plain;

/* The connection a CQE belongs to, or NULL when it is stale. */
static inline struct eng_conn *conn__lookup(struct eng_shard *s, uint64_t ud)
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

/* The user_data of operation @op on @c. */
static inline uint64_t conn__ud(struct eng_shard *s, struct eng_conn *c,
				unsigned op)
{
	return ring_ud(op, eng_slot(s, c), c->gen);
}

/* @c's endpoint; one that does nothing for a kind nobody registered. */
static inline const struct eng_endpoint *conn__endpoint(
	const struct eng_conn *c)
{
	static const struct eng_endpoint none = { .name = "none" };

	return conn__endpoints[c->kind] ? conn__endpoints[c->kind] : &none;
}

/* @c's transport; plain for an id nobody registered. */
static inline const struct eng_xport *conn__xport(const struct eng_conn *c)
{
	return conn__xports[c->xport] ? conn__xports[c->xport] : &conn__plain;
}

/* ---- conn.c: life ------------------------------------------------------ */

/* Every change of state goes here: the shard's /ws bitmap follows it. */
void conn__set_state(struct eng_shard *s, struct eng_conn *c, uint8_t st);

/*
 * A new connection @c of transport @xp (accepted, or handed over): its
 * fields set, counted. Returns the process's connections now, or 0 when
 * the transport refused it (then it is killed).
 */
uint64_t conn__open(struct eng_shard *s, struct eng_conn *c, unsigned xp);

/* Closes @c's fixed file once no SQE of it is in flight (when DEAD). */
void conn__maybe_close_fd(struct eng_shard *s, struct eng_conn *c);

/* Sets the next ping, idle or token deadline of open WebSocket @c. */
void conn__schedule_ws(struct eng_shard *s, struct eng_conn *c);

/*
 * Times kept-alive @c after an answer: the handshake timeout for the next
 * request if its first bytes are here (@begun), else the idle timeout.
 */
void conn__http_rearm(struct eng_shard *s, struct eng_conn *c, bool begun);

/* ---- conn_send.c: the send queue --------------------------------------- */

/* Sends what @c has queued unless a send is in flight; half-closes DRAIN. */
void conn__flush(struct eng_shard *s, struct eng_conn *c);

/*
 * Queues @b (one reference, taken over) to go this loop turn, whatever
 * the batch window and the pending bound. Returns 0, or -ENOMEM after
 * dropping @b and killing @c.
 */
int conn__queue(struct eng_shard *s, struct eng_conn *c, struct eng_buf *b);

/* Queues a close frame @code @reason and moves @c to @next. */
void conn__send_close(struct eng_shard *s, struct eng_conn *c, uint16_t code,
		      const char *reason, uint8_t next);

/* The plain transport's send (struct eng_xport). */
int conn__plain_send(struct eng_shard *s, struct eng_conn *c);

/*
 * The queue itself, without I/O, so that a unit test can drive it
 * (tests/test-engine-sendq.c). Appends @b to @c's queue, taking over its
 * reference; -ENOMEM leaves @b to the caller.
 */
int conn__sq_push(struct eng_conn *c, struct eng_buf *b);

/*
 * Fills @iov (at most @max entries) with what @c's queue has to send,
 * from the head's unsent bytes on. Returns the entries filled.
 */
unsigned conn__sq_iov(const struct eng_conn *c, struct iovec *iov,
		      unsigned max);

/*
 * @res bytes of @c's queue went out: drops the frames they finished (the
 * last may be partial: c->sent says where it is), timing sampled ones
 * (lat.h), and forgets what was in flight.
 */
void conn__sq_sent(struct eng_shard *s, struct eng_conn *c, uint32_t res);

/*
 * Drops the frames of @c's queue no send in flight covers (a slow
 * consumer's). Returns how many it dropped.
 */
unsigned conn__sq_cut(struct eng_conn *c);

/* Drops every frame of @c's queue (the slot is being freed). */
void conn__sq_free(struct eng_conn *c);

/* ---- conn_recv.c: receiving -------------------------------------------- */

/* Frees @c's receive state (struct eng_rx) and un-counts it. */
void conn__rx_free(struct eng_shard *s, struct eng_conn *c);

/* Arms @c's multishot recv; kills @c when there is no SQE. */
void conn__arm_recv(struct eng_shard *s, struct eng_conn *c);

/* The plain transport's recv (struct eng_xport). */
bool conn__plain_recv(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		      size_t n);

#endif
