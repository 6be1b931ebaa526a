/* SPDX-License-Identifier: MIT */
/* samepage check: the rows about the kernel's KSM. */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GIB (1024LL * 1024 * 1024)
#define MIB (1024LL * 1024)

/* samepage's price of one CPU in memory: ksmd should keep at least this much
 * saved per CPU it uses (general-purpose machines pair a CPU with ~4 GiB). */
#define BYTES_PER_CPU (4 * GIB)
/* A large host, where the demonstration defaults are far too slow: the size
 * ksmtuned.conf's KSM_SLEEP_MSEC is given for ("for 16Gb server"). */
#define LARGE_HOST (16 * GIB)
/* ksmtuned's fastest setting (KSM_NPAGES_MAX, KSM_SLEEP_MSEC with its 10 ms floor). */
#define KSMTUNED_NPAGES_MAX 1250
#define KSMTUNED_SLEEP_MSEC 10
/* Below this many rmap items the loss is under 64 KiB: not worth a warning. */
#define RMAP_MIN_ITEMS 1024
/* Memory that cannot merge is reported from this size on. */
#define UNMERGEABLE_MIN MIB

static bool need_ksm(struct check_ctx *c, struct check_result *r)
{
	if (c->ksm && c->have_sample)
		return true;
	ck_set(r, CK_SKIP, "-");
	ck_reason(r, c->ksm ? "cannot read %s" : "this kernel has no KSM (%s does not exist)",
		  sp_ksm_sysfs_dir(c->k));
	return false;
}

static bool need_procs(struct check_ctx *c, struct check_result *r)
{
	if (!c->procs_err)
		return true;
	ck_set(r, CK_SKIP, "-");
	ck_reason(r, "cannot list processes: %s", sp_strerror(c->procs_err));
	return false;
}

static const char *unreadable_note(const struct check_ctx *c, char *buf, size_t len)
{
	return ck_unreadable(c->unreadable, "ksm_stat", buf, len);
}

static bool registered(const sp_proc_ksm *p)
{
	return p->ksm_merge_any == 1 || p->ksm_mergeable == 1;
}

void check_ksm_available(struct check_ctx *c, struct check_result *r)
{
	if (c->ksm) {
		ck_set(r, CK_OK, "%s", sp_ksm_sysfs_dir(c->k));
		ck_reason(r, "the kernel has KSM");
		return;
	}
	ck_set(r, CK_FAIL, "%s absent", sp_ksm_sysfs_dir(c->k));
	ck_reason(r, "this kernel was built without KSM (CONFIG_KSM=n): nothing can be merged by the kernel");
	ck_fix(r, "boot a kernel built with CONFIG_KSM=y, or merge in user space with sp_engine(3)");
}

void check_ksm_running(struct check_ctx *c, struct check_result *r)
{
	if (!need_ksm(c, r))
		return;
	int64_t run = ck_param(c, SP_RUN, -1), sharing = ck_param(c, SP_PAGES_SHARING, 0);
	if (run == 1) {
		ck_set(r, CK_OK, "run=1");
		ck_reason(r, "ksmd is running");
		return;
	}
	size_t asked = 0;
	pid_t first = 0;
	for (size_t i = 0; i < c->nprocs; i++)
		if (registered(&c->procs[i].p)) {
			if (!asked)
				first = c->procs[i].p.pid;
			asked++;
		}
	char note[96];
	ck_set(r, asked ? CK_WARN : CK_OK, "run=%" PRId64 ", %zu processes registered, pages_sharing=%" PRId64,
	       run, asked, sharing);
	if (asked) {
		ck_reason(r, "ksmd is %s while %zu processes (pid %d first) asked for merging: nothing new merges%s",
			  run == 2 ? "stopped and unmerged" : "stopped", asked, (int)first,
			  sharing > 0 ? "; merged pages stay merged" : "");
		ck_fix(r, "samepage start");
	} else {
		ck_reason(r, "KSM is off and no process asked for merging; `samepage start` when one does%s",
			  unreadable_note(c, note, sizeof(note)));
	}
}

