/* SPDX-License-Identifier: MIT */
/*
 * opts_int.h: what opts.c, opts_value.c and opts_check.c share and
 * nothing else includes. Each value parser takes an option's text and
 * returns 0, having set what it names, or -EINVAL (-ERANGE for a number
 * too large), having set nothing an error leaves in use; none prints.
 */
#ifndef RC_ENGINE_OPTS_INT_H
#define RC_ENGINE_OPTS_INT_H

#include <stdint.h>
#include <stdio.h>

#include "eng.h"

/* A decimal number, digits only ("+5", " 5" and "-1" are refused). */
int opts__u64(const char *s, uint64_t *out);
/* Bytes: "64K", "16M", "1G" (or k, m, g), or a plain number. */
int opts__size(const char *s, uint64_t *out);
/* Milliseconds from "500ms", "2s", "1m", "1h", or plain seconds. */
int opts__dur(const char *s, unsigned *ms);
/* --batch-window: a duration or "250us", at most a second, into @us. */
int opts__window(const char *s, unsigned *us);
/* --listen ADDR:PORT into @cfg's listen_host and port. */
int opts__listen(const char *s, struct eng_cfg *cfg);
/* --allowed-origins and --allowed-hosts, kept as given in @cfg. */
int opts__origins(const char *s, struct eng_cfg *cfg);
int opts__hosts(const char *s, struct eng_cfg *cfg);

/*
 * redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] into @cfg's redis_* fields,
 * replacing an earlier URL's (or cluster's) credentials and database.
 */
int opts__redis_url(const char *url, struct eng_cfg *cfg);
/*
 * opts__redis_url() for a URL kept out of the command line: on a bad one
 * says on stderr that @what (where it came from) is not a Redis URL,
 * without the URL, which may hold a password.
 */
int opts__redis_url_from(const char *what, const char *url,
			 struct eng_cfg *cfg);
/*
 * --redis-cluster [redis://[[USER]:PASSWORD@]]HOST:PORT[,HOST:PORT...]:
 * the seeds, the first as redis_host and redis_port, redis_cluster set.
 */
int opts__redis_seeds(const char *v, struct eng_cfg *cfg);

/*
 * The command line into @cfg, in order, with the checks that need only
 * it (one Redis or a cluster) and --demo's settings. Prints --help and
 * returns 1 when asked; 0, or -EINVAL after saying why on stderr.
 */
int opts__argv(int argc, char **argv, struct eng_cfg *cfg);

/*
 * --help on @f (opts_help.c): the head, then one row per option (its
 * -@letter when not 0, --@name, @arg or NULL for a flag, @help's lines
 * split by \n, in a column), then the tail.
 */
void opts__help_head(FILE *f);
void opts__help_row(FILE *f, char letter, const char *name, const char *arg,
		    const char *help);
void opts__help_tail(FILE *f);

#endif
