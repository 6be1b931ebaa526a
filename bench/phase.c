/* SPDX-License-Identifier: MIT */
/*
 * One phase, run in a child process so that each merger starts from a
 * fresh address space and everything it merged goes away with the child.
 *
 *   build the image -> register it -> writer alone (baseline latency)
 *   -> run=1: poll savings until 99 % of the possible (or the timeout)
 *   -> steady window 1: writer still writing, fixed time
 *   -> writer paused; some full scans to settle; steady window 2: whole
 *      passes over memory that no longer changes, from one full_scans
 *      tick to a later one
 *   -> memory, VMAs and counters.
 *
 * The merger's CPU is ksmd's (a kernel thread: its process CPU clock) or
 * the engine's scanner thread (the one thread sp_engine_new() added).
 */
#include "phase.h"

#include <errno.h>
#include <samepage.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ksm_knobs.h"
#include "probe.h"

#define POLL_NS 5000000L  /* how often savings and full_scans are read */

struct merger {
	bool engine;
	sp_engine *e;
	sp_ksm *k;
	pid_t ksmd;       /* kernel: ksmd's pid */
	pid_t tid;        /* engine: its scanner thread */
};

void phase_nap(long ns)
{
	struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
	nanosleep(&ts, NULL);
}

static void fail(struct phase_result *r, const char *what, int err)
{
	r->status = 1;
	snprintf(r->error, sizeof(r->error), "%s: %s", what, err ? sp_strerror(err) : "failed");
}

static double m_cpu(const struct merger *m)
{
	return m->engine ? probe_thread_cpu(m->tid) : probe_process_cpu(m->ksmd);
}

static int64_t kread(const struct merger *m, sp_param p)
{
	int64_t v = 0;
	if (sp_ksm_read(m->k, p, &v))
		return 0;
	return v;
}

/* Pages saved, by the kernel's definition: pages_sharing + ksm_zero_pages. */
static int64_t m_saved(const struct merger *m)
{
	if (!m->engine)
		return kread(m, SP_PAGES_SHARING) + kread(m, SP_KSM_ZERO_PAGES);
	sp_sample s;
	if (sp_engine_sample(m->e, &s))
		return 0;
	return s.value[SP_PAGES_SHARING] + s.value[SP_KSM_ZERO_PAGES];
}

static int64_t m_full_scans(const struct merger *m)
{
	if (!m->engine)
		return kread(m, SP_FULL_SCANS);
	sp_sample s;
	if (sp_engine_sample(m->e, &s))
		return 0;
	return s.value[SP_FULL_SCANS];
}

/* Wait until full_scans moves on; false if it did not within timeout s. */
static bool m_wait_pass(const struct merger *m, double timeout)
{
	if (timeout <= 0)
		return false;
	if (m->engine)
		return sp_engine_wait_scans(m->e, 1, (int)(timeout * 1000) + 1) == 0;
	int64_t start = m_full_scans(m);
	double until = probe_now() + timeout;
	while (probe_now() < until) {
		phase_nap(POLL_NS);
		if (m_full_scans(m) != start)
			return true;
	}
	return false;
}

static int m_run(const struct merger *m, int run)
{
	sp_diag d;
	if (!m->engine)
		return sp_ksm_set_run(m->k, run, &d);
	char v[8];
	snprintf(v, sizeof(v), "%d", run);
	sp_setting s = { "run", v };
	return sp_engine_set(m->e, &s, 1, 0, &d);
}

