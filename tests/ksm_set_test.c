/* SPDX-License-Identifier: MIT */
/*
 * Description: samepage status/get/set against the real /sys/kernel/mm/ksm.
 * Every writable knob is changed and put back; every bad input is refused
 * with exit code 2, a message, and sysfs unchanged. Holds the KSM lock.
 */
#include "helpers.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* status --json must show exactly what sysfs shows. ksmd is stopped so the
 * counters cannot move between the two readings. */
static void test_status_json_matches_sysfs(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	assert_int_equal(ksm_write("run", "0"), 0);
	struct cmd_result r;
	run_samepage(&r, "status", "--json", NULL);
	assert_int_equal(r.status, 0);
	json_object *j = json_tokener_parse(r.out);
	assert_non_null(j);
	int checked = 0;
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		if (in->flags & (SP_PF_VMSTAT | SP_PF_ENGINE))
			continue;
		json_object *grp, *x;
		assert_true(json_object_object_get_ex(j, (in->flags & SP_PF_KNOB) ? "knobs" : "counters", &grp));
		assert_true(json_object_object_get_ex(grp, in->name, &x));
		char text[64];
		ksm_read_text(in->name, text, sizeof(text));
		if (!text[0]) {
			assert_null(x);  /* absent here: null there */
			continue;
		}
		if (in->flags & SP_PF_ADVISOR) {
			const char *mode = json_object_get_string(x);
			assert_non_null(strstr(text, mode));
			assert_true(strchr(text, '[') < strstr(text, mode));
		} else {
			assert_true(json_object_is_type(x, json_type_int));  /* numbers as numbers */
			if (json_object_get_int64(x) != strtoll(text, NULL, 10))
				fail_msg("%s: json %lld, sysfs %s", in->name,
					 (long long)json_object_get_int64(x), text);
		}
		checked++;
	}
	assert_true(checked >= 20);  /* this 6.18 kernel has all of them */
	json_object *sav, *x;
	assert_true(json_object_object_get_ex(j, "savings", &sav));
	assert_true(json_object_object_get_ex(sav, "saved_bytes", &x));
	assert_int_equal(json_object_get_int64(x),
			 (ksm_read_num("pages_sharing") + ksm_read_num("ksm_zero_pages")) * 4096);
	assert_true(json_object_object_get_ex(sav, "general_profit_bytes", &x));
	assert_int_equal(json_object_get_int64(x), ksm_read_num("general_profit"));
	json_object_put(j);
	cmd_result_free(&r);
}

static void test_status_human_names_everything(void **state)
{
	(void)state;
	REQUIRE_KSM(false);
	struct cmd_result r;
	run_samepage(&r, "status", "--interval", "0", NULL);
	assert_int_equal(r.status, 0);
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		if (!(sp_param_describe(p)->flags & SP_PF_ENGINE) && !strstr(r.out, sp_param_describe(p)->name))
			fail_msg("status does not show %s", sp_param_describe(p)->name);
	assert_non_null(strstr(r.out, "ksmd"));
	cmd_result_free(&r);
}

/* Read-only use needs no privilege. */
static void test_status_and_get_as_non_root(void **state)
{
	(void)state;
	REQUIRE_KSM(true);  /* root, to become nobody */
	const char *argv[] = { "samepage", "status", "--json", NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, NOBODY_UID, &r);
	assert_int_equal(r.status, 0);
	json_object *j = json_tokener_parse(r.out);
	assert_non_null(j);
	json_object_put(j);
	cmd_result_free(&r);
	const char *get[] = { "samepage", "get", "pages_to_scan", NULL };
	run_cmd(get, NULL, NOBODY_UID, &r);
	assert_int_equal(r.status, 0);
	assert_int_equal(strtoll(r.out, NULL, 10), ksm_read_num("pages_to_scan"));
	cmd_result_free(&r);
}

/* A different valid value for each knob. */
static void other_value(const char *name, const char *cur, char *out, size_t len)
{
	long long v = strtoll(cur, NULL, 10);
	if (strcmp(name, "advisor_mode") == 0)
		snprintf(out, len, "%s", strstr(cur, "[none]") ? "scan-time" : "none");
	else if (!strcmp(name, "merge_across_nodes") || !strcmp(name, "use_zero_pages") ||
		 !strcmp(name, "smart_scan"))
		snprintf(out, len, "%d", !v);
	else if (strcmp(name, "advisor_max_cpu") == 0)
		snprintf(out, len, "%lld", v == 50 ? 60LL : 50LL);
	else
		snprintf(out, len, "%lld", v + 7);
}

