#!/usr/bin/env bash
# tests/cluster/run.sh: sqlite-rnn inside a 3-node dqlite cluster (`make cluster-test` builds what it needs and
# runs it from the repository root).
#
# Starts three dqlite nodes on 127.0.0.1 (free ports, a temporary directory each): nodes 1 and 2 are Debian's
# dqlite-demo with the extension preloaded (build/rnn_autoload.so, GO_DQLITE_MULTITHREAD=1: see ext/autoload.c),
# node 3 is build/rnn-dqlite-node (tests/cluster/node/main.go), a Go program with the extension linked in. Each
# is forced onto another CPU path (SQLITE_RNN_KERNEL: node 1 the fastest this CPU has, node 2 avx2, node 3
# scalar). Through the cluster (build/rnn-cluster, go-dqlite's database/sql driver; tests/cluster/workload.sql)
# it creates rnn_models and readings, stores sql/demo_model.safetensors and ROWS readings, scores them with
# rnn_predict() OVER on the leader, then INSERT INTO pred SELECT ... rnn_predict() OVER. Then:
#   1. kills the leader (SIGKILL, by pid); the new leader must return every pred row, bit for bit (a SHA-256 of
#      the ids and float64 bits), and recompute the very same bits itself on its own CPU path;
#   2. the new leader rewrites pred while the old node is down;
#   3. restarts the old node, makes it the leader again, and it must hold the rewritten rows bit for bit;
#   4. makes the third node the leader: it too must recompute the same bits (so every node's CPU path has).
# It also asks the dqlite shell (`dqlite -s ADDRESS rnn "SQL"`) for rnn_version(), the path README shows users,
# and scores the same rows in a local file (tests/cluster/local.py) for the throughput comparison.
#
# Prints one "PASS: ..." or "FAIL: ..." line per check and "PASS: cluster-test" or "FAIL: cluster-test" last;
# exits 0 only if every check passed, 2 when a dqlite program is missing. Every process it starts it stops by
# pid (also on failure or interruption); every wait has a deadline, cut short by the whole run's: CLUSTER_TIMEOUT
# seconds (default 240). ROWS: CLUSTER_ROWS (default 100000). CLUSTER_REPEAT (default 1) scores that many times
# on the first leader and on the local file, and the throughput lines at the end give the best of them.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ROWS=${CLUSTER_ROWS:-100000}
TOTAL=${CLUSTER_TIMEOUT:-240}
REPEAT=${CLUSTER_REPEAT:-1}   # scoring runs, on the cluster and on the local file (make cluster-bench: 5)
AUTOLOAD=$ROOT/build/rnn_autoload.so
CLIENT=$ROOT/build/rnn-cluster
NODE=$ROOT/build/rnn-dqlite-node
MODEL=$ROOT/sql/demo_model.safetensors
PYTHON=${PYTHON:-/usr/bin/python3}
KERNELS=("" avx2 scalar)     # node 1: the extension's own choice

for tool in dqlite dqlite-demo; do
  command -v $tool >/dev/null || { echo "FAIL: cluster-test: $tool not installed (Debian package go-dqlite)"; exit 2; }
