/* SPDX-License-Identifier: MIT */
/*
 * Freeze, compare, replace: the only code that changes what an application
 * address maps. The rules it keeps (docs/design.md, "Merging safely"):
 *
 *  - a page is compared byte for byte while frozen (writers blocked), and
 *    replaced before it is thawed: a write either lands before the compare
 *    (and the compare sees it) or waits and lands in the new page;
 *  - the freeze itself proves the address is still our registered memory:
 *    write-protecting it through our own userfaultfd fails otherwise;
 *  - a replacement is one atomic mmap(MAP_FIXED) or mremap(MREMAP_FIXED):
 *    no instant shows a hole or a half-made page;
 *  - unmerging builds and populates the private copy first, so a lack of
 *    memory fails cleanly before anything changes.
 *
 * With write tracking, memory lives on the async uffd; a run of pages moves
 * to the sync (freeze) uffd only for the span of one batch.
 */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  /* 5.14 */
#endif

static const uint8_t zero_page[SP_PAGE];

/* ---------------------------------------------------------------- arming */

/* Write-protect [start,end) on the tracking uffd so the next write shows in
 * PAGEMAP_SCAN; if cats is not NULL it receives each page's PAGE_IS_*
 * categories as they were before arming (indexed from start). */
static int arm(sp_engine *e, uintptr_t start, uintptr_t end, uint8_t *cats)
{
	uintptr_t at = start;
	while (at < end) {
		uintptr_t walk_end = end;
		long n = _sp_pagemap_scan(&e->uffd, at, end, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, 0, 0,
					  0, PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_FILE | PAGE_IS_PFNZERO, e->vec,
					  e->veclen, &walk_end);
		if (n < 0)
			return (int)n;
		for (long i = 0; cats && i < n; i++)
			for (uintptr_t a = e->vec[i].start; a < e->vec[i].end; a += SP_PAGE)
				cats[(a - start) / SP_PAGE] = (uint8_t)e->vec[i].categories;
		if (walk_end <= at)
			break;
		at = walk_end;
	}
	return 0;
}

int _sp_track_arm(sp_engine *e, uintptr_t start, uintptr_t end)
{
	return arm(e, start, end, NULL);
}

int _sp_track_register(sp_engine *e, uintptr_t start, size_t len, bool armed)
{
	if (!e->tracking)
		return _sp_uffd_register(e->uffd.freeze, start, len, true);
	int r = _sp_uffd_register(e->uffd.track, start, len, true);
	if (r || !armed)
		return r;
	return arm(e, start, start + len, NULL);
}

int _sp_track_unregister(sp_engine *e, uintptr_t start, size_t len)
{
	return _sp_uffd_unregister(e->tracking ? e->uffd.track : e->uffd.freeze, start, len);
}

bool _sp_vma_headroom(sp_engine *e, size_t merges)
{
	/* An admin may lower the limit at any time: read it again when a
	 * quarter of a second has gone by (a pread of a file kept open; the
	 * sysctl's text is generated at each read, 1 % of a merging engine's
	 * CPU when read every batch). The margin below covers the lag. */
	int64_t now = _sp_now_ns();
	if (now - e->max_map_read_ns >= 250000000LL) {
		char buf[32];
		ssize_t got = e->max_map_fd >= 0 ? _sp_prim_pread(e->max_map_fd, buf, sizeof(buf) - 1, 0) : -1;
		if (got > 0) {
			buf[got] = 0;
			e->max_map_count = atoi(buf);
		}
		e->max_map_read_ns = now;
	}
	/* Each merge may split a VMA in three. Near the limit the program's own
	 * munmap and mprotect start to fail, so keep an eighth of it free. */
	size_t margin = (size_t)e->max_map_count / 8;
	size_t need = 2 * merges + (margin > 256 ? margin : 256);
	if ((size_t)e->vmas + need < (size_t)e->max_map_count)
		return true;
	/* The estimate counts our own mappings exactly or over; the program's
	 * own calls it cannot see. Near the limit, count for real. */
	_sp_vmas_recount(e, false);
	return (size_t)e->vmas + need < (size_t)e->max_map_count;
}

/* Counting /proc/self/maps costs in proportion to the mappings: about
 * 15 ms at 55,000, as much as hundreds of merges. A count is due once the
 * engine has spent thirty times the last one's CPU on other work (and a
 * quarter of a second has gone by), so counting stays a few per cent of
 * the engine's time near the limit, where a count may let merges go on.
 * after_merges: the end of a pass, a check for the program's own mappings
 * while the estimate is far from the limit; it counts only when merges
 * may have added mappings, at most once a second and after a hundred
 * times what the count would cost now: the last one's CPU, scaled by the
 * mappings estimated since (at thirty times the last cost it was 4 % of
 * a merging engine's CPU at N = 8; unscaled, the first count after the
 * merging pass, ~3 ms at 4,000 mappings, still came at the end of that
 * pass, measured at the engine's start with 40 mappings). */
