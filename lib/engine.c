/* SPDX-License-Identifier: MIT */
/*
 * The user-space engine's handle: knobs with the kernel's names and rules,
 * counters with the kernel's meanings, the scanner thread (ksmd's pacing:
 * pages_to_scan per sleep_millisecs), registration, and fork.
 */
#include "engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define THREAD_STACK (2u << 20)  /* sanitizers want more than 900 KiB */

static __thread int lock_depth;

void _sp_lock(sp_engine *e)
{
	if (pthread_mutex_trylock(&e->lock) != 0) {
		atomic_fetch_add(&e->waiters, 1);
		pthread_mutex_lock(&e->lock);
		atomic_fetch_sub(&e->waiters, 1);
	}
	lock_depth++;
}

void _sp_yield_lock(sp_engine *e)
{
	/* Bounded: a waiter that is not scheduled must not stall the scan. */
	for (int i = 0; i < 256 && atomic_load(&e->waiters) > 0; i++)
		sched_yield();
}

void _sp_publish_pass(sp_engine *e)
{
	pthread_mutex_lock(&e->pass_lock);
	atomic_store(&e->scans_done, e->full_scans);
	pthread_cond_broadcast(&e->pass_cond);
	pthread_mutex_unlock(&e->pass_lock);
}

void _sp_unlock(sp_engine *e)
{
	lock_depth--;
	pthread_mutex_unlock(&e->lock);
}

bool sp_in_engine(void)
{
	return lock_depth > 0;
}

/* Every engine of the process, for fork handling. */
static sp_engine *engines;
static pthread_mutex_t engines_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------------ fork */

/* No merge may be half done when the address space is copied. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&engines_lock);
	for (sp_engine *e = engines; e; e = e->next) {
		_sp_lock(e);
		pthread_mutex_lock(&e->pass_lock);
		if (e->remote)
			_sp_remote_forking(e);  /* before any reference of ours can go */
	}
}

static void fork_parent(void)
{
	for (sp_engine *e = engines; e; e = e->next) {
		/* The child maps every store page mapped so far: never punch those. */
		e->store.fork_gen++;
		pthread_mutex_unlock(&e->pass_lock);
		_sp_unlock(e);
	}
	pthread_mutex_unlock(&engines_lock);
}

/* The child's copy of an engine owns nothing: its userfaultfds act on the
 * parent's memory and its store files are the parent's. It only keeps the
 * page states so that sp_madvise() and friends still know what is merged. */
static void fork_child(void)
{
	for (sp_engine *e = engines; e; e = e->next) {
		e->inert = true;
		e->thread_started = false;
		e->store.fork_gen++;
		e->store.no_punch = true;
		if (e->remote)
			_sp_remote_child(e);
		pthread_mutex_unlock(&e->pass_lock);
		_sp_unlock(e);
	}
	pthread_mutex_unlock(&engines_lock);
}

static void install_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ------------------------------------------------------------------ knobs */

static void set_defaults(sp_engine *e)
{
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		if (in->flags & SP_PF_KNOB)
			e->knob[p] = in->def;
	}
}

/* Forget the unstable index: its keys are made under the node rule. */
static int reset_unstable(sp_engine *e)
{
	_sp_index_fini(&e->unstable);
	int r = _sp_index_init(&e->unstable, 1024);
	for (uint32_t id = 0; id < e->nranges; id++) {
		struct sp_range *rg = e->ranges[id];
		for (size_t i = 0; rg && i < rg->npages; i++)
			if (rg->pg[i].state == SP_PG_UNSHARED)
				_sp_page_set_state(e, &rg->pg[i], SP_PG_NEW);
	}
	return r;
}

static int count_numa_nodes(void)
{
	DIR *d = opendir("/sys/devices/system/node");
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strncmp(de->d_name, "node", 4) == 0 && de->d_name[4] >= '0' && de->d_name[4] <= '9')
			n++;
	if (d)
		closedir(d);
	return n > 0 ? n : 1;
}

static int engine_read(void *ctx, int p, int64_t *v)
{
	sp_engine *e = ctx;
	if (sp_param_describe(p)->flags & SP_PF_KNOB) {
		*v = e->knob[p];
		return 0;
	}
	sp_sample s;
	int r = sp_engine_sample(e, &s);  /* lock is recursive-free: sample locks */
	if (r)
		return r;
	return sp_sample_get(&s, p, v);
}

