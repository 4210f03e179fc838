/* SPDX-License-Identifier: MIT */
/*
 * user.c: users as a target. An authenticated connection joins its user,
 * an internal channel named ENG_USER_MARK + user id, through the same
 * per-shard index, owner sequencing and fan-out as channels; a user push
 * is a push frame on that channel. The user's owner shard also keeps the
 * user's presence on this node (connections, per app) and admits each
 * new connection against --max-conns-per-user before the 101 goes out,
 * so a push published after the upgrade always finds the connection. A
 * disconnect is one close frame (4003), built once and delivered like a
 * push to every connection of the user.
 *
 * Mail, all struct eng_owner_mail: JOIN (shard -> owner, answered with
 * USER_ACK), LEAVE (a connection left, or was refused: presence and the
 * owner's shard bitmap follow), QUERY and KICK (from an HTTP request).
 * With Redis the owner also tells the bridge the user's count on this
 * node (R_PRESENCE), which writes it for the other nodes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "broker.h"
#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "hs.h"
#include "inbox.h"
#include "mail.h"
#include "pub.h"
#include "sub.h"
#include "user.h"

static struct eng_owner_mail *mail_new(struct eng_shard *s, uint8_t kind,
				     const char *uid, size_t len)
{
	struct eng_owner_mail *m = eng_mail_alloc(&s->mail, sizeof(*m));

	if (!m)
		return NULL;
	m->kind = kind;
	m->from = (uint16_t)s->id;
	m->len = (uint8_t)eng_user_key(m->name, uid, len);
	return m;
}

/* To the owner of @m's user: read at once when that is us. */
static void to_owner(struct eng_shard *s, struct eng_owner_mail *m)
{
	eng_mail_post(&s->mail, eng_mail_owner(s->eng,
		      eng_chan_hash(m->name, m->len)), ENG_OP_USER, m);
}

/* Back to the shard that asked. */
static void to_asker(struct eng_shard *s, struct eng_owner_mail *m)
{
	eng_mail_post(&s->mail, m->from, ENG_OP_USER_ACK, m);
}

/* ---- the joining shard ---------------------------------------------------- */

/*
 * @c passed authentication: register it with its user before the upgrade.
 * The 101 goes out when the owner admits it (on_join_ack()).
 */
void eng_user_join(struct eng_shard *s, struct eng_conn *c,
		   const struct hs_str *key)
{
	const struct eng_auth *a = c->auth;
	char name[ENG_CHAN_MAX + 2];
	size_t len = eng_user_key(name, a->uid, a->uid_len);
	struct eng_chan *ch = eng_chan_get(&s->chans, name, len,
					   eng_chan_hash(name, len));
	struct eng_owner_mail *m;

	m = mail_new(s, ENG_OWN_JOIN, a->uid, a->uid_len);
	if (!ch || !m || eng_sub_add(c, eng_slot(s, c), ch) < 0) {
		eng_free(m);
		if (ch)
			eng_chan_maybe_free(&s->chans, ch);
		eng_conn_http_reply(s, c, 503, NULL, NULL, NULL, 0);
		return;
	}
	/* The key must outlive the request buffer: keep it in the mail. */
	if (key->len >= sizeof(m->wskey)) {
		eng_free(m);
		eng_conn_http_reply(s, c, 400, NULL, NULL, NULL, 0);
		return;
	}
	memcpy(m->wskey, key->p, key->len);
	m->wskey[key->len] = '\0';
	m->app_len = a->app_len;
	memcpy(m->app, a->app, a->app_len);
	m->slot = eng_slot(s, c);
	m->gen = c->gen;
	c->flags |= ENG_CONN_F_WAIT;	/* no further request meanwhile */
	to_owner(s, m);
}

int eng_user_rejoin(struct eng_shard *s, struct eng_conn *c)
{
	const struct eng_auth *a = c->auth;
	char name[ENG_CHAN_MAX + 2];
	size_t len = eng_user_key(name, a->uid, a->uid_len);
	struct eng_chan *ch = eng_chan_get(&s->chans, name, len,
					   eng_chan_hash(name, len));
	struct eng_owner_mail *m = mail_new(s, ENG_OWN_JOIN, a->uid,
					    a->uid_len);

	if (!ch || !m || eng_sub_add(c, eng_slot(s, c), ch) < 0) {
		eng_free(m);
		if (ch)
			eng_chan_maybe_free(&s->chans, ch);
		return -ENOMEM;
	}
	m->live = 1;
	m->app_len = a->app_len;
	memcpy(m->app, a->app, a->app_len);
	m->slot = eng_slot(s, c);
	m->gen = c->gen;
	to_owner(s, m);
	return 0;
}

