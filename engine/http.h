/* SPDX-License-Identifier: MIT */
/*
 * http: the plain HTTP side of the port (http.c), registered as the
 * endpoint every connection starts with (ENG_CONN_K_HTTP, conn.h):
 * routing, the API key, publish and broadcast, the user and presence
 * queries, /stats, /healthz, /metrics, the pages, and the upgrades,
 * which go by path to the endpoint registered for it (eng_endpoint_find).
 * Also the /echo endpoint, which sends every message back (--echo).
 */
#ifndef RC_ENGINE_HTTP_H
#define RC_ENGINE_HTTP_H

/*
 * Registers plain HTTP's endpoint and /echo's (eng_endpoint_add). Once,
 * before the shards start. Returns 0 or -errno.
 */
int eng_http_register(void);

#endif
