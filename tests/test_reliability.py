"""Reliability (issue 5): the quick parts of tests/reliability.mk run through the harness (out-of-memory injection,
8 threads under ThreadSanitizer), nothing lost when an INSERT ... SELECT fails half way, the registry recursion
guard, closing after a lookup, and the size limits (ext/model.h, ext/sequence.h, SQLITE_LIMIT_LENGTH).

The long runs are make targets: `make sanitize`, `make valgrind`, `make fuzz` (see tests/reliability.mk)."""
import glob
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import tempfile

import models
import st
from rnnlib import ROOT, Skip, connect, error_of, one

F = "F32"


# ---- the C hosts, through make ---------------------------------------------------------------------------------

def make(target):
    """Runs a target of tests/reliability.mk; returns its output. The sanitizer environment of `make sanitize`
    (LD_PRELOAD of the ASan runtime, ASAN_OPTIONS) is not passed on: the hosts bring their own runtimes."""
    if not shutil.which("make"):
        raise Skip("make is not installed")
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        included = "tests/reliability.mk" in f.read()
    files = [] if included else ["-f", "Makefile", "-f", "tests/reliability.mk"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "RNN_EXT")}
    env.pop("MAKEFLAGS", None)
    env.pop("MFLAGS", None)
    res = subprocess.run(["make", "--no-print-directory"] + files + [target], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, "make %s failed (%d):\n%s" % (target, res.returncode, out[-6000:])
    return out


def have_sanitizer_runtime(cc, lib):
    if not shutil.which(cc):
        return False
    res = subprocess.run([cc, "-print-file-name=" + lib], capture_output=True, text=True)
    return res.returncode == 0 and os.path.isabs(res.stdout.strip()) and os.path.exists(res.stdout.strip())


def last_line(out):
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def test_out_of_memory_injection():
    """tests/oom.c: every allocation failed in turn, transient and persistent, over every function and frame."""
    if not have_sanitizer_runtime(os.environ.get("CC", "cc"), "libasan.so"):
        raise Skip("no C compiler with AddressSanitizer (gcc and libasan)")
    if not os.path.exists("/usr/include/sqlite3.h"):
        raise Skip("libsqlite3-dev is not installed")
    out = make("oomtest")
    line = last_line(out)
    assert line.endswith(" 0 failed") and "FAIL" not in out, out[-6000:]
    assert int(line.split()[0]) > 10000, line   # the loop really ran


def test_threads_under_tsan():
    """tests/threads.c: 8 connections scoring at once under ThreadSanitizer, results equal to one thread's."""
    if not shutil.which("clang-14"):
        raise Skip("clang-14 is not installed (ThreadSanitizer)")
    res = subprocess.run(["clang-14", "-print-resource-dir"], capture_output=True, text=True)
    if not glob.glob(os.path.join(res.stdout.strip(), "lib", "*", "libclang_rt.tsan*")):
        raise Skip("the ThreadSanitizer runtime is not installed (apt-get install libclang-rt-14-dev)")
    if not os.path.exists("/usr/include/sqlite3.h"):
        raise Skip("libsqlite3-dev is not installed")
    out = make("threadtest")
    assert last_line(out).endswith(" 0 failed") and "WARNING: ThreadSanitizer" not in out, out[-6000:]


# ---- nothing lost ----------------------------------------------------------------------------------------------

def test_nothing_lost():
    """An INSERT ... SELECT rnn_predict(...) that fails at row 500,000 of 1,000,000 leaves the target table exactly
    as it was, in autocommit mode and inside an explicit transaction (statement rollback)."""
    with tempfile.TemporaryDirectory() as d:
        con = connect(os.path.join(d, "lost.db"))
        models.registry(con, m=models.recurrent("gru", 1, 3, head=1, seed=5))
        con.execute("CREATE TABLE series(id INTEGER PRIMARY KEY, t INTEGER, v)")
        con.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
                    "INSERT INTO series SELECT i, i, CASE WHEN i = 500000 THEN 'oops' ELSE (i % 100) * 0.01 END "
                    "FROM n")
        con.execute("CREATE TABLE pred(id INTEGER PRIMARY KEY, t INTEGER, p REAL)")
        con.execute("INSERT INTO pred SELECT id + 2000000, t, rnn_predict('m', v) OVER (ORDER BY t) FROM series "
                    "WHERE id <= 1000")
        before = con.execute("SELECT * FROM pred ORDER BY id").fetchall()
        assert len(before) == 1000
        insert = "INSERT INTO pred SELECT id, t, rnn_predict('m', v) OVER (ORDER BY t) FROM series"
        want = "rnn_predict(): argument 2 (feature 1) is TEXT, expected a number"
        assert error_of(con, insert) == want
        assert con.execute("SELECT * FROM pred ORDER BY id").fetchall() == before
        # inside a transaction: the failed statement alone is undone
        con.execute("BEGIN")
        con.execute("INSERT INTO pred VALUES (3000000, 1, 0.5)")
        assert error_of(con, insert) == want
        assert con.in_transaction
        con.execute("COMMIT")
        assert con.execute("SELECT * FROM pred ORDER BY id").fetchall() == before + [(3000000, 1, 0.5)]
        assert one(con, "PRAGMA integrity_check") == "ok"


