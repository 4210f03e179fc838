/* SPDX-License-Identifier: MIT */
/*
 * bench-send-zc: above what payload size does IORING_OP_SEND_ZC from a
 * registered (fixed) buffer beat plain IORING_OP_SEND on this machine? The
 * fan-out engine encodes each frame once in an arena every shard ring has
 * registered and sends the same bytes to many sockets, so this bench does
 * the same: one ring, one registered buffer holding the frame, N loopback
 * TCP connections with one send in flight on each, and a reader thread that
 * drains the far ends. For every payload size it runs both modes R times,
 * interleaved, and prints the median and spread of bytes sent per CPU-second
 * of the sending thread (the figure that bounds a fan-out core), the same per
 * CPU-second of sender and reader together (on loopback the receive softirq,
 * and with it the copy the kernel makes of zero-copy data on delivery, runs
 * in whichever thread enables softirqs, often the reader), bytes per wall
 * second, the fraction of zero-copy sends the kernel copied anyway, and the
 * smallest size at which send_zc wins by more than 10%.
 */
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"	/* liburing, and flags newer than its 2.3 headers */

#define BENCH_MAX_SIZES		32
#define BENCH_MAX_SIZE		(16U << 20)	/* registered: counts as locked memory */
#define BENCH_MAX_SOCKETS	4096
#define BENCH_MAX_REPS		101
#define BENCH_MAX_BYTES		(200ULL << 20)	/* a run ends here or at --seconds */
#define BENCH_WIN		1.10		/* send_zc must win by more than 10% */
#define BENCH_STALL_S		10.0		/* no CQE for this long: give up */
#define READER_BUF		(256U << 10)

enum mode { MODE_SEND, MODE_ZC, MODE_NR };

static const char *const mode_name[MODE_NR] = { "send", "send_zc" };

static const size_t default_sizes[] = {
	64, 256, 1U << 10, 4U << 10, 16U << 10, 64U << 10, 256U << 10,
};

struct opts {
	unsigned sockets;
	unsigned reps;
	double seconds;			/* per run, at most */
	size_t sizes[BENCH_MAX_SIZES];	/* ascending */
	unsigned nr_sizes;
};

struct sender {
	struct io_uring ring;
	unsigned nr;			/* connections */
	int *fds;			/* sending (accepted) ends; fixed files 0..nr-1 */
	int *peers;			/* receiving ends, drained by the reader */
	size_t *off;			/* per connection: bytes of the frame already sent */
	uint8_t *frame;			/* registered buffer index 0 */
	size_t cap;			/* its length, the largest size */
	uint64_t total;			/* bytes sent over the whole bench */
	clockid_t reader_clk;		/* the reader thread's CPU clock */
};

struct reader {
	const int *fds;			/* borrowed from struct sender */
	unsigned nr;
	int err;			/* first error, -errno */
	uint64_t bytes;			/* received over the whole bench */
};

/* One (size, mode) run. */
struct run {
	double wall;			/* seconds, until the last NOTIF */
	double cpu;			/* sender thread CPU seconds */
	double rcpu;			/* reader thread CPU seconds */
	uint64_t bytes;
	uint64_t frames;		/* whole payloads delivered to the socket */
	uint64_t notifs;		/* NOTIF cqes */
	uint64_t copied;		/* of those, flagged IORING_NOTIF_USAGE_ZC_COPIED */
};

static double now_s(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * A ring like ring/ring.c makes one: single issuer with deferred task work,
 * so completions run inside io_uring_enter() on the calling thread and are
 * charged to its CPU time. Older kernels get COOP_TASKRUN.
 */
static int ring_setup(struct io_uring *ring, unsigned entries, unsigned cq)
{
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
		  IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = cq;
	ret = io_uring_queue_init_params(entries, ring, &p);
	if (ret != -EINVAL)
		return ret;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
		  IORING_SETUP_COOP_TASKRUN;
	p.cq_entries = cq;
	return io_uring_queue_init_params(entries, ring, &p);
}

static int add_recv(struct io_uring *ring, int fd, unsigned i, void *buf)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv(sqe, fd, buf, READER_BUF, 0);
	io_uring_sqe_set_data64(sqe, i);
	return 0;
}

