/* SPDX-License-Identifier: MIT */
/*
 * handover_give.c: the running process's side of a take-over (handover.h,
 * docs/HANDOVER.md), on a thread of its own. It waits on the unix socket
 * for a new process, says hello, freezes the shards (no request that
 * changes state, every publish under way answered; they accept on),
 * sends the listening sockets and, on the embedded broker, the histories
 * and inboxes the shards write out, then waits for READY. Without it (the
 * new process died, or gave up) the shards serve on as before; with it
 * they stop accepting, close their listeners and drain their clients in
 * waves, and once
 * none is left or --drain-deadline has passed the thread stops the
 * process, which closes the rest with 1012 (4200) and exits 0.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "handover.h"

#define WAIT_ACK_MS	30000	/* shards answer a phase within this */
#define WAIT_READY_MS	120000	/* the new process starts within this */
#define STATE_PIECE	(1u << 20)	/* bytes of state a message */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * @fd's timeouts: a receive wakes each second (to look at the clock and
 * at a stop), a send gives up after 30 s; a stuck peer holds nobody.
 */
static void timeouts(int fd)
{
	struct timeval rcv = { 1, 0 }, snd = { 30, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
}

/* The next message within @ms, skipping optional ones we do not know. */
static int recv_within(struct eng *e, int fd, uint8_t *type,
		       struct eng_ho_buf *msg, unsigned ms)
{
	uint64_t until = now_ms() + ms;

	while (now_ms() < until && !atomic_load(&e->ho->exiting)) {
		unsigned nfds;
		int ret = eng_ho_recv(fd, type, msg, NULL, &nfds);

		if (ret == -EAGAIN || ret == -EINTR)
			continue;	/* a second passed: look again */
		if (ret < 0)
			return ret;
		if (*type != ENG_HO_T_HELLO && *type != ENG_HO_T_READY &&
		    *type != ENG_HO_T_ABORT) {
			if (*type & ENG_HO_T_OPTIONAL)
				continue;
			return -EPROTO;
		}
		return 0;
	}
	return -ETIMEDOUT;
}

int eng_handover_listen(struct eng *e, bool replace)
{
	const char *path = e->cfg.handover_path;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, ret;

	if (!path[0])
		return 0;
	if (!eng_handover_new(e))
		return -ENOMEM;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "ringcast: --handover-socket %s: exists "
				"and is not a socket\n", path);
			return -EEXIST;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (!replace && fd >= 0 &&
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(fd);
			fprintf(stderr, "ringcast: --handover-socket %s: a "
				"process listens there; to replace it, start "
				"with --take-over %s\n", path, path);
			return -EADDRINUSE;
		}
		if (fd >= 0)
			close(fd);
		unlink(path);	/* stale, or the old process's, now ours */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	old = umask(0177);	/* owner-only from the start: no window */
	ret = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	ret = ret < 0 ? -errno : 0;
	if (ret == 0 && (chmod(path, 0600) < 0 || lstat(path, &st) < 0))
		ret = -errno;
	/* checked, not assumed: a file system may ignore the mode */
	if (ret == 0 && ((st.st_mode & 0777) != 0600 ||
			 st.st_uid != geteuid()))
		ret = -EPERM;
	if (ret == 0 && listen(fd, 4) < 0)
		ret = -errno;
	if (ret < 0) {
		fprintf(stderr, "ringcast: --handover-socket %s: %s (want a "
			"socket of mode 0600, ours)\n", path, strerror(-ret));
		close(fd);
		return ret;
	}
	e->ho->lfd = fd;
	e->ho->ino = st.st_ino;
	e->ho->dev = st.st_dev;
	return 0;
}

