/* SPDX-License-Identifier: MIT */
/*
 * Description: pages of zeros. With use_zero_pages=1 an empty page is
 * dropped (MADV_DONTNEED: a read maps the kernel's zero page) and counted
 * in ksm_zero_pages; with 0 it merges like any content. The thaw of a
 * freeze run leaves dropped pages unarmed (merge.c, rearm()), where an
 * empty page table entry reads as written: such a page must still count
 * as zeros, let its block rest, and show every write, also one whose page
 * went to swap before the next visit.
 */
#include "engine_util.h"
#include "prim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21  /* 5.4 */
#endif

static void test_zero_pages(void **state)
{
	(void)state;
	ENGINE(e, 0);
	uint8_t *p = region(256, 0);
	sp_setting z = { "use_zero_pages", "1" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &z, 1, 0, &d), 0);
	assert_int_equal(sp_madvise(e, p, 256 * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(counter(e, SP_KSM_ZERO_PAGES), 256);
	assert_int_equal(counter(e, SP_PAGES_SHARED), 0);  /* no store page, no mapping change */
	for (int i = 0; i < 256; i++) {
		assert_int_equal(p[i * PG + 99], 0);
		assert_false(PM_FILE(pagemap_entry(p + i * PG)));
	}
	p[3 * PG] = 5;  /* writes simply work */
	assert_int_equal(p[3 * PG], 5);
	assert_int_equal(wait_counter(e, SP_KSM_ZERO_PAGES, 255, 50), 255);
	assert_int_equal(sp_engine_free(e), 0);

	/* use_zero_pages=0: empty pages merge like any content, as in the kernel */
	ENGINE(e2, 0);
	uint8_t *q = region(64, 0);
	assert_int_equal(sp_madvise(e2, q, 64 * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e2, 2, 20000), 0);
	assert_int_equal(counter(e2, SP_KSM_ZERO_PAGES), 0);
	assert_int_equal(counter(e2, SP_PAGES_SHARING), 63);
	assert_int_equal(sp_engine_free(e2), 0);
	munmap(p, 256 * PG);
	munmap(q, 64 * PG);
}

/* Every third page empty, the others eight contents that all merge. */
#define ZN 1536  /* three resting blocks */

static bool zero_at(size_t i)
{
	return i % 3 == 0;
}

/* Merges the layout with use_zero_pages=1; returns the empty pages. */
static int64_t merge_zero_layout(sp_engine *e, uint8_t **out)
{
	sp_setting z = { "use_zero_pages", "1" };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, &z, 1, 0, &d), 0);
	uint8_t *p = region(ZN, 0);
	int64_t nz = 0;
	for (size_t i = 0; i < ZN; i++) {
		if (zero_at(i))
			nz++;
		else
			memset(p + i * PG, 1 + (int)(i / 3 % 8), PG);
	}
	assert_int_equal(sp_madvise(e, p, ZN * PG, MADV_MERGEABLE), 0);
	assert_int_equal(wait_counter(e, SP_KSM_ZERO_PAGES, nz, 20), nz);
	*out = p;
	return nz;
}

static void check_layout(const uint8_t *p, size_t written_page, uint8_t written)
{
	for (size_t i = 0; i < ZN; i++)
		for (size_t b = 0; b < PG; b += 511) {
			uint8_t want = zero_at(i) ? 0 : (uint8_t)(1 + i / 3 % 8);
			if (i == written_page && b == 0)
				want = written;
			if (p[i * PG + b] != want)
				fail_msg("page %zu byte %zu: %u, want %u", i, b, p[i * PG + b], want);
		}
}

static void test_dropped_zero_pages_unarmed(void **state)
{
	(void)state;
	ENGINE(e, 0);
	REQUIRE_TRACKING(e);
	uint8_t *p;
	int64_t nz = merge_zero_layout(e, &p);
	/* The runs that dropped them thawed without re-arming them: no
	 * write-protect marker in their (empty) page table entries. */
	int64_t unarmed = 0;
	for (size_t i = 0; i < ZN; i += 3) {
		uint64_t v = pagemap_peek(p + i * PG);
		assert_false(PM_PRESENT(v));
		unarmed += !PM_UFFD_WP(v);
	}
	if (unarmed < nz * 9 / 10)
		fail_msg("%lld of %lld dropped pages unarmed: the thaw re-armed them", (long long)unarmed,
			 (long long)nz);
	/* Read as written, they are still zeros, and their blocks rest. */
	int64_t skipped = counter(e, SP_PAGES_SKIPPED);
	for (int i = 0; i < 60 && counter(e, SP_PAGES_SKIPPED) < skipped + 512; i++)
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
	if (counter(e, SP_PAGES_SKIPPED) < skipped + 512)
		fail_msg("blocks of dropped pages did not rest: pages_skipped %lld -> %lld", (long long)skipped,
			 (long long)counter(e, SP_PAGES_SKIPPED));
	assert_int_equal(counter(e, SP_KSM_ZERO_PAGES), nz);
	/* A read maps the zero page: still zeros. */
	for (size_t i = 0; i < ZN; i += 3)
		assert_int_equal(p[i * PG + 7], 0);
	assert_int_equal(sp_engine_wait_scans(e, 4, 20000), 0);
	assert_int_equal(counter(e, SP_KSM_ZERO_PAGES), nz);
	/* A write to a page that was read, and to one that was not, after the
	 * blocks rested: both show. */
	p[300 * PG] = 0x5a;
	assert_int_equal(madvise(p + 303 * PG, PG, MADV_DONTNEED), 0);  /* unread again */
	p[303 * PG + 9] = 0x33;
	assert_int_equal(wait_counter(e, SP_KSM_ZERO_PAGES, nz - 2, 60), nz - 2);
	assert_int_equal(p[303 * PG + 9], 0x33);
	p[303 * PG + 9] = 0;
	check_layout(p, 300, 0x5a);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, ZN * PG);
}

