"""rnn_train on every core (ext/train_pool.c, ext/grad.c rule 5), issue 14.

  - the trained BLOB and every epoch's losses are the same bytes for SQLITE_RNN_THREADS = 1, 2, 3 and 8: a GRU, an
    LSTM with proj_size, the tutorial's seed cell ('next'), and a GRU classifier; each run in a child process with
    the variable set;
  - the pool really runs: during a call with SQLITE_RNN_THREADS=n the process has n - 1 more threads, and none
    after the call;
  - an interrupt stops a threaded call as it stops a single-threaded one.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs in the child: trains the case named by argv[1], prints one JSON line.
CHILD = r'''
import hashlib, json, math, os, sqlite3, sys
sys.path.insert(0, %r)
import models
from rnnlib import connect, one
case = sys.argv[1]
con = connect()
con.execute("CREATE TABLE s(id, t, x, label)")
rows = []
for k in range(20):
    lab = k %% 3
    rows += [(k, t, math.sin(0.3 * t + k) + 0.1 * (lab - 1) * t, lab) for t in range(40)]
con.executemany("INSERT INTO s VALUES (?, ?, ?, ?)", rows)
models.registry(con)
specs = {
    "gru": {"cell": "gru", "input_size": 1, "hidden_size": 7, "num_layers": 2, "output_size": 1, "seed": 3},
    "lstm_proj": {"cell": "lstm", "input_size": 1, "hidden_size": 6, "proj_size": 3, "num_layers": 2,
                  "output_size": 1, "seed": 4},
    "seed": {"cell": "seed", "input_size": 1, "hidden_size": 8, "output_size": 1, "seed": 5},
    "classify": {"cell": "gru", "input_size": 1, "hidden_size": 5, "output_size": 3, "seed": 6},
}
opts = {"epochs": 3, "lr": 0.02, "batch_size": 13, "window": 9, "seed": 7, "clip": 1.0, "val_fraction": 0.25}
query = "SELECT id, t, x FROM s"
if case == "classify":
    opts = {"task": "classify", "epochs": 3, "lr": 0.05, "batch_size": 11, "seed": 7, "val_fraction": 0.25}
    query = "SELECT id, t, x, label FROM s"
init = one(con, "SELECT rnn_init(?)", (json.dumps(specs[case]),))
before = len(os.listdir("/proc/self/task"))
during = []
con.set_progress_handler(lambda: during.append(len(os.listdir("/proc/self/task"))) and 0, 1)
out = con.execute("SELECT train_loss, val_loss, model FROM rnn_train(?, ?, ?)",
                  (init, query, json.dumps(opts))).fetchall()
con.set_progress_handler(None, 0)
# pthread_join returns once a worker has run its last instruction; the kernel
# drops its /proc/self/task entry a moment later, so wait (up to 5 s) for that.
import time
for _ in range(500):
    after = len(os.listdir("/proc/self/task"))
    if after <= before:
        break
    time.sleep(0.01)
print(json.dumps({"losses": [[r[0].hex(), r[1].hex()] for r in out],
                  "blob": hashlib.sha256(out[-1][2]).hexdigest(),
                  "extra_threads": max(during) - before, "after": after - before}))
''' % HERE

INTERRUPT = r'''
import json, math, sqlite3, sys
sys.path.insert(0, %r)
import models
from rnnlib import connect, one
con = connect()
con.execute("CREATE TABLE s(id, t, v)")
con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(k, t, math.sin(0.3 * t + k)) for k in range(16) for t in range(60)])
models.registry(con)
con.execute("INSERT INTO rnn_models VALUES ('g', rnn_init(?))",
            (json.dumps({"cell": "gru", "input_size": 1, "hidden_size": 6, "output_size": 1, "seed": 3}),))
stop = [0]
con.set_progress_handler(lambda: stop[0], 1)
seen = []
try:
    for r in con.execute("SELECT epoch FROM rnn_train('g', 'SELECT id, t, v FROM s', ?)",
                         (json.dumps({"epochs": 1000, "lr": 0.01, "window": 10, "val_fraction": 0,
                                      "save_as": "kept", "keep_on_interrupt": True}),)):
        seen.append(r[0])
        stop[0] = len(seen) >= 2
    print("not interrupted")
except sqlite3.OperationalError as e:
    stop[0] = 0
    n = one(con, "SELECT count(*) FROM rnn_models WHERE name = 'kept'")
    print(json.dumps([str(e), len(seen), n]))
''' % HERE


def _run(script, threads, *args):
    env = dict(os.environ, SQLITE_RNN_THREADS=str(threads))
    p = subprocess.run([sys.executable, "-c", script] + list(args), env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def test_same_bytes_any_threads():
    for case in ("gru", "lstm_proj", "seed", "classify"):
        def check(case=case):
            runs = {n: json.loads(_run(CHILD, n, case)) for n in (1, 2, 3, 8)}
            for n, r in runs.items():
                assert r["extra_threads"] == n - 1, (n, r["extra_threads"])
                assert r["after"] == 0, (n, r["after"])
                assert r["losses"] == runs[1]["losses"], (case, n)
                assert r["blob"] == runs[1]["blob"], (case, n)
            assert len(runs[1]["losses"]) == 3
        yield case, check


def test_interrupt_with_threads():
    for n in (1, 3):
        def check(n=n):
            assert json.loads(_run(INTERRUPT, n)) == ["interrupted", 2, 1]
        yield "threads=%d" % n, check
