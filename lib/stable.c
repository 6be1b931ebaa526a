/* SPDX-License-Identifier: MIT */
/*
 * The stable index: content hash -> the store pages holding that content.
 * When a store page reaches max_page_sharing sharers, the next pair of
 * equal pages starts a duplicate; the duplicates of one content form a
 * chain (the kernel's stable_node_chains / stable_node_dups). Chains are
 * doubly linked so that a store page that dies leaves its chain, and the
 * index never names a dead page.
 */
#include "engine.h"

#include <errno.h>
#include <string.h>

#define CHAIN_WALK_MAX 4096  /* a bound, never expected to be reached */
#define EMPTY 0u
#define TOMB 1u

/* ------------------------------------------------------- the id table */

static int table_alloc(struct sp_stable *st, size_t want)
{
	size_t c = 64;
	while (c < want)
		c <<= 1;
	uint32_t *slot = _sp_meta_alloc(c * sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	st->slot = slot;
	st->cap = c;
	st->count = st->tombs = 0;
	return 0;
}

int _sp_stable_init(struct sp_stable *st, struct sp_store *store)
{
	memset(st, 0, sizeof(*st));
	st->store = store;
	return table_alloc(st, 1024);
}

void _sp_stable_fini(struct sp_stable *st)
{
	_sp_meta_free(st->slot, st->cap * sizeof(*st->slot));
	st->slot = NULL;
	st->cap = st->count = st->tombs = 0;
}

size_t _sp_stable_bytes(const struct sp_stable *st)
{
	return st->cap * sizeof(*st->slot);
}

static uint64_t key_of(const struct sp_stable *st, uint32_t v)
{
	return st->store->pg[v - 2].hash;
}

/* The slot naming a store page whose hash is key, or the EMPTY slot where
 * the probe ended (*tomb: the first deleted slot on the way, if any). */
static size_t probe(const struct sp_stable *st, uint64_t key, size_t *tomb)
{
	*tomb = SIZE_MAX;
	for (size_t i = _sp_table_home(key, st->cap);; i = (i + 1) & (st->cap - 1)) {
		uint32_t v = st->slot[i];
		if (v == EMPTY || (v != TOMB && key_of(st, v) == key))
			return i;
		if (v == TOMB && *tomb == SIZE_MAX)
			*tomb = i;
	}
}

static int rebuild(struct sp_stable *st)
{
	struct sp_stable old = *st;
	if (table_alloc(st, _sp_table_resize(old.cap, old.count))) {
		*st = old;
		return -ENOMEM;
	}
	for (size_t i = 0; i < old.cap; i++) {
		uint32_t v = old.slot[i];
		if (v <= TOMB)
			continue;
		size_t j = _sp_table_home(key_of(&old, v), st->cap);
		while (st->slot[j] != EMPTY)
			j = (j + 1) & (st->cap - 1);
		st->slot[j] = v;
		st->count++;
	}
	_sp_meta_free(old.slot, old.cap * sizeof(*old.slot));
	return 0;
}

static uint32_t table_get(const struct sp_stable *st, uint64_t key)
{
	size_t tomb, i = probe(st, key, &tomb);
	return st->slot[i] == EMPTY ? SP_NONE : st->slot[i] - 2;
}

/* key is store->pg[id].hash: the content's head is now id. */
static void table_put(struct sp_stable *st, uint64_t key, uint32_t id)
{
	if (_sp_table_full(st->cap, st->count, st->tombs) && rebuild(st))
		return;  /* out of memory: the content is not found, only not merged */
	size_t tomb, i = probe(st, key, &tomb);
	if (st->slot[i] == EMPTY) {
		if (tomb != SIZE_MAX) {
			i = tomb;
			st->tombs--;
		}
		st->count++;
	}
	st->slot[i] = id + 2;
}

static void table_del(struct sp_stable *st, uint64_t key, uint32_t id)
{
	size_t tomb, i = probe(st, key, &tomb);
	if (st->slot[i] != id + 2)
		return;
	st->slot[i] = TOMB;
	st->count--;
	st->tombs++;
	if (_sp_table_sparse(st->cap, st->count))
		rebuild(st);  /* on failure it stays as it is */
}

/* ------------------------------------------------------- chains */

uint32_t _sp_stable_find(struct sp_stable *st, uint64_t hash, int64_t max_sharing)
{
	uint32_t id = table_get(st, hash);
	for (int n = 0; id != SP_NONE && n < CHAIN_WALK_MAX; n++) {
		struct sp_spage *s = &st->store->pg[id];
		if (s->live && s->hash == hash && s->sharers < (uint64_t)max_sharing)
			return id;
		id = st->store->link[id].next_dup;
	}
	return SP_NONE;
}

void _sp_zero_fold(const int64_t *knob, int64_t *shared, int64_t *sharing, int64_t *zero)
{
	if (knob[SP_USE_ZERO_PAGES] || *zero == 0)
		return;
	int64_t mps = knob[SP_MAX_PAGE_SHARING] > 1 ? knob[SP_MAX_PAGE_SHARING] : 2;
	int64_t heads = (*zero + mps - 1) / mps;
	*shared += heads;
	*sharing += *zero - heads;
	*zero = 0;
}

static size_t chain_len(struct sp_stable *st, uint32_t head)
{
	size_t n = 0;
	for (uint32_t id = head; id != SP_NONE && n < CHAIN_WALK_MAX; id = st->store->link[id].next_dup)
		n++;
	return n;
}

void _sp_stable_insert(struct sp_stable *st, uint64_t hash, uint32_t id)
{
	struct sp_slink *pg = st->store->link;
	struct sp_slink *s = &pg[id];
	s->next_dup = s->prev_dup = SP_NONE;
	uint32_t head = table_get(st, hash);
	if (head == SP_NONE) {
		table_put(st, hash, id);
		return;
	}
	/* A second store page for a content: it joins the chain after the head. */
	struct sp_slink *h = &pg[head];
	if (h->next_dup == SP_NONE) {
		st->chains++;
		st->dups += 2;
	} else {
		st->dups++;
		pg[h->next_dup].prev_dup = id;
	}
	s->next_dup = h->next_dup;
	s->prev_dup = head;
	h->next_dup = id;
}

/* Take a dead store page out of the index and its chain. */
static void unlink_dead(struct sp_stable *st, uint32_t id)
{
	struct sp_slink *pg = st->store->link;
	struct sp_slink *s = &pg[id];
	uint32_t prev = s->prev_dup, next = s->next_dup;
	if (prev != SP_NONE || next != SP_NONE) {
		uint32_t head = id;
		while (pg[head].prev_dup != SP_NONE)
			head = pg[head].prev_dup;
		if (chain_len(st, head) == 2) {
			st->chains--;
			st->dups -= 2;
		} else {
			st->dups--;
		}
	}
	if (prev != SP_NONE) {
		pg[prev].next_dup = next;
	} else {
		/* it was the head: the next dup heads the chain, or the content is gone */
		table_del(st, st->store->pg[id].hash, id);
		if (next != SP_NONE)
			table_put(st, st->store->pg[next].hash, next);
	}
	if (next != SP_NONE)
		pg[next].prev_dup = prev;
	s->next_dup = s->prev_dup = SP_NONE;
}

bool _sp_stable_put(struct sp_stable *st, uint32_t id)
{
	struct sp_spage *s = &st->store->pg[id];
	bool was_live = s->live;
	_sp_store_put(st->store, id);
	if (was_live && !s->live) {
		unlink_dead(st, id);
		return true;
	}
	return false;
}
