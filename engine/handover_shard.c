/* SPDX-License-Identifier: MIT */
/*
 * handover_shard.c: a take-over as each shard sees it, on its own thread
 * (handover.h). In the old process the shard follows e->ho->phase on its
 * tick: FREEZE stops the requests that change state and acks once no
 * publish of its clients is still being sequenced; DUMP writes its
 * histories and inboxes out; DRAIN (the new process accepts) stops its
 * accept, closes its listener and its clients in waves (--drain-rate
 * over all shards); IDLE again after a freeze means the take-over
 * failed: serve as before. In the new process, a shard
 * installs at start what the old process's state holds that it owns.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "chan.h"
#include "conn.h"
#include "handover.h"
#include "hist.h"
#include "inbox.h"
#include "mail.h"
#include "timer.h"
#include "ud.h"
#include "user.h"

/* One state record for @s, if it owns the record's channel or user. */
static int install_one(struct eng_shard *s, uint8_t kind, struct eng_ho_rd *r)
{
	uint16_t len = eng_ho_get_u16(r);
	const char *name = (const char *)eng_ho_get(r, len);

	if (!name || !len || len > ENG_CHAN_MAX + 2)
		return -EBADMSG;
	if (eng_mail_owner(s->eng, eng_chan_hash(name, len)) != s->id)
		return 0;
	if (kind == ENG_HO_R_HIST)
		return eng_hist_load(s, name, len, r);
	return eng_inbox_load(s, name, len, r);
}

unsigned eng_handover_install(struct eng_shard *s)
{
	struct eng_handover *ho = s->eng->ho;
	struct eng_ho_rd r;
	unsigned got = 0;

	if (!ho)
		return 0;
	s->ho_noaccept = atomic_load(&ho->hold);	/* none until all up */
	if (!ho->install)
		return 0;
	r = (struct eng_ho_rd){ ho->state.p, ho->state.len, 0, false };
	while (r.off < r.len) {
		uint8_t kind = eng_ho_get_u8(&r);
		uint32_t len = eng_ho_get_u32(&r);
		struct eng_ho_rd rec = { eng_ho_get(&r, len), len, 0, false };
		int ret;

		if (r.err) {
			fprintf(stderr, "ringcast: take-over: shard %u: the "
				"state is cut short\n", s->id);
			break;
		}
		/* a kind this version does not know is skipped whole */
		if (kind != ENG_HO_R_HIST && kind != ENG_HO_R_INBOX)
			continue;
		ret = install_one(s, kind, &rec);
		if (ret < 0) {
			fprintf(stderr, "ringcast: take-over: shard %u: a state "
				"record: %s\n", s->id, strerror(-ret));
			continue;
		}
		if (ret > 0) {
			got++;
			atomic_fetch_add(kind == ENG_HO_R_HIST ? &ho->hists :
					 &ho->inboxes, 1);
		}
	}
	return got;
}

/*
 * Whether a publish of one of @s's clients still waits for its answer,
 * or (live) a quiesced connection's recv has not ended yet: what it
 * still reads is done before the state is written.
 */
static bool publishing(const struct eng_shard *s)
{
	for (uint32_t i = 0; i < s->nr_conns; i++) {
		const struct eng_conn *c = &s->conns[i];

		if (c->state != ENG_CONN_FREE && ((c->flags & ENG_CONN_F_WAIT) ||
		    ((c->flags & ENG_CONN_F_RECV) && eng_conn_ho_quiet(s, c))))
			return true;
	}
	return false;
}

static void ack(struct eng_shard *s, int phase)
{
	s->ho_done = phase;
	atomic_fetch_add(&s->eng->ho->acked, 1);
}

/*
 * Serving as before a failed hand-over: acked once per failure, so that
 * the next take-over starts only once every shard resumed its own.
 */
static void idle_ack(struct eng_shard *s)
{
	unsigned g = atomic_load(&s->eng->ho->idle_gen);

	if (s->ho_idle_gen == g)
		return;
	s->ho_idle_gen = g;
	atomic_fetch_add(&s->eng->ho->acked, 1);
}

