/* SPDX-License-Identifier: MIT */
/* For the engine's own tests (engine_semantics_test.c, engine_zero_test.c):
 * an engine that scans only when asked, anonymous regions, counters.
 * Header-only, like daemon_util.h: every .c file under tests/ is built as
 * a test program of its own. */
#ifndef SP_ENGINE_UTIL_H
#define SP_ENGINE_UTIL_H

#include "helpers.h"

#include <string.h>
#include <sys/mman.h>

#define PG 4096UL

static inline sp_engine *engine(unsigned flags)
{
	sp_engine *e = NULL;
	int r = sp_engine_new(flags | SP_ENGINE_MANUAL, &e);
	if (r)
		return NULL;
	/* max_page_sharing high enough that counts below are simple; the
	 * chain test sets its own. */
	sp_setting go[] = { { "run", "1" }, { "pages_to_scan", "100000" }, { "max_page_sharing", "65536" } };
	sp_diag d;
	assert_int_equal(sp_engine_set(e, go, 3, 0, &d), 0);
	return e;
}

#define ENGINE(e, flags)                                                            \
	sp_engine *e = engine(flags);                                               \
	if (!e)                                                                     \
		SKIP_BECAUSE("userfaultfd is not available to this user on this kernel")

/* For tests of write tracking's own behaviour (faults, hot pages). */
#define REQUIRE_TRACKING(e)                                                         \
	do {                                                                        \
		sp_engine_info info_;                                               \
		assert_int_equal(sp_engine_info_get(e, &info_), 0);                 \
		if (strcmp(info_.change_detection, "write-tracking") != 0)          \
			SKIP_BECAUSE("no write tracking (PAGEMAP_SCAN with WP_ASYNC) on this kernel"); \
	} while (0)

static inline uint8_t *region(size_t pages, int distinct)
{
	uint8_t *p = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	for (size_t i = 0; i < pages; i++)
		memset(p + i * PG, distinct ? 1 + (int)(i % (size_t)distinct) : 0, PG);
	return p;
}

static inline int64_t counter(sp_engine *e, sp_param p)
{
	sp_sample s;
	assert_int_equal(sp_engine_sample(e, &s), 0);
	return s.value[p];
}

/* Passes until counter p reads want, at most max (a write in memory that
 * has been quiet is seen when its block's rest ends: up to 48 passes). */
static inline int64_t wait_counter(sp_engine *e, sp_param p, int64_t want, int max)
{
	for (int i = 0; i < max && counter(e, p) != want; i++)
		assert_int_equal(sp_engine_wait_scans(e, 1, 20000), 0);
	return counter(e, p);
}

#endif
