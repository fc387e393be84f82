"""Shared helpers for the tests: open a connection with the extension, run SQL, compare floats."""
import math
import os
import sqlite3
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXT = os.environ.get("RNN_EXT", os.path.join(ROOT, "rnn"))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


class Skip(Exception):
    """Raised by a test that cannot run here (e.g. torch missing); counted as skipped."""


def connect(path=":memory:"):
    con = sqlite3.connect(path, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    con.enable_load_extension(False)
    return con


def have_torch():
    try:
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def one(con, sql, params=()):
    """The single value of a one-row, one-column query."""
    rows = con.execute(sql, params).fetchall()
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    return rows[0][0]


def error_of(con, sql, params=()):
    """The error text a statement raises; fails the test if it raises none."""
    try:
        con.execute(sql, params).fetchall()
    except sqlite3.Error as e:
        return str(e)
    raise AssertionError("no error from: %s" % sql)


def f32_blob(values):
    return struct.pack("<%df" % len(values), *values)


def f32_list(blob):
    return list(struct.unpack("<%df" % (len(blob) // 4), blob))


def assert_close(got, want, tol=2e-5, scale=1.0, what=""):
    """|got - want| <= tol * max(1, |want|, scale) elementwise; got/want scalars or lists."""
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), (what, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, tol, scale, "%s[%d]" % (what, i))
        return
    assert got is not None and not (isinstance(got, float) and math.isnan(got)), (what, got, want)
    lim = tol * max(1.0, abs(want), scale)
    assert abs(got - want) <= lim, "%s: got %r want %r (diff %.3g > %.3g)" % (
        what, got, want, abs(got - want), lim)
