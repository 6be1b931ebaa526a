/* SPDX-License-Identifier: MIT */
/*
 * procs_vs_ksm: N processes, each with the same kind of memory image (a
 * base image shared across processes, zero pages, unique pages, volatile
 * pages a writer keeps changing), under the kernel's KSM and under
 * samepaged, one after the other, at the same pages_to_scan and
 * sleep_millisecs, for N = 2, 4, 8, 16; side by side per N, and how CPU
 * and latency grow with N. See docs/cross-process.md.
 *
 * Kernel KSM is one machine-wide resource: the whole run holds
 * /run/merge-bench.lock, saves every knob first and puts every one back
 * at the end, also after SIGINT/SIGTERM/SIGHUP; run=2 before each phase.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <samepage.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "ksm_knobs.h"
#include "probe.h"
#include "procs_vs_ksm.h"
#include "table.h"

#define PROG "procs_vs_ksm"
#define MIB (1024.0 * 1024.0)
#define MAX_NS 16

volatile sig_atomic_t pv_interrupted;

static void on_signal(int sig)
{
	pv_interrupted = sig;
}

struct pace {
	const char *name;
	long pages_to_scan, sleep_ms;
};

struct opts {
	struct pv_cfg base;          /* everything but N, the merger and the pace */
	struct pace pace[2];
	bool run_pace[2];
	unsigned ns[MAX_NS], nn;
	bool floor;                  /* the kernel against the mapping floor */
	bool samepaged_only;         /* profiling, A/B of builds: no kernel phase, no verdicts */
	unsigned rounds;             /* --floor: kernel, floor, kernel, floor... */
};

/* ------------------------------------------------------------ options */

static void usage(FILE *f)
{
	fputs("usage: procs_vs_ksm [options]   (as root: it drives the kernel's KSM)\n"
	      "processes:\n"
	      "  --procs LIST            numbers of processes, comma-separated (2,4,8,16)\n"
	      "  --size-per-proc BYTES   image of each process, K/M/G suffixes (32M)\n"
	      "  --shared F --zero F --unique F --volatile F\n"
	      "                          shares of pages, 0.6 or 60% (0.60 0.10 rest 0.05);\n"
	      "                          shared pages hold the base image common to all processes\n"
	      "  --distinct N            contents of the base image (0: one per shared page of a\n"
	      "                          process, so each content is once in every process)\n"
	      "  --same-offsets          every process the same layout (default: each its own)\n"
	      "  --regions N             mappings per process (4)\n"
	      "  --cluster N             pages of one class in a row (1: each page drawn)\n"
	      "  --write-rate N          stores/s into volatile pages, per process (1000)\n"
	      "  --dup-write-rate N      same-value stores/s into shared pages, per process (1)\n"
	      "  --seed N                (1)\n"
	      "mergers (the same values for both):\n"
	      "  --pages-to-scan N --sleep-ms N            throttled pace (100, 20)\n"
	      "  --fast-pages-to-scan N --fast-sleep-ms N  unthrottled pace (25000, 0)\n"
	      "  --configs LIST          throttled,unthrottled (both)\n"
	      "  --use-zero-pages 0|1    (0)   --max-page-sharing N (256)   --smart-scan 0|1 (1)\n"
	      "  --samepaged PATH        the daemon (../bin/samepaged next to this program)\n"
	      "measurement:\n"
	      "  --timeout S             most seconds to wait for 99 % of the savings (150)\n"
	      "  --steady-seconds S      least length of the steady window (10)\n"
	      "  --settle-scans N        full scans after the writers pause, before it (30)\n"
	      "  --settle-seconds S      and at least this long (0)\n"
	      "  --baseline-seconds S    writers alone before merging starts (2)\n"
	      "  --verbose               progress on stderr\n"
	      "  --floor                 the kernel against the mapping floor instead of\n"
	      "                          samepaged: each worker only maps its duplicates from\n"
	      "                          one store for all and drops its zero pages, planned\n"
	      "                          beforehand (docs/cross-process.md)\n"
	      "  --rounds N              --floor: kernel and floor phases, alternating (3)\n"
	      "  --samepaged-only        samepaged's phases alone, its own figures, no verdicts\n"
	      "                          (to profile it, or to compare two builds)\n"
	      "exit status: 0 every target passed, 3 some target failed (or a page was\n"
	      "corrupted), 1 the run could not be completed, 2 bad usage, 4 no KSM\n",
	      f);
}

