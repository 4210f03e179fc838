/* SPDX-License-Identifier: MIT */
/*
 * ringcast-hoload: the clients of a hand-over bench (bench/handover
 * --load c). It opens N WebSocket connections on io_uring, subscribed to
 * one history channel, in the manner of ringcast-bench: io_uring direct
 * descriptors (the process fd table holds a small batch at a time; each
 * ring's fixed table is capped by RLIMIT_NOFILE, so one ring a thread per
 * cap's worth of connections), many source addresses (127.0.0.2, ...).
 *
 * Each connection keeps the number of the last {"n":i} it got, its channel
 * offset, when it came and the longest pause between two messages (16 B).
 * A number that skips counts as lost, one seen again as duplicated (at a
 * newer offset: published twice, counted apart). A close (1012 in a
 * drain) or an EOF is counted and the connection reconnects and subscribes
 * again with the last offset and the channel's epoch, counting
 * "recovered":true. The publisher (the driver) ends the run by publishing
 * {"end":true}: a connection that gets it is done.
 *
 * stdout: "ready READY FAILED" once every connection is subscribed (or the
 * set-up timed out), then one JSON object when every connection is done
 * or --duration passed. Every loop is bounded by --duration.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc.h"
#include "uload.h"

#define HO_MAX_THREADS	256
#define HO_PRE		192	/* payload bytes kept: a push is ~100 */
#define HO_RETRIES	200	/* reconnect attempts of one connection */
#define HO_NONE		UINT32_MAX
#define HO_WS_KEY	"dGhlIHNhbXBsZSBub25jZQ=="	/* RFC 6455 sample */

enum { ST_FREE, ST_CONNECT, ST_HS, ST_SUB, ST_READY, ST_CLOSING, ST_WAIT,
       ST_DONE, ST_DEAD };
/* A reconnect's steps: closed to connect sent, connected, upgraded, ready. */
enum { STEP_QUEUED, STEP_CONNECT, STEP_UPGRADE, STEP_SUBSCRIBE, NR_STEPS };
enum { OP_CONNECT = 1, OP_SEND, OP_SENDDYN, OP_RECV, OP_SHUTDOWN, OP_CLOSE };

struct conn {
	/* what the bench is about: 16 bytes */
	uint32_t last_n;		/* HO_NONE before the first */
	uint32_t offset;		/* the channel offset of that message */
	uint32_t t_last;		/* its arrival, us since the start */
	uint32_t max_gap;		/* the longest pause so far, us */
	/* the frame parser */
	uint8_t state;
	uint8_t hdr_len;		/* header bytes so far; 0xff: payload */
	uint8_t hdr[10];
	uint8_t pre_len;
	uint8_t hs_match;		/* of "\r\n\r\n" */
	uint8_t recv_armed;
	uint8_t tries;			/* reconnects in a row without success */
	uint8_t gen;			/* bumped a connect: stale completions */
	uint8_t next;			/* the state after the close completes */
	uint8_t was_up;			/* subscribed once: recover, not join */
	uint32_t t_mark;		/* a reconnect's last step, us */
	uint32_t remain;		/* payload bytes to come */
	char pre[HO_PRE];
};

struct worker {
	unsigned id;
	pthread_t tid;
	struct uload u;			/* the ring and its buffers */
	struct conn *conns;
	unsigned first, n, next, opening;
	unsigned *redo;			/* slots to reconnect, oldest first */
	unsigned redo_head, nr_redo;	/* a ring of n: a slot is in it once */
	int err, first_err;
	/* read by main while we run: atomics */
	uint64_t ready, failed, done, dead;
	/* read by main after join */
	uint64_t lost, dup, republished, closes, closes_1012, eofs, reconnects,
		 recovered,
		 not_recovered, sub_errors, epoch_changes, other, msgs;
	uint64_t t_first_close, t_last_reconnect;	/* ns */
	uint64_t step_sum[4], step_max[4];	/* a reconnect's steps, us */
	uint64_t step_n[4];			/* ... and how many ended */
	char epoch[24];
};

