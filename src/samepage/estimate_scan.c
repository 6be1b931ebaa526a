/* SPDX-License-Identifier: MIT */
/*
 * Reading a process's memory for `samepage estimate`, changing nothing:
 * which mappings count comes from /proc/PID/maps, which pages are resident
 * from /proc/PID/pagemap (so nothing is faulted in or swapped in), and the
 * pages themselves from process_vm_readv(2) in batches, or /proc/PID/mem
 * where that system call is blocked. Each page is then either zero or a
 * 64-bit hash for the count in estimate_table.c.
 */
#include "estimate_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

/* PAGEMAP_SCAN (Linux 6.7), spelled out: Debian 12's headers predate it. */
struct est_pm_region {
	uint64_t start, end, categories;
};
struct est_pm_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define EST_PAGEMAP_SCAN _IOWR('f', 16, struct est_pm_arg)
#define EST_PAGE_IS_FILE (1u << 2)
#define EST_PAGE_IS_PRESENT (1u << 3)
#define EST_PAGE_IS_PFNZERO (1u << 5)

/* /proc/PID/pagemap entries: bit 63 present, bit 61 file page or shared. */
#define PM_PRESENT (1ull << 63)
#define PM_FILE (1ull << 61)

#define MAX_IOV 1024          /* the kernel's UIO_MAXIOV */
#define REGIONS 512
#define DEFAULT_BATCH (1u << 20)

struct range {
	uint64_t start, end;
};

struct est_scanner {
	struct est_options o;
	long page;
	size_t buf_pages;
	unsigned char *buf;          /* one batch of pages */
	uint64_t *hashes;            /* their hashes */
	struct iovec iov[MAX_IOV];   /* where the batch comes from */
	size_t npend, pend_pages;
	struct est_pm_region regions[REGIONS];
	uint64_t pm[REGIONS];        /* pagemap entries, without PAGEMAP_SCAN */
	bool no_pm_scan;             /* the kernel lacks PAGEMAP_SCAN */
	bool no_vm_readv;            /* process_vm_readv is blocked (ENOSYS) */
	struct range *ranges;
	size_t nranges, cap_ranges;
	dev_t huge[16];              /* hugetlbfs devices (--all-private) */
	size_t nhuge;
	/* the process being read */
	pid_t pid;
	uint32_t proc;
	struct est_table *t;
	struct est_counts *c;
	bool use_mem;
	int mem_fd;
};

int est_scanner_new(const struct est_options *o, struct est_scanner **out)
{
	struct est_scanner *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	s->page = sysconf(_SC_PAGESIZE);
	size_t batch = o->batch_bytes ? o->batch_bytes : DEFAULT_BATCH;
	s->buf_pages = batch / (size_t)s->page ? batch / (size_t)s->page : 1;
	s->hashes = calloc(s->buf_pages, sizeof(*s->hashes));
	if (!s->hashes || posix_memalign((void **)&s->buf, (size_t)s->page, s->buf_pages * (size_t)s->page)) {
		free(s->hashes);
		free(s);
		return -ENOMEM;
	}
	s->mem_fd = -1;
	*out = s;
	return 0;
}

void est_scanner_free(struct est_scanner *s)
{
	if (!s)
		return;
	free(s->buf);
	free(s->hashes);
	free(s->ranges);
	free(s);
}

long est_scanner_page_size(const struct est_scanner *s)
{
	return s->page;
}

size_t est_scanner_bytes(const struct est_scanner *s)
{
	return sizeof(*s) + s->buf_pages * ((size_t)s->page + sizeof(uint64_t)) +
	       s->cap_ranges * sizeof(struct range);
}

bool est_page_is_zero(const void *p, size_t len)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < len / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	return true;
}

/* ------------------------------------------------------------ mappings */

static int open_errno(int e)
{
	/* a process that has gone, or a thread id that is not a process */
	return e == ENOENT ? -ESRCH : -e;
}

/* hugetlbfs mounts the process sees: private mappings of files there are
 * huge pages, which merging never touches. */
static void load_hugetlb_devices(struct est_scanner *s)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	s->nhuge = 0;
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)s->pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0 && s->nhuge < sizeof(s->huge) / sizeof(s->huge[0])) {
		unsigned maj, min;
		const char *sep = strstr(line, " - ");
		if (sep && strncmp(sep + 3, "hugetlbfs ", 10) == 0 &&
		    sscanf(line, "%*u %*u %u:%u", &maj, &min) == 2)
			s->huge[s->nhuge++] = makedev(maj, min);
	}
	free(line);
	fclose(f);
}

static bool is_hugetlb(const struct est_scanner *s, unsigned maj, unsigned min, const char *path)
{
	if (strncmp(path, "/anon_hugepage", 14) == 0)
		return true;
	for (size_t i = 0; i < s->nhuge; i++)
		if (s->huge[i] == makedev(maj, min))
			return true;
	return false;
}