/* The merger exists and knows its thread; the memory is not built yet. */
static int m_open(struct merger *m, const struct phase_cfg *c, struct phase_result *r)
{
	m->engine = c->engine;
	if (!c->engine) {
		int e = sp_ksm_open(NULL, &m->k);
		if (e) {
			fail(r, "sp_ksm_open", e);
			return -1;
		}
		sp_ksmd_info ki;
		e = sp_ksmd_info_read(m->k, &ki);
		if (e) {
			fail(r, "finding ksmd", e);
			return -1;
		}
		m->ksmd = ki.pid;
		snprintf(r->detection, sizeof(r->detection), "checksum (kernel)");
		return 0;
	}
	pid_t before[64], after[64];
	int nb = probe_self_tids(before, 64);
	int e = sp_engine_new(0, &m->e);
	if (e) {
		fail(r, "sp_engine_new", e);
		return -1;
	}
	int na = probe_self_tids(after, 64);
	for (int i = 0, j = 0; i < na; i++) {
		while (j < nb && before[j] < after[i])
			j++;
		if (j >= nb || before[j] != after[i])
			m->tid = after[i];
	}
	if (m->tid == 0 || na != nb + 1) {
		fail(r, "finding the engine's scanner thread", 0);
		return -1;
	}
	sp_engine_info info;
	if (sp_engine_info_get(m->e, &info) == 0)
		snprintf(r->detection, sizeof(r->detection), "%s", info.change_detection);
	struct ksm_pace pace = { c->pages_to_scan, c->sleep_ms, c->use_zero_pages, c->smart_scan,
				 c->max_page_sharing };
	struct ksm_pace_set ps;
	ksm_pace_settings(&pace, &ps);
	sp_diag d;
	e = sp_engine_set(m->e, ps.set, ps.n, 0, &d);
	if (e) {
		r->status = 1;
		snprintf(r->error, sizeof(r->error), "engine knobs: %s", d.msg);
		return -1;
	}
	return 0;
}

static int m_register(const struct merger *m, const struct wl_image *img, struct phase_result *r)
{
	for (unsigned i = 0; i < img->nreg; i++) {
		size_t len = img->reg[i].pages * WL_PAGE;
		int e;
		if (m->engine)
			e = sp_madvise(m->e, img->reg[i].base, len, MADV_MERGEABLE);
		else
			e = madvise(img->reg[i].base, len, MADV_MERGEABLE) ? -errno : 0;
		if (e) {
			fail(r, m->engine ? "sp_madvise(MADV_MERGEABLE)" : "madvise(MADV_MERGEABLE)", e);
			if (m->engine && *sp_last_error())
				snprintf(r->error + strlen(r->error), sizeof(r->error) - strlen(r->error),
					 " (%s)", sp_last_error());
			return -1;
		}
	}
	return 0;
}

/* Kernel phases only: are the knobs still ours, and are the pages the
 * kernel counts as merged all this process's? */
static void check_alone(const struct merger *m, const struct phase_cfg *c, struct phase_result *r)
{
	if (m->engine || r->disturbed)
		return;
	struct ksm_pace pace = { c->pages_to_scan, c->sleep_ms, c->use_zero_pages, c->smart_scan,
				 c->max_page_sharing };
	pid_t self = getpid();
	if (!ksm_check_alone(m->k, &pace, &self, 1, r->disturbance, sizeof(r->disturbance)))
		r->disturbed = true;
}

/* Until 99 % of the possible savings or the timeout. */
static void converge(const struct merger *m, const struct phase_cfg *c, struct wl_writer *w,
		     struct phase_result *r)
{
	pid_t wtid = atomic_load(&w->tid);
	double t0 = probe_now(), cpu0 = m_cpu(m), wcpu0 = probe_thread_cpu(wtid);
	int64_t pre0 = probe_thread_preempted(wtid), flt0 = probe_thread_faults(wtid);
	double next_report = t0 + 5, next_check = t0 + 1;
	r->t90 = r->t99 = r->cpu90 = r->cpu99 = -1;
	if (m->engine) {
		sp_sample s;
		r->cow_ksm_start = sp_engine_sample(m->e, &s) == 0 ? s.value[SP_COW_KSM] : 0;
	} else {
		r->cow_ksm_start = kread(m, SP_COW_KSM);
	}
	int e = m_run(m, 1);
	if (e) {
		fail(r, "run=1", e);
		return;
	}
	int64_t want90 = (int64_t)(0.90 * (double)r->possible + 0.999999);
	int64_t want99 = (int64_t)(0.99 * (double)r->possible + 0.999999);
	for (;;) {
		/* The engine's counters wait for its lock, which a batch may hold
		 * for a long time: the clock is read after the counters. */
		double before = probe_now();
		int64_t saved = m_saved(m);
		double now = probe_now();
		if (now - before > r->max_read_wait)
			r->max_read_wait = now - before;
		if (r->t90 < 0 && saved >= want90) {
			r->t90 = now - t0;
			r->cpu90 = m_cpu(m) - cpu0;
		}
		if (r->t99 < 0 && saved >= want99) {
			r->t99 = now - t0;
			r->cpu99 = m_cpu(m) - cpu0;
		}
		if (now >= next_check) {
			check_alone(m, c, r);
			next_check = now + 1;
		}
		if (c->verbose && now >= next_report) {
			fprintf(stderr, "    %s t=%5.1fs saved %lld/%lld pages, merger cpu %.2fs\n",
				c->engine ? "engine" : "kernel", now - t0, (long long)saved,
				(long long)r->possible, m_cpu(m) - cpu0);
			next_report += 5;
		}
		if (r->t99 >= 0 || now - t0 >= c->timeout) {
			r->conv_wall = now - t0;
			r->conv_cpu = m_cpu(m) - cpu0;
			r->saved_conv = saved;
			break;
		}
		phase_nap(POLL_NS);
	}
	r->writer_cpu = probe_thread_cpu(wtid) - wcpu0;
	r->writer_preempted = probe_thread_preempted(wtid) - pre0;
	r->writer_faults = probe_thread_faults(wtid) - flt0;
}

