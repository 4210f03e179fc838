/* SPDX-License-Identifier: MIT */
/*
 * ringcast-bench: a WebSocket load generator on io_uring. It opens N
 * client connections to a ringcast engine over loopback, spread over
 * several rings (one per thread) and many source addresses (127.0.0.2,
 * 127.0.0.3, ...: each has its own ephemeral port space). The sockets are
 * io_uring direct descriptors: created with socket() and bind(), moved into
 * the ring's fixed-file table and closed in the process fd table, so the
 * fd table never holds more than a small batch and only the per-ring table
 * cap (RLIMIT_NOFILE) matters. It upgrades every connection, optionally
 * subscribes it to one of K channels, and measures the set-up (handshakes
 * per second, time to N), the density (engine RSS and kernel Slab per
 * connection) and, in fanout mode, end-to-end latency and delivery rate of
 * messages it publishes itself over HTTP with their send time inside. It
 * prints one JSON object on stdout; every loop is bounded by --duration.
 * With --deflate it offers permessage-deflate, as browsers do, and reads
 * the start of a compressed push with one inflater per thread; --json
 * makes the payload JSON with a push stream's repetition, not padding.
 * Every phase counts the wire bytes of the frames it delivered. With
 * --pusher the clients speak the Pusher protocol (docs/PUSHER.md) to the
 * engine's /app/{key} and the publishes go through the app's signed HTTP
 * API, so the same figures compare the two front doors.
 */
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <liburing.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "proc.h"
#include "uload.h"

#define BENCH_MAX_THREADS	256
#define BENCH_MAX_CHANNELS	64
#define BENCH_MAX_SIZES		8
#define BENCH_MAX_PHASES	(2 * BENCH_MAX_SIZES)
#define BENCH_OPEN_BATCH	128	/* fds open at once per thread, at most */
#define BENCH_PRE		96	/* bytes of each message we keep */
#define BENCH_ZPRE		255	/* ... of a compressed one (--deflate):
					 * a dynamic block's code tables first */
#define BENCH_WS_KEY		"dGhlIHNhbXBsZSBub25jZQ=="	/* RFC 6455 sample */

/*
 * Log-bucket histogram in the style of HdrHistogram: values below 32 have a
 * bucket each, above that every power of two is split into 32 buckets, so a
 * bucket is at most 1/32 (3%) of its value wide; the midpoint is reported.
 */
#define HIST_SUB_BITS	5
#define HIST_SUB	(1U << HIST_SUB_BITS)
#define HIST_BUCKETS	(HIST_SUB + (64 - HIST_SUB_BITS) * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t min, max;
	uint64_t b[HIST_BUCKETS];
};

static unsigned hist_idx(uint64_t v)
{
	unsigned e;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63 - (unsigned)__builtin_clzll(v);	/* e >= HIST_SUB_BITS */
	return HIST_SUB + (e - HIST_SUB_BITS) * HIST_SUB +
		(unsigned)((v >> (e - HIST_SUB_BITS)) - HIST_SUB);
}

/* The midpoint of bucket @i. */
static double hist_val(unsigned i)
{
	unsigned e, m;

	if (i < HIST_SUB)
		return i;
	e = (i - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
	m = (i - HIST_SUB) % HIST_SUB;
	return ldexp(HIST_SUB + m + 0.5, (int)(e - HIST_SUB_BITS));
}

static void hist_add(struct hist *h, uint64_t v)
{
	if (!h->count || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->count++;
	h->b[hist_idx(v)]++;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
	unsigned i;

	if (!src->count)
		return;
	if (!dst->count || src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->count += src->count;
	for (i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
}

/* The value at quantile @q (0..1); the exact max for q = 1. */
static double hist_q(const struct hist *h, double q)
{
	uint64_t want, seen = 0;
	unsigned i;

	if (!h->count)
		return 0;
	if (q >= 1.0)
		return (double)h->max;
	want = (uint64_t)ceil(q * (double)h->count);
	if (want < 1)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want) {
			double v = hist_val(i);

			/* A midpoint may overshoot the largest value seen. */
			return v > (double)h->max ? (double)h->max : v;
		}
	}
	return (double)h->max;
}

enum { MODE_CONNECT, MODE_IDLE, MODE_FANOUT };
enum { PAT_BURST, PAT_STEADY };

struct opts {
	struct sockaddr_in target;
	char target_str[80];
	int mode;
	unsigned conns;
	unsigned threads;
	unsigned src_addrs;
	unsigned channels;		/* 0: no subscribe */
	bool broadcast;			/* publish with POST /broadcast */
	unsigned window;		/* handshakes in flight per thread */
	unsigned recv_bufs, recv_buf_size;
	size_t sizes[BENCH_MAX_SIZES];
	unsigned nr_sizes;
	double rates[BENCH_MAX_SIZES];	/* steady msg/s, per size */
	unsigned nr_rates;
	bool pat_burst, pat_steady;
	unsigned burst;			/* messages in a burst */
	double steady_s;		/* seconds of steady rate */
	unsigned messages;		/* cap per phase */
	double duration;		/* whole run, at most */
	double connect_timeout;
	double stall_timeout;		/* set-up without progress */
	double drain_timeout;
	double settle;			/* before the memory reading */
	double hold;			/* idle: keep connections this long */
	double progress;		/* set-up report period on stderr, 0: none */
	double pub_timeout;		/* per publish request */
	char redis_host[64];		/* publish with Redis PUBLISH, or "" */
	unsigned redis_port;
	const char *redis_prefix;	/* the engine's --redis-prefix */
	bool spublish;			/* SPUBLISH: a cluster's master */
	bool deflate;			/* offer permessage-deflate */
	bool json;			/* JSON payloads, not padding */
	bool pusher;			/* the Pusher protocol, app below */
	char pusher_id[32], pusher_key[64], pusher_secret[128];
	int engine_pid;
};

static struct opts o = {
	.mode = MODE_CONNECT,
	.conns = 1000,
	.window = 256,
	.recv_bufs = 2048,
	.recv_buf_size = 4096,
	.pat_burst = true,
	.pat_steady = true,
	.burst = 20,
	.steady_s = 2,
	.messages = 100000,
	.duration = 300,
	.connect_timeout = 120,
	.stall_timeout = 10,
	.drain_timeout = 10,
	.settle = 1,
	.pub_timeout = 5,
	.redis_prefix = "ringcast:",
};

/* Connection states. */
enum { ST_FREE, ST_CONNECT, ST_HS, ST_EST, ST_SUB, ST_READY, ST_DEAD };

#define HDR_PAYLOAD	0xff	/* hdr_len: header done, in the payload */

struct conn {
	uint8_t state;
	uint8_t hdr_len;		/* frame header bytes so far, or HDR_PAYLOAD */
	uint8_t pre_len;		/* bytes in pre[] (or zpre, compressed) */
	uint8_t hs_match;		/* bytes of "\r\n\r\n" matched */
	uint8_t op;			/* opcode of the frame being read */
	uint8_t recv_armed;		/* a multishot recv is live */
	uint8_t chan;			/* channel index */
	uint8_t hdr[10];		/* server frames are unmasked: 10 at most */
	uint32_t wire;			/* header and payload of this frame */
	uint64_t remain;		/* payload bytes still to come */
	uint64_t t_start;		/* when the connect was issued */
	char pre[BENCH_PRE];		/* the first bytes of the payload */
};

/* Per-phase receive figures of one worker. */
struct wphase {
	uint64_t delivered;		/* atomic: main reads it while we run */
	uint64_t last_recv;		/* atomic */
	uint64_t wire;			/* bytes of those frames; read after join */
	uint64_t compressed;		/* of them, with RSV1 */
	struct hist lat;
};

struct worker {
	unsigned id;
	pthread_t tid;
	struct uload u;			/* the ring and its buffers */
	struct conn *conns;
	unsigned first;			/* global index of conns[0] */
	unsigned n;			/* connections assigned */
	unsigned next;			/* next one to open; atomic, main reads it */
	unsigned opening;		/* opened, not ready nor dead */
	int err;			/* set-up error, -errno */
	/* Written by the worker, read by main with __atomic loads. */
	uint64_t upgraded, ready, failed, closed;
	uint64_t t_last_upgraded, t_last_ready;
	uint64_t ready_chan[BENCH_MAX_CHANNELS];
	/* Read by main only after join. */
	uint64_t enobufs, pings, bad_msgs, other_msgs, open_err, short_sends;
	int first_err;
	struct hist hs;			/* connect to ready, ns */
	struct wphase *ph;		/* [BENCH_MAX_PHASES] */
	z_stream z;			/* inflates a compressed push's start */
	bool z_ok;
	char *zpre;			/* BENCH_ZPRE a connection, --deflate */
};

static struct worker *workers;
static unsigned nr_workers;
static int g_stop;			/* atomic: workers leave their loop */
static int g_connect_stop;		/* atomic: open no more connections */
static uint64_t g_deadline;		/* uload_now_ns() when everything stops */

static char upgrade_req[640];
static size_t upgrade_len;
static char sub_frame[BENCH_MAX_CHANNELS][128];
static size_t sub_len[BENCH_MAX_CHANNELS];

enum { OP_CONNECT = 1, OP_SEND, OP_RECV, OP_CLOSE };

static inline uint64_t ud_pack(unsigned op, unsigned slot)
{
	return (uint64_t)op << 32 | slot;
}

static void conn_dead(struct worker *w, struct conn *c, unsigned slot, int err)
{
	struct io_uring_sqe *sqe;

	if (c->state == ST_DEAD)
		return;
	if (c->state == ST_READY) {
		__atomic_store_n(&w->closed, w->closed + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&w->ready_chan[c->chan],
				 w->ready_chan[c->chan] - 1, __ATOMIC_RELAXED);
	} else {
		w->opening--;
		if (!w->first_err && err)
			w->first_err = err;
		__atomic_store_n(&w->failed, w->failed + 1, __ATOMIC_RELAXED);
	}
	c->state = ST_DEAD;
	/*
	 * A live multishot recv holds its own reference to the socket: cancel
	 * it, then release the fixed-file slot, so the socket really closes.
	 */
	if (c->recv_armed) {
		sqe = uload_sqe(&w->u);
		io_uring_prep_cancel64(sqe, ud_pack(OP_RECV, slot), 0);
		io_uring_sqe_set_data64(sqe, ud_pack(OP_CLOSE, slot));
	}
	sqe = uload_sqe(&w->u);
	io_uring_prep_close_direct(sqe, slot);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_CLOSE, slot));
}

