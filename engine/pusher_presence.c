/* SPDX-License-Identifier: MIT */
/*
 * pusher_presence.c: the members of this node's presence channels
 * (pusher_eng.h). A member is a user id with the user_info of its first
 * connection and a count of its connections in the channel; its first
 * connection is announced with pusher_internal:member_added, its last
 * one's leaving with member_removed, each to the channel's other
 * subscribers. On the embedded broker (and a Redis Cluster, so far) one
 * table for the node, under a mutex: joining a presence channel is rare
 * beside the fan-out. With one Redis, the members are Redis's, counted by
 * scripts (bridge_pusher.c) that publish member_added and member_removed
 * themselves, in the order Redis ran them, and the list comes back in the
 * join's answer. A user's watch channel (pusher_watch.c) is counted the
 * same way, with watchlist_events for member events.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "frame.h"
#include "pub.h"
#include "pusher_eng.h"
#include "rreq.h"
#include "sub.h"
#include "webhook.h"

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

/* One connection more of @mb in @name, unbounded; 0 or -ENOMEM. */
static int count_in(const char *name, size_t len,
		    const struct pusher_member *mb)
{
	struct member *m;
	struct pchan *pc;
	int ret = 0;

	pthread_mutex_lock(&lock);
	pc = pchan_find(name, len, true);
	m = pc ? member_find(pc, mb->id_str.p, mb->id_str.len) : NULL;
	if (m)
		m->conns++;
	else if (!pc || !member_add(pc, mb))
		ret = -ENOMEM;
	if (ret && pc && !pc->n)
		pchan_drop(pc);
	pthread_mutex_unlock(&lock);
	return ret;
}