/*
 * Drains every receiving socket until the sender shuts it down (recv
 * returns 0). All recvs share one scratch buffer: the bytes are thrown
 * away, only their count is kept for the final check.
 */
static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	unsigned open = rd->nr, head, seen, i;
	uint8_t *scratch;
	int ret;

	scratch = malloc(READER_BUF);
	if (!scratch) {
		rd->err = -ENOMEM;
		return NULL;
	}
	/* The ring is made here: SINGLE_ISSUER binds it to this thread. */
	ret = ring_setup(&ring, rd->nr, 2 * rd->nr);
	if (ret < 0)
		goto out_free;
	for (i = 0; i < rd->nr; i++) {
		ret = add_recv(&ring, rd->fds[i], i, scratch);
		if (ret < 0)
			goto out_ring;
	}
	while (open) {
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			goto out_ring;
		seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			seen++;
			i = (unsigned)cqe->user_data;
			if (cqe->res > 0) {
				rd->bytes += (uint64_t)cqe->res;
				ret = add_recv(&ring, rd->fds[i], i, scratch);
				if (ret < 0)
					break;
				continue;
			}
			if (cqe->res < 0 && !rd->err)
				rd->err = cqe->res;
			open--;
		}
		io_uring_cq_advance(&ring, seen);
		if (ret < 0)
			goto out_ring;
	}
	ret = 0;
out_ring:
	io_uring_queue_exit(&ring);
out_free:
	free(scratch);
	if (ret < 0 && !rd->err)
		rd->err = ret;
	return NULL;
}

/*
 * Opens @s->nr loopback connections. The sending ends are the accepted
 * sockets and inherit TCP_NODELAY from the listener, as in engine/main.c.
 */
static int make_conns(struct sender *s)
{
	struct sockaddr_in a = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	socklen_t alen = sizeof(a);
	int one = 1, lfd, ret = 0;
	unsigned i;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&a, alen) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0 ||
	    listen(lfd, 16) < 0) {
		ret = -errno;
		goto out;
	}
	for (i = 0; i < s->nr; i++) {
		s->peers[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s->peers[i] < 0 ||
		    connect(s->peers[i], (struct sockaddr *)&a, alen) < 0) {
			ret = -errno;
			goto out;
		}
		s->fds[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (s->fds[i] < 0) {
			ret = -errno;
			goto out;
		}
	}
out:
	close(lfd);
	return ret;
}

/*
 * The ring, the fixed files and the frame: page-aligned, filled once and
 * registered as buffer 0, like the fan-out arena.
 */
static int sender_init(struct sender *s)
{
	struct iovec iov;
	unsigned i;
	int ret;

	s->frame = mmap(NULL, s->cap, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->frame == MAP_FAILED)
		return -errno;
	for (i = 0; i < s->cap; i++)
		s->frame[i] = (uint8_t)('a' + i % 26);
	/* One send in flight per socket; a send_zc also owes a NOTIF. */
	ret = ring_setup(&s->ring, s->nr, 8 * s->nr);
	if (ret < 0)
		return ret;
	ret = io_uring_register_files(&s->ring, s->fds, s->nr);
	if (ret < 0)
		return ret;
	iov.iov_base = s->frame;
	iov.iov_len = s->cap;
	return io_uring_register_buffers(&s->ring, &iov, 1);
}

/* Queues the rest of the current frame of connection @i. */
static int queue_send(struct sender *s, unsigned i, size_t size, enum mode m)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	const uint8_t *p = s->frame + s->off[i];
	size_t len = size - s->off[i];

	if (!sqe) {
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
		if (!sqe)
			return -EBUSY;
	}
	if (m == MODE_ZC) {
		/* The kernel owns the frame until the NOTIF cqe; see run_once(). */
		io_uring_prep_send_zc_fixed(sqe, (int)i, p, len, MSG_NOSIGNAL,
					    IORING_SEND_ZC_REPORT_USAGE, 0);
	} else {
		/* The kernel reads the frame until this send's cqe. */
		io_uring_prep_send(sqe, (int)i, p, len, MSG_NOSIGNAL);
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, i);
	return 0;
}

