/* SPDX-License-Identifier: MIT */
/*
 * samepage exporter: the metrics of one scrape. Names follow node_exporter's
 * ksmd collector where it has the file (so its dashboards and alerts work
 * unchanged), samepage_ otherwise; every name is the kernel's file name with
 * Prometheus's unit and counter suffixes (docs/design.md).
 */
#include "exporter_metrics.h"
#include "exporter_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The files node_exporter's ksmd collector exports, under node_ksmd_. */
static bool in_node_exporter(sp_param p)
{
	switch (p) {
	case SP_FULL_SCANS:
	case SP_MERGE_ACROSS_NODES:
	case SP_PAGES_SHARED:
	case SP_PAGES_SHARING:
	case SP_PAGES_TO_SCAN:
	case SP_PAGES_UNSHARED:
	case SP_PAGES_VOLATILE:
	case SP_RUN:
	case SP_SLEEP_MILLISECS:
		return true;
	default:
		return false;
	}
}

/* Ever-growing event counts: Prometheus counters, "_total". */
static bool is_counter(sp_param p)
{
	switch (p) {
	case SP_FULL_SCANS:
	case SP_PAGES_SCANNED:
	case SP_PAGES_SKIPPED:
	case SP_COW_KSM:
	case SP_KSM_SWPIN_COPY:
	case SP_PAGES_SKIPPED_MAX_MAP_COUNT:
		return true;
	default:
		return false;
	}
}

struct metric_name {
	char name[128];
	enum prom_type type;
	bool milli;    /* the value is in thousandths of the unit in the name */
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Prometheus name of parameter p: prefix + the kernel's name, with base
 * units (milliseconds become seconds) and _total for counters. */
static void name_param(const char *prefix, sp_param p, struct metric_name *m)
{
	const char *kname = sp_param_describe(p)->name;
	char base[96];
	snprintf(base, sizeof(base), "%s", kname);
	const char *unit = "";
	m->milli = false;
	if (ends_with(base, "_millisecs")) {
		base[strlen(base) - strlen("_millisecs")] = 0;
		unit = "_seconds";
		m->milli = true;
	} else if (p == SP_ADVISOR_TARGET_SCAN_TIME) {
		unit = "_seconds";
	} else if (p == SP_ADVISOR_MAX_CPU) {
		unit = "_percent";
	} else if (p == SP_GENERAL_PROFIT) {
		unit = "_bytes";
	}
	m->type = is_counter(p) ? PROM_COUNTER : PROM_GAUGE;
	snprintf(m->name, sizeof(m->name), "%s%s%s%s", prefix, base, unit,
		 m->type == PROM_COUNTER ? "_total" : "");
}

/* The kernel's prefix for p: node_ksmd_, samepage_vmstat_ for /proc/vmstat,
 * samepage_ksm_ (without a doubled "ksm_") for the rest. */
static void name_kernel_param(sp_param p, struct metric_name *m)
{
	const sp_param_info *in = sp_param_describe(p);
	if (in_node_exporter(p)) {
		name_param("node_ksmd_", p, m);
	} else if (in->flags & SP_PF_VMSTAT) {
		name_param("samepage_vmstat_", p, m);
	} else {
		name_param("samepage_ksm_", p, m);
		const char *dup = "samepage_ksm_ksm_";
		if (strncmp(m->name, dup, strlen(dup)) == 0)
			memmove(m->name + strlen("samepage_ksm_"), m->name + strlen(dup),
				strlen(m->name + strlen(dup)) + 1);
	}
}

/* advisor_mode: one series per mode, 1 for the current one (a state set). */
static void emit_mode(struct prom *pr, sp_param p, int64_t v)
{
	for (int64_t mode = 0; mode <= 1; mode++) {
		char word[32];
		sp_param_format(p, mode, word, sizeof(word));
		const char *labels[] = { "mode", word, NULL };
		prom_int(pr, labels, v == mode);
	}
}

/* Every parameter the sample holds; params the source lacks are left out. */
static void emit_sample(struct prom *pr, const sp_sample *s, bool kernel)
{
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		int64_t v;
		if (sp_sample_get(s, p, &v) != 0)
			continue;
		const sp_param_info *in = sp_param_describe(p);
		struct metric_name m;
		char help[400];
		if (kernel) {
			name_kernel_param(p, &m);
			snprintf(help, sizeof(help), in->flags & SP_PF_VMSTAT ? "%s in /proc/vmstat: %s"
				 : "/sys/kernel/mm/ksm/%s: %s", in->name, in->help);
		} else {
			name_param("samepage_user_", p, &m);
			snprintf(help, sizeof(help), "user-space engine's %s: %s", in->name, in->help);
		}
		if (m.milli)
			snprintf(help + strlen(help), sizeof(help) - strlen(help),
				 " (the kernel's milliseconds, in seconds)");
		prom_family(pr, m.name, m.type, help);
		if (in->flags & SP_PF_ADVISOR)
			emit_mode(pr, p, v);
		else if (m.milli)
			prom_milli(pr, NULL, v);
		else
			prom_int(pr, NULL, v);
	}
}