/* Writes @s's histories and inboxes out, for the thread to send. */
static void dump(struct eng_shard *s)
{
	struct eng_ho_buf *b = eng_malloc(sizeof(*b));
	unsigned n;

	if (!b)
		return;		/* the thread sees no dump and aborts */
	memset(b, 0, sizeof(*b));
	n = eng_hist_dump(s, b);
	atomic_fetch_add(&s->eng->ho->hists, n);
	n = eng_inbox_dump(s, b);
	atomic_fetch_add(&s->eng->ho->inboxes, n);
	if (b->err) {
		eng_ho_buf_free(b);
		eng_free(b);
		return;
	}
	s->ho_dump = b;
}

/*
 * One wave: @s's share of --drain-rate for a tick, told to reconnect
 * (1012; Pusher's 4200); kept-alive HTTP connections just closed.
 */
static void wave(struct eng_shard *s)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	uint64_t cost = 1000ull * cfg->shards;

	s->ho_credit += (uint64_t)cfg->drain_rate * ENG_TICK_MS;
	/* on from where the last wave stopped: each looks at a slot once */
	for (uint32_t k = 0; k < s->nr_conns && s->ho_credit >= cost; k++) {
		struct eng_conn *c = &s->conns[s->ho_next];

		s->ho_next = s->ho_next + 1 < s->nr_conns ? s->ho_next + 1 : 0;

		if (c->state == ENG_CONN_WS) {
			eng_conn_restart(s, c);
		} else if (c->state == ENG_CONN_HTTP && !c->sq_head &&
			   !(c->flags & (ENG_CONN_F_WAIT | ENG_CONN_F_SEND))) {
			/* idle between requests: an answer is never cut */
			eng_conn_kill(s, c);
		} else {
			continue;
		}
		s->ho_credit -= cost;
		atomic_fetch_add(&s->eng->ho->drained, 1);
	}
	/* credit is not saved up past a wave: a pause must not burst */
	if (s->ho_credit > (uint64_t)cfg->drain_rate * ENG_TICK_MS + cost)
		s->ho_credit = (uint64_t)cfg->drain_rate * ENG_TICK_MS + cost;
}

/* ---- a live hand-over, the old process's side ---------------------------- */

#define SAVE_WAIT_MS	2000	/* for the last reads and sends to end */
#define STOP_BATCH	256	/* recv cancels between two flushes */

static uint64_t now_ms(void)
{
	return eng_now_ns() / 1000000;
}

/* FREEZE, live: every connection that may be carried stops reading. */
static void quiesce(struct eng_shard *s)
{
	size_t words = (s->nr_conns + 63) / 64;

	s->ho_bits = eng_malloc(words * sizeof(uint64_t));
	s->ho_live = eng_malloc(sizeof(*s->ho_live));
	if (!s->ho_bits || !s->ho_live) {
		eng_free(s->ho_bits);
		eng_free(s->ho_live);
		s->ho_bits = NULL;
		s->ho_live = NULL;	/* SAVE finds none: all drained */
		return;
	}
	memset(s->ho_bits, 0, words * sizeof(uint64_t));
	memset(s->ho_live, 0, sizeof(*s->ho_live));
	/*
	 * The kernel finds a recv to cancel in a hash chain of its armed
	 * requests (256 chains at most), newest first, and a cancelled one
	 * leaves its chain only once the ring's deferred work has run. One
	 * cancel each from the first slot on walked every chain to its end
	 * (seconds at a million): from the last slot on, the newest recv
	 * is met first, and a flush every STOP_BATCH cancels clears the
	 * chains' heads of the cancelled ones.
	 */
	for (uint32_t i = s->nr_conns, n = 0; i-- > 0;) {
		if (!eng_conn_ho_stop(s, &s->conns[i]) ||
		    ++n % STOP_BATCH != 0)
			continue;
		ring_flush(&s->ring);
	}
}

/* @c's record; false: it stays, to be drained. Its fd comes later. */
static bool save_one(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_ho_live *l = s->ho_live;
	size_t off = l->recs.len;
	uint32_t slot = eng_slot(s, c);

	if (l->n == l->cap) {
		uint32_t cap = l->cap ? l->cap * 2 : 256;
		struct eng_ho_out *v = eng_realloc(l->v, cap * sizeof(*v));

		if (!v)
			return false;
		l->v = v;
		l->cap = cap;
	}
	if (eng_conn_ho_save(s, c, &l->recs) < 0)
		return false;
	/* one record goes in one message: a larger queue is drained */
	if (l->recs.len - off > ENG_HO_MAX_REC) {
		l->recs.len = off;
		return false;
	}
	l->v[l->n++] = (struct eng_ho_out){ slot, ENG_HO_FD_WAIT,
					    (uint32_t)off,
					    (uint32_t)(l->recs.len - off) };
	eng_conn_ho_handed(s, c);
	return true;
}

