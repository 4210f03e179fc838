/* SPDX-License-Identifier: MIT */
/*
 * www: the files the engine serves from its own binary (the status page,
 * the chat demo, ringcast.js), made at build time by engine/www/embed.py
 * from engine/www/ and clients/js/. Nothing is read from disk at run time.
 */
#ifndef RC_ENGINE_WWW_H
#define RC_ENGINE_WWW_H

#include <stddef.h>

struct eng_www {
	const char *path;		/* "/status", "/ringcast.js" */
	const char *type;		/* Content-Type */
	const unsigned char *data;
	size_t len;
};

/* Every embedded file; the last entry's path is NULL. */
extern const struct eng_www eng_www_files[];

#endif
