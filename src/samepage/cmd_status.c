/* SPDX-License-Identifier: MIT */
/* samepage status: every knob and counter, what merging saves and costs. */
#include "cli.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct status {
	bool user;               /* the user-space engine, through samepaged */
	size_t clients;
	char socket[108];
	sp_sample s;
	sp_savings sav;
	bool have_ksmd;
	sp_ksmd_info ksmd;
	double cpu_percent;   /* over the interval; < 0 when not measured */
	double interval_s;
};

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static int collect(sp_ksm *k, long interval_ms, struct status *st)
{
	memset(st, 0, sizeof(*st));
	st->cpu_percent = -1;
	int r = sp_ksm_sample(k, &st->s);
	if (r)
		return r;
	sp_savings_compute(&st->s, &st->sav);
	st->have_ksmd = sp_ksmd_info_read(k, &st->ksmd) == 0;
	int64_t run = 0;
	sp_sample_get(&st->s, SP_RUN, &run);
	if (st->have_ksmd && run == 1 && interval_ms > 0) {
		sp_ksmd_info later;
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		sleep_ms(interval_ms);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (sp_ksmd_info_read(k, &later) == 0 && later.pid == st->ksmd.pid) {
			st->interval_s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
			st->cpu_percent = 100.0 * (later.cpu_seconds - st->ksmd.cpu_seconds) / st->interval_s;
			st->ksmd = later;
		}
	}
	return 0;
}

static const char *run_words(int64_t run)
{
	switch (run) {
	case 0:
		return "stopped (merged pages stay merged)";
	case 1:
		return "running";
	case 2:
		return "stopped and unmerged";
	default:
		return "in an unknown state";
	}
}

static void print_param(const struct status *st, sp_param p)
{
	const sp_param_info *in = sp_param_describe(p);
	int64_t v;
	char val[32], def[32] = "";
	if (sp_sample_get(&st->s, p, &v) != 0) {
		printf("  %-36s %-12s %s\n", in->name, "absent", "(this kernel lacks it)");
		return;
	}
	sp_param_format(p, v, val, sizeof(val));
	if (in->flags & SP_PF_KNOB) {
		sp_param_format(p, in->def, def, sizeof(def));
		printf("  %-36s %-12s %-10s%s\n", in->name, val, def, v != in->def ? " *" : "");
	} else {
		printf("  %-36s %s\n", in->name, val);
	}
}

static void print_human(const struct status *st)
{
	int64_t run = -1, sharing = 0, zero = 0;
	sp_sample_get(&st->s, SP_RUN, &run);
	sp_sample_get(&st->s, SP_PAGES_SHARING, &sharing);
	sp_sample_get(&st->s, SP_KSM_ZERO_PAGES, &zero);
	char b1[32], b2[32], b3[32];

	if (st->user)
		printf("User-space engine: %s (run=%lld), samepaged at %s, %zu client process%s in your domain\n",
		       run_words(run), (long long)run, st->socket, st->clients, st->clients == 1 ? "" : "es");
	else
		printf("KSM: %s (run=%lld)\n", run_words(run), (long long)run);
	if (st->user) {
		/* the merging is done by the clients' own threads */
	} else if (st->have_ksmd) {
		printf("ksmd: pid %d, state %c, %.2f s CPU since boot (%.2f%% on average)",
		       (int)st->ksmd.pid, st->ksmd.state, st->ksmd.cpu_seconds,
		       st->ksmd.age_seconds > 0 ? 100.0 * st->ksmd.cpu_seconds / st->ksmd.age_seconds : 0.0);
		if (st->cpu_percent >= 0)
			printf(", %.1f%% over the last %.2f s", st->cpu_percent, st->interval_s);
		printf("\n");
	} else {
		printf("ksmd: thread not found\n");
	}
	human_bytes(st->sav.saved_bytes, b1, sizeof(b1));
	human_bytes(st->sav.profit_bytes, b2, sizeof(b2));
	human_bytes(st->sav.metadata_bytes, b3, sizeof(b3));
	printf("\nSavings\n");
	printf("  saved          %12lld bytes  %-10s  (pages_sharing %lld + ksm_zero_pages %lld) x %ld\n",
	       (long long)st->sav.saved_bytes, b1, (long long)sharing, (long long)zero, st->s.page_size);
	printf("  profit         %12lld bytes  %-10s  general_profit%s\n", (long long)st->sav.profit_bytes,
	       b2, st->sav.profit_estimated ? " (estimated: this kernel lacks the file)" : "");
	printf("  metadata cost  %12lld bytes  %-10s  rmap items, 64 bytes per scanned page\n",
	       (long long)st->sav.metadata_bytes, b3);
	if (st->sav.sharing_ratio > 0)
		printf("  sharing ratio  %12.2f                    pages_sharing / pages_shared (higher is better)\n",
		       st->sav.sharing_ratio);
	else
		printf("  sharing ratio  %12s                    nothing merged yet\n", "-");
	if (sharing > 0)
		printf("  unshared ratio %12.2f                    pages_unshared / pages_sharing (high means wasted scanning)\n",
		       st->sav.unshared_ratio);

	printf("\nKnobs                                  value        default   (* = changed)\n");
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		if (sp_param_describe(p)->flags & SP_PF_KNOB)
			print_param(st, p);
	printf("\nCounters\n");
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		unsigned f = sp_param_describe(p)->flags;
		if ((f & SP_PF_COUNTER) && !(f & SP_PF_VMSTAT) && (st->user || !(f & SP_PF_ENGINE)))
			print_param(st, p);
	}
	if (st->user) {
		print_param(st, SP_COW_KSM);
		return;
	}
	printf("\n/proc/vmstat\n");
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		if (sp_param_describe(p)->flags & SP_PF_VMSTAT)
			print_param(st, p);
}

