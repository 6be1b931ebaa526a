/* SPDX-License-Identifier: MIT */
/*
 * engine_vs_ksm: the same workload under the kernel's KSM and under the
 * user-space engine, one after the other, at the same pages_to_scan and
 * sleep_millisecs (the kernel's defaults, then unthrottled), side by side.
 * See docs/performance.md for what is measured and how to read it.
 *
 * Kernel KSM is one machine-wide resource: the whole run holds
 * /run/merge-bench.lock (as the tests do), saves every knob first and puts
 * every one back at the end, also after SIGINT/SIGTERM/SIGHUP. Between
 * phases run=2 unmerges everything, so each phase starts from nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <samepage.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "phase.h"
#include "probe.h"

#define LOCK_PATH "/run/merge-bench.lock"
#define MIB (1024.0 * 1024.0)

struct config {
	const char *name;
	long pages_to_scan, sleep_ms;
};

struct opts {
	struct phase_cfg base;     /* everything but the merger and the pace */
	struct config cfg[2];
	bool run_cfg[2];
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

/* ------------------------------------------------------------ options */

static void usage(FILE *f)
{
	fputs("usage: engine_vs_ksm [options]   (as root: it drives the kernel's KSM)\n"
	      "workload:\n"
	      "  --size BYTES            image size, K/M/G suffixes (256M)\n"
	      "  --dup F --zero F --unique F --volatile F\n"
	      "                          shares of pages, 0.6 or 60% (0.60 0.10 rest 0.05)\n"
	      "  --distinct N            contents of the duplicate pool (64)\n"
	      "  --regions N             separate mappings (8)\n"
	      "  --cluster N             pages of one class in a row (1: each page drawn)\n"
	      "  --write-rate N          stores/s into volatile pages (10000)\n"
	      "  --dup-write-rate N      same-value stores/s into duplicate pages (5)\n"
	      "  --seed N                (1)\n"
	      "mergers (the same values for both):\n"
	      "  --pages-to-scan N --sleep-ms N            throttled pace (100, 20)\n"
	      "  --fast-pages-to-scan N --fast-sleep-ms N  unthrottled pace (25000, 0)\n"
	      "  --configs LIST          throttled,unthrottled (both)\n"
	      "  --use-zero-pages 0|1    (0)   --max-page-sharing N (256)   --smart-scan 0|1 (1)\n"
	      "measurement:\n"
	      "  --timeout S             most seconds to wait for 99 % of the savings (90)\n"
	      "  --steady-seconds S      length of each steady-state window (10)\n"
	      "  --baseline-seconds S    writer alone before merging starts (2)\n"
	      "  --verbose               progress on stderr\n",
	      f);
}

static bool parse_size(const char *s, size_t *pages)
{
	char *end;
	double v = strtod(s, &end);
	double mult = 1;
	if (*end && strchr("kK", *end))
		mult = 1024;
	else if (*end && strchr("mM", *end))
		mult = MIB;
	else if (*end && strchr("gG", *end))
		mult = 1024 * MIB;
	if (mult > 1) {
		end++;
		if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
			end += strlen(end);
	}
	if (*end || end == s || v <= 0)
		return false;
	*pages = (size_t)(v * mult / (double)WL_PAGE);
	return *pages > 0;
}

/* "throttled", "unthrottled" or both, comma-separated. */
static bool parse_configs(const char *s, bool run[2])
{
	run[0] = run[1] = false;
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (strcmp(t, "throttled") == 0)
			run[0] = true;
		else if (strcmp(t, "unthrottled") == 0)
			run[1] = true;
		else
			return false;
	}
	return run[0] || run[1];
}

