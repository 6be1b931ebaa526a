/* SPDX-License-Identifier: MIT */
/* For the samepaged tests (daemon_test.c, daemon_failure_test.c): a daemon
 * on a private socket of the test, killed at exit whatever happens; client
 * processes with an engine shared through it, whose every page can be
 * checked; the domain's counters. Header-only, like exporter_util.h: every
 * .c file under tests/ is built as a test program of its own. */
#ifndef SP_DAEMON_UTIL_H
#define SP_DAEMON_UTIL_H

#include "helpers.h"
#include "prim.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL

/* ------------------------------------------------------------ daemon */

static char sock_path[PATH_MAX];
static char *sock_dir;
/* The daemon started and not stopped yet. A test that fails stops at the
 * failed assertion and leaves its daemon running, which kept the socket
 * (the next test's daemon would not start): it goes when the next daemon
 * starts, or at exit. */
static pid_t daemon_pid;

static inline void kill_daemon(void)
{
	if (daemon_pid > 0) {
		kill(daemon_pid, SIGKILL);
		waitpid(daemon_pid, NULL, 0);
	}
	daemon_pid = 0;
}

static inline void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A daemon on a private socket of this test; its output goes to a log. */
static inline pid_t start_daemon(bool system)
{
	if (!sock_dir) {
		sock_dir = make_tempdir();
		snprintf(sock_path, sizeof(sock_path), "%s/d/samepaged.sock", sock_dir);
		setenv("SAMEPAGE_SOCKET", sock_path, 1);
		if (system)
			chmod(sock_dir, 0755);
	}
	static bool hooked;
	if (!hooked) {
		atexit(kill_daemon);
		hooked = true;
	}
	kill_daemon();  /* of a test that failed */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char log[PATH_MAX];
		snprintf(log, sizeof(log), "%s/daemon.log", sock_dir);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		/* nothing of ours: a lock (flock(1) around the tests), a client's pipe */
		close_range(3, ~0U, 0);
		const char *argv[] = { build_path("bin/samepaged"), "-v", "--socket", sock_path,
				       system ? "--system" : NULL, NULL };
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	daemon_pid = pid;
	/* ready when the socket answers */
	for (int i = 0; i < 200; i++) {
		sp_ctl *c;
		if (sp_ctl_open(sock_path, &c) == 0) {
			sp_setting fast[] = { { "pages_to_scan", "5000" }, { "sleep_millisecs", "2" } };
			sp_diag d;
			assert_int_equal(sp_ctl_set(c, fast, 2, 0, &d), 0);
			sp_ctl_close(c);
			return pid;
		}
		msleep(10);
	}
	fail_msg("samepaged did not start (see %s/daemon.log)", sock_dir);
	return -1;
}

static inline void stop_daemon(pid_t pid, int sig)
{
	if (pid == daemon_pid)
		daemon_pid = 0;
	kill(pid, sig);
	int st;
	waitpid(pid, &st, 0);
}

static inline void cleanup_dir(void)
{
	if (sock_dir) {
		remove_tree(sock_dir);
		free(sock_dir);
		sock_dir = NULL;
	}
}

static inline sp_sample domain_sample(void)
{
	sp_sample s;
	memset(&s, 0, sizeof(s));
	sp_ctl *c;
	if (sp_ctl_open(sock_path, &c) == 0) {
		sp_ctl_sample(c, &s);
		sp_ctl_close(c);
	}
	return s;
}

static inline bool wait_sharing(int64_t want, int timeout_ms)
{
	for (int t = 0; t < san_ms(timeout_ms); t += 20) {
		if (domain_sample().value[SP_PAGES_SHARING] >= want)
			return true;
		msleep(20);
	}
	return false;
}

/* ------------------------------------------------------------ clients */

struct client {
	pid_t pid;
	int cmd, reply;
};

struct answer {
	int32_t bad;          /* pages that differ from what the client wrote */
	uint64_t pfn;         /* of its first page (0 if hidden) */
	int64_t pss_kb;
	uint64_t addr;        /* of its first page */
};

static inline int64_t pss_kb(void)
{
	return proc_kb("/proc/self/smaps_rollup", "Pss");
}

/* Content number k: a byte pattern, and k itself in the first 8 bytes, so
 * that any number of contents are all different. */
static inline void fill(uint8_t *p, uint64_t k)
{
	memset(p, (int)(1 + k % 251), PG);
	memcpy(p, &k, sizeof(k));
}

static inline bool filled_ok(const uint8_t *p, uint64_t k)
{
	uint64_t got;
	memcpy(&got, p, sizeof(got));
	if (got != k)
		return false;
	for (size_t off = 8; off < PG; off += 64)
		if (p[off] != (uint8_t)(1 + k % 251))
			return false;
	return true;
}

/* Contents of a client started now begin at this number (a child keeps it). */
static size_t content_base;

static atomic_bool writer_stop;
static uint8_t *writer_area;

static inline void *writer_main(void *arg)
{
	(void)arg;
	uint64_t n = 0;
	while (!atomic_load(&writer_stop)) {
		for (int i = 0; i < 16; i++)
			memcpy(writer_area + i * PG, &n, 8);
		n++;
	}
	return NULL;
}

/* Clients started while set also rewrite their own pages with the values
 * already there: merged pages are copied on write and merged again. */
static bool rewrite_own;

static inline void *rewriter_main(void *arg)
{
	size_t pages = (size_t)arg;
	uint64_t rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)getpid();
	for (uint64_t n = 0; !atomic_load(&writer_stop); n++) {
		size_t k = (size_t)(test_rng(&rng) % pages);
		volatile uint64_t *q = (volatile uint64_t *)(writer_area + k * PG + 64);
		*q = *q;
		if (n % 32 == 0)
			msleep(1);
	}
	return NULL;
}

