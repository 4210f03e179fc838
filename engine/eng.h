/* SPDX-License-Identifier: MIT */
/*
 * eng: what every engine file needs. A shard is one pinned thread owning
 * one ring, one listener and the connections that listener accepted; no
 * other thread touches a shard's connections, so the per-connection path
 * takes no lock. Cross-shard work goes through mail (mail.h). Each
 * subsystem has its own header: conn.h, buf.h, chan.h, pub.h, sub.h,
 * hist.h, inbox.h, user.h, auth.h, broker.h, rreq.h, bridge.h, resp.h,
 * timer.h;
 * engine/README.md says which file owns what.
 */
#ifndef RC_ENGINE_ENG_H
#define RC_ENGINE_ENG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"

#define ENG_TICK_MS		100	/* timer resolution */
#define ENG_LAT_BUCKETS		16	/* lat.h: latency histogram */
#define ENG_WHEEL_SLOTS		1024	/* 102.4 s before a timer laps */
#define ENG_NIL			UINT32_MAX	/* end of a slot-linked list */
#define ENG_CHAN_MAX		128	/* bytes in a channel name */
#define ENG_MAX_CMD_CHANNELS	256	/* channels in one (un)subscribe */
#define ENG_APP_MAX		32	/* bytes in an "app" claim */
#define ENG_PRES_APPS		8	/* apps listed in a user's presence */
#define ENG_MAX_TOKEN		8192	/* bytes in a JWT */
#define ENG_CLOSE_WAIT_MS	2000	/* peer's close reply after ours */

/* What the operator set; read-only once shards start. */
#define ENG_TLS_MAX_CERTS 16	/* --tls-cert pairs, for SNI */

struct eng_pusher_cfg;
struct eng_webhook_cfg;

struct eng_cfg {
	char listen_host[64];
	uint16_t port;			/* 0: the kernel picks, shared */
	unsigned shards;
	unsigned threads;		/* running them; 0: one per shard */
	uint64_t max_message;		/* bytes per message */
	uint64_t max_conns;		/* whole process */
	unsigned ping_ms;		/* 0: no server pings */
	unsigned idle_ms;		/* 0: no idle timeout */
	unsigned handshake_ms;		/* upgrade must finish in time */
	unsigned http_idle_ms;		/* kept HTTP connection; 0: none */
	unsigned recv_bufs;		/* provided buffers per shard */
	unsigned recv_buf_size;		/* bytes each */
	unsigned sq_entries;
	bool echo;			/* /echo endpoint */
	bool demo;			/* /demo: the chat demo (www.h) */
	bool epoll;			/* --io epoll: the comparison backend */
	bool client_publish;		/* clients may publish on /ws */
	bool demo_publish;		/* ... to demo:* only (--demo alone) */
	unsigned max_subs;		/* subscriptions per connection */
	uint32_t max_pending;		/* queued bytes before 1008 */
	size_t arena_size;		/* shared frame arena, bytes */
	uint32_t zc_threshold;		/* frames this size and up: send_zc */
	unsigned batch_window_us;	/* frames wait this long (0: a turn) */
	char api_key[256];		/* "" = publishing needs no key */
	char origins[1024];		/* --allowed-origins, "" = any */
	char hosts[1024];		/* --allowed-hosts, "" = none */
	bool insecure_open;		/* no key, yet not only loopback */
	char redis_host[256];		/* "" = no Redis: embedded broker */
	uint16_t redis_port;
	unsigned redis_db;
	char redis_user[128];
	char redis_password[256];
	char redis_prefix[64];		/* default "ringcast:" */
	bool redis_cluster;		/* --redis-cluster: seeds, not one */
	char redis_seeds[1024];		/* ... "HOST:PORT,HOST:PORT" */
	char node_id[40];		/* presence in Redis: this node */
	unsigned redis_timeout_ms;	/* no answer this long: link down */
	uint64_t redis_max_pending;	/* bytes queued toward Redis, at most */
	uint64_t redis_max_reading;	/* read bytes in flight, at most */
	uint64_t max_partial;		/* bytes of partial messages, all shards */
	struct eng_ns *ns;		/* owned: --namespace entries (hist.h) */
	unsigned nns;
	uint64_t history_memory;	/* bytes of history, all shards */
	unsigned inbox_max, inbox_ttl_ms;	/* a user's inbox (inbox.h) */
	uint64_t inbox_memory;		/* bytes of inboxes, all shards */
	uint8_t auth;			/* ENG_AUTH_* */
	char jwt_secret[512];		/* HS256 key, "" = none */
	char jwt_pubkey_file[1024];	/* RS256/ES256 PEM, "" = none */
	unsigned max_conns_per_user;	/* per node; 0 = no limit */
	unsigned jwt_leeway;		/* seconds of clock skew on exp, nbf */
	/* --tls-cert/--tls-key pairs in order (argv's strings), the first
	 * the default, the others chosen by SNI; none = plain ws:// */
	const char *tls_cert[ENG_TLS_MAX_CERTS];
	const char *tls_key[ENG_TLS_MAX_CERTS];
	unsigned tls_ncert, tls_nkey;
	unsigned tls_max_handshakes;	/* in progress per shard */
	unsigned tls_min;		/* --tls-min: 12 or 13 */
	bool deflate;			/* --deflate on: permessage-deflate */
	unsigned deflate_level;		/* zlib's 1..9 */
	uint32_t deflate_min;		/* smaller messages go plain */
	struct eng_pusher_cfg *pusher;	/* owned: Pusher apps; NULL: none */
	char handover_path[108];	/* --handover-socket, "" = none */
	char take_over[108];		/* --take-over PATH, "" = a fresh start */
	uint8_t take_over_mode;		/* ENG_HO_MODE_* (handover.h) */
	unsigned drain_rate;		/* connections closed a second */
	unsigned drain_deadline_ms;	/* then the rest at once */
	struct eng_webhook_cfg *webhook;	/* owned: webhooks; NULL: none */
};

