/* SPDX-License-Identifier: MIT */
/*
 * opts.c: ringcast's options. The table below has one row per option:
 * its name, its argument, the parser that takes the argument (a generic
 * one for a number, size, duration, string or word into a field of
 * struct eng_cfg, or the option's own), the bounds an error message
 * names, and the option's --help text. getopt_long's table and --help
 * are both made from it, so --help lists what is parsed. A bad value is
 * said once on stderr, in the words of the row; opts_check.c holds what
 * comes before the command line (defaults, RINGCAST_*) and after it.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "chan.h"
#include "handover.h"
#include "hist.h"
#include "inbox.h"
#include "opts_int.h"
#include "pusher_eng.h"
#include "webhook.h"

/* ---- the table's row and its generic parsers ----------------------------- */

struct state;
struct opt;
typedef int opt_parse_fn(const struct opt *o, const char *arg,
			 struct state *st);

/* A word an option takes, and the value it stands for (--auth, --io). */
struct word {
	const char *word;
	unsigned value;
};

struct opt {
	const char *name;		/* --NAME */
	char letter;			/* -L too, or 0 */
	const char *arg;		/* in --help: "N", "SIZE"; NULL: a flag */
	opt_parse_fn *parse;
	size_t off, size;		/* the eng_cfg field a generic parser sets */
	uint64_t min, max;		/* ... within these bounds */
	const struct word *words;	/* ... one of these (word) */
	const char *why;		/* the bounds, in an error; NULL: none */
	bool secret;			/* an error shows "...", not the value */
	const char *help;		/* --help's text, its lines split by \n */
};

/* What parsing the command line keeps besides @cfg. */
struct state {
	struct eng_cfg *cfg;
	bool listen_set;		/* --listen given: --demo keeps it */
	bool one, cluster;		/* --redis (or its file), --redis-cluster */
	const char *why;		/* set by a parser: the error's own bounds */
	bool said;			/* set by a parser: it said what is wrong */
};

#define FIELD(f) .off = offsetof(struct eng_cfg, f), \
		 .size = sizeof(((struct eng_cfg *)0)->f)

/* Stores @v into @o's field, whatever its width. */
static void store(const struct opt *o, struct eng_cfg *cfg, uint64_t v)
{
	char *p = (char *)cfg + o->off;
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (o->size) {
	case 1:
		memcpy(p, &u8, 1);
		break;
	case 2:
		memcpy(p, &u16, 2);
		break;
	case 4:
		memcpy(p, &u32, 4);
		break;
	default:
		memcpy(p, &v, 8);
	}
}

static int bounded(const struct opt *o, struct state *st, uint64_t v)
{
	if (v < o->min || v > o->max)
		return -EINVAL;
	store(o, st->cfg, v);
	return 0;
}

static int num(const struct opt *o, const char *arg, struct state *st)
{
	uint64_t v;

	return opts__u64(arg, &v) < 0 ? -EINVAL : bounded(o, st, v);
}

static int size(const struct opt *o, const char *arg, struct state *st)
{
	uint64_t v;

	return opts__size(arg, &v) < 0 ? -EINVAL : bounded(o, st, v);
}

static int dur(const struct opt *o, const char *arg, struct state *st)
{
	unsigned ms;

	return opts__dur(arg, &ms) < 0 ? -EINVAL : bounded(o, st, ms);
}

static int flag(const struct opt *o, const char *arg, struct state *st)
{
	(void)arg;
	store(o, st->cfg, 1);
	return 0;
}

/* A string field of @o->min bytes or more that fits with its NUL. */
static int str(const struct opt *o, const char *arg, struct state *st)
{
	size_t n = strlen(arg);

	if (n < o->min || n >= o->size)
		return -EINVAL;
	memcpy((char *)st->cfg + o->off, arg, n + 1);
	return 0;
}

static int word(const struct opt *o, const char *arg, struct state *st)
{
	for (const struct word *w = o->words; w->word; w++)
		if (!strcmp(arg, w->word))
			return bounded(o, st, w->value);
	return -EINVAL;
}

/* ---- options of their own ------------------------------------------------ */

static int listen_opt(const struct opt *o, const char *arg,
		      struct state *st)
{
	(void)o;
	if (opts__listen(arg, st->cfg) < 0)
		return -EINVAL;
	st->listen_set = true;
	return 0;
}

static int window(const struct opt *o, const char *arg, struct state *st)
{
	(void)o;
	return opts__window(arg, &st->cfg->batch_window_us) < 0 ? -EINVAL : 0;
}

/* --recv-buffers: a power of two (the ring's mask) within the bounds. */
static int pow2(const struct opt *o, const char *arg, struct state *st)
{
	uint64_t v;

	if (opts__u64(arg, &v) < 0 || (v & (v - 1)))
		return -EINVAL;
	return bounded(o, st, v);
}

