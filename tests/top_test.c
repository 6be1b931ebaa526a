/* SPDX-License-Identifier: MIT */
/*
 * Description: `samepage top` in a real terminal: a private tmux server runs
 * it in a 120x40 window; the screen (tmux capture-pane) shows the savings
 * line with pages_sharing exactly as sysfs has it (KSM frozen under the
 * lock), the process list with a real merging child, sparklines in block
 * characters under a UTF-8 locale and in ASCII otherwise, a pass rate once
 * ksmd runs, a redraw at the new size after the window is resized
 * (SIGWINCH); `q` ends it with exit 0 and the terminal settings (stty -g)
 * and screen as they were. Without a terminal it refuses with exit 2; the
 * user-space engine's view with a real samepaged, and exit 3 without one.
 */
#include "helpers.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define tmux(out, ...) tmux_argv(out, (const char *const[]){ __VA_ARGS__ })

static char *dir;                 /* the test's temporary directory */
static char sock[PATH_MAX];       /* our own tmux server */
static bool tmux_started;
static struct dup_child child;    /* stopped by the teardown too */
static pid_t daemon_pid;

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* tmux -S SOCK ARGS (NULL-terminated); its exit code, output in *out if asked. */
static int tmux_argv(char **out, const char *const args[])
{
	const char *argv[24] = { "tmux", "-S", sock };
	for (int i = 0; args[i] && i < 20; i++)
		argv[3 + i] = args[i];
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	if (out)
		*out = strdup(r.out);
	cmd_result_free(&r);
	return r.status;
}

/* Run a shell command line in a new detached 120x40 window. */
static void tmux_start(const char *cmdline)
{
	if (access("/usr/bin/tmux", X_OK) != 0)
		SKIP_BECAUSE("tmux is not installed (scripts/setup.sh installs it)");
	assert_int_equal(tmux(NULL, "new-session", "-d", "-s", "top", "-x", "120", "-y", "40", cmdline, NULL), 0);
	tmux_started = true;
}

static char *screen(void)
{
	char *s = NULL;
	if (tmux(&s, "capture-pane", "-p", "-t", "top", NULL) != 0)
		fail_msg("tmux capture-pane failed");
	return s;
}

/* Wait (bounded) until the screen contains text; returns the screen. */
static char *wait_screen(const char *text, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 100) {
		char *s = screen();
		if (strstr(s, text))
			return s;
		free(s);
		msleep(100);
	}
	char *s = screen();
	fail_msg("'%s' never appeared; the screen:\n%s", text, s);
	return s;
}

/* The screen line that starts with prefix (a copy), or NULL. */
static char *line_starting(const char *scr, const char *prefix)
{
	for (const char *p = scr; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, strlen(prefix)) == 0)
			return strndup(p, strcspn(p, "\n"));
	return NULL;
}

static char *read_small(const char *name)
{
	char path[PATH_MAX], buf[512] = "";
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return strdup(buf);
}

/* The command line for the window: record the terminal settings, run top,
 * record them again and the exit code, then stay so the pane can be read. */
static void top_cmdline(char *buf, size_t len, const char *env, const char *args)
{
	snprintf(buf, len,
		 "cd %s && stty -g > before && env %s %s top %s; c=$?; stty -g > after; "
		 "echo $c > rc.tmp; mv rc.tmp rc; exec sleep 600",
		 dir, env, build_path("bin/samepage"), args);
}

/* After `q`: exit code 0, terminal settings restored, top's screen gone. */
static void quit_and_check(void)
{
	assert_int_equal(tmux(NULL, "send-keys", "-t", "top", "q", NULL), 0);
	char *rc = NULL;
	for (int i = 0; i < 100 && !(rc = read_small("rc")); i++)
		msleep(100);
	if (!rc)
		fail_msg("samepage top did not exit after q");
	assert_string_equal(rc, "0");
	char *before = read_small("before"), *after = read_small("after");
	assert_non_null(before);
	assert_non_null(after);
	assert_string_equal(before, after);
	char *s = screen();
	assert_null(strstr(s, "Savings"));  /* the alternate screen is gone */
	free(s);
	free(rc);
	free(before);
	free(after);
}

