/* SPDX-License-Identifier: MIT */
/*
 * Description: kernels this machine is not. Recorded /sys and /proc trees
 * stand for an older kernel (no advisor, no smart_scan, no general_profit),
 * a kernel without KSM, and odd ksm_stat files; the library and the CLI
 * must show what is absent as absent, never as an error.
 */
#include "helpers.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A 5.15-like kernel: the 2.6.32 files plus merge_across_nodes, use_zero_pages
 * and the max_page_sharing family; nothing newer. */
static const char *const old_kernel[][2] = {
	{ "run", "1\n" },
	{ "pages_to_scan", "1250\n" },
	{ "sleep_millisecs", "10\n" },
	{ "merge_across_nodes", "1\n" },
	{ "use_zero_pages", "0\n" },
	{ "max_page_sharing", "256\n" },
	{ "stable_node_chains_prune_millisecs", "2000\n" },
	{ "pages_shared", "1000\n" },
	{ "pages_sharing", "9000\n" },
	{ "pages_unshared", "3000\n" },
	{ "pages_volatile", "500\n" },
	{ "full_scans", "42\n" },
	{ "stable_node_chains", "0\n" },
	{ "stable_node_dups", "0\n" },
};

static char *make_old_tree(void)
{
	char *root = make_tempdir();
	char path[512];
	for (size_t i = 0; i < sizeof(old_kernel) / sizeof(old_kernel[0]); i++) {
		snprintf(path, sizeof(path), "%s/sys/kernel/mm/ksm/%s", root, old_kernel[i][0]);
		write_file_p(path, old_kernel[i][1]);
	}
	snprintf(path, sizeof(path), "%s/proc/vmstat", root);
	write_file_p(path, "nr_free_pages 100\ncow_ksm 77\nnr_zone_active_anon 5\n");
	/* A process on a kernel whose ksm_stat has no profit line. */
	snprintf(path, sizeof(path), "%s/proc/4242/ksm_stat", root);
	write_file_p(path, "ksm_rmap_items 100\nksm_merging_pages 50\n");
	snprintf(path, sizeof(path), "%s/proc/4242/comm", root);
	write_file_p(path, "qemu-system-x86\n");
	snprintf(path, sizeof(path), "%s/proc/4243/ksm_stat", root);
	write_file_p(path, "ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\n"
			   "ksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: no\n");
	snprintf(path, sizeof(path), "%s/proc/4244/comm", root);
	write_file_p(path, "two\nlines\n");  /* a name may hold a newline (PR_SET_NAME) */
	snprintf(path, sizeof(path), "%s/proc/4244/ksm_stat", root);
	write_file_p(path, "ksm_rmap_items 10\nksm_zero_pages 5\nksm_merging_pages 0\n"
			   "ksm_process_profit -4096\nksm_merge_any: yes\nksm_mergeable: yes\n");
	snprintf(path, sizeof(path), "%s/proc/uptime", root);
	write_file_p(path, "100.0 50.0\n");
	return root;
}

static void test_library_reads_absent_as_absent(void **state)
{
	(void)state;
	char *root = make_old_tree();
	sp_ksm *k;
	assert_int_equal(sp_ksm_open(root, &k), 0);
	assert_true(sp_ksm_available(k));
	int64_t v;
	assert_int_equal(sp_ksm_read(k, SP_PAGES_TO_SCAN, &v), 0);
	assert_int_equal(v, 1250);
	assert_int_equal(sp_ksm_read(k, SP_SMART_SCAN, &v), -ENOENT);
	assert_int_equal(sp_ksm_read(k, SP_ADVISOR_MODE, &v), -ENOENT);
	assert_int_equal(sp_ksm_read(k, SP_GENERAL_PROFIT, &v), -ENOENT);
	assert_int_equal(sp_ksm_read(k, SP_COW_KSM, &v), 0);
	assert_int_equal(v, 77);
	assert_int_equal(sp_ksm_read(k, SP_KSM_SWPIN_COPY, &v), -ENOENT);

	sp_sample s;
	assert_int_equal(sp_ksm_sample(k, &s), 0);
	assert_false(s.present & (1ull << SP_ADVISOR_MODE));
	assert_true(s.present & (1ull << SP_FULL_SCANS));
	sp_savings sv;
	sp_savings_compute(&s, &sv);
	assert_true(sv.profit_estimated);
	assert_int_equal(sv.saved_bytes, 9000 * s.page_size);
	assert_int_equal(sv.metadata_bytes, (1000 + 9000 + 3000 + 500) * 64);

	/* Writing a knob the kernel lacks is refused by name. */
	sp_setting set = { "smart_scan", "0" };
	sp_diag d;
	assert_int_equal(sp_ksm_set(k, &set, 1, 0, &d), -EOPNOTSUPP);
	assert_non_null(strstr(d.msg, "smart_scan"));
	assert_int_equal(sp_ksm_set(NULL, &set, 1, 0, &d), -EINVAL);
	assert_int_equal(d.err, -EINVAL);
	assert_true(d.msg[0] != 0);
	sp_ksm_close(k);
	remove_tree(root);
	free(root);
}

