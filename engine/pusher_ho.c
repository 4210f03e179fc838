/* SPDX-License-Identifier: MIT */
/*
 * pusher_ho.c: a Pusher connection carried live to a new process
 * (handover.h, level 2; pusher_int.h). The core carries the connection's
 * own state (its queue, ticks, a frame half received); this file writes
 * and reads what the Pusher endpoint keeps, one versioned record a
 * connection (docs/PUSHER.md, "Live hand-over"): its socket_id, its
 * user, its client-event rate, its subscriptions, subscribed again in
 * the new process, and its presence joins; and counts again what lives
 * outside the connection: presence members (this node's table, or with
 * one Redis the old node's counts moved to this node's,
 * pusher_presence.c), subscription counts (pusher_count.c) and the
 * signed-in user's own watch channel. In the old process the same go
 * without a word as the connection is forgotten. Nothing is announced:
 * to every other client the connection never left.
 *
 * The subscriptions are the endpoint's to carry, not the core's: which
 * are counted, which are a user's or a watch's own, and what each name
 * is in Pusher's words (a hashed "!h:" name cannot be read back) is
 * known here only, and /ws (push.c) carries its own the same way.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "conn.h"
#include "handover.h"
#include "pusher_int.h"
#include "sub.h"

#define RECORD_V2	2	/* the record's version; 1 had no subscriptions */
#define NODE_MAX	39	/* eng_cfg.node_id's text */

static const struct pusher_app *app_at(struct eng_shard *s, unsigned i)
{
	return &s->eng->cfg.pusher->apps.v[i - 1];
}

/* Whether engine channel @name is a Pusher channel, counted (pusher_count.c). */
static bool counted(const char *name, size_t len)
{
	return len > 3 && name[0] == ENG_PUSHER_MARK &&
	       (name[1] == 'p' || name[1] == 'h') && name[2] == ':';
}

/* A string of at most 255 bytes, after its length. */
static void put_str8(struct eng_ho_buf *b, const char *p, size_t n)
{
	eng_ho_put_u8(b, (uint8_t)n);
	eng_ho_put(b, p, n);
}

static void put_str16(struct eng_ho_buf *b, const char *p, size_t n)
{
	eng_ho_put_u16(b, (uint16_t)n);
	eng_ho_put(b, p, n);
}

/* A u16 count written at @at, once known. */
static void put_count_at(struct eng_ho_buf *b, size_t at, uint16_t n)
{
	if (!b->err) {
		b->p[at] = (uint8_t)(n >> 8);
		b->p[at + 1] = (uint8_t)n;
	}
}

/* The Pusher name of @c's counted subscription @name into @ch; 0: none. */
static size_t pusher_name(const struct pusher_app *app, const char *name,
			  size_t len, char *ch)
{
	size_t skip = 4 + app->id_len, cl;

	if (!counted(name, len))
		return 0;
	if (name[1] == 'p') {	/* "!p:ID:" then Pusher's name */
		cl = len > skip ? len - skip : 0;
		memcpy(ch, name + skip, cl);
	} else {		/* hashed: the count table knows it */
		cl = eng_pusher_count_ch(name, len, ch);
	}
	return cl <= PUSHER_CHANNEL_MAX ? cl : 0;
}

/*
 * Every subscription of @c: the counted ones by their Pusher names, then
 * the others (its user's channel, the watch channels it watches, or a
 * counted one whose Pusher name is lost) by the engine's.
 */
static void put_subs(struct eng_ho_buf *b, const struct eng_conn *c,
		     const struct pusher_app *app)
{
	char ch[PUSHER_CHANNEL_MAX + 1];
	size_t at = b->len;
	uint16_t n = 0, k = 0;

	eng_ho_put_u16(b, 0);	/* the count, written below */
	for (const struct eng_sub *sub = c->subs; sub; sub = sub->cnext) {
		size_t cl = pusher_name(app, sub->chan->name, sub->chan->len,
					ch);

		if (cl) {
			put_str8(b, ch, cl);
			n++;
		}
	}
	put_count_at(b, at, n);
	at = b->len;
	eng_ho_put_u16(b, 0);
	for (const struct eng_sub *sub = c->subs; sub; sub = sub->cnext)
		if (!pusher_name(app, sub->chan->name, sub->chan->len, ch)) {
			put_str8(b, sub->chan->name, sub->chan->len);
			k++;
		}
	put_count_at(b, at, k);
}

/*
 * Whether @c waits for something a record cannot say: a subscribe's
 * answer held until its channel's owner registered it (the member list,
 * subscription_succeeded, signin_success would be lost).
 */
static bool waiting(const struct eng_conn *c)
{
	for (const struct eng_sub *sub = c->subs; sub; sub = sub->cnext)
		if (sub->chan->pending || sub->chan->waiters)
			return true;
	return false;
}

