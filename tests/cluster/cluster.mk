# tests/cluster/cluster.mk: sqlite-rnn in a dqlite cluster (README "Scaling out"). Included by the Makefile,
# whose CC, BASE, CFLAGS and LDLIBS it uses, and tests/ecosystem.mk's build/static/librnn.a.
#
#   make autoload        build/rnn_autoload.so: ext/autoload.c + librnn.a; LD_PRELOAD it into a program that
#                        links the system libsqlite3 (dqlite-demo, dqlite) and every connection has rnn_*
#   make cluster-client  build/rnn-cluster (tests/cluster/main.go, go-dqlite's driver), built offline from
#                        Debian's Go sources in /usr/share/gocode (GOPATH mode: no module download)
#   make cluster-node    build/rnn-dqlite-node (tests/cluster/node/main.go): a dqlite node with librnn.a linked in,
#                        as a Go application embedding dqlite would do it (no LD_PRELOAD, no environment)
#   make cluster-test    tests/cluster/run.sh: 3 dqlite nodes, 100,000 rows scored, leader killed, old leader
#                        restarted; prints PASS/FAIL lines and the cluster's and a local file's rows/s
#   make cluster-bench   the same, scoring 5 times on the cluster and on a local file: the best rows/s of each
#                        (the README's "Scaling out" figures)
#


# GO111MODULE=off: GOPATH mode finds github.com/canonical/go-dqlite and its dependencies in Debian's
# /usr/share/gocode; GOPROXY=off: nothing is ever fetched; GOCACHE inside build/ (clean removes it).
GO_ENV = GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= GOCACHE=$(CURDIR)/build/gocache

autoload: build/rnn_autoload.so

build/rnn_autoload.so: ext/autoload.c $(STATIC_DIR)/librnn.a | build
	$(CC) $(BASE) $(CFLAGS) -shared ext/autoload.c $(STATIC_DIR)/librnn.a -o $@ -lsqlite3 $(LDLIBS)

cluster-client: build/rnn-cluster

build/rnn-cluster: tests/cluster/main.go | build
	$(GO_ENV) go build -o $@ ./tests/cluster

cluster-node: build/rnn-dqlite-node

# go-dqlite's bindings link with -Wl,-z,now, a flag cgo accepts only when allowed
build/rnn-dqlite-node: tests/cluster/node/main.go $(STATIC_DIR)/librnn.a | build
	$(GO_ENV) CGO_LDFLAGS_ALLOW='-Wl,-z,now' go build -o $@ ./tests/cluster/node

check-cluster-deps:
	$(call check,$(ALL_DEPS))

CLUSTER_BUILD = rnn.so build/rnn_autoload.so build/rnn-cluster build/rnn-dqlite-node

cluster-test: check-cluster-deps $(CLUSTER_BUILD)
	PYTHON=$(PYTHON) tests/cluster/run.sh

cluster-bench: check-cluster-deps $(CLUSTER_BUILD)
	PYTHON=$(PYTHON) CLUSTER_REPEAT=5 tests/cluster/run.sh

.PHONY: autoload cluster-client cluster-node check-cluster-deps cluster-test cluster-bench
