/* SPDX-License-Identifier: MIT */
/*
 * handover: a new ringcast process takes over from a running one
 * (docs/HANDOVER.md). The running process listens on a unix stream
 * socket (--handover-socket, owner-only); the new one, started with the
 * same options and --take-over PATH, connects there. They exchange
 * hellos (versions, capabilities), the old sends its listening sockets
 * (SCM_RIGHTS) and the embedded broker's histories and inboxes, the new
 * installs them, starts accepting and says so, and the old closes its
 * clients in paced waves (1012; 4200 on the Pusher endpoint) and exits 0.
 *
 * handover.c: the wire (messages, fds, hellos, the sockets' checks);
 * handover_give.c: the old process's side, on a thread of its own;
 * handover_take.c: the new process's side, in main around the shards' start;
 * handover_shard.c: what each shard does, on its own thread: freeze,
 * dump, resume, the drain's waves, and at start the state it owns.
 */
#ifndef RC_ENGINE_HANDOVER_H
#define RC_ENGINE_HANDOVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "eng.h"

/* ---- the wire (docs/HANDOVER.md) --------------------------------------- */

#define ENG_HO_MAGIC		0x5243484fu	/* "RCHO" */
#define ENG_HO_PROTO		1	/* message framing and hello */
#define ENG_HO_STATE		1	/* the state records' format */
#define ENG_HO_LIVE		1	/* the connection records' format */
#define ENG_HO_MAX_MSG		(4u << 20)	/* bytes in one message... */
#define ENG_HO_MAX_REC		(64u << 20)	/* ... but CONNS of one record */
#define ENG_HO_MAX_RECV		(ENG_HO_MAX_REC + 4096)	/* accepted */
#define ENG_HO_MAX_FDS		253	/* SCM_MAX_FD: fds in one message */
#define ENG_HO_FRAME_MIN	64	/* bytes: no kept push frame is shorter */

/* Message types; one with ENG_HO_T_OPTIONAL set may be skipped. */
enum {
	ENG_HO_T_HELLO = 1,	/* both ways, first */
	ENG_HO_T_LISTENERS,	/* old -> new: listening sockets (fds) */
	ENG_HO_T_STATE,		/* old -> new: a piece of the state */
	ENG_HO_T_STATE_END,	/* old -> new: the state is whole */
	ENG_HO_T_READY,		/* new -> old: accepting on them now */
	ENG_HO_T_ABORT,		/* either way: giving up (a reason) */
	ENG_HO_T_CONNS,		/* old -> new: live connections (fds) */
	ENG_HO_T_SUBS,		/* old -> new: live on one Redis: channels */
	ENG_HO_T_SUBSCRIBED,	/* new -> old: ... all subscribed */
	ENG_HO_T_OPTIONAL = 0x80,
};

/* Capabilities, a hello's bits. */
#define ENG_HO_CAP_LISTENERS	(1u << 0)	/* listening sockets */
#define ENG_HO_CAP_STATE	(1u << 1)	/* histories and inboxes */
#define ENG_HO_CAP_LIVE		(1u << 2)	/* live connections (Level 2) */
#define ENG_HO_CAP_REDIS	(1u << 3)	/* ... with one Redis (marker) */

/* State records, in the STATE messages' byte stream. */
enum {
	ENG_HO_R_HIST = 1,	/* one channel's history */
	ENG_HO_R_INBOX = 2,	/* one user's inbox */
	ENG_HO_R_CONN = 3,	/* one live connection (CONNS messages) */
};

enum { ENG_HO_MODE_DRAIN = 0, ENG_HO_MODE_LIVE = 1 };

/* A hello, either way. */
struct eng_ho_hello {
	uint32_t magic;
	uint16_t proto;			/* ENG_HO_PROTO of the sender */
	uint16_t state;			/* the state format it writes/reads */
	uint32_t caps;			/* ENG_HO_CAP_* it has */
	uint16_t shards;
	uint8_t mode;			/* ENG_HO_MODE_*: asked for (new) */
	uint8_t redis;			/* 1: its broker is Redis */
	uint32_t pid;
	uint16_t live;			/* ENG_HO_LIVE it writes/reads; 0:
					 * none (appended: an earlier
					 * hello ends before it) */
};