static int setup(void **state)
{
	(void)state;
	dir = make_tempdir();
	snprintf(sock, sizeof(sock), "%s/tmux.sock", dir);
	tmux_started = false;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (tmux_started)
		tmux(NULL, "kill-server", NULL);
	if (child.pid > 0) {
		kill(child.pid, SIGKILL);
		waitpid(child.pid, NULL, 0);
		close(child.to_child);
		child.pid = 0;
	}
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGKILL);
		waitpid(daemon_pid, NULL, 0);
		daemon_pid = 0;
	}
	remove_tree(dir);
	free(dir);
	return 0;
}

static int ksm_setup(void **state)
{
	setup(state);
	return ksm_group_setup(state);
}

static int ksm_teardown(void **state)
{
	teardown(state);
	return ksm_group_teardown(state);
}

static void test_needs_a_terminal(void **state)
{
	(void)state;
	struct cmd_result r;
	run_samepage(&r, "top", NULL);  /* stdout is a pipe here */
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "terminal"));
	assert_non_null(strstr(r.err, "samepage status"));
	assert_string_equal(r.out, "");
	cmd_result_free(&r);
	run_samepage(&r, "top", "--interval", "0", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--interval"));
	cmd_result_free(&r);
	run_samepage(&r, "top", "--engine", "both", NULL);
	assert_int_equal(r.status, 2);
	cmd_result_free(&r);
	run_samepage(&r, "top", "extra", NULL);
	assert_int_equal(r.status, 2);
	cmd_result_free(&r);
}

/* Block characters on a line (each is 3 bytes, E2 96 81..88). */
static int blocks_in(const char *line)
{
	int n = 0;
	for (const unsigned char *p = (const unsigned char *)line; p[0]; p++)
		if (p[0] == 0xe2 && p[1] == 0x96 && p[2] >= 0x81 && p[2] <= 0x88)
			n++;
	return n;
}

static void test_kernel_view(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	/* a real merging child, then KSM frozen: the numbers hold still */
	assert_int_equal(ksm_write("run", "2"), 0);
	ksm_fast_scan();
	dup_child_start(&child, 2048, 8);
	assert_int_equal(ksm_write("run", "1"), 0);
	for (int i = 0; i < 40 && ksm_read_num("pages_sharing") < 2048 - 8 - 64; i++)
		assert_true(ksm_wait_scans(1, 15));
	assert_true(ksm_read_num("pages_sharing") >= 2048 - 8 - 64);
	assert_int_equal(ksm_write("run", "0"), 0);

	char cmd[PATH_MAX * 3];
	top_cmdline(cmd, sizeof(cmd), "LANG=C.UTF-8 LC_ALL=C.UTF-8", "--interval 0.3");
	tmux_start(cmd);
	free(wait_screen("Savings", 10000));
	msleep(1500);  /* a few refreshes, all of the frozen state */
	char *s = screen();
	char *sav = line_starting(s, "Savings");
	assert_non_null(sav);
	char *ps = strstr(sav, "pages_sharing ");
	assert_non_null(ps);
	long long shown = atoll(ps + strlen("pages_sharing "));
	assert_int_equal(shown, ksm_read_num("pages_sharing"));
	assert_true(shown >= 2048 - 8 - 64);
	free(sav);
	/* the process list, with the child in it */
	assert_non_null(strstr(s, "PID  COMMAND"));
	assert_non_null(strstr(s, "PROFIT"));
	char pid[16];
	snprintf(pid, sizeof(pid), "%7d  ", (int)child.pid);
	assert_non_null(strstr(s, pid));
	/* sparklines: a row per quantity, one block per refresh */
	char *spark = line_starting(s, "saved ");
	assert_non_null(spark);
	assert_true(blocks_in(spark) >= 3);
	size_t wide = strlen(spark);
	free(spark);
	free(s);

	/* ksmd running: a pass rate shows */
	assert_int_equal(ksm_write("run", "1"), 0);
	double rate = 0;
	for (int i = 0; i < 100 && rate <= 0; i++) {
		s = screen();
		char *scan = line_starting(s, "Scanning");
		if (scan)
			rate = atof(scan + strlen("Scanning"));
		free(scan);
		free(s);
		msleep(100);
	}
	if (rate <= 0)
		fail_msg("no full scans/s shown while ksmd runs");

	/* a smaller window: redrawn to fit (curses' SIGWINCH) */
	assert_int_equal(tmux(NULL, "resize-window", "-t", "top", "-x", "80", "-y", "24", NULL), 0);
	msleep(800);
	s = screen();
	spark = line_starting(s, "saved ");
	assert_non_null(spark);
	print_message("sparkline row %zu bytes at 120 columns, %zu at 80\n", wide, strlen(spark));
	assert_true(strlen(spark) < wide);
	assert_non_null(strstr(spark, "iB"));  /* the value column moved in, still shown */
	assert_non_null(strstr(s, "PID  COMMAND"));
	free(spark);
	free(s);
	quit_and_check();
	dup_child_stop(&child);
}

