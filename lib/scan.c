/* SPDX-License-Identifier: MIT */
/*
 * The scanner: like ksmd, a cursor walks all registered memory, at most
 * pages_to_scan present pages per batch, and a full scan ends when it wraps.
 *
 * Change detection, where the kernel has it, is write tracking: one
 * PAGEMAP_SCAN per span says which pages were written since the last visit
 * (and re-arms them). A page is hashed only after a visit that found it
 * unwritten, and stays in the index until it is written again: memory that
 * does not change costs no hashing at all. Elsewhere the kernel's rule
 * applies: hash every visit, trust a page whose hash did not change.
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#define SPAN_PAGES 512
#define HOT_EVAL_NS 1000000000LL  /* hot pages are checksummed at most once a second */

/* smart_scan, as mm/ksm.c: skip a page that keeps failing to merge, up to
 * 8 visits, more the older it gets. */
static bool should_skip(struct sp_page *pg)
{
	if (pg->age < 255)
		pg->age++;
	if (pg->age < 3)
		return false;
	if (pg->skips == 0) {
		pg->skips = pg->age <= 3 ? 1 : pg->age <= 5 ? 2 : pg->age <= 8 ? 4 : 8;
		return false;
	}
	pg->skips--;
	return true;
}

int _sp_page_node(sp_engine *e, uintptr_t addr)
{
	if (e->fake_numa > 1)
		return (int)((addr >> 21) % (uintptr_t)e->fake_numa);
	void *p = (void *)addr;
	int status = 0;
	if (_sp_prim_page_nodes(1, &p, &status) || status < 0 || status >= SP_MAX_NODES)
		return 0;
	return status;
}

/* Pages whose writes we see through the freeze uffd: not the scanning
 * thread's own stack and TLS, which must never be frozen under it. */
static bool own_page(uintptr_t a)
{
	char here;
	uintptr_t sp = (uintptr_t)&here, tls = (uintptr_t)&errno;
	return (a + SP_PAGE > sp - (1u << 20) && a < sp + (64u << 10)) ||
	       a == (tls & ~(uintptr_t)(SP_PAGE - 1));
}

static void set_written(sp_engine *e, uint32_t rid, size_t i, bool present)
{
	struct sp_page *pg = &e->ranges[rid]->pg[i];
	switch (pg->state) {
	case SP_PG_MERGED:
	case SP_PG_COWED:
		return;  /* handled by the caller */
	case SP_PG_UNSHARED:
		if (e->remote)
			_sp_remote_forget(e, _sp_key(e, pg), e->ranges[rid]->start + i * SP_PAGE);
		else
			_sp_index_del(&e->unstable, _sp_key(e, pg), SP_LOC(rid, i));
		break;
	default:
		break;
	}
	_sp_page_set_state(e, pg, present ? SP_PG_WRITTEN : SP_PG_HOLE);
}

static void cow_seen(sp_engine *e, struct sp_page *pg)
{
	_sp_share_drop(e, pg->ref);
	_sp_page_set_state(e, pg, SP_PG_COWED);
	pg->age = 0;
	e->cow_ksm++;
}

/* Queue the right job for a quiet page, or index it. known: its hash, if
 * the caller read the page just now (a page's second hash was a tenth of
 * a first merge's CPU). */
