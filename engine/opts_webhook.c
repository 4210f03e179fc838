/* SPDX-License-Identifier: MIT */
/*
 * opts_webhook.c: the webhook options (webhook.h): --pusher-webhook
 * ID=URL and --pusher-webhook-events ID=LIST per Pusher app, --webhook
 * URL with --webhook-secret (or RINGCAST_WEBHOOK_SECRET) and
 * --webhook-events for ringcast's own protocol, and the limits every
 * webhook shares. A URL is checked by libcurl's own parser: http:// or
 * https://, with a host.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "opts_int.h"
#include "pusher_eng.h"
#include "webhook.h"

#define SECRET_MIN	16	/* bytes of --webhook-secret at least */

static struct eng_webhook_cfg *cfg_get(struct eng_cfg *cfg)
{
	struct eng_webhook_cfg *w = cfg->webhook;

	if (w)
		return w;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->events = ENG_WH_NATIVE_ALL;
	w->batch = 100;
	w->window_ms = 100;
	w->queue = 10000;
	w->retries = 5;
	w->backoff_ms = 1000;
	w->timeout_ms = 5000;
	cfg->webhook = w;
	return w;
}

/* Whether @url is an http:// or https:// URL with a host. */
static bool url_ok(const char *url)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL;
	bool ok = false;

	if (strlen(url) >= ENG_WEBHOOK_URL_MAX || strpbrk(url, " \t\r\n"))
		return false;
	u = curl_url();
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		ok = (!strcasecmp(scheme, "http") ||
		      !strcasecmp(scheme, "https")) && *host;
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

/* A number option's value within [@lo, @hi] into *@out. */
static int number(const char *arg, uint64_t lo, uint64_t hi, unsigned *out)
{
	uint64_t v;

	if (opts__u64(arg, &v) < 0 || v < lo || v > hi)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

static int duration(const char *arg, unsigned lo, unsigned hi, unsigned *out)
{
	unsigned v;

	if (opts__dur(arg, &v) < 0 || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "ID=REST": ID 1 to 64 bytes; false when not so. */
static bool id_pair(const char *arg, const char **rest)
{
	const char *eq = strchr(arg, '=');

	if (!eq || eq == arg || eq - arg > PUSHER_ID_MAX)
		return false;
	*rest = eq + 1;
	return true;
}

int eng_webhook_opt(struct eng_cfg *cfg, const char *name, const char *arg,
		    const char **why)
{
	struct eng_webhook_cfg *w = cfg_get(cfg);
	const char *rest;

	*why = "out of memory";
	if (!w)
		return -EINVAL;
	if (!strcmp(name, "pusher-webhook")) {
		*why = "ID=URL, the URL http:// or https://, at most 16";
		if (!id_pair(arg, &rest) || !url_ok(rest) ||
		    w->npusher == ENG_WEBHOOK_MAX)
			return -EINVAL;
		w->pusher[w->npusher++] = arg;
		return 0;
	}
	if (!strcmp(name, "pusher-webhook-events")) {
		*why = "ID=EVENT,... of channel_occupied, channel_vacated, "
		       "member_added, member_removed, client_event, "
		       "subscription_count, cache_miss";
		if (!id_pair(arg, &rest) ||
		    !eng_webhook_filter(rest, ENG_WH_PUSHER_ALL) ||
		    w->nfilter == ENG_WEBHOOK_MAX)
			return -EINVAL;
		w->filter[w->nfilter++] = arg;
		return 0;
	}
	if (!strcmp(name, "webhook")) {
		*why = "an http:// or https:// URL";
		if (!url_ok(arg))
			return -EINVAL;
		w->url = arg;
		return 0;
	}
	if (!strcmp(name, "webhook-secret")) {
		*why = "16 to 255 bytes; `openssl rand -hex 16` makes one";
		if (strlen(arg) < SECRET_MIN || strlen(arg) >= sizeof(w->secret))
			return -EINVAL;
		strcpy(w->secret, arg);
		return 0;
	}
	if (!strcmp(name, "webhook-events")) {
		*why = "EVENT,... of channel_occupied, channel_vacated, "
		       "user_online, user_offline";
		w->events = eng_webhook_filter(arg, ENG_WH_NATIVE_ALL);
		return w->events ? 0 : -EINVAL;
	}
	if (!strcmp(name, "webhook-batch")) {
		*why = "1 to 1000";
		return number(arg, 1, 1000, &w->batch);
	}
	if (!strcmp(name, "webhook-queue")) {
		*why = "1 to 10000000";
		return number(arg, 1, 10000000, &w->queue);
	}
	if (!strcmp(name, "webhook-retries")) {
		*why = "0 to 100";
		return number(arg, 0, 100, &w->retries);
	}
	if (!strcmp(name, "webhook-window")) {
		*why = "0 to 60s";
		return duration(arg, 0, 60000, &w->window_ms);
	}
	if (!strcmp(name, "webhook-backoff")) {
		*why = "10ms to 60s";
		return duration(arg, 10, 60000, &w->backoff_ms);
	}
	*why = "100ms to 120s";		/* webhook-timeout */
	return duration(arg, 100, 120000, &w->timeout_ms);
}

/* Whether "ID=..." @spec names one of @cfg's Pusher apps, else says so. */
static bool app_known(const struct eng_cfg *cfg, const char *opt,
		      const char *spec)
{
	const char *eq = strchr(spec, '=');

	if (cfg->pusher && pusher_app_by_id(&cfg->pusher->apps, spec,
					    (size_t)(eq - spec)))
		return true;
	fprintf(stderr, "ringcast: --%s %.*s=...: no Pusher app has this ID\n",
		opt, (int)(eq - spec), spec);
	return false;
}

int eng_webhook_opts_finish(struct eng_cfg *cfg)
{
	const char *env = getenv("RINGCAST_WEBHOOK_SECRET");
	struct eng_webhook_cfg *w = cfg->webhook;

	if (!w)
		return 0;
	if (env && !w->secret[0]) {
		if (strlen(env) < SECRET_MIN || strlen(env) >= sizeof(w->secret)) {
			fprintf(stderr, "ringcast: RINGCAST_WEBHOOK_SECRET: 16 "
				"to 255 bytes\n");
			return -EINVAL;
		}
		strcpy(w->secret, env);
	}
	for (unsigned i = 0; i < w->npusher; i++)
		if (!app_known(cfg, "pusher-webhook", w->pusher[i]))
			return -EINVAL;
	for (unsigned i = 0; i < w->nfilter; i++)
		if (!app_known(cfg, "pusher-webhook-events", w->filter[i]))
			return -EINVAL;
	if (w->url && !w->secret[0]) {
		fprintf(stderr, "ringcast: --webhook needs --webhook-secret "
			"(or RINGCAST_WEBHOOK_SECRET): its receiver checks "
			"X-Ringcast-Signature with it\n");
		return -EINVAL;
	}
	return 0;
}

void eng_webhook_cfg_free(struct eng_cfg *cfg)
{
	if (!cfg->webhook)
		return;
	OPENSSL_cleanse(cfg->webhook->secret, sizeof(cfg->webhook->secret));
	free(cfg->webhook);
	cfg->webhook = NULL;
}
