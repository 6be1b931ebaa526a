/* SPDX-License-Identifier: MIT */
/*
 * Description: the ksm service end to end on the real kernel: start, a
 * real child with duplicate pages gets merged (waiting on full_scans, not
 * on sleeps), ps shows it, the EBUSY knobs refuse and --unmerge-first
 * works, stop/unmerge, and `samepage run` makes an unmodified program's
 * memory mergeable. Holds the KSM lock and restores every knob.
 */
#include "helpers.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CHILD_PAGES 4096
#define CHILD_DISTINCT 8

static int64_t self_ksm_stat(const char *key)
{
	FILE *f = fopen("/proc/self/ksm_stat", "r");
	if (!f)
		return -1;
	char k[64];
	long long v;
	int64_t found = -1;
	while (fscanf(f, "%63s %lld", k, &v) == 2)
		if (strcmp(k, key) == 0)
			found = v;
	fclose(f);
	return found;
}

/* Wait (on ksmd's passes, bounded) until pages_sharing reaches `want`. */
static bool wait_sharing(int64_t want)
{
	for (int i = 0; i < 40; i++) {
		if (ksm_read_num("pages_sharing") >= want)
			return true;
		if (!ksm_wait_scans(1, 15))
			return false;
	}
	return ksm_read_num("pages_sharing") >= want;
}

static json_object *ps_entry(json_object *ps, pid_t pid)
{
	json_object *arr, *e, *x;
	if (!json_object_object_get_ex(ps, "processes", &arr))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		e = json_object_array_get_idx(arr, i);
		if (json_object_object_get_ex(e, "pid", &x) && json_object_get_int(x) == pid)
			return e;
	}
	return NULL;
}

static int64_t field(json_object *o, const char *k)
{
	json_object *x;
	assert_true(json_object_object_get_ex(o, k, &x));
	return json_object_get_int64(x);
}

