/* SPDX-License-Identifier: MIT */
/*
 * The adaptive policy. Scans only when memory is under pressure, and only
 * while scanning pays:
 *  - pressure: MemAvailable below thres (the classic thres formula), or
 *    PSI memory "some avg10" at or above KSM_PSI_THRES, or the mergeable
 *    memory plus thres above MemTotal; once on, it lasts until
 *    MemAvailable is 10% above thres (no flapping at the edge);
 *  - work: every process with mergeable memory (ksm_stat), not a name;
 *  - start at once on pressure with a new mergeable process, more
 *    mergeable memory, pressure coming back, or a due probe; the batch is
 *    sized so one full scan takes KSM_SCAN_TIME within KSM_MAX_CPU;
 *  - measure each window between two observed ends of full scans: profit
 *    gained (general_profit) per ksmd CPU-second. The first full scan
 *    only takes checksums (the kernel merges on the second visit), so
 *    judging starts with the second. Below KSM_PROFIT_MIN: run=0 (merged
 *    pages stay merged), probe again after KSM_REPROBE, doubling;
 *  - still paying after the merging burst: hand pacing to the kernel's
 *    scan-time advisor (advisor_max_cpu, advisor_target_scan_time) where
 *    it exists, else pace pages_to_scan here the same way.
 * Pure: reads the config, its state and one tune_input.
 */
#include "tune.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define GROWTH_MIN_KB (64 * 1024)    /* more mergeable memory than this is new work */
#define DEFAULT_PAGE_COST 2e-6       /* ksmd CPU-seconds per page before we measured */
#define PAGES_MAX 4294967295LL

void adaptive_init(struct adaptive_state *st)
{
	memset(st, 0, sizeof(*st));
	st->last_rate = -1;
	st->w_cpu = -1;
}

static int64_t mergeable_kb(const struct tune_input *in)
{
	int64_t kb = 0;
	for (size_t i = 0; i < in->nprocs; i++)
		kb += in->procs[i].kb;
	return kb;
}

static bool was_seen(const struct adaptive_state *st, const struct tune_proc *p)
{
	for (size_t i = 0; i < st->nseen; i++)
		if (st->seen[i].pid == p->pid && st->seen[i].start == p->start)
			return true;
	return false;
}

/* New mergeable processes, named in buf ("1234 (qemu-system-x86), ..."). */
static int count_new(const struct adaptive_state *st, const struct tune_input *in, char *buf, size_t len)
{
	int n = 0;
	buf[0] = 0;
	for (size_t i = 0; i < in->nprocs; i++) {
		if (was_seen(st, &in->procs[i]))
			continue;
		if (n < 3) {
			size_t l = strlen(buf);
			snprintf(buf + l, len - l, "%s%d (%s)", n ? ", " : "", (int)in->procs[i].pid,
				 in->procs[i].comm);
		}
		n++;
	}
	if (n > 3) {
		size_t l = strlen(buf);
		snprintf(buf + l, len - l, " and %d more", n - 3);
	}
	return n;
}

static void remember(struct adaptive_state *st, const struct tune_input *in)
{
	st->nseen = 0;
	for (size_t i = 0; i < in->nprocs && st->nseen < ADAPTIVE_MAX_SEEN; i++) {
		st->seen[st->nseen].pid = in->procs[i].pid;
		st->seen[st->nseen].start = in->procs[i].start;
		st->nseen++;
	}
}

static int64_t profit_of(const struct tune_input *in)
{
	sp_savings sav;
	sp_savings_compute(&in->eng.s, &sav);
	return sav.profit_bytes;
}

struct pressure {
	bool on;
	char why[200];
};

