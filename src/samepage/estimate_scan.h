/* SPDX-License-Identifier: MIT */
/*
 * The core of `samepage estimate`: read other processes' memory without
 * changing it and count page contents in a streaming hash table, so that
 * what merging would save is known without keeping a copy of memory.
 * Also linked into bench/estimate_bench.c. Uses libc and libxxhash only.
 */
#ifndef SAMEPAGE_ESTIMATE_SCAN_H
#define SAMEPAGE_ESTIMATE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <xxhash.h>
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
/* run-time choice of the vector unit, as the engine hashes (lib/index.c) */
#include <xxh_x86dispatch.h>
#endif

/* What one process contributed to one sample, in pages. */
struct est_counts {
	uint64_t mappings;        /* mappings counted */
	uint64_t mapped_pages;    /* their size, resident or not */
	uint64_t pages;           /* resident pages read and counted */
	uint64_t zero_pages;      /* of those, all bytes zero */
	uint64_t saved_within;    /* copies of a content this process already had */
	uint64_t saved_between;   /* first copy here of a content an earlier process had */
	uint64_t stable_saved;    /* saved copies the previous sample had too */
	uint64_t unreadable_pages;/* resident, but the read failed (unmapped meanwhile) */
};

/* Content hash -> counts. 20 bytes a slot, at most 70 % full. */
struct est_table;

int est_table_new(struct est_table **out);
void est_table_free(struct est_table *t);
/* Begin the next sample: this sample's counts become the previous ones. */
void est_table_next_sample(struct est_table *t);
/* Distinct non-zero contents seen in the current sample. */
uint64_t est_table_distinct(const struct est_table *t);
/* Memory the table holds. */
size_t est_table_bytes(const struct est_table *t);
/* Start loading h's slot into the cache: a large table misses it on nearly
 * every page otherwise. Called as each page is hashed, well before
 * est_table_add(). */
void est_table_prefetch(const struct est_table *t, uint64_t h);
/* Count n non-zero page hashes of process `proc` (an index that stays the
 * same across samples; processes are counted one after the other). 0 or
 * -ENOMEM. */
int est_table_add(struct est_table *t, const uint64_t *hashes, size_t n, uint32_t proc,
		  struct est_counts *c);

/* The page hash: XXH3-64, never compared byte by byte (an estimate). */
static inline uint64_t est_hash_page(const void *p, size_t len)
{
	return XXH3_64bits(p, len);
}

struct est_options {
	bool all_private;         /* also private writable file mappings (their anonymous pages) */
	uint64_t range_start;     /* only memory in [range_start, range_end) */
	uint64_t range_end;       /* 0: no limit */
	size_t batch_bytes;       /* bytes read per system call; 0: the default (1 MiB) */
};

struct est_scanner;

int est_scanner_new(const struct est_options *o, struct est_scanner **out);
void est_scanner_free(struct est_scanner *s);
long est_scanner_page_size(const struct est_scanner *s);
size_t est_scanner_bytes(const struct est_scanner *s);

/* Read and count the memory of pid, as process `proc` of the current
 * sample; adds to *c. Returns 0; -ESRCH when it has gone, -EACCES when we
 * may not read it, -ENOMEM, or another negative errno. */
int est_scan_process(struct est_scanner *s, struct est_table *t, pid_t pid, uint32_t proc,
		     struct est_counts *c);

/* True when all len bytes are zero (len a multiple of 64). */
bool est_page_is_zero(const void *p, size_t len);

#endif
