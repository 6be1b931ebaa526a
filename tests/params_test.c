/* SPDX-License-Identifier: MIT */
/* Description: the parameter table and the kernel's parsing rules. */
#include "helpers.h"
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_every_param_has_a_unique_name(void **state)
{
	(void)state;
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		assert_non_null(in);
		assert_non_null(in->name);
		assert_non_null(in->help);
		assert_true(!!(in->flags & SP_PF_KNOB) ^ !!(in->flags & SP_PF_COUNTER));
		assert_int_equal(sp_param_lookup(in->name), p);
		for (int q = 0; q < p; q++)
			assert_string_not_equal(in->name, sp_param_describe(q)->name);
		if (in->flags & SP_PF_KNOB) {
			assert_true(in->min <= in->def && in->def <= in->max);
		}
	}
	assert_null(sp_param_describe(SP_PARAM_COUNT));
	assert_null(sp_param_describe((sp_param)-1));
	assert_true(SP_PARAM_COUNT <= SP_PARAM_MAX);
}

static void test_lookup_aliases_and_unknown(void **state)
{
	(void)state;
	assert_int_equal(sp_param_lookup("shm_pages_to_scan"), SP_PAGES_TO_SCAN);
	assert_int_equal(sp_param_lookup("shm_sleep_millisecs"), SP_SLEEP_MILLISECS);
	assert_int_equal(sp_param_lookup("shm_merge_across_nodes"), SP_MERGE_ACROSS_NODES);
	assert_int_equal(sp_param_lookup("shm_full_scans"), SP_FULL_SCANS);
	assert_int_equal(sp_param_lookup("page_to_scan"), -ENOENT);
	assert_int_equal(sp_param_lookup(""), -ENOENT);
	assert_int_equal(sp_param_lookup(NULL), -ENOENT);
	assert_int_equal(sp_param_lookup("shm_"), -ENOENT);
}

/* The kernel's defaults, from mm/ksm.c and Documentation/admin-guide/mm/ksm.rst. */
static void test_defaults_are_the_kernels(void **state)
{
	(void)state;
	assert_int_equal(sp_param_describe(SP_RUN)->def, 0);
	assert_int_equal(sp_param_describe(SP_PAGES_TO_SCAN)->def, 100);
	assert_int_equal(sp_param_describe(SP_SLEEP_MILLISECS)->def, 20);
	assert_int_equal(sp_param_describe(SP_MERGE_ACROSS_NODES)->def, 1);
	assert_int_equal(sp_param_describe(SP_USE_ZERO_PAGES)->def, 0);
	assert_int_equal(sp_param_describe(SP_MAX_PAGE_SHARING)->def, 256);
	assert_int_equal(sp_param_describe(SP_STABLE_NODE_CHAINS_PRUNE_MILLISECS)->def, 2000);
	assert_int_equal(sp_param_describe(SP_SMART_SCAN)->def, 1);
	assert_int_equal(sp_param_describe(SP_ADVISOR_MODE)->def, 0);
	assert_int_equal(sp_param_describe(SP_ADVISOR_MAX_CPU)->def, 70);
	assert_int_equal(sp_param_describe(SP_ADVISOR_MIN_PAGES_TO_SCAN)->def, 500);
	assert_int_equal(sp_param_describe(SP_ADVISOR_MAX_PAGES_TO_SCAN)->def, 30000);
	assert_int_equal(sp_param_describe(SP_ADVISOR_TARGET_SCAN_TIME)->def, 200);
}

struct case_ {
	sp_param p;
	const char *text;
	int err;
	int64_t value;
};

