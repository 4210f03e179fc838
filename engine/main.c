/* SPDX-License-Identifier: MIT */
/*
 * main.c: the ringcast binary's start and stop. Takes its configuration
 * from opts.c, raises the fd limit, creates one SO_REUSEPORT listener per
 * shard, starts the pinned shard threads and the Redis bridge and waits
 * for SIGINT/SIGTERM, which it turns into a graceful stop: a mailbox
 * message to every shard, then join and exit 0. SIGHUP in between
 * reloads the TLS certificates (eng_tls_reload).
 */
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth.h"
#include "bridge.h"
#include "broker.h"
#include "buf.h"
#include "chan.h"
#include "core.h"
#include "handover.h"
#include "hist.h"
#include "mail.h"
#include "opts.h"
#include "pusher_eng.h"
#include "tlsio.h"
#include "webhook.h"

/*
 * Opens one listener on the configured address. With @port 0 the kernel
 * picks one; the caller passes that port to the next shards.
 */
static int open_listener(const struct eng_cfg *cfg, uint16_t port,
			 uint16_t *bound)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1, ret;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (inet_pton(AF_INET, cfg->listen_host, &sin.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Accepted sockets inherit TCP_NODELAY: pushes leave at once. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 65535) < 0 ||	/* clamped to net.core.somaxconn */
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*bound = ntohs(sin.sin_port);
	return fd;
}

/* The fixed-file table a ring may have: RLIMIT_NOFILE, raised to hard. */
static unsigned files_per_ring(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	/*
	 * The kernel also caps one fixed-file table at 1 << 20 entries
	 * (IORING_MAX_FIXED_FILES, io_uring/rsrc.c): past that, registering
	 * the table fails with EMFILE however high nofile is.
	 */
	if (rl.rlim_cur > RING_MAX_FILES)
		return RING_MAX_FILES;
	return (unsigned)rl.rlim_cur;
}

/* The n-th CPU this process may run on, for round-robin pinning. */
static int nth_cpu(unsigned n)
{
	cpu_set_t set;
	int count, i, seen = 0;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -1;
	count = CPU_COUNT(&set);
	if (count <= 0)
		return -1;
	n %= (unsigned)count;
	for (i = 0; i < CPU_SETSIZE; i++) {
		if (!CPU_ISSET(i, &set))
			continue;
		if ((unsigned)seen++ == n)
			return i;
	}
	return -1;
}

/* Tells every shard to stop, through a ring of main's own. */
static int post_stop(struct eng *e, struct ring *r)
{
	unsigned i;
	int ret;

	for (i = 0; i < e->cfg.shards; i++)
		if (e->shards[i].up)
			eng_mail_stop(r, &e->shards[i].ring);
	ret = ring_submit(r);
	return ret < 0 ? ret : 0;
}


/* The files the options name: the JWT public key, the TLS certificates. */
static int load_files(struct eng *e)
{
	const char *why = NULL;
	char buf[512];

	if (eng_auth_init(&e->cfg, &why) < 0) {
		fprintf(stderr, "ringcast: --jwt-public-key %s: %s\n",
			e->cfg.jwt_pubkey_file, why);
		return -EINVAL;
	}
	if (eng_tls_init(e, buf, sizeof(buf)) < 0) {
		fprintf(stderr, "ringcast: %s\n", buf);
		return -EINVAL;
	}
	return 0;
}

/* --max-conns, by default what the shards' rings of @per_ring hold. */
static void size_conns(struct eng_cfg *cfg, unsigned per_ring)
{
	uint64_t hold = (uint64_t)per_ring * cfg->shards;

	if (!cfg->max_conns) {
		cfg->max_conns = hold;
	} else if (cfg->max_conns > hold) {
		fprintf(stderr, "ringcast: warning: --max-conns %llu exceeds "
			"what %u shards hold here (%u each, RLIMIT_NOFILE): "
			"raise the nofile limit (sysctl.d/, tune/) or use "
			"--shards %llu\n",
			(unsigned long long)cfg->max_conns, cfg->shards,
			per_ring,
			(unsigned long long)((cfg->max_conns + per_ring - 1) /
					     per_ring));
	}
}

/*
 * What the shards need before they start: the shared tables, the frame
 * arena, the control ring, the shards' array, the broker and with Redis
 * the bridge. Returns 0 or -errno, said on stderr.
 */
