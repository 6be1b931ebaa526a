/* SPDX-License-Identifier: MIT */
/*
 * Description: `samepage record` writes a CSV of the merger's counters
 * (header, one complete line per sample, time going forward, --count,
 * --duration, standard output and SIGINT, the user engine through a real
 * samepaged); recording real merging (KSM
 * lock held, knobs restored) shows pages_sharing rising and cow_ksm
 * counting the copy-on-write breaks of a child that writes its merged
 * pages; `samepage plot` turns recordings into well-formed SVG (checked
 * with xmllint) with three panels, ticks, labels and legends, and refuses
 * empty, garbled or non-CSV input with exit 2 and no image.
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define COLUMNS "time,unix_time,pages_shared,pages_sharing,pages_unshared,pages_volatile," \
		"ksm_zero_pages,general_profit,full_scans,saved_bytes,cpu_seconds,cow_ksm"
#define NCOL 12
#define MAX_ROWS 512

static char *dir;

struct csv {
	int rows;
	double v[MAX_ROWS][NCOL];   /* NAN where empty */
};

enum { C_TIME, C_UNIX, C_SHARED, C_SHARING, C_UNSHARED, C_VOLATILE, C_ZERO, C_PROFIT, C_SCANS, C_SAVED,
       C_CPU, C_COW };

/* Parse and check what record wrote: the header, then complete lines of
 * numbers with the time going forward. */
static void parse_csv(const char *text, struct csv *c)
{
	const char *nl = strchr(text, '\n');
	assert_non_null(nl);
	if ((size_t)(nl - text) != strlen(COLUMNS) || strncmp(text, COLUMNS, strlen(COLUMNS)))
		fail_msg("header is '%.*s'", (int)(nl - text), text);
	c->rows = 0;
	for (const char *line = nl + 1; *line && c->rows < MAX_ROWS; c->rows++) {
		const char *end = strchr(line, '\n');
		if (!end)
			fail_msg("last line is incomplete: '%s'", line);
		int col = 0;
		for (const char *p = line; p <= end; col++) {
			assert_true(col < NCOL);
			const char *q = p + strcspn(p, ",\n");
			char *stop;
			c->v[c->rows][col] = q == p ? NAN : strtod(p, &stop);
			if (q != p && stop != q)
				fail_msg("line %d field %d is not a number: '%.*s'", c->rows + 2, col, (int)(end - line), line);
			p = q + 1;
		}
		assert_int_equal(col, NCOL);
		if (c->rows > 0)
			assert_true(c->v[c->rows][C_TIME] > c->v[c->rows - 1][C_TIME]);
		line = end + 1;
	}
}

static void read_csv(const char *path, struct csv *c)
{
	char *text = read_whole_file(path);
	parse_csv(text, c);
	free(text);
}

static void path_in_dir(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX, "%s/%s", dir, name);
}

