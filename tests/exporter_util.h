/* SPDX-License-Identifier: MIT */
/* For the exporter tests: child processes killed whatever happens, a plain
 * HTTP/1.0 client over a real socket, and a checker of the Prometheus text
 * exposition format that knows nothing of the exporter's code. */
#ifndef SP_EXPORTER_UTIL_H
#define SP_EXPORTER_UTIL_H

#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ processes */

/* Everything started here, killed by the teardowns or at exit. */
static pid_t kids[64];

static inline void kid_add(pid_t pid)
{
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		if (kids[i] == 0) {
			kids[i] = pid;
			return;
		}
	fail_msg("too many child processes");
}

/* Stop one child with sig (SIGKILL after 10 s); its exit code or 128+signal. */
static inline int kid_stop(pid_t pid, int sig)
{
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		if (kids[i] == pid)
			kids[i] = 0;
	kill(pid, sig);
	int st = 0;
	for (int i = 0; i < 1000; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (r < 0)
			return -1;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return 128 + SIGKILL;
}

static inline void kill_all_kids(void)
{
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
}

/* Append the NULL-terminated strings of ap to argv from index n (argv has
 * room for max entries and ends with NULL); returns the count. */
static inline int take_args(const char **argv, int n, int max, va_list ap)
{
	const char *a;
	while ((a = va_arg(ap, const char *)) && n < max - 1)
		argv[n++] = a;
	argv[n] = NULL;
	return n;
}

static inline double wall_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static inline char *slurp_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return strdup("");
	char *s = NULL;
	size_t n = 0;
	ssize_t r = getdelim(&s, &n, 0, f);
	fclose(f);
	if (r < 0) {
		free(s);
		return strdup("");
	}
	return s;
}

/* fork + exec argv with stdout and stderr to log; env: "NAME=VALUE" or NULL. */
static inline pid_t spawn(const char *const argv[], const char *log, const char *env)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		if (env)
			putenv((char *)env);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	kid_add(pid);
	return pid;
}

/* --------------------------------------------------------------- HTTP */

struct http {
	int status;
	char *head;   /* status line and headers */
	char *body;
};

static inline void http_free(struct http *h)
{
	free(h->head);
	free(h->body);
	memset(h, 0, sizeof(*h));
}

/* One request over a real TCP socket: 0, or -errno if nothing answered. */
static inline int http_request(int port, const char *method, const char *path, struct http *out)
{
	memset(out, 0, sizeof(*out));
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct timeval tv = { 20, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	char req[2048];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n", method, path, port);
	assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 4096 > cap)
			buf = realloc(buf, cap *= 2);
		ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	char *sep = strstr(buf, "\r\n\r\n");
	if (!sep) {
		free(buf);
		return -EPROTO;
	}
	*sep = 0;
	out->head = strdup(buf);
	out->body = strdup(sep + 4);
	sscanf(buf, "HTTP/%*s %d", &out->status);
	free(buf);
	return 0;
}

static inline char *get_ok(int port, const char *path)
{
	struct http h;
	int r = http_request(port, "GET", path, &h);
	if (r)
		fail_msg("GET %s on port %d: %s", path, port, strerror(-r));
	if (h.status != 200)
		fail_msg("GET %s: HTTP %d: %s", path, h.status, h.body);
	free(h.head);
	return h.body;
}

/* ------------------------------------------------- the text format */

