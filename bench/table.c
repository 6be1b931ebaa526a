/* SPDX-License-Identifier: MIT */
/*
 * Side-by-side tables of two mergers (see table.h).
 */
#include "table.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "probe.h"

void tbl_row(const char *label, const char *a, const char *b, const char *ratio, const char *target)
{
	printf("  %-46s %14s %14s %9s  %s\n", label, a, b, ratio, target);
}

void tbl_fmt(char *buf, size_t n, const char *f, double v)
{
	if (v < 0 || isnan(v) || isinf(v))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, f, v);
}

void tbl_num(const char *label, const char *f, double a, double b, bool with_ratio)
{
	char ab[32], bb[32], rb[32] = "";
	tbl_fmt(ab, sizeof(ab), f, a);
	tbl_fmt(bb, sizeof(bb), f, b);
	if (with_ratio && a > 0 && b >= 0)
		snprintf(rb, sizeof(rb), "%.2fx", b / a);
	tbl_row(label, ab, bb, rb, "");
}

bool tbl_target(const char *label, const char *f, double a, double b, bool at_most, double limit,
		const char *note)
{
	char ab[32], bb[32], rb[32] = "-", tb[160];
	tbl_fmt(ab, sizeof(ab), f, a);
	tbl_fmt(bb, sizeof(bb), f, b);
	bool pass = false;
	if (a > 0 && b >= 0) {
		double q = b / a;
		snprintf(rb, sizeof(rb), "%.2fx", q);
		pass = at_most ? q <= limit : q >= limit;
	} else if (a == 0 && b == 0) {
		pass = true;
	}
	snprintf(tb, sizeof(tb), "%s %s %.2fx%s%s", pass ? "PASS" : "FAIL", at_most ? "<=" : ">=", limit,
		 note ? ": " : "", note ? note : "");
	tbl_row(label, ab, bb, rb, tb);
	return pass;
}

double tbl_us(double ns)
{
	return ns < 0 ? -1 : ns / 1000;
}

double tbl_per_s(double n, double secs)
{
	return secs > 0 ? n / secs : -1;
}

#define MIB (1024.0 * 1024.0)

void tbl_load(double a_start, double a_end, double b_start, double b_end)
{
	char ab[48], bb[48];
	snprintf(ab, sizeof(ab), "%.2f -> %.2f", a_start, a_end);
	snprintf(bb, sizeof(bb), "%.2f -> %.2f", b_start, b_end);
	tbl_row("machine load average, phase start -> end", ab, bb, "", "");
}

bool tbl_converge(const struct tbl_conv *a, const struct tbl_conv *b)
{
	tbl_num("time to 90% of possible (s)", "%.2f", a->t90, b->t90, true);
	tbl_num("time to 99% of possible (s)", "%.2f", a->t99, b->t99, true);
	tbl_num("longest counter reading while converging (s)", "%.3f", a->max_read_wait, b->max_read_wait,
		false);
	tbl_num("merger CPU to 90% (s)", "%.3f", a->cpu90, b->cpu90, true);
	/* If a never got to 99 %, what it spent trying is the bar. */
	double acpu = a->cpu99 >= 0 ? a->cpu99 : a->conv_cpu;
	return tbl_target("merger CPU to 99% (s)", "%.3f", acpu, b->cpu99, true, 1.0,
			  a->cpu99 < 0 ? "kernel did not reach 99%" : NULL);
}

int tbl_savings(const struct tbl_saved *a, const struct tbl_saved *b)
{
	int fails = 0;
	fails += !tbl_target("saved at end: counters (MiB)", "%.1f", (double)a->pages * 4096 / MIB,
			     (double)b->pages * 4096 / MIB, false, 0.95, NULL);
	fails += !tbl_target("saved at end: PSS drop (MiB)", "%.1f", (double)a->pss_drop / MIB,
			     (double)b->pss_drop / MIB, false, 0.95, NULL);
	/* machine-wide, so it may move either way with everything else running */
	char ab[32], bb[32];
	snprintf(ab, sizeof(ab), "%.1f", (double)a->avail_rise / MIB);
	snprintf(bb, sizeof(bb), "%.1f", (double)b->avail_rise / MIB);
	tbl_row("saved at end: MemAvailable rise (MiB)", ab, bb, "", "");
	tbl_num("saved at end, % of possible", "%.1f", 100.0 * (double)a->pages / (double)a->possible,
		100.0 * (double)b->pages / (double)b->possible, false);
	return fails;
}

bool tbl_steady(double a_cpu, double a_wall, int64_t a_scans, double b_cpu, double b_wall, int64_t b_scans)
{
	tbl_num("steady, no changes: merger CPU (% of a CPU)", "%.2f", 100 * tbl_per_s(a_cpu, a_wall),
		100 * tbl_per_s(b_cpu, b_wall), true);
	tbl_num("steady, no changes: full scans/s", "%.3f", tbl_per_s((double)a_scans, a_wall),
		tbl_per_s((double)b_scans, b_wall), true);
	double app = a_scans > 0 ? 1000 * a_cpu / (double)a_scans : -1;
	double bpp = b_scans > 0 ? 1000 * b_cpu / (double)b_scans : -1;
	return tbl_target("steady, no changes: CPU per full scan (ms)", "%.3f", app, bpp, true, 0.10,
			  "same pass rate");
}

void tbl_machine(char *buf, size_t n)
{
	struct utsname u;
	uname(&u);
	char model[128] = "?", line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
			snprintf(model, sizeof(model), "%s", strchr(line, ':') + 2);
			model[strcspn(model, "\n")] = 0;
			break;
		}
	if (f)
		fclose(f);
	snprintf(buf, n, "Linux %s %s, %s, %ld CPUs, MemTotal %.1f GiB, load %.2f", u.release, u.machine, model,
		 sysconf(_SC_NPROCESSORS_ONLN),
		 (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024 * 1024),
		 probe_loadavg());
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double tbl_median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
