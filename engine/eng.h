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

#include <sys/uio.h>

#include "json.h"
#include "ring.h"
#include "ws.h"

#define ENG_TICK_MS		100	/* timer resolution */
#define ENG_WHEEL_SLOTS		1024	/* 102.4 s before a timer laps */
#define ENG_NIL			UINT32_MAX	/* end of a slot-linked list */
#define ENG_CONN_BUDGET		80	/* bytes; tests/test-engine-conn.c */
#define ENG_CHAN_MAX		128	/* bytes in a channel name */
#define ENG_MAX_CMD_CHANNELS	256	/* channels in one (un)subscribe */
#define ENG_APP_MAX		32	/* bytes in an "app" claim */
#define ENG_MAX_PATTERNS	64	/* entries in a "channels" claim */
#define ENG_MAX_TOKEN		8192	/* bytes in a JWT */
#define ENG_JWT_LEEWAY		10	/* default --jwt-leeway, seconds */
#define ENG_CLOSE_WAIT_MS	2000	/* peer's close reply after ours */
#define ENG_SLOW_WAIT_MS	30000	/* a slow consumer to read its 1008 */

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
	bool epoll;			/* --io epoll: the comparison backend */
	bool client_publish;		/* clients may publish on /ws */
	unsigned max_subs;		/* subscriptions per connection */
	uint32_t max_pending;		/* queued bytes before 1008 */
	size_t arena_size;		/* shared frame arena, bytes */
	uint32_t zc_threshold;		/* frames this size and up: send_zc */
	char api_key[256];		/* "" = publishing needs no key */
	char redis_host[256];		/* "" = no Redis: embedded broker */
	uint16_t redis_port;
	unsigned redis_db;
	char redis_user[128];
	char redis_password[256];
	char redis_prefix[64];		/* default "ringcast:" */
	char node_id[40];		/* presence in Redis: this node */
	uint8_t auth;			/* ENG_AUTH_* */
	char jwt_secret[512];		/* HS256 key, "" = none */
	char jwt_pubkey_file[1024];	/* RS256/ES256 PEM, "" = none */
	unsigned max_conns_per_user;	/* per node; 0 = no limit */
	unsigned jwt_leeway;		/* seconds of clock skew on exp, nbf */
};

enum { ENG_AUTH_OFF = 0, ENG_AUTH_OPTIONAL, ENG_AUTH_REQUIRED };

/* Who a connection is, from its token; owned by the connection. */
struct eng_auth {
	int64_t exp;			/* unix seconds, 0 = no expiry */
	uint8_t uid_len;
	uint8_t app_len;
	uint8_t has_chans;		/* a "channels" claim restricts */
	uint16_t npat;
	char uid[ENG_CHAN_MAX + 1];
	char app[ENG_APP_MAX + 1];
	char *pat[];			/* npat patterns, strings follow */
};

/* Connection states. */
enum {
	ENG_CONN_FREE = 0,
	ENG_CONN_HTTP,		/* reading the request head */
	ENG_CONN_WS,		/* open WebSocket */
	ENG_CONN_CLOSING,		/* our close frame is queued or sent */
	ENG_CONN_DRAIN,		/* last response queued: close once sent */
	ENG_CONN_DEAD,		/* cancelling I/O, then close_direct */
};

/* What a connection is, once its first request is read. */
enum {
	ENG_CONN_K_HTTP = 0,	/* plain HTTP requests (keep-alive) */
	ENG_CONN_K_ECHO,		/* WebSocket on /echo */
	ENG_CONN_K_PUSH,		/* WebSocket on /ws: the push protocol */
};

