/* SPDX-License-Identifier: MIT */
/*
 * What the policies read about the host: /proc/meminfo, memory PSI, and
 * processes by name with their memory (what `pgrep` and `ps -o rsz=`
 * gave the original script).
 */
#include "backend.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void host_path(const char *root, const char *rel, char *buf, size_t len)
{
	if (!root || !root[0] || strcmp(root, "/") == 0)
		root = "";
	snprintf(buf, len, "%s%s", root, rel);
}

/* Whole small file into buf: length, or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	while (got + 1 < len) {
		ssize_t r = read(fd, buf + got, len - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = 0;
	return (ssize_t)got;
}

/* The number after "Key:" in "Key:   1234 kB" lines; -1 if absent. */
static int64_t field_kb(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, key, kl) == 0 && l[kl] == ':') {
			const char *p = l + kl + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			if (!isdigit((unsigned char)*p))
				return -1;
			return strtoll(p, NULL, 10);
		}
	}
	return -1;
}

int tune_meminfo_parse(const char *text, struct tune_meminfo *m)
{
	memset(m, 0, sizeof(*m));
	m->total = field_kb(text, "MemTotal");
	if (m->total < 0)
		return -EINVAL;
	int64_t v;
	m->free = (v = field_kb(text, "MemFree")) > 0 ? v : 0;
	m->buffers = (v = field_kb(text, "Buffers")) > 0 ? v : 0;
	m->cached = (v = field_kb(text, "Cached")) > 0 ? v : 0;
	v = field_kb(text, "MemAvailable");
	m->have_available = v >= 0;
	m->available = v >= 0 ? v : m->free + m->buffers + m->cached;
	return 0;
}

int tune_psi_parse(const char *text, double *avg10)
{
	const char *l = strstr(text, "some ");
	if (!l || (l != text && l[-1] != '\n'))
		return -EINVAL;
	const char *a = strstr(l, "avg10=");
	const char *nl = strchr(l, '\n');
	if (!a || (nl && a > nl))
		return -EINVAL;
	char *end;
	double v = strtod(a + 6, &end);
	if (end == a + 6 || v < 0)
		return -EINVAL;
	*avg10 = v;
	return 0;
}

int tune_read_meminfo(const char *root, struct tune_meminfo *out)
{
	char path[PATH_MAX], buf[8192];
	host_path(root, "/proc/meminfo", path, sizeof(path));
	ssize_t r = read_small(path, buf, sizeof(buf));
	if (r < 0)
		return (int)r;
	return tune_meminfo_parse(buf, out);
}

int tune_read_psi(const char *root, double *avg10)
{
	char path[PATH_MAX], buf[512];
	host_path(root, "/proc/pressure/memory", path, sizeof(path));
	ssize_t r = read_small(path, buf, sizeof(buf));
	if (r < 0)
		return (int)r;
	return tune_psi_parse(buf, avg10);
}

static bool is_pid(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* starttime, field 22 of /proc/<pid>/stat (after the parenthesised comm). */
static int read_start(const char *root, pid_t pid, uint64_t *start)
{
	char rel[64], path[PATH_MAX], buf[1024];
	snprintf(rel, sizeof(rel), "/proc/%d/stat", (int)pid);
	host_path(root, rel, path, sizeof(path));
	ssize_t r = read_small(path, buf, sizeof(buf));
	if (r < 0)
		return (int)r;
	char *p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	/* field 3 (state) follows ") "; starttime is field 22. */
	p += 2;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	*start = strtoull(p, NULL, 10);
	return 0;
}

int tune_proc_anon(const char *root, pid_t pid, int64_t *anon_kb, uint64_t *start)
{
	char rel[64], path[PATH_MAX], buf[4096];
	snprintf(rel, sizeof(rel), "/proc/%d/status", (int)pid);
	host_path(root, rel, path, sizeof(path));
	ssize_t r = read_small(path, buf, sizeof(buf));
	if (r < 0)
		return (int)r;
	int64_t v = field_kb(buf, "RssAnon");
	*anon_kb = v > 0 ? v : 0;
	*start = 0;
	read_start(root, pid, start);
	return 0;
}

/* ps -o rsz= / pss= / vsz=: kB; 0 for kernel threads, as ps prints. */
static int proc_metric(const char *root, pid_t pid, enum tune_metric metric, int64_t *kb)
{
	char rel[64], path[PATH_MAX], buf[4096];
	snprintf(rel, sizeof(rel), metric == TUNE_PSS ? "/proc/%d/smaps_rollup" : "/proc/%d/status",
		 (int)pid);
	host_path(root, rel, path, sizeof(path));
	ssize_t r = read_small(path, buf, sizeof(buf));
	if (r < 0)
		return (int)r;
	int64_t v = field_kb(buf, metric == TUNE_PSS ? "Pss" : metric == TUNE_VSZ ? "VmSize" : "VmRSS");
	*kb = v > 0 ? v : 0;
	return 0;
}

int tune_scan_pattern(const char *root, const regex_t *re, enum tune_metric metric,
		      struct tune_proc **out, size_t *n, size_t *unreadable)
{
	*out = NULL;
	*n = 0;
	*unreadable = 0;
	char path[PATH_MAX];
	host_path(root, "/proc", path, sizeof(path));
	DIR *dir = opendir(path);
	if (!dir)
		return -errno;
	size_t cap = 0;
	struct tune_proc *list = NULL;
	pid_t self = getpid();
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (!is_pid(de->d_name))
			continue;
		pid_t pid = (pid_t)atoi(de->d_name);
		if (pid == self && (!root || !root[0] || strcmp(root, "/") == 0))
			continue;  /* pgrep never lists itself */
		char rel[64], comm[64];
		snprintf(rel, sizeof(rel), "/proc/%d/comm", (int)pid);
		host_path(root, rel, path, sizeof(path));
		if (read_small(path, comm, sizeof(comm)) < 0)
			continue;  /* gone meanwhile */
		comm[strcspn(comm, "\n")] = 0;
		if (regexec(re, comm, 0, NULL, 0) != 0)
			continue;
		struct tune_proc p = { .pid = pid };
		snprintf(p.comm, sizeof(p.comm), "%s", comm);
		int r = proc_metric(root, pid, metric, &p.kb);
		if (r == -ENOENT || r == -ESRCH)
			continue;
		if (r) {
			(*unreadable)++;
			continue;
		}
		read_start(root, pid, &p.start);
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			struct tune_proc *g = realloc(list, cap * sizeof(*list));
			if (!g) {
				free(list);
				closedir(dir);
				return -ENOMEM;
			}
			list = g;
		}
		list[(*n)++] = p;
	}
	closedir(dir);
	*out = list;
	return 0;
}
