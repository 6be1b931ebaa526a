/* SPDX-License-Identifier: MIT */
/*
 * Description: unmodified programs from Debian under the preload library.
 * Three python3 processes build the same 48 MiB of data, run with
 * `samepage run --user-engine`; samepaged merges them across processes,
 * and every program still computes the right digest of its data (with
 * threads, fork and exec along the way).
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PY "/usr/bin/python3"
#define MIB 48

static const char script[] =
	"import hashlib, os, subprocess, sys, threading\n"
	"n = %d * 1024 * 1024 // 4096\n"
	"data = b''.join(hashlib.sha256(i.to_bytes(4, 'little')).digest() * 128 for i in range(n))\n"
	"t = threading.Thread(target=lambda: sum(data[::4096]))\n"
	"t.start(); t.join()\n"
	"subprocess.run(['true'], check=True)\n"      /* fork and exec under the preload */
	"if os.fork() == 0:\n"
	"    os._exit(0 if hashlib.sha256(data).digest() else 1)\n"
	"os.wait()\n"
	"print('ready', flush=True)\n"
	"sys.stdin.readline()\n"
	"print(hashlib.sha256(data).hexdigest(), flush=True)\n";

static pid_t daemon_pid;

/* In a sanitizer build the preload library needs the sanitizer's runtime
 * loaded first in programs that were not built with it (python3). */
static void sanitizer_runtime_first(void)
{
	const char *san = getenv("SAMEPAGE_SAN");
	const char *rt = !san ? NULL : strstr(san, "address") ? "libasan.so.*" : strstr(san, "thread") ? "libtsan.so.*" : NULL;
	if (!rt)
		return;
	char pat[128];
	snprintf(pat, sizeof(pat), "/usr/lib/*-linux-gnu/%s", rt);
	glob_t g;
	if (glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
		setenv("LD_PRELOAD", g.gl_pathv[0], 1);
		/* python3 itself is not what is tested here */
		setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
	}
	globfree(&g);
}

