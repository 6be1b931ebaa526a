/* SPDX-License-Identifier: MIT */
/*
 * Building the benchmark's memory image and running its writer thread.
 *
 * Every page that must not merge carries a tag in its first eight bytes
 * (pool contents one tag, unique and volatile pages another with their page
 * number), so "unique" is guaranteed rather than likely and the possible
 * savings are exact. The writer never touches those eight bytes.
 */
#include "workload.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define TAG_POOL 0x5050000000000000ull
#define TAG_UNIQUE 0x5500000000000000ull

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64*: plenty for filling pages and picking them */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static void fill_random(uint8_t *p, uint64_t tag, uint64_t *s)
{
	uint64_t *w = (uint64_t *)p;
	w[0] = tag;
	for (size_t i = 1; i < WL_PAGE / 8; i++)
		w[i] = rnd(s);
}

int wl_pool_index(const struct wl_image *img, const uint8_t *page)
{
	uint64_t tag;
	memcpy(&tag, page, sizeof(tag));
	if ((tag & 0xffff000000000000ull) != TAG_POOL)
		return -1;
	uint64_t k = tag & 0xffffffffffffull;
	return k < img->distinct ? (int)k : -1;
}

uint8_t *wl_page(const struct wl_image *img, size_t i)
{
	for (unsigned r = 0; r < img->nreg; r++) {
		if (i < img->reg[r].pages)
			return img->reg[r].base + i * WL_PAGE;
		i -= img->reg[r].pages;
	}
	return NULL;
}

/* Classes of blocks of `cluster` pages, in exact proportions, shuffled. */
static uint8_t *draw_classes(const struct wl_params *p, uint64_t *s)
{
	size_t cluster = p->cluster ? p->cluster : 1;
	size_t blocks = (p->pages + cluster - 1) / cluster;
	uint8_t *bc = malloc(blocks), *cls = malloc(p->pages);
	if (!bc || !cls) {
		free(bc);
		free(cls);
		return NULL;
	}
	size_t at = 0;
	for (int c = 0; c < WL_NCLASS && at < blocks; c++) {
		size_t n = (size_t)llround(p->share[c] * (double)blocks);
		if (at + n > blocks)
			n = blocks - at;
		memset(bc + at, c, n);
		at += n;
	}
	/* rounding may leave a few blocks: they are unique pages */
	memset(bc + at, WL_UNIQUE, blocks - at);
	for (size_t i = blocks - 1; i > 0; i--) {
		size_t j = rnd(s) % (i + 1);
		uint8_t t = bc[i];
		bc[i] = bc[j];
		bc[j] = t;
	}
	for (size_t i = 0; i < p->pages; i++)
		cls[i] = bc[i / cluster];
	free(bc);
	return cls;
}

static int map_regions(const struct wl_params *p, struct wl_image *img, char *err, size_t errlen)
{
	unsigned nreg = p->regions ? p->regions : 1;
	if (nreg > p->pages)
		nreg = (unsigned)p->pages;
	img->reg = calloc(nreg, sizeof(*img->reg));
	if (!img->reg) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	img->nreg = nreg;
	for (unsigned r = 0; r < nreg; r++) {
		size_t n = p->pages / nreg + (r < p->pages % nreg);
		/* One page more, then unmapped: the gap keeps the kernel from
		 * joining neighbouring regions into one VMA. */
		size_t len = (n + 1) * WL_PAGE;
		uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			snprintf(err, errlen, "mmap of %zu bytes: %s", len, strerror(errno));
			return -1;
		}
		munmap(m + n * WL_PAGE, WL_PAGE);
		/* Base pages for both engines: the kernel's KSM would split huge
		 * pages on merging and the engine splits them too; leaving THP
		 * to chance would make runs differ by khugepaged's timing. */
		madvise(m, n * WL_PAGE, MADV_NOHUGEPAGE);
		img->reg[r] = (struct wl_region){ m, n };
	}
	return 0;
}

