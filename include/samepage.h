/* SPDX-License-Identifier: MIT */
/*
 * samepage: same-page merging for Linux.
 *
 * This is the only header a user of libsamepage needs. Conventions:
 *  - every function that can fail returns 0 (or a count) on success and a
 *    negative errno on failure; errno itself is never relied upon;
 *  - handles are opaque and created/destroyed by the library;
 *  - parameters and counters keep the names and meanings of the kernel's
 *    /sys/kernel/mm/ksm files, so whoever knows KSM knows samepage.
 */
#ifndef SAMEPAGE_H
#define SAMEPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SP_API __attribute__((visibility("default")))

#define SAMEPAGE_VERSION_MAJOR 0
#define SAMEPAGE_VERSION_MINOR 1
#define SAMEPAGE_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH". */
SP_API const char *sp_version(void);

/* A short English description of a negative errno returned by this API. */
SP_API const char *sp_strerror(int err);

/* Why the last call of this thread into the user-space engine failed, in
 * words ("0x7f..-0x7f.. is shared memory"), or "" if it did not say. */
SP_API const char *sp_last_error(void);

/* ------------------------------------------------------------------------
 * Parameters: every knob and counter, with the kernel's names
 * ---------------------------------------------------------------------- */

/* Stable numbering: new entries are only ever added before SP_PARAM_COUNT. */
typedef enum sp_param {
	/* knobs (read-write in the kernel) */
	SP_RUN = 0,
	SP_PAGES_TO_SCAN,
	SP_SLEEP_MILLISECS,
	SP_MERGE_ACROSS_NODES,
	SP_USE_ZERO_PAGES,
	SP_MAX_PAGE_SHARING,
	SP_STABLE_NODE_CHAINS_PRUNE_MILLISECS,
	SP_SMART_SCAN,
	SP_ADVISOR_MODE,
	SP_ADVISOR_MAX_CPU,
	SP_ADVISOR_MIN_PAGES_TO_SCAN,
	SP_ADVISOR_MAX_PAGES_TO_SCAN,
	SP_ADVISOR_TARGET_SCAN_TIME,
	/* counters (read-only) */
	SP_PAGES_SHARED,
	SP_PAGES_SHARING,
	SP_PAGES_UNSHARED,
	SP_PAGES_VOLATILE,
	SP_PAGES_SCANNED,
	SP_PAGES_SKIPPED,
	SP_FULL_SCANS,
	SP_STABLE_NODE_CHAINS,
	SP_STABLE_NODE_DUPS,
	SP_KSM_ZERO_PAGES,
	SP_GENERAL_PROFIT,
	/* event counters from /proc/vmstat */
	SP_COW_KSM,
	SP_KSM_SWPIN_COPY,
	/* user-space engine only */
	SP_PAGES_SKIPPED_MAX_MAP_COUNT,
	SP_PARAM_COUNT
} sp_param;

/* Upper bound of SP_PARAM_COUNT for all future versions (sizes sp_sample). */
#define SP_PARAM_MAX 64

enum sp_param_flags {
	SP_PF_KNOB = 1u << 0,            /* writable tunable */
	SP_PF_COUNTER = 1u << 1,         /* read-only statistic */
	SP_PF_VMSTAT = 1u << 2,          /* lives in /proc/vmstat, not sysfs */
	SP_PF_BOOL = 1u << 3,            /* 0 or 1 */
	SP_PF_ADVISOR = 1u << 4,         /* advisor_mode: 0 "none", 1 "scan-time" */
	SP_PF_SIGNED = 1u << 5,          /* may be negative (general_profit) */
	SP_PF_NEEDS_UNMERGED = 1u << 6,  /* changing it needs pages_shared == 0 (EBUSY) */
	SP_PF_NEEDS_NO_ADVISOR = 1u << 7,/* refused (EINVAL) while advisor_mode=scan-time */
	SP_PF_NUMA = 1u << 8,            /* only present with CONFIG_NUMA */
	SP_PF_STRICTER = 1u << 9,        /* samepage's range is narrower than the kernel's */
	SP_PF_ENGINE = 1u << 10,         /* only the user-space engine has it */
};

