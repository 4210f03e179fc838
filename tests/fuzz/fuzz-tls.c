/* SPDX-License-Identifier: MIT */
/*
 * fuzz-tls: the TLS 1.3 record layer with fixed keys. The first input byte
 * picks the mode.
 *  - Raw (bit 0 clear): the rest is what a client sent, fed to tls_open()
 *    in chunks (bits 3-7: chunk size, 0 for all at once) under the client
 *    application traffic secret of RFC 8448 section 3, so its records
 *    (seeds) open and mutations of them reach past the tag. It stops at the
 *    first error, which must map to an alert a peer may cause.
 *  - Sealed (bit 0 set; bits 1-2: suite): the rest is a script of steps, a
 *    5-byte head (control, length, split point, bit to flip) and content;
 *    a client tls_rl seals each step's content as application data,
 *    handshake or alert (any bytes, so tls_open() parses whatever a peer
 *    could authenticate), or a KeyUpdate; the server opens it, content
 *    must come back unchanged, a flipped bit must fail, and a KeyUpdate the
 *    server owes must reach the client before its next data.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

#define REPEAT_LEN	(3 * TLS_MAX_PLAIN + 100)

static EVP_CIPHER_CTX *ctx;

/* RFC 8448 section 3: client_application_traffic_secret_0 */
static const uint8_t c_ap[32] = {
	0x9e, 0x40, 0x64, 0x6c, 0xe7, 0x9a, 0x7f, 0x9d, 0xc0, 0x5a, 0xf8,
	0x88, 0x9b, 0xce, 0x65, 0x52, 0x87, 0x5a, 0xfa, 0x0b, 0x06, 0xdf,
	0x00, 0x87, 0xf7, 0x92, 0xeb, 0xb7, 0xc1, 0x75, 0x04, 0xa5,
};

static void check_error(ssize_t r)
{
	/* a peer can cause these; -EIO or -EOVERFLOW would be our bug */
	assert(r == -EPROTO || r == -EILSEQ || r == -ERANGE ||
	       r == -EBADMSG || r == -EMSGSIZE);
	assert(tls_alert_of((int)r) != TLS_ALERT_INTERNAL_ERROR);
}

static void check_record(ssize_t r, const struct tls_rec *rec)
{
	assert(r >= TLS_HDR_LEN + TLS_TAG_LEN + 1 && r <= TLS_MAX_RECORD);
	assert(rec->len <= TLS_MAX_PLAIN);
	assert(rec->type == TLS_CT_APPLICATION_DATA ||
	       rec->type == TLS_CT_HANDSHAKE || rec->type == TLS_CT_ALERT);
}

static void run_raw(uint8_t *buf, size_t size, size_t chunk)
{
	struct tls_rl s;
	struct tls_rec rec;
	size_t have = 0, pos = 0;
	uint64_t seq;
	ssize_t r;

	assert(tls_rl_init(&s, TLS_AES_128_GCM_SHA256, c_ap, c_ap, 32, 0) ==
	       0);
	for (;;) {
		seq = s.rx.seq;
		r = tls_open(&s, ctx, buf + pos, have - pos, &rec);
		if (r == -EAGAIN) {
			assert(s.rx.seq == seq);
			if (have == size)
				break;
			have = have + chunk < size ? have + chunk : size;
			continue;
		}
		if (r < 0) {
			check_error(r);
			break;
		}
		check_record(r, &rec);
		/* a KeyUpdate restarts the sequence, anything else moves it */
		assert(s.rx.seq == seq + 1 ||
		       (rec.type == TLS_CT_HANDSHAKE && s.rx.seq == 0));
		pos += (size_t)r;
	}
	tls_rl_exit(&s);
}

/* The server answers with one byte of data: the client must read it. */
static void server_replies(struct tls_rl *s, struct tls_rl *c, uint8_t *out,
			   size_t cap)
{
	struct iovec iov = { (void *)"x", 1 };
	struct tls_rec rec;
	ssize_t n, r;

	n = tls_seal(s, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 0, out, cap);
	assert(n > 0 && !(s->flags & TLS_RL_UPDATE_OWED));
	r = tls_open(c, ctx, out, (size_t)n, &rec);
	if (r < n) {
		/* the KeyUpdate first, then the data under the next key */
		assert(r > 0 && rec.type == TLS_CT_HANDSHAKE);
		n -= r;
		out += r;
		r = tls_open(c, ctx, out, (size_t)n, &rec);
	}
	assert(r == n && rec.type == TLS_CT_APPLICATION_DATA &&
	       rec.len == 1 && rec.data[0] == 'x');
	assert(!memcmp(c->rx.secret, s->tx.secret, TLS_MAX_SECRET));
}

