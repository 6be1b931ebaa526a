/* SPDX-License-Identifier: MIT */
/*
 * samepaged: one event loop over a listening Unix socket and its clients.
 *
 * - Peers are identified with SO_PEERCRED; each belongs to the trust domain
 *   of its uid (a per-user daemon accepts only its own user).
 * - Pacing is ksmd's: one client at a time has a turn, in which it scans
 *   pages_to_scan pages every sleep_millisecs (pacing itself: one GRANT,
 *   one DONE) until its pass is done; a full scan is every client's pass,
 *   round-robin.
 * - Nothing a client sends is trusted: every message is validated, and a
 *   client that breaks the protocol, floods, or stops reading is
 *   disconnected; its references are released.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GRANT_TIMEOUT_NS (5LL * 1000000000LL)

#define SP_MAX_ORPHANS 1024

struct sp_daemon {
	int listen_fd;
	char path[108];
	bool system;
	uid_t owner;
	volatile sig_atomic_t stop;
	int verbose;
	uint64_t epoch, next_client_id;
	struct sp_client *clients[SP_MAX_CLIENTS];
	struct sp_domain *domains;
	int64_t knob[SP_PARAM_COUNT];
	uint64_t full_scans;
	uint64_t hints_dropped;       /* NOTIFY hints a busy client had no room for */
	bool stats_all_dirty;        /* knobs or full_scans changed: every counters page */
	/* pacing */
	uint32_t cursor;             /* slot whose turn it is */
	int granted;                 /* slot with an outstanding grant, or -1 */
	int64_t grant_ns, next_grant_ns;
	bool pass_had_work;
	int64_t adv_start_ns;
	uint8_t *scratch;            /* replies */
	/* Clients whose connection ended while their process lives on: their
	 * references stay until it exits (drop_client). */
	struct sp_client *orphans;
	uint32_t norphans;
	int64_t reaped_ns;           /* orphans are looked at every 2 s too */
	/* sp_daemon_run's poll set (here: more than a stack should hold, and
	 * one per daemon, since a program may run several) */
	struct pollfd pf[1 + SP_MAX_CLIENTS + SP_MAX_ORPHANS];
	uint32_t pf_slot[1 + SP_MAX_CLIENTS];
};

