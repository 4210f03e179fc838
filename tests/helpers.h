/* SPDX-License-Identifier: MIT */
/*
 * helpers: what every C test shares. Exit codes follow liburing and the
 * automake convention meson understands.
 */
#ifndef RC_TESTS_HELPERS_H
#define RC_TESTS_HELPERS_H

#include <stdio.h>

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

#endif
