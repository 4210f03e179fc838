/* SPDX-License-Identifier: MIT */
/*
 * webhook: events a server application asks to hear, POSTed to its URL
 * in batches (webhook.c), off the shards: a caller queues an event under
 * a mutex and returns; one thread of the module's own gathers, signs,
 * sends and retries. For Pusher apps (--pusher-webhook ID=URL) the body
 * and headers are Pusher's (docs/PUSHER.md), for ringcast's own /ws
 * protocol (--webhook URL) the same body with X-Ringcast-Signature.
 * At least once: an event is dropped only when its queue is full (the
 * oldest goes) or its retries are spent, each counted and logged.
 */
#ifndef RC_ENGINE_WEBHOOK_H
#define RC_ENGINE_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

struct eng;
struct eng_cfg;
struct pusher_app;

#define ENG_WEBHOOK_MAX		16	/* --pusher-webhook (and filters) given */
#define ENG_WEBHOOK_URL_MAX	2048	/* bytes of a URL */

/* The events a filter names (--pusher-webhook-events, --webhook-events). */
enum {
	ENG_WH_OCCUPIED = 1u << 0,	/* channel_occupied */
	ENG_WH_VACATED = 1u << 1,	/* channel_vacated */
	ENG_WH_MEMBER_ADDED = 1u << 2,	/* member_added (Pusher) */
	ENG_WH_MEMBER_REMOVED = 1u << 3,	/* member_removed (Pusher) */
	ENG_WH_CLIENT_EVENT = 1u << 4,	/* client_event (Pusher) */
	ENG_WH_SUB_COUNT = 1u << 5,	/* subscription_count (Pusher) */
	ENG_WH_CACHE_MISS = 1u << 6,	/* cache_miss (Pusher) */
	ENG_WH_USER_ONLINE = 1u << 7,	/* user_online (/ws) */
	ENG_WH_USER_OFFLINE = 1u << 8,	/* user_offline (/ws) */
};
#define ENG_WH_PUSHER_ALL	0x7fu
#define ENG_WH_NATIVE_ALL	(ENG_WH_OCCUPIED | ENG_WH_VACATED | \
				 ENG_WH_USER_ONLINE | ENG_WH_USER_OFFLINE)

/*
 * The ENG_WH_* bit of event @name[0..@len), or 0 for none.
 * eng_webhook_filter(): the bits of comma list @list, each among
 * @allowed; 0 when one is not (or @list is empty).
 */
unsigned eng_webhook_event_bit(const char *name, size_t len);
unsigned eng_webhook_filter(const char *list, unsigned allowed);

/* What the webhook options configure (opts_webhook.c). */
struct eng_webhook_cfg {
	const char *pusher[ENG_WEBHOOK_MAX];	/* "ID=URL", argv's */
	const char *filter[ENG_WEBHOOK_MAX];	/* "ID=LIST", argv's */
	unsigned npusher, nfilter;
	const char *url;		/* --webhook, argv's; NULL: none */
	char secret[256];		/* --webhook-secret, wiped when freed */
	unsigned events;		/* --webhook-events: ENG_WH_* */
	unsigned batch;			/* events a request carries at most */
	unsigned window_ms;		/* an event waits this for company */
	unsigned queue;			/* events queued a URL at most */
	unsigned retries;		/* attempts after the first */
	unsigned backoff_ms;		/* before the first retry, then doubled */
	unsigned timeout_ms;		/* a request's whole deadline */
};

/*
 * A webhook option @name (without "--") with its @arg, into cfg->webhook
 * (allocated at the first, with the defaults). Returns 0, or -EINVAL
 * with *@why a static message naming what is expected (never the
 * secret). eng_webhook_opts_finish(), after the command line: the
 * RINGCAST_WEBHOOK_SECRET variable, each ID checked against the Pusher
 * apps, --webhook's secret required; -EINVAL after saying on stderr what
 * is wrong. eng_webhook_cfg_free(): the secret wiped; safe without one.
 */
int eng_webhook_opt(struct eng_cfg *cfg, const char *name, const char *arg,
		    const char **why);
int eng_webhook_opts_finish(struct eng_cfg *cfg);
void eng_webhook_cfg_free(struct eng_cfg *cfg);

/*
 * Starts the sender thread when any webhook is configured (after the
 * options, before the shards). Returns 0 or -errno. eng_webhook_stop():
 * what is queued gets one more attempt each (within the timeout), then
 * the thread ends; safe when none was started.
 */
int eng_webhook_start(struct eng *e);
void eng_webhook_stop(void);

/* One event of a Pusher app; a slice with .p NULL is left out. */
struct eng_webhook_ev {
	const char *name;		/* "channel_occupied", ... (Pusher's) */
	struct json_slice channel;	/* Pusher's name */
	struct json_slice user_id;	/* member_*, client_event on presence */
	struct json_slice event;	/* client_event: the event's name */
	struct json_slice data;		/* client_event: its data, as a string */
	bool data_json;			/* ... given as a JSON string literal */
	struct json_slice socket_id;	/* client_event: the sender's */
	long long count;		/* subscription_count; < 0: none */
};

/*
 * Queues @ev for every --pusher-webhook of app @app whose filter takes
 * it; returns at once (no I/O, a mutex held for a copy). Any thread. The
 * caller has judged that this node is the one to send it (docs/PUSHER.md:
 * the cross-node rules). Other helpers call it too: a cache channel's
 * miss is eng_webhook_pusher(app, &(struct eng_webhook_ev){ .name =
 * "cache_miss", .channel = ch, .count = -1 }).
 */
void eng_webhook_pusher(const struct pusher_app *app,
			const struct eng_webhook_ev *ev);

/*
 * As eng_webhook_pusher(), for the app whose id is @id[0..@len) (Redis's
 * records name apps by id); nothing when no app has it.
 */
void eng_webhook_pusher_id(const char *id, size_t len,
			   const struct eng_webhook_ev *ev);

/*
 * Whether app @app (or, with @app NULL, --webhook) has a webhook taking
 * event @what (ENG_WH_*): a caller skips building events nobody wants.
 */
bool eng_webhook_wants(const struct pusher_app *app, unsigned what);

/*
 * An event of ringcast's own protocol for --webhook: @name
 * ("channel_occupied", "user_online", ...) with "channel" @channel or
 * "user_id" @user_id (whichever .p is set). Returns at once.
 */
void eng_webhook_native(const char *name, struct json_slice channel,
			struct json_slice user_id);

/* The counters /stats and /metrics show. */
struct eng_webhook_stats {
	uint64_t sent;		/* events delivered (a 2xx answer) */
	uint64_t failed;	/* requests that failed or got no 2xx */
	uint64_t retried;	/* requests sent again */
	uint64_t dropped;	/* events lost: queue full, retries spent */
	uint64_t queued;	/* events waiting now, in flight included */
};
void eng_webhook_stats(struct eng_webhook_stats *out);

/* The same as /stats' JSON object into @out; its length (cut at @cap). */
size_t eng_webhook_stats_json(char *out, size_t cap);

#endif
