/* SPDX-License-Identifier: MIT */
/*
 * ringcast-tlsload: a small epoll load generator that speaks ws:// or, with
 * --tls, wss:// (OpenSSL, one SSL* per client connection, certificates not
 * verified: the bench makes its own). It answers the three questions of
 * bench/tls about TLS in the engine: memory per idle connection (--mode
 * hold: open, upgrade, subscribe, say READY, hold until SIGTERM),
 * handshakes per server CPU-second (--mode handshake: N connections, at
 * most --window at once, each closed as soon as its TLS handshake, or with
 * --upgrade its 101, is done) and fan-out deliveries per server CPU-second
 * (--mode fanout: N subscribers of c0, bursts published over one more
 * keep-alive connection, HTTP or HTTPS). The server's CPU is utime+stime of
 * /proc/--server-pid/stat; only the server is measured, never this process.
 * One JSON object (hold: one READY line first) goes to stdout. Every loop
 * is bounded by --duration; an alarm() ends the process 30 s after it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT	24	/* linux/in.h; glibc 2.36 lacks it */
#endif

#define MAX_SIZES	4
#define RD_BUF		16384

enum mode { M_HOLD, M_HANDSHAKE, M_FANOUT };
enum st { S_CONNECT, S_TLS, S_SEND_UP, S_HS, S_SEND_SUB, S_SUB, S_READY,
	  S_SHUT, S_DONE, S_DEAD };

struct conn {
	int fd;
	SSL *ssl;			/* NULL for ws:// */
	enum st st;
	const char *out;		/* bytes still to write */
	size_t out_len;
	unsigned hs_match;		/* \r\n\r\n matched so far */
	char pre[64];			/* first bytes of a message or response */
	unsigned pre_len;
	uint8_t hdr[10];		/* frame header being read */
	unsigned hdr_len, hdr_need;
	uint64_t remain;		/* payload bytes left in this frame */
	uint8_t op;
	bool in_payload;
};

static struct {
	struct sockaddr_in dst, src;
	bool have_src, tls, upgrade;
	enum mode mode;
	unsigned conns, window, burst, nsizes, rate;
	unsigned sizes[MAX_SIZES];
	int server_pid;
	double duration, drain;
} o = { .conns = 1000, .window = 100, .burst = 100, .duration = 300,
	.drain = 30 };

static SSL_CTX *ctx;
static int ep;
static struct conn *conns;		/* indexed by fd */
static int max_fd;
static unsigned opened, ready, failed, done, inflight;
static uint64_t delivered;		/* text frames after the subscribe ack */
static volatile sig_atomic_t stop;
static double t_end;
static char upgrade_req[256], sub_frame[96];
static size_t upgrade_len, sub_len;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void conn_end(struct conn *c, bool ok)
{
	if (c->st == S_READY)
		ready--;
	else
		inflight--;
	if (c->ssl)
		SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->st = ok ? S_DONE : S_DEAD;
	if (ok)
		done++;
	else
		failed++;
}

static int open_one(void)
{
	struct conn *c;
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (fd >= max_fd) {
		close(fd);
		return -EMFILE;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o.have_src) {
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&o.src, sizeof(o.src)) < 0)
			goto err;
	}
	if (connect(fd, (struct sockaddr *)&o.dst, sizeof(o.dst)) < 0 &&
	    errno != EINPROGRESS)
		goto err;
	c = &conns[fd];
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->st = S_CONNECT;
	if (o.tls) {
		c->ssl = SSL_new(ctx);
		if (!c->ssl || !SSL_set_fd(c->ssl, fd))
			goto err;
		SSL_set_tlsext_host_name(c->ssl, "localhost");
	}
	{
		struct epoll_event ev = {
			.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
			.data.fd = fd,
		};

		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			goto err;
	}
	opened++;
	inflight++;
	return 0;
err:
	{
		int e = -errno;

		if (conns[fd].ssl)
			SSL_free(conns[fd].ssl);
		conns[fd].ssl = NULL;
		close(fd);
		return e ? e : -EIO;
	}
}

