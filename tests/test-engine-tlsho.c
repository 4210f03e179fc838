/* SPDX-License-Identifier: MIT */
/*
 * Description: the TLS transport's hand-over (engine/tlsio_ho.c) on a
 * real socket and a real ring. Two test shards, the smallest that run
 * tlsio.c: a ring with one fixed file (one end of a socketpair, whose
 * other end an OpenSSL client on memory BIOs reads and writes), a slot
 * table, and a sink endpoint that keeps the plaintext the transport
 * hands up. The client completes a TLS 1.3 handshake with the first
 * shard (ho_save: -EAGAIN until then); a record of the client's arrives
 * cut; a large answer is sealed and partly sent, its send's rest
 * cancelled as a hand-over's quiesce does (-EAGAIN while in flight);
 * ho_save writes the state and the old shard releases the slot. The
 * second shard loads it into a fresh slot with the same queue, resumes
 * the send and finishes the cut record: the client reads the whole
 * answer once, the sink the whole request; a KeyUpdate either way
 * works after it. In each suite. Then malformed and cut records and a
 * TLS 1.2 connection (-EOPNOTSUPP) are refused, and nothing leaks.
 */
#include <fcntl.h>
#include <liburing.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "buf.h"
#include "conn_int.h"
#include "handover.h"
#include "helpers-tls.h"
#include "tlsio_int.h"
#include "ud.h"

#define SLOT		1
#define ANSWER		(200u << 10)	/* more than the socket takes */
#define DEADLINE_MS	20000

static struct eng eng;
static SSL_CTX *sctx;
static X509 *cert;
static EVP_PKEY *pkey;

/* What the sink endpoint was handed, in order. */
static uint8_t sunk[4096];
static size_t sunk_len;

static size_t sink(struct eng_shard *s, struct eng_conn *c,
		   const uint8_t *p, size_t n, size_t *want)
{
	(void)s;
	(void)c;
	*want = 0;
	if (n > sizeof(sunk) - sunk_len)
		n = sizeof(sunk) - sunk_len;
	memcpy(sunk + sunk_len, p, n);
	sunk_len += n;
	return n;
}

static const struct eng_endpoint sink_ep = {
	.name = "sink", .kind = ENG_CONN_K_HTTP, .on_request = sink,
};

