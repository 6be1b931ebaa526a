/* SPDX-License-Identifier: MIT */
/*
 * Description: `samepage exporter` scraped by a real Prometheus (Debian's
 * /usr/bin/prometheus, started here on a private port and data directory):
 * the values Prometheus stores equal sysfs (a distinctive pages_to_scan and
 * sleep_millisecs set for the test), counter and gauge types as Prometheus
 * understood them, a negative general_profit made for real (many unique
 * mergeable pages, few merges) arrives negative, the per-process series are
 * bounded by --max-processes with the rest summed as pid="other", and a
 * process name full of quotes, backslashes, a newline and a byte that is not
 * UTF-8 arrives intact. The text format is also checked over a plain socket
 * (HELP and TYPE for every family, no duplicate series), as are the user
 * engine's series with a real samepaged, the HTTP errors, the exit codes and
 * a clean stop on SIGTERM and SIGINT. Tests that change KSM hold the lock and
 * restore every knob; Prometheus, exporters and children are killed at the
 * end whatever happened (and by PR_SET_PDEATHSIG if this program dies).
 */
#include "exporter_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROMETHEUS "/usr/bin/prometheus"

/* ----------------------------------------------------------- exporters */

static char *tmp;               /* this program's temporary directory */
static int fixed_port;          /* the exporter port Prometheus scrapes */
static int prom_port;
static pid_t prom_pid;
static char prom_skip[200];     /* why Prometheus tests cannot run, or "" */

struct exporter {
	pid_t pid;
	int port;
	char log[PATH_MAX];
};

/* Start `samepage exporter ARGS...` (NULL-terminated) and wait until it
 * says where it serves. Returns 0, or its exit code if it stopped. */