/*
 * A growing byte buffer written big-endian (the state, a message's body)
 * and a cursor reading one. A failed allocation sets @err and every
 * later put is a no-op; a read past the end sets @err and gives zeros.
 */
struct eng_ho_buf {
	uint8_t *p;			/* owned, eng_malloc'd */
	size_t len, cap;
	bool err;
};

struct eng_ho_rd {
	const uint8_t *p;		/* borrowed */
	size_t len, off;
	bool err;
};

/* Appends to @b, reads from @r (the wire's integers, big-endian). */
static inline void eng_ho_put(struct eng_ho_buf *b, const void *src, size_t n)
{
	if (b->err || !n)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *p;

		while (cap < b->len + n)
			cap *= 2;
		p = eng_realloc(b->p, cap);
		if (!p) {
			b->err = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static inline void eng_ho_put_u8(struct eng_ho_buf *b, uint8_t v)
{
	eng_ho_put(b, &v, 1);
}

static inline void eng_ho_put_u16(struct eng_ho_buf *b, uint16_t v)
{
	uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	eng_ho_put(b, x, 2);
}

static inline void eng_ho_put_u32(struct eng_ho_buf *b, uint32_t v)
{
	eng_ho_put_u16(b, (uint16_t)(v >> 16));
	eng_ho_put_u16(b, (uint16_t)v);
}

static inline void eng_ho_put_u64(struct eng_ho_buf *b, uint64_t v)
{
	eng_ho_put_u32(b, (uint32_t)(v >> 32));
	eng_ho_put_u32(b, (uint32_t)v);
}

static inline void eng_ho_buf_free(struct eng_ho_buf *b)
{
	eng_free(b->p);
	memset(b, 0, sizeof(*b));
}

static inline const uint8_t *eng_ho_get(struct eng_ho_rd *r, size_t n)
{
	const uint8_t *p;

	if (r->err || n > r->len - r->off) {
		r->err = true;
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

static inline uint8_t eng_ho_get_u8(struct eng_ho_rd *r)
{
	const uint8_t *p = eng_ho_get(r, 1);

	return p ? p[0] : 0;
}

static inline uint16_t eng_ho_get_u16(struct eng_ho_rd *r)
{
	const uint8_t *p = eng_ho_get(r, 2);

	return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

static inline uint32_t eng_ho_get_u32(struct eng_ho_rd *r)
{
	uint32_t hi = eng_ho_get_u16(r);

	return hi << 16 | eng_ho_get_u16(r);
}

static inline uint64_t eng_ho_get_u64(struct eng_ho_rd *r)
{
	uint64_t hi = eng_ho_get_u32(r);

	return hi << 32 | eng_ho_get_u32(r);
}

/*
 * Sends one message of @type and @len bytes of @body on @fd, with @nfds
 * (at most ENG_HO_MAX_FDS) of @fds as SCM_RIGHTS. Returns 0 or -errno.
 */
int eng_ho_send(int fd, uint8_t type, const void *body, size_t len,
		const int *fds, unsigned nfds);

/*
 * Receives one message: its type in *@type, its body in @body (emptied
 * first), the fds that came with it in @fds (at most ENG_HO_MAX_FDS,
 * *@nfds of them, the caller's to close). Returns 0, -EPIPE when the
 * peer closed, -EBADMSG for a message over ENG_HO_MAX_RECV, or -errno.
 */
int eng_ho_recv(int fd, uint8_t *type, struct eng_ho_buf *body, int *fds,
		unsigned *nfds);

/* @h as a hello's body, and back (-EPROTO: not a hello). */
void eng_ho_hello_put(struct eng_ho_buf *b, const struct eng_ho_hello *h);
int eng_ho_hello_get(const struct eng_ho_buf *b, struct eng_ho_hello *h);

/*
 * The peer of connected unix socket @fd runs as our user (SO_PEERCRED).
 * Returns 0, or -EPERM after saying so on stderr.
 */
int eng_ho_peer_ok(int fd);

/* ---- what the process keeps ------------------------------------------ */

/*
 * Phases the old process's shards follow (eng_handover.phase): the
 * thread sets one and mails every shard (eng_ho_wake_all), which takes
 * it at once and on each turn until it acks; the tick looks too, so a
 * lost wake-up costs a tick, not the phase.
 */
enum {
	ENG_HO_IDLE = 0,	/* serving */
	ENG_HO_FREEZE,		/* no request that changes state */
	ENG_HO_DUMP,		/* write the state out */
	ENG_HO_DRAIN,		/* the new one accepts: close in waves */
	ENG_HO_SAVE,		/* live: write the quiesced connections */
};

/* Why a hand-over did less than asked (counted in /stats). */
enum {
	ENG_HO_FB_LIVE = 0,	/* live asked, not built: drained */
	ENG_HO_FB_VERSION,	/* state format not understood: not sent */
	ENG_HO_FB_BROKER,	/* Redis on either side: not sent */
	ENG_HO_FB_PEER,		/* the new process went before READY */
	ENG_HO_FB_CONN,		/* live: a connection drained, not carried */
	ENG_HO_FBS,
};

struct eng_handover {
	int lfd;			/* --handover-socket's, or -1 */
	uint64_t ino, dev;		/* ... its file, ours to unlink */
	pthread_t thread;		/* handover_give.c's */
	bool thread_up;			/* ... started: join it at the stop */
	atomic_int phase;		/* ENG_HO_*: shards follow it */
	atomic_uint acked;		/* shards done with the phase */
	atomic_uint idle_gen;		/* failures: shards ack each one's IDLE */
	atomic_bool restarting;		/* closes say 1012 / 4200 */
	atomic_bool exiting;		/* the process stops: thread, end */
	atomic_int cfd;			/* the take-over's connection, or -1 */
	/* the new process's side, until its shards have started */
	int take_fd;			/* to the old process, or -1 */
	int *fds;			/* listeners received, owned */
	unsigned nfds, fds_used;
	struct eng_ho_buf state;	/* the state received */
	atomic_bool hold;		/* shards wait to accept: not all up */
	bool install;			/* the state understood: shards take theirs */
	uint64_t t_state;		/* ms: the state came (for confirm_ms) */
	/* /stats and the log: what the last hand-over did */
	const char *role;		/* "given", "taken" or NULL */
	uint8_t mode_asked, mode_used;
	atomic_uint_fast64_t fallbacks[ENG_HO_FBS];
	atomic_uint_fast64_t listeners, state_bytes, hists, inboxes;
	atomic_uint_fast64_t drained, attempts;
	atomic_uint_fast64_t freeze_ms, state_ms, confirm_ms, drain_ms;
	/* a live hand-over */
	bool live;			/* old: this one carries connections */
	atomic_uint_fast64_t live_conns, live_bytes, save_ms, conns_ms;
	struct eng_ho_buf crecs;	/* new: the first CONNS message */
	int *cfds;			/* ... its fds, owned */
	unsigned ncfds;
	struct eng_ho_buf subs;		/* new: SUBS' channels so far */
	atomic_bool live_go;		/* new: every connection received */
	atomic_uint live_done;		/* ... shards whose are registered */
	atomic_uint live_armed;		/* ... shards whose read and send */
	bool streaming;			/* new: CONNS come after the shards
					 * start, adopted as they arrive */
	struct eng_ho_inq *inq;		/* ... per shard, what main queued */
	uint64_t n_in;			/* ... connections queued so far */
	atomic_uint fds_out;		/* ... regular fds queued, not adopted */
	atomic_uint lost_acked;		/* ... shards that let theirs go */
	atomic_bool lost;		/* ... the old process went mid-stream */
	struct ring *wake;		/* a ring of the thread that mails the
					 * shards (give's thread, or main) */
	uint64_t t_quiesce;		/* old: ms the freeze began */
	atomic_uint_fast64_t quiesce_ms, install_ms, fds_peak;
};

/*
 * The new process: connections main received for one shard, queued until
 * the shard adopts them (its wake-up mail): per connection a u32 length
 * and the record in @recs, and its regular fd in @fds.
 */
struct eng_ho_inq {
	pthread_mutex_t lock;
	struct eng_ho_buf recs;
	int *fds;
	unsigned n, cap;
};

/*
 * The regular fds a live hand-over keeps open on either side, at most,
 * whatever the count: far under RLIMIT_NOFILE, which the shards' direct
 * descriptors do not count against.
 */
#define ENG_HO_FD_WINDOW	(2 * ENG_HO_MAX_FDS)

/*
 * The mailing ring of the calling thread (the give thread, or main in
 * the new process), made on first use. Returns 0 or -errno.
 */
int eng_ho_wake_init(struct eng_handover *ho);
void eng_ho_wake_exit(struct eng_handover *ho);

/*
 * Mails shard @i (or every shard that is up) to look at the hand-over
 * now (ENG_OP_HO_WAKE), from the ring eng_ho_wake_init() made; without
 * one, or when the post fails, the shard's tick looks anyway.
 */
void eng_ho_wake(struct eng *e, unsigned i);
void eng_ho_wake_all(struct eng *e);

/*
 * A shard's side of a live hand-over in the old process: the records it
 * wrote and, per record, the connection's slot and the regular fd made
 * for its socket (ring_fd_install), which the thread sends and closes.
 */
struct eng_ho_out {
	uint32_t slot;
	int fd;			/* ENG_HO_FD_*, or the fd (__atomic: the
				 * shard sets it, the thread takes it) */
	uint32_t off, len;	/* the record in recs */
};

enum {
	ENG_HO_FD_WAIT = -1,	/* not installed yet */
	ENG_HO_FD_FAILED = -2,	/* no fd: the connection serves on */
	ENG_HO_FD_SENT = -3,	/* sent and closed by the thread */
};

/*
 * The thread raises @want (entries the shard may install, in order) as
 * it sends and closes, ENG_HO_FD_WINDOW ahead at most, and mails the
 * shard; the shard installs up to it (@next: the first not asked yet).
 */
struct eng_ho_live {
	struct eng_ho_buf recs;
	struct eng_ho_out *v;
	uint32_t n, cap;
	uint32_t pending;	/* fd installs on their way */
	atomic_uint want;	/* entries the thread allows installed */
	uint32_t next;		/* ... asked of the ring so far */
	uint64_t until;		/* in SAVE: ms the quiet is waited for */
	bool stopped;		/* sends stopped */
	bool saved;		/* records written */
	bool failed;		/* out of memory: the thread gives up */
};

/* An fd install of the hand-over completed (ENG_OP_HO_FD's CQE). */
struct ring_cqe;
void eng_handover_on_fd(struct eng_shard *s, struct ring_cqe *cqe);

/* e->ho, made on first use (zeroed, no fds); NULL out of memory. */
struct eng_handover *eng_handover_new(struct eng *e);

/*
 * ---- the old side (handover_give.c) ------------------------------------
 * Opens --handover-socket PATH if the options name one: a unix stream
 * socket of mode 0600, ours (checked after bind). A stale file is
 * replaced; one a live process listens on is refused unless @replace
 * (the new process, once the old one has handed over). Returns 0 or
 * -errno, said on stderr.
 */
int eng_handover_listen(struct eng *e, bool replace);

/*
 * Starts the thread that serves take-overs on the socket; after the
 * shards are up. When a take-over is confirmed and its drain done, the
 * thread sends the process SIGTERM with e->ho->restarting set, and the
 * stop closes what is left with 1012 (4200). Returns 0 or -errno.
 */
int eng_handover_start(struct eng *e);

/*
 * At the stop: the socket closed and its file unlinked if still ours;
 * the thread ended (it is told through the socket's shutdown).
 */
void eng_handover_exit(struct eng *e);

/*
 * ---- the new side (handover_take.c) ------------------------------------
 * --take-over PATH: connects, says hello, receives the listening sockets
 * (kept in e->ho->fds for open_listeners) and the state (kept for the
 * shards, which install theirs as they start); live, it stops at the
 * first CONNS message (kept: the rest come in eng_handover_taken(), once
 * the shards run). Before the shards start.
 * Returns 0 or -errno, said on stderr (then the process exits: the old
 * one serves on).
 */
int eng_handover_take(struct eng *e);

/*
 * The next received listener for a shard (the caller owns it), or -1
 * when they are used up.
 */
int eng_handover_listener(struct eng *e);

/*
 * The shards are up (accept held): a live take-over's connections are
 * received now, each batch queued to the shards, which adopt them into
 * their rings as they come (ENG_HO_FD_WINDOW regular fds at most); once
 * all run, the shards accept and READY goes to the old process; the
 * state freed, received listeners no shard took closed. Returns 0 or
 * -errno; -ECONNABORTED when the connections broke off mid-stream: the
 * shards let theirs go silently (the old process resumes them) and the
 * process must stop.
 */
int eng_handover_taken(struct eng *e);

/*
 * A live hand-over with one Redis (handover_redis.c, docs/HANDOVER.md
 * "With Redis"). eng_ho_redis_caps(): ENG_HO_CAP_REDIS when this process
 * is on one Redis (not a cluster); eng_ho_redis_live(): whether we and
 * @peer both are and it can. eng_ho_redis_give() (the old process,
 * quiesced, before its connections are written): SUBS sent, SUBSCRIBED
 * awaited, the marker published and seen by our bridge; 0 or -errno
 * (the take-over fails). eng_ho_redis_take() (the new one, on each SUBS
 * @msg): at the last, the bridge started, the channels and the marker
 * subscribed, SUBSCRIBED sent; 0 or -errno. eng_ho_redis_end(): the
 * bridge delivers what it held since the marker and serves on (the old
 * one after READY or once its shards resumed; the new one once its
 * carried connections are subscribed).
 */
uint32_t eng_ho_redis_caps(const struct eng *e);
bool eng_ho_redis_live(const struct eng *e, const struct eng_ho_hello *peer);
int eng_ho_redis_give(struct eng *e, int fd);
int eng_ho_redis_take(struct eng *e, int fd, const struct eng_ho_buf *msg);
void eng_ho_redis_end(struct eng *e);

/*
 * ---- the shards (handover_shard.c), each on its own thread --------------
 * At start: installs the histories and inboxes of the received state
 * that this shard owns, and holds its accept until every shard is up
 * (eng_handover_taken): the listeners come with clients waiting, whose
 * requests a shard not yet up could not serve. Returns how many.
 */
unsigned eng_handover_install(struct eng_shard *s);

/*
 * Follows e->ho->phase: every tick (@tick: the drain's waves pace on
 * it), on a wake-up mail, and after each turn while eng_handover_busy().
 * Returns ENG_HO_ACCEPT_OFF when the shard must cancel its accept (the
 * new process accepts), ENG_HO_ACCEPT_ON when it may accept (all shards
 * up, or a failed hand-over), else 0.
 */
enum { ENG_HO_ACCEPT_OFF = 1, ENG_HO_ACCEPT_ON = 2 };
int eng_handover_tick(struct eng_shard *s, bool tick);

/* Whether @s's hand-over step waits on completions: look after a turn. */
static inline bool eng_handover_busy(const struct eng_shard *s)
{
	return s->ho_busy;
}

/*
 * @s is exiting: what a live hand-over left on it (its quiesced set, the
 * records and fds of one that fell back to a drain) goes.
 */
void eng_handover_shard_exit(struct eng_shard *s);

/*
 * Whether @s takes no request that changes state now (frozen for a
 * hand-over): such a request's connection is closed unanswered, and its
 * client retries it on the new process.
 */
static inline bool eng_handover_frozen(const struct eng_shard *s)
{
	return s->ho_frozen;
}

/* Appends ,"handover":{...} for /stats (nothing before a hand-over). */
size_t eng_handover_stats(struct eng *e, char *out, size_t cap);

#endif
