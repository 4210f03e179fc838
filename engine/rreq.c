/* SPDX-License-Identifier: MIT */
/*
 * rreq.c: the shards' side of the Redis bridge. A shard formats a command
 * (hiredis's redisFormatCommandArgv) into a struct eng_rreq, the bridge
 * writes it on its publisher connection and hands the reply back
 * (R_REQUEST, R_REPLY), and the shard answers its client. PUBLISH for channel, user and broadcast
 * messages; a kick is a PUBLISH on <prefix>ctl; presence lives in Redis
 * and is read and written with Lua scripts (EVAL: each script runs
 * atomically, and one round trip does a whole query). The scripts live
 * next to the code that reads their answers (rreq.h says where).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/hiredis.h>

#include "buf.h"
#include "chan.h"
#include "cluster.h"
#include "conn.h"
#include "hist.h"
#include "inbox.h"
#include "json.h"
#include "mail.h"
#include "push.h"
#include "resp.h"
#include "rreq.h"

/* The command that publishes: on a cluster the sharded one, SPUBLISH. */
static const char *pub_cmd(const struct eng_cfg *cfg, size_t *len)
{
	*len = cfg->redis_cluster ? 8 : 7;
	return cfg->redis_cluster ? "SPUBLISH" : "PUBLISH";
}

size_t eng_rreq_keys(const struct eng_cfg *cfg, char *out, size_t cap,
		     const char *chan, size_t clen, uint16_t *hslot)
{
	uint16_t slot;

	if (!cfg->redis_cluster) {
		*hslot = 0;
		return (size_t)snprintf(out, cap, "%s", cfg->redis_prefix);
	}
	slot = chan ? eng_cluster_slot(chan, clen) :
	       eng_cluster_slot(ENG_RREQ_PRESENCE_TAG,
				sizeof(ENG_RREQ_PRESENCE_TAG) - 1);
	*hslot = slot;
	return (size_t)snprintf(out, cap, "%s{%s}", cfg->redis_prefix,
				chan ? eng_cluster_tag(slot) :
				ENG_RREQ_PRESENCE_TAG);
}

/* The Redis channel of user @uid's pushes: <prefix>user:UID. */
static size_t user_channel(const struct eng_cfg *cfg, char *out, size_t cap,
			   const char *uid, size_t len)
{
	return (size_t)snprintf(out, cap, "%suser:%.*s", cfg->redis_prefix,
				(int)len, uid);
}

size_t eng_rreq_channel(const struct eng_cfg *cfg, char *out, size_t cap,
			const char *name, size_t len)
{
	if (!name)
		return (size_t)snprintf(out, cap, "%sall", cfg->redis_prefix);
	if (len && name[0] == ENG_USER_MARK)
		return user_channel(cfg, out, cap, name + 1, len - 1);
	return (size_t)snprintf(out, cap, "%sch:%.*s", cfg->redis_prefix,
				(int)len, name);
}

/* Formats @argv into a new request; NULL when out of memory. */
struct eng_rreq *eng_rreq_new(uint8_t op, int argc, const char **argv,
			      const size_t *lens)
{
	struct eng_rreq *p;
	char *cmd;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (n < 0)
		return NULL;
	p = eng_malloc(sizeof(*p) + (size_t)n);	/* mail: engine heap */
	if (!p) {
		free(cmd);
		return NULL;
	}
	memset(p, 0, sizeof(*p));
	p->op = op;
	p->from = ENG_BRIDGE;
	p->len = (size_t)n;
	memcpy(p->data, cmd, (size_t)n);
	free(cmd);
	return p;
}

/*
 * Sends @p for connection @c; the reply comes back as R_REPLY, or, if
 * the bridge never sees it, eng_rreq_undo() answers as for Redis down.
 */
static int send_req(struct eng_shard *s, struct eng_conn *c,
		    struct eng_rreq *p)
{
	if (!p)
		return -ENOMEM;
	p->from = (uint16_t)s->id;
	p->kind = c->kind;
	p->slot = eng_slot(s, c);
	p->gen = c->gen;
	if (c->kind == ENG_CONN_K_HTTP)
		c->flags |= ENG_CONN_F_WAIT;
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
	return 0;
}

