/* SPDX-License-Identifier: MIT */
/*
 * Description: `samepage check` on recorded /proc and /sys trees, for the
 * states this machine cannot be put in: two NUMA nodes, too little swap,
 * hugetlb guests, users merged together, ksmd's CPU against its savings,
 * a process at vm.max_map_count, a kernel without KSM. Each verdict, value
 * and fix is checked exactly, with the JSON fields, the exit codes 0/1/2
 * and the usage errors. check_live_test does the same on this host.
 */
#include "check_util.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

/* ------------------------------------------------------------ recorded trees */

static void put(const char *root, const char *rel, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	write_file_p(path, text);
}

static void putf(const char *root, const char *rel, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void putf(const char *root, const char *rel, const char *fmt, ...)
{
	char text[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	put(root, rel, text);
}

static void put_ksm(const char *root, const char *name, long long v)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "sys/kernel/mm/ksm/%s", name);
	putf(root, rel, "%lld\n", v);
}

/* kB figures of /proc/meminfo */
static void put_meminfo(const char *root, long long mem_kb, long long swap_kb, long long committed_kb)
{
	putf(root, "proc/meminfo",
	     "MemTotal:       %lld kB\nMemFree:        1000 kB\nSwapTotal:      %lld kB\n"
	     "SwapFree:       %lld kB\nCommitLimit:    1000 kB\nCommitted_AS:   %lld kB\n",
	     mem_kb, swap_kb, swap_kb, committed_kb);
}

/* A host where every check passes: 32 GiB, 8 GiB swap, one node, KSM
 * running at a tuned rate, THP madvise, no processes, no ksmd. */
static char *good_tree(void)
{
	char *root = make_tempdir();
	static const struct { const char *name; long long v; } ksm[] = {
		{ "run", 1 }, { "pages_to_scan", 1250 }, { "sleep_millisecs", 10 },
		{ "merge_across_nodes", 1 }, { "use_zero_pages", 0 }, { "max_page_sharing", 256 },
		{ "stable_node_chains_prune_millisecs", 2000 }, { "pages_shared", 100 },
		{ "pages_sharing", 900 }, { "pages_unshared", 50 }, { "pages_volatile", 10 },
		{ "full_scans", 12 }, { "stable_node_chains", 0 }, { "stable_node_dups", 0 },
		{ "general_profit", 3600000 }, { "ksm_zero_pages", 0 },
	};
	for (size_t i = 0; i < sizeof(ksm) / sizeof(ksm[0]); i++)
		put_ksm(root, ksm[i].name, ksm[i].v);
	put(root, "sys/kernel/mm/ksm/advisor_mode", "[none] scan-time\n");
	put(root, "proc/vmstat", "nr_free_pages 100\ncow_ksm 0\n");
	put(root, "proc/uptime", "1000.00 1500.00\n");
	put_meminfo(root, 32LL << 20, 8LL << 20, 4LL << 20);
	put(root, "sys/devices/system/node/node0/cpumap", "3\n");
	put(root, "sys/devices/system/node/online", "0\n");
	put(root, "sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n");
	put(root, "sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", "511\n");
	put(root, "proc/sys/vm/max_map_count", "65530\n");
	put(root, "proc/sys/vm/unprivileged_userfaultfd", "0\n");
	return root;
}

static void drop_tree(char *root)
{
	remove_tree(root);
	free(root);
}

