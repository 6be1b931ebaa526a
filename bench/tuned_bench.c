/* SPDX-License-Identifier: MIT */
/*
 * tuned_bench: three ways of running kernel KSM on the same workload, one
 * after the other in one run, on the same host:
 *   fixed     the kernel's default knobs and run=1 (what ksm.service does)
 *   classic   ksmtuned, KSM_POLICY=classic (the 2009 algorithm)
 *   adaptive  ksmtuned, KSM_POLICY=adaptive
 * The workload is a guest-like process (comm "qemu-system-x86", as QEMU's
 * threads are named) that maps --guest-mib of memory, madvise(MADV_MERGEABLE)s
 * it as QEMU does, fills it like a booted guest (a quarter zero pages, half
 * from a pool of 1024 shared contents, a quarter unique) and then sits idle.
 * It starts --lead seconds after the controller, while memory is under
 * pressure, and each phase lasts --duration seconds after it.
 *
 * Pressure: a balloon (plain anonymous memory, not mergeable) leaves
 * --leave-gib GiB available, and KSM_THRES_COEF is set so that both
 * policies' thres lies above what is free even after merging (see
 * docs/tuning.md for why not 20%: no swap, a shared host).
 *
 * Measured every 0.5 s: general_profit (memory saved, net of KSM's
 * metadata), pages_sharing, ksmd's CPU time. Written: a CSV, an SVG plot,
 * and a summary with the targets: adaptive reaches 90% of the savings at
 * least 3x sooner than classic, and spends less ksmd CPU over the run.
 *
 * Holds /run/merge-bench.lock for the whole run; every knob of
 * /sys/kernel/mm/ksm is saved first and put back at the end, also after
 * SIGINT/SIGTERM. Needs root.
 */
#include <samepage.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KSM "/sys/kernel/mm/ksm/"
#define GIB (1024.0 * 1024 * 1024)
#define MIB (1024.0 * 1024)
#define SAMPLE_MS 500
#define NPHASES 3

static volatile sig_atomic_t stop_now;

static void on_signal(int sig)
{
	(void)sig;
	stop_now = 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	if (s <= 0)
		return;
	struct timespec ts = { (time_t)s, (long)((s - floor(s)) * 1e9) };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_now)
		;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ------------------------------------------------------------------------
 * Knobs: save everything, put everything back
 * ---------------------------------------------------------------------- */

static const char *const knob_order[] = {
	"advisor_mode", "merge_across_nodes", "max_page_sharing", "use_zero_pages",
	"stable_node_chains_prune_millisecs", "smart_scan", "advisor_max_cpu",
	"advisor_min_pages_to_scan", "advisor_max_pages_to_scan", "advisor_target_scan_time",
	"pages_to_scan", "sleep_millisecs", "run",
};
#define NKNOBS (sizeof(knob_order) / sizeof(knob_order[0]))

static char saved[NKNOBS][64];
static bool have_saved;

static int read_text(const char *name, char *buf, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), KSM "%s", name);
	FILE *f = fopen(path, "r");
	buf[0] = 0;
	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f))
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	char *b = strchr(buf, '['), *e = b ? strchr(b, ']') : NULL;  /* "[none] scan-time" */
	if (b && e) {
		memmove(buf, b + 1, (size_t)(e - b - 1));
		buf[e - b - 1] = 0;
	}
	return 0;
}

static int write_text(const char *name, const char *value)
{
	char path[256];
	snprintf(path, sizeof(path), KSM "%s", name);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t r = write(fd, value, strlen(value));
	int e = errno;
	close(fd);
	return r < 0 ? -e : 0;
}

static long long read_num(const char *name)
{
	char buf[64];
	read_text(name, buf, sizeof(buf));
	return strtoll(buf, NULL, 10);
}

static void save_knobs(void)
{
	for (size_t i = 0; i < NKNOBS; i++)
		read_text(knob_order[i], saved[i], sizeof(saved[i]));
	have_saved = true;
}

