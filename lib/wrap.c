/* SPDX-License-Identifier: MIT */
/*
 * libc semantics on merged memory. A merged page is a private mapping of a
 * store file, so the raw calls would misbehave: MADV_DONTNEED would show the
 * store page again instead of zeros, MADV_FREE fails with EINVAL, and an
 * munmap or mremap would leave the engine believing in pages that moved.
 * These wrappers keep both the application's view and the engine's right.
 */
#include "engine.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MADV_MERGEABLE
#define MADV_MERGEABLE 12
#define MADV_UNMERGEABLE 13
#endif

static int check_range(void *addr, size_t len, uintptr_t *start, uintptr_t *end)
{
	uintptr_t a = (uintptr_t)addr;
	if (a & (SP_PAGE - 1))
		return -EINVAL;
	size_t l = (len + SP_PAGE - 1) & ~(SP_PAGE - 1);
	if (l < len || a + l < a)
		return -EINVAL;
	*start = a;
	*end = a + l;
	return 0;
}

/* Discard [start,end) with zero-fill semantics on every registered page. */
static int discard(sp_engine *e, uintptr_t start, uintptr_t end, int advice)
{
	for (uint32_t id = 0; id < e->nranges; id++) {
		struct sp_range *r = e->ranges[id];
		if (!r)
			continue;
		uintptr_t rs = r->start, re = r->start + r->npages * SP_PAGE;
		if (end <= rs || start >= re)
			continue;
		size_t a = (start > rs ? start - rs : 0) / SP_PAGE;
		size_t b = ((end < re ? end : re) - rs) / SP_PAGE;
		for (size_t i = a; i < b;) {
			struct sp_page *pg = &r->pg[i];
			bool file = _sp_page_maps_store(pg);
			size_t k = 1;
			while (i + k < b && ((r->pg[i + k].state == SP_PG_MERGED ||
					      r->pg[i + k].state == SP_PG_COWED) == file))
				k++;
			uintptr_t s = rs + i * SP_PAGE;
			int rc;
			if (file) {
				/* A fresh anonymous mapping reads as zeros, as the advice promises. */
				void *out;
				rc = _sp_prim_mmap((void *)s, k * SP_PAGE, r->prot,
						   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &out);
				if (rc)
					return rc;
				for (size_t x = i; x < i + k; x++)
					_sp_page_forget(e, id, x);
				if (!e->inert)
					_sp_track_register(e, s, k * SP_PAGE, true);
			} else {
				rc = _sp_prim_madvise((void *)s, k * SP_PAGE, advice);
				if (rc)
					return rc;
				for (size_t x = i; x < i + k; x++)
					if (r->pg[x].state == SP_PG_UNSHARED || r->pg[x].state == SP_PG_ZERO)
						_sp_page_forget(e, id, x);
			}
			r = e->ranges[id];
			i += k;
		}
	}
	/* What is not registered gets the plain call. */
	uintptr_t a = start;
	while (a < end) {
		if (_sp_range_at(e, a, NULL)) {
			a += SP_PAGE;
			continue;
		}
		uintptr_t b = a;
		while (b < end && !_sp_range_at(e, b, NULL))
			b += SP_PAGE;
		int rc = _sp_prim_madvise((void *)a, b - a, advice);
		if (rc)
			return rc;
		a = b;
	}
	return 0;
}

int sp_madvise(sp_engine *e, void *addr, size_t len, int advice)
{
	uintptr_t start, end;
	if (!e)
		return -EINVAL;
	int r = check_range(addr, len, &start, &end);
	if (r)
		return r;
	if (start == end)
		return 0;
	if (e->inert && (advice == MADV_MERGEABLE))
		return -ECHILD;
	_sp_lock(e);
	char why[200] = "";
	switch (advice) {
	case MADV_MERGEABLE:
		r = _sp_engine_register(e, start, end, false, why, sizeof(why));
		break;
	case MADV_UNMERGEABLE:
		r = _sp_engine_unregister(e, start, end);
		break;
	case MADV_DONTNEED:
	case MADV_FREE:
		r = _sp_range_overlaps(e, start, end) ? discard(e, start, end, advice)
						       : _sp_prim_madvise(addr, end - start, advice);
		break;
	default:
		r = _sp_prim_madvise(addr, end - start, advice);
		break;
	}
	if (e->remote)
		_sp_remote_flush(e);
	_sp_unlock(e);
	_sp_set_last_error(r ? why : "");
	return r;
}

