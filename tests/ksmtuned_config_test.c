/* SPDX-License-Identifier: MIT */
/*
 * Description: /etc/ksmtuned.conf is read as the original's shell read it
 * (comments, quotes, blanks, export, ';', several assignments on a line,
 * backslash-newline), with the original's defaults. Every bad line (unknown
 * variable, malformed, not a number, unterminated quote, out of range,
 * shell expansions) gets a warning naming its line and keeps the value it
 * had. An unreadable file is a clear error. `samepage tune --dry-run`
 * decides from a recorded host exactly as the script would, and its JSON is
 * documented; ksmtuned(8) documents every variable and lints clean.
 */
#include "helpers.h"
#include "../src/tune/tune.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXW 64

struct seen {
	int n;
	int line[MAXW];
	char msg[MAXW][1024];
};

static void collect(void *ctx, const char *file, int line, const char *msg)
{
	struct seen *s = ctx;
	(void)file;
	if (s->n < MAXW) {
		s->line[s->n] = line;
		snprintf(s->msg[s->n], sizeof(s->msg[0]), "%s", msg);
		s->n++;
	}
}

static void test_defaults_are_the_originals(void **state)
{
	(void)state;
	struct tune_config c;
	tune_config_defaults(&c);
	assert_int_equal(c.monitor_interval, 60);
	assert_int_equal(c.npages_boost, 300);
	assert_int_equal(c.npages_decay, -50);
	assert_int_equal(c.npages_min, 64);
	assert_int_equal(c.npages_max, 1250);
	assert_int_equal(c.sleep_msec, 10);
	assert_int_equal(c.thres_coef, 20);
	assert_int_equal(c.thres_const, 2048);
	assert_string_equal(c.debug, "");
	assert_string_equal(c.logfile, "");
	assert_string_equal(c.pidfile, "/var/run/ksmtune.pid");
	assert_int_equal(c.policy, TUNE_CLASSIC);
	assert_string_equal(c.pattern, "^qemu(-(kvm|system-.+)|:.{1,11})$");
	assert_int_equal(c.metric, TUNE_RSZ);

	/* Red Hat's shipped file: everything commented out. */
	static const char redhat[] =
		"# Configuration file for ksmtuned.\n\n"
		"# How long ksmtuned should sleep between tuning adjustments\n# KSM_MONITOR_INTERVAL=60\n\n"
		"# Millisecond sleep between ksm scans for 16Gb server.\n"
		"# Smaller servers sleep more, bigger sleep less.\n# KSM_SLEEP_MSEC=10\n\n"
		"# KSM_NPAGES_BOOST=300\n# KSM_NPAGES_DECAY=-50\n# KSM_NPAGES_MIN=64\n"
		"# KSM_NPAGES_MAX=1250\n\n# KSM_THRES_COEF=20\n# KSM_THRES_CONST=2048\n\n"
		"# uncomment the following if you want ksmtuned debug info\n\n"
		"# LOGFILE=/var/log/ksmtuned\n# DEBUG=1\n";
	struct seen s = { 0 };
	struct tune_config d;
	tune_config_defaults(&d);
	assert_int_equal(tune_config_parse(&d, "ksmtuned.conf", redhat, collect, &s), 0);
	assert_memory_equal(&c, &d, sizeof(c));
}