/* Entry @i of @l got no fd: its connection serves on, and is drained. */
static void no_fd(struct eng_shard *s, struct eng_ho_live *l, uint32_t i)
{
	struct eng_conn *c = &s->conns[l->v[i].slot];

	__atomic_store_n(&l->v[i].fd, ENG_HO_FD_FAILED, __ATOMIC_RELEASE);
	if (c->state == ENG_CONN_HANDED)
		eng_conn_ho_resume(s, c);
	atomic_fetch_add(&s->eng->ho->fallbacks[ENG_HO_FB_CONN], 1);
}

/*
 * The fds the thread asks for now (a window ahead of what it has sent
 * and closed): a regular fd for each connection's socket, io_uring's
 * direct descriptor installed (Linux 6.8; the direct one stays ours),
 * an epoll socket dup()ed.
 */
static void feed(struct eng_shard *s)
{
	struct eng_ho_live *l = s->ho_live;
	uint32_t want;

	if (!l || !l->saved)
		return;
	want = atomic_load(&l->want);
	while (l->next < want && l->next < l->n) {
		uint32_t i = l->next++;

		/* the entry's index rides in the gen's place: no lookup */
		if (ring_fd_install(&s->ring, l->v[i].slot,
				    ring_ud(ENG_OP_HO_FD, l->v[i].slot, i)) == 0)
			l->pending++;
		else
			no_fd(s, l, i);
	}
}

/*
 * SAVE: sends pending are ended first, then, once nothing of the
 * quiesced connections is on its way (or SAVE_WAIT_MS passed), each is
 * written out and the phase acked; their fds are made as the thread
 * asks (feed). Looked at after every turn: completions move it on.
 */
static void save(struct eng_shard *s, int phase)
{
	struct eng_ho_live *l = s->ho_live;
	bool busy = false;

	if (!l) {
		ack(s, phase);
		return;
	}
	if (!l->stopped) {
		/* what they asked is answered first (a history read, ...) */
		struct eng_ho_buf scratch = { 0 };
		bool waits = false;

		/* ... and a TLS handshake under way ends, to be carried */
		for (uint32_t i = 0; i < s->nr_conns && !waits; i++)
			waits = (eng_conn_ho_quiet(s, &s->conns[i]) &&
				 eng_conn_ho_settled(s, &s->conns[i],
						     &scratch) == -EAGAIN) ||
				eng_conn_ho_later(s, &s->conns[i]);
		eng_ho_buf_free(&scratch);
		if (!l->until)
			l->until = now_ms() + SAVE_WAIT_MS;
		if (waits && now_ms() < l->until)
			return;
		l->until = 0;
		s->ho_mute = true;
		for (uint32_t i = 0; i < s->nr_conns; i++)
			if (eng_conn_ho_quiet(s, &s->conns[i]))
				eng_conn_ho_stop_send(s, &s->conns[i]);
		l->stopped = true;
		return;
	}
	if (!l->saved) {
		for (uint32_t i = 0; i < s->nr_conns && !busy; i++)
			busy = eng_conn_ho_quiet(s, &s->conns[i]) &&
			       eng_conn_ho_busy(&s->conns[i]);
		if (!l->until)
			l->until = now_ms() + SAVE_WAIT_MS;
		if (busy && now_ms() < l->until)
			return;
		for (uint32_t i = 0; i < s->nr_conns; i++) {
			struct eng_conn *c = &s->conns[i];

			if (!eng_conn_ho_quiet(s, c) || save_one(s, c))
				continue;
			/* not carried: it serves on, and is drained */
			fprintf(stderr, "ringcast: hand-over: shard %u: slot %u "
				"(state %u, kind %u, flags 0x%x%s) not carried: "
				"drained\n", s->id, i, c->state, c->kind,
				c->flags, c->rx ? ", bytes held" : "");
			eng_conn_ho_resume(s, c);
			atomic_fetch_add(&s->eng->ho->fallbacks[ENG_HO_FB_CONN],
					 1);
		}
		l->failed = l->recs.err;
		l->saved = true;
	}
	ack(s, phase);
}