void check_scan_defaults(struct check_ctx *c, struct check_result *r)
{
	if (!need_ksm(c, r))
		return;
	int64_t run = ck_param(c, SP_RUN, -1), pts = ck_param(c, SP_PAGES_TO_SCAN, -1),
		slp = ck_param(c, SP_SLEEP_MILLISECS, -1), adv = ck_param(c, SP_ADVISOR_MODE, 0);
	char mem[32];
	if (c->mem_total < 0) {
		ck_set(r, CK_SKIP, "pages_to_scan=%" PRId64 " sleep_millisecs=%" PRId64, pts, slp);
		ck_reason(r, "MemTotal not found in %s/proc/meminfo", c->root);
		return;
	}
	human_bytes(c->mem_total, mem, sizeof(mem));
	ck_set(r, CK_OK, "pages_to_scan=%" PRId64 " sleep_millisecs=%" PRId64 ", MemTotal %s", pts, slp, mem);
	const sp_param_info *pi = sp_param_describe(SP_PAGES_TO_SCAN), *si = sp_param_describe(SP_SLEEP_MILLISECS);
	if (adv == 1) {
		snprintf(r->value, sizeof(r->value), "advisor_mode=scan-time, MemTotal %s", mem);
		ck_reason(r, "the advisor chooses pages_to_scan");
		return;
	}
	if (run != 1) {
		ck_reason(r, "KSM is not running (run=%" PRId64 "): the scan rate does not matter now", run);
		return;
	}
	if (pts != pi->def || slp != si->def) {
		ck_reason(r, "the scan rate was tuned");
		return;
	}
	if (c->mem_total < LARGE_HOST) {
		ck_reason(r, "the demonstration defaults, on a host smaller than 16 GiB");
		return;
	}
	/* ksmtuned: sleep = KSM_SLEEP_MSEC * 16 GiB / MemTotal, at least 10 ms. */
	int64_t sleep = KSMTUNED_SLEEP_MSEC * LARGE_HOST / c->mem_total;
	if (sleep < KSMTUNED_SLEEP_MSEC)
		sleep = KSMTUNED_SLEEP_MSEC;
	double pages_per_s = (double)pts * 1000.0 / (double)(slp ? slp : 1);
	double pass_min = (double)c->mem_total / (double)c->page_size / pages_per_s / 60.0;
	char rate[32];
	human_bytes((int64_t)(pages_per_s * (double)c->page_size), rate, sizeof(rate));
	r->status = CK_WARN;
	ck_reason(r, "pages_to_scan and sleep_millisecs are the kernel's defaults, \"chosen for demonstration "
		     "purposes\": ksmd scans at most %s/s, so a pass over %s takes %.0f min",
		  rate, mem, pass_min);
	ck_fix(r, "samepage set pages_to_scan=%d sleep_millisecs=%" PRId64, KSMTUNED_NPAGES_MAX, sleep);
}

/* Seconds since ksmd started. sp_ksmd_info.age_seconds is not used: the
 * library reads starttime (field 22 of /proc/<pid>/stat) past what it parsed. */
static int ksmd_age(const struct check_ctx *c, pid_t pid, double *age)
{
	char rel[64], buf[1024], up[128];
	snprintf(rel, sizeof(rel), "/proc/%d/stat", (int)pid);
	if (ck_read(c, rel, buf, sizeof(buf)) <= 0 || ck_read(c, "/proc/uptime", up, sizeof(up)) <= 0)
		return -ENOENT;
	const char *p = strrchr(buf, ')');
	unsigned long long start;
	/* after the name: state and 18 fields, then starttime */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &start) != 1)
		return -EIO;
	long hz = sysconf(_SC_CLK_TCK);
	*age = strtod(up, NULL) - (double)start / (double)(hz > 0 ? hz : 100);
	return *age > 0 ? 0 : -ERANGE;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

