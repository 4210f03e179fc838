/* SPDX-License-Identifier: MIT */
/*
 * resp: one RESP link to Redis, driven through a ring (resp.c). It owns
 * the socket and its connect, the hello (AUTH and SELECT when asked, then
 * a PING; said again while Redis loads its dataset), a deadline on every answer and a PING on an idle link,
 * reconnecting with capped exponential backoff and jitter, the bytes in
 * flight and queued behind them, and the replies, read with hiredis's
 * redisReader and handed to the owner one by one. It knows nothing of the
 * engine: the owner gives it a ring, the user_data ops its completions
 * carry, and callbacks. Every function runs on the ring's thread.
 */
#ifndef RC_ENGINE_RESP_H
#define RC_ENGINE_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "ring.h"

enum {
	ENG_RESP_DOWN = 0,	/* no socket; a retry is due at retry_at */
	ENG_RESP_CONNECTING,
	ENG_RESP_HELLO,		/* AUTH/SELECT sent, replies owed */
	ENG_RESP_READY,
};

struct eng_resp;

/* What a link tells its owner; @arg is the owner's, as given at init. */
struct eng_resp_ops {
	/* The hello was answered: commands may go (first of a new link). */
	void (*ready)(struct eng_resp *l, void *arg);
	/* A reply or a push, in order, once ready; @rep is borrowed. */
	void (*reply)(struct eng_resp *l, void *arg, redisReply *rep);
	/*
	 * The link went down, or an attempt failed before it had a socket.
	 * @was_up: it had reached the hello. @why is for an operator, the
	 * role included: "redis subscriber read: Connection reset by peer",
	 * "redis: cannot resolve HOST: ...". Buffers are gone and a retry
	 * is scheduled when this is called. @err is the -errno behind it
	 * (-ETIMEDOUT: Redis stopped answering within cfg.timeout_ms).
	 */
	void (*down)(struct eng_resp *l, void *arg, bool was_up, int err,
		     const char *why);
	/* The hello got an error reply (@err: its text); down() follows. */
	void (*refused)(struct eng_resp *l, void *arg, const char *err);
	/*
	 * The hello was answered -LOADING: Redis is reading its dataset
	 * back. The link stays and says hello again every
	 * ENG_RESP_LOADING_MS until Redis is ready (then ready()); this is
	 * called once per link made, not per answer.
	 */
	void (*loading)(struct eng_resp *l, void *arg);
};

/* Where and how to connect; the strings are borrowed for the link's life. */
struct eng_resp_cfg {
	const char *role;		/* "subscriber": for messages */
	const char *host;
	uint16_t port;
	const char *user;		/* "" for AUTH with a password only */
	const char *password;		/* "": no AUTH */
	unsigned db;			/* 0: no SELECT */
	unsigned op_connect;		/* user_data ops of its completions */
	unsigned op_recv;
	unsigned op_send;
	unsigned idx;			/* user_data slot: tells links apart */
	unsigned timeout_ms;		/* no progress this long: down; 0: off */
};

struct eng_resp {
	struct eng_resp_cfg cfg;
	struct ring *ring;		/* borrowed: its thread drives us */
	const struct eng_resp_ops *ops;
	void *arg;
	int fd;				/* -1 while down */
	uint32_t gen;			/* per attempt: stale CQEs are dropped */
	int state;			/* ENG_RESP_* */
	unsigned hello;			/* AUTH, SELECT, PING replies owed */
	bool loading;			/* the hello was answered -LOADING */
	bool again;			/* ... this time: say it again */
	uint64_t hello_at;		/* ms: say hello again (loading) */
	redisReader *reader;
	char *rbuf;			/* ENG_RESP_RBUF bytes, one recv */
	bool recv_armed;
	bool send_armed;
	char *out;			/* bytes in flight */
	size_t olen, osent;
	char *next;			/* bytes queued behind them */
	size_t nlen, ncap;
	unsigned backoff;		/* ms before the next attempt */
	uint64_t retry_at;		/* ms, CLOCK_MONOTONIC; 0: never tried */
	uint64_t since;			/* ms: state entered, or last progress */
	uint64_t last_io;		/* ms: last byte sent or received */
	unsigned expect;		/* replies owed (pushes not counted) */
	bool ping;			/* our own PING's reply is the next */
	/*
	 * The last attempt's socket, shut down but not closed while its
	 * recv or send is in flight (queued SQEs name its number; the
	 * kernel reads old_out), and no new attempt until it is closed.
	 */
	unsigned old_ops;		/* RESP_OLD_* bits still owed; 0: none */
	int old_fd;
	uint32_t old_gen;
	char *old_out;			/* its send's bytes, freed with it */
};

