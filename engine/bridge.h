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

/*
 * A live hand-over with one Redis (docs/HANDOVER.md "With Redis"),
 * asked from the handover thread and done by the bridge's on its next
 * loop turn (within its 100 ms tick). ENG_BHO_GIVE (the old process):
 * SUBSCRIBE @marker, and list the channels wanted here
 * (eng_bridge_ho_names(), once SUBSCRIBED); ENG_BHO_TAKE (the new one):
 * SUBSCRIBE @marker and @names (@len bytes: u16 length + Redis channel,
 * each), dropping every message until the marker; ENG_BHO_MARK (the
 * old one, once the new one is SUBSCRIBED): PUBLISH the marker. After
 * the marker (HOLD) every message is held; ENG_BHO_END delivers what was
 * held, in order, then the rest as it comes, and unsubscribes what only
 * the hand-over wanted. 0, or -EINVAL (no bridge, a marker too long),
 * -ENOMEM.
 */
enum {
	ENG_BHO_NONE = 0, ENG_BHO_SUBSCRIBING, ENG_BHO_SUBSCRIBED,
	ENG_BHO_AWAIT, ENG_BHO_HOLD, ENG_BHO_FAILED,
};
enum { ENG_BHO_GIVE = 1, ENG_BHO_TAKE, ENG_BHO_MARK, ENG_BHO_END };
int eng_bridge_ho(struct eng *e, int cmd, const char *marker,
		  const uint8_t *names, size_t len);
/* Where the hand-over is: ENG_BHO_* (NONE: no bridge). */
int eng_bridge_ho_state(const struct eng *e);
/*
 * Whether this node can cut its stream with a marker: on one Redis; a
 * cluster's channels come over several links, in no one order.
 */
bool eng_bridge_ho_ok(const struct eng *e);
/*
 * ENG_BHO_GIVE's list (@len bytes, @n channels), the bridge's until
 * ENG_BHO_END; valid once the state is SUBSCRIBED.
 */
const uint8_t *eng_bridge_ho_names(const struct eng *e, size_t *len,
				   uint32_t *n);

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
