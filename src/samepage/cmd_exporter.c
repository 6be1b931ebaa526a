/* SPDX-License-Identifier: MIT */
/* samepage exporter: KSM and the user-space engine for Prometheus, over HTTP
 * (libmicrohttpd), in the foreground until SIGTERM or SIGINT. */
#include "cli.h"
#include "exporter_metrics.h"
#include "exporter_text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_LISTEN ":9547"
#define DEFAULT_MAX_PROCESSES 20

static const char index_page[] =
	"<!DOCTYPE html>\n<html><head><title>samepage exporter</title></head>\n<body>\n"
	"<h1>samepage exporter</h1>\n"
	"<p>Same-page merging (kernel KSM and the samepage user-space engine) for Prometheus.</p>\n"
	"<p><a href=\"/metrics\">Metrics</a> &middot; see samepage(8), EXPORTER.</p>\n"
	"</body></html>\n";

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, char *body, size_t len,
			       enum MHD_ResponseMemoryMode mode, const char *type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **req)
{
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)req;
	const struct exporter *x = cls;
	static char not_allowed[] = "only GET and HEAD\n", not_found[] = "not found: try /metrics\n",
		    no_memory[] = "out of memory\n";
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, strlen(not_allowed),
			       MHD_RESPMEM_PERSISTENT, "text/plain");
	if (strcmp(url, "/") == 0)
		return respond(conn, MHD_HTTP_OK, (char *)index_page, strlen(index_page),
			       MHD_RESPMEM_PERSISTENT, "text/html; charset=utf-8");
	if (strcmp(url, "/metrics") != 0)
		return respond(conn, MHD_HTTP_NOT_FOUND, not_found, strlen(not_found),
			       MHD_RESPMEM_PERSISTENT, "text/plain");
	size_t len;
	char *page = exporter_page(x, &len);
	if (!page)
		return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, no_memory, strlen(no_memory),
			       MHD_RESPMEM_PERSISTENT, "text/plain");
	return respond(conn, MHD_HTTP_OK, page, len, MHD_RESPMEM_MUST_FREE, PROM_CONTENT_TYPE);
}

struct listen_addr {
	char host[256];     /* "" for every address */
	char port[8];
};

/* "HOST:PORT", "[V6]:PORT" or ":PORT"; 0 or an exit code after a message. */
static int parse_listen(const struct cli *c, const char *arg, struct listen_addr *a)
{
	const char *colon = strrchr(arg, ':');
	const char *host = arg, *host_end = colon;
	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');
		if (!close || close[1] != ':')
			return cli_fail(c, EXIT_REFUSED, "--listen takes HOST:PORT, [ADDRESS]:PORT or :PORT, not '%s'", arg);
		host = arg + 1;
		host_end = close;
		colon = close + 1;
	}
	if (!colon)
		return cli_fail(c, EXIT_REFUSED, "--listen takes HOST:PORT, [ADDRESS]:PORT or :PORT, not '%s'", arg);
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (colon[1] == 0 || *end || errno || port < 0 || port > 65535)
		return cli_fail(c, EXIT_REFUSED, "--listen: the port must be 0 to 65535, not '%s'", colon + 1);
	if ((size_t)(host_end - host) >= sizeof(a->host))
		return cli_fail(c, EXIT_REFUSED, "--listen: host name too long");
	snprintf(a->host, sizeof(a->host), "%.*s", (int)(host_end - host), host);
	snprintf(a->port, sizeof(a->port), "%ld", port);
	return 0;
}

static int bind_one(const struct sockaddr *sa, socklen_t len, int family, bool dual)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1, zero = 0;
	/* a restarted exporter must not wait for old connections' TIME_WAIT */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (dual)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, sa, len) != 0 || listen(fd, 64) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* A listening socket: fd, or an exit code (negated) after a message. */
