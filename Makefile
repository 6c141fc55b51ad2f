# zkflow — see README.md. `make help` lists the targets.

CC      ?= gcc
CFLAGS  ?= -O2 -g
PKGS    := rdkafka luajit inih jansson libmicrohttpd
# Expanded when a recipe runs, i.e. after `deps` has installed pkg-config and
# the libraries on a fresh machine.
DEPS_CFLAGS = $(shell pkg-config --cflags $(PKGS))
DEPS_LIBS   = $(shell pkg-config --libs $(PKGS)) -lzookeeper_mt -lpthread
ZF_CFLAGS = -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude \
            $(DEPS_CFLAGS) -MMD -MP
BUILD   := build

ENGINE_SRCS := $(wildcard engine/*.c)
LIB_OBJS    := $(patsubst engine/%.c,$(BUILD)/obj/%.o,$(filter-out engine/main.c,$(ENGINE_SRCS)))
UNIT_TESTS  := $(patsubst tests/%.c,$(BUILD)/%,$(wildcard tests/test_*.c))

# `make install PREFIX=/usr/local DESTDIR=/tmp/pkg`: see README.md (Install).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/zkflow
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
INSTALL    ?= install

.PHONY: all deps test unit examples integration demo bench valgrind clean help \
        install uninstall install-check test-faults fuzz fuzz-smoke fuzz-build

all: deps $(BUILD)/zkflow $(BUILD)/zktree

deps:
	@scripts/install-deps.sh

$(BUILD)/obj/%.o: engine/%.c | $(BUILD)/obj
	$(CC) $(ZF_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/zkflow: $(LIB_OBJS) $(BUILD)/obj/main.o
	$(CC) $(CFLAGS) $^ -o $@ $(DEPS_LIBS) $(LDFLAGS)

# A helper for the demo and the tests: prints or deletes a znode subtree.
$(BUILD)/zktree: scripts/zktree.c | $(BUILD)/obj
	$(CC) $(ZF_CFLAGS) -DTHREADED $(CFLAGS) $< -o $@ -lzookeeper_mt $(LDFLAGS)

$(BUILD)/test_%: tests/test_%.c $(LIB_OBJS) | $(BUILD)/obj
	$(CC) $(ZF_CFLAGS) $(CFLAGS) $< $(LIB_OBJS) -o $@ $(DEPS_LIBS) -lcmocka $(LDFLAGS)

# lua-cjson only for this test, which compares zkflow's json module with it.
$(BUILD)/test_json: tests/test_json.c $(LIB_OBJS) | $(BUILD)/obj
	$(CC) $(ZF_CFLAGS) $(CFLAGS) $< $(LIB_OBJS) -o $@ $(DEPS_LIBS) -llua5.1-cjson -lcmocka $(LDFLAGS)

# Everything compiled lands here, so installing the packages comes first.
$(BUILD)/obj: | deps
	mkdir -p $@

# Unit tests need no services; integration tests start them.
unit: deps $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do $$t; done

integration: all
	tests/integration.sh

# Every example transform against its sample records and expected ops.
examples: all
	tests/examples.sh

test: unit examples install-check integration fuzz-smoke

# The man page against --help, and `make install` into a scratch DESTDIR.
install-check: all
	tests/install.sh

# The unit file gets the real paths; the example config and a script for it
# go to the doc directory (nothing is written to $(SYSCONFDIR)).
install: $(BUILD)/zkflow
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(DOCDIR) $(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 755 $(BUILD)/zkflow $(DESTDIR)$(BINDIR)/zkflow
	$(INSTALL) -m 644 dist/zkflow.1 $(DESTDIR)$(MANDIR)/man1/zkflow.1
	$(INSTALL) -m 644 dist/zkflow.ini $(DESTDIR)$(DOCDIR)/zkflow.ini.example
	$(INSTALL) -m 644 examples/devices.lua $(DESTDIR)$(DOCDIR)/devices.lua
	$(INSTALL) -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    dist/zkflow.service >$(DESTDIR)$(UNITDIR)/zkflow.service
	chmod 644 $(DESTDIR)$(UNITDIR)/zkflow.service

# Removes what `install` wrote, with the same PREFIX and DESTDIR.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/zkflow $(DESTDIR)$(MANDIR)/man1/zkflow.1 \
	    $(DESTDIR)$(UNITDIR)/zkflow.service \
	    $(DESTDIR)$(DOCDIR)/zkflow.ini.example \
	    $(DESTDIR)$(DOCDIR)/devices.lua $(DESTDIR)$(DOCDIR)/README.md
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true

# Fault tests (kills, restarts, a 3-server ensemble): not part of `make test`.
test-faults: all
	tests/faults.sh

valgrind: deps $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do \
	  valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite $$t; done

demo: all
	scripts/demo.sh

# Never part of `make test`: timing belongs in benchmarks. bench/run.sh runs
# the ZooKeeper ceiling, zkflow end to end, the Quix Streams + kazoo peer and
# kcat on one dataset, then writes bench/results.md and bench/results.json;
# `make bench N=100000` for a smaller dataset (other knobs: see bench/run.sh).
# bench/reload.py then measures reload latency and throughput during reload
# bursts (bench/reload-results.md).
bench: all $(BUILD)/bench_transform $(BUILD)/bench_ceiling
	$(BUILD)/bench_transform
	bench/run.sh
	bench/reload.py

$(BUILD)/bench_ceiling: bench/ceiling.c | $(BUILD)/obj
	$(CC) $(ZF_CFLAGS) $(CFLAGS) $< -o $@ -lzookeeper_mt -lpthread $(LDFLAGS)

$(BUILD)/bench_transform: bench/transform.c $(LIB_OBJS) | $(BUILD)/obj
	$(CC) $(ZF_CFLAGS) $(CFLAGS) $< $(LIB_OBJS) -o $@ $(DEPS_LIBS) $(LDFLAGS)

# Fuzzing: libFuzzer harnesses (fuzz/fuzz_NAME.c) under ASan and UBSan,
# linked with the engine compiled by clang into build/fuzz/obj (never mixed
# with the gcc objects of build/obj). A run starts from the inputs that once
# failed (fuzz/findings/NAME), the seeds (fuzz/seeds/NAME, and
# build/fuzz/seeds/NAME that fuzz/mkseeds.c makes from examples/ and dist/)
# and what earlier runs kept (build/fuzz/corpus/NAME): see fuzz/run.sh.
# `make fuzz` runs each harness FUZZ_SECONDS, `make fuzz-smoke` (part of
# `make test`) FUZZ_SMOKE_SECONDS; FUZZ_NAMES=... picks harnesses.
FUZZ_CC      ?= clang
FUZZ_CFLAGS  ?= -O1 -g -fno-omit-frame-pointer
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_NAMES   := json jsonl config path transform
FUZZ_BINS    := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_NAMES))
FUZZ_OBJS    := $(patsubst engine/%.c,$(FUZZ_DIR)/obj/%.o,$(filter-out engine/main.c,$(ENGINE_SRCS)))
FUZZ_LUA     := $(patsubst fuzz/%.lua,$(FUZZ_DIR)/gen/%_lua.h,$(wildcard fuzz/*.lua))
.SECONDARY: $(FUZZ_OBJS) $(FUZZ_LUA)

$(FUZZ_DIR)/obj/%.o: engine/%.c | $(FUZZ_DIR)/obj
	$(FUZZ_CC) $(ZF_CFLAGS) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

# The harnesses' Lua chunks as C strings: NAME.lua gives NAME_lua[].
$(FUZZ_DIR)/gen/%_lua.h: fuzz/%.lua | $(FUZZ_DIR)/obj
	{ echo 'static const char $*_lua[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } >$@

$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS) $(FUZZ_LUA) | $(FUZZ_DIR)/obj
	$(FUZZ_CC) $(ZF_CFLAGS) -I$(FUZZ_DIR)/gen $(FUZZ_CFLAGS) $(FUZZ_SAN) \
	    -fsanitize=fuzzer $< $(FUZZ_OBJS) -o $@ $(DEPS_LIBS) -llua5.1-cjson $(LDFLAGS)

$(FUZZ_DIR)/mkseeds: fuzz/mkseeds.c $(BUILD)/obj/op.o | $(FUZZ_DIR)/obj
	$(CC) $(ZF_CFLAGS) $(CFLAGS) $< $(BUILD)/obj/op.o -o $@ -ljansson $(LDFLAGS)

$(FUZZ_DIR)/seeds/.done: $(FUZZ_DIR)/mkseeds $(wildcard examples/*) dist/zkflow.ini
	rm -rf $(FUZZ_DIR)/seeds
	$(FUZZ_DIR)/mkseeds $(FUZZ_DIR)/seeds examples/*.jsonl examples/*.ini dist/zkflow.ini
	touch $@

$(FUZZ_DIR)/obj: | deps
	mkdir -p $@ $(FUZZ_DIR)/gen $(FUZZ_DIR)/findings

fuzz-build: deps $(FUZZ_BINS) $(FUZZ_DIR)/seeds/.done

fuzz: fuzz-build
	FUZZ_DIR=$(FUZZ_DIR) fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-smoke: fuzz-build
	FUZZ_DIR=$(FUZZ_DIR) fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_NAMES)

clean:
	rm -rf $(BUILD)

help:
	@echo "make            build build/zkflow (installs missing packages first)"
	@echo "make test       unit tests, integration tests on real services, a fuzz smoke round"
	@echo "make test-faults zkflow under faults: kills, restarts, an ensemble (a few minutes)"
	@echo "make demo       start services, run the quickstart example, show the tree"
	@echo "make bench      transform speed, then zkflow vs the ZooKeeper ceiling, a peer, kcat"
	@echo "make valgrind   unit tests under valgrind"
	@echo "make fuzz       each libFuzzer harness for FUZZ_SECONDS (60); fuzz-smoke: 5 s each"
	@echo "make install    install under PREFIX (/usr/local) into DESTDIR; make uninstall"
	@echo "make clean      remove build/"

-include $(wildcard $(BUILD)/obj/*.d $(FUZZ_DIR)/obj/*.d $(FUZZ_DIR)/*.d)