void _sp_vmas_recount(sp_engine *e, bool after_merges)
{
	int64_t now = _sp_now_ns(), cpu = _sp_engine_cpu_ns(e);
	int64_t since = now - e->vmas_counted_ns;
	if (after_merges && (!e->vmas_dirty || since < 1000000000LL))
		return;
	int64_t factor = after_merges ? 100 : 30, cost = e->vmas_count_cost;
	if (after_merges && e->vmas_counted > 0 && e->vmas > e->vmas_counted)
		cost = cost * e->vmas / e->vmas_counted;
	if (since < 250000000LL || (cpu > 0 && cpu - e->vmas_counted_cpu < factor * cost))
		return;
	int n = _sp_maps_count();
	int64_t done = _sp_engine_cpu_ns(e);
	if (n > 0)
		e->vmas = e->vmas_counted = n;
	e->vmas_dirty = false;
	e->vmas_counted_ns = _sp_now_ns();
	e->vmas_counted_cpu = done;
	e->vmas_count_cost = cpu > 0 ? done - cpu : 0;
}

/* ------------------------------------------------------------ freeze/thaw */

/* Pages of a run that stay unprotected while it is frozen, and are not
 * re-armed by its thaw: loose pages in its gaps (never jobs, see gap_ok()).
 * The rest of the run, in pieces between them, gets fn; stops at the
 * first failure. */
static int for_each_guarded(sp_engine *e, const struct sp_run *run,
			    int (*fn)(sp_engine *e, uintptr_t start, uintptr_t end, uint8_t *cats), uint8_t *cats)
{
	uintptr_t at = run->start, end = run->start + run->pages * SP_PAGE;
	for (size_t i = 0; i <= run->nloose; i++) {
		uintptr_t to = i < run->nloose ? e->loose[run->loose + i] : end;
		if (to > at) {
			int r = fn(e, at, to, cats ? cats + (at - run->start) / SP_PAGE : NULL);
			if (r)
				return r;
		}
		at = to + SP_PAGE;
	}
	return 0;
}

static int protect(sp_engine *e, uintptr_t start, uintptr_t end, uint8_t *cats)
{
	(void)cats;
	return _sp_uffd_wp(e->uffd.freeze, start, end - start, true);
}

