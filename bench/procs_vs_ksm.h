/* SPDX-License-Identifier: MIT */
/*
 * procs_vs_ksm: N processes with the same kind of memory image under the
 * kernel's KSM and under samepaged (docs/cross-process.md). This header is
 * shared by its three parts: the worker processes (procs_vs_ksm_worker.c),
 * one phase of N workers under one merger (procs_vs_ksm_phase.c) and the
 * program with its report (procs_vs_ksm.c).
 */
#ifndef SP_BENCH_PROCS_VS_KSM_H
#define SP_BENCH_PROCS_VS_KSM_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ksm_knobs.h"
#include "workload.h"

#define PV_MAX_PROCS 64

/* Set by SIGINT/SIGTERM/SIGHUP: every wait gives up and the run unwinds. */
extern volatile sig_atomic_t pv_interrupted;

struct pv_cfg {
	bool daemon;                 /* false: kernel KSM (or the floor) */
	bool floor;                  /* no merger: the mapping floor (--floor) */
	bool converge_only;          /* stop once converged: no steady window */
	int store_fd;                /* the floor's store, shared by every worker */
	struct pv_turns *turns;      /* and its turns, in memory shared by them */
	const char *samepaged;       /* the daemon's program */
	unsigned nprocs;
	struct ksm_pace pace;
	struct wl_params wl;         /* one process's image; its seed varies per process */
	bool same_offsets;           /* every process the same layout */
	double write_rate, dup_write_rate;   /* per process */
	double timeout;              /* most seconds to wait for 99 % */
	double steady_seconds;
	unsigned settle_scans;       /* full scans after the writers pause, before the window */
	double settle_seconds;       /* and at least this long: hot pages cool in seconds */
	double baseline_seconds;
	bool verbose;
};

/* ------------------------------------------------------------ workers */

/* A worker's answer once its image is built, registered and written to;
 * followed on the pipe by `distinct` copy counts (uint64_t) of the pool. */
struct pv_ready {
	int status;                  /* 0, or error says why */
	char error[200];
	pid_t engine_tid;            /* samepaged phases: the engine's thread */
	int64_t count[WL_NCLASS];
	uint32_t distinct;
};

/* Quick reading: touches nothing the merger holds. */
struct pv_cpu {
	double engine_cpu;           /* the engine's thread, s (0 under the kernel) */
	double writer_cpu;
	int64_t writer_preempted;
};

/* Memory reading, at the ends of a phase. */
struct pv_mem {
	int64_t pss;
	int vmas;
	int64_t merging_pages;       /* samepaged: sp_engine_stat; -1 under the kernel */
	double info_cpu;             /* samepaged: sp_engine_info_get().cpu_seconds */
};

struct pv_verify {
	uint64_t pages, bad;
	uint64_t bad_class[WL_NCLASS];
	int64_t first_bad;           /* page number, -1 if none */
	int free_status;             /* 'f': what releasing the merger returned */
};

struct pv_hists {
	struct wl_hist base, conv, conv_dup;
};

struct pv_worker {
	pid_t pid;
	int cmd, rep;                /* pipes to and from it */
	struct pv_ready ready;
	uint64_t *pool_count;        /* ready.distinct entries */
};

enum {
	PV_REC_BASE = 'b', PV_REC_CONV = 'c', PV_REC_OFF = 'o',
	PV_PAUSE = 'p', PV_CPU = 's', PV_MEM = 'm', PV_HISTS = 'h',
	PV_VERIFY = 'v', PV_FREE = 'f', PV_QUIT = 'q',
	PV_FLOOR_PLAN = 'P', PV_FLOOR_GO = 'F',
};

/* The floor's workers take turns as samepaged's clients do: one at a
 * time, pages_to_scan pages, then sleep_millisecs, then the next one
 * still working (futex on holder, shared between the processes). */
struct pv_turns {
	_Atomic uint32_t holder;     /* worker whose turn it is */
	_Atomic uint64_t done;       /* bit per worker that has finished */
};

/* The mapping floor across processes (--floor): the parent numbers every
 * copy of a base-image content over all workers, so that copies g of
 * content k share store page first[k] + g / max_page_sharing, as merged.
 * PV_FLOOR_PLAN is followed by this and by distinct uint64_t each of
 * off[] (this worker's first copy number per content) and first[]; the
 * worker plans untimed, writes the store pages whose first copy it holds,
 * and answers a pv_floor. PV_FLOOR_GO: it makes the planned calls in
 * its turns (struct pv_turns) and answers a pv_floor. */
