/* SPDX-License-Identifier: MIT */
/*
 * Reading our own memory map (/proc/self/smaps) to decide what may be
 * registered: only private anonymous memory that nobody else manages.
 * Registration is rare, so the cost of smaps is acceptable here.
 */
#include "internal.h"
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* True if the two-letter flag appears in a VmFlags line. */
static bool has_flag(const char *flags, const char *f)
{
	for (const char *p = flags; (p = strstr(p, f)); p += 2)
		if ((p == flags || p[-1] == ' ') && (p[2] == ' ' || p[2] == '\n' || p[2] == 0))
			return true;
	return false;
}

static void classify(struct sp_vma *v, const char *perms, unsigned long inode, const char *path,
		     const char *vmflags, const char *store_name)
{
	v->prot = (perms[0] == 'r' ? 1 : 0) | (perms[1] == 'w' ? 2 : 0) | (perms[2] == 'x' ? 4 : 0);
	v->shared = perms[3] == 's' || has_flag(vmflags, "sh");
	v->store = store_name && strstr(path, store_name) != NULL;
	v->file = inode != 0 && !v->store;
	/* "[heap]", "[stack]", "[anon:name]" are anonymous; a path is a file. */
	if (path[0] == '/' && !v->store)
		v->file = true;
	v->hugetlb = has_flag(vmflags, "ht");
	v->locked = has_flag(vmflags, "lo");
	v->uffd = has_flag(vmflags, "um") || has_flag(vmflags, "uw") || has_flag(vmflags, "ui");
	v->special = has_flag(vmflags, "io") || has_flag(vmflags, "pf") || has_flag(vmflags, "dd") ||
		     has_flag(vmflags, "de") || strncmp(path, "[vvar", 5) == 0 ||
		     strncmp(path, "[vdso", 5) == 0 || strncmp(path, "[vsyscall", 9) == 0;
	v->thp = has_flag(vmflags, "hg");
	v->growsdown = has_flag(vmflags, "gd");
}

int _sp_maps_read(uintptr_t start, uintptr_t end, const char *store_name, struct sp_vma **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	FILE *f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -errno;
	size_t cap = 0, count = 0;
	struct sp_vma *list = NULL, *cur = NULL;
	char line[512], perms[8], path[256];
	int r = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e, off, inode;
		unsigned dmaj, dmin;
		int consumed = 0;
		if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &s, &e, perms, &off, &dmaj, &dmin, &inode,
			   &consumed) >= 7 && strchr(line, '-') < strchr(line, ' ')) {
			cur = NULL;
			if (e <= start || s >= end)
				continue;
			if (count == cap) {
				cap = cap ? cap * 2 : 16;
				struct sp_vma *g = realloc(list, cap * sizeof(*g));
				if (!g) {
					r = -ENOMEM;
					break;
				}
				list = g;
			}
			cur = &list[count++];
			memset(cur, 0, sizeof(*cur));
			cur->start = s;
			cur->end = e;
			snprintf(path, sizeof(path), "%s", line + consumed);
			path[strcspn(path, "\n")] = 0;
			snprintf(cur->path, sizeof(cur->path), "%s", path);
			cur->inode = inode;
			snprintf(cur->perms, sizeof(cur->perms), "%s", perms);
			continue;
		}
		if (cur && strncmp(line, "VmFlags:", 8) == 0)
			classify(cur, cur->perms, cur->inode, cur->path, line + 8, store_name);
	}
	fclose(f);
	if (r) {
		free(list);
		return r;
	}
	*out = list;
	*n = count;
	return 0;
}

int _sp_maps_check(uintptr_t start, uintptr_t end, const char *store_name, char *why, size_t whylen)
{
	struct sp_vma *v;
	size_t n;
	int r = _sp_maps_read(start, end, store_name, &v, &n);
	if (r)
		return r;
	uintptr_t at = start;
	r = 0;
	for (size_t i = 0; i < n && !r; i++) {
		if (v[i].start > at) {
			snprintf(why, whylen, "%#lx-%#lx is not mapped", (unsigned long)at,
				 (unsigned long)v[i].start);
			r = -ENOMEM;
			break;
		}
		const char *bad = v[i].shared    ? "shared memory"
				  : v[i].hugetlb ? "hugetlb memory"
				  : v[i].file    ? "file-backed memory"
				  : v[i].locked  ? "locked memory (mlock)"
				  : v[i].special ? "a special mapping (I/O, PFN map or no-expand)"
				  : !(v[i].prot & 1) ? "memory that cannot be read (PROT_NONE)"
						     : NULL;
		if (bad) {
			snprintf(why, whylen, "%#lx-%#lx is %s%s%s", v[i].start, v[i].end, bad,
				 v[i].path[0] ? ": " : "", v[i].path);
			r = -EINVAL;
		}
		at = v[i].end;
	}
	if (!r && at < end) {
		snprintf(why, whylen, "%#lx-%#lx is not mapped", (unsigned long)at, (unsigned long)end);
		r = -ENOMEM;
	}
	free(v);
	return r;
}

int _sp_maps_count(void)
{
	int fd = _sp_prim_open("/proc/self/maps", O_RDONLY, 0);
	if (fd < 0)
		return fd;
	char buf[65536];
	ssize_t got;
	int lines = 0;
	while ((got = _sp_prim_read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < got; i++)
			lines += buf[i] == '\n';
	_sp_prim_close(fd);
	return got < 0 ? (int)got : lines;
}