static void conn_ready(struct worker *w, struct conn *c, uint64_t now)
{
	c->state = ST_READY;
	w->opening--;
	hist_add(&w->hs, now - c->t_start);
	__atomic_store_n(&w->ready_chan[c->chan], w->ready_chan[c->chan] + 1,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&w->t_last_ready, now, __ATOMIC_RELAXED);
	__atomic_store_n(&w->ready, w->ready + 1, __ATOMIC_RELAXED);
}

static void send_static(struct worker *w, unsigned slot, const void *buf,
			size_t len)
{
	struct io_uring_sqe *sqe = uload_sqe(&w->u);

	/* @buf is static and read-only: nothing to keep alive for the kernel. */
	io_uring_prep_send(sqe, (int)slot, buf, len, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, slot) | (uint64_t)len << 40);
}

static void arm_recv(struct worker *w, struct conn *c, unsigned slot)
{
	uload_recv(&w->u, slot, ud_pack(OP_RECV, slot));
	c->recv_armed = 1;
}

static uint64_t parse_u64(const char *p, const char *end, bool *ok)
{
	uint64_t v = 0;
	const char *s = p;

	while (p < end && *p >= '0' && *p <= '9')
		v = v * 10 + (uint64_t)(*p++ - '0');
	*ok = p > s && p < end;	/* digits, and the number ended in pre[] */
	return v;
}

/*
 * Where the value after @plain ("key":) or, when that is not in [@p,
 * @end), after @esc (the same inside a JSON string: \"key\":) starts;
 * NULL when neither is there.
 */
static const char *find_key(const char *p, const char *end, const char *plain,
			    const char *esc)
{
	size_t n = strlen(plain);
	const char *hit = memmem(p, (size_t)(end - p), plain, n);

	if (hit)
		return hit + n;
	n = strlen(esc);
	hit = memmem(p, (size_t)(end - p), esc, n);
	return hit ? hit + n : NULL;
}

/*
 * The first bytes of compressed payload @c->pre, inflated into @out (at
 * most @cap): no context takeover, so each message inflates on its own,
 * and a prefix of it gives a prefix of the text. Returns the bytes made.
 */
static size_t inflate_pre(struct worker *w, struct conn *c, char *out,
			  size_t cap)
{
	if (!w->z_ok)
		return 0;
	inflateReset(&w->z);
	w->z.next_in = (Bytef *)w->zpre + (size_t)(c - w->conns) * BENCH_ZPRE;
	w->z.avail_in = c->pre_len;
	w->z.next_out = (Bytef *)out;
	w->z.avail_out = (uInt)cap;
	inflate(&w->z, Z_SYNC_FLUSH);	/* a truncated stream: what it gives */
	return cap - w->z.avail_out;
}

/* A whole text frame arrived; pre[] holds its first bytes. */
static void on_message(struct worker *w, struct conn *c, unsigned slot,
		       uint64_t now)
{
	char text[4 * BENCH_PRE];
	const char *end = c->pre + c->pre_len, *p, *start = c->pre;
	bool zipped = c->hdr[0] & 0x40;
	uint64_t ph, t;
	bool ok1, ok2;

	if (zipped) {
		start = text;
		end = text + inflate_pre(w, c, text, sizeof(text));
	}

	if (c->state == ST_EST) {	/* Pusher: the first event */
		if (!memmem(c->pre, c->pre_len,
			    "\"pusher:connection_established\"", 31)) {
			conn_dead(w, c, slot, -EPROTO);
		} else if (o.channels) {
			c->state = ST_SUB;
			send_static(w, slot, sub_frame[c->chan],
				    sub_len[c->chan]);
		} else {
			conn_ready(w, c, now);
		}
		return;
	}
	if (c->state == ST_SUB) {
		if (o.pusher ? memmem(c->pre, c->pre_len, "\"pusher_internal:"
				      "subscription_succeeded\"", 40) != NULL :
		    memmem(c->pre, c->pre_len, "\"code\":200", 10) != NULL)
			conn_ready(w, c, now);
		else
			conn_dead(w, c, slot, -EPROTO);
		return;
	}
	/*
	 * Pushes carry {"ph":K,"t":NS,...} at the start of their data; a
	 * Pusher event's data is that object as a JSON string, its quotes
	 * escaped.
	 */
	p = find_key(start, end, "\"ph\":", "\\\"ph\\\":");
	if (!p) {
		w->other_msgs++;
		return;
	}
	ph = parse_u64(p, end, &ok1);
	p = find_key(p, end, "\"t\":", "\\\"t\\\":");
	t = p ? parse_u64(p, end, &ok2) : 0;
	if (!p || !ok1 || !ok2 || ph >= BENCH_MAX_PHASES || t > now) {
		w->bad_msgs++;
		return;
	}
	hist_add(&w->ph[ph].lat, now - t);
	w->ph[ph].wire += c->wire;
	w->ph[ph].compressed += zipped;
	__atomic_store_n(&w->ph[ph].last_recv, now, __ATOMIC_RELAXED);
	__atomic_store_n(&w->ph[ph].delivered, w->ph[ph].delivered + 1,
			 __ATOMIC_RELAXED);
}

/* The 101 response is complete: go on to subscribe, or be ready. */
static void on_upgraded(struct worker *w, struct conn *c, unsigned slot,
			uint64_t now)
{
	if (c->pre_len < 12 || memcmp(c->pre, "HTTP/1.1 101", 12)) {
		conn_dead(w, c, slot, -ECONNREFUSED);
		return;
	}
	__atomic_store_n(&w->upgraded, w->upgraded + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&w->t_last_upgraded, now, __ATOMIC_RELAXED);
	c->pre_len = 0;
	c->hdr_len = 0;
	if (o.pusher) {
		c->state = ST_EST;
	} else if (o.channels) {
		c->state = ST_SUB;
		send_static(w, slot, sub_frame[c->chan], sub_len[c->chan]);
	} else {
		conn_ready(w, c, now);
	}
}