static int exporter_start(struct exporter *x, const char *env, ...)
{
	const char *argv[24] = { build_path("bin/samepage"), "exporter" };
	va_list ap;
	va_start(ap, env);
	take_args(argv, 2, 24, ap);
	va_end(ap);
	static int serial;
	snprintf(x->log, sizeof(x->log), "%s/exporter-%d.log", tmp, ++serial);
	x->pid = spawn(argv, x->log, env);
	x->port = 0;
	for (int i = 0; i < 1000; i++) {
		char *text = slurp_file(x->log);
		char *s = strstr(text, "serving http://");
		if (s) {
			char *colon = strstr(s, "]:");
			colon = colon ? colon + 1 : strchr(s + strlen("serving http://"), ':');
			x->port = atoi(colon + 1);
			free(text);
			return 0;
		}
		free(text);
		int st;
		if (waitpid(x->pid, &st, WNOHANG) == x->pid) {
			for (size_t k = 0; k < sizeof(kids) / sizeof(kids[0]); k++)
				if (kids[k] == x->pid)
					kids[k] = 0;
			x->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		msleep(10);
	}
	fail_msg("the exporter did not start: %s", x->log);
	return -1;
}

static int exporter_stop(struct exporter *x, int sig)
{
	int code = x->pid > 0 ? kid_stop(x->pid, sig) : -1;
	x->pid = 0;
	return code;
}

/* A free loopback port below the kernel's ephemeral range (32768 and up),
 * so no outgoing connection takes it while no exporter listens on it. */
static int free_port(void)
{
	static unsigned next;
	if (!next)
		next = (unsigned)getpid() * 7919u;
	for (int tries = 0; tries < 1000; tries++) {
		int port = 20000 + (int)(next++ % 12000u);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
		close(fd);
		if (r == 0)
			return port;
	}
	fail_msg("no free port between 20000 and 32000");
	return -1;
}

/* ---------------------------------------------------------- Prometheus */

static void url_encode(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *s && o + 4 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.~", c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = 0;
}

/* data.result of a query (instant at `at` if > 0), owned by *root. */
static json_object *prom_query(const char *expr, double at, json_object **root)
{
	char enc[2048], path[2300];
	url_encode(expr, enc, sizeof(enc));
	if (at > 0)
		snprintf(path, sizeof(path), "/api/v1/query?query=%s&time=%.3f", enc, at);
	else
		snprintf(path, sizeof(path), "/api/v1/query?query=%s", enc);
	char *body = get_ok(prom_port, path);
	*root = json_tokener_parse(body);
	if (!*root)
		fail_msg("Prometheus answered no JSON: %s", body);
	free(body);
	json_object *st, *data, *res;
	assert_true(json_object_object_get_ex(*root, "status", &st));
	assert_string_equal(json_object_get_string(st), "success");
	assert_true(json_object_object_get_ex(*root, "data", &data));
	assert_true(json_object_object_get_ex(data, "result", &res));
	return res;
}

static json_object *jget(json_object *o, const char *key)
{
	json_object *v = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* Wait until Prometheus holds a successful scrape of our exporter that
 * started after `after` (wall clock); returns that scrape's time. */
static double wait_scrape_after(double after)
{
	for (int i = 0; i < 300; i++) {
		json_object *root;
		json_object *res = prom_query("up{job=\"samepage\"}[30s]", 0, &root);
		double last = 0, up = 0;
		if (json_object_array_length(res) == 1) {
			json_object *vals = jget(json_object_array_get_idx(res, 0), "values");
			size_t n = json_object_array_length(vals);
			if (n) {
				json_object *v = json_object_array_get_idx(vals, n - 1);
				last = json_object_get_double(json_object_array_get_idx(v, 0));
				up = atof(json_object_get_string(json_object_array_get_idx(v, 1)));
			}
		}
		json_object_put(root);
		if (last > after && up == 1)
			return last;
		msleep(200);
	}
	fail_msg("Prometheus did not scrape the exporter within 60 s (see %s/prometheus.log)", tmp);
	return 0;
}

/* The value of the single series `expr` at time `at`. */
static double prom_value(const char *expr, double at)
{
	json_object *root;
	json_object *res = prom_query(expr, at, &root);
	if (json_object_array_length(res) != 1)
		fail_msg("%s: %zu series at %.3f, expected 1", expr, json_object_array_length(res), at);
	json_object *v = jget(json_object_array_get_idx(res, 0), "value");
	double d = strtod(json_object_get_string(json_object_array_get_idx(v, 1)), NULL);
	json_object_put(root);
	return d;
}

/* The type Prometheus recorded for a metric from the scrapes' TYPE lines. */
static const char *prom_type(const char *metric, char *buf, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "/api/v1/metadata?metric=%s", metric);
	char *body = get_ok(prom_port, path);
	json_object *root = json_tokener_parse(body), *data = jget(root, "data"), *arr = jget(data, metric);
	snprintf(buf, len, "%s", arr && json_object_array_length(arr) ?
		 json_object_get_string(jget(json_object_array_get_idx(arr, 0), "type")) : "(none)");
	json_object_put(root);
	free(body);
	return buf;
}

static int group_setup(void **state)
{
	(void)state;
	tmp = make_tempdir();
	prom_skip[0] = 0;
	if (access(PROMETHEUS, X_OK) != 0) {
		snprintf(prom_skip, sizeof(prom_skip), "%s is not installed (scripts/setup.sh installs prometheus)",
			 PROMETHEUS);
		return 0;
	}
	fixed_port = free_port();
	char cfg[PATH_MAX], data[PATH_MAX], log[PATH_MAX], text[512];
	snprintf(cfg, sizeof(cfg), "%s/prometheus.yml", tmp);
	snprintf(data, sizeof(data), "%s/tsdb", tmp);
	snprintf(log, sizeof(log), "%s/prometheus.log", tmp);
	snprintf(text, sizeof(text),
		 "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
		 "scrape_configs:\n  - job_name: samepage\n    static_configs:\n"
		 "      - targets: ['127.0.0.1:%d']\n", fixed_port);
	write_file_p(cfg, text);
	for (int attempt = 0; attempt < 3 && !prom_pid; attempt++) {
		prom_port = free_port();
		char a_cfg[PATH_MAX + 20], a_data[PATH_MAX + 30], a_listen[64];
		snprintf(a_cfg, sizeof(a_cfg), "--config.file=%s", cfg);
		snprintf(a_data, sizeof(a_data), "--storage.tsdb.path=%s", data);
		snprintf(a_listen, sizeof(a_listen), "--web.listen-address=127.0.0.1:%d", prom_port);
		const char *argv[] = { PROMETHEUS, a_cfg, a_data, a_listen, "--log.level=warn", NULL };
		pid_t pid = spawn(argv, log, NULL);
		for (int i = 0; i < 600; i++) {
			struct http h;
			if (http_request(prom_port, "GET", "/-/ready", &h) == 0) {
				int st = h.status;
				http_free(&h);
				if (st == 200) {
					prom_pid = pid;
					break;
				}
			}
			if (waitpid(pid, NULL, WNOHANG) == pid)
				break;
			msleep(100);
		}
		if (!prom_pid)
			kid_stop(pid, SIGKILL);
	}
	if (!prom_pid) {
		char *l = slurp_file(log);
		fprintf(stderr, "prometheus did not start:\n%s\n", l);
		free(l);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	kill_all_kids();
	prom_pid = 0;
	remove_tree(tmp);
	free(tmp);
	return 0;
}

/* The address of the exporter Prometheus scrapes. */
static const char *scraped_listen(void)
{
	static char arg[32];
	snprintf(arg, sizeof(arg), "127.0.0.1:%d", fixed_port);
	return arg;
}

static bool kernel_has(const char *file)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), KSM_DIR "/%s", file);
	return access(path, F_OK) == 0;
}

#define REQUIRE_PROMETHEUS()                                  \
	do {                                                  \
		if (prom_skip[0])                             \
			SKIP_BECAUSE("%s", prom_skip);        \
	} while (0)

