/* SPDX-License-Identifier: MIT */
/*
 * samepage run -- CMD: run a program with all its memory mergeable, by the
 * kernel's KSM (PR_SET_MEMORY_MERGE) or, with --user-engine, by the
 * user-space engine through the preload library and samepaged.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
	"Usage: samepage run [--quiet] [--user-engine [--madvise-only]] [--] COMMAND [ARGS]\n";

/* libsamepage-preload.so next to our own library: PREFIX/bin/samepage ->
 * PREFIX/lib/libsamepage-preload.so (also in the build tree). */
static int preload_path(char *buf, size_t len)
{
	const char *env = getenv("SAMEPAGE_PRELOAD_LIB");
	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return access(buf, R_OK) == 0 ? 0 : -errno;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -errno;
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return -ENOENT;
	*slash = 0;
	snprintf(buf, len, "%s/../lib/libsamepage-preload.so", exe);
	return access(buf, R_OK) == 0 ? 0 : -errno;
}

static int run_user_engine(struct cli *c, char **cmd, bool quiet, bool madvise_only)
{
	char lib[PATH_MAX];
	int r = preload_path(lib, sizeof(lib));
	if (r)
		return cli_fail(c, EXIT_FAILURE_RUNTIME,
				"cannot find libsamepage-preload.so (%s): is samepage installed whole? "
				"SAMEPAGE_PRELOAD_LIB may name it", sp_strerror(r));
	/* Keep whatever the user preloads already, ahead of us: a sanitizer's
	 * runtime must come first, and our wrappers find the next definition
	 * with RTLD_NEXT whatever the order. */
	const char *old = getenv("LD_PRELOAD");
	char *pre = malloc(strlen(lib) + (old ? strlen(old) : 0) + 2);
	if (!pre)
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory");
	sprintf(pre, "%s%s%s", old && *old ? old : "", old && *old ? ":" : "", lib);
	setenv("LD_PRELOAD", pre, 1);
	free(pre);
	if (!madvise_only)
		setenv("SAMEPAGE_MERGE_ANY", "1", 1);
	sp_ctl *ctl;
	if (sp_ctl_open(NULL, &ctl) == 0) {
		sp_ctl_close(ctl);
	} else if (!quiet) {
		char path[108];
		sp_socket_path(false, path, sizeof(path));
		cli_note(c, "no samepaged serves %s yet: start it (`samepaged &`); the program merges once it runs",
			 path);
	}
	execvp(cmd[0], cmd);
	int e = errno;
	return cli_fail(c, e == ENOENT ? 127 : 126, "cannot run '%s': %s", cmd[0], strerror(e));
}

int cmd_run(struct cli *c, int argc, char **argv)
{
	int first = 1;
	bool quiet = false, user = false, madvise_only = false;
	while (first < argc && argv[first][0] == '-') {
		if (strcmp(argv[first], "--") == 0) {
			first++;
			break;
		}
		if (strcmp(argv[first], "-q") == 0 || strcmp(argv[first], "--quiet") == 0) {
			quiet = true;
		} else if (strcmp(argv[first], "--user-engine") == 0) {
			user = true;
		} else if (strcmp(argv[first], "--madvise-only") == 0) {
			madvise_only = true;
		} else if (strcmp(argv[first], "-h") == 0 || strcmp(argv[first], "--help") == 0) {
			fputs(usage, stdout);
			return EXIT_OK;
		} else {
			return cli_fail(c, EXIT_REFUSED, "unknown option '%s'", argv[first]);
		}
		first++;
	}
	if (first >= argc)
		return cli_fail(c, EXIT_REFUSED, "no command given: samepage run -- COMMAND [ARGS]");
	if (madvise_only && !user)
		return cli_fail(c, EXIT_REFUSED, "--madvise-only goes with --user-engine");
	if (user)
		return run_user_engine(c, argv + first, quiet, madvise_only);

	int code;
	sp_ksm *k = cli_open_ksm(c, true, &code);
	if (!k)
		return code;
	int64_t run = 0;
	sp_ksm_read(k, SP_RUN, &run);
	sp_ksm_close(k);

	int r = sp_ksm_merge_any(true);
	if (r == -EINVAL)
		return cli_fail(c, EXIT_NOT_SUPPORTED,
				"this kernel cannot make a whole process mergeable (PR_SET_MEMORY_MERGE needs "
				"Linux 6.4 or newer); programs can still opt in with madvise(MADV_MERGEABLE)");
	if (r)
		return cli_fail(c, exit_code_for(r), "prctl(PR_SET_MEMORY_MERGE): %s", sp_strerror(r));
	if (run != 1 && !quiet)
		cli_note(c, "ksmd is not running (run=%lld): nothing merges until `samepage start`",
			 (long long)run);
	execvp(argv[first], argv + first);
	int e = errno;
	return cli_fail(c, e == ENOENT ? 127 : 126, "cannot run '%s': %s", argv[first], strerror(e));
}