/* Has [start, end) a page of this batch's jobs (e->addrs, sorted)? */
static bool has_job(const sp_engine *e, uintptr_t start, uintptr_t end)
{
	size_t lo = 0, hi = e->naddrs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (e->addrs[mid] < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < e->naddrs && e->addrs[lo] < end;
}

/* A merge's freeze protects only the pieces with a job's page: the others
 * are gap pages that need no protection, since nothing replaces them and
 * a write to one shows anyway: a merged page gets a copy, a dropped one a
 * page of its own (scan.c, zero_still()), an indexed one is hashed again
 * after the thaw (check_thawed()), an absent one becomes present. Counted
 * at N = 8, nearly half the pieces were all pages merged earlier. */
static int protect_jobs(sp_engine *e, uintptr_t start, uintptr_t end, uint8_t *cats)
{
	return has_job(e, start, end) ? protect(e, start, end, cats) : 0;
}

/* The thaw's re-arm of a piece, skipped when all its pages merged or were
 * dropped as zeros: a write to a merged page is seen by the copy it makes,
 * an anonymous page where the store's was, and one to a dropped page by
 * the page it gets (scan.c, zero_still()), protected or not. Counted at
 * N = 8 (every tenth page empty), no piece of the merging pass was left
 * to re-arm: 8,400 PAGEMAP_SCAN (each a TLB flush) saved in 16 s, where
 * skipping merged pages alone saved half. Their cats say "present, file"
 * for merged pages (not copied), "absent" for dropped ones: the next
 * visit looks at both anyway. */
static int rearm(sp_engine *e, uintptr_t start, uintptr_t end, uint8_t *cats)
{
	uint32_t rid;
	struct sp_range *r = _sp_range_at(e, start, &rid);
	if (r && end <= r->start + r->npages * SP_PAGE) {
		size_t first = (start - r->start) / SP_PAGE, last = (end - r->start) / SP_PAGE, i = first;
		while (i < last && (r->pg[i].state == SP_PG_MERGED || r->pg[i].state == SP_PG_ZERO))
			i++;
		if (i == last) {
			for (i = first; cats && i < last; i++)
				if (r->pg[i].state == SP_PG_ZERO)
					cats[i - first] = 0;
			return 0;
		}
	}
	return arm(e, start, end, cats);
}

static void mark_changed(sp_engine *e, uint32_t rid, size_t i);

/* Move a run to the freeze uffd and write-protect it (but its loose pages;
 * jobs_only: and its pieces without a job's page): from here a writer of
 * its protected pages waits until thaw_run(). */
static int freeze_run(sp_engine *e, const struct sp_run *run, bool jobs_only)
{
	uintptr_t start = run->start;
	size_t len = run->pages * SP_PAGE;
	int r;
	if (e->tracking) {
		r = _sp_uffd_unregister(e->uffd.track, start, len);
		if (r)
			return r;
		r = _sp_uffd_register(e->uffd.freeze, start, len, true);
		if (r) {
			_sp_track_register(e, start, len, true);
			return r;
		}
	}
	r = for_each_guarded(e, run, jobs_only ? protect_jobs : protect, NULL);
	if (r) {
		/* Part of the run is no longer our VMA: undo and report. */
		if (e->tracking) {
			_sp_uffd_unregister(e->uffd.freeze, start, len);
			_sp_uffd_wake(e->uffd.freeze, start, len);
			_sp_track_register(e, start, len, true);
		} else {
			/* Pieces before the failing one are protected already. */
			for (uintptr_t a = start; a < start + len; a += SP_PAGE)
				_sp_uffd_wp(e->uffd.freeze, a, SP_PAGE, false);
			_sp_uffd_wake(e->uffd.freeze, start, len);
		}
		return r;
	}
	return 0;
}

/* Let writers go and put the run back under tracking. cats (optional)
 * receives the pages' categories at re-arm time; loose pages are not
 * re-armed (hot pages stay unprotected) and keep what cats held. */
static void thaw_run(sp_engine *e, const struct sp_run *run, bool reregister, uint8_t *cats)
{
	uintptr_t start = run->start;
	size_t len = run->pages * SP_PAGE;
	if (e->tracking) {
		if (_sp_uffd_unregister(e->uffd.freeze, start, len) != 0) {
			/* Mapping calls can fail here (ENOMEM seen on VMs with no
			 * reason given). No page may stay write-protected with
			 * nobody to wake its writers: unprotect page by page (the
			 * merged ones are not registered and simply refuse). */
			for (uintptr_t a = start; a < start + len; a += SP_PAGE) {
				_sp_uffd_wp(e->uffd.freeze, a, SP_PAGE, false);
				_sp_uffd_unregister(e->uffd.freeze, a, SP_PAGE);
			}
		}
		_sp_uffd_wake(e->uffd.freeze, start, len);
		if (reregister && _sp_uffd_register(e->uffd.track, start, len, true) == 0)
			for_each_guarded(e, run, rearm, cats);
		return;
	}
	/* Checksum mode: pages stay on the freeze uffd; replaced ones need it again. */
	if (reregister)
		_sp_uffd_register(e->uffd.freeze, start, len, true);
	_sp_uffd_wp(e->uffd.freeze, start, len, false);
	_sp_uffd_wake(e->uffd.freeze, start, len);
	if (!reregister)
		_sp_uffd_unregister(e->uffd.freeze, start, len);
}

/* ------------------------------------------------------------ replacing */

static uintptr_t page_addr(sp_engine *e, uint32_t rid, size_t i)
{
	return e->ranges[rid]->start + i * SP_PAGE;
}

/* Decide that store page id replaces the frozen page (rid,i). The page
 * counts as merged from now on; apply_maps() makes it true, or takes the
 * decision back. Mapping is deferred so that neighbouring pages that take
 * neighbouring store pages are mapped with one mmap: the mmap is most of
 * the cost of a merge. */
static int map_store(sp_engine *e, uint32_t rid, size_t i, uint32_t id)
{
	if (e->nmaps >= 2 * SP_MAX_JOBS)
		return -ENOSPC;
	struct sp_page *pg = &e->ranges[rid]->pg[i];
	e->maps[e->nmaps++] = (struct sp_map){ page_addr(e, rid, i), id, rid, i,
					       pg->state == SP_PG_COWED ? pg->ref : SP_NONE };
	pg->ref = id;
	_sp_share_add(e, id);
	_sp_page_set_state(e, pg, SP_PG_MERGED);
	return 0;
}

static void sort_maps(struct sp_map *m, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct sp_map v = m[i];
		size_t j = i;
		for (; j > 0 && m[j - 1].addr > v.addr; j--)
			m[j] = m[j - 1];
		m[j] = v;
	}
}

