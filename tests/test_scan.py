"""rnn_scan (ext/scan.c): every row of a table scored with several series in lockstep, bit for bit the
value of rnn_predict(...) OVER (PARTITION BY key ORDER BY order) on every CPU path; names quoted as
identifiers, DIRECTONLY, ties and bidirectional models refused with exact messages."""
import json
import os
import random
import sqlite3

import models
from rnnlib import connect, error_of, one

PATHS = ("scalar", "avx2", "avx512")
SCAN = "SELECT key, ord, output FROM rnn_scan(?, 's', 'id', 't', %s) ORDER BY 1, 2"
WINDOW = "SELECT id, t, rnn_predict(?, %s) OVER (PARTITION BY id ORDER BY t) FROM s ORDER BY 1, 2"


def on_path(path):
    """A connection whose models use CPU path `path`, or None if this CPU lacks it (read at load)."""
    old = os.environ.get("SQLITE_RNN_KERNEL")
    os.environ["SQLITE_RNN_KERNEL"] = path
    try:
        con = connect()
        probe = models.recurrent("gru", 1, 4)
        if con.execute("SELECT json_extract(rnn_info(?), '$.kernel')", (probe,)).fetchone()[0] != path:
            con.close()
            return None
        return con
    finally:
        if old is None:
            del os.environ["SQLITE_RNN_KERNEL"]
        else:
            os.environ["SQLITE_RNN_KERNEL"] = old


def random_model(rng):
    cell = rng.choice(["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru", "seed"])
    I, H = rng.randint(1, 3), rng.choice([1, 3, 8, 17, 40])
    head = rng.choice([None, 1, 2])
    md = {}
    if rng.random() < 0.4:
        md["input_mean"] = json.dumps([rng.uniform(-1, 1) for _ in range(I)])
        md["input_std"] = json.dumps([rng.uniform(0.5, 2) for _ in range(I)])
    if cell == "seed":
        return "seed I=%d H=%d" % (I, H), I, models.seed_rnn(I, H, rng.randint(1, 2), seed=rng.randint(0, 1 << 30))
    proj = rng.randint(1, H - 1) if cell == "lstm_proj" and H > 1 else 0
    layers = rng.randint(1, 3)
    blob = models.recurrent("lstm" if cell == "lstm_proj" else cell, I, H, layers=layers, head=head,
                            seed=rng.randint(0, 1 << 30), proj=proj, metadata=md or None, scale=rng.choice([0.5, 2.0]))
    return "%s I=%d H=%d layers=%d proj=%d head=%s std=%s" % (cell, I, H, layers, proj, head, bool(md)), I, blob


def fill(con, rng, I, series=None):
    """Table s(id, t, f1..fI): random series (keys INTEGER, TEXT and NULL), unique random order values,
    about 10% of rows with a NULL feature; returns the feature column list."""
    cols = ["f%d" % i for i in range(1, I + 1)]
    con.execute("DROP TABLE IF EXISTS s")
    con.execute("CREATE TABLE s(id, t, %s)" % ", ".join(cols))
    keys = list(range(series if series is not None else rng.randint(0, 45))) + ["k", None]
    rows = []
    for k in keys:
        ts = rng.sample(range(-500, 500), rng.randint(1, 40))
        for t in ts:
            t = t if rng.random() < 0.8 else t + 0.5
            feats = [None if rng.random() < 0.1 / I else rng.uniform(-3, 3) for _ in cols]
            rows.append((k, t, *feats))
    rng.shuffle(rows)
    con.executemany("INSERT INTO s VALUES (%s)" % ", ".join("?" * (2 + I)), rows)
    if rng.random() < 0.5:
        con.execute("CREATE INDEX s_id_t ON s(id, t)")
    return cols


