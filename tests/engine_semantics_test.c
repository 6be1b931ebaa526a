/* SPDX-License-Identifier: MIT */
/*
 * Description: what merged memory means. The engine's counters match the
 * memory it shares (checked in pagemap and smaps, not only in its own
 * counters), writes stay private, unregistered memory is never touched,
 * max_page_sharing chains, smart_scan, the advisor, NUMA with a
 * simulated topology, the checksum fallback, libc semantics on merged
 * memory, fork and the store, vm.max_map_count, and THP.
 */
#include "helpers.h"

#include <time.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine_util.h"

static long rollup_kb(const char *key)
{
	return proc_kb("/proc/self/smaps_rollup", key);
}

static void test_merge_is_real(void **state)
{
	(void)state;
	ENGINE(e, 0);
	size_t n = 2048;
	uint8_t *p = region(n, 4);
	/* identical neighbours that are not registered must never change */
	uint8_t *outside = region(64, 4);
	long pss_before = rollup_kb("Pss_Anon");
	assert_int_equal(sp_madvise(e, p, n * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(counter(e, SP_PAGES_SHARED), 4);
	assert_int_equal(counter(e, SP_PAGES_SHARING), n - 4);
	assert_true(counter(e, SP_GENERAL_PROFIT) > (int64_t)((n - 4) * PG * 9 / 10));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(p[i * PG + i % PG], 1 + i % 4);
	/* the kernel agrees: same physical page, and anonymous memory went away */
	uint64_t a = pagemap_entry(p), b = pagemap_entry(p + 4 * PG);
	if (PM_PFN(a))
		assert_true(PM_PFN(a) == PM_PFN(b));
	else
		print_message("PFNs hidden (not root): physical sharing checked through PSS only\n");
	assert_true(PM_FILE(a));
	long pss_after = rollup_kb("Pss_Anon");
	if (!under_tsan())  /* its shadow of the pages read above is anonymous too */
		assert_true(pss_before - pss_after > (long)(n * 4 * 8 / 10));  /* > 80% of 8 MiB, in KiB */
	for (int i = 0; i < 64; i++) {
		assert_false(PM_FILE(pagemap_entry(outside + i * PG)));
		assert_int_equal(outside[i * PG + 7], 1 + i % 4);
	}
	sp_proc_ksm st;
	assert_int_equal(sp_engine_stat(e, &st), 0);
	assert_int_equal(st.ksm_merging_pages, n);
	assert_int_equal(st.ksm_mergeable, 1);

	/* a write is private to the writer */
	p[10 * PG + 5] = 0xAB;
	assert_int_equal(p[10 * PG + 5], 0xAB);
	assert_int_equal(p[14 * PG + 5], 1 + 14 % 4);
	assert_int_equal(p[6 * PG + 5], 1 + 6 % 4);
	assert_int_equal(wait_counter(e, SP_COW_KSM, 1, 50), 1);
	assert_int_equal(counter(e, SP_PAGES_SHARING), n - 4 - 1);
	assert_int_equal(sp_engine_free(e), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(p[i * PG + 5], i == 10 ? 0xAB : 1 + i % 4);
	assert_false(PM_FILE(pagemap_entry(p)));  /* plain memory again */
	munmap(p, n * PG);
	munmap(outside, 64 * PG);
}

/* Minor faults of the calling thread (field 10 of /proc/thread-self/stat). */
static long thread_minflt(void)
{
	char buf[512];
	int fd = open("/proc/thread-self/stat", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	long v[8] = { 0 };
	if (!p || sscanf(p + 2, "%*c %ld %ld %ld %ld %ld %ld %ld", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]) != 7)
		return -1;
	return v[6];
}

/* A page that held still over one pass is indexed (and may merge) but not
 * yet protected: it is on probation, checksummed about once a second,
 * until it held still over two such checks. A buffer the program writes
 * every second or so must cost it no write-protect fault at all (in the
 * benchmark, protecting after one fast pass made one store in five fault
 * while merging converged). Once the page held still long enough it is
 * protected, and a write shows again. */
static void test_first_contact_probation(void **state)
{
	(void)state;
	ENGINE(e, 0);  /* manual: the passes run here, between the writes */
	REQUIRE_TRACKING(e);
	size_t n = 64;
	uint8_t *p = region(n, 2);
	memset(p + 5 * PG, 0x5a, PG);  /* unique: indexed, never merged */
	assert_int_equal(sp_madvise(e, p, n * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 3, 20000), 0);  /* hashed twice: on probation */
	long faults = 0;
	for (int i = 0; i < 4; i++) {
		long before = thread_minflt();
		p[5 * PG + 100 + i] = (uint8_t)(0x10 + i);
		faults += thread_minflt() - before;
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
	}
	print_message("faults on four written passes: %ld\n", faults);
	for (int i = 0; i < 4; i++)
		assert_int_equal(p[5 * PG + 100 + i], 0x10 + i);
	/* Under ThreadSanitizer the runtime takes faults of its own on stores
	 * to pages the engine never registered (seen: 2 per three stores). */
	if (!under_tsan())
		assert_int_equal(faults, 0);
	/* Quiet from now on: protected after two checks a second apart. */
	for (int ms = 0; ms < san_ms(10000) && !PM_UFFD_WP(pagemap_entry(p + 5 * PG)); ms += 100) {
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
		usleep(100000);
	}
	assert_true(PM_UFFD_WP(pagemap_entry(p + 5 * PG)));
	long before = thread_minflt();
	p[5 * PG + 200] = 0x33;
	long after = thread_minflt();
	assert_true(after - before >= 1);  /* protected: the write shows */
	assert_int_equal(p[5 * PG + 200], 0x33);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, n * PG);
}

/* Writes pages [first, first + n) of base in turn, every one within a few
 * milliseconds, and counts its own page faults while phase is 1. */
struct busy_writer {
	uint8_t *base;
	size_t first, n;
	atomic_int phase;   /* 0 warm up, 1 measure, 2 stop */
	long faults;
	unsigned round;
};

static void *busy_writer_main(void *arg)
{
	struct busy_writer *w = arg;
	long start = -1;
	while (atomic_load(&w->phase) < 2) {
		if (start < 0 && atomic_load(&w->phase) == 1)
			start = thread_minflt();
		w->round++;
		for (size_t i = 0; i < w->n; i++)
			w->base[(w->first + i) * PG + 8] = (uint8_t)w->round;
		struct timespec ts = { 0, 200 * 1000 };
		nanosleep(&ts, NULL);
	}
	w->faults = start < 0 ? -1 : thread_minflt() - start;
	return NULL;
}

/* Pages written all the time never take a write-protect fault, also in a
 * span where a round of merges ran half way through the visit. That round
 * freezes and thaws runs, which rewrote the categories buffer the visit
 * was reading: the rest of the span then looked unwritten, new pages were
 * indexed at first sight and protected at the next pass, and their writer
 * faulted (a thousand faults per convergence in the benchmark). Here 256
 * merge jobs from the first 512 pages make the round run just inside the
 * second 512, and the pages after are the writer's. */
static void test_busy_pages_after_merge_round(void **state)
{
	(void)state;
	ENGINE(e, 0);
	REQUIRE_TRACKING(e);
	size_t n = 1024, busy = 528;
	uint8_t *p = region(n, 0);
	for (size_t i = 0; i < n; i++) {
		bool dup = i < 512 ? i % 2 == 0 : i < busy;
		memset(p + i * PG, dup ? 0x3c : 0, PG);
		if (!dup)
			memcpy(p + i * PG + 64, &i, sizeof(i));  /* unique */
	}
	struct busy_writer w = { p, busy, n - busy, 0, 0, 0 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, busy_writer_main, &w), 0);
	assert_int_equal(sp_madvise(e, p, n * PG, MADV_MERGEABLE), 0);
	atomic_store(&w.phase, 1);
	struct timespec ms = { 0, 1000 * 1000 };
	for (int i = 0; i < 12; i++) {
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
		nanosleep(&ms, NULL);
	}
	atomic_store(&w.phase, 2);
	pthread_join(th, NULL);
	print_message("busy writer faults over 12 passes: %ld\n", w.faults);
	int64_t dups = 256 + (int64_t)(busy - 512);
	assert_int_equal(counter(e, SP_PAGES_SHARING), dups - 1);
	for (size_t i = 0; i < n; i++) {
		bool dup = i < 512 ? i % 2 == 0 : i < busy;
		if (dup) {
			assert_int_equal(p[i * PG + 8], 0x3c);
		} else {
			size_t tag;
			memcpy(&tag, p + i * PG + 64, sizeof(tag));
			assert_int_equal(tag, i);
			if (i >= busy)
				assert_int_equal(p[i * PG + 8], (uint8_t)w.round);
		}
	}
	if (!under_tsan())  /* its runtime faults on its own (see above) */
		assert_true(w.faults >= 0 && w.faults < 8);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, n * PG);
}

