/* SPDX-License-Identifier: MIT */
/*
 * Description: the engine's tables, alone. The content-hash index and the
 * stable table (ids only, keyed by the store page's own hash) under heavy
 * churn, each checked entry by entry against a plain list after every
 * round: nothing is lost, nothing deleted comes back, and a table that
 * emptied gives its memory back. Meta memory that grows keeps its
 * untouched pages untouched (mincore).
 */
#include "helpers.h"

#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	return test_rng(&rng_state);
}

/* ------------------------------------------------------------ sp_index */

struct ref {
	uint64_t key, val;
	bool present;
};

static void check_index(const struct sp_index *ix, const struct ref *r, size_t n)
{
	size_t live = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0;
		bool got = _sp_index_get(ix, r[i].key, &v);
		if (got != r[i].present || (got && v != r[i].val))
			fail_msg("entry %zu: present %d, found %d (value %llu, want %llu)", i, r[i].present, got,
				 (unsigned long long)v, (unsigned long long)r[i].val);
		live += r[i].present;
	}
	assert_int_equal(ix->count, live);
}

static void test_index_churn(void **state)
{
	(void)state;
	enum { N = 20000, KEEP = 3000 };
	struct ref *r = calloc(N + 200000, sizeof(*r));
	assert_non_null(r);
	struct sp_index ix;
	assert_int_equal(_sp_index_init(&ix, 1024), 0);
	size_t n = 0;
	for (; n < N; n++) {
		r[n] = (struct ref){ rnd(), rnd(), true };
		assert_int_equal(_sp_index_put(&ix, r[n].key, r[n].val), 0);
	}
	check_index(&ix, r, n);
	assert_true(ix.cap >= 32768);  /* 20,000 live: more than 11/16 of 16,384 */

	/* A value that is not the entry's deletes nothing. */
	assert_false(_sp_index_del(&ix, r[0].key, r[0].val + 1));
	/* Empty it down to KEEP entries: the table shrinks as it goes. */
	for (size_t i = 0; i < N - KEEP; i++) {
		assert_true(_sp_index_del(&ix, r[i].key, r[i].val));
		r[i].present = false;
		if (i % 2000 == 0)
			check_index(&ix, r, n);
	}
	check_index(&ix, r, n);
	assert_true(ix.cap <= 16384);
	assert_true(ix.count * 16 >= ix.cap * 5);  /* not left sparse */

	/* Churn at a steady size: delete one, add one, 100,000 times. It
	 * purges its tombstones in place and never doubles. */
	size_t cap = ix.cap;
	for (int round = 0; round < 100000; round++) {
		size_t victim;
		do
			victim = (size_t)(rnd() % n);
		while (!r[victim].present);
		assert_true(_sp_index_del(&ix, r[victim].key, r[victim].val));
		r[victim].present = false;
		r[n] = (struct ref){ rnd(), rnd(), true };
		assert_int_equal(_sp_index_put(&ix, r[n].key, r[n].val), 0);
		n++;
		if (round % 20000 == 0)
			check_index(&ix, r, n);
	}
	check_index(&ix, r, n);
	assert_int_equal(ix.cap, cap);
	_sp_index_fini(&ix);
	free(r);
}

/* ------------------------------------------------------------ sp_stable */

static void fill_page(uint8_t *p, uint64_t seed)
{
	for (size_t i = 0; i < SP_PAGE / 8; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		memcpy(p + i * 8, &seed, 8);
	}
}

struct content {
	uint64_t hash;
	uint32_t ids[3];   /* its store pages: the head first, then dups */
	int n;
};

/* Every content is found (with room to share) exactly while it has a page. */
static void check_stable(struct sp_stable *st, const struct content *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t id = _sp_stable_find(st, c[i].hash, 1 << 30);
		if (c[i].n == 0) {
			if (id != SP_NONE)
				fail_msg("content %zu has no page left, found %u", i, id);
			continue;
		}
		bool mine = false;
		for (int k = 0; k < c[i].n; k++)
			mine |= c[i].ids[k] == id;
		if (!mine)
			fail_msg("content %zu: found %u, not one of its %d pages", i, id, c[i].n);
		assert_int_equal(st->store->pg[id].hash, c[i].hash);
	}
}

/* One more store page of the content (mapped once), into the table. */
static void add_page(struct sp_stable *st, struct content *c, const uint8_t *page)
{
	int64_t id = _sp_store_add(st->store, page, c->hash, 0);
	assert_true(id >= 0);
	st->store->pg[id].refs = 1;
	_sp_stable_insert(st, c->hash, (uint32_t)id);
	c->ids[c->n++] = (uint32_t)id;
}

