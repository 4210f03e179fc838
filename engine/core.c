/* SPDX-License-Identifier: MIT */
/*
 * core.c: one shard's loop. The thread pins itself, creates its ring (so
 * SINGLE_ISSUER names it as the only submitter), registers the fixed-file
 * table its connections live in and the provided buffers they receive
 * into, arms multishot accept on its own SO_REUSEPORT listener and a
 * periodic tick, then reaps completions in batches until told to stop.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "core.h"
#include "handover.h"
#include "hist.h"
#include "http.h"
#include "inbox.h"
#include "json.h"
#include "mail.h"
#include "metrics.h"
#include "push.h"
#include "pusher_eng.h"
#include "timer.h"
#include "tlsio.h"
#include "ud.h"
#include "zframe.h"

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void arm_accept(struct eng_shard *s)
{
	if (s->accepting || s->stopping || s->ho_noaccept)
		return;
	/* io_uring: direct descriptors, never in the process fd table. */
	if (ring_accept(&s->ring, s->listen_fd, ring_ud(ENG_OP_ACCEPT, 0, 0)))
		return;
	s->accepting = true;
}

static void arm_tick(struct eng_shard *s)
{
	ring_timeout(&s->ring, ENG_TICK_MS, ring_ud(ENG_OP_TIMER, 0, 0));
}

static void on_accept(struct eng_shard *s, struct ring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		s->accepting = false;
	if (cqe->res >= 0) {
		/* the listener's transport: TLS on every connection, or none */
		eng_conn_accepted(s, (uint32_t)cqe->res,
				  s->tls ? ENG_XPORT_TLS : ENG_XPORT_PLAIN);
	} else if (cqe->res == -ENFILE) {
		/*
		 * The fixed-file table is full. Accept is re-armed when a
		 * connection closes (eng_conn_on_close); meanwhile new clients
		 * wait in the listen backlog, as they would at an fd limit.
		 */
		return;
	} else if (cqe->res != -ECANCELED && !s->stopping) {
		fprintf(stderr, "ringcast: shard %u: accept: %s\n", s->id,
			strerror(-cqe->res));
	}
	if (!s->accepting && cqe->res != -ENFILE)
		arm_accept(s);
}

/* Begins the graceful stop: 1001 to every open connection. */
static void stop(struct eng_shard *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->stop_tick = s->tick + eng_ms_to_ticks(ENG_CLOSE_WAIT_MS);
	/* Stop taking clients; the listener closes with the shard. */
	if (s->accepting)
		ring_cancel(&s->ring, ring_ud(ENG_OP_ACCEPT, 0, 0),
			    ring_ud(ENG_OP_CANCEL, 0, 0));
	for (uint32_t i = 0; i < s->nr_conns; i++)
		if (s->conns[i].state != ENG_CONN_FREE)
			eng_conn_go_away(s, &s->conns[i]);
}

/*
 * A hand-over's step (handover_shard.c): on the tick, on its thread's
 * wake-up mail, and after each turn while a phase waits on completions.
 */
static void ho_step(struct eng_shard *s, bool tick)
{
	switch (eng_handover_tick(s, tick)) {
	case ENG_HO_ACCEPT_OFF:	/* the new process accepts instead */
		if (s->accepting)
			ring_cancel(&s->ring, ring_ud(ENG_OP_ACCEPT, 0, 0),
				    ring_ud(ENG_OP_CANCEL, 0, 0));
		break;
	case ENG_HO_ACCEPT_ON:	/* it did not: we do again */
		arm_accept(s);
		break;
	}
}

