/* SPDX-License-Identifier: MIT */
/*
 * mail: every message between rings. Each shard and the Redis bridge run
 * one ring on one thread; what one asks of another travels as a pointer
 * in a MSG_RING completion (ring_mbox_post), and the struct it points to
 * belongs to the mail until its reader takes it. This module owns the
 * table of mail kinds (who reads each op, how its struct is freed, what a
 * failed post does), posting with fault injection in test builds, the
 * retry of failed mail, and which shard owns a channel.
 *
 * Mail is allocated with eng_malloc() and freed with eng_free() on
 * whichever thread ends up with it: mimalloc frees across threads.
 *
 * Order: mail between two rings is read in the order it was posted, which
 * is what keeps a channel's messages in order on every shard. A failed
 * post breaks that, so deliveries are never posted again; what is posted
 * again (acks, interest, user mail, bridge mail) carries no order of its
 * own, or is refreshed to the poster's current state before it goes.
 */
#ifndef RC_ENGINE_MAIL_H
#define RC_ENGINE_MAIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "eng.h"

/* The Redis bridge's id where a shard id would be, as sender or reader;
 * as a sender it also means that nobody awaits a reply. */
#define ENG_BRIDGE	0xffff

/* ---- the mail structs --------------------------------------------------- */

/* ENG_OP_PUB and ENG_OP_PUB_ACK: one publish, publisher -> owner -> back. */
struct eng_pub {
	struct eng_buf *frame;		/* one reference */
	struct eng_buf *reply;		/* owned; queued when sequenced */
	uint32_t slot, gen;		/* the publishing connection */
	uint16_t from;			/* the publishing shard, or ENG_BRIDGE */
	uint16_t owner;
	uint32_t shards;		/* set by the owner: shards reached */
};

/*
 * ENG_OP_INTEREST and ENG_OP_USER, and their acks: what a shard asks of a
 * channel's or a user's owner shard, answered in the same struct.
 */
struct eng_owner_mail {
	struct eng_owner_mail *next;	/* owner: in racks */
	uint16_t from;			/* the asking shard, or ENG_BRIDGE */
	uint8_t add;
	uint8_t len;
	uint8_t kind;			/* ENG_OWN_* */
	uint8_t ok;			/* JOIN: admitted */
	uint8_t counted;		/* LEAVE: was admitted */
	uint8_t last;			/* LEAVE: none left on that shard */
	uint8_t app_len;
	uint32_t slot, gen;		/* JOIN, QUERY, KICK: the connection */
	uint32_t conns;			/* QUERY, KICK: the user's connections */
	char app[ENG_APP_MAX + 1];
	char name[ENG_CHAN_MAX + 2];	/* channel, or "\x01" + user id */
	char apps[8 * (ENG_APP_MAX + 3)];	/* QUERY: "web","ios" */
	char wskey[32];			/* JOIN: Sec-WebSocket-Key for the 101 */
	struct eng_buf **frames;	/* JOIN's ack: the unread, owned */
	uint32_t nframes;
};

/* What an eng_owner_mail asks of the owner. */
enum {
	ENG_OWN_INTEREST = 0,	/* this shard has subscribers, or not */
	ENG_OWN_JOIN,		/* admit one more connection of a user */
	ENG_OWN_LEAVE,		/* a user's connection left (or was refused) */
	ENG_OWN_QUERY,		/* GET /users/{uid} */
	ENG_OWN_KICK,		/* POST /users/{uid}/disconnect */
};

/* ENG_OP_R_SUBSCRIBE and ENG_OP_R_SUB_ACK: owner -> bridge -> owner. */
struct eng_rsub {
	uint16_t from;			/* the owner shard */
	uint8_t add;
	uint16_t len;
	char name[];			/* the Redis channel name */
};

/* ENG_OP_R_REQUEST and ENG_OP_R_REPLY: a request that goes through Redis. */
struct eng_rreq {
	struct eng_rreq *next;		/* bridge: awaiting its reply */
	uint16_t from;			/* the asking shard, or ENG_BRIDGE */
	uint8_t kind;			/* ENG_CONN_K_HTTP or ENG_CONN_K_PUSH */
	uint8_t op;			/* ENG_RQ_* */
	uint16_t hslot;			/* cluster: the hash slot it goes to */
	uint8_t redirects;		/* cluster: MOVED or ASK so far */
	uint32_t slot, gen;		/* the asking connection */
	long long result;		/* the reply's integer, or -errno */
	long long r2, r3;		/* ONLINE: connections, nodes */
	struct eng_buf *ok, *err;	/* /ws: the replies, prebuilt */
	void (*done)(struct eng_shard *s, struct eng_rreq *p);	/* rreq.h */
	struct eng_buf *(*reword)(const struct eng_buf *, int, const char *);	/* /ws */
	struct eng_hreq *hreq;		/* HREAD: owned, answered in place */
	struct eng_ibreq *ibreq;	/* IBOX: the same */
	uint64_t reserve;		/* bridge: read bytes it holds (budget) */
	bool page;			/* bridge: a cut read's next page */
	char text[ENG_PRES_APPS * (ENG_APP_MAX + 3)];	/* QUERY: apps */
	size_t len;			/* bytes of the command in data */
	char data[];			/* the command, formatted as RESP */
};

