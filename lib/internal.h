/* SPDX-License-Identifier: MIT */
/* Declarations shared by the library's files; never installed. */
#ifndef SP_INTERNAL_H
#define SP_INTERNAL_H

#include "samepage.h"
#include "prim.h"
#include "compat.h"

#include <limits.h>

#define SP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* sizeof(struct ksm_rmap_item) on 64-bit kernels: the kernel's own figure
 * for what one scanned page costs (Documentation/admin-guide/mm/ksm.rst). */
#define SP_RMAP_ITEM_BYTES 64

struct sp_ksm {
	char root[PATH_MAX];      /* "" for the live system, else a prefix */
	char sysfs[PATH_MAX];     /* <root>/sys/kernel/mm/ksm */
	bool available;
	long page_size;
};

/* Fill d (if not NULL) with err, param and a formatted message. */
void _sp_diag(sp_diag *d, int err, int param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Decimal integer with the kernel's kstrto* rules. */
int _sp_parse_i64(const char *text, int64_t *out);

/* Path of a file under the handle's root ("/proc/vmstat" -> "<root>/proc/vmstat"). */
int _sp_ksm_path(const sp_ksm *k, const char *abs, char *buf, size_t len);

/* Path of a KSM sysfs file. */
int _sp_ksm_file(const sp_ksm *k, const char *name, char *buf, size_t len);

/* Where a knob transaction reads and writes (lib/set.c). */
struct sp_set_ops {
	const char *what;  /* "this kernel", "the user-space engine": for messages */
	int (*read)(void *ctx, int p, int64_t *v);        /* -ENOENT if absent */
	int (*write)(void *ctx, int p, int64_t v);
	int (*may_write)(void *ctx, int p, sp_diag *d);   /* NULL: always allowed */
};

/* Validate, order, write and roll back a list of settings (see sp_ksm_set). */
int _sp_set_apply(const struct sp_set_ops *ops, void *ctx, const sp_setting *set, size_t n,
		  unsigned flags, sp_diag *d);
void _sp_diag_reset(sp_diag *d);

/* Remember why a call failed, for sp_last_error(). */
void _sp_set_last_error(const char *msg);

/* Monotonic clock in nanoseconds. */
int64_t _sp_now_ns(void);

#endif
