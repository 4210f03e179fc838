/* SPDX-License-Identifier: MIT */
/*
 * pusher_watch.c: watchlists (pusher_eng.h, pusher-js watchlist.ts).
 * A signed-in user U is the member of its own watch channel, counted by
 * pusher_presence.c as a presence channel's member is (across nodes with
 * Redis, one or a cluster), whose first connection announces watchlist_events online
 * and last one offline; a watcher subscribes to the watch channel of each
 * id it watches, and at sign-in is told which of them are online now:
 * from this node's table, or from the members' hashes in Redis. Also
 * the engine's names of Pusher channels (eng_pusher_chan_name), which
 * watch channels' names follow.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "chan.h"
#include "conn.h"
#include "pusher_eng.h"
#include "rreq.h"
#include "sub.h"

int eng_pusher_chan_name(const struct pusher_app *app, const char *ch,
			 size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	size_t n = app->id_len + 4;

	if (!len || len > PUSHER_CHANNEL_MAX)
		return -EINVAL;
	out[0] = ENG_PUSHER_MARK;
	out[2] = ':';
	memcpy(out + 3, app->id, app->id_len);
	out[n - 1] = ':';
	/* the engine's alphabet lacks Pusher's ',', ';' and '#' */
	if (n + len <= ENG_CHAN_MAX && eng_chan_name_ok(ch, len)) {
		out[1] = 'p';
		memcpy(out + n, ch, len);
		out[n + len] = '\0';
		return (int)(n + len);
	}
	if (!EVP_Digest(ch, len, md, &mdlen, EVP_sha256(), NULL))
		return -EINVAL;
	out[1] = 'h';
	for (unsigned i = 0; i < 20; i++)
		sprintf(out + n + 2 * i, "%02x", md[i]);
	return (int)(n + 40);
}

int eng_pusher_watch_key(const struct pusher_app *app, const char *uid,
			 size_t len, char *out)
{
	int n = eng_pusher_user_key(app, uid, len, out);

	if (n > 0)
		out[1] = ENG_PUSHER_WATCH;	/* "!u:" -> "!w:" */
	return n;
}

/* U, signed in on @c, as the member of its watch channel @w. */
static struct pusher_member self(const char *uid, char *json)
{
	size_t n = strlen(uid);

	return (struct pusher_member){
		.id = { json, json_escape(json, uid, n) },
		.id_str = { uid, n },
	};
}

/* Queues watchlist_events online of @ids to @c; nothing when none. */
static void tell(struct eng_shard *s, struct eng_conn *c,
		 const struct json_slice *ids, unsigned n)
{
	size_t cap = 128;
	struct eng_buf *f;
	ssize_t len;
	char *o;

	if (!n)
		return;
	for (unsigned i = 0; i < n; i++)
		cap += json_escape_max(ids[i].len) * 2 + 1;
	o = malloc(cap);
	len = o ? pusher_enc_watchlist(o, cap, true, ids, n) : -ENOMEM;
	f = len < 0 ? NULL : eng_pusher_text(o, (size_t)len);
	free(o);
	if (f)
		eng_conn_queue(s, c, f);
	else
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

/* Redis's answer: the online ids, joined by '\0'. */
static void online_done(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_conn *c = &s->conns[p->slot];
	struct json_slice ids[PUSHER_WATCHLIST_MAX];
	unsigned n = 0;
	char *q, *end;

	if (c->gen != p->gen || !eng_conn_alive(c) || p->result <= 0 ||
	    !p->blob)
		return;		/* Redis failing: changes still come */
	for (q = p->blob, end = q + p->blob_len; q <= end &&
	     n < PUSHER_WATCHLIST_MAX; q++) {
		char *z = memchr(q, '\0', (size_t)(end - q));

		if (!z)
			z = end;
		if (z > q)
			ids[n++] = (struct json_slice){ q, (size_t)(z - q) };
		q = z;
	}
	tell(s, c, ids, n);
}

/* The members of each watch channel in @names, as one script. */
static const char online_lua[] =
	"local p, out = ARGV[1], {}\n"
	"for i = 2, #ARGV do\n"
	"  for _, u in ipairs(redis.call('HKEYS', p .. 'pm:' .. ARGV[i])) do\n"
	"    out[#out + 1] = u\n"
	"  end\n"
	"end\n"
	"return {#out, table.concat(out, '\\0')}\n";

/*
 * Asks Redis which of the @n watch channels @names have a member, in one
 * script: their keys are in the slot of the first's (all of them with one
 * Redis).
 */
static int ask_some(struct eng_shard *s, struct eng_conn *c,
		    const struct json_slice *names, unsigned n)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	const char *av[PUSHER_WATCHLIST_MAX + 5] = { "EVAL", online_lua, "1" };
	size_t ls[PUSHER_WATCHLIST_MAX + 5] = { 4, sizeof(online_lua) - 1, 1 };
	char keys[ENG_RREQ_KEYS_MAX], *rch;
	struct eng_rreq *p = NULL;
	uint16_t hslot;
	size_t each = ENG_CHAN_MAX + 128;

	rch = malloc(n * each);
	if (!rch)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		av[5 + i] = rch + i * each;
		ls[5 + i] = eng_rreq_channel(cfg, rch + i * each, each,
					     names[i].p, names[i].len);
	}
	ls[3] = ls[4] = eng_rreq_keys(s->eng, keys, sizeof(keys), av[5], ls[5],
				      &hslot);
	av[3] = av[4] = keys;	/* the key for its slot, the prefix */
	p = eng_rreq_new(ENG_RQ_SCRIPT, 5 + (int)n, av, ls);
	free(rch);
	if (!p)
		return -ENOMEM;
	p->hslot = hslot;
	p->done = online_done;
	return eng_rreq_send(s, c, p);
}

