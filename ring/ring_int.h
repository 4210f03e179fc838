/* SPDX-License-Identifier: MIT */
/*
 * ring_int: what ring.c and ep.c share and nobody else sees: the epoll
 * backend's entry points, called by ring.c's operations when a ring was
 * set up with RING_F_EPOLL.
 */
#ifndef RC_RING_INT_H
#define RC_RING_INT_H

#include "ring.h"

int ring__ep_init(struct ring *r, unsigned nr_slots);
void ring__ep_exit(struct ring *r);
void ring__ep_set_bufs(struct ring *r, struct ring_bufs *b);
int ring__ep_mail(struct ring *to, uint64_t ud, int32_t res);
int ring__ep_accept(struct ring *r, int lfd, uint64_t ud);
int ring__ep_recv(struct ring *r, unsigned slot, uint64_t ud);
int ring__ep_send(struct ring *r, unsigned slot, const void *p, size_t len,
		  uint64_t ud);
int ring__ep_sendmsg(struct ring *r, unsigned slot, struct msghdr *mh,
		     uint64_t ud);
int ring__ep_close(struct ring *r, unsigned slot, uint64_t ud);
int ring__ep_cancel_slot(struct ring *r, unsigned slot, uint64_t ud);
int ring__ep_cancel(struct ring *r, uint64_t target);
int ring__ep_shutdown_wr(struct ring *r, unsigned slot, uint64_t ud);
int ring__ep_timeout(struct ring *r, unsigned ms, uint64_t ud);
int ring__ep_stop(struct ring *r, unsigned slot, bool recv, uint64_t ud);
int ring__ep_adopt(struct ring *r, int fd);
int ring__ep_install(struct ring *r, unsigned slot, uint64_t ud);
/* @until: CLOCK_MONOTONIC ns after which it returns anyway (0: never) */
int ring__ep_run(struct ring *r, unsigned min, uint64_t until,
		 ring_cqe_fn *fn, void *arg);

#endif
