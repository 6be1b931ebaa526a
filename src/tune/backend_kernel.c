/* SPDX-License-Identifier: MIT */
/* The kernel engine behind struct tune_backend: libsamepage's sp_ksm_*. */
#include "backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a process has that KSM may merge: the anonymous memory of its
 * VMAs flagged mergeable ("mg" in /proc/<pid>/smaps). Reading smaps costs
 * about 10 ms per GiB, so it is read again only when RssAnon moved. */
struct mg_cache {
	pid_t pid;
	uint64_t start;
	int64_t anon_kb;   /* RssAnon when measured */
	int64_t mg_kb;
};

#define MG_CACHE 256

struct kctx {
	sp_ksm *k;
	char root[512];
	size_t ncache;
	struct mg_cache cache[MG_CACHE];
};

/* Sum of "Anonymous:" over the VMAs whose VmFlags hold "mg"; -errno. */
static int64_t smaps_mergeable(const char *root, pid_t pid)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/proc/%d/smaps", root[0] && strcmp(root, "/") ? root : "", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[512];
	int64_t cur = 0, sum = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Anonymous:", 10) == 0)
			cur = strtoll(line + 10, NULL, 10);
		else if (strncmp(line, "VmFlags:", 8) == 0) {
			if (strstr(line, " mg"))
				sum += cur;
			cur = 0;
		}
	}
	fclose(f);
	return sum;
}

static int64_t mergeable_kb(struct kctx *x, pid_t pid, uint64_t start, int64_t anon_kb)
{
	struct mg_cache *c = NULL;
	for (size_t i = 0; i < x->ncache; i++)
		if (x->cache[i].pid == pid && x->cache[i].start == start)
			c = &x->cache[i];
	int64_t moved = c ? anon_kb - c->anon_kb : 0;
	if (moved < 0)
		moved = -moved;
	if (c && moved < 32 * 1024 && moved * 20 < c->anon_kb)
		return c->mg_kb;
	int64_t mg = smaps_mergeable(x->root, pid);
	if (mg < 0)
		return anon_kb;  /* smaps unreadable: RssAnon is the upper bound */
	if (!c) {
		if (x->ncache == MG_CACHE)
			x->ncache = 0;  /* crude, and rare: start over */
		c = &x->cache[x->ncache++];
		c->pid = pid;
		c->start = start;
	}
	c->anon_kb = anon_kb;
	c->mg_kb = mg;
	return mg;
}

static int k_read(struct tune_backend *b, struct tune_engine *out)
{
	struct kctx *x = b->ctx;
	memset(out, 0, sizeof(*out));
	out->cpu_seconds = -1;
	out->present = sp_ksm_available(x->k);
	if (!out->present)
		return 0;
	int r = sp_ksm_sample(x->k, &out->s);
	if (r)
		return r;
	out->has_advisor = (out->s.present >> SP_ADVISOR_MODE) & 1;
	sp_ksmd_info info;
	if (sp_ksmd_info_read(x->k, &info) == 0) {
		out->cpu_seconds = info.cpu_seconds;
		out->cpu_pid = info.pid;
	}
	return 0;
}

static int k_mergeable(struct tune_backend *b, struct tune_proc **out, size_t *n, size_t *unreadable)
{
	struct kctx *x = b->ctx;
	sp_proc_ksm *list;
	size_t count, unread = 0;
	*out = NULL;
	*n = 0;
	*unreadable = 0;
	int r = sp_proc_ksm_list(x->k, &list, &count, &unread);
	if (r)
		return r;
	struct tune_proc *procs = count ? calloc(count, sizeof(*procs)) : NULL;
	if (count && !procs) {
		free(list);
		return -ENOMEM;
	}
	size_t m = 0;
	for (size_t i = 0; i < count; i++) {
		/* Mergeable now: an exited process's ksm_stat may linger as a zombie's. */
		if (list[i].ksm_mergeable != 1 && list[i].ksm_merge_any != 1)
			continue;
		struct tune_proc *p = &procs[m];
		p->pid = list[i].pid;
		snprintf(p->comm, sizeof(p->comm), "%s", list[i].comm);
		p->merging_pages = list[i].ksm_merging_pages;
		if (tune_proc_anon(x->root, p->pid, &p->kb, &p->start) != 0)
			continue;  /* exited meanwhile */
		p->kb = mergeable_kb(x, p->pid, p->start, p->kb);
		m++;
	}
	free(list);
	*out = procs;
	*n = m;
	*unreadable = unread;
	return 0;
}

static int k_set(struct tune_backend *b, const sp_setting *set, size_t n, sp_diag *d)
{
	struct kctx *x = b->ctx;
	return sp_ksm_set(x->k, set, n, 0, d);
}

static void k_close(struct tune_backend *b)
{
	struct kctx *x = b->ctx;
	sp_ksm_close(x->k);
	free(x);
	free(b);
}

int tune_backend_kernel_open(const char *root, struct tune_backend **out)
{
	struct tune_backend *b = calloc(1, sizeof(*b));
	struct kctx *x = calloc(1, sizeof(*x));
	if (!b || !x) {
		free(b);
		free(x);
		return -ENOMEM;
	}
	int r = sp_ksm_open(root, &x->k);
	if (r) {
		free(b);
		free(x);
		return r;
	}
	snprintf(x->root, sizeof(x->root), "%s", root ? root : "");
	b->name = "kernel";
	b->ctx = x;
	b->read = k_read;
	b->mergeable = k_mergeable;
	b->set = k_set;
	b->close = k_close;
	*out = b;
	return 0;
}
