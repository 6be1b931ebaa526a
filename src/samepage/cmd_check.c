/* SPDX-License-Identifier: MIT */
/*
 * samepage check: the advice of the KSM documentation, applied to this host.
 * One table (checks[]), one small function per row; each row says OK, WARN,
 * FAIL or SKIP with the measured value, the reason and the fixing command.
 */
#include "check.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct check {
	const char *name;
	const char *source;  /* where the rule comes from; samepage(8) cites it too */
	void (*fn)(struct check_ctx *c, struct check_result *r);
};

/* RHEL6-KSM: Red Hat Enterprise Linux 6 Virtualization Administration Guide,
 * chapter 7 "KSM"; RHEL7-KSM: RHEL 7 Virtualization Tuning and Optimization
 * Guide, 8.3 "Kernel Same-page Merging (KSM)"; ksm.rst: the kernel's
 * Documentation/admin-guide/mm/ksm.rst. samepage(8) cites the same. */
static const struct check checks[] = {
	{ "ksm-available", "kernel Documentation/admin-guide/mm/ksm.rst (CONFIG_KSM)", check_ksm_available },
	{ "ksm-running", "kernel Documentation/admin-guide/mm/ksm.rst (run); RHEL 6 Virtualization "
			 "Administration Guide, ch. 7 KSM (the ksm service)",
	  check_ksm_running },
	{ "scan-defaults",
	  "kernel Documentation/admin-guide/mm/ksm.rst (pages_to_scan, sleep_millisecs: \"chosen for "
	  "demonstration purposes\"); RHEL 6 Virtualization Administration Guide, ch. 7 KSM, ksmtuned.conf "
	  "(KSM_NPAGES_MAX=1250, KSM_SLEEP_MSEC=10 \"for 16Gb server\")",
	  check_scan_defaults },
	{ "ksmd-cpu",
	  "RHEL 6 Virtualization Administration Guide, ch. 7 KSM (\"KSM has a performance overhead which may "
	  "be too large\"; with plenty of free memory, turn ksmd off); kernel "
	  "Documentation/admin-guide/mm/ksm.rst (general_profit)",
	  check_ksmd_cpu },
	{ "rmap-ratio",
	  "kernel Documentation/admin-guide/mm/ksm.rst, Monitoring KSM profit (ksm_rmap_items / "
	  "ksm_merging_pages above 64 on 64-bit, 128 on 32-bit: abandon the madvise policy)",
	  check_rmap_ratio },
	{ "numa-merge",
	  "RHEL 6 Virtualization Administration Guide, ch. 7 KSM, and RHEL 7 Virtualization Tuning and "
	  "Optimization Guide, 8.3 (merge_across_nodes=0 on NUMA hosts); kernel "
	  "Documentation/admin-guide/mm/ksm.rst (merge_across_nodes)",
	  check_numa_merge },
	{ "swap-committed",
	  "RHEL 6 Virtualization Administration Guide, ch. 7 KSM, and RHEL 7 Virtualization Tuning and "
	  "Optimization Guide, 8.3, Important (\"ensure the swap size is sufficient for the committed RAM "
	  "even without taking KSM into account\")",
	  check_swap_committed },
	{ "thp",
	  "kernel mm/ksm.c (a huge page is split to merge a page of it); "
	  "Documentation/admin-guide/mm/transhuge.rst (enabled, khugepaged/max_ptes_none)",
	  check_thp },
	{ "unmergeable-memory",
	  "kernel Documentation/admin-guide/mm/ksm.rst (only private anonymous pages merge; "
	  "MADV_MERGEABLE succeeds on ranges that cannot merge)",
	  check_unmergeable_memory },
	{ "cross-user",
	  "kernel Documentation/admin-guide/mm/ksm.rst (KSM is a side channel across security domains); "
	  "RHEL 6 Virtualization Administration Guide, ch. 7 KSM, Note (a side channel between guests)",
	  check_cross_user },
	{ "max-map-count",
	  "kernel Documentation/admin-guide/sysctl/vm.rst (max_map_count, default 65530) and "
	  "Documentation/admin-guide/mm/ksm.rst (MADV_MERGEABLE fails with ENOMEM at the limit); "
	  "samepage docs/design.md (the engine's reserve)",
	  check_max_map_count },
	{ "userfaultfd",
	  "kernel Documentation/admin-guide/mm/userfaultfd.rst; Documentation/admin-guide/sysctl/vm.rst "
	  "(unprivileged_userfaultfd); samepage docs/design.md (known limits)",
	  check_userfaultfd },
};
#define NCHECKS (sizeof(checks) / sizeof(checks[0]))