static void steady(const struct merger *m, const struct phase_cfg *c, struct wl_writer *w,
		   struct phase_result *r)
{
	/* 1: the writer goes on; a fixed time, whatever the pass boundaries */
	double t = probe_now(), cpu = m_cpu(m);
	int64_t scans = m_full_scans(m);
	wl_writer_record(w, WL_REC_STEADY);
	phase_nap((long)(c->steady_seconds * 1e9));
	wl_writer_record(w, WL_REC_OFF);
	check_alone(m, c, r);
	r->s1_wall = probe_now() - t;
	r->s1_cpu = m_cpu(m) - cpu;
	r->s1_scans = m_full_scans(m) - scans;

	/* 2: nothing changes any more. Measure from one full_scans tick to a
	 * later one so that the CPU is that of whole passes, whatever their
	 * length: the targets compare CPU at the same pass rate. */
	wl_writer_pause(w, true);
	double cap = c->timeout > c->steady_seconds ? c->timeout : c->steady_seconds;
	/* Let both mergers settle first: the last writes must be seen, and
	 * each merger's own skipping (smart_scan) learn what is quiet. */
	double paused = probe_now();
	for (unsigned k = 0; k < c->settle_scans || probe_now() - paused < c->settle_seconds; k++)
		if (!m_wait_pass(m, cap))
			return;
	double deadline = probe_now() + cap + c->steady_seconds;
	if (!m_wait_pass(m, deadline - probe_now()))
		return;  /* no pass ended: s2_scans stays 0 and the report says so */
	t = probe_now();
	cpu = m_cpu(m);
	scans = m_full_scans(m);
	while (probe_now() - t < c->steady_seconds || m_full_scans(m) == scans) {
		if (!m_wait_pass(m, deadline - probe_now()))
			break;
	}
	/* stop exactly at a tick: the pass boundary just waited for */
	r->s2_wall = probe_now() - t;
	r->s2_cpu = m_cpu(m) - cpu;
	r->s2_scans = m_full_scans(m) - scans;
	check_alone(m, c, r);
}

static void final_counters(const struct merger *m, struct phase_result *r)
{
	sp_sample s;
	int e = m->engine ? sp_engine_sample(m->e, &s) : sp_ksm_sample(m->k, &s);
	if (e)
		return;
	int64_t v;
#define GET(p, field) r->field = sp_sample_get(&s, p, &v) == 0 ? v : -1
	GET(SP_PAGES_SHARED, pages_shared);
	GET(SP_PAGES_SHARING, pages_sharing);
	GET(SP_KSM_ZERO_PAGES, ksm_zero_pages);
	GET(SP_PAGES_UNSHARED, pages_unshared);
	GET(SP_PAGES_VOLATILE, pages_volatile);
	GET(SP_FULL_SCANS, full_scans);
	GET(SP_COW_KSM, cow_ksm);
	GET(SP_GENERAL_PROFIT, general_profit);
	GET(SP_PAGES_SKIPPED_MAX_MAP_COUNT, skipped_map_count);
#undef GET
	sp_proc_ksm pk;
	if (m->engine ? sp_engine_stat(m->e, &pk) == 0 : sp_proc_ksm_read(m->k, getpid(), &pk) == 0)
		r->ksm_merging_pages = pk.ksm_merging_pages;
	else
		r->ksm_merging_pages = -1;
}

