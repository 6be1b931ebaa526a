/* SPDX-License-Identifier: MIT */
/*
 * samepage check: what the check files share. Every check is one function
 * filling one check_result from a check_ctx; every file it reads is looked
 * up under ctx->root, so a recorded /proc and /sys tree stands for a host.
 */
#ifndef SAMEPAGE_CHECK_H
#define SAMEPAGE_CHECK_H

#include "cli.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Ordered by severity: the worst status decides the exit code. */
enum check_status { CK_OK = 0, CK_SKIP, CK_WARN, CK_FAIL };

struct check_result {
	enum check_status status;
	char value[320];   /* what was measured */
	char reason[768];  /* why this status, one line */
	char fix[320];     /* the command that fixes it; "" when nothing to fix */
};

/* What /proc/<pid>/smaps says about memory KSM cannot or should not merge. */
struct smaps_sum {
	int64_t shared_bytes;         /* VMAs with "sh" in VmFlags (MAP_SHARED, writable) */
	int64_t hugetlb_bytes;        /* VMAs with "ht" (hugetlbfs) */
	int64_t mergeable_thp_bytes;  /* AnonHugePages inside "mg" (VM_MERGEABLE) VMAs */
};

/* A process with KSM activity, as sp_proc_ksm_list() found it. */
struct check_proc {
	sp_proc_ksm p;
	uid_t uid;           /* effective uid from status, else the owner of /proc/<pid> */
	int smaps_err;       /* 1 not read yet, 0 read, negative errno */
	struct smaps_sum sm;
};

struct check_ctx {
	const char *root;    /* "" for this machine */
	bool live;           /* this machine: system calls and rates may be measured */
	long interval_ms;    /* --interval */
	long page_size;
	sp_ksm *k;
	bool ksm;            /* the kernel has KSM */
	bool have_sample;
	sp_sample s;
	int procs_err;       /* sp_proc_ksm_list() failure, 0 if fine */
	struct check_proc *procs;
	size_t nprocs, unreadable;
	/* /proc/meminfo in bytes, -1 when not found */
	int64_t mem_total, swap_total, committed_as;
};

/* "<root><abs>"; -ENAMETOOLONG if it does not fit. */
int ck_path(const struct check_ctx *c, const char *abs, char *buf, size_t len);
/* Whole file (NUL-terminated, truncated to len-1): bytes read or -errno. */
ssize_t ck_read(const struct check_ctx *c, const char *abs, char *buf, size_t len);
/* First decimal integer of a file: 0 or -errno (-EIO if not a number). */
int ck_read_i64(const struct check_ctx *c, const char *abs, int64_t *out);
/* A KSM parameter from the sample; dflt when absent. */
int64_t ck_param(const struct check_ctx *c, sp_param p, int64_t dflt);
bool ck_has_param(const struct check_ctx *c, sp_param p);
/* " (N processes unreadable[: run as root to see them])", or "" when n is 0. */
const char *ck_unreadable(size_t n, const char *what, char *buf, size_t len);
/* Reads the process's smaps once; 0 or -errno. */
int ck_proc_smaps(struct check_ctx *c, struct check_proc *p);

void ck_set(struct check_result *r, enum check_status st, const char *value_fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ck_reason(struct check_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ck_fix(struct check_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The checks, in table order (check_ksm.c, check_host.c). */
void check_ksm_available(struct check_ctx *c, struct check_result *r);
void check_ksm_running(struct check_ctx *c, struct check_result *r);
void check_scan_defaults(struct check_ctx *c, struct check_result *r);
void check_ksmd_cpu(struct check_ctx *c, struct check_result *r);
void check_rmap_ratio(struct check_ctx *c, struct check_result *r);
void check_numa_merge(struct check_ctx *c, struct check_result *r);
void check_swap_committed(struct check_ctx *c, struct check_result *r);
void check_thp(struct check_ctx *c, struct check_result *r);
void check_unmergeable_memory(struct check_ctx *c, struct check_result *r);
void check_cross_user(struct check_ctx *c, struct check_result *r);
void check_max_map_count(struct check_ctx *c, struct check_result *r);
void check_userfaultfd(struct check_ctx *c, struct check_result *r);

#endif
