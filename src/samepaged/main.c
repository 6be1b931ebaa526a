/* SPDX-License-Identifier: MIT */
/*
 * samepaged: the daemon that lets processes of one trust domain merge
 * their identical pages (see samepaged(8)). With no arguments it serves
 * the invoking user, in the foreground, on the user's default socket.
 */
#include <samepage.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sp_daemon *daemon_handle;

static void on_signal(int sig)
{
	(void)sig;
	sp_daemon_stop(daemon_handle);  /* only sets a flag */
}

static const char usage[] =
	"Usage: samepaged [--system] [--socket PATH] [-v]...\n"
	"\n"
	"  --system       serve every user (one trust domain per uid) on\n"
	"                 /run/samepage/samepaged.sock; needs root\n"
	"  --socket PATH  listen on PATH instead of the default\n"
	"  -v, --verbose  log connections (twice: more)\n"
	"  -h, --help     this text\n"
	"\n"
	"Without --system the daemon serves the invoking user only, on\n"
	"$SAMEPAGE_SOCKET, $XDG_RUNTIME_DIR/samepage/samepaged.sock or\n"
	"/tmp/samepage-UID/samepaged.sock. Exit status: 0 after SIGTERM or\n"
	"SIGINT, 1 on failure, 2 for bad usage.\n";

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "system", no_argument, NULL, 's' },
		{ "socket", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	sp_daemon_config cfg = { 0 };
	int o;
	while ((o = getopt_long(argc, argv, "vhV", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			cfg.system = true;
			break;
		case 'S':
			cfg.socket = optarg;
			break;
		case 'v':
			cfg.verbose++;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 'V':
			printf("samepaged (libsamepage %s)\n", sp_version());
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "samepaged: unexpected argument '%s'\n%s", argv[optind], usage);
		return 2;
	}
	int r = sp_daemon_new(&cfg, &daemon_handle);
	if (r) {
		fprintf(stderr, "samepaged: %s\n", *sp_last_error() ? sp_last_error() : sp_strerror(r));
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	char path[108];
	snprintf(path, sizeof(path), "%s", sp_daemon_socket(daemon_handle));
	if (cfg.verbose)
		fprintf(stderr, "samepaged: listening on %s\n", path);
	r = sp_daemon_run(daemon_handle);
	sp_daemon_free(daemon_handle);
	if (r) {
		fprintf(stderr, "samepaged: %s\n", sp_strerror(r));
		return 1;
	}
	return 0;
}
