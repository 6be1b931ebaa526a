/* SPDX-License-Identifier: MIT */
/*
 * Description: the policies as pure functions over recorded inputs. The
 * classic policy computes what the original ksmtuned script computes:
 * sleep and thres once at start-up (integer arithmetic, the 10 ms floor,
 * KSM_THRES_CONST), free = MemFree+Buffers+Cached, committed = the sum
 * over matching processes, the stop and start conditions, boost and decay
 * clamped to [min, max], npages kept across stop/start, and the script's
 * messages. Checked against hand-computed recorded hosts and against bash
 * itself doing the script's arithmetic on thousands of random inputs. The
 * adaptive policy: pressure, new guests, judging each full scan by profit
 * per ksmd CPU-second, the advisor hand-over, stopping and probing.
 */
#include "helpers.h"
#include "../src/tune/tune.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* /proc/meminfo of real hosts (first lines; the parser needs no more). */
static const char meminfo_24g[] =  /* this machine, idle */
	"MemTotal:       24684084 kB\nMemFree:        24163904 kB\nMemAvailable:   24113068 kB\n"
	"Buffers:            1076 kB\nCached:            99832 kB\nSwapCached:            0 kB\n"
	"Active:            98304 kB\n";
static const char meminfo_2g_busy[] =  /* a 2 GiB VM host running guests */
	"MemTotal:        2030464 kB\nMemFree:          112340 kB\nMemAvailable:     301220 kB\n"
	"Buffers:           20412 kB\nCached:           198804 kB\nSwapCached:         1024 kB\n";
static const char meminfo_rhel6[] =  /* 2.6.32: no MemAvailable */
	"MemTotal:       16330708 kB\nMemFree:         3121476 kB\nBuffers:          301884 kB\n"
	"Cached:          2014392 kB\nSwapCached:            0 kB\n";

static void test_meminfo_and_psi_parse(void **state)
{
	(void)state;
	struct tune_meminfo m;
	assert_int_equal(tune_meminfo_parse(meminfo_24g, &m), 0);
	assert_int_equal(m.total, 24684084);
	assert_int_equal(m.free, 24163904);
	assert_int_equal(m.buffers, 1076);
	assert_int_equal(m.cached, 99832);  /* not SwapCached */
	assert_true(m.have_available);
	assert_int_equal(m.available, 24113068);
	assert_int_equal(tune_meminfo_parse(meminfo_rhel6, &m), 0);
	assert_false(m.have_available);
	assert_int_equal(m.available, 3121476 + 301884 + 2014392);
	assert_int_equal(tune_meminfo_parse("MemFree: 5 kB\n", &m), -EINVAL);

	double v = -1;
	assert_int_equal(tune_psi_parse("some avg10=12.34 avg60=1.00 avg300=0.10 total=123\n"
					"full avg10=1.00 avg60=0.00 avg300=0.00 total=9\n", &v), 0);
	assert_true(v > 12.33 && v < 12.35);
	assert_int_equal(tune_psi_parse("full avg10=1.00\n", &v), -EINVAL);
}

static void set_free(struct tune_input *in, int64_t free)
{
	/* Split across the three fields the script adds. */
	in->mem.free = free / 2;
	in->mem.buffers = free / 8;
	in->mem.cached = free - free / 2 - free / 8;
}

static struct tune_proc procs[4];

static void set_committed(struct tune_input *in, int64_t committed)
{
	memset(procs, 0, sizeof(procs));
	procs[0].kb = committed / 3;
	procs[1].kb = committed - committed / 3;
	in->procs = procs;
	in->nprocs = committed ? 2 : 0;
}

