/* SPDX-License-Identifier: MIT */
/* samepage get / set: read and change knobs with the kernel's rules. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETTINGS 64

int cmd_get(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_fail(c, EXIT_REFUSED, "no parameter named: samepage get NAME...");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		printf("Usage: samepage get NAME...\n");
		return EXIT_OK;
	}
	int code;
	sp_ksm *k = cli_open_ksm(c, true, &code);
	if (!k)
		return code;
	code = EXIT_OK;
	for (int i = 1; i < argc; i++) {
		int p = sp_param_lookup(argv[i]);
		if (p < 0) {
			code = cli_fail(c, EXIT_REFUSED, "unknown parameter '%s'", argv[i]);
			break;
		}
		int64_t v;
		int r = sp_ksm_read(k, p, &v);
		if (r) {
			code = cli_fail(c, r == -ENOENT ? EXIT_NOT_SUPPORTED : EXIT_FAILURE_RUNTIME,
					"%s: %s", argv[i],
					r == -ENOENT ? "this kernel lacks it" : sp_strerror(r));
			break;
		}
		char text[32];
		sp_param_format(p, v, text, sizeof(text));
		if (argc == 2)
			printf("%s\n", text);
		else
			printf("%s=%s\n", argv[i], text);
	}
	sp_ksm_close(k);
	return code;
}

int cmd_set(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "unmerge-first", no_argument, NULL, 'u' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned flags = 0;
	bool quiet = false;
	int o;
	while ((o = getopt_long(argc, argv, "nuqh", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			flags |= SP_SET_DRY_RUN;
			break;
		case 'u':
			flags |= SP_SET_UNMERGE_FIRST;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			printf("Usage: samepage set [--dry-run] [--unmerge-first] [--quiet] NAME=VALUE...\n");
			return EXIT_OK;
		default:
			return EXIT_REFUSED;
		}
	}
	int n = argc - optind;
	if (n <= 0)
		return cli_fail(c, EXIT_REFUSED, "nothing to set: give NAME=VALUE pairs");
	if (n > MAX_SETTINGS)
		return cli_fail(c, EXIT_REFUSED, "too many settings (at most %d)", MAX_SETTINGS);

	sp_setting set[MAX_SETTINGS];
	char *copies[MAX_SETTINGS] = { NULL };
	int code = EXIT_OK;
	for (int i = 0; i < n; i++) {
		const char *arg = argv[optind + i];
		const char *eq = strchr(arg, '=');
		if (!eq || eq == arg) {
			code = cli_fail(c, EXIT_REFUSED, "expected NAME=VALUE, got '%s'", arg);
			goto out;
		}
		copies[i] = strdup(arg);
		if (!copies[i]) {
			code = cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory");
			goto out;
		}
		copies[i][eq - arg] = 0;
		set[i].name = copies[i];
		set[i].value = copies[i] + (eq - arg) + 1;
	}

	sp_ksm *k = cli_open_ksm(c, true, &code);
	if (!k)
		goto out;
	int64_t before[SP_PARAM_COUNT];
	sp_sample s0;
	sp_ksm_sample(k, &s0);
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		before[p] = s0.value[p];

	sp_diag d;
	int r = sp_ksm_set(k, set, (size_t)n, flags, &d);
	if (r) {
		code = cli_fail(c, exit_code_for(r), "%s", d.msg);
	} else if (!quiet) {
		for (int i = 0; i < n; i++) {
			int p = sp_param_lookup(set[i].name);
			char was[32], now[32];
			int64_t v;
			sp_param_format(p, before[p], was, sizeof(was));
			if (flags & SP_SET_DRY_RUN) {
				sp_param_parse(p, set[i].value, &v, NULL);
				sp_param_format(p, v, now, sizeof(now));
				printf("%s: %s -> %s (dry run: not written)\n", sp_param_describe(p)->name, was, now);
			} else {
				int rr = sp_ksm_read(k, p, &v);
				if (rr == 0)
					sp_param_format(p, v, now, sizeof(now));
				else
					snprintf(now, sizeof(now), "(written; reading back failed: %s)",
						 sp_strerror(rr));
				printf("%s: %s -> %s\n", sp_param_describe(p)->name, was, now);
			}
		}
	}
	sp_ksm_close(k);
out:
	for (int i = 0; i < n; i++)
		free(copies[i]);
	return code;
}
