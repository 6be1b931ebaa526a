/* SPDX-License-Identifier: MIT */
/*
 * The store: merged contents live in memfd segments. A store page is
 * immutable once published: processes map it MAP_PRIVATE and read it
 * directly; their first write copies it (copy on write). A page lives
 * while any of our mappings names it, copied-on-write or not: zapping the
 * private copy (MADV_DONTNEED) would show the store page again.
 *
 * Hazard (DESIGN-NOTES): punching a hole in a store page zeroes it under
 * every process that still maps it. A page is therefore punched only when
 * none of our pages maps it AND no fork() happened since it was first
 * mapped (a child may map it otherwise). Segments are sealed against
 * shrinking so nobody can truncate memory out from under a mapping.
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int _sp_store_init(struct sp_store *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "samepage-store");
	for (int i = 0; i < SP_MAX_NODES; i++)
		s->cur[i] = -1;
	return 0;
}

void _sp_store_fini(struct sp_store *s)
{
	for (uint32_t i = 0; i < s->nseg; i++) {
		if (s->seg[i].view)
			_sp_meta_free(s->seg[i].view, (size_t)SP_SEG_PAGES * SP_PAGE);
		if (s->seg[i].fd >= 0)
			_sp_prim_close(s->seg[i].fd);
		if (s->seg[i].rofd >= 0)
			_sp_prim_close(s->seg[i].rofd);
	}
	_sp_meta_free(s->seg, s->capseg * sizeof(*s->seg));
	_sp_meta_free(s->pg, (size_t)s->npg_cap * sizeof(*s->pg));
	_sp_meta_free(s->link, (size_t)s->nlink_cap * sizeof(*s->link));
	_sp_meta_free(s->free, s->capfree * sizeof(*s->free));
	memset(s, 0, sizeof(*s));
}

/* With merge_across_nodes=0 on a NUMA machine, a node's contents live in
 * that node's memory, as the kernel keeps a stable tree per node. */
static void bind_to_node(void *view, size_t bytes, int node)
{
	unsigned long mask[SP_MAX_NODES / (8 * sizeof(unsigned long))] = { 0 };
	mask[node / (8 * sizeof(unsigned long))] |= 1ul << (node % (8 * sizeof(unsigned long)));
	_sp_prim_mbind(view, bytes, 2 /* MPOL_BIND */, mask, SP_MAX_NODES + 1);
}

static int grow_arrays(struct sp_store *s, uint32_t segs);