static void emit_saved(struct prom *pr, const sp_sample *s, const char *name)
{
	int64_t v;
	if (sp_sample_get(s, SP_PAGES_SHARING, &v) != 0)
		return;
	sp_savings sav;
	sp_savings_compute(s, &sav);
	prom_family(pr, name, PROM_GAUGE,
		    "memory merging saves: (pages_sharing + ksm_zero_pages) x page size");
	prom_int(pr, NULL, sav.saved_bytes);
}

enum proc_field { PF_PROFIT, PF_MERGING, PF_RMAP, PF_ZERO };

static int64_t proc_value(const sp_proc_ksm *p, enum proc_field f)
{
	switch (f) {
	case PF_PROFIT:
		return p->ksm_process_profit;
	case PF_MERGING:
		return p->ksm_merging_pages;
	case PF_RMAP:
		return p->ksm_rmap_items;
	default:
		return p->ksm_zero_pages;
	}
}

/* Per-process series for the `max` processes that gain most; the rest are
 * summed into pid="other", so a host with thousands of merging processes
 * costs max + 1 series per metric. */
static void emit_processes(struct prom *pr, const char *prefix, sp_proc_ksm *list, size_t n,
			   size_t max)
{
	static const struct {
		enum proc_field f;
		const char *suffix, *help;
	} fields[] = {
		{ PF_PROFIT, "process_profit_bytes", "ksm_process_profit of the process, in bytes (may be negative)" },
		{ PF_MERGING, "process_merging_pages", "ksm_merging_pages: pages of the process that are merged" },
		{ PF_RMAP, "process_rmap_items", "ksm_rmap_items: pages of the process being tracked for merging" },
		{ PF_ZERO, "process_zero_pages", "ksm_zero_pages: pages of the process merged with the zero page" },
	};
	if (n == 0)
		return;
	proc_sort_by_profit(list, n);
	size_t named = n < max ? n : max;
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		char name[128], help[256];
		snprintf(name, sizeof(name), "%s%s", prefix, fields[f].suffix);
		snprintf(help, sizeof(help), "%s; the %zu processes that gain most by pid and comm, "
			 "the others summed as pid=\"other\"", fields[f].help, max);
		prom_family(pr, name, PROM_GAUGE, help);
		for (size_t i = 0; i < named; i++) {
			char pid[16];
			snprintf(pid, sizeof(pid), "%d", (int)list[i].pid);
			const char *labels[] = { "pid", pid, "comm", list[i].comm, NULL };
			prom_int(pr, labels, proc_value(&list[i], fields[f].f));
		}
		if (named < n) {
			int64_t sum = 0;
			for (size_t i = named; i < n; i++)
				sum += proc_value(&list[i], fields[f].f);
			const char *labels[] = { "pid", "other", "comm", "other", NULL };
			prom_int(pr, labels, sum);
		}
	}
}