/* Mappings that replacing pages [first, first+k) of range r adds: one per
 * side where the neighbour may share the page's VMA, i.e. is of the same
 * kind (anonymous, or a private mapping of the store) as the page was.
 * right_kind: the right neighbour's kind if it is replaced later in this
 * batch (-1: not). An upper bound (the kernel may join the new VMA to a
 * neighbour), exact for scattered pages: with it /proc/self/maps needs
 * counting only now and then. */
static int vmas_added(const struct sp_range *r, size_t first, size_t k, bool was_file, int right_kind)
{
	int n = 0;
	if (first == 0 || _sp_page_maps_store(&r->pg[first - 1]) == was_file)
		n++;
	size_t after = first + k;
	if (after >= r->npages || (right_kind >= 0 ? right_kind == was_file : _sp_page_maps_store(&r->pg[after]) == was_file))
		n++;
	return n;
}

static void apply_maps(sp_engine *e)
{
	struct sp_map *m = e->maps;
	size_t n = e->nmaps;
	e->nmaps = 0;
	sort_maps(m, n);
	for (size_t i = 0; i < n;) {
		size_t k = 1;
		while (i + k < n && m[i + k].addr == m[i].addr + k * SP_PAGE && m[i + k].id == m[i].id + k &&
		       m[i + k].id / SP_SEG_PAGES == m[i].id / SP_SEG_PAGES && m[i + k].rid == m[i].rid)
			k++;
		int fd;
		off_t off;
		void *out;
		_sp_store_where(&e->store, m[i].id, &fd, &off);
		int r = _sp_prim_mmap((void *)m[i].addr, k * SP_PAGE, e->ranges[m[i].rid]->prot,
				      MAP_PRIVATE | MAP_FIXED, fd, off, &out);
		for (size_t x = i; x < i + k; x++) {
			struct sp_page *pg = &e->ranges[m[x].rid]->pg[m[x].page];
			if (r == 0) {
				/* A copied-on-write page named another store page until now. */
				if (m[x].old != SP_NONE)
					_sp_spage_put(e, m[x].old);
				continue;
			}
			/* The old page is still there (a failed MAP_FIXED changes nothing). */
			_sp_share_drop(e, m[x].id);
			_sp_spage_put(e, m[x].id);
			pg->ref = m[x].old;
			_sp_page_set_state(e, pg, m[x].old != SP_NONE ? SP_PG_COWED : SP_PG_WRITTEN);
		}
		if (r == 0) {
			/* The pages were all anonymous, or one copied-on-write page. */
			bool pending = i + k < n && m[i + k].addr == m[i].addr + k * SP_PAGE && m[i + k].rid == m[i].rid;
			e->vmas += vmas_added(e->ranges[m[i].rid], m[i].page, k, m[i].old != SP_NONE,
					      pending ? m[i + k].old != SP_NONE : -1);
			e->vmas_dirty = true;
		}
		i += k;
	}
}

/* A frozen page found all zeros, dropped: reads map the zero page. */
static void dropped(sp_engine *e, const struct sp_job *j, int rc)
{
	struct sp_page *pg = &e->ranges[j->rid]->pg[j->page];
	if (rc) {
		mark_changed(e, j->rid, j->page);
		return;
	}
	/* COWED pages keep their file VMA: the zap would show the store page,
	 * so those are not dropped (see scan.c). */
	if (pg->state == SP_PG_COWED)
		_sp_spage_put(e, pg->ref);
	_sp_page_set_state(e, pg, SP_PG_ZERO);
}

/* Drop the batch's pages of zeros in one process_madvise() (Linux 6.13
 * lets a process give itself any advice): one page at a time, each
 * madvise() flushed the TLB on its own, 13.9 us a page against 0.8 us
 * batched with another thread of the process running (1.6 against 0.7 us
 * without). Where it is refused, or for the pages after one that failed,
 * madvise() page by page. */