/* Phase @phase for every shard; true once all acked it in time. */
static bool phase(struct eng *e, int phase)
{
	struct eng_handover *ho = e->ho;
	uint64_t until = now_ms() + WAIT_ACK_MS;

	atomic_store(&ho->acked, 0);
	atomic_store(&ho->phase, phase);
	/* mailed, the shards take it at once and ack from completions */
	eng_ho_wake_all(e);
	while (atomic_load(&ho->acked) < e->cfg.shards) {
		if (now_ms() >= until || atomic_load(&ho->exiting))
			return false;
		poll(NULL, 0, 1);
	}
	return true;
}

/* Every shard's listener, at most ENG_HO_MAX_FDS a message. */
static int send_listeners(struct eng *e, int fd)
{
	unsigned n = e->cfg.shards, i = 0;
	int fds[ENG_HO_MAX_FDS];

	while (i < n) {
		unsigned k = 0;
		uint8_t body[5];
		int ret;

		while (i < n && k < ENG_HO_MAX_FDS)
			fds[k++] = e->shards[i++].listen_fd;
		body[0] = (uint8_t)(k >> 8);
		body[1] = (uint8_t)k;
		body[2] = (uint8_t)(n >> 8);
		body[3] = (uint8_t)n;
		body[4] = i == n;	/* the last of them */
		ret = eng_ho_send(fd, ENG_HO_T_LISTENERS, body, 5, fds, k);
		if (ret < 0)
			return ret;
	}
	atomic_store(&e->ho->listeners, n);
	return 0;
}

/* One CONNS message: @k fds and their records in @body, then closed. */
static int send_batch(int fd, struct eng_ho_buf *body, int *fds, unsigned k)
{
	int ret;

	if (!k)
		return 0;
	body->p[2] = (uint8_t)(k >> 8);
	body->p[3] = (uint8_t)k;
	ret = body->err ? -ENOMEM : eng_ho_send(fd, ENG_HO_T_CONNS, body->p,
						 body->len, fds, k);
	while (k)
		close(fds[--k]);
	body->len = 0;
	eng_ho_put_u16(body, ENG_HO_LIVE);
	eng_ho_put_u16(body, 0);	/* the count, set as it goes */
	return ret;
}

/*
 * The fd of @l's entry @j once its shard installed it (ENG_HO_FD_FAILED:
 * it could not), raising what the shard may install as we go: at most
 * ENG_HO_FD_WINDOW regular fds are open at once, whatever the count.
 */
static int fd_of(struct eng *e, unsigned shard, struct eng_ho_live *l,
		 uint32_t j)
{
	uint32_t want = j + ENG_HO_FD_WINDOW < l->n ? j + ENG_HO_FD_WINDOW :
						     l->n;
	uint64_t until = now_ms() + WAIT_ACK_MS;
	int fd;

	/* by half windows: one mail asks for many installs */
	if (want >= atomic_load(&l->want) + ENG_HO_FD_WINDOW / 2 ||
	    (want == l->n && atomic_load(&l->want) < want)) {
		atomic_store(&l->want, want);
		eng_ho_wake(e, shard);
	}
	while ((fd = __atomic_load_n(&l->v[j].fd, __ATOMIC_ACQUIRE)) ==
	       ENG_HO_FD_WAIT) {
		if (now_ms() >= until || atomic_load(&e->ho->exiting))
			return -ETIMEDOUT;
		poll(NULL, 0, 1);
	}
	return fd;
}

/*
 * Live: the shards write their quiesced connections out (SAVE); then,
 * shard by shard, their fds are installed a window ahead of us and go
 * with their records, ENG_HO_MAX_FDS a message, each closed once sent
 * (the new process holds it, or on a failure our own slot still does).
 */
