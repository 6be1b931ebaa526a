/* SPDX-License-Identifier: MIT */
/*
 * samepage record: the merger's counters over time, one CSV line per
 * sample, flushed at once so a recording cut short is still readable.
 * `samepage plot` draws it. Columns are documented in samepage(8).
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
	"Usage: samepage record [--interval SECONDS] [--duration SECONDS | --count N]\n"
	"                       [--engine kernel|user] FILE\n";

/* The counters, in the order of the columns after time and unix_time. */
static const sp_param columns[] = {
	SP_PAGES_SHARED, SP_PAGES_SHARING, SP_PAGES_UNSHARED, SP_PAGES_VOLATILE,
	SP_KSM_ZERO_PAGES, SP_GENERAL_PROFIT, SP_FULL_SCANS,
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

struct rec_args {
	double interval, duration;
	long count;          /* 0: no limit */
	bool user;
	const char *file;
};

#define MAX_SECONDS (86400.0 * 366)

static int parse_args(const struct cli *c, int argc, char **argv, struct rec_args *a, bool *help)
{
	static const struct option opts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "duration", required_argument, NULL, 'd' },
		{ "count", required_argument, NULL, 'n' },
		{ "engine", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	memset(a, 0, sizeof(*a));
	a->interval = 1.0;
	int o;
	while ((o = getopt_long(argc, argv, "i:d:n:e:h", opts, NULL)) != -1) {
		switch (o) {
		case 'i':
			if (cli_seconds_arg(c, "--interval", optarg, 0.01, MAX_SECONDS, &a->interval))
				return EXIT_REFUSED;
			break;
		case 'd':
			if (cli_seconds_arg(c, "--duration", optarg, 0.001, MAX_SECONDS, &a->duration))
				return EXIT_REFUSED;
			break;
		case 'n': {
			char *end;
			errno = 0;
			a->count = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || a->count < 1)
				return cli_fail(c, EXIT_REFUSED, "--count takes a number of samples from 1, not '%s'",
						optarg);
			break;
		}
		case 'e':
			if (cli_engine_arg(c, optarg, &a->user))
				return EXIT_REFUSED;
			break;
		case 'h':
			*help = true;
			return 0;
		default:
			fputs(usage, stderr);
			return EXIT_REFUSED;
		}
	}
	if (a->duration > 0 && a->count > 0)
		return cli_fail(c, EXIT_REFUSED, "give --duration or --count, not both");
	if (optind >= argc)
		return cli_fail(c, EXIT_REFUSED, "which file? Give FILE (or - for standard output)");
	if (optind + 1 < argc)
		return cli_fail(c, EXIT_REFUSED, "unexpected argument '%s'", argv[optind + 1]);
	a->file = argv[optind];
	return 0;
}

/* The source of samples: the kernel, or the user's samepaged. */
struct source {
	sp_ksm *k;
	sp_ctl *ctl;
};

/* One sample and the merger's CPU seconds (NAN when not known). */
static int sample(struct source *src, sp_sample *s, double *cpu)
{
	*cpu = NAN;
	if (src->ctl) {
		int r = sp_ctl_sample(src->ctl, s);
		sp_ctl_info info;
		if (!r && sp_ctl_info_get(src->ctl, &info) == 0)
			*cpu = info.cpu_seconds;  /* the domain's engine threads */
		return r;
	}
	int r = sp_ksm_sample(src->k, s);
	sp_ksmd_info kd;
	if (!r && sp_ksmd_info_read(src->k, &kd) == 0)
		*cpu = kd.cpu_seconds;
	return r;
}

static void put_param(FILE *f, const sp_sample *s, sp_param p)
{
	int64_t v;
	if (sp_sample_get(s, p, &v) == 0)
		fprintf(f, ",%lld", (long long)v);
	else
		fputs(",", f);  /* this kernel lacks it */
}

static void write_row(FILE *f, double t, const sp_sample *s, double cpu)
{
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	sp_savings sav;
	sp_savings_compute(s, &sav);
	fprintf(f, "%.3f,%.3f", t, (double)wall.tv_sec + (double)wall.tv_nsec / 1e9);
	for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++)
		put_param(f, s, columns[i]);
	fprintf(f, ",%lld", (long long)sav.saved_bytes);
	if (isnan(cpu))
		fputs(",", f);
	else
		fprintf(f, ",%.2f", cpu);
	put_param(f, s, SP_COW_KSM);
	fputc('\n', f);
	fflush(f);
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int record(const struct cli *c, const struct rec_args *a, struct source *src, FILE *f)
{
	fputs("time,unix_time", f);
	for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++)
		fprintf(f, ",%s", sp_param_describe(columns[i])->name);
	fputs(",saved_bytes,cpu_seconds,cow_ksm\n", f);
	fflush(f);
	double start = mono();
	for (long k = 0; !stop_signal; k++) {
		double due = start + (double)k * a->interval;
		if ((a->count && k >= a->count) || (a->duration > 0 && due - start > a->duration + 1e-6))
			break;
		/* absolute deadlines: the samples do not drift */
		struct timespec ts = { (time_t)due, (long)((due - floor(due)) * 1e9) };
		if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
			k--;
			continue;
		}
		sp_sample s;
		double cpu;
		int r = sample(src, &s, &cpu);
		if (r)
			return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot read the counters: %s", sp_strerror(r));
		write_row(f, mono() - start, &s, cpu);
		if (ferror(f))
			return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot write %s: %s", a->file, strerror(errno));
	}
	return EXIT_OK;
}

int cmd_record(struct cli *c, int argc, char **argv)
{
	struct rec_args a;
	bool help = false;
	int code = parse_args(c, argc, argv, &a, &help);
	if (code)
		return code;
	if (help) {
		fputs(usage, stdout);
		return EXIT_OK;
	}
	struct source src = { 0 };
	if (a.user)
		src.ctl = cli_open_ctl(c, NULL, 0, &code);
	else
		src.k = cli_open_ksm(c, true, &code);
	if (!src.ctl && !src.k)
		return code;
	bool out = strcmp(a.file, "-") == 0;
	FILE *f = out ? stdout : fopen(a.file, "we");
	if (!f) {
		int e = errno;  /* a path that cannot be written is the caller's to fix */
		code = cli_fail(c, EXIT_REFUSED, "cannot create %s: %s", a.file, strerror(e));
	} else {
		struct sigaction sa = { .sa_handler = on_signal };  /* no SA_RESTART: stop the sleep */
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		code = record(c, &a, &src, f);
		if (!out && fclose(f) && !code)
			code = cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot write %s: %s", a.file, strerror(errno));
	}
	if (src.ctl)
		sp_ctl_close(src.ctl);
	if (src.k)
		sp_ksm_close(src.k);
	return code;
}
