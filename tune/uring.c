/* SPDX-License-Identifier: MIT */
/*
 * uring.c: the kernel and the io_uring features ringcast uses, tested for
 * real wherever that is cheap: a ring is set up with the flags the shards
 * ask for, the opcode probe lists MSG_RING and SEND_ZC, and a loopback
 * connection goes through a multishot accept into a direct descriptor
 * and a multishot recv from a provided-buffer ring, as every client
 * connection does. A version number alone would miss a kernel that has
 * io_uring switched off or a seccomp filter that forbids it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "tune.h"

#define FIX_KERNEL	"boot a kernel >= 6.1 " \
			"(Debian 12: apt install linux-image-amd64)"

/* The first two numbers of uname's release ("6.18.44-fc" is 6.18). */
static void kernel_version(unsigned *major, unsigned *minor, char *rel,
			   size_t len)
{
	struct utsname u;

	*major = *minor = 0;
	if (uname(&u) < 0) {
		snprintf(rel, len, "unknown");
		return;
	}
	snprintf(rel, len, "%s", u.release);
	sscanf(u.release, "%u.%u", major, minor);
}

static bool at_least(unsigned major, unsigned minor, unsigned want_major,
		     unsigned want_minor)
{
	return major > want_major ||
	       (major == want_major && minor >= want_minor);
}