# ---- nested SQL --------------------------------------------------------------------------------------------------

DEPTH = "model lookup nested too deeply (rnn_models must be a plain table)"


def test_recursion_guard():
    """rnn_models as a view whose lookup calls the functions again: the depth error (ext/registry.c rule 4),
    wrapped by each level, never a crash; the connection keeps working."""
    views = [
        ("rnn_info", "CASE WHEN rnn_info('m') IS NULL THEN x'00' ELSE x'00' END", "SELECT rnn_info('m')"),
        ("rnn_eval", "rnn_eval('m', '[1]')", "SELECT rnn_predict('m', 1.0) OVER (ORDER BY 1)"),
        ("rnn_hidden", "rnn_hidden('m', 1.0) OVER ()", "SELECT rnn_predict('m', 1.0)"),
        ("rnn_steps", "(SELECT hidden FROM rnn_steps('m', '[1]'))", "SELECT rnn_eval('m', '[1]')"),
        ("rnn_forecast", "(SELECT output FROM rnn_forecast('m', '[1]', 2))", "SELECT * FROM rnn_steps('m', '[1]')"),
    ]
    con = connect()
    for inner, expr, query in views:
        con.execute("DROP VIEW IF EXISTS rnn_models")
        con.execute("CREATE VIEW rnn_models(name, model) AS SELECT 'm', %s" % expr)
        msg = error_of(con, query)
        outer = query.split("(")[0].split()[-1]
        assert msg.startswith(outer + "(): cannot read rnn_models: "), msg
        assert msg.endswith("%s(): %s" % (inner, DEPTH)), msg
        assert one(con, "SELECT rnn_version()") == "0.1.0"
    # under trusted_schema=OFF SQLite refuses the functions inside the view before any recursion
    con.execute("PRAGMA trusted_schema = OFF")
    assert error_of(con, "SELECT rnn_info('m')") == \
        'rnn_info(): cannot read rnn_models(name, model): unsafe use of virtual table "rnn_forecast"'
    # a plain table again: everything works
    con.execute("PRAGMA trusted_schema = ON")
    con.execute("DROP VIEW rnn_models")
    models.registry(con, m=models.recurrent("gru", 1, 2, head=1))
    assert isinstance(one(con, "SELECT rnn_eval('m', '[1, 2]')"), float)