static void test_parse_rules(void **state)
{
	(void)state;
	static const struct case_ cases[] = {
		{ SP_RUN, "0", 0, 0 },
		{ SP_RUN, "2", 0, 2 },
		{ SP_RUN, "2\n", 0, 2 },
		{ SP_RUN, "3", -ERANGE, 0 },
		{ SP_RUN, "-1", -ERANGE, 0 },
		{ SP_RUN, "one", -EINVAL, 0 },
		{ SP_PAGES_TO_SCAN, "0", 0, 0 },
		{ SP_PAGES_TO_SCAN, "+5", 0, 5 },
		{ SP_PAGES_TO_SCAN, "4294967295", 0, 4294967295LL },
		{ SP_PAGES_TO_SCAN, "4294967296", -ERANGE, 0 },
		{ SP_PAGES_TO_SCAN, "99999999999999999999999", -ERANGE, 0 },
		{ SP_PAGES_TO_SCAN, " 5", -EINVAL, 0 },
		{ SP_PAGES_TO_SCAN, "5 ", -EINVAL, 0 },
		{ SP_PAGES_TO_SCAN, "0x10", -EINVAL, 0 },
		{ SP_PAGES_TO_SCAN, "1e3", -EINVAL, 0 },
		{ SP_PAGES_TO_SCAN, "", -EINVAL, 0 },
		{ SP_SLEEP_MILLISECS, "4294967295", 0, 4294967295LL },
		{ SP_SLEEP_MILLISECS, "-20", -ERANGE, 0 },
		{ SP_MAX_PAGE_SHARING, "1", -ERANGE, 0 },
		{ SP_MAX_PAGE_SHARING, "2", 0, 2 },
		{ SP_MAX_PAGE_SHARING, "2147483647", 0, 2147483647 },
		{ SP_MAX_PAGE_SHARING, "2147483648", -ERANGE, 0 },
		{ SP_MERGE_ACROSS_NODES, "2", -ERANGE, 0 },
		{ SP_MERGE_ACROSS_NODES, "yes", 0, 1 },
		{ SP_USE_ZERO_PAGES, "on", 0, 1 },
		{ SP_USE_ZERO_PAGES, "OFF", 0, 0 },
		{ SP_USE_ZERO_PAGES, "maybe", -EINVAL, 0 },
		{ SP_SMART_SCAN, "false", 0, 0 },
		{ SP_ADVISOR_MODE, "scan-time", 0, 1 },
		{ SP_ADVISOR_MODE, "none", 0, 0 },
		{ SP_ADVISOR_MODE, "scan_time", -EINVAL, 0 },
		{ SP_ADVISOR_MODE, "1", -EINVAL, 0 },
		{ SP_ADVISOR_MAX_CPU, "100", 0, 100 },
		{ SP_ADVISOR_MAX_CPU, "101", -ERANGE, 0 },
		{ SP_ADVISOR_TARGET_SCAN_TIME, "0", -ERANGE, 0 },
		{ SP_ADVISOR_TARGET_SCAN_TIME, "1", 0, 1 },
		{ SP_ADVISOR_MAX_PAGES_TO_SCAN, "9223372036854775807", 0, INT64_MAX },
		{ SP_ADVISOR_MAX_PAGES_TO_SCAN, "9223372036854775808", -ERANGE, 0 },
		{ SP_PAGES_SHARED, "1", -EPERM, 0 },
		{ SP_GENERAL_PROFIT, "1", -EPERM, 0 },
		{ SP_COW_KSM, "1", -EPERM, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t v = -12345;
		sp_diag d;
		memset(&d, 0, sizeof(d));
		int r = sp_param_parse(cases[i].p, cases[i].text, &v, &d);
		if (r != cases[i].err)
			fail_msg("%s='%s': got %d, want %d (%s)", sp_param_describe(cases[i].p)->name,
				 cases[i].text, r, cases[i].err, d.msg);
		if (r == 0)
			assert_int_equal(v, cases[i].value);
		else {
			assert_int_equal(d.err, r);
			/* Every refusal names the knob so the user knows what to fix. */
			assert_non_null(strstr(d.msg, sp_param_describe(cases[i].p)->name));
		}
	}
	assert_int_equal(sp_param_parse(SP_RUN, NULL, NULL, NULL), -EINVAL);
}

static void test_format_round_trip(void **state)
{
	(void)state;
	char buf[32];
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		if (!(in->flags & SP_PF_KNOB))
			continue;
		int64_t vals[] = { in->min, in->def, in->max }, back;
		for (int i = 0; i < 3; i++) {
			assert_int_equal(sp_param_format(p, vals[i], buf, sizeof(buf)), 0);
			assert_int_equal(sp_param_parse(p, buf, &back, NULL), 0);
			assert_int_equal(back, vals[i]);
		}
	}
	assert_int_equal(sp_param_format(SP_ADVISOR_MODE, 1, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "scan-time");
	assert_int_equal(sp_param_format(SP_PAGES_TO_SCAN, 123456, buf, 4), -ENOSPC);
}

static void test_parse_i64_edges(void **state)
{
	(void)state;
	int64_t v;
	assert_int_equal(_sp_parse_i64("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(_sp_parse_i64("-9223372036854775809", &v), -ERANGE);
	assert_int_equal(_sp_parse_i64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(_sp_parse_i64("12\n\n", &v), -EINVAL);
	assert_int_equal(_sp_parse_i64("-", &v), -EINVAL);
	assert_int_equal(_sp_parse_i64("+", &v), -EINVAL);
}

static void test_savings(void **state)
{
	(void)state;
	sp_sample s;
	memset(&s, 0, sizeof(s));
	s.page_size = 4096;
#define SET(p, v) (s.value[p] = (v), s.present |= 1ull << (p))
	SET(SP_PAGES_SHARED, 10);
	SET(SP_PAGES_SHARING, 90);
	SET(SP_PAGES_UNSHARED, 45);
	SET(SP_PAGES_VOLATILE, 5);
	SET(SP_KSM_ZERO_PAGES, 10);
	SET(SP_GENERAL_PROFIT, 100 * 4096 - 160 * 64);
	sp_savings sv;
	sp_savings_compute(&s, &sv);
	assert_int_equal(sv.saved_bytes, 100 * 4096);
	assert_int_equal(sv.profit_bytes, 100 * 4096 - 160 * 64);
	assert_int_equal(sv.metadata_bytes, 160 * 64);
	assert_false(sv.profit_estimated);
	assert_true(sv.sharing_ratio > 8.99 && sv.sharing_ratio < 9.01);
	assert_true(sv.unshared_ratio > 0.49 && sv.unshared_ratio < 0.51);

	/* A kernel without general_profit: estimated from the four counters
	 * (shared+sharing+unshared+volatile = rmap items). */
	s.present &= ~(1ull << SP_GENERAL_PROFIT);
	sp_savings_compute(&s, &sv);
	assert_true(sv.profit_estimated);
	assert_int_equal(sv.metadata_bytes, (10 + 90 + 45 + 5) * 64);

	/* A negative profit stays negative. */
	SET(SP_GENERAL_PROFIT, -8192);
	sp_savings_compute(&s, &sv);
	assert_int_equal(sv.profit_bytes, -8192);

	int64_t v;
	assert_int_equal(sp_sample_get(&s, SP_STABLE_NODE_DUPS, &v), -ENOENT);
	assert_int_equal(sp_sample_get(&s, SP_PARAM_COUNT, &v), -EINVAL);
}

/* The fault seam itself: the Nth call fails with the named errno. */
static void test_fault_injection_seam(void **state)
{
	(void)state;
	/* Environment is read once per process: this test owns the variable. */
	setenv("SAMEPAGE_FAULT", "access:EROFS:2,prctl:ENOMEM:1+", 1);
	assert_int_equal(_sp_prim_access("/", F_OK), 0);
	assert_int_equal(_sp_prim_access("/", F_OK), -EROFS);
	assert_int_equal(_sp_prim_access("/", F_OK), 0);
	assert_int_equal(_sp_prim_prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0), -ENOMEM);
	assert_int_equal(_sp_prim_prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0), -ENOMEM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_param_has_a_unique_name),
		cmocka_unit_test(test_lookup_aliases_and_unknown),
		cmocka_unit_test(test_defaults_are_the_kernels),
		cmocka_unit_test(test_parse_rules),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_parse_i64_edges),
		cmocka_unit_test(test_savings),
		cmocka_unit_test(test_fault_injection_seam),
	};
	return cmocka_run_group_tests_name("params", tests, NULL, NULL);
}