/* The user's subscription of @c, if it has one. */
static struct eng_sub *user_sub(struct eng_conn *c)
{
	struct eng_sub *sub;

	for (sub = c->subs; sub; sub = sub->cnext)
		if (sub->chan->name[0] == ENG_USER_MARK)
			return sub;
	return NULL;
}

/* Tells the owner that @c's connection left (or was refused). */
static void leave(struct eng_shard *s, const struct eng_auth *a,
		  bool counted, bool last)
{
	struct eng_owner_mail *m;

	if (s->stopping)	/* everyone is going: see interest() */
		return;
	m = mail_new(s, ENG_OWN_LEAVE, a->uid, a->uid_len);
	if (!m)
		return;
	m->counted = counted;
	m->last = last;
	m->app_len = a->app_len;
	memcpy(m->app, a->app, a->app_len);
	to_owner(s, m);
}

void eng_user_leave(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_sub *sub;
	struct eng_chan *ch;

	if (!c->auth)
		return;
	eng_inbox_forget(s, c);	/* a read of its unread may be out */
	sub = user_sub(c);
	if (sub) {
		bool last;

		ch = sub->chan;
		eng_sub_del(c, sub);
		last = ch->nsubs == 0;
		/*
		 * Free our record first: when we are the owner, leave() runs
		 * the owner's side right here and may free it itself.
		 */
		eng_chan_maybe_free(&s->chans, ch);
		leave(s, c->auth, c->flags & ENG_CONN_F_ADMITTED, last);
	}
	c->flags &= ~ENG_CONN_F_ADMITTED;
	eng_free(c->auth);
	c->auth = NULL;
}

/* Frees @m and the unread it carries (eng_inbox_replay()). */
static void free_mail(void *ptr)
{
	struct eng_owner_mail *m = ptr;

	for (uint32_t i = 0; i < m->nframes; i++)
		eng_buf_put(m->frames[i]);
	eng_free(m->frames);
	eng_free(m);
}

/* The owner answered a JOIN. */
static void on_join_ack(struct eng_shard *s, struct eng_owner_mail *m)
{
	struct eng_conn *c = &s->conns[m->slot];
	struct hs_str key = { .p = m->wskey,
			      .len = (uint32_t)strlen(m->wskey) };
	struct eng_sub *sub;
	struct eng_chan *ch;

	if (c->gen != m->gen || !eng_conn_alive(c) || !c->auth) {
		/* Gone meanwhile; its leave said "not counted": correct it. */
		if (m->ok) {
			while (m->nframes)
				eng_buf_put(m->frames[--m->nframes]);
			eng_free(m->frames);
			m->frames = NULL;
			m->kind = ENG_OWN_LEAVE;
			m->counted = 1;
			m->last = 0;
			to_owner(s, m);
			return;
		}
		free_mail(m);
		return;
	}
	if (m->live) {		/* open already: counted, nothing to send */
		if (m->ok)
			c->flags |= ENG_CONN_F_ADMITTED;
		free_mail(m);
		return;
	}
	c->flags &= ~ENG_CONN_F_WAIT;
	if (m->ok) {
		c->flags |= ENG_CONN_F_ADMITTED;
		eng_conn_upgrade(s, c, &key, ENG_CONN_K_PUSH);
		s->eng->broker->joined(s, c);	/* Redis: the unread there */
		/* the unread after the 101, as the connection drains */
		eng_inbox_backlog(s, c, m->frames, m->nframes);
		m->frames = NULL;
		m->nframes = 0;
		eng_conn_resume(s, c);
		free_mail(m);
		return;
	}
	/* Refused: over --max-conns-per-user on this node. */
	ENG_STAT_ADD(s, user_refused, 1);
	sub = user_sub(c);
	if (sub) {
		bool last;

		ch = sub->chan;
		eng_sub_del(c, sub);
		last = ch->nsubs == 0;
		eng_chan_maybe_free(&s->chans, ch);	/* before: see above */
		if (last)
			leave(s, c->auth, false, true);
	}
	eng_free(c->auth);
	c->auth = NULL;
	{
		static const char body[] =
			"{\"error\":\"too many connections for this user\"}\n";

		eng_conn_http_reply(s, c, 429, NULL, "application/json", body,
				    sizeof(body) - 1);
	}
	free_mail(m);
}