static struct {
	struct sockaddr_in target;
	char target_str[64];
	const char *channel;
	unsigned conns, threads, src_addrs, window, recv_bufs, buf_size;
	unsigned rewindow;		/* reconnects in flight a thread */
	double duration, connect_timeout;
	bool reconnect;
} o = {
	.channel = "hb:c",
	.conns = 1000,
	.window = 256,
	.rewindow = 65536,
	.recv_bufs = 1024,
	.buf_size = 4096,
	.duration = 600,
	.connect_timeout = 300,
	.reconnect = true,
};

static struct worker *workers;
static unsigned nr_workers;
static int g_stop;
static uint64_t g_t0, g_deadline;
static char upgrade_req[256], sub_frame[160];
static size_t upgrade_len, sub_len;
static pthread_barrier_t start_barrier;

/* user_data: the op, then a connection's generation and slot (or a frame) */
static uint64_t ud(unsigned op, uint64_t v)
{
	return (uint64_t)op << 56 | v;
}

static uint64_t ud_conn(unsigned op, const struct conn *c, unsigned slot)
{
	return ud(op, (uint64_t)c->gen << 32 | slot);
}

static uint32_t now_us(void)
{
	return (uint32_t)((uload_now_ns() - g_t0) / 1000);
}

/* Step @k of a reconnect ends now: timed from the one before. */
static void step(struct worker *w, struct conn *c, unsigned k)
{
	uint32_t t = now_us(), d = t - c->t_mark;

	c->t_mark = t;
	if (!c->was_up)
		return;
	w->step_sum[k] += d;
	w->step_n[k]++;
	if (d > w->step_max[k])
		w->step_max[k] = d;
}

static void bump(uint64_t *v)
{
	__atomic_store_n(v, *v + 1, __ATOMIC_RELAXED);
}

/* A client's text frame, masked with a zero key (the XOR changes nothing). */
static size_t client_frame(char *out, size_t cap, const char *text)
{
	size_t n = strlen(text);

	if (n > 125 || n + 6 > cap)
		return 0;
	out[0] = (char)0x81;
	out[1] = (char)(0x80 | n);
	memset(out + 2, 0, 4);
	memcpy(out + 6, text, n);
	return n + 6;
}

