/* SPDX-License-Identifier: MIT */
/*
 * The worker processes of procs_vs_ksm. Each builds one image, registers
 * it with its merger (madvise for the kernel's KSM, a SP_ENGINE_SHARED
 * engine for samepaged), runs the workload's writer on it, and then does
 * what the parent asks over a pipe, one byte a command, one reply each.
 *
 * Every image shares its pool (the "base image") with the other workers'
 * and tags its unique pages with the worker's number, so the savings
 * possible across all of them are exact. For verification each worker
 * keeps a hash of every page that only the merger may touch and a copy of
 * its volatile pages that the writer keeps up to date.
 */
#include "procs_vs_ksm.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <samepage.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor_calls.h"
#include "probe.h"

/* ------------------------------------------------------------ pipes */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *b = buf;
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, b + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

/* Read len bytes, waiting at most timeout seconds in all (< 0: forever). */
static int read_all(int fd, void *buf, size_t len, double timeout)
{
	char *b = buf;
	double until = probe_now() + timeout;
	for (size_t got = 0; got < len;) {
		if (pv_interrupted)
			return -EINTR;
		int ms = -1;
		if (timeout >= 0) {
			double left = until - probe_now();
			if (left <= 0)
				return -ETIMEDOUT;
			ms = (int)(left * 1000) + 1;
		}
		struct pollfd pf = { fd, POLLIN, 0 };
		int pr = poll(&pf, 1, ms);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		ssize_t n = read(fd, b + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		got += (size_t)n;
	}
	return 0;
}

/* ------------------------------------------------------------ the worker */

struct wk {
	const struct pv_cfg *c;
	unsigned index;
	bool has_turn;               /* --floor */
	sp_engine *e;
	pid_t engine_tid;
	struct wl_params p;
	struct wl_image img;
	struct wl_writer w;
	uint64_t *hash;              /* per page; volatile pages are checked against shadow */
	uint8_t *shadow;
	uint8_t *cls;                /* per page: its enum wl_class, as built */
	/* --floor: per page what to do (FLOOR_*), and for a mapping which store page */
	uint8_t *op;
	uint32_t *store_page;
	struct pv_floor_plan plan;
};

/* A 64-bit mix of a page: a wrong page is found with certainty but for
 * one chance in 2^64. */
static uint64_t page_hash(const uint8_t *pg)
{
	const uint64_t *w = (const uint64_t *)pg;
	uint64_t h = 0x243f6a8885a308d3ull;
	for (size_t i = 0; i < WL_PAGE / 8; i++) {
		h ^= w[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
		h *= 0xff51afd7ed558ccdull;
	}
	return h ^ (h >> 33);
}

/* The class of a page as built, from its tag (see workload.c). */
static enum wl_class class_of(const uint8_t *pg)
{
	uint64_t tag = *(const uint64_t *)pg;
	if (tag >> 56 == 0x50)
		return WL_DUP;
	return tag == 0 ? WL_ZERO : WL_UNIQUE;
}

static void verify(const struct wk *k, struct pv_verify *v)
{
	memset(v, 0, sizeof(*v));
	v->first_bad = -1;
	for (size_t i = 0, vi = 0; i < k->img.pages; i++) {
		const uint8_t *pg = wl_page(&k->img, i);
		bool ok;
		if (k->cls[i] == WL_VOLATILE)
			ok = memcmp(pg, k->shadow + (vi++) * WL_PAGE, WL_PAGE) == 0;
		else
			ok = page_hash(pg) == k->hash[i];
		v->pages++;
		if (!ok) {
			v->bad++;
			v->bad_class[k->cls[i]]++;
			if (v->first_bad < 0)
				v->first_bad = (int64_t)i;
		}
	}
}

static int find_new_thread(const pid_t *before, int nb, pid_t *tid)
{
	pid_t after[64];
	int na = probe_self_tids(after, 64);
	*tid = 0;
	for (int i = 0, j = 0; i < na; i++) {
		while (j < nb && before[j] < after[i])
			j++;
		if (j >= nb || before[j] != after[i])
			*tid = after[i];
	}
	return *tid && na == nb + 1 ? 0 : -1;
}

/* Build, register and start writing; 0, or rd->error says why. */
static int setup(struct wk *k, unsigned index, struct pv_ready *rd)
{
	const struct pv_cfg *c = k->c;
	if (c->daemon) {
		pid_t before[64];
		int nb = probe_self_tids(before, 64);
		int e = sp_engine_new(SP_ENGINE_SHARED, &k->e);
		if (e) {
			snprintf(rd->error, sizeof(rd->error), "sp_engine_new(SP_ENGINE_SHARED): %s", sp_strerror(e));
			return -1;
		}
		if (find_new_thread(before, nb, &k->engine_tid)) {
			snprintf(rd->error, sizeof(rd->error), "cannot tell the engine's thread");
			return -1;
		}
		rd->engine_tid = k->engine_tid;
	}
	k->p = c->wl;
	/* One layout for all, or each its own; one pool (the base image) for all. */
	k->p.seed = c->same_offsets ? c->wl.seed : c->wl.seed + 7919ull * (index + 1);
	k->p.pool_seed = c->wl.seed * 0x9e3779b97f4a7c15ull + 12345;
	k->p.pool_cycle = true;
	k->p.tag_salt = index + 1;
	char err[200];
	if (wl_build(&k->p, &k->img, err, sizeof(err))) {
		snprintf(rd->error, sizeof(rd->error), "building the image: %s", err);
		return -1;
	}
	struct wl_image *img = &k->img;
	k->hash = malloc(img->pages * sizeof(*k->hash));
	k->cls = malloc(img->pages);
	k->shadow = malloc((img->nvol ? img->nvol : 1) * WL_PAGE);
	if (!k->hash || !k->cls || !k->shadow) {
		snprintf(rd->error, sizeof(rd->error), "out of memory");
		return -1;
	}
	for (size_t i = 0; i < img->pages; i++) {
		k->hash[i] = page_hash(wl_page(img, i));
		k->cls[i] = (uint8_t)class_of(wl_page(img, i));
	}
	for (size_t v = 0; v < img->nvol; v++) {
		k->cls[img->vol[v]] = WL_VOLATILE;
		memcpy(k->shadow + v * WL_PAGE, wl_page(img, img->vol[v]), WL_PAGE);
	}
	for (unsigned r = 0; r < img->nreg && !c->floor; r++) {
		size_t len = img->reg[r].pages * WL_PAGE;
		int e = k->e ? sp_madvise(k->e, img->reg[r].base, len, MADV_MERGEABLE)
			     : (madvise(img->reg[r].base, len, MADV_MERGEABLE) ? -errno : 0);
		if (e) {
			snprintf(rd->error, sizeof(rd->error), "%s: %s %s",
				 k->e ? "sp_madvise(MADV_MERGEABLE)" : "madvise(MADV_MERGEABLE)", sp_strerror(e),
				 k->e ? sp_last_error() : "");
			return -1;
		}
	}
	for (int i = 0; i < WL_NCLASS; i++)
		rd->count[i] = (int64_t)img->count[i];
	rd->distinct = img->distinct;
	int e = wl_writer_start_shadowed(&k->w, img, c->write_rate, c->dup_write_rate,
					 c->wl.seed * 31 + 1 + index, k->shadow);
	if (e) {
		snprintf(rd->error, sizeof(rd->error), "starting the writer: %s", strerror(-e));
		return -1;
	}
	return 0;
}

static void reply_cpu(struct wk *k, int fd)
{
	pid_t wt = atomic_load(&k->w.tid);
	struct pv_cpu s = {
		.engine_cpu = k->engine_tid ? probe_thread_cpu(k->engine_tid) : 0,
		.writer_cpu = probe_thread_cpu(wt),
		.writer_preempted = probe_thread_preempted(wt),
	};
	write_all(fd, &s, sizeof(s));
}

static void reply_mem(struct wk *k, int fd)
{
	struct pv_mem m = { .pss = probe_self_pss(), .vmas = probe_self_vmas(), .merging_pages = -1,
			    .info_cpu = -1 };
	sp_proc_ksm pk;
	sp_engine_info info;
	if (k->e && sp_engine_stat(k->e, &pk) == 0)
		m.merging_pages = pk.ksm_merging_pages;
	if (k->e && sp_engine_info_get(k->e, &info) == 0)
		m.info_cpu = info.cpu_seconds;
	write_all(fd, &m, sizeof(m));
}

static void reply_hists(struct wk *k, int fd)
{
	static struct pv_hists h;
	h.base = k->w.vol[WL_REC_BASELINE];
	h.conv = k->w.vol[WL_REC_CONVERGE];
	h.conv_dup = k->w.dup[WL_REC_CONVERGE];
	write_all(fd, &h, sizeof(h));
}

/* Release the merger (the engine, or MADV_UNMERGEABLE), then verify again:
 * the private copies must hold what the merged pages held. */
static void release_and_verify(struct wk *k, int fd)
{
	int st = 0;
	if (k->e) {
		st = sp_engine_free(k->e);
		k->e = NULL;
		k->engine_tid = 0;
	} else if (!k->c->floor) {
		for (unsigned r = 0; r < k->img.nreg && !st; r++)
			if (madvise(k->img.reg[r].base, k->img.reg[r].pages * WL_PAGE, MADV_UNMERGEABLE))
				st = -errno;
	}
	struct pv_verify v;
	verify(k, &v);
	v.free_status = st;
	write_all(fd, &v, sizeof(v));
}

/* ------------------------------------------------------------ the floor */

static void floor_fail(struct pv_floor *f, const char *what, int err)
{
	f->status = -1;
	snprintf(f->error, sizeof(f->error), "%s: %s", what, strerror(err));
}

/* PV_FLOOR_PLAN: what each page becomes, untimed; the store pages whose
 * first copy this worker holds get their content. */
static void floor_plan(struct wk *k, int cmd, int rep)
{
	const struct wl_image *img = &k->img;
	struct pv_floor f = { 0 };
	uint64_t *off = NULL, *first = NULL, *seen = NULL;
	if (read_all(cmd, &k->plan, sizeof(k->plan), 60) || k->plan.distinct != img->distinct ||
	    k->plan.max_page_sharing == 0) {
		floor_fail(&f, "the plan's header", EPROTO);
		goto out;
	}
	size_t n = img->distinct;
	off = malloc(n * sizeof(*off));
	first = malloc(n * sizeof(*first));
	seen = calloc(n, sizeof(*seen));
	k->op = calloc(img->pages, 1);
	k->store_page = calloc(img->pages, sizeof(*k->store_page));
	if (!off || !first || !seen || !k->op || !k->store_page) {
		floor_fail(&f, "the plan", ENOMEM);
		goto out;
	}
	if (read_all(cmd, off, n * sizeof(*off), 60) || read_all(cmd, first, n * sizeof(*first), 60)) {
		floor_fail(&f, "the plan's numbers", EPROTO);
		goto out;
	}
	uint64_t mps = k->plan.max_page_sharing;
	for (size_t i = 0; i < img->ndup; i++) {
		uint32_t pg = img->dup[i];
		const uint8_t *p = wl_page(img, pg);
		int c = wl_pool_index(img, p);
		if (c < 0) {
			floor_fail(&f, "a duplicate page without its pool tag", EPROTO);
			goto out;
		}
		uint64_t g = off[c] + seen[c]++;
		uint32_t sp = (uint32_t)(first[c] + g / mps);
		if (g % mps == 0 && pwrite(k->c->store_fd, p, WL_PAGE, (off_t)sp * WL_PAGE) != (ssize_t)WL_PAGE) {
			floor_fail(&f, "writing the store", errno);
			goto out;
		}
		k->op[pg] = FLOOR_MAP;
		k->store_page[pg] = sp;
	}
	for (size_t i = 0; i < img->pages; i++) {
		if (k->op[i] == FLOOR_NONE && k->cls[i] == WL_ZERO)
			k->op[i] = FLOOR_DROP;
		f.nops += k->op[i] != FLOOR_NONE;
	}
out:
	free(off);
	free(first);
	free(seen);
	write_all(rep, &f, sizeof(f));
}

/* The end of this worker's turn (if it had one): sleep_millisecs, then
 * the next worker still working has its turn. Then, unless last, wait
 * for ours. */
static void floor_turn(void *arg, bool last)
{
	struct wk *k = arg;
	struct pv_turns *t = k->c->turns;
	unsigned me = k->index, n = k->c->nprocs;
	if (k->has_turn) {
		if (k->plan.sleep_ms > 0)
			floor_nap_ms(k->plan.sleep_ms);
		if (last)
			atomic_fetch_or(&t->done, 1ull << me);
		uint64_t done = atomic_load(&t->done);
		unsigned next = me;
		for (unsigned s = 1; s <= n; s++)
			if (!((done >> ((me + s) % n)) & 1)) {
				next = (me + s) % n;
				break;
			}
		atomic_store(&t->holder, next);
		syscall(SYS_futex, &t->holder, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
		k->has_turn = false;
	}
	if (last)
		return;
	uint32_t h;
	while ((h = atomic_load(&t->holder)) != me)
		syscall(SYS_futex, &t->holder, FUTEX_WAIT, h, NULL, NULL, 0);
	k->has_turn = true;
}

/* PV_FLOOR_GO: the planned calls in this worker's turns, on its main
 * thread, as an engine's thread would make them. */
static void floor_go(struct wk *k, int rep)
{
	struct pv_floor f = { 0 };
	if (!k->op) {
		floor_fail(&f, "no plan", EPROTO);
	} else {
		struct floor_calls fc = { &k->img, k->op, k->store_page, k->c->store_fd, k->plan.pages_per_tick,
					  k->plan.sleep_ms, floor_turn, k };
		struct floor_out o;
		floor_calls_run(&fc, &o);
		f = (struct pv_floor){ .nops = o.nops, .calls = o.calls, .cpu90 = o.cpu90, .cpu99 = o.cpu99,
				       .cpu_all = o.cpu_all, .wall = o.wall };
		if (o.err)
			floor_fail(&f, o.what, o.err);
	}
	write_all(rep, &f, sizeof(f));
}

static void worker_main(const struct pv_cfg *c, unsigned index, int cmd, int rep)
{
	static struct wk k;
	k.c = c;
	k.index = index;
	struct pv_ready rd = { 0 };
	rd.status = setup(&k, index, &rd);
	if (write_all(rep, &rd, sizeof(rd)) || rd.status)
		_exit(1);
	uint64_t *pc = malloc(rd.distinct * sizeof(*pc) + 1);
	for (uint32_t i = 0; pc && i < rd.distinct; i++)
		pc[i] = k.img.pool_count[i];
	if (!pc || write_all(rep, pc, rd.distinct * sizeof(*pc)))
		_exit(1);
	free(pc);
	for (;;) {
		char ch, ack = 1;
		ssize_t n = read(cmd, &ch, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);  /* the parent went away */
		switch (ch) {
		case PV_REC_BASE: wl_writer_record(&k.w, WL_REC_BASELINE); break;
		case PV_REC_CONV: wl_writer_record(&k.w, WL_REC_CONVERGE); break;
		case PV_REC_OFF: wl_writer_record(&k.w, WL_REC_OFF); break;
		case PV_PAUSE:
			/* Then a barrier: the writer acknowledges a new slot only at
			 * the top of a tick, after the stores (and their shadow
			 * copies) of the tick before; from there on it sees the pause.
			 * So no store is half done when the parent verifies. */
			wl_writer_pause(&k.w, true);
			wl_writer_record(&k.w, WL_REC_STEADY);
			wl_writer_record(&k.w, WL_REC_OFF);
			break;
		case PV_CPU: reply_cpu(&k, rep); continue;
		case PV_MEM: reply_mem(&k, rep); continue;
		case PV_HISTS: reply_hists(&k, rep); continue;
		case PV_VERIFY: {
			struct pv_verify v;
			verify(&k, &v);
			write_all(rep, &v, sizeof(v));
			continue;
		}
		case PV_FREE: release_and_verify(&k, rep); continue;
		case PV_FLOOR_PLAN: floor_plan(&k, cmd, rep); continue;
		case PV_FLOOR_GO: floor_go(&k, rep); continue;
		case PV_QUIT:
			wl_writer_stop(&k.w);
			write_all(rep, &ack, 1);
			_exit(0);
		default: ack = 0; break;
		}
		write_all(rep, &ack, 1);
	}
}

/* ------------------------------------------------------------ the parent's side */

int pv_worker_spawn(const struct pv_cfg *c, unsigned index, const char *socket, struct pv_worker *ws)
{
	struct pv_worker *w = &ws[index];
	int to[2], from[2];
	memset(w, 0, sizeof(*w));
	w->cmd = w->rep = -1;
	if (pipe(to))
		return -errno;
	if (pipe(from)) {
		close(to[0]);
		close(to[1]);
		return -errno;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(to[0]), close(to[1]), close(from[0]), close(from[1]);
		return e;
	}
	if (pid == 0) {
		signal(SIGINT, SIG_IGN);  /* the parent decides; a ^C reaches the whole group */
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		for (unsigned i = 0; i < index; i++) {
			close(ws[i].cmd);
			close(ws[i].rep);
		}
		close(to[1]);
		close(from[0]);
		if (socket)
			setenv("SAMEPAGE_SOCKET", socket, 1);
		worker_main(c, index, to[0], from[1]);
		_exit(0);
	}
	close(to[0]);
	close(from[1]);
	w->pid = pid;
	w->cmd = to[1];
	w->rep = from[0];
	return 0;
}

int pv_worker_ready(struct pv_worker *w, double timeout, char *err, size_t errlen)
{
	int e = read_all(w->rep, &w->ready, sizeof(w->ready), timeout);
	if (e) {
		snprintf(err, errlen, "worker %d: no answer (%s)", (int)w->pid, strerror(-e));
		return e;
	}
	if (w->ready.status) {
		snprintf(err, errlen, "worker %d: %s", (int)w->pid, w->ready.error);
		return -EIO;
	}
	w->pool_count = calloc(w->ready.distinct + 1, sizeof(*w->pool_count));
	if (!w->pool_count)
		return -ENOMEM;
	e = read_all(w->rep, w->pool_count, w->ready.distinct * sizeof(*w->pool_count), timeout);
	if (e)
		snprintf(err, errlen, "worker %d: no pool counts (%s)", (int)w->pid, strerror(-e));
	return e;
}

int pv_worker_cmd(struct pv_worker *w, char cmd, void *reply, size_t len, double timeout)
{
	char ack;
	if (w->cmd < 0 || write_all(w->cmd, &cmd, 1))
		return -EPIPE;
	if (!reply) {
		reply = &ack;
		len = 1;
	}
	return read_all(w->rep, reply, len, timeout);
}

int pv_worker_send(struct pv_worker *w, char cmd, const void *data, size_t len, void *reply, size_t rlen,
		   double timeout)
{
	if (w->cmd < 0 || write_all(w->cmd, &cmd, 1) || write_all(w->cmd, data, len))
		return -EPIPE;
	return read_all(w->rep, reply, rlen, timeout);
}

int pv_workers_ask(struct pv_worker *ws, unsigned n, char cmd, void *replies, size_t rlen, double timeout)
{
	int first = 0;
	/* Everyone hears it first, then the answers: the workers act together. */
	for (unsigned i = 0; i < n; i++)
		if (ws[i].cmd < 0 || write_all(ws[i].cmd, &cmd, 1))
			first = first ? first : -EPIPE;
	for (unsigned i = 0; i < n; i++) {
		char ack;
		void *to = replies ? (char *)replies + i * rlen : &ack;
		int e = read_all(ws[i].rep, to, replies ? rlen : 1, timeout);
		if (e && !first)
			first = e;
	}
	return first;
}

int pv_workers_cmd(struct pv_worker *ws, unsigned n, char cmd, double timeout)
{
	return pv_workers_ask(ws, n, cmd, NULL, 0, timeout);
}

static void closefds(struct pv_worker *w)
{
	if (w->cmd >= 0)
		close(w->cmd);
	if (w->rep >= 0)
		close(w->rep);
	w->cmd = w->rep = -1;
	free(w->pool_count);
	w->pool_count = NULL;
}

int pv_worker_quit(struct pv_worker *w)
{
	if (w->pid <= 0)
		return -1;
	int st = -1;
	if (pv_worker_cmd(w, PV_QUIT, NULL, 0, 30) == 0) {
		closefds(w);
		if (waitpid(w->pid, &st, 0) == w->pid) {
			w->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
	}
	pv_worker_kill(w);
	return -1;
}

void pv_worker_kill(struct pv_worker *w)
{
	if (w->pid > 0) {
		kill(w->pid, SIGKILL);
		while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
			;
		w->pid = 0;
	}
	closefds(w);
}