/* Per test: kill what the test started (not Prometheus), whatever happened. */
static int test_teardown(void **state)
{
	(void)state;
	unsetenv("SAMEPAGE_SOCKET");
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		if (kids[i] > 0 && kids[i] != prom_pid) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
	return 0;
}

static int ksm_test_setup(void **state)
{
	return ksm_group_setup(state);
}

static int ksm_test_teardown(void **state)
{
	test_teardown(state);
	return ksm_group_teardown(state);
}

/* ------------------------------------------------------- children */

/* A child's ksm_stat, through libsamepage (whose parsing of it the KSM
 * tests check against the files). */
static sp_proc_ksm child_stat(pid_t pid)
{
	static sp_ksm *k;
	if (!k)
		assert_int_equal(sp_ksm_open(NULL, &k), 0);
	sp_proc_ksm p;
	memset(&p, 0, sizeof(p));
	if (sp_proc_ksm_read(k, pid, &p) != 0)
		p.ksm_rmap_items = p.ksm_merging_pages = -1;
	return p;
}

/* A child that runs prepare(arg) ('y' when it worked), says so, and waits
 * until it is killed; killed with this program at the latest. */
static pid_t ready_child(char (*prepare)(const void *), const void *arg)
{
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(ready[0]);
		char ok = prepare(arg);
		if (write(ready[1], &ok, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	char ok = 0;
	assert_int_equal(read(ready[0], &ok, 1), 1);
	close(ready[0]);
	kid_add(pid);
	assert_int_equal(ok, 'y');
	return pid;
}

struct mergeable { size_t unique, same; const char *name; };

/* `unique` pages of distinct contents and `same` pages of one content,
 * mergeable, in a process called `name`. */
static char prepare_mergeable(const void *arg)
{
	const struct mergeable *w = arg;
	if (w->name)
		prctl(PR_SET_NAME, w->name);
	size_t pages = w->unique + w->same, ps = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 'n';
	for (size_t i = 0; i < pages; i++) {
		memset(m + i * ps, 0x5a, ps);
		if (i < w->unique)
			memcpy(m + i * ps, &i, sizeof(i));
	}
	return madvise(m, pages * ps, MADV_MERGEABLE) == 0 ? 'y' : 'n';
}

static pid_t mergeable_child(size_t unique, size_t same, const char *name)
{
	struct mergeable w = { unique, same, name };
	return ready_child(prepare_mergeable, &w);
}

/* Let ksmd run (fast) until cond(pid) holds, for at most `passes` passes. */
static bool ksm_until(bool (*cond)(pid_t), pid_t pid, int passes)
{
	for (int i = 0; i < passes; i++) {
		if (cond(pid))
			return true;
		if (!ksm_wait_scans(1, 30))
			return false;
	}
	return cond(pid);
}

/* ------------------------------------------------------------ tests */

static void expect_refused(int code, const char *want_err, ...)
{
	/* under timeout: an exporter that wrongly starts serving fails, not hangs */
	const char *argv[16] = { "timeout", "10", build_path("bin/samepage"), "exporter" };
	va_list ap;
	va_start(ap, want_err);
	take_args(argv, 4, 16, ap);
	va_end(ap);
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	if (r.status != code || !strstr(r.err, want_err))
		fail_msg("%s %s: exit %d (want %d), stderr: %s", argv[4], argv[5] ? argv[5] : "", r.status, code,
			 r.err);
	assert_string_equal(r.out, "");
	cmd_result_free(&r);
}

static void test_bad_arguments_and_busy_port(void **state)
{
	(void)state;
	expect_refused(2, "--listen", "--listen", "nocolon", NULL);
	expect_refused(2, "port", "--listen", "127.0.0.1:65536", NULL);
	expect_refused(2, "port", "--listen", "127.0.0.1:", NULL);
	expect_refused(2, "cannot resolve", "--listen", "no-such-host.invalid:9", NULL);
	expect_refused(2, "kernel, user or both", "--engine", "neither", NULL);
	expect_refused(2, "--max-processes", "--max-processes", "-1", NULL);
	expect_refused(2, "--max-processes", "--max-processes", "lots", NULL);
	expect_refused(2, "unexpected argument", "extra", NULL);
	/* a port someone else listens on: a runtime failure, said clearly */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	char listen_arg[64];
	snprintf(listen_arg, sizeof(listen_arg), "127.0.0.1:%d", ntohs(a.sin_port));
	expect_refused(1, "Address already in use", "--listen", listen_arg, NULL);
	close(fd);
}

static void test_text_format_and_http(void **state)
{
	(void)state;
	char env[PATH_MAX + 20];
	snprintf(env, sizeof(env), "SAMEPAGE_SOCKET=%s/no-daemon.sock", tmp);
	struct exporter x;
	assert_int_equal(exporter_start(&x, env, "--listen", "127.0.0.1:0", "--engine", "both", NULL), 0);
	struct http h;
	assert_int_equal(http_request(x.port, "GET", "/metrics", &h), 0);
	assert_int_equal(h.status, 200);
	assert_non_null(strstr(h.head, "Content-Type: text/plain; version=0.0.4"));
	int families = check_text_format(h.body);
	print_message("%d metric families\n", families);
	/* samepage(8) lists every family this page has */
	char man[PATH_MAX];
	snprintf(man, sizeof(man), "%s/man/samepage.8", getenv("SAMEPAGE_SRC") ? getenv("SAMEPAGE_SRC") : ".");
	char *doc = slurp_file(man);
	assert_true(strlen(doc) > 1000);
	for (const char *t = strstr(h.body, "# TYPE "); t; t = strstr(t + 1, "# TYPE ")) {
		char name[160];
		sscanf(t + 7, "%159s", name);
		if (!strstr(doc, name))
			fail_msg("metric %s is not documented in samepage(8)", name);
	}
	free(doc);
	/* no daemon: a gauge saying so, not an error */
	assert_true(page_value(h.body, "samepage_user_engine_up") == 0);
	assert_string_equal(page_type(h.body, "samepage_user_engine_up"), "gauge");
	assert_true(page_value(h.body, "samepage_exporter_build_info{version=\"0.1.0\",library=\"0.1.0\"}") == 1);
	if (ksm_present()) {
		assert_true(page_value(h.body, "samepage_ksm_available") == 1);
		assert_string_equal(page_type(h.body, "node_ksmd_full_scans_total"), "counter");
		assert_string_equal(page_type(h.body, "node_ksmd_pages_to_scan"), "gauge");
		assert_string_equal(page_type(h.body, "node_ksmd_sleep_seconds"), "gauge");
		assert_string_equal(page_type(h.body, "samepage_ksmd_cpu_seconds_total"), "counter");
		/* what this kernel has is there; what it lacks is not */
		static const char *const files[][2] = {
			{ "general_profit", "samepage_ksm_general_profit_bytes" },
			{ "pages_scanned", "samepage_ksm_pages_scanned_total" },
			{ "ksm_zero_pages", "samepage_ksm_zero_pages" },
			{ "advisor_mode", "samepage_ksm_advisor_mode" },
			{ "smart_scan", "samepage_ksm_smart_scan" },
		};
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
			assert_int_equal(page_has_family(h.body, files[i][1]), kernel_has(files[i][0]));
	}
	http_free(&h);

	char *index = get_ok(x.port, "/");
	assert_non_null(strstr(index, "href=\"/metrics\""));
	free(index);
	assert_int_equal(http_request(x.port, "GET", "/nope", &h), 0);
	assert_int_equal(h.status, 404);
	http_free(&h);
	assert_int_equal(http_request(x.port, "POST", "/metrics", &h), 0);
	assert_int_equal(h.status, 405);
	http_free(&h);
	assert_int_equal(http_request(x.port, "HEAD", "/metrics", &h), 0);
	assert_int_equal(h.status, 200);
	assert_string_equal(h.body, "");
	http_free(&h);

	/* SIGTERM and SIGINT stop it cleanly: exit 0, and it says so */
	assert_int_equal(exporter_stop(&x, SIGTERM), 0);
	char *log = slurp_file(x.log);
	assert_non_null(strstr(log, "stopped"));
	free(log);
	assert_int_equal(exporter_start(&x, env, "--listen", "127.0.0.1:0", NULL), 0);
	free(get_ok(x.port, "/metrics"));
	assert_int_equal(exporter_stop(&x, SIGINT), 0);
	/* and the port is free again at once */
	assert_int_equal(http_request(x.port, "GET", "/metrics", &h), -ECONNREFUSED);
}

/* A recorded tree of a kernel with only the first KSM files (2.6.32's) and
 * two processes: what it lacks is absent, not 0; per-process profit is
 * signed, and the bound holds here too. An empty tree: no KSM at all. */
static void test_recorded_old_kernel(void **state)
{
	(void)state;
	static const char *const files[][2] = {
		{ "sys/kernel/mm/ksm/run", "1\n" },
		{ "sys/kernel/mm/ksm/pages_to_scan", "1250\n" },
		{ "sys/kernel/mm/ksm/sleep_millisecs", "10\n" },
		{ "sys/kernel/mm/ksm/pages_shared", "10\n" },
		{ "sys/kernel/mm/ksm/pages_sharing", "90\n" },
		{ "sys/kernel/mm/ksm/pages_unshared", "30\n" },
		{ "sys/kernel/mm/ksm/pages_volatile", "5\n" },
		{ "sys/kernel/mm/ksm/full_scans", "42\n" },
		{ "proc/vmstat", "nr_free_pages 100\ncow_ksm 77\n" },
		{ "proc/4242/ksm_stat", "ksm_rmap_items 100\nksm_merging_pages 50\n" },
		{ "proc/4242/comm", "qemu-system-x86\n" },
		{ "proc/4244/ksm_stat", "ksm_rmap_items 10\nksm_zero_pages 5\nksm_merging_pages 0\n"
					"ksm_process_profit -4096\nksm_merge_any: yes\nksm_mergeable: yes\n" },
		{ "proc/4244/comm", "worker\n" },
	};
	char root[PATH_MAX], path[PATH_MAX * 2];
	snprintf(root, sizeof(root), "%s/old-kernel", tmp);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, files[i][0]);
		write_file_p(path, files[i][1]);
	}
	char env[PATH_MAX + 20];
	snprintf(env, sizeof(env), "SAMEPAGE_ROOT=%s", root);
	struct exporter x;
	assert_int_equal(exporter_start(&x, env, "--listen", "127.0.0.1:0", "--max-processes", "1", NULL), 0);
	char *page = get_ok(x.port, "/metrics");
	check_text_format(page);
	assert_true(page_value(page, "node_ksmd_pages_to_scan") == 1250);
	assert_true(page_value(page, "node_ksmd_sleep_seconds") == 0.01);
	assert_true(page_value(page, "node_ksmd_full_scans_total") == 42);
	assert_true(page_value(page, "samepage_vmstat_cow_ksm_total") == 77);
	assert_true(page_value(page, "samepage_ksm_saved_bytes") == 90 * 4096.0);
	static const char *const absent[] = { "node_ksmd_merge_across_nodes", "samepage_ksm_general_profit_bytes",
					      "samepage_ksm_pages_scanned_total", "samepage_ksm_advisor_mode",
					      "samepage_ksm_smart_scan", "samepage_ksm_zero_pages",
					      "samepage_vmstat_ksm_swpin_copy_total", "samepage_ksmd_cpu_seconds_total" };
	for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
		if (page_has_family(page, absent[i]))
			fail_msg("%s is exported, but the recorded kernel lacks it", absent[i]);
	/* 4242's profit by the kernel's formula: 50 pages saved, 100 rmap items */
	assert_true(page_value(page, "samepage_ksm_process_profit_bytes{pid=\"4242\",comm=\"qemu-system-x86\"}") ==
		    50 * 4096.0 - 100 * 64.0);
	assert_true(page_value(page, "samepage_ksm_process_profit_bytes{pid=\"other\",comm=\"other\"}") == -4096);
	assert_true(page_value(page, "samepage_ksm_process_zero_pages{pid=\"other\",comm=\"other\"}") == 5);
	assert_true(page_value(page, "samepage_ksm_processes") == 2);
	free(page);
	assert_int_equal(exporter_stop(&x, SIGTERM), 0);

	snprintf(root, sizeof(root), "%s/no-ksm", tmp);
	assert_int_equal(mkdir(root, 0755), 0);
	snprintf(env, sizeof(env), "SAMEPAGE_ROOT=%s", root);
	assert_int_equal(exporter_start(&x, env, "--listen", "127.0.0.1:0", NULL), 0);
	char *log = slurp_file(x.log);
	assert_non_null(strstr(log, "no KSM"));
	free(log);
	page = get_ok(x.port, "/metrics");
	check_text_format(page);
	assert_true(page_value(page, "samepage_ksm_available") == 0);
	assert_null(strstr(page, "node_ksmd_"));
	free(page);
	assert_int_equal(exporter_stop(&x, SIGTERM), 0);
}

