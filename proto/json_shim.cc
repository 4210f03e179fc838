/* SPDX-License-Identifier: MIT */
/*
 * json_shim: the only C++ in ringcast, a thin extern "C" layer over
 * simdjson. Built with -fno-exceptions and SIMDJSON_EXCEPTIONS=0, so every
 * simdjson call returns an error_code; json_errno() is the one place those
 * become -errno for the C side. Today it exports UTF-8 validation; command
 * parsing with the ondemand API goes here too.
 */
#include <cerrno>

#include <simdjson.h>

#include "json.h"

namespace {

/* The one simdjson -> -errno mapping; unused until parsing lands. */
[[maybe_unused]] int json_errno(simdjson::error_code e)
{
	switch (e) {
	case simdjson::SUCCESS:
		return 0;
	case simdjson::MEMALLOC:
		return -ENOMEM;
	case simdjson::CAPACITY:
	case simdjson::DEPTH_ERROR:
		return -E2BIG;
	default:
		return -EBADMSG;
	}
}

}	/* namespace */

extern "C" bool json_utf8_valid(const void *p, size_t n)
{
	/* validate_utf8() reads exactly n bytes: no JSON_PADDING here. */
	if (!n)
		return true;
	return simdjson::validate_utf8(static_cast<const char *>(p), n);
}
