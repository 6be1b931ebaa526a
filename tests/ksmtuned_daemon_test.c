/* SPDX-License-Identifier: MIT */
/*
 * Description: the real ksmtuned against the real kernel KSM, under the
 * KSM lock with every knob restored. Classic with a 1 s interval and a
 * threshold that forces start: pages_to_scan 300, 600 and sleep_millisecs
 * as computed, run=1, each logged with the date prefix (DEBUG + LOGFILE);
 * SIGHUP reloads a changed file (a new KSM_NPAGES_MAX takes effect at
 * once); SIGUSR1 adjusts at once, long before the interval; sd_notify
 * READY and STATUS; stop writes run=0, never 2; daemon mode writes the
 * pidfile, refuses a second instance and removes it on SIGTERM. Adaptive:
 * a new mergeable process is merged within seconds, then ksmd is stopped
 * once a full scan earns nothing.
 */
#include "helpers.h"
#include "../src/tune/tune.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct daemon {
	pid_t pid;
	int notify;
	char *dir;
	char conf[PATH_MAX], log[PATH_MAX], pidfile[PATH_MAX], sock[PATH_MAX], out[PATH_MAX];
	char status[512];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_conf(struct daemon *d, const char *body)
{
	char text[4096];
	snprintf(text, sizeof(text), "%sDEBUG=1\nLOGFILE=%s\nPIDFILE=%s\n", body, d->log, d->pidfile);
	write_file_p(d->conf, text);
}

