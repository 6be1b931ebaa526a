/* SPDX-License-Identifier: MIT */
/* samepage run -- CMD: run a program with all its memory mergeable. */
#include "cli.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int cmd_run(struct cli *c, int argc, char **argv)
{
	int first = 1;
	bool quiet = false;
	while (first < argc && argv[first][0] == '-') {
		if (strcmp(argv[first], "--") == 0) {
			first++;
			break;
		}
		if (strcmp(argv[first], "-q") == 0 || strcmp(argv[first], "--quiet") == 0) {
			quiet = true;
			first++;
			continue;
		}
		if (strcmp(argv[first], "-h") == 0 || strcmp(argv[first], "--help") == 0) {
			printf("Usage: samepage run [--quiet] [--] COMMAND [ARGS]\n");
			return EXIT_OK;
		}
		return cli_fail(c, EXIT_REFUSED, "unknown option '%s'", argv[first]);
	}
	if (first >= argc)
		return cli_fail(c, EXIT_REFUSED, "no command given: samepage run -- COMMAND [ARGS]");

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
