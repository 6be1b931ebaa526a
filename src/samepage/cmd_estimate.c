/* SPDX-License-Identifier: MIT */
/*
 * samepage estimate: what merging would save in running processes, read
 * from their memory without changing anything. Processes are read one
 * after the other in ascending PID order, twice (--interval apart) to
 * tell stable savings from changing ones; estimate_scan.c does the
 * reading and counting.
 */
#include "estimate.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
	"Usage: samepage estimate [PID... | --all | --uid USER] [--json] [--interval SECONDS]\n"
	"                         [--min-kb N] [--all-private] [--range START-END]\n";

struct est_args {
	bool all, json, all_private, have_uid;
	uid_t uid;
	double interval;
	uint64_t min_kb, range_start, range_end;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double when)
{
	double left;
	while ((left = when - now_s()) > 0) {
		struct timespec ts = { (time_t)left, (long)((left - (double)(time_t)left) * 1e9) };
		nanosleep(&ts, NULL);
	}
}

/* ------------------------------------------------------------ arguments */

static bool parse_u64(const char *s, int base, uint64_t *out)
{
	if (!*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, base);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static int parse_uid(const struct cli *c, const char *s, uid_t *out)
{
	uint64_t v;
	if (parse_u64(s, 10, &v)) {
		if (v >= (uid_t)-1)
			return cli_fail(c, EXIT_REFUSED, "--uid: %s is not a user ID", s);
		*out = (uid_t)v;
		return 0;
	}
	struct passwd *pw = getpwnam(s);
	if (!pw)
		return cli_fail(c, EXIT_REFUSED, "--uid: no user named '%s'", s);
	*out = pw->pw_uid;
	return 0;
}

/* "START-END" in hexadecimal (0x optional), widened to whole pages. */
static int parse_range(const struct cli *c, const char *s, struct est_args *a)
{
	char start[40], end[40];
	const char *dash = strchr(s, '-');
	size_t n = dash ? (size_t)(dash - s) : 0;
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	if (dash && n < sizeof(start) && strlen(dash + 1) < sizeof(end)) {
		memcpy(start, s, n);
		start[n] = 0;
		strcpy(end, dash + 1);
		const char *x = strncmp(start, "0x", 2) ? start : start + 2, *y = strncmp(end, "0x", 2) ? end : end + 2;
		if (parse_u64(x, 16, &a->range_start) && parse_u64(y, 16, &a->range_end) &&
		    a->range_start < a->range_end && a->range_end <= UINT64_MAX - ps) {
			a->range_start &= ~(ps - 1);
			a->range_end = (a->range_end + ps - 1) & ~(ps - 1);
			return 0;
		}
	}
	return cli_fail(c, EXIT_REFUSED, "--range takes START-END in hexadecimal with START < END, not '%s'", s);
}

static int parse_args(const struct cli *c, int argc, char **argv, struct est_args *a, bool *help)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "uid", required_argument, NULL, 'u' },
		{ "json", no_argument, NULL, 'j' },
		{ "interval", required_argument, NULL, 'i' },
		{ "min-kb", required_argument, NULL, 'm' },
		{ "all-private", no_argument, NULL, 'p' },
		{ "range", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	memset(a, 0, sizeof(*a));
	a->interval = 2.0;
	int o;
	while ((o = getopt_long(argc, argv, "au:ji:m:pr:h", opts, NULL)) != -1) {
		switch (o) {
		case 'a':
			a->all = true;
			break;
		case 'u':
			if (parse_uid(c, optarg, &a->uid))
				return EXIT_REFUSED;
			a->have_uid = true;
			break;
		case 'j':
			a->json = true;
			break;
		case 'i':
			if (cli_seconds_arg(c, "--interval", optarg, 0, 3600, &a->interval))
				return EXIT_REFUSED;
			break;
		case 'm':
			if (!parse_u64(optarg, 10, &a->min_kb) || a->min_kb > UINT64_MAX / 1024)
				return cli_fail(c, EXIT_REFUSED, "--min-kb takes a number of KiB, not '%s'", optarg);
			break;
		case 'p':
			a->all_private = true;
			break;
		case 'r':
			if (parse_range(c, optarg, a))
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
	bool pids = optind < argc;
	if ((a->all && a->have_uid) || ((a->all || a->have_uid) && pids))
		return cli_fail(c, EXIT_REFUSED, "give PIDs, --all or --uid, not more than one of them");
	if (!a->all && !a->have_uid && !pids)
		return cli_fail(c, EXIT_REFUSED, "which processes? Give PIDs, --all or --uid USER");
	return 0;
}

/* ------------------------------------------------------------ processes */

/* Name, real uid and thread group of /proc/PID/status; -ESRCH if none,
 * -ENXIO for kernel threads and zombies (no VmSize: no user memory). */
static int read_status(pid_t pid, struct est_proc *p, pid_t *tgid)
{
	bool has_mm = false;
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	p->pid = pid;
	p->uid = (uid_t)-1;
	*tgid = pid;
	while (fgets(line, sizeof(line), f)) {
		unsigned long v;
		if (strncmp(line, "Name:\t", 6) == 0) {
			snprintf(p->comm, sizeof(p->comm), "%s", line + 6);
			p->comm[strcspn(p->comm, "\n")] = 0;
		} else if (sscanf(line, "Uid: %lu", &v) == 1) {
			p->uid = (uid_t)v;
		} else if (sscanf(line, "Tgid: %lu", &v) == 1) {
			*tgid = (pid_t)v;
		} else if (strncmp(line, "VmSize:", 7) == 0) {
			has_mm = true;
		}
	}
	fclose(f);
	return has_mm ? 0 : -ENXIO;
}

static int add_proc(struct est_result *r, size_t *cap, const struct est_proc *p)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->procs[i].pid == p->pid)
			return 0;  /* given twice, or a thread of a process already there */
	if (r->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct est_proc *np = realloc(r->procs, nc * sizeof(*np));
		if (!np)
			return -ENOMEM;
		r->procs = np;
		*cap = nc;
	}
	r->procs[r->n++] = *p;
	return 0;
}