/* A recorded process: ksm_stat, comm, status with its uid, and a smaps. */
static void put_proc(const char *root, int pid, const char *comm, unsigned uid, long long rmap,
		     long long merging, const char *any, const char *mergeable, const char *smaps)
{
	char rel[128];
	long long profit = merging * 4096 - rmap * 64;
	snprintf(rel, sizeof(rel), "proc/%d/ksm_stat", pid);
	putf(root, rel,
	     "ksm_rmap_items %lld\nksm_zero_pages 0\nksm_merging_pages %lld\nksm_process_profit %lld\n"
	     "ksm_merge_any: %s\nksm_mergeable: %s\n",
	     rmap, merging, profit, any, mergeable);
	snprintf(rel, sizeof(rel), "proc/%d/comm", pid);
	putf(root, rel, "%s\n", comm);
	snprintf(rel, sizeof(rel), "proc/%d/status", pid);
	putf(root, rel, "Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t%u\t%u\t%u\t%u\nGid:\t%u\t%u\t%u\t%u\n",
	     comm, uid, uid, uid, uid, uid, uid, uid, uid);
	snprintf(rel, sizeof(rel), "proc/%d/smaps", pid);
	put(root, rel, smaps ? smaps : "");
	snprintf(rel, sizeof(rel), "proc/%d/maps", pid);
	put(root, rel, "");
}

/* A private anonymous mergeable VMA of 1 MiB, as smaps shows it. */
#define SMAPS_PRIVATE_MG                                                                     \
	"7f0000100000-7f0000200000 rw-p 00000000 00:00 0 \n"                                 \
	"Size:               1024 kB\nRss:                1024 kB\nAnonHugePages:         0 kB\n" \
	"VmFlags: rd wr mr mw me ac mg \n"


/* ------------------------------------------------------------ recorded tests */

static void test_recorded_all_ok_exit_0_and_fields(void **state)
{
	(void)state;
	char *root = good_tree();
	struct check_run cr;
	json_object *j = run_check(&cr, root, NULL, NULL);
	expect_exit(&cr, 0);
	json_object *arr, *sum, *x;
	assert_true(json_object_object_get_ex(j, "checks", &arr));
	assert_int_equal(json_object_array_length(arr), 12);
	int ok = 0, skip = 0;
	static const char *const keys[] = { "name", "status", "value", "reason", "fix", "source" };
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (!json_object_object_get_ex(o, keys[k], &x))
				fail_msg("check %zu lacks '%s'", i, keys[k]);
		const char *st = str_of(o, "status");
		assert_true(strcmp(st, "OK") == 0 || strcmp(st, "SKIP") == 0);
		ok += strcmp(st, "OK") == 0;
		skip += strcmp(st, "SKIP") == 0;
		/* nothing to fix: fix is null; every row says why and where the rule comes from */
		assert_true(json_object_object_get_ex(o, "fix", &x));
		assert_null(x);
		assert_true(strlen(str_of(o, "reason")) > 10);
		assert_true(strlen(str_of(o, "source")) > 10);
		assert_true(strlen(str_of(o, "value")) > 0);
	}
	/* no ksmd in the tree: its CPU cannot be judged */
	expect(j, "ksmd-cpu", "SKIP");
	expect_str(expect(j, "userfaultfd", "OK"), "value",
		   "user-mode only (vm.unprivileged_userfaultfd=0; not tried: recorded tree)");
	expect_str(expect(j, "swap-committed", "OK"), "value",
		   "Committed_AS 4.0 GiB, MemTotal 32.0 GiB + SwapTotal 8.0 GiB = 40.0 GiB");
	expect_str(expect(j, "numa-merge", "OK"), "value", "1 NUMA node, merge_across_nodes=1");
	assert_true(json_object_object_get_ex(j, "summary", &sum));
	assert_true(json_object_object_get_ex(sum, "ok", &x));
	assert_int_equal(json_object_get_int(x), ok);
	assert_true(json_object_object_get_ex(sum, "skip", &x));
	assert_int_equal(json_object_get_int(x), skip);
	assert_true(json_object_object_get_ex(sum, "warn", &x));
	assert_int_equal(json_object_get_int(x), 0);
	assert_true(json_object_object_get_ex(sum, "fail", &x));
	assert_int_equal(json_object_get_int(x), 0);
	check_run_free(&cr);

	/* The table says the same, with exit 0. */
	struct cmd_result r;
	run_samepage(&r, "--root", root, "check", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "STATUS"));
	assert_non_null(strstr(r.out, "swap-committed"));
	assert_null(strstr(r.out, "fix:"));
	assert_non_null(strstr(r.out, "0 WARN, 0 FAIL"));
	cmd_result_free(&r);
	drop_tree(root);
}

