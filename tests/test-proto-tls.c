/* SPDX-License-Identifier: MIT */
/*
 * Description: the TLS 1.3 record layer of proto/tls.c. Key derivation and
 * record protection byte for byte against RFC 8448 section 3 ("Simple 1-RTT
 * Handshake"); every suite's round trip in pieces, padding, several records
 * and key updates; every rule of tls_open() with the alert it maps to,
 * each record fed as every prefix; the sequence limits. Then the switch
 * from OpenSSL at a record boundary: an OpenSSL client and server finish a
 * handshake over memory BIOs, the server SSL* is freed, and tls_rl carries
 * on with the still-live client, key updates both ways, in all suites,
 * handed over twice on the way (tls_ho_write, tls_ho_read) with a record
 * of the client's cut by a read, ours half sent, a KeyUpdate owed; and
 * hand-over records malformed, cut and flipped, refused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "helpers-tls.h"
#include "tls.h"

static EVP_CIPHER_CTX *ctx;	/* one for everything, as a shard has */

static size_t unhex(const char *s, uint8_t *out)
{
	size_t n = 0;
	int hi = -1, v;

	for (; *s; s++) {
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else
			continue;
		if (hi < 0) {
			hi = v;
		} else {
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	return n;
}

/*
 * RFC 8448 section 3, "Simple 1-RTT Handshake" (January 2019),
 * https://www.rfc-editor.org/rfc/rfc8448: TLS_AES_128_GCM_SHA256.
 */
#define C_HS_SECRET "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f " \
	"3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21"
#define C_HS_KEY "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01"
#define C_HS_IV "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f"
#define C_AP_SECRET "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 " \
	"87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5"
#define C_AP_KEY "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51"
#define C_AP_IV "5b 78 92 3d ee 08 57 90 33 e5 23 d9"
#define S_AP_SECRET "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 " \
	"82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43"
#define S_AP_KEY "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56"
#define S_AP_IV "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"
/* {client} construct a Finished handshake message, and its record */
#define C_FINISHED "14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb " \
	"e1 1a 03 9e c1 76 94 fa c6 e9 85 27 b6 42 f2 ed d5 ce 61"
#define C_FINISHED_REC "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 " \
	"a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 " \
	"38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46"
/* {server} construct a NewSessionTicket handshake message, its record */
#define S_NST "04 00 00 c9 00 00 00 1e fa d6 aa c5 02 00 00 00 b2 2c " \
	"03 5d 82 93 59 ee 5f f7 af 4e c9 00 00 00 00 26 2a 64 94 dc 48 6d " \
	"2c 8a 34 cb 33 fa 90 bf 1b 00 70 ad 3c 49 88 83 c9 36 7c 09 a2 be " \
	"78 5a bc 55 cd 22 60 97 a3 a9 82 11 72 83 f8 2a 03 a1 43 ef d3 ff " \
	"5d d3 6d 64 e8 61 be 7f d6 1d 28 27 db 27 9c ce 14 50 77 d4 54 a3 " \
	"66 4d 4e 6d a4 d2 9e e0 37 25 a6 a4 da fc d0 fc 67 d2 ae a7 05 29 " \
	"51 3e 3d a2 67 7f a5 90 6c 5b 3f 7d 8f 92 f2 28 bd a4 0d da 72 14 " \
	"70 f9 fb f2 97 b5 ae a6 17 64 6f ac 5c 03 27 2e 97 07 27 c6 21 a7 " \
	"91 41 ef 5f 7d e6 50 5e 5b fb c3 88 e9 33 43 69 40 93 93 4a e4 d3 " \
	"57 00 08 00 2a 00 04 00 00 04 00"
#define S_NST_REC "17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 " \
	"68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95 d4 1d 6a f8 f6 b5 80 dc " \
	"f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 " \
	"88 91 a3 8e fb cf 57 53 ad 8e f1 70 ad 3c 73 53 d1 6d 9d a7 73 b9 " \
	"ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0 9c 30 ba 1e 62 97 2a c4 6f " \
	"75 f7 b9 81 be 63 43 9b 29 99 ce 13 06 46 15 13 98 91 d5 e4 c5 b4 " \
	"06 f1 6e 3f c1 81 a7 7c a4 75 84 00 25 db 2f 0a 77 f8 1b 5a b0 5b " \
	"94 c0 13 46 75 5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3 47 d1 43 " \
	"f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12 1c 74 bc " \
	"26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 " \
	"6b 3b 6c 67 79 b3 7b f1 59 85 68 4f"
/* {client} and {server} send application_data record: 00 01 .. 31 */
#define C_APP_REC "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 " \
	"28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b " \
	"39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e " \
	"3d ea e6 3a ee bb 21 69 49 15 e4"
#define S_APP_REC "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 " \
	"00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 " \
	"df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab " \
	"f3 32 54 0d d0 32 e1 67 c2 95 5d"
/* {client} and {server} send alert record: close_notify */
#define C_ALERT_REC "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 " \
	"3e fd 6d b6 d0 b0 e3"
#define S_ALERT_REC "17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf " \
	"be 7e fa 7a 88 64 a9"

static int check_keys(const char *name, const char *secret, const char *key,
		      const char *iv)
{
	uint8_t s[32], k[16], v[12];
	struct tls_dir d;

	unhex(secret, s);
	unhex(key, k);
	unhex(iv, v);
	if (tls_dir_init(&d, TLS_AES_128_GCM_SHA256, s, sizeof(s)))
		T_FAIL("%s: tls_dir_init failed", name);
	if (memcmp(d.key, k, sizeof(k)) || memcmp(d.iv, v, sizeof(v)) ||
	    d.seq != 0)
		T_FAIL("%s: key or iv differs from RFC 8448", name);
	return 0;
}

static int test_rfc8448_keys(void)
{
	struct tls_dir d;
	uint8_t s[48];

	if (check_keys("client handshake", C_HS_SECRET, C_HS_KEY, C_HS_IV) ||
	    check_keys("client application", C_AP_SECRET, C_AP_KEY,
		       C_AP_IV) ||
	    check_keys("server application", S_AP_SECRET, S_AP_KEY, S_AP_IV))
		return 1;
	/* a secret of the wrong length or an unknown suite is refused */
	memset(s, 1, sizeof(s));
	T_CHECK(tls_secret_len(TLS_AES_256_GCM_SHA384) == 48);
	T_CHECK(tls_secret_len(0x1304) == 0);
	T_CHECK(tls_dir_init(&d, TLS_AES_128_GCM_SHA256, s, 48) == -EINVAL);
	T_CHECK(tls_dir_init(&d, TLS_AES_256_GCM_SHA384, s, 32) == -EINVAL);
	T_CHECK(tls_dir_init(&d, 0x1304, s, 32) == -EINVAL);
	return 0;
}

/* The 50-byte payload both sides send in RFC 8448 section 3. */
static void payload50(uint8_t *p)
{
	int i;

	for (i = 0; i < 50; i++)
		p[i] = (uint8_t)i;
}

/* @rl as the RFC's client: tx is the client's secret, rx the server's. */
static int rfc_client(struct tls_rl *rl)
{
	uint8_t c[32], s[32];

	unhex(C_AP_SECRET, c);
	unhex(S_AP_SECRET, s);
	T_CHECK(tls_rl_init(rl, TLS_AES_128_GCM_SHA256, s, c, 32,
			    TLS_RL_CLIENT) == 0);
	return 0;
}

static int rfc_server(struct tls_rl *rl)
{
	uint8_t c[32], s[32];

	unhex(C_AP_SECRET, c);
	unhex(S_AP_SECRET, s);
	T_CHECK(tls_rl_init(rl, TLS_AES_128_GCM_SHA256, c, s, 32, 0) == 0);
	return 0;
}

/* Sealing as the RFC's client and server gives its records exactly. */
static int test_rfc8448_seal(void)
{
	uint8_t pay[50], want[300], out[400], nst[205], sec[32], fin[36];
	struct iovec iov[3] = { { pay, 7 }, { pay + 7, 0 }, { pay + 7, 43 } };
	struct tls_rl rl;
	size_t n;
	ssize_t r;

	payload50(pay);
	if (rfc_client(&rl))
		return 1;
	/* the payload in three pieces, one of them empty */
	r = tls_seal(&rl, ctx, TLS_CT_APPLICATION_DATA, iov, 3, 0, out,
		     sizeof(out));
	n = unhex(C_APP_REC, want);
	T_CHECK(r == (ssize_t)n && !memcmp(out, want, n));
	r = tls_seal_alert(&rl, ctx, TLS_ALERT_CLOSE_NOTIFY, out, sizeof(out));
	n = unhex(C_ALERT_REC, want);
	T_CHECK(r == (ssize_t)n && !memcmp(out, want, n));
	T_CHECK(rl.tx.seq == 2);

	if (rfc_server(&rl))
		return 1;
	unhex(S_NST, nst);
	iov[0] = (struct iovec){ nst, sizeof(nst) };
	r = tls_seal(&rl, ctx, TLS_CT_HANDSHAKE, iov, 1, 0, out, sizeof(out));
	n = unhex(S_NST_REC, want);
	T_CHECK(r == (ssize_t)n && !memcmp(out, want, n));
	iov[0] = (struct iovec){ pay, sizeof(pay) };
	r = tls_seal(&rl, ctx, TLS_CT_APPLICATION_DATA, iov, 1, 0, out,
		     sizeof(out));
	n = unhex(S_APP_REC, want);
	T_CHECK(r == (ssize_t)n && !memcmp(out, want, n));
	r = tls_seal_alert(&rl, ctx, TLS_ALERT_CLOSE_NOTIFY, out, sizeof(out));
	n = unhex(S_ALERT_REC, want);
	T_CHECK(r == (ssize_t)n && !memcmp(out, want, n));

	/* the handshake-traffic record: the client's Finished */
	unhex(C_HS_SECRET, sec);
	T_CHECK(tls_dir_init(&rl.tx, TLS_AES_128_GCM_SHA256, sec, 32) == 0);
	unhex(C_FINISHED, fin);
	iov[0] = (struct iovec){ fin, sizeof(fin) };
	r = tls_seal(&rl, ctx, TLS_CT_HANDSHAKE, iov, 1, 0, out, sizeof(out));
	n = unhex(C_FINISHED_REC, want);
	T_CHECK(r == (ssize_t)n && !memcmp(out, want, n));
	tls_rl_exit(&rl);
	return 0;
}

/* Opens the hex record @hex with @rl; checks type and content. */
static int open_hex(struct tls_rl *rl, const char *hex, uint8_t type,
		    const uint8_t *want, size_t want_len)
{
	uint8_t buf[300];
	struct tls_rec rec;
	size_t n = unhex(hex, buf);
	ssize_t r;

	r = tls_open(rl, ctx, buf, n, &rec);
	if (r != (ssize_t)n)
		T_FAIL("tls_open: %zd, want %zu", r, n);
	if (rec.type != type || rec.len != want_len ||
	    memcmp(rec.data, want, want_len))
		T_FAIL("record of type %u, %zu bytes: not as sent", rec.type,
		       rec.len);
	return 0;
}

static int test_rfc8448_open(void)
{
	uint8_t pay[50], nst[205], buf[300], sec[32];
	uint8_t close_notify[2] = { 1, 0 };
	struct tls_rl rl;
	struct tls_rec rec;
	size_t n;

	payload50(pay);
	unhex(S_NST, nst);
	/* the client opens the server's ticket (ignored), data and alert */
	if (rfc_client(&rl) ||
	    open_hex(&rl, S_NST_REC, TLS_CT_HANDSHAKE, nst, sizeof(nst)) ||
	    open_hex(&rl, S_APP_REC, TLS_CT_APPLICATION_DATA, pay, 50) ||
	    open_hex(&rl, S_ALERT_REC, TLS_CT_ALERT, close_notify, 2))
		return 1;
	T_CHECK(rl.rx.seq == 3 && !(rl.flags & TLS_RL_UPDATE_OWED));

	/* the server opens the client's; a ticket from a client is wrong */
	if (rfc_server(&rl) ||
	    open_hex(&rl, C_APP_REC, TLS_CT_APPLICATION_DATA, pay, 50) ||
	    open_hex(&rl, C_ALERT_REC, TLS_CT_ALERT, close_notify, 2))
		return 1;
	if (rfc_server(&rl))
		return 1;
	T_CHECK(tls_dir_init(&rl.rx, TLS_AES_128_GCM_SHA256, rl.tx.secret,
			     32) == 0);
	n = unhex(S_NST_REC, buf);
	T_CHECK(tls_open(&rl, ctx, buf, n, &rec) == -EPROTO);
	T_CHECK(tls_alert_of(-EPROTO) == TLS_ALERT_UNEXPECTED_MESSAGE);

	/* a Finished after the handshake is unexpected too */
	unhex(C_HS_SECRET, sec);
	T_CHECK(tls_dir_init(&rl.rx, TLS_AES_128_GCM_SHA256, sec, 32) == 0);
	n = unhex(C_FINISHED_REC, buf);
	T_CHECK(tls_open(&rl, ctx, buf, n, &rec) == -EPROTO);
	tls_rl_exit(&rl);
	return 0;
}

/* A client and a server record layer on fresh random secrets. */
static int pair(uint16_t suite, struct tls_rl *c, struct tls_rl *s)
{
	uint8_t a[TLS_MAX_SECRET], b[TLS_MAX_SECRET];
	size_t len = tls_secret_len(suite);

	T_CHECK(RAND_bytes(a, sizeof(a)) == 1 && RAND_bytes(b, sizeof(b)) == 1);
	T_CHECK(tls_rl_init(c, suite, b, a, len, TLS_RL_CLIENT) == 0);
	T_CHECK(tls_rl_init(s, suite, a, b, len, 0) == 0);
	return 0;
}

/*
 * Opens every record in @buf[0..@len) with @rl, appending application
 * data to @got (@got_len so far). Returns the record count or -1.
 */
static int open_all(struct tls_rl *rl, uint8_t *buf, size_t len,
		    uint8_t *got, size_t *got_len, size_t pad)
{
	struct tls_rec rec;
	size_t pos = 0;
	int nrec = 0;
	ssize_t r;

	while (pos < len) {
		r = tls_open(rl, ctx, buf + pos, len - pos, &rec);
		if (r < 0) {
			fprintf(stderr, "tls_open at %zu: %zd\n", pos, r);
			return -1;
		}
		if ((size_t)r > TLS_MAX_RECORD ||
		    rec.len > TLS_MAX_PLAIN) {
			fprintf(stderr, "record of %zd bytes\n", r);
			return -1;
		}
		/* the padding went on the wire, cut to the record's room */
		if (rec.type == TLS_CT_APPLICATION_DATA && pad &&
		    (size_t)r != TLS_RECORD_OVERHEAD + rec.len +
		    (pad < TLS_MAX_PLAIN - rec.len ? pad :
		     TLS_MAX_PLAIN - rec.len)) {
			fprintf(stderr, "padding not as asked\n");
			return -1;
		}
		if (rec.type == TLS_CT_APPLICATION_DATA) {
			memcpy(got + *got_len, rec.data, rec.len);
			*got_len += rec.len;
		}
		pos += (size_t)r;
		nrec++;
	}
	return nrec;
}

#define BIG	(3 * TLS_MAX_PLAIN + 5000)

static int round_trip(uint16_t suite, size_t len, size_t pad)
{
	static uint8_t in[BIG], out[4 * TLS_MAX_RECORD], got[BIG];
	struct iovec iov[5];
	struct tls_rl c, s;
	size_t got_len = 0, cut1 = len / 3, cut2 = len / 3 + len / 4;
	ssize_t r;
	int nrec;

	if (pair(suite, &c, &s))
		return 1;
	T_CHECK(RAND_bytes(in, (int)(len ? len : 1)) == 1);
	/* uneven pieces, empty ones between, as a frame and its header */
	iov[0] = (struct iovec){ in, cut1 };
	iov[1] = (struct iovec){ in + cut1, 0 };
	iov[2] = (struct iovec){ in + cut1, cut2 - cut1 };
	iov[3] = (struct iovec){ in + cut2, len - cut2 };
	iov[4] = (struct iovec){ in + len, 0 };
	r = tls_seal(&c, ctx, TLS_CT_APPLICATION_DATA, iov, 5, pad, out,
		     sizeof(out));
	if (r < 0 || (size_t)r > tls_seal_bound(len, pad))
		T_FAIL("suite %#x len %zu pad %zu: seal %zd", suite, len, pad,
		       r);
	nrec = open_all(&s, out, (size_t)r, got, &got_len, pad);
	if (nrec < 0)
		T_FAIL("suite %#x len %zu pad %zu: open failed", suite, len,
		       pad);
	if (got_len != len || memcmp(got, in, len))
		T_FAIL("suite %#x len %zu pad %zu: content differs", suite,
		       len, pad);
	if ((size_t)nrec != (len ? (len + TLS_MAX_PLAIN - 1) / TLS_MAX_PLAIN
			     : 1) || s.rx.seq != (uint64_t)nrec ||
	    c.tx.seq != s.rx.seq)
		T_FAIL("suite %#x len %zu: %d records", suite, len, nrec);
	/* too small a buffer writes nothing */
	T_CHECK(tls_seal(&c, ctx, TLS_CT_APPLICATION_DATA, iov, 5, pad, out,
			 tls_seal_bound(len, pad) - 1) == -ENOSPC);
	T_CHECK(c.tx.seq == s.rx.seq);
	return 0;
}

static const uint16_t all_suites[] = {
	TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
	TLS_CHACHA20_POLY1305_SHA256,
};

static int test_round_trips(void)
{
	static const size_t lens[] = { 0, 1, 50, 16383, 16384, 16385, BIG };
	static const size_t pads[] = { 0, 1, 255, 300, 20000 };
	size_t i, j, k;

	for (i = 0; i < 3; i++)
		for (j = 0; j < sizeof(lens) / sizeof(lens[0]); j++)
			for (k = 0; k < sizeof(pads) / sizeof(pads[0]); k++)
				if (round_trip(all_suites[i], lens[j],
					       pads[k]))
					return 1;
	return 0;
}

/*
 * Seals the TLSInnerPlaintext @inner[0..@n) (content, type, padding) as
 * its own record with @d's key and IV, straight on the EVP interface:
 * records tls_seal() would never write.
 */
static size_t raw_seal(struct tls_dir *d, const uint8_t *inner, size_t n,
		       uint8_t *out)
{
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	uint8_t nonce[12];
	int outl, i;

	memcpy(nonce, d->iv, 12);
	for (i = 0; i < 8; i++)
		nonce[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
	out[0] = 23;
	out[1] = 3;
	out[2] = 3;
	out[3] = (uint8_t)((n + 16) >> 8);
	out[4] = (uint8_t)(n + 16);
	EVP_EncryptInit_ex(x, EVP_aes_128_gcm(), NULL, d->key, nonce);
	EVP_EncryptUpdate(x, NULL, &outl, out, 5);
	EVP_EncryptUpdate(x, out + 5, &outl, inner, (int)n);
	EVP_EncryptFinal_ex(x, out + 5 + n, &outl);
	EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out + 5 + n);
	EVP_CIPHER_CTX_free(x);
	d->seq++;
	return n + 21;
}

/* tls_open() on a copy of @rl, for t_check_prefixes(): no state kept. */
static ssize_t open_fn(void *arg, const uint8_t *p, size_t n)
{
	struct tls_rl rl = *(struct tls_rl *)arg;
	struct tls_rec rec;

	return tls_open(&rl, ctx, (uint8_t *)p, n, &rec);
}

/*
 * The record with inner plaintext @inner[0..@n) gives @want (and the
 * alert @alert) on a fresh server, fed as every prefix.
 */
static int check_inner(const char *name, const uint8_t *inner, size_t n,
		       ssize_t want, uint8_t alert)
{
	static uint8_t rec[TLS_MAX_RECORD + 64];
	struct tls_rl c, s;
	size_t len;

	if (rfc_client(&c) || rfc_server(&s))
		return 1;
	len = raw_seal(&c.tx, inner, n, rec);
	if (t_check_prefixes(name, "record", rec, len,
			     want >= 0 ? (ssize_t)len : want, 0, open_fn, &s))
		return 1;
	if (want < 0 && tls_alert_of((int)want) != alert)
		T_FAIL("%s: alert %u, want %u", name, tls_alert_of((int)want),
		       alert);
	return 0;
}

/* One crafted TLSInnerPlaintext and what opening it must give. */
struct inner_case {
	const char *name;
	uint8_t bytes[12];	/* content, type; the rest zero padding */
	size_t len;
	ssize_t want;		/* 0: opens */
	uint8_t alert;
};

static const struct inner_case inner_cases[] = {
	/* padding after the type is stripped; all zeros has no type */
	{ "padded", "x\x17", 40, 0, 0 },
	{ "all zero", "", 30, -EPROTO, TLS_ALERT_UNEXPECTED_MESSAGE },
	{ "empty", "", 0, -EPROTO, TLS_ALERT_UNEXPECTED_MESSAGE },
	/* empty application data is allowed; an empty alert is not */
	{ "empty data", "\x17", 1, 0, 0 },
	{ "empty alert", "\x15", 1, -EPROTO, TLS_ALERT_UNEXPECTED_MESSAGE },
	{ "empty handshake", "\x16", 3, -EPROTO,
	  TLS_ALERT_UNEXPECTED_MESSAGE },
	/* unknown and ChangeCipherSpec inner types */
	{ "unknown type", "\x01\x63", 2, -EPROTO,
	  TLS_ALERT_UNEXPECTED_MESSAGE },
	{ "inner ccs", "\x01\x14", 2, -EPROTO, TLS_ALERT_UNEXPECTED_MESSAGE },
	/* alerts: exactly two bytes */
	{ "alert", "\x02\x14\x15", 3, 0, 0 },
	{ "alert of 3", "\x02\x14\x00\x15", 4, -EILSEQ,
	  TLS_ALERT_DECODE_ERROR },
	/* KeyUpdate: request 0 or 1, body of 1, last in its record */
	{ "key update 2", "\x18\x00\x00\x01\x02\x16", 6, -ERANGE,
	  TLS_ALERT_ILLEGAL_PARAMETER },
	{ "key update long", "\x18\x00\x00\x02\x00\x00\x16", 7, -EILSEQ,
	  TLS_ALERT_DECODE_ERROR },
	{ "two key updates", "\x18\x00\x00\x01\x00\x18\x00\x00\x01\x00\x16",
	  11, -EPROTO, TLS_ALERT_UNEXPECTED_MESSAGE },
	/* a handshake message cut at the record's end; an unknown one */
	{ "cut message", "\x18\x00\x00\x01\x16", 5, -EPROTO,
	  TLS_ALERT_UNEXPECTED_MESSAGE },
	{ "cut header", "\x18\x00\x00\x16", 4, -EPROTO,
	  TLS_ALERT_UNEXPECTED_MESSAGE },
	{ "certificate request", "\x0d\x00\x00\x00\x16", 5, -EPROTO,
	  TLS_ALERT_UNEXPECTED_MESSAGE },
};

static int test_inner_rules(void)
{
	static uint8_t big[TLS_MAX_PLAIN + 1 + TLS_TAG_LEN];
	const struct inner_case *t;
	uint8_t b[64];
	size_t i;

	for (i = 0; i < sizeof(inner_cases) / sizeof(inner_cases[0]); i++) {
		t = &inner_cases[i];
		memset(b, 0, sizeof(b));
		memcpy(b, t->bytes, sizeof(t->bytes));
		if (check_inner(t->name, b, t->len, t->want, t->alert))
			return 1;
	}
	/* 2^14 content and its type fit, and padding past them as some JDKs
	 * send it; one byte of content more does not */
	big[TLS_MAX_PLAIN] = TLS_CT_APPLICATION_DATA;
	if (check_inner("full record", big, TLS_MAX_PLAIN + 1, 0, 0) ||
	    check_inner("padded past 2^14+1", big, sizeof(big), 0, 0))
		return 1;
	big[TLS_MAX_PLAIN] = 'x';
	big[TLS_MAX_PLAIN + 1] = TLS_CT_APPLICATION_DATA;
	if (check_inner("content overflow", big, TLS_MAX_PLAIN + 2, -EMSGSIZE,
			TLS_ALERT_RECORD_OVERFLOW))
		return 1;
	return 0;
}

/* Header checks decide from 5 bytes, before any body arrives. */
static int check_header(const char *name, const uint8_t hdr[5],
			ssize_t want, uint8_t alert)
{
	struct tls_rl s;

	if (rfc_server(&s))
		return 1;
	if (t_check_prefixes(name, "record", hdr, 5, want, 5, open_fn, &s))
		return 1;
	if (tls_alert_of((int)want) != alert)
		T_FAIL("%s: alert %u", name, tls_alert_of((int)want));
	return 0;
}

static int test_headers(void)
{
	uint8_t h[5] = { 23, 3, 3, 0, 0 };
	struct tls_rl s;

	/* 2^14 + 256 is the ciphertext's limit; any more overflows too */
	h[3] = (TLS_MAX_CIPHER + 1) >> 8;
	h[4] = (TLS_MAX_CIPHER + 1) & 0xff;
	if (check_header("over 2^14+256", h, -EMSGSIZE,
			 TLS_ALERT_RECORD_OVERFLOW))
		return 1;
	h[3] = h[4] = 0xff;
	if (check_header("65535", h, -EMSGSIZE, TLS_ALERT_RECORD_OVERFLOW))
		return 1;
	/* 2^14 + 256 itself waits for its body */
	h[3] = TLS_MAX_CIPHER >> 8;
	h[4] = TLS_MAX_CIPHER & 0xff;
	if (rfc_server(&s) || open_fn(&s, h, 5) != -EAGAIN)
		T_FAIL("2^14+256: refused from its header");
	h[3] = 0;
	h[4] = 15;
	if (check_header("shorter than a tag", h, -EBADMSG,
			 TLS_ALERT_BAD_RECORD_MAC))
		return 1;
	h[4] = 20;
	h[0] = TLS_CT_CHANGE_CIPHER_SPEC;
	if (check_header("ccs", h, -EPROTO, TLS_ALERT_UNEXPECTED_MESSAGE))
		return 1;
	h[0] = TLS_CT_HANDSHAKE;
	if (check_header("plain handshake", h, -EPROTO,
			 TLS_ALERT_UNEXPECTED_MESSAGE))
		return 1;
	h[0] = TLS_CT_APPLICATION_DATA;
	h[2] = 1;
	if (check_header("version", h, -EILSEQ, TLS_ALERT_DECODE_ERROR))
		return 1;
	return 0;
}

/*
 * Every byte of a record flipped: the header bytes as their own rules say,
 * the ciphertext and tag as bad_record_mac; the sequence stays, so the
 * untouched record still opens afterwards.
 */
static int test_tampering(void)
{
	uint8_t rec[200], bad[200], pay[50];
	struct iovec iov = { pay, sizeof(pay) };
	struct tls_rl c, s;
	struct tls_rec out;
	size_t i, n, clen;
	ssize_t r, want;
	int bit;

	payload50(pay);
	for (bit = 0; bit < 8; bit += 7) {
		if (rfc_client(&c) || rfc_server(&s))
			return 1;
		r = tls_seal(&c, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 0, rec,
			     sizeof(rec));
		T_CHECK(r > 0);
		n = (size_t)r;
		for (i = 0; i < n; i++) {
			memcpy(bad, rec, n);
			bad[i] ^= (uint8_t)(1 << bit);
			r = tls_open(&s, ctx, bad, n, &out);
			want = i == 0 ? -EPROTO : i < 3 ? -EILSEQ : -EBADMSG;
			/* a length over the limit overflows, a longer one
			 * waits for more, a shorter one fails the tag */
			clen = (size_t)(bad[3] << 8 | bad[4]);
			if (clen > TLS_MAX_CIPHER)
				want = -EMSGSIZE;
			else if (clen + TLS_HDR_LEN > n)
				want = -EAGAIN;
			if (r != want)
				T_FAIL("byte %zu bit %d: %zd, want %zd", i, bit,
				       r, want);
			T_CHECK(s.rx.seq == 0);
		}
		if (open_all(&s, rec, n, bad, &(size_t){ 0 }, 0) != 1)
			return 1;
		T_CHECK(!memcmp(bad, pay, sizeof(pay)));
	}
	/* a record opened twice (replayed) fails: the nonce moved on */
	if (rfc_client(&c) || rfc_server(&s))
		return 1;
	r = tls_seal(&c, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 0, rec,
		     sizeof(rec));
	memcpy(bad, rec, (size_t)r);
	T_CHECK(tls_open(&s, ctx, rec, (size_t)r, &out) == r);
	T_CHECK(tls_open(&s, ctx, bad, (size_t)r, &out) == -EBADMSG);
	return 0;
}

/* Two records back to back, the second cut at every length. */
static int test_truncation(void)
{
	uint8_t buf[400], pay[50];
	struct iovec iov = { pay, sizeof(pay) };
	struct tls_rl c, s;
	struct tls_rec rec;
	ssize_t a, b;
	size_t k;

	payload50(pay);
	if (rfc_client(&c) || rfc_server(&s))
		return 1;
	a = tls_seal(&c, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 0, buf,
		     sizeof(buf));
	b = tls_seal(&c, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 7, buf + a,
		     sizeof(buf) - (size_t)a);
	T_CHECK(a > 0 && b > 0);
	/* the first record alone, every prefix and byte by byte */
	if (t_check_prefixes("first", "record", buf, (size_t)(a + b), a, 0,
			     open_fn, &s))
		return 1;
	T_CHECK(tls_open(&s, ctx, buf, (size_t)(a + b), &rec) == a);
	for (k = 0; k < (size_t)b; k++)
		T_CHECK(open_fn(&s, buf + a, k) == -EAGAIN);
	T_CHECK(tls_open(&s, ctx, buf + a, (size_t)b, &rec) == b);
	T_CHECK(rec.len == 50 && !memcmp(rec.data, pay, 50));
	return 0;
}

/*
 * The peer asks for a KeyUpdate: the next application data from us is
 * preceded by ours. The sequence limit does the same on its own.
 */
static int test_key_updates(void)
{
	static uint8_t out[3 * TLS_MAX_RECORD], got[2 * TLS_MAX_PLAIN];
	static uint8_t in[TLS_MAX_PLAIN + 100];
	uint8_t pay[50], old[TLS_MAX_SECRET];
	struct iovec iov = { pay, sizeof(pay) }, big = { in, sizeof(in) };
	struct tls_rl c, s;
	size_t got_len = 0, i;
	ssize_t r;

	payload50(pay);
	for (i = 0; i < 3; i++) {
		if (pair(all_suites[i], &c, &s))
			return 1;
		memcpy(old, s.tx.secret, sizeof(old));
		/* the client asks; the server's rx moves on */
		r = tls_seal_key_update(&c, ctx, true, out, sizeof(out));
		T_CHECK(r == TLS_KEY_UPDATE_LEN && c.tx.seq == 0);
		T_CHECK(open_all(&s, out, (size_t)r, got, &got_len, 0) == 1);
		T_CHECK(s.rx.seq == 0 && (s.flags & TLS_RL_UPDATE_OWED));
		T_CHECK(!memcmp(s.rx.secret, c.tx.secret, TLS_MAX_SECRET));
		/* the server answers before its data, once */
		r = tls_seal(&s, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 0, out,
			     sizeof(out));
		T_CHECK(r == TLS_KEY_UPDATE_LEN + TLS_RECORD_OVERHEAD + 50);
		T_CHECK(!(s.flags & TLS_RL_UPDATE_OWED) && s.tx.seq == 1);
		T_CHECK(memcmp(old, s.tx.secret, sizeof(old)));
		got_len = 0;
		T_CHECK(open_all(&c, out, (size_t)r, got, &got_len, 0) == 2);
		T_CHECK(got_len == 50 && !memcmp(got, pay, 50));
		T_CHECK(!(c.flags & TLS_RL_UPDATE_OWED));
		r = tls_seal(&s, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 0, out,
			     sizeof(out));
		T_CHECK(r == TLS_RECORD_OVERHEAD + 50);
		T_CHECK(open_all(&c, out, (size_t)r, got, &got_len, 0) == 1);

		/* the limit, crossed in the middle of one call */
		s.tx.seq = c.rx.seq = TLS_SEQ_REKEY - 1;
		r = tls_seal(&s, ctx, TLS_CT_APPLICATION_DATA, &big, 1, 0, out,
			     sizeof(out));
		got_len = 0;
		T_CHECK(open_all(&c, out, (size_t)r, got, &got_len, 0) == 3);
		T_CHECK(got_len == sizeof(in) && s.tx.seq == 1 &&
			c.rx.seq == 1);
		T_CHECK(!memcmp(c.rx.secret, s.tx.secret, TLS_MAX_SECRET));

		/* an update without request owes nothing */
		r = tls_seal_key_update(&c, ctx, false, out, sizeof(out));
		T_CHECK(open_all(&s, out, (size_t)r, got, &got_len, 0) == 1);
		T_CHECK(!(s.flags & TLS_RL_UPDATE_OWED));
		T_CHECK(tls_seal_key_update(&c, ctx, false, out,
					    TLS_KEY_UPDATE_LEN - 1) == -ENOSPC);
	}
	return 0;
}

/* The nonce uses all 64 bits of the sequence; the last one is refused. */
static int test_sequence_limits(void)
{
	uint8_t out[200], pay[50], inner[51], ref[200];
	struct tls_dir d;
	struct iovec iov = { pay, sizeof(pay) };
	struct tls_rl c, s;
	struct tls_rec rec;
	ssize_t r;

	payload50(pay);
	if (rfc_client(&c) || rfc_server(&s))
		return 1;
	/* handshake records do not rekey: they reach any sequence */
	c.tx.seq = s.rx.seq = 0xfedcba9876543210ull;
	d = c.tx;
	r = tls_seal(&c, ctx, TLS_CT_HANDSHAKE, &iov, 1, 0, out, sizeof(out));
	T_CHECK(r > 0);
	/* the same record with the nonce made here: all 64 bits count */
	memcpy(inner, pay, sizeof(pay));
	inner[50] = TLS_CT_HANDSHAKE;
	T_CHECK(raw_seal(&d, inner, sizeof(inner), ref) == (size_t)r);
	T_CHECK(!memcmp(ref, out, (size_t)r));
	s.rx.seq--;	/* the wrong nonce fails */
	T_CHECK(tls_open(&s, ctx, out, (size_t)r, &rec) == -EBADMSG);
	s.rx.seq++;
	c.tx.seq = UINT64_MAX - 1;
	s.rx.seq = UINT64_MAX - 1;
	r = tls_seal_alert(&c, ctx, TLS_ALERT_USER_CANCELED, out, sizeof(out));
	T_CHECK(r == TLS_RECORD_OVERHEAD + 2 && c.tx.seq == UINT64_MAX);
	T_CHECK(tls_open(&s, ctx, out, (size_t)r, &rec) == r);
	T_CHECK(rec.type == TLS_CT_ALERT && rec.data[0] == 1 &&
		rec.alert == TLS_ALERT_USER_CANCELED);
	/* no wrap: sealing and opening stop at 2^64 - 1 */
	T_CHECK(tls_seal_alert(&c, ctx, 0, out, sizeof(out)) == -EOVERFLOW);
	T_CHECK(tls_seal(&c, ctx, TLS_CT_HANDSHAKE, &iov, 1, 0, out,
			 sizeof(out)) == -EOVERFLOW);
	T_CHECK(tls_open(&s, ctx, out, (size_t)r, &rec) == -EOVERFLOW);
	T_CHECK(tls_alert_of(-EOVERFLOW) == TLS_ALERT_INTERNAL_ERROR);
	/* application data rekeys first, so it goes on */
	c.tx.seq = UINT64_MAX - 1;
	r = tls_seal(&c, ctx, TLS_CT_APPLICATION_DATA, &iov, 1, 0, out,
		     sizeof(out));
	T_CHECK(r == TLS_KEY_UPDATE_LEN + TLS_RECORD_OVERHEAD + 50);
	T_CHECK(c.tx.seq == 1);
	/* fatal alerts say so in their level byte */
	r = tls_seal_alert(&c, ctx, TLS_ALERT_BAD_RECORD_MAC, out, sizeof(out));
	s.rx = c.tx;
	s.rx.seq--;
	T_CHECK(tls_open(&s, ctx, out, (size_t)r, &rec) == r);
	T_CHECK(rec.data[0] == 2 && rec.alert == TLS_ALERT_BAD_RECORD_MAC);
	/* bad arguments */
	T_CHECK(tls_seal(&c, ctx, TLS_CT_ALERT, &iov, 0, 0, out,
			 sizeof(out)) == -EINVAL);
	T_CHECK(tls_seal(&c, ctx, TLS_CT_CHANGE_CIPHER_SPEC, &iov, 1, 0, out,
			 sizeof(out)) == -EINVAL);
	memset(&s, 0, sizeof(s));	/* never set up */
	T_CHECK(tls_open(&s, ctx, out, (size_t)r, &rec) == -EINVAL);
	T_CHECK(sizeof(struct tls_rl) <= 256);
	return 0;
}

static ssize_t ho_read_fn(void *h, const uint8_t *p, size_t n)
{
	return tls_ho_read(h, p, n);
}

/*
 * tls_ho_read() on an exact-size heap copy (ASan sees a read past), so
 * the part and out it points to are gone on return: lengths only.
 */
static int ho_read_copy(struct tls_ho *h, const uint8_t *p, size_t n)
{
	return (int)t_parse_copy(ho_read_fn, h, p, n);
}

/* Writes @h into @out, then reads it back as the test's @want says. */
static int ho_case(const char *name, struct tls_ho *h, int want)
{
	static uint8_t out[TLS_HO_MAX_RL + 2 * TLS_MAX_RECORD];
	struct tls_ho got;
	ssize_t n = tls_ho_write(h, out, sizeof(out));
	int r;

	if (n < 0)
		T_FAIL("%s: tls_ho_write: %zd", name, n);
	r = ho_read_copy(&got, out, (size_t)n);
	if (r != want)
		T_FAIL("%s: tls_ho_read: %d, want %d", name, r, want);
	return 0;
}

/*
 * Hand-over records refused: every cut, a byte more, another version,
 * an unknown suite or flag, a part that is a whole record or has a
 * header past the limit, too much to send; every byte flipped is read
 * or refused, never read past. The sizes of an idle connection's record.
 */
static int test_ho_records(void)
{
	static const size_t sizes[3] = { 146, 210, 178 };
	static uint8_t big[TLS_MAX_RECORD + 1], rec[TLS_HO_MAX_RL + 64];
	uint8_t part[TLS_HDR_LEN + 2] = { 23, 3, 3, 0, 40, 0xde, 0xad };
	uint8_t out[9] = "sealed..";
	struct tls_rl c, srv;
	struct tls_ho h = { 0 }, got;
	size_t i, n;
	ssize_t w;
	int r;

	for (i = 0; i < 3; i++) {
		if (pair(all_suites[i], &c, &srv))
			return 1;
		h.rl = srv;
		T_CHECK(tls_ho_size(&h) == sizes[i]);
		if (ho_case("idle", &h, 0))
			return 1;
	}
	h.part = part;
	h.part_len = sizeof(part);
	h.out = out;
	h.out_len = sizeof(out);
	w = tls_ho_write(&h, rec, sizeof(rec));
	T_CHECK(w == (ssize_t)(sizes[2] + sizeof(part) + sizeof(out)));
	n = (size_t)w;
	T_CHECK(tls_ho_read(&got, rec, n) == 0);
	T_CHECK(got.part_len == sizeof(part) && got.out_len == sizeof(out));
	T_CHECK(!memcmp(got.part, part, sizeof(part)) &&
		!memcmp(got.out, out, sizeof(out)));
	for (i = 0; i < n; i++)
		if (ho_read_copy(&got, rec, i) != -EINVAL)
			T_FAIL("cut at %zu: read", i);
	T_CHECK(got.rl.tx.suite == 0);	/* wiped */
	T_CHECK(ho_read_copy(&got, rec, n + 1) == -EINVAL);	/* the 0 after */
	rec[0] = TLS_HO_VERSION + 1;
	T_CHECK(ho_read_copy(&got, rec, n) == -EPROTONOSUPPORT);
	rec[0] = TLS_HO_VERSION;
	rec[2] = 0x04;				/* suite 0x1304 */
	T_CHECK(ho_read_copy(&got, rec, n) == -EINVAL);
	rec[2] = 0x03;
	rec[3] = 0x80;				/* a flag nobody knows */
	T_CHECK(ho_read_copy(&got, rec, n) == -EINVAL);
	rec[3] = TLS_RL_UPDATE_OWED;
	T_CHECK(ho_read_copy(&got, rec, n) == 0 &&
		got.rl.flags == TLS_RL_UPDATE_OWED);
	/* every byte flipped: read as something, or refused */
	for (i = 0; i < n; i++) {
		rec[i] ^= 0x41;
		r = ho_read_copy(&got, rec, n);
		rec[i] ^= 0x41;
		if (r && r != -EINVAL && r != -EPROTONOSUPPORT)
			T_FAIL("byte %zu flipped: %d", i, r);
		if (!r && (got.part_len > TLS_MAX_RECORD ||
			   got.out_len > TLS_HO_MAX_OUT))
			T_FAIL("byte %zu flipped: read past the limits", i);
	}
	/* a part that is a whole record would have been opened */
	part[4] = 2;
	if (ho_case("whole part", &h, -EINVAL))
		return 1;
	part[3] = (TLS_MAX_CIPHER + 1) >> 8;	/* a header past the limit */
	part[4] = (TLS_MAX_CIPHER + 1) & 0xff;
	if (ho_case("part too long", &h, -EINVAL))
		return 1;
	/* the header alone is not yet known: any 4 bytes may be carried */
	h.part_len = TLS_HDR_LEN - 1;
	if (ho_case("part of a header", &h, 0))
		return 1;
	/* what cannot be written */
	h.part = big;
	h.part_len = sizeof(big);
	T_CHECK(tls_ho_write(&h, rec, sizeof(rec)) == -EINVAL);
	h.part_len = 0;
	h.out_len = TLS_HO_MAX_OUT + 1;
	T_CHECK(tls_ho_size(&h) == 0 &&
		tls_ho_write(&h, rec, sizeof(rec)) == -EINVAL);
	h.out_len = 1;
	h.rl.rx.suite = TLS_AES_128_GCM_SHA256;	/* two suites */
	T_CHECK(tls_ho_write(&h, rec, sizeof(rec)) == -EINVAL);
	memset(&h.rl, 0, sizeof(h.rl));		/* never set up */
	T_CHECK(tls_ho_write(&h, rec, sizeof(rec)) == -EINVAL);
	/* an out length past the limit, as read */
	h.rl = srv;
	w = tls_ho_write(&h, rec, sizeof(rec));
	T_CHECK(w > 5);
	n = (size_t)w;
	rec[n - 5] = 0xff;		/* out length u32 before its 1 byte */
	T_CHECK(ho_read_copy(&got, rec, n) == -EINVAL);
	tls_rl_exit(&c);
	tls_rl_exit(&srv);
	return 0;
}

/* ---- switch-over from a live OpenSSL handshake ---- */

struct secrets {
	uint8_t client[TLS_MAX_SECRET], server[TLS_MAX_SECRET];
	size_t client_len, server_len;
};

static struct secrets keylog;

/* SSL_CTX_set_keylog_callback(): "LABEL <client_random> <secret>". */
static void on_keylog(const SSL *ssl, const char *line)
{
	const char *sp = strrchr(line, ' ');
	uint8_t tmp[2 * TLS_MAX_SECRET];
	size_t n;

	(void)ssl;
	if (!sp || strlen(sp + 1) > 2 * TLS_MAX_SECRET)
		return;
	n = unhex(sp + 1, tmp);
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24)) {
		memcpy(keylog.client, tmp, n);
		keylog.client_len = n;
	} else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24)) {
		memcpy(keylog.server, tmp, n);
		keylog.server_len = n;
	}
}

