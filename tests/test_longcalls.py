"""Long calls (issue 9): one rnn_eval / rnn_classify / rnn_steps / rnn_forecast call stops on sqlite3_interrupt()
and on a progress handler (ext/poll.c), rnn_steps computes rows as they are read (ext/tvf.c rule 3), and the
bidirectional passes keep only what their outputs need, within RNN_MAX_BIDIR_FLOATS (ext/cells.c, README Limits).

Stopping is shown two ways:
  - deterministically: a progress handler (every VM instruction) that returns non-zero at its 200th call. A
    statement that runs the work inside one instruction reaches that call only if the call itself runs SQLite's
    checks; otherwise it finishes with a result.
  - as the issue asks: another thread calls con.interrupt() after DELAY seconds on a call estimated (from a run
    1/SCALE as long) to take at least 10x DELAY; it must fail with "interrupted" in under half that estimate.
Peak memory is each query's peak RSS (and peak virtual size, which shows reservations) in a fresh subprocess, less
that of the same subprocess running a trivial query over the same model and sequence.
"""
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import models
from rnnlib import EXT, ROOT, Skip, connect, error_of, f32_blob, one

DELAY = 0.2
SCALE = 64


# ---- stopping: progress handlers (deterministic) ---------------------------------------------------------------

def stop_at_call(con, n):
    """A progress handler checked every instruction that asks to stop at its n-th call."""
    calls = [0]

    def handler():
        calls[0] += 1
        return 1 if calls[0] >= n else 0
    con.set_progress_handler(handler, 1)
    return calls


def progress_cases():
    lstm = models.recurrent("lstm", 1, 64, head=1, seed=3)
    bi = models.recurrent("gru", 1, 64, bidirectional=True, head=1, seed=4)
    bi2 = models.recurrent("rnn_tanh", 1, 64, layers=2, bidirectional=True, head=1, seed=5)
    cls = models.recurrent("lstm", 1, 64, head=3, seed=6)
    seq = f32_blob([0.5] * 20000)
    return [
        ("rnn_eval", "SELECT rnn_eval(?, ?)", (lstm, seq)),
        ("rnn_eval bidirectional", "SELECT rnn_eval(?, ?)", (bi, seq)),
        ("rnn_eval bidirectional 2 layers", "SELECT rnn_eval(?, ?)", (bi2, seq)),
        ("rnn_classify", "SELECT rnn_classify(?, ?)", (cls, seq)),
        ("rnn_steps bidirectional", "SELECT step FROM rnn_steps(?, ?) LIMIT 1", (bi, seq)),
        ("rnn_forecast", "SELECT output FROM rnn_forecast(?, ?, 1)", (lstm, seq)),
        ("rnn_forecast bidirectional", "SELECT output FROM rnn_forecast(?, ?, 1)", (bi, seq)),
        ("rnn_forecast bidirectional, a later row",
         "SELECT output FROM rnn_forecast(?, ?, 3) LIMIT 1 OFFSET 2", (bi, f32_blob([0.5] * 2000))),
    ]


def test_progress_handler_stops_a_call():
    for label, sql, params in progress_cases():
        def check(sql=sql, params=params):
            con = connect()
            calls = stop_at_call(con, 200)
            assert error_of(con, sql, params) == "interrupted"
            assert calls[0] >= 200
            con.set_progress_handler(None, 1)
            assert one(con, "SELECT 1") == 1   # the connection is usable afterwards
        yield label, check


def test_progress_handler_returning_zero_changes_nothing():
    """A handler that never asks to stop sees the calls' checks and leaves the results alone."""
    for label, sql, params in progress_cases():
        def check(sql=sql, params=params):
            con = connect()
            want = con.execute(sql, params).fetchall()
            calls = stop_at_call(con, 1 << 62)
            assert con.execute(sql, params).fetchall() == want
            assert calls[0] >= 200
        yield label, check


# ---- stopping: sqlite3_interrupt() from another thread -----------------------------------------------------------