/* One end of the test: a shard and its connection in SLOT. */
struct side {
	struct eng_shard s;
	struct eng_conn *c;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A shard with a ring whose fixed file SLOT is @fd, TLS on. */
static int side_init(struct side *d, int fd)
{
	int r;

	memset(d, 0, sizeof(*d));
	d->s.eng = &eng;
	d->s.nr_conns = 4;
	d->s.rx_budget = 1 << 20;
	d->s.conns = calloc(d->s.nr_conns, sizeof(*d->s.conns));
	T_CHECK(d->s.conns);
	r = ring_init(&d->s.ring, 64, d->s.nr_conns, 0);
	if (r)
		T_FAIL("ring_init: %s", strerror(-r));
	T_CHECK(io_uring_register_files_update(&d->s.ring.uring, SLOT, &fd,
					       1) == 1);
	T_CHECK(eng_tls_shard_init(&d->s) == 0 && d->s.tls);
	d->c = &d->s.conns[SLOT];
	d->c->state = ENG_CONN_HTTP;
	d->c->kind = ENG_CONN_K_HTTP;
	d->c->xport = ENG_XPORT_TLS;
	return 0;
}

static void side_exit(struct side *d)
{
	conn__sq_free(d->c);
	eng_tls_shard_exit(&d->s);
	ring_exit(&d->s.ring);
	free(d->s.conns);
}

static const struct eng_xport *xp(void)
{
	return conn__xports[ENG_XPORT_TLS];
}

/* The last send completion seen. */
static struct ring_cqe last;
static bool got_send;

static void on_cqe(void *arg, struct ring_cqe *cqe)
{
	(void)arg;
	if (ring_ud_op(cqe->user_data) == ENG_OP_SEND) {
		last = *cqe;
		got_send = true;
	}
}

/* The client's side: its SSL* on memory BIOs and our socket's peer. */
struct client {
	SSL *ssl;
	BIO *in, *out;
	int fd;			/* the socketpair's other end, non-blocking */
	uint8_t got[ANSWER + 64];
	size_t got_len;
};

/* Moves what our socket sent into the client and reads what it can. */
static int client_pump(struct client *k)
{
	uint8_t buf[8192];
	ssize_t n;
	int r;

	while ((n = read(k->fd, buf, sizeof(buf))) > 0)
		T_CHECK(BIO_write(k->in, buf, (int)n) == (int)n);
	while ((r = SSL_read(k->ssl, k->got + k->got_len,
			     (int)(sizeof(k->got) - k->got_len))) > 0)
		k->got_len += (size_t)r;
	r = SSL_get_error(k->ssl, r);
	if (r != SSL_ERROR_WANT_READ)
		T_FAIL("client SSL_read: error %d: %s", r,
		       ERR_reason_error_string(ERR_peek_last_error()));
	return 0;
}

/* What the client wrote, into the transport's recv; @keep of it held. */
static int client_to(struct side *d, struct client *k, uint8_t *rest,
		     size_t *rest_len, size_t keep)
{
	static uint8_t buf[4 * TLS_MAX_RECORD];
	size_t n = 0;
	int r;

	while ((r = BIO_read(k->out, buf + n, (int)(sizeof(buf) - n))) > 0)
		n += (size_t)r;
	T_CHECK(keep <= n);
	if (rest) {
		memcpy(rest, buf + n - keep, keep);
		*rest_len = keep;
	}
	if (xp()->recv(&d->s, d->c, buf, n - keep))
		return 2;	/* the transport owes a send */
	return 1;
}

/*
 * Sends what the transport has for @d's connection until all of it is
 * out (the client pumped meanwhile), as conn_send.c's sent() would.
 */
static int flush(struct side *d, struct client *k)
{
	uint64_t end = now_ms() + DEADLINE_MS;
	int r, res;

	r = xp()->send(&d->s, d->c);
	T_CHECK(r >= 0);
	while (r > 0) {
		if (now_ms() > end)
			T_FAIL("a send did not complete");
		got_send = false;
		if (client_pump(k))
			return 1;
		T_CHECK(ring_run_for(&d->s.ring, 5 * 1000000ull, on_cqe,
				     NULL) >= 0);
		if (!got_send)
			continue;
		d->c->flags &= ~ENG_CONN_F_SEND;
		res = xp()->sent(&d->s, d->c, last.res);
		if (res == -EINPROGRESS)
			continue;
		if (res < 0)
			T_FAIL("send: %s", strerror(-res));
		conn__sq_sent(&d->s, d->c, (uint32_t)res);
		r = xp()->send(&d->s, d->c);
		T_CHECK(r >= 0);
	}
	return client_pump(k);
}

/* The server's SSL_CTX, as tlsio_ctx.c makes it: no tickets, keylog. */
static int make_ctx(void)
{
	if (t_make_cert(&cert, &pkey))
		return 1;
	sctx = SSL_CTX_new(TLS_server_method());
	T_CHECK(sctx);
	SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
	SSL_CTX_set_num_tickets(sctx, 0);
	SSL_CTX_set_keylog_callback(sctx, tlsio__keylog);
	T_CHECK(SSL_CTX_use_certificate(sctx, cert) == 1 &&
		SSL_CTX_use_PrivateKey(sctx, pkey) == 1);
	atomic_store(&eng.tls_ctx, sctx);
	return 0;
}

/* A client of suite @suite (NULL: TLS 1.2) handshaken with @d. */
static int handshake(struct side *d, struct client *k, const char *suite)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	struct eng_ho_buf b = { 0 };
	int i, r;

