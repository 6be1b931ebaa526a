/* SPDX-License-Identifier: MIT */
/*
 * ksmtuned: a drop-in replacement for the 2009 ksmtuned script. Reads
 * /etc/ksmtuned.conf, adjusts kernel KSM every KSM_MONITOR_INTERVAL
 * seconds (classic) or every KSM_ADAPTIVE_INTERVAL (adaptive). SIGUSR1
 * adjusts at once, SIGHUP re-reads the configuration and adjusts,
 * SIGTERM/SIGINT end it. Daemon by default, like the original, with its
 * pidfile; --foreground for systemd (Type=notify).
 */
#include "../tune/tuner.h"
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KSMTUNED_VERSION "0.1.0"

/* Exit codes, as samepage(8)'s. */
enum { EX_OK = 0, EX_RUNTIME = 1, EX_USAGE = 2, EX_NOT_SUPPORTED = 4 };

static const char usage_text[] =
	"Usage: ksmtuned [-f] [-c FILE]\n"
	"Tunes kernel KSM (/sys/kernel/mm/ksm) from memory use, like the original ksmtuned.\n"
	"\n"
	"  -c, --config FILE  configuration (default " TUNE_DEFAULT_CONFIG "; optional)\n"
	"  -f, --foreground   do not fork; tell systemd when ready (sd_notify)\n"
	"  -h, --help         this text\n"
	"  -V, --version      version\n"
	"\n"
	"Signals: SIGUSR1 adjusts now, SIGHUP reloads the configuration and adjusts,\n"
	"SIGTERM/SIGINT stop. Exit codes: 0 stopped by a signal, 1 failure, 2 bad usage or\n"
	"unreadable configuration, 4 no KSM in this kernel. See ksmtuned(8).\n";

struct daemon {
	struct tuner t;
	const char *config;
	bool config_given;
	bool foreground;
	char pidfile[TUNE_STR_MAX];   /* the one we wrote */
};

/* The original's debug(): "`date`: message", to LOGFILE or stdout, when
 * DEBUG is not empty. LOGFILE is opened for every line, like `>>`, so log
 * rotation needs nothing from us. */
static void log_line(const struct tune_config *c, const char *msg)
{
	if (!c->debug[0])
		return;
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Z %Y", &tm);
	if (c->logfile[0]) {
		FILE *f = fopen(c->logfile, "a");
		if (f) {
			fprintf(f, "%s: %s\n", date, msg);
			fclose(f);
			return;
		}
		static bool told;
		if (!told)
			fprintf(stderr, "ksmtuned: cannot open LOGFILE %s: %s; logging to standard output\n",
				c->logfile, strerror(errno));
		told = true;
	}
	printf("%s: %s\n", date, msg);
	fflush(stdout);
}

static void logf_(const struct tune_config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const struct tune_config *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line(c, msg);
}

