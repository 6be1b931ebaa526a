/* SPDX-License-Identifier: MIT */
/*
 * samepage tune --dry-run: what ksmtuned's policy would decide now, and
 * why, from the same configuration file and the same code, changing
 * nothing.
 */
#include "cli.h"
#include "../tune/tuner.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WARNINGS 64

struct warnings {
	int n;
	char text[MAX_WARNINGS][TUNE_STR_MAX + 320];
};

static void collect(void *ctx, const char *file, int line, const char *msg)
{
	struct warnings *w = ctx;
	if (w->n < MAX_WARNINGS)
		snprintf(w->text[w->n++], sizeof(w->text[0]), "%s:%d: %s", file, line, msg);
}

static const char *action_word(enum tune_action a)
{
	return a == TUNE_START ? "start" : a == TUNE_STOP ? "stop" : "nothing";
}

static void print_human(const struct tuner *t, const char *config, bool found, const struct warnings *w,
			const struct tune_input *in, const struct tune_decision *start,
			const struct tune_decision *d, const char *npages_from)
{
	const struct tune_config *c = &t->cfg;
	bool classic = c->policy == TUNE_CLASSIC;
	printf("Policy: %s\n", classic ? "classic" : "adaptive");
	printf("Configuration: %s%s\n", config, found ? "" : " (not found: defaults)");
	for (int v = 0; v < TV_COUNT; v++) {
		const char *pol = tune_vars[v].policy;
		if (strcmp(pol, "both") && strcmp(pol, classic ? "classic" : "adaptive"))
			continue;
		char val[TUNE_STR_MAX];
		tune_var_format(c, v, val, sizeof(val));
		if (c->line[v] < 0)
			printf("  %-22s %-24s --policy\n", tune_vars[v].name, val);
		else if (c->line[v])
			printf("  %-22s %-24s line %d\n", tune_vars[v].name, val, c->line[v]);
		else
			printf("  %-22s %-24s default\n", tune_vars[v].name, val);
	}
	for (int i = 0; i < w->n; i++)
		printf("  warning: %s\n", w->text[i]);

	printf("\nInputs\n");
	printf("  MemTotal %lld kB, MemFree %lld kB, Buffers %lld kB, Cached %lld kB, MemAvailable %s%lld kB\n",
	       (long long)in->mem.total, (long long)in->mem.free, (long long)in->mem.buffers,
	       (long long)in->mem.cached, in->mem.have_available ? "" : "(absent) ",
	       (long long)in->mem.available);
	if (in->psi_some_avg10 >= 0)
		printf("  memory pressure (PSI) some avg10 %.2f%%\n", in->psi_some_avg10);
	else
		printf("  memory pressure (PSI): absent\n");
	if (classic)
		printf("  processes matching KSM_PROCESS_PATTERN '%s' (%s):%s\n", c->pattern,
		       tune_vars[TV_PS_METRIC].words[c->metric], in->nprocs ? "" : " none");
	else
		printf("  processes with mergeable memory (ksm_stat), resident mergeable kB:%s\n",
		       in->nprocs ? "" : " none");
	for (size_t i = 0; i < in->nprocs; i++)
		printf("    %7d %-16s %12lld kB\n", (int)in->procs[i].pid, in->procs[i].comm,
		       (long long)in->procs[i].kb);
	if (in->unreadable)
		printf("    (%zu processes could not be read)\n", in->unreadable);
	sp_savings sav;
	sp_savings_compute(&in->eng.s, &sav);
	char profit[32];
	tune_human(sav.profit_bytes, profit, sizeof(profit));
	bool user = t->cfg.engine == TUNE_ENGINE_USER;
	if (!in->eng.present)
		printf("  %s: absent\n", user ? "samepaged" : "ksm");
	else
		printf("  %s: run=%lld pages_to_scan=%lld sleep_millisecs=%lld advisor_mode=%s full_scans=%lld "
		       "profit %s\n",
		       user ? "samepaged" : "ksm", (long long)tune_get(in, SP_RUN, -1),
		       (long long)tune_get(in, SP_PAGES_TO_SCAN, -1), (long long)tune_get(in, SP_SLEEP_MILLISECS, -1),
		       !in->eng.has_advisor ? "absent" : tune_get(in, SP_ADVISOR_MODE, 0) ? "scan-time" : "none",
		       (long long)tune_get(in, SP_FULL_SCANS, -1), profit);
	if (in->eng.cpu_seconds >= 0)
		printf("  %s: %.2f CPU-seconds\n",
		       user ? "merging (the clients' engine threads and samepaged)" : "ksmd since boot",
		       in->eng.cpu_seconds);

	printf("\nComputed\n");
	if (classic) {
		printf("  total %lld, sleep %lld, thres %lld (computed once at start-up)\n",
		       (long long)t->classic.total, (long long)t->classic.sleep, (long long)t->classic.thres);
		printf("  free %lld (MemFree+Buffers+Cached), committed %lld\n", (long long)d->free,
		       (long long)d->committed);
		printf("  npages before: %s\n", npages_from);
	} else {
		printf("  total %lld, thres %lld, available %lld, mergeable %lld kB: %s\n", (long long)d->total,
		       (long long)d->thres, (long long)d->free, (long long)d->committed,
		       d->pressure ? "under pressure" : "not under pressure");
	}
	printf("\nDecision: %s", action_word(d->action));
	for (int b = 0; b < d->nbatches; b++)
		for (int i = 0; i < d->batch[b].n; i++)
			printf(" %s=%s", d->batch[b].name[i], d->batch[b].value[i]);
	printf("\n  because %s\n", d->reason);
	printf("\nLog (with DEBUG set, ksmtuned would write)\n");
	for (int i = 0; i < start->nlog; i++)
		printf("  %s\n", start->log[i]);
	for (int i = 0; i < d->nlog; i++)
		printf("  %s\n", d->log[i]);
	printf("\nNothing was changed (--dry-run).\n");
}

