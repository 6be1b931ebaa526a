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
#include <getopt.h>
#include <math.h>
#include <samepage.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "ksm_knobs.h"
#include "phase.h"
#include "probe.h"
#include "table.h"

#define PROG "engine_vs_ksm"
#define MIB (1024.0 * 1024.0)

struct config {
	const char *name;
	long pages_to_scan, sleep_ms;
};

struct opts {
	struct phase_cfg base;     /* everything but the merger and the pace */
	struct config cfg[2];
	bool run_cfg[2];
	bool engine_only;          /* profiling: no kernel phase, no verdicts */
	bool floor;                /* the kernel against the mapping floor (floor.c) */
	unsigned rounds;           /* --floor: kernel, floor, kernel, floor... */
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
	      "  --settle-scans N        full scans after the writer pauses, before the\n"
	      "                          no-changes window (30)\n"
	      "  --settle-seconds S      and at least this long (0)\n"
	      "  --baseline-seconds S    writer alone before merging starts (2)\n"
	      "  --verbose               progress on stderr\n"
	      "  --engine-only           the engine's phases alone, to profile it: no kernel\n"
	      "                          phase, no ratios, no verdicts; root not needed\n"
	      "  --floor                 the kernel against the mapping floor instead of the\n"
	      "                          engine: only the mmap/MADV_DONTNEED calls any merger\n"
	      "                          through mappings needs, planned from the image\n"
	      "  --rounds N              --floor: kernel and floor phases, alternating (3)\n",
	      f);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_SIZE = 256, O_DUP, O_ZERO, O_UNIQUE, O_VOLATILE, O_DISTINCT, O_REGIONS, O_CLUSTER,
	       O_RATE, O_DUPRATE, O_SEED, O_PTS, O_SLEEP, O_FPTS, O_FSLEEP, O_CONFIGS, O_UZP, O_MPS,
	       O_SMART, O_TIMEOUT, O_STEADY, O_SETTLE, O_SETTLE_S, O_BASELINE, O_VERBOSE, O_ENGINE_ONLY,
	       O_FLOOR, O_ROUNDS, O_HELP };
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
		{ "settle-scans", 1, 0, O_SETTLE },
		{ "settle-seconds", 1, 0, O_SETTLE_S },
		{ "baseline-seconds", 1, 0, O_BASELINE }, { "verbose", 0, 0, O_VERBOSE },
		{ "engine-only", 0, 0, O_ENGINE_ONLY }, { "floor", 0, 0, O_FLOOR },
		{ "rounds", 1, 0, O_ROUNDS },
		{ "help", 0, 0, O_HELP }, { 0, 0, 0, 0 },
	};
	struct phase_cfg *c = &o->base;
	struct wl_params *w = &c->wl;
	bool unique_given = false, rounds_given = false;
	double v;
	int ch, idx = 0;
	while ((ch = getopt_long(argc, argv, "", lo, &idx)) != -1) {
		bool ok = true;
		switch (ch) {
		case O_SIZE: ok = arg_size(optarg, &w->pages); break;
		case O_DUP: ok = arg_share(optarg, &w->share[WL_DUP]); break;
		case O_ZERO: ok = arg_share(optarg, &w->share[WL_ZERO]); break;
		case O_UNIQUE: ok = arg_share(optarg, &w->share[WL_UNIQUE]); unique_given = true; break;
		case O_VOLATILE: ok = arg_share(optarg, &w->share[WL_VOLATILE]); break;
		case O_DISTINCT: ok = arg_num(optarg, 1, 65536, &v); w->distinct = (unsigned)v; break;
		case O_REGIONS: ok = arg_num(optarg, 1, 4096, &v); w->regions = (unsigned)v; break;
		case O_CLUSTER: ok = arg_num(optarg, 1, 1 << 20, &v); w->cluster = (unsigned)v; break;
		case O_RATE: ok = arg_num(optarg, 0, 1e7, &c->write_rate); break;
		case O_DUPRATE: ok = arg_num(optarg, 0, 1e7, &c->dup_write_rate); break;
		case O_SEED: ok = arg_num(optarg, 1, 1e18, &v); w->seed = (uint64_t)v; break;
		case O_PTS: ok = arg_num(optarg, 1, 4294967295.0, &v); o->cfg[0].pages_to_scan = (long)v; break;
		case O_SLEEP: ok = arg_num(optarg, 0, 4294967295.0, &v); o->cfg[0].sleep_ms = (long)v; break;
		case O_FPTS: ok = arg_num(optarg, 1, 4294967295.0, &v); o->cfg[1].pages_to_scan = (long)v; break;
		case O_FSLEEP: ok = arg_num(optarg, 0, 4294967295.0, &v); o->cfg[1].sleep_ms = (long)v; break;
		case O_CONFIGS: ok = arg_paces(optarg, o->run_cfg); break;
		case O_UZP: ok = arg_num(optarg, 0, 1, &v); c->use_zero_pages = v != 0; break;
		case O_MPS: ok = arg_num(optarg, 2, 2147483647.0, &v); c->max_page_sharing = (unsigned)v; break;
		case O_SMART: ok = arg_num(optarg, 0, 1, &v); c->smart_scan = v != 0; break;
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
		case O_ENGINE_ONLY: o->engine_only = true; break;
		case O_FLOOR: o->floor = true; break;
		case O_ROUNDS: {
			double n;
			ok = arg_num(optarg, 1, 100, &n) && n == (unsigned)n;
			o->rounds = (unsigned)n;
			rounds_given = true;
			break;
		}
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
	if (!arg_shares_finish(w->share, unique_given, PROG))
		return -1;
	if (rounds_given && !o->floor) {
		fprintf(stderr, "engine_vs_ksm: --rounds goes with --floor\n");
		return -1;
	}
	if (o->floor && o->engine_only) {
		fprintf(stderr, "engine_vs_ksm: --floor and --engine-only exclude each other\n");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ phases */

static const char *phase_name(const struct phase_cfg *c)
{
	return c->floor ? "floor" : c->engine ? "engine" : "kernel";
}

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
		if (c->floor)
			floor_run(c, &res);
		else
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
		fprintf(stderr, "engine_vs_ksm: the %s phase died (%s)\n", phase_name(c),
			WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "no result");
		return false;
	}
	if (r->status) {
		fprintf(stderr, "engine_vs_ksm: the %s phase failed: %s\n", phase_name(c), r->error);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------ report */

static int report(const struct config *cfg, const struct phase_result *k, const struct phase_result *e,
		  char *summary, size_t len)
{
	char t[64], kb[48], eb[48];
	printf("\n== %s: pages_to_scan=%ld sleep_millisecs=%ld ==\n", cfg->name, cfg->pages_to_scan,
	       cfg->sleep_ms);
	if (k->disturbed)
		printf("  WARNING: the kernel phase was disturbed, its numbers are not to be trusted: %s\n",
		       k->disturbance);
	tbl_row("", "kernel KSM", "engine", "eng/kern", "target");
	tbl_row("change detection", "checksum", e->detection, "", "");
	tbl_load(k->load_start, k->load_end, e->load_start, e->load_end);
	snprintf(kb, sizeof(kb), "%lld", (long long)k->possible);
	snprintf(eb, sizeof(eb), "%lld", (long long)e->possible);
	tbl_row("possible savings (pages)", kb, eb, "", "");
	struct tbl_conv kc = { k->t90, k->t99, k->max_read_wait, k->cpu90, k->cpu99, k->conv_cpu };
	struct tbl_conv ec = { e->t90, e->t99, e->max_read_wait, e->cpu90, e->cpu99, e->conv_cpu };
	int fails = !tbl_converge(&kc, &ec);
	tbl_num("writer thread CPU while converging (% of a CPU)", "%.2f", 100 * tbl_per_s(k->writer_cpu, k->conv_wall),
		100 * tbl_per_s(e->writer_cpu, e->conv_wall), true);
	struct tbl_saved ks = { k->saved_end, k->possible, k->pss_before - k->pss_after,
				k->avail_after - k->avail_before };
	struct tbl_saved es = { e->saved_end, e->possible, e->pss_before - e->pss_after,
				e->avail_after - e->avail_before };
	fails += tbl_savings(&ks, &es);
	tbl_num("steady, writer on: merger CPU (% of a CPU)", "%.2f", 100 * tbl_per_s(k->s1_cpu, k->s1_wall),
		100 * tbl_per_s(e->s1_cpu, e->s1_wall), true);
	tbl_num("steady, writer on: full scans/s", "%.2f", tbl_per_s((double)k->s1_scans, k->s1_wall),
		tbl_per_s((double)e->s1_scans, e->s1_wall), true);
	fails += !tbl_steady(k->s2_cpu, k->s2_wall, k->s2_scans, e->s2_cpu, e->s2_wall, e->s2_scans);
	tbl_num("writer store p50 before merging (us)", "%.3f", tbl_us(k->base_p50), tbl_us(e->base_p50), true);
	tbl_num("writer store p99 before merging (us)", "%.3f", tbl_us(k->base_p99), tbl_us(e->base_p99), true);
	tbl_num("writer store p50 while converging (us)", "%.3f", tbl_us(k->p50), tbl_us(e->p50), true);
	fails += !tbl_target("writer store p99 while converging (us)", "%.3f", tbl_us(k->p99), tbl_us(e->p99), true,
			     2.0, NULL);
	tbl_num("writer store max while converging (us)", "%.1f", tbl_us(k->pmax), tbl_us(e->pmax), true);
	tbl_num("  of which dup-page rewrites: p50 (us)", "%.2f", tbl_us(k->dup_p50), tbl_us(e->dup_p50), true);
	tbl_num("  of which dup-page rewrites: p99 (us)", "%.2f", tbl_us(k->dup_p99), tbl_us(e->dup_p99), true);
	tbl_num("  stores timed", "%.0f", (double)k->nwrites, (double)e->nwrites, false);
	tbl_num("  dup rewrites timed", "%.0f", (double)k->ndup, (double)e->ndup, false);
	tbl_num("writer preempted while converging (times)", "%.0f", (double)k->writer_preempted,
		(double)e->writer_preempted, false);
	tbl_num("writer page faults while converging", "%.0f", (double)k->writer_faults,
		(double)e->writer_faults, false);
	tbl_num("writer store p99, steady, writer on (us)", "%.3f", tbl_us(k->steady_p99), tbl_us(e->steady_p99), true);
	tbl_num("  dup-page rewrites: p50 (us)", "%.2f", tbl_us(k->steady_dup_p50), tbl_us(e->steady_dup_p50), true);
	tbl_num("  dup-page rewrites: p99 (us)", "%.2f", tbl_us(k->steady_dup_p99), tbl_us(e->steady_dup_p99), true);
	tbl_num("  dup rewrites timed", "%.0f", (double)k->steady_ndup, (double)e->steady_ndup, false);
	tbl_num("VMAs before merging", "%.0f", k->vmas_before, e->vmas_before, true);
	tbl_num("VMAs at end", "%.0f", k->vmas_end, e->vmas_end, true);
	tbl_num("pages_shared", "%.0f", (double)k->pages_shared, (double)e->pages_shared, false);
	tbl_num("pages_sharing", "%.0f", (double)k->pages_sharing, (double)e->pages_sharing, false);
	tbl_num("ksm_zero_pages", "%.0f", (double)k->ksm_zero_pages, (double)e->ksm_zero_pages, false);
	tbl_num("pages_unshared", "%.0f", (double)k->pages_unshared, (double)e->pages_unshared, false);
	tbl_num("pages_volatile", "%.0f", (double)k->pages_volatile, (double)e->pages_volatile, false);
	tbl_num("full_scans (whole phase)", "%.0f", (double)k->full_scans, (double)e->full_scans, false);
	tbl_num("cow_ksm (since run=1)", "%.0f", (double)(k->cow_ksm - k->cow_ksm_start),
		(double)(e->cow_ksm - e->cow_ksm_start), false);
	tbl_num("general_profit (MiB)", "%.1f", (double)k->general_profit / MIB,
		(double)e->general_profit / MIB, false);
	tbl_num("ksm_merging_pages (this process)", "%.0f", (double)k->ksm_merging_pages,
		(double)e->ksm_merging_pages, false);
	snprintf(t, sizeof(t), "%lld", (long long)e->skipped_map_count);
	tbl_row("pages_skipped_max_map_count", "-", t, "", "");
	snprintf(summary, len, "%s: %d of 5 target rows FAIL", cfg->name, fails);
	return fails;
}

static void print_header(int argc, char **argv, const struct opts *o)
{
	time_t now = time(NULL);
	char when[64], machine[256];
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
	tbl_machine(machine, sizeof(machine));
	printf("engine_vs_ksm, samepage %s, %s\ncommand:", sp_version(), when);
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\nmachine: %s\n", machine);
	const struct wl_params *w = &o->base.wl;
	printf("workload: %.0f MiB in %u regions, dup %.0f%% (of %u contents), zero %.0f%%, unique %.0f%%, "
	       "volatile %.0f%%, cluster %u\n"
	       "writer: %.0f stores/s into volatile pages, %.0f same-value stores/s into dup pages\n"
	       "both mergers: use_zero_pages=%d max_page_sharing=%u smart_scan=%d advisor_mode=none\n",
	       (double)w->pages * WL_PAGE / MIB, w->regions, 100 * w->share[WL_DUP], w->distinct,
	       100 * w->share[WL_ZERO], 100 * w->share[WL_UNIQUE], 100 * w->share[WL_VOLATILE],
	       w->cluster, o->base.write_rate, o->base.dup_write_rate, o->base.use_zero_pages,
	       o->base.max_page_sharing, o->base.smart_scan);
	if (o->floor)
		printf("--floor: the kernel's phases stop once converged; %u rounds, alternating\n", o->rounds);
	else
		printf("steady windows: %.0f s each; the no-changes one after %u full scans and %.0f s to settle\n",
		       o->base.steady_seconds, o->base.settle_scans, o->base.settle_seconds);
}

/* --engine-only: what a profile of the engine needs to line up with, and
 * nothing judged (a ratio needs the kernel's phase of the same run). */
static int engine_only(const struct opts *o, int argc, char **argv)
{
	print_header(argc, argv, o);
	int status = 0;
	for (int ci = 0; ci < 2 && !interrupted; ci++) {
		if (!o->run_cfg[ci])
			continue;
		struct phase_cfg c = o->base;
		c.engine = true;
		c.pages_to_scan = o->cfg[ci].pages_to_scan;
		c.sleep_ms = o->cfg[ci].sleep_ms;
		fprintf(stderr, "engine_vs_ksm: %s, engine...\n", o->cfg[ci].name);
		struct phase_result e;
		if (!run_child(&c, &e)) {
			status = 1;
			continue;
		}
		printf("\n== %s: pages_to_scan=%ld sleep_millisecs=%ld, engine only ==\n", o->cfg[ci].name,
		       c.pages_to_scan, c.sleep_ms);
		printf("  %-46s %s\n", "change detection", e.detection);
		printf("  %-46s %.2f / %.2f\n", "time to 90% / 99% (s)", e.t90, e.t99);
		printf("  %-46s %.3f / %.3f\n", "merger CPU to 90% / 99% (s)", e.cpu90, e.cpu99);
		printf("  %-46s %.3f / %.3f / %.1f\n", "writer p50 / p99 / max while converging (us)", tbl_us(e.p50),
		       tbl_us(e.p99), tbl_us(e.pmax));
		printf("  %-46s %lld in %llu stores\n", "writer page faults while converging",
		       (long long)e.writer_faults, (unsigned long long)e.nwrites);
		printf("  %-46s %.1f / %.1f (possible %.1f)\n", "saved at end: counters / PSS drop (MiB)",
		       (double)e.saved_end * WL_PAGE / MIB, (double)(e.pss_before - e.pss_after) / MIB,
		       (double)e.possible * WL_PAGE / MIB);
		printf("  %-46s %.3f\n", "steady, no changes: CPU per full scan (ms)",
		       e.s2_scans > 0 ? 1000 * e.s2_cpu / (double)e.s2_scans : -1);
		printf("  %-46s %d\n", "VMAs at end", e.vmas_end);
	}
	return interrupted ? 128 + interrupted : status;
}

/* --floor: the kernel's KSM against the mapping floor, in alternating
 * rounds so that the machine's noise falls on both alike. Each kernel
 * phase stops once converged. 0, or 1 if a phase could not be measured. */
static int floor_rounds(const struct opts *o, sp_ksm *k)
{
	int status = 0;
	for (int ci = 0; ci < 2 && !interrupted; ci++) {
		if (!o->run_cfg[ci])
			continue;
		struct phase_cfg c = o->base;
		c.pages_to_scan = o->cfg[ci].pages_to_scan;
		c.sleep_ms = o->cfg[ci].sleep_ms;
		c.converge_only = true;
		struct ksm_pace pace = { c.pages_to_scan, c.sleep_ms, c.use_zero_pages, c.smart_scan,
					 c.max_page_sharing };
		printf("\n== %s: pages_to_scan=%ld sleep_millisecs=%ld, kernel KSM against the mapping floor ==\n",
		       o->cfg[ci].name, c.pages_to_scan, c.sleep_ms);
		printf("  %-5s %11s %11s %8s %11s %11s %8s %9s %9s %9s\n", "", "CPU to 99%", "", "", "writer p99",
		       "", "", "VMAs at", "", "floor's");
		printf("  %-5s %11s %11s %8s %11s %11s %8s %9s %9s %9s\n", "round", "kernel (s)", "floor (s)",
		       "fl/kern", "kernel (us)", "floor (us)", "fl/kern", "end (fl)", "faults", "calls");
		double cpu_ratio[100], p99_ratio[100];
		unsigned n = 0;
		for (unsigned round = 1; round <= o->rounds && !interrupted; round++) {
			struct phase_result kr, fr;
			c.floor = false;
			c.engine = false;
			fprintf(stderr, "engine_vs_ksm: %s, round %u, kernel KSM...\n", o->cfg[ci].name, round);
			bool ok = ksm_prepare(k, &pace, PROG) == 0 && run_child(&c, &kr);
			sp_diag d;
			sp_ksm_set_run(k, 2, &d);
			c.floor = true;
			if (ok && !interrupted) {
				fprintf(stderr, "engine_vs_ksm: %s, round %u, floor...\n", o->cfg[ci].name, round);
				ok = run_child(&c, &fr);
			}
			if (!ok || interrupted) {
				status = 1;
				break;
			}
			bool trusted = !kr.disturbed && kr.cpu99 > 0 && fr.cpu99 > 0;
			printf("  %-5u %11.3f %11.3f %8.2f %11.2f %11.2f %8.2f %9d %9lld %9llu%s\n", round, kr.cpu99,
			       fr.cpu99, fr.cpu99 / kr.cpu99, tbl_us(kr.p99), tbl_us(fr.p99), fr.p99 / kr.p99, fr.vmas_end,
			       (long long)fr.writer_faults, (unsigned long long)fr.floor_calls,
			       kr.disturbed ? "  (kernel phase disturbed: not counted)" :
			       kr.cpu99 > 0 ? "" : "  (the kernel did not converge: not counted)");
			if (trusted) {
				cpu_ratio[n] = fr.cpu99 / kr.cpu99;
				p99_ratio[n++] = fr.p99 / kr.p99;
			}
		}
		if (n)
			printf("  median of %u rounds: floor/kernel CPU to 99%% %.2f, writer p99 %.2f\n", n,
			       tbl_median(cpu_ratio, n), tbl_median(p99_ratio, n));
	}
	return status;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.base = {
			.wl = { .pages = (256u << 20) / WL_PAGE,
				.share = { [WL_DUP] = 0.60, [WL_ZERO] = 0.10, [WL_VOLATILE] = 0.05 },
				.distinct = 64, .regions = 8, .cluster = 1, .seed = 1 },
			.write_rate = 10000, .dup_write_rate = 5, .max_page_sharing = 256,
			.smart_scan = true, .timeout = 90, .steady_seconds = 10, .settle_scans = 30, .settle_seconds = 0, .baseline_seconds = 2,
		},
		.cfg = { { "throttled (kernel defaults)", 100, 20 }, { "unthrottled", 25000, 0 } },
		.run_cfg = { true, true },
		.rounds = 3,
	};
	if (parse_opts(argc, argv, &o))
		return 2;
	if (o.engine_only) {
		struct sigaction sa = { .sa_handler = on_signal };
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		return engine_only(&o, argc, argv);
	}
	if (geteuid() != 0) {
		fprintf(stderr, "engine_vs_ksm: needs root: it drives the kernel's KSM\n");
		return 2;
	}
	sp_ksm *k;
	if (sp_ksm_open(NULL, &k) || !sp_ksm_available(k)) {
		fprintf(stderr, "engine_vs_ksm: this kernel has no KSM\n");
		return 4;
	}
	int lock = bench_lock_take(PROG);
	if (lock < 0)
		return 1;
	struct ksm_saved saved;
	if (ksm_knobs_save(k, &saved)) {
		fprintf(stderr, "engine_vs_ksm: cannot read the KSM knobs\n");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_signal };  /* no SA_RESTART: waits return EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	print_header(argc, argv, &o);
	pid_t self = getpid();
	ksm_warn_other_users(k, &self, 1, PROG);
	if (o.floor) {
		int st = floor_rounds(&o, k);
		int restore = ksm_knobs_restore(k, &saved, PROG);
		bench_lock_release(lock);
		printf("\nload at end %.2f; KSM knobs %s\n", probe_loadavg(), restore ? "NOT all restored" : "restored");
		sp_ksm_close(k);
		if (interrupted)
			return 128 + interrupted;
		return st || restore;
	}
	static struct phase_result res[2][2];
	bool have[2] = { false, false };
	int status = 0;
	for (int ci = 0; ci < 2 && !interrupted; ci++) {
		if (!o.run_cfg[ci])
			continue;
		struct phase_cfg c = o.base;
		c.pages_to_scan = o.cfg[ci].pages_to_scan;
		c.sleep_ms = o.cfg[ci].sleep_ms;
		struct ksm_pace pace = { c.pages_to_scan, c.sleep_ms, c.use_zero_pages, c.smart_scan,
					 c.max_page_sharing };
		bool ok = true;
		for (int eng = 0; eng < 2 && ok && !interrupted; eng++) {
			c.engine = eng;
			/* A phase disturbed by another program is run again, twice at most. */
			for (int attempt = 0; attempt < 3 && ok && !interrupted; attempt++) {
				fprintf(stderr, "engine_vs_ksm: %s, %s...\n", o.cfg[ci].name,
					eng ? "engine" : "kernel KSM");
				ok = ksm_prepare(k, eng ? NULL : &pace, PROG) == 0 && run_child(&c, &res[ci][eng]);
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
	int restore = ksm_knobs_restore(k, &saved, PROG);
	bench_lock_release(lock);
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
