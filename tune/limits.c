/* SPDX-License-Identifier: MIT */
/*
 * limits.c: the process limits and the memory that decide how many
 * connections ringcast holds here. Client sockets are io_uring direct
 * descriptors, so the fd table does not bind them, but each ring's
 * fixed-file table is capped at RLIMIT_NOFILE: the engine raises its soft
 * limit to the hard one, and a shard then holds min(hard, 2^20). This
 * file does what the engine would (raise soft to hard, register the
 * table), asks a child whether the hard limit itself could go higher,
 * and weighs memory and RLIMIT_MEMLOCK against what N connections cost.
 */
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tune.h"

#define FIX_NOFILE	"LimitNOFILE=1048576 (tune/ringcast.service), or " \
			"'ringcast - nofile 1048576' " \
			"(tune/90-ringcast-limits.conf), or " \
			"docker run --ulimit nofile=1048576:1048576"

uint64_t tune_cap_eff(void)
{
	char line[256];
	uint64_t eff = 0;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %" SCNx64, &eff) == 1)
			break;
	fclose(f);
	return eff;
}

static void fmt_rlim(char *buf, size_t len, rlim_t v)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, len, "unlimited");
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* The files one ring may register under a hard limit of @hard. */
static uint64_t ring_cap(rlim_t hard)
{
	if (hard == RLIM_INFINITY || hard > TUNE_FILES_PER_RING_MAX)
		return TUNE_FILES_PER_RING_MAX;
	return hard;
}

/*
 * Whether this process could set its hard RLIMIT_NOFILE to @want: a child
 * tries, so the answer costs the caller nothing. Raising a hard limit
 * needs CAP_SYS_RESOURCE and stays within fs.nr_open (do_prlimit(),
 * kernel/sys.c). Returns 0 or -errno.
 */
static int can_raise_hard(uint64_t want)
{
	struct rlimit rl = { .rlim_cur = want, .rlim_max = want };
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		_exit(setrlimit(RLIMIT_NOFILE, &rl) < 0 ? errno & 0x7f : 0);
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (!WIFEXITED(status))
		return -ECHILD;
	return -WEXITSTATUS(status);
}

