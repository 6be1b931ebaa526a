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

/* A line reader over /proc/self/smaps with a fixed buffer: no stdio, no
 * malloc. The preload library interposes munmap, and free() may call it:
 * the engine must not call into libc's allocator while it holds its lock. */
struct line_reader {
	int fd;
	char buf[65536];
	size_t len, pos;
};

static bool next_line(struct line_reader *lr, char *line, size_t cap)
{
	size_t n = 0;
	for (;;) {
		if (lr->pos == lr->len) {
			ssize_t r = _sp_prim_read(lr->fd, lr->buf, sizeof(lr->buf));
			if (r <= 0) {
				line[n < cap ? n : cap - 1] = 0;
				return n > 0;
			}
			lr->len = (size_t)r;
			lr->pos = 0;
		}
		char c = lr->buf[lr->pos++];
		if (c == '\n') {
			line[n < cap ? n : cap - 1] = 0;
			return true;
		}
		if (n + 1 < cap)
			line[n] = c;
		n++;
	}
}

static unsigned long hex(const char **p)
{
	unsigned long v = 0;
	for (;; (*p)++) {
		char c = **p;
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return v;
		v = v * 16 + (unsigned long)d;
	}
}

/* "start-end perms offset dev inode path": true if this is a VMA header. */
static bool parse_header(const char *line, struct sp_vma *v)
{
	const char *p = line;
	unsigned long s = hex(&p);
	if (*p != '-')
		return false;
	p++;
	unsigned long e = hex(&p);
	if (*p != ' ')
		return false;
	p++;
	memset(v, 0, sizeof(*v));
	v->start = s;
	v->end = e;
	for (int i = 0; i < 4 && *p && *p != ' '; i++)
		v->perms[i] = *p++;
	/* offset, dev, inode */
	for (int field = 0; field < 3; field++) {
		while (*p == ' ')
			p++;
		const char *f = p;
		while (*p && *p != ' ')
			p++;
		if (field == 2) {
			unsigned long ino = 0;
			for (; f < p; f++)
				ino = ino * 10 + (unsigned long)(*f - '0');
			v->inode = ino;
		}
	}
	while (*p == ' ')
		p++;
	snprintf(v->path, sizeof(v->path), "%s", p);
	return true;
}

int _sp_maps_read(uintptr_t start, uintptr_t end, const char *store_name, struct sp_vmas *out)
{
	memset(out, 0, sizeof(*out));
	struct line_reader *lr = _sp_meta_alloc(sizeof(*lr));
	if (!lr)
		return -ENOMEM;
	lr->fd = _sp_prim_open("/proc/self/smaps", O_RDONLY, 0);
	if (lr->fd < 0) {
		int r = lr->fd;
		_sp_meta_free(lr, sizeof(*lr));
		return r;
	}
	size_t cap = 0, count = 0;
	struct sp_vma *list = NULL, *cur = NULL, hdr;
	char line[512];
	int r = 0;
	while (next_line(lr, line, sizeof(line))) {
		if (parse_header(line, &hdr)) {
			cur = NULL;
			if (hdr.end <= start || hdr.start >= end)
				continue;
			if (count == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				struct sp_vma *g = _sp_meta_realloc(list, cap * sizeof(*g), ncap * sizeof(*g));
				if (!g) {
					r = -ENOMEM;
					break;
				}
				list = g;
				cap = ncap;
			}
			cur = &list[count++];
			*cur = hdr;
			continue;
		}
		if (cur && strncmp(line, "VmFlags:", 8) == 0)
			classify(cur, cur->perms, cur->inode, cur->path, line + 8, store_name);
	}
	_sp_prim_close(lr->fd);
	_sp_meta_free(lr, sizeof(*lr));
	if (r) {
		_sp_meta_free(list, cap * sizeof(*list));
		return r;
	}
	out->v = list;
	out->n = count;
	out->cap = cap;
	return 0;
}

void _sp_maps_free(struct sp_vmas *m)
{
	if (m->v)
		_sp_meta_free(m->v, m->cap * sizeof(*m->v));
	memset(m, 0, sizeof(*m));
}

int _sp_maps_check(uintptr_t start, uintptr_t end, const char *store_name, char *why, size_t whylen)
{
	struct sp_vmas m;
	int r = _sp_maps_read(start, end, store_name, &m);
	if (r)
		return r;
	struct sp_vma *v = m.v;
	size_t n = m.n;
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
	_sp_maps_free(&m);
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
