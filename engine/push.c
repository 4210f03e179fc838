/* SPDX-License-Identifier: MIT */
/*
 * push.c: the client protocol on /ws. Each text message is one JSON
 * command, {"seq":S,"cmd":"NAME","data":{...}}, parsed with simdjson's
 * ondemand API (proto/json_shim.cc) from a padded per-shard copy. Every
 * command gets a reply carrying its seq; errors are 4xx replies and the
 * connection stays open. docs/PROTOCOL.md is the reference.
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
#include "handover.h"
#include "hist.h"
#include "hs.h"
#include "inbox.h"
#include "mail.h"
#include "json.h"
#include "metrics.h"
#include "push.h"
#include "sub.h"
#include "user.h"

/* Builds {"seq":S,"cmd":"NAME","code":C,"msg":"M"} as a text frame. */
static struct eng_buf *reply_frame(const struct json_cmd *cmd, int code,
				   const char *msg)
{
	size_t cap = 64 + cmd->seq.len + json_escape_max(cmd->cmd.len) +
		     strlen(msg);
	struct eng_buf *b = eng_buf_new(WS_MAX_SERVER_HDR + cap);
	char *p, *start;

	if (!b)
		return NULL;
	start = p = (char *)b->data + WS_MAX_SERVER_HDR;
	*p++ = '{';
	if (cmd->seq.len) {
		/* seq is a number or a string token simdjson validated */
		memcpy(p, "\"seq\":", 6);
		p += 6;
		memcpy(p, cmd->seq.p, cmd->seq.len);
		p += cmd->seq.len;
		*p++ = ',';
	}
	if (cmd->cmd.p) {
		memcpy(p, "\"cmd\":", 6);
		p += 6;
		p += json_escape(p, cmd->cmd.p, cmd->cmd.len);
		*p++ = ',';
	}
	p += sprintf(p, "\"code\":%d,\"msg\":\"%s\"}", code, msg);
	eng_buf_seal(b, (uint8_t *)start, WS_OP_TEXT, (size_t)(p - start));
	return b;
}

struct eng_buf *eng_push_reword(const struct eng_buf *reply, int code,
				const char *msg)
{
	const uint8_t *h = reply->data + reply->start;
	size_t hl = (h[1] & 0x7f) < 126 ? 2 : (h[1] & 0x7f) == 126 ? 4 : 10;
	const char *pay = (const char *)h + hl, *tail = NULL;
	size_t plen = reply->len - hl, keep, cap;
	struct eng_buf *b;
	char *p, *start;

	/* reply_frame() ended it with "code":...}; msg holds no such text */
	for (size_t i = plen; i-- > 0;)
		if (pay[i] == '"' && plen - i > 7 && !memcmp(pay + i,
							     "\"code\":", 7)) {
			tail = pay + i;
			break;
		}
	if (!tail)
		return NULL;
	keep = (size_t)(tail - pay);
	cap = keep + 48 + strlen(msg);
	b = eng_buf_new(WS_MAX_SERVER_HDR + cap);
	if (!b)
		return NULL;
	start = p = (char *)b->data + WS_MAX_SERVER_HDR;
	memcpy(p, pay, keep);
	p += keep;
	p += sprintf(p, "\"code\":%d,\"msg\":\"%s\"}", code, msg);
	eng_buf_seal(b, (uint8_t *)start, WS_OP_TEXT, (size_t)(p - start));
	return b;
}

static void reply(struct eng_shard *s, struct eng_conn *c,
		  const struct json_cmd *cmd, int code, const char *msg)
{
	struct eng_buf *b = reply_frame(cmd, code, msg);

	if (b)
		eng_conn_queue(s, c, b);
	else
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

static bool cmd_is(const struct json_cmd *cmd, const char *name)
{
	size_t n = strlen(name);

	return cmd->cmd.len == n && !memcmp(cmd->cmd.p, name, n);
}

/* Every name must be valid before any subscription changes. */
static bool names_ok(const struct json_slice *names, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!eng_chan_name_ok(names[i].p, names[i].len))
			return false;
	return true;
}