static void restore_knobs(void)
{
	if (!have_saved)
		return;
	/* Knobs that need no merged pages: unmerge first when they differ. */
	for (size_t i = 0; i < NKNOBS; i++) {
		char now[64];
		read_text(knob_order[i], now, sizeof(now));
		if (strcmp(now, saved[i]) == 0 || !saved[i][0])
			continue;
		if ((!strcmp(knob_order[i], "merge_across_nodes") || !strcmp(knob_order[i], "max_page_sharing")) &&
		    read_num("pages_shared") > 0)
			write_text("run", "2");
		if (!strcmp(knob_order[i], "pages_to_scan") && !strcmp(saved[0], "scan-time"))
			continue;  /* the advisor's */
		int r = write_text(knob_order[i], saved[i]);
		if (r)
			fprintf(stderr, "tuned_bench: restoring %s=%s failed: %s\n", knob_order[i], saved[i],
				strerror(-r));
	}
	/* Leaving scan-time reset pages_to_scan: once more. */
	char pts[64];
	read_text("pages_to_scan", pts, sizeof(pts));
	if (strcmp(saved[0], "scan-time") && strcmp(pts, saved[10]))
		write_text("pages_to_scan", saved[10]);
	int bad = 0;
	for (size_t i = 0; i < NKNOBS; i++) {
		char now[64];
		read_text(knob_order[i], now, sizeof(now));
		if (strcmp(now, saved[i]) && !(i == 10 && !strcmp(saved[0], "scan-time"))) {
			fprintf(stderr, "tuned_bench: knob %s is %s, was %s\n", knob_order[i], now, saved[i]);
			bad++;
		}
	}
	if (!bad)
		fprintf(stderr, "tuned_bench: every knob of " KSM " restored\n");
	have_saved = false;
}

/* Every phase starts from the kernel's defaults, nothing merged. */
static void reset_ksm(void)
{
	write_text("run", "2");
	write_text("advisor_mode", "none");
	write_text("pages_to_scan", "100");
	write_text("sleep_millisecs", "20");
	write_text("advisor_max_cpu", "70");
	write_text("advisor_min_pages_to_scan", "500");
	write_text("advisor_max_pages_to_scan", "30000");
	write_text("advisor_target_scan_time", "200");
	write_text("smart_scan", "1");
	write_text("run", "0");
}

/* ------------------------------------------------------------------------
 * Children: the guest, the daemons; the balloon
 * ---------------------------------------------------------------------- */

static pid_t guest_pid, daemon_pid;
static int guest_pipe = -1, guest_ready = -1;
static void *balloon;
static size_t balloon_len;
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Word w of page i: zero, from the shared pool, or unique. */
static uint64_t guest_word(size_t i, size_t w)
{
	switch (i % 4) {
	case 0:
		return 0;
	case 3:
		return mix(((uint64_t)i << 12) + w + 0x5555555555ull);
	default:
		return mix(((mix(i) % 1024) << 12) + w);
	}
}

static void guest_start(size_t mib)
{
	int to_child[2], ready[2];
	if (pipe(to_child) || pipe(ready))
		die("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		close(to_child[1]);
		close(ready[0]);
		signal(SIGINT, SIG_IGN);
		if (balloon)
			munmap(balloon, balloon_len);  /* the host's, not the guest's */
		prctl(PR_SET_NAME, "qemu-system-x86", 0, 0, 0);
		size_t len = mib << 20, ps = (size_t)sysconf(_SC_PAGESIZE), n = len / ps;
		uint64_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			_exit(1);
		madvise(m, len, MADV_NOHUGEPAGE);  /* KSM merges 4 KiB pages; QEMU guests often have THP off */
		if (madvise(m, len, MADV_MERGEABLE))  /* QEMU does this before the guest runs */
			_exit(1);
		size_t words = ps / 8;
		for (size_t i = 0; i < n; i++)
			for (size_t w = 0; w < words; w++)
				m[i * words + w] = guest_word(i, w);
		char ok = 'y';
		if (write(ready[1], &ok, 1) != 1)
			_exit(1);
		char b;
		ssize_t r = read(to_child[0], &b, 1);  /* idle until told */
		for (size_t i = 0; i < n; i++)
			if (m[i * words] != guest_word(i, 0) || m[i * words + words - 1] != guest_word(i, words - 1))
				_exit(3);  /* merging changed the memory */
		_exit(r == 1 ? 0 : 2);
	}
	close(to_child[0]);
	close(ready[1]);
	guest_pid = pid;
	guest_pipe = to_child[1];
	/* Do not wait for the fill: the controllers see the guest as it boots. */
	guest_ready = ready[0];
}

