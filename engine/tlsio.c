/* SPDX-License-Identifier: MIT */
/*
 * tlsio.c: TLS under a connection, as the transport (struct eng_xport)
 * it registers and conn_*.c call through; the SSL_CTX it starts from is
 * tlsio_ctx.c's. The handshake is OpenSSL's, on memory BIOs, fed one
 * whole record at a time so that it stops exactly at the record after
 * the client's Finished; then the traffic secrets the keylog callback
 * caught go into a struct tls_rl (proto/tls.c), the SSL* is freed, and
 * records are opened and sealed here with the shard's one
 * EVP_CIPHER_CTX. What a connection holds between reads is its struct
 * eng_tls alone: a record cut by a read is carried in a buffer that
 * exists only until the record is whole, and the sealed bytes of a send
 * only until that send completes (a send a hand-over's quiesce cancels
 * keeps them until it is made again, or they are carried: tlsio_ho.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "conn.h"
#include "tlsio.h"
#include "tlsio_int.h"
#include "ud.h"

/* ---- the handshake's secrets ------------------------------------------ */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * SSL_CTX_set_keylog_callback(): "LABEL <client_random> <secret>". Only
 * the two application traffic secrets are kept, in the handshake's hs.
 */
void tlsio__keylog(const SSL *ssl, const char *line)
{
	struct hs *h = SSL_get_app_data((SSL *)ssl);
	const char *hex = strrchr(line, ' ');
	size_t n, i;
	int which;

	if (!h || !hex)
		return;
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
		which = 0;
	else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
		which = 1;
	else
		return;
	hex++;
	n = strlen(hex) / 2;
	if (n > TLS_MAX_SECRET || strlen(hex) % 2)
		return;
	for (i = 0; i < n; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return;
		h->secret[which][i] = (uint8_t)(hi << 4 | lo);
	}
	h->len[which] = (uint8_t)n;
}

int eng_tls_shard_init(struct eng_shard *s)
{
	struct eng_tls_shard *ts;

	s->tls = NULL;
	if (!atomic_load(&s->eng->tls_ctx))
		return 0;
	ts = calloc(1, sizeof(*ts));
	if (!ts)
		return -ENOMEM;
	ts->cctx = EVP_CIPHER_CTX_new();
	/* 8 bytes a slot, in pages touched only by the slots in use */
	ts->conn = calloc(s->nr_conns, sizeof(*ts->conn));
	if (!ts->cctx || !ts->conn) {
		EVP_CIPHER_CTX_free(ts->cctx);
		free(ts->conn);
		free(ts);
		return -ENOMEM;
	}
	/* the generation no reload has: tlsio__shard_ctx() takes its reference */
	ts->gen = ~0u;
	s->tls = ts;
	return 0;
}

static void release_slot(struct eng_shard *s, uint32_t slot);

void eng_tls_shard_exit(struct eng_shard *s)
{
	struct eng_tls_shard *ts = s->tls;

	if (!ts)
		return;
	for (uint32_t i = 0; i < s->nr_conns; i++)
		release_slot(s, i);
	EVP_CIPHER_CTX_free(ts->cctx);
	SSL_CTX_free(ts->ctx);
	free(ts->conn);
	free(ts);
	s->tls = NULL;
}

/* ---- per connection ---------------------------------------------------- */

static void hs_free(struct eng_shard *s, struct eng_tls *t)
{
	if (!t->hs)
		return;
	SSL_free(t->hs->ssl);
	OPENSSL_cleanse(t->hs, sizeof(*t->hs));
	eng_free(t->hs);
	t->hs = NULL;
	tlsio__account(s, -(int64_t)sizeof(struct hs));
}

static void part_free(struct eng_shard *s, struct eng_tls *t)
{
	if (!t->part)
		return;
	tlsio__account(s, -(int64_t)(sizeof(struct tbuf) + t->part->aux));
	s->tls->carried -= t->part->aux;
	eng_free(t->part);
	t->part = NULL;
}