/* A page written since its last visit, lying in the gap of a run that is
 * frozen before the page's next visit, keeps its write. Moving the run off
 * the tracking uffd clears its write-protect bits and the thaw re-arms
 * them: unnoted, the write left no trace and the page kept its old hash in
 * the index for good. At 64 pages a batch, the run (the partners of pages
 * 10 and 20, at 100 and 110) is frozen at the end of the first batch, and
 * page 105, written just before, is visited in the second. Its new
 * content has a twin at page 800: it must merge with it. */
static void test_gap_write_before_freeze(void **state)
{
	(void)state;
	ENGINE(e, 0);
	REQUIRE_TRACKING(e);
	sp_setting pts = { "pages_to_scan", "64" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &pts, 1, 0, &d), 0);
	size_t n = 1024;
	uint8_t *p = region(n, 0);
	for (size_t i = 0; i < n; i++) {
		p[i * PG] = 0x77;
		memcpy(p + i * PG + 64, &i, sizeof(i));  /* every page unique */
	}
	uint8_t *shadow = malloc(n * PG);
	assert_non_null(shadow);
	assert_int_equal(sp_madvise(e, p, n * PG, MADV_MERGEABLE), 0);
	/* Every page off probation, protected, its block resting. */
	for (int ms = 0; ms < san_ms(20000) && counter(e, SP_PAGES_SKIPPED) < 1024; ms += 100) {
		assert_int_equal(sp_engine_wait_scans(e, 4, 30000), 0);
		usleep(100000);
	}
	assert_true(counter(e, SP_PAGES_SKIPPED) >= 1024);
	assert_int_equal(counter(e, SP_PAGES_SHARING), 0);
	memcpy(p + 10 * PG, p + 100 * PG, PG);
	memcpy(p + 20 * PG, p + 110 * PG, PG);
	/* The pass that sees pages 10 and 20 written (and visits page 105
	 * unwritten) ... */
	assert_int_equal(wait_counter(e, SP_PAGES_VOLATILE, 2, 200), 2);
	assert_int_equal(counter(e, SP_PAGES_SHARING), 0);
	/* ... then page 105 is written, and the next pass makes the jobs. */
	memcpy(p + 105 * PG, p + 800 * PG, PG);
	memcpy(shadow, p, n * PG);
	assert_int_equal(wait_counter(e, SP_PAGES_SHARING, 3, 200), 3);
	assert_true(PM_FILE(pagemap_entry(p + 105 * PG)));
	assert_true(PM_FILE(pagemap_entry(p + 10 * PG)));
	for (size_t i = 0; i < n; i++)
		if (memcmp(p + i * PG, shadow + i * PG, PG))
			fail_msg("page %zu does not read what was written", i);
	free(shadow);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, n * PG);
}

