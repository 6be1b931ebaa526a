/* SPDX-License-Identifier: MIT */
/*
 * The engine as a client of samepaged: instead of its own index and store,
 * it asks the daemon of its trust domain. The daemon paces it (GRANT), so
 * the engine's thread waits on the socket instead of sleeping.
 *
 * A rule kept everywhere here: no socket I/O while pages are frozen. Every
 * exchange with the daemon happens before a batch freezes anything or after
 * it has thawed, so a daemon that dies or hangs can never leave a writer of
 * the application waiting.
 */
#include "engine.h"
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define RPC_TIMEOUT_MS 5000

struct sp_remote {
	int fd;                        /* -1 while disconnected */
	uint64_t epoch;                /* of the daemon whose store pages we map */
	bool ever_connected;
	int64_t retry_ns;
	char path[108];
	/* queued for the daemon: sent outside freeze windows */
	struct sp_refs_rec *refs;
	uint32_t nrefs, caprefs;
	struct sp_forget_rec *forget;
	uint32_t nforget;
	/* from the daemon: pages of ours that may join a store page */
	struct sp_notify_rec *notes;
	uint32_t nnotes, notes_hwm;   /* notes queued; most since the last trim */
	uint32_t notes_allowed;       /* this batch may still merge so many of them */
	bool leased;                  /* STORE answers since our last SETTLE */
	/* lookups not yet sent: this batch's, or a few batches' (LOOKUP_WINDOW_NS) */
	struct sp_lookup_rec *lk;
	uint32_t *lk_rid;
	size_t *lk_page;
	uint32_t nlk;
	int64_t lk_since_ns;          /* when the first of them was queued */
	uint64_t lk_pass;             /* e->full_scans then */
	bool lk_waited;               /* some waited for a later batch */
	uint8_t *msg;                  /* receive buffer */
	bool msg_big;                  /* PUBLISH used it beyond TRIM_BYTES this turn */
	bool unmerge_all, grant_pending;
	int64_t done_ns;          /* when the daemon last had our counters */
	struct sp_client_stats sent;  /* those counters (sent_valid: on this connection) */
	bool sent_valid;
	uint32_t grant;
	bool in_turn;             /* pacing ourselves: a batch every turn_sleep_ms */
	int wake_fd;              /* eventfd: ends an idle wait when the engine stops */
	uint32_t turn_sleep_ms;
	int64_t next_batch_ns;
	uint64_t passes;
};

#define QCAP 16384

/* Between turns the thread wakes only to tell the daemon its counters, once
 * a second (STATS_NS): waking every 100 ms for nothing, 7 idle clients of 8
 * took 700 wakes in 10 s of the merging pass, as many as the client in its
 * turn and the daemon together, each ~50 us of CPU on this VM. Without the
 * eventfd that stops the wait (IDLE_NO_WAKE_NS) the engine's end would take
 * up to a second. */
#define STATS_NS 1000000000LL
#define IDLE_NO_WAKE_NS 100000000LL

/* At a slow pace (a batch every sleep_millisecs), the lookups of several
 * batches go to the daemon together, at most this long after the first of
 * them was queued: a round trip per batch woke the daemon and us twice
 * per batch, most of the cost of a batch of 100 pages. A merge comes at
 * most this much later; lookups never wait across a pass. */
#define LOOKUP_WINDOW_NS (100 * 1000000LL)

/* Pages per PUBLISH we send (the protocol allows SP_PROTO_MAX_PUBLISH),
 * each batch a round trip to the daemon. What a burst touches of the
 * message buffers beyond TRIM_BYTES goes back at the end of the turn, here
 * and in the daemon, so large batches cost memory only while publishing. */
#define PUBLISH_BATCH SP_PROTO_MAX_PUBLISH
_Static_assert(PUBLISH_BATCH <= SP_PROTO_MAX_PUBLISH, "PUBLISH_BATCH");

/* Queue and buffer memory beyond this, used in a burst, is given back. */
#define TRIM_BYTES (16u << 10)

/* ------------------------------------------------------------- queues */

void _sp_remote_ref(sp_engine *e, uint32_t id, int refs, int sharers)
{
	struct sp_remote *rm = e->remote;
	if (!rm || rm->fd < 0)
		return;  /* the daemon dropped our references when we lost it */
	if (rm->nrefs && rm->refs[rm->nrefs - 1].id == id) {
		rm->refs[rm->nrefs - 1].refs += refs;
		rm->refs[rm->nrefs - 1].sharers += sharers;
		return;
	}
	if (rm->nrefs == QCAP)
		return;  /* never expected: callers flush long before */
	rm->refs[rm->nrefs++] = (struct sp_refs_rec){ id, refs, sharers, 0 };
}

