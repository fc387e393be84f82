# sqlite-rnn. `make` builds rnn.so; `make demo` runs the demo; `make test` runs every test (but node-test).
# Targets: all (rnn.so), demo, test, bench, clean, deps (installs Debian packages; nothing else does),
# static, install, uninstall, node-test (tests/ecosystem.mk), autoload, cluster-test (tests/cluster/cluster.mk),
# sanitize, valgrind, fuzz, oomtest, threadtest (tests/reliability.mk).

CC      ?= cc
# -ffp-contract=off: only the fmaf() written in the kernels fuse, so every CPU
# path rounds alike (see ext/kern_body.h).
CFLAGS  ?= -O2 -g
WARN    = -Wall -Wextra -Werror -Wno-unused-parameter
BASE    = -std=c11 -D_DEFAULT_SOURCE -fPIC -fvisibility=hidden -ffp-contract=off $(WARN)
# The shipped build (rnn.so, librnn.a) leaves the invariants' asserts out: a broken
# invariant must not abort a host process. The sanitizer, out-of-memory, thread and
# fuzz builds (tests/reliability.mk) compile them in; `make sanitize` runs the whole
# suite that way.
RELEASE = -DNDEBUG
LDLIBS  = -lm -pthread

SRC     = ext/rnn.c ext/util.c ext/json.c ext/model.c ext/info.c ext/tokenizer.c ext/cells.c ext/registry.c ext/sequence.c ext/features.c ext/seqagg.c ext/window.c ext/state.c ext/eval.c ext/tvf.c ext/scan.c ext/scan_compute.c ext/poll.c ext/kern_scalar.c ext/params.c ext/grad.c ext/trainsql.c \
          ext/train.c ext/train_opts.c ext/train_data.c ext/train_batch.c ext/train_adam.c ext/train_pool.c
