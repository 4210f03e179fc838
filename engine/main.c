/* SPDX-License-Identifier: MIT */
/*
 * main.c: the ringcast binary. Parses options, raises the fd limit,
 * creates one SO_REUSEPORT listener per shard, starts the pinned shard
 * threads and waits for SIGINT/SIGTERM, which it turns into a graceful
 * stop: a mailbox message to every shard, then join and exit 0. SIGHUP
 * in between reloads the TLS certificates (eng_tls_reload).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "bridge.h"
#include "broker.h"
#include "buf.h"
#include "chan.h"
#include "cluster.h"
#include "conn.h"
#include "core.h"
#include "hist.h"
#include "inbox.h"
#include "mail.h"
#include "tlsio.h"
#include "ud.h"

static const char usage[] =
"usage: ringcast [options]\n"
"\n"
"A WebSocket push engine on io_uring. Each shard is a thread pinned to a\n"
"CPU with its own io_uring ring, SO_REUSEPORT listener and connections.\n"
"\n"
"  --listen ADDR:PORT       address to listen on (default 127.0.0.1:8080\n"
"                           without an API key, 0.0.0.0:8080 with one or\n"
"                           with --insecure-open); port 0 picks a free port\n"
"                           shared by all shards\n"
"  --shards N               shard threads (default: online CPUs); may exceed\n"
"                           the CPU count, threads are then pinned round-robin\n"
"  --threads T              run the shards on T threads (io_uring only;\n"
"                           default: one per shard, at most one per CPU), so\n"
"                           that a host whose fd limit needs 50 shards for a\n"
"                           million sockets still runs one thread per core\n"
"  --max-conns N            connections for the whole process; past it a new\n"
"                           client gets HTTP 503 (default: what the shards hold)\n"
"  --max-message SIZE       largest message a client may send, after\n"
"                           reassembly (default 1M); larger gets close 1009\n"
"  --allowed-origins LIST   browsers' pages that may connect: a WebSocket\n"
"                           upgrade whose Origin is not in LIST gets 403\n"
"                           (comma-separated SCHEME://HOST[:PORT], HOST may be\n"
"                           *.DOMAIN; default: any origin). Clients that send\n"
"                           no Origin (apps, servers) are not affected.\n"
"                           Without an API key, the pages besides the\n"
"                           engine's own that may call the HTTP API\n"
"                           (default: none; others get 403)\n"
"  --allowed-hosts LIST     without an API key, the names the HTTP API\n"
"                           answers to in Host besides addresses, localhost\n"
"                           and *.localhost; others get 403, which stops DNS\n"
"                           rebinding (comma-separated NAME or *.DOMAIN)\n"
"  --namespace NAME:history=N,ttl=DUR\n"
"                           channels NAME:... keep their last N messages for\n"
"                           DUR, with offsets a client may recover from; an\n"
"                           empty NAME is for names without ':'. Repeatable\n"
"                           (16 at most); other channels keep nothing. With\n"
"                           --redis the history is kept in Redis: give every\n"
"                           node the same --namespace options\n"
"  --inbox-max N            messages kept for one user until acked (pushes\n"
"                           with persist=1; default 1000): past it the oldest\n"
"                           goes, and the user sees it counted as evicted\n"
"  --inbox-ttl DUR          ... each for this long (default 24h)\n"
"  --inbox-memory SIZE      bytes of inboxes for all users (default 256M);\n"
"                           past it the users least recently pushed to lose\n"
"                           their oldest, counted as evicted (embedded\n"
"                           broker; with --redis, Redis holds them)\n"
"  --history-memory SIZE    bytes of history for all channels (default 64M);\n"
"                           past it the least recently used lose their oldest\n"
"                           (embedded broker; with --redis, Redis holds it)\n"
"  --max-partial-memory SIZE bytes of messages not yet complete, held for all\n"
"                           clients (each shard takes an equal share); past it\n"
"                           the client holding the most is closed with 1009\n"
"                           (default 256M)\n"
"  --echo                   serve ws://HOST:PORT/echo: every message comes\n"
"                           back unchanged (the RFC 6455 conformance endpoint)\n"
"  --demo                   serve the chat demo at /demo: clients may publish\n"
"                           to demo:ROOM channels (every channel with\n"
"                           --client-publish too), which keep history, and,\n"
"                           without --listen, listens on 127.0.0.1:8080 only\n"
"  --api-key KEY            publishing, /users, /online, /stats and /metrics\n"
"                           need Authorization: Bearer KEY (default: the\n"
"                           RINGCAST_API_KEY variable, else none); 16 bytes\n"
"                           at least. A /ws client that sends 3 wrong keys\n"
"                           (sys) is closed with 4029. Without a key\n"
"                           ringcast listens on loopback (127.0.0.0/8)\n"
"                           only, unless --insecure-open\n"
"  --insecure-open          listen on any address without an API key: anyone\n"
"                           who reaches the port may publish, push to and\n"
"                           kick any user (for a network you fully control)\n"
"  --client-publish         clients may publish with the publish command on /ws\n"
"  --max-subs N             subscriptions per connection (default 100)\n"
"  --max-pending-bytes SIZE queued unsent bytes per connection before it is\n"
"                           closed with 1008 as a slow consumer (default 4M)\n"
"  --arena-size SIZE        shared frame arena for published messages\n"
"                           (default 64M; frames beyond it use the heap)\n"
"  --auth MODE              off, optional or required: a JWT in ?token= or\n"
"                           Authorization: Bearer at the /ws upgrade names\n"
"                           the user (default off)\n"
"  --jwt-secret SECRET      HS256 key (or the RINGCAST_JWT_SECRET variable)\n"
"  --jwt-public-key FILE    RS256 or ES256 public key, PEM\n"
"  --jwt-leeway SECONDS     clock skew allowed on exp and nbf (default 10)\n"
"  --max-conns-per-user N   a user's connections on this node; past it a new\n"
"                           one gets HTTP 429 (default 0: no limit)\n"
"  --redis URL              share messages with other nodes through Redis:\n"
"                           redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n"
"                           (default: the RINGCAST_REDIS_URL variable, else\n"
"                           none, the embedded broker alone)\n"
"  --redis-url-file FILE    the same URL read from FILE's first line, so\n"
"                           that a password stays out of the command line\n"
"  --redis-cluster SEEDS    share messages through a Redis Cluster with\n"
"                           sharded pub/sub (SSUBSCRIBE, SPUBLISH), instead\n"
"                           of --redis: [redis://[[USER]:PASSWORD@]]HOST:PORT\n"
"                           [,HOST:PORT...], up to 16 seeds (default: the\n"
"                           RINGCAST_REDIS_CLUSTER variable)\n"
"  --redis-timeout DUR      a Redis that owes an answer and gives none for\n"
"                           DUR is taken for dead: waiting publishes get 504\n"
"                           (may be published), /healthz 503, and the link is\n"
"                           made again; an idle link is PINGed every DUR/2\n"
"                           (default 5s)\n"
"  --redis-max-pending SIZE bytes of requests queued toward Redis at most;\n"
"                           past it a publish gets 503 at once (default 16M)\n"
"  --redis-max-reading SIZE bytes of history and inbox reads in flight to\n"
"                           Redis at most, each counted as 1M (or\n"
"                           --max-message if larger); past it a history\n"
"                           read gets 503 at once, a page of a new\n"
"                           connection's inbox waits (default 32M)\n"
"  --redis-prefix PREFIX    Redis channel names start with it (default\n"
"                           ringcast:): PREFIXch:NAME, PREFIXall\n"
"  --zc-threshold SIZE      send frames this large with send_zc from the\n"
"                           registered arena; 0 never (default 0: on\n"
"                           loopback send_zc never won, see\n"
"                           bench/results/send-zc.md)\n"
"  --batch-window DUR       hold frames queued to a connection up to DUR\n"
"                           (us, ms or s; at most 1s) so that a busy channel\n"
"                           sends several per syscall; 0 (default) sends\n"
"                           what one loop turn queued, with no added delay\n"
"  --ping-interval DUR      ping a connection quiet for DUR (default 30s, 0 off)\n"
"  --idle-timeout DUR       close a connection silent for DUR with 1001\n"
"                           (default 90s, 0 off)\n"
"  --handshake-timeout DUR  drop a client that sends nothing within DUR of\n"
"                           connecting, or whose request (an upgrade or an\n"
"                           HTTP request) is not whole within DUR of its\n"
"                           first byte (default 10s); with TLS, also the\n"
"                           deadline of the TLS handshake\n"
"  --http-idle-timeout DUR  close a kept-alive HTTP connection idle for DUR\n"
"                           between requests; answers say Keep-Alive:\n"
"                           timeout=SECONDS (default 60s; 0: close after\n"
"                           every answer)\n"
"  --tls-cert FILE          speak TLS on the port (wss://, https://): the\n"
"                           certificate chain, PEM, leaf first\n"
"  --tls-key FILE           its private key, PEM (both or neither). Both\n"
"                           repeat, in pairs, up to 16: a client's SNI name\n"
"                           picks the certificate whose names (SAN DNS,\n"
"                           wildcards) match it; the first is the default\n"
"  --tls-min 1.2|1.3        lowest TLS version (default 1.3); a 1.2\n"
"                           connection keeps OpenSSL's state, about 15 KB\n"
"                           more than a 1.3 one\n"
"  --tls-max-handshakes N   TLS handshakes in progress per shard; past it a\n"
"                           new client is closed at once (default 1024)\n"
"  --io uring|epoll         I/O backend (default uring); epoll exists to\n"
"                           compare the same engine on the older model\n"
"  --recv-buffers N         provided receive buffers per shard (default 1024)\n"
"  --recv-buffer-size SIZE  bytes per receive buffer (default 8K)\n"
"  -h, --help               print this help and exit\n"
"\n"
"SIZE takes K, M or G suffixes; DUR takes ms, s, m or h (default s).\n"
"\n"
"Endpoints on the same port: ws://HOST:PORT/ws (the push protocol),\n"
"POST /publish/CHANNEL and POST /broadcast (body = payload),\n"
"POST /users/UID/push, GET /users/UID, POST /users/UID/disconnect,\n"
"GET /online, GET /stats, GET /metrics (Prometheus), GET /healthz;\n"
"the status page at GET / and ringcast.js at GET /ringcast.js;\n"
"docs/PROTOCOL.md describes them. With --tls-cert they are all TLS 1.3:\n"
"wss://HOST:PORT/ws, https://HOST:PORT/publish/CHANNEL, ...\n"
"SIGINT or SIGTERM sends close 1001 to every client, then exits 0.\n"
"SIGHUP reads --tls-cert and --tls-key again for new connections; open\n"
"ones keep theirs, and bad files leave the ones in use (stderr says why).\n"
"\n"
"Connections per shard: client sockets are io_uring direct descriptors and\n"
"never use the process fd table, but each ring's fixed-file table is capped\n"
"at RLIMIT_NOFILE (which ringcast raises to its hard limit) and at 1048576\n"
"by the kernel. A host with a hard limit of 20000 holds about shards x\n"
"20000 connections: raise the limit (tune/, sysctl.d/) or run more shards.\n"
"With --io epoll, sockets are ordinary fds: the whole process holds about\n"
"RLIMIT_NOFILE of them.\n";

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	/* strtoull() would take " 5", "+5" and "-1" (as 2^64 - 1) */
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "64K", "16M", "1G", or plain bytes. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	/* strtoull() would take " 5", "+5" and "-1" (as 2^64 - 1) */
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	else if (*end)
		return -EINVAL;
	if (shift && end[1])
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