/* Registers @n sparse files on a fresh ring, as ring_init() does. */
static int try_table(unsigned n)
{
	struct io_uring ring;
	int ret;

	ret = io_uring_queue_init(1, &ring, 0);
	if (ret < 0)
		return ret;
	ret = io_uring_register_files_sparse(&ring, n);
	io_uring_queue_exit(&ring);
	return ret;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static void check_nofile(struct tune_report *r, const struct tune_cfg *cfg,
			 uint64_t caps, uint64_t *per_ring_cap)
{
	uint64_t per_ring = div_up(cfg->conns, cfg->shards);
	uint64_t want = per_ring < TUNE_FILES_PER_RING_MAX ?
			per_ring : TUNE_FILES_PER_RING_MAX;
	char soft[32], hard[32], nr_open[32] = "?";
	struct tune_item *it;
	struct rlimit rl;
	bool raised = true;
	uint64_t cap, total;
	int ret;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		rl.rlim_cur = rl.rlim_max = 1024;
	fmt_rlim(soft, sizeof(soft), rl.rlim_cur);
	fmt_rlim(hard, sizeof(hard), rl.rlim_max);
	/* What ringcast does first thing (files_per_ring(), engine/main.c). */
	if (rl.rlim_cur != rl.rlim_max) {
		struct rlimit up = { rl.rlim_max, rl.rlim_max };

		raised = setrlimit(RLIMIT_NOFILE, &up) == 0;
	}
	cap = ring_cap(raised ? rl.rlim_max : rl.rlim_cur);
	if (!cap)
		cap = 1;	/* a zero limit holds nothing; keep the sums sane */

	it = tune_report_add(r, "rlimit.nofile", cap >= want);
	snprintf(it->have, sizeof(it->have), "soft %s hard %s%s", soft, hard,
		 raised ? " (soft raises to hard)" :
			  " (soft cannot be raised to hard)");
	snprintf(it->need, sizeof(it->need), "hard >= %" PRIu64
		 " (%" PRIu64 " connections / %u shards)", want, cfg->conns,
		 cfg->shards);
	snprintf(it->fix, sizeof(it->fix), "%s; or --shards %" PRIu64
		 " to fit %" PRIu64 " per ring", FIX_NOFILE,
		 div_up(cfg->conns, cap), cap);

	/* Can it go higher than it is? Only worth asking when it must. */
	tune_sysctl_read("fs.nr_open", nr_open, sizeof(nr_open));
	if (cap >= want) {
		it = tune_report_add(r, "rlimit.nofile.raise", true);
		snprintf(it->have, sizeof(it->have), "not needed (hard %s)",
			 hard);
		snprintf(it->need, sizeof(it->need), "hard >= %" PRIu64, want);
	} else {
		ret = can_raise_hard(want);
		it = tune_report_add(r, "rlimit.nofile.raise", ret == 0);
		snprintf(it->have, sizeof(it->have),
			 "setrlimit(%" PRIu64 "): %s; CAP_SYS_RESOURCE %s; "
			 "fs.nr_open %s", want, ret ? strerror(-ret) : "ok",
			 tune_has_cap(caps, TUNE_CAP_SYS_RESOURCE) ?
			 "yes" : "no", nr_open);
		snprintf(it->need, sizeof(it->need), "a hard limit that can "
			 "be raised to %" PRIu64, want);
		if (strtoull(nr_open, NULL, 10) < want)
			snprintf(it->fix, sizeof(it->fix), "sysctl -w "
				 "fs.nr_open=%" PRIu64 " (sysctl.d/"
				 "90-ringcast-server.conf), then %s", want,
				 FIX_NOFILE);
		else
			snprintf(it->fix, sizeof(it->fix), "the hard limit is "
				 "set by whatever starts ringcast: %s; a shell "
				 "needs root (CAP_SYS_RESOURCE): prlimit "
				 "--pid $$ --nofile=%" PRIu64 ":%" PRIu64,
				 FIX_NOFILE, want, want);
	}

	/* The table itself, as a shard registers it. */
	ret = try_table((unsigned)(want < cap ? want : cap));
	total = cap * cfg->shards;
	it = tune_report_add(r, "io_uring.fixed_files", ret == 0 &&
			     total >= cfg->conns);
	snprintf(it->have, sizeof(it->have), "%u rings x %" PRIu64 " = %"
		 PRIu64 " (registering %" PRIu64 " sparse files: %s)",
		 cfg->shards, cap, total, want < cap ? want : cap,
		 ret ? strerror(-ret) : "ok");
	snprintf(it->need, sizeof(it->need), ">= %" PRIu64 " connections",
		 cfg->conns);
	if (per_ring > TUNE_FILES_PER_RING_MAX)
		snprintf(it->fix, sizeof(it->fix), "a ring holds at most %u "
			 "(IORING_MAX_FIXED_FILES): --shards %" PRIu64
			 " (shards may outnumber CPUs)",
			 TUNE_FILES_PER_RING_MAX,
			 div_up(cfg->conns, TUNE_FILES_PER_RING_MAX));
	else
		snprintf(it->fix, sizeof(it->fix), "raise the nofile hard "
			 "limit to %" PRIu64 " (rlimit.nofile), or --shards %"
			 PRIu64 " (shards may outnumber CPUs)", want,
			 div_up(cfg->conns, cap));
	*per_ring_cap = cap;
}

/*
 * What one ring pins: its SQEs, SQ index array, CQEs and the provided
 * buffer ring's entries (16 bytes each), plus a page of headers.
 */
static uint64_t ring_bytes(const struct tune_cfg *cfg)
{
	return (uint64_t)TUNE_SQ_ENTRIES * (64 + 4) +
	       (uint64_t)TUNE_SQ_ENTRIES * 4 * 16 +
	       (uint64_t)cfg->recv_bufs * 16 + 4096;
}

static void check_memlock(struct tune_report *r, const struct tune_cfg *cfg,
			  uint64_t caps)
{
	/*
	 * The arena is registered with every ring and each registration is
	 * accounted on its own (io_buffer_account_pin(), io_uring/rsrc.c);
	 * kernels that allocate rings as regions count those too
	 * (io_create_region(), io_uring/memmap.c). CAP_IPC_LOCK exempts all.
	 */
	uint64_t need = (cfg->arena + ring_bytes(cfg)) * cfg->shards;
	bool cap = tune_has_cap(caps, TUNE_CAP_IPC_LOCK);
	char have[32], needs[32];
	struct tune_item *it;
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) < 0)
		rl.rlim_cur = 0;
	if (rl.rlim_cur == RLIM_INFINITY)
		snprintf(have, sizeof(have), "unlimited");
	else
		tune_fmt_bytes(have, sizeof(have), rl.rlim_cur);
	tune_fmt_bytes(needs, sizeof(needs), need);
	it = tune_report_add(r, "rlimit.memlock", cap ||
			     rl.rlim_cur == RLIM_INFINITY ||
			     rl.rlim_cur >= need);
	snprintf(it->have, sizeof(it->have), "%s, CAP_IPC_LOCK %s", have,
		 cap ? "yes (not counted)" : "no");
	snprintf(it->need, sizeof(it->need), ">= %s (%u rings x arena and "
		 "ring memory), or CAP_IPC_LOCK", needs, cfg->shards);
	snprintf(it->fix, sizeof(it->fix), "LimitMEMLOCK=infinity "
		 "(tune/ringcast.service) or 'ringcast - memlock unlimited' "
		 "(tune/90-ringcast-limits.conf); short of it, shards run "
		 "without the registered arena (no send_zc)");
}

