/* SPDX-License-Identifier: MIT */
/*
 * ringcast-floor: what the kernel carries, for the engine to be measured
 * against (bench/README.md, "The floor"). A minimal io_uring server that
 * speaks just enough of what ringcast-bench says: the upgrade (101), a
 * subscribe (answered 200), POST /publish/... or /broadcast and GET
 * /stats on a keep-alive connection. For each publish it builds the frame
 * the engine would send and sends it to every connection, one send each:
 * no channels, no queues, no slow consumers, nothing read after the
 * subscribe. Whatever the engine spends above this is its own.
 *
 * Like the engine: --shards N threads, each pinned, with its own ring, a
 * SO_REUSEPORT listener on one port and its connections as direct
 * descriptors (so a thread holds as many as RLIMIT_NOFILE, not the
 * process). The thread that reads a publish hands the frame to the others
 * with MSG_RING. Options it does not know (those bench/run passes to any
 * engine) are skipped with their value.
 *
 * --threads T (default: one per shard) runs the shards' rings on T
 * threads instead, each waiting on all of its rings at once through one
 * more ring that polls their fds: the experiment of whether a host whose
 * fd limit needs 50 rings for a million sockets gains from 2 threads
 * rather than 50 (bench/README.md, "Fewer threads than rings").
 */
#include <poll.h>
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define F_ENTRIES	4096
#define F_HS_BUF	1024		/* an upgrade request and a subscribe */
#define F_PUB_BUF	(256 << 10)	/* the publisher's requests */
#define F_INFLIGHT	64		/* frames a thread is sending at once */

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_FRAME_SEND, OP_MSG, OP_CLOSE,
       OP_IGNORE };
enum { ST_FREE = 0, ST_HS, ST_WS, ST_PUB };

/* A frame every thread sends; freed when the last thread is done. */
struct frame {
	atomic_uint refs;		/* threads still sending it */
	uint32_t len;
	uint8_t data[];
};

struct fconn {
	uint8_t state;
	uint32_t len, cap;
	char *buf;			/* owned; NULL once a WebSocket */
};

struct fthread {
	unsigned id;
	pthread_t tid;
	struct io_uring ring;
	int listen_fd;
	unsigned nfiles;
	struct fconn *conns;		/* nfiles of them */
	struct {			/* frames in flight: sends left */
		struct frame *f;
		uint32_t left;
	} fl[F_INFLIGHT];
};

static struct fthread *threads;
static unsigned nthreads = 1;		/* shards: rings */
static unsigned nworkers;		/* threads running them; 0: one each */
static char host[64] = "127.0.0.1";
static unsigned port;

static const char resp_101[] =
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	"Connection: Upgrade\r\nSec-WebSocket-Accept: "
	"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
static const char sub_ok[] =
	"\x81\x31{\"seq\":1,\"cmd\":\"subscribe\",\"code\":200,\"msg\":\"ok\"}";
static const char pub_ok[] =
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	"Content-Length: 12\r\n\r\n{\"ok\":true}\n";
static const char stats_ok[] =
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	"Content-Length: 3\r\n\r\n{}\n";

static uint64_t ud(unsigned op, unsigned idx, unsigned slot)
{
	return (uint64_t)op << 56 | (uint64_t)idx << 32 | slot;
}

static struct io_uring_sqe *sqe_get(struct io_uring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);

	if (!sqe) {
		io_uring_submit(r);
		sqe = io_uring_get_sqe(r);
	}
	return sqe;
}

static void arm_accept(struct fthread *t)
{
	struct io_uring_sqe *sqe = sqe_get(&t->ring);

	io_uring_prep_multishot_accept_direct(sqe, t->listen_fd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, ud(OP_ACCEPT, 0, 0));
}

static void arm_recv(struct fthread *t, unsigned slot)
{
	struct fconn *c = &t->conns[slot];
	struct io_uring_sqe *sqe = sqe_get(&t->ring);

	io_uring_prep_recv(sqe, (int)slot, c->buf + c->len, c->cap - c->len, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud(OP_RECV, 0, slot));
}

static void send_static(struct fthread *t, unsigned slot, const char *p,
			size_t len)
{
	struct io_uring_sqe *sqe = sqe_get(&t->ring);

	io_uring_prep_send(sqe, (int)slot, p, len, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud(OP_SEND, 0, slot));
}

static void close_conn(struct fthread *t, unsigned slot)
{
	struct fconn *c = &t->conns[slot];
	struct io_uring_sqe *sqe = sqe_get(&t->ring);

	free(c->buf);
	memset(c, 0, sizeof(*c));
	io_uring_prep_close_direct(sqe, slot);
	io_uring_sqe_set_data64(sqe, ud(OP_CLOSE, 0, slot));
}

