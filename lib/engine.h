/* SPDX-License-Identifier: MIT */
/*
 * The user-space merging engine: internal structures shared by its files.
 *
 *   range.c   registered ranges and per-page state
 *   uffd.c    the two userfaultfds (async tracking, sync freeze), PAGEMAP_SCAN
 *   store.c   memfd segments holding merged contents (immutable once published)
 *   index.c   content-hash tables: stable (store pages), unstable (candidates)
 *   merge.c   freeze, compare, replace; zero pages; unmerge
 *   scan.c    one batch / one pass of the scanner, smart_scan, counters
 *   engine.c  the handle, knobs, the scanner thread, the public calls
 *   wrap.c    libc semantics on merged memory (madvise, munmap, mremap, mmap)
 */
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define SP_PAGE 4096UL

/* ------------------------------------------------------------ meta.c */

/* Memory the scanner writes: never registered (see meta.c). */
void *_sp_meta_alloc(size_t len);
void _sp_meta_free(void *p, size_t len);
void *_sp_meta_realloc(void *p, size_t old_len, size_t new_len);
bool _sp_meta_overlaps(uintptr_t start, uintptr_t end);
void *_sp_meta_map_file(int fd, size_t len, int prot);
int _sp_meta_move_to(void *p, size_t len, void *dst);
/* An id-indexed array grown to want entries of elem bytes (*cap updated). */
void *_sp_meta_grow(void *p, uint32_t *cap, size_t elem, uint32_t want);
/* Drop the memory of bytes [used, len) of a block (they read zero again). */
void _sp_meta_trim(void *p, size_t used, size_t len);

/* ------------------------------------------------------------ maps.c */

struct sp_vma {
	unsigned long start, end, inode;
	char perms[8];
	char path[128];
	int prot;          /* 1 read, 2 write, 4 exec */
	bool shared, file, store, hugetlb, locked, uffd, special, thp, growsdown;
};

struct sp_vmas {
	struct sp_vma *v;
	size_t n, cap;
};
/* The VMAs overlapping [start,end), in meta memory (no libc allocation). */
int _sp_maps_read(uintptr_t start, uintptr_t end, const char *store_name, struct sp_vmas *out);
void _sp_maps_free(struct sp_vmas *m);
/* 0 if [start,end) is all private anonymous memory we may register; else
 * -EINVAL (what kind of memory in why) or -ENOMEM (a gap). */
int _sp_maps_check(uintptr_t start, uintptr_t end, const char *store_name, char *why, size_t whylen);
/* Number of VMAs of this process. */
int _sp_maps_count(void);

/* ------------------------------------------------------------ uffd.c */

struct sp_uffd {
	int track;            /* async WP uffd: write tracking, -1 without */
	int freeze;           /* sync WP uffd: blocks writers while we compare/replace */
	int pagemap;          /* /proc/self/pagemap for PAGEMAP_SCAN, -1 without */
	bool user_mode_only;  /* kernel-mode faults on frozen pages fail (EFAULT) */
	bool write_tracking;  /* WP_ASYNC + PAGEMAP_SCAN available */
};

int _sp_uffd_open(struct sp_uffd *u, bool want_tracking);
void _sp_uffd_close(struct sp_uffd *u);
int _sp_uffd_register(int fd, uintptr_t start, size_t len, bool wp);
int _sp_uffd_unregister(int fd, uintptr_t start, size_t len);
int _sp_uffd_wp(int fd, uintptr_t start, size_t len, bool on);
int _sp_uffd_wake(int fd, uintptr_t start, size_t len);

/* PAGEMAP_SCAN over [start,end): regions whose categories match. Returns
 * the number of regions (>= 0) or -errno; *walk_end tells where it stopped. */
long _sp_pagemap_scan(struct sp_uffd *u, uintptr_t start, uintptr_t end, uint64_t flags,
		      uint64_t cat_mask, uint64_t cat_inverted, uint64_t cat_anyof,
		      uint64_t return_mask, struct page_region *vec, size_t vlen,
		      uintptr_t *walk_end);