static void on_tick(struct eng_shard *s)
{
	uint64_t ms = now_ms() - s->t0_ms;

	eng_timer_advance(s, (uint32_t)(ms / ENG_TICK_MS));
	eng_hist_tick(s);
	eng_inbox_tick(s);
	eng_pusher_tick(s);
	ho_step(s, true);
	/*
	 * Large partial messages came and went: return their pages, or the
	 * peak stays resident long after the clients left.
	 */
	if (s->rx_peak >= ((size_t)4 << 20) && s->rx_alloc < s->rx_peak / 4) {
		eng_mem_collect();
		s->rx_peak = s->rx_alloc;
	}
	if (s->mail.retry && !s->stopping)
		eng_mail_retry(&s->mail);
	if (s->id == 0 && !s->stopping && s->tick >= s->sys_due) {
		s->sys_due = s->tick + 1000 / ENG_TICK_MS;
		eng_metrics_sys(s);
	}
	if (s->stopping && s->tick >= s->stop_tick) {
		/* Peers that did not answer our close in time are dropped. */
		for (uint32_t i = 0; i < s->nr_conns; i++)
			if (s->conns[i].state != ENG_CONN_FREE)
				eng_conn_kill(s, &s->conns[i]);
	}
	arm_tick(s);
}

static void dispatch(void *arg, struct ring_cqe *cqe)
{
	struct eng_shard *s = arg;
	unsigned op = ring_ud_op(cqe->user_data);

	if (eng_mail_is(op)) {
		eng_mail_read(&s->mail, cqe);
		return;
	}
	switch (op) {
	case ENG_OP_ACCEPT:
		on_accept(s, cqe);
		break;
	case ENG_OP_RECV:
		eng_conn_on_recv(s, cqe);
		break;
	case ENG_OP_SEND:
		eng_conn_on_send(s, cqe);
		break;
	case ENG_OP_CLOSE:
		eng_conn_on_close(s, cqe);
		if (!s->accepting)
			arm_accept(s);	/* a slot is free again */
		break;
	case ENG_OP_TIMER:
		on_tick(s);
		break;
	case ENG_OP_SEND_ZC:
		eng_conn_on_send_zc(s, cqe);
		break;
	case ENG_OP_SENDV:
		eng_conn_on_sendv(s, cqe);
		break;
	case ENG_OP_STOP:
		stop(s);
		break;
	case ENG_OP_CONN_CANCEL:
		eng_conn_on_cancel(s, cqe);
		break;
	case ENG_OP_HO_FD:
		eng_handover_on_fd(s, cqe);
		break;
	case ENG_OP_HO_WAKE:
		ho_step(s, false);
		break;
	case ENG_OP_CANCEL:	/* -ENOENT/-EALREADY: raced a completion */
	default:
		break;
	}
}

/* What the shard owns beside its ring: channels, the /ws parser, mail. */
static int state_init(struct eng_shard *s)
{
	/* simdjson reads up to JSON_PADDING bytes past a command's end */
	size_t cap = s->eng->cfg.max_message + JSON_PADDING;

	eng_mail_init(&s->mail, s->eng, &s->ring, s->id, s, &s->stopping,
		      &s->stats.mbox_errors);
	if (eng_chans_init(&s->chans) < 0 || eng_hist_init(s) < 0 ||
	    eng_inbox_init(s) < 0 || eng_tls_shard_init(s) < 0)
		return -ENOMEM;
	/*
	 * One parser for /ws commands, published bodies and token claims:
	 * sized for the largest of a message and a token, so that a small
	 * --max-message does not refuse a valid token with long claims.
	 * Commands stay bounded by --max-message at the frame layer.
	 */
	s->json = json_parser_new(s->eng->cfg.max_message > ENG_MAX_TOKEN ?
				  s->eng->cfg.max_message : ENG_MAX_TOKEN);
	s->scratch = eng_malloc(cap);
	if (!s->json || !s->scratch)
		return -ENOMEM;
	return eng_zframe_init(s);
}

static void state_exit(struct eng_shard *s)
{
	eng_mail_exit(&s->mail);
	json_parser_free(s->json);
	s->json = NULL;
	eng_free(s->scratch);
	s->scratch = NULL;
	eng_hist_exit(s);	/* before the channels its entries name */
	eng_inbox_exit(s);
	eng_tls_shard_exit(s);
	eng_zframe_exit(s);
	eng_handover_shard_exit(s);
	if (s->chans.buckets)
		eng_chans_exit(&s->chans);
}

/*
 * The endpoints a connection may turn into (conn.h), registered by their
 * owners once for the process, by whichever shard starts first.
 */
