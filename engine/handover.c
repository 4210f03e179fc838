/* SPDX-License-Identifier: MIT */
/*
 * handover.c: the take-over channel's wire (handover.h, docs/HANDOVER.md).
 * A message is a 4-byte big-endian length (of what follows), a type byte
 * and the body; fds ride along as SCM_RIGHTS, at most 253 a message. The
 * byte buffers here write and read the bodies and the state records, all
 * big-endian, so that the format does not depend on the build.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handover.h"
#include "ud.h"

/* Writes all of @p, riding out signals and short writes. */
static int write_all(int fd, struct msghdr *mh)
{
	while (mh->msg_iovlen) {
		ssize_t n = sendmsg(fd, mh, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		/* the fds went with the first byte */
		mh->msg_control = NULL;
		mh->msg_controllen = 0;
		while (mh->msg_iovlen && (size_t)n >= mh->msg_iov->iov_len) {
			n -= (ssize_t)mh->msg_iov->iov_len;
			mh->msg_iov++;
			mh->msg_iovlen--;
		}
		if (mh->msg_iovlen) {
			mh->msg_iov->iov_base = (uint8_t *)mh->msg_iov->iov_base + n;
			mh->msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int eng_ho_send(int fd, uint8_t type, const void *body, size_t len,
		const int *fds, unsigned nfds)
{
	uint8_t head[5] = { (uint8_t)((len + 1) >> 24), (uint8_t)((len + 1) >> 16),
			    (uint8_t)((len + 1) >> 8), (uint8_t)(len + 1), type };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * ENG_HO_MAX_FDS)];
	} ctl;
	struct iovec iov[2] = { { head, 5 }, { (void *)body, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (len >= ENG_HO_MAX_RECV || nfds > ENG_HO_MAX_FDS)
		return -EMSGSIZE;
	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	return write_all(fd, &mh);
}

/*
 * Reads exactly @n bytes into @p, taking the fds that come with them. A
 * receive timeout before the first byte of a message (!@mid) is -EAGAIN;
 * inside one, read on: the peer is sending it (30 tries, then gone).
 */
static int read_all(int fd, uint8_t *p, size_t n, int *fds, unsigned *nfds,
		    bool mid)
{
	unsigned tries = 0;

	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * ENG_HO_MAX_FDS)];
	} ctl;

	while (n) {
		struct iovec iov = { p, n };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = ctl.buf,
				     .msg_controllen = sizeof(ctl.buf) };
		ssize_t got = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN && mid && ++tries < 30)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return -EPIPE;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
		     cm = CMSG_NXTHDR(&mh, cm)) {
			size_t k;

			if (cm->cmsg_level != SOL_SOCKET ||
			    cm->cmsg_type != SCM_RIGHTS)
				continue;
			k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int f;

				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int),
				       sizeof(int));
				if (fds && *nfds < ENG_HO_MAX_FDS)
					fds[(*nfds)++] = f;
				else
					close(f);	/* more than a message may carry */
			}
		}
		p += got;
		n -= (size_t)got;
		mid = true;
	}
	return 0;
}

int eng_ho_recv(int fd, uint8_t *type, struct eng_ho_buf *body, int *fds,
		unsigned *nfds)
{
	uint8_t head[5];
	uint32_t len;
	int ret;

	*nfds = 0;
	body->len = 0;
	ret = read_all(fd, head, 5, fds, nfds, false);
	if (ret < 0)
		return ret;
	len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 |
	      (uint32_t)head[2] << 8 | head[3];
	if (len == 0 || len > ENG_HO_MAX_RECV)
		return -EBADMSG;
	*type = head[4];
	len--;
	if (!len)
		return 0;
	if (body->cap < len) {
		uint8_t *p = eng_realloc(body->p, len);

		if (!p)
			return -ENOMEM;
		body->p = p;
		body->cap = len;
	}
	ret = read_all(fd, body->p, len, fds, nfds, true);
	if (ret < 0)
		return ret;
	body->len = len;
	return 0;
}

void eng_ho_hello_put(struct eng_ho_buf *b, const struct eng_ho_hello *h)
{
	eng_ho_put_u32(b, h->magic);
	eng_ho_put_u16(b, h->proto);
	eng_ho_put_u16(b, h->state);
	eng_ho_put_u32(b, h->caps);
	eng_ho_put_u16(b, h->shards);
	eng_ho_put_u8(b, h->mode);
	eng_ho_put_u8(b, h->redis);
	eng_ho_put_u32(b, h->pid);
	eng_ho_put_u16(b, h->live);
}

int eng_ho_hello_get(const struct eng_ho_buf *b, struct eng_ho_hello *h)
{
	struct eng_ho_rd r = { b->p, b->len, 0, false };

	/* a later version may say more after these: ignored */
	h->magic = eng_ho_get_u32(&r);
	h->proto = eng_ho_get_u16(&r);
	h->state = eng_ho_get_u16(&r);
	h->caps = eng_ho_get_u32(&r);
	h->shards = eng_ho_get_u16(&r);
	h->mode = eng_ho_get_u8(&r);
	h->redis = eng_ho_get_u8(&r);
	h->pid = eng_ho_get_u32(&r);
	/* protocol 1 as level 1 wrote it ends here: no live records */
	h->live = r.off + 2 <= r.len ? eng_ho_get_u16(&r) : 0;
	if (r.err || h->magic != ENG_HO_MAGIC || !h->proto)
		return -EPROTO;
	return 0;
}