/* True when this process is in group @gid (kernel.io_uring_group). */
static bool in_group(gid_t gid)
{
	gid_t groups[256];
	int i, n;

	if (getegid() == gid)
		return true;
	n = getgroups(256, groups);
	for (i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

static void check_disabled(struct tune_report *r)
{
	char v[32], g[32];
	struct tune_item *it;
	int ret;

	/* kernel.io_uring_disabled arrived in 6.6; before it, allowed. */
	ret = tune_sysctl_read("kernel.io_uring_disabled", v, sizeof(v));
	if (ret == -ENOENT) {
		it = tune_report_add(r, "kernel.io_uring_disabled", true);
		snprintf(it->have, sizeof(it->have), "absent (before 6.6)");
		snprintf(it->need, sizeof(it->need), "0");
		return;
	}
	if (ret < 0) {
		it = tune_report_add(r, "kernel.io_uring_disabled", false);
		snprintf(it->have, sizeof(it->have), "unreadable: %s",
			 strerror(-ret));
		snprintf(it->need, sizeof(it->need), "0");
		return;
	}
	/*
	 * 1 lets root (CAP_SYS_ADMIN) and kernel.io_uring_group create rings,
	 * 2 lets no one (io_uring_allowed(), io_uring/io_uring.c).
	 */
	if (!strcmp(v, "1")) {
		bool ok = tune_has_cap(tune_cap_eff(), TUNE_CAP_SYS_ADMIN);
		unsigned gid = 0;

		if (tune_sysctl_read("kernel.io_uring_group", g, sizeof(g)) ==
		    0 && sscanf(g, "%u", &gid) == 1 && !ok)
			ok = in_group((gid_t)gid);
		it = tune_report_add(r, "kernel.io_uring_disabled", ok);
		snprintf(it->have, sizeof(it->have),
			 "1 (group %u and root only)", gid);
	} else {
		it = tune_report_add(r, "kernel.io_uring_disabled",
				     !strcmp(v, "0"));
		snprintf(it->have, sizeof(it->have), "%s", v);
	}
	snprintf(it->need, sizeof(it->need), "0, or 1 with the service in "
		 "kernel.io_uring_group");
	snprintf(it->fix, sizeof(it->fix), "sysctl -w "
		 "kernel.io_uring_disabled=0 (persist it in /etc/sysctl.d/)");
}

/* A ring as the shards make it: SINGLE_ISSUER | DEFER_TASKRUN. */
static int shard_ring(struct io_uring *ring)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	return io_uring_queue_init_params(8, ring, &p);
}

static void check_setup(struct tune_report *r, unsigned major,
			unsigned minor)
{
	struct io_uring ring;
	struct tune_item *it;
	int ret = shard_ring(&ring);

	it = tune_report_add(r, "io_uring.setup", ret == 0);
	if (ret == 0) {
		io_uring_queue_exit(&ring);
		snprintf(it->have, sizeof(it->have),
			 "SINGLE_ISSUER|DEFER_TASKRUN accepted");
	} else {
		snprintf(it->have, sizeof(it->have), "refused: %s",
			 strerror(-ret));
	}
	snprintf(it->need, sizeof(it->need),
		 "SINGLE_ISSUER (6.0) and DEFER_TASKRUN (6.1)");
	if (ret == -EPERM)
		snprintf(it->fix, sizeof(it->fix), "sysctl -w "
			 "kernel.io_uring_disabled=0, and allow io_uring_setup "
			 "in the container's seccomp profile");
	else if (ret == -ENOMEM)
		snprintf(it->fix, sizeof(it->fix), "raise RLIMIT_MEMLOCK: "
			 "LimitMEMLOCK=infinity (tune/ringcast.service)");
	else if (!at_least(major, minor, 6, 1))
		snprintf(it->fix, sizeof(it->fix), FIX_KERNEL);
	else
		snprintf(it->fix, sizeof(it->fix), "allow io_uring_setup "
			 "(seccomp, LSM) for the service");
}

static void check_opcodes(struct tune_report *r)
{
	static const struct {
		int op;
		const char *name;
	} ops[] = {
		{ IORING_OP_ACCEPT, "ACCEPT" },
		{ IORING_OP_RECV, "RECV" },
		{ IORING_OP_SEND, "SEND" },
		{ IORING_OP_MSG_RING, "MSG_RING(5.18)" },
		{ IORING_OP_SEND_ZC, "SEND_ZC(6.0)" },
		{ IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL" },
	};
	struct io_uring_probe *probe = io_uring_get_probe();
	struct tune_item *it;
	char missing[128] = "";
	size_t i, off = 0;

	if (!probe) {
		it = tune_report_add(r, "io_uring.opcodes", false);
		snprintf(it->have, sizeof(it->have),
			 "no IORING_REGISTER_PROBE");
		snprintf(it->need, sizeof(it->need), "MSG_RING, SEND_ZC");
		snprintf(it->fix, sizeof(it->fix), FIX_KERNEL);
		return;
	}
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (io_uring_opcode_supported(probe, ops[i].op))
			continue;
		off += (size_t)snprintf(missing + off, sizeof(missing) - off,
					"%s%s", off ? " " : "", ops[i].name);
		if (off >= sizeof(missing))
			break;
	}
	io_uring_free_probe(probe);
	it = tune_report_add(r, "io_uring.opcodes", !missing[0]);
	if (missing[0])
		snprintf(it->have, sizeof(it->have), "missing %s", missing);
	else
		snprintf(it->have, sizeof(it->have), "all supported");
	snprintf(it->need, sizeof(it->need),
		 "ACCEPT RECV SEND MSG_RING(5.18) SEND_ZC(6.0) ASYNC_CANCEL");
	snprintf(it->fix, sizeof(it->fix), FIX_KERNEL);
}

/* What the loopback test found, -errno per step or 0. */
struct live {
	int buf_ring;			/* IORING_REGISTER_PBUF_RING */
	int accept;			/* multishot accept, direct */
	int recv;			/* multishot recv, buffer select */
	const char *why;		/* which step failed, for the report */
};

#define LIVE_BGID	7
#define LIVE_NBUFS	8

/* Waits up to a second for the next CQE and copies it out. */
static int next_cqe(struct io_uring *ring, struct io_uring_cqe *out)
{
	struct __kernel_timespec ts = { .tv_sec = 1 };
	struct io_uring_cqe *cqe;
	int ret;

	ret = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	if (ret < 0)
		return ret;
	*out = *cqe;
	io_uring_cqe_seen(ring, cqe);
	return 0;
}

/*
 * Accepts one loopback connection into the sparse table of @ring and
 * receives four bytes from it, both multishot, as a shard does.
 */
static void live_conn(struct io_uring *ring, struct live *l,
		      struct io_uring_buf_ring *br, char (*bufs)[64])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct io_uring_buf_reg reg;
	struct io_uring_cqe cqe;
	struct io_uring_sqe *sqe;
	int lfd = -1, cfd = -1, ret, i;

	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)br;
	reg.ring_entries = LIVE_NBUFS;
	reg.bgid = LIVE_BGID;
	l->buf_ring = io_uring_register_buf_ring(ring, &reg, 0);
	if (l->buf_ring < 0) {
		l->why = "register_buf_ring";
		return;
	}
	io_uring_buf_ring_init(br);
	for (i = 0; i < LIVE_NBUFS; i++)
		io_uring_buf_ring_add(br, bufs[i], 64, (unsigned short)i,
				      io_uring_buf_ring_mask(LIVE_NBUFS), i);
	io_uring_buf_ring_advance(br, LIVE_NBUFS);

	l->accept = io_uring_register_files_sparse(ring, 4);
	if (l->accept < 0) {
		l->why = "register_files_sparse";
		return;
	}
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(lfd, 4) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &len) < 0) {
		l->accept = -errno;
		l->why = "loopback listener";
		goto out;
	}
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_multishot_accept_direct(sqe, lfd, NULL, NULL, 0);
	sqe->user_data = 1;
	io_uring_submit(ring);

	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		l->accept = -errno;
		l->why = "loopback connect";
		goto out;
	}
	ret = next_cqe(ring, &cqe);
	if (ret < 0 || cqe.res < 0 || !(cqe.flags & IORING_CQE_F_MORE)) {
		l->accept = ret < 0 ? ret : cqe.res < 0 ? cqe.res : -EINVAL;
		l->why = "multishot accept";
		goto out;
	}
	/* cqe.res is the slot the kernel picked in the fixed-file table. */
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_recv_multishot(sqe, cqe.res, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = LIVE_BGID;
	sqe->user_data = 2;
	io_uring_submit(ring);
	if (write(cfd, "ping", 4) != 4) {
		l->recv = -errno;
		l->why = "loopback write";
		goto out;
	}
	ret = next_cqe(ring, &cqe);
	if (ret < 0 || cqe.res != 4 || !(cqe.flags & IORING_CQE_F_BUFFER) ||
	    !(cqe.flags & IORING_CQE_F_MORE)) {
		l->recv = ret < 0 ? ret : cqe.res < 0 ? cqe.res : -EINVAL;
		l->why = "multishot recv";
	} else {
		l->recv = 0;
	}
out:
	if (cfd >= 0)
		close(cfd);
	if (lfd >= 0)
		close(lfd);
}