/* Bits of eng_conn.flags. */
#define ENG_CONN_F_RECV		(1u << 0)	/* multishot recv armed */
#define ENG_CONN_F_SEND		(1u << 1)	/* one send in flight */
#define ENG_CONN_F_CLOSE_FD		(1u << 2)	/* close_direct in flight */
#define ENG_CONN_F_REARM		(1u << 3)	/* recv to re-arm: ran dry */
#define ENG_CONN_F_PEER_CLOSED	(1u << 4)	/* peer's close frame seen */
#define ENG_CONN_F_SHUT		(1u << 5)	/* shutdown(SHUT_WR) issued */
#define ENG_CONN_F_WAIT		(1u << 6)	/* HTTP: reply awaits a publish */
#define ENG_CONN_F_KEEP		(1u << 7)	/* HTTP: keep-alive after reply */
#define ENG_CONN_F_ADMITTED		(1u << 8)	/* user: counted by the owner */
#define ENG_CONN_F_RESUME		(1u << 9)	/* listed in resume[] */
#define ENG_CONN_F_CANCEL		(1u << 10)	/* cancel in flight */
#define ENG_CONN_F_SHUTTING		(1u << 11)	/* shutdown in flight */

enum { ENG_BUF_HEAP = 0, ENG_BUF_ARENA };

#define ENG_BUF_F_FRAME		(1u << 0)	/* a push frame: counted live */
#define ENG_BUF_F_BCAST		(1u << 1)	/* for every /ws connection */
#define ENG_BUF_F_USER		(1u << 2)	/* for one user's connections */
#define ENG_BUF_F_KICK		(1u << 3)	/* a close frame: disconnect */

/*
 * A send buffer: refcounted bytes on the wire as they are. A push frame
 * is one of these in the shared arena (arena.c), referenced by every
 * connection it goes to; the last reference returns it.
 */