int eng_rreq_publish(struct eng_shard *s, struct eng_conn *c,
		      const char *chan, size_t clen, const void *payload,
		      size_t plen, struct eng_buf *ok, struct eng_buf *err)
{
	char name[ENG_CHAN_MAX + 128];
	size_t nlen = eng_rreq_channel(&s->eng->cfg, name, sizeof(name), chan,
				       clen);
	const char *argv[3] = { NULL, name, payload };
	size_t lens[3] = { 0, nlen, plen };
	struct eng_rreq *p;

	argv[0] = pub_cmd(&s->eng->cfg, &lens[0]);
	p = eng_rreq_new(ENG_RQ_PUBLISH, 3, argv, lens);
	if (!p) {
		eng_buf_put(ok);
		eng_buf_put(err);
		return -ENOMEM;
	}
	p->hslot = eng_cluster_slot(name, nlen);
	p->ok = ok;
	p->err = err;
	return send_req(s, c, p);
}

/* 16 hex characters no other history is likely to have drawn. */
static void fresh_epoch(char out[ENG_EPOCH_LEN + 1])
{
	static __thread uint64_t x;

	if (!x && getrandom(&x, sizeof(x), 0) != sizeof(x))
		x = eng_resp_now_ms() ^ (uint64_t)(uintptr_t)&x;
	x ^= x << 13;		/* xorshift64: the seed is what is random */
	x ^= x >> 7;
	x ^= x << 17;
	snprintf(out, ENG_EPOCH_LEN + 1, "%016llx", (unsigned long long)x);
}

int eng_rreq_hpublish(struct eng_shard *s, struct eng_conn *c,
		      const struct eng_ns *ns, const char *chan, size_t clen,
		      const void *payload, size_t plen, struct eng_buf *ok,
		      struct eng_buf *err)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	char n[16], ttl[16], ep[ENG_EPOCH_LEN + 1], keys[ENG_RREQ_KEYS_MAX];
	char name[ENG_CHAN_MAX + 128];
	const char *argv[12] = { "EVAL", eng_lua_hpub, "1", keys, keys, chan,
				 payload, n, ttl, ep, name, NULL };
	size_t lens[12] = { 4, eng_lua_hpub_len, 1, 0, 0, clen, plen, 0, 0,
			    ENG_EPOCH_LEN, 0, 0 };
	struct eng_rreq *p;
	uint16_t hslot;

	lens[10] = eng_rreq_channel(cfg, name, sizeof(name), chan, clen);
	lens[3] = lens[4] = eng_rreq_keys(cfg, keys, sizeof(keys), name,
					  lens[10], &hslot);
	lens[7] = (size_t)snprintf(n, sizeof(n), "%u", ns->history);
	lens[8] = (size_t)snprintf(ttl, sizeof(ttl), "%u", ns->ttl_ms);
	argv[11] = pub_cmd(cfg, &lens[11]);
	fresh_epoch(ep);
	p = eng_rreq_new(ENG_RQ_HPUBLISH, 12, argv, lens);
	if (!p) {
		eng_buf_put(ok);
		eng_buf_put(err);
		return -ENOMEM;
	}
	p->hslot = hslot;
	p->ok = ok;
	p->err = err;
	return send_req(s, c, p);
}

struct eng_rreq *eng_rreq_hread_new(const struct eng_cfg *cfg,
				   struct eng_hreq *h)
{
	const struct eng_ns *ns = eng_ns_find(cfg, h->name, h->len);
	/* a cut recovery's next page goes on after its last message */
	uint64_t from = h->more ? h->next : h->after;
	const char *mode = h->kind == ENG_HREQ_RECOVER ? "recover" :
			   h->kind == ENG_HREQ_HISTORY && !h->more ? "last" :
			   "after";
	char after[24], max[16], ttl[16], keys[ENG_RREQ_KEYS_MAX];
	char name[ENG_CHAN_MAX + 128], ep[ENG_EPOCH_LEN + 1], budget[16];
	const char *argv[12] = { "EVAL", eng_lua_hread, "1", keys, keys,
				 h->name, after, max, mode, ttl, ep, budget };
	size_t lens[12] = { 4, eng_lua_hread_len, 1, 0, 0, h->len, 0, 0,
			    strlen(mode), 0, ENG_EPOCH_LEN, 0 };
	struct eng_rreq *p;
	uint16_t hslot;
	size_t nlen;

