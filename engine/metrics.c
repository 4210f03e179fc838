/* SPDX-License-Identifier: MIT */
/*
 * metrics.c: GET /metrics, the text exposition format 0.0.4 that
 * Prometheus scrapes. Every figure is read with relaxed loads from the
 * shards' own counters (eng_stats), so a scrape takes no lock and costs
 * the connections nothing. Label values are shard numbers and mail kinds
 * only: never a channel's or a user's name, so the series are bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bridge.h"
#include "broker.h"
#include "buf.h"
#include "conn.h"
#include "lat.h"
#include "webhook.h"
#include "mail.h"
#include "metrics.h"
#include "pub.h"
#include "tlsio.h"

/* The response being written: grows, or remembers it could not. */
struct text {
	char *p;
	size_t len, cap;
	bool oom;
};

static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if ((size_t)n < t->cap - t->len)
			break;
		{
			size_t cap = (t->cap + (size_t)n) * 2;
			char *p = eng_realloc(t->p, cap);

			if (!p) {
				t->oom = true;
				return;
			}
			t->p = p;
			t->cap = cap;
		}
	}
	t->len += (size_t)n;
}

static void head(struct text *t, const char *name, const char *type,
		 const char *help)
{
	put(t, "# HELP ringcast_%s %s\n# TYPE ringcast_%s %s\n", name, help,
	    name, type);
}

#define SHARD_STAT(sh, f) \
	((unsigned long long)atomic_load_explicit(&(sh)->stats.f, \
						  memory_order_relaxed))

/* One per-shard series of eng_stats field @f. */
#define PER_SHARD(t, e, name, type, help, f) do {			\
	head(t, name, type, help);					\
	for (unsigned i_ = 0; i_ < (e)->cfg.shards; i_++)		\
		put(t, "ringcast_%s{shard=\"%u\"} %llu\n", name, i_,	\
		    SHARD_STAT(&(e)->shards[i_], f));			\
} while (0)

/* One series, the sum over the shards of field @f. */
#define TOTAL(t, e, name, type, help, f) do {				\
	unsigned long long v_ = 0;					\
	for (unsigned i_ = 0; i_ < (e)->cfg.shards; i_++)		\
		v_ += SHARD_STAT(&(e)->shards[i_], f);			\
	head(t, name, type, help);					\
	put(t, "ringcast_%s %llu\n", name, v_);				\
} while (0)

static void connections(struct text *t, struct eng *e)
{
	head(t, "connections", "gauge",
	     "Connections open now: websocket (upgraded, on /ws or /echo) "
	     "or http (anything else, handshakes included).");
	for (unsigned i = 0; i < e->cfg.shards; i++) {
		struct eng_shard *sh = &e->shards[i];
		unsigned long long all = SHARD_STAT(sh, conns);
		unsigned long long ws = __atomic_load_n(&sh->nr_push,
							__ATOMIC_RELAXED);

		if (ws > all)
			ws = all;	/* two reads, not one snapshot */
		put(t, "ringcast_connections{shard=\"%u\",state=\"websocket\"} "
		    "%llu\n", i, ws);
		put(t, "ringcast_connections{shard=\"%u\",state=\"http\"} "
		    "%llu\n", i, all - ws);
	}
	PER_SHARD(t, e, "accepted_total", "counter",
		  "TCP connections accepted.", accepted);
	PER_SHARD(t, e, "closed_total", "counter",
		  "Connections closed, for any reason.", closed);
	PER_SHARD(t, e, "handshakes_total", "counter",
		  "WebSocket upgrades completed.", upgraded);
	PER_SHARD(t, e, "rejected_total", "counter",
		  "Connections refused over --max-conns.", rejected);
	TOTAL(t, e, "auth_failed_total", "counter",
	      "Upgrades refused with 401 (token missing or invalid).",
	      auth_failed);
	TOTAL(t, e, "key_failed_total", "counter",
	      "Wrong API keys, over HTTP (401) and in the /ws sys command.",
	      key_failed);
	TOTAL(t, e, "user_refused_total", "counter",
	      "Upgrades refused over --max-conns-per-user (429).",
	      user_refused);
	TOTAL(t, e, "kicked_total", "counter",
	      "Connections closed by a user disconnect.", kicked);
	TOTAL(t, e, "protocol_errors_total", "counter",
	      "Connections failed for breaking RFC 6455.", proto_errors);
	TOTAL(t, e, "timeouts_total", "counter",
	      "Handshake and idle timeouts.", timeouts);
}