static int by_pid(const void *a, const void *b)
{
	const struct est_proc *x = a, *y = b;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Explicit PIDs: each is listed, with an error if it cannot be read. */
static int select_pids(const struct cli *c, char **pids, int n, struct est_result *r)
{
	size_t cap = 0;
	for (int i = 0; i < n; i++) {
		uint64_t v;
		if (!parse_u64(pids[i], 10, &v) || v == 0 || v > INT_MAX)
			return cli_fail(c, EXIT_REFUSED, "'%s' is not a process ID", pids[i]);
		struct est_proc p = { 0 };
		pid_t tgid;
		int e = read_status((pid_t)v, &p, &tgid);
		if (!e && tgid != p.pid)
			e = read_status(tgid, &p, &tgid);  /* a thread: its process */
		if (e == -ESRCH) {
			p.pid = (pid_t)v;
			p.uid = (uid_t)-1;
			snprintf(p.comm, sizeof(p.comm), "?");
		}
		p.err = e;
		if (add_proc(r, &cap, &p))
			return cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory");
	}
	return 0;
}

/* --all or --uid: every process but this one. */
static int select_all(const struct cli *c, const struct est_args *a, struct est_result *r)
{
	DIR *d = opendir("/proc");
	if (!d)
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot list /proc: %s", strerror(errno));
	size_t cap = 0;
	struct dirent *e;
	int code = 0;
	while ((e = readdir(d))) {
		uint64_t v;
		if (!parse_u64(e->d_name, 10, &v) || v == 0 || v > INT_MAX || (pid_t)v == getpid())
			continue;
		struct est_proc p = { 0 };
		pid_t tgid;
		if (read_status((pid_t)v, &p, &tgid))
			continue;  /* gone meanwhile, or no memory to read */
		if (a->have_uid && p.uid != a->uid)
			continue;
		if (add_proc(r, &cap, &p)) {
			code = cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory");
			break;
		}
	}
	closedir(d);
	if (!code && r->n == 0)
		code = a->have_uid ? cli_fail(c, EXIT_REFUSED, "no process runs as uid %u", (unsigned)a->uid)
				   : cli_fail(c, EXIT_REFUSED, "no process to read");
	return code;
}

/* ------------------------------------------------------------ sampling */

static int take_samples(const struct cli *c, struct est_result *r, const struct est_options *o)
{
	struct est_table *t = NULL;
	struct est_scanner *s = NULL;
	if (est_table_new(&t) || est_scanner_new(o, &s)) {
		est_table_free(t);
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory");
	}
	r->page_size = est_scanner_page_size(s);
	double first = now_s();
	int code = 0;
	for (int k = 0; k < r->samples && !code; k++) {
		if (k > 0) {
			sleep_until(first + r->interval);
			est_table_next_sample(t);
		}
		double t0 = now_s();
		for (size_t i = 0; i < r->n; i++) {
			struct est_proc *p = &r->procs[i];
			if (p->err)
				continue;
			memset(&p->c[k], 0, sizeof(p->c[k]));
			int e = est_scan_process(s, t, p->pid, (uint32_t)i, &p->c[k]);
			r->pages_read += p->c[k].pages;
			if (e == -ENOMEM) {
				code = cli_fail(c, EXIT_FAILURE_RUNTIME, "out of memory counting pages");
				break;
			}
			if (e) {
				p->err = e;
				p->err_sample = k;
			}
		}
		r->scan_seconds += now_s() - t0;
	}
	r->distinct = est_table_distinct(t);
	r->table_bytes = est_table_bytes(t);
	r->scanner_bytes = est_scanner_bytes(s);
	est_table_free(t);
	est_scanner_free(s);
	return code;
}

/* ------------------------------------------------------------ results */

bool est_final(const struct est_result *r, const struct est_proc *p, struct est_counts *c,
	       uint64_t *stable_zero)
{
	if (p->err)
		return false;
	*c = p->c[r->samples - 1];
	if (r->samples < 2)
		*stable_zero = 0;
	else
		*stable_zero = p->c[0].zero_pages < p->c[1].zero_pages ? p->c[0].zero_pages : p->c[1].zero_pages;
	return true;
}

void est_totals(const struct est_result *r, struct est_total *t)
{
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < r->n; i++) {
		struct est_counts c;
		uint64_t sz;
		if (!est_final(r, &r->procs[i], &c, &sz))
			continue;
		t->processes++;
		t->c.mappings += c.mappings;
		t->c.mapped_pages += c.mapped_pages;
		t->c.pages += c.pages;
		t->c.zero_pages += c.zero_pages;
		t->c.saved_within += c.saved_within;
		t->c.saved_between += c.saved_between;
		t->c.stable_saved += c.stable_saved;
		t->c.unreadable_pages += c.unreadable_pages;
		t->stable_zero += sz;
	}
}

