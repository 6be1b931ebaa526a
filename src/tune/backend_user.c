/* SPDX-License-Identifier: MIT */
/*
 * The user-space engine behind struct tune_backend: samepaged's control
 * socket (sp_ctl_*). The daemon speaks the kernel's names, so the policies
 * run unchanged. A daemon that is not running is an absent engine, not an
 * error: the tuner waits for it and reconnects, as it would wait for a
 * kernel without KSM to gain it.
 */
#include "backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct uctx {
	sp_ctl *ctl;
	char socket[TUNE_STR_MAX];  /* empty: sp_ctl_open()'s default */
};

static sp_ctl *connected(struct uctx *x)
{
	if (!x->ctl && sp_ctl_open(x->socket[0] ? x->socket : NULL, &x->ctl) != 0)
		x->ctl = NULL;
	return x->ctl;
}

/* The daemon went away: drop the connection, connect again next time. */
static int lost(struct uctx *x, int r)
{
	if (r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN || r == -EPROTO || r == -ECONNREFUSED ||
	    r == -ENOENT) {
		sp_ctl_close(x->ctl);
		x->ctl = NULL;
	}
	return r;
}

static int u_read(struct tune_backend *b, struct tune_engine *out)
{
	struct uctx *x = b->ctx;
	memset(out, 0, sizeof(*out));
	out->cpu_seconds = -1;
	if (!connected(x))
		return 0;  /* no daemon: absent */
	sp_ctl_info info;
	int r = sp_ctl_sample(x->ctl, &out->s);
	if (r == 0)
		r = sp_ctl_info_get(x->ctl, &info);
	if (r) {
		lost(x, r);
		memset(out, 0, sizeof(*out));
		out->cpu_seconds = -1;
		return 0;  /* it went away between two steps: absent until it is back */
	}
	out->present = true;
	out->has_advisor = (out->s.present >> SP_ADVISOR_MODE) & 1;
	/* What merging costs here: the clients' engine threads and the daemon. */
	out->cpu_seconds = info.cpu_seconds + info.daemon_cpu_seconds;
	out->cpu_pid = info.daemon_pid;  /* a restarted daemon starts a new count */
	return 0;
}

static int u_mergeable(struct tune_backend *b, struct tune_proc **out, size_t *n, size_t *unreadable)
{
	struct uctx *x = b->ctx;
	*out = NULL;
	*n = 0;
	*unreadable = 0;
	if (!connected(x))
		return 0;
	sp_proc_ksm *list;
	size_t count;
	int r = sp_ctl_processes(x->ctl, &list, &count);
	if (r)
		return lost(x, r) == -ENOMEM ? -ENOMEM : 0;
	struct tune_proc *procs = count ? calloc(count, sizeof(*procs)) : NULL;
	if (count && !procs) {
		free(list);
		return -ENOMEM;
	}
	size_t m = 0;
	for (size_t i = 0; i < count; i++) {
		if (list[i].ksm_mergeable != 1)
			continue;  /* connected, nothing registered */
		struct tune_proc *p = &procs[m];
		p->pid = list[i].pid;
		snprintf(p->comm, sizeof(p->comm), "%s", list[i].comm);
		p->merging_pages = list[i].ksm_merging_pages;
		/* RssAnon: the daemon does not know how much of the registered
		 * memory is resident, and registered memory is anonymous. */
		if (tune_proc_anon(NULL, p->pid, &p->kb, &p->start) != 0)
			continue;  /* exited, or in another pid namespace */
		m++;
	}
	free(list);
	*out = procs;
	*n = m;
	return 0;
}

static int u_set(struct tune_backend *b, const sp_setting *set, size_t n, sp_diag *d)
{
	struct uctx *x = b->ctx;
	if (!connected(x)) {
		if (d) {
			memset(d, 0, sizeof(*d));
			d->err = -ENOENT;
			d->index = -1;
			snprintf(d->msg, sizeof(d->msg), "samepaged is not running (socket %s)",
				 x->socket[0] ? x->socket : "default");
		}
		return -ENOENT;
	}
	return lost(x, sp_ctl_set(x->ctl, set, n, 0, d));
}

static void u_close(struct tune_backend *b)
{
	struct uctx *x = b->ctx;
	sp_ctl_close(x->ctl);
	free(x);
	free(b);
}

int tune_backend_user_open(const char *socket, struct tune_backend **out)
{
	struct tune_backend *b = calloc(1, sizeof(*b));
	struct uctx *x = calloc(1, sizeof(*x));
	if (!b || !x) {
		free(b);
		free(x);
		return -ENOMEM;
	}
	snprintf(x->socket, sizeof(x->socket), "%s", socket ? socket : "");
	b->name = "user";
	b->ctx = x;
	b->read = u_read;
	b->mergeable = u_mergeable;
	b->set = u_set;
	b->close = u_close;
	*out = b;
	return 0;
}
