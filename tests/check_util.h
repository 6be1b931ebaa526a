/* SPDX-License-Identifier: MIT */
/* Running `samepage check --json` and reading its rows, for the check tests. */
#ifndef SP_CHECK_UTIL_H
#define SP_CHECK_UTIL_H

#include "helpers.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ running check */

struct check_run {
	struct cmd_result res;
	json_object *json;
};

/* samepage [--root ROOT] check --json [--only ONLY] --interval MS */
static inline json_object *run_check(struct check_run *cr, const char *root, const char *only, const char *interval)
{
	const char *argv[16];
	int n = 0;
	argv[n++] = "samepage";
	if (root) {
		argv[n++] = "--root";
		argv[n++] = root;
	}
	argv[n++] = "check";
	argv[n++] = "--json";
	if (only) {
		argv[n++] = "--only";
		argv[n++] = only;
	}
	argv[n++] = "--interval";
	argv[n++] = interval ? interval : "0";
	argv[n] = NULL;
	run_cmd(argv, NULL, -1, &cr->res);
	cr->json = json_tokener_parse(cr->res.out);
	if (!cr->json)
		fail_msg("check --json printed no JSON (exit %d): %s%s", cr->res.status, cr->res.out, cr->res.err);
	return cr->json;
}

static inline void check_run_free(struct check_run *cr)
{
	json_object_put(cr->json);
	cmd_result_free(&cr->res);
}

static inline const char *str_of(json_object *o, const char *key)
{
	json_object *x;
	if (!json_object_object_get_ex(o, key, &x) || !x)
		return NULL;
	return json_object_get_string(x);
}

static inline json_object *find_check(json_object *j, const char *name)
{
	json_object *arr;
	assert_true(json_object_object_get_ex(j, "checks", &arr));
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		const char *n = str_of(o, "name");
		if (n && strcmp(n, name) == 0)
			return o;
	}
	fail_msg("no check named %s", name);
	return NULL;
}

/* One check's status, value, reason and fix, asserting the status. */
static inline json_object *expect(json_object *j, const char *name, const char *status)
{
	json_object *o = find_check(j, name);
	const char *st = str_of(o, "status");
	if (!st || strcmp(st, status) != 0)
		fail_msg("%s: status %s, expected %s (value: %s; reason: %s)", name, st ? st : "null", status,
			 str_of(o, "value"), str_of(o, "reason"));
	return o;
}

static inline void expect_str(json_object *o, const char *key, const char *want)
{
	const char *got = str_of(o, key);
	if (!got || strcmp(got, want) != 0)
		fail_msg("%s %s: '%s', expected '%s'", str_of(o, "name"), key, got ? got : "(null)", want);
}

static inline void expect_has(json_object *o, const char *key, const char *part)
{
	const char *got = str_of(o, key);
	if (!got || !strstr(got, part))
		fail_msg("%s %s: '%s' lacks '%s'", str_of(o, "name"), key, got ? got : "(null)", part);
}

static inline void expect_exit(struct check_run *cr, int code)
{
	if (cr->res.status != code)
		fail_msg("exit %d, expected %d: %s%s", cr->res.status, code, cr->res.out, cr->res.err);
	json_object *x;
	assert_true(json_object_object_get_ex(cr->json, "exit_status", &x));
	assert_int_equal(json_object_get_int(x), code);
}

#endif