static void eval_pressure(const struct tune_config *c, const struct adaptive_state *st,
			  const struct tune_input *in, int64_t committed, struct pressure *pr)
{
	int64_t total = in->mem.total, thres = tune_thres(c, total), avail = in->mem.available;
	int64_t limit = st->was_pressure ? thres + thres / 10 : thres;
	const char *name = in->mem.have_available ? "MemAvailable" : "free";
	pr->on = false;
	pr->why[0] = 0;
	if (avail < limit) {
		pr->on = true;
		snprintf(pr->why, sizeof(pr->why), "%s %" PRId64 " kB < %s %" PRId64 " kB", name, avail,
			 limit == thres ? "thres" : "thres+10%", limit);
	} else if (c->psi_thres > 0 && in->psi_some_avg10 >= (double)c->psi_thres) {
		pr->on = true;
		snprintf(pr->why, sizeof(pr->why), "PSI memory some avg10 %.2f%% >= %" PRId64 "%%",
			 in->psi_some_avg10, c->psi_thres);
	} else if (committed + thres > total) {
		pr->on = true;
		snprintf(pr->why, sizeof(pr->why),
			 "mergeable %" PRId64 " kB + thres %" PRId64 " kB > total %" PRId64 " kB", committed,
			 thres, total);
	} else {
		snprintf(pr->why, sizeof(pr->why), "%s %" PRId64 " kB >= %s %" PRId64 " kB", name, avail,
			 limit == thres ? "thres" : "thres+10%", limit);
	}
}

static void window_reset(struct adaptive_state *st, const struct tune_input *in)
{
	st->w_time = in->now;
	st->w_cpu = in->eng.cpu_seconds;
	st->w_cpu_pid = in->eng.cpu_pid;
	st->w_full_scans = tune_get(in, SP_FULL_SCANS, 0);
	st->w_profit = profit_of(in);
	st->w_scanned = tune_get(in, SP_PAGES_SCANNED, -1);
}

/* ksmd's CPU-seconds per page visited, from its whole life so far. */
static double page_cost(const struct tune_input *in)
{
	int64_t scanned = tune_get(in, SP_PAGES_SCANNED, -1);
	double cost = DEFAULT_PAGE_COST;
	if (scanned >= 100000 && in->eng.cpu_seconds > 0.1)
		cost = in->eng.cpu_seconds / (double)scanned;
	if (cost < 1e-7)
		cost = 1e-7;
	if (cost > 1e-4)
		cost = 1e-4;
	return cost;
}

/* Largest batch that keeps ksmd within max_cpu percent: a batch costs
 * n*cost seconds and is followed by sleep ms. */
static int64_t cpu_cap(const struct tune_config *c, int64_t sleep, double cost)
{
	if (c->max_cpu >= 100)
		return PAGES_MAX;
	double f = (double)c->max_cpu / 100.0;
	double cap = f * ((double)sleep / 1000.0) / ((1.0 - f) * cost);
	if (cap < 1)
		return 1;
	return cap > (double)PAGES_MAX ? PAGES_MAX : (int64_t)cap;
}

/* run=0: merged pages stay merged; never run=2. */
static void stop(struct tune_decision *d, const char *reason)
{
	d->action = TUNE_STOP;
	tune_decision_write(d, 0, "run", 0);
	snprintf(d->reason, sizeof(d->reason), "%s", reason);
	d->log_before = d->nlog;
	tune_decision_log(d, "stop ksm: %s", reason);
}

