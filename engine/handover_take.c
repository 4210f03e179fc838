/* SPDX-License-Identifier: MIT */
/*
 * handover_take.c: the new process's side of a take-over (handover.h,
 * docs/HANDOVER.md), in main: before the shards start, connect to
 * --take-over PATH, say hello, take the listening sockets and the state;
 * once they run, the live connections, queued to the shards as they come
 * (each shard adopts its own into its ring, so few regular fds wait),
 * then, once the shards run them all and accept, READY. A state whose
 * format this binary does not read is not installed: the take-over goes
 * on as a drain without it, and clients recover with recovered:false.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "handover.h"

#define LIVE_WAIT_MS	30000	/* the shards install their connections */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The socket the old process listens on: ours, and a socket. */
static int dial(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval rcv = { 120, 0 };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
		return -EPERM;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	/* the old process freezes its shards and writes its state first */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &rcv, sizeof(rcv));
	if (eng_ho_peer_ok(fd) < 0) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* A listening TCP socket, as the old process's shards have. */
static bool listening(int fd)
{
	int v = 0;
	socklen_t len = sizeof(v);

	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
}

/*
 * LISTENERS: their fds kept, in the order the old shards had them. The
 * epoll backend made them non-blocking (a flag of the socket, which both
 * processes share); io_uring's accept wants them blocking.
 */
static int take_fds(struct eng *e, const struct eng_ho_buf *msg,
		    const int *fds, unsigned nfds, bool *last)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_rd r = { msg->p, msg->len, 0, false };
	unsigned n = eng_ho_get_u16(&r), total = eng_ho_get_u16(&r);
	int *all;

	*last = eng_ho_get_u8(&r);
	if (r.err || n != nfds || total > 65535)
		return -EPROTO;
	all = eng_realloc(ho->fds, (ho->nfds + nfds) * sizeof(int));
	if (!all)
		return -ENOMEM;
	ho->fds = all;
	for (unsigned i = 0; i < nfds; i++) {
		if (!listening(fds[i]))
			return -ENOTSOCK;
		if (!e->cfg.epoll)
			fcntl(fds[i], F_SETFL,
			      fcntl(fds[i], F_GETFL) & ~O_NONBLOCK);
		ho->fds[ho->nfds++] = fds[i];
	}
	return 0;
}

/*
 * The first CONNS: kept (its body in crecs, its fds in cfds) until the
 * shards run, which adopt the connections as they come from then on.
 */
static int first_conns(struct eng *e, const struct eng_ho_buf *msg,
		       const int *fds, unsigned nfds)
{
	struct eng_handover *ho = e->ho;

	ho->cfds = eng_malloc(ENG_HO_MAX_FDS * sizeof(int));
	if (!ho->cfds)
		return -ENOMEM;
	eng_ho_put(&ho->crecs, msg->p, msg->len);
	if (ho->crecs.err)
		return -ENOMEM;
	memcpy(ho->cfds, fds, nfds * sizeof(int));
	ho->ncfds = nfds;
	ho->streaming = true;
	return 0;
}