/* Knobs set under the lock reach Prometheus as they are in sysfs. */
static void test_prometheus_values_match_sysfs(void **state)
{
	(void)state;
	REQUIRE_PROMETHEUS();
	REQUIRE_KSM(true);
	bool advisor = kernel_has("advisor_mode");
	if (advisor)
		assert_int_equal(ksm_write("advisor_mode", "none"), 0);
	assert_int_equal(ksm_write("run", "0"), 0);  /* every counter holds still */
	assert_int_equal(ksm_write("pages_to_scan", "4321"), 0);
	assert_int_equal(ksm_write("sleep_millisecs", "37"), 0);
	struct exporter x;
	assert_int_equal(exporter_start(&x, NULL, "--listen", scraped_listen(), NULL), 0);
	double at = wait_scrape_after(wall_now());

	assert_int_equal(ksm_read_num("pages_to_scan"), 4321);
	assert_true(prom_value("node_ksmd_pages_to_scan", at) == 4321);
	assert_true(fabs(prom_value("node_ksmd_sleep_seconds", at) - 0.037) < 1e-12);
	static const char *const same[][2] = {
		{ "run", "node_ksmd_run" },
		{ "pages_shared", "node_ksmd_pages_shared" },
		{ "pages_sharing", "node_ksmd_pages_sharing" },
		{ "pages_unshared", "node_ksmd_pages_unshared" },
		{ "pages_volatile", "node_ksmd_pages_volatile" },
		{ "merge_across_nodes", "node_ksmd_merge_across_nodes" },
		{ "full_scans", "node_ksmd_full_scans_total" },
		{ "pages_scanned", "samepage_ksm_pages_scanned_total" },
		{ "max_page_sharing", "samepage_ksm_max_page_sharing" },
		{ "general_profit", "samepage_ksm_general_profit_bytes" },
		{ "stable_node_dups", "samepage_ksm_stable_node_dups" },
	};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		if (!kernel_has(same[i][0]))
			continue;
		double got = prom_value(same[i][1], at);
		if (got != (double)ksm_read_num(same[i][0]))
			fail_msg("%s: Prometheus has %.0f, sysfs %s has %lld", same[i][1], got, same[i][0],
				 (long long)ksm_read_num(same[i][0]));
	}
	if (advisor) {
		assert_true(prom_value("samepage_ksm_advisor_mode{mode=\"none\"}", at) == 1);
		assert_true(prom_value("samepage_ksm_advisor_mode{mode=\"scan-time\"}", at) == 0);
	}
	/* the types as Prometheus recorded them from the scrape */
	char t[32];
	assert_string_equal(prom_type("node_ksmd_full_scans_total", t, sizeof(t)), "counter");
	assert_string_equal(prom_type("node_ksmd_pages_to_scan", t, sizeof(t)), "gauge");
	assert_string_equal(prom_type("samepage_ksmd_cpu_seconds_total", t, sizeof(t)), "counter");
	assert_string_equal(prom_type("samepage_vmstat_cow_ksm_total", t, sizeof(t)), "counter");
	assert_int_equal(exporter_stop(&x, SIGTERM), 0);
}

