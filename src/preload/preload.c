/* SPDX-License-Identifier: MIT */
/*
 * libsamepage-preload.so: user-space merging for unmodified programs.
 *
 *   LD_PRELOAD=libsamepage-preload.so program     (or: samepage run --user-engine)
 *
 * The program's own madvise(MADV_MERGEABLE/UNMERGEABLE) calls (QEMU makes
 * them for guest RAM) register memory with a shared engine, which merges
 * through samepaged with the other processes of the user's trust domain.
 * SAMEPAGE_MERGE_ANY=1 registers all private anonymous memory of at least
 * SAMEPAGE_MERGE_ANY_MIN bytes (default 1 MiB), like PR_SET_MEMORY_MERGE.
 *
 * madvise, munmap, mremap, mprotect and mmap are interposed to keep libc
 * semantics on merged memory. Anything the engine does not manage goes
 * straight to the kernel, and so do calls made from inside the engine.
 */
#include <samepage.h>

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#ifndef MADV_MERGEABLE
#define MADV_MERGEABLE 12
#define MADV_UNMERGEABLE 13
#endif

static sp_engine *engine;

static bool managed(void)
{
	return engine && !sp_in_engine();
}

/* libc's convention at this edge: -1 and errno. */
static int ret(int r)
{
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return 0;
}

static size_t env_size(const char *name, size_t def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (*end == 'k' || *end == 'K')
		x <<= 10;
	else if (*end == 'm' || *end == 'M')
		x <<= 20;
	else if (*end == 'g' || *end == 'G')
		x <<= 30;
	return (size_t)x;
}

__attribute__((constructor)) static void preload_init(void)
{
	const char *off = getenv("SAMEPAGE_PRELOAD");
	if (off && strcmp(off, "0") == 0)
		return;
	sp_engine *e;
	if (sp_engine_new(SP_ENGINE_SHARED, &e) != 0)
		return;  /* no userfaultfd here: the program runs unchanged */
	engine = e;
	const char *any = getenv("SAMEPAGE_MERGE_ANY");
	if (any && strcmp(any, "1") == 0)
		sp_engine_merge_any(e, true, env_size("SAMEPAGE_MERGE_ANY_MIN", 1u << 20));
}

__attribute__((destructor)) static void preload_fini(void)
{
	/* Process exit: the kernel tears everything down; the daemon notices
	 * the closed socket. Nothing to unmerge. */
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (!managed())
		return (int)syscall(SYS_madvise, addr, len, advice);
	int r = sp_madvise(engine, addr, len, advice);
	/* The kernel ignores MADV_MERGEABLE on memory it cannot merge; so do we. */
	if (r == -EINVAL && advice == MADV_MERGEABLE && ((uintptr_t)addr & 4095) == 0)
		r = 0;
	return ret(r);
}

EXPORT int munmap(void *addr, size_t len)
{
	if (!managed())
		return (int)syscall(SYS_munmap, addr, len);
	return ret(sp_munmap(engine, addr, len));
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	if (!managed())
		return (int)syscall(SYS_mprotect, addr, len, prot);
	return ret(sp_mprotect(engine, addr, len, prot));
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!managed() || !(flags & MAP_FIXED))
		return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	void *out;
	int r = sp_mmap(engine, addr, len, prot, flags, fd, off, &out);
	if (r) {
		errno = -r;
		return MAP_FAILED;
	}
	return out;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (!managed())
		return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	void *out;
	int r = sp_mremap(engine, old, old_len, new_len, flags, new_addr, &out);
	if (r) {
		errno = -r;
		return MAP_FAILED;
	}
	return out;
}
