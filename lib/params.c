/* SPDX-License-Identifier: MIT */
/*
 * The parameter table: every KSM knob and counter with the kernel's name,
 * default, range and rules, and the parsing of values by those rules.
 * Both engines use it, so a knob means the same thing everywhere.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define U32 4294967295LL
#define I32 2147483647LL
#define I64 INT64_MAX

#define KNOB(id, nm, fl, lo, hi, d, ver, h) \
	[id] = { .name = nm, .flags = SP_PF_KNOB | (fl), .min = lo, .max = hi, .def = d, .since = ver, .help = h }
#define CTR(id, nm, fl, ver, h) \
	[id] = { .name = nm, .flags = SP_PF_COUNTER | (fl), .since = ver, .help = h }

/* Ranges are the kernel's (kstrtouint => 0..2^32-1 etc., see mm/ksm.c). */
static const sp_param_info params[SP_PARAM_COUNT] = {
	KNOB(SP_RUN, "run", 0, 0, 2, 0, "2.6.32",
	     "0 stop ksmd (keep merged pages), 1 run ksmd, 2 stop and unmerge every page"),
	KNOB(SP_PAGES_TO_SCAN, "pages_to_scan", SP_PF_NEEDS_NO_ADVISOR, 0, U32, 100, "2.6.32",
	     "pages to scan before ksmd sleeps"),
	KNOB(SP_SLEEP_MILLISECS, "sleep_millisecs", 0, 0, U32, 20, "2.6.32",
	     "milliseconds ksmd sleeps between batches"),
	KNOB(SP_MERGE_ACROSS_NODES, "merge_across_nodes", SP_PF_BOOL | SP_PF_NEEDS_UNMERGED | SP_PF_NUMA,
	     0, 1, 1, "3.9", "1 merge pages from all NUMA nodes, 0 only within a node"),
	KNOB(SP_USE_ZERO_PAGES, "use_zero_pages", SP_PF_BOOL, 0, 1, 0, NULL,
	     "merge empty pages with the kernel's zero page (affects later merges only)"),
	KNOB(SP_MAX_PAGE_SHARING, "max_page_sharing", SP_PF_NEEDS_UNMERGED, 2, I32, 256, NULL,
	     "most sharers of one merged page before a duplicate is started"),
	KNOB(SP_STABLE_NODE_CHAINS_PRUNE_MILLISECS, "stable_node_chains_prune_millisecs", 0, 0, U32,
	     2000, NULL, "how often stale stable-node chain metadata is pruned"),
	KNOB(SP_SMART_SCAN, "smart_scan", SP_PF_BOOL, 0, 1, 1, NULL,
	     "skip pages that repeatedly failed to merge"),
	KNOB(SP_ADVISOR_MODE, "advisor_mode", SP_PF_ADVISOR, 0, 1, 0, NULL,
	     "none, or scan-time: tune pages_to_scan to reach advisor_target_scan_time"),
	KNOB(SP_ADVISOR_MAX_CPU, "advisor_max_cpu", SP_PF_STRICTER, 0, 100, 70, NULL,
	     "most CPU percent of one core the advisor lets ksmd use"),
	KNOB(SP_ADVISOR_MIN_PAGES_TO_SCAN, "advisor_min_pages_to_scan", 0, 0, I64, 500, NULL,
	     "pages_to_scan the advisor starts from"),
	KNOB(SP_ADVISOR_MAX_PAGES_TO_SCAN, "advisor_max_pages_to_scan", 0, 0, I64, 30000, NULL,
	     "largest pages_to_scan the advisor may choose"),
	KNOB(SP_ADVISOR_TARGET_SCAN_TIME, "advisor_target_scan_time", 0, 1, I64, 200, NULL,
	     "seconds the advisor aims at for one full scan"),
	CTR(SP_PAGES_SHARED, "pages_shared", 0, "2.6.32", "merged pages in use (one per content)"),
	CTR(SP_PAGES_SHARING, "pages_sharing", 0, "2.6.32", "page mappings that share them: pages saved"),
	CTR(SP_PAGES_UNSHARED, "pages_unshared", 0, "2.6.32", "unique pages checked repeatedly"),
	CTR(SP_PAGES_VOLATILE, "pages_volatile", 0, "2.6.32", "pages changing too fast to merge"),
	CTR(SP_PAGES_SCANNED, "pages_scanned", 0, NULL, "pages scanned since KSM started"),
	CTR(SP_PAGES_SKIPPED, "pages_skipped", 0, NULL, "pages smart_scan skipped"),
	CTR(SP_FULL_SCANS, "full_scans", 0, "2.6.32", "complete passes over all mergeable memory"),
	CTR(SP_STABLE_NODE_CHAINS, "stable_node_chains", 0, NULL, "contents that hit max_page_sharing"),
	CTR(SP_STABLE_NODE_DUPS, "stable_node_dups", 0, NULL, "duplicate merged pages in those chains"),
	CTR(SP_KSM_ZERO_PAGES, "ksm_zero_pages", 0, NULL, "empty pages merged with the zero page"),
	CTR(SP_GENERAL_PROFIT, "general_profit", SP_PF_SIGNED, "6.4",
	    "bytes saved minus KSM's metadata; may be negative"),
	CTR(SP_COW_KSM, "cow_ksm", SP_PF_VMSTAT, NULL, "writes that broke a merged page (copy on write)"),
	CTR(SP_KSM_SWPIN_COPY, "ksm_swpin_copy", SP_PF_VMSTAT, NULL,
	    "merged pages copied when swapped in"),
	CTR(SP_PAGES_SKIPPED_MAX_MAP_COUNT, "pages_skipped_max_map_count", SP_PF_ENGINE, NULL,
	    "merges not done because vm.max_map_count was near"),
};

