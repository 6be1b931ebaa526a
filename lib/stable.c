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

#define CHAIN_WALK_MAX 4096  /* a bound, never expected to be reached */

uint32_t _sp_stable_find(struct sp_stable *st, uint64_t hash, int64_t max_sharing)
{
	uint64_t v;
	if (!_sp_index_get(&st->ix, hash, &v))
		return SP_NONE;
	uint32_t id = (uint32_t)v;
	for (int n = 0; id != SP_NONE && n < CHAIN_WALK_MAX; n++) {
		struct sp_spage *s = &st->store->pg[id];
		if (s->live && s->hash == hash && s->sharers < (uint64_t)max_sharing)
			return id;
		id = s->next_dup;
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
	for (uint32_t id = head; id != SP_NONE && n < CHAIN_WALK_MAX; id = st->store->pg[id].next_dup)
		n++;
	return n;
}

void _sp_stable_insert(struct sp_stable *st, uint64_t hash, uint32_t id)
{
	struct sp_spage *pg = st->store->pg;
	struct sp_spage *s = &pg[id];
	s->next_dup = s->prev_dup = SP_NONE;
	uint64_t v;
	if (!_sp_index_get(&st->ix, hash, &v)) {
		_sp_index_put(&st->ix, hash, id);
		return;
	}
	/* A second store page for a content: it joins the chain after the head. */
	uint32_t head = (uint32_t)v;
	struct sp_spage *h = &pg[head];
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
	struct sp_spage *pg = st->store->pg;
	struct sp_spage *s = &pg[id];
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
		_sp_index_del(&st->ix, s->hash, id);
		if (next != SP_NONE)
			_sp_index_put(&st->ix, pg[next].hash, next);
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