void eng_handover_on_fd(struct eng_shard *s, struct ring_cqe *cqe)
{
	struct eng_ho_live *l = s->ho_live;
	uint32_t i = ring_ud_gen(cqe->user_data);

	if (!l || i >= l->n || l->v[i].fd != ENG_HO_FD_WAIT) {
		if (cqe->res >= 0)
			close(cqe->res);	/* the hand-over ended meanwhile */
		return;
	}
	l->pending--;
	/* the thread reads it: the release pairs with its acquire */
	if (cqe->res >= 0)
		__atomic_store_n(&l->v[i].fd, cqe->res, __ATOMIC_RELEASE);
	else	/* an old kernel: it serves on, and is drained */
		no_fd(s, l, i);
}

/* @l (NULL: none) and the fds and records it still holds. */
static void live_free(struct eng_ho_live *l)
{
	if (!l)
		return;
	for (uint32_t i = 0; i < l->n; i++)
		if (l->v[i].fd >= 0)
			close(l->v[i].fd);
	eng_ho_buf_free(&l->recs);
	eng_free(l->v);
	eng_free(l);
}

/*
 * The hand-over's end: @handed (READY came), the connections written out
 * are the new process's and forgotten here; else everything quiesced
 * serves on as it was. The thread has closed the fds it sent.
 */
static void live_end(struct eng_shard *s, bool handed)
{
	struct eng_ho_live *l = s->ho_live;

	for (uint32_t i = 0; s->ho_bits && i < s->nr_conns; i++) {
		struct eng_conn *c = &s->conns[i];

		if (c->state == ENG_CONN_HANDED && handed)
			eng_conn_ho_forget(s, c);
		else if (c->state == ENG_CONN_HANDED || eng_conn_ho_quiet(s, c))
			eng_conn_ho_resume(s, c);
	}
	eng_free(s->ho_bits);
	s->ho_bits = NULL;
	s->ho_mute = false;
	if (l && l->pending)
		return;	/* installs on their way close their fds (on_fd) */
	live_free(l);
	s->ho_live = NULL;
}

void eng_handover_shard_exit(struct eng_shard *s)
{
	eng_free(s->ho_bits);
	s->ho_bits = NULL;
	live_free(s->ho_live);
	s->ho_live = NULL;
}

/* ---- a live hand-over, the new process's side ---------------------------- */

/* Whether @s's installed connections' channels and users are registered. */
static bool registered(struct eng_shard *s)
{
	for (uint32_t i = 0; i < s->nr_conns; i++) {
		const struct eng_conn *c = &s->conns[i];

		if (!eng_conn_ho_quiet(s, c) || !eng_conn_alive(c))
			continue;
		/* a user counted by its owner (push.c's rejoin) */
		if (c->kind == ENG_CONN_K_PUSH && c->auth &&
		    !(c->flags & ENG_CONN_F_ADMITTED))
			return false;
		for (const struct eng_sub *sub = c->subs; sub; sub = sub->cnext)
			if (sub->chan->name[0] != ENG_USER_MARK &&
			    (sub->chan->pending || !sub->chan->registered))
				return false;
	}
	return true;
}

#define REGISTER_MS	5000	/* at most, for the owners' answers */

/* One received connection on a free slot of ours, quiet; fd goes. */
static void adopt(struct eng_shard *s, int fd, struct eng_ho_rd *rec)
{
	struct eng_handover *ho = s->eng->ho;
	int slot;

	/* io_uring: a free slot of ours; epoll: the fd's number */
	while (s->ho_next < s->nr_conns &&
	       s->conns[s->ho_next].state != ENG_CONN_FREE)
		s->ho_next++;
	slot = ring_adopt(&s->ring, fd, s->ho_next);
	if (slot < 0 || (uint32_t)slot >= s->nr_conns ||
	    eng_conn_ho_load(s, (uint32_t)slot, rec) < 0) {
		atomic_fetch_add(&ho->fallbacks[ENG_HO_FB_CONN], 1);
		return;
	}
	atomic_fetch_add(&ho->live_conns, 1);
}