/* "500ms", "2s", "1m", "1h", or plain seconds; into milliseconds. */
static int parse_dur(const char *s, unsigned *ms)
{
	char *end;
	unsigned long long v, mult = 1000;

	/* strtoull() would take " 5", "+5" and "-1" (as 2^64 - 1) */
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (!strcmp(end, "ms"))
		mult = 1;
	else if (!strcmp(end, "m"))
		mult = 60000;
	else if (!strcmp(end, "h"))
		mult = 3600000;
	else if (*end && strcmp(end, "s"))
		return -EINVAL;
	if (v > UINT_MAX / mult)
		return -ERANGE;
	*ms = (unsigned)(v * mult);
	return 0;
}

/* --batch-window: a DUR that may also be "250us"; at most a second. */
static int parse_window(const char *s, unsigned *us)
{
	size_t n = strlen(s);
	unsigned v;

	if (n > 2 && !strcmp(s + n - 2, "us")) {
		char num[16];
		char *end;
		unsigned long long u;

		if (n - 2 >= sizeof(num) || *s < '0' || *s > '9')
			return -EINVAL;
		memcpy(num, s, n - 2);
		num[n - 2] = '\0';
		errno = 0;
		u = strtoull(num, &end, 10);
		if (errno || *end || u > 1000000)
			return -ERANGE;
		*us = (unsigned)u;
		return 0;
	}
	if (parse_dur(s, &v) < 0 || v > 1000)
		return -ERANGE;
	*us = v * 1000;
	return 0;
}

/*
 * --allowed-origins: SCHEME://HOST[:PORT] entries, comma-separated, HOST
 * possibly *.DOMAIN. Kept as given; http.c matches against it.
 */
static int parse_origins(const char *s, struct eng_cfg *cfg)
{
	const char *e = s;

	if (!*s || strlen(s) >= sizeof(cfg->origins))
		return -EINVAL;
	while (*e) {
		const char *end = strchr(e, ',');
		size_t n = end ? (size_t)(end - e) : strlen(e);
		const char *host = memmem(e, n, "://", 3);
		const char *star = memchr(e, '*', n);

		if (!host || host == e)
			return -EINVAL;
		host += 3;
		if (host >= e + n || memchr(host, '/', (size_t)(e + n - host)))
			return -EINVAL;	/* an origin has no path */
		if (star && (star != host || star + 1 >= e + n ||
			     star[1] != '.' || memchr(star + 1, '*',
					(size_t)(e + n - star - 1))))
			return -EINVAL;
		for (size_t i = 0; i < n; i++)
			if (e[i] <= ' ' || e[i] > '~')
				return -EINVAL;
		if (end && !end[1])
			return -EINVAL;
		e += n + (end ? 1 : 0);
	}
	strcpy(cfg->origins, s);
	return 0;
}