static void send_buf(struct worker *w, const struct conn *c, unsigned slot,
		     const char *buf, size_t len, char *owned)
{
	struct io_uring_sqe *sqe = uload_sqe(&w->u);

	io_uring_prep_send(sqe, (int)slot, buf, len, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	/* a frame built for this connection is freed when sent */
	io_uring_sqe_set_data64(sqe, owned ? ud(OP_SENDDYN, (uintptr_t)owned) :
				ud_conn(OP_SEND, c, slot));
}

static void arm_recv(struct worker *w, struct conn *c, unsigned slot)
{
	uload_recv(&w->u, slot, ud_conn(OP_RECV, c, slot));
	c->recv_armed = 1;
}

/*
 * Ends connection @slot's socket; @next is the state it waits in for the
 * close's completion (ST_WAIT: then reconnect; ST_DONE, ST_DEAD: stay).
 */
static void conn_close(struct worker *w, struct conn *c, unsigned slot,
		       uint8_t next)
{
	struct io_uring_sqe *sqe;

	if (c->state == ST_CLOSING || c->state == ST_DONE ||
	    c->state == ST_DEAD || c->state == ST_WAIT)
		return;
	if (c->state != ST_READY)
		w->opening--;
	/*
	 * A live multishot recv holds the socket: a shutdown ends it (it
	 * reads EOF) and sends our FIN. A cancel by user_data would do it
	 * too, but walks the ring's poll hash, whose 256 buckets hold every
	 * armed recv of the thread: 10 % of our CPU in a drain of 100,000.
	 * The close waits for it (hard link: whatever it returned), so it
	 * finds this socket in the slot, not the next one.
	 */
	if (c->recv_armed) {
		/* the pair goes in one submission: a link does not span two */
		if (io_uring_sq_space_left(&w->u.ring) < 2)
			io_uring_submit(&w->u.ring);
		sqe = uload_sqe(&w->u);
		io_uring_prep_shutdown(sqe, (int)slot, SHUT_RDWR);
		sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
		io_uring_sqe_set_data64(sqe, ud_conn(OP_SHUTDOWN, c, slot));
	}
	sqe = uload_sqe(&w->u);
	io_uring_prep_close_direct(sqe, slot);
	io_uring_sqe_set_data64(sqe, ud_conn(OP_CLOSE, c, slot));
	c->next = next;
	c->state = ST_CLOSING;
}

/* Connection @slot is given up: counted, closed, left closed. */
static void conn_dead(struct worker *w, struct conn *c, unsigned slot)
{
	if (!c->was_up)
		bump(&w->failed);
	bump(&w->dead);
	conn_close(w, c, slot, ST_DEAD);
}

/* A connection lost (a close, an EOF, an error) before its "end". */
static void conn_lost(struct worker *w, struct conn *c, unsigned slot,
		      int err)
{
	bool was_ready = c->state == ST_READY;

	if (was_ready)
		c->t_mark = now_us();
	if (was_ready && !w->t_first_close)
		w->t_first_close = uload_now_ns();
	if (!w->first_err && err)
		w->first_err = err;
	if (!o.reconnect || (!was_ready && ++c->tries > HO_RETRIES)) {
		conn_dead(w, c, slot);
		return;
	}
	conn_close(w, c, slot, ST_WAIT);
}

static const char *find(const char *p, size_t n, const char *key)
{
	return memmem(p, n, key, strlen(key));
}

static bool get_u32(const char *p, size_t n, const char *key, uint32_t *out)
{
	const char *s = find(p, n, key), *end = p + n;
	uint64_t v = 0;

	if (!s)
		return false;
	s += strlen(key);
	while (s < end && *s == ' ')	/* json.dumps() puts one there */
		s++;
	if (s >= end || *s < '0' || *s > '9')
		return false;
	while (s < end && *s >= '0' && *s <= '9' && v < UINT32_MAX)
		v = v * 10 + (uint64_t)(*s++ - '0');
	*out = v < UINT32_MAX ? (uint32_t)v : UINT32_MAX - 1;
	return true;
}

/*
 * Message @n at channel offset @off (0: none). A number seen again at a
 * newer offset was published twice (a publish retried after its answer
 * was lost): not a duplicate delivery, counted apart.
 */
static void on_number(struct worker *w, struct conn *c, uint32_t n,
		      uint32_t off, uint64_t now)
{
	uint32_t t = (uint32_t)((now - g_t0) / 1000);

	w->msgs++;
	if (c->last_n == HO_NONE) {
		w->lost += n;	/* the publisher starts once all are ready */
	} else {
		if (t - c->t_last > c->max_gap)
			c->max_gap = t - c->t_last;
		if (n <= c->last_n) {
			if (off > c->offset) {
				w->republished++;
				c->offset = off;
			} else {
				w->dup++;
			}
			c->t_last = t;
			return;
		}
		w->lost += n - c->last_n - 1;
	}
	c->last_n = n;
	c->t_last = t;
	if (off)
		c->offset = off;
}

static void note_epoch(struct worker *w, const char *p, size_t n)
{
	const char *s = find(p, n, "\"epoch\":\""), *e;
	size_t len;

	if (!s)
		return;
	s += 9;
	e = memchr(s, '"', (size_t)(p + n - s));
	if (!e || (len = (size_t)(e - s)) >= sizeof(w->epoch))
		return;
	if (!w->epoch[0]) {
		memcpy(w->epoch, s, len);
		w->epoch[len] = 0;
	} else if (strlen(w->epoch) != len || memcmp(w->epoch, s, len)) {
		w->epoch_changes++;
	}
}

static void on_sub_reply(struct worker *w, struct conn *c, unsigned slot,
			 uint64_t now)
{
	const char *p = c->pre;
	size_t n = c->pre_len;
	bool again = c->was_up;

	if (!find(p, n, "\"code\":200")) {
		w->sub_errors++;
		conn_dead(w, c, slot);
		return;
	}
	w->opening--;
	c->state = ST_READY;
	c->tries = 0;
	step(w, c, STEP_SUBSCRIBE);
	c->was_up = 1;
	if (find(p, n, "\"recovered\":true"))
		w->recovered++;
	else if (find(p, n, "\"recovered\":false"))
		w->not_recovered++;
	if (again) {
		w->reconnects++;
		w->t_last_reconnect = now;
	} else {
		bump(&w->ready);
	}
}

static void on_text(struct worker *w, struct conn *c, unsigned slot,
		    uint64_t now)
{
	const char *p = c->pre;
	size_t n = c->pre_len;
	uint32_t v, off;

	if (n >= 8 && !memcmp(p, "{\"seq\":1", 8)) {
		if (c->state == ST_SUB)
			on_sub_reply(w, c, slot, now);
		return;
	}
	if (!find(p, n, "\"cmd\":\"push\"")) {
		w->other++;
		return;
	}
	if (find(p, n, "\"end\"")) {
		bump(&w->done);
		conn_close(w, c, slot, ST_DONE);
		return;
	}
	if (!get_u32(p, n, "\"n\":", &v)) {
		w->other++;
		return;
	}
	if (!get_u32(p, n, "\"offset\":", &off))
		off = 0;
	on_number(w, c, v, off, now);
	if (!w->epoch[0] || w->msgs % 4096 == 1)	/* a sample is enough */
		note_epoch(w, p, n);
}

static void on_upgraded(struct worker *w, struct conn *c, unsigned slot)
{
	char text[160], *f;
	size_t len;

	if (c->pre_len < 12 || memcmp(c->pre, "HTTP/1.1 101", 12)) {
		conn_lost(w, c, slot, -ECONNREFUSED);
		return;
	}
	c->state = ST_SUB;
	step(w, c, STEP_UPGRADE);
	c->pre_len = 0;
	c->hdr_len = 0;
	if (!c->was_up || !c->offset || !w->epoch[0]) {
		send_buf(w, c, slot, sub_frame, sub_len, NULL);
		return;
	}
	/* again: recover from where it was */
	snprintf(text, sizeof(text), "{\"seq\":1,\"cmd\":\"subscribe\","
		 "\"data\":{\"channel\":\"%s\",\"epoch\":\"%s\",\"offset\":%u}}",
		 o.channel, w->epoch, c->offset);
	f = malloc(sizeof(text));
	len = f ? client_frame(f, sizeof(text), text) : 0;
	if (!len) {
		free(f);
		conn_lost(w, c, slot, -ENOMEM);
		return;
	}
	send_buf(w, c, slot, f, len, f);
}

/* A whole frame is in: its opcode in hdr[0], its start in pre. */
static void on_frame(struct worker *w, struct conn *c, unsigned slot,
		     uint64_t now)
{
	unsigned code;

	switch (c->hdr[0] & 0x0f) {
	case 0x1:
		on_text(w, c, slot, now);
		break;
	case 0x8:
		code = c->pre_len >= 2 ? (uint8_t)c->pre[0] << 8 |
		       (uint8_t)c->pre[1] : 0;
		w->closes++;
		if (code == 1012)
			w->closes_1012++;
		conn_lost(w, c, slot, 0);
		break;
	default:	/* pings are off (--ping-interval 0) */
		break;
	}
}

static void feed_hs(struct worker *w, struct conn *c, unsigned slot,
		    uint8_t ch)
{
	if (c->pre_len < HO_PRE)
		c->pre[c->pre_len++] = (char)ch;
	if (uload_head_byte(&c->hs_match, ch))
		on_upgraded(w, c, slot);
}

/* Feeds received bytes through the response and the frame parser. */
static void feed(struct worker *w, struct conn *c, unsigned slot,
		 const uint8_t *d, size_t len, uint64_t now)
{
	while (len && (c->state == ST_HS || c->state == ST_SUB ||
		       c->state == ST_READY)) {
		if (c->state == ST_HS) {
			feed_hs(w, c, slot, *d++);
			len--;
			continue;
		}
		if (c->hdr_len != 0xff) {
			uint64_t n;

			len--;
			if (!uload_hdr_byte(c->hdr, &c->hdr_len, *d++, &n))
				continue;
			/* a push is small; a larger frame is skipped */
			c->remain = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
			c->hdr_len = 0xff;
			c->pre_len = 0;
		} else {
			size_t k = len < c->remain ? len : c->remain;
			size_t keep = HO_PRE - c->pre_len;

			if (keep > k)
				keep = k;
			memcpy(c->pre + c->pre_len, d, keep);
			c->pre_len = (uint8_t)(c->pre_len + keep);
			c->remain -= (uint32_t)k;
			d += k;
			len -= k;
		}
		if (c->hdr_len == 0xff && !c->remain) {
			c->hdr_len = 0;
			on_frame(w, c, slot, now);
		}
	}
}

static void on_recv(struct worker *w, struct io_uring_cqe *cqe,
		    struct conn *c, unsigned slot)
{
	int res = cqe->res;

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (res > 0)
			feed(w, c, slot, (const uint8_t *)uload_buf(&w->u, bid),
			     (size_t)res, uload_now_ns());
		uload_recycle(&w->u, bid);
	}
	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	c->recv_armed = 0;
	if (c->state != ST_HS && c->state != ST_SUB && c->state != ST_READY)
		return;
	if (res == -ENOBUFS || res > 0) {	/* buffers come back soon */
		arm_recv(w, c, slot);
		return;
	}
	w->eofs++;
	conn_lost(w, c, slot, res ? res : -ECONNRESET);
}

