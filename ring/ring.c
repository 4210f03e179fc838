/* SPDX-License-Identifier: MIT */
/*
 * ring.c: ring set-up with the best task-running mode the kernel offers,
 * the fixed-file table, SQE allocation that never fails for a full SQ,
 * and the MSG_RING mailbox.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"
#include "ring_int.h"

static int setup(struct ring *r, unsigned entries, unsigned flags)
{
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	/*
	 * Multishot accept and recv post many CQEs per SQE: give the CQ room
	 * so that a burst does not overflow into the kernel's backlog list.
	 */
	p.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
	p.cq_entries = entries * 4;
	ret = io_uring_queue_init_params(entries, &r->uring, &p);
	if (ret == 0)
		r->setup_flags = p.flags;
	return ret;
}

int ring_init(struct ring *r, unsigned entries, unsigned nr_files,
	      unsigned flags)
{
	int ret = -EINVAL;

	memset(r, 0, sizeof(*r));
	if (flags & RING_F_EPOLL) {
		/* A small io_uring too: mail to io_uring rings is MSG_RING. */
		ret = setup(r, 64, IORING_SETUP_SINGLE_ISSUER);
		if (ret == -EINVAL)
			ret = setup(r, 64, 0);
		if (ret < 0)
			return ret;
		ret = ring__ep_init(r, nr_files);
		if (ret < 0)
			io_uring_queue_exit(&r->uring);
		return ret;
	}
	/*
	 * DEFER_TASKRUN (6.1) runs completions only when this thread waits,
	 * so the loop reaps whole batches without IPIs; it needs
	 * SINGLE_ISSUER (6.0). Older kernels say -EINVAL: step down.
	 */
	if ((flags & RING_F_SINGLE) && !(flags & RING_F_SHARED)) {
		ret = setup(r, entries, IORING_SETUP_SINGLE_ISSUER |
				   IORING_SETUP_DEFER_TASKRUN);
		if (ret == -EINVAL)
			ret = setup(r, entries, IORING_SETUP_COOP_TASKRUN);
	}
	if (ret == -EINVAL)
		ret = setup(r, entries, 0);
	if (ret < 0)
		return ret;

	if (nr_files) {
		ret = io_uring_register_files_sparse(&r->uring, nr_files);
		if (ret < 0) {
			io_uring_queue_exit(&r->uring);
			return ret;
		}
		r->nr_files = nr_files;
	}
	return 0;
}

void ring_exit(struct ring *r)
{
	if (r->ep)
		ring__ep_exit(r);
	io_uring_queue_exit(&r->uring);
}

struct io_uring_sqe *ring_sqe(struct ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);

	if (sqe)
		return sqe;
	/* The SQ is full: flush it to the kernel and take a slot again. */
	if (io_uring_submit(&r->uring) < 0)
		return NULL;
	return io_uring_get_sqe(&r->uring);
}

int ring_mbox_post(struct ring *from, struct ring *to, uint64_t ud,
		   int32_t res, uint64_t self_ud)
{
	struct io_uring_sqe *sqe;

	if (to->ep)
		return ring__ep_mail(to, ud, res);
	/* An epoll ring posts through its small io_uring, at once. */
	sqe = from->ep ? io_uring_get_sqe(&from->uring) : ring_sqe(from);
	if (!sqe)
		return -EBUSY;
	/* IORING_MSG_DATA: the target sees user_data @ud and res @res */
	io_uring_prep_msg_ring(sqe, to->uring.ring_fd, (unsigned)res, ud, 0);
	io_uring_sqe_set_data64(sqe, self_ud);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	if (from->ep)
		io_uring_submit(&from->uring);
	return 0;
}

/* ---- the operations on the io_uring backend ------------------------------ */

#define PREP(r, sqe)						\
	struct io_uring_sqe *sqe = ring_sqe(r);			\
	if (!sqe)						\
		return -EBUSY

