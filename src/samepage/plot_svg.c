/* SPDX-License-Identifier: MIT */
/*
 * SVG line charts written as text: a frame per panel, grid lines at
 * "nice" tick values (1, 2 or 5 times a power of ten, of the binary unit
 * for bytes), tick labels, axis titles and a legend. No external tool.
 */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#define WIDTH 960.0
#define PANEL_H 270.0
#define TOP 50.0          /* above the first panel: the title */
#define LEFT 100.0
#define RIGHT 30.0
#define PAD_T 36.0        /* inside a panel, above the plot area: its title */
#define PAD_B 78.0        /* below it: tick labels, the axis title, the legend */
#define TICKS 5

/* Text with the five XML specials escaped. */
static void put_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default: fputc(*s, f);
		}
	}
}

/* A tick step of 1, 2 or 5 x 10^k giving about TICKS steps over span. */
static double nice_step(double span)
{
	double raw = span / TICKS, mag = pow(10, floor(log10(raw))), norm = raw / mag;
	return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

/* The axis: its range widened to whole steps, and the label scale. */
struct axis {
	double lo, hi, step, scale;
	const char *suffix;
};

static void make_axis(struct axis *a, double lo, double hi, enum plot_unit unit)
{
	static const char *bin[] = { " B", " KiB", " MiB", " GiB", " TiB", " PiB" };
	if (!(hi > lo)) {
		hi = lo + 1;
		if (lo > 0)
			lo = 0;
	}
	a->scale = 1;
	a->suffix = "";
	if (unit == PLOT_BYTES) {
		double m = fmax(fabs(lo), fabs(hi));
		size_t u = 0;
		while (m / a->scale >= 1024 && u + 1 < sizeof(bin) / sizeof(bin[0])) {
			a->scale *= 1024;
			u++;
		}
		a->suffix = bin[u];
	}
	a->step = nice_step((hi - lo) / a->scale) * a->scale;
	a->lo = floor(lo / a->step) * a->step;
	a->hi = ceil(hi / a->step) * a->step;
	if (a->hi <= a->lo)
		a->hi = a->lo + a->step;
}

static void tick_label(const struct axis *a, double v, char *buf, size_t len)
{
	double x = v / a->scale;
	if (fabs(x) < 1e-9 * (a->step / a->scale))
		x = 0;  /* no "-0" */
	snprintf(buf, len, "%.10g%s", x, a->suffix);
}

/* Seconds, or minutes or hours for long recordings. */
static void time_axis(struct axis *a, double x0, double x1)
{
	double span = x1 - x0;
	a->scale = span >= 7200 ? 3600 : span >= 180 ? 60 : 1;
	a->suffix = "";
	a->step = nice_step((span > 0 ? span : 1) / a->scale) * a->scale;
	/* whole steps at both ends: a recording starting at 0.001 s shows 0 */
	a->lo = floor(x0 / a->step + 1e-9) * a->step;
	a->hi = ceil(x1 / a->step - 0.05) * a->step;  /* not a whole step for 0.001 s more */
	if (a->hi < x1)
		a->hi = x1;
	if (a->hi <= a->lo)
		a->hi = a->lo + a->step;
}

static const char *time_unit(const struct axis *a)
{
	return a->scale == 3600 ? "h" : a->scale == 60 ? "min" : "s";
}

struct frame {
	double x, y, w, h;     /* the plot area */
	struct axis ax, ay;
};

static double px(const struct frame *fr, double v)
{
	return fr->x + (v - fr->ax.lo) / (fr->ax.hi - fr->ax.lo) * fr->w;
}

static double py(const struct frame *fr, double v)
{
	return fr->y + fr->h - (v - fr->ay.lo) / (fr->ay.hi - fr->ay.lo) * fr->h;
}

static void draw_axes(FILE *f, const struct frame *fr, const struct plot_panel *p)
{
	char buf[64];
	fprintf(f, "<g class=\"axes\" font-size=\"12\" fill=\"#333\">\n");
	for (double v = fr->ay.lo; v <= fr->ay.hi + fr->ay.step / 2; v += fr->ay.step) {
		double y = py(fr, v);
		tick_label(&fr->ay, v, buf, sizeof(buf));
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", fr->x, y,
			fr->x + fr->w, y);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", fr->x - 5, y,
			fr->x, y);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", fr->x - 8, y + 4);
		put_text(f, buf);
		fputs("</text>\n", f);
	}
	for (double v = fr->ax.lo; v <= fr->ax.hi + fr->ax.step / 2; v += fr->ax.step) {
		double x = px(fr, v);
		tick_label(&fr->ax, v, buf, sizeof(buf));
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", x,
			fr->y + fr->h, x, fr->y + fr->h + 5);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x,
			fr->y + fr->h + 19, buf);
	}
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n",
		fr->x, fr->y, fr->w, fr->h);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time since the start (%s)</text>\n",
		fr->x + fr->w / 2, fr->y + fr->h + 40, time_unit(&fr->ax));
	fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\">", fr->x - 78,
		fr->y + fr->h / 2);
	put_text(f, p->y_label);
	fputs("</text>\n", f);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\">", fr->x, fr->y - 14);
	put_text(f, p->title);
	fputs("</text>\n</g>\n", f);
}