/*
 * Sends a @size-byte frame to every connection, again and again, until
 * BENCH_MAX_BYTES or @secs, then lets the frames in flight finish and waits
 * for every NOTIF: only then could the engine reuse the arena, so the run
 * ends there. Short sends are finished like engine/conn.c does. Returns 0
 * or -errno.
 */
static int run_once(struct sender *s, size_t size, enum mode m, double secs,
		    struct run *r)
{
	struct __kernel_timespec tick = { .tv_sec = 1 };
	struct io_uring_cqe *cqe;
	unsigned inflight = 0, head, seen, i;
	long notifs = 0;	/* NOTIF cqes still owed; signed, in case one arrives first */
	double t0, c0, r0, now, last;
	bool stop = false;
	int ret;

	memset(r, 0, sizeof(*r));
	t0 = now_s(CLOCK_MONOTONIC);
	c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
	r0 = now_s(s->reader_clk);
	last = t0;
	for (i = 0; i < s->nr; i++) {
		s->off[i] = 0;
		ret = queue_send(s, i, size, m);
		if (ret < 0)
			return ret;
		inflight++;
	}
	while (inflight || notifs) {
		ret = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &tick, NULL);
		now = now_s(CLOCK_MONOTONIC);
		if (ret == -ETIME || ret == -EINTR) {
			/* Bounded even if the reader dies. */
			if (now - last > BENCH_STALL_S)
				return -ETIMEDOUT;
			continue;
		}
		if (ret < 0)
			return ret;
		last = now;
		if (now - t0 >= secs || r->bytes >= BENCH_MAX_BYTES)
			stop = true;
		seen = 0;
		ret = 0;
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			seen++;
			i = (unsigned)cqe->user_data;
			if (cqe->flags & IORING_CQE_F_NOTIF) {
				/* The kernel is done with the frame for this send. */
				notifs--;
				r->notifs++;
				if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
					r->copied++;
				continue;
			}
			/* F_MORE on a send_zc result: its NOTIF is still to come. */
			if (cqe->flags & IORING_CQE_F_MORE)
				notifs++;
			if (cqe->res <= 0) {
				ret = cqe->res ? cqe->res : -EPIPE;
				break;
			}
			r->bytes += (uint64_t)cqe->res;
			s->off[i] += (size_t)cqe->res;
			if (s->off[i] == size) {
				r->frames++;
				s->off[i] = 0;
				if (stop) {
					inflight--;
					continue;
				}
			}
			ret = queue_send(s, i, size, m);
			if (ret < 0)
				break;
		}
		io_uring_cq_advance(&s->ring, seen);
		if (ret < 0)
			return ret;
	}
	r->wall = now_s(CLOCK_MONOTONIC) - t0;
	r->cpu = now_s(CLOCK_THREAD_CPUTIME_ID) - c0;
	r->rcpu = now_s(s->reader_clk) - r0;
	s->total += r->bytes;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts @v in place and returns its median. */
static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return (x > y) - (x < y);
}