static inline bool valid_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
			  (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

/* Labels "{a="x",b="y"}" at *p: checks names and escapes, moves *p past. */
static inline void check_labels(const char **p, const char *line)
{
	const char *s = *p;
	assert_true(*s == '{');
	s++;
	while (*s != '}') {
		const char *eq = strchr(s, '=');
		if (!eq || !valid_name(s, (size_t)(eq - s)) || eq[1] != '"')
			fail_msg("bad label in: %s", line);
		s = eq + 2;
		while (*s != '"') {
			if (!*s || *s == '\n')
				fail_msg("unterminated label value in: %s", line);
			if (*s == '\\') {
				if (s[1] != '\\' && s[1] != '"' && s[1] != 'n')
					fail_msg("bad escape in: %s", line);
				s++;
			}
			s++;
		}
		s++;
		if (*s == ',')
			s++;
		else if (*s != '}')
			fail_msg("bad label list in: %s", line);
	}
	*p = s + 1;
}

/* Every line of a page: HELP then TYPE once per family, its samples next to
 * each other, counters named _total, numbers that parse, no series twice.
 * Returns the number of families. */
static inline int check_text_format(const char *page)
{
	char fam[256] = "", type[16] = "";
	char **seen_fam = calloc(4096, sizeof(char *)), **seen_series = calloc(16384, sizeof(char *));
	size_t nfam = 0, nseries = 0;
	bool help_pending = false;
	assert_true(strlen(page) > 0 && page[strlen(page) - 1] == '\n');
	char *copy = strdup(page), *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			const char *name = line + 7, *sp = strchr(name, ' ');
			if (!sp || !valid_name(name, (size_t)(sp - name)))
				fail_msg("bad HELP line: %s", line);
			snprintf(fam, sizeof(fam), "%.*s", (int)(sp - name), name);
			for (size_t i = 0; i < nfam; i++)
				if (strcmp(seen_fam[i], fam) == 0)
					fail_msg("family %s appears twice (not contiguous or duplicated)", fam);
			seen_fam[nfam++] = strdup(fam);
			help_pending = true;
			type[0] = 0;
		} else if (strncmp(line, "# TYPE ", 7) == 0) {
			char name[256], t[32];
			if (sscanf(line + 7, "%255s %31s", name, t) != 2 || strcmp(name, fam) != 0 || !help_pending)
				fail_msg("TYPE without its HELP just before: %s", line);
			if (strcmp(t, "counter") && strcmp(t, "gauge"))
				fail_msg("unexpected type: %s", line);
			if (strcmp(t, "counter") == 0 && strlen(fam) < 6)
				fail_msg("short counter name: %s", line);
			if (strcmp(t, "counter") == 0 && strcmp(fam + strlen(fam) - 6, "_total") != 0)
				fail_msg("counter not named _total: %s", line);
			snprintf(type, sizeof(type), "%s", t);
			help_pending = false;
		} else if (line[0] == '#') {
			fail_msg("unexpected comment: %s", line);
		} else {
			const char *p = line;
			while (*p && *p != '{' && *p != ' ')
				p++;
			if ((size_t)(p - line) != strlen(fam) || strncmp(line, fam, strlen(fam)) != 0 || !type[0])
				fail_msg("sample outside its family (%s): %s", fam, line);
			if (*p == '{')
				check_labels(&p, line);
			if (*p != ' ')
				fail_msg("no value: %s", line);
			char *end;
			strtod(p + 1, &end);
			if (end == p + 1 || *end)
				fail_msg("value does not parse: %s", line);
			char *key = strndup(line, (size_t)(p - line));
			for (size_t i = 0; i < nseries; i++)
				if (strcmp(seen_series[i], key) == 0)
					fail_msg("duplicate series: %s", key);
			assert_true(nseries < 16384);
			seen_series[nseries++] = key;
		}
	}
	for (size_t i = 0; i < nfam; i++)
		free(seen_fam[i]);
	for (size_t i = 0; i < nseries; i++)
		free(seen_series[i]);
	free(seen_fam);
	free(seen_series);
	free(copy);
	return (int)nfam;
}

/* The value of series `key` ("name" or "name{...}") in a page; asserts it is there. */
static inline double page_value(const char *page, const char *key)
{
	size_t n = strlen(key);
	for (const char *p = page; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, key, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	fail_msg("series %s is not in the page", key);
	return NAN;
}

static inline bool page_has_family(const char *page, const char *name)
{
	char tag[256];
	snprintf(tag, sizeof(tag), "# TYPE %s ", name);
	return strstr(page, tag) != NULL;
}

static inline const char *page_type(const char *page, const char *name)
{
	static char t[16];
	char tag[256];
	snprintf(tag, sizeof(tag), "# TYPE %s ", name);
	const char *s = strstr(page, tag);
	if (!s)
		fail_msg("no family %s", name);
	sscanf(s + strlen(tag), "%15s", t);
	return t;
}

#endif