def interrupt_cases():
    lstm = models.recurrent("lstm", 1, 128, head=1, seed=7)
    cls = models.recurrent("lstm", 1, 128, head=3, seed=8)
    bi = models.recurrent("lstm", 1, 128, bidirectional=True, head=1, seed=9)
    big = models.recurrent("lstm", 1, 256, bidirectional=True, head=1, seed=10)
    n, nb = 1 << 22, 1 << 18
    window = ("WITH RECURSIVE c(t) AS (SELECT 1 UNION ALL SELECT t + 1 FROM c WHERE t < %d) "
              "SELECT max(p) FROM (SELECT rnn_predict(?, t * 0.001) OVER (ORDER BY t) AS p FROM c)")
    return [
        ("rnn_eval", "SELECT rnn_eval(?, ?)", lstm, n),
        ("rnn_classify", "SELECT rnn_classify(?, ?)", cls, n),
        ("rnn_eval bidirectional", "SELECT rnn_eval(?, ?)", bi, n),
        ("rnn_steps bidirectional", "SELECT count(*) FROM rnn_steps(?, ?)", big, nb),
        ("rnn_forecast", "SELECT count(*) FROM rnn_forecast(?, ?, 1)", lstm, n),
        ("rnn_forecast bidirectional", "SELECT count(*) FROM rnn_forecast(?, ?, 1)", bi, n),
        ("window rnn_predict (already stopped promptly)", window, models.recurrent("gru", 1, 8, head=1), n),
    ]