static int send_conns(struct eng *e, int fd)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_buf body = { 0 };
	uint64_t t = now_ms(), bytes = 0, n = 0;
	int fds[ENG_HO_MAX_FDS];
	unsigned k = 0;
	int ret = phase(e, ENG_HO_SAVE) ? 0 : -ETIMEDOUT;

	atomic_store(&ho->save_ms, now_ms() - t);
	if (ret < 0)
		return ret;	/* a shard may be writing still: its fds are its */
	t = now_ms();
	eng_ho_put_u16(&body, ENG_HO_LIVE);
	eng_ho_put_u16(&body, 0);
	for (unsigned i = 0; i < e->cfg.shards && ret == 0; i++) {
		struct eng_ho_live *l = e->shards[i].ho_live;

		if (l && l->failed)
			ret = -ENOMEM;
		for (uint32_t j = 0; l && ret == 0 && j < l->n; j++) {
			struct eng_ho_out *o = &l->v[j];
			int cfd = fd_of(e, i, l, j);
			/* at most open now: installed ahead, and the batch's */
			uint64_t held = atomic_load(&l->want) - j + k;

			if (held > atomic_load(&ho->fds_peak))
				atomic_store(&ho->fds_peak, held);

			if (cfd == ENG_HO_FD_FAILED)
				continue;
			if (cfd < 0) {
				ret = cfd;
				break;
			}
			/* ours to close now, sent or not */
			__atomic_store_n(&o->fd, ENG_HO_FD_SENT,
					 __ATOMIC_RELEASE);
			if (k == ENG_HO_MAX_FDS ||
			    body.len + o->len + 5 >= ENG_HO_MAX_MSG) {
				ret = send_batch(fd, &body, fds, k);
				k = 0;
			}
			fds[k++] = cfd;
			eng_ho_put_u8(&body, ENG_HO_R_CONN);
			eng_ho_put_u32(&body, o->len);
			eng_ho_put(&body, l->recs.p + o->off, o->len);
			bytes += o->len;
			n++;
		}
	}
	if (ret == 0)
		ret = send_batch(fd, &body, fds, k);
	else
		while (k)
			close(fds[--k]);
	eng_ho_buf_free(&body);
	atomic_store(&ho->live_conns, n);
	atomic_store(&ho->live_bytes, bytes);
	atomic_store(&ho->conns_ms, now_ms() - t);
	return ret;
}

/* The shards' dumps, in pieces; each freed as it goes. */
static int send_state(struct eng *e, int fd, bool sent)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_buf end = { 0 };
	uint64_t bytes = 0;
	int ret = 0;

	for (unsigned i = 0; i < e->cfg.shards; i++) {
		struct eng_ho_buf *b = e->shards[i].ho_dump;

		e->shards[i].ho_dump = NULL;
		if (!b && sent)
			ret = -ENOMEM;	/* that shard could not write it */
		for (size_t off = 0; b && ret == 0 && off < b->len;
		     off += STATE_PIECE) {
			size_t n = b->len - off < STATE_PIECE ? b->len - off :
								STATE_PIECE;

			ret = eng_ho_send(fd, ENG_HO_T_STATE, b->p + off, n,
					  NULL, 0);
			bytes += n;
		}
		if (b) {
			eng_ho_buf_free(b);
			eng_free(b);
		}
	}
	if (ret == 0 && ho->live && !e->broker->state_here)
		ret = eng_ho_redis_give(e, fd);	/* Redis's stream cut first */
	if (ret == 0 && ho->live)	/* the connections, after the state */
		ret = send_conns(e, fd);
	if (ret < 0)
		return ret;
	atomic_store(&ho->state_bytes, bytes);
	eng_ho_put_u8(&end, sent);
	eng_ho_put_u32(&end, (uint32_t)atomic_load(&ho->hists));
	eng_ho_put_u32(&end, (uint32_t)atomic_load(&ho->inboxes));
	eng_ho_put_u64(&end, bytes);
	ret = end.err ? -ENOMEM : eng_ho_send(fd, ENG_HO_T_STATE_END, end.p,
					      end.len, NULL, 0);
	eng_ho_buf_free(&end);
	return ret;
}