/* Feeds received bytes through the response and frame parser. */
static void feed(struct worker *w, struct conn *c, unsigned slot,
		 const uint8_t *d, size_t len, uint64_t now)
{
	while (len && c->state != ST_DEAD) {
		if (c->state == ST_HS) {
			uint8_t ch = *d++;

			len--;
			if (c->pre_len < BENCH_PRE)
				c->pre[c->pre_len++] = (char)ch;
			if (uload_head_byte(&c->hs_match, ch))
				on_upgraded(w, c, slot, now);
			continue;
		}
		if (c->hdr_len != HDR_PAYLOAD) {
			unsigned need = uload_hdr_byte(c->hdr, &c->hdr_len,
						       *d++, &c->remain);

			len--;
			if (!need)
				continue;
			c->op = c->hdr[0] & 0x0f;
			c->wire = (uint32_t)(need + c->remain);
			c->hdr_len = HDR_PAYLOAD;
			c->pre_len = 0;
		} else {
			size_t k = len < c->remain ? len : (size_t)c->remain;
			bool z = (c->hdr[0] & 0x40) && w->zpre;
			char *pre = z ? w->zpre + (size_t)(c - w->conns) *
					BENCH_ZPRE : c->pre;
			size_t keep = (z ? BENCH_ZPRE : BENCH_PRE) - c->pre_len;

			if (keep > k)
				keep = k;
			memcpy(pre + c->pre_len, d, keep);
			c->pre_len += (uint8_t)keep;
			c->remain -= k;
			d += k;
			len -= k;
		}
		if (c->hdr_len == HDR_PAYLOAD && !c->remain) {
			c->hdr_len = 0;
			switch (c->op) {
			case 0x1:	/* text; continuations are skipped */
				on_message(w, c, slot, now);
				break;
			case 0x8:	/* close */
				conn_dead(w, c, slot, 0);
				break;
			case 0x9:	/* ping: the harness turns them off */
				w->pings++;
				break;
			default:
				break;
			}
		}
	}
}

static void on_cqe(void *arg, struct io_uring_cqe *cqe)
{
	struct worker *w = arg;
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned op = (unsigned)(ud >> 32) & 0xff;
	unsigned slot = (unsigned)ud;
	struct conn *c = &w->conns[slot];
	int res = cqe->res;

	switch (op) {
	case OP_CONNECT:
		if (res < 0) {
			conn_dead(w, c, slot, res);
			return;
		}
		c->state = ST_HS;
		arm_recv(w, c, slot);
		send_static(w, slot, upgrade_req, upgrade_len);
		return;
	case OP_SEND:
		if (res < 0) {
			conn_dead(w, c, slot, res);
		} else if ((uint64_t)res != ud >> 40) {
			/* Tiny first sends on a fresh socket: never short. */
			w->short_sends++;
			conn_dead(w, c, slot, -EIO);
		}
		return;
	case OP_RECV:
		if (cqe->flags & IORING_CQE_F_BUFFER) {
			unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

			if (res > 0)
				feed(w, c, slot,
				     (const uint8_t *)uload_buf(&w->u, bid),
				     (size_t)res, uload_now_ns());
			uload_recycle(&w->u, bid);
		}
		if (cqe->flags & IORING_CQE_F_MORE)
			return;
		c->recv_armed = 0;
		if (res == -ENOBUFS) {
			/* The group ran dry; buffers come back this batch. */
			w->enobufs++;
			if (c->state != ST_DEAD)
				arm_recv(w, c, slot);
		} else if (res > 0 && c->state != ST_DEAD) {
			arm_recv(w, c, slot);
		} else if (c->state != ST_DEAD) {
			conn_dead(w, c, slot, res ? res : -ECONNRESET);
		}
		return;
	default:
		return;
	}
}

/* Opens up to one batch of sockets into the fixed table and connects them. */
static void open_more(struct worker *w)
{
	int fds[BENCH_OPEN_BATCH], fd = 0;
	unsigned base = w->next, k = 0, i;
	int ret;

	while (k < BENCH_OPEN_BATCH && w->next + k < w->n &&
	       w->opening + k < o.window) {
		fd = uload_socket(w->first + w->next + k, o.src_addrs);
		if (fd < 0)
			break;
		fds[k++] = fd;
	}
	if (!k) {
		if (w->next < w->n && w->opening < o.window) {
			/* Nothing opened although we should have: give up. */
			w->open_err++;
			if (!w->first_err)
				w->first_err = fd;
			__atomic_store_n(&w->failed, w->failed + (w->n - w->next),
					 __ATOMIC_RELAXED);
			__atomic_store_n(&w->next, w->n, __ATOMIC_RELAXED);
		}
		return;
	}
	/* The slots are contiguous: one update registers the whole batch. */
	ret = io_uring_register_files_update(&w->u.ring, base, fds, k);
	for (i = 0; i < k; i++)
		close(fds[i]);	/* the fixed table keeps its own reference */
	if (ret != (int)k) {
		w->open_err++;
		if (!w->first_err)
			w->first_err = ret < 0 ? ret : -EIO;
		__atomic_store_n(&w->failed, w->failed + (w->n - w->next),
				 __ATOMIC_RELAXED);
		__atomic_store_n(&w->next, w->n, __ATOMIC_RELAXED);
		return;
	}
	for (i = 0; i < k; i++) {
		unsigned slot = base + i;
		struct conn *c = &w->conns[slot];
		struct io_uring_sqe *sqe = uload_sqe(&w->u);

		c->state = ST_CONNECT;
		c->chan = o.channels ? (uint8_t)((w->first + slot) % o.channels) : 0;
		c->t_start = uload_now_ns();
		io_uring_prep_connect(sqe, (int)slot,
				      (struct sockaddr *)&o.target,
				      sizeof(o.target));
		sqe->flags |= IOSQE_FIXED_FILE;
		io_uring_sqe_set_data64(sqe, ud_pack(OP_CONNECT, slot));
	}
	__atomic_store_n(&w->next, w->next + k, __ATOMIC_RELAXED);
	w->opening += k;
}

static int worker_setup(struct worker *w)
{
	int ret = uload_setup(&w->u, w->n, o.recv_bufs, o.recv_buf_size);

	if (ret < 0)
		return ret;
	/* raw DEFLATE, any window (RFC 7692): only with --deflate */
	w->z_ok = o.deflate && inflateInit2(&w->z, -MAX_WBITS) == Z_OK;
	if (o.deflate && !(w->zpre = malloc((size_t)(w->n ? w->n : 1) *
					    BENCH_ZPRE)))
		return -ENOMEM;
	return 0;
}

static pthread_barrier_t start_barrier;

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	/*
	 * SINGLE_ISSUER binds the ring to the task that creates it, so each
	 * worker sets up its own ring; main starts the clock once all are.
	 */
	w->err = worker_setup(w);
	if (w->err < 0) {
		__atomic_store_n(&w->failed, w->n, __ATOMIC_RELAXED);
		__atomic_store_n(&w->next, w->n, __ATOMIC_RELAXED);
	}
	pthread_barrier_wait(&start_barrier);
	while (!__atomic_load_n(&g_stop, __ATOMIC_RELAXED)) {
		int ret;

		if (uload_now_ns() > g_deadline)
			break;
		if (w->next < w->n &&
		    !__atomic_load_n(&g_connect_stop, __ATOMIC_RELAXED))
			open_more(w);
		ret = uload_wait(&w->u, on_cqe, w);
		if (ret < 0) {
			w->err = ret;
			break;
		}
	}
	return NULL;
}

/* ---- engine and host figures from /proc ---- */