static void out_free(struct eng_shard *s, struct eng_tls *t)
{
	if (!t->out)
		return;
	tlsio__account(s, -(int64_t)(sizeof(struct tbuf) + t->out->len));
	eng_free(t->out);
	t->out = NULL;
	t->covered = 0;
}

/* As struct eng_xport's accept: -EBUSY past the shard's handshake cap. */
static int xp_accept(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_tls_shard *ts = s->tls;
	uint32_t slot = eng_slot(s, c);
	struct eng_tls *t;

	/*
	 * The cap counts from the accept, not the first byte: clients that
	 * connect and say nothing hold a handshake slot too.
	 */
	if (atomic_load_explicit(&ts->handshaking, memory_order_relaxed) >=
	    s->eng->cfg.tls_max_handshakes) {
		atomic_fetch_add_explicit(&ts->failed[ENG_TLS_FAIL_CAP], 1,
					  memory_order_relaxed);
		return -EBUSY;
	}
	t = eng_malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	t->alert = NO_ALERT;
	ts->conn[slot] = t;
	atomic_fetch_add_explicit(&ts->handshaking, 1, memory_order_relaxed);
	tlsio__account(s, sizeof(*t));
	return 0;
}

/* The handshake ended, either way: it no longer counts against the cap. */
void tlsio__hs_over(struct eng_shard *s, struct eng_tls *t, int fail)
{
	struct eng_tls_shard *ts = s->tls;

	atomic_fetch_sub_explicit(&ts->handshaking, 1, memory_order_relaxed);
	if (fail >= 0) {
		t->flags |= T_FAILED;
		atomic_fetch_add_explicit(&ts->failed[fail], 1,
					  memory_order_relaxed);
	}
}

/* Frees @slot's TLS state; counts a handshake that never finished. */
static void release_slot(struct eng_shard *s, uint32_t slot)
{
	struct eng_tls *t = eng_tls_at(s, slot);

	if (!t)
		return;
	if (t->flags & T_ESTABLISHED)
		atomic_fetch_sub_explicit(&s->tls->conns, 1,
					  memory_order_relaxed);
	else if (!(t->flags & T_FAILED))
		tlsio__hs_over(s, t, t->flags & T_TIMED_OUT ?
				     ENG_TLS_FAIL_TIMEOUT :
				     ENG_TLS_FAIL_CLOSED);
	hs_free(s, t);
	part_free(s, t);
	out_free(s, t);
	tls_rl_exit(&t->rl);
	eng_free(t);
	tlsio__account(s, -(int64_t)sizeof(*t));
	s->tls->conn[slot] = NULL;
}

static void xp_release(struct eng_shard *s, struct eng_conn *c)
{
	release_slot(s, eng_slot(s, c));
}

/* Counted as a timeout when it closes, not as a peer that left. */
static void xp_timed_out(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_tls *t = eng_tls_at(s, eng_slot(s, c));

	if (t && !(t->flags & T_ESTABLISHED))
		t->flags |= T_TIMED_OUT;
}

/* ---- receiving --------------------------------------------------------- */

/*
 * Checks a record header: a content type TLS knows, version 3.x and a
 * length within the limit. Returns the record's size on the wire, or
 * -errno as tls_open() would give it.
 */
static ssize_t rec_size(const uint8_t *h)
{
	size_t len = (size_t)h[3] << 8 | h[4];

	if (h[0] < TLS_CT_CHANGE_CIPHER_SPEC || h[0] > TLS_CT_APPLICATION_DATA)
		return -EPROTO;
	if (h[1] != 3)
		return -EILSEQ;
	if (len > TLS_MAX_CIPHER)
		return -EMSGSIZE;
	return (ssize_t)(TLS_HDR_LEN + len);
}

/* Ends @c after a failure: the alert @t owes goes out from eng_tls_close. */
static void fail(struct eng_shard *s, struct eng_conn *c, struct eng_tls *t,
		 int hs_reason, uint8_t alert)
{
	if (t->flags & T_ESTABLISHED) {
		t->flags |= T_FAILED;
		t->alert = alert;
		if (alert != NO_ALERT)
			atomic_fetch_add_explicit(&s->tls->alerts, 1,
						  memory_order_relaxed);
	} else if (!(t->flags & T_FAILED)) {
		tlsio__hs_over(s, t, hs_reason);
	}
	eng_conn_kill(s, c);
}