static int open_listener(const struct cli *c, const struct listen_addr *a, char *shown, size_t shown_len)
{
	int fd;
	if (!a->host[0]) {
		/* every address: IPv6 and IPv4 on one socket, IPv4 alone without IPv6 */
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = in6addr_any,
					   .sin6_port = htons((uint16_t)atoi(a->port)) };
		fd = bind_one((struct sockaddr *)&s6, sizeof(s6), AF_INET6, true);
		if (fd == -EAFNOSUPPORT) {
			struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY),
						  .sin_port = htons((uint16_t)atoi(a->port)) };
			fd = bind_one((struct sockaddr *)&s4, sizeof(s4), AF_INET, false);
		}
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
		int g = getaddrinfo(a->host, a->port, &hints, &res);
		if (g)
			return -cli_fail(c, EXIT_REFUSED, "--listen: cannot resolve '%s': %s", a->host,
					 gai_strerror(g));
		fd = -EADDRNOTAVAIL;
		for (struct addrinfo *i = res; i && fd < 0; i = i->ai_next)
			fd = bind_one(i->ai_addr, i->ai_addrlen, i->ai_family, false);
		freeaddrinfo(res);
	}
	if (fd < 0) {
		const char *hint = fd == -EADDRINUSE ? " (another exporter? choose a port with --listen)"
				   : fd == -EACCES ? " (ports below 1024 need root)" : "";
		return -cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot listen on %s:%s: %s%s",
				 a->host[0] ? a->host : "*", a->port, strerror(-fd), hint);
	}
	/* the address really bound: port 0 asks the kernel for a free one */
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
			port = ntohs(s6->sin6_port);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
			port = ntohs(s4->sin_port);
		}
	}
	snprintf(shown, shown_len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	return fd;
}

static const char usage[] =
	"Usage: samepage exporter [--listen ADDR:PORT] [--engine kernel|user|both]\n"
	"                         [--max-processes N]\n"
	"Serves Prometheus metrics at http://ADDR:PORT/metrics (default " DEFAULT_LISTEN ").\n";

int cmd_exporter(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "engine", required_argument, NULL, 'e' },
		{ "max-processes", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_arg = DEFAULT_LISTEN;
	bool kernel = true, user = false;
	long max_procs = DEFAULT_MAX_PROCESSES;
	int o;
	while ((o = getopt_long(argc, argv, "l:e:m:h", opts, NULL)) != -1) {
		switch (o) {
		case 'l':
			listen_arg = optarg;
			break;
		case 'e':
			kernel = strcmp(optarg, "kernel") == 0 || strcmp(optarg, "both") == 0;
			user = strcmp(optarg, "user") == 0 || strcmp(optarg, "both") == 0;
			if (!kernel && !user)
				return cli_fail(c, EXIT_REFUSED, "--engine takes kernel, user or both, not '%s'", optarg);
			break;
		case 'm': {
			char *end;
			errno = 0;
			max_procs = strtol(optarg, &end, 10);
			if (*end || end == optarg || errno || max_procs < 0 || max_procs > 100000)
				return cli_fail(c, EXIT_REFUSED,
						"--max-processes takes a number from 0 to 100000, not '%s'", optarg);
			break;
		}
		case 'h':
			fputs(usage, stdout);
			return EXIT_OK;
		default:
			fputs(usage, stderr);
			return EXIT_REFUSED;
		}
	}
	if (optind < argc)
		return cli_fail(c, EXIT_REFUSED, "unexpected argument '%s'", argv[optind]);
	struct listen_addr la;
	int code = parse_listen(c, listen_arg, &la);
	if (code)
		return code;

	struct exporter x = { .ksm = NULL, .user = user, .max_processes = (size_t)max_procs };
	if (kernel) {
		x.ksm = cli_open_ksm(c, false, &code);
		if (!x.ksm)
			return code;
		if (!sp_ksm_available(x.ksm))
			cli_note(c, "this kernel has no KSM (%s missing): exporting samepage_ksm_available 0",
				 sp_ksm_sysfs_dir(x.ksm));
	}
	/* Signals are taken by sigwait() here; the server thread inherits the mask. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	char shown[INET6_ADDRSTRLEN + 16];
	int fd = open_listener(c, &la, shown, sizeof(shown));
	if (fd < 0) {
		if (x.ksm)
			sp_ksm_close(x.ksm);
		return -fd;
	}
	/* One server thread: scrapes are answered one at a time. */
	struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG,
						0, NULL, NULL, handle, &x,
						MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
						MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
						MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
						MHD_OPTION_END);
	if (!d) {
		close(fd);
		if (x.ksm)
			sp_ksm_close(x.ksm);
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot start the HTTP server (libmicrohttpd)");
	}
	fprintf(stderr, "samepage: exporter: serving http://%s/metrics (%s%s%s)\n", shown,
		kernel ? "kernel KSM" : "", kernel && user ? " and " : "",
		user ? "the user-space engine" : "");
	int sig = 0;
	while (sigwait(&stop, &sig) != 0)
		;
	MHD_stop_daemon(d);  /* closes the listening socket too */
	if (x.ksm)
		sp_ksm_close(x.ksm);
	fprintf(stderr, "samepage: exporter: stopped by %s\n", strsignal(sig));
	return EXIT_OK;
}
