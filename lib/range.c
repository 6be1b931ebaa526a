/* SPDX-License-Identifier: MIT */
/*
 * Registered ranges and their per-page state: 16 bytes per page, against
 * the kernel's 64-byte rmap_item per scanned page.
 */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void _sp_page_set_state(sp_engine *e, struct sp_page *pg, uint8_t state)
{
	e->state_count[pg->state]--;
	e->state_count[state]++;
	pg->state = state;
	if (state == SP_PG_MERGED || state == SP_PG_HOLE || state == SP_PG_NEW || state == SP_PG_ZERO) {
		pg->held = 0;  /* merged, or gone: a later hold-back is a new one */
		pg->hot = 0;
		pg->rewritten = 0;
	}
}

/* One allocation holds a range's page states and its blocks' rest bytes. */
static size_t pages_bytes(size_t npages)
{
	return npages * sizeof(struct sp_page) + SP_REST_BLOCKS(npages) * sizeof(uint16_t);
}

int _sp_range_add(sp_engine *e, uintptr_t start, size_t npages, int prot, bool any)
{
	uint32_t id = 0;
	while (id < e->nranges && e->ranges[id])
		id++;
	if (id == e->nranges) {
		if (e->nranges == e->capranges) {
			uint32_t cap = e->capranges ? e->capranges * 2 : 64;
			struct sp_range **g = _sp_meta_realloc(e->ranges, e->capranges * sizeof(*g), cap * sizeof(*g));
			if (!g)
				return -ENOMEM;
			e->ranges = g;
			e->capranges = cap;
		}
		e->ranges[e->nranges++] = NULL;
	}
	struct sp_range *r = _sp_meta_alloc(sizeof(*r));
	struct sp_page *pg = _sp_meta_alloc(pages_bytes(npages));
	if (!r || !pg) {
		_sp_meta_free(r, sizeof(*r));
		_sp_meta_free(pg, pages_bytes(npages));
		return -ENOMEM;
	}
	r->start = start;
	r->npages = npages;
	r->cap_pages = npages;
	r->pg = pg;
	r->rest = (uint16_t *)(pg + npages);
	r->prot = prot;
	r->any = any;
	e->ranges[id] = r;
	e->state_count[SP_PG_NEW] += npages;
	return (int)id;
}

struct sp_range *_sp_range_at(sp_engine *e, uintptr_t addr, uint32_t *id)
{
	for (uint32_t i = 0; i < e->nranges; i++) {
		struct sp_range *r = e->ranges[i];
		if (r && addr >= r->start && addr < r->start + r->npages * SP_PAGE) {
			if (id)
				*id = i;
			return r;
		}
	}
	return NULL;
}

bool _sp_range_overlaps(sp_engine *e, uintptr_t start, uintptr_t end)
{
	for (uint32_t i = 0; i < e->nranges; i++) {
		struct sp_range *r = e->ranges[i];
		if (r && start < r->start + r->npages * SP_PAGE && end > r->start)
			return true;
	}
	return false;
}

void _sp_spage_put(sp_engine *e, uint32_t id)
{
	if (e->remote) {
		struct sp_spage *s = &e->store.pg[id];
		if (s->refs)
			s->refs--;
		_sp_remote_ref(e, id, -1, 0);
		return;
	}
	_sp_stable_put(&e->stable, id);
}

/* pages_shared counts store pages with a sharer; pages_sharing the sharers
 * beyond the first: the pages saved. */
void _sp_share_add(sp_engine *e, uint32_t id)
{
	struct sp_spage *s = &e->store.pg[id];
	s->refs++;
	if (s->sharers++ == 0)
		e->pages_shared++;
	else
		e->pages_sharing++;
	if (e->remote)
		_sp_remote_ref(e, id, 1, 1);
}

void _sp_share_drop(sp_engine *e, uint32_t id)
{
	struct sp_spage *s = &e->store.pg[id];
	if (s->sharers == 0)
		return;
	if (--s->sharers == 0)
		e->pages_shared--;
	else
		e->pages_sharing--;
	if (e->remote)
		_sp_remote_ref(e, id, 0, -1);
}