/* Whether a failed SSL call on a non-blocking socket only has to wait. */
static bool ssl_again(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);

	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Writes c->out; 1 when all went, 0 to wait for EPOLLOUT, -1 on error. */
static int do_write(struct conn *c)
{
	while (c->out_len) {
		ssize_t n;

		if (c->ssl) {
			int r = SSL_write(c->ssl, c->out, (int)c->out_len);

			if (r <= 0)
				return ssl_again(c->ssl, r) ? 0 : -1;
			n = r;
		} else {
			n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
			if (n < 0)
				return errno == EAGAIN ? 0 : -1;
		}
		c->out += n;
		c->out_len -= (size_t)n;
	}
	return 1;
}

static void set_out(struct conn *c, const char *p, size_t len, enum st st)
{
	c->out = p;
	c->out_len = len;
	c->st = st;
}

/* A whole frame (text or other) has arrived; pre[] holds its first bytes. */
static void on_frame(struct conn *c)
{
	if (c->op == 0x8) {
		conn_end(c, false);
		return;
	}
	if (c->op != 0x1)
		return;
	if (c->st == S_SUB) {
		if (!memmem(c->pre, c->pre_len, "\"code\":200", 10)) {
			conn_end(c, false);
			return;
		}
		c->st = S_READY;
		ready++;
		inflight--;
		return;
	}
	__atomic_add_fetch(&delivered, 1, __ATOMIC_RELAXED);
}

/* Feeds received plaintext through the 101 and frame parsers. */
static void feed(struct conn *c, const uint8_t *d, size_t len)
{
	while (len && c->st != S_DEAD && c->st != S_DONE) {
		if (c->st == S_HS) {
			static const char crlf2[] = "\r\n\r\n";
			char ch = (char)*d++;

			len--;
			if (c->pre_len < sizeof(c->pre))
				c->pre[c->pre_len++] = ch;
			c->hs_match = ch == crlf2[c->hs_match] ? c->hs_match + 1 :
				      ch == '\r';
			if (c->hs_match < 4)
				continue;
			if (c->pre_len < 12 || memcmp(c->pre, "HTTP/1.1 101", 12)) {
				conn_end(c, false);
				return;
			}
			c->pre_len = 0;
			if (o.mode == M_HANDSHAKE) {
				conn_end(c, true);
				return;
			}
			set_out(c, sub_frame, sub_len, S_SEND_SUB);
			return;	/* the caller writes, then reads on */
		}
		if (!c->in_payload) {
			c->hdr[c->hdr_len++] = *d++;
			len--;
			if (c->hdr_len == 2) {
				unsigned l7 = c->hdr[1] & 0x7f;

				c->hdr_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
			}
			if (c->hdr_len < 2 || c->hdr_len < c->hdr_need)
				continue;
			c->remain = c->hdr[1] & 0x7f;
			if (c->remain == 126) {
				c->remain = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
			} else if (c->remain == 127) {
				unsigned i;

				c->remain = 0;
				for (i = 2; i < 10; i++)
					c->remain = c->remain << 8 | c->hdr[i];
			}
			c->op = c->hdr[0] & 0x0f;
			c->hdr_len = 0;
			c->pre_len = 0;
			c->in_payload = true;
		} else {
			size_t k = len < c->remain ? len : (size_t)c->remain;
			size_t keep = sizeof(c->pre) - c->pre_len;

			keep = keep > k ? k : keep;
			memcpy(c->pre + c->pre_len, d, keep);
			c->pre_len += (unsigned)keep;
			c->remain -= k;
			d += k;
			len -= k;
		}
		if (c->in_payload && !c->remain) {
			c->in_payload = false;
			on_frame(c);
		}
	}
}