/* ------------------------------------------------------------ store.c */

#define SP_SEG_PAGES 8192u          /* 32 MiB segments: few fds, sparse until used */
#define SP_MAX_NODES 64
#define SP_NONE UINT32_MAX

/* One merged content, as everyone who maps the store knows it. A client
 * of samepaged keeps this for every id of its domain's store, so it is
 * kept small; what only the store's owner needs is in sp_slink. */
struct sp_spage {
	uint64_t hash;
	uint32_t refs : 31;         /* our mappings that name it (MERGED or COWED pages) */
	uint32_t live : 1;          /* published and not yet dropped */
	uint32_t sharers;           /* of those, pages that really share it (MERGED) */
};

#define SP_SPAGE_REFS_MAX 0x7fffffffu  /* what sp_spage.refs can hold */

/* The owner's side of a store page (the engine's own store, or the daemon's). */
struct sp_slink {
	uint32_t next_dup;          /* chain of store pages of one content (stable.c) */
	uint32_t prev_dup;
	uint32_t fork_gen;          /* fork generation when first mapped */
	uint32_t node;              /* NUMA node (merge_across_nodes=0) */
};

struct sp_segment {
	int fd;
	int rofd;                   /* read-only reopening, for the daemon's clients */
	int node;                   /* NUMA node its pages are placed on */
	uint8_t *view;              /* MAP_SHARED: where contents are written and compared */
	uint32_t used;              /* bump allocator */
	uint32_t live;              /* pages with mappers (attached: pages known) */
	bool attached;              /* a daemon's segment, seen from a client */
};

struct sp_store {
	struct sp_segment *seg;
	uint32_t nseg, capseg;
	struct sp_spage *pg;        /* indexed by store page id = seg * SP_SEG_PAGES + off */
	struct sp_slink *link;      /* the same ids; never touched by a client of samepaged */
	uint32_t npg_cap, nlink_cap;
	uint32_t *free;             /* ids of punched pages that may be reused */
	uint32_t nfree, capfree;
	uint32_t fork_gen;          /* bumped by every fork() of this process */
	int32_t cur[SP_MAX_NODES];  /* segment being filled, per NUMA node; -1 none */
	bool real_numa;             /* bind segments to their node (mbind) */
	bool no_punch;              /* a fork child's copy, or shutting down: never punch */
	char name[32];              /* memfd name, recognisable in /proc/self/maps */
};

int _sp_store_init(struct sp_store *s);
void _sp_store_fini(struct sp_store *s);
/* A new store page holding a copy of src; returns its id or -errno. */
int64_t _sp_store_add(struct sp_store *s, const void *src, uint64_t hash, uint8_t node);
const void *_sp_store_data(const struct sp_store *s, uint32_t id);
/* A client's view of a daemon segment (read-only); takes ownership of fd. */
int _sp_store_attach(struct sp_store *s, uint32_t seg, int fd);
bool _sp_store_has(const struct sp_store *s, uint32_t id);
/* A read-only fd of the segment (clients map it privately, cannot alter it). */
int _sp_store_ro_fd(struct sp_store *s, uint32_t seg);
/* fd and offset to mmap the page from */
void _sp_store_where(const struct sp_store *s, uint32_t id, int *fd, off_t *off);
/* One mapping less; frees the page when safe (no fork since it was mapped). */
void _sp_store_put(struct sp_store *s, uint32_t id);
/* Bytes of bookkeeping plus dead pages that cannot be freed yet. */
int64_t _sp_store_overhead(const struct sp_store *s);

/* ------------------------------------------------------------ index.c */

/* Open-addressing table: 64-bit content hash -> 64-bit value. One value per
 * hash: collisions of different contents are resolved by memcmp later. */
struct sp_index {
	uint64_t *keys;
	uint64_t *vals;
	size_t cap, count, tombs;
};