static void apply_drops(sp_engine *e)
{
	size_t n = 0, done = 0;
	for (size_t i = 0; i < e->ndrops; i++) {
		/* a later job of the batch may have merged it (never seen: a
		 * page of zeros queues no lookup) */
		const struct sp_job *j = e->drops[i];
		if (e->ranges[j->rid]->pg[j->page].state != SP_PG_MERGED)
			e->drops[n++] = e->drops[i];
	}
	e->ndrops = 0;
	if (n == 0)
		return;  /* most rounds: no getpid() for nothing */
	pid_t pid = getpid();
	if (!e->no_process_madvise && e->self_pid != pid) {
		/* First use. A fork child's engine never merges (it is inert), but
		 * a pidfd of the parent would advise the parent: check anyway. */
		if (e->self_pidfd >= 0)
			_sp_prim_close(e->self_pidfd);
		e->self_pidfd = _sp_prim_pidfd_open(pid);
		e->self_pid = pid;
		if (e->self_pidfd < 0)
			e->no_process_madvise = true;  /* no pidfds (before 5.3) */
	}
	ssize_t r = 0;
	if (!e->no_process_madvise) {
		struct iovec iov[SP_MAX_JOBS];
		for (size_t i = 0; i < n; i++)
			iov[i] = (struct iovec){ (void *)page_addr(e, e->drops[i]->rid, e->drops[i]->page), SP_PAGE };
		r = _sp_prim_process_madvise(e->self_pidfd, iov, n, MADV_DONTNEED);
		done = r > 0 ? (size_t)r / SP_PAGE : 0;  /* the ranges before a failure */
	}
	for (size_t i = 0; i < n; i++) {
		void *page = (void *)page_addr(e, e->drops[i]->rid, e->drops[i]->page);
		int rc = i < done ? 0 : _sp_prim_madvise(page, SP_PAGE, MADV_DONTNEED);
		/* The call failed as a whole where madvise() takes the same first
		 * page: the kernel refuses the call or this advice in it (before
		 * 5.10 and 6.13). Page by page from now on. */
		if (i == 0 && r < 0 && rc == 0)
			e->no_process_madvise = true;
		dropped(e, e->drops[i], rc);
	}
}

/* The unstable partner or the candidate did not match after all. */
static void mark_changed(sp_engine *e, uint32_t rid, size_t i)
{
	struct sp_page *pg = &e->ranges[rid]->pg[i];
	if (pg->state == SP_PG_UNSHARED && e->remote)
		_sp_remote_forget(e, _sp_key(e, pg), e->ranges[rid]->start + i * SP_PAGE);
	else if (pg->state == SP_PG_UNSHARED)
		_sp_index_del(&e->unstable, _sp_key(e, pg), SP_LOC(rid, i));
	if (pg->state != SP_PG_MERGED && pg->state != SP_PG_COWED)
		_sp_page_set_state(e, pg, SP_PG_WRITTEN);
}

/* Candidate with no partner: it waits in the unstable index. */
static void make_unshared(sp_engine *e, uint32_t rid, size_t i)
{
	struct sp_page *pg = &e->ranges[rid]->pg[i];
	uint64_t other;
	if (e->remote) {
		/* the daemon's index decides; look it up again next visit */
		if (pg->state != SP_PG_COWED)
			_sp_page_set_state(e, pg, SP_PG_WRITTEN);
		return;
	}
	if (pg->state == SP_PG_COWED || _sp_index_get(&e->unstable, _sp_key(e, pg), &other)) {
		if (pg->state != SP_PG_COWED)
			_sp_page_set_state(e, pg, SP_PG_WRITTEN);
		return;
	}
	if (_sp_index_put(&e->unstable, _sp_key(e, pg), SP_LOC(rid, i)) == 0)
		_sp_page_set_state(e, pg, SP_PG_UNSHARED);
}

static bool store_usable(sp_engine *e, uint32_t id, uint64_t hash)
{
	struct sp_spage *s = &e->store.pg[id];
	/* Across processes the daemon counts sharers and keeps the limit. */
	return s->live && s->hash == hash && (e->remote || s->sharers < (uint64_t)e->knob[SP_MAX_PAGE_SHARING]);
}