static bool parse_share(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (*end == '%') {
		v /= 100;
		end++;
	}
	if (*end || v < 0 || v > 1)
		return false;
	*out = v;
	return true;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_SIZE = 256, O_DUP, O_ZERO, O_UNIQUE, O_VOLATILE, O_DISTINCT, O_REGIONS, O_CLUSTER,
	       O_RATE, O_DUPRATE, O_SEED, O_PTS, O_SLEEP, O_FPTS, O_FSLEEP, O_CONFIGS, O_UZP, O_MPS,
	       O_SMART, O_TIMEOUT, O_STEADY, O_BASELINE, O_VERBOSE, O_HELP };
	static const struct option lo[] = {
		{ "size", 1, 0, O_SIZE }, { "dup", 1, 0, O_DUP }, { "zero", 1, 0, O_ZERO },
		{ "unique", 1, 0, O_UNIQUE }, { "volatile", 1, 0, O_VOLATILE },
		{ "distinct", 1, 0, O_DISTINCT }, { "regions", 1, 0, O_REGIONS },
		{ "cluster", 1, 0, O_CLUSTER }, { "write-rate", 1, 0, O_RATE },
		{ "dup-write-rate", 1, 0, O_DUPRATE }, { "seed", 1, 0, O_SEED },
		{ "pages-to-scan", 1, 0, O_PTS }, { "sleep-ms", 1, 0, O_SLEEP },
		{ "fast-pages-to-scan", 1, 0, O_FPTS }, { "fast-sleep-ms", 1, 0, O_FSLEEP },
		{ "configs", 1, 0, O_CONFIGS }, { "use-zero-pages", 1, 0, O_UZP },
		{ "max-page-sharing", 1, 0, O_MPS }, { "smart-scan", 1, 0, O_SMART },
		{ "timeout", 1, 0, O_TIMEOUT }, { "steady-seconds", 1, 0, O_STEADY },
		{ "baseline-seconds", 1, 0, O_BASELINE }, { "verbose", 0, 0, O_VERBOSE },
		{ "help", 0, 0, O_HELP }, { 0, 0, 0, 0 },
	};
	struct phase_cfg *c = &o->base;
	struct wl_params *w = &c->wl;
	bool unique_given = false;
	double v;
	int ch, idx = 0;
	while ((ch = getopt_long(argc, argv, "", lo, &idx)) != -1) {
		bool ok = true;
		switch (ch) {
		case O_SIZE: ok = parse_size(optarg, &w->pages); break;
		case O_DUP: ok = parse_share(optarg, &w->share[WL_DUP]); break;
		case O_ZERO: ok = parse_share(optarg, &w->share[WL_ZERO]); break;
		case O_UNIQUE: ok = parse_share(optarg, &w->share[WL_UNIQUE]); unique_given = true; break;
		case O_VOLATILE: ok = parse_share(optarg, &w->share[WL_VOLATILE]); break;
		case O_DISTINCT: ok = parse_num(optarg, 1, 65536, &v); w->distinct = (unsigned)v; break;
		case O_REGIONS: ok = parse_num(optarg, 1, 4096, &v); w->regions = (unsigned)v; break;
		case O_CLUSTER: ok = parse_num(optarg, 1, 1 << 20, &v); w->cluster = (unsigned)v; break;
		case O_RATE: ok = parse_num(optarg, 0, 1e7, &c->write_rate); break;
		case O_DUPRATE: ok = parse_num(optarg, 0, 1e7, &c->dup_write_rate); break;
		case O_SEED: ok = parse_num(optarg, 1, 1e18, &v); w->seed = (uint64_t)v; break;
		case O_PTS: ok = parse_num(optarg, 1, 4294967295.0, &v); o->cfg[0].pages_to_scan = (long)v; break;
		case O_SLEEP: ok = parse_num(optarg, 0, 4294967295.0, &v); o->cfg[0].sleep_ms = (long)v; break;
		case O_FPTS: ok = parse_num(optarg, 1, 4294967295.0, &v); o->cfg[1].pages_to_scan = (long)v; break;
		case O_FSLEEP: ok = parse_num(optarg, 0, 4294967295.0, &v); o->cfg[1].sleep_ms = (long)v; break;
		case O_CONFIGS: ok = parse_configs(optarg, o->run_cfg); break;
		case O_UZP: ok = parse_num(optarg, 0, 1, &v); c->use_zero_pages = v != 0; break;
		case O_MPS: ok = parse_num(optarg, 2, 2147483647.0, &v); c->max_page_sharing = (unsigned)v; break;
		case O_SMART: ok = parse_num(optarg, 0, 1, &v); c->smart_scan = v != 0; break;
		case O_TIMEOUT: ok = parse_num(optarg, 1, 86400, &c->timeout); break;
		case O_STEADY: ok = parse_num(optarg, 0.5, 3600, &c->steady_seconds); break;
		case O_BASELINE: ok = parse_num(optarg, 0, 3600, &c->baseline_seconds); break;
		case O_VERBOSE: c->verbose = true; break;
		case O_HELP: usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
		if (!ok) {
			fprintf(stderr, "engine_vs_ksm: bad value '%s' for --%s\n", optarg, lo[idx].name);
			return -1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	double others = w->share[WL_DUP] + w->share[WL_ZERO] + w->share[WL_VOLATILE];
	if (!unique_given)
		w->share[WL_UNIQUE] = others <= 1 ? 1 - others : 0;
	double sum = others + w->share[WL_UNIQUE];
	if (fabs(sum - 1) > 1e-6) {
		fprintf(stderr, "engine_vs_ksm: the shares add up to %.4f, not 1\n", sum);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ kernel KSM */

/* Every knob as it was, to put back. */
struct saved_knobs {
	sp_setting set[SP_PARAM_COUNT];
	char val[SP_PARAM_COUNT][64];
	size_t n;
};

static int knobs_save(sp_ksm *k, struct saved_knobs *sv)
{
	sp_sample s;
	int e = sp_ksm_sample(k, &s);
	if (e)
		return e;
	int64_t adv = 0;
	sp_sample_get(&s, SP_ADVISOR_MODE, &adv);
	sv->n = 0;
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		if (!(in->flags & SP_PF_KNOB) || !(s.present & (1ull << p)))
			continue;
		if (p == SP_PAGES_TO_SCAN && adv)
			continue;  /* the advisor's own choice: not writable */
		sp_param_format(p, s.value[p], sv->val[sv->n], sizeof(sv->val[0]));
		sv->set[sv->n] = (sp_setting){ in->name, sv->val[sv->n] };
		sv->n++;
	}
	return 0;
}

/* Put every knob back (run last, as sp_ksm_set orders it) and check. */
static int knobs_restore(sp_ksm *k, const struct saved_knobs *sv)
{
	sp_diag d;
	sp_ksm_set_run(k, 2, &d);
	int e = sp_ksm_set(k, sv->set, sv->n, SP_SET_UNMERGE_FIRST, &d);
	if (e) {
		fprintf(stderr, "engine_vs_ksm: restoring the KSM knobs failed: %s\n", d.msg);
		return e;
	}
	struct saved_knobs now;
	if (knobs_save(k, &now) == 0)
		for (size_t i = 0; i < sv->n && i < now.n; i++)
			if (strcmp(sv->val[i], now.val[i]) != 0) {
				fprintf(stderr, "engine_vs_ksm: knob %s is %s, was %s\n", sv->set[i].name,
					now.val[i], sv->val[i]);
				e = -EIO;
			}
	return e;
}

/* Stop ksmd, unmerge everything, then the phase's knobs. */
static int kernel_prepare(sp_ksm *k, const struct phase_cfg *c, bool for_kernel)
{
	sp_diag d;
	int e = sp_ksm_set_run(k, 2, &d);
	if (e) {
		fprintf(stderr, "engine_vs_ksm: run=2: %s\n", d.msg);
		return e;
	}
	int64_t shared = 0, sharing = 0, zero = 0;
	sp_ksm_read(k, SP_PAGES_SHARED, &shared);
	sp_ksm_read(k, SP_PAGES_SHARING, &sharing);
	sp_ksm_read(k, SP_KSM_ZERO_PAGES, &zero);
	if (shared || sharing || zero)
		fprintf(stderr, "engine_vs_ksm: warning: after run=2 the kernel still counts "
				"pages_shared=%lld pages_sharing=%lld ksm_zero_pages=%lld\n",
			(long long)shared, (long long)sharing, (long long)zero);
	if (!for_kernel)
		return 0;
	char pts[24], slp[24], mps[24];
	snprintf(pts, sizeof(pts), "%ld", c->pages_to_scan);
	snprintf(slp, sizeof(slp), "%ld", c->sleep_ms);
	snprintf(mps, sizeof(mps), "%u", c->max_page_sharing);
	sp_setting set[] = {
		{ "advisor_mode", "none" },
		{ "max_page_sharing", mps },
		{ "use_zero_pages", c->use_zero_pages ? "1" : "0" },
		{ "smart_scan", c->smart_scan ? "1" : "0" },
		{ "pages_to_scan", pts },
		{ "sleep_millisecs", slp },
	};
	e = sp_ksm_set(k, set, sizeof(set) / sizeof(set[0]), SP_SET_UNMERGE_FIRST, &d);
	if (e)
		fprintf(stderr, "engine_vs_ksm: setting the kernel's knobs: %s\n", d.msg);
	return e;
}

/* Other processes that the kernel would scan and count with ours. */
static void warn_other_ksm_users(sp_ksm *k)
{
	sp_proc_ksm *list;
	size_t n, unreadable;
	if (sp_proc_ksm_list(k, &list, &n, &unreadable))
		return;
	for (size_t i = 0; i < n; i++)
		if (list[i].pid != getpid() && (list[i].ksm_mergeable == 1 || list[i].ksm_merge_any == 1))
			fprintf(stderr, "engine_vs_ksm: warning: process %d (%s) has KSM-mergeable memory: "
					"ksmd's time and the kernel's counters include it\n",
				(int)list[i].pid, list[i].comm);
	free(list);
}

/* ------------------------------------------------------------ phases */

/* Run one phase in a child; false if it could not be measured. */
static bool run_child(const struct phase_cfg *c, struct phase_result *r)
{
	int p[2];
	if (pipe(p)) {
		perror("pipe");
		return false;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return false;
	}
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		close(p[0]);
		static struct phase_result res;
		phase_run(c, &res);
		const char *b = (const char *)&res;
		for (size_t off = 0; off < sizeof(res);) {
			ssize_t w = write(p[1], b + off, sizeof(res) - off);
			if (w <= 0)
				_exit(2);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(p[1]);
	memset(r, 0, sizeof(*r));
	size_t got = 0;
	while (got < sizeof(*r)) {
		ssize_t n = read(p[0], (char *)r + got, sizeof(*r) - got);
		if (n < 0 && errno == EINTR) {
			if (interrupted) {
				kill(pid, SIGKILL);
				break;
			}
			continue;
		}
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		kill(pid, SIGKILL);
	if (got != sizeof(*r)) {
		fprintf(stderr, "engine_vs_ksm: the %s phase died (%s)\n", c->engine ? "engine" : "kernel",
			WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "no result");
		return false;
	}
	if (r->status) {
		fprintf(stderr, "engine_vs_ksm: the %s phase failed: %s\n", c->engine ? "engine" : "kernel",
			r->error);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------ report */

static void row(const char *label, const char *k, const char *e, const char *ratio, const char *target)
{
	printf("  %-46s %14s %14s %9s  %s\n", label, k, e, ratio, target);
}

static void fmt(char *b, size_t n, const char *f, double v)
{
	if (v < 0 || isnan(v) || isinf(v))
		snprintf(b, n, "-");
	else
		snprintf(b, n, f, v);
}

static void row_num(const char *label, const char *f, double k, double e, bool with_ratio)
{
	char kb[32], eb[32], rb[32] = "";
	fmt(kb, sizeof(kb), f, k);
	fmt(eb, sizeof(eb), f, e);
	if (with_ratio && k > 0 && e >= 0)
		snprintf(rb, sizeof(rb), "%.2fx", e / k);
	row(label, kb, eb, rb, "");
}

/* A row that is a target: ratio engine/kernel compared with limit. */
static bool row_target(const char *label, const char *f, double k, double e, bool at_most,
		       double limit, const char *note)
{
	char kb[32], eb[32], rb[32] = "-", tb[128];
	fmt(kb, sizeof(kb), f, k);
	fmt(eb, sizeof(eb), f, e);
	bool pass = false;
	if (k > 0 && e >= 0) {
		double q = e / k;
		snprintf(rb, sizeof(rb), "%.2fx", q);
		pass = at_most ? q <= limit : q >= limit;
	} else if (k == 0 && e == 0) {
		pass = true;
	}
	snprintf(tb, sizeof(tb), "%s %s %.2fx%s%s", pass ? "PASS" : "FAIL", at_most ? "<=" : ">=", limit,
		 note ? ": " : "", note ? note : "");
	row(label, kb, eb, rb, tb);
	return pass;
}

static double us(double ns)
{
	return ns < 0 ? -1 : ns / 1000;
}

static double per_s(double n, double secs)
{
	return secs > 0 ? n / secs : -1;
}

static int report(const struct config *cfg, const struct phase_result *k, const struct phase_result *e,
		  char *summary, size_t len)
{
	char t[64], kb[48], eb[48];
	printf("\n== %s: pages_to_scan=%ld sleep_millisecs=%ld ==\n", cfg->name, cfg->pages_to_scan,
	       cfg->sleep_ms);
	if (k->disturbed)
		printf("  WARNING: the kernel phase was disturbed, its numbers are not to be trusted: %s\n",
		       k->disturbance);
	row("", "kernel KSM", "engine", "eng/kern", "target");
	row("change detection", "checksum", e->detection, "", "");
	snprintf(kb, sizeof(kb), "%.2f -> %.2f", k->load_start, k->load_end);
	snprintf(eb, sizeof(eb), "%.2f -> %.2f", e->load_start, e->load_end);
	row("machine load average, phase start -> end", kb, eb, "", "");
	snprintf(kb, sizeof(kb), "%lld", (long long)k->possible);
	snprintf(eb, sizeof(eb), "%lld", (long long)e->possible);
	row("possible savings (pages)", kb, eb, "", "");
	row_num("time to 90% of possible (s)", "%.2f", k->t90, e->t90, true);
	row_num("time to 99% of possible (s)", "%.2f", k->t99, e->t99, true);
	row_num("longest counter reading while converging (s)", "%.3f", k->max_read_wait, e->max_read_wait,
		false);
	row_num("merger CPU to 90% (s)", "%.3f", k->cpu90, e->cpu90, true);
	/* If the kernel never got to 99 %, what it spent trying is the bar. */
	double kcpu = k->cpu99 >= 0 ? k->cpu99 : k->conv_cpu;
	int fails = 0;
	fails += !row_target("merger CPU to 99% (s)", "%.3f", kcpu, e->cpu99, true, 1.0,
			     k->cpu99 < 0 ? "kernel did not reach 99%" : NULL);
	row_num("writer thread CPU while converging (% of a CPU)", "%.2f", 100 * per_s(k->writer_cpu, k->conv_wall),
		100 * per_s(e->writer_cpu, e->conv_wall), true);
	double kc = (double)k->saved_end * WL_PAGE / MIB, ec = (double)e->saved_end * WL_PAGE / MIB;
	double kp = (double)(k->pss_before - k->pss_after) / MIB, ep = (double)(e->pss_before - e->pss_after) / MIB;
	double ka = (double)(k->avail_after - k->avail_before) / MIB;
	double ea = (double)(e->avail_after - e->avail_before) / MIB;
	fails += !row_target("saved at end: counters (MiB)", "%.1f", kc, ec, false, 0.95, NULL);
	fails += !row_target("saved at end: PSS drop (MiB)", "%.1f", kp, ep, false, 0.95, NULL);
	/* machine-wide, so it may move either way with everything else running */
	char kab[32], eab[32];
	snprintf(kab, sizeof(kab), "%.1f", ka);
	snprintf(eab, sizeof(eab), "%.1f", ea);
	row("saved at end: MemAvailable rise (MiB)", kab, eab, "", "");
	row_num("saved at end, % of possible", "%.1f", 100.0 * (double)k->saved_end / (double)k->possible,
		100.0 * (double)e->saved_end / (double)e->possible, false);
	row_num("steady, writer on: merger CPU (% of a CPU)", "%.2f", 100 * per_s(k->s1_cpu, k->s1_wall),
		100 * per_s(e->s1_cpu, e->s1_wall), true);
	row_num("steady, writer on: full scans/s", "%.2f", per_s((double)k->s1_scans, k->s1_wall),
		per_s((double)e->s1_scans, e->s1_wall), true);
	row_num("steady, no changes: merger CPU (% of a CPU)", "%.2f", 100 * per_s(k->s2_cpu, k->s2_wall),
		100 * per_s(e->s2_cpu, e->s2_wall), true);
	row_num("steady, no changes: full scans/s", "%.3f", per_s((double)k->s2_scans, k->s2_wall),
		per_s((double)e->s2_scans, e->s2_wall), true);
	double kpp = k->s2_scans > 0 ? 1000 * k->s2_cpu / (double)k->s2_scans : -1;
	double epp = e->s2_scans > 0 ? 1000 * e->s2_cpu / (double)e->s2_scans : -1;
	fails += !row_target("steady, no changes: CPU per full scan (ms)", "%.3f", kpp, epp, true, 0.10,
			     "same pass rate");
	row_num("writer store p50 before merging (us)", "%.3f", us(k->base_p50), us(e->base_p50), true);
	row_num("writer store p99 before merging (us)", "%.3f", us(k->base_p99), us(e->base_p99), true);
	row_num("writer store p50 while converging (us)", "%.3f", us(k->p50), us(e->p50), true);
	fails += !row_target("writer store p99 while converging (us)", "%.3f", us(k->p99), us(e->p99), true,
			     2.0, NULL);
	row_num("writer store max while converging (us)", "%.1f", us(k->pmax), us(e->pmax), true);
	row_num("  of which dup-page rewrites: p50 (us)", "%.2f", us(k->dup_p50), us(e->dup_p50), true);
	row_num("  of which dup-page rewrites: p99 (us)", "%.2f", us(k->dup_p99), us(e->dup_p99), true);
	row_num("  stores timed", "%.0f", (double)k->nwrites, (double)e->nwrites, false);
	row_num("  dup rewrites timed", "%.0f", (double)k->ndup, (double)e->ndup, false);
	row_num("writer preempted while converging (times)", "%.0f", (double)k->writer_preempted,
		(double)e->writer_preempted, false);
	row_num("writer store p99, steady, writer on (us)", "%.3f", us(k->steady_p99), us(e->steady_p99), true);
	row_num("  dup-page rewrites: p50 (us)", "%.2f", us(k->steady_dup_p50), us(e->steady_dup_p50), true);
	row_num("  dup-page rewrites: p99 (us)", "%.2f", us(k->steady_dup_p99), us(e->steady_dup_p99), true);
	row_num("  dup rewrites timed", "%.0f", (double)k->steady_ndup, (double)e->steady_ndup, false);
	row_num("VMAs before merging", "%.0f", k->vmas_before, e->vmas_before, true);
	row_num("VMAs at end", "%.0f", k->vmas_end, e->vmas_end, true);
	row_num("pages_shared", "%.0f", (double)k->pages_shared, (double)e->pages_shared, false);
	row_num("pages_sharing", "%.0f", (double)k->pages_sharing, (double)e->pages_sharing, false);
	row_num("ksm_zero_pages", "%.0f", (double)k->ksm_zero_pages, (double)e->ksm_zero_pages, false);
	row_num("pages_unshared", "%.0f", (double)k->pages_unshared, (double)e->pages_unshared, false);
	row_num("pages_volatile", "%.0f", (double)k->pages_volatile, (double)e->pages_volatile, false);
	row_num("full_scans (whole phase)", "%.0f", (double)k->full_scans, (double)e->full_scans, false);
	row_num("cow_ksm (since run=1)", "%.0f", (double)(k->cow_ksm - k->cow_ksm_start),
		(double)(e->cow_ksm - e->cow_ksm_start), false);
	row_num("general_profit (MiB)", "%.1f", (double)k->general_profit / MIB,
		(double)e->general_profit / MIB, false);
	row_num("ksm_merging_pages (this process)", "%.0f", (double)k->ksm_merging_pages,
		(double)e->ksm_merging_pages, false);
	snprintf(t, sizeof(t), "%lld", (long long)e->skipped_map_count);
	row("pages_skipped_max_map_count", "-", t, "", "");
	snprintf(summary, len, "%s: %d of 5 target rows FAIL", cfg->name, fails);
	return fails;
}

static void print_header(int argc, char **argv, const struct opts *o)
{
	struct utsname u;
	uname(&u);
	time_t now = time(NULL);
	char when[64];
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
	printf("engine_vs_ksm, samepage %s, %s\ncommand:", sp_version(), when);
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	char model[128] = "?";
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256];
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "model name", 10) == 0) {
			snprintf(model, sizeof(model), "%s", strchr(line, ':') + 2);
			model[strcspn(model, "\n")] = 0;
			break;
		}
	if (f)
		fclose(f);
	printf("\nmachine: Linux %s %s, %s, %ld CPUs, MemTotal %.1f GiB, load %.2f\n", u.release,
	       u.machine, model, sysconf(_SC_NPROCESSORS_ONLN),
	       (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1024 * MIB),
	       probe_loadavg());
	const struct wl_params *w = &o->base.wl;
	printf("workload: %.0f MiB in %u regions, dup %.0f%% (of %u contents), zero %.0f%%, unique %.0f%%, "
	       "volatile %.0f%%, cluster %u\n"
	       "writer: %.0f stores/s into volatile pages, %.0f same-value stores/s into dup pages\n"
	       "both mergers: use_zero_pages=%d max_page_sharing=%u smart_scan=%d advisor_mode=none\n",
	       (double)w->pages * WL_PAGE / MIB, w->regions, 100 * w->share[WL_DUP], w->distinct,
	       100 * w->share[WL_ZERO], 100 * w->share[WL_UNIQUE], 100 * w->share[WL_VOLATILE],
	       w->cluster, o->base.write_rate, o->base.dup_write_rate, o->base.use_zero_pages,
	       o->base.max_page_sharing, o->base.smart_scan);
}

/* The lock every program that changes kernel KSM takes, held to the end. */
static int take_lock(void)
{
	int fd = open(LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	int r = fd < 0 ? -1 : flock(fd, LOCK_EX | LOCK_NB);
	if (r && fd >= 0 && errno == EWOULDBLOCK) {
		fprintf(stderr, "engine_vs_ksm: waiting for %s\n", LOCK_PATH);
		while ((r = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
			;
	}
	if (r) {
		perror(LOCK_PATH);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.base = {
			.wl = { .pages = (256u << 20) / WL_PAGE,
				.share = { [WL_DUP] = 0.60, [WL_ZERO] = 0.10, [WL_VOLATILE] = 0.05 },
				.distinct = 64, .regions = 8, .cluster = 1, .seed = 1 },
			.write_rate = 10000, .dup_write_rate = 5, .max_page_sharing = 256,
			.smart_scan = true, .timeout = 90, .steady_seconds = 10, .baseline_seconds = 2,
		},
		.cfg = { { "throttled (kernel defaults)", 100, 20 }, { "unthrottled", 25000, 0 } },
		.run_cfg = { true, true },
	};
	if (parse_opts(argc, argv, &o))
		return 2;
	if (geteuid() != 0) {
		fprintf(stderr, "engine_vs_ksm: needs root: it drives the kernel's KSM\n");
		return 2;
	}
	sp_ksm *k;
	if (sp_ksm_open(NULL, &k) || !sp_ksm_available(k)) {
		fprintf(stderr, "engine_vs_ksm: this kernel has no KSM\n");
		return 4;
	}
	int lock = take_lock();
	if (lock < 0)
		return 1;
	struct saved_knobs saved;
	if (knobs_save(k, &saved)) {
		fprintf(stderr, "engine_vs_ksm: cannot read the KSM knobs\n");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_signal };  /* no SA_RESTART: waits return EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	print_header(argc, argv, &o);
	warn_other_ksm_users(k);
	static struct phase_result res[2][2];
	bool have[2] = { false, false };
	int status = 0;
	for (int ci = 0; ci < 2 && !interrupted; ci++) {
		if (!o.run_cfg[ci])
			continue;
		struct phase_cfg c = o.base;
		c.pages_to_scan = o.cfg[ci].pages_to_scan;
		c.sleep_ms = o.cfg[ci].sleep_ms;
		bool ok = true;
		for (int eng = 0; eng < 2 && ok && !interrupted; eng++) {
			c.engine = eng;
			/* A phase disturbed by another program is run again, twice at most. */
			for (int attempt = 0; attempt < 3 && ok && !interrupted; attempt++) {
				fprintf(stderr, "engine_vs_ksm: %s, %s...\n", o.cfg[ci].name,
					eng ? "engine" : "kernel KSM");
				ok = kernel_prepare(k, &c, !eng) == 0 && run_child(&c, &res[ci][eng]);
				if (!ok || !res[ci][eng].disturbed)
					break;
				fprintf(stderr, "engine_vs_ksm: warning: %s\n", res[ci][eng].disturbance);
			}
		}
		sp_diag d;
		sp_ksm_set_run(k, 2, &d);
		have[ci] = ok && !interrupted;
		if (!have[ci])
			status = 1;
	}
	int restore = knobs_restore(k, &saved);
	flock(lock, LOCK_UN);
	close(lock);
	if (interrupted) {
		fprintf(stderr, "engine_vs_ksm: interrupted; the KSM knobs are %s\n",
			restore ? "NOT all restored" : "restored");
		return 128 + interrupted;
	}
	char summary[2][96];
	int fails = 0;
	for (int ci = 0; ci < 2; ci++)
		if (have[ci])
			fails += report(&o.cfg[ci], &res[ci][0], &res[ci][1], summary[ci], sizeof(summary[ci]));
	printf("\n");
	for (int ci = 0; ci < 2; ci++)
		if (have[ci])
			printf("%s\n", summary[ci]);
	printf("load at end %.2f; KSM knobs %s\n", probe_loadavg(), restore ? "NOT all restored" : "restored");
	sp_ksm_close(k);
	if (status || restore)
		return 1;
	return fails ? 3 : 0;
}
