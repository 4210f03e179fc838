/* SPDX-License-Identifier: MIT */
/*
 * ep.c: the epoll backend. The same operations as the io_uring backend,
 * done the way a good epoll server does them: non-blocking sockets,
 * edge-triggered EPOLLIN, reads until EAGAIN (bounded per wake-up so one
 * busy socket cannot starve the others), sends attempted at once and
 * EPOLLOUT armed only while a socket is backpressured, accept4 in a loop,
 * a timer as epoll_wait's timeout and an eventfd for mail. Completions are
 * handed back as io_uring CQEs (same user_data, res and flags, provided
 * buffers included), so the engine above cannot tell the backends apart
 * and a benchmark compares the I/O models alone.
 *
 * A slot here is the socket's fd: the process fd table (RLIMIT_NOFILE)
 * caps an epoll process, which is the point of comparison with io_uring's
 * direct descriptors.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"
#include "ring_int.h"

#define EP_EVENTS	256	/* epoll_wait batch */
#define EP_READS	16	/* reads per socket per wake-up */
#define EP_ACCEPTS	64	/* accepts per wake-up */
#define EP_TAG_LISTEN	UINT64_MAX
#define EP_TAG_MAIL	(UINT64_MAX - 1)

struct ep_slot {
	uint64_t recv_ud;
	uint64_t send_ud;
	const void *send_p;	/* pending send: borrowed until its CQE */
	size_t send_len;
	struct msghdr *send_mh;	/* or a pending sendmsg, likewise */
	uint8_t open;		/* an accepted socket lives here */
	uint8_t recv_armed;
	uint8_t send_pending;	/* waits for EPOLLOUT */
	uint8_t readable;	/* in the ready list: read it next turn */
};

struct ep_mail {
	uint64_t ud;
	int32_t res;
};

struct ring_ep {
	int epfd;
	int evfd;
	unsigned nr_slots;
	struct ep_slot *slots;
	struct ring_bufs *bufs;		/* borrowed: the shard's pool */
	struct ring_cqe *cq;	/* completions not yet handed out */
	unsigned cq_len, cq_cap;
	unsigned *ready;		/* slots to read without a wake-up */
	unsigned nready;
	int lfd;			/* listener, -1 when not accepting */
	uint64_t accept_ud;
	bool timer_armed;
	uint64_t timer_at;		/* CLOCK_MONOTONIC ns */
	uint64_t timer_ud;
	pthread_mutex_t mail_lock;	/* the only cross-thread state */
	struct ep_mail *mail;
	unsigned nmail, mail_cap;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Queues a completion; failure to grow drops it (never seen in tests). */
static void post(struct ring_ep *ep, uint64_t ud, int32_t res,
		 uint32_t flags)
{
	if (ep->cq_len == ep->cq_cap) {
		unsigned cap = ep->cq_cap ? ep->cq_cap * 2 : 1024;
		struct ring_cqe *cq = realloc(ep->cq, cap * sizeof(*cq));

		if (!cq)
			return;
		ep->cq = cq;
		ep->cq_cap = cap;
	}
	ep->cq[ep->cq_len].user_data = ud;
	ep->cq[ep->cq_len].res = res;
	ep->cq[ep->cq_len].flags = flags;
	ep->cq_len++;
}

int ring__ep_init(struct ring *r, unsigned nr_slots)
{
	struct ring_ep *ep = calloc(1, sizeof(*ep));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!ep)
		return -ENOMEM;
	ep->lfd = -1;
	ep->nr_slots = nr_slots;
	ep->slots = calloc(nr_slots, sizeof(*ep->slots));
	ep->ready = malloc(nr_slots * sizeof(*ep->ready));
	ep->epfd = epoll_create1(EPOLL_CLOEXEC);
	ep->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&ep->mail_lock, NULL);
	ev.data.u64 = EP_TAG_MAIL;
	if (!ep->slots || !ep->ready || ep->epfd < 0 || ep->evfd < 0 ||
	    epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->evfd, &ev) < 0) {
		r->ep = ep;
		ring__ep_exit(r);
		return -ENOMEM;
	}
	r->ep = ep;
	r->nr_files = nr_slots;
	return 0;
}