static EVP_PKEY *pkey;
static X509 *cert;

/* Moves everything @from holds into @to. */
static void pump(BIO *from, BIO *to)
{
	char buf[4096];
	int n;

	while ((n = BIO_read(from, buf, sizeof(buf))) > 0)
		BIO_write(to, buf, n);
}

static size_t drain(BIO *b, uint8_t *out, size_t cap)
{
	size_t len = 0;
	int n;

	while (len < cap &&
	       (n = BIO_read(b, out + len, (int)(cap - len))) > 0)
		len += (size_t)n;
	return len;
}

/* The records in @p[0..@n), or -1 if it does not end on a boundary. */
static int count_records(const uint8_t *p, size_t n)
{
	size_t pos = 0;
	int count = 0;

	while (pos + TLS_HDR_LEN <= n) {
		pos += TLS_HDR_LEN + (size_t)(p[pos + 3] << 8 | p[pos + 4]);
		count++;
	}
	return pos == n ? count : -1;
}

/* The client reads exactly @want[0..@n) from what it has been given. */
static int client_reads(SSL *c, const uint8_t *want, size_t n)
{
	static uint8_t got[BIG];
	size_t have = 0;
	int r, tries;

	for (tries = 0; have < n && tries < 64; tries++) {
		r = SSL_read(c, got + have, (int)(n - have));
		if (r <= 0)
			T_FAIL("SSL_read: error %d after %zu of %zu",
			       SSL_get_error(c, r), have, n);
		have += (size_t)r;
	}
	T_CHECK(have == n && !memcmp(got, want, n));
	return 0;
}