static void test_classic_startup_on_recorded_hosts(void **state)
{
	(void)state;
	static const struct {
		const char *meminfo;
		int64_t sleep_msec, coef, cnst;
		int64_t sleep, thres;
	} cases[] = {
		/* 10 * 16777216 / 24684084 = 6 -> the 10 ms floor; 24684084 * 20 / 100 */
		{ meminfo_24g, 10, 20, 2048, 10, 4936816 },
		/* 167772160 / 2030464 = 82.6 -> 82 (truncated); 406092.8 -> 406092 */
		{ meminfo_2g_busy, 10, 20, 2048, 82, 406092 },
		/* 16 GiB minus the kernel: 10.27 -> 10 */
		{ meminfo_rhel6, 10, 20, 2048, 10, 3266141 },
		/* Proxmox's KSM_SLEEP_MSEC=100: 1677721600 / 24684084 = 67 */
		{ meminfo_24g, 100, 20, 2048, 67, 4936816 },
		/* KSM_THRES_CONST wins when above the percentage */
		{ meminfo_2g_busy, 10, 0, 2048, 82, 2048 },
		{ meminfo_2g_busy, 10, 20, 1000000, 82, 1000000 },
		/* asking for 5 ms still gives 10: the floor applies to any value */
		{ meminfo_2g_busy, 1, 20, 2048, 10, 406092 },
		{ "MemTotal: 8192 kB\n", 10, 20, 2048, 20480, 2048 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tune_config c;
		tune_config_defaults(&c);
		c.sleep_msec = cases[i].sleep_msec;
		c.thres_coef = cases[i].coef;
		c.thres_const = cases[i].cnst;
		struct tune_meminfo m;
		assert_int_equal(tune_meminfo_parse(cases[i].meminfo, &m), 0);
		struct classic_state st;
		struct tune_decision d;
		memset(&d, 0, sizeof(d));
		classic_init(&c, m.total, &st, &d);
		assert_int_equal(st.sleep, cases[i].sleep);
		assert_int_equal(st.thres, cases[i].thres);
		assert_int_equal(st.npages, 0);
		char line[64];
		assert_int_equal(d.nlog, 3);
		snprintf(line, sizeof(line), "total %" PRId64, m.total);
		assert_string_equal(d.log[0], line);
		snprintf(line, sizeof(line), "sleep %" PRId64, cases[i].sleep);
		assert_string_equal(d.log[1], line);
		snprintf(line, sizeof(line), "thres %" PRId64, cases[i].thres);
		assert_string_equal(d.log[2], line);
	}
}

static void step(const struct tune_config *c, struct classic_state *st, int64_t free, int64_t committed,
		 struct tune_decision *d)
{
	struct tune_input in;
	memset(&in, 0, sizeof(in));
	set_free(&in, free);
	set_committed(&in, committed);
	memset(d, 0, sizeof(*d));
	classic_step(c, st, &in, d);
}

static const char *value_of(const struct tune_decision *d, const char *name)
{
	for (int b = 0; b < d->nbatches; b++)
		for (int i = 0; i < d->batch[b].n; i++)
			if (strcmp(d->batch[b].name[i], name) == 0)
				return d->batch[b].value[i];
	return NULL;
}

/* The recorded busy 2 GiB host, minute after minute. */
static void test_classic_boost_decay_clamp_stop_start(void **state)
{
	(void)state;
	struct tune_config c;
	tune_config_defaults(&c);
	struct classic_state st;
	classic_init(&c, 2030464, &st, NULL);  /* sleep 82, thres 406092 */
	struct tune_decision d;

	/* Guests commit 1.8 GiB and free is low: boost from 0. */
	step(&c, &st, 331556, 1887436, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_int_equal(d.nlog, 4);
	assert_string_equal(d.log[0], "committed 1887436 free 331556");
	assert_string_equal(d.log[1], "2293528 > 2030464, start ksm");
	assert_string_equal(d.log[2], "331556 < 406092, boost");
	assert_string_equal(d.log[3], "KSMCTL start 300 82");
	assert_int_equal(d.log_before, 3);
	assert_string_equal(value_of(&d, "pages_to_scan"), "300");
	assert_string_equal(value_of(&d, "sleep_millisecs"), "82");
	assert_string_equal(value_of(&d, "run"), "1");
	/* the writes in the script's order: pages_to_scan, sleep_millisecs, run */
	assert_string_equal(d.batch[0].name[0], "pages_to_scan");
	assert_string_equal(d.batch[0].name[1], "sleep_millisecs");
	assert_string_equal(d.batch[0].name[2], "run");

	/* 600, 900, 1200, then the 1250 ceiling */
	static const int64_t boosts[] = { 600, 900, 1200, 1250, 1250 };
	for (size_t i = 0; i < 5; i++) {
		step(&c, &st, 331556, 1887436, &d);
		assert_int_equal(d.npages, boosts[i]);
	}
	/* free == thres is not "below": decay, with the script's "> thres" message */
	step(&c, &st, 406092, 1887436, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_int_equal(d.npages, 1200);
	assert_string_equal(d.log[2], "406092 > 406092, decay");
	/* Plenty free but committed + thres >= total: still started, decaying. */
	step(&c, &st, 1500000, 1700000, &d);
	assert_int_equal(d.npages, 1150);
	assert_string_equal(d.log[1], "2106092 > 2030464, start ksm");
	/* committed + thres == total is not "below": no stop */
	step(&c, &st, 1500000, 2030464 - 406092, &d);
	assert_int_equal(d.action, TUNE_START);
	/* Guests gone: stop with run=0, never 2. */
	step(&c, &st, 1500000, 0, &d);
	assert_int_equal(d.action, TUNE_STOP);
	assert_int_equal(d.nbatches, 1);
	assert_int_equal(d.batch[0].n, 1);
	assert_string_equal(value_of(&d, "run"), "0");
	assert_string_equal(d.log[0], "committed 0 free 1500000");
	assert_string_equal(d.log[1], "406092 < 2030464 and free > 406092, stop ksm");
	assert_int_equal(d.log_before, 1);
	/* Low free alone starts it, and npages went on from 1100, not from 0. */
	step(&c, &st, 300000, 0, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_string_equal(d.log[1], "406092 > 2030464, start ksm");  /* sic */
	assert_int_equal(d.npages, 1250);
	/* Decay down to the floor of 64. */
	struct classic_state fresh;
	classic_init(&c, 2030464, &fresh, NULL);
	step(&c, &fresh, 500000, 1900000, &d);
	assert_int_equal(d.npages, 64);  /* 0 - 50 -> 64 */
	assert_string_equal(d.log[3], "KSMCTL start 64 82");

	/* A minimum above the maximum: the minimum is checked first and wins. */
	c.npages_min = 2000;
	classic_init(&c, 2030464, &fresh, NULL);
	step(&c, &fresh, 300000, 1900000, &d);
	assert_int_equal(d.npages, 2000);
}

static void test_classic_with_the_advisor_on(void **state)
{
	(void)state;
	struct tune_config c;
	tune_config_defaults(&c);
	struct classic_state st;
	classic_init(&c, 2030464, &st, NULL);
	struct tune_input in;
	memset(&in, 0, sizeof(in));
	set_free(&in, 300000);
	in.eng.present = true;
	in.eng.s.present = 1ull << SP_ADVISOR_MODE;
	in.eng.s.value[SP_ADVISOR_MODE] = 1;
	struct tune_decision d;
	memset(&d, 0, sizeof(d));
	classic_step(&c, &st, &in, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_null(value_of(&d, "pages_to_scan"));
	assert_string_equal(value_of(&d, "sleep_millisecs"), "82");
	assert_non_null(strstr(d.log[d.nlog - 2], "advisor"));
	assert_string_equal(d.log[d.nlog - 1], "KSMCTL start 300 82");
}

/* Bash doing the script's arithmetic, written from its formulas: 64-bit
 * $(( )), [ -lt ] / [ -gt ] comparisons. One line of output per result. */
static const char shell_model[] =
	"while read -r total smsec coef tconst boost decay nmin nmax nsteps; do\n"
	"  s=$(( smsec * 16 * 1024 * 1024 / total ))\n"
	"  [ $s -le 10 ] && s=10\n"
	"  t=$(( total * coef / 100 ))\n"
	"  [ $tconst -gt $t ] && t=$tconst\n"
	"  echo \"init $s $t\"\n"
	"  n=0\n"
	"  for ((k = 0; k < nsteps; k++)); do\n"
	"    read -r f c\n"
	"    if [ $((c + t)) -lt $total -a $f -gt $t ]; then echo stop; continue; fi\n"
	"    if [ $f -lt $t ]; then n=$((n + boost)); else n=$((n + decay)); fi\n"
	"    if [ $n -lt $nmin ]; then n=$nmin; elif [ $n -gt $nmax ]; then n=$nmax; fi\n"
	"    echo \"start $n $s\"\n"
	"  done\n"
	"done\n";

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static int64_t rnd(int64_t lo, int64_t hi)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return lo + (int64_t)(rng % (uint64_t)(hi - lo + 1));
}

static void test_classic_matches_bash_arithmetic(void **state)
{
	(void)state;
	if (access("/bin/bash", X_OK) != 0)
		SKIP_BECAUSE("bash is not installed");
	char *dir = make_tempdir();
	char script[512], input[512];
	snprintf(script, sizeof(script), "%s/model.sh", dir);
	snprintf(input, sizeof(input), "%s/cases", dir);
	write_file_p(script, shell_model);
	FILE *f = fopen(input, "w");
	assert_non_null(f);

	enum { CASES = 2000, STEPS = 6 };
	size_t cap = 1 << 20, len = 0;
	char *expect = malloc(cap);
	expect[0] = 0;
	for (int i = 0; i < CASES; i++) {
		struct tune_config c;
		tune_config_defaults(&c);
		/* From 64 MiB to 64 TiB, with odd sizes; big values that would
		 * break awk's number printing are fine in 64-bit arithmetic. */
		int64_t total = rnd(0, 3) == 0 ? rnd(65536, 4194304) : rnd(4194304, 68719476736LL);
		c.sleep_msec = rnd(0, 3) ? 10 : rnd(0, 1000);
		c.thres_coef = rnd(0, 100);
		c.thres_const = rnd(0, 3) ? 2048 : rnd(0, total);
		c.npages_boost = rnd(0, 3) ? 300 : rnd(-2000, 5000);
		c.npages_decay = rnd(0, 3) ? -50 : rnd(-5000, 2000);
		c.npages_min = rnd(0, 3) ? 64 : rnd(0, 3000);
		c.npages_max = rnd(0, 3) ? 1250 : rnd(0, 100000);
		fprintf(f, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64
			" %" PRId64 " %d\n", total, c.sleep_msec, c.thres_coef, c.thres_const, c.npages_boost,
			c.npages_decay, c.npages_min, c.npages_max, STEPS);
		struct classic_state st;
		classic_init(&c, total, &st, NULL);
		len += (size_t)snprintf(expect + len, cap - len, "init %" PRId64 " %" PRId64 "\n", st.sleep,
					st.thres);
		for (int k = 0; k < STEPS; k++) {
			/* around the threshold, where the decisions change */
			int64_t free = rnd(0, 2) ? rnd(0, total) : st.thres + rnd(-1, 1);
			int64_t committed = rnd(0, 2) ? rnd(0, total) : total - st.thres + rnd(-1, 1);
			if (free < 0)
				free = 0;
			if (committed < 0)
				committed = 0;
			fprintf(f, "%" PRId64 " %" PRId64 "\n", free, committed);
			struct tune_decision d;
			step(&c, &st, free, committed, &d);
			if (d.action == TUNE_STOP)
				len += (size_t)snprintf(expect + len, cap - len, "stop\n");
			else
				len += (size_t)snprintf(expect + len, cap - len, "start %" PRId64 " %" PRId64 "\n",
							d.npages, st.sleep);
			assert_true(len < cap - 64);
		}
	}
	fclose(f);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "bash %s < %s", script, input);
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	struct cmd_result r;
	run_cmd(argv, NULL, -1, &r);
	assert_int_equal(r.status, 0);
	if (strcmp(r.out, expect) != 0) {
		/* Show the first difference. */
		size_t i = 0;
		while (r.out[i] && r.out[i] == expect[i])
			i++;
		size_t from = i > 80 ? i - 80 : 0;
		fail_msg("bash and classic_step differ near:\nbash: %.160s\nours: %.160s", r.out + from,
			 expect + from);
	}
	cmd_result_free(&r);
	free(expect);
	remove_tree(dir);
	free(dir);
}

/* ------------------------------------------------------------------------
 * adaptive
 * ---------------------------------------------------------------------- */

#define GIB_KB (1024LL * 1024)

struct world {
	struct tune_config c;
	struct adaptive_state st;
	struct tune_input in;
	struct tune_proc p[4];
};

static void world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	tune_config_defaults(&w->c);
	w->c.policy = TUNE_ADAPTIVE;
	adaptive_init(&w->st);
	w->in.now = 1000;
	w->in.page_size = 4096;
	w->in.mem.total = 24 * GIB_KB;  /* thres = 20% = 5033164 kB */
	w->in.mem.have_available = true;
	w->in.mem.available = 20 * GIB_KB;
	w->in.psi_some_avg10 = 0;
	w->in.procs = w->p;
	w->in.eng.present = true;
	w->in.eng.has_advisor = true;
	w->in.eng.cpu_seconds = 1;
	w->in.eng.cpu_pid = 77;
	sp_sample *s = &w->in.eng.s;
	s->page_size = 4096;
	static const sp_param ps[] = { SP_RUN, SP_PAGES_TO_SCAN, SP_SLEEP_MILLISECS, SP_ADVISOR_MODE,
				       SP_FULL_SCANS, SP_PAGES_SHARING, SP_PAGES_SHARED, SP_GENERAL_PROFIT,
				       SP_PAGES_SCANNED, SP_KSM_ZERO_PAGES };
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
		s->present |= 1ull << ps[i];
	s->value[SP_PAGES_TO_SCAN] = 100;
	s->value[SP_SLEEP_MILLISECS] = 20;
}

static void guest(struct world *w, int i, pid_t pid, int64_t kb)
{
	w->p[i].pid = pid;
	w->p[i].start = (uint64_t)pid * 10;
	w->p[i].kb = kb;
	snprintf(w->p[i].comm, sizeof(w->p[i].comm), "qemu-system-x86");
	if ((size_t)i + 1 > w->in.nprocs)
		w->in.nprocs = (size_t)i + 1;
}

/* One step; the engine then does what was written. */
static void astep(struct world *w, struct tune_decision *d)
{
	memset(d, 0, sizeof(*d));
	adaptive_step(&w->c, &w->st, &w->in, d);
	for (int b = 0; b < d->nbatches; b++)
		for (int i = 0; i < d->batch[b].n; i++) {
			int p = sp_param_lookup(d->batch[b].name[i]);
			assert_true(p >= 0);
			int64_t v = strcmp(d->batch[b].value[i], "scan-time") == 0 ? 1
				    : strcmp(d->batch[b].value[i], "none") == 0	   ? 0
										   : strtoll(d->batch[b].value[i], NULL, 10);
			w->in.eng.s.value[p] = v;
		}
}

/* ksmd finishes `scans` full scans using `cpu` seconds, earning `gain_mib`. */
static void ksmd_works(struct world *w, int scans, double cpu, int64_t gain_mib, double secs)
{
	w->in.now += secs;
	w->in.eng.s.value[SP_FULL_SCANS] += scans;
	w->in.eng.cpu_seconds += cpu;
	w->in.eng.s.value[SP_PAGES_SHARING] += gain_mib * 256;
	w->in.eng.s.value[SP_GENERAL_PROFIT] += gain_mib * 1048576;
	w->in.eng.s.value[SP_PAGES_SCANNED] += scans * 524288;
}

static void test_adaptive_idle_without_pressure(void **state)
{
	(void)state;
	struct world w;
	world_init(&w);
	struct tune_decision d;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_NOTHING);
	assert_non_null(strstr(d.reason, "no process has mergeable memory"));
	/* A guest without pressure: nothing, and a running ksmd is stopped. */
	guest(&w, 0, 500, 2 * GIB_KB);
	w.in.eng.s.value[SP_RUN] = 1;
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_STOP);
	assert_string_equal(value_of(&d, "run"), "0");
	assert_non_null(strstr(d.reason, "not under pressure"));
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_NOTHING);
	/* Pressure arrives: the known guest is scanned at once. */
	w.in.mem.available = 4 * GIB_KB;
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_non_null(strstr(d.reason, "came under pressure"));
}

