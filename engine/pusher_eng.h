/* SPDX-License-Identifier: MIT */
/*
 * pusher_eng: the Pusher Channels protocol v7 front door (issue 26; the
 * protocol itself is proto/pusher.h, without I/O). Its apps from the
 * options (opts_pusher.c), the WebSocket endpoint on /app/{key}
 * (pusher.c), registered as the endpoint of ENG_CONN_K_PUSHER
 * connections, and the HTTP API on /apps/{id}/... (pusher_api.c). A
 * Pusher channel is an engine channel whose name carries its app's id
 * (eng_pusher_chan_name), so two apps' channels never meet, in Redis
 * either; its frames are the Pusher events themselves (frame.h).
 * docs/PUSHER.md is the user's guide.
 */
#ifndef RC_ENGINE_PUSHER_ENG_H
#define RC_ENGINE_PUSHER_ENG_H

#include <stddef.h>
#include <stdint.h>

#include "eng.h"
#include "pusher.h"

struct hs_req;

#define ENG_PUSHER_EVENTS_MAX	64	/* per-app options given */

/* What a per-app option turns on (eng_pusher_opt_events). */
enum {
	ENG_PUSHER_CLIENT_EVENTS = 1,	/* --pusher-client-events */
	ENG_PUSHER_SUB_COUNT,		/* --pusher-subscription-count */
	ENG_PUSHER_RATE,		/* --pusher-client-event-rate */
	ENG_PUSHER_WATCHLIST,		/* --pusher-watchlist */
};

#define ENG_PUSHER_ACTIVITY_MS	120000	/* activity_timeout: pusher-js's */
#define ENG_PUSHER_PONG_MS	30000	/* a pusher:ping's answer: Pusher's */
#define ENG_PUSHER_RATE_MAX	255	/* --pusher-client-event-rate N */

/* What the --pusher-* options and RINGCAST_PUSHER_APPS configure. */
struct eng_pusher_cfg {
	struct pusher_apps apps;	/* secrets wiped when freed */
	const char *file;		/* --pusher-apps-file, argv's */
	const char *events[ENG_PUSHER_EVENTS_MAX];	/* app ids, argv's */
	uint8_t what[ENG_PUSHER_EVENTS_MAX];	/* ENG_PUSHER_* of each */
	unsigned nevents;
	unsigned activity_ms;	/* --pusher-activity-timeout */
	unsigned pong_ms;	/* --pusher-pong-timeout */
	unsigned cache_ms;	/* --pusher-cache-ttl */
	unsigned max_data;	/* --pusher-max-data */
};

/*
 * --pusher-app ID:KEY:SECRET (one more app), and a per-app option's ID
 * (--pusher-client-events, --pusher-subscription-count: @what; "ID=N"
 * for --pusher-client-event-rate, N from 1 to ENG_PUSHER_RATE_MAX), into
 * @cfg->pusher (allocated at the first); --pusher-activity-timeout and
 * --pusher-pong-timeout (@pong), whole seconds from 1 s to a day, and
 * --pusher-cache-ttl (eng_pusher_opt_ttl, 1 s to a day), and
 * --pusher-max-data (eng_pusher_opt_data, 1 to ENG_PUSHER_DATA_CAP
 * bytes). Return
 * 0, or -EINVAL with *@why set to a static message that never holds the
 * secret.
 */
int eng_pusher_opt_app(struct eng_cfg *cfg, const char *spec,
		       const char **why);
int eng_pusher_opt_events(struct eng_cfg *cfg, const char *id, uint8_t what,
			  const char **why);
int eng_pusher_opt_file(struct eng_cfg *cfg, const char *path,
			const char **why);
int eng_pusher_opt_dur(struct eng_cfg *cfg, const char *arg, bool pong,
		       const char **why);
int eng_pusher_opt_ttl(struct eng_cfg *cfg, const char *arg,
		       const char **why);
int eng_pusher_opt_data(struct eng_cfg *cfg, const char *arg,
			const char **why);

