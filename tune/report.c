/* SPDX-License-Identifier: MIT */
/*
 * report.c: the list of checked items and its two renderings, one aligned
 * line per item for people and one JSON object for machines. Items live
 * in a fixed array: the tool checks a few dozen things and must be able
 * to report even when memory is what falls short.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tune.h"

struct tune_item *tune_report_add(struct tune_report *r, const char *name,
				  bool ok)
{
	struct tune_item *it;

	if (r->nr < TUNE_MAX_ITEMS) {
		it = &r->items[r->nr++];
	} else {
		it = &r->spill;
		r->dropped++;
	}
	memset(it, 0, sizeof(*it));
	snprintf(it->name, sizeof(it->name), "%s", name);
	it->ok = ok;
	return it;
}

bool tune_report_ok(const struct tune_report *r)
{
	unsigned i;

	if (r->dropped)
		return false;
	for (i = 0; i < r->nr; i++)
		if (!r->items[i].ok)
			return false;
	return true;
}

void tune_fmt_bytes(char *buf, size_t len, uint64_t b)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 0;
	double v = (double)b;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (!u)
		snprintf(buf, len, "%" PRIu64 " B", b);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

static unsigned count_short(const struct tune_report *r)
{
	unsigned i, n = r->dropped;

	for (i = 0; i < r->nr; i++)
		n += !r->items[i].ok;
	return n;
}

void tune_report_print(const struct tune_report *r, const struct tune_cfg *cfg,
		       const char *profile_path)
{
	unsigned i, bad = count_short(r);

	printf("ringcast-tune check: %" PRIu64 " connections on %u shards, "
	       "%" PRIu64 " bytes each; profile %s\n", cfg->conns,
	       cfg->shards, cfg->per_conn,
	       profile_path ? profile_path : "none");
	for (i = 0; i < r->nr; i++) {
		const struct tune_item *it = &r->items[i];

		/* Status first, so `grep ^short` lists what to do. */
		printf("%-5s  %-32s  have %s; need %s%s%s\n",
		       it->ok ? "ok" : "short", it->name, it->have, it->need,
		       it->ok || !it->fix[0] ? "" : "; fix: ",
		       it->ok ? "" : it->fix);
	}
	if (r->dropped)
		printf("short  %u items did not fit the report\n", r->dropped);
	if (bad)
		printf("%u of %u items fall short\n", bad, r->nr + r->dropped);
	else
		printf("all %u items hold\n", r->nr);
}

/* Writes @s as a JSON string (RFC 8259 escapes). */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

void tune_report_print_json(const struct tune_report *r,
			    const struct tune_cfg *cfg,
			    const char *profile_path)
{
	unsigned i;

	printf("{\"conns\":%" PRIu64 ",\"shards\":%u,\"per_conn_bytes\":%"
	       PRIu64 ",\"profile\":", cfg->conns, cfg->shards, cfg->per_conn);
	if (profile_path)
		json_str(profile_path);
	else
		fputs("null", stdout);
	printf(",\"ok\":%s,\"dropped\":%u,\"items\":[",
	       tune_report_ok(r) ? "true" : "false", r->dropped);
	for (i = 0; i < r->nr; i++) {
		const struct tune_item *it = &r->items[i];

		printf("%s{\"name\":", i ? "," : "");
		json_str(it->name);
		printf(",\"ok\":%s,\"have\":", it->ok ? "true" : "false");
		json_str(it->have);
		fputs(",\"need\":", stdout);
		json_str(it->need);
		fputs(",\"fix\":", stdout);
		json_str(it->ok ? "" : it->fix);
		putchar('}');
	}
	fputs("]}\n", stdout);
}
