"""`make bench`: speed of sqlite-rnn against baselines measured in the same run.

1. Window query over 1,000,000 rows (1000 series x 1000 steps) with rnn_predict for GRU(1->8),
   LSTM(1->64), LSTM(1->256), against the same query with SQLite's own sum(v): the floor any
   window function pays.
2. Kernels alone (build/bench_kernels): ns/step, GFLOP/s and fraction of the FMA peak of one
   core measured in the same run.
3. End to end: INSERT INTO pred SELECT ... rnn_predict(LSTM(1->64)) OVER ... against the
   Python+PyTorch pipeline a user would write (read ordered rows, batched torch LSTM + Linear
   on all cores, write a predictions table), same data, same weights.
4. Model load: first use of a 4 MB model, and the cache on later statements.

Prints the CPU, each figure and each ratio. Needs a Python with sqlite3 extension loading;
part 3 needs python3-torch (skipped with a note otherwise).
"""
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import models  # noqa: E402

EXT = os.path.join(ROOT, "rnn")
WORK = os.path.join(ROOT, "build", "bench")


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def connect(path):
    con = sqlite3.connect(path, isolation_level=None)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    return con


def make_db(path):
    if os.path.exists(path):
        return
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE series(id INTEGER, t INTEGER, v REAL, PRIMARY KEY(id, t)) WITHOUT ROWID;
        INSERT INTO series WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 999)
          SELECT a.i, b.i, sin(a.i * 0.37 + b.i * 0.05) + 0.1 * cos(b.i * 1.7) FROM n a, n b;
        CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL);
    """)
    for name, blob in (("gru8", models.recurrent("gru", 1, 8, head=1, seed=1)),
                       ("lstm64", models.recurrent("lstm", 1, 64, head=1, seed=2)),
                       ("lstm256", models.recurrent("lstm", 1, 256, head=1, seed=3, scale=0.1)),
                       ("big", models.recurrent("lstm", 1, 500, head=1, seed=4, scale=0.05))):
        con.execute("INSERT INTO rnn_models VALUES (?, ?)", (name, blob))
    con.commit()
    con.close()


def timed(con, sql, runs):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def part1(con):
    print("\n## 1. Window query, 1,000,000 rows (1000 series x 1000 steps), median of runs\n")
    q = "SELECT count(*) FROM (SELECT %s OVER (PARTITION BY id ORDER BY t) FROM series)"
    base = timed(con, q % "sum(v)", 5)
    print("| query | s | us/row | ratio to sum(v) |\n|---|---|---|---|")
    print("| `sum(v)` | %.3f | %.3f | 1.00 |" % (base, base))
    for name, label, runs in (("gru8", "GRU(1->8)", 5), ("lstm64", "LSTM(1->64)", 3), ("lstm256", "LSTM(1->256)", 1)):
        t = timed(con, q % ("rnn_predict('%s', v)" % name), runs)
        print("| `rnn_predict` %s | %.3f | %.3f | %.2f |" % (label, t, t, t / base))


def peak_rss_mb(path, expr, partition=True):
    """Peak resident memory of a fresh process running the 1M-row window query."""
    code = ("import resource, sqlite3; c = sqlite3.connect(%r); c.enable_load_extension(True); "
            "c.load_extension(%r); c.execute(%r).fetchall(); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)") % (
        path, EXT, "SELECT count(*) FROM (SELECT %s OVER (%sORDER BY t) FROM series)" % (
            expr, "PARTITION BY id " if partition else ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out) / 1024.0


def part1_memory(path):
    print("\nPeak memory of the whole process (fresh Python, 1M rows):\n")
    print("| query | peak RSS MB |\n|---|---|")
    for expr, label in (("sum(v)", "`sum(v)` OVER (PARTITION BY id ORDER BY t)"),
                        ("rnn_predict('lstm64', v)", "`rnn_predict` LSTM(1->64) OVER (PARTITION BY id ORDER BY t)")):
        print("| %s | %.0f |" % (label, peak_rss_mb(path, expr)))
    for expr, label in (("sum(v)", "`sum(v)` OVER (ORDER BY t), one 1M-row partition"),
                        ("rnn_predict('lstm64', v)", "`rnn_predict` LSTM(1->64) OVER (ORDER BY t), one 1M-row partition")):
        print("| %s | %.0f |" % (label, peak_rss_mb(path, expr, partition=False)))


def part2():
    print("\n## 2. Kernels alone (one sequence, batch 1, single thread)\n")
    exe = os.path.join(ROOT, "build", "bench_kernels")
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines()
    print(out[0] + "\n")
    print("| cell | I | H | ns/step | GFLOP/s | of peak |\n|---|---|---|---|---|---|")
    for line in out[2:]:
        print("| " + " | ".join(line.split()) + " |")


def torch_pipeline(path, blob):
    """The pipeline a user writes today: read ordered, batched torch LSTM + Linear, write back."""
    import numpy as np
    import torch
    import st
    torch.set_num_threads(os.cpu_count() or 1)
    tensors, _ = st.loads(blob)
    H = tensors["weight_hh_l0"][1][1]
    lstm, fc = torch.nn.LSTM(1, H, batch_first=True), torch.nn.Linear(H, 1)
    with torch.no_grad():
        for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(lstm, k).copy_(torch.tensor(tensors[k][2]).reshape(tensors[k][1]))
        fc.weight.copy_(torch.tensor(tensors["fc.weight"][2]).reshape(tensors["fc.weight"][1]))
        fc.bias.copy_(torch.tensor(tensors["fc.bias"][2]))
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("DROP TABLE IF EXISTS pred_torch")
    con.execute("CREATE TABLE pred_torch(id INTEGER, t INTEGER, p REAL)")
    t0 = time.perf_counter()
    rows = con.execute("SELECT id, t, v FROM series ORDER BY id, t").fetchall()
    a = np.array(rows, dtype=np.float64)
    ids, ts = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
    x = torch.tensor(a[:, 2], dtype=torch.float32).reshape(1000, 1000, 1)
    t1 = time.perf_counter()
    with torch.no_grad():
        y = fc(lstm(x)[0]).reshape(-1).numpy().astype(np.float64)
    t2 = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO pred_torch VALUES (?, ?, ?)", zip(ids.tolist(), ts.tolist(), y.tolist()))
    con.execute("COMMIT")
    t3 = time.perf_counter()
    con.close()
    return t3 - t0, (t1 - t0, t2 - t1, t3 - t2)


def part3(path, con):
    print("\n## 3. End to end: score 1,000,000 rows into a predictions table, LSTM(1->64)\n")
    con.execute("DROP TABLE IF EXISTS pred")
    con.execute("CREATE TABLE pred(id INTEGER, t INTEGER, p REAL)")
    t0 = time.perf_counter()
    con.execute("INSERT INTO pred SELECT id, t, rnn_predict('lstm64', v) OVER (PARTITION BY id ORDER BY t) "
                "FROM series")
    ours = time.perf_counter() - t0
    print("| pipeline | s | ratio |\n|---|---|---|")
    print("| `INSERT INTO pred SELECT id, t, rnn_predict(...) OVER (...)`, 1 thread | %.2f | 1.00 |" % ours)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("| Python + PyTorch | (python3-torch not installed: skipped) | |")
        return
    blob = con.execute("SELECT model FROM rnn_models WHERE name = 'lstm64'").fetchone()[0]
    total, (read, compute, write) = torch_pipeline(path, blob)
    diff = con.execute("SELECT max(abs(a.p - b.p)) FROM pred a JOIN pred_torch b USING (id, t)").fetchone()[0]
    print("| Python + PyTorch %s (%d threads): read %.2f, compute %.2f, write %.2f | %.2f | %.2f |"
          % (torch.__version__, torch.get_num_threads(), read, compute, write, total, total / ours))
    print("\nmax |sqlite-rnn - torch| over the 1,000,000 predictions: %.2g" % diff)
    con.execute("DROP TABLE pred")
    con.execute("DROP TABLE pred_torch")


def part4(path):
    print("\n## 4. Model load: a 4 MB model (LSTM(1->500) + head)\n")
    con = connect(path)
    size = con.execute("SELECT length(model) FROM rnn_models WHERE name = 'big'").fetchone()[0]
    t0 = time.perf_counter()
    con.execute("SELECT rnn_predict('big', 0.5)").fetchall()
    first = time.perf_counter() - t0
    later = timed(con, "SELECT rnn_predict('big', 0.5)", 5)
    stats = json.loads(con.execute("SELECT rnn_cache_stats()").fetchone()[0])
    print("| | ms |\n|---|---|")
    print("| first statement (read %d bytes, parse, convert, one step) | %.2f |" % (size, first * 1e3))
    print("| later statements (cache hit, one step) | %.2f |" % (later * 1e3))
    print("\nparses after 6 statements: %d (cache: %s)" % (stats["parses"], json.dumps(stats)))
    con.close()


def main():
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, "series.db")
    make_db(path)
    print("# sqlite-rnn bench: %s, %d cores, SQLite %s, Python %s" % (
        cpu_name(), os.cpu_count(), sqlite3.sqlite_version, platform.python_version()))
    con = connect(path)
    kernel = json.loads(con.execute("SELECT rnn_info('gru8')").fetchone()[0])["kernel"]
    print("CPU path in use: %s" % kernel)
    part1(con)
    part1_memory(path)
    part2()
    part3(path, con)
    part4(path)


if __name__ == "__main__":
    main()