static void traffic(struct text *t, struct eng *e)
{
	PER_SHARD(t, e, "subscriptions", "gauge",
		  "Connection-channel subscriptions now.", subscriptions);
	PER_SHARD(t, e, "channels", "gauge",
		  "Channels with a subscriber, owned (sequenced) by the shard.",
		  chans_owned);
	PER_SHARD(t, e, "messages_received_total", "counter",
		  "WebSocket messages received from clients.", msgs_in);
	PER_SHARD(t, e, "published_total", "counter",
		  "Messages sequenced by the shard as their channel's owner.",
		  published);
	PER_SHARD(t, e, "delivered_total", "counter",
		  "Push frames queued to subscribers.", delivered);
	PER_SHARD(t, e, "frames_total", "counter",
		  "Frames queued to clients (pushes, replies, pongs).",
		  frames_out);
	PER_SHARD(t, e, "sends_total", "counter",
		  "Send operations; frames_total / sends_total is the frames "
		  "per send.", sends);
	PER_SHARD(t, e, "received_bytes_total", "counter",
		  "Bytes read from client sockets.", bytes_in);
	PER_SHARD(t, e, "sent_bytes_total", "counter",
		  "Bytes written to client sockets.", bytes_out);
	TOTAL(t, e, "dropped_total", "counter",
	      "Frames discarded because their connection was a slow "
	      "consumer.", dropped);
	TOTAL(t, e, "slow_consumer_closes_total", "counter",
	      "Connections closed with 1008 over --max-pending-bytes.",
	      slow_closed);
	TOTAL(t, e, "partial_bytes", "gauge",
	      "Bytes of unfinished client messages held.", partial_bytes);
	TOTAL(t, e, "partial_closes_total", "counter",
	      "Connections closed with 1009 over --max-partial-memory.",
	      partial_closed);
}

static void users(struct text *t, struct eng *e)
{
	TOTAL(t, e, "users", "gauge",
	      "Users with a connection on this node.", users_owned);
	TOTAL(t, e, "user_connections", "gauge",
	      "Those users' connections.", user_conns);
	TOTAL(t, e, "inbox_messages", "gauge",
	      "Users' kept messages not yet acked (embedded broker).",
	      inbox_msgs);
	TOTAL(t, e, "inbox_evicted_total", "counter",
	      "Inbox messages dropped by --inbox-max.", inbox_evicted);
	TOTAL(t, e, "inbox_expired_total", "counter",
	      "Inbox messages dropped by --inbox-ttl.", inbox_expired);
	TOTAL(t, e, "inbox_memory_evicted_total", "counter",
	      "Inbox messages dropped early by --inbox-memory.",
	      inbox_mem_evicted);
	TOTAL(t, e, "inbox_bytes", "gauge",
	      "Bytes held by users' inboxes (embedded broker).", inbox_bytes);
	TOTAL(t, e, "history_bytes", "gauge",
	      "Bytes held by channel histories (embedded broker).",
	      hist_bytes);
	TOTAL(t, e, "history_messages", "gauge",
	      "Messages held by channel histories.", hist_msgs);
	TOTAL(t, e, "history_evicted_total", "counter",
	      "History messages dropped early by --history-memory.",
	      hist_evicted);
}

