/* SPDX-License-Identifier: MIT */
/*
 * frame.c: push frames, encoded once (frame.h), and what is stamped into
 * them after they were built and read back: a history channel's epoch
 * and offset (hist.h) and a kept push's inbox id (inbox.h), each written
 * into the room the frame kept for it. Pure, and below every module: the
 * brokers, the bridge and /metrics build frames; the owner shard that
 * sequences a message and the bridge that hears it from Redis both stamp,
 * and the shards read.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "chan.h"
#include "frame.h"
#include "handover.h"
#include "hist.h"
#include "inbox.h"
#include "json.h"
#include "ws.h"

static const char push_head[] = "{\"cmd\":\"push\",\"channel\":\"";
static const char push_mid[] = "\",\"data\":";
static const char bcast_head[] = "{\"cmd\":\"broadcast\",\"data\":";

/* A history channel's frame ends with room the owner stamps (hist.c). */
static const char hist_tail[] =
	",\"epoch\":\"0000000000000000\",\"offset\":null                }";

/* ... and a user's kept message with room for its id (inbox.c). */
static const char inbox_tail[] =
	",\"id\":null                           }";

/*
 * A Pusher channel's frame (chan.h's ENG_PUSHER_MARK) is the Pusher event
 * as published, which names its channel itself: the engine's name, which
 * routes it, is kept before the header room, outside what is sent, with
 * the socket_id the event skips (eng_frame_skip) when it begins with
 * ENG_FRAME_SKIP "SID", (taken out of what is sent).
 */
static struct eng_buf *raw(const char *chan, size_t clen,
			   const uint8_t *payload, size_t plen)
{
	size_t hl = sizeof(ENG_FRAME_SKIP) - 1, sl = 0;
	const uint8_t *sid = NULL;
	struct eng_buf *b;
	uint8_t *start;

	if (plen > hl && !memcmp(payload, ENG_FRAME_SKIP, hl)) {
		sid = payload + hl;
		while (hl + sl < plen && sl < 48 && sid[sl] != '"')
			sl++;
		if (sl == 48 || hl + sl + 2 >= plen || sid[sl + 1] != ',')
			return NULL;	/* not what pusher_api.c writes */
		payload += hl + sl + 1;	/* the ',' becomes the '{' */
		plen -= hl + sl + 1;
	}
	b = eng_arena_buf(clen + 1 + sl + WS_MAX_SERVER_HDR + plen);
	if (!b)
		return NULL;
	memcpy(b->data, chan, clen);
	b->name_off = 0;
	b->name_len = (uint8_t)clen;
	b->data[clen] = (uint8_t)sl;
	if (sl)
		memcpy(b->data + clen + 1, sid, sl);
	start = b->data + clen + 1 + sl + WS_MAX_SERVER_HDR;
	memcpy(start, payload, plen);
	if (sid)
		start[0] = '{';
	eng_buf_seal(b, start, WS_OP_TEXT, plen);
	return b;
}

size_t eng_frame_skip(const struct eng_buf *f, const char **id)
{
	size_t n;

	if (f->name_off || !f->name_len || f->data[0] != ENG_PUSHER_MARK)
		return 0;
	n = f->data[f->name_len];
	*id = (const char *)f->data + f->name_len + 1;
	return n;
}

/* @tail: NULL, or one of the above. */
static struct eng_buf *build(const char *chan, size_t clen,
			     const uint8_t *payload, size_t plen, bool json,
			     const char *tail)
{
	size_t body = (json ? plen : json_escape_max(plen)) + 1 +
		      (chan ? sizeof(push_head) + clen + sizeof(push_mid)
			    : sizeof(bcast_head)) +
		      (tail ? strlen(tail) : 0);
	struct eng_buf *b;
	uint8_t *p, *start;

	if (chan && clen && chan[0] == ENG_PUSHER_MARK && json && !tail)
		return raw(chan, clen, payload, plen);
	b = eng_arena_buf(WS_MAX_SERVER_HDR + body);
	if (!b)
		return NULL;
	/*
	 * The envelope goes after header room; the header is written last,
	 * right-aligned against it, once the length is known.
	 */
	start = p = b->data + WS_MAX_SERVER_HDR;
	if (chan) {
		memcpy(p, push_head, sizeof(push_head) - 1);
		p += sizeof(push_head) - 1;
		b->name_off = (uint32_t)(p - b->data);
		b->name_len = (uint8_t)clen;
		memcpy(p, chan, clen);	/* names need no escaping */
		p += clen;
		memcpy(p, push_mid, sizeof(push_mid) - 1);
		p += sizeof(push_mid) - 1;
	} else {
		memcpy(p, bcast_head, sizeof(bcast_head) - 1);
		p += sizeof(bcast_head) - 1;
		b->flags |= ENG_BUF_F_BCAST;
	}
	if (json) {
		memcpy(p, payload, plen);
		p += plen;
	} else {
		p += json_escape((char *)p, (const char *)payload, plen);
	}
	if (tail) {
		memcpy(p, tail, strlen(tail));
		p += strlen(tail);
		b->flags |= tail == hist_tail ? ENG_BUF_F_HIST :
			    ENG_BUF_F_INBOX;
	} else {
		*p++ = '}';
	}
	eng_buf_seal(b, start, WS_OP_TEXT, (size_t)(p - start));
	return b;
}

struct eng_buf *eng_pub_frame(const char *chan, size_t clen,
			      const uint8_t *payload, size_t plen, bool json)
{
	return build(chan, clen, payload, plen, json, NULL);
}