/* One polyline per stretch of points without a gap. */
static void draw_series(FILE *f, const struct frame *fr, const struct plot_series *s)
{
	bool open = false;
	for (size_t i = 0; i < s->n; i++) {
		if (!isfinite(s->y[i]) || !isfinite(s->x[i])) {
			if (open)
				fputs("\"/>\n", f);
			open = false;
			continue;
		}
		if (!open)
			fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
				s->color);
		fprintf(f, "%s%.1f,%.1f", open ? " " : "", px(fr, s->x[i]), py(fr, s->y[i]));
		open = true;
	}
	if (open)
		fputs("\"/>\n", f);
}

/* One row under the axis title, where it never hides a line. */
static void draw_legend(FILE *f, const struct frame *fr, const struct plot_panel *p)
{
	double x = fr->x, y = fr->y + fr->h + 64;
	fprintf(f, "<g class=\"legend\" font-size=\"12\">\n");
	for (size_t i = 0; i < p->ns; i++) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>\n",
			x, y - 4, x + 22, y - 4, p->s[i].color);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 28, y);
		put_text(f, p->s[i].label);
		fputs("</text>\n", f);
		x += 28 + 6.5 * (double)strlen(p->s[i].label) + 30;  /* about 6.5 px a character at 12 px */
	}
	fputs("</g>\n", f);
}

static void draw_panel(FILE *f, double top, double x0, double x1, const struct plot_panel *p)
{
	struct frame fr = { .x = LEFT, .y = top + PAD_T, .w = WIDTH - LEFT - RIGHT, .h = PANEL_H - PAD_T - PAD_B };
	double lo = INFINITY, hi = -INFINITY;
	for (size_t i = 0; i < p->ns; i++)
		for (size_t j = 0; j < p->s[i].n; j++)
			if (isfinite(p->s[i].y[j])) {
				lo = fmin(lo, p->s[i].y[j]);
				hi = fmax(hi, p->s[i].y[j]);
			}
	bool empty = lo > hi;
	if (empty)
		lo = hi = 0;
	/* counts and rates start at 0; a line at the top stays off the frame */
	make_axis(&fr.ay, fmin(lo, 0), hi + (hi - fmin(lo, 0)) * 0.02, p->unit);
	time_axis(&fr.ax, x0, x1);
	fprintf(f, "<g class=\"panel\">\n");
	draw_axes(f, &fr, p);
	if (empty) {
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" fill=\"#666\">",
			fr.x + fr.w / 2, fr.y + fr.h / 2);
		put_text(f, p->empty ? p->empty : "no data");
		fputs("</text>\n", f);
	} else {
		for (size_t i = 0; i < p->ns; i++)
			draw_series(f, &fr, &p->s[i]);
		draw_legend(f, &fr, p);
	}
	fputs("</g>\n", f);
}

int plot_svg(FILE *f, const char *title, double x0, double x1, const struct plot_panel *p, size_t np)
{
	double h = TOP + PANEL_H * (double)np + 10;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n", WIDTH, h, WIDTH, h);
	fputs("<title>", f);
	put_text(f, title);
	fputs("</title>\n", f);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	fprintf(f, "<text x=\"%.1f\" y=\"30\" font-size=\"18\" font-weight=\"bold\" text-anchor=\"middle\">",
		WIDTH / 2);
	put_text(f, title);
	fputs("</text>\n", f);
	for (size_t i = 0; i < np; i++)
		draw_panel(f, TOP + PANEL_H * (double)i, x0, x1, &p[i]);
	fputs("</svg>\n", f);
	return ferror(f) ? -EIO : 0;
}