/* Whether a line of /proc/PID/maps is memory merging could share. */
static bool counted(const struct est_scanner *s, const char *perms, unsigned maj, unsigned min,
		    unsigned long inode, const char *path)
{
	if (perms[0] != 'r' || perms[3] != 'p')
		return false;  /* unreadable (guard pages) or shared */
	if (inode == 0) {
		/* anonymous: unnamed, the heap, stacks, named anonymous memory;
		 * not [vdso], [vvar], [vsyscall], [uprobes] */
		return path[0] == 0 || strcmp(path, "[heap]") == 0 || strncmp(path, "[stack", 6) == 0 ||
		       strncmp(path, "[anon:", 6) == 0;
	}
	/* file-backed: only with --all-private, writable, no huge pages and
	 * no device memory (VM_IO/VM_PFNMAP mappings are device files) */
	return s->o.all_private && perms[1] == 'w' && strncmp(path, "/dev/", 5) != 0 &&
	       !is_hugetlb(s, maj, min, path);
}

static int add_range(struct est_scanner *s, uint64_t start, uint64_t end)
{
	if (s->o.range_end) {
		start = start > s->o.range_start ? start : s->o.range_start;
		end = end < s->o.range_end ? end : s->o.range_end;
	}
	if (start >= end)
		return 0;
	if (s->nranges == s->cap_ranges) {
		size_t cap = s->cap_ranges ? s->cap_ranges * 2 : 64;
		struct range *r = realloc(s->ranges, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		s->ranges = r;
		s->cap_ranges = cap;
	}
	s->ranges[s->nranges++] = (struct range){ start, end };
	return 0;
}

static int load_maps(struct est_scanner *s)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	s->nranges = 0;
	if (s->o.all_private)
		load_hugetlb_devices(s);
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)s->pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return open_errno(errno);
	int r = 0;
	errno = 0;
	while (getline(&line, &cap, f) > 0) {
		uint64_t start, end;
		char perms[8];
		unsigned maj, min;
		unsigned long inode;
		int n = 0;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*x %x:%x %lu %n", &start, &end, perms, &maj,
			   &min, &inode, &n) < 6 || strlen(perms) < 4)
			continue;
		char *p = line + n;
		p[strcspn(p, "\n")] = 0;
		if (counted(s, perms, maj, min, inode, p) && (r = add_range(s, start, end)) != 0)
			break;
	}
	/* reading another user's maps fails at the first read, not at open */
	if (!r && ferror(f))
		r = open_errno(errno ? errno : EIO);
	free(line);
	fclose(f);
	return r;
}

/* ------------------------------------------------------------ reading */

/* Bytes read into dst from the remote iovecs, in order, up to the first
 * page that cannot be read; or a negative errno. */
static ssize_t read_remote(struct est_scanner *s, void *dst, size_t len, const struct iovec *rv, size_t rn)
{
	if (!s->use_mem) {
		struct iovec local = { dst, len };
		ssize_t n = process_vm_readv(s->pid, &local, 1, rv, rn, 0);
		if (n >= 0)
			return n;
		if (errno == EFAULT)
			return 0;
		if (errno != ENOSYS && errno != EPERM)
			return -errno;
		/* blocked (seccomp) or refused: /proc/PID/mem has its own check */
		if (errno == ENOSYS)
			s->no_vm_readv = true;
		s->use_mem = true;
	}
	if (s->mem_fd < 0) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)s->pid);
		s->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (s->mem_fd < 0)
			return open_errno(errno);
	}
	size_t done = 0;
	for (size_t i = 0; i < rn; i++) {
		size_t got = 0;
		while (got < rv[i].iov_len) {
			ssize_t n = pread(s->mem_fd, (char *)dst + done + got, rv[i].iov_len - got,
					  (off_t)((uintptr_t)rv[i].iov_base + got));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return (ssize_t)(done + got);
			got += (size_t)n;
		}
		done += got;
	}
	return (ssize_t)done;
}

/* Zero pages are counted apart; the others go to the table by hash. */
static int count_pages(struct est_scanner *s, const unsigned char *p, size_t pages)
{
	size_t m = 0, ps = (size_t)s->page;
	for (size_t i = 0; i < pages; i++, p += ps) {
		if (est_page_is_zero(p, ps))
			s->c->zero_pages++;
		else
			est_table_prefetch(s->t, s->hashes[m++] = est_hash_page(p, ps));
	}
	s->c->pages += pages;
	return est_table_add(s->t, s->hashes, m, s->proc, s->c);
}

/* Drop the first `bytes` of an iovec array. */
static void iov_advance(struct iovec **v, size_t *n, size_t bytes)
{
	while (*n && bytes) {
		size_t k = bytes < (*v)->iov_len ? bytes : (*v)->iov_len;
		(*v)->iov_base = (char *)(*v)->iov_base + k;
		(*v)->iov_len -= k;
		bytes -= k;
		if ((*v)->iov_len == 0) {
			(*v)++;
			(*n)--;
		}
	}
}

/* Read the pending batch and count it. A page that cannot be read (the
 * process unmapped it meanwhile) is skipped and counted as unreadable. */