int eng_ho_peer_ok(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	if (cr.uid != geteuid()) {
		fprintf(stderr, "ringcast: hand-over: peer pid %d runs as uid "
			"%u, not ours (%u): refused\n", (int)cr.pid,
			(unsigned)cr.uid, (unsigned)geteuid());
		return -EPERM;
	}
	return 0;
}

struct eng_handover *eng_handover_new(struct eng *e)
{
	if (e->ho)
		return e->ho;
	e->ho = eng_malloc(sizeof(*e->ho));
	if (!e->ho)
		return NULL;
	memset(e->ho, 0, sizeof(*e->ho));
	e->ho->lfd = -1;
	e->ho->take_fd = -1;
	atomic_init(&e->ho->cfd, -1);
	return e->ho;
}

int eng_ho_wake_init(struct eng_handover *ho)
{
	int ret;

	if (ho->wake)
		return 0;
	ho->wake = eng_malloc(sizeof(*ho->wake));
	if (!ho->wake)
		return -ENOMEM;
	/* a small ring of this thread's: it only posts, nothing reads */
	ret = ring_init(ho->wake, 64, 0, 0);
	if (ret < 0) {
		eng_free(ho->wake);
		ho->wake = NULL;
	}
	return ret;
}

void eng_ho_wake_exit(struct eng_handover *ho)
{
	if (!ho || !ho->wake)
		return;
	ring_exit(ho->wake);
	eng_free(ho->wake);
	ho->wake = NULL;
}

/* Failed posts' completions: the tick covers for them. */
static void drop_cqe(void *arg, struct ring_cqe *cqe)
{
	(void)arg;
	(void)cqe;
}

static void post_wake(struct eng *e, unsigned i)
{
	struct eng_shard *s = &e->shards[i];

	if (s->up)
		ring_mbox_post(e->ho->wake, &s->ring,
			       ring_ud(ENG_OP_HO_WAKE, 0, 0), 0,
			       ring_ud(ENG_OP_MBOX_ERR, 0, 0));
}

void eng_ho_wake(struct eng *e, unsigned i)
{
	if (!e->ho->wake)
		return;
	post_wake(e, i);
	ring_run(e->ho->wake, 0, drop_cqe, NULL);	/* submits too */
}

void eng_ho_wake_all(struct eng *e)
{
	if (!e->ho->wake)
		return;
	for (unsigned i = 0; i < e->cfg.shards; i++)
		post_wake(e, i);
	ring_run(e->ho->wake, 0, drop_cqe, NULL);
}

#define LD(x) ((unsigned long long)atomic_load(&(x)))

size_t eng_handover_stats(struct eng *e, char *out, size_t cap)
{
	static const char *const modes[] = { "drain", "live" };
	const struct eng_handover *ho = e->ho;
	unsigned long long live;
	int n;

	if (!ho || !ho->role)
		return 0;
	live = LD(ho->live_conns);
	n = snprintf(out, cap,
		",\"handover\":{\"role\":\"%s\",\"mode_asked\":\"%s\","
		"\"mode\":\"%s\",\"attempts\":%llu,\"listeners\":%llu,"
		"\"state_bytes\":%llu,\"histories\":%llu,\"inboxes\":%llu,"
		"\"live\":%llu,\"live_bytes\":%llu,"
		"\"drained\":%llu,\"fallbacks\":{\"live\":%llu,"
		"\"state_version\":%llu,\"broker\":%llu,\"peer_lost\":%llu,"
		"\"conn\":%llu},"
		"\"bytes_per_conn\":%llu,\"fds_peak\":%llu,"
		"\"ms\":{\"freeze\":%llu,\"state\":%llu,\"save\":%llu,"
		"\"conns\":%llu,\"confirm\":%llu,\"quiesced\":%llu,"
		"\"install\":%llu,\"drain\":%llu}}",
		ho->role, modes[ho->mode_asked & 1],
		modes[ho->mode_used & 1], LD(ho->attempts), LD(ho->listeners),
		LD(ho->state_bytes), LD(ho->hists), LD(ho->inboxes),
		LD(ho->live_conns), LD(ho->live_bytes),
		LD(ho->drained), LD(ho->fallbacks[ENG_HO_FB_LIVE]),
		LD(ho->fallbacks[ENG_HO_FB_VERSION]),
		LD(ho->fallbacks[ENG_HO_FB_BROKER]),
		LD(ho->fallbacks[ENG_HO_FB_PEER]),
		LD(ho->fallbacks[ENG_HO_FB_CONN]),
		live ? LD(ho->live_bytes) / live : 0ull, LD(ho->fds_peak),
		LD(ho->freeze_ms), LD(ho->state_ms), LD(ho->save_ms),
		LD(ho->conns_ms), LD(ho->confirm_ms), LD(ho->quiesce_ms),
		LD(ho->install_ms), LD(ho->drain_ms));
	return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}