int eng_pusher__ho_save(struct eng_shard *s, struct eng_conn *c,
			struct eng_ho_buf *b)
{
	const struct pconn *pc = eng_pusher__pconn(s, c);
	const struct pusher_app *app;
	const char *node;
	uint16_t nj = 0;
	uint32_t age;

	if (!pc)
		return -EOPNOTSUPP;	/* refused, closing: drained instead */
	/*
	 * With Redis the nodes' counts and members live there, and the two
	 * processes would move them on their own ticks: a channel could be
	 * seen vacated, a member leaving. Drained (4200) until a hand-over
	 * moves them in one step.
	 */
	if (s->eng->redis)
		return -EOPNOTSUPP;
	if (waiting(c))
		return -EAGAIN;
	app = app_at(s, pc->app);
	node = "";	/* its members' node: none, Redis returned above */
	age = s->tick - pc->ev_tick;
	eng_ho_put_u8(b, RECORD_V2);
	put_str8(b, app->id, app->id_len);
	eng_ho_put_u32(b, pc->sid[0]);
	eng_ho_put_u32(b, pc->sid[1]);
	eng_ho_put_u8(b, pc->ev_n);
	eng_ho_put_u16(b, age > UINT16_MAX ? UINT16_MAX : (uint16_t)age);
	put_str16(b, pc->uid, pc->uid ? strlen(pc->uid) : 0);
	put_str8(b, node, strlen(node));
	put_subs(b, c, app);
	for (const struct join *j = pc->joins; j; j = j->next)
		nj++;
	eng_ho_put_u16(b, nj);
	for (const struct join *j = pc->joins; j; j = j->next) {
		char *blob = NULL;
		size_t bl = eng_pusher_member_blob(j->name, j->len,
						   (struct json_slice){
							   j->uid, j->ulen },
						   &blob);

		put_str8(b, j->ch, j->clen);
		put_str16(b, j->uid, j->ulen);
		eng_ho_put_u32(b, (uint32_t)bl);
		eng_ho_put(b, blob, bl);
		free(blob);
	}
	return b->err ? -ENOMEM : 0;
}

/* ---- reading ------------------------------------------------------------ */

/* A string of @wide (u16) or u8 length, at most @max bytes; p NULL: bad. */
static struct json_slice get_str(struct eng_ho_rd *r, bool wide, size_t max)
{
	size_t n = wide ? eng_ho_get_u16(r) : eng_ho_get_u8(r);
	const uint8_t *p = eng_ho_get(r, n);

	if (!p || n > max) {
		r->err = true;
		return (struct json_slice){ 0 };
	}
	return (struct json_slice){ (const char *)p, n };
}

/* A channel name of the record, checked: presence (@presence) or any. */
static struct json_slice get_ch(struct eng_ho_rd *r, bool presence)
{
	struct json_slice ch = get_str(r, false, PUSHER_CHANNEL_MAX);
	int kind = ch.p ? pusher_channel_kind(ch.p, ch.len) : -EINVAL;

	if (kind < 0 || (presence && !(kind & PUSHER_CH_PRESENCE)))
		r->err = true;
	return ch;
}

/* "ID\0STR\0INFO" @blob as a member; @uid and its JSON (@json) if empty. */
static int member_of(struct json_slice blob, struct json_slice uid,
		     char *json, struct pusher_member *mb)
{
	const char *p = blob.p, *end, *z1, *z2;

	if (!blob.len) {	/* with Redis: Redis has the member */
		*mb = (struct pusher_member){
			.id = { json, json_escape(json, uid.p, uid.len) },
			.id_str = uid,
		};
		return 0;
	}
	end = p + blob.len;	/* not before: a watch's blob is NULL */
	z1 = memchr(p, '\0', blob.len);
	z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(end - z1 - 1)) : NULL;
	if (!z2 || z1 == p || (size_t)(z2 - z1 - 1) != uid.len ||
	    memcmp(z1 + 1, uid.p, uid.len))
		return -EINVAL;
	*mb = (struct pusher_member){
		.id = { p, (size_t)(z1 - p) },
		.id_str = uid,
		.info = z2 + 1 < end ? (struct json_slice){ z2 + 1,
			(size_t)(end - z2 - 1) } : (struct json_slice){ 0 },
	};
	return 0;
}

/* The record's head, read from @r; all of it checked. */
struct head {
	const struct pusher_app *app;
	uint32_t sid[2];
	uint8_t ev_n;
	uint16_t ev_age;
	struct json_slice uid;
	char node[NODE_MAX + 1];
};

static int get_head(struct eng_shard *s, struct eng_ho_rd *r,
		    struct head *h)
{
	struct json_slice id, node;