static const char *const status_words[] = { "OK", "SKIP", "WARN", "FAIL" };

/* ------------------------------------------------------------ helpers */

int ck_path(const struct check_ctx *c, const char *abs, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s%s", c->root, abs);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

ssize_t ck_read(const struct check_ctx *c, const char *abs, char *buf, size_t len)
{
	char path[PATH_MAX];
	int r = ck_path(c, abs, path, sizeof(path));
	if (r)
		return r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	while (got + 1 < len) {
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = 0;
	return (ssize_t)got;
}

int ck_read_i64(const struct check_ctx *c, const char *abs, int64_t *out)
{
	char buf[64], *end;
	ssize_t n = ck_read(c, abs, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (end == buf || errno)
		return -EIO;
	*out = v;
	return 0;
}

bool ck_has_param(const struct check_ctx *c, sp_param p)
{
	int64_t v;
	return c->have_sample && sp_sample_get(&c->s, p, &v) == 0;
}

int64_t ck_param(const struct check_ctx *c, sp_param p, int64_t dflt)
{
	int64_t v;
	if (!c->have_sample || sp_sample_get(&c->s, p, &v) != 0)
		return dflt;
	return v;
}

static void vfill(char *dst, size_t len, const char *fmt, va_list ap)
{
	vsnprintf(dst, len, fmt, ap);
}

void ck_set(struct check_result *r, enum check_status st, const char *value_fmt, ...)
{
	r->status = st;
	va_list ap;
	va_start(ap, value_fmt);
	vfill(r->value, sizeof(r->value), value_fmt, ap);
	va_end(ap);
}

void ck_reason(struct check_result *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfill(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
}

void ck_fix(struct check_result *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfill(r->fix, sizeof(r->fix), fmt, ap);
	va_end(ap);
}

const char *ck_unreadable(size_t n, const char *what, char *buf, size_t len)
{
	if (!n)
		buf[0] = 0;
	else
		snprintf(buf, len, " (%zu processes' %s unreadable%s)", n, what,
			 geteuid() ? ": run as root to see them" : "");
	return buf;
}

/* "Uid:\treal\teffective\tsaved\tfs" */
static bool status_euid(const struct check_ctx *c, pid_t pid, uid_t *out)
{
	char rel[64], buf[4096];
	snprintf(rel, sizeof(rel), "/proc/%d/status", (int)pid);
	if (ck_read(c, rel, buf, sizeof(buf)) <= 0)
		return false;
	const char *u = strstr(buf, "\nUid:");
	unsigned long real, eff;
	if (!u || sscanf(u + 5, "%lu %lu", &real, &eff) != 2)
		return false;
	*out = (uid_t)eff;
	return true;
}

int ck_proc_smaps(struct check_ctx *c, struct check_proc *p)
{
	if (p->smaps_err <= 0)
		return p->smaps_err;
	memset(&p->sm, 0, sizeof(p->sm));
	char rel[64], path[PATH_MAX];
	snprintf(rel, sizeof(rel), "/proc/%d/smaps", (int)p->p.pid);
	int r = ck_path(c, rel, path, sizeof(path));
	FILE *f = r ? NULL : fopen(path, "re");
	if (!f)
		return p->smaps_err = r ? r : -errno;
	char *line = NULL;
	size_t cap = 0;
	unsigned long long start = 0, end = 0, anon_huge_kb = 0;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long a, b, kb;
		int used = 0;
		if (sscanf(line, "%llx-%llx %n", &a, &b, &used) == 2 && used > 0) {
			start = a;
			end = b > a ? b : a;
			anon_huge_kb = 0;
		} else if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) {
			anon_huge_kb = kb;
		} else if (strncmp(line, "VmFlags:", 8) == 0) {
			bool sh = false, ht = false, mg = false;
			for (char *t = strtok(line + 8, " \n"); t; t = strtok(NULL, " \n")) {
				sh |= strcmp(t, "sh") == 0;
				ht |= strcmp(t, "ht") == 0;
				mg |= strcmp(t, "mg") == 0;
			}
			int64_t size = (int64_t)(end - start);
			if (ht)
				p->sm.hugetlb_bytes += size;
			else if (sh)
				p->sm.shared_bytes += size;
			if (mg)
				p->sm.mergeable_thp_bytes += (int64_t)anon_huge_kb * 1024;
		}
	}
	free(line);
	fclose(f);
	return p->smaps_err = 0;
}

static int64_t meminfo_field(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		long long kb;
		if (strncmp(l, key, kl) == 0 && l[kl] == ':' && sscanf(l + kl + 1, "%lld", &kb) == 1)
			return (int64_t)kb * 1024;
	}
	return -1;
}

static void ctx_load(struct check_ctx *c)
{
	c->ksm = sp_ksm_available(c->k);
	if (c->ksm && sp_ksm_sample(c->k, &c->s) == 0)
		c->have_sample = true;
	sp_proc_ksm *list = NULL;
	size_t n = 0;
	c->procs_err = sp_proc_ksm_list(c->k, &list, &n, &c->unreadable);
	if (!c->procs_err && n) {
		c->procs = calloc(n, sizeof(*c->procs));
		if (!c->procs) {
			c->procs_err = -ENOMEM;
		} else {
			for (size_t i = 0; i < n; i++) {
				struct check_proc *p = &c->procs[i];
				p->p = list[i];
				p->smaps_err = 1;
				if (!status_euid(c, p->p.pid, &p->uid))
					p->uid = p->p.uid;
			}
			c->nprocs = n;
		}
	}
	free(list);
	char buf[8192];
	c->mem_total = c->swap_total = c->committed_as = -1;
	if (ck_read(c, "/proc/meminfo", buf, sizeof(buf)) > 0) {
		c->mem_total = meminfo_field(buf, "MemTotal");
		c->swap_total = meminfo_field(buf, "SwapTotal");
		c->committed_as = meminfo_field(buf, "Committed_AS");
	}
}

/* ------------------------------------------------------------ output */

static void print_table(const struct check_result *res, const bool *selected)
{
	int count[4] = { 0 };
	printf("%-6s %-20s %s\n", "STATUS", "CHECK", "VALUE");
	for (size_t i = 0; i < NCHECKS; i++) {
		if (!selected[i])
			continue;
		const struct check_result *r = &res[i];
		count[r->status]++;
		printf("%-6s %-20s %s\n", status_words[r->status], checks[i].name, r->value);
		printf("%-6s %-20s %s\n", "", "", r->reason);
		if (r->fix[0] && r->status >= CK_WARN)
			printf("%-6s %-20s fix: %s\n", "", "", r->fix);
	}
	printf("\n%d OK, %d WARN, %d FAIL, %d SKIP\n", count[CK_OK], count[CK_WARN], count[CK_FAIL],
	       count[CK_SKIP]);
}

static void print_json(const struct check_result *res, const bool *selected, int code)
{
	json_object *root = json_object_new_object(), *arr = json_object_new_array();
	int count[4] = { 0 };
	for (size_t i = 0; i < NCHECKS; i++) {
		if (!selected[i])
			continue;
		const struct check_result *r = &res[i];
		count[r->status]++;
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(checks[i].name));
		json_object_object_add(o, "status", json_object_new_string(status_words[r->status]));
		json_object_object_add(o, "value", json_object_new_string(r->value));
		json_object_object_add(o, "reason", json_object_new_string(r->reason));
		json_object_object_add(o, "fix", r->fix[0] && r->status >= CK_WARN ?
						 json_object_new_string(r->fix) : NULL);
		json_object_object_add(o, "source", json_object_new_string(checks[i].source));
		json_object_array_add(arr, o);
	}
	json_object *sum = json_object_new_object();
	json_object_object_add(sum, "ok", json_object_new_int(count[CK_OK]));
	json_object_object_add(sum, "warn", json_object_new_int(count[CK_WARN]));
	json_object_object_add(sum, "fail", json_object_new_int(count[CK_FAIL]));
	json_object_object_add(sum, "skip", json_object_new_int(count[CK_SKIP]));
	json_object_object_add(root, "checks", arr);
	json_object_object_add(root, "summary", sum);
	json_object_object_add(root, "exit_status", json_object_new_int(code));
	puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

/* --only a,b --only c: mark those; -1 and the bad name on an unknown one. */
static int select_checks(const char *list, bool *selected, char *bad, size_t badlen)
{
	char *copy = strdup(list), *save = NULL;
	if (!copy)
		return -ENOMEM;
	int r = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t i;
		for (i = 0; i < NCHECKS; i++)
			if (strcmp(t, checks[i].name) == 0)
				break;
		if (i == NCHECKS) {
			snprintf(bad, badlen, "%s", t);
			r = -ENOENT;
			break;
		}
		selected[i] = true;
	}
	free(copy);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: samepage check [--json] [--interval MS] [--only NAME[,NAME...]]\n"
		   "Checks:");
	for (size_t i = 0; i < NCHECKS; i++)
		fprintf(f, " %s", checks[i].name);
	fprintf(f, "\n");
}

