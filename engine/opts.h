/* SPDX-License-Identifier: MIT */
/*
 * opts: ringcast's configuration from its defaults, the RINGCAST_*
 * variables and the command line (engine/opts.c). One table row per
 * option holds its name, its argument, how it is parsed and its --help
 * text, so that --help is printed from what is parsed and cannot drift
 * from it.
 */
#ifndef RC_ENGINE_OPTS_H
#define RC_ENGINE_OPTS_H

#include <stdbool.h>

#include "eng.h"

/*
 * Fills @cfg, all of it: the defaults, then RINGCAST_API_KEY, RINGCAST_JWT_SECRET,
 * RINGCAST_REDIS_URL and RINGCAST_REDIS_CLUSTER, then @argv's options in
 * order (a later one wins), then what follows from them: the address
 * without --listen, --demo's settings, the shards and threads for this
 * host's CPUs, and the checks between options. Files named by options
 * are not read here (eng_auth_init, eng_tls_init), except
 * --redis-url-file's.
 * Returns 0 to start; 1 when --help was asked for and printed on stdout
 * (exit 0); -EINVAL after saying on stderr what is wrong (exit 2).
 * @local_only is set when, for want of an API key, the address chosen is
 * loopback's. Unless it returns 0, nothing of @cfg is left allocated;
 * after 0, eng_opts_exit() frees what it holds (@cfg->ns: --namespace,
 * --demo).
 */
int eng_opts_parse(struct eng_cfg *cfg, int argc, char **argv,
		   bool *local_only);

/* Frees what eng_opts_parse() allocated in @cfg; twice is harmless. */
void eng_opts_exit(struct eng_cfg *cfg);

#endif
