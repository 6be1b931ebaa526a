/* SPDX-License-Identifier: MIT */
/*
 * A trust domain of samepaged: the processes whose pages may share
 * (by default, one user's). The domain owns the stable index and store of
 * merged contents, and an unstable index of pages waiting for a partner.
 *
 * The daemon never reads client memory: a client sends the keys of its
 * quiet pages (LOOKUP), and the contents only when another page with the
 * same key exists (PUBLISH). Clients compare bytes themselves, frozen,
 * before mapping a store page, so a wrong or lying client can waste store
 * space in its own domain but never make another process read wrong data.
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(SP_PROTO_PAGE == SP_PAGE, "a published page is an engine page");

#define UNSTABLE_PER_CLIENT (1u << 24)

static uint64_t pack_unstable(uint32_t slot, uint64_t addr)
{
	return ((uint64_t)slot << 48) | (addr >> 12);
}

/* n references less to store page id; it goes (and its memory, if nothing
 * else can map it) with the last. One step, whatever n. */
static void put_refs(struct sp_domain *dom, uint32_t id, uint32_t n)
{
	struct sp_spage *s = &dom->store.pg[id];
	if (n == 0 || s->refs == 0)
		return;
	if (n < s->refs) {
		s->refs -= n;
		return;
	}
	s->refs = 1;
	_sp_stable_put(&dom->stable, id);  /* the last: it dies */
}

/* Answers a client may hold unsettled: a round of its jobs and the
 * publications in it take a few hundred. */
#define LEASES_PER_CLIENT 4096

/* A STORE answer leases the page to the client: one reference more until
 * the client's SETTLE. The client compares its page with the store page,
 * maps it, and only then sends REFS; without the lease, the page's last
 * holder could release it in between (an exit, a copy on write) and the
 * page be punched under the new mapping, which would read zeros. REFS come
 * before the SETTLE on the client's socket, so the page never reaches zero
 * references while mapped. False (answer FAIL: try later) when the client
 * holds too many. */
static bool lease(struct sp_domain *dom, struct sp_client *c, uint32_t id)
{
	struct sp_spage *s = &dom->store.pg[id];
	if (s->refs >= SP_SPAGE_REFS_MAX)
		return false;
	if (c->nleases == c->leases_cap) {
		if (c->leases_cap >= LEASES_PER_CLIENT)
			return false;
		uint32_t cap = c->leases_cap ? c->leases_cap * 2 : 256;
		uint32_t *l = _sp_meta_realloc(c->leases, c->leases_cap * sizeof(*l), cap * sizeof(*l));
		if (!l)
			return false;
		c->leases = l;
		c->leases_cap = cap;
	}
	c->leases[c->nleases++] = id;
	s->refs++;
	return true;
}

void _sp_domain_settle(struct sp_domain *dom, struct sp_client *c)
{
	for (uint32_t i = 0; i < c->nleases; i++)
		put_refs(dom, c->leases[i], 1);
	c->nleases = 0;
}

struct sp_domain *_sp_domain_new(uint32_t key)
{
	struct sp_domain *dom = _sp_meta_alloc(sizeof(*dom));
	if (!dom)
		return NULL;
	dom->key = key;
	dom->stats_fd = -1;
	/* Without one (memfds, or sealing before 5.1), counters go over the socket. */
	if (_sp_statpage_new(&dom->stats, &dom->stats_fd))
		dom->stats = NULL;
	dom->stats_dirty = true;
	_sp_store_init(&dom->store);
	if (_sp_stable_init(&dom->stable, &dom->store) || _sp_index_init(&dom->unstable, 1024)) {
		_sp_domain_free(dom);
		return NULL;
	}
	return dom;
}

void _sp_domain_free(struct sp_domain *dom)
{
	if (!dom)
		return;
	dom->store.no_punch = true;
	_sp_statpage_free(dom->stats, dom->stats_fd);
	_sp_store_fini(&dom->store);
	_sp_stable_fini(&dom->stable);
	_sp_index_fini(&dom->unstable);
	_sp_meta_free(dom, sizeof(*dom));
}

void _sp_domain_lookup(struct sp_domain *dom, struct sp_client *c, const struct sp_lookup_rec *r, uint32_t n,
		       int64_t max_sharing, struct sp_result_rec *out)
{
	for (uint32_t i = 0; i < n; i++) {
		out[i].kind = SP_LOOKUP_NONE;
		out[i].id = 0;
		uint32_t id = _sp_stable_find(&dom->stable, r[i].key, max_sharing);
		if (id != SP_NONE) {
			if (lease(dom, c, id)) {
				out[i].kind = SP_LOOKUP_STORE;
				out[i].id = id;
			} else {
				out[i].kind = SP_LOOKUP_FAIL;
			}
			continue;
		}
		uint64_t v, mine = pack_unstable(c->slot, r[i].addr);
		if (_sp_index_get(&dom->unstable, r[i].key, &v)) {
			if (v != mine)
				out[i].kind = SP_LOOKUP_PUBLISH;
			continue;
		}
		/* Bounded, so that one client cannot fill the daemon's memory. */
		if (c->unstable < UNSTABLE_PER_CLIENT && _sp_index_put(&dom->unstable, r[i].key, mine) == 0)
			c->unstable++;
	}
}