void ring__ep_exit(struct ring *r)
{
	struct ring_ep *ep = r->ep;

	for (unsigned i = 0; ep->slots && i < ep->nr_slots; i++)
		if (ep->slots[i].open)
			close((int)i);
	if (ep->epfd >= 0)
		close(ep->epfd);
	if (ep->evfd >= 0)
		close(ep->evfd);
	pthread_mutex_destroy(&ep->mail_lock);
	free(ep->slots);
	free(ep->ready);
	free(ep->cq);
	free(ep->mail);
	free(ep);
	r->ep = NULL;
}

void ring__ep_set_bufs(struct ring *r, struct ring_bufs *b)
{
	r->ep->bufs = b;
}

/* Called from any thread: the target reads it on its eventfd. */
int ring__ep_mail(struct ring *to, uint64_t ud, int32_t res)
{
	struct ring_ep *ep = to->ep;
	uint64_t one = 1;
	int ret = 0;

	pthread_mutex_lock(&ep->mail_lock);
	if (ep->nmail == ep->mail_cap) {
		unsigned cap = ep->mail_cap ? ep->mail_cap * 2 : 256;
		struct ep_mail *m = realloc(ep->mail, cap * sizeof(*m));

		if (!m)
			ret = -ENOMEM;
		else {
			ep->mail = m;
			ep->mail_cap = cap;
		}
	}
	if (!ret) {
		ep->mail[ep->nmail].ud = ud;
		ep->mail[ep->nmail].res = res;
		ep->nmail++;
	}
	pthread_mutex_unlock(&ep->mail_lock);
	if (!ret && write(ep->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		ret = -errno;
	return ret;
}

static void take_mail(struct ring_ep *ep)
{
	uint64_t n;

	if (read(ep->evfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&ep->mail_lock);
	for (unsigned i = 0; i < ep->nmail; i++)
		post(ep, ep->mail[i].ud, ep->mail[i].res, 0);
	ep->nmail = 0;
	pthread_mutex_unlock(&ep->mail_lock);
}

/* ---- accepting ------------------------------------------------------------ */

int ring__ep_accept(struct ring *r, int lfd, uint64_t ud)
{
	struct ring_ep *ep = r->ep;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EP_TAG_LISTEN };

	if (ep->lfd >= 0) {
		ep->accept_ud = ud;
		return 0;
	}
	/* accept4 loops until EAGAIN: the listener must not block */
	if (fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0 ||
	    epoll_ctl(ep->epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
		return -errno;
	ep->lfd = lfd;
	ep->accept_ud = ud;
	return 0;
}

static void do_accept(struct ring_ep *ep)
{
	for (int i = 0; i < EP_ACCEPTS && ep->lfd >= 0; i++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };
		int fd = accept4(ep->lfd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0 && (errno == EAGAIN || errno == EINTR ||
			       errno == ECONNABORTED))
			return;
		if (fd >= 0 && (unsigned)fd >= ep->nr_slots) {
			close(fd);
			fd = -1;
			errno = ENFILE;
		}
		if (fd < 0) {
			/*
			 * Out of fds (the process table is the cap here): as
			 * io_uring's full table, stop accepting until a close;
			 * a level-triggered listener would spin otherwise.
			 */
			if (errno == EMFILE || errno == ENFILE) {
				epoll_ctl(ep->epfd, EPOLL_CTL_DEL, ep->lfd, NULL);
				ep->lfd = -1;
				post(ep, ep->accept_ud, -ENFILE, 0);
			} else {
				post(ep, ep->accept_ud, -errno,
				     IORING_CQE_F_MORE);
			}
			return;
		}
		ev.data.u64 = (uint64_t)fd;
		if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			continue;
		}
		memset(&ep->slots[fd], 0, sizeof(ep->slots[fd]));
		ep->slots[fd].open = 1;
		post(ep, ep->accept_ud, fd, IORING_CQE_F_MORE);
	}
}

/* ---- receiving -------------------------------------------------------------- */

static void mark_ready(struct ring_ep *ep, unsigned slot)
{
	if (ep->slots[slot].readable)
		return;
	ep->slots[slot].readable = 1;
	ep->ready[ep->nready++] = slot;
}

int ring__ep_recv(struct ring *r, unsigned slot, uint64_t ud)
{
	struct ring_ep *ep = r->ep;

	if (slot >= ep->nr_slots || !ep->slots[slot].open)
		return -EBADF;
	ep->slots[slot].recv_ud = ud;
	ep->slots[slot].recv_armed = 1;
	/* Edge-triggered: bytes may already wait; look once ourselves. */
	mark_ready(ep, slot);
	return 0;
}

/* Reads @slot until EAGAIN (or EP_READS reads: then it stays ready). */
static void do_read(struct ring_ep *ep, unsigned slot)
{
	struct ep_slot *sl = &ep->slots[slot];
	struct ring_bufs *b = ep->bufs;

	for (int i = 0; sl->recv_armed; i++) {
		unsigned bid;
		ssize_t n;

		if (i == EP_READS) {
			mark_ready(ep, slot);
			return;
		}
		if (!b->nfree) {
			/* as io_uring: the multishot ends, the engine re-arms */
			sl->recv_armed = 0;
			post(ep, sl->recv_ud, -ENOBUFS, 0);
			return;
		}
		bid = b->free[--b->nfree];
		n = recv((int)slot, ring_bufs_ptr(b, bid), b->size, 0);
		if (n > 0) {
			post(ep, sl->recv_ud, (int32_t)n, IORING_CQE_F_MORE |
			     IORING_CQE_F_BUFFER |
			     (bid << IORING_CQE_BUFFER_SHIFT));
			continue;
		}
		b->free[b->nfree++] = (unsigned short)bid;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		sl->recv_armed = 0;	/* EOF or error ends the multishot */
		post(ep, sl->recv_ud, n < 0 ? -errno : 0, 0);
		return;
	}
}

/* ---- sending ---------------------------------------------------------------- */

static int want_out(struct ring_ep *ep, unsigned slot, bool on)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (on ? EPOLLOUT : 0),
		.data.u64 = slot,
	};

	return epoll_ctl(ep->epfd, EPOLL_CTL_MOD, (int)slot, &ev) < 0 ?
	       -errno : 0;
}