static void test_shell_syntax(void **state)
{
	(void)state;
	static const char text[] =
		"# comment\n"                                          /* 1 */
		"\n"                                                   /* 2 */
		"   KSM_MONITOR_INTERVAL=30   # trailing comment\n"    /* 3 */
		"KSM_NPAGES_BOOST=\"500\"\n"                           /* 4 */
		"KSM_NPAGES_DECAY='-25'\n"                             /* 5 */
		"export KSM_NPAGES_MIN=100\n"                          /* 6 */
		"KSM_NPAGES_MAX=2000; KSM_SLEEP_MSEC=20\n"             /* 7 */
		"KSM_THRES_COEF=30\tKSM_THRES_CONST=4096\n"            /* 8 */
		"LOGFILE=/var/log/ksm#tuned\n"                         /* 9: '#' inside a word */
		"PIDFILE=\"/run/my ksmtuned.pid\"\n"                   /* 10 */
		"DEBUG=0\n"                                            /* 11: on, as in the shell */
		"KSM_PROCESS_PATTERN='^(qemu-system-.+|kvm)$'\n"       /* 12 */
		"KSM_PS_METRIC=PSS\n"                                  /* 13 */
		"KSM_POLICY=adaptive\n"                                /* 14 */
		"KSM_SCAN_TIME=\\\n"                                   /* 15 */
		"5\n"                                                  /* 16 */
		"KSM_REPROBE=\"\"\n"                                   /* 17: empty = default */
		"KSM_ADVISOR=no\n"                                     /* 18 */
		"KSM_MAX_CPU=+40\n"                                    /* 19 */
		"KSM_PROFIT_MIN=0032\n"                                /* 20: decimal, not octal */
		"KSM_PSI_THRES=\"5\"'0'\n"                             /* 21: "5"'0' is 50 */
		"LOGFILE=a\\ b\n";                                     /* 22 */
	struct tune_config c;
	tune_config_defaults(&c);
	struct seen s = { 0 };
	int n = tune_config_parse(&c, "good.conf", text, collect, &s);
	for (int i = 0; i < s.n; i++)
		print_message("unexpected warning, line %d: %s\n", s.line[i], s.msg[i]);
	assert_int_equal(n, 0);
	assert_int_equal(c.monitor_interval, 30);
	assert_int_equal(c.line[TV_MONITOR_INTERVAL], 3);
	assert_int_equal(c.npages_boost, 500);
	assert_int_equal(c.npages_decay, -25);
	assert_int_equal(c.npages_min, 100);
	assert_int_equal(c.line[TV_NPAGES_MIN], 6);
	assert_int_equal(c.npages_max, 2000);
	assert_int_equal(c.sleep_msec, 20);
	assert_int_equal(c.line[TV_SLEEP_MSEC], 7);
	assert_int_equal(c.thres_coef, 30);
	assert_int_equal(c.thres_const, 4096);
	assert_string_equal(c.pidfile, "/run/my ksmtuned.pid");
	assert_string_equal(c.debug, "0");
	assert_string_equal(c.pattern, "^(qemu-system-.+|kvm)$");
	assert_int_equal(c.metric, TUNE_PSS);
	assert_int_equal(c.policy, TUNE_ADAPTIVE);
	assert_int_equal(c.scan_time, 5);
	assert_int_equal(c.line[TV_SCAN_TIME], 15);
	assert_int_equal(c.reprobe, 300);
	assert_int_equal(c.advisor, TUNE_ADVISOR_NO);
	assert_int_equal(c.max_cpu, 40);
	assert_int_equal(c.profit_min, 32);
	assert_int_equal(c.psi_thres, 50);
	assert_string_equal(c.logfile, "a b");
}

