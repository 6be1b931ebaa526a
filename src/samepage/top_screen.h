/* SPDX-License-Identifier: MIT */
/* samepage top: drawing a model on the curses screen. */
#ifndef SAMEPAGE_TOP_SCREEN_H
#define SAMEPAGE_TOP_SCREEN_H

#include "top_model.h"

struct top_view {
	double interval_s;
	bool utf8;            /* block characters for the sparklines, else ASCII */
};

/* Characters of the eight sparkline levels, lowest first. */
const char *top_spark_level(bool utf8, int level);

/* Redraw the whole screen (erase, draw, refresh). */
void top_screen_draw(const struct top_model *m, const struct top_view *v);

#endif