	T_CHECK(cctx);
	if (suite) {
		SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
		SSL_CTX_set_ciphersuites(cctx, suite);
	} else {
		SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
	}
	k->ssl = SSL_new(cctx);
	SSL_CTX_free(cctx);
	k->in = BIO_new(BIO_s_mem());
	k->out = BIO_new(BIO_s_mem());
	T_CHECK(k->ssl && k->in && k->out);
	SSL_set_bio(k->ssl, k->in, k->out);
	SSL_set_connect_state(k->ssl);
	T_CHECK(xp()->accept(&d->s, d->c) == 0);
	for (i = 0; i < 8; i++) {
		r = SSL_do_handshake(k->ssl);
		if (r == 1)
			break;
		T_CHECK(SSL_get_error(k->ssl, r) == SSL_ERROR_WANT_READ);
		/* not yet carried: the quiesce waits for it */
		T_CHECK(tlsio__ho_save(&d->s, d->c, &b) == -EAGAIN);
		if (client_to(d, k, NULL, NULL, 0) == 2 && flush(d, k))
			return 1;
	}
	T_CHECK(r == 1);
	/* the client's Finished */
	T_CHECK(client_to(d, k, NULL, NULL, 0) > 0);
	eng_ho_buf_free(&b);
	return 0;
}

/* The end of a test: the client, the socketpair @sv and the side @d go. */
static void end(struct side *d, struct client *k, const int *sv)
{
	SSL_free(k->ssl);
	close(sv[0]);
	close(sv[1]);
	side_exit(d);
	free(d);
	free(k);
}

/* The answer: 3 frames, one sealed send of more than the socket takes. */
static int queue_answer(struct eng_conn *c, struct eng_buf **bufs,
			const uint8_t *answer)
{
	static const size_t lens[3] = { 1000, ANSWER - 1000 - 7, 7 };
	size_t off = 0;

	for (int i = 0; i < 3; i++) {
		bufs[i] = eng_buf_new((uint32_t)lens[i]);
		T_CHECK(bufs[i]);
		bufs[i]->len = (uint32_t)lens[i];
		memcpy(bufs[i]->data, answer + off, lens[i]);
		off += lens[i];
		T_CHECK(conn__sq_push(c, eng_buf_get(bufs[i])) == 0);
	}
	return 0;
}

/* @d's connection quiesced and muted (@on), as a hand-over's save has it. */
static int quiet(struct side *d, bool on)
{
	if (on) {
		d->s.ho_bits = calloc(SLOT / 64 + 1, sizeof(uint64_t));
		T_CHECK(d->s.ho_bits);
		d->s.ho_bits[SLOT / 64] |= UINT64_C(1) << (SLOT % 64);
	} else {
		free(d->s.ho_bits);
		d->s.ho_bits = NULL;
	}
	d->s.ho_mute = on;
	return 0;
}

/*
 * The hand-over of one connection in @suite, mid-stream both ways; or,
 * @resume, the hand-over failed: the old side sends on.
 */