/* tls_seal()s @p[0..@n) (in two pieces, with @pad) to the client. */
static int send_to_client(struct tls_rl *rl, BIO *c_in, const uint8_t *p,
			  size_t n, size_t pad)
{
	static uint8_t out[4 * TLS_MAX_RECORD];
	struct iovec iov[2] = { { (void *)p, n / 2 },
				{ (void *)(p + n / 2), n - n / 2 } };
	ssize_t r;

	r = tls_seal(rl, ctx, TLS_CT_APPLICATION_DATA, iov, 2, pad, out,
		     sizeof(out));
	T_CHECK(r > 0);
	T_CHECK(BIO_write(c_in, out, (int)r) == r);
	return 0;
}

/* Opens all the client wrote; its application data must be @want. */
static int from_client(struct tls_rl *rl, BIO *c_out, const uint8_t *want,
		       size_t n, int records)
{
	static uint8_t buf[BIG + 4096], got[BIG];
	size_t len = drain(c_out, buf, sizeof(buf)), got_len = 0;
	int nrec = open_all(rl, buf, len, got, &got_len, 0);

	if (nrec != records)
		T_FAIL("%d records from the client, want %d", nrec, records);
	T_CHECK(got_len == n && !memcmp(got, want, n));
	return 0;
}

/* Two tls_dir equal in every field that counts. */
static bool same_dir(const struct tls_dir *a, const struct tls_dir *b)
{
	return a->seq == b->seq && a->suite == b->suite &&
	       !memcmp(a->secret, b->secret, sizeof(a->secret)) &&
	       !memcmp(a->key, b->key, sizeof(a->key)) &&
	       !memcmp(a->iv, b->iv, sizeof(a->iv));
}

