/* SPDX-License-Identifier: MIT */
/*
 * Description: merging across real, separate processes through samepaged:
 * several processes with the same data share physical pages (seen in
 * pagemap and PSS), every page verified; a client killed mid-merge, the
 * daemon killed and restarted, hostile clients, and two users on one daemon
 * who must never share.
 */
#include "helpers.h"
#include "prim.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL

static char sock_path[PATH_MAX];
static char *sock_dir;
static pid_t daemon_pid;  /* killed at exit whatever happens */

static void kill_daemon_at_exit(void)
{
	if (daemon_pid > 0)
		kill(daemon_pid, SIGKILL);
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A daemon on a private socket of this test; its output goes to a log. */
static pid_t start_daemon(bool system)
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
		atexit(kill_daemon_at_exit);
		hooked = true;
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char log[PATH_MAX];
		snprintf(log, sizeof(log), "%s/daemon.log", sock_dir);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		const char *argv[] = { build_path("bin/samepaged"), "-v", "--socket", sock_path,
				       system ? "--system" : NULL, NULL };
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	/* ready when the socket answers */
	for (int i = 0; i < 200; i++) {
		sp_ctl *c;
		if (sp_ctl_open(sock_path, &c) == 0) {
			sp_setting fast[] = { { "pages_to_scan", "5000" }, { "sleep_millisecs", "2" } };
			sp_diag d;
			assert_int_equal(sp_ctl_set(c, fast, 2, 0, &d), 0);
			sp_ctl_close(c);
			daemon_pid = pid;
			return pid;
		}
		msleep(10);
	}
	fail_msg("samepaged did not start (see %s/daemon.log)", sock_dir);
	return -1;
}

static void stop_daemon(pid_t pid, int sig)
{
	daemon_pid = 0;
	kill(pid, sig);
	int st;
	waitpid(pid, &st, 0);
}

static void cleanup_dir(void)
{
	if (sock_dir) {
		remove_tree(sock_dir);
		free(sock_dir);
		sock_dir = NULL;
	}
}

static sp_sample domain_sample(void)
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

static bool wait_sharing(int64_t want, int timeout_ms)
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

static uint64_t page_pfn(const void *a)
{
	(void)*(volatile const uint8_t *)a;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t v = 0;
	if (pread(fd, &v, 8, (off_t)((uintptr_t)a / PG * 8)) != 8)
		v = 0;
	close(fd);
	return v & ((1ull << 55) - 1);
}

static int64_t pss_kb(void)
{
	return proc_kb("/proc/self/smaps_rollup", "Pss");
}

/* Content number k: a byte pattern, and k itself in the first 8 bytes, so
 * that any number of contents are all different. */
static void fill(uint8_t *p, uint64_t k)
{
	memset(p, (int)(1 + k % 251), PG);
	memcpy(p, &k, sizeof(k));
}

static bool filled_ok(const uint8_t *p, uint64_t k)
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

static void *writer_main(void *arg)
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

