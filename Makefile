# samepage: GNU make is the front door.
#   make               build the library, the programs and the tests
#   make check         run every test (tests/run-tests.sh)
#   make asan|ubsan|tsan   the same under a sanitizer, in its own build dir
#   make install       honours PREFIX and DESTDIR
# Dependency rules (docs/design.md): src/ uses only include/samepage.h;
# lib/ never includes anything from src/ or tests/.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
DESTDIR    ?=

BUILD   ?= build
CC      ?= cc
CFLAGS  ?= -O2 -g
SAN     ?=
WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation -Wundef
BASE     = -std=gnu11 -D_GNU_SOURCE -Iinclude -MMD -MP $(WARN) $(SAN)

PKGS_CLI   = json-c libmicrohttpd ncursesw
PKGS_TEST  = cmocka json-c
pc_cflags  = $(shell pkg-config --cflags $(1))
pc_libs    = $(shell pkg-config --libs $(1))

LIB_LIBS  = -lxxhash -lpthread

SOVERSION = 0
LIBVER    = 0.1.0

LIB_SRC = $(wildcard lib/*.c)
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB_SO  = $(BUILD)/lib/libsamepage.so.$(LIBVER)
LIB_A   = $(BUILD)/lib/libsamepage.a

CLI_SRC = $(wildcard src/samepage/*.c)
CLI_OBJ = $(CLI_SRC:%.c=$(BUILD)/%.o) $(TUNE_OBJ)
CLI     = $(BUILD)/bin/samepage

# The tuning policies (src/tune/) are shared by `samepage tune` and ksmtuned.
TUNE_OBJ     = $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/tune/*.c))
KSMTUNED_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/ksmtuned/*.c))
KSMTUNED     = $(BUILD)/sbin/ksmtuned

# samepaged, and the preload library (the engine linked in, PIC).
SAMEPAGED_OBJ = $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/samepaged/*.c))
SAMEPAGED     = $(BUILD)/bin/samepaged
PRELOAD_OBJ   = $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/preload/*.c))
PRELOAD       = $(BUILD)/lib/libsamepage-preload.so

TEST_HELP_SRC = tests/helpers.c
TEST_HELP_OBJ = $(BUILD)/tests/helpers.o
TEST_SRC  = $(filter-out $(TEST_HELP_SRC),$(wildcard tests/*.c))
TESTS     = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%.t)

PROGS = $(CLI) $(KSMTUNED) $(SAMEPAGED) $(PRELOAD)

# `make V=1` shows the full commands.
Q = $(if $(V),,@)

.PHONY: all check install uninstall clean asan ubsan tsan soak
.SECONDARY:
all: $(LIB_SO) $(LIB_A) $(PROGS) $(TESTS)

$(BUILD)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	@echo '  CC     $<'
	$(Q)$(CC) $(BASE) -Ilib -fPIC -fvisibility=hidden $(CFLAGS) -c $< -o $@

$(LIB_SO): $(LIB_OBJ) lib/libsamepage.map
	@mkdir -p $(@D)
	@echo '  LD     $@'
	$(Q)$(CC) -shared $(SAN) -Wl,-soname,libsamepage.so.$(SOVERSION) \
		-Wl,--version-script=lib/libsamepage.map -Wl,-z,defs -o $@ $(LIB_OBJ) $(LIB_LIBS)
	$(Q)ln -sf libsamepage.so.$(LIBVER) $(BUILD)/lib/libsamepage.so.$(SOVERSION)
	$(Q)ln -sf libsamepage.so.$(LIBVER) $(BUILD)/lib/libsamepage.so

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

# Programs find the library next door: build/bin -> build/lib, PREFIX/bin -> PREFIX/lib.
PROG_LDFLAGS = $(SAN) -L$(BUILD)/lib -Wl,-rpath,'$$ORIGIN/../lib' -lsamepage

$(BUILD)/src/%.o: src/%.c
	@mkdir -p $(@D)
	@echo '  CC     $<'
	$(Q)$(CC) $(BASE) $(call pc_cflags,$(PKGS_CLI)) $(CFLAGS) -c $< -o $@

$(CLI): $(CLI_OBJ) $(LIB_SO)
	@mkdir -p $(@D)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $(CLI_OBJ) $(PROG_LDFLAGS) $(call pc_libs,$(PKGS_CLI)) -lxxhash -lm

$(SAMEPAGED): $(SAMEPAGED_OBJ) $(LIB_SO)
	@mkdir -p $(@D)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $(SAMEPAGED_OBJ) $(PROG_LDFLAGS)

$(BUILD)/src/preload/%.o: src/preload/%.c
	@mkdir -p $(@D)
	@echo '  CC     $<'
	$(Q)$(CC) $(BASE) -fPIC -fvisibility=hidden $(CFLAGS) -c $< -o $@

# Self-contained: the engine is linked in, so it works in any program.
$(PRELOAD): $(PRELOAD_OBJ) $(LIB_OBJ) src/preload/preload.map
	@mkdir -p $(@D)
	@echo '  LD     $@'
	$(Q)$(CC) -shared $(SAN) -Wl,--version-script=src/preload/preload.map -Wl,-z,defs -o $@ \
		$(PRELOAD_OBJ) $(LIB_OBJ) $(LIB_LIBS)

# Tests link the static library so they can reach internal functions too.
$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	@echo '  CC     $<'
	$(Q)$(CC) $(BASE) -Ilib $(call pc_cflags,$(PKGS_TEST)) $(CFLAGS) -c $< -o $@

$(KSMTUNED): $(KSMTUNED_OBJ) $(TUNE_OBJ) $(LIB_SO)
	@mkdir -p $(@D)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $(KSMTUNED_OBJ) $(TUNE_OBJ) $(PROG_LDFLAGS)

# ksmtuned's tests call the policies directly.
$(BUILD)/tests/ksmtuned_%.t: $(BUILD)/tests/ksmtuned_%.o $(TEST_HELP_OBJ) $(LIB_A) $(TUNE_OBJ)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $< $(TUNE_OBJ) $(TEST_HELP_OBJ) $(LIB_A) $(SAN) $(call pc_libs,$(PKGS_TEST)) $(LIB_LIBS)

$(BUILD)/tests/%.t: $(BUILD)/tests/%.o $(TEST_HELP_OBJ) $(LIB_A)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $< $(TEST_HELP_OBJ) $(LIB_A) $(SAN) $(call pc_libs,$(PKGS_TEST)) $(LIB_LIBS)

check: all
	BUILD=$(BUILD) SAMEPAGE_SAN="$(SAN)" tests/run-tests.sh

SANITIZE_CHECK = $(MAKE) --no-print-directory BUILD=$(1) SAN="$(2)" CFLAGS="-O1 -g" check
asan:
	$(call SANITIZE_CHECK,build-asan,-fsanitize=address$(,)undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
ubsan:
	$(call SANITIZE_CHECK,build-ubsan,-fsanitize=undefined -fno-sanitize-recover=all)
tsan:
	TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp $(TSAN_OPTIONS)" \
		$(call SANITIZE_CHECK,build-tsan,-fsanitize=thread)
, := ,

MAN1 = $(wildcard man/*.1)
MAN3 = $(wildcard man/*.3)
MAN8 = $(wildcard man/*.8)
UNITS = $(wildcard systemd/*.service)

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(UNITDIR)
	install -m 755 $(CLI) $(DESTDIR)$(BINDIR)/samepage
	install -m 755 $(KSMTUNED) $(DESTDIR)$(SBINDIR)/ksmtuned
	install -m 755 $(SAMEPAGED) $(DESTDIR)$(BINDIR)/samepaged
	install -m 755 $(PRELOAD) $(DESTDIR)$(LIBDIR)/libsamepage-preload.so
	install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libsamepage.so.$(LIBVER) $(DESTDIR)$(LIBDIR)/libsamepage.so.$(SOVERSION)
	ln -sf libsamepage.so.$(LIBVER) $(DESTDIR)$(LIBDIR)/libsamepage.so
	install -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/
	install -m 644 include/samepage.h $(DESTDIR)$(INCLUDEDIR)/
	$(if $(MAN1),install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/)
	$(if $(MAN3),install -m 644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/)
	$(if $(MAN8),install -m 644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/)
	for u in $(UNITS); do \
		sed 's|@BINDIR@|$(BINDIR)|g; s|@SBINDIR@|$(SBINDIR)|g' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u); \
		chmod 644 $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
	install -d $(DESTDIR)$(USERUNITDIR)
	for u in systemd/user/*.service; do \
		sed 's|@BINDIR@|$(BINDIR)|g' $$u > $(DESTDIR)$(USERUNITDIR)/$$(basename $$u); \
		chmod 644 $(DESTDIR)$(USERUNITDIR)/$$(basename $$u); done
	if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then ldconfig || true; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/samepage $(DESTDIR)$(SBINDIR)/ksmtuned $(DESTDIR)$(LIBDIR)/libsamepage.* \
		$(DESTDIR)$(BINDIR)/samepaged $(DESTDIR)$(LIBDIR)/libsamepage-preload.so \
		$(DESTDIR)$(INCLUDEDIR)/samepage.h
	for m in $(notdir $(MAN1)); do rm -f $(DESTDIR)$(MANDIR)/man1/$$m; done
	for m in $(notdir $(MAN3)); do rm -f $(DESTDIR)$(MANDIR)/man3/$$m; done
	for m in $(notdir $(MAN8)); do rm -f $(DESTDIR)$(MANDIR)/man8/$$m; done
	for u in $(notdir $(UNITS)); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	rm -f $(DESTDIR)$(USERUNITDIR)/samepaged.service

# The race and semantics tests for longer: SOAK_SECONDS per race scenario.
SOAK_SECONDS ?= 60
soak: all
	SAMEPAGE_RACE_SECONDS=$(SOAK_SECONDS) TEST_TIMEOUT=$$(( $(SOAK_SECONDS) * 12 + 300 )) \
		BUILD=$(BUILD) tests/run-tests.sh engine_race_test engine_semantics_test engine_zero_test engine_fault_test daemon_test \
			daemon_failure_test

clean:
	rm -rf build build-asan build-ubsan build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Benchmarks (bench/, docs/performance.md): built and run only on request,
# never by `make` or `make check`. `make bench-run BENCH_ARGS=--help`.
BENCH_OBJ  = $(patsubst %,$(BUILD)/bench/%.o,engine_vs_ksm phase floor floor_calls probe workload ksm_knobs \
		table args)
BENCH_PROG = $(BUILD)/bench/engine_vs_ksm
BENCH_ARGS ?=
.PHONY: bench bench-run
bench: $(BENCH_PROG)

$(BUILD)/bench/%.o: bench/%.c
	@mkdir -p $(@D)
	@echo '  CC     $<'
	$(Q)$(CC) $(BASE) $(CFLAGS) -c $< -o $@

$(BENCH_PROG): $(BENCH_OBJ) $(LIB_A)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $(BENCH_OBJ) $(LIB_A) $(SAN) -lm $(LIB_LIBS)

bench-run: bench
	$(BENCH_PROG) $(BENCH_ARGS)

# N processes under kernel KSM and under samepaged (bench/procs_vs_ksm*.c,
# docs/cross-process.md), on request only: builds and runs it, as root;
# about 37 minutes. `make bench-procs PROCS_ARGS=--help`.
PROCS_BENCH = $(BUILD)/bench/procs_vs_ksm
PROCS_OBJ   = $(patsubst %,$(BUILD)/bench/%.o,procs_vs_ksm procs_vs_ksm_phase procs_vs_ksm_worker \
		floor_calls ksm_knobs table args probe workload)
PROCS_ARGS ?=
.PHONY: bench-procs
$(PROCS_BENCH): $(PROCS_OBJ) $(LIB_A)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $(PROCS_OBJ) $(LIB_A) $(SAN) -lm $(LIB_LIBS)

bench-procs: $(PROCS_BENCH) $(SAMEPAGED)
	$(PROCS_BENCH) --samepaged $(SAMEPAGED) $(PROCS_ARGS)

# The tuning policies' benchmark (bench/tuned_bench.c, docs/tuning.md), on
# request only: `make bench-tuned TUNED_ARGS=--help`. Root; about 14 minutes.
TUNED_BENCH = $(BUILD)/bench/tuned_bench
TUNED_ARGS ?=
.PHONY: bench-tuned
$(BUILD)/bench/tuned_bench.o: bench/tuned_bench.c
	@mkdir -p $(@D)
	@echo '  CC     $<'
	$(Q)$(CC) $(BASE) $(CFLAGS) -c $< -o $@

$(TUNED_BENCH): $(BUILD)/bench/tuned_bench.o $(LIB_A)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $< $(LIB_A) $(SAN) -lm $(LIB_LIBS)

bench-tuned: $(TUNED_BENCH) $(KSMTUNED)
	$(TUNED_BENCH) --ksmtuned $(KSMTUNED) $(TUNED_ARGS)

# Fuzzing the daemon's protocol handling with libFuzzer (clang), on request:
# `make fuzz FUZZ_SECONDS=60`. make check replays it (tests/fuzz_test.c).
FUZZ_SECONDS ?= 30
.PHONY: fuzz
fuzz:
	@mkdir -p $(BUILD)/fuzz/corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE -Iinclude -Ilib \
		tests/fuzz/proto_fuzz.c $(LIB_SRC) -lxxhash -lpthread -o $(BUILD)/fuzz/proto_fuzz
	$(BUILD)/fuzz/proto_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=300000 $(BUILD)/fuzz/corpus

# `samepage estimate` against a plain read-and-hash loop over the same
# memory (bench/estimate_bench.c, docs/estimate.md), on request:
# `make bench-estimate ESTIMATE_ARGS=--help`. Needs about --size of free memory.
ESTIMATE_BENCH = $(BUILD)/bench/estimate_bench
ESTIMATE_CORE  = $(BUILD)/src/samepage/estimate_scan.o $(BUILD)/src/samepage/estimate_table.o
ESTIMATE_ARGS ?=
.PHONY: bench-estimate
$(ESTIMATE_BENCH): $(BUILD)/bench/estimate_bench.o $(ESTIMATE_CORE)
	@echo '  LD     $@'
	$(Q)$(CC) -o $@ $^ $(SAN) -lxxhash

bench-estimate: $(ESTIMATE_BENCH)
	$(ESTIMATE_BENCH) $(ESTIMATE_ARGS)
