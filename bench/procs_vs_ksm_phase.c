/* SPDX-License-Identifier: MIT */
/*
 * One phase of procs_vs_ksm: N workers under one merger at one pace.
 *
 *   (samepaged: start it on a private socket, run=0, the pace's knobs)
 *   -> N workers build, register and start writing -> baseline latency
 *   -> run=1: poll savings until 99 % of the possible (or the timeout)
 *   -> writers paused: whole passes over memory that no longer changes,
 *      from one full_scans tick to a later one
 *   -> memory and counters -> every page of every worker verified, then
 *      the merger released and every page verified again.
 *
 * Merger CPU: ksmd's process CPU clock for the kernel; for samepaged the
 * daemon's process CPU clock plus every worker's engine thread (its thread
 * CPU clock, read by the worker itself), so nothing is estimated.
 *
 * --floor phases have no merger: the workers make the mapping calls a
 * merger in user space cannot avoid (floor_converge), then the same
 * latency and verification steps; the kernel's phases against them stop
 * once converged (converge_only).
 */
#include "procs_vs_ksm.h"

#include <errno.h>
#include <fcntl.h>
#include <samepage.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

#define PROG "procs_vs_ksm"
#define POLL_NS 10000000L       /* savings are read every 10 ms while converging, */
#define POLL_MAX_NS 100000000L  /* or less often while the next mark is far */
#define TICK_POLL_NS 20000000L  /* full_scans every 20 ms in the steady window */
#define CMD_TIMEOUT 120.0       /* seconds a worker may take to answer */

struct daemon {
	char dir[64], sock[128], log[128];
	pid_t pid;
	sp_ctl *ctl;
};

struct ph {
	const struct pv_cfg *c;
	sp_ksm *k;
	pid_t ksmd;
	struct daemon d;
	struct pv_worker w[PV_MAX_PROCS];
	pid_t pids[PV_MAX_PROCS];
	unsigned n;                  /* workers started */
};

static void nap(long ns)
{
	struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
	while (nanosleep(&ts, &ts) && !pv_interrupted)
		;
}

static void fail(struct pv_result *r, const char *fmt, const char *a, int err)
{
	if (r->status)
		return;
	r->status = 1;
	char what[200];
	snprintf(what, sizeof(what), fmt, a);
	snprintf(r->error, sizeof(r->error), "%s%s%s", what, err ? ": " : "", err ? sp_strerror(err) : "");
}

const char *pv_merger_name(const struct pv_cfg *c)
{
	return c->daemon ? "samepaged" : c->floor ? "the floor" : "kernel KSM";
}

/* ------------------------------------------------------------ samepaged */

static int daemon_start(struct ph *ph, struct pv_result *r)
{
	struct daemon *d = &ph->d;
	snprintf(d->dir, sizeof(d->dir), "/tmp/procs_vs_ksm.XXXXXX");
	if (!mkdtemp(d->dir)) {  /* 0700: the socket's directory must be private */
		fail(r, "mkdtemp %s", d->dir, -errno);
		return -1;
	}
	snprintf(d->sock, sizeof(d->sock), "%s/d/samepaged.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/samepaged.log", d->dir);
	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0) {
		fail(r, "fork for %s", ph->c->samepaged, -errno);
		return -1;
	}
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGINT, SIG_IGN);
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(ph->c->samepaged, "samepaged", "-v", "--socket", d->sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && !pv_interrupted; i++) {
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
			d->pid = 0;
			fail(r, "%s exited at once (see its log)", ph->c->samepaged, 0);
			return -1;
		}
		if (sp_ctl_open(d->sock, &d->ctl) == 0)
			break;
		nap(10000000L);
	}
	if (!d->ctl) {
		fail(r, "%s does not answer on its socket", ph->c->samepaged, 0);
		return -1;
	}
	/* Stopped until the measurement starts; the pace of the kernel phase. */
	struct ksm_pace_set ps;
	ksm_pace_settings(&ph->c->pace, &ps);
	ps.set[ps.n++] = (sp_setting){ "run", "0" };
	sp_diag dg;
	int e = sp_ctl_set(d->ctl, ps.set, ps.n, 0, &dg);
	if (e) {
		fail(r, "setting samepaged's knobs: %s", dg.msg, 0);
		return -1;
	}
	return 0;
}