int _sp_index_init(struct sp_index *ix, size_t cap);
void _sp_index_fini(struct sp_index *ix);
bool _sp_index_get(const struct sp_index *ix, uint64_t key, uint64_t *val);
int _sp_index_put(struct sp_index *ix, uint64_t key, uint64_t val);
bool _sp_index_del(struct sp_index *ix, uint64_t key, uint64_t val);  /* only if it maps to val */
size_t _sp_index_bytes(const struct sp_index *ix);

uint64_t _sp_hash_page(const void *p);

/* Whole pages of the program's memory, compared (0: equal) and copied.
 * They straddle whatever the program's allocator put there, so sanitizer
 * builds of the library read them uninstrumented. */
int _sp_page_cmp(const void *a, const void *b);
void _sp_page_copy(void *dst, const void *src);

/* Open-addressing tables (index.c and stable.c): when to rebuild, to what
 * size, and where a key's probe starts. */
bool _sp_table_full(size_t cap, size_t count, size_t tombs);
bool _sp_table_sparse(size_t cap, size_t count);
size_t _sp_table_resize(size_t cap, size_t count);
size_t _sp_table_home(uint64_t key, size_t cap);

/* The stable index: content -> store pages, with chains of dups. Its slots
 * hold only the head's id: the key is the store page's own hash, a quarter
 * of the memory of an sp_index. */
struct sp_stable {
	uint32_t *slot;              /* 0 empty, 1 deleted, else id + 2 */
	size_t cap, count, tombs;
	struct sp_store *store;
	uint64_t chains, dups;
};
int _sp_stable_init(struct sp_stable *st, struct sp_store *store);
void _sp_stable_fini(struct sp_stable *st);
size_t _sp_stable_bytes(const struct sp_stable *st);

/* ------------------------------------------------------------ range.c */

enum sp_pg_state {
	SP_PG_NEW = 0,      /* not looked at yet: waits one quiet pass */
	SP_PG_WRITTEN,      /* written in the last pass (volatile) */
	SP_PG_UNSHARED,     /* hashed, no partner yet; in the unstable index */
	SP_PG_MERGED,       /* maps store page .ref */
	SP_PG_COWED,        /* written after merging: a private copy hides store page .ref,
			       which the mapping still names (a zap would bring it back) */
	SP_PG_ZERO,         /* empty page dropped (use_zero_pages) */
	SP_PG_HOLE,         /* not present */
};

struct sp_page {
	uint64_t hash;      /* XXH3 of the content when last hashed */
	uint32_t ref;       /* store page id when MERGED or COWED */
	uint8_t state;
	uint8_t age;        /* smart_scan: scans without a merge */
	uint8_t skips : 4;  /* smart_scan: visits left to skip (at most 8) */
	uint8_t quiet : 1;  /* hash unchanged since last visit (checksum mode, hot pages) */
	uint8_t held : 1;   /* merge held back by vm.max_map_count (counted once) */
	uint8_t hot : 1;    /* tracking: written on consecutive visits, left unprotected */
	uint8_t rewritten : 1; /* tracking: the last visit found it written */
	uint8_t node;       /* NUMA node, part of the key when merge_across_nodes=0 */
};

/* Merged or copied-on-write: a private mapping of the store, not
 * anonymous memory (what MADV_DONTNEED, VMA counting and unmerging care
 * about). */
static inline bool _sp_page_maps_store(const struct sp_page *pg)
{
	return pg->state == SP_PG_MERGED || pg->state == SP_PG_COWED;
}

/* Pages per resting block: with write tracking, a block found unchanged on
 * consecutive visits is skipped on the next ones (smart_scan). */
#define SP_REST_PAGES 512
#define SP_REST_BLOCKS(npages) (((npages) + SP_REST_PAGES - 1) / SP_REST_PAGES)