/* One connection less of @id_str in @name, if it was counted. */
static void count_out(const char *name, size_t len, struct json_slice id_str)
{
	struct member *m;
	struct pchan *pc;

	pthread_mutex_lock(&lock);
	pc = pchan_find(name, len, false);
	m = pc ? member_find(pc, id_str.p, id_str.len) : NULL;
	if (m)
		uncount(pc, m);
	pthread_mutex_unlock(&lock);
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

/*
 * A user's watch channel (pusher_watch.c, "!w:..."), whose member is the
 * user itself, announces watchlist_events online and offline to the
 * connections watching it, not member events.
 */
static ssize_t watch_online(char *out, size_t cap, struct json_slice ch,
			    const struct pusher_member *mb)
{
	(void)ch;
	return pusher_enc_watchlist(out, cap, true, &mb->id_str, 1);
}

static ssize_t watch_offline(char *out, size_t cap, struct json_slice ch,
			     const struct pusher_member *mb)
{
	(void)ch;
	return pusher_enc_watchlist(out, cap, false, &mb->id_str, 1);
}

typedef ssize_t member_enc_fn(char *, size_t, struct json_slice,
			      const struct pusher_member *);

/* The member_added (@added) or member_removed of engine channel @name. */
static member_enc_fn *enc_of(const char *name, bool added)
{
	if (name[1] == ENG_PUSHER_WATCH)
		return added ? watch_online : watch_offline;
	return added ? pusher_enc_member_added : pusher_enc_member_removed;
}

unsigned eng_pusher_user_count(const char *name, size_t len)
{
	struct pchan *pc;
	unsigned n;

	pthread_mutex_lock(&lock);
	pc = pchan_find(name, len, false);
	n = pc ? pc->n : 0;
	pthread_mutex_unlock(&lock);
	return n;
}

/* A member webhook of engine channel @name's app, seen on this node. */
static void member_hook(const char *name, size_t len, const char *what,
			struct json_slice ch, struct json_slice uid)
{
	const char *id;
	size_t idl = eng_pusher_app_of(name, len, &id);

	eng_webhook_pusher_id(id, idl, &(struct eng_webhook_ev){
		.name = what, .channel = ch, .user_id = uid, .count = -1 });
}

static size_t member_bytes(const struct pusher_member *mb)
{
	return 64 + 2 * json_escape_max(mb->id.len + mb->info.len);
}

static int rjoin(struct eng_shard *s, struct eng_conn *c, const char *name,
		 size_t len, struct json_slice ch, struct json_slice sid,
		 const struct pusher_member *mb);
static void rleave(struct eng_shard *s, struct eng_conn *c, const char *name,
		   size_t len, struct json_slice id_str);

int eng_pusher_join(struct eng_shard *s, struct eng_conn *c,
		    const char *name, size_t len, struct json_slice ch,
		    struct json_slice sid, const struct pusher_member *mb,
		    struct eng_buf **ok)
{
	struct pusher_member *all = NULL;
	struct member *m;
	struct pchan *pc;
	size_t cap = 128 + 2 * json_escape_max(ch.len), ecap;
	char *o = NULL, *ev = NULL;
	ssize_t n = -ENOMEM;
	bool first = false;

	*ok = NULL;
	if (s->eng->redis)	/* one or a cluster */
		return rjoin(s, c, name, len, ch, sid, mb);
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
	if (n >= 0 && first && (ev = malloc(ecap))) {
		announce(s, name, len, ev,
			 skipping(ev, ecap, sid, enc_of(name, true), ch, mb));
		if (name[1] != ENG_PUSHER_WATCH)
			member_hook(name, len, "member_added", ch, mb->id_str);
	}
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

void eng_pusher_leave(struct eng_shard *s, struct eng_conn *c,
		      const char *name, size_t len, struct json_slice ch,
		      struct json_slice sid, struct json_slice id_str)
{
	struct pusher_member mb = { .id_str = id_str };
	struct member *m;
	struct pchan *pc;
	char *ev = NULL;
	size_t cap;

	if (s->eng->redis) {
		if (!eng_pusher_across(s))
			count_out(name, len, id_str);	/* joined_done's */
		rleave(s, c, name, len, id_str);
		return;
	}
	pthread_mutex_lock(&lock);
	pc = pchan_find(name, len, false);
	m = pc ? member_find(pc, id_str.p, id_str.len) : NULL;
	if (m && m->conns == 1) {
		mb.id = (struct json_slice){ m->id, m->id_len };
		cap = 2 * json_escape_max(ch.len) + member_bytes(&mb) + 128;
		ev = malloc(cap);
		if (ev)
			announce(s, name, len, ev,
				 skipping(ev, cap, sid, enc_of(name, false), ch,
					  &mb));
		if (name[1] != ENG_PUSHER_WATCH)
			member_hook(name, len, "member_removed", ch, id_str);
	}
	if (m)
		uncount(pc, m);
	pthread_mutex_unlock(&lock);
	free(ev);
}

/* ---- with one Redis --------------------------------------------------- */

bool eng_pusher_across(const struct eng_shard *s)
{
	return s->eng->redis == &eng_rreq_single;
}

bool eng_pusher_fields(char **p, char *end, struct json_slice *f, unsigned k)
{
	for (unsigned i = 0; i < k; i++) {
		char *z;

		if (*p > end)
			return false;
		z = memchr(*p, '\0', (size_t)(end - *p));
		if (!z)
			z = end;
		f[i] = (struct json_slice){ *p, (size_t)(z - *p) };
		*p = z + 1;
	}
	return true;
}

/* "ID\0STR\0INFO" triples in @blob into @v (at most @max); their count. */
static unsigned members_read(char *blob, size_t len, struct pusher_member *v,
			     unsigned max)
{
	struct json_slice f[3];
	unsigned n = 0;
	char *p = blob;

	while (len && n < max && eng_pusher_fields(&p, blob + len, f, 3))
		v[n++] = (struct pusher_member){ .id = f[0], .id_str = f[1],
			.info = f[2].len ? f[2] : (struct json_slice){ 0 } };
	return n;
}

/*
 * On a cluster a join's request carries its member's "ID\0STR\0INFO":
 * this node's own tally of its members (eng_pusher_user_count, which
 * counts per node there) takes it once Redis took the join, and the
 * member_added webhook goes from the node whose join was the first.
 */
struct join_arg {
	size_t len;
	char blob[];
};

/* The join's answer: @c (if still here) gets the channel's members. */
static void joined_done(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_conn *c = &s->conns[p->slot];
	struct json_slice ch = { p->text, strlen(p->text) };
	/* the engine's name after it (rjoin) */
	struct json_slice one = { p->text + ch.len + 1,
				  strlen(p->text + ch.len + 1) };
	struct pusher_member *v = NULL;
	struct eng_buf *b = NULL;
	size_t cap = 160 + 2 * json_escape_max(ch.len) + 2 * p->blob_len;
	ssize_t n = -ENOMEM;
	unsigned nv;

	if (p->arg) {	/* a cluster's: its webhook, its tally */
		struct join_arg *j = p->arg;
		struct pusher_member mb;

		if (p->result >= 0 && members_read(j->blob, j->len, &mb, 1)) {
			if (p->result == 1 && one.p[1] != ENG_PUSHER_WATCH)
				member_hook(one.p, one.len, "member_added", ch,
					    mb.id_str);
			/* left already: its leave found nothing to take */
			if (c->gen == p->gen && eng_conn_alive(c) &&
			    eng_sub_find(c, eng_chan_find(&s->chans, one.p,
					one.len, eng_chan_hash(one.p, one.len))))
				count_in(one.p, one.len, &mb);
		}
		free(j);
		p->arg = NULL;
	}
	/* gone: its leave, sent after the join, undoes it; a watch: no list */
	if (c->gen != p->gen || !eng_conn_alive(c) || !ch.len)
		return;
	if (p->result == -1) {	/* the script's "channel full" */
		eng_pusher_full(s, c, ch);
		return;
	}
	if (p->result < 0 || !p->blob ||
	    !(v = calloc(ENG_PUSHER_MEMBERS_MAX, sizeof(*v))) ||
	    !(b = eng_buf_new(WS_MAX_SERVER_HDR + cap)))
		goto out;
	nv = members_read(p->blob, p->blob_len, v, ENG_PUSHER_MEMBERS_MAX);
	n = pusher_enc_presence((char *)b->data + WS_MAX_SERVER_HDR, cap, ch,
				v, nv);
out:
	free(v);
	if (n < 0) {
		if (b)
			eng_buf_put(b);
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	eng_buf_seal(b, b->data + WS_MAX_SERVER_HDR, WS_OP_TEXT, (size_t)n);
	eng_pusher_behind(s, c, one, b);
}

void eng_pusher_behind(struct eng_shard *s, struct eng_conn *c,
		       struct json_slice name, struct eng_buf *b)
{
	/* subscribed already: eng_subscribe() only holds @b, if need be */
	if (!eng_sub_find(c, eng_chan_find(&s->chans, name.p, name.len,
					   eng_chan_hash(name.p, name.len))))
		eng_buf_put(b);		/* unsubscribed meanwhile */
	else if (eng_subscribe(s, c, &name, 1, b) < 0)
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

/* A cluster's leave: the last connection's webhook is sent here. */
static void left_done(struct eng_shard *s, struct eng_rreq *p)
{
	struct json_slice f[3];
	char *at = p->blob;

	(void)s;
	if (p->result == 1 && p->blob_len &&
	    eng_pusher_fields(&at, p->blob + p->blob_len, f, 3))
		eng_webhook_pusher_id(f[0].p, f[0].len, &(struct eng_webhook_ev){
			.name = "member_removed", .channel = f[1],
			.user_id = f[2], .count = -1 });
}

/* @mb as "ID\0STR\0INFO" into @out; its length. */
static size_t member_blob(char *out, const struct pusher_member *mb)
{
	size_t n = 0;

	memcpy(out, mb->id.p, mb->id.len);
	n += mb->id.len;
	out[n++] = '\0';
	memcpy(out + n, mb->id_str.p, mb->id_str.len);
	n += mb->id_str.len;
	out[n++] = '\0';
	if (mb->info.p)
		memcpy(out + n, mb->info.p, mb->info.len);
	return n + (mb->info.p ? mb->info.len : 0);
}

/*
 * What a script is told of member @mb of @name (@ch), joining on socket
 * @sid: its "ID\0STR\0INFO", its member_added (skipping @sid) and its
 * member_removed, into @v, in one malloc'd block returned (the caller
 * frees it). NULL: no memory, or an event that did not encode.
 */
static char *member_texts(const char *name, struct json_slice ch,
			  struct json_slice sid, const struct pusher_member *mb,
			  struct json_slice v[3])
{
	size_t ecap = 2 * json_escape_max(ch.len) + member_bytes(mb) + 128;
	size_t bl = mb->id.len + mb->id_str.len + mb->info.len + 2;
	char *mem = malloc(bl + 2 * ecap);
	ssize_t na, nr;

	if (!mem)
		return NULL;
	na = skipping(mem + bl, ecap, sid, enc_of(name, true), ch, mb);
	nr = enc_of(name, false)(mem + bl + ecap, ecap, ch, mb);
	if (na < 0 || nr < 0) {
		free(mem);
		return NULL;
	}
	v[0] = (struct json_slice){ mem, member_blob(mem, mb) };
	v[1] = (struct json_slice){ mem + bl, (size_t)na };
	v[2] = (struct json_slice){ mem + bl + ecap, (size_t)nr };
	return mem;
}

static int rjoin(struct eng_shard *s, struct eng_conn *c,
		 const char *name, size_t len, struct json_slice ch,
		 struct json_slice sid, const struct pusher_member *mb)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	char rch[ENG_CHAN_MAX + 128], *mem;
	char pn[PUSHER_ID_MAX + PUSHER_CHANNEL_MAX + 2];
	struct json_slice v[3];
	const char *argv[7], *id;
	size_t lens[7], idl = eng_pusher_app_of(name, len, &id);
	struct eng_rreq *p = NULL;

	mem = member_texts(name, ch, sid, mb, v);
	if (!mem)
		return -ENOMEM;
	argv[0] = cfg->node_id;
	lens[0] = strlen(cfg->node_id);
	argv[1] = rch;
	lens[1] = eng_rreq_channel(cfg, rch, sizeof(rch), name, len);
	argv[2] = mb->id_str.p;
	lens[2] = mb->id_str.len;
	for (unsigned i = 0; i < 3; i++) {
		argv[3 + i] = v[i].p;
		lens[3 + i] = v[i].len;
	}
	/* "APP\0CH", the webhooks' names; none for a watch channel */
	lens[6] = 0;
	if (name[1] != ENG_PUSHER_WATCH) {
		memcpy(pn, id, idl);
		pn[idl] = '\0';
		memcpy(pn + idl + 1, ch.p, ch.len);
		lens[6] = idl + 1 + ch.len;
	}
	argv[6] = pn;
	if (ch.len + len + 2 <= sizeof(p->text))
		p = eng_rreq_pusher(s->eng, ENG_PS_JOIN, 7, argv, lens);
	if (p && !eng_pusher_across(s)) {	/* a cluster's: joined_done */
		struct join_arg *j = malloc(sizeof(*j) + v[0].len);

		if (j) {
			j->len = v[0].len;
			memcpy(j->blob, v[0].p, v[0].len);
		} else {
			eng_free(p);
			p = NULL;
		}
		if (p)
			p->arg = j;
	}
	free(mem);
	if (!p)
		return -ENOMEM;
	/* "CH\0NAME\0": see joined_done; a watch channel has no CH (NULL) */
	if (ch.len)
		memcpy(p->text, ch.p, ch.len);
	p->text[ch.len] = '\0';
	memcpy(p->text + ch.len + 1, name, len);
	p->text[ch.len + 1 + len] = '\0';
	p->done = joined_done;
	if (!eng_pusher_across(s))
		eng_pusher_slot_register(s, argv[1], lens[1], p->hslot);
	return eng_rreq_send(s, c, p);
}

/* Connection @c of user @id_str left, with Redis. */
static void rleave(struct eng_shard *s, struct eng_conn *c, const char *name,
		   size_t len, struct json_slice id_str)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	char rch[ENG_CHAN_MAX + 128];
	const char *argv[3] = { cfg->node_id, rch, id_str.p };
	size_t lens[3] = { strlen(cfg->node_id), 0, id_str.len };
	struct eng_rreq *p;

	lens[1] = eng_rreq_channel(cfg, rch, sizeof(rch), name, len);
	p = eng_rreq_pusher(s->eng, ENG_PS_LEAVE, 3, argv, lens);
	if (p) {
		p->done = left_done;
		eng_rreq_send(s, c, p);
	}
}

/* ---- a live hand-over (pusher_ho.c) ------------------------------------ */

#define NODE_NEW_TTL	"5"	/* s: bridge_int.h's R_NODE_TTL, a node's key */

size_t eng_pusher_member_blob(const char *name, size_t len,
			      struct json_slice id_str, char **out)
{
	struct pusher_member mb;
	struct member *m;
	struct pchan *pc;
	size_t n = 0;

	*out = NULL;
	pthread_mutex_lock(&lock);
	pc = pchan_find(name, len, false);
	m = pc ? member_find(pc, id_str.p, id_str.len) : NULL;
	if (m) {
		mb = (struct pusher_member){
			.id = { m->id, m->id_len },
			.id_str = { m->id_str, m->str_len },
			.info = { m->info, m->info_len },
		};
		*out = malloc(m->id_len + m->str_len + m->info_len + 2);
		if (*out)
			n = member_blob(*out, &mb);
	}
	pthread_mutex_unlock(&lock);
	return n;
}

/*
 * ARGV: prefix, old node, new node, R, uid, member ("ID\0STR\0INFO"),
 * member_added, member_removed, the new node's key's TTL, the publish
 * command, "1" with one Redis (on a cluster the keys are R's slot's and
 * the node's key is not there). A connection
 * of uid in R moves from the old node's count to the new one's; every
 * node's total (pt) stays, so nothing is announced. When the old node's
 * count is gone already (it was reaped: its member_removed went out),
 * the connection joins again as eng_lua_pjoin does. Returns {0 moved |
 * 1 joined again, ""}.
 */
static const char pmove_lua[] =
	"local p, old, new, rch, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
	"local f = rch .. '\\0' .. u\n"
	"local nk = p .. 'node:' .. new\n"
	"if ARGV[11] == '1' then\n"
	"  if redis.call('EXISTS', nk) == 0 then\n"
	"    redis.call('SET', nk, 'new', 'EX', ARGV[9])\n"
	"  end\n"
	"  redis.call('SADD', p .. 'nodes', new)\n"
	"end\n"
	"redis.call('HINCRBY', p .. 'pq:' .. new, f, 1)\n"
	"local q = p .. 'pq:' .. old\n"
	"local n = tonumber(redis.call('HINCRBY', q, f, -1))\n"
	"if n <= 0 then redis.call('HDEL', q, f) end\n"
	"if n >= 0 then return {0, ''} end\n"
	"if redis.call('HINCRBY', p .. 'pt:' .. rch, u, 1) == 1 then\n"
	"  redis.call('HSET', p .. 'pm:' .. rch, u, ARGV[6])\n"
	"  redis.call('HSET', p .. 'pr:' .. rch, u, ARGV[8])\n"
	"  redis.call(ARGV[10], rch, ARGV[7])\n"
	"end\n"
	"return {1, ''}\n";

/* Redis's answer to a move: nothing to tell anyone. */
static void moved_done(struct eng_shard *s, struct eng_rreq *p)
{
	(void)s;
	(void)p;
}

static int rmove(struct eng_shard *s, struct eng_conn *c, const char *name,
		 size_t len, struct json_slice ch, struct json_slice sid,
		 const struct pusher_member *mb, const char *old)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	char rch[ENG_CHAN_MAX + 128], keys[ENG_RREQ_KEYS_MAX], *mem;
	const char *av[15] = { "EVAL", pmove_lua, "1", keys, keys, old,
			       cfg->node_id, rch, mb->id_str.p };
	size_t ls[15] = { 4, sizeof(pmove_lua) - 1, 1, 0, 0, strlen(old),
			  strlen(cfg->node_id), 0, mb->id_str.len };
	struct json_slice v[3];
	struct eng_rreq *p;
	uint16_t hslot;

	mem = member_texts(name, ch, sid, mb, v);
	if (!mem)
		return -ENOMEM;
	ls[7] = eng_rreq_channel(cfg, rch, sizeof(rch), name, len);
	ls[3] = ls[4] = eng_rreq_keys(s->eng, keys, sizeof(keys), rch, ls[7],
				      &hslot);
	for (unsigned i = 0; i < 3; i++) {
		av[9 + i] = v[i].p;
		ls[9 + i] = v[i].len;
	}
	av[12] = NODE_NEW_TTL;
	ls[12] = strlen(NODE_NEW_TTL);
	av[13] = s->eng->redis->publish;
	ls[13] = s->eng->redis->publish_len;
	av[14] = eng_pusher_across(s) ? "1" : "0";
	ls[14] = 1;
	p = eng_rreq_new(ENG_RQ_SCRIPT, 15, av, ls);
	free(mem);
	if (!p)
		return -ENOMEM;
	p->hslot = hslot;
	p->done = moved_done;
	if (!eng_pusher_across(s))
		eng_pusher_slot_register(s, rch, ls[7], hslot);
	return eng_rreq_send(s, c, p);
}

int eng_pusher_rejoin(struct eng_shard *s, struct eng_conn *c,
		      const char *name, size_t len, struct json_slice ch,
		      struct json_slice sid, const struct pusher_member *mb,
		      const char *old)
{
	int ret;

	if (!s->eng->redis)
		return count_in(name, len, mb);	/* no bound: it held it */
	if (!old || !*old)
		return -EINVAL;
	/* a cluster's own tally too, as a join's (joined_done) */
	ret = eng_pusher_across(s) ? 0 : count_in(name, len, mb);
	if (!ret)
		ret = rmove(s, c, name, len, ch, sid, mb, old);
	if (ret && !eng_pusher_across(s))
		count_out(name, len, mb->id_str);
	return ret;
}

void eng_pusher_carried_out(struct eng_shard *s, const char *name,
			    size_t len, struct json_slice id_str)
{
	/* one Redis: the new process's move takes it from our node's count */
	if (!eng_pusher_across(s))
		count_out(name, len, id_str);
}

/* ---- the HTTP API's user_count and users --------------------------------- */

/* {"users":[{"id":"ID"},...]} of @v[0..@n) into @out (big enough). */
static size_t users_json(char *out, const struct pusher_member *v, unsigned n)
{
	size_t w = 10;

	memcpy(out, "{\"users\":[", 10);
	for (unsigned i = 0; i < n; i++) {
		w += (size_t)sprintf(out + w, "%s{\"id\":", i ? "," : "");
		w += json_escape(out + w, v[i].id_str.p, v[i].id_str.len);
		out[w++] = '}';
	}
	memcpy(out + w, "]}\n", 3);
	return w + 3;
}

static void users_reply(struct eng_shard *s, struct eng_conn *c,
			const struct pusher_member *v, unsigned n)
{
	size_t cap = 16;
	char *out;

	for (unsigned i = 0; i < n; i++)
		cap += json_escape_max(v[i].id_str.len) + 10;
	out = malloc(cap);
	if (!out) {
		eng_conn_http_reply(s, c, 503, NULL, "application/json",
				    "{\"error\":\"out of memory\"}\n", 26);
		return;
	}
	eng_conn_http_reply(s, c, 200, NULL, "application/json", out,
			    users_json(out, v, n));
	free(out);
}

/* GET users' answer from Redis (eng_lua_pusers). */
static void users_done(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_conn *c = &s->conns[p->slot];
	struct pusher_member *v;

	if (c->gen != p->gen || !eng_conn_alive(c))
		return;
	c->flags &= ~ENG_CONN_F_WAIT;
	v = calloc(ENG_PUSHER_MEMBERS_MAX, sizeof(*v));
	if (p->result < 0 || !p->blob || !v)
		eng_conn_http_reply(s, c, 503, NULL, "application/json",
				    "{\"error\":\"redis could not be asked\"}\n",
				    36);
	else
		users_reply(s, c, v, members_read(p->blob, p->blob_len, v,
						  ENG_PUSHER_MEMBERS_MAX));
	free(v);
	eng_conn_resume(s, c);
}

void eng_pusher_users(struct eng_shard *s, struct eng_conn *c,
		      const char *name, size_t len)
{
	struct pusher_member v[ENG_PUSHER_MEMBERS_MAX];
	struct pchan *pc;
	unsigned n = 0;

	if (s->eng->redis) {
		char rch[ENG_CHAN_MAX + 128];
		const char *argv[1] = { rch };
		size_t lens[1];
		struct eng_rreq *p;

		lens[0] = eng_rreq_channel(&s->eng->cfg, rch, sizeof(rch), name,
					   len);
		p = eng_rreq_pusher(s->eng, ENG_PS_USERS, 1, argv, lens);
		if (!p) {
			eng_conn_http_reply(s, c, 503, NULL, "application/json",
					    "{\"error\":\"out of memory\"}\n",
					    26);
			return;
		}
		p->done = users_done;
		eng_rreq_send(s, c, p);
		return;
	}
	pthread_mutex_lock(&lock);
	pc = pchan_find(name, len, false);
	for (; pc && n < pc->n && n < ENG_PUSHER_MEMBERS_MAX; n++)
		v[n] = (struct pusher_member){
			.id_str = { pc->v[n].id_str, pc->v[n].str_len } };
	if (n)	/* the replies copy: answered under the lock */
		users_reply(s, c, v, n);
	pthread_mutex_unlock(&lock);
	if (!n)
		users_reply(s, c, v, 0);
}
