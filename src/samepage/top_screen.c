/* SPDX-License-Identifier: MIT */
/* samepage top: the screen. Plain curses (no colour, no mouse), so it works
 * on any terminal and over ssh; every line is clipped to the width. */
#include "top_screen.h"

#include <curses.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LABEL_W 10   /* "pages/s   " before a sparkline */
#define VALUE_W 13   /* " 117.7 MiB" after it */

const char *top_spark_level(bool utf8, int level)
{
	/* U+2581..U+2588, lower one eighth block to full block */
	static const char *const blocks[8] = { "\u2581", "\u2582", "\u2583", "\u2584",
					       "\u2585", "\u2586", "\u2587", "\u2588" };
	static const char *const ascii[8] = { "_", ".", "-", "~", "=", "+", "*", "#" };
	if (level < 0)
		level = 0;
	if (level > 7)
		level = 7;
	return utf8 ? blocks[level] : ascii[level];
}

/* One line of text at row y, clipped (the bottom-right cell is never
 * written: some terminals scroll when it is). */
static void text(int y, int attr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void text(int y, int attr, const char *fmt, ...)
{
	if (y < 0 || y >= LINES)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	int width = COLS - (y == LINES - 1 ? 1 : 0);
	if (width <= 0)
		return;
	if (attr) {
		/* a highlighted line spans the width */
		size_t len = strlen(buf);
		while (len < sizeof(buf) - 1 && (int)len < width)
			buf[len++] = ' ';
		buf[len] = 0;
		attron(attr);
	}
	mvaddnstr(y, 0, buf, width);
	if (attr)
		attroff(attr);
}

static void num_or_dash(const sp_sample *s, sp_param p, char *buf, size_t len)
{
	int64_t v;
	if (sp_sample_get(s, p, &v) == 0)
		snprintf(buf, len, "%lld", (long long)v);
	else
		snprintf(buf, len, "-");
}

static void rate_text(double v, const char *fmt, char *buf, size_t len)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, fmt, v);
}

static const char *run_word(const struct top_frame *f)
{
	int64_t run = -1;
	sp_sample_get(&f->s, SP_RUN, &run);
	return run == 1 ? "running" : run == 0 ? "stopped" : run == 2 ? "stopped, unmerged" : "?";
}

static void draw_title(const struct top_model *m, const struct top_view *v)
{
	const struct top_frame *f = &m->cur;
	char left[200], right[64], stamp[16];
	int64_t run = -1;
	sp_sample_get(&f->s, SP_RUN, &run);
	if (!f->ok)
		snprintf(left, sizeof(left), "samepage top - %s", m->user ? "user-space engine" : "kernel KSM");
	else if (m->user)
		snprintf(left, sizeof(left), "samepage top - user-space engine: %s (run=%lld), samepaged pid %d, %zu client%s",
			 run_word(f), (long long)run, (int)f->merger_pid, f->nprocs, f->nprocs == 1 ? "" : "s");
	else
		snprintf(left, sizeof(left), "samepage top - kernel KSM: %s (run=%lld), ksmd pid %d",
			 run_word(f), (long long)run, (int)f->merger_pid);
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	snprintf(right, sizeof(right), "every %.1f s  %s", v->interval_s, stamp);
	text(0, A_BOLD, "%s", left);
	int x = COLS - (int)strlen(right) - 1;
	if (x > (int)strlen(left) + 1) {
		attron(A_BOLD);
		mvaddstr(0, x, right);
		attroff(A_BOLD);
	}
}

static void draw_summary(const struct top_model *m, int y)
{
	const struct top_frame *f = &m->cur;
	if (!f->ok) {
		text(y, 0, "Savings   -");
		text(y + 1, 0, "Scanning  -");
		return;
	}
	char saved[32], profit[32], sharing[24], shared[24], zero[24];
	human_bytes(f->sav.saved_bytes, saved, sizeof(saved));
	human_bytes(f->sav.profit_bytes, profit, sizeof(profit));
	num_or_dash(&f->s, SP_PAGES_SHARING, sharing, sizeof(sharing));
	num_or_dash(&f->s, SP_PAGES_SHARED, shared, sizeof(shared));
	num_or_dash(&f->s, SP_KSM_ZERO_PAGES, zero, sizeof(zero));
	text(y, 0, "Savings   saved %s   profit %s%s   pages_sharing %s   pages_shared %s   ksm_zero_pages %s",
	     saved, profit, f->sav.profit_estimated ? " (estimated)" : "", sharing, shared, zero);
	char scans[24], pages[24], cpu[24], cow[24];
	rate_text(f->scans_per_s, "%.2f", scans, sizeof(scans));
	rate_text(f->pages_per_s, "%.0f", pages, sizeof(pages));
	rate_text(f->cpu_percent, "%.1f%%", cpu, sizeof(cpu));
	rate_text(f->cow_per_s, "%.1f", cow, sizeof(cow));
	text(y + 1, 0, "Scanning  %s full scans/s   %s pages/s   merger CPU %s (%s)   COW breaks %s/s", scans, pages,
	     cpu, m->user ? "clients' engine threads" : "ksmd", cow);
}