/* A page written on every visit is left unprotected, so its writer stops
 * taking a write-protect fault per pass; once it holds still it is
 * protected again and merged like any other. */
static void test_hot_page_stops_faulting(void **state)
{
	(void)state;
	ENGINE(e, 0);
	REQUIRE_TRACKING(e);
	size_t n = 64;
	uint8_t *p = region(n, 2);
	assert_int_equal(sp_madvise(e, p, n * PG, MADV_MERGEABLE), 0);
	struct busy_writer w = { p, 5, 1, 0, 0, 0 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, busy_writer_main, &w), 0);
	struct timespec ms = { 0, 1000 * 1000 };
	for (int i = 0; i < 10; i++) {
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
		nanosleep(&ms, NULL);
	}
	atomic_store(&w.phase, 1);
	/* At least 60 passes and 1.2 s: if the page happened to hold still
	 * over its first two visits it is on probation, and only a check of
	 * hot pages (a second apart) finds it changing and counts it as
	 * volatile. Under ThreadSanitizer the writer can be that late. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0;; i++) {
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
		nanosleep(&ms, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (i >= 59 && (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) > 1200000000L)
			break;
	}
	atomic_store(&w.phase, 2);
	pthread_join(th, NULL);
	print_message("writer faults over the measured passes: %ld\n", w.faults);
	assert_true(w.faults >= 0);
	/* Re-armed every pass, it would be one a pass. Under ThreadSanitizer
	 * its runtime's own faults are counted too (about 40 in 1.2 s). */
	if (!under_tsan())
		assert_true(w.faults < 10);
	assert_true(counter(e, SP_PAGES_VOLATILE) >= 1);
	/* quiet again, and a duplicate again: merged once it held still
	 * over two checks a second apart */
	memset(p + 5 * PG, 1 + 5 % 2, PG);
	struct timespec tenth = { 0, 100 * 1000 * 1000 };
	for (int i = 0; i < 60 && counter(e, SP_PAGES_SHARING) != (int64_t)n - 2; i++) {
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
		nanosleep(&tenth, NULL);
	}
	assert_true(PM_FILE(pagemap_entry(p + 5 * PG)));
	assert_int_equal(counter(e, SP_PAGES_SHARING), n - 2);
	assert_int_equal(counter(e, SP_PAGES_VOLATILE), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(p[i * PG + 77], 1 + i % 2);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, n * PG);
}