/* The owner answered a QUERY or a KICK: the HTTP reply. */
static void on_http_ack(struct eng_shard *s, struct eng_owner_mail *m)
{
	struct eng_conn *c = &s->conns[m->slot];
	char body[512];
	int n;

	if (c->gen == m->gen && eng_conn_alive(c)) {
		c->flags &= ~ENG_CONN_F_WAIT;
		if (m->kind == ENG_OWN_QUERY)
			n = snprintf(body, sizeof(body),
				     "{\"online\":%s,\"connections\":%u,"
				     "\"apps\":[%s]}\n",
				     m->conns ? "true" : "false", m->conns,
				     m->apps);
		else
			n = snprintf(body, sizeof(body),
				     "{\"ok\":true,\"connections\":%u}\n",
				     m->conns);
		eng_conn_http_reply(s, c, 200, NULL, "application/json", body,
				    (size_t)n);
		eng_conn_resume(s, c);
	}
	eng_free(m);
}


int eng_user_query(struct eng_shard *s, struct eng_conn *c, const char *uid,
		   size_t len, uint8_t kind)
{
	struct eng_owner_mail *m = mail_new(s, kind, uid, len);

	if (!m)
		return -ENOMEM;
	m->slot = eng_slot(s, c);
	m->gen = c->gen;
	c->flags |= ENG_CONN_F_WAIT;
	to_owner(s, m);
	return 0;
}

/* ---- the owner ---------------------------------------------------------- */

static void pres_add(struct eng_shard *s, struct eng_chan *ch,
		     const char *app, size_t len)
{
	struct eng_pres *p = ch->pres;
	unsigned i;

	if (!p) {
		p = ch->pres = eng_malloc(sizeof(*p));
		if (!p)
			return;
		memset(p, 0, sizeof(*p));
	}
	if (p->conns++ == 0)
		ENG_STAT_ADD(s, users_owned, 1);
	ENG_STAT_ADD(s, user_conns, 1);
	if (!len)
		return;
	for (i = 0; i < p->napps; i++)
		if (strlen(p->app[i].name) == len &&
		    !memcmp(p->app[i].name, app, len)) {
			p->app[i].n++;
			return;
		}
	if (p->napps < ENG_PRES_APPS) {	/* more apps than that: not listed */
		memcpy(p->app[p->napps].name, app, len);
		p->app[p->napps].name[len] = '\0';
		p->app[p->napps++].n = 1;
	}
}

static void pres_del(struct eng_shard *s, struct eng_chan *ch,
		     const char *app, size_t len)
{
	struct eng_pres *p = ch->pres;
	unsigned i;

	if (!p || !p->conns)
		return;
	ENG_STAT_SUB(s, user_conns, 1);
	for (i = 0; len && i < p->napps; i++) {
		if (strlen(p->app[i].name) != len ||
		    memcmp(p->app[i].name, app, len))
			continue;
		if (--p->app[i].n == 0)
			p->app[i] = p->app[--p->napps];
		break;
	}
	if (--p->conns == 0) {
		ENG_STAT_SUB(s, users_owned, 1);
		eng_free(p);
		ch->pres = NULL;
	}
}

uint32_t eng_user_presence_of(const struct eng_chan *ch, char *out,
			      size_t cap, bool quoted)
{
	const struct eng_pres *p = ch ? ch->pres : NULL;
	size_t n = 0;

	out[0] = '\0';
	for (unsigned i = 0; p && i < p->napps; i++)
		n += (size_t)snprintf(out + n, cap - n, quoted ? "%s\"%s\"" :
				      "%s%s", i ? "," : "", p->app[i].name);
	return p ? p->conns : 0;
}

static void query(struct eng_chan *ch, struct eng_owner_mail *m)
{
	m->conns = eng_user_presence_of(ch, m->apps, sizeof(m->apps), true);
}