/* One send of @f to every WebSocket of @t: the floor's whole fan-out. */
static void fan_out(struct fthread *t, struct frame *f)
{
	unsigned idx, n = 0;

	for (idx = 0; idx < F_INFLIGHT && t->fl[idx].f; idx++)
		;
	if (idx == F_INFLIGHT) {	/* cannot happen at bench rates */
		fprintf(stderr, "ringcast-floor: %d frames in flight\n",
			F_INFLIGHT);
		exit(1);
	}
	t->fl[idx].f = f;
	for (unsigned slot = 0; slot < t->nfiles; slot++) {
		struct io_uring_sqe *sqe;

		if (t->conns[slot].state != ST_WS)
			continue;
		sqe = sqe_get(&t->ring);
		io_uring_prep_send(sqe, (int)slot, f->data, f->len,
				   MSG_NOSIGNAL);
		sqe->flags |= IOSQE_FIXED_FILE;
		io_uring_sqe_set_data64(sqe, ud(OP_FRAME_SEND, idx, slot));
		n++;
	}
	t->fl[idx].left = n;
	if (!n) {
		t->fl[idx].f = NULL;
		if (atomic_fetch_sub(&f->refs, 1) == 1)
			free(f);
	}
}

/* The frame the engine sends for @body: a channel push or a broadcast. */
static struct frame *build(const char *body, size_t blen, bool bcast)
{
	static const char chan_head[] =
		"{\"cmd\":\"push\",\"channel\":\"c0\",\"data\":";
	static const char bcast_head[] = "{\"cmd\":\"broadcast\",\"data\":";
	const char *head = bcast ? bcast_head : chan_head;
	size_t hl = strlen(head), plen = hl + blen + 1, off;
	struct frame *f = malloc(sizeof(*f) + plen + 10);

	if (!f)
		return NULL;
	f->data[0] = 0x81;
	if (plen < 126) {
		f->data[1] = (uint8_t)plen;
		off = 2;
	} else if (plen < 65536) {
		f->data[1] = 126;
		f->data[2] = (uint8_t)(plen >> 8);
		f->data[3] = (uint8_t)plen;
		off = 4;
	} else {
		f->data[1] = 127;
		for (int i = 0; i < 8; i++)
			f->data[2 + i] = (uint8_t)((uint64_t)plen >> (56 - 8 * i));
		off = 10;
	}
	memcpy(f->data + off, head, hl);
	memcpy(f->data + off + hl, body, blen);
	f->data[off + hl + blen] = '}';
	f->len = (uint32_t)(off + plen);
	atomic_init(&f->refs, nthreads);
	return f;
}

/* The publisher's requests, one at a time, as they complete. */
static void on_pub(struct fthread *t, unsigned slot)
{
	struct fconn *c = &t->conns[slot];

	for (;;) {
		char *eoh, *cl;
		size_t clen = 0, need;

		c->buf[c->len < c->cap ? c->len : c->cap - 1] = 0;
		eoh = memmem(c->buf, c->len, "\r\n\r\n", 4);
		if (!eoh)
			break;
		cl = strcasestr(c->buf, "\r\nContent-Length:");
		if (cl && cl < eoh)
			clen = strtoul(cl + 17, NULL, 10);
		need = (size_t)(eoh + 4 - c->buf) + clen;
		if (need > c->cap - 1) {
			close_conn(t, slot);
			return;
		}
		if (c->len < need)
			break;
		if (!strncmp(c->buf, "POST ", 5)) {
			struct frame *f = build(eoh + 4, clen,
				!strncmp(c->buf + 5, "/broadcast", 10));

			if (f) {
				for (unsigned i = 0; i < nthreads; i++) {
					struct io_uring_sqe *sqe;

					if (i == t->id)
						continue;
					sqe = sqe_get(&t->ring);
					io_uring_prep_msg_ring(sqe,
						threads[i].ring.ring_fd, 0,
						(uint64_t)(uintptr_t)f, 0);
					io_uring_sqe_set_data64(sqe,
						ud(OP_IGNORE, 0, 0));
				}
				fan_out(t, f);
			}
			send_static(t, slot, pub_ok, sizeof(pub_ok) - 1);
		} else {
			send_static(t, slot, stats_ok, sizeof(stats_ok) - 1);
		}
		memmove(c->buf, c->buf + need, c->len - need);
		c->len -= (uint32_t)need;
	}
	arm_recv(t, slot);
}