static int new_segment(struct sp_store *s, int node)
{
	if (grow_arrays(s, s->nseg + 1))
		return -ENOMEM;
	int fd = _sp_prim_memfd_create(s->name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
	if (fd == -EINVAL)  /* kernels before 6.3 lack MFD_NOEXEC_SEAL */
		fd = _sp_prim_memfd_create(s->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return fd;
	size_t bytes = (size_t)SP_SEG_PAGES * SP_PAGE;
	int r = _sp_prim_ftruncate(fd, (off_t)bytes);
	if (!r)
		r = _sp_prim_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	void *view = NULL;
	if (!r) {
		view = _sp_meta_map_file(fd, bytes, PROT_READ | PROT_WRITE);
		if (!view)
			r = -ENOMEM;
	}
	/* Clients of the daemon get a read-only reopening of the file
	 * (_sp_store_ro_fd): they can map it privately, never change it. */
	if (r) {
		_sp_prim_close(fd);
		return r;
	}
	if (s->real_numa)
		bind_to_node(view, bytes, node);
	struct sp_segment *g = &s->seg[s->nseg];
	g->rofd = -1;
	g->fd = fd;
	g->node = node;
	g->view = view;
	g->used = 0;
	g->live = 0;
	/* s->pg of its ids is still zero: meta memory comes zeroed, segments
	 * are never taken away, and leaving it untouched keeps it unpaid for. */
	s->nseg++;
	return 0;
}

int64_t _sp_store_add(struct sp_store *s, const void *src, uint64_t hash, uint8_t node)
{
	uint32_t id = SP_NONE, slot = 0;
	if (node >= SP_MAX_NODES)
		node = 0;
	/* A punched page of the same node's segments, if one is at hand. */
	for (uint32_t k = s->nfree, n = 0; k-- > 0 && n < 64; n++)
		if (s->seg[s->free[k] / SP_SEG_PAGES].node == node) {
			id = s->free[k];
			slot = k;
			break;
		}
	bool punched = id != SP_NONE;
	if (id == SP_NONE) {
		int c = s->cur[node];
		if (c < 0 || s->seg[c].used == SP_SEG_PAGES) {
			int r = new_segment(s, node);
			if (r)
				return r;
			c = s->cur[node] = (int)s->nseg - 1;
		}
		id = (uint32_t)c * SP_SEG_PAGES + s->seg[c].used;
	}
	struct sp_segment *g = &s->seg[id / SP_SEG_PAGES];
	/* Written into the file, not through our view: the page is not
	 * cleared first and no fault maps it here (samepaged never reads
	 * it back), and a lack of memory is an error, not a SIGBUS. */
	off_t off = (off_t)(id % SP_SEG_PAGES) * (off_t)SP_PAGE;
	ssize_t w = _sp_prim_pwrite(g->fd, src, SP_PAGE, off);
	if (w != (ssize_t)SP_PAGE)
		return w < 0 && w != -ENOSPC ? w : -ENOMEM;
	if (punched)
		s->free[slot] = s->free[--s->nfree];
	else
		g->used++;
	struct sp_spage *p = &s->pg[id];
	memset(p, 0, sizeof(*p));
	p->hash = hash;
	p->live = 1;
	s->link[id] = (struct sp_slink){ .next_dup = SP_NONE, .prev_dup = SP_NONE, .fork_gen = s->fork_gen,
					 .node = node };
	g->live++;
	return id;
}

static int grow_arrays(struct sp_store *s, uint32_t segs)
{
	if (segs <= s->capseg)
		return 0;
	uint32_t cap = s->capseg ? s->capseg : 8;
	while (cap < segs)
		cap *= 2;
	/* Each array keeps its own size, so that one growing without the other
	 * is not a leak; capseg, which bounds the ids, grows only with both. */
	uint32_t ids = cap * SP_SEG_PAGES;
	struct sp_spage *p = _sp_meta_grow(s->pg, &s->npg_cap, sizeof(*p), ids);
	if (!p)
		return -ENOMEM;
	s->pg = p;
	struct sp_slink *l = _sp_meta_grow(s->link, &s->nlink_cap, sizeof(*l), ids);
	if (!l)
		return -ENOMEM;
	s->link = l;
	struct sp_segment *g = _sp_meta_realloc(s->seg, s->capseg * sizeof(*g), cap * sizeof(*g));
	if (!g)
		return -ENOMEM;
	for (uint32_t i = s->capseg; i < cap; i++)
		g[i].fd = g[i].rofd = -1;
	s->seg = g;
	s->capseg = cap;
	return 0;
}

int _sp_store_attach(struct sp_store *s, uint32_t seg, int fd)
{
	if (seg >= 1u << 16)
		return -EINVAL;
	int r = grow_arrays(s, seg + 1);
	if (r)
		return r;
	struct sp_segment *g = &s->seg[seg];
	if (g->view) {
		_sp_prim_close(fd);  /* already have it */
		return 0;
	}
	void *view = _sp_meta_map_file(fd, (size_t)SP_SEG_PAGES * SP_PAGE, PROT_READ);
	if (!view) {
		_sp_prim_close(fd);
		return -ENOMEM;
	}
	g->fd = fd;
	g->view = view;
	g->used = SP_SEG_PAGES;
	g->attached = true;
	if (seg >= s->nseg)
		s->nseg = seg + 1;
	return 0;
}

int _sp_store_ro_fd(struct sp_store *s, uint32_t seg)
{
	struct sp_segment *g = &s->seg[seg];
	if (g->rofd < 0)
		g->rofd = _sp_prim_reopen_rdonly(g->fd);
	return g->rofd;
}

bool _sp_store_has(const struct sp_store *s, uint32_t id)
{
	uint32_t seg = id / SP_SEG_PAGES;
	return seg < s->nseg && s->seg[seg].view != NULL;
}

const void *_sp_store_data(const struct sp_store *s, uint32_t id)
{
	return s->seg[id / SP_SEG_PAGES].view + (size_t)(id % SP_SEG_PAGES) * SP_PAGE;
}

void _sp_store_where(const struct sp_store *s, uint32_t id, int *fd, off_t *off)
{
	*fd = s->seg[id / SP_SEG_PAGES].fd;
	*off = (off_t)(id % SP_SEG_PAGES) * (off_t)SP_PAGE;
}

void _sp_store_put(struct sp_store *s, uint32_t id)
{
	struct sp_spage *p = &s->pg[id];
	if (p->refs > 0)
		p->refs--;
	if (p->refs > 0 || !p->live)
		return;
	p->live = 0;
	struct sp_segment *g = &s->seg[id / SP_SEG_PAGES];
	g->live--;
	/* Only if no other process can have inherited a mapping of it. */
	if (s->no_punch || s->link[id].fork_gen != s->fork_gen)
		return;
	off_t off = (off_t)(id % SP_SEG_PAGES) * (off_t)SP_PAGE;
	if (_sp_prim_fallocate(g->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, SP_PAGE) != 0)
		return;
	if (s->nfree == s->capfree) {
		uint32_t cap = s->capfree ? s->capfree * 2 : 1024;
		uint32_t *f = _sp_meta_realloc(s->free, s->capfree * sizeof(*f), cap * sizeof(*f));
		if (!f)
			return;  /* the page stays punched and unused: only a leak of an id */
		s->free = f;
		s->capfree = cap;
	}
	s->free[s->nfree++] = id;
}

int64_t _sp_store_overhead(const struct sp_store *s)
{
	/* Bookkeeping actually touched (meta memory is reserved, not committed). */
	int64_t bytes = (int64_t)s->nfree * 4 + (int64_t)s->nseg * (int64_t)sizeof(struct sp_segment);
	for (uint32_t i = 0; i < s->nseg; i++) {
		if (s->seg[i].attached) {
			/* A daemon's segment: pages this client learnt of, no link */
			bytes += (int64_t)s->seg[i].live * (int64_t)sizeof(struct sp_spage);
			continue;
		}
		bytes += (int64_t)s->seg[i].used * (int64_t)(sizeof(struct sp_spage) + sizeof(struct sp_slink));
		/* Dead pages that could not be punched still hold memory. */
		uint32_t dead = s->seg[i].used - s->seg[i].live;
		bytes += (int64_t)dead * (int64_t)SP_PAGE;
	}
	bytes -= (int64_t)s->nfree * (int64_t)SP_PAGE;  /* punched ones cost nothing */
	return bytes;
}
