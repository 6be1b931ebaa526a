/* SPDX-License-Identifier: MIT */
/* samepage estimate: the table for people and the JSON for programs. */
#include "estimate.h"

#include <errno.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t saved_of(const struct est_counts *c)
{
	return c->saved_within + c->saved_between;
}

/* Processes to list, by saving (saved + zero pages), largest first. */
struct row {
	const struct est_proc *p;
	struct est_counts c;
	uint64_t stable_zero;
};

static int by_saving(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	uint64_t sx = saved_of(&x->c) + x->c.zero_pages, sy = saved_of(&y->c) + y->c.zero_pages;
	if (sx != sy)
		return sx < sy ? 1 : -1;
	return (x->p->pid > y->p->pid) - (x->p->pid < y->p->pid);
}

static struct row *listed_rows(const struct est_result *r, size_t *n)
{
	struct row *rows = calloc(r->n ? r->n : 1, sizeof(*rows));
	*n = 0;
	if (!rows)
		return NULL;
	for (size_t i = 0; i < r->n; i++) {
		struct row w = { .p = &r->procs[i] };
		if (!est_final(r, w.p, &w.c, &w.stable_zero))
			continue;
		uint64_t kb = w.c.pages * (uint64_t)r->page_size / 1024;
		if (kb < r->min_kb || (r->selected_all && w.c.pages == 0))
			continue;  /* too small to list; still in the totals */
		rows[(*n)++] = w;
	}
	qsort(rows, *n, sizeof(*rows), by_saving);
	return rows;
}

static const char *user_of(uid_t uid, char *buf, size_t len)
{
	struct passwd *pw = uid == (uid_t)-1 ? NULL : getpwuid(uid);
	if (pw)
		snprintf(buf, len, "%s", pw->pw_name);
	else if (uid == (uid_t)-1)
		snprintf(buf, len, "?");
	else
		snprintf(buf, len, "%u", (unsigned)uid);
	return buf;
}

/* ------------------------------------------------------------ JSON */

static void put_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

/* The numbers of one process or of the total, pages and bytes. */
static void put_counts(json_object *o, const struct est_result *r, const struct est_counts *c,
		       uint64_t stable_zero)
{
	uint64_t ps = (uint64_t)r->page_size, saved = saved_of(c);
	put_u64(o, "mappings", c->mappings);
	put_u64(o, "mapped_pages", c->mapped_pages);
	put_u64(o, "pages", c->pages);
	put_u64(o, "bytes", c->pages * ps);
	put_u64(o, "zero_pages", c->zero_pages);
	put_u64(o, "zero_bytes", c->zero_pages * ps);
	put_u64(o, "saved_pages", saved);
	put_u64(o, "saved_bytes", saved * ps);
	put_u64(o, "saved_within_pages", c->saved_within);
	put_u64(o, "saved_between_pages", c->saved_between);
	bool two = r->samples > 1;
	json_object_object_add(o, "stable_saved_pages", two ? json_object_new_int64((int64_t)c->stable_saved) : NULL);
	json_object_object_add(o, "changing_saved_pages",
			       two ? json_object_new_int64((int64_t)(saved - c->stable_saved)) : NULL);
	json_object_object_add(o, "stable_zero_pages", two ? json_object_new_int64((int64_t)stable_zero) : NULL);
	put_u64(o, "unreadable_pages", c->unreadable_pages);
}

static json_object *fixed(double v, int decimals)
{
	char text[64];
	snprintf(text, sizeof(text), "%.*f", decimals, v);
	return json_object_new_double_s(v, text);
}

void est_print_json(const struct est_result *r)
{
	json_object *root = json_object_new_object(), *procs = json_object_new_array(),
		    *errs = json_object_new_array(), *tot = json_object_new_object(),
		    *scan = json_object_new_object();
	char buf[256];
	put_u64(root, "page_size", (uint64_t)r->page_size);
	json_object_object_add(root, "samples", json_object_new_int(r->samples));
	json_object_object_add(root, "interval_seconds", fixed(r->samples > 1 ? r->interval : 0, 3));
	json_object_object_add(root, "scope",
			       json_object_new_string(r->all_private ? "private-writable" : "private-anonymous"));
	size_t n;
	struct row *rows = listed_rows(r, &n);
	for (size_t i = 0; rows && i < n; i++) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "pid", json_object_new_int(rows[i].p->pid));
		json_object_object_add(o, "uid", json_object_new_int64(rows[i].p->uid));
		json_object_object_add(o, "user", json_object_new_string(user_of(rows[i].p->uid, buf, sizeof(buf))));
		json_object_object_add(o, "comm", json_object_new_string(rows[i].p->comm));
		put_counts(o, r, &rows[i].c, rows[i].stable_zero);
		json_object_array_add(procs, o);
	}
	free(rows);
	for (size_t i = 0; i < r->n; i++) {
		const struct est_proc *p = &r->procs[i];
		if (!p->err)
			continue;
		json_object *o = json_object_new_object();
		json_object_object_add(o, "pid", json_object_new_int(p->pid));
		json_object_object_add(o, "comm", json_object_new_string(p->comm));
		json_object_object_add(o, "errno", json_object_new_string(strerrorname_np(-p->err)));
		json_object_object_add(o, "error", json_object_new_string(est_error_text(p, buf, sizeof(buf))));
		json_object_array_add(errs, o);
	}
	struct est_total t;
	est_totals(r, &t);
	put_u64(tot, "processes", t.processes);
	put_u64(tot, "distinct_pages", r->distinct);
	put_counts(tot, r, &t.c, t.stable_zero);
	put_u64(scan, "pages_read", r->pages_read);
	json_object_object_add(scan, "seconds", fixed(r->scan_seconds, 6));
	json_object_object_add(scan, "pages_per_second",
			       fixed(r->scan_seconds > 0 ? (double)r->pages_read / r->scan_seconds : 0, 0));
	put_u64(scan, "table_bytes", r->table_bytes);
	put_u64(scan, "buffer_bytes", r->scanner_bytes);
	json_object_object_add(root, "processes", procs);
	json_object_object_add(root, "errors", errs);
	json_object_object_add(root, "total", tot);
	json_object_object_add(root, "scan", scan);
	puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

