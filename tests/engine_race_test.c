/* SPDX-License-Identifier: MIT */
/*
 * Description: try hard to make the user-space engine lose a write or show
 * wrong data. Writer threads hammer pages whose contents keep becoming
 * mergeable again, while the scanner runs unthrottled and a disturber
 * unmerges (run=2), discards (MADV_DONTNEED/MADV_FREE), unmaps, remaps,
 * forks, or writes through system calls. Every page is checked against a
 * shadow copy kept by the thread that owns it.
 *
 * Each scenario runs SAMEPAGE_RACE_SECONDS (default 1.5 s; `make soak`
 * sets minutes). Run one alone: build/tests/engine_race_test.t NAME
 */
#include "helpers.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL
#define WRITERS 2
#define PAGES_PER_WRITER 1024
#define DISTINCT 4
#define STAMP_SLOTS 8

struct shadow {
	uint8_t base;                     /* every byte, except stamps */
	uint64_t stamp[STAMP_SLOTS];      /* 0 = slot holds base bytes */
};

struct world {
	sp_engine *e;
	uint8_t *mem;
	size_t pages;
	struct shadow *shadow;
	atomic_bool stop;
	atomic_ulong writes, checks, bad, efaults;
	double seconds;
	bool syscall_writes;
	int64_t peak_sharing;  /* seen by a disturber, e.g. just before it unmerged */
};

static double race_seconds(void)
{
	const char *s = getenv("SAMEPAGE_RACE_SECONDS");
	double v = s ? atof(s) : 1.5;
	return v > 0 ? v : 1.5;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static bool page_ok(const uint8_t *p, const struct shadow *sh)
{
	for (size_t off = 0; off < PG; off += 8) {
		uint64_t want;
		size_t slot = off / (PG / STAMP_SLOTS);
		if (off % (PG / STAMP_SLOTS) == 0 && sh->stamp[slot])
			want = sh->stamp[slot];
		else
			memset(&want, sh->base, 8);
		uint64_t got;
		memcpy(&got, p + off, 8);
		if (got != want)
			return false;
	}
	return true;
}

static void fill_page(uint8_t *p, struct shadow *sh, uint8_t base)
{
	memset(p, base, PG);
	sh->base = base;
	memset(sh->stamp, 0, sizeof(sh->stamp));
}

/* Write a stamp: either directly or, with syscall_writes, through read()
 * from a pipe, so that the kernel does the write (copy_to_user). */
static int write_stamp(struct world *w, uint8_t *p, size_t slot, uint64_t v, int pipefd[2])
{
	uint8_t *dst = p + slot * (PG / STAMP_SLOTS);
	if (!w->syscall_writes) {
		memcpy(dst, &v, 8);
		return 0;
	}
	if (write(pipefd[1], &v, 8) != 8)
		return -errno;
	ssize_t r = read(pipefd[0], dst, 8);
	if (r == 8)
		return 0;
	int e = errno;
	uint64_t drain;
	if (read(pipefd[0], &drain, 8) != 8)
		return -EIO;
	return r < 0 ? -e : -EIO;
}

struct writer_arg {
	struct world *w;
	size_t first, count;
	uint64_t seed;
};

static void *writer_main(void *arg)
{
	struct writer_arg *a = arg;
	struct world *w = a->w;
	uint64_t s = a->seed, n = 0;
	int pipefd[2];
	if (pipe(pipefd))
		return NULL;
	while (!atomic_load(&w->stop)) {
		/* Most writes go to a hot sixteenth; the cold rest stays quiet long
		 * enough to be merged, and the rare write to it races the merges. */
		size_t i = a->first + (rnd(&s) % 8 ? rnd(&s) % (a->count / 16) : rnd(&s) % a->count);
		uint8_t *p = w->mem + i * PG;
		struct shadow *sh = &w->shadow[i];
		uint64_t what = rnd(&s) % 16;
		if (what < 6) {
			fill_page(p, sh, (uint8_t)(1 + rnd(&s) % DISTINCT));  /* mergeable again */
		} else if (what < 15) {
			size_t slot = rnd(&s) % STAMP_SLOTS;
			uint64_t v = (rnd(&s) | 1);
			int r = write_stamp(w, p, slot, v, pipefd);
			if (r == -EFAULT) {
				atomic_fetch_add(&w->efaults, 1);
				continue;
			}
			if (r == 0)
				sh->stamp[slot] = v;
		} else {
			size_t slot = rnd(&s) % STAMP_SLOTS;
			/* give a stamp back: page may match others again */
			memset(p + slot * (PG / STAMP_SLOTS), sh->base, 8);
			sh->stamp[slot] = 0;
		}
		atomic_fetch_add(&w->writes, 1);
		if (!page_ok(p, sh)) {
			atomic_fetch_add(&w->bad, 1);
			print_message("page %zu wrong right after writing it\n", i);
		}
		if (++n % 4096 == 0) {
			for (size_t k = a->first; k < a->first + a->count; k++) {
				atomic_fetch_add(&w->checks, 1);
				if (!page_ok(w->mem + k * PG, &w->shadow[k])) {
					atomic_fetch_add(&w->bad, 1);
					print_message("page %zu wrong in a sweep\n", k);
				}
			}
		}
	}
	close(pipefd[0]);
	close(pipefd[1]);
	return NULL;
}

static struct world *world_new_flags(size_t extra_pages, unsigned flags)
{
	struct world *w = calloc(1, sizeof(*w));
	sp_engine *e;
	int r = sp_engine_new(flags, &e);
	if (r) {
		free(w);
		return NULL;
	}
	w->e = e;
	w->pages = WRITERS * PAGES_PER_WRITER + extra_pages;
	w->mem = mmap(NULL, w->pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(w->mem != MAP_FAILED);
	w->shadow = calloc(w->pages, sizeof(*w->shadow));
	for (size_t i = 0; i < w->pages; i++)
		fill_page(w->mem + i * PG, &w->shadow[i], (uint8_t)(1 + i % DISTINCT));
	assert_int_equal(sp_madvise(e, w->mem, w->pages * PG, MADV_MERGEABLE), 0);
	sp_setting go[] = { { "pages_to_scan", "100000" }, { "sleep_millisecs", "0" }, { "run", "1" } };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, go, 3, 0, &d), 0);
	w->seconds = race_seconds();
	return w;
}

