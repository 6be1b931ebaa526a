/* SPDX-License-Identifier: MIT */
/*
 * The mapping floor's calls (engine_vs_ksm --floor, procs_vs_ksm --floor):
 * given a plan of what each page of an image becomes, make the fewest
 * calls a merger in user space that shares pages through mappings needs,
 * at a merger's pace, and time them on the calling thread.
 */
#ifndef SP_BENCH_FLOOR_CALLS_H
#define SP_BENCH_FLOOR_CALLS_H

#include <stdbool.h>
#include <stdint.h>

#include "workload.h"

enum { FLOOR_NONE, FLOOR_MAP, FLOOR_DROP };

struct floor_calls {
	const struct wl_image *img;
	const uint8_t *op;           /* per page: FLOOR_* */
	const uint32_t *store_page;  /* per page, for FLOOR_MAP: the page of fd it shows */
	int fd;                      /* the store */
	double pages_per_tick;       /* pages of the image per turn (pages_to_scan) */
	long sleep_ms;               /* between turns (sleep_millisecs) */
	/* Turns shared with others (NULL: turns of our own, sleep_ms apart):
	 * called before the first turn and after each (last: no more), it
	 * waits for this caller's next turn, sleeping sleep_ms between. */
	void (*turn)(void *arg, bool last);
	void *turn_arg;
};

struct floor_out {
	uint64_t nops;               /* pages mapped or dropped */
	uint64_t calls;              /* mmap and madvise calls made for them */
	double cpu90, cpu99;         /* thread CPU when 90 % and 99 % of nops were done */
	double cpu_all, wall;
	int err;                     /* errno of a failed call, 0 */
	char what[64];               /* which call */
};

/* Pages in address order, pages_per_tick of them (on average) per turn,
 * then sleep_ms. Neighbours the plan maps to consecutive store pages are
 * mapped by one mmap(MAP_FIXED), neighbouring zero pages dropped by one
 * MADV_DONTNEED, within one turn: as any merger could at best. */
void floor_calls_run(const struct floor_calls *fc, struct floor_out *out);

/* Sleep ms milliseconds, signals or not. */
void floor_nap_ms(long ms);

#endif