/* Reads until the socket is empty; 0, or -1 on EOF or error. */
static int do_read(struct conn *c)
{
	static uint8_t buf[RD_BUF];

	for (;;) {
		ssize_t n;

		if (c->ssl) {
			int r = SSL_read(c->ssl, buf, sizeof(buf));

			if (r <= 0)
				return ssl_again(c->ssl, r) ? 0 : -1;
			n = r;
		} else {
			n = recv(c->fd, buf, sizeof(buf), 0);
			if (n == 0)
				return -1;
			if (n < 0)
				return errno == EAGAIN ? 0 : -1;
		}
		feed(c, buf, (size_t)n);
		if (c->st != S_HS && c->st != S_SUB && c->st != S_READY)
			return 0;
	}
}

/* Drives one connection as far as it can go without blocking. */
static void step(struct conn *c)
{
	for (unsigned guard = 0; guard < 16; guard++) {
		int r, err = 0;
		socklen_t el = sizeof(err);

		switch (c->st) {
		case S_CONNECT:
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
				conn_end(c, false);
				return;
			}
			if (c->ssl)
				c->st = S_TLS;
			else
				set_out(c, upgrade_req, upgrade_len, S_SEND_UP);
			break;
		case S_TLS:
			r = SSL_connect(c->ssl);
			if (r != 1) {
				if (!ssl_again(c->ssl, r))
					conn_end(c, false);
				return;
			}
			if (o.mode == M_HANDSHAKE && !o.upgrade) {
				/* close_notify, then wait for the server's close */
				SSL_shutdown(c->ssl);
				c->st = S_SHUT;
				break;
			}
			set_out(c, upgrade_req, upgrade_len, S_SEND_UP);
			break;
		case S_SEND_UP:
		case S_SEND_SUB:
			r = do_write(c);
			if (r < 0)
				conn_end(c, false);
			if (r <= 0)
				return;
			c->st = c->st == S_SEND_UP ? S_HS : S_SUB;
			break;
		case S_HS:
		case S_SUB:
		case S_READY:
			if (do_read(c) < 0) {
				conn_end(c, false);
				return;
			}
			if (c->st != S_SEND_SUB)
				return;
			break;
		case S_SHUT: {
			char b[256];

			r = SSL_read(c->ssl, b, sizeof(b));
			if (r > 0)
				break;
			if (ssl_again(c->ssl, r))
				return;
			conn_end(c, true);	/* close_notify or EOF: served */
			return;
		}
		default:
			return;
		}
	}
}

/* One epoll round, at most @ms long. */
static void poll_once(int ms)
{
	struct epoll_event ev[512];
	int n = epoll_wait(ep, ev, 512, ms), i;

	for (i = 0; i < n; i++)
		step(&conns[ev[i].data.fd]);
}

/* Opens connections, at most --window setting up at once, until @want
 * were opened, all settled, or the deadline passed. */
static void open_all(unsigned want)
{
	double stall = now_s() + 20;

	while (!stop && now_s() < t_end && now_s() < stall) {
		unsigned before = done + ready + failed;

		while (opened < want && inflight < o.window) {
			int r = open_one();

			if (r < 0) {
				fprintf(stderr, "tlsload: open: %s\n", strerror(-r));
				failed++;
				opened++;
			}
		}
		if (opened >= want && !inflight)
			return;
		poll_once(100);
		if (done + ready + failed != before)
			stall = now_s() + 20;	/* progress: 20 s more */
	}
}

/* --- fan-out: the publisher runs on its own blocking connection --- */

struct pub {
	int fd;
	SSL *ssl;
};

static int pub_io(struct pub *p, void *buf, size_t len, bool wr)
{
	if (p->ssl)
		return wr ? SSL_write(p->ssl, buf, (int)len) : SSL_read(p->ssl, buf, (int)len);
	return (int)(wr ? send(p->fd, buf, len, MSG_NOSIGNAL) : recv(p->fd, buf, len, 0));
}

