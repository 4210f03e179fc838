/* SPDX-License-Identifier: MIT */
/*
 * opts_value.c: the values options take, from text: numbers, sizes and
 * durations, the address to listen on, the lists of allowed origins and
 * hosts, and Redis URLs and cluster seeds. Nothing here knows the option
 * table (opts.c) or prints, except the one error that must not show a
 * URL; contracts in opts_int.h.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "opts_int.h"

/* ---- numbers, sizes, durations ----------------------------------------- */

/*
 * The decimal number at the start of @s into @v, @end after it. Refuses
 * what strtoull() alone would take: " 5", "+5", and "-1" as 2^64 - 1.
 */
static int lead(const char *s, unsigned long long *v, char **end)
{
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 10);
	if (errno || *end == s)
		return -EINVAL;
	return 0;
}

int opts__u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (lead(s, &v, &end) < 0 || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "64K", "16M", "1G", or plain bytes. */
int opts__size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (lead(s, &v, &end) < 0)
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	else if (*end)
		return -EINVAL;
	if (shift && end[1])
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

/* "500ms", "2s", "1m", "1h", or plain seconds; into milliseconds. */
int opts__dur(const char *s, unsigned *ms)
{
	unsigned long long v, mult = 1000;
	char *end;

	if (lead(s, &v, &end) < 0)
		return -EINVAL;
	if (!strcmp(end, "ms"))
		mult = 1;
	else if (!strcmp(end, "m"))
		mult = 60000;
	else if (!strcmp(end, "h"))
		mult = 3600000;
	else if (*end && strcmp(end, "s"))
		return -EINVAL;
	if (v > UINT_MAX / mult)
		return -ERANGE;
	*ms = (unsigned)(v * mult);
	return 0;
}

int opts__window(const char *s, unsigned *us)
{
	size_t n = strlen(s);
	unsigned ms;

	if (n > 2 && !strcmp(s + n - 2, "us")) {
		unsigned long long v;
		char *end;

		/* 15 characters of number at most, as ever */
		if (n - 2 >= 16 || lead(s, &v, &end) < 0 ||
		    strcmp(end, "us") || v > 1000000)
			return -ERANGE;
		*us = (unsigned)v;
		return 0;
	}
	if (opts__dur(s, &ms) < 0 || ms > 1000)
		return -ERANGE;
	*us = ms * 1000;
	return 0;
}

/* ---- addresses and lists ------------------------------------------------ */

int opts__listen(const char *s, struct eng_cfg *cfg)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;

	if (!colon || colon == s ||
	    (size_t)(colon - s) >= sizeof(cfg->listen_host))
		return -EINVAL;
	if (opts__u64(colon + 1, &port) < 0 || port > 65535)
		return -EINVAL;
	memcpy(cfg->listen_host, s, (size_t)(colon - s));
	cfg->listen_host[colon - s] = '\0';
	cfg->port = (uint16_t)port;
	return 0;
}

/*
 * A comma-separated list of entries @ok accepts (none empty) copied into
 * @dst of @size bytes; http.c matches against it as kept.
 */
static int list(const char *s, char *dst, size_t size,
		bool (*ok)(const char *e, size_t n))
{
	const char *e = s;

	if (!*s || strlen(s) >= size)
		return -EINVAL;
	for (;;) {
		size_t n = strcspn(e, ",");

		if (!ok(e, n))
			return -EINVAL;
		if (!e[n])
			break;
		e += n + 1;
		if (!*e)
			return -EINVAL;		/* a comma at the end */
	}
	strcpy(dst, s);
	return 0;
}

/* SCHEME://HOST[:PORT], HOST possibly *.DOMAIN; no path. */
static bool origin_ok(const char *e, size_t n)
{
	const char *host = memmem(e, n, "://", 3);
	const char *star = memchr(e, '*', n);

	if (!host || host == e)
		return false;
	host += 3;
	if (host >= e + n || memchr(host, '/', (size_t)(e + n - host)))
		return false;
	if (star && (star != host || star + 1 >= e + n || star[1] != '.' ||
		     memchr(star + 1, '*', (size_t)(e + n - star - 1))))
		return false;
	for (size_t i = 0; i < n; i++)
		if (e[i] <= ' ' || e[i] > '~')
			return false;
	return true;
}

/* NAME or *.DOMAIN of letters, digits, '-' and '.'; no port. */
static bool host_ok(const char *e, size_t n)
{
	size_t i = 0;

	if (e[0] == '*' && (n < 3 || e[1] != '.'))
		return false;
	if (e[0] == '*')
		i = 2;
	if (i == n || e[i] == '.' || e[n - 1] == '.')
		return false;
	for (; i < n; i++)
		if (!isalnum((unsigned char)e[i]) && e[i] != '-' &&
		    e[i] != '.')
			return false;
	return true;
}

