/* SPDX-License-Identifier: MIT */
/*
 * inbox_reply.c: the answers to inbox acks and listings, on the asking
 * shard (inbox.h): a /ws client's reply frame or an HTTP client's JSON,
 * from the owner's answer (embedded) or Redis's, and the 503 when Redis
 * could not be asked.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "inbox.h"
#include "mail.h"

/* "ids":["EPOCH-N",...] of the answer, into @p; returns the bytes. */
static size_t ids_json(const struct eng_ibreq *q, char *p)
{
	char *start = p;

	p += sprintf(p, "\"ids\":[");
	for (uint32_t i = 0; i < q->n; i++)
		p += sprintf(p, "%s\"%s-%llu\"", i ? "," : "", q->epoch,
			     (unsigned long long)q->ids[i]);
	*p++ = ']';
	return (size_t)(p - start);
}

void inbox__answer(struct eng_shard *s, struct eng_ibreq *q)
{
	struct eng_conn *c = &s->conns[q->slot];
	bool ack = q->kind == ENG_IB_ACK;
	size_t cap = 256 + q->seq_len + (size_t)q->n * 40;
	struct eng_buf *b;
	char *p, *start;

	if (c->gen != q->gen || !eng_conn_alive(c))
		goto out;
	b = eng_buf_new(WS_MAX_SERVER_HDR + cap);
	if (!b) {
		if (q->http)
			eng_conn_http_reply(s, c, 503, NULL, NULL, NULL, 0);
		else
			eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		goto out;
	}
	start = p = (char *)b->data + WS_MAX_SERVER_HDR;
	if (q->http) {
		p += sprintf(p, "{\"unread\":%llu,\"evicted\":%llu,",
			     (unsigned long long)q->unread,
			     (unsigned long long)q->evicted);
		p += ids_json(q, p);
		p += sprintf(p, "}\n");
		c->flags &= ~ENG_CONN_F_WAIT;
		eng_conn_http_reply(s, c, 200, NULL, "application/json", start,
				    (size_t)(p - start));
		eng_conn_resume(s, c);
		eng_buf_put(b);
		goto out;
	}
	p += sprintf(p, "{");
	if (q->seq_len)
		p += sprintf(p, "\"seq\":%.*s,", (int)q->seq_len, q->seq);
	if (q->status == ENG_IB_UNKNOWN) {
		p += sprintf(p, "\"cmd\":\"ack\",\"code\":400,"
			     "\"msg\":\"unknown id\"}");
	} else if (ack) {
		p += sprintf(p, "\"cmd\":\"ack\",\"code\":200,\"msg\":\"ok\","
			     "\"data\":{\"acked\":%llu,\"unread\":%llu}}",
			     (unsigned long long)q->acked,
			     (unsigned long long)q->unread);
	} else {
		p += sprintf(p, "\"cmd\":\"inbox\",\"code\":200,\"msg\":\"ok\","
			     "\"data\":{\"unread\":%llu,\"evicted\":%llu,",
			     (unsigned long long)q->unread,
			     (unsigned long long)q->evicted);
		p += ids_json(q, p);
		p += sprintf(p, "}}");
	}
	eng_buf_seal(b, (uint8_t *)start, WS_OP_TEXT, (size_t)(p - start));
	eng_conn_queue(s, c, b);
out:
	eng_free(q);
}

void inbox__unavailable(struct eng_shard *s, struct eng_ibreq *q)
{
	struct eng_conn *c = &s->conns[q->slot];

	if (c->gen == q->gen && eng_conn_alive(c)) {
		if (q->http) {
			c->flags &= ~ENG_CONN_F_WAIT;
			eng_conn_http_reply(s, c, 503, NULL, NULL, NULL, 0);
			eng_conn_resume(s, c);
		} else {
			char buf[160];
			int len = snprintf(buf, sizeof(buf),
				"{%s%.*s%s\"cmd\":\"%s\",\"code\":503,"
				"\"msg\":\"redis unavailable\"}",
				q->seq_len ? "\"seq\":" : "", (int)q->seq_len,
				q->seq, q->seq_len ? "," : "",
				q->kind == ENG_IB_ACK ? "ack" : "inbox");
			struct eng_buf *b = eng_buf_new(WS_MAX_SERVER_HDR +
							(size_t)len);

			if (b) {
				memcpy(b->data + WS_MAX_SERVER_HDR, buf,
				       (size_t)len);
				eng_buf_seal(b, b->data + WS_MAX_SERVER_HDR,
					     WS_OP_TEXT, (size_t)len);
				eng_conn_queue(s, c, b);
			}
		}
	}
	eng_ibreq_free(q);
}