/*
 * What main queued for @s since the last look: each adopted (its regular
 * fd into the fixed-file table and closed), loaded, left quiet.
 */
static void take_in(struct eng_shard *s)
{
	struct eng_handover *ho = s->eng->ho;
	struct eng_ho_inq *q = &ho->inq[s->id];
	struct eng_ho_buf recs;
	struct eng_ho_rd r;
	unsigned n;
	int *fds;

	if (!s->ho_bits) {
		s->ho_bits = eng_malloc((s->nr_conns + 63) / 64 * 8);
		if (!s->ho_bits)
			return;	/* on the next look; main waits for it */
		memset(s->ho_bits, 0, (s->nr_conns + 63) / 64 * 8);
	}
	pthread_mutex_lock(&q->lock);
	recs = q->recs;
	fds = q->fds;
	n = q->n;
	memset(&q->recs, 0, sizeof(q->recs));
	q->fds = NULL;
	q->n = q->cap = 0;
	pthread_mutex_unlock(&q->lock);
	r = (struct eng_ho_rd){ recs.p, recs.len, 0, false };
	for (unsigned i = 0; i < n; i++) {
		uint32_t len = eng_ho_get_u32(&r);
		struct eng_ho_rd rec = { eng_ho_get(&r, len), len, 0, false };

		if (r.err) {	/* main wrote it: cannot be, but bounded */
			close(fds[i]);
			atomic_fetch_add(&ho->fallbacks[ENG_HO_FB_CONN], 1);
		} else {
			adopt(s, fds[i], &rec);
		}
		atomic_fetch_sub(&ho->fds_out, 1);
	}
	eng_ho_buf_free(&recs);
	eng_free(fds);
}

/* Each quiet connection of @s through @fn; none is quiet after. */
static void end_quiet(struct eng_shard *s,
		      void (*fn)(struct eng_shard *, struct eng_conn *))
{
	for (uint32_t i = 0; s->ho_bits && i < s->nr_conns; i++)
		if (eng_conn_ho_quiet(s, &s->conns[i]))
			fn(s, &s->conns[i]);
	eng_free(s->ho_bits);
	s->ho_bits = NULL;
}

/*
 * The old process went before every connection came: ours are its
 * still (it resumes them), so they go without a byte on the wire.
 */
static void let_go(struct eng_shard *s)
{
	end_quiet(s, eng_conn_ho_forget);
	s->ho_conns_in = 4;
	atomic_fetch_add(&s->eng->ho->lost_acked, 1);
}

/* The last shard registered: every other one resumes at once. */
static void wake_others(struct eng_shard *s)
{
	struct eng *e = s->eng;

	for (unsigned i = 0; i < e->cfg.shards; i++)
		if (i != s->id && e->shards[i].up)
			ring_mbox_post(&s->ring, &e->shards[i].ring,
				       ring_ud(ENG_OP_HO_WAKE, 0, 0), 0,
				       ring_ud(ENG_OP_MBOX_ERR, 0, 0));
}

/*
 * The new process, on each wake-up from main (a batch queued), each turn
 * while it waits and each tick: this shard's share adopted as it comes
 * (quiet); once main has all, and its subscriptions are registered,
 * counted; once every shard's are, its connections read and send: a
 * publish read before then could miss a subscriber of another shard.
 */
static void live_in(struct eng_shard *s)
{
	struct eng_handover *ho = s->eng->ho;
	bool all;

	if (s->ho_conns_in == 0) {
		all = atomic_load(&ho->live_go);	/* before the queue */
		if (atomic_load(&ho->lost)) {
			let_go(s);
			return;
		}
		take_in(s);
		if (!all)
			return;
		s->ho_until = now_ms() + REGISTER_MS;
		s->ho_conns_in = 1;
	}
	if (s->ho_conns_in == 1) {
		if (!registered(s) && now_ms() < s->ho_until)
			return;
		s->ho_conns_in = 2;
		if (atomic_fetch_add(&ho->live_done, 1) + 1 ==
		    s->eng->cfg.shards)
			wake_others(s);
	}
	if (s->ho_conns_in == 2) {
		if (atomic_load(&ho->live_done) < s->eng->cfg.shards)
			return;
		end_quiet(s, eng_conn_ho_resume);
		s->ho_next = 0;
		s->ho_conns_in = 3;
		atomic_fetch_add(&ho->live_armed, 1);
	}
}

