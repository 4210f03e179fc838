/* SPDX-License-Identifier: MIT */
/*
 * tls: the TLS 1.3 record layer after the handshake (RFC 8446 sections 5,
 * 4.6.3 and 7), kept in struct tls_rl, a few hundred bytes per connection.
 * OpenSSL's libssl runs the handshake; this module takes over the traffic
 * secrets it hands out and from then on protects and opens records itself:
 * per direction the traffic secret, the key and IV derived from it with
 * HKDF-Expand-Label, and a 64-bit sequence number. Every primitive is
 * libcrypto's (EVP_KDF "HKDF" in expand-only mode, the EVP AEAD ciphers);
 * nothing cryptographic is written here. Pure: no I/O, no allocation on the
 * record path. The EVP_CIPHER_CTX is the caller's, one per shard, and is
 * re-keyed for every record, so a connection owns nothing but its tls_rl.
 *
 * Switch-over from an OpenSSL SSL* (what the engine must do):
 *  - Run the handshake with SSL_set_bio() on memory BIOs, read_ahead off
 *    (the default), and write into the read BIO whole records only: buffer
 *    a record until its 5-byte header and all of its body have arrived.
 *    A client commonly sends its HTTP upgrade in the same flight as its
 *    Finished; OpenSSL then stops at the record boundary after Finished,
 *    and whatever stays in the read BIO (BIO_read() it back) is the first
 *    record it did not consume: hand it to tls_open(), never to SSL_read().
 *  - Take the traffic secrets from SSL_CTX_set_keylog_callback():
 *    CLIENT_TRAFFIC_SECRET_0 and SERVER_TRAFFIC_SECRET_0, and the suite
 *    from SSL_CIPHER_get_protocol_id(SSL_get_current_cipher()).
 *  - Send what OpenSSL wrote to its write BIO (the server's Finished
 *    flight and its NewSessionTickets), and count the records it wrote
 *    after the handshake completed: each NewSessionTicket went out under
 *    SERVER_TRAFFIC_SECRET_0, so tx.seq starts at that count (0 with
 *    SSL_CTX_set_num_tickets(ctx, 0)). rx.seq starts at 0.
 *  - Then SSL_free() and tls_rl_init(). tests/test-proto-tls.c does exactly
 *    this against a live OpenSSL client for every suite.
 *
 * Errors are -errno values that tls_alert_of() maps to the alert to send
 * before closing. After any error other than -EAGAIN and -ENOSPC the
 * connection is done: send the alert, process nothing more, close.
 */
#ifndef RC_PROTO_TLS_H
#define RC_PROTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/evp.h>

/* Cipher suites, as on the wire (RFC 8446 B.4). */
enum {
	TLS_AES_128_GCM_SHA256		= 0x1301,
	TLS_AES_256_GCM_SHA384		= 0x1302,
	TLS_CHACHA20_POLY1305_SHA256	= 0x1303,
};

/* Record content types (RFC 8446 5.1). */
enum {
	TLS_CT_CHANGE_CIPHER_SPEC	= 20,
	TLS_CT_ALERT			= 21,
	TLS_CT_HANDSHAKE		= 22,
	TLS_CT_APPLICATION_DATA		= 23,
};

/* Alert descriptions this module sends or tells apart (RFC 8446 6). */
enum {
	TLS_ALERT_CLOSE_NOTIFY		= 0,
	TLS_ALERT_UNEXPECTED_MESSAGE	= 10,
	TLS_ALERT_BAD_RECORD_MAC	= 20,
	TLS_ALERT_RECORD_OVERFLOW	= 22,
	TLS_ALERT_ILLEGAL_PARAMETER	= 47,
	TLS_ALERT_DECODE_ERROR		= 50,
	TLS_ALERT_INTERNAL_ERROR	= 80,
	TLS_ALERT_USER_CANCELED		= 90,
};