static void test_set_and_restore_every_knob(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	assert_int_equal(ksm_write("run", "0"), 0);
	if (ksm_read_num("pages_shared") > 0)
		assert_int_equal(ksm_write("run", "2"), 0);
	struct ksm_knobs before, after;
	ksm_save(&before);
	int changed = 0;
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		if (!(in->flags & SP_PF_KNOB) || p == SP_RUN)
			continue;
		char cur[64], want[64], arg[128], now[64];
		ksm_read_text(in->name, cur, sizeof(cur));
		if (!cur[0])
			continue;
		/* pages_to_scan is only writable with the advisor off. */
		if (p == SP_PAGES_TO_SCAN)
			assert_int_equal(ksm_write("advisor_mode", "none"), 0);
		other_value(in->name, cur, want, sizeof(want));
		snprintf(arg, sizeof(arg), "%s=%s", in->name, want);
		struct cmd_result r;
		run_samepage(&r, "set", arg, NULL);
		if (r.status != 0)
			fail_msg("set %s: exit %d: %s", arg, r.status, r.err);
		assert_non_null(strstr(r.out, in->name));  /* says what changed */
		cmd_result_free(&r);
		ksm_read_text(in->name, now, sizeof(now));
		if (p == SP_ADVISOR_MODE)
			assert_non_null(strstr(now, want));
		else
			assert_string_equal(now, want);
		/* and back, through the CLI too */
		if (p == SP_ADVISOR_MODE) {
			char *b = strchr(cur, '['), *e = strchr(cur, ']');
			*e = 0;
			snprintf(arg, sizeof(arg), "%s=%s", in->name, b + 1);
		} else {
			snprintf(arg, sizeof(arg), "%s=%s", in->name, cur);
		}
		run_samepage(&r, "set", "-q", arg, NULL);
		assert_int_equal(r.status, 0);
		cmd_result_free(&r);
		changed++;
	}
	assert_true(changed >= 11);
	ksm_restore(&before);
	ksm_save(&after);
	assert_true(ksm_same(&before, &after));
}

static void test_libvirt_aliases_and_several_at_once(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	assert_int_equal(ksm_write("advisor_mode", "none"), 0);
	struct ksm_knobs before;
	ksm_save(&before);
	struct cmd_result r;
	run_samepage(&r, "set", "shm_pages_to_scan=321", "shm_sleep_millisecs=42", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	assert_int_equal(ksm_read_num("pages_to_scan"), 321);
	assert_int_equal(ksm_read_num("sleep_millisecs"), 42);
	run_samepage(&r, "get", "shm_pages_to_scan", "sleep_millisecs", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "shm_pages_to_scan=321"));
	assert_non_null(strstr(r.out, "sleep_millisecs=42"));
	cmd_result_free(&r);
	ksm_restore(&before);
}

/* advisor_mode=scan-time owns pages_to_scan; the same command can take it back. */
static void test_advisor_rule(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	struct ksm_knobs before, after;
	assert_int_equal(ksm_write("advisor_mode", "scan-time"), 0);
	ksm_save(&before);
	struct cmd_result r;
	run_samepage(&r, "set", "pages_to_scan=777", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "advisor_mode"));
	cmd_result_free(&r);
	ksm_save(&after);
	assert_true(ksm_same(&before, &after));

	run_samepage(&r, "set", "pages_to_scan=777", "advisor_mode=none", NULL);
	assert_int_equal(r.status, 0);
	cmd_result_free(&r);
	assert_int_equal(ksm_read_num("pages_to_scan"), 777);
	char mode[64];
	ksm_read_text("advisor_mode", mode, sizeof(mode));
	assert_string_equal(mode, "[none] scan-time");
	ksm_restore(&before);
}

