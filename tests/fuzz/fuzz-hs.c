/* SPDX-License-Identifier: MIT */
/*
 * fuzz-hs: hs_parse() on the whole input and on every split into two calls
 * the way the engine calls it (a prefix, then the grown buffer), with the
 * prefix in an exact-size copy so ASan sees reads past len. A prefix may
 * only say -EAGAIN or what the whole input says. On a complete head, the
 * upgrade checks and the response writers run too.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hs.h"

/* Small limits make the -EMSGSIZE paths reachable from short inputs. */
static const struct hs_limits lim = { .max_bytes = 512, .max_headers = 8 };

static void after_head(const struct hs_req *r)
{
	char acc[HS_ACCEPT_LEN + 1], out[256];
	ssize_t n;

	if (hs_check_upgrade(r) == 0) {
		assert(hs_accept_key(&r->ws_key, acc) == 0);
		assert(strlen(acc) == HS_ACCEPT_LEN);
		n = hs_write_101(out, sizeof(out), &r->ws_key);
		assert(n > 0 && (size_t)n < sizeof(out));
	}
	n = hs_write_response(out, sizeof(out), 404, NULL, NULL, r->path.p,
			      r->path.len,
			      r->flags & HS_F_CONN_CLOSE ? 0 : 60);
	assert(n == -ENOSPC || (n > 0 && (size_t)n < sizeof(out)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hs_req r, r2;
	ssize_t whole, ret;
	uint8_t *pre;
	size_t k;

	whole = hs_parse(&r, data, size, &lim);
	assert(whole == -EAGAIN || whole == -EBADMSG || whole == -EMSGSIZE ||
	       (whole > 0 && (size_t)whole <= size &&
		(size_t)whole <= lim.max_bytes));
	if (whole > 0)
		after_head(&r);

	for (k = 0; k < size; k++) {
		pre = malloc(k ? k : 1);
		memcpy(pre, data, k);
		ret = hs_parse(&r2, pre, k, &lim);
		free(pre);
		if (ret == -EAGAIN)
			continue;
		/* the first decision is final: growing the buffer keeps it */
		assert(ret == whole);
		if (ret > 0)
			assert(r2.nheaders == r.nheaders && r2.flags == r.flags);
		break;
	}
	return 0;
}
