/* SPDX-License-Identifier: MIT */
/* Processes and KSM: ksmd's CPU, /proc/<pid>/ksm_stat, PR_SET_MEMORY_MERGE. */
#include "internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PF_KTHREAD 0x00200000u  /* include/linux/sched.h: task flags in /proc/<pid>/stat */

struct pid_stat {
	char state;
	unsigned long flags;
	unsigned long long utime, stime, starttime;
};

/* Fields of /proc/<pid>/stat after the command name, which may itself
 * contain spaces and parentheses: parse from the last ')'. */
static int read_pid_stat(sp_ksm *k, pid_t pid, struct pid_stat *out)
{
	char path[PATH_MAX], rel[64], buf[1024];
	snprintf(rel, sizeof(rel), "/proc/%d/stat", (int)pid);
	int r = _sp_ksm_path(k, rel, path, sizeof(path));
	if (r)
		return r;
	ssize_t n = _sp_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	char *p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt
	 * cmajflt utime stime cutime cstime prio nice threads itreal start */
	unsigned long long f[19];
	char state;
	/* fields 4 (ppid) to 22 (starttime): 19 numbers */
	int got = sscanf(p + 2, "%c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			 &state, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9],
			 &f[10], &f[11], &f[12], &f[13], &f[14], &f[15], &f[16], &f[17], &f[18]);
	if (got < 20)
		return -EIO;
	out->state = state;
	out->flags = (unsigned long)f[5];
	out->utime = f[10];
	out->stime = f[11];
	out->starttime = f[18];
	return 0;
}

static int read_comm(sp_ksm *k, pid_t pid, char *comm, size_t len)
{
	char path[PATH_MAX], rel[64];
	snprintf(rel, sizeof(rel), "/proc/%d/comm", (int)pid);
	int r = _sp_ksm_path(k, rel, path, sizeof(path));
	if (r)
		return r;
	ssize_t n = _sp_read_file(path, comm, len);
	if (n < 0)
		return (int)n;
	/* The kernel ends the name with one newline; a name may hold others. */
	if (n > 0 && comm[n - 1] == '\n')
		comm[n - 1] = 0;
	return 0;
}

static bool is_pid_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

int sp_ksmd_info_read(sp_ksm *k, sp_ksmd_info *out)
{
	if (!k || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	char procdir[PATH_MAX];
	int r = _sp_ksm_path(k, "/proc", procdir, sizeof(procdir));
	if (r)
		return r;
	DIR *dir = opendir(procdir);
	if (!dir)
		return -errno;
	struct dirent *de;
	pid_t found = 0;
	struct pid_stat st = { 0 };
	while ((de = readdir(dir))) {
		if (!is_pid_name(de->d_name))
			continue;
		pid_t pid = (pid_t)atoi(de->d_name);
		char comm[32];
		if (read_comm(k, pid, comm, sizeof(comm)) || strcmp(comm, "ksmd") != 0)
			continue;
		if (read_pid_stat(k, pid, &st) == 0 && (st.flags & PF_KTHREAD)) {
			found = pid;
			break;
		}
	}
	closedir(dir);
	if (!found)
		return -ESRCH;
	long hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0)
		hz = 100;
	out->pid = found;
	out->state = st.state;
	out->cpu_seconds = (double)(st.utime + st.stime) / (double)hz;
	char path[PATH_MAX], buf[128];
	double uptime = 0;
	if (_sp_ksm_path(k, "/proc/uptime", path, sizeof(path)) == 0 &&
	    _sp_read_file(path, buf, sizeof(buf)) > 0)
		uptime = strtod(buf, NULL);
	out->age_seconds = uptime - (double)st.starttime / (double)hz;
	if (out->age_seconds < 0)
		out->age_seconds = 0;
	return 0;
}

bool sp_proc_ksm_active(const sp_proc_ksm *p)
{
	return p->ksm_rmap_items > 0 || p->ksm_zero_pages > 0 || p->ksm_merging_pages > 0 ||
	       p->ksm_merge_any == 1 || p->ksm_mergeable == 1;
}

enum { F_RMAP = 1, F_ZERO = 2, F_MERGING = 4, F_PROFIT = 8 };

