/* SPDX-License-Identifier: MIT */
/*
 * pusher_client.c: client events (client-*, docs/PUSHER.md): allowed per
 * app, on private and presence channels the sender joined, at most
 * --pusher-client-event-rate a second (pusher:error 4301 past it, the
 * connection kept), published through the broker to every other
 * subscriber on every node with the sender's socket_id skipped, and the
 * client_event webhook sent from the sender's node.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "buf.h"
#include "chan.h"
#include "conn.h"
#include "frame.h"
#include "pusher_eng.h"
#include "pusher_int.h"
#include "sub.h"
#include "webhook.h"

#define EVENTS_PER_S	10	/* a connection's client events: Pusher's */
#define TICKS_PER_S	10	/* the shard's tick is 100 ms */

/*
 * Why @c may not send client event @m, or NULL: the app allows them, on
 * a private or presence channel (not encrypted) that @c joined, with a
 * name and data within bounds. *@name: the channel's engine name.
 */
static const char *client_refusal(struct eng_shard *s, struct eng_conn *c,
				  const struct pconn *pc,
				  const struct pusher_msg *m, char *name,
				  int *len)
{
	int kind;

	if (!eng_pusher__app(s, pc)->client_events)
		return "client events are not enabled for this app";
	if (!m->channel.p || m->data_type == JSON_ABSENT)
		return "a client event needs a channel and data";
	kind = pusher_channel_kind(m->channel.p, m->channel.len);
	if (kind < 0 || !pusher_channel_needs_auth(kind) ||
	    (kind & PUSHER_CH_ENCRYPTED))
		return "client events go on private and presence channels only";
	if (pusher_event_name_check(m->event.p, m->event.len, true) < 0 ||
	    m->data.len > s->eng->cfg.pusher->max_data)
		return "client event name or data too long";
	*len = eng_pusher_chan_name(eng_pusher__app(s, pc), m->channel.p,
				    m->channel.len, name);
	if (*len < 0 || !eng_sub_find(c, eng_chan_find(&s->chans, name,
						       (size_t)*len,
						       eng_chan_hash(name,
								     (size_t)*len))))
		return "subscribe to the channel first";
	return NULL;
}

/*
 * A client-* event on a channel @c joined: to every other subscriber, on
 * every node, with the sender's user_id on a presence channel.
 */
void eng_pusher__client_event(struct eng_shard *s, struct eng_conn *c,
			      struct pconn *pc, const struct pusher_msg *m)
{
	char name[ENG_CHAN_MAX + 1], *ev, sbuf[PUSHER_SOCKET_ID_OWN + 1];
	struct json_slice uid = { 0 }, sid = eng_pusher__sid(pc, sbuf);
	struct eng_buf *ok, *err;
	const struct join *j;
	const char *why;
	size_t cap;
	ssize_t n;
	int len;

	why = client_refusal(s, c, pc, m, name, &len);
	if (why) {
		eng_pusher__error(s, c, PUSHER_UNAUTHORIZED, why);
		return;
	}
	if (s->tick - pc->ev_tick >= TICKS_PER_S) {
		pc->ev_tick = s->tick;
		pc->ev_n = 0;
	}
	if (pc->ev_n >= (eng_pusher__app(s, pc)->client_rate ?: EVENTS_PER_S)) {
		/* dropped; the client goes on */
		eng_pusher__error(s, c, PUSHER_CLIENT_EVENT_RATE,
			   "too many client events a second");
		return;
	}
	pc->ev_n++;
	j = eng_pusher__joined(pc, name, (size_t)len);
	cap = 96 + json_escape_max(m->event.len) + json_escape_max(m->channel.len) +
	      m->data.len + (j ? json_escape_max(j->ulen) : 0) +
	      sizeof(ENG_FRAME_SKIP) + sid.len;
	ev = malloc(cap);
	if (!ev) {
		eng_conn_fail(s, c, WS_CLOSE_INTERNAL);
		return;
	}
	if (j) {	/* user_id as a JSON string, written at the end */
		char *u = ev + cap - json_escape_max(j->ulen);

		uid = (struct json_slice){ u, json_escape(u, j->uid, j->ulen) };
	}
	n = eng_pusher_skip_event(ev, cap - (j ? json_escape_max(j->ulen) : 0),
				  sid, m->event, m->channel, m->data, uid);
	ok = n < 0 ? NULL : eng_pusher__ping_frame();
	err = ok ? eng_pusher__ping_frame() : NULL;
	/* through the broker: every node's subscribers, the sender skipped */
	if (!err || s->eng->broker->publish(s, c, ENG_TO_CHANNEL, name,
					    (size_t)len, (const uint8_t *)ev,
					    (size_t)n, true, ok, err,
					    NULL) < 0)
		eng_pusher__error(s, c, ENG_PUSHER_MALFORMED, "client event not sent");
	else	/* sent from this node only: its webhook once (webhook.h) */
		eng_webhook_pusher(eng_pusher__app(s, pc), &(struct eng_webhook_ev){
			.name = "client_event", .channel = m->channel,
			.event = m->event, .socket_id = sid,
			.data = m->data, .data_json = m->data_type == JSON_STRING,
			.user_id = j ? (struct json_slice){ j->uid, j->ulen } :
				       (struct json_slice){ 0 },
			.count = -1 });
	if (!err)
		eng_buf_put(ok);
	free(ev);
}