/* Count the log's complaints: a client dropped or a grant timed out. */
static void daemon_log_scan(struct daemon *d, struct pv_result *r)
{
	FILE *f = fopen(d->log, "r");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		if (!strstr(line, "disconnected") && !strstr(line, "did not finish") && !strstr(line, "error") &&
		    !strstr(line, "fail"))
			continue;
		if (r->daemon_log_errors++ == 0) {
			line[strcspn(line, "\n")] = 0;
			snprintf(r->daemon_log_first, sizeof(r->daemon_log_first), "%s", line);
		}
	}
	if (f)
		fclose(f);
}

static void daemon_stop(struct ph *ph, struct pv_result *r)
{
	struct daemon *d = &ph->d;
	if (d->ctl)
		sp_ctl_close(d->ctl);
	d->ctl = NULL;
	if (d->pid > 0) {
		int st = 0;
		pid_t got = 0;
		kill(d->pid, SIGTERM);
		for (int i = 0; i < 500 && (got = waitpid(d->pid, &st, WNOHANG)) == 0; i++)
			nap(10000000L);
		if (got != d->pid) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			r->daemon_exit = -1;
		} else {
			r->daemon_exit = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
		d->pid = 0;
	}
	if (!d->dir[0])
		return;
	daemon_log_scan(d, r);
	if (r->daemon_log_errors || r->daemon_exit) {
		fprintf(stderr, PROG ": samepaged's log kept: %s\n", d->log);
	} else {
		char sub[96];
		snprintf(sub, sizeof(sub), "%s/d", d->dir);
		unlink(d->sock);
		rmdir(sub);
		unlink(d->log);
		rmdir(d->dir);
	}
	d->dir[0] = 0;
}

/* ------------------------------------------------------------ the merger */

static sp_sample m_sample(struct ph *ph)
{
	sp_sample s;
	memset(&s, 0, sizeof(s));
	if (ph->c->daemon)
		sp_ctl_sample(ph->d.ctl, &s);
	else
		sp_ksm_sample(ph->k, &s);
	return s;
}

/* Pages saved, by the kernel's definition: pages_sharing + ksm_zero_pages. */
static int64_t m_saved(struct ph *ph)
{
	int64_t v = 0, z = 0;
	if (!ph->c->daemon) {
		sp_ksm_read(ph->k, SP_PAGES_SHARING, &v);
		sp_ksm_read(ph->k, SP_KSM_ZERO_PAGES, &z);
		return v + z;
	}
	sp_sample s = m_sample(ph);
	return s.value[SP_PAGES_SHARING] + s.value[SP_KSM_ZERO_PAGES];
}

static int64_t m_full_scans(struct ph *ph)
{
	int64_t v = 0;
	if (!ph->c->daemon) {
		sp_ksm_read(ph->k, SP_FULL_SCANS, &v);
		return v;
	}
	return m_sample(ph).value[SP_FULL_SCANS];
}

struct cpu_now {
	double merger, daemon, engines, writers;
	int64_t preempted;
};

/* Every CPU clock at once: ksmd, or the daemon and every engine thread. */
static int cpu_read(struct ph *ph, struct cpu_now *t)
{
	memset(t, 0, sizeof(*t));
	for (unsigned i = 0; i < ph->n; i++) {
		struct pv_cpu s;
		int e = pv_worker_cmd(&ph->w[i], PV_CPU, &s, sizeof(s), CMD_TIMEOUT);
		if (e)
			return e;
		t->engines += s.engine_cpu;
		t->writers += s.writer_cpu;
		t->preempted += s.writer_preempted;
	}
	if (ph->c->daemon) {
		t->daemon = probe_process_cpu(ph->d.pid);
		t->merger = t->daemon + t->engines;
	} else {
		t->merger = probe_process_cpu(ph->ksmd);
	}
	return 0;
}