static bool profit_negative(pid_t pid)
{
	return ksm_read_num("general_profit") < 0 && child_stat(pid).ksm_rmap_items >= 8192;
}

/* Many unique mergeable pages, few merges: KSM's metadata outweighs what it
 * saves, and the gauge must say so with its sign. */
static void test_negative_general_profit(void **state)
{
	(void)state;
	REQUIRE_PROMETHEUS();
	REQUIRE_KSM(true);
	if (!kernel_has("general_profit"))
		SKIP_BECAUSE("this kernel has no general_profit (Linux 6.4+)");
	/* run=2 drops every rmap item and merge, including stale ones of exited processes */
	assert_int_equal(ksm_write("run", "2"), 0);
	ksm_fast_scan();
	pid_t child = mergeable_child(8192, 16, NULL);
	assert_int_equal(ksm_write("run", "1"), 0);
	if (!ksm_until(profit_negative, child, 40))
		fail_msg("general_profit stayed %lld, the child has %lld rmap items",
			 (long long)ksm_read_num("general_profit"), (long long)child_stat(child).ksm_rmap_items);
	assert_int_equal(ksm_write("run", "0"), 0);  /* hold the numbers still */
	int64_t profit = ksm_read_num("general_profit"), child_profit = child_stat(child).ksm_process_profit;
	print_message("general_profit %lld, child's ksm_process_profit %lld\n", (long long)profit,
		      (long long)child_profit);
	assert_true(profit < 0);
	assert_true(child_profit < 0);

	char key[128];
	struct exporter x;
	assert_int_equal(exporter_start(&x, NULL, "--listen", scraped_listen(), NULL), 0);
	double at = wait_scrape_after(wall_now());
	assert_true(prom_value("samepage_ksm_general_profit_bytes", at) == (double)profit);
	snprintf(key, sizeof(key), "samepage_ksm_process_profit_bytes{pid=\"%d\"}", (int)child);
	assert_true(prom_value(key, at) == (double)child_profit);
	/* and in the text itself, as an integer with its sign */
	char *page = get_ok(x.port, "/metrics");
	char want[96];
	snprintf(want, sizeof(want), "\nsamepage_ksm_general_profit_bytes %lld\n", (long long)profit);
	assert_non_null(strstr(page, want));
	free(page);
	assert_int_equal(exporter_stop(&x, SIGTERM), 0);
	kid_stop(child, SIGKILL);
}