static void world_run(struct world *w, void (*disturb)(struct world *, uint64_t *), int expect_merges)
{
	pthread_t th[WRITERS];
	struct writer_arg args[WRITERS];
	for (int i = 0; i < WRITERS; i++) {
		args[i] = (struct writer_arg){ w, (size_t)i * PAGES_PER_WRITER, PAGES_PER_WRITER, 0x9e3779b97f4a7c15ull * (i + 1) };
		pthread_create(&th[i], NULL, writer_main, &args[i]);
	}
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t seed = 12345;
	int64_t max_sharing = 0;
	do {
		if (disturb)
			disturb(w, &seed);
		else
			usleep(20000);
		sp_sample s;
		sp_engine_sample(w->e, &s);
		if (s.value[SP_PAGES_SHARING] > max_sharing)
			max_sharing = s.value[SP_PAGES_SHARING];
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < w->seconds);
	atomic_store(&w->stop, true);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(th[i], NULL);
	if (w->peak_sharing > max_sharing)
		max_sharing = w->peak_sharing;
	sp_sample s;
	sp_engine_sample(w->e, &s);
	print_message("%lu writes, %lu page checks, %lu wrong, %lu EFAULT; pages_sharing max %lld now %lld, cow_ksm %lld, full_scans %lld\n",
		      atomic_load(&w->writes), atomic_load(&w->checks), atomic_load(&w->bad),
		      atomic_load(&w->efaults), (long long)max_sharing, (long long)s.value[SP_PAGES_SHARING],
		      (long long)s.value[SP_COW_KSM], (long long)s.value[SP_FULL_SCANS]);
	/* final sweep of every page, writers stopped */
	for (size_t i = 0; i < w->pages; i++)
		if (!page_ok(w->mem + i * PG, &w->shadow[i])) {
			atomic_fetch_add(&w->bad, 1);
			print_message("page %zu wrong at the end\n", i);
		}
	assert_int_equal(atomic_load(&w->bad), 0);
	if (expect_merges) {
		/* The race was real: pages were merged, and writes broke merged pages. */
		assert_true(max_sharing > 0 || s.value[SP_PAGES_SHARING] > 0);
		assert_true(s.value[SP_COW_KSM] > 0);
	}
	assert_true(atomic_load(&w->writes) > 50);  /* the writers really ran (slowly under TSan) */
}