/* The handshake finished: keep the record layer, free the SSL*. */
static int established(struct eng_shard *s, struct eng_tls *t)
{
	struct hs *h = t->hs;
	const SSL_CIPHER *cipher = SSL_get_current_cipher(h->ssl);
	uint16_t suite = cipher ? SSL_CIPHER_get_protocol_id(cipher) : 0;
	size_t len = tls_secret_len(suite);

	if (SSL_version(h->ssl) != TLS1_3_VERSION) {
		/* 1.2: OpenSSL keeps the records; its Finished is owed */
		t->flags |= T_ESTABLISHED | T_SSL;
		goto done;
	}
	/*
	 * One record went in, so nothing is left in the read BIO; without
	 * tickets nothing was written after the server's Finished, which
	 * eng_tls_send() drained before the client could answer it.
	 */
	if (!len || h->len[0] != len || h->len[1] != len ||
	    BIO_ctrl_pending(SSL_get_rbio(h->ssl)) ||
	    BIO_ctrl_pending(SSL_get_wbio(h->ssl)))
		return -EPROTO;
	if (tls_rl_init(&t->rl, suite, h->secret[0], h->secret[1], len, 0))
		return -EIO;
	hs_free(s, t);
	t->flags |= T_ESTABLISHED;
done:
	tlsio__hs_over(s, t, -1);
	atomic_fetch_add_explicit(&s->tls->conns, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->tls->done, 1, memory_order_relaxed);
	return 0;
}

/* One whole handshake record @rec (@len bytes) into OpenSSL. */
static int hs_record(struct eng_shard *s, struct eng_conn *c,
		     struct eng_tls *t, const uint8_t *rec, size_t len)
{
	int r;

	if (!t->hs) {
		BIO *rb, *wb;

		/* a ClientHello or nothing: garbage costs no SSL* */
		if (rec[0] != TLS_CT_HANDSHAKE) {
			fail(s, c, t, ENG_TLS_FAIL_GARBAGE, NO_ALERT);
			return -EPROTO;
		}
		t->hs = eng_malloc(sizeof(*t->hs));
		if (!t->hs)
			goto internal;
		memset(t->hs, 0, sizeof(*t->hs));
		tlsio__account(s, sizeof(*t->hs));
		t->hs->ssl = SSL_new(tlsio__shard_ctx(s));
		rb = BIO_new(BIO_s_mem());
		wb = BIO_new(BIO_s_mem());
		if (!t->hs->ssl || !rb || !wb) {
			BIO_free(rb);
			BIO_free(wb);
			goto internal;
		}
		SSL_set_bio(t->hs->ssl, rb, wb);
		SSL_set_accept_state(t->hs->ssl);
		SSL_set_app_data(t->hs->ssl, t->hs);
	}
	if (BIO_write(SSL_get_rbio(t->hs->ssl), rec, (int)len) != (int)len)
		goto internal;
	r = SSL_do_handshake(t->hs->ssl);
	if (r == 1) {
		if (established(s, t) < 0)
			goto internal;
		/* a hand-over's quiesce left it reading until now */
		eng_conn_ho_ready(s, c);
		return 0;
	}
	if (SSL_get_error(t->hs->ssl, r) == SSL_ERROR_WANT_READ)
		return 0;
	/* OpenSSL's own alert waits in the write BIO for eng_tls_close */
	ERR_clear_error();
	fail(s, c, t, ENG_TLS_FAIL_HANDSHAKE, NO_ALERT);
	return -EPROTO;
internal:
	ERR_clear_error();
	fail(s, c, t, ENG_TLS_FAIL_HANDSHAKE, NO_ALERT);
	return -ENOMEM;
}

