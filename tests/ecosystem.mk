# tests/ecosystem.mk: the targets that fit sqlite-rnn into other hosts. Included by the Makefile, whose CC, BASE,
# CFLAGS, SRC, SIMD, SIMD_FLAGS_avx2, SIMD_FLAGS_avx512 and LDLIBS it uses.
#
#   make static        build/static/librnn.a: ext/*.c compiled with -DSQLITE_CORE, to link into an application
#                      that calls sqlite3_auto_extension(sqlite3_rnn_init); and build/static_main
#                      (tests/static_main.c), such an application, linked with it and the system SQLite
#   make install       rnn.so -> $(DESTDIR)$(PREFIX)/lib/sqlite-rnn/rnn.so, python/sqlite_rnn.py ->
#                      $(DESTDIR)$(PYTHONDIR)/, sql/rnn_models.sql -> $(DESTDIR)$(PREFIX)/share/sqlite-rnn/
#   make uninstall     removes exactly those files (and the sqlite-rnn directories when empty)
#   make node-test     tests/test_node.py: installs better-sqlite3 12 into tests/node/node_modules (when it is
#                      missing) and runs tests/node/test.mjs; not part of `make test`
#
# PREFIX defaults to /usr/local. PYTHONDIR defaults to the first directory under $(PREFIX)/lib that $(PYTHON)'s
# site module searches (site.getsitepackages(), which lists them whether they exist yet or not): for Debian's
# python3, /usr/lib/python3/dist-packages for PREFIX=/usr and /usr/local/lib/python3.N/dist-packages for
# /usr/local. For a PREFIX it does not search: $(PREFIX)/lib/python3.N/dist-packages, to be put on PYTHONPATH.
# sqlite_rnn.load() finds the .so relative to itself (../../sqlite-rnn/rnn.so), so a DESTDIR tree works too.

PREFIX    ?= /usr/local
PYTHONDIR ?= $(shell $(or $(PYTHON),python3) -c 'import site, sys; lib = "$(PREFIX)/lib/"; \
	print(next((d for d in site.getsitepackages() if d.startswith(lib)), \
	           lib + "python%d.%d/dist-packages" % sys.version_info[:2]))')
RNN_LIBDIR = $(PREFIX)/lib/sqlite-rnn
RNN_SHAREDIR = $(PREFIX)/share/sqlite-rnn
INSTALL   ?= install
AR        ?= ar

STATIC_DIR = build/static
STATIC_OBJ = $(patsubst ext/%.c,$(STATIC_DIR)/%.o,$(SRC) $(SIMD))
STATIC_HDR = $(wildcard ext/*.h)

static: $(STATIC_DIR)/librnn.a build/static_main

$(STATIC_DIR):
	@mkdir -p $(STATIC_DIR)

# -DSQLITE_CORE: the extension calls sqlite3_* directly instead of through a loaded extension's sqlite3_api
$(STATIC_DIR)/%.o: ext/%.c $(STATIC_HDR) | $(STATIC_DIR)
	$(CC) $(BASE) $(RELEASE) $(CFLAGS) -DSQLITE_CORE -c $< -o $@

$(STATIC_DIR)/kern_avx2.o: ext/kern_avx2.c $(STATIC_HDR) | $(STATIC_DIR)
	$(CC) $(BASE) $(RELEASE) $(CFLAGS) $(SIMD_FLAGS_avx2) -DSQLITE_CORE -c $< -o $@

$(STATIC_DIR)/kern_avx512.o: ext/kern_avx512.c $(STATIC_HDR) | $(STATIC_DIR)
	$(CC) $(BASE) $(RELEASE) $(CFLAGS) $(SIMD_FLAGS_avx512) -DSQLITE_CORE -c $< -o $@

$(STATIC_DIR)/librnn.a: $(STATIC_OBJ)
	rm -f $@
	$(AR) rcs $@ $(STATIC_OBJ)

build/static_main: tests/static_main.c $(STATIC_DIR)/librnn.a
	$(CC) $(BASE) $(CFLAGS) tests/static_main.c $(STATIC_DIR)/librnn.a -o $@ -lsqlite3 $(LDLIBS)

install: rnn.so
	$(INSTALL) -d $(DESTDIR)$(RNN_LIBDIR) $(DESTDIR)$(PYTHONDIR) $(DESTDIR)$(RNN_SHAREDIR)
	$(INSTALL) -m 0644 rnn.so $(DESTDIR)$(RNN_LIBDIR)/rnn.so
	$(INSTALL) -m 0644 python/sqlite_rnn.py $(DESTDIR)$(PYTHONDIR)/sqlite_rnn.py
	$(INSTALL) -m 0644 sql/rnn_models.sql $(DESTDIR)$(RNN_SHAREDIR)/rnn_models.sql

uninstall:
	rm -f $(DESTDIR)$(RNN_LIBDIR)/rnn.so $(DESTDIR)$(PYTHONDIR)/sqlite_rnn.py \
	      $(DESTDIR)$(PYTHONDIR)/__pycache__/sqlite_rnn.*.pyc $(DESTDIR)$(RNN_SHAREDIR)/rnn_models.sql
	-rmdir $(DESTDIR)$(RNN_LIBDIR) $(DESTDIR)$(RNN_SHAREDIR) 2>/dev/null

# Not part of `make test` (npm compiles better-sqlite3 the first time, about 80 s); CI runs it.
node-test: check-python rnn.so
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  { echo "node-test needs node and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	$(PYTHON) -m pytest -o timeout=2400 tests/test_node.py

.PHONY: static install uninstall node-test
