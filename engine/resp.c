/* SPDX-License-Identifier: MIT */
/*
 * resp.c: one RESP link to Redis through a ring. Reads and writes are
 * ring operations on an ordinary socket; replies are parsed with
 * hiredis's redisReader and commands formatted with
 * redisFormatCommandArgv (hiredis's own I/O is not used). A link that
 * fails is torn down at once (its socket shut down, and closed once no
 * operation names it) and tried again after a backoff that doubles
 * up to ENG_RESP_BACKOFF_MAX, with jitter so that a fleet of nodes does
 * not reconnect in step.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "resp.h"
#include "ud.h"

static void say_hello(struct eng_resp *l);

uint64_t eng_resp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int eng_resp_init(struct eng_resp *l, struct ring *ring,
		  const struct eng_resp_cfg *cfg,
		  const struct eng_resp_ops *ops, void *arg)
{
	memset(l, 0, sizeof(*l));
	l->cfg = *cfg;
	l->ring = ring;
	l->ops = ops;
	l->arg = arg;
	l->fd = -1;
	l->backoff = ENG_RESP_BACKOFF_MIN;
	l->rbuf = malloc(ENG_RESP_RBUF);
	return l->rbuf ? 0 : -ENOMEM;
}

/* The old socket's operations still owed (struct eng_resp's old_ops). */
#define RESP_OLD_RECV	1u
#define RESP_OLD_SEND	2u

/* Closes the old socket and frees its send's bytes. */
static void old_close(struct eng_resp *l)
{
	close(l->old_fd);
	free(l->old_out);
	l->old_out = NULL;
	l->old_ops = 0;
}

/*
 * Shuts the socket down and frees the buffers: the link is down, quietly.
 * The socket is closed now only if nothing is in flight on it; else on
 * its last completion (old_done()).
 */
static void reset(struct eng_resp *l)
{
	if (l->fd >= 0) {
		/*
		 * Ends the recv and send in flight, and fails at once those
		 * queued but not yet submitted; their CQEs are stale.
		 */
		shutdown(l->fd, SHUT_RDWR);
		if (l->recv_armed || l->send_armed) {
			/* a new attempt waits for this one's end: one old */
			l->old_fd = l->fd;
			l->old_gen = l->gen;
			l->old_ops = (l->recv_armed ? RESP_OLD_RECV : 0) |
				     (l->send_armed ? RESP_OLD_SEND : 0);
			/* the kernel reads l->out until the SEND's CQE */
			l->old_out = NULL;
			if (l->send_armed) {
				l->old_out = l->out;
				l->out = NULL;
			}
		} else {
			close(l->fd);
		}
	}
	l->fd = -1;
	l->gen++;
	l->state = ENG_RESP_DOWN;
	l->expect = 0;
	l->ping = false;
	l->loading = l->again = false;
	l->hello_at = 0;
	l->recv_armed = l->send_armed = false;
	free(l->out);
	free(l->next);
	l->out = l->next = NULL;
	l->olen = l->osent = l->nlen = l->ncap = 0;
	if (l->reader)
		redisReaderFree(l->reader);
	l->reader = NULL;
}

void eng_resp_exit(struct eng_resp *l)
{
	reset(l);
	if (l->old_ops)		/* the ring is gone: nothing comes back */
		old_close(l);
	free(l->rbuf);
	l->rbuf = NULL;
}

static void schedule_retry(struct eng_resp *l)
{
	unsigned jitter = 0;
	uint64_t now = eng_resp_now_ms();

	if (getrandom(&jitter, sizeof(jitter), GRND_NONBLOCK) < 0)
		jitter = (unsigned)now;
	/* full jitter within [backoff/2, backoff] spreads a node fleet */
	l->retry_at = now + l->backoff / 2 + jitter % (l->backoff / 2 + 1);
	l->backoff = l->backoff * 2 > ENG_RESP_BACKOFF_MAX ?
		     ENG_RESP_BACKOFF_MAX : l->backoff * 2;
}

static void down(struct eng_resp *l, int err, const char *why)
{
	bool was_up = l->state == ENG_RESP_READY ||
		      l->state == ENG_RESP_HELLO;

	reset(l);
	schedule_retry(l);
	l->ops->down(l, l->arg, was_up, err, why);
}

void eng_resp_down(struct eng_resp *l, int err, const char *what)
{
	char why[160];

	if (l->state == ENG_RESP_DOWN)
		return;
	snprintf(why, sizeof(why), "redis %s %s: %s", l->cfg.role, what,
		 err ? strerror(-err) : "closed by server");
	down(l, err ? err : -ECONNRESET, why);
}