static bool merged_some(pid_t pid)
{
	return child_stat(pid).ksm_merging_pages >= 100;
}

/* More merging processes than --max-processes: max + 1 series per metric. */
static void test_cardinality_bound(void **state)
{
	(void)state;
	REQUIRE_PROMETHEUS();
	REQUIRE_KSM(true);
	enum { MAX = 3, KIDS = 6 };
	assert_int_equal(ksm_write("run", "2"), 0);
	ksm_fast_scan();
	pid_t kid[KIDS];
	for (int i = 0; i < KIDS; i++)
		kid[i] = mergeable_child(8, 128 * (size_t)(i + 1), NULL);  /* profit grows with i */
	assert_int_equal(ksm_write("run", "1"), 0);
	for (int i = 0; i < KIDS; i++)
		assert_true(ksm_until(merged_some, kid[i], 40));
	assert_int_equal(ksm_write("run", "0"), 0);

	char max_arg[8], key[128];
	snprintf(max_arg, sizeof(max_arg), "%d", MAX);
	struct exporter x;
	assert_int_equal(exporter_start(&x, NULL, "--listen", scraped_listen(), "--max-processes", max_arg, NULL), 0);
	double at = wait_scrape_after(wall_now());
	static const char *const fams[] = { "samepage_ksm_process_profit_bytes", "samepage_ksm_process_merging_pages",
					    "samepage_ksm_process_rmap_items", "samepage_ksm_process_zero_pages" };
	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		char expr[128];
		snprintf(expr, sizeof(expr), "count(%s)", fams[f]);
		assert_true(prom_value(expr, at) == MAX + 1);
	}
	assert_true(prom_value("samepage_ksm_processes", at) >= KIDS);
	assert_true(prom_value("samepage_ksm_process_rmap_items{pid=\"other\",comm=\"other\"}", at) > 0);
	/* the named ones gain most: the largest child is named, with its own
	 * numbers, and no unnamed child of ours gains more than a named one */
	json_object *root;
	json_object *res = prom_query("samepage_ksm_process_profit_bytes", at, &root);
	double least_named = INFINITY;
	bool named[KIDS] = { false };
	for (size_t i = 0; i < json_object_array_length(res); i++) {
		json_object *s = json_object_array_get_idx(res, i), *m = jget(s, "metric");
		const char *pid = json_object_get_string(jget(m, "pid"));
		double v = strtod(json_object_get_string(json_object_array_get_idx(jget(s, "value"), 1)), NULL);
		if (strcmp(pid, "other") == 0)
			continue;
		least_named = v < least_named ? v : least_named;
		for (int k = 0; k < KIDS; k++)
			if (atoi(pid) == kid[k]) {
				named[k] = true;
				assert_true(v == (double)child_stat(kid[k]).ksm_process_profit);
			}
	}
	json_object_put(root);
	assert_true(named[KIDS - 1]);
	for (int k = 0; k < KIDS; k++)
		if (!named[k])
			assert_true((double)child_stat(kid[k]).ksm_process_profit <= least_named);
	snprintf(key, sizeof(key), "samepage_ksm_process_merging_pages{pid=\"%d\"}", (int)kid[KIDS - 1]);
	assert_true(prom_value(key, at) == (double)child_stat(kid[KIDS - 1]).ksm_merging_pages);
	assert_int_equal(exporter_stop(&x, SIGTERM), 0);
	for (int i = 0; i < KIDS; i++)
		kid_stop(kid[i], SIGKILL);
}