/* Messages until STATE_END: the listeners, the state's pieces. */
static int receive(struct eng *e, int fd, const struct eng_ho_hello *old)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_buf msg = { 0 };
	int fds[ENG_HO_MAX_FDS];
	bool last = false;
	int ret = 0;

	for (;;) {
		unsigned nfds = 0;
		uint8_t type;

		ret = eng_ho_recv(fd, &type, &msg, fds, &nfds);
		if (ret < 0)
			break;
		if (type == ENG_HO_T_LISTENERS) {
			ret = take_fds(e, &msg, fds, nfds, &last);
			nfds = ret < 0 ? nfds : 0;
		} else if (type == ENG_HO_T_STATE) {
			/* kept whole: the shards read it as they start */
			if (old->state == ENG_HO_STATE &&
			    e->broker->state_here)
				eng_ho_put(&ho->state, msg.p, msg.len);
			ret = ho->state.err ? -ENOMEM : 0;
		} else if (type == ENG_HO_T_CONNS) {
			/* the rest once the shards run: they adopt them */
			ret = first_conns(e, &msg, fds, nfds);
			nfds = ret < 0 ? nfds : 0;
			/* no STATE_END yet: the state came whole before */
			ho->install = old->state == ENG_HO_STATE &&
				      e->broker->state_here;
			if (ret == 0)
				break;
		} else if (type == ENG_HO_T_SUBS) {
			ret = eng_ho_redis_take(e, fd, &msg);
		} else if (type == ENG_HO_T_STATE_END) {
			struct eng_ho_rd r = { msg.p, msg.len, 0, false };

			ho->install = eng_ho_get_u8(&r) && !r.err &&
				      old->state == ENG_HO_STATE &&
				      e->broker->state_here;
			break;
		} else if (!(type & ENG_HO_T_OPTIONAL)) {
			ret = type == ENG_HO_T_ABORT ? -ECANCELED : -EPROTO;
		}
		while (nfds)		/* fds nobody took */
			close(fds[--nfds]);
		if (ret < 0)
			break;
	}
	eng_ho_buf_free(&msg);
	if (ret == 0 && (!last || !ho->nfds))
		ret = -EPROTO;	/* no listener: nothing to serve on */
	return ret;
}

/* Our hello, then the old process's, and what they agree on, said. */
static int hellos(struct eng *e, int fd, struct eng_ho_hello *old)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_hello me = {
		.magic = ENG_HO_MAGIC, .proto = ENG_HO_PROTO,
		.state = ENG_HO_STATE,
		.caps = ENG_HO_CAP_LISTENERS | ENG_HO_CAP_STATE |
			ENG_HO_CAP_LIVE | eng_ho_redis_caps(e),
		.shards = (uint16_t)e->cfg.shards, .mode = e->cfg.take_over_mode,
		.redis = !e->broker->state_here,
		.pid = (uint32_t)getpid(), .live = ENG_HO_LIVE,
	};
	struct eng_ho_buf msg = { 0 };
	unsigned nfds;
	uint8_t type;
	int ret;

	eng_ho_hello_put(&msg, &me);
	ret = msg.err ? -ENOMEM : eng_ho_send(fd, ENG_HO_T_HELLO, msg.p,
					      msg.len, NULL, 0);
	if (ret == 0)
		ret = eng_ho_recv(fd, &type, &msg, NULL, &nfds);
	if (ret == 0 && (type != ENG_HO_T_HELLO ||
			 eng_ho_hello_get(&msg, old) < 0))
		ret = -EPROTO;
	eng_ho_buf_free(&msg);
	if (ret < 0)
		return ret;
	ho->role = "taken";
	ho->mode_asked = e->cfg.take_over_mode;
	/* the old process's hello says what it does */
	ho->mode_used = old->mode == ENG_HO_MODE_LIVE &&
			me.mode == ENG_HO_MODE_LIVE && old->live == ENG_HO_LIVE ?
			ENG_HO_MODE_LIVE : ENG_HO_MODE_DRAIN;
	if (me.mode == ENG_HO_MODE_LIVE && ho->mode_used != ENG_HO_MODE_LIVE) {
		atomic_fetch_add(&ho->fallbacks[ENG_HO_FB_LIVE], 1);
		fprintf(stderr, "ringcast: take-over: live asked, but pid %u "
			"(connection format %u, ours %u) drains its clients "
			"instead (level 1)\n", old->pid, old->live,
			ENG_HO_LIVE);
	}
	if (me.redis || old->redis) {
		atomic_fetch_add(&ho->fallbacks[ENG_HO_FB_BROKER], 1);
		fprintf(stderr, "ringcast: take-over: histories and inboxes "
			"are in Redis: none sent\n");
	} else if (old->state != ENG_HO_STATE) {
		atomic_fetch_add(&ho->fallbacks[ENG_HO_FB_VERSION], 1);
		fprintf(stderr, "ringcast: take-over: pid %u writes state "
			"format %u, this binary reads %u: starting without its "
			"histories and inboxes (clients recover with "
			"recovered:false)\n", old->pid, old->state,
			ENG_HO_STATE);
	}
	return 0;
}