static void on_recv(struct fthread *t, unsigned slot, int res)
{
	struct fconn *c = &t->conns[slot];

	if (res <= 0) {
		close_conn(t, slot);
		return;
	}
	c->len += (uint32_t)res;
	if (c->state == ST_PUB) {
		on_pub(t, slot);
		return;
	}
	if (c->state == ST_HS) {
		char *eoh = memmem(c->buf, c->len, "\r\n\r\n", 4);
		size_t hl;

		if (!eoh) {
			if (c->len == c->cap)
				close_conn(t, slot);
			else
				arm_recv(t, slot);
			return;
		}
		if (strncmp(c->buf, "GET /ws", 7)) {	/* the publisher */
			char *big = realloc(c->buf, F_PUB_BUF);

			if (!big) {
				close_conn(t, slot);
				return;
			}
			c->buf = big;
			c->cap = F_PUB_BUF;
			c->state = ST_PUB;
			on_pub(t, slot);
			return;
		}
		send_static(t, slot, resp_101, sizeof(resp_101) - 1);
		hl = (size_t)(eoh + 4 - c->buf);
		memmove(c->buf, c->buf + hl, c->len - hl);
		c->len -= (uint32_t)hl;
		c->state = ST_WS;	/* broadcasts reach it from now on */
	}
	/* A subscribe, if one comes: a masked text frame, 7-bit length. */
	if (c->len < 2 || c->len < 6u + ((uint8_t)c->buf[1] & 0x7f)) {
		arm_recv(t, slot);
		return;
	}
	send_static(t, slot, sub_ok, sizeof(sub_ok) - 1);
	free(c->buf);		/* nothing more is read: the floor sends */
	c->buf = NULL;
	c->len = c->cap = 0;
}

static void on_accept(struct fthread *t, struct io_uring_cqe *cqe)
{
	if (cqe->res >= 0 && (unsigned)cqe->res < t->nfiles) {
		struct fconn *c = &t->conns[cqe->res];

		c->buf = malloc(F_HS_BUF);
		if (!c->buf) {
			close_conn(t, (unsigned)cqe->res);
		} else {
			c->cap = F_HS_BUF;
			c->len = 0;
			c->state = ST_HS;
			arm_recv(t, (unsigned)cqe->res);
		}
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_accept(t);
}

static void on_frame_sent(struct fthread *t, unsigned idx)
{
	struct frame *f = t->fl[idx].f;

	if (--t->fl[idx].left)
		return;
	t->fl[idx].f = NULL;
	if (atomic_fetch_sub(&f->refs, 1) == 1)
		free(f);
}

/* Handles every completion in @t's CQ; returns how many. */
static unsigned reap(struct fthread *t)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&t->ring, head, cqe) {
		uint64_t d = io_uring_cqe_get_data64(cqe);
		unsigned op = (unsigned)(d >> 56);
		unsigned idx = (unsigned)(d >> 32) & 0xffffff;
		unsigned slot = (unsigned)d;

		n++;
		switch (op) {
		case OP_ACCEPT:
			on_accept(t, cqe);
			break;
		case OP_RECV:
			on_recv(t, slot, cqe->res);
			break;
		case OP_FRAME_SEND:
			on_frame_sent(t, idx);
			break;
		case 0:		/* MSG_RING: another thread's frame */
			fan_out(t, (struct frame *)(uintptr_t)d);
			break;
		default:	/* sends of replies, closes */
			break;
		}
	}
	io_uring_cq_advance(&t->ring, n);
	return n;
}