/* TLS 1.2: one whole record through the connection's SSL*. */
static int ssl_record(struct eng_shard *s, struct eng_conn *c,
		      struct eng_tls *t, const uint8_t *rec, size_t len)
{
	SSL *ssl = t->hs->ssl;
	uint8_t buf[TLS_MAX_PLAIN];
	int r;

	if (BIO_write(SSL_get_rbio(ssl), rec, (int)len) != (int)len) {
		fail(s, c, t, -1, NO_ALERT);
		return -ENOMEM;
	}
	while (eng_conn_alive(c)) {
		r = SSL_read(ssl, buf, sizeof(buf));
		if (r > 0) {
			eng_conn_feed(s, c, buf, (size_t)r);
			continue;
		}
		switch (SSL_get_error(ssl, r)) {
		case SSL_ERROR_WANT_READ:
			return 0;
		case SSL_ERROR_ZERO_RETURN:	/* close_notify: answer it */
			eng_conn_kill(s, c);
			return -EPIPE;
		default:	/* OpenSSL's alert waits in the write BIO */
			ERR_clear_error();
			atomic_fetch_add_explicit(&s->tls->alerts, 1,
						  memory_order_relaxed);
			t->flags |= T_FAILED;
			eng_conn_kill(s, c);
			return -EPROTO;
		}
	}
	return -EPIPE;
}

/* One whole record at @rec, writable: opened in place. */
static int record(struct eng_shard *s, struct eng_conn *c, struct eng_tls *t,
		  uint8_t *rec, size_t len)
{
	struct tls_rec r;
	ssize_t n;

	if (!(t->flags & T_ESTABLISHED))
		return hs_record(s, c, t, rec, len);
	if (t->flags & T_SSL)
		return ssl_record(s, c, t, rec, len);
	n = tls_open(&t->rl, s->tls->cctx, rec, len, &r);
	if (n < 0) {
		fail(s, c, t, -1, tls_alert_of((int)n));
		return (int)n;
	}
	switch (r.type) {
	case TLS_CT_APPLICATION_DATA:
		if (r.len)
			eng_conn_feed(s, c, r.data, r.len);
		return 0;
	case TLS_CT_ALERT:
		if (r.alert == TLS_ALERT_USER_CANCELED)
			return 0;
		/*
		 * close_notify: the peer sends no more, and answering it
		 * with ours is all a close needs. Any other alert ended the
		 * connection: send nothing back (RFC 8446 6.2).
		 */
		if (r.alert != TLS_ALERT_CLOSE_NOTIFY)
			t->flags |= T_CLOSE_SENT;
		t->flags |= T_FAILED;
		eng_conn_kill(s, c);
		return -EPIPE;
	default:		/* a KeyUpdate, already applied */
		return 0;
	}
}

/*
 * Keeps @n bytes at @p, of a record of @size bytes, for the next read.
 * Room grows with the bytes that arrive (doubling, up to @size), not with
 * what the header announces, and counts against the shard's share of
 * --max-partial-memory as the plain path's carried bytes do: past it the
 * largest holder of partial messages is closed first (eng_rx_room).
 * Returns 0, -ENOBUFS if still past that share, or -ENOMEM.
 */
int tlsio__carry(struct eng_shard *s, struct eng_tls *t, const uint8_t *p,
		 size_t n, size_t size)
{
	size_t had = t->part ? t->part->aux : 0;
	size_t need = (t->part ? t->part->len : 0) + n, cap;
	struct tbuf *np;

	if (need > had) {
		cap = 2 * had < size ? 2 * had : size;
		if (cap < need)
			cap = need;
		if (!eng_rx_room(s, s->tls->carried + (cap - had)))
			return -ENOBUFS;
		np = eng_realloc(t->part, sizeof(*np) + cap);
		if (!np)
			return -ENOMEM;
		if (!t->part)
			np->len = 0;
		tlsio__account(s, (int64_t)(cap - had) +
			       (t->part ? 0 : sizeof(*np)));
		s->tls->carried += cap - had;
		np->aux = (uint32_t)cap;
		t->part = np;
	}
	memcpy(t->part->b + t->part->len, p, n);
	t->part->len += (uint32_t)n;
	return 0;
}

