/* SPDX-License-Identifier: MIT */
/*
 * One phase of the benchmark: the workload under one merger (the kernel's
 * KSM or the user-space engine) at one pair of pages_to_scan and
 * sleep_millisecs, run in a child process from start to finish.
 */
#ifndef SP_BENCH_PHASE_H
#define SP_BENCH_PHASE_H

#include <stdbool.h>
#include <stdint.h>

#include "workload.h"

struct phase_cfg {
	bool engine;                 /* false: kernel KSM (the parent set its knobs) */
	long pages_to_scan, sleep_ms;
	bool use_zero_pages, smart_scan;
	unsigned max_page_sharing;
	struct wl_params wl;
	double write_rate, dup_write_rate;
	double timeout;              /* most seconds to wait for 99 % */
	double steady_seconds;
	unsigned settle_scans;       /* full scans after the writer pauses, before window 2 */
	double settle_seconds;       /* and at least this long: hot pages cool in seconds */
	double baseline_seconds;     /* writer alone before merging starts */
	bool verbose;
	bool converge_only;          /* stop once converged: no steady windows */
	bool floor;                  /* not a merger: the mapping floor (floor.c) */
};

/* Everything measured, passed from the child to the parent as bytes. */
struct phase_result {
	int status;                  /* 0 measured; otherwise error says why */
	char error[256];
	/* Kernel KSM is machine-wide: another program that changed its knobs
	 * or merged its own pages during the phase makes the numbers wrong. */
	bool disturbed;
	char disturbance[256];
	char detection[32];          /* engine: change detection in use */
	int64_t pages, possible;
	int64_t count[WL_NCLASS];
	/* convergence, from run=1 */
	double t90, t99;             /* seconds, -1 if not reached */
	double cpu90, cpu99;         /* merger CPU seconds to get there */
	double conv_wall, conv_cpu;  /* to 99 % or to the timeout */
	double writer_cpu;           /* the writer thread, same span */
	int64_t writer_preempted;    /* times the writer lost its CPU, same span */
	int64_t writer_faults;       /* page faults of the writer, same span */
	double load_start, load_end; /* 1-minute load average around the phase */
	int64_t saved_conv;          /* pages saved at the end of that span */
	double max_read_wait;        /* longest reading of the counters (the
				      * engine's wait for its lock), seconds */
	/* latency of the writer's stores, nanoseconds */
	double base_p50, base_p99;
	double p50, p99, pmax;
	uint64_t nwrites;
	double dup_p50, dup_p99, dup_max;
	uint64_t ndup;
	double steady_p99;           /* steady window 1, everything merged */
	double steady_dup_p50, steady_dup_p99;
	uint64_t steady_ndup;
	/* steady state: 1 writer still writing; 2 writer paused, whole passes */
	double s1_wall, s1_cpu;
	int64_t s1_scans;
	double s2_wall, s2_cpu;
	int64_t s2_scans;
	/* memory, at the end */
	int64_t saved_end;           /* pages_sharing + ksm_zero_pages */
	uint64_t floor_calls;        /* the floor: mmap and madvise calls */
	int64_t pss_before, pss_after;
	int64_t avail_before, avail_after;
	int vmas_before, vmas_end;
	/* counters at the end */
	int64_t pages_shared, pages_sharing, ksm_zero_pages, pages_unshared, pages_volatile;
	int64_t full_scans, cow_ksm, general_profit, skipped_map_count;
	int64_t cow_ksm_start;       /* the kernel's cow_ksm is machine-wide: a delta */
	int64_t ksm_merging_pages;   /* this process's ksm_stat: a cross-check */
};

/* Run the phase in the calling (child) process. Never returns an error:
 * r->status and r->error say what went wrong. */
void phase_run(const struct phase_cfg *c, struct phase_result *r);

/* The mapping floor on the same workload at the same pace (floor.c): only
 * the mmap and MADV_DONTNEED calls a merger through mappings cannot do
 * without, planned from the image. Fills the convergence, latency and VMA
 * fields; r->status is not 0 if any page reads wrong afterwards. */
void floor_run(const struct phase_cfg *c, struct phase_result *r);

/* Shared by both. */
void phase_nap(long ns);
/* Build the image and record its classes and possible savings in r;
 * 0, or -1 with r->status and r->error set. */
int phase_build_image(const struct phase_cfg *c, struct wl_image *img, struct phase_result *r);
/* The writer's latencies while converging (both kinds of store) into r. */
void phase_converge_latency(const struct wl_writer *w, struct phase_result *r);

#endif
