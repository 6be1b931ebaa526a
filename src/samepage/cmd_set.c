/* SPDX-License-Identifier: MIT */
/* samepage get / set: read and change knobs with the kernel's rules. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETTINGS 64

/* The values of every parameter, from the kernel or from samepaged. */
struct source {
	sp_ksm *k;
	sp_ctl *ctl;
	sp_sample s;
};

static int source_open(struct cli *c, bool user, bool need_ksm, struct source *src)
{
	int code = EXIT_OK;
	memset(src, 0, sizeof(*src));
	if (user) {
		src->ctl = cli_open_ctl(c, NULL, 0, &code);
		if (src->ctl && sp_ctl_sample(src->ctl, &src->s) != 0) {
			sp_ctl_close(src->ctl);
			src->ctl = NULL;
			code = cli_fail(c, EXIT_FAILURE_RUNTIME, "samepaged did not answer");
		}
		return src->ctl ? EXIT_OK : code;
	}
	src->k = cli_open_ksm(c, need_ksm, &code);
	return src->k ? EXIT_OK : code;
}

static int source_read(struct source *src, int p, int64_t *v)
{
	if (src->ctl)
		return sp_sample_get(&src->s, p, v);
	return sp_ksm_read(src->k, p, v);
}

static void source_close(struct source *src)
{
	sp_ksm_close(src->k);
	sp_ctl_close(src->ctl);
}

int cmd_get(struct cli *c, int argc, char **argv)
{
	bool user = false;
	int first = 1;
	while (first < argc && argv[first][0] == '-') {
		if (strcmp(argv[first], "-h") == 0 || strcmp(argv[first], "--help") == 0) {
			printf("Usage: samepage get [--engine kernel|user] NAME...\n");
			return EXIT_OK;
		}
		if (strcmp(argv[first], "--engine") == 0 && first + 1 < argc) {
			if (cli_engine_arg(c, argv[first + 1], &user))
				return EXIT_REFUSED;
			first += 2;
			continue;
		}
		return cli_fail(c, EXIT_REFUSED, "unknown option '%s'", argv[first]);
	}
	if (first >= argc)
		return cli_fail(c, EXIT_REFUSED, "no parameter named: samepage get NAME...");
	struct source src;
	int code = source_open(c, user, true, &src);
	if (code)
		return code;
	for (int i = first; i < argc; i++) {
		int p = sp_param_lookup(argv[i]);
		if (p < 0) {
			code = cli_fail(c, EXIT_REFUSED, "unknown parameter '%s'", argv[i]);
			break;
		}
		int64_t v;
		int r = source_read(&src, p, &v);
		if (r) {
			code = cli_fail(c, r == -ENOENT ? EXIT_NOT_SUPPORTED : EXIT_FAILURE_RUNTIME,
					"%s: %s", argv[i],
					r == -ENOENT ? (user ? "the user-space engine lacks it" : "this kernel lacks it")
						     : sp_strerror(r));
			break;
		}
		char text[32];
		sp_param_format(p, v, text, sizeof(text));
		if (argc - first == 1)
			printf("%s\n", text);
		else
			printf("%s=%s\n", argv[i], text);
	}
	source_close(&src);
	return code;
}

int cmd_set(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "unmerge-first", no_argument, NULL, 'u' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "engine", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned flags = 0;
	bool quiet = false, user = false;
	int o;
	while ((o = getopt_long(argc, argv, "nuqe:h", opts, NULL)) != -1) {
		switch (o) {
		case 'e':
			if (cli_engine_arg(c, optarg, &user))
				return EXIT_REFUSED;
			break;
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
			printf("Usage: samepage set [--dry-run] [--unmerge-first] [--quiet] [--engine kernel|user] NAME=VALUE...\n");
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

	struct source src;
	code = source_open(c, user, true, &src);
	if (code)
		goto out;
	int64_t before[SP_PARAM_COUNT];
	sp_sample s0;
	if (user)
		s0 = src.s;
	else
		sp_ksm_sample(src.k, &s0);
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		before[p] = s0.value[p];

	sp_diag d;
	int r = user ? sp_ctl_set(src.ctl, set, (size_t)n, flags, &d) : sp_ksm_set(src.k, set, (size_t)n, flags, &d);
	if (!r && user)
		sp_ctl_sample(src.ctl, &src.s);
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
				int rr = source_read(&src, p, &v);
				if (rr == 0)
					sp_param_format(p, v, now, sizeof(now));
				else
					snprintf(now, sizeof(now), "(written; reading back failed: %s)",
						 sp_strerror(rr));
				printf("%s: %s -> %s\n", sp_param_describe(p)->name, was, now);
			}
		}
	}
	source_close(&src);
out:
	for (int i = 0; i < n; i++)
		free(copies[i]);
	return code;
}