const char *est_error_text(const struct est_proc *p, char *buf, size_t len)
{
	switch (p->err) {
	case -ESRCH:
		snprintf(buf, len, p->err_sample ? "exited before the second sample" : "no such process");
		break;
	case -ENXIO:
		snprintf(buf, len, "has no user memory: a kernel thread, or a zombie");
		break;
	case -EACCES:
	case -EPERM:
		snprintf(buf, len, "permission denied: reading another process's memory needs root, "
				   "or the same user and ptrace access (kernel.yama.ptrace_scope)");
		break;
	default:
		snprintf(buf, len, "%s", strerror(-p->err));
	}
	return buf;
}

int cmd_estimate(struct cli *c, int argc, char **argv)
{
	struct est_args a;
	bool help = false;
	int code = parse_args(c, argc, argv, &a, &help);
	if (code)
		return code;
	if (help) {
		fputs(usage, stdout);
		return EXIT_OK;
	}
	struct est_result r = {
		.selected_all = a.all || a.have_uid,
		.samples = a.interval > 0 ? 2 : 1,
		.interval = a.interval,
		.all_private = a.all_private,
		.min_kb = a.min_kb,
	};
	code = r.selected_all ? select_all(c, &a, &r) : select_pids(c, argv + optind, argc - optind, &r);
	if (!code) {
		qsort(r.procs, r.n, sizeof(*r.procs), by_pid);
		struct est_options o = {
			.all_private = a.all_private,
			.range_start = a.range_start,
			.range_end = a.range_end,
		};
		code = take_samples(c, &r, &o);
	}
	if (!code) {
		struct est_total t;
		est_totals(&r, &t);
		est_print_errors(&r);
		if (a.json)
			est_print_json(&r);
		else
			est_print_human(&r);
		if (t.processes == 0)
			code = cli_fail(c, EXIT_REFUSED, "nothing could be read");
	}
	free(r.procs);
	return code;
}
