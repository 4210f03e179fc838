/* SPDX-License-Identifier: MIT */
/*
 * pusher.c: the Pusher Channels protocol v7 on /app/{key} (pusher_eng.h,
 * docs/PUSHER.md). The upgrade finds the app by its key (4001 when none
 * has it) and draws the connection's socket_id from the CSPRNG; each text
 * message is one Pusher event, read by proto/pusher.c: pusher:ping,
 * pusher:subscribe (private and presence channels checked against the
 * app's secret there, in constant time, after the name's kind), and
 * pusher:unsubscribe. A Pusher channel is an engine channel named for its
 * app (eng_pusher_chan_name), so publishing and fan-out are the engine's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "broker.h"
#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "hs.h"
#include "frame.h"
#include "pub.h"
#include "pusher_eng.h"
#include "pusher_int.h"
#include "sub.h"
#include "timer.h"
#include "webhook.h"


/* Each shard's table, by shard id; touched by that shard only. */
#define SHARDS_MAX	1024
static struct pconn *tabs[SHARDS_MAX];

static const struct eng_pusher_cfg *pcfg(const struct eng_shard *s)
{
	return s->eng->cfg.pusher;
}

struct pconn *eng_pusher__pconn(struct eng_shard *s, struct eng_conn *c)
{
	struct pconn *t = s->id < SHARDS_MAX ? tabs[s->id] : NULL;
	struct pconn *pc = t ? &t[eng_slot(s, c)] : NULL;

	return pc && pc->app && pc->gen == c->gen ? pc : NULL;
}

ssize_t eng_pusher_skip_event(char *out, size_t cap, struct json_slice skip,
			      struct json_slice name, struct json_slice ch,
			      struct json_slice data, struct json_slice user_id)
{
	size_t hl = 0;
	ssize_t n;

	if (skip.p) {
		hl = sizeof(ENG_FRAME_SKIP) - 1;
		if (cap < hl + skip.len + 1)
			return -ENOSPC;
		memcpy(out, ENG_FRAME_SKIP, hl);
		memcpy(out + hl, skip.p, skip.len);	/* digits and a dot */
		hl += skip.len;
		out[hl++] = '"';
	}
	n = pusher_enc_event(out + hl, cap - hl, name, ch, data, user_id);
	if (n < 0)
		return n;
	if (hl)
		out[hl] = ',';	/* its '{' is the head's */
	return (ssize_t)hl + n;
}

/* ---- frames --------------------------------------------------------------- */

/* A text frame of at most @cap bytes of JSON; *@out: where to write it. */
static struct eng_buf *frame_new(size_t cap, char **out)
{
	struct eng_buf *b = eng_buf_new(WS_MAX_SERVER_HDR + cap);

	if (b)
		*out = (char *)b->data + WS_MAX_SERVER_HDR;
	return b;
}

/* Seals @b's @n bytes of JSON, or drops @b when the encoder failed. */
static struct eng_buf *frame_seal(struct eng_buf *b, ssize_t n)
{
	if (!b || n < 0) {
		if (b)
			eng_buf_put(b);
		return NULL;
	}
	eng_buf_seal(b, b->data + WS_MAX_SERVER_HDR, WS_OP_TEXT, (size_t)n);
	return b;
}

struct eng_buf *eng_pusher_text(const char *json, size_t n)
{
	char *o = NULL;
	struct eng_buf *b = frame_new(n, &o);

	if (b)
		memcpy(o, json, n);
	return frame_seal(b, (ssize_t)n);
}