static void consider(sp_engine *e, uint32_t rid, size_t i, size_t *njobs, const uint64_t *known)
{
	struct sp_range *r = e->ranges[rid];
	struct sp_page *pg = &r->pg[i];
	uintptr_t addr = r->start + i * SP_PAGE;
	if (own_page(addr))
		return;
	if (e->knob[SP_SMART_SCAN] && should_skip(pg)) {
		e->pages_skipped++;
		return;
	}
	uint64_t raw = known ? *known : _sp_hash_page((const void *)addr);
	struct sp_job *j = &e->jobs[*njobs];
	memset(j, 0, sizeof(*j));
	j->rid = rid;
	j->page = i;
	if (raw == e->zero_hash && pg->state != SP_PG_COWED) {
		pg->hash = raw;
		j->kind = SP_JOB_ZERO;
		(*njobs)++;
		return;
	}
	pg->hash = raw;
	if (!e->knob[SP_MERGE_ACROSS_NODES] && e->numa_nodes > 1)
		pg->node = (uint8_t)_sp_page_node(e, addr);
	uint64_t h = _sp_key(e, pg);
	if (e->remote) {
		/* Across processes the daemon holds the indexes: ask it, in bulk. */
		_sp_remote_queue(e, rid, i, h, pg->node);
		return;
	}
	uint64_t v;
	uint32_t sid = _sp_stable_find(&e->stable, h, e->knob[SP_MAX_PAGE_SHARING]);
	if (sid != SP_NONE) {
		j->kind = SP_JOB_STABLE;
		j->store = sid;
		(*njobs)++;
		return;
	}
	if (_sp_index_get(&e->unstable, h, &v) && v != SP_LOC(rid, i)) {
		uint32_t prid = SP_LOC_RANGE(v);
		size_t pp = SP_LOC_PAGE(v);
		if (prid < e->nranges && e->ranges[prid] && pp < e->ranges[prid]->npages &&
		    e->ranges[prid]->pg[pp].state == SP_PG_UNSHARED && !own_page(e->ranges[prid]->start + pp * SP_PAGE)) {
			j->kind = SP_JOB_PAIR;
			j->prid = prid;
			j->ppage = pp;
			(*njobs)++;
			return;
		}
		_sp_index_del(&e->unstable, h, v);  /* stale */
	}
	if (pg->state == SP_PG_COWED) {
		/* Unique again: give it back its plain private page so the store
		 * page can go and MADV_DONTNEED means zeros again. */
		_sp_unmerge_run(e, rid, i, 1, true);
		return;
	}
	if (_sp_index_put(&e->unstable, h, SP_LOC(rid, i)) == 0) {
		_sp_page_set_state(e, pg, SP_PG_UNSHARED);
		if (pg->age < 255)
			pg->age++;
	}
}

/* One round: at most SP_MAX_JOBS merges. may_defer: at the end of a batch,
 * where lookups may wait for the next one (client.c, may_wait()). */
static void flush_round(sp_engine *e, size_t *njobs, bool may_defer)
{
	if (e->remote)
		*njobs = _sp_remote_resolve(e, *njobs, may_defer);
	if (*njobs == 0)
		return;
	size_t n = *njobs;
	*njobs = 0;
	if (!_sp_vma_headroom(e, n)) {
		/* Only the zero pages go on: dropping one maps nothing. */
		size_t keep = 0;
		for (size_t k = 0; k < n; k++) {
			if (e->jobs[k].kind == SP_JOB_ZERO) {
				e->jobs[keep++] = e->jobs[k];
				continue;
			}
			struct sp_page *pg = &e->ranges[e->jobs[k].rid]->pg[e->jobs[k].page];
			if (!pg->held) {
				pg->held = 1;  /* pages, not attempts: each one once */
				e->skipped_map_count++;
			}
			if (pg->state != SP_PG_COWED && pg->state != SP_PG_UNSHARED)
				_sp_page_set_state(e, pg, SP_PG_WRITTEN);
		}
		n = keep;
		if (n == 0)
			return;
	}
	/* No signal handler may run on this thread while pages are frozen. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	_sp_merge_jobs(e, e->jobs, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e->remote)
		_sp_remote_flush(e);  /* thawed: now the daemon may hear of it */
}

/* Across processes, a partner's publication can bring thousands of notes
 * (pages of ours that may now join a store page) at once. As many as the
 * batch's budget allows are taken now, a round of jobs at a time: left to
 * one round per flush, the pages of a quiet pass (which queue no jobs of
 * their own) joined a few hundred per pass, and every extra pass walks
 * all of our memory. */
static void flush_jobs(sp_engine *e, size_t *njobs, bool may_defer)
{
	do
		flush_round(e, njobs, may_defer);
	while (e->remote && _sp_remote_notes_pending(e));
}

