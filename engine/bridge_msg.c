/* SPDX-License-Identifier: MIT */
/*
 * bridge_msg.c: messages from Redis into push frames, on the bridge
 * thread: a channel's, a user's or a broadcast, a history channel's or a
 * kept push (stamped by their scripts), and kicks on <prefix>ctl; each
 * handed to its owner shard.
 */
#include "bridge_int.h"

bool bridge__epoch_ok(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		      (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

struct eng_buf *bridge__stamped_frame(struct eng_bridge *r, int kind,
				      const char *name, size_t nlen,
				      const char *epoch, uint64_t n,
				      const char *data, size_t len)
{
	const uint8_t *d = (const uint8_t *)data;
	struct eng_buf *f;
	bool json;

	if (len > r->eng->cfg.max_message)
		return NULL;
	json = json_valid(r->json, data, len);
	if (!json && !json_utf8_valid(data, len))
		return NULL;
	f = kind == STAMP_HIST ? eng_pub_hist_frame(name, nlen, d, len, json) :
	    eng_pub_inbox_frame(name, nlen, d, len, json);
	if (f && kind == STAMP_HIST)
		eng_hist_stamp(f, epoch, n);
	else if (f)
		eng_inbox_stamp(f, epoch, n);
	return f;
}

/* "EPOCH N:MESSAGE", as the scripts PUBLISH it (after their marker). */
static struct eng_buf *stamped_message(struct eng_bridge *r, int kind,
				       const char *name, size_t nlen,
				       const char *p, size_t len)
{
	size_t elen = kind == STAMP_HIST ? ENG_EPOCH_LEN : ENG_INBOX_EPOCH_LEN;
	char epoch[ENG_EPOCH_LEN + 1];
	size_t i = elen;
	uint64_t n = 0;

	if (len < elen + 2 || !bridge__epoch_ok(p, elen))
		return NULL;
	memcpy(epoch, p, elen);
	epoch[elen] = '\0';
	for (; i < len && p[i] >= '0' && p[i] <= '9' && i < 40; i++)
		n = n * 10 + (uint64_t)(p[i] - '0');
	if (i == len || p[i] != ':' || !n)
		return NULL;
	return bridge__stamped_frame(r, kind, name, nlen, epoch, n, p + i + 1,
				     len - i - 1);
}

void bridge__on_message(struct eng_bridge *r, const redisReply *chan,
			const redisReply *payload)
{
	const struct eng_cfg *cfg = &r->eng->cfg;
	size_t plen = strlen(cfg->redis_prefix);
	const char *name = NULL;
	size_t nlen = 0;
	struct eng_buf *f;
	struct rchan *rc;
	bool json, user = false;

	if (chan->len == r->all_len && !memcmp(chan->str, r->all, r->all_len)) {
		name = NULL;
	} else if (chan->len > plen + 3 && !memcmp(chan->str, cfg->redis_prefix,
						   plen) &&
		   !memcmp(chan->str + plen, "ch:", 3)) {
		name = chan->str + plen + 3;
		nlen = chan->len - plen - 3;
		if (!eng_chan_wire_ok(name, nlen))
			goto reject;
	} else if (chan->len > plen + 5 && !memcmp(chan->str, cfg->redis_prefix,
						   plen) &&
		   !memcmp(chan->str + plen, "user:", 5)) {
		name = chan->str + plen + 5;
		nlen = chan->len - plen - 5;
		user = true;
		if (!eng_chan_name_ok(name, nlen))
			goto reject;
	} else {
		goto reject;
	}
	if (payload->type != REDIS_REPLY_STRING)
		goto reject;
	if (name && !user && payload->len && (uint8_t)payload->str[0] == 0xff) {
		/* a history channel's message, from eng_lua_hpub */
		f = !eng_ns_find(cfg, name, nlen) ? NULL :
		    stamped_message(r, STAMP_HIST, name, nlen,
				    payload->str + 1, payload->len - 1);
		if (!f)
			goto reject;
		atomic_fetch_add_explicit(&r->messages, 1,
					  memory_order_relaxed);
		rc = bridge__rchan_find(&r->chans, chan->str, chan->len,
					eng_chan_hash(chan->str, chan->len));
		bridge__hist_live(r, rc, f);
		return;
	}
	if (user && payload->len && (uint8_t)payload->str[0] == 0xfe) {
		/* a kept push, from eng_lua_ikeep */
		f = stamped_message(r, STAMP_INBOX, name, nlen,
				    payload->str + 1, payload->len - 1);
		if (!f)
			goto reject;
		goto inject;
	}
	if (payload->len > cfg->max_message)
		goto reject;
	json = json_valid(r->json, payload->str, payload->len);
	if (!json && !json_utf8_valid(payload->str, payload->len))
		goto reject;	/* a text frame cannot carry it */
	if (user)
		f = eng_pub_user_frame(name, nlen, (const uint8_t *)payload->str,
				       payload->len, json);
	else
		f = eng_pub_frame(name, nlen, (const uint8_t *)payload->str,
				  payload->len, json);
	if (!f)
		goto reject;
inject:
	atomic_fetch_add_explicit(&r->messages, 1, memory_order_relaxed);
	eng_pub_inject(&r->mail, f);
	return;
reject:
	atomic_fetch_add_explicit(&r->rejected, 1, memory_order_relaxed);
}

void bridge__on_ctl(struct eng_bridge *r, const redisReply *payload)
{
	struct eng_owner_mail *m;
	const char *uid;
	size_t len;

	if (payload->type != REDIS_REPLY_STRING || payload->len < 6 ||
	    memcmp(payload->str, "kick ", 5))
		goto reject;
	uid = payload->str + 5;
	len = payload->len - 5;
	if (!eng_chan_name_ok(uid, len))
		goto reject;
	m = eng_malloc(sizeof(*m));	/* the owner frees it: engine heap */
	if (!m)
		goto reject;
	memset(m, 0, sizeof(*m));
	m->kind = ENG_OWN_KICK;
	m->from = ENG_BRIDGE;
	m->slot = UINT32_MAX;		/* nobody waits for the answer */
	m->len = (uint8_t)eng_user_key(m->name, uid, len);
	eng_mail_post(&r->mail, eng_mail_owner(r->eng, eng_chan_hash(m->name,
		      m->len)), ENG_OP_USER, m);
	return;
reject:
	atomic_fetch_add_explicit(&r->rejected, 1, memory_order_relaxed);
}