/* Queues @b, or fails @c when it could not be made. */
static void send_buf(struct eng_shard *s, struct eng_conn *c,
		     struct eng_buf *b)
{
	if (b)
		eng_conn_queue(s, c, b);
	else
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

void eng_pusher__error(struct eng_shard *s, struct eng_conn *c, int code,
		       const char *msg)
{
	size_t cap = 96 + 2 * json_escape_max(strlen(msg));
	char *o = NULL;
	struct eng_buf *b = frame_new(cap, &o);

	send_buf(s, c, frame_seal(b, b ? pusher_enc_error(o, cap, code, msg)
				      : -1));
}

static void sub_error(struct eng_shard *s, struct eng_conn *c,
		      struct json_slice ch, const char *type,
		      const char *err, int status)
{
	size_t cap = 96 + 2 * json_escape_max(ch.len) + strlen(err);
	char *o = NULL;
	struct eng_buf *b = frame_new(cap, &o);

	send_buf(s, c, frame_seal(b, b ? pusher_enc_sub_error(o, cap, ch, type,
							      err, status)
				      : -1));
}

/* pusher:pong (@ping false) or pusher:ping. */
static void send_pong(struct eng_shard *s, struct eng_conn *c, bool ping)
{
	char *o = NULL;
	struct eng_buf *b = frame_new(64, &o);

	send_buf(s, c, frame_seal(b, !b ? -1 : ping ? pusher_enc_ping(o, 64)
						  : pusher_enc_pong(o, 64)));
}

/* ---- pusher:subscribe ----------------------------------------------------- */

/* The subscription_succeeded @c gets once the subscription is registered. */
static struct eng_buf *succeeded(struct json_slice ch)
{
	size_t cap = 128 + 2 * json_escape_max(ch.len);
	char *o = NULL;
	struct eng_buf *b = frame_new(cap, &o);

	return b ? frame_seal(b, pusher_enc_subscribed(o, cap, ch)) : NULL;
}

/*
 * What the broker sends a client event's sender when it has published
 * it: Pusher answers nothing, so an empty ping, which the client's
 * WebSocket answers and pusher-js never sees.
 */
struct eng_buf *eng_pusher__ping_frame(void)
{
	struct eng_buf *b = eng_buf_new(WS_MAX_SERVER_HDR);

