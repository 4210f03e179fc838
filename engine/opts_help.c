/* SPDX-License-Identifier: MIT */
/*
 * opts_help.c: what --help prints around and for each row of opts.c's
 * table: the head, one option's name and its text in a column, the tail
 * (the endpoints, signals, the limits of a host).
 */
#include <stdio.h>
#include <string.h>

#include "opts_int.h"

static const char help_head[] =
"usage: ringcast [options]\n"
"\n"
"A WebSocket push engine on io_uring. Each shard is a thread pinned to a\n"
"CPU with its own io_uring ring, SO_REUSEPORT listener and connections.\n"
"\n";

static const char help_tail[] =
"\n"
"SIZE takes K, M or G suffixes; DUR takes ms, s, m or h (default s).\n"
"\n"
"Endpoints on the same port: ws://HOST:PORT/ws (the push protocol),\n"
"POST /publish/CHANNEL and POST /broadcast (body = payload),\n"
"POST /users/UID/push, GET /users/UID, POST /users/UID/disconnect,\n"
"GET /online, GET /stats, GET /metrics (Prometheus), GET /healthz;\n"
"the status page at GET / and ringcast.js at GET /ringcast.js;\n"
"docs/PROTOCOL.md describes them. With --tls-cert they are all TLS (see\n"
"--tls-min): wss://HOST:PORT/ws, https://HOST:PORT/publish/CHANNEL, ...\n"
"SIGINT or SIGTERM sends close 1001 to every client, then exits 0.\n"
"SIGHUP reads --tls-cert and --tls-key again for new connections; open\n"
"ones keep theirs, and bad files leave the ones in use (stderr says why).\n"
"To upgrade without refusing a connection, start the new binary with\n"
"--take-over PATH next to one running with --handover-socket PATH.\n"
"\n"
"Connections per shard: client sockets are io_uring direct descriptors and\n"
"never use the process fd table, but each ring's fixed-file table is capped\n"
"at RLIMIT_NOFILE (which ringcast raises to its hard limit) and at 1048576\n"
"by the kernel. A host with a hard limit of 20000 holds about shards x\n"
"20000 connections: raise the limit (tune/, sysctl.d/) or run more shards.\n"
"With --io epoll, sockets are ordinary fds: the whole process holds about\n"
"RLIMIT_NOFILE of them.\n";

/* The column the options' texts start at; a longer option goes above. */
#define HELP_COL 27

void opts__help_row(FILE *f, char letter, const char *name, const char *arg,
		    const char *help)
{
	const char *p = help;
	char lt[8] = "";
	int n;

	if (letter)
		snprintf(lt, sizeof(lt), "-%c, ", letter);
	n = fprintf(f, "  %s--%s%s%s", lt, name, arg ? " " : "", arg ? arg : "");
	if (n > HELP_COL)
		fprintf(f, "\n%*s", HELP_COL, "");
	else
		fprintf(f, "%*s", n < HELP_COL ? HELP_COL - n : 1, "");
	for (;;) {
		size_t len = strcspn(p, "\n");

		fprintf(f, "%.*s\n", (int)len, p);
		if (!p[len])
			break;
		p += len + 1;
		fprintf(f, "%*s", HELP_COL, "");
	}
}


void opts__help_head(FILE *f)
{
	fputs(help_head, f);
}

void opts__help_tail(FILE *f)
{
	fputs(help_tail, f);
}
