"""rnn_scan (ext/scan.c, ext/scan_compute.c) returns its rows in (key, order) order, bit for bit the rows of
rnn_predict(...) OVER (PARTITION BY key ORDER BY order) ... ORDER BY key, order, without an ORDER BY of its own:
for every cell kind, every CPU path, any number of threads, any memory budget (SQLITE_RNN_SCAN_MEMORY: series cut
into chunks), with or without an index; memory stays bounded; interrupts stop it."""
import json
import os
import random
import sqlite3
import struct
import subprocess
import sys

import models
from rnnlib import EXT, connect, error_of, one
from test_scan import on_path, PATHS

SCAN = "SELECT * FROM rnn_scan(?, 's', 'id', 't', %s)"
WINDOW = "SELECT id, t, rnn_predict(?, %s) OVER (PARTITION BY id ORDER BY t) FROM s ORDER BY id, t"


def exact(rows):
    """Rows with every value tagged by its type and floats as their bits: == is then bit equality."""
    def v(x):
        if isinstance(x, float):
            return ("f", struct.pack("<d", x))
        return (type(x).__name__, x)
    return [tuple(v(x) for x in r) for r in rows]


class env:
    """Environment variables set for a block (the extension reads them at each scan's start)."""
    def __init__(self, **kw):
        self.kw = kw

    def __enter__(self):
        self.old = {k: os.environ.get(k) for k in self.kw}
        for k, v in self.kw.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)

    def __exit__(self, *a):
        for k, v in self.old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def models_of_every_kind():
    """(label, features, blob): every cell, several layers, proj_size, the seed cell, standardisation, heads."""
    md = {"input_mean": json.dumps([0.3, -0.2]), "input_std": json.dumps([1.5, 0.7])}
    yield "rnn_tanh 2 layers", 2, models.recurrent("rnn_tanh", 2, 9, layers=2, head=1, seed=1)
    yield "rnn_relu 3 layers", 2, models.recurrent("rnn_relu", 2, 17, layers=3, seed=2, metadata=md)
    yield "lstm", 2, models.recurrent("lstm", 2, 24, head=2, seed=3)
    yield "lstm proj 2 layers", 2, models.recurrent("lstm", 2, 20, layers=2, proj=7, head=1, seed=4, metadata=md)
    yield "gru 3 layers", 2, models.recurrent("gru", 2, 33, layers=3, head=3, seed=5, scale=2.0)
    yield "seed", 2, models.seed_rnn(2, 12, 2, seed=6)
    for act in ("sigmoid", "tanh", "softmax", "log_softmax"):  # batched head (sigmoid, tanh) or rnn_output's
        out = {"output_activation": act, "output_mean": json.dumps([0.5, -1.0, 2.0]),
               "output_std": json.dumps([2.0, 0.25, 3.0])}
        yield "lstm head " + act, 2, models.recurrent("lstm", 2, 40, head=3, seed=7, metadata=out)
    yield "gru no head", 2, models.recurrent("gru", 2, 5, seed=8)


def varied_table(con, rng, I, index):
    """s(id, t, f1..fI): series of very different lengths (1 to 700 rows), keys of every type (INTEGER, REAL, TEXT,
    BLOB, NULL), order values of every type, 5% NULL features; with or without an index on (id, t)."""
    cols = ["f%d" % i for i in range(1, I + 1)]
    con.execute("DROP TABLE IF EXISTS s")
    con.execute("CREATE TABLE s(id, t, %s)" % ", ".join(cols))
    keys = [3, 1, 2.5, -7, "a", "b\u00e9", b"\x00k", b"z", None, 10 ** 15] + list(range(100, 130))
    rows = []
    for i, k in enumerate(keys):
        n = rng.choice([1, 2, 5, 17, 64, 300, 700])
        ts = rng.sample(range(-5000, 5000), n)
        kind = i % 4
        for t in ts:
            o = t if kind == 0 else t + 0.25 if kind == 1 else "o%06d" % (t + 5000) if kind == 2 else \
                struct.pack(">i", t + 5000)
            rows.append((k, o, *[None if rng.random() < 0.05 else rng.uniform(-3, 3) for _ in cols]))
        if kind == 0:
            rows.append((k, None, *[rng.uniform(-3, 3) for _ in cols]))  # a NULL order value sorts first
    rng.shuffle(rows)
    con.executemany("INSERT INTO s VALUES (%s)" % ", ".join("?" * (2 + I)), rows)
    if index:
        con.execute("CREATE INDEX s_id_t ON s(id, t)")
    return cols


