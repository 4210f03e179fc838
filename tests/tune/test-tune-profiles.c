/* SPDX-License-Identifier: MIT */
/*
 * Description: the sysctl.d profiles and the code that reads them. Every
 * key of every profile exists under /proc/sys on this kernel, has the
 * shape of the live value and a comment line above it; the parser reads
 * sysctl.d(5) as systemd does; merging a live value with a profile's
 * always yields one that check calls holding. Reads /proc/sys, writes
 * nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "tune.h"

static unsigned nfields(const char *s)
{
	unsigned n = *s ? 1 : 0;

	for (; *s; s++)
		n += *s == ' ';
	return n;
}

/* The text of line @no (1-based) of @text into @out. */
static void nth_line(const char *text, unsigned no, char *out, size_t len)
{
	size_t n;

	while (--no && text) {
		text = strchr(text, '\n');
		text = text ? text + 1 : NULL;
	}
	out[0] = '\0';
	if (!text)
		return;
	n = strcspn(text, "\n");
	if (n >= len)
		n = len - 1;
	memcpy(out, text, n);
	out[n] = '\0';
}

static int test_profile(const char *path)
{
	static char text[32768];
	struct tune_profile p;
	unsigned i;
	size_t n;
	FILE *f;

	f = fopen(path, "r");
	T_CHECK(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	T_CHECK(strncmp(text, "# SPDX-License-Identifier: MIT\n", 31) == 0);
	if (tune_profile_parse(&p, text) < 0)
		T_FAIL("%s:%u: does not parse", path, p.bad_line);
	T_CHECK(p.nr > 0);

	for (i = 0; i < p.nr; i++) {
		const struct tune_sysctl *k = &p.keys[i];
		const char *cmp = tune_sysctl_cmp(k->key);
		char have[128], merged[128], above[256];
		int ret;

		/* tcp_tw_recycle left in 4.12; nothing retired belongs here. */
		T_CHECK(!strstr(k->key, "tw_recycle"));
		ret = tune_sysctl_read(k->key, have, sizeof(have));
		if (ret < 0)
			T_FAIL("%s:%u: %s: %s on this kernel", path, k->line,
			       k->key, strerror(-ret));
		if (nfields(have) != nfields(k->value))
			T_FAIL("%s: %s has %u fields here, the profile %u",
			       path, k->key, nfields(have),
			       nfields(k->value));
		nth_line(text, k->line - 1, above, sizeof(above));
		if (above[0] != '#')
			T_FAIL("%s:%u: no comment line above %s", path,
			       k->line, k->key);
		/* What apply would write is what check accepts. */
		T_CHECK(tune_sysctl_merge(cmp, have, k->value, merged,
					  sizeof(merged)) == 0);
		if (!tune_sysctl_holds(cmp, merged, k->value))
			T_FAIL("%s: merged %s '%s' does not hold", path,
			       k->key, merged);
		printf("%s: %s = %s (live %s)\n", path, k->key, k->value,
		       have);
	}
	return 0;
}

static int test_profiles(const char *dir)
{
	char path[4096];
	struct dirent *de;
	unsigned seen = 0;
	DIR *d = opendir(dir);

	T_CHECK(d);
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (n < 6 || strcmp(de->d_name + n - 5, ".conf"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (test_profile(path)) {
			closedir(d);
			return 1;
		}
		seen++;
	}
	closedir(d);
	/* At least the server and the load-generator profiles. */
	T_CHECK(seen >= 2);
	T_CHECK(tune_profile_find(path, sizeof(path), "server", dir) == 0);
	T_CHECK(tune_profile_find(path, sizeof(path), "loadgen", dir) == 0);
	T_CHECK(tune_profile_find(path, sizeof(path), "nonesuch", dir) ==
		-ENOENT);
	/* The build-time default finds them without a directory. */
	T_CHECK(tune_profile_find(path, sizeof(path), "server", NULL) == 0);
	return 0;
}

static int test_parse(void)
{
	struct tune_profile p;

	T_CHECK(tune_profile_parse(&p, "# c\n; c\n\n  a.b = 1\n"
				   "-c/d.e =  4096\t16384  \n") == 0);
	T_CHECK(p.nr == 2);
	T_CHECK(!strcmp(p.keys[0].key, "a.b") && !strcmp(p.keys[0].value, "1"));
	T_CHECK(p.keys[0].line == 4 && !p.keys[0].ignore_missing);
	T_CHECK(!strcmp(p.keys[1].key, "c/d.e"));
	T_CHECK(!strcmp(p.keys[1].value, "4096 16384"));
	T_CHECK(p.keys[1].ignore_missing);

	T_CHECK(tune_profile_parse(&p, "a.b = 1\nno equals\n") == -EINVAL);
	T_CHECK(p.bad_line == 2);
	T_CHECK(tune_profile_parse(&p, "net.ipv4.conf.*.rp_filter = 1\n") ==
		-EINVAL);
	T_CHECK(tune_profile_parse(&p, "a.b =\n") == -EINVAL);
	return 0;
}

static int test_path(void)
{
	char b[256];

	T_CHECK(tune_sysctl_path(b, sizeof(b), "net.core.somaxconn") == 0);
	T_CHECK(!strcmp(b, "/proc/sys/net/core/somaxconn"));
	/* sysctl.d(5)'s own example: both name enp3s0.200. */
	T_CHECK(tune_sysctl_path(b, sizeof(b),
				 "net.ipv4.conf.enp3s0/200.forwarding") == 0);
	T_CHECK(!strcmp(b, "/proc/sys/net/ipv4/conf/enp3s0.200/forwarding"));
	T_CHECK(tune_sysctl_path(b, sizeof(b),
				 "net/ipv4/conf/enp3s0.200/forwarding") == 0);
	T_CHECK(!strcmp(b, "/proc/sys/net/ipv4/conf/enp3s0.200/forwarding"));
	T_CHECK(!strcmp(tune_sysctl_cmp("net/ipv4/tcp_fin_timeout"), "<"));
	T_CHECK(tune_sysctl_read("fs.no_such_key", b, sizeof(b)) == -ENOENT);
	return 0;
}

static int test_compare(void)
{
	char m[128];

	T_CHECK(tune_sysctl_holds(">", "65535", "65535"));
	T_CHECK(tune_sysctl_holds(">", "70000", "65535"));
	T_CHECK(!tune_sysctl_holds(">", "4096", "65535"));
	T_CHECK(tune_sysctl_holds("<", "15", "15"));
	T_CHECK(!tune_sysctl_holds("<", "60", "15"));
	T_CHECK(!tune_sysctl_holds("=", "2", "1"));
	T_CHECK(tune_sysctl_holds("<>", "1024 65535", "1024 65535"));
	T_CHECK(!tune_sysctl_holds("<>", "32768 60999", "1024 65535"));
	T_CHECK(tune_sysctl_holds("<*>", "4096 131072 33554432",
				  "4096 131072 6291456"));
	T_CHECK(!tune_sysctl_holds("<*>", "65536 131072 33554432",
				   "4096 131072 6291456"));
	/* The last rule repeats over the remaining fields. */
	T_CHECK(!tune_sysctl_holds(">", "800000 1048576 100",
				   "786432 1048576 1572864"));
	/* Another shape never holds. */
	T_CHECK(!tune_sysctl_holds(">", "1 2", "1"));
	T_CHECK(tune_sysctl_holds(">", "9223372036854775807",
				  "9223372036854775807"));

	/* Merge keeps what exceeds the profile, takes the profile else. */
	T_CHECK(tune_sysctl_merge("<*>", "4096 131072 33554432",
				  "4096 65536 6291456", m, sizeof(m)) == 0);
	T_CHECK(!strcmp(m, "4096 65536 33554432"));
	T_CHECK(tune_sysctl_merge("<>", "32768 60999", "1024 65535", m,
				  sizeof(m)) == 0);
	T_CHECK(!strcmp(m, "1024 65535"));
	T_CHECK(tune_sysctl_merge(">", "2466181", "9223372036854775807", m,
				  sizeof(m)) == 0);
	T_CHECK(!strcmp(m, "9223372036854775807"));
	T_CHECK(tune_sysctl_merge("=", "2", "1", m, sizeof(m)) == 0);
	T_CHECK(!strcmp(m, "1"));
	T_CHECK(tune_sysctl_merge(">", "1", "123456", m, 4) == -ENOSPC);
	/* A live value of another shape takes the profile's whole. */
	T_CHECK(tune_sysctl_merge(">", "1 2", "3", m, sizeof(m)) == 0);
	T_CHECK(!strcmp(m, "3"));

	tune_sysctl_need_text("<*>", "4096 131072 6291456", m, sizeof(m));
	T_CHECK(!strcmp(m, "<=4096 any >=6291456"));
	tune_sysctl_need_text(">", "65535", m, sizeof(m));
	T_CHECK(!strcmp(m, ">= 65535"));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SYSCTL_DIR\n", argv[0]);
		return T_EXIT_FAIL;
	}
	if (test_parse() || test_path() || test_compare() ||
	    test_profiles(argv[1]))
		return T_EXIT_FAIL;
	return T_EXIT_PASS;
}
