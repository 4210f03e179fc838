/* SPDX-License-Identifier: MIT */
/*
 * tls-client: an OpenSSL TLS 1.3 client for tests/py/test_tls.py, for what
 * Python's ssl module cannot do: send a KeyUpdate mid-stream, or send a
 * record that is tampered with, over the size limit, of a type the engine
 * must refuse, or cut short. It runs the connection on memory BIOs over a
 * blocking socket, so the test sees the raw records the engine sends.
 *
 *   tls-client HOST PORT CAFILE keyupdate CHANNEL
 *	upgrades to /ws, subscribes to CHANNEL, prints "ready", then one line
 *	per push received ("push N"). After push 1 it sends a KeyUpdate that
 *	requests ours, alone, and waits for the engine's KeyUpdate record to
 *	arrive by itself ("server updated"); after push 3, a KeyUpdate that
 *	does not, with a ping behind it. After push 5: "done".
 *   tls-client HOST PORT CAFILE tamper|overflow|badtype|clienthello
 *	sends a record with its tag changed, a header announcing 2^14 + 257
 *	bytes, a record that authenticates but has inner content type 99, or
 *	one holding a ClientHello, and prints "alert N" for the alert the
 *	engine answers with.
 *   tls-client HOST PORT CAFILE truncated
 *	sends the first half of a whole record and shuts its write side,
 *	then prints "alert N" if the engine sends an alert and "closed" at
 *	EOF.
 *   tls-client HOST PORT CAFILE partial
 *	sends the first 8,000 bytes of a record announcing 16,000, prints
 *	"sent", then "closed" when the engine closes (within 60 s) or "open".
 * Any failure prints "error ..." and exits 1. Every wait is bounded.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "tls.h"

#define WAIT_MS	10000

static int sock = -1;
static SSL *ssl;
static BIO *rb, *wb;
static int alert_seen = -1;
/* our first application traffic secret, from OpenSSL's key log */
static uint8_t tx_secret[TLS_MAX_SECRET];
static size_t tx_secret_len;

static void die(const char *what)
{
	printf("error %s\n", what);
	ERR_print_errors_fp(stdout);
	exit(1);
}

/* Sends what OpenSSL wrote. */
static void flush_out(void)
{
	uint8_t buf[16384];
	int n;

	while ((n = BIO_read(wb, buf, sizeof(buf))) > 0) {
		for (int off = 0; off < n;) {
			ssize_t w = send(sock, buf + off, (size_t)(n - off),
					 MSG_NOSIGNAL);

			if (w <= 0)
				die("send");
			off += (int)w;
		}
	}
}

/* Reads the socket once (bounded wait) into @buf. Returns bytes, 0 EOF. */
static ssize_t raw_read(uint8_t *buf, size_t cap)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, WAIT_MS) != 1)
		die("timeout waiting for the engine");
	n = recv(sock, buf, cap, 0);
	if (n < 0)
		return 0;	/* a reset ends it like EOF */
	return n;
}

/* Feeds one read of the socket to OpenSSL. Returns false at EOF. */
static int fill(void)
{
	uint8_t buf[16384];
	ssize_t n = raw_read(buf, sizeof(buf));

	if (n > 0)
		BIO_write(rb, buf, (int)n);
	return n > 0;
}

/*
 * The client's Finished stays in the write BIO: the first write sends it
 * with the first application data in one send(), as browsers do, so the
 * engine gets both in one read and must hand the record after Finished
 * to its own record layer.
 */
static void handshake(void)
{
	for (int i = 0; i < 100; i++) {
		int r = SSL_do_handshake(ssl);

		if (r == 1)
			return;
		flush_out();
		if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ || !fill())
			die("handshake");
	}
	die("handshake did not finish");
}

static void ssl_write(const void *p, size_t n)
{
	if (SSL_write(ssl, p, (int)n) != (int)n)
		die("SSL_write");
	flush_out();
}

/* Reads exactly @n plaintext bytes. */
static void ssl_read(uint8_t *p, size_t n)
{
	while (n) {
		int r = SSL_read(ssl, p, (int)n);

		if (r > 0) {
			p += r;
			n -= (size_t)r;
			continue;
		}
		if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ || !fill())
			die("SSL_read");
		flush_out();	/* a KeyUpdate we owe, say */
	}
}

