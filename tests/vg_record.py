"""Records the SQL that test modules execute, for `make valgrind` (tests/vg_replay.c replays it under memcheck).

Runs the given test modules under pytest (so they also pass or fail as usual, with the normal rnn.so) while
every sqlite3 connection they open reports each statement it starts, with its parameters expanded (BLOBs as x'..'),
through set_trace_callback. Writes one file, in execution order:
    O <conn> <database>\\n                      a connection opens (database: :memory: or a file key)
    S <conn> <bytes>\\n<sql>\\n                 a statement runs on it
    C <conn>\\n                                 it closes
File databases are numbered in order of first use, so the replay opens fresh files that play the same roles.
Statements the extension itself runs (the registry lookup) are left out: the replay runs them again by itself.

Usage: python3 tests/vg_record.py OUT.sql tests/test_errors.py [more test modules]
"""
import os
import sqlite3
import sys

import pytest

NESTED = "SELECT model FROM rnn_models WHERE name = "   # ext/registry.c's lookup, traced like any statement


class Recorder:
    def __init__(self, path):
        self.out = open(path, "wb")
        self.conns = 0
        self.files = {}

    def db_key(self, database):
        name = os.fspath(database)
        if name in ("", ":memory:") or name.startswith("file::memory:"):
            return ":memory:"
        key = os.path.abspath(name)
        return "file%d" % self.files.setdefault(key, len(self.files))

    def opened(self, database):
        self.conns += 1
        self.out.write(b"O %d %s\n" % (self.conns, self.db_key(database).encode()))
        return self.conns

    def statement(self, conn, sql):
        if sql.startswith(NESTED) or sql.startswith("--"):
            return
        data = sql.encode("utf-8", "surrogatepass")
        self.out.write(b"S %d %d\n" % (conn, len(data)) + data + b"\n")

    def closed(self, conn):
        self.out.write(b"C %d\n" % conn)


def install(rec):
    real_connect = sqlite3.connect

    class Traced(sqlite3.Connection):
        def close(self):
            if getattr(self, "_vg_id", None) is not None:
                rec.closed(self._vg_id)
                self._vg_id = None
            super().close()

    def connect(database, *args, **kwargs):
        if "factory" in kwargs or len(args) >= 4:
            con = real_connect(database, *args, **kwargs)
            ident = rec.opened(database)
        else:
            con = real_connect(database, *args, factory=Traced, **kwargs)
            ident = con._vg_id = rec.opened(database)
        con.set_trace_callback(lambda sql, ident=ident: rec.statement(ident, sql))
        return con

    sqlite3.connect = connect


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    rec = Recorder(argv[0])
    install(rec)
    rc = pytest.main(["-p", "no:cacheprovider", "-q"] + [os.path.abspath(p) for p in argv[1:]])
    rec.out.close()
    print("recorded %d connections into %s" % (rec.conns, argv[0]))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