typedef struct sp_param_info {
	const char *name;      /* the kernel's file name */
	unsigned flags;        /* enum sp_param_flags */
	int64_t min, max;      /* accepted range for knobs */
	int64_t def;           /* the kernel's default for knobs */
	const char *since;     /* first kernel release that has it */
	const char *help;      /* one line */
} sp_param_info;

/* Description of a parameter, or NULL if p is out of range. */
SP_API const sp_param_info *sp_param_describe(sp_param p);

/* Parameter by kernel name or libvirt alias (shm_pages_to_scan,
 * shm_sleep_millisecs, shm_merge_across_nodes, ...). Returns the sp_param
 * (>= 0) or -ENOENT. */
SP_API int sp_param_lookup(const char *name);

/* Diagnostic filled in by calls that validate user input. */
typedef struct sp_diag {
	int err;          /* negative errno, 0 if fine */
	int index;        /* which input (for list calls), -1 if none */
	int param;        /* sp_param concerned, -1 if none */
	char msg[320];    /* full sentence for a human */
} sp_diag;

/* Parse a value for knob p with the kernel's rules (decimal, optional '+',
 * range; bool knobs also take y/n/on/off/true/false; advisor_mode takes
 * "none"/"scan-time"). Returns 0 and *out, or -EINVAL/-ERANGE/-EPERM
 * (counters are read-only) with d->msg explaining. d may be NULL. */
SP_API int sp_param_parse(sp_param p, const char *text, int64_t *out, sp_diag *d);

/* Text of a value as the kernel shows it ("none"/"scan-time" for advisor_mode). */
SP_API int sp_param_format(sp_param p, int64_t v, char *buf, size_t len);

/* One reading of every parameter. */
typedef struct sp_sample {
	uint64_t present;              /* bit p set when parameter p was read */
	int64_t value[SP_PARAM_MAX];
	int64_t when_ns;               /* CLOCK_MONOTONIC of the reading */
	long page_size;
} sp_sample;

/* Value of p in s: 0 and *out, or -ENOENT if this kernel lacks it. */
SP_API int sp_sample_get(const sp_sample *s, sp_param p, int64_t *out);

/* What merging saves and costs, derived from one sample. */
typedef struct sp_savings {
	int64_t saved_bytes;     /* (pages_sharing + ksm_zero_pages) x page size */
	int64_t profit_bytes;    /* general_profit (estimated on kernels < 6.4) */
	int64_t metadata_bytes;  /* saved_bytes - profit_bytes: rmap items */
	double sharing_ratio;    /* pages_sharing / pages_shared, 0 if none shared */
	double unshared_ratio;   /* pages_unshared / pages_sharing, 0 if none */
	bool profit_estimated;   /* general_profit absent: estimated from counts */
} sp_savings;

SP_API void sp_savings_compute(const sp_sample *s, sp_savings *out);

/* ------------------------------------------------------------------------
 * The kernel engine: /sys/kernel/mm/ksm, /proc/vmstat, /proc/<pid>/ksm_stat
 * ---------------------------------------------------------------------- */

typedef struct sp_ksm sp_ksm;

/* Open a view of the kernel's KSM. root is NULL (or "/") for this machine,
 * or a directory holding a recorded copy (sys/kernel/mm/ksm, proc/...).
 * Succeeds even when the kernel has no KSM: see sp_ksm_available(). */
SP_API int sp_ksm_open(const char *root, sp_ksm **out);
SP_API void sp_ksm_close(sp_ksm *k);

/* True when the kernel has KSM (the sysfs directory exists). */
SP_API bool sp_ksm_available(const sp_ksm *k);

/* The sysfs directory this handle reads. */
SP_API const char *sp_ksm_sysfs_dir(const sp_ksm *k);