/* The "KEY: N kB" line of a /proc file, in kB, or -1. */
static long proc_kb(const char *path, const char *key)
{
	char line[256];
	size_t kl = strlen(key);
	long v = -1;
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static long engine_rss_kb(void)
{
	char path[64];

	if (o.engine_pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/status", o.engine_pid);
	return proc_kb(path, "VmRSS");
}

/* TCP socket buffer memory in pages (/proc/net/sockstat "TCP: ... mem N"). */
static long tcp_mem_pages(void)
{
	char line[256], *p;
	long v = -1;
	FILE *f = fopen("/proc/net/sockstat", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "TCP:", 4) && (p = strstr(line, " mem ")))
			v = strtol(p + 5, NULL, 10);
	fclose(f);
	return v;
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- the publisher: blocking HTTP/1.1 on one keep-alive connection ---- */

struct pub {
	int fd;
	redisContext *redis;		/* with --redis */
	char rbuf[131072];		/* /stats of 50+ shards is ~17 KB */
	size_t rlen;
	uint64_t errors, reconnects;
	unsigned consec;		/* failed publishes in a row */
};

#define PUB_GIVE_UP	3	/* failed publishes in a row end the run */


static int pub_connect(struct pub *p)
{
	struct timeval tmo = {
		.tv_sec = (time_t)o.pub_timeout,
		.tv_usec = (suseconds_t)((o.pub_timeout -
					  (double)(time_t)o.pub_timeout) * 1e6),
	};
	int one = 1;

	if (p->fd >= 0)
		close(p->fd);
	p->rlen = 0;
	p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->fd < 0)
		return -errno;
	setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* An engine that stops answering must not hang the run. */
	setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	setsockopt(p->fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
	if (connect(p->fd, (struct sockaddr *)&o.target, sizeof(o.target)) < 0) {
		int ret = -errno;

		close(p->fd);
		p->fd = -1;
		return ret;
	}
	return 0;
}

static int write_all(int fd, struct iovec *iov, int n)
{
	while (n) {
		ssize_t r = writev(fd, iov, n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (n && (size_t)r >= iov->iov_len) {
			r -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (char *)iov->iov_base + r;
			iov->iov_len -= (size_t)r;
		}
	}
	return 0;
}

/*
 * Sends one request and reads its response. If @body_out is given, the
 * response body (up to @out_size - 1 bytes, NUL-terminated) lands there.
 * Returns the HTTP status or -errno. A kept-alive link the engine closed
 * (the write fails, or the read ends before any answer) is reconnected
 * once and the request sent again; a request that timed out is not, since
 * the engine may have taken it (a publish must not happen twice).
 */
static int pub_request(struct pub *p, const char *method, const char *path,
		       const char *body, size_t blen, char *body_out,
		       size_t out_size)
{
	char head[640];		/* a Pusher API path is ~250 bytes */
	int hl, status = 0, attempt;

	hl = snprintf(head, sizeof(head),
		      "%s %s HTTP/1.1\r\nHost: %s\r\n"
		      "Content-Type: application/json\r\n"
		      "Content-Length: %zu\r\n\r\n", method, path,
		      o.target_str, blen);
	for (attempt = 0; attempt < 2; attempt++) {
		struct iovec iov[2] = {
			{ head, (size_t)hl }, { (void *)body, blen },
		};
		size_t clen = 0, need;
		char *eoh = NULL;
		int ret;

		if (p->fd < 0 && (ret = pub_connect(p)) < 0)
			return ret;
		ret = write_all(p->fd, iov, blen ? 2 : 1);
		if (ret == -EAGAIN)
			goto timed_out;
		if (ret < 0)
			goto retry;
		for (;;) {
			ssize_t r;

			if (p->rlen) {
				p->rbuf[p->rlen < sizeof(p->rbuf) ? p->rlen :
					sizeof(p->rbuf) - 1] = 0;
				eoh = strstr(p->rbuf, "\r\n\r\n");
			}
			if (eoh)
				break;
			if (p->rlen >= sizeof(p->rbuf) - 1)
				return -EMSGSIZE;
			r = read(p->fd, p->rbuf + p->rlen,
				 sizeof(p->rbuf) - 1 - p->rlen);
			if (r < 0 && errno == EAGAIN)
				goto timed_out;
			if (r <= 0 && p->rlen)
				goto broken;
			if (r <= 0)
				goto retry;
			p->rlen += (size_t)r;
		}
		if (sscanf(p->rbuf, "HTTP/1.%*d %d", &status) != 1)
			return -EPROTO;
		{
			char *cl = strcasestr(p->rbuf, "\r\nContent-Length:");

			if (cl && cl < eoh)
				clen = strtoul(cl + 17, NULL, 10);
		}
		need = (size_t)(eoh + 4 - p->rbuf) + clen;
		if (need >= sizeof(p->rbuf))
			return -EMSGSIZE;
		while (p->rlen < need) {
			ssize_t r = read(p->fd, p->rbuf + p->rlen,
					 sizeof(p->rbuf) - 1 - p->rlen);

			if (r < 0 && errno == EAGAIN)
				goto timed_out;
			if (r <= 0)
				goto broken;
			p->rlen += (size_t)r;
		}
		if (body_out && out_size) {
			size_t n = clen < out_size - 1 ? clen : out_size - 1;

			memcpy(body_out, eoh + 4, n);
			body_out[n] = 0;
		}
		memmove(p->rbuf, p->rbuf + need, p->rlen - need);
		p->rlen -= need;
		if (strcasestr(p->rbuf, "\r\nConnection: close")) {
			close(p->fd);
			p->fd = -1;
		}
		return status;
retry:
		p->reconnects++;
		close(p->fd);
		p->fd = -1;
	}
	return -ECONNRESET;
timed_out:
	/* A late answer would be read as the next one's: start afresh. */
	close(p->fd);
	p->fd = -1;
	return -ETIMEDOUT;
broken:
	close(p->fd);
	p->fd = -1;
	return -ECONNRESET;
}

/* ---- phases ---- */

struct phase {
	size_t size;
	int pattern;
	double rate;
	uint64_t published, expected, delivered;
	uint64_t first_send, last_send, last_recv;
	double engine_cpu_s, client_cpu_s;
	struct hist lat;
};

static uint64_t sum_ready_chan(unsigned ch)
{
	uint64_t s = 0;
	unsigned i;

	for (i = 0; i < nr_workers; i++)
		s += __atomic_load_n(&workers[i].ready_chan[ch], __ATOMIC_RELAXED);
	return s;
}

static uint64_t sum_delivered(unsigned ph)
{
	uint64_t s = 0;
	unsigned i;

	for (i = 0; i < nr_workers; i++)
		s += __atomic_load_n(&workers[i].ph[ph].delivered,
				     __ATOMIC_RELAXED);
	return s;
}

/* Connections opened so far (connect issued), all workers. */
static uint64_t sum_opened(void)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < nr_workers; i++)
		n += __atomic_load_n(&workers[i].next, __ATOMIC_RELAXED);
	return n;
}

static bool past(uint64_t t)
{
	return uload_now_ns() >= t;
}

/*
 * PUBLISH @body on @chan; returns 0 when at least one node took it. Like
 * pub_request(), a timed-out PUBLISH is never sent again.
 */
static int redis_publish(struct pub *p, const char *chan, const char *body,
			 size_t len)
{
	struct timeval tmo = {
		.tv_sec = (time_t)o.pub_timeout,
		.tv_usec = (suseconds_t)((o.pub_timeout -
					  (double)(time_t)o.pub_timeout) * 1e6),
	};
	redisReply *r;
	int ret;

	if (!p->redis) {
		p->redis = redisConnectWithTimeout(o.redis_host,
						   (int)o.redis_port, tmo);
		if (!p->redis || p->redis->err) {
			if (p->redis)
				redisFree(p->redis);
			p->redis = NULL;
			return -ECONNREFUSED;
		}
		redisSetTimeout(p->redis, tmo);
		p->reconnects++;
	}
	r = redisCommand(p->redis, "%s %s %b",
			 o.spublish ? "SPUBLISH" : "PUBLISH", chan, body, len);
	if (!r) {
		/* The context is dead after an I/O error: start afresh. */
		ret = p->redis->err == REDIS_ERR_IO && errno == EAGAIN ?
		      -ETIMEDOUT : -ECONNRESET;
		redisFree(p->redis);
		p->redis = NULL;
		return ret;
	}
	/* The reply counts nodes (subscribers of the channel in Redis). */
	ret = r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? 0 :
	      r->type == REDIS_REPLY_INTEGER ? -ENOENT : -EPROTO;
	freeReplyObject(r);
	return ret;
}

/*
 * Publishes one message of phase @k: a JSON object exactly @size bytes long
 * (or the smallest that holds the header) with its send time in it.
 */
/*
 * Fills @n bytes at @p with a JSON array's opening and members of the
 * shape a trade stream has (ids and prices that vary, names that
 * repeat), padded with blanks; the caller closes it with "]". @seed
 * varies the numbers from one message to the next.
 */
static void json_fill(char *p, size_t n, uint64_t seed)
{
	static const char *const side[] = { "buy", "sell" };
	char item[96];
	size_t at = 1;
	int len;

	p[0] = '[';
	for (;;) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		len = snprintf(item, sizeof(item), "%s{\"id\":%u,\"px\":%u.%02u,"
			       "\"qty\":%u,\"side\":\"%s\",\"sym\":\"BTC-USD\"}",
			       at > 1 ? "," : "", (unsigned)(seed >> 40),
			       (unsigned)(seed >> 20) % 70000,
			       (unsigned)(seed >> 12) % 100,
			       (unsigned)(seed >> 8) % 500, side[seed >> 63]);
		if (at + (size_t)len > n)
			break;
		memcpy(p + at, item, (size_t)len);
		at += (size_t)len;
	}
	memset(p + at, ' ', n - at);
}