static void emit_count(struct prom *pr, const char *name, const char *help, int64_t v)
{
	prom_family(pr, name, PROM_GAUGE, help);
	prom_int(pr, NULL, v);
}

static void emit_seconds(struct prom *pr, const char *name, const char *help, double v)
{
	prom_family(pr, name, PROM_COUNTER, help);
	prom_double(pr, NULL, v);
}

static void emit_kernel(struct prom *pr, const struct exporter *x)
{
	bool avail = sp_ksm_available(x->ksm);
	emit_count(pr, "samepage_ksm_available", "1 when the kernel has KSM (/sys/kernel/mm/ksm exists)",
		   avail);
	sp_sample s;
	if (!avail || sp_ksm_sample(x->ksm, &s) != 0)
		return;
	emit_sample(pr, &s, true);
	emit_saved(pr, &s, "samepage_ksm_saved_bytes");
	sp_ksmd_info kd;
	if (sp_ksmd_info_read(x->ksm, &kd) == 0)
		emit_seconds(pr, "samepage_ksmd_cpu_seconds_total",
			     "CPU time (user + system) of the ksmd kernel thread since boot", kd.cpu_seconds);
	sp_proc_ksm *list;
	size_t n, unreadable;
	if (sp_proc_ksm_list(x->ksm, &list, &n, &unreadable) != 0)
		return;
	emit_count(pr, "samepage_ksm_processes", "processes with KSM activity (/proc/PID/ksm_stat)",
		   (int64_t)n);
	emit_count(pr, "samepage_ksm_processes_unreadable",
		   "processes whose ksm_stat could not be read (other users', without root)",
		   (int64_t)unreadable);
	emit_processes(pr, "samepage_ksm_", list, n, x->max_processes);
	free(list);
}

static void emit_user(struct prom *pr, const struct exporter *x)
{
	sp_ctl *ctl = NULL;
	sp_sample s;
	bool up = sp_ctl_open(NULL, &ctl) == 0 && sp_ctl_sample(ctl, &s) == 0;
	emit_count(pr, "samepage_user_engine_up",
		   "1 when this user's samepaged answered (see samepaged(8)), 0 when none runs", up);
	if (up) {
		emit_sample(pr, &s, false);
		emit_saved(pr, &s, "samepage_user_saved_bytes");
		sp_ctl_info info;
		if (sp_ctl_info_get(ctl, &info) == 0) {
			emit_seconds(pr, "samepage_user_cpu_seconds_total",
				     "CPU time of the domain's merging: its clients' engine threads",
				     info.cpu_seconds);
			emit_seconds(pr, "samepage_user_daemon_cpu_seconds_total",
				     "CPU time of the samepaged process itself", info.daemon_cpu_seconds);
		}
		sp_proc_ksm *list;
		size_t n;
		if (sp_ctl_processes(ctl, &list, &n) == 0) {
			emit_count(pr, "samepage_user_processes", "client processes in this trust domain",
				   (int64_t)n);
			emit_processes(pr, "samepage_user_", list, n, x->max_processes);
			free(list);
		}
	}
	if (ctl)
		sp_ctl_close(ctl);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

char *exporter_page(const struct exporter *x, size_t *len)
{
	struct prom pr = { 0 };
	double start = now_s();
	prom_family(&pr, "samepage_exporter_build_info", PROM_GAUGE,
		    "versions of the samepage command and libsamepage, as labels");
	const char *labels[] = { "version", SAMEPAGE_CLI_VERSION, "library", sp_version(), NULL };
	prom_int(&pr, labels, 1);
	if (x->ksm)
		emit_kernel(&pr, x);
	if (x->user)
		emit_user(&pr, x);
	prom_family(&pr, "samepage_exporter_scrape_duration_seconds", PROM_GAUGE,
		    "time this exporter took to collect the page");
	prom_double(&pr, NULL, (double)(int64_t)((now_s() - start) * 1e6) / 1e6);
	return prom_take(&pr, len);
}