static void deflate(struct text *t, struct eng *e)
{
	TOTAL(t, e, "deflate_connections", "gauge",
	      "Open connections that negotiated permessage-deflate.",
	      deflate_conns);
	PER_SHARD(t, e, "deflate_calls_total", "counter",
		  "Messages compressed: once per publication, whatever the "
		  "receivers.", deflate_calls);
	PER_SHARD(t, e, "deflate_in_bytes_total", "counter",
		  "Bytes those compressions took in.", deflate_in);
	PER_SHARD(t, e, "deflate_out_bytes_total", "counter",
		  "Bytes they gave (a message not made smaller counts as "
		  "it was).", deflate_out);
	TOTAL(t, e, "deflate_sent_compressed_total", "counter",
	      "Messages sent compressed to connections that negotiated.",
	      sent_deflated);
	TOTAL(t, e, "deflate_sent_plain_total", "counter",
	      "Messages sent plain to them (short, or not smaller).",
	      sent_plain);
	TOTAL(t, e, "inflated_total", "counter",
	      "Compressed client messages inflated.", inflated);
}

static void mail(struct text *t, struct eng *e)
{
	static const char *const what[2] = { "failed", "retried" };

	TOTAL(t, e, "mailbox_errors_total", "counter",
	      "Posts between threads that failed (should stay 0).",
	      mbox_errors);
	for (int pass = 0; pass < 2; pass++) {
		char name[32];

		snprintf(name, sizeof(name), "mail_%s_total", what[pass]);
		head(t, name, "counter", pass ?
		     "Mail between threads posted again after a failure." :
		     "Mail between threads whose post failed.");
		for (unsigned op = 0; op < ENG_OP_MAX; op++) {
			const char *kind;
			uint64_t n[2];

			if (eng_mail_counts(op, &kind, &n[0], &n[1]))
				put(t, "ringcast_%s{kind=\"%s\"} %llu\n", name,
				    kind, (unsigned long long)n[pass]);
		}
	}
}

static void redis(struct text *t, struct eng *e)
{
	struct eng_bridge_figs f;
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} rows[] = {
#define ROW(n, ty, h, m) { n, ty, h, offsetof(struct eng_bridge_figs, m) }
		ROW("redis_reconnects_total", "counter",
		    "Redis connection attempts after a loss.", reconnects),
		ROW("redis_messages_total", "counter",
		    "Messages received from Redis.", messages),
		ROW("redis_publishes_total", "counter",
		    "Publishes sent to Redis.", publishes),
		ROW("redis_channels", "gauge",
		    "Channels this node is subscribed to in Redis.", channels),
		ROW("redis_error_replies_total", "counter",
		    "Requests Redis answered with an error.", errors),
		ROW("redis_pending_bytes", "gauge",
		    "Bytes of requests awaiting Redis.", pending),
		ROW("redis_over_budget_total", "counter",
		    "Publishes refused over --redis-max-pending.", refused),
		ROW("redis_history_fills_total", "counter",
		    "History reads of messages the subscriber link missed.",
		    fills),
		ROW("redis_history_gaps_total", "counter",
		    "Such reads that found the messages gone.", gaps),
		ROW("redis_reading_bytes", "gauge",
		    "History and inbox read bytes in flight to Redis.",
		    reading),
		ROW("redis_reads_refused_total", "counter",
		    "Reads refused over --redis-max-reading.", reads_refused),
#undef ROW
	};

	if (!eng_broker_figures(e, &f))
		return;
	head(t, "redis_up", "gauge",
	     "1 while both Redis links are up, else 0.");
	put(t, "ringcast_redis_up %d\n", f.up ? 1 : 0);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint64_t v;

		memcpy(&v, (const char *)&f + rows[i].off, sizeof(v));
		head(t, rows[i].name, rows[i].type, rows[i].help);
		put(t, "ringcast_%s %llu\n", rows[i].name,
		    (unsigned long long)v);
	}
	if (!f.cluster)
		return;
	head(t, "redis_cluster_masters", "gauge",
	     "Cluster masters serving slots (state=linked: both links up).");
	put(t, "ringcast_redis_cluster_masters{state=\"serving\"} %u\n",
	    f.masters);
	put(t, "ringcast_redis_cluster_masters{state=\"linked\"} %u\n",
	    f.masters_up);
	head(t, "redis_cluster_moved_total", "counter",
	     "MOVED and ASK replies followed.");
	put(t, "ringcast_redis_cluster_moved_total %llu\n",
	    (unsigned long long)f.moved);
	head(t, "redis_cluster_slot_maps_total", "counter",
	     "Slot maps read (CLUSTER SLOTS).");
	put(t, "ringcast_redis_cluster_slot_maps_total %llu\n",
	    (unsigned long long)f.maps);
	head(t, "redis_cluster_resubscribes_total", "counter",
	     "Channels delivered again from their slot's master after "
	     "losing the subscription that delivered them.");
	put(t, "ringcast_redis_cluster_resubscribes_total %llu\n",
	    (unsigned long long)f.resubscribes);
	head(t, "redis_cluster_takeovers_total", "counter",
	     "Channels whose standby subscription on a replica took over "
	     "delivery.");
	put(t, "ringcast_redis_cluster_takeovers_total %llu\n",
	    (unsigned long long)f.takeovers);
}