static pthread_once_t endpoints_once = PTHREAD_ONCE_INIT;
static int endpoints_err;

static void endpoints_register(void)
{
	endpoints_err = eng_http_register();
	if (!endpoints_err)
		endpoints_err = eng_push_register();
	if (!endpoints_err)
		endpoints_err = eng_pusher_register();
}

static int shard_init(struct eng_shard *s, unsigned ring_flags)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	size_t bytes;
	int ret;

	pthread_once(&endpoints_once, endpoints_register);
	if (endpoints_err)
		return endpoints_err;

	if (s->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(s->cpu, &set);
		/* Pinning is best effort: a cpuset may forbid it. */
		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			s->cpu = -1;
	}
	ret = ring_init(&s->ring, cfg->sq_entries, s->nr_conns,
			RING_F_SINGLE | ring_flags |
			(cfg->epoll ? RING_F_EPOLL : 0));
	if (ret < 0) {
		fprintf(stderr, "ringcast: shard %u: ring_init(%u files): %s\n",
			s->id, s->nr_conns, strerror(-ret));
		return ret;
	}
	/*
	 * The frame arena becomes fixed buffer 0 of every ring, for send_zc.
	 * Without it (RLIMIT_MEMLOCK on a host without CAP_IPC_LOCK) frames
	 * still go out, by plain send.
	 */
	{
		struct iovec iov = eng_arena_iov();

		ret = ring_register_buffer(&s->ring, &iov);
		s->fixed_arena = ret == 0;
		if (ret < 0 && ret != -EOPNOTSUPP && s->id == 0)
			fprintf(stderr, "ringcast: warning: cannot register the "
				"%zu-byte frame arena (%s): no send_zc; raise "
				"RLIMIT_MEMLOCK (LimitMEMLOCK=)\n",
				iov.iov_len, strerror(-ret));
	}
	ret = ring_bufs_init(&s->ring, &s->rbufs, 0, cfg->recv_bufs,
			     cfg->recv_buf_size);
	if (ret < 0) {
		fprintf(stderr, "ringcast: shard %u: recv buffers: %s\n",
			s->id, strerror(-ret));
		goto err_ring;
	}
	/*
	 * Untouched pages of the table cost nothing: memory follows the
	 * connections actually held, not the table's capacity.
	 */
	bytes = (size_t)s->nr_conns * sizeof(struct eng_conn);
	s->conns = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->conns == MAP_FAILED) {
		ret = -errno;
		goto err_bufs;
	}
	s->rearm = eng_malloc((size_t)s->nr_conns * sizeof(*s->rearm));
	s->resume = eng_malloc((size_t)s->nr_conns * 2 * sizeof(*s->resume));
	s->flushq = eng_malloc((size_t)s->nr_conns * sizeof(*s->flushq));
	/* a broadcast walks this, not the table: 1 bit a slot, not 80 B */
	s->push_bits = calloc((s->nr_conns + 63) / 64, sizeof(uint64_t));
	s->nr_push = 0;
	if (!s->rearm || !s->resume || !s->flushq || !s->push_bits) {
		eng_free(s->rearm);
		eng_free(s->resume);
		eng_free(s->flushq);
		free(s->push_bits);
		ret = -ENOMEM;
		goto err_conns;
	}
	ret = state_init(s);
	if (ret < 0) {
		state_exit(s);
		eng_free(s->rearm);
		eng_free(s->resume);
		eng_free(s->flushq);
		free(s->push_bits);
		goto err_conns;
	}
	s->nr_rearm = 0;
	s->nr_flushq = 0;
	s->rx_held = s->rx_alloc = s->rx_peak = 0;
	s->rx_budget = (size_t)(cfg->max_partial / cfg->shards);
	eng_timer_init(s);
	s->t0_ms = now_ms();
	s->t0_unix = (int64_t)time(NULL);
	s->tick = 0;
	return 0;

err_conns:
	munmap(s->conns, bytes);
err_bufs:
	ring_bufs_exit(&s->ring, &s->rbufs);
err_ring:
	ring_exit(&s->ring);
	return ret;
}

