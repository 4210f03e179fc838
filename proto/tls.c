/* SPDX-License-Identifier: MIT */
/*
 * tls: the TLS 1.3 record layer after the handshake: key schedule pieces of
 * RFC 8446 7.1-7.3 on EVP_KDF "HKDF", record protection of 5.2-5.4 on the
 * EVP AEAD ciphers, and the post-handshake messages of 4.6.3 and 4.6.1.
 * Contracts are in tls.h.
 */
#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>

#include "tls.h"

#define HS_NEW_SESSION_TICKET	4
#define HS_KEY_UPDATE		24
#define HS_HDR_LEN		4	/* msg_type, uint24 length */
#define LEGACY_VERSION		0x0303

struct suite {
	uint16_t id;
	uint8_t key_len;
	uint8_t hash_len;
	const char *md;			/* EVP digest name for HKDF */
	const EVP_CIPHER *(*cipher)(void);
};

static const struct suite suites[] = {
	{ TLS_AES_128_GCM_SHA256, 16, 32, "SHA256", EVP_aes_128_gcm },
	{ TLS_AES_256_GCM_SHA384, 32, 48, "SHA384", EVP_aes_256_gcm },
	{ TLS_CHACHA20_POLY1305_SHA256, 32, 32, "SHA256",
	  EVP_chacha20_poly1305 },
};

static const struct suite *find_suite(uint16_t id)
{
	size_t i;

	for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		if (suites[i].id == id)
			return &suites[i];
	return NULL;
}

size_t tls_secret_len(uint16_t suite)
{
	const struct suite *s = find_suite(suite);

	return s ? s->hash_len : 0;
}

int tls_expand_label(uint16_t suite, const uint8_t *secret,
		     const char *label, const uint8_t *context,
		     size_t context_len, uint8_t *out, size_t out_len)
{
	const struct suite *s = find_suite(suite);
	size_t label_len = strlen(label), n = 0;
	uint8_t info[2 + 1 + 255 + 1 + 255];	/* struct HkdfLabel */
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	EVP_KDF_CTX *kctx = NULL;
	EVP_KDF *kdf;
	OSSL_PARAM params[5];
	int ret = -EIO;

	if (!s || label_len > 255 - 6 || context_len > 255 || out_len > 0xffff)
		return -EINVAL;
	info[n++] = (uint8_t)(out_len >> 8);
	info[n++] = (uint8_t)out_len;
	info[n++] = (uint8_t)(6 + label_len);
	memcpy(info + n, "tls13 ", 6);
	memcpy(info + n + 6, label, label_len);
	n += 6 + label_len;
	info[n++] = (uint8_t)context_len;
	if (context_len)
		memcpy(info + n, context, context_len);
	n += context_len;

	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
						     (char *)s->md, 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
						      (void *)secret,
						      s->hash_len);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
						      info, n);
	params[4] = OSSL_PARAM_construct_end();
	/* derivation runs once per connection and per KeyUpdate: fetching
	 * here keeps the module free of global state */
	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (kdf)
		kctx = EVP_KDF_CTX_new(kdf);
	if (kctx && EVP_KDF_derive(kctx, out, out_len, params) == 1)
		ret = 0;
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ret;
}

/* Key and IV from d->secret (RFC 8446 7.3); the sequence restarts. */
static int derive_keys(struct tls_dir *d)
{
	const struct suite *s = find_suite(d->suite);
	int ret;

	ret = tls_expand_label(d->suite, d->secret, "key", NULL, 0, d->key,
			       s->key_len);
	if (!ret)
		ret = tls_expand_label(d->suite, d->secret, "iv", NULL, 0,
				       d->iv, TLS_IV_LEN);
	d->seq = 0;
	return ret;
}

int tls_dir_init(struct tls_dir *d, uint16_t suite, const uint8_t *secret,
		 size_t len)
{
	int ret;

	memset(d, 0, sizeof(*d));
	if (!tls_secret_len(suite) || len != tls_secret_len(suite))
		return -EINVAL;
	d->suite = suite;
	memcpy(d->secret, secret, len);
	ret = derive_keys(d);
	if (ret)
		OPENSSL_cleanse(d, sizeof(*d));
	return ret;
}

int tls_dir_update(struct tls_dir *d)
{
	uint8_t next[TLS_MAX_SECRET];
	size_t len = tls_secret_len(d->suite);
	int ret;

	ret = tls_expand_label(d->suite, d->secret, "traffic upd", NULL, 0,
			       next, len);
	if (ret)
		return ret;
	memcpy(d->secret, next, len);
	OPENSSL_cleanse(next, sizeof(next));
	return derive_keys(d);
}