/*
 * Asks Redis which of the @n watch channels @names have a member: one
 * script with one Redis; on a cluster, where each channel's keys are its
 * slot's, one each (at most PUSHER_WATCHLIST_MAX), each answer told as
 * it comes.
 */
static int ask_online(struct eng_shard *s, struct eng_conn *c,
		      const struct json_slice *names, unsigned n)
{
	int ret = 0;

	if (eng_pusher_across(s))
		return ask_some(s, c, names, n);
	for (unsigned i = 0; i < n && !ret; i++)
		ret = ask_some(s, c, names + i, 1);
	return ret;
}

int eng_pusher_watch(struct eng_shard *s, struct eng_conn *c,
		     const struct pusher_app *app, struct json_slice sid,
		     const char *uid, struct json_slice user_data,
		     char *scratch, size_t cap, struct eng_buf *reply)
{
	struct json_slice ids[PUSHER_WATCHLIST_MAX];
	struct json_slice names[PUSHER_WATCHLIST_MAX + 1];
	struct json_slice on[PUSHER_WATCHLIST_MAX];
	char (*keys)[ENG_CHAN_MAX + 1] = NULL;
	char w[ENG_CHAN_MAX + 1], *json;
	struct pusher_member mb;
	struct eng_buf *list = NULL;
	unsigned n = 0, non = 0;
	int ret, wl;

	ret = pusher_watchlist_parse(s->json, user_data, scratch, cap, ids, &n);
	if (ret < 0)
		return ret;
	wl = eng_pusher_watch_key(app, uid, strlen(uid), w);
	json = malloc(json_escape_max(strlen(uid)));
	keys = calloc(n + 1, sizeof(*keys));
	ret = -ENOMEM;
	if (wl < 0 || !json || !keys)
		goto out;
	/* counted online: its watchers hear it, on every node */
	mb = self(uid, json);
	ret = eng_pusher_join(s, c, w, (size_t)wl, (struct json_slice){ 0 },
			      sid, &mb, &list);
	eng_buf_put(list);	/* a presence list: nobody's to read */
	if (ret < 0) {
		ret = -ENOMEM;	/* one member: never full */
		goto out;
	}
	for (unsigned i = 0; i <= n; i++) {
		/* the user's own channel first, then each watched id's */
		int k = !i ? eng_pusher_user_key(app, uid, strlen(uid), keys[0])
			   : eng_pusher_watch_key(app, ids[i - 1].p,
						  ids[i - 1].len, keys[i]);

		names[i] = (struct json_slice){ keys[i], k < 0 ? 0 : (size_t)k };
		if (i && !s->eng->redis &&
		    eng_pusher_user_count(keys[i], names[i].len))
			on[non++] = ids[i - 1];
	}
	ret = eng_subscribe(s, c, names, n + 1, reply);
	reply = NULL;
	if (!ret && n && s->eng->redis)
		ret = ask_online(s, c, names + 1, n);
	else if (!ret)
		tell(s, c, on, non);
out:
	eng_buf_put(reply);
	free(keys);
	free(json);
	return ret;
}

void eng_pusher_unwatch(struct eng_shard *s, struct eng_conn *c,
			const struct pusher_app *app, struct json_slice sid,
			const char *uid)
{
	char w[ENG_CHAN_MAX + 1];
	int wl = eng_pusher_watch_key(app, uid, strlen(uid), w);
	struct eng_sub *sub, *next;

	if (wl > 0)
		eng_pusher_leave(s, c, w, (size_t)wl, (struct json_slice){ 0 },
				 sid, (struct json_slice){ uid, strlen(uid) });
	for (sub = c->subs; sub; sub = next) {
		next = sub->cnext;
		if (sub->chan->len > 1 && sub->chan->name[0] == ENG_PUSHER_MARK &&
		    sub->chan->name[1] == ENG_PUSHER_WATCH)
			eng_unsubscribe_one(s, c, sub);
	}
}