/* One non-blocking try at @slot's described send: bytes sent, or -errno. */
static ssize_t send_once(unsigned slot, const struct ep_slot *sl)
{
	ssize_t n = sl->send_mh ?
		    sendmsg((int)slot, sl->send_mh, MSG_NOSIGNAL | MSG_DONTWAIT) :
		    send((int)slot, sl->send_p, sl->send_len,
			 MSG_NOSIGNAL | MSG_DONTWAIT);

	return n < 0 ? -errno : n;
}

/*
 * Starts the send that @slot's fields describe. Most sends fit the socket
 * buffer and complete at once; a backpressured one waits for EPOLLOUT,
 * which is on only for as long as it lasts (do_write).
 */
static int start_send(struct ring_ep *ep, unsigned slot, uint64_t ud)
{
	struct ep_slot *sl = &ep->slots[slot];
	ssize_t n = send_once(slot, sl);

	if (n != -EAGAIN && n != -EINTR) {
		post(ep, ud, (int32_t)n, 0);
		return 0;
	}
	sl->send_ud = ud;
	sl->send_pending = 1;
	return want_out(ep, slot, true);
}

int ring__ep_send(struct ring *r, unsigned slot, const void *p, size_t len,
		  uint64_t ud)
{
	struct ring_ep *ep = r->ep;

	if (slot >= ep->nr_slots || !ep->slots[slot].open)
		return -EBADF;
	ep->slots[slot].send_p = p;
	ep->slots[slot].send_len = len;
	ep->slots[slot].send_mh = NULL;
	return start_send(ep, slot, ud);
}