/* The application changed this memory behind our back (raw munmap, mremap
 * or mmap over it): stop managing the span. Store pages it named are kept,
 * since the mapping may live on elsewhere (never punch what may be mapped). */
static void abandon(sp_engine *e, uint32_t rid, size_t first, size_t n)
{
	struct sp_range *r = e->ranges[rid];
	for (size_t i = first; i < first + n; i++) {
		struct sp_page *pg = &r->pg[i];
		if (_sp_page_maps_store(pg)) {
			if (pg->state == SP_PG_MERGED)
				_sp_share_drop(e, pg->ref);
			_sp_page_set_state(e, pg, SP_PG_NEW);  /* the reference stays: a leak, not a hazard */
		}
	}
	_sp_range_cut(e, r->start + first * SP_PAGE, r->start + (first + n) * SP_PAGE);
}

/* The span is not (all) on the tracking uffd: a registration step of ours
 * failed, or the program remapped it. Register it again if it is still our
 * kind of memory (private anonymous, or our store's private mappings). */
static int recover_span(sp_engine *e, uintptr_t start, size_t n)
{
	struct sp_vmas m;
	uintptr_t end = start + n * SP_PAGE;
	if (_sp_maps_read(start, end, e->store.name, &m))
		return -EIO;
	struct sp_vma *v = m.v;
	size_t nv = m.n;
	int r = 0;
	uintptr_t at = start;
	for (size_t i = 0; i < nv && !r; i++) {
		bool ours = !v[i].shared && !v[i].hugetlb && !v[i].special && (!v[i].file || v[i].store);
		if (v[i].start > at || !ours)
			r = -ESTALE;
		at = v[i].end;
	}
	_sp_maps_free(&m);
	if (r || at < end)
		return -ESTALE;
	return _sp_track_register(e, start, n * SP_PAGE, true);
}

/* A dropped zero page that still reads as zeros, armed or not: absent
 * (no entry, or the marker arming left; an unarmed empty entry reads as
 * written), or mapping the zero page after a read. A write makes it
 * present and its own page, or swapped and written: never this. So the
 * thaw of its run need not re-arm it (merge.c, rearm()). */
static bool zero_still(const struct sp_page *pg, uint8_t c)
{
	if (pg->state != SP_PG_ZERO)
		return false;
	if (c & PAGE_IS_PRESENT)
		return c & PAGE_IS_PFNZERO;
	return !((c & PAGE_IS_WRITTEN) && (c & PAGE_IS_SWAPPED));
}

/* What visit_span() does with a page after written_page(). */
enum { WP_REARM, WP_LEAVE, WP_STILL };

/* A page PAGEMAP_SCAN reports written. A page found written twice within
 * about a second (passes that check hot pages are HOT_EVAL_NS apart, and
 * only those forget an earlier write) is hot: it is left unprotected, so
 * that the program's writes to it stop taking a write-protect fault per
 * pass, whatever the pass rate, and it is checksummed on those passes
 * until it held still over two of them; then the caller protects it
 * (WP_STILL) and settle_page() makes it a candidate. A page written a few
 * times a second thus stays hot, and one that stopped changing merges a
 * second or two later, about what the kernel's two-pass rule takes at its
 * default pace. A page on probation (hot and indexed, see first_contact())
 * leaves the index when a check finds it changed. */
static int written_page(sp_engine *e, uint32_t rid, size_t i, bool present)
{
	struct sp_range *r = e->ranges[rid];
	struct sp_page *pg = &r->pg[i];
	uintptr_t addr = r->start + i * SP_PAGE;
	if (pg->state == SP_PG_COWED || !present || own_page(addr)) {
		if (pg->state != SP_PG_COWED)
			set_written(e, rid, i, present);
		return WP_REARM;
	}
	if (pg->hot) {
		if (!e->hot_eval)
			return WP_LEAVE;
		uint64_t h = _sp_hash_page((const void *)addr);
		if (h != pg->hash) {
			if (pg->state == SP_PG_UNSHARED)
				set_written(e, rid, i, true);
			pg->hash = h;
			pg->quiet = 0;
			return WP_LEAVE;  /* still changing */
		}
		if (!pg->quiet) {
			pg->quiet = 1;
			return WP_LEAVE;
		}
		return WP_STILL;
	}
	if (pg->rewritten && (pg->state == SP_PG_WRITTEN || pg->state == SP_PG_UNSHARED)) {
		/* Written, protected again, and written again within about a
		 * second: leave it unprotected. */
		if (pg->state == SP_PG_UNSHARED)
			set_written(e, rid, i, true);
		pg->hot = 1;
		pg->quiet = 0;
		pg->hash = _sp_hash_page((const void *)addr);
		return WP_LEAVE;
	}
	set_written(e, rid, i, true);
	pg->rewritten = 1;
	return WP_REARM;
}

