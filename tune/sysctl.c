/* SPDX-License-Identifier: MIT */
/*
 * sysctl.c: sysctl.d profiles and the live values under /proc/sys. A
 * profile is parsed the way sysctl.d(5) reads it; each key has a rule
 * saying which way a live value may differ from the profile and still
 * hold (a larger accept queue is fine, a larger tcp_rmem minimum is not),
 * so that `check` never calls a better-tuned host short and `apply` never
 * lowers what a host already has.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tune.h"

#ifndef TUNE_SYSCTL_DIR
#define TUNE_SYSCTL_DIR		"sysctl.d"
#endif
#ifndef TUNE_SYSCTL_INSTALLED
#define TUNE_SYSCTL_INSTALLED	"/usr/share/ringcast/sysctl.d"
#endif
#ifndef TUNE_BINDIR
#define TUNE_BINDIR		"/usr/bin"
#endif

/* Which way each key may differ; keys not listed take '>' per field. */
static const struct {
	const char *key;
	const char *cmp;
} rules[] = {
	/* A lower port is more ports; the range's top must reach as high. */
	{ "net.ipv4.ip_local_port_range",	"<>" },
	/* Shorter waits free orphans and find dead peers sooner. */
	{ "net.ipv4.tcp_fin_timeout",		"<" },
	{ "net.ipv4.tcp_keepalive_intvl",	"<" },
	{ "net.ipv4.tcp_keepalive_probes",	"<" },
	{ "net.ipv4.tcp_keepalive_time",	"<" },
	/*
	 * The minimum is what every socket keeps under memory pressure: a
	 * million of them must not be promised more. The initial size is
	 * the profile's; a larger autotuning maximum (6.18 has 32 MiB for
	 * receive) is the host's own choice and stays.
	 */
	{ "net.ipv4.tcp_rmem",			"<*>" },
	{ "net.ipv4.tcp_wmem",			"<*>" },
	/* Modes, not sizes. */
	{ "net.ipv4.tcp_syncookies",		"=" },
	{ "net.ipv4.tcp_tw_reuse",		"=" },
};

/*
 * sysctl.d(5): when the first separator is '/', the key is a path; when it
 * is '.', dots and slashes trade places ("conf.enp3s0/200.forwarding" is
 * conf/enp3s0.200/forwarding).
 */
static char swap(char c)
{
	return c == '.' ? '/' : c == '/' ? '.' : c;
}

/* @key with '.' separators, whichever form the profile used. */
static void dotted(const char *key, char *out, size_t len)
{
	const char *sep = strpbrk(key, "./");
	size_t i;

	snprintf(out, len, "%s", key);
	if (!sep || *sep == '.')
		return;
	for (i = 0; out[i]; i++)
		out[i] = swap(out[i]);
}

const char *tune_sysctl_cmp(const char *key)
{
	char k[96];
	size_t i;

	dotted(key, k, sizeof(k));
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (!strcmp(rules[i].key, k))
			return rules[i].cmp;
	return ">";
}

/* Collapses whitespace runs into one space and trims both ends. */
static void normalise(char *s)
{
	char *w = s, *r = s;
	int space = 0;

	while (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r')
		r++;
	for (; *r; r++) {
		if (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r') {
			space = 1;
			continue;
		}
		if (space && w != s)
			*w++ = ' ';
		space = 0;
		*w++ = *r;
	}
	*w = '\0';
}

int tune_profile_parse(struct tune_profile *p, const char *text)
{
	const char *line = text;
	unsigned no = 0;

	memset(p, 0, sizeof(*p));
	while (*line) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		char buf[512], *s, *eq, *key;
		struct tune_sysctl *k;

		no++;
		if (n >= sizeof(buf))
			goto bad;
		memcpy(buf, line, n);
		buf[n] = '\0';
		line += n + (end ? 1 : 0);

		s = buf + strspn(buf, " \t");
		if (!*s || *s == '\r' || *s == '#' || *s == ';')
			continue;
		eq = strchr(s, '=');
		if (!eq)
			goto bad;
		*eq = '\0';
		key = s;
		normalise(key);
		normalise(eq + 1);
		if (p->nr == TUNE_MAX_KEYS)
			return -E2BIG;
		k = &p->keys[p->nr];
		if (*key == '-') {
			k->ignore_missing = true;
			key++;
		}
		/* Globs ("conf.*.rp_filter") are not ours to read. */
		if (!*key || strpbrk(key, " *?[") || !eq[1] ||
		    strlen(key) >= sizeof(k->key) ||
		    strlen(eq + 1) >= sizeof(k->value))
			goto bad;
		strcpy(k->key, key);
		strcpy(k->value, eq + 1);
		k->line = no;
		p->nr++;
	}
	return 0;
bad:
	p->bad_line = no;
	return -EINVAL;
}