int tls_rl_init(struct tls_rl *rl, uint16_t suite, const uint8_t *rx_secret,
		const uint8_t *tx_secret, size_t len, unsigned flags)
{
	int ret;

	memset(rl, 0, sizeof(*rl));
	ret = tls_dir_init(&rl->rx, suite, rx_secret, len);
	if (!ret)
		ret = tls_dir_init(&rl->tx, suite, tx_secret, len);
	if (ret) {
		tls_rl_exit(rl);
		return ret;
	}
	rl->flags = (uint8_t)(flags & TLS_RL_CLIENT);
	return 0;
}

void tls_rl_exit(struct tls_rl *rl)
{
	OPENSSL_cleanse(rl, sizeof(*rl));
}

/*
 * Keys @ctx for one record of @d: the per-record nonce is the IV XOR the
 * sequence, left-padded to the IV's length (RFC 8446 5.3). The context is
 * shared by every connection of a shard, so the key is set each time; the
 * cipher is passed only when the context holds another one, which keeps
 * OpenSSL from fetching its implementation again for every record.
 */
static int aead_init(EVP_CIPHER_CTX *ctx, const struct tls_dir *d, int enc)
{
	const struct suite *s = find_suite(d->suite);
	uint8_t nonce[TLS_IV_LEN];
	const EVP_CIPHER *c;
	int i;

	if (!s)
		return -EINVAL;	/* a tls_rl never set up */
	c = s->cipher();
	memcpy(nonce, d->iv, TLS_IV_LEN);
	for (i = 0; i < 8; i++)
		nonce[TLS_IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
	if (EVP_CIPHER_CTX_get0_cipher(ctx) &&
	    EVP_CIPHER_CTX_get_nid(ctx) == EVP_CIPHER_get_nid(c))
		c = NULL;
	if (EVP_CipherInit_ex(ctx, c, NULL, d->key, nonce, enc) != 1)
		return -EIO;
	return 0;
}

static void write_header(uint8_t *hdr, size_t cipher_len)
{
	hdr[0] = TLS_CT_APPLICATION_DATA;	/* opaque_type (5.2) */
	hdr[1] = LEGACY_VERSION >> 8;
	hdr[2] = LEGACY_VERSION & 0xff;
	hdr[3] = (uint8_t)(cipher_len >> 8);
	hdr[4] = (uint8_t)cipher_len;
}

/* Where tls_seal() is in its caller's pieces. */
struct cursor {
	const struct iovec *iov;	/* the piece being sealed */
	size_t off;			/* bytes of iov[0] already sealed */
};

static int update(EVP_CIPHER_CTX *ctx, uint8_t *out, const void *in,
		  size_t n)
{
	int outl;

	if (!n)
		return 0;
	if (EVP_EncryptUpdate(ctx, out, &outl, in, (int)n) != 1 ||
	    (size_t)outl != n)
		return -EIO;
	return 0;
}

/*
 * Seals one record of @n content bytes taken from @c, type @type and @pad
 * zero bytes, at @out. The caller checked the room. Returns its length.
 */
static ssize_t seal_one(struct tls_dir *d, EVP_CIPHER_CTX *ctx, uint8_t type,
			struct cursor *c, size_t n, size_t pad, uint8_t *out)
{
	static const uint8_t zeros[256];
	size_t inner = n + 1 + pad, done = 0, k;
	uint8_t *p = out + TLS_HDR_LEN;
	int outl, ret;

	if (d->seq == UINT64_MAX)
		return -EOVERFLOW;
	write_header(out, inner + TLS_TAG_LEN);
	ret = aead_init(ctx, d, 1);
	if (ret)
		return ret;
	if (EVP_EncryptUpdate(ctx, NULL, &outl, out, TLS_HDR_LEN) != 1)
		return -EIO;
	while (done < n) {
		k = c->iov->iov_len - c->off;
		if (k > n - done)
			k = n - done;
		ret = update(ctx, p + done,
			     (const uint8_t *)c->iov->iov_base + c->off, k);
		if (ret)
			return ret;
		done += k;
		c->off += k;
		if (c->off == c->iov->iov_len) {
			c->iov++;
			c->off = 0;
		}
	}
	p[n] = type;
	ret = update(ctx, p + n, p + n, 1);
	for (k = 0; !ret && k < pad; k += sizeof(zeros))
		ret = update(ctx, p + n + 1 + k, zeros,
			     pad - k < sizeof(zeros) ? pad - k : sizeof(zeros));
	if (ret)
		return ret;
	if (EVP_EncryptFinal_ex(ctx, p + inner, &outl) != 1 || outl != 0 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TLS_TAG_LEN,
				p + inner) != 1)
		return -EIO;
	d->seq++;
	return (ssize_t)(TLS_HDR_LEN + inner + TLS_TAG_LEN);
}