static int guest_stop(void)
{
	if (guest_pid <= 0)
		return 0;
	char b = 'x';
	if (write(guest_pipe, &b, 1) != 1)
		kill(guest_pid, SIGKILL);
	close(guest_pipe);
	close(guest_ready);
	int st;
	waitpid(guest_pid, &st, 0);
	guest_pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void daemon_start(const char *prog, const char *conf, const char *out)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		unsetenv("NOTIFY_SOCKET");
		execl(prog, prog, "--foreground", "--config", conf, (char *)NULL);
		_exit(127);
	}
	daemon_pid = pid;
}

static void daemon_stop(void)
{
	if (daemon_pid <= 0)
		return;
	kill(daemon_pid, SIGTERM);
	int st;
	waitpid(daemon_pid, &st, 0);
	daemon_pid = 0;
}

static void balloon_free(void)
{
	if (balloon) {
		munmap(balloon, balloon_len);
		balloon = NULL;
	}
}

static void cleanup(void)
{
	guest_stop();
	daemon_stop();
	balloon_free();
	restore_knobs();
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tuned_bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	cleanup();
	exit(1);
}

static long long meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long long v = -1;
	size_t kl = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':')
			v = strtoll(line + kl + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static void balloon_inflate(double bytes)
{
	if (bytes < GIB)
		return;
	balloon_len = (size_t)bytes & ~(size_t)0xfffff;
	balloon = mmap(NULL, balloon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (balloon == MAP_FAILED) {
		balloon = NULL;
		die("balloon mmap: %s", strerror(errno));
	}
	madvise(balloon, balloon_len, MADV_NOHUGEPAGE);
	for (size_t off = 0; off < balloon_len; off += 4096)
		((volatile uint64_t *)balloon)[off / 8] = off | 1;
}

/* ------------------------------------------------------------------------
 * Measuring
 * ---------------------------------------------------------------------- */

struct sample {
	double t;          /* seconds since the guest started */
	double profit;     /* general_profit, bytes */
	double sharing;    /* pages_sharing */
	double cpu;        /* ksmd CPU-seconds since the phase began */
	long long run, pages_to_scan, full_scans;
	double avail;      /* MemAvailable, bytes */
};

struct phase {
	const char *name;
	const char *color;
	struct sample *s;
	size_t n, cap;
	double t90;        /* seconds after the guest started, < 0 never */
	double cpu_total;  /* over the whole phase */
	double cpu_after;  /* after the guest started */
	double final_profit, max_profit;
	int guest_status;
	bool disturbed;
};

static struct phase phases[NPHASES] = {
	{ "fixed", "#777777", NULL, 0, 0, -1, 0, 0, 0, 0, 0, false },
	{ "classic", "#d95f02", NULL, 0, 0, -1, 0, 0, 0, 0, 0, false },
	{ "adaptive", "#1b61c9", NULL, 0, 0, -1, 0, 0, 0, 0, 0, false },
};

static void record(struct phase *p, sp_ksm *k, double t, double cpu0)
{
	sp_sample s;
	if (sp_ksm_sample(k, &s))
		return;
	sp_savings sav;
	sp_savings_compute(&s, &sav);
	sp_ksmd_info info;
	double cpu = sp_ksmd_info_read(k, &info) == 0 ? info.cpu_seconds : cpu0;
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 1024;
		p->s = realloc(p->s, p->cap * sizeof(*p->s));
		if (!p->s)
			die("out of memory");
	}
	struct sample *x = &p->s[p->n++];
	int64_t v = 0;
	x->t = t;
	x->profit = (double)sav.profit_bytes;
	sp_sample_get(&s, SP_PAGES_SHARING, &v);
	x->sharing = (double)v;
	x->cpu = cpu - cpu0;
	sp_sample_get(&s, SP_RUN, &v);
	x->run = v;
	sp_sample_get(&s, SP_PAGES_TO_SCAN, &v);
	x->pages_to_scan = v;
	sp_sample_get(&s, SP_FULL_SCANS, &v);
	x->full_scans = v;
	x->avail = (double)meminfo_kb("MemAvailable") * 1024;
}

struct opts {
	size_t guest_mib;
	double duration, lead;
	double leave_gib;
	const char *ksmtuned, *out, *svg;
	bool only[NPHASES];
};

static void write_conf(const char *path, const char *policy, int coef, const char *log)
{
	FILE *f = fopen(path, "w");
	if (!f)
		die("%s: %s", path, strerror(errno));
	fprintf(f, "# written by tuned_bench\nKSM_POLICY=%s\nKSM_THRES_COEF=%d\nDEBUG=1\nLOGFILE=%s\nPIDFILE=\n",
		policy, coef, log);
	fclose(f);
}

static void run_phase(const struct opts *o, int i, sp_ksm *k, int coef)
{
	struct phase *p = &phases[i];
	char conf[512], log[512], out[512];
	reset_ksm();
	snprintf(conf, sizeof(conf), "%s/%s.conf", o->out, p->name);
	snprintf(log, sizeof(log), "%s/%s.log", o->out, p->name);
	snprintf(out, sizeof(out), "%s/%s.out", o->out, p->name);
	unlink(log);
	sp_ksmd_info info;
	double cpu0 = sp_ksmd_info_read(k, &info) == 0 ? info.cpu_seconds : 0;
	double t0 = now_s() + o->lead;  /* when the guest starts */
	fprintf(stderr, "tuned_bench: phase %s: controller now, guest in %.0f s, then %.0f s\n", p->name, o->lead,
		o->duration);
	if (i == 0) {
		write_text("run", "1");  /* the kernel's default knobs: ksm.service */
	} else {
		write_conf(conf, i == 1 ? "classic" : "adaptive", coef, log);
		daemon_start(o->ksmtuned, conf, out);
	}
	bool started = false;
	double next = now_s();
	while (!stop_now) {
		double t = now_s() - t0;
		if (!started && t >= 0) {
			guest_start(o->guest_mib);
			started = true;
		}
		if (t > o->duration)
			break;
		record(p, k, t, cpu0);
		if (p->n && p->s[p->n - 1].avail < 1.5 * GIB && balloon) {
			fprintf(stderr, "tuned_bench: MemAvailable below 1.5 GiB: releasing the balloon\n");
			balloon_free();
			p->disturbed = true;
		}
		next += SAMPLE_MS / 1000.0;
		sleep_s(next - now_s());
	}
	daemon_stop();
	p->guest_status = guest_stop();
	write_text("run", "0");
	/* Summarise. */
	for (size_t j = 0; j < p->n; j++) {
		if (p->s[j].profit > p->max_profit)
			p->max_profit = p->s[j].profit;
	}
	if (p->n) {
		p->final_profit = p->s[p->n - 1].profit;
		p->cpu_total = p->s[p->n - 1].cpu;
		double at0 = 0;
		for (size_t j = 0; j < p->n; j++)
			if (p->s[j].t <= 0)
				at0 = p->s[j].cpu;
		p->cpu_after = p->cpu_total - at0;
	}
}

/* ------------------------------------------------------------------------
 * The plot
 * ---------------------------------------------------------------------- */

static double nice_step(double range, int ticks)
{
	double raw = range / ticks, mag = pow(10, floor(log10(raw))), r = raw / mag;
	return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

static void panel(FILE *f, int y0, int h, const char *title, const char *unit, double tmin, double tmax,
		  double vmax, bool cpu, double ref90)
{
	const int x0 = 80, w = 760;
	double step = nice_step(vmax, 5);
	vmax = ceil(vmax / step) * step;
	fprintf(f, "<text x='%d' y='%d' font-size='15' font-weight='bold'>%s</text>\n", x0, y0 - 10, title);
	fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#333'/>\n", x0, y0, w, h);
	for (double v = 0; v <= vmax + step / 2; v += step) {
		double y = y0 + h - v / vmax * h;
		fprintf(f, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/>\n", x0, y, x0 + w, y);
		fprintf(f, "<text x='%d' y='%.1f' font-size='11' text-anchor='end'>%g</text>\n", x0 - 6, y + 4, v);
	}
	double ts = nice_step(tmax - tmin, 10);
	for (double t = ceil(tmin / ts) * ts; t <= tmax; t += ts) {
		double x = x0 + (t - tmin) / (tmax - tmin) * w;
		fprintf(f, "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#eee'/>\n", x, y0, x, y0 + h);
		fprintf(f, "<text x='%.1f' y='%d' font-size='11' text-anchor='middle'>%g</text>\n", x, y0 + h + 15, t);
	}
	fprintf(f, "<text x='%d' y='%d' font-size='12' text-anchor='middle'>seconds after the guest started "
		   "(controller started at %g s)</text>\n", x0 + w / 2, y0 + h + 32, tmin);
	fprintf(f, "<text x='%d' y='%d' font-size='12' transform='rotate(-90 %d %d)' text-anchor='middle'>%s</text>\n",
		24, y0 + h / 2, 24, y0 + h / 2, unit);
	double x0t = x0 + (0 - tmin) / (tmax - tmin) * w;
	fprintf(f, "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#000' stroke-dasharray='4 3'/>\n", x0t, y0,
		x0t, y0 + h);
	if (!cpu && ref90 > 0) {
		double y = y0 + h - ref90 / MIB / vmax * h;
		fprintf(f, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#2a2' stroke-dasharray='6 4'/>\n", x0, y,
			x0 + w, y);
		fprintf(f, "<text x='%d' y='%.1f' font-size='11' fill='#2a2' text-anchor='end'>90%% of the savings</text>\n",
			x0 + w - 4, y - 4);
	}
	for (int i = 0; i < NPHASES; i++) {
		const struct phase *p = &phases[i];
		if (!p->n)
			continue;
		fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", p->color);
		for (size_t j = 0; j < p->n; j++) {
			double v = cpu ? p->s[j].cpu : p->s[j].profit / MIB;
			if (v < 0)
				v = 0;
			fprintf(f, "%.1f,%.1f ", x0 + (p->s[j].t - tmin) / (tmax - tmin) * w, y0 + h - v / vmax * h);
		}
		fprintf(f, "'/>\n");
		if (!cpu && p->t90 >= 0) {
			double x = x0 + (p->t90 - tmin) / (tmax - tmin) * w, y = y0 + h - ref90 / MIB / vmax * h;
			fprintf(f, "<circle cx='%.1f' cy='%.1f' r='5' fill='%s'/>\n", x, y, p->color);
		}
	}
	int ly = y0 + 18;
	for (int i = 0; i < NPHASES; i++) {
		const struct phase *p = &phases[i];
		if (!p->n)
			continue;
		char label[160];
		if (cpu)
			snprintf(label, sizeof(label), "%s: %.2f CPU-s", p->name, p->cpu_total);
		else if (p->t90 >= 0)
			snprintf(label, sizeof(label), "%s: 90%% after %.1f s", p->name, p->t90);
		else
			snprintf(label, sizeof(label), "%s: never reached 90%%", p->name);
		fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='%s' stroke-width='3'/>\n", x0 + 12, ly - 4,
			x0 + 36, ly - 4, p->color);
		fprintf(f, "<text x='%d' y='%d' font-size='12'>%s</text>\n", x0 + 42, ly, label);
		ly += 17;
	}
}

static void write_svg(const char *path, const struct opts *o, double ref, const char *subtitle)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "tuned_bench: %s: %s\n", path, strerror(errno));
		return;
	}
	double vmax = 1, cmax = 0.1;
	for (int i = 0; i < NPHASES; i++)
		for (size_t j = 0; j < phases[i].n; j++) {
			if (phases[i].s[j].profit / MIB > vmax)
				vmax = phases[i].s[j].profit / MIB;
			if (phases[i].s[j].cpu > cmax)
				cmax = phases[i].s[j].cpu;
		}
	fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='880' height='760' "
		   "font-family='DejaVu Sans, Helvetica, sans-serif'>\n<rect width='100%%' height='100%%' fill='white'/>\n");
	fprintf(f, "<text x='440' y='24' font-size='15' text-anchor='middle' font-weight='bold'>"
		   "KSM on a %zu MiB guest under memory pressure: fixed knobs, classic, adaptive</text>\n",
		o->guest_mib);
	fprintf(f, "<text x='440' y='44' font-size='12' text-anchor='middle'>%s</text>\n", subtitle);
	panel(f, 80, 260, "Memory saved (general_profit)", "MiB", -o->lead, o->duration, vmax, false, 0.9 * ref);
	panel(f, 440, 260, "ksmd CPU time, cumulative", "CPU-seconds", -o->lead, o->duration, cmax, true, 0);
	fprintf(f, "</svg>\n");
	fclose(f);
}