static void test_recorded_numa(void **state)
{
	(void)state;
	char *root = good_tree();
	put(root, "sys/devices/system/node/node1/cpumap", "c\n");
	struct check_run cr;
	json_object *j = run_check(&cr, root, "numa-merge", NULL);
	json_object *o = expect(j, "numa-merge", "WARN");
	expect_str(o, "value", "2 NUMA nodes, merge_across_nodes=1");
	expect_str(o, "fix", "samepage set --unmerge-first merge_across_nodes=0");
	expect_exit(&cr, 1);
	check_run_free(&cr);

	/* The table shows the fix. */
	struct cmd_result r;
	run_samepage(&r, "--root", root, "check", "--only", "numa-merge", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.out, "fix: samepage set --unmerge-first merge_across_nodes=0"));
	cmd_result_free(&r);

	put_ksm(root, "merge_across_nodes", 0);
	j = run_check(&cr, root, "numa-merge", NULL);
	expect_str(expect(j, "numa-merge", "OK"), "value", "2 NUMA nodes, merge_across_nodes=0");
	expect_exit(&cr, 0);
	check_run_free(&cr);
	drop_tree(root);
}

static void test_recorded_swap(void **state)
{
	(void)state;
	char *root = good_tree();
	/* 16 GiB, no swap, 20 GiB committed, while KSM saves memory: the seeds' case */
	put_meminfo(root, 16LL << 20, 0, 20LL << 20);
	struct check_run cr;
	json_object *j = run_check(&cr, root, "swap-committed", NULL);
	json_object *o = expect(j, "swap-committed", "FAIL");
	expect_str(o, "value", "Committed_AS 20.0 GiB, MemTotal 16.0 GiB + SwapTotal 0 B = 16.0 GiB");
	expect_has(o, "reason", "exceeds RAM + swap by 4.0 GiB while KSM saves 3.5 MiB");
	expect_str(o, "fix", "fallocate -l 4G /swapfile && chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile");
	expect_exit(&cr, 2);
	check_run_free(&cr);

	/* nothing merged: still short, a warning */
	put_ksm(root, "pages_sharing", 0);
	j = run_check(&cr, root, "swap-committed", NULL);
	expect_has(expect(j, "swap-committed", "WARN"), "reason", "by 4.0 GiB");
	expect_exit(&cr, 1);
	check_run_free(&cr);

	/* 4.5 GiB of swap: it fits */
	put_ksm(root, "pages_sharing", 900);
	put_meminfo(root, 16LL << 20, 4718592, 20LL << 20);
	j = run_check(&cr, root, "swap-committed", NULL);
	expect_str(expect(j, "swap-committed", "OK"), "value",
		   "Committed_AS 20.0 GiB, MemTotal 16.0 GiB + SwapTotal 4.5 GiB = 20.5 GiB");
	expect_exit(&cr, 0);
	check_run_free(&cr);
	drop_tree(root);
}

/* ksmd as /proc shows it: utime+stime in ticks, started 10 s after boot. */
static void put_ksmd(const char *root, long long ticks)
{
	long hz = sysconf(_SC_CLK_TCK);
	put(root, "proc/77/comm", "ksmd\n");
	putf(root, "proc/77/stat",
	     "77 (ksmd) S 2 0 0 0 -1 2129984 0 0 0 0 %lld %lld 0 0 25 5 1 0 %ld 0 0 18446744073709551615\n",
	     ticks / 2, ticks - ticks / 2, 10 * hz);
}