static void test_ascii_fallback(void **state)
{
	(void)state;
	if (!ksm_present())
		SKIP_BECAUSE("this kernel has no KSM (" KSM_DIR " missing)");
	char cmd[PATH_MAX * 3];
	top_cmdline(cmd, sizeof(cmd), "LANG=C LC_ALL=C", "--interval 0.2");
	tmux_start(cmd);
	free(wait_screen("Savings", 10000));
	msleep(1200);
	char *s = screen();
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p >= 0x80)
			fail_msg("a non-ASCII byte under LANG=C:\n%s", s);
	char *spark = line_starting(s, "pages/s ");
	assert_non_null(spark);
	size_t marks = 0;
	for (const char *p = spark + 10; *p; p++)
		marks += strchr("_.-~=+*#", *p) != NULL;
	assert_true(marks >= 3);
	free(spark);
	free(s);
	quit_and_check();
}

static void test_user_engine_view(void **state)
{
	(void)state;
	char cmd[PATH_MAX * 3], env[PATH_MAX + 40], path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/d/samepaged.sock", dir);
	snprintf(env, sizeof(env), "SAMEPAGE_SOCKET=%s", path);
	/* no daemon: the usual message and exit 3, before the screen starts */
	top_cmdline(cmd, sizeof(cmd), env, "--engine user");
	tmux_start(cmd);
	char *rc = NULL;
	for (int i = 0; i < 100 && !(rc = read_small("rc")); i++)
		msleep(100);
	assert_non_null(rc);
	assert_string_equal(rc, "3");
	free(rc);
	char *s = screen();
	assert_non_null(strstr(s, "no samepaged is running"));
	free(s);
	tmux(NULL, "kill-server", NULL);
	tmux_started = false;
	char rcpath[PATH_MAX];
	snprintf(rcpath, sizeof(rcpath), "%s/rc", dir);
	unlink(rcpath);

	daemon_pid = fork();
	assert_true(daemon_pid >= 0);
	if (daemon_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(build_path("bin/samepaged"), "samepaged", "--socket", path, (char *)NULL);
		_exit(127);
	}
	sp_ctl *ctl = NULL;
	for (int i = 0; i < 500 && sp_ctl_open(path, &ctl) != 0; i++)
		msleep(10);
	assert_non_null(ctl);
	sp_ctl_close(ctl);
	top_cmdline(cmd, sizeof(cmd), env, "--engine user --interval 0.3");
	tmux_start(cmd);
	char want[96];
	snprintf(want, sizeof(want), "samepaged pid %d", (int)daemon_pid);
	s = wait_screen(want, 10000);
	assert_non_null(strstr(s, "user-space engine: running (run=1)"));
	assert_non_null(strstr(s, "Savings   saved 0 B"));
	free(s);
	quit_and_check();
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_needs_a_terminal),
		cmocka_unit_test_setup_teardown(test_kernel_view, ksm_setup, ksm_teardown),
		cmocka_unit_test_setup_teardown(test_ascii_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_engine_view, setup, teardown),
	};
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("top", tests, NULL, NULL);
}