int wl_build(const struct wl_params *p, struct wl_image *img, char *err, size_t errlen)
{
	memset(img, 0, sizeof(*img));
	uint64_t s = p->seed ? p->seed : 1;
	if (p->pages == 0 || p->distinct == 0) {
		snprintf(err, errlen, "the image needs pages and at least one pool content");
		return -1;
	}
	img->pages = p->pages;
	img->distinct = p->distinct;
	uint8_t *cls = draw_classes(p, &s);
	uint8_t *pool = malloc((size_t)p->distinct * WL_PAGE);
	img->pool_count = calloc(p->distinct, sizeof(*img->pool_count));
	img->vol = malloc(p->pages * sizeof(*img->vol));
	img->dup = malloc(p->pages * sizeof(*img->dup));
	if (!cls || !pool || !img->pool_count || !img->vol || !img->dup) {
		snprintf(err, errlen, "out of memory");
		free(cls);
		free(pool);
		return -1;
	}
	if (map_regions(p, img, err, errlen)) {
		free(cls);
		free(pool);
		return -1;
	}
	/* A pool seed of its own gives every image built with it the same pool. */
	uint64_t ps = p->pool_seed, *pool_rng = p->pool_seed ? &ps : &s;
	for (unsigned k = 0; k < p->distinct; k++)
		fill_random(pool + (size_t)k * WL_PAGE, TAG_POOL | k, pool_rng);
	uint64_t salt = (uint64_t)(p->tag_salt & 0xffffff) << 32;
	for (size_t i = 0; i < p->pages; i++) {
		uint8_t *pg = wl_page(img, i);
		img->count[cls[i]]++;
		switch (cls[i]) {
		case WL_DUP: {
			unsigned k = p->pool_cycle ? (unsigned)(img->ndup % p->distinct)
						   : (unsigned)(rnd(&s) % p->distinct);
			memcpy(pg, pool + (size_t)k * WL_PAGE, WL_PAGE);
			img->pool_count[k]++;
			img->dup[img->ndup++] = (uint32_t)i;
			break;
		}
		case WL_ZERO:
			memset(pg, 0, WL_PAGE);  /* a write: the page is present, not the zero page */
			break;
		case WL_VOLATILE:
			img->vol[img->nvol++] = (uint32_t)i;
			/* fall through */
		default:
			fill_random(pg, TAG_UNIQUE | salt | i, &s);
			break;
		}
	}
	free(cls);
	free(pool);
	return 0;
}

int64_t wl_possible_savings(const struct wl_image *img, bool use_zero_pages, unsigned max_page_sharing)
{
	return wl_savings_of_counts(img->pool_count, img->distinct, img->count[WL_ZERO], use_zero_pages,
				    max_page_sharing);
}

int64_t wl_savings_of_counts(const size_t *pool_count, unsigned distinct, size_t z, bool use_zero_pages,
			     unsigned max_page_sharing)
{
	size_t mps = max_page_sharing >= 2 ? max_page_sharing : 2;
	int64_t saved = 0;
	for (unsigned k = 0; k < distinct; k++) {
		size_t n = pool_count[k];
		if (n > 1)
			saved += (int64_t)(n - (n + mps - 1) / mps);
	}
	if (use_zero_pages)
		saved += (int64_t)z;
	else if (z > 1)
		saved += (int64_t)(z - (z + mps - 1) / mps);
	return saved;
}

/* ------------------------------------------------------------ latency */

static size_t bucket_of(uint64_t ns)
{
	if (ns < WL_HIST_SUB)
		return (size_t)ns;
	int e = 63 - __builtin_clzll(ns);  /* >= 5 */
	size_t b = WL_HIST_SUB + (size_t)(e - 5) * WL_HIST_SUB + ((ns >> (e - 5)) & (WL_HIST_SUB - 1));
	return b < WL_HIST_BUCKETS ? b : WL_HIST_BUCKETS - 1;
}

/* Middle of a bucket, in nanoseconds. */
static double bucket_mid(size_t b)
{
	if (b < WL_HIST_SUB)
		return (double)b;
	size_t e = (b - WL_HIST_SUB) / WL_HIST_SUB + 5, sub = (b - WL_HIST_SUB) % WL_HIST_SUB;
	double lo = ldexp((double)(WL_HIST_SUB + sub), (int)e - 5);
	return lo + ldexp(0.5, (int)e - 5);
}

void wl_hist_add(struct wl_hist *h, uint64_t ns)
{
	h->b[bucket_of(ns)]++;
	h->n++;
	if (ns > h->max)
		h->max = ns;
}

double wl_hist_quantile(const struct wl_hist *h, double q)
{
	if (h->n == 0)
		return -1;
	uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;
	if (want == 0)
		want = 1;
	for (size_t b = 0; b < WL_HIST_BUCKETS; b++) {
		seen += h->b[b];
		if (seen >= want)
			return b == WL_HIST_BUCKETS - 1 ? (double)h->max : bucket_mid(b);
	}
	return (double)h->max;
}

/* ------------------------------------------------------------ the writer */

#define TICK_NS 1000000L  /* the writer wakes every millisecond */