static void test_recorded_ksmd_cpu(void **state)
{
	(void)state;
	char *root = good_tree();
	long hz = sysconf(_SC_CLK_TCK);
	/* 495 s of CPU in 990 s: 50% for 100 MiB, 200 MiB per CPU */
	put_ksmd(root, 495 * hz);
	put_ksm(root, "general_profit", 100LL << 20);
	struct check_run cr;
	json_object *j = run_check(&cr, root, "ksmd-cpu", NULL);
	json_object *o = expect(j, "ksmd-cpu", "WARN");
	expect_str(o, "value", "ksmd 50.0% of a CPU on average since it started, profit 100.0 MiB: 200.0 MiB per CPU");
	/* 100 MiB is worth 2.44% of a CPU: 1250 x 2.44 / 50 */
	expect_str(o, "fix", "samepage set pages_to_scan=61");
	expect_exit(&cr, 1);
	check_run_free(&cr);

	/* saving nothing: unmerge, which also frees the rmap items */
	put_ksm(root, "general_profit", -4096);
	j = run_check(&cr, root, "ksmd-cpu", NULL);
	expect_str(expect(j, "ksmd-cpu", "WARN"), "fix", "samepage unmerge");
	check_run_free(&cr);

	/* before two full scans the savings are not settled */
	put_ksm(root, "full_scans", 1);
	j = run_check(&cr, root, "ksmd-cpu", NULL);
	expect_has(expect(j, "ksmd-cpu", "SKIP"), "reason", "two");
	expect_exit(&cr, 0);
	check_run_free(&cr);

	/* 20 GiB saved for 50%: worth it */
	put_ksm(root, "full_scans", 12);
	put_ksm(root, "general_profit", 20LL << 30);
	j = run_check(&cr, root, "ksmd-cpu", NULL);
	expect_str(expect(j, "ksmd-cpu", "OK"), "value",
		   "ksmd 50.0% of a CPU on average since it started, profit 20.0 GiB: 40.0 GiB per CPU");
	check_run_free(&cr);

	/* stopped: no cost */
	put_ksm(root, "run", 0);
	j = run_check(&cr, root, "ksmd-cpu", NULL);
	expect_has(expect(j, "ksmd-cpu", "SKIP"), "reason", "not running");
	check_run_free(&cr);
	drop_tree(root);
}

static void test_recorded_processes(void **state)
{
	(void)state;
	char *root = good_tree();
	/* two users merged together; 801 keeps 10000 rmap items for 10 merged pages */
	put_proc(root, 501, "worker", 0, 2000, 1000, "no", "yes", SMAPS_PRIVATE_MG);
	put_proc(root, 502, "tenant", 1000, 1000, 500, "no", "yes", SMAPS_PRIVATE_MG);
	put_proc(root, 801, "cache", 0, 10000, 10, "no", "yes", SMAPS_PRIVATE_MG);
	/* a guest on hugetlbfs: madvise(MADV_MERGEABLE) succeeded and did nothing */
	put_proc(root, 601, "qemu-system-x86", 107, 0, 0, "no", "yes",
		 SMAPS_PRIVATE_MG "7f0040000000-7f0080000000 rw-s 00000000 00:10 1234 /anon_hugepage (deleted)\n"
				  "Size:            1048576 kB\nVmFlags: rd wr sh mr mw me ms de ht \n");
	/* merge_any over 8 MiB of shared memory, plus a small shm that does not matter */
	put_proc(root, 602, "postgres", 108, 0, 0, "yes", "yes",
		 SMAPS_PRIVATE_MG "7f1000000000-7f1000800000 rw-s 00000000 00:01 99 /dev/zero (deleted)\n"
				  "Size:               8192 kB\nVmFlags: rd wr sh mr mw me ms \n"
				  "7f2000000000-7f2000001000 rw-s 00000000 00:01 98 /dev/shm/x\n"
				  "Size:                  4 kB\nVmFlags: rd wr sh mr mw me ms \n");
	struct check_run cr;
	json_object *j = run_check(&cr, root, NULL, NULL);
	json_object *o = expect(j, "cross-user", "WARN");
	expect_str(o, "value", "2 users merged: uid 0 (2 processes), uid 1000 (1 process)");
	o = expect(j, "rmap-ratio", "WARN");
	expect_str(o, "value", "pid 801 (cache): 10000 rmap items, 10 merged pages (1000)");
	expect_has(o, "reason", "1 processes (pid 801) keep more than 64 rmap items");
	expect_has(o, "fix", "pid 801");
	o = expect(j, "unmergeable-memory", "WARN");
	expect_str(o, "value", "pid 601 (qemu-system-x86): 0 B shared, 1.0 GiB hugetlb, and more");
	expect_has(o, "reason", "2 processes asked for merging");
	expect_exit(&cr, 1);
	check_run_free(&cr);
	drop_tree(root);
}