/* Read one parameter: 0 and *out; -ENOENT if this kernel lacks it,
 * -ENODEV without KSM, -EIO if the file holds something unexpected. */
SP_API int sp_ksm_read(sp_ksm *k, sp_param p, int64_t *out);

/* Read every parameter the kernel has. -ENODEV without KSM. */
SP_API int sp_ksm_sample(sp_ksm *k, sp_sample *out);

typedef struct sp_setting {
	const char *name;    /* kernel name or alias */
	const char *value;
} sp_setting;

enum sp_set_flags {
	SP_SET_DRY_RUN = 1u << 0,        /* validate only */
	SP_SET_UNMERGE_FIRST = 1u << 1,  /* run=2 before knobs that need it, then restore run */
};

/* Validate every setting against the kernel's rules and the current state,
 * then write them all, in an order that satisfies the rules (advisor_mode
 * before pages_to_scan, run last). Writes nothing if any setting is bad.
 * If a write fails midway, what was written is put back.
 * Returns 0 or a negative errno, with d describing the first problem:
 *   -ENOENT unknown name, -EOPNOTSUPP knob absent from this kernel, -EINVAL/-ERANGE
 *   bad value, -EPERM read-only counter, -EBUSY needs unmerging first,
 *   -EACCES not allowed to write (needs root), -ENODEV no KSM. */
SP_API int sp_ksm_set(sp_ksm *k, const sp_setting *set, size_t n,
		      unsigned flags, sp_diag *d);

/* Convenience: set run to 0, 1 or 2. */
SP_API int sp_ksm_set_run(sp_ksm *k, int run, sp_diag *d);

/* ksmd, the kernel's merging thread. */
typedef struct sp_ksmd_info {
	pid_t pid;
	char state;              /* from /proc/<pid>/stat: 'S', 'R', 'D'... */
	double cpu_seconds;      /* user + system time since boot */
	double age_seconds;      /* time since ksmd started */
} sp_ksmd_info;

/* -ESRCH if no ksmd thread is found. */
SP_API int sp_ksmd_info_read(sp_ksm *k, sp_ksmd_info *out);

/* One process's /proc/<pid>/ksm_stat. Numbers a kernel does not report are
 * 0 (ksm_process_profit is computed with the kernel's formula before 6.4);
 * the yes/no fields a kernel lacks are -1. uid is (uid_t)-1 if unknown. */
typedef struct sp_proc_ksm {
	pid_t pid;
	uid_t uid;
	char comm[32];
	int64_t ksm_rmap_items;
	int64_t ksm_zero_pages;
	int64_t ksm_merging_pages;
	int64_t ksm_process_profit;
	int ksm_merge_any;       /* 1 yes, 0 no, -1 not reported */
	int ksm_mergeable;       /* 1 yes, 0 no, -1 not reported */
} sp_proc_ksm;

/* -ENOENT no such process (or no ksm_stat), -EACCES not allowed to read it. */
SP_API int sp_proc_ksm_read(sp_ksm *k, pid_t pid, sp_proc_ksm *out);

/* True when the process has anything to do with KSM. */
SP_API bool sp_proc_ksm_active(const sp_proc_ksm *p);

/* Every process with KSM activity, sorted by profit (largest first).
 * *out is malloc'ed (free() it); *unreadable counts processes whose
 * ksm_stat could not be read (other users' processes when not root). */
SP_API int sp_proc_ksm_list(sp_ksm *k, sp_proc_ksm **out, size_t *n,
			    size_t *unreadable);

/* Make all present and future private anonymous memory of the calling
 * process mergeable (prctl PR_SET_MEMORY_MERGE, Linux 6.4+); survives
 * fork and exec. -EINVAL when the kernel does not support it. */
SP_API int sp_ksm_merge_any(bool enable);

/* 1 or 0, or -EINVAL when the kernel does not support it. */
SP_API int sp_ksm_merge_any_get(void);

