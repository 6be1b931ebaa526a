/* SPDX-License-Identifier: MIT */
/*
 * samepage plot: a recording of `samepage record` as an SVG chart of the
 * memory saved, the merger's CPU and the COW breaks over time. The CSV is
 * checked strictly (same columns on every line, numbers, time going
 * forward): a chart of a damaged file would mislead.
 */
#include "cli.h"
#include "plot.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLUMNS 64
#define MAX_FILE (256u << 20)

struct table {
	char *names[MAX_COLUMNS];
	size_t ncol, nrow, cap;
	double *v;               /* nrow x ncol, NAN where empty */
};

static double cell(const struct table *t, size_t row, int col)
{
	return col < 0 ? NAN : t->v[row * t->ncol + (size_t)col];
}

static int column(const struct table *t, const char *name)
{
	for (size_t i = 0; i < t->ncol; i++)
		if (strcmp(t->names[i], name) == 0)
			return (int)i;
	return -1;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->ncol; i++)
		free(t->names[i]);
	free(t->v);
}

/* Split a line at commas in place; returns the number of fields or -1. */
static int split(char *line, char **out, int max)
{
	int n = 0;
	for (char *p = line;; p++) {
		if (n == max)
			return -1;
		out[n++] = p;
		p += strcspn(p, ",");
		if (!*p)
			return n;
		*p = 0;
	}
}

static bool name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static int parse_row(const struct cli *c, const char *file, size_t lineno, char **f, struct table *t)
{
	if (t->nrow == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		double *v = realloc(t->v, cap * t->ncol * sizeof(double));
		if (!v)
			return cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory");
		t->v = v;
		t->cap = cap;
	}
	double *row = &t->v[t->nrow * t->ncol];
	for (size_t i = 0; i < t->ncol; i++) {
		char *end;
		row[i] = NAN;
		if (!*f[i])
			continue;  /* not recorded (a kernel without the counter) */
		errno = 0;
		row[i] = strtod(f[i], &end);
		if (errno || *end || !isfinite(row[i]))
			return cli_fail(c, EXIT_REFUSED, "%s:%zu: %s is not a number: '%s'", file, lineno,
					t->names[i], f[i]);
	}
	int tc = column(t, "time");
	if (isnan(row[tc]))
		return cli_fail(c, EXIT_REFUSED, "%s:%zu: the time is missing", file, lineno);
	if (t->nrow > 0 && !(row[tc] > cell(t, t->nrow - 1, tc)))
		return cli_fail(c, EXIT_REFUSED, "%s:%zu: time %g does not come after %g", file, lineno, row[tc],
				cell(t, t->nrow - 1, tc));
	t->nrow++;
	return 0;
}

/* The header names the columns; every other line is one sample. */
static int parse_csv(const struct cli *c, const char *file, char *text, struct table *t)
{
	size_t lineno = 0;
	char *save = NULL, *fields[MAX_COLUMNS + 1];
	for (char *line = text; line; line = save) {
		save = strchr(line, '\n');
		if (save)
			*save++ = 0;
		lineno++;
		line[strcspn(line, "\r")] = 0;
		if (!*line || *line == '#')
			continue;
		int n = split(line, fields, MAX_COLUMNS + 1);
		if (t->ncol == 0) {
			for (int i = 0; i < n; i++)
				if (!name_ok(fields[i]))
					return cli_fail(c, EXIT_REFUSED,
							"%s:%zu: not a header of samepage record: '%s' is not a column name",
							file, lineno, fields[i]);
			if (n < 0 || n > MAX_COLUMNS)
				return cli_fail(c, EXIT_REFUSED, "%s:%zu: more than %d columns", file, lineno,
						MAX_COLUMNS);
			for (int i = 0; i < n; i++)
				t->names[t->ncol++] = strdup(fields[i]);
			if (column(t, "time") < 0)
				return cli_fail(c, EXIT_REFUSED, "%s:%zu: the header has no time column", file, lineno);
			continue;
		}
		if (n != (int)t->ncol)
			return cli_fail(c, EXIT_REFUSED, "%s:%zu: %d fields where the header has %zu", file, lineno,
					n < 0 ? MAX_COLUMNS + 1 : n, t->ncol);
		int r = parse_row(c, file, lineno, fields, t);
		if (r)
			return r;
	}
	if (t->ncol == 0)
		return cli_fail(c, EXIT_REFUSED, "%s is empty: no header, no samples", file);
	if (t->nrow == 0)
		return cli_fail(c, EXIT_REFUSED, "%s has a header but no samples", file);
	return 0;
}