static void test_recorded_one_user_and_shared(void **state)
{
	(void)state;
	char *root = good_tree();
	put_proc(root, 501, "worker", 0, 2000, 1000, "no", "yes", SMAPS_PRIVATE_MG);
	put_proc(root, 502, "worker", 0, 1000, 500, "no", "yes", SMAPS_PRIVATE_MG);
	/* shared memory in a madvise (not merge_any) process: it never asked for that */
	put_proc(root, 503, "chrome", 0, 0, 0, "no", "yes",
		 SMAPS_PRIVATE_MG "7f1000000000-7f1000800000 rw-s 00000000 00:01 99 /dev/zero (deleted)\n"
				  "Size:               8192 kB\nVmFlags: rd wr sh mr mw me ms \n");
	struct check_run cr;
	json_object *j = run_check(&cr, root, "cross-user,rmap-ratio,unmergeable-memory", NULL);
	expect_str(expect(j, "cross-user", "OK"), "value", "uid 0 (2 processes)");
	expect_str(expect(j, "rmap-ratio", "OK"), "value", "2 processes with rmap items, none above 64");
	expect_str(expect(j, "unmergeable-memory", "OK"), "value", "none");
	expect_exit(&cr, 0);
	check_run_free(&cr);
	drop_tree(root);
}

