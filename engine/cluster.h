/* SPDX-License-Identifier: MIT */
/*
 * cluster: what ringcast knows of a Redis Cluster (cluster.c): the hash
 * slot of a key or shard channel, computed as Redis computes it (CRC16,
 * hash tags respected), a short hash tag for every slot (so that the keys
 * of a channel's history can be named into the channel's own slot), and
 * the answers Redis gives about its slots (CLUSTER SLOTS, -MOVED, -ASK).
 * Pure functions: no I/O, no engine state.
 */
#ifndef RC_ENGINE_CLUSTER_H
#define RC_ENGINE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define ENG_SLOTS		16384
#define ENG_SLOT_NONE		0xffff	/* no master serves it */
#define ENG_CLUSTER_TAG_MAX	8	/* a slot's tag, NUL included */
#define ENG_CLUSTER_HOST_MAX	256
#define ENG_CLUSTER_SEEDS_MAX	16	/* --redis-cluster's list, at most */

/* The slot of key or shard channel @key: CRC16 of its hash tag, or of it. */
uint16_t eng_cluster_slot(const char *key, size_t len);

/*
 * A short string whose slot is @slot, the same for every caller: "{TAG}"
 * in a key name puts the key in @slot whatever else the name holds. The
 * table is built on first use (about 100,000 CRCs); call it once from one
 * thread before others may.
 */
const char *eng_cluster_tag(uint16_t slot);

/* A master, as CLUSTER SLOTS and a redirection name it. */
struct eng_cluster_addr {
	char host[ENG_CLUSTER_HOST_MAX];
	uint16_t port;
};

/*
 * One range of CLUSTER SLOTS' answer: slots first..last served by @master,
 * with @replica the first of its replicas listed with an endpoint (NULL
 * when none is: Redis leaves failed ones out). eng_cluster_parse_slots()
 * calls @fn for each; @fallback_host stands in for a node named with an
 * empty host (Redis's "the one you asked"). Both addresses are valid
 * during the call only. Returns the ranges, or -EPROTO when @rep is not
 * such an answer (an error reply included).
 */
typedef void (*eng_cluster_range_fn)(void *arg, uint16_t first,
				     uint16_t last,
				     const struct eng_cluster_addr *master,
				     const struct eng_cluster_addr *replica);
int eng_cluster_parse_slots(const redisReply *rep, const char *fallback_host,
			    eng_cluster_range_fn fn, void *arg);

/*
 * An error reply "MOVED SLOT HOST:PORT" or "ASK SLOT HOST:PORT": fills
 * @slot and @to and sets @ask, returns true; false for any other text.
 */
bool eng_cluster_redirect(const char *err, size_t len, uint16_t *slot,
			  struct eng_cluster_addr *to, bool *ask);

/*
 * "HOST:PORT[,HOST:PORT...]" into at most @max addresses. Returns how
 * many, or -EINVAL (an empty entry, a port out of range, a host too long).
 */
int eng_cluster_parse_seeds(const char *list, struct eng_cluster_addr *out,
			    unsigned max);

#endif
