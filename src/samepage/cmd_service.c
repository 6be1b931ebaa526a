/* SPDX-License-Identifier: MIT */
/*
 * samepage start | stop | unmerge | service-status: the `ksm` service.
 * Exit codes of service-status follow the old ksm init script: 0 running,
 * 3 not running, 4 not supported.
 */
#include "cli.h"

#include <string.h>

static int service_status(struct cli *c)
{
	int code;
	sp_ksm *k = cli_open_ksm(c, false, &code);
	if (!k)
		return code;
	if (!sp_ksm_available(k)) {
		printf("ksm is not supported by this kernel\n");
		sp_ksm_close(k);
		return EXIT_NOT_SUPPORTED;
	}
	int64_t run = 0;
	int r = sp_ksm_read(k, SP_RUN, &run);
	sp_ksm_close(k);
	if (r)
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot read run: %s", sp_strerror(r));
	if (run == 1) {
		printf("ksm is running\n");
		return EXIT_OK;
	}
	printf("ksm is not running%s\n", run == 2 ? " (pages unmerged)" : "");
	return EXIT_NOT_RUNNING;
}

int cmd_service(struct cli *c, int argc, char **argv)
{
	if (argc > 1)
		return cli_fail(c, EXIT_REFUSED, "takes no arguments (got '%s')", argv[1]);
	if (strcmp(c->cmd, "service-status") == 0)
		return service_status(c);

	int run = strcmp(c->cmd, "start") == 0 ? 1 : strcmp(c->cmd, "stop") == 0 ? 0 : 2;
	int code;
	sp_ksm *k = cli_open_ksm(c, true, &code);
	if (!k)
		return code;
	sp_diag d;
	int r = sp_ksm_set_run(k, run, &d);
	int64_t sharing = 0;
	sp_ksm_read(k, SP_PAGES_SHARING, &sharing);
	sp_ksm_close(k);
	if (r)
		return cli_fail(c, exit_code_for(r), "%s", d.msg);
	if (run == 1)
		printf("ksm started (run=1)\n");
	else if (run == 0)
		printf("ksm stopped (run=0): %lld pages stay merged; `samepage unmerge` splits them\n",
		       (long long)sharing);
	else
		printf("ksm stopped and every page unmerged (run=2)\n");
	return EXIT_OK;
}
