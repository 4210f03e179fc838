/* SPDX-License-Identifier: MIT */
/*
 * timer.c: one timing wheel per shard instead of one kernel timer per
 * connection. Each connection sits in at most one slot list, linked by
 * slot index (8 bytes in the connection). Activity does not move a
 * connection: the handler that fires checks the connection's own
 * timestamps and sets the next deadline, so a busy connection costs one
 * wheel operation per deadline, not per message.
 */
#include "conn.h"
#include "timer.h"

void eng_timer_init(struct eng_shard *s)
{
	for (unsigned i = 0; i < ENG_WHEEL_SLOTS; i++)
		s->wheel[i] = ENG_NIL;
}

static void link_conn(struct eng_shard *s, struct eng_conn *c)
{
	uint32_t *head = &s->wheel[c->tdue % ENG_WHEEL_SLOTS];
	uint32_t slot = eng_slot(s, c);

	c->tprev = ENG_NIL;
	c->tnext = *head;
	if (*head != ENG_NIL)
		s->conns[*head].tprev = slot;
	*head = slot;
}

void eng_timer_del(struct eng_shard *s, struct eng_conn *c)
{
	if (c->tdue == 0)
		return;
	if (c->tprev != ENG_NIL)
		s->conns[c->tprev].tnext = c->tnext;
	else
		s->wheel[c->tdue % ENG_WHEEL_SLOTS] = c->tnext;
	if (c->tnext != ENG_NIL)
		s->conns[c->tnext].tprev = c->tprev;
	c->tdue = 0;
	c->tprev = c->tnext = ENG_NIL;
}

/* @due is a tick; 0 means "no timer", so a due in the past fires next. */
void eng_timer_set(struct eng_shard *s, struct eng_conn *c, uint32_t due)
{
	eng_timer_del(s, c);
	if (due <= s->tick)
		due = s->tick + 1;
	c->tdue = due;
	link_conn(s, c);
}

/*
 * Fires every connection due by tick @now. Each slot list is detached
 * before it is walked, so handlers may set, move or delete timers freely;
 * entries due on a later lap of the wheel are linked back.
 */
void eng_timer_advance(struct eng_shard *s, uint32_t now)
{
	while (s->tick < now) {
		uint32_t idx = ++s->tick % ENG_WHEEL_SLOTS;
		uint32_t slot = s->wheel[idx];

		s->wheel[idx] = ENG_NIL;
		while (slot != ENG_NIL) {
			struct eng_conn *c = &s->conns[slot];

			slot = c->tnext;
			c->tprev = c->tnext = ENG_NIL;
			if (c->tdue > s->tick) {
				link_conn(s, c);	/* a later lap */
				continue;
			}
			c->tdue = 0;
			eng_conn_on_timer(s, c);
		}
	}
}