/* ------------------------------------------------------------------------
 * The user-space engine: merging without kernel KSM and without root
 *
 * Identical 4 KiB pages of registered private anonymous memory come to
 * share one physical page, copy on write, with the kernel's knobs and
 * counters (sp_engine_set / sp_engine_sample take the same names).
 *
 * What it requires of the caller (see libsamepage(3), "MERGED MEMORY"):
 * merged pages are private mappings of the engine's store, so memory that
 * is registered must be released and reshaped through sp_madvise(),
 * sp_munmap(), sp_mprotect(), sp_mremap() and sp_mmap() (or the preload
 * library), not the raw system calls, while the engine exists.
 * ---------------------------------------------------------------------- */

typedef struct sp_engine sp_engine;

enum sp_engine_flags {
	SP_ENGINE_CHECKSUM = 1u << 0,  /* use the kernel's two-pass checksum rule
					  even where write tracking is available */
	SP_ENGINE_MANUAL = 1u << 1,    /* no scanner thread: call sp_engine_scan() */
	SP_ENGINE_SHARED = 1u << 2,    /* merge with the other processes of this
					  user's trust domain, through samepaged;
					  the daemon paces and owns the knobs */
};

/* Create an engine for this process. run starts at 0, like the kernel's.
 * -ENOSYS/-EPERM when userfaultfd is unavailable. */
SP_API int sp_engine_new(unsigned flags, sp_engine **out);

/* Stop the scanner, put every merged page back as private memory where
 * memory allows, and release the engine. Returns 0, or -ENOMEM when some
 * pages had to stay merged (they keep correct contents). */
SP_API int sp_engine_free(sp_engine *e);

/* Like madvise(2) on registered memory:
 *   MADV_MERGEABLE    register [addr, addr+len) (page-aligned, private
 *                     anonymous): -EINVAL for unaligned, shared, file-backed,
 *                     hugetlb, locked memory or memory owned by another
 *                     userfaultfd; -ENOMEM for unmapped gaps;
 *   MADV_UNMERGEABLE  unmerge and unregister; -EAGAIN/-ENOMEM when memory
 *                     for the private copies is lacking (nothing is lost);
 *   MADV_DONTNEED, MADV_FREE, MADV_REMOVE
 *                     keep their meaning on merged pages (zeros afterwards);
 *   anything else     passed to madvise(2). */
SP_API int sp_madvise(sp_engine *e, void *addr, size_t len, int advice);

/* munmap/mprotect/mremap/mmap that keep the engine's view right. sp_mremap and
 * sp_mmap return 0 and the address in *out, or a negative errno. */
SP_API int sp_munmap(sp_engine *e, void *addr, size_t len);
SP_API int sp_mprotect(sp_engine *e, void *addr, size_t len, int prot);
SP_API int sp_mremap(sp_engine *e, void *old_addr, size_t old_len, size_t new_len, int flags,
		     void *new_addr, void **out);
SP_API int sp_mmap(sp_engine *e, void *addr, size_t len, int prot, int flags, int fd, off_t off,
		   void **out);

/* True while the calling thread is inside the engine (holding its lock):
 * an interposer of mmap/munmap/madvise must then pass calls straight to
 * the kernel, or the engine would wait for itself. */
SP_API bool sp_in_engine(void);

/* "Merge any" like PR_SET_MEMORY_MERGE: every private anonymous mapping of
 * at least min_bytes is registered now and at each full scan. */
SP_API int sp_engine_merge_any(sp_engine *e, bool enable, size_t min_bytes);

/* Knobs by the kernel's names and rules (run, pages_to_scan, ...).
 * Same contract as sp_ksm_set(). */
SP_API int sp_engine_set(sp_engine *e, const sp_setting *set, size_t n, unsigned flags, sp_diag *d);

/* Every knob and counter, kernel names; general_profit uses this engine's
 * real metadata cost. */
