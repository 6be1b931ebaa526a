/* SPDX-License-Identifier: MIT */
/*
 * The samepaged protocol: framed binary messages over a Unix stream socket
 * between a client (a process whose engine merges across processes, or a
 * control tool) and the daemon that owns its trust domain's index and store.
 *
 * Both ends are the same machine and the same build family, so records are
 * native-endian fixed-size structs. Every message is validated before use
 * (sp_proto_check): a wrong magic, version, type, size or count is a
 * protocol violation and the peer is disconnected.
 */
#ifndef SP_PROTO_H
#define SP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_PROTO_MAGIC 0x31475053u   /* "SPG1" */
#define SP_PROTO_VERSION 5
#define SP_PROTO_MAX_PAYLOAD (1u << 20)
#define SP_PROTO_MAX_LOOKUP 1024     /* records per LOOKUP / NOTIFY / REFS / FORGET */
#define SP_PROTO_MAX_PUBLISH 64      /* pages per PUBLISH (256 KiB) */
#define SP_PROTO_PAGE 4096
#define SP_PROTO_KNOBS 32            /* knob slots in WELCOME/KNOBS/STATS */

enum sp_msg_type {
	SP_MSG_HELLO = 1,       /* c->d  */
	SP_MSG_WELCOME,         /* d->c  */
	SP_MSG_LOOKUP,          /* c->d  candidates by key */
	SP_MSG_LOOKUP_REPLY,    /* d->c  */
	SP_MSG_PUBLISH,         /* c->d  contents for new store pages */
	SP_MSG_PUBLISH_REPLY,   /* d->c  */
	SP_MSG_SEGMENT,         /* d->c  a store segment's fd (SCM_RIGHTS) */
	SP_MSG_NOTIFY,          /* d->c  a page of yours now has a store page */
	SP_MSG_REFS,            /* c->d  reference changes */
	SP_MSG_FORGET,          /* c->d  these unshared pages changed */
	SP_MSG_GRANT,           /* d->c  scan this many pages now */
	SP_MSG_DONE,            /* c->d  the grant is used; client counters */
	SP_MSG_KNOBS,           /* d->c  knob values changed */
	SP_MSG_UNMERGE_ALL,     /* d->c  run=2: unmerge everything */
	SP_MSG_FORKED,          /* c->d  I forked: my store pages may be mapped elsewhere */
	SP_MSG_STATS_REQ,       /* c->d  control */
	SP_MSG_STATS,           /* d->c  */
	SP_MSG_SET,             /* c->d  control: NAME=VALUE list */
	SP_MSG_SET_REPLY,       /* d->c  */
	SP_MSG_LIST_REQ,        /* c->d  control: the domain's clients */
	SP_MSG_LIST,            /* d->c  */
	SP_MSG_ERROR,           /* d->c  why you are being disconnected */
	SP_MSG_SETTLE,          /* c->d  the STORE answers so far are settled: the
				   REFS of what I mapped with them came first */
	SP_MSG_STATS_MAP_REQ,   /* c->d  control: the domain's counters page */
	SP_MSG_STATS_MAP,       /* d->c  its fd (SCM_RIGHTS), or an ERROR */
	SP_MSG_TYPE_END
};

struct sp_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t version;
	uint32_t len;           /* payload bytes after the header */
	uint32_t seq;
};

enum { SP_HELLO_CONTROL = 1u << 0 };  /* a control tool: no memory, no grants */

struct sp_hello {
	uint32_t flags;
	int32_t pid;
	char comm[16];
};

struct sp_welcome {
	uint64_t client_id;
	uint64_t epoch;         /* changes with every daemon start */
	uint32_t uid;           /* the trust domain */
	uint32_t seg_pages;
	int64_t knob[SP_PROTO_KNOBS];
};

struct sp_lookup_rec {
	uint64_t key;           /* content hash (with the node when merge_across_nodes=0) */
	uint64_t addr;          /* the client's page, for NOTIFY */
	uint32_t node;
	uint32_t pad;
};

enum sp_lookup_result {
	SP_LOOKUP_NONE = 0,     /* no partner yet: remembered as unshared */
	SP_LOOKUP_STORE = 1,    /* map store page .id (after comparing) */
	SP_LOOKUP_PUBLISH = 2,  /* another page has this content: publish yours */
	SP_LOOKUP_FAIL = 3,     /* the daemon cannot (memory, limits): try later */
};

struct sp_result_rec {
	uint32_t kind;
	uint32_t id;            /* store page: segment * seg_pages + offset */
};

struct sp_publish_rec {
	uint64_t key;
	uint64_t addr;
	uint32_t node;
	uint32_t pad;
	uint8_t data[SP_PROTO_PAGE];
};

struct sp_segment_msg {
	uint32_t seg;
	uint32_t pad;
};

struct sp_notify_rec {
	uint64_t key;
	uint64_t addr;
	uint32_t id;
	uint32_t pad;
};

struct sp_refs_rec {
	uint32_t id;
	int32_t refs;           /* mappings that name the page */
	int32_t sharers;        /* of those, really sharing */
	uint32_t pad;
};