def test_bit_identical_to_window_every_path():
    """Random models (every cell, 1-3 layers, projections, standardisation) and tables (series from 1 to 40
    rows, more series than the lockstep batch, NULL features, NULL and TEXT keys, REAL order values): the scan's
    rows equal the window's exactly, on every CPU path, and equal the scalar path's."""
    seed = random.randrange(1 << 30)
    for case in range(12):
        rng = random.Random(seed + case)
        label, I, blob = random_model(rng)
        data_seed = rng.randrange(1 << 30)
        want = None
        for path in PATHS:
            con = on_path(path)
            if con is None:
                continue
            cols = fill(con, random.Random(data_seed), I)
            args = ", ".join("'%s'" % c for c in cols)
            got = con.execute(SCAN % args, (blob,)).fetchall()
            win = con.execute(WINDOW % ", ".join(cols), (blob,)).fetchall()
            assert got == win, (seed, case, label, path)
            assert len(got) == one(con, "SELECT count(*) FROM s")
            if want is None:
                want = got
            assert got == want, (seed, case, label, path, "differs from scalar")
            con.close()


def test_null_feature_rows_as_window():
    """A row with a NULL feature takes no step: NULL before the first step, then the previous row's output."""
    con = connect()
    blob = models.recurrent("gru", 1, 4, head=1)
    con.execute("CREATE TABLE s(id, t, v)")
    con.executemany("INSERT INTO s VALUES (1, ?, ?)", [(1, None), (2, 0.5), (3, None), (4, -1.0)])
    got = con.execute("SELECT ord, output FROM rnn_scan(?, 's', 'id', 't', 'v') ORDER BY ord", (blob,)).fetchall()
    assert got[0] == (1, None) and got[2] == (3, got[1][1]) and got[3][1] != got[1][1]
    assert got == [r[1:] for r in con.execute(WINDOW % "v", (blob,)).fetchall()]


def test_several_features_outputs_and_vocab():
    con = connect()
    blob = models.recurrent("lstm", 2, 6, head=3, metadata={"output_names": json.dumps(["a", "b", "c"])})
    con.execute("CREATE TABLE s(id, t, x, y)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?, ?)", [(i % 3, i, i * 0.1, -i * 0.2) for i in range(30)])
    got = con.execute(SCAN % "'x', 'y'", (blob,)).fetchall()
    assert got == con.execute(WINDOW % "x, y", (blob,)).fetchall()
    assert set(json.loads(got[0][2])) == {"a", "b", "c"}
    vocab = models.recurrent("gru", 3, 5, head=2, metadata={"vocab": json.dumps(["a", "b", "c"])})
    con.execute("CREATE TABLE c(id, t, ch)")
    con.executemany("INSERT INTO c VALUES (?, ?, ?)", [(i % 2, i, "abc"[i % 3]) for i in range(20)])
    assert con.execute("SELECT * FROM rnn_scan(?, 'c', 'id', 't', 'ch') ORDER BY 1, 2", (vocab,)).fetchall() == \
        con.execute("SELECT id, t, rnn_predict(?, ch) OVER (PARTITION BY id ORDER BY t) FROM c ORDER BY 1, 2",
                    (vocab,)).fetchall()