static void hex(char *out, const unsigned char *d, unsigned n)
{
	static const char digits[] = "0123456789abcdef";
	unsigned i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = 0;
}

/*
 * Publishes @payload (@len bytes of JSON without a backslash) on channel
 * c@ch as a Pusher server SDK does: POST /apps/{id}/events with the
 * payload as the event's data string, signed (body_md5, then HMAC-SHA256
 * of "POST\npath\nsorted query" with the app's secret). @req has room for
 * 2 x @len + 128 bytes. Returns the HTTP status or -errno.
 */
static int pusher_publish(struct pub *p, unsigned ch, const char *payload,
			  size_t len, char *req)
{
	char path[400], tosign[400], md5[33], sig[65];
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dn = 0;
	size_t n, i;
	int q;

	n = (size_t)sprintf(req, "{\"name\":\"bench\",\"channels\":[\"c%u\"],"
			    "\"data\":\"", ch);
	for (i = 0; i < len; i++) {
		if (payload[i] == '"')
			req[n++] = '\\';
		req[n++] = payload[i];
	}
	memcpy(req + n, "\"}", 2);
	n += 2;
	if (!EVP_Digest(req, n, d, &dn, EVP_md5(), NULL))
		return -EIO;
	hex(md5, d, dn);
	q = snprintf(path, sizeof(path), "/apps/%s/events?auth_key=%s&"
		     "auth_timestamp=%lld&auth_version=1.0&body_md5=%s",
		     o.pusher_id, o.pusher_key, (long long)time(NULL), md5);
	snprintf(tosign, sizeof(tosign), "POST\n%.*s\n%s",
		 (int)(strchr(path, '?') - path), path, strchr(path, '?') + 1);
	if (!HMAC(EVP_sha256(), o.pusher_secret, (int)strlen(o.pusher_secret),
		  (const unsigned char *)tosign, strlen(tosign), d, &dn))
		return -EIO;
	hex(sig, d, dn);
	snprintf(path + q, sizeof(path) - (size_t)q, "&auth_signature=%s", sig);
	return pub_request(p, "POST", path, req, n, NULL, 0);
}

static int publish_one(struct pub *p, unsigned k, struct phase *ph,
		       char *body, uint64_t *t_out)
{
	unsigned ch = o.channels ? (unsigned)(ph->published % o.channels) : 0;
	char path[160];		/* a URL path, or a prefix of <= 100 and more */
	uint64_t t = uload_now_ns();
	int n, st;
	size_t len;

	n = snprintf(body, 64, "{\"ph\":%u,\"t\":%llu,\"p\":\"", k,
		     (unsigned long long)t);
	len = ph->size > (size_t)n + 2 ? ph->size : (size_t)n + 2;
	if (o.json)
		json_fill(body + n - 1, len - 1 - (size_t)n, t);
	else
		memset(body + n, 'x', len - 2 - (size_t)n);
	memcpy(body + len - 2, o.json ? "]}" : "\"}", 2);
	if (o.redis_port) {
		if (o.broadcast)
			snprintf(path, sizeof(path), "%sall", o.redis_prefix);
		else
			snprintf(path, sizeof(path), "%sch:c%u", o.redis_prefix,
				 ch);
		st = redis_publish(p, path, body, len);
		st = st ? st : 200;
	} else if (o.pusher) {
		/* the request after the payload: run_phase() made room */
		st = pusher_publish(p, ch, body, len, body + len);
	} else {
		if (o.broadcast)
			snprintf(path, sizeof(path), "/broadcast");
		else
			snprintf(path, sizeof(path), "/publish/c%u", ch);
		st = pub_request(p, "POST", path, body, len, NULL, 0);
	}
	if (st != 200) {
		p->errors++;
		p->consec++;
		return st < 0 ? st : -EPROTO;
	}
	p->consec = 0;
	ph->expected += o.broadcast ? sum_ready_chan(0) : sum_ready_chan(ch);
	if (o.broadcast) {
		unsigned c;

		for (c = 1; c < o.channels; c++)
			ph->expected += sum_ready_chan(c);
	}
	ph->published++;
	if (!ph->first_send)
		ph->first_send = t;
	ph->last_send = t;
	*t_out = t;
	return 0;
}

static void run_phase(struct pub *p, unsigned k, struct phase *ph)
{
	/* the payload, then (--pusher) the request holding it escaped */
	char *body = malloc(3 * ph->size + 512);
	double cpu0 = proc_cpu_s(o.engine_pid), self0 = self_cpu_s();
	uint64_t t, start = uload_now_ns(), drain_end, i;
	unsigned w;

	if (!body)
		return;
	if (ph->pattern == PAT_BURST) {
		for (i = 0; i < o.burst && i < o.messages && !past(g_deadline) &&
		     p->consec < PUB_GIVE_UP; i++)
			publish_one(p, k, ph, body, &t);
	} else {
		uint64_t gap = (uint64_t)(1e9 / ph->rate);
		uint64_t end = start + (uint64_t)(o.steady_s * 1e9);

		for (i = 0; i < o.messages && !past(g_deadline) &&
		     p->consec < PUB_GIVE_UP; i++) {
			uint64_t due = start + i * gap;
			struct timespec ts;

			if (due >= end)	/* rate x seconds messages, not one more */
				break;
			ts = (struct timespec){
				.tv_sec = (time_t)(due / 1000000000ULL),
				.tv_nsec = (long)(due % 1000000000ULL),
			};

			/* Absolute sleeps: a slow publish does not drift. */
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			publish_one(p, k, ph, body, &t);
		}
	}
	free(body);
	/* Wait until every expected delivery arrived, or the drain timeout. */
	drain_end = uload_now_ns() + (uint64_t)(o.drain_timeout * 1e9);
	while (sum_delivered(k) < ph->expected && !past(drain_end) &&
	       !past(g_deadline))
		usleep(2000);
	ph->delivered = sum_delivered(k);
	ph->engine_cpu_s = o.engine_pid > 0 ?
			   proc_cpu_s(o.engine_pid) - cpu0 : -1;
	ph->client_cpu_s = self_cpu_s() - self0;
	for (w = 0; w < nr_workers; w++) {
		uint64_t lr = __atomic_load_n(&workers[w].ph[k].last_recv,
					      __ATOMIC_RELAXED);

		if (lr > ph->last_recv)
			ph->last_recv = lr;
	}
}

/* ---- output ---- */

static void print_hist_us(const char *name, const struct hist *h, double div)
{
	printf("\"%s\":{\"count\":%llu,\"min\":%.3f,\"p50\":%.3f,\"p90\":%.3f,"
	       "\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}", name,
	       (unsigned long long)h->count, (double)h->min / div,
	       hist_q(h, 0.5) / div, hist_q(h, 0.9) / div,
	       hist_q(h, 0.99) / div, hist_q(h, 0.999) / div,
	       hist_q(h, 1.0) / div);
}

/*
 * The delivery curve: the latency by which each 2% of the deliveries had
 * arrived. For a single broadcast it is how fast the whole audience was
 * reached.
 */
static void print_cdf_ms(const char *name, const struct hist *h)
{
	unsigned i;

	printf("\"%s\":[", name);
	for (i = 1; h->count && i <= 50; i++)
		printf("%s[%.2f,%.3f]", i > 1 ? "," : "", i / 50.0,
		       hist_q(h, i / 50.0) / 1e6);
	printf("]");
}

static void print_num(const char *name, double v, bool comma)
{
	if (isfinite(v))
		printf("\"%s\":%.6g%s", name, v, comma ? "," : "");
	else
		printf("\"%s\":null%s", name, comma ? "," : "");
}