enum { ENG_AUTH_OFF = 0, ENG_AUTH_OPTIONAL, ENG_AUTH_REQUIRED };

/* user_data ops (ring/ud.h packs them with slot and gen, or a pointer). */
enum {
	ENG_OP_ACCEPT = 1,
	ENG_OP_RECV,
	ENG_OP_SEND,
	ENG_OP_CLOSE,
	ENG_OP_CANCEL,		/* cancels nobody waits for */
	ENG_OP_CONN_CANCEL,	/* a connection's cancel or shutdown */
	ENG_OP_TIMER,
	ENG_OP_STOP,		/* from main: stop the ring's thread */
	ENG_OP_MBOX_ERR,	/* main's stop post failed */
	ENG_OP_SEND_ZC,		/* ptr: the struct eng_zc in flight */
	ENG_OP_SENDV,		/* ptr: the struct eng_sendv in flight */
	ENG_OP_R_CONNECT,	/* the bridge's own connect, recv, send */
	ENG_OP_R_RECV,
	ENG_OP_R_SEND,
	ENG_OP_HO_FD,		/* a live hand-over's fd installed: slot, index */
	ENG_OP_HO_WAKE,		/* hand-over: a phase or a batch to look at now */
	/* Mail (mail.h): the pointer is the struct named. */
	ENG_OP_PUB,		/* struct eng_pub to its sequencer */
	ENG_OP_PUB_ACK,		/* ... back, sequenced */
	ENG_OP_DELIVER,		/* push frame (struct eng_buf) to a shard */
	ENG_OP_INTEREST,	/* struct eng_owner_mail to a channel's owner */
	ENG_OP_INTEREST_ACK,	/* ... back */
	ENG_OP_R_SUBSCRIBE,	/* struct eng_rsub, owner -> bridge */
	ENG_OP_R_SUB_ACK,	/* ... back to the owner, confirmed */
	ENG_OP_R_REQUEST,	/* struct eng_rreq, shard -> bridge */
	ENG_OP_R_REPLY,		/* ... back, with Redis's answer */
	ENG_OP_R_PRESENCE,	/* struct eng_rpres, owner -> bridge */
	ENG_OP_USER,		/* struct eng_owner_mail to a user's owner */
	ENG_OP_USER_ACK,	/* ... back */
	ENG_OP_HIST,		/* struct eng_hreq to a channel's owner */
	ENG_OP_HIST_ACK,	/* ... back, answered */
	ENG_OP_INBOX,		/* struct eng_ibreq to a user's owner */
	ENG_OP_INBOX_ACK,	/* ... back, answered */
	ENG_OP_MAX,
	ENG_OP_FAILED = 0x80,	/* or-ed into a failed post's own CQE */
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
	atomic_uint_fast64_t frames_out, sends;	/* frames in how many sends */
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
	atomic_uint_fast64_t mbox_errors;	/* mail posts that failed */
	atomic_uint_fast64_t users_owned;	/* owner: users with conns */
	atomic_uint_fast64_t user_conns;	/* owner: their connections */
	atomic_uint_fast64_t auth_failed;	/* 401 at the upgrade */
	atomic_uint_fast64_t key_failed;	/* wrong API keys, HTTP or /ws */
	atomic_uint_fast64_t kicked;		/* closed by a disconnect */
	atomic_uint_fast64_t user_refused;	/* over --max-conns-per-user */
	/* copies of rx_held and rx_alloc; closed by --max-partial-memory */
	atomic_uint_fast64_t partial_bytes, partial_alloc, partial_closed;
	/* hist.c: bytes held, messages, evicted early, not kept (no memory) */
	atomic_uint_fast64_t hist_bytes, hist_msgs, hist_evicted, hist_lost;
	/*
	 * inbox.c: messages kept for users, dropped by --inbox-max, ttl or
	 * --inbox-memory; bytes held
	 */
	atomic_uint_fast64_t inbox_msgs, inbox_evicted, inbox_expired;
	atomic_uint_fast64_t inbox_mem_evicted, inbox_bytes;
	/* lat.h: sampled publish-to-sent latency, µs buckets */
	atomic_uint_fast64_t lat[ENG_LAT_BUCKETS + 1], lat_sum_us;
	/*
	 * zframe.c: open connections that negotiated permessage-deflate;
	 * compressions, their bytes in and out; client messages inflated;
	 * messages sent to the negotiated compressed and plain
	 */
	atomic_uint_fast64_t deflate_conns, deflate_calls, deflate_in;
	atomic_uint_fast64_t deflate_out, inflated, sent_deflated, sent_plain;
};

