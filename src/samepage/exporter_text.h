/* SPDX-License-Identifier: MIT */
/* The Prometheus text exposition format (version 0.0.4), written into a
 * growing buffer: one family at a time, HELP and TYPE first. */
#ifndef SAMEPAGE_EXPORTER_TEXT_H
#define SAMEPAGE_EXPORTER_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct prom {
	char *buf;
	size_t len, cap;
	bool oom;            /* an allocation failed: the page is incomplete */
	char family[160];    /* name of the family being written */
};

enum prom_type { PROM_GAUGE, PROM_COUNTER };

/* Start a family: "# HELP name help" and "# TYPE name type". */
void prom_family(struct prom *p, const char *name, enum prom_type type, const char *help);

/* A sample of the current family. labels: NULL, or name/value pairs ending
 * with NULL ({ "pid", "42", "comm", "x", NULL }); values are escaped. */
void prom_int(struct prom *p, const char *const *labels, int64_t v);
void prom_double(struct prom *p, const char *const *labels, double v);
/* v thousandths, written exactly: 20 -> 0.020 (milliseconds as seconds). */
void prom_milli(struct prom *p, const char *const *labels, int64_t v);

/* The buffer, NUL-terminated, handed to the caller (free() it); NULL if
 * memory ran out. The writer is empty afterwards. */
char *prom_take(struct prom *p, size_t *len);
void prom_free(struct prom *p);

#endif