done
for f in "$AUTOLOAD" "$CLIENT" "$NODE"; do
  [ -x "$f" ] || [ -f "$f" ] || { echo "FAIL: cluster-test: $f missing (make cluster-test builds it)"; exit 2; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rnn-cluster.XXXXXX")
PIDS=()           # every process started here, stopped by cleanup
FAILED=0
START=$SECONDS

cleanup() {
  local pid alive
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 50); do     # up to 5 s for all of them to stop, then SIGKILL
    alive=""
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  if [ "$FAILED" = 1 ] && [ -n "${CLUSTER_KEEP_LOGS:-}" ]; then echo "logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "FAIL: cluster-test: interrupted"; FAILED=1; exit 1' INT TERM HUP


fail() {
  local i
  for i in 1 2 3; do [ -s "$TMP/node$i.log" ] && { echo "--- node $i log (last lines)"; tail -n 5 "$TMP/node$i.log"; }; done
  echo "FAIL: $*"
  echo "FAIL: cluster-test"
  FAILED=1
  exit 1
}
pass() { echo "PASS: $*"; }

# bound SECONDS: sets BOUND to SECONDS, or less if the whole run's deadline (TOTAL seconds from the start) comes
# first; false once that deadline has passed. Every wait below goes through it, so the run never outlasts TOTAL.
bound() {
  BOUND=$((START + TOTAL - SECONDS))
  [ "$BOUND" -gt "$1" ] && BOUND=$1
  [ "$BOUND" -gt 0 ]
}

# client SECONDS ARGS...: build/rnn-cluster against all three nodes, bounded twice (its own deadline, then timeout).
client() {
  bound "$1" || { echo "over the whole run's ${TOTAL} s"; return 1; }
  shift
  local secs=$BOUND
  timeout -k 2 $((secs + 5)) "$CLIENT" -s "$SERVERS" -db rnn -sql "$ROOT/tests/cluster/workload.sql" \
    -timeout "${secs}s" "$@"
}

mapfile -t PORTS < <(timeout 10 "$CLIENT" ports 6) || true
[ "${#PORTS[@]}" = 6 ] || fail "no 6 free ports on 127.0.0.1"
ADDR=("127.0.0.1:${PORTS[0]}" "127.0.0.1:${PORTS[1]}" "127.0.0.1:${PORTS[2]}")
SERVERS="${ADDR[0]},${ADDR[1]},${ADDR[2]}"
NODEPID=("" "" "")

# start_node I: node I (0-based) in the background, with the extension; node 0 bootstraps, the others join it.
start_node() {
  local i=$1 join=()
  [ "$i" -gt 0 ] && join=(--join "${ADDR[0]}")
  if [ "$i" = 2 ]; then
    SQLITE_RNN_KERNEL="${KERNELS[$i]}" "$NODE" --db "${ADDR[$i]}" -D "$TMP/node$((i + 1))" "${join[@]}" \
      >>"$TMP/node$((i + 1)).log" 2>&1 &
  else
    GO_DQLITE_MULTITHREAD=1 LD_PRELOAD="$AUTOLOAD" SQLITE_RNN_KERNEL="${KERNELS[$i]}" \
      dqlite-demo --api "127.0.0.1:${PORTS[$((i + 3))]}" --db "${ADDR[$i]}" -D "$TMP/node$((i + 1))" "${join[@]}" \
      >>"$TMP/node$((i + 1)).log" 2>&1 &
  fi
  NODEPID[$i]=$!
  PIDS+=($!)
}

# node_of ADDRESS: the index of the node listening there
node_of() { local i; for i in 0 1 2; do [ "${ADDR[$i]}" = "$1" ] && echo $i; done; }

# field NAME LINE: the word after NAME in LINE
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) { print $(i + 1); exit } }' <<<"$2"; }

# same_rows NAME LINE WHO: LINE (a client's answer) gives $ROWS rows after NAME and sha256 $HASH, or fails
same_rows() {
  [ "$(field "$1" "$2") $(field sha256 "$2")" = "$ROWS $HASH" ] ||
    fail "$3 gave '$2', expected $ROWS rows ($1) with sha256 $HASH"
}

# --- the cluster
start_node 0
client 20 wait 1 >/dev/null || fail "node 1 did not become leader in time"
start_node 1
start_node 2
LEADER=$(client 60 wait 3) || fail "no 3 voters in time"
pass "3 dqlite nodes ($SERVERS), 3 voters, leader $LEADER"

# --- the data, through the cluster
out=$(client 120 setup "$MODEL" "$ROWS") || fail "setup: $out"
[ "$out" = "readings $ROWS" ] || fail "setup inserted '$out', expected 'readings $ROWS'"
pass "rnn_models, readings and pred created, the model and $ROWS readings inserted through the cluster"

# --- the dqlite shell, as a user would type it
bound 20 || fail "over the whole run's ${TOTAL} s"
shell=$(timeout "$BOUND" dqlite -s "$SERVERS" rnn "SELECT rnn_version(), count(*) FROM readings" 2>&1)
[ "$shell" = "0.1.0|$ROWS" ] || fail "dqlite shell printed '$shell', expected '0.1.0|$ROWS'"
pass "dqlite shell: SELECT rnn_version(), count(*) FROM readings -> $shell"

# --- scoring on the leader
CLUSTER_RUNS=""
for _ in $(seq "$REPEAT"); do
  score=$(client 120 score) || fail "score: $score"
  echo "$score" | sed 's/^/  cluster /'
  HASH=${HASH:-$(field sha256 "$score")}
  [ "$(field sha256 "$score")" = "$HASH" ] || fail "scoring again gave other bits: $score"
  CLUSTER_RUNS+="$score"$'\n'