/* A masked client frame (mask 0: the payload goes as is). */
static void ws_send(uint8_t op, const char *payload)
{
	uint8_t hdr[8] = { (uint8_t)(0x80 | op) };
	size_t n = strlen(payload), h = 2;
	uint8_t buf[512];

	if (n > 125 && n <= 400) {
		hdr[1] = 0x80 | 126;
		hdr[2] = (uint8_t)(n >> 8);
		hdr[3] = (uint8_t)n;
		h = 4;
	} else if (n <= 125) {
		hdr[1] = (uint8_t)(0x80 | n);
	} else {
		die("frame too long for this client");
	}
	memcpy(buf, hdr, h);
	memset(buf + h, 0, 4);		/* the mask key: zero */
	memcpy(buf + h + 4, payload, n);
	ssl_write(buf, h + 4 + n);
}

/* Reads one server frame's text into @out (NUL-ended). Returns opcode. */
static int ws_recv(char *out, size_t cap)
{
	uint8_t h[8];
	size_t len;

	ssl_read(h, 2);
	len = h[1] & 0x7f;
	if (len == 126) {
		ssl_read(h + 2, 2);
		len = (size_t)h[2] << 8 | h[3];
	} else if (len == 127) {
		die("frame too long for this client");
	}
	if (len >= cap)
		die("frame too long for this client");
	ssl_read((uint8_t *)out, len);
	out[len] = 0;
	return h[0] & 0x0f;
}

static void upgrade(void)
{
	static const char req[] =
		"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
	char head[1024];
	size_t n = 0;

	ssl_write(req, sizeof(req) - 1);
	while (n < sizeof(head) - 1) {
		ssl_read((uint8_t *)head + n, 1);
		n++;
		head[n] = 0;
		if (n >= 4 && !memcmp(head + n - 4, "\r\n\r\n", 4))
			break;
	}
	if (strncmp(head, "HTTP/1.1 101", 12))
		die("no 101");
}

/* The engine's KeyUpdate comes alone, 27 bytes: nothing else is due. */
static void expect_server_update(void)
{
	uint8_t rec[64];
	ssize_t n = raw_read(rec, sizeof(rec));

	if (n != 27 || rec[0] != 23 || rec[3] != 0 || rec[4] != 22) {
		printf("error not a lone KeyUpdate record: %zd bytes\n", n);
		exit(1);
	}
	BIO_write(rb, rec, (int)n);
	printf("server updated\n");
}

static int keyupdate(const char *channel)
{
	char msg[4096], cmd[256];
	int pushes = 0;

	upgrade();
	snprintf(cmd, sizeof(cmd),
		 "{\"seq\":1,\"cmd\":\"subscribe\",\"data\":{\"channels\":[\"%s\"]}}",
		 channel);
	ws_send(0x1, cmd);
	if (ws_recv(msg, sizeof(msg)) != 0x1 || !strstr(msg, "\"code\":200"))
		die("subscribe refused");
	printf("ready\n");
	while (pushes < 5) {
		int op = ws_recv(msg, sizeof(msg));

		if (op != 0x1 || !strstr(msg, "\"cmd\":\"push\""))
			continue;	/* the pong of our ping */
		printf("push %d\n", ++pushes);
		if (pushes == 1) {
			/* alone: the engine answers with nothing queued */
			if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1 ||
			    SSL_do_handshake(ssl) != 1)
				die("SSL_key_update");
			flush_out();
			expect_server_update();
		} else if (pushes == 3) {
			if (SSL_key_update(ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1)
				die("SSL_key_update");
			ws_send(0x9, "after update");
		}
	}
	printf("done\n");
	ws_send(0x8, "\x03\xe8");
	return 0;
}

static void on_msg(int write_p, int version, int type, const void *buf,
		   size_t len, SSL *s, void *arg)
{
	(void)version;
	(void)s;
	(void)arg;
	if (!write_p && type == SSL3_RT_ALERT && len == 2)
		alert_seen = ((const uint8_t *)buf)[1];
}