static void test_service_merges_a_real_process(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	struct cmd_result r;
	assert_int_equal(ksm_write("run", "2"), 0);  /* start from nothing merged */
	ksm_fast_scan();
	struct dup_child child;
	dup_child_start(&child, CHILD_PAGES, CHILD_DISTINCT);

	run_samepage(&r, "service-status", NULL);
	assert_int_equal(r.status, 3);
	cmd_result_free(&r);
	run_samepage(&r, "start", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	assert_int_equal(ksm_read_num("run"), 1);
	run_samepage(&r, "service-status", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "running"));
	cmd_result_free(&r);

	/* 4096 pages of 8 contents: 8 shared pages, up to 4088 sharing. */
	assert_true(wait_sharing(CHILD_PAGES - CHILD_DISTINCT - 64));
	assert_true(ksm_read_num("pages_shared") >= CHILD_DISTINCT);

	run_samepage(&r, "ps", "--json", NULL);
	assert_int_equal(r.status, 0);
	json_object *ps = json_tokener_parse(r.out), *e, *x;
	assert_non_null(ps);
	e = ps_entry(ps, child.pid);
	assert_non_null(e);
	assert_true(field(e, "ksm_merging_pages") >= CHILD_PAGES - 64);
	assert_true(field(e, "ksm_rmap_items") >= CHILD_PAGES - 64);
	assert_true(field(e, "ksm_process_profit") > 0);
	assert_true(json_object_object_get_ex(e, "ksm_mergeable", &x));
	assert_true(json_object_get_boolean(x));
	json_object_put(ps);
	cmd_result_free(&r);

	run_samepage(&r, "ps", NULL);
	assert_int_equal(r.status, 0);
	char pidtext[16];
	snprintf(pidtext, sizeof(pidtext), "%d", child.pid);
	assert_non_null(strstr(r.out, pidtext));
	assert_non_null(strstr(r.out, "TOTAL"));
	cmd_result_free(&r);

	run_samepage(&r, "status", "--json", NULL);
	json_object *st = json_tokener_parse(r.out), *sav, *kd;
	assert_non_null(st);
	assert_true(json_object_object_get_ex(st, "savings", &sav));
	assert_true(field(sav, "saved_bytes") >= (CHILD_PAGES - 64) * 4096LL);
	assert_true(json_object_object_get_ex(st, "ksmd", &kd));
	assert_non_null(kd);
	assert_true(json_object_object_get_ex(kd, "cpu_percent", &x));
	assert_non_null(x);  /* measured while running */
	json_object_put(st);
	cmd_result_free(&r);

	/* The knobs that need unmerged pages refuse, and nothing changes. */
	struct ksm_knobs before, after;
	ksm_save(&before);
	char arg[64];
	snprintf(arg, sizeof(arg), "max_page_sharing=%lld", (long long)ksm_read_num("max_page_sharing") + 1);
	run_samepage(&r, "set", arg, NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--unmerge-first"));
	assert_string_equal(r.out, "");
	cmd_result_free(&r);
	snprintf(arg, sizeof(arg), "merge_across_nodes=%d", !ksm_read_num("merge_across_nodes"));
	run_samepage(&r, "set", arg, NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "merge_across_nodes"));
	cmd_result_free(&r);
	ksm_save(&after);
	assert_true(ksm_same(&before, &after));
	assert_true(ksm_read_num("pages_sharing") > 0);

	/* --unmerge-first: unmerge, change, and ksmd runs again. */
	int64_t mps = ksm_read_num("max_page_sharing");
	snprintf(arg, sizeof(arg), "max_page_sharing=%lld", (long long)mps + 1);
	run_samepage(&r, "set", "--unmerge-first", arg, NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	assert_int_equal(ksm_read_num("max_page_sharing"), mps + 1);
	assert_int_equal(ksm_read_num("run"), 1);
	assert_true(wait_sharing(CHILD_PAGES / 2));  /* merging resumed */
	snprintf(arg, sizeof(arg), "max_page_sharing=%lld", (long long)mps);
	run_samepage(&r, "set", "--unmerge-first", arg, NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	assert_int_equal(ksm_read_num("max_page_sharing"), mps);

	/* stop keeps pages merged; unmerge splits them all. */
	assert_true(wait_sharing(CHILD_PAGES / 2));
	run_samepage(&r, "stop", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	assert_int_equal(ksm_read_num("run"), 0);
	assert_true(ksm_read_num("pages_sharing") > 0);
	run_samepage(&r, "service-status", NULL);
	assert_int_equal(r.status, 3);
	cmd_result_free(&r);
	run_samepage(&r, "unmerge", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	assert_int_equal(ksm_read_num("run"), 2);
	assert_int_equal(ksm_read_num("pages_sharing"), 0);
	assert_int_equal(ksm_read_num("pages_shared"), 0);
	run_samepage(&r, "service-status", NULL);
	assert_int_equal(r.status, 3);
	assert_non_null(strstr(r.out, "unmerged"));
	cmd_result_free(&r);

	dup_child_stop(&child);  /* the child checks its memory is intact */
}

/* The worker that `samepage run` starts: duplicate pages, no madvise. It
 * exits 0 once the kernel reports its pages merging, 1 after 30 s. */
static int run_worker(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), n = 2048;
	unsigned char *m = mmap(NULL, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < n; i++)
		memset(m + i * ps, 0x5a + (int)(i % 4), ps);
	printf("merge_any %lld\n", (long long)self_ksm_stat("ksm_merge_any:"));
	for (int i = 0; i < 3000; i++) {
		if (self_ksm_stat("ksm_merging_pages") >= (int64_t)n / 2) {
			for (size_t j = 0; j < n; j++)
				if (m[j * ps + 100] != 0x5a + (int)(j % 4))
					return 3;
			printf("merged %lld\n", (long long)self_ksm_stat("ksm_merging_pages"));
			return 0;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 1;
}

static void test_run_makes_unmodified_program_mergeable(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	if (ksm_write("run", "1") != 0)
		SKIP_BECAUSE("cannot start ksmd");
	ksm_fast_scan();
	const char *argv[] = { "samepage", "run", "--", build_path("tests/ksm_merge_test.t"),
			       "--run-worker", NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	if (r.status == 4)
		SKIP_BECAUSE("PR_SET_MEMORY_MERGE not supported: %s", r.err);
	if (r.status != 0)
		fail_msg("worker exit %d: %s %s", r.status, r.out, r.err);
	assert_non_null(strstr(r.out, "merged"));
	cmd_result_free(&r);

	/* The flag survives fork and exec into the command's children. */
	const char *sh[] = { "samepage", "run", "--", "sh", "-c", "cat /proc/$$/ksm_stat", NULL };
	run_cmd(sh, NULL, -1, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "ksm_merge_any: yes"));
	cmd_result_free(&r);
	assert_int_equal(ksm_write("run", "2"), 0);
}

static void test_run_errors(void **state)
{
	(void)state;
	REQUIRE_KSM(false);
	struct cmd_result r;
	run_samepage(&r, "run", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "no command"));
	cmd_result_free(&r);
	run_samepage(&r, "run", "--", "/nonexistent/program", NULL);
	assert_int_equal(r.status, 127);
	assert_non_null(strstr(r.err, "/nonexistent/program"));
	cmd_result_free(&r);
	run_samepage(&r, "run", "--", "/etc/passwd", NULL);
	assert_int_equal(r.status, 126);
	cmd_result_free(&r);
	run_samepage(&r, "run", "-q", "--", "sh", "-c", "exit 7", NULL);
	assert_int_equal(r.status, 7);  /* the command's own exit code */
	cmd_result_free(&r);
	run_samepage(&r, "run", "--frobnicate", "true", NULL);
	assert_int_equal(r.status, 2);
	cmd_result_free(&r);
}

/* Non-root users can read what they own. */
static void test_ps_as_non_root(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	const char *argv[] = { "samepage", "ps", NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, NOBODY_UID, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "TOTAL"));
	assert_non_null(strstr(r.err, "could not be read"));
	cmd_result_free(&r);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--run-worker") == 0)
		return run_worker();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_service_merges_a_real_process),
		cmocka_unit_test(test_run_makes_unmodified_program_mergeable),
		cmocka_unit_test(test_run_errors),
		cmocka_unit_test(test_ps_as_non_root),
	};
	return cmocka_run_group_tests_name("ksm_merge", tests, ksm_group_setup, ksm_group_teardown);
}