/* A process name with the characters the format must escape, a tab, and a
 * byte that is not UTF-8 (which would make Prometheus reject the whole
 * scrape). No newline: libsamepage's comm reading stops at the first one. */
static void test_label_escaping(void **state)
{
	(void)state;
	REQUIRE_PROMETHEUS();
	if (!ksm_present())
		SKIP_BECAUSE("this kernel has no KSM (" KSM_DIR " missing)");
	static const char name[] = "sp\"q\\b\tx\xff";
	pid_t child = mergeable_child(4, 4, name);
	if (child_stat(child).ksm_mergeable != 1) {
		kid_stop(child, SIGKILL);
		SKIP_BECAUSE("this kernel's ksm_stat lacks ksm_mergeable: the process would show only once ksmd scanned it");
	}
	struct exporter x;
	assert_int_equal(exporter_start(&x, NULL, "--listen", scraped_listen(), "--max-processes", "100000", NULL), 0);
	char *page = get_ok(x.port, "/metrics");
	check_text_format(page);
	char want[128];
	snprintf(want, sizeof(want), "{pid=\"%d\",comm=\"sp\\\"q\\\\b\tx\xef\xbf\xbd\"}", (int)child);
	if (!strstr(page, want))
		fail_msg("%s not in the page", want);
	free(page);
	double at = wait_scrape_after(wall_now());
	char expr[96];
	snprintf(expr, sizeof(expr), "samepage_ksm_process_rmap_items{pid=\"%d\"}", (int)child);
	json_object *root;
	json_object *res = prom_query(expr, at, &root);
	assert_int_equal(json_object_array_length(res), 1);
	const char *comm = json_object_get_string(jget(jget(json_object_array_get_idx(res, 0), "metric"), "comm"));
	assert_string_equal(comm, "sp\"q\\b\tx\xef\xbf\xbd");
	json_object_put(root);
	assert_int_equal(exporter_stop(&x, SIGTERM), 0);
	kid_stop(child, SIGKILL);
}

/* A client of samepaged: an engine shared through the daemon over pages
 * of 8 contents. */
static char prepare_client(const void *arg)
{
	size_t pages = *(const size_t *)arg, ps = (size_t)sysconf(_SC_PAGESIZE);
	sp_engine *e;
	unsigned char *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || sp_engine_new(SP_ENGINE_SHARED, &e) != 0)
		return 'n';
	for (size_t i = 0; i < pages; i++)
		memset(m + i * ps, (int)(1 + i % 8), ps);
	return sp_madvise(e, m, pages * ps, MADV_MERGEABLE) == 0 ? 'y' : 'n';
}