static void logmsg(sp_daemon *d, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void logmsg(sp_daemon *d, int level, const char *fmt, ...)
{
	if (level > d->verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "samepaged: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ------------------------------------------------------------- paths */

int sp_socket_path(bool system, char *buf, size_t len)
{
	if (!buf || !len)
		return -EINVAL;
	int n;
	if (system) {
		n = snprintf(buf, len, "/run/samepage/samepaged.sock");
	} else {
		const char *env = getenv("SAMEPAGE_SOCKET");
		const char *xdg = getenv("XDG_RUNTIME_DIR");
		if (env && *env)
			n = snprintf(buf, len, "%s", env);
		else if (xdg && *xdg)
			n = snprintf(buf, len, "%s/samepage/samepaged.sock", xdg);
		else
			n = snprintf(buf, len, "/tmp/samepage-%u/samepaged.sock", (unsigned)geteuid());
	}
	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

/* The socket's directory: created if missing; must be ours and private
 * (per-user), so that nobody can put a fake socket in our way. */
static int prepare_dir(const char *path, bool system, char *why, size_t whylen)
{
	char dir[108];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir) {
		snprintf(why, whylen, "socket path %s has no directory", path);
		return -EINVAL;
	}
	*slash = 0;
	if (mkdir(dir, system ? 0755 : 0700) != 0 && errno != EEXIST) {
		snprintf(why, whylen, "cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	struct stat st;
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "%s is not a directory", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid() || (!system && (st.st_mode & 077))) {
		snprintf(why, whylen, "%s must belong to uid %u and not be open to others", dir,
			 (unsigned)geteuid());
		return -EPERM;
	}
	return 0;
}

/* ------------------------------------------------------------- clients */

static struct sp_domain *domain_for(sp_daemon *d, uid_t uid)
{
	for (struct sp_domain *dom = d->domains; dom; dom = dom->next)
		if (dom->key == uid)
			return dom;
	struct sp_domain *dom = _sp_domain_new(uid);
	if (!dom)
		return NULL;
	dom->store.fork_gen = 1;
	snprintf(dom->store.name, sizeof(dom->store.name), "samepaged-%u", (unsigned)uid);
	dom->next = d->domains;
	d->domains = dom;
	return dom;
}

static void release_client(struct sp_client *c)
{
	if (c->dom) {
		_sp_domain_client_gone(c->dom, c);
		c->dom->stats_dirty = true;
	}
	_sp_domain_client_free(c);
	if (c->pidfd >= 0)
		close(c->pidfd);
	free(c);
}

/* The connection ends. Its references go with it only if its process is
 * gone: a process that lives on still maps the store pages (the client
 * lost the connection, or we dropped it), and releasing them could punch
 * them under it, to read zeros. Then they stay until the process exits;
 * if it connects again, it states what it maps afresh. */
static void drop_client(sp_daemon *d, struct sp_client *c, const char *why)
{
	if (!why)
		logmsg(d, 2, "client %llu (pid %d) left", (unsigned long long)c->id, (int)c->pid);
	else
		logmsg(d, 1, "client %llu (pid %d, uid %u) disconnected: %s", (unsigned long long)c->id, (int)c->pid,
		       (unsigned)c->uid, why);
	if (c->dom) {
		c->dom->clients--;
		c->dom->stats_dirty = true;
	}
	if (d->granted == (int)c->slot)
		d->granted = -1;
	close(c->fd);
	c->fd = -1;
	free(c->have_seg);
	c->have_seg = NULL;
	_sp_meta_free(c->buf, SP_PROTO_MAX_PAYLOAD);
	c->buf = NULL;
	d->clients[c->slot] = NULL;
	bool holds = c->held_end > 0 || c->nleases > 0;
	if (c->dom && !c->control && holds && d->norphans < SP_MAX_ORPHANS && _sp_peer_lives(c->pidfd)) {
		logmsg(d, 1, "client %llu: pid %d lives on, its store pages are kept until it exits",
		       (unsigned long long)c->id, (int)c->pid);
		c->next_orphan = d->orphans;
		d->orphans = c;
		d->norphans++;
		d->reaped_ns = 0;  /* looked at again at once: it may have exec'd */
		return;
	}
	release_client(c);
}

/* Orphans whose process has exited, or exec'd (it maps no store page any
 * more, and cannot map one without a connection): their references go. */
static void reap_orphans(sp_daemon *d)
{
	d->reaped_ns = _sp_now_ns();
	for (struct sp_client **pp = &d->orphans; *pp;) {
		struct sp_client *c = *pp;
		bool lives = _sp_peer_lives(c->pidfd), maps = lives && _sp_peer_maps_store(c->pid, c->dom->store.name);
		if (maps) {
			pp = &c->next_orphan;
			continue;
		}
		*pp = c->next_orphan;
		d->norphans--;
		logmsg(d, 1, "client %llu: pid %d %s, its store pages are released", (unsigned long long)c->id,
		       (int)c->pid, lives ? "maps none of them any more" : "exited");
		release_client(c);
	}
}

/* Tell a client why, then let it go. */
static void violation(sp_daemon *d, struct sp_client *c, int err, const char *why)
{
	struct sp_error e = { .err = err };
	snprintf(e.msg, sizeof(e.msg), "%s", why);
	_sp_proto_send(c->fd, SP_MSG_ERROR, 0, &e, sizeof(e), -1);
	drop_client(d, c, why);
}

/* A reply: the client is waiting for it and reads, so a full socket gets
 * a second to drain; a client that still does not read is dropped. */
#define REPLY_WAIT_MS 1000

static bool send_to(sp_daemon *d, struct sp_client *c, uint16_t type, const void *p, size_t len, int fd)
{
	int r = _sp_proto_send_wait(c->fd, type, 0, p, len, fd, REPLY_WAIT_MS);
	if (r) {
		drop_client(d, c, r == -EAGAIN || r == -EPIPE ? "not reading its messages" : strerror(-r));
		return false;
	}
	return true;
}

/* A message the client did not ask for (GRANT, KNOBS, UNMERGE_ALL). A
 * process that is paused (SIGSTOP, a frozen cgroup) reads nothing, and
 * hints can fill its socket meanwhile: that is no reason to drop it, which
 * would release its references and free store pages it still maps. -EAGAIN:
 * not sent now, try again later; false otherwise only if it was dropped. */
static int send_unasked(sp_daemon *d, struct sp_client *c, uint16_t type, const void *p, size_t len, int fd)
{
	int r = _sp_proto_send_wait(c->fd, type, 0, p, len, fd, 0);
	if (r == -EAGAIN)
		return r;
	if (r)
		drop_client(d, c, r == -EPIPE ? "not reading its messages" : strerror(-r));
	return r;
}

static void accept_client(sp_daemon *d)
{
	int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
		close(fd);
		return;
	}
	/* A per-user daemon serves its user only; root may always connect. */
	if (!d->system && cred.uid != d->owner && cred.uid != 0) {
		logmsg(d, 1, "refused uid %u: this daemon serves uid %u", (unsigned)cred.uid, (unsigned)d->owner);
		close(fd);
		return;
	}
	uint32_t slot = 0;
	while (slot < SP_MAX_CLIENTS && d->clients[slot])
		slot++;
	struct sp_client *c = slot < SP_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		free(c);
		close(fd);
		return;
	}
	int sz = 1 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	c->fd = fd;
	c->pidfd = _sp_peer_pidfd(fd, cred.pid);
	c->slot = slot;
	c->id = ++d->next_client_id;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->connected_ns = _sp_now_ns();
	d->clients[slot] = c;
}

/* What the client has not been sent yet because its socket was full:
 * sent before its next grant, in order (0: all sent; -EAGAIN: still full;
 * another error: the client was dropped). */
static int send_pending(sp_daemon *d, struct sp_client *c)
{
	if (c->pending & PENDING_UNMERGE) {
		struct sp_count z = { 0, 0 };
		int r = send_unasked(d, c, SP_MSG_UNMERGE_ALL, &z, sizeof(z), -1);
		if (r)
			return r;
		c->pending &= ~PENDING_UNMERGE;
	}
	if (c->pending & PENDING_KNOBS) {
		struct sp_knobs k = { { 0 } };
		for (int p = 0; p < SP_PARAM_COUNT && p < SP_PROTO_KNOBS; p++)
			k.knob[p] = d->knob[p];
		int r = send_unasked(d, c, SP_MSG_KNOBS, &k, sizeof(k), -1);
		if (r)
			return r;
		c->pending &= ~PENDING_KNOBS;
	}
	return 0;
}

static void push_knobs(sp_daemon *d)
{
	for (uint32_t i = 0; i < SP_MAX_CLIENTS; i++) {
		struct sp_client *c = d->clients[i];
		if (c && c->hello && !c->control) {
			c->pending |= PENDING_KNOBS;
			send_pending(d, c);
		}
	}
}

/* Send the fd of store segments this client has not seen yet. unasked: for
 * a hint (NOTIFY), not a reply: false when its socket is full, and it stays. */
static bool send_segments(sp_daemon *d, struct sp_client *c, const struct sp_result_rec *res, uint32_t n,
			  bool unasked)
{
	for (uint32_t i = 0; i < n; i++) {
		if (res[i].kind != SP_LOOKUP_STORE)
			continue;
		uint32_t seg = res[i].id / SP_SEG_PAGES;
		if (seg >= c->have_seg_cap) {
			uint32_t cap = seg + 64;
			uint8_t *g = realloc(c->have_seg, cap);
			if (!g)
				return false;
			memset(g + c->have_seg_cap, 0, cap - c->have_seg_cap);
			c->have_seg = g;
			c->have_seg_cap = cap;
		}
		if (c->have_seg[seg])
			continue;
		struct sp_segment_msg m = { seg, 0 };
		int rofd = _sp_store_ro_fd(&c->dom->store, seg);
		if (rofd < 0) {
			drop_client(d, c, "cannot share a store segment");
			return false;
		}
		if (unasked ? send_unasked(d, c, SP_MSG_SEGMENT, &m, sizeof(m), rofd) != 0
			    : !send_to(d, c, SP_MSG_SEGMENT, &m, sizeof(m), rofd))
			return false;
		c->have_seg[seg] = 1;
	}
	return true;
}

/* Tell the partner in slot of its pages that may now join a store page:
 * the notes of one PUBLISH, all in one message (a message each cost the
 * daemon a send and the partner a receive per page). */
static void notify_partner(sp_daemon *d, uint32_t slot, const struct sp_note *notes, uint32_t n)
{
	struct sp_client *p = slot < SP_MAX_CLIENTS ? d->clients[slot] : NULL;
	if (!p || p->control)
		return;
	struct {
		struct sp_count c;
		struct sp_notify_rec r[SP_PROTO_MAX_PUBLISH];
	} m;
	uint32_t k = 0;
	for (uint32_t i = 0; i < n && k < SP_PROTO_MAX_PUBLISH; i++) {
		if (notes[i].slot != slot)
			continue;
		struct sp_result_rec r = { SP_LOOKUP_STORE, notes[i].rec.id };
		if (!send_segments(d, p, &r, 1, true)) {
			if (d->clients[slot] == p)
				p->hints_lost = true;
			return;
		}
		m.r[k++] = notes[i].rec;
	}
	m.c = (struct sp_count){ k, 0 };
	/* A notice is a hint the partner's scanner would find itself later.
	 * A partner busy merging may not read for a while: when its socket
	 * is full the hint is dropped, not the partner. The message is far
	 * smaller than a socket buffer unit, so it is sent whole or not at all. */
	int err = _sp_proto_send(p->fd, SP_MSG_NOTIFY, 0, &m, _sp_proto_counted_size(SP_MSG_NOTIFY, k), -1);
	if (err == -EAGAIN) {
		d->hints_dropped++;
		p->hints_lost = true;  /* its next grant says so */
	} else if (err)
		drop_client(d, p, err == -EPIPE ? "not reading its messages" : strerror(-err));
}

/* ------------------------------------------------------------- control */

static void domain_sample(sp_daemon *d, struct sp_domain *dom, struct sp_stats *out)
{
	_sp_domain_sample(dom, d->clients, d->knob, d->full_scans, d->epoch, out);
	struct timespec ts;
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
		out->daemon_cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The counters pages of the domains whose counters may have changed (a
 * message from one of their clients, a client gone; every domain for a
 * knob or a full scan): after each wake, and before a reply to a control
 * tool (which may read the page at once). The daemon's own CPU is left
 * out (a system call each time): it comes with STATS over the socket, as
 * sp_ctl_info_get() asks. */
static void publish_stats(sp_daemon *d)
{
	for (struct sp_domain *dom = d->domains; dom; dom = dom->next)
		if (dom->stats && (dom->stats_dirty || d->stats_all_dirty)) {
			struct sp_stats st;
			_sp_domain_sample(dom, d->clients, d->knob, d->full_scans, d->epoch, &st);
			_sp_statpage_write(dom->stats, &st);
			dom->stats_dirty = false;
		}
	d->stats_all_dirty = false;
}

struct set_ctx {
	sp_daemon *d;
	struct sp_client *c;
};

static int daemon_read(void *ctx, int p, int64_t *v)
{
	struct set_ctx *s = ctx;
	if (sp_param_describe(p)->flags & SP_PF_KNOB) {
		*v = s->d->knob[p];
		return 0;
	}
	struct sp_stats st;
	domain_sample(s->d, s->c->dom, &st);
	*v = st.value[p];
	return 0;
}

static int daemon_write(void *ctx, int p, int64_t v)
{
	struct set_ctx *s = ctx;
	sp_daemon *d = s->d;
	if (p == SP_ADVISOR_MODE && v != d->knob[p])
		d->knob[SP_PAGES_TO_SCAN] = v ? d->knob[SP_ADVISOR_MIN_PAGES_TO_SCAN] : 100;
	d->knob[p] = v;
	if (p == SP_RUN && v == 2) {
		for (struct sp_domain *dom = d->domains; dom; dom = dom->next)
			_sp_domain_reset_unstable(dom);
		for (uint32_t i = 0; i < SP_MAX_CLIENTS; i++) {
			struct sp_client *c = d->clients[i];
			if (c && c->hello && !c->control) {
				c->unstable = 0;
				c->pending |= PENDING_UNMERGE;  /* sent with the knobs below */
			}
		}
	}
	push_knobs(d);
	return 0;
}

/* Knobs pace every domain: only root may change them on a system daemon. */
static int daemon_may_write(void *ctx, int p, sp_diag *diag)
{
	struct set_ctx *s = ctx;
	if (s->d->system && s->c->uid != 0) {
		_sp_diag(diag, -EACCES, p, "changing %s of the system daemon needs root", sp_param_describe(p)->name);
		return -EACCES;
	}
	return 0;
}

static const struct sp_set_ops daemon_ops = {
	.what = "the user-space engine",
	.read = daemon_read,
	.write = daemon_write,
	.may_write = daemon_may_write,
};

static void handle_set(sp_daemon *d, struct sp_client *c, const uint8_t *payload, uint32_t len)
{
	const struct sp_set_hdr *sh = (const void *)payload;
	sp_setting set[64];
	char *copy = malloc(len);
	struct sp_set_reply rep;
	memset(&rep, 0, sizeof(rep));
	if (!copy) {
		rep.err = -ENOMEM;
		send_to(d, c, SP_MSG_SET_REPLY, &rep, sizeof(rep), -1);
		return;
	}
	memcpy(copy, payload, len);
	char *s = copy + sizeof(*sh);
	for (uint32_t i = 0; i < sh->n; i++) {
		char *eq = strchr(s, '=');
		set[i].name = s;
		set[i].value = "";
		if (eq) {
			*eq = 0;
			set[i].value = eq + 1;
		}
		s += strlen(s) + (eq ? strlen(set[i].value) + 1 : 0) + 1;
	}
	sp_diag diag;
	_sp_diag_reset(&diag);
	struct set_ctx ctx = { d, c };
	rep.err = _sp_set_apply(&daemon_ops, &ctx, set, sh->n, sh->flags, &diag);
	rep.index = diag.index;
	rep.param = diag.param;
	snprintf(rep.msg, sizeof(rep.msg), "%s", diag.msg);
	free(copy);
	d->stats_all_dirty = true;
	publish_stats(d);  /* the caller may read the new values from the page at once */
	send_to(d, c, SP_MSG_SET_REPLY, &rep, sizeof(rep), -1);
}

static void handle_list(sp_daemon *d, struct sp_client *c)
{
	size_t cap = _sp_proto_counted_size(SP_MSG_LIST, SP_MAX_CLIENTS);
	uint8_t *buf = calloc(1, cap);
	if (!buf)
		return;
	struct sp_count *cnt = (void *)buf;
	struct sp_list_rec *r = (void *)(buf + sizeof(*cnt));
	for (uint32_t i = 0; i < SP_MAX_CLIENTS; i++) {
		struct sp_client *o = d->clients[i];
		if (!o || o->control || !o->hello || o->dom != c->dom)
			continue;  /* another domain's processes are none of its business */
		r[cnt->n].pid = o->pid;
		r[cnt->n].uid = o->uid;
		memcpy(r[cnt->n].comm, o->comm, sizeof(o->comm));
		r[cnt->n].st = o->st;
		if (!d->knob[SP_USE_ZERO_PAGES]) {
			/* as sp_engine_stat() and the kernel: merged into zero pages */
			r[cnt->n].st.merging += r[cnt->n].st.zero;
			r[cnt->n].st.zero = 0;
		}
		cnt->n++;
	}
	send_to(d, c, SP_MSG_LIST, buf, _sp_proto_counted_size(SP_MSG_LIST, cnt->n), -1);
	free(buf);
}

/* ------------------------------------------------------------- messages */

/* Receive buffer bytes kept touched between a client's bursts. */
#define BUF_KEEP (16u << 10)

static void end_of_pass(sp_daemon *d)
{
	d->full_scans++;
	d->stats_all_dirty = true;
	if (d->hints_dropped) {
		logmsg(d, 2, "%llu merge hints dropped this pass: their clients were busy",
		       (unsigned long long)d->hints_dropped);
		d->hints_dropped = 0;
	}
}

static void handle_done(sp_daemon *d, struct sp_client *c, const struct sp_done *done)
{
	c->st = done->st;
	if (c->buf_hwm > BUF_KEEP) {
		/* (done is in the first bytes of the buffer: untouched) */
		_sp_meta_trim(c->buf, BUF_KEEP, c->buf_hwm);
		c->buf_hwm = BUF_KEEP;
	}
	if (done->flags & SP_DONE_STATS_ONLY)
		return;  /* counters between grants (run=0, or a slow turn) */
	if (d->granted != (int)c->slot)
		return;  /* a late answer to a grant that timed out */
	if (done->flags & SP_DONE_PROGRESS) {
		d->grant_ns = _sp_now_ns();  /* alive, still in its turn */
		return;
	}
	d->granted = -1;
	d->next_grant_ns = _sp_now_ns() + d->knob[SP_SLEEP_MILLISECS] * 1000000LL;
	if (done->pass_done || done->visited == 0) {
		/* This client's pass is complete: the next one's turn. */
		d->cursor = c->slot + 1;
		d->pass_had_work = true;
	}
}

static void handle_message(sp_daemon *d, struct sp_client *c)
{
	char why[160];
	uint32_t n = 0;
	const uint8_t *payload = c->buf;
	if (_sp_proto_check(&c->hdr, payload, true, &n, why, sizeof(why))) {
		violation(d, c, -EPROTO, why);
		return;
	}
	uint16_t t = c->hdr.type;
	c->silent = false;
	if (c->dom)
		c->dom->stats_dirty = true;  /* (most messages change its counters) */
	if (!c->hello && t != SP_MSG_HELLO) {
		violation(d, c, -EPROTO, "HELLO expected first");
		return;
	}
	const void *recs = payload + sizeof(struct sp_count);
	switch (t) {
	case SP_MSG_HELLO: {
		if (c->hello) {
			violation(d, c, -EPROTO, "second HELLO");
			return;
		}
		const struct sp_hello *h = (const void *)payload;
		c->hello = true;
		c->control = h->flags & SP_HELLO_CONTROL;
		memcpy(c->comm, h->comm, sizeof(c->comm));
		c->comm[sizeof(c->comm) - 1] = 0;
		c->dom = domain_for(d, c->uid);
		if (!c->dom) {
			violation(d, c, -ENOMEM, "out of memory for a new domain");
			return;
		}
		c->dom->clients++;
		struct sp_welcome w = { .client_id = c->id, .epoch = d->epoch, .uid = c->uid, .seg_pages = SP_SEG_PAGES };
		for (int p = 0; p < SP_PARAM_COUNT && p < SP_PROTO_KNOBS; p++)
			w.knob[p] = d->knob[p];
		send_to(d, c, SP_MSG_WELCOME, &w, sizeof(w), -1);
		logmsg(d, 2, "client %llu: pid %d uid %u %s%s", (unsigned long long)c->id, (int)c->pid,
		       (unsigned)c->uid, c->comm, c->control ? " (control)" : "");
		return;
	}
	case SP_MSG_LOOKUP: {
		struct sp_count *cnt = (void *)d->scratch;
		struct sp_result_rec *res = (void *)(d->scratch + sizeof(*cnt));
		cnt->n = n;
		cnt->pad = 0;
		_sp_domain_lookup(c->dom, c, recs, n, d->knob[SP_MAX_PAGE_SHARING], res);
		if (send_segments(d, c, res, n, false))
			send_to(d, c, SP_MSG_LOOKUP_REPLY, d->scratch, _sp_proto_counted_size(SP_MSG_LOOKUP_REPLY, n), -1);
		return;
	}
	case SP_MSG_PUBLISH: {
		struct sp_count *cnt = (void *)d->scratch;
		struct sp_result_rec *res = (void *)(d->scratch + sizeof(*cnt));
		cnt->n = n;
		cnt->pad = 0;
		bool numa = !d->knob[SP_MERGE_ACROSS_NODES];
		struct sp_note notes[SP_PROTO_MAX_PUBLISH];
		uint32_t nn = _sp_domain_publish(c->dom, c, recs, n, d->knob[SP_MAX_PAGE_SHARING], numa, res, notes);
		if (send_segments(d, c, res, n, false))
			send_to(d, c, SP_MSG_PUBLISH_REPLY, d->scratch, _sp_proto_counted_size(SP_MSG_PUBLISH_REPLY, n), -1);
		/* The waiting partners, after the reply (notifying may drop one). */
		for (uint32_t i = 0; i < nn; i++) {
			bool first = true;  /* of its slot: each partner once */
			for (uint32_t j = 0; j < i && first; j++)
				first = notes[j].slot != notes[i].slot;
			if (first)
				notify_partner(d, notes[i].slot, notes + i, nn - i);
		}
		return;
	}
	case SP_MSG_REFS:
		if (_sp_domain_refs(c->dom, c, recs, n, why, sizeof(why)))
			violation(d, c, -EPROTO, why);
		return;
	case SP_MSG_FORGET:
		_sp_domain_forget(c->dom, c, recs, n);
		return;
	case SP_MSG_DONE:
		handle_done(d, c, (const void *)payload);
		return;
	case SP_MSG_FORKED:
		_sp_domain_forked(c->dom);
		return;
	case SP_MSG_SETTLE:
		_sp_domain_settle(c->dom, c);
		return;
	case SP_MSG_STATS_REQ: {
		struct sp_stats st;
		domain_sample(d, c->dom, &st);
		send_to(d, c, SP_MSG_STATS, &st, sizeof(st), -1);
		return;
	}
	case SP_MSG_STATS_MAP_REQ: {
		if (!c->dom->stats) {
			struct sp_error er = { .err = -EOPNOTSUPP };
			snprintf(er.msg, sizeof(er.msg), "no counters page: ask for STATS");
			send_to(d, c, SP_MSG_ERROR, &er, sizeof(er), -1);
			return;
		}
		publish_stats(d);
		struct sp_count z = { 0, 0 };
		send_to(d, c, SP_MSG_STATS_MAP, &z, sizeof(z), c->dom->stats_fd);
		return;
	}
	case SP_MSG_SET:
		handle_set(d, c, payload, c->hdr.len);
		return;
	case SP_MSG_LIST_REQ:
		handle_list(d, c);
		return;
	default:
		violation(d, c, -EPROTO, "unexpected message");
	}
}

/* Read what is there; handle whole messages. Bounded per call, so that a
 * flooding client cannot starve the others. */
static void read_client(sp_daemon *d, struct sp_client *c)
{
	for (int budget = 64; budget > 0; budget--) {
		size_t want;
		uint8_t *dst;
		if (c->got < sizeof(c->hdr)) {
			want = sizeof(c->hdr) - c->got;
			dst = (uint8_t *)&c->hdr + c->got;
		} else {
			if (c->hdr.magic != SP_PROTO_MAGIC || c->hdr.len > SP_PROTO_MAX_PAYLOAD) {
				violation(d, c, -EPROTO, "bad message header");
				return;
			}
			if (!c->buf) {
				/* Room for the largest message, in meta memory: the pages a
				 * burst touched are given back when its turn ends. */
				c->buf = _sp_meta_alloc(SP_PROTO_MAX_PAYLOAD);
				if (!c->buf) {
					violation(d, c, -ENOMEM, "out of memory");
					return;
				}
			}
			if (c->hdr.len > c->buf_hwm)
				c->buf_hwm = c->hdr.len;
			want = sizeof(c->hdr) + c->hdr.len - c->got;
			dst = c->buf + (c->got - sizeof(c->hdr));
		}
		if (want) {
			union {
				struct cmsghdr cm;
				char b[CMSG_SPACE(sizeof(int) * 4)];
			} ctl;
			struct iovec iov = { dst, want };
			struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
					    .msg_controllen = sizeof(ctl.b) };
			ssize_t r = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			if (r <= 0) {
				/* A process that exits may leave unread grants: a reset is a goodbye too. */
				bool bye = (r == 0 || errno == ECONNRESET) && !c->got;
				drop_client(d, c, bye ? NULL : r == 0 ? "closed mid-message" : strerror(errno));
				return;
			}
			if (m.msg_controllen) {
				for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
					if (cm->cmsg_type == SCM_RIGHTS)
						for (int *f = (int *)CMSG_DATA(cm);
						     (char *)f < (char *)cm + cm->cmsg_len; f++)
							close(*f);
				violation(d, c, -EPROTO, "clients may not send file descriptors");
				return;
			}
			c->got += (size_t)r;
			if ((size_t)r < want)
				return;
		}
		if (c->got >= sizeof(c->hdr) && c->got == sizeof(c->hdr) + c->hdr.len) {
			c->got = 0;
			uint64_t id = c->id;
			uint32_t slot = c->slot;
			handle_message(d, c);
			if (d->clients[slot] != c || c->id != id)
				return;  /* dropped */
		}
	}
}

/* ------------------------------------------------------------- pacing */

static void pace(sp_daemon *d, int64_t now)
{
	if (d->granted >= 0) {
		struct sp_client *c = d->clients[d->granted];
		if (c && now - d->grant_ns < GRANT_TIMEOUT_NS)
			return;
		if (c) {
			logmsg(d, 1, "client %llu did not finish its grant in time: skipped", (unsigned long long)c->id);
			c->silent = true;  /* no more turns until it says something */
		}
		d->granted = -1;
		d->cursor++;
	}
	if (d->knob[SP_RUN] != 1 || now < d->next_grant_ns)
		return;
	for (uint32_t k = 0; k < SP_MAX_CLIENTS; k++) {
		if (d->cursor >= SP_MAX_CLIENTS) {
			/* Wrapped: every client had its pass. */
			if (d->pass_had_work)
				end_of_pass(d);
			d->pass_had_work = false;
			d->cursor = 0;
		}
		struct sp_client *c = d->clients[d->cursor];
		/* A client that let its last grant time out (paused, or stuck)
		 * gets no turn until it speaks again: one timeout per pause, not
		 * one per pass for everyone else to wait out. */
		if (c && c->hello && !c->control && !c->silent) {
			struct sp_grant g = _sp_grant_turn(d->knob[SP_PAGES_TO_SCAN], d->knob[SP_SLEEP_MILLISECS]);
			uint32_t slot = c->slot;
			g.flags = c->hints_lost ? SP_GRANT_RELOOK : 0;
			int r = send_pending(d, c);
			if (r == 0)
				r = send_unasked(d, c, SP_MSG_GRANT, &g, sizeof(g), -1);
			if (r == 0)
				c->hints_lost = false;
			if (r == -EAGAIN) {
				/* paused or busy: its turn is skipped, as at a timeout,
				 * and the next one after a pause (all may be paused) */
				logmsg(d, 2, "client %llu is not reading: turn skipped", (unsigned long long)c->id);
				d->cursor++;
				d->next_grant_ns = now + (d->knob[SP_SLEEP_MILLISECS] + 1) * 1000000LL;
				return;
			}
			if (r == 0) {
				d->granted = (int)slot;
				d->grant_ns = now;
			}
			return;
		}
		d->cursor++;
	}
	/* Nobody to grant: look again after a pause, not in a busy loop. */
	d->next_grant_ns = now + (d->knob[SP_SLEEP_MILLISECS] + 1) * 1000000LL;
}

/* ------------------------------------------------------------- lifecycle */

int sp_daemon_new(const sp_daemon_config *cfg, sp_daemon **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	sp_daemon *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->listen_fd = -1;
	d->granted = -1;
	d->system = cfg && cfg->system;
	d->verbose = cfg ? cfg->verbose : 0;
	d->owner = geteuid();
	d->epoch = (uint64_t)_sp_now_ns() ^ ((uint64_t)getpid() << 32);
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		if (sp_param_describe(p)->flags & SP_PF_KNOB)
			d->knob[p] = sp_param_describe(p)->def;
	/* The kernel starts stopped because KSM is there whether wanted or
	 * not; starting samepaged is itself the decision to merge. */
	d->knob[SP_RUN] = cfg && cfg->stopped ? 0 : 1;
	d->scratch = malloc(SP_PROTO_MAX_PAYLOAD);
	char why[200] = "";
	int r = d->scratch ? 0 : -ENOMEM;
	if (!r) {
		if (cfg && cfg->socket)
			snprintf(d->path, sizeof(d->path), "%s", cfg->socket);
		else
			r = sp_socket_path(d->system, d->path, sizeof(d->path));
	}
	if (!r)
		r = prepare_dir(d->path, d->system, why, sizeof(why));
	if (!r) {
		d->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->path);
		/* A socket left by a daemon that died: replace it, but never a live one. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			snprintf(why, sizeof(why), "another samepaged is already serving %s", d->path);
			r = -EADDRINUSE;
		} else {
			unlink(d->path);
		}
		if (probe >= 0)
			close(probe);
		if (!r && (d->listen_fd < 0 || bind(d->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
			   listen(d->listen_fd, 64) != 0)) {
			r = -errno;
			snprintf(why, sizeof(why), "cannot listen on %s: %s", d->path, strerror(errno));
		}
		if (!r && d->system)
			chmod(d->path, 0666);  /* everyone may connect; SO_PEERCRED tells who */
	}
	if (r) {
		_sp_set_last_error(why);
		sp_daemon_free(d);
		return r;
	}
	logmsg(d, 1, "serving %s (%s)", d->path, d->system ? "system-wide" : "this user");
	*out = d;
	return 0;
}

const char *sp_daemon_socket(const sp_daemon *d)
{
	return d ? d->path : NULL;
}

void sp_daemon_stop(sp_daemon *d)
{
	if (d)
		d->stop = 1;
}

int sp_daemon_run(sp_daemon *d)
{
	if (!d)
		return -EINVAL;
	struct pollfd *pf = d->pf;
	uint32_t *slots = d->pf_slot;
	while (!d->stop) {
		int64_t now = _sp_now_ns();
		pace(d, now);
		publish_stats(d);
		nfds_t n = 0;
		pf[n++] = (struct pollfd){ d->listen_fd, POLLIN, 0 };
		for (uint32_t i = 0; i < SP_MAX_CLIENTS; i++)
			if (d->clients[i]) {
				slots[n] = i;
				pf[n++] = (struct pollfd){ d->clients[i]->fd, POLLIN, 0 };
			}
		/* Orphans: woken when one of their processes exits. */
		nfds_t orphan_at = n;
		for (struct sp_client *o = d->orphans; o; o = o->next_orphan)
			pf[n++] = (struct pollfd){ o->pidfd, POLLIN, 0 };
		/* Sleep until the next grant to the nanosecond: a timeout rounded
		 * down to milliseconds made the end of every sleep a busy loop of
		 * poll(0), more CPU than all the clients' scanning. */
		struct timespec ts = { 1, 0 };
		if (d->knob[SP_RUN] == 1 && d->granted < 0) {
			int64_t ns = d->next_grant_ns - now;
			if (ns < 0)
				ns = 0;
			if (ns < 1000000000LL)
				ts = (struct timespec){ 0, (long)ns };
		}
		int r = ppoll(pf, n, &ts, NULL);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r < 0)
			continue;
		bool reap = d->orphans && _sp_now_ns() - d->reaped_ns > 2000000000LL;
		for (nfds_t i = orphan_at; i < n && !reap; i++)
			reap = pf[i].revents != 0;
		if (reap)
			reap_orphans(d);
		if (r == 0)
			continue;
		if (pf[0].revents & POLLIN)
			accept_client(d);
		for (nfds_t i = 1; i < orphan_at; i++)
			if (pf[i].revents && d->clients[slots[i]])
				read_client(d, d->clients[slots[i]]);
	}
	return 0;
}

void sp_daemon_free(sp_daemon *d)
{
	if (!d)
		return;
	/* Going away is not the clients' end: they keep running on what they
	 * map (and merge again with the next daemon). Nothing is punched. */
	for (struct sp_domain *dom = d->domains; dom; dom = dom->next)
		dom->store.no_punch = true;
	for (uint32_t i = 0; i < SP_MAX_CLIENTS; i++)
		if (d->clients[i])
			drop_client(d, d->clients[i], NULL);
	while (d->orphans) {
		/* (the domains and their store go too: nothing is punched) */
		struct sp_client *c = d->orphans;
		d->orphans = c->next_orphan;
		release_client(c);
	}
	while (d->domains) {
		struct sp_domain *n = d->domains->next;
		_sp_domain_free(d->domains);
		d->domains = n;
	}
	if (d->listen_fd >= 0) {
		close(d->listen_fd);
		unlink(d->path);
	}
	free(d->scratch);
	free(d);
}
