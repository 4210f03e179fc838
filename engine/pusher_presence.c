/* SPDX-License-Identifier: MIT */
/*
 * pusher_presence.c: the members of this node's presence channels
 * (pusher_eng.h). A member is a user id with the user_info of its first
 * connection and a count of its connections in the channel; its first
 * connection is announced with pusher_internal:member_added, its last
 * one's leaving with member_removed, each to the channel's other
 * subscribers. One table for the node, under a mutex: joining a presence
 * channel is rare beside the fan-out. Across nodes (Redis) each node
 * knows only its own members so far.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "chan.h"
#include "frame.h"
#include "pub.h"
#include "pusher_eng.h"

struct member {
	char *id;		/* user_id's JSON, as sent */
	char *id_str;		/* ... unescaped: who the member is */
	char *info;		/* user_info's JSON, or NULL */
	size_t id_len, str_len, info_len;
	unsigned conns;		/* its connections in the channel */
};

struct pchan {
	struct pchan *next;
	char name[ENG_CHAN_MAX + 1];	/* the engine's name */
	size_t len;
	struct member *v;
	unsigned n, cap;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pchan *chans;	/* few: a list will do */

static struct pchan *pchan_find(const char *name, size_t len, bool make)
{
	struct pchan *pc;

	for (pc = chans; pc; pc = pc->next)
		if (pc->len == len && !memcmp(pc->name, name, len))
			return pc;
	if (!make)
		return NULL;
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return NULL;
	memcpy(pc->name, name, len);
	pc->len = len;
	pc->next = chans;
	chans = pc;
	return pc;
}

static void pchan_drop(struct pchan *pc)
{
	struct pchan **pp;

	for (pp = &chans; *pp != pc; pp = &(*pp)->next)
		;
	*pp = pc->next;
	free(pc->v);
	free(pc);
}

static struct member *member_find(struct pchan *pc, const char *id, size_t len)
{
	for (unsigned i = 0; i < pc->n; i++)
		if (pc->v[i].str_len == len && !memcmp(pc->v[i].id_str, id, len))
			return &pc->v[i];
	return NULL;
}

static char *copy(struct json_slice v)
{
	char *p = v.p ? malloc(v.len + 1) : NULL;

	if (p) {
		memcpy(p, v.p, v.len);
		p[v.len] = '\0';
	}
	return p;
}

static void member_free(struct member *m)
{
	free(m->id);
	free(m->id_str);
	free(m->info);
}

/* Adds @mb to @pc with one connection; false: no memory. */
static bool member_add(struct pchan *pc, const struct pusher_member *mb)
{
	struct member m = {
		.id = copy(mb->id), .id_str = copy(mb->id_str),
		.info = copy(mb->info), .id_len = mb->id.len,
		.str_len = mb->id_str.len, .info_len = mb->info.len,
		.conns = 1,
	};

	if (pc->n == pc->cap) {
		unsigned cap = pc->cap ? 2 * pc->cap : 4;
		struct member *v = realloc(pc->v, cap * sizeof(*v));

		if (v) {
			pc->v = v;
			pc->cap = cap;
		}
	}
	if (!m.id || !m.id_str || (mb->info.p && !m.info) || pc->n == pc->cap) {
		member_free(&m);
		return false;
	}
	pc->v[pc->n++] = m;
	return true;
}

/*
 * One connection of @m less in @pc: the member goes with its last, the
 * channel with its last member. True when the member went.
 */
static bool uncount(struct pchan *pc, struct member *m)
{
	if (--m->conns)
		return false;
	member_free(m);
	*m = pc->v[--pc->n];
	if (!pc->n)
		pchan_drop(pc);
	return true;
}

/*
 * Publishes @ev (an event's JSON, @n bytes, taken as is: it may name a
 * connection to skip, frame.h) to the engine channel @name on this
 * node, with nobody to answer.
 */
static void announce(struct eng_shard *s, const char *name, size_t len,
		     char *ev, ssize_t n)
{
	struct eng_buf *f;

	if (n < 0)
		return;
	f = eng_pub_frame(name, len, (const uint8_t *)ev, (size_t)n, true);
	if (f)
		eng_pub_inject(&s->mail, f);
}

/* The event in @out after ENG_FRAME_SKIP "SID" (its length), or -ENOSPC. */
static ssize_t skipping(char *out, size_t cap, struct json_slice sid,
			ssize_t (*enc)(char *, size_t, struct json_slice,
				       const struct pusher_member *),
			struct json_slice ch, const struct pusher_member *mb)
{
	size_t hl = sizeof(ENG_FRAME_SKIP) - 1 + sid.len + 1;
	ssize_t n;

