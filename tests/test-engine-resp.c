/* SPDX-License-Identifier: MIT */
/*
 * Description: a RESP link's socket outlives the operations that name it.
 * The link connects (to a listening socket that never answers: what is
 * checked happens before any reply), says hello, which queues a recv and
 * a send on its socket, and is taken down before the ring submits them.
 * The descriptor number must not be free meanwhile: a socket made next
 * (a client a shard accepts, on the epoll backend) must neither receive
 * the link's bytes nor lose its own to the link's recv. Once the link's
 * last completions are in, its socket is closed, and the link connects
 * again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"
#include "resp.h"
#include "ring.h"
#include "ud.h"

enum { OP_CONNECT = 1, OP_RECV, OP_SEND };

struct seen {
	struct eng_resp *l;
	unsigned recv, send;	/* completions of either op, any attempt */
	unsigned downs;
};

static struct seen seen;

static void on_ready(struct eng_resp *l, void *arg)
{
	(void)l;
	(void)arg;
}

static void on_reply(struct eng_resp *l, void *arg, redisReply *rep)
{
	(void)l;
	(void)arg;
	(void)rep;
}

static void on_down(struct eng_resp *l, void *arg, bool was_up, int err,
		    const char *why)
{
	(void)l;
	(void)arg;
	(void)was_up;
	(void)err;
	(void)why;
	seen.downs++;
}

static void on_refused(struct eng_resp *l, void *arg, const char *err)
{
	(void)l;
	(void)arg;
	(void)err;
}

static const struct eng_resp_ops ops = {
	.ready = on_ready,
	.reply = on_reply,
	.down = on_down,
	.refused = on_refused,
	.loading = NULL,
};

static void dispatch(void *arg, struct ring_cqe *cqe)
{
	unsigned op = ring_ud_op(cqe->user_data);

	(void)arg;
	seen.recv += op == OP_RECV;
	seen.send += op == OP_SEND;
	eng_resp_on_cqe(seen.l, op, ring_ud_gen(cqe->user_data), cqe->res);
}

/* Runs @r until @cond holds; at most 50 turns of 100 ms. */
#define RUN_UNTIL(r, cond) do {						\
	for (int i_ = 0; i_ < 50 && !(cond); i_++)			\
		T_CHECK(ring_run_for(r, 100000000ull, dispatch, NULL) >= 0); \
	T_CHECK(cond);							\
} while (0)

/* @p's @n bytes printable into @out (4 * @n + 1 bytes). */
static const char *escape(char *out, const char *p, size_t n)
{
	char *o = out;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			*o++ = (char)c;
		else
			o += sprintf(o, "\\x%02x", c);
	}
	*o = '\0';
	return out;
}

static int listener(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(fd, 8) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

static int test_down_before_submit(void)
{
	struct eng_resp_cfg cfg = {
		.role = "test", .host = "127.0.0.1", .user = "",
		.password = "", .op_connect = OP_CONNECT,
		.op_recv = OP_RECV, .op_send = OP_SEND,
	};
	struct eng_resp l;
	struct ring r;
	char got[256];
	ssize_t n;
	int lfd, old, sp[2], ret;

	ret = ring_init(&r, 64, 0, 0);
	if (ret == -ENOSYS || ret == -EPERM) {
		fprintf(stderr, "no io_uring here: skipped\n");
		return T_EXIT_SKIP;
	}
	T_CHECK(ret == 0);
	lfd = listener(&cfg.port);
	T_CHECK(lfd >= 0);
	T_CHECK(eng_resp_init(&l, &r, &cfg, &ops, NULL) == 0);
	seen.l = &l;

	eng_resp_poll(&l, eng_resp_now_ms());
	T_CHECK(l.state == ENG_RESP_CONNECTING);
	/* connected: the hello's recv and send are queued, not submitted */
	RUN_UNTIL(&r, l.state == ENG_RESP_HELLO);
	T_CHECK(l.recv_armed && l.send_armed);
	old = l.fd;
	eng_resp_down(&l, -ETIMEDOUT, "test");
	T_CHECK(l.state == ENG_RESP_DOWN && seen.downs == 1);

	/* The next socket made takes the lowest free number. */
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	T_CHECK(write(sp[1], "mine", 4) == 4);
	if (sp[0] == old)
		fprintf(stderr, "fd %d was free while the link's recv and "
			"send named it\n", old);
	/* no new attempt while the old socket's operations are out */
	eng_resp_poll(&l, l.retry_at);
	T_CHECK(l.state == ENG_RESP_DOWN);
	RUN_UNTIL(&r, seen.recv >= 1 && seen.send >= 1);

	n = recv(sp[1], got, sizeof(got), MSG_DONTWAIT);
	if (n > 0) {
		char shown[4 * sizeof(got) + 1];

		T_FAIL("a socket that is not the link's got its bytes (%zd): "
		       "'%s'", n, escape(shown, got, (size_t)n));
	}
	n = recv(sp[0], got, sizeof(got), MSG_DONTWAIT);
	if (n != 4)
		T_FAIL("the link's recv took another socket's bytes: %zd "
		       "of 4 left", n);
	T_CHECK(sp[0] != old);
	/* its last completions in, the old socket is closed */
	T_CHECK(fcntl(old, F_GETFD) < 0 && errno == EBADF);

	/* and the link may connect again */
	eng_resp_poll(&l, l.retry_at);
	T_CHECK(l.state == ENG_RESP_CONNECTING);
	RUN_UNTIL(&r, l.state == ENG_RESP_HELLO);

	close(sp[0]);
	close(sp[1]);
	close(lfd);
	ring_exit(&r);
	eng_resp_exit(&l);
	return 0;
}

int main(void)
{
	int ret = test_down_before_submit();

	if (ret == T_EXIT_SKIP)
		return T_EXIT_SKIP;
	return ret ? T_EXIT_FAIL : T_EXIT_PASS;
}