static int prepare(struct eng *e, struct ring *ctl)
{
	int ret;

	eng_chan_global_init();
	eng_hist_global_init();
	ret = eng_arena_init(e->cfg.arena_size);
	if (ret < 0) {
		fprintf(stderr, "ringcast: frame arena of %zu bytes: %s\n",
			e->cfg.arena_size, strerror(-ret));
		return ret;
	}
	/*
	 * The ring that carries the stop is made now: at the end, with the
	 * fd table full of clients (epoll), there may be no fd left for it.
	 */
	ret = ring_init(ctl, 64, 0, 0);
	if (ret < 0) {
		fprintf(stderr, "ringcast: control ring: %s\n", strerror(-ret));
		return ret;
	}
	e->shards = calloc(e->cfg.shards, sizeof(*e->shards));
	e->broker = e->cfg.redis_host[0] ? &eng_broker_redis
					 : &eng_broker_embedded;
	if (e->shards && e->cfg.redis_host[0]) {
		ret = eng_bridge_init(e);
		if (ret < 0) {
			fprintf(stderr, "ringcast: redis bridge: %s\n",
				strerror(-ret));
			return ret;
		}
	}
	eng_pusher_count_init(e);
	ret = eng_webhook_start(e);
	if (ret < 0) {
		fprintf(stderr, "ringcast: webhooks: %s\n", strerror(-ret));
		return ret;
	}
	if (!e->shards) {
		fprintf(stderr, "ringcast: out of memory\n");
		return -ENOMEM;
	}
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	return 0;
}

/* One listener per shard, all on one port (the first's, with port 0). */
static int open_listeners(struct eng *e, unsigned per_ring)
{
	uint16_t port = e->cfg.port;

	for (unsigned i = 0; i < e->cfg.shards; i++) {
		struct eng_shard *s = &e->shards[i];

		s->eng = e;
		s->id = i;
		/* a thread of several shards pins them all to its CPU */
		s->cpu = nth_cpu(e->cfg.threads ? i % e->cfg.threads : i);
		s->nr_conns = per_ring;
		/* a take-over's listeners first: no connection is refused */
		s->listen_fd = eng_handover_listener(e);
		if (s->listen_fd < 0)
			s->listen_fd = open_listener(&e->cfg, port, &port);
		if (s->listen_fd < 0) {
			fprintf(stderr, "ringcast: listen %s:%u: %s\n",
				e->cfg.listen_host, port,
				strerror(-s->listen_fd));
			return s->listen_fd;
		}
	}
	e->cfg.port = port;
	return 0;
}

/*
 * One thread per shard, or with --threads T, thread i runs shards i,
 * i + T, ... (its pthread_t kept in shard i); each shard reports ready
 * once. Then the bridge. @started counts the threads to join. Returns 0
 * or -errno; shards that did start are stopped as at exit.
 */
static int start(struct eng *e, unsigned *started)
{
	unsigned i, nready = 0, t = e->cfg.threads;
	unsigned nthreads = t ? t : e->cfg.shards;
	int ret;

	for (i = 0; i < nthreads; i++) {
		ret = pthread_create(&e->shards[i].thread, NULL,
				     t ? eng_worker_main : eng_shard_main,
				     &e->shards[i]);
		if (ret) {
			fprintf(stderr, "ringcast: pthread_create: %s\n",
				strerror(ret));
			e->failed = -ret;
			break;
		}
		(*started)++;
		nready += t ? (e->cfg.shards - i + t - 1) / t : 1;
	}
	pthread_mutex_lock(&e->lock);
	while (e->ready < nready)
		pthread_cond_wait(&e->cond, &e->lock);
	ret = e->failed;
	pthread_mutex_unlock(&e->lock);
	if (ret == 0 && e->bridge) {
		ret = eng_bridge_run(e);
		if (ret < 0)
			fprintf(stderr, "ringcast: redis bridge: %s\n",
				strerror(-ret));
	}
	return ret;
}

/*
 * Tells systemd (Type=notify, $NOTIFY_SOCKET) @state: READY=1 once
 * serving; after a take-over MAINPID= too, so that the old process's
 * exit does not end the service (the unit's NotifyAccess=all lets a
 * process that is not the main one say it). No systemd: nothing.
 */
static void notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof(sun.sun_path))
		return;
	memcpy(sun.sun_path, path, strlen(path));
	if (path[0] == '@')
		sun.sun_path[0] = '\0';	/* an abstract socket */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		   (struct sockaddr *)&sun, len) < 0)
		fprintf(stderr, "ringcast: warning: NOTIFY_SOCKET %s: %s\n",
			path, strerror(errno));
	close(fd);
}