void _sp_remote_forget(sp_engine *e, uint64_t key, uintptr_t addr)
{
	struct sp_remote *rm = e->remote;
	if (!rm || rm->fd < 0 || rm->nforget == QCAP)
		return;
	rm->forget[rm->nforget++] = (struct sp_forget_rec){ key, addr };
}

/* Queued lookups name pages by the state they had when queued: after an
 * unmerge, a lost connection or a fork they mean nothing. */
static void drop_lookups(struct sp_remote *rm)
{
	rm->nlk = 0;
	rm->lk_waited = false;
}

static void disconnect(sp_engine *e, const char *why)
{
	struct sp_remote *rm = e->remote;
	if (rm->fd >= 0) {
		close(rm->fd);
		rm->fd = -1;
		if (why && getenv("SAMEPAGE_DEBUG"))
			fprintf(stderr, "samepage: lost samepaged: %s\n", why);
	}
	drop_lookups(rm);
	rm->nrefs = rm->nforget = rm->nnotes = 0;
	rm->grant_pending = rm->in_turn = rm->leased = rm->sent_valid = false;
	rm->retry_ns = _sp_now_ns() + 200000000LL;
}

static int send_counted(sp_engine *e, uint16_t type, const void *recs, uint32_t n, size_t recsize)
{
	struct sp_remote *rm = e->remote;
	size_t len = sizeof(struct sp_count) + (size_t)n * recsize;
	struct sp_count *c = (void *)rm->msg;
	c->n = n;
	c->pad = 0;
	memcpy(rm->msg + sizeof(*c), recs, (size_t)n * recsize);
	int r = _sp_proto_send(rm->fd, type, 0, rm->msg, len, -1);
	if (r)
		disconnect(e, strerror(-r));
	return r;
}

/* Send what is queued. Only ever called with no page frozen. */
void _sp_remote_flush(sp_engine *e)
{
	struct sp_remote *rm = e->remote;
	if (!rm || rm->fd < 0)
		return;
	for (uint32_t at = 0; at < rm->nrefs && rm->fd >= 0; at += SP_PROTO_MAX_LOOKUP) {
		uint32_t k = rm->nrefs - at < SP_PROTO_MAX_LOOKUP ? rm->nrefs - at : SP_PROTO_MAX_LOOKUP;
		send_counted(e, SP_MSG_REFS, rm->refs + at, k, sizeof(struct sp_refs_rec));
	}
	rm->nrefs = 0;
	for (uint32_t at = 0; at < rm->nforget && rm->fd >= 0; at += SP_PROTO_MAX_LOOKUP) {
		uint32_t k = rm->nforget - at < SP_PROTO_MAX_LOOKUP ? rm->nforget - at : SP_PROTO_MAX_LOOKUP;
		send_counted(e, SP_MSG_FORGET, rm->forget + at, k, sizeof(struct sp_forget_rec));
	}
	rm->nforget = 0;
	/* The pages we were answered are mapped (their REFS are sent above) or
	 * will not be: the daemon may let them go now (domain.c, lease()). */
	if (rm->leased && rm->fd >= 0) {
		struct sp_count z = { 0, 0 };
		int r = _sp_proto_send(rm->fd, SP_MSG_SETTLE, 0, &z, sizeof(z), -1);
		if (r)
			disconnect(e, strerror(-r));
		rm->leased = false;
	}
}

/* ------------------------------------------------------------- receiving */

/* Every page of ours waiting for a partner becomes `state` (WRITTEN: looked
 * up again at its next visit; NEW: starts over), and no resting block
 * skips it. The daemon's unstable index no longer knows it (run=2), or
 * hints for it were lost, or it knew us by another slot. */
static void waiting_pages_to(sp_engine *e, uint8_t state)
{
	for (uint32_t id = 0; id < e->nranges; id++) {
		struct sp_range *r = e->ranges[id];
		for (size_t i = 0; r && i < r->npages; i++)
			if (r->pg[i].state == SP_PG_UNSHARED) {
				_sp_page_set_state(e, &r->pg[i], state);
				if (i / SP_REST_PAGES < SP_REST_BLOCKS(r->npages))
					r->rest[i / SP_REST_PAGES] = 0;
			}
	}
}

static void apply_knobs(sp_engine *e, const int64_t *k)
{
	for (int p = 0; p < SP_PARAM_COUNT && p < SP_PROTO_KNOBS; p++)
		if (sp_param_describe(p)->flags & SP_PF_KNOB)
			e->knob[p] = k[p];
}