/* May this process give itself MADV_DONTNEED through process_madvise()? */
static bool self_process_madvise(void)
{
	uint8_t *p = region(1, 1);
	int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	struct iovec iov = { p, PG };
	bool ok = fd >= 0 && syscall(SYS_process_madvise, fd, &iov, 1, MADV_DONTNEED, 0) == (long)PG && p[9] == 0;
	if (fd >= 0)
		close(fd);
	munmap(p, PG);
	return ok;
}

/* A batch's pages of zeros go in one process_madvise(); where that fails,
 * one madvise() a page. */
static void test_zero_pages_dropped_in_bulk(void **state)
{
	(void)state;
	if (!self_process_madvise())
		SKIP_BECAUSE("process_madvise(MADV_DONTNEED) on itself needs Linux 6.13");
	ENGINE(e, 0);
	uint8_t *p;
	_sp_fault_set("madvise:EIO:1+");  /* only the bulk call can drop them */
	merge_zero_layout(e, &p);
	_sp_fault_set(NULL);
	check_layout(p, ZN, 0);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, ZN * PG);

	ENGINE(e2, 0);
	_sp_fault_set("process_madvise:EINVAL:1+");  /* refused: page by page */
	merge_zero_layout(e2, &p);
	_sp_fault_set(NULL);
	check_layout(p, ZN, 0);
	assert_int_equal(sp_engine_free(e2), 0);
	munmap(p, ZN * PG);
}

/* ------------------------------------------------------------ swap */

/* A swap file of the test's own, for MADV_PAGEOUT. Swap is machine-wide
 * like the KSM knobs: taken under a lock, switched off by the teardown
 * whatever the test did. */
#define SWAP_FILE "/var/tmp/samepage-test.swap"
#define SWAP_LOCK "/run/samepage-test-swap.lock"
#define SWAP_MIB 16

static int swap_lock_fd = -1;

static void swap_stop(void)
{
	swapoff(SWAP_FILE);
	unlink(SWAP_FILE);
	if (swap_lock_fd >= 0)
		close(swap_lock_fd);
	swap_lock_fd = -1;
}

static const char *swap_start(void)
{
	static char why[160];
	if (!is_root())
		return "not root: cannot switch a swap file on";
	swap_lock_fd = open(SWAP_LOCK, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	if (swap_lock_fd < 0 || flock(swap_lock_fd, LOCK_EX))
		return "cannot take " SWAP_LOCK;
	swapoff(SWAP_FILE);  /* left on by a run that was killed */
	unlink(SWAP_FILE);
	int fd = open(SWAP_FILE, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return "cannot create " SWAP_FILE;
	static const char mib[1 << 20];
	for (int i = 0; i < SWAP_MIB; i++)
		if (write(fd, mib, sizeof(mib)) != (ssize_t)sizeof(mib)) {
			close(fd);
			return "cannot write " SWAP_FILE;
		}
	close(fd);
	struct cmd_result res;
	const char *const argv[] = { "/sbin/mkswap", "-q", SWAP_FILE, NULL };
	if (run_cmd(argv, NULL, -1, &res) != 0 || res.status != 0) {
		snprintf(why, sizeof(why), "mkswap failed: %s", res.err ? res.err : "");
		cmd_result_free(&res);
		return why;
	}
	cmd_result_free(&res);
	if (swapon(SWAP_FILE, 0) != 0) {
		snprintf(why, sizeof(why), "swapon %s: %s", SWAP_FILE, strerror(errno));
		return why;
	}
	return NULL;
}

static int swap_teardown(void **state)
{
	(void)state;
	swap_stop();
	return 0;
}

/* Written, then swapped out before the engine looked again: an entry that
 * is neither present nor empty, but written, so not zeros any more. */
static void test_written_zero_page_swapped(void **state)
{
	(void)state;
	const char *why = swap_start();
	if (why)
		SKIP_BECAUSE("%s", why);
	ENGINE(e, 0);
	REQUIRE_TRACKING(e);
	uint8_t *p;
	int64_t nz = merge_zero_layout(e, &p);
	p[600 * PG + 5] = 0x11;
	assert_int_equal(madvise(p + 600 * PG, PG, MADV_PAGEOUT), 0);
	uint64_t v = pagemap_peek(p + 600 * PG);
	if (!PM_SWAP(v)) {
		assert_int_equal(sp_engine_free(e), 0);
		munmap(p, ZN * PG);
		SKIP_BECAUSE("MADV_PAGEOUT left the page in memory (pagemap %#llx)", (unsigned long long)v);
	}
	assert_false(PM_PRESENT(v));
	assert_int_equal(wait_counter(e, SP_KSM_ZERO_PAGES, nz - 1, 60), nz - 1);
	assert_int_equal(p[600 * PG + 5], 0x11);  /* swapped in */
	p[600 * PG + 5] = 0;
	check_layout(p, ZN, 0);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, ZN * PG);
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_pages),
		cmocka_unit_test(test_dropped_zero_pages_unarmed),
		cmocka_unit_test(test_zero_pages_dropped_in_bulk),
		cmocka_unit_test_teardown(test_written_zero_page_swapped, swap_teardown),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("engine_zero", tests, NULL, NULL);
}