int eng_handover_take(struct eng *e)
{
	struct eng_handover *ho;
	struct eng_ho_hello old;
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	uint64_t t;
	int fd, ret;

	if (!e->cfg.take_over[0])
		return 0;
	ho = eng_handover_new(e);
	if (!ho)
		return -ENOMEM;
	fd = dial(e->cfg.take_over);
	if (fd < 0) {
		fprintf(stderr, "ringcast: --take-over %s: %s\n",
			e->cfg.take_over, fd == -EPERM ? "not a socket of "
			"ours (owner and peer must be this user)" :
			strerror(-fd));
		return fd;
	}
	t = now_ms();
	ret = hellos(e, fd, &old);
	/* the old process's freeze and dump are in this wait too */
	if (ret == 0)
		ret = receive(e, fd, &old);
	atomic_store(&ho->state_ms, now_ms() - t);
	ho->t_state = now_ms();
	if (ret < 0) {
		eng_ho_buf_free(&ho->subs);
		fprintf(stderr, "ringcast: --take-over %s: %s\n",
			e->cfg.take_over, strerror(-ret));
		close(fd);
		return ret;
	}
	ho->take_fd = fd;
	atomic_store(&ho->hold, true);
	atomic_store(&ho->listeners, ho->nfds);
	atomic_store(&ho->state_bytes, ho->state.len);
	if (ho->streaming) {	/* the shards' queues, before they start */
		ho->inq = eng_malloc(e->cfg.shards * sizeof(*ho->inq));
		if (!ho->inq) {
			close(fd);
			ho->take_fd = -1;
			return -ENOMEM;
		}
		memset(ho->inq, 0, e->cfg.shards * sizeof(*ho->inq));
		for (unsigned i = 0; i < e->cfg.shards; i++)
			pthread_mutex_init(&ho->inq[i].lock, NULL);
	}
	/*
	 * The address the clients know is the listeners' own, whatever
	 * --listen says; a shard beyond them binds that one too.
	 */
	if (getsockname(ho->fds[0], (struct sockaddr *)&sa, &len) == 0 &&
	    sa.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&sa;
		char host[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		if (strcmp(host, e->cfg.listen_host) ||
		    (e->cfg.port && e->cfg.port != ntohs(in->sin_port)))
			fprintf(stderr, "ringcast: take-over: --listen %s:%u, "
				"but the listeners are on %s:%u: serving "
				"there\n", e->cfg.listen_host, e->cfg.port,
				host, ntohs(in->sin_port));
		snprintf(e->cfg.listen_host, sizeof(e->cfg.listen_host), "%s",
			 host);
		e->cfg.port = ntohs(in->sin_port);
	}
	fprintf(stderr, "ringcast: take-over: from pid %u: %u listeners, "
		"%zu bytes of state%s\n", old.pid, ho->nfds, ho->state.len,
		ho->install ? "" : " (not installed)");
	return 0;
}

int eng_handover_listener(struct eng *e)
{
	struct eng_handover *ho = e->ho;

	if (!ho || ho->fds_used >= ho->nfds)
		return -1;
	return ho->fds[ho->fds_used++];
}

/* Appends @len bytes of record @rec and its @fd to @q. */
static int enqueue(struct eng_ho_inq *q, const uint8_t *rec, uint32_t len,
		   int fd)
{
	int ret = 0;

	pthread_mutex_lock(&q->lock);
	if (q->n == q->cap) {
		unsigned cap = q->cap ? q->cap * 2 : 64;
		int *v = eng_realloc(q->fds, cap * sizeof(int));

		if (v) {
			q->fds = v;
			q->cap = cap;
		}
	}
	if (q->n < q->cap) {
		eng_ho_put_u32(&q->recs, len);
		eng_ho_put(&q->recs, rec, len);
	}
	if (q->n == q->cap || q->recs.err)
		ret = -ENOMEM;
	else
		q->fds[q->n++] = fd;
	pthread_mutex_unlock(&q->lock);
	return ret;
}

/*
 * One CONNS message: each record and its fd queued for a shard (every
 * shards-th one each: the shard count may differ), then the shards
 * mailed. The fds are theirs to close from here, or ours on an error.
 */
static int queue_conns(struct eng *e, const struct eng_ho_buf *msg,
		       const int *fds, unsigned nfds)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_rd r = { msg->p, msg->len, 0, false };
	unsigned fmt = eng_ho_get_u16(&r), n = eng_ho_get_u16(&r), used = 0;
	uint64_t out;
	int ret = 0;

	if (r.err || fmt != ENG_HO_LIVE || n != nfds || !n)
		ret = -EPROTO;
	while (ret == 0 && r.off < r.len && used < nfds) {
		uint8_t kind = eng_ho_get_u8(&r);
		uint32_t len = eng_ho_get_u32(&r);
		const uint8_t *rec = eng_ho_get(&r, len);
		unsigned to = (unsigned)(ho->n_in++ % e->cfg.shards);

		if (r.err)
			ret = -EPROTO;
		else if (kind != ENG_HO_R_CONN)
			ho->n_in--;	/* a later kind: skipped whole */
		else if ((ret = enqueue(&ho->inq[to], rec, len, fds[used])) == 0)
			used++;
		atomic_fetch_add(&ho->live_bytes, ret == 0 ? len : 0);
	}
	out = atomic_fetch_add(&ho->fds_out, used) + used;
	if (out > atomic_load(&ho->fds_peak))
		atomic_store(&ho->fds_peak, out);
	while (used < nfds)		/* fds no record named */
		close(fds[used++]);
	eng_ho_wake_all(e);
	return ret;
}