/* ---- options ---- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: ringcast-bench --target HOST:PORT [options]\n"
"\n"
"Opens --conns WebSocket clients to a ringcast engine on loopback over\n"
"several io_uring rings (direct descriptors) and source addresses, and\n"
"prints one JSON object with the figures on stdout.\n"
"\n"
"  --target ADDR:PORT     the engine (IPv4)\n"
"  --mode MODE            connect (set up, measure, leave), idle (also hold\n"
"                         --hold seconds) or fanout (also publish and time\n"
"                         the deliveries); default connect\n"
"  --conns N              client connections (default 1000)\n"
"  --threads N            threads, one ring each (default: enough for the\n"
"                         per-ring fixed-file cap, RLIMIT_NOFILE, and 2 at least)\n"
"  --src-addrs N          source addresses 127.0.0.2 on (default: one per\n"
"                         0.45 x ip_local_port_range connections, 12,705\n"
"                         with the kernel's default range)\n"
"  --channels K           subscribe connection i to channel c<i %% K>\n"
"                         (default 0: no subscribe; fanout needs it unless\n"
"                         --broadcast)\n"
"  --broadcast            publish with POST /broadcast instead of /publish\n"
"  --redis HOST:PORT      publish with Redis PUBLISH on <prefix>ch:c<i> (or\n"
"                         <prefix>all) instead of HTTP; the engine must run\n"
"                         with --redis on the same server\n"
"  --redis-prefix P       the engine's --redis-prefix (default ringcast:)\n"
"  --spublish             with --redis, SPUBLISH (a Redis Cluster's sharded\n"
"                         pub/sub): HOST:PORT is the master of the slot\n"
"  --window N             handshakes in flight per thread (default 256)\n"
"  --sizes LIST           fanout payload sizes in bytes (default 64,1024,16384)\n"
"  --patterns LIST        burst, steady or both (default burst,steady)\n"
"  --burst N              messages per burst (default 20)\n"
"  --rate LIST            steady msg/s, one value or one per size (default 50)\n"
"  --steady-seconds S     length of a steady phase (default 2)\n"
"  --messages N           messages per phase, at most (default 100000)\n"
"  --duration S           the whole run stops after S seconds (default 300)\n"
"  --connect-timeout S    stop opening connections after S (default 120)\n"
"  --drain-timeout S      wait for deliveries after a phase (default 10)\n"
"  --publish-timeout S    wait for a publish's answer; one that times out is\n"
"                         counted as failed, never sent again (default 5)\n"
"  --stall-timeout S      end the set-up when no connection became ready or\n"
"                         failed for S seconds (default 10)\n"
"  --settle S             wait before the memory reading (default 1)\n"
"  --hold S               idle mode: keep the connections S seconds (default 0)\n"
"  --progress S           during set-up, a line on stderr every S seconds:\n"
"                         ready, failed, in flight, engine RSS (default 0: none)\n"
"  --engine-pid PID       read the engine's CPU time and RSS from /proc\n"
"  --recv-bufs N          provided receive buffers per ring (power of 2,\n"
"                         default 2048)\n"
"  --recv-buf-size N      bytes per receive buffer (default 4096)\n"
"  --deflate              offer permessage-deflate (as browsers do); what\n"
"                         comes compressed is inflated to be timed\n"
"  --json                 fanout payloads are JSON (an array of trades),\n"
"                         not padding: what compression meets in practice\n"
"  --pusher ID:KEY:SECRET speak the Pusher protocol: connect to /app/KEY,\n"
"                         await pusher:connection_established, subscribe\n"
"                         with pusher:subscribe (public channel c<i %% K>),\n"
"                         and publish through POST /apps/ID/events signed\n"
"                         with SECRET, the payload as the event's data; the\n"
"                         engine runs with --pusher-app ID:KEY:SECRET (not\n"
"                         with --broadcast nor --redis)\n"
"  -h, --help             print this help and exit\n");
}

static int parse_list(const char *s, double *out, unsigned max)
{
	unsigned n = 0;
	char *end;

	while (*s && n < max) {
		out[n++] = strtod(s, &end);
		if (end == s || out[n - 1] <= 0)
			return -EINVAL;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -EINVAL;
	}
	return *s ? -E2BIG : (int)n;
}

static int parse_opts(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "target", required_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'm' },
		{ "conns", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 'T' },
		{ "src-addrs", required_argument, NULL, 'A' },
		{ "channels", required_argument, NULL, 'c' },
		{ "broadcast", no_argument, NULL, 'B' },
		{ "window", required_argument, NULL, 'w' },
		{ "sizes", required_argument, NULL, 's' },
		{ "patterns", required_argument, NULL, 'P' },
		{ "burst", required_argument, NULL, 'b' },
		{ "rate", required_argument, NULL, 'r' },
		{ "steady-seconds", required_argument, NULL, 'S' },
		{ "messages", required_argument, NULL, 'M' },
		{ "duration", required_argument, NULL, 'd' },
		{ "connect-timeout", required_argument, NULL, 'C' },
		{ "drain-timeout", required_argument, NULL, 'D' },
		{ "stall-timeout", required_argument, NULL, 'X' },
		{ "settle", required_argument, NULL, 'e' },
		{ "hold", required_argument, NULL, 'H' },
		{ "progress", required_argument, NULL, 'G' },
		{ "publish-timeout", required_argument, NULL, 'O' },
		{ "redis", required_argument, NULL, 'y' },
		{ "redis-prefix", required_argument, NULL, 'Y' },
		{ "spublish", no_argument, NULL, 'U' },
		{ "engine-pid", required_argument, NULL, 'p' },
		{ "recv-bufs", required_argument, NULL, 'R' },
		{ "recv-buf-size", required_argument, NULL, 'Z' },
		{ "deflate", no_argument, NULL, 'z' },
		{ "json", no_argument, NULL, 'j' },
		{ "pusher", required_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double v[BENCH_MAX_SIZES];
	bool have_target = false;
	int opt, n, i;

	o.sizes[0] = 64;
	o.sizes[1] = 1024;
	o.sizes[2] = 16384;
	o.nr_sizes = 3;
	o.rates[0] = 50;
	o.nr_rates = 1;
	while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 't': {
			char host[64];
			unsigned port;

			if (sscanf(optarg, "%63[^:]:%u", host, &port) != 2 ||
			    port > 65535 ||
			    inet_pton(AF_INET, host, &o.target.sin_addr) != 1)
				goto bad;
			o.target.sin_family = AF_INET;
			o.target.sin_port = htons((uint16_t)port);
			snprintf(o.target_str, sizeof(o.target_str), "%s:%u",
				 host, port);
			have_target = true;
			break;
		}
		case 'm':
			if (!strcmp(optarg, "connect"))
				o.mode = MODE_CONNECT;
			else if (!strcmp(optarg, "idle"))
				o.mode = MODE_IDLE;
			else if (!strcmp(optarg, "fanout"))
				o.mode = MODE_FANOUT;
			else
				goto bad;
			break;
		case 'n': o.conns = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'T': o.threads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'A': o.src_addrs = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'c': o.channels = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'B': o.broadcast = true; break;
		case 'w': o.window = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's':
			n = parse_list(optarg, v, BENCH_MAX_SIZES);
			if (n <= 0)
				goto bad;
			for (i = 0; i < n; i++)
				o.sizes[i] = (size_t)v[i];
			o.nr_sizes = (unsigned)n;
			break;
		case 'P':
			o.pat_burst = strstr(optarg, "burst") != NULL;
			o.pat_steady = strstr(optarg, "steady") != NULL;
			if (!o.pat_burst && !o.pat_steady)
				goto bad;
			break;
		case 'b': o.burst = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r':
			n = parse_list(optarg, o.rates, BENCH_MAX_SIZES);
			if (n <= 0)
				goto bad;
			o.nr_rates = (unsigned)n;
			break;
		case 'S': o.steady_s = strtod(optarg, NULL); break;
		case 'M': o.messages = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': o.duration = strtod(optarg, NULL); break;
		case 'C': o.connect_timeout = strtod(optarg, NULL); break;
		case 'D': o.drain_timeout = strtod(optarg, NULL); break;
		case 'X': o.stall_timeout = strtod(optarg, NULL); break;
		case 'e': o.settle = strtod(optarg, NULL); break;
		case 'H': o.hold = strtod(optarg, NULL); break;
		case 'G': o.progress = strtod(optarg, NULL); break;
		case 'O': o.pub_timeout = strtod(optarg, NULL); break;
		case 'y':
			if (sscanf(optarg, "%63[^:]:%u", o.redis_host,
				   &o.redis_port) != 2 || !o.redis_port ||
			    o.redis_port > 65535)
				goto bad;
			break;
		case 'Y':
			if (strlen(optarg) > 100)
				goto bad;
			o.redis_prefix = optarg;
			break;
		case 'U': o.spublish = true; break;
		case 'p': o.engine_pid = atoi(optarg); break;
		case 'R': o.recv_bufs = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'Z': o.recv_buf_size = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'z': o.deflate = true; break;
		case 'j': o.json = true; break;
		case 'K':
			o.pusher = true;
			if (sscanf(optarg, "%31[^:]:%63[^:]:%127s", o.pusher_id,
				   o.pusher_key, o.pusher_secret) != 3)
				goto bad;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (!have_target || !o.conns || o.channels > BENCH_MAX_CHANNELS ||
	    !o.window || o.recv_bufs < 2 || o.recv_bufs > 32768 ||
	    (o.recv_bufs & (o.recv_bufs - 1)) || o.recv_buf_size < 256 ||
	    o.duration <= 0 || o.pub_timeout <= 0 || (o.nr_rates != 1 && o.nr_rates != o.nr_sizes) ||
	    (o.mode == MODE_FANOUT && !o.channels && !o.broadcast) ||
	    (o.pusher && (o.broadcast || o.redis_port)))
		goto bad;
	return 0;
bad:
	usage(stderr);
	return -EINVAL;
}

static void build_requests(void)
{
	char path[128];
	unsigned k;

	/* the query pusher-js 8 sends */
	if (o.pusher)
		snprintf(path, sizeof(path), "/app/%s?protocol=7&client=js&"
			 "version=8.6.0&flash=false", o.pusher_key);
	else
		snprintf(path, sizeof(path), "/ws");
	upgrade_len = (size_t)snprintf(upgrade_req, sizeof(upgrade_req),
		"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: " BENCH_WS_KEY "\r\n"
		"Sec-WebSocket-Version: 13\r\n%s\r\n", path, o.target_str,
		o.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
			    "client_max_window_bits\r\n" : "");
	for (k = 0; k < o.channels; k++) {
		uint8_t *f = (uint8_t *)sub_frame[k];
		int n = o.pusher ?
			snprintf((char *)f + 6, sizeof(sub_frame[k]) - 6,
				 "{\"event\":\"pusher:subscribe\","
				 "\"data\":{\"channel\":\"c%u\"}}", k) :
			snprintf((char *)f + 6, sizeof(sub_frame[k]) - 6,
				 "{\"seq\":1,\"cmd\":\"subscribe\","
				 "\"data\":{\"channels\":[\"c%u\"]}}", k);

		/* FIN + text, masked, with an all-zero key: the XOR is a no-op. */
		f[0] = 0x81;
		f[1] = 0x80 | (uint8_t)n;
		memset(f + 2, 0, 4);
		sub_len[k] = 6 + (size_t)n;
	}
}