struct eng_buf {
	atomic_uint refs;	/* queue entries, mails, the builder */
	uint32_t start;		/* first byte to send: header room before */
	uint32_t len;		/* bytes to send from data + start */
	uint32_t cap;		/* bytes usable in data[] */
	uint8_t kind;		/* ENG_BUF_HEAP or ENG_BUF_ARENA */
	uint8_t cls;		/* arena size class */
	uint8_t flags;		/* ENG_BUF_F_* */
	uint8_t name_len;	/* push frame: channel name at name_off */
	uint32_t name_off;
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
	uint32_t plen;		/* bytes in part, consumed ones included */
	uint32_t pcap;		/* bytes allocated for part */
	uint32_t want;		/* unconsumed bytes needed before a re-parse */
	uint32_t poff;		/* bytes of part already consumed; 0 if !plen */
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
	uint8_t state;		/* ENG_CONN_* */
	uint8_t kind;		/* ENG_CONN_K_* */
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

/* One connection's subscription to one channel. */
struct eng_sub {
	struct eng_sub *prev;	/* in the channel's list */
	struct eng_sub *next;
	struct eng_sub *cnext;	/* in the connection's list */
	struct eng_chan *chan;	/* borrowed: lives while it has subs */
	uint32_t slot;		/* the subscriber */
};

/* A subscribe reply waiting for the owner shard to register interest. */
struct eng_wait {
	struct eng_wait *next;		/* in the channel's waiters */
	struct eng_pend *pend;
};

struct eng_pend {
	struct eng_buf *reply;		/* owned; sent when count hits 0 */
	uint32_t slot, gen;		/* the subscriber */
	uint32_t count;			/* channels still unacknowledged */
};

/*
 * A channel as one shard sees it: its local subscribers, and on the
 * channel's owner shard (the sequencer for its messages), which shards
 * have subscribers at all.
 */
struct eng_chan {
	struct eng_chan *next;		/* hash chain */
	uint64_t hash;
	struct eng_sub *subs;		/* local subscribers */
	uint32_t nsubs;
	uint32_t nshards;		/* owner: bits set in shards */
	uint64_t *shards;		/* owner: bitmap, NULL when empty */
	struct eng_wait *waiters;	/* replies held until registered */
	uint8_t pending;		/* interest sent to owner, no ack yet */
	uint8_t registered;		/* owner knows this shard has subs */
	uint8_t rstate;			/* owner, Redis: ENG_R_* */
	struct eng_pres *pres;		/* owner of a user: presence */
	uint8_t local_rack;		/* owner: own ack awaits Redis */
	struct eng_owner_mail *racks;	/* owner: acks awaiting Redis */
	uint16_t len;
	char name[];
};

/* Owner's view of the channel's Redis subscription. */
enum { ENG_R_NONE = 0, ENG_R_PENDING, ENG_R_CONFIRMED };

/* Interest mail: shard @from has (add) or no longer has subscribers. */
/* Mail whose post failed, to be posted again (pub.c, eng_pub_retry). */
struct eng_retry {
	struct eng_retry *next;
	unsigned op;			/* ENG_OP_* */
	unsigned to;			/* the shard */
	void *ptr;			/* owned: the mail */
};

struct eng_owner_mail {
	struct eng_owner_mail *next;	/* owner: in racks */
	uint16_t from;
	uint8_t add;
	uint8_t len;
	uint8_t kind;			/* ENG_MAIL_* */
	uint8_t ok;			/* JOIN: admitted */
	uint8_t counted;		/* LEAVE: was admitted */
	uint8_t last;			/* LEAVE: none left on that shard */
	uint8_t app_len;
	uint32_t slot, gen;		/* JOIN, QUERY, KICK: the connection */
	uint32_t conns;			/* QUERY, KICK: the user's connections */
	char app[ENG_APP_MAX + 1];
	char name[ENG_CHAN_MAX + 2];	/* channel, or "\x01" + user id */
	char apps[8 * (ENG_APP_MAX + 3)];	/* QUERY: "web","ios" */
	char wskey[32];			/* JOIN: Sec-WebSocket-Key for the 101 */
};

/* What an eng_interest mail asks of a channel's owner. */
enum {
	ENG_OWN_INTEREST = 0,	/* this shard has subscribers, or not */
	ENG_OWN_JOIN,		/* admit one more connection of a user */
	ENG_OWN_LEAVE,		/* a user's connection left (or was refused) */
	ENG_OWN_QUERY,		/* GET /users/{uid} */
	ENG_OWN_KICK,		/* POST /users/{uid}/disconnect */
};

/* A user's presence on this node, kept by the user's owner shard. */
#define ENG_PRES_APPS	8
struct eng_pres {
	uint32_t conns;
	uint32_t napps;
	struct {
		uint32_t n;
		char name[ENG_APP_MAX + 1];
	} app[ENG_PRES_APPS];
};

/* Internal channel names of users start with this byte, never valid in
 * a channel name, so a client cannot subscribe to another's messages. */
#define ENG_USER_MARK	'\x01'


/* Mail owner -> Redis bridge (subscribe or not) and back (confirmed). */
struct eng_rsub {
	uint16_t from;			/* the owner shard */
	uint8_t add;
	uint16_t len;
	char name[];			/* the Redis channel name */
};

/* A request that goes through Redis: shard -> bridge -> shard. */
struct eng_rreq {
	struct eng_rreq *next;		/* bridge: awaiting its reply */
	uint16_t from;			/* the asking shard, or ENG_BRIDGE */
	uint8_t kind;			/* ENG_CONN_K_HTTP or ENG_CONN_K_PUSH */
	uint8_t op;			/* ENG_RQ_* */
	uint32_t slot, gen;		/* the asking connection */
	long long result;		/* the reply's integer, or -errno */
	long long r2, r3;		/* ONLINE: connections, nodes */
	struct eng_buf *ok, *err;	/* /ws: the replies, prebuilt */
	char text[ENG_PRES_APPS * (ENG_APP_MAX + 3)];	/* QUERY: apps */
	size_t len;			/* bytes of the command in data */
	char data[];			/* the command, formatted as RESP */
};

enum {
	ENG_RQ_PUBLISH = 0,	/* PUBLISH: receivers */
	ENG_RQ_QUERY,		/* one user's presence on live nodes */
	ENG_RQ_ONLINE,		/* users, connections, nodes */
	ENG_RQ_PRESENCE,	/* bridge: presence writes, no one waits */
	ENG_RQ_BEAT,		/* bridge: heartbeat; 0 = we had expired */
	ENG_RQ_QUIET,		/* bridge: no reply expected by anyone */
};

#define ENG_BRIDGE	0xffff	/* the Redis bridge as sender: nobody awaits a reply */

/* Presence mail, owner shard -> bridge: a user's count on this node. */
struct eng_rpres {
	uint32_t conns;
	uint8_t len;
	char uid[ENG_CHAN_MAX + 1];
	char apps[ENG_PRES_APPS * (ENG_APP_MAX + 1)];	/* "ios,web" */
};

struct eng_chans {
	struct eng_chan **buckets;
	size_t nbuckets;		/* a power of two */
	size_t count;
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
	atomic_uint_fast64_t channels;		/* with a local subscriber */
	atomic_uint_fast64_t chans_owned;	/* sequenced here, with subs */
	atomic_uint_fast64_t subscriptions;
	atomic_uint_fast64_t published;		/* messages sequenced here */
	atomic_uint_fast64_t delivered;		/* push frames queued */
	atomic_uint_fast64_t dropped;		/* frames discarded: slow */
	atomic_uint_fast64_t slow_closed;	/* closed with 1008 */
	atomic_uint_fast64_t zc_sends;		/* sends with send_zc */
	atomic_uint_fast64_t zc_copied;		/* ...the kernel copied */
	atomic_uint_fast64_t mbox_errors;	/* mailbox posts that failed */
	atomic_uint_fast64_t users_owned;	/* owner: users with conns */
	atomic_uint_fast64_t user_conns;	/* owner: their connections */
	atomic_uint_fast64_t auth_failed;	/* 401 at the upgrade */
	atomic_uint_fast64_t kicked;		/* closed by a disconnect */
	atomic_uint_fast64_t user_refused;	/* over --max-conns-per-user */
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
	uint32_t *resume;		/* slots to parse again after a batch */
	uint32_t nr_resume;
	uint32_t wheel[ENG_WHEEL_SLOTS];/* heads of timer lists */
	uint32_t tick;			/* ticks since start */
	uint64_t t0_ms;			/* CLOCK_MONOTONIC at tick 0 */
	int64_t t0_unix;		/* wall clock at tick 0, seconds */
	bool up;			/* ring set up: mailbox reaches it */
	bool accepting;			/* multishot accept armed */
	bool stopping;			/* SIGTERM seen: closing everyone */
	bool drained;			/* stopping, and no connection left */
	uint32_t stop_tick;		/* force-close deadline */
	struct eng_stats stats;
	struct eng_chans chans;
	struct eng_retry *retry;	/* owned: mail to post again */
	struct json_parser *json;	/* owned: /ws commands */
	uint8_t *scratch;		/* padded copy of a command */
	bool fixed_arena;		/* arena registered as fixed buffer 0 */
	pthread_t thread;
};

struct eng_redis;

struct eng {
	struct eng_cfg cfg;
	struct eng_redis *redis;	/* NULL without --redis */
	struct eng_shard *shards;	/* cfg.shards of them */
	atomic_uint_fast64_t nconns;	/* all shards, for --max-conns */
	atomic_uint drained;		/* shards stopped with no connection */
	atomic_long mail;		/* mail to shards posted, not yet read */
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
	ENG_OP_CANCEL,		/* cancels nobody waits for */
	ENG_OP_CONN_CANCEL,	/* a connection's cancel or shutdown */
	ENG_OP_TIMER,
	ENG_OP_STOP,		/* mailbox: stop the shard */
	ENG_OP_MBOX_ERR,	/* a mailbox post that failed */
	ENG_OP_SEND_ZC,		/* ptr: the struct eng_zc in flight */
	ENG_OP_SENDV,		/* ptr: the struct eng_sendv in flight */
	ENG_OP_PUB,		/* mailbox: struct eng_pub to its sequencer */
	ENG_OP_PUB_ACK,		/* mailbox: struct eng_pub back, sequenced */
	ENG_OP_DELIVER,		/* mailbox: push frame (struct eng_buf) */
	ENG_OP_INTEREST,	/* mailbox: struct eng_owner_mail to owner */
	ENG_OP_INTEREST_ACK,	/* mailbox: ... and back */
	ENG_OP_R_CONNECT,	/* bridge: its own connect, recv, send */
	ENG_OP_R_RECV,
	ENG_OP_R_SEND,
	ENG_OP_R_SUBSCRIBE,	/* mailbox: struct eng_rsub to the bridge */
	ENG_OP_R_SUB_ACK,	/* mailbox: ... back to the owner, confirmed */
	ENG_OP_R_REQUEST,	/* mailbox: struct eng_rreq to the bridge */
	ENG_OP_R_REPLY,	/* mailbox: ... back, with PUBLISH's count */
	ENG_OP_R_PRESENCE,	/* mailbox: struct eng_rpres to the bridge */
	ENG_OP_USER,		/* mailbox: struct eng_owner_mail (user) to owner */
	ENG_OP_USER_ACK,	/* mailbox: ... back */
	ENG_OP_FAILED = 0x80,	/* or-ed into a failed post's own CQE */
};

#ifdef RC_FAULT_INJECT
/*
 * Test builds (-Dfault_inject=true) only: reads RINGCAST_FAULT_MAIL=N,
 * after which every Nth eng_post() fails. Call before the shards start.
 */
void eng_fault_init(void);
#endif

/* core.c */
void *eng_shard_main(void *arg);
int eng_post(struct eng *e, struct ring *from, struct ring *to, unsigned op,
	     void *ptr, int32_t res);

/* Mail that a shard reads: counted in eng.mail until it is. */
static inline bool eng_is_mail(unsigned op)
{
	switch (op) {
	case ENG_OP_PUB: case ENG_OP_PUB_ACK: case ENG_OP_DELIVER:
	case ENG_OP_INTEREST: case ENG_OP_INTEREST_ACK:
	case ENG_OP_R_SUB_ACK: case ENG_OP_R_REPLY:
	case ENG_OP_USER: case ENG_OP_USER_ACK:
		return true;
	default:
		return false;
	}
}

/* conn.c */
bool eng_conn_alive(const struct eng_conn *c);
void eng_conn_accepted(struct eng_shard *s, uint32_t slot);
int eng_conn_queue(struct eng_shard *s, struct eng_conn *c,
		   struct eng_buf *b);
int eng_conn_send_frame(struct eng_shard *s, struct eng_conn *c, uint8_t op,
			const void *payload, size_t len);
void eng_conn_http_reply(struct eng_shard *s, struct eng_conn *c, int status,
			 const char *extra, const char *ctype,
			 const char *body, size_t len);
void eng_conn_resume(struct eng_shard *s, struct eng_conn *c);
void eng_conn_resumed(struct eng_shard *s, struct eng_conn *c);
void eng_conn_http_done(struct eng_shard *s, struct eng_conn *c,
			struct eng_buf *b);
void eng_conn_fail(struct eng_shard *s, struct eng_conn *c, uint16_t code);
void eng_conn_on_send_zc(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_sendv(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_reschedule(struct eng_shard *s, struct eng_conn *c);
struct hs_str;
void eng_conn_upgrade(struct eng_shard *s, struct eng_conn *c,
		      const struct hs_str *key, uint8_t kind);

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

void eng_conn_on_recv(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_send(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_close(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_on_cancel(struct eng_shard *s, struct ring_cqe *cqe);
void eng_conn_rearm(struct eng_shard *s, struct eng_conn *c);
void eng_conn_on_timer(struct eng_shard *s, struct eng_conn *c);
void eng_conn_go_away(struct eng_shard *s, struct eng_conn *c);
void eng_conn_kill(struct eng_shard *s, struct eng_conn *c);

static inline uint32_t eng_slot(const struct eng_shard *s,
				const struct eng_conn *c)
{
	return (uint32_t)(c - s->conns);
}

/* http.c: plain HTTP requests; returns bytes used, 0 when incomplete. */
size_t eng_http_request(struct eng_shard *s, struct eng_conn *c,
			const uint8_t *p, size_t n, size_t *want);

/* push.c: the /ws client protocol. */
void eng_push_message(struct eng_shard *s, struct eng_conn *c,
		      const uint8_t *p, size_t len);

/* pub.c: publishing, sequencing and fan-out across shards. */
struct eng_buf *eng_pub_frame(const char *chan, size_t clen,
			      const uint8_t *payload, size_t plen, bool json);
struct eng_buf *eng_pub_user_frame(const char *uid, size_t ulen,
				   const uint8_t *payload, size_t plen,
				   bool json);
int eng_publish(struct eng_shard *s, struct eng_conn *c,
		struct eng_buf *frame, struct eng_buf *reply);
int eng_subscribe(struct eng_shard *s, struct eng_conn *c,
		  const struct json_slice *names, unsigned n,
		  struct eng_buf *reply);
void eng_unsubscribe(struct eng_shard *s, struct eng_conn *c,
		     const struct json_slice *names, unsigned n);
void eng_unsubscribe_all(struct eng_shard *s, struct eng_conn *c);
void eng_pub_mail(struct eng_shard *s, struct ring_cqe *cqe);
/* Posts again the mail whose post failed (acks, interest); per tick. */
void eng_pub_retry(struct eng_shard *s);
int eng_retry_later(struct eng_shard *s, unsigned op, void *ptr);
void eng_pub_discard_leftovers(struct eng_shard *s);
int eng_pub_init(struct eng_shard *s);
void eng_pub_exit(struct eng_shard *s);

/* redis.c: the Redis bridge thread. */
int eng_redis_init(struct eng *e);
int eng_redis_run(struct eng *e);
void eng_redis_stop(struct eng *e, struct ring *from);
void eng_redis_free(struct eng *e);
struct ring *eng_redis_ring(const struct eng *e);
bool eng_redis_healthy(struct eng_redis *r, char *why, size_t len);
size_t eng_redis_stats(struct eng_redis *r, char *out, size_t cap);
void eng_pub_inject(struct eng *e, struct ring *from, struct eng_buf *frame);
void eng_redis_presence(struct eng_shard *s, struct eng_chan *ch);
size_t eng_redis_name(const struct eng_cfg *cfg, char *out, size_t cap,
		      const char *name, size_t len);
void eng_rreq_ack(struct eng_shard *s, struct eng_rreq *p);
struct eng_rreq *eng_rreq_new(uint8_t op, int argc, const char **argv,
			      const size_t *lens);
extern const char eng_lua_beat[], eng_lua_presence[], eng_lua_leave[];

/* The head every struct eng_pub starts with (pub.c owns the rest). */
struct eng_pub_hdr {
	struct eng_buf *frame;
};
void eng_redis_query(struct eng_shard *s, struct eng_conn *c, const char *uid,
		     size_t len);
void eng_redis_kick(struct eng_shard *s, struct eng_conn *c, const char *uid,
		    size_t len);
void eng_redis_online(struct eng_shard *s, struct eng_conn *c);
int eng_redis_publish(struct eng_shard *s, struct eng_conn *c,
		      const char *chan, size_t clen, const void *payload,
		      size_t plen, struct eng_buf *ok, struct eng_buf *err);

/* user.c: users as a target: admission, presence, push, kick. */
#define ENG_CLOSE_EXPIRED	4001	/* token expired, no refresh */
#define ENG_CLOSE_KICKED	4003	/* POST /users/{uid}/disconnect */

void eng_user_ack(struct eng_shard *s, struct eng_owner_mail *m);
bool eng_pub_owner_update(struct eng_shard *s, struct eng_chan *ch,
			  unsigned from, bool add, struct eng_owner_mail *m);
unsigned eng_pub_fanout(struct eng_shard *s, struct eng_buf *f,
			struct eng_chan *ch);
void eng_pub_presence(struct eng_shard *s, struct eng_chan *ch);
void eng_user_join(struct eng_shard *s, struct eng_conn *c,
		   const struct hs_str *key);
void eng_user_leave(struct eng_shard *s, struct eng_conn *c);
void eng_user_mail(struct eng_shard *s, struct ring_cqe *cqe);
void eng_user_owner_mail(struct eng_shard *s, struct eng_owner_mail *m);
int eng_user_query(struct eng_shard *s, struct eng_conn *c, const char *uid,
		   size_t len, uint8_t kind);
size_t eng_user_key(char *out, const char *uid, size_t len);
void eng_user_kick_frame_deliver(struct eng_shard *s, struct eng_buf *f,
				 struct eng_chan *ch);
void eng_conn_kick(struct eng_shard *s, struct eng_conn *c,
		   struct eng_buf *f);

/* auth.c: JWT at the upgrade. */
struct hs_str;
int eng_auth_init(const struct eng_cfg *cfg, const char **why);
void eng_auth_exit(void);
int eng_auth_verify(struct eng_shard *s, const char *tok, size_t len,
		    struct eng_auth **out, const char **why);
bool eng_auth_channel_ok(const struct eng_auth *a, const char *name,
			 size_t len);
bool eng_auth_token(const struct hs_str *query, const struct hs_str *authz,
		    const char **tok, size_t *len);

/* chan.c */
void eng_chan_global_init(void);
uint64_t eng_chan_hash(const char *name, size_t len);
bool eng_chan_name_ok(const char *p, size_t len);
int eng_chans_init(struct eng_chans *t);
void eng_chans_exit(struct eng_chans *t);
struct eng_chan *eng_chan_find(struct eng_chans *t, const char *name,
			       size_t len, uint64_t hash);
struct eng_chan *eng_chan_get(struct eng_chans *t, const char *name,
			      size_t len, uint64_t hash);
void eng_chan_maybe_free(struct eng_chans *t, struct eng_chan *ch);
struct eng_sub *eng_sub_find(struct eng_conn *c, const struct eng_chan *ch);
int eng_sub_add(struct eng_conn *c, uint32_t slot, struct eng_chan *ch);
void eng_sub_unlink(struct eng_sub *sub);
void eng_sub_del(struct eng_conn *c, struct eng_sub *sub);

/* arena.c: the shared frame arena, one per process. */
int eng_arena_init(size_t size);
void eng_arena_exit(void);
struct iovec eng_arena_iov(void);
bool eng_arena_owns(const void *p);
struct eng_buf *eng_arena_buf(size_t cap);
void eng_arena_free(struct eng_buf *b);
uint64_t eng_arena_fallbacks(void);
uint64_t eng_frames_live(void);
size_t eng_arena_used(void);

/* timer.c: a timing wheel of ENG_TICK_MS ticks over connection slots. */
void eng_timer_init(struct eng_shard *s);
void eng_timer_set(struct eng_shard *s, struct eng_conn *c, uint32_t due);
void eng_timer_del(struct eng_shard *s, struct eng_conn *c);
void eng_timer_advance(struct eng_shard *s, uint32_t now);

/* The tick at which wall-clock second @t arrives (token expiry). */
static inline uint32_t eng_unix_to_tick(const struct eng_shard *s, int64_t t)
{
	int64_t d = t - s->t0_unix;

	if (d <= 0)
		return 0;
	if (d > (int64_t)(UINT32_MAX / (1000 / ENG_TICK_MS)) - 1)
		return UINT32_MAX - 1;
	return (uint32_t)(d * (1000 / ENG_TICK_MS));
}

static inline uint32_t eng_ms_to_ticks(unsigned ms)
{
	/* 64-bit: a duration near UINT_MAX ms must not round to 0 ticks */
	return (uint32_t)(((uint64_t)ms + ENG_TICK_MS - 1) / ENG_TICK_MS);
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
