/* SPDX-License-Identifier: MIT */
/*
 * tune: ringcast-tune reads the host and says whether it holds N
 * connections: the kernel and the io_uring features the engine uses, the
 * rlimits that size each ring's fixed-file table, memory, and the sysctls
 * of a profile from sysctl.d/. It also installs a profile. It links no
 * engine code: what it knows of the engine (sizes, defaults) is written
 * down here, and tests/tune/test-tune-budget.c holds the two to agreement.
 */
#ifndef RC_TUNE_TUNE_H
#define RC_TUNE_TUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One ring's fixed-file table: the kernel refuses more than
 * IORING_MAX_FIXED_FILES (1 << 20, io_uring/rsrc.h) or more than
 * RLIMIT_NOFILE (io_sqe_files_register(), io_uring/rsrc.c), whichever is
 * lower; ring/ud.h's 24-bit slot (RING_UD_SLOT_MAX) is above both.
 */
#define TUNE_FILES_PER_RING_MAX	(1u << 20)

/*
 * Bytes per connection in ringcast itself: struct eng_conn's budget
 * (ENG_CONN_BUDGET, 80, which tests/test-engine-conn.c holds it to) and
 * its entries in the shard's per-slot arrays (rearm 4, resume 8, flushq 4).
 * tests/tune/test-tune-budget.c fails when the engine outgrows this.
 */
#define TUNE_CONN_USER_BYTES	96
/*
 * Kernel bytes per idle established TCP socket, as measured: bench/run's
 * scenarios (b) and (c) found 9,693 B of Slab per loopback connection pair
 * at 100,000 and 1,000,000 connections (bench/README.md), half of it per
 * socket, rounded up to 64. The slab objects alone (TCP 2368,
 * sock_inode_cache 832, filp 192, dentry 192 on this 6.18 host) make 3584;
 * the rest is the fixed-file node, the socket's wait queues and the like.
 */
#define TUNE_CONN_KERNEL_BYTES	4864

/* ringcast's defaults (engine/main.c), which --arena-size etc. mirror. */
#define TUNE_ARENA_BYTES	((uint64_t)64 << 20)
#define TUNE_RECV_BUFS		1024
#define TUNE_RECV_BUF_SIZE	8192
#define TUNE_SQ_ENTRIES		4096	/* CQ is 4x, ring/ring.c */

/* What `check` is asked about. */
struct tune_cfg {
	uint64_t conns;			/* connections the process must hold */
	unsigned shards;		/* rings, one per shard thread */
	uint64_t per_conn;		/* bytes per conn, user + kernel */
	uint64_t arena;			/* frame arena, in every ring */
	unsigned recv_bufs;		/* provided buffers per shard */
	uint64_t recv_buf_size;		/* bytes each */
	const char *profile;		/* a profile name or path; NULL: none */
	const char *sysctl_dir;		/* profiles' dir; NULL: built-in */
};

/* One line of the report: holds or falls short, and what fixes it. */
struct tune_item {
	char name[40];
	char have[160];			/* the current value */
	char need[160];			/* the needed value */
	char fix[400];			/* exact command or file; "" when ok */
	bool ok;
};

#define TUNE_MAX_ITEMS	80

struct tune_report {
	struct tune_item items[TUNE_MAX_ITEMS];
	unsigned nr;
	struct tune_item spill;		/* what add() returns once full */
	unsigned dropped;		/* items that did not fit */
};

/*
 * Appends an item named @name with verdict @ok and returns it for the
 * caller to fill in. Never NULL: once the report is full it returns a
 * scratch item and counts it in @dropped.
 */
struct tune_item *tune_report_add(struct tune_report *r, const char *name,
				  bool ok);

/* True when no item falls short (and none was dropped). */
bool tune_report_ok(const struct tune_report *r);

/* Prints one line per item; --json prints one object. */
void tune_report_print(const struct tune_report *r, const struct tune_cfg *cfg,
		       const char *profile_path);
void tune_report_print_json(const struct tune_report *r,
			    const struct tune_cfg *cfg,
			    const char *profile_path);

/* "3.9 GiB": @b in binary units with one decimal. */
void tune_fmt_bytes(char *buf, size_t len, uint64_t b);

/*
 * check: fills @r with every item for @cfg. @profile_path names the
 * loaded profile, or is NULL for none. Returns 0, or -errno when a
 * profile cannot be read (then @r holds what was checked before).
 */