uint32_t _sp_domain_publish(struct sp_domain *dom, struct sp_client *c, const struct sp_publish_rec *r, uint32_t n,
			    int64_t max_sharing, bool numa_keys, struct sp_result_rec *out, struct sp_note *notes)
{
	int64_t now = _sp_now_ns();
	uint32_t nn = 0;
	for (uint32_t i = 0; i < n; i++) {
		out[i].kind = SP_LOOKUP_FAIL;
		out[i].id = 0;
		/* The content must be what the key says (it may have changed
		 * under the client while it copied it: then nothing is stored). */
		uint64_t h = _sp_hash_page(r[i].data);
		if (numa_keys)
			h ^= (uint64_t)(r[i].node + 1) * 0x9E3779B97F4A7C15ull;
		if (h != r[i].key)
			continue;
		if (c->nleases >= LEASES_PER_CLIENT)
			continue;
		uint32_t id = _sp_stable_find(&dom->stable, r[i].key, max_sharing);
		if (id == SP_NONE) {
			if (now < dom->publish_backoff_ns)
				continue;
			int64_t nid = _sp_store_add(&dom->store, r[i].data, r[i].key, (uint8_t)r[i].node);
			if (nid < 0) {
				/* Memory is short: merging backs off for a while. */
				dom->publish_backoff_ns = now + 1000000000LL;
				continue;
			}
			id = (uint32_t)nid;
			_sp_stable_insert(&dom->stable, r[i].key, id);
		}
		if (!lease(dom, c, id)) {
			/* (memory for the list) a new page nobody will map goes */
			if (dom->store.pg[id].refs == 0) {
				dom->store.pg[id].refs = 1;
				put_refs(dom, id, 1);
			}
			continue;
		}
		out[i].kind = SP_LOOKUP_STORE;
		out[i].id = id;
		/* The page that waited in the unstable index can now join it. */
		uint64_t v;
		if (_sp_index_get(&dom->unstable, r[i].key, &v) && v != pack_unstable(c->slot, r[i].addr)) {
			_sp_index_del(&dom->unstable, r[i].key, v);
			notes[nn].slot = (uint32_t)(v >> 48);
			notes[nn].rec = (struct sp_notify_rec){ r[i].key, (v & ((1ull << 48) - 1)) << 12, id, 0 };
			nn++;
		}
	}
	return nn;
}

/* In one step, not one per sharer: a client's record may say 2^30. */
static void sharers_change(struct sp_domain *dom, struct sp_spage *s, int64_t delta)
{
	if (delta > 0) {
		dom->pages_shared += s->sharers == 0;
		dom->pages_sharing += (uint64_t)delta - (s->sharers == 0);
		s->sharers += (uint32_t)delta;
	} else if (delta < 0 && s->sharers > 0) {
		uint32_t d = (uint64_t)-delta < s->sharers ? (uint32_t)-delta : s->sharers;
		bool last = d == s->sharers;
		dom->pages_shared -= last;
		dom->pages_sharing -= d - last;
		s->sharers -= d;
	}
}

/* The client's entry for store page id, growing the array to the store's
 * size (meta memory: the ids it never maps cost no memory). */
static struct sp_held *held_entry(struct sp_domain *dom, struct sp_client *c, uint32_t id)
{
	if (id >= c->held_cap) {
		struct sp_held *h = id < dom->store.npg_cap ?
					    _sp_meta_grow(c->held, &c->held_cap, sizeof(*h), dom->store.npg_cap) : NULL;
		if (!h)
			return NULL;
		c->held = h;
	}
	if (id >= c->held_end)
		c->held_end = id + 1;
	return &c->held[id];
}

void _sp_domain_client_free(struct sp_client *c)
{
	_sp_meta_free(c->held, (size_t)c->held_cap * sizeof(*c->held));
	_sp_meta_free(c->leases, (size_t)c->leases_cap * sizeof(*c->leases));
	c->leases = NULL;
	c->leases_cap = c->nleases = 0;
	c->held = NULL;
	c->held_cap = c->held_end = 0;
}

int _sp_domain_refs(struct sp_domain *dom, struct sp_client *c, const struct sp_refs_rec *r, uint32_t n,
		    char *why, size_t whylen)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t id = r[i].id;
		if (id >= dom->store.npg_cap || id / SP_SEG_PAGES >= dom->store.nseg || !dom->store.pg[id].live) {
			snprintf(why, whylen, "reference to store page %u, which does not exist", id);
			return -EPROTO;
		}
		struct sp_held *h = held_entry(dom, c, id);
		if (!h)
			return -ENOMEM;
		int64_t refs = (int64_t)h->refs + r[i].refs, sharers = (int64_t)h->sharers + r[i].sharers;
		struct sp_spage *s = &dom->store.pg[id];
		if (refs < 0 || sharers < 0 || sharers > refs || refs > (1 << 30) ||
		    (int64_t)s->refs + r[i].refs > (int64_t)SP_SPAGE_REFS_MAX) {
			/* (the last: clients of one domain together could otherwise
			 * wrap the page's count and have it freed under the others) */
			snprintf(why, whylen, "store page %u: %lld references, %lld sharers", id, (long long)refs,
				 (long long)sharers);
			return -EPROTO;
		}
		sharers_change(dom, s, r[i].sharers);
		h->refs = (uint32_t)refs;
		h->sharers = (uint32_t)sharers;
		if (r[i].refs > 0)
			s->refs += (uint32_t)r[i].refs;
		else
			put_refs(dom, id, (uint32_t)-r[i].refs);  /* may free it, if nothing else can map it */
	}
	return 0;
}