int ring__ep_sendmsg(struct ring *r, unsigned slot, struct msghdr *mh,
		     uint64_t ud)
{
	struct ring_ep *ep = r->ep;

	if (slot >= ep->nr_slots || !ep->slots[slot].open)
		return -EBADF;
	ep->slots[slot].send_mh = mh;
	return start_send(ep, slot, ud);
}

static void do_write(struct ring_ep *ep, unsigned slot)
{
	struct ep_slot *sl = &ep->slots[slot];
	ssize_t n;

	if (!sl->send_pending)
		return;
	n = send_once(slot, sl);
	if (n == -EAGAIN || n == -EINTR)
		return;
	sl->send_pending = 0;
	want_out(ep, slot, false);
	post(ep, sl->send_ud, (int32_t)n, 0);
}

/* ---- closing and cancelling -------------------------------------------- */

int ring__ep_cancel_slot(struct ring *r, unsigned slot, uint64_t ud)
{
	struct ring_ep *ep = r->ep;
	struct ep_slot *sl = slot < ep->nr_slots ? &ep->slots[slot] : NULL;

	if (sl && sl->open && sl->recv_armed) {
		sl->recv_armed = 0;
		post(ep, sl->recv_ud, -ECANCELED, 0);
	}
	if (sl && sl->open && sl->send_pending) {
		sl->send_pending = 0;
		post(ep, sl->send_ud, -ECANCELED, 0);
	}
	if (ud)		/* its own completion last, as io_uring's */
		post(ep, ud, 0, 0);
	return 0;
}

int ring__ep_close(struct ring *r, unsigned slot, uint64_t ud)
{
	struct ring_ep *ep = r->ep;

	if (slot >= ep->nr_slots || !ep->slots[slot].open) {
		post(ep, ud, -EBADF, 0);
		return 0;
	}
	ring__ep_cancel_slot(r, slot, 0);
	ep->slots[slot].open = 0;
	/* close() also removes it from the epoll set */
	post(ep, ud, close((int)slot) < 0 ? -errno : 0, 0);
	return 0;
}

int ring__ep_shutdown_wr(struct ring *r, unsigned slot, uint64_t ud)
{
	int ret = 0;

	if (slot < r->ep->nr_slots && r->ep->slots[slot].open &&
	    shutdown((int)slot, SHUT_WR) < 0)
		ret = -errno;
	post(r->ep, ud, ret, 0);
	return 0;
}

int ring__ep_cancel(struct ring *r, uint64_t target)
{
	struct ring_ep *ep = r->ep;

	if (ep->lfd >= 0 && target == ep->accept_ud) {
		epoll_ctl(ep->epfd, EPOLL_CTL_DEL, ep->lfd, NULL);
		ep->lfd = -1;
		post(ep, target, -ECANCELED, 0);
	}
	return 0;
}

/* A live hand-over's (ring.h): stops @slot's recv (@recv) or send. */
int ring__ep_stop(struct ring *r, unsigned slot, bool recv, uint64_t ud)
{
	struct ring_ep *ep = r->ep;
	struct ep_slot *sl = slot < ep->nr_slots ? &ep->slots[slot] : NULL;

	if (sl && sl->open && recv && sl->recv_armed) {
		sl->recv_armed = 0;
		post(ep, sl->recv_ud, -ECANCELED, 0);
	}
	if (sl && sl->open && !recv && sl->send_pending) {
		/* nothing of it went: a partial send completes at once */
		sl->send_pending = 0;
		want_out(ep, slot, false);
		post(ep, sl->send_ud, -ECANCELED, 0);
	}
	post(ep, ud, 0, 0);
	return 0;
}

