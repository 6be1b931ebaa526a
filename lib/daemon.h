/* SPDX-License-Identifier: MIT */
/*
 * samepaged's insides: the daemon (daemon.c: sockets, clients, pacing,
 * control) and the trust domains (domain.c: each domain's index and store).
 */
#ifndef SP_DAEMON_H
#define SP_DAEMON_H

#include "engine.h"
#include "proto.h"

#include <sys/types.h>

#define SP_MAX_CLIENTS 1024

struct sp_domain;

/* A client's references to one store page (an array indexed by id: half
 * the memory of a hash index at the same ids, and ids are dense). */
struct sp_held {
	uint32_t refs;               /* its mappings that name the page */
	uint32_t sharers;            /* of those, really sharing */
};

enum { PENDING_KNOBS = 1u << 0, PENDING_UNMERGE = 1u << 1 };

struct sp_client {
	int fd;
	int pidfd;                   /* of its process, to tell a live one (-1: none) */
	struct sp_client *next_orphan;
	uint32_t slot;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	char comm[16];
	bool hello, control;
	struct sp_domain *dom;
	struct sp_held *held;        /* by store page id: what this client maps */
	uint32_t held_cap;           /* ids the array has room for */
	uint32_t held_end;           /* ids at and above this are all zero */
	uint32_t *leases;            /* store pages answered (STORE) since its last SETTLE */
	uint32_t nleases, leases_cap;
	uint64_t unstable;           /* entries this client put in the unstable index */
	unsigned pending;            /* PENDING_*: not sent yet, its socket was full */
	bool hints_lost;             /* a NOTIFY for it could not be sent */
	bool silent;                 /* let a grant time out; no message since */
	uint8_t *have_seg;           /* segments whose fd it has been sent */
	uint32_t have_seg_cap;
	struct sp_client_stats st;   /* from its last DONE */
	/* receiving */
	struct sp_hdr hdr;
	size_t got;                  /* bytes of header+payload received */
	uint8_t *buf;                /* SP_PROTO_MAX_PAYLOAD of meta memory */
	size_t buf_hwm;              /* most of it used since the last trim */
	int64_t connected_ns;
};

struct sp_domain {
	uint32_t key;                /* uid, or a configured group */
	struct sp_store store;
	struct sp_stable stable;
	struct sp_index unstable;    /* content key -> client slot << 48 | page number */
	uint64_t pages_shared, pages_sharing;
	struct sp_client_stats gone; /* counters of clients that left */
	uint32_t clients;
	int64_t publish_backoff_ns;  /* memory ran short: no new store pages until then */
	struct sp_statpage *stats;   /* its counters for control tools (NULL: over the socket) */
	int stats_fd;                /* read-only, handed to them */
	bool stats_dirty;            /* its page is to be written again */
	struct sp_domain *next;
};

/* peer.c: the process behind a connection */
/* A pidfd for the peer of sock (SO_PEERPIDFD, else pidfd_open), or -1. */
int _sp_peer_pidfd(int sock, pid_t pid);
/* The process has not exited (false without a pidfd). */
bool _sp_peer_lives(int pidfd);
/* It maps a segment of the store whose memfds are named store_name (true
 * when its maps cannot be read). */
bool _sp_peer_maps_store(pid_t pid, const char *store_name);

/* domain.c */
struct sp_domain *_sp_domain_new(uint32_t key);
/* The domain's counters from its clients' (daemon_cpu_ns left 0). */
void _sp_domain_sample(const struct sp_domain *dom, struct sp_client *const *clients, const int64_t *knob,
		       uint64_t full_scans, uint64_t epoch, struct sp_stats *out);
void _sp_domain_free(struct sp_domain *dom);
void _sp_domain_lookup(struct sp_domain *dom, struct sp_client *c, const struct sp_lookup_rec *r, uint32_t n,
		       int64_t max_sharing, struct sp_result_rec *out);
/* Publishes pages. For each published page whose content waited in the
 * unstable index for another page, a notification for that page's client
 * is added to notes (at most n); returns how many. */
struct sp_note {
	uint32_t slot;
	struct sp_notify_rec rec;
};
uint32_t _sp_domain_publish(struct sp_domain *dom, struct sp_client *c, const struct sp_publish_rec *r, uint32_t n,
			    int64_t max_sharing, bool numa_keys, struct sp_result_rec *out, struct sp_note *notes);
/* -EPROTO if the client releases more than it holds or names no page. */
int _sp_domain_refs(struct sp_domain *dom, struct sp_client *c, const struct sp_refs_rec *r, uint32_t n,
		    char *why, size_t whylen);
void _sp_domain_forget(struct sp_domain *dom, struct sp_client *c, const struct sp_forget_rec *r, uint32_t n);
/* The client left (or died): release everything it held. */
void _sp_domain_client_gone(struct sp_domain *dom, struct sp_client *c);
void _sp_domain_client_free(struct sp_client *c);
/* A client forked: pages mapped so far may be mapped by processes we do not know. */
void _sp_domain_forked(struct sp_domain *dom);
/* SETTLE: the client's leases on the pages it was answered end. */
void _sp_domain_settle(struct sp_domain *dom, struct sp_client *c);
/* run=2: forget the unstable index (clients unmerge and release their pages). */
void _sp_domain_reset_unstable(struct sp_domain *dom);
int64_t _sp_domain_metadata(const struct sp_domain *dom);

#endif
