/* SPDX-License-Identifier: MIT */
/*
 * rreq.c: the shards' side of the Redis bridge. A shard formats a command
 * (hiredis's redisFormatCommandArgv) into a struct eng_rreq, the bridge
 * writes it on its publisher connection and hands the reply back
 * (R_REQUEST, R_REPLY), and the request's own completion (p->done, set
 * by whoever asked) takes the answer. PUBLISH for channel, user and
 * broadcast messages; a kick is a PUBLISH on <prefix>ctl; presence lives in Redis
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
#include "mail.h"
#include "push.h"
#include "resp.h"
#include "rreq.h"

/* One Redis: every key under the bare prefix, in slot 0. */
static size_t single_keys(const struct eng_cfg *cfg, char *out, size_t cap,
			  const char *chan, size_t clen, uint16_t *hslot)
{
	(void)chan;
	(void)clen;
	*hslot = 0;
	return (size_t)snprintf(out, cap, "%s", cfg->redis_prefix);
}

/* A cluster: the keys tagged with their channel's slot, or presence's. */
static size_t cluster_keys(const struct eng_cfg *cfg, char *out, size_t cap,
			   const char *chan, size_t clen, uint16_t *hslot)
{
	uint16_t slot;

	slot = chan ? eng_cluster_slot(chan, clen) :
	       eng_cluster_slot(ENG_RREQ_PRESENCE_TAG,
				sizeof(ENG_RREQ_PRESENCE_TAG) - 1);
	*hslot = slot;
	return (size_t)snprintf(out, cap, "%s{%s}", cfg->redis_prefix,
				chan ? eng_cluster_tag(slot) :
				ENG_RREQ_PRESENCE_TAG);
}

const struct eng_rreq_mode eng_rreq_single = {
	"PUBLISH", 7, single_keys,
};
/* on a cluster the sharded publish, SPUBLISH */
const struct eng_rreq_mode eng_rreq_cluster = {
	"SPUBLISH", 8, cluster_keys,
};

size_t eng_rreq_keys(const struct eng *e, char *out, size_t cap,
		     const char *chan, size_t clen, uint16_t *hslot)
{
	return e->redis->keys(&e->cfg, out, cap, chan, clen, hslot);
}

