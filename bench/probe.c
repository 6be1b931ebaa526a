/* SPDX-License-Identifier: MIT */
/*
 * Readings of /proc and of the kernel's CPU clocks for the benchmark.
 * CPU time comes from the scheduler's per-thread and per-process clocks
 * (nanoseconds) because a steady-state window of a few seconds would
 * otherwise be measured in a handful of 10 ms ticks; /proc/PID/stat is
 * the fallback.
 */
#include "probe.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

double probe_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

pid_t probe_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* utime + stime of a /proc stat file, in seconds. */
static double stat_cpu(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char buf[1024];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* comm may hold spaces and parentheses: fields start after the last ')' */
	char *p = strrchr(buf, ')');
	unsigned long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double clock_cpu(clockid_t cid)
{
	struct timespec ts;
	if (clock_gettime(cid, &ts))
		return -1;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double probe_thread_cpu(pid_t tid)
{
	/* The kernel's encoding of a per-thread scheduler clock (what
	 * pthread_getcpuclockid returns); valid for threads of this process. */
	clockid_t cid = (clockid_t)(((unsigned)~tid << 3) | 6u);
	double v = clock_cpu(cid);
	if (v >= 0)
		return v;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	return stat_cpu(path);
}

double probe_process_cpu(pid_t pid)
{
	clockid_t cid;
	if (clock_getcpuclockid(pid, &cid) == 0) {
		double v = clock_cpu(cid);
		if (v >= 0)
			return v;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	return stat_cpu(path);
}

/* The number after "key" in a "key: value kB" file, times 1024. */
static int64_t kb_field(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[256];
	size_t kl = strlen(key);
	int64_t v = -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtoll(line + kl + 1, NULL, 10) * 1024;
			break;
		}
	fclose(f);
	return v;
}

int64_t probe_mem_available(void)
{
	return kb_field("/proc/meminfo", "MemAvailable");
}

int64_t probe_self_pss(void)
{
	return kb_field("/proc/self/smaps_rollup", "Pss");
}

int64_t probe_pid_pss(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	return kb_field(path, "Pss");
}

int probe_self_vmas(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	int n = 0, c, last = '\n';
	while ((c = getc_unlocked(f)) != EOF) {
		if (c == '\n')
			n++;
		last = c;
	}
	fclose(f);
	return n + (last != '\n');
}

/* /proc/self/task/TID/NAME, opened for reading, or NULL. */
static FILE *open_task_file(pid_t tid, const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/%s", (int)tid, name);
	return fopen(path, "r");
}

int64_t probe_thread_preempted(pid_t tid)
{
	char line[128];
	FILE *f = open_task_file(tid, "status");
	if (!f)
		return -1;
	int64_t v = -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "nonvoluntary_ctxt_switches:", 27) == 0)
			v = strtoll(line + 27, NULL, 10);
	fclose(f);
	return v;
}

int64_t probe_thread_faults(pid_t tid)
{
	char line[1024];
	FILE *f = open_task_file(tid, "stat");
	if (!f)
		return -1;
	char *ok = fgets(line, sizeof(line), f);
	fclose(f);
	/* The name (field 2) may hold spaces: count fields after its ')'. */
	char *p = ok ? strrchr(line, ')') : NULL;
	if (!p)
		return -1;
	long long minflt = -1, majflt = -1;
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %lld %*u %lld", &minflt, &majflt) != 2)
		return -1;
	return minflt + majflt;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

int probe_self_tids(pid_t *tids, int max)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < max)
		if (de->d_name[0] != '.')
			tids[n++] = (pid_t)atoi(de->d_name);
	closedir(d);
	qsort(tids, (size_t)n, sizeof(*tids), cmp_pid);
	return n;
}

double probe_loadavg(void)
{
	double v;
	FILE *f = fopen("/proc/loadavg", "r");
	if (!f)
		return -1;
	int ok = fscanf(f, "%lf", &v) == 1;
	fclose(f);
	return ok ? v : -1;
}
