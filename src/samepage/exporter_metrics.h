/* SPDX-License-Identifier: MIT */
/* samepage exporter: what one scrape of /metrics holds. */
#ifndef SAMEPAGE_EXPORTER_METRICS_H
#define SAMEPAGE_EXPORTER_METRICS_H

#include "cli.h"

#include <stddef.h>

struct exporter {
	sp_ksm *ksm;            /* the kernel's KSM, NULL unless exported */
	bool user;              /* the user-space engine, through samepaged */
	size_t max_processes;   /* processes named in labels; the rest are "other" */
};

/* The whole page in the text format, malloc'ed (NULL when memory ran out). */
char *exporter_page(const struct exporter *x, size_t *len);

#endif