/* A hot page that held still, now protected: a write from here on shows,
 * so its content is read once more and trusted. A page on probation that
 * was indexed with that very content stays in the index as it is. */
static void settle_page(sp_engine *e, uint32_t rid, size_t i, size_t *njobs)
{
	struct sp_range *r = e->ranges[rid];
	struct sp_page *pg = &r->pg[i];
	pg->hot = 0;
	pg->quiet = 0;
	if (pg->state == SP_PG_UNSHARED) {
		uint64_t h = _sp_hash_page((const void *)(r->start + i * SP_PAGE));
		if (h == pg->hash)
			return;
		set_written(e, rid, i, true);
		consider(e, rid, i, njobs, &h);
		return;
	}
	consider(e, rid, i, njobs, NULL);  /* read now that it is protected */
}

/* First contact with a page: memory is registered unarmed, so a new page
 * always reads as written. The kernel's rule then: hash it, and at the
 * next visit a page with the same hash is a candidate, one that changed is
 * hot. A candidate is indexed (and may merge at once: a merge compares
 * frozen bytes) but not protected: it is on probation, hot and checksummed
 * about once a second like any hot page, until it held still over two of
 * those checks. A page that held still over one fast pass may be written
 * the next moment: protected then, every page the program keeps writing
 * cost it a write-protect fault, one store in five while merging converged
 * unthrottled. Returns true when the page held still. */
static bool first_contact(sp_engine *e, uint32_t rid, size_t i)
{
	struct sp_range *r = e->ranges[rid];
	struct sp_page *pg = &r->pg[i];
	uint64_t h = _sp_hash_page((const void *)(r->start + i * SP_PAGE));
	if (!pg->quiet) {
		pg->hash = h;
		pg->quiet = 1;
		return false;
	}
	pg->quiet = 0;
	pg->hot = 1;
	if (h == pg->hash)
		return true;
	_sp_page_set_state(e, pg, SP_PG_WRITTEN);
	pg->hash = h;
	pg->rewritten = 1;
	return false;
}

/* Tracking mode: categories of each page of the span. Nothing is re-armed
 * here: visit_span() decides which written pages to protect again. */
static int span_categories(sp_engine *e, uintptr_t start, size_t n, uint8_t *cats)
{
	memset(cats, 0, n);
	uintptr_t end = start + n * SP_PAGE, at = start;
	while (at < end) {
		uintptr_t walk_end = end;
		long k = _sp_pagemap_scan(&e->uffd, at, end, PM_SCAN_CHECK_WPASYNC, 0, 0, 0,
					  PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_FILE | PAGE_IS_PFNZERO |
						  PAGE_IS_SWAPPED,
					  e->vec, e->veclen, &walk_end);
		if (k < 0)
			return (int)k;
		for (long x = 0; x < k; x++)
			for (uintptr_t a = e->vec[x].start; a < e->vec[x].end; a += SP_PAGE)
				cats[(a - start) / SP_PAGE] = (uint8_t)e->vec[x].categories;
		if (walk_end <= at)
			break;
		at = walk_end;
	}
	return 0;
}