static bool owes(const struct eng_tls *t)
{
	if (!(t->flags & T_ESTABLISHED) || (t->flags & T_SSL))
		return t->hs && BIO_ctrl_pending(SSL_get_wbio(t->hs->ssl));
	return t->rl.flags & TLS_RL_UPDATE_OWED;
}

/*
 * As struct eng_xport's recv: whole handshake records go to OpenSSL;
 * after the handshake each record's plaintext goes to eng_conn_feed().
 * False too once @c failed (then it is killed).
 */
static bool xp_recv(struct eng_shard *s, struct eng_conn *c, uint8_t *p,
		    size_t n)
{
	struct eng_tls *t = eng_tls_at(s, eng_slot(s, c));
	ssize_t size;

	if (!t)
		return false;	/* its accept failed: it is being closed */

	while (n && !(t->flags & T_FAILED) && eng_conn_alive(c)) {
		if (t->part) {
			/* finish the record carried from earlier reads */
			size_t take, need = TLS_HDR_LEN;

			if (t->part->len >= TLS_HDR_LEN)
				need = (size_t)rec_size(t->part->b);
			take = need - t->part->len < n ? need - t->part->len : n;
			if ((size = tlsio__carry(s, t, p, take, need)) < 0)
				goto nomem;
			p += take;
			n -= take;
			if (t->part->len < need)
				break;
			if (need == TLS_HDR_LEN) {
				size = rec_size(t->part->b);
				if (size < 0)
					goto bad;
				if ((size_t)size > TLS_HDR_LEN)
					continue;	/* the body next */
			}
			if (record(s, c, t, t->part->b, t->part->len) < 0)
				break;
			part_free(s, t);
			continue;
		}
		if (n < TLS_HDR_LEN) {
			if ((size = tlsio__carry(s, t, p, n, TLS_HDR_LEN)) < 0)
				goto nomem;
			break;
		}
		size = rec_size(p);
		if (size < 0)
			goto bad;
		if (n < (size_t)size) {
			if ((size = tlsio__carry(s, t, p, n, (size_t)size)) < 0)
				goto nomem;
			break;
		}
		if (record(s, c, t, p, (size_t)size) < 0)
			break;
		p += size;
		n -= (size_t)size;
	}
	return eng_conn_alive(c) && owes(t);
bad:
	fail(s, c, t, ENG_TLS_FAIL_GARBAGE, tls_alert_of((int)size));
	return false;
nomem:
	if (size == -ENOBUFS)	/* --max-partial-memory, as for plain bytes */
		ENG_STAT_ADD(s, partial_closed, 1);
	fail(s, c, t, ENG_TLS_FAIL_HANDSHAKE, TLS_ALERT_INTERNAL_ERROR);
	return false;
}

/* ---- sending ----------------------------------------------------------- */

/* Sends what of @t->out is unsent; the kernel reads it until the CQE. */
static int put_out(struct eng_shard *s, struct eng_conn *c,
		   struct eng_tls *t)
{
	uint32_t slot = eng_slot(s, c);

	if (ring_send(&s->ring, slot, t->out->b + t->out->aux,
		      t->out->len - t->out->aux,
		      ring_ud(ENG_OP_SEND, slot, c->gen)))
		return -EIO;
	c->flags |= ENG_CONN_F_SEND;
	ENG_STAT_ADD(s, sends, 1);
	return 1;
}

int tlsio__out_new(struct eng_shard *s, struct eng_tls *t, size_t cap)
{
	t->out = eng_malloc(sizeof(*t->out) + cap);
	if (!t->out)
		return -ENOMEM;
	t->out->len = (uint32_t)cap;	/* accounted as allocated until sealed */
	t->out->aux = 0;
	tlsio__account(s, (int64_t)(sizeof(*t->out) + cap));
	return 0;
}