size_t tls_seal_bound(size_t len, size_t pad)
{
	size_t records = len ? (len + TLS_MAX_PLAIN - 1) / TLS_MAX_PLAIN : 1;
	size_t room = records * TLS_MAX_PLAIN - len;	/* for padding */

	if (pad < TLS_MAX_PLAIN && records * pad < room)
		room = records * pad;
	return len + room + records * TLS_RECORD_OVERHEAD +
	       TLS_KEY_UPDATE_LEN;
}

ssize_t tls_seal_key_update(struct tls_rl *rl, EVP_CIPHER_CTX *ctx,
			    bool request, uint8_t *out, size_t cap)
{
	uint8_t msg[HS_HDR_LEN + 1] = { HS_KEY_UPDATE, 0, 0, 1, request };
	struct iovec iov = { msg, sizeof(msg) };
	struct cursor c = { &iov, 0 };
	ssize_t n;
	int ret;

	if (cap < TLS_KEY_UPDATE_LEN)
		return -ENOSPC;
	n = seal_one(&rl->tx, ctx, TLS_CT_HANDSHAKE, &c, sizeof(msg), 0, out);
	if (n < 0)
		return n;
	/* the record above is the last under the old key (4.6.3) */
	ret = tls_dir_update(&rl->tx);
	if (ret)
		return ret;
	rl->flags &= (uint8_t)~TLS_RL_UPDATE_OWED;
	return n;
}