int phase_build_image(const struct phase_cfg *c, struct wl_image *img, struct phase_result *r)
{
	char err[200];
	if (wl_build(&c->wl, img, err, sizeof(err))) {
		r->status = 1;
		snprintf(r->error, sizeof(r->error), "building the workload: %s", err);
		return -1;
	}
	r->pages = (int64_t)img->pages;
	for (int i = 0; i < WL_NCLASS; i++)
		r->count[i] = (int64_t)img->count[i];
	r->possible = wl_possible_savings(img, c->use_zero_pages, c->max_page_sharing);
	return 0;
}

static void hist_combine(struct wl_hist *out, const struct wl_hist *a, const struct wl_hist *b)
{
	*out = *a;
	for (size_t i = 0; i < WL_HIST_BUCKETS; i++)
		out->b[i] += b->b[i];
	out->n += b->n;
	if (b->max > out->max)
		out->max = b->max;
}

void phase_converge_latency(const struct wl_writer *w, struct phase_result *r)
{
	/* The writer's stores as a whole: both kinds in one distribution. */
	static struct wl_hist all;
	hist_combine(&all, &w->vol[WL_REC_CONVERGE], &w->dup[WL_REC_CONVERGE]);
	r->p50 = wl_hist_quantile(&all, 0.50);
	r->p99 = wl_hist_quantile(&all, 0.99);
	r->pmax = (double)all.max;
	r->nwrites = all.n;
}

void phase_run(const struct phase_cfg *c, struct phase_result *r)
{
	memset(r, 0, sizeof(*r));
	r->load_start = probe_loadavg();
	struct merger m = { 0 };
	if (m_open(&m, c, r))
		return;
	struct wl_image img;
	if (phase_build_image(c, &img, r))
		return;
	if (m_register(&m, &img, r))
		return;

	static struct wl_writer w;  /* large histograms: not on the stack */
	int e = wl_writer_start(&w, &img, c->write_rate, c->dup_write_rate, c->wl.seed * 31 + 1);
	if (e) {
		fail(r, "starting the writer", e);
		return;
	}
	wl_writer_record(&w, WL_REC_BASELINE);
	phase_nap((long)(c->baseline_seconds * 1e9));
	wl_writer_record(&w, WL_REC_CONVERGE);

	r->vmas_before = probe_self_vmas();
	r->pss_before = probe_self_pss();
	r->avail_before = probe_mem_available();
	converge(&m, c, &w, r);
	wl_writer_record(&w, WL_REC_OFF);
	if (r->status == 0 && !c->converge_only)
		steady(&m, c, &w, r);
	r->saved_end = m_saved(&m);
	r->avail_after = probe_mem_available();
	r->pss_after = probe_self_pss();
	r->vmas_end = probe_self_vmas();
	r->load_end = probe_loadavg();
	final_counters(&m, r);
	wl_writer_stop(&w);

	r->base_p50 = wl_hist_quantile(&w.vol[WL_REC_BASELINE], 0.50);
	r->base_p99 = wl_hist_quantile(&w.vol[WL_REC_BASELINE], 0.99);
	phase_converge_latency(&w, r);
	r->dup_p50 = wl_hist_quantile(&w.dup[WL_REC_CONVERGE], 0.50);
	r->dup_p99 = wl_hist_quantile(&w.dup[WL_REC_CONVERGE], 0.99);
	r->dup_max = (double)w.dup[WL_REC_CONVERGE].max;
	r->ndup = w.dup[WL_REC_CONVERGE].n;
	static struct wl_hist all;
	hist_combine(&all, &w.vol[WL_REC_STEADY], &w.dup[WL_REC_STEADY]);
	r->steady_p99 = wl_hist_quantile(&all, 0.99);
	r->steady_dup_p50 = wl_hist_quantile(&w.dup[WL_REC_STEADY], 0.50);
	r->steady_dup_p99 = wl_hist_quantile(&w.dup[WL_REC_STEADY], 0.99);
	r->steady_ndup = w.dup[WL_REC_STEADY].n;
}