struct sp_range {
	uintptr_t start;
	size_t npages;
	size_t cap_pages;    /* pages allocated in pg (npages may shrink) */
	struct sp_page *pg;
	uint16_t *rest;      /* per block of SP_REST_PAGES, after pg: see scan.c */
	int prot;            /* PROT_* of the memory, for mapping store pages */
	bool any;            /* registered by "merge any" */
};

/* The index key of a page: its hash, and its node when merge_across_nodes=0
 * (pages of different nodes then never meet, like the kernel's per-node trees). */
static inline uint64_t _sp_key(const struct sp_engine *e, const struct sp_page *pg);

/* A page locator packed in 64 bits for the unstable index. */
#define SP_LOC(range, page) (((uint64_t)(range) << 40) | (uint64_t)(page))
#define SP_LOC_RANGE(l) ((uint32_t)((l) >> 40))
#define SP_LOC_PAGE(l) ((size_t)((l) & ((1ull << 40) - 1)))

#endif

/* ------------------------------------------------------------ engine.c */

struct sp_engine {
	pthread_mutex_t lock;
	pthread_cond_t cond;         /* knob changes wake the thread */
	atomic_int waiters;          /* threads blocked in _sp_lock(): the scanner yields to them */
	/* Full scans, published without the engine's lock so that waiting for
	 * a pass never competes with the scanner for it. */
	pthread_mutex_t pass_lock;
	pthread_cond_t pass_cond;
	_Atomic uint64_t scans_done;
	pthread_t thread;
	bool thread_started, stopping;
	bool inert;                  /* a fork child's copy: no uffd, no scanning */
	unsigned flags;
	pid_t owner;

	struct sp_uffd uffd;
	bool tracking;               /* write tracking (else the checksum rule) */
	struct sp_store store;
	struct sp_stable stable;     /* content hash -> store page id (chain head) */
	struct sp_index unstable;    /* content hash -> SP_LOC of an UNSHARED page */
	uint64_t zero_hash;

	struct sp_range **ranges;    /* slot array; slot number = range id; NULL = free */
	uint32_t nranges, capranges;
	uint32_t cur_range;          /* scan cursor */
	size_t cur_page;
	bool blk_changed;            /* the block being visited changed (scan.c) */
	bool blk_whole;              /* ... and its visit began at its first page */
	size_t pass_pages;           /* pages walked in the current full scan */

	int64_t knob[SP_PARAM_COUNT];

	/* counters (see sp_engine_sample) */
	uint64_t pages_scanned, pages_skipped, full_scans, cow_ksm, skipped_map_count;
	uint64_t state_count[SP_PG_HOLE + 1];
	uint64_t pages_shared, pages_sharing;  /* maintained with store sharers */

	int vmas, max_map_count;
	bool vmas_dirty;             /* merges since the last count */
	int64_t vmas_counted_ns;     /* when /proc/self/maps was last counted */
	int64_t vmas_counted_cpu;    /* the engine thread's CPU clock then */
	int64_t vmas_count_cost;     /* CPU that count took */
	int vmas_counted;            /* the mappings it found */
	int max_map_fd;              /* /proc/sys/vm/max_map_count, kept open */
	int64_t max_map_read_ns;     /* when it was last read */
	bool hot_eval;               /* this pass checksums hot pages (scan.c) */
	int64_t hot_eval_ns;         /* start of the last pass that did */
	int numa_nodes;              /* nodes of this machine (or SAMEPAGE_FAKE_NUMA_NODES) */
	int fake_numa;               /* simulated topology: node = (address / 2 MiB) % nodes */
	bool merge_any;
	size_t any_min;
	int64_t any_refreshed_ns;
	void *thread_stack;

	/* scan-time advisor */
	int64_t adv_scan_start_ns;
	double adv_cpu_start;
	uint64_t adv_change;
	int64_t adv_last_scan_time;

