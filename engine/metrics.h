/* SPDX-License-Identifier: MIT */
/*
 * metrics: GET /metrics in Prometheus' text format (metrics.c), the
 * latency histogram (lat.h) among it, and the node's figures on $sys.
 */
#ifndef RC_ENGINE_METRICS_H
#define RC_ENGINE_METRICS_H

#include <stdint.h>

#include "eng.h"
#include "lat.h"

/* The channel of the node's figures: "$" keeps it from clients' names. */
#define ENG_SYS_CHANNEL	"$sys"

struct eng_conn;
/* Answers GET /metrics for @c (the caller checked the API key). */
void eng_metrics_reply(struct eng_shard *s, struct eng_conn *c);

/*
 * Publishes the node's figures on ENG_SYS_CHANNEL (this node only, never
 * Redis): counters per shard, from which a reader computes rates. Shard
 * 0 calls it once a second.
 */
void eng_metrics_sys(struct eng_shard *s);

#endif
