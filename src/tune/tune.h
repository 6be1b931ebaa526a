/* SPDX-License-Identifier: MIT */
/*
 * The tuning policies shared by ksmtuned(8) and `samepage tune`:
 *  - config.c    /etc/ksmtuned.conf: shell-style VAR=value lines
 *  - classic.c   the original ksmtuned algorithm, as a pure function
 *  - adaptive.c  MemAvailable + PSI + profit per ksmd CPU-second, pure
 *  - host.c      what a policy reads about the host (/proc)
 *  - backend.h   the merging engine a policy drives (kernel KSM today)
 *  - tuner.c     one step: gather inputs, decide, apply
 * Uses only <samepage.h> and libc, like everything under src/.
 */
#ifndef SAMEPAGE_TUNE_H
#define SAMEPAGE_TUNE_H

#include <samepage.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TUNE_DEFAULT_CONFIG "/etc/ksmtuned.conf"
#define TUNE_DEFAULT_PIDFILE "/var/run/ksmtune.pid"   /* sic: the original's name */
/* Fedora/RHEL 7's pgrep pattern: qemu-kvm, qemu-system-*, libvirt's qemu:<name>. */
#define TUNE_DEFAULT_PATTERN "^qemu(-(kvm|system-.+)|:.{1,11})$"

/* ------------------------------------------------------------------------
 * Configuration
 * ---------------------------------------------------------------------- */

enum tune_policy { TUNE_CLASSIC = 0, TUNE_ADAPTIVE = 1 };
enum tune_metric { TUNE_RSZ = 0, TUNE_PSS = 1, TUNE_VSZ = 2 };
enum tune_advisor { TUNE_ADVISOR_AUTO = 0, TUNE_ADVISOR_YES = 1, TUNE_ADVISOR_NO = 2 };
enum tune_engine_kind { TUNE_ENGINE_KERNEL = 0, TUNE_ENGINE_USER = 1 };

/* Every variable, in the order of tune_vars[]. */
enum tune_var_id {
	TV_MONITOR_INTERVAL,
	TV_NPAGES_BOOST,
	TV_NPAGES_DECAY,
	TV_NPAGES_MIN,
	TV_NPAGES_MAX,
	TV_SLEEP_MSEC,
	TV_THRES_COEF,
	TV_THRES_CONST,
	TV_DEBUG,
	TV_LOGFILE,
	TV_PIDFILE,
	TV_POLICY,
	TV_PROCESS_PATTERN,
	TV_PS_METRIC,
	TV_ADAPTIVE_INTERVAL,
	TV_SCAN_TIME,
	TV_MAX_CPU,
	TV_PROFIT_MIN,
	TV_PSI_THRES,
	TV_REPROBE,
	TV_ADVISOR,
	TV_ENGINE,
	TV_ENGINE_SOCKET,
	TV_COUNT
};

#define TUNE_STR_MAX 512

struct tune_config {
	/* the original's variables */
	int64_t monitor_interval;   /* KSM_MONITOR_INTERVAL, seconds */
	int64_t npages_boost;       /* KSM_NPAGES_BOOST */
	int64_t npages_decay;       /* KSM_NPAGES_DECAY */
	int64_t npages_min;         /* KSM_NPAGES_MIN */
	int64_t npages_max;         /* KSM_NPAGES_MAX */
	int64_t sleep_msec;         /* KSM_SLEEP_MSEC, for a 16 GiB host */
	int64_t thres_coef;         /* KSM_THRES_COEF, percent of MemTotal */
	int64_t thres_const;        /* KSM_THRES_CONST, kB */
	char debug[TUNE_STR_MAX];   /* DEBUG: on when not empty (even "0", as in the shell) */
	char logfile[TUNE_STR_MAX]; /* LOGFILE: empty means standard output */
	char pidfile[TUNE_STR_MAX]; /* PIDFILE: empty means none */
	/* samepage's additions */
	enum tune_policy policy;    /* KSM_POLICY */
	char pattern[TUNE_STR_MAX]; /* KSM_PROCESS_PATTERN, extended regex on comm */
	enum tune_metric metric;    /* KSM_PS_METRIC */
	int64_t adaptive_interval;  /* KSM_ADAPTIVE_INTERVAL, seconds */
	int64_t scan_time;          /* KSM_SCAN_TIME, seconds per full scan while merging */
	int64_t max_cpu;            /* KSM_MAX_CPU, percent of one CPU */
	int64_t profit_min;         /* KSM_PROFIT_MIN, MiB per ksmd CPU-second */
	int64_t psi_thres;          /* KSM_PSI_THRES, percent (some avg10); 0 off */
	int64_t reprobe;            /* KSM_REPROBE, seconds; 0 never */
	enum tune_advisor advisor;  /* KSM_ADVISOR */
	enum tune_engine_kind engine;        /* KSM_ENGINE */
	char engine_socket[TUNE_STR_MAX];    /* KSM_ENGINE_SOCKET */
	/* where each value came from: 0 the default, else its line number */
	int line[TV_COUNT];
};

