/* SPDX-License-Identifier: MIT */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *build_path(const char *rel)
{
	static char buf[8][PATH_MAX];
	static int slot;
	const char *b = getenv("SAMEPAGE_BUILD");
	char *out = buf[slot++ % 8];
	snprintf(out, PATH_MAX, "%s/%s", b ? b : "build", rel);
	return out;
}

struct sink {
	char *s;
	size_t len, cap;
};

static bool sink_read(int fd, struct sink *k)
{
	if (k->len + 4096 >= k->cap)
		k->s = realloc(k->s, k->cap = k->cap * 2 + 8192);
	ssize_t r = read(fd, k->s + k->len, k->cap - k->len - 1);
	if (r < 0 && errno == EINTR)
		return true;
	if (r <= 0)
		return false;
	k->len += (size_t)r;
	return true;
}

/* Collect both pipes until both are closed, without blocking on either. */
static void drain2(int out, int err, struct cmd_result *res)
{
	struct sink so = { 0 }, se = { 0 };
	struct pollfd p[2] = { { out, POLLIN, 0 }, { err, POLLIN, 0 } };
	int open_fds = 2;
	while (open_fds > 0) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (!sink_read(p[i].fd, i ? &se : &so)) {
				p[i].fd = -1;
				open_fds--;
			}
		}
	}
	if (!so.s)
		so.s = calloc(1, 1);
	if (!se.s)
		se.s = calloc(1, 1);
	so.s[so.len] = 0;
	se.s[se.len] = 0;
	res->out = so.s;
	res->err = se.s;
}

int run_cmd(const char *const argv[], const char *const env[], int as_uid, struct cmd_result *res)
{
	/* O_CLOEXEC: only fds 1 and 2 reach the command, so a process it leaves
	 * behind cannot keep our pipes open (drain2 would wait for ever). */
	int out[2], err[2];
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]);
		close(err[0]);
		for (int i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		if (as_uid >= 0) {
			if (setgroups(0, NULL) || setgid((gid_t)as_uid) || setuid((uid_t)as_uid)) {
				perror("setuid");
				_exit(125);
			}
		}
		const char *prog = argv[0];
		if (!strchr(prog, '/'))
			prog = build_path(strcmp(prog, "samepage") == 0 ? "bin/samepage" : prog);
		execv(prog, (char *const *)argv);
		execvp(argv[0], (char *const *)argv);
		perror("exec");
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	drain2(out[0], err[0], res);
	close(out[0]);
	close(err[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return res->status;
}

void cmd_result_free(struct cmd_result *res)
{
	free(res->out);
	free(res->err);
	res->out = res->err = NULL;
}

int run_samepage(struct cmd_result *res, ...)
{
	const char *argv[64] = { "samepage" };
	int n = 1;
	va_list ap;
	va_start(ap, res);
	const char *a;
	while ((a = va_arg(ap, const char *)) && n < 63)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return run_cmd(argv, NULL, -1, res);
}

int ksm_lock(void)
{
	int fd = open("/run/merge-bench.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	return fd;
}

void ksm_unlock(int fd)
{
	flock(fd, LOCK_UN);
	close(fd);
}

bool ksm_present(void)
{
	return access(KSM_DIR "/run", F_OK) == 0;
}

bool is_root(void)
{
	return geteuid() == 0;
}

void ksm_read_text(const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), KSM_DIR "/%s", name);
	buf[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(buf, (int)len, f))
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
}

int64_t ksm_read_num(const char *name)
{
	char buf[64];
	ksm_read_text(name, buf, sizeof(buf));
	return strtoll(buf, NULL, 10);
}

int ksm_write(const char *name, const char *value)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), KSM_DIR "/%s", name);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t r = write(fd, value, strlen(value));
	int e = errno;
	close(fd);
	return r < 0 ? -e : 0;
}

/* Knobs in the order they can be written back. advisor_mode goes first
 * because leaving scan-time resets pages_to_scan. */