static void do_job(sp_engine *e, struct sp_job *j)
{
	struct sp_page *b = &e->ranges[j->rid]->pg[j->page];
	const void *bp = (const void *)page_addr(e, j->rid, j->page);

	if (j->kind == SP_JOB_ZERO) {
		if (_sp_page_cmp(bp, zero_page) == 0 && e->ndrops < SP_MAX_JOBS)
			e->drops[e->ndrops++] = j;  /* apply_drops(), still frozen */
		else
			mark_changed(e, j->rid, j->page);
		return;
	}

	if (j->kind == SP_JOB_PAIR) {
		struct sp_page *a = &e->ranges[j->prid]->pg[j->ppage];
		/* An earlier job of this batch may have merged the partner already. */
		if (a->state == SP_PG_MERGED && store_usable(e, a->ref, _sp_key(e, b))) {
			j->kind = SP_JOB_STABLE;
			j->store = a->ref;
		} else if (a->state != SP_PG_UNSHARED || _sp_key(e, a) != _sp_key(e, b)) {
			make_unshared(e, j->rid, j->page);
			return;
		}
	}

	if (j->kind == SP_JOB_STABLE) {
		if (b->state == SP_PG_MERGED)
			return;  /* the page was a job twice (looked up and noted): merged by the first */
		if (!store_usable(e, j->store, _sp_key(e, b)) ||
		    _sp_page_cmp(bp, _sp_store_data(&e->store, j->store)) != 0) {
			make_unshared(e, j->rid, j->page);
			return;
		}
		map_store(e, j->rid, j->page, j->store);  /* (-ENOSPC: left as it is, looked at again) */
		return;
	}

	/* PAIR: both pages frozen; publish a store page only if they are equal. */
	const void *ap = (const void *)page_addr(e, j->prid, j->ppage);
	if (_sp_page_cmp(ap, bp) != 0) {
		mark_changed(e, j->prid, j->ppage);
		make_unshared(e, j->rid, j->page);
		return;
	}
	int64_t id = _sp_store_add(&e->store, ap, _sp_key(e, b), b->node);
	if (id < 0) {
		make_unshared(e, j->rid, j->page);
		return;
	}
	struct sp_page *a = &e->ranges[j->prid]->pg[j->ppage];
	_sp_index_del(&e->unstable, _sp_key(e, a), SP_LOC(j->prid, j->ppage));
	_sp_page_set_state(e, a, SP_PG_WRITTEN);  /* until mapped below */
	if (map_store(e, j->prid, j->ppage, (uint32_t)id) != 0) {
		_sp_spage_put(e, (uint32_t)id);  /* never mapped: punched */
		make_unshared(e, j->rid, j->page);
		return;
	}
	_sp_stable_insert(&e->stable, _sp_key(e, b), (uint32_t)id);
	if (map_store(e, j->rid, j->page, (uint32_t)id) != 0)
		make_unshared(e, j->rid, j->page);
}

/* ------------------------------------------------------------ batches */

/* Shell sort: no allocation (the scanner must not touch the heap, see meta.c). */
static void sort_addrs(uintptr_t *a, size_t n)
{
	static const size_t gaps[] = { 701, 301, 132, 57, 23, 10, 4, 1 };
	for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++)
		for (size_t i = gaps[g]; i < n; i++) {
			uintptr_t v = a[i];
			size_t j = i;
			for (; j >= gaps[g] && a[j - gaps[g]] > v; j -= gaps[g])
				a[j] = a[j - gaps[g]];
			a[j] = v;
		}
}

/* May the pages [from, to) between two runs be frozen with them? Freezing
 * a gap costs its writers a short wait, but one freeze per run is most of
 * a scattered merge's system calls. Quiet pages of one range, and hot ones
 * (pages on probation included) and pages not yet seen: those are neither
 * protected nor re-armed (run->loose), so their writers never wait; with
 * write tracking nothing is lost, since neither kind is armed: a hot page
 * is checksummed, a new one reads as written. Pages just written or
 * copied end the run (without write tracking, new ones too: nothing is
 * loose there): they may be written again soon and must not wait.
 * Counted at N = 8, most runs of a first merge ended at a new hot page
 * (one the scan found changed, or in the queue of lookups) before those
 * were loose. Protecting the loose pages that are new or on probation
 * (7 protect calls a run instead of 22) made the writer of the
 * single-process benchmark wait up to 2.6 ms while converging at full
 * speed (0.1 ms without): a page that held still over one fast pass may
 * be written the next moment (commit 3323ac7, reverted). */
#define GAP_PAGES 32

static bool loose_page(const sp_engine *e, const struct sp_page *pg)
{
	if (!e->tracking)
		return false;
	if (pg->state == SP_PG_NEW)
		return true;
	return pg->hot && (pg->state == SP_PG_WRITTEN || pg->state == SP_PG_HOLE || pg->state == SP_PG_UNSHARED);
}

static bool gap_ok(sp_engine *e, uintptr_t from, uintptr_t to, struct sp_run *run, size_t *nloose)
{
	if (to - from > GAP_PAGES * SP_PAGE)
		return false;
	uint32_t rid, rid2;
	struct sp_range *r = _sp_range_at(e, from - SP_PAGE, &rid);
	if (!r || _sp_range_at(e, to, &rid2) != r)
		return false;
	size_t loose = 0;
	for (uintptr_t a = from; a < to; a += SP_PAGE) {
		const struct sp_page *pg = &r->pg[(a - r->start) / SP_PAGE];
		if (loose_page(e, pg))
			loose++;
		else if (pg->hot || pg->state == SP_PG_WRITTEN || pg->state == SP_PG_COWED || pg->state == SP_PG_NEW)
			return false;
	}
	if (*nloose + loose > 2 * SP_MAX_JOBS)
		return false;
	for (uintptr_t a = from; loose && a < to; a += SP_PAGE)
		if (loose_page(e, &r->pg[(a - r->start) / SP_PAGE])) {
			e->loose[(*nloose)++] = a;
			run->nloose++;
		}
	return true;
}