static int engine_write(void *ctx, int p, int64_t v)
{
	sp_engine *e = ctx;
	int r = 0;
	_sp_lock(e);
	if (p == SP_RUN && v == 2 && !e->inert && !e->remote) {
		/* run=2: every merged page back to private memory; ranges stay registered. */
		r = _sp_unmerge_all(e, true);
		if (!r)
			r = reset_unstable(e);
	}
	if (p == SP_MERGE_ACROSS_NODES && v != e->knob[p]) {
		e->knob[p] = v;  /* the keys change with it */
		r = reset_unstable(e);
	}
	if (p == SP_ADVISOR_MODE && v != e->knob[p]) {
		/* As the kernel: switching resets pages_to_scan and the advisor. */
		e->knob[SP_PAGES_TO_SCAN] = v ? e->knob[SP_ADVISOR_MIN_PAGES_TO_SCAN] : 100;
		e->adv_change = 0;
		e->adv_last_scan_time = 0;
	}
	if (!r)
		e->knob[p] = v;
	pthread_cond_broadcast(&e->cond);
	_sp_unlock(e);
	return r;
}

static const struct sp_set_ops engine_ops = {
	.what = "the user-space engine",
	.read = engine_read,
	.write = engine_write,
	.may_write = NULL,
};

int sp_engine_set(sp_engine *e, const sp_setting *set, size_t n, unsigned flags, sp_diag *d)
{
	_sp_diag_reset(d);
	if (!e) {
		_sp_diag(d, -EINVAL, -1, "invalid arguments (no engine)");
		return -EINVAL;
	}
	if (e->remote) {
		_sp_diag(d, -EOPNOTSUPP, -1,
			 "the knobs of a shared engine belong to samepaged: use sp_ctl_set() or "
			 "`samepage set --engine user`");
		return -EOPNOTSUPP;
	}
	for (size_t i = 0; i < n && set; i++) {
		int p = sp_param_lookup(set[i].name);
		if (p >= 0 && (sp_param_describe(p)->flags & SP_PF_VMSTAT)) {
			_sp_diag(d, -EPERM, p, "%s is a read-only counter, not a knob", set[i].name);
			return -EPERM;
		}
	}
	return _sp_set_apply(&engine_ops, e, set, n, flags, d);
}

/* --------------------------------------------------------------- counters */

static int64_t metadata_bytes(const sp_engine *e)
{
	return (int64_t)(sizeof(*e) + _sp_ranges_bytes(e) + _sp_stable_bytes(&e->stable) +
			 _sp_index_bytes(&e->unstable)) +
	       _sp_store_overhead(&e->store);
}

int sp_engine_sample(sp_engine *e, sp_sample *s)
{
	if (!e || !s)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->page_size = (long)SP_PAGE;
	_sp_lock(e);
	s->when_ns = _sp_now_ns();
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		if (in->flags & SP_PF_KNOB)
			s->value[p] = e->knob[p];
	}
	int64_t shared = (int64_t)e->pages_shared, sharing = (int64_t)e->pages_sharing;
	int64_t zero = (int64_t)e->state_count[SP_PG_ZERO];
	_sp_zero_fold(e->knob, &shared, &sharing, &zero);
	s->value[SP_PAGES_SHARED] = shared;
	s->value[SP_PAGES_SHARING] = sharing;
	s->value[SP_PAGES_UNSHARED] = (int64_t)e->state_count[SP_PG_UNSHARED];
	s->value[SP_PAGES_VOLATILE] = (int64_t)(e->state_count[SP_PG_WRITTEN] + e->state_count[SP_PG_COWED]);
	s->value[SP_PAGES_SCANNED] = (int64_t)e->pages_scanned;
	s->value[SP_PAGES_SKIPPED] = (int64_t)e->pages_skipped;
	s->value[SP_FULL_SCANS] = (int64_t)e->full_scans;
	s->value[SP_STABLE_NODE_CHAINS] = (int64_t)e->stable.chains;
	s->value[SP_STABLE_NODE_DUPS] = (int64_t)e->stable.dups;
	s->value[SP_KSM_ZERO_PAGES] = zero;
	s->value[SP_GENERAL_PROFIT] = (sharing + zero) * (int64_t)SP_PAGE - metadata_bytes(e);
	s->value[SP_COW_KSM] = (int64_t)e->cow_ksm;
	s->value[SP_PAGES_SKIPPED_MAX_MAP_COUNT] = (int64_t)e->skipped_map_count;
	_sp_unlock(e);
	/* Everything but ksm_swpin_copy: store pages are never swapped in as copies. */
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		if (p != SP_KSM_SWPIN_COPY)
			s->present |= 1ull << p;
	return 0;
}