/* Handle a message that was not the awaited reply. */
static void async_message(sp_engine *e, const struct sp_hdr *h, const uint8_t *p, int fd)
{
	struct sp_remote *rm = e->remote;
	switch (h->type) {
	case SP_MSG_SEGMENT: {
		const struct sp_segment_msg *m = (const void *)p;
		if (fd < 0 || _sp_store_attach(&e->store, m->seg, fd) != 0)
			disconnect(e, "cannot map a store segment");
		fd = -1;
		break;
	}
	case SP_MSG_NOTIFY: {
		const struct sp_count *c = (const void *)p;
		const struct sp_notify_rec *r = (const void *)(p + sizeof(*c));
		for (uint32_t i = 0; i < c->n && rm->nnotes < QCAP; i++)
			rm->notes[rm->nnotes++] = r[i];
		if (rm->nnotes > rm->notes_hwm)
			rm->notes_hwm = rm->nnotes;
		break;
	}
	case SP_MSG_KNOBS: {
		const int64_t *k = ((const struct sp_knobs *)p)->knob;
		apply_knobs(e, k);
		if (rm->in_turn) {  /* the pace changed in our turn */
			struct sp_grant g = _sp_grant_turn(k[SP_PAGES_TO_SCAN], k[SP_SLEEP_MILLISECS]);
			rm->grant = g.pages;
			rm->turn_sleep_ms = g.sleep_ms;
		}
		break;
	}
	case SP_MSG_UNMERGE_ALL:
		rm->unmerge_all = true;
		break;
	case SP_MSG_GRANT: {
		const struct sp_grant *g = (const void *)p;
		rm->grant_pending = true;
		rm->grant = g->pages;
		rm->in_turn = true;
		rm->turn_sleep_ms = g->sleep_ms;
		if (g->flags & SP_GRANT_RELOOK)
			waiting_pages_to(e, SP_PG_WRITTEN);
		break;
	}
	case SP_MSG_ERROR:
		disconnect(e, ((const struct sp_error *)p)->msg);
		break;
	default:
		disconnect(e, "unexpected message");
	}
	if (fd >= 0)
		close(fd);
}

/* Receive until a message of type want arrives (its payload is left in
 * rm->msg); others are handled on the way. want = 0: one message. */
static int recv_until(sp_engine *e, uint16_t want, int timeout_ms)
{
	struct sp_remote *rm = e->remote;
	for (;;) {
		if (rm->fd < 0)
			return -ENOTCONN;
		struct pollfd pf = { rm->fd, POLLIN, 0 };
		int pr = poll(&pf, 1, timeout_ms);
		if (pr == 0) {
			/* No answer in time: a late one must not be taken for
			 * the answer to a later question. Reconnecting is safe
			 * (our pages are kept while we live). */
			if (want)
				disconnect(e, "no answer in time");
			return -ETIMEDOUT;
		}
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (pr < 0)
			continue;
		struct sp_hdr h;
		int fd = -1;
		int r = _sp_proto_recv(rm->fd, &h, rm->msg, SP_PROTO_MAX_PAYLOAD, &fd);
		if (r < 0) {
			disconnect(e, strerror(-r));
			return r;
		}
		if (want && h.type == want) {
			if (fd >= 0)
				close(fd);
			return r;
		}
		async_message(e, &h, rm->msg, fd);
		if (!want)
			return 0;
	}
}

/* ------------------------------------------------------------- connecting */

/* Pages merged with a daemon that is gone name its store: turn them back
 * into private memory (or stop managing those that cannot be), and forget
 * its segments, whose ids the new daemon will use again. */
static void forget_old_daemon(sp_engine *e)
{
	_sp_unmerge_all(e, true);
	for (uint32_t id = 0; id < e->nranges; id++) {
		struct sp_range *r = e->ranges[id];
		for (size_t i = 0; r && i < r->npages; i++) {
			uint8_t st = r->pg[i].state;
			if (_sp_page_maps_store(&r->pg[i])) {
				/* still maps the old store: not ours to manage any more */
				_sp_page_set_state(e, &r->pg[i], SP_PG_NEW);
				r->pg[i].ref = SP_NONE;
			} else if (st == SP_PG_UNSHARED) {
				_sp_page_set_state(e, &r->pg[i], SP_PG_NEW);
			}
		}
	}
	e->store.no_punch = true;
	_sp_store_fini(&e->store);
	_sp_store_init(&e->store);
	e->store.no_punch = true;  /* the daemon owns the store's lifetime */
	e->pages_shared = e->pages_sharing = 0;
}

/* Our references, as counts rather than changes: each store page we map
 * and how many of our pages name it. */
static void restate_refs(sp_engine *e)
{
	struct sp_remote *rm = e->remote;
	for (uint32_t id = 0; id < e->store.npg_cap && rm->fd >= 0; id++) {
		const struct sp_spage *s = &e->store.pg[id];
		if (!s->refs)
			continue;
		if (rm->nrefs == QCAP)
			_sp_remote_flush(e);
		rm->refs[rm->nrefs++] = (struct sp_refs_rec){ id, (int32_t)s->refs, (int32_t)s->sharers, 0 };
	}
	_sp_remote_flush(e);
}

