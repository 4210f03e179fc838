/* SPDX-License-Identifier: MIT */
/*
 * eng: the engine's shared types. A shard is one pinned thread owning one
 * ring, one listener and the connections that listener accepted; no other
 * thread touches a shard's connections, so the per-connection path takes
 * no lock. Cross-shard work goes through the ring mailbox.
 */
#ifndef RC_ENGINE_ENG_H
#define RC_ENGINE_ENG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "ws.h"

#define ENG_TICK_MS		100	/* timer resolution */
#define ENG_WHEEL_SLOTS		1024	/* 102.4 s before a timer laps */
#define ENG_NIL			UINT32_MAX	/* end of a slot-linked list */
#define ENG_CONN_BUDGET		64	/* bytes; tests/test-engine-conn.c */
#define ENG_CLOSE_WAIT_MS	2000	/* peer's close reply after ours */

/* What the operator set; read-only once shards start. */
struct eng_cfg {
	char listen_host[64];
	uint16_t port;			/* 0: the kernel picks, shared */
	unsigned shards;
	uint64_t max_message;		/* bytes per message */
	uint64_t max_conns;		/* whole process */
	unsigned ping_ms;		/* 0: no server pings */
	unsigned idle_ms;		/* 0: no idle timeout */
	unsigned handshake_ms;		/* upgrade must finish in time */
	unsigned recv_bufs;		/* provided buffers per shard */
	unsigned recv_buf_size;		/* bytes each */
	unsigned sq_entries;
	bool echo;			/* /echo endpoint */
};

/* Connection states. */
enum {
	CONN_FREE = 0,
	CONN_HTTP,		/* reading the request head */
	CONN_WS,		/* open WebSocket */
	CONN_CLOSING,		/* our close frame is queued or sent */
	CONN_DRAIN,		/* last response queued: close once sent */
	CONN_DEAD,		/* cancelling I/O, then close_direct */
};

/* Bits of eng_conn.flags. */
#define CONN_F_RECV		(1u << 0)	/* multishot recv armed */
#define CONN_F_SEND		(1u << 1)	/* one send in flight */
#define CONN_F_CLOSE_FD		(1u << 2)	/* close_direct in flight */
#define CONN_F_REARM		(1u << 3)	/* recv to re-arm: ran dry */
#define CONN_F_PEER_CLOSED	(1u << 4)	/* peer's close frame seen */
#define CONN_F_ECHO		(1u << 5)	/* endpoint: /echo */
#define CONN_F_SHUT		(1u << 6)	/* shutdown(SHUT_WR) issued */

/* A send buffer: refcounted bytes on the wire as they are. */
struct eng_buf {
	atomic_uint refs;	/* queue entries and the builder */
	uint32_t start;		/* first byte to send: header room before */
	uint32_t len;		/* bytes to send from data + start */
	uint32_t cap;		/* bytes allocated in data[] */
	uint8_t data[];
};

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
	uint32_t plen;		/* bytes in part */
	uint32_t pcap;		/* bytes allocated for part */
	struct eng_buf *msg;	/* fragments so far, after header room */
	struct ws_msg ws;	/* sequencing and UTF-8 state */
};

/*
 * One connection, indexed by its fixed-file slot. Kept small because a
 * shard holds tens of thousands: the budget is ENG_CONN_BUDGET bytes and a
 * unit test holds it to that.
 */
struct eng_conn {
	uint32_t gen;		/* bumped when the slot is freed */
	uint8_t state;		/* CONN_* */
	uint8_t flags;		/* CONN_F_* */
	uint16_t close_code;	/* what we sent, for the log and stats */
	uint32_t tprev, tnext;	/* timer wheel links (slots), ENG_NIL ends */
	uint32_t tdue;		/* tick the timer fires at */
	uint32_t last_rx;	/* tick of the last byte received */
	uint32_t last_ping;	/* tick of our last ping */
	uint32_t sent;		/* bytes of the queue head already sent */
	uint64_t queued;	/* bytes queued and not yet sent */
	struct eng_sq *sq_head;	/* send queue; head is in flight if F_SEND */
	struct eng_sq *sq_tail;
	struct eng_rx *rx;	/* NULL while idle */
};