static void test_every_bad_line_warns_and_keeps_the_default(void **state)
{
	(void)state;
	static const char text[] =
		"# every kind of mistake\n"                       /* 1 */
		"KSM_MONITOR_INTERVAL=0\n"                        /* 2 */
		"KSM_NPAGES_BOOST=abc\n"                          /* 3 */
		"KSM_NPAGES_DECAY=0x10\n"                         /* 4 */
		"KSM_NPAGES_MAX = 5000\n"                         /* 5 */
		"KSM_NPAGES_MIN=32 oops\n"                        /* 6 */
		"KSM_SLEEP_MSEC=\"20\n"                           /* 7 */
		"KSM_THRES_COEF=150\n"                            /* 8 */
		"KSM_THRES_CONST=99999999999999999999\n"          /* 9 */
		"KSM_FOO=1\n"                                     /* 10 */
		"LOGFILE=$HOME/ksmtuned.log\n"                    /* 11 */
		"PIDFILE=`hostname`.pid\n"                        /* 12 */
		"KSM_POLICY=fast\n"                               /* 13 */
		"KSM_PROCESS_PATTERN='qemu('\n"                   /* 14 */
		"KSM_PS_METRIC=rss2\n"                            /* 15 */
		"DEBUG='1\n"                                      /* 16 */
		"KSM_NPAGES_MIN=-1\n"                             /* 17 */
		"KSM_MAX_CPU=1.5\n"                               /* 18 */
		"just some words\n"                               /* 19 */
		"KSM_NPAGES_MAX=2000 > /tmp/x\n"                  /* 20 */
		"KSM_SCAN_TIME=\n"                                /* 21: empty is fine: default */
		"LOGFILE=\"/var/log/$(id)\"\n";                   /* 22 */
	static const struct {
		int line;
		const char *says;
	} expect[] = {
		{ 2, "KSM_MONITOR_INTERVAL: 0 is out of range 1..86400 s; keeping the default KSM_MONITOR_INTERVAL='60'" },
		{ 3, "KSM_NPAGES_BOOST: 'abc' is not a whole number; keeping the default KSM_NPAGES_BOOST='300'" },
		{ 4, "KSM_NPAGES_DECAY: '0x10' is not a whole number" },
		{ 5, "no spaces around '=' (write KSM_NPAGES_MAX=5000)" },
		{ 6, "'oops' is not a VAR=value assignment (the shell would run it as a command)" },
		{ 7, "unterminated double quote" },
		{ 8, "KSM_THRES_COEF: 150 is out of range 0..100 %" },
		{ 9, "KSM_THRES_CONST: 99999999999999999999 is out of range" },
		{ 10, "unknown variable KSM_FOO" },
		{ 11, "'$' expansion is not supported" },
		{ 12, "'`' expansion is not supported" },
		{ 13, "KSM_POLICY: 'fast' is not one of classic, adaptive" },
		{ 14, "KSM_PROCESS_PATTERN: 'qemu(' is not an extended regular expression" },
		{ 15, "KSM_PS_METRIC: 'rss2' is not one of rsz, pss, vsz" },
		{ 16, "unterminated single quote" },
		{ 17, "KSM_NPAGES_MIN: -1 is out of range 0..4294967295 pages" },
		{ 18, "KSM_MAX_CPU: '1.5' is not a whole number" },
		{ 19, "'just' is not a VAR=value assignment" },
		{ 20, "shell operator '>' is not supported" },
		{ 22, "'$' expansion is not supported" },
	};
	struct tune_config c, def;
	tune_config_defaults(&c);
	tune_config_defaults(&def);
	struct seen s = { 0 };
	int n = tune_config_parse(&c, "bad.conf", text, collect, &s);
	size_t count = sizeof(expect) / sizeof(expect[0]);
	for (int i = 0; i < s.n; i++)
		print_message("# line %d: %s\n", s.line[i], s.msg[i]);
	assert_int_equal(n, (int)count);
	assert_int_equal(s.n, (int)count);
	for (size_t i = 0; i < count; i++) {
		assert_int_equal(s.line[i], expect[i].line);
		if (!strstr(s.msg[i], expect[i].says))
			fail_msg("line %d: '%s' does not say '%s'", s.line[i], s.msg[i], expect[i].says);
		if (expect[i].line != 10 && expect[i].line != 19 && expect[i].line != 6 &&
		    expect[i].line != 5 && !strstr(s.msg[i], "keeping") && !strstr(s.msg[i], "ignored"))
			fail_msg("line %d: '%s' does not say what is kept", s.line[i], s.msg[i]);
	}
	/* Everything kept its default (line 21 set KSM_SCAN_TIME to it). */
	def.line[TV_SCAN_TIME] = 21;
	assert_memory_equal(&c, &def, sizeof(c));

	/* A bad value after a good one keeps the good one, and says so. */
	tune_config_defaults(&c);
	s.n = 0;
	assert_int_equal(tune_config_parse(&c, "x.conf", "KSM_NPAGES_MAX=600\nKSM_NPAGES_MAX=lots\n", collect, &s), 1);
	assert_int_equal(c.npages_max, 600);
	assert_int_equal(s.line[0], 2);
	assert_non_null(strstr(s.msg[0], "keeping KSM_NPAGES_MAX='600' from line 1"));

	/* A minimum above the maximum is allowed, as in the original, but noted. */
	tune_config_defaults(&c);
	s.n = 0;
	assert_int_equal(tune_config_parse(&c, "x.conf", "\nKSM_NPAGES_MIN=2000\n", collect, &s), 1);
	assert_int_equal(s.line[0], 2);
	assert_non_null(strstr(s.msg[0], "above KSM_NPAGES_MAX"));
}