static int try_connect(sp_engine *e)
{
	struct sp_remote *rm = e->remote;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", rm->path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int r = -errno;
		/* No per-user daemon: a system-wide one, if there is one. */
		char sys[108];
		if (!getenv("SAMEPAGE_SOCKET") && sp_socket_path(true, sys, sizeof(sys)) == 0) {
			snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sys);
			if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
				r = 0;
		}
		if (r) {
			close(fd);
			return r;
		}
	}
	rm->fd = fd;
	struct sp_hello h = { .flags = 0, .pid = getpid() };
	snprintf(h.comm, sizeof(h.comm), "%s", program_invocation_short_name);
	int r = _sp_proto_send(fd, SP_MSG_HELLO, 0, &h, sizeof(h), -1);
	if (!r)
		r = recv_until(e, SP_MSG_WELCOME, RPC_TIMEOUT_MS);
	if (r < 0) {
		disconnect(e, "no welcome");
		return r;
	}
	const struct sp_welcome *w = (const void *)rm->msg;
	if (w->seg_pages != SP_SEG_PAGES) {
		disconnect(e, "segment size differs");
		return -EPROTO;
	}
	if (rm->ever_connected && w->epoch != rm->epoch) {
		/* Releases of the old daemon's pages mean nothing to this one
		 * (it would take them for lies): unmerge with the socket muted. */
		rm->fd = -1;
		forget_old_daemon(e);
		rm->nrefs = rm->nforget = rm->nnotes = 0;
		rm->fd = fd;
	} else if (rm->ever_connected) {
		/* The same daemon: it keeps what we held while our process
		 * lives (daemon.c, drop_client), but as another client's. Say
		 * afresh what we map, and look up again what waits for a
		 * partner (the unstable index knew us by our old slot). */
		rm->nrefs = rm->nforget = 0;
		restate_refs(e);
		waiting_pages_to(e, SP_PG_WRITTEN);
	}
	rm->epoch = w->epoch;
	rm->ever_connected = true;
	apply_knobs(e, w->knob);
	return 0;
}

/* ------------------------------------------------------------- lookups */

void _sp_remote_queue(sp_engine *e, uint32_t rid, size_t i, uint64_t key, uint8_t node)
{
	struct sp_remote *rm = e->remote;
	if (rm->nlk >= SP_MAX_JOBS)
		return;
	if (rm->nlk == 0) {
		rm->lk_since_ns = _sp_now_ns();
		rm->lk_pass = e->full_scans;
	}
	uintptr_t addr = e->ranges[rid]->start + i * SP_PAGE;
	rm->lk[rm->nlk] = (struct sp_lookup_rec){ key, addr, node, 0 };
	rm->lk_rid[rm->nlk] = rid;
	rm->lk_page[rm->nlk] = i;
	rm->nlk++;
}

bool _sp_remote_full(const sp_engine *e)
{
	return e->remote->nlk >= SP_MAX_JOBS;
}

void _sp_remote_notes_budget(sp_engine *e, uint32_t pages)
{
	e->remote->notes_allowed = pages;
}

uint32_t _sp_remote_notes_left(const sp_engine *e)
{
	return e->remote->notes_allowed;
}

bool _sp_remote_notes_pending(const sp_engine *e)
{
	const struct sp_remote *rm = e->remote;
	return rm->nnotes > 0 && rm->fd >= 0 && rm->notes_allowed > 0;
}

/* A store page of the daemon, known to us now. */
static bool know_store_page(sp_engine *e, uint32_t id, uint64_t key)
{
	if (!_sp_store_has(&e->store, id))
		return false;
	struct sp_spage *s = &e->store.pg[id];
	if (!s->live) {
		memset(s, 0, sizeof(*s));
		s->live = 1;
		e->store.seg[id / SP_SEG_PAGES].live++;
	}
	s->hash = key;
	return true;
}

static void add_job(sp_engine *e, size_t *njobs, uint32_t rid, size_t page, uint32_t id)
{
	if (*njobs >= SP_MAX_JOBS)
		return;  /* the page is looked up again at its next visit */
	struct sp_job *j = &e->jobs[(*njobs)++];
	memset(j, 0, sizeof(*j));
	j->rid = rid;
	j->page = page;
	j->kind = SP_JOB_STABLE;
	j->store = id;
}

/* The registered page at addr (its range's id and index), or NULL. */
static struct sp_page *page_at(sp_engine *e, uintptr_t addr, uint32_t *rid, size_t *i)
{
	struct sp_range *r = _sp_range_at(e, addr, rid);
	if (!r)
		return NULL;
	*i = (addr - r->start) / SP_PAGE;
	return &r->pg[*i];
}

