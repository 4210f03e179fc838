/* SPDX-License-Identifier: MIT */
/*
 * cluster.c: hash slots and Redis Cluster's answers about them. The slot
 * of a key is CRC16 (the XMODEM variant: polynomial 0x1021, initial value
 * 0) of the key modulo 16384, where a key holding "{...}" with something
 * between the first '{' and the first '}' after it is hashed by that part
 * only (the Redis Cluster specification, "Keys distribution model").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

static uint16_t crc16_table[256];
static bool crc16_ready;

static void crc16_init(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint16_t c = (uint16_t)(i << 8);

		for (int b = 0; b < 8; b++)
			c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
		crc16_table[i] = c;
	}
	crc16_ready = true;
}

static uint16_t crc16(const char *p, size_t len)
{
	uint16_t c = 0;

	if (!crc16_ready)	/* idempotent: a race writes the same table */
		crc16_init();
	for (size_t i = 0; i < len; i++)
		c = (uint16_t)(c << 8) ^
		    crc16_table[((c >> 8) ^ (uint8_t)p[i]) & 0xff];
	return c;
}

uint16_t eng_cluster_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	if (open) {
		size_t rest = len - (size_t)(open - key) - 1;

		close = memchr(open + 1, '}', rest);
		if (close && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) &
			       (ENG_SLOTS - 1);
	}
	return crc16(key, len) & (ENG_SLOTS - 1);
}

static char (*tags)[ENG_CLUSTER_TAG_MAX];

const char *eng_cluster_tag(uint16_t slot)
{
	if (!tags) {
		char (*t)[ENG_CLUSTER_TAG_MAX] = calloc(ENG_SLOTS, sizeof(*t));
		unsigned left = ENG_SLOTS;

		if (!t)
			return NULL;
		/* base-36 strings in order: every slot is hit by 4 letters */
		for (unsigned n = 0; left; n++) {
			static const char digits[] =
				"0123456789abcdefghijklmnopqrstuvwxyz";
			char s[ENG_CLUSTER_TAG_MAX];
			size_t k = 0;
			uint16_t sl;

			for (unsigned v = n; k == 0 || v; v /= 36)
				s[k++] = digits[v % 36];
			s[k] = '\0';
			sl = crc16(s, k) & (ENG_SLOTS - 1);
			if (!t[sl][0]) {
				memcpy(t[sl], s, k + 1);
				left--;
			}
		}
		tags = t;
	}
	return tags[slot & (ENG_SLOTS - 1)];
}

static bool int_of(const redisReply *e, long long *v)
{
	if (e->type != REDIS_REPLY_INTEGER)
		return false;
	*v = e->integer;
	return true;
}

/*
 * A node as CLUSTER SLOTS names it, {host, port, id, ...}, into @a: 0; 1
 * when its endpoint is unknown ("?": @a is @fallback_host's); or -EPROTO.
 */
static int node_of(const redisReply *m, const char *fallback_host,
		   struct eng_cluster_addr *a)
{
	const redisReply *h;
	long long port;

	if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
	    !int_of(m->element[1], &port) ||
	    (m->element[0]->type != REDIS_REPLY_STRING &&
	     m->element[0]->type != REDIS_REPLY_NIL) ||
	    port <= 0 || port > 65535)
		return -EPROTO;
	h = m->element[0];
	a->port = (uint16_t)port;
	if (h->type == REDIS_REPLY_STRING && h->len == 1 && h->str[0] == '?') {
		snprintf(a->host, sizeof(a->host), "%s", fallback_host);
		return 1;
	}
	if (h->type == REDIS_REPLY_STRING && h->len) {
		if (h->len >= sizeof(a->host))
			return -EPROTO;
		memcpy(a->host, h->str, h->len + 1);
	} else {
		snprintf(a->host, sizeof(a->host), "%s", fallback_host);
	}
	return 0;
}

int eng_cluster_parse_slots(const redisReply *rep, const char *fallback_host,
			    eng_cluster_range_fn fn, void *arg)
{
	int n = 0;

	if (rep->type != REDIS_REPLY_ARRAY)
		return -EPROTO;
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *r = rep->element[i];
		struct eng_cluster_addr a, rp;
		const struct eng_cluster_addr *replica = NULL;
		long long first, last;

		if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
		    !int_of(r->element[0], &first) ||
		    !int_of(r->element[1], &last) ||
		    first < 0 || last < first || last >= ENG_SLOTS)
			return -EPROTO;
		if (node_of(r->element[2], fallback_host, &a) < 0)
			return -EPROTO;
		for (size_t k = 3; k < r->elements && !replica; k++) {
			/* one whose endpoint is unknown cannot be reached */
			int ret = node_of(r->element[k], fallback_host, &rp);

			if (ret < 0)
				return ret;
			if (ret == 0)
				replica = &rp;
		}
		fn(arg, (uint16_t)first, (uint16_t)last, &a, replica);
		n++;
	}
	return n;
}

/* "HOST:PORT" (the host may hold colons: IPv6) into @a. */
static int parse_addr(const char *p, size_t len, struct eng_cluster_addr *a)
{
	const char *colon = NULL;
	char *end;
	long port;
	char num[8];

	for (size_t i = 0; i < len; i++)
		if (p[i] == ':')
			colon = p + i;
	if (!colon || colon == p || (size_t)(colon - p) >= sizeof(a->host))
		return -EINVAL;
	len -= (size_t)(colon - p) + 1;
	if (!len || len >= sizeof(num))
		return -EINVAL;
	memcpy(num, colon + 1, len);
	num[len] = '\0';
	port = strtol(num, &end, 10);
	if (*end || port <= 0 || port > 65535)
		return -EINVAL;
	memcpy(a->host, p, (size_t)(colon - p));
	a->host[colon - p] = '\0';
	a->port = (uint16_t)port;
	return 0;
}

bool eng_cluster_redirect(const char *err, size_t len, uint16_t *slot,
			  struct eng_cluster_addr *to, bool *ask)
{
	size_t skip;
	long long s = 0;
	size_t i;

	if (len > 6 && !memcmp(err, "MOVED ", 6)) {
		skip = 6;
		*ask = false;
	} else if (len > 4 && !memcmp(err, "ASK ", 4)) {
		skip = 4;
		*ask = true;
	} else {
		return false;
	}
	for (i = skip; i < len && err[i] >= '0' && err[i] <= '9' && i < skip + 6;
	     i++)
		s = s * 10 + (err[i] - '0');
	if (i == skip || i == len || err[i] != ' ' || s >= ENG_SLOTS)
		return false;
	*slot = (uint16_t)s;
	return parse_addr(err + i + 1, len - i - 1, to) == 0;
}

int eng_cluster_parse_seeds(const char *list, struct eng_cluster_addr *out,
			    unsigned max)
{
	unsigned n = 0;
	const char *p = list;

	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (n == max || parse_addr(p, len, &out[n]) < 0)
			return -EINVAL;
		n++;
		if (!end)
			return (int)n;
		p = end + 1;
	}
}