int ring__ep_install(struct ring *r, unsigned slot, uint64_t ud)
{
	int fd = slot < r->ep->nr_slots && r->ep->slots[slot].open ?
		 fcntl((int)slot, F_DUPFD_CLOEXEC, 0) : -1;

	post(r->ep, ud, fd < 0 ? -EBADF : fd, 0);
	return 0;
}

int ring__ep_adopt(struct ring *r, int fd)
{
	struct ring_ep *ep = r->ep;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET,
				  .data.u64 = (uint64_t)fd };

	if (fd < 0 || (unsigned)fd >= ep->nr_slots) {
		if (fd >= 0)
			close(fd);
		return -ENFILE;
	}
	/* as an accepted one: the socket's number is its slot */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	memset(&ep->slots[fd], 0, sizeof(ep->slots[fd]));
	ep->slots[fd].open = 1;
	return fd;
}

int ring__ep_timeout(struct ring *r, unsigned ms, uint64_t ud)
{
	r->ep->timer_armed = true;
	r->ep->timer_at = now_ns() + (uint64_t)ms * 1000000ull;
	r->ep->timer_ud = ud;
	return 0;
}

/* ---- the loop ---------------------------------------------------------------- */

/* @timeout_ns < 0: until something happens. */
static void poll_once(struct ring_ep *ep, int64_t timeout_ns)
{
	struct epoll_event evs[EP_EVENTS];
	struct timespec ts = {
		.tv_sec = timeout_ns / 1000000000,
		.tv_nsec = timeout_ns % 1000000000,
	};
	/* epoll_pwait2: a batch window of 1 ms must not round to 2 */
	int n = epoll_pwait2(ep->epfd, evs, EP_EVENTS,
			     timeout_ns < 0 ? NULL : &ts, NULL);

	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		uint32_t e = evs[i].events;

		if (tag == EP_TAG_LISTEN) {
			do_accept(ep);
		} else if (tag == EP_TAG_MAIL) {
			take_mail(ep);
		} else {
			if (e & EPOLLOUT || (e & (EPOLLERR | EPOLLHUP)))
				do_write(ep, (unsigned)tag);
			if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
				mark_ready(ep, (unsigned)tag);
		}
	}
}

int ring__ep_run(struct ring *r, unsigned min, uint64_t until,
		 ring_cqe_fn *fn, void *arg)
{
	struct ring_ep *ep = r->ep;
	unsigned n, i;

	for (;;) {
		/* Sockets known readable first: no syscall to learn it. */
		while (ep->nready) {
			unsigned *ready = ep->ready, cnt = ep->nready;

			ep->nready = 0;
			for (i = 0; i < cnt; i++) {
				ep->slots[ready[i]].readable = 0;
				if (ep->slots[ready[i]].open)
					do_read(ep, ready[i]);
			}
			if (ep->nready)
				break;	/* a busy one: hand out what we have */
		}
		if (ep->timer_armed && now_ns() >= ep->timer_at) {
			ep->timer_armed = false;
			post(ep, ep->timer_ud, -ETIME, 0);
		}
		if (ep->cq_len >= min || ep->nready) {
			poll_once(ep, 0);	/* pick up what is ready, cheaply */
			break;
		}
		{
			uint64_t now = now_ns(), at = UINT64_MAX;

			if (until && now >= until)
				break;		/* waited long enough */
			if (until)
				at = until;
			if (ep->timer_armed && ep->timer_at < at)
				at = ep->timer_at;
			poll_once(ep, at == UINT64_MAX ? -1 :
				  at > now ? (int64_t)(at - now) : 0);
		}
	}
	/* Hand out a snapshot: completions posted meanwhile wait a turn. */
	n = ep->cq_len;
	for (i = 0; i < n; i++) {
		struct ring_cqe cqe = ep->cq[i];

		fn(arg, &cqe);
	}
	memmove(ep->cq, ep->cq + n, (ep->cq_len - n) * sizeof(*ep->cq));
	ep->cq_len -= n;
	return (int)n;
}