int opts__origins(const char *s, struct eng_cfg *cfg)
{
	return list(s, cfg->origins, sizeof(cfg->origins), origin_ok);
}

int opts__hosts(const char *s, struct eng_cfg *cfg)
{
	return list(s, cfg->hosts, sizeof(cfg->hosts), host_ok);
}

/* ---- Redis addresses ----------------------------------------------------- */

/* "[USER]:PASSWORD" from @p up to @at (the '@') into @cfg. */
static int parse_userinfo(const char *p, const char *at, struct eng_cfg *cfg)
{
	const char *sep = memchr(p, ':', (size_t)(at - p));

	if (!sep || (size_t)(sep - p) >= sizeof(cfg->redis_user) ||
	    (size_t)(at - sep - 1) >= sizeof(cfg->redis_password))
		return -EINVAL;
	memcpy(cfg->redis_user, p, (size_t)(sep - p));
	cfg->redis_user[sep - p] = '\0';
	memcpy(cfg->redis_password, sep + 1, (size_t)(at - sep - 1));
	cfg->redis_password[at - sep - 1] = '\0';
	return 0;
}

/*
 * Forgets an earlier URL's credentials and database (a later URL replaces
 * one whole: environment, then options) and takes the "[USER]:PASSWORD@"
 * at @p, if any, up to @stop. Returns where the host starts, or NULL.
 */
static const char *redis_auth(const char *p, const char *stop,
			      struct eng_cfg *cfg)
{
	const char *at = memchr(p, '@', (size_t)(stop - p));

	cfg->redis_user[0] = cfg->redis_password[0] = '\0';
	cfg->redis_db = 0;
	if (!at)
		return p;
	return parse_userinfo(p, at, cfg) < 0 ? NULL : at + 1;
}

int opts__redis_url(const char *url, struct eng_cfg *cfg)
{
	const char *p, *slash, *colon, *end;
	uint64_t v;
	char num[24];

	if (strncmp(url, "redis://", 8))
		return -EINVAL;
	end = url + strlen(url);
	slash = strchr(url + 8, '/');
	if (!slash)
		slash = end;
	p = redis_auth(url + 8, slash, cfg);
	if (!p)
		return -EINVAL;
	colon = memchr(p, ':', (size_t)(slash - p));
	cfg->redis_port = 6379;
	if (colon) {
		if ((size_t)(slash - colon - 1) >= sizeof(num))
			return -EINVAL;
		memcpy(num, colon + 1, (size_t)(slash - colon - 1));
		num[slash - colon - 1] = '\0';
		if (opts__u64(num, &v) < 0 || !v || v > 65535)
			return -EINVAL;
		cfg->redis_port = (uint16_t)v;
	} else {
		colon = slash;
	}
	if (colon == p || (size_t)(colon - p) >= sizeof(cfg->redis_host))
		return -EINVAL;
	memcpy(cfg->redis_host, p, (size_t)(colon - p));
	cfg->redis_host[colon - p] = '\0';
	if (slash != end && slash[1]) {
		if (opts__u64(slash + 1, &v) < 0 || v > 1000000)
			return -EINVAL;
		cfg->redis_db = (unsigned)v;
	}
	return 0;
}

/*
 * The seeds are only where the slot map is first asked: the masters come
 * from it. No /DB: a cluster has only database 0.
 */
int opts__redis_seeds(const char *v, struct eng_cfg *cfg)
{
	struct eng_cluster_addr seeds[ENG_CLUSTER_SEEDS_MAX];
	const char *p = v;
	int n;

	if (!strncmp(p, "redis://", 8))
		p += 8;
	p = redis_auth(p, p + strlen(p), cfg);
	if (!p)
		return -EINVAL;
	n = eng_cluster_parse_seeds(p, seeds, ENG_CLUSTER_SEEDS_MAX);
	if (n <= 0 || strlen(p) >= sizeof(cfg->redis_seeds))
		return -EINVAL;
	strcpy(cfg->redis_seeds, p);
	snprintf(cfg->redis_host, sizeof(cfg->redis_host), "%s", seeds[0].host);
	cfg->redis_port = seeds[0].port;
	cfg->redis_cluster = true;
	return 0;
}

int opts__redis_url_from(const char *what, const char *url,
			 struct eng_cfg *cfg)
{
	if (opts__redis_url(url, cfg) < 0) {
		fprintf(stderr, "ringcast: %s is not a Redis URL "
			"(redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])\n", what);
		return -EINVAL;
	}
	return 0;
}