/*
 * Frees what the shard owns but its ring: other shards may still post
 * mail to it until they stop too, so main closes every ring after all
 * shards have joined (eng_shards_exit_rings).
 */
static void shard_exit(struct eng_shard *s)
{
	state_exit(s);
	eng_free(s->rearm);
	eng_free(s->resume);
	eng_free(s->flushq);
	free(s->push_bits);
	free(s->key_strikes);
	munmap(s->conns, (size_t)s->nr_conns * sizeof(struct eng_conn));
	ring_bufs_exit(&s->ring, &s->rbufs);
	close(s->listen_fd);
	s->listen_fd = -1;
}

static void report_ready(struct eng_shard *s, int err)
{
	struct eng *e = s->eng;

	pthread_mutex_lock(&e->lock);
	if (err && !e->failed)
		e->failed = err;
	e->ready++;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/*
 * Within a batch window: sends for the connections that have more than
 * deliveries waiting (a reply, a pong, a close), keeps the rest listed.
 */
static void flush_now(struct eng_shard *s)
{
	uint32_t keep = 0;

	for (uint32_t i = 0; i < s->nr_flushq; i++) {
		struct eng_conn *c = &s->conns[s->flushq[i]];

		if (c->flags & ENG_CONN_F_NOW)
			eng_conn_flushed(s, c);
		else
			s->flushq[keep++] = s->flushq[i];
	}
	s->nr_flushq = keep;
	s->nr_flushnow = 0;
}

/*
 * One turn of @s's loop: the sends, the ring (waiting in the kernel when
 * @block and there is nothing to resume), then what the batch left.
 * Returns the completions handled (>= 0), or -1 once the shard is done
 * (stopped and drained, or its ring failed). *@wait_ns is set to how
 * long the batch window may still hold sends (0: none waiting), so that
 * a thread with other shards sleeps no longer than that.
 */
static int shard_turn(struct eng_shard *s, bool block, uint64_t *wait_ns)
{
	uint64_t wait = 0;
	int ret;

	if (s->stopping && atomic_load_explicit(&s->stats.conns,
			memory_order_relaxed) == 0) {
		/*
		 * Our connections are gone; the mail their closing sent (a
		 * user's leave, interest withdrawn) leaves now. Then we keep
		 * reading mail until every shard is this far, so none is
		 * left unread at exit.
		 */
		if (!s->drained) {
			ring_submit(&s->ring);
			s->drained = true;
			atomic_fetch_add(&s->eng->drained, 1);
		}
		/*
		 * Everyone drained and no mail in flight: nothing can arrive
		 * any more. The mail count is checked too so a shard that
		 * exits first leaves nothing unread; a count gone wrong must
		 * not hang the stop, hence the bound.
		 */
		if (atomic_load(&s->eng->drained) == s->eng->cfg.shards &&
		    (atomic_load(&s->eng->mail) == 0 ||
		     s->tick >= s->stop_tick + eng_ms_to_ticks(2000)))
			return -1;
	}
	/*
	 * The sends, last before the submit: every frame queued to a
	 * connection since the last one goes in one send (a sendmsg for
	 * several), and none waits longer than it did. With a batch window
	 * they wait until it has passed (not when stopping), and the ring
	 * waits no longer than that.
	 */
	if (s->nr_flushq && s->eng->cfg.batch_window_us && !s->stopping) {
		uint64_t now = eng_now_ns();

		if (now < s->flush_at)
			wait = s->flush_at - now;
	}
	if (!wait) {
		while (s->nr_flushq)
			eng_conn_flushed(s, &s->conns[s->flushq[--s->nr_flushq]]);
		s->nr_flushnow = 0;
	} else if (s->nr_flushnow) {
		flush_now(s);
	}
	*wait_ns = wait;
	if (!block || s->nr_resume)
		ret = ring_run(&s->ring, 0, dispatch, s);
	else if (wait)
		ret = ring_run_for(&s->ring, wait, dispatch, s);
	else
		ret = ring_run(&s->ring, 1, dispatch, s);
	if (ret < 0) {
		fprintf(stderr, "ringcast: shard %u: submit: %s\n", s->id,
			strerror(-ret));
		return -1;
	}
	/*
	 * The buffers this batch gave back go to the kernel now, the last
	 * used first; recvs that ran out of them are re-armed only after.
	 */
	ring_bufs_refill(&s->rbufs);
	/* a phase waiting on what this turn completed moves on now */
	if (eng_handover_busy(s))
		ho_step(s, false);
	while (s->nr_rearm) {
		uint32_t slot = s->rearm[--s->nr_rearm];

		eng_conn_rearm(s, &s->conns[slot]);
	}
	/*
	 * Requests held while a publish was sequenced. Those listed again
	 * meanwhile (a next pipelined publish) wait one turn, which bounds
	 * the list at twice the connections.
	 */
	{
		uint32_t n = s->nr_resume;

		for (uint32_t i = 0; i < n; i++)
			eng_conn_resumed(s, &s->conns[s->resume[i]]);
		memmove(s->resume, s->resume + n,
			(s->nr_resume - n) * sizeof(*s->resume));
		s->nr_resume -= n;
		if (n)
			ret++;		/* work done: look again soon */
	}
	return ret;
}

/*
 * Sets @s up on the calling thread, which owns its ring from now on, and
 * adds the ring to @set when the thread drives several (else NULL).
 */
static bool shard_start(struct eng_shard *s, struct ring_set *set)
{
	int ret = shard_init(s, set ? RING_F_SHARED : 0);

	if (ret == 0 && set) {
		ret = ring_set_add(set, &s->ring);
		if (ret < 0) {
			shard_exit(s);
			ring_exit(&s->ring);
		}
	}
	if (ret == 0)	/* a take-over's state, before main frees it */
		eng_handover_install(s);
	s->up = ret == 0;
	report_ready(s, ret);
	if (ret < 0)
		return false;
	arm_accept(s);
	arm_tick(s);
	return true;
}

/* After its last turn: mail posted before the last shard drained is
 * ours to free, then what the shard owns but its ring. */
static void shard_stop(struct eng_shard *s)
{
	ring_run(&s->ring, 0, dispatch, s);
	shard_exit(s);
}

void *eng_shard_main(void *arg)
{
	struct eng_shard *s = arg;
	uint64_t wait;

	if (!shard_start(s, NULL))
		return NULL;
	while (shard_turn(s, true, &wait) >= 0)
		;
	shard_stop(s);
	return NULL;
}

void *eng_worker_main(void *arg)
{
	struct eng_shard *first = arg;
	struct eng *e = first->eng;
	unsigned step = e->cfg.threads, alive = 0, i;
	struct ring_set set;
	bool *done;
	int ret;

	done = calloc(e->cfg.shards, sizeof(*done));
	ret = done ? ring_set_init(&set, e->cfg.shards / step + 1) : -ENOMEM;
	for (i = first->id; i < e->cfg.shards; i += step) {
		if (ret < 0)		/* each of ours says why it is not up */
			report_ready(&e->shards[i], ret);
		else if (shard_start(&e->shards[i], &set))
			alive++;
		else
			done[i] = true;
	}
	while (alive) {
		uint64_t sleep = UINT64_MAX;
		bool busy = false;

		for (i = first->id; i < e->cfg.shards; i += step) {
			struct eng_shard *s = &e->shards[i];
			uint64_t wait;
			int n;

			if (done[i])
				continue;
			n = shard_turn(s, false, &wait);
			if (n < 0) {
				shard_stop(s);
				done[i] = true;
				alive--;
				continue;
			}
			busy |= n > 0;
			if (wait && wait < sleep)
				sleep = wait;
		}
		/*
		 * Idle: sleep until a ring has completions. The polls were
		 * armed before this turn looked at each CQ, so none is
		 * missed; with work, only take what they reported.
		 */
		if (alive)	/* on an error the next turn runs them all */
			(void)ring_set_wait(&set, busy ? 0 : sleep);
	}
	if (ret == 0)
		ring_set_exit(&set);
	free(done);
	return NULL;
}