/* A number with a fixed number of decimals, without binary noise. */
static json_object *json_double(double v, int decimals)
{
	char text[64];
	snprintf(text, sizeof(text), "%.*f", decimals, v);
	return json_object_new_double_s(v, text);
}

static json_object *param_json(const struct status *st, sp_param p)
{
	int64_t v;
	if (sp_sample_get(&st->s, p, &v) != 0)
		return NULL;  /* json null: this kernel lacks it */
	if (sp_param_describe(p)->flags & SP_PF_ADVISOR)
		return json_object_new_string(v ? "scan-time" : "none");
	return json_object_new_int64(v);
}

static void print_json(const struct status *st)
{
	json_object *root = json_object_new_object();
	json_object_object_add(root, "available", json_object_new_boolean(1));
	json_object_object_add(root, "engine", json_object_new_string(st->user ? "user" : "kernel"));
	if (st->user) {
		json_object_object_add(root, "socket", json_object_new_string(st->socket));
		json_object_object_add(root, "clients", json_object_new_int64((int64_t)st->clients));
	}
	json_object_object_add(root, "page_size", json_object_new_int64(st->s.page_size));
	json_object *knobs = json_object_new_object(), *ctrs = json_object_new_object(),
		    *vm = json_object_new_object();
	for (int p = 0; p < SP_PARAM_COUNT; p++) {
		unsigned f = sp_param_describe(p)->flags;
		if ((f & SP_PF_ENGINE) && !st->user)
			continue;
		json_object *dst = (f & SP_PF_KNOB) ? knobs : (f & SP_PF_VMSTAT) ? vm : ctrs;
		json_object_object_add(dst, sp_param_describe(p)->name, param_json(st, p));
	}
	json_object_object_add(root, "knobs", knobs);
	json_object_object_add(root, "counters", ctrs);
	json_object_object_add(root, "vmstat", vm);

	json_object *sav = json_object_new_object();
	json_object_object_add(sav, "saved_bytes", json_object_new_int64(st->sav.saved_bytes));
	json_object_object_add(sav, "general_profit_bytes", json_object_new_int64(st->sav.profit_bytes));
	json_object_object_add(sav, "general_profit_estimated",
			       json_object_new_boolean(st->sav.profit_estimated));
	json_object_object_add(sav, "metadata_bytes", json_object_new_int64(st->sav.metadata_bytes));
	json_object_object_add(sav, "sharing_ratio",
			       st->sav.sharing_ratio > 0 ? json_double(st->sav.sharing_ratio, 4) : NULL);
	int64_t sharing = 0;
	sp_sample_get(&st->s, SP_PAGES_SHARING, &sharing);
	json_object_object_add(sav, "unshared_ratio",
			       sharing > 0 ? json_double(st->sav.unshared_ratio, 4) : NULL);
	json_object_object_add(root, "savings", sav);

	json_object *kd = NULL;
	if (st->have_ksmd) {
		kd = json_object_new_object();
		char state[2] = { st->ksmd.state, 0 };
		json_object_object_add(kd, "pid", json_object_new_int(st->ksmd.pid));
		json_object_object_add(kd, "state", json_object_new_string(state));
		json_object_object_add(kd, "cpu_seconds", json_double(st->ksmd.cpu_seconds, 2));
		json_object_object_add(kd, "age_seconds", json_double(st->ksmd.age_seconds, 2));
		json_object_object_add(kd, "cpu_percent",
				       st->cpu_percent >= 0 ? json_double(st->cpu_percent, 2) : NULL);
		json_object_object_add(kd, "cpu_interval_seconds",
				       st->cpu_percent >= 0 ? json_double(st->interval_s, 3) : NULL);
	}
	json_object_object_add(root, "ksmd", kd);
	puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

int cmd_status(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "interval", required_argument, NULL, 'i' },
		{ "engine", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, user = false;
	long interval_ms = 250;
	int o;
	while ((o = getopt_long(argc, argv, "ji:e:h", opts, NULL)) != -1) {
		switch (o) {
		case 'j':
			json = true;
			break;
		case 'e':
			if (cli_engine_arg(c, optarg, &user))
				return EXIT_REFUSED;
			break;
		case 'i': {
			char *end;
			interval_ms = strtol(optarg, &end, 10);
			if (*end || end == optarg || interval_ms < 0 || interval_ms > 60000)
				return cli_fail(c, EXIT_REFUSED,
						"--interval takes milliseconds from 0 to 60000, not '%s'", optarg);
			break;
		}
		case 'h':
			printf("Usage: samepage status [--json] [--interval MS] [--engine kernel|user]\n");
			return EXIT_OK;
		default:
			return EXIT_REFUSED;
		}
	}
	if (optind < argc)
		return cli_fail(c, EXIT_REFUSED, "unexpected argument '%s'", argv[optind]);

	int code;
	if (user) {
		struct status st;
		memset(&st, 0, sizeof(st));
		st.user = true;
		st.cpu_percent = -1;
		sp_ctl *ctl = cli_open_ctl(c, st.socket, sizeof(st.socket), &code);
		if (!ctl)
			return code;
		int r = sp_ctl_sample(ctl, &st.s);
		sp_proc_ksm *procs = NULL;
		if (!r && sp_ctl_processes(ctl, &procs, &st.clients) == 0)
			free(procs);
		sp_ctl_close(ctl);
		if (r)
			return cli_fail(c, EXIT_FAILURE_RUNTIME, "samepaged did not answer: %s", sp_strerror(r));
		sp_savings_compute(&st.s, &st.sav);
		if (json)
			print_json(&st);
		else
			print_human(&st);
		return EXIT_OK;
	}
	sp_ksm *k = cli_open_ksm(c, false, &code);
	if (!k)
		return code;
	if (!sp_ksm_available(k)) {
		if (json)
			printf("{\n  \"available\": false\n}\n");
		else
			printf("KSM: not supported by this kernel (%s does not exist: CONFIG_KSM is off)\n",
			       sp_ksm_sysfs_dir(k));
		sp_ksm_close(k);
		return EXIT_NOT_SUPPORTED;
	}
	/* A recorded tree has no "now" to sample a rate from. */
	if (c->root && *c->root && strcmp(c->root, "/") != 0)
		interval_ms = 0;
	struct status st;
	int r = collect(k, interval_ms, &st);
	sp_ksm_close(k);
	if (r)
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot read KSM state: %s", sp_strerror(r));
	if (json)
		print_json(&st);
	else
		print_human(&st);
	return EXIT_OK;
}
