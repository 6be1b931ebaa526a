/* SPDX-License-Identifier: MIT */
/* samepage: control, tuning and insight for same-page merging. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"Usage: samepage [--root DIR] COMMAND [ARGS]\n"
	"\n"
	"Kernel KSM (/sys/kernel/mm/ksm):\n"
	"  status [--json] [--interval MS]   every knob and counter, savings, ksmd CPU\n"
	"  get NAME...                       print knob or counter values\n"
	"  set [--dry-run] [--unmerge-first] NAME=VALUE...\n"
	"                                    validate, then change knobs (root)\n"
	"  start | stop | unmerge            the ksm service: run=1 / run=0 / run=2 (root)\n"
	"  service-status                    exit 0 running, 3 not running, 4 not supported\n"
	"  ps [--json] [--bytes]             processes with KSM activity, by profit\n"
	"  run [--] COMMAND [ARGS]           run COMMAND with all its memory mergeable\n"
	"  tune --dry-run [--policy classic|adaptive] [--config FILE] [--json]\n"
	"                                    what ksmtuned's policy would do now, and why\n"
	"  check [--json] [--interval MS] [--only NAME,...]\n"
	"                                    check this host against the KSM advice: exit 0 OK,\n"
	"                                    1 warnings, 2 failures\n"
	"  top [--interval S] [--engine kernel|user]\n"
	"                                    live view: savings, scan rate, CPU, top processes\n"
	"  exporter [--listen ADDR:PORT] [--engine kernel|user|both] [--max-processes N]\n"
	"                                    Prometheus metrics over HTTP, in the foreground\n"
	"  estimate [PID... | --all | --uid USER] [--json] [--interval S] [--min-kb N]\n"
	"                                    what merging would save, read from processes' memory\n"
	"  record [--interval S] [--duration S | --count N] [--engine kernel|user] FILE\n"
	"                                    counters over time into a CSV file\n"
	"  plot FILE -o OUT.svg              chart of a recording: saved memory, CPU, COW breaks\n"
	"\n"
	"Options:\n"
	"  --root DIR     read a recorded copy of /sys and /proc under DIR\n"
	"  -h, --help     this text\n"
	"  -V, --version  program and library versions\n"
	"\n"
	"Exit codes: 0 success, 1 failure, 2 bad input or refused, 3 not running,\n"
	"4 not supported by this kernel. See samepage(8).\n";

struct command {
	const char *name;
	int (*fn)(struct cli *c, int argc, char **argv);
};

static const struct command commands[] = {
	{ "status", cmd_status },
	{ "get", cmd_get },
	{ "set", cmd_set },
	{ "start", cmd_service },
	{ "stop", cmd_service },
	{ "unmerge", cmd_service },
	{ "service-status", cmd_service },
	{ "ps", cmd_ps },
	{ "run", cmd_run },
	{ "tune", cmd_tune },
	{ "check", cmd_check },
	{ "exporter", cmd_exporter },
	{ "top", cmd_top },
	{ "estimate", cmd_estimate },
	{ "record", cmd_record },
	{ "plot", cmd_plot },
};

int main(int argc, char **argv)
{
	struct cli c = { .root = getenv("SAMEPAGE_ROOT"), .cmd = NULL };
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	/* '+': stop at the subcommand; its options are its own. */
	while ((o = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
		switch (o) {
		case 'r':
			c.root = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return EXIT_OK;
		case 'V':
			printf("samepage %s (libsamepage %s)\n", SAMEPAGE_CLI_VERSION, sp_version());
			return EXIT_OK;
		default:
			fputs(usage_text, stderr);
			return EXIT_REFUSED;
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return EXIT_REFUSED;
	}
	const char *name = argv[optind];
	if (strcmp(name, "help") == 0) {
		fputs(usage_text, stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(name, commands[i].name) == 0) {
			c.cmd = name;
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;
			/* getopt's own messages then read "samepage set: ..." */
			static char prog[64];
			snprintf(prog, sizeof(prog), "samepage %s", name);
			sub_argv[0] = prog;
			optind = 0;  /* 0, not 1: forget the '+' mode of the main option string */
			return commands[i].fn(&c, sub_argc, sub_argv);
		}
	}
	fprintf(stderr, "samepage: unknown command '%s'\n\n%s", name, usage_text);
	return EXIT_REFUSED;
}
