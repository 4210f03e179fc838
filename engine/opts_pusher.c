/* SPDX-License-Identifier: MIT */
/*
 * opts_pusher.c: the Pusher apps (pusher_eng.h) from --pusher-app,
 * RINGCAST_PUSHER_APPS and --pusher-apps-file, read by proto/pusher.c's
 * parser, the per-app options (--pusher-client-events and the like) and
 * the keep-alive's durations. An error names the field and where
 * it came from, never the spec: it holds a secret.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "opts_int.h"
#include "pusher_eng.h"

#define APPS_FILE_MAX	(1u << 20)	/* bytes of an apps file */

static struct eng_pusher_cfg *cfg_get(struct eng_cfg *cfg)
{
	if (!cfg->pusher) {
		cfg->pusher = calloc(1, sizeof(*cfg->pusher));
		if (cfg->pusher)
			pusher_apps_init(&cfg->pusher->apps);
	}
	return cfg->pusher;
}

int eng_pusher_opt_app(struct eng_cfg *cfg, const char *spec,
		       const char **why)
{
	struct eng_pusher_cfg *pc = cfg_get(cfg);

	*why = "out of memory";
	if (!pc || pusher_apps_add(&pc->apps, spec, strlen(spec), why) < 0)
		return -EINVAL;
	return 0;
}

int eng_pusher_opt_events(struct eng_cfg *cfg, const char *id, uint8_t what,
			  const char **why)
{
	struct eng_pusher_cfg *pc = cfg_get(cfg);

	*why = "an app's ID, at most 64 of them";
	if (!pc || !*id || pc->nevents == ENG_PUSHER_EVENTS_MAX)
		return -EINVAL;
	pc->what[pc->nevents] = what;
	pc->events[pc->nevents++] = id;
	return 0;
}

int eng_pusher_opt_dur(struct eng_cfg *cfg, const char *arg, bool pong,
		       const char **why)
{
	struct eng_pusher_cfg *pc = cfg_get(cfg);
	unsigned ms = 0;

	/* activity_timeout is sent in seconds: no fraction to round away */
	*why = "whole seconds, from 1s to 24h";
	if (!pc || opts__dur(arg, &ms) < 0 || ms < 1000 || ms % 1000 ||
	    ms > 86400000)
		return -EINVAL;
	*(pong ? &pc->pong_ms : &pc->activity_ms) = ms;
	return 0;
}

int eng_pusher_opt_ttl(struct eng_cfg *cfg, const char *arg,
		       const char **why)
{
	struct eng_pusher_cfg *pc = cfg_get(cfg);
	unsigned ms = 0;

	*why = "from 1s to 24h";
	if (!pc || opts__dur(arg, &ms) < 0 || ms < 1000 ||
	    ms > ENG_PUSHER_CACHE_TTL_MAX)
		return -EINVAL;
	pc->cache_ms = ms;
	return 0;
}

int eng_pusher_opt_data(struct eng_cfg *cfg, const char *arg,
			const char **why)
{
	struct eng_pusher_cfg *pc = cfg_get(cfg);
	uint64_t n = 0;

	*why = "bytes, from 1 to 1M";
	if (!pc || opts__size(arg, &n) < 0 || !n || n > ENG_PUSHER_DATA_CAP)
		return -EINVAL;
	pc->max_data = (unsigned)n;
	return 0;
}

int eng_pusher_opt_file(struct eng_cfg *cfg, const char *path,
			const char **why)
{
	struct eng_pusher_cfg *pc = cfg_get(cfg);

	*why = "a file's path";
	if (!pc || !*path)
		return -EINVAL;
	pc->file = path;
	return 0;
}

/* Adds the apps of @text, said to come from @what. */
static int add_text(struct eng_pusher_cfg *pc, const char *what,
		    const char *text, size_t len)
{
	const char *why = "malformed";
	unsigned line = 0;

	if (pusher_apps_parse(&pc->apps, text, len, &line, &why) < 0) {
		fprintf(stderr, "ringcast: %s, line %u: %s\n", what, line, why);
		return -EINVAL;
	}
	return 0;
}