void check_ksmd_cpu(struct check_ctx *c, struct check_result *r)
{
	if (!need_ksm(c, r))
		return;
	int64_t run = ck_param(c, SP_RUN, -1);
	if (run != 1) {
		ck_set(r, CK_SKIP, "run=%" PRId64, run);
		ck_reason(r, "ksmd is not running: it uses no CPU");
		return;
	}
	sp_ksmd_info a, b;
	if (sp_ksmd_info_read(c->k, &a) != 0) {
		ck_set(r, CK_SKIP, "-");
		ck_reason(r, "no ksmd kernel thread found in %s/proc", c->root);
		return;
	}
	double pct;
	char how[64];
	if (c->live && c->interval_ms > 0) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		sleep_ms(c->interval_ms);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (sp_ksmd_info_read(c->k, &b) != 0 || b.pid != a.pid || dt <= 0) {
			ck_set(r, CK_SKIP, "-");
			ck_reason(r, "ksmd went away during the measurement");
			return;
		}
		pct = 100.0 * (b.cpu_seconds - a.cpu_seconds) / dt;
		snprintf(how, sizeof(how), "over %.2f s", dt);
	} else {
		/* A recorded tree (or --interval 0): the files as they are. */
		double age;
		if (ksmd_age(c, a.pid, &age)) {
			ck_set(r, CK_SKIP, "ksmd %.2f s CPU", a.cpu_seconds);
			ck_reason(r, "ksmd's age is unknown (no uptime or start time): the rate cannot be measured");
			return;
		}
		pct = 100.0 * a.cpu_seconds / age;
		snprintf(how, sizeof(how), "on average since it started");
	}
	sp_savings sav;
	sp_savings_compute(&c->s, &sav);
	char profit[32];
	human_bytes(sav.profit_bytes, profit, sizeof(profit));
	ck_set(r, CK_OK, "ksmd %.1f%% of a CPU %s, profit %s", pct, how, profit);
	if (pct < 1.0) {
		ck_reason(r, "ksmd costs less than 1%% of a CPU");
		return;
	}
	int64_t scans = ck_param(c, SP_FULL_SCANS, 0);
	if (scans < 2) {
		r->status = CK_SKIP;
		ck_reason(r, "ksmd has finished %" PRId64 " full scans: savings settle after two", scans);
		return;
	}
	if (sav.profit_bytes <= 0) {
		r->status = CK_WARN;
		ck_reason(r, "ksmd uses %.1f%% of a CPU and merging saves nothing (general_profit %s): "
			     "unmerging also frees the metadata",
			  pct, profit);
		ck_fix(r, "samepage unmerge");
		return;
	}
	double per_cpu = (double)sav.profit_bytes / (pct / 100.0);
	char per[32];
	human_bytes((int64_t)per_cpu, per, sizeof(per));
	snprintf(r->value + strlen(r->value), sizeof(r->value) - strlen(r->value), ": %s per CPU", per);
	if (per_cpu >= (double)BYTES_PER_CPU) {
		ck_reason(r, "ksmd keeps at least 4 GiB saved per CPU it uses");
		return;
	}
	/* Scale the scanning down to the CPU the savings are worth. */
	double target = 100.0 * (double)sav.profit_bytes / (double)BYTES_PER_CPU;
	int64_t pts = ck_param(c, SP_PAGES_TO_SCAN, 100);
	int64_t want = (int64_t)((double)pts * target / pct);
	if (want < 1)
		want = 1;
	r->status = CK_WARN;
	ck_reason(r, "ksmd keeps %s saved per CPU it uses, less than the 4 GiB of memory a CPU is worth: "
		     "scan less (about %.1f%% of a CPU)",
		  per, target);
	ck_fix(r, "samepage set %spages_to_scan=%" PRId64, ck_param(c, SP_ADVISOR_MODE, 0) == 1 ?
	       "advisor_mode=none " : "", want);
}

static int cmp_rmap(const void *a, const void *b)
{
	const struct check_proc *x = *(struct check_proc *const *)a, *y = *(struct check_proc *const *)b;
	if (x->p.ksm_rmap_items != y->p.ksm_rmap_items)
		return x->p.ksm_rmap_items > y->p.ksm_rmap_items ? -1 : 1;
	return x->p.pid - y->p.pid;
}