void _sp_domain_forget(struct sp_domain *dom, struct sp_client *c, const struct sp_forget_rec *r, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (_sp_index_del(&dom->unstable, r[i].key, pack_unstable(c->slot, r[i].addr)) && c->unstable)
			c->unstable--;
}

void _sp_domain_client_gone(struct sp_domain *dom, struct sp_client *c)
{
	_sp_domain_settle(dom, c);
	for (uint32_t id = 0; id < c->held_end; id++) {
		struct sp_held *h = &c->held[id];
		if (!h->refs)
			continue;
		sharers_change(dom, &dom->store.pg[id], -(int64_t)h->sharers);
		put_refs(dom, id, h->refs);
		h->refs = h->sharers = 0;
	}
	struct sp_client_stats *g = &dom->gone;
	g->cow += c->st.cow;
	g->scanned += c->st.scanned;
	g->skipped += c->st.skipped;
	g->skipped_map += c->st.skipped_map;
	g->cpu_ns += c->st.cpu_ns;
}

void _sp_domain_forked(struct sp_domain *dom)
{
	dom->store.fork_gen++;
}

void _sp_domain_reset_unstable(struct sp_domain *dom)
{
	_sp_index_fini(&dom->unstable);
	_sp_index_init(&dom->unstable, 1024);
}

int64_t _sp_domain_metadata(const struct sp_domain *dom)
{
	return (int64_t)(sizeof(*dom) + _sp_stable_bytes(&dom->stable) + _sp_index_bytes(&dom->unstable)) +
	       _sp_store_overhead(&dom->store);
}

/* The domain's counters, with the kernel's names (daemon_cpu_ns left 0). */
void _sp_domain_sample(const struct sp_domain *dom, struct sp_client *const *clients, const int64_t *knob,
		       uint64_t full_scans, uint64_t epoch, struct sp_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		if (sp_param_describe(p)->flags & SP_PF_KNOB)
			out->value[p] = knob[p];
	struct sp_client_stats t = dom->gone;
	int64_t meta = _sp_domain_metadata(dom);
	uint32_t nclients = 0;
	for (uint32_t i = 0; i < SP_MAX_CLIENTS; i++) {
		struct sp_client *c = clients[i];
		if (!c || c->dom != dom || c->control)
			continue;
		nclients++;
		t.unshared += c->st.unshared;
		t.volatile_ += c->st.volatile_;
		t.zero += c->st.zero;
		t.cow += c->st.cow;
		t.scanned += c->st.scanned;
		t.skipped += c->st.skipped;
		t.skipped_map += c->st.skipped_map;
		t.cpu_ns += c->st.cpu_ns;
		meta += (int64_t)c->st.metadata_bytes;
	}
	int64_t shared = (int64_t)dom->pages_shared, sharing = (int64_t)dom->pages_sharing;
	int64_t zero = (int64_t)t.zero;
	_sp_zero_fold(knob, &shared, &sharing, &zero);
	out->value[SP_PAGES_SHARED] = shared;
	out->value[SP_PAGES_SHARING] = sharing;
	out->value[SP_PAGES_UNSHARED] = (int64_t)t.unshared;
	out->value[SP_PAGES_VOLATILE] = (int64_t)t.volatile_;
	out->value[SP_PAGES_SCANNED] = (int64_t)t.scanned;
	out->value[SP_PAGES_SKIPPED] = (int64_t)t.skipped;
	out->value[SP_FULL_SCANS] = (int64_t)full_scans;
	out->value[SP_STABLE_NODE_CHAINS] = (int64_t)dom->stable.chains;
	out->value[SP_STABLE_NODE_DUPS] = (int64_t)dom->stable.dups;
	out->value[SP_KSM_ZERO_PAGES] = zero;
	out->value[SP_GENERAL_PROFIT] = (sharing + zero) * (int64_t)SP_PAGE - meta;
	out->value[SP_COW_KSM] = (int64_t)t.cow;
	out->value[SP_PAGES_SKIPPED_MAX_MAP_COUNT] = (int64_t)t.skipped_map;
	for (int p = 0; p < SP_PARAM_COUNT; p++)
		if (p != SP_KSM_SWPIN_COPY)
			out->present |= 1ull << p;
	out->clients = nclients;
	out->daemon_pid = (int32_t)getpid();
	out->epoch = epoch;
	out->cpu_ns = t.cpu_ns;
}
