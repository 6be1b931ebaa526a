/* SPDX-License-Identifier: MIT */
/*
 * The mapping floor: what sharing the benchmark's duplicates costs a
 * merger in user space before it has found, compared or protected
 * anything. The plan is made beforehand, untimed, from the image itself:
 * every duplicate page is replaced by a private mapping of a store page
 * holding its content (mmap(MAP_FIXED), as the engine does) and every
 * zero page is dropped (MADV_DONTNEED, as the engine does), one call for
 * neighbours where one call can do it (floor_calls.c). Only those calls
 * are timed, by one thread, at the phase's pace: pages_to_scan pages of
 * the image in address order, then sleep_millisecs.
 *
 * No merger in user space that shares pages through mappings can spend
 * less than this on the same image: the engine adds finding the
 * duplicates, write tracking, freezing and comparing. Afterwards every
 * page is checked against what it held, so the floor is a correct merge.
 */
#include "phase.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "floor_calls.h"
#include "probe.h"

struct plan {
	const struct wl_image *img;
	uint8_t *op;             /* per page */
	uint32_t *store_page;    /* per page, for FLOOR_MAP */
	uint32_t *first;         /* per pool content: its first store page */
	int fd;                  /* the store */
	long pages_to_scan, sleep_ms;
	/* filled by the thread */
	atomic_int tid;
	struct floor_out out;
};