	if (b)
		eng_buf_seal(b, b->data + WS_MAX_SERVER_HDR, WS_OP_PING, 0);
	return b;
}

struct join *eng_pusher__joined(struct pconn *pc, const char *name,
				 size_t len)
{
	struct join *j;

	for (j = pc->joins; j; j = j->next)
		if (j->len == len && !memcmp(j->name, name, len))
			return j;
	return NULL;
}

/*
 * Presence channel @one (Pusher's @ch) joined as @mb: the member counted
 * and announced (pusher_presence.c), the subscription registered, and
 * the join kept for the leave. A second subscribe is refused. A cache
 * channel's last event (or cache_miss) is asked after the join, so that
 * it comes behind the member list.
 */
static void join(struct eng_shard *s, struct eng_conn *c, struct pconn *pc,
		 const struct json_slice *one, struct json_slice ch,
		 const struct pusher_member *mb, bool cache)
{
	char sbuf[PUSHER_SOCKET_ID_OWN + 1];
	struct json_slice sid = eng_pusher__sid(pc, sbuf);
	struct eng_buf *ok = NULL, *then = NULL;
	struct join *j = NULL;
	int ret;

	if (eng_pusher__joined(pc, one->p, one->len)) {
		sub_error(s, c, ch, "AlreadySubscribed", "already subscribed",
			  400);
		return;
	}
	j = calloc(1, sizeof(*j) + mb->id_str.len + 1);
	ret = j ? eng_pusher_join(s, c, one->p, one->len, ch, sid, mb, &ok)
		: -ENOMEM;
	if (ret >= 0 && !ok)	/* Redis answers with the members later */
		ok = eng_pusher__ping_frame();
	if (ret == -E2BIG) {
		free(j);
		sub_error(s, c, ch, "LimitReached", "too many members", 4100);
		return;
	}
	if (ret >= 0 && cache &&
	    eng_pusher_cache_get(s, c, eng_pusher__app(s, pc), one->p, one->len, ch,
				 true, &then) < 0) {
		eng_buf_put(ok);
		ok = NULL;	/* fails the subscribe below */
	}
	if (ret >= 0 && (!ok || eng_subscribe_then(s, c, one, 1, ok, then) < 0)) {
		eng_buf_put(then);
		ret = -ENOMEM;	/* the member counted goes again */
		eng_pusher_leave(s, c, one->p, one->len, ch, sid, mb->id_str);
	} else if (ret >= 0) {
		eng_pusher_count_add(one->p, one->len, ch, 1,
				     eng_pusher__app(s, pc)->sub_count);
	}
	if (ret < 0) {
		free(j);
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	j->len = one->len;
	memcpy(j->name, one->p, one->len);
	j->clen = ch.len;
	memcpy(j->ch, ch.p, ch.len);
	j->ulen = mb->id_str.len;
	memcpy(j->uid, mb->id_str.p, mb->id_str.len);
	j->next = pc->joins;
	pc->joins = j;
}

/* @c leaves presence channel @name, if it joined it. */
static void leave(struct eng_shard *s, struct eng_conn *c, struct pconn *pc,
		  const char *name, size_t len)
{
	char sbuf[PUSHER_SOCKET_ID_OWN + 1];
	struct join **jp, *j;

	for (jp = &pc->joins; *jp; jp = &(*jp)->next) {
		j = *jp;
		if (j->len != len || memcmp(j->name, name, len))
			continue;
		*jp = j->next;
		eng_pusher_leave(s, c, j->name, j->len,
				 (struct json_slice){ j->ch, j->clen },
				 eng_pusher__sid(pc, sbuf),
				 (struct json_slice){ j->uid, j->ulen });
		free(j);
		return;
	}
}

/*
 * Whether @c may join @ch: its auth checked for private and presence
 * channels, presence's member read from channel_data into @mb (its
 * slices in @scratch). Replies with subscription_error when not.
 */
static bool admitted(struct eng_shard *s, struct eng_conn *c,
		     const struct pconn *pc, const struct pusher_msg *m,
		     int kind, struct pusher_member *mb, char *scratch,
		     size_t cap)
{
	const struct pusher_app *app = eng_pusher__app(s, pc);
	char sbuf[PUSHER_SOCKET_ID_OWN + 1];
	struct json_slice sid = eng_pusher__sid(pc, sbuf), cd = { 0 };
	int ret;

	if (!pusher_channel_needs_auth(kind))
		return true;
	if (!m->d_auth.p) {
		sub_error(s, c, m->d_channel, "AuthError", "auth needed", 401);
		return false;
	}
	if (kind & PUSHER_CH_PRESENCE) {
		if (!m->d_channel_data.p) {
			sub_error(s, c, m->d_channel, "AuthError",
				  "channel_data needed", 401);
			return false;
		}
		cd = m->d_channel_data;
	}
	ret = pusher_channel_auth_check(app, sid, m->d_channel, cd, m->d_auth);
	if (ret == -EACCES) {
		sub_error(s, c, m->d_channel, "AuthError", "invalid signature",
			  401);
		return false;
	}
	if (ret < 0) {
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return false;
	}
	if ((kind & PUSHER_CH_PRESENCE) &&
	    pusher_member_parse(s->json, cd, mb, scratch, cap) < 0) {
		sub_error(s, c, m->d_channel, "AuthError",
			  "channel_data needs a user_id", 400);
		return false;
	}
	return true;
}

void eng_pusher_full(struct eng_shard *s, struct eng_conn *c,
		     struct json_slice ch)
{
	struct pconn *pc = eng_pusher__pconn(s, c);
	char name[ENG_CHAN_MAX + 1];
	struct join **jp, *j;
	int len;

	len = pc ? eng_pusher_chan_name(eng_pusher__app(s, pc), ch.p, ch.len, name) : -1;
	if (len <= 0) {
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	eng_unsubscribe(s, c, &(struct json_slice){ name, (size_t)len }, 1);
	for (jp = &pc->joins; *jp; jp = &(*jp)->next) {
		j = *jp;
		if (j->len == (size_t)len && !memcmp(j->name, name, j->len)) {
			*jp = j->next;	/* never counted: nothing to leave */
			free(j);
			break;
		}
	}
	sub_error(s, c, ch, "LimitReached", "too many members", 4100);
}

/* Whether @ch is #server-to-user-{id} of the user @pc signed in as. */
static bool own_user_channel(const struct pconn *pc, struct json_slice ch)
{
	size_t pl = sizeof(PUSHER_USER_PREFIX) - 1;

	return pc->uid && ch.len - pl == strlen(pc->uid) &&
	       !memcmp(ch.p + pl, pc->uid, ch.len - pl);
}

/*
 * @c, signed in as pc->uid, joins the channel a terminate of that user
 * goes to (eng_pusher_user_key): @ok, signin_success, goes once that is
 * registered, so a terminate after it finds @c. @ok NULL: leaves it.
 * Returns 0 or -errno (@ok dropped).
 */
static int user_subscribe(struct eng_shard *s, struct eng_conn *c,
			  const struct pconn *pc, struct eng_buf *ok)
{
	char key[ENG_CHAN_MAX + 1];
	int n = eng_pusher_user_key(eng_pusher__app(s, pc), pc->uid, strlen(pc->uid),
				    key);
	struct json_slice one = { key, n < 0 ? 0 : (size_t)n };

	if (n < 0) {
		eng_buf_put(ok);
		return n;
	}
	if (!ok) {
		eng_unsubscribe(s, c, &one, 1);
		return 0;
	}
	return eng_subscribe(s, c, &one, 1, ok);
}

/* @c, signed in as pc->uid, no longer watches nor is watched. */
static void unwatch(struct eng_shard *s, struct eng_conn *c,
		    const struct pconn *pc)
{
	char sbuf[PUSHER_SOCKET_ID_OWN + 1];

	if (eng_pusher__app(s, pc)->watchlist)
		eng_pusher_unwatch(s, c, eng_pusher__app(s, pc),
				   eng_pusher__sid(pc, sbuf), pc->uid);
}

/* @c, signed in as pc->uid, is no longer: its channel and watches go. */
static void unsign(struct eng_shard *s, struct eng_conn *c, struct pconn *pc)
{
	user_subscribe(s, c, pc, NULL);
	unwatch(s, c, pc);
}

/*
 * pusher:signin, {"auth":"KEY:HEX","user_data":"{\"id\":...}"}: the
 * signature over socket_id::user::user_data checked, the id kept for
 * #server-to-user-{id}, pusher:signin_success. A bad one is told with
 * pusher:error and closes 4009, as pusher-js expects.
 */
static void signin(struct eng_shard *s, struct eng_conn *c, struct pconn *pc,
		   const struct pusher_msg *m, char *scratch, size_t cap)
{
	char sbuf[PUSHER_SOCKET_ID_OWN + 1];
	struct json_slice sid = eng_pusher__sid(pc, sbuf);
	size_t ocap = 96 + 2 * json_escape_max(m->d_user_data.len);
	ssize_t n = -EACCES;
	struct eng_buf *b;
	char *o = NULL;

	if (m->d_auth.p && m->d_user_data.p &&
	    !pusher_user_auth_check(eng_pusher__app(s, pc), sid, m->d_user_data,
				    m->d_auth))
		n = pusher_user_id_parse(s->json, m->d_user_data, scratch, cap);
	if (n <= 0 || (size_t)n > PUSHER_CHANNEL_MAX) {
		eng_pusher__error(s, c, PUSHER_UNAUTHORIZED, "invalid signin");
		eng_conn_close_ws(s, c, PUSHER_UNAUTHORIZED, "invalid signin");
		return;
	}
	if (pc->uid)		/* signed in again: no longer the other one */
		unsign(s, c, pc);
	free(pc->uid);
	pc->uid = malloc((size_t)n + 1);
	b = pc->uid ? frame_new(ocap, &o) : NULL;
	if (b) {
		memcpy(pc->uid, scratch, (size_t)n);
		pc->uid[n] = '\0';
		b = frame_seal(b, pusher_enc_signed_in(o, ocap,
						       m->d_user_data));
	}
	/* watching: signin_success once the watches are registered too */
	n = b && eng_pusher__app(s, pc)->watchlist ?
	    eng_pusher_watch(s, c, eng_pusher__app(s, pc), sid, pc->uid, m->d_user_data,
			     scratch, cap, b) : -ENOENT;
	if (n == -EBADMSG || n == -E2BIG)	/* signed in, watching nobody */
		eng_pusher__error(s, c, PUSHER_WATCHLIST_LIMIT,
			   "watchlist: at most 100 user ids, as strings");
	/* @b is still ours only when no watch was made: else it took @b */
	if (n < 0 && (!b || (n != -ENOENT && n != -EBADMSG && n != -E2BIG) ||
		      user_subscribe(s, c, pc, b) < 0))
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

static void subscribe(struct eng_shard *s, struct eng_conn *c,
		      struct pconn *pc, const struct pusher_msg *m,
		      char *scratch, size_t cap)
{
	struct pusher_member mb = { 0 };
	char name[ENG_CHAN_MAX + 1];
	struct eng_buf *then = NULL;
	struct json_slice one;
	int kind, len, ret;
	bool fresh;

	if (!m->d_channel.p) {
		eng_pusher__error(s, c, ENG_PUSHER_MALFORMED, "pusher:subscribe needs a channel");
		return;
	}
	/* the kind first: it keeps ':' out of what the signature covers */
	kind = pusher_channel_kind(m->d_channel.p, m->d_channel.len);
	if (kind < 0) {
		sub_error(s, c, m->d_channel, "InvalidChannel",
			  "invalid channel name", 400);
		return;
	}
	if ((kind & PUSHER_CH_USER) && !own_user_channel(pc, m->d_channel)) {
		sub_error(s, c, m->d_channel, "AuthError",
			  "the signed-in user's channel only", 401);
		return;
	}
	if (!admitted(s, c, pc, m, kind, &mb, scratch, cap))
		return;
	len = eng_pusher_chan_name(eng_pusher__app(s, pc), m->d_channel.p,
				   m->d_channel.len, name);
	if (len < 0) {
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	one = (struct json_slice){ name, (size_t)len };
	fresh = !eng_sub_find(c, eng_chan_find(&s->chans, name, (size_t)len,
					       eng_chan_hash(name, (size_t)len)));
	if (c->nsubs >= s->eng->cfg.max_subs && fresh) {
		sub_error(s, c, m->d_channel, "LimitReached",
			  "too many subscriptions", 4100);
		return;
	}
	if (kind & PUSHER_CH_PRESENCE) {
		join(s, c, pc, &one, m->d_channel, &mb, kind & PUSHER_CH_CACHE);
		return;
	}
	if (kind & PUSHER_CH_CACHE) {
		ret = eng_pusher_cache_get(s, c, eng_pusher__app(s, pc), name,
					   (size_t)len, m->d_channel, false,
					   &then);
		if (ret < 0)
			eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		if (ret <= 0)	/* failed, or Redis answers later */
			return;
	}
	eng_pusher_cached(s, c, m->d_channel, then);
}

/* pusher_internal:subscription_count of @n on @ch; NULL: no memory. */
static struct eng_buf *count_frame(struct json_slice ch, unsigned n)
{
	size_t cap = 96 + 2 * json_escape_max(ch.len);
	char *o = NULL;
	struct eng_buf *b = frame_new(cap, &o);

	return frame_seal(b, b ? pusher_enc_sub_count(o, cap, ch, n) : -1);
}

void eng_pusher_cached(struct eng_shard *s, struct eng_conn *c,
		       struct json_slice ch, struct eng_buf *then)
{
	struct pconn *pc = eng_pusher__pconn(s, c);
	char name[ENG_CHAN_MAX + 1];
	struct eng_buf *ok;
	int len = pc ? eng_pusher_chan_name(eng_pusher__app(s, pc), ch.p, ch.len, name)
		     : -EINVAL;
	bool fresh = len > 0 &&
		     !eng_sub_find(c, eng_chan_find(&s->chans, name, (size_t)len,
						    eng_chan_hash(name,
								  (size_t)len)));

	ok = len > 0 ? succeeded(ch) : NULL;
	if (!ok) {
		eng_buf_put(then);
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	if (fresh) {
		bool announce = eng_pusher__app(s, pc)->sub_count;
		unsigned n = eng_pusher_count_add(name, (size_t)len, ch, 1,
						  announce);

		/*
		 * The count goes to the channel's subscribers on shard 0's
		 * tick, which may come before this one is registered: it gets
		 * the count it made behind its subscription_succeeded.
		 */
		if (announce && !then)
			then = count_frame(ch, n);
	}
	if (eng_subscribe_then(s, c, &(struct json_slice){ name,
			       (size_t)len }, 1, ok, then) < 0) {
		if (fresh)	/* not subscribed: its close will not count it */
			eng_pusher_count_add(name, (size_t)len, ch, -1, false);
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
	}
}

static void unsubscribe(struct eng_shard *s, struct eng_conn *c,
			struct pconn *pc, const struct pusher_msg *m)
{
	char name[ENG_CHAN_MAX + 1];
	int len;

	if (!m->d_channel.p ||
	    pusher_channel_kind(m->d_channel.p, m->d_channel.len) < 0)
		return;		/* nothing it could have joined */
	len = eng_pusher_chan_name(eng_pusher__app(s, pc), m->d_channel.p,
				   m->d_channel.len, name);
	if (len <= 0)
		return;
	if (eng_sub_find(c, eng_chan_find(&s->chans, name, (size_t)len,
					  eng_chan_hash(name, (size_t)len))))
		eng_pusher_count_add(name, (size_t)len, m->d_channel, -1,
				     false);
	eng_unsubscribe(s, c, &(struct json_slice){ name, (size_t)len }, 1);
	leave(s, c, pc, name, (size_t)len);
}

static bool event_is(const struct pusher_msg *m, const char *name)
{
	size_t n = strlen(name);

	return m->event.len == n && !memcmp(m->event.p, name, n);
}

/* One Pusher event from @c, @len bytes at @p. */
static void on_message(struct eng_shard *s, struct eng_conn *c, uint8_t op,
		       const uint8_t *p, size_t len)
{
	struct pconn *pc = eng_pusher__pconn(s, c);
	size_t cap = 2 * len + 16;	/* each parser's scratch */
	struct pusher_msg m;
	char *scratch;

	if (op != WS_OP_TEXT || !pc) {	/* the protocol is JSON text */
		eng_conn_fail(s, c, WS_CLOSE_UNSUPPORTED);
		return;
	}
	scratch = malloc(2 * cap);
	if (!scratch) {
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	if (pusher_msg_parse(s->json, (const char *)p, len, &m, scratch,
			     cap) < 0)
		eng_pusher__error(s, c, ENG_PUSHER_MALFORMED, "malformed message");
	else if (event_is(&m, "pusher:ping"))
		send_pong(s, c, false);
	else if (event_is(&m, "pusher:subscribe"))
		subscribe(s, c, pc, &m, scratch + cap, cap);
	else if (event_is(&m, "pusher:signin"))
		signin(s, c, pc, &m, scratch + cap, cap);
	else if (event_is(&m, "pusher:unsubscribe"))
		unsubscribe(s, c, pc, &m);
	else if (m.event.len >= 7 && !memcmp(m.event.p, "client-", 7))
		eng_pusher__client_event(s, c, pc, &m);
	/* pusher:pong and others: nothing to do */
	free(scratch);
}

/* ---- the upgrade and the close ------------------------------------------ */

struct pconn *eng_pusher__pconn_new(struct eng_shard *s, struct eng_conn *c)
{
	void *t;

	if (s->id >= SHARDS_MAX)
		return NULL;
	/*
	 * Mapped, not calloc'd: mimalloc zeroes a large calloc, which made
	 * the whole table resident (2.6 MiB a shard of 65,536 slots) at
	 * the first Pusher connection. Pages of slots never used stay
	 * untouched, as the connection table's (core.c). Kept until exit.
	 */
	if (!tabs[s->id]) {
		t = mmap(NULL, (size_t)s->nr_conns * sizeof(struct pconn),
			 PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (t == MAP_FAILED)
			return NULL;
		tabs[s->id] = t;
	}
	/* a slot's last Pusher connection left it clean (on_close) */
	return &tabs[s->id][eng_slot(s, c)];
}

/* The target again, "/app/{key}?query", into @buf (@cap bytes). */
static ssize_t target(const struct hs_req *req, char *buf, size_t cap)
{
	size_t n = req->path.len;

	if (n + 1 + req->query.len > cap)
		return -E2BIG;
	memcpy(buf, req->path.p, n);
	if (req->query.len) {
		buf[n++] = '?';
		memcpy(buf + n, req->query.p, req->query.len);
		n += req->query.len;
	}
	return (ssize_t)n;
}

/*
 * The keep-alive (eng_endpoint due and on_due), in place of the engine's
 * pings and --idle-timeout, from the two ticks every connection has:
 * after activity_timeout of silence from the client, pusher:ping
 * (last_ping = now); nothing from it within --pusher-pong-timeout of
 * that, close 4201, which pusher-js answers by reconnecting at once. A
 * ping waits while nothing was received since: last_ping > last_rx.
 */
static uint32_t keepalive_due(const struct eng_shard *s,
			      const struct eng_conn *c)
{
	const struct eng_pusher_cfg *p = pcfg(s);

	if (c->last_ping > c->last_rx)
		return c->last_ping + eng_ms_to_ticks(p->pong_ms);
	return c->last_rx + eng_ms_to_ticks(p->activity_ms);
}

static void keepalive(struct eng_shard *s, struct eng_conn *c)
{
	if (s->tick < keepalive_due(s, c))
		return;		/* it spoke since: the timer is set again */
	if (c->last_ping > c->last_rx) {
		ENG_STAT_ADD(s, timeouts, 1);
		eng_conn_close_ws(s, c, PUSHER_PONG_TIMEOUT,
				  "pong not received");
		return;
	}
	c->last_ping = s->tick;
	send_pong(s, c, true);
}

/* Upgrades @c only to close it with Pusher's @code: pusher-js acts on it. */
static void refuse(struct eng_shard *s, struct eng_conn *c,
		   const struct hs_req *req, int code)
{
	const char *why = pusher_code_text(code);

	eng_conn_upgrade(s, c, &req->ws_key, ENG_CONN_K_PUSHER);
	eng_conn_close_ws(s, c, (uint16_t)code, why ? why : "");
}

/*
 * GET /app/{key}?protocol=7&...: the app found by its key, a socket_id
 * drawn, the 101 and pusher:connection_established.
 */
static void on_upgrade(struct eng_shard *s, struct eng_conn *c,
		       const struct hs_req *req)
{
	const struct pusher_apps *apps = &pcfg(s)->apps;
	const struct pusher_app *app;
	struct json_slice key, sid;
	char buf[1024], *o = NULL, sbuf[PUSHER_SOCKET_ID_OWN + 1];
	unsigned protocol;
	struct eng_buf *b;
	struct pconn *pc;
	ssize_t n = target(req, buf, sizeof(buf));
	int code;

	code = n < 0 ? PUSHER_PATH_NOT_FOUND :
	       pusher_ws_target(buf, (size_t)n, &key, &protocol);
	if (code) {
		refuse(s, c, req, code);
		return;
	}
	app = pusher_app_by_key(apps, key.p, key.len);
	if (!app) {
		refuse(s, c, req, PUSHER_APP_NOT_FOUND);
		return;
	}
	pc = eng_pusher__pconn_new(s, c);
	n = pc ? pusher_socket_id_new(pc->sid) : -ENOMEM;
	if (n < 0) {
		refuse(s, c, req, PUSHER_OVER_CAPACITY);
		return;
	}
	pc->gen = c->gen;
	pc->app = (uint16_t)(app - apps->v + 1);
	sid = eng_pusher__sid(pc, sbuf);
	eng_conn_upgrade(s, c, &req->ws_key, ENG_CONN_K_PUSHER);
	b = frame_new(128, &o);
	send_buf(s, c, frame_seal(b, b ? pusher_enc_connected(o, 128, sid,
				pcfg(s)->activity_ms / 1000) : -1));
}

static void on_close(struct eng_shard *s, struct eng_conn *c)
{
	struct pconn *pc = eng_pusher__pconn(s, c);

	if (pc && c->state == ENG_CONN_HANDED) {
		/* carried live: the new process serves it, nobody is told */
		eng_pusher__ho_gone(s, c, pc);
		return;
	}
	for (struct eng_sub *sub = c->subs; sub; sub = sub->cnext)
		eng_pusher_count_add(sub->chan->name, sub->chan->len,
				     (struct json_slice){ 0 }, -1, false);
	eng_unsubscribe_all(s, c);
	while (pc && pc->joins)
		leave(s, c, pc, pc->joins->name, pc->joins->len);
	if (pc && pc->uid)
		unwatch(s, c, pc);
	if (pc) {
		free(pc->uid);
		memset(pc, 0, sizeof(*pc));
	}
}

static bool enabled(const struct eng_shard *s)
{
	return s->eng->cfg.pusher && s->eng->cfg.pusher->apps.n;
}

/*
 * eng_pub_skip: whether @c is the connection of socket_id @id. A
 * terminate (ENG_PUSHER_TERMINATE, never a socket_id) is skipped by
 * everyone, and closes each connection it reaches, as Pusher does.
 */
static bool is_socket(struct eng_shard *s, struct eng_conn *c, const char *id,
		      size_t len)
{
	const struct pconn *pc = eng_pusher__pconn(s, c);
	uint32_t sid[2];

	if (pc && len == sizeof(ENG_PUSHER_TERMINATE) - 1 &&
	    !memcmp(id, ENG_PUSHER_TERMINATE, len)) {
		eng_pusher__error(s, c, PUSHER_UNAUTHORIZED, "terminated by the app");
		eng_conn_close_ws(s, c, PUSHER_UNAUTHORIZED,
				  "terminated by the app");
		return true;
	}

	/* the text read back as numbers: only our own printing matches */
	return pc && !pusher_socket_id_read(id, len, sid) &&
	       sid[0] == pc->sid[0] && sid[1] == pc->sid[1];
}

/*
 * A take-over's drain (handover.h): pusher:error 4200 then close 4200,
 * "reconnect immediately", which pusher-js does, to the new process.
 */
static void on_restart(struct eng_shard *s, struct eng_conn *c)
{
	eng_pusher__error(s, c, PUSHER_RECONNECT, "service restart: reconnect now");
	eng_conn_close_ws(s, c, PUSHER_RECONNECT, "service restart");
}

static const struct eng_endpoint pusher_endpoint = {
	.name = "pusher",
	.path = "/app/",
	.prefix = true,
	.kind = ENG_CONN_K_PUSHER,
	.enabled = enabled,
	.on_upgrade = on_upgrade,
	.on_message = on_message,
	.due = keepalive_due,
	.on_due = keepalive,
	.on_close = on_close,
	.on_restart = on_restart,
	.ho_save = eng_pusher__ho_save,
	.ho_load = eng_pusher__ho_load,
};

int eng_pusher_register(void)
{
	eng_pub_skip = is_socket;
	return eng_endpoint_add(&pusher_endpoint);
}
