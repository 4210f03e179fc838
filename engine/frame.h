/* SPDX-License-Identifier: MIT */
/*
 * frame: push frames, each encoded once into the shared arena (frame.c),
 * for any module to build: the brokers, the bridge and /metrics. What is
 * stamped into them later is declared with its owner: a history's offset
 * in hist.h, an inbox id in inbox.h (both in frame.c too).
 */
#ifndef RC_ENGINE_FRAME_H
#define RC_ENGINE_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng.h"

/*
 * {"cmd":"push","channel":CHAN,"data":...}, or with @chan NULL
 * {"cmd":"broadcast","data":...}, as one final text frame in the arena.
 * @payload goes in verbatim when @json, else as a JSON string. Returns
 * the frame with one reference, or NULL out of memory.
 */
struct eng_buf *eng_pub_frame(const char *chan, size_t clen,
			      const uint8_t *payload, size_t plen, bool json);

/*
 * As eng_pub_frame() for a channel with history: the frame ends with
 * "epoch" and "offset" members, which its owner stamps (hist.h) before
 * anyone else sees the frame.
 */
struct eng_buf *eng_pub_hist_frame(const char *chan, size_t clen,
				   const uint8_t *payload, size_t plen,
				   bool json);

/* {"cmd":"push","user":UID,"data":...}: a user push, encoded once. */
struct eng_buf *eng_pub_user_frame(const char *uid, size_t ulen,
				   const uint8_t *payload, size_t plen,
				   bool json);

/*
 * As eng_pub_user_frame() for a message kept until acked: the frame ends
 * with an "id" member, which the user's owner stamps (inbox.h).
 */
struct eng_buf *eng_pub_inbox_frame(const char *uid, size_t ulen,
				    const uint8_t *payload, size_t plen,
				    bool json);

/*
 * A Pusher event published as ENG_FRAME_SKIP "SID",... (the rest of the
 * event's members) goes to every subscriber but connection SID: its
 * frame keeps SID apart, and eng_frame_skip() gives it (its length; 0
 * for any other frame, or none to skip) for pub.c's eng_pub_skip.
 */
#define ENG_FRAME_SKIP	"{\"#skip\":\""
size_t eng_frame_skip(const struct eng_buf *f, const char **id);

/*
 * A kept frame for a take-over (handover.h, docs/HANDOVER.md): its bytes
 * from data[0] (the name and skip before the header room too) and what
 * says where they are, written to @b; read back from @r as a new frame
 * with one reference (NULL: malformed, or no memory). Its compressed
 * twin is not carried: the new process sends it plain.
 */
struct eng_ho_buf;
struct eng_ho_rd;
void eng_frame_save(struct eng_ho_buf *b, const struct eng_buf *f);
struct eng_buf *eng_frame_load(struct eng_ho_rd *r);

#endif