static int flush(struct est_scanner *s)
{
	size_t ps = (size_t)s->page, total = s->pend_pages, done = 0, rn = s->npend;
	struct iovec *rv = s->iov;
	while (done < total) {
		ssize_t n = read_remote(s, s->buf + done * ps, (total - done) * ps, rv, rn);
		if (n < 0)
			return (int)n;
		size_t got = (size_t)n / ps, skip = got;
		int r = count_pages(s, s->buf + done * ps, got);
		if (r)
			return r;
		done += got;
		if (done < total) {
			s->c->unreadable_pages++;
			done++;
			skip++;
		}
		iov_advance(&rv, &rn, skip * ps);
	}
	s->npend = s->pend_pages = 0;
	return 0;
}

/* A run of resident pages to read. */
static int queue(struct est_scanner *s, uint64_t start, uint64_t end)
{
	size_t ps = (size_t)s->page;
	while (start < end) {
		size_t room = s->buf_pages - s->pend_pages;
		if (room == 0 || s->npend == MAX_IOV) {
			int r = flush(s);
			if (r)
				return r;
			continue;
		}
		size_t pages = (size_t)((end - start) / ps);
		pages = pages < room ? pages : room;
		struct iovec *last = s->npend ? &s->iov[s->npend - 1] : NULL;
		if (last && (uintptr_t)last->iov_base + last->iov_len == start)
			last->iov_len += pages * ps;
		else
			s->iov[s->npend++] = (struct iovec){ (void *)(uintptr_t)start, pages * ps };
		s->pend_pages += pages;
		start += pages * ps;
	}
	return 0;
}

/* Resident anonymous pages of [start, end), the slow way: one pagemap
 * entry per page (kernels before 6.7). */
static int runs_from_pagemap(struct est_scanner *s, int fd, uint64_t start, uint64_t end)
{
	uint64_t ps = (uint64_t)s->page, run = 0;
	bool in_run = false;
	while (start < end) {
		size_t n = (size_t)((end - start) / ps);
		n = n < REGIONS ? n : REGIONS;
		ssize_t got = pread(fd, s->pm, n * sizeof(uint64_t), (off_t)(start / ps * sizeof(uint64_t)));
		if (got < 0)
			return -errno;
		if ((size_t)got < sizeof(uint64_t))
			break;
		n = (size_t)got / sizeof(uint64_t);
		for (size_t i = 0; i < n; i++) {
			uint64_t a = start + i * ps;
			bool want = (s->pm[i] & PM_PRESENT) && !(s->pm[i] & PM_FILE);
			if (want && !in_run)
				run = a;
			else if (!want && in_run) {
				int r = queue(s, run, a);
				if (r)
					return r;
			}
			in_run = want;
		}
		start += n * ps;
	}
	return in_run ? queue(s, run, start) : 0;
}

/* Resident pages of [start, end) that merging could share: present, not
 * the shared zero page, not page cache. */
static int find_runs(struct est_scanner *s, int fd, uint64_t start, uint64_t end)
{
	while (!s->no_pm_scan && start < end) {
		struct est_pm_arg a = {
			.size = sizeof(a),
			.start = start,
			.end = end,
			.vec = (uintptr_t)s->regions,
			.vec_len = REGIONS,
			.category_mask = EST_PAGE_IS_PRESENT | EST_PAGE_IS_PFNZERO | EST_PAGE_IS_FILE,
			.category_inverted = EST_PAGE_IS_PFNZERO | EST_PAGE_IS_FILE,
			.return_mask = EST_PAGE_IS_PRESENT,
		};
		int n = ioctl(fd, EST_PAGEMAP_SCAN, &a);
		if (n < 0 && (errno == ENOTTY || errno == EINVAL)) {
			s->no_pm_scan = true;
			break;
		}
		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++) {
			int r = queue(s, s->regions[i].start, s->regions[i].end);
			if (r)
				return r;
		}
		if (a.walk_end <= start)
			return -EIO;
		start = a.walk_end;
	}
	return start < end ? runs_from_pagemap(s, fd, start, end) : 0;
}

int est_scan_process(struct est_scanner *s, struct est_table *t, pid_t pid, uint32_t proc,
		     struct est_counts *c)
{
	s->pid = pid;
	s->proc = proc;
	s->t = t;
	s->c = c;
	s->use_mem = s->no_vm_readv;
	s->mem_fd = -1;
	s->npend = s->pend_pages = 0;
	int r = load_maps(s);
	if (r)
		return r;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return open_errno(errno);
	for (size_t i = 0; i < s->nranges && !r; i++) {
		c->mappings++;
		c->mapped_pages += (s->ranges[i].end - s->ranges[i].start) / (uint64_t)s->page;
		r = find_runs(s, fd, s->ranges[i].start, s->ranges[i].end);
	}
	if (!r)
		r = flush(s);
	close(fd);
	if (s->mem_fd >= 0)
		close(s->mem_fd);
	s->mem_fd = -1;
	return r;
}