static int carry_one(const char *suite, bool resume)
{
	static uint8_t answer[ANSWER], rest[TLS_MAX_RECORD];
	static const char req[] = "GET /carried HTTP/1.1\r\nHost: a\r\n\r\n";
	struct eng_ho_buf b = { 0 };
	struct eng_ho_rd rd;
	struct eng_buf *bufs[3], *all;
	struct side *old = calloc(1, sizeof(*old));
	struct side *new = calloc(1, sizeof(*new));
	struct client *k = calloc(1, sizeof(*k));
	size_t rest_len = 0;
	int sv[2], fd2, r, i;

	T_CHECK(old && new && k);
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	/* small buffers: the answer cannot go out in one send */
	r = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &r, sizeof(r));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &r, sizeof(r));
	T_CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
	k->fd = sv[1];
	fd2 = dup(sv[0]);	/* the fd the new process receives */
	T_CHECK(fd2 >= 0);
	if (side_init(old, sv[0]) || side_init(new, fd2) ||
	    handshake(old, k, suite))
		return 1;
	T_CHECK(RAND_bytes(answer, sizeof(answer)) == 1);
	sunk_len = 0;

	/* the client's request, cut 9 bytes into its record's body */
	T_CHECK(SSL_write(k->ssl, req, sizeof(req) - 1) > 0);
	T_CHECK(BIO_ctrl_pending(k->out) > TLS_HDR_LEN + 9);
	r = client_to(old, k, rest, &rest_len,
		      BIO_ctrl_pending(k->out) - TLS_HDR_LEN - 9);
	T_CHECK(r == 1 && sunk_len == 0);

	/* the answer sealed, partly sent, its rest cancelled by a quiesce */
	if (queue_answer(old->c, bufs, answer))
		return 1;
	got_send = false;
	T_CHECK(xp()->send(&old->s, old->c) == 1);
	T_CHECK(old->c->nflight == 3);
	for (i = 0; i < 1000 && !got_send; i++)
		T_CHECK(ring_run_for(&old->s.ring, 5 * 1000000ull, on_cqe,
				     NULL) >= 0);
	T_CHECK(got_send && last.res > 0 && last.res < (int)ANSWER);
	old->c->flags &= ~ENG_CONN_F_SEND;
	T_CHECK(xp()->sent(&old->s, old->c, last.res) == -EINPROGRESS);
	T_CHECK(old->c->flags & ENG_CONN_F_SEND);
	T_CHECK(tlsio__ho_save(&old->s, old->c, &b) == -EAGAIN);
	got_send = false;
	T_CHECK(ring_cancel(&old->s.ring, ring_ud(ENG_OP_SEND, SLOT,
						  old->c->gen),
			    ring_ud(ENG_OP_CANCEL, 0, 0)) == 0);
	for (i = 0; i < 1000 && !got_send; i++)
		T_CHECK(ring_run_for(&old->s.ring, 5 * 1000000ull, on_cqe,
				     NULL) >= 0);
	T_CHECK(got_send && last.res == -ECANCELED);
	/* through the core's completion, which sends no more while muted */
	if (quiet(old, true))
		return 1;
	eng_conn_on_send(&old->s, &last);
	T_CHECK(!(old->c->flags & ENG_CONN_F_SEND) && old->c->sq_head);
	if (resume) {
		/*
		 * A slow consumer's cut meanwhile keeps the entries the
		 * cancelled send sealed; resumed, the old side sends their
		 * rest, then what was queued behind them, once each.
		 */
		conn__sq_cut(old->c);
		T_CHECK(old->c->queued == ANSWER);
		quiet(old, false);
		all = eng_buf_new(4);
		T_CHECK(all);
		all->len = 4;
		memcpy(all->data, "tail", 4);
		T_CHECK(conn__sq_push(old->c, all) == 0);
		if (flush(old, k))
			return 1;
		if (k->got_len != ANSWER + 4 || memcmp(k->got, answer, ANSWER) ||
		    memcmp(k->got + ANSWER, "tail", 4))
			T_FAIL("%s resumed: the client read %zu of %u bytes, "
			       "or others", suite, k->got_len, ANSWER + 4);
		T_CHECK(!old->c->sq_head && old->c->queued == 0);
		for (i = 0; i < 3; i++)
			eng_buf_put(bufs[i]);
		xp()->release(&old->s, old->c);
		xp()->release(&new->s, new->c);
		close(fd2);
		side_exit(new);
		free(new);
		end(old, k, sv);
		return 0;
	}

	/* saved; the old side's slot goes, as after a confirmed hand-over */
	T_CHECK(tlsio__ho_save(&old->s, old->c, &b) == 0 && !b.err);
	xp()->release(&old->s, old->c);
	quiet(old, false);
	T_CHECK(atomic_load(&old->s.tls->state_bytes) == 0);

	/*
	 * Loaded on a fresh slot holding the same queue as the core's
	 * record carries it: its bytes as one entry (conn_handover.c),
	 * with what was queued behind the cancelled send ("tail").
	 */
	rd = (struct eng_ho_rd){ .p = b.p, .len = b.len };
	T_CHECK(tlsio__ho_load(&new->s, new->c, &rd) == -EINVAL);
	T_CHECK(!eng_tls_at(&new->s, SLOT));	/* covered past its queue */
	all = eng_buf_new(ANSWER + 4);
	T_CHECK(all);
	all->len = ANSWER + 4;
	memcpy(all->data, answer, ANSWER);
	memcpy(all->data + ANSWER, "tail", 4);
	T_CHECK(conn__sq_push(new->c, all) == 0);
	for (i = 0; i < 3; i++)
		eng_buf_put(bufs[i]);
	rd = (struct eng_ho_rd){ .p = b.p, .len = b.len };
	T_CHECK(tlsio__ho_load(&new->s, new->c, &rd) == 0);
	T_CHECK(rd.off == rd.len && !rd.err);
	T_CHECK(atomic_load(&new->s.tls->conns) == 1);
	OPENSSL_cleanse(b.p, b.len);
	eng_ho_buf_free(&b);

	/* the answer's rest and the tail, once and in order */
	if (flush(new, k))
		return 1;
	if (k->got_len != ANSWER + 4 || memcmp(k->got, answer, ANSWER) ||
	    memcmp(k->got + ANSWER, "tail", 4))
		T_FAIL("%s: the client read %zu of %u bytes, or others",
		       suite, k->got_len, ANSWER + 4);
	T_CHECK(!new->c->sq_head && new->c->queued == 0);
	T_CHECK(xp()->recv(&new->s, new->c, rest, rest_len) == false);
	T_CHECK(sunk_len == sizeof(req) - 1 && !memcmp(sunk, req, sunk_len));

	/* a KeyUpdate asked by the client is answered; then data both ways */
	T_CHECK(SSL_key_update(k->ssl, SSL_KEY_UPDATE_REQUESTED) == 1);
	T_CHECK(SSL_write(k->ssl, "after", 5) == 5);
	T_CHECK(client_to(new, k, NULL, NULL, 0) == 2);
	if (flush(new, k))
		return 1;
	T_CHECK(sunk_len == sizeof(req) - 1 + 5 &&
		!memcmp(sunk + sunk_len - 5, "after", 5));
	k->got_len = 0;
	bufs[0] = eng_buf_new(4);
	T_CHECK(bufs[0]);
	bufs[0]->len = 4;
	memcpy(bufs[0]->data, "pong", 4);
	T_CHECK(conn__sq_push(new->c, bufs[0]) == 0);
	if (flush(new, k))
		return 1;
	T_CHECK(k->got_len == 4 && !memcmp(k->got, "pong", 4));

	xp()->release(&new->s, new->c);
	T_CHECK(atomic_load(&new->s.tls->state_bytes) == 0 &&
		atomic_load(&new->s.tls->conns) == 0 &&
		atomic_load(&new->s.tls->handshaking) == 0);
	close(fd2);
	side_exit(new);
	free(new);
	end(old, k, sv);
	return 0;
}

