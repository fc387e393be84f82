"""rnn_scan_feed's fast path (ext/scan.c take_fast: INTEGER key equal to the series', INTEGER order value, plain
numeric features, room without growing) and its general path (take_row) give the same rows: series that switch
between the two row by row, bit for bit the window query's values and types, and the same errors."""
import random

import models
from rnnlib import connect, error_of
from test_scan_order import SCAN, WINDOW, env, exact


def switching_table(con, rng):
    """s(id, t, v, w): rows alternating at random between what the fast path takes and what it leaves: a key
    stored as 5 or 5.0 in one series, INTEGER and REAL order values, INTEGER and REAL features, NULL features,
    then TEXT and REAL keys; order values unique within each series."""
    con.execute("DROP TABLE IF EXISTS s")
    con.execute("CREATE TABLE s(id, t, v, w)")
    rows = []
    for key in (5, 6, 7.5, "k", 8):
        for t in rng.sample(range(-300, 300), rng.randint(1, 250)):
            k = float(key) if isinstance(key, int) and rng.random() < 0.2 else key
            o = t + 0.5 if rng.random() < 0.15 else t
            v = rng.randint(-3, 3) if rng.random() < 0.2 else None if rng.random() < 0.05 else rng.uniform(-2, 2)
            rows.append((k, o, v, rng.uniform(-2, 2)))
    rng.shuffle(rows)
    con.executemany("INSERT INTO s VALUES (?, ?, ?, ?)", rows)
    if rng.random() < 0.5:
        con.execute("CREATE INDEX s_id_t ON s(id, t)")


def test_switching_rows_as_window():
    """Every row the same value and type as the window gives it, for one and two features, any memory budget
    (group boundaries anywhere) and thread count."""
    rng = random.Random(13)
    con = connect()
    for case in range(12):
        switching_table(con, rng)
        I = 1 + case % 2
        blob = models.recurrent(("gru", "lstm", "rnn_tanh")[case % 3], I, rng.choice([3, 8, 33]), head=1,
                                seed=case)
        feats = "'v'" if I == 1 else "'v', 'w'"
        want = exact(con.execute(WINDOW % ("v" if I == 1 else "v, w"), (blob,)).fetchall())
        for memory, threads in ((None, 1), (None, 2), (rng.randint(300, 3000), 1), (rng.randint(300, 3000), 3)):
            with env(SQLITE_RNN_SCAN_MEMORY=memory, SQLITE_RNN_THREADS=threads):
                got = exact(con.execute(SCAN % feats, (blob,)).fetchall())
            assert got == want, (case, memory, threads)


def test_errors_after_fast_rows():
    """A tie between INTEGER order values, or a bad feature, after rows the fast path took: the general path's
    exact message."""
    con = connect()
    blob = models.recurrent("gru", 1, 3, head=1)
    con.execute("CREATE TABLE s(id, t, v)")
    tie = ("rnn_scan(): two rows of the series with key '4' have the same order value: the order column must be "
           "unique within a series")
    for bad, msg in ((None, tie),
                     ("1e300", "rnn_scan(): argument 5 (feature 1) is 1.0e+300, expected a finite float32 number"),
                     ("'x'", "rnn_scan(): argument 5 (feature 1) is TEXT, expected a number")):
        con.execute("DELETE FROM s")
        con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(4, i, 0.25 * i) for i in range(100)])
        if bad is None:
            con.execute("INSERT INTO s VALUES (4, 60, 0.5)")
        else:
            con.execute("UPDATE s SET v = %s WHERE t = 60" % bad)
        for threads in (1, 2):
            with env(SQLITE_RNN_THREADS=threads):
                assert error_of(con, SCAN % "'v'", (blob,)) == msg
