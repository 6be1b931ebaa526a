/* SPDX-License-Identifier: MIT */
/* Shared test helpers: running the CLI, the kernel KSM lock, knob restore. */
#ifndef SP_TEST_HELPERS_H
#define SP_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

#include <samepage.h>

/* Skip loudly: the runner prints the reason next to the test name. */
#define SKIP_BECAUSE(...)                                        \
	do {                                                     \
		print_message("# SKIP-REASON: " __VA_ARGS__);    \
		print_message("\n");                             \
		skip();                                          \
	} while (0)

#define KSM_DIR "/sys/kernel/mm/ksm"
#define NOBODY_UID 65534

struct cmd_result {
	int status;      /* exit code, or 128+signal */
	char *out;       /* stdout, NUL-terminated, malloc'ed */
	char *err;       /* stderr */
};

/* Path of a built program: $SAMEPAGE_BUILD/bin/<name>. */
const char *build_path(const char *rel);

/* Run argv (argv[0] is looked up with build_path when it has no '/').
 * env: extra "NAME=VALUE" strings (NULL-terminated) or NULL.
 * as_uid: run as that uid/gid (e.g. NOBODY_UID), or -1 to stay. */
int run_cmd(const char *const argv[], const char *const env[], int as_uid, struct cmd_result *res);
void cmd_result_free(struct cmd_result *res);

/* Same, formatted: run_samepage(&res, "set", "run=1", NULL). */
int run_samepage(struct cmd_result *res, ...);

/* Kernel KSM is one global resource: hold /run/merge-bench.lock while a
 * test changes it. Returns the fd (never fails; aborts the test). */
int ksm_lock(void);
void ksm_unlock(int fd);

/* xorshift64: reproducible pseudo-random numbers (state must not be 0). */
uint64_t test_rng(uint64_t *state);

bool ksm_present(void);
bool is_root(void);

/* Built with ThreadSanitizer (SAMEPAGE_SAN): its shadow of every page the
 * program touches is private anonymous memory, so PSS no longer shows
 * what merging saved, and everything runs several times slower. */
bool under_tsan(void);
/* A timeout in ms, stretched under a sanitizer. */
int san_ms(int ms);

/* Raw text of a KSM sysfs file (trailing newline removed); "" if absent. */
void ksm_read_text(const char *name, char *buf, size_t len);
int64_t ksm_read_num(const char *name);
int ksm_write(const char *name, const char *value);

/* Every writable knob's text, to compare before/after or to restore. */
#define KSM_MAX_KNOBS 16
struct ksm_knobs {
	int n;
	char name[KSM_MAX_KNOBS][48];
	char value[KSM_MAX_KNOBS][48];
};
void ksm_save(struct ksm_knobs *k);
/* Put every knob back (unmerging first if a knob needs it); asserts it worked. */
void ksm_restore(const struct ksm_knobs *k);
/* True when the current knobs equal the saved ones. */
bool ksm_same(const struct ksm_knobs *a, const struct ksm_knobs *b);

/* A child process holding `pages` pages of which every `distinct`-th
 * repeats (content = index % distinct), madvised MERGEABLE. */
struct dup_child {
	pid_t pid;
	int to_child;    /* write a byte to let it exit */
};
int dup_child_start(struct dup_child *c, size_t pages, size_t distinct);
void dup_child_stop(struct dup_child *c);

/* Wait until full_scans advanced by `scans` (ksmd must be running). */
bool ksm_wait_scans(int scans, int timeout_s);

/* The /proc/self/pagemap entry of a page, read after touching the page so
 * that it is present; 0 if it cannot be read (no assertion: forked
 * children use it too). */
uint64_t pagemap_entry(const void *addr);
/* The same without touching the page: what the page table holds now. */
uint64_t pagemap_peek(const void *addr);
#define PM_PFN(v) ((v) & ((1ull << 55) - 1))
#define PM_UFFD_WP(v) (((v) >> 57) & 1)
#define PM_FILE(v) (((v) >> 61) & 1)
#define PM_SWAP(v) (((v) >> 62) & 1)
#define PM_PRESENT(v) (((v) >> 63) & 1)

/* The number after "key:" in a /proc file such as /proc/meminfo or
 * /proc/self/smaps_rollup (kB there), or -1. */
long proc_kb(const char *path, const char *key);

/* Make a temporary directory; returns its malloc'ed path. */
char *make_tempdir(void);
void remove_tree(const char *path);

/* The whole of a file, malloc'd (fails the test if it cannot be read). */
char *read_whole_file(const char *path);
/* A file of the source tree ($SAMEPAGE_SRC), as a reader of the man page
 * would see the text: troff's "\-" and "\_" are plain characters. */
char *read_source_text(const char *rel);
/* Write a file, creating parent directories. */
void write_file_p(const char *path, const char *text);



/* Group fixtures for tests that change the kernel's KSM: take the lock and
 * save every knob; put them all back and unlock at the end. */
int ksm_group_setup(void **state);
int ksm_group_teardown(void **state);

/* Skip loudly unless this machine has KSM (and we are root, when asked). */
#define REQUIRE_KSM(need_root)                                                    \
	do {                                                                      \
		if (!ksm_present())                                               \
			SKIP_BECAUSE("this kernel has no KSM (" KSM_DIR " missing)"); \
		if ((need_root) && !is_root())                                    \
			SKIP_BECAUSE("changing kernel KSM needs root");           \
	} while (0)

/* Knobs that make ksmd scan a small test workload in well under a second. */
void ksm_fast_scan(void);
#endif