/* Start (or restart) a merging burst sized for the mergeable memory now. */
static void plan(const struct tune_config *c, struct adaptive_state *st, const struct tune_input *in,
		 struct tune_decision *d, int64_t kb, const char *why)
{
	int64_t page_kb = in->page_size >= 1024 ? in->page_size / 1024 : 4;
	int64_t candidates = kb / page_kb;
	int64_t sleep = tune_sleep(c, in->mem.total);
	int64_t batches = c->scan_time * 1000 / sleep;
	if (batches < 1)
		batches = 1;
	int64_t n = (candidates + batches - 1) / batches;
	if (n < 100)
		n = 100;  /* the kernel's own default batch */
	int64_t cap = cpu_cap(c, sleep, page_cost(in));
	if (n > cap)
		n = cap;
	if (tune_get(in, SP_ADVISOR_MODE, 0) != 0)
		tune_decision_write_str(d, 0, "advisor_mode", "none");
	tune_decision_write(d, 0, "pages_to_scan", n);
	tune_decision_write(d, 0, "sleep_millisecs", sleep);
	tune_decision_write(d, 0, "run", 1);
	d->action = TUNE_START;
	d->npages = n;
	d->sleep = sleep;
	st->phase = AP_MERGING;
	st->since = in->now;
	st->start_full_scans = tune_get(in, SP_FULL_SCANS, 0);
	st->npages = n;
	st->sleep = sleep;
	st->base_kb = kb;
	window_reset(st, in);
	snprintf(d->reason, sizeof(d->reason),
		 "%s: %" PRId64 " candidate pages, one full scan in about %" PRId64 " s%s", why, candidates,
		 c->scan_time, n == cap ? " (capped by KSM_MAX_CPU)" : "");
	d->log_before = d->nlog;
	tune_decision_log(d, "start ksm: %s: %" PRId64 " candidate pages, pages_to_scan %" PRId64
			  " sleep_millisecs %" PRId64, why, candidates, n, sleep);
}

/* Still paying after the burst: keep scanning at a sustainable pace. */
static void sustain(const struct tune_config *c, struct adaptive_state *st, const struct tune_input *in,
		    struct tune_decision *d, double rate)
{
	bool kernel_advisor = c->advisor != TUNE_ADVISOR_NO && in->eng.has_advisor;
	if (st->phase == AP_MERGING && kernel_advisor) {
		int64_t maxp = st->npages * 4 > 30000 ? st->npages * 4 : 30000;
		tune_decision_write(d, 0, "advisor_max_cpu", c->max_cpu);
		tune_decision_write(d, 0, "advisor_target_scan_time", c->scan_time);
		tune_decision_write(d, 0, "advisor_min_pages_to_scan", st->npages);
		tune_decision_write(d, 0, "advisor_max_pages_to_scan", maxp);
		/* A separate transaction: switching the mode takes pages_to_scan
		 * from advisor_min_pages_to_scan, which must be written first. */
		tune_decision_write_str(d, 1, "advisor_mode", "scan-time");
		d->action = TUNE_START;
		st->phase = AP_SUSTAINED;
		snprintf(d->reason, sizeof(d->reason),
			 "still earning %.1f MiB per ksmd CPU-second: the kernel's scan-time advisor paces "
			 "ksmd from here (advisor_max_cpu %" PRId64 ")", rate, c->max_cpu);
		d->log_before = d->nlog;
		tune_decision_log(d, "advisor: %s", d->reason);
		return;
	}
	st->phase = AP_SUSTAINED;
	if (kernel_advisor)
		return;  /* the kernel paces it */
	/* Pace here: aim at KSM_SCAN_TIME per full scan, within KSM_MAX_CPU. */
	int64_t passes = tune_get(in, SP_FULL_SCANS, 0) - st->w_full_scans;
	double took = (in->now - st->w_time) / (double)(passes > 0 ? passes : 1);
	int64_t n = (int64_t)((double)st->npages * took / (double)c->scan_time);
	if (n < st->npages / 2)
		n = st->npages / 2;
	if (n > st->npages * 4)
		n = st->npages * 4;
	int64_t scanned = tune_get(in, SP_PAGES_SCANNED, -1);
	double cost = page_cost(in);
	if (scanned > st->w_scanned && st->w_scanned >= 0 && in->eng.cpu_seconds > st->w_cpu)
		cost = (in->eng.cpu_seconds - st->w_cpu) / (double)(scanned - st->w_scanned);
	if (cost < 1e-7)
		cost = 1e-7;
	int64_t cap = cpu_cap(c, st->sleep, cost);
	if (n > cap)
		n = cap;
	if (n < 100)
		n = 100;
	if (n * 10 >= st->npages * 9 && n * 10 <= st->npages * 11)
		return;  /* within 10%: leave it */
	tune_decision_write(d, 0, "pages_to_scan", n);
	d->action = TUNE_START;
	d->npages = n;
	snprintf(d->reason, sizeof(d->reason),
		 "pacing: a full scan took %.1f s for a target of %" PRId64 " s: pages_to_scan %" PRId64
		 " -> %" PRId64, took, c->scan_time, st->npages, n);
	st->npages = n;
	d->log_before = d->nlog;
	tune_decision_log(d, "%s", d->reason);
}