static const char *const knob_order[] = {
	"advisor_mode", "merge_across_nodes", "max_page_sharing", "pages_to_scan",
	"sleep_millisecs", "use_zero_pages", "stable_node_chains_prune_millisecs", "smart_scan",
	"advisor_max_cpu", "advisor_min_pages_to_scan", "advisor_max_pages_to_scan",
	"advisor_target_scan_time", "run",
};

static void advisor_word(char *v)
{
	/* "[none] scan-time" -> "none" */
	char *b = strchr(v, '['), *e = b ? strchr(b, ']') : NULL;
	if (b && e) {
		memmove(v, b + 1, (size_t)(e - b - 1));
		v[e - b - 1] = 0;
	}
}

void ksm_save(struct ksm_knobs *k)
{
	memset(k, 0, sizeof(*k));
	for (size_t i = 0; i < sizeof(knob_order) / sizeof(knob_order[0]); i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), KSM_DIR "/%s", knob_order[i]);
		if (access(path, F_OK))
			continue;
		snprintf(k->name[k->n], sizeof(k->name[0]), "%s", knob_order[i]);
		ksm_read_text(knob_order[i], k->value[k->n], sizeof(k->value[0]));
		if (strcmp(knob_order[i], "advisor_mode") == 0)
			advisor_word(k->value[k->n]);
		k->n++;
	}
}

static const char *knob_value(const struct ksm_knobs *k, const char *name)
{
	for (int i = 0; i < k->n; i++)
		if (strcmp(k->name[i], name) == 0)
			return k->value[i];
	return "";
}

void ksm_restore(const struct ksm_knobs *k)
{
	struct ksm_knobs now;
	ksm_save(&now);
	/* With the advisor on, pages_to_scan is its choice and not writable. */
	bool advisor = strcmp(knob_value(k, "advisor_mode"), "scan-time") == 0;
	for (int i = 0; i < k->n; i++) {
		if (strcmp(k->value[i], now.value[i]) == 0)
			continue;
		if (advisor && strcmp(k->name[i], "pages_to_scan") == 0)
			continue;
		if ((strcmp(k->name[i], "merge_across_nodes") == 0 ||
		     strcmp(k->name[i], "max_page_sharing") == 0) && ksm_read_num("pages_shared") > 0)
			assert_int_equal(ksm_write("run", "2"), 0);
		int r = ksm_write(k->name[i], k->value[i]);
		if (r)
			fail_msg("restoring %s=%s failed: %s", k->name[i], k->value[i], strerror(-r));
	}
	/* Leaving scan-time reset pages_to_scan after we wrote it: once more. */
	const char *pts = knob_value(k, "pages_to_scan");
	char v[48];
	ksm_read_text("pages_to_scan", v, sizeof(v));
	if (!advisor && strcmp(v, pts) != 0)
		assert_int_equal(ksm_write("pages_to_scan", pts), 0);
	ksm_save(&now);
	for (int i = 0; i < k->n; i++)
		if (strcmp(k->value[i], now.value[i]) != 0 &&
		    !(advisor && strcmp(k->name[i], "pages_to_scan") == 0))
			fail_msg("knob %s is %s, expected %s after restore", k->name[i], now.value[i],
				 k->value[i]);
}

bool ksm_same(const struct ksm_knobs *a, const struct ksm_knobs *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->name[i], b->name[i]) || strcmp(a->value[i], b->value[i])) {
			print_message("knob %s changed: %s -> %s\n", a->name[i], a->value[i], b->value[i]);
			return false;
		}
	return true;
}

int dup_child_start(struct dup_child *c, size_t pages, size_t distinct)
{
	int to_child[2], ready[2];
	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(to_child[1]);
		close(ready[0]);
		long ps = sysconf(_SC_PAGESIZE);
		unsigned char *m = mmap(NULL, pages * (size_t)ps, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			_exit(1);
		for (size_t i = 0; i < pages; i++)
			memset(m + i * (size_t)ps, (int)(1 + i % distinct), (size_t)ps);
		char ok = madvise(m, pages * (size_t)ps, MADV_MERGEABLE) == 0 ? 'y' : 'n';
		if (write(ready[1], &ok, 1) != 1)
			_exit(1);
		char b;
		ssize_t r = read(to_child[0], &b, 1);
		/* Verify our memory before leaving: merging must not change it. */
		for (size_t i = 0; i < pages; i++)
			for (size_t j = 0; j < (size_t)ps; j += 512)
				if (m[i * (size_t)ps + j] != (unsigned char)(1 + i % distinct))
					_exit(3);
		_exit(r == 1 ? 0 : 2);
	}
	close(to_child[0]);
	close(ready[1]);
	char ok = 0;
	assert_int_equal(read(ready[0], &ok, 1), 1);
	close(ready[0]);
	assert_int_equal(ok, 'y');
	c->pid = pid;
	c->to_child = to_child[1];
	return 0;
}