/* Checksum mode: /proc/self/pagemap bits 63 (present) and 61 (file page). */
static int span_pagemap(sp_engine *e, uintptr_t start, size_t n, uint8_t *cats)
{
	uint64_t ent[SPAN_PAGES];
	if (e->uffd.pagemap < 0) {
		int fd = _sp_prim_open("/proc/self/pagemap", O_RDONLY, 0);
		if (fd < 0)
			return fd;
		e->uffd.pagemap = fd;
	}
	ssize_t got = _sp_prim_pread(e->uffd.pagemap, ent, n * 8, (off_t)(start / SP_PAGE * 8));
	if (got < 0)
		return (int)got;
	for (size_t i = 0; i < n; i++) {
		uint64_t v = (size_t)got >= (i + 1) * 8 ? ent[i] : 0;
		cats[i] = (uint8_t)(((v >> 63) & 1 ? PAGE_IS_PRESENT : 0) | ((v >> 61) & 1 ? PAGE_IS_FILE : 0));
	}
	return 0;
}

/* Visit n pages of range rid from page first. Returns the present pages
 * seen that smart_scan did not skip: like ksmd's, a skipped page is not
 * scanned and does not use the budget. */
static size_t visit_span(sp_engine *e, uint32_t rid, size_t first, size_t n, size_t *njobs)
{
	uint64_t skipped_before = e->pages_skipped;
	struct sp_range *r = e->ranges[rid];
	uintptr_t start = r->start + first * SP_PAGE;
	/* Our own copy: a round of merges may run in the middle of the span
	 * (flush_jobs), and freezing and thawing runs rewrite e->cats. */
	uint8_t cats[SPAN_PAGES];
	int rc = e->tracking ? span_categories(e, start, n, cats) : span_pagemap(e, start, n, cats);
	if (rc && e->tracking && recover_span(e, start, n) == 0)
		rc = span_categories(e, start, n, cats);
	if (rc) {
		e->blk_changed = true;
		abandon(e, rid, first, n);
		return 0;
	}
	uint8_t rearm[SPAN_PAGES], still[SPAN_PAGES];
	memset(rearm, 0, n);
	memset(still, 0, n);
	size_t present = 0;
	for (size_t i = first; i < first + n; i++) {
		if (*njobs >= SP_MAX_JOBS || (e->remote && _sp_remote_full(e)))
			flush_jobs(e, njobs, false);
		r = e->ranges[rid];
		if (!r || i >= r->npages)
			break;
		struct sp_page *pg = &r->pg[i];
		uint8_t c = cats[i - first];
		bool is_present = c & PAGE_IS_PRESENT, is_file = c & PAGE_IS_FILE;
		/* Merged and dropped-zero pages have no page table entry until
		 * read, but they are memory the kernel's ksmd would scan too. */
		present += is_present || pg->state == SP_PG_MERGED || pg->state == SP_PG_ZERO;

		if (pg->state == SP_PG_MERGED) {
			if (is_present && !is_file) {
				cow_seen(e, pg);  /* a write copied it */
				e->blk_changed = true;
			}
			continue;
		}
		if (!e->tracking)
			e->blk_changed = true;  /* checksums: nothing is remembered for us */
		if (e->tracking) {
			if (zero_still(pg, c)) {
				pg->hot = 0;
				pg->quiet = 0;
				if (e->hot_eval)
					pg->rewritten = 0;
				continue;
			}
			/* Quiet: unwritten, settled (indexed, zero or absent), or held
			 * back by vm.max_map_count (retried at each visit anyway). */
			bool held = pg->state == SP_PG_WRITTEN && pg->held;
			if ((c & PAGE_IS_WRITTEN) || pg->hot ||
			    (pg->state != SP_PG_UNSHARED && pg->state != SP_PG_ZERO && pg->state != SP_PG_HOLE && !held))
				e->blk_changed = true;
			if (pg->state == SP_PG_NEW && (c & PAGE_IS_WRITTEN)) {
				if (!is_present || (c & PAGE_IS_PFNZERO))
					_sp_page_set_state(e, pg, SP_PG_HOLE);
				else if (!own_page(r->start + i * SP_PAGE) && first_contact(e, rid, i))
					consider(e, rid, i, njobs, &pg->hash);  /* just read, held still */
				continue;
			}
			if (c & PAGE_IS_WRITTEN) {
				int w = written_page(e, rid, i, is_present);
				rearm[i - first] = w == WP_REARM;
				still[i - first] = w == WP_STILL;
				continue;
			}
			if (pg->hot) {
				/* Protected and not written since: it was a job's page,
				 * re-armed by the thaw of its run. Tracked again. */
				pg->hot = 0;
				pg->quiet = 0;
			}
			if (e->hot_eval)
				pg->rewritten = 0;  /* not written for a while */
			if (!is_present || (c & PAGE_IS_PFNZERO)) {
				if (pg->state == SP_PG_NEW || pg->state == SP_PG_WRITTEN)
					_sp_page_set_state(e, pg, SP_PG_HOLE);
				continue;
			}
			if (pg->state == SP_PG_UNSHARED || pg->state == SP_PG_ZERO)
				continue;  /* unchanged: nothing to do, the point of tracking */
			if (pg->state == SP_PG_HOLE) {
				_sp_page_set_state(e, pg, SP_PG_WRITTEN);  /* became present: wait a pass */
				e->blk_changed = true;
				continue;
			}
			if (!held)
				e->blk_changed = true;
			consider(e, rid, i, njobs, NULL);
			continue;
		}
		/* The kernel's two-pass rule. */
		if (!is_present) {
			if (pg->state != SP_PG_ZERO && pg->state != SP_PG_COWED)
				set_written(e, rid, i, false);
			continue;
		}
		uint64_t h = _sp_hash_page((const void *)start + (i - first) * SP_PAGE);
		bool same = pg->quiet && h == pg->hash;
		if (pg->state == SP_PG_UNSHARED && same)
			continue;
		if (!same) {
			if (pg->state != SP_PG_COWED)
				set_written(e, rid, i, true);
			pg->hash = h;
			pg->quiet = 1;
			continue;
		}
		consider(e, rid, i, njobs, &h);
	}
	/* Hot pages that held still: protect them (a walk per run), then
	 * trust them. */
	for (size_t i = 0; i < n;) {
		if (!still[i]) {
			i++;
			continue;
		}
		size_t k = i;
		while (k < n && still[k])
			k++;
		if (_sp_track_arm(e, start + i * SP_PAGE, start + k * SP_PAGE) == 0) {
			for (size_t x = i; x < k; x++) {
				if (*njobs >= SP_MAX_JOBS || (e->remote && _sp_remote_full(e)))
					flush_jobs(e, njobs, false);
				r = e->ranges[rid];
				if (!r || first + x >= r->npages)
					continue;
				struct sp_page *pg = &r->pg[first + x];
				/* A merge of this batch may have taken it meanwhile. */
				if (pg->hot && (pg->state == SP_PG_WRITTEN || pg->state == SP_PG_UNSHARED))
					settle_page(e, rid, first + x, njobs);
			}
		}
		i = k;
	}
	/* Protect the written pages again so that their next write shows:
	 * one walk per run, none when nothing was written. */
	for (size_t i = 0; i < n;) {
		if (!rearm[i]) {
			i++;
			continue;
		}
		size_t k = i;
		while (k < n && rearm[k])
			k++;
		_sp_track_arm(e, start + i * SP_PAGE, start + k * SP_PAGE);
		i = k;
	}
	size_t skipped = (size_t)(e->pages_skipped - skipped_before);
	return present > skipped ? present - skipped : 0;
}