	if (!ns)
		return NULL;
	nlen = eng_rreq_channel(cfg, name, sizeof(name), h->name, h->len);
	lens[3] = lens[4] = eng_rreq_keys(cfg, keys, sizeof(keys), name, nlen,
					  &hslot);
	lens[6] = (size_t)snprintf(after, sizeof(after), "%llu",
				   (unsigned long long)from);
	lens[11] = (size_t)snprintf(budget, sizeof(budget), "%u",
				    ENG_RREQ_READ_MAX);
	/* a recovery wants everything after @after: at most N are kept */
	lens[7] = (size_t)snprintf(max, sizeof(max), "%u",
				   h->kind != ENG_HREQ_RECOVER ? h->max :
				   ns->history);
	lens[9] = (size_t)snprintf(ttl, sizeof(ttl), "%u", ns->ttl_ms);
	fresh_epoch(ep);	/* used only if the history is gone */
	p = eng_rreq_new(ENG_RQ_HREAD, 12, argv, lens);
	if (p) {
		p->hreq = h;
		p->hslot = hslot;
	}
	return p;
}

int eng_rreq_hread(struct eng_shard *s, struct eng_hreq *h)
{
	struct eng_rreq *p = eng_rreq_hread_new(&s->eng->cfg, h);

	if (!p)
		return -ENOMEM;
	p->from = (uint16_t)s->id;
	p->kind = ENG_CONN_K_PUSH;
	p->slot = h->slot;
	p->gen = h->gen;
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
	return 0;
}

int eng_rreq_ikeep(struct eng_shard *s, struct eng_conn *c, const char *uid,
		   size_t ulen, const void *payload, size_t plen)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	char max[16], ttl[16], ep[ENG_EPOCH_LEN + 1], keys[ENG_RREQ_KEYS_MAX];
	char name[ENG_CHAN_MAX + 128];
	const char *argv[12] = { "EVAL", eng_lua_ikeep, "1", keys, keys, uid,
				 payload, max, ttl, ep, name, NULL };
	size_t lens[12] = { 4, eng_lua_ikeep_len, 1, 0, 0, ulen, plen, 0,
			    0, ENG_INBOX_EPOCH_LEN, 0, 0 };
	struct eng_rreq *p;
	uint16_t hslot;

	lens[10] = user_channel(cfg, name, sizeof(name), uid, ulen);
	lens[3] = lens[4] = eng_rreq_keys(cfg, keys, sizeof(keys), name,
					  lens[10], &hslot);
	lens[7] = (size_t)snprintf(max, sizeof(max), "%u", cfg->inbox_max);
	lens[8] = (size_t)snprintf(ttl, sizeof(ttl), "%u", cfg->inbox_ttl_ms);
	argv[11] = pub_cmd(cfg, &lens[11]);
	fresh_epoch(ep);	/* its first 8 characters name the inbox */
	p = eng_rreq_new(ENG_RQ_HPUBLISH, 12, argv, lens);
	if (p)
		p->hslot = hslot;
	return send_req(s, c, p);
}

/*
 * The bytes of one page of a replay: ENG_RREQ_READ_MAX, or less when
 * half of --max-pending-bytes is less, so that a page waiting to be sent
 * and what the connection has queued stay within what it may hold.
 */
static uint32_t replay_budget(const struct eng_cfg *cfg)
{
	return cfg->max_pending / 2 < ENG_RREQ_READ_MAX ?
	       cfg->max_pending / 2 : ENG_RREQ_READ_MAX;
}

