# sqlite-rnn. `make` builds rnn.so; `make demo` runs the demo; `make test` runs every test.
# Targets: all (rnn.so), demo, test, bench, clean, deps (installs Debian packages),
# static, install, uninstall, node-test (tests/ecosystem.mk),
# sanitize, valgrind, fuzz, oomtest, threadtest (tests/reliability.mk).

CC      ?= cc
# -ffp-contract=off: only the fmaf() written in the kernels fuse, so every CPU
# path rounds alike (see ext/kern_body.h).
CFLAGS  ?= -O2 -g
WARN    = -Wall -Wextra -Werror -Wno-unused-parameter
BASE    = -std=c11 -D_DEFAULT_SOURCE -fPIC -fvisibility=hidden -ffp-contract=off $(WARN)
LDLIBS  = -lm

SRC     = ext/rnn.c ext/util.c ext/json.c ext/model.c ext/tokenizer.c ext/cells.c ext/registry.c ext/sequence.c ext/features.c ext/seqagg.c ext/window.c ext/eval.c ext/tvf.c ext/kern_scalar.c
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
	$(CC) $(BASE) $(CFLAGS) -c $< -o $@

build/kern_avx2.o: ext/kern_avx2.c $(HDR) | build
	$(CC) $(BASE) $(CFLAGS) $(SIMD_FLAGS_avx2) -c $< -o $@

build/kern_avx512.o: ext/kern_avx512.c $(HDR) | build
	$(CC) $(BASE) $(CFLAGS) $(SIMD_FLAGS_avx512) -c $< -o $@

OBJ = $(patsubst ext/%.c,build/%.o,$(SRC) $(SIMD))

rnn.so: $(OBJ)
	$(CC) -shared -fvisibility=hidden $(OBJ) -o $@ $(LDLIBS)

build:
	@mkdir -p build

# The kernels alone, without SQLite (tests/test_kernels.c).
KERN_OBJ = build/cells.o build/kern_scalar.o build/kern_avx2.o build/kern_avx512.o
build/test_kernels: tests/test_kernels.c $(KERN_OBJ) $(HDR)
	$(CC) $(BASE) $(CFLAGS) tests/test_kernels.c $(KERN_OBJ) -o $@ $(LDLIBS)

# Debian packages: the compiler and headers to build, the shell and gnuplot for
# the demo, python3 for the tests. python3-torch is optional: without it the PyTorch
# checks run against committed fixtures and the live ones are skipped.
DEPS = gcc libc6-dev libsqlite3-dev sqlite3 python3 gnuplot-nox
deps:
	@missing=""; for p in $(DEPS) $(EXTRA_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing"; echo "run: sudo apt-get install$$missing"; exit 1; fi; \
	fi
	@dpkg -s python3-torch >/dev/null 2>&1 || echo "note: python3-torch is not installed, so live PyTorch" \
	  "checks are skipped (committed fixtures still run); apt-get install python3-torch to run them" 

check-python:
	@test -n "$(PYTHON)" || { echo "no python3 with sqlite3 extension loading found:" \
	  "install Debian's python3 (apt-get install python3) or set PYTHON=..."; exit 1; }

demo: deps rnn.so
	rm -f demo.db
	sqlite3 demo.db < sql/demo.sql
	gnuplot sql/demo_chart.gp && echo "chart of the faults and the model's forecasts: demo.png" 

test: deps check-python rnn.so build/test_kernels
	$(PYTHON) tests/run.py

clean:
	rm -rf build rnn.so demo.db

.PHONY: all deps check-python demo test clean

# Benchmarks (see bench/bench.py): prints ratios against baselines measured in the same run.
build/bench_kernels: bench/bench_kernels.c tests/testnet.h $(KERN_OBJ) $(HDR)
	$(CC) $(BASE) -O2 bench/bench_kernels.c $(KERN_OBJ) -o $@ $(LDLIBS)

bench: deps check-python rnn.so build/bench_kernels
	$(PYTHON) bench/bench.py

.PHONY: bench

# static, install, uninstall, node-test
include tests/ecosystem.mk
# sanitize, valgrind, fuzz, oomtest, threadtest
include tests/reliability.mk