/* Whether the connections go live, and why not, counted and said. */
static bool live_goes(struct eng *e, const struct eng_ho_hello *peer)
{
	const char *why = NULL;

	if (peer->mode != ENG_HO_MODE_LIVE)
		return false;
	if (!(peer->caps & ENG_HO_CAP_LIVE) || peer->live != ENG_HO_LIVE)
		why = "the new process reads another connection format";
	else if ((!e->broker->state_here || peer->redis) &&
		 !eng_ho_redis_live(e, peer))
		why = "not both on one Redis (docs/HANDOVER.md)";
	if (!why)
		return true;
	atomic_fetch_add(&e->ho->fallbacks[ENG_HO_FB_LIVE], 1);
	fprintf(stderr, "ringcast: hand-over: live asked (format %u, ours %u), "
		"but %s: draining instead (level 1)\n", peer->live,
		ENG_HO_LIVE, why);
	return false;
}

/* Our hello, and the peer's before it; what it asks, logged. */
static int hellos(struct eng *e, int fd, struct eng_ho_hello *peer,
		  struct eng_ho_buf *msg)
{
	struct eng_ho_hello me = {
		.magic = ENG_HO_MAGIC, .proto = ENG_HO_PROTO,
		.state = ENG_HO_STATE,
		.caps = ENG_HO_CAP_LISTENERS | ENG_HO_CAP_STATE |
			ENG_HO_CAP_LIVE | eng_ho_redis_caps(e),
		.shards = (uint16_t)e->cfg.shards, .mode = ENG_HO_MODE_DRAIN,
		.redis = !e->broker->state_here, .pid = (uint32_t)getpid(),
		.live = ENG_HO_LIVE,
	};
	uint8_t type;
	int ret;

	ret = recv_within(e, fd, &type, msg, WAIT_ACK_MS);
	if (ret == 0 && (type != ENG_HO_T_HELLO ||
			 eng_ho_hello_get(msg, peer) < 0))
		ret = -EPROTO;
	if (ret < 0)
		return ret;
	/* ours says what we do: live only if asked and both read it */
	e->ho->live = live_goes(e, peer);
	me.mode = e->ho->live ? ENG_HO_MODE_LIVE : ENG_HO_MODE_DRAIN;
	msg->len = 0;
	eng_ho_hello_put(msg, &me);
	return msg->err ? -ENOMEM :
	       eng_ho_send(fd, ENG_HO_T_HELLO, msg->p, msg->len, NULL, 0);
}

/* Whether the state goes, and why not, counted and said. */
static bool state_goes(struct eng *e, const struct eng_ho_hello *peer)
{
	struct eng_handover *ho = e->ho;

	if (!e->broker->state_here || peer->redis) {
		atomic_fetch_add(&ho->fallbacks[ENG_HO_FB_BROKER], 1);
		fprintf(stderr, "ringcast: hand-over: %s: histories and "
			"inboxes are Redis's, not sent\n",
			!e->broker->state_here ? "Redis here" :
			"the new process uses Redis");
		return false;
	}
	if (!(peer->caps & ENG_HO_CAP_STATE) || peer->state != ENG_HO_STATE) {
		atomic_fetch_add(&ho->fallbacks[ENG_HO_FB_VERSION], 1);
		fprintf(stderr, "ringcast: hand-over: the new process reads "
			"state format %u, ours is %u: histories and inboxes "
			"not sent (clients recover with recovered:false)\n",
			peer->state, ENG_HO_STATE);
		return false;
	}
	return true;
}

/* The new process's READY, or why not. */
static int wait_ready(struct eng *e, int fd, struct eng_ho_buf *msg)
{
	uint8_t type;
	int ret = recv_within(e, fd, &type, msg, WAIT_READY_MS);

	if (ret == 0 && type != ENG_HO_T_READY)
		ret = type == ENG_HO_T_ABORT ? -ECANCELED : -EPROTO;
	return ret;
}