static void world_free(struct world *w)
{
	assert_int_equal(sp_engine_free(w->e), 0);
	/* after the engine is gone the memory is still right */
	for (size_t i = 0; i < w->pages; i++)
		assert_true(page_ok(w->mem + i * PG, &w->shadow[i]));
	munmap(w->mem, w->pages * PG);
	free(w->shadow);
	free(w);
}

#define WORLD_FLAGS(w, extra, flags)                                                \
	struct world *w = world_new_flags(extra, flags);                            \
	if (!w)                                                                     \
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel")
#define WORLD(w, extra) WORLD_FLAGS(w, extra, 0)

/* ------------------------------------------------------------ scenarios */

static void test_writers_race_merges(void **state)
{
	(void)state;
	WORLD(w, 0);
	world_run(w, NULL, 1);
	world_free(w);
}

/* The same without write tracking: the kernel's two-pass checksum rule,
 * where pages stay on the freeze uffd between merges. */
static void test_writers_race_merges_checksum(void **state)
{
	(void)state;
	WORLD_FLAGS(w, 0, SP_ENGINE_CHECKSUM);
	sp_engine_info info;
	sp_engine_info_get(w->e, &info);
	assert_string_equal(info.change_detection, "checksum");
	world_run(w, NULL, 1);
	world_free(w);
}

static void flip_run(struct world *w, uint64_t *seed)
{
	(void)seed;
	sp_diag d;
	sp_setting unmerge = { "run", "2" }, go = { "run", "1" };
	usleep(15000);
	sp_sample s;
	sp_engine_sample(w->e, &s);
	if (s.value[SP_PAGES_SHARING] > w->peak_sharing)
		w->peak_sharing = s.value[SP_PAGES_SHARING];  /* what run=2 now has to undo */
	int r = sp_engine_set(w->e, &unmerge, 1, 0, &d);
	if (r)
		fail_msg("run=2: %s", d.msg);
	sp_engine_sample(w->e, &s);
	assert_int_equal(s.value[SP_PAGES_SHARING], 0);
	assert_int_equal(s.value[SP_PAGES_SHARED], 0);
	assert_int_equal(sp_engine_set(w->e, &go, 1, 0, &d), 0);
}

static void test_unmerge_all_under_writes(void **state)
{
	(void)state;
	WORLD(w, 0);
	world_run(w, flip_run, 1);
	world_free(w);
}

/* The disturber owns the extra pages past the writers' ones. */
#define EXTRA 256

static void discard_some(struct world *w, uint64_t *seed)
{
	size_t first = WRITERS * PAGES_PER_WRITER;
	size_t i = first + rnd(seed) % (EXTRA - 8), n = 1 + rnd(seed) % 8;
	int advice = rnd(seed) % 2 ? MADV_DONTNEED : MADV_FREE;
	assert_int_equal(sp_madvise(w->e, w->mem + i * PG, n * PG, advice), 0);
	for (size_t k = i; k < i + n; k++) {
		/* DONTNEED promises zeros; FREE allows zeros or the old bytes */
		uint8_t *p = w->mem + k * PG;
		if (advice == MADV_DONTNEED || p[0] == 0) {
			memset(&w->shadow[k], 0, sizeof(w->shadow[k]));
			if (!page_ok(p, &w->shadow[k])) {
				atomic_fetch_add(&w->bad, 1);
				print_message("page %zu not zero after %s\n", k,
					      advice == MADV_DONTNEED ? "MADV_DONTNEED" : "MADV_FREE");
			}
		}
		fill_page(p, &w->shadow[k], (uint8_t)(1 + rnd(seed) % DISTINCT));
	}
	usleep(2000);
}

