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

/* Whether a publish of one of @s's clients still waits for its answer. */
static bool publishing(const struct eng_shard *s)
{
	for (uint32_t i = 0; i < s->nr_conns; i++)
		if (s->conns[i].state != ENG_CONN_FREE &&
		    (s->conns[i].flags & ENG_CONN_F_WAIT))
			return true;
	return false;
}

static void ack(struct eng_shard *s, int phase)
{
	s->ho_done = phase;
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

int eng_handover_tick(struct eng_shard *s)
{
	struct eng_handover *ho = s->eng->ho;
	int phase = ho ? atomic_load(&ho->phase) : ENG_HO_IDLE;

	if (!ho || s->stopping)
		return 0;
	switch (phase) {
	case ENG_HO_IDLE:
		if ((!s->ho_frozen && !s->ho_noaccept) || atomic_load(&ho->hold))
			return 0;
		/* every shard is up, or the take-over failed: serve */
		if (s->ho_dump) {	/* written, never collected */
			eng_ho_buf_free(s->ho_dump);
			eng_free(s->ho_dump);
			s->ho_dump = NULL;
		}
		s->ho_frozen = s->ho_noaccept = false;
		s->ho_done = ENG_HO_IDLE;
		/* a new process on epoll may have made it non-blocking */
		if (!s->eng->cfg.epoll && s->listen_fd >= 0)
			fcntl(s->listen_fd, F_SETFL,
			      fcntl(s->listen_fd, F_GETFL) & ~O_NONBLOCK);
		return ENG_HO_ACCEPT_ON;
	case ENG_HO_FREEZE:
		if (!s->ho_frozen) {	/* accepting on: until READY */
			s->ho_frozen = true;
			s->ho_credit = 0;
			if (!publishing(s))
				ack(s, phase);
			return 0;
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
	case ENG_HO_DRAIN:
		if (s->ho_done != phase) {
			/* the new process accepts now: we stop */
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
		wave(s);
		return 0;
	default:
		return 0;
	}
}