static void test_proc_ksm_stat_variants(void **state)
{
	(void)state;
	char *root = make_old_tree();
	sp_ksm *k;
	assert_int_equal(sp_ksm_open(root, &k), 0);
	sp_proc_ksm p;
	assert_int_equal(sp_proc_ksm_read(k, 4242, &p), 0);
	assert_int_equal(p.ksm_rmap_items, 100);
	assert_int_equal(p.ksm_merging_pages, 50);
	/* No profit line: the kernel's formula, 50 pages saved - 100 rmap items. */
	assert_int_equal(p.ksm_process_profit, 50 * sysconf(_SC_PAGESIZE) - 100 * 64);
	assert_int_equal(p.ksm_merge_any, -1);
	assert_string_equal(p.comm, "qemu-system-x86");
	assert_int_equal(sp_proc_ksm_read(k, 4244, &p), 0);
	assert_int_equal(p.ksm_process_profit, -4096);
	assert_int_equal(p.ksm_merge_any, 1);
	assert_string_equal(p.comm, "two\nlines");  /* only the kernel's final newline goes */
	assert_int_equal(sp_proc_ksm_read(k, 99999, &p), -ENOENT);

	sp_proc_ksm *list;
	size_t n, unreadable;
	assert_int_equal(sp_proc_ksm_list(k, &list, &n, &unreadable), 0);
	/* 4243 has no activity; the others sorted by profit, largest first. */
	assert_int_equal(n, 2);
	assert_int_equal(list[0].pid, 4242);
	assert_int_equal(list[1].pid, 4244);
	free(list);
	sp_ksm_close(k);

	/* The table keeps one line per process whatever the name holds; JSON
	 * keeps the name as it is. */
	struct cmd_result r;
	run_samepage(&r, "--root", root, "ps", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, " two?lines "));
	assert_null(strstr(r.out, "two\nlines"));
	cmd_result_free(&r);
	run_samepage(&r, "--root", root, "ps", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "two\\nlines"));
	cmd_result_free(&r);
	remove_tree(root);
	free(root);
}

static void test_cli_status_on_old_kernel(void **state)
{
	(void)state;
	char *root = make_old_tree();
	struct cmd_result r;
	run_samepage(&r, "--root", root, "status", "--interval", "0", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "smart_scan"));
	assert_non_null(strstr(r.out, "absent"));
	assert_non_null(strstr(r.out, "estimated"));
	cmd_result_free(&r);

	run_samepage(&r, "--root", root, "status", "--json", NULL);
	assert_int_equal(r.status, 0);
	json_object *j = json_tokener_parse(r.out), *knobs, *ctrs, *x;
	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "knobs", &knobs));
	assert_true(json_object_object_get_ex(j, "counters", &ctrs));
	/* Absent files are present as keys with null values. */
	assert_true(json_object_object_get_ex(knobs, "smart_scan", &x));
	assert_null(x);
	assert_true(json_object_object_get_ex(knobs, "pages_to_scan", &x));
	assert_int_equal(json_object_get_int64(x), 1250);
	assert_true(json_object_object_get_ex(ctrs, "general_profit", &x));
	assert_null(x);
	json_object_put(j);
	cmd_result_free(&r);
	remove_tree(root);
	free(root);
}

static void test_cli_without_ksm(void **state)
{
	(void)state;
	char *root = make_tempdir();
	char path[512];
	snprintf(path, sizeof(path), "%s/proc/vmstat", root);
	write_file_p(path, "nr_free_pages 1\n");
	static const char *const cmds[][3] = {
		{ "status", NULL, NULL }, { "service-status", NULL, NULL }, { "start", NULL, NULL },
		{ "set", "run=1", NULL }, { "ps", NULL, NULL }, { "get", "run", NULL },
		{ "run", "true", NULL },
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *argv[] = { "samepage", "--root", root, cmds[i][0], cmds[i][1], NULL };
		struct cmd_result r;
		run_cmd(argv, NULL, -1, &r);
		if (r.status != 4)
			fail_msg("samepage %s without KSM: exit %d, want 4 (%s%s)", cmds[i][0], r.status,
				 r.out, r.err);
		/* Said plainly, on stdout or stderr. */
		assert_true(strstr(r.out, "not supported") || strstr(r.err, "not supported"));
		cmd_result_free(&r);
	}
	struct cmd_result r;
	run_samepage(&r, "--root", root, "status", "--json", NULL);
	json_object *j = json_tokener_parse(r.out), *x;
	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "available", &x));
	assert_false(json_object_get_boolean(x));
	json_object_put(j);
	cmd_result_free(&r);
	remove_tree(root);
	free(root);
}

/* A recorded tree is also a safe place to see what set writes. */
static void test_set_writes_canonical_values(void **state)
{
	(void)state;
	char *root = make_old_tree();
	struct cmd_result r;
	run_samepage(&r, "--root", root, "set", "use_zero_pages=yes", "shm_sleep_millisecs=+30", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	char path[512], buf[64];
	snprintf(path, sizeof(path), "%s/sys/kernel/mm/ksm/use_zero_pages", root);
	FILE *f = fopen(path, "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "1");
	snprintf(path, sizeof(path), "%s/sys/kernel/mm/ksm/sleep_millisecs", root);
	f = fopen(path, "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "30");
	/* Options may follow the settings. */
	run_samepage(&r, "--root", root, "set", "pages_to_scan=5", "--dry-run", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "dry run"));
	cmd_result_free(&r);
	/* A knob this kernel lacks: not supported (4), for get and set alike. */
	run_samepage(&r, "--root", root, "set", "smart_scan=0", NULL);
	assert_int_equal(r.status, 4);
	assert_non_null(strstr(r.err, "smart_scan"));
	cmd_result_free(&r);
	run_samepage(&r, "--root", root, "get", "advisor_mode", NULL);
	assert_int_equal(r.status, 4);
	cmd_result_free(&r);
	remove_tree(root);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_library_reads_absent_as_absent),
		cmocka_unit_test(test_proc_ksm_stat_variants),
		cmocka_unit_test(test_cli_status_on_old_kernel),
		cmocka_unit_test(test_cli_without_ksm),
		cmocka_unit_test(test_set_writes_canonical_values),
	};
	return cmocka_run_group_tests_name("recorded", tests, NULL, NULL);
}