void adaptive_step(const struct tune_config *c, struct adaptive_state *st, const struct tune_input *in,
		   struct tune_decision *d)
{
	int64_t kb = mergeable_kb(in);
	struct pressure pr;
	eval_pressure(c, st, in, kb, &pr);
	bool first = !st->started;
	st->started = true;
	char names[160], why[TUNE_LOG_LEN], msg[TUNE_LOG_LEN];
	int nnew = first ? 0 : count_new(st, in, names, sizeof(names));
	int64_t grow_min = st->base_kb / 10 > GROWTH_MIN_KB ? st->base_kb / 10 : GROWTH_MIN_KB;
	bool grown = !first && kb >= st->base_kb + grow_min;
	int64_t run = tune_get(in, SP_RUN, 0);
	int64_t fs = tune_get(in, SP_FULL_SCANS, 0);

	d->total = in->mem.total;
	d->thres = tune_thres(c, in->mem.total);
	d->free = in->mem.available;
	d->committed = kb;
	d->pressure = pr.on;
	d->sleep = tune_get(in, SP_SLEEP_MILLISECS, 0);
	d->npages = tune_get(in, SP_PAGES_TO_SCAN, 0);
	d->profit_rate = st->last_rate;
	tune_decision_log(d, "%s; mergeable %" PRId64 " kB in %zu processes; ksm run=%" PRId64, pr.why, kb,
			  in->nprocs, run);
	int status_lines = d->nlog;

	if (!in->eng.present) {
		snprintf(d->reason, sizeof(d->reason), "this kernel has no KSM");
		goto out;
	}
	if (in->nprocs == 0) {
		if (run == 1)
			stop(d, "no process has mergeable memory");
		else
			snprintf(d->reason, sizeof(d->reason), "idle: no process has mergeable memory");
		st->phase = AP_IDLE;
		st->stopped_unprofitable = false;
		st->base_kb = 0;
		goto out;
	}

	if (st->phase == AP_IDLE) {
		why[0] = 0;
		if (pr.on) {
			if (first)
				snprintf(why, sizeof(why), "start-up under pressure (%s)", pr.why);
			else if (nnew)
				snprintf(why, sizeof(why), "new mergeable process %s under pressure (%s)", names,
					 pr.why);
			else if (!st->was_pressure && !st->stopped_unprofitable)
				snprintf(why, sizeof(why), "memory came under pressure (%s)", pr.why);
			else if (grown)
				snprintf(why, sizeof(why), "mergeable memory grew from %" PRId64 " to %" PRId64
					 " MiB under pressure (%s)", st->base_kb / 1024, kb / 1024, pr.why);
			else if (st->stopped_unprofitable && c->reprobe > 0 && in->now >= st->next_probe)
				snprintf(why, sizeof(why), "probe after %" PRId64 " s (%s)", st->backoff, pr.why);
		}
		if (why[0]) {
			plan(c, st, in, d, kb, why);
			goto out;
		}
		if (!pr.on) {
			/* Whatever happens now is judged when pressure comes. */
			st->stopped_unprofitable = false;
			st->base_kb = kb;
			snprintf(msg, sizeof(msg), "memory is not under pressure (%s)", pr.why);
		} else if (st->stopped_unprofitable && c->reprobe > 0) {
			snprintf(msg, sizeof(msg), "scanning stopped paying; next probe in %.0f s",
				 st->next_probe - in->now);
		} else {
			snprintf(msg, sizeof(msg), "scanning stopped paying; no probes (KSM_REPROBE=0)");
		}
		if (run == 1)
			stop(d, msg);
		else
			snprintf(d->reason, sizeof(d->reason), "idle: %s", msg);
		goto out;
	}

