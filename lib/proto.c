/* SPDX-License-Identifier: MIT */
/*
 * The samepaged protocol: validation, sending and receiving. The
 * validation is the only place that interprets untrusted bytes from a
 * peer; it is fuzzed (tests/fuzz_proto.c).
 */
#include "internal.h"
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Fixed payload sizes; 0 = counted; SIZE_MAX = variable (SET). */
static size_t fixed_size(uint16_t t)
{
	switch (t) {
	case SP_MSG_HELLO:
		return sizeof(struct sp_hello);
	case SP_MSG_WELCOME:
		return sizeof(struct sp_welcome);
	case SP_MSG_SEGMENT:
		return sizeof(struct sp_segment_msg);
	case SP_MSG_GRANT:
		return sizeof(struct sp_grant);
	case SP_MSG_DONE:
		return sizeof(struct sp_done);
	case SP_MSG_KNOBS:
		return sizeof(struct sp_knobs);
	case SP_MSG_UNMERGE_ALL:
	case SP_MSG_FORKED:
	case SP_MSG_SETTLE:
	case SP_MSG_STATS_REQ:
	case SP_MSG_STATS_MAP_REQ:
	case SP_MSG_STATS_MAP:
	case SP_MSG_LIST_REQ:
		return sizeof(struct sp_count);  /* an empty count, for uniform framing */
	case SP_MSG_STATS:
		return sizeof(struct sp_stats);
	case SP_MSG_SET_REPLY:
		return sizeof(struct sp_set_reply);
	case SP_MSG_ERROR:
		return sizeof(struct sp_error);
	case SP_MSG_SET:
		return SIZE_MAX;
	default:
		return 0;
	}
}

static size_t record_size(uint16_t t)
{
	switch (t) {
	case SP_MSG_LOOKUP:
		return sizeof(struct sp_lookup_rec);
	case SP_MSG_LOOKUP_REPLY:
	case SP_MSG_PUBLISH_REPLY:
		return sizeof(struct sp_result_rec);
	case SP_MSG_PUBLISH:
		return sizeof(struct sp_publish_rec);
	case SP_MSG_NOTIFY:
		return sizeof(struct sp_notify_rec);
	case SP_MSG_REFS:
		return sizeof(struct sp_refs_rec);
	case SP_MSG_FORGET:
		return sizeof(struct sp_forget_rec);
	case SP_MSG_LIST:
		return sizeof(struct sp_list_rec);
	default:
		return 0;
	}
}

static uint32_t max_records(uint16_t t)
{
	if (t == SP_MSG_PUBLISH || t == SP_MSG_PUBLISH_REPLY)
		return SP_PROTO_MAX_PUBLISH;
	if (t == SP_MSG_LIST)
		return 4096;
	return SP_PROTO_MAX_LOOKUP;
}

size_t _sp_proto_counted_size(uint16_t type, uint32_t n)
{
	size_t r = record_size(type);
	return r ? sizeof(struct sp_count) + (size_t)n * r : 0;
}

static bool sent_by_client(uint16_t t)
{
	switch (t) {
	case SP_MSG_HELLO:
	case SP_MSG_LOOKUP:
	case SP_MSG_PUBLISH:
	case SP_MSG_REFS:
	case SP_MSG_FORGET:
	case SP_MSG_DONE:
	case SP_MSG_FORKED:
	case SP_MSG_SETTLE:
	case SP_MSG_STATS_REQ:
	case SP_MSG_STATS_MAP_REQ:
	case SP_MSG_SET:
	case SP_MSG_LIST_REQ:
		return true;
	default:
		return false;
	}
}

#define BAD(...)                                          \
	do {                                              \
		snprintf(why, whylen, __VA_ARGS__);       \
		return -EPROTO;                           \
	} while (0)

int _sp_proto_check(const struct sp_hdr *h, const void *payload, bool from_client, uint32_t *n,
		    char *why, size_t whylen)
{
	if (n)
		*n = 0;
	if (h->magic != SP_PROTO_MAGIC)
		BAD("bad magic %#x", h->magic);
	if (h->version != SP_PROTO_VERSION)
		BAD("protocol version %u, expected %u", h->version, SP_PROTO_VERSION);
	if (h->type == 0 || h->type >= SP_MSG_TYPE_END)
		BAD("unknown message type %u", h->type);
	if (sent_by_client(h->type) != from_client)
		BAD("message type %u in the wrong direction", h->type);
	if (h->len > SP_PROTO_MAX_PAYLOAD)
		BAD("payload of %u bytes is too large", h->len);
	size_t fixed = fixed_size(h->type);
	if (fixed == SIZE_MAX) {
		/* SET: header, then n NUL-terminated strings filling the payload */
		if (h->len < sizeof(struct sp_set_hdr) || h->len > 16384)
			BAD("SET of %u bytes", h->len);
		const struct sp_set_hdr *sh = payload;
		if (sh->n == 0 || sh->n > 64)
			BAD("SET with %u settings", sh->n);
		const char *s = (const char *)payload + sizeof(*sh), *end = (const char *)payload + h->len;
		uint32_t strings = 0;
		for (const char *p = s; p < end; p++)
			if (*p == 0)
				strings++;
		if (strings != sh->n || end[-1] != 0)
			BAD("SET strings do not match their count");
		if (n)
			*n = sh->n;
		return 0;
	}
	if (fixed) {
		if (h->len != fixed)
			BAD("message type %u of %u bytes, expected %zu", h->type, h->len, fixed);
		return 0;
	}
	if (h->len < sizeof(struct sp_count))
		BAD("counted message of %u bytes", h->len);
	const struct sp_count *c = payload;
	if (c->n > max_records(h->type))
		BAD("%u records, at most %u", c->n, max_records(h->type));
	if (h->len != _sp_proto_counted_size(h->type, c->n))
		BAD("%u records do not fill %u bytes", c->n, h->len);
	if (n)
		*n = c->n;
	return 0;
}