/* ---------------------------------------------------------- the advisor */

static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void _sp_advisor_start(sp_engine *e)
{
	e->adv_scan_start_ns = _sp_now_ns();
	e->adv_cpu_start = thread_cpu();
}

/* mm/ksm.c's scan-time advisor, the same formula on our own CPU time. */
void _sp_advisor_stop(sp_engine *e)
{
	if (e->knob[SP_ADVISOR_MODE] != 1 || e->adv_scan_start_ns == 0)
		return;
	int64_t scan_time = (_sp_now_ns() - e->adv_scan_start_ns) / 1000000000;
	if (scan_time < 1)
		scan_time = 1;
	int64_t cpu_ms = (int64_t)((thread_cpu() - e->adv_cpu_start) * 1000);
	int64_t cpu_percent = cpu_ms * 100 / (scan_time * 1000);
	if (cpu_percent < 1)
		cpu_percent = 1;
	int64_t last = e->adv_last_scan_time ? e->adv_last_scan_time : scan_time;
	int64_t factor = e->knob[SP_ADVISOR_TARGET_SCAN_TIME] * 100 / scan_time;
	if (factor < 1)
		factor = 1;
	int64_t change = scan_time * 100 / last;
	if (change < 1)
		change = 1;
	change = ((100 - 30) * (int64_t)e->adv_change + 30 * change) / 100;
	int64_t pages = e->knob[SP_PAGES_TO_SCAN] * 100 / factor;
	pages = pages * change / 100;
	int64_t per_page = e->knob[SP_PAGES_TO_SCAN] / cpu_percent;
	if (per_page < 1)
		per_page = 1;
	if (pages > per_page * e->knob[SP_ADVISOR_MAX_CPU])
		pages = per_page * e->knob[SP_ADVISOR_MAX_CPU];
	if (pages < per_page * 10)
		pages = per_page * 10;
	if (pages > e->knob[SP_ADVISOR_MAX_PAGES_TO_SCAN])
		pages = e->knob[SP_ADVISOR_MAX_PAGES_TO_SCAN];
	e->adv_change = (uint64_t)change;
	e->adv_last_scan_time = scan_time;
	e->knob[SP_PAGES_TO_SCAN] = pages;
}

