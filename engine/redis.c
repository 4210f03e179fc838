/* SPDX-License-Identifier: MIT */
/*
 * redis.c: the Redis bridge, one thread with its own io_uring ring. It
 * owns two connections to Redis: the subscriber, which SUBSCRIBEs to the
 * channels this node has subscribers for and turns every message into the
 * same encode-once push frame the embedded broker makes, handed to the
 * channel's owner shard exactly as a local publish is; and the publisher,
 * which PUBLISHes what clients of this node publish and reports how many
 * nodes received it. Reads and writes go through the ring; RESP is parsed
 * with hiredis's redisReader and commands formatted with
 * redisFormatCommandArgv (hiredis's own I/O is not used).
 *
 * Interest comes from the owner shards: a channel whose first subscriber
 * on this node appears is SUBSCRIBEd, its last leaving UNSUBSCRIBEs, both
 * batched per loop turn. The owner's acknowledgement waits for Redis to
 * confirm the SUBSCRIBE, so a message published after a client's
 * subscribe reply reaches it. When Redis goes away the bridge reconnects
 * with capped exponential backoff and jitter and subscribes again; the
 * engine keeps serving its clients meanwhile and /healthz says 503.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "eng.h"
#include "ud.h"

#define R_RBUF		65536		/* bytes per recv */
#define R_BACKOFF_MIN	100		/* ms */
#define R_BACKOFF_MAX	5000		/* ms */
#define R_BATCH		512		/* channels per (UN)SUBSCRIBE */
#define R_TICK_MS	100

enum { R_SUB = 0, R_PUB = 1 };
enum { R_DOWN = 0, R_CONNECTING, R_HELLO, R_READY };

/* One Redis connection. */
struct rconn {
	const char *role;		/* "subscriber", "publisher" */
	int fd;				/* -1 while down */
	uint32_t gen;			/* per attempt: stale CQEs are dropped */
	int state;			/* R_* */
	unsigned hello;			/* AUTH/SELECT replies still owed */
	redisReader *reader;
	char *rbuf;			/* R_RBUF bytes, one recv in flight */
	bool recv_armed;
	bool send_armed;
	char *out;			/* bytes in flight */
	size_t olen, osent;
	char *next;			/* bytes queued behind them */
	size_t nlen, ncap;
	unsigned backoff;		/* ms before the next attempt */
	uint64_t retry_at;		/* ms, CLOCK_MONOTONIC */
	struct eng_rpub *fifo_head;	/* publisher: PUBLISHes awaiting */
	struct eng_rpub *fifo_tail;
};

/* A Redis channel this node wants (or has just stopped wanting). */
struct rchan {
	struct rchan *next;
	uint8_t desired;		/* some shard has subscribers */
	uint8_t requested;		/* SUBSCRIBE sent on this connection */
	uint8_t ack;			/* the owner waits for confirmation */
	uint8_t dirty;			/* listed in dirty[] */
	uint16_t owner;			/* shard to acknowledge */
	uint16_t len;
	uint64_t hash;
	char name[];
};