static void test_discard_races_merges(void **state)
{
	(void)state;
	WORLD(w, EXTRA);
	world_run(w, discard_some, 1);
	world_free(w);
}

static void remap_some(struct world *w, uint64_t *seed)
{
	size_t first = WRITERS * PAGES_PER_WRITER;
	size_t i = first + rnd(seed) % (EXTRA - 16), n = 1 + rnd(seed) % 16;
	uint8_t *at = w->mem + i * PG;
	void *out;
	switch (rnd(seed) % 3) {
	case 0: { /* munmap, then a new mapping in its place, registered again */
		assert_int_equal(sp_munmap(w->e, at, n * PG), 0);
		assert_int_equal(sp_mmap(w->e, at, n * PG, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &out), 0);
		for (size_t k = i; k < i + n; k++)
			fill_page(w->mem + k * PG, &w->shadow[k], (uint8_t)(1 + rnd(seed) % DISTINCT));
		if (sp_madvise(w->e, at, n * PG, MADV_MERGEABLE) != 0)
			fail_msg("registering again: %s", sp_last_error());
		break;
	}
	case 1: { /* mmap MAP_FIXED straight over merged memory */
		assert_int_equal(sp_mmap(w->e, at, n * PG, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &out), 0);
		for (size_t k = i; k < i + n; k++) {
			memset(&w->shadow[k], 0, sizeof(w->shadow[k]));
			assert_true(page_ok(w->mem + k * PG, &w->shadow[k]));  /* fresh: zeros */
			fill_page(w->mem + k * PG, &w->shadow[k], (uint8_t)(1 + rnd(seed) % DISTINCT));
		}
		if (sp_madvise(w->e, at, n * PG, MADV_MERGEABLE) != 0)
			fail_msg("registering again: %s", sp_last_error());
		break;
	}
	default: { /* mremap away and back: contents travel along */
		void *tmp = mmap(NULL, n * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_int_equal(sp_mremap(w->e, at, n * PG, n * PG, MREMAP_MAYMOVE | MREMAP_FIXED, tmp, &out), 0);
		for (size_t k = 0; k < n; k++)
			if (!page_ok((uint8_t *)out + k * PG, &w->shadow[i + k])) {
				atomic_fetch_add(&w->bad, 1);
				print_message("page %zu wrong after mremap\n", i + k);
			}
		assert_int_equal(sp_mremap(w->e, out, n * PG, n * PG, MREMAP_MAYMOVE | MREMAP_FIXED, at, &out), 0);
		break;
	}
	}
	usleep(2000);
}

static void test_remap_races_merges(void **state)
{
	(void)state;
	WORLD(w, EXTRA);
	world_run(w, remap_some, 1);
	world_free(w);
}

/* Fork while merging; the child checks its copy while the parent keeps
 * writing, unmerges everything, and finally frees the engine. */
static void fork_some(struct world *w, uint64_t *seed)
{
	(void)seed;
	usleep(30000);
	int go[2];
	assert_int_equal(pipe(go), 0);
	/* The child's view is the parent's at fork; writers of the parent keep going. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(go[1]);
		/* Writers were mid-write at fork: re-derive the shadow from the
		 * writer-owned pages is not possible, so check the disturber's own
		 * stable area and that every page is well-formed. */
		size_t first = WRITERS * PAGES_PER_WRITER;
		int bad = 0;
		for (size_t k = first; k < w->pages; k++)
			bad += !page_ok(w->mem + k * PG, &w->shadow[k]);
		char c;
		if (read(go[0], &c, 1) != 1)
			_exit(4);
		/* after the parent unmerged and wrote: still our own data */
		for (size_t k = first; k < w->pages; k++)
			bad += !page_ok(w->mem + k * PG, &w->shadow[k]);
		/* the child writes too, privately */
		for (size_t k = first; k < w->pages; k++) {
			fill_page(w->mem + k * PG, &w->shadow[k], 0x77);
			bad += !page_ok(w->mem + k * PG, &w->shadow[k]);
		}
		/* libc semantics hold in the child as well */
		if (sp_madvise(w->e, w->mem + first * PG, 8 * PG, MADV_DONTNEED) != 0)
			bad++;
		for (size_t k = first; k < first + 8; k++)
			bad += w->mem[k * PG + 100] != 0;
		_exit(bad ? 3 : 0);
	}
	close(go[0]);
	/* parent: change the disturber area and unmerge everything */
	size_t first = WRITERS * PAGES_PER_WRITER;
	uint8_t *snapshot = malloc(EXTRA * PG);
	memcpy(snapshot, w->mem + first * PG, EXTRA * PG);
	sp_diag d;
	sp_setting unmerge = { "run", "2" }, run = { "run", "1" };
	assert_int_equal(sp_engine_set(w->e, &unmerge, 1, 0, &d), 0);
	for (size_t k = first; k < w->pages; k++)
		fill_page(w->mem + k * PG, &w->shadow[k], (uint8_t)(1 + (k + 1) % DISTINCT));
	assert_int_equal(sp_engine_set(w->e, &run, 1, 0, &d), 0);
	usleep(20000);
	assert_int_equal(write(go[1], "x", 1), 1);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	close(go[1]);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		atomic_fetch_add(&w->bad, 1);
		print_message("fork child saw wrong memory (status %d)\n", st);
	}
	free(snapshot);
}