/* --http-idle-timeout: whole seconds, as Keep-Alive: timeout=N says. */
static int http_idle(const struct opt *o, const char *arg, struct state *st)
{
	(void)o;
	if (opts__dur(arg, &st->cfg->http_idle_ms) < 0 ||
	    (st->cfg->http_idle_ms && st->cfg->http_idle_ms < 1000))
		return -EINVAL;
	return 0;
}

/* --zc-threshold: 0 means never, kept as a size no frame reaches. */
static int zc(const struct opt *o, const char *arg, struct state *st)
{
	uint64_t v;

	(void)o;
	if (opts__size(arg, &v) < 0 || v > UINT32_MAX)
		return -EINVAL;
	st->cfg->zc_threshold = v ? (uint32_t)v : UINT32_MAX;
	return 0;
}

static int origins(const struct opt *o, const char *arg, struct state *st)
{
	(void)o;
	return opts__origins(arg, st->cfg);
}

static int hosts(const struct opt *o, const char *arg, struct state *st)
{
	(void)o;
	return opts__hosts(arg, st->cfg);
}

/* --namespace: one more entry, its name not given before. */
static int namespace(const struct opt *o, const char *arg, struct state *st)
{
	struct eng_cfg *cfg = st->cfg;
	struct eng_ns *ns;

	(void)o;
	if (!cfg->ns)
		cfg->ns = calloc(ENG_NS_MAX, sizeof(*cfg->ns));
	if (!cfg->ns || cfg->nns == ENG_NS_MAX ||
	    eng_ns_parse(arg, &cfg->ns[cfg->nns]) < 0)
		return -EINVAL;
	ns = &cfg->ns[cfg->nns];
	for (unsigned i = 0; i < cfg->nns; i++)
		if (cfg->ns[i].len == ns->len &&
		    !memcmp(cfg->ns[i].name, ns->name, ns->len)) {
			st->why = "given twice";
			return -EINVAL;
		}
	cfg->nns++;
	return 0;
}

/* --tls-cert, --tls-key: argv's string kept, up to 16 of each. */
static int tls_file(const struct opt *o, const char *arg, struct state *st)
{
	struct eng_cfg *cfg = st->cfg;
	bool cert = !strcmp(o->name, "tls-cert");
	unsigned *n = cert ? &cfg->tls_ncert : &cfg->tls_nkey;

	if (!*arg || *n == ENG_TLS_MAX_CERTS)
		return -EINVAL;
	(cert ? cfg->tls_cert : cfg->tls_key)[(*n)++] = arg;
	return 0;
}

static int redis_prefix(const struct opt *o, const char *arg,
			struct state *st)
{
	(void)o;
	if (strlen(arg) >= sizeof(st->cfg->redis_prefix) ||
	    !eng_chan_name_ok(arg, strlen(arg)))
		return -EINVAL;
	strcpy(st->cfg->redis_prefix, arg);
	return 0;
}

static int redis(const struct opt *o, const char *arg, struct state *st)
{
	(void)o;
	if (opts__redis_url(arg, st->cfg) < 0)
		return -EINVAL;
	st->cfg->redis_cluster = false;
	st->one = true;
	return 0;
}

/* --redis-url-file: the URL on the first line of @path. */
static int redis_file(const struct opt *o, const char *path,
		      struct state *st)
{
	char line[1024], what[1100];
	FILE *f = fopen(path, "r");

