/* SPDX-License-Identifier: MIT */
/*
 * Description: `make install` honours PREFIX and DESTDIR and installs what
 * it promises; the installed library and header build a program; the
 * installed ksm.service passes systemd-analyze and its commands work.
 */
#include "helpers.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *src_dir(void)
{
	const char *s = getenv("SAMEPAGE_SRC");
	return s ? s : ".";
}

static void make_install(const char *extra1, const char *extra2)
{
	char buildvar[PATH_MAX], sanvar[512];
	snprintf(buildvar, sizeof(buildvar), "BUILD=%s", getenv("SAMEPAGE_BUILD") ? getenv("SAMEPAGE_BUILD") : "build");
	/* in a sanitizer build, anything relinked must keep the sanitizer */
	snprintf(sanvar, sizeof(sanvar), "SAN=%s", getenv("SAMEPAGE_SAN") ? getenv("SAMEPAGE_SAN") : "");
	const char *argv[] = { "make", "--no-print-directory", "-s", "-C", src_dir(), buildvar, sanvar, "install",
			       extra1, extra2, NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	if (r.status != 0)
		fail_msg("make install failed (%d): %s %s", r.status, r.out, r.err);
	cmd_result_free(&r);
}

static void assert_file(const char *dir, const char *rel)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s%s", dir, rel);
	if (access(p, F_OK) != 0)
		fail_msg("not installed: %s", p);
}

static void test_destdir_staging(void **state)
{
	(void)state;
	char *tmp = make_tempdir();
	char destdir[PATH_MAX];
	snprintf(destdir, sizeof(destdir), "DESTDIR=%s", tmp);
	make_install(destdir, "PREFIX=/usr");
	assert_file(tmp, "/usr/bin/samepage");
	assert_file(tmp, "/usr/lib/libsamepage.so.0");
	assert_file(tmp, "/usr/lib/libsamepage.so");
	assert_file(tmp, "/usr/lib/libsamepage.a");
	assert_file(tmp, "/usr/include/samepage.h");
	assert_file(tmp, "/usr/share/man/man8/samepage.8");
	assert_file(tmp, "/usr/share/man/man3/libsamepage.3");
	assert_file(tmp, "/usr/share/man/man3/sp_engine.3");
	assert_file(tmp, "/usr/bin/samepaged");
	assert_file(tmp, "/usr/lib/libsamepage-preload.so");
	assert_file(tmp, "/usr/share/man/man8/samepaged.8");
	assert_file(tmp, "/usr/lib/systemd/system/samepaged.service");
	assert_file(tmp, "/usr/lib/systemd/user/samepaged.service");
	assert_file(tmp, "/usr/lib/systemd/system/ksm.service");
	assert_file(tmp, "/usr/sbin/ksmtuned");
	assert_file(tmp, "/usr/share/man/man8/ksmtuned.8");
	assert_file(tmp, "/usr/lib/systemd/system/ksmtuned.service");
	assert_file(tmp, "/usr/lib/systemd/system/samepage-exporter.service");

	/* The unit names the final path, not the staging one. */
	char unit[PATH_MAX], line[512];
	snprintf(unit, sizeof(unit), "%s/usr/lib/systemd/system/ksm.service", tmp);
	FILE *f = fopen(unit, "r");
	assert_non_null(f);
	bool seen = false;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "ExecStart=", 10) == 0) {
			assert_string_equal(line, "ExecStart=/usr/bin/samepage start\n");
			seen = true;
		}
	fclose(f);
	assert_true(seen);
	snprintf(unit, sizeof(unit), "%s/usr/lib/systemd/system/ksmtuned.service", tmp);
	f = fopen(unit, "r");
	assert_non_null(f);
	seen = false;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "ExecStart=", 10) == 0) {
			assert_string_equal(line, "ExecStart=/usr/sbin/ksmtuned --foreground\n");
			seen = true;
		}
	fclose(f);
	assert_true(seen);

	/* The staged binary finds its staged library. */
	char bin[PATH_MAX];
	snprintf(bin, sizeof(bin), "%s/usr/bin/samepage", tmp);
	const char *argv[] = { bin, "--version", NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "samepage 0."));
	cmd_result_free(&r);
	snprintf(bin, sizeof(bin), "%s/usr/sbin/ksmtuned", tmp);
	const char *argv2[] = { bin, "--version", NULL };
	run_cmd(argv2, NULL, -1, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "ksmtuned (samepage) 0."));
	cmd_result_free(&r);
	remove_tree(tmp);
	free(tmp);
}

