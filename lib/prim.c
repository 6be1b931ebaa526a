/* SPDX-License-Identifier: MIT */
/* Thin system-call layer with fault injection (see prim.h). */
#include "prim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---------------------------------------------------------------- faults */

#define SP_MAX_FAULTS 8

struct sp_fault_rule {
	char op[16];
	int err;            /* positive errno, or 0 with delay_us */
	unsigned delay_us;  /* SLEEP<us>: the call is made late instead of failing */
	unsigned long nth;  /* 1-based */
	int sticky;         /* fail from nth on */
	unsigned long calls;
};

static struct sp_fault_rule fault_rules[SP_MAX_FAULTS];
static int fault_count = -1;   /* -1: environment not read yet */
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct { const char *name; int err; } errno_names[] = {
	{ "EPERM", EPERM }, { "ENOENT", ENOENT }, { "EINTR", EINTR },
	{ "EIO", EIO }, { "EBADF", EBADF }, { "EAGAIN", EAGAIN },
	{ "ENOMEM", ENOMEM }, { "EACCES", EACCES }, { "EFAULT", EFAULT },
	{ "EBUSY", EBUSY }, { "EEXIST", EEXIST }, { "EINVAL", EINVAL },
	{ "ENFILE", ENFILE }, { "EMFILE", EMFILE }, { "ENOSPC", ENOSPC },
	{ "ERANGE", ERANGE }, { "ENOSYS", ENOSYS }, { "ENODEV", ENODEV },
	{ "EROFS", EROFS }, { "EPIPE", EPIPE }, { "ESRCH", ESRCH },
	{ "EOVERFLOW", EOVERFLOW }, { "ECONNRESET", ECONNRESET }, { "ETIMEDOUT", ETIMEDOUT },
};

static int parse_errno(const char *s)
{
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (strcmp(s, errno_names[i].name) == 0)
			return errno_names[i].err;
	char *end;
	long v = strtol(s, &end, 10);
	return (*s && !*end && v > 0 && v < 4096) ? (int)v : 0;
}

/* Reads SAMEPAGE_FAULT once; malformed rules are ignored (tests only). */
static void fault_load_from(const char *env)
{
	int count = 0;
	if (!env) {
		__atomic_store_n(&fault_count, 0, __ATOMIC_RELEASE);
		return;
	}
	char buf[256];
	strncpy(buf, env, sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok && count < SP_MAX_FAULTS;
	     tok = strtok_r(NULL, ",", &save)) {
		char *c1 = strchr(tok, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c1 || !c2)
			continue;
		*c1 = 0;
		*c2 = 0;
		struct sp_fault_rule *r = &fault_rules[count];
		memset(r, 0, sizeof(*r));
		strncpy(r->op, tok, sizeof(r->op) - 1);
		if (strncmp(c1 + 1, "SLEEP", 5) == 0)
			r->delay_us = (unsigned)strtoul(c1 + 6, NULL, 10);
		else
			r->err = parse_errno(c1 + 1);
		size_t l = strlen(c2 + 1);
		if (l && c2[l] == '+') {
			r->sticky = 1;
			c2[l] = 0;
		}
		r->nth = strtoul(c2 + 1, NULL, 10);
		if ((r->err || (r->delay_us && r->delay_us <= 1000000)) && r->nth)
			count++;
		else  /* a typo must not silently disable the test's fault */
			fprintf(stderr, "samepage: ignoring malformed SAMEPAGE_FAULT rule '%s'\n", tok);
	}
	__atomic_store_n(&fault_count, count, __ATOMIC_RELEASE);
}

static void fault_load(void)
{
	fault_load_from(getenv("SAMEPAGE_FAULT"));
}

void _sp_fault_reload(void)
{
	pthread_mutex_lock(&fault_lock);
	memset(fault_rules, 0, sizeof(fault_rules));
	fault_load();
	pthread_mutex_unlock(&fault_lock);
}

void _sp_fault_set(const char *rules)
{
	pthread_mutex_lock(&fault_lock);
	memset(fault_rules, 0, sizeof(fault_rules));
	fault_load_from(rules);
	pthread_mutex_unlock(&fault_lock);
}

int _sp_fault(const char *op)
{
	if (__atomic_load_n(&fault_count, __ATOMIC_ACQUIRE) == 0)
		return 0;
	int ret = 0;
	unsigned delay = 0;
	pthread_mutex_lock(&fault_lock);
	if (fault_count < 0)
		fault_load();
	for (int i = 0; i < fault_count; i++) {
		struct sp_fault_rule *r = &fault_rules[i];
		if (strcmp(r->op, op) != 0)
			continue;
		r->calls++;
		if (r->calls == r->nth || (r->sticky && r->calls > r->nth)) {
			if (r->err)
				ret = -r->err;
			else
				delay += r->delay_us;
		}
	}
	pthread_mutex_unlock(&fault_lock);
	if (delay && !ret) {
		/* Widens a race window for a test: the call itself still happens. */
		struct timespec ts = { delay / 1000000, (long)(delay % 1000000) * 1000 };
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
	return ret;
}

#define FAULT(op)                         \
	do {                              \
		int _f = _sp_fault(op);   \
		if (_f)                   \
			return _f;        \
	} while (0)

/* ------------------------------------------------------------ primitives */

int _sp_prim_open(const char *path, int flags, mode_t mode)
{
	FAULT("open");
	int fd = open(path, flags | O_CLOEXEC, mode);
	return fd < 0 ? -errno : fd;
}

int _sp_prim_reopen_rdonly(int fd)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return _sp_prim_open(path, O_RDONLY, 0);
}

int _sp_prim_close(int fd)
{
	return close(fd) < 0 ? -errno : 0;
}

