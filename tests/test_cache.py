"""The per-connection model cache (ext/registry.c rules 2, 3 and 5): a model is parsed once
however many partitions or statements use it, and every change of the registry row (UPDATE,
ROLLBACK, another connection's commit) is seen by the next statement."""
import json
import os
import tempfile

import models
from rnnlib import connect, one

A = models.recurrent("gru", 1, 3, head=1, seed=1)
B = models.recurrent("gru", 1, 3, head=1, seed=2)


def stats(con):
    return json.loads(one(con, "SELECT rnn_cache_stats()"))


def series(con, partitions, length):
    con.execute("CREATE TABLE s(id INTEGER, t INTEGER, v REAL, PRIMARY KEY(id, t))")
    con.execute("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < ?) "
                "INSERT INTO s SELECT a.i, b.i, sin(a.i + b.i * 0.1) FROM n a, n b WHERE a.i < ? AND b.i < ?",
                (max(partitions, length), partitions, length))


def test_parsed_once_for_many_partitions():
    con = connect()
    models.registry(con, m=A)
    series(con, 1000, 5)
    before = stats(con)
    n = one(con, "SELECT count(*) FROM (SELECT rnn_predict('m', v) OVER (PARTITION BY id ORDER BY t) FROM s)")
    after = stats(con)
    assert n == 5000
    assert after["parses"] - before["parses"] == 1, (before, after)
    # the registry row is read once per statement, not once per partition
    assert after["reads"] - before["reads"] == 1, (before, after)
    # a second statement reads the row again (rule 3: each statement sees the registry as it is now)
    # but does not parse it again
    one(con, "SELECT count(*) FROM (SELECT rnn_predict('m', v) OVER (PARTITION BY id ORDER BY t) FROM s)")
    again = stats(con)
    assert again["parses"] == after["parses"] and again["reads"] == after["reads"] + 1, (after, again)


def test_blob_argument_parsed_once():
    con = connect()
    series(con, 50, 3)
    one(con, "SELECT count(*) FROM (SELECT rnn_predict(?, v) OVER (PARTITION BY id ORDER BY t) FROM s)", (A,))
    one(con, "SELECT rnn_info(?)", (A,))
    assert stats(con)["parses"] == 1


def predict(con, name="m"):
    return one(con, "SELECT rnn_predict(?, 0.5)", (name,))


def test_update_seen_by_next_statement():
    con = connect()
    other = connect()
    models.registry(other, m=B)
    want_b = predict(other)
    models.registry(con, m=A)
    a = predict(con)
    assert a != want_b
    con.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (B,))
    assert predict(con) == want_b
    con.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (A,))
    assert predict(con) == a


def test_rollback_seen():
    con = connect()
    models.registry(con, m=A)
    a = predict(con)
    con.execute("BEGIN")
    con.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (B,))
    b = predict(con)
    assert b != a
    con.execute("ROLLBACK")
    assert predict(con) == a
    # and inside a transaction that is then committed
    con.execute("BEGIN")
    con.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (B,))
    assert predict(con) == b
    con.execute("COMMIT")
    assert predict(con) == b


def test_other_connection_commit_seen():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.db")
        c1, c2 = connect(path), connect(path)
        models.registry(c1, m=A)
        a = predict(c1)
        c2.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (B,))
        b = predict(c1)
        assert b != a and b == predict(c2)
        c1.close()
        c2.close()


def test_eviction_bounds_the_cache():
    con = connect()
    for i in range(12):
        con.execute("SELECT rnn_info(?)", (models.recurrent("gru", 1, 2, seed=100 + i),)).fetchall()
    s = stats(con)
    assert s["parses"] == 12 and s["models"] == 8, s


def test_same_model_two_names_one_parse():
    con = connect()
    models.registry(con, x=A, y=A)
    assert predict(con, "x") == predict(con, "y")
    assert stats(con)["parses"] == 1
