/* SPDX-License-Identifier: MIT */
/*
 * webhook.c: the webhook sender (webhook.h). One target per URL: a
 * Pusher app's (--pusher-webhook) or ringcast's own (--webhook), each
 * with a bounded queue of events, already JSON. Callers, on any thread,
 * append under one mutex and signal; the sender thread takes a batch
 * (--webhook-batch events, or fewer once the oldest has waited
 * --webhook-window), POSTs it through libcurl (http:// and https://)
 * without the lock, and on failure or a non-2xx answer sends the same
 * batch again after a backoff doubling from --webhook-backoff, at most
 * --webhook-retries times. A full queue loses its oldest event, counted
 * and logged: a shard never waits for a receiver.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "eng.h"
#include "pusher_eng.h"
#include "webhook.h"

#define BACKOFF_MAX_MS	60000	/* a retry waits at most this */

struct item {
	char *json;		/* one event's object */
	size_t len;
	uint64_t at;		/* ms queued */
};

struct target {
	const struct pusher_app *app;	/* NULL: --webhook */
	char url[ENG_WEBHOOK_URL_MAX];
	unsigned events;		/* ENG_WH_* it takes */
	struct item *q;			/* ring of cfg->queue */
	unsigned head, n;
	struct item *fly;		/* the batch being sent: cfg->batch */
	unsigned nfly, attempts;
	uint64_t due;			/* ms: its next attempt */
	CURL *curl;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running, stopping;
	const struct eng_webhook_cfg *cfg;
	const char *secret;		/* --webhook's */
	const struct pusher_apps *apps;	/* the Pusher apps, or NULL */
	struct target *t;
	unsigned nt;
	uint64_t dropped_logged;	/* the last power of two logged */
} wh = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static atomic_uint_fast64_t n_sent, n_failed, n_retried, n_dropped, n_queued;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Events lost: counted, and logged at the first and each power of two. */
static void lost(unsigned n, const char *why)
{
	uint64_t total = atomic_fetch_add(&n_dropped, n) + n;

	if (total >= 2 * wh.dropped_logged || !wh.dropped_logged) {
		wh.dropped_logged = total;
		fprintf(stderr, "ringcast: webhook: %u event(s) dropped (%s); "
			"%" PRIu64 " so far, /stats webhooks.dropped\n", n, why,
			total);
	}
}

/* Appends @json (taken) to @t's queue, its oldest dropped when full. */
static void enqueue(struct target *t, char *json, size_t len)
{
	unsigned cap = wh.cfg->queue;

	if (t->n == cap) {
		free(t->q[t->head].json);
		t->head = (t->head + 1) % cap;
		t->n--;
		atomic_fetch_sub(&n_queued, 1);
		lost(1, "queue full");
	}
	t->q[(t->head + t->n) % cap] = (struct item){ json, len, now_ms() };
	t->n++;
	atomic_fetch_add(&n_queued, 1);
}

static const char *const names[] = {
	"channel_occupied", "channel_vacated", "member_added",
	"member_removed", "client_event", "subscription_count", "cache_miss",
	"user_online", "user_offline",
};

unsigned eng_webhook_event_bit(const char *name, size_t len)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(*names); i++)
		if (strlen(names[i]) == len && !memcmp(names[i], name, len))
			return 1u << i;
	return 0;
}

unsigned eng_webhook_filter(const char *list, unsigned allowed)
{
	unsigned mask = 0;

	while (*list) {
		const char *comma = strchr(list, ',');
		size_t len = comma ? (size_t)(comma - list) : strlen(list);
		unsigned bit = eng_webhook_event_bit(list, len);

		if (!bit || !(bit & allowed))
			return 0;
		mask |= bit;
		list += len + !!comma;
	}
	return mask;
}

bool eng_webhook_wants(const struct pusher_app *app, unsigned what)
{
	for (unsigned i = 0; i < wh.nt; i++)
		if (wh.t[i].app == app && (wh.t[i].events & what))
			return true;
	return false;
}

/* ,"@key":"@v escaped" at @o; its length (nothing for an absent @v). */
static size_t field(char *o, const char *key, struct json_slice v)
{
	size_t n;

	if (!v.p)
		return 0;
	n = (size_t)sprintf(o, ",\"%s\":", key);
	return n + json_escape(o + n, v.p, v.len);
}

/* Queues @json (@len bytes, copied) for every target of @app taking @bit. */
static void post(const struct pusher_app *app, unsigned bit, const char *json,
		 size_t len)
{
	pthread_mutex_lock(&wh.lock);
	for (unsigned i = 0; i < wh.nt && wh.running; i++) {
		struct target *t = &wh.t[i];
		char *copy;

		if (t->app != app || !(t->events & bit))
			continue;
		copy = malloc(len);
		if (!copy) {
			lost(1, "out of memory");
			continue;
		}
		memcpy(copy, json, len);
		enqueue(t, copy, len);
	}
	pthread_cond_signal(&wh.cond);
	pthread_mutex_unlock(&wh.lock);
}

