/* SPDX-License-Identifier: MIT */
/*
 * opts_check.c: eng_opts_parse(): the defaults, the RINGCAST_* variables
 * (before the command line, which opts.c reads), then what follows from
 * the options and the checks between them: the API key and the address,
 * --auth's key, the TLS pairs, the shards and threads for this host.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "handover.h"
#include "pusher_eng.h"
#include "webhook.h"
#include "opts.h"
#include "opts_int.h"

/* ---- defaults and the environment ---------------------------------------- */

static void defaults(struct eng_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));	/* what has no default is off */
	cfg->port = 8080;	/* the address follows the key: see below */
	cfg->shards = 0;
	cfg->max_message = 1u << 20;
	cfg->ping_ms = 30000;
	cfg->idle_ms = 90000;
	cfg->handshake_ms = 10000;
	cfg->http_idle_ms = 60000;
	cfg->take_over_mode = ENG_HO_MODE_LIVE;	/* falls back to drain */
	cfg->drain_rate = 1000;
	cfg->drain_deadline_ms = 60000;
	cfg->recv_bufs = 1024;
	cfg->recv_buf_size = 8192;
	cfg->sq_entries = 4096;
	cfg->max_subs = 100;
	cfg->max_pending = 4u << 20;
	cfg->arena_size = (size_t)64 << 20;
	cfg->zc_threshold = UINT32_MAX;
	strcpy(cfg->redis_prefix, "ringcast:");
	cfg->redis_timeout_ms = 5000;
	cfg->redis_max_pending = 16u << 20;
	cfg->redis_max_reading = 32u << 20;
	cfg->max_partial = (uint64_t)256 << 20;
	cfg->history_memory = (uint64_t)64 << 20;
	cfg->inbox_max = 1000;
	cfg->inbox_ttl_ms = 24 * 3600 * 1000;
	cfg->inbox_memory = (uint64_t)256 << 20;
	cfg->jwt_leeway = ENG_JWT_LEEWAY;
	cfg->tls_max_handshakes = 1024;
	cfg->tls_min = 13;
	cfg->deflate_level = 6;
	cfg->deflate_min = 128;
}

/* Copies environment variable @name into @dst; -E2BIG if it does not fit. */
static int env_secret(const char *name, char *dst, size_t size)
{
	const char *v = getenv(name);

	if (!v)
		return 0;
	if (strlen(v) >= size) {
		fprintf(stderr, "ringcast: %s is %zu bytes long, at most %zu "
			"are taken\n", name, strlen(v), size - 1);
		return -E2BIG;
	}
	strcpy(dst, v);
	return 0;
}

/* The RINGCAST_* variables, before the options that take precedence. */
static int environment(struct eng_cfg *cfg)
{
	const char *url = getenv("RINGCAST_REDIS_URL");
	const char *seeds = getenv("RINGCAST_REDIS_CLUSTER");

	/* A secret that does not fit must stop us, never leave us open. */
	if (env_secret("RINGCAST_API_KEY", cfg->api_key,
		       sizeof(cfg->api_key)) < 0 ||
	    env_secret("RINGCAST_JWT_SECRET", cfg->jwt_secret,
		       sizeof(cfg->jwt_secret)) < 0)
		return -EINVAL;
	if (url && opts__redis_url_from("RINGCAST_REDIS_URL", url, cfg) < 0)
		return -EINVAL;
	if (seeds && opts__redis_seeds(seeds, cfg) < 0) {
		fprintf(stderr, "ringcast: RINGCAST_REDIS_CLUSTER is not a list "
			"of seeds ([redis://[[USER]:PASSWORD@]]HOST:PORT"
			"[,HOST:PORT...])\n");
		return -EINVAL;
	}
	return 0;
}

/* ---- what follows from the options --------------------------------------- */

/* Is IPv4 address @host in 127.0.0.0/8? */
static bool is_loopback(const char *host)
{
	struct in_addr a;

	return inet_pton(AF_INET, host, &a) == 1 &&
	       (ntohl(a.s_addr) >> 24) == 127;
}

static unsigned online_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	return 1;
}