struct eng_buf *eng_pub_hist_frame(const char *chan, size_t clen,
				   const uint8_t *payload, size_t plen,
				   bool json)
{
	return build(chan, clen, payload, plen, json, hist_tail);
}

static const char user_head[] = "{\"cmd\":\"push\",\"user\":\"";

/* {"cmd":"push","user":"UID","data":...}: a user push, encoded once. */
static struct eng_buf *user_frame(const char *uid, size_t ulen,
				  const uint8_t *payload, size_t plen,
				  bool json, const char *tail)
{
	struct eng_buf *b = build(uid, ulen, payload, plen, json, tail);
	size_t neu = sizeof(user_head) - 1;
	uint8_t *end, *env;

	if (!b)
		return NULL;
	/*
	 * The channel frame with "user" for "channel": the shorter head is
	 * written in place, ending where the name starts, and the header
	 * moves up against it.
	 */
	end = b->data + b->start + b->len;
	env = b->data + b->name_off - neu;
	memcpy(env, user_head, neu);
	eng_buf_seal(b, env, WS_OP_TEXT, (size_t)(end - env));
	b->flags |= ENG_BUF_F_USER;
	return b;
}

struct eng_buf *eng_pub_user_frame(const char *uid, size_t ulen,
				   const uint8_t *payload, size_t plen,
				   bool json)
{
	return user_frame(uid, ulen, payload, plen, json, NULL);
}

struct eng_buf *eng_pub_inbox_frame(const char *uid, size_t ulen,
				    const uint8_t *payload, size_t plen,
				    bool json)
{
	return user_frame(uid, ulen, payload, plen, json, inbox_tail);
}

void eng_hist_stamp(struct eng_buf *f, const char *epoch, uint64_t offset)
{
	char *end = (char *)f->data + f->start + f->len - 1;
	char *at = end - 20;
	int n = offset ? snprintf(at, 21, "%llu", (unsigned long long)offset)
		       : snprintf(at, 21, "null");

	*end = '}';			/* snprintf's NUL took its place */
	memset(at + n, ' ', (size_t)(20 - n));	/* JSON allows the blanks */
	memcpy(at - 11 - ENG_EPOCH_LEN, epoch ? epoch : "0000000000000000",
	       ENG_EPOCH_LEN);
	f->flags |= ENG_BUF_F_STAMPED;
}

uint64_t eng_hist_offset_of(const struct eng_buf *f,
			    char epoch[ENG_EPOCH_LEN + 1])
{
	const char *end = (const char *)f->data + f->start + f->len - 1;
	uint64_t off = 0;

	memcpy(epoch, end - 31 - ENG_EPOCH_LEN, ENG_EPOCH_LEN);
	epoch[ENG_EPOCH_LEN] = '\0';
	for (const char *p = end - 20; p < end && *p >= '0' && *p <= '9'; p++)
		off = off * 10 + (uint64_t)(*p - '0');
	return off;
}

/* Room eng_pub_inbox_frame() keeps before the final '}': any id fits. */
void eng_inbox_stamp(struct eng_buf *f, const char *epoch, uint64_t n)
{
	char *end = (char *)f->data + f->start + f->len - 1;
	char *room = end - 37;
	int len = snprintf(room, 38, ",\"id\":\"%s-%llu\"", epoch,
			   (unsigned long long)n);

	memset(room + len, ' ', (size_t)(37 - len));	/* JSON allows them */
	*end = '}';
	f->flags |= ENG_BUF_F_STAMPED;
}

uint64_t eng_inbox_id_of(const struct eng_buf *f, char *epoch)
{
	const char *p = (const char *)f->data + f->start + f->len - 38;
	uint64_t n = 0;

	epoch[0] = '\0';
	if (memcmp(p, ",\"id\":\"", 7))
		return 0;
	memcpy(epoch, p + 7, ENG_INBOX_EPOCH_LEN);
	epoch[ENG_INBOX_EPOCH_LEN] = '\0';
	for (p += 8 + ENG_INBOX_EPOCH_LEN; *p >= '0' && *p <= '9'; p++)
		n = n * 10 + (uint64_t)(*p - '0');
	return n;
}

void eng_frame_save(struct eng_ho_buf *b, const struct eng_buf *f)
{
	eng_ho_put_u32(b, f->start);
	eng_ho_put_u32(b, f->len);
	eng_ho_put_u32(b, f->name_off);
	eng_ho_put_u8(b, f->name_len);
	eng_ho_put_u8(b, f->flags);
	eng_ho_put(b, f->data, (size_t)f->start + f->len);
}

struct eng_buf *eng_frame_load(struct eng_ho_rd *r)
{
	uint32_t start = eng_ho_get_u32(r), len = eng_ho_get_u32(r);
	uint32_t name_off = eng_ho_get_u32(r);
	uint8_t name_len = eng_ho_get_u8(r), flags = eng_ho_get_u8(r);
	const uint8_t *p;
	struct eng_buf *f;

	/* what points into the frame must stay inside it */
	if (r->err || (uint64_t)start + len > ENG_HO_MAX_MSG * 64ull ||
	    (uint64_t)name_off + name_len > (uint64_t)start + len)
		return NULL;
	p = eng_ho_get(r, (size_t)start + len);
	if (!p)
		return NULL;
	f = eng_arena_buf((size_t)start + len);
	if (!f)
		return NULL;
	memcpy(f->data, p, (size_t)start + len);
	f->start = start;
	f->len = len;
	f->name_off = name_off;
	f->name_len = name_len;
	f->flags = (uint8_t)(ENG_BUF_F_FRAME | (flags & ~ENG_BUF_F_FRAME));
	return f;
}