def run_interrupted(sql, model, n):
    con = connect()
    is_window = "OVER" in sql

    def params(k):
        return (model,) if is_window else (model, f32_blob([0.5] * k))
    small = (sql % (n // SCALE)) if is_window else sql
    t0 = time.perf_counter()
    con.execute(small, params(n // SCALE)).fetchall()
    estimate = (time.perf_counter() - t0) * SCALE
    if estimate < 10 * DELAY:
        raise Skip("this machine runs the case in an estimated %.2f s, too fast to tell" % estimate)
    full = (sql % n) if is_window else sql
    args = params(n)
    timer = threading.Timer(DELAY, con.interrupt)
    t0 = time.perf_counter()
    timer.start()
    try:
        err = error_of(con, full, args)
    finally:
        timer.cancel()
    took = time.perf_counter() - t0
    assert err == "interrupted", err
    assert took < estimate / 2, "stopped after %.2f s of an estimated %.2f s" % (took, estimate)
    assert one(con, "SELECT 1") == 1


def test_interrupt_stops_a_call():
    for label, sql, model, n in interrupt_cases():
        yield label, (lambda s=sql, m=model, k=n: run_interrupted(s, m, k))


# ---- results: the two bidirectional passes agree bit for bit -----------------------------------------------------

def test_bidirectional_last_output_is_the_same_by_every_route():
    """rnn_eval (only the backward pass's first step), rnn_steps' last row (the whole backward pass) and
    rnn_forecast's first row give the same bits, for 1 to 3 layers and every cell."""
    con = connect()
    seq = json.dumps([[0.3 * ((7 * t) % 11) - 1.5, 0.1 * t] for t in range(37)])
    for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
        for layers in (1, 2, 3):
            m = models.recurrent(cell, 2, 5, layers=layers, bidirectional=True, head=2, seed=layers,
                                 proj=3 if cell == "lstm" and layers == 2 else 0)
            ev = one(con, "SELECT rnn_eval(?, ?)", (m, seq))
            last = one(con, "SELECT output FROM rnn_steps(?, ?) ORDER BY step DESC LIMIT 1", (m, seq))
            fc = one(con, "SELECT output FROM rnn_forecast(?, ?, 1)", (m, seq))
            assert ev == last == fc, (cell, layers, ev, last, fc)


def test_bidirectional_steps_recomputed_segments():
    """rnn_steps of a bidirectional model keeps the backward states of 4096-step segments and recomputes each
    segment when the rows reach it. Row t's backward half is the backward pass over steps t..T-1, i.e. row 0 of
    rnn_steps over the suffix; its forward half is row t of rnn_steps over the prefix: bit for bit."""
    con = connect()
    T = 9000
    xs = [((37 * t) % 101) / 50.0 - 1.0 for t in range(T)]
    for cell in ("lstm", "gru"):
        m = models.recurrent(cell, 1, 6, bidirectional=True, head=2, seed=15)
        rows = dict(con.execute("SELECT step, hidden FROM rnn_steps(?, ?)", (m, f32_blob(xs))).fetchall())
        for t in (0, 4095, 4096, 5000, 8191, 8192, 8999):
            suffix = one(con, "SELECT hidden FROM rnn_steps(?, ?) WHERE step = 0", (m, f32_blob(xs[t:])))
            prefix = one(con, "SELECT hidden FROM rnn_steps(?, ?) WHERE step = ?", (m, f32_blob(xs[:t + 1]), t))
            assert rows[t][24:] == suffix[24:], (cell, t)
            assert rows[t][:24] == prefix[:24], (cell, t)


def test_final_states_readout_over_segments():
    """readout final_states reads h_n = cat(forward_{T-1}, backward_0): rnn_eval (the backward pass kept as one
    state), rnn_steps' last row (after the segments were recomputed) and rnn_forecast agree bit for bit."""
    con = connect()
    xs = f32_blob([((13 * t) % 29) / 10.0 - 1.4 for t in range(9000)])
    for layers in (1, 2):
        m = models.recurrent("gru", 1, 5, layers=layers, bidirectional=True, head=1, seed=16,
                             metadata={"readout": "final_states"})
        ev = one(con, "SELECT rnn_eval(?, ?)", (m, xs))
        rows = con.execute("SELECT step, output FROM rnn_steps(?, ?) WHERE step >= 8998", (m, xs)).fetchall()
        fc = one(con, "SELECT output FROM rnn_forecast(?, ?, 1)", (m, xs))
        assert rows == [(8998, None), (8999, ev)] and fc == ev, (layers, rows, ev, fc)


def test_steps_read_out_of_order_columns():
    """Reading hidden before output, output twice, or only some rows gives the values of a full read."""
    con = connect()
    for bi in (False, True):
        m = models.recurrent("gru", 1, 4, bidirectional=bi, head=2, seed=11)
        seq = "[1, -2, 0.5, 3, 0.25]"
        full = con.execute("SELECT step, output, hidden FROM rnn_steps(?, ?)", (m, seq)).fetchall()
        other = con.execute("SELECT step, hidden, output, output FROM rnn_steps(?, ?)", (m, seq)).fetchall()
        assert [(s, o, h) for s, h, o, o2 in other] == full and all(o == o2 for _, _, o, o2 in other)
        some = con.execute("SELECT step, output FROM rnn_steps(?, ?) WHERE step IN (1, 4)", (m, seq)).fetchall()
        assert some == [(s, o) for s, o, _ in full if s in (1, 4)]


# ---- the bidirectional bound -------------------------------------------------------------------------------------

def test_bidirectional_limit_messages():
    """Refused before allocating: 2^26 floats (256 MiB) of sequence-sized working memory."""
    con = connect()
    two = models.recurrent("rnn_tanh", 1, 256, layers=2, bidirectional=True, head=1, seed=12)
    one_layer = models.recurrent("rnn_tanh", 1, 256, bidirectional=True, head=1, seed=13)
    over = f32_blob([0.5] * 131073)   # 2 layers keep 2 * 256 floats per step below the last
    assert error_of(con, "SELECT rnn_eval(?, ?)", (two, over)) == (
        "rnn_eval(): 131073 steps through this 2-layer bidirectional model need 257 MiB of working memory, "
        "more than the limit of 256 MiB")
    assert error_of(con, "SELECT rnn_classify(?, ?)", (two, over)).startswith("rnn_classify(): 131073 steps")
    assert error_of(con, "SELECT output FROM rnn_forecast(?, ?, 2)", (two, f32_blob([0.5] * 131072))) == (
        "rnn_forecast(): 131073 steps through this 2-layer bidirectional model need 257 MiB of working memory, "
        "more than the limit of 256 MiB")
    # rnn_steps keeps the layers below the last too (and O(sqrt(T)) backward states of the last)
    assert error_of(con, "SELECT count(*) FROM rnn_steps(?, ?)", (two, over)) == (
        "rnn_steps(): 131073 steps through this 2-layer bidirectional model need 261 MiB of working memory, "
        "more than the limit of 256 MiB")
    # one layer needs no per-step memory: no limit but the sequence's
    long = f32_blob([0.5] * 300000)
    assert isinstance(one(con, "SELECT rnn_eval(?, ?)", (one_layer, long)), float)
    assert one(con, "SELECT count(*) FROM rnn_steps(?, ?) WHERE step % 1000 = 0", (one_layer, long)) == 300
    # a forecast is refused for its whole horizon, before its first row
    h = models.recurrent("rnn_tanh", 1, 64, layers=2, bidirectional=True, head=1, seed=14)
    assert error_of(con, "SELECT output FROM rnn_forecast(?, '[1]', 1000000) LIMIT 1", (h,)) == (
        "rnn_forecast(): 1000000 steps through this 2-layer bidirectional model need 489 MiB of working memory, "
        "more than the limit of 256 MiB")


# ---- peak memory -------------------------------------------------------------------------------------------------

CHILD = r"""
import json, resource, sqlite3, sys
sys.path.insert(0, sys.argv[1])
import models
from rnnlib import connect, f32_blob
spec = json.loads(sys.argv[2])
m = getattr(models, spec["make"])(*spec["args"], **spec["kw"])
seq = f32_blob([0.25] * spec["T"])
con = connect()
try:
    res = repr(con.execute(spec["sql"], (m, seq)).fetchall())[:200]
except sqlite3.Error as e:
    res = "error: " + str(e)
with open("/proc/self/status") as f:
    vm = [int(ln.split()[1]) for ln in f if ln.startswith("VmPeak:")][0]
print(json.dumps({"result": res, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "vm_kb": vm}))
"""

TRIVIAL = "SELECT length(?) + length(?)"


def peak(spec, sql):
    """(result, peak RSS KiB, peak virtual KiB) of one query in a fresh Python."""
    env = dict(os.environ, RNN_EXT=EXT)
    res = subprocess.run([sys.executable, "-c", CHILD, os.path.join(ROOT, "tests"), json.dumps(dict(spec, sql=sql))],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    return out["result"], out["rss_kb"], out["vm_kb"]


# (label, model, sequence length, query, expected result, bound MiB). Figures before the fix, as deltas over the
# trivial query (this machine): rnn_steps 1030 MiB; bidirectional rnn_eval 275 MiB RSS, 530 MiB reserved;
# bidirectional rnn_steps 512 MiB RSS, 768 MiB reserved; bidirectional rnn_forecast "out of memory" after asking for 8 GiB.
MEMORY_CASES = [
    ("rnn_steps LIMIT 1, Linear(1, 65536) head, 4096 steps",
     ("recurrent", ["rnn_tanh", 1, 1], {"head": 65536}), 4096,
     "SELECT step FROM rnn_steps(?, ?) LIMIT 1", "[(0,)]", 32),
    ("rnn_steps LIMIT 1 reading output, Linear(1, 65536) head",
     ("recurrent", ["rnn_tanh", 1, 1], {"head": 65536}), 4096,
     "SELECT step, length(output) > 0 FROM rnn_steps(?, ?) LIMIT 1", "[(0, 1)]", 32),
    ("bidirectional rnn_eval, RNN(1,32), 2^20 steps",
     ("recurrent", ["rnn_tanh", 1, 32], {"bidirectional": True, "head": 1}), 1 << 20,
     "SELECT typeof(rnn_eval(?, ?))", "[('real',)]", 32),
    ("bidirectional rnn_steps, RNN(1,32), 2^20 steps, every row",
     ("recurrent", ["rnn_tanh", 1, 32], {"bidirectional": True, "head": 1}), 1 << 20,
     "SELECT count(output), count(hidden) FROM rnn_steps(?, ?)", "[(1048576, 1048576)]", 32),
    ("bidirectional rnn_forecast, RNN(1,512), horizon 1e6, LIMIT 1",
     ("recurrent", ["rnn_tanh", 1, 512], {"bidirectional": True, "head": 1}), 1,
     "SELECT typeof(output) FROM rnn_forecast(?, ?, 1000000) LIMIT 1", "[('real',)]", 32),
    ("bidirectional 2-layer rnn_eval over the limit, refused before allocating",
     ("recurrent", ["rnn_tanh", 1, 256], {"bidirectional": True, "layers": 2, "head": 1}), 131073,
     "SELECT rnn_eval(?, ?)", "error: rnn_eval(): 131073 steps", 32),
]


def test_peak_memory():
    if not os.path.exists("/proc/self/status"):
        raise Skip("no /proc: peak virtual size unknown")
    for label, (make, args, kw), T, sql, want, bound in MEMORY_CASES:
        def check(make=make, args=args, kw=kw, T=T, sql=sql, want=want, bound=bound):
            spec = {"make": make, "args": args, "kw": kw, "T": T}
            _, rss0, vm0 = peak(spec, TRIVIAL)
            res, rss, vm = peak(spec, sql)
            assert res.startswith(want), res
            assert (rss - rss0) < bound * 1024, "peak RSS grew by %d KiB" % (rss - rss0)
            assert (vm - vm0) < bound * 1024, "peak virtual size grew by %d KiB" % (vm - vm0)
        yield label, check