/*
 * A live hand-over in mid-stream: a record of the client's cut by a read
 * (@cut bytes of it arrived), our answer sealed with only a third of it
 * sent. The record layer, the cut record and the unsent bytes go through
 * tls_ho_write() and tls_ho_read() (an exact-size copy); the old state is
 * wiped; the new one finishes both and the client reads on unharmed.
 * Owing the client a KeyUpdate, nothing is sealed first: the debt
 * crosses, and the caller checks it is paid before the next data.
 */
static int hand_over(struct tls_rl *rl, SSL *c, BIO *c_in, BIO *c_out,
		     size_t cut)
{
	static uint8_t rec[TLS_MAX_RECORD], sealed[2 * TLS_MAX_RECORD];
	static uint8_t pay[3000], ho[TLS_HO_MAX_RL + 3 * TLS_MAX_RECORD];
	static const char mid[] = "mid-stream, cut by a read";
	struct iovec iov[2] = { { pay, 1000 }, { pay + 1000, 2000 } };
	struct tls_ho h = { 0 }, got;
	bool owed = rl->flags & TLS_RL_UPDATE_OWED;
	struct tls_rl before;
	struct tls_rec r;
	size_t n, m, sent;
	uint8_t *copy;
	ssize_t len;

	T_CHECK(RAND_bytes(pay, sizeof(pay)) == 1);
	T_CHECK(SSL_write(c, mid, sizeof(mid) - 1) == sizeof(mid) - 1);
	n = drain(c_out, rec, sizeof(rec));
	T_CHECK(count_records(rec, n) == 1 && cut < n);
	/* owing a KeyUpdate, nothing is sealed: the debt itself crosses */
	len = owed ? 0 : tls_seal(rl, ctx, TLS_CT_APPLICATION_DATA, iov, 2,
				  0, sealed, sizeof(sealed));
	T_CHECK(len >= 0);
	m = (size_t)len;
	sent = m / 3;
	T_CHECK(BIO_write(c_in, sealed, (int)sent) == (int)sent);
	before = *rl;

	h.rl = *rl;
	h.part = rec;
	h.part_len = cut;
	h.out = sealed + sent;
	h.out_len = m - sent;
	len = tls_ho_write(&h, ho, sizeof(ho));
	T_CHECK(len > 0 && (size_t)len == tls_ho_size(&h));
	T_CHECK(tls_ho_write(&h, ho, (size_t)len - 1) == -ENOSPC);
	/* the old process is gone: nothing of its state is used again */
	tls_rl_exit(rl);
	memset(&h, 0, sizeof(h));
	memset(rec, 0xaa, cut);
	memset(sealed, 0xaa, m);

	copy = malloc((size_t)len);
	T_CHECK(copy);
	memcpy(copy, ho, (size_t)len);
	OPENSSL_cleanse(ho, (size_t)len);
	if (tls_ho_read(&got, copy, (size_t)len))
		T_FAIL("tls_ho_read refused what tls_ho_write wrote");
	T_CHECK(same_dir(&got.rl.rx, &before.rx) &&
		same_dir(&got.rl.tx, &before.tx) &&
		got.rl.flags == before.flags);
	T_CHECK(got.part_len == cut && got.out_len == m - sent);
	/* written again, the same bytes */
	T_CHECK(tls_ho_write(&got, ho, sizeof(ho)) == len &&
		!memcmp(ho, copy, (size_t)len));
	*rl = got.rl;
	/* the rest of our answer, then the rest of the client's record */
	T_CHECK(BIO_write(c_in, got.out, (int)got.out_len) ==
		(int)got.out_len);
	if (!owed && client_reads(c, pay, sizeof(pay)))
		return 1;
	/* the cut record's head was carried, its tail is still on the wire */
	memcpy(ho, got.part, cut);
	memcpy(ho + cut, rec + cut, n - cut);
	OPENSSL_cleanse(copy, (size_t)len);
	free(copy);
	T_CHECK(tls_open(rl, ctx, ho, n, &r) == (ssize_t)n);
	T_CHECK(r.type == TLS_CT_APPLICATION_DATA &&
		r.len == sizeof(mid) - 1 && !memcmp(r.data, mid, r.len));
	return 0;
}

