/* SPDX-License-Identifier: MIT */
/*
 * main.c: the ringcast-tune command line. `check` says whether this host
 * holds N connections and exits 0 only when every item holds; `apply`
 * installs a sysctl profile. Exit codes: 0 holds / done, 1 falls short /
 * failed, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tune.h"

static const char usage[] =
"usage: ringcast-tune check --conns N [--shards S] [options]\n"
"       ringcast-tune apply --profile NAME [--dry-run] [--dest DIR]\n"
"\n"
"check: does this host hold N connections in one ringcast process?\n"
"  One line per item: ok or short, the current value, the needed value\n"
"  and, when short, the command or file that fixes it. Exit 0 when every\n"
"  item holds, 1 otherwise.\n"
"  --conns N              connections the process must hold (required)\n"
"  --shards S             shards, as ringcast --shards (default: CPUs)\n"
"  --profile NAME         sysctl profile to hold the host to: server,\n"
"                         loadgen, a file name or a path; none skips the\n"
"                         sysctls (default: server)\n"
"  --per-conn-bytes B     memory per connection (default 96 in ringcast\n"
"                         + 4864 in the kernel, an idle TCP socket as\n"
"                         measured by bench/run)\n"
"  --arena-size SIZE      as ringcast --arena-size (default 64M)\n"
"  --recv-buffers N       as ringcast --recv-buffers (default 1024)\n"
"  --recv-buffer-size SIZE  as ringcast --recv-buffer-size (default 8K)\n"
"  --json                 one JSON object instead of lines\n"
"\n"
"apply: load a profile into the kernel and install it in /etc/sysctl.d\n"
"  (root). A value the host already exceeds is kept, never lowered.\n"
"  --profile NAME         server, loadgen, a file name or a path\n"
"  --dry-run              print what would change; change nothing\n"
"  --dest DIR             install into DIR (default /etc/sysctl.d)\n"
"\n"
"Both: --sysctl-dir DIR reads profiles from DIR instead of sysctl.d/ or\n"
"/usr/share/ringcast/sysctl.d. SIZE takes K, M or G.\n";

enum {
	OPT_CONNS = 256, OPT_SHARDS, OPT_PROFILE, OPT_PER_CONN, OPT_ARENA,
	OPT_RECV_BUFS, OPT_RECV_BUF_SIZE, OPT_JSON, OPT_DRY_RUN, OPT_DEST,
	OPT_SYSCTL_DIR,
};

static const struct option options[] = {
	{ "conns",		required_argument, NULL, OPT_CONNS },
	{ "shards",		required_argument, NULL, OPT_SHARDS },
	{ "profile",		required_argument, NULL, OPT_PROFILE },
	{ "per-conn-bytes",	required_argument, NULL, OPT_PER_CONN },
	{ "arena-size",		required_argument, NULL, OPT_ARENA },
	{ "recv-buffers",	required_argument, NULL, OPT_RECV_BUFS },
	{ "recv-buffer-size",	required_argument, NULL, OPT_RECV_BUF_SIZE },
	{ "json",		no_argument,	   NULL, OPT_JSON },
	{ "dry-run",		no_argument,	   NULL, OPT_DRY_RUN },
	{ "dest",		required_argument, NULL, OPT_DEST },
	{ "sysctl-dir",		required_argument, NULL, OPT_SYSCTL_DIR },
	{ "help",		no_argument,	   NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* "64M", "8K", "1G" or plain; 0 is refused. */
static int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	}
	if (*end || !v || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static void bad(const char *opt, const char *val)
{
	fprintf(stderr, "ringcast-tune: bad --%s '%s' (see --help)\n", opt,
		val);
	exit(2);
}

static unsigned online_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set))
		return (unsigned)CPU_COUNT(&set);
	return 1;
}

int main(int argc, char **argv)
{
	struct tune_cfg cfg = {
		.arena = TUNE_ARENA_BYTES,
		.recv_bufs = TUNE_RECV_BUFS,
		.recv_buf_size = TUNE_RECV_BUF_SIZE,
		.per_conn = TUNE_CONN_USER_BYTES + TUNE_CONN_KERNEL_BYTES,
		.profile = "server",
	};
	struct tune_apply_opts ao = { 0 };
	static struct tune_report report;
	char path[4096];
	const char *cmd;
	bool json = false, apply;
	uint64_t v;
	int opt, ret;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	if (strcmp(cmd, "check") && strcmp(cmd, "apply")) {
		fprintf(stderr, "ringcast-tune: unknown command '%s' (see "
			"--help)\n", cmd);
		return 2;
	}
	apply = !strcmp(cmd, "apply");
	if (apply)
		cfg.profile = NULL;

	opterr = 0;
	optind = 2;
	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case OPT_CONNS:
			if (parse_size(optarg, &v) < 0 ||
			    strpbrk(optarg, "KkMmGg"))
				bad("conns", optarg);
			cfg.conns = v;
			break;
		case OPT_SHARDS:
			if (parse_size(optarg, &v) < 0 || v > 1024 ||
			    strpbrk(optarg, "KkMmGg"))
				bad("shards", optarg);
			cfg.shards = (unsigned)v;
			break;
		case OPT_PROFILE:
			cfg.profile = strcmp(optarg, "none") ? optarg : NULL;
			break;
		case OPT_PER_CONN:
			if (parse_size(optarg, &cfg.per_conn) < 0)
				bad("per-conn-bytes", optarg);
			break;
		case OPT_ARENA:
			if (parse_size(optarg, &cfg.arena) < 0)
				bad("arena-size", optarg);
			break;
		case OPT_RECV_BUFS:
			if (parse_size(optarg, &v) < 0 || v > 32768 ||
			    (v & (v - 1)))
				bad("recv-buffers", optarg);
			cfg.recv_bufs = (unsigned)v;
			break;
		case OPT_RECV_BUF_SIZE:
			if (parse_size(optarg, &cfg.recv_buf_size) < 0)
				bad("recv-buffer-size", optarg);
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_DRY_RUN:
			ao.dry_run = true;
			break;
		case OPT_DEST:
			ao.dest_dir = optarg;
			break;
		case OPT_SYSCTL_DIR:
			cfg.sysctl_dir = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fprintf(stderr, "ringcast-tune: bad or incomplete "
				"option %s (see --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ringcast-tune: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}

	if (cfg.profile) {
		ret = tune_profile_find(path, sizeof(path), cfg.profile,
					cfg.sysctl_dir);
		if (ret < 0) {
			fprintf(stderr, "ringcast-tune: no profile '%s' (try "
				"server or loadgen, or --sysctl-dir)\n",
				cfg.profile);
			return 2;
		}
	}

	if (apply) {
		if (!cfg.profile) {
			fprintf(stderr, "ringcast-tune: apply needs --profile "
				"NAME\n");
			return 2;
		}
		ao.profile_path = path;
		ret = tune_apply(&ao);
		return ret < 0 ? 1 : 0;
	}

	if (!cfg.conns) {
		fprintf(stderr, "ringcast-tune: check needs --conns N\n");
		return 2;
	}
	if (!cfg.shards)
		cfg.shards = online_cpus();
	ret = tune_check(&report, &cfg, cfg.profile ? path : NULL);
	if (ret < 0) {
		fprintf(stderr, "ringcast-tune: profile %s: %s\n", path,
			strerror(-ret));
		return 2;
	}
	if (json)
		tune_report_print_json(&report, &cfg, cfg.profile ? path :
				       NULL);
	else
		tune_report_print(&report, &cfg, cfg.profile ? path : NULL);
	return tune_report_ok(&report) ? 0 : 1;
}