/* Subscriptions @names would add that @c does not have yet. */
static unsigned new_subs(struct eng_shard *s, struct eng_conn *c,
			 const struct json_slice *names, unsigned n)
{
	unsigned fresh = 0;

	for (unsigned i = 0; i < n; i++) {
		uint64_t hash = eng_chan_hash(names[i].p, names[i].len);
		struct eng_chan *ch = eng_chan_find(&s->chans, names[i].p,
						    names[i].len, hash);
		bool dup = false;

		if (ch && eng_sub_find(c, ch))
			continue;
		/* A name listed twice in one command counts once. */
		for (unsigned j = 0; j < i && !dup; j++)
			dup = names[j].len == names[i].len &&
			      !memcmp(names[j].p, names[i].p, names[i].len);
		fresh += !dup;
	}
	return fresh;
}

/*
 * The channels a subscribe or unsubscribe names: data.channels, or one
 * as data.channel. Their count into *@names (which may become
 * &cmd->channel), or -1 after replying why there are none.
 */
static int chan_list(struct eng_shard *s, struct eng_conn *c,
		     const struct json_cmd *cmd,
		     const struct json_slice **names)
{
	if (cmd->channel.p && cmd->nchannels) {
		reply(s, c, cmd, 400, "channel or channels, not both");
		return -1;
	}
	if (cmd->channel.p) {
		*names = &cmd->channel;
		return 1;
	}
	if (!cmd->nchannels) {
		reply(s, c, cmd, 400, "channels needed");
		return -1;
	}
	return (int)cmd->nchannels;
}

static void subscribe(struct eng_shard *s, struct eng_conn *c,
		      const struct json_cmd *cmd, const struct json_slice *names,
		      unsigned n)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	struct eng_buf *ok;

	if (!names_ok(names, n)) {
		reply(s, c, cmd, 400, "bad channel name");
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!eng_auth_channel_ok(c->auth, names[i].p, names[i].len)) {
			reply(s, c, cmd, 403, "channel not allowed");
			return;
		}
	}
	/* The user's own subscription is not the client's to count. */
	if (c->nsubs - (c->auth && (c->flags & ENG_CONN_F_ADMITTED)) +
	    new_subs(s, c, names, n) > cfg->max_subs) {
		reply(s, c, cmd, 413, "too many subscriptions");
		return;
	}
	ok = reply_frame(cmd, 200, "ok");
	if (!ok || eng_subscribe(s, c, names, n, ok) < 0)
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

/*
 * The channel a history command or a recovering subscribe names: one,
 * well formed, allowed, with history. False after replying why not.
 */
static bool hist_channel(struct eng_shard *s, struct eng_conn *c,
			 const struct json_cmd *cmd)
{
	const struct json_slice *ch = &cmd->channel;

	if (!ch->p || cmd->nchannels) {
		reply(s, c, cmd, 400, "one channel, as data.channel");
		return false;
	}
	if (!eng_chan_name_ok(ch->p, ch->len)) {
		reply(s, c, cmd, 400, "bad channel name");
		return false;
	}
	if (!eng_auth_channel_ok(c->auth, ch->p, ch->len)) {
		reply(s, c, cmd, 403, "channel not allowed");
		return false;
	}
	if (!eng_ns_find(&s->eng->cfg, ch->p, ch->len)) {
		reply(s, c, cmd, 400, "channel has no history");
		return false;
	}
	if (cmd->seq.len > 64) {
		reply(s, c, cmd, 400, "seq too long");
		return false;
	}
	return true;
}

/*
 * {"cmd":"history","data":{"channel":C,"limit":N}}: the last N messages;
 * with "offset":O (and "epoch":E), those above O. One page per reply.
 */