void eng_webhook_pusher(const struct pusher_app *app,
			const struct eng_webhook_ev *ev)
{
	unsigned bit = eng_webhook_event_bit(ev->name, strlen(ev->name));
	size_t cap = 96 + strlen(ev->name) + json_escape_max(ev->channel.len) +
		     json_escape_max(ev->user_id.len) +
		     json_escape_max(ev->event.len) +
		     json_escape_max(ev->data.len) +
		     json_escape_max(ev->socket_id.len);
	char *o;
	size_t n;

	if (!app || !bit || !eng_webhook_wants(app, bit) || !(o = malloc(cap)))
		return;
	n = (size_t)sprintf(o, "{\"name\":\"%s\"", ev->name);
	n += field(o + n, "channel", ev->channel);
	n += field(o + n, "user_id", ev->user_id);
	n += field(o + n, "event", ev->event);
	if (ev->data_json && ev->data.p) {	/* a JSON string already */
		n += (size_t)sprintf(o + n, ",\"data\":");
		memcpy(o + n, ev->data.p, ev->data.len);
		n += ev->data.len;
	} else {
		n += field(o + n, "data", ev->data);
	}
	n += field(o + n, "socket_id", ev->socket_id);
	if (ev->count >= 0)
		n += (size_t)sprintf(o + n, ",\"subscription_count\":%lld",
				     ev->count);
	o[n++] = '}';
	post(app, bit, o, n);
	free(o);
}

void eng_webhook_pusher_id(const char *id, size_t len,
			   const struct eng_webhook_ev *ev)
{
	if (wh.apps)
		eng_webhook_pusher(pusher_app_by_id(wh.apps, id, len), ev);
}

void eng_webhook_native(const char *name, struct json_slice channel,
			struct json_slice user_id)
{
	unsigned bit = eng_webhook_event_bit(name, strlen(name));
	size_t cap = 64 + strlen(name) + json_escape_max(channel.len) +
		     json_escape_max(user_id.len);
	char *o;
	size_t n;

	if (!bit || !eng_webhook_wants(NULL, bit) || !(o = malloc(cap)))
		return;
	n = (size_t)sprintf(o, "{\"name\":\"%s\"", name);
	n += field(o + n, "channel", channel);
	n += field(o + n, "user_id", user_id);
	o[n++] = '}';
	post(NULL, bit, o, n);
	free(o);
}