int tune_check(struct tune_report *r, const struct tune_cfg *cfg,
	       const char *profile_path);

/* The io_uring and kernel items (uring.c). */
void tune_check_kernel(struct tune_report *r);

/* The rlimit and memory items (limits.c). */
void tune_check_limits(struct tune_report *r, const struct tune_cfg *cfg);

/* Effective capabilities from /proc/self/status; 0 when unreadable. */
uint64_t tune_cap_eff(void);
#define TUNE_CAP_IPC_LOCK	14
#define TUNE_CAP_SYS_ADMIN	21
#define TUNE_CAP_SYS_RESOURCE	24

static inline bool tune_has_cap(uint64_t eff, int cap)
{
	return (eff >> cap) & 1;
}

/*
 * A sysctl.d profile. @value is normalised: fields separated by one
 * space, as tune_sysctl_read() returns live values.
 */
struct tune_sysctl {
	char key[96];			/* dotted: net.core.somaxconn */
	char value[128];
	unsigned line;			/* 1-based, in the file */
	bool ignore_missing;		/* written "-key = value" */
};

#define TUNE_MAX_KEYS	48

struct tune_profile {
	struct tune_sysctl keys[TUNE_MAX_KEYS];
	unsigned nr;
	unsigned bad_line;		/* set when parse fails */
};

/*
 * Parses sysctl.d(5) text: "key = value", '#' and ';' comments, a '-'
 * before the key, '/' or '.' as separators. Returns 0, -EINVAL (see
 * @bad_line) or -E2BIG past TUNE_MAX_KEYS.
 */
int tune_profile_parse(struct tune_profile *p, const char *text);

/* Reads and parses @path. Returns 0 or -errno. */
int tune_profile_load(struct tune_profile *p, const char *path);

/*
 * Resolves profile @name ("server", "90-ringcast-server.conf" or a path
 * with a '/') into @path: in @dir when given, else the source tree's
 * sysctl.d/ and then the installed share/ringcast/sysctl.d/ (installed
 * first when this binary is the installed one). Returns 0 or -ENOENT.
 */
int tune_profile_find(char *path, size_t len, const char *name,
		      const char *dir);

/* /proc/sys/... for dotted @key into @buf. Returns 0 or -ENAMETOOLONG. */
int tune_sysctl_path(char *buf, size_t len, const char *key);

/* Reads @key, normalised. Returns 0 or -errno (-ENOENT: no such key). */
int tune_sysctl_read(const char *key, char *buf, size_t len);

/* Writes @value to @key. Returns 0 or -errno. */
int tune_sysctl_write(const char *key, const char *value);

/*
 * How a live value must compare with a profile's, one character per
 * field ('>' at least, '<' at most, '=' equal, '*' anything; the last one
 * repeats), e.g. "<*>" for tcp_rmem: a minimum no larger, any initial
 * size, a maximum no smaller.
 */
const char *tune_sysctl_cmp(const char *key);

/* True when @have satisfies @want field by field under @cmp. */
bool tune_sysctl_holds(const char *cmp, const char *have, const char *want);

/*
 * What to write so that @have satisfies @want without giving up what
 * the host has beyond it: '>' fields take the larger, '<' the smaller,
 * '=' and '*' take @want. Returns 0 or -ENOSPC.
 */
int tune_sysctl_merge(const char *cmp, const char *have, const char *want,
		      char *out, size_t len);

/* "<=4096 any any" for the report. */
void tune_sysctl_need_text(const char *cmp, const char *want, char *buf,
			   size_t len);

/*
 * The value @key must have for @cfg, when it follows from the connection
 * count rather than the profile (fs.file-max, fs.nr_open, orphans and
 * TIME_WAIT buckets); @cmp is then '>'. Returns false for other keys.
 */
bool tune_sysctl_scaled_need(const char *key, const struct tune_cfg *cfg,
			     uint64_t *need);

/* apply: options of `ringcast-tune apply`. */
struct tune_apply_opts {
	const char *profile_path;	/* resolved file */
	const char *dest_dir;		/* default /etc/sysctl.d */
	bool dry_run;
};

/*
 * Loads the profile into the running kernel (raising, never lowering, what
 * the host has beyond it) and installs the same values in @dest_dir. With
 * @dry_run it prints the plan and changes nothing. Returns 0 or -errno.
 */
int tune_apply(const struct tune_apply_opts *o);

#endif
