/* SPDX-License-Identifier: MIT */
/*
 * The benchmarks' side-by-side tables: one row a measurement, two mergers,
 * their ratio and, for a target, PASS or FAIL against its limit.
 */
#ifndef SP_BENCH_TABLE_H
#define SP_BENCH_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

void tbl_row(const char *label, const char *a, const char *b, const char *ratio, const char *target);
/* v with printf format f, or "-" for a negative or non-finite value. */
void tbl_fmt(char *buf, size_t n, const char *f, double v);
/* A row of two numbers, with b/a when with_ratio. */
void tbl_num(const char *label, const char *f, double a, double b, bool with_ratio);
/* A target row: b/a compared with limit (at most or at least); true when
 * it passes. note, if not NULL, follows the verdict. */
bool tbl_target(const char *label, const char *f, double a, double b, bool at_most, double limit,
		const char *note);

/* The median of v[0..n-1], n > 0 (sorts v). */
double tbl_median(double *v, unsigned n);

double tbl_us(double ns);               /* ns to us, keeping -1 */
double tbl_per_s(double n, double secs); /* n / secs, or -1 */

/* "machine load average, phase start -> end" */
void tbl_load(double a_start, double a_end, double b_start, double b_end);

/* Convergence from run=1, for tbl_converge; times and CPU in seconds,
 * -1 where not reached. */
struct tbl_conv {
	double t90, t99, max_read_wait, cpu90, cpu99;
	double conv_cpu;             /* to 99 % or to the timeout */
};
/* Rows for it, with the target merger CPU to 99 % of at most 1x (a's CPU
 * until its timeout when a never got there). true when it passes. */
bool tbl_converge(const struct tbl_conv *a, const struct tbl_conv *b);

/* The savings at the end of a phase, for tbl_savings. */
struct tbl_saved {
	int64_t pages, possible;     /* pages_sharing + ksm_zero_pages; what a perfect merger saves */
	int64_t pss_drop, avail_rise;/* bytes */
};
/* Rows for them: the counters and the PSS drop, targets of at least
 * 0.95x, the machine's MemAvailable rise and the share of the possible.
 * Returns the targets failed. */
int tbl_savings(const struct tbl_saved *a, const struct tbl_saved *b);

/* Rows for a steady window of whole passes: merger CPU, full scans/s, and
 * the target CPU per full scan of at most 0.1x. true when it passes. */
bool tbl_steady(double a_cpu, double a_wall, int64_t a_scans, double b_cpu, double b_wall, int64_t b_scans);

/* "Linux 6.18 x86_64, CPU model, N CPUs, MemTotal G, load L" */
void tbl_machine(char *buf, size_t n);

#endif