struct pv_floor_plan {
	uint32_t distinct, max_page_sharing;
	double pages_per_tick;
	long sleep_ms;
};

struct pv_floor {
	int status;                  /* 0, or error says why */
	char error[160];
	uint64_t nops;               /* pages mapped or dropped */
	uint64_t calls;              /* GO: mmap and madvise calls for them */
	double cpu90, cpu99, cpu_all, wall;   /* the worker's main thread, from GO */
};

/* Fork worker `index` (the others already running are ws[0..index-1],
 * whose pipes it closes). socket: samepaged's, or NULL under the kernel. */
int pv_worker_spawn(const struct pv_cfg *c, unsigned index, const char *socket, struct pv_worker *ws);
/* Wait for its pv_ready (and pool counts). */
int pv_worker_ready(struct pv_worker *w, double timeout, char *err, size_t errlen);
/* One command and its fixed-size reply (a byte for those without data). */
int pv_worker_cmd(struct pv_worker *w, char cmd, void *reply, size_t len, double timeout);
/* The same command to every worker; 0 or the first error. */
int pv_workers_cmd(struct pv_worker *ws, unsigned n, char cmd, double timeout);
/* The same, with a reply of rlen bytes from each into replies[i]. */
int pv_workers_ask(struct pv_worker *ws, unsigned n, char cmd, void *replies, size_t rlen, double timeout);
/* cmd, then len bytes of data, and its reply of rlen bytes. */
int pv_worker_send(struct pv_worker *w, char cmd, const void *data, size_t len, void *reply, size_t rlen,
		   double timeout);
/* 'q' and reap; the exit status, or -1 (then it is killed). */
int pv_worker_quit(struct pv_worker *w);
void pv_worker_kill(struct pv_worker *w);

/* ------------------------------------------------------------ one phase */

struct pv_result {
	int status;                  /* 0 measured; otherwise error says why */
	char error[256];
	bool disturbed;              /* kernel KSM used by another program meanwhile */
	char disturbance[256];
	unsigned nprocs;
	int64_t pages, possible, count[WL_NCLASS];
	double build_seconds;        /* spawn to every worker ready */
	double load_start, load_end;
	double read_cost_us;         /* merger CPU per reading of its counters */
	/* convergence, from run=1 */
	double t90, t99, cpu90, cpu99, conv_wall, conv_cpu;
	double conv_daemon_cpu;      /* samepaged: the daemon's share of conv_cpu */
	double conv_reported_cpu;    /* samepaged: the same span from sp_ctl_info (cross-check) */
	double max_read_wait;
	int64_t saved_conv;
	uint64_t floor_ops;          /* --floor: pages mapped or dropped, all workers */
	uint64_t floor_calls;        /* and the calls for them */
	double writer_cpu;           /* all writers, same span */
	int64_t writer_preempted;
	double ksmd_cpu;             /* ksmd's CPU over the whole phase (samepaged: should be 0) */
	/* steady state, writers paused, whole passes */
	double s_wall, s_cpu, s_daemon_cpu;
	int64_t s_scans;
	/* latency, ns, over all workers */
	double base_p50, base_p99, p50, p99, pmax, dup_p50, dup_p99;
	uint64_t nwrites, ndup;
	/* memory at the end */
	int64_t saved_end;
	int64_t pss_before, pss_after;          /* workers (and the daemon) */
	int64_t daemon_pss_before, daemon_pss_after;
	int64_t avail_before, avail_after;
	int vmas_before_max, vmas_end_max;
	int64_t pages_shared, pages_sharing, ksm_zero_pages, pages_unshared, pages_volatile;
	int64_t full_scans, cow_ksm, cow_ksm_start, general_profit, skipped_map_count;
	int64_t merging_pages;       /* the processes' ksm_merging_pages, summed */
	int64_t engine_merging_pages;/* samepaged: the same from the workers' engines */
	/* verification of every page */
	uint64_t verified_pages, bad_pages, bad_after_free;
	uint64_t bad_class[WL_NCLASS];
	int free_errors;
	/* the daemon */
	int daemon_exit;             /* its exit status after SIGTERM, -1 if killed */
	int daemon_log_errors;
	char daemon_log_first[240];
};

/* "samepaged", "the floor" or "kernel KSM": who merges in a phase. */
const char *pv_merger_name(const struct pv_cfg *c);

/* Run one phase; false when it could not be measured (r->error says why).
 * k: the kernel's KSM (stopped, or set to the pace, here). */
bool pv_phase_run(const struct pv_cfg *c, sp_ksm *k, struct pv_result *r);

#endif
