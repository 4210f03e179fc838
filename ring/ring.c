/* SPDX-License-Identifier: MIT */
/*
 * ring.c: ring set-up with the best task-running mode the kernel offers,
 * the fixed-file table, SQE allocation that never fails for a full SQ,
 * and the MSG_RING mailbox.
 */
#include <errno.h>
#include <string.h>

#include "ring.h"

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
	/*
	 * DEFER_TASKRUN (6.1) runs completions only when this thread waits,
	 * so the loop reaps whole batches without IPIs; it needs
	 * SINGLE_ISSUER (6.0). Older kernels say -EINVAL: step down.
	 */
	if (flags & RING_F_SINGLE) {
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

int ring_mbox_post(struct ring *from, int to_fd, uint64_t ud, int32_t res,
		   uint64_t self_ud)
{
	struct io_uring_sqe *sqe = ring_sqe(from);

	if (!sqe)
		return -EBUSY;
	/* IORING_MSG_DATA: the target sees user_data @ud and res @res */
	io_uring_prep_msg_ring(sqe, to_fd, (unsigned)res, ud, 0);
	io_uring_sqe_set_data64(sqe, self_ud);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	return 0;
}