/* Declared in their subsystems' headers; named here for prototypes. */
struct eng; struct eng_auth; struct eng_bridge; struct eng_broker;
struct eng_buf; struct eng_chan; struct eng_conn; struct eng_owner_mail;
struct eng_retry; struct eng_sub; struct eng_tls_shard; struct json_parser;
struct ssl_ctx_st; struct eng_zip; struct eng_handover; struct eng_ho_live;

/* A ring that posts mail (mail.h): each shard's, and the bridge's. */
struct eng_mailer {
	struct eng *eng;		/* borrowed */
	struct ring *ring;		/* borrowed: the poster's own */
	void *self;			/* borrowed: handed to handlers */
	const bool *stopping;		/* borrowed: true, posts are undone */
	atomic_uint_fast64_t *errors;	/* borrowed: failed posts counted */
	struct eng_retry *retry;	/* owned: mail to post again */
	uint16_t id;			/* shard id, or ENG_BRIDGE */
	bool logged;			/* its first failure was logged */
};

/* A shard's channel index (chan.c); users are channels too (user.c). */
struct eng_chans {
	struct eng_chan **buckets;
	size_t nbuckets;		/* a power of two */
	size_t count;
};

struct eng_shard {
	struct eng *eng;		/* borrowed: outlives the shard */
	unsigned id;
	int cpu;			/* pinned to, -1 when not pinned */
	int listen_fd;			/* owned; closed on stop */
	struct ring ring;
	struct ring_bufs rbufs;
	struct eng_conn *conns;		/* mmapped, nr_conns entries */
	uint32_t nr_conns;		/* = fixed-file table size */
	size_t rx_held;			/* bytes of partial messages held */
	size_t rx_alloc;		/* bytes allocated to hold them */
	size_t rx_peak;			/* rx_alloc's high mark since a purge */
	size_t rx_budget;		/* --max-partial-memory / shards */
	uint64_t *push_bits;		/* a bit per slot: open on /ws */
	uint32_t nr_push;		/* bits set */
	uint32_t *rearm;		/* slots whose recv ran out of buffers */
	uint32_t nr_rearm;
	uint32_t *resume;		/* slots to parse again after a batch */
	uint32_t nr_resume;
	uint32_t *flushq;		/* slots whose queue grew this batch */
	uint32_t nr_flushq, nr_flushnow;/* ... those with more than pushes */
	uint32_t lat_seq;		/* publishes sequenced (lat.h) */
	uint32_t sys_due;		/* shard 0: tick of the next $sys */
	uint8_t *key_strikes;		/* a byte a slot: wrong keys (push.c) */
	uint64_t flush_at;		/* batch window: flushq goes, ns */
	uint32_t wheel[ENG_WHEEL_SLOTS];/* heads of timer lists */
	uint32_t tick;			/* ticks since start */
	uint64_t t0_ms;			/* CLOCK_MONOTONIC at tick 0 */
	int64_t t0_unix;		/* wall clock at tick 0, seconds */
	bool up;			/* ring set up: mail reaches it */
	bool accepting;			/* multishot accept armed */
	bool stopping;			/* SIGTERM seen: closing everyone */
	bool drained;			/* stopping, and no connection left */
	bool ho_frozen;			/* hand-over: no state-changing request */
	bool ho_noaccept;		/* hand-over: accept held, or handed on */
	int ho_done;			/* hand-over phase this shard acked */
	uint64_t ho_credit;		/* drain: closes owed, x 1000 x shards */
	uint32_t ho_next;		/* drain: the slot the next wave starts at */
	void *ho_dump;			/* owned: its state (struct eng_ho_buf) */
	uint64_t *ho_bits;		/* live hand-over: slots quiesced, or NULL */
	bool ho_mute;			/* ... and they send no more */
	struct eng_ho_live *ho_live;	/* ... what it writes (handover.h) */
	uint8_t ho_conns_in;		/* ... new process: its share's step */
	uint64_t ho_until;		/* ... ms: registrations waited for */
	bool ho_busy;			/* ... a step waits on completions */
	unsigned ho_idle_gen;		/* hand-over: the last failure it saw */
	uint32_t stop_tick;		/* force-close deadline */
	struct eng_stats stats;
	struct eng_chans chans;
	struct eng_hists *hists;	/* owned: history channels (hist.c) */
	struct eng_inboxes *inboxes;	/* owned: users' inboxes (inbox.c) */
	struct eng_mailer mail;		/* this shard's posts */
	struct json_parser *json;	/* owned: /ws commands */
	uint8_t *scratch;		/* padded copy of a command */
	bool fixed_arena;		/* arena registered as fixed buffer 0 */
	struct eng_tls_shard *tls;	/* owned; NULL without TLS (tlsio.h) */
	struct eng_zip *zip;		/* owned; NULL without --deflate */
	pthread_t thread;
};

