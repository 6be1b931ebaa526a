/* SPDX-License-Identifier: MIT */
/*
 * Description: the user-space engine's API refuses every bad argument the
 * way madvise(2) and sysfs would, and its knobs follow the kernel's rules.
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096UL

static sp_engine *new_engine(unsigned flags)
{
	sp_engine *e = NULL;
	int r = sp_engine_new(flags | SP_ENGINE_MANUAL, &e);
	if (r == -EPERM || r == -ENOSYS)
		return NULL;
	assert_int_equal(r, 0);
	return e;
}

#define NEED_ENGINE(e)                                                                       \
	do {                                                                                 \
		if (!(e))                                                                    \
			SKIP_BECAUSE("userfaultfd is not available to this user on this kernel"); \
	} while (0)

static void *anon(size_t pages)
{
	void *p = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	return p;
}

static long vm_locked_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[128];
	long kb = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void test_new_and_free_arguments(void **state)
{
	(void)state;
	sp_engine *e;
	assert_int_equal(sp_engine_new(0x80, &e), -EINVAL);
	assert_int_equal(sp_engine_new(0, NULL), -EINVAL);
	assert_int_equal(sp_engine_free(NULL), 0);
	assert_int_equal(sp_madvise(NULL, NULL, 0, MADV_MERGEABLE), -EINVAL);
	assert_int_equal(sp_munmap(NULL, NULL, 0), -EINVAL);
	void *out;
	assert_int_equal(sp_mremap(NULL, NULL, 0, 0, 0, NULL, &out), -EINVAL);
	assert_int_equal(sp_mmap(NULL, NULL, 0, 0, 0, -1, 0, &out), -EINVAL);
	assert_int_equal(sp_engine_set(NULL, NULL, 0, 0, NULL), -EINVAL);
	sp_sample s;
	assert_int_equal(sp_engine_sample(NULL, &s), -EINVAL);
	assert_int_equal(sp_engine_scan(NULL), -EINVAL);
	assert_int_equal(sp_engine_merge_any(NULL, true, 0), -EINVAL);
	sp_engine_info info;
	assert_int_equal(sp_engine_info_get(NULL, &info), -EINVAL);
}

static void test_register_refuses_what_madvise_refuses(void **state)
{
	(void)state;
	sp_engine *e = new_engine(0);
	NEED_ENGINE(e);
	uint8_t *p = anon(8);

	assert_int_equal(sp_madvise(e, p + 1, PG, MADV_MERGEABLE), -EINVAL);     /* unaligned */
	assert_int_equal(sp_madvise(e, p, 0, MADV_MERGEABLE), 0);               /* empty: no-op */
	assert_int_equal(sp_madvise(e, p, SIZE_MAX - 10, MADV_MERGEABLE), -EINVAL); /* wraps */

	/* a hole in the middle: ENOMEM, like madvise */
	assert_int_equal(munmap(p + 4 * PG, PG), 0);
	assert_int_equal(sp_madvise(e, p, 8 * PG, MADV_MERGEABLE), -ENOMEM);
	/* nothing of it was registered */
	sp_engine_info info;
	sp_engine_info_get(e, &info);
	assert_int_equal(info.registered_pages, 0);

	void *shared = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_int_equal(sp_madvise(e, shared, 4 * PG, MADV_MERGEABLE), -EINVAL);

	int fd = open("/etc/passwd", O_RDONLY);
	void *file = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_int_equal(sp_madvise(e, file, PG, MADV_MERGEABLE), -EINVAL);

	void *none = mmap(NULL, 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_int_equal(sp_madvise(e, none, 2 * PG, MADV_MERGEABLE), -EINVAL);

	uint8_t *locked = anon(2);
	/* Sanitizers make mlock() a no-op: only test what really got locked. */
	if (mlock(locked, 2 * PG) == 0 && vm_locked_kb() >= 8)
		assert_int_equal(sp_madvise(e, locked, 2 * PG, MADV_MERGEABLE), -EINVAL);
	else
		print_message("mlock did not lock here (permission or sanitizer): locked case not exercised\n");

	/* memory that another userfaultfd manages */
	uint8_t *owned = anon(4);
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (uffd >= 0) {
		struct uffdio_api api = { .api = UFFD_API };
		assert_int_equal(ioctl(uffd, UFFDIO_API, &api), 0);
		struct uffdio_register reg = { .range = { (uintptr_t)owned, 4 * PG },
					       .mode = UFFDIO_REGISTER_MODE_MISSING };
		assert_int_equal(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
		assert_int_equal(sp_madvise(e, owned, 4 * PG, MADV_MERGEABLE), -EINVAL);
		close(uffd);
	}

	/* hugetlb, when the machine has huge pages to give */
	void *huge = mmap(NULL, 2u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (huge != MAP_FAILED) {
		assert_int_equal(sp_madvise(e, huge, 2u << 20, MADV_MERGEABLE), -EINVAL);
		munmap(huge, 2u << 20);
	} else {
		print_message("no hugetlb pages reserved: hugetlb case checked by the maps parser only\n");
	}

	/* good memory still works, twice (idempotent), and partially overlapping */
	assert_int_equal(sp_madvise(e, p, 4 * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_madvise(e, p, 4 * PG, MADV_MERGEABLE), 0);
	assert_int_equal(sp_madvise(e, p + 2 * PG, 2 * PG, MADV_UNMERGEABLE), 0);
	sp_engine_info_get(e, &info);
	assert_int_equal(info.registered_pages, 2);
	assert_int_equal(sp_madvise(e, p, 4 * PG, MADV_MERGEABLE), 0);
	sp_engine_info_get(e, &info);
	assert_int_equal(info.registered_pages, 4);
	assert_int_equal(sp_madvise(e, p, 4 * PG, MADV_UNMERGEABLE), 0);
	sp_engine_info_get(e, &info);
	assert_int_equal(info.registered_pages, 0);
	/* unregistering what is not registered is fine, like the kernel */
	assert_int_equal(sp_madvise(e, p, 4 * PG, MADV_UNMERGEABLE), 0);

	munmap(p, 8 * PG);
	munmap(shared, 4 * PG);
	munmap(file, PG);
	close(fd);
	munmap(none, 2 * PG);
	munmap(locked, 2 * PG);
	munmap(owned, 4 * PG);
	assert_int_equal(sp_engine_free(e), 0);
}

static void test_knobs_follow_kernel_rules(void **state)
{
	(void)state;
	sp_engine *e = new_engine(0);
	NEED_ENGINE(e);
	sp_sample s;
	assert_int_equal(sp_engine_sample(e, &s), 0);
	/* defaults are the kernel's */
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		if (in->flags & SP_PF_KNOB)
			assert_int_equal(s.value[p], in->def);
	}
	sp_diag d;
	sp_setting bad1 = { "pages_to_scan", "-1" };
	assert_int_equal(sp_engine_set(e, &bad1, 1, 0, &d), -ERANGE);
	sp_setting bad2 = { "no_such_knob", "1" };
	assert_int_equal(sp_engine_set(e, &bad2, 1, 0, &d), -ENOENT);
	sp_setting bad3 = { "pages_shared", "1" };
	assert_int_equal(sp_engine_set(e, &bad3, 1, 0, &d), -EPERM);
	sp_setting bad4 = { "cow_ksm", "1" };
	assert_int_equal(sp_engine_set(e, &bad4, 1, 0, &d), -EPERM);
	sp_setting bad5[] = { { "run", "1" }, { "sleep_millisecs", "x" } };
	assert_int_equal(sp_engine_set(e, bad5, 2, 0, &d), -EINVAL);
	assert_int_equal(d.index, 1);
	sp_engine_sample(e, &s);
	assert_int_equal(s.value[SP_RUN], 0);  /* nothing written */

	/* advisor_mode owns pages_to_scan; switching resets it like the kernel */
	sp_setting adv = { "advisor_mode", "scan-time" };
	assert_int_equal(sp_engine_set(e, &adv, 1, 0, &d), 0);
	sp_engine_sample(e, &s);
	assert_int_equal(s.value[SP_PAGES_TO_SCAN], 500);
	sp_setting pts = { "pages_to_scan", "1000" };
	assert_int_equal(sp_engine_set(e, &pts, 1, 0, &d), -EINVAL);
	sp_setting back[] = { { "pages_to_scan", "1000" }, { "advisor_mode", "none" } };
	assert_int_equal(sp_engine_set(e, back, 2, 0, &d), 0);
	sp_engine_sample(e, &s);
	assert_int_equal(s.value[SP_PAGES_TO_SCAN], 1000);
	assert_int_equal(s.value[SP_ADVISOR_MODE], 0);

	/* libvirt names work here too */
	sp_setting lv = { "shm_sleep_millisecs", "7" };
	assert_int_equal(sp_engine_set(e, &lv, 1, 0, &d), 0);
	sp_engine_sample(e, &s);
	assert_int_equal(s.value[SP_SLEEP_MILLISECS], 7);
	/* the engine has no swap-in copies: absent, not zero */
	int64_t v;
	assert_int_equal(sp_sample_get(&s, SP_KSM_SWPIN_COPY, &v), -ENOENT);
	assert_int_equal(sp_sample_get(&s, SP_PAGES_SKIPPED_MAX_MAP_COUNT, &v), 0);
	assert_int_equal(sp_engine_free(e), 0);
}

/* max_page_sharing and merge_across_nodes need nothing merged (EBUSY),
 * and --unmerge-first (run=2) makes way, as with the kernel. */
static void test_ebusy_knobs_and_unmerge_first(void **state)
{
	(void)state;
	sp_engine *e = new_engine(0);
	NEED_ENGINE(e);
	uint8_t *p = anon(64);
	for (int i = 0; i < 64; i++)
		memset(p + i * PG, 'a' + i % 2, PG);
	assert_int_equal(sp_madvise(e, p, 64 * PG, MADV_MERGEABLE), 0);
	sp_setting go[] = { { "run", "1" }, { "pages_to_scan", "10000" } };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, go, 2, 0, &d), 0);
	assert_int_equal(sp_engine_wait_scans(e, 2, 10000), 0);
	sp_sample s;
	sp_engine_sample(e, &s);
	assert_int_equal(s.value[SP_PAGES_SHARED], 2);
	assert_int_equal(s.value[SP_PAGES_SHARING], 62);

	sp_setting mps = { "max_page_sharing", "128" };
	assert_int_equal(sp_engine_set(e, &mps, 1, 0, &d), -EBUSY);
	assert_non_null(strstr(d.msg, "--unmerge-first"));
	sp_setting man = { "merge_across_nodes", "0" };
	assert_int_equal(sp_engine_set(e, &man, 1, 0, &d), -EBUSY);
	assert_int_equal(sp_engine_set(e, &mps, 1, SP_SET_UNMERGE_FIRST, &d), 0);
	sp_engine_sample(e, &s);
	assert_int_equal(s.value[SP_MAX_PAGE_SHARING], 128);
	assert_int_equal(s.value[SP_RUN], 1);       /* back to running */
	assert_int_equal(s.value[SP_PAGES_SHARED], 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(p[i * PG + 7], 'a' + i % 2);
	/* and it merges again */
	assert_int_equal(sp_engine_wait_scans(e, 3, 10000), 0);
	sp_engine_sample(e, &s);
	assert_int_equal(s.value[SP_PAGES_SHARING], 62);
	assert_int_equal(sp_engine_free(e), 0);
	for (int i = 0; i < 64; i++)
		assert_int_equal(p[i * PG + 4000], 'a' + i % 2);
	munmap(p, 64 * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_and_free_arguments),
		cmocka_unit_test(test_register_refuses_what_madvise_refuses),
		cmocka_unit_test(test_knobs_follow_kernel_rules),
		cmocka_unit_test(test_ebusy_knobs_and_unmerge_first),
	};
	return cmocka_run_group_tests_name("engine_api", tests, NULL, NULL);
}