static void history(struct eng_shard *s, struct eng_conn *c,
		    const struct json_cmd *cmd)
{
	uint32_t max = cmd->limit < 0 ? 100 : cmd->limit > ENG_HIST_LIMIT ?
		       ENG_HIST_LIMIT : (uint32_t)cmd->limit;
	bool since = cmd->offset >= 0;
	int ret;

	if (!hist_channel(s, c, cmd))
		return;
	if (cmd->epoch.len > ENG_EPOCH_LEN) {
		reply(s, c, cmd, 400, "bad epoch");
		return;
	}
	ret = eng_hist_ask(s, c, since ? ENG_HREQ_SINCE : ENG_HREQ_HISTORY,
			   cmd->channel.p, cmd->channel.len,
			   since ? (uint64_t)cmd->offset : 0, cmd->epoch.p,
			   cmd->epoch.len, max, cmd->seq.p, cmd->seq.len);
	if (ret == -EBUSY)
		reply(s, c, cmd, 429, "history read in flight");
	else if (ret == -EAGAIN)
		reply(s, c, cmd, 429, "too many history reads in flight");
	else if (ret < 0)
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

/*
 * {"cmd":"subscribe","data":{"channel":C,"offset":N,"epoch":E}}: the
 * subscription is held until the owner has read what came after N, so
 * the client gets those, then live messages, with nothing between.
 */
static void recover(struct eng_shard *s, struct eng_conn *c,
		    const struct json_cmd *cmd)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	int ret;

	if (!hist_channel(s, c, cmd))
		return;
	if (cmd->offset < 0 || !cmd->epoch.p) {
		reply(s, c, cmd, 400, "recovery needs offset and epoch");
		return;
	}
	if (cmd->epoch.len > ENG_EPOCH_LEN) {
		reply(s, c, cmd, 400, "bad epoch");
		return;
	}
	if ((unsigned)(c->nsubs - (c->auth && (c->flags &
					      ENG_CONN_F_ADMITTED))) + 1 >
	    cfg->max_subs) {
		reply(s, c, cmd, 413, "too many subscriptions");
		return;
	}
	ret = eng_subscribe_recovering(s, c, cmd->channel.p, cmd->channel.len);
	if (ret == -EEXIST) {
		reply(s, c, cmd, 400, "already subscribed");
		return;
	}
	if (ret < 0 || eng_hist_ask(s, c, ENG_HREQ_RECOVER, cmd->channel.p,
				    cmd->channel.len, (uint64_t)cmd->offset,
				    cmd->epoch.p, cmd->epoch.len, 0,
				    cmd->seq.p, cmd->seq.len) < 0)
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

/*
 * {"cmd":"ack","data":{"ids":[...]}} and {"cmd":"inbox"}: the user's
 * kept messages (inbox.h), answered by the user's owner.
 */
static void inbox(struct eng_shard *s, struct eng_conn *c,
		  const struct json_cmd *cmd, const struct json_slice *ids,
		  uint8_t kind)
{
	int ret;

	if (!c->auth) {
		reply(s, c, cmd, 403, "no user: connect with a token");
		return;
	}

	if (kind == ENG_IB_ACK && !cmd->nids) {
		reply(s, c, cmd, 400, "ids needed");
		return;
	}
	if (cmd->seq.len > 64) {
		reply(s, c, cmd, 400, "seq too long");
		return;
	}
	ret = eng_inbox_ask(s, c, kind, c->auth->uid, c->auth->uid_len, ids,
			    cmd->nids, cmd->seq.p, cmd->seq.len);
	if (ret == -EINVAL)
		reply(s, c, cmd, 400, "unknown id");
	else if (ret == -E2BIG)
		reply(s, c, cmd, 413, "too many ids");
	else if (ret < 0)
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

static void publish(struct eng_shard *s, struct eng_conn *c,
		    const struct json_cmd *cmd)
{
	struct eng_buf *ok, *err;

	/* --demo alone opens its rooms, not every channel */
	if (!s->eng->cfg.client_publish ||
	    (s->eng->cfg.demo_publish && (cmd->channel.len < 5 ||
	     memcmp(cmd->channel.p, "demo:", 5)))) {
		reply(s, c, cmd, 403, "publish not allowed");
		return;
	}
	if (!eng_chan_name_ok(cmd->channel.p, cmd->channel.len)) {
		reply(s, c, cmd, 400, "bad channel name");
		return;
	}
	if (!eng_auth_channel_ok(c->auth, cmd->channel.p, cmd->channel.len)) {
		reply(s, c, cmd, 403, "channel not allowed");
		return;
	}
	if (!cmd->data.len) {
		reply(s, c, cmd, 400, "missing data");
		return;
	}
	/* The replies are built now: the broker answers later, or never. */
	ok = reply_frame(cmd, 200, "ok");
	err = reply_frame(cmd, 503, "not published");
	if (!ok || !err) {
		eng_buf_put(ok);
		eng_buf_put(err);
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	if (s->eng->broker->publish(s, c, ENG_TO_CHANNEL, cmd->channel.p,
				    cmd->channel.len,
				    (const uint8_t *)cmd->data.p,
				    cmd->data.len, true, ok, err, eng_push_reword) < 0)
		reply(s, c, cmd, 503, "out of memory");
}

/*
 * After a refresh: the channels the new token no longer allows are
 * dropped, and the client is told which, before the refresh's reply.
 * Returns 0, or -ENOMEM (nothing dropped; the caller fails @c).
 */
static int drop_denied(struct eng_shard *s, struct eng_conn *c)
{
	static const char head[] = "{\"cmd\":\"unsubscribed\",\"data\":"
				   "{\"reason\":\"not allowed by the new token\","
				   "\"channels\":[";
	struct eng_sub *sub, *next;
	size_t cap = sizeof(head) + 8;
	struct eng_buf *b;
	char *p, *start;
	unsigned n = 0;

	for (sub = c->subs; sub; sub = sub->cnext) {
		const struct eng_chan *ch = sub->chan;

		if (ch->name[0] != ENG_USER_MARK &&
		    !eng_auth_channel_ok(c->auth, ch->name, ch->len)) {
			cap += json_escape_max(ch->len) + 1;
			n++;
		}
	}
	if (!n)
		return 0;
	b = eng_buf_new(WS_MAX_SERVER_HDR + cap);
	if (!b)
		return -ENOMEM;
	start = p = (char *)b->data + WS_MAX_SERVER_HDR;
	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	for (sub = c->subs; sub; sub = next) {
		const struct eng_chan *ch = sub->chan;

		next = sub->cnext;
		if (ch->name[0] == ENG_USER_MARK ||
		    eng_auth_channel_ok(c->auth, ch->name, ch->len))
			continue;
		if (p[-1] != '[')
			*p++ = ',';
		p += json_escape(p, ch->name, ch->len);
		eng_unsubscribe_one(s, c, sub);	/* ch may go with it */
	}
	memcpy(p, "]}}", 3);
	p += 3;
	eng_buf_seal(b, (uint8_t *)start, WS_OP_TEXT, (size_t)(p - start));
	eng_conn_queue(s, c, b);	/* a slow consumer closes itself */
	return 0;
}

/*
 * A new token for a connection whose token will expire: same user, a
 * later expiry and possibly other channel rights. Channels already
 * subscribed stay. The app stays that of the first token.
 */
static void refresh(struct eng_shard *s, struct eng_conn *c,
		    const struct json_cmd *cmd)
{
	struct eng_auth *a = NULL;
	const char *why = NULL;
	char tok[ENG_MAX_TOKEN];
	size_t len = cmd->token.len;

	if (!c->auth) {
		reply(s, c, cmd, 403, "not authenticated");
		return;
	}
	if (!len || len >= sizeof(tok)) {
		reply(s, c, cmd, 400, "missing token");
		return;
	}
	/* the slice lives in the parser; verification reuses the parser */
	memcpy(tok, cmd->token.p, len);
	if (eng_auth_verify(s, tok, len, &a, &why) < 0) {
		reply(s, c, cmd, 401, why);
		return;
	}
	if (a->uid_len != c->auth->uid_len ||
	    memcmp(a->uid, c->auth->uid, a->uid_len)) {
		eng_free(a);
		reply(s, c, cmd, 403, "token is for another user");
		return;
	}
	a->app_len = c->auth->app_len;
	memcpy(a->app, c->auth->app, sizeof(a->app));
	eng_free(c->auth);
	c->auth = a;
	eng_conn_reschedule(s, c);
	/* rights follow the token: what it no longer allows goes */
	if (drop_denied(s, c) < 0) {
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	reply(s, c, cmd, 200, "ok");
}

/*
 * Counts a wrong key from @c and returns how many it has sent, up to
 * ENG_KEY_STRIKES. struct eng_conn has no byte to spare, so the count is
 * a byte per slot, allocated at the shard's first wrong key: the slot's
 * generation in the top 6 bits (a reused slot starts afresh), the count
 * in the low 2.
 */
static unsigned key_strike(struct eng_shard *s, struct eng_conn *c)
{
	uint8_t tag = (uint8_t)((c->gen & 0x3f) << 2), *v;

	_Static_assert(ENG_KEY_STRIKES <= 3, "the count has 2 bits");
	if (!s->key_strikes)
		s->key_strikes = calloc(s->nr_conns, 1);
	if (!s->key_strikes)
		return ENG_KEY_STRIKES;	/* cannot count: take it as the last */
	v = &s->key_strikes[eng_slot(s, c)];
	if ((*v & 0xfc) != tag)
		*v = tag;
	if ((*v & 3) < ENG_KEY_STRIKES)
		(*v)++;
	return *v & 3;
}

/*
 * {"cmd":"sys","data":{"token":API_KEY}}: the node's own figures, once a
 * second, as pushes of channel $sys (metrics.h), which no client can
 * name otherwise. The status page reads them.
 */
static void sys(struct eng_shard *s, struct eng_conn *c,
		const struct json_cmd *cmd)
{
	static const struct json_slice name = { ENG_SYS_CHANNEL,
						sizeof(ENG_SYS_CHANNEL) - 1 };
	struct eng_buf *ok;

	if (!eng_auth_key_ok(&s->eng->cfg, cmd->token.p, cmd->token.len)) {
		reply(s, c, cmd, 403, "api key needed");
		/*
		 * No token is no guess (the status page asks so, to learn
		 * whether a key is needed); a wrong one is, and a connection
		 * gets only a few, so that it is no oracle.
		 */
		if (!cmd->token.len)
			return;
		eng_auth_key_failed(s, "/ws (sys)");
		if (key_strike(s, c) >= ENG_KEY_STRIKES)
			eng_conn_close_ws(s, c, ENG_CLOSE_BAD_KEYS,
					  "too many bad keys");
		return;
	}
	ok = reply_frame(cmd, 200, "ok");
	if (!ok || eng_subscribe(s, c, &name, 1, ok) < 0)
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
}

/* One /ws client command of @len bytes at @p. */
static void command(struct eng_shard *s, struct eng_conn *c, const uint8_t *p,
		    size_t len)
{
	struct json_slice arr[ENG_MAX_CMD_CHANNELS];
	const struct json_slice *names = arr;
	struct json_cmd cmd;
	int ret, n = 0;

	/* simdjson reads up to JSON_PADDING bytes past the end. */
	memcpy(s->scratch, p, len);
	memset(s->scratch + len, 0, JSON_PADDING);
	memset(&cmd, 0, sizeof(cmd));
	ret = json_cmd_parse(s->json, (const char *)s->scratch, len, &cmd,
			     arr, ENG_MAX_CMD_CHANNELS);
	if (ret == -E2BIG) {
		/* more channels than one command may carry (or, with no cmd,
		 * more bytes than any document) */
		reply(s, c, &cmd, 413, "too large");
		return;
	}
	if (ret < 0) {
		memset(&cmd, 0, sizeof(cmd));
		reply(s, c, &cmd, 400, "malformed command");
		return;
	}
	if (cmd_is(&cmd, "subscribe") && (cmd.offset >= 0 || cmd.epoch.p)) {
		recover(s, c, &cmd);
	} else if ((cmd_is(&cmd, "subscribe") ||
		    cmd_is(&cmd, "unsubscribe")) &&
		   (n = chan_list(s, c, &cmd, &names)) < 0) {
		/* refused */
	} else if (cmd_is(&cmd, "subscribe")) {
		subscribe(s, c, &cmd, names, (unsigned)n);
	} else if (cmd_is(&cmd, "history")) {
		history(s, c, &cmd);
	} else if (cmd_is(&cmd, "ack")) {
		inbox(s, c, &cmd, names, ENG_IB_ACK);
	} else if (cmd_is(&cmd, "inbox")) {
		inbox(s, c, &cmd, names, ENG_IB_LIST);
	} else if (cmd_is(&cmd, "unsubscribe")) {
		if (!names_ok(names, (unsigned)n)) {
			reply(s, c, &cmd, 400, "bad channel name");
			return;
		}
		eng_unsubscribe(s, c, names, (unsigned)n);
		reply(s, c, &cmd, 200, "ok");
	} else if (cmd_is(&cmd, "publish")) {
		publish(s, c, &cmd);
	} else if (cmd_is(&cmd, "refresh")) {
		refresh(s, c, &cmd);
	} else if (cmd_is(&cmd, "heartbeat")) {
		reply(s, c, &cmd, 200, "ok");
	} else if (cmd_is(&cmd, "sys")) {
		sys(s, c, &cmd);
	} else {
		reply(s, c, &cmd, 400, "unknown command");
	}
}

/* A complete message on /ws: the protocol is JSON text. */
static void on_message(struct eng_shard *s, struct eng_conn *c, uint8_t op,
		       const uint8_t *p, size_t len)
{
	if (op != WS_OP_TEXT)
		eng_conn_fail(s, c, WS_CLOSE_UNSUPPORTED);
	else
		command(s, c, p, len);
}

/* 401 with a short reason, no upgrade (RFC 6750 names the header). */
static void unauthorized(struct eng_shard *s, struct eng_conn *c,
			 const char *why)
{
	char body[160];
	int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", why);

	ENG_STAT_ADD(s, auth_failed, 1);
	eng_conn_http_reply(s, c, 401,
			    "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n",
			    "application/json", body, (size_t)n);
}

/*
 * The upgrade to /ws: authentication happens here, before any WebSocket
 * byte. With a token the user is admitted by its owner shard first
 * (eng_user_join), which upgrades @c once it answers.
 */
static void on_upgrade(struct eng_shard *s, struct eng_conn *c,
		       const struct hs_req *req)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	const char *tok, *why = NULL;
	size_t len;

	if (cfg->auth != ENG_AUTH_OFF) {
		bool found = eng_auth_token(&req->query, &req->authorization,
					    &tok, &len);

		if (!found && cfg->auth == ENG_AUTH_REQUIRED) {
			unauthorized(s, c, "missing token");
			return;
		}
		if (found) {
			if (eng_auth_verify(s, tok, len, &c->auth, &why) < 0) {
				unauthorized(s, c, why);
				return;
			}
			eng_user_join(s, c, &req->ws_key);
			return;
		}
	}
	eng_conn_upgrade(s, c, &req->ws_key, ENG_CONN_K_PUSH);
}

void eng_push_close(struct eng_shard *s, struct eng_conn *c)
{
	eng_user_leave(s, c);
	eng_unsubscribe_all(s, c);
}

/*
 * A live hand-over (conn.h): who @c is (its token's claims, whether its
 * user counted it) and the channels it is subscribed to, its user's
 * own aside. Not while something it asked is still being read for it
 * (a recovery, a history page, its unread): that one is drained.
 */
static int ho_save(struct eng_shard *s, struct eng_conn *c,
		   struct eng_ho_buf *b)
{
	uint16_t n = 0;

	if (eng_hist_busy(s, c) || eng_inbox_busy(s, c))
		return -EAGAIN;
	for (const struct eng_sub *sub = c->subs; sub; sub = sub->cnext) {
		/*
		 * A recovery answered (SKIPPING) waits only to skip a live
		 * message its answer had: none comes after the quiesce, the
		 * new process's offsets are newer, so it goes as live. On a
		 * quiet channel it would wait for ever.
		 */
		if (sub->recovering != ENG_SUB_LIVE &&
		    sub->recovering != ENG_SUB_SKIPPING)
			return -EAGAIN;
		n += sub->chan->name[0] != ENG_USER_MARK;
	}
	eng_auth_ho_save(b, c->auth);
	eng_ho_put_u8(b, !!(c->flags & ENG_CONN_F_ADMITTED));
	eng_ho_put_u16(b, n);
	for (const struct eng_sub *sub = c->subs; sub; sub = sub->cnext) {
		if (sub->chan->name[0] == ENG_USER_MARK)
			continue;
		eng_ho_put_u8(b, (uint8_t)sub->chan->len);
		eng_ho_put(b, sub->chan->name, sub->chan->len);
	}
	return 0;
}

/*
 * The same in the new process: the user counted again by its owner, the
 * channels subscribed (interest registered with their owners; no reply,
 * the client had its own).
 */
static int ho_load(struct eng_shard *s, struct eng_conn *c,
		   struct eng_ho_rd *r)
{
	struct json_slice *names;
	uint8_t admitted;
	uint16_t n;
	int ret = eng_auth_ho_load(r, &c->auth);

	admitted = eng_ho_get_u8(r);
	n = eng_ho_get_u16(r);
	if (ret < 0 || r->err)
		return ret < 0 ? ret : -EBADMSG;
	names = eng_malloc((n ? n : 1) * sizeof(*names));
	if (!names)
		return -ENOMEM;
	for (uint16_t i = 0; i < n && ret == 0; i++) {
		uint8_t len = eng_ho_get_u8(r);

		names[i].p = (const char *)eng_ho_get(r, len);
		names[i].len = len;
		if (r->err || !eng_chan_name_ok(names[i].p, len))
			ret = -EBADMSG;
	}
	if (ret == 0 && c->auth && admitted)
		ret = eng_user_rejoin(s, c);
	if (ret == 0 && n)
		ret = eng_subscribe(s, c, names, n, NULL);
	eng_free(names);
	return ret;
}

static const struct eng_endpoint push_endpoint = {
	.name = "ws",
	.path = "/ws",
	.kind = ENG_CONN_K_PUSH,
	.on_upgrade = on_upgrade,
	.on_message = on_message,
	.on_drained = eng_inbox_drain,	/* a user's unread waiting for room */
	.on_close = eng_push_close,
	.ho_save = ho_save,
	.ho_load = ho_load,
};

int eng_push_register(void)
{
	return eng_endpoint_add(&push_endpoint);
}