static void live_item(struct tune_report *r, const char *name, int ret,
		      const char *need, const struct live *l)
{
	struct tune_item *it = tune_report_add(r, name, ret == 0);

	if (ret == 0)
		snprintf(it->have, sizeof(it->have), "works on loopback");
	else if (ret == 1)
		snprintf(it->have, sizeof(it->have), "not reached");
	else
		snprintf(it->have, sizeof(it->have), "%s: %s", l->why,
			 strerror(-ret));
	snprintf(it->need, sizeof(it->need), "%s", need);
	snprintf(it->fix, sizeof(it->fix), FIX_KERNEL);
}

static void check_live(struct tune_report *r)
{
	static char bufs[LIVE_NBUFS][64];
	struct live l = { 1, 1, 1, "" };
	struct io_uring ring;
	void *br;
	int ret;

	/* The buffer ring must be page-aligned: mmap gives a page. */
	br = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED) {
		l.buf_ring = -errno;
		l.why = "mmap";
	} else {
		ret = shard_ring(&ring);
		if (ret < 0) {
			/* The setup item says why; test what can be. */
			ret = io_uring_queue_init(8, &ring, 0);
		}
		if (ret < 0) {
			l.buf_ring = ret;
			l.why = "io_uring_setup";
		} else {
			live_conn(&ring, &l, br, bufs);
			io_uring_queue_exit(&ring);
		}
		munmap(br, 4096);
	}
	live_item(r, "io_uring.buf_ring", l.buf_ring,
		  "provided buffer rings (5.19)", &l);
	live_item(r, "io_uring.accept_multishot", l.accept,
		  "multishot accept into direct descriptors (5.19)", &l);
	live_item(r, "io_uring.recv_multishot", l.recv,
		  "multishot recv with buffer select (6.0)", &l);
}

void tune_check_kernel(struct tune_report *r)
{
	struct tune_item *it;
	unsigned major, minor;
	char rel[80];

	kernel_version(&major, &minor, rel, sizeof(rel));
	it = tune_report_add(r, "kernel", at_least(major, minor, 6, 1));
	snprintf(it->have, sizeof(it->have), "%s", rel);
	snprintf(it->need, sizeof(it->need), ">= 6.1 (DEFER_TASKRUN)");
	snprintf(it->fix, sizeof(it->fix), FIX_KERNEL);

	check_disabled(r);
	check_setup(r, major, minor);
	check_opcodes(r);
	check_live(r);
}