int ring_accept(struct ring *r, int lfd, uint64_t ud)
{
	if (r->ep)
		return ring__ep_accept(r, lfd, ud);
	PREP(r, sqe);
	/* Direct descriptors: accepted sockets never enter the fd table. */
	io_uring_prep_multishot_accept_direct(sqe, lfd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_recv(struct ring *r, unsigned slot, unsigned short bgid,
	      uint64_t ud)
{
	if (r->ep)
		return ring__ep_recv(r, slot, ud);
	PREP(r, sqe);
	/* No buffer of its own: the kernel picks one from the group. */
	io_uring_prep_recv_multishot(sqe, (int)slot, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = bgid;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_send(struct ring *r, unsigned slot, const void *p, size_t len,
	      uint64_t ud)
{
	if (r->ep)
		return ring__ep_send(r, slot, p, len, ud);
	PREP(r, sqe);
	io_uring_prep_send(sqe, (int)slot, p, len, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_sendmsg(struct ring *r, unsigned slot, struct msghdr *mh,
		 uint64_t ud)
{
	if (r->ep)
		return ring__ep_sendmsg(r, slot, mh, ud);
	PREP(r, sqe);
	io_uring_prep_sendmsg(sqe, (int)slot, mh, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_send_zc(struct ring *r, unsigned slot, const void *p, size_t len,
		 uint64_t ud)
{
	if (r->ep)
		return -EOPNOTSUPP;
	PREP(r, sqe);
	io_uring_prep_send_zc_fixed(sqe, (int)slot, p, len, MSG_NOSIGNAL,
				    IORING_SEND_ZC_REPORT_USAGE, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_close(struct ring *r, unsigned slot, uint64_t ud)
{
	if (r->ep)
		return ring__ep_close(r, slot, ud);
	PREP(r, sqe);
	io_uring_prep_close_direct(sqe, slot);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_cancel_slot(struct ring *r, unsigned slot, uint64_t ud)
{
	if (r->ep)
		return ring__ep_cancel_slot(r, slot, ud);
	PREP(r, sqe);
	/*
	 * Not a cancel by descriptor: the kernel finds those by walking every
	 * armed request of the ring, once per match plus once more, so when
	 * 20,000 connections of a shard closed at once the walks took
	 * minutes. A shutdown costs the same at any size and ends a pending
	 * send (-EPIPE). Only the writing half: after SHUT_RD a multishot
	 * recv reads on while the peer sends, and a socket then closed with
	 * nothing unread sends no reset (a peer blocked on a zero window
	 * hangs); the caller ends the recv with ring_cancel() instead.
	 */
	io_uring_prep_shutdown(sqe, (int)slot, SHUT_WR);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_cancel(struct ring *r, uint64_t target, uint64_t ud)
{
	if (r->ep)
		return ring__ep_cancel(r, target);
	PREP(r, sqe);
	io_uring_prep_cancel64(sqe, target, 0);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_shutdown_wr(struct ring *r, unsigned slot, uint64_t ud)
{
	if (r->ep)
		return ring__ep_shutdown_wr(r, slot, ud);
	PREP(r, sqe);
	io_uring_prep_shutdown(sqe, (int)slot, SHUT_WR);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_timeout(struct ring *r, unsigned ms, uint64_t ud)
{
	/* The timespec is read when the SQE is submitted: keep it here. */
	if (r->ep)
		return ring__ep_timeout(r, ms, ud);
	PREP(r, sqe);
	r->ts.tv_sec = ms / 1000;
	r->ts.tv_nsec = (long long)(ms % 1000) * 1000000;
	io_uring_prep_timeout(sqe, &r->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/* Newer than the liburing 2.3 headers: the opcode of Linux 6.8. */
#define RING_OP_FIXED_FD_INSTALL	54

int ring_stop_recv(struct ring *r, unsigned slot, uint64_t recv_ud,
		   uint64_t ud)
{
	if (r->ep)
		return ring__ep_stop(r, slot, true, ud);
	return ring_cancel(r, recv_ud, ud);
}

int ring_flush(struct ring *r)
{
	int ret;

	if (r->ep)
		return 0;
	ret = io_uring_submit(&r->uring);
	if (ret < 0)
		return ret;
	/* DEFER_TASKRUN: the work a cancel queued runs only when asked */
	ret = io_uring_get_events(&r->uring);
	return ret < 0 && ret != -EAGAIN && ret != -EBUSY ? ret : 0;
}

int ring_stop_send(struct ring *r, unsigned slot, uint64_t ud)
{
	if (r->ep)
		return ring__ep_stop(r, slot, false, ud);
	PREP(r, sqe);
	/*
	 * By descriptor: a send's user_data may be a pointer the caller
	 * does not keep. The recv was stopped first, so only the send (at
	 * most one per socket) is left to match.
	 */
	io_uring_prep_cancel_fd(sqe, (int)slot, IORING_ASYNC_CANCEL_ALL |
				IORING_ASYNC_CANCEL_FD_FIXED);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_fd_install(struct ring *r, unsigned slot, uint64_t ud)
{
	if (r->ep)
		return ring__ep_install(r, slot, ud);
	PREP(r, sqe);
	io_uring_prep_rw(RING_OP_FIXED_FD_INSTALL, sqe, (int)slot, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	sqe->rw_flags = 0;	/* install_fd_flags: O_CLOEXEC kept */
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_adopt(struct ring *r, int fd, unsigned slot)
{
	int ret;

	if (r->ep)
		return ring__ep_adopt(r, fd);
	if (slot >= r->nr_files) {
		close(fd);
		return -ENFILE;
	}
	/* the table holds its own reference: ours goes */
	ret = io_uring_register_files_update(&r->uring, slot, &fd, 1);
	close(fd);
	return ret < 0 ? ret : ret == 1 ? (int)slot : -EBADF;
}

int ring_fd_connect(struct ring *r, int fd, const struct sockaddr *addr,
		    socklen_t len, uint64_t ud)
{
	if (r->ep)
		return -EOPNOTSUPP;
	PREP(r, sqe);
	io_uring_prep_connect(sqe, fd, addr, len);
	io_uring_sqe_set_data64(sqe, ud);
	/* The address must be read before the caller frees it. */
	if (io_uring_submit(&r->uring) < 0)
		return -EBUSY;
	return 0;
}

int ring_fd_recv(struct ring *r, int fd, void *p, size_t len, uint64_t ud)
{
	if (r->ep)
		return -EOPNOTSUPP;
	PREP(r, sqe);
	io_uring_prep_recv(sqe, fd, p, len, 0);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_fd_send(struct ring *r, int fd, const void *p, size_t len,
		 uint64_t ud)
{
	if (r->ep)
		return -EOPNOTSUPP;
	PREP(r, sqe);
	io_uring_prep_send(sqe, fd, p, len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

int ring_register_buffer(struct ring *r, const struct iovec *iov)
{
	if (r->ep)
		return -EOPNOTSUPP;
	return io_uring_register_buffers(&r->uring, iov, 1);
}

int ring_submit(struct ring *r)
{
	if (r->ep)
		return 0;	/* epoll operations happen as they are asked */
	return io_uring_submit(&r->uring);
}

int ring_run(struct ring *r, unsigned min, ring_cqe_fn *fn, void *arg)
{
	int ret;

	if (r->ep)
		return ring__ep_run(r, min, 0, fn, arg);
	if (min)
		ret = io_uring_submit_and_wait(&r->uring, min);
	else
		ret = io_uring_submit(&r->uring) < 0 ? -EAGAIN :
		      io_uring_get_events(&r->uring);
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY &&
	    ret != -ETIME)
		return ret;
	return ring_reap(r, fn, arg);
}

int ring_run_for(struct ring *r, uint64_t wait_ns, ring_cqe_fn *fn,
		 void *arg)
{
	struct __kernel_timespec ts = {
		.tv_sec = (long long)(wait_ns / 1000000000ull),
		.tv_nsec = (long long)(wait_ns % 1000000000ull),
	};
	struct io_uring_cqe *cqe;
	int ret;

	if (r->ep) {
		struct timespec now;

		clock_gettime(CLOCK_MONOTONIC, &now);
		return ring__ep_run(r, 1, (uint64_t)now.tv_sec * 1000000000ull +
				    (uint64_t)now.tv_nsec + wait_ns, fn, arg);
	}
	/* one io_uring_enter: submit, and wait with the timeout (EXT_ARG) */
	ret = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, &ts, NULL);
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY &&
	    ret != -ETIME)
		return ret;
	return ring_reap(r, fn, arg);
}

int ring_reap(struct ring *r, ring_cqe_fn *fn, void *arg)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	if (r->ep)
		return 0;	/* epoll completions live only in ring_run */
	io_uring_for_each_cqe(&r->uring, head, cqe) {
		/* a copy: @fn may submit, and never sees liburing's type */
		struct ring_cqe c = {
			.user_data = cqe->user_data,
			.res = cqe->res,
			.flags = cqe->flags,
		};

		fn(arg, &c);
		seen++;
	}
	io_uring_cq_advance(&r->uring, seen);
	return (int)seen;
}

/* ---- several rings on one thread ------------------------------------------ */

static int set_poll(struct ring_set *w, unsigned i)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->uring);

	if (!sqe) {
		io_uring_submit(&w->uring);
		sqe = io_uring_get_sqe(&w->uring);
		if (!sqe)
			return -EBUSY;
	}
	/* multishot: one SQE for the ring's life, re-armed if it ends */
	io_uring_prep_poll_multishot(sqe, w->fds[i], POLLIN);
	io_uring_sqe_set_data64(sqe, i);
	return 0;
}

int ring_set_init(struct ring_set *w, unsigned n)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->fds = calloc(n ? n : 1, sizeof(*w->fds));
	if (!w->fds)
		return -ENOMEM;
	ret = io_uring_queue_init(n < 32 ? 64 : 2 * n, &w->uring, 0);
	if (ret < 0) {
		free(w->fds);
		return ret;
	}
	return 0;
}

void ring_set_exit(struct ring_set *w)
{
	io_uring_queue_exit(&w->uring);
	free(w->fds);
}

int ring_set_add(struct ring_set *w, struct ring *r)
{
	if (r->ep)
		return -EOPNOTSUPP;
	w->fds[w->n] = r->uring.ring_fd;
	return set_poll(w, w->n++);
}

int ring_set_wait(struct ring_set *w, uint64_t wait_ns)
{
	struct __kernel_timespec ts = {
		.tv_sec = (long long)(wait_ns / 1000000000ull),
		.tv_nsec = (long long)(wait_ns % 1000000000ull),
	};
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int ret = 0;

	if (wait_ns)
		ret = io_uring_submit_and_wait_timeout(&w->uring, &cqe, 1,
				wait_ns == UINT64_MAX ? NULL : &ts, NULL);
	else
		ret = io_uring_submit(&w->uring);
	if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EAGAIN &&
	    ret != -EBUSY)
		return ret;
	ret = 0;
	/* Which members woke matters not: the caller runs them all. */
	io_uring_for_each_cqe(&w->uring, head, cqe) {
		seen++;
		if (!(cqe->flags & IORING_CQE_F_MORE) &&
		    set_poll(w, (unsigned)io_uring_cqe_get_data64(cqe)) < 0)
			ret = -EBUSY;
	}
	io_uring_cq_advance(&w->uring, seen);
	return ret;
}
