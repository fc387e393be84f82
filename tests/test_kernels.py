"""CPU paths: the C kernel test (tests/test_kernels.c: bit-identical paths, activation error
against libm, gemv against a double reference), and the same bit-identity through SQL with
the path forced by SQLITE_RNN_KERNEL."""
import os
import subprocess

import models
from rnnlib import ROOT, Skip, connect


def test_kernel_binary():
    exe = os.path.join(ROOT, "build", "test_kernels")
    if not os.path.exists(exe):
        raise Skip("build/test_kernels not built (make test builds it)")
    r = subprocess.run([exe], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(" 0 failed"), r.stdout


def outputs_with(path, blob, n):
    old = os.environ.get("SQLITE_RNN_KERNEL")
    os.environ["SQLITE_RNN_KERNEL"] = path
    try:
        con = connect()
        kernel = con.execute("SELECT json_extract(rnn_info(?), '$.kernel')", (blob,)).fetchone()[0]
        con.execute("CREATE TABLE s(t INTEGER PRIMARY KEY, v REAL)")
        con.executemany("INSERT INTO s VALUES (?, ?)", [(i, ((i * 7919) % 1000) / 250.0 - 2) for i in range(n)])
        rows = con.execute("SELECT rnn_predict(?, v) OVER (ORDER BY t), rnn_hidden(?, v) OVER (ORDER BY t) "
                           "FROM s", (blob, blob)).fetchall()
        return kernel, rows
    finally:
        if old is None:
            del os.environ["SQLITE_RNN_KERNEL"]
        else:
            os.environ["SQLITE_RNN_KERNEL"] = old


def test_sql_paths_bit_identical():
    for cell, H in (("lstm", 64), ("gru", 37), ("rnn_tanh", 16)):
        blob = models.recurrent(cell, 1, H, layers=2, head=3, seed=H)
        _, want = outputs_with("scalar", blob, 300)
        for path in ("avx2", "avx512"):
            kernel, got = outputs_with(path, blob, 300)
            if kernel != path:
                continue  # this CPU lacks the path; the scalar one was used
            assert got == want, (cell, path)
