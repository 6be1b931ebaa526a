/* SPDX-License-Identifier: MIT */
/*
 * The merging engine a policy drives. A policy only reads counters and
 * knobs (with the kernel's names) and writes knobs, so the same policy can
 * drive either engine:
 *
 *   kernel      backend_kernel.c: /sys/kernel/mm/ksm, ksmd's CPU from
 *               /proc, mergeable processes from /proc/<pid>/ksm_stat.
 *   user space  backend_user.c: samepaged's control socket (sp_ctl_*):
 *               the daemon's aggregated sample, cpu_seconds = its clients'
 *               engine threads plus the daemon, mergeable = its clients.
 *               Chosen with KSM_ENGINE=user.
 */
#ifndef SAMEPAGE_TUNE_BACKEND_H
#define SAMEPAGE_TUNE_BACKEND_H

#include "tune.h"

#include <regex.h>

struct tune_backend {
	const char *name;
	void *ctx;
	/* Every knob and counter, and the merging thread's CPU. */
	int (*read)(struct tune_backend *b, struct tune_engine *out);
	/* Processes with mergeable memory (kb = resident anonymous memory in
	 * their mergeable areas, or RssAnon when that cannot be read);
	 * *out is malloc'ed. */
	int (*mergeable)(struct tune_backend *b, struct tune_proc **out, size_t *n, size_t *unreadable);
	/* Validate, then write, like sp_ksm_set(). */
	int (*set)(struct tune_backend *b, const sp_setting *set, size_t n, sp_diag *d);
	void (*close)(struct tune_backend *b);
};

/* root: NULL for this machine, or a recorded tree. */
int tune_backend_kernel_open(const char *root, struct tune_backend **out);
/* socket NULL or "": the user's daemon, else the system one. A daemon
 * that is not running reads as an absent engine. */
int tune_backend_user_open(const char *socket, struct tune_backend **out);

/* Host files under root (NULL or "" for /). */
int tune_read_meminfo(const char *root, struct tune_meminfo *out);
int tune_read_psi(const char *root, double *avg10);
/* Processes whose name (comm) matches the compiled pattern, with their
 * metric in kB; *out is malloc'ed. */
int tune_scan_pattern(const char *root, const regex_t *re, enum tune_metric metric,
		      struct tune_proc **out, size_t *n, size_t *unreadable);
/* RssAnon (kB) and start time of one process. */
int tune_proc_anon(const char *root, pid_t pid, int64_t *anon_kb, uint64_t *start);

#endif