/*
 * After the command line: the apps of RINGCAST_PUSHER_APPS and of
 * --pusher-apps-file added, the per-app options applied to theirs.
 * Returns 0, or -EINVAL after saying on stderr what is wrong (where,
 * and the field; never a secret).
 */
int eng_pusher_opts_finish(struct eng_cfg *cfg);

/* Frees @cfg->pusher, secrets wiped. Safe when there is none. */
void eng_pusher_cfg_free(struct eng_cfg *cfg);

/*
 * The engine channel of Pusher channel @ch[0..@len) (a name
 * pusher_channel_kind() accepted) of app @app, into @out (ENG_CHAN_MAX +
 * 1 bytes, NUL-terminated): "!p:", the app's id, ':' and
 * the channel when that fits the engine's name rules, else
 * "!h:", the id, ':' and 40 hex digits of the channel's
 * SHA-256. Returns its length, or -EINVAL.
 */
int eng_pusher_chan_name(const struct pusher_app *app, const char *ch,
			 size_t len, char *out);

#define ENG_PUSHER_MEMBERS_MAX	100	/* a presence channel's users */
#define ENG_PUSHER_DATA_MAX	10240	/* an event's data: Pusher's default */
#define ENG_PUSHER_DATA_CAP	(1u << 20)	/* --pusher-max-data at most */

/*
 * A channel event's frame as published (pusher_enc_event's), after
 * ENG_FRAME_SKIP "@skip", when @skip.p is not NULL: all subscribers but
 * connection @skip get it (frame.h). Returns its length or -ENOSPC.
 */
ssize_t eng_pusher_skip_event(char *out, size_t cap, struct json_slice skip,
			      struct json_slice name, struct json_slice ch,
			      struct json_slice data, struct json_slice user_id);

/*
 * Member @mb of presence channel @ch (engine channel @name[0..@len))
 * joins on connection @c, socket_id @sid: counted, and announced to the
 * channel's other subscribers with member_added when it is the user's
 * first connection (on any node, with one Redis). *@ok: the
 * subscription_succeeded @c gets, listing every member; NULL with one
 * Redis, where @c gets it once Redis has answered (a channel full then
 * goes to eng_pusher_full(); Redis failing fails @c). Returns 0; -E2BIG when the channel has
 * ENG_PUSHER_MEMBERS_MAX users already; -ENOMEM.
 */
int eng_pusher_join(struct eng_shard *s, struct eng_conn *c,
		    const char *name, size_t len, struct json_slice ch,
		    struct json_slice sid, const struct pusher_member *mb,
		    struct eng_buf **ok);

/*
 * Connection @c (@sid) of user @id_str left presence channel @ch: at the
 * user's last connection (on any node, with one Redis), member_removed
 * to the channel.
 */
void eng_pusher_leave(struct eng_shard *s, struct eng_conn *c,
		      const char *name, size_t len, struct json_slice ch,
		      struct json_slice sid, struct json_slice id_str);

/*
 * @b (taken over) to @c, subscribed to engine channel @name, behind the
 * subscription's registration when that is still pending (a presence
 * join's member list, a presence-cache channel's last event, both
 * answered by Redis): a client told subscription_succeeded gets the
 * events published after. Dropped when @c left the channel meanwhile.
 */
void eng_pusher_behind(struct eng_shard *s, struct eng_conn *c,
		       struct json_slice name, struct eng_buf *b);

/*
 * A live hand-over (pusher_ho.c). eng_pusher_member_blob(): member
 * @id_str of presence channel @name in this node's table, as
 * "ID\0STR\0INFO" in *@out (malloc'd, the caller's): its length; 0 and
 * *@out NULL when the table lacks it (with one Redis, Redis has it) or
 * out of memory. eng_pusher_rejoin(): @c (socket @sid), carried over
 * from the old process, is member @mb of @name (@ch, Pusher's; empty for
 * a watch channel) again, silently: on the embedded broker counted in
 * this node's table; with one Redis, the old node @old's count of it
 * moved to this node's by one script, the user's total untouched (when
 * the old node was reaped meanwhile, the script joins it again as a
 * join does, member_added if it is the user's first again). Returns 0,
 * -EINVAL (Redis, no @old) or -ENOMEM.
 */
