# zkflow — see README.md. `make help` lists the targets.

CC      ?= gcc
CFLAGS  ?= -O2 -g
PKGS    := rdkafka luajit inih jansson
# Expanded when a recipe runs, i.e. after `deps` has installed pkg-config and
# the libraries on a fresh machine.
DEPS_CFLAGS = $(shell pkg-config --cflags $(PKGS))
DEPS_LIBS   = $(shell pkg-config --libs $(PKGS)) -llua5.1-cjson \
              -lzookeeper_mt -lpthread
ZF_CFLAGS = -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude \
            $(DEPS_CFLAGS) -MMD -MP
BUILD   := build

ENGINE_SRCS := $(wildcard engine/*.c)
LIB_OBJS    := $(patsubst engine/%.c,$(BUILD)/obj/%.o,$(filter-out engine/main.c,$(ENGINE_SRCS)))
UNIT_TESTS  := $(patsubst tests/%.c,$(BUILD)/%,$(wildcard tests/test_*.c))

.PHONY: all deps test unit examples integration test-faults demo bench valgrind clean help

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

test: unit examples integration

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
bench: all $(BUILD)/bench_transform $(BUILD)/bench_ceiling
	$(BUILD)/bench_transform
	bench/run.sh

$(BUILD)/bench_ceiling: bench/ceiling.c | $(BUILD)/obj
	$(CC) $(ZF_CFLAGS) $(CFLAGS) $< -o $@ -lzookeeper_mt -lpthread $(LDFLAGS)

$(BUILD)/bench_transform: bench/transform.c $(LIB_OBJS) | $(BUILD)/obj
	$(CC) $(ZF_CFLAGS) $(CFLAGS) $< $(LIB_OBJS) -o $@ $(DEPS_LIBS) $(LDFLAGS)

clean:
	rm -rf $(BUILD)

help:
	@echo "make            build build/zkflow (installs missing packages first)"
	@echo "make test       unit tests, then integration tests on real services"
	@echo "make test-faults zkflow under faults: kills, restarts, an ensemble (a few minutes)"
	@echo "make demo       start services, run the quickstart example, show the tree"
	@echo "make bench      transform speed, then zkflow vs the ZooKeeper ceiling, a peer, kcat"
	@echo "make valgrind   unit tests under valgrind"
	@echo "make clean      remove build/"

-include $(wildcard $(BUILD)/obj/*.d)