#define TLS_HDR_LEN		5		/* type, version, length */
#define TLS_TAG_LEN		16		/* every TLS 1.3 AEAD */
#define TLS_IV_LEN		12
#define TLS_MAX_KEY		32
#define TLS_MAX_SECRET		48		/* SHA-384 */
#define TLS_MAX_PLAIN		16384		/* content bytes a record */
#define TLS_MAX_CIPHER		(TLS_MAX_PLAIN + 256)	/* on the wire */
#define TLS_MAX_RECORD		(TLS_HDR_LEN + TLS_MAX_CIPHER)
/* a record's own bytes beside its content: header, type byte, tag */
#define TLS_RECORD_OVERHEAD	(TLS_HDR_LEN + 1 + TLS_TAG_LEN)
/* a KeyUpdate record: 4-byte handshake header and 1 byte of body */
#define TLS_KEY_UPDATE_LEN	(TLS_RECORD_OVERHEAD + 5)
/*
 * tls_seal() updates its sending key once this many records went out
 * under one key: RFC 8446 5.5 allows 2^24.5 full-size records for
 * AES-GCM; ChaCha20-Poly1305 has no practical limit, but one rule is
 * simpler and a KeyUpdate costs one 27-byte record.
 */
#define TLS_SEQ_REKEY		(1ull << 24)

/* One direction of the record layer. */
struct tls_dir {
	uint64_t seq;			/* next record's sequence number */
	uint8_t secret[TLS_MAX_SECRET];	/* traffic secret, for KeyUpdate */
	uint8_t key[TLS_MAX_KEY];	/* AEAD key: 16 or 32 bytes */
	uint8_t iv[TLS_IV_LEN];		/* XORed with seq for each nonce */
	uint16_t suite;			/* TLS_AES_128_GCM_SHA256, ... */
};

enum {
	TLS_RL_CLIENT		= 1 << 0,	/* we are the client */
	TLS_RL_UPDATE_OWED	= 1 << 1,	/* peer asked for a KeyUpdate */
};

/* Both directions: all a connection keeps after the handshake. */
struct tls_rl {
	struct tls_dir rx;		/* records we open */
	struct tls_dir tx;		/* records we seal */
	uint8_t flags;			/* TLS_RL_* */
};

_Static_assert(sizeof(struct tls_rl) <= 256,
	       "the TLS state of a connection must fit 256 bytes");

/*
 * HKDF-Expand-Label(@secret, "tls13 " @label, @context, @out_len) of RFC
 * 8446 7.1 with @suite's hash, through EVP_KDF "HKDF" in expand-only mode.
 * @label is at most 249 bytes and @context at most 255. Returns 0, -EINVAL
 * for an unknown suite or a label too long, or -EIO when libcrypto fails.
 */
int tls_expand_label(uint16_t suite, const uint8_t *secret,
		     const char *label, const uint8_t *context,
		     size_t context_len, uint8_t *out, size_t out_len);

/* The length of @suite's hash, so of its traffic secrets; 0 if unknown. */
size_t tls_secret_len(uint16_t suite);

/*
 * Sets up @d from traffic secret @secret (@len bytes, the suite's hash
 * length): key and IV as RFC 8446 7.3 derives them, sequence 0. Returns 0,
 * -EINVAL for an unknown suite or a wrong length, -EIO if libcrypto fails.
 */
int tls_dir_init(struct tls_dir *d, uint16_t suite, const uint8_t *secret,
		 size_t len);

/*
 * Moves @d to the next traffic secret (RFC 8446 7.2, "traffic upd"), then
 * re-derives key and IV and restarts the sequence at 0. Returns 0 or -EIO.
 */
int tls_dir_update(struct tls_dir *d);

/*
 * Sets up both directions from the secrets OpenSSL handed out: @rx_secret
 * is the peer's, @tx_secret ours, both @len bytes. @flags may hold
 * TLS_RL_CLIENT. Both sequences start at 0; a server that sent
 * NewSessionTickets under @tx_secret sets tx.seq to their count. Returns 0
 * or an error of tls_dir_init(), with @rl wiped.
 */