int main(int argc, char **argv)
{
	uint64_t progress = 0, t_progress, t_report;
	uint64_t t0, t_up = 0, t_ready = 0, upgraded = 0, ready = 0, failed = 0;
	long rss0, rss1, slab0, slab1, sunr0, sunr1, tcpm0, tcpm1;
	struct phase *phases = NULL;
	unsigned nr_phases = 0, i, per_thread;
	struct hist hs = { 0 };
	struct pub pub = { .fd = -1 };
	static char stats[65536];
	int ret, stats_st;

	if (parse_opts(argc, argv) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	/* Whatever happens, the process ends on its own. */
	alarm((unsigned)o.duration + 60);
	nr_workers = uload_threads(o.conns, o.threads);
	if (nr_workers > BENCH_MAX_THREADS || nr_workers > o.conns) {
		fprintf(stderr, "ringcast-bench: %u threads: out of range\n",
			nr_workers);
		return 2;
	}
	if (!o.src_addrs)
		o.src_addrs = uload_src_addrs(o.conns);
	build_requests();
	g_deadline = uload_now_ns() + (uint64_t)(o.duration * 1e9);

	/*
	 * The publisher's keep-alive link (also for /stats) is opened first,
	 * as a real publisher's would be: an engine at its fd limit could
	 * not take it after the clients (epoll at 20,000 here). The engine
	 * drops an HTTP connection idle for its --handshake-timeout (10 s by
	 * default), so after a longer set-up the first publish reconnects,
	 * as it does after any failure here.
	 */
	if (pub_connect(&pub) == 0)
		pub_request(&pub, "GET", "/healthz", NULL, 0, NULL, 0);
	rss0 = engine_rss_kb();
	slab0 = proc_kb("/proc/meminfo", "Slab");
	sunr0 = proc_kb("/proc/meminfo", "SUnreclaim");
	tcpm0 = tcp_mem_pages();

	workers = calloc(nr_workers, sizeof(*workers));
	if (!workers)
		return 1;
	per_thread = o.conns / nr_workers;
	for (i = 0; i < nr_workers; i++) {
		struct worker *w = &workers[i];

		w->id = i;
		w->first = i * per_thread;
		w->n = i == nr_workers - 1 ? o.conns - w->first : per_thread;
		w->conns = calloc(w->n, sizeof(*w->conns));
		w->ph = calloc(BENCH_MAX_PHASES, sizeof(*w->ph));
		if (!w->conns || !w->ph)
			return 1;
	}
	pthread_barrier_init(&start_barrier, NULL, nr_workers + 1);
	for (i = 0; i < nr_workers; i++) {
		ret = pthread_create(&workers[i].tid, NULL, worker_main,
				     &workers[i]);
		if (ret) {
			fprintf(stderr, "ringcast-bench: pthread_create: %s\n",
				strerror(ret));
			return 1;
		}
	}
	pthread_barrier_wait(&start_barrier);
	for (i = 0; i < nr_workers; i++)
		if (workers[i].err < 0) {
			fprintf(stderr, "ringcast-bench: ring %u: %s\n", i,
				strerror(-workers[i].err));
			return 1;
		}
	t0 = uload_now_ns();
	t_progress = t0;
	t_report = t0;

	/*
	 * Set-up: until every connection is ready or failed, or time is up, or
	 * nothing moved for --stall-timeout (connections the engine never
	 * answers would otherwise hold the run until --connect-timeout).
	 */
	for (;;) {
		uint64_t r = 0, f = 0;

		for (i = 0; i < nr_workers; i++) {
			r += __atomic_load_n(&workers[i].ready, __ATOMIC_RELAXED);
			f += __atomic_load_n(&workers[i].failed, __ATOMIC_RELAXED);
		}
		if (r + f != progress) {
			progress = r + f;
			t_progress = uload_now_ns();
		}
		if (o.progress > 0 &&
		    past(t_report + (uint64_t)(o.progress * 1e9))) {
			t_report = uload_now_ns();
			fprintf(stderr, "ringcast-bench: %.0f s: %" PRIu64
				" ready, %" PRIu64 " failed, %" PRIu64
				" in flight, engine RSS %ld kB, Slab %ld kB\n",
				(double)(t_report - t0) / 1e9, r, f,
				sum_opened() - r - f, engine_rss_kb(),
				proc_kb("/proc/meminfo", "Slab"));
		}
		if (r + f >= o.conns || past(t0 + (uint64_t)(o.connect_timeout * 1e9)) ||
		    past(t_progress + (uint64_t)(o.stall_timeout * 1e9)) ||
		    past(g_deadline))
			break;
		usleep(1000);
	}
	__atomic_store_n(&g_connect_stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < nr_workers; i++) {
		struct worker *w = &workers[i];
		uint64_t tu = __atomic_load_n(&w->t_last_upgraded, __ATOMIC_RELAXED);
		uint64_t tr = __atomic_load_n(&w->t_last_ready, __ATOMIC_RELAXED);

		upgraded += __atomic_load_n(&w->upgraded, __ATOMIC_RELAXED);
		ready += __atomic_load_n(&w->ready, __ATOMIC_RELAXED);
		failed += __atomic_load_n(&w->failed, __ATOMIC_RELAXED);
		t_up = tu > t_up ? tu : t_up;
		t_ready = tr > t_ready ? tr : t_ready;
	}
	if (o.settle > 0)
		usleep((useconds_t)(o.settle * 1e6));
	rss1 = engine_rss_kb();
	slab1 = proc_kb("/proc/meminfo", "Slab");
	sunr1 = proc_kb("/proc/meminfo", "SUnreclaim");
	tcpm1 = tcp_mem_pages();

	if (o.mode == MODE_IDLE && o.hold > 0) {
		uint64_t end = uload_now_ns() + (uint64_t)(o.hold * 1e9);

		while (!past(end) && !past(g_deadline))
			usleep(10000);
	}
	if (o.mode == MODE_FANOUT && ready) {
		unsigned s;

		phases = calloc(BENCH_MAX_PHASES, sizeof(*phases));
		if (!phases)
			return 1;
		for (s = 0; s < o.nr_sizes; s++) {
			double rate = o.rates[o.nr_rates == 1 ? 0 : s];

			if (o.pat_burst) {
				phases[nr_phases].size = o.sizes[s];
				phases[nr_phases++].pattern = PAT_BURST;
			}
			if (o.pat_steady) {
				phases[nr_phases].size = o.sizes[s];
				phases[nr_phases].rate = rate;
				phases[nr_phases++].pattern = PAT_STEADY;
			}
		}
		for (i = 0; i < nr_phases && !past(g_deadline) &&
			    pub.consec < PUB_GIVE_UP; i++) {
			run_phase(&pub, i, &phases[i]);
			usleep(100000);	/* let the queues drain between phases */
		}
	}
	stats_st = pub.consec >= PUB_GIVE_UP ? -EIO :
		   pub_request(&pub, "GET", "/stats", NULL, 0, stats,
			       sizeof(stats));

	__atomic_store_n(&g_stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < nr_workers; i++)
		pthread_join(workers[i].tid, NULL);
	for (i = 0; i < nr_workers; i++)
		hist_merge(&hs, &workers[i].hs);

	/* ---- the JSON report ---- */
	printf("{\"tool\":\"ringcast-bench\",\"mode\":\"%s\",",
	       o.mode == MODE_FANOUT ? "fanout" :
	       o.mode == MODE_IDLE ? "idle" : "connect");
	printf("\"protocol\":\"%s\",", o.pusher ? "pusher" : "ringcast");
	printf("\"target\":\"%s\",\"conns\":%u,\"threads\":%u,\"src_addrs\":%u,"
	       "\"channels\":%u,\"broadcast\":%s,\"publisher\":\"%s\","
	       "\"window\":%u,\"engine_pid\":%d,",
	       o.target_str, o.conns, nr_workers, o.src_addrs, o.channels,
	       o.broadcast ? "true" : "false", o.redis_port ? "redis" :
	       o.pusher ? "pusher-http" : "http",
	       o.window, o.engine_pid);
	printf("\"setup\":{\"upgraded\":%llu,\"ready\":%llu,\"failed\":%llu,"
	       "\"pending\":%llu,", (unsigned long long)upgraded,
	       (unsigned long long)ready, (unsigned long long)failed,
	       (unsigned long long)(o.conns - ready - failed));
	print_num("time_to_n_s", ready == o.conns ?
		  (double)(t_ready - t0) / 1e9 : NAN, true);
	print_num("time_to_last_ready_s", ready ?
		  (double)(t_ready - t0) / 1e9 : NAN, true);
	print_num("handshakes_per_s", upgraded && t_up > t0 ?
		  (double)upgraded / ((double)(t_up - t0) / 1e9) : NAN, true);
	print_hist_us("ready_latency_ms", &hs, 1e6);
	{
		uint64_t enobufs = 0, pings = 0, bad = 0, other = 0, closed = 0;
		uint64_t open_err = 0;
		int first_err = 0;

		for (i = 0; i < nr_workers; i++) {
			struct worker *w = &workers[i];

			enobufs += w->enobufs;
			pings += w->pings;
			bad += w->bad_msgs;
			other += w->other_msgs;
			closed += w->closed;
			open_err += w->open_err;
			if (!first_err)
				first_err = w->first_err ? w->first_err : w->err;
		}
		printf(",\"first_error\":\"%s\"},", first_err ?
		       strerror(-first_err) : "");
		printf("\"client\":{\"closed_by_peer\":%llu,\"recv_enobufs\":%llu,"
		       "\"pings\":%llu,\"bad_msgs\":%llu,\"other_msgs\":%llu,"
		       "\"open_errors\":%llu,\"publish_errors\":%llu,"
		       "\"publish_reconnects\":%llu,\"publisher_gave_up\":%s,"
		       "\"cpu_s\":%.3f},",
		       (unsigned long long)closed, (unsigned long long)enobufs,
		       (unsigned long long)pings, (unsigned long long)bad,
		       (unsigned long long)other, (unsigned long long)open_err,
		       (unsigned long long)pub.errors,
		       (unsigned long long)pub.reconnects,
		       pub.consec >= PUB_GIVE_UP ? "true" : "false", self_cpu_s());
	}
	printf("\"memory\":{\"engine_rss_before_kib\":%ld,"
	       "\"engine_rss_after_kib\":%ld,\"slab_before_kib\":%ld,"
	       "\"slab_after_kib\":%ld,\"sunreclaim_before_kib\":%ld,"
	       "\"sunreclaim_after_kib\":%ld,\"tcp_mem_pages_before\":%ld,"
	       "\"tcp_mem_pages_after\":%ld,", rss0, rss1, slab0, slab1,
	       sunr0, sunr1, tcpm0, tcpm1);
	print_num("engine_rss_per_conn_bytes", ready && rss0 >= 0 && rss1 >= 0 ?
		  (double)(rss1 - rss0) * 1024 / (double)ready : NAN, true);
	/* Loopback: both ends of every connection are in this kernel. */
	print_num("slab_per_conn_bytes", ready && slab0 >= 0 ?
		  (double)(slab1 - slab0) * 1024 / (double)ready : NAN, false);
	printf("},\"phases\":[");
	for (i = 0; i < nr_phases; i++) {
		struct phase *ph = &phases[i];
		unsigned w;
		double span = ph->last_recv > ph->first_send ?
			      (double)(ph->last_recv - ph->first_send) / 1e9 : NAN;

		for (w = 0; w < nr_workers; w++)
			hist_merge(&ph->lat, &workers[w].ph[i].lat);
		printf("%s{\"size\":%zu,\"pattern\":\"%s\",", i ? "," : "",
		       ph->size, ph->pattern == PAT_BURST ? "burst" : "steady");
		if (ph->pattern == PAT_STEADY)
			print_num("rate_msgs_per_s", ph->rate, true);
		else
			printf("\"burst\":%u,", o.burst);
		printf("\"published\":%llu,\"expected\":%llu,\"delivered\":%llu,"
		       "\"lost\":%lld,", (unsigned long long)ph->published,
		       (unsigned long long)ph->expected,
		       (unsigned long long)ph->delivered,
		       (long long)(ph->expected - ph->delivered));
		print_num("span_s", span, true);
		/*
		 * The publisher waits for each answer, so an engine slow to
		 * answer also delays the next send time: a burst's latencies
		 * read with how long its publishing took.
		 */
		print_num("publish_span_s", ph->published ?
			  (double)(ph->last_send - ph->first_send) / 1e9 : NAN,
			  true);
		print_num("delivered_per_s", (double)ph->delivered / span, true);
		print_num("engine_cpu_s", ph->engine_cpu_s, true);
		{
			uint64_t wire = 0, zn = 0;

			for (w = 0; w < nr_workers; w++) {
				wire += workers[w].ph[i].wire;
				zn += workers[w].ph[i].compressed;
			}
			print_num("wire_bytes_per_delivery", ph->delivered ?
				  (double)wire / (double)ph->delivered : NAN,
				  true);
			printf("\"compressed\":%llu,", (unsigned long long)zn);
		}
		print_num("engine_cpu_s_per_million", o.engine_pid > 0 &&
			  ph->delivered ? ph->engine_cpu_s * 1e6 /
			  (double)ph->delivered : NAN, true);
		print_num("client_cpu_s", ph->client_cpu_s, true);
		print_hist_us("latency_us", &ph->lat, 1e3);
		printf(",");
		print_cdf_ms("cdf_ms", &ph->lat);
		printf("}");
	}
	printf("],\"engine_stats\":%s}\n", stats_st == 200 && stats[0] == '{' ?
	       stats : "null");
	fflush(stdout);

	/* Closing the rings closes every client socket. */
	for (i = 0; i < nr_workers; i++)
		io_uring_queue_exit(&workers[i].u.ring);
	if (pub.fd >= 0)
		close(pub.fd);
	free(phases);
	return ready ? 0 : 1;
}