/* label, the history as bars scaled from min(0, lowest) to the highest, value. */
static void draw_spark(const struct top_ring *r, int y, const char *label, const char *value, bool utf8)
{
	if (y >= LINES - 1)
		return;
	text(y, 0, "%-*s", LABEL_W, label);
	int width = COLS - LABEL_W - VALUE_W;
	if (width > 0 && r->n > 0) {
		size_t count = r->n < (size_t)width ? r->n : (size_t)width;
		double lo = 0, hi = 0;
		for (size_t i = 0; i < count; i++) {
			double v = top_ring_get(r, count, i);
			lo = v < lo ? v : lo;
			hi = v > hi ? v : hi;
		}
		move(y, LABEL_W + width - (int)count);
		for (size_t i = 0; i < count; i++) {
			double v = top_ring_get(r, count, i);
			int level = hi > lo ? (int)((v - lo) / (hi - lo) * 7.0 + 0.5) : 0;
			addstr(top_spark_level(utf8, level));
		}
	}
	if (COLS > LABEL_W + VALUE_W)
		mvprintw(y, COLS - VALUE_W, "%*s", VALUE_W - 1, value);
}

static void draw_history(const struct top_model *m, const struct top_view *v, int y)
{
	const struct top_frame *f = &m->cur;
	char saved[32] = "-", pages[24], cpu[24], cow[24];
	if (f->ok)
		human_bytes(f->sav.saved_bytes, saved, sizeof(saved));
	rate_text(f->pages_per_s, "%.0f", pages, sizeof(pages));
	rate_text(f->cpu_percent, "%.1f%%", cpu, sizeof(cpu));
	rate_text(f->cow_per_s, "%.1f", cow, sizeof(cow));
	text(y, 0, "History, one column per refresh");
	draw_spark(&m->saved, y + 1, "saved", saved, v->utf8);
	draw_spark(&m->pages, y + 2, "pages/s", pages, v->utf8);
	draw_spark(&m->cpu, y + 3, "CPU %", cpu, v->utf8);
	draw_spark(&m->cow, y + 4, "COW/s", cow, v->utf8);
}

static void draw_processes(const struct top_model *m, int y)
{
	const struct top_frame *f = &m->cur;
	text(y, A_REVERSE, "%7s  %-16s %12s %10s %10s %10s", "PID", "COMMAND", "PROFIT", "MERGING", "RMAP", "ZERO");
	y++;
	if (f->ok && f->nprocs == 0)
		text(y, 0, "   (no process takes part in merging)");
	for (size_t i = 0; i < f->nprocs && y < LINES - 1; i++, y++) {
		const sp_proc_ksm *p = &f->procs[i];
		char profit[32], comm[32];
		human_bytes(p->ksm_process_profit, profit, sizeof(profit));
		printable_comm(p->comm, comm, sizeof(comm));
		text(y, 0, "%7d  %-16.16s %12s %10lld %10lld %10lld", (int)p->pid, comm, profit,
		     (long long)p->ksm_merging_pages, (long long)p->ksm_rmap_items, (long long)p->ksm_zero_pages);
	}
}

static void draw_footer(const struct top_model *m)
{
	const struct top_frame *f = &m->cur;
	char more[96] = "";
	if (f->unreadable)
		snprintf(more, sizeof(more), ", %zu unreadable (root sees all)", f->unreadable);
	if (!f->ok)
		text(LINES - 1, A_BOLD, "q quit   %s", f->error);
	else
		text(LINES - 1, 0, "q quit   %zu process%s with %s activity%s", f->nprocs, f->nprocs == 1 ? "" : "es",
		     m->user ? "merging" : "KSM", more);
}

void top_screen_draw(const struct top_model *m, const struct top_view *v)
{
	erase();
	draw_title(m, v);
	draw_summary(m, 2);
	draw_history(m, v, 5);
	draw_processes(m, 11);
	draw_footer(m);
	refresh();
}