size_t eng_pusher_member_blob(const char *name, size_t len,
			      struct json_slice id_str, char **out);
/*
 * The old process's side of eng_pusher_rejoin(): a connection of member
 * @id_str of @name, carried to the new process, is counted out of this
 * node's table (on a cluster its own tally) without a word: no
 * member_removed, no webhook; with one Redis nothing, the new process's
 * move takes it from this node's count.
 */
void eng_pusher_carried_out(struct eng_shard *s, const char *name,
			    size_t len, struct json_slice id_str);
int eng_pusher_rejoin(struct eng_shard *s, struct eng_conn *c,
		      const char *name, size_t len, struct json_slice ch,
		      struct json_slice sid, const struct pusher_member *mb,
		      const char *old);

/*
 * Redis refused @c's join of presence channel @ch (Pusher's name): the
 * channel has ENG_PUSHER_MEMBERS_MAX users. @c is unsubscribed, its join
 * forgotten, and told with subscription_error LimitReached 4100.
 */
void eng_pusher_full(struct eng_shard *s, struct eng_conn *c,
		     struct json_slice ch);

/*
 * A Redis Cluster's presence (pusher_reap.c). eng_pusher_slot_register():
 * this node has members in slot @hslot, of Redis channel @rch[0..@rlen),
 * said to the presence slot once (so that the slot is reaped if this node
 * dies). eng_pusher_reap_tick(): shard 0's, each tick: about once a
 * second the slots of dead nodes (bridge_pusher.c, P pdead) are asked
 * for and each reaped, its members' member_removed published and their
 * webhooks sent from here. Neither does anything but on a cluster.
 */
void eng_pusher_slot_register(struct eng_shard *s, const char *rch,
			      size_t rlen, uint16_t hslot);
void eng_pusher_reap_tick(struct eng_shard *s);

/*
 * The engine channel that connections signed in (pusher:signin) as user
 * @uid[0..@len) of @app join, and that POST
 * .../users/{uid}/terminate_connections publishes to, through the
 * broker (every node): "!u:", the app's id, ':' and 40 hex digits of the
 * id's SHA-256, into @out (ENG_CHAN_MAX + 1 bytes, NUL-terminated). No
 * /ws client and no Pusher channel has such a name. Returns its length,
 * or -EINVAL.
 */
int eng_pusher_user_key(const struct pusher_app *app, const char *uid,
			size_t len, char *out);

/*
 * Watchlists (pusher_watch.c), for an app with --pusher-watchlist. User
 * U's watch channel is "!w:" (ENG_PUSHER_WATCH), the app's id, ':' and 40
 * hex digits of U's SHA-256 (eng_pusher_watch_key). U's signed-in
 * connections are its members, counted by pusher_presence.c as a
 * presence channel's (on every node with one Redis, also after a node
 * dies), whose first and last announce watchlist_events online and
 * offline to the channel's subscribers: the connections watching U.
 *
 * eng_pusher_watch(): @c (socket @sid) signed in as @uid with
 * @user_data: counted in its own watch channel, and subscribed to its
 * user channel (eng_pusher_user_key) and to the watch channel of each id
 * of user_data's watchlist (at most PUSHER_WATCHLIST_MAX; not counted
 * against --max-subs), @reply (signin_success, taken over) queued once
 * all are registered; those online now get one watchlist_events online,
 * queued now or once Redis has answered. @scratch (@cap bytes,
 * @user_data's length) is overwritten. Returns 0; -EBADMSG or -E2BIG, a
 * bad watchlist, nothing done and @reply still the caller's; any other
 * -errno (-ENOMEM, or eng_conn_queue's when @c's queue is over its
 * bound), @reply dropped. eng_pusher_unwatch(): all that undone but the
 * user channel (signed in again, or closing).
 */
#define ENG_PUSHER_WATCH	'w'
int eng_pusher_watch_key(const struct pusher_app *app, const char *uid,
			 size_t len, char *out);