def test_order_and_bits_every_cell_path_and_budget():
    """Without ORDER BY, the scan's rows are the window query's rows in (key, order) order, value for value and
    bit for bit, for every cell kind, every CPU path, with and without an index, with the default memory and with
    one so small that series are cut into chunks of a few rows."""
    rng = random.Random(1301)
    for label, I, blob in models_of_every_kind():
        for path in PATHS:
            con = on_path(path)
            if con is None:
                continue
            cols = varied_table(con, random.Random(rng.randrange(1 << 30)), I, index=path != "avx2")
            want = exact(con.execute(WINDOW % ", ".join(cols), (blob,)).fetchall())
            args = ", ".join("'%s'" % c for c in cols)
            for memory in (None, 3000, 40000):
                with env(SQLITE_RNN_SCAN_MEMORY=memory):
                    got = exact(con.execute(SCAN % args, (blob,)).fetchall())
                assert got == want, (label, path, memory)
            con.close()


def test_threads_and_chunks_identical():
    """1, 2, 3 and 8 threads, each with budgets that cut groups and series at different rows: the same bits."""
    con = connect()
    rng = random.Random(77)
    cols = varied_table(con, rng, 1, index=True)
    for cell in ("lstm", "gru", "rnn_tanh"):
        blob = models.recurrent(cell, 1, 16, layers=2, head=1, seed=9)
        want = exact(con.execute(WINDOW % "f1", (blob,)).fetchall())
        for threads in (1, 2, 3, 8):
            for memory in (None, 2000, 9000):
                with env(SQLITE_RNN_THREADS=threads, SQLITE_RNN_SCAN_MEMORY=memory):
                    got = exact(con.execute(SCAN % "'f1'", (blob,)).fetchall())
                assert got == want, (cell, threads, memory)


def test_long_series_in_chunks_and_vocab():
    """One series far longer than a group's memory between short ones is scored in chunks; a vocab model's TEXT
    tokens and INTEGER indexes are read as the window reads them."""
    con = connect()
    con.execute("CREATE TABLE s(id, t, v, PRIMARY KEY(id, t)) WITHOUT ROWID")
    rows = [(1, t, 0.01 * t) for t in range(3)] + [(2, t, ((t * 37) % 11) - 5.0) for t in range(5000)] + \
        [(3, t, -0.5) for t in range(4)]
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", rows)
    blob = models.recurrent("lstm", 1, 8, head=1, seed=12)
    want = exact(con.execute(WINDOW % "v", (blob,)).fetchall())
    for threads in (1, 2):
        with env(SQLITE_RNN_THREADS=threads, SQLITE_RNN_SCAN_MEMORY=6000):
            assert exact(con.execute(SCAN % "'v'", (blob,)).fetchall()) == want
    vocab = models.recurrent("gru", 3, 5, head=2, metadata={"vocab": json.dumps(["a", "b", "c"])})
    con.execute("CREATE TABLE c(id, t, ch)")
    con.executemany("INSERT INTO c VALUES (?, ?, ?)", [(i % 3, i, "abc"[i % 3] if i % 4 else i % 3)
                                                       for i in range(60)])
    assert exact(con.execute("SELECT * FROM rnn_scan(?, 'c', 'id', 't', 'ch')", (vocab,)).fetchall()) == \
        exact(con.execute("SELECT id, t, rnn_predict(?, ch) OVER (PARTITION BY id ORDER BY t) FROM c ORDER BY 1, 2",
                          (vocab,)).fetchall())


