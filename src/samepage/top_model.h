/* SPDX-License-Identifier: MIT */
/* samepage top: what is on the screen, apart from the screen. */
#ifndef SAMEPAGE_TOP_MODEL_H
#define SAMEPAGE_TOP_MODEL_H

#include "cli.h"

#define TOP_HISTORY 512

/* The last TOP_HISTORY values of one quantity, oldest first. */
struct top_ring {
	double v[TOP_HISTORY];
	size_t n, next;
};

void top_ring_push(struct top_ring *r, double v);
/* The i-th of the last `count` values (i = 0 is the oldest of them). */
double top_ring_get(const struct top_ring *r, size_t count, size_t i);

/* One refresh. Rates are since the previous one; < 0 when unknown (first
 * refresh, a counter the source lacks, a restarted daemon). */
struct top_frame {
	bool ok;
	char error[200];          /* why !ok */
	double t;                 /* CLOCK_MONOTONIC seconds */
	sp_sample s;
	sp_savings sav;
	double cpu_seconds;       /* the merger's CPU so far, < 0 unknown */
	pid_t merger_pid;         /* ksmd, or samepaged; 0 unknown */
	sp_proc_ksm *procs;       /* by profit, largest first */
	size_t nprocs, unreadable;
	double scans_per_s, pages_per_s, cpu_percent, cow_per_s;
};

struct top_model {
	bool user;                /* samepaged instead of kernel KSM */
	sp_ksm *ksm;
	sp_ctl *ctl;              /* reconnected when the daemon goes away */
	struct top_frame cur, prev;
	struct top_ring saved, pages, cpu, cow;
};

/* 0, or an exit code after a message (no KSM, no daemon). */
int top_model_open(struct top_model *m, const struct cli *c, bool user);
/* Take a new frame and push the histories. */
void top_model_refresh(struct top_model *m);
void top_model_close(struct top_model *m);

#endif
