/* SPDX-License-Identifier: MIT */
/*
 * core: a shard's loop (core.c). Pins the thread, sets up the shard's
 * ring, fixed-file table, provided buffers and connection table, arms
 * multishot accept on its SO_REUSEPORT listener and the 100 ms tick, and
 * dispatches completions to the connections, the mail and the timers
 * until told to stop and drained. The first shard up registers the
 * endpoints (conn.h) for the process.
 */
#ifndef RC_ENGINE_CORE_H
#define RC_ENGINE_CORE_H

/*
 * A shard's thread, @arg its struct eng_shard: sets its ring up on the
 * calling thread (the ring's only submitter from then on), reports to
 * main through eng.lock (eng.ready, eng.failed: its -errno), then serves
 * until ENG_OP_STOP and every shard has drained, and frees what the
 * shard owns but its ring, which main closes after all have joined.
 * Returns NULL.
 */
void *eng_shard_main(void *arg);

/*
 * With --threads: one thread driving shards @arg, @arg + threads, ...
 * (each as eng_shard_main() would), sleeping on all their rings at once
 * (ring_set) when none has work. Returns NULL once all have stopped.
 */
void *eng_worker_main(void *arg);

#endif