/* Counters a shard bumps and anyone may read (relaxed). */
struct eng_stats {
	atomic_uint_fast64_t conns;		/* open now, any state */
	atomic_uint_fast64_t accepted;
	atomic_uint_fast64_t upgraded;
	atomic_uint_fast64_t closed;
	atomic_uint_fast64_t bytes_in;
	atomic_uint_fast64_t bytes_out;
	atomic_uint_fast64_t msgs_in;
	atomic_uint_fast64_t frames_out;
	atomic_uint_fast64_t proto_errors;	/* we failed the connection */
	atomic_uint_fast64_t http_errors;	/* 4xx/5xx answered */
	atomic_uint_fast64_t timeouts;		/* handshake or idle */
	atomic_uint_fast64_t recv_nobufs;	/* provided buffers ran dry */
	atomic_uint_fast64_t rejected;		/* over --max-conns */
};

struct eng;

struct eng_shard {
	struct eng *eng;		/* borrowed: outlives the shard */
	unsigned id;
	int cpu;			/* pinned to, -1 when not pinned */
	int listen_fd;			/* owned; closed on stop */
	struct ring ring;
	struct ring_bufs rbufs;
	struct eng_conn *conns;		/* mmapped, nr_conns entries */
	uint32_t nr_conns;		/* = fixed-file table size */
	uint32_t *rearm;		/* slots whose recv ran out of buffers */
	uint32_t nr_rearm;
	uint32_t wheel[ENG_WHEEL_SLOTS];/* heads of timer lists */
	uint32_t tick;			/* ticks since start */
	uint64_t t0_ms;			/* CLOCK_MONOTONIC at tick 0 */
	bool up;			/* ring set up: mailbox reaches it */
	bool accepting;			/* multishot accept armed */
	bool stopping;			/* SIGTERM seen: closing everyone */
	uint32_t stop_tick;		/* force-close deadline */
	struct eng_stats stats;
	pthread_t thread;
};

struct eng {
	struct eng_cfg cfg;
	struct eng_shard *shards;	/* cfg.shards of them */
	atomic_uint_fast64_t nconns;	/* all shards, for --max-conns */
	pthread_mutex_t lock;		/* start-up handshake only */
	pthread_cond_t cond;
	unsigned ready;			/* shards up, under lock */
	int failed;			/* a shard's -errno, under lock */
};

/* user_data ops (ring/ud.h packs them with slot and gen). */
enum {
	ENG_OP_ACCEPT = 1,
	ENG_OP_RECV,
	ENG_OP_SEND,
	ENG_OP_CLOSE,
	ENG_OP_CANCEL,
	ENG_OP_TIMER,
	ENG_OP_STOP,		/* mailbox: stop the shard */
	ENG_OP_MBOX_ERR,	/* a mailbox post that failed */
};

/* core.c */
void *eng_shard_main(void *arg);
struct io_uring_sqe *eng_sqe(struct eng_shard *s);

/* conn.c */
void eng_conn_accepted(struct eng_shard *s, uint32_t slot);
void eng_conn_on_recv(struct eng_shard *s, struct io_uring_cqe *cqe);
void eng_conn_on_send(struct eng_shard *s, struct io_uring_cqe *cqe);
void eng_conn_on_close(struct eng_shard *s, struct io_uring_cqe *cqe);
void eng_conn_rearm(struct eng_shard *s, struct eng_conn *c);
void eng_conn_on_timer(struct eng_shard *s, struct eng_conn *c);
void eng_conn_go_away(struct eng_shard *s, struct eng_conn *c);
void eng_conn_kill(struct eng_shard *s, struct eng_conn *c);

static inline uint32_t eng_slot(const struct eng_shard *s,
				const struct eng_conn *c)
{
	return (uint32_t)(c - s->conns);
}

/* timer.c: a timing wheel of ENG_TICK_MS ticks over connection slots. */
void eng_timer_init(struct eng_shard *s);
void eng_timer_set(struct eng_shard *s, struct eng_conn *c, uint32_t due);
void eng_timer_del(struct eng_shard *s, struct eng_conn *c);
void eng_timer_advance(struct eng_shard *s, uint32_t now);

static inline uint32_t eng_ms_to_ticks(unsigned ms)
{
	return (ms + ENG_TICK_MS - 1) / ENG_TICK_MS;
}

/* buf.c: send buffers. */
struct eng_buf *eng_buf_new(size_t cap);
void eng_buf_put(struct eng_buf *b);
static inline struct eng_buf *eng_buf_get(struct eng_buf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

/* mem: engine allocations go through mimalloc unless sanitizing. */
void *eng_malloc(size_t n);
void *eng_realloc(void *p, size_t n);
void eng_free(void *p);

#define ENG_STAT_ADD(s, field, n) \
	atomic_fetch_add_explicit(&(s)->stats.field, (n), memory_order_relaxed)

#endif