void check_rmap_ratio(struct check_ctx *c, struct check_result *r)
{
	if (!need_ksm(c, r) || !need_procs(c, r))
		return;
	/* rmap_item: 64 bytes on 64-bit, 32 on 32-bit; break-even is a page's worth. */
	int64_t item = sizeof(void *) == 8 ? 64 : 32;
	int64_t even = c->page_size / item;
	struct check_proc **bad = calloc(c->nprocs + 1, sizeof(*bad));
	if (!bad) {
		ck_set(r, CK_SKIP, "-");
		ck_reason(r, "%s", sp_strerror(-ENOMEM));
		return;
	}
	size_t nbad = 0, with_items = 0;
	for (size_t i = 0; i < c->nprocs; i++) {
		const sp_proc_ksm *p = &c->procs[i].p;
		if (p->ksm_rmap_items <= 0)
			continue;
		with_items++;
		/* ratio > break-even exactly when ksm_process_profit < 0 */
		if (p->ksm_rmap_items >= RMAP_MIN_ITEMS &&
		    p->ksm_rmap_items > even * (p->ksm_merging_pages + p->ksm_zero_pages))
			bad[nbad++] = &c->procs[i];
	}
	char note[96];
	if (!nbad) {
		ck_set(r, CK_OK, "%zu processes with rmap items, none above %" PRId64, with_items, even);
		ck_reason(r, "no process keeps more than %" PRId64 " rmap items per merged page%s", even,
			  unreadable_note(c, note, sizeof(note)));
		free(bad);
		return;
	}
	qsort(bad, nbad, sizeof(*bad), cmp_rmap);
	const sp_proc_ksm *w = &bad[0]->p;
	int64_t merged = w->ksm_merging_pages + w->ksm_zero_pages;
	char ratio[32];
	if (merged)
		snprintf(ratio, sizeof(ratio), "%.0f", (double)w->ksm_rmap_items / (double)merged);
	else
		snprintf(ratio, sizeof(ratio), "no merged page");
	ck_set(r, CK_WARN, "pid %d (%s): %" PRId64 " rmap items, %" PRId64 " merged pages (%s)%s", (int)w->pid,
	       w->comm, w->ksm_rmap_items, merged, ratio, nbad > 1 ? ", and more" : "");
	char pids[160] = "";
	size_t used = 0;
	for (size_t i = 0; i < nbad && used + 12 < sizeof(pids); i++)
		used += (size_t)snprintf(pids + used, sizeof(pids) - used, "%s%d", i ? " " : "", (int)bad[i]->p.pid);
	ck_reason(r, "%zu processes (pid %s) keep more than %" PRId64 " rmap items per merged page: "
		     "KSM's metadata costs them more than merging saves",
		  nbad, pids, even);
	ck_fix(r, "stop merging the unique data of pid %d: MADV_UNMERGEABLE on those ranges, or restart it "
		  "without `samepage run`/MemoryKSM=yes",
	       (int)w->pid);
	free(bad);
}

static int count_nodes(const struct check_ctx *c, int *nodes)
{
	char path[PATH_MAX];
	int r = ck_path(c, "/sys/devices/system/node", path, sizeof(path));
	if (r)
		return r;
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *de;
	*nodes = 0;
	while ((de = readdir(d))) {
		const char *s = de->d_name;
		if (strncmp(s, "node", 4) != 0 || !s[4])
			continue;
		bool digits = true;
		for (const char *q = s + 4; *q; q++)
			digits &= *q >= '0' && *q <= '9';
		*nodes += digits;
	}
	closedir(d);
	return 0;
}