/* ---------------------------------------------------------- one batch */

static bool next_range(sp_engine *e)
{
	for (uint32_t id = e->cur_range + 1; id < e->nranges; id++)
		if (e->ranges[id]) {
			e->cur_range = id;
			e->cur_page = 0;
			return true;
		}
	return false;
}

static void end_of_pass(sp_engine *e);

/* Resting blocks, smart_scan for quiet memory. With write tracking the
 * kernel keeps every write and copy-on-write for us until we look, so a
 * block that was unchanged over several visits can be skipped for a few
 * passes and nothing is lost, only noticed later; most of a visit's cost
 * is PAGEMAP_SCAN's walk over the block's VMAs, which merging multiplies.
 * rest[blk]: low byte visits left to skip, high byte quiet visits in a
 * row. Nothing is missed, so the skips grow faster and further than
 * smart_scan's: after three quiet visits, 2, 8, then 32 to 47 passes.
 * A copy-on-write of a merged page in a long-quiet block, or a new
 * duplicate, is seen that much later; the passes are that much shorter. */
static bool resting(sp_engine *e, struct sp_range *r, size_t blk)
{
	if (!e->tracking || !e->knob[SP_SMART_SCAN] || (r->rest[blk] & 0xff) == 0)
		return false;
	r->rest[blk]--;
	return true;
}

static void skip_block(sp_engine *e, struct sp_range *r, size_t first, size_t end)
{
	for (size_t i = first; i < end; i++)
		e->pages_skipped += r->pg[i].state != SP_PG_HOLE;
}

static void block_visited(sp_engine *e, struct sp_range *r, size_t blk)
{
	if (e->blk_changed || !e->blk_whole) {
		r->rest[blk] = 0;
		return;
	}
	unsigned quiet = r->rest[blk] >> 8;
	if (quiet < 255)
		quiet++;
	/* Long rests differ a little from block to block: blocks that went
	 * quiet together would otherwise all wake in the same pass, and the
	 * cost of passes would come in bursts. */
	/* Like smart_scan, no skipping before three quiet visits: memory just
	 * merged or just written is often written again soon. */
	unsigned base = quiet < 3 ? 0 : quiet < 4 ? 2 : quiet < 5 ? 8 : 32;
	unsigned skips = base ? base + (unsigned)(blk * 7 % (base / 2 + 1)) : 0;
	r->rest[blk] = (uint16_t)(quiet << 8 | skips);
	/* Quiet on a second visit: no page of it was written lately, and a
	 * resting block is not visited to let `rewritten` age (a page written
	 * after a long rest is not hot). */
	if (quiet == 2) {
		size_t end = (blk + 1) * SP_REST_PAGES < r->npages ? (blk + 1) * SP_REST_PAGES : r->npages;
		for (size_t i = blk * SP_REST_PAGES; i < end; i++)
			r->pg[i].rewritten = 0;
	}
}