/* The API key and the address: who may reach the engine, and from where. */
static int exposure(struct eng_cfg *cfg, bool *local_only)
{
	/* --api-key was checked as parsed; what is left came from here */
	if (cfg->api_key[0] && strlen(cfg->api_key) < ENG_KEY_MIN) {
		fprintf(stderr, "ringcast: RINGCAST_API_KEY is %zu bytes long; "
			"an API key needs %d at least, or it can be guessed "
			"(`openssl rand -hex 16` makes one)\n",
			strlen(cfg->api_key), ENG_KEY_MIN);
		return -EINVAL;
	}
	/*
	 * Without --listen: every address with a key (or --insecure-open),
	 * else loopback alone, as Redis does in protected mode, so that a
	 * bare ringcast starts and serves this host at once.
	 */
	*local_only = false;
	if (!cfg->listen_host[0]) {
		*local_only = !cfg->api_key[0] && !cfg->insecure_open;
		strcpy(cfg->listen_host, *local_only ? "127.0.0.1" : "0.0.0.0");
	}
	/*
	 * Open by default is how push servers get abused: with no key,
	 * anyone who reaches the port broadcasts, pushes to and kicks any
	 * user. Only loopback may go without one, unless asked.
	 */
	if (!cfg->api_key[0] && !cfg->insecure_open &&
	    !is_loopback(cfg->listen_host)) {
		fprintf(stderr, "ringcast: refusing to listen on %s without an "
			"API key: anyone who reaches the port could publish, "
			"push to any user and kick them. Set --api-key (or "
			"RINGCAST_API_KEY), listen on 127.0.0.1, or pass "
			"--insecure-open (see --help)\n", cfg->listen_host);
		return -EINVAL;
	}
	return 0;
}

/* Options that need another: --auth, the TLS pairs, --threads. */
static int companions(struct eng_cfg *cfg)
{
	if (cfg->auth != ENG_AUTH_OFF && !cfg->jwt_secret[0] &&
	    !cfg->jwt_pubkey_file[0]) {
		fprintf(stderr, "ringcast: --auth %s needs --jwt-secret or "
			"--jwt-public-key (see --help)\n",
			cfg->auth == ENG_AUTH_REQUIRED ? "required" : "optional");
		return -EINVAL;
	}
	if (cfg->tls_ncert != cfg->tls_nkey) {
		fprintf(stderr, "ringcast: --tls-cert and --tls-key go "
			"together, in pairs (see --help)\n");
		return -EINVAL;
	}
	if (!cfg->shards)
		cfg->shards = online_cpus();
	/*
	 * One thread per shard up to one per CPU: more shards than CPUs (a
	 * low fd limit) share threads, which measured faster (bench/README.md,
	 * "Fewer threads than rings"). The epoll backend keeps one each.
	 */
	if (!cfg->threads && !cfg->epoll && cfg->shards > online_cpus())
		cfg->threads = online_cpus();
	if (cfg->threads >= cfg->shards)
		cfg->threads = 0;	/* one each */
	if (cfg->threads && cfg->epoll) {
		fprintf(stderr, "ringcast: --threads needs --io uring: an "
			"epoll shard waits in its own epoll_wait\n");
		return -EINVAL;
	}
	return 0;
}

int eng_opts_parse(struct eng_cfg *cfg, int argc, char **argv,
		   bool *local_only)
{
	int ret;

	defaults(cfg);
	ret = environment(cfg) < 0 ? -EINVAL : opts__argv(argc, argv, cfg);
	if (ret == 0 && (exposure(cfg, local_only) < 0 || companions(cfg) < 0 ||
			 eng_pusher_opts_finish(cfg) < 0 ||
			 eng_webhook_opts_finish(cfg) < 0))
		ret = -EINVAL;
	if (ret)
		eng_opts_exit(cfg);	/* --help or a bad option: no start */
	return ret;
}

void eng_opts_exit(struct eng_cfg *cfg)
{
	free(cfg->ns);
	cfg->ns = NULL;
	cfg->nns = 0;
	eng_pusher_cfg_free(cfg);
	eng_webhook_cfg_free(cfg);
}