static struct sp_run *run_of(struct sp_run *runs, size_t nruns, uintptr_t addr)
{
	for (size_t i = 0; i < nruns; i++)
		if (addr >= runs[i].start && addr < runs[i].start + runs[i].pages * SP_PAGE)
			return &runs[i];
	return NULL;
}

/* After the thaw of a run (tracking): the categories its re-arm found.
 * A merged page present and anonymous was written: copied on write. And
 * a write to an indexed or dropped page that landed while the run was off
 * the tracking uffd left no trace (the move clears the write-protect bits
 * the thaw sets again): one since the page's last visit, or a writer that
 * waited for the freeze and was let go as the run left the freeze uffd,
 * before the re-arm (test_writes_waiting_for_thaw_are_seen). Such a page
 * would pass for unchanged: indexed under content it no longer has, or
 * counted as dropped while it holds data. So an indexed page is hashed
 * once more (cheaper than the PAGEMAP_SCAN per run that looked for writes
 * before the freeze, and that one missed the writers the thaw let go),
 * and a dropped page must still be absent (or the zero page, if read).
 * Loose pages were not re-armed: they read as written at their visit. */
static void check_thawed(sp_engine *e, const struct sp_run *run, const uint8_t *cats)
{
	size_t li = 0;
	uint32_t rid = 0;
	struct sp_range *r = NULL;
	for (size_t p = 0; p < run->pages; p++) {
		uintptr_t a = run->start + p * SP_PAGE;
		while (li < run->nloose && e->loose[run->loose + li] < a)
			li++;
		if (li < run->nloose && e->loose[run->loose + li] == a)
			continue;
		if (!r || a < r->start || a >= r->start + r->npages * SP_PAGE)
			r = _sp_range_at(e, a, &rid);
		if (!r)
			continue;
		size_t i = (a - r->start) / SP_PAGE;
		struct sp_page *pg = &r->pg[i];
		uint8_t c = cats[p];
		if (pg->state == SP_PG_MERGED && (c & PAGE_IS_PRESENT) && !(c & PAGE_IS_FILE)) {
			_sp_share_drop(e, pg->ref);
			_sp_page_set_state(e, pg, SP_PG_COWED);
			e->cow_ksm++;
		} else if (pg->state == SP_PG_UNSHARED && _sp_hash_page((const void *)a) != pg->hash) {
			mark_changed(e, rid, i);
		} else if (pg->state == SP_PG_ZERO && (c & PAGE_IS_PRESENT) && !(c & PAGE_IS_PFNZERO)) {
			mark_changed(e, rid, i);
		}
	}
}

void _sp_merge_jobs(sp_engine *e, struct sp_job *jobs, size_t n)
{
	if (n == 0)
		return;
	if (n > SP_MAX_JOBS)
		n = SP_MAX_JOBS;
	uintptr_t *addrs = e->addrs;
	struct sp_run *runs = e->runs;
	size_t na = 0, nruns = 0, nloose = 0;
	for (size_t i = 0; i < n; i++) {
		addrs[na++] = page_addr(e, jobs[i].rid, jobs[i].page);
		if (jobs[i].kind == SP_JOB_PAIR)
			addrs[na++] = page_addr(e, jobs[i].prid, jobs[i].ppage);
	}
	sort_addrs(addrs, na);
	e->naddrs = na;
	for (size_t i = 0; i < na; i++) {
		if (nruns && addrs[i] < runs[nruns - 1].start + runs[nruns - 1].pages * SP_PAGE)
			continue;  /* duplicate */
		struct sp_run *last = nruns ? &runs[nruns - 1] : NULL;
		uintptr_t end = last ? last->start + last->pages * SP_PAGE : 0;
		/* A run's categories must fit in e->cats. */
		if (last && (addrs[i] - last->start) / SP_PAGE < SP_CATS &&
		    (addrs[i] == end || gap_ok(e, end, addrs[i], last, &nloose))) {
			last->pages = (addrs[i] - last->start) / SP_PAGE + 1;
			last->njob++;
		} else {
			runs[nruns++] = (struct sp_run){ addrs[i], 1, nloose, 0, 1, false };
		}
	}
	for (size_t i = 0; i < nruns; i++)
		runs[i].frozen = freeze_run(e, &runs[i], true) == 0;

	for (size_t i = 0; i < n; i++) {
		struct sp_job *j = &jobs[i];
		struct sp_run *rb = run_of(runs, nruns, page_addr(e, j->rid, j->page));
		struct sp_run *ra = j->kind == SP_JOB_PAIR ? run_of(runs, nruns, page_addr(e, j->prid, j->ppage)) : rb;
		if (!rb || !rb->frozen || !ra || !ra->frozen) {
			mark_changed(e, j->rid, j->page);
			continue;
		}
		do_job(e, j);
	}

	apply_drops(e);
	apply_maps(e);

	/* Thaw, and notice writes that slipped in between replace and re-arm. */
	uint8_t *cats = e->cats;
	for (size_t i = 0; i < nruns; i++) {
		if (!runs[i].frozen)
			continue;
		memset(cats, PAGE_IS_PRESENT | PAGE_IS_FILE, runs[i].pages);
		thaw_run(e, &runs[i], true, e->tracking ? cats : NULL);
		if (e->tracking)
			check_thawed(e, &runs[i], cats);
	}
}