ssize_t _sp_prim_read(int fd, void *buf, size_t len)
{
	FAULT("read");
	ssize_t r;
	do
		r = read(fd, buf, len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

ssize_t _sp_prim_pread(int fd, void *buf, size_t len, off_t off)
{
	FAULT("pread");
	ssize_t r;
	do
		r = pread(fd, buf, len, off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

ssize_t _sp_prim_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	FAULT("pwrite");
	ssize_t r;
	do
		r = pwrite(fd, buf, len, off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

ssize_t _sp_prim_write(int fd, const void *buf, size_t len)
{
	FAULT("write");
	ssize_t r;
	do
		r = write(fd, buf, len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

int _sp_prim_access(const char *path, int mode)
{
	FAULT("access");
	return access(path, mode) < 0 ? -errno : 0;
}

int _sp_prim_prctl(int op, unsigned long a2, unsigned long a3,
		   unsigned long a4, unsigned long a5)
{
	FAULT("prctl");
	int r = prctl(op, a2, a3, a4, a5);
	return r < 0 ? -errno : r;
}

int _sp_prim_ioctl(int fd, unsigned long req, void *arg)
{
	FAULT("ioctl");
	int r;
	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

int _sp_prim_userfaultfd(int flags)
{
	FAULT("userfaultfd");
	long fd = syscall(SYS_userfaultfd, flags);
	return fd < 0 ? -errno : (int)fd;
}

int _sp_prim_memfd_create(const char *name, unsigned flags)
{
	FAULT("memfd_create");
	int fd = memfd_create(name, flags);
	return fd < 0 ? -errno : fd;
}

int _sp_prim_ftruncate(int fd, off_t len)
{
	FAULT("ftruncate");
	return ftruncate(fd, len) < 0 ? -errno : 0;
}

/* Memory calls go straight to the kernel: the preload library interposes
 * mmap, munmap, mremap and madvise, and the engine must not call itself. */
int _sp_prim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **out)
{
	FAULT("mmap");
	long p = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	if ((void *)p == MAP_FAILED)
		return -errno;
	*out = (void *)p;
	return 0;
}

int _sp_prim_munmap(void *addr, size_t len)
{
	FAULT("munmap");
	return syscall(SYS_munmap, addr, len) < 0 ? -errno : 0;
}

int _sp_prim_mremap(void *old, size_t oldlen, size_t newlen, int flags, void *newaddr, void **out)
{
	FAULT("mremap");
	long p = syscall(SYS_mremap, old, oldlen, newlen, flags, newaddr);
	if ((void *)p == MAP_FAILED)
		return -errno;
	*out = (void *)p;
	return 0;
}

int _sp_prim_mprotect(void *addr, size_t len, int prot)
{
	FAULT("mprotect");
	return syscall(SYS_mprotect, addr, len, prot) < 0 ? -errno : 0;
}

int _sp_prim_madvise(void *addr, size_t len, int advice)
{
	FAULT("madvise");
	return syscall(SYS_madvise, addr, len, advice) < 0 ? -errno : 0;
}

#ifndef SYS_process_madvise
#define SYS_process_madvise 440  /* 5.10 */
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  /* 5.3 */
#endif

ssize_t _sp_prim_process_madvise(int pidfd, const struct iovec *iov, size_t n, int advice)
{
	FAULT("process_madvise");
	long r = syscall(SYS_process_madvise, pidfd, iov, n, advice, 0);
	return r < 0 ? -errno : r;
}

int _sp_prim_pidfd_open(pid_t pid)
{
	FAULT("pidfd_open");
	long fd = syscall(SYS_pidfd_open, pid, 0);
	return fd < 0 ? -errno : (int)fd;
}

int _sp_prim_eventfd(void)
{
	FAULT("eventfd");
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

int _sp_prim_fallocate(int fd, int mode, off_t off, off_t len)
{
	FAULT("fallocate");
	return fallocate(fd, mode, off, len) < 0 ? -errno : 0;
}

int _sp_prim_fstat(int fd, struct stat *st)
{
	FAULT("fstat");
	return fstat(fd, st) < 0 ? -errno : 0;
}

int _sp_prim_fcntl(int fd, int cmd, long arg)
{
	FAULT("fcntl");
	int r = fcntl(fd, cmd, arg);
	return r < 0 ? -errno : r;
}

int _sp_prim_mbind(void *addr, size_t len, int mode, const unsigned long *mask, unsigned long maxnode)
{
	FAULT("mbind");
	long r = syscall(SYS_mbind, addr, len, mode, mask, maxnode, 0);
	return r < 0 ? -errno : 0;
}

int _sp_prim_page_nodes(unsigned long count, void **pages, int *status)
{
	FAULT("move_pages");
	long r = syscall(SYS_move_pages, 0, count, pages, NULL, status, 0);
	return r < 0 ? -errno : 0;
}

/* --------------------------------------------------------------- helpers */

ssize_t _sp_read_file(const char *path, char *buf, size_t len)
{
	int fd = _sp_prim_open(path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	size_t have = 0;
	ssize_t r = 0;
	while (have + 1 < len) {
		r = _sp_prim_read(fd, buf + have, len - 1 - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	_sp_prim_close(fd);
	if (r < 0)
		return r;
	buf[have] = 0;
	if (have + 1 >= len)
		return -EFBIG;
	return (ssize_t)have;
}

int _sp_write_file(const char *path, const char *text)
{
	int fd = _sp_prim_open(path, O_WRONLY | O_TRUNC, 0);  /* as the shell's > does */
	if (fd < 0)
		return fd;
	size_t len = strlen(text);
	ssize_t r = _sp_prim_write(fd, text, len);
	int cr = _sp_prim_close(fd);
	if (r < 0)
		return (int)r;
	if ((size_t)r != len)
		return -EIO;
	return cr;
}
