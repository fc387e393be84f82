"""tests/cluster/local.py MODEL ROWS [REPEAT]: the workload of tests/cluster/workload.sql on a local SQLite file (WAL, as
dqlite keeps its databases), with rnn.so loaded; prints the lines build/rnn-cluster's `score` prints for the
cluster ("select N rows S s R rows/s sha256 H" and "insert N rows S s R rows/s"), with the same hash, so
tests/cluster/run.sh can compare both the bits and the throughput; REPEAT times (default 1). Run from the
repository root."""
import hashlib
import os
import sqlite3
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXT = os.path.join(HERE, "..", "..", "rnn")


def statements():
    """workload.sql's statements by name (each follows a '-- name: NAME' line; other comments dropped)."""
    stmts, name = {}, None
    with open(os.path.join(HERE, "workload.sql")) as f:
        for line in f.read().split("\n"):
            if line.startswith("-- name: "):
                name = line[len("-- name: "):].strip()
            elif name and not line.startswith("--"):
                stmts[name] = (stmts.get(name, "") + "\n" + line).strip()
    return stmts


def line_of(row):
    """One row's line of the hash: "id %016x" of the float64 bits, or "id null"."""
    if row[1] is None:
        return "%d null\n" % row[0]
    return "%d %016x\n" % (row[0], struct.unpack("<Q", struct.pack("<d", row[1]))[0])


def score(con, sql):
    """The window query (rows hashed as they come), then pred emptied and refilled by INSERT ... SELECT."""
    start = time.perf_counter()
    h, n = hashlib.sha256(), 0
    for row in con.execute(sql["score"]):
        h.update(line_of(row).encode())
        n += 1
    secs = time.perf_counter() - start
    print("select %d rows %.3f s %.0f rows/s sha256 %s" % (n, secs, n / secs, h.hexdigest()))
    con.execute(sql["clear_pred"])
    start = time.perf_counter()
    m = con.execute(sql["insert_pred"]).rowcount
    secs = time.perf_counter() - start
    print("insert %d rows %.3f s %.0f rows/s" % (m, secs, m / secs))


def main(model_path, rows, repeat):
    sql = statements()
    with open(model_path, "rb") as f:
        model = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        con = sqlite3.connect(os.path.join(tmp, "local.db"), isolation_level=None)
        con.enable_load_extension(True)
        con.load_extension(EXT)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(sql["connection"])
        for name in ("schema_models", "schema_readings", "schema_index", "schema_pred"):
            con.execute(sql[name])
        con.execute(sql["model"], (model,))
        con.execute(sql["readings"], (rows,))
        for _ in range(repeat):
            score(con, sql)
        con.close()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: tests/cluster/local.py MODEL ROWS [REPEAT]")
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 1)