static void test_bad_input_is_refused_and_changes_nothing(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	assert_int_equal(ksm_write("advisor_mode", "none"), 0);
	static const char *const bad[][5] = {
		{ "set", "nosuch_knob=1" },
		{ "set", "page_to_scan=100" },
		{ "set", "pages_to_scan=abc" },
		{ "set", "pages_to_scan=-5" },
		{ "set", "pages_to_scan=4294967296" },
		{ "set", "pages_to_scan=" },
		{ "set", "pages_to_scan= 5" },
		{ "set", "sleep_millisecs=1.5" },
		{ "set", "run=3" },
		{ "set", "run=start" },
		{ "set", "max_page_sharing=1" },
		{ "set", "merge_across_nodes=2" },
		{ "set", "use_zero_pages=maybe" },
		{ "set", "advisor_mode=sometimes" },
		{ "set", "advisor_max_cpu=101" },
		{ "set", "advisor_target_scan_time=0" },
		{ "set", "pages_shared=5" },
		{ "set", "general_profit=1" },
		{ "set", "pages_to_scan" },
		{ "set", "=5" },
		{ "set" },
		{ "set", "pages_to_scan=200", "sleep_millisecs=x" },
		{ "set", "sleep_millisecs=33", "run=7" },
		{ "set", "pages_to_scan=200", "pages_to_scan=300" },
		{ "set", "pages_to_scan=200", "shm_pages_to_scan=300" },
		{ "set", "advisor_mode=scan-time", "pages_to_scan=500" },
		{ "set", "--bogus", "run=1" },
		{ "get", "nosuch" },
		{ "status", "--interval", "x" },
		{ "status", "extra" },
		{ "start", "now" },
		{ "nosuchcommand" },
	};
	struct ksm_knobs before, after;
	ksm_save(&before);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *argv[7] = { "samepage" };
		int n = 1;
		for (int a = 0; a < 5 && bad[i][a]; a++)
			argv[n++] = bad[i][a];
		argv[n] = NULL;
		struct cmd_result r;
		run_cmd(argv, NULL, -1, &r);
		if (r.status != 2 || strlen(r.err) < 10)
			fail_msg("'%s %s %s' gave exit %d, stderr '%s'", bad[i][0], bad[i][1] ? bad[i][1] : "",
				 bad[i][1] && bad[i][2] ? bad[i][2] : "", r.status, r.err);
		assert_string_equal(r.out, "");  /* nothing claimed as done */
		cmd_result_free(&r);
		ksm_save(&after);
		if (!ksm_same(&before, &after))
			fail_msg("'%s %s' changed sysfs", bad[i][0], bad[i][1] ? bad[i][1] : "");
	}
}

static void test_non_root_write_refused(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	struct ksm_knobs before, after;
	ksm_save(&before);
	static const char *const cmds[][3] = {
		{ "set", "pages_to_scan=321" }, { "start" }, { "stop" }, { "unmerge" },
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const char *argv[] = { "samepage", cmds[i][0], cmds[i][1], NULL };
		struct cmd_result r;
		run_cmd(argv, NULL, NOBODY_UID, &r);
		if (r.status != 2 || !strstr(r.err, "root"))
			fail_msg("non-root %s: exit %d, stderr '%s'", cmds[i][0], r.status, r.err);
		cmd_result_free(&r);
	}
	ksm_save(&after);
	assert_true(ksm_same(&before, &after));
}

/* A write that fails midway puts back what was already written. */
static void test_failed_write_rolls_back(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	assert_int_equal(ksm_write("advisor_mode", "none"), 0);
	struct ksm_knobs before, after;
	ksm_save(&before);
	/* Write order: sleep_millisecs, use_zero_pages, then pages_to_scan (3rd write fails). */
	const char *argv[] = { "samepage", "set", "pages_to_scan=111", "sleep_millisecs=33",
			       "use_zero_pages=1", NULL };
	const char *env[] = { "SAMEPAGE_FAULT=write:EIO:3", NULL };
	struct cmd_result r;
	run_cmd(argv, env, -1, &r);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "put back"));
	cmd_result_free(&r);
	ksm_save(&after);
	assert_true(ksm_same(&before, &after));
}

static void test_dry_run_writes_nothing(void **state)
{
	(void)state;
	REQUIRE_KSM(true);
	assert_int_equal(ksm_write("advisor_mode", "none"), 0);
	struct ksm_knobs before, after;
	ksm_save(&before);
	struct cmd_result r;
	run_samepage(&r, "set", "--dry-run", "pages_to_scan=999", "smart_scan=0", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "dry run"));
	cmd_result_free(&r);
	ksm_save(&after);
	assert_true(ksm_same(&before, &after));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_json_matches_sysfs),
		cmocka_unit_test(test_status_human_names_everything),
		cmocka_unit_test(test_status_and_get_as_non_root),
		cmocka_unit_test(test_set_and_restore_every_knob),
		cmocka_unit_test(test_libvirt_aliases_and_several_at_once),
		cmocka_unit_test(test_advisor_rule),
		cmocka_unit_test(test_bad_input_is_refused_and_changes_nothing),
		cmocka_unit_test(test_non_root_write_refused),
		cmocka_unit_test(test_failed_write_rolls_back),
		cmocka_unit_test(test_dry_run_writes_nothing),
	};
	return cmocka_run_group_tests_name("ksm_set", tests, ksm_group_setup, ksm_group_teardown);
}
