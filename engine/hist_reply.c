/* SPDX-License-Identifier: MIT */
/*
 * hist_reply.c: the replies of history reads, on the asking shard
 * (hist.h): a history command's page or a recovery's verdict as JSON, and
 * an answer's messages fitted to what the connection has room for. Both
 * brokers' answers end here, through hist.c.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "hist.h"
#include "mail.h"

size_t hist__room(const struct eng_shard *s, const struct eng_conn *c,
		  size_t keep)
{
	uint64_t max = s->eng->cfg.max_pending;

	return c->queued + keep < max ? (size_t)(max - c->queued - keep) : 0;
}

/* The payload of a frame this engine sealed (header before it). */
static const char *payload_of(const struct eng_buf *f, size_t *len)
{
	const uint8_t *p = f->data + f->start;
	uint8_t l7 = p[1] & 0x7f;
	size_t hl = l7 < 126 ? 2 : l7 == 126 ? 4 : 10;

	*len = f->len - hl;
	return (const char *)p + hl;
}

struct eng_buf *hist__reply(const struct eng_hreq *h, int code,
			    const char *msg)
{
	bool rec = h->kind == ENG_HREQ_RECOVER;
	size_t cap = 256 + h->seq_len + strlen(msg), len;
	struct eng_buf *b;
	char *p, *start;

	for (uint32_t i = 0; i < h->n && !rec; i++)
		cap += h->frames[i]->len + 1;
	b = eng_buf_new(WS_MAX_SERVER_HDR + cap);
	if (!b)
		return NULL;
	start = p = (char *)b->data + WS_MAX_SERVER_HDR;
	p += sprintf(p, "{");
	if (h->seq_len)
		p += sprintf(p, "\"seq\":%.*s,", (int)h->seq_len, h->seq);
	p += sprintf(p, "\"cmd\":\"%s\",\"code\":%d,\"msg\":\"%s\"",
		     rec ? "subscribe" : "history", code, msg);
	if (code == 200) {
		p += sprintf(p, ",\"data\":{");
		if (rec)
			p += sprintf(p, "\"recovered\":%s,",
				     h->status == ENG_HREQ_OK ? "true" :
				     "false");
		if (rec && h->status == ENG_HREQ_BACKLOG)
			p += sprintf(p, "\"reason\":\"backlog\",");
		if (h->epoch[0])
			p += sprintf(p, "\"epoch\":\"%s\"", h->epoch);
		else
			p += sprintf(p, "\"epoch\":null");
		p += sprintf(p, ",\"offset\":%llu", (unsigned long long)h->top);
		if (!rec) {
			p += sprintf(p, ",\"messages\":[");
			for (uint32_t i = 0; i < h->n; i++) {
				const char *m = payload_of(h->frames[i], &len);

				if (i)
					*p++ = ',';
				memcpy(p, m, len);
				p += len;
			}
			*p++ = ']';
		}
		if (!rec && h->more)
			p += sprintf(p, ",\"more\":true,\"next\":%llu",
				     (unsigned long long)h->after);
		*p++ = '}';
	}
	*p++ = '}';
	eng_buf_seal(b, (uint8_t *)start, WS_OP_TEXT, (size_t)(p - start));
	return b;
}

void hist__fit(struct eng_shard *s, const struct eng_conn *c,
	       struct eng_hreq *h)
{
	char epoch[ENG_EPOCH_LEN + 1];
	size_t room = hist__room(s, c, ENG_HIST_SLACK), bytes = 0;
	uint64_t from = h->n ? eng_hist_offset_of(h->frames[0], epoch) - 1 :
			h->after;
	uint32_t keep = 0;

	if (h->kind != ENG_HREQ_RECOVER && room > ENG_HIST_PAGE)
		room = ENG_HIST_PAGE;
	for (; keep < h->n; keep++) {
		size_t len = h->frames[keep]->len;

		if (bytes + len > room && !(keep == 0 && !c->queued))
			break;
		bytes += len;
	}
	if (keep == h->n)
		goto out;
	h->more = 1;
	if (h->kind == ENG_HREQ_RECOVER) {
		h->status = ENG_HREQ_BACKLOG;
		keep = 0;
	}
	while (h->n > keep)
		eng_buf_put(h->frames[--h->n]);
out:
	if (h->kind != ENG_HREQ_RECOVER && h->more)
		h->after = h->n ? eng_hist_offset_of(h->frames[h->n - 1],
						     epoch) : from;
}
