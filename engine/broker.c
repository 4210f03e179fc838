/* SPDX-License-Identifier: MIT */
/*
 * broker.c: the embedded broker behind struct eng_broker: it encodes the
 * frame here and hands it to its sequencer (pub.c), and asks users'
 * owners directly (user.c). The Redis one is in broker_redis.c; main
 * picks one at start-up.
 */
#include <errno.h>
#include <stdio.h>

#include "bridge.h"
#include "broker.h"
#include "buf.h"
#include "conn.h"
#include "hist.h"
#include "hs.h"
#include "inbox.h"
#include "mail.h"
#include "pub.h"
#include "user.h"
#include "webhook.h"

static const char json_type[] = "application/json";

/* 200 {"ok":true} for an HTTP publisher, queued once sequenced. */
static struct eng_buf *ok_response(struct eng_shard *s, struct eng_conn *c)
{
	static const char ok[] = "{\"ok\":true}\n";
	struct eng_buf *b = eng_buf_new(256);
	ssize_t n;

	if (!b)
		return NULL;
	n = hs_write_response((char *)b->data, b->cap, 200, NULL, json_type,
			      ok, sizeof(ok) - 1, eng_conn_keep_s(s, c));
	if (n < 0) {
		eng_buf_put(b);
		return NULL;
	}
	b->len = (uint32_t)n;
	return b;
}

/* The push frame of a publish to @name (@to), as its kind keeps it. */
static struct eng_buf *publish_frame(struct eng_shard *s, uint8_t to,
				     const char *name, size_t len,
				     const uint8_t *payload, size_t plen,
				     bool json)
{
	if (to == ENG_TO_USER)
		return eng_pub_user_frame(name, len, payload, plen, json);
	if (to == ENG_TO_INBOX)
		return eng_pub_inbox_frame(name, len, payload, plen, json);
	if (to == ENG_TO_CHANNEL && eng_ns_find(&s->eng->cfg, name, len))
		return eng_pub_hist_frame(name, len, payload, plen, json);
	return eng_pub_frame(name, len, payload, plen, json);
}

static int embedded_publish(struct eng_shard *s, struct eng_conn *c,
			    uint8_t to, const char *name, size_t len,
			    const uint8_t *payload, size_t plen, bool json,
			    struct eng_buf *ok, struct eng_buf *err,
			    eng_reword_fn *reword)
{
	struct eng_buf *frame;

	(void)reword;
	eng_buf_put(err);	/* sequencing here cannot fail later */
	frame = publish_frame(s, to, name, len, payload, plen, json);
	if (!c && frame) {		/* nobody to answer */
		eng_pub_inject(&s->mail, frame);
		return 0;
	}
	if (!ok && frame)
		ok = ok_response(s, c);
	if (!frame || !ok) {
		eng_buf_put(frame);
		eng_buf_put(ok);
		return -ENOMEM;
	}
	return eng_publish(s, c, frame, ok);
}

/* @fin is told once the channel's owner has sequenced it (or not). */
static int embedded_publish_fin(struct eng_shard *s, const char *name,
				size_t len, const uint8_t *payload,
				size_t plen, eng_pub_fin_fn *fin, void *arg)
{
	struct eng_buf *frame = publish_frame(s, ENG_TO_CHANNEL, name, len,
					      payload, plen, true);

	return frame ? eng_publish_fin(s, frame, fin, arg) : -ENOMEM;
}

static int embedded_user_query(struct eng_shard *s, struct eng_conn *c,
			       const char *uid, size_t len)
{
	return eng_user_query(s, c, uid, len, ENG_OWN_QUERY);
}

static int embedded_user_kick(struct eng_shard *s, struct eng_conn *c,
			      const char *uid, size_t len)
{
	return eng_user_query(s, c, uid, len, ENG_OWN_KICK);
}

/* This node's users and connections, summed over the owners' counters. */
static int embedded_online(struct eng_shard *s, struct eng_conn *c)
{
	unsigned long long users = 0, conns = 0;
	char body[128];
	int n;

	for (unsigned i = 0; i < s->eng->cfg.shards; i++) {
		struct eng_stats *st = &s->eng->shards[i].stats;

		users += atomic_load_explicit(&st->users_owned,
					      memory_order_relaxed);
		conns += atomic_load_explicit(&st->user_conns,
					      memory_order_relaxed);
	}
	n = snprintf(body, sizeof(body),
		     "{\"users\":%llu,\"connections\":%llu}\n", users, conns);
	eng_conn_http_reply(s, c, 200, NULL, json_type, body, (size_t)n);
	return 0;
}

/* Nothing to read elsewhere: the user's owner sent the unread along. */
static void embedded_joined(struct eng_shard *s, struct eng_conn *c)
{
	(void)s;
	(void)c;
}

/*
 * The owner's record of interested shards is all there is; its first
 * shard and its last gone are the node's, the only one: a /ws channel's
 * channel_occupied and channel_vacated webhooks (webhook.h).
 */
static bool embedded_interest(struct eng_shard *s, struct eng_chan *ch,
			      unsigned before, bool add,
			      struct eng_owner_mail *m)
{
	struct json_slice name = { ch->name, ch->len }, none = { 0 };

	(void)s;
	(void)m;
	/* users, Pusher's and the engine's own channels are not /ws's */
	if (!ch->len || ch->name[0] == ENG_USER_MARK || ch->name[0] == '!' ||
	    ch->name[0] == '$')
		return true;
	if (add && !before && ch->nshards)
		eng_webhook_native("channel_occupied", name, none);
	else if (!add && before && !ch->nshards)
		eng_webhook_native("channel_vacated", name, none);
	return true;
}

/* Presence is the owner's own: its first and last are the webhooks'. */
static void embedded_presence(struct eng_shard *s, struct eng_chan *ch)
{
	struct json_slice uid = { ch->name + 1, ch->len - 1 }, none = { 0 };

	(void)s;
	if (ch->pres && !ch->pres->told) {
		ch->pres->told = true;
		eng_webhook_native("user_online", none, uid);
	} else if (!ch->pres) {
		eng_webhook_native("user_offline", none, uid);
	}
}

const struct eng_broker eng_broker_embedded = {
	.name = "embedded broker",
	.state_here = true,
	.publish = embedded_publish,
	.publish_fin = embedded_publish_fin,
	.user_query = embedded_user_query,
	.user_kick = embedded_user_kick,
	.online = embedded_online,
	.hist_read = eng_hist_owner_read,
	.inbox_ask = eng_inbox_owner_ask,
	.joined = embedded_joined,
	.interest = embedded_interest,
	.presence = embedded_presence,
};

bool eng_broker_healthy(struct eng *e, char *why, size_t len)
{
	return !e->bridge || eng_bridge_healthy(e->bridge, why, len);
}

size_t eng_broker_stats_max(const struct eng *e)
{
	return e->bridge ? 16 + ENG_BRIDGE_STATS_MAX : 0;
}

size_t eng_broker_stats(struct eng *e, char *out, size_t cap)
{
	size_t n;

	if (!e->bridge)
		return 0;
	n = (size_t)snprintf(out, cap, ",\"redis\":");
	return n + eng_bridge_stats(e->bridge, out + n, cap - n);
}

bool eng_broker_figures(struct eng *e, struct eng_bridge_figs *f)
{
	if (!e->bridge)
		return false;
	eng_bridge_figures(e->bridge, f);
	return true;
}
