"""The model cache never answers with an old model (ext/registry.c rules 2 and 3): every way the registry
row can change under a connection is seen by the next statement, names are byte strings with a length,
no model outlives the 8-model cache between statements, and a missing table is found by probing the schema.

Each case checks the exact output of the model the registry holds now against the same model passed as a
BLOB (the BLOB path never reads the registry)."""
import json
import os
import sqlite3
import tempfile

import models
from rnnlib import connect, error_of, one

# Same shapes, so the BLOBs have the same length (incremental BLOB I/O cannot resize).
A = models.recurrent("gru", 1, 3, head=1, seed=1)
B = models.recurrent("gru", 1, 3, head=1, seed=2)
C = models.recurrent("gru", 1, 3, head=1, seed=3)
assert len(A) == len(B) == len(C)


def out(blob):
    con = connect()
    return one(con, "SELECT rnn_eval(?, '[0.5, -0.25]')", (blob,))


OUT = {"A": out(A), "B": out(B), "C": out(C)}
assert len(set(OUT.values())) == 3


def which(con, name="m", sql="SELECT rnn_eval(?, '[0.5, -0.25]')"):
    """Which of A, B, C the registry's `name` answers with (the statement reads only what `sql` reads)."""
    got = one(con, sql, (name,))
    for k, v in OUT.items():
        if got == v:
            return k
    raise AssertionError("output %r is none of the known models" % got)


def stats(con):
    return json.loads(one(con, "SELECT rnn_cache_stats()"))


def registry_file(path, **m):
    c = sqlite3.connect(path, isolation_level=None)
    models.registry(c, **m)
    c.close()


# ---- attached registries ------------------------------------------------------------------------------------------

