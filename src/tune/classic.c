/* SPDX-License-Identifier: MIT */
/*
 * The classic policy: the 2009 ksmtuned shell script's algorithm, with its
 * integer arithmetic, its messages and its quirks (see ksmtuned(8),
 * "CLASSIC POLICY"). Pure: the caller reads the host and applies the
 * decision, so tests can feed recorded inputs.
 */
#include "tune.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SLEEP_MAX 4294967295LL   /* sleep_millisecs is an unsigned int */

int64_t tune_get(const struct tune_input *in, sp_param p, int64_t def)
{
	int64_t v;
	return sp_sample_get(&in->eng.s, p, &v) == 0 ? v : def;
}

void tune_decision_write_str(struct tune_decision *d, int b, const char *name, const char *value)
{
	if (b >= TUNE_MAX_BATCHES || d->batch[b].n >= TUNE_MAX_WRITES)
		return;
	if (d->nbatches < b + 1)
		d->nbatches = b + 1;
	struct tune_batch *t = &d->batch[b];
	snprintf(t->name[t->n], sizeof(t->name[0]), "%s", name);
	snprintf(t->value[t->n], sizeof(t->value[0]), "%s", value);
	t->n++;
}

void tune_decision_write(struct tune_decision *d, int b, const char *name, int64_t value)
{
	char v[24];
	snprintf(v, sizeof(v), "%" PRId64, value);
	tune_decision_write_str(d, b, name, v);
}

void tune_decision_log(struct tune_decision *d, const char *fmt, ...)
{
	if (d->nlog >= TUNE_MAX_LOG)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->log[d->nlog++], TUNE_LOG_LEN, fmt, ap);
	va_end(ap);
}

/* thres=$[total * KSM_THRES_COEF / 100]; raised to KSM_THRES_CONST. */
int64_t tune_thres(const struct tune_config *c, int64_t total)
{
	int64_t thres = total * c->thres_coef / 100;
	if (c->thres_const > thres)
		thres = c->thres_const;
	return thres;
}

/* sleep=$[KSM_SLEEP_MSEC * 16 * 1024 * 1024 / total]; [ $sleep -le 10 ] && sleep=10.
 * Bash's arithmetic is 64-bit and truncates, like C's. A MemTotal of 0
 * (a broken /proc) would divide by zero in the script; here it gives 10. */
int64_t tune_sleep(const struct tune_config *c, int64_t total)
{
	int64_t sleep = total > 0 ? c->sleep_msec * 16 * 1024 * 1024 / total : 10;
	if (sleep <= 10)
		sleep = 10;
	if (sleep > SLEEP_MAX)
		sleep = SLEEP_MAX;  /* the script's write would fail; the kernel's limit instead */
	return sleep;
}

void classic_init(const struct tune_config *c, int64_t memtotal_kb, struct classic_state *st,
		  struct tune_decision *d)
{
	st->total = memtotal_kb;
	st->npages = 0;
	st->sleep = tune_sleep(c, memtotal_kb);
	st->thres = tune_thres(c, memtotal_kb);
	if (d) {
		tune_decision_log(d, "total %" PRId64, st->total);
		tune_decision_log(d, "sleep %" PRId64, st->sleep);
		tune_decision_log(d, "thres %" PRId64, st->thres);
	}
}

/* increase_npages(): add, then clamp; the minimum is checked first, so a
 * minimum above the maximum wins. */
static int64_t increase_npages(const struct tune_config *c, int64_t npages, int64_t delta)
{
	npages += delta;
	if (npages < c->npages_min)
		npages = c->npages_min;
	else if (npages > c->npages_max)
		npages = c->npages_max;
	return npages;
}

void classic_step(const struct tune_config *c, struct classic_state *st, const struct tune_input *in,
		  struct tune_decision *d)
{
	/* free_memory(): MemFree + Buffers + Cached, not MemAvailable. */
	int64_t free = in->mem.free + in->mem.buffers + in->mem.cached;
	/* committed_memory(): the KSM_PS_METRIC of every matching process. */
	int64_t committed = 0;
	for (size_t i = 0; i < in->nprocs; i++)
		committed += in->procs[i].kb;
	/* total, sleep and thres were computed once, at start-up. */
	int64_t total = st->total, thres = st->thres;

	d->free = free;
	d->committed = committed;
	d->total = total;
	d->thres = thres;
	d->sleep = st->sleep;
	tune_decision_log(d, "committed %" PRId64 " free %" PRId64, committed, free);

	if (committed + thres < total && free > thres) {
		d->action = TUNE_STOP;
		d->pressure = false;
		d->npages = st->npages;
		tune_decision_write(d, 0, "run", 0);
		snprintf(d->reason, sizeof(d->reason),
			 "committed + thres (%" PRId64 " kB) is below total (%" PRId64 " kB) and free (%" PRId64
			 " kB) is above thres (%" PRId64 " kB): KSM is not needed",
			 committed + thres, total, free, thres);
		d->log_before = d->nlog;
		tune_decision_log(d, "%" PRId64 " < %" PRId64 " and free > %" PRId64 ", stop ksm",
				  committed + thres, total, thres);
		return;
	}
	/* The original says "> total" even when the reason is free <= thres. */
	tune_decision_log(d, "%" PRId64 " > %" PRId64 ", start ksm", committed + thres, total);
	d->pressure = true;
	const char *how;
	if (free < thres) {
		st->npages = increase_npages(c, st->npages, c->npages_boost);
		tune_decision_log(d, "%" PRId64 " < %" PRId64 ", boost", free, thres);
		how = "boost";
	} else {
		st->npages = increase_npages(c, st->npages, c->npages_decay);
		tune_decision_log(d, "%" PRId64 " > %" PRId64 ", decay", free, thres);
		how = "decay";
	}
	d->action = TUNE_START;
	d->npages = st->npages;
	/* With the kernel's advisor on, pages_to_scan is not ours to write (the
	 * script's echo would fail there and carry on). */
	bool advisor = tune_get(in, SP_ADVISOR_MODE, 0) != 0;
	if (!advisor)
		tune_decision_write(d, 0, "pages_to_scan", st->npages);
	tune_decision_write(d, 0, "sleep_millisecs", st->sleep);
	tune_decision_write(d, 0, "run", 1);
	if (committed + thres >= total)
		snprintf(d->reason, sizeof(d->reason),
			 "committed + thres (%" PRId64 " kB) is not below total (%" PRId64 " kB); free %s thres: %s",
			 committed + thres, total, free < thres ? "<" : ">=", how);
	else
		snprintf(d->reason, sizeof(d->reason),
			 "free (%" PRId64 " kB) is not above thres (%" PRId64 " kB): %s", free, thres, how);
	if (advisor)
		tune_decision_log(d, "advisor_mode is scan-time: pages_to_scan is the advisor's, not written");
	d->log_before = d->nlog;
	tune_decision_log(d, "KSMCTL start %" PRId64 " %" PRId64, st->npages, st->sleep);
}
