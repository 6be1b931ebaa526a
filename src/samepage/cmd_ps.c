/* SPDX-License-Identifier: MIT */
/* samepage ps: processes with KSM activity from /proc/<pid>/ksm_stat. */
#include "cli.h"

#include <getopt.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *user_name(uid_t uid, char *buf, size_t len)
{
	if (uid == (uid_t)-1) {
		snprintf(buf, len, "?");
		return buf;
	}
	struct passwd *pw = getpwuid(uid);
	if (pw)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "%u", (unsigned)uid);
	return buf;
}

static const char *yes_no(int v)
{
	return v == 1 ? "yes" : v == 0 ? "no" : "-";
}

static void amount(int64_t bytes, bool raw, char *buf, size_t len)
{
	if (raw)
		snprintf(buf, len, "%lld", (long long)bytes);
	else
		human_bytes(bytes, buf, len);
}

static void print_table(const sp_proc_ksm *list, size_t n, bool raw)
{
	printf("%7s %-10s %-16s %10s %10s %10s %12s %-5s %-9s\n", "PID", "USER", "COMMAND",
	       "RMAP", "MERGING", "ZERO", "PROFIT", "ANY", "MERGEABLE");
	int64_t rmap = 0, merging = 0, zero = 0, profit = 0;
	for (size_t i = 0; i < n; i++) {
		const sp_proc_ksm *p = &list[i];
		char user[32], prof[32], comm[sizeof(p->comm)];
		amount(p->ksm_process_profit, raw, prof, sizeof(prof));
		printable_comm(p->comm, comm, sizeof(comm));
		printf("%7d %-10.10s %-16.16s %10lld %10lld %10lld %12s %-5s %-9s\n", (int)p->pid,
		       user_name(p->uid, user, sizeof(user)), comm, (long long)p->ksm_rmap_items,
		       (long long)p->ksm_merging_pages, (long long)p->ksm_zero_pages, prof,
		       yes_no(p->ksm_merge_any), yes_no(p->ksm_mergeable));
		rmap += p->ksm_rmap_items;
		merging += p->ksm_merging_pages;
		zero += p->ksm_zero_pages;
		profit += p->ksm_process_profit;
	}
	char prof[32];
	amount(profit, raw, prof, sizeof(prof));
	printf("%7s %-10s %-16s %10lld %10lld %10lld %12s\n", "TOTAL", "", "", (long long)rmap,
	       (long long)merging, (long long)zero, prof);
}

static json_object *yes_no_json(int v)
{
	return v < 0 ? NULL : json_object_new_boolean(v);
}

static void print_json(const sp_proc_ksm *list, size_t n, size_t unreadable)
{
	json_object *root = json_object_new_object(), *arr = json_object_new_array();
	int64_t rmap = 0, merging = 0, zero = 0, profit = 0;
	for (size_t i = 0; i < n; i++) {
		const sp_proc_ksm *p = &list[i];
		json_object *o = json_object_new_object();
		char user[32];
		json_object_object_add(o, "pid", json_object_new_int(p->pid));
		json_object_object_add(o, "uid", json_object_new_int64(p->uid));
		json_object_object_add(o, "user", json_object_new_string(user_name(p->uid, user, sizeof(user))));
		json_object_object_add(o, "comm", json_object_new_string(p->comm));
		json_object_object_add(o, "ksm_rmap_items", json_object_new_int64(p->ksm_rmap_items));
		json_object_object_add(o, "ksm_zero_pages", json_object_new_int64(p->ksm_zero_pages));
		json_object_object_add(o, "ksm_merging_pages", json_object_new_int64(p->ksm_merging_pages));
		json_object_object_add(o, "ksm_process_profit", json_object_new_int64(p->ksm_process_profit));
		json_object_object_add(o, "ksm_merge_any", yes_no_json(p->ksm_merge_any));
		json_object_object_add(o, "ksm_mergeable", yes_no_json(p->ksm_mergeable));
		json_object_array_add(arr, o);
		rmap += p->ksm_rmap_items;
		merging += p->ksm_merging_pages;
		zero += p->ksm_zero_pages;
		profit += p->ksm_process_profit;
	}
	json_object *tot = json_object_new_object();
	json_object_object_add(tot, "processes", json_object_new_int64((int64_t)n));
	json_object_object_add(tot, "ksm_rmap_items", json_object_new_int64(rmap));
	json_object_object_add(tot, "ksm_zero_pages", json_object_new_int64(zero));
	json_object_object_add(tot, "ksm_merging_pages", json_object_new_int64(merging));
	json_object_object_add(tot, "ksm_process_profit", json_object_new_int64(profit));
	json_object_object_add(root, "processes", arr);
	json_object_object_add(root, "total", tot);
	json_object_object_add(root, "unreadable", json_object_new_int64((int64_t)unreadable));
	puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

int cmd_ps(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "bytes", no_argument, NULL, 'b' },
		{ "engine", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, raw = false, user = false;
	int o;
	while ((o = getopt_long(argc, argv, "jbe:h", opts, NULL)) != -1) {
		switch (o) {
		case 'e':
			if (cli_engine_arg(c, optarg, &user))
				return EXIT_REFUSED;
			break;
		case 'j':
			json = true;
			break;
		case 'b':
			raw = true;
			break;
		case 'h':
			printf("Usage: samepage ps [--json] [--bytes] [--engine kernel|user]\n");
			return EXIT_OK;
		default:
			return EXIT_REFUSED;
		}
	}
	if (optind < argc)
		return cli_fail(c, EXIT_REFUSED, "unexpected argument '%s'", argv[optind]);
	int code;
	sp_proc_ksm *list;
	size_t n, unreadable = 0;
	int r;
	if (user) {
		/* samepaged shows only the processes of the caller's own domain */
		sp_ctl *ctl = cli_open_ctl(c, NULL, 0, &code);
		if (!ctl)
			return code;
		r = sp_ctl_processes(ctl, &list, &n);
		sp_ctl_close(ctl);
	} else {
		sp_ksm *k = cli_open_ksm(c, true, &code);
		if (!k)
			return code;
		r = sp_proc_ksm_list(k, &list, &n, &unreadable);
		sp_ksm_close(k);
	}
	if (r)
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot list processes: %s", sp_strerror(r));
	if (json)
		print_json(list, n, unreadable);
	else
		print_table(list, n, raw);
	if (unreadable && !json)
		cli_note(c, "%zu processes could not be read (other users' ksm_stat needs root)", unreadable);
	free(list);
	return EXIT_OK;
}