static double reported_cpu(struct ph *ph)
{
	sp_ctl_info in;
	if (!ph->c->daemon || sp_ctl_info_get(ph->d.ctl, &in))
		return -1;
	return in.cpu_seconds;
}

static void check_alone(struct ph *ph, struct pv_result *r)
{
	if (ph->c->daemon || ph->c->floor || r->disturbed)
		return;
	if (!ksm_check_alone(ph->k, &ph->c->pace, ph->pids, ph->n, r->disturbance, sizeof(r->disturbance)))
		r->disturbed = true;
}

/* ------------------------------------------------------------ steps */

static int start_workers(struct ph *ph, struct pv_result *r)
{
	const struct pv_cfg *c = ph->c;
	double t0 = probe_now();
	for (unsigned i = 0; i < c->nprocs; i++) {
		int e = pv_worker_spawn(c, i, c->daemon ? ph->d.sock : NULL, ph->w);
		if (e) {
			fail(r, "starting worker %s", "", e);
			return -1;
		}
		ph->pids[i] = ph->w[i].pid;
		ph->n = i + 1;
	}
	char err[256];
	for (unsigned i = 0; i < ph->n; i++)
		if (pv_worker_ready(&ph->w[i], 600, err, sizeof(err))) {
			fail(r, "%s", err, 0);
			return -1;
		}
	r->build_seconds = probe_now() - t0;
	/* The possible savings over all images: copies per content summed. */
	uint32_t distinct = ph->w[0].ready.distinct;
	size_t *sum = calloc(distinct + 1, sizeof(*sum));
	if (!sum) {
		fail(r, "out of memory%s", "", 0);
		return -1;
	}
	size_t zero = 0;
	for (unsigned i = 0; i < ph->n; i++) {
		for (uint32_t k = 0; k < distinct && k < ph->w[i].ready.distinct; k++)
			sum[k] += ph->w[i].pool_count[k];
		for (int cl = 0; cl < WL_NCLASS; cl++)
			r->count[cl] += ph->w[i].ready.count[cl];
		zero += (size_t)ph->w[i].ready.count[WL_ZERO];
	}
	for (int cl = 0; cl < WL_NCLASS; cl++)
		r->pages += r->count[cl];
	r->possible = wl_savings_of_counts(sum, distinct, zero, c->pace.use_zero_pages, c->pace.max_page_sharing);
	free(sum);
	return 0;
}

/* samepaged: every worker's engine connected (the domain counts them). */
static int wait_clients(struct ph *ph, struct pv_result *r)
{
	sp_ctl_info in = { 0 };
	for (int i = 0; i < 1000 && !pv_interrupted; i++) {
		if (sp_ctl_info_get(ph->d.ctl, &in) == 0 && in.clients >= ph->n)
			return 0;
		nap(10000000L);
	}
	char n[32];
	snprintf(n, sizeof(n), "%u of %u", in.clients, ph->n);
	fail(r, "only %s workers connected to samepaged", n, 0);
	return -1;
}

/* The merger CPU one reading of its counters costs (samepaged answers
 * them; sysfs readings cost ksmd nothing). */
static void read_cost(struct ph *ph, struct pv_result *r)
{
	if (!ph->c->daemon)
		return;
	double c0 = probe_process_cpu(ph->d.pid);
	for (int i = 0; i < 200; i++)
		m_saved(ph);
	r->read_cost_us = (probe_process_cpu(ph->d.pid) - c0) / 200 * 1e6;
}

static void memory(struct ph *ph, int64_t *pss, int64_t *dpss, int *vmas_max, int64_t *merging)
{
	*pss = 0;
	*vmas_max = 0;
	if (merging)
		*merging = 0;
	for (unsigned i = 0; i < ph->n; i++) {
		struct pv_mem m;
		if (pv_worker_cmd(&ph->w[i], PV_MEM, &m, sizeof(m), CMD_TIMEOUT))
			continue;
		*pss += m.pss;
		if (m.vmas > *vmas_max)
			*vmas_max = m.vmas;
		if (merging)
			*merging += m.merging_pages;
	}
	*dpss = ph->c->daemon ? probe_pid_pss(ph->d.pid) : 0;
	*pss += *dpss;
}