/* Our pages the daemon says now have a store page (their partner
 * published): looked up now, so that the answer comes with a lease
 * (domain.c); a note is only a hint, its page may have gone since. */
static void notes_to_lookups(sp_engine *e)
{
	struct sp_remote *rm = e->remote;
	uint32_t keep = 0;
	for (uint32_t k = 0; k < rm->nnotes; k++) {
		if (rm->nlk >= SP_MAX_JOBS || rm->notes_allowed == 0) {
			rm->notes[keep++] = rm->notes[k];
			continue;
		}
		uint32_t rid;
		size_t i;
		struct sp_page *pg = page_at(e, rm->notes[k].addr, &rid, &i);
		if (!pg || pg->state != SP_PG_UNSHARED || _sp_key(e, pg) != rm->notes[k].key)
			continue;
		_sp_remote_queue(e, rid, i, rm->notes[k].key, pg->node);
		rm->notes_allowed--;  /* a page merged counts as a page scanned */
	}
	rm->nnotes = keep;
	/* A partner's publication can queue thousands of notes at once. */
	if (rm->notes_hwm > keep + TRIM_BYTES / sizeof(*rm->notes)) {
		_sp_meta_trim(rm->notes, keep * sizeof(*rm->notes), rm->notes_hwm * sizeof(*rm->notes));
		rm->notes_hwm = keep;
	}
}

/* May the queued lookups wait for the next batch? Only within a turn at a
 * slow pace, while the next batch comes within the window, in this pass. */
static bool may_wait(const sp_engine *e)
{
	const struct sp_remote *rm = e->remote;
	if (rm->nlk == 0)
		return true;
	if (!rm->in_turn || rm->turn_sleep_ms == 0 || rm->nlk >= SP_MAX_JOBS * 3 / 4 || e->full_scans != rm->lk_pass)
		return false;
	return _sp_now_ns() + (int64_t)rm->turn_sleep_ms * 1000000LL < rm->lk_since_ns + LOOKUP_WINDOW_NS;
}

/* Lookups queued in earlier batches: the engine's lock was let go since,
 * and the program may have unregistered, remapped or written their pages.
 * Keep those whose page is still ours, with the content looked up; re-find
 * its range (ids are reused). A page queued twice (by the scan and by a
 * note) is merged by its first job only (merge.c, do_job()). */
static uint32_t still_valid_lookups(sp_engine *e, uint32_t n)
{
	struct sp_remote *rm = e->remote;
	uint32_t keep = 0;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t rid;
		size_t i;
		struct sp_page *pg = page_at(e, rm->lk[k].addr, &rid, &i);
		if (!pg || pg->state == SP_PG_MERGED || pg->state == SP_PG_ZERO || pg->state == SP_PG_HOLE ||
		    _sp_key(e, pg) != rm->lk[k].key)
			continue;
		rm->lk[keep] = rm->lk[k];
		rm->lk_rid[keep] = rid;
		rm->lk_page[keep] = i;
		keep++;
	}
	return keep;
}

/* Turn the queued lookups into merge jobs (appended after njobs): LOOKUP,
 * then PUBLISH the pages the daemon wants. Returns the new number of jobs.
 * Nothing is frozen here. may_defer: the end of a batch, where the
 * lookups may wait for the next one (may_wait()). */