void check_numa_merge(struct check_ctx *c, struct check_result *r)
{
	if (!need_ksm(c, r))
		return;
	int nodes = 0, e = count_nodes(c, &nodes);
	if (e) {
		ck_set(r, CK_SKIP, "-");
		ck_reason(r, "cannot read %s/sys/devices/system/node: %s", c->root, sp_strerror(e));
		return;
	}
	if (!ck_has_param(c, SP_MERGE_ACROSS_NODES)) {
		ck_set(r, CK_OK, "%d NUMA nodes", nodes);
		ck_reason(r, "the kernel is built without NUMA support: nothing to choose");
		return;
	}
	int64_t man = ck_param(c, SP_MERGE_ACROSS_NODES, 1);
	ck_set(r, CK_OK, "%d NUMA node%s, merge_across_nodes=%" PRId64, nodes, nodes == 1 ? "" : "s", man);
	if (nodes < 2) {
		ck_reason(r, "one NUMA node: merge_across_nodes makes no difference");
		return;
	}
	if (man == 0) {
		ck_reason(r, "merged pages stay on their node");
		return;
	}
	r->status = CK_WARN;
	ck_reason(r, "KSM merges pages across %d NUMA nodes: a merged page is remote for some of its users "
		     "and the kernel's per-node memory statistics can contradict each other (numad gets confused)",
		  nodes);
	ck_fix(r, "samepage set --unmerge-first merge_across_nodes=0");
}