static int m_run(struct ph *ph, const char *run)
{
	sp_diag d;
	sp_setting s = { "run", run };
	if (ph->c->daemon)
		return sp_ctl_set(ph->d.ctl, &s, 1, 0, &d);
	return sp_ksm_set(ph->k, &s, 1, 0, &d);
}

/* Until 99 % of the possible savings or the timeout. */
static void converge(struct ph *ph, struct pv_result *r)
{
	const struct pv_cfg *c = ph->c;
	struct cpu_now t0, t;
	if (cpu_read(ph, &t0)) {
		fail(r, "reading the workers' CPU%s", "", 0);
		return;
	}
	double start = probe_now(), rep0 = reported_cpu(ph), next_check = start + 1, next_report = start + 5;
	r->cow_ksm_start = m_sample(ph).value[SP_COW_KSM];
	r->t90 = r->t99 = r->cpu90 = r->cpu99 = -1;
	int e = m_run(ph, "1");
	if (e) {
		fail(r, "run=1%s", "", e);
		return;
	}
	int64_t want90 = (int64_t)(0.90 * (double)r->possible + 0.999999);
	int64_t want99 = (int64_t)(0.99 * (double)r->possible + 0.999999);
	while (!pv_interrupted) {
		/* samepaged answers between its other work: the clock is read after */
		double before = probe_now();
		int64_t saved = m_saved(ph);
		double now = probe_now();
		if (now - before > r->max_read_wait)
			r->max_read_wait = now - before;
		bool hit90 = r->t90 < 0 && saved >= want90, hit99 = r->t99 < 0 && saved >= want99;
		if ((hit90 || hit99) && cpu_read(ph, &t) == 0) {
			if (hit90) {
				r->t90 = now - start;
				r->cpu90 = t.merger - t0.merger;
			}
			if (hit99) {
				r->t99 = now - start;
				r->cpu99 = t.merger - t0.merger;
			}
		}
		if (now >= next_check) {
			check_alone(ph, r);
			next_check = now + 1;
		}
		if (c->verbose && now >= next_report) {
			fprintf(stderr, "    %s N=%u t=%5.1fs saved %lld/%lld pages\n", c->daemon ? "samepaged" : "kernel",
				c->nprocs, now - start, (long long)saved, (long long)r->possible);
			next_report += 5;
		}
		if (r->t99 >= 0 || now - start >= c->timeout) {
			if (c->verbose)
				fprintf(stderr, "    %s N=%u %s after %.1f s: saved %lld/%lld pages\n",
					c->daemon ? "samepaged" : "kernel", c->nprocs,
					r->t99 >= 0 ? "converged" : "timed out", now - start, (long long)saved,
					(long long)r->possible);
			r->saved_conv = saved;
			break;
		}
		/* Each reading costs samepaged CPU (about 70 us with the wake-ups:
		 * more than the tight loop above measures), sysfs costs ksmd none:
		 * read about four times before the next mark is due at the pace so
		 * far, and at least ten times as often as the time so far: every
		 * 10 to 100 ms, so that fast runs (unthrottled: 0.1-0.2 s) keep
		 * 10 ms. */
		int64_t next_mark = r->t90 < 0 ? want90 : want99;
		double rate = (double)saved / (now - start + 1e-3), due = (double)(next_mark - saved) / (rate + 1e-9);
		double ns = (due / 4 < (now - start) / 10 ? due / 4 : (now - start) / 10) * 1e9;
		nap(ns < POLL_NS ? POLL_NS : ns > POLL_MAX_NS ? POLL_MAX_NS : (long)ns);
	}
	if (cpu_read(ph, &t)) {
		fail(r, "reading the workers' CPU%s", "", 0);
		return;
	}
	r->conv_wall = probe_now() - start;
	r->conv_cpu = t.merger - t0.merger;
	r->conv_daemon_cpu = t.daemon - t0.daemon;
	r->writer_cpu = t.writers - t0.writers;
	r->writer_preempted = t.preempted - t0.preempted;
	double rep1 = reported_cpu(ph);
	r->conv_reported_cpu = rep0 >= 0 && rep1 >= 0 ? rep1 - rep0 + r->conv_daemon_cpu : -1;
}