def test_ties_found_across_chunks():
    """Two rows with the same order value are refused wherever the memory budget cuts the series, also when the
    cut falls between them; 1 and 1.0 keys are one series."""
    con = connect()
    blob = models.recurrent("gru", 1, 3, head=1)
    con.execute("CREATE TABLE s(id, t, v)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(5, t, 0.1) for t in range(40)] + [(5.0, 17, 0.2)])
    msg = ("rnn_scan(): two rows of the series with key 5.0 have the same order value: the order column must be "
           "unique within a series")
    msg_int = msg.replace("5.0", "'5'")
    for memory in [None] + list(range(400, 2400, 37)):
        with env(SQLITE_RNN_SCAN_MEMORY=memory, SQLITE_RNN_THREADS=1):
            assert error_of(con, SCAN % "'v'", (blob,)) in (msg.replace("5.0", "'5.0'"), msg_int), memory
    con.execute("DELETE FROM s WHERE id = 5.0 AND typeof(id) = 'real'")
    con.execute("INSERT INTO s VALUES (5.0, 100, 0.3)")
    got = con.execute(SCAN % "'v'", (blob,)).fetchall()
    assert len(got) == 41 and [r[1] for r in got] == list(range(40)) + [100]
    assert exact(got) == exact(con.execute(WINDOW % "v", (blob,)).fetchall())


def test_empty_and_no_index():
    con = connect()
    blob = models.recurrent("lstm", 1, 4, head=1)
    con.execute("CREATE TABLE s(id, t, v)")
    assert con.execute(SCAN % "'v'", (blob,)).fetchall() == []
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(i % 7, -i, i * 0.1) for i in range(300)])
    plan = " ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN SELECT * FROM s ORDER BY id, t"))
    assert "TEMP B-TREE" in plan  # no index: SQLite's sorter orders the rows
    assert exact(con.execute(SCAN % "'v'", (blob,)).fetchall()) == exact(con.execute(WINDOW % "v", (blob,)).fetchall())


def test_interrupt_mid_scan_any_threads():
    """An interrupt after some rows were returned stops the scan with "interrupted"; the connection scans again."""
    con = connect()
    blob = models.recurrent("lstm", 1, 8, head=1)
    con.execute("CREATE TABLE s(id, t, v, PRIMARY KEY(id, t))")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(i % 50, i, 0.1) for i in range(20000)])
    for threads in (1, 2, 8):
        with env(SQLITE_RNN_THREADS=threads, SQLITE_RNN_SCAN_MEMORY=20000):
            cur = con.execute(SCAN % "'v'", (blob,))
            assert len(cur.fetchmany(500)) == 500
            con.interrupt()
            try:
                cur.fetchall()
                raise AssertionError("not interrupted")
            except sqlite3.OperationalError as e:
                assert str(e) == "interrupted"
            assert len(con.execute(SCAN % "'v'", (blob,)).fetchall()) == 20000


def test_feed_function_is_internal():
    """rnn_scan_feed, which rnn_scan's statement calls for each row, refuses any other use."""
    con = connect()
    assert error_of(con, "SELECT rnn_scan_feed(1, 2, 3, 4)") == "rnn_scan_feed(): for rnn_scan's own use"
    assert error_of(con, "SELECT rnn_scan_feed()") == "rnn_scan_feed(): for rnn_scan's own use"


_CHILD = r"""
import json, os, resource, sqlite3, sys
sys.path.insert(0, %(tests)r)
import models
con = sqlite3.connect(%(db)r)
con.enable_load_extension(True)
con.load_extension(%(ext)r)
con.execute("CREATE TABLE s(id, t, v, PRIMARY KEY(id, t)) WITHOUT ROWID")
con.execute("INSERT INTO s WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %(rows)d - 1) "
            "SELECT i / %(per)d, i %% %(per)d, (i %% 13) * 0.1 FROM n")
con.commit()
blob = models.recurrent("gru", 1, 8, head=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = con.execute("SELECT count(*), count(output) FROM rnn_scan(?, 's', 'id', 't', 'v')", (blob,)).fetchone()
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
print(json.dumps([n, grown]))
"""