ssize_t tls_seal(struct tls_rl *rl, EVP_CIPHER_CTX *ctx, uint8_t type,
		 const struct iovec *iov, unsigned iovcnt, size_t pad,
		 uint8_t *out, size_t cap)
{
	struct cursor c = { iov, 0 };
	size_t total = 0, pos = 0, n, room;
	unsigned i;
	ssize_t ret;

	if (type != TLS_CT_APPLICATION_DATA && type != TLS_CT_HANDSHAKE &&
	    type != TLS_CT_ALERT)
		return -EINVAL;
	for (i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (!total && type != TLS_CT_APPLICATION_DATA)
		return -EINVAL;
	if (cap < tls_seal_bound(total, pad))
		return -ENOSPC;
	do {
		if (type == TLS_CT_APPLICATION_DATA &&
		    ((rl->flags & TLS_RL_UPDATE_OWED) ||
		     rl->tx.seq >= TLS_SEQ_REKEY)) {
			ret = tls_seal_key_update(rl, ctx, false, out + pos,
						  cap - pos);
			if (ret < 0)
				return ret;
			pos += (size_t)ret;
		}
		n = total < TLS_MAX_PLAIN ? total : TLS_MAX_PLAIN;
		/* padding keeps TLSInnerPlaintext to 2^14 + 1 (5.4) */
		room = TLS_MAX_PLAIN - n;
		ret = seal_one(&rl->tx, ctx, type, &c, n,
			       pad < room ? pad : room, out + pos);
		if (ret < 0)
			return ret;
		pos += (size_t)ret;
		total -= n;
	} while (total);
	return (ssize_t)pos;
}

ssize_t tls_seal_alert(struct tls_rl *rl, EVP_CIPHER_CTX *ctx, uint8_t desc,
		       uint8_t *out, size_t cap)
{
	bool warning = desc == TLS_ALERT_CLOSE_NOTIFY ||
		       desc == TLS_ALERT_USER_CANCELED;
	uint8_t msg[2] = { warning ? 1 : 2, desc };
	struct iovec iov = { msg, sizeof(msg) };
	struct cursor c = { &iov, 0 };

	if (cap < TLS_RECORD_OVERHEAD + sizeof(msg))
		return -ENOSPC;
	return seal_one(&rl->tx, ctx, TLS_CT_ALERT, &c, sizeof(msg), 0, out);
}

/*
 * Acts on the handshake messages of one opened record (RFC 8446 4.6).
 * A client sends none but KeyUpdate after its Finished (we never ask for
 * post-handshake authentication); a server also sends NewSessionTicket.
 */
static int handshake(struct tls_rl *rl, const uint8_t *p, size_t n)
{
	size_t len;
	int ret;

	while (n) {
		if (n < HS_HDR_LEN)
			return -EPROTO;
		len = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
		if (len > n - HS_HDR_LEN)
			return -EPROTO;	/* continues in a later record */
		switch (p[0]) {
		case HS_KEY_UPDATE:
			if (len != 1)
				return -EILSEQ;
			if (p[4] > 1)
				return -ERANGE;
			/* the key changes after this record (5.1) */
			if (n != HS_HDR_LEN + 1)
				return -EPROTO;
			ret = tls_dir_update(&rl->rx);
			if (ret)
				return ret;
			if (p[4])
				rl->flags |= TLS_RL_UPDATE_OWED;
			break;
		case HS_NEW_SESSION_TICKET:
			/* we never resume: a client drops the ticket */
			if (!(rl->flags & TLS_RL_CLIENT))
				return -EPROTO;
			break;
		default:
			return -EPROTO;
		}
		p += HS_HDR_LEN + len;
		n -= HS_HDR_LEN + len;
	}
	return 0;
}

ssize_t tls_open(struct tls_rl *rl, EVP_CIPHER_CTX *ctx, uint8_t *buf,
		 size_t len, struct tls_rec *rec)
{
	size_t clen, inner;
	uint8_t *p = buf + TLS_HDR_LEN;
	int outl, ret;

	if (len < TLS_HDR_LEN)
		return -EAGAIN;
	clen = (size_t)buf[3] << 8 | buf[4];
	/* everything the header alone tells is decided before the body */
	if (buf[0] != TLS_CT_APPLICATION_DATA)
		return -EPROTO;
	if ((buf[1] << 8 | buf[2]) != LEGACY_VERSION)
		return -EILSEQ;
	if (clen > TLS_MAX_CIPHER)
		return -EMSGSIZE;
	if (clen < TLS_TAG_LEN)
		return -EBADMSG;
	if (len - TLS_HDR_LEN < clen)
		return -EAGAIN;
	if (rl->rx.seq == UINT64_MAX)
		return -EOVERFLOW;

	inner = clen - TLS_TAG_LEN;
	ret = aead_init(ctx, &rl->rx, 0);
	if (ret)
		return ret;
	if (EVP_DecryptUpdate(ctx, NULL, &outl, buf, TLS_HDR_LEN) != 1)
		return -EIO;
	if (inner && (EVP_DecryptUpdate(ctx, p, &outl, p, (int)inner) != 1 ||
		      (size_t)outl != inner))
		return -EIO;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TLS_TAG_LEN,
				p + inner) != 1)
		return -EIO;
	if (EVP_DecryptFinal_ex(ctx, p + inner, &outl) != 1)
		return -EBADMSG;
	rl->rx.seq++;

	/* the content type is the last non-zero byte; zeros after it pad */
	while (inner && !p[inner - 1])
		inner--;
	if (!inner)
		return -EPROTO;
	rec->type = p[inner - 1];
	rec->data = p;
	rec->len = inner - 1;
	rec->alert = 0;
	/*
	 * Senders keep TLSInnerPlaintext to 2^14 + 1 bytes (5.4), but some
	 * JDK 11 releases padded past it (JDK-8221253); like OpenSSL, only
	 * content over 2^14 is refused, once the padding is gone.
	 */
	if (rec->len > TLS_MAX_PLAIN)
		return -EMSGSIZE;
	switch (rec->type) {
	case TLS_CT_APPLICATION_DATA:
		break;
	case TLS_CT_ALERT:
		if (!rec->len)
			return -EPROTO;
		if (rec->len != 2)
			return -EILSEQ;	/* one alert a record, unfragmented */
		rec->alert = p[1];
		break;
	case TLS_CT_HANDSHAKE:
		if (!rec->len)
			return -EPROTO;
		ret = handshake(rl, p, rec->len);
		if (ret)
			return ret;
		break;
	default:
		return -EPROTO;
	}
	return (ssize_t)(TLS_HDR_LEN + clen);
}

/* ---- a live hand-over ---------------------------------------------- */

#define HO_FLAGS	(TLS_RL_CLIENT | TLS_RL_UPDATE_OWED)

/* The record layer's part of a hand-over record, for suite @s. */
static size_t ho_rl_size(const struct suite *s)
{
	return 4 + 2 * (8 + (size_t)s->hash_len + s->key_len + TLS_IV_LEN);
}

size_t tls_ho_size(const struct tls_ho *h)
{
	const struct suite *s = find_suite(h->rl.tx.suite);

	if (!s || h->rl.rx.suite != h->rl.tx.suite ||
	    h->part_len >= TLS_MAX_RECORD || h->out_len > TLS_HO_MAX_OUT)
		return 0;
	return ho_rl_size(s) + 2 + h->part_len + 4 + h->out_len;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return p + n;
}

