/* SPDX-License-Identifier: MIT */
/*
 * check.c: `ringcast-tune check` gathers every item in the order an
 * operator fixes them: the kernel and io_uring first (nothing else matters
 * without them), then the limits and memory that size the shards, then
 * connection tracking, then each sysctl of the profile against the live
 * value. Each item says what fixes it, as a command or a file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tune.h"

/*
 * A loaded nf_conntrack tracks connections only in namespaces whose rules
 * need it; there, every client is an entry and a full table drops new
 * SYNs ("nf_conntrack: table full, dropping packet").
 */
static void check_conntrack(struct tune_report *r, const struct tune_cfg *cfg)
{
	char max[32], count[32];
	struct tune_item *it;
	uint64_t m, c;

	if (tune_sysctl_read("net.netfilter.nf_conntrack_max", max,
			     sizeof(max)) < 0)
		return;		/* not loaded: nothing is tracked */
	if (tune_sysctl_read("net.netfilter.nf_conntrack_count", count,
			     sizeof(count)) < 0)
		snprintf(count, sizeof(count), "0");
	m = strtoull(max, NULL, 10);
	c = strtoull(count, NULL, 10);
	it = tune_report_add(r, "net.netfilter.nf_conntrack_max",
			     !c || m >= cfg->conns + c);
	snprintf(it->have, sizeof(it->have), "%" PRIu64 " (%" PRIu64
		 " tracked now%s)", m, c, c ? "" : ": not tracking here");
	snprintf(it->need, sizeof(it->need), ">= %" PRIu64 " while tracking",
		 cfg->conns + c);
	snprintf(it->fix, sizeof(it->fix), "sysctl -w "
		 "net.netfilter.nf_conntrack_max=%" PRIu64 ", or exempt "
		 "ringcast's port with notrack rules in a raw-priority "
		 "nftables chain, both directions", cfg->conns + c);
}

static void check_key(struct tune_report *r, const struct tune_cfg *cfg,
		      const struct tune_sysctl *k, const char *profile)
{
	const char *cmp = tune_sysctl_cmp(k->key);
	char have[128], want[128], fix[128];
	struct tune_item *it;
	uint64_t scaled;
	int ret;

	ret = tune_sysctl_read(k->key, have, sizeof(have));
	if (ret < 0) {
		/* "-key" in sysctl.d(5): absent is fine, say so. */
		it = tune_report_add(r, k->key, k->ignore_missing);
		snprintf(it->have, sizeof(it->have), "%s", strerror(-ret));
		snprintf(it->need, sizeof(it->need), "%s", k->value);
		snprintf(it->fix, sizeof(it->fix), "a kernel with this key, "
			 "or drop line %u of %s", k->line, profile);
		return;
	}
	snprintf(want, sizeof(want), "%s", k->value);
	if (tune_sysctl_scaled_need(k->key, cfg, &scaled)) {
		/* Fixing it writes the profile's value if that is enough. */
		unsigned long long pv = strtoull(k->value, NULL, 10);

		snprintf(want, sizeof(want), "%" PRIu64, scaled);
		it = tune_report_add(r, k->key, tune_sysctl_holds(">", have,
								  want));
		tune_sysctl_need_text(">", want, it->need, sizeof(it->need));
		if (pv > scaled)
			snprintf(want, sizeof(want), "%llu", pv);
		cmp = ">";
	} else {
		it = tune_report_add(r, k->key, tune_sysctl_holds(cmp, have,
								  want));
		tune_sysctl_need_text(cmp, want, it->need, sizeof(it->need));
	}
	snprintf(it->have, sizeof(it->have), "%s", have);
	if (tune_sysctl_merge(cmp, have, want, fix, sizeof(fix)) < 0)
		snprintf(fix, sizeof(fix), "%s", want);
	snprintf(it->fix, sizeof(it->fix), "sysctl -w %s=%s%s%s (persist: "
		 "ringcast-tune apply --profile %s)", k->key,
		 strchr(fix, ' ') ? "\"" : "", fix,
		 strchr(fix, ' ') ? "\"" : "", profile);
}

int tune_check(struct tune_report *r, const struct tune_cfg *cfg,
	       const char *profile_path)
{
	struct tune_profile p;
	const char *base;
	char name[64];
	unsigned i;
	int ret;

	tune_check_kernel(r);
	tune_check_limits(r, cfg);
	check_conntrack(r, cfg);
	if (!profile_path)
		return 0;

	ret = tune_profile_load(&p, profile_path);
	if (ret < 0)
		return ret;
	/* "server" for 90-ringcast-server.conf, else the path as given. */
	base = strrchr(profile_path, '/');
	base = base ? base + 1 : profile_path;
	if (sscanf(base, "90-ringcast-%63[^.].conf", name) == 1 &&
	    strlen(base) == strlen(name) + strlen("90-ringcast-.conf"))
		base = name;
	else
		base = profile_path;
	for (i = 0; i < p.nr; i++)
		check_key(r, cfg, &p.keys[i], base);
	return 0;
}