/* Our deadline passed (not the kernel's): say so, and which. */
static void timed_out(struct eng_resp *l, const char *what)
{
	char why[160];

	snprintf(why, sizeof(why), "redis %s %s: no answer within %u ms "
		 "(--redis-timeout)", l->cfg.role, what, l->cfg.timeout_ms);
	down(l, -ETIMEDOUT, why);
}

/* An attempt failed before it had a socket worth closing. */
static void start_failed(struct eng_resp *l, int err, const char *why)
{
	schedule_retry(l);
	l->ops->down(l, l->arg, false, err, why);
}

static void arm_recv(struct eng_resp *l)
{
	if (l->recv_armed || l->fd < 0)
		return;
	if (ring_fd_recv(l->ring, l->fd, l->rbuf, ENG_RESP_RBUF,
			 ring_ud(l->cfg.op_recv, l->cfg.idx, l->gen)) < 0) {
		eng_resp_down(l, -EBUSY, "submit");
		return;
	}
	l->recv_armed = true;
}

void eng_resp_flush(struct eng_resp *l)
{
	if (l->send_armed || l->fd < 0 || l->state < ENG_RESP_HELLO)
		return;
	if (l->osent == l->olen) {
		/* All sent: what was queued behind goes out now. */
		free(l->out);
		l->out = NULL;
		l->olen = l->osent = 0;
		if (!l->nlen)
			return;	/* a burst's buffer is not kept while idle */
		l->out = l->next;
		l->olen = l->nlen;
		l->osent = 0;
		l->next = NULL;
		l->nlen = l->ncap = 0;
	}
	/* the kernel reads l->out until this SEND's CQE */
	if (ring_fd_send(l->ring, l->fd, l->out + l->osent,
			 l->olen - l->osent,
			 ring_ud(l->cfg.op_send, l->cfg.idx, l->gen)) < 0) {
		eng_resp_down(l, -EBUSY, "submit");
		return;
	}
	l->send_armed = true;
	l->last_io = eng_resp_now_ms();
}

/* Appends @n bytes owing @replies replies. */
static int put(struct eng_resp *l, const char *cmd, size_t n,
	       unsigned replies)
{
	if (l->nlen + n > l->ncap) {
		size_t cap = l->ncap ? l->ncap : 4096;
		char *nb;

		while (cap < l->nlen + n)
			cap *= 2;
		nb = realloc(l->next, cap);
		if (!nb)
			return -ENOMEM;
		l->next = nb;
		l->ncap = cap;
	}
	memcpy(l->next + l->nlen, cmd, n);
	l->nlen += n;
	/* progress is measured from now when nothing was owed before */
	if (!l->expect)
		l->since = eng_resp_now_ms();
	l->expect += replies;
	return 0;
}

int eng_resp_put_raw(struct eng_resp *l, const char *cmd, size_t n)
{
	return put(l, cmd, n, 1);
}

/*
 * (UN)SUBSCRIBE and their sharded forms answer once per channel (an
 * error, once for the command: the bridge sends one channel per sharded
 * command); everything else once.
 */
static unsigned replies_of(int argc, const char **argv, const size_t *lens)
{
	static const char *const per_channel[] = {
		"SUBSCRIBE", "UNSUBSCRIBE", "SSUBSCRIBE", "SUNSUBSCRIBE",
	};

	for (size_t i = 0; i < sizeof(per_channel) / sizeof(*per_channel); i++)
		if (lens[0] == strlen(per_channel[i]) &&
		    !strncasecmp(argv[0], per_channel[i], lens[0]))
			return (unsigned)(argc - 1);
	return 1;
}

int eng_resp_put_cmd(struct eng_resp *l, int argc, const char **argv,
		     const size_t *lens)
{
	char *cmd;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens), ret;

	if (n < 0)
		return -ENOMEM;
	ret = put(l, cmd, (size_t)n, replies_of(argc, argv, lens));
	free(cmd);
	return ret;
}

