/* SPDX-License-Identifier: MIT */
/*
 * fuzz-tls-ho: a TLS connection's hand-over record (tls_ho_read), as a
 * new process reads it from the old one. The input is the record. What
 * reads must write back to the same bytes, its lengths within the
 * limits, and its record layer must seal and open with what it holds
 * (whatever the keys, nothing may crash); what does not read must be
 * refused as malformed or of another version.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

static EVP_CIPHER_CTX *ctx;

/* The loaded layer seals one record and opens it as its own peer. */
static void use(struct tls_ho *h)
{
	uint8_t out[TLS_RECORD_OVERHEAD + TLS_KEY_UPDATE_LEN + 8];
	struct iovec iov = { (void *)"x", 1 };
	struct tls_rec rec;
	struct tls_rl peer;
	ssize_t n, r;

	peer = h->rl;
	peer.rx = h->rl.tx;
	peer.flags = 0;
	n = tls_seal(&h->rl, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 0, out,
		     sizeof(out));
	if (n == -EOVERFLOW)
		return;		/* a sequence at its end: refused, not used */
	assert(n > 0);
	/* a KeyUpdate owed, or the sequence at its limit, goes first */
	r = tls_open(&peer, ctx, out, (size_t)n, &rec);
	if (r > 0 && r < n)
		r += tls_open(&peer, ctx, out + r, (size_t)(n - r), &rec);
	assert(r == n || r == -EOVERFLOW);
	tls_rl_exit(&peer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t again[TLS_HO_MAX];
	struct tls_ho h;
	uint8_t *buf;
	int r;

	if (!ctx)
		ctx = EVP_CIPHER_CTX_new();
	assert(ctx);
	/* an exact-size copy: ASan sees a read past the end */
	buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	r = tls_ho_read(&h, buf, size);
	if (r) {
		assert(r == -EINVAL || r == -EPROTONOSUPPORT);
		assert(h.rl.tx.suite == 0 && h.rl.rx.suite == 0);
		free(buf);
		return 0;
	}
	assert(h.part_len < TLS_MAX_RECORD && h.out_len <= TLS_HO_MAX_OUT);
	assert(!h.part_len || (h.part >= buf && h.part + h.part_len <=
						   buf + size));
	assert(!h.out_len || (h.out >= buf && h.out + h.out_len <=
						 buf + size));
	assert(tls_ho_size(&h) == size);
	assert(tls_ho_write(&h, again, sizeof(again)) == (ssize_t)size &&
	       !memcmp(again, buf, size));
	use(&h);
	tls_rl_exit(&h.rl);
	free(buf);
	return 0;
}