static void on_cqe(void *arg, struct io_uring_cqe *cqe)
{
	struct worker *w = arg;
	uint64_t d = io_uring_cqe_get_data64(cqe);
	unsigned op = (unsigned)(d >> 56), slot = (unsigned)d;
	struct conn *c = &w->conns[slot];
	int res = cqe->res;

	if (op == OP_SENDDYN) {
		free((void *)(uintptr_t)(d & ((1ULL << 56) - 1)));
		return;
	}
	if ((uint8_t)(d >> 32) != c->gen) {	/* of a socket closed since */
		if (cqe->flags & IORING_CQE_F_BUFFER)
			uload_recycle(&w->u,
				      cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	switch (op) {
	case OP_CONNECT:
		if (res < 0) {
			conn_lost(w, c, slot, res);
			return;
		}
		c->state = ST_HS;
		step(w, c, STEP_CONNECT);
		arm_recv(w, c, slot);
		send_buf(w, c, slot, upgrade_req, upgrade_len, NULL);
		return;
	case OP_RECV:
		on_recv(w, cqe, c, slot);
		return;
	case OP_CLOSE:
		c->recv_armed = 0;
		c->state = c->next;
		if (c->state == ST_WAIT)
			w->redo[(w->redo_head + w->nr_redo++) % w->n] = slot;
		return;
	default:	/* a send's errors show as the recv's */
		return;
	}
}

static void start_connect(struct worker *w, unsigned slot)
{
	struct conn *c = &w->conns[slot];
	struct io_uring_sqe *sqe = uload_sqe(&w->u);

	step(w, c, STEP_QUEUED);
	c->state = ST_CONNECT;
	c->gen++;
	c->hdr_len = 0;
	c->pre_len = 0;
	c->hs_match = 0;
	w->opening++;
	io_uring_prep_connect(sqe, (int)slot, (struct sockaddr *)&o.target,
			      sizeof(o.target));
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud_conn(OP_CONNECT, c, slot));
}

/* Puts a fresh socket in fixed slot @slot (free, or closed already). */
static int place(struct worker *w, unsigned slot, unsigned g)
{
	int fd = uload_socket(g, o.src_addrs), ret;

	if (fd < 0)
		return fd;
	ret = io_uring_register_files_update(&w->u.ring, slot, &fd, 1);
	close(fd);	/* the fixed table keeps its own reference */
	return ret == 1 ? 0 : ret < 0 ? ret : -EIO;
}

/*
 * Opens new connections within --window, then reconnects lost ones within
 * --reconnect-window: a drained client reconnects as soon as it is closed,
 * as a real one would, so the new process sees the drain's own pace.
 */
static void open_more(struct worker *w)
{
	while (w->next < w->n && w->opening < o.window) {
		unsigned slot = w->next++;
		int ret = place(w, slot, w->first + slot);

		if (ret < 0) {
			if (!w->first_err)
				w->first_err = ret;
			w->conns[slot].state = ST_DEAD;
			bump(&w->failed);
			bump(&w->dead);
			continue;
		}
		start_connect(w, slot);
	}
	while (w->nr_redo && w->opening < o.rewindow) {
		unsigned slot = w->redo[w->redo_head];
		struct conn *c = &w->conns[slot];
		int ret = place(w, slot, w->first + slot + c->tries);

		w->redo_head = (w->redo_head + 1) % w->n;
		w->nr_redo--;
		if (ret < 0) {
			if (!w->first_err)
				w->first_err = ret;
			c->state = ST_DEAD;
			bump(&w->dead);
			continue;
		}
		start_connect(w, slot);
	}
}

static int worker_setup(struct worker *w)
{
	unsigned i;
	int ret = uload_setup(&w->u, w->n, o.recv_bufs, o.buf_size);

	if (ret < 0)
		return ret;
	w->conns = calloc(w->n ? w->n : 1, sizeof(*w->conns));
	w->redo = calloc(w->n ? w->n : 1, sizeof(*w->redo));
	if (!w->conns || !w->redo)
		return -ENOMEM;
	for (i = 0; i < w->n; i++)
		w->conns[i].last_n = HO_NONE;
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	/* SINGLE_ISSUER: the ring belongs to the thread that made it */
	w->err = worker_setup(w);
	if (w->err < 0)
		__atomic_store_n(&w->failed, w->n, __ATOMIC_RELAXED);
	pthread_barrier_wait(&start_barrier);
	while (!w->err && !__atomic_load_n(&g_stop, __ATOMIC_RELAXED) &&
	       uload_now_ns() < g_deadline) {
		open_more(w);
		w->err = uload_wait(&w->u, on_cqe, w);
	}
	return NULL;
}

static uint64_t sum(size_t off)
{
	uint64_t s = 0;
	unsigned i;

	for (i = 0; i < nr_workers; i++)
		s += __atomic_load_n((uint64_t *)((char *)&workers[i] + off),
				     __ATOMIC_RELAXED);
	return s;
}

#define SUM(field)	sum(offsetof(struct worker, field))

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Where a reconnect's time went: mean and max ms of each step. */
static void print_steps(void)
{
	static const char *const names[NR_STEPS] = {
		"queued", "connect", "upgrade", "subscribe" };
	unsigned k, i;

	printf("\"reconnect_steps_ms\":{");
	for (k = 0; k < NR_STEPS; k++) {
		uint64_t total = 0, max = 0, n = 0;

		for (i = 0; i < nr_workers; i++) {
			total += workers[i].step_sum[k];
			n += workers[i].step_n[k];
			if (workers[i].step_max[k] > max)
				max = workers[i].step_max[k];
		}
		printf("%s\"%s\":{\"mean\":%.1f,\"max\":%.1f}", k ? "," : "",
		       names[k], n ? (double)total / 1e3 / (double)n : 0.0,
		       (double)max / 1e3);
	}
	printf("},");
}

/* The per-client figures, after the workers are joined. */
static void report(double setup_s)
{
	uint32_t *gaps = malloc((size_t)o.conns * sizeof(*gaps)), last = 0;
	uint64_t tail = 0, first_close = 0, last_rec = 0, rec;
	size_t ng = 0;
	unsigned i, k, stuck = 0;
	int first_err = 0;

	for (i = 0; i < nr_workers; i++)
		for (k = 0; k < workers[i].n; k++)
			if (workers[i].conns[k].last_n != HO_NONE &&
			    workers[i].conns[k].last_n > last)
				last = workers[i].conns[k].last_n;
	for (i = 0; i < nr_workers; i++) {
		struct worker *w = &workers[i];

		if (!first_err)
			first_err = w->err ? w->err : w->first_err;
		if (w->t_first_close && (!first_close ||
					 w->t_first_close < first_close))
			first_close = w->t_first_close;
		if (w->t_last_reconnect > last_rec)
			last_rec = w->t_last_reconnect;
		for (k = 0; k < w->n; k++) {
			struct conn *c = &w->conns[k];

			if (c->state != ST_DONE) {
				stuck += c->state != ST_DEAD;
				continue;
			}
			/* missed at the end */
			tail += c->last_n == HO_NONE ? (uint64_t)last + 1 :
				last - c->last_n;
			if (gaps)
				gaps[ng++] = c->max_gap;
		}
	}
	if (gaps)
		qsort(gaps, ng, sizeof(*gaps), cmp_u32);
	rec = SUM(reconnects);
	printf("{\"conns\":%u,\"threads\":%u,\"src_addrs\":%u,"
	       "\"ready\":%llu,\"failed\":%llu,\"setup_s\":%.2f,\"done\":%llu,"
	       "\"not_done\":%u,\"last_n\":%u,\"messages\":%llu,",
	       o.conns, nr_workers, o.src_addrs,
	       (unsigned long long)SUM(ready), (unsigned long long)SUM(failed),
	       setup_s, (unsigned long long)SUM(done), stuck, last,
	       (unsigned long long)SUM(msgs));
	printf("\"republished\":%llu,", (unsigned long long)SUM(republished));
	printf("\"lost\":%llu,\"lost_at_end\":%llu,\"dup\":%llu,"
	       "\"closes\":%llu,\"closes_1012\":%llu,\"eofs\":%llu,"
	       "\"reconnects\":%llu,\"recovered\":%llu,\"not_recovered\":%llu,"
	       "\"sub_errors\":%llu,\"epoch_changes\":%llu,\"other\":%llu,",
	       (unsigned long long)(SUM(lost) + tail),
	       (unsigned long long)tail, (unsigned long long)SUM(dup),
	       (unsigned long long)SUM(closes),
	       (unsigned long long)SUM(closes_1012),
	       (unsigned long long)SUM(eofs), (unsigned long long)rec,
	       (unsigned long long)SUM(recovered),
	       (unsigned long long)SUM(not_recovered),
	       (unsigned long long)SUM(sub_errors),
	       (unsigned long long)SUM(epoch_changes),
	       (unsigned long long)SUM(other));
	print_steps();
	printf("\"reconnect_s\":%.3f,\"reconnect_rate\":%.1f,"
	       "\"max_pause_ms\":%.1f,\"p99_pause_ms\":%.1f,"
	       "\"median_pause_ms\":%.1f,\"cpu_s\":%.2f,\"first_error\":%d}\n",
	       rec && last_rec > first_close ?
	       (double)(last_rec - first_close) / 1e9 : 0.0,
	       rec > 1 && last_rec > first_close ?
	       (double)rec * 1e9 / (double)(last_rec - first_close) : 0.0,
	       ng ? gaps[ng - 1] / 1e3 : 0.0,
	       ng ? gaps[(size_t)((double)(ng - 1) * 0.99)] / 1e3 : 0.0,
	       ng ? gaps[(ng - 1) / 2] / 1e3 : 0.0,
	       proc_cpu_s((int)getpid()), first_err);
	fflush(stdout);
	free(gaps);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: ringcast-hoload --target HOST:PORT [options]\n"
"  --conns N            connections (default 1000)\n"
"  --channel NAME       the history channel (default hb:c)\n"
"  --threads N          threads, a ring each (default: 2, or one per\n"
"                       RLIMIT_NOFILE - 256 connections if more)\n"
"  --src-addrs N        source addresses 127.0.0.2... (default: enough\n"
"                       for connect()'s fast path, twice over to reconnect)\n"
"  --window N           connects and handshakes in flight a thread (256)\n"
"  --reconnect-window N ... of reconnects (65536: in effect, no bound)\n"
"  --no-reconnect       a closed connection stays closed\n"
"  --connect-timeout S  \"ready\" is said after S s at most (300)\n"
"  --duration S         the whole run, at most (600)\n");
}