static void run_sealed(const uint8_t *p, size_t size, uint16_t suite)
{
	static const size_t pads[4] = { 0, 1, 255, 20000 };
	static uint8_t content[REPEAT_LEN], out[5 * TLS_MAX_RECORD];
	uint8_t secret_c[TLS_MAX_SECRET], secret_s[TLS_MAX_SECRET];
	size_t len, split, pos = 0, n, off, got;
	struct tls_rl c, s;
	struct tls_rec rec;
	struct iovec iov[2];
	uint8_t ctl, type, flip;
	ssize_t r, sealed;

	memset(secret_c, 0x43, sizeof(secret_c));
	memset(secret_s, 0x53, sizeof(secret_s));
	n = tls_secret_len(suite);
	assert(tls_rl_init(&c, suite, secret_s, secret_c, n,
			   TLS_RL_CLIENT) == 0);
	assert(tls_rl_init(&s, suite, secret_c, secret_s, n, 0) == 0);

	while (size - pos >= 5) {
		ctl = p[pos];
		len = (size_t)(p[pos + 1] << 8 | p[pos + 2]);
		split = p[pos + 3];
		flip = p[pos + 4];
		pos += 5;
		if (len > size - pos)
			len = size - pos;
		memcpy(content, p + pos, len);
		pos += len;
		if ((ctl & 0x10) && len) {
			/* enough to span several records */
			for (off = len; off < REPEAT_LEN; off += len)
				memcpy(content + off, content,
				       REPEAT_LEN - off < len ?
				       REPEAT_LEN - off : len);
			len = REPEAT_LEN;
		}
		split = split * len / 256;
		iov[0] = (struct iovec){ content, split };
		iov[1] = (struct iovec){ content + split, len - split };
		type = (uint8_t[]){ TLS_CT_APPLICATION_DATA, TLS_CT_HANDSHAKE,
				    TLS_CT_ALERT, 0 }[ctl & 3];
		if (type)
			sealed = tls_seal(&c, ctx, type, iov, 2,
					  pads[(ctl >> 2) & 3], out,
					  sizeof(out));
		else
			sealed = tls_seal_key_update(&c, ctx, ctl & 4, out,
						     sizeof(out));
		if (sealed == -EINVAL) {
			assert(type && type != TLS_CT_APPLICATION_DATA && !len);
			continue;
		}
		assert(sealed > 0 && (size_t)sealed <= tls_seal_bound(len,
			pads[(ctl >> 2) & 3]));

		if (ctl & 0x20) {
			/* any bit flipped in the first record is caught */
			off = flip * (size_t)(TLS_HDR_LEN +
					      (out[3] << 8 | out[4])) / 256;
			out[off] ^= (uint8_t)(1 << (ctl >> 6));
			r = tls_open(&s, ctx, out, (size_t)sealed, &rec);
			assert(r < 0);
			if (r != -EAGAIN)
				check_error(r);
			break;
		}
		/* the server opens all of it; data must come back as sent */
		for (off = 0, got = 0; off < (size_t)sealed; off += (size_t)r) {
			r = tls_open(&s, ctx, out + off, (size_t)sealed - off,
				     &rec);
			if (r < 0) {
				/* only a crafted handshake or alert body
				 * may be refused */
				assert(type == TLS_CT_HANDSHAKE ||
				       type == TLS_CT_ALERT);
				check_error(r);
				goto done;
			}
			check_record(r, &rec);
			if (rec.type != TLS_CT_APPLICATION_DATA)
				continue;
			assert(got + rec.len <= len &&
			       !memcmp(rec.data, content + got, rec.len));
			got += rec.len;
		}
		assert(type != TLS_CT_APPLICATION_DATA || got == len);
		/* a KeyUpdate written as handshake content moved only the
		 * server: keep the client's sending side in step */
		if (memcmp(s.rx.secret, c.tx.secret, TLS_MAX_SECRET))
			assert(tls_dir_update(&c.tx) == 0);
		assert(!memcmp(s.rx.secret, c.tx.secret, TLS_MAX_SECRET) &&
		       s.rx.seq == c.tx.seq);
		if (s.flags & TLS_RL_UPDATE_OWED)
			server_replies(&s, &c, out, sizeof(out));
	}
done:
	tls_rl_exit(&c);
	tls_rl_exit(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t suites[4] = {
		TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
		TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256,
	};
	size_t chunk;
	uint8_t *buf;

	if (!ctx)
		ctx = EVP_CIPHER_CTX_new();
	assert(ctx);
	if (!size)
		return 0;
	if (data[0] & 1) {
		run_sealed(data + 1, size - 1, suites[(data[0] >> 1) & 3]);
		return 0;
	}
	chunk = data[0] >> 3 ? (size_t)(data[0] >> 3) : size;
	/* an exact-size copy: ASan sees a read past the end */
	buf = malloc(size > 1 ? size - 1 : 1);
	memcpy(buf, data + 1, size - 1);
	run_raw(buf, size - 1, chunk);
	free(buf);
	return 0;
}