static void test_max_page_sharing_chains(void **state)
{
	(void)state;
	ENGINE(e, 0);
	sp_setting m = { "max_page_sharing", "2" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &m, 1, 0, &d), 0);
	uint8_t *p = region(10, 1);
	assert_int_equal(sp_madvise(e, p, 10 * PG, MADV_MERGEABLE), 0);
	for (int k = 0; k < 4; k++)
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
	/* five store pages of one content, two sharers each, chained */
	assert_int_equal(counter(e, SP_PAGES_SHARED), 5);
	assert_int_equal(counter(e, SP_PAGES_SHARING), 5);
	assert_int_equal(counter(e, SP_STABLE_NODE_CHAINS), 1);
	assert_int_equal(counter(e, SP_STABLE_NODE_DUPS), 5);
	for (int i = 0; i < 10; i++)
		assert_int_equal(p[i * PG + 1], 1);
	/* unmerging dissolves the chain */
	assert_int_equal(sp_madvise(e, p, 10 * PG, MADV_UNMERGEABLE), 0);
	assert_int_equal(counter(e, SP_STABLE_NODE_CHAINS), 0);
	assert_int_equal(counter(e, SP_STABLE_NODE_DUPS), 0);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, 10 * PG);
}

/* Pages that are written again and again between visits are skipped more
 * and more (smart_scan), and not at all with smart_scan=0. That is the
 * kernel's two-pass rule (checksum mode), where every visit hashes them;
 * with write tracking such pages are hot and hashed once a second at most,
 * smart_scan or not (test_hot_page_stops_faulting). */
static int64_t skipped_after_churn(int smart)
{
	sp_engine *e = engine(SP_ENGINE_CHECKSUM);
	assert_non_null(e);
	sp_setting s = { "smart_scan", smart ? "1" : "0" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &s, 1, 0, &d), 0);
	uint8_t *p = region(64, 0);
	assert_int_equal(sp_madvise(e, p, 64 * PG, MADV_MERGEABLE), 0);
	for (int round = 0; round < 12; round++) {
		for (int i = 0; i < 64; i++)
			memset(p + i * PG, round * 64 + i + 1, 16);  /* unique, changed */
		assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	}
	int64_t skipped = counter(e, SP_PAGES_SKIPPED);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, 64 * PG);
	return skipped;
}

static void test_smart_scan(void **state)
{
	(void)state;
	sp_engine *probe = engine(SP_ENGINE_CHECKSUM);
	if (!probe)
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel");
	sp_engine_free(probe);
	assert_true(skipped_after_churn(1) > 0);
	assert_int_equal(skipped_after_churn(0), 0);
}

/* Blocks that stay unchanged rest (are skipped for a few passes), but a
 * copy-on-write or a new duplicate inside a resting block is still found:
 * the kernel kept the write for us. */
