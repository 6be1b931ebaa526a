/* SPDX-License-Identifier: MIT */
/*
 * The streaming count of `samepage estimate`: open addressing (linear
 * probing) on 64-bit content hashes. A slot holds the hash, this sample's
 * count, the previous sample's count and the last process that had the
 * content: 20 bytes, whatever the size of memory read. Hash 0 marks an
 * empty slot, so a content hashing to 0 is counted as hash 1.
 */
#include "estimate_scan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Five 32-bit words, not a uint64_t: 20 bytes a slot instead of 24. */
struct slot {
	uint32_t lo, hi;     /* the hash; both 0: empty */
	uint32_t count;      /* copies in this sample */
	uint32_t prev;       /* copies in the previous sample */
	uint32_t last;       /* the last process that had it (this sample) */
};

struct est_table {
	struct slot *slots;
	size_t mask;         /* capacity - 1, capacity a power of two */
	size_t used;         /* slots holding a hash */
	size_t limit;        /* grow beyond this many */
	uint64_t distinct;   /* slots with count > 0 */
};

#define INITIAL_SLOTS 4096u

/* Fresh zero pages from mmap; huge pages where the system allows them
 * (THP "madvise"), since every page counted touches a random slot: fewer
 * page faults while the table fills, fewer TLB misses after. */
static int alloc_slots(struct est_table *t, size_t cap)
{
	size_t len = cap * sizeof(struct slot);
	void *s = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return -ENOMEM;
	if (len >= (2u << 20))
		madvise(s, len, MADV_HUGEPAGE);
	t->slots = s;
	t->mask = cap - 1;
	t->limit = cap / 10 * 7;
	return 0;
}

static void free_slots(struct slot *s, size_t cap)
{
	munmap(s, cap * sizeof(*s));
}

int est_table_new(struct est_table **out)
{
	struct est_table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	if (alloc_slots(t, INITIAL_SLOTS)) {
		free(t);
		return -ENOMEM;
	}
	*out = t;
	return 0;
}

void est_table_free(struct est_table *t)
{
	if (!t)
		return;
	free_slots(t->slots, t->mask + 1);
	free(t);
}

static inline size_t home(const struct est_table *t, uint32_t lo, uint32_t hi)
{
	/* the hash is uniform: its low bits are as good as any */
	(void)hi;
	return lo & t->mask;
}

static int grow(struct est_table *t)
{
	struct slot *old = t->slots;
	size_t old_cap = t->mask + 1;
	if (alloc_slots(t, old_cap * 2)) {
		t->slots = old;
		return -ENOMEM;
	}
	for (size_t i = 0; i < old_cap; i++) {
		const struct slot *o = &old[i];
		if (!o->lo && !o->hi)
			continue;
		size_t j = home(t, o->lo, o->hi);
		while (t->slots[j].lo || t->slots[j].hi)
			j = (j + 1) & t->mask;
		t->slots[j] = *o;
	}
	free_slots(old, old_cap);
	return 0;
}

void est_table_next_sample(struct est_table *t)
{
	for (size_t i = 0; i <= t->mask; i++) {
		t->slots[i].prev = t->slots[i].count;
		t->slots[i].count = 0;
	}
	t->distinct = 0;
}

uint64_t est_table_distinct(const struct est_table *t)
{
	return t->distinct;
}

size_t est_table_bytes(const struct est_table *t)
{
	return sizeof(*t) + (t->mask + 1) * sizeof(struct slot);
}

/* One more copy of a content: the first copy in a sample is the one that
 * stays, every further one is saved. A saved copy is "within" when the
 * previous copy came from the same process (processes are read one after
 * the other, so their copies are consecutive), and "stable" while no more
 * copies have been seen in this sample than the previous sample had. */
static inline void count_one(struct est_table *t, struct slot *s, uint32_t proc, struct est_counts *c)
{
	if (s->count == 0) {
		t->distinct++;
	} else {
		if (s->last == proc)
			c->saved_within++;
		else
			c->saved_between++;
		if (s->count < s->prev)
			c->stable_saved++;
	}
	s->count++;
	s->last = proc;
}

void est_table_prefetch(const struct est_table *t, uint64_t h)
{
	__builtin_prefetch(&t->slots[(uint32_t)h & t->mask], 1);
}

int est_table_add(struct est_table *t, const uint64_t *hashes, size_t n, uint32_t proc,
		  struct est_counts *c)
{
	for (size_t i = 0; i < n; i++) {
		if (t->used >= t->limit && grow(t))
			return -ENOMEM;
		uint64_t h = hashes[i] ? hashes[i] : 1;
		uint32_t lo = (uint32_t)h, hi = (uint32_t)(h >> 32);
		size_t j = home(t, lo, hi);
		struct slot *s;
		for (;;) {
			s = &t->slots[j];
			if (s->lo == lo && s->hi == hi)
				break;
			if (!s->lo && !s->hi)
				break;
			j = (j + 1) & t->mask;
		}
		if (!s->lo && !s->hi) {
			s->lo = lo;
			s->hi = hi;
			s->count = s->prev = 0;
			t->used++;
		}
		count_one(t, s, proc, c);
	}
	return 0;
}