int sp_mprotect(sp_engine *e, void *addr, size_t len, int prot)
{
	uintptr_t start, end;
	if (!e)
		return -EINVAL;
	int r = check_range(addr, len, &start, &end);
	if (r)
		return r;
	_sp_lock(e);
	r = _sp_prim_mprotect(addr, end - start, prot);
	/* Later merges map store pages with the protection the program chose. */
	if (!r && _sp_range_overlaps(e, start, end))
		r = _sp_range_set_prot(e, start, end, prot);
	_sp_unlock(e);
	return r;
}

int sp_munmap(sp_engine *e, void *addr, size_t len)
{
	uintptr_t start, end;
	if (!e)
		return -EINVAL;
	int r = check_range(addr, len, &start, &end);
	if (r || start == end)
		return r ? r : -EINVAL;
	_sp_lock(e);
	/* Unmap first: only then are the store references really gone. */
	r = _sp_prim_munmap(addr, end - start);
	if (!r)
		r = _sp_range_cut(e, start, end);
	if (e->remote)
		_sp_remote_flush(e);
	_sp_unlock(e);
	return r;
}

int sp_mmap(sp_engine *e, void *addr, size_t len, int prot, int flags, int fd, off_t off, void **out)
{
	if (!e || !out)
		return -EINVAL;
	_sp_lock(e);
	int r = _sp_prim_mmap(addr, len, prot, flags, fd, off, out);
	if (!r && (flags & MAP_FIXED)) {
		uintptr_t s = (uintptr_t)*out, t = s + ((len + SP_PAGE - 1) & ~(SP_PAGE - 1));
		if (_sp_range_overlaps(e, s, t))
			r = _sp_range_cut(e, s, t);  /* the old pages are gone */
	}
	_sp_unlock(e);
	return r;
}

int sp_mremap(sp_engine *e, void *old_addr, size_t old_len, size_t new_len, int flags, void *new_addr,
	      void **out)
{
	uintptr_t start, end;
	if (!e || !out)
		return -EINVAL;
	int r = check_range(old_addr, old_len ? old_len : SP_PAGE, &start, &end);
	if (r)
		return r;
	_sp_lock(e);
	bool was_registered = _sp_range_overlaps(e, start, end);
	/* Merged pages go back to private memory first: the moved mapping is then
	 * plain anonymous memory, as the application expects. */
	if (was_registered && old_len)
		r = _sp_engine_unregister(e, start, end);
	if (!r)
		r = _sp_prim_mremap(old_addr, old_len, new_len, flags, new_addr, out);
	if (!r && (flags & MREMAP_FIXED)) {
		/* Whatever was registered at the destination has been replaced. */
		uintptr_t s = (uintptr_t)*out, t = s + ((new_len + SP_PAGE - 1) & ~(SP_PAGE - 1));
		if (_sp_range_overlaps(e, s, t))
			r = _sp_range_cut(e, s, t);
	}
	if (!r && was_registered && old_len && !e->inert) {
		/* Keep MADV_MERGEABLE on the moved memory, as the kernel keeps VM_MERGEABLE. */
		char why[200];
		uintptr_t s = (uintptr_t)*out;
		_sp_engine_register(e, s, s + ((new_len + SP_PAGE - 1) & ~(SP_PAGE - 1)), false, why, sizeof(why));
	}
	_sp_unlock(e);
	return r;
}