static void test_fork_after_merge(void **state)
{
	(void)state;
	WORLD(w, EXTRA);
	world_run(w, fork_some, 1);
	world_free(w);
}

/* The parent frees its engine (unmerging) and exits while children run. */
static void test_fork_child_outlives_parent_engine(void **state)
{
	(void)state;
	WORLD(w, 0);
	world_run(w, NULL, 1);
	int go[2];
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(go[1]);
		char c;
		if (read(go[0], &c, 1) != 0)
			_exit(4);  /* EOF: the parent's engine is gone */
		int bad = 0;
		for (size_t i = 0; i < w->pages; i++)
			bad += !page_ok(w->mem + i * PG, &w->shadow[i]);
		for (size_t i = 0; i < w->pages; i += 7) {
			fill_page(w->mem + i * PG, &w->shadow[i], 0x42);
			bad += !page_ok(w->mem + i * PG, &w->shadow[i]);
		}
		_exit(bad ? 3 : 0);
	}
	close(go[0]);
	uint8_t *mem = w->mem;
	size_t pages = w->pages;
	struct shadow *sh = w->shadow;
	assert_int_equal(sp_engine_free(w->e), 0);
	/* scribble over the parent's copy: the child must not see it */
	for (size_t i = 0; i < pages; i++)
		memset(mem + i * PG, 0xEE, PG);
	munmap(mem, pages * PG);
	close(go[1]);
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	free(sh);
	free(w);
}

/* Writes by the kernel on the application's behalf (read() into merged
 * memory): with a full userfaultfd they wait like any writer. */
static void test_syscall_writes_race_merges(void **state)
{
	(void)state;
	WORLD(w, 0);
	sp_engine_info info;
	sp_engine_info_get(w->e, &info);
	w->syscall_writes = true;
	world_run(w, NULL, 1);
	if (info.user_mode_only)
		print_message("user-mode-only userfaultfd: %lu EFAULTs (documented limitation)\n",
			      atomic_load(&w->efaults));
	else
		assert_int_equal(atomic_load(&w->efaults), 0);
	world_free(w);
}

