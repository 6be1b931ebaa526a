/* SPDX-License-Identifier: MIT */
/*
 * Description: the protocol fuzz target (tests/fuzz/proto_fuzz.c) as a
 * regression test: valid messages of every kind, then many deterministic
 * mutations of them (bit flips, truncation, wrong counts and lengths,
 * random bytes). Any crash, or AddressSanitizer report in `make asan`,
 * fails it. `make fuzz` runs the same target under libFuzzer.
 */
#include "helpers.h"

#include "fuzz/proto_fuzz.c"

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint64_t next(void)
{
	return test_rng(&rng);
}

/* A valid message of the given type, with n records, into buf. */
static size_t seed(uint8_t *buf, uint16_t type, uint32_t n)
{
	struct sp_hdr h = { SP_PROTO_MAGIC, type, SP_PROTO_VERSION, 0, 1 };
	uint8_t *p = buf + sizeof(h);
	size_t len = _sp_proto_counted_size(type, n);
	if (len) {
		memset(p, 0, len);
		((struct sp_count *)p)->n = n;
		uint8_t *r = p + sizeof(struct sp_count);
		for (size_t i = 0; i < len - sizeof(struct sp_count); i++)
			r[i] = (uint8_t)next();
		if (type == SP_MSG_REFS)
			for (uint32_t i = 0; i < n; i++) {
				struct sp_refs_rec *rr = (struct sp_refs_rec *)r + i;
				rr->id = (uint32_t)(next() % 64);
				rr->refs = (int32_t)(next() % 5) - 2;
				rr->sharers = (int32_t)(next() % 3) - 1;
			}
	} else if (type == SP_MSG_HELLO) {
		len = sizeof(struct sp_hello);
		memset(p, 'x', len);
	} else {
		len = sizeof(struct sp_count);
		memset(p, 0, len);
	}
	h.len = (uint32_t)len;
	memcpy(buf, &h, sizeof(h));
	return sizeof(h) + len;
}

static void test_valid_then_mutated(void **state)
{
	(void)state;
	static const uint16_t types[] = { SP_MSG_HELLO, SP_MSG_LOOKUP, SP_MSG_PUBLISH, SP_MSG_REFS,
					  SP_MSG_FORGET, SP_MSG_DONE, SP_MSG_FORKED, SP_MSG_SETTLE, SP_MSG_STATS_REQ,
					  SP_MSG_SET, SP_MSG_LIST_REQ };
	size_t cap = sizeof(struct sp_hdr) + SP_PROTO_MAX_PAYLOAD + 64;
	uint8_t *buf = malloc(cap);
	unsigned long runs = 0;
	for (int round = 0; round < 40000; round++) {
		uint16_t t = types[next() % (sizeof(types) / sizeof(types[0]))];
		uint32_t n = t == SP_MSG_PUBLISH ? (uint32_t)(next() % 4) : (uint32_t)(next() % 40);
		size_t len = seed(buf, t, n);
		LLVMFuzzerTestOneInput(buf, len);  /* the valid one */
		runs++;
		/* then mutations of it */
		for (int m = 0; m < 4; m++) {
			size_t l = len;
			switch (next() % 5) {
			case 0:
				buf[next() % l] ^= (uint8_t)(1u << (next() % 8));
				break;
			case 1:
				l = next() % (l + 1);
				break;
			case 2:
				((struct sp_hdr *)buf)->len = (uint32_t)next();
				break;
			case 3:
				if (l >= sizeof(struct sp_hdr) + 4)
					((uint32_t *)(buf + sizeof(struct sp_hdr)))[0] = (uint32_t)next() % 2048;
				break;
			default:
				for (size_t i = 0; i < 16 && l; i++)
					buf[next() % l] = (uint8_t)next();
			}
			LLVMFuzzerTestOneInput(buf, l);
			runs++;
		}
	}
	/* pure noise */
	for (int i = 0; i < 20000; i++) {
		size_t l = next() % 512;
		for (size_t k = 0; k < l; k++)
			buf[k] = (uint8_t)next();
		LLVMFuzzerTestOneInput(buf, l);
		runs++;
	}
	print_message("%lu inputs, domain now: %llu shared, %llu sharing\n", runs,
		      (unsigned long long)dom->pages_shared, (unsigned long long)dom->pages_sharing);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_then_mutated),
	};
	return cmocka_run_group_tests_name("fuzz", tests, NULL, NULL);
}