static void test_stable_churn(void **state)
{
	(void)state;
	enum { N = 4000 };
	struct sp_store store;
	struct sp_stable st;
	assert_int_equal(_sp_store_init(&store), 0);
	store.fork_gen = 1;
	assert_int_equal(_sp_stable_init(&st, &store), 0);
	struct content *c = calloc(N, sizeof(*c));
	assert_non_null(c);
	uint8_t *page = aligned_alloc(SP_PAGE, SP_PAGE);
	assert_non_null(page);

	/* Every content gets a page; every tenth a chain of three. */
	for (size_t i = 0; i < N; i++) {
		fill_page(page, i + 1);
		c[i].hash = _sp_hash_page(page);
		for (int k = 0; k < (i % 10 == 0 ? 3 : 1); k++)
			add_page(&st, &c[i], page);
	}
	check_stable(&st, c, N);
	assert_int_equal(st.count, N);
	assert_int_equal(st.chains, N / 10);
	assert_int_equal(st.dups, 3 * (N / 10));
	size_t full_cap = st.cap;

	/* Pages die in random order (heads, middles and tails of chains); a
	 * dead page's id is punched and reused by the next content added. */
	size_t dead = 0;
	for (size_t round = 0; dead < N - N / 10; round++) {
		size_t i = (size_t)(rnd() % N);
		if (c[i].n == 0)
			continue;
		int k = (int)(rnd() % (uint64_t)c[i].n);
		assert_true(_sp_stable_put(&st, c[i].ids[k]));
		c[i].ids[k] = c[i].ids[--c[i].n];
		dead += c[i].n == 0;
		if (round % 500 == 0)
			check_stable(&st, c, N);
	}
	check_stable(&st, c, N);
	assert_true(st.cap < full_cap);  /* it gave memory back */
	size_t live = 0, chains = 0, dups = 0;
	for (size_t i = 0; i < N; i++) {
		live += c[i].n > 0;
		chains += c[i].n > 1;
		dups += c[i].n > 1 ? (size_t)c[i].n : 0;
	}
	assert_int_equal(st.count, live);
	assert_int_equal(st.chains, chains);
	assert_int_equal(st.dups, dups);

	/* Contents come back on reused ids. */
	for (size_t i = 0; i < N; i++) {
		if (c[i].n)
			continue;
		fill_page(page, i + 1);
		add_page(&st, &c[i], page);
	}
	check_stable(&st, c, N);
	assert_true(store.nseg == 1);  /* every id was reused: one segment still */

	free(page);
	free(c);
	_sp_stable_fini(&st);
	store.no_punch = true;
	_sp_store_fini(&store);
}

/* ------------------------------------------------------------ meta */

static size_t resident_pages(void *p, size_t len)
{
	size_t n = len / SP_PAGE, res = 0;
	unsigned char *v = malloc(n);
	assert_non_null(v);
	assert_int_equal(mincore(p, len, v), 0);
	for (size_t i = 0; i < n; i++)
		res += v[i] & 1;
	free(v);
	return res;
}

static void test_meta_growth_stays_sparse(void **state)
{
	(void)state;
	size_t small = 1 << 20, big = 8 << 20;
	uint8_t *p = _sp_meta_alloc(small);
	assert_non_null(p);
	p[0] = 1;
	p[100 * SP_PAGE + 7] = 2;
	p[small - 1] = 3;
	uint8_t *q = _sp_meta_realloc(p, small, big);
	assert_non_null(q);
	assert_int_equal(q[0], 1);
	assert_int_equal(q[100 * SP_PAGE + 7], 2);
	assert_int_equal(q[small - 1], 3);
	/* the three written pages, not the 256 of the old block (checked
	 * before reading any other: a read maps the zero page, which mincore
	 * counts) */
	assert_true(resident_pages(q, big) <= 4);
	assert_int_equal(q[5 * SP_PAGE], 0);
	assert_int_equal(q[big - 1], 0);
	/* shrinking copies what fits */
	uint8_t *s = _sp_meta_realloc(q, big, small);
	assert_non_null(s);
	assert_int_equal(s[100 * SP_PAGE + 7], 2);
	assert_int_equal(s[small - 1], 3);
	_sp_meta_free(s, small);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_churn),
		cmocka_unit_test(test_stable_churn),
		cmocka_unit_test(test_meta_growth_stays_sparse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
