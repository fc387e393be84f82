"""The demo's chart: sql/demo_chart.gp draws, from a database that sql/demo.sql filled (run here by the sqlite3
shell into a temporary file, as `make demo` does), one panel per injected fault with the readings, the forecasts
and the flagged readings. Asserts: gnuplot exits 0 and prints nothing (it warns on stderr about any plot with no
data, so an empty query fails the test); the file is a PNG of 1400x900 pixels with more than a blank image's
bytes. Skips when gnuplot (Debian: gnuplot-nox) or the sqlite3 shell is missing.
"""
import os
import shutil
import struct
import subprocess
import tempfile

from rnnlib import ROOT, Skip


def test_demo_chart():
    for tool in ("gnuplot", "sqlite3"):
        if not shutil.which(tool):
            raise Skip("%s not installed" % tool)
    with tempfile.TemporaryDirectory() as d:
        db, png = os.path.join(d, "demo.db"), os.path.join(d, "demo.png")
        with open(os.path.join(ROOT, "sql", "demo.sql"), "rb") as f:
            r = subprocess.run(["sqlite3", db], stdin=f, cwd=ROOT, capture_output=True, timeout=300)
        assert r.returncode == 0 and not r.stderr, r.stderr
        r = subprocess.run(["gnuplot", "-e", "db='%s'; out='%s'" % (db, png), "sql/demo_chart.gp"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and r.stderr == "" and r.stdout == "", (r.returncode, r.stderr)
        with open(png, "rb") as f:
            data = f.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
        assert struct.unpack(">II", data[16:24]) == (1400, 900), struct.unpack(">II", data[16:24])
        assert len(data) > 60000, "suspiciously small chart: %d bytes" % len(data)
