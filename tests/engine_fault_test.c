/* SPDX-License-Identifier: MIT */
/*
 * Description: the engine when system calls fail (injected through the
 * primitive layer, SAMEPAGE_FAULT): merges that cannot map leave the old
 * pages intact, unmerging without memory fails cleanly with nothing lost,
 * registration failures register nothing, and everything works again once
 * the failures stop.
 */
#include "helpers.h"
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PG 4096UL

static void faults(const char *rules)
{
	if (rules)
		setenv("SAMEPAGE_FAULT", rules, 1);
	else
		unsetenv("SAMEPAGE_FAULT");
	_sp_fault_reload();
}

static sp_engine *engine(void)
{
	sp_engine *e = NULL;
	if (sp_engine_new(SP_ENGINE_MANUAL, &e))
		return NULL;
	sp_setting go[] = { { "run", "1" }, { "pages_to_scan", "100000" } };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, go, 2, 0, &d), 0);
	return e;
}

static int64_t sharing(sp_engine *e)
{
	sp_sample s;
	sp_engine_sample(e, &s);
	return s.value[SP_PAGES_SHARING];
}

static void check(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < PG; k += 512)
			assert_int_equal(p[i * PG + k], 1 + i % 3);
}

static uint8_t *region(size_t n)
{
	uint8_t *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	for (size_t i = 0; i < n; i++)
		memset(p + i * PG, 1 + (int)(i % 3), PG);
	return p;
}

#define ENGINE(e)                                                                   \
	sp_engine *e = engine();                                                    \
	if (!e)                                                                     \
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel")

static void test_mapping_failures_lose_nothing(void **state)
{
	(void)state;
	ENGINE(e);
	uint8_t *p = region(300);
	assert_int_equal(sp_madvise(e, p, 300 * PG, MADV_MERGEABLE), 0);
	faults("mmap:ENOMEM:1+");  /* every mmap from now on */
	assert_int_equal(sp_engine_wait_scans(e, 3, 20000), 0);
	faults(NULL);
	assert_int_equal(sharing(e), 0);
	check(p, 300);
	/* and once mmap works again, merging proceeds */
	assert_int_equal(sp_engine_wait_scans(e, 3, 20000), 0);
	assert_int_equal(sharing(e), 297);
	check(p, 300);
	assert_int_equal(sp_engine_free(e), 0);
	check(p, 300);
	munmap(p, 300 * PG);
}

static void test_store_failures(void **state)
{
	(void)state;
	ENGINE(e);
	uint8_t *p = region(64);
	assert_int_equal(sp_madvise(e, p, 64 * PG, MADV_MERGEABLE), 0);
	faults("memfd_create:EMFILE:1+");
	assert_int_equal(sp_engine_wait_scans(e, 3, 20000), 0);
	faults(NULL);
	assert_int_equal(sharing(e), 0);
	check(p, 64);
	/* a segment, but no memory for its pages (shmem's ENOSPC) */
	faults("pwrite:ENOSPC:1+");
	assert_int_equal(sp_engine_wait_scans(e, 3, 20000), 0);
	faults(NULL);
	assert_int_equal(sharing(e), 0);
	check(p, 64);
	assert_int_equal(sp_engine_wait_scans(e, 3, 20000), 0);
	assert_int_equal(sharing(e), 61);
	assert_int_equal(sp_engine_free(e), 0);
	check(p, 64);
	munmap(p, 64 * PG);
}

/* Unmerging needs memory for every copy; without it, nothing changes. */
static void test_unmerge_without_memory(void **state)
{
	(void)state;
	ENGINE(e);
	uint8_t *p = region(96);
	assert_int_equal(sp_madvise(e, p, 96 * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(sharing(e), 93);
	faults("madvise:ENOMEM:1+");  /* MADV_POPULATE_WRITE of the copies fails */
	int r = sp_madvise(e, p, 96 * PG, MADV_UNMERGEABLE);
	assert_true(r == -ENOMEM || r == -EAGAIN);
	sp_setting unmerge = { "run", "2" };
	sp_diag d;
	r = sp_engine_set(e, &unmerge, 1, 0, &d);
	assert_true(r == -ENOMEM || r == -EAGAIN);
	faults(NULL);
	check(p, 96);
	assert_int_equal(sharing(e), 93);  /* still merged, still registered */
	sp_engine_info info;
	sp_engine_info_get(e, &info);
	assert_int_equal(info.registered_pages, 96);
	/* a write still works on a page that could not be unmerged */
	p[PG] = 2;
	assert_int_equal(p[PG], 2);
	p[PG] = 2;
	assert_int_equal(sp_madvise(e, p, 96 * PG, MADV_UNMERGEABLE), 0);
	assert_int_equal(sharing(e), 0);
	check(p, 96);
	assert_int_equal(sp_engine_free(e), 0);
	munmap(p, 96 * PG);
}

static void test_registration_failures(void **state)
{
	(void)state;
	ENGINE(e);
	uint8_t *p = region(32);
	faults("ioctl:ENOMEM:1+");
	int r = sp_madvise(e, p, 32 * PG, MADV_MERGEABLE);
	faults(NULL);
	assert_true(r < 0);
	sp_engine_info info;
	sp_engine_info_get(e, &info);
	assert_int_equal(info.registered_pages, 0);
	assert_int_equal(sp_madvise(e, p, 32 * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 20000), 0);
	assert_int_equal(sharing(e), 29);
	assert_int_equal(sp_engine_free(e), 0);
	check(p, 32);
	munmap(p, 32 * PG);

	/* no userfaultfd at all: a clear error, no engine */
	faults("userfaultfd:EPERM:1+");
	sp_engine *none = NULL;
	assert_int_equal(sp_engine_new(SP_ENGINE_MANUAL, &none), -EPERM);
	assert_null(none);
	faults(NULL);
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mapping_failures_lose_nothing),
		cmocka_unit_test(test_store_failures),
		cmocka_unit_test(test_unmerge_without_memory),
		cmocka_unit_test(test_registration_failures),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("engine_fault", tests, NULL, NULL);
}