enum tune_var_kind { TVK_INT, TVK_STR, TVK_ENUM, TVK_REGEX };

struct tune_var {
	const char *name;
	enum tune_var_kind kind;
	int64_t min, max, def;       /* TVK_INT */
	const char *def_str;         /* TVK_STR/TVK_REGEX; TVK_ENUM: the default word */
	const char *const *words;    /* TVK_ENUM, NULL-terminated; index = value */
	const char *unit;            /* for messages and `samepage tune` */
	const char *policy;          /* "classic", "adaptive" or "both" */
	const char *help;
};

extern const struct tune_var tune_vars[TV_COUNT];

/* Index of a variable by name, or -1. */
int tune_var_lookup(const char *name);

/* The value of variable v as text ("300", "adaptive", "/var/log/ksmtuned"). */
void tune_var_format(const struct tune_config *c, int v, char *buf, size_t len);

/* Receives every problem found in a configuration: file, line (0 when the
 * whole file is concerned) and one sentence. */
typedef void (*tune_warn_fn)(void *ctx, const char *file, int line, const char *msg);

void tune_config_defaults(struct tune_config *c);

/* Parse configuration text in shell syntax. Every malformed line, unknown
 * variable, bad or out-of-range value is reported through warn and leaves
 * the variable as it was (its default unless an earlier line set it).
 * Returns the number of warnings. */
int tune_config_parse(struct tune_config *c, const char *file, const char *text,
		      tune_warn_fn warn, void *ctx);

/* Read and parse a file. Returns the number of warnings (>= 0), or a
 * negative errno when the file cannot be read (c is then unchanged). */
int tune_config_load(struct tune_config *c, const char *path, tune_warn_fn warn, void *ctx);

/* ------------------------------------------------------------------------
 * What the policies read
 * ---------------------------------------------------------------------- */

/* /proc/meminfo, kB. */
struct tune_meminfo {
	int64_t total, free, buffers, cached, available;
	bool have_available;
};

/* Parse /proc/meminfo text: 0, or -EINVAL without MemTotal. */
int tune_meminfo_parse(const char *text, struct tune_meminfo *out);

/* "some avg10=1.23 ..." of /proc/pressure/memory: 0 and *avg10, or -EINVAL. */
int tune_psi_parse(const char *text, double *avg10);

/* One process as a policy sees it. */
struct tune_proc {
	pid_t pid;
	uint64_t start;          /* starttime from /proc/<pid>/stat: tells a reused pid */
	char comm[32];
	int64_t kb;              /* classic: KSM_PS_METRIC of the process; adaptive: RssAnon */
	int64_t merging_pages;   /* ksm_merging_pages (adaptive) */
};

/* Counters and knobs of the engine, from the backend. */
struct tune_engine {
	bool present;            /* the engine exists (kernel: /sys/kernel/mm/ksm) */
	sp_sample s;
	double cpu_seconds;      /* the merging thread's CPU since it started; < 0 unknown */
	int64_t cpu_pid;         /* ksmd's pid: a new one means a new count */
	bool has_advisor;        /* advisor_mode exists */
};

struct tune_input {
	double now;                   /* CLOCK_MONOTONIC, seconds */
	struct tune_meminfo mem;
	double psi_some_avg10;        /* percent; < 0 when /proc/pressure/memory is absent */
	struct tune_proc *procs;      /* classic: matching KSM_PROCESS_PATTERN; adaptive: mergeable */
	size_t nprocs;
	size_t unreadable;            /* processes that could not be read */
	struct tune_engine eng;
	long page_size;
};

/* Value of a counter or knob, def when absent. */
int64_t tune_get(const struct tune_input *in, sp_param p, int64_t def);

/* ------------------------------------------------------------------------
 * Decisions
 * ---------------------------------------------------------------------- */

enum tune_action {
	TUNE_NOTHING = 0,  /* leave everything as it is */
	TUNE_STOP,         /* run=0: merged pages stay merged (never run=2) */
	TUNE_START,        /* write knobs, run=1 */
};