struct sp_forget_rec {
	uint64_t key;
	uint64_t addr;
};

/* A turn, as ksmd paces itself: the client scans `pages` pages, sleeps
 * sleep_ms, and again, until its pass is done (or run stops), then
 * answers one DONE; meanwhile a DONE_PROGRESS at
 * least every second. Two messages per client pass instead of two per
 * batch: at the kernel's pace the round trips cost more than the batches. */
struct sp_grant {
	uint32_t pages;
	uint32_t sleep_ms;
	uint32_t flags;         /* SP_GRANT_* */
	uint32_t pad;
};

/* Hints (NOTIFY) for this client were lost while it did not read (paused):
 * look up again the pages that wait for a partner. */
enum { SP_GRANT_RELOOK = 1u << 0 };

/* A turn at the pace of these knob values, clamped to the message's range. */
static inline struct sp_grant _sp_grant_turn(int64_t pages_to_scan, int64_t sleep_millisecs)
{
	struct sp_grant g = { (uint32_t)(pages_to_scan > 0 && pages_to_scan < (1ll << 31) ? pages_to_scan : 1),
			      (uint32_t)(sleep_millisecs >= 0 && sleep_millisecs < (1ll << 31) ? sleep_millisecs : 0), 0,
			      0 };
	return g;
}

struct sp_client_stats {
	uint64_t registered, unshared, volatile_, zero, cow, scanned, skipped, skipped_map, merging,
		rmap_items, passes;
	uint64_t metadata_bytes;
	uint64_t cpu_ns;        /* the client engine thread's CPU time */
	uint64_t merge_any;     /* 1 when "merge any" is on */
};

enum {
	SP_DONE_STATS_ONLY = 1u << 0,   /* no grant answered: counters only */
	SP_DONE_PROGRESS = 1u << 1,     /* still in its turn: counters, and alive */
};

struct sp_done {
	uint32_t visited;
	uint32_t pass_done;
	uint32_t flags;
	uint32_t pad;
	struct sp_client_stats st;
};

struct sp_knobs {
	int64_t knob[SP_PROTO_KNOBS];
};

struct sp_stats {
	uint64_t present;
	int64_t value[64];
	uint32_t clients;
	int32_t daemon_pid;
	uint64_t epoch;
	uint64_t cpu_ns;        /* the domain's merging CPU: its clients' engine threads */
	uint64_t daemon_cpu_ns; /* the daemon process (all domains) */
};

struct sp_set_hdr {
	uint32_t flags;
	uint32_t n;             /* followed by n NUL-terminated "name=value" strings */
};

struct sp_set_reply {
	int32_t err;
	int32_t index;
	int32_t param;
	char msg[320];
};

struct sp_list_rec {
	int32_t pid;
	uint32_t uid;
	char comm[16];
	struct sp_client_stats st;
};

struct sp_error {
	int32_t err;
	char msg[124];
};

/* Records in a counted message: a uint32 count, padding to 8, then n records. */
struct sp_count {
	uint32_t n;
	uint32_t pad;
};

/* Check a received message; returns 0, or -EPROTO with why filled in. For
 * counted messages *n receives the record count. from_client tells which
 * direction the message was meant for. */
int _sp_proto_check(const struct sp_hdr *h, const void *payload, bool from_client, uint32_t *n,
		    char *why, size_t whylen);

/* Expected payload size of a counted message of n records (0 if not counted). */
size_t _sp_proto_counted_size(uint16_t type, uint32_t n);

/* Send one message (header + payload) with an optional fd; -errno. Blocks
 * (the socket may be non-blocking: then -EAGAIN can be returned before
 * anything is written, never in the middle of a message). */
int _sp_proto_send(int sock, uint16_t type, uint32_t seq, const void *payload, size_t len, int fd);
/* The same on a non-blocking socket: waits up to wait_ms for room to begin
 * (-EAGAIN after that, nothing sent), and up to a second more whenever a
 * begun message stalls (-EPIPE then: the stream is broken). */
int _sp_proto_send_wait(int sock, uint16_t type, uint32_t seq, const void *payload, size_t len, int fd,
			int wait_ms);

/* Receive one message into buf (capacity cap), blocking; *fd receives a
 * passed fd or -1. Returns payload length or -errno (-EPROTO invalid). */
int _sp_proto_recv(int sock, struct sp_hdr *h, void *buf, size_t cap, int *fd);

/* statpage.c: a domain's counters in shared memory (STATS_MAP). The daemon
 * makes the page (and a read-only fd of it for readers) and writes it;
 * a reader maps the fd (-EPROTO unless it is such a page) and reads it
 * (-EAGAIN when no consistent or no written copy came). */
struct sp_statpage;
int _sp_statpage_new(struct sp_statpage **out, int *rofd);
void _sp_statpage_free(struct sp_statpage *p, int rofd);
void _sp_statpage_write(struct sp_statpage *p, const struct sp_stats *st);
int _sp_statpage_map(int fd, const struct sp_statpage **out);
void _sp_statpage_unmap(const struct sp_statpage *p);
int _sp_statpage_read(const struct sp_statpage *p, struct sp_stats *out);

#endif
