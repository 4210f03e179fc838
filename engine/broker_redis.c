/* SPDX-License-Identifier: MIT */
/*
 * broker_redis.c: the Redis broker behind struct eng_broker (broker.h).
 * Each action is a request through the bridge (rreq.c), and every node,
 * this one included, hears a message back from Redis; the requests'
 * answers to their clients are here, carried by each request as its
 * completion.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "buf.h"
#include "conn.h"
#include "hist.h"
#include "inbox.h"
#include "json.h"
#include "mail.h"
#include "rreq.h"
#include "sub.h"
#include "user.h"

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

/* What a publisher may conclude: docs/PROTOCOL.md, broker.h. */
int eng_broker_failed_code(long long err)
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

/*
 * A client's request is answered (or could not be): a /ws client gets
 * its reply frame, the failure reworded with the reason; an HTTP client
 * its JSON. The caller frees @p.
 */
static void answer(struct eng_shard *s, struct eng_rreq *p)
{
	struct eng_conn *c = &s->conns[p->slot];
	char body[512], apps[320];
	int n, status = 200;

	if (c->gen != p->gen || !eng_conn_alive(c))
		return;
	if (p->kind != ENG_CONN_K_HTTP) {		/* a /ws client's publish */
		struct eng_buf *b = NULL;

		if (p->result >= 0) {
			b = p->ok;
			p->ok = NULL;
		} else {
			/* the reason if memory allows, else the plain 503 */
			b = p->reword ? p->reword(p->err,
						  eng_broker_failed_code(p->result),
						  why_failed(p->result)) :
			    NULL;
			if (!b) {
				b = p->err;
				p->err = NULL;
			}
		}
		eng_conn_queue(s, c, b);
		return;
	}
	c->flags &= ~ENG_CONN_F_WAIT;
	if (p->result < 0) {
		status = eng_broker_failed_code(p->result);
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
}

/*
 * Sends @p for @c, answered by answer(). @ok, @err and @reword are a /ws
 * client's (all NULL for HTTP), taken over: dropped when @p is NULL.
 */
static int ask(struct eng_shard *s, struct eng_conn *c, struct eng_rreq *p,
	       struct eng_buf *ok, struct eng_buf *err, eng_reword_fn *reword)
{
	if (!p) {
		eng_buf_put(ok);
		eng_buf_put(err);
		return -ENOMEM;
	}
	p->ok = ok;
	p->err = err;
	p->reword = reword;
	p->done = answer;
	return eng_rreq_send(s, c, p);
}

static void forget(struct eng_shard *s, struct eng_rreq *p)
{
	(void)s;
	(void)p;
}

/* Sends @p for nobody: its answer is dropped. */
static int quiet(struct eng_shard *s, struct eng_rreq *p)
{
	if (!p)
		return -ENOMEM;
	p->from = (uint16_t)s->id;
	p->kind = ENG_CONN_K_HTTP;
	p->done = forget;
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
	return 0;
}

/* The channel's PUBLISH, or its history script's when it keeps one. */
static struct eng_rreq *channel_rreq(struct eng_shard *s, const char *name,
				     size_t len, const uint8_t *payload,
				     size_t plen)
{
	const struct eng_ns *ns = eng_ns_find(&s->eng->cfg, name, len);

	return ns ? eng_rreq_hpublish(s->eng, ns, name, len, payload, plen) :
		    eng_rreq_publish(s->eng, name, len, payload, plen);
}

static int redis_publish(struct eng_shard *s, struct eng_conn *c, uint8_t to,
			 const char *name, size_t len, const uint8_t *payload,
			 size_t plen, bool json, struct eng_buf *ok,
			 struct eng_buf *err, eng_reword_fn *reword)
{
	char key[ENG_CHAN_MAX + 2];
	struct eng_rreq *p;

	(void)json;	/* each node checks what Redis hands it */
	if (to == ENG_TO_INBOX) {
		eng_buf_put(ok);	/* HTTP only: none */
		eng_buf_put(err);
		return ask(s, c, eng_rreq_ikeep(s->eng, name, len, payload, plen),
			   NULL, NULL, NULL);
	}
	if (to == ENG_TO_USER) {
		len = eng_user_key(key, name, len);
		name = key;
	}
	if (to == ENG_TO_CHANNEL)
		p = channel_rreq(s, name, len, payload, plen);
	else
		p = eng_rreq_publish(s->eng, name, len, payload, plen);
	return c ? ask(s, c, p, ok, err, reword) : quiet(s, p);
}

/* A counted publish's answer goes to its @fin, not to a connection. */
static void counted(struct eng_shard *s, struct eng_rreq *p)
{
	p->fin(s, p->arg, p->result);
}

static int redis_publish_fin(struct eng_shard *s, const char *name,
			     size_t len, const uint8_t *payload, size_t plen,
			     eng_pub_fin_fn *fin, void *arg)
{
	struct eng_rreq *p = channel_rreq(s, name, len, payload, plen);

	if (!p)
		return -ENOMEM;
	p->from = (uint16_t)s->id;
	p->kind = ENG_CONN_K_HTTP;
	p->done = counted;
	p->fin = fin;
	p->arg = arg;
	eng_mail_post(&s->mail, ENG_BRIDGE, ENG_OP_R_REQUEST, p);
	return 0;
}

static int redis_user_query(struct eng_shard *s, struct eng_conn *c,
			    const char *uid, size_t len)
{
	return ask(s, c, eng_rreq_query(s->eng, uid, len), NULL, NULL,
		   NULL);
}

static int redis_user_kick(struct eng_shard *s, struct eng_conn *c,
			   const char *uid, size_t len)
{
	return ask(s, c, eng_rreq_kick(s->eng, uid, len), NULL, NULL,
		   NULL);
}

static int redis_online(struct eng_shard *s, struct eng_conn *c)
{
	return ask(s, c, eng_rreq_online(s->eng), NULL, NULL, NULL);
}

const struct eng_broker eng_broker_redis = {
	.name = "redis",
	.publish = redis_publish,
	.publish_fin = redis_publish_fin,
	.user_query = redis_user_query,
	.user_kick = redis_user_kick,
	.online = redis_online,
	.hist_read = eng_hist_redis_read,
	.inbox_ask = eng_inbox_redis_ask,
	.joined = eng_inbox_redis_replay,
	.interest = eng_sub_redis_interest,
	.presence = eng_user_redis_presence,
};