/* --floor: no merger; every worker makes the mapping calls sharing its
 * duplicates and dropping its zero pages needs, planned beforehand from
 * the images (copies numbered over all workers, one store for all), in
 * turns as samepaged gives them: one worker at a time. */
static void floor_converge(struct ph *ph, struct pv_result *r)
{
	const struct pv_cfg *c = ph->c;
	uint32_t n = ph->w[0].ready.distinct;
	uint64_t mps = c->pace.max_page_sharing ? c->pace.max_page_sharing : 1, nstore = 0;
	struct pv_floor_plan pl = { n, (uint32_t)mps, (double)c->pace.pages_to_scan, c->pace.sleep_ms };
	size_t len = sizeof(pl) + 2 * (size_t)n * sizeof(uint64_t);
	char *msg = malloc(len);
	uint64_t *sum = calloc(n + 1, sizeof(*sum));
	struct pv_floor *f = calloc(ph->n, sizeof(*f));
	if (!msg || !sum || !f) {
		fail(r, "out of memory%s", "", 0);
		goto out;
	}
	uint64_t *off = (uint64_t *)(msg + sizeof(pl)), *first = off + n;
	memcpy(msg, &pl, sizeof(pl));
	for (unsigned i = 0; i < ph->n; i++) {
		if (ph->w[i].ready.distinct != n) {
			fail(r, "the workers' base images differ%s", "", 0);
			goto out;
		}
		for (uint32_t k = 0; k < n; k++)
			sum[k] += ph->w[i].pool_count[k];
	}
	for (uint32_t k = 0; k < n; k++) {
		first[k] = nstore;
		nstore += (sum[k] + mps - 1) / mps;
		sum[k] = 0;  /* from here: copies numbered so far */
	}
	if (ftruncate(c->store_fd, (off_t)(nstore * WL_PAGE))) {
		fail(r, "sizing the floor's store%s", "", -errno);
		goto out;
	}
	for (unsigned i = 0; i < ph->n; i++) {
		for (uint32_t k = 0; k < n; k++) {
			off[k] = sum[k];
			sum[k] += ph->w[i].pool_count[k];
		}
		if (pv_worker_send(&ph->w[i], PV_FLOOR_PLAN, msg, len, &f[i], sizeof(f[i]), CMD_TIMEOUT) ||
		    f[i].status) {
			fail(r, "worker's floor plan: %s", f[i].status ? f[i].error : "no answer", 0);
			goto out;
		}
	}
	struct cpu_now t0, t;
	if (cpu_read(ph, &t0) ||
	    pv_workers_ask(ph->w, ph->n, PV_FLOOR_GO, f, sizeof(*f), c->timeout + CMD_TIMEOUT) ||
	    cpu_read(ph, &t)) {
		fail(r, "a worker did not finish its floor%s", "", 0);
		goto out;
	}
	r->cpu90 = r->cpu99 = 0;
	for (unsigned i = 0; i < ph->n; i++) {
		if (f[i].status) {
			fail(r, "worker's floor: %s", f[i].error, 0);
			goto out;
		}
		r->cpu90 = r->cpu90 < 0 || f[i].cpu90 < 0 ? -1 : r->cpu90 + f[i].cpu90;
		r->cpu99 = r->cpu99 < 0 || f[i].cpu99 < 0 ? -1 : r->cpu99 + f[i].cpu99;
		r->conv_cpu += f[i].cpu_all;
		r->floor_ops += f[i].nops;
		r->floor_calls += f[i].calls;
		if (f[i].wall > r->conv_wall)
			r->conv_wall = f[i].wall;
	}
	r->t90 = r->t99 = r->conv_wall;  /* at the latest */
	r->writer_cpu = t.writers - t0.writers;
	r->writer_preempted = t.preempted - t0.preempted;
	if (c->verbose)
		fprintf(stderr, "    floor N=%u: %llu pages in %llu calls, %.1f s, %.3f s CPU\n", c->nprocs,
			(unsigned long long)r->floor_ops, (unsigned long long)r->floor_calls, r->conv_wall,
			r->conv_cpu);
out:
	free(msg);
	free(sum);
	free(f);
}

