/* SPDX-License-Identifier: MIT */
/*
 * frame.c: what is stamped into a push frame after it was built, and read
 * back: a history channel's epoch and offset (hist.h) and a kept push's
 * inbox id (inbox.h), each written into the room the frame kept for it
 * (pub.c). Pure: the owner shard that sequences a message and the bridge
 * that hears it from Redis both stamp, and the shards read.
 */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "hist.h"
#include "inbox.h"

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