static void test_record_count_and_duration(void **state)
{
	(void)state;
	REQUIRE_KSM(false);
	char file[PATH_MAX];
	path_in_dir(file, "count.csv");
	struct cmd_result r;
	run_samepage(&r, "record", "--interval", "0.1", "--count", "5", file, NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "");
	cmd_result_free(&r);
	struct csv c;
	read_csv(file, &c);
	assert_int_equal(c.rows, 5);
	assert_true(c.v[0][C_TIME] < 0.05);
	assert_true(c.v[4][C_TIME] >= 0.4 && c.v[4][C_TIME] < 2.0);
	time_t now = time(NULL);
	for (int i = 0; i < c.rows; i++) {
		assert_true(c.v[i][C_UNIX] > (double)now - 60 && c.v[i][C_UNIX] < (double)now + 60);
		for (int k = C_SHARED; k <= C_SCANS; k++)
			if (k != C_PROFIT)
				assert_true(c.v[i][k] >= 0);  /* this kernel has them all */
		assert_true(c.v[i][C_CPU] >= 0);          /* ksmd found */
		assert_true(c.v[i][C_COW] >= 0);
		/* saved_bytes = (pages_sharing + ksm_zero_pages) x page size */
		assert_true(c.v[i][C_SAVED] == (c.v[i][C_SHARING] + c.v[i][C_ZERO]) * (double)sysconf(_SC_PAGESIZE));
		if (i > 0)
			assert_true(c.v[i][C_CPU] >= c.v[i - 1][C_CPU]);
	}

	/* --duration: samples at 0, 0.1, ... 0.5 */
	path_in_dir(file, "duration.csv");
	run_samepage(&r, "record", "--duration", "0.5", "--interval", "0.1", file, NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	read_csv(file, &c);
	assert_int_equal(c.rows, 6);
	assert_true(c.v[5][C_TIME] >= 0.5);
}

/* record to standard output until SIGINT: every line complete, exit 0. */
static void test_record_stdout_until_signal(void **state)
{
	(void)state;
	REQUIRE_KSM(false);
	char file[PATH_MAX];
	path_in_dir(file, "stdout.csv");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		execl(build_path("bin/samepage"), "samepage", "record", "--interval", "0.05", "-", (char *)NULL);
		_exit(127);
	}
	struct timespec ts = { 0, 400 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	kill(pid, SIGINT);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	struct csv c;
	read_csv(file, &c);
	assert_true(c.rows >= 3);
}

static void expect_refused(const char *const argv[], int code, const char *message)
{
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	if (r.status != code || !strstr(r.err, message))
		fail_msg("%s %s: exit %d, stderr '%s'; expected %d and '%s'", argv[1], argv[2] ? argv[2] : "", r.status,
			 r.err, code, message);
	cmd_result_free(&r);
}

static void test_record_bad_input(void **state)
{
	(void)state;
	char file[PATH_MAX];
	path_in_dir(file, "bad.csv");
	struct { const char *args[6]; const char *msg; } cases[] = {
		{ { NULL }, "which file" },
		{ { "--count", "2", file, "more" }, "unexpected argument" },
		{ { "--duration", "1", "--count", "2", file }, "not both" },
		{ { "--interval", "0", file }, "--interval" },
		{ { "--interval", "abc", file }, "--interval" },
		{ { "--interval", "inf", file }, "--interval" },
		{ { "--duration", "-1", file }, "--duration" },
		{ { "--count", "0", file }, "--count" },
		{ { "--count", "3x", file }, "--count" },
		{ { "--engine", "bogus", file }, "--engine" },
		{ { "--count", "1", "/nonexistent/dir/x.csv" }, "cannot create" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[10] = { "samepage", "record" };
		int n = 2;
		for (int k = 0; k < 6 && cases[i].args[k]; k++)
			argv[n++] = cases[i].args[k];
		argv[n] = NULL;
		expect_refused(argv, 2, cases[i].msg);
	}
	assert_int_equal(access(file, F_OK), -1);  /* nothing written on refusal */
	/* the user engine without a daemon: 3, as status says */
	const char *user[] = { "samepage", "record", "--engine", "user", "--count", "1", file, NULL };
	const char *env[] = { "SAMEPAGE_SOCKET=/nonexistent/samepaged.sock", NULL };
	struct cmd_result r;
	run_cmd(user, env, -1, &r);
	assert_int_equal(r.status, 3);
	assert_non_null(strstr(r.err, "samepaged"));
	cmd_result_free(&r);
}

/* --engine user: the counters of a real samepaged on a private socket. */
static void test_record_user_engine(void **state)
{
	(void)state;
	char sock[PATH_MAX], file[PATH_MAX];
	path_in_dir(sock, "d/samepaged.sock");
	path_in_dir(file, "user.csv");
	pid_t d = fork();
	assert_true(d >= 0);
	if (d == 0) {
		execl(build_path("bin/samepaged"), "samepaged", "--socket", sock, (char *)NULL);
		_exit(127);
	}
	sp_ctl *ctl = NULL;
	for (int i = 0; i < 300 && sp_ctl_open(sock, &ctl) != 0; i++)
		usleep(10000);
	if (!ctl) {
		kill(d, SIGKILL);
		waitpid(d, NULL, 0);
		fail_msg("samepaged did not start on %s", sock);
	}
	sp_ctl_close(ctl);
	char env_sock[PATH_MAX + 32];
	snprintf(env_sock, sizeof(env_sock), "SAMEPAGE_SOCKET=%s", sock);
	const char *argv[] = { "samepage", "record", "--engine", "user", "--interval", "0.1", "--count", "3", file, NULL };
	const char *env[] = { env_sock, NULL };
	struct cmd_result r;
	run_cmd(argv, env, -1, &r);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);
	if (r.status != 0)
		fail_msg("record --engine user: exit %d: %s", r.status, r.err);
	cmd_result_free(&r);
	struct csv c;
	read_csv(file, &c);
	assert_int_equal(c.rows, 3);
	for (int i = 0; i < c.rows; i++) {
		assert_true(c.v[i][C_SHARING] >= 0);
		assert_true(c.v[i][C_CPU] >= 0);  /* the domain's engine threads, from samepaged */
		assert_true(c.v[i][C_COW] >= 0);
	}
}

/* ------------------------------------------------------------ plot */

static bool have_xmllint(void)
{
	return access("/usr/bin/xmllint", X_OK) == 0;
}

/* Well-formed XML with an <svg> root, three panels with axes and ticks,
 * and at least `lines` drawn series. */
static char *check_svg(const char *svg, int lines)
{
	const char *argv[] = { "xmllint", "--noout", svg, NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	if (r.status != 0)
		fail_msg("xmllint %s: %s", svg, r.err);
	cmd_result_free(&r);
	char *t = read_whole_file(svg);
	assert_non_null(strstr(t, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
	assert_non_null(strstr(t, "</svg>\n"));
	int panels = 0, series = 0, legends = 0, ticks = 0;
	for (const char *p = t; (p = strstr(p, "<g class=\"panel\">")); p++)
		panels++;
	for (const char *p = t; (p = strstr(p, "<polyline class=\"series\"")); p++)
		series++;
	for (const char *p = t; (p = strstr(p, "<g class=\"legend\"")); p++)
		legends++;
	for (const char *p = t; (p = strstr(p, "text-anchor=\"end\">")); p++)
		ticks++;
	assert_int_equal(panels, 3);
	assert_true(series >= lines);
	assert_true(legends >= 1);
	assert_true(ticks >= 6);  /* y tick labels */
	assert_non_null(strstr(t, "time since the start (s)"));
	return t;
}

static void write_text(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
}

/* Write a recording, plot it, check the image; returns its text. */
static char *plot_ok(const char *csv, const char *text, const char *svg, int lines)
{
	write_text(csv, text, strlen(text));
	struct cmd_result r;
	run_samepage(&r, "plot", csv, "-o", svg, NULL);
	if (r.status != 0)
		fail_msg("plot %s: exit %d: %s", csv, r.status, r.err);
	cmd_result_free(&r);
	return check_svg(svg, lines);
}

static void test_plot_known_recording(void **state)
{
	(void)state;
	if (!have_xmllint())
		SKIP_BECAUSE("xmllint is not installed (scripts/setup.sh installs libxml2-utils)");
	/* 11 samples: saved grows to 1 GiB, the merger at 50% of a CPU,
	 * 100 COW breaks a second; the name needs escaping in the title */
	char csv[PATH_MAX], svg[PATH_MAX], line[256];
	path_in_dir(csv, "a&b<c>.csv");
	path_in_dir(svg, "known.svg");
	char *text = malloc(8192);
	strcpy(text, COLUMNS "\n");
	for (int i = 0; i <= 10; i++) {
		long long saved = (1LL << 30) * i / 10;
		snprintf(line, sizeof(line), "%d.000,1700000000.000,10,%lld,0,0,0,%lld,%d,%lld,%.2f,%d\n", i,
			 saved / 4096, saved - 1000, i, saved, 3.0 + 0.5 * i, 1000 + 100 * i);
		strcat(text, line);
	}
	char *t = plot_ok(csv, text, svg, 4);
	assert_non_null(strstr(t, "a&amp;b&lt;c&gt;.csv"));
	assert_non_null(strstr(t, ">1 GiB</text>"));           /* the saved axis' top tick */
	assert_non_null(strstr(t, ">50</text>"));              /* 50 % of a CPU */
	assert_non_null(strstr(t, ">100</text>"));             /* 100 breaks a second */
	assert_non_null(strstr(t, "cow_ksm per second"));
	assert_non_null(strstr(t, "% of one CPU"));
	free(t);

	/* the same to standard output */
	struct cmd_result r;
	run_samepage(&r, "plot", csv, "-o", "-", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "</svg>"));
	cmd_result_free(&r);

	/* without cpu_seconds values, and with one sample: empty panels say why */
	t = plot_ok(csv, COLUMNS "\n0,1,0,5,0,0,0,100,0,20480,,7\n1,2,0,6,0,0,0,100,0,24576,,9\n", svg, 2);
	assert_non_null(strstr(t, "cpu_seconds was not recorded"));
	free(t);
	t = plot_ok(csv, "time,saved_bytes\n0,4096\n", svg, 1);
	assert_non_null(strstr(t, "one sample: no rate"));
	free(t);
	free(text);
}

static void test_plot_refuses_garbage(void **state)
{
	(void)state;
	char csv[PATH_MAX], svg[PATH_MAX];
	path_in_dir(csv, "garbage.csv");
	path_in_dir(svg, "garbage.svg");
	struct { const char *text; size_t len; const char *msg; } cases[] = {
		{ "", 0, "is empty" },
		{ "\n\n", 2, "is empty" },
		{ COLUMNS "\n", sizeof(COLUMNS), "no samples" },
		{ "time,saved_bytes\n0,1\n1,2,3\n", 27, ":3: 3 fields where the header has 2" },
		{ "time,saved_bytes\n0,1\n1\n", 23, ":3: 1 fields" },
		{ "time,saved_bytes\n0,1\n1,lots\n", 28, ":3: saved_bytes is not a number: 'lots'" },
		{ "time,saved_bytes\n0,1\n0,2\n", 25, ":3: time 0 does not come after 0" },
		{ "time,saved_bytes\n5,1\n2,2\n", 25, "does not come after" },
		{ "time,saved_bytes\n,1\n", 20, ":2: the time is missing" },
		{ "saved_bytes,cow_ksm\n1,2\n", 24, "no time column" },
		{ "Time,Saved Bytes\n1,2\n", 21, "not a header" },
		{ "time,saved_bytes\n0,nan\n", 23, "is not a number" },
		{ "time,x\n0,1\0\n", 12, "NUL bytes" },
		{ "\x89PNG\r\n\x1a\n\x01\x02", 10, "not a header" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_text(csv, cases[i].text, cases[i].len);
		unlink(svg);
		const char *argv[] = { "samepage", "plot", csv, "-o", svg, NULL };
		expect_refused(argv, 2, cases[i].msg);
		assert_int_equal(access(svg, F_OK), -1);  /* no image of a damaged file */
	}
	write_text(csv, "time,saved_bytes\n0,1\n", 21);
	const char *no_out[] = { "samepage", "plot", csv, NULL };
	expect_refused(no_out, 2, "-o OUT.svg");
	const char *no_in[] = { "samepage", "plot", "-o", svg, NULL };
	expect_refused(no_in, 2, "which recording");
	const char *missing[] = { "samepage", "plot", "/nonexistent/rec.csv", "-o", svg, NULL };
	expect_refused(missing, 2, "cannot read /nonexistent/rec.csv");
	const char *bad_out[] = { "samepage", "plot", csv, "-o", "/nonexistent/dir/x.svg", NULL };
	expect_refused(bad_out, 2, "cannot create");
}

/* ------------------------------------------------------------ real merging */

#define KID_PAGES 2048

static struct ksm_knobs saved_knobs;
static int lock_fd = -1;
static pid_t kid_pid, rec_pid;

static int ksm_setup(void **state)
{
	(void)state;
	if (ksm_present() && is_root()) {
		lock_fd = ksm_lock();
		ksm_save(&saved_knobs);
	}
	return 0;
}

static int ksm_teardown(void **state)
{
	(void)state;
	pid_t *kids[] = { &kid_pid, &rec_pid };
	for (size_t i = 0; i < 2; i++)
		if (*kids[i] > 0) {
			kill(*kids[i], SIGKILL);
			waitpid(*kids[i], NULL, 0);
			*kids[i] = 0;
		}
	if (lock_fd >= 0) {
		ksm_restore(&saved_knobs);
		ksm_unlock(lock_fd);
		lock_fd = -1;
	}
	return 0;
}

/* A mergeable child of 8 contents; on a byte it writes every page (the
 * same value again: still duplicates, but each merged page breaks). */
static int kid_start(int *to)
{
	int p[2], ready[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(ready), 0);
	kid_pid = fork();
	assert_true(kid_pid >= 0);
	if (kid_pid == 0) {
		size_t ps = (size_t)sysconf(_SC_PAGESIZE);
		unsigned char *m = mmap(NULL, KID_PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			_exit(1);
		for (size_t i = 0; i < KID_PAGES; i++)
			memset(m + i * ps, (int)(1 + i % 8), ps);
		char ok = madvise(m, KID_PAGES * ps, MADV_MERGEABLE) ? 'n' : 'y', b;
		if (write(ready[1], &ok, 1) != 1)
			_exit(1);
		while (read(p[0], &b, 1) == 1) {
			for (size_t i = 0; i < KID_PAGES; i++)
				m[i * ps] = (unsigned char)(1 + i % 8);
			if (write(ready[1], "w", 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	close(p[0]);
	close(ready[1]);
	char ok = 0;
	assert_int_equal(read(ready[0], &ok, 1), 1);
	assert_int_equal(ok, 'y');
	*to = p[1];
	return ready[0];
}

static void test_record_real_merging_and_plot(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	if (!have_xmllint())
		SKIP_BECAUSE("xmllint is not installed (scripts/setup.sh installs libxml2-utils)");
	assert_int_equal(ksm_write("run", "2"), 0);  /* nothing merged at the start */
	ksm_fast_scan();
	int to, from = kid_start(&to);
	char csv[PATH_MAX], svg[PATH_MAX];
	path_in_dir(csv, "merging.csv");
	path_in_dir(svg, "merging.svg");
	pid_t rec = rec_pid = fork();
	assert_true(rec >= 0);
	if (rec == 0) {
		execl(build_path("bin/samepage"), "samepage", "record", "--interval", "0.2", "--duration", "30", csv,
		      (char *)NULL);
		_exit(127);
	}
	/* ksmd merges this child in milliseconds: start it only once the
	 * first sample, of nothing merged, is written */
	bool first = false;
	for (int i = 0; i < 500 && !first; i++) {
		FILE *f = fopen(csv, "r");
		int lines = 0, ch;
		while (f && (ch = fgetc(f)) != EOF)
			lines += ch == '\n';
		if (f)
			fclose(f);
		if (!(first = lines >= 2))
			usleep(10000);
	}
	assert_true(first);
	assert_int_equal(ksm_write("run", "1"), 0);
	/* merged: wait on ksmd's passes until most pages share */
	bool merged = false;
	for (int i = 0; i < 40 && !(merged = ksm_read_num("pages_sharing") >= KID_PAGES / 2); i++)
		ksm_wait_scans(1, 15);
	assert_true(merged);
	char b;
	assert_int_equal(write(to, "w", 1), 1);  /* break them all */
	assert_int_equal(read(from, &b, 1), 1);
	struct timespec ts = { 0, 600 * 1000 * 1000 };
	nanosleep(&ts, NULL);  /* three more samples */
	kill(rec, SIGTERM);
	int st;
	assert_int_equal(waitpid(rec, &st, 0), rec);
	rec_pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(to);
	close(from);

	struct csv c;
	read_csv(csv, &c);
	assert_true(c.rows >= 4);
	double max_sharing = 0;
	for (int i = 0; i < c.rows; i++)
		if (c.v[i][C_SHARING] > max_sharing)
			max_sharing = c.v[i][C_SHARING];
	assert_true(c.v[0][C_SHARING] < KID_PAGES / 4);   /* run=2 unmerged everything */
	assert_true(max_sharing >= KID_PAGES / 2);
	/* every merged page of the child broke on its write */
	assert_true(c.v[c.rows - 1][C_COW] - c.v[0][C_COW] >= KID_PAGES / 2);
	assert_true(c.v[c.rows - 1][C_CPU] > c.v[0][C_CPU]);  /* ksmd worked */

	struct cmd_result r;
	run_samepage(&r, "plot", csv, "-o", svg, NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	char *t = check_svg(svg, 4);
	assert_non_null(strstr(t, "Memory saved by merging"));
	assert_non_null(strstr(t, "Merger CPU"));
	assert_non_null(strstr(t, "Copy-on-write breaks"));
	free(t);
}

static int group_setup(void **state)
{
	(void)state;
	dir = make_tempdir();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	remove_tree(dir);
	free(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_count_and_duration),
		cmocka_unit_test(test_record_stdout_until_signal),
		cmocka_unit_test(test_record_bad_input),
		cmocka_unit_test(test_record_user_engine),
		cmocka_unit_test(test_plot_known_recording),
		cmocka_unit_test(test_plot_refuses_garbage),
		cmocka_unit_test_setup_teardown(test_record_real_merging_and_plot, ksm_setup, ksm_teardown),
	};
	return cmocka_run_group_tests_name("record", tests, group_setup, group_teardown);
}
