/* SPDX-License-Identifier: MIT */
/*
 * The engine's two userfaultfds and PAGEMAP_SCAN.
 *
 * A range can belong to one userfaultfd only, and one uffd cannot do both
 * asynchronous write tracking and blocking write protection, so:
 *  - track:  WP_ASYNC (+ WP_UNPOPULATED): the kernel notes writes itself,
 *            PAGEMAP_SCAN(PAGE_IS_WRITTEN) reads and re-arms them;
 *  - freeze: plain WP: a writer blocks until we unprotect or wake. Pages
 *            move to it only for the few microseconds of a merge.
 * Without privilege the uffds are UFFD_USER_MODE_ONLY: a system call that
 * writes into a page while it is frozen then fails with EFAULT instead of
 * waiting (see docs/design.md).
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static int open_uffd(uint64_t features, bool *user_mode_only)
{
	/* Try full mode first (root, CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1). */
	int fd = _sp_prim_userfaultfd(O_CLOEXEC | O_NONBLOCK);
	*user_mode_only = false;
	if (fd == -EPERM) {
		fd = _sp_prim_userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		*user_mode_only = true;
	}
	if (fd < 0)
		return fd;
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int r = _sp_prim_ioctl(fd, UFFDIO_API, &api);
	if (r) {
		_sp_prim_close(fd);
		return r;
	}
	return fd;
}

int _sp_uffd_open(struct sp_uffd *u, bool want_tracking)
{
	memset(u, 0, sizeof(*u));
	u->track = u->freeze = u->pagemap = -1;
	bool umo;
	int fd = open_uffd(0, &umo);
	if (fd < 0)
		return fd;
	u->freeze = fd;
	u->user_mode_only = umo;
	if (!want_tracking)
		return 0;
	fd = open_uffd(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, &umo);
	if (fd < 0)
		return 0;  /* no WP_ASYNC (before 6.7): the checksum rule takes over */
	int pm = _sp_prim_open("/proc/self/pagemap", O_RDONLY, 0);
	if (pm < 0) {
		_sp_prim_close(fd);
		return 0;  /* the caller finds out and says why */
	}
	u->track = fd;
	u->pagemap = pm;
	/* PAGEMAP_SCAN exists? An empty range answers 0 if it does. */
	struct page_region one;
	long n = _sp_pagemap_scan(u, 0, 0, 0, 0, 0, 0, 0, &one, 1, NULL);
	if (n < 0) {
		_sp_prim_close(u->track);
		_sp_prim_close(u->pagemap);
		u->track = u->pagemap = -1;
		return 0;
	}
	u->write_tracking = true;
	return 0;
}

void _sp_uffd_close(struct sp_uffd *u)
{
	if (u->track >= 0)
		_sp_prim_close(u->track);
	if (u->freeze >= 0)
		_sp_prim_close(u->freeze);
	if (u->pagemap >= 0)
		_sp_prim_close(u->pagemap);
	u->track = u->freeze = u->pagemap = -1;
}

int _sp_uffd_register(int fd, uintptr_t start, size_t len, bool wp)
{
	struct uffdio_register reg = {
		.range = { .start = start, .len = len },
		.mode = wp ? UFFDIO_REGISTER_MODE_WP : UFFDIO_REGISTER_MODE_MISSING,
	};
	return _sp_prim_ioctl(fd, UFFDIO_REGISTER, &reg);
}

int _sp_uffd_unregister(int fd, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };
	return _sp_prim_ioctl(fd, UFFDIO_UNREGISTER, &r);
}

int _sp_uffd_wp(int fd, uintptr_t start, size_t len, bool on)
{
	struct uffdio_writeprotect w = {
		.range = { .start = start, .len = len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	return _sp_prim_ioctl(fd, UFFDIO_WRITEPROTECT, &w);
}

int _sp_uffd_wake(int fd, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };
	return _sp_prim_ioctl(fd, UFFDIO_WAKE, &r);
}

long _sp_pagemap_scan(struct sp_uffd *u, uintptr_t start, uintptr_t end, uint64_t flags,
		      uint64_t cat_mask, uint64_t cat_inverted, uint64_t cat_anyof,
		      uint64_t return_mask, struct page_region *vec, size_t vlen,
		      uintptr_t *walk_end)
{
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.flags = flags,
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = vlen,
		.category_inverted = cat_inverted,
		.category_mask = cat_mask,
		.category_anyof_mask = cat_anyof,
		.return_mask = return_mask,
	};
	int r = _sp_prim_ioctl(u->pagemap, PAGEMAP_SCAN, &a);
	if (walk_end)
		*walk_end = a.walk_end;
	return r;
}