enum {
	ENG_RQ_PUBLISH = 0,	/* PUBLISH: receivers */
	ENG_RQ_QUERY,		/* one user's presence on live nodes */
	ENG_RQ_ONLINE,		/* users, connections, nodes */
	ENG_RQ_PRESENCE,	/* bridge: presence writes, no one waits */
	ENG_RQ_BEAT,		/* bridge: heartbeat; 0 = we had expired */
	ENG_RQ_QUIET,		/* bridge: no reply expected by anyone */
	ENG_RQ_HPUBLISH,	/* a history channel's publish (script) */
	ENG_RQ_HREAD,		/* a history read (script): fills hreq */
	ENG_RQ_IBOX,		/* an inbox read or ack (script): fills ibreq */
};

/* ENG_OP_R_PRESENCE, owner shard -> bridge: a user's count on this node. */
struct eng_rpres {
	uint32_t conns;
	uint8_t len;
	char uid[ENG_CHAN_MAX + 1];
	char apps[ENG_PRES_APPS * (ENG_APP_MAX + 1)];	/* "ios,web" */
};

/*
 * ENG_OP_HIST and ENG_OP_HIST_ACK: a history read, asking shard -> the
 * channel's owner -> back. RECOVER also means the subscription is held
 * (recovering) on the asking shard until the answer arrives.
 */
struct eng_hreq {
	uint32_t slot, gen;		/* the asking connection */
	uint16_t from;			/* the asking shard */
	uint8_t kind;			/* ENG_HREQ_* */
	uint8_t len;			/* of name */
	uint8_t status;			/* answer: ENG_HREQ_* below */
	uint8_t seq_len;		/* of seq */
	char name[ENG_CHAN_MAX];
	char seq[64];			/* the command's seq, raw JSON */
	char epoch[20];			/* asked, then answered ("" none) */
	uint64_t after;			/* messages above this offset */
	uint32_t max;			/* at most this many */
	uint32_t max_bytes;		/* ... of at most this many bytes */
	uint8_t lone;			/* ... but one whatever its size */
	uint8_t more;			/* answer cut short (max_bytes, or a
					 * Redis read's bound: see next) */
	uint32_t n;			/* answer: frames */
	uint64_t top;			/* answer: the newest offset */
	struct eng_buf **frames;	/* answer: owned, n references */
	uint64_t next;			/* a cut Redis read ends here */
	size_t bytes;			/* answer: message bytes in frames */
};

enum {
	ENG_HREQ_HISTORY = 0,	/* the "history" command */
	ENG_HREQ_RECOVER,	/* a subscribe with an offset */
	ENG_HREQ_SINCE,		/* "history" from an offset: above @after */
	/* status */
	ENG_HREQ_OK = 0,	/* recovered, or history read */
	ENG_HREQ_GAP,		/* not recovered: epoch changed or too old */
	ENG_HREQ_FUTURE,	/* an offset above the newest */
	ENG_HREQ_NOMEM,
	ENG_HREQ_UNAVAIL,	/* Redis could not be asked or did not answer */
	ENG_HREQ_BACKLOG,	/* not recovered: more than max_bytes missed */
	ENG_HREQ_BUSY,		/* over the node's --redis-max-reading */
};

#define ENG_INBOX_IDS	100	/* ids one ack or listing holds */

/*
 * ENG_OP_INBOX and ENG_OP_INBOX_ACK: an ack of a user's messages, or a
 * listing of its inbox, asking shard -> the user's owner -> back.
 */