static uint64_t ns_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One timed store of a new value into a volatile page (never its tag). */
static uint64_t store_volatile(struct wl_writer *w)
{
	const struct wl_image *img = w->img;
	uint64_t r = rnd(&w->rng);
	size_t k = r % img->nvol, word = 1 + (r >> 32) % (WL_PAGE / 8 - 1);
	uint8_t *pg = wl_page(img, img->vol[k]);
	volatile uint64_t *slot = (volatile uint64_t *)pg + word;
	uint64_t v = rnd(&w->rng);
	uint64_t t0 = ns_now();
	*slot = v;
	uint64_t ns = ns_now() - t0;
	if (w->shadow)
		((uint64_t *)(w->shadow + k * WL_PAGE))[word] = v;
	return ns;
}

/* One timed store of the value already there into a duplicate page: the
 * content stays a duplicate (the possible savings do not move) but a
 * merged page has to be copied on write, which is what is timed. */
static uint64_t store_dup(struct wl_writer *w)
{
	const struct wl_image *img = w->img;
	uint64_t r = rnd(&w->rng);
	uint8_t *pg = wl_page(img, img->dup[r % img->ndup]);
	volatile uint64_t *slot = (volatile uint64_t *)pg + (r >> 32) % (WL_PAGE / 8);
	uint64_t v = *slot;
	uint64_t t0 = ns_now();
	*slot = v;
	return ns_now() - t0;
}

static void *writer_main(void *arg)
{
	struct wl_writer *w = arg;
	atomic_store(&w->tid, (int)gettid());
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	uint64_t last = ns_now();
	double credit = 0, dup_credit = 0;
	while (!atomic_load(&w->stop)) {
		int rec = atomic_load(&w->rec_req);
		atomic_store(&w->rec_ack, rec);
		uint64_t now = ns_now();
		double dt = (double)(now - last) / 1e9;
		last = now;
		if (atomic_load(&w->paused)) {
			credit = dup_credit = 0;
		} else {
			/* Catch up after a stall, but by at most 100 ms of stores. */
			credit += dt * w->rate;
			if (credit > w->rate * 0.1 + 1)
				credit = w->rate * 0.1 + 1;
			dup_credit += dt * w->dup_rate;
			if (dup_credit > w->dup_rate * 0.1 + 1)
				dup_credit = w->dup_rate * 0.1 + 1;
			for (; credit >= 1 && w->img->nvol; credit -= 1) {
				uint64_t ns = store_volatile(w);
				w->writes++;
				if (rec != WL_REC_OFF)
					wl_hist_add(&w->vol[rec], ns);
			}
			for (; dup_credit >= 1 && w->img->ndup; dup_credit -= 1) {
				uint64_t ns = store_dup(w);
				w->dup_writes++;
				if (rec != WL_REC_OFF)
					wl_hist_add(&w->dup[rec], ns);
			}
		}
		next.tv_nsec += TICK_NS;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		struct timespec cur;
		clock_gettime(CLOCK_MONOTONIC, &cur);
		if (cur.tv_sec > next.tv_sec || (cur.tv_sec == next.tv_sec && cur.tv_nsec > next.tv_nsec))
			next = cur;  /* late: do not try to make up lost ticks */
		else
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	return NULL;
}

int wl_writer_start(struct wl_writer *w, const struct wl_image *img, double rate, double dup_rate,
		    uint64_t seed)
{
	return wl_writer_start_shadowed(w, img, rate, dup_rate, seed, NULL);
}

int wl_writer_start_shadowed(struct wl_writer *w, const struct wl_image *img, double rate, double dup_rate,
			     uint64_t seed, uint8_t *shadow)
{
	memset(w, 0, sizeof(*w));
	w->img = img;
	w->shadow = shadow;
	w->rate = rate;
	w->dup_rate = dup_rate;
	w->rng = seed ? seed : 7;
	int r = pthread_create(&w->thread, NULL, writer_main, w);
	if (r)
		return -r;
	while (atomic_load(&w->tid) == 0) {
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

void wl_writer_record(struct wl_writer *w, enum wl_rec rec)
{
	atomic_store(&w->rec_req, (int)rec);
	/* The writer acknowledges at the top of a tick, after the batch that
	 * used the old slot: from then on the old histogram is ours to read. */
	while (atomic_load(&w->rec_ack) != (int)rec) {
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
	}
}

void wl_writer_pause(struct wl_writer *w, bool paused)
{
	atomic_store(&w->paused, paused ? 1 : 0);
}

void wl_writer_stop(struct wl_writer *w)
{
	atomic_store(&w->stop, 1);
	pthread_join(w->thread, NULL);
}
