/* SPDX-License-Identifier: MIT */
/* samepage check: the rows about the host: swap, mappings, userfaultfd. */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define GIB (1024LL * 1024 * 1024)
/* DEFAULT_MAX_MAP_COUNT: USHRT_MAX - MAPCOUNT_ELF_CORE_MARGIN */
#define MAP_COUNT_DEFAULT 65530
/* The uid the unprivileged probe runs as. */
#define PROBE_UID 65534

void check_swap_committed(struct check_ctx *c, struct check_result *r)
{
	if (c->mem_total < 0 || c->swap_total < 0 || c->committed_as < 0) {
		ck_set(r, CK_SKIP, "-");
		ck_reason(r, "MemTotal, SwapTotal or Committed_AS missing from %s/proc/meminfo", c->root);
		return;
	}
	int64_t have = c->mem_total + c->swap_total;
	char ca[32], mt[32], sw[32], hv[32];
	human_bytes(c->committed_as, ca, sizeof(ca));
	human_bytes(c->mem_total, mt, sizeof(mt));
	human_bytes(c->swap_total, sw, sizeof(sw));
	human_bytes(have, hv, sizeof(hv));
	ck_set(r, CK_OK, "Committed_AS %s, MemTotal %s + SwapTotal %s = %s", ca, mt, sw, hv);
	if (c->committed_as <= have) {
		ck_reason(r, "committed memory fits in RAM and swap without counting on merging");
		return;
	}
	int64_t short_by = c->committed_as - have;
	int64_t gib = (short_by + GIB - 1) / GIB;
	char sb[32];
	human_bytes(short_by, sb, sizeof(sb));
	int64_t sharing = ck_param(c, SP_PAGES_SHARING, 0) + ck_param(c, SP_KSM_ZERO_PAGES, 0);
	if (c->ksm && sharing > 0) {
		char saved[32];
		human_bytes(sharing * c->page_size, saved, sizeof(saved));
		r->status = CK_FAIL;
		ck_reason(r, "committed memory exceeds RAM + swap by %s while KSM saves %s: when merged pages are "
			     "written they are unshared, and the host runs out of memory",
			  sb, saved);
	} else {
		r->status = CK_WARN;
		ck_reason(r, "committed memory exceeds RAM + swap by %s: merging must not be what makes it fit", sb);
	}
	ck_fix(r, "fallocate -l %" PRId64 "G /swapfile && chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile",
	       gib);
}

static bool is_pid(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Lines of <root>/proc/<pid>/maps: the process's mappings, or -errno. */
static long count_maps(const struct check_ctx *c, const char *pid)
{
	char rel[64], path[PATH_MAX];
	snprintf(rel, sizeof(rel), "/proc/%s/maps", pid);
	int r = ck_path(c, rel, path, sizeof(path));
	if (r)
		return r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char buf[65536];
	long lines = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return -e;
		}
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	}
	close(fd);
	return lines;
}

void check_max_map_count(struct check_ctx *c, struct check_result *r)
{
	int64_t limit;
	int e = ck_read_i64(c, "/proc/sys/vm/max_map_count", &limit);
	if (e) {
		ck_set(r, CK_SKIP, "-");
		ck_reason(r, "cannot read %s/proc/sys/vm/max_map_count: %s", c->root, sp_strerror(e));
		return;
	}
	char procdir[PATH_MAX];
	DIR *d = ck_path(c, "/proc", procdir, sizeof(procdir)) ? NULL : opendir(procdir);
	if (!d) {
		ck_set(r, CK_SKIP, "vm.max_map_count=%" PRId64, limit);
		ck_reason(r, "cannot list %s", procdir);
		return;
	}
	long biggest = 0;
	char big_pid[32] = "";
	size_t unreadable = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!is_pid(de->d_name) || strlen(de->d_name) >= sizeof(big_pid))
			continue;
		long n = count_maps(c, de->d_name);
		if (n == -EACCES || n == -EPERM)
			unreadable++;
		if (n > biggest) {
			biggest = n;
			snprintf(big_pid, sizeof(big_pid), "%s", de->d_name);
		}
	}
	closedir(d);
	char comm[64] = "?", rel[64];
	if (big_pid[0]) {
		snprintf(rel, sizeof(rel), "/proc/%s/comm", big_pid);
		if (ck_read(c, rel, comm, sizeof(comm)) > 0)
			comm[strcspn(comm, "\n")] = 0;
	}
	/* The engine merges only while limit/8 (at least 256) mappings stay free. */
	int64_t reserve = limit / 8 > 256 ? limit / 8 : 256;
	int64_t free_maps = limit - biggest;
	int64_t want = 2 * (int64_t)biggest > MAP_COUNT_DEFAULT ? 2 * (int64_t)biggest : MAP_COUNT_DEFAULT;
	char note[96];
	ck_unreadable(unreadable, "maps", note, sizeof(note));
	if (big_pid[0])
		ck_set(r, CK_OK, "vm.max_map_count=%" PRId64 ", largest: pid %s (%s) with %ld mappings", limit,
		       big_pid, comm, biggest);
	else
		ck_set(r, CK_OK, "vm.max_map_count=%" PRId64 ", no readable process", limit);
	if (free_maps <= reserve) {
		r->status = CK_FAIL;
		ck_reason(r, "pid %s has %" PRId64 " mappings free, within the user-space engine's reserve of %" PRId64
			     " (an eighth of the limit): the engine merges nothing there, and its own mmap calls are close to failing",
			  big_pid, free_maps, reserve);
		ck_fix(r, "sysctl -w vm.max_map_count=%" PRId64, want);
	} else if (limit < MAP_COUNT_DEFAULT) {
		r->status = CK_WARN;
		ck_reason(r, "vm.max_map_count is below the kernel's default of %d: merging splits mappings "
			     "(up to two per merged run), and MADV_MERGEABLE itself fails with ENOMEM at the limit%s",
			  MAP_COUNT_DEFAULT, note);
		ck_fix(r, "sysctl -w vm.max_map_count=%" PRId64, want);
	} else if (free_maps <= limit / 4) {
		r->status = CK_WARN;
		ck_reason(r, "pid %s has less than a quarter of vm.max_map_count free: merges split mappings "
			     "and the engine stops an eighth before the limit%s",
			  big_pid, note);
		ck_fix(r, "sysctl -w vm.max_map_count=%" PRId64, want);
	} else {
		ck_reason(r, "every process has more than a quarter of vm.max_map_count free for merges%s", note);
	}
}