/* Reads @path whole (at most APPS_FILE_MAX bytes) and adds its apps. */
static int add_file(struct eng_pusher_cfg *pc, const char *path)
{
	char what[1100];
	FILE *f = fopen(path, "r");
	size_t n = 0;
	char *text;
	int ret;

	if (!f) {
		fprintf(stderr, "ringcast: --pusher-apps-file %s: %s\n", path,
			strerror(errno));
		return -EINVAL;
	}
	text = malloc(APPS_FILE_MAX + 1);
	if (text)
		n = fread(text, 1, APPS_FILE_MAX + 1, f);
	fclose(f);
	if (!text || n > APPS_FILE_MAX) {
		fprintf(stderr, "ringcast: --pusher-apps-file %s: %s\n", path,
			text ? "over 1 MiB" : "out of memory");
		free(text);
		return -EINVAL;
	}
	snprintf(what, sizeof(what), "--pusher-apps-file %s", path);
	ret = add_text(pc, what, text, n);
	OPENSSL_cleanse(text, n);
	free(text);
	return ret;
}

static const char *const what_opt[] = {
	[ENG_PUSHER_CLIENT_EVENTS] = "client-events",
	[ENG_PUSHER_SUB_COUNT] = "subscription-count",
	[ENG_PUSHER_RATE] = "client-event-rate",
	[ENG_PUSHER_WATCHLIST] = "watchlist",
};

/* A per-app option @what, "ID" (or "ID=N": a rate), applied to its app. */
static int per_app(struct eng_pusher_cfg *pc, const char *arg, uint8_t what)
{
	const char *eq = what == ENG_PUSHER_RATE ? strchr(arg, '=') : NULL;
	size_t idlen = eq ? (size_t)(eq - arg) : strlen(arg);
	struct pusher_app *app = (struct pusher_app *)
		pusher_app_by_id(&pc->apps, arg, idlen);
	unsigned long n = 0;
	char *end = NULL;

	if (eq && eq[1] >= '0' && eq[1] <= '9')
		n = strtoul(eq + 1, &end, 10);
	if (what == ENG_PUSHER_RATE && (!end || *end || !n ||
					n > ENG_PUSHER_RATE_MAX)) {
		fprintf(stderr, "ringcast: --pusher-client-event-rate %s: "
			"ID=N, N from 1 to %u\n", arg, ENG_PUSHER_RATE_MAX);
		return -EINVAL;
	}
	if (!app) {
		fprintf(stderr, "ringcast: --pusher-%s %s: no app has this ID\n",
			what_opt[what], arg);
		return -EINVAL;
	}
	if (what == ENG_PUSHER_CLIENT_EVENTS)
		app->client_events = true;
	else if (what == ENG_PUSHER_SUB_COUNT)
		app->sub_count = true;
	else if (what == ENG_PUSHER_WATCHLIST)
		app->watchlist = true;
	else
		app->client_rate = (uint8_t)n;
	return 0;
}

int eng_pusher_opts_finish(struct eng_cfg *cfg)
{
	const char *env = getenv("RINGCAST_PUSHER_APPS");
	struct eng_pusher_cfg *pc;

	if (!env && !cfg->pusher)
		return 0;
	pc = cfg_get(cfg);
	if (!pc)
		return -ENOMEM;
	if (env && add_text(pc, "RINGCAST_PUSHER_APPS", env, strlen(env)) < 0)
		return -EINVAL;
	if (pc->file && add_file(pc, pc->file) < 0)
		return -EINVAL;
	if (!pc->activity_ms)
		pc->activity_ms = ENG_PUSHER_ACTIVITY_MS;
	if (!pc->pong_ms)
		pc->pong_ms = ENG_PUSHER_PONG_MS;
	if (!pc->cache_ms)
		pc->cache_ms = ENG_PUSHER_CACHE_TTL_MS;
	if (!pc->max_data)
		pc->max_data = ENG_PUSHER_DATA_MAX;
	for (unsigned i = 0; i < pc->nevents; i++)
		if (per_app(pc, pc->events[i], pc->what[i]) < 0)
			return -EINVAL;
	if (!pc->apps.n) {
		fprintf(stderr, "ringcast: the Pusher options name no app "
			"(--pusher-app, RINGCAST_PUSHER_APPS or "
			"--pusher-apps-file)\n");
		return -EINVAL;
	}
	return 0;
}

void eng_pusher_cfg_free(struct eng_cfg *cfg)
{
	if (!cfg->pusher)
		return;
	pusher_apps_exit(&cfg->pusher->apps);
	eng_pusher_count_clear();
	eng_pusher_cache_clear();
	free(cfg->pusher);
	cfg->pusher = NULL;
}