/* ---------------------------------------------- hot pages inside freeze runs */

/* Every fourth page is written all the time (hot); the three between are
 * duplicates, merged and now and then rewritten with another duplicate
 * content. The scanner freezes the
 * pages it merges together with the gaps between them but leaves hot pages
 * unprotected, so that their writers never wait. Once the first merges are
 * done, every mmap is made 20 ms late: merging again what the cold writer
 * broke then takes the scanner all its time, and a write to a page in a
 * merge's window between compare and mapping is likely; a page wrongly
 * left unprotected (a job page beside a hot one, say) loses writes in
 * every run. */
#define HB_PAGES 1024

struct hb {
	uint8_t *mem;
	struct shadow shadow[HB_PAGES];
	atomic_bool stop;
	atomic_ulong hot_writes, cold_writes, bad;
};

static void *hb_hot(void *arg)
{
	struct hb *h = arg;
	uint64_t v = 1;
	while (!atomic_load(&h->stop))
		for (size_t i = 0; i < HB_PAGES; i += 4) {
			uint8_t *p = h->mem + i * PG;
			size_t slot = v % STAMP_SLOTS;
			memcpy(p + slot * (PG / STAMP_SLOTS), &v, 8);
			h->shadow[i].stamp[slot] = v++;
			atomic_fetch_add(&h->hot_writes, 1);
			if (!page_ok(p, &h->shadow[i]))
				atomic_fetch_add(&h->bad, 1);
		}
	return NULL;
}

struct hb_cold_arg {
	struct hb *h;
	unsigned id;  /* of HB_COLD writers: each owns the groups of four id, id+HB_COLD, ... */
};
#define HB_COLD 4

static void *hb_cold(void *arg)
{
	struct hb_cold_arg *a = arg;
	struct hb *h = a->h;
	uint64_t s = 0x2545f4914f6cdd1dull * (a->id + 1);
	while (!atomic_load(&h->stop)) {
		/* Mostly the page right after a hot one: a run's piece starts there.
		 * Writers blocked by a freeze wait; the others go on. */
		size_t group = (rnd(&s) % (HB_PAGES / 4 / HB_COLD)) * HB_COLD + a->id;
		size_t i = group * 4 + (rnd(&s) % 4 ? 1 : 2 + rnd(&s) % 2);
		uint8_t *p = h->mem + i * PG;
		/* Another duplicate content: the page can merge again at once. */
		fill_page(p, &h->shadow[i], (uint8_t)(2 + (h->shadow[i].base - 1) % 3));
		atomic_fetch_add(&h->cold_writes, 1);
		if (!page_ok(p, &h->shadow[i]))
			atomic_fetch_add(&h->bad, 1);
		usleep(5000);
	}
	return NULL;
}

static int64_t hb_sample(sp_engine *e, int counter)
{
	sp_sample smp;
	sp_engine_sample(e, &smp);
	return smp.value[counter];
}