static void *rewriter_main(void *arg)
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
static void client_body(int cmd, int reply, size_t pages, size_t distinct, int uid, bool writer)
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
		struct answer a = { 0, page_pfn(m), pss_kb(), (uintptr_t)m };
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
static struct client client_spawn(void (*body)(int cmd, int reply, const struct client_args *a),
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

static void client_main(int cmd, int reply, const struct client_args *a)
{
	client_body(cmd, reply, a->pages, a->distinct, a->uid, a->writer);
}

static struct client client_start(size_t pages, size_t distinct, int uid, bool writer)
{
	struct client_args args = { pages, distinct, uid, 0, writer };
	struct client c = client_spawn(client_main, &args);
	char r;
	assert_int_equal(read(c.reply, &r, 1), 1);
	return c;
}

static struct answer client_verify(struct client *c)
{
	struct answer a;
	memset(&a, 0, sizeof(a));
	char v = 'v';
	assert_int_equal(write(c->cmd, &v, 1), 1);
	assert_int_equal(read(c->reply, &a, sizeof(a)), sizeof(a));
	return a;
}

static int client_stop(struct client *c)
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

static bool have_engine(void)
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

static long meminfo_kb(const char *key)
{
	return proc_kb("/proc/meminfo", key);
}

static void test_killed_client(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	long shmem0 = meminfo_kb("Shmem");
	enum { PAGES = 8192 };
	/* every page different within a process, the same across the three */
	struct client a = client_start(PAGES, PAGES, -1, true);
	struct client b = client_start(PAGES, PAGES, -1, true);
	struct client k = client_start(PAGES, PAGES, -1, false);
	assert_true(wait_sharing(PAGES, 30000));  /* merging is under way */
	long shmem_merged = meminfo_kb("Shmem");   /* the store holds the contents */
	kill(k.pid, SIGKILL);                     /* mid-merge */
	int st;
	waitpid(k.pid, &st, 0);
	close(k.cmd);
	close(k.reply);
	msleep(500);
	/* the killed one's references are gone: two processes share */
	sp_sample after = domain_sample();
	if (after.value[SP_PAGES_SHARING] > PAGES)
		fail_msg("after the kill: pages_shared %lld, pages_sharing %lld",
			 (long long)after.value[SP_PAGES_SHARED], (long long)after.value[SP_PAGES_SHARING]);
	assert_int_equal(client_verify(&a).bad, 0);
	assert_int_equal(client_verify(&b).bad, 0);
	assert_int_equal(client_stop(&a), 0);
	assert_int_equal(client_stop(&b), 0);
	/* and the store space is given back once nobody maps it */
	msleep(300);
	long shmem1 = meminfo_kb("Shmem");
	print_message("Shmem: %ld kB before, %ld kB merged, %ld kB after the clients left\n", shmem0, shmem_merged,
		      shmem1);
	assert_true(shmem_merged > shmem0 + PAGES * 4 / 4);  /* the store was really there */
	assert_true(shmem1 < shmem0 + PAGES * 4 / 4);         /* and is given back */
	assert_int_equal(domain_sample().value[SP_PAGES_SHARED], 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

static void test_daemon_killed_and_back(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	enum { PAGES = 1024, DISTINCT = 8 };
	struct client a = client_start(PAGES, DISTINCT, -1, true);
	struct client b = client_start(PAGES, DISTINCT, -1, true);
	assert_true(wait_sharing(2 * PAGES - DISTINCT - 16, 30000));
	stop_daemon(d, SIGKILL);
	/* clients run on, memory intact, writers not stuck */
	msleep(300);
	assert_int_equal(client_verify(&a).bad, 0);
	assert_int_equal(client_verify(&b).bad, 0);
	d = start_daemon(false);
	/* they come back and merge again with the new daemon */
	assert_true(wait_sharing(2 * PAGES - DISTINCT - 16, 30000));
	struct answer x = client_verify(&a), y = client_verify(&b);
	assert_int_equal(x.bad, 0);
	assert_int_equal(y.bad, 0);
	if (x.pfn && y.pfn)
		assert_true(x.pfn == y.pfn);
	assert_int_equal(client_stop(&a), 0);
	assert_int_equal(client_stop(&b), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* A raw connection to the daemon, to misbehave on. */
static int raw_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = { 3, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void raw_hello(int fd)
{
	struct sp_hello h = { 0, getpid(), "evil" };
	assert_int_equal(_sp_proto_send(fd, SP_MSG_HELLO, 0, &h, sizeof(h), -1), 0);
	struct sp_hdr hdr;
	uint8_t buf[4096];
	assert_true(_sp_proto_recv(fd, &hdr, buf, sizeof(buf), NULL) > 0);
}

/* The daemon hangs up: read() ends in EOF (maybe after an ERROR message). */
static bool hung_up(int fd)
{
	uint8_t buf[4096];
	for (int i = 0; i < 64; i++) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return true;
		if (r < 0)
			return false;  /* timed out: still connected */
	}
	return false;
}

static void test_hostile_clients(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	/* a good client merges all along */
	struct client good = client_start(1024, 4, -1, true);
	struct client good2 = client_start(1024, 4, -1, false);

	int fd = raw_connect();  /* garbage */
	assert_int_equal(write(fd, "GET / HTTP/1.0\r\n\r\n", 18), 18);
	assert_true(hung_up(fd));
	close(fd);

	fd = raw_connect();  /* a LOOKUP before HELLO */
	struct sp_count z = { 0, 0 };
	assert_int_equal(_sp_proto_send(fd, SP_MSG_LOOKUP, 0, &z, sizeof(z), -1), 0);
	assert_true(hung_up(fd));
	close(fd);

	fd = raw_connect();  /* wrong size */
	raw_hello(fd);
	uint8_t junk[40] = { 0 };
	assert_int_equal(_sp_proto_send(fd, SP_MSG_GRANT, 0, junk, sizeof(junk), -1), 0);
	assert_true(hung_up(fd));
	close(fd);

	fd = raw_connect();  /* a header announcing 1 GiB */
	struct sp_hdr big = { SP_PROTO_MAGIC, SP_MSG_LOOKUP, SP_PROTO_VERSION, 1u << 30, 0 };
	assert_int_equal(write(fd, &big, sizeof(big)), (ssize_t)sizeof(big));
	assert_true(hung_up(fd));
	close(fd);

	fd = raw_connect();  /* references to pages it never had */
	raw_hello(fd);
	struct {
		struct sp_count c;
		struct sp_refs_rec r;
	} refs = { { 1, 0 }, { 12345678, 1, 1, 0 } };
	assert_int_equal(_sp_proto_send(fd, SP_MSG_REFS, 0, &refs, sizeof(refs), -1), 0);
	assert_true(hung_up(fd));
	close(fd);

	fd = raw_connect();  /* releasing what it never held */
	raw_hello(fd);
	refs.r = (struct sp_refs_rec){ 0, -5, 0, 0 };
	assert_int_equal(_sp_proto_send(fd, SP_MSG_REFS, 0, &refs, sizeof(refs), -1), 0);
	assert_true(hung_up(fd));
	close(fd);

	fd = raw_connect();  /* a file descriptor */
	raw_hello(fd);
	int devnull = open("/dev/null", O_RDONLY);
	assert_int_equal(_sp_proto_send(fd, SP_MSG_FORKED, 0, &z, sizeof(z), devnull), 0);
	close(devnull);
	assert_true(hung_up(fd));
	close(fd);

	fd = raw_connect();  /* a message type meant for clients */
	raw_hello(fd);
	struct sp_grant g = { 100, 0, 0, 0 };
	assert_int_equal(_sp_proto_send(fd, SP_MSG_GRANT, 0, &g, sizeof(g), -1), 0);
	assert_true(hung_up(fd));
	close(fd);

	/* a flood of lookups, never reading the answers: it gets dropped */
	fd = raw_connect();
	raw_hello(fd);
	size_t len = _sp_proto_counted_size(SP_MSG_LOOKUP, SP_PROTO_MAX_LOOKUP);
	uint8_t *flood = calloc(1, len);
	((struct sp_count *)flood)->n = SP_PROTO_MAX_LOOKUP;
	struct sp_lookup_rec *lr = (void *)(flood + sizeof(struct sp_count));
	for (uint32_t i = 0; i < SP_PROTO_MAX_LOOKUP; i++)
		lr[i] = (struct sp_lookup_rec){ 0x1000 + i, 0x100000 + i * PG, 0, 0 };
	struct timeval tv = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int sent = 0;
	for (int i = 0; i < 5000; i++) {
		if (_sp_proto_send(fd, SP_MSG_LOOKUP, 0, flood, len, -1))
			break;
		sent++;
	}
	free(flood);
	close(fd);
	print_message("flood: %d lookups of %d pages sent before the daemon stopped it\n", sent, SP_PROTO_MAX_LOOKUP);

	/* nobody else noticed */
	assert_true(wait_sharing(2 * 1024 - 4 - 16, 30000));
	/* Now that store pages exist: counts that are huge but legal take one step, not one per
	 * reference (2^30 puts would hold the daemon for seconds), and the
	 * clients of one domain together cannot wrap a page's count: the
	 * one whose references would is dropped, and the page stays for
	 * the clients that map it (checked below). */
	int fa = raw_connect(), fb = raw_connect();
	raw_hello(fa);
	raw_hello(fb);
	struct timeval short_tv = { 0, 300 * 1000 };
	setsockopt(fa, SOL_SOCKET, SO_RCVTIMEO, &short_tv, sizeof(short_tv));
	refs.r = (struct sp_refs_rec){ 0, 1 << 30, 0, 0 };
	assert_int_equal(_sp_proto_send(fa, SP_MSG_REFS, 0, &refs, sizeof(refs), -1), 0);
	msleep(100);  /* fa's first: the daemon reads its clients in no set order */
	assert_int_equal(_sp_proto_send(fb, SP_MSG_REFS, 0, &refs, sizeof(refs), -1), 0);
	assert_true(hung_up(fb));
	close(fb);
	refs.r = (struct sp_refs_rec){ 0, -(1 << 30), 0, 0 };
	assert_int_equal(_sp_proto_send(fa, SP_MSG_REFS, 0, &refs, sizeof(refs), -1), 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	(void)domain_sample();  /* answered after the release was handled */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("releasing 2^30 references: the next request answered in %.3f s\n", took);
	assert_true(took < 0.5 * san_ms(1000) / 1000.0);
	assert_false(hung_up(fa));  /* legal: still connected */
	close(fa);

	assert_int_equal(client_verify(&good).bad, 0);
	assert_int_equal(client_verify(&good2).bad, 0);
	assert_int_equal(client_stop(&good), 0);
	assert_int_equal(client_stop(&good2), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

static void set_pace(const char *pages_to_scan, const char *sleep_millisecs)
{
	sp_ctl *ctl;
	assert_int_equal(sp_ctl_open(sock_path, &ctl), 0);
	sp_setting pace[] = { { "pages_to_scan", pages_to_scan }, { "sleep_millisecs", sleep_millisecs } };
	sp_diag diag;
	assert_int_equal(sp_ctl_set(ctl, pace, 2, 0, &diag), 0);
	sp_ctl_close(ctl);
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

static int store_mappings(pid_t pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	int n = 0;
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, "samepage-store") != NULL;
	if (f)
		fclose(f);
	return n;
}

/* The only holder of store pages dies while its partner is merging with
 * them: the partner learnt the pages' ids, compared its pages and mapped
 * them, and its references are on their way to the daemon. The pages must
 * not be freed (punched) under it: it would read zeros. The publisher (the
 * client whose turn came second) is killed once the other is half way. */
static void test_sole_holder_dies_while_partner_merges(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	set_pace("200", "10");  /* the partner merges 200 pages a batch */
	enum { PAGES = 8192 };
	for (int round = 0; round < 3; round++) {
		struct client c[2] = { client_start(PAGES, PAGES, -1, false), client_start(PAGES, PAGES, -1, false) };
		int victim = -1;
		for (int t = 0; t < san_ms(30000) && victim < 0; t += 2) {
			int64_t sharing = domain_sample().value[SP_PAGES_SHARING];
			if (sharing > 0 && sharing < PAGES / 2) {
				int m0 = store_mappings(c[0].pid), m1 = store_mappings(c[1].pid);
				victim = m0 > m1 ? 0 : 1;
			}
			msleep(2);
		}
		assert_true(victim >= 0);
		kill(c[victim].pid, SIGKILL);
		int st;
		waitpid(c[victim].pid, &st, 0);
		close(c[victim].cmd);
		close(c[victim].reply);
		struct client *z = &c[1 - victim];
		msleep(300);
		struct answer a = client_verify(z);
		print_message("round %d: the partner has %d wrong pages after the publisher was killed\n", round, a.bad);
		assert_int_equal(a.bad, 0);
		assert_int_equal(client_stop(z), 0);
	}
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* A paused process (SIGSTOP, a frozen cgroup) does not read its socket.
 * Its partners' publications fill the socket with hints, and then the
 * daemon's next message to it cannot be sent: the daemon must wait for it,
 * not drop it, since dropping releases its references and frees the store
 * pages it still maps (it would read zeros when it resumes). */
static void test_paused_client_keeps_its_pages(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	enum { OWN = 2048, MORE = 60000 };  /* hints for MORE pages fill its socket (2 MiB) */
	/* a: contents 0..OWN+MORE-1; b shares the first OWN, then leaves, so
	 * that a alone holds those store pages */
	struct client a = client_start(OWN + MORE, OWN + MORE, -1, false);
	struct client b = client_start(OWN, OWN, -1, false);
	assert_true(wait_sharing(OWN, 30000));
	assert_int_equal(client_stop(&b), 0);
	msleep(300);  /* a's other pages wait in the unstable index */
	kill(a.pid, SIGSTOP);
	/* c publishes the rest: thousands of hints for a, which does not read */
	content_base = OWN;
	struct client c = client_start(MORE, MORE, -1, false);
	content_base = 0;
	sp_sample s = { 0 };
	for (int t = 0; t < san_ms(30000); t += 20, msleep(20)) {
		s = domain_sample();
		if (s.value[SP_PAGES_SHARED] >= OWN + MORE - 64)
			break;
	}
	assert_true(s.value[SP_PAGES_SHARED] >= OWN + MORE - 64);
	set_pace("4000", "2");  /* a knob change: a message for everyone */
	msleep(1000);           /* and grants that a cannot take */
	kill(a.pid, SIGCONT);
	struct answer ans = client_verify(&a);
	print_message("the paused client has %d wrong pages after it resumed\n", ans.bad);
	assert_int_equal(ans.bad, 0);
	/* still a client of the daemon: it merges the rest with c */
	assert_true(wait_sharing(MORE - 64, 30000));
	assert_int_equal(client_verify(&a).bad, 0);
	assert_int_equal(client_verify(&c).bad, 0);
	assert_int_equal(client_stop(&a), 0);
	assert_int_equal(client_stop(&c), 0);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* samepaged stopped the proper way (SIGTERM, as systemd stops it) while
 * its clients map store pages: it must not free them on the way out. */
static void test_daemon_stopped_clients_keep_pages(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	enum { PAGES = 2048 };
	struct client a = client_start(PAGES, PAGES, -1, false), b = client_start(PAGES, PAGES, -1, false);
	assert_true(wait_sharing(PAGES, 30000));
	stop_daemon(d, SIGTERM);
	assert_int_equal(client_verify(&a).bad, 0);
	assert_int_equal(client_verify(&b).bad, 0);
	assert_int_equal(client_stop(&a), 0);
	assert_int_equal(client_stop(&b), 0);
	cleanup_dir();
}

/* A client loses its connection (a send fails; an answer that does not
 * come in time does the same) while it alone holds store pages, and
 * connects again to the same daemon. Its pages stay whole: the daemon
 * keeps them while the process lives, and the client restates what it
 * maps. Once it exits, they are released. */
static void test_client_reconnects_keeps_pages(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	long shmem0 = meminfo_kb("Shmem");
	enum { PAGES = 4096 };
	struct client a = client_start(PAGES, PAGES, -1, false), b = client_start(PAGES, PAGES, -1, false);
	assert_true(wait_sharing(PAGES, 30000));
	assert_int_equal(client_stop(&b), 0);  /* a alone holds the store pages */
	msleep(200);
	char x = 'x';
	assert_int_equal(write(a.cmd, &x, 1), 1);
	msleep(san_ms(1500));  /* it loses the daemon, connects again after 200 ms, restates */
	struct answer ans = client_verify(&a);
	print_message("%d wrong pages after the client lost its connection\n", ans.bad);
	char log[PATH_MAX];
	snprintf(log, sizeof(log), "%s/daemon.log", sock_dir);
	char *text = read_whole_file(log);
	if (ans.bad)
		print_message("samepaged's log:\n%s\n", text ? text : "(none)");
	assert_int_equal(ans.bad, 0);
	assert_non_null(text);
	assert_non_null(strstr(text, "lives on, its store pages are kept"));
	free(text);
	sp_ctl *ctl;
	sp_ctl_info in = { 0 };
	assert_int_equal(sp_ctl_open(sock_path, &ctl), 0);
	assert_int_equal(sp_ctl_info_get(ctl, &in), 0);
	sp_ctl_close(ctl);
	print_message("after reconnecting: pages_shared %lld, clients %u\n",
		      (long long)domain_sample().value[SP_PAGES_SHARED], in.clients);
	assert_int_equal(in.clients, 1);
	/* a new partner merges with the pages a still holds */
	b = client_start(PAGES, PAGES, -1, false);
	assert_true(wait_sharing(PAGES - 64, 30000));
	assert_int_equal(client_verify(&a).bad, 0);
	assert_int_equal(client_verify(&b).bad, 0);
	assert_int_equal(client_stop(&a), 0);
	assert_int_equal(client_stop(&b), 0);
	/* both gone (and the orphaned holdings with a's exit): all released */
	for (int t = 0; t < san_ms(5000) && domain_sample().value[SP_PAGES_SHARED] > 0; t += 50)
		msleep(50);
	assert_int_equal(domain_sample().value[SP_PAGES_SHARED], 0);
	msleep(300);
	long shmem1 = meminfo_kb("Shmem");
	print_message("Shmem: %ld kB before, %ld kB after\n", shmem0, shmem1);
	assert_true(shmem1 < shmem0 + PAGES * 4 / 4);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* A process that exec()s keeps its pid but maps no store page any more:
 * what it held is released without waiting for its exit. */
static void test_exec_releases_store_pages(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	enum { PAGES = 1024 };
	struct client a = client_start(PAGES, PAGES, -1, false), b = client_start(PAGES, PAGES, -1, false);
	assert_true(wait_sharing(PAGES, 30000));
	assert_int_equal(client_stop(&b), 0);
	char e = 'e';
	assert_int_equal(write(a.cmd, &e, 1), 1);
	int64_t shared = -1;
	for (int t = 0; t < san_ms(10000) && shared != 0; t += 100, msleep(100))
		shared = domain_sample().value[SP_PAGES_SHARED];
	print_message("pages_shared %lld once the process exec'd (it still runs)\n", (long long)shared);
	assert_int_equal(shared, 0);
	assert_int_equal(kill(a.pid, 0), 0);
	kill(a.pid, SIGKILL);
	client_stop(&a);
	stop_daemon(d, SIGTERM);
	cleanup_dir();
}

/* Everything at once, at random, for SAMEPAGE_RACE_SECONDS (4 s in
 * `make check`): clients that rewrite their merged pages (copy on write,
 * merged again) are paused and resumed, lose their connection, are killed
 * and replaced; the daemon is stopped (SIGTERM) or killed and started
 * again. Every client checks all its pages now and then, and all at the
 * end; once they are gone, the domain holds nothing. */
/* The clients quit (each exits 0), and the daemon is left with no store
 * page shared: every reference they held was released. */
static void stop_all_nothing_shared(struct client *c, int n, pid_t daemon)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(client_stop(&c[i]), 0);
	int64_t shared = -1;
	for (int t = 0; t < san_ms(5000) && shared != 0; t += 50, msleep(50))
		shared = domain_sample().value[SP_PAGES_SHARED];
	assert_int_equal(shared, 0);
	stop_daemon(daemon, SIGTERM);
	cleanup_dir();
}

static void test_chaos(void **state)
{
	(void)state;
	NEED_ENGINE();
	const char *env = getenv("SAMEPAGE_RACE_SECONDS");
	double seconds = env ? atof(env) : 4;
	pid_t d = start_daemon(false);
	enum { K = 4, PAGES = 2048, DISTINCT = 512 };
	rewrite_own = true;
	struct client c[K];
	bool paused[K] = { false };
	for (int i = 0; i < K; i++)
		c[i] = client_start(PAGES, DISTINCT, -1, false);
	uint64_t rng = 0x9E3779B97F4A7C15ull;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	unsigned acts[6] = { 0 };
	long checked = 0;
	int bad = 0, bad_client = -1;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
			break;
		int i = (int)(test_rng(&rng) % K), act = (int)(test_rng(&rng) % 20);
		if (act < 4) {  /* pause or resume */
			kill(c[i].pid, paused[i] ? SIGCONT : SIGSTOP);
			paused[i] = !paused[i];
			acts[0]++;
		} else if (act < 7 && !paused[i]) {  /* it loses the daemon */
			char x = 'x';
			assert_int_equal(write(c[i].cmd, &x, 1), 1);
			acts[1]++;
		} else if (act < 9) {  /* killed, and another in its place */
			kill(c[i].pid, SIGKILL);
			client_stop(&c[i]);
			c[i] = client_start(PAGES, DISTINCT, -1, false);
			paused[i] = false;
			acts[2]++;
		} else if (act == 9) {  /* the daemon stops or dies, and comes back */
			bool term = test_rng(&rng) % 2;
			stop_daemon(d, term ? SIGTERM : SIGKILL);
			d = start_daemon(false);
			acts[term ? 3 : 4]++;
		} else if (!paused[i]) {
			bad = client_verify(&c[i]).bad;
			checked++;
			if (bad) {
				bad_client = i;
				break;
			}
		}
		msleep((int)(test_rng(&rng) % 60));
	}
	rewrite_own = false;
	for (int i = 0; i < K; i++)
		if (paused[i])
			kill(c[i].pid, SIGCONT);
	if (bad) {
		/* no client may stay stopped behind a failed test */
		for (int i = 0; i < K; i++) {
			kill(c[i].pid, SIGKILL);
			client_stop(&c[i]);
		}
		fail_msg("client %d: %d pages not as written (actions so far: %u pauses, %u lost connections, "
			 "%u kills, %u daemon stops, %u daemon kills)",
			 bad_client, bad, acts[0], acts[1], acts[2], acts[3], acts[4]);
	}
	msleep(500);
	for (int i = 0; i < K; i++) {
		assert_int_equal(client_verify(&c[i]).bad, 0);
		checked++;
	}
	print_message("%.0f s: %u pauses, %u lost connections, %u kills, %u daemon stops, %u daemon kills; "
		      "%ld checks of all pages, none wrong\n",
		      seconds, acts[0], acts[1], acts[2], acts[3], acts[4], checked);
	stop_all_nothing_shared(c, K, d);
}

/* The child of test_lookups_outlive_their_pages: for `ms` milliseconds it
 * unregisters, rewrites or unmaps and maps again, and registers chunks of
 * its region while the engine merges them, then checks every page and
 * answers; 'q' to quit. Chunk contents take one of three generations, so
 * the clients' chunks keep meeting as equals. */
static void churn_body(int cmd, int reply, const struct client_args *args)
{
	enum { CHUNK = 16, GENS = 3 };
	size_t pages = args->pages, distinct = args->distinct;
	int ms = args->ms;
	sp_engine *e;
	if (sp_engine_new(SP_ENGINE_SHARED, &e))
		_exit(6);
	uint8_t *m = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t gen[pages / CHUNK];
	memset(gen, 0, sizeof(gen));
	for (size_t i = 0; i < pages; i++)
		fill(m + i * PG, i % distinct);
	if (sp_madvise(e, m, pages * PG, MADV_MERGEABLE))
		_exit(7);
	uint64_t rng = 0x5851F42D4C957F2Dull ^ (uint64_t)getpid();
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		size_t c = (size_t)(test_rng(&rng) % (pages / CHUNK));
		uint8_t *q = m + c * CHUNK * PG;
		int rc = 0;
		if (test_rng(&rng) % 2) {
			rc = sp_madvise(e, q, CHUNK * PG, MADV_UNMERGEABLE);
		} else {
			rc = sp_munmap(e, q, CHUNK * PG);
			msleep(20);  /* a hole for a while: what was queued must not be read */
			if (!rc && mmap(q, CHUNK * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
					-1, 0) != q)
				rc = -1;
		}
		if (rc)
			_exit(10);
		gen[c] = (uint8_t)((gen[c] + 1) % GENS);
		for (size_t i = c * CHUNK; i < (c + 1) * CHUNK; i++)
			fill(m + i * PG, gen[c] * 1000000ull + i % distinct);
		if (sp_madvise(e, q, CHUNK * PG, MADV_MERGEABLE))
			_exit(11);
		msleep(1 + (int)(test_rng(&rng) % 8));
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < ms);
	msleep(200);
	struct answer a = { 0, 0, 0, (uintptr_t)m };
	for (size_t i = 0; i < pages; i++)
		a.bad += !filled_ok(m + i * PG, gen[i / CHUNK] * 1000000ull + i % distinct);
	char c;
	if (write(reply, &a, sizeof(a)) != sizeof(a) || read(cmd, &c, 1) < 0)
		_exit(9);
	sp_engine_free(e);
	_exit(0);
}

/* At a slow pace a client's lookups wait for a few batches before they go
 * to the daemon together (client.c, LOOKUP_WINDOW_NS), and the engine's
 * lock is let go in between: the program may unregister, rewrite or unmap
 * their pages meanwhile. Three clients do so all the time while merging
 * goes on: no page may differ from what its process last wrote, and once
 * they are gone no store page may be left shared. */
static void test_lookups_outlive_their_pages(void **state)
{
	(void)state;
	NEED_ENGINE();
	pid_t d = start_daemon(false);
	set_pace("24", "3");
	enum { K = 3, PAGES = 1024, DISTINCT = 128, MS = 4000 };
	struct client c[K];
	struct client_args args = { PAGES, DISTINCT, -1, san_ms(MS), false };
	for (int k = 0; k < K; k++)
		c[k] = client_spawn(churn_body, &args);
	int64_t most = 0;
	for (int t = 0; t < san_ms(MS); t += 100, msleep(100)) {
		int64_t sharing = domain_sample().value[SP_PAGES_SHARING];
		most = sharing > most ? sharing : most;
	}
	for (int k = 0; k < K; k++) {
		struct answer a;
		assert_int_equal(read(c[k].reply, &a, sizeof(a)), sizeof(a));
		if (a.bad)
			fail_msg("client %d: %d pages differ from what it wrote", k, a.bad);
	}
	print_message("pages_sharing reached %lld while the clients churned\n", (long long)most);
	assert_true(most > 0);
	stop_all_nothing_shared(c, K, d);
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

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_processes_merge_across),
		cmocka_unit_test(test_killed_client),
		cmocka_unit_test(test_daemon_killed_and_back),
		cmocka_unit_test(test_hostile_clients),
		cmocka_unit_test(test_turn_keeps_the_pace),
		cmocka_unit_test(test_full_scan_covers_every_page_once),
		cmocka_unit_test(test_partner_pages_merge_in_one_pass),
		cmocka_unit_test(test_sole_holder_dies_while_partner_merges),
		cmocka_unit_test(test_paused_client_keeps_its_pages),
		cmocka_unit_test(test_daemon_stopped_clients_keep_pages),
		cmocka_unit_test(test_client_reconnects_keeps_pages),
		cmocka_unit_test(test_exec_releases_store_pages),
		cmocka_unit_test(test_chaos),
		cmocka_unit_test(test_lookups_outlive_their_pages),
		cmocka_unit_test(test_two_users_never_share),
		cmocka_unit_test(test_per_user_daemon_refuses_others),
		cmocka_unit_test(test_cli_user_engine),
		cmocka_unit_test(test_ksmtuned_drives_user_engine),
	};
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("daemon", tests, NULL, NULL);
}
