/* SPDX-License-Identifier: MIT */
/* Reading the kernel's KSM state: /sys/kernel/mm/ksm and /proc/vmstat. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t _sp_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int _sp_ksm_path(const sp_ksm *k, const char *abs, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s%s", k->root, abs);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int _sp_ksm_file(const sp_ksm *k, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", k->sysfs, name);
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

int sp_ksm_open(const char *root, sp_ksm **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	sp_ksm *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	if (root && *root && strcmp(root, "/") != 0) {
		size_t l = strlen(root);
		while (l > 1 && root[l - 1] == '/')
			l--;
		if (l >= sizeof(k->root) - 32) {
			free(k);
			return -ENAMETOOLONG;
		}
		memcpy(k->root, root, l);
		k->root[l] = 0;
	}
	_sp_ksm_path(k, "/sys/kernel/mm/ksm", k->sysfs, sizeof(k->sysfs));
	struct stat st;
	k->available = stat(k->sysfs, &st) == 0 && S_ISDIR(st.st_mode);
	k->page_size = sysconf(_SC_PAGESIZE);
	*out = k;
	return 0;
}

void sp_ksm_close(sp_ksm *k)
{
	free(k);
}

bool sp_ksm_available(const sp_ksm *k)
{
	return k && k->available;
}

const char *sp_ksm_sysfs_dir(const sp_ksm *k)
{
	return k ? k->sysfs : NULL;
}

/* advisor_mode shows the active mode in brackets: "[none] scan-time". */
static int parse_advisor(const char *text, int64_t *out)
{
	const char *b = strchr(text, '[');
	if (!b)
		return -EIO;
	if (strncmp(b, "[none]", 6) == 0)
		*out = 0;
	else if (strncmp(b, "[scan-time]", 11) == 0)
		*out = 1;
	else
		return -EIO;
	return 0;
}

/* Value of `name` in a /proc/vmstat text, -ENOENT if absent. */
static int vmstat_find(const char *text, const char *name, int64_t *out)
{
	size_t l = strlen(name);
	for (const char *line = text; line && *line;) {
		if (strncmp(line, name, l) == 0 && line[l] == ' ') {
			char num[32];
			size_t i = 0;
			for (const char *c = line + l + 1; *c && *c != '\n' && i + 1 < sizeof(num); c++)
				num[i++] = *c;
			num[i] = 0;
			return _sp_parse_i64(num, out) ? -EIO : 0;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -ENOENT;
}

static int read_vmstat(sp_ksm *k, char *buf, size_t len)
{
	char path[PATH_MAX];
	int r = _sp_ksm_path(k, "/proc/vmstat", path, sizeof(path));
	if (r)
		return r;
	ssize_t n = _sp_read_file(path, buf, len);
	return n < 0 ? (int)n : 0;
}

static int read_sysfs_param(sp_ksm *k, sp_param p, int64_t *out)
{
	const sp_param_info *in = sp_param_describe(p);
	char path[PATH_MAX], buf[128];
	int r = _sp_ksm_file(k, in->name, path, sizeof(path));
	if (r)
		return r;
	ssize_t n = _sp_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	if (in->flags & SP_PF_ADVISOR)
		return parse_advisor(buf, out);
	return _sp_parse_i64(buf, out) ? -EIO : 0;
}

int sp_ksm_read(sp_ksm *k, sp_param p, int64_t *out)
{
	const sp_param_info *in = sp_param_describe(p);
	if (!k || !in || !out)
		return -EINVAL;
	if (!k->available)
		return -ENODEV;
	if (in->flags & SP_PF_ENGINE)
		return -ENOENT;
	if (in->flags & SP_PF_VMSTAT) {
		char buf[16384];
		int r = read_vmstat(k, buf, sizeof(buf));
		return r ? r : vmstat_find(buf, in->name, out);
	}
	return read_sysfs_param(k, p, out);
}

int sp_ksm_sample(sp_ksm *k, sp_sample *out)
{
	if (!k || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->page_size = k->page_size;
	if (!k->available)
		return -ENODEV;
	char vmstat[16384];
	int have_vmstat = read_vmstat(k, vmstat, sizeof(vmstat)) == 0;
	out->when_ns = _sp_now_ns();
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		const sp_param_info *in = sp_param_describe(p);
		int64_t v;
		int r;
		if (in->flags & SP_PF_ENGINE)
			continue;  /* the kernel has no such counter */
		if (in->flags & SP_PF_VMSTAT)
			r = have_vmstat ? vmstat_find(vmstat, in->name, &v) : -ENOENT;
		else
			r = read_sysfs_param(k, p, &v);
		if (r == 0) {
			out->value[p] = v;
			out->present |= 1ull << p;
		} else if (r != -ENOENT) {
			return r;
		}
	}
	return 0;
}

/* -------------------------------------------------- writing: sp_ksm_set */

static int ksm_read_op(void *ctx, int p, int64_t *v)
{
	return sp_ksm_read(ctx, p, v);
}

static int ksm_write_op(void *ctx, int p, int64_t v)
{
	char path[PATH_MAX], text[32];
	int r = _sp_ksm_file(ctx, sp_param_describe(p)->name, path, sizeof(path));
	if (r)
		return r;
	sp_param_format(p, v, text, sizeof(text));
	return _sp_write_file(path, text);
}

static int ksm_may_write_op(void *ctx, int p, sp_diag *d)
{
	char path[PATH_MAX];
	_sp_ksm_file(ctx, sp_param_describe(p)->name, path, sizeof(path));
	int r = _sp_prim_access(path, W_OK);
	if (r)
		_sp_diag(d, r, p, "cannot write %s: %s%s", path, sp_strerror(r),
			 (r == -EACCES || r == -EPERM) ? " (changing KSM knobs needs root)" : "");
	return r;
}

static const struct sp_set_ops ksm_ops = {
	.what = "this kernel",
	.read = ksm_read_op,
	.write = ksm_write_op,
	.may_write = ksm_may_write_op,
};

int sp_ksm_set(sp_ksm *k, const sp_setting *set, size_t n, unsigned flags, sp_diag *d)
{
	_sp_diag_reset(d);
	if (!k) {
		_sp_diag(d, -EINVAL, -1, "invalid arguments (no handle)");
		return -EINVAL;
	}
	if (!k->available) {
		_sp_diag(d, -ENODEV, -1, "this kernel has no KSM: %s does not exist (CONFIG_KSM is off)",
			 k->sysfs);
		return -ENODEV;
	}
	return _sp_set_apply(&ksm_ops, k, set, n, flags, d);
}

int sp_ksm_set_run(sp_ksm *k, int run, sp_diag *d)
{
	char v[8];
	snprintf(v, sizeof(v), "%d", run);
	sp_setting s = { .name = "run", .value = v };
	return sp_ksm_set(k, &s, 1, 0, d);
}