	/* Scanning. */
	if (!pr.on) {
		snprintf(msg, sizeof(msg), "memory is no longer under pressure (%s)", pr.why);
		stop(d, msg);
		st->phase = AP_IDLE;
		st->stopped_unprofitable = false;
		st->base_kb = kb;
		goto out;
	}
	if (nnew || grown) {
		if (nnew)
			snprintf(why, sizeof(why), "new mergeable process %s", names);
		else
			snprintf(why, sizeof(why), "mergeable memory grew from %" PRId64 " to %" PRId64 " MiB",
				 st->base_kb / 1024, kb / 1024);
		plan(c, st, in, d, kb, why);
		goto out;
	}
	if (run != 1) {
		snprintf(why, sizeof(why), "run is %" PRId64 " (changed by someone else)", run);
		plan(c, st, in, d, kb, why);
		goto out;
	}
	if (fs == st->w_full_scans) {
		snprintf(d->reason, sizeof(d->reason), "%s: full scan %" PRId64 " in progress (%" PRId64
			 " done since the start)", st->phase == AP_MERGING ? "merging" : "scanning",
			 fs + 1, fs - st->start_full_scans);
		d->nlog = 0;  /* nothing to say every second */
		goto out;
	}
	/* A window ended: at least one full scan since the last one. */
	if (in->eng.cpu_seconds < 0 || st->w_cpu < 0 || in->eng.cpu_pid != st->w_cpu_pid) {
		snprintf(d->reason, sizeof(d->reason), "ksmd's CPU time is unknown: cannot judge this window");
		window_reset(st, in);
		goto out;
	}
	if (st->w_full_scans < st->start_full_scans + 1) {
		snprintf(d->reason, sizeof(d->reason),
			 "merging: the first full scan since the start took checksums; judging from the next");
		window_reset(st, in);
		d->nlog = 0;
		goto out;
	}
	double dcpu = in->eng.cpu_seconds - st->w_cpu;
	if (dcpu < 0.01)
		dcpu = 0.01;  /* one clock tick */
	int64_t gain = profit_of(in) - st->w_profit;
	double rate = (double)gain / 1048576.0 / dcpu;
	st->last_rate = rate;
	d->profit_rate = rate;
	d->nlog = status_lines;
	tune_decision_log(d, "full scans %" PRId64 "-%" PRId64 ": profit %+.1f MiB for %.2f ksmd CPU-s, "
			  "%.1f MiB per CPU-second", st->w_full_scans, fs, (double)gain / 1048576.0, dcpu, rate);
	if (rate < (double)c->profit_min) {
		st->backoff = st->backoff ? st->backoff * 2 : c->reprobe;
		if (st->backoff > c->reprobe * 8)
			st->backoff = c->reprobe * 8;
		st->next_probe = in->now + (double)st->backoff;
		if (c->reprobe > 0)
			snprintf(msg, sizeof(msg), "a full scan earned %.1f MiB per ksmd CPU-second, below "
				 "KSM_PROFIT_MIN=%" PRId64 "; merged pages stay merged; probe again in %" PRId64 " s",
				 rate, c->profit_min, st->backoff);
		else
			snprintf(msg, sizeof(msg), "a full scan earned %.1f MiB per ksmd CPU-second, below "
				 "KSM_PROFIT_MIN=%" PRId64 "; merged pages stay merged", rate, c->profit_min);
		stop(d, msg);
		st->phase = AP_IDLE;
		st->stopped_unprofitable = true;
		st->base_kb = kb;
		goto out;
	}
	st->backoff = 0;
	sustain(c, st, in, d, rate);
	if (d->action == TUNE_NOTHING)
		snprintf(d->reason, sizeof(d->reason), "still earning %.1f MiB per ksmd CPU-second: keep scanning",
			 rate);
	window_reset(st, in);
out:
	if (d->action == TUNE_NOTHING && d->nlog == status_lines)
		d->nlog = 0;  /* only decisions and judgements are worth a log line */
	if (d->action == TUNE_NOTHING)
		d->log_before = d->nlog;
	st->was_pressure = pr.on;
	remember(st, in);
}
