/* SPDX-License-Identifier: MIT */
/*
 * json: the C face of simdjson (json_shim.cc). ringcast's C code never sees
 * C++; this header is all it knows of simdjson.
 */
#ifndef RC_PROTO_JSON_H
#define RC_PROTO_JSON_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes simdjson may read past the end of an input it parses. */
#define JSON_PADDING 64

/* True when @p[0..@n) is valid UTF-8 (simdjson's validator). */
bool json_utf8_valid(const void *p, size_t n);

#ifdef __cplusplus
}
#endif

#endif
