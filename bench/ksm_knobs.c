/* SPDX-License-Identifier: MIT */
/*
 * Kernel KSM for the benchmarks: lock, knobs saved and restored, the pace,
 * interference checks. See ksm_knobs.h.
 */
#include "ksm_knobs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

int bench_lock_take(const char *prog)
{
	int fd = open(BENCH_LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	int r = fd < 0 ? -1 : flock(fd, LOCK_EX | LOCK_NB);
	if (r && fd >= 0 && errno == EWOULDBLOCK) {
		fprintf(stderr, "%s: waiting for %s\n", prog, BENCH_LOCK_PATH);
		while ((r = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
			;
	}
	if (r) {
		perror(BENCH_LOCK_PATH);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

void bench_lock_release(int fd)
{
	if (fd < 0)
		return;
	flock(fd, LOCK_UN);
	close(fd);
}

int ksm_knobs_save(sp_ksm *k, struct ksm_saved *sv)
{
	sp_sample s;
	int e = sp_ksm_sample(k, &s);
	if (e)
		return e;
	int64_t adv = 0;
	sp_sample_get(&s, SP_ADVISOR_MODE, &adv);
	sv->n = 0;
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		if (!(in->flags & SP_PF_KNOB) || !(s.present & (1ull << p)))
			continue;
		if (p == SP_PAGES_TO_SCAN && adv)
			continue;  /* the advisor's own choice: not writable */
		sp_param_format(p, s.value[p], sv->val[sv->n], sizeof(sv->val[0]));
		sv->set[sv->n] = (sp_setting){ in->name, sv->val[sv->n] };
		sv->n++;
	}
	return 0;
}

int ksm_knobs_restore(sp_ksm *k, const struct ksm_saved *sv, const char *prog)
{
	sp_diag d;
	sp_ksm_set_run(k, 2, &d);
	int e = sp_ksm_set(k, sv->set, sv->n, SP_SET_UNMERGE_FIRST, &d);
	if (e) {
		fprintf(stderr, "%s: restoring the KSM knobs failed: %s\n", prog, d.msg);
		return e;
	}
	struct ksm_saved now;
	if (ksm_knobs_save(k, &now) == 0)
		for (size_t i = 0; i < sv->n && i < now.n; i++)
			if (strcmp(sv->val[i], now.val[i]) != 0) {
				fprintf(stderr, "%s: knob %s is %s, was %s\n", prog, sv->set[i].name, now.val[i],
					sv->val[i]);
				e = -EIO;
			}
	return e;
}

void ksm_pace_settings(const struct ksm_pace *p, struct ksm_pace_set *out)
{
	snprintf(out->pts, sizeof(out->pts), "%ld", p->pages_to_scan);
	snprintf(out->slp, sizeof(out->slp), "%ld", p->sleep_ms);
	snprintf(out->mps, sizeof(out->mps), "%u", p->max_page_sharing);
	sp_setting set[] = {
		{ "advisor_mode", "none" },
		{ "max_page_sharing", out->mps },
		{ "use_zero_pages", p->use_zero_pages ? "1" : "0" },
		{ "smart_scan", p->smart_scan ? "1" : "0" },
		{ "pages_to_scan", out->pts },
		{ "sleep_millisecs", out->slp },
	};
	memcpy(out->set, set, sizeof(set));
	out->n = sizeof(set) / sizeof(set[0]);
}

int ksm_prepare(sp_ksm *k, const struct ksm_pace *p, const char *prog)
{
	sp_diag d;
	int e = sp_ksm_set_run(k, 2, &d);
	if (e) {
		fprintf(stderr, "%s: run=2: %s\n", prog, d.msg);
		return e;
	}
	int64_t shared = 0, sharing = 0, zero = 0;
	sp_ksm_read(k, SP_PAGES_SHARED, &shared);
	sp_ksm_read(k, SP_PAGES_SHARING, &sharing);
	sp_ksm_read(k, SP_KSM_ZERO_PAGES, &zero);
	if (shared || sharing || zero)
		fprintf(stderr, "%s: warning: after run=2 the kernel still counts "
				"pages_shared=%lld pages_sharing=%lld ksm_zero_pages=%lld\n",
			prog, (long long)shared, (long long)sharing, (long long)zero);
	if (!p)
		return 0;
	struct ksm_pace_set ps;
	ksm_pace_settings(p, &ps);
	e = sp_ksm_set(k, ps.set, ps.n, SP_SET_UNMERGE_FIRST, &d);
	if (e)
		fprintf(stderr, "%s: setting the kernel's knobs: %s\n", prog, d.msg);
	return e;
}

static bool is_ours(pid_t pid, const pid_t *ours, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ours[i] == pid)
			return true;
	return false;
}

void ksm_warn_other_users(sp_ksm *k, const pid_t *ours, size_t n, const char *prog)
{
	sp_proc_ksm *list;
	size_t nl, unreadable;
	if (sp_proc_ksm_list(k, &list, &nl, &unreadable))
		return;
	for (size_t i = 0; i < nl; i++)
		if (!is_ours(list[i].pid, ours, n) && (list[i].ksm_mergeable == 1 || list[i].ksm_merge_any == 1))
			fprintf(stderr, "%s: warning: process %d (%s) has KSM-mergeable memory: "
					"ksmd's time and the kernel's counters include it\n",
				prog, (int)list[i].pid, list[i].comm);
	free(list);
}

bool ksm_check_alone(sp_ksm *k, const struct ksm_pace *p, const pid_t *ours, size_t n, char *why, size_t len)
{
	sp_sample s;
	if (sp_ksm_sample(k, &s))
		return true;
	const struct {
		sp_param p;
		int64_t want;
	} knobs[] = {
		{ SP_RUN, 1 }, { SP_PAGES_TO_SCAN, p->pages_to_scan }, { SP_SLEEP_MILLISECS, p->sleep_ms },
		{ SP_USE_ZERO_PAGES, p->use_zero_pages }, { SP_MAX_PAGE_SHARING, p->max_page_sharing },
		{ SP_SMART_SCAN, p->smart_scan }, { SP_ADVISOR_MODE, 0 },
	};
	int64_t v;
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
		if (sp_sample_get(&s, knobs[i].p, &v) == 0 && v != knobs[i].want) {
			snprintf(why, len, "%s changed to %lld (we set %lld) by another program",
				 sp_param_describe(knobs[i].p)->name, (long long)v, (long long)knobs[i].want);
			return false;
		}
	/* ksmd merges and the writers break merged pages between the readings,
	 * so a few pages either way mean nothing; many more pages merged than
	 * ours, twice in a row, mean another process. */
	int64_t extra = 0, zextra = 0, total = 0, ztotal = 0;
	for (int i = 0; i < 2; i++) {
		if (i) {
			struct timespec ts = { 0, 100 * 1000000L };
			nanosleep(&ts, NULL);
			if (sp_ksm_sample(k, &s))
				return true;
		}
		int64_t merging = 0, zero = 0;
		for (size_t j = 0; j < n; j++) {
			sp_proc_ksm pk;
			if (sp_proc_ksm_read(k, ours[j], &pk))
				return true;
			merging += pk.ksm_merging_pages;
			zero += pk.ksm_zero_pages;
		}
		/* The kernel's totals before and after reading the processes: the
		 * smaller of the two cannot be ahead of what the processes showed. */
		sp_sample after;
		if (sp_ksm_sample(k, &after))
			return true;
		total = s.value[SP_PAGES_SHARED] + s.value[SP_PAGES_SHARING];
		int64_t t2 = after.value[SP_PAGES_SHARED] + after.value[SP_PAGES_SHARING];
		total = t2 < total ? t2 : total;
		ztotal = s.value[SP_KSM_ZERO_PAGES] < after.value[SP_KSM_ZERO_PAGES] ? s.value[SP_KSM_ZERO_PAGES]
										     : after.value[SP_KSM_ZERO_PAGES];
		extra = total - merging;
		zextra = ztotal - zero;
		if (extra <= 16 && zextra <= 16)
			return true;
	}
	if (extra > 16)
		snprintf(why, len, "the kernel counts %lld merged pages more than ours (%lld): another process merges too",
			 (long long)extra, (long long)total);
	else
		snprintf(why, len, "the kernel counts %lld zero pages more than ours (%lld): another process merges too",
			 (long long)zextra, (long long)ztotal);
	return false;
}