int eng_rreq_inbox(struct eng_shard *s, struct eng_ibreq *q, const char *uid,
		   size_t ulen)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	const char *argv[6 + ENG_INBOX_IDS + 1];
	size_t lens[6 + ENG_INBOX_IDS + 1];
	char nums[ENG_INBOX_IDS][24], ttl[16], max[16], budget[16], after[24];
	char keys[ENG_RREQ_KEYS_MAX], name[ENG_CHAN_MAX + 128];
	struct eng_rreq *p;
	uint16_t hslot;
	size_t klen;
	int argc = 0;

	klen = eng_rreq_keys(cfg, keys, sizeof(keys), name,
			     user_channel(cfg, name, sizeof(name), uid, ulen),
			     &hslot);

	argv[argc] = "EVAL";
	lens[argc++] = 4;
	argv[argc] = q->kind == ENG_IB_ACK ? eng_lua_iack : eng_lua_iread;
	lens[argc++] = q->kind == ENG_IB_ACK ? eng_lua_iack_len :
		       eng_lua_iread_len;
	argv[argc] = "1";
	lens[argc++] = 1;
	argv[argc] = keys;
	lens[argc++] = klen;
	argv[argc] = keys;
	lens[argc++] = klen;
	argv[argc] = uid;
	lens[argc++] = ulen;
	if (q->kind == ENG_IB_ACK) {
		argv[argc] = q->epoch;
		lens[argc++] = strlen(q->epoch);
		for (uint32_t i = 0; i < q->n; i++) {
			argv[argc] = nums[i];
			lens[argc++] = (size_t)snprintf(nums[i], sizeof(nums[i]),
				"%llu", (unsigned long long)q->ids[i]);
		}
	} else {
		argv[argc] = ttl;
		lens[argc++] = (size_t)snprintf(ttl, sizeof(ttl), "%u",
						cfg->inbox_ttl_ms);
		argv[argc] = max;
		lens[argc++] = (size_t)snprintf(max, sizeof(max), "%u",
			q->kind == ENG_IB_REPLAY ? cfg->inbox_max :
			ENG_INBOX_IDS);
		argv[argc] = q->kind == ENG_IB_REPLAY ? "1" : "0";
		lens[argc++] = 1;
		argv[argc] = budget;
		lens[argc++] = (size_t)snprintf(budget, sizeof(budget), "%u",
						replay_budget(cfg));
	}
	if (q->kind == ENG_IB_REPLAY) {		/* the page goes on after */
		argv[argc] = after;
		lens[argc++] = (size_t)snprintf(after, sizeof(after), "%llu",
						(unsigned long long)q->after);
		argv[argc] = q->epoch;
		lens[argc++] = strlen(q->epoch);
	}
	p = eng_rreq_new(ENG_RQ_IBOX, argc, argv, lens);
	if (!p)
		return -ENOMEM;
	p->ibreq = q;
	p->hslot = hslot;
	p->from = (uint16_t)s->id;
	p->kind = q->http ? ENG_CONN_K_HTTP : ENG_CONN_K_PUSH;
	p->slot = q->slot;
	p->gen = q->gen;
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
	return 0;
}

int eng_rreq_kick(struct eng_shard *s, struct eng_conn *c, const char *uid,
		  size_t len)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	char chan[80], msg[ENG_CHAN_MAX + 8];
	int clen = snprintf(chan, sizeof(chan), "%sctl", cfg->redis_prefix);
	int mlen = snprintf(msg, sizeof(msg), "kick %.*s", (int)len, uid);
	const char *argv[3] = { NULL, chan, msg };
	size_t lens[3] = { 0, (size_t)clen, (size_t)mlen };
	struct eng_rreq *p;

	argv[0] = pub_cmd(cfg, &lens[0]);
	p = eng_rreq_new(ENG_RQ_PUBLISH, 3, argv, lens);
	if (p)
		p->hslot = eng_cluster_slot(chan, (size_t)clen);
	return send_req(s, c, p);
}

/* A presence script of @op run for @c, with @uid (NULL: none) after the keys. */
static int presence_req(struct eng_shard *s, struct eng_conn *c, uint8_t op,
			const char *script, size_t slen, const char *uid,
			size_t len)
{
	char keys[ENG_RREQ_KEYS_MAX];
	const char *argv[6] = { "EVAL", script, "1", keys, keys, uid };
	size_t lens[6] = { 4, slen, 1, 0, 0, len };
	struct eng_rreq *p;
	uint16_t hslot;

	lens[3] = lens[4] = eng_rreq_keys(&s->eng->cfg, keys, sizeof(keys),
					  NULL, 0, &hslot);
	p = eng_rreq_new(op, uid ? 6 : 5, argv, lens);
	if (p)
		p->hslot = hslot;
	return send_req(s, c, p);
}

int eng_rreq_query(struct eng_shard *s, struct eng_conn *c, const char *uid,
		   size_t len)
{
	return presence_req(s, c, ENG_RQ_QUERY, eng_lua_query,
			    eng_lua_query_len, uid, len);
}

int eng_rreq_online(struct eng_shard *s, struct eng_conn *c)
{
	return presence_req(s, c, ENG_RQ_ONLINE, eng_lua_online,
			    eng_lua_online_len, NULL, 0);
}

/*
 * "ios,web" as JSON strings: "ios","web". Escaped: the names come from
 * Redis, which anyone who can write to it fills; one longer than
 * ENG_APP_MAX or not UTF-8 is no name a node wrote, and is left out.
 */