void _sp_page_forget(sp_engine *e, uint32_t rid, size_t i)
{
	struct sp_page *pg = &e->ranges[rid]->pg[i];
	switch (pg->state) {
	case SP_PG_UNSHARED:
		if (e->remote)
			_sp_remote_forget(e, _sp_key(e, pg), e->ranges[rid]->start + i * SP_PAGE);
		else
			_sp_index_del(&e->unstable, _sp_key(e, pg), SP_LOC(rid, i));
		break;
	case SP_PG_MERGED:
		_sp_share_drop(e, pg->ref);
		/* fall through */
	case SP_PG_COWED:
		_sp_spage_put(e, pg->ref);
		break;
	default:
		break;
	}
	pg->ref = SP_NONE;
	_sp_page_set_state(e, pg, SP_PG_NEW);
	e->ranges[rid]->rest[i / SP_REST_PAGES] = 0;  /* visit it again soon */
}

/* Move pages [from, npages) of range rid into a new range. */
static int split_tail(sp_engine *e, uint32_t rid, size_t from)
{
	struct sp_range *r = e->ranges[rid];
	size_t n = r->npages - from;
	int nid = _sp_range_add(e, r->start + from * SP_PAGE, n, r->prot, r->any);
	if (nid < 0)
		return nid;
	r = e->ranges[rid];  /* the slot array may have moved */
	struct sp_range *t = e->ranges[nid];
	e->state_count[SP_PG_NEW] -= n;  /* the copied states are already counted */
	memcpy(t->pg, r->pg + from, n * sizeof(struct sp_page));
	for (size_t i = 0; i < n; i++)
		if (t->pg[i].state == SP_PG_UNSHARED) {
			_sp_index_del(&e->unstable, _sp_key(e, &t->pg[i]), SP_LOC(rid, from + i));
			_sp_index_put(&e->unstable, _sp_key(e, &t->pg[i]), SP_LOC((uint32_t)nid, i));
		}
	r->npages = from;
	return 0;
}

static void free_range(sp_engine *e, uint32_t rid)
{
	struct sp_range *r = e->ranges[rid];
	for (size_t i = 0; i < r->npages; i++)
		e->state_count[r->pg[i].state]--;
	_sp_meta_free(r->pg, pages_bytes(r->cap_pages));
	_sp_meta_free(r, sizeof(*r));
	e->ranges[rid] = NULL;
	if (e->cur_range == rid)
		e->cur_page = SIZE_MAX;  /* the scanner moves on */
}

int _sp_range_cut(sp_engine *e, uintptr_t start, uintptr_t end)
{
	for (uint32_t rid = 0; rid < e->nranges; rid++) {
		struct sp_range *r = e->ranges[rid];
		if (!r)
			continue;
		uintptr_t rs = r->start, re = r->start + r->npages * SP_PAGE;
		if (end <= rs || start >= re)
			continue;
		size_t a = start > rs ? (start - rs) / SP_PAGE : 0;
		size_t b = end < re ? (end - rs) / SP_PAGE : r->npages;
		for (size_t i = a; i < b; i++)
			_sp_page_forget(e, rid, i);
		if (b < r->npages) {
			int x = split_tail(e, rid, b);
			if (x)
				return x;
			r = e->ranges[rid];
		}
		if (a == 0) {
			free_range(e, rid);
		} else {
			for (size_t i = a; i < r->npages; i++)
				e->state_count[r->pg[i].state]--;
			r->npages = a;
		}
	}
	return 0;
}

/* The program changed the protection of [start,end): ranges are split at
 * the edges so that each keeps one protection, used when mapping store
 * pages into it. */
int _sp_range_set_prot(sp_engine *e, uintptr_t start, uintptr_t end, int prot)
{
again:
	for (uint32_t rid = 0; rid < e->nranges; rid++) {
		struct sp_range *r = e->ranges[rid];
		if (!r)
			continue;
		uintptr_t rs = r->start, re = r->start + r->npages * SP_PAGE;
		if (end <= rs || start >= re)
			continue;
		if (start > rs) {
			int x = split_tail(e, rid, (start - rs) / SP_PAGE);
			if (x)
				return x;
			goto again;  /* the tail is a new range, maybe in an earlier slot */
		}
		if (end < re) {
			int x = split_tail(e, rid, (end - rs) / SP_PAGE);
			if (x)
				return x;
			r = e->ranges[rid];
		}
		r->prot = prot;
	}
	return 0;
}

size_t _sp_ranges_bytes(const sp_engine *e)
{
	size_t b = e->capranges * sizeof(void *);
	for (uint32_t i = 0; i < e->nranges; i++)
		if (e->ranges[i])
			b += sizeof(struct sp_range) + pages_bytes(e->ranges[i]->npages);
	return b;
}
