/* SPDX-License-Identifier: MIT */
/*
 * Description: `samepage estimate` against real child processes whose
 * memory is known page by page: the exact numbers of saved pages within
 * and between processes, zero pages, resident and skipped pages; pages
 * rewritten between the two samples counted as changing; estimate
 * changes nothing (untouched pages stay untouched); --all-private counts
 * only the copied-on-write pages of a private file mapping; --uid,
 * --min-kb, --all; bad input and unreadable processes (as nobody) give a
 * clear error and exit 2; every JSON key is in samepage(8). estimate
 * changes nothing in the kernel, so no lock is taken.
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Every child maps its known memory here, so one --range covers them all
 * and nothing else of theirs (stack, heap, libraries) is counted. Above
 * where PIE programs load, and program memory under ASan and TSan too. */
#define REGION 0x567000000000ul
#define REGION_PAGES 200

static char RANGE[64];   /* REGION-(REGION + REGION_PAGES pages), for --range */

enum kind { PAT, PAIRS, UNIQUE, ZERO, READ, END };

/* Pages [first, first + count) hold: PAT one content `tag`; PAIRS contents
 * tag, tag, tag+1, tag+1, ...; UNIQUE tag, tag+1, ...; ZERO zero bytes
 * (written, so resident); READ only read (the shared zero page). */
struct seg {
	enum kind kind;
	int first, count;
	unsigned tag;
};

struct kid {
	pid_t pid;
	int to, from;
};

static long ps;
static uint64_t salt;
static struct kid kids[4];

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ull;
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	return x ^ (x >> 32);
}

static void fill_page(unsigned char *p, unsigned tag)
{
	uint64_t *w = (uint64_t *)p;
	for (size_t i = 0; i < (size_t)ps / 8; i++)
		w[i] = mix(salt ^ ((uint64_t)tag << 20) ^ i);
}

static void apply(unsigned char *m, const struct seg *s)
{
	for (; s && s->kind != END; s++)
		for (int i = 0; i < s->count; i++) {
			unsigned char *p = m + (size_t)(s->first + i) * (size_t)ps;
			volatile unsigned char sink;
			switch (s->kind) {
			case PAT: fill_page(p, s->tag); break;
			case PAIRS: fill_page(p, s->tag + (unsigned)i / 2); break;
			case UNIQUE: fill_page(p, s->tag + (unsigned)i); break;
			case ZERO: memset(p, 0, (size_t)ps); break;
			case READ: sink = *p; (void)sink; break;
			case END: break;
			}
		}
}

/* A child holding `layout` at REGION, as uid (or -1); on 'r' it applies
 * `later` and answers 'd'; on 'x' or EOF it exits. With file_fd, REGION
 * is a private writable mapping of that file instead of anonymous. */