def test_attached_registry_other_commit_seen_by_statement_reading_only_main():
    """A schema's data version is refreshed only when that schema is read: a statement that reads only `main`
    must still see another connection's commit to the attached registry."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "models.db")
        registry_file(path, m=A)
        con = connect(os.path.join(d, "main.db"))
        con.execute("CREATE TABLE t(x)")
        con.execute("INSERT INTO t VALUES (1)")
        con.execute("ATTACH ? AS models", (path,))
        only_main = "SELECT rnn_eval(?, '[0.5, -0.25]') FROM t"
        assert which(con, sql=only_main) == "A"
        assert which(con, sql=only_main) == "A"
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (B,))
        assert which(con, sql=only_main) == "B"
        assert which(con, sql="SELECT rnn_predict(?, y) FROM (SELECT 0.5 AS y UNION ALL SELECT -0.25) "
                              "JOIN t") == "B"
        other.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (C,))
        assert which(con, sql=only_main) == "C"
        other.close()
        con.close()


def test_detach_then_attach_another_file_same_name():
    with tempfile.TemporaryDirectory() as d:
        p1, p2 = os.path.join(d, "one.db"), os.path.join(d, "two.db")
        registry_file(p1, m=A)
        registry_file(p2, m=B)
        con = connect()
        con.execute("ATTACH ? AS models", (p1,))
        assert which(con) == "A"
        con.execute("DETACH models")
        con.execute("ATTACH ? AS models", (p2,))
        assert which(con) == "B"
        con.execute("DETACH models")
        assert error_of(con, "SELECT rnn_eval('m', '[1]')").startswith("rnn_eval(): no table rnn_models: ")
        con.execute("ATTACH ? AS models", (p1,))
        assert which(con) == "A"
        con.close()


def test_attach_earlier_schema_shadows():
    """An unqualified rnn_models resolves temp, main, then attached in order: a registry created in main
    after one was used from an attached file takes over at once."""
    with tempfile.TemporaryDirectory() as d:
        p1 = os.path.join(d, "one.db")
        registry_file(p1, m=A)
        con = connect()
        con.execute("ATTACH ? AS models", (p1,))
        assert which(con) == "A"
        con.execute("BEGIN")
        con.execute("CREATE TABLE main.rnn_models AS SELECT 'm' AS name, ? AS model", (B,))
        assert which(con) == "B"
        con.execute("ROLLBACK")
        assert which(con) == "A"


# ---- names are byte strings -----------------------------------------------------------------------------------------

NUL_NAME = "m\x00x"


def test_name_with_nul_is_its_own_key():
    con = connect()
    models.registry(con, m=A)
    con.execute("INSERT INTO rnn_models VALUES ('m' || char(0) || 'x', ?)", (B,))
    con.execute("INSERT INTO rnn_models VALUES ('m' || char(0) || 'y', ?)", (C,))
    assert one(con, "SELECT length(CAST(name AS BLOB)) FROM rnn_models WHERE name = ?", (NUL_NAME,)) == 3
    for _ in range(2):
        assert which(con, NUL_NAME) == "B"
        assert which(con, "m") == "A"
        assert which(con, "m\x00y") == "C"
        assert which(con, "m\x00x", sql="SELECT rnn_predict(?, x) FROM (SELECT 0.5 AS x UNION ALL "
                                        "SELECT -0.25)") == "B"
    assert one(con, "SELECT rnn_eval('m' || char(0) || 'y', '[0.5, -0.25]')") == OUT["C"]


def test_name_with_nul_in_messages():
    """Messages show the whole name (util.c's %U escapes the NUL as \\x00) instead of stopping at the NUL."""
    con = connect()
    models.registry(con, m=A)
    con.execute("INSERT INTO rnn_models VALUES ('t' || char(0) || 'u', 'text')")
    con.execute("INSERT INTO rnn_models VALUES ('b' || char(0) || 'c', x'00')")
    assert error_of(con, "SELECT rnn_eval(?, '[1]')", ("q\x00z",)) == (
        "rnn_eval(): no model named 'q\\x00z' in rnn_models: INSERT INTO rnn_models(name, model) "
        "VALUES ('q\\x00z', <safetensors BLOB>)")
    assert error_of(con, "SELECT rnn_eval(?, '[1]')", ("\x00",)) == (
        "rnn_eval(): no model named '\\x00' in rnn_models: INSERT INTO rnn_models(name, model) "
        "VALUES ('\\x00', <safetensors BLOB>)")
    assert error_of(con, "SELECT rnn_eval(?, '[1]')", ("t\x00u",)) == \
        "rnn_eval(): rnn_models.model of 't\\x00u' is TEXT, expected a safetensors BLOB"
    msg = error_of(con, "SELECT rnn_eval(?, '[1]')", ("b\x00c",))
    assert msg.startswith("rnn_eval(): invalid model 'b\\x00c': "), msg
    assert error_of(con, "SELECT rnn_eval('nope', '[1]')") == (
        "rnn_eval(): no model named 'nope' in rnn_models: INSERT INTO rnn_models(name, model) VALUES "
        "('nope', <safetensors BLOB>)")


# ---- every way the registry can change under a connection -----------------------------------------------------------

def test_update_rollback_and_savepoints():
    con = connect()
    models.registry(con, m=A)
    assert which(con) == "A"
    con.execute("BEGIN")
    assert which(con) == "A"  # a read inside the transaction, before the write
    con.execute("SAVEPOINT s1")
    con.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (B,))
    assert which(con) == "B"
    con.execute("SAVEPOINT s2")
    con.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (C,))
    assert which(con) == "C"
    con.execute("ROLLBACK TO s2")
    assert which(con) == "B"
    con.execute("ROLLBACK TO s1")
    assert which(con) == "A"
    con.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (C,))
    con.execute("RELEASE s1")
    assert which(con) == "C"
    con.execute("ROLLBACK")
    assert which(con) == "A"


def test_rename_tables_in_transaction():
    con = connect()
    models.registry(con, m=A)
    con.execute("CREATE TABLE other(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
    con.execute("INSERT INTO other VALUES ('m', ?)", (B,))
    assert which(con) == "A"
    con.execute("BEGIN")
    con.execute("ALTER TABLE rnn_models RENAME TO old")
    con.execute("ALTER TABLE other RENAME TO rnn_models")
    assert which(con) == "B"
    con.execute("ROLLBACK")
    assert which(con) == "A"
    con.execute("ALTER TABLE rnn_models RENAME TO old")
    con.execute("ALTER TABLE other RENAME TO rnn_models")
    assert which(con) == "B"


def test_drop_and_create_as_select():
    """CREATE TABLE ... AS SELECT counts no changes: the new table must still be read."""
    con = connect()
    models.registry(con, m=A)
    assert which(con) == "A"
    con.execute("BEGIN")
    con.execute("DROP TABLE rnn_models")
    con.execute("CREATE TABLE rnn_models AS SELECT 'm' AS name, ? AS model", (B,))
    assert which(con) == "B"
    con.execute("ROLLBACK")
    assert which(con) == "A"
    con.execute("DROP TABLE rnn_models")
    con.execute("CREATE TABLE rnn_models AS SELECT 'm' AS name, ? AS model", (C,))
    assert which(con) == "C"


def test_rename_column():
    con = connect()
    con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB, spare BLOB)")
    con.execute("INSERT INTO rnn_models VALUES ('m', ?, ?)", (A, B))
    assert which(con) == "A"
    con.execute("BEGIN")
    con.execute("ALTER TABLE rnn_models RENAME COLUMN model TO was")
    con.execute("ALTER TABLE rnn_models RENAME COLUMN spare TO model")
    assert which(con) == "B"
    con.execute("COMMIT")
    assert which(con) == "B"


