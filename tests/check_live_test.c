/* SPDX-License-Identifier: MIT */
/*
 * Description: `samepage check` on this host, put for real into each state
 * that can be made here and restored afterwards: KSM stopped under a
 * registered process, the demonstration scan rate, a process whose rmap
 * items outweigh its merges, processes of two users merged together,
 * merge_any over shared memory, THP "always", a process near
 * vm.max_map_count, vm.max_map_count lowered, vm.unprivileged_userfaultfd
 * and userfaultfd blocked by seccomp, ksmd's CPU measured. Holds the KSM
 * lock and restores every knob; sysctls, THP and child processes are put
 * back by each test's teardown, whatever happened.
 */
#include "check_util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

#define THP_ENABLED "/sys/kernel/mm/transparent_hugepage/enabled"
#define MAX_MAP_COUNT "/proc/sys/vm/max_map_count"
#define UNPRIV_UFFD "/proc/sys/vm/unprivileged_userfaultfd"

/* ------------------------------------------------------------ live helpers */

enum kid_kind { KID_DUP, KID_UNIQUE, KID_SHARED_ANY, KID_MANY_VMAS };

struct kid {
	pid_t pid;
	int to_child;
};

static struct kid kids[4];

/* A child holding `pages` pages of the given kind, as uid (or -1). Returns
 * 'y' when ready, 's' when the kernel lacks what it needs. */
static char kid_start(struct kid *k, enum kid_kind kind, size_t pages, int uid)
{
	int to_child[2], ready[2];
	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(to_child[1]);
		close(ready[0]);
		char ok = 'y';
		if (uid >= 0 && (setgroups(0, NULL) || setgid((gid_t)uid) || setuid((uid_t)uid)))
			_exit(1);
		long ps = sysconf(_SC_PAGESIZE);
		size_t len = pages * (size_t)ps;
		unsigned char *m;
		switch (kind) {
		case KID_DUP:
		case KID_UNIQUE:
			m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (m == MAP_FAILED)
				_exit(1);
			for (size_t i = 0; i < pages; i++) {
				unsigned char *p = m + i * (size_t)ps;
				memset(p, kind == KID_DUP ? (int)(1 + i % 8) : 0x5a, (size_t)ps);
				if (kind == KID_UNIQUE)
					memcpy(p, &i, sizeof(i));
			}
			if (madvise(m, len, MADV_MERGEABLE))
				ok = 'n';
			break;
		case KID_SHARED_ANY:
			if (prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)) {
				ok = errno == EINVAL ? 's' : 'n';
				break;
			}
			m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
			if (m == MAP_FAILED)
				_exit(1);
			/* the kernel accepts it, and nothing will merge there */
			if (madvise(m, len, MADV_MERGEABLE))
				ok = 'n';
			memset(m, 7, (size_t)ps);
			break;
		case KID_MANY_VMAS:
			/* every other page read-only: one VMA per page */
			m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (m == MAP_FAILED)
				_exit(1);
			for (size_t i = 1; i < pages; i += 2)
				if (mprotect(m + i * (size_t)ps, (size_t)ps, PROT_READ))
					ok = 'n';
			break;
		}
		if (write(ready[1], &ok, 1) != 1)
			_exit(1);
		char b;
		_exit(read(to_child[0], &b, 1) == 1 ? 0 : 2);
	}
	close(to_child[0]);
	close(ready[1]);
	char ok = 0;
	assert_int_equal(read(ready[0], &ok, 1), 1);
	close(ready[0]);
	k->pid = pid;
	k->to_child = to_child[1];
	return ok;
}

static void kid_stop(struct kid *k)
{
	if (k->pid <= 0)
		return;
	char b = 'x';
	if (write(k->to_child, &b, 1) != 1)
		kill(k->pid, SIGKILL);
	close(k->to_child);
	waitpid(k->pid, NULL, 0);
	k->pid = 0;
}