/* The word in brackets of "always [madvise] never". */
static int thp_mode(const struct check_ctx *c, char *mode, size_t len)
{
	char buf[128];
	ssize_t n = ck_read(c, "/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	char *b = strchr(buf, '['), *e = b ? strchr(b, ']') : NULL;
	if (!b || !e)
		return -EIO;
	snprintf(mode, len, "%.*s", (int)(e - b - 1), b + 1);
	return 0;
}

void check_thp(struct check_ctx *c, struct check_result *r)
{
	if (!need_ksm(c, r))
		return;
	char mode[32];
	int e = thp_mode(c, mode, sizeof(mode));
	if (e) {
		ck_set(r, CK_SKIP, "-");
		ck_reason(r, "cannot read %s/sys/kernel/mm/transparent_hugepage/enabled: %s (no THP in this kernel?)",
			  c->root, sp_strerror(e));
		return;
	}
	int64_t none = -1;
	ck_read_i64(c, "/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", &none);
	int64_t thp = 0, most = 0;
	pid_t who = 0;
	for (size_t i = 0; i < c->nprocs; i++) {
		struct check_proc *p = &c->procs[i];
		if (ck_proc_smaps(c, p) == 0 && p->sm.mergeable_thp_bytes > 0) {
			if (p->sm.mergeable_thp_bytes > most) {
				most = p->sm.mergeable_thp_bytes;
				who = p->p.pid;
			}
			thp += p->sm.mergeable_thp_bytes;
		}
	}
	char amount[32];
	human_bytes(thp, amount, sizeof(amount));
	ck_set(r, CK_OK, "enabled=%s, max_ptes_none=%" PRId64 ", %s of mergeable memory in huge pages", mode, none,
	       amount);
	int64_t run = ck_param(c, SP_RUN, -1);
	bool always = strcmp(mode, "always") == 0;
	if (run != 1) {
		ck_reason(r, "KSM is not running");
		return;
	}
	if (!always && !thp) {
		ck_reason(r, "mergeable memory is not backed by transparent huge pages");
		return;
	}
	r->status = CK_WARN;
	if (always)
		ck_reason(r, "THP is \"always\": mergeable memory comes in 2 MiB pages, which KSM must split to merge "
			     "any 4 KiB of them, and khugepaged collapses ranges again, refilling up to max_ptes_none "
			     "empty or KSM zero-page entries per 2 MiB");
	else
		ck_reason(r, "%s of mergeable memory (most in pid %d) is in transparent huge pages "
			     "(MADV_HUGEPAGE): KSM must split each to merge any 4 KiB of it",
			  amount, (int)who);
	ck_fix(r, always ? "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"
			 : "drop MADV_HUGEPAGE where memory should merge (QEMU: -machine mem-merge=on without "
			   "hugepages), or echo never > /sys/kernel/mm/transparent_hugepage/enabled");
}

void check_unmergeable_memory(struct check_ctx *c, struct check_result *r)
{
	if (!need_ksm(c, r) || !need_procs(c, r))
		return;
	size_t nbad = 0, unread = 0;
	const struct check_proc *worst = NULL;
	int64_t worst_bytes = 0;
	for (size_t i = 0; i < c->nprocs; i++) {
		struct check_proc *p = &c->procs[i];
		if (!registered(&p->p))
			continue;
		if (ck_proc_smaps(c, p)) {
			unread++;
			continue;
		}
		/* merge_any asked for all its memory; a madvise user for ranges we cannot see,
		 * but hugetlb memory beside it is the classic silent no-op (QEMU guests). */
		int64_t lost = p->sm.hugetlb_bytes + (p->p.ksm_merge_any == 1 ? p->sm.shared_bytes : 0);
		if (lost < UNMERGEABLE_MIN)
			continue;
		nbad++;
		if (lost > worst_bytes) {
			worst_bytes = lost;
			worst = p;
		}
	}
	char note[96];
	ck_unreadable(unread, "smaps", note, sizeof(note));
	if (!nbad) {
		ck_set(r, CK_OK, "none");
		ck_reason(r, "no process that asked for merging holds shared or hugetlb memory%s", note);
		return;
	}
	char sh[32], ht[32];
	human_bytes(worst->p.ksm_merge_any == 1 ? worst->sm.shared_bytes : 0, sh, sizeof(sh));
	human_bytes(worst->sm.hugetlb_bytes, ht, sizeof(ht));
	ck_set(r, CK_WARN, "pid %d (%s): %s shared, %s hugetlb%s", (int)worst->p.pid, worst->p.comm, sh, ht,
	       nbad > 1 ? ", and more" : "");
	ck_reason(r, "%zu processes asked for merging (%s) but hold memory KSM never merges: it merges only "
		     "private anonymous pages, and MADV_MERGEABLE on shared or hugetlb memory succeeds doing nothing",
		  nbad, worst->p.ksm_merge_any == 1 ? "prctl PR_SET_MEMORY_MERGE" : "madvise");
	ck_fix(r, "keep data that should merge in private anonymous memory (MAP_PRIVATE|MAP_ANONYMOUS, no "
		  "hugetlbfs, QEMU share=off); otherwise expect no savings from pid %d",
	       (int)worst->p.pid);
}

void check_cross_user(struct check_ctx *c, struct check_result *r)
{
	if (!need_ksm(c, r) || !need_procs(c, r))
		return;
	uid_t uids[16];
	size_t nu = 0, per[16] = { 0 };
	bool more = false;
	for (size_t i = 0; i < c->nprocs; i++) {
		const struct check_proc *p = &c->procs[i];
		if (p->p.ksm_merging_pages <= 0)
			continue;
		size_t j;
		for (j = 0; j < nu; j++)
			if (uids[j] == p->uid)
				break;
		if (j == nu) {
			if (nu == sizeof(uids) / sizeof(uids[0])) {
				more = true;
				continue;
			}
			uids[nu++] = p->uid;
		}
		per[j]++;
	}
	char list[256] = "";
	size_t used = 0;
	for (size_t j = 0; j < nu && used < sizeof(list); j++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%suid %u (%zu process%s)", j ? ", " : "",
					 (unsigned)uids[j], per[j], per[j] == 1 ? "" : "es");
	char note[96];
	if (nu < 2) {
		ck_set(r, CK_OK, "%s", nu ? list : "no merged process");
		ck_reason(r, "merged pages belong to at most one user%s", unreadable_note(c, note, sizeof(note)));
		return;
	}
	ck_set(r, CK_WARN, "%zu%s users merged: %s", nu, more ? "+" : "", list);
	ck_reason(r, "KSM merges the memory of %zu users: by timing writes, one can tell whether another's memory "
		     "holds a given page (a side channel); treat mergeable memory as readable by every KSM user",
		  nu);
	ck_fix(r, "merge only within one trust domain: MemoryKSM=yes or `samepage run` only for services of one "
		  "user, <nosharepages/> for other tenants' VMs, or the user-space engine (sp_engine(3)), which "
		  "merges inside one process");
}
