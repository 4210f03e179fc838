/* SPDX-License-Identifier: MIT */
/*
 * bridge_req.c: requests to Redis on the bridge thread. Each goes to the
 * publisher link of its hash slot's master and waits in that link's FIFO
 * for its answer, which goes back to the shard that asked; the bytes in
 * flight are kept under --redis-max-pending, and history and inbox reads
 * under --redis-max-reading. On a cluster a -MOVED or -ASK answer sends
 * the request on to the master it names.
 */
#include "bridge_int.h"

/* Appends @p to the list from *@head to *@tail. */
static void queue_put(struct eng_rreq **head, struct eng_rreq **tail,
		      struct eng_rreq *p)
{
	p->next = NULL;
	if (*tail)
		(*tail)->next = p;
	else
		*head = p;
	*tail = p;
}

/* Takes the first of the list from *@head to *@tail off it, or NULL. */
static struct eng_rreq *queue_take(struct eng_rreq **head,
				   struct eng_rreq **tail)
{
	struct eng_rreq *p = *head;

	if (!p)
		return NULL;
	*head = p->next;
	if (!*head)
		*tail = NULL;
	return p;
}

/* Requests written to a node's publisher, answered in this order. */
static void fifo_push(struct eng_bridge *r, struct rnode *n,
		      struct eng_rreq *p)
{
	queue_put(&n->fifo_head, &n->fifo_tail, p);
	r->queued += p->len;
	atomic_store_explicit(&r->pending, r->queued, memory_order_relaxed);
}

struct eng_rreq *bridge__fifo_pop(struct eng_bridge *r, struct rnode *n)
{
	struct eng_rreq *p = queue_take(&n->fifo_head, &n->fifo_tail);

	if (!p)
		return NULL;
	r->queued -= p->len;
	atomic_store_explicit(&r->pending, r->queued, memory_order_relaxed);
	return p;
}

void bridge__read_done(struct eng_bridge *r, struct eng_rreq *p)
{
	r->reading -= p->reserve;
	p->reserve = 0;
	atomic_store_explicit(&r->reading_pub, r->reading,
			      memory_order_relaxed);
}

void bridge__ack_pub(struct eng_bridge *r, struct eng_rreq *p, long long n)
{
	bridge__read_done(r, p);
	p->result = n;
	if (p->from == ENG_BRIDGE) {	/* our own: nobody waits */
		if (p->op == ENG_RQ_BEAT && n == 0)
			r->resync = true;	/* our presence had expired */
		if (p->op == ENG_RQ_HREAD) {
			bridge__hist_filled(r, p->hreq, n);
			p->hreq = NULL;
		}
		eng_free(p);
		return;
	}
	eng_mail_post(&r->mail, p->from, ENG_OP_R_REPLY, p);
}

long long bridge__int_at(const redisReply *rep, size_t i)
{
	const redisReply *e = rep->element[i];

	return e->type == REDIS_REPLY_INTEGER ? e->integer : 0;
}


/*
 * Copies the comma-separated list @in (@len bytes) into @out, keeping only
 * the entries that fit whole: a user's apps on every node may be more
 * than one answer holds, and half a name would be a wrong name.
 */
static void csv_whole(char *out, size_t cap, const char *in, size_t len)
{
	size_t n = len < cap ? len : cap - 1;

	if (n < len)		/* cut: back to the end of the last whole entry */
		while (n && in[n] != ',')
			n--;
	memcpy(out, in, n);
	out[n] = '\0';
}

void bridge__on_pub_reply(struct eng_bridge *r, struct eng_rreq *p,
			  const redisReply *rep)
{
	if (rep->type == REDIS_REPLY_ERROR) {
		/* Once: the rest are counted (/stats redis.error_replies). */
		atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
		if (!r->logged_error) {
			r->logged_error = true;
			fprintf(stderr, "ringcast: redis: request failed: %.*s; "
				"further errors are counted in /stats\n",
				(int)rep->len, rep->str);
		}
		bridge__ack_pub(r, p, -EIO);
		return;
	}
	switch (p->op) {
	case ENG_RQ_QUERY:
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
			break;
		if (rep->element[1]->type == REDIS_REPLY_STRING)
			csv_whole(p->text, sizeof(p->text),
				  rep->element[1]->str, rep->element[1]->len);
		bridge__ack_pub(r, p, bridge__int_at(rep, 0));
		return;
	case ENG_RQ_HPUBLISH:	/* {receivers, offset, epoch} */
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
			break;
		p->r2 = bridge__int_at(rep, 1);
		bridge__ack_pub(r, p, bridge__int_at(rep, 0));
		return;
	case ENG_RQ_HREAD: {
		int ret = bridge__hist_answer(r, p->hreq, rep);

		if (!ret && bridge__hist_next_page(r, p))
			return;
		bridge__ack_pub(r, p, ret);
		return;
	}
	case ENG_RQ_IBOX: {
		int ret = bridge__inbox_answer(r, p->ibreq, rep);

		bridge__ack_pub(r, p, ret);
		return;
	}
	case ENG_RQ_SCRIPT:	/* {integer, string} */
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[1]->type != REDIS_REPLY_STRING)
			break;
		p->blob = eng_malloc(rep->element[1]->len + 1);
		if (!p->blob) {
			bridge__ack_pub(r, p, -ENOMEM);
			return;
		}
		memcpy(p->blob, rep->element[1]->str, rep->element[1]->len);
		p->blob[rep->element[1]->len] = '\0';
		p->blob_len = rep->element[1]->len;
		bridge__ack_pub(r, p, bridge__int_at(rep, 0));
		return;
	case ENG_RQ_ONLINE:
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
			break;
		p->r2 = bridge__int_at(rep, 1);
		p->r3 = bridge__int_at(rep, 2);
		bridge__ack_pub(r, p, bridge__int_at(rep, 0));
		return;
	default:
		if (rep->type != REDIS_REPLY_INTEGER)
			break;
		bridge__ack_pub(r, p, rep->integer);
		return;
	}
	bridge__ack_pub(r, p, -EPROTO);
}