/* A family of one series without labels. */
static void single(struct text *t, const char *name, const char *type,
		   const char *help, uint64_t v)
{
	head(t, name, type, help);
	put(t, "ringcast_%s %llu\n", name, (unsigned long long)v);
}

/* With --tls-cert: the shards' TLS figures (tlsio.h), summed. */
static void tls(struct text *t, struct eng *e)
{
	struct eng_tls_totals v;

	if (!e->tls_ctx)
		return;
	eng_tls_sum(e, &v);
	single(t, "tls_connections", "gauge",
	       "TLS connections past their handshake.", v.conns);
	single(t, "tls_handshakes_total", "counter",
	       "TLS handshakes completed.", v.done);
	single(t, "tls_state_bytes", "gauge", "Memory held by TLS state.",
	       v.state_bytes);
	single(t, "tls_alerts_total", "counter",
	       "Fatal alerts sent for bad records, then closed.", v.alerts);
	head(t, "tls_handshake_failures_total", "counter",
	     "TLS handshakes that did not finish, by reason.");
	for (unsigned k = 0; k < ENG_TLS_FAIL_MAX; k++)
		put(t, "ringcast_tls_handshake_failures_total{reason=\"%s\"} "
		    "%llu\n", eng_tls_fail_names[k],
		    (unsigned long long)v.failed[k]);
}

/* With a webhook: the sender's counters (webhook.h). */
static void webhooks(struct text *t, struct eng *e)
{
	struct eng_webhook_stats v;

	if (!e->cfg.webhook)
		return;
	eng_webhook_stats(&v);
	single(t, "webhook_events_sent_total", "counter",
	       "Webhook events a receiver took (a 2xx answer).", v.sent);
	single(t, "webhook_requests_failed_total", "counter",
	       "Webhook requests that failed or got no 2xx answer.", v.failed);
	single(t, "webhook_requests_retried_total", "counter",
	       "Webhook requests sent again after a failure.", v.retried);
	single(t, "webhook_events_dropped_total", "counter",
	       "Webhook events lost: queue full or retries spent.", v.dropped);
	single(t, "webhook_events_queued", "gauge",
	       "Webhook events waiting, in flight included.", v.queued);
}

static void latency(struct text *t, struct eng *e)
{
	unsigned long long cum = 0, sum = 0;

	head(t, "delivery_latency_seconds", "histogram",
	     "Publish sequenced to its send completed, sampled (one publish "
	     "in 16, one connection slot in 16).");
	for (unsigned b = 0; b <= ENG_LAT_BUCKETS; b++) {
		for (unsigned i = 0; i < e->cfg.shards; i++)
			cum += SHARD_STAT(&e->shards[i], lat[b]);
		if (b < ENG_LAT_BUCKETS)
			put(t, "ringcast_delivery_latency_seconds_bucket"
			    "{le=\"%g\"} %llu\n", eng_lat_bounds[b] / 1e6, cum);
		else
			put(t, "ringcast_delivery_latency_seconds_bucket"
			    "{le=\"+Inf\"} %llu\n", cum);
	}
	for (unsigned i = 0; i < e->cfg.shards; i++)
		sum += SHARD_STAT(&e->shards[i], lat_sum_us);
	/* the count is the +Inf bucket's, as the format wants it */
	put(t, "ringcast_delivery_latency_seconds_sum %.6f\n", sum / 1e6);
	put(t, "ringcast_delivery_latency_seconds_count %llu\n", cum);
}