static void kill_daemon_at_exit(void)
{
	if (daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
}

struct py {
	pid_t pid;
	FILE *in, *out;
};

static struct py py_start(const char *code, bool preload)
{
	int in[2], out[2];
	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		if (preload) {
			const char *argv[] = { build_path("bin/samepage"), "run", "--user-engine", "-q", "--", PY, "-c",
					       code, NULL };
			execv(argv[0], (char *const *)argv);
		} else {
			execl(PY, PY, "-c", code, (char *)NULL);
		}
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	struct py p = { pid, fdopen(in[1], "w"), fdopen(out[0], "r") };
	return p;
}

static int py_finish(struct py *p, char *digest, size_t len)
{
	fputs("go\n", p->in);
	fflush(p->in);
	if (!fgets(digest, (int)len, p->out))
		digest[0] = 0;
	digest[strcspn(digest, "\n")] = 0;
	fclose(p->in);
	fclose(p->out);
	int st;
	waitpid(p->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_python_processes_merge(void **state)
{
	(void)state;
	if (access(PY, X_OK) != 0)
		SKIP_BECAUSE("%s is not installed", PY);
	const char *san = getenv("SAMEPAGE_SAN");
	if (san && strstr(san, "thread"))
		SKIP_BECAUSE("under ThreadSanitizer, merge-any adopts the runtime's own private anonymous "
			     "memory, and python3 crashes in about 1 run in 4 (docs/design.md, sanitizer builds)");
	sp_engine *probe;
	if (sp_engine_new(SP_ENGINE_MANUAL, &probe) != 0)
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel");
	sp_engine_free(probe);

	char *dir = make_tempdir();
	char sock[PATH_MAX], code[2048];
	snprintf(sock, sizeof(sock), "%s/d/samepaged.sock", dir);
	setenv("SAMEPAGE_SOCKET", sock, 1);
	snprintf(code, sizeof(code), script, MIB);

	/* the digest an unmerged python3 computes */
	struct py ref = py_start(code, false);
	char line[128], expect[128];
	assert_non_null(fgets(line, sizeof(line), ref.out));
	assert_int_equal(py_finish(&ref, expect, sizeof(expect)), 0);
	assert_int_equal(strlen(expect), 64);

	atexit(kill_daemon_at_exit);
	pid_t d = fork();
	if (d == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(build_path("bin/samepaged"), "samepaged", "--socket", sock, (char *)NULL);
		_exit(127);
	}
	daemon_pid = d;
	sp_ctl *ctl = NULL;
	for (int i = 0; i < 200 && sp_ctl_open(sock, &ctl) != 0; i++)
		usleep(10000);
	assert_non_null(ctl);
	sp_setting fast[] = { { "pages_to_scan", "8000" }, { "sleep_millisecs", "2" } };
	sp_diag dg;
	assert_int_equal(sp_ctl_set(ctl, fast, 2, 0, &dg), 0);

	enum { N = 3 };
	struct py p[N];
	for (int i = 0; i < N; i++) {
		p[i] = py_start(code, true);
		assert_non_null(fgets(line, sizeof(line), p[i].out));
		assert_string_equal(line, "ready\n");
	}
	/* merged across the three: (N - 1) x 48 MiB of pages saved, nearly */
	int64_t want = (N - 1) * (MIB * 256) * 9 / 10, sharing = 0;
	for (int t = 0; t < 600 && sharing < want; t++) {
		sp_sample s;
		if (sp_ctl_sample(ctl, &s) == 0)
			sharing = s.value[SP_PAGES_SHARING];
		usleep(50000);
	}
	sp_proc_ksm *list;
	size_t n;
	/* As in the kernel, the processes' ksm_merging_pages add up to
	 * pages_shared + pages_sharing (zero pages included when
	 * use_zero_pages=0); the clients report within a second. */
	int64_t sum = -1, merged = 0;
	for (int t = 0; t < 40 && sum != merged; t++) {
		sp_sample s;
		assert_int_equal(sp_ctl_sample(ctl, &s), 0);
		merged = s.value[SP_PAGES_SHARED] + s.value[SP_PAGES_SHARING];
		assert_int_equal(sp_ctl_processes(ctl, &list, &n), 0);
		sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += list[i].ksm_merging_pages;
		free(list);
		if (sum != merged)
			usleep(250000);
	}
	print_message("pages_sharing %lld across %zu python3 processes\n", (long long)sharing, n);
	assert_int_equal(sum, merged);
	assert_true(sharing >= want);
	assert_true(n >= N);
	for (int i = 0; i < N; i++) {
		char got[128];
		assert_int_equal(py_finish(&p[i], got, sizeof(got)), 0);
		assert_string_equal(got, expect);
	}
	sp_ctl_close(ctl);
	kill(d, SIGTERM);
	waitpid(d, NULL, 0);
	daemon_pid = 0;
	unsetenv("SAMEPAGE_SOCKET");
	remove_tree(dir);
	free(dir);
}

/* Without a daemon the program runs unchanged (and says nothing). */
static void test_without_daemon(void **state)
{
	(void)state;
	if (access(PY, X_OK) != 0)
		SKIP_BECAUSE("%s is not installed", PY);
	setenv("SAMEPAGE_SOCKET", "/nonexistent/samepaged.sock", 1);
	const char *argv[] = { "samepage", "run", "--user-engine", "--", PY, "-c", "print(6 * 7)", NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	unsetenv("SAMEPAGE_SOCKET");
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "42\n");
	assert_non_null(strstr(r.err, "no samepaged"));  /* the note, on stderr */
	cmd_result_free(&r);
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_python_processes_merge),
		cmocka_unit_test(test_without_daemon),
	};
	signal(SIGPIPE, SIG_IGN);
	sanitizer_runtime_first();
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("preload", tests, NULL, NULL);
}