static bool parse_procs(const char *s, struct opts *o)
{
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", s);
	o->nn = 0;
	for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		double v;
		if (o->nn == MAX_NS || !arg_num(t, 1, PV_MAX_PROCS, &v) || v != floor(v))
			return false;
		o->ns[o->nn++] = (unsigned)v;
	}
	return o->nn > 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_PROCS = 256, O_SIZE, O_SHARED, O_ZERO, O_UNIQUE, O_VOLATILE, O_DISTINCT, O_SAME, O_REGIONS,
	       O_CLUSTER, O_RATE, O_DUPRATE, O_SEED, O_PTS, O_SLEEP, O_FPTS, O_FSLEEP, O_CONFIGS, O_UZP,
	       O_MPS, O_SMART, O_SAMEPAGED, O_TIMEOUT, O_STEADY, O_SETTLE, O_SETTLE_S, O_BASELINE, O_VERBOSE,
	       O_FLOOR, O_ROUNDS, O_SD_ONLY, O_HELP };
	static const struct option lo[] = {
		{ "procs", 1, 0, O_PROCS }, { "size-per-proc", 1, 0, O_SIZE }, { "shared", 1, 0, O_SHARED },
		{ "zero", 1, 0, O_ZERO }, { "unique", 1, 0, O_UNIQUE }, { "volatile", 1, 0, O_VOLATILE },
		{ "distinct", 1, 0, O_DISTINCT }, { "same-offsets", 0, 0, O_SAME },
		{ "regions", 1, 0, O_REGIONS }, { "cluster", 1, 0, O_CLUSTER },
		{ "write-rate", 1, 0, O_RATE }, { "dup-write-rate", 1, 0, O_DUPRATE },
		{ "seed", 1, 0, O_SEED }, { "pages-to-scan", 1, 0, O_PTS }, { "sleep-ms", 1, 0, O_SLEEP },
		{ "fast-pages-to-scan", 1, 0, O_FPTS }, { "fast-sleep-ms", 1, 0, O_FSLEEP },
		{ "configs", 1, 0, O_CONFIGS }, { "use-zero-pages", 1, 0, O_UZP },
		{ "max-page-sharing", 1, 0, O_MPS }, { "smart-scan", 1, 0, O_SMART },
		{ "samepaged", 1, 0, O_SAMEPAGED }, { "timeout", 1, 0, O_TIMEOUT },
		{ "steady-seconds", 1, 0, O_STEADY }, { "settle-scans", 1, 0, O_SETTLE },
		{ "settle-seconds", 1, 0, O_SETTLE_S }, { "baseline-seconds", 1, 0, O_BASELINE },
		{ "verbose", 0, 0, O_VERBOSE }, { "floor", 0, 0, O_FLOOR }, { "rounds", 1, 0, O_ROUNDS },
		{ "samepaged-only", 0, 0, O_SD_ONLY }, { "help", 0, 0, O_HELP }, { 0, 0, 0, 0 },
	};
	struct pv_cfg *c = &o->base;
	struct wl_params *w = &c->wl;
	bool unique_given = false, rounds_given = false;
	double v;
	int ch, idx = 0;
	while ((ch = getopt_long(argc, argv, "", lo, &idx)) != -1) {
		bool ok = true;
		switch (ch) {
		case O_PROCS: ok = parse_procs(optarg, o); break;
		case O_SIZE: ok = arg_size(optarg, &w->pages); break;
		case O_SHARED: ok = arg_share(optarg, &w->share[WL_DUP]); break;
		case O_ZERO: ok = arg_share(optarg, &w->share[WL_ZERO]); break;
		case O_UNIQUE: ok = arg_share(optarg, &w->share[WL_UNIQUE]); unique_given = true; break;
		case O_VOLATILE: ok = arg_share(optarg, &w->share[WL_VOLATILE]); break;
		case O_DISTINCT: ok = arg_num(optarg, 0, 1 << 24, &v); w->distinct = (unsigned)v; break;
		case O_SAME: c->same_offsets = true; break;
		case O_REGIONS: ok = arg_num(optarg, 1, 4096, &v); w->regions = (unsigned)v; break;
		case O_CLUSTER: ok = arg_num(optarg, 1, 1 << 20, &v); w->cluster = (unsigned)v; break;
		case O_RATE: ok = arg_num(optarg, 0, 1e6, &c->write_rate); break;
		case O_DUPRATE: ok = arg_num(optarg, 0, 1e6, &c->dup_write_rate); break;
		case O_SEED: ok = arg_num(optarg, 1, 1e15, &v); w->seed = (uint64_t)v; break;
		case O_PTS: ok = arg_num(optarg, 1, 4294967295.0, &v); o->pace[0].pages_to_scan = (long)v; break;
		case O_SLEEP: ok = arg_num(optarg, 0, 4294967295.0, &v); o->pace[0].sleep_ms = (long)v; break;
		case O_FPTS: ok = arg_num(optarg, 1, 4294967295.0, &v); o->pace[1].pages_to_scan = (long)v; break;
		case O_FSLEEP: ok = arg_num(optarg, 0, 4294967295.0, &v); o->pace[1].sleep_ms = (long)v; break;
		case O_CONFIGS: ok = arg_paces(optarg, o->run_pace); break;
		case O_UZP: ok = arg_num(optarg, 0, 1, &v); c->pace.use_zero_pages = v != 0; break;
		case O_MPS: ok = arg_num(optarg, 2, 2147483647.0, &v); c->pace.max_page_sharing = (unsigned)v; break;
		case O_SMART: ok = arg_num(optarg, 0, 1, &v); c->pace.smart_scan = v != 0; break;
		case O_SAMEPAGED: c->samepaged = optarg; break;
		case O_TIMEOUT: ok = arg_num(optarg, 1, 86400, &c->timeout); break;
		case O_STEADY: ok = arg_num(optarg, 0.5, 3600, &c->steady_seconds); break;
		case O_SETTLE: {
			double n;
			ok = arg_num(optarg, 0, 100, &n) && n == (unsigned)n;
			c->settle_scans = (unsigned)n;
			break;
		}
		case O_SETTLE_S: ok = arg_num(optarg, 0, 3600, &c->settle_seconds); break;
		case O_BASELINE: ok = arg_num(optarg, 0, 3600, &c->baseline_seconds); break;
		case O_VERBOSE: c->verbose = true; break;
		case O_FLOOR: o->floor = true; break;
		case O_SD_ONLY: o->samepaged_only = true; break;
		case O_ROUNDS:
			ok = arg_num(optarg, 1, 100, &v) && v == floor(v);
			o->rounds = (unsigned)v;
			rounds_given = true;
			break;
		case O_HELP: usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
		if (!ok) {
			fprintf(stderr, PROG ": bad value '%s' for --%s\n", optarg, lo[idx].name);
			return -1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	if (!arg_shares_finish(w->share, unique_given, PROG))
		return -1;
	if (rounds_given && !o->floor) {
		fprintf(stderr, PROG ": --rounds goes with --floor\n");
		return -1;
	}
	if (o->floor && o->samepaged_only) {
		fprintf(stderr, PROG ": --floor and --samepaged-only exclude each other\n");
		return -1;
	}
	if (w->distinct == 0) {  /* each content once per process */
		double d = llround(w->share[WL_DUP] * (double)w->pages);
		w->distinct = d >= 1 ? (unsigned)d : 1;
	}
	return 0;
}

/* ../bin/samepaged next to this program (build/bench -> build/bin). */
static const char *default_samepaged(void)
{
	static char path[PATH_MAX];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return "samepaged";
	self[n] = 0;
	snprintf(path, sizeof(path), "%s/../bin/samepaged", dirname(self));
	return path;
}

/* ------------------------------------------------------------ report */

/* One N at one pace: kernel and samepaged side by side; failed targets. */
static int report_n(const struct pace *pc, const struct pv_result *k, const struct pv_result *s)
{
	char kb[48], sb[48];
	printf("\n== %s: pages_to_scan=%ld sleep_millisecs=%ld, N=%u processes ==\n", pc->name,
	       pc->pages_to_scan, pc->sleep_ms, k->nprocs);
	if (k->disturbed)
		printf("  WARNING: the kernel phase was disturbed, its numbers are not to be trusted: %s\n",
		       k->disturbance);
	tbl_row("", "kernel KSM", "samepaged", "sd/kern", "target");
	tbl_load(k->load_start, k->load_end, s->load_start, s->load_end);
	tbl_num("pages, all processes", "%.0f", (double)k->pages, (double)s->pages, false);
	tbl_num("possible savings (pages)", "%.0f", (double)k->possible, (double)s->possible, false);
	tbl_num("building and registering the images (s)", "%.2f", k->build_seconds, s->build_seconds, true);
	struct tbl_conv kc = { k->t90, k->t99, k->max_read_wait, k->cpu90, k->cpu99, k->conv_cpu };
	struct tbl_conv sc = { s->t90, s->t99, s->max_read_wait, s->cpu90, s->cpu99, s->conv_cpu };
	int fails = !tbl_converge(&kc, &sc);
	tbl_num("merger CPU while converging (s)", "%.3f", k->conv_cpu, s->conv_cpu, true);
	tbl_num("  of which samepaged itself (s)", "%.3f", -1, s->conv_daemon_cpu, false);
	tbl_num("  the same, clients as reported to samepaged (s)", "%.3f", -1, s->conv_reported_cpu, false);
	tbl_num("  daemon CPU per counter reading (us)", "%.1f", -1, s->read_cost_us, false);
	tbl_num("writers' CPU while converging (% of a CPU)", "%.2f", 100 * tbl_per_s(k->writer_cpu, k->conv_wall),
		100 * tbl_per_s(s->writer_cpu, s->conv_wall), true);
	struct tbl_saved ks = { k->saved_end, k->possible, k->pss_before - k->pss_after,
				k->avail_after - k->avail_before };
	struct tbl_saved ss = { s->saved_end, s->possible, s->pss_before - s->pss_after,
				s->avail_after - s->avail_before };
	fails += tbl_savings(&ks, &ss);
	tbl_num("  samepaged's own PSS rise (MiB)", "%.1f", -1,
		(double)(s->daemon_pss_after - s->daemon_pss_before) / MIB, false);
	fails += !tbl_steady(k->s_cpu, k->s_wall, k->s_scans, s->s_cpu, s->s_wall, s->s_scans);
	tbl_num("  of which samepaged itself (ms)", "%.3f", -1,
		s->s_scans > 0 ? 1000 * s->s_daemon_cpu / (double)s->s_scans : -1, false);
	tbl_num("store p50 before merging (us)", "%.3f", tbl_us(k->base_p50), tbl_us(s->base_p50), true);
	tbl_num("store p99 before merging (us)", "%.3f", tbl_us(k->base_p99), tbl_us(s->base_p99), true);
	tbl_num("store p50 while converging (us)", "%.3f", tbl_us(k->p50), tbl_us(s->p50), true);
	tbl_num("store p99 while converging (us)", "%.3f", tbl_us(k->p99), tbl_us(s->p99), true);
	tbl_num("store max while converging (us)", "%.1f", tbl_us(k->pmax), tbl_us(s->pmax), true);
	tbl_num("  shared-page rewrites: p50 (us)", "%.2f", tbl_us(k->dup_p50), tbl_us(s->dup_p50), true);
	tbl_num("  shared-page rewrites: p99 (us)", "%.2f", tbl_us(k->dup_p99), tbl_us(s->dup_p99), true);
	tbl_num("  stores timed", "%.0f", (double)k->nwrites, (double)s->nwrites, false);
	tbl_num("writers preempted while converging (times)", "%.0f", (double)k->writer_preempted,
		(double)s->writer_preempted, false);
	tbl_num("VMAs of a process, most, before merging", "%.0f", k->vmas_before_max, s->vmas_before_max, true);
	tbl_num("VMAs of a process, most, at end", "%.0f", k->vmas_end_max, s->vmas_end_max, true);
	tbl_num("pages_shared", "%.0f", (double)k->pages_shared, (double)s->pages_shared, false);
	tbl_num("pages_sharing", "%.0f", (double)k->pages_sharing, (double)s->pages_sharing, false);
	tbl_num("ksm_zero_pages", "%.0f", (double)k->ksm_zero_pages, (double)s->ksm_zero_pages, false);
	tbl_num("pages_unshared", "%.0f", (double)k->pages_unshared, (double)s->pages_unshared, false);
	tbl_num("pages_volatile", "%.0f", (double)k->pages_volatile, (double)s->pages_volatile, false);
	tbl_num("full_scans (whole phase)", "%.0f", (double)k->full_scans, (double)s->full_scans, false);
	tbl_num("cow_ksm (since run=1)", "%.0f", (double)(k->cow_ksm - k->cow_ksm_start),
		(double)(s->cow_ksm - s->cow_ksm_start), false);
	tbl_num("general_profit (MiB)", "%.1f", (double)k->general_profit / MIB, (double)s->general_profit / MIB,
		false);
	tbl_num("ksm_merging_pages, processes summed", "%.0f", (double)k->merging_pages, (double)s->merging_pages,
		false);
	tbl_num("  the same from the workers' engines", "%.0f", -1, (double)s->engine_merging_pages, false);
	tbl_num("pages_skipped_max_map_count", "%.0f", -1, (double)s->skipped_map_count, false);
	tbl_num("ksmd CPU, whole phase (s)", "%.3f", k->ksmd_cpu, s->ksmd_cpu, false);
	snprintf(kb, sizeof(kb), "%llu", (unsigned long long)k->verified_pages);
	snprintf(sb, sizeof(sb), "%llu", (unsigned long long)s->verified_pages);
	tbl_row("pages verified (twice: merged, then released)", kb, sb, "", "");
	snprintf(kb, sizeof(kb), "%llu / %llu", (unsigned long long)k->bad_pages,
		 (unsigned long long)k->bad_after_free);
	snprintf(sb, sizeof(sb), "%llu / %llu", (unsigned long long)s->bad_pages,
		 (unsigned long long)s->bad_after_free);
	bool clean = k->bad_pages + k->bad_after_free + s->bad_pages + s->bad_after_free == 0;
	tbl_row("  pages not as written: merged / released", kb, sb, "", clean ? "PASS = 0" : "FAIL = 0: CORRUPTION");
	fails += !clean;
	if (s->daemon_exit || s->daemon_log_errors)
		printf("  samepaged: exit status %d after SIGTERM; %d complaints in its log, first: %s\n",
		       s->daemon_exit, s->daemon_log_errors, s->daemon_log_first);
	return fails;
}

static void ratio(char *b, size_t n, double k, double s)
{
	if (k > 0 && s >= 0)
		snprintf(b, n, "%.2fx", s / k);
	else
		snprintf(b, n, "-");
}

/* How CPU, latency and savings grow with N at one pace; the ratios are
 * samepaged's over the kernel's, the ones judged per N above. */
static void report_growth(const struct pace *pc, const struct opts *o, const struct pv_result res[][2],
			  const bool *have)
{
	printf("\n== growth with N, %s: pages_to_scan=%ld sleep_millisecs=%ld ==\n", pc->name, pc->pages_to_scan,
	       pc->sleep_ms);
	printf("  %4s %7s | %-24s | %-24s | %-13s | %-22s | %-11s | %-13s\n", "", "", "merger CPU to 99% (s)",
	       "steady CPU/pass (ms)", "steady %CPU", "p99 store (us)", "saved ratio", "to 99% (s)");
	printf("  %4s %7s | %7s %7s %8s | %7s %7s %8s | %6s %6s | %6s %6s %8s | %5s %5s | %6s %6s\n", "N", "pages",
	       "kernel", "sd", "sd/kern", "kernel", "sd", "sd/kern", "kernel", "sd", "kernel", "sd", "sd/kern", "count",
	       "PSS", "kernel", "sd");
	for (unsigned i = 0; i < o->nn; i++) {
		if (!have[i])
			continue;
		const struct pv_result *k = &res[i][0], *s = &res[i][1];
		char c[10][24], r[5][16];
		/* as judged: the kernel's CPU until its timeout if it never got to 99 % */
		double kc = k->cpu99 >= 0 ? k->cpu99 : k->conv_cpu;
		double kpp = k->s_scans > 0 ? 1000 * k->s_cpu / (double)k->s_scans : -1;
		double spp = s->s_scans > 0 ? 1000 * s->s_cpu / (double)s->s_scans : -1;
		tbl_fmt(c[0], sizeof(c[0]), "%.3f", kc);
		tbl_fmt(c[1], sizeof(c[1]), "%.3f", s->cpu99);
		tbl_fmt(c[2], sizeof(c[2]), "%.2f", kpp);
		tbl_fmt(c[3], sizeof(c[3]), "%.2f", spp);
		tbl_fmt(c[4], sizeof(c[4]), "%.2f", 100 * tbl_per_s(k->s_cpu, k->s_wall));
		tbl_fmt(c[5], sizeof(c[5]), "%.2f", 100 * tbl_per_s(s->s_cpu, s->s_wall));
		tbl_fmt(c[6], sizeof(c[6]), "%.2f", tbl_us(k->p99));
		tbl_fmt(c[7], sizeof(c[7]), "%.2f", tbl_us(s->p99));
		tbl_fmt(c[8], sizeof(c[8]), "%.2f", k->t99);
		tbl_fmt(c[9], sizeof(c[9]), "%.2f", s->t99);
		ratio(r[0], sizeof(r[0]), kc, s->cpu99);
		ratio(r[1], sizeof(r[1]), kpp, spp);
		ratio(r[2], sizeof(r[2]), k->p99, s->p99);
		ratio(r[3], sizeof(r[3]), (double)k->saved_end, (double)s->saved_end);
		ratio(r[4], sizeof(r[4]), (double)(k->pss_before - k->pss_after), (double)(s->pss_before - s->pss_after));
		printf("  %4u %7lld | %7s %7s %8s | %7s %7s %8s | %6s %6s | %6s %6s %8s | %5s %5s | %6s %6s\n",
		       k->nprocs, (long long)k->pages, c[0], c[1], r[0], c[2], c[3], r[1], c[4], c[5], c[6], c[7], r[2],
		       r[3], r[4], c[8], c[9]);
	}
}

/* --samepaged-only: one line per N of samepaged's own figures. */
static void report_only(const struct pace *pc, const struct opts *o, const struct pv_result res[][2],
			const bool *have)
{
	printf("\n== %s: pages_to_scan=%ld sleep_millisecs=%ld, samepaged only ==\n", pc->name, pc->pages_to_scan,
	       pc->sleep_ms);
	printf("  %4s %7s %8s %8s %8s %8s %9s %9s %8s %8s %7s\n", "N", "pages", "to 99%", "CPU 99%", "of it sd",
	       "p99", "steady", "saved", "saved", "PSS drop", "pages");
	printf("  %4s %7s %8s %8s %8s %8s %9s %9s %8s %8s %7s\n", "", "", "(s)", "(s)", "(s)", "(us)",
	       "(ms/pass)", "(pages)", "/possib.", "(MiB)", "wrong");
	for (unsigned i = 0; i < o->nn; i++) {
		if (!have[i])
			continue;
		const struct pv_result *s = &res[i][1];
		printf("  %4u %7lld %8.2f %8.3f %8.3f %8.2f %9.3f %9lld %8.3f %8.1f %7llu\n", s->nprocs,
		       (long long)s->pages, s->t99, s->cpu99, s->conv_daemon_cpu, tbl_us(s->p99),
		       s->s_scans > 0 ? 1000 * s->s_cpu / (double)s->s_scans : -1, (long long)s->saved_end,
		       s->possible > 0 ? (double)s->saved_end / (double)s->possible : -1,
		       (double)(s->pss_before - s->pss_after) / MIB,
		       (unsigned long long)(s->bad_pages + s->bad_after_free));
	}
}

static void print_footer(double t0, int restore)
{
	printf("\n%.0f s in all; load at end %.2f; KSM knobs %s\n", probe_now() - t0, probe_loadavg(),
	       restore ? "NOT all restored" : "restored");
}

static void print_header(int argc, char **argv, const struct opts *o)
{
	time_t now = time(NULL);
	char when[64], machine[256];
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
	tbl_machine(machine, sizeof(machine));
	printf(PROG ", samepage %s, %s\ncommand:", sp_version(), when);
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	const struct pv_cfg *c = &o->base;
	const struct wl_params *w = &c->wl;
	printf("\nmachine: %s\nprocesses:", machine);
	for (unsigned i = 0; i < o->nn; i++)
		printf("%s%u", i ? "," : " ", o->ns[i]);
	printf(", each %.0f MiB in %u regions: shared %.0f%% (base image of %u contents, %s offsets), "
	       "zero %.0f%%, unique %.0f%%, volatile %.0f%%, cluster %u\n"
	       "writers: %.0f stores/s into volatile pages, %.0f same-value stores/s into shared pages, "
	       "per process\n"
	       "both mergers: use_zero_pages=%d max_page_sharing=%u smart_scan=%d advisor_mode=none; "
	       "samepaged: %s\n"
	       "steady window: at least %.0f s, after %u full scans and %.0f s to settle\n",
	       (double)w->pages * WL_PAGE / MIB, w->regions, 100 * w->share[WL_DUP], w->distinct,
	       c->same_offsets ? "the same" : "different", 100 * w->share[WL_ZERO], 100 * w->share[WL_UNIQUE],
	       100 * w->share[WL_VOLATILE], w->cluster, c->write_rate, c->dup_write_rate, c->pace.use_zero_pages,
	       c->pace.max_page_sharing, c->pace.smart_scan, c->samepaged, c->steady_seconds, c->settle_scans,
	       c->settle_seconds);
}

/* ------------------------------------------------------------ main */

/* The kernel phase again if another program disturbed it, twice at most. */
static bool run_phase(struct pv_cfg *c, sp_ksm *k, struct pv_result *r)
{
	bool ok = false;
	for (int attempt = 0; attempt < 3 && !pv_interrupted; attempt++) {
		fprintf(stderr, PROG ": N=%u, %s, pages_to_scan=%ld sleep_millisecs=%ld...\n", c->nprocs,
			pv_merger_name(c), c->pace.pages_to_scan, c->pace.sleep_ms);
		ok = pv_phase_run(c, k, r);
		if (!ok) {
			fprintf(stderr, PROG ": the phase failed: %s\n", r->status ? r->error : "interrupted");
			return false;
		}
		if (!r->disturbed)
			break;
		fprintf(stderr, PROG ": warning: %s\n", r->disturbance);
	}
	return ok;
}

/* --floor: for each pace and N, the kernel's KSM against the mapping floor
 * in alternating rounds, so that the machine's noise falls on both alike;
 * the kernel's phases stop once converged. 0; 1 if a phase could not be
 * measured; 3 if a page read wrong. */
static int floor_rounds(const struct opts *o, sp_ksm *k)
{
	int status = 0;
	for (int pi = 0; pi < 2 && !pv_interrupted; pi++) {
		if (!o->run_pace[pi])
			continue;
		const struct pace *pc = &o->pace[pi];
		double med_cpu[MAX_NS], med_p99[MAX_NS];
		unsigned med_n[MAX_NS] = { 0 };
		printf("\n== %s: pages_to_scan=%ld sleep_millisecs=%ld, kernel KSM against the mapping floor ==\n",
		       pc->name, pc->pages_to_scan, pc->sleep_ms);
		printf("  %4s %5s %11s %11s %8s %11s %11s %8s %8s %8s %7s\n", "", "", "CPU to 99%", "", "",
		       "writer p99", "", "", "floor's", "VMAs at", "pages");
		printf("  %4s %5s %11s %11s %8s %11s %11s %8s %8s %8s %7s\n", "N", "round", "kernel (s)",
		       "floor (s)", "fl/kern", "kernel (us)", "floor (us)", "fl/kern", "calls", "end (fl)", "wrong");
		for (unsigned ni = 0; ni < o->nn && !pv_interrupted; ni++) {
			double cpu_ratio[100], p99_ratio[100];
			unsigned n = 0;
			struct pv_cfg c = o->base;
			c.nprocs = o->ns[ni];
			c.pace.pages_to_scan = pc->pages_to_scan;
			c.pace.sleep_ms = pc->sleep_ms;
			c.daemon = false;
			c.converge_only = true;
			for (unsigned round = 1; round <= o->rounds && !pv_interrupted; round++) {
				static struct pv_result kr, fr;
				c.floor = false;
				bool ok = run_phase(&c, k, &kr);
				c.floor = true;
				ok = ok && run_phase(&c, k, &fr);
				if (!ok) {
					status = 1;
					break;
				}
				uint64_t wrong = kr.bad_pages + kr.bad_after_free + fr.bad_pages + fr.bad_after_free;
				bool trusted = !kr.disturbed && kr.cpu99 > 0 && fr.cpu99 > 0;
				printf("  %4u %5u %11.3f %11.3f %8.2f %11.2f %11.2f %8.2f %8llu %8d %7llu%s\n", c.nprocs,
				       round, kr.cpu99, fr.cpu99, fr.cpu99 / kr.cpu99, tbl_us(kr.p99), tbl_us(fr.p99),
				       fr.p99 / kr.p99, (unsigned long long)fr.floor_calls, fr.vmas_end_max,
				       (unsigned long long)wrong,
				       kr.disturbed ? "  (kernel phase disturbed: not counted)" :
				       kr.cpu99 > 0 ? "" : "  (the kernel did not converge: not counted)");
				fflush(stdout);
				if (wrong)
					status = 3;
				if (trusted) {
					cpu_ratio[n] = fr.cpu99 / kr.cpu99;
					p99_ratio[n++] = fr.p99 / kr.p99;
				}
			}
			if (n) {
				med_cpu[ni] = tbl_median(cpu_ratio, n);
				med_p99[ni] = tbl_median(p99_ratio, n);
				med_n[ni] = n;
			}
		}
		printf("  medians, floor/kernel:");
		for (unsigned ni = 0; ni < o->nn; ni++)
			if (med_n[ni])
				printf("  N=%u CPU to 99%% %.2f, writer p99 %.2f (%u rounds);", o->ns[ni], med_cpu[ni],
				       med_p99[ni], med_n[ni]);
		printf("\n");
	}
	return status;
}

int main(int argc, char **argv)
{
	static struct opts o = {
		.base = {
			.wl = { .pages = (32u << 20) / WL_PAGE,
				.share = { [WL_DUP] = 0.60, [WL_ZERO] = 0.10, [WL_VOLATILE] = 0.05 },
				.regions = 4, .cluster = 1, .seed = 1 },
			.pace = { .max_page_sharing = 256, .smart_scan = true },
			.write_rate = 1000, .dup_write_rate = 1,
			.timeout = 150, .steady_seconds = 10, .settle_scans = 30, .settle_seconds = 0, .baseline_seconds = 2,
		},
		.pace = { { "throttled (kernel defaults)", 100, 20 }, { "unthrottled", 25000, 0 } },
		.run_pace = { true, true },
		.ns = { 2, 4, 8, 16 }, .nn = 4, .rounds = 3,
	};
	if (parse_opts(argc, argv, &o))
		return 2;
	if (!o.base.samepaged)
		o.base.samepaged = default_samepaged();
	if (geteuid() != 0) {
		fprintf(stderr, PROG ": needs root: it drives the kernel's KSM\n");
		return 2;
	}
	if (access(o.base.samepaged, X_OK)) {
		fprintf(stderr, PROG ": cannot run samepaged at %s (--samepaged PATH)\n", o.base.samepaged);
		return 2;
	}
	sp_ksm *k;
	if (sp_ksm_open(NULL, &k) || !sp_ksm_available(k)) {
		fprintf(stderr, PROG ": this kernel has no KSM\n");
		return 4;
	}
	int lock = bench_lock_take(PROG);
	if (lock < 0)
		return 1;
	struct ksm_saved saved;
	if (ksm_knobs_save(k, &saved)) {
		fprintf(stderr, PROG ": cannot read the KSM knobs\n");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_signal };  /* no SA_RESTART: waits return EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);  /* a dead worker shows as an error, not a signal */

	print_header(argc, argv, &o);
	if (o.floor)
		printf("--floor: the kernel's phases stop once converged; %u rounds, alternating\n", o.rounds);
	fflush(stdout);
	ksm_warn_other_users(k, NULL, 0, PROG);
	if (o.floor) {
		double t0 = probe_now();
		int st = floor_rounds(&o, k);
		int restore = ksm_knobs_restore(k, &saved, PROG);
		bench_lock_release(lock);
		print_footer(t0, restore);
		sp_ksm_close(k);
		return pv_interrupted || restore ? 1 : st;
	}
	static struct pv_result res[2][MAX_NS][2];
	static bool have[2][MAX_NS];
	int status = 0;
	double t0 = probe_now();
	for (int pi = 0; pi < 2 && !pv_interrupted; pi++) {
		if (!o.run_pace[pi])
			continue;
		for (unsigned ni = 0; ni < o.nn && !pv_interrupted; ni++) {
			struct pv_cfg c = o.base;
			c.nprocs = o.ns[ni];
			c.pace.pages_to_scan = o.pace[pi].pages_to_scan;
			c.pace.sleep_ms = o.pace[pi].sleep_ms;
			bool ok = true;
			for (int d = o.samepaged_only; d < 2 && ok; d++) {
				c.daemon = d;
				ok = run_phase(&c, k, &res[pi][ni][d]);
			}
			have[pi][ni] = ok;
			if (!ok)
				status = 1;
		}
	}
	int restore = ksm_knobs_restore(k, &saved, PROG);
	bench_lock_release(lock);
	if (pv_interrupted) {
		fprintf(stderr, PROG ": interrupted; the KSM knobs are %s\n", restore ? "NOT all restored" : "restored");
		return 1;
	}
	int fails = 0, targets = 0;
	if (o.samepaged_only) {
		bool bad = false;
		for (int pi = 0; pi < 2; pi++) {
			if (!o.run_pace[pi])
				continue;
			for (unsigned ni = 0; ni < o.nn; ni++)
				bad |= have[pi][ni] && res[pi][ni][1].bad_pages + res[pi][ni][1].bad_after_free > 0;
			report_only(&o.pace[pi], &o, res[pi], have[pi]);
		}
		print_footer(t0, restore);
		sp_ksm_close(k);
		return status || restore ? 1 : bad ? 3 : 0;
	}
	for (int pi = 0; pi < 2; pi++)
		for (unsigned ni = 0; ni < o.nn; ni++)
			if (have[pi][ni]) {
				fails += report_n(&o.pace[pi], &res[pi][ni][0], &res[pi][ni][1]);
				targets += 5;
			}
	for (int pi = 0; pi < 2; pi++)
		if (o.run_pace[pi])
			report_growth(&o.pace[pi], &o, res[pi], have[pi]);
	printf("\n%d of %d target rows FAIL; %.0f s in all; load at end %.2f; KSM knobs %s\n", fails, targets,
	       probe_now() - t0, probe_loadavg(), restore ? "NOT all restored" : "restored");
	sp_ksm_close(k);
	if (status || restore)
		return 1;
	return fails ? 3 : 0;
}