/*
 * Writes @p on node @node's publisher link, behind what is in flight;
 * false (and @p answered) when that link is not up.
 */
static bool send_to(struct eng_bridge *r, int node, struct eng_rreq *p)
{
	struct eng_resp *c = node < 0 ? NULL : &r->nodes[node].c[R_PUB];

	if (!c || !eng_resp_ready(c)) {
		bridge__ack_pub(r, p, -ENOTCONN);
		return false;
	}
	if (eng_resp_put_raw(c, p->data, p->len) < 0) {
		bridge__ack_pub(r, p, -ENOMEM);
		return false;
	}
	fifo_push(r, &r->nodes[node], p);
	eng_resp_flush(c);
	return true;
}

/* The bytes a read's answer may take: see read_admitted(). */
static uint64_t read_reserve(const struct eng_bridge *r)
{
	return r->eng->cfg.max_message > ENG_RREQ_READ_MAX ?
	       r->eng->cfg.max_message : ENG_RREQ_READ_MAX;
}

static bool read_room(const struct eng_bridge *r)
{
	return !r->reading || r->reading + read_reserve(r) <=
			      r->eng->cfg.redis_max_reading;
}

/*
 * A history read or a connection's inbox replay: its answer may be as
 * large as ENG_RREQ_READ_MAX (or one message, when that is larger), and
 * Redis builds it in memory, so the node keeps such bytes in flight under
 * --redis-max-reading. Past it a client's history read or recovery is
 * answered 503 at once, and a replay (which no command waits for) waits
 * its turn, sent as answers free room (bridge__send_waiting()). The first read
 * always goes, and so do our own (a gap to fill) and the later pages of
 * a read already let through.
 */
static bool read_admitted(struct eng_bridge *r, struct eng_rreq *p)
{
	uint64_t reserve = read_reserve(r);

	if (p->op != ENG_RQ_HREAD && (p->op != ENG_RQ_IBOX ||
				      p->ibreq->kind != ENG_IB_REPLAY))
		return true;
	if (p->from != ENG_BRIDGE && !p->page && !read_room(r)) {
		if (p->op == ENG_RQ_IBOX) {
			queue_put(&r->wait_head, &r->wait_tail, p);
			return false;
		}
		atomic_fetch_add_explicit(&r->reads_refused, 1,
					  memory_order_relaxed);
		p->hreq->status = ENG_HREQ_BUSY;	/* said so: not UNAVAIL */
		bridge__ack_pub(r, p, 0);
		return false;
	}
	p->reserve = reserve;
	r->reading += reserve;
	atomic_store_explicit(&r->reading_pub, r->reading,
			      memory_order_relaxed);
	return true;
}

void bridge__send_waiting(struct eng_bridge *r)
{
	while (r->wait_head && read_room(r))
		bridge__on_request_mail(r, queue_take(&r->wait_head,
						      &r->wait_tail));
}

void bridge__on_request_mail(struct eng_bridge *r, struct eng_rreq *p)
{
	if (!bridge__ready_for(r, p->hslot, R_PUB)) {
		bridge__ack_pub(r, p, -ENOTCONN);
		return;
	}
	if (!read_admitted(r, p))
		return;
	/*
	 * A Redis that reads slowly (or froze, until the timeout says so)
	 * must not make us hold everything: past the budget, refuse now.
	 * Our own requests are few (a beat a second, presence per user).
	 */
	if (p->from != ENG_BRIDGE &&
	    r->queued + p->len > r->eng->cfg.redis_max_pending) {
		atomic_fetch_add_explicit(&r->refused, 1, memory_order_relaxed);
		bridge__ack_pub(r, p, -ENOBUFS);
		return;
	}
	if (p->op == ENG_RQ_PUBLISH || p->op == ENG_RQ_HPUBLISH)
		atomic_fetch_add_explicit(&r->publishes, 1,
					  memory_order_relaxed);
	send_to(r, bridge__node_for(r, p->hslot), p);
}

bool bridge__redirect(struct eng_bridge *r, struct eng_rreq *p,
		      const redisReply *rep)
{
	struct eng_cluster_addr to;
	uint16_t slot;
	bool ask;
	int n;

	if (!eng_cluster_redirect(rep->str, rep->len, &slot, &to, &ask))
		return false;
	atomic_fetch_add_explicit(&r->moved, 1, memory_order_relaxed);
	r->map_due = true;
	n = bridge__node_add(r, &to);
	if (n < 0 || p->redirects >= R_REDIRECTS)
		return false;
	p->redirects++;
	if (!ask) {
		bridge__map_set(r, slot, n);
	} else if (eng_resp_ready(&r->nodes[n].c[R_PUB])) {
		struct eng_rreq *a = eng_rreq_new(ENG_RQ_QUIET, 1,
			(const char *[]){ "ASKING" }, (size_t[]){ 6 });

		if (!a || !send_to(r, n, a))
			return false;
	}
	send_to(r, n, p);
	return true;
}
