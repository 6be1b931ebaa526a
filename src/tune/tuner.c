/* SPDX-License-Identifier: MIT */
/* One tuning step: read the host and the engine, run the policy, write. */
#include "tuner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int compile(struct tuner *t)
{
	if (t->have_re)
		regfree(&t->re);
	t->have_re = false;
	int r = regcomp(&t->re, t->cfg.pattern, REG_EXTENDED | REG_NOSUB);
	if (r)
		return -EINVAL;  /* the parser checked it; cannot happen */
	t->have_re = true;
	return 0;
}

static int open_backend(struct tuner *t)
{
	if (t->cfg.engine == TUNE_ENGINE_USER)
		return tune_backend_user_open(t->cfg.engine_socket, &t->be);
	return tune_backend_kernel_open(t->root, &t->be);
}

int tuner_open(struct tuner *t, const struct tune_config *cfg, const char *root)
{
	memset(t, 0, sizeof(*t));
	t->cfg = *cfg;
	snprintf(t->root, sizeof(t->root), "%s", root ? root : "");
	t->adaptive = malloc(sizeof(*t->adaptive));
	if (!t->adaptive)
		return -ENOMEM;
	adaptive_init(t->adaptive);
	int r = compile(t);
	if (r == 0)
		r = open_backend(t);
	if (r)
		tuner_close(t);
	return r;
}

void tuner_close(struct tuner *t)
{
	if (t->be)
		t->be->close(t->be);
	t->be = NULL;
	if (t->have_re)
		regfree(&t->re);
	t->have_re = false;
	free(t->adaptive);
	t->adaptive = NULL;
}

int tuner_reconfigure(struct tuner *t, const struct tune_config *cfg)
{
	bool same_policy = cfg->policy == t->cfg.policy;
	bool same_engine = cfg->engine == t->cfg.engine && strcmp(cfg->engine_socket, t->cfg.engine_socket) == 0;
	t->cfg = *cfg;
	int r = compile(t);
	if (r == 0 && !same_engine) {
		/* Another engine: its counters start a new history. */
		struct tune_backend *old = t->be;
		t->be = NULL;
		r = open_backend(t);
		if (r) {
			t->be = old;
			return r;
		}
		old->close(old);
		adaptive_init(t->adaptive);
		t->classic.npages = 0;
	}
	if (!same_policy) {
		adaptive_init(t->adaptive);
		t->classic.npages = 0;
	}
	t->started = false;
	return r;
}

void tune_input_free(struct tune_input *in)
{
	free(in->procs);
	in->procs = NULL;
	in->nprocs = 0;
}

int tuner_gather(struct tuner *t, struct tune_input *in)
{
	memset(in, 0, sizeof(*in));
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	in->now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	in->page_size = sysconf(_SC_PAGESIZE);
	int r = tune_read_meminfo(t->root, &in->mem);
	if (r)
		return r;
	if (tune_read_psi(t->root, &in->psi_some_avg10) != 0)
		in->psi_some_avg10 = -1;
	r = t->be->read(t->be, &in->eng);
	if (r)
		return r;
	if (in->eng.s.page_size > 0)
		in->page_size = in->eng.s.page_size;
	if (t->cfg.policy == TUNE_CLASSIC)
		r = tune_scan_pattern(t->root, &t->re, t->cfg.metric, &in->procs, &in->nprocs, &in->unreadable);
	else if (in->eng.present)
		r = t->be->mergeable(t->be, &in->procs, &in->nprocs, &in->unreadable);
	return r;
}

int tuner_start(struct tuner *t, struct tune_decision *d)
{
	struct tune_meminfo m;
	int r = tune_read_meminfo(t->root, &m);
	if (r)
		return r;
	/* npages is 0 at the first start and kept across a reload. */
	int64_t npages = t->classic.npages;
	classic_init(&t->cfg, m.total, &t->classic, t->cfg.policy == TUNE_CLASSIC ? d : NULL);
	t->classic.npages = npages;
	if (t->cfg.policy == TUNE_ADAPTIVE && d)
		tune_decision_log(d, "adaptive: total %lld thres %lld sleep %lld interval %lld",
				  (long long)m.total, (long long)tune_thres(&t->cfg, m.total),
				  (long long)tune_sleep(&t->cfg, m.total), (long long)t->cfg.adaptive_interval);
	t->started = true;
	return 0;
}

void tuner_step(struct tuner *t, const struct tune_input *in, struct tune_decision *d)
{
	if (t->cfg.policy == TUNE_CLASSIC)
		classic_step(&t->cfg, &t->classic, in, d);
	else
		adaptive_step(&t->cfg, t->adaptive, in, d);
}

int tuner_apply(struct tuner *t, const struct tune_decision *d, char *err, size_t len)
{
	err[0] = 0;
	for (int b = 0; b < d->nbatches; b++) {
		const struct tune_batch *bt = &d->batch[b];
		if (bt->n == 0)
			continue;
		sp_setting set[TUNE_MAX_WRITES];
		for (int i = 0; i < bt->n; i++) {
			set[i].name = bt->name[i];
			set[i].value = bt->value[i];
		}
		sp_diag diag;
		memset(&diag, 0, sizeof(diag));
		int r = t->be->set(t->be, set, (size_t)bt->n, &diag);
		if (r) {
			snprintf(err, len, "%s", diag.msg[0] ? diag.msg : sp_strerror(r));
			return r;
		}
	}
	return 0;
}

void tune_human(int64_t bytes, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = bytes < 0 ? -(double)bytes : (double)bytes;
	size_t u = 0;
	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%s%lld B", bytes < 0 ? "-" : "", (long long)(bytes < 0 ? -bytes : bytes));
	else
		snprintf(buf, len, "%s%.1f %s", bytes < 0 ? "-" : "", v, units[u]);
}
