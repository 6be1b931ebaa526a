/* SPDX-License-Identifier: MIT */
/* One tuning step for ksmtuned and `samepage tune`: gather, decide, apply. */
#ifndef SAMEPAGE_TUNER_H
#define SAMEPAGE_TUNER_H

#include "backend.h"

#include <regex.h>

struct tuner {
	struct tune_config cfg;
	char root[512];               /* "" for this machine */
	struct tune_backend *be;
	regex_t re;
	bool have_re;
	bool started;                 /* tuner_start() ran for this policy */
	struct classic_state classic;
	struct adaptive_state *adaptive;
};

/* Open the kernel backend (root: NULL or a recorded tree). */
int tuner_open(struct tuner *t, const struct tune_config *cfg, const char *root);
void tuner_close(struct tuner *t);

/* A new configuration (SIGHUP). The classic sleep and thres are computed
 * again at the next tuner_start(); npages is kept. A new policy starts
 * from its initial state. */
int tuner_reconfigure(struct tuner *t, const struct tune_config *cfg);

/* Read everything the configured policy needs. in->procs is malloc'ed:
 * tune_input_free(). Returns 0 or a negative errno (meminfo unreadable). */
int tuner_gather(struct tuner *t, struct tune_input *in);
void tune_input_free(struct tune_input *in);

/* Start-up computations (classic: total, sleep, thres), logged into d. */
int tuner_start(struct tuner *t, struct tune_decision *d);

/* One decision: classic adjust() or one adaptive step. */
void tuner_step(struct tuner *t, const struct tune_input *in, struct tune_decision *d);

/* Apply the decision's writes. 0, or a negative errno with err filled. */
int tuner_apply(struct tuner *t, const struct tune_decision *d, char *err, size_t len);

/* "Profit: 1.2 GiB" style amounts. */
void tune_human(int64_t bytes, char *buf, size_t len);

#endif