static void test_adaptive_new_guest_merge_then_stop(void **state)
{
	(void)state;
	struct world w;
	world_init(&w);
	w.in.mem.available = 4 * GIB_KB;  /* below thres: under pressure */
	struct tune_decision d;
	astep(&w, &d);  /* start-up, no guest yet */
	assert_int_equal(d.action, TUNE_NOTHING);

	/* A 2 GiB guest appears: start within this step. */
	guest(&w, 0, 4242, 2 * GIB_KB);
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_non_null(strstr(d.reason, "new mergeable process 4242 (qemu-system-x86)"));
	/* 524288 pages in 2 s of 10 ms batches: 200 batches of 2622 pages; the
	 * CPU cap for 50% at 2 us a page is 5000, not reached. */
	assert_string_equal(value_of(&d, "pages_to_scan"), "2622");
	assert_string_equal(value_of(&d, "sleep_millisecs"), "10");
	assert_string_equal(value_of(&d, "run"), "1");
	assert_null(value_of(&d, "advisor_mode"));  /* already none */
	assert_int_equal(w.st.phase, AP_MERGING);

	/* The first full scan takes checksums: not judged. */
	ksmd_works(&w, 1, 1.0, -32, 2);
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_NOTHING);
	assert_non_null(strstr(d.reason, "first full scan"));
	/* The second merges: 1.5 GiB for 1 CPU-second pays; the advisor
	 * takes over pacing, in two transactions. */
	ksmd_works(&w, 1, 1.0, 1536, 2);
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_true(d.profit_rate > 1500);
	assert_int_equal(d.nbatches, 2);
	assert_string_equal(value_of(&d, "advisor_max_cpu"), "50");
	assert_string_equal(value_of(&d, "advisor_target_scan_time"), "2");
	assert_string_equal(value_of(&d, "advisor_min_pages_to_scan"), "2622");
	assert_string_equal(d.batch[1].name[0], "advisor_mode");
	assert_string_equal(d.batch[1].value[0], "scan-time");
	assert_int_equal(w.st.phase, AP_SUSTAINED);
	/* Nothing new: stop spending CPU. run=0, merged pages stay. */
	ksmd_works(&w, 1, 0.8, 0, 2);
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_STOP);
	assert_string_equal(value_of(&d, "run"), "0");
	assert_non_null(strstr(d.reason, "below KSM_PROFIT_MIN=16"));
	assert_non_null(strstr(d.reason, "probe again in 300 s"));
	/* Idle under pressure: no CPU until the probe or a new guest. */
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_NOTHING);
	assert_non_null(strstr(d.reason, "next probe"));
	/* A second guest: at once. */
	guest(&w, 1, 4300, 1 * GIB_KB);
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_non_null(strstr(d.reason, "4300"));
	/* the advisor was on: it goes off so pages_to_scan can be written */
	assert_string_equal(value_of(&d, "advisor_mode"), "none");
	assert_string_equal(value_of(&d, "pages_to_scan"), "3933");
	ksmd_works(&w, 1, 1, 0, 3);
	astep(&w, &d);
	ksmd_works(&w, 1, 1, 2, 3);
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_STOP);
	/* Probes back off: 300 then 600 s. */
	assert_non_null(strstr(d.reason, "600 s"));
	w.in.now += 599;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_NOTHING);
	w.in.now += 2;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_non_null(strstr(d.reason, "probe"));
}

