/* SPDX-License-Identifier: MIT */
/* samepage estimate: the results shared by the command and its reports. */
#ifndef SAMEPAGE_ESTIMATE_H
#define SAMEPAGE_ESTIMATE_H

#include "cli.h"
#include "estimate_scan.h"

struct est_proc {
	pid_t pid;
	uid_t uid;
	char comm[64];
	int err;               /* 0, or why the last sample could not read it */
	int err_sample;        /* which sample failed */
	struct est_counts c[2];/* one per sample */
};

struct est_result {
	struct est_proc *procs;  /* ascending PID: the order of counting */
	size_t n;
	bool selected_all;       /* --all or --uid: permission errors are summarised */
	int samples;             /* 1 or 2 */
	double interval;         /* seconds between the samples' starts */
	long page_size;
	bool all_private;
	uint64_t min_kb;
	/* the whole run */
	uint64_t pages_read;     /* every sample */
	double scan_seconds;     /* reading and counting, without the wait */
	uint64_t distinct;       /* distinct non-zero contents, last sample */
	size_t table_bytes, scanner_bytes;
};

/* Sums over the processes read in the last sample. */
struct est_total {
	size_t processes;
	struct est_counts c;
	uint64_t stable_zero;
};

/* A process's numbers in the last sample; false if it was not read. */
bool est_final(const struct est_result *r, const struct est_proc *p, struct est_counts *c,
	       uint64_t *stable_zero);
void est_totals(const struct est_result *r, struct est_total *t);
const char *est_error_text(const struct est_proc *p, char *buf, size_t len);

void est_print_json(const struct est_result *r);
/* Per-process errors on stderr (the expected ones of --all only counted). */
void est_print_errors(const struct est_result *r);
void est_print_human(const struct est_result *r);

#endif