/* Parses "64,256,1K,4M" into @o->sizes, ascending. Returns 0 or -EINVAL. */
static int parse_sizes(struct opts *o, const char *arg)
{
	const char *p = arg;
	unsigned long long v;
	char *end;

	o->nr_sizes = 0;
	while (*p) {
		if (o->nr_sizes == BENCH_MAX_SIZES)
			return -EINVAL;
		errno = 0;
		v = strtoull(p, &end, 10);
		if (errno || end == p)
			return -EINVAL;
		if (*end == 'K' || *end == 'k') {
			v <<= 10;
			end++;
		} else if (*end == 'M' || *end == 'm') {
			v <<= 20;
			end++;
		}
		if (!v || v > BENCH_MAX_SIZE || (*end && *end != ','))
			return -EINVAL;
		o->sizes[o->nr_sizes++] = (size_t)v;
		p = *end ? end + 1 : end;
	}
	if (!o->nr_sizes)
		return -EINVAL;
	qsort(o->sizes, o->nr_sizes, sizeof(o->sizes[0]), cmp_size);
	return 0;
}

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
"usage: %s [--sockets N] [--reps R] [--seconds S] [--sizes a,b,c]\n"
"\n"
"Sends one registered frame to N loopback TCP sockets, one send in flight\n"
"each, with IORING_OP_SEND and with IORING_OP_SEND_ZC (fixed buffer), for\n"
"every size; each run stops at %llu MiB or S seconds. Prints key=value\n"
"lines with the median, min and max of R runs:\n"
"  bpc_*      bytes per CPU-second of the sending thread\n"
"  all_bpc_*  bytes per CPU-second of the sending and the reading thread;\n"
"             loopback runs receive processing (and the copy of zero-copy\n"
"             data) in whichever thread enables softirqs, often the reader\n"
"  bps_*      bytes per wall second\n"
"  cpu_frac_med, reader_cpu_frac_med  CPU-seconds per wall second\n"
"  copied     fraction of send_zc NOTIFs flagged IORING_NOTIF_USAGE_ZC_COPIED\n"
"  ratio      send_zc bpc_med / send bpc_med (all_ratio: same, all_bpc)\n"
"then zc_threshold_all_cpu and, last, zc_threshold: the smallest size whose\n"
"ratio (all_ratio) exceeds %.2f, or none.\n"
"\n"
"  --sockets N   connections (default 64, at most %u)\n"
"  --reps R      runs per size and mode, modes interleaved (default 5)\n"
"  --seconds S   time bound of one run (default 2)\n"
"  --sizes LIST  payload sizes, K and M suffixes allowed\n"
"                (default 64,256,1K,4K,16K,64K,256K)\n"
"  --help        this text\n",
		prog, BENCH_MAX_BYTES >> 20, BENCH_WIN, BENCH_MAX_SOCKETS);
}

static int parse_opts(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "sockets", required_argument, NULL, 'n' },
		{ "reps", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 's' },
		{ "sizes", required_argument, NULL, 'z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	char *end;
	int c;

	o->sockets = 64;
	o->reps = 5;
	o->seconds = 2.0;
	o->nr_sizes = sizeof(default_sizes) / sizeof(default_sizes[0]);
	memcpy(o->sizes, default_sizes, sizeof(default_sizes));
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
		case 'r':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || *end || !v ||
			    v > (c == 'n' ? BENCH_MAX_SOCKETS : BENCH_MAX_REPS))
				goto bad;
			if (c == 'n')
				o->sockets = (unsigned)v;
			else
				o->reps = (unsigned)v;
			break;
		case 's':
			o->seconds = strtod(optarg, &end);
			if (*end || !(o->seconds > 0 && o->seconds <= 600))
				goto bad;
			break;
		case 'z':
			if (parse_sizes(o, optarg) < 0)
				goto bad;
			break;
		case 'h':
			usage(stdout, argv[0]);
			exit(0);
		default:
			usage(stderr, argv[0]);
			return -EINVAL;
		}
	}
	if (optind == argc)
		return 0;
bad:
	fprintf(stderr, "%s: bad option or value (try --help)\n", argv[0]);
	return -EINVAL;
}

static void print_host(void)
{
	char line[256], *model = NULL, *nl;
	struct utsname u;
	FILE *f;

	if (uname(&u) == 0)
		printf("kernel=%s\n", u.release);
	f = fopen("/proc/cpuinfo", "r");
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10))
			continue;
		model = strchr(line, ':');
		if (model) {
			model += 1 + (model[1] == ' ');
			nl = strchr(model, '\n');
			if (nl)
				*nl = '\0';
		}
		break;
	}
	printf("cpu=%s\n", model ? model : "unknown");
	if (f)
		fclose(f);
}