enum { END_CLOSE, END_TAMPER };

static int interop(const char *name, uint16_t suite, int tickets, int end)
{
	static const char upgrade[] = "GET /ws HTTP/1.1\r\nHost: localhost\r\n"
				      "Upgrade: websocket\r\n\r\n";
	static uint8_t big[BIG], left[TLS_MAX_RECORD], nst[4096];
	uint8_t ku[TLS_KEY_UPDATE_LEN], buf[256];
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
	BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
	struct tls_rl rl;
	struct tls_rec rec;
	SSL *c, *s;
	size_t left_len, nst_len, n;
	int r, ret = 1;
	ssize_t sr;

	memset(&rl, 0, sizeof(rl));
	memset(&keylog, 0, sizeof(keylog));
	if (!sctx || !cctx || !c_in || !c_out || !s_in || !s_out)
		T_FAIL("%s: OpenSSL setup", name);
	SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION);
	SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
	SSL_CTX_set_ciphersuites(sctx, name);
	SSL_CTX_set_ciphersuites(cctx, name);
	SSL_CTX_use_certificate(sctx, cert);
	SSL_CTX_use_PrivateKey(sctx, pkey);
	SSL_CTX_set_keylog_callback(sctx, on_keylog);
	SSL_CTX_set_num_tickets(sctx, (size_t)tickets);
	X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), cert);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	c = SSL_new(cctx);
	s = SSL_new(sctx);
	SSL_set_bio(c, c_in, c_out);
	SSL_set_bio(s, s_in, s_out);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	SSL_set_tlsext_host_name(c, "localhost");
	SSL_set1_host(c, "localhost");

	/* ClientHello; the server's flight; the client's Finished and, in
	 * the same flight, its first application data */
	if (SSL_do_handshake(c) != -1)
		goto out;
	pump(c_out, s_in);
	if (SSL_do_handshake(s) != -1)
		goto out;
	pump(s_out, c_in);
	if (SSL_do_handshake(c) != 1 ||
	    SSL_get_verify_result(c) != X509_V_OK) {
		fprintf(stderr, "%s: client handshake failed\n", name);
		goto out;
	}
	if (SSL_write(c, upgrade, sizeof(upgrade) - 1) <= 0)
		goto out;
	pump(c_out, s_in);
	if (SSL_do_handshake(s) != 1) {
		fprintf(stderr, "%s: server handshake failed\n", name);
		goto out;
	}

	/* OpenSSL stopped at the boundary: what it left is one record */
	left_len = drain(s_in, left, sizeof(left));
	nst_len = drain(s_out, nst, sizeof(nst));
	if (count_records(left, left_len) != 1 ||
	    count_records(nst, nst_len) != tickets) {
		fprintf(stderr, "%s: %zu bytes left, %zu of tickets\n", name,
			left_len, nst_len);
		goto out;
	}
	BIO_write(c_in, nst, (int)nst_len);
	if (SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(s)) != suite ||
	    keylog.client_len != tls_secret_len(suite) ||
	    keylog.server_len != keylog.client_len) {
		fprintf(stderr, "%s: suite or secrets not as expected\n", name);
		goto out;
	}
	SSL_free(s);
	s = NULL;
	if (tls_rl_init(&rl, suite, keylog.client, keylog.server,
			keylog.client_len, 0))
		goto out;
	rl.tx.seq = (uint64_t)tickets;	/* the tickets went out under it */

	/* the record OpenSSL did not consume is ours */
	if (tls_open(&rl, ctx, left, left_len, &rec) != (ssize_t)left_len ||
	    rec.type != TLS_CT_APPLICATION_DATA ||
	    rec.len != sizeof(upgrade) - 1 ||
	    memcmp(rec.data, upgrade, rec.len)) {
		fprintf(stderr, "%s: first record not the upgrade\n", name);
		goto out;
	}
	if (send_to_client(&rl, c_in, (const uint8_t *)"HTTP/1.1 101", 12, 0) ||
	    client_reads(c, (const uint8_t *)"HTTP/1.1 101", 12))
		goto out;
	/* handed over: the client's next record cut in its header */
	if (hand_over(&rl, c, c_in, c_out, 3))
		goto out;

	/* the client asks for a key update: it gets ours before our data */
	if (SSL_key_update(c, SSL_KEY_UPDATE_REQUESTED) != 1 ||
	    SSL_write(c, "ping", 4) != 4 ||
	    from_client(&rl, c_out, (const uint8_t *)"ping", 4, 2))
		goto out;
	/* handed over owing our KeyUpdate, a record cut in its body */
	if (hand_over(&rl, c, c_in, c_out, TLS_HDR_LEN + 9))
		goto out;
	if (!(rl.flags & TLS_RL_UPDATE_OWED) ||
	    send_to_client(&rl, c_in, (const uint8_t *)"pong", 4, 0) ||
	    client_reads(c, (const uint8_t *)"pong", 4) || rl.tx.seq != 1)
		goto out;
	/* an update it does not ask us to match */
	if (SSL_key_update(c, SSL_KEY_UPDATE_NOT_REQUESTED) != 1 ||
	    SSL_write(c, "ping2", 5) != 5 ||
	    from_client(&rl, c_out, (const uint8_t *)"ping2", 5, 2) ||
	    (rl.flags & TLS_RL_UPDATE_OWED) ||
	    send_to_client(&rl, c_in, (const uint8_t *)"pong2", 5, 0) ||
	    client_reads(c, (const uint8_t *)"pong2", 5) || rl.tx.seq != 2)
		goto out;

	/* several records each way, padded ones from us */
	if (RAND_bytes(big, sizeof(big)) != 1 ||
	    send_to_client(&rl, c_in, big, sizeof(big), 1000) ||
	    client_reads(c, big, sizeof(big)) ||
	    SSL_write(c, big, sizeof(big)) != (int)sizeof(big) ||
	    from_client(&rl, c_out, big, sizeof(big), 4))
		goto out;

	/* we ask: the client's next write carries its key update */
	if (tls_seal_key_update(&rl, ctx, true, ku, sizeof(ku)) !=
	    TLS_KEY_UPDATE_LEN)
		goto out;
	BIO_write(c_in, ku, sizeof(ku));
	r = SSL_read(c, big, 1);
	if (r > 0 || SSL_get_error(c, r) != SSL_ERROR_WANT_READ ||
	    SSL_write(c, "after", 5) != 5 ||
	    from_client(&rl, c_out, (const uint8_t *)"after", 5, 2) ||
	    rl.rx.seq != 1)
		goto out;

	if (end == END_CLOSE) {
		/* close_notify each way */
		if (SSL_shutdown(c) < 0)
			goto out;
		n = drain(c_out, buf, sizeof(buf));
		if (tls_open(&rl, ctx, buf, n, &rec) != (ssize_t)n ||
		    rec.type != TLS_CT_ALERT ||
		    rec.alert != TLS_ALERT_CLOSE_NOTIFY)
			goto out;
		sr = tls_seal_alert(&rl, ctx, TLS_ALERT_CLOSE_NOTIFY, buf,
				    sizeof(buf));
		BIO_write(c_in, buf, (int)sr);
		r = SSL_read(c, big, 1);
		if (r != 0 || SSL_get_error(c, r) != SSL_ERROR_ZERO_RETURN)
			goto out;
	} else {
		/* a tampered record: bad_record_mac, which OpenSSL reads */
		if (SSL_write(c, "x", 1) != 1)
			goto out;
		n = drain(c_out, buf, sizeof(buf));
		buf[n - 1] ^= 1;
		sr = tls_open(&rl, ctx, buf, n, &rec);
		if (sr != -EBADMSG)
			goto out;
		sr = tls_seal_alert(&rl, ctx, tls_alert_of((int)sr), buf,
				    sizeof(buf));
		BIO_write(c_in, buf, (int)sr);
		ERR_clear_error();
		r = SSL_read(c, big, 1);
		if (r > 0 || SSL_get_error(c, r) != SSL_ERROR_SSL ||
		    ERR_GET_REASON(ERR_peek_last_error()) !=
		    SSL_R_SSLV3_ALERT_BAD_RECORD_MAC)
			goto out;
		ERR_clear_error();
	}
	ret = 0;