static int64_t proc_ksm(pid_t pid, const char *key)
{
	char path[64], k[64];
	snprintf(path, sizeof(path), "/proc/%d/ksm_stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long long v;
	int64_t found = -1;
	while (fscanf(f, "%63s %lld", k, &v) == 2)
		if (strcmp(k, key) == 0)
			found = v;
	fclose(f);
	return found;
}

/* Wait on ksmd's passes (bounded) until the process's key reaches want. */
static bool wait_proc(pid_t pid, const char *key, int64_t want)
{
	for (int i = 0; i < 60; i++) {
		if (proc_ksm(pid, key) >= want)
			return true;
		if (!ksm_wait_scans(1, 15))
			return false;
	}
	return proc_ksm(pid, key) >= want;
}

/* The child's name as the kernel shows it (ours, cut to 15 characters). */
static const char *kid_comm(pid_t pid)
{
	static char comm[32];
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = 0;
	fclose(f);
	comm[strcspn(comm, "\n")] = 0;
	return comm;
}

static int read_int(const char *path)
{
	FILE *f = fopen(path, "r");
	int v = -1;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	return n < 0 ? -e : 0;
}

/* Host settings a test changed, put back by the teardown whatever happened. */
static char saved_thp[64];
static int saved_map_count = -1, saved_unpriv = -1;

static void write_int(const char *path, int v)
{
	char t[32];
	snprintf(t, sizeof(t), "%d", v);
	if (write_text(path, t))
		fail_msg("cannot write %s=%d", path, v);
}

static int restore_host(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		kid_stop(&kids[i]);
	if (saved_map_count > 0) {
		write_int(MAX_MAP_COUNT, saved_map_count);
		saved_map_count = -1;
	}
	if (saved_unpriv >= 0) {
		write_int(UNPRIV_UFFD, saved_unpriv);
		saved_unpriv = -1;
	}
	if (saved_thp[0]) {
		if (write_text(THP_ENABLED, saved_thp))
			fail_msg("cannot restore %s=%s", THP_ENABLED, saved_thp);
		saved_thp[0] = 0;
	}
	return 0;
}

static void set_knob(const char *name, const char *value)
{
	int r = ksm_write(name, value);
	if (r)
		fail_msg("writing %s=%s: %s", name, value, strerror(-r));
}

static bool has_knob(const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), KSM_DIR "/%s", name);
	return access(path, F_OK) == 0;
}

/* ------------------------------------------------------------ live tests */

static void test_live_run_state(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	assert_int_equal(kid_start(&kids[0], KID_DUP, 256, -1), 'y');
	set_knob("run", "0");
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "ksm-running", NULL);
	json_object *o = expect(j, "ksm-running", "WARN");
	expect_has(o, "value", "run=0");
	expect_str(o, "fix", "samepage start");
	expect_exit(&cr, 1);
	check_run_free(&cr);

	set_knob("run", "1");
	j = run_check(&cr, NULL, "ksm-running", NULL);
	expect_str(expect(j, "ksm-running", "OK"), "value", "run=1");
	expect_exit(&cr, 0);
	check_run_free(&cr);
}

static void test_live_scan_defaults(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	long long mem_kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "MemTotal: %lld kB", &mem_kb), 1);
	fclose(f);
	if (mem_kb < (16LL << 20))
		SKIP_BECAUSE("the demonstration-defaults rule is for hosts of 16 GiB or more; this one has %lld MiB",
			     mem_kb >> 10);
	if (has_knob("advisor_mode"))
		set_knob("advisor_mode", "none");
	set_knob("pages_to_scan", "100");
	set_knob("sleep_millisecs", "20");
	set_knob("run", "1");
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "scan-defaults", NULL);
	json_object *o = expect(j, "scan-defaults", "WARN");
	expect_has(o, "value", "pages_to_scan=100 sleep_millisecs=20, MemTotal ");
	expect_has(o, "reason", "demonstration");
	/* ksmtuned's fastest: 1250 pages, 10 ms (its floor on hosts of 16 GiB and more) */
	expect_str(o, "fix", "samepage set pages_to_scan=1250 sleep_millisecs=10");
	expect_exit(&cr, 1);
	check_run_free(&cr);

	/* the fix, applied, clears it */
	set_knob("pages_to_scan", "1250");
	set_knob("sleep_millisecs", "10");
	j = run_check(&cr, NULL, "scan-defaults", NULL);
	expect_has(expect(j, "scan-defaults", "OK"), "reason", "tuned");
	check_run_free(&cr);

	/* defaults, but ksmd stopped: nothing to say */
	set_knob("pages_to_scan", "100");
	set_knob("sleep_millisecs", "20");
	set_knob("run", "0");
	j = run_check(&cr, NULL, "scan-defaults", NULL);
	expect_has(expect(j, "scan-defaults", "OK"), "reason", "not running");
	check_run_free(&cr);
}