static void test_unreadable_config_is_an_error(void **state)
{
	(void)state;
	struct tune_config c;
	tune_config_defaults(&c);
	assert_int_equal(tune_config_load(&c, "/nonexistent/ksmtuned.conf", NULL, NULL), -ENOENT);
	assert_int_equal(tune_config_load(&c, "/", NULL, NULL), -EISDIR);

	const char *ksmtuned = build_path("sbin/ksmtuned");
	const char *argv[] = { ksmtuned, "-f", "-c", "/nonexistent/ksmtuned.conf", NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "cannot read configuration /nonexistent/ksmtuned.conf: No such file"));
	cmd_result_free(&r);

	run_samepage(&r, "tune", "--dry-run", "--config", "/nonexistent/x.conf", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "cannot read configuration /nonexistent/x.conf"));
	cmd_result_free(&r);

	if (!is_root())
		return;
	/* A file only root may read, read by nobody. */
	char *dir = make_tempdir();
	chmod(dir, 0755);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/secret.conf", dir);
	write_file_p(path, "KSM_NPAGES_MAX=2000\n");
	chmod(path, 0600);
	const char *argv2[] = { ksmtuned, "-f", "-c", path, NULL };
	run_cmd(argv2, NULL, NOBODY_UID, &r);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "Permission denied"));
	cmd_result_free(&r);
	remove_tree(dir);
	free(dir);
}

/* ------------------------------------------------------------------------
 * samepage tune --dry-run on a recorded host
 * ---------------------------------------------------------------------- */

static void put(const char *root, const char *rel, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	write_file_p(path, text);
}

static void add_proc(const char *root, int pid, const char *comm, long rss_kb, const char *ksm_stat)
{
	char rel[64], text[512];
	snprintf(rel, sizeof(rel), "proc/%d/comm", pid);
	snprintf(text, sizeof(text), "%s\n", comm);
	put(root, rel, text);
	snprintf(rel, sizeof(rel), "proc/%d/status", pid);
	snprintf(text, sizeof(text), "Name:\t%s\nVmSize:\t%ld kB\nVmRSS:\t%ld kB\nRssAnon:\t%ld kB\n", comm,
		 rss_kb * 2, rss_kb, rss_kb - 1000);
	put(root, rel, text);
	snprintf(rel, sizeof(rel), "proc/%d/stat", pid);
	snprintf(text, sizeof(text), "%d (%s) S 1 %d %d 0 -1 4194560 0 0 0 0 10 20 0 0 20 0 4 0 %d 0 0\n", pid,
		 comm, pid, pid, 1000 + pid);
	put(root, rel, text);
	if (ksm_stat) {
		snprintf(rel, sizeof(rel), "proc/%d/ksm_stat", pid);
		put(root, rel, ksm_stat);
	}
}