void dup_child_stop(struct dup_child *c)
{
	if (c->pid <= 0)
		return;
	char b = 'x';
	if (write(c->to_child, &b, 1) != 1)
		kill(c->pid, SIGKILL);
	close(c->to_child);
	int st;
	waitpid(c->pid, &st, 0);
	c->pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);  /* 3 would mean its memory changed */
}

bool ksm_wait_scans(int scans, int timeout_s)
{
	int64_t start = ksm_read_num("full_scans");
	for (int i = 0; i < timeout_s * 100; i++) {
		if (ksm_read_num("full_scans") >= start + scans)
			return true;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return false;
}

uint64_t pagemap_entry(const void *addr)
{
	(void)*(volatile const uint8_t *)addr;
	return pagemap_peek(addr);
}

uint64_t pagemap_peek(const void *addr)
{
	uint64_t v = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return 0;
	long ps = sysconf(_SC_PAGESIZE);
	if (pread(fd, &v, 8, (off_t)((uintptr_t)addr / (uintptr_t)ps * 8)) != 8)
		v = 0;
	close(fd);
	return v;
}

long proc_kb(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char line[256];
	long v = -1;
	size_t n = strlen(key);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, n) == 0 && line[n] == ':') {
			v = atol(line + n + 1);
			break;
		}
	if (f)
		fclose(f);
	return v;
}

char *make_tempdir(void)
{
	char *t = strdup("/tmp/samepage-test-XXXXXX");
	assert_non_null(mkdtemp(t));
	return t;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

void remove_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void write_file_p(const char *path, const char *text)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	for (char *s = dir + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			mkdir(dir, 0755);
			*s = '/';
		}
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static struct ksm_knobs group_saved;
static int group_lock = -1;

int ksm_group_setup(void **state)
{
	(void)state;
	if (!ksm_present() || !is_root())
		return 0;
	group_lock = ksm_lock();
	ksm_save(&group_saved);
	return 0;
}

int ksm_group_teardown(void **state)
{
	(void)state;
	if (group_lock < 0)
		return 0;
	ksm_restore(&group_saved);
	ksm_unlock(group_lock);
	group_lock = -1;
	return 0;
}

void ksm_fast_scan(void)
{
	char mode[64];
	ksm_read_text("advisor_mode", mode, sizeof(mode));
	if (strstr(mode, "[scan-time]"))
		assert_int_equal(ksm_write("advisor_mode", "none"), 0);
	assert_int_equal(ksm_write("pages_to_scan", "4000"), 0);
	assert_int_equal(ksm_write("sleep_millisecs", "5"), 0);
}

bool under_tsan(void)
{
	const char *san = getenv("SAMEPAGE_SAN");
	return san && strstr(san, "thread");
}

int san_ms(int ms)
{
	const char *san = getenv("SAMEPAGE_SAN");
	return san && *san ? ms * (under_tsan() ? 6 : 3) : ms;
}

char *read_whole_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot read %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *s = malloc((size_t)n + 1);
	assert_non_null(s);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = 0;
	fclose(f);
	return s;
}

char *read_source_text(const char *rel)
{
	char path[PATH_MAX];
	const char *src = getenv("SAMEPAGE_SRC");
	snprintf(path, sizeof(path), "%s/%s", src ? src : ".", rel);
	char *s = read_whole_file(path);
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && (r[1] == '-' || r[1] == '_'))
			continue;
		*w++ = *r;
	}
	*w = 0;
	return s;
}

uint64_t test_rng(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}
