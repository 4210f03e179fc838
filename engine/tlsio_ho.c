/* SPDX-License-Identifier: MIT */
/*
 * tlsio_ho.c: a TLS connection carried to a new process (issue 28,
 * level 2), as the TLS transport's ho_save and ho_load. Only a TLS 1.3
 * connection past its handshake goes: its record layer (keys, secrets,
 * sequence numbers), the bytes of a record cut by a read and the sealed
 * bytes of a send not yet on the wire, which proto/tls.c writes and
 * reads (tls_ho_write, tls_ho_read). The record, big-endian:
 *   length u32, then that many bytes of tls_ho_write()'s record,
 *   then covered u32: the bytes of the send queue the sealed bytes hold
 *   (the queue is carried whole, those bytes first).
 * It carries keys: every copy made here is wiped once used.
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include "conn.h"
#include "handover.h"
#include "tlsio_int.h"

#define STACK_REC	512	/* an idle connection's record fits here */

int tlsio__ho_save(struct eng_shard *s, struct eng_conn *c,
		   struct eng_ho_buf *b)
{
	struct eng_tls *t = eng_tls_at(s, eng_slot(s, c));
	uint8_t stack[STACK_REC], *rec = stack;
	struct tls_ho h;
	ssize_t n;
	size_t len;

	if (!t || (t->flags & (T_FAILED | T_CLOSE_SENT)))
		return -EPIPE;		/* ending: nothing to carry */
	if (!(t->flags & T_ESTABLISHED))
		return -EAGAIN;		/* handshake under way */
	if (t->flags & T_SSL)
		return -EOPNOTSUPP;	/* TLS 1.2: an SSL* is no record */
	if (c->flags & ENG_CONN_F_SEND)
		return -EAGAIN;		/* the kernel reads t->out until its CQE */
	memset(&h, 0, sizeof(h));
	h.rl = t->rl;
	if (t->part) {
		h.part = t->part->b;
		h.part_len = t->part->len;
	}
	if (t->out) {
		h.out = t->out->b + t->out->aux;
		h.out_len = t->out->len - t->out->aux;
	}
	len = tls_ho_size(&h);
	if (len > sizeof(stack))
		rec = eng_malloc(len);
	n = rec ? tls_ho_write(&h, rec, len) : -ENOMEM;
	if (n > 0) {
		eng_ho_put_u32(b, (uint32_t)n);
		eng_ho_put(b, rec, (size_t)n);
		/*
		 * The queue's bytes out holds, in bytes: the core carries the
		 * queue as one entry (and the cancelled send covered the
		 * c->nflight first, or was itself carried: t->covered).
		 */
		eng_ho_put_u32(b, t->out ? t->covered + tlsio__covers(c) : 0);
		OPENSSL_cleanse(rec, (size_t)n);
	}
	OPENSSL_cleanse(&h.rl, sizeof(h.rl));
	if (rec != stack)
		eng_free(rec);
	if (n < 0)
		return (int)n;
	return b->err ? -ENOMEM : 0;
}

/*
 * The slot's TLS state for a carried connection, in *@tp: a fresh one,
 * or the one its accept made (a handshake counted, which ends here
 * unfailed). Returns 0, -EEXIST when the slot holds a live one, or
 * -ENOMEM.
 */
static int fresh(struct eng_shard *s, uint32_t slot, struct eng_tls **tp)
{
	struct eng_tls *t = eng_tls_at(s, slot);

	if (t) {
		if (t->flags || t->hs || t->part || t->out)
			return -EEXIST;
		tlsio__hs_over(s, t, -1);
	} else {
		t = eng_malloc(sizeof(*t));
		if (!t)
			return -ENOMEM;
		memset(t, 0, sizeof(*t));
		t->alert = NO_ALERT;
		s->tls->conn[slot] = t;
		tlsio__account(s, sizeof(*t));
	}
	*tp = t;
	return 0;
}

/* The record's bytes, then the slot's state rebuilt from them. */
static int load(struct eng_shard *s, struct eng_conn *c, struct tls_ho *h,
		uint32_t covered)
{
	struct eng_tls *t;
	size_t size;
	int ret;

	/* the queue is loaded first: what out holds is in it */
	if ((h->rl.flags & TLS_RL_CLIENT) || covered > c->queued ||
	    (covered && !h->out))
		return -EINVAL;
	ret = fresh(s, eng_slot(s, c), &t);
	if (ret < 0)
		return ret;
	/* established from here on: release_slot() counts it so */
	t->rl = h->rl;
	t->flags = T_ESTABLISHED;
	atomic_fetch_add_explicit(&s->tls->conns, 1, memory_order_relaxed);
	if (h->part) {
		size = h->part_len < TLS_HDR_LEN ? TLS_HDR_LEN :
		       TLS_HDR_LEN + ((size_t)h->part[3] << 8 | h->part[4]);
		ret = tlsio__carry(s, t, h->part, h->part_len, size);
		if (ret < 0)
			return ret;
	}
	if (h->out) {
		if (tlsio__out_new(s, t, h->out_len) < 0)
			return -ENOMEM;
		memcpy(t->out->b, h->out, h->out_len);
		t->covered = covered;	/* xp_send() sends it first */
	}
	return 0;
}

int tlsio__ho_load(struct eng_shard *s, struct eng_conn *c,
		   struct eng_ho_rd *r)
{
	uint32_t len = eng_ho_get_u32(r);
	const uint8_t *p = eng_ho_get(r, len);
	uint32_t covered = eng_ho_get_u32(r);
	struct tls_ho h;
	int ret;

	if (!s->tls)
		return -ENOTSUP;	/* no --tls-cert here */
	if (r->err)
		return -EINVAL;
	ret = tls_ho_read(&h, p, len);
	if (!ret)
		ret = load(s, c, &h, covered);
	OPENSSL_cleanse(&h.rl, sizeof(h.rl));
	return ret;
}