static void start_connect(struct eng_resp *l)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char port[8], why[320];
	int ret, one = 1;

	snprintf(port, sizeof(port), "%u", l->cfg.port);
	ret = getaddrinfo(l->cfg.host, port, &hints, &ai);
	if (ret) {
		/* no host named: this may end up on an open /healthz */
		snprintf(why, sizeof(why), "redis: cannot resolve the host: %s",
			 gai_strerror(ret));
		start_failed(l, -EHOSTUNREACH, why);
		return;
	}
	l->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		freeaddrinfo(ai);
		snprintf(why, sizeof(why), "redis: socket: %s",
			 strerror(errno));
		start_failed(l, -errno, why);
		return;
	}
	setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(l->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	/* connect reads the address at submission: the copy may go after */
	if (ring_fd_connect(l->ring, l->fd, ai->ai_addr, ai->ai_addrlen,
			    ring_ud(l->cfg.op_connect, l->cfg.idx,
				    l->gen + 1)) < 0) {
		freeaddrinfo(ai);
		close(l->fd);
		l->fd = -1;
		schedule_retry(l);
		return;
	}
	l->gen++;
	l->state = ENG_RESP_CONNECTING;
	l->since = eng_resp_now_ms();
	freeaddrinfo(ai);
}

/* @then may be later than a @now the caller read before it. */
static uint64_t since_ms(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

/* A Redis that stopped answering is down, like one that closed. */
static void watch(struct eng_resp *l, uint64_t now)
{
	unsigned t = l->cfg.timeout_ms;

	if (!t || l->state == ENG_RESP_DOWN)
		return;
	if (l->state != ENG_RESP_READY) {
		/* between hellos to a loading Redis, nothing is owed */
		if (l->hello_at)
			return;
		if (since_ms(now, l->since) > t)
			timed_out(l, l->state == ENG_RESP_CONNECTING ?
				  "connect" : "hello");
		return;
	}
	if (l->expect) {
		if (since_ms(now, l->since) > t)
			timed_out(l, "request");
		return;
	}
	/* Idle: a PING tells a frozen Redis from a quiet one. */
	if (since_ms(now, l->last_io) > t / 2 &&
	    eng_resp_put_cmd(l, 1, (const char *[]){ "PING" },
			     (size_t[]){ 4 }) == 0) {
		l->ping = true;
		eng_resp_flush(l);
	}
}

bool eng_resp_poll(struct eng_resp *l, uint64_t now_ms)
{
	bool again = l->retry_at != 0;

	watch(l, now_ms);
	if (l->state == ENG_RESP_HELLO && l->hello_at &&
	    now_ms >= l->hello_at) {
		l->hello_at = 0;
		say_hello(l);
		return false;
	}
	/* the last socket first: its recv buffer is l->rbuf too */
	if (l->state != ENG_RESP_DOWN || now_ms < l->retry_at || l->old_ops)
		return false;
	start_connect(l);
	return again;
}

static void ready(struct eng_resp *l)
{
	l->state = ENG_RESP_READY;
	l->loading = false;
	l->backoff = ENG_RESP_BACKOFF_MIN;
	l->ops->ready(l, l->arg);
}

/*
 * The hello: AUTH and SELECT when asked, then a PING; said once connected
 * and again while Redis answers -LOADING.
 */
static void say_hello(struct eng_resp *l)
{
	l->hello = 0;
	if (l->cfg.password[0]) {
		const char *argv[3] = { "AUTH", l->cfg.user, l->cfg.password };
		size_t lens[3] = { 4, strlen(l->cfg.user),
				   strlen(l->cfg.password) };

		/* AUTH USER PASSWORD for Redis 6 ACLs, else AUTH PASSWORD */
		if (l->cfg.user[0])
			eng_resp_put_cmd(l, 3, argv, lens);
		else
			eng_resp_put_cmd(l, 2, (const char *[]){ "AUTH",
					 l->cfg.password },
					 (size_t[]){ 4, lens[2] });
		l->hello++;
	}
	if (l->cfg.db) {
		char db[16];
		int n = snprintf(db, sizeof(db), "%u", l->cfg.db);

		eng_resp_put_cmd(l, 2, (const char *[]){ "SELECT", db },
				 (size_t[]){ 6, (size_t)n });
		l->hello++;
	}
	/*
	 * A PING last: a Redis that accepts connections but answers nothing
	 * (stopped, or its accept queue taken by the kernel) is not ready.
	 */
	eng_resp_put_cmd(l, 1, (const char *[]){ "PING" }, (size_t[]){ 4 });
	l->hello++;
	eng_resp_flush(l);
}

/* Connected: say hello before anything else goes. */
static void on_connected(struct eng_resp *l)
{
	l->reader = redisReaderCreate();
	if (!l->reader) {
		eng_resp_down(l, -ENOMEM, "reader");
		return;
	}
	l->state = ENG_RESP_HELLO;
	l->since = l->last_io = eng_resp_now_ms();
	arm_recv(l);
	say_hello(l);
}

/* A pub/sub message: pushed by Redis, not the answer to anything. */
static bool is_push(const redisReply *rep)
{
	const redisReply *k;

	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
		return false;
	k = rep->element[0];
	return k->type == REDIS_REPLY_STRING &&
	       ((k->len == 7 && !memcmp(k->str, "message", 7)) ||
		(k->len == 8 && (!memcmp(k->str, "pmessage", 8) ||
				 !memcmp(k->str, "smessage", 8))));
}

/* PING's answer: +PONG, or ["pong", ""] on a subscribed link. */
static bool is_pong(const redisReply *rep)
{
	const redisReply *k = rep;

	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2)
		k = rep->element[0];
	return (k->type == REDIS_REPLY_STATUS ||
		k->type == REDIS_REPLY_STRING) && k->len == 4 &&
	       !strncasecmp(k->str, "pong", 4);
}