done
[ "$(field insert "$score")" = "$ROWS" ] || fail "INSERT INTO pred SELECT ... wrote $(field insert "$score") rows"
out=$(client 60 hash) || fail "hash: $out"
[ "$out" = "pred $ROWS rows sha256 $HASH kernel $(field kernel "$out")" ] ||
  fail "pred on the leader ($out) differs from the window query's rows ($HASH)"
K0=$(field kernel "$out")
pass "leader $LEADER ($K0): rnn_predict() OVER and INSERT INTO pred SELECT give the same $ROWS rows, sha256 $HASH"

# --- kill the leader
OLD=$(node_of "$LEADER")
[ -n "$OLD" ] || fail "leader $LEADER is none of $SERVERS"
kill -KILL "${NODEPID[$OLD]}"
wait "${NODEPID[$OLD]}" 2>/dev/null
# reaped: its pid may be reused by now, so cleanup must not signal it
for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "${NODEPID[$OLD]}" ] && unset "PIDS[$i]"; done
pass "killed the leader $LEADER (pid ${NODEPID[$OLD]}, SIGKILL)"
NEW=$(client 60 wait 3) || fail "no new leader in time after killing $LEADER"
[ "$NEW" != "$LEADER" ] || fail "the killed node $LEADER is still reported leader"
out=$(client 60 hash) || fail "hash on the new leader: $out"
same_rows pred "$out" "new leader $NEW"
pass "new leader $NEW returns every pred row, byte-identical ($out)"
out=$(client 60 live) || fail "live on the new leader: $out"
same_rows live "$out" "new leader $NEW, recomputing,"
pass "new leader $NEW recomputes the same bits on its own CPU path ($out)"
score=$(client 120 score) || fail "score on the new leader: $score"
same_rows insert "$score" "rescoring on the new leader"
pass "new leader rewrote pred ($ROWS rows) while $LEADER was down"

# lead ADDRESS: makes the node at ADDRESS the leader (retried until it has caught up), or fails.
lead() {
  local _
  for _ in $(seq 60); do
    bound 1 || break
    if client 10 transfer "$1" >/dev/null 2>&1 && [ "$(client 10 leader 2>/dev/null)" = "$1" ]; then return 0; fi
    sleep 0.5
  done
  fail "node $1 did not take leadership in time"
}

# --- restart the old leader: it must catch up on the rewrite
start_node "$OLD"
lead "$LEADER"
out=$(client 60 hash) || fail "hash on the restarted node: $out"
same_rows pred "$out" "restarted node $LEADER"
pass "restarted node $LEADER (pid ${NODEPID[$OLD]}) caught up and, as leader, returns the same rows ($out)"

# --- the third node leads too: all three CPU paths have computed the same bits
for i in 0 1 2; do
  [ "${ADDR[$i]}" = "$LEADER" ] || [ "${ADDR[$i]}" = "$NEW" ] || THIRD=${ADDR[$i]}
done
lead "$THIRD"
out=$(client 60 live) || fail "live on $THIRD: $out"
same_rows live "$out" "node $THIRD, recomputing,"
pass "node $THIRD, as leader, recomputes the same bits on its own CPU path ($out)"

# --- the same workload on a local file, for the throughput comparison
bound 120 || fail "over the whole run's ${TOTAL} s"
local=$(timeout "$BOUND" "$PYTHON" tests/cluster/local.py "$MODEL" "$ROWS" "$REPEAT") || fail "local.py: $local"
echo "$local" | sed 's/^/  local   /'
[ "$(grep '^select' <<<"$local" | awk '{ print $NF }' | sort -u)" = "$HASH" ] ||
  fail "a local file scores other bits ($local) than the cluster ($HASH)"
pass "a local file with rnn.so gives the same sha256"

# best STATEMENT LINES: the highest rows/s of the lines for STATEMENT (select or insert)
best() { awk -v s="$1" '$1 == s { for (i = 1; i < NF; i++) if ($(i + 1) == "rows/s" && $i > b) b = $i } END { print b }' <<<"$2"; }
echo "throughput, best of $REPEAT, $ROWS rows, leader kernel $K0, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')):"
echo "  3-node dqlite cluster: SELECT $(best select "$CLUSTER_RUNS") rows/s, INSERT INTO pred SELECT $(best insert "$CLUSTER_RUNS") rows/s"
echo "  local file (WAL):      SELECT $(best select "$local") rows/s, INSERT INTO pred SELECT $(best insert "$local") rows/s"

echo "cluster-test took $((SECONDS - START)) s"
pass "cluster-test"
