/* SPDX-License-Identifier: MIT */
/*
 * A domain's counters in a page of shared memory: control tools read them
 * the way ksm's sysfs files are read, without waking samepaged. A reading
 * over the socket woke the daemon each time (~70 us of its CPU with the
 * wake-ups), so a live view or a benchmark polling every 10 ms was charged
 * to the merger; sysfs costs ksmd nothing.
 *
 * The daemon alone writes the page (a sequence count makes a reading
 * consistent); readers get a read-only reopening of a memfd sealed against
 * writes, growth and shrinking, so no reader can change what the others see.
 */
#include "internal.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010  /* 5.1 */
#endif

struct sp_statpage {
	_Atomic uint32_t seq;   /* odd while the daemon writes */
	uint32_t size;          /* of st: a reader of another build refuses a mismatch */
	struct sp_stats st;
};

#define STATPAGE_BYTES 4096
_Static_assert(sizeof(struct sp_statpage) <= STATPAGE_BYTES, "statpage");

int _sp_statpage_new(struct sp_statpage **out, int *rofd)
{
	*out = NULL;
	*rofd = -1;
	int fd = _sp_prim_memfd_create("samepaged-stats", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return fd;
	int r = _sp_prim_ftruncate(fd, STATPAGE_BYTES);
	void *p = NULL;
	if (!r) {
		r = _sp_prim_mmap(NULL, STATPAGE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, &p);
		if (r)
			p = NULL;
	}
	/* Our writable mapping stays; from now on nobody can make another,
	 * write(), punch, truncate or grow it (5.1 for the first). */
	if (!r)
		r = _sp_prim_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL);
	int ro = -1;
	if (!r) {
		ro = _sp_prim_reopen_rdonly(fd);
		if (ro < 0)
			r = ro;
	}
	_sp_prim_close(fd);
	if (r) {
		if (p)
			_sp_prim_munmap(p, STATPAGE_BYTES);
		return r;
	}
	struct sp_statpage *sp = p;
	sp->size = sizeof(sp->st);
	*out = sp;
	*rofd = ro;
	return 0;
}

void _sp_statpage_free(struct sp_statpage *p, int rofd)
{
	if (p)
		_sp_prim_munmap(p, STATPAGE_BYTES);
	if (rofd >= 0)
		_sp_prim_close(rofd);
}

void _sp_statpage_write(struct sp_statpage *p, const struct sp_stats *st)
{
	uint32_t s = atomic_load_explicit(&p->seq, memory_order_relaxed);
	atomic_store_explicit(&p->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	memcpy(&p->st, st, sizeof(*st));
	atomic_store_explicit(&p->seq, s + 2, memory_order_release);
}

int _sp_statpage_map(int fd, const struct sp_statpage **out)
{
	*out = NULL;
	struct stat sb;
	int r = _sp_prim_fstat(fd, &sb);
	if (r)
		return r;
	if (!S_ISREG(sb.st_mode) || sb.st_size != STATPAGE_BYTES)
		return -EPROTO;
	/* A page nobody may write but samepaged: a peer that is not the
	 * daemon cannot hand us a page it keeps changing at will. */
	int seals = _sp_prim_fcntl(fd, F_GET_SEALS, 0);
	int want = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE;
	if (seals < 0 || (seals & want) != want)
		return -EPROTO;
	void *p;
	r = _sp_prim_mmap(NULL, STATPAGE_BYTES, PROT_READ, MAP_SHARED, fd, 0, &p);
	if (r)
		return r;
	const struct sp_statpage *sp = p;
	if (sp->size != sizeof(sp->st)) {
		_sp_prim_munmap(p, STATPAGE_BYTES);
		return -EPROTO;
	}
	*out = sp;
	return 0;
}

void _sp_statpage_unmap(const struct sp_statpage *p)
{
	if (p)
		_sp_prim_munmap((void *)p, STATPAGE_BYTES);
}

int _sp_statpage_read(const struct sp_statpage *p, struct sp_stats *out)
{
	struct sp_statpage *sp = (struct sp_statpage *)p;  /* (read only) */
	for (int tries = 0; tries < 1000; tries++) {
		uint32_t s0 = atomic_load_explicit(&sp->seq, memory_order_acquire);
		if (s0 & 1)
			continue;
		memcpy(out, (const void *)&p->st, sizeof(*out));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&sp->seq, memory_order_relaxed) == s0)
			return s0 ? 0 : -EAGAIN;  /* 0: never written yet */
	}
	return -EAGAIN;
}
