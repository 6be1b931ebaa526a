/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for everything samepaged does with bytes from a client:
 * the message check, and for messages that pass it, what a domain does
 * with their records (lookups, publishing, references, forgetting).
 *
 *   make fuzz        (clang, libFuzzer, AddressSanitizer)
 * tests/fuzz_test.c replays the corpus and random mutations in make check.
 */
#include "daemon.h"
#include "proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sp_domain *dom;
static struct sp_client client;

static void setup(void)
{
	if (dom)
		return;
	dom = _sp_domain_new(1000);
	dom->store.fork_gen = 1;
	client.dom = dom;
	client.slot = 3;
	client.hello = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	if (size < sizeof(struct sp_hdr))
		return 0;
	struct sp_hdr h;
	memcpy(&h, data, sizeof(h));
	size_t avail = size - sizeof(h);
	if (h.len > avail)
		h.len = (uint32_t)avail;  /* what a stream would have delivered */
	/* the payload in its own buffer, so that reads past it are caught */
	uint8_t *p = malloc(h.len ? h.len : 1);
	memcpy(p, data + sizeof(h), h.len);
	uint32_t n = 0;
	char why[160];
	for (int dir = 0; dir < 2; dir++)
		_sp_proto_check(&h, p, dir, &n, why, sizeof(why));
	if (_sp_proto_check(&h, p, true, &n, why, sizeof(why)) == 0) {
		const void *recs = p + sizeof(struct sp_count);
		struct sp_result_rec res[SP_PROTO_MAX_LOOKUP];
		struct sp_note notes[SP_PROTO_MAX_PUBLISH];
		switch (h.type) {
		case SP_MSG_LOOKUP:
			_sp_domain_lookup(dom, &client, recs, n, 4, res);
			break;
		case SP_MSG_PUBLISH:
			_sp_domain_publish(dom, &client, recs, n, 4, false, res, notes);
			break;
		case SP_MSG_REFS:
			_sp_domain_refs(dom, &client, recs, n, why, sizeof(why));
			break;
		case SP_MSG_FORGET:
			_sp_domain_forget(dom, &client, recs, n);
			break;
		default:
			break;
		}
	}
	/* the domain's counters never go below zero */
	if ((int64_t)dom->pages_shared < 0 || (int64_t)dom->pages_sharing < 0)
		abort();
	free(p);
	return 0;
}