static void test_hot_pages_between_merges(void **state)
{
	(void)state;
	struct hb *h = calloc(1, sizeof(*h));
	sp_engine *e;
	if (sp_engine_new(0, &e)) {
		free(h);
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel");
	}
	h->mem = mmap(NULL, HB_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(h->mem != MAP_FAILED);
	for (size_t i = 0; i < HB_PAGES; i++)
		fill_page(h->mem + i * PG, &h->shadow[i], (uint8_t)(i % 4 ? 1 + i % 4 : 0x80 + i / 4 % 64));
	assert_int_equal(sp_madvise(e, h->mem, HB_PAGES * PG, MADV_MERGEABLE), 0);
	pthread_t hot, cold[HB_COLD];
	struct hb_cold_arg cold_arg[HB_COLD];
	pthread_create(&hot, NULL, hb_hot, h);
	sp_setting go[] = { { "pages_to_scan", "100000" }, { "sleep_millisecs", "0" }, { "run", "1" } };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, go, 3, 0, &d), 0);
	/* The pages between the hot ones merge, hot pages in the gaps. */
	int64_t first = 0;
	for (int t = 0; t < 1000 && first <= HB_PAGES / 2; t++) {
		usleep(10000);
		first = hb_sample(e, SP_PAGES_SHARING);
	}
	assert_true(first > HB_PAGES / 2);
	for (unsigned c = 0; c < HB_COLD; c++) {
		cold_arg[c] = (struct hb_cold_arg){ h, c };
		pthread_create(&cold[c], NULL, hb_cold, &cold_arg[c]);
	}
	_sp_fault_set("mmap:SLEEP20000:1+");
	/* Both from one sample: writes that broke merges between two
	 * readings would otherwise count against the merges made again. */
	sp_sample base;
	assert_int_equal(sp_engine_sample(e, &base), 0);
	int64_t cow_before = base.value[SP_COW_KSM];
	first = base.value[SP_PAGES_SHARING];
	usleep((useconds_t)((race_seconds() < 3 ? 3 : race_seconds()) * 1e6));
	atomic_store(&h->stop, true);
	pthread_join(hot, NULL);
	for (unsigned c = 0; c < HB_COLD; c++)
		pthread_join(cold[c], NULL);
	int64_t cows = hb_sample(e, SP_COW_KSM) - cow_before, sharing = hb_sample(e, SP_PAGES_SHARING);
	_sp_fault_set(NULL);
	for (size_t i = 0; i < HB_PAGES; i++)
		if (!page_ok(h->mem + i * PG, &h->shadow[i])) {
			atomic_fetch_add(&h->bad, 1);
			print_message("page %zu wrong at the end\n", i);
		}
	/* What was merged again while mmap was slow: sharing now, less what
	 * was left, once the writes broke some, of what was merged when it
	 * became slow. */
	int64_t again = sharing - (first - cows);
	print_message("%lu hot writes, %lu cold writes, %lu wrong; pages_sharing %lld then %lld, "
		      "%lld copied on write, %lld merged again\n",
		      atomic_load(&h->hot_writes), atomic_load(&h->cold_writes), atomic_load(&h->bad),
		      (long long)first, (long long)sharing, (long long)cows, (long long)again);
	assert_int_equal(atomic_load(&h->bad), 0);
	/* The race was real: writes broke merged pages and merges went on. */
	assert_true(cows > 0);
	assert_true(again > 0);
	assert_int_equal(sp_engine_free(e), 0);
	for (size_t i = 0; i < HB_PAGES; i++)
		assert_true(page_ok(h->mem + i * PG, &h->shadow[i]));
	munmap(h->mem, HB_PAGES * PG);
	free(h);
}

/* Writes that wait for a freeze. A quiet page between two merge jobs is
 * frozen with them: moved off the tracking uffd (which clears its
 * write-protect bit), protected, and armed again by the thaw. A writer
 * that hits it meanwhile waits, and is let go when the run leaves the
 * freeze uffd, before the re-arm. Each gap page here gets the content of
 * its own twin page while the duplicates around it merge (every mmap and
 * ioctl made late, so that the freeze lasts and the writes land in that
 * window), and must then merge with its twin: a write that left no trace
 * would leave the page in the index under its old content for good. */
#define TW_GROUPS 64  /* a duplicate, then three quiet unique pages */
#define TW_WRITERS 16

struct tw {
	uint8_t *mem;
	unsigned id;
};

static void tw_unique(uint8_t *p, uint64_t tag)
{
	memset(p, 0x77, PG);
	memcpy(p + 64, &tag, sizeof(tag));
}

static void *tw_writer(void *arg)
{
	struct tw *w = arg;
	/* The first duplicate maps the store first: the run is frozen. */
	while (!PM_FILE(pagemap_entry(w->mem)))
		usleep(200);
	for (size_t g = w->id; g < TW_GROUPS; g += TW_WRITERS)
		memcpy(w->mem + (4 * g + 1) * PG, w->mem + (4 * TW_GROUPS + g) * PG, PG);
	return NULL;
}