void eng_metrics_reply(struct eng_shard *s, struct eng_conn *c)
{
	static const char type[] = "text/plain; version=0.0.4; charset=utf-8";
	struct eng *e = s->eng;
	struct text t = { .cap = 16384 + (size_t)e->cfg.shards * 2048 };

	t.p = eng_malloc(t.cap);
	if (!t.p) {
		eng_conn_http_reply(s, c, 503, NULL, NULL, "", 0);
		return;
	}
	head(&t, "shards", "gauge", "Shards (threads, one ring each).");
	put(&t, "ringcast_shards %u\n", e->cfg.shards);
	connections(&t, e);
	traffic(&t, e);
	users(&t, e);
	deflate(&t, e);
	mail(&t, e);
	redis(&t, e);
	tls(&t, e);
	webhooks(&t, e);
	latency(&t, e);
	head(&t, "frames_live", "gauge",
	     "Push frames still referenced by some queue.");
	put(&t, "ringcast_frames_live %llu\n",
	    (unsigned long long)eng_frames_live());
	head(&t, "arena_bytes", "gauge", "Shared frame arena in use.");
	put(&t, "ringcast_arena_bytes %zu\n", eng_arena_used());
	if (t.oom)
		eng_conn_http_reply(s, c, 503, NULL, NULL, "", 0);
	else
		eng_conn_http_reply(s, c, 200, NULL, type, t.p, t.len);
	eng_free(t.p);
}

void eng_metrics_sys(struct eng_shard *s)
{
	struct eng *e = s->eng;
	struct text t = { .cap = 512 + (size_t)e->cfg.shards * 192 };
	struct eng_bridge_figs r = { .up = false };
	struct timespec now;
	struct eng_buf *f;
	bool redis;

	if (!atomic_load_explicit(&e->sys_subs, memory_order_relaxed))
		return;		/* nobody would read them */
	t.p = eng_malloc(t.cap);
	if (!t.p)
		return;		/* a second without figures */
	redis = eng_broker_figures(e, &r);
	clock_gettime(CLOCK_REALTIME, &now);
	put(&t, "{\"t\":%lld,\"uptime\":%u,\"redis\":%s,\"shards\":[",
	    (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000,
	    s->tick / (1000 / ENG_TICK_MS),
	    !redis ? "null" : r.up ? "\"up\"" : "\"down\"");
	for (unsigned i = 0; i < e->cfg.shards; i++) {
		struct eng_shard *sh = &e->shards[i];

		put(&t, "%s{\"conns\":%llu,\"ws\":%u,\"subs\":%llu,"
		    "\"in\":%llu,\"published\":%llu,\"delivered\":%llu,"
		    "\"bytes_out\":%llu,\"slow\":%llu}", i ? "," : "",
		    SHARD_STAT(sh, conns),
		    __atomic_load_n(&sh->nr_push, __ATOMIC_RELAXED),
		    SHARD_STAT(sh, subscriptions), SHARD_STAT(sh, msgs_in),
		    SHARD_STAT(sh, published), SHARD_STAT(sh, delivered),
		    SHARD_STAT(sh, bytes_out), SHARD_STAT(sh, slow_closed));
	}
	put(&t, "]");
	if (e->tls_ctx) {
		/* the status page's TLS figures; 512 bytes hold the object */
		char tls[512];
		size_t n = eng_tls_stats(e, tls, sizeof(tls));

		put(&t, ",\"tls\":%.*s", (int)n, tls);
	}
	put(&t, "}");
	if (!t.oom) {
		f = eng_pub_frame(ENG_SYS_CHANNEL, sizeof(ENG_SYS_CHANNEL) - 1,
				  (const uint8_t *)t.p, t.len, true);
		if (f) {
			f->flags |= ENG_BUF_F_SYS;
			eng_pub_inject(&s->mail, f);
		}
	}
	eng_free(t.p);
}