/*
 * --allowed-hosts: NAME or *.DOMAIN entries, comma-separated, of letters,
 * digits, '-' and '.'; no port (http.c compares names only).
 */
static int parse_hosts(const char *s, struct eng_cfg *cfg)
{
	const char *e = s;

	if (!*s || strlen(s) >= sizeof(cfg->hosts))
		return -EINVAL;
	while (*e) {
		size_t n = strcspn(e, ","), i = 0;

		if (e[0] == '*' && (n < 3 || e[1] != '.'))
			return -EINVAL;
		if (e[0] == '*')
			i = 2;
		if (i == n || e[i] == '.' || e[n - 1] == '.')
			return -EINVAL;
		for (; i < n; i++)
			if (!isalnum((unsigned char)e[i]) && e[i] != '-' &&
			    e[i] != '.')
				return -EINVAL;
		if (e[n] == ',' && !e[n + 1])
			return -EINVAL;
		e += n + (e[n] ? 1 : 0);
	}
	strcpy(cfg->hosts, s);
	return 0;
}

static int parse_listen(const char *s, struct eng_cfg *cfg)
{
	const char *colon = strrchr(s, ':');
	uint64_t port;

	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(cfg->listen_host))
		return -EINVAL;
	if (parse_u64(colon + 1, &port) < 0 || port > 65535)
		return -EINVAL;
	memcpy(cfg->listen_host, s, (size_t)(colon - s));
	cfg->listen_host[colon - s] = '\0';
	cfg->port = (uint16_t)port;
	return 0;
}

/* "[USER]:PASSWORD" from @p up to @at (the '@') into @cfg. */
static int parse_userinfo(const char *p, const char *at, struct eng_cfg *cfg)
{
	const char *sep = memchr(p, ':', (size_t)(at - p));

	if (!sep || (size_t)(sep - p) >= sizeof(cfg->redis_user) ||
	    (size_t)(at - sep - 1) >= sizeof(cfg->redis_password))
		return -EINVAL;
	memcpy(cfg->redis_user, p, (size_t)(sep - p));
	cfg->redis_user[sep - p] = '\0';
	memcpy(cfg->redis_password, sep + 1, (size_t)(at - sep - 1));
	cfg->redis_password[at - sep - 1] = '\0';
	return 0;
}

/* redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] */
static int parse_redis(const char *url, struct eng_cfg *cfg)
{
	const char *p, *at, *slash, *colon, *end;
	uint64_t v;
	char num[24];

	if (strncmp(url, "redis://", 8))
		return -EINVAL;
	/* a later URL replaces an earlier one whole (environment, option) */
	cfg->redis_user[0] = cfg->redis_password[0] = '\0';
	cfg->redis_db = 0;
	p = url + 8;
	end = p + strlen(p);
	slash = strchr(p, '/');
	if (!slash)
		slash = end;
	at = memchr(p, '@', (size_t)(slash - p));
	if (at && parse_userinfo(p, at, cfg) < 0)
		return -EINVAL;
	if (at)
		p = at + 1;
	colon = memchr(p, ':', (size_t)(slash - p));
	cfg->redis_port = 6379;
	if (colon) {
		if ((size_t)(slash - colon - 1) >= sizeof(num))
			return -EINVAL;
		memcpy(num, colon + 1, (size_t)(slash - colon - 1));
		num[slash - colon - 1] = '\0';
		if (parse_u64(num, &v) < 0 || !v || v > 65535)
			return -EINVAL;
		cfg->redis_port = (uint16_t)v;
	} else {
		colon = slash;
	}
	if (colon == p || (size_t)(colon - p) >= sizeof(cfg->redis_host))
		return -EINVAL;
	memcpy(cfg->redis_host, p, (size_t)(colon - p));
	cfg->redis_host[colon - p] = '\0';
	if (slash != end && slash[1]) {
		if (parse_u64(slash + 1, &v) < 0 || v > 1000000)
			return -EINVAL;
		cfg->redis_db = (unsigned)v;
	}
	return 0;
}

/*
 * --redis-cluster: [redis://[[USER]:PASSWORD@]]HOST:PORT[,HOST:PORT...].
 * The seeds are only where the slot map is first asked: the masters come
 * from it. No /DB: a cluster has only database 0.
 */