static void test_live_rmap_ratio(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	/* 10000 unique pages: ksmd gives each an rmap item and merges none */
	size_t pages = 10000;
	assert_int_equal(kid_start(&kids[0], KID_UNIQUE, pages, -1), 'y');
	ksm_fast_scan();
	set_knob("run", "1");
	if (!wait_proc(kids[0].pid, "ksm_rmap_items", (int64_t)pages))
		fail_msg("ksmd gave the child %lld rmap items, expected %zu",
			 (long long)proc_ksm(kids[0].pid, "ksm_rmap_items"), pages);
	assert_int_equal(proc_ksm(kids[0].pid, "ksm_merging_pages"), 0);
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "rmap-ratio", NULL);
	json_object *o = expect(j, "rmap-ratio", "WARN");
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)kids[0].pid);
	/* named in the list of processes; the worst also in the value */
	expect_has(o, "reason", pid);
	if (strstr(str_of(o, "value"), pid))
		expect_has(o, "value", "10000 rmap items, 0 merged pages (no merged page)");
	expect_exit(&cr, 1);
	check_run_free(&cr);
}

static void test_live_cross_user(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	/* the same contents in a root process and a nobody process */
	assert_int_equal(kid_start(&kids[0], KID_DUP, 512, -1), 'y');
	assert_int_equal(kid_start(&kids[1], KID_DUP, 512, NOBODY_UID), 'y');
	ksm_fast_scan();
	set_knob("run", "1");
	assert_true(wait_proc(kids[0].pid, "ksm_merging_pages", 1));
	assert_true(wait_proc(kids[1].pid, "ksm_merging_pages", 1));
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "cross-user", NULL);
	json_object *o = expect(j, "cross-user", "WARN");
	expect_has(o, "value", "uid 0 (");
	expect_has(o, "value", "uid 65534 (1 process)");
	expect_has(o, "reason", "side channel");
	expect_has(o, "fix", "sp_engine(3)");
	expect_exit(&cr, 1);
	check_run_free(&cr);
}

static void test_live_merge_any_on_shared_memory(void **state)
{
	(void)state;
	REQUIRE_KSM(false);
	/* 256 MiB of shared memory, mapped but untouched, in a merge_any process */
	char ok = kid_start(&kids[0], KID_SHARED_ANY, 65536, -1);
	if (ok == 's')
		SKIP_BECAUSE("this kernel has no PR_SET_MEMORY_MERGE (Linux 6.4+)");
	assert_int_equal(ok, 'y');
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "unmergeable-memory", NULL);
	json_object *o = expect(j, "unmergeable-memory", "WARN");
	char want[96];
	snprintf(want, sizeof(want), "pid %d (%s): 256.0 MiB shared, 0 B hugetlb", (int)kids[0].pid,
		 kid_comm(kids[0].pid));
	expect_has(o, "value", want);
	expect_has(o, "reason", "prctl PR_SET_MEMORY_MERGE");
	expect_exit(&cr, 1);
	check_run_free(&cr);
	kid_stop(&kids[0]);

	j = run_check(&cr, NULL, "unmergeable-memory", NULL);
	o = find_check(j, "unmergeable-memory");
	assert_null(strstr(str_of(o, "value"), want));
	check_run_free(&cr);
}