static void test_quiet_blocks_rest(void **state)
{
	(void)state;
	ENGINE(e, 0);
	size_t n = 2048;  /* four blocks of 512 */
	uint8_t *p = region(n, 8);
	for (size_t i = 0; i < n; i += 16)
		memset(p + i * PG, 0x40 + (int)(i / 16 % 100), 32);  /* unique: indexed, never merged */
	uint8_t *shadow = malloc(n * PG);
	assert_non_null(shadow);
	memcpy(shadow, p, n * PG);
	assert_int_equal(sp_madvise(e, p, n * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 12, 30000), 0);
	int64_t sharing = counter(e, SP_PAGES_SHARING);
	assert_true(sharing >= (int64_t)(n - n / 16 - 8));
	/* The unique pages are on probation (checksummed, not protected) until
	 * they held still over two checks about a second apart: only then can
	 * their blocks rest. */
	int64_t skipped = counter(e, SP_PAGES_SKIPPED);
	for (int ms = 0; ms < san_ms(10000) && counter(e, SP_PAGES_SKIPPED) < skipped + 512; ms += 100) {
		assert_int_equal(sp_engine_wait_scans(e, 4, 30000), 0);
		usleep(100000);
	}
	if (counter(e, SP_PAGES_SKIPPED) < skipped + 512)
		fail_msg("quiet blocks were not skipped: pages_skipped %lld -> %lld", (long long)skipped,
			 (long long)counter(e, SP_PAGES_SKIPPED));
	/* a write to a merged page and a new duplicate, both in resting blocks */
	int64_t cow = counter(e, SP_COW_KSM);
	p[5 * PG + 100] = shadow[5 * PG + 100] = 0x77;
	memcpy(p + 1040 * PG, p + 1041 * PG, PG);  /* page 1040 was unique */
	memcpy(shadow + 1040 * PG, shadow + 1041 * PG, PG);
	assert_int_equal(sp_engine_wait_scans(e, 50, 30000), 0);  /* the longest rest is 47 */
	assert_int_equal(counter(e, SP_COW_KSM), cow + 1);
	assert_true(PM_FILE(pagemap_entry(p + 1040 * PG)));  /* merged now */
	assert_int_equal(counter(e, SP_PAGES_SHARING), sharing);  /* one lost, one gained */
	for (size_t i = 0; i < n; i++)
		if (memcmp(p + i * PG, shadow + i * PG, PG))
			fail_msg("page %zu does not read what was written", i);
	free(shadow);
	/* smart_scan=0: every block is visited every pass */
	sp_setting off = { "smart_scan", "0" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &off, 1, 0, &d), 0);
	skipped = counter(e, SP_PAGES_SKIPPED);
	assert_int_equal(sp_engine_wait_scans(e, 4, 30000), 0);
	assert_int_equal(counter(e, SP_PAGES_SKIPPED), skipped);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, n * PG);
}

static void test_scan_time_advisor(void **state)
{
	(void)state;
	ENGINE(e, 0);
	uint8_t *p = region(512, 8);
	assert_int_equal(sp_madvise(e, p, 512 * PG, MADV_MERGEABLE), 0);
	sp_setting a = { "advisor_mode", "scan-time" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &a, 1, 0, &d), 0);
	assert_int_equal(counter(e, SP_PAGES_TO_SCAN), 500);  /* advisor_min_pages_to_scan */
	assert_int_equal(sp_engine_wait_scans(e, 4, 20000), 0);
	int64_t pts = counter(e, SP_PAGES_TO_SCAN);
	/* the advisor retuned it within its bounds */
	assert_true(pts != 500);
	assert_true(pts <= counter(e, SP_ADVISOR_MAX_PAGES_TO_SCAN));
	assert_true(counter(e, SP_PAGES_SHARING) > 0);
	sp_setting off = { "advisor_mode", "none" };
	assert_int_equal(sp_engine_set(e, &off, 1, 0, &d), 0);
	assert_int_equal(counter(e, SP_PAGES_TO_SCAN), 100);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, 512 * PG);
}

static void test_checksum_fallback(void **state)
{
	(void)state;
	ENGINE(e, SP_ENGINE_CHECKSUM);
	sp_setting slow = { "pages_to_scan", "100" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &slow, 1, 0, &d), 0);
	sp_engine_info info;
	assert_int_equal(sp_engine_info_get(e, &info), 0);
	assert_string_equal(info.change_detection, "checksum");
	uint8_t *p = region(256, 2);
	assert_int_equal(sp_madvise(e, p, 256 * PG, MADV_MERGEABLE), 0);
	/* the kernel's rule: a page needs two visits with the same checksum */
	assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
	assert_int_equal(counter(e, SP_FULL_SCANS), 1);
	assert_int_equal(counter(e, SP_PAGES_SHARING), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(counter(e, SP_PAGES_SHARING), 254);
	p[PG] = 9;
	assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
	assert_int_equal(counter(e, SP_COW_KSM), 1);
	for (int i = 0; i < 256; i++)
		assert_int_equal(p[i * PG + (i == 1 ? 1 : 0)], 1 + i % 2);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, 256 * PG);
}

