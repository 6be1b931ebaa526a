/* SPDX-License-Identifier: MIT */
/*
 * estimate_bench: how fast `samepage estimate` reads and counts memory,
 * against the bound of reading the same memory with a plain loop
 * (process_vm_readv in the same batches, XXH3 of every page, nothing
 * else). Both run in this one thread, one after the other, over the same
 * child processes, for several rounds; pages per CPU second of this
 * thread ("per core") and their ratio are printed side by side.
 * See docs/estimate.md. Changes nothing in the kernel; needs no lock.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/samepage/estimate_scan.h"

#define TARGET 0.7

struct opts {
	size_t size;        /* bytes over all children */
	int procs, rounds;
	size_t batch;
	double dup, zero;   /* shares of pages; the rest is unique */
	int distinct;       /* contents of the duplicate pool */
};

struct child {
	pid_t pid;
	int to_child;
	uintptr_t addr;
	size_t len;
};

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* Child k's memory: each page drawn to be a pool copy, zero or unique;
 * the pool is the same in every child, so contents repeat across them. */
static void fill(unsigned char *m, size_t len, int k, const struct opts *o)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	for (size_t i = 0; i < len / ps; i++) {
		uint64_t *p = (uint64_t *)(m + i * ps);
		double r = (double)(mix(((uint64_t)k << 40) ^ i) >> 11) / (double)(1ull << 53);
		uint64_t seed;
		if (r < o->zero) {
			memset(p, 0, ps);
			continue;
		}
		if (r < o->zero + o->dup)
			seed = mix(i) % (uint64_t)o->distinct + 1;
		else
			seed = ((uint64_t)(k + 1) << 48) | ((i + 1ull) << 8);  /* unique */
		for (size_t w = 0; w < ps / 8; w++)
			p[w] = mix(seed * 4096 + w);
	}
}

static void start_child(struct child *c, int k, size_t len, const struct opts *o)
{
	int to[2], back[2];
	if (pipe(to) || pipe(back)) {
		perror("pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		close(to[1]);
		close(back[0]);
		unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			_exit(1);
		madvise(m, len, MADV_NOHUGEPAGE);  /* 4 KiB pages, as merging sees them */
		fill(m, len, k, o);
		uintptr_t a = (uintptr_t)m;
		if (write(back[1], &a, sizeof(a)) != sizeof(a))
			_exit(1);
		char b;
		_exit(read(to[0], &b, 1) < 0);
	}
	close(to[0]);
	close(back[1]);
	c->pid = pid;
	c->to_child = to[1];
	c->len = len;
	if (read(back[0], &c->addr, sizeof(c->addr)) != sizeof(c->addr)) {
		fprintf(stderr, "child %d did not start\n", k);
		exit(1);
	}
	close(back[0]);
}

/* The bound: the children's memory read and hashed, nothing more. */
static uint64_t plain_loop(const struct child *c, int n, size_t batch, unsigned char *buf, uint64_t *pages)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t acc = 0;
	*pages = 0;
	for (int k = 0; k < n; k++) {
		for (size_t off = 0; off < c[k].len; off += batch) {
			size_t len = c[k].len - off < batch ? c[k].len - off : batch;
			struct iovec local = { buf, len }, remote = { (void *)(c[k].addr + off), len };
			ssize_t got = process_vm_readv(c[k].pid, &local, 1, &remote, 1, 0);
			if (got < 0) {
				perror("process_vm_readv");
				exit(1);
			}
			for (size_t p = 0; p + ps <= (size_t)got; p += ps)
				acc ^= est_hash_page(buf + p, ps);
			*pages += (uint64_t)got / ps;
		}
	}
	return acc;
}

/* samepage estimate's core over the whole of each child. */
static void estimate(const struct child *c, int n, size_t batch, struct est_counts *tot, uint64_t *distinct,
		     size_t *mem)
{
	struct est_options eo = { .batch_bytes = batch };
	struct est_scanner *s;
	struct est_table *t;
	if (est_scanner_new(&eo, &s) || est_table_new(&t)) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	memset(tot, 0, sizeof(*tot));
	for (int k = 0; k < n; k++) {
		int r = est_scan_process(s, t, c[k].pid, (uint32_t)k, tot);
		if (r) {
			fprintf(stderr, "estimate of pid %d: %s\n", (int)c[k].pid, strerror(-r));
			exit(1);
		}
	}
	*distinct = est_table_distinct(t);
	*mem = est_table_bytes(t) + est_scanner_bytes(s);
	est_table_free(t);
	est_scanner_free(s);
}

static size_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	double mul = *end == 'G' || *end == 'g' ? 1 << 30 : *end == 'M' || *end == 'm' ? 1 << 20
			: *end == 'K' || *end == 'k' ? 1 << 10 : 1;
	if (v <= 0 || end == s) {
		fprintf(stderr, "bad size '%s'\n", s);
		exit(2);
	}
	return (size_t)(v * mul);
}