int eng_pusher_watch(struct eng_shard *s, struct eng_conn *c,
		     const struct pusher_app *app, struct json_slice sid,
		     const char *uid, struct json_slice user_data,
		     char *scratch, size_t cap, struct eng_buf *reply);
void eng_pusher_unwatch(struct eng_shard *s, struct eng_conn *c,
			const struct pusher_app *app, struct json_slice sid,
			const char *uid);

/*
 * Whether presence, watchlists and cache channels are Redis's: with one
 * Redis; on the embedded broker and a Redis Cluster, each node's own.
 */
bool eng_pusher_across(const struct eng_shard *s);


/*
 * The socket_id a terminate's frame skips (frame.h ENG_FRAME_SKIP), on
 * the user's channel above: no socket_id looks like it, and pusher.c
 * closes (4009) each connection it would reach instead.
 */
#define ENG_PUSHER_TERMINATE	"!terminate"

/*
 * A text frame holding JSON @json[0..@n), sealed, one reference the
 * caller's; NULL out of memory.
 */
struct eng_buf *eng_pusher_text(const char *json, size_t n);

#define ENG_PUSHER_CACHE_TTL_MS	1800000u	/* a cached event: Pusher's */
#define ENG_PUSHER_CACHE_TTL_MAX 86400000u	/* --pusher-cache-ttl at most */
#define ENG_PUSHER_CACHE_BYTES	(64u << 20)	/* a node's cache table */

/*
 * Cache channels (pusher_cache.c). eng_pusher_cache_put(): event @event
 * with @data, published by the HTTP API to Pusher channel @ch (engine
 * channel @name[0..@len)), becomes its last when @ch is a cache channel
 * (else nothing): for --pusher-cache-ttl (ENG_PUSHER_CACHE_TTL_MS by
 * default), in Redis (sent ahead of the event's own publish; on a
 * cluster, presence-cache channels excepted, which stay per node as
 * their members), else in this node's table, whose entries and frames
 * take at most ENG_PUSHER_CACHE_BYTES (the oldest go first).
 *
 * eng_pusher_cache_get(): @c subscribes to cache channel @ch of @app:
 * what it gets after subscription_succeeded, the last event or
 * pusher:cache_miss. From the table: *@then set, returns 1. From Redis:
 * returns 0 and the answer goes, once there, to eng_pusher_cached() or,
 * for @presence (whose join was sent to Redis before), straight to @c,
 * behind the members. -ENOMEM: nothing asked.
 */
void eng_pusher_cache_put(struct eng_shard *s, const char *name, size_t len,
			  struct json_slice event, struct json_slice ch,
			  struct json_slice data);
int eng_pusher_cache_get(struct eng_shard *s, struct eng_conn *c,
			 const struct pusher_app *app, const char *name,
			 size_t len, struct json_slice ch, bool presence,
			 struct eng_buf **then);
/* The table's figures now; emptied at the stop. */
void eng_pusher_cache_figures(unsigned *entries, size_t *bytes);
void eng_pusher_cache_clear(void);

/*
 * pusher.c: @c's subscribe to (non-presence) cache channel @ch goes on
 * with @then (taken over) queued behind its subscription_succeeded.
 */
void eng_pusher_cached(struct eng_shard *s, struct eng_conn *c,
		       struct json_slice ch, struct eng_buf *then);

/*
 * This node's subscriptions to Pusher channels (pusher_count.c), one
 * table under a mutex: @delta (+1 or -1) to engine channel @name[0..@len)
 * (Pusher's @ch, kept for listings); @announce (the app's sub_count, at
 * the first) has the change sent by eng_pusher_tick(). Returns the new
 * count. Without one Redis a change is also the webhooks'
 * subscription_count, and the first subscriber or the last one gone
 * channel_occupied or channel_vacated; with one Redis, Redis says
 * (eng_pusher_tick). eng_pusher_count_get(): the count now.
 * eng_pusher_count_carry(): the same for a connection a live hand-over
 * carries in (+1, the new process) or out (-1, the old one), telling
 * nobody: no webhook, no subscription_count (to its clients the
 * connection never left). eng_pusher_count_clear(): the table freed, at
 * the stop.
 * eng_pusher_count_init(): which it is, once, before the shards start.
 */