static void test_writes_waiting_for_thaw_are_seen(void **state)
{
	(void)state;
	sp_engine *e;
	if (sp_engine_new(SP_ENGINE_MANUAL, &e))
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel");
	sp_engine_info info;
	assert_int_equal(sp_engine_info_get(e, &info), 0);
	if (strcmp(info.change_detection, "write-tracking") != 0) {
		sp_engine_free(e);
		SKIP_BECAUSE("no write tracking (PAGEMAP_SCAN with WP_ASYNC) on this kernel");
	}
	sp_setting go[] = { { "run", "1" }, { "pages_to_scan", "100000" }, { "smart_scan", "0" } };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, go, 3, 0, &d), 0);
	size_t n = 5 * TW_GROUPS;  /* the groups, then the twins */
	uint8_t *mem = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	for (size_t i = 0; i < n; i++)
		tw_unique(mem + i * PG, i);
	assert_int_equal(sp_madvise(e, mem, n * PG, MADV_MERGEABLE), 0);
	/* Settled: every page indexed, off probation (checked about once a
	 * second) and armed. */
	size_t armed = 0;
	for (int t = 0; t < san_ms(30000) / 100 && armed < n; t++) {
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
		usleep(100000);
		armed = 0;
		for (size_t i = 0; i < n; i++)
			armed += PM_UFFD_WP(pagemap_entry(mem + i * PG));
	}
	assert_int_equal(armed, n);
	assert_int_equal(hb_sample(e, SP_PAGES_UNSHARED), n);
	/* Duplicates, merged by the next pass in one batch: one run from the
	 * first to the last. */
	for (size_t g = 0; g < TW_GROUPS; g++)
		memset(mem + 4 * g * PG, 0x40 + (int)(g % 4), PG);
	pthread_t th[TW_WRITERS];
	struct tw w[TW_WRITERS];
	for (unsigned i = 0; i < TW_WRITERS; i++) {
		w[i] = (struct tw){ mem, i };
		pthread_create(&th[i], NULL, tw_writer, &w[i]);
	}
	_sp_fault_set("mmap:SLEEP5000:1+,ioctl:SLEEP2000:1+");
	assert_int_equal(sp_engine_wait_scans(e, 1, 60000), 0);
	_sp_fault_set(NULL);
	for (unsigned i = 0; i < TW_WRITERS; i++)
		pthread_join(th[i], NULL);
	size_t merged = 0;
	for (int pass = 0; pass < 20 && merged < TW_GROUPS; pass++) {
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
		merged = 0;
		for (size_t g = 0; g < TW_GROUPS; g++)
			merged += PM_FILE(pagemap_entry(mem + (4 * g + 1) * PG));
	}
	print_message("gap pages merged with their twins: %zu of %d\n", merged, TW_GROUPS);
	assert_int_equal(merged, TW_GROUPS);
	for (size_t g = 0; g < TW_GROUPS; g++) {
		uint8_t want[PG];
		tw_unique(want, 4 * TW_GROUPS + g);
		assert_memory_equal(mem + (4 * g + 1) * PG, want, PG);
		memset(want, 0x40 + (int)(g % 4), PG);
		assert_memory_equal(mem + 4 * g * PG, want, PG);
	}
	assert_int_equal(sp_engine_free(e), 0);
	munmap(mem, n * PG);
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writers_race_merges),
		cmocka_unit_test(test_writers_race_merges_checksum),
		cmocka_unit_test(test_hot_pages_between_merges),
		cmocka_unit_test(test_writes_waiting_for_thaw_are_seen),
		cmocka_unit_test(test_unmerge_all_under_writes),
		cmocka_unit_test(test_discard_races_merges),
		cmocka_unit_test(test_remap_races_merges),
		cmocka_unit_test(test_fork_after_merge),
		cmocka_unit_test(test_fork_child_outlives_parent_engine),
		cmocka_unit_test(test_syscall_writes_race_merges),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("engine_race", tests, NULL, NULL);
}