SIMD    = ext/kern_avx2.c ext/kern_avx512.c
HDR     = $(wildcard ext/*.h)
ARCH   := $(shell uname -m)
ifeq ($(ARCH),x86_64)
SIMD_FLAGS_avx2   = -mavx2 -mfma
SIMD_FLAGS_avx512 = -mavx512f -mavx2 -mfma -mprefer-vector-width=512
endif

# A Python that has both the sqlite3 module and extension loading (Debian's
# /usr/bin/python3 does; some pyenv builds do not).
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
	$$p -c 'import sqlite3; sqlite3.connect(":memory:").enable_load_extension(True)' 2>/dev/null \
	&& { echo $$p; break; }; done)

all: rnn.so

build/%.o: ext/%.c $(HDR) | build
	$(CC) $(BASE) $(RELEASE) $(CFLAGS) -c $< -o $@

# The training math's hot loops are elementwise over independent outputs (no sum
# is reordered: ext/grad.c rule 3), so vectorising them keeps every bit.
GRAD_FLAGS = -ftree-vectorize -fvect-cost-model=dynamic
build/grad.o: ext/grad.c $(HDR) | build
	$(CC) $(BASE) $(RELEASE) $(CFLAGS) $(GRAD_FLAGS) -c $< -o $@

build/kern_avx2.o: ext/kern_avx2.c $(HDR) | build
	$(CC) $(BASE) $(RELEASE) $(CFLAGS) $(SIMD_FLAGS_avx2) -c $< -o $@

build/kern_avx512.o: ext/kern_avx512.c $(HDR) | build
	$(CC) $(BASE) $(RELEASE) $(CFLAGS) $(SIMD_FLAGS_avx512) -c $< -o $@

OBJ = $(patsubst ext/%.c,build/%.o,$(SRC) $(SIMD))

rnn.so: $(OBJ)
	$(CC) -shared -fvisibility=hidden $(OBJ) -o $@ $(LDLIBS)

build:
	@mkdir -p build

# The kernels alone, without SQLite (tests/test_kernels.c).
KERN_OBJ = build/cells.o build/kern_scalar.o build/kern_avx2.o build/kern_avx512.o
build/test_kernels: tests/test_kernels.c $(KERN_OBJ) $(HDR)
	$(CC) $(BASE) $(CFLAGS) tests/test_kernels.c $(KERN_OBJ) -o $@ $(LDLIBS)

# Debian packages. `make deps` installs them (as root: apt-get update, then apt-get install; otherwise it prints
# the command). Every other target only checks and stops naming what is missing: no target but deps runs apt-get.
# DEMO_DEPS builds rnn.so and runs the demo; TEST_DEPS adds what `make test` needs. Optional, not installed here:
# python3-torch (live PyTorch checks; committed fixtures cover its absence), nodejs and npm (make node-test).
DEMO_DEPS = gcc libc6-dev make libsqlite3-dev sqlite3 gnuplot-nox
TEST_DEPS = $(DEMO_DEPS) python3 python3-pytest
# make cluster-test (tests/cluster/cluster.mk): dqlite's programs, Go and go-dqlite's sources
CLUSTER_DEPS = go-dqlite golang-go golang-github-canonical-go-dqlite-dev libdqlite-dev
ALL_DEPS = $(strip $(TEST_DEPS) $(CLUSTER_DEPS))

# $(call missing,PACKAGES): shell code that sets $missing to those of PACKAGES dpkg does not list as installed.
missing = missing=""; for p in $(1); do \
	  [ "$$(dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null)" = "ii " ] || missing="$$missing $$p"; done

# $(call check,PACKAGES): fail naming the missing ones and how to install them (not checked without dpkg).
check = @if ! command -v dpkg-query >/dev/null; then echo "no dpkg-query (not Debian): not checking for:" \
	  "$(1)"; else $(call missing,$(1)); if [ -n "$$missing" ]; then \
	  echo "missing Debian packages:$$missing"; \
	  echo "install them with: make deps (as root), or: sudo apt-get update && sudo apt-get install$$missing"; \
	  exit 1; fi; fi

deps:
	@$(call missing,$(ALL_DEPS)); \
	if [ -z "$$missing" ]; then echo "all Debian packages installed: $(ALL_DEPS)"; \
	elif [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "missing Debian packages:$$missing"; \
	  echo "run as root: apt-get update && apt-get install$$missing"; exit 1; fi

check-deps:
	$(call check,$(TEST_DEPS))

check-demo-deps:
	$(call check,$(DEMO_DEPS))

check-python: check-deps
	@test -n "$(PYTHON)" || { echo "no python3 with sqlite3 extension loading found:" \
	  "install Debian's python3 (make deps) or set PYTHON=..."; exit 1; }
	@$(PYTHON) -c 'import pytest' 2>/dev/null || { echo "$(PYTHON) cannot import pytest:" \
	  "install python3-pytest (make deps) or set PYTHON=..."; exit 1; }

demo: check-demo-deps rnn.so
	rm -f demo.db
	sqlite3 demo.db < sql/demo.sql
	gnuplot sql/demo_chart.gp && echo "chart of the faults and the model's forecasts: demo.png" 

# Every test but the Node one (make node-test). PYTEST_ARGS passes options: make test PYTEST_ARGS='-k frames'.
# tests/conftest.py says how tests are written and run; the output ends with "N passed, N failed, N skipped".
test: check-python rnn.so build/test_kernels
	$(PYTHON) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf build rnn.so demo.db .pytest_cache

.PHONY: all deps check-deps check-demo-deps check-python demo test clean

# Benchmarks (see bench/bench.py): prints ratios against baselines measured in the same run.
build/bench_kernels: bench/bench_kernels.c tests/testnet.h $(KERN_OBJ) build/scan_compute.o $(HDR)
	$(CC) $(BASE) -O2 bench/bench_kernels.c $(KERN_OBJ) build/scan_compute.o -o $@ $(LDLIBS)

build/bench_floor.so: bench/bench_floor.c
	@mkdir -p build
	$(CC) $(BASE) -O2 -shared bench/bench_floor.c -o $@

bench: check-python rnn.so build/bench_kernels build/bench_floor.so
	$(PYTHON) bench/bench.py

.PHONY: bench

# Training (README "Training"). lesson: sql/train_long_memory.sql trained by rnn_train, its loss curves drawn into
# docs/train_long_memory.png. train-lang: the tutorial's character RNN trained by rnn_train against torch (minutes).
lesson: check-demo-deps rnn.so
	mkdir -p build && rm -f build/lesson.db
	sqlite3 build/lesson.db < sql/train_long_memory.sql
	gnuplot -e "db='build/lesson.db'; out='docs/train_long_memory.png'" sql/train_long_memory.gp
	@echo "loss curves: docs/train_long_memory.png"

train-lang: check-python rnn.so
	$(PYTHON) sql/train_lang_rnn.py

.PHONY: lesson train-lang

# static, install, uninstall, node-test
include tests/ecosystem.mk
# sanitize, valgrind, fuzz, oomtest, threadtest
include tests/reliability.mk
# autoload, cluster-client, cluster-test
include tests/cluster/cluster.mk