SP_API int sp_engine_sample(sp_engine *e, sp_sample *out);

/* This process's ksm_stat, as the kernel would show it. */
SP_API int sp_engine_stat(sp_engine *e, sp_proc_ksm *out);

/* Run one batch of pages_to_scan pages now in the calling thread; returns
 * the pages visited. With run=0 it does nothing and returns 0. */
SP_API int sp_engine_scan(sp_engine *e);

/* Wait until full_scans has advanced by scans: 0, or -ETIMEDOUT. */
SP_API int sp_engine_wait_scans(sp_engine *e, unsigned scans, int timeout_ms);

typedef struct sp_engine_info {
	const char *change_detection;  /* "write-tracking" or "checksum" */
	bool user_mode_only;           /* system calls writing a frozen page may see EFAULT */
	int vmas;                      /* VMAs of this process (last count) */
	int max_map_count;             /* vm.max_map_count */
	size_t registered_pages;
	double cpu_seconds;            /* CPU time of the engine's thread so far */
} sp_engine_info;

SP_API int sp_engine_info_get(sp_engine *e, sp_engine_info *out);

/* ------------------------------------------------------------------------
 * samepaged: merging across the processes of a trust domain
 * ---------------------------------------------------------------------- */

/* The daemon's socket: system-wide (/run/samepage/samepaged.sock) or this
 * user's ($SAMEPAGE_SOCKET, else $XDG_RUNTIME_DIR/samepage/samepaged.sock,
 * else /tmp/samepage-UID/samepaged.sock). */
SP_API int sp_socket_path(bool system, char *buf, size_t len);

typedef struct sp_daemon sp_daemon;

typedef struct sp_daemon_config {
	const char *socket;    /* NULL: sp_socket_path(system) */
	bool system;           /* serve every user, one trust domain per uid */
	bool stopped;          /* start with run=0 (the default is run=1) */
	int verbose;           /* 0 quiet, 1 connections and errors, 2 more */
} sp_daemon_config;

/* Listen (the socket's directory is created private to the user);
 * -EADDRINUSE if a daemon already serves that socket. */
SP_API int sp_daemon_new(const sp_daemon_config *cfg, sp_daemon **out);
/* Serve until sp_daemon_stop() (which may be called from a signal handler). */
SP_API int sp_daemon_run(sp_daemon *d);
SP_API void sp_daemon_stop(sp_daemon *d);
SP_API void sp_daemon_free(sp_daemon *d);
SP_API const char *sp_daemon_socket(const sp_daemon *d);

/* Control of a daemon: the knobs and counters of the caller's trust domain. */
typedef struct sp_ctl sp_ctl;

/* socket NULL: the user's daemon, else the system one. -ENOENT/-ECONNREFUSED
 * when none runs. */
SP_API int sp_ctl_open(const char *socket, sp_ctl **out);
SP_API void sp_ctl_close(sp_ctl *c);
SP_API int sp_ctl_sample(sp_ctl *c, sp_sample *out);
/* Same rules as sp_ksm_set(); on a system daemon only root may change knobs. */
SP_API int sp_ctl_set(sp_ctl *c, const sp_setting *set, size_t n, unsigned flags, sp_diag *d);
/* The domain's client processes with their counters (free() *out). */
SP_API int sp_ctl_processes(sp_ctl *c, sp_proc_ksm **out, size_t *n);

typedef struct sp_ctl_info {
	pid_t daemon_pid;
	uint64_t epoch;              /* changes with every daemon start */
	unsigned clients;            /* the domain's client processes */
	/* Merging CPU of the domain: its clients' engine threads, reported
	 * after each grant (clients that left included). */
	double cpu_seconds;
	double daemon_cpu_seconds;   /* the daemon process itself, all domains */
} sp_ctl_info;

SP_API int sp_ctl_info_get(sp_ctl *c, sp_ctl_info *out);

#ifdef __cplusplus
}
#endif
#endif /* SAMEPAGE_H */