#define TUNE_MAX_WRITES 8
#define TUNE_MAX_BATCHES 3
#define TUNE_MAX_LOG 12
#define TUNE_LOG_LEN 256

/* One sp_ksm_set() call: applied in order, batch after batch, because
 * some writes must happen in separate transactions (advisor_min_pages_to_scan
 * before advisor_mode, which the library orders first). */
struct tune_batch {
	int n;
	char name[TUNE_MAX_WRITES][40];
	char value[TUNE_MAX_WRITES][24];
};

struct tune_decision {
	enum tune_action action;
	int nbatches;
	struct tune_batch batch[TUNE_MAX_BATCHES];
	char reason[TUNE_LOG_LEN];     /* one sentence: why */
	/* Debug messages, in the original's words for classic. The first
	 * log_before are logged before the writes, the rest after. */
	int nlog, log_before;
	char log[TUNE_MAX_LOG][TUNE_LOG_LEN];
	/* Computed values, for `samepage tune` and tests (kB unless said). */
	int64_t free, committed, total, thres, sleep, npages;
	bool pressure;
	double profit_rate;            /* adaptive: MiB per CPU-second of the last window; < 0 none */
};

/* Append a write "name=value" to batch b (0-based). */
void tune_decision_write(struct tune_decision *d, int b, const char *name, int64_t value);
void tune_decision_write_str(struct tune_decision *d, int b, const char *name, const char *value);
void tune_decision_log(struct tune_decision *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------------
 * The classic policy: the 2009 ksmtuned, exactly
 * ---------------------------------------------------------------------- */

struct classic_state {
	int64_t total;     /* MemTotal at start-up, kB */
	int64_t sleep;     /* computed once: KSM_SLEEP_MSEC * 16 GiB / total, at least 10 */
	int64_t thres;     /* computed once: total * KSM_THRES_COEF / 100, at least KSM_THRES_CONST */
	int64_t npages;    /* persists across stop/start, starts at 0 */
};

/* Start-up: what the original computes before its loop. Logs "total N",
 * "sleep N", "thres N" into d when d is not NULL. */
void classic_init(const struct tune_config *c, int64_t memtotal_kb, struct classic_state *st,
		  struct tune_decision *d);

/* One adjust(): free = MemFree+Buffers+Cached, committed = sum of kb of
 * in->procs. Pure: reads only c, st and in; updates st->npages. */
void classic_step(const struct tune_config *c, struct classic_state *st,
		  const struct tune_input *in, struct tune_decision *d);

/* ------------------------------------------------------------------------
 * The adaptive policy
 * ---------------------------------------------------------------------- */

enum adaptive_phase { AP_IDLE = 0, AP_MERGING, AP_SUSTAINED };

struct adaptive_seen {
	pid_t pid;
	uint64_t start;
};

#define ADAPTIVE_MAX_SEEN 1024

struct adaptive_state {
	bool started;                 /* false before the first step */
	enum adaptive_phase phase;
	bool was_pressure;
	bool stopped_unprofitable;    /* the last stop was for lack of profit */
	/* processes with mergeable memory seen so far */
	size_t nseen;
	struct adaptive_seen seen[ADAPTIVE_MAX_SEEN];
	int64_t base_kb;              /* mergeable kB when scanning last started or stopped */
	/* the current scanning episode */
	double since;                 /* when it started */
	int64_t start_full_scans;
	int64_t npages;               /* pages_to_scan we chose */
	int64_t sleep;                /* sleep_millisecs we chose */
	/* the last window: from the step where full_scans last changed */
	double w_time, w_cpu;
	int64_t w_full_scans, w_profit, w_scanned;
	int64_t w_cpu_pid;
	double last_rate;             /* MiB per CPU-second of the last window, < 0 none */
	/* probing after a stop */
	double next_probe;
	int64_t backoff;              /* seconds */
};

void adaptive_init(struct adaptive_state *st);

/* One step. Pure: reads c, st and in; updates st. */
void adaptive_step(const struct tune_config *c, struct adaptive_state *st,
		   const struct tune_input *in, struct tune_decision *d);

/* The threshold both policies use, kB: max(total * coef / 100, const). */
int64_t tune_thres(const struct tune_config *c, int64_t total_kb);
/* The classic sleep: sleep_msec * 16 GiB / total, at least 10. */
int64_t tune_sleep(const struct tune_config *c, int64_t total_kb);

#endif