/* Reads the engine's answer up to its alert; prints "alert N". */
static int read_alert(void)
{
	for (int i = 0; i < 10 && alert_seen < 0; i++) {
		uint8_t buf[256];
		int r = SSL_read(ssl, buf, sizeof(buf));

		if (r > 0)
			die("data after a bad record");
		if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ || !fill())
			break;
	}
	if (alert_seen < 0)
		die("no alert");
	printf("alert %d\n", alert_seen);
	return 0;
}

/*
 * Sends our Finished on its own, then has OpenSSL seal a request into
 * @rec without sending it. Returns the record's length.
 */
static int request_record(uint8_t *rec, int cap)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	int n;

	SSL_set_msg_callback(ssl, on_msg);
	flush_out();
	if (SSL_write(ssl, req, sizeof(req) - 1) != (int)sizeof(req) - 1)
		die("SSL_write");
	n = BIO_read(wb, rec, cap);
	if (n <= TLS_HDR_LEN)
		die("no record");
	return n;
}

static int bad_record(int overflow)
{
	uint8_t rec[20000];
	int n = request_record(rec, sizeof(rec));

	if (overflow) {
		/* 2^14 + 257 bytes announced: too long from the header alone */
		rec[3] = (16384 + 257) >> 8;
		rec[4] = (16384 + 257) & 0xff;
		n = 5;
	} else {
		rec[n - 1] ^= 0x01;	/* the tag */
	}
	if (send(sock, rec, (size_t)n, MSG_NOSIGNAL) != n)
		die("send");
	return read_alert();
}

static void keylog(const SSL *s, const char *line)
{
	static const char label[] = "CLIENT_TRAFFIC_SECRET_0 ";
	const char *hex = strrchr(line, ' ');
	size_t n;

	(void)s;
	if (strncmp(line, label, sizeof(label) - 1) || !hex)
		return;
	n = strlen(++hex) / 2;
	if (n > sizeof(tx_secret))
		return;
	for (size_t i = 0; i < n; i++)
		if (sscanf(hex + 2 * i, "%2hhx", &tx_secret[i]) != 1)
			return;
	tx_secret_len = n;
}

/*
 * Seals @len bytes at @body with inner content type @type under our first
 * application traffic key, as the first record after Finished (sequence
 * 0, so the nonce is the IV itself), into @rec. OpenSSL will not send a
 * type of our choosing, so the record is made here. Returns its length.
 */
static int forge(uint8_t type, const uint8_t *body, size_t len, uint8_t *rec)
{
	uint16_t suite = SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(ssl));
	size_t clen = len + 1 + TLS_TAG_LEN;
	const EVP_CIPHER *aead;
	EVP_CIPHER_CTX *ctx;
	struct tls_dir d;
	int out, fin;

	if (!tx_secret_len || tls_dir_init(&d, suite, tx_secret, tx_secret_len))
		die("no traffic secret");
	aead = suite == 0x1301 ? EVP_aes_128_gcm() :
	       suite == 0x1302 ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
	rec[0] = TLS_CT_APPLICATION_DATA;
	rec[1] = 3;
	rec[2] = 3;
	rec[3] = (uint8_t)(clen >> 8);
	rec[4] = (uint8_t)clen;
	memcpy(rec + TLS_HDR_LEN, body, len);
	rec[TLS_HDR_LEN + len] = type;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx || EVP_EncryptInit_ex(ctx, aead, NULL, d.key, d.iv) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &out, rec, TLS_HDR_LEN) != 1 ||
	    EVP_EncryptUpdate(ctx, rec + TLS_HDR_LEN, &out, rec + TLS_HDR_LEN,
			      (int)len + 1) != 1 ||
	    EVP_EncryptFinal_ex(ctx, rec + TLS_HDR_LEN + out, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TLS_TAG_LEN,
				rec + TLS_HDR_LEN + len + 1) != 1)
		die("sealing");
	EVP_CIPHER_CTX_free(ctx);
	return (int)(TLS_HDR_LEN + clen);
}

/*
 * A record that authenticates but that the engine must refuse: inner type
 * 99 (none RFC 8446 defines), or a ClientHello, which a client may not send
 * after the handshake. The answer is read as bad_record() reads it: the
 * engine's records still open with OpenSSL's keys.
 */