/* ---- the sender thread --------------------------------------------------- */

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* {"time_ms":..,"events":[...]} of @t's batch, malloc'd; NULL: no memory. */
static char *body_of(const struct target *t, size_t *len)
{
	size_t cap = 64, n;
	struct timespec ts;
	char *b;

	for (unsigned i = 0; i < t->nfly; i++)
		cap += t->fly[i].len + 1;
	b = malloc(cap);
	if (!b)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = (size_t)sprintf(b, "{\"time_ms\":%lld,\"events\":[",
			    (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	for (unsigned i = 0; i < t->nfly; i++) {
		if (i)
			b[n++] = ',';
		memcpy(b + n, t->fly[i].json, t->fly[i].len);
		n += t->fly[i].len;
	}
	memcpy(b + n, "]}", 2);
	*len = n + 2;
	return b;
}

/* X-Ringcast-Signature: HMAC-SHA256(--webhook-secret, @body) in hex. */
static int native_sign(const char *body, size_t len, char hex[65])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned mlen = 0;

	if (!HMAC(EVP_sha256(), wh.secret, (int)strlen(wh.secret),
		  (const unsigned char *)body, len, mac, &mlen))
		return -ENOMEM;
	for (unsigned i = 0; i < mlen; i++)
		sprintf(hex + 2 * i, "%02x", mac[i]);
	return 0;
}

/* POSTs @t's batch once, without the lock. True: a 2xx answer. */
static bool send_batch(struct target *t)
{
	char h1[64 + PUSHER_KEY_MAX], h2[64 + PUSHER_SIG_HEX];
	struct curl_slist *hs = NULL, *l;
	long status = 0;
	size_t len = 0;
	char *body = body_of(t, &len);
	bool ok = false;

	if (!body)
		return false;
	if (t->app) {
		char hex[PUSHER_SIG_HEX + 1] = { 0 };

		if (pusher_webhook_sign(t->app, body, len, hex) < 0)
			goto out;
		snprintf(h1, sizeof(h1), "X-Pusher-Key: %s", t->app->key);
		snprintf(h2, sizeof(h2), "X-Pusher-Signature: %s", hex);
	} else {
		char hex[65];

		if (native_sign(body, len, hex) < 0)
			goto out;
		snprintf(h1, sizeof(h1), "User-Agent: ringcast");
		snprintf(h2, sizeof(h2), "X-Ringcast-Signature: %s", hex);
	}
	hs = curl_slist_append(hs, "Content-Type: application/json");
	if (hs && (l = curl_slist_append(hs, h1)))
		hs = l;
	if (hs && (l = curl_slist_append(hs, h2)))
		hs = l;
	if (!hs)
		goto out;
	curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(t->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(t->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	if (curl_easy_perform(t->curl) == CURLE_OK &&
	    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status) ==
	    CURLE_OK)
		ok = status >= 200 && status < 300;
out:
	curl_slist_free_all(hs);
	free(body);
	return ok;
}

static void fly_free(struct target *t)
{
	for (unsigned i = 0; i < t->nfly; i++)
		free(t->fly[i].json);
	atomic_fetch_sub(&n_queued, t->nfly);
	t->nfly = 0;
	t->attempts = 0;
}

/* With the lock: @t's next batch taken when it is due; whether one is. */
static bool take(struct target *t, uint64_t now, uint64_t *next)
{
	const struct eng_webhook_cfg *cfg = wh.cfg;
	uint64_t ready;

	if (t->nfly) {
		if (t->due <= now || wh.stopping)
			return true;
		*next = t->due < *next ? t->due : *next;
		return false;
	}
	if (!t->n)
		return false;
	ready = t->q[t->head].at + cfg->window_ms;
	if (t->n < cfg->batch && ready > now && !wh.stopping) {
		*next = ready < *next ? ready : *next;
		return false;
	}
	while (t->nfly < cfg->batch && t->n) {
		t->fly[t->nfly++] = t->q[t->head];
		t->head = (t->head + 1) % cfg->queue;
		t->n--;
	}
	t->attempts = 0;
	return true;
}

/* With the lock: @t's batch answered @ok on attempt t->attempts. */
static void settle(struct target *t, bool ok, uint64_t now)
{
	const struct eng_webhook_cfg *cfg = wh.cfg;
	uint64_t wait;

	if (ok) {
		atomic_fetch_add(&n_sent, t->nfly);
		fly_free(t);
		return;
	}
	atomic_fetch_add(&n_failed, 1);
	if (wh.stopping) {	/* one try at the stop: the rest would wait too */
		unsigned n = t->nfly + t->n;

		fly_free(t);
		for (; t->n; t->n--, t->head = (t->head + 1) % cfg->queue) {
			free(t->q[t->head].json);
			atomic_fetch_sub(&n_queued, 1);
		}
		lost(n, "stopping, the receiver failing");
		return;
	}
	if (t->attempts >= cfg->retries) {
		unsigned n = t->nfly;

		fly_free(t);
		lost(n, "retries spent");
		return;
	}
	wait = (uint64_t)cfg->backoff_ms << (t->attempts < 16 ? t->attempts : 16);
	t->due = now + (wait < BACKOFF_MAX_MS ? wait : BACKOFF_MAX_MS);
	t->attempts++;
	atomic_fetch_add(&n_retried, 1);
}

static void *run(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&wh.lock);
	for (;;) {
		uint64_t now = now_ms(), next = now + 1000;
		bool any = false, busy = false;

		for (unsigned i = 0; i < wh.nt; i++) {
			struct target *t = &wh.t[i];
			bool ok;

			if (!take(t, now, &next))
				continue;
			any = true;
			pthread_mutex_unlock(&wh.lock);
			ok = send_batch(t);
			pthread_mutex_lock(&wh.lock);
			now = now_ms();
			settle(t, ok, now);
		}
		for (unsigned i = 0; i < wh.nt; i++)
			busy |= wh.t[i].n || wh.t[i].nfly;
		if (wh.stopping && !busy)
			break;
		if (!any) {
			struct timespec ts;
			uint64_t wait = next > now ? next - now : 0;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += (time_t)(wait / 1000);
			ts.tv_nsec += (long)(wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&wh.cond, &wh.lock, &ts);
		}
	}
	pthread_mutex_unlock(&wh.lock);
	return NULL;
}

static int target_init(struct target *t, const struct pusher_app *app,
		       const char *url, size_t len, unsigned events)
{
	const struct eng_webhook_cfg *cfg = wh.cfg;

	t->app = app;
	memcpy(t->url, url, len);
	t->url[len] = '\0';
	t->events = events;
	t->q = calloc(cfg->queue, sizeof(*t->q));
	t->fly = calloc(cfg->batch, sizeof(*t->fly));
	t->curl = curl_easy_init();
	if (!t->q || !t->fly || !t->curl)
		return -ENOMEM;
	curl_easy_setopt(t->curl, CURLOPT_URL, t->url);
	curl_easy_setopt(t->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(t->curl, CURLOPT_TIMEOUT_MS, (long)cfg->timeout_ms);
	curl_easy_setopt(t->curl, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)cfg->timeout_ms);
	curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(t->curl, CURLOPT_USERAGENT, "ringcast");
	return 0;
}

/* The filter of app @id: ENG_WH_PUSHER_ALL unless a --pusher-webhook-events. */
static unsigned filter_of(const struct eng_webhook_cfg *cfg, const char *id,
			  size_t len)
{
	for (unsigned i = 0; i < cfg->nfilter; i++) {
		const char *f = cfg->filter[i], *eq = strchr(f, '=');

		if (eq && (size_t)(eq - f) == len && !memcmp(f, id, len))
			return eng_webhook_filter(eq + 1, ENG_WH_PUSHER_ALL);
	}
	return ENG_WH_PUSHER_ALL;
}

/*
 * @c waits by CLOCK_MONOTONIC, as run() computes its deadlines: by the
 * default CLOCK_REALTIME they would all be long past, and the thread
 * would spin on the lock the shards take to queue.
 */
static int cond_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t a;
	int ret = pthread_condattr_init(&a);

	if (ret)
		return -ret;
	ret = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	if (!ret) {
		pthread_cond_destroy(c);
		ret = pthread_cond_init(c, &a);
	}
	pthread_condattr_destroy(&a);
	return -ret;
}