out:
	if (ret) {
		fprintf(stderr, "%s, %d tickets: interop failed\n", name,
			tickets);
		ERR_print_errors_fp(stderr);
	}
	tls_rl_exit(&rl);
	SSL_free(s);
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return ret;
}

static int test_openssl_switch_over(void)
{
	static const char *names[] = { "TLS_AES_128_GCM_SHA256",
				       "TLS_AES_256_GCM_SHA384",
				       "TLS_CHACHA20_POLY1305_SHA256" };
	int i;

	if (t_make_cert(&cert, &pkey))
		return 1;
	for (i = 0; i < 3; i++)
		if (interop(names[i], all_suites[i], 0, END_CLOSE) ||
		    interop(names[i], all_suites[i], 2, END_TAMPER))
			return 1;
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return 0;
}

int main(void)
{
	int ret;

	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return T_EXIT_FAIL;
	ret = test_rfc8448_keys() || test_rfc8448_seal() ||
	      test_rfc8448_open() || test_round_trips() ||
	      test_inner_rules() || test_headers() || test_tampering() ||
	      test_truncation() || test_key_updates() ||
	      test_sequence_limits() || test_ho_records() ||
	      test_openssl_switch_over();
	EVP_CIPHER_CTX_free(ctx);
	return ret ? T_EXIT_FAIL : T_EXIT_PASS;
}