/* Wait for a datagram containing `what`; keeps the last STATUS seen. */
static bool wait_notify(struct daemon *d, const char *what, double timeout)
{
	double end = now_s() + timeout;
	while (now_s() < end) {
		struct pollfd p = { d->notify, POLLIN, 0 };
		if (poll(&p, 1, 100) <= 0)
			continue;
		char buf[1024];
		ssize_t n = recv(d->notify, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = 0;
		char *st = strstr(buf, "STATUS=");
		if (st)
			snprintf(d->status, sizeof(d->status), "%s", st + 7);
		if (strstr(buf, what))
			return true;
	}
	return false;
}

static void daemon_start(struct daemon *d, const char *body)
{
	memset(d, 0, sizeof(*d));
	d->dir = make_tempdir();
	snprintf(d->conf, sizeof(d->conf), "%s/ksmtuned.conf", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/ksmtuned.log", d->dir);
	snprintf(d->pidfile, sizeof(d->pidfile), "%s/ksmtune.pid", d->dir);
	snprintf(d->sock, sizeof(d->sock), "%s/notify", d->dir);
	snprintf(d->out, sizeof(d->out), "%s/out", d->dir);
	write_conf(d, body);
	d->notify = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(d->notify >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->sock);
	assert_int_equal(bind(d->notify, (struct sockaddr *)&sa, sizeof(sa)), 0);
	d->pid = fork();
	assert_true(d->pid >= 0);
	if (d->pid == 0) {
		int fd = open(d->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		setenv("NOTIFY_SOCKET", d->sock, 1);
		const char *prog = build_path("sbin/ksmtuned");
		execl(prog, prog, "--foreground", "--config", d->conf, (char *)NULL);
		_exit(127);
	}
	if (!wait_notify(d, "READY=1", 10))
		fail_msg("ksmtuned did not report READY=1 within 10 s");
}

static int daemon_stop(struct daemon *d)
{
	kill(d->pid, SIGTERM);
	int st;
	waitpid(d->pid, &st, 0);
	close(d->notify);
	remove_tree(d->dir);
	free(d->dir);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	fclose(m);
	return buf;
}

static int count_in(const char *text, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* Wait until the log holds `needle` at least `times` times. */
static bool wait_log(const struct daemon *d, const char *needle, int times, double timeout)
{
	double end = now_s() + timeout;
	do {
		char *log = read_all(d->log);
		int n = count_in(log, needle);
		free(log);
		if (n >= times)
			return true;
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	} while (now_s() < end);
	char *log = read_all(d->log), *out = read_all(d->out);
	print_message("# log:\n%s\n# output:\n%s\n", log, out);
	free(log);
	free(out);
	return false;
}

static int64_t host_sleep(void)
{
	struct tune_meminfo m;
	char *text = read_all("/proc/meminfo");
	assert_int_equal(tune_meminfo_parse(text, &m), 0);
	free(text);
	struct tune_config c;
	tune_config_defaults(&c);
	return tune_sleep(&c, m.total);
}

static void known_knobs(void)
{
	char mode[64];
	ksm_read_text("advisor_mode", mode, sizeof(mode));
	if (strstr(mode, "[scan-time]"))
		assert_int_equal(ksm_write("advisor_mode", "none"), 0);
	assert_int_equal(ksm_write("run", "0"), 0);
	assert_int_equal(ksm_write("pages_to_scan", "100"), 0);
	assert_int_equal(ksm_write("sleep_millisecs", "20"), 0);
}

static void test_classic_run_reload_retune(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	known_knobs();
	int64_t sleep = host_sleep();
	char want[64];
	struct daemon d;
	/* thres = 100% of MemTotal: free is always below it, so ksm starts
	 * and boosts every interval. */
	daemon_start(&d, "KSM_MONITOR_INTERVAL=1\nKSM_THRES_COEF=100\n");

	char pid[32] = "";
	FILE *f = fopen(d.pidfile, "r");
	assert_non_null(f);
	assert_non_null(fgets(pid, sizeof(pid), f));
	fclose(f);
	assert_int_equal(atoi(pid), d.pid);

	snprintf(want, sizeof(want), "KSMCTL start 300 %lld", (long long)sleep);
	assert_true(wait_log(&d, want, 1, 5));
	assert_int_equal(ksm_read_num("pages_to_scan"), 300);
	assert_int_equal(ksm_read_num("sleep_millisecs"), sleep);
	assert_int_equal(ksm_read_num("run"), 1);
	snprintf(want, sizeof(want), "KSMCTL start 600 %lld", (long long)sleep);
	assert_true(wait_log(&d, want, 1, 5));
	assert_int_equal(ksm_read_num("pages_to_scan"), 600);
	assert_true(wait_notify(&d, "Profit:", 3));
	assert_non_null(strstr(d.status, "classic: ksm running, pages_to_scan"));

	/* The original's messages, each with `date`'s prefix. */
	char *log = read_all(d.log);
	regex_t re;
	assert_int_equal(regcomp(&re,
				 "^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [A-Z]+ [0-9]{4}: "
				 "total [0-9]+\n"
				 "[^\n]*: sleep [0-9]+\n[^\n]*: thres [0-9]+\n"
				 "[^\n]*: committed [0-9]+ free [0-9]+\n"
				 "[^\n]*: [0-9]+ > [0-9]+, start ksm\n"
				 "[^\n]*: [0-9]+ < [0-9]+, boost\n"
				 "[^\n]*: KSMCTL start 300 [0-9]+\n",
				 REG_EXTENDED), 0);
	if (regexec(&re, log, 0, NULL, 0) != 0)
		fail_msg("log does not read like the original's:\n%s", log);
	regfree(&re);
	free(log);

	/* SIGHUP: a new file, read at once; the next adjustment uses it
	 * (600 + 100 = 700, above the new maximum of 650). */
	write_conf(&d, "KSM_MONITOR_INTERVAL=60\nKSM_THRES_COEF=100\nKSM_NPAGES_BOOST=100\nKSM_NPAGES_MAX=650\n");
	kill(d.pid, SIGHUP);
	assert_true(wait_log(&d, "reloaded", 1, 5));
	snprintf(want, sizeof(want), "KSMCTL start 650 %lld", (long long)sleep);
	assert_true(wait_log(&d, want, 1, 5));
	assert_int_equal(ksm_read_num("pages_to_scan"), 650);

	/* SIGUSR1 with a 60 s interval: adjusts now. */
	log = read_all(d.log);
	int before = count_in(log, "KSMCTL start");
	free(log);
	double t0 = now_s();
	kill(d.pid, SIGUSR1);
	assert_true(wait_log(&d, "KSMCTL start", before + 1, 10));
	double took = now_s() - t0;
	print_message("# SIGUSR1 answered in %.3f s (interval 60 s)\n", took);
	assert_true(took < 5);
	assert_int_equal(ksm_read_num("run"), 1);

	/* A reload that cannot read the file keeps running as it was. */
	assert_int_equal(unlink(d.conf), 0);
	kill(d.pid, SIGHUP);
	assert_true(wait_log(&d, "SIGHUP: keeping the running configuration", 1, 5));
	assert_true(wait_log(&d, "KSMCTL start 650", 3, 5));
	char pidfile[PATH_MAX];
	snprintf(pidfile, sizeof(pidfile), "%s", d.pidfile);
	pid_t p = d.pid;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", d.dir);
	kill(p, SIGTERM);
	int st;
	waitpid(p, &st, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_not_equal(access(pidfile, F_OK), 0);  /* removed */
	close(d.notify);
	remove_tree(d.dir);
	free(d.dir);
}

static void test_stop_writes_run_0(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	known_knobs();
	assert_int_equal(ksm_write("run", "1"), 0);
	struct daemon d;
	/* thres 0 and no committed process: ksm is not needed. */
	daemon_start(&d, "KSM_THRES_COEF=0\nKSM_THRES_CONST=0\nKSM_PROCESS_PATTERN='^no such process$'\n");
	kill(d.pid, SIGUSR1);
	assert_true(wait_log(&d, "and free > 0, stop ksm", 1, 5));
	assert_int_equal(ksm_read_num("run"), 0);  /* 0: merged pages stay merged; never 2 */
	assert_int_equal(daemon_stop(&d), 0);
}

static void test_daemon_mode_and_pidfile(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	char *dir = make_tempdir();
	char conf[PATH_MAX], pidfile[PATH_MAX], text[PATH_MAX * 2];
	snprintf(conf, sizeof(conf), "%s/ksmtuned.conf", dir);
	snprintf(pidfile, sizeof(pidfile), "%s/ksmtune.pid", dir);
	snprintf(text, sizeof(text), "PIDFILE=%s\n", pidfile);
	write_file_p(conf, text);
	const char *prog = build_path("sbin/ksmtuned");
	const char *argv[] = { prog, "-c", conf, NULL };
	struct cmd_result r;
	/* The parent returns once the daemon is set up. */
	run_cmd(argv, NULL, -1, &r);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	char buf[32] = "";
	FILE *f = fopen(pidfile, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	pid_t pid = atoi(buf);
	assert_true(pid > 0);
	assert_int_equal(kill(pid, 0), 0);
	char comm[64], path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(comm, sizeof(comm), f));
	fclose(f);
	assert_string_equal(comm, "ksmtuned\n");

	run_cmd(argv, NULL, -1, &r);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "already running"));
	cmd_result_free(&r);

	kill(pid, SIGTERM);
	bool gone = false;
	for (int i = 0; i < 500 && !gone; i++) {
		gone = access(pidfile, F_OK) != 0;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	assert_true(gone);
	remove_tree(dir);
	free(dir);
}

static void test_adaptive_merges_a_new_guest_then_stops(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	known_knobs();
	struct daemon d;
	daemon_start(&d, "KSM_POLICY=adaptive\nKSM_ADAPTIVE_INTERVAL=1\nKSM_THRES_COEF=100\n");
	struct dup_child c;
	double t0 = now_s();
	dup_child_start(&c, 4096, 64);
	char want[96];
	snprintf(want, sizeof(want), "start ksm: new mergeable process %d", (int)c.pid);
	assert_true(wait_log(&d, want, 1, 5));
	print_message("# adaptive started ksmd %.2f s after the guest appeared\n", now_s() - t0);
	assert_int_equal(ksm_read_num("run"), 1);
	assert_true(wait_log(&d, "stop ksm: a full scan earned", 1, 20));
	print_message("# and stopped it %.2f s after\n", now_s() - t0);
	assert_int_equal(ksm_read_num("run"), 0);
	assert_true(ksm_read_num("pages_sharing") > 0);  /* merged, and still merged */
	dup_child_stop(&c);
	assert_int_equal(daemon_stop(&d), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classic_run_reload_retune),
		cmocka_unit_test(test_stop_writes_run_0),
		cmocka_unit_test(test_daemon_mode_and_pidfile),
		cmocka_unit_test(test_adaptive_merges_a_new_guest_then_stops),
	};
	return cmocka_run_group_tests_name("ksmtuned_daemon", tests, ksm_group_setup, ksm_group_teardown);
}