static int pub_open(struct pub *p)
{
	int one = 1;

	p->ssl = NULL;
	p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&o.dst, sizeof(o.dst)) < 0)
		return -errno;
	setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!o.tls)
		return 0;
	p->ssl = SSL_new(ctx);
	if (!p->ssl || !SSL_set_fd(p->ssl, p->fd) || SSL_connect(p->ssl) != 1)
		return -EPROTO;
	return 0;
}

/* One POST /publish/c0 with @body; 0 when the answer is 2xx. */
static int pub_one(struct pub *p, const char *body, size_t len)
{
	char req[256], resp[1024];
	size_t got = 0;
	int h = snprintf(req, sizeof(req), "POST /publish/c0 HTTP/1.1\r\n"
			 "Host: localhost\r\nContent-Length: %zu\r\n\r\n", len);

	if (pub_io(p, req, (size_t)h, true) != h ||
	    pub_io(p, (void *)body, len, true) != (int)len)
		return -EIO;
	/* The answer is small: read until its headers and body are in. */
	while (got < sizeof(resp) - 1) {
		int n = pub_io(p, resp + got, sizeof(resp) - 1 - got, false);
		char *e, *cl;

		if (n <= 0)
			return -EIO;
		got += (size_t)n;
		resp[got] = 0;
		e = strstr(resp, "\r\n\r\n");
		if (!e)
			continue;
		cl = strcasestr(resp, "content-length:");
		if (!cl || (size_t)(e + 4 - resp) + strtoul(cl + 15, NULL, 10) <= got)
			return strncmp(resp + 9, "2", 1) ? -EPROTO : 0;
	}
	return -E2BIG;
}

struct burst {
	struct pub *p;
	unsigned size;
	int err;
	unsigned sent;
	uint64_t t0_ns;			/* CLOCK_MONOTONIC at the start */
};

static void *pub_burst(void *arg)
{
	struct burst *b = arg;
	char *body = malloc(b->size + 1);
	unsigned i;

	if (!body) {
		b->err = -ENOMEM;
		return NULL;
	}
	/* A JSON object of exactly b->size bytes: {"p":"xxx...x"} */
	memset(body, 'x', b->size);
	memcpy(body, "{\"p\":\"", 6);
	memcpy(body + b->size - 2, "\"}", 2);
	for (i = 0; i < o.burst && !stop; i++) {
		if (o.rate) {
			/* Absolute pacing: a slow answer delays, never bunches. */
			struct timespec ts;
			uint64_t ns = b->t0_ns + (uint64_t)i * 1000000000ULL / o.rate;

			ts.tv_sec = (time_t)(ns / 1000000000ULL);
			ts.tv_nsec = (long)(ns % 1000000000ULL);
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		}
		b->err = pub_one(b->p, body, b->size);
		if (b->err)
			break;
		b->sent++;
	}
	free(body);
	return NULL;
}

static int run_fanout(void)
{
	struct pub p;
	unsigned k;
	int r = pub_open(&p);

	if (r < 0) {
		fprintf(stderr, "tlsload: publisher: %s\n", strerror(-r));
		return 1;
	}
	open_all(o.conns);
	printf("{\"mode\":\"fanout\",\"tls\":%s,\"conns\":%u,\"ready\":%u,\"failed\":%u,"
	       "\"burst\":%u,\"rate\":%u,\"phases\":[", o.tls ? "true" : "false", o.conns,
	       ready, failed, o.burst, o.rate);
	for (k = 0; k < o.nsizes; k++) {
		struct burst b = { .p = &p, .size = o.sizes[k] };
		uint64_t d0 = __atomic_load_n(&delivered, __ATOMIC_RELAXED), want;
		double c0 = proc_cpu_s(o.server_pid), t0 = now_s(), t1, c1, dl;
		pthread_t th;

		b.t0_ns = (uint64_t)(t0 * 1e9);
		pthread_create(&th, NULL, pub_burst, &b);
		want = (uint64_t)o.burst * ready;
		dl = now_s() + o.drain;
		while (!stop && now_s() < dl && now_s() < t_end &&
		       delivered - d0 < want)
			poll_once(20);
		pthread_join(th, NULL);
		/* Wait for the last deliveries of the burst actually sent. */
		want = (uint64_t)b.sent * ready;
		while (!stop && now_s() < dl && delivered - d0 < want)
			poll_once(20);
		t1 = now_s();
		c1 = proc_cpu_s(o.server_pid);
		printf("%s{\"size\":%u,\"published\":%u,\"expected\":%" PRIu64
		       ",\"delivered\":%" PRIu64 ",\"seconds\":%.4f,\"server_cpu_s\":%.3f,"
		       "\"deliveries_per_cpu_s\":%.0f,\"publish_error\":%d}",
		       k ? "," : "", b.size, b.sent, want, delivered - d0, t1 - t0,
		       c1 - c0, c1 > c0 ? (double)(delivered - d0) / (c1 - c0) : 0.0,
		       b.err);
		fflush(stdout);
		/* Settle: let the engine finish before the next phase's reading. */
		for (double s = now_s() + 0.5; now_s() < s;)
			poll_once(50);
	}
	printf("]}\n");
	return 0;
}