/* ------------------------------------------------------------ unmerging */

/* Replace pages [first, first+k) of range rid (merged or copied-on-write,
 * i.e. private file mappings of the store) by private anonymous memory
 * holding the same bytes. */
static int unmerge_subrun(sp_engine *e, uint32_t rid, size_t first, size_t k, bool keep)
{
	struct sp_range *r = e->ranges[rid];
	uintptr_t start = r->start + first * SP_PAGE;
	size_t len = k * SP_PAGE;
	/* The copy is built in the arena (meta.c): never in a hole of the application's. */
	void *scratch = _sp_meta_alloc(len);
	if (!scratch)
		return -EAGAIN;
	/* Get the memory now, so that lacking it fails here and not as an OOM. */
	int rc = _sp_prim_madvise(scratch, len, MADV_POPULATE_WRITE);
	if (rc == -EINVAL)
		rc = 0;  /* before 5.14: the copy below faults the pages in */
	if (rc) {
		_sp_meta_free(scratch, len);
		return rc == -EFAULT || rc == -ENOMEM ? -ENOMEM : rc;
	}
	struct sp_run run = { start, k, 0, 0, k, false };
	rc = freeze_run(e, &run, false);  /* all merged or copied: no gaps */
	if (rc) {
		_sp_meta_free(scratch, len);
		return rc;
	}
	for (size_t off = 0; off < len; off += SP_PAGE)
		_sp_page_copy((uint8_t *)scratch + off, (const uint8_t *)start + off);
	if (r->prot != (PROT_READ | PROT_WRITE))
		rc = _sp_prim_mprotect(scratch, len, r->prot);
	if (!rc)
		rc = _sp_meta_move_to(scratch, len, (void *)start);
	if (rc) {
		thaw_run(e, &run, true, NULL);
		_sp_meta_free(scratch, len);
		return rc;
	}
	/* The address now holds anonymous pages: release the store pages. */
	for (size_t i = first; i < first + k; i++) {
		struct sp_page *pg = &r->pg[i];
		if (_sp_page_maps_store(pg))
			_sp_page_forget(e, rid, i);
		_sp_page_set_state(e, pg, SP_PG_WRITTEN);
	}
	thaw_run(e, &run, keep, NULL);
	return 0;
}

int _sp_unmerge_run(sp_engine *e, uint32_t rid, size_t first, size_t npages, bool keep_registered)
{
	struct sp_range *r = e->ranges[rid];
	size_t i = first, end = first + npages;
	while (i < end) {
		if (!_sp_page_maps_store(&r->pg[i])) {
			i++;
			continue;
		}
		size_t k = 1;
		while (i + k < end && k < 512 &&
		       _sp_page_maps_store(&r->pg[i + k]))
			k++;
		int rc = unmerge_subrun(e, rid, i, k, keep_registered);
		if (rc)
			return rc;
		if (e->remote)
			_sp_remote_flush(e);  /* thawed: keep the queue of releases short */
		r = e->ranges[rid];
		i += k;
	}
	return 0;
}

int _sp_unmerge_all(sp_engine *e, bool keep_registered)
{
	int first_err = 0;
	for (uint32_t rid = 0; rid < e->nranges; rid++) {
		if (!e->ranges[rid])
			continue;
		int rc = _sp_unmerge_run(e, rid, 0, e->ranges[rid]->npages, keep_registered);
		if (rc && !first_err)
			first_err = rc;
	}
	return first_err;
}