/* ------------------------------------------------------------------------ */

static const char usage[] =
	"Usage: tuned_bench [--guest-mib N] [--duration S] [--lead S] [--leave-gib G]\n"
	"                   [--only fixed,classic,adaptive] [--ksmtuned PATH] [--out DIR] [--svg FILE]\n"
	"Compares kernel KSM with fixed knobs, ksmtuned classic and ksmtuned adaptive on one workload.\n"
	"  --guest-mib N    size of the guest-like process (2048)\n"
	"  --duration S     seconds measured after the guest starts, per phase (240)\n"
	"  --lead S         seconds the controller runs before the guest starts (30)\n"
	"  --leave-gib G    balloon the host down to G GiB available before the guest (8); 0: no balloon\n"
	"  --ksmtuned PATH  the daemon (build/sbin/ksmtuned)\n"
	"  --out DIR        CSV, configurations and daemon logs (build/bench/tuned)\n"
	"  --svg FILE       the plot (docs/tuning.svg)\n"
	"Needs root; holds /run/merge-bench.lock; puts every KSM knob back.\n";

int main(int argc, char **argv)
{
	struct opts o = { 2048, 240, 30, 8, "build/sbin/ksmtuned", "build/bench/tuned", "docs/tuning.svg",
			  { true, true, true } };
	static const struct option lo[] = {
		{ "guest-mib", required_argument, NULL, 'g' }, { "duration", required_argument, NULL, 'd' },
		{ "lead", required_argument, NULL, 'l' },      { "leave-gib", required_argument, NULL, 'b' },
		{ "ksmtuned", required_argument, NULL, 'k' },  { "out", required_argument, NULL, 'o' },
		{ "svg", required_argument, NULL, 's' },       { "only", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },            { NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'g': o.guest_mib = strtoul(optarg, NULL, 10); break;
		case 'd': o.duration = atof(optarg); break;
		case 'l': o.lead = atof(optarg); break;
		case 'b': o.leave_gib = atof(optarg); break;
		case 'k': o.ksmtuned = optarg; break;
		case 'o': o.out = optarg; break;
		case 's': o.svg = optarg; break;
		case 'O':
			for (int i = 0; i < NPHASES; i++)
				o.only[i] = strstr(optarg, phases[i].name) != NULL;
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (geteuid() != 0)
		die("needs root (it changes /sys/kernel/mm/ksm)");
	if (access(KSM "run", W_OK))
		die("no writable " KSM);
	if (access(o.ksmtuned, X_OK))
		die("%s: not executable (make first)", o.ksmtuned);
	if (o.guest_mib < 64 || o.duration < 10 || o.lead < 0)
		die("bad --guest-mib, --duration or --lead");
	mkdir("build", 0755);
	mkdir("build/bench", 0755);
	if (mkdir(o.out, 0755) && errno != EEXIST)
		die("%s: %s", o.out, strerror(errno));

	int lock = open("/run/merge-bench.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (lock < 0)
		die("/run/merge-bench.lock: %s", strerror(errno));
	if (flock(lock, LOCK_EX | LOCK_NB)) {
		fprintf(stderr, "tuned_bench: waiting for /run/merge-bench.lock\n");
		if (flock(lock, LOCK_EX))
			die("flock: %s", strerror(errno));
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	save_knobs();

	sp_ksm *k;
	if (sp_ksm_open(NULL, &k))
		die("cannot open the KSM view");
	reset_ksm();

	double total = (double)meminfo_kb("MemTotal") * 1024, avail = (double)meminfo_kb("MemAvailable") * 1024;
	if (o.leave_gib > 0) {
		double want = avail - o.leave_gib * GIB;
		fprintf(stderr, "tuned_bench: balloon of %.1f GiB to leave %.1f GiB available\n", want / GIB, o.leave_gib);
		balloon_inflate(want);
	}
	avail = (double)meminfo_kb("MemAvailable") * 1024;
	double freekb = (double)(meminfo_kb("MemFree") + meminfo_kb("Buffers") + meminfo_kb("Cached")) * 1024;
	/* thres above what is free now, by 512 MiB: still under pressure after
	 * the guest's memory comes back through merging. */
	double need = (avail > freekb ? avail : freekb) + 512 * MIB;
	int coef = (int)ceil(need * 100 / total);
	if (coef > 100)
		coef = 100;
	fprintf(stderr, "tuned_bench: MemTotal %.1f GiB, MemAvailable %.1f GiB, free %.1f GiB: KSM_THRES_COEF=%d "
			"(thres %.1f GiB)\n", total / GIB, avail / GIB, freekb / GIB, coef, total * coef / 100 / GIB);

	for (int i = 0; i < NPHASES && !stop_now; i++)
		if (o.only[i])
			run_phase(&o, i, k, coef);

	/* 90% of the savings: of the best any phase reached. */
	double ref = 0;
	for (int i = 0; i < NPHASES; i++)
		if (phases[i].max_profit > ref)
			ref = phases[i].max_profit;
	for (int i = 0; i < NPHASES; i++)
		for (size_t j = 0; j < phases[i].n; j++)
			if (phases[i].s[j].t >= 0 && phases[i].s[j].profit >= 0.9 * ref) {
				phases[i].t90 = phases[i].s[j].t;
				break;
			}

	char csv[600];
	snprintf(csv, sizeof(csv), "%s/tuned.csv", o.out);
	FILE *f = fopen(csv, "w");
	if (f) {
		fprintf(f, "phase,t_s,general_profit_bytes,pages_sharing,ksmd_cpu_s,run,pages_to_scan,full_scans,"
			   "mem_available_bytes\n");
		for (int i = 0; i < NPHASES; i++)
			for (size_t j = 0; j < phases[i].n; j++) {
				const struct sample *s = &phases[i].s[j];
				fprintf(f, "%s,%.2f,%.0f,%.0f,%.3f,%lld,%lld,%lld,%.0f\n", phases[i].name, s->t, s->profit,
					s->sharing, s->cpu, s->run, s->pages_to_scan, s->full_scans, s->avail);
			}
		fclose(f);
	}
	char subtitle[300];
	snprintf(subtitle, sizeof(subtitle),
		 "MemTotal %.1f GiB, balloon %.1f GiB, KSM_THRES_COEF=%d; controller %g s before the guest; 0.5 s samples",
		 total / GIB, balloon_len / GIB, coef, o.lead);
	if (!stop_now)
		write_svg(o.svg, &o, ref, subtitle);

	printf("\n%-9s %12s %12s %10s %14s %14s %8s\n", "phase", "saved MiB", "max MiB", "t90 s", "ksmd CPU-s",
	       "CPU-s after 0", "guest");
	for (int i = 0; i < NPHASES; i++) {
		const struct phase *p = &phases[i];
		if (!p->n)
			continue;
		char t90[32];
		if (p->t90 >= 0)
			snprintf(t90, sizeof(t90), "%.1f", p->t90);
		else
			snprintf(t90, sizeof(t90), "never");
		printf("%-9s %12.1f %12.1f %10s %14.2f %14.2f %8s%s\n", p->name, p->final_profit / MIB,
		       p->max_profit / MIB, t90, p->cpu_total, p->cpu_after, p->guest_status ? "CORRUPT" : "intact",
		       p->disturbed ? " (balloon released)" : "");
	}
	printf("90%% of the savings = %.1f MiB (the best phase's maximum)\n", 0.9 * ref / MIB);
	const struct phase *cl = &phases[1], *ad = &phases[2];
	int code = 0;
	if (cl->n && ad->n) {
		bool fast = ad->t90 >= 0 && (cl->t90 < 0 || cl->t90 >= 3 * ad->t90);
		bool cheap = ad->cpu_total < cl->cpu_total;
		printf("target: adaptive reaches 90%% at least 3x sooner than classic: %s (%.1f s vs %s)\n",
		       fast ? "PASS" : "FAIL", ad->t90, cl->t90 >= 0 ? "" : "never");
		if (cl->t90 >= 0)
			printf("        ratio %.1fx\n", ad->t90 > 0 ? cl->t90 / ad->t90 : INFINITY);
		printf("target: adaptive spends less ksmd CPU over the run: %s (%.2f vs %.2f CPU-s)\n",
		       cheap ? "PASS" : "FAIL", ad->cpu_total, cl->cpu_total);
		code = fast && cheap ? 0 : 1;
	}
	for (int i = 0; i < NPHASES; i++)
		if (phases[i].guest_status && phases[i].n)
			code = 1;
	printf("csv: %s\nplot: %s\n", csv, o.svg);
	if (stop_now)
		fprintf(stderr, "tuned_bench: interrupted\n");
	sp_ksm_close(k);
	cleanup();
	flock(lock, LOCK_UN);
	close(lock);
	return stop_now ? 130 : code;
}