int cmd_check(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "interval", required_argument, NULL, 'i' },
		{ "only", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, only = false, selected[NCHECKS] = { false };
	long interval_ms = 1000;
	int o;
	while ((o = getopt_long(argc, argv, "ji:o:h", opts, NULL)) != -1) {
		switch (o) {
		case 'j':
			json = true;
			break;
		case 'i': {
			char *end;
			errno = 0;
			interval_ms = strtol(optarg, &end, 10);
			if (*end || end == optarg || errno || interval_ms < 0 || interval_ms > 60000)
				return cli_fail(c, EXIT_REFUSED,
						"--interval takes milliseconds from 0 to 60000, not '%s'", optarg);
			break;
		}
		case 'o': {
			char bad[64];
			int r = select_checks(optarg, selected, bad, sizeof(bad));
			if (r == -ENOENT) {
				cli_fail(c, EXIT_REFUSED, "unknown check '%s'", bad);
				usage(stderr);
				return EXIT_REFUSED;
			}
			if (r)
				return cli_fail(c, EXIT_REFUSED, "%s", sp_strerror(r));
			only = true;
			break;
		}
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			return EXIT_REFUSED;
		}
	}
	if (optind < argc)
		return cli_fail(c, EXIT_REFUSED, "unexpected argument '%s'", argv[optind]);
	if (!only)
		for (size_t i = 0; i < NCHECKS; i++)
			selected[i] = true;

	struct check_ctx ctx = { .interval_ms = interval_ms, .page_size = sysconf(_SC_PAGESIZE) };
	/* The same normalisation as sp_ksm_open(): "", "/" and NULL are this machine. */
	static char root[PATH_MAX];
	const char *want = c->root ? c->root : "";
	size_t l = strlen(want);
	while (l > 0 && want[l - 1] == '/')
		l--;
	if (l >= sizeof(root) - 64)
		return cli_fail(c, EXIT_REFUSED, "--root: %s", sp_strerror(-ENAMETOOLONG));
	memcpy(root, want, l);
	root[l] = 0;
	ctx.root = root;
	ctx.live = root[0] == 0;
	int r = sp_ksm_open(c->root, &ctx.k);
	if (r)
		return cli_fail(c, EXIT_REFUSED, "cannot open KSM view: %s", sp_strerror(r));
	ctx_load(&ctx);

	struct check_result res[NCHECKS];
	int code = EXIT_OK;
	for (size_t i = 0; i < NCHECKS; i++) {
		memset(&res[i], 0, sizeof(res[i]));
		if (!selected[i])
			continue;
		checks[i].fn(&ctx, &res[i]);
		if (res[i].status == CK_FAIL)
			code = 2;
		else if (res[i].status == CK_WARN && code == EXIT_OK)
			code = 1;
	}
	if (json)
		print_json(res, selected, code);
	else
		print_table(res, selected);
	free(ctx.procs);
	sp_ksm_close(ctx.k);
	return code;
}
