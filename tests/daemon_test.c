/* SPDX-License-Identifier: MIT */
/*
 * Description: merging across real, separate processes through samepaged:
 * several processes with the same data share physical pages (seen in
 * pagemap and PSS), every page verified; clients keep the daemon's pace;
 * two users on one daemon who must never share; the CLI and ksmtuned on
 * the user engine. What goes wrong (clients or the daemon killed, paused,
 * hostile) is in daemon_failure_test.c.
 */
#include "daemon_util.h"
#include "proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* The PFN of another process's page, as root sees it (0 if hidden). */
static uint64_t pfn_of(pid_t pid, uint64_t addr)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	int fd = open(path, O_RDONLY);
	uint64_t v = 0;
	if (fd >= 0 && pread(fd, &v, 8, (off_t)(addr / PG * 8)) != 8)
		v = 0;
	if (fd >= 0)
		close(fd);
	return v & ((1ull << 55) - 1);
}

/* ------------------------------------------------------------ tests */

static void test_processes_merge_across(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	enum { N = 4, PAGES = 2048, DISTINCT = 32 };
	struct client c[N];
	for (int i = 0; i < N; i++)
		c[i] = client_start(PAGES, DISTINCT, -1, false);
	assert_true(wait_sharing(N * PAGES - DISTINCT - 64, 30000));
	sp_sample s = domain_sample();
	assert_int_equal(s.value[SP_PAGES_SHARED], DISTINCT);
	int64_t pss_total = 0;
	uint64_t pfn0 = 0;
	for (int i = 0; i < N; i++) {
		struct answer a = client_verify(&c[i]);
		assert_int_equal(a.bad, 0);
		pss_total += a.pss_kb;
		if (i == 0)
			pfn0 = a.pfn;
		else if (a.pfn && pfn0)
			assert_true(a.pfn == pfn0);  /* one physical page in every process */
	}
	if (!pfn0)
		print_message("PFNs hidden (not root): sharing checked through PSS only\n");
	/* 4 x 8 MiB of data now cost about one store of 128 KiB: PSS shows it */
	print_message("total PSS of %d clients: %lld kB (data alone was %d kB)\n", N, (long long)pss_total,
		      N * PAGES * 4);
	if (under_tsan())
		print_message("ThreadSanitizer's shadow memory is in PSS: checked through PFNs and counters only\n");
	else
		assert_true(pss_total < N * PAGES * 4 / 2 + N * 4096);
	for (int i = 0; i < N; i++)
		assert_int_equal(client_stop(&c[i]), 0);
	/* everyone left: nothing is shared any more */
	msleep(100);
	assert_int_equal(domain_sample().value[SP_PAGES_SHARING], 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* A client paces itself in its turn, at the daemon's knobs, and a turn
 * longer than the daemon's 5 s grant timeout is not cut short: its
 * progress messages keep it. 16384 pages at 50 per 20 ms make a first
 * pass of about 6.5 s. */
static void test_turn_keeps_the_pace(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	set_pace("50", "20");
	enum { PAGES = 16384, DISTINCT = 64 };
	struct client c = client_start(PAGES, DISTINCT, -1, false);
	msleep(1000);
	int64_t s0 = domain_sample().value[SP_PAGES_SCANNED];
	msleep(4000);
	int64_t s1 = domain_sample().value[SP_PAGES_SCANNED];
	/* 2,500 pages/s; the counters come with the progress messages, at
	 * least once a second, so the window is 4 +- 1 s. */
	print_message("scanned %lld pages in 4 s at 2500 pages/s\n", (long long)(s1 - s0));
	assert_true(s1 - s0 <= 2500 * 5 * 12 / 10);
	assert_true(s1 - s0 >= (under_tsan() ? 500 : 2500));
	int64_t scans = 0;
	for (int t = 0; t < san_ms(20000) && scans < 1; t += 100, msleep(100))
		scans = domain_sample().value[SP_FULL_SCANS];
	assert_true(scans >= 1);
	char log[PATH_MAX];
	snprintf(log, sizeof(log), "%s/daemon.log", sock_dir);
	char *text = read_whole_file(log);
	assert_non_null(text);
	assert_null(strstr(text, "did not finish its grant in time"));
	free(text);
	assert_int_equal(client_verify(&c).bad, 0);
	assert_int_equal(client_stop(&c), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* A full scan is every client's pass, each page once (scanned or skipped),
 * also when a batch only walks resting blocks: the pages the clients
 * report per full scan the daemon counts are their registered pages. A
 * client whose turn ended at such a batch had its pass counted twice. */
static void test_full_scan_covers_every_page_once(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	set_pace("100", "1");  /* a batch of 100 pages walks at most 6,464 resting pages */
	enum { PAGES = 16384, DISTINCT = 64 };
	struct client c = client_start(PAGES, DISTINCT, -1, false);
	assert_true(wait_sharing(PAGES - DISTINCT - 64, 60000));
	msleep(san_ms(3000));  /* quiet blocks start resting */
	sp_sample s0 = domain_sample();
	int64_t scans = 0;
	for (int t = 0; t < san_ms(30000) && scans < 20; t += 100, msleep(100))
		scans = domain_sample().value[SP_FULL_SCANS] - s0.value[SP_FULL_SCANS];
	sp_sample s1 = domain_sample();
	scans = s1.value[SP_FULL_SCANS] - s0.value[SP_FULL_SCANS];
	int64_t pages = s1.value[SP_PAGES_SCANNED] - s0.value[SP_PAGES_SCANNED] + s1.value[SP_PAGES_SKIPPED] -
			s0.value[SP_PAGES_SKIPPED];
	print_message("%lld full scans, %lld pages scanned or skipped: %.2f passes over the memory each\n",
		      (long long)scans, (long long)pages, scans ? (double)pages / PAGES / (double)scans : 0);
	assert_true(scans >= 10);
	/* counters come at the end of each turn: within a pass of the count */
	assert_true(pages >= (int64_t)PAGES * (scans - 1));
	assert_true(pages <= (int64_t)PAGES * (scans + 1));
	assert_int_equal(client_verify(&c).bad, 0);
	assert_int_equal(client_stop(&c), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* A partner's publication reaches the other client as notes, thousands at
 * once; they are merged in the client's next turn, as far as its budget
 * goes, not a few hundred per pass (each pass walks all of its memory).
 * Two clients with 6,000 contents each: about three passes at a budget
 * above their size, where a few hundred per pass took more than twenty. */
static void test_partner_pages_merge_in_one_pass(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	sp_ctl *ctl;
	assert_int_equal(sp_ctl_open(sock_path, &ctl), 0);
	sp_setting stop[] = { { "run", "0" } }, go[] = { { "run", "1" } };
	sp_diag diag;
	assert_int_equal(sp_ctl_set(ctl, stop, 1, 0, &diag), 0);
	/* a turn is one batch; 50 ms between turns: a pass lasts at least
	 * 100 ms, so polling every 20 ms counts at most one pass too many */
	set_pace("20000", "50");
	enum { PAGES = 6000 };
	struct client a = client_start(PAGES, PAGES, -1, false), b = client_start(PAGES, PAGES, -1, false);
	int64_t s0 = domain_sample().value[SP_FULL_SCANS];
	assert_int_equal(sp_ctl_set(ctl, go, 1, 0, &diag), 0);
	assert_true(wait_sharing(PAGES, 60000));
	int64_t scans = domain_sample().value[SP_FULL_SCANS] - s0;
	print_message("%d pages in each of two clients merged in %lld full scans\n", PAGES, (long long)scans);
	assert_true(scans <= 6);
	assert_int_equal(client_verify(&a).bad, 0);
	assert_int_equal(client_verify(&b).bad, 0);
	assert_int_equal(client_stop(&a), 0);
	assert_int_equal(client_stop(&b), 0);
	sp_ctl_close(ctl);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* One system daemon, two users with the same data: they never share. */
static void test_two_users_never_share(void **state)
{
	(void)state;
	if (!is_root())
		SKIP_BECAUSE("running clients as two users needs root");
	NEED_ENGINE();
	pid_t d = start_daemon(true);
	chmod(sock_dir, 0755);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/d", sock_dir);
	chmod(dir, 0755);
	enum { PAGES = 512 };
	struct client u1a = client_start(PAGES, PAGES, NOBODY_UID, false);
	struct client u1b = client_start(PAGES, PAGES, NOBODY_UID, false);
	struct client u2 = client_start(PAGES, PAGES, NOBODY_UID - 1, false);
	/* wait until the first user's two processes share */
	bool merged = false;
	struct answer a, b, c;
	/* the clients cannot see PFNs; root can, in their pagemap */
	for (int t = 0; t < 300 && !merged; t++) {
		a = client_verify(&u1a);
		b = client_verify(&u1b);
		a.pfn = pfn_of(u1a.pid, a.addr);
		b.pfn = pfn_of(u1b.pid, b.addr);
		merged = a.pfn && a.pfn == b.pfn;
		msleep(100);
	}
	c = client_verify(&u2);
	c.pfn = pfn_of(u2.pid, c.addr);
	print_message("PFNs: user A %#llx %#llx, user B %#llx\n", (unsigned long long)a.pfn,
		      (unsigned long long)b.pfn, (unsigned long long)c.pfn);
	assert_int_equal(a.bad + b.bad + c.bad, 0);
	assert_true(merged);
	assert_true(c.pfn && c.pfn != a.pfn);  /* the other user has its own store */
	/* each user sees only its own processes */
	pid_t pid = fork();
	if (pid == 0) {
		if (setgid(NOBODY_UID - 1) || setuid(NOBODY_UID - 1))
			_exit(5);
		sp_ctl *ctl;
		sp_proc_ksm *list;
		size_t n;
		if (sp_ctl_open(sock_path, &ctl) || sp_ctl_processes(ctl, &list, &n))
			_exit(6);
		int bad = n != 1 || list[0].pid != u2.pid;
		/* and may not change the pacing of everyone */
		sp_setting s = { "pages_to_scan", "1" };
		sp_diag dg;
		bad += sp_ctl_set(ctl, &s, 1, 0, &dg) != -EACCES;
		_exit(bad ? 7 : 0);
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(client_stop(&u1a), 0);
	assert_int_equal(client_stop(&u1b), 0);
	assert_int_equal(client_stop(&u2), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* A per-user daemon serves its own user only. */
static void test_per_user_daemon_refuses_others(void **state)
{
	(void)state;
	if (!is_root())
		SKIP_BECAUSE("connecting as another user needs root");
	pid_t d = start_daemon(false);
	chmod(sock_dir, 0755);  /* let the other user reach the socket: SO_PEERCRED must stop it */
	pid_t pid = fork();
	if (pid == 0) {
		if (setgid(NOBODY_UID) || setuid(NOBODY_UID))
			_exit(5);
		sp_ctl *ctl;
		int r = sp_ctl_open(sock_path, &ctl);
		_exit(r == 0 ? 1 : 0);
	}
	int st;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

static void test_cli_user_engine(void **state)
{
	(void)state;
	NEED_ENGINE();
	setenv("SAMEPAGE_SOCKET", "/nonexistent/dir/sock", 1);
	struct cmd_result r;
	run_samepage(&r, "status", "--engine", "user", NULL);
	assert_int_equal(r.status, 3);
	assert_non_null(strstr(r.err, "samepaged"));
	cmd_result_free(&r);
	unsetenv("SAMEPAGE_SOCKET");
	pid_t d = start_daemon(false);
	struct client a = client_start(256, 2, -1, false);
	struct client b = client_start(256, 2, -1, false);
	assert_true(wait_sharing(512 - 2 - 8, 30000));
	run_samepage(&r, "status", "--engine", "user", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "\"engine\": \"user\""));
	assert_non_null(strstr(r.out, "\"clients\": 2"));
	cmd_result_free(&r);
	run_samepage(&r, "ps", "--engine", "user", NULL);
	assert_int_equal(r.status, 0);
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", a.pid);
	assert_non_null(strstr(r.out, pid));
	cmd_result_free(&r);
	run_samepage(&r, "set", "--engine", "user", "sleep_millisecs=7", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	run_samepage(&r, "get", "--engine", "user", "sleep_millisecs", NULL);
	assert_string_equal(r.out, "7\n");
	cmd_result_free(&r);
	run_samepage(&r, "set", "--engine", "user", "sleep_millisecs=x", NULL);
	assert_int_equal(r.status, 2);
	cmd_result_free(&r);
	assert_int_equal(client_stop(&a), 0);
	assert_int_equal(client_stop(&b), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

static bool log_has(const char *path, const char *needle, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 50) {
		FILE *f = fopen(path, "r");
		if (f) {
			char line[512];
			bool found = false;
			while (!found && fgets(line, sizeof(line), f))
				found = strstr(line, needle) != NULL;
			fclose(f);
			if (found)
				return true;
		}
		msleep(50);
	}
	return false;
}

static int64_t domain_knob(sp_param p)
{
	return domain_sample().value[p];
}

/* ksmtuned's adaptive policy driving samepaged instead of the kernel:
 * it starts the engine for a new client within seconds, the clients get
 * merged, and it stops the engine once a full scan earns nothing. The
 * kernel's knobs are never touched. */
static void test_ksmtuned_drives_user_engine(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	sp_ctl *c;
	assert_int_equal(sp_ctl_open(sock_path, &c), 0);
	sp_setting off[] = { { "run", "0" } };
	sp_diag dg;
	assert_int_equal(sp_ctl_set(c, off, 1, 0, &dg), 0);
	sp_ctl_info info;
	assert_int_equal(sp_ctl_info_get(c, &info), 0);
	assert_int_equal(info.daemon_pid, d);
	sp_ctl_close(c);
	/* Held so that nothing else changes the kernel's KSM meanwhile: the
	 * test shows ksmtuned leaves it alone. */
	int lock = ksm_lock();
	struct ksm_knobs kernel_before;
	ksm_save(&kernel_before);

	char conf[PATH_MAX], logp[PATH_MAX], text[2048];
	snprintf(conf, sizeof(conf), "%s/ksmtuned.conf", sock_dir);
	snprintf(logp, sizeof(logp), "%s/ksmtuned.log", sock_dir);
	snprintf(text, sizeof(text),
		 "KSM_POLICY=adaptive\nKSM_ADAPTIVE_INTERVAL=1\nKSM_THRES_COEF=100\n"
		 "KSM_ENGINE=user\nKSM_ENGINE_SOCKET=%s\nDEBUG=1\nLOGFILE=%s\nPIDFILE=\n",
		 sock_path, logp);
	write_file_p(conf, text);
	pid_t t = fork();
	assert_true(t >= 0);
	if (t == 0) {
		const char *prog = build_path("sbin/ksmtuned");
		execl(prog, prog, "--foreground", "--config", conf, (char *)NULL);
		_exit(127);
	}
	struct client a = client_start(1024, 16, -1, false);
	struct client b = client_start(1024, 16, -1, false);
	char want[96];
	snprintf(want, sizeof(want), "new mergeable process %d", (int)a.pid);
	bool started = log_has(logp, want, 10000);
	if (!started) {
		snprintf(want, sizeof(want), "new mergeable process %d", (int)b.pid);
		started = log_has(logp, want, 1000);
	}
	assert_true(started);
	assert_true(wait_sharing(2048 - 16 - 16, 30000));
	assert_true(log_has(logp, "stop ksm: a full scan earned", 30000));
	assert_int_equal(domain_knob(SP_RUN), 0);
	assert_true(domain_knob(SP_PAGES_SHARING) > 0);  /* stopped, still merged */
	assert_int_equal(client_verify(&a).bad, 0);
	assert_int_equal(client_verify(&b).bad, 0);
	assert_int_equal(sp_ctl_open(sock_path, &c), 0);
	assert_int_equal(sp_ctl_info_get(c, &info), 0);
	assert_true(info.cpu_seconds > 0);  /* the clients' engine threads did the work */
	sp_ctl_close(c);
	kill(t, SIGTERM);
	int st;
	waitpid(t, &st, 0);
	struct ksm_knobs kernel_after;
	ksm_save(&kernel_after);
	bool untouched = ksm_same(&kernel_before, &kernel_after);
	ksm_unlock(lock);
	assert_true(untouched);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(client_stop(&a), 0);
	assert_int_equal(client_stop(&b), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Voluntary context switches of this process's engine threads (named
 * "samepage"; a sanitizer has threads of its own). */
static int64_t engine_threads_wakes(void)
{
	int64_t sum = 0;
	DIR *dir = opendir("/proc/self/task");
	assert_non_null(dir);
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		char path[PATH_MAX], comm[32] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;  /* gone meanwhile */
		bool engine = fgets(comm, sizeof(comm), f) && strcmp(comm, "samepage\n") == 0;
		fclose(f);
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", de->d_name);
		sum += engine ? proc_kb(path, "voluntary_ctxt_switches") : 0;
	}
	closedir(dir);
	return sum;
}

/* sp_engine_free() 100 ms after its thread woke (for its counters, or a
 * message), when the thread's wait has ~0.9 s to go: its time in ms. */
static int64_t free_after_a_wake(sp_engine *e)
{
	int64_t w = engine_threads_wakes();
	for (int t = 0; t < 3000 && engine_threads_wakes() == w; t += 5)
		msleep(5);
	msleep(100);
	int64_t t0 = now_ns();
	assert_int_equal(sp_engine_free(e), 0);
	int64_t took_ms = (now_ns() - t0) / 1000000;
	print_message("sp_engine_free() took %lld ms\n", (long long)took_ms);
	return took_ms;
}

/* Between turns (run=0 here) a client's thread wakes once a second to look
 * at its counters, not ten times, and sends them only when they changed;
 * and its engine still stops at once, though its wait would last up to a
 * second more (an eventfd ends it). */
static void test_idle_client_sleeps_and_stops_at_once(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	set_knob("run", "0");
	enum { ENGINES = 4 };
	sp_engine *e[ENGINES];
	size_t len = 64 * PG;
	uint8_t *m = mmap(NULL, ENGINES * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	memset(m, 7, ENGINES * len);
	for (int k = 0; k < ENGINES; k++) {
		assert_int_equal(sp_engine_new(SP_ENGINE_SHARED, &e[k]), 0);
		assert_int_equal(sp_madvise(e[k], m + k * len, len, MADV_MERGEABLE), 0);
	}
	msleep(1500);  /* connected, first counters sent */
	char dstatus[64];
	snprintf(dstatus, sizeof(dstatus), "/proc/%d/status", (int)d);
	int64_t w0 = engine_threads_wakes();
	long dw0 = proc_kb(dstatus, "voluntary_ctxt_switches");
	msleep(3000);
	int64_t w1 = engine_threads_wakes();
	long dw1 = proc_kb(dstatus, "voluntary_ctxt_switches");
	print_message("%d engine threads woke %lld times in 3 s between turns, samepaged %ld times\n", ENGINES,
		      (long long)(w1 - w0), dw1 - dw0);
	assert_true(w1 - w0 >= 2 * ENGINES);  /* to look at their counters, each second */
	assert_true(w1 - w0 <= 8 * ENGINES);  /* every 100 ms: 30 each */
	/* Their counters did not change: the daemon sleeps out its own
	 * second (run=0) instead of reading them, 4 times a second. */
	assert_true(dw1 - dw0 <= 6);
	/* A change still goes: more memory registered (more metadata) shows
	 * in the domain's general_profit within the second. */
	sp_sample s0, s1;
	sp_ctl *ctl;
	assert_int_equal(sp_ctl_open(sock_path, &ctl), 0);
	assert_int_equal(sp_ctl_sample(ctl, &s0), 0);
	size_t more = 1024 * PG;
	uint8_t *m2 = mmap(NULL, more, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m2 != MAP_FAILED);
	assert_int_equal(sp_madvise(e[1], m2, more, MADV_MERGEABLE), 0);
	bool seen = false;
	for (int t = 0; t < 3000 && !seen; t += 50, msleep(50)) {
		assert_int_equal(sp_ctl_sample(ctl, &s1), 0);
		seen = s1.value[SP_GENERAL_PROFIT] != s0.value[SP_GENERAL_PROFIT];
	}
	assert_true(seen);
	sp_ctl_close(ctl);
	for (int k = 1; k < ENGINES; k++)
		assert_int_equal(sp_engine_free(e[k]), 0);
	assert_true(free_after_a_wake(e[0]) < 500);
	/* Without an eventfd, the waits stay short instead. */
	_sp_fault_set("eventfd:EMFILE:1");
	assert_int_equal(sp_engine_new(SP_ENGINE_SHARED, &e[0]), 0);
	_sp_fault_set(NULL);
	assert_int_equal(sp_madvise(e[0], m, len, MADV_MERGEABLE), 0);
	msleep(500);
	assert_true(free_after_a_wake(e[0]) < 500);
	for (size_t i = 0; i < ENGINES * len; i++)
		assert_int_equal(m[i], 7);
	munmap(m, ENGINES * len);
	munmap(m2, more);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* Control tools read the counters from a page samepaged shares, as sysfs
 * is read: reading does not wake the daemon (each request over the socket
 * did, ~70 us of its CPU), and what it reads is never stale: a setting
 * shows at once, a daemon gone is an error. The page is sealed: a reader
 * cannot change what the others read, nor hand a false one around. */
static void test_counters_read_without_waking_the_daemon(void **state)
{
	(void)state;
	pid_t d = start_daemon(false);
	set_pace("100", "20");
	sp_ctl *c;
	assert_int_equal(sp_ctl_open(sock_path, &c), 0);
	sp_sample s;
	assert_int_equal(sp_ctl_sample(c, &s), 0);
	assert_int_equal(s.value[SP_PAGES_TO_SCAN], 100);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)d);
	long w0 = proc_kb(path, "voluntary_ctxt_switches");
	for (int i = 0; i < 200; i++)
		assert_int_equal(sp_ctl_sample(c, &s), 0);
	long w1 = proc_kb(path, "voluntary_ctxt_switches");
	print_message("samepaged woke %ld times for 200 readings\n", w1 - w0);
	assert_true(w1 - w0 < 20);
	/* read your writes */
	set_pace("123", "20");
	assert_int_equal(sp_ctl_sample(c, &s), 0);
	assert_int_equal(s.value[SP_PAGES_TO_SCAN], 123);
	/* the page as a reader gets it: read-only, sealed against writes */
	int fd = -1;
	struct sp_count z = { 0, 0 };
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	assert_int_equal(connect(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct sp_hello h = { .flags = SP_HELLO_CONTROL, .pid = getpid() };
	static uint8_t buf[SP_PROTO_MAX_PAYLOAD];
	struct sp_hdr hd;
	assert_int_equal(_sp_proto_send(sock, SP_MSG_HELLO, 0, &h, sizeof(h), -1), 0);
	assert_true(_sp_proto_recv(sock, &hd, buf, sizeof(buf), NULL) >= 0);
	assert_int_equal(_sp_proto_send(sock, SP_MSG_STATS_MAP_REQ, 0, &z, sizeof(z), -1), 0);
	assert_true(_sp_proto_recv(sock, &hd, buf, sizeof(buf), &fd) >= 0);
	assert_int_equal(hd.type, SP_MSG_STATS_MAP);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	void *w = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(w == MAP_FAILED);
	void *r = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(r != MAP_FAILED);
	assert_int_not_equal(mprotect(r, PG, PROT_READ | PROT_WRITE), 0);
	char path2[64];
	snprintf(path2, sizeof(path2), "/proc/self/fd/%d", fd);
	int rw = open(path2, O_RDWR);  /* a writable reopening cannot write either */
	if (rw >= 0) {
		assert_int_equal(write(rw, "x", 1), -1);
		assert_true(mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0) == MAP_FAILED);
		assert_int_not_equal(ftruncate(rw, 0), 0);
		close(rw);
	}
	munmap(r, PG);
	close(fd);
	close(sock);
	/* an unsealed page is refused */
	int fake = memfd_create("fake", MFD_CLOEXEC);
	assert_int_equal(ftruncate(fake, PG), 0);
	const struct sp_statpage *p;
	assert_int_equal(_sp_statpage_map(fake, &p), -EPROTO);
	close(fake);
	/* a daemon gone: an error, not the last counters */
	stop_daemon(d, SIGKILL);
	assert_int_not_equal(sp_ctl_sample(c, &s), 0);
	sp_ctl_close(c);
	cleanup_dir();
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_processes_merge_across),
		cmocka_unit_test(test_turn_keeps_the_pace),
		cmocka_unit_test(test_full_scan_covers_every_page_once),
		cmocka_unit_test(test_partner_pages_merge_in_one_pass),
		cmocka_unit_test(test_two_users_never_share),
		cmocka_unit_test(test_per_user_daemon_refuses_others),
		cmocka_unit_test(test_cli_user_engine),
		cmocka_unit_test(test_ksmtuned_drives_user_engine),
		cmocka_unit_test(test_idle_client_sleeps_and_stops_at_once),
		cmocka_unit_test(test_counters_read_without_waking_the_daemon),
	};
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("daemon", tests, NULL, NULL);
}