static void kid_start(struct kid *k, const struct seg *layout, const struct seg *later, int uid, int file_fd)
{
	int to[2], from[2];
	assert_int_equal(pipe2(to, O_CLOEXEC), 0);
	assert_int_equal(pipe2(from, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (uid >= 0 && (setgroups(0, NULL) || setgid((gid_t)uid) || setuid((uid_t)uid)))
			_exit(1);
		prctl(PR_SET_DUMPABLE, 1);  /* setuid cleared it: let its own user read it */
		int flags = MAP_PRIVATE | MAP_FIXED_NOREPLACE | (file_fd < 0 ? MAP_ANONYMOUS : 0);
		unsigned char *m = mmap((void *)REGION, REGION_PAGES * (size_t)ps, PROT_READ | PROT_WRITE, flags,
					file_fd, 0);
		if (m != (void *)REGION)
			_exit(2);
		madvise(m, REGION_PAGES * (size_t)ps, MADV_NOHUGEPAGE);
		apply(m, layout);
		char c = 'y';
		if (write(from[1], &c, 1) != 1)
			_exit(1);
		while (read(to[0], &c, 1) == 1 && c == 'r') {
			apply(m, later);
			if (write(from[1], "d", 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	close(to[0]);
	close(from[1]);
	k->pid = pid;
	k->to = to[1];
	k->from = from[0];
	char c = 0;
	if (read(k->from, &c, 1) != 1 || c != 'y')
		fail_msg("child %d did not start (a mapping at %#lx failed?)", (int)pid, REGION);
}

static void kid_stop(struct kid *k)
{
	if (k->pid <= 0)
		return;
	if (write(k->to, "x", 1) != 1)
		kill(k->pid, SIGKILL);
	close(k->to);
	close(k->from);
	waitpid(k->pid, NULL, 0);
	k->pid = 0;
}

static int stop_kids(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		kid_stop(&kids[i]);
	return 0;
}

/* ------------------------------------------------------------ reading results */

static json_object *parse(const struct cmd_result *r)
{
	json_object *j = json_tokener_parse(r->out);
	if (!j)
		fail_msg("estimate printed no JSON (exit %d): %s%s", r->status, r->out, r->err);
	return j;
}

static json_object *get(json_object *o, const char *key)
{
	json_object *x;
	if (!json_object_object_get_ex(o, key, &x))
		fail_msg("no key %s in %s", key, json_object_to_json_string(o));
	return x;
}

static int64_t num(json_object *o, const char *key)
{
	json_object *x = get(o, key);
	if (!x)
		fail_msg("%s is null", key);
	return json_object_get_int64(x);
}

static json_object *proc_of(json_object *j, pid_t pid)
{
	json_object *arr = get(j, "processes");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		if (num(e, "pid") == pid)
			return e;
	}
	fail_msg("pid %d is not listed: %s", (int)pid, json_object_to_json_string(j));
	return NULL;
}

struct want {
	int64_t pages, zero, within, between, stable, stable_zero;  /* stable < 0: null */
};

static void expect_counts(json_object *o, const struct want *w, const char *what)
{
	int64_t saved = w->within + w->between;
	struct { const char *key; int64_t v; } f[] = {
		{ "pages", w->pages }, { "bytes", w->pages * ps }, { "zero_pages", w->zero },
		{ "zero_bytes", w->zero * ps }, { "saved_pages", saved }, { "saved_bytes", saved * ps },
		{ "saved_within_pages", w->within }, { "saved_between_pages", w->between },
		{ "unreadable_pages", 0 },
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (num(o, f[i].key) != f[i].v)
			fail_msg("%s: %s is %lld, expected %lld", what, f[i].key, (long long)num(o, f[i].key),
				 (long long)f[i].v);
	if (w->stable < 0) {
		assert_null(get(o, "stable_saved_pages"));
		assert_null(get(o, "changing_saved_pages"));
		assert_null(get(o, "stable_zero_pages"));
		return;
	}
	if (num(o, "stable_saved_pages") != w->stable || num(o, "changing_saved_pages") != saved - w->stable ||
	    num(o, "stable_zero_pages") != w->stable_zero)
		fail_msg("%s: stable %lld changing %lld stable zero %lld, expected %lld %lld %lld", what,
			 (long long)num(o, "stable_saved_pages"), (long long)num(o, "changing_saved_pages"),
			 (long long)num(o, "stable_zero_pages"), (long long)w->stable,
			 (long long)(saved - w->stable), (long long)w->stable_zero);
}

static void pid_text(pid_t pid, char *buf)
{
	sprintf(buf, "%d", (int)pid);
}

/* ------------------------------------------------------------ the tests */

/* A: 100 x X, 50 zero, 30 unique, 10 only read, 10 untouched.
 * B: 100 x X, 20 contents twice each, 10 of A's unique contents, 20 zero. */
static const struct seg layout_a[] = {
	{ PAT, 0, 100, 1 }, { ZERO, 100, 50, 0 }, { UNIQUE, 150, 30, 1000 }, { READ, 180, 10, 0 }, { END, 0, 0, 0 },
};
static const struct seg layout_b[] = {
	{ PAT, 0, 100, 1 }, { PAIRS, 100, 40, 2000 }, { UNIQUE, 140, 10, 1000 }, { ZERO, 150, 20, 0 },
	{ END, 0, 0, 0 },
};

static void test_exact_numbers(void **state)
{
	(void)state;
	kid_start(&kids[0], layout_a, NULL, -1, -1);
	kid_start(&kids[1], layout_b, NULL, -1, -1);
	char pa[16], pb[16];
	pid_text(kids[0].pid, pa);
	pid_text(kids[1].pid, pb);
	struct cmd_result r;
	run_samepage(&r, "estimate", "--json", "--interval", "0.2", "--range", RANGE, pb, pa, NULL);
	assert_int_equal(r.status, 0);
	json_object *j = parse(&r);
	/* X: 200 copies, 199 saved: 99 + 99 within, 1 between. The pairs: 20
	 * within B. A's first 10 unique contents, also in B: 10 between. The
	 * between savings go to whichever process is read second (higher PID). */
	bool a_first = kids[0].pid < kids[1].pid;
	struct want wa = { 180, 50, 99, a_first ? 0 : 11, 99 + (a_first ? 0 : 11), 50 };
	struct want wb = { 170, 20, 119, a_first ? 11 : 0, 119 + (a_first ? 11 : 0), 20 };
	expect_counts(proc_of(j, kids[0].pid), &wa, "process A");
	expect_counts(proc_of(j, kids[1].pid), &wb, "process B");
	json_object *t = get(j, "total");
	struct want wt = { 350, 70, 218, 11, 229, 70 };
	expect_counts(t, &wt, "total");
	assert_int_equal(num(t, "processes"), 2);
	assert_int_equal(num(t, "distinct_pages"), 1 + 20 + 30);
	assert_int_equal(num(t, "mappings"), 2);
	assert_int_equal(num(t, "mapped_pages"), 2 * REGION_PAGES);
	assert_int_equal(num(proc_of(j, kids[0].pid), "mapped_pages"), REGION_PAGES);
	assert_int_equal(num(j, "samples"), 2);
	assert_int_equal(num(j, "page_size"), ps);
	assert_int_equal(json_object_array_length(get(j, "errors")), 0);
	json_object *scan = get(j, "scan");
	assert_int_equal(num(scan, "pages_read"), 2 * 350);
	assert_true(num(scan, "pages_per_second") > 0);
	assert_true(num(scan, "table_bytes") > 0);
	/* sorted by saving: B (139 + 11 or 0) against A (149 + 0 or 11) */
	json_object *first = json_object_array_get_idx(get(j, "processes"), 0);
	int64_t sa = 99 + 50 + wa.between, sb = 119 + 20 + wb.between;
	assert_int_equal(num(first, "pid"), sa > sb || (sa == sb && a_first) ? kids[0].pid : kids[1].pid);
	json_object_put(j);
	cmd_result_free(&r);

	/* One sample: the same counts, stability unknown (null). */
	run_samepage(&r, "estimate", "--json", "--interval", "0", "--range", RANGE, pa, pb, NULL);
	assert_int_equal(r.status, 0);
	j = parse(&r);
	wt.stable = -1;
	expect_counts(get(j, "total"), &wt, "total, one sample");
	assert_int_equal(num(j, "samples"), 1);
	json_object_put(j);
	cmd_result_free(&r);

	/* The table for people: both processes, human units, the split. */
	run_samepage(&r, "estimate", "--interval", "0", "--range", RANGE, pa, pb, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, pa));
	assert_non_null(strstr(r.out, pb));
	assert_non_null(strstr(r.out, "TOTAL"));
	assert_non_null(strstr(r.out, "(229 pages of"));
	assert_non_null(strstr(r.out, "(70 pages)"));
	assert_non_null(strstr(r.out, "pages/s"));
	if (ps == 4096) {
		assert_non_null(strstr(r.out, "916.0 KiB"));
		assert_non_null(strstr(r.out, "872.0 KiB within processes, 44.0 KiB between processes"));
	}
	cmd_result_free(&r);
	stop_kids(NULL);
}

/* Resident pages of REGION in pid, from its pagemap. */
static int resident(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	uint64_t e[REGION_PAGES];
	assert_int_equal(pread(fd, e, sizeof(e), (off_t)(REGION / (uint64_t)ps * 8)), (ssize_t)sizeof(e));
	close(fd);
	int n = 0;
	for (int i = 0; i < REGION_PAGES; i++)
		n += (e[i] >> 63) & 1;
	return n;
}

static void test_changes_nothing(void **state)
{
	(void)state;
	kid_start(&kids[0], layout_a, NULL, -1, -1);
	/* 180 written + 10 read (mapped to the zero page); 10 never touched */
	int before = resident(kids[0].pid);
	assert_int_equal(before, 190);
	char pa[16];
	pid_text(kids[0].pid, pa);
	struct cmd_result r;
	run_samepage(&r, "estimate", "--json", "--interval", "0", pa, NULL);  /* the whole process */
	assert_int_equal(r.status, 0);
	json_object *j = parse(&r);
	json_object *p = proc_of(j, kids[0].pid);
	assert_true(num(p, "pages") >= 180);
	assert_true(num(p, "saved_within_pages") >= 99);
	assert_true(num(p, "zero_pages") >= 50);
	json_object_put(j);
	cmd_result_free(&r);
	assert_int_equal(resident(kids[0].pid), before);  /* nothing faulted in */
	stop_kids(NULL);
}

/* /proc/PID/syscall starts with the number of the call it sleeps in. */
static bool sleeping_between_samples(pid_t pid)
{
	char path[64], buf[64] = "";
	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	long nr = strtol(buf, NULL, 10);
	return nr == SYS_clock_nanosleep
#ifdef SYS_nanosleep
	       || nr == SYS_nanosleep
#endif
		;
}

/* S: 60 x P, 40 x Q, 10 zero; between the samples 20 of the Q pages
 * become R and 20 become P. Second sample: P 80 copies, 60 of them were
 * there before (59 stable savings, 20 changing); R 20 copies, new (19
 * changing); the zero pages stay (10 stable). */
static void test_stability(void **state)
{
	(void)state;
	static const struct seg layout[] = {
		{ PAT, 0, 60, 1 }, { PAT, 60, 40, 2 }, { ZERO, 100, 10, 0 }, { END, 0, 0, 0 },
	};
	static const struct seg later[] = { { PAT, 60, 20, 3 }, { PAT, 80, 20, 1 }, { END, 0, 0, 0 } };
	kid_start(&kids[0], layout, later, -1, -1);
	char pid[16], out[PATH_MAX];
	pid_text(kids[0].pid, pid);
	char *dir = make_tempdir();
	snprintf(out, sizeof(out), "%s/out.json", dir);
	/* run estimate in the background; rewrite while it waits between samples */
	pid_t est = fork();
	assert_true(est >= 0);
	if (est == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		execl(build_path("bin/samepage"), "samepage", "estimate", "--json", "--interval", "3", "--range", RANGE,
		      pid, (char *)NULL);
		_exit(127);
	}
	bool waited = false;
	for (int i = 0; i < 2900 && !(waited = sleeping_between_samples(est)); i++)
		usleep(1000);
	assert_true(waited);  /* the first sample is done */
	char c = 0;
	assert_int_equal(write(kids[0].to, "r", 1), 1);
	assert_int_equal(read(kids[0].from, &c, 1), 1);
	assert_int_equal(c, 'd');
	assert_true(sleeping_between_samples(est));  /* rewritten before the second sample */
	int st;
	assert_int_equal(waitpid(est, &st, 0), est);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	FILE *f = fopen(out, "r");
	assert_non_null(f);
	static char text[65536];
	text[fread(text, 1, sizeof(text) - 1, f)] = 0;
	fclose(f);
	json_object *j = json_tokener_parse(text);
	assert_non_null(j);
	struct want w = { 110, 10, 79 + 19, 0, 59, 10 };
	expect_counts(proc_of(j, kids[0].pid), &w, "rewritten process");
	expect_counts(get(j, "total"), &w, "total");
	assert_int_equal(num(get(j, "total"), "distinct_pages"), 2);  /* P and R; Q is gone */
	json_object_put(j);
	remove_tree(dir);
	free(dir);
	stop_kids(NULL);
}

/* A private writable mapping of a file: only its copied-on-write pages
 * are anonymous memory merging could share; the page cache is not. */
static void test_all_private(void **state)
{
	(void)state;
	char *dir = make_tempdir(), path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data", dir);
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	unsigned char *page = malloc((size_t)ps);
	fill_page(page, 77);
	for (int i = 0; i < REGION_PAGES; i++)
		assert_int_equal(write(fd, page, (size_t)ps), ps);
	free(page);
	/* 30 pages written (copies of the file's content 77 -> content 5), 20 only read */
	static const struct seg layout[] = { { PAT, 0, 30, 5 }, { READ, 30, 20, 0 }, { END, 0, 0, 0 } };
	kid_start(&kids[0], layout, NULL, -1, fd);
	close(fd);
	char pid[16];
	pid_text(kids[0].pid, pid);
	struct cmd_result r;
	run_samepage(&r, "estimate", "--json", "--interval", "0", "--all-private", "--range", RANGE, pid, NULL);
	assert_int_equal(r.status, 0);
	json_object *j = parse(&r);
	struct want w = { 30, 0, 29, 0, -1, 0 };
	expect_counts(proc_of(j, kids[0].pid), &w, "private file mapping");
	assert_string_equal(json_object_get_string(get(j, "scope")), "private-writable");
	json_object_put(j);
	cmd_result_free(&r);
	/* without --all-private the file mapping is not counted at all */
	run_samepage(&r, "estimate", "--json", "--interval", "0", "--range", RANGE, pid, NULL);
	assert_int_equal(r.status, 0);
	j = parse(&r);
	json_object *p = proc_of(j, kids[0].pid);
	assert_int_equal(num(p, "mappings"), 0);
	assert_int_equal(num(p, "pages"), 0);
	json_object_put(j);
	cmd_result_free(&r);
	stop_kids(NULL);
	remove_tree(dir);
	free(dir);
}

static const struct seg layout_n[] = { { PAT, 0, 30, 9 }, { ZERO, 30, 10, 0 }, { END, 0, 0, 0 } };

static void test_unreadable_as_nobody(void **state)
{
	(void)state;
	if (!is_root())
		SKIP_BECAUSE("making processes of two users (root and nobody) needs root");
	kid_start(&kids[0], layout_a, NULL, -1, -1);          /* root's */
	kid_start(&kids[1], layout_n, NULL, NOBODY_UID, -1);  /* nobody's */
	char proot[16], pnobody[16];
	pid_text(kids[0].pid, proot);
	pid_text(kids[1].pid, pnobody);
	const char *alone[] = { "samepage", "estimate", "--interval", "0", proot, NULL };
	struct cmd_result r;
	run_cmd(alone, NULL, NOBODY_UID, &r);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, proot));
	assert_non_null(strstr(r.err, "permission denied"));
	assert_non_null(strstr(r.err, "nothing could be read"));
	cmd_result_free(&r);

	const char *both[] = { "samepage", "estimate", "--json", "--interval", "0", "--range", RANGE,
			       proot, pnobody, NULL };
	run_cmd(both, NULL, NOBODY_UID, &r);
	assert_int_equal(r.status, 0);  /* one of them could be read */
	json_object *j = parse(&r);
	struct want w = { 40, 10, 29, 0, -1, 0 };
	expect_counts(proc_of(j, kids[1].pid), &w, "nobody's process");
	json_object *errs = get(j, "errors");
	assert_int_equal(json_object_array_length(errs), 1);
	json_object *e = json_object_array_get_idx(errs, 0);
	assert_int_equal(num(e, "pid"), kids[0].pid);
	assert_string_equal(json_object_get_string(get(e, "errno")), "EACCES");
	assert_non_null(strstr(json_object_get_string(get(e, "error")), "permission denied"));
	assert_non_null(strstr(r.err, "permission denied"));
	json_object_put(j);
	cmd_result_free(&r);

	/* --uid: nobody's processes only, here read by root */
	run_samepage(&r, "estimate", "--json", "--interval", "0", "--uid", "nobody", "--range", RANGE, NULL);
	assert_int_equal(r.status, 0);
	j = parse(&r);
	expect_counts(proc_of(j, kids[1].pid), &w, "--uid nobody");
	json_object *arr = get(j, "processes");
	for (size_t i = 0; i < json_object_array_length(arr); i++)
		assert_int_equal(num(json_object_array_get_idx(arr, i), "uid"), NOBODY_UID);
	json_object_put(j);
	cmd_result_free(&r);
	stop_kids(NULL);
}

static void expect_refused(const char *const argv[], const char *message)
{
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	if (r.status != 2 || !strstr(r.err, message))
		fail_msg("%s %s %s: exit %d, stderr '%s', expected 2 and '%s'", argv[1], argv[2] ? argv[2] : "",
			 argv[2] && argv[3] ? argv[3] : "", r.status, r.err, message);
	assert_false(strstr(r.err, "Segmentation"));
	cmd_result_free(&r);
}

/* A PID no process has: one below pid_max that is free now. */
static pid_t free_pid(void)
{
	FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
	long max = 32768;
	if (f) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 32768;
		fclose(f);
	}
	for (pid_t p = (pid_t)max - 1; p > 300; p--)
		if (kill(p, 0) < 0 && errno == ESRCH)
			return p;
	fail_msg("no free pid");
	return -1;
}

/* A process without user memory: a kernel thread (kthreadd, normally 2). */
static pid_t kernel_thread(void)
{
	for (pid_t p = 2; p < 400; p++) {
		char path[64], line[128];
		snprintf(path, sizeof(path), "/proc/%d/status", (int)p);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		bool mm = false, zombie = false;
		while (fgets(line, sizeof(line), f)) {
			mm |= strncmp(line, "VmSize:", 7) == 0;
			zombie |= strncmp(line, "State:\tZ", 8) == 0;
		}
		fclose(f);
		if (!mm && !zombie)
			return p;
	}
	fail_msg("no kernel thread visible in /proc (a PID namespace?)");
	return -1;
}

static void test_bad_input(void **state)
{
	(void)state;
	char gone[16], self[16], kthread[16];
	pid_text(free_pid(), gone);
	pid_text(getpid(), self);
	pid_text(kernel_thread(), kthread);
	struct { const char *args[6]; const char *msg; } cases[] = {
		{ { NULL }, "which processes" },
		{ { "abc" }, "'abc' is not a process ID" },
		{ { "0" }, "'0' is not a process ID" },
		{ { "--", "-5" }, "'-5' is not a process ID" },
		{ { "12x" }, "'12x' is not a process ID" },
		{ { "--interval", "abc", self }, "--interval takes seconds" },
		{ { "--interval", "-1", self }, "--interval takes seconds" },
		{ { "--interval", "nan", self }, "--interval takes seconds" },
		{ { "--interval", "99999", self }, "--interval takes seconds" },
		{ { "--uid", "no-such-user-here" }, "no user named" },
		{ { "--uid", "-3" }, "no user named" },
		{ { "--uid", "4294967294" }, "no process runs as uid" },
		{ { "--all", self }, "not more than one" },
		{ { "--all", "--uid", "0" }, "not more than one" },
		{ { "--min-kb", "lots", self }, "--min-kb" },
		{ { "--range", "zz", self }, "--range" },
		{ { "--range", "2000-1000", self }, "--range" },
		{ { "--bogus" }, "unrecognized option" },
		{ { "--interval", "0", gone }, "no such process" },
		{ { "--interval", "0", kthread }, "no user memory" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[10] = { "samepage", "estimate" };
		int n = 2;
		for (int k = 0; k < 6 && cases[i].args[k]; k++)
			argv[n++] = cases[i].args[k];
		argv[n] = NULL;
		expect_refused(argv, cases[i].msg);
	}
	/* a PID that does not exist, in JSON: the error is there, exit 2 */
	struct cmd_result r;
	run_samepage(&r, "estimate", "--json", "--interval", "0", gone, NULL);
	assert_int_equal(r.status, 2);
	json_object *j = parse(&r);
	json_object *errs = get(j, "errors");
	assert_int_equal(json_object_array_length(errs), 1);
	assert_string_equal(json_object_get_string(get(json_object_array_get_idx(errs, 0), "errno")), "ESRCH");
	assert_int_equal(json_object_array_length(get(j, "processes")), 0);
	json_object_put(j);
	cmd_result_free(&r);
}

/* word appears in text, not as part of a longer name */
static bool documented(const char *page, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = page; (p = strstr(p, word)); p++) {
		char before = p == page ? ' ' : p[-1], after = p[n];
		if (!(before == '_' || (before >= 'a' && before <= 'z')) && !(after == '_' || (after >= 'a' && after <= 'z')))
			return true;
	}
	return false;
}

static void keys_in_page(json_object *o, const char *page)
{
	if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			keys_in_page(json_object_array_get_idx(o, i), page);
		return;
	}
	if (!json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach(o, key, val) {
		if (!documented(page, key))
			fail_msg("estimate --json key '%s' is not in samepage(8)", key);
		keys_in_page(val, page);
	}
}

static void test_all_min_kb_and_documented(void **state)
{
	(void)state;
	kid_start(&kids[0], layout_a, NULL, -1, -1);
	kid_start(&kids[1], layout_n, NULL, is_root() ? NOBODY_UID : -1, -1);
	char pa[16], pn[16];
	pid_text(kids[0].pid, pa);
	pid_text(kids[1].pid, pn);
	struct cmd_result r;
	/* --min-kb hides the small ones from the list, not from the total */
	run_samepage(&r, "estimate", "--json", "--interval", "0", "--range", RANGE, "--min-kb", "200", pa, pn, NULL);
	assert_int_equal(r.status, 0);
	json_object *j = parse(&r);
	assert_int_equal(json_object_array_length(get(j, "processes")), 1);  /* 720 KiB and 160 KiB */
	proc_of(j, kids[0].pid);
	assert_int_equal(num(get(j, "total"), "processes"), 2);
	assert_int_equal(num(get(j, "total"), "pages"), 180 + 40);
	json_object_put(j);
	cmd_result_free(&r);

	/* --all: every process but samepage itself, our children among them */
	run_samepage(&r, "estimate", "--all", "--json", "--interval", "0.1", "--range", RANGE, NULL);
	assert_int_equal(r.status, 0);
	j = parse(&r);
	struct want wa = { 180, 50, 99, 0, 99, 50 };
	expect_counts(proc_of(j, kids[0].pid), &wa, "--all, process A");
	assert_true(num(get(j, "total"), "pages") >= 220);
	json_object_put(j);
	cmd_result_free(&r);

	/* every key of the JSON (an error entry included) is documented */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/man/samepage.8", getenv("SAMEPAGE_SRC") ? getenv("SAMEPAGE_SRC") : ".");
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char page[1 << 20];
	page[fread(page, 1, sizeof(page) - 1, f)] = 0;
	fclose(f);
	char gone[16];
	pid_text(free_pid(), gone);
	run_samepage(&r, "estimate", "--json", "--interval", "0.1", pa, gone, NULL);
	assert_int_equal(r.status, 0);
	j = parse(&r);
	keys_in_page(j, page);
	json_object_put(j);
	cmd_result_free(&r);
	stop_kids(NULL);
}

int main(void)
{
	ps = sysconf(_SC_PAGESIZE);
	snprintf(RANGE, sizeof(RANGE), "%#lx-%#lx", REGION, REGION + REGION_PAGES * (unsigned long)ps);
	salt = (uint64_t)getpid() * 0x100000001b3ull ^ (uint64_t)time(NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_exact_numbers, stop_kids),
		cmocka_unit_test_teardown(test_changes_nothing, stop_kids),
		cmocka_unit_test_teardown(test_stability, stop_kids),
		cmocka_unit_test_teardown(test_all_private, stop_kids),
		cmocka_unit_test_teardown(test_unreadable_as_nobody, stop_kids),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test_teardown(test_all_min_kb_and_documented, stop_kids),
	};
	return cmocka_run_group_tests_name("estimate", tests, NULL, NULL);
}