/* Wait until full_scans moves on; false if not within timeout s. */
static bool wait_tick(struct ph *ph, double timeout)
{
	int64_t start = m_full_scans(ph);
	double until = probe_now() + timeout;
	while (probe_now() < until && !pv_interrupted) {
		nap(TICK_POLL_NS);
		if (m_full_scans(ph) != start)
			return true;
	}
	return false;
}

/* Writers paused, settle_scans full scans later: CPU of whole passes over
 * memory that does not change, from one full_scans tick to a later one, at
 * least steady_seconds. */
static void steady(struct ph *ph, struct pv_result *r)
{
	const struct pv_cfg *c = ph->c;
	if (pv_workers_cmd(ph->w, ph->n, PV_PAUSE, CMD_TIMEOUT)) {
		fail(r, "pausing the writers%s", "", 0);
		return;
	}
	double cap = c->timeout > c->steady_seconds ? c->timeout : c->steady_seconds;
	/* Let both mergers settle: the last writes seen, their skipping
	 * (smart_scan) taught what is quiet. */
	double paused = probe_now();
	for (unsigned k = 0; k < c->settle_scans || probe_now() - paused < c->settle_seconds; k++)
		if (!wait_tick(ph, cap))
			return;
	double deadline = probe_now() + cap + c->steady_seconds;
	if (!wait_tick(ph, deadline - probe_now()))
		return;  /* no pass ended: s_scans stays 0 and the report says so */
	struct cpu_now t0, t;
	if (cpu_read(ph, &t0))
		return;
	double start = probe_now();
	int64_t scans = m_full_scans(ph);
	if (c->verbose)
		fprintf(stderr, "    %s N=%u steady window starts at full_scans=%lld\n",
			c->daemon ? "samepaged" : "kernel", c->nprocs, (long long)scans);
	/* Each reading costs samepaged CPU (sysfs costs ksmd none): none until
	 * the window's least length is over, then only until the next tick. */
	nap((long)(c->steady_seconds * 1e9));
	wait_tick(ph, deadline - probe_now());
	int64_t end_scans = m_full_scans(ph);
	if (cpu_read(ph, &t))
		return;
	r->s_wall = probe_now() - start;
	r->s_cpu = t.merger - t0.merger;
	r->s_daemon_cpu = t.daemon - t0.daemon;
	r->s_scans = end_scans - scans;
	if (c->verbose)
		fprintf(stderr, "    %s N=%u steady window: %lld full scans in %.1f s\n",
			c->daemon ? "samepaged" : "kernel", c->nprocs, (long long)r->s_scans, r->s_wall);
	check_alone(ph, r);
}