/* Whether @s's step waits on completions (or on another shard's). */
static bool busy(const struct eng_shard *s, int phase)
{
	if (s->stopping)
		return false;
	if (s->ho_conns_in == 1 || s->ho_conns_in == 2)
		return true;
	return (phase == ENG_HO_FREEZE || phase == ENG_HO_SAVE) &&
	       s->ho_done != phase;
}

static int step(struct eng_shard *s, bool tick);

int eng_handover_tick(struct eng_shard *s, bool tick)
{
	struct eng_handover *ho = s->eng->ho;
	int ret;

	if (!ho)
		return 0;
	ret = step(s, tick);
	s->ho_busy = busy(s, atomic_load(&ho->phase));
	return ret;
}

static int step(struct eng_shard *s, bool tick)
{
	struct eng_handover *ho = s->eng->ho;
	int phase = atomic_load(&ho->phase);

	if (s->stopping)
		return 0;
	switch (phase) {
	case ENG_HO_IDLE:
		if (ho->streaming && s->ho_conns_in != 4) {
			live_in(s);
			if (s->ho_conns_in < 3)
				return 0;	/* accept once they all run */
		}
		/* the old process: the hand-over failed */
		if ((s->ho_bits && s->ho_frozen) || s->ho_live)
			live_end(s, false);
		if ((!s->ho_frozen && !s->ho_noaccept) || atomic_load(&ho->hold)) {
			idle_ack(s);
			return 0;
		}
		/* every shard is up, or the take-over failed: serve */
		if (s->ho_dump) {	/* written, never collected */
			eng_ho_buf_free(s->ho_dump);
			eng_free(s->ho_dump);
			s->ho_dump = NULL;
		}
		s->ho_frozen = s->ho_noaccept = false;
		s->ho_done = ENG_HO_IDLE;
		idle_ack(s);
		/* a new process on epoll may have made it non-blocking */
		if (!s->eng->cfg.epoll && s->listen_fd >= 0)
			fcntl(s->listen_fd, F_SETFL,
			      fcntl(s->listen_fd, F_GETFL) & ~O_NONBLOCK);
		return ENG_HO_ACCEPT_ON;
	case ENG_HO_FREEZE:
		if (!s->ho_frozen) {	/* accepting on: until READY */
			s->ho_frozen = true;
			s->ho_credit = 0;
			if (!ho->live) {
				if (!publishing(s))
					ack(s, phase);
				return 0;
			}
			/*
			 * Live: what is open stops reading, and new clients
			 * wait in the listeners' queue for the new process
			 * (the sockets are shared): one accepted now would
			 * only be drained. Acked on a later tick, once the
			 * recvs have ended.
			 */
			quiesce(s);
			s->ho_noaccept = true;
			return ENG_HO_ACCEPT_OFF;
		}
		if (s->ho_done != phase && !publishing(s))
			ack(s, phase);
		return 0;
	case ENG_HO_DUMP:
		if (s->ho_done != phase) {
			dump(s);
			ack(s, phase);
		}
		return 0;
	case ENG_HO_SAVE:
		if (s->ho_done != phase)
			save(s, phase);
		else
			feed(s);	/* the thread asks for fds */
		return 0;
	case ENG_HO_DRAIN:
		if (s->ho_done != phase) {
			/* the new process accepts now: we stop */
			if (s->ho_bits || s->ho_live)
				live_end(s, true);
			s->ho_noaccept = true;
			ack(s, phase);
			return ENG_HO_ACCEPT_OFF;
		}
		/*
		 * Once the accept's cancel is done, the listener goes (the
		 * new process holds it): closed earlier, epoll would still
		 * watch the socket under a number that may be reused.
		 */
		if (s->listen_fd >= 0 && !s->accepting) {
			close(s->listen_fd);
			s->listen_fd = -1;
		}
		if (tick)	/* paced by the tick, not by mail */
			wave(s);
		return 0;
	default:
		return 0;
	}
}