/* Loads @p[0..@n) on a fresh slot of @d: its result, the slot freed. */
static int load_bytes(struct side *d, const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	struct eng_ho_rd rd;
	int r;

	memcpy(copy, p, n);
	rd = (struct eng_ho_rd){ .p = copy, .len = n };
	r = tlsio__ho_load(&d->s, d->c, &rd);
	xp()->release(&d->s, d->c);
	free(copy);
	return r;
}

/*
 * Records refused: cut at every length, a record layer of a client,
 * more covered entries than a send takes, another version; a slot that
 * holds a live connection; a connection ending and TLS 1.2 not carried.
 * Nothing is left held.
 */
static int test_refused(void)
{
	static const char req[] = "GET / HTTP/1.1\r\n";
	struct side *d = calloc(1, sizeof(*d));
	struct client *k = calloc(1, sizeof(*k));
	struct eng_ho_buf b = { 0 };
	struct eng_ho_rd rd;
	int sv[2];
	size_t i;

	T_CHECK(d && k && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	T_CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
	k->fd = sv[1];
	if (side_init(d, sv[0]) ||
	    handshake(d, k, "TLS_AES_128_GCM_SHA256"))
		return 1;
	/* a record with a cut record in it: all but its last 4 bytes */
	T_CHECK(SSL_write(k->ssl, req, sizeof(req) - 1) > 0);
	T_CHECK(client_to(d, k, NULL, NULL, 4) == 1);
	T_CHECK(tlsio__ho_save(&d->s, d->c, &b) == 0);
	/* length, the record (146 idle, and the cut record), covered */
	T_CHECK(b.len == 4 + 146 + TLS_RECORD_OVERHEAD + sizeof(req) - 1 -
			 4 + 4);
	/* a live slot is not overwritten */
	rd = (struct eng_ho_rd){ .p = b.p, .len = b.len };
	T_CHECK(tlsio__ho_load(&d->s, d->c, &rd) == -EEXIST);
	/* one whose close_notify is sealed is ending: not carried */
	i = b.len;
	eng_tls_at(&d->s, SLOT)->flags |= T_CLOSE_SENT;
	T_CHECK(tlsio__ho_save(&d->s, d->c, &b) == -EPIPE && b.len == i);
	xp()->release(&d->s, d->c);
	T_CHECK(atomic_load(&d->s.tls->state_bytes) == 0);

	T_CHECK(load_bytes(d, b.p, b.len) == 0);
	for (i = 0; i < b.len; i++)
		if (load_bytes(d, b.p, i) != -EINVAL)
			T_FAIL("cut at %zu: loaded", i);
	b.p[4 + 3] |= TLS_RL_CLIENT;		/* a client's record layer */
	T_CHECK(load_bytes(d, b.p, b.len) == -EINVAL);
	b.p[4 + 3] &= (uint8_t)~TLS_RL_CLIENT;
	b.p[b.len - 1] = 1;			/* covered, nothing sealed */
	T_CHECK(load_bytes(d, b.p, b.len) == -EINVAL);
	b.p[b.len - 1] = 0;
	b.p[4] = TLS_HO_VERSION + 1;
	T_CHECK(load_bytes(d, b.p, b.len) == -EPROTONOSUPPORT);
	T_CHECK(atomic_load(&d->s.tls->state_bytes) == 0 &&
		atomic_load(&d->s.tls->conns) == 0 &&
		atomic_load(&d->s.tls->handshaking) == 0);
	eng_ho_buf_free(&b);
	SSL_free(k->ssl);

	/* TLS 1.2 keeps its SSL*: drained, not carried */
	memset(k, 0, sizeof(*k));
	k->fd = sv[1];
	d->c->state = ENG_CONN_HTTP;
	if (handshake(d, k, NULL))
		return 1;
	T_CHECK(tlsio__ho_save(&d->s, d->c, &b) == -EOPNOTSUPP && !b.len);
	xp()->release(&d->s, d->c);
	end(d, k, sv);
	return 0;
}

int main(void)
{
	static const char *suites[3] = { "TLS_AES_128_GCM_SHA256",
					 "TLS_AES_256_GCM_SHA384",
					 "TLS_CHACHA20_POLY1305_SHA256" };
	int ret = 0;

	eng.cfg.tls_max_handshakes = 16;
	pthread_mutex_init(&eng.tls_lock, NULL);
	if (eng_endpoint_add(&sink_ep) || tlsio__xport_register() ||
	    make_ctx())
		return T_EXIT_FAIL;
	for (int i = 0; i < 3 && !ret; i++)
		ret = carry_one(suites[i], false);
	if (!ret)
		ret = carry_one(suites[0], true);
	if (!ret)
		ret = test_refused();
	SSL_CTX_free(sctx);
	X509_free(cert);
	EVP_PKEY_free(pkey);
	return ret ? T_EXIT_FAIL : T_EXIT_PASS;
}