static int run_handshake(void)
{
	double c0 = proc_cpu_s(o.server_pid), t0 = now_s(), c1, t1;

	open_all(o.conns);
	t1 = now_s();
	/* The server may still be closing the last one: let it finish. */
	usleep(200 * 1000);
	c1 = proc_cpu_s(o.server_pid);
	printf("{\"mode\":\"handshake\",\"tls\":%s,\"upgrade\":%s,\"conns\":%u,"
	       "\"done\":%u,\"failed\":%u,\"seconds\":%.3f,\"server_cpu_s\":%.3f,"
	       "\"per_cpu_s\":%.1f,\"server_us_each\":%.1f}\n",
	       o.tls ? "true" : "false", o.upgrade ? "true" : "false", o.conns,
	       done, failed, t1 - t0, c1 - c0,
	       c1 > c0 ? done / (c1 - c0) : 0.0,
	       done ? (c1 - c0) * 1e6 / done : 0.0);
	return failed ? 1 : 0;
}

static int run_hold(void)
{
	open_all(o.conns);
	printf("READY {\"ready\":%u,\"failed\":%u}\n", ready, failed);
	fflush(stdout);
	while (!stop && now_s() < t_end)
		poll_once(200);
	printf("{\"mode\":\"hold\",\"ready_at_end\":%u,\"failed\":%u,\"messages\":%"
	       PRIu64 "}\n", ready, failed, delivered);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: ringcast-tlsload --target HOST:PORT [options]\n"
"  --tls                wss:// / https:// (OpenSSL, TLS 1.3, the server's\n"
"                       certificate is not verified: the bench made it)\n"
"  --mode MODE          hold (default), handshake or fanout\n"
"  --conns N            connections (default 1000)\n"
"  --window W           connections setting up at once (default 100)\n"
"  --src ADDR           bind to this loopback source address (each has\n"
"                       its own ephemeral ports)\n"
"  --server-pid PID     the server whose utime+stime is measured\n"
"  --upgrade            handshake mode: also upgrade to WebSocket (101)\n"
"                       before closing; without it the client sends\n"
"                       close_notify after the TLS handshake and waits\n"
"                       for the server's close (works with openssl s_server)\n"
"  --burst B            fanout: publishes per size (default 100)\n"
"  --rate R             fanout: R publishes a second (default 0: back to\n"
"                       back, each waiting for the answer to the one before)\n"
"  --sizes LIST         fanout: message sizes in bytes (default 64,1024)\n"
"  --drain S            fanout: seconds to wait for one burst (default 30)\n"
"  --duration S         everything stops after S seconds (default 300)\n"
"hold prints READY {...} once the connections are up, then holds them\n"
"until SIGTERM or --duration; the others print one JSON object.\n");
}