/* The ready line tests and operators wait for, and the loopback hint. */
static void announce(const struct eng *e, unsigned per_ring, bool local_only)
{
	const struct eng_cfg *cfg = &e->cfg;
	char broker[1200] = "embedded broker";

	if (e->bridge && cfg->redis_cluster)
		snprintf(broker, sizeof(broker), "redis cluster, seeds %s",
			 cfg->redis_seeds);
	else if (e->bridge)
		snprintf(broker, sizeof(broker), "redis %s:%u", cfg->redis_host,
			 cfg->redis_port);
	if (cfg->epoll)
		strcat(broker, "; epoll backend");
	if (e->tls_ctx)
		strcat(broker, cfg->tls_min == 12 ? "; TLS 1.2 and 1.3" :
						    "; TLS 1.3");
	if (cfg->threads)
		snprintf(broker + strlen(broker), sizeof(broker) - strlen(broker),
			 "; on %u threads", cfg->threads);
	fprintf(stderr, "ringcast: listening on %s:%u (%u shards, %u "
		"connections per shard, max %llu; %s)\n", cfg->listen_host,
		cfg->port, cfg->shards, per_ring,
		(unsigned long long)cfg->max_conns, broker);
	if (local_only)
		fprintf(stderr, "ringcast: no API key, so only this host "
			"can connect; to serve others, give one (--api-key "
			"KEY or RINGCAST_API_KEY), with which the default is "
			"0.0.0.0:%u, or name the address: --listen "
			"0.0.0.0:%u --api-key KEY\n", cfg->port, cfg->port);
}

/*
 * The drained stop: every shard told through @ctl, the @started threads
 * joined, then the bridge, the rings and the rest. Returns @status, or 1
 * if the shards cannot be reached.
 */
static int stop(struct eng *e, struct ring *ctl, unsigned started,
		int status)
{
	unsigned i;
	int ret;

	eng_handover_exit(e);	/* no take-over begins from now on */
	ret = post_stop(e, ctl);
	if (ret < 0) {
		fprintf(stderr, "ringcast: cannot reach shards: %s\n",
			strerror(-ret));
		return 1;
	}
	for (i = 0; i < started; i++)
		pthread_join(e->shards[i].thread, NULL);
	/* The bridge last: shards post to it until they have stopped. */
	eng_bridge_stop(e, ctl);
	eng_webhook_stop();	/* after every caller has stopped */
	ring_exit(ctl);
	for (i = 0; i < e->cfg.shards; i++) {
		if (!e->shards[i].up)
			continue;
		eng_mail_discard(&e->shards[i].ring);
		ring_exit(&e->shards[i].ring);
	}
	eng_bridge_free(e);
	free(e->shards);
	eng_opts_exit(&e->cfg);
	eng_arena_exit();
	eng_auth_exit();
	eng_tls_exit(e);
	eng_free(e->ho);
	if (!status)
		fprintf(stderr, "ringcast: stopped\n");
	return status;
}

int main(int argc, char **argv)
{
	bool local_only = false;
	unsigned per_ring, started = 0;
	struct ring ctl;
	struct eng e;
	sigset_t sigs;
	int sig = 0, ret;

	memset(&e, 0, sizeof(e));
	ret = eng_opts_parse(&e.cfg, argc, argv, &local_only);
	if (ret)
		return ret > 0 ? 0 : 2;	/* --help, or a bad option */
#ifdef RC_FAULT_INJECT
	eng_mail_fault_init();
#endif
	if (load_files(&e) < 0) {
		eng_opts_exit(&e.cfg);
		return 2;
	}
	per_ring = files_per_ring();
	size_conns(&e.cfg, per_ring);

	/* Shards must not take the signals: main waits for them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/*
	 * A take-over's sockets and state come before the listeners, a
	 * fresh start's handover socket too: a live process there is an
	 * error, not something to replace.
	 */
	if (prepare(&e, &ctl) < 0) {
		eng_opts_exit(&e.cfg);
		return 1;
	}
	if (eng_handover_take(&e) < 0 ||
	    (!e.cfg.take_over[0] && eng_handover_listen(&e, false) < 0) ||
	    open_listeners(&e, per_ring) < 0)
		return stop(&e, &ctl, 0, 1);	/* what prepare() made goes */
	if (start(&e, &started) < 0)
		return stop(&e, &ctl, started, 1);
	announce(&e, per_ring, local_only);
	/* accepting: the old process may drain, and we take its socket */
	ret = e.cfg.take_over[0] ? eng_handover_taken(&e) : -1;
	if (ret == -ECONNABORTED)	/* its connections are its own still */
		return stop(&e, &ctl, started, 1);
	if (ret == 0 && eng_handover_listen(&e, true) < 0)
		fprintf(stderr, "ringcast: warning: no --handover-socket: the "
			"next upgrade cannot take over from this process\n");
	if (eng_handover_start(&e) < 0)
		fprintf(stderr, "ringcast: warning: --handover-socket: no "
			"thread to serve it\n");
	{
		char state[64] = "READY=1";

		if (e.cfg.take_over[0])	/* systemd follows us, not the old */
			snprintf(state, sizeof(state), "MAINPID=%d\nREADY=1",
				 (int)getpid());
		notify_systemd(state);
	}
	/* SIGHUP reloads the TLS certificates and waits again */
	while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
		eng_tls_reload(&e);
	if (sig != SIGHUP)
		fprintf(stderr, "ringcast: %s: closing connections\n",
			sig == SIGINT ? "SIGINT" : "SIGTERM");
	notify_systemd("STOPPING=1");
	return stop(&e, &ctl, started, 0);
}