def test_temp_registry_shadows_main():
    con = connect()
    models.registry(con, m=A)
    assert which(con) == "A"
    con.execute("CREATE TEMP TABLE rnn_models AS SELECT 'm' AS name, ? AS model", (B,))
    assert which(con) == "B"
    con.execute("DROP TABLE temp.rnn_models")
    assert which(con) == "A"
    con.execute("BEGIN")
    con.execute("CREATE TEMP TABLE rnn_models AS SELECT 'm' AS name, ? AS model", (C,))
    assert which(con) == "C"
    con.execute("ROLLBACK")
    assert which(con) == "A"


def test_incremental_blob_write():
    with tempfile.TemporaryDirectory() as d:
        con = connect(os.path.join(d, "r.db"))
        models.registry(con, m=A)
        rowid = one(con, "SELECT rowid FROM rnn_models WHERE name = 'm'")
        assert which(con) == "A"
        con.execute("BEGIN")
        with con.blobopen("rnn_models", "model", rowid) as blob:
            blob.write(B)
        assert which(con) == "B"
        con.execute("ROLLBACK")
        assert which(con) == "A"
        with con.blobopen("rnn_models", "model", rowid) as blob:  # autocommit: commits at close
            blob.write(C)
        assert which(con) == "C"
        # a BLOB handle still open: the next statement reads what it wrote
        blob = con.blobopen("rnn_models", "model", rowid)
        blob.write(A)
        assert which(con) == "A"
        blob.close()
        assert which(con) == "A"
        con.close()


def test_database_image_replaced():
    con = connect()
    models.registry(con, m=A)
    assert which(con) == "A"
    src = sqlite3.connect(":memory:")
    models.registry(src, m=B)
    image = src.serialize()
    con.deserialize(image)
    assert which(con) == "B"
    models.registry(src, m=C)
    con.deserialize(src.serialize())
    assert which(con) == "C"
    # an attached schema's image replaced
    con.execute("ATTACH ':memory:' AS aux")
    con.execute("DROP TABLE main.rnn_models")
    con.deserialize(image, name="aux")
    assert which(con) == "B"
    con.deserialize(src.serialize(), name="aux")
    assert which(con) == "C"


