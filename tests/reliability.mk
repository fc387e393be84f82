# tests/reliability.mk: sanitizers, valgrind, fuzzing, out-of-memory injection and
# threads (issue 5). Included by the main Makefile, which defines CC, CFLAGS, BASE,
# SRC, SIMD, SIMD_FLAGS_avx2/avx512, LDLIBS, PYTHON and the rnn.so target.
# Until it does, run these as: make -f Makefile -f tests/reliability.mk <target>
#
#   make sanitize     the whole Python suite against build/asan/rnn.so (gcc ASan+UBSan)
#   make valgrind     the SQL of the SQL-level tests replayed under valgrind memcheck
#   make fuzz         each libFuzzer target for FUZZ_SECONDS (default 60) seconds
#   make oomtest      every allocation failed in turn over representative statements
#   make threadtest   8 threads scoring at once, under ThreadSanitizer
#
# Each variant compiles ext/*.c into its own directory under build/ with the
# flags of the normal build plus its own; the SIMD files keep their -m flags.
# The clang variants add -Wno-error: a warning only clang-14 sees must not hide
# the finding the target exists for (the normal build keeps -Werror).

REL_SAVED_GOAL := $(.DEFAULT_GOAL)

REL_HDR    = $(wildcard ext/*.h) tests/st_models.h
REL_CLANG ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_TARGETS  = fuzz_model fuzz_sql fuzz_registry

# float-cast-overflow is not part of `undefined`: it catches a NaN or an out-of-range
# float converted to an integer (undefined behaviour), e.g. a NaN reaching exp's 2^n.
SAN_FLAGS   = -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow \
              -fno-omit-frame-pointer
REL_LIBS = -lsqlite3 $(LDLIBS)

# $(call rel_variant,DIR,COMPILER-VAR,FLAGS-VAR): rules for DIR/*.o from ext/*.c.
define rel_variant
$(1)/%.o: ext/%.c $$(REL_HDR)
	@mkdir -p $(1)
	$$($(2)) $$(BASE) $$(CFLAGS) $$($(3)) -c $$< -o $$@
$(1)/kern_avx2.o: ext/kern_avx2.c $$(REL_HDR)
	@mkdir -p $(1)
	$$($(2)) $$(BASE) $$(CFLAGS) $$($(3)) $$(SIMD_FLAGS_avx2) -c $$< -o $$@
$(1)/kern_avx512.o: ext/kern_avx512.c $$(REL_HDR)
	@mkdir -p $(1)
	$$($(2)) $$(BASE) $$(CFLAGS) $$($(3)) $$(SIMD_FLAGS_avx512) -c $$< -o $$@
endef
rel_objs = $(patsubst ext/%.c,$(1)/%.o,$(SRC) $(SIMD))

# ---- sanitize: the Python suite against an ASan+UBSan rnn.so ----------------
ASAN_CC     = $(CC)
ASAN_FLAGS  = $(SAN_FLAGS)
$(eval $(call rel_variant,build/asan,ASAN_CC,ASAN_FLAGS))

build/asan/rnn.so: $(call rel_objs,build/asan)
	$(CC) -shared -fvisibility=hidden $(SAN_FLAGS) $^ -o $@ $(LDLIBS)

# Python is not instrumented, so the ASan runtime is preloaded; its own leaks are
# not ours (detect_leaks=0). Any sanitizer report fails the target, even one from
# a subprocess or one the harness caught as a test failure.
sanitize: check-python rnn.so build/test_kernels build/asan/rnn.so
	@rt=$$($(CC) -print-file-name=libasan.so); test -f "$$rt" || { echo "no libasan for $(CC)"; exit 1; }; \
	{ LD_PRELOAD="$$rt" RNN_EXT=$(CURDIR)/build/asan/rnn RNN_SANITIZE=1 \
	  ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(PYTHON) -m pytest -p no:cacheprovider; echo $$? > build/asan/test.rc; } 2>&1 | tee build/asan/test.log; \
	if grep -E "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer" build/asan/test.log; then \
	  echo "sanitize: sanitizer reports above (full log: build/asan/test.log)"; exit 1; fi; \
	test "$$(cat build/asan/test.rc)" = 0

# ---- valgrind: the SQL of the SQL-level tests, replayed under memcheck ------
# tests/vg_record.py runs the test modules below with the normal rnn.so and records
# every statement each connection executes (parameters expanded); build/vg_replay
# (a plain C host) replays them in order, each connection loading ./rnn.so.
VG_TESTS = tests/test_errors.py tests/test_window.py tests/test_cache.py tests/test_eval.py \
           tests/test_sequences.py tests/test_api.py tests/test_conformance.py tests/test_demo.py \
           tests/test_state.py tests/test_readout.py tests/test_metadata.py tests/test_messages.py
VALGRIND = valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
           --show-leak-kinds=definite --quiet

build/vg_replay: tests/vg_replay.c
	@mkdir -p build
	$(CC) $(BASE) $(CFLAGS) $< -o $@ -lsqlite3

valgrind: check-python rnn.so build/vg_replay
	@command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
	@mkdir -p build/valgrind
	$(PYTHON) tests/vg_record.py build/valgrind/replay.sql $(VG_TESTS)
	$(VALGRIND) build/vg_replay build/valgrind/replay.sql ./rnn build/valgrind

# ---- oomtest: out-of-memory injection (static link, ASan+UBSan) -------------
OOM_CC    = $(CC)
OOM_FLAGS = $(SAN_FLAGS) -DSQLITE_CORE
$(eval $(call rel_variant,build/oom,OOM_CC,OOM_FLAGS))

build/oomtest: tests/oom.c $(call rel_objs,build/oom) $(REL_HDR)
	$(CC) $(BASE) $(CFLAGS) $(OOM_FLAGS) tests/oom.c $(call rel_objs,build/oom) -o $@ $(REL_LIBS)

oomtest: build/oomtest
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 build/oomtest

# ---- threadtest: 8 connections scoring at once, ThreadSanitizer (clang) -----
TSAN_CC    = $(REL_CLANG)
TSAN_FLAGS = -fsanitize=thread -DSQLITE_CORE -Wno-error
$(eval $(call rel_variant,build/tsan,TSAN_CC,TSAN_FLAGS))

build/threadtest: tests/threads.c $(call rel_objs,build/tsan) $(REL_HDR)
	$(REL_CLANG) $(BASE) $(CFLAGS) $(TSAN_FLAGS) tests/threads.c $(call rel_objs,build/tsan) -o $@ \
	  $(REL_LIBS) -lpthread

threadtest: build/threadtest
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build/threadtest build/threads.db

# ---- fuzz: libFuzzer targets (clang-14) -------------------------------------
FUZZ_FLAGS = -fsanitize=fuzzer-no-link,address,undefined,float-cast-overflow \
             -fno-sanitize-recover=undefined,float-cast-overflow \
             -fno-omit-frame-pointer -DSQLITE_CORE -Wno-error
$(eval $(call rel_variant,build/fuzz,REL_CLANG,FUZZ_FLAGS))

build/fuzz/%: tests/fuzz/%.c $(call rel_objs,build/fuzz) $(REL_HDR)
	$(REL_CLANG) $(BASE) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -Itests $< $(call rel_objs,build/fuzz) \
	  -o $@ $(REL_LIBS)

fuzz-build: $(addprefix build/fuzz/,$(FUZZ_TARGETS))

# New inputs go to build/fuzz/corpus/<target> (kept between runs); the committed
# seeds in tests/fuzz/corpus/<target> are read only. A crash leaves its input in
# build/fuzz/artifacts/ and fails the target.
fuzz: fuzz-build
	@fail=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t build/fuzz/artifacts; \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  if build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
	       -dict=tests/fuzz/safetensors.dict -artifact_prefix=build/fuzz/artifacts/$$t- -print_final_stats=1 \
	       build/fuzz/corpus/$$t tests/fuzz/corpus/$$t > build/fuzz/$$t.log 2>&1; then \
	    grep -E "^Done [0-9]+ runs" build/fuzz/$$t.log; grep -E "DONE|INITED" build/fuzz/$$t.log | tail -1; \
	  else \
	    grep -B2 -A40 -E "^==[0-9]+==|invariant broken|runtime error" build/fuzz/$$t.log | head -80; \
	    echo "fuzz: $$t found a problem: input in build/fuzz/artifacts/, log build/fuzz/$$t.log"; fail="$$fail $$t"; \
	  fi; \
	done; test -z "$$fail" || { echo "fuzz: failed:$$fail"; exit 1; }

fuzz-corpus:
	$(PYTHON) tests/fuzz/make_corpus.py

.PHONY: sanitize valgrind oomtest threadtest fuzz fuzz-build fuzz-corpus

.DEFAULT_GOAL := $(REL_SAVED_GOAL)