static int parse_target(const char *s)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	o.target.sin_family = AF_INET;
	o.target.sin_port = htons((uint16_t)atoi(colon + 1));
	snprintf(o.target_str, sizeof(o.target_str), "%s", s);
	return inet_pton(AF_INET, host, &o.target.sin_addr) == 1 ? 0 : -EINVAL;
}

static int parse_opts(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "target", required_argument, NULL, 't' },
		{ "conns", required_argument, NULL, 'c' },
		{ "channel", required_argument, NULL, 'C' },
		{ "threads", required_argument, NULL, 'T' },
		{ "src-addrs", required_argument, NULL, 'A' },
		{ "window", required_argument, NULL, 'w' },
		{ "reconnect-window", required_argument, NULL, 'W' },
		{ "no-reconnect", no_argument, NULL, 'R' },
		{ "connect-timeout", required_argument, NULL, 'k' },
		{ "duration", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int ch;
	bool have_target = false;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (parse_target(optarg) < 0) {
				fprintf(stderr, "ringcast-hoload: bad --target "
					"%s\n", optarg);
				return -EINVAL;
			}
			have_target = true;
			break;
		case 'c': o.conns = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'C': o.channel = optarg; break;
		case 'T': o.threads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'A': o.src_addrs = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': o.window = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'W': o.rewindow = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'R': o.reconnect = false; break;
		case 'k': o.connect_timeout = atof(optarg); break;
		case 'd': o.duration = atof(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -EINVAL;
		}
	}
	if (!have_target || !o.conns || !o.window || !o.rewindow ||
	    strlen(o.channel) > 64 || o.duration <= 0) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