/*
 * The connections, as they come: each batch queued for the shards that
 * adopt them into their rings, the next read only once at most
 * ENG_HO_FD_WINDOW regular fds wait, whatever the count. Until
 * STATE_END; any error ends the take-over (the old process resumes).
 */
static int stream(struct eng *e)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_buf msg = { 0 };
	int fds[ENG_HO_MAX_FDS];
	int ret = eng_ho_wake_init(ho);

	if (ret < 0)	/* slower, not wrong: their tick looks too */
		fprintf(stderr, "ringcast: take-over: no ring to mail the "
			"shards (%s): they take the connections on their "
			"tick\n", strerror(-ret));
	ret = queue_conns(e, &ho->crecs, ho->cfds, ho->ncfds);
	ho->ncfds = 0;		/* the shards' now, or closed */
	while (ret == 0) {
		uint64_t until = now_ms() + LIVE_WAIT_MS;
		unsigned nfds = 0;
		uint8_t type;

		while (atomic_load(&ho->fds_out) > ENG_HO_FD_WINDOW &&
		       now_ms() < until)
			poll(NULL, 0, 1);
		if (atomic_load(&ho->fds_out) > ENG_HO_FD_WINDOW) {
			ret = -ETIMEDOUT;
			break;
		}
		ret = eng_ho_recv(ho->take_fd, &type, &msg, fds, &nfds);
		if (ret < 0)
			break;
		if (type == ENG_HO_T_CONNS) {
			ret = queue_conns(e, &msg, fds, nfds);
			continue;
		}
		while (nfds)
			close(fds[--nfds]);
		if (type == ENG_HO_T_STATE_END)
			break;
		if (!(type & ENG_HO_T_OPTIONAL))
			ret = type == ENG_HO_T_ABORT ? -ECANCELED : -EPROTO;
	}
	eng_ho_buf_free(&msg);
	return ret;
}

/*
 * The stream broke: the shards let what they adopted go, without a
 * byte on the wire (the old process resumes them).
 */
static void lose(struct eng *e)
{
	struct eng_handover *ho = e->ho;

	atomic_store(&ho->lost, true);
	eng_ho_wake_all(e);
	for (unsigned i = 0; i < LIVE_WAIT_MS &&
	     atomic_load(&ho->lost_acked) < e->cfg.shards; i++)
		poll(NULL, 0, 1);
}