	/* scanner work areas, all in meta memory */
	struct sp_job *jobs;         /* SP_MAX_JOBS */
	uintptr_t *addrs;            /* 2 * SP_MAX_JOBS */
	size_t naddrs;               /* this batch's job pages in addrs, sorted */
	struct sp_run *runs;         /* 2 * SP_MAX_JOBS */
	uint8_t *cats;               /* SP_CATS: a run's or a span's pages */
	uintptr_t *loose;            /* 2 * SP_MAX_JOBS: hot pages inside runs */
	struct sp_map *maps;         /* 2 * SP_MAX_JOBS */
	size_t nmaps;
	struct sp_job **drops;       /* SP_MAX_JOBS: the jobs whose frozen page of zeros goes */
	size_t ndrops;
	int self_pidfd;              /* for process_madvise(), of self_pid; -1: none yet */
	pid_t self_pid;
	bool no_process_madvise;     /* refused here (before 6.13): madvise per page */
	struct page_region *vec;     /* PAGEMAP_SCAN results */
	size_t veclen;
	struct sp_engine *next;      /* all engines of the process, for fork */
	struct sp_remote *remote;    /* client of samepaged (SP_ENGINE_SHARED), else NULL */
};

static inline uint64_t _sp_key(const struct sp_engine *e, const struct sp_page *pg)
{
	if (e->knob[SP_MERGE_ACROSS_NODES] || e->numa_nodes < 2)
		return pg->hash;
	return pg->hash ^ (uint64_t)(pg->node + 1) * 0x9E3779B97F4A7C15ull;
}

/* range.c */
int _sp_range_add(sp_engine *e, uintptr_t start, size_t npages, int prot, bool any);
struct sp_range *_sp_range_at(sp_engine *e, uintptr_t addr, uint32_t *id);
bool _sp_range_overlaps(sp_engine *e, uintptr_t start, uintptr_t end);
/* Forget pages [start,end) of every range; caller has made sure none maps the store. */
int _sp_range_cut(sp_engine *e, uintptr_t start, uintptr_t end);
void _sp_page_set_state(sp_engine *e, struct sp_page *pg, uint8_t state);
void _sp_share_add(sp_engine *e, uint32_t id);   /* one more sharer (and reference) */
void _sp_share_drop(sp_engine *e, uint32_t id);  /* one sharer less; the reference stays */
/* Drop a page's index entry and store reference (mapping already gone). */
void _sp_page_forget(sp_engine *e, uint32_t rid, size_t i);
size_t _sp_ranges_bytes(const sp_engine *e);
int _sp_range_set_prot(sp_engine *e, uintptr_t start, uintptr_t end, int prot);

/* stable.c */
uint32_t _sp_stable_find(struct sp_stable *st, uint64_t hash, int64_t max_sharing); /* or SP_NONE */
void _sp_stable_insert(struct sp_stable *st, uint64_t hash, uint32_t id);
bool _sp_stable_put(struct sp_stable *st, uint32_t id);  /* one reference less; true if it died */
void _sp_spage_put(sp_engine *e, uint32_t id);           /* the engine's: local or to the daemon */
/* Empty pages are always dropped (no store page, no mapping). With
 * use_zero_pages=0 the counters still say what the kernel would: the
 * pages as sharers of ceil(n / max_page_sharing) merged zero pages. */
void _sp_zero_fold(const int64_t *knob, int64_t *shared, int64_t *sharing, int64_t *zero);

/* merge.c */
struct sp_job {
	uint32_t rid;       /* the candidate page */
	size_t page;
	uint32_t prid;      /* partner page (PAIR) */
	size_t ppage;
	uint32_t store;     /* store page (STABLE) */
	uint8_t kind;       /* SP_JOB_* */
};
enum { SP_JOB_ZERO = 1, SP_JOB_STABLE, SP_JOB_PAIR };
/* The NUMA node whose store holds this page's merged copy. */
int _sp_page_node(sp_engine *e, uintptr_t addr);

#define SP_MAX_JOBS 256
/* Pages of a freeze run (jobs and the gaps between them) or of a visited
 * span: the size of the categories buffer. */
