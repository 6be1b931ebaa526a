/* SPDX-License-Identifier: MIT */
/*
 * Changing knobs as one transaction, for either engine: validate everything
 * against the kernel's rules and the current state, write in an order the
 * kernel accepts, and put back what was written if a later write fails.
 * The engine-specific parts (where values live, who may write) are the
 * struct sp_set_ops callbacks.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct step {
	int param;
	int64_t value;
	int64_t old;
	int rank;
	int index;      /* position in the caller's list */
	bool written;
};

/* Levenshtein distance, for "did you mean" on unknown names. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 63 || lb > 63)
		return 99;
	size_t row[64];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const char *closest_name(const char *name)
{
	const char *best = NULL;
	size_t bestd = 4;
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		size_t dist = edit_distance(name, sp_param_describe(p)->name);
		if (dist < bestd) {
			bestd = dist;
			best = sp_param_describe(p)->name;
		}
	}
	return best;
}

/* Words for an errno the kernel returned from a sysfs write. */
static const char *write_error_words(int err)
{
	switch (err) {
	case -EACCES:
	case -EPERM:
		return "permission denied: changing KSM knobs needs root";
	case -EBUSY:
		return "the kernel refuses while pages are merged (unmerge first)";
	case -EINVAL:
		return "the kernel rejected the value as invalid";
	case -ERANGE:
		return "the kernel says the value is out of range";
	case -ENOMEM:
		return "out of memory (unmerging needs memory for every merged page)";
	case -EINTR:
		return "interrupted by a signal before the kernel finished";
	case -EROFS:
		return "sysfs is mounted read-only here (a container?)";
	default:
		return sp_strerror(err);
	}
}

static void diag_index(sp_diag *d, int i)
{
	if (d)
		d->index = i;
}

static int rank_of(int param, int64_t value)
{
	if (param == SP_RUN)
		return value == 2 ? 0 : 5;  /* unmerge before knobs that need it; start last */
	if (param == SP_ADVISOR_MODE)
		return 1;                   /* switching it resets pages_to_scan */
	if (sp_param_describe(param)->flags & SP_PF_NEEDS_UNMERGED)
		return 2;
	if (param == SP_PAGES_TO_SCAN)
		return 4;
	return 3;
}

static int cmp_steps(const void *a, const void *b)
{
	const struct step *x = a, *y = b;
	if (x->rank != y->rank)
		return x->rank - y->rank;
	return x->index - y->index;
}

/* Put back what the failed transaction wrote, newest first. Returns the
 * number of knobs that could not be restored. */
static int rollback(const struct sp_set_ops *ops, void *ctx, struct step *steps, size_t n,
		    int64_t old_pages_to_scan)
{
	int failed = 0;
	bool advisor_back_to_none = false;
	for (size_t i = n; i-- > 0;) {
		if (!steps[i].written || (steps[i].param == SP_RUN && steps[i].value == 2))
			continue;
		if (ops->write(ctx, steps[i].param, steps[i].old))
			failed++;
		if (steps[i].param == SP_ADVISOR_MODE && steps[i].old == 0)
			advisor_back_to_none = true;
	}
	/* Leaving scan-time resets pages_to_scan to 100: restore the real one. */
	if (advisor_back_to_none && ops->write(ctx, SP_PAGES_TO_SCAN, old_pages_to_scan))
		failed++;
	return failed;
}

/* Validate one setting into *st. */
static int plan_step(const struct sp_set_ops *ops, void *ctx, const sp_setting *s, int index,
		     struct step *st, sp_diag *d)
{
	int p = sp_param_lookup(s->name);
	if (p < 0) {
		const char *near = closest_name(s->name);
		if (near)
			_sp_diag(d, -ENOENT, -1, "unknown parameter '%s' (did you mean %s?)", s->name, near);
		else
			_sp_diag(d, -ENOENT, -1, "unknown parameter '%s'", s->name);
		return -ENOENT;
	}
	int r = sp_param_parse(p, s->value, &st->value, d);
	if (r)
		return r;
	r = ops->read(ctx, p, &st->old);
	if (r == -ENOENT) {
		_sp_diag(d, -EOPNOTSUPP, p, "%s has no %s (%s)", ops->what, sp_param_describe(p)->name,
			 (sp_param_describe(p)->flags & SP_PF_NUMA) ? "built without NUMA support"
								     : "it is too old for that knob");
		return -EOPNOTSUPP;
	}
	if (r) {
		_sp_diag(d, r, p, "cannot read %s: %s", sp_param_describe(p)->name, sp_strerror(r));
		return r;
	}
	st->param = p;
	st->index = index;
	st->rank = rank_of(p, st->value);
	st->written = false;
	return 0;
}

void _sp_diag_reset(sp_diag *d)
{
	if (d) {
		memset(d, 0, sizeof(*d));
		d->index = -1;
		d->param = -1;
	}
}