int eng_webhook_start(struct eng *e)
{
	const struct eng_webhook_cfg *cfg = e->cfg.webhook;
	const struct eng_pusher_cfg *pc = e->cfg.pusher;
	unsigned n;
	int ret;

	if (!cfg || (!cfg->npusher && !cfg->url))
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	ret = cond_monotonic(&wh.cond);
	if (ret < 0)
		return ret;
	n = cfg->npusher + !!cfg->url;
	wh.cfg = cfg;
	wh.secret = cfg->secret;
	wh.apps = pc ? &pc->apps : NULL;
	wh.t = calloc(n, sizeof(*wh.t));
	if (!wh.t)
		return -ENOMEM;
	for (unsigned i = 0; i < cfg->npusher; i++) {
		const char *s = cfg->pusher[i], *eq = strchr(s, '=');
		const struct pusher_app *app = pc ? pusher_app_by_id(&pc->apps,
			s, (size_t)(eq - s)) : NULL;

		ret = target_init(&wh.t[wh.nt++], app, eq + 1, strlen(eq + 1),
				  filter_of(cfg, s, (size_t)(eq - s)));
		if (ret < 0)
			return ret;
	}
	if (cfg->url) {
		ret = target_init(&wh.t[wh.nt++], NULL, cfg->url,
				  strlen(cfg->url), cfg->events);
		if (ret < 0)
			return ret;
	}
	wh.running = true;
	ret = -pthread_create(&wh.thread, NULL, run, NULL);
	if (ret < 0)
		wh.running = false;
	return ret;
}

void eng_webhook_stop(void)
{
	if (!wh.t)
		return;
	pthread_mutex_lock(&wh.lock);
	wh.stopping = true;
	pthread_cond_signal(&wh.cond);
	pthread_mutex_unlock(&wh.lock);
	if (wh.running)
		pthread_join(wh.thread, NULL);
	pthread_mutex_lock(&wh.lock);
	wh.running = false;
	for (unsigned i = 0; i < wh.nt; i++) {
		struct target *t = &wh.t[i];

		fly_free(t);
		for (; t->n; t->n--, t->head = (t->head + 1) % wh.cfg->queue)
			free(t->q[t->head].json);
		free(t->q);
		free(t->fly);
		curl_easy_cleanup(t->curl);
	}
	free(wh.t);
	wh.t = NULL;
	wh.nt = 0;
	pthread_mutex_unlock(&wh.lock);
	curl_global_cleanup();
}

void eng_webhook_stats(struct eng_webhook_stats *out)
{
	out->sent = atomic_load(&n_sent);
	out->failed = atomic_load(&n_failed);
	out->retried = atomic_load(&n_retried);
	out->dropped = atomic_load(&n_dropped);
	out->queued = atomic_load(&n_queued);
}

size_t eng_webhook_stats_json(char *out, size_t cap)
{
	struct eng_webhook_stats w;
	int n;

	eng_webhook_stats(&w);
	n = snprintf(out, cap, "{\"sent\":%llu,\"failed\":%llu,"
		     "\"retried\":%llu,\"dropped\":%llu,\"queued\":%llu}",
		     (unsigned long long)w.sent, (unsigned long long)w.failed,
		     (unsigned long long)w.retried,
		     (unsigned long long)w.dropped,
		     (unsigned long long)w.queued);
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap;
}