void eng_pusher_count_init(struct eng *e);
/* Whether the counts are Redis's too (one Redis), as init found. */
bool eng_pusher_counts_across(void);
unsigned eng_pusher_count_add(const char *name, size_t len,
			      struct json_slice ch, int delta, bool announce);
void eng_pusher_count_carry(const char *name, size_t len,
			    struct json_slice ch, int delta, bool announce);
unsigned eng_pusher_count_get(const char *name, size_t len);
/*
 * The Pusher name of counted channel @name into @out (PUSHER_CHANNEL_MAX
 * bytes at least): its length, 0 when the table lacks it.
 */
size_t eng_pusher_count_ch(const char *name, size_t len, char *out);
void eng_pusher_count_clear(void);

/*
 * The app id in engine channel @name[0..@len) ("!p:ID:..." and the
 * like): *@id points at it; its length, 0 when there is none.
 */
size_t eng_pusher_app_of(const char *name, size_t len, const char **id);

/*
 * Every tick, on shard 0 (others return at once): with one Redis, this
 * node's changed counts written (eng_lua_pcount: a batch per tick, at
 * most one script out) or, when none changed, every half second, the
 * webhooks' records Redis holds for this node taken; then each channel of an
 * app with --pusher-subscription-count whose count changed gets
 * pusher_internal:subscription_count, this node's count, delivered to
 * this node's subscribers; at most once a second a channel, so a burst
 * of changes is one message, sent at the first tick a second after the
 * previous one.
 */
void eng_pusher_tick(struct eng_shard *s);

/* What a GET query of the HTTP API asks (its query string, read). */
struct eng_pusher_query {
	struct json_slice prefix;	/* filter_by_prefix, decoded */
	bool subscription_count;	/* info= holds subscription_count */
	bool user_count;		/* ... and user_count */
	char buf[PUSHER_CHANNEL_MAX + 1];	/* prefix's bytes */
};

/*
 * GET /apps/{id}/channels (app @app's occupied channels, those beginning
 * with @q->prefix) and GET /apps/{id}/channels/{@ch}: answered to @c, at
 * once from this node's counts, or with one Redis once Redis has
 * answered with every live node's; user_count (presence channels only,
 * else 400) the channel's distinct users.
 */
void eng_pusher_channels(struct eng_shard *s, struct eng_conn *c,
			 const struct pusher_app *app,
			 const struct eng_pusher_query *q);
void eng_pusher_channel(struct eng_shard *s, struct eng_conn *c,
			const struct pusher_app *app, struct json_slice ch,
			const struct eng_pusher_query *q);

/*
 * Presence channel @name[0..@len)'s users: eng_pusher_user_count() on
 * this node's table (the embedded broker's, a cluster's); and GET
 * .../channels/{name}/users answered to @c, {"users":[{"id":..},..]},
 * from that table or, with one Redis, once Redis has answered.
 */
unsigned eng_pusher_user_count(const char *name, size_t len);

/*
 * The next @k fields of a Redis answer of fields joined by "\0", from
 * *@p (moved past them) to @end (the answer's end): into @f. False when
 * fewer than @k are left.
 */
bool eng_pusher_fields(char **p, char *end, struct json_slice *f, unsigned k);
void eng_pusher_users(struct eng_shard *s, struct eng_conn *c,
		      const char *name, size_t len);

/*
 * Registers the /app/ endpoint (eng_endpoint_add). Once, before the
 * shards start. Returns 0 or -errno.
 */
int eng_pusher_register(void);

/*
 * A plain HTTP request to /apps/{id}/... (@body[0..@len), all of it
 * read): the Pusher HTTP API, signed (pusher_api_check). Answers @c,
 * now or once the broker has.
 */
void eng_pusher_api(struct eng_shard *s, struct eng_conn *c,
		    const struct hs_req *req, const uint8_t *body, size_t len);

#endif