	if (eng_ho_get_u8(r) != RECORD_V2)
		return -EINVAL;
	id = get_str(r, false, PUSHER_ID_MAX);
	h->sid[0] = eng_ho_get_u32(r);
	h->sid[1] = eng_ho_get_u32(r);
	h->ev_n = eng_ho_get_u8(r);
	h->ev_age = eng_ho_get_u16(r);
	h->uid = get_str(r, true, PUSHER_CHANNEL_MAX);
	if (!h->uid.len)
		h->uid.p = NULL;	/* not signed in */
	node = get_str(r, false, NODE_MAX);
	if (r->err)
		return -EINVAL;
	memcpy(h->node, node.p, node.len);
	h->node[node.len] = '\0';
	h->app = pusher_app_by_id(&s->eng->cfg.pusher->apps, id.p, id.len);
	return h->app ? 0 : -ENOENT;
}

/*
 * One of the record's other channels, an engine name of @app's own
 * ("!u:", "!w:", or "!p:" and "!h:" whose Pusher name was lost), checked.
 */
static struct json_slice get_own(struct eng_ho_rd *r,
				 const struct pusher_app *app)
{
	struct json_slice n = get_str(r, false, ENG_CHAN_MAX);
	size_t idl = app->id_len;

	if (n.p && (n.len < idl + 5 || n.p[0] != ENG_PUSHER_MARK ||
		    !strchr("uwph", n.p[1]) || n.p[2] != ':' ||
		    memcmp(n.p + 3, app->id, idl) || n.p[3 + idl] != ':' ||
		    !eng_chan_wire_ok(n.p, n.len)))
		r->err = true;
	return n;
}

/*
 * Reads the rest of a record through a copy of the cursor, checking
 * it, so that a bad record changes nothing: -EINVAL when bad. Bytes
 * after it are the next record's (the core frames them).
 */
static int check(struct eng_ho_rd r, const struct pusher_app *app)
{
	char json[PUSHER_CHANNEL_MAX * 6 + 3];
	struct pusher_member mb;
	unsigned n;

	for (n = eng_ho_get_u16(&r); n && !r.err; n--)
		get_ch(&r, false);
	for (n = eng_ho_get_u16(&r); n && !r.err; n--)
		get_own(&r, app);
	for (n = eng_ho_get_u16(&r); n && !r.err; n--) {
		struct json_slice uid, blob;

		get_ch(&r, true);
		uid = get_str(&r, true, PUSHER_CHANNEL_MAX);
		blob.len = eng_ho_get_u32(&r);
		blob.p = (const char *)eng_ho_get(&r, blob.len);
		if (!r.err && (!uid.len || member_of(blob, uid, json, &mb)))
			r.err = true;
	}
	return r.err ? -EINVAL : 0;
}

/*
 * The record's subscriptions (checked) subscribed again: interest
 * registered with their owners, no reply (the client had its own); the
 * counted ones counted again without a word. 0 or -ENOMEM.
 */
static int resubscribe(struct eng_shard *s, struct eng_conn *c,
		       const struct pusher_app *app, struct eng_ho_rd *r)
{
	unsigned n = eng_ho_get_u16(r), k;
	char (*names)[ENG_CHAN_MAX + 1] = malloc((n ? n : 1) *
						 sizeof(*names));
	struct json_slice *v, *chs;
	int ret = -ENOMEM;

	v = malloc((n ? n : 1) * sizeof(*v));
	chs = malloc((n ? n : 1) * sizeof(*chs));
	if (!names || !v || !chs)
		goto out;
	ret = 0;
	for (unsigned i = 0; i < n; i++) {
		int len;

		chs[i] = get_ch(r, false);
		len = eng_pusher_chan_name(app, chs[i].p, chs[i].len,
					   names[i]);
		v[i] = (struct json_slice){ names[i], len < 0 ? 0 : (size_t)len };
		if (len <= 0)
			ret = -EINVAL;
	}
	if (n && !ret)
		ret = eng_subscribe(s, c, v, n, NULL);
	for (unsigned i = 0; i < n && !ret; i++)
		eng_pusher_count_carry(v[i].p, v[i].len, chs[i], 1,
				       app->sub_count);
	k = eng_ho_get_u16(r);
	for (unsigned i = 0; i < k && !ret; i++) {
		struct json_slice one = get_own(r, app);

		ret = eng_subscribe(s, c, &one, 1, NULL);
	}
out:
	free(names);
	free(v);
	free(chs);
	return ret;
}