/* One take-over on @fd: 0 once the new process accepts, else -errno. */
static int give(struct eng *e, int fd)
{
	struct eng_handover *ho = e->ho;
	struct eng_ho_buf msg = { 0 };
	struct eng_ho_hello peer;
	uint64_t t = now_ms();
	bool sent;
	int ret;

	ho->role = "given";
	atomic_fetch_add(&ho->attempts, 1);
	ret = eng_ho_wake_init(ho);
	if (ret < 0)	/* the shards' ticks take the phases, slower */
		fprintf(stderr, "ringcast: hand-over: no ring to mail the "
			"shards (%s): phases on their tick\n", strerror(-ret));
	ret = hellos(e, fd, &peer, &msg);
	if (ret < 0)
		goto out;
	ho->mode_asked = peer.mode;
	ho->mode_used = ho->live ? ENG_HO_MODE_LIVE : ENG_HO_MODE_DRAIN;
	fprintf(stderr, "ringcast: hand-over: pid %u takes over (%u shards, "
		"mode %s)\n", peer.pid, peer.shards,
		ho->live ? "live" : "drain");
	sent = state_goes(e, &peer);
	atomic_store(&ho->live_conns, 0);
	atomic_store(&ho->live_bytes, 0);
	atomic_store(&ho->hists, 0);
	atomic_store(&ho->inboxes, 0);
	atomic_store(&ho->state_bytes, 0);
	atomic_store(&ho->drained, 0);
	atomic_store(&ho->fds_peak, 0);
	ho->t_quiesce = t = now_ms();
	ret = phase(e, ENG_HO_FREEZE) ? 0 : -ETIMEDOUT;
	atomic_store(&ho->freeze_ms, now_ms() - t);
	t = now_ms();
	if (ret == 0)
		ret = send_listeners(e, fd);
	if (ret == 0 && sent && !phase(e, ENG_HO_DUMP))
		ret = -ETIMEDOUT;
	if (ret == 0)
		ret = send_state(e, fd, sent);
	atomic_store(&ho->state_ms, now_ms() - t);
	t = now_ms();
	if (ret == 0)
		ret = wait_ready(e, fd, &msg);
	atomic_store(&ho->confirm_ms, now_ms() - t);
	/* frozen until here: READY, or the failure that resumes them */
	atomic_store(&ho->quiesce_ms, now_ms() - ho->t_quiesce);
out:
	eng_ho_buf_free(&msg);
	return ret;
}

/* Waits for the drain's end: no client left, the deadline, or a stop. */
static void drain(struct eng *e)
{
	struct eng_handover *ho = e->ho;
	uint64_t t = now_ms(), until = t + e->cfg.drain_deadline_ms;

	for (;;) {
		uint64_t open = 0;

		for (unsigned i = 0; i < e->cfg.shards; i++)
			open += atomic_load_explicit(&e->shards[i].stats.conns,
						     memory_order_relaxed);
		if (!open || now_ms() >= until || atomic_load(&ho->exiting))
			break;
		poll(NULL, 0, ENG_TICK_MS);
	}
	atomic_store(&ho->drain_ms, now_ms() - t);
	fprintf(stderr, "ringcast: hand-over: %llu connections handed over "
		"live (%llu bytes, written in %llu ms, sent in %llu ms, at "
		"most %llu regular fds; clients not read for %llu ms)\n",
		(unsigned long long)atomic_load(&ho->live_conns),
		(unsigned long long)atomic_load(&ho->live_bytes),
		(unsigned long long)atomic_load(&ho->save_ms),
		(unsigned long long)atomic_load(&ho->conns_ms),
		(unsigned long long)atomic_load(&ho->fds_peak),
		(unsigned long long)atomic_load(&ho->quiesce_ms));
	fprintf(stderr, "ringcast: hand-over: %llu connections drained in "
		"%llu ms%s; before it: freeze %llu ms, listeners and %llu "
		"bytes of state %llu ms, READY %llu ms; stopping\n",
		(unsigned long long)atomic_load(&ho->drained),
		(unsigned long long)atomic_load(&ho->drain_ms),
		now_ms() >= until ? " (deadline: the rest now)" : "",
		(unsigned long long)atomic_load(&ho->freeze_ms),
		(unsigned long long)atomic_load(&ho->state_bytes),
		(unsigned long long)atomic_load(&ho->state_ms),
		(unsigned long long)atomic_load(&ho->confirm_ms));
}