/*
 * What the connections' stream kept: the queues and the fds no shard
 * took (a shard that stopped), the first message, the mailing ring.
 */
static void conns_free(struct eng *e)
{
	struct eng_handover *ho = e->ho;

	for (unsigned i = 0; ho->inq && i < e->cfg.shards; i++) {
		struct eng_ho_inq *q = &ho->inq[i];

		while (q->n)
			close(q->fds[--q->n]);
		eng_free(q->fds);
		eng_ho_buf_free(&q->recs);
		pthread_mutex_destroy(&q->lock);
	}
	eng_free(ho->inq);
	ho->inq = NULL;
	while (ho->ncfds)	/* left when the stream could not start */
		close(ho->cfds[--ho->ncfds]);
	eng_free(ho->cfds);
	ho->cfds = NULL;
	eng_ho_buf_free(&ho->crecs);
	eng_ho_wake_exit(ho);
}

int eng_handover_taken(struct eng *e)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_buf msg = { 0 };
	int ret;

	if (!ho || ho->take_fd < 0)
		return 0;
	/* listeners no shard of ours took: the others accept their queue */
	while (ho->nfds > ho->fds_used)
		close(ho->fds[--ho->nfds]);
	eng_free(ho->fds);
	ho->fds = NULL;
	eng_ho_buf_free(&ho->state);	/* the shards installed theirs */
	if (ho->streaming) {
		uint64_t t = now_ms();

		ret = stream(e);
		atomic_store(&ho->install_ms, now_ms() - t);
		if (ret < 0) {
			fprintf(stderr, "ringcast: take-over: the connections "
				"broke off (%s): letting them go, the old "
				"process serves on\n", strerror(-ret));
			lose(e);
			conns_free(e);
			close(ho->take_fd);
			ho->take_fd = -1;
			return -ECONNABORTED;
		}
	}
	/* all up and every connection in: they resume, then accept */
	atomic_store(&ho->live_go, true);
	atomic_store(&ho->hold, false);
	eng_ho_wake_all(e);
	/* READY means every connection resumed: they say so by mail */
	for (unsigned i = 0; ho->streaming && i < LIVE_WAIT_MS &&
	     atomic_load(&ho->live_armed) < e->cfg.shards; i++)
		poll(NULL, 0, 1);
	conns_free(e);
	eng_ho_redis_end(e);	/* subscribed: what Redis sent since, now */
	eng_ho_put_u32(&msg, ho->fds_used);
	eng_ho_put_u32(&msg, (uint32_t)atomic_load(&ho->hists));
	eng_ho_put_u32(&msg, (uint32_t)atomic_load(&ho->inboxes));
	eng_ho_put_u32(&msg, (uint32_t)atomic_load(&ho->live_conns));
	ret = msg.err ? -ENOMEM : eng_ho_send(ho->take_fd, ENG_HO_T_READY,
					      msg.p, msg.len, NULL, 0);
	eng_ho_buf_free(&msg);
	close(ho->take_fd);
	ho->take_fd = -1;
	/* the shards' start and the state installed */
	atomic_store(&ho->confirm_ms, now_ms() - ho->t_state);
	fprintf(stderr, "ringcast: take-over: accepting on %u listeners "
		"with %llu histories, %llu inboxes and %llu live connections "
		"(%llu bytes, received and adopted in %llu ms, at most %llu "
		"regular fds waiting); the old process drains the rest%s\n",
		ho->fds_used, (unsigned long long)atomic_load(&ho->hists),
		(unsigned long long)atomic_load(&ho->inboxes),
		(unsigned long long)atomic_load(&ho->live_conns),
		(unsigned long long)atomic_load(&ho->live_bytes),
		(unsigned long long)atomic_load(&ho->install_ms),
		(unsigned long long)atomic_load(&ho->fds_peak),
		ret < 0 ? " (READY not sent: it serves on)" : "");
	return ret;
}