/* Errors go to stderr always, and to the debug log. */
static void errorf(const struct tune_config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errorf(const struct tune_config *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ksmtuned: %s\n", msg);
	if (c)
		logf_(c, "error: %s", msg);
}

/* Configuration warnings go to stderr at once, and to the debug log once
 * the configuration (and so DEBUG) is known. */
#define MAX_KEPT_WARNINGS 64
static char kept_warnings[MAX_KEPT_WARNINGS][TUNE_STR_MAX + 320];
static int nkept;

static void warn_cb(void *ctx, const char *file, int line, const char *msg)
{
	(void)ctx;
	char text[sizeof(kept_warnings[0])];
	if (line > 0)
		snprintf(text, sizeof(text), "%s:%d: warning: %s", file, line, msg);
	else
		snprintf(text, sizeof(text), "%s: warning: %s", file, msg);
	fprintf(stderr, "ksmtuned: %s\n", text);
	if (nkept < MAX_KEPT_WARNINGS)
		snprintf(kept_warnings[nkept++], sizeof(kept_warnings[0]), "%s", text);
}

static void log_kept_warnings(const struct tune_config *c)
{
	for (int i = 0; i < nkept; i++)
		log_line(c, kept_warnings[i]);
	nkept = 0;
}

/* Defaults, then the file. A missing default file is fine (the original
 * sourced it only if present); a file named with -c must be readable. */
static int load_config(const struct daemon *dm, struct tune_config *c)
{
	tune_config_defaults(c);
	int r = tune_config_load(c, dm->config, warn_cb, NULL);
	if (r == -ENOENT && !dm->config_given)
		return 0;
	if (r < 0) {
		fprintf(stderr, "ksmtuned: cannot read configuration %s: %s\n", dm->config, strerror(-r));
		return r;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------
 * pidfile
 * ---------------------------------------------------------------------- */

static pid_t pidfile_owner(const char *path)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	pid_t pid = (pid_t)atoi(buf);
	if (pid <= 0 || pid == getpid() || kill(pid, 0) != 0)
		return 0;
	/* A live ksmtuned: "PID (ksmtuned) S ...", not a zombie. */
	char stat[256], p[64];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return 0;
	bool ours = fgets(stat, sizeof(stat), f) && strstr(stat, " (ksmtuned) ") && !strstr(stat, ") Z ");
	fclose(f);
	return ours ? pid : 0;
}

static int pidfile_write(struct daemon *dm)
{
	const char *path = dm->t.cfg.pidfile;
	if (!path[0])
		return 0;
	char tmp[TUNE_STR_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		errorf(NULL, "cannot write PIDFILE %s: %s", path, strerror(e));
		return -e;
	}
	snprintf(dm->pidfile, sizeof(dm->pidfile), "%s", path);
	return 0;
}

static void pidfile_remove(struct daemon *dm)
{
	if (!dm->pidfile[0])
		return;
	char buf[32];
	int fd = open(dm->pidfile, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = 0;
		if (atoi(buf) == getpid())
			unlink(dm->pidfile);
	}
}

/* ------------------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------------- */

static void status_text(const struct tuner *t, const struct tune_input *in, const struct tune_decision *d,
			char *buf, size_t len)
{
	sp_savings sav;
	sp_savings_compute(&in->eng.s, &sav);
	char profit[32];
	tune_human(sav.profit_bytes, profit, sizeof(profit));
	const char *pol = t->cfg.policy == TUNE_CLASSIC ? "classic" : "adaptive";
	int64_t run = tune_get(in, SP_RUN, -1);
	if (d->action == TUNE_START && d->nbatches && t->cfg.policy == TUNE_CLASSIC)
		snprintf(buf, len, "Profit: %s; %s: ksm running, pages_to_scan %lld, sleep_millisecs %lld", profit,
			 pol, (long long)d->npages, (long long)d->sleep);
	else if (d->action == TUNE_START)
		snprintf(buf, len, "Profit: %s; %s: ksm running: %.150s", profit, pol, d->reason);
	else if (d->action == TUNE_STOP)
		snprintf(buf, len, "Profit: %s; %s: ksm stopped: %.150s", profit, pol, d->reason);
	else
		snprintf(buf, len, "Profit: %s; %s: ksm %s: %.150s", profit, pol,
			 run == 1 ? "running" : "stopped", d->reason);
}

static void adjust(struct daemon *dm)
{
	struct tuner *t = &dm->t;
	struct tune_input in;
	int r = tuner_gather(t, &in);
	if (r) {
		errorf(&t->cfg, "cannot read memory and KSM state: %s", sp_strerror(r));
		tune_input_free(&in);
		return;
	}
	struct tune_decision d;
	memset(&d, 0, sizeof(d));
	tuner_step(t, &in, &d);
	for (int i = 0; i < d.log_before && i < d.nlog; i++)
		log_line(&t->cfg, d.log[i]);
	if (d.action != TUNE_NOTHING) {
		char err[400];
		if (tuner_apply(t, &d, err, sizeof(err)))
			errorf(&t->cfg, "%s", err);
	}
	for (int i = d.log_before; i < d.nlog; i++)
		log_line(&t->cfg, d.log[i]);
	char status[320], msg[400];
	status_text(t, &in, &d, status, sizeof(status));
	snprintf(msg, sizeof(msg), "STATUS=%s", status);
	sd_notify_send(msg);
	tune_input_free(&in);
}

static void start_log(struct daemon *dm)
{
	struct tune_decision d;
	memset(&d, 0, sizeof(d));
	int r = tuner_start(&dm->t, &d);
	if (r)
		errorf(&dm->t.cfg, "cannot read /proc/meminfo: %s", strerror(-r));
	for (int i = 0; i < d.nlog; i++)
		log_line(&dm->t.cfg, d.log[i]);
}

static void reload(struct daemon *dm)
{
	sd_notify_send("RELOADING=1");
	struct tune_config c;
	nkept = 0;
	if (load_config(dm, &c) < 0) {
		errorf(&dm->t.cfg, "SIGHUP: keeping the running configuration");
		sd_notify_send("READY=1");
		return;
	}
	if (tuner_reconfigure(&dm->t, &c))
		errorf(&dm->t.cfg, "SIGHUP: cannot use KSM_PROCESS_PATTERN");
	logf_(&dm->t.cfg, "reloaded %s", dm->config);
	log_kept_warnings(&dm->t.cfg);
	start_log(dm);
	sd_notify_send("READY=1");
}

static int run_loop(struct daemon *dm, const sigset_t *set)
{
	double next = now_s();
	if (dm->t.cfg.policy == TUNE_CLASSIC)
		next += (double)dm->t.cfg.monitor_interval;  /* the original sleeps first */
	for (;;) {
		double wait = next - now_s();
		struct timespec ts = { 0, 0 };
		if (wait > 0) {
			ts.tv_sec = (time_t)wait;
			ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
		}
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig < 0 && errno == EINTR)
			continue;
		if (sig < 0 && wait > 0 && now_s() < next)
			continue;  /* woke early without a signal */
		if (sig == SIGTERM || sig == SIGINT)
			return EX_OK;
		if (sig == SIGHUP)
			reload(dm);
		/* SIGUSR1, SIGHUP or the interval: adjust now, then a full interval. */
		adjust(dm);
		double interval = (double)(dm->t.cfg.policy == TUNE_CLASSIC ? dm->t.cfg.monitor_interval
									    : dm->t.cfg.adaptive_interval);
		next = now_s() + interval;
	}
}

/* Fork, let the parent exit once the child is set up (pidfile written),
 * with the child's verdict as its exit code. The child keeps no file
 * descriptor it inherited beyond 0, 1 and 2 (a caller's pipes would
 * otherwise stay open for as long as the daemon lives). */
static int daemonize(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		unsigned char code = EX_RUNTIME;
		ssize_t n;
		while ((n = read(p[0], &code, 1)) < 0 && errno == EINTR)
			;
		_exit(n == 1 ? code : EX_RUNTIME);
	}
	close(p[0]);
	setsid();
	if (p[1] > 3)
		close_range(3, (unsigned)p[1] - 1, 0);
	close_range((unsigned)p[1] + 1, ~0U, 0);
	return p[1];
}

