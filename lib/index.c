/* SPDX-License-Identifier: MIT */
/*
 * Content-hash tables. Keys are XXH3-64 hashes of 4 KiB pages; a hash is
 * only a filter: merging always compares the bytes of frozen pages.
 * Open addressing with linear probing; key 0 is remapped so that 0 can
 * mean "empty" and 1 "deleted".
 */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
/* The library's own choice of SSE2, AVX2 or AVX-512, made at run time: its
 * plain XXH3_64bits is built for SSE2 (0.28 against 0.18 us a cold page). */
#include <xxh_x86dispatch.h>
#endif

#define EMPTY 0ull
#define TOMB 1ull

uint64_t _sp_hash_page(const void *p)
{
	return XXH3_64bits(p, SP_PAGE);
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SP_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SP_SANITIZED 1
#endif

#ifdef SP_SANITIZED
/* A redzone between two of the program's allocations is still its memory;
 * a page read during a freeze races nobody. Plain loops, so that no call
 * to an intercepted memcmp or memcpy is generated. */
#ifdef __clang__
#define RAW_READ __attribute__((no_sanitize("address", "thread"), no_builtin("memcmp", "memcpy")))
#else
#define RAW_READ __attribute__((no_sanitize("address", "thread"), optimize("no-tree-loop-distribute-patterns")))
#endif

RAW_READ int _sp_page_cmp(const void *a, const void *b)
{
	const volatile uint64_t *x = a, *y = b;
	for (size_t i = 0; i < SP_PAGE / 8; i++)
		if (x[i] != y[i])
			return 1;
	return 0;
}

RAW_READ void _sp_page_copy(void *dst, const void *src)
{
	volatile uint64_t *d = dst;
	const volatile uint64_t *s = src;
	for (size_t i = 0; i < SP_PAGE / 8; i++)
		d[i] = s[i];
}
#else
int _sp_page_cmp(const void *a, const void *b)
{
	return memcmp(a, b, SP_PAGE) != 0;
}

void _sp_page_copy(void *dst, const void *src)
{
	memcpy(dst, src, SP_PAGE);
}
#endif

static uint64_t fix_key(uint64_t k)
{
	return k < 2 ? k + 2 : k;
}

int _sp_index_init(struct sp_index *ix, size_t cap)
{
	size_t c = 64;
	while (c < cap)
		c <<= 1;
	ix->keys = _sp_meta_alloc(c * sizeof(uint64_t));
	ix->vals = _sp_meta_alloc(c * sizeof(uint64_t));
	if (!ix->keys || !ix->vals) {
		_sp_meta_free(ix->keys, c * sizeof(uint64_t));
		_sp_meta_free(ix->vals, c * sizeof(uint64_t));
		ix->keys = ix->vals = NULL;
		return -ENOMEM;
	}
	ix->cap = c;
	ix->count = ix->tombs = 0;
	return 0;
}

void _sp_index_fini(struct sp_index *ix)
{
	_sp_meta_free(ix->keys, ix->cap * sizeof(uint64_t));
	_sp_meta_free(ix->vals, ix->cap * sizeof(uint64_t));
	memset(ix, 0, sizeof(*ix));
}

size_t _sp_table_home(uint64_t key, size_t cap)
{
	/* The hash is already uniform: any of its bits will do. */
	return (size_t)(key * 0x9E3779B97F4A7C15ull >> 7) & (cap - 1);
}

static size_t slot(const struct sp_index *ix, uint64_t k)
{
	return _sp_table_home(k, ix->cap);
}

bool _sp_index_get(const struct sp_index *ix, uint64_t key, uint64_t *val)
{
	key = fix_key(key);
	for (size_t i = slot(ix, key), n = 0; n < ix->cap; i = (i + 1) & (ix->cap - 1), n++) {
		if (ix->keys[i] == EMPTY)
			return false;
		if (ix->keys[i] == key) {
			*val = ix->vals[i];
			return true;
		}
	}
	return false;
}

/* Sizing, shared with the stable table (stable.c). A table is rebuilt
 * when live + tombstones reach 3/4. It doubles only if the live entries
 * alone fill 11/16; else purging the tombstones at the same size leaves at
 * least 1/16 free, so a purge (one pass over the table) is paid for by
 * cap/16 insertions. Doubling at 1/4 live, as once, let a churning index
 * (the unstable one) sit at twice the memory it needs; at 5/8, the unstable
 * index of two 32 MiB clients (5,000 entries) still doubled. Below 11/32
 * live a rebuild halves it (then under 11/16), and a delete that leaves
 * less than 5/16 live rebuilds at once: a table that grew in a burst
 * (every page of a process before its partners came) gives the memory
 * back even if it stays quiet. 5/16 is under what a doubling leaves
 * (11/32), so that no delete right after a doubling halves it again. */
bool _sp_table_full(size_t cap, size_t count, size_t tombs)
{
	return (count + tombs + 1) * 4 > cap * 3;
}

bool _sp_table_sparse(size_t cap, size_t count)
{
	return count * 16 < cap * 5 && cap >= 128;
}

size_t _sp_table_resize(size_t cap, size_t count)
{
	if (count * 16 > cap * 11)
		return cap * 2;
	if (count * 32 < cap * 11 && cap >= 128)
		return cap / 2;
	return cap;
}

static int rebuild(struct sp_index *ix)
{
	struct sp_index fresh;
	int r = _sp_index_init(&fresh, _sp_table_resize(ix->cap, ix->count));
	if (r)
		return r;
	for (size_t i = 0; i < ix->cap; i++)
		if (ix->keys[i] > TOMB) {
			size_t j = slot(&fresh, ix->keys[i]);
			while (fresh.keys[j] != EMPTY)
				j = (j + 1) & (fresh.cap - 1);
			fresh.keys[j] = ix->keys[i];
			fresh.vals[j] = ix->vals[i];
			fresh.count++;
		}
	_sp_index_fini(ix);
	*ix = fresh;
	return 0;
}

int _sp_index_put(struct sp_index *ix, uint64_t key, uint64_t val)
{
	if (_sp_table_full(ix->cap, ix->count, ix->tombs)) {
		int r = rebuild(ix);
		if (r)
			return r;
	}
	key = fix_key(key);
	size_t tomb = SIZE_MAX;
	for (size_t i = slot(ix, key);; i = (i + 1) & (ix->cap - 1)) {
		if (ix->keys[i] == key) {
			ix->vals[i] = val;
			return 0;
		}
		if (ix->keys[i] == TOMB && tomb == SIZE_MAX)
			tomb = i;
		if (ix->keys[i] == EMPTY) {
			if (tomb != SIZE_MAX) {
				i = tomb;
				ix->tombs--;
			}
			ix->keys[i] = key;
			ix->vals[i] = val;
			ix->count++;
			return 0;
		}
	}
}

bool _sp_index_del(struct sp_index *ix, uint64_t key, uint64_t val)
{
	key = fix_key(key);
	for (size_t i = slot(ix, key), n = 0; n < ix->cap; i = (i + 1) & (ix->cap - 1), n++) {
		if (ix->keys[i] == EMPTY)
			return false;
		if (ix->keys[i] == key) {
			if (ix->vals[i] != val)
				return false;
			ix->keys[i] = TOMB;
			ix->count--;
			ix->tombs++;
			if (_sp_table_sparse(ix->cap, ix->count))
				rebuild(ix);  /* on failure it simply stays as it is */
			return true;
		}
	}
	return false;
}

size_t _sp_index_bytes(const struct sp_index *ix)
{
	return ix->cap * 2 * sizeof(uint64_t);
}