int sp_engine_stat(sp_engine *e, sp_proc_ksm *out)
{
	if (!e || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->pid = getpid();
	out->uid = getuid();
	snprintf(out->comm, sizeof(out->comm), "%s", program_invocation_short_name);
	_sp_lock(e);
	uint64_t merging = e->state_count[SP_PG_MERGED];
	uint64_t zero = e->state_count[SP_PG_ZERO];
	uint64_t tracked = 0;
	for (int st = SP_PG_WRITTEN; st <= SP_PG_ZERO; st++)
		tracked += e->state_count[st];
	out->ksm_rmap_items = (int64_t)tracked;
	if (!e->knob[SP_USE_ZERO_PAGES]) {
		merging += zero;  /* the kernel would have merged them: see _sp_zero_fold() */
		zero = 0;
	}
	out->ksm_zero_pages = (int64_t)zero;
	out->ksm_merging_pages = (int64_t)merging;
	out->ksm_process_profit = (int64_t)(e->pages_sharing + zero) * (int64_t)SP_PAGE - metadata_bytes(e);
	out->ksm_merge_any = e->merge_any;
	out->ksm_mergeable = e->nranges > 0;
	_sp_unlock(e);
	return 0;
}

int sp_engine_info_get(sp_engine *e, sp_engine_info *out)
{
	if (!e || !out)
		return -EINVAL;
	_sp_lock(e);
	out->change_detection = e->tracking ? "write-tracking" : "checksum";
	out->user_mode_only = e->uffd.user_mode_only;
	out->vmas = e->vmas;
	out->max_map_count = e->max_map_count;
	size_t pages = 0;
	for (uint32_t i = 0; i < e->nranges; i++)
		if (e->ranges[i])
			pages += e->ranges[i]->npages;
	out->registered_pages = pages;
	out->cpu_seconds = (double)_sp_engine_cpu_ns(e) / 1e9;
	_sp_unlock(e);
	return 0;
}

/* The engine whose thread this is: that thread reads its own CPU clock
 * and never e->thread, which pthread_create() may not have stored yet. */
static __thread sp_engine *own_engine;

int64_t _sp_engine_cpu_ns(sp_engine *e)
{
	clockid_t cid = CLOCK_THREAD_CPUTIME_ID;
	struct timespec ts;
	if (own_engine != e && (!e->thread_started || pthread_getcpuclockid(e->thread, &cid)))
		return 0;
	if (clock_gettime(cid, &ts))
		return 0;
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------ scanning */

/* One batch under the lock; large budgets in slices so that the
 * application's own calls are not held up for long. */
static int scan_once(sp_engine *e, int64_t budget)
{
	int total = 0;
	while (budget > 0) {
		size_t slice = budget > 4096 ? 4096 : (size_t)budget;
		_sp_lock(e);
		if (e->knob[SP_RUN] != 1 || e->inert) {
			_sp_unlock(e);
			break;
		}
		uint64_t scans = e->full_scans;
		int n = _sp_scan_batch(e, slice);
		if (e->full_scans != scans && e->merge_any)
			_sp_any_refresh(e);
		_sp_unlock(e);
		_sp_yield_lock(e);
		total += n;
		budget -= (int64_t)slice;
		if (n == 0)
			break;
	}
	return total;
}

int sp_engine_scan(sp_engine *e)
{
	if (!e)
		return -EINVAL;
	if (e->inert)
		return -ECHILD;
	return scan_once(e, e->knob[SP_PAGES_TO_SCAN]);
}

int sp_engine_wait_scans(sp_engine *e, unsigned scans, int timeout_ms)
{
	if (!e)
		return -EINVAL;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	if (!(e->flags & SP_ENGINE_MANUAL)) {
		/* The scanner publishes passes: no need for the engine's lock,
		 * which it would hold nearly always at sleep_millisecs=0. */
		pthread_mutex_lock(&e->pass_lock);
		uint64_t want = atomic_load(&e->scans_done) + scans;
		int r = 0;
		while (atomic_load(&e->scans_done) < want && r == 0)
			if (pthread_cond_timedwait(&e->pass_cond, &e->pass_lock, &until) == ETIMEDOUT)
				r = atomic_load(&e->scans_done) >= want ? 0 : -ETIMEDOUT;
		pthread_mutex_unlock(&e->pass_lock);
		return r;
	}
	_sp_lock(e);
	uint64_t want = e->full_scans + scans;
	int r = 0;
	while (e->full_scans < want && r == 0) {
		_sp_unlock(e);
		int n = scan_once(e, e->knob[SP_PAGES_TO_SCAN]);
		_sp_lock(e);
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (n <= 0 && e->full_scans < want && (e->knob[SP_RUN] != 1 || e->nranges == 0))
			r = -EAGAIN;
		else if (now.tv_sec > until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec))
			r = -ETIMEDOUT;
	}
	_sp_unlock(e);
	return r;
}

static void *scanner_main(void *arg)
{
	sp_engine *e = arg;
	_sp_lock(e);
	while (!e->stopping) {
		if (e->knob[SP_RUN] != 1) {
			pthread_cond_wait(&e->cond, &e->lock);
			continue;
		}
		int64_t budget = e->knob[SP_PAGES_TO_SCAN];
		_sp_unlock(e);
		scan_once(e, budget > 0 ? budget : 1);
		_sp_lock(e);
		if (e->stopping)
			break;
		int64_t ms = e->knob[SP_SLEEP_MILLISECS];
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += ms / 1000;
		until.tv_nsec += (ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		if (ms > 0)
			pthread_cond_timedwait(&e->cond, &e->lock, &until);
	}
	_sp_unlock(e);
	return NULL;
}

struct thread_start {
	sp_engine *e;
	void *(*main_fn)(void *);
};

static void *thread_entry(void *arg)
{
	struct thread_start ts = *(struct thread_start *)arg;
	free(arg);
	own_engine = ts.e;
	/* Named, so that top -H and /proc/PID/task/TID/comm tell the
	 * merger's CPU from the program's own. */
	_sp_prim_prctl(PR_SET_NAME, (unsigned long)"samepage", 0, 0, 0);
	return ts.main_fn(ts.e);
}

static int start_thread(sp_engine *e, void *(*main_fn)(void *))
{
	/* The thread's stack (and its TLS, which glibc puts there) is meta
	 * memory: never registered, so never frozen under the scanner. */
	void *stack = _sp_meta_alloc(THREAD_STACK);
	if (!stack)
		return -ENOMEM;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstack(&attr, stack, THREAD_STACK);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);  /* the thread inherits: no handlers run on it */
	struct thread_start *ts = malloc(sizeof(*ts));
	int r = ts ? 0 : ENOMEM;
	if (ts) {
		*ts = (struct thread_start){ e, main_fn };
		r = pthread_create(&e->thread, &attr, thread_entry, ts);
		if (r)
			free(ts);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r) {
		_sp_meta_free(stack, THREAD_STACK);
		return -r;
	}
	e->thread_stack = stack;
	e->thread_started = true;
	return 0;
}

/* ------------------------------------------------------------ lifecycle */

int sp_engine_new(unsigned flags, sp_engine **out)
{
	if (!out || (flags & ~(unsigned)(SP_ENGINE_CHECKSUM | SP_ENGINE_MANUAL | SP_ENGINE_SHARED)) ||
	    ((flags & SP_ENGINE_SHARED) && (flags & SP_ENGINE_MANUAL)))
		return -EINVAL;  /* a shared engine is paced by the daemon */
	*out = NULL;
	if (sysconf(_SC_PAGESIZE) != (long)SP_PAGE)
		return -EOPNOTSUPP;
	pthread_once(&atfork_once, install_atfork);
	sp_engine *e = _sp_meta_alloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->cond, &ca);
	pthread_mutex_init(&e->pass_lock, NULL);
	pthread_cond_init(&e->pass_cond, &ca);
	pthread_condattr_destroy(&ca);
	e->flags = flags;
	e->owner = getpid();
	e->max_map_fd = -1;
	e->self_pidfd = -1;
	set_defaults(e);
	int r = _sp_uffd_open(&e->uffd, !(flags & SP_ENGINE_CHECKSUM));
	if (r) {
		_sp_meta_free(e, sizeof(*e));
		return r;
	}
	e->tracking = e->uffd.write_tracking;
	/* Both modes read /proc/self/pagemap (presence, copies on write). A
	 * process that changed uid without exec is not dumpable and cannot. */
	if (!e->tracking) {
		int pm = _sp_prim_open("/proc/self/pagemap", O_RDONLY, 0);
		if (pm < 0) {
			_sp_set_last_error("cannot read /proc/self/pagemap (a process that changed its uid "
					   "without exec is not dumpable: PR_SET_DUMPABLE)");
			_sp_uffd_close(&e->uffd);
			_sp_meta_free(e, sizeof(*e));
			return pm;
		}
		e->uffd.pagemap = pm;
	}
	const char *fake = getenv("SAMEPAGE_FAKE_NUMA_NODES");
	e->fake_numa = fake ? atoi(fake) : 0;
	if (e->fake_numa < 0 || e->fake_numa > SP_MAX_NODES)
		e->fake_numa = 0;
	e->numa_nodes = e->fake_numa > 1 ? e->fake_numa : count_numa_nodes();
	_sp_store_init(&e->store);
	e->stable.store = &e->store;
	e->store.real_numa = !e->fake_numa && e->numa_nodes > 1;
	static const uint8_t zero[SP_PAGE];
	e->zero_hash = _sp_hash_page(zero);
	/* PAGEMAP_SCAN copies its answer through a kernel buffer of min(vec_len,
	 * 512) entries of 24 bytes: at 512 that is 12 KiB, a page allocation at
	 * every call (1 % of a merging engine); up to 8 KiB comes from a slab. */
	e->veclen = 8192 / 24;
	e->vec = _sp_meta_alloc(e->veclen * sizeof(*e->vec));
	e->jobs = _sp_meta_alloc(SP_MAX_JOBS * sizeof(*e->jobs));
	e->addrs = _sp_meta_alloc(2 * SP_MAX_JOBS * sizeof(*e->addrs));
	e->runs = _sp_meta_alloc(2 * SP_MAX_JOBS * sizeof(*e->runs));
	e->cats = _sp_meta_alloc(SP_CATS);
	e->loose = _sp_meta_alloc(2 * SP_MAX_JOBS * sizeof(*e->loose));
	e->maps = _sp_meta_alloc(2 * SP_MAX_JOBS * sizeof(*e->maps));
	e->drops = _sp_meta_alloc(SP_MAX_JOBS * sizeof(*e->drops));
	if (!e->vec || !e->jobs || !e->addrs || !e->runs || !e->cats || !e->loose || !e->maps || !e->drops ||
	    _sp_stable_init(&e->stable, &e->store) || _sp_index_init(&e->unstable, 1024)) {
		sp_engine_free(e);
		return -ENOMEM;
	}
	/* The first count's cost, measured on this thread, predicts the next
	 * ones' (merge.c, _sp_vmas_recount()). */
	struct timespec c0, c1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	e->vmas = _sp_maps_count();
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	e->vmas_count_cost = (c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec);
	e->vmas_counted = e->vmas > 0 ? e->vmas : 0;
	e->vmas_counted_ns = _sp_now_ns();
	char buf[32];
	e->max_map_count = _sp_read_file("/proc/sys/vm/max_map_count", buf, sizeof(buf)) > 0 ? atoi(buf) : 65530;
	e->max_map_fd = _sp_prim_open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC, 0);
	if (flags & SP_ENGINE_SHARED) {
		r = _sp_remote_init(e);
		if (!r)
			r = start_thread(e, _sp_remote_main);
		if (r) {
			sp_engine_free(e);
			return r;
		}
	} else if (!(flags & SP_ENGINE_MANUAL)) {
		r = start_thread(e, scanner_main);
		if (r) {
			sp_engine_free(e);
			return r;
		}
	}
	pthread_mutex_lock(&engines_lock);
	e->next = engines;
	engines = e;
	pthread_mutex_unlock(&engines_lock);
	*out = e;
	return 0;
}

