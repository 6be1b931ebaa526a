/* SPDX-License-Identifier: MIT */
/*
 * Description: samepaged and its clients when things go wrong: a client
 * killed mid-merge, or while it alone holds store pages; a client paused,
 * losing its connection, or exec()ing; the daemon killed or stopped and
 * started again; hostile clients; pages unregistered or unmapped under
 * their lookups; all of it at once, at random. No page may differ from what
 * its process wrote, and nothing may stay shared once the clients are gone.
 */
#include "daemon_util.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ tests */

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

/* Everything at once, at random, for SAMEPAGE_RACE_SECONDS (4 s in
 * `make check`): clients that rewrite their merged pages (copy on write,
 * merged again) are paused and resumed, lose their connection, are killed
 * and replaced; the daemon is stopped (SIGTERM) or killed and started
 * again. Every client checks all its pages now and then, and all at the
 * end; once they are gone, the domain holds nothing. */
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
		client_answer(&c[k], &a, sizeof(a), "the end of its churn");
		if (a.bad)
			fail_msg("client %d: %d pages differ from what it wrote", k, a.bad);
	}
	print_message("pages_sharing reached %lld while the clients churned\n", (long long)most);
	assert_true(most > 0);
	stop_all_nothing_shared(c, K, d);
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_killed_client),
		cmocka_unit_test(test_daemon_killed_and_back),
		cmocka_unit_test(test_hostile_clients),
		cmocka_unit_test(test_sole_holder_dies_while_partner_merges),
		cmocka_unit_test(test_paused_client_keeps_its_pages),
		cmocka_unit_test(test_daemon_stopped_clients_keep_pages),
		cmocka_unit_test(test_client_reconnects_keeps_pages),
		cmocka_unit_test(test_exec_releases_store_pages),
		cmocka_unit_test(test_chaos),
		cmocka_unit_test(test_lookups_outlive_their_pages),
	};
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("daemon_failure", tests, NULL, NULL);
}