/* Closes every connection of the user, on every shard that has one. */
static void kick(struct eng_shard *s, struct eng_chan *ch)
{
	struct eng_buf *f;

	if (!ch || !ch->shards)
		return;
	/* One close frame for all of them; the user key after it. */
	f = eng_arena_buf(2 + WS_MAX_CONTROL + ENG_CHAN_MAX + 2);
	if (!f)
		return;
	f->flags |= ENG_BUF_F_USER | ENG_BUF_F_KICK;
	f->len = (uint32_t)ws_write_close(f->data, ENG_CLOSE_KICKED,
					  "disconnected by the server");
	f->name_off = f->len;
	f->name_len = (uint8_t)ch->len;
	memcpy(f->data + f->name_off, ch->name, ch->len);
	eng_pub_fanout(s, f, ch);
	eng_buf_put(f);
}

/* The user's count on this node changed: the broker may tell others. */
static void presence_changed(struct eng_shard *s, struct eng_chan *ch)
{
	if (!s->stopping)	/* a node goes as a whole */
		s->eng->broker->presence(s, ch);
}

static void owner_mail(struct eng_shard *s, struct eng_owner_mail *m)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	uint64_t hash = eng_chan_hash(m->name, m->len);
	struct eng_chan *ch;

	switch (m->kind) {
	case ENG_OWN_JOIN:
		ch = eng_chan_get(&s->chans, m->name, m->len, hash);
		/* one handed over live was admitted before: it counts */
		if (!ch || (cfg->max_conns_per_user && !m->live && ch->pres &&
			    ch->pres->conns >= cfg->max_conns_per_user)) {
			m->ok = 0;
			if (ch)
				eng_chan_maybe_free(&s->chans, ch);
			to_asker(s, m);
			return;
		}
		m->ok = 1;
		pres_add(s, ch, m->app, m->app_len);
		presence_changed(s, ch);
		/*
		 * What it has not acked goes with the admission: a kept push
		 * sequenced after this reaches the connection live, after it.
		 */
		if (!m->live)
			eng_inbox_replay(ch, m);
		/* The 101 waits until pushes for the user reach its shard. */
		if (eng_sub_owner_update(s, ch, m->from, true, m))
			to_asker(s, m);
		return;
	case ENG_OWN_LEAVE:
		ch = eng_chan_find(&s->chans, m->name, m->len, hash);
		if (ch) {
			if (m->counted) {
				pres_del(s, ch, m->app, m->app_len);
				presence_changed(s, ch);
			}
			if (m->last)
				eng_sub_owner_update(s, ch, m->from, false,
						     NULL);
			eng_chan_maybe_free(&s->chans, ch);
		}
		eng_free(m);
		return;
	case ENG_OWN_QUERY:
		query(eng_chan_find(&s->chans, m->name, m->len, hash), m);
		to_asker(s, m);
		return;
	case ENG_OWN_KICK:
		ch = eng_chan_find(&s->chans, m->name, m->len, hash);
		query(ch, m);
		kick(s, ch);
		if (m->slot == UINT32_MAX)	/* from Redis: nobody waits */
			eng_free(m);
		else
			to_asker(s, m);
		return;
	default:
		eng_free(m);
		return;
	}
}

static void read_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_shard *s = self;
	struct eng_owner_mail *m = ptr;

	(void)res;
	if (op == ENG_OP_USER)
		owner_mail(s, m);
	else if (m->kind == ENG_OWN_JOIN)
		on_join_ack(s, m);
	else
		on_http_ack(s, m);
}

/* USER goes to the user's owner; its ack back to the asker. */
ENG_MAIL_TO_OWNER(user_to, struct eng_owner_mail)
ENG_MAIL_TO_FIELD(user_from, struct eng_owner_mail, from)

/*
 * Every failed post goes again: a JOIN's 101 waits for its answer, and
 * an R_PRESENCE is brought up to the user's count first.
 */
static const struct eng_mail_kind kinds[] = {
	{ .op = ENG_OP_R_PRESENCE, .name = "r_presence", .to_bridge = true,
	  .on_fail = ENG_MAIL_RETRY, .refresh = eng_user_refresh },
	{ .op = ENG_OP_USER, .name = "user", .on_fail = ENG_MAIL_RETRY,
	  .read = read_mail, .free = free_mail, .to = user_to },
	{ .op = ENG_OP_USER_ACK, .name = "user_ack", .on_fail = ENG_MAIL_RETRY,
	  .read = read_mail, .free = free_mail, .to = user_from },
};
ENG_MAIL_KINDS(kinds)
