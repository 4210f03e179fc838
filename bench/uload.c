/* SPDX-License-Identifier: MIT */
/*
 * The io_uring client side of ringcast-bench and ringcast-hoload.
 */
#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "uload.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT	24	/* linux/in.h; glibc 2.36 lacks it */
#endif

uint64_t uload_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int uload_setup(struct uload *u, unsigned files, unsigned nr_bufs,
		unsigned buf_size)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
			 IORING_SETUP_DEFER_TASKRUN,
		.cq_entries = 32768,
	};
	struct io_uring_buf_reg reg = { 0 };
	unsigned i;
	int ret;

	ret = io_uring_queue_init_params(4096, &u->ring, &p);
	if (ret == -EINVAL) {
		/* Before 6.1 there is no DEFER_TASKRUN: go without. */
		p.flags = IORING_SETUP_CQSIZE;
		ret = io_uring_queue_init_params(4096, &u->ring, &p);
	}
	if (ret < 0)
		return ret;
	ret = io_uring_register_files_sparse(&u->ring, files ? files : 1);
	if (ret < 0)
		return ret;
	/* liburing 2.3 has no io_uring_setup_buf_ring(): map it ourselves. */
	u->br = mmap(NULL, (size_t)nr_bufs * sizeof(struct io_uring_buf),
		     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->br == MAP_FAILED)
		return -errno;
	u->bufs = malloc((size_t)nr_bufs * buf_size);
	if (!u->bufs)
		return -ENOMEM;
	u->nr_bufs = nr_bufs;
	u->buf_size = buf_size;
	reg.ring_addr = (uint64_t)(uintptr_t)u->br;
	reg.ring_entries = nr_bufs;
	reg.bgid = 0;
	ret = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (ret < 0)
		return ret;
	io_uring_buf_ring_init(u->br);
	u->mask = (unsigned)io_uring_buf_ring_mask(nr_bufs);
	for (i = 0; i < nr_bufs; i++)
		uload_recycle(u, i);
	io_uring_buf_ring_advance(u->br, (int)u->added);
	u->added = 0;
	return 0;
}

struct io_uring_sqe *uload_sqe(struct uload *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		/* The SQ is full: hand it to the kernel and take a new one. */
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

void uload_recycle(struct uload *u, unsigned bid)
{
	io_uring_buf_ring_add(u->br, uload_buf(u, bid), u->buf_size,
			      (unsigned short)bid, u->mask, (int)u->added);
	u->added++;
}

void uload_recv(struct uload *u, unsigned slot, uint64_t user_data)
{
	struct io_uring_sqe *sqe = uload_sqe(u);

	io_uring_prep_recv_multishot(sqe, (int)slot, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	io_uring_sqe_set_data64(sqe, user_data);
}

int uload_wait(struct uload *u, void (*fn)(void *arg,
					   struct io_uring_cqe *cqe),
	       void *arg)
{
	struct __kernel_timespec ts = { .tv_nsec = 20 * 1000000 };
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int ret;

	ret = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY)
		return ret;
	io_uring_for_each_cqe(&u->ring, head, cqe) {
		fn(arg, cqe);
		seen++;
	}
	io_uring_cq_advance(&u->ring, seen);
	/* Publish the recycled buffers before the next wait. */
	if (u->added) {
		io_uring_buf_ring_advance(u->br, (int)u->added);
		u->added = 0;
	}
	return 0;
}

int uload_socket(unsigned idx, unsigned nr_src)
{
	struct sockaddr_in src = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(0x7f000002U + idx % nr_src),
	};
	int one = 1, fd, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		       sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

unsigned uload_threads(unsigned conns, unsigned want)
{
	struct rlimit rl;
	unsigned cap, n = want ? want : 2;

	getrlimit(RLIMIT_NOFILE, &rl);
	cap = rl.rlim_cur > ULOAD_FD_RESERVE + 1000 ?
	      (unsigned)rl.rlim_cur - ULOAD_FD_RESERVE : 1000;
	if (n < (conns + cap - 1) / cap)
		n = (conns + cap - 1) / cap;
	return n;
}

/*
 * Connections one source address takes before connect() slows down.
 * Since Linux 4.2 (commit 07f4c90062f8) connect() picks ports of one
 * parity and leaves the other to bind(); once those are used up every
 * connect() scans the port range (here: 14,000 ready in 0.5 s, then
 * 1,600/s). So: half of ip_local_port_range, less a tenth for other
 * sockets on the host.
 */
static unsigned conns_per_src_addr(void)
{
	unsigned lo = 32768, hi = 60999;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");

	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2 || hi < lo)
			lo = 32768, hi = 60999;	/* the kernel's default */
		fclose(f);
	}
	return (hi - lo + 1) / 2 * 9 / 10 + 1;
}

unsigned uload_src_addrs(unsigned conns)
{
	unsigned per = conns_per_src_addr();

	return (conns + per - 1) / per;
}

bool uload_head_byte(uint8_t *match, uint8_t ch)
{
	static const char crlf2[] = "\r\n\r\n";

	if (ch == (uint8_t)crlf2[*match])
		(*match)++;
	else
		*match = ch == '\r';
	return *match == 4;
}

unsigned uload_hdr_byte(uint8_t hdr[10], uint8_t *len, uint8_t ch,
			uint64_t *payload)
{
	unsigned need = 2, l7, i;

	hdr[(*len)++] = ch;
	if (*len < 2)
		return 0;
	l7 = hdr[1] & 0x7f;
	need += l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
	if (*len < need)
		return 0;
	*payload = l7 < 126 ? l7 : 0;
	for (i = 2; i < need; i++)	/* network order */
		*payload = *payload << 8 | hdr[i];
	return need;
}