/* Trims @t->out's accounting to the @len bytes sealed into it. */
static void out_sealed(struct eng_shard *s, struct eng_tls *t, size_t len)
{
	tlsio__account(s, (int64_t)len - t->out->len);
	t->out->len = (uint32_t)len;
}

/* Whatever @t's SSL* wrote, as one send covering @n queue entries. */
static int ssl_flush(struct eng_shard *s, struct eng_conn *c,
		     struct eng_tls *t, unsigned n)
{
	BIO *wb = SSL_get_wbio(t->hs->ssl);
	size_t len = BIO_ctrl_pending(wb);

	c->nflight = (uint16_t)n;
	if (!len)
		return 0;
	if (tlsio__out_new(s, t, len) < 0)
		return -ENOMEM;
	if (BIO_read(wb, t->out->b, (int)len) != (int)len)
		return -EIO;
	return put_out(s, c, t);
}

/* The handshake's output, straight from OpenSSL's write BIO. */
static int send_hs(struct eng_shard *s, struct eng_conn *c, struct eng_tls *t)
{
	int r;

	c->nflight = 0;
	r = t->hs ? ssl_flush(s, c, t, 0) : 0;
	if (!r && c->sq_head)
		return -EPROTO;		/* no bytes before it */
	return r;
}

/*
 * TLS 1.2: the queue through SSL_write into the write BIO (which keeps
 * all of it), then close_notify if @c is draining, all in one send.
 */
static int ssl_send(struct eng_shard *s, struct eng_conn *c,
		    struct eng_tls *t)
{
	bool drain = c->state == ENG_CONN_DRAIN;
	struct eng_sq *q = c->sq_head;
	size_t total = 0;
	unsigned n = 0;

	for (; q && n < SEAL_IOV && total < SEAL_BYTES; q = q->next, n++) {
		int len = (int)q->buf->len;

		if (len && SSL_write(t->hs->ssl, q->buf->data + q->buf->start,
				     len) != len) {
			ERR_clear_error();
			return -EIO;
		}
		total += q->buf->len;
	}
	if (drain && !q && !(t->flags & T_CLOSE_SENT)) {
		t->flags |= T_CLOSE_SENT;
		SSL_shutdown(t->hs->ssl);
		ERR_clear_error();
	}
	return ssl_flush(s, c, t, n);
}

/*
 * As struct eng_xport's send: handshake output, else everything queued
 * sealed into one buffer (KeyUpdate first if owed), else a KeyUpdate
 * owed, else close_notify once @c is draining.
 */
static int xp_send(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_tls *t = eng_tls_at(s, eng_slot(s, c));
	struct iovec iov[SEAL_IOV];
	bool drain = c->state == ENG_CONN_DRAIN;
	struct eng_sq *q = c->sq_head;
	size_t total = 0, cap;
	unsigned n = 0;
	ssize_t len, a;

	if (!t)
		return 0;	/* its accept failed: it is being closed */
	if (t->out) {
		/*
		 * A cancelled send (c->nflight still its entries) or one
		 * carried over (t->covered bytes of the queue's head, which
		 * the new process holds as one entry): its rest goes first.
		 */
		return put_out(s, c, t);
	}
	if (!(t->flags & T_ESTABLISHED))
		return send_hs(s, c, t);
	if (t->flags & T_SSL)
		return ssl_send(s, c, t);
	if (!q && !(t->rl.flags & TLS_RL_UPDATE_OWED) &&
	    (!drain || (t->flags & T_CLOSE_SENT)))
		return 0;
	/*
	 * A send covers whole entries, but the head may be partly sent
	 * (c->sent): a carried queue is one entry, of which the sealed
	 * bytes carried with it covered the first t->covered.
	 */
	for (; q && n < SEAL_IOV && total < SEAL_BYTES; q = q->next, n++) {
		uint32_t off = n ? 0 : c->sent;

		iov[n].iov_base = q->buf->data + q->buf->start + off;
		iov[n].iov_len = q->buf->len - off;
		total += iov[n].iov_len;
	}
	/* the last of a draining queue takes close_notify along */
	drain = drain && !q && !(t->flags & T_CLOSE_SENT);
	cap = (n ? tls_seal_bound(total, 0) : TLS_KEY_UPDATE_LEN) +
	      (drain ? TLS_RECORD_OVERHEAD + 2 : 0);
	if (tlsio__out_new(s, t, cap) < 0)
		return -ENOMEM;
	if (n)
		len = tls_seal(&t->rl, s->tls->cctx, TLS_CT_APPLICATION_DATA,
			       iov, n, 0, t->out->b, cap);
	else if (t->rl.flags & TLS_RL_UPDATE_OWED)
		len = tls_seal_key_update(&t->rl, s->tls->cctx, false,
					  t->out->b, cap);
	else
		len = 0;
	if (len >= 0 && drain) {
		a = tls_seal_alert(&t->rl, s->tls->cctx, TLS_ALERT_CLOSE_NOTIFY,
				   t->out->b + len, cap - (size_t)len);
		len = a < 0 ? a : len + a;
		t->flags |= T_CLOSE_SENT;
	}
	if (len < 0)
		return (int)len;
	out_sealed(s, t, (size_t)len);
	c->nflight = (uint16_t)n;
	return put_out(s, c, t);
}

