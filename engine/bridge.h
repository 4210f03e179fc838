/* SPDX-License-Identifier: MIT */
/*
 * bridge: the Redis bridge (bridge.c), one thread with its own ring. It
 * SUBSCRIBEs to the channels this node has subscribers for and turns
 * every message into the same push frame a local publish makes; it
 * writes the shards' requests (PUBLISH, presence) and hands back the
 * replies. Its two Redis connections are RESP links (resp.h).
 */
#ifndef RC_ENGINE_BRIDGE_H
#define RC_ENGINE_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng.h"

/*
 * Sets the bridge up before the shards start, so that mail they post from
 * their first client on waits in its ring; sets e->bridge. 0 or -errno.
 */
int eng_bridge_init(struct eng *e);
/* Starts the bridge's thread; 0 or -errno. */
int eng_bridge_run(struct eng *e);
/* Stops the thread (mail from @from, a ring of main's) and joins it. */
void eng_bridge_stop(struct eng *e, struct ring *from);
/* Frees what eng_bridge_init() made; after eng_bridge_stop(). */
void eng_bridge_free(struct eng *e);

/* True when both links are up; else false, with the reason in @why. */
bool eng_bridge_healthy(struct eng_bridge *b, char *why, size_t len);

/* The bridge's figures, read from any thread. */
struct eng_bridge_figs {
	bool up;
	bool loading;			/* a Redis is loading its dataset */
	uint64_t reading, reads_refused;	/* --redis-max-reading */
	uint64_t reconnects, messages, rejected, publishes, channels, errors,
		 mail_errors, refused, pending, fills, gaps;
	bool cluster;			/* --redis-cluster: the rest is set */
	unsigned masters, masters_up;	/* serving slots; ... both links up */
	uint64_t moved, maps, resubscribes;
	uint64_t takeovers;		/* a standby subscription took over */
};
void eng_bridge_figures(struct eng_bridge *b, struct eng_bridge_figs *f);

/*
 * Masters and replicas a node links to, at most, over its life
 * (--redis-cluster); masters first.
 */
#define ENG_BRIDGE_NODES_MAX	64
/* What eng_bridge_stats() writes at most: room to give it. */
#define ENG_BRIDGE_STATS_MAX	(5 * 1024 + ENG_BRIDGE_NODES_MAX * 384)

/* Appends the bridge's figures as a JSON object; returns its length. */
size_t eng_bridge_stats(struct eng_bridge *b, char *out, size_t cap);

#endif
