/* SPDX-License-Identifier: MIT */
/*
 * The mapping floor's calls (see floor_calls.h).
 */
#include "floor_calls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "probe.h"

void floor_nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Pages from i on that one call can handle with page i, at most max. */
static size_t run_length(const struct floor_calls *fc, size_t i, size_t max)
{
	const struct wl_image *img = fc->img;
	uint8_t *p = wl_page(img, i);
	size_t n = 1;
	while (n < max && i + n < img->pages && fc->op[i + n] == fc->op[i] && wl_page(img, i + n) == p + n * WL_PAGE &&
	       (fc->op[i] != FLOOR_MAP || fc->store_page[i + n] == fc->store_page[i] + n))
		n++;
	return n;
}

void floor_calls_run(const struct floor_calls *fc, struct floor_out *out)
{
	const struct wl_image *img = fc->img;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < img->pages; i++)
		out->nops += fc->op[i] != FLOOR_NONE;
	uint64_t want90 = (uint64_t)(0.90 * (double)out->nops), want99 = (uint64_t)(0.99 * (double)out->nops);
	uint64_t done = 0;
	pid_t tid = probe_gettid();
	bool paced = fc->sleep_ms > 0 || fc->turn;
	double t0 = probe_now(), cpu0 = probe_thread_cpu(tid), credit = fc->pages_per_tick;
	out->cpu90 = out->cpu99 = -1;
	if (fc->turn)
		fc->turn(fc->turn_arg, false);
	for (size_t i = 0; i < img->pages;) {
		uint8_t *p = wl_page(img, i);
		size_t n = 1;
		if (fc->op[i] != FLOOR_NONE) {
			/* never past the turn's end: the rest is the next turn's */
			size_t left = paced && credit > 1 ? (size_t)credit : 1;
			n = run_length(fc, i, paced ? left : img->pages);
			int r = fc->op[i] == FLOOR_MAP
					? (mmap(p, n * WL_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fc->fd,
						(off_t)fc->store_page[i] * WL_PAGE) == MAP_FAILED)
					: madvise(p, n * WL_PAGE, MADV_DONTNEED);
			if (r) {
				out->err = errno;
				snprintf(out->what, sizeof(out->what), "%s of page %zu",
					 fc->op[i] == FLOOR_MAP ? "mmap" : "MADV_DONTNEED", i);
				break;
			}
			out->calls++;
			uint64_t before = done;
			done += n;
			if (before < want90 && done >= want90)
				out->cpu90 = probe_thread_cpu(tid) - cpu0;
			if (before < want99 && done >= want99)
				out->cpu99 = probe_thread_cpu(tid) - cpu0;
		}
		i += n;
		credit -= (double)n;
		if (credit < 1 && paced && i < img->pages) {
			if (fc->turn)
				fc->turn(fc->turn_arg, false);
			else
				floor_nap_ms(fc->sleep_ms);
			credit += fc->pages_per_tick;
		}
	}
	if (fc->turn)
		fc->turn(fc->turn_arg, true);
	out->cpu_all = probe_thread_cpu(tid) - cpu0;
	out->wall = probe_now() - t0;
}
