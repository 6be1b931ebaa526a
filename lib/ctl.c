/* SPDX-License-Identifier: MIT */
/* Control of samepaged: what `samepage status/set/ps --engine user` use. */
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

struct sp_ctl {
	int fd;
	uint8_t *buf;
	const struct sp_statpage *page;  /* the domain's counters, mapped (statpage.c) */
	bool page_asked;
};

static int try_path(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int sp_ctl_open(const char *socket_path, sp_ctl **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	int fd;
	if (socket_path) {
		fd = try_path(socket_path);
	} else {
		char p[108];
		int r = sp_socket_path(false, p, sizeof(p));
		fd = r ? r : try_path(p);
		if (fd < 0 && !getenv("SAMEPAGE_SOCKET") && sp_socket_path(true, p, sizeof(p)) == 0) {
			int sfd = try_path(p);
			if (sfd >= 0)
				fd = sfd;
		}
	}
	if (fd < 0)
		return fd;
	sp_ctl *c = calloc(1, sizeof(*c));
	uint8_t *buf = malloc(SP_PROTO_MAX_PAYLOAD);
	if (!c || !buf) {
		free(c);
		free(buf);
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->buf = buf;
	struct sp_hello h = { .flags = SP_HELLO_CONTROL, .pid = getpid() };
	snprintf(h.comm, sizeof(h.comm), "%s", program_invocation_short_name);
	struct sp_hdr hdr;
	int r = _sp_proto_send(fd, SP_MSG_HELLO, 0, &h, sizeof(h), -1);
	if (!r)
		r = _sp_proto_recv(fd, &hdr, buf, SP_PROTO_MAX_PAYLOAD, NULL);
	if (r >= 0 && hdr.type != SP_MSG_WELCOME)
		r = -EPROTO;
	if (r < 0) {
		sp_ctl_close(c);
		return r;
	}
	*out = c;
	return 0;
}

void sp_ctl_close(sp_ctl *c)
{
	if (!c)
		return;
	close(c->fd);
	_sp_statpage_unmap(c->page);
	free(c->buf);
	free(c);
}

/* One request, its reply (other messages are not sent to control clients). */
static int call(sp_ctl *c, uint16_t type, const void *p, size_t len, uint16_t want)
{
	int r = _sp_proto_send(c->fd, type, 0, p, len, -1);
	if (r)
		return r;
	struct sp_hdr h;
	r = _sp_proto_recv(c->fd, &h, c->buf, SP_PROTO_MAX_PAYLOAD, NULL);
	if (r < 0)
		return r;
	if (h.type == SP_MSG_ERROR)
		return ((struct sp_error *)c->buf)->err ? ((struct sp_error *)c->buf)->err : -EPROTO;
	return h.type == want ? r : -EPROTO;
}

static int stats(sp_ctl *c, const struct sp_stats **st)
{
	struct sp_count z = { 0, 0 };
	int r = call(c, SP_MSG_STATS_REQ, &z, sizeof(z), SP_MSG_STATS);
	*st = (const void *)c->buf;
	return r < 0 ? r : 0;
}

/* The domain's counters page, asked for once: a daemon that has none
 * answers ERROR, and the counters come over the socket as before. */
static void map_page(sp_ctl *c)
{
	c->page_asked = true;
	struct sp_count z = { 0, 0 };
	if (_sp_proto_send(c->fd, SP_MSG_STATS_MAP_REQ, 0, &z, sizeof(z), -1))
		return;
	struct sp_hdr h;
	int fd = -1;
	if (_sp_proto_recv(c->fd, &h, c->buf, SP_PROTO_MAX_PAYLOAD, &fd) >= 0 && h.type == SP_MSG_STATS_MAP && fd >= 0)
		_sp_statpage_map(fd, &c->page);
	if (fd >= 0)
		close(fd);
}

/* Counters from the page: no wake-up of the daemon. It has gone if the
 * socket reads (it never sends to control tools unasked): then an error,
 * as a request would get, not the last counters forever. */
static int page_stats(sp_ctl *c, struct sp_stats *st)
{
	struct pollfd p = { c->fd, POLLIN, 0 };
	if (poll(&p, 1, 0) != 0)
		return -ECONNRESET;
	return _sp_statpage_read(c->page, st);
}

int sp_ctl_info_get(sp_ctl *c, sp_ctl_info *out)
{
	if (!c || !out)
		return -EINVAL;
	const struct sp_stats *st;
	int r = stats(c, &st);
	if (r)
		return r;
	memset(out, 0, sizeof(*out));
	out->daemon_pid = st->daemon_pid;
	out->epoch = st->epoch;
	out->clients = st->clients;
	out->cpu_seconds = (double)st->cpu_ns / 1e9;
	out->daemon_cpu_seconds = (double)st->daemon_cpu_ns / 1e9;
	return 0;
}

int sp_ctl_sample(sp_ctl *c, sp_sample *out)
{
	if (!c || !out)
		return -EINVAL;
	if (!c->page_asked)
		map_page(c);
	struct sp_stats mine;
	const struct sp_stats *st = &mine;
	int r = c->page ? page_stats(c, &mine) : -EAGAIN;
	if (r == -EAGAIN)
		r = stats(c, &st);
	if (r)
		return r;
	memset(out, 0, sizeof(*out));
	out->present = st->present;
	memcpy(out->value, st->value, sizeof(out->value));
	out->when_ns = _sp_now_ns();
	out->page_size = (long)SP_PAGE;
	return 0;
}

int sp_ctl_set(sp_ctl *c, const sp_setting *set, size_t n, unsigned flags, sp_diag *d)
{
	_sp_diag_reset(d);
	if (!c || !set || n == 0 || n > 64) {
		_sp_diag(d, -EINVAL, -1, n ? "invalid arguments" : "nothing to set");
		return -EINVAL;
	}
	size_t len = sizeof(struct sp_set_hdr);
	for (size_t i = 0; i < n; i++)
		len += strlen(set[i].name) + 1 + strlen(set[i].value) + 1;
	if (len > 16384) {
		_sp_diag(d, -E2BIG, -1, "settings too long");
		return -E2BIG;
	}
	uint8_t *msg = malloc(len);
	if (!msg)
		return -ENOMEM;
	struct sp_set_hdr *sh = (void *)msg;
	sh->flags = flags;
	sh->n = (uint32_t)n;
	char *s = (char *)msg + sizeof(*sh);
	for (size_t i = 0; i < n; i++)
		s += sprintf(s, "%s=%s", set[i].name, set[i].value) + 1;
	int r = call(c, SP_MSG_SET, msg, len, SP_MSG_SET_REPLY);
	free(msg);
	if (r < 0) {
		_sp_diag(d, r, -1, "samepaged did not answer: %s", sp_strerror(r));
		return r;
	}
	const struct sp_set_reply *rep = (const void *)c->buf;
	if (d) {
		d->err = rep->err;
		d->index = rep->index;
		d->param = rep->param;
		snprintf(d->msg, sizeof(d->msg), "%s", rep->msg);
	}
	return rep->err;
}

int sp_ctl_processes(sp_ctl *c, sp_proc_ksm **out, size_t *n)
{
	if (!c || !out || !n)
		return -EINVAL;
	*out = NULL;
	*n = 0;
	struct sp_count z = { 0, 0 };
	int r = call(c, SP_MSG_LIST_REQ, &z, sizeof(z), SP_MSG_LIST);
	if (r < 0)
		return r;
	const struct sp_count *cnt = (const void *)c->buf;
	const struct sp_list_rec *rec = (const void *)(c->buf + sizeof(*cnt));
	sp_proc_ksm *list = calloc(cnt->n ? cnt->n : 1, sizeof(*list));
	if (!list)
		return -ENOMEM;
	for (uint32_t i = 0; i < cnt->n; i++) {
		sp_proc_ksm *p = &list[i];
		p->pid = rec[i].pid;
		p->uid = rec[i].uid;
		snprintf(p->comm, sizeof(p->comm), "%.15s", rec[i].comm);
		p->ksm_rmap_items = (int64_t)rec[i].st.rmap_items;
		p->ksm_zero_pages = (int64_t)rec[i].st.zero;
		p->ksm_merging_pages = (int64_t)rec[i].st.merging;
		p->ksm_process_profit = ((int64_t)rec[i].st.merging + (int64_t)rec[i].st.zero) * (int64_t)SP_PAGE -
					(int64_t)rec[i].st.metadata_bytes;
		p->ksm_merge_any = rec[i].st.merge_any != 0;
		p->ksm_mergeable = rec[i].st.registered > 0 || rec[i].st.merge_any;
	}
	*out = list;
	*n = cnt->n;
	return 0;
}