static int parse_addr(struct sockaddr_in *a, const char *s, bool port)
{
	char host[64];
	const char *colon = port ? strrchr(s, ':') : NULL;
	size_t hl = colon ? (size_t)(colon - s) : strlen(s);

	if ((port && !colon) || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = 0;
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	if (port)
		a->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -EINVAL;
}

static int parse_opts(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "target", 1, 0, 't' }, { "tls", 0, 0, 'T' }, { "mode", 1, 0, 'm' },
		{ "conns", 1, 0, 'n' }, { "window", 1, 0, 'w' }, { "src", 1, 0, 's' },
		{ "server-pid", 1, 0, 'p' }, { "upgrade", 0, 0, 'u' },
		{ "burst", 1, 0, 'b' }, { "rate", 1, 0, 'r' },
		{ "sizes", 1, 0, 'z' }, { "drain", 1, 0, 'd' },
		{ "duration", 1, 0, 'D' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	bool target = false;
	int c;

	o.sizes[0] = 64;
	o.sizes[1] = 1024;
	o.nsizes = 2;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_addr(&o.dst, optarg, true) < 0)
				return -EINVAL;
			target = true;
			break;
		case 'T': o.tls = true; break;
		case 'm':
			if (!strcmp(optarg, "hold"))
				o.mode = M_HOLD;
			else if (!strcmp(optarg, "handshake"))
				o.mode = M_HANDSHAKE;
			else if (!strcmp(optarg, "fanout"))
				o.mode = M_FANOUT;
			else
				return -EINVAL;
			break;
		case 'n': o.conns = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': o.window = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's':
			if (parse_addr(&o.src, optarg, false) < 0)
				return -EINVAL;
			o.have_src = true;
			break;
		case 'p': o.server_pid = atoi(optarg); break;
		case 'u': o.upgrade = true; break;
		case 'b': o.burst = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': o.rate = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'z': {
			char *p = optarg, *e;

			for (o.nsizes = 0; *p && o.nsizes < MAX_SIZES; p = *e ? e + 1 : e) {
				o.sizes[o.nsizes] = (unsigned)strtoul(p, &e, 10);
				if (e == p || o.sizes[o.nsizes] < 8)
					return -EINVAL;
				o.nsizes++;
			}
			break;
		}
		case 'd': o.drain = atof(optarg); break;
		case 'D': o.duration = atof(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: return -EINVAL;
		}
	}
	if (!target || !o.window || !o.conns || optind != argc)
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	int n;

	if (parse_opts(argc, argv) < 0) {
		usage(stderr);
		return 2;
	}
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	max_fd = (int)rl.rlim_cur;
	if (o.conns + 64 > (unsigned)max_fd && o.mode != M_HANDSHAKE) {
		fprintf(stderr, "tlsload: %u connections do not fit %d fds: run "
			"several processes\n", o.conns, max_fd);
		return 2;
	}
	conns = calloc((size_t)max_fd, sizeof(*conns));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!conns || ep < 0)
		return 1;
	if (o.tls) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (!ctx)
			return 1;
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		/* The client side is not measured, but 60k of them must fit. */
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	}
	upgrade_len = (size_t)snprintf(upgrade_req, sizeof(upgrade_req),
		"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 13\r\n\r\n");
	n = snprintf(sub_frame + 6, sizeof(sub_frame) - 6,
		     "{\"seq\":1,\"cmd\":\"subscribe\",\"data\":{\"channels\":[\"c0\"]}}");
	/* FIN + text, masked with an all-zero key: the XOR changes nothing. */
	sub_frame[0] = (char)0x81;
	sub_frame[1] = (char)(0x80 | n);
	memset(sub_frame + 2, 0, 4);
	sub_len = 6 + (size_t)n;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	t_end = now_s() + o.duration;
	alarm((unsigned)o.duration + 30);
	switch (o.mode) {
	case M_HANDSHAKE: return run_handshake();
	case M_FANOUT: return run_fanout();
	default: return run_hold();
	}
}