/* Wait until sock can take more bytes, at most ms milliseconds. */
static bool writable(int sock, int ms)
{
	struct pollfd p = { sock, POLLOUT, 0 };
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r > 0 && (p.revents & POLLOUT);
}

int _sp_proto_send(int sock, uint16_t type, uint32_t seq, const void *payload, size_t len, int fd)
{
	return _sp_proto_send_wait(sock, type, seq, payload, len, fd, 0);
}

int _sp_proto_send_wait(int sock, uint16_t type, uint32_t seq, const void *payload, size_t len, int fd,
			int wait_ms)
{
	int f = _sp_fault("proto_send");  /* tests: a connection that fails */
	if (f)
		return f;
	struct sp_hdr h = { SP_PROTO_MAGIC, type, SP_PROTO_VERSION, (uint32_t)len, seq };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, len } };
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	if (fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		m.msg_control = ctl.buf;
		m.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	size_t total = sizeof(h) + len, done = 0;
	int64_t deadline = 0;  /* of all the waiting (a slow reader cannot hold us longer) */
	while (done < total) {
		ssize_t w = sendmsg(sock, &m, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			/* A non-blocking socket that is full: wait as the caller
			 * allows; a message already begun is finished if the peer
			 * reads within a second. */
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int64_t now = _sp_now_ns(), budget = done ? (wait_ms > 1000 ? wait_ms : 1000) : wait_ms;
				if (!deadline)
					deadline = now + budget * 1000000LL;
				if (now < deadline && writable(sock, (int)((deadline - now + 999999) / 1000000)))
					continue;
			}
			/* A half-sent message corrupts the stream: the caller must drop it. */
			return done ? -EPIPE : -errno;
		}
		done += (size_t)w;
		m.msg_control = NULL;
		m.msg_controllen = 0;
		/* advance the iovecs past what was written */
		size_t skip = (size_t)w;
		while (m.msg_iovlen && skip >= m.msg_iov[0].iov_len) {
			skip -= m.msg_iov[0].iov_len;
			m.msg_iov++;
			m.msg_iovlen--;
		}
		if (m.msg_iovlen) {
			m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + skip;
			m.msg_iov[0].iov_len -= skip;
		}
	}
	return 0;
}

/* Read exactly len bytes (the first read may also bring an fd). */
static int read_full(int sock, void *buf, size_t len, int *fd)
{
	size_t got = 0;
	while (got < len) {
		struct iovec iov = { (char *)buf + got, len - got };
		union {
			struct cmsghdr c;
			char b[CMSG_SPACE(sizeof(int))];
		} ctl;
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				    .msg_controllen = sizeof(ctl.b) };
		ssize_t r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { sock, POLLIN, 0 };
				if (poll(&p, 1, 5000) <= 0)
					return -ETIMEDOUT;
				continue;
			}
			return -errno;
		}
		if (r == 0)
			return -ECONNRESET;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int f;
				memcpy(&f, CMSG_DATA(cm), sizeof(int));
				if (fd && *fd < 0)
					*fd = f;
				else
					close(f);
			}
		got += (size_t)r;
	}
	return 0;
}

int _sp_proto_recv(int sock, struct sp_hdr *h, void *buf, size_t cap, int *fd)
{
	if (fd)
		*fd = -1;
	int r = read_full(sock, h, sizeof(*h), fd);
	if (r)
		return r;
	if (h->magic != SP_PROTO_MAGIC || h->len > cap || h->len > SP_PROTO_MAX_PAYLOAD)
		return -EPROTO;
	r = read_full(sock, buf, h->len, fd);
	if (r)
		return r;
	char why[128];
	uint32_t n;
	if (_sp_proto_check(h, buf, false, &n, why, sizeof(why)))
		return -EPROTO;
	return (int)h->len;
}