size_t _sp_remote_resolve(sp_engine *e, size_t njobs, bool may_defer)
{
	struct sp_remote *rm = e->remote;
	size_t base = njobs;
	notes_to_lookups(e);
	if (may_defer && rm->fd >= 0 && may_wait(e)) {
		rm->lk_waited |= rm->nlk > 0;
		return njobs;
	}
	uint32_t n = rm->nlk;
	rm->nlk = 0;
	if (n == 0 || rm->fd < 0)
		return njobs;
	if (rm->lk_waited)
		n = still_valid_lookups(e, n);
	rm->lk_waited = false;
	if (n == 0)
		return njobs;
	if (send_counted(e, SP_MSG_LOOKUP, rm->lk, n, sizeof(struct sp_lookup_rec)) ||
	    recv_until(e, SP_MSG_LOOKUP_REPLY, RPC_TIMEOUT_MS) < 0)
		return njobs;
	const struct sp_count *c = (const void *)rm->msg;
	if (c->n != n) {
		disconnect(e, "reply does not match");
		return njobs;
	}
	/* Copy the results out: the buffer is reused for PUBLISH below. */
	struct sp_result_rec res[SP_MAX_JOBS];
	memcpy(res, rm->msg + sizeof(*c), n * sizeof(res[0]));
	uint32_t pub[SP_MAX_JOBS], npub = 0;
	for (uint32_t k = 0; k < n; k++) {
		rm->leased |= res[k].kind == SP_LOOKUP_STORE;  /* used or not, settled */
		struct sp_range *r = e->ranges[rm->lk_rid[k]];
		if (!r || rm->lk_page[k] >= r->npages)
			continue;
		struct sp_page *pg = &r->pg[rm->lk_page[k]];
		if (res[k].kind == SP_LOOKUP_STORE && know_store_page(e, res[k].id, rm->lk[k].key))
			add_job(e, &njobs, rm->lk_rid[k], rm->lk_page[k], res[k].id);
		else if (res[k].kind == SP_LOOKUP_PUBLISH)
			pub[npub++] = k;
		else if (res[k].kind == SP_LOOKUP_NONE && pg->state != SP_PG_COWED)
			_sp_page_set_state(e, pg, SP_PG_UNSHARED);
	}
	/* Publish in chunks: the content is copied now, without freezing; if
	 * the page changes meanwhile, the daemon sees the hash differ (nothing
	 * stored) or our frozen compare fails later (nothing merged). */
	for (uint32_t at = 0; at < npub && rm->fd >= 0; at += PUBLISH_BATCH) {
		uint32_t m = npub - at < PUBLISH_BATCH ? npub - at : PUBLISH_BATCH;
		struct sp_count *pc = (void *)rm->msg;
		struct sp_publish_rec *pr = (void *)(rm->msg + sizeof(*pc));
		pc->n = m;
		pc->pad = 0;
		for (uint32_t x = 0; x < m; x++) {
			uint32_t k = pub[at + x];
			pr[x].key = rm->lk[k].key;
			pr[x].addr = rm->lk[k].addr;
			pr[x].node = rm->lk[k].node;
			pr[x].pad = 0;
			_sp_page_copy(pr[x].data, (const void *)rm->lk[k].addr);
		}
		if (_sp_proto_send(rm->fd, SP_MSG_PUBLISH, 0, rm->msg, _sp_proto_counted_size(SP_MSG_PUBLISH, m), -1)) {
			disconnect(e, "publish failed");
			break;
		}
		if (recv_until(e, SP_MSG_PUBLISH_REPLY, RPC_TIMEOUT_MS) < 0)
			break;
		const struct sp_count *rc = (const void *)rm->msg;
		const struct sp_result_rec *rr = (const void *)(rm->msg + sizeof(*rc));
		for (uint32_t x = 0; x < m && x < rc->n; x++) {
			uint32_t k = pub[at + x];
			rm->leased |= rr[x].kind == SP_LOOKUP_STORE;
			if (rr[x].kind == SP_LOOKUP_STORE && know_store_page(e, rr[x].id, rm->lk[k].key))
				add_job(e, &njobs, rm->lk_rid[k], rm->lk_page[k], rr[x].id);
		}
	}
	rm->msg_big |= npub > 0;
	/* Lost the daemon meanwhile: nothing is mapped from its answers now
	 * (it keeps what we hold only as long as we map nothing new). */
	return rm->fd >= 0 ? njobs : base;
}

/* ------------------------------------------------------------- the thread */

/* Counters the daemon has already, but for a little of our CPU: between
 * turns only our own wakes add to it. Then the counters of the second are
 * not sent, and the daemon is not woken for them (at N = 16, fifteen
 * idle clients woke it fifteen times a second); a millisecond of CPU, or
 * any other change (the program registers or unmerges memory), and they
 * go at the next second. */