static void final_counters(struct ph *ph, struct pv_result *r)
{
	sp_sample s = m_sample(ph);
	r->pages_shared = s.value[SP_PAGES_SHARED];
	r->pages_sharing = s.value[SP_PAGES_SHARING];
	r->ksm_zero_pages = s.value[SP_KSM_ZERO_PAGES];
	r->pages_unshared = s.value[SP_PAGES_UNSHARED];
	r->pages_volatile = s.value[SP_PAGES_VOLATILE];
	r->full_scans = s.value[SP_FULL_SCANS];
	r->cow_ksm = s.value[SP_COW_KSM];
	r->general_profit = s.value[SP_GENERAL_PROFIT];
	r->skipped_map_count = ph->c->daemon ? s.value[SP_PAGES_SKIPPED_MAX_MAP_COUNT] : -1;
	r->merging_pages = 0;
	if (ph->c->daemon) {
		sp_proc_ksm *list;
		size_t n;
		if (sp_ctl_processes(ph->d.ctl, &list, &n) == 0) {
			for (size_t i = 0; i < n; i++)
				r->merging_pages += list[i].ksm_merging_pages;
			free(list);
		}
		return;
	}
	for (unsigned i = 0; i < ph->n; i++) {
		sp_proc_ksm pk;
		if (sp_proc_ksm_read(ph->k, ph->pids[i], &pk) == 0)
			r->merging_pages += pk.ksm_merging_pages;
	}
}

static void add_hist(struct wl_hist *to, const struct wl_hist *h)
{
	for (size_t i = 0; i < WL_HIST_BUCKETS; i++)
		to->b[i] += h->b[i];
	to->n += h->n;
	if (h->max > to->max)
		to->max = h->max;
}

static void latencies(struct ph *ph, struct pv_result *r)
{
	static struct pv_hists h, sum;
	static struct wl_hist all;
	memset(&sum, 0, sizeof(sum));
	for (unsigned i = 0; i < ph->n; i++) {
		if (pv_worker_cmd(&ph->w[i], PV_HISTS, &h, sizeof(h), CMD_TIMEOUT))
			continue;
		add_hist(&sum.base, &h.base);
		add_hist(&sum.conv, &h.conv);
		add_hist(&sum.conv_dup, &h.conv_dup);
	}
	r->base_p50 = wl_hist_quantile(&sum.base, 0.50);
	r->base_p99 = wl_hist_quantile(&sum.base, 0.99);
	/* the writers' stores as a whole: both kinds in one distribution */
	all = sum.conv;
	add_hist(&all, &sum.conv_dup);
	r->p50 = wl_hist_quantile(&all, 0.50);
	r->p99 = wl_hist_quantile(&all, 0.99);
	r->pmax = (double)all.max;
	r->nwrites = all.n;
	r->dup_p50 = wl_hist_quantile(&sum.conv_dup, 0.50);
	r->dup_p99 = wl_hist_quantile(&sum.conv_dup, 0.99);
	r->ndup = sum.conv_dup.n;
}

/* Every page of every worker, merged; then the merger released (private
 * copies again) and every page once more. */
static void verify_all(struct ph *ph, struct pv_result *r)
{
	for (int pass = 0; pass < 2; pass++)
		for (unsigned i = 0; i < ph->n; i++) {
			struct pv_verify v;
			if (pv_worker_cmd(&ph->w[i], pass ? PV_FREE : PV_VERIFY, &v, sizeof(v), 600)) {
				fail(r, "worker %s did not answer the verification", "", 0);
				r->free_errors++;
				continue;
			}
			if (pass) {
				r->bad_after_free += v.bad;
				r->free_errors += v.free_status != 0;
			} else {
				r->verified_pages += v.pages;
				r->bad_pages += v.bad;
			}
			for (int cl = 0; cl < WL_NCLASS; cl++)
				r->bad_class[cl] += v.bad_class[cl];
			if (v.bad)
				fprintf(stderr, PROG ": CORRUPTION: worker %d (N=%u, %s, %s): %llu of %llu pages differ "
						     "from what was written, first page %lld\n",
					(int)ph->pids[i], ph->n, pv_merger_name(ph->c),
					pass ? "after releasing the merger" : "merged", (unsigned long long)v.bad,
					(unsigned long long)v.pages, (long long)v.first_bad);
		}
}

/* ------------------------------------------------------------ the phase */