static void test_recorded_thp(void **state)
{
	(void)state;
	char *root = good_tree();
	put(root, "sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n");
	struct check_run cr;
	json_object *j = run_check(&cr, root, "thp", NULL);
	json_object *o = expect(j, "thp", "WARN");
	expect_str(o, "value", "enabled=always, max_ptes_none=511, 0 B of mergeable memory in huge pages");
	expect_str(o, "fix", "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
	check_run_free(&cr);

	/* madvise, but a process put its mergeable memory in huge pages (MADV_HUGEPAGE) */
	put(root, "sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n");
	put_proc(root, 901, "qemu-kvm", 107, 0, 0, "no", "yes",
		 "7f0000000000-7f0040000000 rw-p 00000000 00:00 0 \nSize:            1048576 kB\n"
		 "AnonHugePages:     65536 kB\nVmFlags: rd wr mr mw me ac hg mg \n");
	put_proc(root, 902, "qemu-kvm", 107, 0, 0, "no", "yes",
		 "7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \nSize:               4096 kB\n"
		 "AnonHugePages:      2048 kB\nVmFlags: rd wr mr mw me ac hg mg \n");
	j = run_check(&cr, root, "thp", NULL);
	o = expect(j, "thp", "WARN");
	expect_str(o, "value", "enabled=madvise, max_ptes_none=511, 66.0 MiB of mergeable memory in huge pages");
	expect_has(o, "reason", "(most in pid 901)");
	check_run_free(&cr);

	/* KSM stopped: THP does not get in its way */
	put_ksm(root, "run", 0);
	j = run_check(&cr, root, "thp", NULL);
	expect(j, "thp", "OK");
	check_run_free(&cr);
	drop_tree(root);
}

static void test_recorded_max_map_count(void **state)
{
	(void)state;
	char *root = good_tree();
	/* 60000 mappings of 65530: inside the engine's reserve of 8191 */
	size_t n = 60000, len = n * 8 + 1;
	char *maps = malloc(len), *w = maps;
	for (size_t i = 0; i < n; i++)
		w += sprintf(w, "%06zx-\n", i);
	put_proc(root, 701, "bigmaps", 0, 0, 0, "no", "no", NULL);
	put(root, "proc/701/maps", maps);
	free(maps);
	struct check_run cr;
	json_object *j = run_check(&cr, root, "max-map-count", NULL);
	json_object *o = expect(j, "max-map-count", "FAIL");
	expect_str(o, "value", "vm.max_map_count=65530, largest: pid 701 (bigmaps) with 60000 mappings");
	expect_str(o, "fix", "sysctl -w vm.max_map_count=120000");
	expect_exit(&cr, 2);
	check_run_free(&cr);

	/* only lowered below the default: a warning */
	put(root, "proc/701/maps", "1-2\n");
	put(root, "proc/sys/vm/max_map_count", "30000\n");
	j = run_check(&cr, root, "max-map-count", NULL);
	o = expect(j, "max-map-count", "WARN");
	expect_str(o, "value", "vm.max_map_count=30000, largest: pid 701 (bigmaps) with 1 mappings");
	expect_str(o, "fix", "sysctl -w vm.max_map_count=65530");
	expect_exit(&cr, 1);
	check_run_free(&cr);
	drop_tree(root);
}

static void test_recorded_kernel_without_ksm(void **state)
{
	(void)state;
	char *root = good_tree();
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/sys/kernel/mm/ksm", root);
	remove_tree(dir);
	remove(dir);
	/* and a kernel without the userfaultfd sysctl */
	snprintf(dir, sizeof(dir), "%s/proc/sys/vm/unprivileged_userfaultfd", root);
	remove(dir);
	struct check_run cr;
	json_object *j = run_check(&cr, root, NULL, NULL);
	json_object *o = expect(j, "ksm-available", "FAIL");
	expect_has(o, "value", "/sys/kernel/mm/ksm absent");
	expect_has(o, "fix", "CONFIG_KSM=y");
	static const char *const ksm_rows[] = { "ksm-running", "scan-defaults", "ksmd-cpu", "rmap-ratio",
						"numa-merge", "thp", "unmergeable-memory", "cross-user" };
	for (size_t i = 0; i < sizeof(ksm_rows) / sizeof(ksm_rows[0]); i++)
		expect_has(expect(j, ksm_rows[i], "SKIP"), "reason", "no KSM");
	expect(j, "swap-committed", "OK");
	expect(j, "userfaultfd", "SKIP");
	expect_exit(&cr, 2);
	check_run_free(&cr);
	drop_tree(root);
}

static void test_usage_errors(void **state)
{
	(void)state;
	static const char *const bad[][3] = {
		{ "--only", "nosuch", NULL }, { "--interval", "-1", NULL }, { "--interval", "5x", NULL },
		{ "--bogus", NULL, NULL }, { "extra", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[] = { "samepage", "check", bad[i][0], bad[i][1], NULL };
		struct cmd_result r;
		run_cmd(argv, NULL, -1, &r);
		if (r.status != 2 || r.out[0] || !r.err[0])
			fail_msg("check %s %s: exit %d, stdout '%s', stderr '%s'", bad[i][0], bad[i][1] ? bad[i][1] : "",
				 r.status, r.out, r.err);
		cmd_result_free(&r);
	}
	struct cmd_result r;
	run_samepage(&r, "check", "--only", "nosuch", NULL);
	assert_non_null(strstr(r.err, "unknown check 'nosuch'"));
	assert_non_null(strstr(r.err, "max-map-count"));  /* the list of checks follows */
	cmd_result_free(&r);
	run_samepage(&r, "check", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "Usage: samepage check"));
	cmd_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recorded_all_ok_exit_0_and_fields),
		cmocka_unit_test(test_recorded_numa),
		cmocka_unit_test(test_recorded_swap),
		cmocka_unit_test(test_recorded_ksmd_cpu),
		cmocka_unit_test(test_recorded_processes),
		cmocka_unit_test(test_recorded_one_user_and_shared),
		cmocka_unit_test(test_recorded_thp),
		cmocka_unit_test(test_recorded_max_map_count),
		cmocka_unit_test(test_recorded_kernel_without_ksm),
		cmocka_unit_test(test_usage_errors),
	};
	return cmocka_run_group_tests_name("check_recorded", tests, NULL, NULL);
}