/* MemAvailable from /proc/meminfo, in bytes; 0 when unreadable. */
static uint64_t mem_available(void)
{
	char line[128];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

/* Reads one number from @dir/@file; false when absent or "max". */
static bool read_u64(const char *dir, const char *file,
		     unsigned long long *v)
{
	char path[700];
	bool ok;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "re");
	if (!f)
		return false;
	ok = fscanf(f, "%llu", v) == 1;
	fclose(f);
	return ok;
}

/*
 * Room left under this process's memory cgroup, or UINT64_MAX when it has
 * no limit: a container's limit binds before the host's memory does.
 * cgroup v1 (a "N:memory:/path" line, hybrid hosts) is read first, since
 * there the memory controller is not on the v2 tree; v2 is "0::/path".
 */
static uint64_t cgroup_room(void)
{
	char line[512], dir[600] = "";
	unsigned long long max, cur = 0;
	FILE *f = fopen("/proc/self/cgroup", "re");
	const char *lim = "memory.max", *use = "memory.current";

	if (!f)
		return UINT64_MAX;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, ":memory:/");

		line[strcspn(line, "\n")] = '\0';
		if (p) {
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup/memory%s",
				 p + strlen(":memory:"));
			lim = "memory.limit_in_bytes";
			use = "memory.usage_in_bytes";
			break;
		}
		if (!strncmp(line, "0::/", 4))
			snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s",
				 line + 3);
	}
	fclose(f);
	/* v1 says "no limit" with PAGE_COUNTER_MAX pages, about 2^63. */
	if (!dir[0] || !read_u64(dir, lim, &max) || max >= (1ULL << 62))
		return UINT64_MAX;
	read_u64(dir, use, &cur);
	return max > cur ? max - cur : 0;
}

static void check_memory(struct tune_report *r, const struct tune_cfg *cfg,
			 uint64_t per_ring_cap)
{
	/*
	 * Per shard: its receive buffers, its ring, and the kernel's
	 * fixed-file table (a node pointer and a bitmap bit per slot,
	 * allocated whole at registration). Per process: the arena.
	 */
	uint64_t shard = (uint64_t)cfg->recv_bufs * cfg->recv_buf_size +
			 ring_bytes(cfg) + per_ring_cap * 8 + per_ring_cap / 8;
	uint64_t need = cfg->conns * cfg->per_conn + shard * cfg->shards +
			cfg->arena;
	uint64_t avail = mem_available(), room = cgroup_room();
	char a[32], n[32], c[32], s[32];
	struct tune_item *it;

	tune_fmt_bytes(a, sizeof(a), avail);
	tune_fmt_bytes(n, sizeof(n), need);
	tune_fmt_bytes(s, sizeof(s), shard);
	it = tune_report_add(r, "memory", need <= avail && need <= room);
	if (room != UINT64_MAX) {
		tune_fmt_bytes(c, sizeof(c), room);
		snprintf(it->have, sizeof(it->have), "MemAvailable %s, "
			 "cgroup room %s", a, c);
	} else {
		snprintf(it->have, sizeof(it->have), "MemAvailable %s", a);
	}
	snprintf(it->need, sizeof(it->need), "%s (%" PRIu64 " x %" PRIu64
		 " B + %u shards x %s + arena)", n, cfg->conns, cfg->per_conn,
		 cfg->shards, s);
	snprintf(it->fix, sizeof(it->fix), "more memory (or a higher cgroup "
		 "memory.max / MemoryMax=), fewer --conns, or fewer "
		 "--recv-buffers per shard");
}

void tune_check_limits(struct tune_report *r, const struct tune_cfg *cfg)
{
	uint64_t caps = tune_cap_eff(), per_ring_cap;

	check_nofile(r, cfg, caps, &per_ring_cap);
	check_memlock(r, cfg, caps);
	check_memory(r, cfg, per_ring_cap);
}