/* A busy 2 GiB host with a qemu-kvm guest, a libvirt-named guest and a shell. */
static char *make_host(void)
{
	char *root = make_tempdir();
	put(root, "proc/meminfo",
	    "MemTotal:        2030464 kB\nMemFree:          112340 kB\nMemAvailable:     301220 kB\n"
	    "Buffers:           20412 kB\nCached:           198804 kB\nSwapCached:         1024 kB\n");
	put(root, "proc/pressure/memory", "some avg10=3.10 avg60=1.00 avg300=0.20 total=1\n"
					  "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
	static const char *const ksm[][2] = {
		{ "run", "0\n" }, { "pages_to_scan", "100\n" }, { "sleep_millisecs", "20\n" },
		{ "advisor_mode", "[none] scan-time\n" }, { "full_scans", "12\n" }, { "pages_shared", "0\n" },
		{ "pages_sharing", "0\n" }, { "pages_unshared", "0\n" }, { "pages_volatile", "0\n" },
		{ "general_profit", "0\n" }, { "pages_scanned", "0\n" },
	};
	for (size_t i = 0; i < sizeof(ksm) / sizeof(ksm[0]); i++) {
		char rel[128];
		snprintf(rel, sizeof(rel), "sys/kernel/mm/ksm/%s", ksm[i][0]);
		put(root, rel, ksm[i][1]);
	}
	static const char mergeable[] = "ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\n"
					"ksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: yes\n";
	add_proc(root, 4242, "qemu-kvm", 1787436, mergeable);
	add_proc(root, 4243, "qemu:web01", 100000, mergeable);  /* libvirt's set_process_name */
	add_proc(root, 4244, "bash", 5000, NULL);
	add_proc(root, 4245, "qemu-img", 70000, NULL);           /* not a guest */
	return root;
}

static json_object *tune_json(const char *root, const char *policy, const char *config)
{
	struct cmd_result r;
	run_samepage(&r, "--root", root, "tune", "--dry-run", "--json", "--policy", policy, "--config", config,
		     NULL);
	if (r.status != 0)
		fail_msg("samepage tune failed (%d): %s", r.status, r.err);
	json_object *j = json_tokener_parse(r.out);
	assert_non_null(j);
	cmd_result_free(&r);
	return j;
}

static const char *jstr(json_object *o, const char *a, const char *b)
{
	json_object *x = NULL, *y = NULL;
	assert_true(json_object_object_get_ex(o, a, &x));
	if (!b)
		return json_object_get_string(x);
	assert_true(json_object_object_get_ex(x, b, &y));
	return json_object_get_string(y);
}

static void keys_documented(json_object *o, const char *page)
{
	if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			keys_documented(json_object_array_get_idx(o, i), page);
		return;
	}
	if (!json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach(o, key, val) {
		if (!strstr(page, key))
			fail_msg("tune --json key '%s' is not documented in samepage(8)", key);
		if (val)
			keys_documented(val, page);
	}
}

static void test_dry_run_on_a_recorded_host(void **state)
{
	(void)state;
	char *root = make_host();
	char conf[PATH_MAX];
	snprintf(conf, sizeof(conf), "%s/ksmtuned.conf", root);
	write_file_p(conf, "KSM_NPAGES_BOOST=300\nKSM_BOGUS=1\n");

	/* classic: committed = 1787436 + 100000 (qemu-img is no guest),
	 * free = 112340 + 20412 + 198804 = 331556 < thres 406092: boost. */
	json_object *j = tune_json(root, "classic", conf);
	assert_string_equal(jstr(j, "policy", NULL), "classic");
	assert_string_equal(jstr(j, "computed", "committed"), "1887436");
	assert_string_equal(jstr(j, "computed", "free"), "331556");
	assert_string_equal(jstr(j, "computed", "thres"), "406092");
	assert_string_equal(jstr(j, "computed", "sleep"), "82");
	assert_string_equal(jstr(j, "decision", "action"), "start");
	json_object *dec, *writes, *log, *cfg, *warns;
	json_object_object_get_ex(j, "decision", &dec);
	json_object_object_get_ex(dec, "writes", &writes);
	assert_int_equal(json_object_array_length(writes), 3);
	assert_string_equal(jstr(json_object_array_get_idx(writes, 0), "name", NULL), "pages_to_scan");
	assert_string_equal(jstr(json_object_array_get_idx(writes, 0), "value", NULL), "300");
	json_object_object_get_ex(j, "log", &log);
	static const char *const lines[] = { "total 2030464", "sleep 82", "thres 406092",
					     "committed 1887436 free 331556", "2293528 > 2030464, start ksm",
					     "331556 < 406092, boost", "KSMCTL start 300 82" };
	assert_int_equal(json_object_array_length(log), 7);
	for (size_t i = 0; i < 7; i++)
		assert_string_equal(json_object_get_string(json_object_array_get_idx(log, i)), lines[i]);
	json_object_object_get_ex(j, "config", &cfg);
	json_object_object_get_ex(cfg, "warnings", &warns);
	assert_int_equal(json_object_array_length(warns), 1);
	assert_non_null(strstr(json_object_get_string(json_object_array_get_idx(warns, 0)),
			       "ksmtuned.conf:2: unknown variable KSM_BOGUS"));
	char *page = read_source_text("man/samepage.8");
	keys_documented(j, page);
	json_object_put(j);

	/* adaptive: MemAvailable 301220 < thres, two mergeable guests. */
	j = tune_json(root, "adaptive", conf);
	assert_string_equal(jstr(j, "decision", "action"), "start");
	assert_non_null(strstr(jstr(j, "decision", "reason"), "start-up under pressure (MemAvailable 301220 kB"));
	assert_string_equal(jstr(j, "computed", "committed"), "1885436");
	keys_documented(j, page);
	json_object_put(j);
	free(page);

	/* The human form, and warnings on stderr with file and line. */
	struct cmd_result r;
	run_samepage(&r, "--root", root, "tune", "--dry-run", "--config", conf, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "Decision: start pages_to_scan=300 sleep_millisecs=82 run=1"));
	assert_non_null(strstr(r.out, "4242 qemu-kvm"));
	assert_non_null(strstr(r.out, "4243 qemu:web01"));
	assert_null(strstr(r.out, "qemu-img"));
	assert_non_null(strstr(r.out, "Nothing was changed"));
	assert_non_null(strstr(r.err, "ksmtuned.conf:2: unknown variable KSM_BOGUS"));
	cmd_result_free(&r);
	/* Nothing was written into the recorded tree. */
	char path[PATH_MAX], buf[32] = "";
	snprintf(path, sizeof(path), "%s/sys/kernel/mm/ksm/pages_to_scan", root);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "100\n");

	run_samepage(&r, "tune", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "only --dry-run"));
	cmd_result_free(&r);
	remove_tree(root);
	free(root);
}

