/* SPDX-License-Identifier: MIT */
/* Line charts as plain SVG text, for `samepage plot`. */
#ifndef SAMEPAGE_PLOT_H
#define SAMEPAGE_PLOT_H

#include <stddef.h>
#include <stdio.h>

enum plot_unit {
	PLOT_PLAIN,    /* numbers: 0, 2.5, 5 ... */
	PLOT_BYTES,    /* binary units: 0, 512 MiB, 1 GiB ... */
};

struct plot_series {
	const char *label;      /* in the legend */
	const char *color;      /* an SVG color */
	const double *x, *y;    /* n points; a NAN y leaves a gap */
	size_t n;
};

#define PLOT_MAX_SERIES 4

struct plot_panel {
	const char *title;
	const char *y_label;    /* the axis title */
	enum plot_unit unit;
	struct plot_series s[PLOT_MAX_SERIES];
	size_t ns;
	const char *empty;      /* said in the panel when no series has a point */
};

/* Panels stacked under one another on a shared time axis [x0, x1]
 * (seconds). Returns 0, or -EIO if writing failed. */
int plot_svg(FILE *f, const char *title, double x0, double x1, const struct plot_panel *p, size_t np);

#endif