def test_memory_bounded(tmp_path):
    """1,000,000 rows, as one series and as 1000 series: the scan's peak memory grows by less than its budget
    plus the threads' scratch, not with the rows (held together they would take over 30 MiB)."""
    for per, memory in ((1000000, 4 << 20), (1000, 4 << 20)):
        db = str(tmp_path / ("m%d.db" % per))
        code = _CHILD % {"tests": os.path.dirname(os.path.abspath(__file__)), "db": db, "ext": EXT,
                         "rows": 1000000, "per": per}
        envs = dict(os.environ, SQLITE_RNN_SCAN_MEMORY=str(memory), SQLITE_RNN_THREADS="2")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=envs)
        assert p.returncode == 0, p.stderr[-2000:]
        (count, outputs), grown = json.loads(p.stdout)
        assert count == 1000000 and outputs == 1000000
        assert grown < 12, (per, grown)


def test_every_reading_plan():
    """The statement reads in (key, order) order whatever plan SQLite picks: the primary key walked, an index on
    other columns (SQLite sorts), a view (over the primary key, or one that sorts by other columns)."""
    con = connect()
    blob = models.recurrent("gru", 1, 6, layers=2, head=1, seed=3)
    rng = random.Random(5)
    rows = [(i % 37, rng.randrange(100000), rng.uniform(-2, 2)) for i in range(3000)]
    rows = list({(k, t): (k, t, v) for k, t, v in rows}.values())
    con.execute("CREATE TABLE pk(id, t, v, PRIMARY KEY(id, t)) WITHOUT ROWID")
    con.execute("CREATE TABLE other(id, t, v)")
    con.execute("CREATE INDEX other_t ON other(t, id)")
    for tbl in ("pk", "other"):
        con.executemany("INSERT INTO %s VALUES (?, ?, ?)" % tbl, rows)
    con.execute("CREATE VIEW vpk AS SELECT id, t, v FROM pk WHERE v > -1.5")
    con.execute("CREATE VIEW vsorted AS SELECT id, t, v FROM other WHERE v > -1.5 ORDER BY v")
    for name in ("pk", "other", "vpk", "vsorted"):
        want = exact(con.execute("SELECT id, t, rnn_predict(?, v) OVER (PARTITION BY id ORDER BY t) FROM %s "
                                 "ORDER BY id, t" % name, (blob,)).fetchall())
        for memory in (None, 5000):
            with env(SQLITE_RNN_SCAN_MEMORY=memory):
                got = exact(con.execute("SELECT * FROM rnn_scan(?, ?, 'id', 't', 'v')", (blob, name)).fetchall())
            assert got == want, (name, memory)


def test_feature_errors_wherever_the_row_falls():
    """A bad feature gives features.c's message whether the row reaches the scan through rnn_scan_feed or, at a
    group's boundary, through the statement's columns (budgets that put a boundary on every row)."""
    con = connect()
    blob = models.recurrent("gru", 1, 3, head=1)
    vocab = models.recurrent("gru", 2, 3, head=1, metadata={"vocab": json.dumps(["a", "b"])})
    con.execute("CREATE TABLE s(id, t, v)")
    cases = [("'12.5'", blob, "rnn_scan(): argument 5 (feature 1) is TEXT '12.5', expected a number: numbers "
              "imported as TEXT (e.g. by .import --csv) need CAST(... AS REAL)"),
             ("1e300", blob, "rnn_scan(): argument 5 (feature 1) is 1.0e+300, expected a finite "
              "float32 number"),
             ("'zz'", vocab, "rnn_scan(): argument 5 'zz' is not a token of the model's vocab"),
             ("7", vocab, "rnn_scan(): argument 5 is token index 7, outside 0..1")]
    for bad, model, msg in cases:
        con.execute("DELETE FROM s")
        good = "'a'" if model is vocab else "0.5"
        con.execute("INSERT INTO s VALUES (0, 0, %s)" % good)
        con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(i // 10, i, None) for i in range(1, 60)])
        con.execute("UPDATE s SET v = %s WHERE t = 37" % bad)
        con.execute("UPDATE s SET v = %s WHERE v IS NULL" % good)
        for memory in [None] + list(range(300, 1500, 23)):
            with env(SQLITE_RNN_SCAN_MEMORY=memory, SQLITE_RNN_THREADS=1):
                assert error_of(con, SCAN % "'v'", (model,)) == msg, (bad, memory)