static int try_uffd(int flags)
{
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | flags);
	if (fd < 0)
		return -errno;
	close((int)fd);
	return 0;
}

static int try_dev_uffd(void)
{
	int fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int u = ioctl(fd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	int e = errno;
	close(fd);
	if (u < 0)
		return -e;
	close(u);
	return 0;
}

struct uffd_probe {
	int user_mode;    /* userfaultfd(UFFD_USER_MODE_ONLY): 0 or -errno */
	int kernel_mode;  /* userfaultfd(0) */
	int dev;          /* /dev/userfaultfd + USERFAULTFD_IOC_NEW */
};

static void probe_here(struct uffd_probe *p)
{
	p->user_mode = try_uffd(UFFD_USER_MODE_ONLY);
	p->kernel_mode = try_uffd(0);
	p->dev = try_dev_uffd();
}

/* What an unprivileged user gets: as root, ask from a child that is nobody. */
static bool probe_unprivileged(struct uffd_probe *p, uid_t *as)
{
	if (geteuid() != 0) {
		*as = geteuid();
		probe_here(p);
		return true;
	}
	*as = PROBE_UID;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC))
		return false;
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return false;
	}
	if (pid == 0) {
		struct uffd_probe q = { -EPERM, -EPERM, -EPERM };
		if (setgroups(0, NULL) == 0 && setgid(PROBE_UID) == 0 && setuid(PROBE_UID) == 0)
			probe_here(&q);
		_exit(write(fds[1], &q, sizeof(q)) == (ssize_t)sizeof(q) ? 0 : 1);
	}
	close(fds[1]);
	ssize_t n;
	do
		n = read(fds[0], p, sizeof(*p));
	while (n < 0 && errno == EINTR);
	close(fds[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return n == (ssize_t)sizeof(*p);
}

void check_userfaultfd(struct check_ctx *c, struct check_result *r)
{
	int64_t sysctl = -1;
	ck_read_i64(c, "/proc/sys/vm/unprivileged_userfaultfd", &sysctl);
	char devpath[PATH_MAX];
	bool dev = ck_path(c, "/dev/userfaultfd", devpath, sizeof(devpath)) == 0 && access(devpath, F_OK) == 0;
	const char *umo_note = "a system call that writes into a page while the engine freezes it for a merge "
			       "fails with EFAULT; kernel-mode faults need CAP_SYS_PTRACE, "
			       "vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd";
	if (!c->live) {
		if (sysctl < 0) {
			ck_set(r, CK_SKIP, "-");
			ck_reason(r, "no proc/sys/vm/unprivileged_userfaultfd in the recorded tree, and userfaultfd(2) "
				     "cannot be tried on a recorded host");
			return;
		}
		ck_set(r, CK_OK, "%s (vm.unprivileged_userfaultfd=%" PRId64 "%s; not tried: recorded tree)",
		       sysctl ? "user and kernel mode" : "user-mode only", sysctl,
		       dev ? ", /dev/userfaultfd present" : "");
		ck_reason(r, "%s", sysctl ? "unprivileged processes may handle kernel-mode faults too" : umo_note);
		return;
	}
	struct uffd_probe p;
	uid_t as;
	if (!probe_unprivileged(&p, &as)) {
		ck_set(r, CK_SKIP, "-");
		ck_reason(r, "could not start the unprivileged probe");
		return;
	}
	if (p.user_mode) {
		ck_set(r, CK_FAIL, "userfaultfd(UFFD_USER_MODE_ONLY) as uid %u: %s", (unsigned)as,
		       sp_strerror(p.user_mode));
		if (p.user_mode == -ENOSYS) {
			ck_reason(r, "the kernel has no userfaultfd (CONFIG_USERFAULTFD=n): the user-space engine "
				     "cannot run");
			ck_fix(r, "boot a kernel built with CONFIG_USERFAULTFD=y");
		} else {
			ck_reason(r, "userfaultfd(2) is refused even in user mode, which any user may use: a seccomp "
				     "filter or security module blocks it (containers often do); the user-space "
				     "engine cannot run");
			ck_fix(r, "allow the userfaultfd system call in the seccomp profile of the container or service");
		}
		return;
	}
	bool kernel = p.kernel_mode == 0 || p.dev == 0;
	ck_set(r, CK_OK, "%s for uid %u (vm.unprivileged_userfaultfd=%" PRId64 ", /dev/userfaultfd %s)",
	       kernel ? "user and kernel mode" : "user-mode only", (unsigned)as, sysctl,
	       !dev ? "absent" : p.dev == 0 ? "usable" : "not accessible");
	ck_reason(r, "%s", kernel ? "unprivileged engines handle kernel-mode faults too" : umo_note);
}
