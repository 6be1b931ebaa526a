/* SPDX-License-Identifier: MIT */
/* The samepage command: shared declarations. Uses only <samepage.h>. */
#ifndef SAMEPAGE_CLI_H
#define SAMEPAGE_CLI_H

#include <samepage.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SAMEPAGE_CLI_VERSION "0.1.0"

/* Exit codes, documented in samepage(8). 3 and 4 follow the old ksm init
 * script's status codes. */
enum {
	EXIT_OK = 0,
	EXIT_FAILURE_RUNTIME = 1,  /* something failed that was not the user's input */
	EXIT_REFUSED = 2,          /* bad usage, bad value, refused by the rules or permissions */
	EXIT_NOT_RUNNING = 3,      /* service-status: ksm is not running */
	EXIT_NOT_SUPPORTED = 4,    /* the kernel lacks KSM or the feature */
};

struct cli {
	const char *root;   /* --root: a recorded tree instead of this machine */
	const char *cmd;    /* the subcommand, for messages */
};

/* "samepage: <cmd>: <message>" on stderr; returns code. */
int cli_fail(const struct cli *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void cli_note(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Open the kernel view; prints the error and returns NULL on failure.
 * With need_ksm, a kernel without KSM is reported (exit code in *code). */
sp_ksm *cli_open_ksm(const struct cli *c, bool need_ksm, int *code);

/* A number of seconds in [min, max] for option opt: 0, or an exit code
 * after a message. */
int cli_seconds_arg(const struct cli *c, const char *opt, const char *arg, double min, double max,
		    double *out);

/* --engine kernel|user: 0, or an exit code after a message. */
int cli_engine_arg(const struct cli *c, const char *arg, bool *user);

/* Connect to the user's samepaged (path receives its socket); prints the
 * error and sets *code (3: not running) on failure. */
sp_ctl *cli_open_ctl(const struct cli *c, char *path, size_t len, int *code);

/* A process name is whatever bytes a program chose (newlines, escapes):
 * for tables and screens, printable ASCII only, others as '?'. */
void printable_comm(const char *comm, char *out, size_t len);

/* "117.7 MiB", "-3.0 KiB", "512 B". */
void human_bytes(int64_t bytes, char *buf, size_t len);

/* Sort processes by ksm_process_profit, largest first (then by pid), as
 * sp_proc_ksm_list() returns them; samepaged's lists come unsorted. */
void proc_sort_by_profit(sp_proc_ksm *list, size_t n);

/* Exit code for an sp_ksm_set()-style failure. */
int exit_code_for(int err);

int cmd_status(struct cli *c, int argc, char **argv);
int cmd_set(struct cli *c, int argc, char **argv);
int cmd_get(struct cli *c, int argc, char **argv);
int cmd_service(struct cli *c, int argc, char **argv);
int cmd_ps(struct cli *c, int argc, char **argv);
int cmd_run(struct cli *c, int argc, char **argv);
int cmd_tune(struct cli *c, int argc, char **argv);
int cmd_check(struct cli *c, int argc, char **argv);
int cmd_exporter(struct cli *c, int argc, char **argv);
int cmd_top(struct cli *c, int argc, char **argv);
int cmd_estimate(struct cli *c, int argc, char **argv);
int cmd_record(struct cli *c, int argc, char **argv);
int cmd_plot(struct cli *c, int argc, char **argv);

#endif