/* Connections use two descriptors each; take what the hard limit allows. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Per (size, mode): the R runs, reduced to what gets printed. */
struct stats {
	double bpc[BENCH_MAX_REPS];	/* bytes per sender CPU-second */
	double all[BENCH_MAX_REPS];	/* bytes per sender + reader CPU-second */
	double bps[BENCH_MAX_REPS];	/* bytes per wall second */
	double frac[BENCH_MAX_REPS];	/* sender CPU / wall */
	double rfrac[BENCH_MAX_REPS];	/* reader CPU / wall: near 1, it lags */
	uint64_t notifs, copied;
};

/* Median and spread of R values; sorts @v. */
struct spread {
	double med, min, max;
};

static struct spread spread_of(double *v, unsigned n)
{
	struct spread sp;

	sp.med = median(v, n);
	sp.min = v[0];
	sp.max = v[n - 1];
	return sp;
}

static void add_run(struct stats *st, unsigned rep, const struct run *r)
{
	st->bpc[rep] = r->cpu > 0 ? (double)r->bytes / r->cpu : 0;
	st->all[rep] = r->cpu + r->rcpu > 0 ?
		       (double)r->bytes / (r->cpu + r->rcpu) : 0;
	st->bps[rep] = (double)r->bytes / r->wall;
	st->frac[rep] = r->cpu / r->wall;
	st->rfrac[rep] = r->rcpu / r->wall;
	st->notifs += r->notifs;
	st->copied += r->copied;
}

/*
 * Runs both modes at @size and prints one line for each. Stores send_zc's
 * median over send's, by sender CPU in @ratio[0] and by sender + reader CPU
 * in @ratio[1]. Returns 0 or -errno.
 */
static int bench_size(struct sender *s, const struct opts *o, size_t size,
		      double ratio[2])
{
	struct spread bpc[MODE_NR], all[MODE_NR], bps;
	struct stats st[MODE_NR];
	unsigned rep, k;
	struct run r;
	enum mode m;
	int ret;

	memset(st, 0, sizeof(st));
	/* Warm-up, not recorded: lets TCP grow its windows and buffers. */
	for (m = 0; m < MODE_NR; m++) {
		ret = run_once(s, size, m, o->seconds / 10, &r);
		if (ret < 0)
			goto err;
	}
	for (rep = 0; rep < o->reps; rep++) {
		/* Alternate which mode goes first, so drift hits both alike. */
		for (k = 0; k < MODE_NR; k++) {
			m = (enum mode)((k + rep) % MODE_NR);
			ret = run_once(s, size, m, o->seconds, &r);
			if (ret < 0)
				goto err;
			add_run(&st[m], rep, &r);
		}
	}
	for (m = 0; m < MODE_NR; m++) {
		bpc[m] = spread_of(st[m].bpc, o->reps);
		all[m] = spread_of(st[m].all, o->reps);
		bps = spread_of(st[m].bps, o->reps);
		printf("size=%zu mode=%s bpc_med=%.0f bpc_min=%.0f bpc_max=%.0f "
		       "all_bpc_med=%.0f all_bpc_min=%.0f all_bpc_max=%.0f "
		       "bps_med=%.0f bps_min=%.0f bps_max=%.0f "
		       "cpu_frac_med=%.2f reader_cpu_frac_med=%.2f",
		       size, mode_name[m], bpc[m].med, bpc[m].min, bpc[m].max,
		       all[m].med, all[m].min, all[m].max,
		       bps.med, bps.min, bps.max, median(st[m].frac, o->reps),
		       median(st[m].rfrac, o->reps));
		if (m == MODE_ZC) {
			ratio[0] = bpc[MODE_SEND].med > 0 ?
				   bpc[MODE_ZC].med / bpc[MODE_SEND].med : 0;
			ratio[1] = all[MODE_SEND].med > 0 ?
				   all[MODE_ZC].med / all[MODE_SEND].med : 0;
			printf(" notifs=%llu copied=%.3f ratio=%.3f all_ratio=%.3f",
			       (unsigned long long)st[m].notifs,
			       st[m].notifs ? (double)st[m].copied /
					      (double)st[m].notifs : 0,
			       ratio[0], ratio[1]);
		}
		printf("\n");
		fflush(stdout);
	}
	return 0;
err:
	fprintf(stderr, "size %zu %s: %s\n", size, mode_name[m], strerror(-ret));
	return ret;
}