int tls_rl_init(struct tls_rl *rl, uint16_t suite, const uint8_t *rx_secret,
		const uint8_t *tx_secret, size_t len, unsigned flags);

/* Wipes the secrets and keys in @rl. */
void tls_rl_exit(struct tls_rl *rl);

/*
 * ---- a live hand-over (docs/HANDOVER.md, "The TLS record") ----------------
 * What a connection's TLS 1.3 record layer needs to go on in another
 * process: the suite, the flags, per direction the sequence number, the
 * traffic secret (a KeyUpdate derives the next from it), the key and the
 * IV (carried, not derived again: four HKDF calls a connection would
 * cost more than the bytes), then the bytes of a record cut by a read and
 * the sealed bytes not yet sent. Big-endian:
 *   version u8 (TLS_HO_VERSION), suite u16, flags u8 (TLS_RL_*),
 *   rx then tx: seq u64, secret, key, iv (the suite's lengths),
 *   part length u16, part, out length u32, out.
 * The record holds keys: whoever holds one reads the connection.
 */
#define TLS_HO_VERSION		1
#define TLS_HO_MAX_OUT		(1u << 20)	/* sealed bytes carried */
/* the longest record, without part and out: 4 + 2 * (8 + 48 + 32 + 12) */
#define TLS_HO_MAX_RL		204
#define TLS_HO_MAX		(TLS_HO_MAX_RL + 2 + TLS_MAX_RECORD + 4 + \
				 TLS_HO_MAX_OUT)

/* A record layer with what it carries, as tls_ho_write() takes it. */
struct tls_ho {
	struct tls_rl rl;
	const uint8_t *part;		/* a record cut by a read: its start */
	size_t part_len;		/* < the record's size */
	const uint8_t *out;		/* sealed under rl.tx, not yet sent */
	size_t out_len;			/* <= TLS_HO_MAX_OUT */
};

/* The bytes tls_ho_write() writes for @h, or 0 if it cannot (see there). */
size_t tls_ho_size(const struct tls_ho *h);

/*
 * Writes @h as a hand-over record into @out (tls_ho_size() bytes).
 * Returns the length, -ENOSPC (nothing written) when @cap is short, or
 * -EINVAL for a record layer never set up, directions of two suites, a
 * part of a whole record or more, or more than TLS_HO_MAX_OUT to send.
 * The caller wipes @out once sent (OPENSSL_cleanse): it holds keys.
 */
ssize_t tls_ho_write(const struct tls_ho *h, uint8_t *out, size_t cap);

/*
 * Reads the hand-over record @p[0..@len) (exactly one, nothing after it)
 * into @h: rl as it was, part and out pointing into @p. Checks every
 * length against the suite and the limits, the flags, and a part's
 * record header (a length within the limit, the part shorter than its
 * record). Returns 0, -EPROTONOSUPPORT for another version, or -EINVAL
 * for anything malformed or cut; on error @h->rl is wiped.
 */
int tls_ho_read(struct tls_ho *h, const uint8_t *p, size_t len);

/* An opened record. */
struct tls_rec {
	uint8_t *data;		/* content, in place in the caller's buffer */
	size_t len;		/* content bytes, padding and type removed */
	uint8_t type;		/* TLS_CT_APPLICATION_DATA, _ALERT or
				 * _HANDSHAKE */
	uint8_t alert;		/* for an alert: its description */
};