	if (cap < hl + 2)
		return -ENOSPC;
	memcpy(out, ENG_FRAME_SKIP, hl - sid.len - 1);
	memcpy(out + hl - sid.len - 1, sid.p, sid.len);
	out[hl - 1] = '"';
	n = enc(out + hl, cap - hl, ch, mb);
	if (n < 0)
		return n;
	out[hl] = ',';
	return (ssize_t)hl + n;
}

static size_t member_bytes(const struct pusher_member *mb)
{
	return 64 + 2 * json_escape_max(mb->id.len + mb->info.len);
}

int eng_pusher_join(struct eng_shard *s, const char *name, size_t len,
		    struct json_slice ch, struct json_slice sid,
		    const struct pusher_member *mb, struct eng_buf **ok)
{
	struct pusher_member *all = NULL;
	struct member *m;
	struct pchan *pc;
	size_t cap = 128 + 2 * json_escape_max(ch.len), ecap;
	char *o = NULL, *ev = NULL;
	ssize_t n = -ENOMEM;
	bool first = false;

	pthread_mutex_lock(&lock);
	pc = pchan_find(name, len, true);
	m = pc ? member_find(pc, mb->id_str.p, mb->id_str.len) : NULL;
	if (m) {
		m->conns++;
	} else if (pc && pc->n < ENG_PUSHER_MEMBERS_MAX &&
		   member_add(pc, mb)) {
		first = true;
		m = &pc->v[pc->n - 1];
	} else {
		if (pc && pc->n >= ENG_PUSHER_MEMBERS_MAX)
			n = -E2BIG;
		else if (pc && !pc->n)
			pchan_drop(pc);	/* made for nobody */
		goto out;
	}
	all = calloc(pc->n, sizeof(*all));
	for (unsigned i = 0; all && i < pc->n; i++) {
		all[i] = (struct pusher_member){
			.id = { pc->v[i].id, pc->v[i].id_len },
			.id_str = { pc->v[i].id_str, pc->v[i].str_len },
			.info = { pc->v[i].info, pc->v[i].info_len },
		};
		cap += member_bytes(&all[i]);
	}
	*ok = all ? eng_buf_new(WS_MAX_SERVER_HDR + cap) : NULL;
	if (*ok) {
		o = (char *)(*ok)->data + WS_MAX_SERVER_HDR;
		n = pusher_enc_presence(o, cap, ch, all, pc->n);
	}
	ecap = 2 * json_escape_max(ch.len) + member_bytes(mb) + 128;
	if (n >= 0 && first && (ev = malloc(ecap)))
		announce(s, name, len, ev,
			 skipping(ev, ecap, sid, pusher_enc_member_added, ch,
				  mb));
	if (n < 0)
		uncount(pc, m);	/* not joined after all */
out:
	pthread_mutex_unlock(&lock);
	free(all);
	free(ev);
	if (n < 0) {
		if (*ok)
			eng_buf_put(*ok);
		*ok = NULL;
		return (int)n;
	}
	eng_buf_seal(*ok, (uint8_t *)o, WS_OP_TEXT, (size_t)n);
	return 0;
}

void eng_pusher_leave(struct eng_shard *s, const char *name, size_t len,
		      struct json_slice ch, struct json_slice sid,
		      struct json_slice id_str)
{
	struct pusher_member mb = { .id_str = id_str };
	struct member *m;
	struct pchan *pc;
	char *ev = NULL;
	size_t cap;

	pthread_mutex_lock(&lock);
	pc = pchan_find(name, len, false);
	m = pc ? member_find(pc, id_str.p, id_str.len) : NULL;
	if (m && m->conns == 1) {
		mb.id = (struct json_slice){ m->id, m->id_len };
		cap = 2 * json_escape_max(ch.len) + member_bytes(&mb) + 128;
		ev = malloc(cap);
		if (ev)
			announce(s, name, len, ev,
				 skipping(ev, cap, sid,
					  pusher_enc_member_removed, ch, &mb));
	}
	if (m)
		uncount(pc, m);
	pthread_mutex_unlock(&lock);
	free(ev);
}