static void print_threshold(const char *key, size_t size)
{
	if (size)
		printf("%s=%zu\n", key, size);
	else
		printf("%s=none\n", key);
}

int main(int argc, char **argv)
{
	struct sender s;
	struct reader rd;
	size_t threshold[2] = { 0, 0 };	/* by sender CPU, by all CPU */
	double ratio[2];
	pthread_t thr;
	struct opts o;
	unsigned i, k;
	int ret, status = 1;

	if (parse_opts(&o, argc, argv) < 0)
		return 2;
	raise_nofile();
	memset(&s, 0, sizeof(s));
	s.nr = o.sockets;
	s.cap = o.sizes[o.nr_sizes - 1];
	s.fds = malloc(s.nr * sizeof(*s.fds));
	s.peers = malloc(s.nr * sizeof(*s.peers));
	s.off = calloc(s.nr, sizeof(*s.off));
	if (!s.fds || !s.peers || !s.off) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	for (i = 0; i < s.nr; i++)
		s.fds[i] = s.peers[i] = -1;
	ret = make_conns(&s);
	if (ret < 0) {
		fprintf(stderr, "make_conns: %s\n", strerror(-ret));
		return 1;
	}
	ret = sender_init(&s);
	if (ret < 0) {
		fprintf(stderr, "sender_init: %s%s\n", strerror(-ret), ret == -ENOMEM ?
			" (registered buffers count against RLIMIT_MEMLOCK)" : "");
		return 1;
	}
	memset(&rd, 0, sizeof(rd));
	rd.fds = s.peers;
	rd.nr = s.nr;
	ret = pthread_create(&thr, NULL, reader_main, &rd);
	if (ret) {
		fprintf(stderr, "pthread_create: %s\n", strerror(ret));
		return 1;
	}
	ret = pthread_getcpuclockid(thr, &s.reader_clk);
	if (ret) {
		fprintf(stderr, "pthread_getcpuclockid: %s\n", strerror(ret));
		return 1;
	}

	print_host();
	printf("sockets=%u reps=%u seconds=%g max_bytes=%llu\n", o.sockets,
	       o.reps, o.seconds, BENCH_MAX_BYTES);
	for (i = 0; i < o.nr_sizes; i++) {
		if (bench_size(&s, &o, o.sizes[i], ratio) < 0)
			goto out;
		for (k = 0; k < 2; k++)
			if (!threshold[k] && ratio[k] > BENCH_WIN)
				threshold[k] = o.sizes[i];
	}
	print_threshold("zc_threshold_all_cpu", threshold[1]);
	print_threshold("zc_threshold", threshold[0]);
	status = 0;
out:
	/* EOF on every connection lets the reader finish. */
	for (i = 0; i < s.nr; i++)
		shutdown(s.fds[i], SHUT_WR);
	pthread_join(thr, NULL);
	if (rd.err) {
		fprintf(stderr, "reader: %s\n", strerror(-rd.err));
		status = 1;
	} else if (!status && rd.bytes != s.total) {
		fprintf(stderr, "sent %llu bytes but received %llu\n",
			(unsigned long long)s.total, (unsigned long long)rd.bytes);
		status = 1;
	}
	io_uring_queue_exit(&s.ring);
	for (i = 0; i < s.nr; i++) {
		close(s.fds[i]);
		close(s.peers[i]);
	}
	munmap(s.frame, s.cap);
	free(s.off);
	free(s.peers);
	free(s.fds);
	return status;
}