#define SP_CATS (2 * SP_MAX_JOBS + 512)

struct sp_map {              /* a decided replacement, applied in bulk */
	uintptr_t addr;
	uint32_t id;
	uint32_t rid;
	size_t page;
	uint32_t old;        /* store page named before (COWED), or SP_NONE */
};

struct sp_run {
	uintptr_t start;
	size_t pages;
	size_t loose, nloose;  /* e->loose[loose..+nloose): its pages left unprotected */
	size_t njob;           /* its pages that are jobs' */
	bool frozen;
};

/* Freeze, compare and replace for a batch of jobs; updates page states. */
void _sp_merge_jobs(sp_engine *e, struct sp_job *jobs, size_t n);
/* Turn the merged/copied pages of [start, start+npages) back into private
 * anonymous memory. -ENOMEM/-EAGAIN if memory is lacking: nothing changes. */
int _sp_unmerge_run(sp_engine *e, uint32_t rid, size_t first, size_t npages, bool keep_registered);
int _sp_unmerge_all(sp_engine *e, bool keep_registered);
/* Register [start,len) on the tracking uffd (or the freeze uffd in checksum mode) and arm it. */
int _sp_track_register(sp_engine *e, uintptr_t start, size_t len, bool armed);
/* Write-protect [start,end) on the tracking uffd again (written pages only). */
int _sp_track_arm(sp_engine *e, uintptr_t start, uintptr_t end);
int _sp_track_unregister(sp_engine *e, uintptr_t start, size_t len);
bool _sp_vma_headroom(sp_engine *e, size_t merges);

/* scan.c */
int _sp_scan_batch(sp_engine *e, size_t budget);
void _sp_advisor_start(sp_engine *e);
void _sp_advisor_stop(sp_engine *e);

/* client.c: the engine as a client of samepaged */
int _sp_remote_init(sp_engine *e);
void _sp_remote_fini(sp_engine *e);
void _sp_remote_wake(sp_engine *e);
void *_sp_remote_main(void *arg);
void _sp_remote_queue(sp_engine *e, uint32_t rid, size_t i, uint64_t key, uint8_t node);
bool _sp_remote_full(const sp_engine *e);
void _sp_remote_notes_budget(sp_engine *e, uint32_t pages);
uint32_t _sp_remote_notes_left(const sp_engine *e);
bool _sp_remote_notes_pending(const sp_engine *e);
size_t _sp_remote_resolve(sp_engine *e, size_t njobs, bool may_defer);
void _sp_remote_ref(sp_engine *e, uint32_t id, int refs, int sharers);
void _sp_remote_forget(sp_engine *e, uint64_t key, uintptr_t addr);
void _sp_remote_flush(sp_engine *e);
bool _sp_remote_connected(const sp_engine *e);
void _sp_remote_forking(sp_engine *e);
void _sp_remote_child(sp_engine *e);

/* engine.c */
/* The engine's lock; the thread-local depth tells the preload library
 * that calls made under it come from the engine itself (sp_in_engine). */
void _sp_lock(sp_engine *e);
void _sp_unlock(sp_engine *e);
/* The scanner, having dropped the lock: let blocked callers have it first
 * (a mutex is not fair, and at sleep_millisecs=0 the scanner would win). */
void _sp_yield_lock(sp_engine *e);
/* End of a full scan: wake sp_engine_wait_scans(). Under the lock. */
void _sp_publish_pass(sp_engine *e);
int _sp_engine_register(sp_engine *e, uintptr_t start, uintptr_t end, bool any, char *why, size_t whylen);
int _sp_engine_unregister(sp_engine *e, uintptr_t start, uintptr_t end);
/* "Merge any": register new mappings (at most once a second). */
void _sp_any_refresh(sp_engine *e);
/* CPU time of the engine's thread (0 when it has none). */
int64_t _sp_engine_cpu_ns(sp_engine *e);
void _sp_vmas_recount(sp_engine *e, bool after_merges);