def test_close_after_lookup():
    """No statement is kept across calls: a connection that used a model by name closes and reopens cleanly
    (tests/oom.c and tests/vg_replay.c check that sqlite3_close itself returns SQLITE_OK)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "close.db")
        con = connect(path)
        models.registry(con, m=models.recurrent("lstm", 1, 3, head=1))
        a = one(con, "SELECT rnn_predict('m', x) FROM (SELECT 1.0 AS x UNION ALL SELECT 2.0)")
        b = one(con, "SELECT count(*) FROM rnn_steps('m', '[1, 2, 3]')")
        con.close()
        con = connect(path)
        assert one(con, "SELECT rnn_predict('m', x) FROM (SELECT 1.0 AS x UNION ALL SELECT 2.0)") == a
        assert one(con, "SELECT count(*) FROM rnn_steps('m', '[1, 2, 3]')") == b == 3
        con.execute("DROP TABLE rnn_models")     # nothing holds the table
        con.close()


# ---- limits ------------------------------------------------------------------------------------------------------

def limit_cases():
    layers = {}
    for k in range(65):
        layers["weight_ih_l%d" % k] = (F, [1, 1], [0.1])
        layers["weight_hh_l%d" % k] = (F, [1, 1], [0.1])
    return [
        ("header over 64 MiB", struct.pack("<Q", 64 * 2 ** 20 + 1) + b"{" + bytes(64 * 2 ** 20),
         "safetensors header is 67108865 bytes, more than the limit 67108864"),
        ("hidden size", st.dumps({"weight_ih_l0": (F, [8193, 1], bytes(4 * 8193)),
                                  "weight_hh_l0": (F, [1, 8193], bytes(4 * 8193))}),
         "hidden size 8193 is larger than the limit 8192"),
        ("input size", st.dumps({"weight_ih_l0": (F, [1, 65537], bytes(4 * 65537)), "weight_hh_l0": (F, [1, 1], [0.0])}),
         "input size 65537 is outside 1..65536"),
        ("layers", st.dumps(layers), "more than 64 layers"),
        ("huge shape, little data", st.dumps({"weight_ih_l0": (F, [131073, 1024], bytes(4))}),
         "tensor 'weight_ih_l0': more than 134217728 elements"),
        ("shape within limit, data missing", st.dumps({"weight_ih_l0": (F, [8192, 8192], bytes(4))}),
         "tensor 'weight_ih_l0': data_offsets hold 4 bytes, but F32 with 67108864 elements needs 268435456"),
    ]


def test_model_limits():
    """The limits of ext/model.h are enforced with the exact messages, on BLOBs far smaller than the sizes they
    claim (the checks come before any allocation those sizes would make)."""
    con = connect()
    for label, blob, msg in limit_cases():
        def case(blob=blob, msg=msg):
            assert error_of(con, "SELECT rnn_info(?)", (blob,)) == "rnn_info(): invalid model: " + msg
            assert one(con, "SELECT 1") == 1
        yield label, case


def test_sequence_limit():
    """A sequence of more than 2^25 values (ext/sequence.h) is refused; TEXT tokens for a 64-token vocab reach
    the limit with 512 KiB of text."""
    vocab = [chr(0x41 + i) for i in range(64)]
    m = models.recurrent("gru", 64, 2, head=1, metadata={"vocab": json.dumps(vocab)})
    con = connect()
    models.registry(con, m=m)
    assert isinstance(one(con, "SELECT rnn_eval('m', ?)", ("A" * 2 ** 19,)), float)
    for fn in ("rnn_eval", "rnn_classify"):
        assert error_of(con, "SELECT %s('m', ?)" % fn, ("AB" * 2 ** 18 + "C",)) == (
            "%s(): sequence has 524289 steps of 64 values, more than the limit of 33554432 values" % fn)
    assert error_of(con, "SELECT * FROM rnn_steps('m', ?)", ("A" * (2 ** 19 + 1),)) == (
        "rnn_steps(): sequence has 524289 steps of 64 values, more than the limit of 33554432 values")


def test_window_frame_limit():
    """A sliding frame holds at most 64 MiB of inputs (ext/window.c rule 6): with 65536 features per row (one-hot
    tokens of a 65536-token vocab) a 300-row sliding frame is refused with the limit's message, while a running frame
    over the same rows drops its buffer and finishes in O(1) memory."""
    vocab = ["t%d" % i for i in range(65536)]
    con = connect()
    models.registry(con, big=models.recurrent("rnn_tanh", 65536, 1, head=1, bias=False,
                                              metadata={"vocab": json.dumps(vocab)}))
    con.execute("CREATE TABLE s(t INTEGER PRIMARY KEY, tok TEXT)")
    con.executemany("INSERT INTO s VALUES (?, ?)", [(i, vocab[i * 7919 % 65536]) for i in range(400)])
    assert error_of(con, "SELECT rnn_predict('big', tok) OVER (ORDER BY t ROWS 300 PRECEDING) FROM s") == (
        "rnn_predict(): sliding window frame holds more than 67108864 bytes of inputs: use a shorter frame or "
        "ROWS UNBOUNDED PRECEDING")
    rows = con.execute("SELECT rnn_predict('big', tok) OVER (ORDER BY t) FROM s").fetchall()
    assert len(rows) == 400 and all(isinstance(r[0], float) for r in rows)


def test_outputs_respect_limit_length():
    """Outputs longer than SQLITE_LIMIT_LENGTH are SQLite's 'string or blob too big', and the connection works
    again once the limit is raised. A model must itself fit the limit to be read at all, so the model here is
    small (4 KB: one hidden unit, a head of 1000 outputs, no biases) and its outputs large (12 KB of JSON)."""
    if not hasattr(sqlite3.Connection, "setlimit"):
        raise Skip("Python < 3.11 has no Connection.setlimit")
    con = connect()
    wide = models.recurrent("rnn_tanh", 1, 1, head=1000, bias=False, seed=3)
    narrow = models.recurrent("gru", 1, 2, head=1, seed=4)
    assert len(wide) < 5000
    models.registry(con, wide=wide, narrow=narrow)
    con.execute("CREATE TABLE s(t INTEGER PRIMARY KEY, v REAL)")
    con.executemany("INSERT INTO s VALUES (?, ?)", [(i, i * 0.001) for i in range(2000)])
    old = con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 6000)
    too_big = "string or blob too big"
    for sql in [
        "SELECT rnn_eval('wide', '[1, 2]')",                                    # JSON of 1000 outputs
        "SELECT rnn_classify('wide', '[1, 2]') IS NOT NULL, rnn_eval('wide', '[1, 2]')",
        "SELECT rnn_predict('wide', v) OVER (ORDER BY t) FROM s",
        "SELECT rnn_predict('wide', v) OVER (ORDER BY t ROWS 2 PRECEDING) FROM s",
        "SELECT rnn_predict('wide', v) FROM s",
        "SELECT output FROM rnn_steps('wide', '[1, 2]')",
        "SELECT rnn_sequence(t, v) FROM s",                                     # an 8000-byte BLOB
    ]:
        assert error_of(con, sql) == too_big, (sql, error_of(con, sql))
    # what fits is unaffected
    assert one(con, "SELECT rnn_classify('wide', '[1, 2]')") in range(1000)
    assert one(con, "SELECT length(rnn_hidden('wide', v)) FROM s") == 4
    assert isinstance(one(con, "SELECT rnn_eval('narrow', '[1, 2]')"), float)
    assert one(con, "SELECT count(*) FROM rnn_forecast('narrow', '[1]', 3)") == 3
    con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, old)
    assert len(json.loads(one(con, "SELECT rnn_eval('wide', '[1, 2]')"))) == 1000
    assert len(one(con, "SELECT rnn_sequence(t, v) FROM s")) == 8000


def test_fuzz_seed_models_load():
    """The committed seeds of tests/fuzz/corpus/fuzz_model (tests/fuzz/make_corpus.py) are valid models: a seed
    corpus that the loader refuses would start the fuzzer from nothing."""
    d = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_model")
    names = sorted(os.listdir(d))
    assert len(names) >= 10, names
    con = connect()
    for name in names:
        with open(os.path.join(d, name), "rb") as f:
            info = json.loads(one(con, "SELECT rnn_info(?)", (f.read(),)))
        assert info["cell"] in ("rnn_tanh", "rnn_relu", "lstm", "gru", "seed"), (name, info)