	(void)o;
	st->said = true;
	if (!f) {
		fprintf(stderr, "ringcast: --redis-url-file %s: %s\n", path,
			strerror(errno));
		return -EINVAL;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	snprintf(what, sizeof(what), "the first line of %s", path);
	if (opts__redis_url_from(what, line, st->cfg) < 0)
		return -EINVAL;
	st->cfg->redis_cluster = false;
	st->one = true;
	return 0;
}

static int redis_cluster(const struct opt *o, const char *arg,
			 struct state *st)
{
	(void)o;
	if (opts__redis_seeds(arg, st->cfg) < 0)
		return -EINVAL;
	st->cluster = true;
	return 0;
}

/* --pusher-app, --pusher-apps-file and the per-app options (pusher_eng.h) */
static int pusher(const struct opt *o, const char *arg, struct state *st)
{
	if (!strcmp(o->name, "pusher-app"))
		return eng_pusher_opt_app(st->cfg, arg, &st->why);
	if (!strcmp(o->name, "pusher-apps-file"))
		return eng_pusher_opt_file(st->cfg, arg, &st->why);
	if (!strcmp(o->name, "pusher-max-data"))
		return eng_pusher_opt_data(st->cfg, arg, &st->why);
	if (!strcmp(o->name, "pusher-cache-ttl"))
		return eng_pusher_opt_ttl(st->cfg, arg, &st->why);
	if (!strcmp(o->name, "pusher-activity-timeout") ||
	    !strcmp(o->name, "pusher-pong-timeout"))
		return eng_pusher_opt_dur(st->cfg, arg,
					  !strcmp(o->name, "pusher-pong-timeout"),
					  &st->why);
	return eng_pusher_opt_events(st->cfg, arg,
				     !strcmp(o->name, "pusher-client-events") ?
				     ENG_PUSHER_CLIENT_EVENTS :
				     !strcmp(o->name, "pusher-client-event-rate") ?
				     ENG_PUSHER_RATE :
				     !strcmp(o->name, "pusher-watchlist") ?
				     ENG_PUSHER_WATCHLIST : ENG_PUSHER_SUB_COUNT,
				     &st->why);
}

/* --webhook, --pusher-webhook and their limits (webhook.h) */
static int webhook(const struct opt *o, const char *arg, struct state *st)
{
	return eng_webhook_opt(st->cfg, o->name, arg, &st->why);
}

static int help(const struct opt *o, const char *arg, struct state *st);

/* ---- the table: --help's order --------------------------------------- */

static const struct word auth_words[] = {
	{ "off", ENG_AUTH_OFF }, { "optional", ENG_AUTH_OPTIONAL },
	{ "required", ENG_AUTH_REQUIRED }, { NULL, 0 },
};
static const struct word io_words[] = {
	{ "uring", false }, { "epoll", true }, { NULL, 0 },
};
static const struct word onoff_words[] = {
	{ "off", false }, { "on", true }, { NULL, 0 },
};
static const struct word takeover_words[] = {
	{ "drain", ENG_HO_MODE_DRAIN }, { "live", ENG_HO_MODE_LIVE },
	{ NULL, 0 },
};
static const struct word tls_words[] = {
	{ "1.2", 12 }, { "1.3", 13 }, { NULL, 0 },
};

static const struct opt opts[] = {
	{ .name = "listen", .arg = "ADDR:PORT", .parse = listen_opt,
	  .help = "address to listen on (default 127.0.0.1:8080\n"
		  "without an API key, 0.0.0.0:8080 with one or\n"
		  "with --insecure-open); port 0 picks a free port\n"
		  "shared by all shards" },
	{ .name = "shards", .arg = "N", .parse = num, FIELD(shards),
	  .min = 1, .max = 1024,
	  .help = "shard threads (default: online CPUs); may exceed\n"
		  "the CPU count, threads are then pinned round-robin" },
	{ .name = "threads", .arg = "T", .parse = num, FIELD(threads),
	  .min = 1, .max = 1024, .why = "1 to 1024",
	  .help = "run the shards on T threads (io_uring only;\n"
		  "default: one per shard, at most one per CPU), so\n"
		  "that a host whose fd limit needs 50 shards for a\n"
		  "million sockets still runs one thread per core" },
	{ .name = "max-conns", .arg = "N", .parse = num, FIELD(max_conns),
	  .min = 1, .max = UINT64_MAX,
	  .help = "connections for the whole process; past it a new\n"
		  "client gets HTTP 503 (default: what the shards hold)" },
	/* assembly buffers are sized in 32 bits */
	{ .name = "max-message", .arg = "SIZE", .parse = size,
	  FIELD(max_message), .min = 1, .max = UINT32_MAX - 4096,
	  .help = "largest message a client may send, after\n"
		  "reassembly (default 1M); larger gets close 1009" },
	{ .name = "allowed-origins", .arg = "LIST", .parse = origins,
	  .why = "SCHEME://HOST[:PORT],... with HOST or *.DOMAIN",
	  .help = "browsers' pages that may connect: a WebSocket\n"
		  "upgrade whose Origin is not in LIST gets 403\n"
		  "(comma-separated SCHEME://HOST[:PORT], HOST may be\n"
		  "*.DOMAIN; default: any origin). Clients that send\n"
		  "no Origin (apps, servers) are not affected.\n"
		  "Without an API key, the pages besides the\n"
		  "engine's own that may call the HTTP API\n"
		  "(default: none; others get 403)" },
	{ .name = "allowed-hosts", .arg = "LIST", .parse = hosts,
	  .why = "NAME,... with NAME or *.DOMAIN, no port",
	  .help = "without an API key, the names the HTTP API\n"
		  "answers to in Host besides addresses, localhost\n"
		  "and *.localhost; others get 403, which stops DNS\n"
		  "rebinding (comma-separated NAME or *.DOMAIN)" },
	{ .name = "namespace", .arg = "NAME:history=N,ttl=DUR",
	  .parse = namespace,
	  .why = "NAME:history=N,ttl=DUR, N up to 100000, at most 16 of them",
	  .help = "channels NAME:... keep their last N messages for\n"
		  "DUR, with offsets a client may recover from; an\n"
		  "empty NAME is for names without ':'. Repeatable\n"
		  "(16 at most); other channels keep nothing. With\n"
		  "--redis the history is kept in Redis: give every\n"
		  "node the same --namespace options" },
	{ .name = "inbox-max", .arg = "N", .parse = num, FIELD(inbox_max),
	  .min = 1, .max = ENG_INBOX_MAX, .why = "1 to 100000",
	  .help = "messages kept for one user until acked (pushes\n"
		  "with persist=1; default 1000): past it the oldest\n"
		  "goes, and the user sees it counted as evicted" },
	{ .name = "inbox-ttl", .arg = "DUR", .parse = dur,
	  FIELD(inbox_ttl_ms), .min = 1000, .max = UINT_MAX,
	  .why = "1s at least",
	  .help = "... each for this long (default 24h)" },
	{ .name = "inbox-memory", .arg = "SIZE", .parse = size,
	  FIELD(inbox_memory), .min = 65536, .max = UINT64_MAX,
	  .why = "64K at least",
	  .help = "bytes of inboxes for all users (default 256M);\n"
		  "past it the users least recently pushed to lose\n"
		  "their oldest, counted as evicted (embedded\n"
		  "broker; with --redis, Redis holds them)" },
	{ .name = "history-memory", .arg = "SIZE", .parse = size,
	  FIELD(history_memory), .min = 65536, .max = UINT64_MAX,
	  .why = "64K at least",
	  .help = "bytes of history for all channels (default 64M);\n"
		  "past it the least recently used lose their oldest\n"
		  "(embedded broker; with --redis, Redis holds it)" },
	{ .name = "max-partial-memory", .arg = "SIZE", .parse = size,
	  FIELD(max_partial), .min = 65536, .max = UINT64_MAX,
	  .why = "64K at least",
	  .help = "bytes of messages not yet complete, held for all\n"
		  "clients (each shard takes an equal share); past it\n"
		  "the client holding the most is closed with 1009\n"
		  "(default 256M)" },
	{ .name = "echo", .parse = flag, FIELD(echo),
	  .help = "serve ws://HOST:PORT/echo: every message comes\n"
		  "back unchanged (the RFC 6455 conformance endpoint)" },
	{ .name = "demo", .parse = flag, FIELD(demo),
	  .help = "serve the chat demo at /demo: clients may publish\n"
		  "to demo:ROOM channels (every channel with\n"
		  "--client-publish too), which keep history, and,\n"
		  "without --listen, listens on 127.0.0.1:8080 only" },
	/* a short key is guessed, however slowly we answer */
	{ .name = "api-key", .arg = "KEY", .parse = str, FIELD(api_key),
	  .min = ENG_KEY_MIN, .secret = true,
	  .why = "16 to 255 bytes; `openssl rand -hex 16` makes one",
	  .help = "publishing, /users, /online, /stats and /metrics\n"
		  "need Authorization: Bearer KEY (default: the\n"
		  "RINGCAST_API_KEY variable, else none); 16 bytes\n"
		  "at least. A /ws client that sends 3 wrong keys\n"
		  "(sys) is closed with 4029. Without a key\n"
		  "ringcast listens on loopback (127.0.0.0/8)\n"
		  "only, unless --insecure-open" },
	{ .name = "insecure-open", .parse = flag, FIELD(insecure_open),
	  .help = "listen on any address without an API key: anyone\n"
		  "who reaches the port may publish, push to and\n"
		  "kick any user (for a network you fully control)" },
	{ .name = "client-publish", .parse = flag, FIELD(client_publish),
	  .help = "clients may publish with the publish command on /ws" },
	/* eng_conn.nsubs is 16 bits; a user's own subscription is one */
	{ .name = "max-subs", .arg = "N", .parse = num, FIELD(max_subs),
	  .min = 0, .max = 65534, .why = "0 to 65534",
	  .help = "subscriptions per connection (default 100)" },
	{ .name = "max-pending-bytes", .arg = "SIZE", .parse = size,
	  FIELD(max_pending), .min = 1, .max = UINT32_MAX,
	  .help = "queued unsent bytes per connection before it is\n"
		  "closed with 1008 as a slow consumer (default 4M)" },
	{ .name = "arena-size", .arg = "SIZE", .parse = size,
	  FIELD(arena_size), .min = 1u << 20, .max = (uint64_t)1 << 40,
	  .why = "1M and up",
	  .help = "shared frame arena for published messages\n"
		  "(default 64M; frames beyond it use the heap)" },
	{ .name = "deflate", .arg = "off|on", .parse = word, FIELD(deflate),
	  .max = 1, .words = onoff_words, .why = "off, on",
	  .help = "accept permessage-deflate when a client offers it\n"
		  "(default off): each message is compressed once for\n"
		  "all its receivers, no context kept, no zlib state\n"
		  "per connection (docs/PROTOCOL.md)" },
	{ .name = "deflate-min", .arg = "SIZE", .parse = size,
	  FIELD(deflate_min), .min = 2, .max = UINT32_MAX,
	  .help = "smaller messages go plain (default 128)" },
	{ .name = "deflate-level", .arg = "N", .parse = num,
	  FIELD(deflate_level), .min = 1, .max = 9, .why = "1 to 9",
	  .help = "zlib's level, 1 fastest to 9 smallest (default 6)" },
	{ .name = "auth", .arg = "MODE", .parse = word, FIELD(auth),
	  .max = ENG_AUTH_REQUIRED, .words = auth_words,
	  .why = "off, optional, required",
	  .help = "off, optional or required: a JWT in ?token= or\n"
		  "Authorization: Bearer at the /ws upgrade names\n"
		  "the user (default off)" },
	{ .name = "jwt-secret", .arg = "SECRET", .parse = str,
	  FIELD(jwt_secret), .min = 1, .secret = true,
	  .why = "1 to 511 bytes",
	  .help = "HS256 key (or the RINGCAST_JWT_SECRET variable)" },
	{ .name = "jwt-public-key", .arg = "FILE", .parse = str,
	  FIELD(jwt_pubkey_file), .min = 1,
	  .help = "RS256 or ES256 public key, PEM" },
	{ .name = "jwt-leeway", .arg = "SECONDS", .parse = num,
	  FIELD(jwt_leeway), .min = 0, .max = 3600,
	  .why = "0 to 3600 seconds",
	  .help = "clock skew allowed on exp and nbf (default 10)" },
	{ .name = "max-conns-per-user", .arg = "N", .parse = num,
	  FIELD(max_conns_per_user), .min = 0, .max = UINT32_MAX,
	  .help = "a user's connections on this node; past it a new\n"
		  "one gets HTTP 429 (default 0: no limit)" },
	{ .name = "redis", .arg = "URL", .parse = redis,
	  .why = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]",
	  .help = "share messages with other nodes through Redis:\n"
		  "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]\n"
		  "(default: the RINGCAST_REDIS_URL variable, else\n"
		  "none, the embedded broker alone)" },
	{ .name = "redis-url-file", .arg = "FILE", .parse = redis_file,
	  .help = "the same URL read from FILE's first line, so\n"
		  "that a password stays out of the command line" },
	{ .name = "redis-cluster", .arg = "SEEDS", .parse = redis_cluster,
	  .why = "[redis://[[USER]:PASSWORD@]]HOST:PORT[,HOST:PORT...], "
		 "up to 16",
	  .help = "share messages through a Redis Cluster with\n"
		  "sharded pub/sub (SSUBSCRIBE, SPUBLISH), instead\n"
		  "of --redis: [redis://[[USER]:PASSWORD@]]HOST:PORT\n"
		  "[,HOST:PORT...], up to 16 seeds (default: the\n"
		  "RINGCAST_REDIS_CLUSTER variable)" },
	/* under a tick it could not be watched */
	{ .name = "redis-timeout", .arg = "DUR", .parse = dur,
	  FIELD(redis_timeout_ms), .min = 200, .max = UINT_MAX,
	  .why = "200ms at least",
	  .help = "a Redis that owes an answer and gives none for\n"
		  "DUR is taken for dead: waiting publishes get 504\n"
		  "(may be published), /healthz 503, and the link is\n"
		  "made again; an idle link is PINGed every DUR/2\n"
		  "(default 5s)" },
	{ .name = "redis-max-pending", .arg = "SIZE", .parse = size,
	  FIELD(redis_max_pending), .min = 4096, .max = UINT64_MAX,
	  .why = "4K at least",
	  .help = "bytes of requests queued toward Redis at most;\n"
		  "past it a publish gets 503 at once (default 16M)" },
	{ .name = "redis-max-reading", .arg = "SIZE", .parse = size,
	  FIELD(redis_max_reading), .min = 4096, .max = UINT64_MAX,
	  .why = "4K at least",
	  .help = "bytes of history and inbox reads in flight to\n"
		  "Redis at most, each counted as 1M (or\n"
		  "--max-message if larger); past it a history\n"
		  "read gets 503 at once, a page of a new\n"
		  "connection's inbox waits (default 32M)" },
	{ .name = "redis-prefix", .arg = "PREFIX", .parse = redis_prefix,
	  .why = "up to 63 channel-name characters",
	  .help = "Redis channel names start with it (default\n"
		  "ringcast:): PREFIXch:NAME, PREFIXall" },
	{ .name = "zc-threshold", .arg = "SIZE", .parse = zc,
	  .help = "send frames this large with send_zc from the\n"
		  "registered arena; 0 never (default 0: on\n"
		  "loopback send_zc never won, see\n"
		  "bench/results/send-zc.md)" },
	{ .name = "batch-window", .arg = "DUR", .parse = window,
	  .why = "0 to 1s; us, ms or s",
	  .help = "hold frames queued to a connection up to DUR\n"
		  "(us, ms or s; at most 1s) so that a busy channel\n"
		  "sends several per syscall; 0 (default) sends\n"
		  "what one loop turn queued, with no added delay" },
	{ .name = "ping-interval", .arg = "DUR", .parse = dur, FIELD(ping_ms),
	  .max = UINT_MAX,
	  .help = "ping a connection quiet for DUR (default 30s, 0 off)" },
	{ .name = "idle-timeout", .arg = "DUR", .parse = dur, FIELD(idle_ms),
	  .max = UINT_MAX,
	  .help = "close a connection silent for DUR with 1001\n"
		  "(default 90s, 0 off)" },
	{ .name = "handshake-timeout", .arg = "DUR", .parse = dur,
	  FIELD(handshake_ms), .min = 1, .max = UINT_MAX,
	  .help = "drop a client that sends nothing within DUR of\n"
		  "connecting, or whose request (an upgrade or an\n"
		  "HTTP request) is not whole within DUR of its\n"
		  "first byte (default 10s); with TLS, also the\n"
		  "deadline of the TLS handshake" },
	{ .name = "http-idle-timeout", .arg = "DUR", .parse = http_idle,
	  .why = "0, or 1s at least",
	  .help = "close a kept-alive HTTP connection idle for DUR\n"
		  "between requests; answers say Keep-Alive:\n"
		  "timeout=SECONDS (default 60s; 0: close after\n"
		  "every answer)" },
	{ .name = "pusher-app", .arg = "ID:KEY:SECRET", .parse = pusher,
	  .secret = true,
	  .help = "serve Pusher Channels app ID on /app/KEY and\n"
		  "/apps/ID/... (docs/PUSHER.md). Repeatable; or\n"
		  "the RINGCAST_PUSHER_APPS variable, or a file:\n"
		  "secrets stay off the command line" },
	{ .name = "pusher-apps-file", .arg = "FILE", .parse = pusher,
	  .help = "Pusher apps, ID:KEY:SECRET separated by new\n"
		  "lines, commas or spaces, # comments" },
	{ .name = "pusher-client-events", .arg = "ID", .parse = pusher,
	  .help = "app ID's clients may send client-* events on\n"
		  "private and presence channels (default: off).\n"
		  "Repeatable" },
	{ .name = "pusher-client-event-rate", .arg = "ID=N", .parse = pusher,
	  .help = "app ID's connections may send N client events\n"
		  "a second (1 to 255; default 10, Pusher's); the\n"
		  "rest get pusher:error 4301. Repeatable" },
	{ .name = "pusher-watchlist", .arg = "ID", .parse = pusher,
	  .help = "app ID's signed-in users may watch up to 100\n"
		  "others (user_data.watchlist): watchlist_events\n"
		  "online and offline, on every node with one Redis\n"
		  "(default: off). Repeatable" },
	{ .name = "pusher-max-data", .arg = "BYTES", .parse = pusher,
	  .help = "the most data a Pusher event may carry, from the\n"
		  "HTTP API (413 beyond) or a client (default 10K,\n"
		  "Pusher's 10240 bytes; at most 1M)" },
	{ .name = "pusher-cache-ttl", .arg = "DUR", .parse = pusher,
	  .help = "how long a cache channel keeps its last event\n"
		  "for new subscribers (1s to 24h; default 30m,\n"
		  "Pusher's)" },
	{ .name = "pusher-activity-timeout", .arg = "DUR", .parse = pusher,
	  .help = "the activity_timeout Pusher clients are told,\n"
		  "and how long a quiet one waits for our\n"
		  "pusher:ping (whole seconds; default 120s)" },
	{ .name = "pusher-pong-timeout", .arg = "DUR", .parse = pusher,
	  .help = "close with 4201 a Pusher client that sends\n"
		  "nothing within DUR of our pusher:ping (whole\n"
		  "seconds; default 30s)" },
	{ .name = "pusher-subscription-count", .arg = "ID", .parse = pusher,
	  .help = "app ID's subscribers get pusher_internal:\n"
		  "subscription_count as their channel's count on\n"
		  "this node changes, at most once a second a\n"
		  "channel (default: off). Repeatable" },
	{ .name = "pusher-webhook", .arg = "ID=URL", .parse = webhook,
	  .help = "POST app ID's webhooks (channel_occupied,\n"
		  "channel_vacated, member_added, member_removed,\n"
		  "client_event, subscription_count, cache_miss) to\n"
		  "URL (http:// or https://), signed as Pusher signs\n"
		  "them. Repeatable (16 at most)" },
	{ .name = "pusher-webhook-events", .arg = "ID=LIST", .parse = webhook,
	  .help = "... only these events of app ID (comma-separated;\n"
		  "default: all)" },
	{ .name = "webhook", .arg = "URL", .parse = webhook,
	  .help = "POST the /ws protocol's webhooks (channel_occupied,\n"
		  "channel_vacated, user_online, user_offline) to\n"
		  "URL, signed with --webhook-secret" },
	{ .name = "webhook-secret", .arg = "SECRET", .parse = webhook,
	  .secret = true,
	  .help = "X-Ringcast-Signature is HMAC-SHA256 of the body\n"
		  "with SECRET, in hex (16 bytes at least; or the\n"
		  "RINGCAST_WEBHOOK_SECRET variable)" },
	{ .name = "webhook-events", .arg = "LIST", .parse = webhook,
	  .help = "... only these events (comma-separated; default:\n"
		  "all four)" },
	{ .name = "webhook-batch", .arg = "N", .parse = webhook,
	  .help = "events one webhook request carries at most\n"
		  "(default 100)" },
	{ .name = "webhook-window", .arg = "DUR", .parse = webhook,
	  .help = "an event waits at most DUR for others to go with\n"
		  "it (default 100ms)" },
	{ .name = "webhook-queue", .arg = "N", .parse = webhook,
	  .help = "events waiting per URL at most; past it the\n"
		  "oldest is dropped, counted and logged (default\n"
		  "10000)" },
	{ .name = "webhook-retries", .arg = "N", .parse = webhook,
	  .help = "a request failed or answered other than 2xx is\n"
		  "sent again up to N times (default 5), then its\n"
		  "events are dropped, counted and logged" },
	{ .name = "webhook-backoff", .arg = "DUR", .parse = webhook,
	  .help = "before the first retry (default 1s), doubled\n"
		  "each time up to 60s" },
	{ .name = "webhook-timeout", .arg = "DUR", .parse = webhook,
	  .help = "a webhook request's deadline, connecting\n"
		  "included (default 5s)" },
	{ .name = "tls-cert", .arg = "FILE", .parse = tls_file,
	  .why = "at most 16",
	  .help = "speak TLS on the port (wss://, https://): the\n"
		  "certificate chain, PEM, leaf first" },
	{ .name = "tls-key", .arg = "FILE", .parse = tls_file,
	  .why = "at most 16",
	  .help = "its private key, PEM (both or neither). Both\n"
		  "repeat, in pairs, up to 16: a client's SNI name\n"
		  "picks the certificate whose names (SAN DNS,\n"
		  "wildcards) match it; the first is the default" },
	{ .name = "tls-min", .arg = "1.2|1.3", .parse = word, FIELD(tls_min),
	  .min = 12, .max = 13, .words = tls_words, .why = "1.2 or 1.3",
	  .help = "lowest TLS version (default 1.3); a 1.2\n"
		  "connection keeps OpenSSL's state, about 15 KB\n"
		  "more than a 1.3 one" },
	{ .name = "tls-max-handshakes", .arg = "N", .parse = num,
	  FIELD(tls_max_handshakes), .min = 1, .max = 1000000,
	  .why = "1 to 1000000",
	  .help = "TLS handshakes in progress per shard; past it a\n"
		  "new client is closed at once (default 1024)" },
	{ .name = "io", .arg = "uring|epoll", .parse = word, FIELD(epoll),
	  .max = 1, .words = io_words, .why = "uring, epoll",
	  .help = "I/O backend (default uring); epoll exists to\n"
		  "compare the same engine on the older model" },
	{ .name = "handover-socket", .arg = "PATH", .parse = str,
	  FIELD(handover_path), .min = 1, .why = "1 to 107 bytes",
	  .help = "listen on unix socket PATH (made mode 0600) for\n"
		  "a new process to take over: it gets the\n"
		  "listeners, the histories and inboxes, then this\n"
		  "one drains its clients and exits 0\n"
		  "(docs/HANDOVER.md)" },
	{ .name = "take-over", .arg = "PATH", .parse = str, FIELD(take_over),
	  .min = 1, .why = "1 to 107 bytes",
	  .help = "start by taking over from the process listening\n"
		  "on PATH (its --handover-socket); give the same\n"
		  "options as it had" },
	{ .name = "take-over-mode", .arg = "live|drain", .parse = word,
	  FIELD(take_over_mode), .max = 1, .words = takeover_words,
	  .why = "live, drain",
	  .help = "live: open connections come over too, with no\n"
		  "close (embedded broker or --redis; with\n"
		  "--redis-cluster they are drained); drain: the\n"
		  "old process closes its clients, which reconnect\n"
		  "here (default live)" },
	{ .name = "drain-rate", .arg = "N", .parse = num, FIELD(drain_rate),
	  .min = 1, .max = 10000000, .why = "1 to 10000000",
	  .help = "connections a second the old process closes with\n"
		  "1012 (Pusher: 4200) after a take-over (default\n"
		  "1000)" },
	{ .name = "drain-deadline", .arg = "DUR", .parse = dur,
	  FIELD(drain_deadline_ms), .min = 1000, .max = 86400000,
	  .why = "1s to 24h",
	  .help = "... then it closes what is left at once and\n"
		  "exits (default 60s)" },
	{ .name = "recv-buffers", .arg = "N", .parse = pow2, FIELD(recv_bufs),
	  .min = 1, .max = 32768, .why = "a power of two up to 32768",
	  .help = "provided receive buffers per shard (default 1024)" },
	{ .name = "recv-buffer-size", .arg = "SIZE", .parse = size,
	  FIELD(recv_buf_size), .min = 256, .max = 1u << 20,
	  .why = "256 to 1M",
	  .help = "bytes per receive buffer (default 8K)" },
	{ .name = "help", .letter = 'h', .parse = help,
	  .help = "print this help and exit" },
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))
#define VAL0 256			/* getopt's val of opts[0] */