const sp_param_info *sp_param_describe(sp_param p)
{
	if ((int)p < 0 || p >= SP_PARAM_COUNT)
		return NULL;
	return &params[p];
}

int sp_param_lookup(const char *name)
{
	if (!name)
		return -ENOENT;
	/* libvirt's node-memory-tune names: shm_<kernel name> */
	if (strncmp(name, "shm_", 4) == 0)
		name += 4;
	for (int i = 0; i < SP_PARAM_COUNT; i++)
		if (strcmp(params[i].name, name) == 0)
			return i;
	return -ENOENT;
}

void _sp_diag(sp_diag *d, int err, int param, const char *fmt, ...)
{
	if (!d)
		return;
	d->err = err;
	d->param = param;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
	va_end(ap);
}

static int parse_bool(const char *t, int64_t *out)
{
	static const char *yes[] = { "1", "y", "yes", "on", "true" };
	static const char *no[] = { "0", "n", "no", "off", "false" };
	for (size_t i = 0; i < 5; i++) {
		if (strcasecmp(t, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(t, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

/* Decimal like the kernel's kstrto*: optional sign, digits, one optional
 * trailing newline, nothing else. -EINVAL if not a number, -ERANGE if it
 * does not fit in int64. */
int _sp_parse_i64(const char *t, int64_t *out)
{
	int neg = 0;
	if (*t == '+' || *t == '-')
		neg = *t++ == '-';
	if (*t < '0' || *t > '9')
		return -EINVAL;
	uint64_t v = 0;
	int overflow = 0;
	for (; *t >= '0' && *t <= '9'; t++) {
		unsigned dgt = (unsigned)(*t - '0');
		if (v > (UINT64_MAX - dgt) / 10)
			overflow = 1;
		else
			v = v * 10 + dgt;
	}
	if (*t == '\n')
		t++;
	if (*t)
		return -EINVAL;
	if (overflow || v > (uint64_t)INT64_MAX + (uint64_t)neg)
		return -ERANGE;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

int sp_param_parse(sp_param p, const char *text, int64_t *out, sp_diag *d)
{
	if (d)
		d->index = -1;
	const sp_param_info *in = sp_param_describe(p);
	if (!in) {
		_sp_diag(d, -ENOENT, -1, "unknown parameter");
		return -ENOENT;
	}
	if (!(in->flags & SP_PF_KNOB)) {
		_sp_diag(d, -EPERM, p, "%s is a read-only counter, not a knob", in->name);
		return -EPERM;
	}
	if (!text || !*text) {
		_sp_diag(d, -EINVAL, p, "%s: empty value", in->name);
		return -EINVAL;
	}
	if (in->flags & SP_PF_ADVISOR) {
		if (strcmp(text, "none") == 0 || strcmp(text, "none\n") == 0) {
			*out = 0;
			return 0;
		}
		if (strcmp(text, "scan-time") == 0 || strcmp(text, "scan-time\n") == 0) {
			*out = 1;
			return 0;
		}
		_sp_diag(d, -EINVAL, p, "advisor_mode: '%s' is not a mode: use none or scan-time", text);
		return -EINVAL;
	}
	if ((in->flags & SP_PF_BOOL) && parse_bool(text, out) == 0)
		return 0;

	int64_t v;
	int r = _sp_parse_i64(text, &v);
	if (r == -EINVAL) {
		_sp_diag(d, -EINVAL, p, "%s: '%s' is not a number (expected %s%lld to %lld)", in->name,
			 text, (in->flags & SP_PF_BOOL) ? "0/1, yes/no, on/off, or " : "",
			 (long long)in->min, (long long)in->max);
		return -EINVAL;
	}
	if (r == -ERANGE || v < in->min || v > in->max) {
		if (p == SP_RUN)
			_sp_diag(d, -ERANGE, p,
				 "run: %s is out of range: 0 stops ksmd, 1 runs it, 2 stops it and unmerges every page",
				 text);
		else if (p == SP_MAX_PAGE_SHARING && r == 0 && v < in->min)
			_sp_diag(d, -ERANGE, p,
				 "max_page_sharing: %s is too small: a merged page always has at least 2 sharers (range 2 to %lld)",
				 text, (long long)in->max);
		else
			_sp_diag(d, -ERANGE, p, "%s: %s is out of range (%lld to %lld%s)", in->name, text,
				 (long long)in->min, (long long)in->max,
				 (in->flags & SP_PF_STRICTER) ? ", a percentage of one CPU" : "");
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int sp_param_format(sp_param p, int64_t v, char *buf, size_t len)
{
	const sp_param_info *in = sp_param_describe(p);
	if (!in || !buf || !len)
		return -EINVAL;
	int n;
	if (in->flags & SP_PF_ADVISOR)
		n = snprintf(buf, len, "%s", v ? "scan-time" : "none");
	else
		n = snprintf(buf, len, "%lld", (long long)v);
	return (n < 0 || (size_t)n >= len) ? -ENOSPC : 0;
}

int sp_sample_get(const sp_sample *s, sp_param p, int64_t *out)
{
	if (!s || (int)p < 0 || p >= SP_PARAM_COUNT)
		return -EINVAL;
	if (!(s->present & (1ull << p)))
		return -ENOENT;
	*out = s->value[p];
	return 0;
}

void sp_savings_compute(const sp_sample *s, sp_savings *out)
{
	memset(out, 0, sizeof(*out));
	int64_t sharing = 0, shared = 0, unshared = 0, volatil = 0, zero = 0, profit;
	long ps = s->page_size > 0 ? s->page_size : 4096;
	sp_sample_get(s, SP_PAGES_SHARING, &sharing);
	sp_sample_get(s, SP_PAGES_SHARED, &shared);
	sp_sample_get(s, SP_PAGES_UNSHARED, &unshared);
	sp_sample_get(s, SP_PAGES_VOLATILE, &volatil);
	sp_sample_get(s, SP_KSM_ZERO_PAGES, &zero);
	out->saved_bytes = (sharing + zero) * ps;
	if (sp_sample_get(s, SP_GENERAL_PROFIT, &profit) == 0) {
		out->profit_bytes = profit;
	} else {
		/* Before 6.4: every scanned page has an rmap item; these four
		 * counters add up to the rmap items (pages_volatile's definition). */
		int64_t rmap = shared + sharing + unshared + volatil;
		out->profit_bytes = out->saved_bytes - rmap * SP_RMAP_ITEM_BYTES;
		out->profit_estimated = true;
	}
	out->metadata_bytes = out->saved_bytes - out->profit_bytes;
	out->sharing_ratio = shared ? (double)sharing / (double)shared : 0.0;
	out->unshared_ratio = sharing ? (double)unshared / (double)sharing : 0.0;
}