static int parse_redis_cluster(const char *v, struct eng_cfg *cfg)
{
	struct eng_cluster_addr seeds[ENG_CLUSTER_SEEDS_MAX];
	const char *p = v, *at;
	int n;

	cfg->redis_user[0] = cfg->redis_password[0] = '\0';
	cfg->redis_db = 0;
	if (!strncmp(p, "redis://", 8))
		p += 8;
	at = strchr(p, '@');
	if (at && parse_userinfo(p, at, cfg) < 0)
		return -EINVAL;
	if (at)
		p = at + 1;
	n = eng_cluster_parse_seeds(p, seeds, ENG_CLUSTER_SEEDS_MAX);
	if (n <= 0 || strlen(p) >= sizeof(cfg->redis_seeds))
		return -EINVAL;
	strcpy(cfg->redis_seeds, p);
	snprintf(cfg->redis_host, sizeof(cfg->redis_host), "%s", seeds[0].host);
	cfg->redis_port = seeds[0].port;
	cfg->redis_cluster = true;
	return 0;
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

/*
 * A Redis URL kept out of the command line (it may hold a password): from
 * @what, whose text is @url. Errors name where it came from, never the
 * URL. Returns 0 or -EINVAL.
 */
static int redis_url_from(const char *what, const char *url,
			  struct eng_cfg *cfg)
{
	if (parse_redis(url, cfg) < 0) {
		fprintf(stderr, "ringcast: %s is not a Redis URL "
			"(redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])\n", what);
		return -EINVAL;
	}
	return 0;
}

/* --redis-url-file: the URL on the first line of @path. */
static int redis_url_file(const char *path, struct eng_cfg *cfg)
{
	char line[1024], what[1100];
	FILE *f = fopen(path, "r");

	if (!f) {
		fprintf(stderr, "ringcast: --redis-url-file %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	snprintf(what, sizeof(what), "the first line of %s", path);
	return redis_url_from(what, line, cfg);
}

/* Is IPv4 address @host in 127.0.0.0/8? */
static bool is_loopback(const char *host)
{
	struct in_addr a;

	return inet_pton(AF_INET, host, &a) == 1 &&
	       (ntohl(a.s_addr) >> 24) == 127;
}

static void bad_value(const char *opt, const char *val)
{
	fprintf(stderr, "ringcast: invalid value for --%s: '%s' (see --help)\n",
		opt, val);
	exit(2);
}

enum {
	OPT_LISTEN = 256, OPT_SHARDS, OPT_MAX_CONNS, OPT_MAX_MESSAGE, OPT_ECHO,
	OPT_PING, OPT_IDLE, OPT_HANDSHAKE, OPT_RECV_BUFS, OPT_RECV_BUF_SIZE,
	OPT_API_KEY, OPT_CLIENT_PUBLISH, OPT_MAX_SUBS, OPT_MAX_PENDING,
	OPT_ARENA, OPT_ZC, OPT_REDIS, OPT_REDIS_PREFIX, OPT_AUTH, OPT_JWT_SECRET,
	OPT_JWT_PUBKEY, OPT_MAX_PER_USER, OPT_JWT_LEEWAY, OPT_IO,
	OPT_INSECURE_OPEN, OPT_REDIS_FILE, OPT_REDIS_TIMEOUT, OPT_REDIS_CLUSTER,
	OPT_REDIS_MAX_PENDING, OPT_REDIS_MAX_READING, OPT_MAX_PARTIAL,
	OPT_ORIGINS, OPT_NAMESPACE, OPT_HISTORY_MEMORY, OPT_INBOX_MAX,
	OPT_INBOX_TTL, OPT_INBOX_MEMORY, OPT_BATCH_WINDOW,
	OPT_DEMO, OPT_THREADS, OPT_HTTP_IDLE, OPT_HOSTS,
};
enum { OPT_TLS_CERT = 512, OPT_TLS_KEY, OPT_TLS_MIN, OPT_TLS_HANDSHAKES };

static const struct option options[] = {
	{ "listen",		required_argument, NULL, OPT_LISTEN },
	{ "shards",		required_argument, NULL, OPT_SHARDS },
	{ "threads",		required_argument, NULL, OPT_THREADS },
	{ "max-conns",		required_argument, NULL, OPT_MAX_CONNS },
	{ "max-message",	required_argument, NULL, OPT_MAX_MESSAGE },
	{ "echo",		no_argument,	   NULL, OPT_ECHO },
	{ "demo",		no_argument,	   NULL, OPT_DEMO },
	{ "ping-interval",	required_argument, NULL, OPT_PING },
	{ "idle-timeout",	required_argument, NULL, OPT_IDLE },
	{ "handshake-timeout",	required_argument, NULL, OPT_HANDSHAKE },
	{ "http-idle-timeout",	required_argument, NULL, OPT_HTTP_IDLE },
	{ "recv-buffers",	required_argument, NULL, OPT_RECV_BUFS },
	{ "recv-buffer-size",	required_argument, NULL, OPT_RECV_BUF_SIZE },
	{ "api-key",		required_argument, NULL, OPT_API_KEY },
	{ "client-publish",	no_argument,	   NULL, OPT_CLIENT_PUBLISH },
	{ "max-subs",		required_argument, NULL, OPT_MAX_SUBS },
	{ "max-pending-bytes",	required_argument, NULL, OPT_MAX_PENDING },
	{ "arena-size",		required_argument, NULL, OPT_ARENA },
	{ "zc-threshold",	required_argument, NULL, OPT_ZC },
	{ "batch-window",	required_argument, NULL, OPT_BATCH_WINDOW },
	{ "redis",		required_argument, NULL, OPT_REDIS },
	{ "redis-prefix",	required_argument, NULL, OPT_REDIS_PREFIX },
	{ "auth",		required_argument, NULL, OPT_AUTH },
	{ "jwt-secret",		required_argument, NULL, OPT_JWT_SECRET },
	{ "jwt-public-key",	required_argument, NULL, OPT_JWT_PUBKEY },
	{ "max-conns-per-user",	required_argument, NULL, OPT_MAX_PER_USER },
	{ "jwt-leeway",		required_argument, NULL, OPT_JWT_LEEWAY },
	{ "io",			required_argument, NULL, OPT_IO },
	{ "insecure-open",	no_argument,	   NULL, OPT_INSECURE_OPEN },
	{ "redis-url-file",	required_argument, NULL, OPT_REDIS_FILE },
	{ "redis-cluster",	required_argument, NULL, OPT_REDIS_CLUSTER },
	{ "redis-timeout",	required_argument, NULL, OPT_REDIS_TIMEOUT },
	{ "redis-max-pending",	required_argument, NULL, OPT_REDIS_MAX_PENDING },
	{ "redis-max-reading",	required_argument, NULL, OPT_REDIS_MAX_READING },
	{ "max-partial-memory",	required_argument, NULL, OPT_MAX_PARTIAL },
	{ "allowed-origins",	required_argument, NULL, OPT_ORIGINS },
	{ "allowed-hosts",	required_argument, NULL, OPT_HOSTS },
	{ "namespace",		required_argument, NULL, OPT_NAMESPACE },
	{ "history-memory",	required_argument, NULL, OPT_HISTORY_MEMORY },
	{ "inbox-max",		required_argument, NULL, OPT_INBOX_MAX },
	{ "inbox-ttl",		required_argument, NULL, OPT_INBOX_TTL },
	{ "inbox-memory",	required_argument, NULL, OPT_INBOX_MEMORY },
	{ "tls-cert",		required_argument, NULL, OPT_TLS_CERT },
	{ "tls-key",		required_argument, NULL, OPT_TLS_KEY },
	{ "tls-min",		required_argument, NULL, OPT_TLS_MIN },
	{ "tls-max-handshakes",	required_argument, NULL, OPT_TLS_HANDSHAKES },
	{ "help",		no_argument,	   NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* The TLS options (tlsio.h). Returns false for an option not of them. */
static bool tls_opt(int opt, const char *arg, struct eng_cfg *cfg)
{
	uint64_t v;

	switch (opt) {
	case OPT_TLS_CERT:
	case OPT_TLS_KEY: {
		bool cert = opt == OPT_TLS_CERT;
		unsigned *n = cert ? &cfg->tls_ncert : &cfg->tls_nkey;

		if (!*arg || *n == ENG_TLS_MAX_CERTS)
			bad_value(cert ? "tls-cert (at most 16)" :
					 "tls-key (at most 16)", arg);
		(cert ? cfg->tls_cert : cfg->tls_key)[(*n)++] = arg;
		return true;
	}
	case OPT_TLS_MIN:
		if (strcmp(arg, "1.2") && strcmp(arg, "1.3"))
			bad_value("tls-min (1.2 or 1.3)", arg);
		cfg->tls_min = arg[2] == '2' ? 12 : 13;
		return true;
	case OPT_TLS_HANDSHAKES:
		if (parse_u64(arg, &v) < 0 || !v || v > 1000000)
			bad_value("tls-max-handshakes (1 to 1000000)", arg);
		cfg->tls_max_handshakes = (unsigned)v;
		return true;
	}
	return false;
}

/*
 * --demo: serves /demo, lets clients publish to demo:ROOM channels and
 * keeps their last 100 messages; on loopback unless --listen says where.
 */
static void demo_defaults(struct eng_cfg *cfg, bool listen_set)
{
	static const char ns[] = "demo:history=100,ttl=10m";

	cfg->demo = true;
	/* its rooms only, unless the operator opened every channel */
	if (!cfg->client_publish)
		cfg->demo_publish = true;
	cfg->client_publish = true;
	if (!listen_set)
		strcpy(cfg->listen_host, "127.0.0.1");
	for (unsigned i = 0; i < cfg->nns; i++)
		if (cfg->ns[i].len == 4 && !memcmp(cfg->ns[i].name, "demo", 4))
			return;		/* the operator's own */
	if (!cfg->ns)
		cfg->ns = calloc(ENG_NS_MAX, sizeof(*cfg->ns));
	if (cfg->ns && cfg->nns < ENG_NS_MAX &&
	    eng_ns_parse(ns, &cfg->ns[cfg->nns]) == 0)
		cfg->nns++;
}

static void parse_args(int argc, char **argv, struct eng_cfg *cfg)
{
	bool listen_set = false, demo = false, one = false, cluster = false;
	uint64_t v;
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		const char *name = optind > 0 && optind <= argc ?
				   argv[optind - 1] : "?";

		switch (opt) {
		case OPT_LISTEN:
			if (parse_listen(optarg, cfg) < 0)
				bad_value("listen", optarg);
			listen_set = true;
			break;
		case OPT_DEMO:
			demo = true;
			break;
		case OPT_THREADS:
			if (parse_u64(optarg, &v) < 0 || !v || v > 1024)
				bad_value("threads (1 to 1024)", optarg);
			cfg->threads = (unsigned)v;
			break;
		case OPT_SHARDS:
			if (parse_u64(optarg, &v) < 0 || !v || v > 1024)
				bad_value("shards", optarg);
			cfg->shards = (unsigned)v;
			break;
		case OPT_MAX_CONNS:
			if (parse_u64(optarg, &v) < 0 || !v)
				bad_value("max-conns", optarg);
			cfg->max_conns = v;
			break;
		case OPT_MAX_MESSAGE:
			/* Assembly buffers are sized in 32 bits. */
			if (parse_size(optarg, &v) < 0 || !v ||
			    v > UINT32_MAX - 4096)
				bad_value("max-message", optarg);
			cfg->max_message = v;
			break;
		case OPT_ECHO:
			cfg->echo = true;
			break;
		case OPT_INSECURE_OPEN:
			cfg->insecure_open = true;
			break;
		case OPT_PING:
			if (parse_dur(optarg, &cfg->ping_ms) < 0)
				bad_value("ping-interval", optarg);
			break;
		case OPT_IDLE:
			if (parse_dur(optarg, &cfg->idle_ms) < 0)
				bad_value("idle-timeout", optarg);
			break;
		case OPT_HANDSHAKE:
			if (parse_dur(optarg, &cfg->handshake_ms) < 0 ||
			    !cfg->handshake_ms)
				bad_value("handshake-timeout", optarg);
			break;
		case OPT_HTTP_IDLE:
			/* whole seconds: Keep-Alive: timeout=N says seconds */
			if (parse_dur(optarg, &cfg->http_idle_ms) < 0 ||
			    (cfg->http_idle_ms && cfg->http_idle_ms < 1000))
				bad_value("http-idle-timeout (0, or 1s at least)",
					  optarg);
			break;
		case OPT_RECV_BUFS:
			if (parse_u64(optarg, &v) < 0 || !v || v > 32768 ||
			    (v & (v - 1)))
				bad_value("recv-buffers (a power of two up to 32768)",
					  optarg);
			cfg->recv_bufs = (unsigned)v;
			break;
		case OPT_RECV_BUF_SIZE:
			if (parse_size(optarg, &v) < 0 || v < 256 ||
			    v > (1u << 20))
				bad_value("recv-buffer-size (256 to 1M)", optarg);
			cfg->recv_buf_size = (unsigned)v;
			break;
		case OPT_API_KEY:
			/* a short key is guessed, however slowly we answer */
			if (strlen(optarg) < ENG_KEY_MIN ||
			    strlen(optarg) >= sizeof(cfg->api_key))
				bad_value("api-key (16 to 255 bytes; `openssl "
					  "rand -hex 16` makes one)", "...");
			strcpy(cfg->api_key, optarg);
			break;
		case OPT_CLIENT_PUBLISH:
			cfg->client_publish = true;
			break;
		case OPT_MAX_SUBS:
			/* eng_conn.nsubs is 16 bits; a user's own sub is one */
			if (parse_u64(optarg, &v) < 0 || v > 65534)
				bad_value("max-subs (0 to 65534)", optarg);
			cfg->max_subs = (unsigned)v;
			break;
		case OPT_MAX_PENDING:
			if (parse_size(optarg, &v) < 0 || !v || v > UINT32_MAX)
				bad_value("max-pending-bytes", optarg);
			cfg->max_pending = (uint32_t)v;
			break;
		case OPT_ARENA:
			if (parse_size(optarg, &v) < 0 || v < (1u << 20) ||
			    v > ((uint64_t)1 << 40))
				bad_value("arena-size (1M and up)", optarg);
			cfg->arena_size = (size_t)v;
			break;
		case OPT_ZC:
			if (parse_size(optarg, &v) < 0 || v > UINT32_MAX)
				bad_value("zc-threshold", optarg);
			cfg->zc_threshold = v ? (uint32_t)v : UINT32_MAX;
			break;
		case OPT_BATCH_WINDOW:
			if (parse_window(optarg, &cfg->batch_window_us) < 0)
				bad_value("batch-window (0 to 1s; us, ms or s)",
					  optarg);
			break;
		case OPT_REDIS:
			if (parse_redis(optarg, cfg) < 0)
				bad_value("redis (redis://[[USER]:PASSWORD@]HOST"
					  "[:PORT][/DB])", optarg);
			cfg->redis_cluster = false;
			one = true;
			break;
		case OPT_REDIS_CLUSTER:
			if (parse_redis_cluster(optarg, cfg) < 0)
				bad_value("redis-cluster ([redis://[[USER]:"
					  "PASSWORD@]]HOST:PORT[,HOST:PORT...], "
					  "up to 16)", optarg);
			cluster = true;
			break;
		case OPT_REDIS_TIMEOUT:
			/* under a tick it could not be watched */
			if (parse_dur(optarg, &cfg->redis_timeout_ms) < 0 ||
			    cfg->redis_timeout_ms < 200)
				bad_value("redis-timeout (200ms at least)",
					  optarg);
			break;
		case OPT_REDIS_MAX_PENDING:
			if (parse_size(optarg, &v) < 0 || v < 4096)
				bad_value("redis-max-pending (4K at least)",
					  optarg);
			cfg->redis_max_pending = v;
			break;
		case OPT_REDIS_MAX_READING:
			if (parse_size(optarg, &v) < 0 || v < 4096)
				bad_value("redis-max-reading (4K at least)",
					  optarg);
			cfg->redis_max_reading = v;
			break;
		case OPT_ORIGINS:
			if (parse_origins(optarg, cfg) < 0)
				bad_value("allowed-origins (SCHEME://HOST[:PORT]"
					  ",... with HOST or *.DOMAIN)", optarg);
			break;
		case OPT_HOSTS:
			if (parse_hosts(optarg, cfg) < 0)
				bad_value("allowed-hosts (NAME,... with NAME or "
					  "*.DOMAIN, no port)", optarg);
			break;
		case OPT_NAMESPACE:
			if (!cfg->ns)
				cfg->ns = calloc(ENG_NS_MAX, sizeof(*cfg->ns));
			if (!cfg->ns || cfg->nns == ENG_NS_MAX ||
			    eng_ns_parse(optarg, &cfg->ns[cfg->nns]) < 0)
				bad_value("namespace (NAME:history=N,ttl=DUR, "
					  "N up to 100000, at most 16 of them)",
					  optarg);
			for (unsigned i = 0; i < cfg->nns; i++)
				if (cfg->ns[i].len == cfg->ns[cfg->nns].len &&
				    !memcmp(cfg->ns[i].name,
					    cfg->ns[cfg->nns].name,
					    cfg->ns[i].len))
					bad_value("namespace (given twice)",
						  optarg);
			cfg->nns++;
			break;
		case OPT_INBOX_MAX:
			if (parse_u64(optarg, &v) < 0 || !v ||
			    v > ENG_INBOX_MAX)
				bad_value("inbox-max (1 to 100000)", optarg);
			cfg->inbox_max = (unsigned)v;
			break;
		case OPT_INBOX_TTL:
			if (parse_dur(optarg, &cfg->inbox_ttl_ms) < 0 ||
			    cfg->inbox_ttl_ms < 1000)
				bad_value("inbox-ttl (1s at least)", optarg);
			break;
		case OPT_HISTORY_MEMORY:
		case OPT_INBOX_MEMORY:
			if (parse_size(optarg, &v) < 0 || v < 65536)
				bad_value(opt == OPT_INBOX_MEMORY ?
					  "inbox-memory (64K at least)" :
					  "history-memory (64K at least)",
					  optarg);
			*(opt == OPT_INBOX_MEMORY ? &cfg->inbox_memory :
			  &cfg->history_memory) = v;
			break;
		case OPT_MAX_PARTIAL:
			if (parse_size(optarg, &v) < 0 || v < 65536)
				bad_value("max-partial-memory (64K at least)",
					  optarg);
			cfg->max_partial = v;
			break;
		case OPT_REDIS_FILE:
			if (redis_url_file(optarg, cfg) < 0)
				exit(2);
			cfg->redis_cluster = false;
			one = true;
			break;
		case OPT_REDIS_PREFIX:
			if (strlen(optarg) >= sizeof(cfg->redis_prefix) ||
			    !eng_chan_name_ok(optarg, strlen(optarg)))
				bad_value("redis-prefix (up to 63 channel-name "
					  "characters)", optarg);
			strcpy(cfg->redis_prefix, optarg);
			break;
		case OPT_AUTH:
			if (!strcmp(optarg, "off"))
				cfg->auth = ENG_AUTH_OFF;
			else if (!strcmp(optarg, "optional"))
				cfg->auth = ENG_AUTH_OPTIONAL;
			else if (!strcmp(optarg, "required"))
				cfg->auth = ENG_AUTH_REQUIRED;
			else
				bad_value("auth (off, optional, required)",
					  optarg);
			break;
		case OPT_JWT_SECRET:
			if (!*optarg || strlen(optarg) >= sizeof(cfg->jwt_secret))
				bad_value("jwt-secret (1 to 511 bytes)", "...");
			strcpy(cfg->jwt_secret, optarg);
			break;
		case OPT_JWT_PUBKEY:
			if (!*optarg ||
			    strlen(optarg) >= sizeof(cfg->jwt_pubkey_file))
				bad_value("jwt-public-key", optarg);
			strcpy(cfg->jwt_pubkey_file, optarg);
			break;
		case OPT_IO:
			if (!strcmp(optarg, "uring"))
				cfg->epoll = false;
			else if (!strcmp(optarg, "epoll"))
				cfg->epoll = true;
			else
				bad_value("io (uring, epoll)", optarg);
			break;
		case OPT_JWT_LEEWAY:
			if (parse_u64(optarg, &v) < 0 || v > 3600)
				bad_value("jwt-leeway (0 to 3600 seconds)", optarg);
			cfg->jwt_leeway = (unsigned)v;
			break;
		case OPT_MAX_PER_USER:
			if (parse_u64(optarg, &v) < 0 || v > UINT32_MAX)
				bad_value("max-conns-per-user", optarg);
			cfg->max_conns_per_user = (unsigned)v;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		case ':':
			fprintf(stderr, "ringcast: option %s needs a value "
				"(see --help)\n", name);
			exit(2);
		default:
			if (tls_opt(opt, optarg, cfg))
				break;
			fprintf(stderr, "ringcast: unknown option %s "
				"(see --help)\n", name);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ringcast: unexpected argument '%s' "
			"(see --help)\n", argv[optind]);
		exit(2);
	}
	if (one && cluster) {
		fprintf(stderr, "ringcast: --redis-cluster and --redis (or "
			"--redis-url-file) exclude each other: one Redis, or "
			"one cluster\n");
		exit(2);
	}
	/* the keys' hash tags are ours (rreq.h): the prefix must hold none */
	if (cfg->redis_cluster && strpbrk(cfg->redis_prefix, "{}")) {
		fprintf(stderr, "ringcast: with --redis-cluster, --redis-prefix "
			"may not hold { or }\n");
		exit(2);
	}
	if (demo)
		demo_defaults(cfg, listen_set);
}

/*
 * Opens one listener on the configured address. With @port 0 the kernel
 * picks one; the caller passes that port to the next shards.
 */
static int open_listener(const struct eng_cfg *cfg, uint16_t port,
			 uint16_t *bound)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1, ret;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (inet_pton(AF_INET, cfg->listen_host, &sin.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Accepted sockets inherit TCP_NODELAY: pushes leave at once. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 65535) < 0 ||	/* clamped to net.core.somaxconn */
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*bound = ntohs(sin.sin_port);
	return fd;
}

/* The fixed-file table a ring may have: RLIMIT_NOFILE, raised to hard. */
static unsigned files_per_ring(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	/*
	 * The kernel also caps one fixed-file table at 1 << 20 entries
	 * (IORING_MAX_FIXED_FILES, io_uring/rsrc.c): past that, registering
	 * the table fails with EMFILE however high nofile is.
	 */
	if (rl.rlim_cur > RING_MAX_FILES)
		return RING_MAX_FILES;
	return (unsigned)rl.rlim_cur;
}

/* The n-th CPU this process may run on, for round-robin pinning. */
static int nth_cpu(unsigned n)
{
	cpu_set_t set;
	int count, i, seen = 0;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -1;
	count = CPU_COUNT(&set);
	if (count <= 0)
		return -1;
	n %= (unsigned)count;
	for (i = 0; i < CPU_SETSIZE; i++) {
		if (!CPU_ISSET(i, &set))
			continue;
		if ((unsigned)seen++ == n)
			return i;
	}
	return -1;
}

static unsigned online_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	return 1;
}

/* Tells every shard to stop, through a ring of main's own. */
static int post_stop(struct eng *e, struct ring *r)
{
	unsigned i;
	int ret;

	for (i = 0; i < e->cfg.shards; i++)
		if (e->shards[i].up)
			eng_mail_stop(r, &e->shards[i].ring);
	ret = ring_submit(r);
	return ret < 0 ? ret : 0;
}

int main(int argc, char **argv)
{
	char broker[1200] = "embedded broker";
	bool ctl_ok = false, local_only = false;
	struct ring ctl;
	struct eng e;
	sigset_t sigs;
	unsigned i, started = 0, nready = 0, nthreads, per_ring;
	uint16_t port;
	int sig = 0, ret, status = 0;

	memset(&e, 0, sizeof(e));
	e.cfg.port = 8080;	/* the address follows the key: see below */
	e.cfg.shards = 0;
	e.cfg.max_message = 1u << 20;
	e.cfg.ping_ms = 30000;
	e.cfg.idle_ms = 90000;
	e.cfg.handshake_ms = 10000;
	e.cfg.http_idle_ms = 60000;
	e.cfg.recv_bufs = 1024;
	e.cfg.recv_buf_size = 8192;
	e.cfg.sq_entries = 4096;
	e.cfg.max_subs = 100;
	e.cfg.max_pending = 4u << 20;
	e.cfg.arena_size = (size_t)64 << 20;
	e.cfg.zc_threshold = UINT32_MAX;
	strcpy(e.cfg.redis_prefix, "ringcast:");
	e.cfg.redis_timeout_ms = 5000;
	e.cfg.redis_max_pending = 16u << 20;
	e.cfg.redis_max_reading = 32u << 20;
	e.cfg.max_partial = (uint64_t)256 << 20;
	e.cfg.history_memory = (uint64_t)64 << 20;
	e.cfg.inbox_max = 1000;
	e.cfg.inbox_ttl_ms = 24 * 3600 * 1000;
	e.cfg.inbox_memory = (uint64_t)256 << 20;
	e.cfg.jwt_leeway = ENG_JWT_LEEWAY;
	e.cfg.tls_max_handshakes = 1024;
	e.cfg.tls_min = 13;
	/* A secret that does not fit must stop us, never leave us open. */
	if (env_secret("RINGCAST_API_KEY", e.cfg.api_key,
		       sizeof(e.cfg.api_key)) < 0 ||
	    env_secret("RINGCAST_JWT_SECRET", e.cfg.jwt_secret,
		       sizeof(e.cfg.jwt_secret)) < 0)
		return 2;
	/* --redis and --redis-url-file, parsed after, take precedence. */
	if (getenv("RINGCAST_REDIS_URL") &&
	    redis_url_from("RINGCAST_REDIS_URL", getenv("RINGCAST_REDIS_URL"),
			   &e.cfg) < 0)
		return 2;
	if (getenv("RINGCAST_REDIS_CLUSTER") &&
	    parse_redis_cluster(getenv("RINGCAST_REDIS_CLUSTER"), &e.cfg) < 0) {
		fprintf(stderr, "ringcast: RINGCAST_REDIS_CLUSTER is not a list "
			"of seeds ([redis://[[USER]:PASSWORD@]]HOST:PORT"
			"[,HOST:PORT...])\n");
		return 2;
	}
	parse_args(argc, argv, &e.cfg);
	/* --api-key was checked as parsed; what is left came from here */
	if (e.cfg.api_key[0] && strlen(e.cfg.api_key) < ENG_KEY_MIN) {
		fprintf(stderr, "ringcast: RINGCAST_API_KEY is %zu bytes long; "
			"an API key needs %d at least, or it can be guessed "
			"(`openssl rand -hex 16` makes one)\n",
			strlen(e.cfg.api_key), ENG_KEY_MIN);
		return 2;
	}
	/*
	 * Without --listen: every address with a key (or --insecure-open),
	 * else loopback alone, as Redis does in protected mode, so that a
	 * bare ringcast starts and serves this host at once.
	 */
	if (!e.cfg.listen_host[0]) {
		local_only = !e.cfg.api_key[0] && !e.cfg.insecure_open;
		strcpy(e.cfg.listen_host, local_only ? "127.0.0.1" : "0.0.0.0");
	}
	/*
	 * Open by default is how push servers get abused: with no key,
	 * anyone who reaches the port broadcasts, pushes to and kicks any
	 * user. Only loopback may go without one, unless asked.
	 */
	if (!e.cfg.api_key[0] && !e.cfg.insecure_open &&
	    !is_loopback(e.cfg.listen_host)) {
		fprintf(stderr, "ringcast: refusing to listen on %s without an "
			"API key: anyone who reaches the port could publish, "
			"push to any user and kick them. Set --api-key (or "
			"RINGCAST_API_KEY), listen on 127.0.0.1, or pass "
			"--insecure-open (see --help)\n", e.cfg.listen_host);
		return 2;
	}
#ifdef RC_FAULT_INJECT
	eng_mail_fault_init();
#endif
	if (e.cfg.auth != ENG_AUTH_OFF && !e.cfg.jwt_secret[0] &&
	    !e.cfg.jwt_pubkey_file[0]) {
		fprintf(stderr, "ringcast: --auth %s needs --jwt-secret or "
			"--jwt-public-key (see --help)\n",
			e.cfg.auth == ENG_AUTH_REQUIRED ? "required" : "optional");
		return 2;
	}
	{
		const char *why = NULL;

		if (eng_auth_init(&e.cfg, &why) < 0) {
			fprintf(stderr, "ringcast: --jwt-public-key %s: %s\n",
				e.cfg.jwt_pubkey_file, why);
			return 2;
		}
	}
	if (e.cfg.tls_ncert != e.cfg.tls_nkey) {
		fprintf(stderr, "ringcast: --tls-cert and --tls-key go "
			"together, in pairs (see --help)\n");
		return 2;
	}
	{
		char why[512];

		if (eng_tls_init(&e, why, sizeof(why)) < 0) {
			fprintf(stderr, "ringcast: %s\n", why);
			return 2;
		}
	}
	if (!e.cfg.shards)
		e.cfg.shards = online_cpus();
	/*
	 * One thread per shard up to one per CPU: more shards than CPUs (a
	 * low fd limit) share threads, which measured faster (bench/README.md,
	 * "Fewer threads than rings"). The epoll backend keeps one each.
	 */
	if (!e.cfg.threads && !e.cfg.epoll && e.cfg.shards > online_cpus())
		e.cfg.threads = online_cpus();
	if (e.cfg.threads >= e.cfg.shards)
		e.cfg.threads = 0;	/* one each */
	if (e.cfg.threads && e.cfg.epoll) {
		fprintf(stderr, "ringcast: --threads needs --io uring: an "
			"epoll shard waits in its own epoll_wait\n");
		return 2;
	}

	per_ring = files_per_ring();
	if (!e.cfg.max_conns) {
		e.cfg.max_conns = (uint64_t)per_ring * e.cfg.shards;
	} else if (e.cfg.max_conns > (uint64_t)per_ring * e.cfg.shards) {
		fprintf(stderr, "ringcast: warning: --max-conns %llu exceeds "
			"what %u shards hold here (%u each, RLIMIT_NOFILE): "
			"raise the nofile limit (sysctl.d/, tune/) or use "
			"--shards %llu\n",
			(unsigned long long)e.cfg.max_conns, e.cfg.shards,
			per_ring,
			(unsigned long long)((e.cfg.max_conns + per_ring - 1) /
					     per_ring));
	}

	/* Shards must not take the signals: main waits for them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	eng_chan_global_init();
	eng_hist_global_init();
	ret = eng_arena_init(e.cfg.arena_size);
	if (ret < 0) {
		fprintf(stderr, "ringcast: frame arena of %zu bytes: %s\n",
			e.cfg.arena_size, strerror(-ret));
		return 1;
	}
	/*
	 * The ring that carries the stop is made now: at the end, with the
	 * fd table full of clients (epoll), there may be no fd left for it.
	 */
	ret = ring_init(&ctl, 64, 0, 0);
	if (ret < 0) {
		fprintf(stderr, "ringcast: control ring: %s\n", strerror(-ret));
		return 1;
	}
	ctl_ok = true;
	e.shards = calloc(e.cfg.shards, sizeof(*e.shards));
	e.broker = e.cfg.redis_host[0] ? &eng_broker_redis
				       : &eng_broker_embedded;
	if (e.shards && e.cfg.redis_host[0]) {
		ret = eng_bridge_init(&e);
		if (ret < 0) {
			fprintf(stderr, "ringcast: redis bridge: %s\n",
				strerror(-ret));
			return 1;
		}
	}
	if (!e.shards) {
		fprintf(stderr, "ringcast: out of memory\n");
		return 1;
	}
	pthread_mutex_init(&e.lock, NULL);
	pthread_cond_init(&e.cond, NULL);

	port = e.cfg.port;
	for (i = 0; i < e.cfg.shards; i++) {
		struct eng_shard *s = &e.shards[i];

		s->eng = &e;
		s->id = i;
		/* a thread of several shards pins them all to its CPU */
		s->cpu = nth_cpu(e.cfg.threads ? i % e.cfg.threads : i);
		s->nr_conns = per_ring;
		s->listen_fd = open_listener(&e.cfg, port, &port);
		if (s->listen_fd < 0) {
			fprintf(stderr, "ringcast: listen %s:%u: %s\n",
				e.cfg.listen_host, port,
				strerror(-s->listen_fd));
			return 1;
		}
	}
	e.cfg.port = port;

	/*
	 * One thread per shard, or with --threads T, thread i runs shards
	 * i, i + T, ... (its pthread_t kept in shard i); each shard reports
	 * ready once.
	 */
	nthreads = e.cfg.threads ? e.cfg.threads : e.cfg.shards;
	for (i = 0; i < nthreads; i++) {
		ret = pthread_create(&e.shards[i].thread, NULL,
				     e.cfg.threads ? eng_worker_main :
				     eng_shard_main, &e.shards[i]);
		if (ret) {
			fprintf(stderr, "ringcast: pthread_create: %s\n",
				strerror(ret));
			e.failed = -ret;
			break;
		}
		started++;
		nready += e.cfg.threads ?
			  (e.cfg.shards - i + e.cfg.threads - 1) / e.cfg.threads : 1;
	}
	pthread_mutex_lock(&e.lock);
	while (e.ready < nready)
		pthread_cond_wait(&e.cond, &e.lock);
	ret = e.failed;
	pthread_mutex_unlock(&e.lock);
	if (ret == 0 && e.bridge) {
		ret = eng_bridge_run(&e);
		if (ret < 0)
			fprintf(stderr, "ringcast: redis bridge: %s\n",
				strerror(-ret));
	}
	if (ret < 0) {
		/* Shards that did start are stopped the same way as at exit. */
		status = 1;
		goto stop;
	}
	if (e.bridge && e.cfg.redis_cluster)
		snprintf(broker, sizeof(broker), "redis cluster, seeds %s",
			 e.cfg.redis_seeds);
	else if (e.bridge)
		snprintf(broker, sizeof(broker), "redis %s:%u", e.cfg.redis_host,
			 e.cfg.redis_port);
	if (e.cfg.epoll)
		strcat(broker, "; epoll backend");
	if (e.tls_ctx)
		strcat(broker, e.cfg.tls_min == 12 ? "; TLS 1.2 and 1.3" :
						     "; TLS 1.3");
	if (e.cfg.threads)
		snprintf(broker + strlen(broker), sizeof(broker) - strlen(broker),
			 "; on %u threads", e.cfg.threads);
	fprintf(stderr, "ringcast: listening on %s:%u (%u shards, %u "
		"connections per shard, max %llu; %s)\n", e.cfg.listen_host,
		e.cfg.port, e.cfg.shards, per_ring,
		(unsigned long long)e.cfg.max_conns, broker);
	if (local_only)
		fprintf(stderr, "ringcast: no API key, so only this host "
			"can connect; to serve others, give one (--api-key "
			"KEY or RINGCAST_API_KEY), with which the default is "
			"0.0.0.0:%u, or name the address: --listen "
			"0.0.0.0:%u --api-key KEY\n", e.cfg.port, e.cfg.port);

	/* SIGHUP reloads the TLS certificates and waits again */
	while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
		eng_tls_reload(&e);
	if (sig != SIGHUP)
		fprintf(stderr, "ringcast: %s: closing connections\n",
			sig == SIGINT ? "SIGINT" : "SIGTERM");
stop:
	ret = ctl_ok ? post_stop(&e, &ctl) : -EBADF;
	if (ret < 0) {
		fprintf(stderr, "ringcast: cannot reach shards: %s\n",
			strerror(-ret));
		return 1;
	}
	for (i = 0; i < started; i++)
		pthread_join(e.shards[i].thread, NULL);
	/* The bridge last: shards post to it until they have stopped. */
	eng_bridge_stop(&e, &ctl);
	ring_exit(&ctl);
	for (i = 0; i < e.cfg.shards; i++) {
		if (!e.shards[i].up)
			continue;
		eng_mail_discard(&e.shards[i].ring);
		ring_exit(&e.shards[i].ring);
	}
	eng_bridge_free(&e);
	free(e.shards);
	free(e.cfg.ns);
	eng_arena_exit();
	eng_auth_exit();
	eng_tls_exit(&e);
	if (!status)
		fprintf(stderr, "ringcast: stopped\n");
	return status;
}