static void test_man_page(void **state)
{
	(void)state;
	char *page = read_source_text("man/ksmtuned.8");
	for (int v = 0; v < TV_COUNT; v++)
		if (!strstr(page, tune_vars[v].name))
			fail_msg("ksmtuned(8) does not document %s", tune_vars[v].name);
	static const char *const must[] = { "SIGUSR1", "SIGHUP", "SIGTERM", "/var/run/ksmtune.pid",
					    "/etc/ksmtuned.conf", "NOTIFY_SOCKET", "KSMCTL start", "stop ksm",
					    "boost", "decay", "start ksm", "committed", "--foreground",
					    "--config", "MemAvailable", "advisor_max_cpu", "EXIT STATUS",
					    "QUIRKS", "ksmtuned.service", "samepage tune" };
	char *raw = read_source_text("man/ksmtuned.8");
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		if (!strstr(page, must[i]) && !strstr(raw, must[i]))
			fail_msg("ksmtuned(8) does not mention %s", must[i]);
	for (int code = 0; code <= 4; code++) {
		char tag[16];
		snprintf(tag, sizeof(tag), ".IP %d", code);
		if (code != 3 && !strstr(page, tag))
			fail_msg("exit code %d is not documented in ksmtuned(8)", code);
	}
	free(raw);
	free(page);
	if (access("/usr/bin/mandoc", X_OK) != 0)
		SKIP_BECAUSE("mandoc is not installed (scripts/setup.sh installs it)");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/man/ksmtuned.8", getenv("SAMEPAGE_SRC") ? getenv("SAMEPAGE_SRC") : ".");
	const char *argv[] = { "mandoc", "-T", "lint", "-W", "warning", path, NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	if (r.status != 0 || r.out[0] || r.err[0])
		fail_msg("mandoc lint ksmtuned.8: %s%s", r.out, r.err);
	cmd_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_are_the_originals),
		cmocka_unit_test(test_shell_syntax),
		cmocka_unit_test(test_every_bad_line_warns_and_keeps_the_default),
		cmocka_unit_test(test_unreadable_config_is_an_error),
		cmocka_unit_test(test_dry_run_on_a_recorded_host),
		cmocka_unit_test(test_man_page),
	};
	return cmocka_run_group_tests_name("ksmtuned_config", tests, NULL, NULL);
}