def test_select_star_insert_and_model_by_name():
    """SELECT * gives exactly key, ord, output (the arguments are hidden), for INSERT INTO ... SELECT *."""
    con = connect()
    models.registry(con, m=models.recurrent("lstm", 1, 8, head=1))
    con.execute("CREATE TABLE s(id, t, v)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(i % 20, i, i * 0.01) for i in range(400)])
    con.execute("CREATE TABLE pred(id, t, y)")
    con.execute("INSERT INTO pred SELECT * FROM rnn_scan('m', 's', 'id', 't', 'v')")
    cur = con.execute("SELECT * FROM rnn_scan('m', 's', 'id', 't', 'v')")
    assert [d[0] for d in cur.description] == ["key", "ord", "output"]
    assert con.execute("SELECT * FROM pred ORDER BY 1, 2").fetchall() == \
        con.execute(WINDOW % "v", ("m",)).fetchall()
    assert one(con, "SELECT count(*) FROM rnn_scan('m', 's', 'id', 't', 'v') WHERE key = 3") == 20


def test_empty_table_gives_no_rows():
    con = connect()
    con.execute("CREATE TABLE s(id, t, v)")
    assert con.execute(SCAN % "'v'", (models.recurrent("gru", 1, 2),)).fetchall() == []


def test_names_are_quoted_identifiers():
    """Names with quotes, semicolons and SQL in them name a table and columns; nothing runs."""
    con = connect()
    blob = models.recurrent("gru", 1, 3, head=1)
    tbl, key, ordc, val = 'we"ird; DROP TABLE keep; --', "k'e\"y", "o;rd", "v]al`"
    con.execute("CREATE TABLE keep(x)")
    con.execute('CREATE TABLE "%s"("%s", "%s", "%s")' % tuple(n.replace('"', '""') for n in (tbl, key, ordc, val)))
    con.executemany('INSERT INTO "%s" VALUES (?, ?, ?)' % tbl.replace('"', '""'),
                    [(i % 4, i, i * 0.3) for i in range(40)])
    got = con.execute("SELECT * FROM rnn_scan(?, ?, ?, ?, ?) ORDER BY 1, 2", (blob, tbl, key, ordc, val)).fetchall()
    assert len(got) == 40 and got[0][2] is not None
    assert one(con, "SELECT count(*) FROM keep") == 0
    assert error_of(con, "SELECT * FROM rnn_scan(?, 'keep; DROP TABLE keep', 'x', 'x', 'x')", (blob,)) == \
        "rnn_scan(): no such table: keep; DROP TABLE keep"
    assert error_of(con, "SELECT * FROM rnn_scan(?, 'keep', 'x', 'x', 'x\" FROM keep; --')", (blob,)) == \
        "rnn_scan(): no such column: x\" FROM keep; --"
    assert one(con, "SELECT count(*) FROM sqlite_master WHERE name = 'keep'") == 1


def test_errors_exact():
    con = connect()
    blob = models.recurrent("gru", 1, 3, head=1)
    con.execute("CREATE TABLE s(id, t, v, w)")
    con.execute("INSERT INTO s VALUES (1, 1, 0.5, 'x'), (1, 2, 1.0, 'y')")
    cases = [
        ("SELECT * FROM rnn_scan(?, 'nope', 'id', 't', 'v')", "rnn_scan(): no such table: nope"),
        ("SELECT * FROM rnn_scan(?, 's', 'id', 'tt', 'v')", "rnn_scan(): no such column: tt"),
        ("SELECT * FROM rnn_scan(?, 's', 'idd', 't', 'v')", "rnn_scan(): no such column: idd"),
        ("SELECT * FROM rnn_scan(?, 's', 'id', 't', 'vv')", "rnn_scan(): no such column: vv"),
        ("SELECT * FROM rnn_scan(?, 's', 'id', 't', 'v`')", "rnn_scan(): no such column: v`"),
        ("SELECT * FROM rnn_scan(?, 's', 'id', 't')", "rnn_scan(): missing argument 5 (feature column)"),
        ("SELECT * FROM rnn_scan(?, 's')", "rnn_scan(): missing argument 3 (key column)"),
        ("SELECT * FROM rnn_scan(?, 's', 'id', 3, 'v')",
         "rnn_scan(): argument 4 (order column) is INTEGER, expected TEXT naming a column"),
        ("SELECT * FROM rnn_scan(?, NULL, 'id', 't', 'v')",
         "rnn_scan(): argument 2 (table) is NULL, expected TEXT naming a table"),
        ("SELECT * FROM rnn_scan(?, 's', 'id', 't', 'v', 'v')", "rnn_scan(): model expects 1 feature, got 2"),
        ("SELECT * FROM rnn_scan(?, 's', 'id', 't', 'w')",
         "rnn_scan(): argument 5 (feature 1) is TEXT, expected a number"),
    ]
    for sql, msg in cases:
        assert error_of(con, sql, (blob,)) == msg, (sql, error_of(con, sql, (blob,)))
    bi = models.recurrent("gru", 1, 3, bidirectional=True)
    assert error_of(con, "SELECT * FROM rnn_scan(?, 's', 'id', 't', 'v')", (bi,)) == (
        "rnn_scan(): model is bidirectional: a window cannot see the rows after the current one, and the scan "
        "gives what the window gives (score whole sequences instead)")
    assert error_of(con, "SELECT * FROM rnn_scan('missing', 's', 'id', 't', 'v')").startswith(
        "rnn_scan(): no table rnn_models: create it with")


def test_ties_refused_exactly():
    """Two rows of a series with the same order value (peers: the default frame would give them one shared
    output) are an error; numbers compare by value (1 and 1.0 are peers), two NULLs are peers."""
    con = connect()
    blob = models.recurrent("gru", 1, 3, head=1)
    con.execute("CREATE TABLE s(id, t, v)")
    for rows, key in (([(7, 1, 0.1), (7, 1.0, 0.2)], "'7'"), ([("a", None, 0.1), ("a", None, 0.2)], "'a'"),
                      ([(2, "x", 0.1), (2, "x", 0.2)], "'2'")):
        con.execute("DELETE FROM s")
        con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(0, 1, 0.0), (0, 2, 0.0)] + rows)
        assert error_of(con, SCAN % "'v'", (blob,)) == (
            "rnn_scan(): two rows of the series with key %s have the same order value: the order column must be "
            "unique within a series" % key)
    con.execute("DELETE FROM s")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(0, None, 0.5), (0, 1, 0.1), (0, "x", 0.2), (0, "y", 0.3)])
    assert con.execute(SCAN % "'v'", (blob,)).fetchall() == con.execute(WINDOW % "v", (blob,)).fetchall()