static void test_adaptive_pressure_signals(void **state)
{
	(void)state;
	struct world w;
	world_init(&w);
	guest(&w, 0, 600, 512 * 1024);
	struct tune_decision d;
	/* PSI stalls count as pressure. */
	w.in.psi_some_avg10 = 12.5;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_non_null(strstr(d.reason, "PSI memory some avg10 12.50%"));
	/* Hysteresis: just above thres keeps it scanning, 10% above stops. */
	w.in.psi_some_avg10 = 0;
	w.in.mem.available = 5033164 + 100000;
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_NOTHING);
	w.in.mem.available = 5033164 + 503317;
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_STOP);
	assert_non_null(strstr(d.reason, "no longer under pressure"));
	/* The guest exits: nothing to do. */
	w.in.nprocs = 0;
	w.in.eng.s.value[SP_RUN] = 1;
	w.in.now += 1;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_STOP);
	assert_non_null(strstr(d.reason, "no process has mergeable memory"));
	/* PSI off (KSM_PSI_THRES=0) ignores it. */
	world_init(&w);
	w.c.psi_thres = 0;
	guest(&w, 0, 600, 512 * 1024);
	w.in.psi_some_avg10 = 90;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_NOTHING);
}

static void test_adaptive_without_kernel_advisor(void **state)
{
	(void)state;
	struct world w;
	world_init(&w);
	w.in.eng.has_advisor = false;
	w.in.eng.s.present &= ~(1ull << SP_ADVISOR_MODE);
	w.in.mem.available = 1 * GIB_KB;
	guest(&w, 0, 700, 2 * GIB_KB);
	struct tune_decision d;
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_non_null(strstr(d.reason, "start-up under pressure"));
	ksmd_works(&w, 1, 1, 0, 2);
	astep(&w, &d);
	/* Paying, but a full scan took 8 s for a 2 s target: pace up here. */
	ksmd_works(&w, 1, 1, 1000, 8);
	astep(&w, &d);
	assert_int_equal(d.action, TUNE_START);
	assert_null(value_of(&d, "advisor_mode"));
	assert_non_null(value_of(&d, "pages_to_scan"));
	assert_true(strtoll(value_of(&d, "pages_to_scan"), NULL, 10) > 2622);
	assert_non_null(strstr(d.reason, "pacing"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_meminfo_and_psi_parse),
		cmocka_unit_test(test_classic_startup_on_recorded_hosts),
		cmocka_unit_test(test_classic_boost_decay_clamp_stop_start),
		cmocka_unit_test(test_classic_with_the_advisor_on),
		cmocka_unit_test(test_classic_matches_bash_arithmetic),
		cmocka_unit_test(test_adaptive_idle_without_pressure),
		cmocka_unit_test(test_adaptive_new_guest_merge_then_stop),
		cmocka_unit_test(test_adaptive_pressure_signals),
		cmocka_unit_test(test_adaptive_without_kernel_advisor),
	};
	return cmocka_run_group_tests_name("ksmtuned_policy", tests, NULL, NULL);
}