static void usage(FILE *f)
{
	fputs("usage: estimate_bench [--size BYTES] [--procs N] [--rounds N] [--batch BYTES]\n"
	      "                      [--dup F] [--zero F] [--distinct N]\n"
	      "  --size      memory over all child processes, K/M/G suffixes (4G)\n"
	      "  --procs     child processes (4)      --rounds   rounds of each (3)\n"
	      "  --batch     bytes per process_vm_readv, both loops (1M)\n"
	      "  --dup F     share of pages copied from a pool (0.5), --distinct N its size (256)\n"
	      "  --zero F    share of zero pages (0.1); the rest is unique\n",
	      f);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	struct opts o = { .size = 4ull << 30, .procs = 4, .rounds = 3, .batch = 1 << 20,
			  .dup = 0.5, .zero = 0.1, .distinct = 256 };
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' }, { "procs", required_argument, NULL, 'p' },
		{ "rounds", required_argument, NULL, 'r' }, { "batch", required_argument, NULL, 'b' },
		{ "dup", required_argument, NULL, 'd' }, { "zero", required_argument, NULL, 'z' },
		{ "distinct", required_argument, NULL, 'n' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': o.size = parse_size(optarg); break;
		case 'p': o.procs = atoi(optarg); break;
		case 'r': o.rounds = atoi(optarg); break;
		case 'b': o.batch = parse_size(optarg); break;
		case 'd': o.dup = atof(optarg); break;
		case 'z': o.zero = atof(optarg); break;
		case 'n': o.distinct = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	if (o.procs < 1 || o.procs > 64 || o.rounds < 1 || o.rounds > 50 || o.batch < ps ||
	    o.dup < 0 || o.zero < 0 || o.dup + o.zero > 1 || o.distinct < 1) {
		usage(stderr);
		return 2;
	}
	size_t per = o.size / (size_t)o.procs / ps * ps;
	struct child kids[64];
	printf("estimate_bench: %d processes x %zu MiB (%.0f%% pool copies of %d contents, %.0f%% zero, "
	       "rest unique), batch %zu KiB, %d rounds\n", o.procs, per >> 20, o.dup * 100, o.distinct,
	       o.zero * 100, o.batch >> 10, o.rounds);
	fflush(stdout);
	double t0 = clock_s(CLOCK_MONOTONIC);
	for (int k = 0; k < o.procs; k++)
		start_child(&kids[k], k, per, &o);
	printf("children filled in %.1f s\n\n", clock_s(CLOCK_MONOTONIC) - t0);

	unsigned char *buf = aligned_alloc(ps, o.batch);
	double bound[50], est[50], ratio[50];
	struct est_counts tot;
	uint64_t distinct = 0, bound_pages = 0, sink = 0;
	size_t mem = 0;
	/* Two untimed reads first: the first reads of freshly written pages
	 * also move them to the kernel's active list (mark_page_accessed),
	 * which would be charged to whichever loop came first. */
	for (int w = 0; w < 2; w++)
		sink ^= plain_loop(kids, o.procs, o.batch, buf, &bound_pages);
	printf("%5s %16s %16s %18s %18s %7s\n", "round", "bound pages", "estimate pages", "bound pages/s/core",
	       "estimate pages/s/core", "ratio");
	for (int r = 0; r < o.rounds; r++) {
		/* alternate the order so neither always runs on a warm cache */
		for (int step = 0; step < 2; step++) {
			bool first_bound = (r % 2 == 0) == (step == 0);
			double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
			if (first_bound)
				sink ^= plain_loop(kids, o.procs, o.batch, buf, &bound_pages);
			else
				estimate(kids, o.procs, o.batch, &tot, &distinct, &mem);
			double cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
			if (first_bound)
				bound[r] = (double)bound_pages / cpu;
			else
				est[r] = (double)tot.pages / cpu;
		}
		ratio[r] = est[r] / bound[r];
		printf("%5d %16llu %16llu %18.0f %18.0f %7.3f\n", r + 1, (unsigned long long)bound_pages,
		       (unsigned long long)tot.pages, bound[r], est[r], ratio[r]);
	}
	qsort(bound, (size_t)o.rounds, sizeof(double), cmp_double);
	qsort(est, (size_t)o.rounds, sizeof(double), cmp_double);
	qsort(ratio, (size_t)o.rounds, sizeof(double), cmp_double);
	int m = o.rounds / 2;
	printf("\nmedian: bound %.0f pages/s/core (%.2f GiB/s), estimate %.0f pages/s/core (%.2f GiB/s), "
	       "ratio %.3f (target >= %.2f): %s\n", bound[m], bound[m] * (double)ps / (1 << 30), est[m],
	       est[m] * (double)ps / (1 << 30), ratio[m], TARGET, ratio[m] >= TARGET ? "PASS" : "FAIL");
	printf("estimate counted: %llu resident pages, %llu zero, %llu saved (%llu within, %llu between), "
	       "%llu distinct contents; its memory %.1f MiB (%.1f bytes per distinct content)\n",
	       (unsigned long long)tot.pages, (unsigned long long)tot.zero_pages,
	       (unsigned long long)(tot.saved_within + tot.saved_between), (unsigned long long)tot.saved_within,
	       (unsigned long long)tot.saved_between, (unsigned long long)distinct, (double)mem / (1 << 20),
	       distinct ? (double)mem / (double)distinct : 0.0);
	if (sink == 42)
		printf(" \n");  /* keeps the hashing from being optimised away */
	/* all pipes first: later children hold copies of earlier ones' */
	for (int k = 0; k < o.procs; k++)
		close(kids[k].to_child);
	for (int k = 0; k < o.procs; k++)
		waitpid(kids[k].pid, NULL, 0);
	free(buf);
	return ratio[m] >= TARGET ? 0 : 1;
}