static void on_reply(struct eng_resp *l, redisReply *rep)
{
	if (!is_push(rep) && l->expect) {
		/* an answer: progress, measured from here on */
		l->expect--;
		l->since = eng_resp_now_ms();
		/*
		 * Our PING's, nobody else's; not a cluster's SUNSUBSCRIBE of
		 * its own accord, which owes nothing but looks like a reply.
		 */
		if (l->ping && l->state == ENG_RESP_READY && is_pong(rep)) {
			l->ping = false;
			return;
		}
	}
	if (l->state != ENG_RESP_HELLO) {
		l->ops->reply(l, l->arg, rep);
		return;
	}
	if (rep->type == REDIS_REPLY_ERROR && rep->len >= 8 &&
	    !memcmp(rep->str, "LOADING ", 8)) {
		/*
		 * Up but reading its dataset back, which may take minutes:
		 * not refused, only not ready. The link stays; the rest of
		 * this hello is read, then it is said again.
		 */
		if (!l->loading)
			l->ops->loading(l, l->arg);
		l->loading = l->again = true;
	} else if (rep->type == REDIS_REPLY_ERROR) {
		l->ops->refused(l, l->arg, rep->str);
		eng_resp_down(l, -EACCES, "hello");
		return;
	}
	if (--l->hello)
		return;
	if (l->again) {
		l->again = false;
		l->hello_at = eng_resp_now_ms() + ENG_RESP_LOADING_MS;
		return;
	}
	ready(l);
}

static void on_recv(struct eng_resp *l, int res)
{
	void *rep;

	l->recv_armed = false;
	if (res <= 0) {
		eng_resp_down(l, res, "read");
		return;
	}
	l->last_io = eng_resp_now_ms();
	if (redisReaderFeed(l->reader, l->rbuf, (size_t)res) != REDIS_OK) {
		eng_resp_down(l, -ENOMEM, "reader");
		return;
	}
	for (;;) {
		if (redisReaderGetReply(l->reader, &rep) != REDIS_OK) {
			eng_resp_down(l, -EPROTO, l->reader->errstr);
			return;
		}
		if (!rep)
			break;
		on_reply(l, rep);
		freeReplyObject(rep);
		if (l->state == ENG_RESP_DOWN)
			return;
	}
	arm_recv(l);
}

static void on_send(struct eng_resp *l, int res)
{
	l->send_armed = false;
	if (res < 0) {
		eng_resp_down(l, res, "write");
		return;
	}
	l->osent += (size_t)res;
	eng_resp_flush(l);
}

/* A completion of the old socket's: the last one closes it. */
static void old_done(struct eng_resp *l, unsigned op)
{
	if (op == l->cfg.op_recv)
		l->old_ops &= ~RESP_OLD_RECV;
	else if (op == l->cfg.op_send)
		l->old_ops &= ~RESP_OLD_SEND;
	else
		return;
	if (!l->old_ops)
		old_close(l);
}

void eng_resp_on_cqe(struct eng_resp *l, unsigned op, uint32_t gen, int res)
{
	if (gen != l->gen) {
		/* an earlier attempt's */
		if (l->old_ops && gen == l->old_gen)
			old_done(l, op);
		return;
	}
	if (op == l->cfg.op_connect) {
		if (res < 0)
			eng_resp_down(l, res, "connect");
		else
			on_connected(l);
	} else if (op == l->cfg.op_recv) {
		on_recv(l, res);
	} else if (op == l->cfg.op_send) {
		on_send(l, res);
	}
}