/* The command that publishes, fixed at start-up (eng_rreq_mode). */
static const char *pub_cmd(const struct eng *e, size_t *len)
{
	*len = e->redis->publish_len;
	return e->redis->publish;
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

int eng_rreq_send(struct eng_shard *s, struct eng_conn *c, struct eng_rreq *p)
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

struct eng_rreq *eng_rreq_publish(const struct eng *e, const char *chan,
				  size_t clen, const void *payload,
				  size_t plen)
{
	char name[ENG_CHAN_MAX + 128];
	size_t nlen = eng_rreq_channel(&e->cfg, name, sizeof(name), chan, clen);
	const char *argv[3] = { NULL, name, payload };
	size_t lens[3] = { 0, nlen, plen };
	struct eng_rreq *p;

	argv[0] = pub_cmd(e, &lens[0]);
	p = eng_rreq_new(ENG_RQ_PUBLISH, 3, argv, lens);
	if (p)
		p->hslot = eng_cluster_slot(name, nlen);
	return p;
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

struct eng_rreq *eng_rreq_hpublish(const struct eng *e,
				   const struct eng_ns *ns, const char *chan,
				   size_t clen, const void *payload,
				   size_t plen)
{
	char n[16], ttl[16], ep[ENG_EPOCH_LEN + 1], keys[ENG_RREQ_KEYS_MAX];
	char name[ENG_CHAN_MAX + 128];
	const char *argv[12] = { "EVAL", e->lua->hpub, "1", keys, keys, chan,
				 payload, n, ttl, ep, name, NULL };
	size_t lens[12] = { 4, e->lua->hpub_len, 1, 0, 0, clen, plen, 0, 0,
			    ENG_EPOCH_LEN, 0, 0 };
	struct eng_rreq *p;
	uint16_t hslot;

	lens[10] = eng_rreq_channel(&e->cfg, name, sizeof(name), chan, clen);
	lens[3] = lens[4] = eng_rreq_keys(e, keys, sizeof(keys), name,
					  lens[10], &hslot);
	lens[7] = (size_t)snprintf(n, sizeof(n), "%u", ns->history);
	lens[8] = (size_t)snprintf(ttl, sizeof(ttl), "%u", ns->ttl_ms);
	argv[11] = pub_cmd(e, &lens[11]);
	fresh_epoch(ep);
	p = eng_rreq_new(ENG_RQ_HPUBLISH, 12, argv, lens);
	if (p)
		p->hslot = hslot;
	return p;
}

struct eng_rreq *eng_rreq_hread_new(const struct eng *e,
				   struct eng_hreq *h)
{
	const struct eng_ns *ns = eng_ns_find(&e->cfg, h->name, h->len);
	/* a cut recovery's next page goes on after its last message */
	uint64_t from = h->more ? h->next : h->after;
	const char *mode = h->kind == ENG_HREQ_RECOVER ? "recover" :
			   h->kind == ENG_HREQ_HISTORY && !h->more ? "last" :
			   "after";
	char after[24], max[16], ttl[16], keys[ENG_RREQ_KEYS_MAX];
	char name[ENG_CHAN_MAX + 128], ep[ENG_EPOCH_LEN + 1], budget[16];
	const char *argv[12] = { "EVAL", e->lua->hread, "1", keys, keys,
				 h->name, after, max, mode, ttl, ep, budget };
	size_t lens[12] = { 4, e->lua->hread_len, 1, 0, 0, h->len, 0, 0,
			    strlen(mode), 0, ENG_EPOCH_LEN, 0 };
	struct eng_rreq *p;
	uint16_t hslot;
	size_t nlen;

	if (!ns)
		return NULL;
	nlen = eng_rreq_channel(&e->cfg, name, sizeof(name), h->name, h->len);
	lens[3] = lens[4] = eng_rreq_keys(e, keys, sizeof(keys), name, nlen,
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

int eng_rreq_hread(struct eng_shard *s, struct eng_hreq *h,
		   eng_rreq_done_fn *done)
{
	struct eng_rreq *p = eng_rreq_hread_new(s->eng, h);

	if (!p)
		return -ENOMEM;
	p->from = (uint16_t)s->id;
	p->kind = ENG_CONN_K_PUSH;
	p->slot = h->slot;
	p->gen = h->gen;
	p->done = done;
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
	return 0;
}

struct eng_rreq *eng_rreq_ikeep(const struct eng *e, const char *uid,
				size_t ulen, const void *payload, size_t plen)
{
	const struct eng_cfg *cfg = &e->cfg;
	char max[16], ttl[16], ep[ENG_EPOCH_LEN + 1], keys[ENG_RREQ_KEYS_MAX];
	char name[ENG_CHAN_MAX + 128];
	const char *argv[12] = { "EVAL", e->lua->ikeep, "1", keys, keys, uid,
				 payload, max, ttl, ep, name, NULL };
	size_t lens[12] = { 4, e->lua->ikeep_len, 1, 0, 0, ulen, plen, 0,
			    0, ENG_INBOX_EPOCH_LEN, 0, 0 };
	struct eng_rreq *p;
	uint16_t hslot;

	lens[10] = user_channel(cfg, name, sizeof(name), uid, ulen);
	lens[3] = lens[4] = eng_rreq_keys(e, keys, sizeof(keys), name,
					  lens[10], &hslot);
	lens[7] = (size_t)snprintf(max, sizeof(max), "%u", cfg->inbox_max);
	lens[8] = (size_t)snprintf(ttl, sizeof(ttl), "%u", cfg->inbox_ttl_ms);
	argv[11] = pub_cmd(e, &lens[11]);
	fresh_epoch(ep);	/* its first 8 characters name the inbox */
	p = eng_rreq_new(ENG_RQ_HPUBLISH, 12, argv, lens);
	if (p)
		p->hslot = hslot;
	return p;
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
		   size_t ulen, eng_rreq_done_fn *done)
{
	const struct eng_cfg *cfg = &s->eng->cfg;
	const struct eng_rreq_lua *lua = s->eng->lua;
	const char *argv[6 + ENG_INBOX_IDS + 1];
	size_t lens[6 + ENG_INBOX_IDS + 1];
	char nums[ENG_INBOX_IDS][24], ttl[16], max[16], budget[16], after[24];
	char keys[ENG_RREQ_KEYS_MAX], name[ENG_CHAN_MAX + 128];
	struct eng_rreq *p;
	uint16_t hslot;
	size_t klen;
	int argc = 0;

	klen = eng_rreq_keys(s->eng, keys, sizeof(keys), name,
			     user_channel(cfg, name, sizeof(name), uid, ulen),
			     &hslot);

	argv[argc] = "EVAL";
	lens[argc++] = 4;
	argv[argc] = q->kind == ENG_IB_ACK ? lua->iack : lua->iread;
	lens[argc++] = q->kind == ENG_IB_ACK ? lua->iack_len : lua->iread_len;
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
	p->done = done;
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
	return 0;
}

struct eng_rreq *eng_rreq_kick(const struct eng *e, const char *uid,
			       size_t len)
{
	char chan[80], msg[ENG_CHAN_MAX + 8];
	int clen = snprintf(chan, sizeof(chan), "%sctl", e->cfg.redis_prefix);
	int mlen = snprintf(msg, sizeof(msg), "kick %.*s", (int)len, uid);
	const char *argv[3] = { NULL, chan, msg };
	size_t lens[3] = { 0, (size_t)clen, (size_t)mlen };
	struct eng_rreq *p;

	argv[0] = pub_cmd(e, &lens[0]);
	p = eng_rreq_new(ENG_RQ_PUBLISH, 3, argv, lens);
	if (p)
		p->hslot = eng_cluster_slot(chan, (size_t)clen);
	return p;
}

/* A presence script of @op, with @uid (NULL: none) after the keys. */
static struct eng_rreq *presence_req(const struct eng *e, uint8_t op,
				     const char *script, size_t slen,
				     const char *uid, size_t len)
{
	char keys[ENG_RREQ_KEYS_MAX];
	const char *argv[6] = { "EVAL", script, "1", keys, keys, uid };
	size_t lens[6] = { 4, slen, 1, 0, 0, len };
	struct eng_rreq *p;
	uint16_t hslot;

	lens[3] = lens[4] = eng_rreq_keys(e, keys, sizeof(keys), NULL, 0,
					  &hslot);
	p = eng_rreq_new(op, uid ? 6 : 5, argv, lens);
	if (p)
		p->hslot = hslot;
	return p;
}

struct eng_rreq *eng_rreq_query(const struct eng *e, const char *uid,
				size_t len)
{
	return presence_req(e, ENG_RQ_QUERY, e->lua->query, e->lua->query_len,
			    uid, len);
}

struct eng_rreq *eng_rreq_online(const struct eng *e)
{
	return presence_req(e, ENG_RQ_ONLINE, e->lua->online,
			    e->lua->online_len, NULL, 0);
}

/*
 * The argument of @script that is its Pusher channel's Redis channel
 * (its keys' slot on a cluster), or -1: a script of the presence slot.
 */
static int chan_arg(int script)
{
	return script == ENG_PS_JOIN || script == ENG_PS_LEAVE ||
	       script == ENG_PS_REAP ? 1 : script == ENG_PS_USERS ? 0 : -1;
}

struct eng_rreq *eng_rreq_pusher(const struct eng *e, int script, int argc,
				 const char **argv, const size_t *lens)
{
	const char **av;
	size_t *ls;
	char keys[ENG_RREQ_KEYS_MAX];
	struct eng_rreq *p = NULL;
	int ca = chan_arg(script), tail = ca > 0 ? 2 : 0;
	uint16_t hslot;

	if (argc > ENG_RREQ_PUSHER_ARGS ||
	    (script != ENG_PS_COUNT && script != ENG_PS_INFO && argc > 11) ||
	    argc <= ca)
		return NULL;
	av = malloc((size_t)(5 + argc + tail) * sizeof(*av));
	ls = malloc((size_t)(5 + argc + tail) * sizeof(*ls));
	if (!av || !ls)
		goto out;
	av[0] = "EVAL";
	ls[0] = 4;
	av[1] = e->lua->pusher[script];
	ls[1] = strlen(av[1]);
	av[2] = "1";
	ls[2] = 1;
	ls[3] = ls[4] = eng_rreq_keys(e, keys, sizeof(keys),
				      ca < 0 ? NULL : argv[ca],
				      ca < 0 ? 0 : lens[ca], &hslot);
	av[3] = av[4] = keys;
	memcpy(av + 5, argv, (size_t)argc * sizeof(*argv));
	memcpy(ls + 5, lens, (size_t)argc * sizeof(*lens));
	if (tail) {	/* how it publishes, and where */
		av[5 + argc] = pub_cmd(e, &ls[5 + argc]);
		av[6 + argc] = e->redis == &eng_rreq_single ? "1" : "0";
		ls[6 + argc] = 1;
	}
	p = eng_rreq_new(ENG_RQ_SCRIPT, 5 + argc + tail, av, ls);
	if (p)
		p->hslot = hslot;
out:
	free(av);
	free(ls);
	return p;
}

void eng_rreq_send_own(struct eng_shard *s, struct eng_rreq *p)
{
	p->from = (uint16_t)s->id;
	p->kind = ENG_CONN_K_HTTP;
	p->slot = UINT32_MAX;
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
}

/* The answer is back on this shard (or the bridge never saw @p). */
static void ack(struct eng_shard *s, struct eng_rreq *p)
{
	p->done(s, p);
	eng_free(p->blob);
	eng_buf_put(p->ok);
	eng_buf_put(p->err);
	eng_free(p);
}

static void read_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	(void)op;
	(void)res;
	ack(self, ptr);
}

/* The bridge never saw the request: answer as for Redis down. */
static void undo_mail(void *self, unsigned op, void *ptr, int32_t res)
{
	struct eng_rreq *p = ptr;

	(void)op;
	p->result = res < 0 ? res : -EIO;
	ack(self, p);
}

static void free_rreq(void *ptr)
{
	struct eng_rreq *p = ptr;

	eng_buf_put(p->ok);
	eng_buf_put(p->err);
	eng_hreq_free(p->hreq);
	eng_ibreq_free(p->ibreq);
	eng_free(p);
}

ENG_MAIL_TO_FIELD(rreq_from, struct eng_rreq, from)

/* A request that never reached the bridge is answered; a reply goes again. */
static const struct eng_mail_kind kinds[] = {
	{ .op = ENG_OP_R_REQUEST, .name = "r_request", .to_bridge = true,
	  .on_fail = ENG_MAIL_UNDO, .undo = undo_mail, .free = free_rreq },
	{ .op = ENG_OP_R_REPLY, .name = "r_reply", .on_fail = ENG_MAIL_RETRY,
	  .read = read_mail, .free = free_rreq, .to = rreq_from },
};
ENG_MAIL_KINDS(kinds)