static void test_live_thp(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	char mode[128] = "";
	FILE *f = fopen(THP_ENABLED, "r");
	if (!f)
		SKIP_BECAUSE("this kernel has no transparent huge pages (" THP_ENABLED " missing)");
	if (!fgets(mode, sizeof(mode), f))
		mode[0] = 0;
	fclose(f);
	char *b = strchr(mode, '['), *e = b ? strchr(b, ']') : NULL;
	assert_non_null(e);
	snprintf(saved_thp, sizeof(saved_thp), "%.*s", (int)(e - b - 1), b + 1);
	set_knob("run", "1");

	assert_int_equal(write_text(THP_ENABLED, "always"), 0);
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "thp", NULL);
	assert_int_equal(write_text(THP_ENABLED, "madvise"), 0);  /* as briefly as possible */
	json_object *o = expect(j, "thp", "WARN");
	expect_has(o, "value", "enabled=always");
	expect_has(o, "reason", "\"always\"");
	expect_str(o, "fix", "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled");
	check_run_free(&cr);

	j = run_check(&cr, NULL, "thp", NULL);
	o = find_check(j, "thp");
	expect_has(o, "value", "enabled=madvise");
	/* the verdict changed: only memory already in huge pages could still warn */
	if (strcmp(str_of(o, "status"), "OK") != 0)
		expect_has(o, "reason", "MADV_HUGEPAGE");
	check_run_free(&cr);
}

static void test_live_max_map_count(void **state)
{
	(void)state;
	if (!is_root())
		SKIP_BECAUSE("changing vm.max_map_count needs root");
	saved_map_count = read_int(MAX_MAP_COUNT);
	assert_true(saved_map_count > 0);
	/* One below the default: enough for the rule, harmless to everyone else. */
	write_int(MAX_MAP_COUNT, saved_map_count >= 65530 ? 65529 : saved_map_count - 1);
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "max-map-count", NULL);
	write_int(MAX_MAP_COUNT, saved_map_count);  /* before any assertion */
	saved_map_count = -1;
	json_object *o = find_check(j, "max-map-count");
	const char *st = str_of(o, "status");
	/* WARN for the lowered limit, or FAIL when a process is already near it */
	if (strcmp(st, "WARN") && strcmp(st, "FAIL"))
		fail_msg("max-map-count: %s (%s)", st, str_of(o, "value"));
	expect_has(o, "fix", "sysctl -w vm.max_map_count=");
	if (strcmp(st, "WARN") == 0)
		expect_has(o, "reason", "below the kernel's default");
	check_run_free(&cr);
}

static void test_live_process_near_map_limit(void **state)
{
	(void)state;
	int limit = read_int(MAX_MAP_COUNT);
	if (limit < 65530 || limit > 1000000)
		SKIP_BECAUSE("vm.max_map_count is %d; this test is made for the default 65530", limit);
	/* 60000 VMAs: 5530 free, inside the engine's reserve of limit/8 */
	assert_int_equal(kid_start(&kids[0], KID_MANY_VMAS, 60000, -1), 'y');
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "max-map-count", NULL);
	json_object *o = expect(j, "max-map-count", "FAIL");
	char want[64];
	snprintf(want, sizeof(want), "pid %d (%s) with ", (int)kids[0].pid, kid_comm(kids[0].pid));
	expect_has(o, "value", want);
	expect_has(o, "reason", "reserve");
	expect_exit(&cr, 2);
	check_run_free(&cr);
	kid_stop(&kids[0]);
}

/* Runs `samepage check --json --only userfaultfd` with userfaultfd(2)
 * refused by a seccomp filter, as a container's profile would. */
