/* SPDX-License-Identifier: MIT */
/*
 * apply.c: `ringcast-tune apply` loads a profile into the running kernel
 * and installs it in /etc/sysctl.d so that boot does the same. Where the
 * host already has more than the profile asks (a larger tcp_mem on a big
 * machine, systemd's fs.file-max), the host's value is kept, in the
 * kernel and in the installed file alike: applying a profile never makes
 * a host worse. Nothing is written unless every key can be read first,
 * and --dry-run prints the plan and writes nothing at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tune.h"

struct plan {
	char merged[TUNE_MAX_KEYS][128];	/* what each key gets */
	bool change[TUNE_MAX_KEYS];		/* differs from live value */
	bool skip[TUNE_MAX_KEYS];		/* "-key" the kernel lacks */
};

static int read_text(const char *path, char *text, size_t len)
{
	size_t n;
	FILE *f = fopen(path, "re");
	int ret;

	if (!f)
		return -errno;
	n = fread(text, 1, len - 1, f);
	ret = ferror(f) ? -EIO : !feof(f) ? -EFBIG : 0;
	fclose(f);
	text[n] = '\0';
	return ret;
}

/* Decides every key's value; fails before anything is written. */
static int make_plan(const struct tune_profile *p, struct plan *pl)
{
	unsigned i;
	int ret, bad = 0;

	for (i = 0; i < p->nr; i++) {
		const struct tune_sysctl *k = &p->keys[i];
		char have[128];

		ret = tune_sysctl_read(k->key, have, sizeof(have));
		if (ret < 0 && k->ignore_missing) {
			pl->skip[i] = true;
			printf("skip  %-32s absent on this kernel\n", k->key);
			continue;
		}
		if (ret < 0) {
			printf("fail  %-32s %s\n", k->key, strerror(-ret));
			bad = ret;
			continue;
		}
		ret = tune_sysctl_merge(tune_sysctl_cmp(k->key), have,
					k->value, pl->merged[i],
					sizeof(pl->merged[i]));
		if (ret < 0)
			return ret;
		pl->change[i] = strcmp(have, pl->merged[i]) != 0;
		if (pl->change[i])
			printf("set   %-32s %s -> %s\n", k->key, have,
			       pl->merged[i]);
		else if (strcmp(have, k->value))
			printf("keep  %-32s %s (profile: %s; the host has "
			       "more)\n", k->key, have, k->value);
		else
			printf("keep  %-32s %s\n", k->key, have);
	}
	return bad;
}

/*
 * Writes the profile with the planned values to @dest through a
 * temporary file and rename(), so a crash leaves the old file or the new
 * one, never half of it. Comments are kept: they are the documentation.
 */
static int install(const char *dest, const char *src, const char *text,
		   const struct tune_profile *p, const struct plan *pl)
{
	char tmp[4200];
	const char *line = text;
	unsigned no = 0, i = 0;
	FILE *f;
	int ret = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", dest);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	/* The licence line stays first; then say where the file came from. */
	if (!strncmp(line, "# SPDX-License-Identifier:", 26)) {
		size_t n = strcspn(line, "\n");

		fwrite(line, 1, n, f);
		fputc('\n', f);
		line += n + (line[n] == '\n');
		no++;
	}
	fprintf(f, "# Installed by ringcast-tune apply from %s.\n# Where "
		"this host already had more than the profile asks, its value "
		"was kept.\n", src);
	while (*line) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) + 1 : strlen(line);

		no++;
		while (i < p->nr && p->keys[i].line < no)
			i++;
		if (i < p->nr && p->keys[i].line == no && !pl->skip[i])
			fprintf(f, "%s%s = %s\n",
				p->keys[i].ignore_missing ? "-" : "",
				p->keys[i].key, pl->merged[i]);
		else
			fwrite(line, 1, n, f);
		line += n;
	}
	if (fflush(f) || fsync(fileno(f)) < 0)
		ret = -errno;
	if (fclose(f) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, dest) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int tune_apply(const struct tune_apply_opts *o)
{
	static char text[32768];
	static struct tune_profile p;
	static struct plan pl;
	const char *dir = o->dest_dir ? o->dest_dir : "/etc/sysctl.d";
	const char *base = strrchr(o->profile_path, '/');
	char dest[4096];
	unsigned i, failed = 0, changed = 0;
	int ret;

	base = base ? base + 1 : o->profile_path;
	ret = read_text(o->profile_path, text, sizeof(text));
	if (ret < 0)
		return ret;
	ret = tune_profile_parse(&p, text);
	if (ret < 0) {
		fprintf(stderr, "ringcast-tune: %s:%u: not a sysctl.d line\n",
			o->profile_path, p.bad_line);
		return ret;
	}
	if (!o->dry_run && geteuid() != 0) {
		fprintf(stderr, "ringcast-tune: apply writes /proc/sys and "
			"%s: run it as root (or try --dry-run)\n", dir);
		return -EPERM;
	}
	if ((size_t)snprintf(dest, sizeof(dest), "%s/%s", dir, base) >=
	    sizeof(dest))
		return -ENAMETOOLONG;

	printf("ringcast-tune apply: %s -> %s%s\n", o->profile_path, dest,
	       o->dry_run ? " (dry run: nothing is changed)" : "");
	memset(&pl, 0, sizeof(pl));
	ret = make_plan(&p, &pl);
	if (ret < 0) {
		fprintf(stderr, "ringcast-tune: a key cannot be read; nothing "
			"was changed\n");
		return ret;
	}
	if (o->dry_run) {
		printf("would write %s and load it\n", dest);
		return 0;
	}

	for (i = 0; i < p.nr; i++) {
		if (!pl.change[i])
			continue;
		changed++;
		ret = tune_sysctl_write(p.keys[i].key, pl.merged[i]);
		if (ret < 0) {
			fprintf(stderr, "ringcast-tune: %s = %s: %s\n",
				p.keys[i].key, pl.merged[i], strerror(-ret));
			failed++;
		}
	}
	/* A value the kernel refused would fail again at every boot. */
	if (failed) {
		fprintf(stderr, "ringcast-tune: %u keys refused; %s not "
			"installed\n", failed, dest);
		return -EINVAL;
	}
	ret = install(dest, o->profile_path, text, &p, &pl);
	if (ret < 0) {
		fprintf(stderr, "ringcast-tune: %s: %s\n", dest,
			strerror(-ret));
		return ret;
	}
	printf("wrote %s; %u of %u keys changed\n", dest, changed, p.nr);
	return 0;
}
