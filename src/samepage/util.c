/* SPDX-License-Identifier: MIT */
/* Messages, units and exit codes shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void vmsg(const struct cli *c, const char *kind, const char *fmt, va_list ap)
{
	fprintf(stderr, "samepage: ");
	if (c && c->cmd)
		fprintf(stderr, "%s: ", c->cmd);
	if (kind)
		fprintf(stderr, "%s", kind);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int cli_fail(const struct cli *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(c, NULL, fmt, ap);
	va_end(ap);
	return code;
}

void cli_note(const struct cli *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(c, "note: ", fmt, ap);
	va_end(ap);
}

sp_ksm *cli_open_ksm(const struct cli *c, bool need_ksm, int *code)
{
	sp_ksm *k = NULL;
	int r = sp_ksm_open(c->root, &k);
	if (r) {
		*code = cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot open KSM view: %s", sp_strerror(r));
		return NULL;
	}
	if (need_ksm && !sp_ksm_available(k)) {
		*code = cli_fail(c, EXIT_NOT_SUPPORTED,
				 "KSM is not supported by this kernel: %s does not exist (CONFIG_KSM is off)",
				 sp_ksm_sysfs_dir(k));
		sp_ksm_close(k);
		return NULL;
	}
	return k;
}

void human_bytes(int64_t bytes, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	const char *sign = bytes < 0 ? "-" : "";
	double v = bytes < 0 ? -(double)bytes : (double)bytes;
	size_t u = 0;
	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%s%" PRId64 " B", sign, bytes < 0 ? -bytes : bytes);
	else
		snprintf(buf, len, "%s%.1f %s", sign, v, units[u]);
}

int exit_code_for(int err)
{
	switch (err) {
	case 0:
		return EXIT_OK;
	case -ENODEV:
	case -EOPNOTSUPP:
		return EXIT_NOT_SUPPORTED;
	case -ENOENT:
	case -EINVAL:
	case -ERANGE:
	case -EPERM:
	case -EACCES:
	case -EBUSY:
	case -EROFS:
		return EXIT_REFUSED;
	default:
		return EXIT_FAILURE_RUNTIME;
	}
}

void printable_comm(const char *comm, char *out, size_t len)
{
	size_t i = 0;
	for (; comm[i] && i + 1 < len; i++)
		out[i] = comm[i] >= 0x20 && comm[i] < 0x7f ? comm[i] : '?';
	out[i] = 0;
}

int cli_seconds_arg(const struct cli *c, const char *opt, const char *arg, double min, double max,
		    double *out)
{
	char *end;
	errno = 0;
	double v = strtod(arg, &end);
	if (errno || end == arg || *end || !(v >= min && v <= max))  /* NaN fails too */
		return cli_fail(c, EXIT_REFUSED, "%s takes seconds from %.10g to %.10g, not '%s'", opt, min, max,
				arg);
	*out = v;
	return 0;
}

int cli_engine_arg(const struct cli *c, const char *arg, bool *user)
{
	if (strcmp(arg, "kernel") == 0)
		*user = false;
	else if (strcmp(arg, "user") == 0)
		*user = true;
	else
		return cli_fail(c, EXIT_REFUSED, "--engine takes kernel or user, not '%s'", arg);
	return 0;
}

sp_ctl *cli_open_ctl(const struct cli *c, char *path, size_t len, int *code)
{
	char p[108];
	sp_socket_path(false, p, sizeof(p));
	sp_ctl *ctl = NULL;
	int r = sp_ctl_open(NULL, &ctl);
	if (r) {
		*code = cli_fail(c, EXIT_NOT_RUNNING,
				 "no samepaged is running for you (%s: %s): start it with `samepaged &` or "
				 "`systemctl --user start samepaged`", p, sp_strerror(r));
		return NULL;
	}
	if (path)
		snprintf(path, len, "%s", p);
	return ctl;
}