static int run_check_seccomp(struct cmd_result *res)
{
	int out[2];
	assert_int_equal(pipe(out), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		struct sock_filter f[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_userfaultfd, 0, 1),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
			_exit(125);
		const char *bin = build_path("bin/samepage");
		execl(bin, "samepage", "check", "--json", "--only", "userfaultfd", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	size_t cap = 65536, len = 0;
	res->out = malloc(cap);
	res->err = calloc(1, 1);
	ssize_t n;
	while ((n = read(out[0], res->out + len, cap - len - 1)) > 0)
		len += (size_t)n;
	res->out[len] = 0;
	close(out[0]);
	int st;
	waitpid(pid, &st, 0);
	res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return res->status;
}

static void test_live_userfaultfd(void **state)
{
	(void)state;
	if (!is_root())
		SKIP_BECAUSE("switching vm.unprivileged_userfaultfd needs root");
	if (access(UNPRIV_UFFD, F_OK))
		SKIP_BECAUSE("this kernel has no userfaultfd (" UNPRIV_UFFD " missing)");
	saved_unpriv = read_int(UNPRIV_UFFD);

	write_int(UNPRIV_UFFD, 0);
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "userfaultfd", NULL);
	json_object *o = expect(j, "userfaultfd", "OK");
	/* nobody may use it in user mode; kernel mode only through /dev/userfaultfd, if opened up */
	const char *v = str_of(o, "value");
	if (strstr(v, "not accessible") || strstr(v, "absent")) {
		expect_has(o, "value", "user-mode only for uid 65534 (vm.unprivileged_userfaultfd=0");
		expect_has(o, "reason", "EFAULT");
	}
	check_run_free(&cr);

	write_int(UNPRIV_UFFD, 1);
	j = run_check(&cr, NULL, "userfaultfd", NULL);
	write_int(UNPRIV_UFFD, saved_unpriv);
	saved_unpriv = -1;
	expect_has(expect(j, "userfaultfd", "OK"), "value",
		   "user and kernel mode for uid 65534 (vm.unprivileged_userfaultfd=1");
	expect_exit(&cr, 0);
	check_run_free(&cr);

	/* blocked by seccomp, as in many containers: the engine cannot run */
	struct check_run sc;
	run_check_seccomp(&sc.res);
	sc.json = json_tokener_parse(sc.res.out);
	if (!sc.json)
		fail_msg("exit %d, no JSON: %s", sc.res.status, sc.res.out);
	o = expect(sc.json, "userfaultfd", "FAIL");
	expect_has(o, "value", "Operation not permitted");
	expect_has(o, "fix", "seccomp");
	expect_exit(&sc, 2);
	check_run_free(&sc);
}

static void test_live_ksmd_cpu(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	ksm_fast_scan();
	set_knob("run", "1");
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, "ksmd-cpu", "200");
	json_object *o = find_check(j, "ksmd-cpu");
	/* measured over the interval, whatever the verdict */
	expect_has(o, "value", "of a CPU over 0.2");
	check_run_free(&cr);

	j = run_check(&cr, NULL, "ksmd-cpu", "0");
	expect_has(find_check(j, "ksmd-cpu"), "value", "on average since it started");
	check_run_free(&cr);

	set_knob("run", "0");
	j = run_check(&cr, NULL, "ksmd-cpu", "200");
	expect_has(expect(j, "ksmd-cpu", "SKIP"), "reason", "not running");
	check_run_free(&cr);
}

/* The whole table on this host: well formed, and the exit code is the worst status. */
static void test_live_whole_table(void **state)
{
	(void)state;
	REQUIRE_KSM(false);
	struct check_run cr;
	json_object *j = run_check(&cr, NULL, NULL, "100");
	json_object *arr;
	assert_true(json_object_object_get_ex(j, "checks", &arr));
	assert_int_equal(json_object_array_length(arr), 12);
	int worst = 0;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *c = json_object_array_get_idx(arr, i), *fix;
		const char *st = str_of(c, "status");
		int code = strcmp(st, "FAIL") == 0 ? 2 : strcmp(st, "WARN") == 0 ? 1 : 0;
		worst = code > worst ? code : worst;
		assert_true(json_object_object_get_ex(c, "fix", &fix));
		/* a warning or failure always says how to fix it */
		if (code)
			assert_non_null(fix);
	}
	expect_exit(&cr, worst);
	expect(j, "ksm-available", "OK");
	check_run_free(&cr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_live_run_state, restore_host),
		cmocka_unit_test_teardown(test_live_scan_defaults, restore_host),
		cmocka_unit_test_teardown(test_live_rmap_ratio, restore_host),
		cmocka_unit_test_teardown(test_live_cross_user, restore_host),
		cmocka_unit_test_teardown(test_live_merge_any_on_shared_memory, restore_host),
		cmocka_unit_test_teardown(test_live_thp, restore_host),
		cmocka_unit_test_teardown(test_live_max_map_count, restore_host),
		cmocka_unit_test_teardown(test_live_process_near_map_limit, restore_host),
		cmocka_unit_test_teardown(test_live_userfaultfd, restore_host),
		cmocka_unit_test_teardown(test_live_ksmd_cpu, restore_host),
		cmocka_unit_test(test_live_whole_table),
	};
	return cmocka_run_group_tests_name("check_live", tests, ksm_group_setup, ksm_group_teardown);
}