static int bad_content(int hello)
{
	static const uint8_t clienthello[] = { 1, 0, 0, 0 };
	static const uint8_t data[] = "GET /healthz HTTP/1.1\r\n\r\n";
	uint8_t rec[256];
	int n;

	SSL_set_msg_callback(ssl, on_msg);
	flush_out();		/* Finished first, on its own */
	n = hello ? forge(TLS_CT_HANDSHAKE, clienthello, sizeof(clienthello), rec)
		  : forge(99, data, sizeof(data) - 1, rec);
	if (send(sock, rec, (size_t)n, MSG_NOSIGNAL) != n)
		die("send");
	return read_alert();
}

/*
 * The first half of a whole record, then our write side shut: the engine
 * sees EOF inside a record. Prints the alert it sends, if any, then
 * "closed" at EOF.
 */
static int truncated(void)
{
	uint8_t rec[256], buf[4096];
	int n = request_record(rec, sizeof(rec));
	ssize_t got = 0;

	if (send(sock, rec, (size_t)n / 2, MSG_NOSIGNAL) != n / 2 ||
	    shutdown(sock, SHUT_WR))
		die("send");
	/* raw_read's deadline bounds each read; 64 reads bound the rest */
	for (int i = 0; i < 64; i++) {
		got = raw_read(buf, sizeof(buf));
		if (!got)
			break;
		BIO_write(rb, buf, (int)got);
	}
	if (got)
		die("no EOF");
	while (SSL_read(ssl, buf, sizeof(buf)) > 0)
		die("data after a truncated record");
	if (alert_seen >= 0)
		printf("alert %d\n", alert_seen);
	printf("closed\n");
	return 0;
}

static int partial(void)
{
	static uint8_t rec[5 + 8000] = { 23, 3, 3, 16000 >> 8, 16000 & 0xff };
	struct pollfd p = { .fd = sock, .events = POLLIN };
	uint8_t buf[4096];

	flush_out();		/* Finished first */
	if (send(sock, rec, sizeof(rec), MSG_NOSIGNAL) != (ssize_t)sizeof(rec))
		die("send");
	printf("sent\n");
	/* whatever comes first (close_notify or an alert) precedes EOF */
	while (poll(&p, 1, 60000) == 1) {
		ssize_t n = recv(sock, buf, sizeof(buf), 0);

		if (n <= 0) {
			printf("closed\n");
			return 0;
		}
	}
	printf("open\n");
	return 0;
}

int main(int argc, char **argv)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	SSL_CTX *ctx;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 5) {
		fprintf(stderr, "usage: %s HOST PORT CAFILE keyupdate CHANNEL | "
			"tamper | overflow | badtype | clienthello | truncated | "
			"partial\n", argv[0]);
		return 2;
	}
	if (getaddrinfo(argv[1], argv[2], &hints, &ai))
		die("getaddrinfo");
	sock = socket(ai->ai_family, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, ai->ai_addr, ai->ai_addrlen) < 0)
		die("connect");
	freeaddrinfo(ai);
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_load_verify_locations(ctx, argv[3], NULL) != 1)
		die("CA file");
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_keylog_callback(ctx, keylog);
	ssl = SSL_new(ctx);
	rb = BIO_new(BIO_s_mem());
	wb = BIO_new(BIO_s_mem());
	SSL_set_bio(ssl, rb, wb);
	SSL_set_connect_state(ssl);
	SSL_set_tlsext_host_name(ssl, "localhost");
	SSL_set1_host(ssl, "localhost");
	handshake();
	if (!strcmp(argv[4], "keyupdate") && argc == 6)
		return keyupdate(argv[5]);
	if (!strcmp(argv[4], "tamper"))
		return bad_record(0);
	if (!strcmp(argv[4], "overflow"))
		return bad_record(1);
	if (!strcmp(argv[4], "badtype") || !strcmp(argv[4], "clienthello"))
		return bad_content(argv[4][0] == 'c');
	if (!strcmp(argv[4], "truncated"))
		return truncated();
	if (!strcmp(argv[4], "partial"))
		return partial();
	die("unknown mode");
	return 1;
}