int sp_engine_free(sp_engine *e)
{
	if (!e)
		return 0;
	pthread_mutex_lock(&engines_lock);
	for (sp_engine **pp = &engines; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	pthread_mutex_unlock(&engines_lock);
	if (e->thread_started) {
		_sp_lock(e);
		e->stopping = true;
		pthread_cond_broadcast(&e->cond);
		if (e->remote)
			_sp_remote_wake(e);  /* waiting on its socket, not on cond */
		_sp_unlock(e);
		pthread_join(e->thread, NULL);
	}
	int r = 0;
	_sp_lock(e);
	if (!e->inert) {
		r = _sp_unmerge_all(e, false);
		for (uint32_t id = 0; id < e->nranges; id++) {
			struct sp_range *rg = e->ranges[id];
			if (rg)
				_sp_track_unregister(e, rg->start, rg->npages * SP_PAGE);
		}
	}
	if (e->remote)
		_sp_remote_flush(e);
	/* Pages that could not be unmerged keep their mapping: do not punch. */
	e->store.no_punch = true;
	for (uint32_t id = 0; id < e->nranges; id++)
		if (e->ranges[id])
			_sp_range_cut(e, e->ranges[id]->start,
				      e->ranges[id]->start + e->ranges[id]->npages * SP_PAGE);
	_sp_unlock(e);
	_sp_remote_fini(e);
	_sp_uffd_close(&e->uffd);
	if (e->max_map_fd >= 0)
		_sp_prim_close(e->max_map_fd);
	_sp_store_fini(&e->store);
	_sp_stable_fini(&e->stable);
	_sp_index_fini(&e->unstable);
	_sp_meta_free(e->ranges, e->capranges * sizeof(*e->ranges));
	_sp_meta_free(e->vec, e->veclen * sizeof(*e->vec));
	_sp_meta_free(e->jobs, SP_MAX_JOBS * sizeof(*e->jobs));
	_sp_meta_free(e->addrs, 2 * SP_MAX_JOBS * sizeof(*e->addrs));
	_sp_meta_free(e->runs, 2 * SP_MAX_JOBS * sizeof(*e->runs));
	_sp_meta_free(e->cats, SP_CATS);
	_sp_meta_free(e->loose, 2 * SP_MAX_JOBS * sizeof(*e->loose));
	_sp_meta_free(e->maps, 2 * SP_MAX_JOBS * sizeof(*e->maps));
	_sp_meta_free(e->drops, SP_MAX_JOBS * sizeof(*e->drops));
	if (e->self_pidfd >= 0)
		_sp_prim_close(e->self_pidfd);
	if (e->thread_stack)
		_sp_meta_free(e->thread_stack, THREAD_STACK);
	pthread_cond_destroy(&e->cond);
	pthread_cond_destroy(&e->pass_cond);
	pthread_mutex_destroy(&e->pass_lock);
	pthread_mutex_destroy(&e->lock);
	_sp_meta_free(e, sizeof(*e));
	return r == -ENOMEM || r == -EAGAIN ? -ENOMEM : 0;
}

/* ------------------------------------------------------------ registration */

/* Register the parts of [start,end) that are not registered yet. */
int _sp_engine_register(sp_engine *e, uintptr_t start, uintptr_t end, bool any, char *why, size_t whylen)
{
	if (_sp_meta_overlaps(start, end)) {
		snprintf(why, whylen, "the range holds the engine's own memory");
		return -EINVAL;
	}
	struct sp_vmas m;
	int r = _sp_maps_check(start, end, e->store.name, why, whylen);
	if (r)
		return r;
	r = _sp_maps_read(start, end, e->store.name, &m);
	if (r)
		return r;
	struct sp_vma *v = m.v;
	size_t n = m.n;
	for (size_t i = 0; i < n && !r; i++) {
		uintptr_t s = v[i].start > start ? v[i].start : start;
		uintptr_t t = v[i].end < end ? v[i].end : end;
		/* Walk the piece page by page, skipping what is registered already. */
		uintptr_t a = s;
		while (a < t && !r) {
			if (_sp_range_at(e, a, NULL)) {
				a += SP_PAGE;
				continue;
			}
			uintptr_t b = a;
			while (b < t && !_sp_range_at(e, b, NULL))
				b += SP_PAGE;
			/* Not armed: first contact is the kernel's two-pass rule
			 * (scan.c), so memory the program keeps writing is never
			 * write-protected at all. */
			r = _sp_track_register(e, a, b - a, false);
			if (r == -EBUSY) {
				snprintf(why, whylen, "%#lx-%#lx is managed by another userfaultfd",
					 (unsigned long)a, (unsigned long)b);
				r = -EINVAL;
			} else if (r) {
				snprintf(why, whylen, "%#lx-%#lx cannot be tracked: %s", (unsigned long)a,
					 (unsigned long)b, sp_strerror(r));
				r = r == -ENOMEM ? -ENOMEM : -EINVAL;
			} else {
				int prot = (v[i].prot & 1 ? PROT_READ : 0) | (v[i].prot & 2 ? PROT_WRITE : 0) |
					   (v[i].prot & 4 ? PROT_EXEC : 0);
				int id = _sp_range_add(e, a, (b - a) / SP_PAGE, prot, any);
				if (id < 0) {
					_sp_track_unregister(e, a, b - a);
					r = id;
				}
			}
			a = b;
		}
	}
	_sp_maps_free(&m);
	return r;
}

/* Unmerge and unregister [start,end). */
int _sp_engine_unregister(sp_engine *e, uintptr_t start, uintptr_t end)
{
	for (uint32_t id = 0; id < e->nranges; id++) {
		struct sp_range *r = e->ranges[id];
		if (!r)
			continue;
		uintptr_t rs = r->start, re = r->start + r->npages * SP_PAGE;
		if (end <= rs || start >= re)
			continue;
		uintptr_t a = start > rs ? start : rs, b = end < re ? end : re;
		int rc = e->inert ? 0 : _sp_unmerge_run(e, id, (a - rs) / SP_PAGE, (b - a) / SP_PAGE, false);
		if (rc)
			return rc;
		if (!e->inert)
			_sp_track_unregister(e, a, b - a);
		rc = _sp_range_cut(e, a, b);
		if (rc)
			return rc;
	}
	return 0;
}

/* "Merge any": every private anonymous mapping big enough, except stacks. */
void _sp_any_refresh(sp_engine *e)
{
	int64_t now = _sp_now_ns();
	if (now - e->any_refreshed_ns < 1000000000LL)
		return;
	e->any_refreshed_ns = now;
	struct sp_vmas m;
	if (_sp_maps_read(0, UINTPTR_MAX, e->store.name, &m))
		return;
	struct sp_vma *v = m.v;
	size_t n = m.n;
	for (size_t i = 0; i < n; i++) {
		/* Threads' stacks (and the thread control block, with its rseq
		 * area, at their top) sit right above a PROT_NONE guard: never
		 * freeze those, the kernel writes them for signals and rseq. */
		bool thread_stack = i > 0 && v[i - 1].end == v[i].start && v[i - 1].prot == 0 && !v[i - 1].file;
		if (v[i].shared || v[i].file || v[i].hugetlb || v[i].locked || v[i].uffd || v[i].special ||
		    v[i].store || !(v[i].prot & 1) || v[i].end - v[i].start < e->any_min ||
		    strncmp(v[i].path, "[stack", 6) == 0 || v[i].growsdown || thread_stack ||
		    _sp_meta_overlaps(v[i].start, v[i].end))
			continue;
		char why[160];
		_sp_engine_register(e, v[i].start, v[i].end, true, why, sizeof(why));
	}
	_sp_maps_free(&m);
}

int sp_engine_merge_any(sp_engine *e, bool enable, size_t min_bytes)
{
	if (!e)
		return -EINVAL;
	if (e->inert)
		return -ECHILD;
	_sp_lock(e);
	int r = 0;
	if (enable) {
		e->merge_any = true;
		e->any_min = min_bytes < SP_PAGE ? SP_PAGE : min_bytes;
		e->any_refreshed_ns = 0;
		_sp_any_refresh(e);
	} else if (e->merge_any) {
		/* Like PR_SET_MEMORY_MERGE=0: unmerge what "merge any" registered. */
		e->merge_any = false;
		for (uint32_t id = 0; id < e->nranges && !r; id++) {
			struct sp_range *rg = e->ranges[id];
			if (rg && rg->any)
				r = _sp_engine_unregister(e, rg->start, rg->start + rg->npages * SP_PAGE);
		}
	}
	_sp_unlock(e);
	return r;
}