/* Fills what /proc/<pid>/ksm_stat holds; returns which numbers it had. */
static unsigned parse_ksm_stat(const char *text, sp_proc_ksm *out)
{
	unsigned found = 0;
	out->ksm_merge_any = out->ksm_mergeable = -1;
	for (const char *line = text; *line;) {
		char key[48], val[48];
		if (sscanf(line, "%47[^: \n]%*[: ]%47s", key, val) == 2) {
			int64_t v = 0;
			bool num = _sp_parse_i64(val, &v) == 0;
			int yes = strcmp(val, "yes") == 0 ? 1 : strcmp(val, "no") == 0 ? 0 : -1;
			if (num && strcmp(key, "ksm_rmap_items") == 0)
				out->ksm_rmap_items = v, found |= F_RMAP;
			else if (num && strcmp(key, "ksm_zero_pages") == 0)
				out->ksm_zero_pages = v, found |= F_ZERO;
			else if (num && strcmp(key, "ksm_merging_pages") == 0)
				out->ksm_merging_pages = v, found |= F_MERGING;
			else if (num && strcmp(key, "ksm_process_profit") == 0)
				out->ksm_process_profit = v, found |= F_PROFIT;
			else if (strcmp(key, "ksm_merge_any") == 0)
				out->ksm_merge_any = yes;
			else if (strcmp(key, "ksm_mergeable") == 0)
				out->ksm_mergeable = yes;
		}
		const char *nl = strchr(line, '\n');
		if (!nl)
			break;
		line = nl + 1;
	}
	return found;
}

int sp_proc_ksm_read(sp_ksm *k, pid_t pid, sp_proc_ksm *out)
{
	if (!k || !out || pid <= 0)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->pid = pid;
	char path[PATH_MAX], rel[64], buf[1024];
	snprintf(rel, sizeof(rel), "/proc/%d/ksm_stat", (int)pid);
	int r = _sp_ksm_path(k, rel, path, sizeof(path));
	if (r)
		return r;
	ssize_t n = _sp_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	/* Kernel threads have no memory: their ksm_stat is empty, all zeros. */
	unsigned found = parse_ksm_stat(buf, out);
	/* Kernels before 6.4 lack the profit line: apply the kernel's formula. */
	if ((found & F_RMAP) && !(found & F_PROFIT))
		out->ksm_process_profit = (out->ksm_merging_pages + out->ksm_zero_pages) * k->page_size -
					  out->ksm_rmap_items * SP_RMAP_ITEM_BYTES;
	/* The real uid from status (the owner of /proc/PID is not it in a
	 * recorded tree, nor for a process that is not dumpable). */
	out->uid = (uid_t)-1;
	char status[4096];
	snprintf(rel, sizeof(rel), "/proc/%d/status", (int)pid);
	if (_sp_ksm_path(k, rel, path, sizeof(path)) == 0 && _sp_read_file(path, status, sizeof(status)) > 0) {
		const char *u = strstr(status, "\nUid:");
		unsigned uid;
		if (u && sscanf(u + 5, "%u", &uid) == 1)
			out->uid = uid;
	}
	if (read_comm(k, pid, out->comm, sizeof(out->comm)))
		snprintf(out->comm, sizeof(out->comm), "?");
	return 0;
}

static int cmp_profit(const void *a, const void *b)
{
	const sp_proc_ksm *x = a, *y = b;
	if (x->ksm_process_profit != y->ksm_process_profit)
		return x->ksm_process_profit > y->ksm_process_profit ? -1 : 1;
	return x->pid - y->pid;
}

int sp_proc_ksm_list(sp_ksm *k, sp_proc_ksm **out, size_t *n, size_t *unreadable)
{
	if (!k || !out || !n)
		return -EINVAL;
	*out = NULL;
	*n = 0;
	if (unreadable)
		*unreadable = 0;
	char procdir[PATH_MAX];
	int r = _sp_ksm_path(k, "/proc", procdir, sizeof(procdir));
	if (r)
		return r;
	DIR *dir = opendir(procdir);
	if (!dir)
		return -errno;
	size_t cap = 0, count = 0;
	sp_proc_ksm *list = NULL;
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (!is_pid_name(de->d_name))
			continue;
		sp_proc_ksm p;
		r = sp_proc_ksm_read(k, (pid_t)atoi(de->d_name), &p);
		if (r == -EACCES || r == -EPERM) {
			if (unreadable)
				(*unreadable)++;
			continue;
		}
		if (r || !sp_proc_ksm_active(&p))
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 32;
			sp_proc_ksm *grown = realloc(list, cap * sizeof(*list));
			if (!grown) {
				free(list);
				closedir(dir);
				return -ENOMEM;
			}
			list = grown;
		}
		list[count++] = p;
	}
	closedir(dir);
	if (count)
		qsort(list, count, sizeof(*list), cmp_profit);
	*out = list;
	*n = count;
	return 0;
}

int sp_ksm_merge_any(bool enable)
{
	return _sp_prim_prctl(PR_SET_MEMORY_MERGE, enable ? 1 : 0, 0, 0, 0);
}

int sp_ksm_merge_any_get(void)
{
	return _sp_prim_prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
}