static int make_plan(struct plan *pl, const struct phase_cfg *c, struct phase_result *r)
{
	const struct wl_image *img = pl->img;
	unsigned mps = c->max_page_sharing;
	pl->op = calloc(img->pages, 1);
	pl->store_page = calloc(img->pages, sizeof(*pl->store_page));
	pl->first = calloc(img->distinct, sizeof(*pl->first));
	size_t *seen = calloc(img->distinct, sizeof(*seen));
	if (!pl->op || !pl->store_page || !pl->first || !seen) {
		free(seen);
		snprintf(r->error, sizeof(r->error), "out of memory for the plan");
		return -1;
	}
	/* The store: ceil(n / max_page_sharing) pages per content, as merged. */
	uint32_t nstore = 0;
	for (unsigned k = 0; k < img->distinct; k++) {
		pl->first[k] = nstore;
		nstore += (uint32_t)((img->pool_count[k] + mps - 1) / mps);
	}
	pl->fd = memfd_create("samepage-floor", MFD_CLOEXEC);
	if (pl->fd < 0 || ftruncate(pl->fd, (off_t)nstore * WL_PAGE)) {
		free(seen);
		snprintf(r->error, sizeof(r->error), "the store memfd: %s", strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < img->ndup; i++) {
		uint32_t pg = img->dup[i];
		const uint8_t *p = wl_page(img, pg);
		int k = wl_pool_index(img, p);
		if (k < 0) {
			free(seen);
			snprintf(r->error, sizeof(r->error), "duplicate page %u has no pool tag", pg);
			return -1;
		}
		uint32_t sp = pl->first[k] + (uint32_t)(seen[k]++ / mps);
		if (seen[k] % mps == 1 || mps == 1) {
			if (pwrite(pl->fd, p, WL_PAGE, (off_t)sp * WL_PAGE) != (ssize_t)WL_PAGE) {
				free(seen);
				snprintf(r->error, sizeof(r->error), "writing the store: %s", strerror(errno));
				return -1;
			}
		}
		pl->op[pg] = FLOOR_MAP;
		pl->store_page[pg] = sp;
	}
	free(seen);
	static const uint8_t zero[WL_PAGE];
	for (size_t i = 0; i < img->pages; i++)
		if (pl->op[i] == FLOOR_NONE && memcmp(wl_page(img, i), zero, WL_PAGE) == 0)
			pl->op[i] = FLOOR_DROP;
	return 0;
}

static void *floor_thread(void *arg)
{
	struct plan *pl = arg;
	atomic_store(&pl->tid, probe_gettid());
	struct floor_calls fc = { pl->img, pl->op, pl->store_page, pl->fd, (double)pl->pages_to_scan, pl->sleep_ms,
				  NULL, NULL };
	floor_calls_run(&fc, &pl->out);
	return NULL;
}

/* Every page holds what it held before: the duplicates their content, the
 * dropped pages zeros. Volatile and unique pages were not touched. */
static int64_t verify(const struct plan *pl)
{
	const struct wl_image *img = pl->img;
	static const uint8_t zero[WL_PAGE];
	static uint8_t want[WL_PAGE];
	int64_t wrong = 0;
	for (size_t i = 0; i < img->pages; i++) {
		const uint8_t *p = wl_page(img, i);
		if (pl->op[i] == FLOOR_DROP) {
			wrong += memcmp(p, zero, WL_PAGE) != 0;
		} else if (pl->op[i] == FLOOR_MAP) {
			if (pread(pl->fd, want, WL_PAGE, (off_t)pl->store_page[i] * WL_PAGE) != (ssize_t)WL_PAGE)
				return -1;
			wrong += memcmp(p, want, WL_PAGE) != 0;
		}
	}
	return wrong;
}

void floor_run(const struct phase_cfg *c, struct phase_result *r)
{
	memset(r, 0, sizeof(*r));
	r->status = 1;
	r->load_start = probe_loadavg();
	snprintf(r->detection, sizeof(r->detection), "none (planned)");
	static struct wl_image img;
	if (phase_build_image(c, &img, r))
		return;
	static struct plan pl;
	memset(&pl, 0, sizeof(pl));
	pl.img = &img;
	pl.pages_to_scan = c->pages_to_scan;
	pl.sleep_ms = c->sleep_ms;
	if (make_plan(&pl, c, r))
		return;

	static struct wl_writer w;
	int e = wl_writer_start(&w, &img, c->write_rate, c->dup_write_rate, c->wl.seed * 31 + 1);
	if (e) {
		snprintf(r->error, sizeof(r->error), "starting the writer: %s", strerror(-e));
		return;
	}
	wl_writer_record(&w, WL_REC_BASELINE);
	phase_nap((long)(c->baseline_seconds * 1e9));
	pid_t wtid = atomic_load(&w.tid);
	r->vmas_before = probe_self_vmas();
	r->pss_before = probe_self_pss();
	double wcpu0 = probe_thread_cpu(wtid);
	int64_t pre0 = probe_thread_preempted(wtid), flt0 = probe_thread_faults(wtid);
	wl_writer_record(&w, WL_REC_CONVERGE);
	pthread_t th;
	if ((e = pthread_create(&th, NULL, floor_thread, &pl))) {
		wl_writer_stop(&w);
		snprintf(r->error, sizeof(r->error), "starting the floor's thread: %s", strerror(e));
		return;
	}
	/* The main thread wakes as often as the phases' poll does: it shares
	 * the address space, so it takes part in its TLB flushes the same way. */
	while (atomic_load(&pl.tid) == 0 || pthread_tryjoin_np(th, NULL) == EBUSY)
		phase_nap(5000000L);
	wl_writer_record(&w, WL_REC_OFF);
	r->writer_cpu = probe_thread_cpu(wtid) - wcpu0;
	r->writer_preempted = probe_thread_preempted(wtid) - pre0;
	r->writer_faults = probe_thread_faults(wtid) - flt0;
	wl_writer_stop(&w);
	r->vmas_end = probe_self_vmas();
	r->pss_after = probe_self_pss();
	r->load_end = probe_loadavg();
	if (pl.out.err) {
		snprintf(r->error, sizeof(r->error), "%s: %s", pl.out.what, strerror(pl.out.err));
		return;
	}
	r->cpu90 = pl.out.cpu90;
	r->cpu99 = pl.out.cpu99;
	r->conv_cpu = pl.out.cpu_all;
	r->conv_wall = pl.out.wall;
	r->saved_end = (int64_t)pl.out.nops;
	r->floor_calls = pl.out.calls;
	phase_converge_latency(&w, r);
	int64_t wrong = verify(&pl);
	if (wrong != 0) {
		snprintf(r->error, sizeof(r->error), "%lld pages read wrong after the floor's merges",
			 (long long)wrong);
		return;
	}
	r->status = 0;
}
