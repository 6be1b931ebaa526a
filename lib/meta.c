/* SPDX-License-Identifier: MIT */
/*
 * The engine's own memory.
 *
 * While a page is frozen, a thread that writes to it waits until the
 * scanner thaws it; if the scanner itself wrote to a frozen page it would
 * wait for itself forever. So everything the scanner writes lives here,
 * and this memory is never registered for merging.
 *
 * It also lives apart: one address-space reservation made at first use,
 * carved into blocks. Memory from plain mmap(NULL) could land in a hole the
 * application just unmapped and means to map again with MAP_FIXED, which
 * would then wipe our data. Nothing of ours is ever placed outside the
 * reservation. Blocks are named "[anon:samepage-meta]" where the kernel
 * allows it.
 */
#include "engine.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

#define MAX_EXTENTS 4096

struct extent {
	uintptr_t start;
	size_t len;
};

static uintptr_t arena_start, arena_end;
static struct extent free_ext[MAX_EXTENTS];  /* sorted by address */
static size_t nfree;
static pthread_mutex_t meta_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t round_up(size_t n)
{
	return (n + SP_PAGE - 1) & ~(SP_PAGE - 1);
}

/* Reserve address space only: PROT_NONE and NORESERVE cost no memory. */
static int reserve(void)
{
	static const size_t sizes[] = { 64ull << 30, 8ull << 30, 1ull << 30, 256ull << 20 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p;
		if (_sp_prim_mmap(NULL, sizes[i], PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0,
				  &p) == 0) {
			arena_start = (uintptr_t)p;
			arena_end = arena_start + sizes[i];
			free_ext[0] = (struct extent){ arena_start, sizes[i] };
			nfree = 1;
			return 0;
		}
	}
	return -ENOMEM;
}

bool _sp_meta_overlaps(uintptr_t start, uintptr_t end)
{
	pthread_mutex_lock(&meta_lock);
	bool hit = arena_end && start < arena_end && end > arena_start;
	pthread_mutex_unlock(&meta_lock);
	return hit;
}

static void insert_free(uintptr_t start, size_t len)
{
	size_t i = 0;
	while (i < nfree && free_ext[i].start < start)
		i++;
	bool merge_prev = i > 0 && free_ext[i - 1].start + free_ext[i - 1].len == start;
	bool merge_next = i < nfree && start + len == free_ext[i].start;
	if (merge_prev && merge_next) {
		free_ext[i - 1].len += len + free_ext[i].len;
		memmove(&free_ext[i], &free_ext[i + 1], (nfree - i - 1) * sizeof(free_ext[0]));
		nfree--;
	} else if (merge_prev) {
		free_ext[i - 1].len += len;
	} else if (merge_next) {
		free_ext[i].start = start;
		free_ext[i].len += len;
	} else if (nfree < MAX_EXTENTS) {
		memmove(&free_ext[i + 1], &free_ext[i], (nfree - i) * sizeof(free_ext[0]));
		free_ext[i] = (struct extent){ start, len };
		nfree++;
	}
	/* else: the extent table is full; the address space stays reserved, unused */
}

/* Give a block back: its memory is dropped, the addresses stay reserved. */
static void release(uintptr_t start, size_t len)
{
	void *p;
	_sp_prim_mmap((void *)start, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1,
		      0, &p);
	insert_free(start, len);
}

/* A block of the arena, mapped anonymous (fd < 0) or from fd, shared. */
static void *take(size_t len, int fd, int prot)
{
	if (!arena_end && reserve())
		return NULL;
	for (size_t i = 0; i < nfree; i++) {
		if (free_ext[i].len < len)
			continue;
		uintptr_t at = free_ext[i].start;
		void *p;
		int flags = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED : MAP_SHARED | MAP_FIXED;
		if (_sp_prim_mmap((void *)at, len, prot, flags, fd, 0, &p))
			return NULL;
		if (fd < 0)
			prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, at, len, (unsigned long)"samepage-meta");
		free_ext[i].start += len;
		free_ext[i].len -= len;
		if (free_ext[i].len == 0) {
			memmove(&free_ext[i], &free_ext[i + 1], (nfree - i - 1) * sizeof(free_ext[0]));
			nfree--;
		}
		return p;
	}
	return NULL;
}