/* SIGTERM, SIGINT: stop and report what was seen so far. */
static void on_stop_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&g_stop, 1, __ATOMIC_RELAXED);
}

static int start_workers(void)
{
	unsigned per, i;

	nr_workers = uload_threads(o.conns, o.threads);
	if (nr_workers > HO_MAX_THREADS || nr_workers > o.conns) {
		fprintf(stderr, "ringcast-hoload: %u threads: out of range\n",
			nr_workers);
		return -EINVAL;
	}
	/* reconnects take fresh ports while the old ones are in TIME_WAIT */
	if (!o.src_addrs)
		o.src_addrs = uload_src_addrs(o.reconnect ? 2 * o.conns :
					      o.conns);
	workers = calloc(nr_workers, sizeof(*workers));
	if (!workers)
		return -ENOMEM;
	per = (o.conns + nr_workers - 1) / nr_workers;
	pthread_barrier_init(&start_barrier, NULL, nr_workers + 1);
	for (i = 0; i < nr_workers; i++) {
		struct worker *w = &workers[i];

		w->id = i;
		w->first = i * per;
		w->n = w->first >= o.conns ? 0 :
		       o.conns - w->first < per ? o.conns - w->first : per;
		if (pthread_create(&w->tid, NULL, worker_main, w)) {
			fprintf(stderr, "ringcast-hoload: pthread_create\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&start_barrier);
	return 0;
}

int main(int argc, char **argv)
{
	char text[160];
	uint64_t t_ready = 0;
	unsigned i;
	int ret;

	if (parse_opts(argc, argv) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_stop_signal);
	signal(SIGINT, on_stop_signal);
	alarm((unsigned)o.duration + 60);	/* it ends, whatever happens */
	upgrade_len = (size_t)snprintf(upgrade_req, sizeof(upgrade_req),
		"GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: " HO_WS_KEY "\r\n"
		"Sec-WebSocket-Version: 13\r\n\r\n", o.target_str);
	snprintf(text, sizeof(text), "{\"seq\":1,\"cmd\":\"subscribe\","
		 "\"data\":{\"channels\":[\"%s\"]}}", o.channel);
	sub_len = client_frame(sub_frame, sizeof(sub_frame), text);
	g_t0 = uload_now_ns();
	g_deadline = g_t0 + (uint64_t)(o.duration * 1e9);
	ret = start_workers();
	if (ret < 0)
		return 1;
	for (;;) {	/* the set-up: until all are ready or failed */
		uint64_t r = SUM(ready), f = SUM(failed), now = uload_now_ns();

		if (r + f >= o.conns ||
		    __atomic_load_n(&g_stop, __ATOMIC_RELAXED) ||
		    now - g_t0 > (uint64_t)(o.connect_timeout * 1e9) ||
		    now > g_deadline) {
			t_ready = now;
			printf("ready %llu %llu\n", (unsigned long long)r,
			       (unsigned long long)f);
			fflush(stdout);
			break;
		}
		usleep(50000);
	}
	for (;;) {	/* the run: until every ready one is done */
		uint64_t d = SUM(done), f = SUM(dead);

		if (d + f >= o.conns || uload_now_ns() > g_deadline ||
		    __atomic_load_n(&g_stop, __ATOMIC_RELAXED))
			break;
		usleep(50000);
	}
	__atomic_store_n(&g_stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < nr_workers; i++)
		pthread_join(workers[i].tid, NULL);
	report((double)(t_ready - g_t0) / 1e9);
	return 0;
}