#define ENG_RESP_RBUF		65536	/* bytes per recv */
#define ENG_RESP_BACKOFF_MIN	100	/* ms */
#define ENG_RESP_BACKOFF_MAX	5000	/* ms */
#define ENG_RESP_LOADING_MS	100	/* ms between hellos while loading */

/*
 * Sets @l up, down and due at once; @cfg is copied (its strings are not).
 * Returns 0 or -ENOMEM.
 */
int eng_resp_init(struct eng_resp *l, struct ring *ring,
		  const struct eng_resp_cfg *cfg,
		  const struct eng_resp_ops *ops, void *arg);

/*
 * Closes the link (without calling down()) and frees its memory. Call it
 * once the ring no longer runs @l's operations (after ring_exit(), or
 * before any was queued): what is still in flight is not waited for.
 */
void eng_resp_exit(struct eng_resp *l);

/*
 * Call it every tick, with @now_ms a CLOCK_MONOTONIC time. Starts
 * connecting if @l is down and its retry is due. With cfg.timeout_ms, it
 * also takes the link down (-ETIMEDOUT) when a connect or a hello takes
 * longer, or when replies are owed and none came for that long; and it
 * PINGs a link idle for half of it, so that a Redis that froze is found
 * even when nothing else is asked of it; a link whose Redis is loading
 * says hello again when it is due. Returns true when a reconnect
 * attempt (after an earlier one) started, for the owner to count.
 */
bool eng_resp_poll(struct eng_resp *l, uint64_t now_ms);

/* Now, on the clock eng_resp_poll() takes. */
uint64_t eng_resp_now_ms(void);

/*
 * Handles a completion of @l's (op is one of cfg's three, slot its idx);
 * a stale one, from an earlier attempt, is dropped.
 */
void eng_resp_on_cqe(struct eng_resp *l, unsigned op, uint32_t gen, int res);

/*
 * Queues the command @argv (formatted with redisFormatCommandArgv), or
 * one command already formatted as RESP, behind what is in flight; they
 * go at the next eng_resp_flush(). (UN)SUBSCRIBE of N channels owes N
 * replies, any other command one. Returns 0 or -ENOMEM.
 */
int eng_resp_put_cmd(struct eng_resp *l, int argc, const char **argv,
		     const size_t *lens);
int eng_resp_put_raw(struct eng_resp *l, const char *cmd, size_t n);

/* Sends what is queued, if nothing is in flight and the link is up. */
void eng_resp_flush(struct eng_resp *l);

/*
 * Takes @l down now: the socket is shut down (its completions turn
 * stale), buffers freed, the owner told (@err, -errno or 0 for "closed
 * by server", and @what, as "read") and a retry scheduled. A socket with
 * a recv or send in flight is closed, and the send's bytes freed, only
 * when their completions come back: until then a queued SQE still names
 * its number, which a close would free for the next socket the process
 * makes (a client a shard accepts). The retry waits for that.
 */
void eng_resp_down(struct eng_resp *l, int err, const char *what);

static inline bool eng_resp_ready(const struct eng_resp *l)
{
	return l->state == ENG_RESP_READY;
}

#endif
