/* SPDX-License-Identifier: MIT */
/*
 * helpers: what every C test shares. Exit codes follow liburing and the
 * automake convention meson understands.
 */
#ifndef RC_TESTS_HELPERS_H
#define RC_TESTS_HELPERS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define T_EXIT_PASS	0
#define T_EXIT_FAIL	1
#define T_EXIT_SKIP	77

/* Fails the enclosing int-returning test function with a located message. */
#define T_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n",		\
			__FILE__, __LINE__, #cond);			\
		return 1;						\
	}								\
} while (0)

/* Fails the enclosing int-returning test function with a located printf. */
#define T_FAIL(...) do {						\
	fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);			\
	fprintf(stderr, __VA_ARGS__);					\
	fputc('\n', stderr);						\
	return 1;							\
} while (0)

/* An incremental parser under test, as hs_parse() or ws_parse() on @ctx. */
typedef ssize_t (*t_parse_fn)(void *ctx, const uint8_t *p, size_t n);

/* @parse on an exact-size heap copy of @in[0..@k): ASan sees a read past. */
static inline ssize_t t_parse_copy(t_parse_fn parse, void *ctx,
				   const uint8_t *in, size_t k)
{
	uint8_t *b = malloc(k ? k : 1);
	ssize_t ret;

	memcpy(b, in, k);
	ret = parse(ctx, b, k);
	free(b);
	return ret;
}

/*
 * Feeds @in[0..@len) to @parse as every prefix, then grown one byte at a
 * time as the engine does. @want is the whole input's result: a length
 * (bytes of the @what, "head" or "header") shows at exactly that many
 * bytes, -EAGAIN before; an error shows as -EAGAIN or itself on any
 * prefix, first at @at bytes when @at is not 0. Returns 0 or 1, with a
 * message naming @name.
 */
static inline int t_check_prefixes(const char *name, const char *what,
				   const uint8_t *in, size_t len,
				   ssize_t want, size_t at,
				   t_parse_fn parse, void *ctx)
{
	uint8_t *grow = NULL;
	ssize_t ret = -EAGAIN, exp;
	size_t k;

	for (k = 0; k <= len; k++) {
		ret = t_parse_copy(parse, ctx, in, k);
		if (want >= 0) {
			exp = k >= (size_t)want ? want : -EAGAIN;
			if (ret != exp)
				T_FAIL("%s: prefix %zu: got %zd, want %zd",
				       name, k, ret, exp);
		} else if (k == len && ret != want) {
			T_FAIL("%s: whole: got %zd, want %zd", name, ret, want);
		} else if (ret != -EAGAIN && ret != want) {
			T_FAIL("%s: prefix %zu: got %zd, want -EAGAIN or %zd",
			       name, k, ret, want);
		}
	}
	for (k = 1; k <= len; k++) {
		uint8_t *p = realloc(grow, k);

		if (!p) {
			free(grow);
			T_FAIL("%s: out of memory", name);
		}
		grow = p;
		grow[k - 1] = in[k - 1];
		ret = parse(ctx, grow, k);
		if (ret != -EAGAIN)
			break;
	}
	free(grow);
	if (ret != want)
		T_FAIL("%s: bytewise: got %zd, want %zd", name, ret, want);
	if (want >= 0 && k != (size_t)want)
		T_FAIL("%s: bytewise: done at %zu, %s is %zd", name, k, what,
		       want);
	if (want < 0 && at && k != at)
		T_FAIL("%s: bytewise: error at %zu bytes, want %zu", name, k, at);
	return 0;
}

#endif
