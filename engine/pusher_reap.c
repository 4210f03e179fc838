/* SPDX-License-Identifier: MIT */
/*
 * pusher_reap.c: Pusher presence on a Redis Cluster, where each channel's
 * members are its slot's (pusher_presence.c): the slots this node has
 * members in, told once to the presence slot, and the reaping of a dead
 * node's, slot by slot, by shard 0 of every node (bridge_pusher.c's
 * eng_lua_pslot, eng_lua_pdead, eng_lua_preap say how), its members'
 * member_removed published by the script, their webhooks sent from here.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "conn.h"
#include "pusher_eng.h"
#include "rreq.h"
#include "webhook.h"

#define REAP_TICKS	(1000 / ENG_TICK_MS)	/* dead slots asked so often */
#define REAP_BATCH	16			/* ... so many at a time */
#define REAP_BATCH_S	"16"

static _Atomic uint64_t registered[ENG_SLOTS / 64];	/* eng_lua_pslot */
static bool reaping;		/* shard 0: a listing out */
static uint32_t reaped_tick;

static void quiet_done(struct eng_shard *s, struct eng_rreq *p)
{
	(void)s;
	(void)p;
}

void eng_pusher_slot_register(struct eng_shard *s, const char *rch,
			      size_t rlen, uint16_t hslot)
{
	uint64_t bit = 1ull << (hslot % 64);
	const char *argv[2] = { s->eng->cfg.node_id, rch };
	size_t lens[2] = { strlen(argv[0]), rlen };
	struct eng_rreq *p;

	if (hslot >= ENG_SLOTS ||
	    (atomic_fetch_or(&registered[hslot / 64], bit) & bit))
		return;
	p = eng_rreq_pusher(s->eng, ENG_PS_SLOT, 2, argv, lens);
	if (!p) {
		atomic_fetch_and(&registered[hslot / 64], ~bit);
		return;
	}
	p->done = quiet_done;
	eng_rreq_send_own(s, p);
}

/* An entry of P pdead ("NODE\0R") crossed off. */
static void cross_off(struct eng_shard *s, const char *e, size_t len)
{
	const char *argv[2] = { "0", e };
	size_t lens[2] = { 1, len };
	struct eng_rreq *p = eng_rreq_pusher(s->eng, ENG_PS_DEAD, 2, argv,
					     lens);

	if (p) {
		p->done = quiet_done;
		eng_rreq_send_own(s, p);
	}
}

/* A reap's answer: its members' webhooks, then its entry crossed off. */
static void reaped(struct eng_shard *s, struct eng_rreq *p)
{
	struct json_slice *e = p->arg, f[3];
	char *at = p->blob;

	while (p->result >= 0 && at && at < p->blob + p->blob_len &&
	       eng_pusher_fields(&at, p->blob + p->blob_len, f, 3))
		eng_webhook_pusher_id(f[0].p, f[0].len, &(struct eng_webhook_ev){
			.name = "member_removed", .channel = f[1],
			.user_id = f[2], .count = -1 });
	if (p->result >= 0)
		cross_off(s, e->p, e->len);
	free(e);
	p->arg = NULL;
}

/* Reaps dead node @node's slot of Redis channel @rch (entry @e). */
static void reap_one(struct eng_shard *s, struct json_slice node,
		     struct json_slice rch, struct json_slice e)
{
	const char *argv[2] = { node.p, rch.p };
	size_t lens[2] = { node.len, rch.len };
	struct json_slice *arg = malloc(sizeof(*arg) + e.len);
	struct eng_rreq *p = arg ? eng_rreq_pusher(s->eng, ENG_PS_REAP, 2,
						   argv, lens) : NULL;

	if (!p) {
		free(arg);
		return;		/* asked again within a second */
	}
	memcpy(arg + 1, e.p, e.len);
	*arg = (struct json_slice){ (char *)(arg + 1), e.len };
	p->arg = arg;
	p->done = reaped;
	eng_rreq_send_own(s, p);
}

/* The dead slots listed: each reaped; a full batch, more next tick. */
static void dead_listed(struct eng_shard *s, struct eng_rreq *p)
{
	struct json_slice f[2];
	char *at = p->blob, *end = at ? at + p->blob_len : NULL;
	unsigned n = 0;

	reaping = false;	/* no blob (none dead): nothing to walk */
	for (char *e = at; p->result >= 0 && at && at < end &&
	     eng_pusher_fields(&at, end, f, 2); e = at, n++)
		reap_one(s, f[0], f[1], (struct json_slice){
			e, (size_t)(f[1].p + f[1].len - e) });
	if (n >= REAP_BATCH)
		reaped_tick = s->tick - REAP_TICKS;
}

void eng_pusher_reap_tick(struct eng_shard *s)
{
	const char *argv[1] = { REAP_BATCH_S };
	size_t lens[1] = { sizeof(REAP_BATCH_S) - 1 };
	struct eng_rreq *p;

	if (s->id || !s->eng->redis || eng_pusher_across(s) || reaping ||
	    s->tick - reaped_tick < REAP_TICKS)
		return;
	reaped_tick = s->tick;
	p = eng_rreq_pusher(s->eng, ENG_PS_DEAD, 1, argv, lens);
	if (!p)
		return;
	reaping = true;
	p->done = dead_listed;
	eng_rreq_send_own(s, p);
}
