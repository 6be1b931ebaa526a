/* SPDX-License-Identifier: MIT */
/*
 * Description: the documentation says what the code does. Man pages lint
 * clean; every command, parameter, exit code and JSON field name the CLI
 * produces appears in samepage(8); every public function in libsamepage(3);
 * the README's test command is what CI runs.
 */
#include "helpers.h"

#include <ctype.h>
#include <glob.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_man_pages_lint_clean(void **state)
{
	(void)state;
	if (access("/usr/bin/mandoc", X_OK) != 0)
		SKIP_BECAUSE("mandoc is not installed (scripts/setup.sh installs it)");
	char pattern[PATH_MAX];
	snprintf(pattern, sizeof(pattern), "%s/man/*.[138]", getenv("SAMEPAGE_SRC") ? getenv("SAMEPAGE_SRC") : ".");
	glob_t g;
	assert_int_equal(glob(pattern, 0, NULL, &g), 0);
	assert_true(g.gl_pathc >= 4);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *argv[] = { "mandoc", "-T", "lint", "-W", "warning", g.gl_pathv[i], NULL };
		struct cmd_result r;
		run_cmd(argv, NULL, -1, &r);
		if (r.status != 0 || r.out[0] || r.err[0])
			fail_msg("mandoc lint %s: %s%s", g.gl_pathv[i], r.out, r.err);
		cmd_result_free(&r);
	}
	globfree(&g);
}

/* word appears in text as a whole word (not inside a longer name). */
static bool word_in(const char *text, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = text; (p = strstr(p, word)); p++) {
		bool before = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
		bool after = !(isalnum((unsigned char)p[n]) || p[n] == '_');
		if (before && after)
			return true;
	}
	return false;
}

/* Every key of a JSON document, recursively, must appear in the page. */
static void keys_documented(json_object *o, const char *page, const char *what)
{
	if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			keys_documented(json_object_array_get_idx(o, i), page, what);
		return;
	}
	if (!json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach(o, key, val) {
		if (!word_in(page, key))
			fail_msg("%s key '%s' is not documented in samepage(8)", what, key);
		if (val)
			keys_documented(val, page, what);
	}
}

static void test_samepage8_documents_the_cli(void **state)
{
	(void)state;
	char *page = read_source_text("man/samepage.8");
	static const char *commands[] = { "status", "get", "set", "start", "stop", "unmerge",
					  "service-status", "ps", "run", "check", "top", "exporter", "estimate",
					  "record", "plot", "--listen", "--max-processes", "--all", "--uid",
					  "--only", "--json", "--interval",
					  "--dry-run", "--unmerge-first", "--bytes", "--root",
					  "SAMEPAGE_ROOT", "SAMEPAGE_FAULT", "EXIT STATUS", "JSON" };
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strstr(page, commands[i]))
			fail_msg("samepage(8) does not mention %s", commands[i]);
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		if (!strstr(page, sp_param_describe(p)->name))
			fail_msg("samepage(8) does not document %s", sp_param_describe(p)->name);
	for (int code = 0; code <= 4; code++) {
		char tag[16];
		snprintf(tag, sizeof(tag), ".B %d", code);
		char tag2[16];
		snprintf(tag2, sizeof(tag2), ".IP %d", code);
		if (!strstr(page, tag) && !strstr(page, tag2))
			fail_msg("exit code %d is not documented in samepage(8)", code);
	}
	{
		/* estimate reads any process it may; this one is always there */
		struct cmd_result r;
		char pid[16];
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		run_samepage(&r, "estimate", "--json", "--interval", "0", pid, NULL);
		json_object *j = json_tokener_parse(r.out);
		if (!j)
			fail_msg("estimate --json printed no JSON: %s%s", r.out, r.err);
		keys_documented(j, page, "estimate --json");
		json_object_put(j);
		cmd_result_free(&r);
	}
	if (ksm_present()) {
		struct cmd_result r;
		run_samepage(&r, "status", "--json", NULL);
		json_object *j = json_tokener_parse(r.out);
		assert_non_null(j);
		keys_documented(j, page, "status --json");
		json_object_put(j);
		cmd_result_free(&r);
		run_samepage(&r, "ps", "--json", NULL);
		j = json_tokener_parse(r.out);
		assert_non_null(j);
		keys_documented(j, page, "ps --json");
		json_object_put(j);
		cmd_result_free(&r);
		run_samepage(&r, "check", "--json", "--interval", "0", NULL);
		j = json_tokener_parse(r.out);
		assert_non_null(j);
		keys_documented(j, page, "check --json");
		json_object_put(j);
		cmd_result_free(&r);
	}
	free(page);
}

static void test_libsamepage3_documents_the_api(void **state)
{
	(void)state;
	char *hdr = read_source_text("include/samepage.h");
	char *lib = read_source_text("man/libsamepage.3"), *eng = read_source_text("man/sp_engine.3");
	char *page = malloc(strlen(lib) + strlen(eng) + 2);
	sprintf(page, "%s\n%s", lib, eng);
	free(lib);
	free(eng);
	int seen = 0;
	/* Every "SP_API <type> <name>(" declaration. */
	for (char *p = strstr(hdr, "SP_API "); p; p = strstr(p + 1, "SP_API ")) {
		char *paren = strchr(p, '(');
		char *nl = strchr(p, '\n');
		if (!paren || (nl && nl < paren))
			continue;
		char *end = paren;
		while (end > p && isspace((unsigned char)end[-1]))
			end--;
		char *start = end;
		while (start > p && (isalnum((unsigned char)start[-1]) || start[-1] == '_'))
			start--;
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)(end - start), start);
		if (strncmp(name, "sp_", 3) != 0)
			continue;
		if (!strstr(page, name))
			fail_msg("neither libsamepage(3) nor sp_engine(3) documents %s", name);
		seen++;
	}
	assert_true(seen >= 20);
	free(hdr);
	free(page);
}

static void test_readme_test_command_is_what_ci_runs(void **state)
{
	(void)state;
	char *readme = read_source_text("README.md");
	char *ci = read_source_text(".ci/run");
	const char *cmd = "./scripts/setup.sh && make check";
	assert_non_null(strstr(readme, cmd));
	assert_non_null(strstr(ci, cmd));
	/* The two set-up commands come first, before any other section. */
	char *first_block = strstr(readme, "```sh");
	char *first_section = strstr(readme, "\n## ");
	assert_non_null(first_block);
	assert_true(!first_section || first_block < first_section);
	free(readme);
	free(ci);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_man_pages_lint_clean),
		cmocka_unit_test(test_samepage8_documents_the_cli),
		cmocka_unit_test(test_libsamepage3_documents_the_api),
		cmocka_unit_test(test_readme_test_command_is_what_ci_runs),
	};
	return cmocka_run_group_tests_name("docs", tests, NULL, NULL);
}