int tune_profile_load(struct tune_profile *p, const char *path)
{
	char text[32768];
	size_t n;
	FILE *f;
	int ret;

	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fread(text, 1, sizeof(text) - 1, f);
	ret = ferror(f) ? -EIO : 0;
	if (!ret && !feof(f))
		ret = -EFBIG;
	fclose(f);
	if (ret < 0)
		return ret;
	text[n] = '\0';
	return tune_profile_parse(p, text);
}

static bool exists(const char *path)
{
	return access(path, R_OK) == 0;
}

/* True when /proc/self/exe lives in the install's bindir. */
static bool installed(void)
{
	char exe[PATH_MAX], bindir[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return false;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return false;
	*slash = '\0';
	if (!realpath(TUNE_BINDIR, bindir))
		return false;
	return !strcmp(exe, bindir);
}

int tune_profile_find(char *path, size_t len, const char *name,
		      const char *dir)
{
	const char *dirs[2] = { TUNE_SYSCTL_DIR, TUNE_SYSCTL_INSTALLED };
	char file[256];
	unsigned i;
	int n;

	if (strchr(name, '/')) {
		n = snprintf(path, len, "%s", name);
		return n < 0 || (size_t)n >= len || !exists(path) ?
		       -ENOENT : 0;
	}
	n = strlen(name) > 5 && !strcmp(name + strlen(name) - 5, ".conf") ?
	    snprintf(file, sizeof(file), "%s", name) :
	    snprintf(file, sizeof(file), "90-ringcast-%s.conf", name);
	if (n < 0 || (size_t)n >= sizeof(file))
		return -ENOENT;
	if (dir) {
		n = snprintf(path, len, "%s/%s", dir, file);
		return n < 0 || (size_t)n >= len || !exists(path) ?
		       -ENOENT : 0;
	}
	/*
	 * A build tree's binary reads the source tree, so edits show at once;
	 * the installed one prefers what was installed with it.
	 */
	if (installed()) {
		dirs[0] = TUNE_SYSCTL_INSTALLED;
		dirs[1] = TUNE_SYSCTL_DIR;
	}
	for (i = 0; i < 2; i++) {
		n = snprintf(path, len, "%s/%s", dirs[i], file);
		if (n > 0 && (size_t)n < len && exists(path))
			return 0;
	}
	return -ENOENT;
}

int tune_sysctl_path(char *buf, size_t len, const char *key)
{
	const char *sep = strpbrk(key, "./");
	int n = snprintf(buf, len, "/proc/sys/%s", key);
	size_t i;

	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (sep && *sep == '/')
		return 0;
	for (i = strlen("/proc/sys/"); buf[i]; i++)
		buf[i] = swap(buf[i]);
	return 0;
}

int tune_sysctl_read(const char *key, char *buf, size_t len)
{
	char path[256];
	ssize_t n;
	int fd, ret;

	ret = tune_sysctl_path(path, sizeof(path), key);
	if (ret < 0)
		return ret;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	ret = n < 0 ? -errno : 0;
	close(fd);
	if (ret < 0)
		return ret;
	buf[n] = '\0';
	normalise(buf);
	return 0;
}

int tune_sysctl_write(const char *key, const char *value)
{
	char path[256];
	size_t n = strlen(value);
	ssize_t w;
	int fd, ret;

	ret = tune_sysctl_path(path, sizeof(path), key);
	if (ret < 0)
		return ret;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* One write: proc handlers parse a value from a single call. */
	w = write(fd, value, n);
	ret = w < 0 ? -errno : (size_t)w != n ? -EIO : 0;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	return ret;
}

/* The @i-th space-separated field of @s into @out; false past the end. */
static bool field(const char *s, unsigned i, char *out, size_t len)
{
	size_t n;

	while (i--) {
		s = strchr(s, ' ');
		if (!s)
			return false;
		s++;
	}
	if (!*s)
		return false;
	n = strcspn(s, " ");
	if (n >= len)
		n = len - 1;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

static unsigned nfields(const char *s)
{
	unsigned n = *s ? 1 : 0;

	for (; *s; s++)
		n += *s == ' ';
	return n;
}

static bool number(const char *s, unsigned long long *v)
{
	char *end;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return !errno && !*end;
}

static char cmp_at(const char *cmp, unsigned i)
{
	size_t n = strlen(cmp);

	return i < n ? cmp[i] : cmp[n - 1];
}

bool tune_sysctl_holds(const char *cmp, const char *have, const char *want)
{
	unsigned i, n = nfields(want);

	if (nfields(have) != n)
		return false;
	for (i = 0; i < n; i++) {
		char h[64], w[64], c = cmp_at(cmp, i);
		unsigned long long hv, wv;

		field(have, i, h, sizeof(h));
		field(want, i, w, sizeof(w));
		if (c == '*')
			continue;
		if (!number(h, &hv) || !number(w, &wv)) {
			if (strcmp(h, w))
				return false;
			continue;
		}
		if ((c == '>' && hv < wv) || (c == '<' && hv > wv) ||
		    (c == '=' && hv != wv))
			return false;
	}
	return true;
}

int tune_sysctl_merge(const char *cmp, const char *have, const char *want,
		      char *out, size_t len)
{
	unsigned i, n = nfields(want);
	size_t off = 0;

	/* A value of another shape cannot be merged: take the profile's. */
	if (nfields(have) != n) {
		if ((size_t)snprintf(out, len, "%s", want) >= len)
			return -ENOSPC;
		return 0;
	}
	for (i = 0; i < n; i++) {
		char h[64], w[64], c = cmp_at(cmp, i);
		const char *pick = w;
		unsigned long long hv, wv;
		int m;

		field(have, i, h, sizeof(h));
		field(want, i, w, sizeof(w));
		if (number(h, &hv) && number(w, &wv) &&
		    ((c == '>' && hv > wv) || (c == '<' && hv < wv)))
			pick = h;
		m = snprintf(out + off, len - off, "%s%s", i ? " " : "", pick);
		if (m < 0 || (size_t)m >= len - off)
			return -ENOSPC;
		off += (size_t)m;
	}
	return 0;
}

void tune_sysctl_need_text(const char *cmp, const char *want, char *buf,
			   size_t len)
{
	unsigned i, n = nfields(want);
	size_t off = 0;

	buf[0] = '\0';
	for (i = 0; i < n && off < len; i++) {
		char w[64], c = cmp_at(cmp, i);
		int m;

		field(want, i, w, sizeof(w));
		/* ">= 65535" alone, ">=786432 >=1048576 ..." in a row. */
		m = snprintf(buf + off, len - off, "%s%s%s%s", i ? " " : "",
			     c == '>' ? ">=" : c == '<' ? "<=" :
			     c == '=' ? "=" : "",
			     n == 1 && c != '*' ? " " : "",
			     c == '*' ? "any" : w);
		if (m < 0)
			return;
		off += (size_t)m;
	}
}

bool tune_sysctl_scaled_need(const char *key, const struct tune_cfg *cfg,
			     uint64_t *need)
{
	char k[96], nr[96], used[64];
	unsigned long long v;

	dotted(key, k, sizeof(k));
	if (!strcmp(k, "fs.file-max")) {
		/*
		 * Every struct file on the host counts, io_uring direct
		 * descriptors included (alloc_empty_file(), fs/file_table.c):
		 * the connections plus what is open now.
		 */
		*need = cfg->conns;
		if (tune_sysctl_read("fs.file-nr", nr, sizeof(nr)) == 0 &&
		    field(nr, 0, used, sizeof(used)) && number(used, &v))
			*need += v;
		return true;
	}
	if (!strcmp(k, "fs.nr_open")) {
		/* The ceiling of RLIMIT_NOFILE, which caps each ring. */
		*need = (cfg->conns + cfg->shards - 1) / cfg->shards;
		return true;
	}
	if (!strcmp(k, "net.ipv4.tcp_max_orphans") ||
	    !strcmp(k, "net.ipv4.tcp_max_tw_buckets")) {
		/* A graceful stop closes every connection at once. */
		*need = cfg->conns;
		return true;
	}
	return false;
}