static void pin(unsigned cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu % (unsigned)sysconf(_SC_NPROCESSORS_ONLN), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* One thread, one ring: as the engine's shards are. */
static void *thread_main(void *arg)
{
	struct fthread *t = arg;

	pin(t->id);
	arm_accept(t);
	for (;;) {
		if (io_uring_submit_and_wait(&t->ring, 1) < 0 && errno != EINTR)
			break;
		reap(t);
	}
	return NULL;
}

/*
 * One thread, the rings @w, @w + nworkers, ...: it submits and reaps each,
 * and sleeps on a ring of its own that polls theirs (a ring's fd is
 * readable while its CQ holds completions). The polls are multishot and
 * armed before the last look at each CQ, so no wake-up is lost.
 */
static void *worker_main(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg;
	struct io_uring waiter;
	struct io_uring_cqe *cqe;

	pin(w);
	if (io_uring_queue_init(256, &waiter, 0) < 0)
		return NULL;
	for (unsigned i = w; i < nthreads; i += nworkers) {
		struct io_uring_sqe *sqe = sqe_get(&waiter);

		io_uring_prep_poll_multishot(sqe, threads[i].ring.ring_fd, POLLIN);
		io_uring_sqe_set_data64(sqe, i);
		arm_accept(&threads[i]);
	}
	for (;;) {
		unsigned busy = 0, head, n = 0;

		for (unsigned i = w; i < nthreads; i += nworkers) {
			io_uring_submit(&threads[i].ring);
			busy += reap(&threads[i]);
		}
		if (busy)
			continue;
		if (io_uring_submit_and_wait(&waiter, 1) < 0 && errno != EINTR)
			break;
		io_uring_for_each_cqe(&waiter, head, cqe) {
			n++;
			if (!(cqe->flags & IORING_CQE_F_MORE)) {	/* re-arm */
				struct io_uring_sqe *sqe = sqe_get(&waiter);
				unsigned i = (unsigned)io_uring_cqe_get_data64(cqe);

				io_uring_prep_poll_multishot(sqe,
					threads[i].ring.ring_fd, POLLIN);
				io_uring_sqe_set_data64(sqe, i);
			}
		}
		io_uring_cq_advance(&waiter, n);
	}
	return NULL;
}

static int setup(struct fthread *t, unsigned id, unsigned nfiles)
{
	struct io_uring_params p = { 0 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int one = 1, ret;

	t->id = id;
	t->nfiles = nfiles;
	t->conns = calloc(nfiles, sizeof(*t->conns));
	if (!t->conns)
		return -ENOMEM;
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
	p.cq_entries = F_ENTRIES * 4;
	ret = io_uring_queue_init_params(F_ENTRIES, &t->ring, &p);
	if (ret < 0)
		return ret;
	ret = io_uring_register_files_sparse(&t->ring, nfiles);
	if (ret < 0)
		return ret;
	t->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (t->listen_fd < 0)
		return -errno;
	setsockopt(t->listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	setsockopt(t->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	sa.sin_port = htons((uint16_t)port);
	if (bind(t->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(t->listen_fd, 65535) < 0)
		return -errno;
	if (!port) {		/* the first picks; the others share it */
		getsockname(t->listen_fd, (struct sockaddr *)&sa, &sl);
		port = ntohs(sa.sin_port);
	}
	return 0;
}

static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	unsigned nfiles;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("usage: ringcast-floor [--listen HOST:PORT] "
			       "[--shards N] [--threads T] (other options are "
			       "ignored)\n");
			return 0;
		}
		if (!v || strncmp(argv[i], "--", 2))
			continue;
		if (!strcmp(argv[i], "--listen")) {
			const char *colon = strrchr(v, ':');

			if (!colon || (size_t)(colon - v) >= sizeof(host)) {
				fprintf(stderr, "ringcast-floor: bad --listen "
					"%s\n", v);
				return 2;
			}
			memcpy(host, v, (size_t)(colon - v));
			host[colon - v] = 0;
			port = (unsigned)atoi(colon + 1);
		} else if (!strcmp(argv[i], "--shards")) {
			nthreads = (unsigned)atoi(v);
			if (!nthreads)
				nthreads = 1;
		} else if (!strcmp(argv[i], "--threads")) {
			nworkers = (unsigned)atoi(v);
		}
		i++;		/* every option here takes a value */
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	nfiles = rl.rlim_cur > 1048576 ? 1048576 : (unsigned)rl.rlim_cur;
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	threads = calloc(nthreads, sizeof(*threads));
	if (!threads)
		return 1;
	for (unsigned i = 0; i < nthreads; i++) {
		int ret = setup(&threads[i], i, nfiles);

		if (ret < 0) {
			fprintf(stderr, "ringcast-floor: thread %u: %s\n", i,
				strerror(-ret));
			return 1;
		}
	}
	if (nworkers >= nthreads)
		nworkers = 0;
	if (!nworkers) {
		for (unsigned i = 0; i < nthreads; i++)
			pthread_create(&threads[i].tid, NULL, thread_main,
				       &threads[i]);
	} else {
		for (unsigned w = 0; w < nworkers; w++)
			pthread_create(&threads[w].tid, NULL, worker_main,
				       (void *)(uintptr_t)w);
	}
	fprintf(stderr, "ringcast-floor: listening on %s:%u (%u rings on %u "
		"threads, %u connections each)\n", host, port, nthreads,
		nworkers ? nworkers : nthreads, nfiles);
	for (unsigned i = 0; i < (nworkers ? nworkers : nthreads); i++)
		pthread_join(threads[i].tid, NULL);
	return 0;
}