static char *slurp(const struct cli *c, const char *file, int *code)
{
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "re");
	if (!f) {
		int e = errno;
		*code = cli_fail(c, EXIT_REFUSED, "cannot read %s: %s", file, strerror(e));
		return NULL;
	}
	size_t len = 0, cap = 65536;
	char *s = malloc(cap);
	while (s) {
		len += fread(s + len, 1, cap - len - 1, f);
		if (len < cap - 1 || cap >= MAX_FILE)
			break;
		char *ns = realloc(s, cap *= 2);
		if (!ns)
			free(s);
		s = ns;
	}
	bool bad = ferror(f), big = s && len >= cap - 1;
	if (f != stdin)
		fclose(f);
	if (!s || bad || big) {
		*code = !s ? cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory")
			   : cli_fail(c, EXIT_REFUSED, big ? "%s is too large for a recording" : "cannot read %s", file);
		free(s);
		return NULL;
	}
	s[len] = 0;
	if (strlen(s) != len) {
		*code = cli_fail(c, EXIT_REFUSED, "%s is not text (it holds NUL bytes)", file);
		free(s);
		return NULL;
	}
	return s;
}

/* Rate per second of a cumulative column, at the end of each interval. */
static void rate(const struct table *t, int tc, int col, double factor, double *out)
{
	out[0] = NAN;
	for (size_t i = 1; i < t->nrow; i++) {
		double dv = cell(t, i, col) - cell(t, i - 1, col), dt = cell(t, i, tc) - cell(t, i - 1, tc);
		/* a counter that went down was reset (ksmd or samepaged restarted) */
		out[i] = isfinite(dv) && dv >= 0 ? factor * dv / dt : NAN;
	}
}

static int draw(const struct cli *c, const struct table *t, const char *in, const char *out)
{
	size_t n = t->nrow;
	int tc = column(t, "time");
	double *x = calloc(n, sizeof(double)), *saved = calloc(n, sizeof(double)),
	       *profit = calloc(n, sizeof(double)), *cpu = calloc(n, sizeof(double)),
	       *cow = calloc(n, sizeof(double));
	int code = EXIT_OK;
	if (!x || !saved || !profit || !cpu || !cow) {
		code = cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory");
		goto done;
	}
	int sc = column(t, "saved_bytes"), pc = column(t, "general_profit");
	for (size_t i = 0; i < n; i++) {
		x[i] = cell(t, i, tc);
		saved[i] = cell(t, i, sc);
		profit[i] = cell(t, i, pc);
	}
	rate(t, tc, column(t, "cpu_seconds"), 100.0, cpu);
	rate(t, tc, column(t, "cow_ksm"), 1.0, cow);
	struct plot_panel p[3] = {
		{ .title = "Memory saved by merging", .y_label = "bytes", .unit = PLOT_BYTES, .ns = 2,
		  .s = { { "saved: (pages_sharing + ksm_zero_pages) x page size", "#1f77b4", x, saved, n },
			 { "general_profit: saved minus the rmap metadata", "#2ca02c", x, profit, n } },
		  .empty = "saved_bytes and general_profit were not recorded" },
		{ .title = "Merger CPU", .y_label = "% of one CPU", .unit = PLOT_PLAIN, .ns = 1,
		  .s = { { "merger CPU (ksmd or the engine threads)", "#d62728", x, cpu, n } },
		  .empty = n < 2 ? "one sample: no rate" : "cpu_seconds was not recorded" },
		{ .title = "Copy-on-write breaks of merged pages", .y_label = "breaks per second",
		  .unit = PLOT_PLAIN, .ns = 1,
		  .s = { { "cow_ksm per second", "#9467bd", x, cow, n } },
		  .empty = n < 2 ? "one sample: no rate" : "cow_ksm was not recorded" },
	};
	bool stdout_out = strcmp(out, "-") == 0;
	FILE *f = stdout_out ? stdout : fopen(out, "we");
	if (!f) {
		int e = errno;
		code = cli_fail(c, EXIT_REFUSED, "cannot create %s: %s", out, strerror(e));
		goto done;
	}
	char title[512];
	snprintf(title, sizeof(title), "samepage record: %s", in);
	int r = plot_svg(f, title, x[0], x[n - 1], p, 3);
	if ((!stdout_out && fclose(f)) || r)
		code = cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot write %s", out);
done:
	free(x);
	free(saved);
	free(profit);
	free(cpu);
	free(cow);
	return code;
}

int cmd_plot(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (o) {
		case 'o':
			out = optarg;
			break;
		case 'h':
			printf("Usage: samepage plot FILE -o OUT.svg\n");
			return EXIT_OK;
		default:
			return EXIT_REFUSED;
		}
	}
	if (optind >= argc)
		return cli_fail(c, EXIT_REFUSED, "which recording? Give FILE, as written by samepage record");
	if (optind + 1 < argc)
		return cli_fail(c, EXIT_REFUSED, "unexpected argument '%s'", argv[optind + 1]);
	if (!out)
		return cli_fail(c, EXIT_REFUSED, "where to? Give -o OUT.svg (or -o - for standard output)");
	const char *in = argv[optind];
	int code;
	char *text = slurp(c, in, &code);
	if (!text)
		return code;
	struct table t = { 0 };
	code = parse_csv(c, in, text, &t);
	if (!code)
		code = draw(c, &t, in, out);
	table_free(&t);
	free(text);
	return code;
}
