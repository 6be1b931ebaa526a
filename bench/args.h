/* SPDX-License-Identifier: MIT */
/*
 * Option values of the benchmarks: sizes with K/M/G suffixes, shares as
 * fractions or percentages, bounded numbers. Each returns false for a
 * value that is not entirely valid.
 */
#ifndef SP_BENCH_ARGS_H
#define SP_BENCH_ARGS_H

#include <stdbool.h>
#include <stddef.h>

/* "256M", "1.5G", "64MiB", "4096K": in pages of 4 KiB, at least one. */
bool arg_size(const char *s, size_t *pages);
/* "0.6" or "60%": 0..1. */
bool arg_share(const char *s, double *out);
/* A number in [lo, hi]. */
bool arg_num(const char *s, double lo, double hi, double *out);
/* "throttled", "unthrottled" or both, comma-separated: run[0], run[1]. */
bool arg_paces(const char *s, bool run[2]);
/* The workload's shares (enum wl_class) made whole: unique pages take
 * what the others leave unless given; false (said on stderr, after prog)
 * when they do not add up to 1. */
bool arg_shares_finish(double *share, bool unique_given, const char *prog);

#endif