/* The child: an engine shared through the daemon, `pages` pages whose
 * contents repeat every `distinct` pages (the same in every client), then
 * commands from the parent: 'v' verify, 'q' quit. uid >= 0: become it. */
static inline void client_body(int cmd, int reply, size_t pages, size_t distinct, int uid, bool writer)
{
	if (uid >= 0 && (setgroups(0, NULL) || setgid((gid_t)uid) || setuid((uid_t)uid)))
		_exit(5);
	/* like a process started as that user (setuid without exec is not dumpable) */
	if (uid >= 0)
		prctl(PR_SET_DUMPABLE, 1);
	sp_engine *e;
	if (sp_engine_new(SP_ENGINE_SHARED, &e))
		_exit(6);
	uint8_t *m = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (size_t i = 0; i < pages; i++)
		fill(m + i * PG, content_base + i % distinct);
	if (sp_madvise(e, m, pages * PG, MADV_MERGEABLE))
		_exit(7);
	pthread_t th;
	if (writer) {
		writer_area = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		pthread_create(&th, NULL, writer_main, NULL);
	} else if (rewrite_own) {
		writer = true;  /* joined below */
		writer_area = m;
		pthread_create(&th, NULL, rewriter_main, (void *)pages);
	}
	char c = 'r';
	if (write(reply, &c, 1) != 1)
		_exit(8);
	while (read(cmd, &c, 1) == 1) {
		if (c == 'q')
			break;
		if (c == 'e')  /* exec: the store mappings go, the process stays */
			execl("/bin/sleep", "sleep", "30", (char *)NULL);
		if (c == 'x') {  /* the engine's next message fails: it loses the daemon */
			_sp_fault_set("proto_send:EPIPE:1");
			continue;
		}
		struct answer a = { 0, PM_PFN(pagemap_entry(m)), pss_kb(), (uintptr_t)m };
		for (size_t i = 0; i < pages; i++)
			a.bad += !filled_ok(m + i * PG, content_base + i % distinct);
		if (write(reply, &a, sizeof(a)) != sizeof(a))
			_exit(9);
	}
	if (writer) {
		atomic_store(&writer_stop, true);
		pthread_join(th, NULL);
	}
	sp_engine_free(e);
	_exit(0);
}

struct client_args {
	size_t pages, distinct;
	int uid, ms;
	bool writer;
};

/* A child process running body(cmd, reply, args), which never returns. */
static inline struct client client_spawn(void (*body)(int cmd, int reply, const struct client_args *a),
					 const struct client_args *args)
{
	int a[2], b[2];
	assert_int_equal(pipe(a), 0);
	assert_int_equal(pipe(b), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(a[1]);
		close(b[0]);
		body(a[0], b[1], args);
	}
	close(a[0]);
	close(b[1]);
	return (struct client){ pid, a[1], b[0] };
}

static inline void client_main(int cmd, int reply, const struct client_args *a)
{
	client_body(cmd, reply, a->pages, a->distinct, a->uid, a->writer);
}

/* A client's answer, or the test fails: a client stuck (on a fault nobody
 * resolves, say) made a failing test hang for minutes instead. */
static inline void client_answer(const struct client *c, void *buf, size_t len, const char *what)
{
	struct pollfd p = { c->reply, POLLIN, 0 };
	int ms = san_ms(120000);
	if (poll(&p, 1, ms) != 1)
		fail_msg("client %d: no answer to %s in %d s", (int)c->pid, what, ms / 1000);
	assert_int_equal(read(c->reply, buf, len), (ssize_t)len);
}

static inline struct client client_start(size_t pages, size_t distinct, int uid, bool writer)
{
	struct client_args args = { pages, distinct, uid, 0, writer };
	struct client c = client_spawn(client_main, &args);
	char r;
	client_answer(&c, &r, 1, "start");
	return c;
}

static inline struct answer client_verify(struct client *c)
{
	struct answer a;
	memset(&a, 0, sizeof(a));
	char v = 'v';
	assert_int_equal(write(c->cmd, &v, 1), 1);
	client_answer(c, &a, sizeof(a), "verify");
	return a;
}

static inline int client_stop(struct client *c)
{
	char q = 'q';
	if (write(c->cmd, &q, 1) != 1)
		kill(c->pid, SIGKILL);
	close(c->cmd);
	close(c->reply);
	int st;
	waitpid(c->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline bool have_engine(void)
{
	sp_engine *e;
	if (sp_engine_new(SP_ENGINE_MANUAL, &e))
		return false;
	sp_engine_free(e);
	return true;
}

#define NEED_ENGINE()                                                                   \
	do {                                                                            \
		if (!have_engine())                                                     \
			SKIP_BECAUSE("userfaultfd is not available to this user on this kernel"); \
	} while (0)

/* One knob of the daemon, as samepage set would change it. */
static inline void set_knob(const char *name, const char *value)
{
	sp_ctl *ctl;
	assert_int_equal(sp_ctl_open(sock_path, &ctl), 0);
	sp_setting one[] = { { name, value } };
	sp_diag diag;
	assert_int_equal(sp_ctl_set(ctl, one, 1, 0, &diag), 0);
	sp_ctl_close(ctl);
}

/* The daemon's pace for everyone, as samepage set would change it. */
static inline void set_pace(const char *pages_to_scan, const char *sleep_millisecs)
{
	sp_ctl *ctl;
	assert_int_equal(sp_ctl_open(sock_path, &ctl), 0);
	sp_setting pace[] = { { "pages_to_scan", pages_to_scan }, { "sleep_millisecs", sleep_millisecs } };
	sp_diag diag;
	assert_int_equal(sp_ctl_set(ctl, pace, 2, 0, &diag), 0);
	sp_ctl_close(ctl);
}

#endif