struct eng_ibreq {
	uint32_t slot, gen;		/* the asking connection */
	uint16_t from;			/* the asking shard */
	uint8_t kind;			/* ENG_IB_ACK or ENG_IB_LIST */
	uint8_t http;			/* GET /users/{uid}/inbox */
	uint8_t len;			/* of name */
	uint8_t seq_len;
	uint8_t status;			/* answer: ENG_IB_OK or _UNKNOWN */
	char name[ENG_CHAN_MAX + 2];	/* the user's index key */
	char seq[64];			/* the command's seq, raw JSON */
	char epoch[12];			/* ack: the ids'; a replay's page: the
					 * inbox it goes on in ("" the first);
					 * answer: the inbox's */
	uint32_t n;			/* ids asked, then ids listed */
	uint64_t unread, evicted, acked;	/* answer */
	uint64_t ids[ENG_INBOX_IDS];	/* ack: asked; list: the oldest */
	struct eng_buf **frames;	/* REPLAY (Redis): the unread, owned */
	uint32_t nframes;
	uint64_t after;			/* REPLAY: the page starts after this
					 * N; answer: the newest N it read */
	uint8_t more;			/* REPLAY answer: cut by its budget */
};

enum {
	ENG_IB_ACK = 0,
	ENG_IB_LIST,
	ENG_IB_REPLAY,		/* with Redis: a page of a new connection's
				 * unread */
	/* status */
	ENG_IB_OK = 0,
	ENG_IB_UNKNOWN,		/* an id this inbox never gave */
};

/* Frees @h, its frames included; NULL is a no-op. */
void eng_hreq_free(struct eng_hreq *h);

/* The same for @q. */
void eng_ibreq_free(struct eng_ibreq *q);

/* ---- posting ------------------------------------------------------------ */

/*
 * A handler for mail @op: @self is the reader (struct eng_shard, or the
 * bridge's struct eng_redis), @ptr the mail, which the handler owns.
 * @res is the completion's res: 0 for mail read, -errno for a failed post.
 */
typedef void eng_mail_fn(void *self, unsigned op, void *ptr, int32_t res);


/*
 * Sets @m up for poster @self (shard @id, or ENG_BRIDGE) on @ring. Posts
 * are undone instead of made once *@stopping is true: the rings they
 * would go to may have stopped reading. Failures bump *@errors.
 */
void eng_mail_init(struct eng_mailer *m, struct eng *e, struct ring *ring,
		   unsigned id, void *self, const bool *stopping,
		   atomic_uint_fast64_t *errors);

/* Frees what is still listed for a retry. */
void eng_mail_exit(struct eng_mailer *m);

/*
 * A zeroed mail struct of @size bytes for @m to post, from the one heap
 * all mail comes from (eng_malloc: freed by whichever thread reads it).
 * NULL when out of memory, counted as a failed post of @m's.
 */
void *eng_mail_alloc(struct eng_mailer *m, size_t size);

/*
 * Posts mail @op carrying @ptr to @to (a shard id or ENG_BRIDGE); the
 * mail is the reader's from here. Mail to the poster itself is read at
 * once, by a direct call. A post that fails, at once or later as its
 * failure completion, is counted and then, by the op's kind, posted again
 * at the next eng_mail_retry(), undone (its waiter is told) or lost.
 */
void eng_mail_post(struct eng_mailer *m, unsigned to, unsigned op, void *ptr);

/* Is user_data op @op mail (or a failed post of mail)? Inline: per CQE. */
static inline bool eng_mail_is(unsigned op)
{
	op &= ~(unsigned)ENG_OP_FAILED;
	return op >= ENG_OP_PUB && op < ENG_OP_MAX;
}

/*
 * Handles mail completion @cqe (eng_mail_is() said so): mail for @m's
 * poster, read by its handler, or a failed post of its own.
 */
void eng_mail_read(struct eng_mailer *m, const struct ring_cqe *cqe);

/* Posts again what failed since the last call; once per tick. */
void eng_mail_retry(struct eng_mailer *m);

/* Frees the mail still in the CQ of @r, whose thread has exited. */
void eng_mail_discard(struct ring *r);

/* Posts "stop" from a ring of main's to @to; not subject to faults. */
int eng_mail_stop(struct ring *from, struct ring *to);

/* The shard that owns (sequences) a channel or user of hash @hash. */
static inline unsigned eng_mail_owner(const struct eng *e, uint64_t hash)
{
	/* The high bits: the low ones pick the bucket in every table. */
	return (unsigned)((hash >> 32) % e->cfg.shards);
}

/*
 * Appends {"failed":{op:n,...},"retried":{...}} for /stats: failed posts
 * (faults included) and posts made again, per mail op.
 */
size_t eng_mail_stats(char *out, size_t cap);
/* The same for one @op: false when @op is no kind of mail. */
bool eng_mail_counts(unsigned op, const char **name, uint64_t *failed,
		     uint64_t *retried);

#ifdef RC_FAULT_INJECT
/*
 * Test builds (-Dfault_inject=true) only: reads RINGCAST_FAULT_MAIL=N,
 * after which every Nth post of each mail op fails, in turn at once and
 * as a failure completion. Call before the shards start.
 */
void eng_mail_fault_init(void);
#endif

#endif