/* One presence join of the record, kept and counted again. */
static int rejoin(struct eng_shard *s, struct eng_conn *c, struct pconn *pc,
		  const struct head *h, struct eng_ho_rd *r)
{
	char json[PUSHER_CHANNEL_MAX * 6 + 3], sbuf[PUSHER_SOCKET_ID_OWN + 1];
	struct json_slice ch = get_ch(r, true), uid, blob;
	struct pusher_member mb;
	struct join *j;
	int len, ret;

	uid = get_str(r, true, PUSHER_CHANNEL_MAX);
	blob.len = eng_ho_get_u32(r);
	blob.p = (const char *)eng_ho_get(r, blob.len);
	j = calloc(1, sizeof(*j) + uid.len + 1);
	if (!j)
		return -ENOMEM;
	len = eng_pusher_chan_name(h->app, ch.p, ch.len, j->name);
	ret = len < 0 || member_of(blob, uid, json, &mb) ? -EINVAL :
	      eng_pusher_rejoin(s, c, j->name, (size_t)len, ch,
				eng_pusher__sid(pc, sbuf), &mb, h->node);
	if (ret < 0) {
		free(j);
		return ret;
	}
	j->len = (size_t)len;
	j->clen = ch.len;
	memcpy(j->ch, ch.p, ch.len);
	j->ulen = uid.len;
	memcpy(j->uid, uid.p, uid.len);
	j->next = pc->joins;
	pc->joins = j;
	return 0;
}

/* Signed in to an app with watchlists: counted again in its watch channel. */
static int rewatch(struct eng_shard *s, struct eng_conn *c,
		   const struct pconn *pc, const struct head *h)
{
	char w[ENG_CHAN_MAX + 1], json[PUSHER_CHANNEL_MAX * 6 + 3];
	char sbuf[PUSHER_SOCKET_ID_OWN + 1];
	struct pusher_member mb;
	int wl;

	if (!pc->uid || !h->app->watchlist)
		return 0;
	wl = eng_pusher_watch_key(h->app, pc->uid, h->uid.len, w);
	if (wl < 0 || member_of((struct json_slice){ 0 }, h->uid, json, &mb))
		return -EINVAL;
	return eng_pusher_rejoin(s, c, w, (size_t)wl, (struct json_slice){ 0 },
				 eng_pusher__sid(pc, sbuf), &mb, h->node);
}

int eng_pusher__ho_load(struct eng_shard *s, struct eng_conn *c,
			struct eng_ho_rd *r)
{
	struct pconn *pc;
	struct head h;
	int ret;

	if (!s->eng->cfg.pusher)
		return -ENOENT;
	ret = get_head(s, r, &h);
	if (!ret)
		ret = check(*r, h.app);
	if (ret < 0)
		return ret;
	pc = eng_pusher__pconn_new(s, c);
	if (!pc)
		return -ENOMEM;
	pc->gen = c->gen;
	pc->app = (uint16_t)(h.app - s->eng->cfg.pusher->apps.v + 1);
	memcpy(pc->sid, h.sid, sizeof(pc->sid));
	pc->ev_n = h.ev_n;
	pc->ev_tick = s->tick - h.ev_age;
	if (h.uid.p && !(pc->uid = strndup(h.uid.p, h.uid.len)))
		return -ENOMEM;
	/* from here on a failure closes @c, whose on_close undoes these */
	ret = resubscribe(s, c, h.app, r);
	for (unsigned n = ret ? 0 : eng_ho_get_u16(r); n; n--) {
		ret = rejoin(s, c, pc, &h, r);
		if (ret < 0)
			return ret;
	}
	return ret ? ret : rewatch(s, c, pc, &h);
}

void eng_pusher__ho_gone(struct eng_shard *s, struct eng_conn *c,
			 struct pconn *pc)
{
	const struct pusher_app *app = app_at(s, pc->app);
	char w[ENG_CHAN_MAX + 1];
	struct join *j;
	int wl;

	for (const struct eng_sub *sub = c->subs; sub; sub = sub->cnext)
		if (counted(sub->chan->name, sub->chan->len))
			eng_pusher_count_carry(sub->chan->name, sub->chan->len,
					       (struct json_slice){ 0 }, -1,
					       false);
	eng_unsubscribe_all(s, c);	/* s->stopping: no owner told */
	while ((j = pc->joins)) {
		pc->joins = j->next;
		eng_pusher_carried_out(s, j->name, j->len,
				       (struct json_slice){ j->uid, j->ulen });
		free(j);
	}
	wl = pc->uid && app->watchlist ?
	     eng_pusher_watch_key(app, pc->uid, strlen(pc->uid), w) : -1;
	if (wl > 0)
		eng_pusher_carried_out(s, w, (size_t)wl, (struct json_slice){
					       pc->uid, strlen(pc->uid) });
	free(pc->uid);
	memset(pc, 0, sizeof(*pc));
}