static json_object *j_i64(int64_t v)
{
	return json_object_new_int64(v);
}

static void print_json(const struct tuner *t, const char *config, bool found, const struct warnings *w,
		       const struct tune_input *in, const struct tune_decision *start,
		       const struct tune_decision *d, const char *npages_from)
{
	const struct tune_config *c = &t->cfg;
	bool classic = c->policy == TUNE_CLASSIC;
	json_object *root = json_object_new_object();
	json_object_object_add(root, "policy", json_object_new_string(classic ? "classic" : "adaptive"));

	json_object *cfg = json_object_new_object(), *vars = json_object_new_object();
	json_object_object_add(cfg, "file", json_object_new_string(config));
	json_object_object_add(cfg, "found", json_object_new_boolean(found));
	for (int v = 0; v < TV_COUNT; v++) {
		char val[TUNE_STR_MAX];
		tune_var_format(c, v, val, sizeof(val));
		json_object_object_add(vars, tune_vars[v].name,
				       tune_vars[v].kind == TVK_INT ? j_i64(strtoll(val, NULL, 10))
								    : json_object_new_string(val));
	}
	json_object_object_add(cfg, "variables", vars);
	json_object *warr = json_object_new_array();
	for (int i = 0; i < w->n; i++)
		json_object_array_add(warr, json_object_new_string(w->text[i]));
	json_object_object_add(cfg, "warnings", warr);
	json_object_object_add(root, "config", cfg);

	json_object *inp = json_object_new_object(), *mem = json_object_new_object();
	json_object_object_add(mem, "MemTotal", j_i64(in->mem.total));
	json_object_object_add(mem, "MemFree", j_i64(in->mem.free));
	json_object_object_add(mem, "Buffers", j_i64(in->mem.buffers));
	json_object_object_add(mem, "Cached", j_i64(in->mem.cached));
	json_object_object_add(mem, "MemAvailable", in->mem.have_available ? j_i64(in->mem.available) : NULL);
	json_object_object_add(inp, "meminfo_kb", mem);
	json_object_object_add(inp, "psi_some_avg10",
			       in->psi_some_avg10 >= 0 ? json_object_new_double(in->psi_some_avg10) : NULL);
	json_object *procs = json_object_new_array();
	for (size_t i = 0; i < in->nprocs; i++) {
		json_object *p = json_object_new_object();
		json_object_object_add(p, "pid", json_object_new_int(in->procs[i].pid));
		json_object_object_add(p, "comm", json_object_new_string(in->procs[i].comm));
		json_object_object_add(p, "kb", j_i64(in->procs[i].kb));
		json_object_array_add(procs, p);
	}
	json_object_object_add(inp, "processes", procs);
	json_object *ksm = json_object_new_object();
	static const sp_param shown[] = { SP_RUN, SP_PAGES_TO_SCAN, SP_SLEEP_MILLISECS, SP_ADVISOR_MODE,
					  SP_FULL_SCANS, SP_PAGES_SHARING, SP_GENERAL_PROFIT };
	for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
		int64_t v;
		json_object_object_add(ksm, sp_param_describe(shown[i])->name,
				       sp_sample_get(&in->eng.s, shown[i], &v) == 0 ? j_i64(v) : NULL);
	}
	json_object_object_add(ksm, "ksmd_cpu_seconds",
			       in->eng.cpu_seconds >= 0 ? json_object_new_double(in->eng.cpu_seconds) : NULL);
	json_object_object_add(inp, "ksm", ksm);
	json_object_object_add(root, "inputs", inp);

	json_object *comp = json_object_new_object();
	json_object_object_add(comp, "total", j_i64(d->total));
	json_object_object_add(comp, "thres", j_i64(d->thres));
	json_object_object_add(comp, "free", j_i64(d->free));
	json_object_object_add(comp, "committed", j_i64(d->committed));
	json_object_object_add(comp, "sleep", j_i64(classic ? t->classic.sleep : d->sleep));
	json_object_object_add(comp, "npages", j_i64(d->npages));
	json_object_object_add(comp, "npages_before", json_object_new_string(npages_from));
	json_object_object_add(comp, "pressure", json_object_new_boolean(d->pressure));
	json_object_object_add(root, "computed", comp);

	json_object *dec = json_object_new_object(), *writes = json_object_new_array();
	json_object_object_add(dec, "action", json_object_new_string(action_word(d->action)));
	for (int b = 0; b < d->nbatches; b++)
		for (int i = 0; i < d->batch[b].n; i++) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "name", json_object_new_string(d->batch[b].name[i]));
			json_object_object_add(o, "value", json_object_new_string(d->batch[b].value[i]));
			json_object_object_add(o, "transaction", json_object_new_int(b));
			json_object_array_add(writes, o);
		}
	json_object_object_add(dec, "writes", writes);
	json_object_object_add(dec, "reason", json_object_new_string(d->reason));
	json_object_object_add(root, "decision", dec);
	json_object *log = json_object_new_array();
	for (int i = 0; i < start->nlog; i++)
		json_object_array_add(log, json_object_new_string(start->log[i]));
	for (int i = 0; i < d->nlog; i++)
		json_object_array_add(log, json_object_new_string(d->log[i]));
	json_object_object_add(root, "log", log);
	puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