static void test_installed_library_builds_a_program(void **state)
{
	(void)state;
	char *tmp = make_tempdir();
	char prefix[PATH_MAX], csrc[PATH_MAX], exe[PATH_MAX], inc[PATH_MAX], lib[PATH_MAX], rpath[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "PREFIX=%s/p", tmp);
	make_install(prefix, NULL);
	snprintf(csrc, sizeof(csrc), "%s/t.c", tmp);
	write_file_p(csrc,
		     "#include <samepage.h>\n#include <stdio.h>\n"
		     "int main(void) { sp_ksm *k; if (sp_ksm_open(NULL, &k)) return 1;\n"
		     "  int p = sp_param_lookup(\"shm_pages_to_scan\");\n"
		     "  printf(\"%s %d %s\\n\", sp_version(), p, sp_param_describe(p)->name);\n"
		     "  sp_ksm_close(k); return 0; }\n");
	snprintf(exe, sizeof(exe), "%s/t", tmp);
	snprintf(inc, sizeof(inc), "-I%s/p/include", tmp);
	snprintf(lib, sizeof(lib), "-L%s/p/lib", tmp);
	snprintf(rpath, sizeof(rpath), "-Wl,-rpath,%s/p/lib", tmp);
	/* A sanitizer build's library needs the sanitizer runtime in the program too. */
	const char *cc[24] = { "cc", "-Wall", "-Werror", inc, csrc, "-o", exe, lib, rpath, "-lsamepage" };
	char san[256];
	snprintf(san, sizeof(san), "%s", getenv("SAMEPAGE_SAN") ? getenv("SAMEPAGE_SAN") : "");
	int n = 10;
	for (char *save = NULL, *t = strtok_r(san, " ", &save); t && n < 23; t = strtok_r(NULL, " ", &save))
		cc[n++] = t;
	cc[n] = NULL;
	struct cmd_result r;
	run_cmd(cc, NULL, -1, &r);
	if (r.status != 0)
		fail_msg("compiling against the installed header failed: %s", r.err);
	cmd_result_free(&r);
	const char *run[] = { exe, NULL };
	run_cmd(run, NULL, -1, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "pages_to_scan"));
	cmd_result_free(&r);

	/* Internal symbols stay internal. */
	char so[PATH_MAX];
	snprintf(so, sizeof(so), "%s/p/lib/libsamepage.so", tmp);
	const char *nm[] = { "nm", "-D", "--defined-only", so, NULL };
	run_cmd(nm, NULL, -1, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, " sp_ksm_open"));
	assert_null(strstr(r.out, "_sp_"));
	cmd_result_free(&r);
	remove_tree(tmp);
	free(tmp);
}

/* Run each Exec line of the installed unit as systemd would. */
static void run_unit_line(const char *unit, const char *key)
{
	FILE *f = fopen(unit, "r");
	assert_non_null(f);
	char line[512];
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, kl) != 0)
			continue;
		line[strcspn(line, "\n")] = 0;
		const char *argv[] = { "sh", "-c", line + kl, NULL };
		struct cmd_result r;
		run_cmd(argv, NULL, -1, &r);
		if (r.status != 0)
			fail_msg("%s%s failed (%d): %s", key, line + kl, r.status, r.err);
		cmd_result_free(&r);
	}
	fclose(f);
}

static void test_ksm_service_unit(void **state)
{
	(void)state;
	char *tmp = make_tempdir();
	char prefix[PATH_MAX], unit[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "PREFIX=%s/p", tmp);
	make_install(prefix, NULL);
	snprintf(unit, sizeof(unit), "%s/p/lib/systemd/system/ksm.service", tmp);
	if (access("/usr/bin/systemd-analyze", X_OK) == 0) {
		const char *argv[] = { "systemd-analyze", "verify", "--man=no", unit, NULL };
		struct cmd_result r;
		run_cmd(argv, NULL, -1, &r);
		if (r.status != 0)
			fail_msg("systemd-analyze verify: %s%s", r.out, r.err);
		cmd_result_free(&r);
		char tuned[PATH_MAX];
		snprintf(tuned, sizeof(tuned), "%s/p/lib/systemd/system/ksmtuned.service", tmp);
		const char *argv2[] = { "systemd-analyze", "verify", "--man=no", tuned, NULL };
		run_cmd(argv2, NULL, -1, &r);
		if (r.status != 0)
			fail_msg("systemd-analyze verify ksmtuned.service: %s%s", r.out, r.err);
		cmd_result_free(&r);
		char exporter[PATH_MAX];
		snprintf(exporter, sizeof(exporter), "%s/p/lib/systemd/system/samepage-exporter.service", tmp);
		const char *argv3[] = { "systemd-analyze", "verify", "--man=no", exporter, NULL };
		run_cmd(argv3, NULL, -1, &r);
		if (r.status != 0)
			fail_msg("systemd-analyze verify samepage-exporter.service: %s%s", r.out, r.err);
		cmd_result_free(&r);
	} else {
		print_message("systemd-analyze missing: unit syntax not verified\n");
	}
	if (ksm_present() && is_root()) {
		int lock = ksm_lock();
		char run[16];
		ksm_read_text("run", run, sizeof(run));
		run_unit_line(unit, "ExecStart=");
		assert_int_equal(ksm_read_num("run"), 1);
		run_unit_line(unit, "ExecStop=");
		assert_int_equal(ksm_read_num("run"), 0);
		assert_int_equal(ksm_write("run", run), 0);
		ksm_unlock(lock);
	} else {
		remove_tree(tmp);
		free(tmp);
		SKIP_BECAUSE("running the unit's commands needs root and KSM");
	}
	remove_tree(tmp);
	free(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_destdir_staging),
		cmocka_unit_test(test_installed_library_builds_a_program),
		cmocka_unit_test(test_ksm_service_unit),
	};
	return cmocka_run_group_tests_name("install", tests, NULL, NULL);
}