static uint8_t *put_dir(uint8_t *p, const struct tls_dir *d,
			const struct suite *s)
{
	p = put_be(p, d->seq, 8);
	memcpy(p, d->secret, s->hash_len);
	p += s->hash_len;
	memcpy(p, d->key, s->key_len);
	p += s->key_len;
	memcpy(p, d->iv, TLS_IV_LEN);
	return p + TLS_IV_LEN;
}

ssize_t tls_ho_write(const struct tls_ho *h, uint8_t *out, size_t cap)
{
	const struct suite *s = find_suite(h->rl.tx.suite);
	size_t n = tls_ho_size(h);
	uint8_t *p = out;

	if (!n)
		return -EINVAL;
	if (cap < n)
		return -ENOSPC;
	*p++ = TLS_HO_VERSION;
	p = put_be(p, s->id, 2);
	*p++ = h->rl.flags & HO_FLAGS;
	p = put_dir(p, &h->rl.rx, s);
	p = put_dir(p, &h->rl.tx, s);
	p = put_be(p, h->part_len, 2);
	if (h->part_len)
		memcpy(p, h->part, h->part_len);
	p = put_be(p + h->part_len, h->out_len, 4);
	if (h->out_len)
		memcpy(p, h->out, h->out_len);
	return (ssize_t)n;
}

/* A cursor over a record being read: a short read leaves it NULL. */
struct rd {
	const uint8_t *p, *end;
};

static const uint8_t *take(struct rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (!p || n > (size_t)(r->end - p)) {
		r->p = NULL;
		return NULL;
	}
	r->p += n;
	return p;
}

static uint64_t get_be(struct rd *r, unsigned n)
{
	const uint8_t *p = take(r, n);
	uint64_t v = 0;

	for (unsigned i = 0; p && i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void get_dir(struct rd *r, struct tls_dir *d, const struct suite *s)
{
	const uint8_t *p;

	d->suite = s->id;
	d->seq = get_be(r, 8);
	p = take(r, (size_t)s->hash_len + s->key_len + TLS_IV_LEN);
	if (!p)
		return;
	memcpy(d->secret, p, s->hash_len);
	memcpy(d->key, p + s->hash_len, s->key_len);
	memcpy(d->iv, p + s->hash_len + s->key_len, TLS_IV_LEN);
}

int tls_ho_read(struct tls_ho *h, const uint8_t *p, size_t len)
{
	struct rd r = { p, p + len };
	const struct suite *s;
	size_t clen;
	uint8_t flags;

	memset(h, 0, sizeof(*h));
	if (!take(&r, 1))
		return -EINVAL;
	if (p[0] != TLS_HO_VERSION)
		return -EPROTONOSUPPORT;
	s = find_suite((uint16_t)get_be(&r, 2));
	flags = (uint8_t)get_be(&r, 1);
	if (!s || !r.p || (flags & ~HO_FLAGS))
		return -EINVAL;
	h->rl.flags = flags;
	get_dir(&r, &h->rl.rx, s);
	get_dir(&r, &h->rl.tx, s);
	h->part_len = (size_t)get_be(&r, 2);
	h->part = take(&r, h->part_len);
	if (h->part && h->part_len >= TLS_HDR_LEN) {
		/* what the header says: within the limit, not yet whole */
		clen = (size_t)h->part[3] << 8 | h->part[4];
		if (clen > TLS_MAX_CIPHER || h->part_len >= TLS_HDR_LEN + clen)
			r.p = NULL;
	}
	h->out_len = (size_t)get_be(&r, 4);
	if (h->out_len > TLS_HO_MAX_OUT)
		r.p = NULL;
	h->out = take(&r, h->out_len);
	if (!r.p || r.p != r.end) {
		tls_rl_exit(&h->rl);
		memset(h, 0, sizeof(*h));
		return -EINVAL;
	}
	if (!h->part_len)
		h->part = NULL;
	if (!h->out_len)
		h->out = NULL;
	return 0;
}

uint8_t tls_alert_of(int err)
{
	switch (err) {
	case -EBADMSG:
		return TLS_ALERT_BAD_RECORD_MAC;
	case -EMSGSIZE:
		return TLS_ALERT_RECORD_OVERFLOW;
	case -EPROTO:
		return TLS_ALERT_UNEXPECTED_MESSAGE;
	case -EILSEQ:
		return TLS_ALERT_DECODE_ERROR;
	case -ERANGE:
		return TLS_ALERT_ILLEGAL_PARAMETER;
	default:
		return TLS_ALERT_INTERNAL_ERROR;
	}
}
