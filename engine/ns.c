/* SPDX-License-Identifier: MIT */
/*
 * ns.c: what a channel's name says: the --namespace entries (hist.h),
 * parsed from the options, and a channel's found by its name; and a
 * user's index key (user.h). Pure and below every module that names
 * channels (hist, inbox, pub, sub, the brokers, rreq, the bridge): it
 * calls only chan.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "hist.h"
#include "user.h"

int eng_ns_parse(const char *arg, struct eng_ns *ns)
{
	const char *colon = strchr(arg, ':'), *p;
	unsigned long long n = 0, ttl = 0;
	char *end;

	memset(ns, 0, sizeof(*ns));
	if (!colon || (size_t)(colon - arg) > ENG_NS_NAME_MAX)
		return -EINVAL;
	ns->len = (uint8_t)(colon - arg);
	memcpy(ns->name, arg, ns->len);
	if (ns->len && !eng_chan_name_ok(ns->name, ns->len))
		return -EINVAL;
	for (p = colon + 1; *p; p = *end ? end + 1 : end) {
		if (!strncmp(p, "history=", 8) && p[8] >= '0' && p[8] <= '9') {
			n = strtoull(p + 8, &end, 10);
		} else if (!strncmp(p, "ttl=", 4) && p[4] >= '0' &&
			   p[4] <= '9') {
			ttl = strtoull(p + 4, &end, 10);
			if (!strncmp(end, "ms", 2))
				end += 2;
			else if (*end == 's')
				ttl *= 1000, end++;
			else if (*end == 'm')
				ttl *= 60000, end++;
			else if (*end == 'h')
				ttl *= 3600000, end++;
			else
				ttl *= 1000;
		} else {
			return -EINVAL;
		}
		if (*end && *end != ',')
			return -EINVAL;
	}
	if (!n || n > ENG_HIST_MAX || !ttl || ttl > 30ull * 86400000)
		return -EINVAL;
	ns->history = (uint32_t)n;
	ns->ttl_ms = (uint32_t)ttl;
	return 0;
}

const struct eng_ns *eng_ns_find(const struct eng_cfg *cfg, const char *name,
				 size_t len)
{
	const char *colon = memchr(name, ':', len);
	size_t nl = colon ? (size_t)(colon - name) : 0;

	for (unsigned i = 0; i < cfg->nns; i++) {
		const struct eng_ns *ns = &cfg->ns[i];

		if (ns->len == nl && (!colon ? !ns->len :
				      !memcmp(ns->name, name, nl)))
			return ns;
	}
	return NULL;
}

size_t eng_user_key(char *out, const char *uid, size_t len)
{
	out[0] = ENG_USER_MARK;
	memcpy(out + 1, uid, len);
	return len + 1;
}
