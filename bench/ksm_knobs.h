/* SPDX-License-Identifier: MIT */
/*
 * The benchmarks' handling of the kernel's KSM, a machine-wide resource:
 * the lock every program that changes it takes, saving and restoring
 * every knob, setting a pace, and checking that nobody else interfered.
 */
#ifndef SP_BENCH_KSM_KNOBS_H
#define SP_BENCH_KSM_KNOBS_H

#include <samepage.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define BENCH_LOCK_PATH "/run/merge-bench.lock"

/* Take /run/merge-bench.lock (waiting for it, saying so): the fd to keep
 * until the end, or -1. prog prefixes messages. */
int bench_lock_take(const char *prog);
void bench_lock_release(int fd);

/* Every knob as it was, to put back. */
struct ksm_saved {
	sp_setting set[SP_PARAM_COUNT];
	char val[SP_PARAM_COUNT][64];
	size_t n;
};

int ksm_knobs_save(sp_ksm *k, struct ksm_saved *sv);
/* run=2, then every saved knob (run last), then check them all. */
int ksm_knobs_restore(sp_ksm *k, const struct ksm_saved *sv, const char *prog);

/* The knobs a benchmark gives both mergers alike. */
struct ksm_pace {
	long pages_to_scan, sleep_ms;
	bool use_zero_pages, smart_scan;
	unsigned max_page_sharing;
};

/* The pace as settings (advisor_mode=none first), for sp_ksm_set,
 * sp_engine_set or sp_ctl_set; the strings live in out. */
struct ksm_pace_set {
	char pts[24], slp[24], mps[24];
	sp_setting set[6];
	size_t n;
};
void ksm_pace_settings(const struct ksm_pace *p, struct ksm_pace_set *out);

/* run=2 (stop ksmd, unmerge everything), warn if the kernel still counts
 * merged pages, then the pace's knobs unless p is NULL. */
int ksm_prepare(sp_ksm *k, const struct ksm_pace *p, const char *prog);

/* Warn about processes other than ours (pids) with mergeable memory:
 * ksmd's time and the kernel's counters would include them. */
void ksm_warn_other_users(sp_ksm *k, const pid_t *ours, size_t n, const char *prog);

/* During a kernel phase: are the knobs still p's with run=1, and are the
 * pages the kernel counts as merged those of our processes? false and why
 * when another program interfered. */
bool ksm_check_alone(sp_ksm *k, const struct ksm_pace *p, const pid_t *ours, size_t n, char *why,
		     size_t len);

#endif