/* Once set up: let go of the caller's terminal or pipes, except that with
 * DEBUG and no LOGFILE the debug log goes to standard output, as the
 * original's did. */
static void detach_stdio(const struct tune_config *c)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		return;
	dup2(null, 0);
	if (!c->debug[0] || c->logfile[0])
		dup2(null, 1);
	dup2(null, 2);
	close(null);
}

static void tell_parent(int fd, unsigned char code)
{
	if (fd < 0)
		return;
	ssize_t n = write(fd, &code, 1);
	(void)n;
	close(fd);
}

int main(int argc, char **argv)
{
	struct daemon dm;
	memset(&dm, 0, sizeof(dm));
	dm.config = TUNE_DEFAULT_CONFIG;
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "c:fhV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			dm.config = optarg;
			dm.config_given = true;
			break;
		case 'f':
			dm.foreground = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return EX_OK;
		case 'V':
			printf("ksmtuned (samepage) %s (libsamepage %s)\n", KSMTUNED_VERSION, sp_version());
			return EX_OK;
		default:
			fputs(usage_text, stderr);
			return EX_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ksmtuned: unexpected argument '%s'\n%s", argv[optind], usage_text);
		return EX_USAGE;
	}

	/* Block our signals first: they are taken with sigtimedwait(), and a
	 * SIGHUP during start-up must not kill us. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct tune_config cfg;
	if (load_config(&dm, &cfg) < 0)
		return EX_USAGE;
	pid_t other = cfg.pidfile[0] ? pidfile_owner(cfg.pidfile) : 0;
	if (other) {
		fprintf(stderr, "ksmtuned: already running as pid %d (%s)\n", (int)other, cfg.pidfile);
		return EX_RUNTIME;
	}
	/* Errors until the daemon is set up still reach the caller's stderr,
	 * and its verdict becomes the caller's exit status. */
	int parent = -1;
	if (!dm.foreground) {
		parent = daemonize();
		if (parent < 0) {
			fprintf(stderr, "ksmtuned: cannot fork: %s\n", strerror(-parent));
			return EX_RUNTIME;
		}
	}
	int r = tuner_open(&dm.t, &cfg, NULL);
	if (r) {
		fprintf(stderr, "ksmtuned: cannot open the KSM view: %s\n", sp_strerror(r));
		tell_parent(parent, EX_RUNTIME);
		return EX_RUNTIME;
	}
	struct tune_input probe;
	memset(&probe, 0, sizeof(probe));
	bool user = cfg.engine == TUNE_ENGINE_USER;
	if (dm.t.be->read(dm.t.be, &probe.eng) != 0 || !probe.eng.present) {
		if (user) {
			/* samepaged may start after us: wait for it, as for a knob. */
			fprintf(stderr, "ksmtuned: samepaged does not answer yet (%s): tuning starts when it does\n",
				cfg.engine_socket[0] ? cfg.engine_socket : "the default socket");
		} else {
			fprintf(stderr, "ksmtuned: KSM is not supported by this kernel: /sys/kernel/mm/ksm does not "
					"exist (CONFIG_KSM is off)\n");
			tuner_close(&dm.t);
			tell_parent(parent, EX_NOT_SUPPORTED);
			return EX_NOT_SUPPORTED;
		}
	}
	if (geteuid() != 0 && !user)
		fprintf(stderr, "ksmtuned: warning: not running as root: changing KSM knobs will fail\n");
	if (pidfile_write(&dm)) {
		tell_parent(parent, EX_RUNTIME);
		tuner_close(&dm.t);
		return EX_RUNTIME;
	}
	if (parent >= 0)
		detach_stdio(&cfg);
	log_kept_warnings(&dm.t.cfg);
	start_log(&dm);
	tell_parent(parent, EX_OK);
	char ready[160];
	snprintf(ready, sizeof(ready), "READY=1\nMAINPID=%d\nSTATUS=%s policy: first adjustment in %lld s",
		 (int)getpid(), cfg.policy == TUNE_CLASSIC ? "classic" : "adaptive",
		 (long long)(cfg.policy == TUNE_CLASSIC ? cfg.monitor_interval : 0));
	sd_notify_send(ready);

	int code = run_loop(&dm, &set);

	sd_notify_send("STOPPING=1");
	pidfile_remove(&dm);
	tuner_close(&dm.t);
	return code;
}