bool pv_phase_run(const struct pv_cfg *cfg, sp_ksm *k, struct pv_result *r)
{
	static struct ph ph;
	static struct pv_cfg fc;
	memset(&ph, 0, sizeof(ph));
	memset(r, 0, sizeof(*r));
	fc = *cfg;
	const struct pv_cfg *c = &fc;
	fc.store_fd = -1;
	fc.turns = NULL;
	/* the floor's store and turns: made before the workers, who inherit them */
	if (c->floor) {
		void *t = mmap(NULL, sizeof(*fc.turns), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		fc.store_fd = memfd_create("procs_vs_ksm-floor", MFD_CLOEXEC);
		if (fc.store_fd < 0 || t == MAP_FAILED) {
			fail(r, "the floor's store or turns%s", "", -errno);
			if (t != MAP_FAILED)
				munmap(t, sizeof(*fc.turns));
			if (fc.store_fd >= 0)
				close(fc.store_fd);
			return false;
		}
		fc.turns = t;  /* zeros: worker 0's turn, nobody done */
	}
	ph.c = c;
	ph.k = k;
	r->nprocs = c->nprocs;
	r->load_start = probe_loadavg();
	sp_ksmd_info ki;
	if (sp_ksmd_info_read(k, &ki) == 0)
		ph.ksmd = ki.pid;
	/* The kernel at the pace, or stopped with nothing merged. */
	if (ksm_prepare(k, c->daemon || c->floor ? NULL : &c->pace, PROG)) {
		fail(r, "preparing kernel KSM%s", "", 0);
		return false;
	}
	if (!c->daemon && !c->floor && !ph.ksmd)
		fail(r, "no ksmd thread%s", "", 0);
	double ksmd0 = ph.ksmd ? probe_process_cpu(ph.ksmd) : 0;
	if (r->status || (c->daemon && daemon_start(&ph, r)) || start_workers(&ph, r) ||
	    (c->daemon && wait_clients(&ph, r)))
		goto out;
	read_cost(&ph, r);
	if (pv_workers_cmd(ph.w, ph.n, PV_REC_BASE, CMD_TIMEOUT))
		goto lost;
	nap((long)(c->baseline_seconds * 1e9));
	if (pv_workers_cmd(ph.w, ph.n, PV_REC_CONV, CMD_TIMEOUT))
		goto lost;
	r->avail_before = probe_mem_available();
	memory(&ph, &r->pss_before, &r->daemon_pss_before, &r->vmas_before_max, NULL);
	if (c->floor)
		floor_converge(&ph, r);
	else
		converge(&ph, r);
	if (pv_workers_cmd(ph.w, ph.n, PV_REC_OFF, CMD_TIMEOUT))
		goto lost;
	if (r->status || pv_interrupted)
		goto out;
	if (!c->converge_only && !c->floor)
		steady(&ph, r);  /* pauses the writers */
	else if (pv_workers_cmd(ph.w, ph.n, PV_PAUSE, CMD_TIMEOUT))
		goto lost;  /* paused: the pages are checked next */
	r->saved_end = c->floor ? (int64_t)r->floor_ops : m_saved(&ph);
	final_counters(&ph, r);
	r->avail_after = probe_mem_available();
	memory(&ph, &r->pss_after, &r->daemon_pss_after, &r->vmas_end_max, &r->engine_merging_pages);
	r->load_end = probe_loadavg();
	r->ksmd_cpu = ph.ksmd ? probe_process_cpu(ph.ksmd) - ksmd0 : -1;
	latencies(&ph, r);
	verify_all(&ph, r);
	goto out;
lost:
	fail(r, "a worker stopped answering%s", "", 0);
out:
	for (unsigned i = 0; i < ph.n; i++)
		if (r->status || pv_interrupted)
			pv_worker_kill(&ph.w[i]);
		else if (pv_worker_quit(&ph.w[i]) != 0)
			fail(r, "a worker did not exit cleanly%s", "", 0);
	if (c->daemon)
		daemon_stop(&ph, r);
	if (fc.store_fd >= 0)
		close(fc.store_fd);
	if (fc.turns)
		munmap(fc.turns, sizeof(*fc.turns));
	if (!c->daemon) {
		sp_diag d;
		sp_ksm_set_run(k, 2, &d);
	}
	return r->status == 0 && !pv_interrupted;
}