uint32_t tlsio__covers(const struct eng_conn *c)
{
	const struct eng_sq *q = c->sq_head;
	uint32_t n = 0;

	for (unsigned i = 0; i < c->nflight && q; i++, q = q->next)
		n += q->buf->len - (i ? 0 : c->sent);
	return n;
}

/*
 * As struct eng_xport's sent: the plaintext bytes of the queue a sealed
 * buffer covered, -EINPROGRESS when its rest went out again.
 */
static int xp_sent(struct eng_shard *s, struct eng_conn *c, int res)
{
	struct eng_tls *t = eng_tls_at(s, eng_slot(s, c));
	int plain;

	if (!t || !t->out)
		return res;
	if (res == -ECANCELED && c->state != ENG_CONN_DEAD) {
		/*
		 * Cancelled while alive (a hand-over's quiesce): the records
		 * are sealed, their sequence numbers spent, so their unsent
		 * rest stays for the next send or the hand-over record; the
		 * core keeps c->nflight, the entries they hold.
		 */
		return res;
	}
	if (res < 0 || c->state == ENG_CONN_DEAD) {
		out_free(s, t);
		return res;
	}
	t->out->aux += (uint32_t)res;
	if (t->out->aux < t->out->len) {
		/* a partial send: the rest of the same records, first */
		if (put_out(s, c, t) < 0) {
			out_free(s, t);
			return -EIO;
		}
		return -EINPROGRESS;
	}
	plain = (int)(t->covered + tlsio__covers(c));
	out_free(s, t);
	return plain;
}

/*
 * As struct eng_xport's close: close_notify (or the alert its failure
 * owes) as @c's last bytes when the handshake is done and no send is in
 * flight. Sets ENG_CONN_F_SEND when it sent.
 */
static void xp_close(struct eng_shard *s, struct eng_conn *c)
{
	struct eng_tls *t = eng_tls_at(s, eng_slot(s, c));
	uint8_t desc;
	ssize_t len;

	if (!t || (c->flags & ENG_CONN_F_SEND) || t->out)
		return;
	if (!(t->flags & T_ESTABLISHED)) {
		/* a failed handshake: OpenSSL's alert, if it wrote one */
		if (t->hs && send_hs(s, c, t) < 0)
			out_free(s, t);
		return;
	}
	if (t->flags & T_CLOSE_SENT)
		return;
	if (t->flags & T_SSL) {
		/* close_notify, unless OpenSSL failed it: then its alert */
		t->flags |= T_CLOSE_SENT;
		if (!(t->flags & T_FAILED))
			SSL_shutdown(t->hs->ssl);
		ERR_clear_error();
		if (ssl_flush(s, c, t, 0) < 0)
			out_free(s, t);
		return;
	}
	desc = t->alert == NO_ALERT ? TLS_ALERT_CLOSE_NOTIFY : t->alert;
	t->flags |= T_CLOSE_SENT;
	if (tlsio__out_new(s, t, TLS_RECORD_OVERHEAD + 2) < 0)
		return;
	len = tls_seal_alert(&t->rl, s->tls->cctx, desc, t->out->b,
			     t->out->len);
	if (len < 0) {
		out_free(s, t);
		return;
	}
	out_sealed(s, t, (size_t)len);
	c->nflight = 0;
	if (put_out(s, c, t) < 0)
		out_free(s, t);
}