def test_other_connection_commit_while_reading():
    """WAL: a statement of ours is open on the registry's database while another connection commits."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.db")
        con = connect(path)
        con.execute("PRAGMA journal_mode = WAL")
        models.registry(con, m=A)
        con.execute("CREATE TABLE t(x)")
        con.execute("INSERT INTO t VALUES (1), (2)")
        assert which(con) == "A"
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (B,))
        assert which(con, sql="SELECT rnn_eval(?, '[0.5, -0.25]') FROM t WHERE x = 1") == "B"
        other.close()
        con.close()


# ---- the cache bound ------------------------------------------------------------------------------------------------

def test_no_model_outlives_the_cache_between_statements():
    """16 models used by name, twice round: with at most 8 models kept, the second round parses every one
    again (a name memo holding evicted models would answer without parsing)."""
    con = connect()
    blobs = {"n%d" % i: models.recurrent("gru", 1, 2, head=1, seed=500 + i) for i in range(16)}
    models.registry(con, **blobs)
    for _ in range(2):
        for name in blobs:
            one(con, "SELECT rnn_eval(?, '[1]')", (name,))
    s = stats(con)
    assert s["parses"] == 32 and s["models"] == 8, s
    assert s["bytes"] == sum(len(blobs["n%d" % i]) for i in range(8, 16)), s


def test_one_read_per_statement():
    """Within one statement a literal name is read once; each statement reads it again."""
    con = connect()
    models.registry(con, m=A)
    con.execute("CREATE TABLE s(id, t, v)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(i, t, 0.1 * t) for i in range(50) for t in range(3)])
    s0 = stats(con)
    one(con, "SELECT sum(rnn_eval('m', '[1]')) FROM s")
    one(con, "SELECT sum(p) FROM (SELECT rnn_predict('m', v) OVER (PARTITION BY id ORDER BY t) p FROM s)")
    one(con, "SELECT sum(p) FROM (SELECT rnn_predict(m, v) OVER (PARTITION BY id ORDER BY t) p FROM s, "
             "(SELECT 'm' AS m))")
    s1 = stats(con)
    assert s1["reads"] - s0["reads"] == 3 and s1["parses"] - s0["parses"] == 1, (s0, s1)


# ---- a missing table is found by probing the schema, not by error text -------------------------------------------

def test_missing_table_found_by_probe():
    con = connect()
    # rnn_models exists (a view) but reads a table that does not: not "no table rnn_models"
    con.execute("CREATE VIEW rnn_models(name, model) AS SELECT name, model FROM nope")
    con.execute("CREATE TABLE nope(name, model)")
    con.execute("DROP TABLE nope")
    assert error_of(con, "SELECT rnn_eval('m', '[1]')") == \
        "rnn_eval(): cannot read rnn_models(name, model): no such table: main.nope"
    con.execute("DROP VIEW rnn_models")
    assert error_of(con, "SELECT rnn_eval('m', '[1]')").startswith("rnn_eval(): no table rnn_models: create it ")
    # in an attached or temp schema it is found
    con.execute("CREATE TEMP TABLE rnn_models(name, model)")
    assert error_of(con, "SELECT rnn_eval('m', '[1]')") == (
        "rnn_eval(): no model named 'm' in rnn_models: INSERT INTO rnn_models(name, model) VALUES "
        "('m', <safetensors BLOB>)")


# ---- every function kind, and what a running statement sees ---------------------------------------------------------

KINDS = [
    ("rnn_eval", "SELECT rnn_eval(?, '[0.5, -0.25]') FROM t"),
    ("rnn_predict window", "SELECT p FROM (SELECT k, rnn_predict(?, y) OVER (ORDER BY k) AS p FROM "
                           "(SELECT 1 AS k, 0.5 AS y UNION ALL SELECT 2, -0.25), t) WHERE k = 2"),
    ("rnn_predict aggregate", "SELECT rnn_predict(?, y) FROM (SELECT 0.5 AS y UNION ALL SELECT -0.25), t"),
    ("rnn_steps", "SELECT output FROM t, rnn_steps(?, '[0.5, -0.25]') WHERE step = 1"),
    ("rnn_forecast", "SELECT output FROM t, rnn_forecast(?, '[0.5, -0.25]', 1)"),
]


def test_every_function_sees_the_other_connections_commit():
    """The attached-registry case for each kind of function; each statement reads only main."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "models.db")
        registry_file(path, m=A)
        con = connect(os.path.join(d, "main.db"))
        con.execute("CREATE TABLE t(x)")
        con.execute("INSERT INTO t VALUES (1)")
        con.execute("ATTACH ? AS models", (path,))
        other = sqlite3.connect(path, isolation_level=None)
        for label, sql in KINDS:
            for blob, want in ((A, "A"), (B, "B"), (C, "C")):
                other.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (blob,))
                assert which(con, sql=sql) == want, label
                assert which(con, sql=sql) == want, label
        other.close()
        con.close()


def test_running_statement_keeps_its_model():
    """A statement that looked a name up keeps that model to its end (SQLite leaves undefined whether a
    running statement sees changes made meanwhile); the next statement sees the change."""
    con = connect()
    models.registry(con, m=A)
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
    cur = con.execute("SELECT rnn_eval('m', '[0.5, -0.25]') FROM t")
    first = cur.fetchone()[0]
    con.execute("UPDATE rnn_models SET model = ? WHERE name = 'm'", (B,))
    rest = [r[0] for r in cur.fetchall()]
    assert first == OUT["A"] and rest == [OUT["A"]] * 49
    assert which(con) == "B"