def test_directonly_not_in_views_or_triggers():
    """The schema of a database cannot make rnn_scan read tables (SQLITE_VTAB_DIRECTONLY)."""
    con = connect()
    models.registry(con, m=models.recurrent("gru", 1, 3, head=1))
    con.execute("CREATE TABLE s(id, t, v)")
    con.execute("INSERT INTO s VALUES (1, 1, 0.5)")
    con.execute("CREATE VIEW v AS SELECT * FROM rnn_scan('m', 's', 'id', 't', 'v')")
    assert error_of(con, "SELECT * FROM v") == 'unsafe use of virtual table "rnn_scan"'
    con.execute("CREATE TABLE log(x)")
    con.execute("CREATE TRIGGER tr AFTER INSERT ON s BEGIN "
                "INSERT INTO log SELECT output FROM rnn_scan('m', 's', 'id', 't', 'v'); END")
    assert error_of(con, "INSERT INTO s VALUES (1, 2, 0.5)") == 'unsafe use of virtual table "rnn_scan"'


def test_interrupted_by_progress_handler():
    con = connect()
    blob = models.recurrent("lstm", 1, 8, head=1)
    con.execute("CREATE TABLE s(id, t, v)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(i % 10, i, 0.1) for i in range(2000)])
    con.set_progress_handler(lambda: 1, 1000)
    assert error_of(con, SCAN % "'v'", (blob,)) == "interrupted"
    con.set_progress_handler(None, 0)
    assert len(con.execute(SCAN % "'v'", (blob,)).fetchall()) == 2000


def test_threads_give_identical_results():
    """Rows are the same, bit for bit, with 1, 2, 3 and 8 threads (SQLITE_RNN_THREADS), over more series than
    all the groups hold and series longer than a block (64 rounds), and equal the window's."""
    con = connect()
    rng = random.Random(7)
    con.execute("CREATE TABLE s(id, t, v, PRIMARY KEY(id, t))")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)",
                    [(i, t, None if rng.random() < 0.05 else rng.uniform(-2, 2))
                     for i in range(300) for t in range(rng.choice([1, 5, 63, 64, 65, 200]))])
    old = os.environ.get("SQLITE_RNN_THREADS")
    try:
        for cell, H in (("lstm", 24), ("gru", 8), ("rnn_relu", 16)):
            blob = models.recurrent(cell, 1, H, layers=2, head=1, seed=H)
            want = con.execute(WINDOW % "v", (blob,)).fetchall()
            for n in ("1", "2", "3", "8"):
                os.environ["SQLITE_RNN_THREADS"] = n
                assert con.execute(SCAN % "'v'", (blob,)).fetchall() == want, (cell, n)
    finally:
        if old is None:
            os.environ.pop("SQLITE_RNN_THREADS", None)
        else:
            os.environ["SQLITE_RNN_THREADS"] = old
