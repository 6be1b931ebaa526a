/* SPDX-License-Identifier: MIT */
/*
 * The primitive layer: every system call the library makes goes through
 * here. Contract for every function: return >= 0 on success and a negative
 * errno on failure; errno is not used by callers.
 *
 * This is also the fault-injection seam. SAMEPAGE_FAULT in the environment
 * holds a comma-separated list of  OP:ERRNO:NTH[+]  where OP is the name
 * after "_sp_prim_" (open, read, write, ...), ERRNO a symbolic name (EIO,
 * ENOMEM, EBUSY, ...) or number, NTH the 1-based call that fails, and a
 * trailing '+' makes every later call fail too. ERRNO may instead be
 * SLEEP<us>: the call is delayed that long and then made (to widen a race
 * window in a test). Examples:
 *   SAMEPAGE_FAULT=write:EIO:2   fails the second write with EIO.
 *   SAMEPAGE_FAULT=mmap:SLEEP2000:1+   makes every mmap 2 ms late.
 */
#ifndef SP_PRIM_H
#define SP_PRIM_H

#include <stddef.h>
#include <sys/types.h>

int _sp_prim_open(const char *path, int flags, mode_t mode);
/* A read-only descriptor of what fd opens (through /proc/self/fd): handed
 * to peers that may map a file, never change it. */
int _sp_prim_reopen_rdonly(int fd);
int _sp_prim_close(int fd);
ssize_t _sp_prim_read(int fd, void *buf, size_t len);
ssize_t _sp_prim_pread(int fd, void *buf, size_t len, off_t off);
ssize_t _sp_prim_write(int fd, const void *buf, size_t len);
ssize_t _sp_prim_pwrite(int fd, const void *buf, size_t len, off_t off);
int _sp_prim_access(const char *path, int mode);
int _sp_prim_prctl(int op, unsigned long a2, unsigned long a3,
		   unsigned long a4, unsigned long a5);

int _sp_prim_ioctl(int fd, unsigned long req, void *arg);
int _sp_prim_userfaultfd(int flags);
int _sp_prim_memfd_create(const char *name, unsigned flags);
int _sp_prim_ftruncate(int fd, off_t len);
/* *out receives the mapping; returns 0 or -errno. */
int _sp_prim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **out);
int _sp_prim_munmap(void *addr, size_t len);
int _sp_prim_mremap(void *old, size_t oldlen, size_t newlen, int flags, void *newaddr, void **out);
int _sp_prim_madvise(void *addr, size_t len, int advice);
/* process_madvise(2) over n ranges of {addr, len} pairs: the bytes advised
 * (fewer than asked when a range failed after others were done) or -errno. */
struct iovec;
ssize_t _sp_prim_process_madvise(int pidfd, const struct iovec *iov, size_t n, int advice);
int _sp_prim_pidfd_open(pid_t pid);
/* A non-blocking eventfd (counter 0), or -errno. */
int _sp_prim_eventfd(void);
int _sp_prim_mprotect(void *addr, size_t len, int prot);
int _sp_prim_fallocate(int fd, int mode, off_t off, off_t len);
struct stat;
int _sp_prim_fstat(int fd, struct stat *st);
int _sp_prim_fcntl(int fd, int cmd, long arg);
int _sp_prim_mbind(void *addr, size_t len, int mode, const unsigned long *mask, unsigned long maxnode);
/* Node of each page (move_pages(2) without moving): status[i] >= 0 is the node. */
int _sp_prim_page_nodes(unsigned long count, void **pages, int *status);

/* Read a whole small file (sysfs, procfs) into buf, NUL-terminated.
 * Returns the length or a negative errno; -EFBIG if it does not fit. */
ssize_t _sp_read_file(const char *path, char *buf, size_t len);

/* Write text to a sysfs file in one write(2), as `echo` would. */
int _sp_write_file(const char *path, const char *text);

/* Used by the fault-injection layer; returns 0 or a negative errno to inject. */
int _sp_fault(const char *op);

/* Tests: read SAMEPAGE_FAULT again (call counts restart from zero). */
void _sp_fault_reload(void);
/* Tests: these rules instead, set from any thread (NULL: none). */
void _sp_fault_set(const char *rules);

#endif
