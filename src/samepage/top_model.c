/* SPDX-License-Identifier: MIT */
/* samepage top: frames from kernel KSM or samepaged, rates between them and
 * the history behind the sparklines. */
#include "top_model.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void top_ring_push(struct top_ring *r, double v)
{
	r->v[r->next] = v;
	r->next = (r->next + 1) % TOP_HISTORY;
	if (r->n < TOP_HISTORY)
		r->n++;
}

double top_ring_get(const struct top_ring *r, size_t count, size_t i)
{
	if (count > r->n)
		count = r->n;
	size_t first = (r->next + TOP_HISTORY - count) % TOP_HISTORY;
	return r->v[(first + i) % TOP_HISTORY];
}

int top_model_open(struct top_model *m, const struct cli *c, bool user)
{
	memset(m, 0, sizeof(*m));
	m->user = user;
	int code = 0;
	if (user)
		m->ctl = cli_open_ctl(c, NULL, 0, &code);
	else
		m->ksm = cli_open_ksm(c, true, &code);
	return code;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int by_profit(const void *a, const void *b)
{
	const sp_proc_ksm *x = a, *y = b;
	if (x->ksm_process_profit != y->ksm_process_profit)
		return x->ksm_process_profit > y->ksm_process_profit ? -1 : 1;
	return (x->pid > y->pid) - (x->pid < y->pid);
}

/* Shared with the exporter (cli.h). */
void proc_sort_by_profit(sp_proc_ksm *list, size_t n)
{
	if (n > 1)
		qsort(list, n, sizeof(*list), by_profit);
}

static void read_kernel(struct top_model *m, struct top_frame *f)
{
	int r = sp_ksm_sample(m->ksm, &f->s);
	if (r) {
		snprintf(f->error, sizeof(f->error), "cannot read KSM: %s", sp_strerror(r));
		return;
	}
	f->ok = true;
	sp_ksmd_info kd;
	if (sp_ksmd_info_read(m->ksm, &kd) == 0) {
		f->cpu_seconds = kd.cpu_seconds;
		f->merger_pid = kd.pid;
	}
	if (sp_proc_ksm_list(m->ksm, &f->procs, &f->nprocs, &f->unreadable) != 0)
		f->nprocs = 0;
}

static void read_user(struct top_model *m, struct top_frame *f)
{
	/* the daemon may have been restarted since: connect again */
	if (!m->ctl && sp_ctl_open(NULL, &m->ctl) != 0) {
		m->ctl = NULL;
		snprintf(f->error, sizeof(f->error), "samepaged is not running (waiting for it)");
		return;
	}
	int r = sp_ctl_sample(m->ctl, &f->s);
	if (r) {
		snprintf(f->error, sizeof(f->error), "samepaged did not answer: %s", sp_strerror(r));
		sp_ctl_close(m->ctl);
		m->ctl = NULL;
		return;
	}
	f->ok = true;
	sp_ctl_info info;
	if (sp_ctl_info_get(m->ctl, &info) == 0) {
		f->cpu_seconds = info.cpu_seconds;
		f->merger_pid = info.daemon_pid;
	}
	if (sp_ctl_processes(m->ctl, &f->procs, &f->nprocs) != 0)
		f->nprocs = 0;
	else
		proc_sort_by_profit(f->procs, f->nprocs);
}

/* Per second between frames; < 0 when either lacks it or it went back. */
static double rate(const struct top_frame *a, const struct top_frame *b, sp_param p)
{
	int64_t x, y;
	double dt = b->t - a->t;
	if (!a->ok || !b->ok || dt <= 0 || sp_sample_get(&a->s, p, &x) || sp_sample_get(&b->s, p, &y) || y < x)
		return -1;
	return (double)(y - x) / dt;
}

void top_model_refresh(struct top_model *m)
{
	free(m->prev.procs);
	m->prev = m->cur;
	struct top_frame *f = &m->cur;
	memset(f, 0, sizeof(*f));
	f->cpu_seconds = -1;
	if (m->user)
		read_user(m, f);
	else
		read_kernel(m, f);
	f->t = now_s();
	if (f->ok)
		sp_savings_compute(&f->s, &f->sav);
	f->scans_per_s = rate(&m->prev, f, SP_FULL_SCANS);
	f->pages_per_s = rate(&m->prev, f, SP_PAGES_SCANNED);
	f->cow_per_s = rate(&m->prev, f, SP_COW_KSM);
	f->cpu_percent = -1;
	if (m->prev.ok && f->ok && m->prev.cpu_seconds >= 0 && f->cpu_seconds >= m->prev.cpu_seconds &&
	    m->prev.merger_pid == f->merger_pid && f->t > m->prev.t)
		f->cpu_percent = 100.0 * (f->cpu_seconds - m->prev.cpu_seconds) / (f->t - m->prev.t);
	if (!f->ok)
		return;
	/* unknown rates are drawn as 0 so the lines stay aligned in time */
	top_ring_push(&m->saved, (double)f->sav.saved_bytes);
	top_ring_push(&m->pages, f->pages_per_s > 0 ? f->pages_per_s : 0);
	top_ring_push(&m->cpu, f->cpu_percent > 0 ? f->cpu_percent : 0);
	top_ring_push(&m->cow, f->cow_per_s > 0 ? f->cow_per_s : 0);
}

void top_model_close(struct top_model *m)
{
	free(m->cur.procs);
	free(m->prev.procs);
	if (m->ksm)
		sp_ksm_close(m->ksm);
	if (m->ctl)
		sp_ctl_close(m->ctl);
	memset(m, 0, sizeof(*m));
}