int cmd_tune(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "policy", required_argument, NULL, 'p' },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool dry = false, json = false, config_given = false;
	const char *policy = NULL, *config = TUNE_DEFAULT_CONFIG;
	int o;
	while ((o = getopt_long(argc, argv, "np:c:jh", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			dry = true;
			break;
		case 'p':
			policy = optarg;
			break;
		case 'c':
			config = optarg;
			config_given = true;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			printf("Usage: samepage tune --dry-run [--policy classic|adaptive] [--config FILE] [--json]\n");
			return EXIT_OK;
		default:
			return EXIT_REFUSED;
		}
	}
	if (optind < argc)
		return cli_fail(c, EXIT_REFUSED, "unexpected argument '%s'", argv[optind]);
	if (!dry)
		return cli_fail(c, EXIT_REFUSED, "only --dry-run is supported: ksmtuned(8) applies the policies");

	struct tune_config cfg;
	tune_config_defaults(&cfg);
	static struct warnings w;
	w.n = 0;
	int r = tune_config_load(&cfg, config, collect, &w);
	bool found = r >= 0;
	if (r < 0 && (r != -ENOENT || config_given))
		return cli_fail(c, EXIT_REFUSED, "cannot read configuration %s: %s", config, strerror(-r));
	if (policy) {
		if (strcmp(policy, "classic") == 0)
			cfg.policy = TUNE_CLASSIC;
		else if (strcmp(policy, "adaptive") == 0)
			cfg.policy = TUNE_ADAPTIVE;
		else
			return cli_fail(c, EXIT_REFUSED, "--policy: '%s' is not classic or adaptive", policy);
		cfg.line[TV_POLICY] = -1;  /* shown as "--policy" */
	}
	for (int i = 0; i < w.n && !json; i++)
		cli_note(c, "%s", w.text[i]);

	struct tuner t;
	r = tuner_open(&t, &cfg, c->root);
	if (r)
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot open the KSM view: %s", sp_strerror(r));
	struct tune_input in;
	r = tuner_gather(&t, &in);
	if (r == 0 && !in.eng.present) {
		bool user = cfg.engine == TUNE_ENGINE_USER;
		tune_input_free(&in);
		tuner_close(&t);
		if (user)
			return cli_fail(c, EXIT_NOT_RUNNING, "no samepaged answers on %s: start it (`samepaged &`)",
					cfg.engine_socket[0] ? cfg.engine_socket : "the default socket");
		return cli_fail(c, EXIT_NOT_SUPPORTED, "KSM is not supported by this kernel");
	}
	if (r) {
		tune_input_free(&in);
		tuner_close(&t);
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot read memory and KSM state: %s", sp_strerror(r));
	}
	struct tune_decision start, d;
	memset(&start, 0, sizeof(start));
	memset(&d, 0, sizeof(d));
	r = tuner_start(&t, &start);
	if (r) {
		tune_input_free(&in);
		tuner_close(&t);
		return cli_fail(c, EXIT_FAILURE_RUNTIME, "cannot read meminfo: %s", sp_strerror(r));
	}
	/* ksmtuned's own npages is not visible from outside: while ksmd runs,
	 * the pages_to_scan it last wrote is the best guess. */
	char npages_from[128];
	int64_t run = tune_get(&in, SP_RUN, 0), pts = tune_get(&in, SP_PAGES_TO_SCAN, 0);
	if (cfg.policy == TUNE_CLASSIC && run == 1) {
		t.classic.npages = pts;
		snprintf(npages_from, sizeof(npages_from), "%lld (pages_to_scan, as ksmd runs)", (long long)pts);
	} else {
		snprintf(npages_from, sizeof(npages_from), "0 (a freshly started ksmtuned)");
	}
	tuner_step(&t, &in, &d);
	if (json)
		print_json(&t, config, found, &w, &in, &start, &d, npages_from);
	else
		print_human(&t, config, found, &w, &in, &start, &d, npages_from);
	tune_input_free(&in);
	tuner_close(&t);
	return EXIT_OK;
}