int _sp_set_apply(const struct sp_set_ops *ops, void *ctx, const sp_setting *set, size_t n,
		  unsigned flags, sp_diag *d)
{
	if (!set && n) {
		_sp_diag(d, -EINVAL, -1, "invalid arguments (no settings)");
		return -EINVAL;
	}
	if (n == 0 || n > 64) {
		_sp_diag(d, -EINVAL, -1, n ? "too many settings at once" : "nothing to set");
		return -EINVAL;
	}
	struct step steps[64 + 1];
	bool seen[SP_PARAM_COUNT] = { false };
	for (size_t i = 0; i < n; i++) {
		int r = plan_step(ops, ctx, &set[i], (int)i, &steps[i], d);
		if (!r && seen[steps[i].param]) {
			_sp_diag(d, -EINVAL, steps[i].param, "%s is given twice",
				 sp_param_describe(steps[i].param)->name);
			r = -EINVAL;
		}
		if (r) {
			if (d)
				d->index = (int)i;
			return r;
		}
		seen[steps[i].param] = true;
	}

	/* Rules that depend on the state after this command. */
	int64_t advisor = 0, pages_shared = 0, run = 0, old_pages_to_scan = 0;
	ops->read(ctx, SP_ADVISOR_MODE, &advisor);
	ops->read(ctx, SP_PAGES_SHARED, &pages_shared);
	ops->read(ctx, SP_RUN, &run);
	ops->read(ctx, SP_PAGES_TO_SCAN, &old_pages_to_scan);
	bool unmerging = false, need_unmerge = false;
	for (size_t i = 0; i < n; i++) {
		if (steps[i].param == SP_ADVISOR_MODE)
			advisor = steps[i].value;
		if (steps[i].param == SP_RUN && steps[i].value == 2)
			unmerging = true;
	}
	for (size_t i = 0; i < n; i++) {
		const sp_param_info *in = sp_param_describe(steps[i].param);
		if ((in->flags & SP_PF_NEEDS_NO_ADVISOR) && advisor != 0) {
			_sp_diag(d, -EINVAL, steps[i].param,
				 "%s cannot be set while advisor_mode is scan-time: the advisor chooses it "
				 "(add advisor_mode=none to this command to take it back)", in->name);
			diag_index(d, (int)i);
			return -EINVAL;
		}
		if ((in->flags & SP_PF_NEEDS_UNMERGED) && steps[i].value != steps[i].old &&
		    pages_shared > 0 && !unmerging) {
			if (!(flags & SP_SET_UNMERGE_FIRST)) {
				_sp_diag(d, -EBUSY, steps[i].param,
					 "%s can only change while no pages are merged (pages_shared is %lld): "
					 "use --unmerge-first, or unmerge first with `samepage unmerge`",
					 in->name, (long long)pages_shared);
				diag_index(d, (int)i);
				return -EBUSY;
			}
			need_unmerge = true;
		}
	}

	/* Permission: refuse before writing anything. */
	for (size_t i = 0; ops->may_write && i < n; i++) {
		int r = ops->may_write(ctx, steps[i].param, d);
		if (r) {
			diag_index(d, (int)i);
			return r;
		}
	}
	if (flags & SP_SET_DRY_RUN)
		return 0;

	size_t total = n;
	if (need_unmerge) {
		steps[total] = (struct step){ .param = SP_RUN, .value = 2, .old = run, .rank = 0,
					      .index = -1 };
		total++;
	}
	qsort(steps, total, sizeof(steps[0]), cmp_steps);

	for (size_t i = 0; i < total; i++) {
		int r = ops->write(ctx, steps[i].param, steps[i].value);
		if (r) {
			int lost = rollback(ops, ctx, steps, i, old_pages_to_scan);
			const char *name = sp_param_describe(steps[i].param)->name;
			char val[32];
			sp_param_format(steps[i].param, steps[i].value, val, sizeof(val));
			bool unmerged = need_unmerge && i > 0;
			_sp_diag(d, r, steps[i].param, "writing %s=%s failed: %s; %s%s", name, val,
				 write_error_words(r),
				 i == 0 ? "nothing was changed"
					: lost ? "some earlier changes could not be put back"
					       : "the earlier knob changes were put back",
				 unmerged ? " (pages were already unmerged; ksmd merges them again)" : "");
			if (d)
				d->index = steps[i].index;
			if (need_unmerge && !seen[SP_RUN])
				ops->write(ctx, SP_RUN, run);
			return r;
		}
		steps[i].written = true;
	}
	/* --unmerge-first: ksmd goes back to what it was doing. */
	if (need_unmerge && !seen[SP_RUN] && run != 2) {
		int r = ops->write(ctx, SP_RUN, run);
		if (r) {
			_sp_diag(d, r, SP_RUN, "knobs set, but restoring run=%lld failed: %s",
				 (long long)run, write_error_words(r));
			return r;
		}
	}
	return 0;
}