/* Pages of the budget the daemon's notes used up in this batch: each
 * merge of one counts as a page scanned, so the pace stays pages_to_scan. */
static size_t notes_used(sp_engine *e, size_t budget)
{
	return e->remote ? budget - _sp_remote_notes_left(e) : 0;
}

int _sp_scan_batch(sp_engine *e, size_t budget)
{
	size_t visited = 0, walked = 0, njobs = 0, wraps = 0;
	size_t walk_limit = budget * 64 + SPAN_PAGES;
	if (budget > UINT32_MAX)
		budget = UINT32_MAX;
	if (e->remote)
		_sp_remote_notes_budget(e, (uint32_t)budget);
	size_t used, left;  /* of the budget: after pages visited and notes merged */
	while ((used = visited + notes_used(e, budget)) < budget && walked < walk_limit) {
		left = budget - used;
		struct sp_range *r = e->cur_range < e->nranges ? e->ranges[e->cur_range] : NULL;
		if (!r || e->cur_page >= r->npages) {
			if (next_range(e))
				continue;
			/* Wrapped: a full scan is complete, and like ksmd's the
			 * batch ends with it (none is counted while nothing is
			 * registered). */
			flush_jobs(e, &njobs, false);
			bool counted = e->pass_pages > 0;
			if (counted)
				end_of_pass(e);
			int64_t now = _sp_now_ns();
			e->hot_eval = now - e->hot_eval_ns >= HOT_EVAL_NS;
			if (e->hot_eval)
				e->hot_eval_ns = now;
			e->pass_pages = 0;
			_sp_advisor_start(e);
			e->cur_range = 0;
			e->cur_page = 0;
			if (counted || ++wraps > 1 || !e->nranges)
				break;
			if (!e->ranges[0] && !next_range(e))
				break;
			continue;
		}
		size_t first = e->cur_page, blk = first / SP_REST_PAGES;
		size_t blk_end = (blk + 1) * SP_REST_PAGES < r->npages ? (blk + 1) * SP_REST_PAGES : r->npages;
		if (first % SP_REST_PAGES == 0) {
			if (resting(e, r, blk)) {
				skip_block(e, r, first, blk_end);
				walked += blk_end - first;
				e->pass_pages += blk_end - first;
				e->cur_page = blk_end;
				continue;
			}
			e->blk_changed = false;
			e->blk_whole = true;
		} else if (!e->blk_whole) {
			e->blk_changed = true;  /* entered mid-block: no verdict on it */
		}
		/* A span no larger than what is left of the budget: the pass rate
		 * at given knobs is then the kernel's. */
		size_t n = blk_end - first;
		if (n > SPAN_PAGES)
			n = SPAN_PAGES;
		if (n > left)
			n = left;
		e->cur_page += n;
		visited += visit_span(e, e->cur_range, first, n, &njobs);
		walked += n;
		e->pass_pages += n;
		r = e->cur_range < e->nranges ? e->ranges[e->cur_range] : NULL;
		if (e->cur_page == blk_end && r && blk < SP_REST_BLOCKS(r->npages))
			block_visited(e, r, blk);
		if (e->cur_page == blk_end)
			e->blk_whole = false;
	}
	flush_jobs(e, &njobs, true);
	visited += notes_used(e, budget);
	if (e->remote)
		_sp_remote_notes_budget(e, 0);
	e->pages_scanned += visited;
	return (int)visited;
}

static void end_of_pass(sp_engine *e)
{
	e->full_scans++;
	_sp_advisor_stop(e);
	/* The program maps and unmaps too: count again now and then after
	 * merges (merge.c says how often). */
	_sp_vmas_recount(e, true);
	_sp_publish_pass(e);
}