static void test_libc_semantics(void **state)
{
	(void)state;
	ENGINE(e, 0);
	size_t n = 64;
	uint8_t *p = region(n, 1);
	assert_int_equal(sp_madvise(e, p, n * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(counter(e, SP_PAGES_SHARING), n - 1);

	/* MADV_DONTNEED on merged pages gives zeros, as on private memory */
	assert_int_equal(sp_madvise(e, p, 4 * PG, MADV_DONTNEED), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(p[i * PG + 17], 0);
	/* MADV_FREE works (the raw call would fail with EINVAL on merged pages) */
	assert_int_equal(sp_madvise(e, p + 4 * PG, 4 * PG, MADV_FREE), 0);
	for (int i = 4; i < 8; i++)
		assert_true(p[i * PG + 17] == 0 || p[i * PG + 17] == 1);
	/* unregistered memory: advice passes through */
	uint8_t *plain = region(2, 1);
	assert_int_equal(sp_madvise(e, plain, 2 * PG, MADV_DONTNEED), 0);
	assert_int_equal(plain[5], 0);
	/* other advice is madvise's */
	assert_int_equal(sp_madvise(e, p, PG, MADV_WILLNEED), 0);
	assert_int_equal(sp_madvise(e, p, PG, 12345), -EINVAL);

	/* mremap moves merged memory with its contents and keeps it registered */
	void *moved;
	assert_int_equal(sp_mremap(e, p + 16 * PG, 16 * PG, 32 * PG, MREMAP_MAYMOVE, NULL, &moved), 0);
	uint8_t *m = moved;
	for (int i = 0; i < 16; i++)
		assert_int_equal(m[i * PG + 3], 1);
	for (int i = 16; i < 32; i++)
		assert_int_equal(m[i * PG + 3], 0);  /* growth is zero, never store data */
	sp_engine_info info;
	sp_engine_info_get(e, &info);
	assert_int_equal(info.registered_pages, n - 16 + 32);

	/* mmap MAP_FIXED over merged pages */
	void *out;
	assert_int_equal(sp_mmap(e, p + 32 * PG, 8 * PG, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &out), 0);
	assert_ptr_equal(out, p + 32 * PG);
	for (int i = 32; i < 40; i++)
		assert_int_equal(p[i * PG], 0);
	/* mprotect: later merges keep the program's protection */
	assert_int_equal(sp_mprotect(e, p + 48 * PG, 8 * PG, PROT_READ), 0);
	assert_int_equal(sp_madvise(e, p + 48 * PG, 8 * PG, MADV_DONTNEED), 0);
	assert_int_equal(sp_engine_wait_scans(e, 3, 20000), 0);
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[256];
	bool writable_seen = false;
	while (fgets(line, sizeof(line), maps)) {
		unsigned long s0, s1;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &s0, &s1, perms) == 3 && s0 < (uintptr_t)(p + 56 * PG) &&
		    s1 > (uintptr_t)(p + 48 * PG) && perms[1] == 'w')
			writable_seen = true;
	}
	fclose(maps);
	assert_false(writable_seen);
	assert_int_equal(sp_mprotect(e, p + 48 * PG, 8 * PG, PROT_READ | PROT_WRITE), 0);
	/* munmap of merged pages */
	assert_int_equal(sp_munmap(e, p + 40 * PG, 8 * PG), 0);
	assert_int_equal(sp_munmap(e, p + 40 * PG + 1, PG), -EINVAL);
	sp_engine_info_get(e, &info);
	assert_int_equal(info.registered_pages, n - 16 + 32 - 8 - 8);
	assert_int_equal(sp_engine_free(e), 0);
	for (int i = 48; i < 64; i++)
		assert_int_equal(p[i * PG + 3], i < 56 ? 0 : 1);  /* 48..55 were discarded */
	munmap(p, n * PG);
	munmap(moved, 32 * PG);
	munmap(plain, 2 * PG);
}

/* A child maps the store page; the parent's engine must never free it. */
static void test_store_survives_for_fork_child(void **state)
{
	(void)state;
	ENGINE(e, 0);
	uint8_t *p = region(64, 1);
	assert_int_equal(sp_madvise(e, p, 64 * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(counter(e, SP_PAGES_SHARED), 1);
	int go[2];
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(go[1]);
		char c;
		if (read(go[0], &c, 1) != 0)
			_exit(4);
		for (int i = 0; i < 64; i++)
			for (size_t k = 0; k < PG; k += 256)
				if (p[i * PG + k] != 1)
					_exit(3);
		_exit(0);
	}
	close(go[0]);
	/* the parent lets go of every reference, and reuses store space */
	assert_int_equal(sp_madvise(e, p, 64 * PG, MADV_UNMERGEABLE), 0);
	memset(p, 0x55, 64 * PG);
	uint8_t *q = region(64, 7);
	assert_int_equal(sp_madvise(e, q, 64 * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(sp_engine_free(e), 0);
	close(go[1]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	munmap(p, 64 * PG);
	munmap(q, 64 * PG);
}

/* merge_across_nodes=0 with a simulated two-node topology (2 MiB stripes). */
static void test_numa_simulated(void **state)
{
	(void)state;
	setenv("SAMEPAGE_FAKE_NUMA_NODES", "2", 1);
	sp_engine *e = engine(0);
	unsetenv("SAMEPAGE_FAKE_NUMA_NODES");
	if (!e)
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel");
	sp_setting man = { "merge_across_nodes", "0" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &man, 1, 0, &d), 0);
	/* 4 MiB aligned to 2 MiB: 512 pages on "node 0", 512 on "node 1" */
	uint8_t *raw = mmap(NULL, 6u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + (2u << 20) - 1) & ~((uintptr_t)(2u << 20) - 1));
	memset(p, 0x3c, 4u << 20);
	assert_int_equal(sp_madvise(e, p, 4u << 20, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(counter(e, SP_PAGES_SHARED), 2);  /* one per node */
	assert_int_equal(counter(e, SP_PAGES_SHARING), 1024 - 2);
	uint64_t a = pagemap_entry(p), b = pagemap_entry(p + (2u << 20));
	if (PM_PFN(a) && PM_PFN(a) == PM_PFN(b))
		fail_msg("pages of two nodes share PFN %#llx (%#llx %#llx)", (unsigned long long)PM_PFN(a),
			 (unsigned long long)a, (unsigned long long)b);
	/* back to merging across nodes: one store page */
	sp_setting across = { "merge_across_nodes", "1" };
	assert_int_equal(sp_engine_set(e, &across, 1, 0, &d), -EBUSY);
	assert_int_equal(sp_engine_set(e, &across, 1, SP_SET_UNMERGE_FIRST, &d), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(counter(e, SP_PAGES_SHARED), 1);
	assert_int_equal(counter(e, SP_PAGES_SHARING), 1023);
	assert_int_equal(sp_engine_free(e), 0);
	for (size_t i = 0; i < (4u << 20); i += 999)
		assert_int_equal(p[i], 0x3c);
	munmap(raw, 6u << 20);
}

static int read_int_file(const char *path)
{
	char buf[32] = "";
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return atoi(buf);
}

static int write_int_file(const char *path, int v)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "%d\n", v);
	return fclose(f);
}

static int count_vmas(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Lowered vm.max_map_count: the engine stops merging well before it and
 * says so; the program keeps working. The limit is restored in any case. */
static void test_max_map_count(void **state)
{
	(void)state;
	const char *knob = "/proc/sys/vm/max_map_count";
	if (!is_root())
		SKIP_BECAUSE("lowering vm.max_map_count needs root");
	ENGINE(e, 0);
	int lock = ksm_lock();  /* machine-wide settings: one test at a time */
	int saved = read_int_file(knob);
	assert_true(saved > 0);
	size_t n = 4096;
	/* contents 1,2,3 then a unique page: every merged run is its own VMA */
	uint8_t *p = region(n, 0);
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, i % 4 == 3 ? (int)(i / 4 % 200) + 10 : 1 + (int)(i % 4), 64);
	int limit = count_vmas() + 600;
	assert_int_equal(write_int_file(knob, limit), 0);
	int rc = sp_madvise(e, p, n * PG, MADV_MERGEABLE);
	int engine_scans = rc == 0 ? sp_engine_wait_scans(e, 3, 30000) : rc;
	int vmas = count_vmas();
	int64_t skipped = counter(e, SP_PAGES_SKIPPED_MAX_MAP_COUNT);
	int64_t sharing = counter(e, SP_PAGES_SHARING);
	/* the program can still map memory */
	void *more[8];
	int mapped = 0;
	for (int i = 0; i < 8; i++) {
		more[i] = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		mapped += more[i] != MAP_FAILED;
	}
	write_int_file(knob, saved);  /* restore before any assertion can stop us */
	ksm_unlock(lock);
	assert_int_equal(read_int_file(knob), saved);
	assert_int_equal(rc, 0);
	assert_int_equal(engine_scans, 0);
	if (vmas >= limit)
		fail_msg("%d VMAs, limit %d, skipped %lld, sharing %lld", vmas, limit, (long long)skipped,
			 (long long)sharing);
	assert_true(skipped > 0);
	assert_true(sharing > 0);  /* it merged what it safely could */
	assert_int_equal(mapped, 8);
	for (int i = 0; i < 8; i++)
		munmap(more[i], PG);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(p[i * PG + 1], i % 4 == 3 ? (int)(i / 4 % 200) + 10 : 1 + (int)(i % 4));
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, n * PG);
}

/* The engine counts the mappings its merges add without reading
 * /proc/self/maps each time (that read costs as much as hundreds of
 * merges): its count may err high, never low, or the limit could be
 * passed. Scattered duplicates of a few contents next to one another are
 * the hard case: each merged page is a VMA and neighbours split the same
 * anonymous VMA in turn within one batch. */
static void test_vma_estimate_never_low(void **state)
{
	(void)state;
	size_t n = 4096;
	uint8_t *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		/* one page in five unique, the others one of three contents */
		int v = x % 5 == 0 ? 10 + (int)(i % 200) : 1 + (int)(x >> 32) % 3;
		memset(p + i * PG, v, PG);
		p[i * PG + 8] = x % 5 == 0 ? (uint8_t)(i >> 8) : 0;
	}
	ENGINE(e, 0);  /* counts the mappings once, the region included */
	assert_int_equal(sp_madvise(e, p, n * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 3, 30000), 0);
	sp_engine_info info;
	assert_int_equal(sp_engine_info_get(e, &info), 0);
	int real = count_vmas();
	int64_t sharing = counter(e, SP_PAGES_SHARING);
	assert_true(sharing > (int64_t)n / 2);
	/* The engine's own arena and store mappings come after its count: a
	 * few, allowed for. Low by more would be a merge it did not count. */
	if (info.vmas + 8 < real)
		fail_msg("estimate %d, /proc/self/maps %d (pages_sharing %lld)", info.vmas, real, (long long)sharing);
	/* and close: an estimate far too high stops merging early */
	if (info.vmas > real + real / 8 + 8)
		fail_msg("estimate %d far above /proc/self/maps %d", info.vmas, real);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, n * PG);
}

static void test_thp_backed_range(void **state)
{
	(void)state;
	char mode[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (f) {
		if (!fgets(mode, sizeof(mode), f))
			mode[0] = 0;
		fclose(f);
	}
	if (strstr(mode, "[never]") || !mode[0])
		SKIP_BECAUSE("transparent huge pages are disabled on this machine");
	ENGINE(e, 0);
	size_t len = 8u << 20;
	uint8_t *raw = mmap(NULL, len + (2u << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + (2u << 20) - 1) & ~((uintptr_t)(2u << 20) - 1));
	assert_int_equal(madvise(p, len, MADV_HUGEPAGE), 0);
	for (size_t i = 0; i < len; i += PG)
		memset(p + i, 1 + (int)(i / PG % 2), PG);
	long huge_kb = rollup_kb("AnonHugePages");
	if (huge_kb < 2048) {
		sp_engine_free(e);
		munmap(raw, len + (2u << 20));
		SKIP_BECAUSE("the kernel gave no huge page for the range (AnonHugePages %ld kB)", huge_kb);
	}
	assert_int_equal(sp_madvise(e, p, len, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 30000), 0);
	assert_int_equal(counter(e, SP_PAGES_SHARING), len / PG - 2);
	for (size_t i = 0; i < len; i += 777)
		assert_int_equal(p[i], 1 + (int)(i / PG % 2));
	p[5 * PG] = 9;
	assert_int_equal(p[5 * PG], 9);
	assert_int_equal(p[7 * PG], 2);
	assert_int_equal(sp_engine_free(e), 0);
	for (size_t i = 0; i < len; i += 777)
		assert_int_equal(p[i], i / PG == 5 && i % PG == 0 ? 9 : 1 + (int)(i / PG % 2));
	munmap(raw, len + (2u << 20));
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_is_real),
		cmocka_unit_test(test_hot_page_stops_faulting),
		cmocka_unit_test(test_first_contact_probation),
		cmocka_unit_test(test_busy_pages_after_merge_round),
		cmocka_unit_test(test_gap_write_before_freeze),
		cmocka_unit_test(test_max_page_sharing_chains),
		cmocka_unit_test(test_smart_scan),
		cmocka_unit_test(test_quiet_blocks_rest),
		cmocka_unit_test(test_scan_time_advisor),
		cmocka_unit_test(test_checksum_fallback),
		cmocka_unit_test(test_libc_semantics),
		cmocka_unit_test(test_store_survives_for_fork_child),
		cmocka_unit_test(test_numa_simulated),
		cmocka_unit_test(test_max_map_count),
		cmocka_unit_test(test_vma_estimate_never_low),
		cmocka_unit_test(test_thp_backed_range),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("engine_semantics", tests, NULL, NULL);
}