static bool unchanged(const struct sp_client_stats *was, const struct sp_client_stats *now)
{
	struct sp_client_stats a = *was, b = *now;
	if (b.cpu_ns - a.cpu_ns >= 1000000)
		return false;
	a.cpu_ns = b.cpu_ns = 0;
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static void send_done(sp_engine *e, uint32_t visited, bool pass_done, uint32_t flags)
{
	struct sp_remote *rm = e->remote;
	struct sp_done d = { .visited = visited, .pass_done = pass_done, .flags = flags };
	rm->done_ns = _sp_now_ns();
	if (!flags && rm->msg_big) {
		/* The turn is over: what publishing touched beyond TRIM_BYTES goes
		 * back (once a turn, not after every batch that published). */
		_sp_meta_trim(rm->msg, TRIM_BYTES, _sp_proto_counted_size(SP_MSG_PUBLISH, PUBLISH_BATCH));
		rm->msg_big = false;
	}
	struct sp_client_stats *s = &d.st;
	for (uint32_t id = 0; id < e->nranges; id++)
		if (e->ranges[id])
			s->registered += e->ranges[id]->npages;
	s->unshared = e->state_count[SP_PG_UNSHARED];
	s->volatile_ = e->state_count[SP_PG_WRITTEN] + e->state_count[SP_PG_COWED];
	s->zero = e->state_count[SP_PG_ZERO];
	s->merging = e->state_count[SP_PG_MERGED];
	s->cow = e->cow_ksm;
	s->scanned = e->pages_scanned;
	s->skipped = e->pages_skipped;
	s->skipped_map = e->skipped_map_count;
	s->passes = e->full_scans;
	for (int st = SP_PG_WRITTEN; st <= SP_PG_ZERO; st++)
		s->rmap_items += e->state_count[st];
	s->metadata_bytes = (uint64_t)(_sp_ranges_bytes(e) + sizeof(*e));
	s->cpu_ns = (uint64_t)_sp_engine_cpu_ns(e);
	s->merge_any = e->merge_any;
	if (flags == SP_DONE_STATS_ONLY && rm->sent_valid && unchanged(&rm->sent, s))
		return;
	if (rm->fd >= 0 && _sp_proto_send(rm->fd, SP_MSG_DONE, 0, &d, sizeof(d), -1))
		disconnect(e, "done failed");
	rm->sent = *s;
	rm->sent_valid = rm->fd >= 0;
}

/* The client engine's thread: connect (and reconnect), then serve grants. */
void *_sp_remote_main(void *arg)
{
	sp_engine *e = arg;
	struct sp_remote *rm = e->remote;
	_sp_lock(e);
	while (!e->stopping) {
		if (rm->fd < 0) {
			int64_t now = _sp_now_ns();
			if (now >= rm->retry_ns && try_connect(e) != 0)
				rm->retry_ns = now + 500000000LL;
			if (rm->fd < 0) {
				struct timespec until;
				clock_gettime(CLOCK_MONOTONIC, &until);
				until.tv_nsec += 100000000L;
				if (until.tv_nsec >= 1000000000L) {
					until.tv_sec++;
					until.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&e->cond, &e->lock, &until);
				continue;
			}
		}
		int fd = rm->fd;
		/* In a turn, until the next batch is due; else until a message or
		 * the next counters due. */
		int64_t now = _sp_now_ns(), wait_ns;
		if (rm->in_turn && !rm->grant_pending)
			wait_ns = rm->next_batch_ns - now;
		else if (e->inert)
			wait_ns = STATS_NS;  /* (no counters to send) */
		else
			wait_ns = rm->done_ns + STATS_NS - now;
		if (wait_ns < 0)
			wait_ns = 0;
		if (rm->wake_fd < 0 && wait_ns > IDLE_NO_WAKE_NS)
			wait_ns = IDLE_NO_WAKE_NS;
		_sp_unlock(e);
		_sp_yield_lock(e);
		struct pollfd pf[2] = { { fd, POLLIN, 0 }, { rm->wake_fd, POLLIN, 0 } };
		struct timespec ts = { (time_t)(wait_ns / 1000000000LL), (long)(wait_ns % 1000000000LL) };
		int pr = ppoll(pf, rm->wake_fd >= 0 ? 2 : 1, &ts, NULL);
		_sp_lock(e);
		if (e->stopping || rm->fd != fd)
			continue;
		if (pr > 0 && pf[1].revents) {
			uint64_t v;
			_sp_prim_read(rm->wake_fd, &v, sizeof(v));  /* reset */
		}
		if (pr > 0 && pf[0].revents)
			recv_until(e, 0, 0);
		if (rm->in_turn && !rm->grant_pending && _sp_now_ns() >= rm->next_batch_ns)
			rm->grant_pending = true;
		if (rm->unmerge_all) {
			rm->unmerge_all = false;
			drop_lookups(rm);
			_sp_unmerge_all(e, true);
			waiting_pages_to(e, SP_PG_NEW);
			_sp_remote_flush(e);
		}
		if (rm->grant_pending) {
			rm->grant_pending = false;
			uint64_t before = e->full_scans;
			int visited = 0;
			bool running = e->knob[SP_RUN] == 1 && !e->inert;
			if (running)
				visited = _sp_scan_batch(e, rm->grant ? rm->grant : 1);
			if (e->merge_any && (e->full_scans != before || e->nranges == 0))
				_sp_any_refresh(e);
			_sp_remote_flush(e);
			bool pass_done = e->full_scans != before || e->nranges == 0;
			if (rm->in_turn && running && !pass_done) {
				/* The turn goes on until our pass is done: the next batch
				 * after the pause, as ksmd sleeps between batches; at once
				 * after a batch that only walked resting blocks (ksmd's
				 * scan skips such pages within its batch). Ending the turn
				 * there instead had the daemon count our pass twice. */
				rm->next_batch_ns = _sp_now_ns() + (visited > 0 ? (int64_t)rm->turn_sleep_ms * 1000000LL : 0);
				if (_sp_now_ns() - rm->done_ns >= 1000000000LL)
					send_done(e, (uint32_t)visited, false, SP_DONE_PROGRESS);
			} else {
				rm->in_turn = false;
				send_done(e, visited > 0 ? (uint32_t)visited : 0, pass_done, 0);
			}
			pthread_cond_broadcast(&e->cond);
		} else if (_sp_now_ns() - rm->done_ns >= STATS_NS && !e->inert) {
			/* No turn for a second (run=0, or many clients): "merge any"
			 * still takes new mappings, as PR_SET_MEMORY_MERGE does without
			 * ksmd, and the daemon still learns our counters. */
			if (e->merge_any)
				_sp_any_refresh(e);
			send_done(e, 0, false, SP_DONE_STATS_ONLY);
		}
	}
	_sp_unlock(e);
	return NULL;
}

int _sp_remote_init(sp_engine *e)
{
	struct sp_remote *rm = _sp_meta_alloc(sizeof(*rm));
	if (!rm)
		return -ENOMEM;
	rm->fd = -1;
	rm->wake_fd = _sp_prim_eventfd();  /* none: idle waits stay short */
	rm->refs = _sp_meta_alloc(QCAP * sizeof(*rm->refs));
	rm->forget = _sp_meta_alloc(QCAP * sizeof(*rm->forget));
	rm->notes = _sp_meta_alloc(QCAP * sizeof(*rm->notes));
	rm->lk = _sp_meta_alloc(SP_MAX_JOBS * sizeof(*rm->lk));
	rm->lk_rid = _sp_meta_alloc(SP_MAX_JOBS * sizeof(*rm->lk_rid));
	rm->lk_page = _sp_meta_alloc(SP_MAX_JOBS * sizeof(*rm->lk_page));
	rm->msg = _sp_meta_alloc(SP_PROTO_MAX_PAYLOAD);
	e->remote = rm;
	if (!rm->refs || !rm->forget || !rm->notes || !rm->lk || !rm->lk_rid || !rm->lk_page || !rm->msg)
		return -ENOMEM;
	rm->caprefs = QCAP;
	int r = sp_socket_path(false, rm->path, sizeof(rm->path));
	if (r)
		return r;
	e->store.no_punch = true;  /* the daemon decides when store pages go */
	try_connect(e);            /* no daemon yet is fine: the thread retries */
	return 0;
}

void _sp_remote_fini(sp_engine *e)
{
	struct sp_remote *rm = e->remote;
	if (!rm)
		return;
	if (rm->fd >= 0) {
		_sp_remote_flush(e);
		close(rm->fd);
	}
	if (rm->wake_fd >= 0)
		_sp_prim_close(rm->wake_fd);
	_sp_meta_free(rm->refs, QCAP * sizeof(*rm->refs));
	_sp_meta_free(rm->forget, QCAP * sizeof(*rm->forget));
	_sp_meta_free(rm->notes, QCAP * sizeof(*rm->notes));
	_sp_meta_free(rm->lk, SP_MAX_JOBS * sizeof(*rm->lk));
	_sp_meta_free(rm->lk_rid, SP_MAX_JOBS * sizeof(*rm->lk_rid));
	_sp_meta_free(rm->lk_page, SP_MAX_JOBS * sizeof(*rm->lk_page));
	_sp_meta_free(rm->msg, SP_PROTO_MAX_PAYLOAD);
	_sp_meta_free(rm, sizeof(*rm));
	e->remote = NULL;
}

/* The engine is stopping: end the thread's wait now. */
void _sp_remote_wake(sp_engine *e)
{
	struct sp_remote *rm = e->remote;
	uint64_t one = 1;
	if (rm && rm->wake_fd >= 0)
		_sp_prim_write(rm->wake_fd, &one, sizeof(one));  /* (full: one is pending) */
}

bool _sp_remote_connected(const sp_engine *e)
{
	return e->remote && e->remote->fd >= 0;
}

/* fork: the daemon must know before any reference of ours goes away. */
void _sp_remote_forking(sp_engine *e)
{
	struct sp_remote *rm = e->remote;
	if (!rm || rm->fd < 0)
		return;
	struct sp_count z = { 0, 0 };
	if (_sp_proto_send(rm->fd, SP_MSG_FORKED, 0, &z, sizeof(z), -1))
		disconnect(e, "fork notice failed");
}

/* The child's copy of the connection is the parent's socket: drop it
 * without a word (closing our fd does not close the parent's). */
void _sp_remote_child(sp_engine *e)
{
	struct sp_remote *rm = e->remote;
	if (!rm)
		return;
	if (rm->fd >= 0)
		close(rm->fd);
	rm->fd = -1;
	if (rm->wake_fd >= 0)
		_sp_prim_close(rm->wake_fd);  /* the parent's, and we have no thread */
	rm->wake_fd = -1;
	rm->ever_connected = false;
	rm->grant_pending = rm->in_turn = false;  /* the parent's turn, not ours */
	drop_lookups(rm);  /* the parent's */
}