/* ---- --help (opts_help.c prints it) ------------------------------------ */

static int help(const struct opt *o, const char *arg, struct state *st)
{
	(void)o, (void)arg, (void)st;
	opts__help_head(stdout);
	for (size_t i = 0; i < NOPTS; i++)
		opts__help_row(stdout, opts[i].letter, opts[i].name, opts[i].arg,
			       opts[i].help);
	opts__help_tail(stdout);
	return 1;
}

/* ---- the command line ---------------------------------------------------- */

static int bad_value(const char *label, const char *why, const char *val)
{
	fprintf(stderr, "ringcast: invalid value for --%s%s%s%s: '%s' "
		"(see --help)\n", label, why ? " (" : "", why ? why : "",
		why ? ")" : "", val);
	return -EINVAL;
}

/*
 * --demo: serves /demo, lets clients publish to demo:ROOM channels and
 * keeps their last 100 messages; on loopback unless --listen says where.
 */
static void demo_defaults(struct eng_cfg *cfg, bool listen_set)
{
	static const char ns[] = "demo:history=100,ttl=10m";

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

/* One option from getopt_long (@opt its val) and its argument. */
static int one_opt(int opt, const char *name, const char *arg,
		   struct state *st)
{
	const struct opt *o = NULL;
	int ret;

	if (opt == ':') {
		fprintf(stderr, "ringcast: option %s needs a value "
			"(see --help)\n", name);
		return -EINVAL;
	}
	if (opt >= VAL0 && (size_t)(opt - VAL0) < NOPTS)
		o = &opts[opt - VAL0];
	for (size_t i = 0; !o && i < NOPTS; i++)
		if (opts[i].letter && opts[i].letter == opt)
			o = &opts[i];
	if (!o) {
		fprintf(stderr, "ringcast: unknown option %s (see --help)\n",
			name);
		return -EINVAL;
	}
	st->why = o->why;
	st->said = false;
	ret = o->parse(o, arg, st);
	if (ret < 0 && !st->said)
		return bad_value(o->name, st->why, o->secret ? "..." : arg);
	return ret;
}

int opts__argv(int argc, char **argv, struct eng_cfg *cfg)
{
	struct option longs[NOPTS + 1];
	struct state st = { .cfg = cfg };
	int opt, ret;

	for (size_t i = 0; i < NOPTS; i++)
		longs[i] = (struct option){ opts[i].name,
			opts[i].arg ? required_argument : no_argument, NULL,
			VAL0 + (int)i };
	memset(&longs[NOPTS], 0, sizeof(longs[NOPTS]));
	opterr = 0;
	/* with the leading ":" a missing value is ":", not "?" (unknown) */
	while ((opt = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
		const char *name = optind > 0 && optind <= argc ?
				   argv[optind - 1] : "?";

		ret = one_opt(opt, name, optarg, &st);
		if (ret)
			return ret;
	}
	if (optind < argc) {
		fprintf(stderr, "ringcast: unexpected argument '%s' "
			"(see --help)\n", argv[optind]);
		return -EINVAL;
	}
	if (st.one && st.cluster) {
		fprintf(stderr, "ringcast: --redis-cluster and --redis (or "
			"--redis-url-file) exclude each other: one Redis, or "
			"one cluster\n");
		return -EINVAL;
	}
	/*
	 * The keys' hash tags are ours (rreq.h): the prefix must hold none.
	 * A channel name has no braces today, so --redis-prefix's own check
	 * refuses them first; this one holds if that rule ever widens.
	 */
	if (cfg->redis_cluster && strpbrk(cfg->redis_prefix, "{}")) {
		fprintf(stderr, "ringcast: with --redis-cluster, --redis-prefix "
			"may not hold { or }\n");
		return -EINVAL;
	}
	if (cfg->demo)
		demo_defaults(cfg, st.listen_set);
	return 0;
}
