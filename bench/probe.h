/* SPDX-License-Identifier: MIT */
/*
 * What the benchmark reads from the kernel about a process: CPU time of a
 * thread or a process, PSS, MemAvailable, the number of VMAs, threads.
 * Every reading returns a negative value when it cannot be made.
 */
#ifndef SP_BENCH_PROBE_H
#define SP_BENCH_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in seconds. */
double probe_now(void);

/* CPU seconds (user + system) of thread tid of this process, or of process
 * pid (any process, ksmd included), from the kernel's scheduler clock:
 * nanoseconds, not the 10 ms ticks of /proc/PID/stat. */
double probe_thread_cpu(pid_t tid);
double probe_process_cpu(pid_t pid);

/* MemAvailable of /proc/meminfo, bytes. */
int64_t probe_mem_available(void);

/* Pss of /proc/self/smaps_rollup, bytes. */
int64_t probe_self_pss(void);

/* The same for process pid (another user's needs root). */
int64_t probe_pid_pss(pid_t pid);

/* Lines of /proc/self/maps: the VMAs of this process. */
int probe_self_vmas(void);

/* Thread ids of this process, sorted; returns how many (at most max). */
int probe_self_tids(pid_t *tids, int max);

/* Thread id of the caller. */
pid_t probe_gettid(void);

/* Times thread tid of this process was preempted (nonvoluntary context
 * switches): a writer that lost its CPU shows it in its latencies. */
int64_t probe_thread_preempted(pid_t tid);

/* Page faults (minor + major) thread tid of this process has taken: the
 * engine's write tracking makes the program itself fault. */
int64_t probe_thread_faults(pid_t tid);

/* The 1-minute load average, or -1. */
double probe_loadavg(void);

#endif