/* As struct eng_xport's ho_ready: a handshake under way reads on. */
static bool ho_ready(struct eng_shard *s, const struct eng_conn *c)
{
	const struct eng_tls *t = eng_tls_at(s, eng_slot(s, c));

	return !t || (t->flags & (T_ESTABLISHED | T_FAILED));
}

/* What conn.c calls, through its transport seam only. */
static const struct eng_xport tls_xport = {
	.name = "tls",
	.id = ENG_XPORT_TLS,
	.accept = xp_accept,
	.recv = xp_recv,
	.send = xp_send,
	.sent = xp_sent,
	.close = xp_close,
	.timed_out = xp_timed_out,
	.release = xp_release,
	.ho_save = tlsio__ho_save,
	.ho_load = tlsio__ho_load,
	.ho_ready = ho_ready,
};

int tlsio__xport_register(void)
{
	return eng_xport_add(&tls_xport);
}

/* ---- /stats ------------------------------------------------------------ */

const char *const eng_tls_fail_names[ENG_TLS_FAIL_MAX] = {
	"garbage", "handshake", "timeout", "cap", "closed",
};

void eng_tls_sum(const struct eng *e, struct eng_tls_totals *t)
{
	memset(t, 0, sizeof(*t));
	t->reloads = atomic_load_explicit(&e->tls_reloads, memory_order_relaxed);
	t->reload_failed = atomic_load_explicit(&e->tls_reload_failed,
						memory_order_relaxed);
	for (unsigned i = 0; i < e->cfg.shards; i++) {
		struct eng_tls_shard *ts = e->shards[i].tls;

		if (!ts)
			continue;
		t->conns += atomic_load_explicit(&ts->conns,
						 memory_order_relaxed);
		t->handshaking += atomic_load_explicit(&ts->handshaking,
						       memory_order_relaxed);
		t->done += atomic_load_explicit(&ts->done, memory_order_relaxed);
		t->alerts += atomic_load_explicit(&ts->alerts,
						  memory_order_relaxed);
		t->state_bytes += atomic_load_explicit(&ts->state_bytes,
						       memory_order_relaxed);
		for (unsigned k = 0; k < ENG_TLS_FAIL_MAX; k++)
			t->failed[k] += atomic_load_explicit(&ts->failed[k],
							     memory_order_relaxed);
	}
}

size_t eng_tls_stats(const struct eng *e, char *out, size_t cap)
{
	struct eng_tls_totals t;
	size_t n;

	eng_tls_sum(e, &t);
	n = (size_t)snprintf(out, cap, "{\"conns\":%llu,\"handshaking\":%llu,"
			     "\"handshakes\":%llu,\"alerts\":%llu,"
			     "\"state_bytes\":%llu,\"reloads\":%llu,"
			     "\"reload_failed\":%llu,\"failed\":{",
			     (unsigned long long)t.conns,
			     (unsigned long long)t.handshaking,
			     (unsigned long long)t.done,
			     (unsigned long long)t.alerts,
			     (unsigned long long)t.state_bytes,
			     (unsigned long long)t.reloads,
			     (unsigned long long)t.reload_failed);
	for (unsigned k = 0; k < ENG_TLS_FAIL_MAX && n < cap; k++)
		n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":%llu",
				      k ? "," : "", eng_tls_fail_names[k],
				      (unsigned long long)t.failed[k]);
	if (n < cap)
		n += (size_t)snprintf(out + n, cap - n, "}}");
	return n < cap ? n : cap;
}