struct eng {
	struct eng_cfg cfg;
	const struct eng_broker *broker;/* embedded or Redis, chosen once */
	struct eng_bridge *bridge;	/* NULL without --redis */
	const struct eng_rreq_mode *redis;	/* the bridge's, for requests */
	const struct eng_rreq_lua *lua;	/* ... and the scripts they run */
	/*
	 * With one Redis and --webhook: a /ws channel's first subscriber on
	 * this node (@on) or its last gone, told by the owner shard
	 * (sub_redis.c); set once by pusher_count.c before the shards start.
	 */
	void (*occupancy)(const char *name, size_t len, bool on);
	/*
	 * The SSL_CTX new handshakes start from, one reference owned; NULL
	 * without TLS. SIGHUP replaces it (eng_tls_reload) under tls_lock
	 * and bumps tls_gen; each shard keeps a reference of its own.
	 */
	_Atomic(struct ssl_ctx_st *) tls_ctx;
	pthread_mutex_t tls_lock;
	atomic_uint tls_gen;
	atomic_uint_fast64_t tls_reloads, tls_reload_failed;
	struct eng_shard *shards;	/* cfg.shards of them */
	struct eng_handover *ho;	/* owned: take-overs (handover.h) */
	atomic_uint_fast64_t nconns;	/* all shards, for --max-conns */
	atomic_uint drained;		/* shards stopped with no connection */
	atomic_long mail;		/* mail to shards posted, not yet read */
	atomic_long sys_subs;		/* subscriptions to $sys, all shards */
	pthread_mutex_t lock;		/* start-up handshake only */
	pthread_cond_t cond;
	unsigned ready;			/* shards up, under lock */
	int failed;			/* a shard's -errno, under lock */
};

/* Engine allocations go through mimalloc unless sanitizing (buf.c). */
void *eng_malloc(size_t n);
void *eng_realloc(void *p, size_t n);
void eng_free(void *p);

#define ENG_STAT_ADD(s, field, n) \
	atomic_fetch_add_explicit(&(s)->stats.field, (n), memory_order_relaxed)
#define ENG_STAT_SUB(s, field, n) \
	atomic_fetch_sub_explicit(&(s)->stats.field, (n), memory_order_relaxed)

#endif