/*
 * Opens the record at @buf[0..@len), decrypting in place with the rx key on
 * @ctx. Returns the record's length on the wire (header included), with
 * *@rec filled, once it is whole; -EAGAIN while it is not. rx.seq advances
 * only once the record authenticates. @rec->data points into @buf and
 * holds:
 *  - application data (possibly 0 bytes): the caller's to consume;
 *  - an alert: @rec->alert is its description. close_notify: the peer has
 *    finished sending; user_canceled: ignore (a close_notify follows);
 *    anything else: the peer ended the connection, send nothing back;
 *  - handshake messages, already acted on: a KeyUpdate moved rx to the next
 *    secret (and set TLS_RL_UPDATE_OWED if the peer asked for ours), a
 *    NewSessionTicket to a client was ignored. Nothing for the caller.
 * Errors, the alert in brackets:
 *  -EMSGSIZE (record_overflow): ciphertext over 2^14 + 256 bytes, known
 *   from the header alone, or content over 2^14 bytes without padding;
 *  -EPROTO (unexpected_message): an outer type other than application_data
 *   (ChangeCipherSpec included: the handshake is over), an unknown inner
 *   type, no non-zero byte in the plaintext, an empty alert or handshake
 *   record, a handshake message a peer may not send now, a KeyUpdate not
 *   at the end of its record, or a handshake message cut at the record's
 *   end (not reassembled: no TLS stack splits its post-handshake messages);
 *  -EILSEQ (decode_error): a version other than 0x0303, an alert not 2
 *   bytes long, a KeyUpdate whose body is not 1 byte;
 *  -ERANGE (illegal_parameter): a KeyUpdate request other than 0 or 1;
 *  -EBADMSG (bad_record_mac): shorter than a tag, or failed authentication;
 *  -EOVERFLOW (internal_error): rx.seq exhausted (2^64 - 1 records);
 *  -EIO (internal_error): libcrypto failed.
 * On error @buf may be partly decrypted and must not be used.
 */
ssize_t tls_open(struct tls_rl *rl, EVP_CIPHER_CTX *ctx, uint8_t *buf,
		 size_t len, struct tls_rec *rec);

/*
 * The most bytes tls_seal() writes for @len content bytes with @pad bytes
 * of padding per record: the records' overhead and one KeyUpdate record.
 */
size_t tls_seal_bound(size_t len, size_t pad);

/*
 * Seals the @iovcnt pieces at @iov, in order, as records of content type
 * @type (TLS_CT_APPLICATION_DATA, _HANDSHAKE or _ALERT) into @out: each
 * record takes up to 2^14 content bytes, straight from the pieces (a
 * shared frame is read, never copied first), plus @pad zero bytes of
 * padding, cut to what the record has room for. No content gives one
 * empty record for application data and -EINVAL otherwise (RFC 8446 5.4).
 * For application data, a KeyUpdate record (update_not_requested) goes
 * first when the peer asked for one (TLS_RL_UPDATE_OWED) or when tx.seq
 * has reached TLS_SEQ_REKEY, and tx moves to its next secret.
 * Returns the bytes written, -ENOSPC (nothing written) when @cap is below
 * tls_seal_bound(), -EINVAL for a bad @type, -EOVERFLOW when tx.seq is
 * exhausted, or -EIO.
 */
ssize_t tls_seal(struct tls_rl *rl, EVP_CIPHER_CTX *ctx, uint8_t type,
		 const struct iovec *iov, unsigned iovcnt, size_t pad,
		 uint8_t *out, size_t cap);

/*
 * Seals one alert record with description @desc into @out (at least
 * TLS_RECORD_OVERHEAD + 2 bytes): level warning for close_notify and
 * user_canceled, fatal otherwise. Returns its length or as tls_seal().
 */
ssize_t tls_seal_alert(struct tls_rl *rl, EVP_CIPHER_CTX *ctx, uint8_t desc,
		       uint8_t *out, size_t cap);

/*
 * Seals a KeyUpdate record into @out (TLS_KEY_UPDATE_LEN bytes) under the
 * current tx key, then moves tx to its next secret and clears
 * TLS_RL_UPDATE_OWED. With @request the peer must answer with its own
 * KeyUpdate, which tls_open() then applies. Returns TLS_KEY_UPDATE_LEN or
 * as tls_seal().
 */
ssize_t tls_seal_key_update(struct tls_rl *rl, EVP_CIPHER_CTX *ctx,
			    bool request, uint8_t *out, size_t cap);

/*
 * The alert to send for a negative error from this module: bad_record_mac,
 * record_overflow, unexpected_message, decode_error, illegal_parameter,
 * or internal_error for anything else.
 */
uint8_t tls_alert_of(int err);

#endif
