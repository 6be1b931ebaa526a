/* SPDX-License-Identifier: MIT */
/*
 * The benchmark's workload: a memory image built in the calling process
 * (regions of private anonymous memory whose pages are duplicates, zeros,
 * unique or volatile, in given shares) and a writer thread that keeps the
 * volatile pages changing at a fixed rate and times every store.
 *
 * The image is known exactly, so the savings a perfect merger could reach
 * are computed, not estimated (wl_possible_savings).
 */
#ifndef SP_BENCH_WORKLOAD_H
#define SP_BENCH_WORKLOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WL_PAGE 4096UL

enum wl_class {
	WL_DUP,       /* a copy of one of `distinct` pool pages */
	WL_ZERO,      /* all zero bytes, but present (written) */
	WL_UNIQUE,    /* random, unique, never written again */
	WL_VOLATILE,  /* random, unique, rewritten by the writer */
	WL_NCLASS
};

struct wl_params {
	size_t pages;                /* size of the image */
	double share[WL_NCLASS];     /* fractions, adding up to 1 */
	unsigned distinct;           /* contents of the duplicate pool */
	unsigned regions;            /* separate mappings */
	unsigned cluster;            /* pages of one class in a row (1: every page drawn) */
	uint64_t seed;
	/* Images built in several processes that must share contents
	 * (bench/procs_vs_ksm); all zero keeps the single-process image. */
	uint64_t pool_seed;          /* pool contents from this seed (0: from seed) */
	bool pool_cycle;             /* duplicates take pool contents 0, 1, 2... in turn, not at random */
	uint32_t tag_salt;           /* in unique pages' tags (< 2^24): no two images share one */
};

struct wl_region {
	uint8_t *base;
	size_t pages;
};

struct wl_image {
	struct wl_region *reg;
	unsigned nreg;
	size_t pages;
	size_t count[WL_NCLASS];     /* pages of each class, as built */
	unsigned distinct;
	size_t *pool_count;          /* copies of each pool content */
	uint32_t *vol, *dup;         /* page numbers of the volatile and duplicate pages */
	size_t nvol, ndup;
};

/* Map the regions and fill every page. 0, or -1 with err saying why. */
int wl_build(const struct wl_params *p, struct wl_image *img, char *err, size_t errlen);

/* Address of page i of the image (pages are numbered across regions). */
uint8_t *wl_page(const struct wl_image *img, size_t i);

/* Which pool content a page holding a copy of one is (its tag), or -1. */
int wl_pool_index(const struct wl_image *img, const uint8_t *page);

/* Pages a perfect merger saves, with the kernel's accounting: a content
 * with n copies needs ceil(n / max_page_sharing) merged pages; zero pages
 * cost nothing with use_zero_pages=1 and are one more content without. */
int64_t wl_possible_savings(const struct wl_image *img, bool use_zero_pages, unsigned max_page_sharing);

/* The same from copies per pool content and zero pages, e.g. summed over
 * the images of several processes. */
int64_t wl_savings_of_counts(const size_t *pool_count, unsigned distinct, size_t zero, bool use_zero_pages,
			     unsigned max_page_sharing);

/* ------------------------------------------------------------ latency */

#define WL_HIST_SUB 32
#define WL_HIST_BUCKETS (WL_HIST_SUB + 36 * WL_HIST_SUB)

/* Log-linear histogram of nanoseconds: 32 steps per power of two (~3 %). */
struct wl_hist {
	uint64_t n, max;
	uint64_t b[WL_HIST_BUCKETS];
};

void wl_hist_add(struct wl_hist *h, uint64_t ns);
/* The q-quantile (0 < q <= 1) in nanoseconds, or -1 if empty. */
double wl_hist_quantile(const struct wl_hist *h, double q);

/* ------------------------------------------------------------ the writer */

/* Which histogram the writer fills. */
enum wl_rec { WL_REC_OFF, WL_REC_BASELINE, WL_REC_CONVERGE, WL_REC_STEADY, WL_REC_N };

struct wl_writer {
	const struct wl_image *img;
	double rate;                 /* stores per second into volatile pages */
	double dup_rate;             /* same-value stores per second into duplicate pages */
	uint64_t rng;
	pthread_t thread;
	atomic_int tid;
	atomic_int stop, paused;
	atomic_int rec_req, rec_ack; /* asked and applied recording slot */
	struct wl_hist vol[WL_REC_N], dup[WL_REC_N];
	uint64_t writes, dup_writes;
	uint8_t *shadow;             /* NULL, or copies of the volatile pages (wl_writer_start_shadowed) */
};

/* Start the writer (w must stay put: the thread uses it). 0 or -errno. */
int wl_writer_start(struct wl_writer *w, const struct wl_image *img, double rate, double dup_rate,
		    uint64_t seed);
/* The same, and every store into volatile page img->vol[k] is repeated,
 * untimed, into page k of shadow (nvol pages, a copy of them when the
 * writer starts), so that the image can be verified afterwards. */
int wl_writer_start_shadowed(struct wl_writer *w, const struct wl_image *img, double rate, double dup_rate,
			     uint64_t seed, uint8_t *shadow);
/* Switch the histogram that is filled; returns once the writer took it,
 * so the previous one is no longer written. */
void wl_writer_record(struct wl_writer *w, enum wl_rec rec);
void wl_writer_pause(struct wl_writer *w, bool paused);
void wl_writer_stop(struct wl_writer *w);

#endif