/* Zeroed memory of at least len bytes (rounded up to pages), or NULL. */
void *_sp_meta_alloc(size_t len)
{
	len = round_up(len ? len : 1);
	pthread_mutex_lock(&meta_lock);
	void *p = take(len, -1, PROT_READ | PROT_WRITE);
	pthread_mutex_unlock(&meta_lock);
	return p;
}

/* A shared view of a file (a store segment), placed in the arena. */
void *_sp_meta_map_file(int fd, size_t len, int prot)
{
	pthread_mutex_lock(&meta_lock);
	void *p = take(round_up(len), fd, prot);
	pthread_mutex_unlock(&meta_lock);
	return p;
}

/* Move the pages of arena block p over dst (atomically replacing what was
 * there), leaving no hole in the arena: MREMAP_DONTUNMAP keeps the source
 * mapped; it is then released. The moved memory loses the arena's name. */
int _sp_meta_move_to(void *p, size_t len, void *dst)
{
	void *out;
	len = round_up(len);
	int r = _sp_prim_mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst, &out);
	pthread_mutex_lock(&meta_lock);
	if (r == -EINVAL) {
		/* Before 5.13 (anonymous: 5.7): plain move, and close the hole at once. */
		r = _sp_prim_mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst, &out);
	}
	if (r == 0) {
		prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)dst, len, 0UL);
		release((uintptr_t)p, len);
	}
	pthread_mutex_unlock(&meta_lock);
	return r;
}

void _sp_meta_free(void *p, size_t len)
{
	if (!p)
		return;
	pthread_mutex_lock(&meta_lock);
	release((uintptr_t)p, round_up(len ? len : 1));
	pthread_mutex_unlock(&meta_lock);
}

/* Queues and message buffers keep the pages of their biggest burst for good
 * otherwise; giving them back costs one madvise per burst. */
void _sp_meta_trim(void *p, size_t used, size_t len)
{
	uintptr_t from = round_up((uintptr_t)p + used), to = round_up((uintptr_t)p + len);
	if (p && to > from)
		_sp_prim_madvise((void *)from, to - from, MADV_DONTNEED);
}

/* Grow or shrink; new bytes are zero. The old block is given back. */
void *_sp_meta_realloc(void *p, size_t old_len, size_t new_len)
{
	if (!p)
		return _sp_meta_alloc(new_len);
	size_t o = round_up(old_len ? old_len : 1), n = round_up(new_len ? new_len : 1);
	if (o == n)
		return p;
	pthread_mutex_lock(&meta_lock);
	void *q = take(n, -1, PROT_READ | PROT_WRITE);
	if (q) {
		/* Growing: move the page tables, so that a sparse array (indexed
		 * by store page id, say) stays sparse instead of being touched
		 * whole by a copy. MREMAP_DONTUNMAP leaves the old block mapped:
		 * no hole in the arena that another thread's mmap could take. */
		void *out;
		if (o > n || _sp_prim_mremap(p, o, o, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, q, &out))
			memcpy(q, p, o < n ? o : n);
		release((uintptr_t)p, o);
	}
	pthread_mutex_unlock(&meta_lock);
	return q;
}

/* An array indexed by id (store page ids), grown to hold want entries: new
 * entries are zero, and untouched ones stay unpaid for (see realloc above).
 * *cap is updated; NULL, with the array as it was, if memory is short. */
void *_sp_meta_grow(void *p, uint32_t *cap, size_t elem, uint32_t want)
{
	if (want <= *cap)
		return p;
	void *q = _sp_meta_realloc(p, (size_t)*cap * elem, (size_t)want * elem);
	if (q)
		*cap = want;
	return q;
}