struct eng_redis {
	struct eng *eng;		/* borrowed */
	struct ring ring;
	pthread_t thread;
	bool up;
	bool stopping;
	struct rconn c[2];
	struct rchan **buckets;
	size_t nbuckets, count;
	struct rchan **dirty;
	size_t ndirty, dcap;
	struct json_parser *json;
	char all[128];			/* <prefix>all */
	size_t all_len;
	pthread_mutex_t lock;		/* guards reason only */
	char reason[512];		/* why unhealthy, "" when healthy */
	atomic_uint_fast64_t reconnects;
	atomic_uint_fast64_t messages;	/* message pushes received */
	atomic_uint_fast64_t rejected;	/* not UTF-8, bad name */
	atomic_uint_fast64_t publishes;
	atomic_int healthy;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void set_reason(struct eng_redis *r, const char *fmt, const char *a,
		       const char *b)
{
	pthread_mutex_lock(&r->lock);
	snprintf(r->reason, sizeof(r->reason), fmt, a, b);
	pthread_mutex_unlock(&r->lock);
}

static void update_health(struct eng_redis *r)
{
	int ok = r->c[R_SUB].state == R_READY && r->c[R_PUB].state == R_READY;

	if (ok) {
		pthread_mutex_lock(&r->lock);
		r->reason[0] = '\0';
		pthread_mutex_unlock(&r->lock);
	}
	atomic_store_explicit(&r->healthy, ok, memory_order_release);
}

bool eng_redis_healthy(struct eng_redis *r, char *why, size_t len)
{
	if (atomic_load_explicit(&r->healthy, memory_order_acquire))
		return true;
	pthread_mutex_lock(&r->lock);
	snprintf(why, len, "%s", r->reason[0] ? r->reason : "connecting");
	pthread_mutex_unlock(&r->lock);
	return false;
}

size_t eng_redis_stats(struct eng_redis *r, char *out, size_t cap)
{
	return (size_t)snprintf(out, cap,
		"{\"up\":%s,\"reconnects\":%llu,\"messages\":%llu,"
		"\"rejected\":%llu,\"publishes\":%llu,\"channels\":%zu}",
		atomic_load(&r->healthy) ? "true" : "false",
		(unsigned long long)atomic_load(&r->reconnects),
		(unsigned long long)atomic_load(&r->messages),
		(unsigned long long)atomic_load(&r->rejected),
		(unsigned long long)atomic_load(&r->publishes),
		r->count);
}

/* ---- the channel table -------------------------------------------------- */

static struct rchan *rchan_find(struct eng_redis *r, const char *name,
				size_t len, uint64_t hash)
{
	struct rchan *ch = r->buckets[hash & (r->nbuckets - 1)];

	for (; ch; ch = ch->next)
		if (ch->hash == hash && ch->len == len &&
		    !memcmp(ch->name, name, len))
			return ch;
	return NULL;
}

static void rchan_grow(struct eng_redis *r)
{
	size_t n = r->nbuckets * 2;
	struct rchan **b = calloc(n, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct rchan *ch = r->buckets[i];

		while (ch) {
			struct rchan *next = ch->next;

			ch->next = b[ch->hash & (n - 1)];
			b[ch->hash & (n - 1)] = ch;
			ch = next;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = n;
}

static struct rchan *rchan_get(struct eng_redis *r, const char *name,
			       size_t len)
{
	uint64_t hash = eng_chan_hash(name, len);
	struct rchan *ch = rchan_find(r, name, len, hash);

	if (ch)
		return ch;
	ch = calloc(1, sizeof(*ch) + len);
	if (!ch)
		return NULL;
	ch->hash = hash;
	ch->len = (uint16_t)len;
	memcpy(ch->name, name, len);
	if (r->count >= r->nbuckets)
		rchan_grow(r);
	ch->next = r->buckets[hash & (r->nbuckets - 1)];
	r->buckets[hash & (r->nbuckets - 1)] = ch;
	r->count++;
	return ch;
}

static void rchan_free(struct eng_redis *r, struct rchan *ch)
{
	struct rchan **pp = &r->buckets[ch->hash & (r->nbuckets - 1)];

	while (*pp != ch)
		pp = &(*pp)->next;
	*pp = ch->next;
	r->count--;
	free(ch);
}

static void mark_dirty(struct eng_redis *r, struct rchan *ch)
{
	if (ch->dirty)
		return;
	if (r->ndirty == r->dcap) {
		size_t cap = r->dcap ? r->dcap * 2 : 256;
		struct rchan **d = realloc(r->dirty, cap * sizeof(*d));

		if (!d)
			return;	/* picked up at the next reconnect */
		r->dirty = d;
		r->dcap = cap;
	}
	ch->dirty = 1;
	r->dirty[r->ndirty++] = ch;
}

/* ---- output ------------------------------------------------------------- */

static void conn_down(struct eng_redis *r, struct rconn *c, int err,
		      const char *what);

static void arm_send(struct eng_redis *r, struct rconn *c, unsigned idx)
{
	struct io_uring_sqe *sqe;

	if (c->send_armed || c->fd < 0 || c->state < R_HELLO)
		return;
	if (c->osent == c->olen) {
		/* All sent: what was queued behind goes out now. */
		if (!c->nlen)
			return;
		free(c->out);
		c->out = c->next;
		c->olen = c->nlen;
		c->osent = 0;
		c->next = NULL;
		c->nlen = c->ncap = 0;
	}
	sqe = ring_sqe(&r->ring);
	if (!sqe) {
		conn_down(r, c, -EBUSY, "submit");
		return;
	}
	/* the kernel reads c->out until this SEND's CQE */
	io_uring_prep_send(sqe, c->fd, c->out + c->osent, c->olen - c->osent,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ring_ud(ENG_OP_R_SEND, idx, c->gen));
	c->send_armed = true;
}

/* Appends a formatted command; sent after what is in flight. */
static int put_cmd(struct rconn *c, int argc, const char **argv,
		   const size_t *lens)
{
	char *cmd;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (n < 0)
		return -ENOMEM;
	if (c->nlen + (size_t)n > c->ncap) {
		size_t cap = c->ncap ? c->ncap : 4096;
		char *nb;

		while (cap < c->nlen + (size_t)n)
			cap *= 2;
		nb = realloc(c->next, cap);
		if (!nb) {
			free(cmd);
			return -ENOMEM;
		}
		c->next = nb;
		c->ncap = cap;
	}
	memcpy(c->next + c->nlen, cmd, (size_t)n);
	c->nlen += (size_t)n;
	free(cmd);
	return 0;
}

/* ---- acknowledgements back to the shards ------------------------------- */

static void post(struct eng_redis *r, unsigned shard, unsigned op, void *p)
{
	struct eng_shard *s = &r->eng->shards[shard];

	if (ring_mbox_post(&r->ring, ring_fd(&s->ring), ring_ud_ptr(op, p), 0,
			   ring_ud_ptr(op | ENG_OP_FAILED, p)) < 0)
		fprintf(stderr, "ringcast: redis: mailbox full, %s lost\n",
			op == ENG_OP_R_PUB_ACK ? "publish reply" : "ack");
}

static void ack_sub(struct eng_redis *r, struct rchan *ch)
{
	struct eng_rsub *m;

	if (!ch->ack)
		return;
	ch->ack = 0;
	m = malloc(sizeof(*m) + ch->len);
	if (!m)
		return;
	m->from = ch->owner;
	m->add = 1;
	m->len = ch->len;
	memcpy(m->name, ch->name, ch->len);
	post(r, ch->owner, ENG_OP_R_SUB_ACK, m);
}

static void ack_pub(struct eng_redis *r, struct eng_rpub *p, long long n)
{
	p->result = n;
	post(r, p->from, ENG_OP_R_PUB_ACK, p);
}

/* ---- connection life ----------------------------------------------------- */

static void schedule_retry(struct rconn *c)
{
	unsigned jitter = 0;

	if (getrandom(&jitter, sizeof(jitter), GRND_NONBLOCK) < 0)
		jitter = (unsigned)now_ms();
	/* full jitter within [backoff/2, backoff] spreads a node fleet */
	c->retry_at = now_ms() + c->backoff / 2 + jitter % (c->backoff / 2 + 1);
	c->backoff = c->backoff * 2 > R_BACKOFF_MAX ? R_BACKOFF_MAX
						    : c->backoff * 2;
}

static void conn_down(struct eng_redis *r, struct rconn *c, int err,
		      const char *what)
{
	char msg[96];

	if (c->state == R_DOWN)
		return;
	snprintf(msg, sizeof(msg), "%s: %s", what,
		 err ? strerror(-err) : "closed by server");
	if (c->state == R_READY || c->state == R_HELLO)
		fprintf(stderr, "ringcast: redis %s lost (%s); reconnecting\n",
			c->role, msg);
	set_reason(r, "redis %s %s", c->role, msg);
	if (c->fd >= 0) {
		/* Cancels the recv and send on it; their CQEs are stale. */
		shutdown(c->fd, SHUT_RDWR);
		close(c->fd);
	}
	c->fd = -1;
	c->gen++;
	c->state = R_DOWN;
	c->recv_armed = c->send_armed = false;
	free(c->out);
	free(c->next);
	c->out = c->next = NULL;
	c->olen = c->osent = c->nlen = c->ncap = 0;
	if (c->reader)
		redisReaderFree(c->reader);
	c->reader = NULL;
	/* Publishes in flight: their fate is unknown, so they failed. */
	while (c->fifo_head) {
		struct eng_rpub *p = c->fifo_head;

		c->fifo_head = p->next;
		ack_pub(r, p, -ECONNRESET);
	}
	c->fifo_tail = NULL;
	if (c == &r->c[R_SUB]) {
		/* Everything must be subscribed again on the next link. */
		for (size_t i = 0; i < r->nbuckets; i++)
			for (struct rchan *ch = r->buckets[i]; ch; ch = ch->next)
				ch->requested = 0;
	}
	update_health(r);
	schedule_retry(c);
}

static void arm_recv(struct eng_redis *r, struct rconn *c, unsigned idx)
{
	struct io_uring_sqe *sqe;

	if (c->recv_armed || c->fd < 0)
		return;
	sqe = ring_sqe(&r->ring);
	if (!sqe) {
		conn_down(r, c, -EBUSY, "submit");
		return;
	}
	io_uring_prep_recv(sqe, c->fd, c->rbuf, R_RBUF, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(ENG_OP_R_RECV, idx, c->gen));
	c->recv_armed = true;
}

static void start_connect(struct eng_redis *r, struct rconn *c, unsigned idx)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	struct io_uring_sqe *sqe;
	char port[8];
	int ret, one = 1;

	snprintf(port, sizeof(port), "%u", cfg->redis_port);
	ret = getaddrinfo(cfg->redis_host, port, &hints, &ai);
	if (ret) {
		set_reason(r, "redis: cannot resolve %s: %s", cfg->redis_host,
			   gai_strerror(ret));
		schedule_retry(c);
		return;
	}
	c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		freeaddrinfo(ai);
		set_reason(r, "redis: socket: %s%s", strerror(errno), "");
		schedule_retry(c);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	sqe = ring_sqe(&r->ring);
	if (!sqe) {
		freeaddrinfo(ai);
		close(c->fd);
		c->fd = -1;
		schedule_retry(c);
		return;
	}
	c->gen++;
	c->state = R_CONNECTING;
	/* connect reads the address at submission: the copy may go after */
	io_uring_prep_connect(sqe, c->fd, ai->ai_addr, ai->ai_addrlen);
	io_uring_sqe_set_data64(sqe, ring_ud(ENG_OP_R_CONNECT, idx, c->gen));
	io_uring_submit(&r->ring.uring);
	freeaddrinfo(ai);
}

/* Connected: say hello (AUTH, SELECT), then the role's own start. */
static void on_connected(struct eng_redis *r, struct rconn *c, unsigned idx)
{
	const struct eng_cfg *cfg = &r->eng->cfg;

	c->reader = redisReaderCreate();
	if (!c->reader) {
		conn_down(r, c, -ENOMEM, "reader");
		return;
	}
	c->state = R_HELLO;
	c->hello = 0;
	if (cfg->redis_password[0]) {
		const char *argv[3] = { "AUTH", cfg->redis_user,
					cfg->redis_password };
		size_t lens[3] = { 4, strlen(cfg->redis_user),
				   strlen(cfg->redis_password) };

		if (cfg->redis_user[0])
			put_cmd(c, 3, argv, lens);
		else
			put_cmd(c, 2, (const char *[]){ "AUTH",
				cfg->redis_password },
				(size_t[]){ 4, lens[2] });
		c->hello++;
	}
	if (cfg->redis_db && idx == R_PUB) {
		char db[16];
		int n = snprintf(db, sizeof(db), "%u", cfg->redis_db);

		put_cmd(c, 2, (const char *[]){ "SELECT", db },
			(size_t[]){ 6, (size_t)n });
		c->hello++;
	}
	if (!c->hello) {
		c->state = R_READY;
		c->backoff = R_BACKOFF_MIN;
	}
	if (c->state == R_READY && idx == R_SUB) {
		/* resubscribe everything: mark it all dirty */
		for (size_t i = 0; i < r->nbuckets; i++)
			for (struct rchan *ch = r->buckets[i]; ch; ch = ch->next)
				if (ch->desired)
					mark_dirty(r, ch);
	}
	arm_recv(r, c, idx);
	arm_send(r, c, idx);
	update_health(r);
}

/* ---- replies ------------------------------------------------------------ */

static bool str_eq(const redisReply *e, const char *lit)
{
	size_t n = strlen(lit);

	return e->type == REDIS_REPLY_STRING && e->len == n &&
	       !memcmp(e->str, lit, n);
}

/* A pub/sub message: becomes a push frame for the channel's owner. */
static void on_message(struct eng_redis *r, const redisReply *chan,
		       const redisReply *payload)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	size_t plen = strlen(cfg->redis_prefix);
	const char *name = NULL;
	size_t nlen = 0;
	struct eng_buf *f;
	bool json, user = false;

	if (chan->len == r->all_len && !memcmp(chan->str, r->all, r->all_len)) {
		name = NULL;
	} else if (chan->len > plen + 3 && !memcmp(chan->str, cfg->redis_prefix,
						   plen) &&
		   !memcmp(chan->str + plen, "ch:", 3)) {
		name = chan->str + plen + 3;
		nlen = chan->len - plen - 3;
		if (!eng_chan_name_ok(name, nlen))
			goto reject;
	} else if (chan->len > plen + 5 && !memcmp(chan->str, cfg->redis_prefix,
						   plen) &&
		   !memcmp(chan->str + plen, "user:", 5)) {
		name = chan->str + plen + 5;
		nlen = chan->len - plen - 5;
		user = true;
		if (!eng_chan_name_ok(name, nlen))
			goto reject;
	} else {
		goto reject;
	}
	if (payload->type != REDIS_REPLY_STRING ||
	    payload->len > cfg->max_message)
		goto reject;
	json = json_valid(r->json, payload->str, payload->len);
	if (!json && !json_utf8_valid(payload->str, payload->len))
		goto reject;	/* a text frame cannot carry it */
	if (user)
		f = eng_pub_user_frame(name, nlen, (const uint8_t *)payload->str,
				       payload->len, json);
	else
		f = eng_pub_frame(name, nlen, (const uint8_t *)payload->str,
				  payload->len, json);
	if (!f)
		goto reject;
	atomic_fetch_add_explicit(&r->messages, 1, memory_order_relaxed);
	eng_pub_inject(r->eng, &r->ring, f);
	return;
reject:
	atomic_fetch_add_explicit(&r->rejected, 1, memory_order_relaxed);
}

static void on_reply(struct eng_redis *r, struct rconn *c, unsigned idx,
		     redisReply *rep)
{
	if (c->state == R_HELLO) {
		if (rep->type == REDIS_REPLY_ERROR) {
			fprintf(stderr, "ringcast: redis %s: %.*s\n", c->role,
				(int)rep->len, rep->str);
			set_reason(r, "redis %s: %s", c->role, rep->str);
			conn_down(r, c, -EACCES, "hello");
			return;
		}
		if (--c->hello)
			return;
		c->state = R_READY;
		c->backoff = R_BACKOFF_MIN;
		if (idx == R_SUB)
			for (size_t i = 0; i < r->nbuckets; i++)
				for (struct rchan *ch = r->buckets[i]; ch;
				     ch = ch->next)
					if (ch->desired)
						mark_dirty(r, ch);
		update_health(r);
		return;
	}
	if (idx == R_PUB) {
		struct eng_rpub *p = c->fifo_head;

		if (!p)
			return;
		c->fifo_head = p->next;
		if (!c->fifo_head)
			c->fifo_tail = NULL;
		ack_pub(r, p, rep->type == REDIS_REPLY_INTEGER ? rep->integer
							       : -EIO);
		return;
	}
	/* Subscriber: message, subscribe and unsubscribe confirmations. */
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
		return;
	if (str_eq(rep->element[0], "message")) {
		on_message(r, rep->element[1], rep->element[2]);
	} else if (str_eq(rep->element[0], "subscribe")) {
		const redisReply *e = rep->element[1];
		struct rchan *ch = e->type == REDIS_REPLY_STRING ?
			rchan_find(r, e->str, e->len,
				   eng_chan_hash(e->str, e->len)) : NULL;

		if (ch)
			ack_sub(r, ch);
	}
}

static void on_recv(struct eng_redis *r, struct rconn *c, unsigned idx,
		    int res)
{
	void *rep;

	c->recv_armed = false;
	if (res <= 0) {
		conn_down(r, c, res, "read");
		return;
	}
	if (redisReaderFeed(c->reader, c->rbuf, (size_t)res) != REDIS_OK) {
		conn_down(r, c, -ENOMEM, "reader");
		return;
	}
	for (;;) {
		if (redisReaderGetReply(c->reader, &rep) != REDIS_OK) {
			conn_down(r, c, -EPROTO, c->reader->errstr);
			return;
		}
		if (!rep)
			break;
		on_reply(r, c, idx, rep);
		freeReplyObject(rep);
		if (c->state == R_DOWN)
			return;
	}
	arm_recv(r, c, idx);
}

/* ---- batching ------------------------------------------------------------ */

/* Sends one (UN)SUBSCRIBE per R_BATCH channels that changed. */
static void flush_interest(struct eng_redis *r)
{
	struct rconn *c = &r->c[R_SUB];
	const char *argv[R_BATCH + 1];
	size_t lens[R_BATCH + 1];
	int pass;

	for (pass = 0; pass < 2; pass++) {
		bool sub = pass == 0;
		int n = 1;

		argv[0] = sub ? "SUBSCRIBE" : "UNSUBSCRIBE";
		lens[0] = strlen(argv[0]);
		for (size_t i = 0; i < r->ndirty; i++) {
			struct rchan *ch = r->dirty[i];

			if (c->state != R_READY)
				break;
			if (sub != !!ch->desired || ch->requested == ch->desired)
				continue;
			argv[n] = ch->name;
			lens[n] = ch->len;
			ch->requested = ch->desired;
			if (++n == R_BATCH + 1) {
				put_cmd(c, n, argv, lens);
				n = 1;
			}
		}
		if (n > 1)
			put_cmd(c, n, argv, lens);
	}
	for (size_t i = 0; i < r->ndirty; i++) {
		struct rchan *ch = r->dirty[i];

		ch->dirty = 0;
		/* While Redis is down an owner must not wait: ack at once. */
		if (c->state != R_READY)
			ack_sub(r, ch);
		if (!ch->desired && !ch->requested && !ch->ack)
			rchan_free(r, ch);
	}
	r->ndirty = 0;
	arm_send(r, c, R_SUB);
}

/* ---- mail from the shards --------------------------------------------- */

static void on_sub_mail(struct eng_redis *r, struct eng_rsub *m)
{
	struct rchan *ch = rchan_get(r, m->name, m->len);

	if (ch) {
		ch->desired = m->add;
		ch->owner = m->from;
		if (m->add)
			ch->ack = 1;
		mark_dirty(r, ch);
	}
	free(m);
}

static void on_pub_mail(struct eng_redis *r, struct eng_rpub *p)
{
	struct rconn *c = &r->c[R_PUB];
	const char *argv[3] = { "PUBLISH", p->data, p->data + p->nlen };
	size_t lens[3] = { 7, p->nlen, p->plen };

	if (c->state != R_READY || put_cmd(c, 3, argv, lens) < 0) {
		ack_pub(r, p, -ENOTCONN);
		return;
	}
	atomic_fetch_add_explicit(&r->publishes, 1, memory_order_relaxed);
	p->next = NULL;
	if (c->fifo_tail)
		c->fifo_tail->next = p;
	else
		c->fifo_head = p;
	c->fifo_tail = p;
	arm_send(r, c, R_PUB);
}

/* ---- the loop ------------------------------------------------------------ */

static void on_send(struct eng_redis *r, struct rconn *c, unsigned idx,
		    int res)
{
	c->send_armed = false;
	if (res < 0) {
		conn_down(r, c, res, "write");
		return;
	}
	c->osent += (size_t)res;
	arm_send(r, c, idx);
}

static void arm_tick(struct eng_redis *r)
{
	static struct __kernel_timespec ts = {
		.tv_sec = 0, .tv_nsec = R_TICK_MS * 1000000L,
	};
	struct io_uring_sqe *sqe = ring_sqe(&r->ring);

	if (!sqe)
		return;
	io_uring_prep_timeout(sqe, &ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(ENG_OP_TIMER, 0, 0));
}

static void on_tick(struct eng_redis *r)
{
	uint64_t now = now_ms();

	for (unsigned i = 0; i < 2; i++) {
		struct rconn *c = &r->c[i];

		if (c->state == R_DOWN && now >= c->retry_at) {
			if (c->retry_at)
				atomic_fetch_add_explicit(&r->reconnects, 1,
							  memory_order_relaxed);
			start_connect(r, c, i);
		}
	}
	arm_tick(r);
}

static void dispatch(struct eng_redis *r, struct io_uring_cqe *cqe)
{
	unsigned op = ring_ud_op(cqe->user_data);
	unsigned idx = ring_ud_slot(cqe->user_data) & 1;
	struct rconn *c = &r->c[idx];
	bool stale = c->gen != ring_ud_gen(cqe->user_data);

	switch (op) {
	case ENG_OP_R_CONNECT:
		if (stale)
			break;
		if (cqe->res < 0)
			conn_down(r, c, cqe->res, "connect");
		else
			on_connected(r, c, idx);
		break;
	case ENG_OP_R_RECV:
		if (!stale)
			on_recv(r, c, idx, cqe->res);
		break;
	case ENG_OP_R_SEND:
		if (!stale)
			on_send(r, c, idx, cqe->res);
		break;
	case ENG_OP_TIMER:
		on_tick(r);
		break;
	case ENG_OP_R_SUBSCRIBE:
		on_sub_mail(r, ring_ud_to_ptr(cqe->user_data));
		break;
	case ENG_OP_R_PUBLISH:
		on_pub_mail(r, ring_ud_to_ptr(cqe->user_data));
		break;
	case ENG_OP_STOP:
		r->stopping = true;
		break;
	default:
		if (op & ENG_OP_FAILED)	/* our post to a shard failed */
			free(ring_ud_to_ptr(cqe->user_data));
		break;
	}
}

static void *bridge_main(void *arg)
{
	struct eng_redis *r = arg;
	struct io_uring *u = &r->ring.uring;

	arm_tick(r);
	start_connect(r, &r->c[R_SUB], R_SUB);
	start_connect(r, &r->c[R_PUB], R_PUB);
	while (!r->stopping) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int ret = io_uring_submit_and_wait(u, 1);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			fprintf(stderr, "ringcast: redis: submit: %s\n",
				strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(u, head, cqe) {
			dispatch(r, cqe);
			seen++;
		}
		io_uring_cq_advance(u, seen);
		if (r->ndirty)
			flush_interest(r);
	}
	for (unsigned i = 0; i < 2; i++)
		conn_down(r, &r->c[i], 0, "stopping");
	return NULL;
}

/* ---- set-up ------------------------------------------------------------- */

/*
 * Sets the bridge up before the shards start, so that interest they post
 * from their first client on waits in its ring; eng_redis_run() starts
 * the thread. The ring has no SINGLE_ISSUER: main creates it, the bridge
 * thread submits to it.
 */
int eng_redis_init(struct eng *e)
{
	struct eng_redis *r = calloc(1, sizeof(*r));
	struct rchan *all;
	int ret = -ENOMEM;

	if (!r)
		return -ENOMEM;
	r->eng = e;
	pthread_mutex_init(&r->lock, NULL);
	snprintf(r->reason, sizeof(r->reason), "redis: connecting to %s:%u",
		 e->cfg.redis_host, e->cfg.redis_port);
	r->all_len = (size_t)snprintf(r->all, sizeof(r->all), "%sall",
				      e->cfg.redis_prefix);
	r->nbuckets = 64;
	r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
	r->json = json_parser_new(e->cfg.max_message);
	for (unsigned i = 0; i < 2; i++) {
		r->c[i].fd = -1;
		r->c[i].role = i == R_SUB ? "subscriber" : "publisher";
		r->c[i].backoff = R_BACKOFF_MIN;
		r->c[i].rbuf = malloc(R_RBUF);
	}
	if (!r->buckets || !r->json || !r->c[0].rbuf || !r->c[1].rbuf)
		goto err;
	/* Broadcasts: every node with clients wants them, always. */
	all = rchan_get(r, r->all, r->all_len);
	if (!all)
		goto err;
	all->desired = 1;
	ret = ring_init(&r->ring, 256, 0, 0);
	if (ret < 0)
		goto err;
	e->redis = r;
	return 0;
err:
	json_parser_free(r->json);
	free(r->buckets);
	free(r->c[0].rbuf);
	free(r->c[1].rbuf);
	free(r);
	return ret;
}

int eng_redis_run(struct eng *e)
{
	struct eng_redis *r = e->redis;
	int ret = pthread_create(&r->thread, NULL, bridge_main, r);

	if (ret)
		return -ret;
	r->up = true;
	return 0;
}

void eng_redis_stop(struct eng *e, struct ring *from)
{
	struct eng_redis *r = e->redis;

	if (!r || !r->up)
		return;
	ring_mbox_post(from, ring_fd(&r->ring), ring_ud(ENG_OP_STOP, 0, 0), 0,
		       ring_ud(ENG_OP_MBOX_ERR, 0, 0));
	io_uring_submit(&from->uring);
	pthread_join(r->thread, NULL);
	r->up = false;
}

void eng_redis_free(struct eng *e)
{
	struct eng_redis *r = e->redis;

	if (!r)
		return;
	ring_exit(&r->ring);
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct rchan *ch = r->buckets[i];

		while (ch) {
			struct rchan *next = ch->next;

			free(ch);
			ch = next;
		}
	}
	free(r->buckets);
	free(r->dirty);
	json_parser_free(r->json);
	free(r->c[0].rbuf);
	free(r->c[1].rbuf);
	pthread_mutex_destroy(&r->lock);
	free(r);
	e->redis = NULL;
}

int eng_redis_fd(const struct eng *e)
{
	return ring_fd(&e->redis->ring);
}

/* ---- users through Redis (presence, queries, kick) ------------------------ */

void eng_redis_presence(struct eng_shard *s, struct eng_chan *ch)
{
	(void)s;
	(void)ch;
}

void eng_redis_query(struct eng_shard *s, struct eng_conn *c, const char *uid,
		     size_t len)
{
	(void)uid;
	(void)len;
	eng_conn_http_reply(s, c, 503, NULL, NULL, "not yet\n", 8);
}

void eng_redis_kick(struct eng_shard *s, struct eng_conn *c, const char *uid,
		    size_t len)
{
	(void)uid;
	(void)len;
	eng_conn_http_reply(s, c, 503, NULL, NULL, "not yet\n", 8);
}

void eng_redis_online(struct eng_shard *s, struct eng_conn *c)
{
	eng_conn_http_reply(s, c, 503, NULL, NULL, "not yet\n", 8);
}