static size_t apps_json(char *out, size_t cap, const char *csv)
{
	char one[6 * ENG_APP_MAX + 2];	/* json_escape_max(ENG_APP_MAX) */
	size_t n = 0;

	out[0] = '\0';
	while (*csv) {
		const char *name = csv, *end = strchr(csv, ',');
		size_t len = end ? (size_t)(end - csv) : strlen(csv), elen;

		csv += len + (end != NULL);
		if (len > ENG_APP_MAX || !json_utf8_valid(name, len))
			continue;
		elen = json_escape(one, name, len);
		/* whole entries only: a comma, the string and the NUL */
		if (n + 1 + elen + 1 > cap)
			break;
		if (n)
			out[n++] = ',';
		memcpy(out + n, one, elen);
		n += elen;
		out[n] = '\0';
	}
	return n;
}

/*
 * What a publisher may conclude (docs/PROTOCOL.md): 503, not published,
 * safe to send again; 504, the request reached Redis and no answer came,
 * so it may have been published (sending again may make a duplicate).
 */
static int failed_code(long long err)
{
	return err == -ETIMEDOUT || err == -ECONNRESET || err == -EPROTO ?
	       504 : 503;
}

static const char *why_failed(long long err)
{
	switch (err) {
	case -ETIMEDOUT:
		return "redis did not answer in time: may be published";
	case -ECONNRESET:
	case -EPROTO:
		return "redis connection lost before its answer: may be "
		       "published";
	case -ENOBUFS:
		return "too much is queued for redis: not published";
	case -ENOTCONN:
		return "redis is not connected: not published";
	default:
		return "redis unavailable: not published";
	}
}

/* The bridge answered (or could not): tell the client. */
static void ack(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_conn *c = &s->conns[p->slot];
	char body[512], apps[320];
	int n, status = 200;

	if (p->op == ENG_RQ_HREAD) {	/* hist.c answers, whoever waits */
		eng_hist_redis_done(s, p->hreq, p->result);
		p->hreq = NULL;
		goto out;
	}
	if (p->op == ENG_RQ_IBOX) {	/* ... and inbox.c */
		eng_inbox_redis_done(s, p->ibreq, p->result);
		p->ibreq = NULL;
		goto out;
	}
	if (c->gen != p->gen || !eng_conn_alive(c))
		goto out;
	if (p->kind != ENG_CONN_K_HTTP) {		/* a /ws client's publish */
		struct eng_buf *b = NULL;

		if (p->result >= 0) {
			b = p->ok;
			p->ok = NULL;
		} else {
			/* the reason if memory allows, else the plain 503 */
			b = eng_push_reword(p->err, failed_code(p->result),
					    why_failed(p->result));
			if (!b) {
				b = p->err;
				p->err = NULL;
			}
		}
		eng_conn_queue(s, c, b);
		goto out;
	}
	c->flags &= ~ENG_CONN_F_WAIT;
	if (p->result < 0) {
		status = failed_code(p->result);
		n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n",
			     why_failed(p->result));
	} else if (p->op == ENG_RQ_QUERY) {
		apps_json(apps, sizeof(apps), p->text);
		n = snprintf(body, sizeof(body),
			     "{\"online\":%s,\"connections\":%lld,"
			     "\"apps\":[%s]}\n", p->result ? "true" : "false",
			     p->result, apps);
	} else if (p->op == ENG_RQ_ONLINE) {
		n = snprintf(body, sizeof(body),
			     "{\"users\":%lld,\"connections\":%lld,"
			     "\"nodes\":%lld}\n", p->result, p->r2, p->r3);
	} else {
		n = snprintf(body, sizeof(body),
			     "{\"ok\":true,\"nodes\":%lld}\n", p->result);
	}
	eng_conn_http_reply(s, c, status, NULL, "application/json", body,
			    (size_t)n);
	eng_conn_resume(s, c);
out:
	eng_buf_put(p->ok);
	eng_buf_put(p->err);
	eng_free(p);
}

void eng_rreq_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	(void)op;
	(void)res;
	ack(self, ptr);
}

/* The bridge never saw the request: answer as for Redis down. */
void eng_rreq_undo(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_rreq *p = ptr;

	(void)op;
	p->result = res < 0 ? res : -EIO;
	ack(self, p);
}