/* --engine user with a real samepaged and a real client; then the daemon
 * goes away and the exporter says so instead of failing. */
static void test_user_engine_series(void **state)
{
	(void)state;
	sp_engine *probe;
	if (sp_engine_new(SP_ENGINE_MANUAL, &probe) != 0)
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel");
	sp_engine_free(probe);
	char sock[PATH_MAX], env[PATH_MAX + 20], log[PATH_MAX];
	snprintf(sock, sizeof(sock), "%s/d/samepaged.sock", tmp);
	snprintf(env, sizeof(env), "SAMEPAGE_SOCKET=%s", sock);
	snprintf(log, sizeof(log), "%s/samepaged.log", tmp);
	setenv("SAMEPAGE_SOCKET", sock, 1);  /* for the client and sp_ctl_open here */
	const char *argv[] = { build_path("bin/samepaged"), "--socket", sock, NULL };
	pid_t daemon = spawn(argv, log, NULL);
	sp_ctl *ctl = NULL;
	for (int i = 0; i < 500 && sp_ctl_open(sock, &ctl) != 0; i++)
		msleep(10);
	assert_non_null(ctl);
	sp_setting fast[] = { { "pages_to_scan", "5000" }, { "sleep_millisecs", "2" } };
	sp_diag d;
	assert_int_equal(sp_ctl_set(ctl, fast, 2, 0, &d), 0);
	size_t pages = 512;
	pid_t client = ready_child(prepare_client, &pages);
	sp_sample s = { 0 };
	for (int i = 0; i < 600 && s.value[SP_PAGES_SHARING] < 400; i++) {
		assert_int_equal(sp_ctl_sample(ctl, &s), 0);
		msleep(50);
	}
	sp_ctl_close(ctl);
	assert_true(s.value[SP_PAGES_SHARING] >= 400);

	struct exporter x;
	assert_int_equal(exporter_start(&x, env, "--listen", "127.0.0.1:0", "--engine", "user", NULL), 0);
	char *page = get_ok(x.port, "/metrics");
	check_text_format(page);
	assert_true(page_value(page, "samepage_user_engine_up") == 1);
	assert_true(page_value(page, "samepage_user_run") == 1);
	assert_true(page_value(page, "samepage_user_pages_sharing") >= 400);
	assert_true(page_value(page, "samepage_user_saved_bytes") >= 400 * 4096.0);
	assert_true(page_value(page, "samepage_user_processes") >= 1);
	assert_string_equal(page_type(page, "samepage_user_full_scans_total"), "counter");
	assert_string_equal(page_type(page, "samepage_user_sleep_seconds"), "gauge");
	assert_true(page_value(page, "samepage_user_sleep_seconds") == 0.002);
	char key[128], comm[32];
	snprintf(key, sizeof(key), "/proc/%d/comm", (int)client);
	char *c = slurp_file(key);
	snprintf(comm, sizeof(comm), "%.*s", (int)strcspn(c, "\n"), c);
	free(c);
	snprintf(key, sizeof(key), "samepage_user_process_merging_pages{pid=\"%d\",comm=\"%s\"}", (int)client, comm);
	assert_true(page_value(page, key) >= 400);
	assert_false(page_has_family(page, "samepage_ksm_available"));  /* --engine user only */
	free(page);

	assert_int_equal(kid_stop(daemon, SIGTERM), 0);
	page = get_ok(x.port, "/metrics");
	check_text_format(page);
	assert_true(page_value(page, "samepage_user_engine_up") == 0);
	assert_false(page_has_family(page, "samepage_user_run"));
	free(page);
	assert_int_equal(exporter_stop(&x, SIGTERM), 0);
	kid_stop(client, SIGKILL);
	unsetenv("SAMEPAGE_SOCKET");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_bad_arguments_and_busy_port, test_teardown),
		cmocka_unit_test_teardown(test_text_format_and_http, test_teardown),
		cmocka_unit_test_teardown(test_recorded_old_kernel, test_teardown),
		cmocka_unit_test_setup_teardown(test_prometheus_values_match_sysfs, ksm_test_setup, ksm_test_teardown),
		cmocka_unit_test_setup_teardown(test_negative_general_profit, ksm_test_setup, ksm_test_teardown),
		cmocka_unit_test_setup_teardown(test_cardinality_bound, ksm_test_setup, ksm_test_teardown),
		cmocka_unit_test_teardown(test_label_escaping, test_teardown),
		cmocka_unit_test_teardown(test_user_engine_series, test_teardown),
	};
	signal(SIGPIPE, SIG_IGN);
	atexit(kill_all_kids);
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	return cmocka_run_group_tests_name("exporter", tests, group_setup, group_teardown);
}