/* ------------------------------------------------------------ people */

static const char *hb(uint64_t pages, long ps, char *buf, size_t len)
{
	human_bytes((int64_t)(pages * (uint64_t)ps), buf, len);
	return buf;
}

static void print_row(const struct est_result *r, const char *pid, const char *user, const char *name,
		      const struct est_counts *c)
{
	char b[7][32], comm[64];
	printable_comm(name, comm, sizeof(comm));
	long ps = r->page_size;
	uint64_t saved = saved_of(c);
	if (r->samples > 1) {
		hb(c->stable_saved, ps, b[5], sizeof(b[5]));
		hb(saved - c->stable_saved, ps, b[6], sizeof(b[6]));
	} else {
		strcpy(b[5], "-");
		strcpy(b[6], "-");
	}
	printf("%7s %-10.10s %-15.15s %10s %10s %10s %10s %10s %10s %10s\n", pid, user, comm,
	       hb(c->pages, ps, b[0], sizeof(b[0])), hb(c->zero_pages, ps, b[1], sizeof(b[1])),
	       hb(saved, ps, b[2], sizeof(b[2])), hb(c->saved_within, ps, b[3], sizeof(b[3])),
	       hb(c->saved_between, ps, b[4], sizeof(b[4])), b[5], b[6]);
}

/* Per-process errors on stderr; with --all or --uid the expected ones
 * (other users' processes, processes that exit) are only counted. */
void est_print_errors(const struct est_result *r)
{
	struct cli c = { .cmd = "estimate" };
	size_t denied = 0, gone = 0;
	char buf[256];
	for (size_t i = 0; i < r->n; i++) {
		const struct est_proc *p = &r->procs[i];
		if (!p->err)
			continue;
		if (r->selected_all && (p->err == -EACCES || p->err == -EPERM))
			denied++;
		else if (r->selected_all && p->err == -ESRCH)
			gone++;
		else
			cli_fail(&c, 0, "pid %d (%s): %s", (int)p->pid, p->comm, est_error_text(p, buf, sizeof(buf)));
	}
	if (denied)
		cli_note(&c, "%zu process%s could not be read: permission denied%s", denied,
			 denied == 1 ? "" : "es", geteuid() ? " (root can read other users' processes)" : "");
	if (gone)
		cli_note(&c, "%zu process%s exited while being read", gone, gone == 1 ? "" : "es");
}

void est_print_human(const struct est_result *r)
{
	struct est_total t;
	est_totals(r, &t);
	if (t.processes == 0)
		return;
	long ps = r->page_size;
	char b[4][32], user[64], pid[16];
	printf("What merging identical pages would save, read from %zu process%s (%s memory), ", t.processes,
	       t.processes == 1 ? "" : "es", r->all_private ? "private writable" : "private anonymous");
	if (r->samples > 1)
		printf("2 samples %.1f s apart\n\n", r->interval);
	else
		printf("1 sample\n\n");
	printf("%7s %-10s %-15s %10s %10s %10s %10s %10s %10s %10s\n", "PID", "USER", "COMMAND", "RESIDENT",
	       "ZERO", "SAVED", "WITHIN", "BETWEEN", "STABLE", "CHANGING");
	size_t n;
	struct row *rows = listed_rows(r, &n);
	for (size_t i = 0; rows && i < n; i++) {
		snprintf(pid, sizeof(pid), "%d", (int)rows[i].p->pid);
		print_row(r, pid, user_of(rows[i].p->uid, user, sizeof(user)), rows[i].p->comm, &rows[i].c);
	}
	free(rows);
	print_row(r, "TOTAL", "", "", &t.c);
	if (n < t.processes)
		printf("(%zu process%s below --min-kb or without counted memory not listed, but in the total)\n",
		       t.processes - n, t.processes - n == 1 ? "" : "es");

	uint64_t saved = saved_of(&t.c);
	printf("\nMerging would save %s (%llu pages of %ld bytes) in %llu distinct contents: ",
	       hb(saved, ps, b[0], sizeof(b[0])), (unsigned long long)saved, ps, (unsigned long long)r->distinct);
	printf("%s within processes, %s between processes.\n", hb(t.c.saved_within, ps, b[1], sizeof(b[1])),
	       hb(t.c.saved_between, ps, b[2], sizeof(b[2])));
	if (r->samples > 1)
		printf("Stable over %.1f s: %s; from pages that changed in between: %s.\n", r->interval,
		       hb(t.c.stable_saved, ps, b[0], sizeof(b[0])),
		       hb(saved - t.c.stable_saved, ps, b[1], sizeof(b[1])));
	printf("Zero pages: %s (%llu pages), all freed with use_zero_pages=1; otherwise one content like any other.\n",
	       hb(t.c.zero_pages, ps, b[0], sizeof(b[0])), (unsigned long long)t.c.zero_pages);
	human_bytes((int64_t)(r->table_bytes + r->scanner_bytes), b[3], sizeof(b[3]));
	printf("Read %llu resident pages in %.3f s (%.0f pages/s); the count used %s.\n",
	       (unsigned long long)r->pages_read, r->scan_seconds,
	       r->scan_seconds > 0 ? (double)r->pages_read / r->scan_seconds : 0.0, b[3]);
}
