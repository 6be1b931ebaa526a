/* SPDX-License-Identifier: MIT */
/* samepage top: a live terminal view of merging. The loop waits for keys in
 * short slices so q, a resize (curses' KEY_RESIZE) and SIGTERM are handled
 * at once, and refreshes the model every --interval. */
#include "cli.h"
#include "top_model.h"
#include "top_screen.h"

#include <curses.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

static double mono_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Our handlers, installed before initscr(), keep curses from installing its
 * own for these; curses keeps SIGWINCH and turns it into KEY_RESIZE. */
static void catch_stop_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static void run_loop(struct top_model *m, const struct top_view *v)
{
	double next = mono_s();
	while (!stop_signal) {
		double now = mono_s();
		if (now >= next) {
			top_model_refresh(m);
			top_screen_draw(m, v);
			next += v->interval_s;
			if (next < now)
				next = now + v->interval_s;
		}
		double wait = next - mono_s();
		int ms = wait <= 0 ? 0 : wait > 0.2 ? 200 : (int)(wait * 1000) + 1;
		timeout(ms);
		int ch = getch();
		if (ch == 'q' || ch == 'Q')
			break;
		if (ch == KEY_RESIZE || ch == 12 /* ^L */) {
			clearok(curscr, TRUE);
			top_screen_draw(m, v);
		}
	}
}

int cmd_top(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "engine", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct top_view v = { .interval_s = 1.0, .utf8 = false };
	bool user = false;
	int o;
	while ((o = getopt_long(argc, argv, "i:e:h", opts, NULL)) != -1) {
		switch (o) {
		case 'i':
			if (cli_seconds_arg(c, "--interval", optarg, 0.1, 3600, &v.interval_s))
				return EXIT_REFUSED;
			break;
		case 'e':
			if (cli_engine_arg(c, optarg, &user))
				return EXIT_REFUSED;
			break;
		case 'h':
			printf("Usage: samepage top [--interval S] [--engine kernel|user]\n");
			return EXIT_OK;
		default:
			return EXIT_REFUSED;
		}
	}
	if (optind < argc)
		return cli_fail(c, EXIT_REFUSED, "unexpected argument '%s'", argv[optind]);
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
		return cli_fail(c, EXIT_REFUSED,
				"needs a terminal; for scripts and pipes use `samepage status` (or status --json)");
	struct top_model m;
	int code = top_model_open(&m, c, user);
	if (code)
		return code;

	setlocale(LC_ALL, "");
	v.utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	catch_stop_signals();
	/* newterm, not initscr: a bad TERM is ours to report, not a silent exit */
	SCREEN *scr = newterm(NULL, stdout, stdin);
	if (!scr) {
		top_model_close(&m);
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot set up the terminal (TERM=%s)",
				getenv("TERM") ? getenv("TERM") : "unset");
	}
	cbreak();
	noecho();
	keypad(stdscr, TRUE);
	curs_set(0);
	run_loop(&m, &v);
	endwin();
	delscreen(scr);
	top_model_close(&m);
	return EXIT_OK;
}