/*
 * A take-over failed: the shards serve on as before, and the next one
 * is taken only once each has resumed what it had quiesced.
 */
static void resume(struct eng *e)
{
	struct eng_handover *ho = e->ho;
	uint64_t until = now_ms() + WAIT_ACK_MS;

	atomic_store(&ho->acked, 0);
	atomic_fetch_add(&ho->idle_gen, 1);
	atomic_store(&ho->phase, ENG_HO_IDLE);
	eng_ho_wake_all(e);
	while (atomic_load(&ho->acked) < e->cfg.shards &&
	       now_ms() < until && !atomic_load(&ho->exiting))
		poll(NULL, 0, 1);
}

static void *serve(void *arg)
{
	struct eng *e = arg;
	struct eng_handover *ho = e->ho;

	while (!atomic_load(&ho->exiting)) {
		int fd = accept4(ho->lfd, NULL, NULL, SOCK_CLOEXEC), ret;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (!atomic_load(&ho->exiting))
				fprintf(stderr, "ringcast: hand-over: accept: "
					"%s\n", strerror(errno));
			break;
		}
		if (eng_ho_peer_ok(fd) < 0) {
			close(fd);
			continue;
		}
		timeouts(fd);
		atomic_store(&ho->cfd, fd);
		ret = give(e, fd);
		if (ret == 0) {
			atomic_store(&ho->restarting, true);
			atomic_store(&ho->acked, 0);
			atomic_store(&ho->phase, ENG_HO_DRAIN);
			eng_ho_redis_end(e);	/* to those not handed */
			eng_ho_wake_all(e);
			fprintf(stderr, "ringcast: hand-over: the new process "
				"accepts; draining at %u a second, %u s at "
				"most\n", e->cfg.drain_rate,
				e->cfg.drain_deadline_ms / 1000);
			drain(e);
		} else {
			atomic_fetch_add(&ho->fallbacks[ENG_HO_FB_PEER], 1);
			resume(e);
			eng_ho_redis_end(e);	/* held since the marker: now */
			fprintf(stderr, "ringcast: hand-over: failed before the "
				"new process accepted (%s): serving on\n",
				strerror(-ret));
		}
		atomic_store(&ho->cfd, -1);
		eng_ho_wake_exit(ho);
		close(fd);
		if (ret == 0) {
			/* main's sigwait takes it: the drained stop, 1012 */
			if (!atomic_load(&ho->exiting))
				kill(getpid(), SIGTERM);
			break;
		}
	}
	return NULL;
}

int eng_handover_start(struct eng *e)
{
	int ret;

	if (!e->ho || e->ho->lfd < 0)
		return 0;
	ret = pthread_create(&e->ho->thread, NULL, serve, e);
	if (ret)
		return -ret;
	e->ho->thread_up = true;
	return 0;
}

void eng_handover_exit(struct eng *e)
{
	struct eng_handover *ho = e->ho;
	struct stat st;
	int cfd;

	if (!ho)
		return;
	atomic_store(&ho->exiting, true);
	if (ho->lfd >= 0)
		shutdown(ho->lfd, SHUT_RDWR);	/* wakes accept() */
	cfd = atomic_load(&ho->cfd);
	if (cfd >= 0)
		shutdown(cfd, SHUT_RDWR);
	if (ho->thread_up)
		pthread_join(ho->thread, NULL);
	ho->thread_up = false;
	if (ho->lfd >= 0) {
		/* the file is ours unless a new process bound its own */
		if (lstat(e->cfg.handover_path, &st) == 0 &&
		    st.st_ino == ho->ino && st.st_dev == ho->dev)
			unlink(e->cfg.handover_path);
		close(ho->lfd);
		ho->lfd = -1;
	}
}
