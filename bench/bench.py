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
5. Scoring as rows arrive (sql/trigger.sql): inserts per second into an indexed readings table with the O(1)
   state trigger (rnn_step into series_state) against the same inserts without it, and the old O(history)
   trigger (rnn_eval over rnn_sequence of the device's history) at 1,000 and 10,000 rows of history.

6. Bulk scoring with rnn_scan: INSERT INTO p SELECT * FROM rnn_scan(...) over the 1,000,000 rows for GRU(1->8),
   LSTM(1->64), LSTM(1->256), with 1 thread and one per core (SQLITE_RNN_THREADS), against the copy job
   (INSERT INTO p SELECT id, t, v FROM series) and the window query into the same table; and the batch-16 product alone (build/bench_kernels batch) against the FMA peak.

7. Training (issue 14): sequence-steps per second of training with rnn_train on 1 thread and on all threads
   (SQLITE_RNN_THREADS) against the same training in PyTorch on all cores (nn.GRU/nn.LSTM + nn.Linear, Adam, clip_grad_norm_, the same windows, batches and
   initial weights), GRU and LSTM with hidden 8, 32 and 64.

`python3 bench/bench.py 5` runs only the parts named (here part 5).

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


# The scoring triggers of part 5. STATE_ONLY keeps series_state and nothing else (sql/trigger.sql without its
# predictions table); FLOOR is the same upsert with the state copied instead of stepped: what any such trigger
# costs before the model runs; sql/trigger.sql (the schema between its rnn_models and its example rows) also
# stores a predictions row per reading; OLD is the trigger sql/trigger.sql had before the state API: the model
# over the device's whole history on every insert.
READINGS = "CREATE TABLE readings(device TEXT, t INTEGER, temp REAL, PRIMARY KEY(device, t));"
UPSERT = """
CREATE TABLE series_state(device TEXT PRIMARY KEY, t INTEGER NOT NULL, state BLOB);
CREATE TRIGGER reading_in_order BEFORE INSERT ON readings
WHEN NEW.t <= (SELECT t FROM series_state WHERE device = NEW.device)
BEGIN SELECT RAISE(ABORT, 'out of order'); END;
CREATE TRIGGER step_state AFTER INSERT ON readings BEGIN
  INSERT INTO series_state(device, t, state)
  VALUES (NEW.device, NEW.t, STATE)
  ON CONFLICT(device) DO UPDATE SET t = excluded.t, state = excluded.state;
END;"""
PREV = "(SELECT state FROM series_state WHERE device = NEW.device)"
FLOOR = READINGS + UPSERT.replace("STATE", PREV)
STATE_ONLY = READINGS + UPSERT.replace("STATE", "rnn_step('m', %s, NEW.temp)" % PREV)
STATE_BLOB = READINGS + UPSERT.replace(
    "STATE", "rnn_step((SELECT model FROM rnn_models WHERE name = 'm'), %s, NEW.temp)" % PREV)
OLD = READINGS + """
CREATE TABLE predictions(device TEXT, t INTEGER, next_temp REAL, PRIMARY KEY(device, t));
CREATE TRIGGER score_reading AFTER INSERT ON readings BEGIN
  INSERT INTO predictions VALUES (NEW.device, NEW.t,
    (SELECT rnn_eval('m', rnn_sequence(t, temp)) FROM readings WHERE device = NEW.device));
END;"""


def trigger_sql_schema():
    text = open(os.path.join(ROOT, "sql", "trigger.sql"), encoding="utf-8").read()
    return text[text.index("CREATE TABLE readings"):text.index("-- Readings arrive")].replace("'room_temp'", "'m'")


def inserts_per_s(schema, rows, history=0, runs=3, on_disk=False):
    """Median inserts/s of executemany(rows) on a fresh database, after `history` rows of device 0 inserted before
    the triggers exist: in memory in one transaction, or on_disk (WAL, synchronous=NORMAL) one transaction each."""
    rates = []
    for _ in range(runs):
        path = os.path.join(WORK, "stream.db") if on_disk else ":memory:"
        for f in (path, path + "-wal", path + "-shm") if on_disk else ():
            if os.path.exists(f):
                os.remove(f)
        con = connect(path)
        if on_disk:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
        con.execute("INSERT INTO rnn_models VALUES ('m', ?)", (models.recurrent("gru", 1, 16, head=1, seed=5),))
        con.execute(READINGS)
        if history:
            con.execute("BEGIN")
            con.executemany("INSERT INTO readings VALUES (0, ?, ?)", ((-history + i, 20.0) for i in range(history)))
            con.execute("COMMIT")
        con.executescript(schema.replace(READINGS, ""))   # the triggers see the history from now on
        if "series_state" in schema and history:
            con.execute("INSERT INTO series_state SELECT device, t, s FROM (SELECT device, t, rnn_state('m', temp) "
                        "OVER (ORDER BY t) AS s FROM readings ORDER BY t DESC LIMIT 1)")
        if not on_disk:
            con.execute("BEGIN")
        t0 = time.perf_counter()
        con.executemany("INSERT INTO readings VALUES (?, ?, ?)", rows)
        rates.append(len(rows) / (time.perf_counter() - t0))
        if not on_disk:
            con.execute("COMMIT")
        con.close()
    return statistics.median(rates)


def part5():
    print("\n## 5. Scoring as rows arrive: inserts/s, GRU(1->16) + head\n")
    n, devices = 20000, 100
    rows = [(i % devices, i // devices, 20.0 + (i % 7) * 0.25) for i in range(n)]
    schemas = (("the same upsert without the model (the floor of any such trigger)", FLOOR),
               ("state trigger: rnn_step('m', ...) into series_state", STATE_ONLY),
               ("state trigger, the model passed as a BLOB (no lookup by name)", STATE_BLOB),
               ("sql/trigger.sql: state + a predictions row (rnn_output)", trigger_sql_schema()))
    print("| inserts (%d rows, %d devices) | inserts/s | time per insert vs plain |\n|---|---|---|" % (n, devices))
    for where, on_disk, rs in (("in memory, one transaction", False, rows),
                               ("on disk (WAL), one transaction per insert", True, rows[:4000])):
        plain = inserts_per_s(READINGS, rs, on_disk=on_disk)
        print("| %s: plain indexed INSERT, no trigger | %.0f | 1.00 |" % (where, plain))
        for label, schema in schemas:
            r = inserts_per_s(schema, rs, on_disk=on_disk)
            print("| %s: %s | %.0f | %.2f |" % (where, label, r, plain / r))
    for history in (1000, 10000):
        k = 200 if history == 1000 else 40
        one_dev = [(0, i, 20.0) for i in range(k)]
        base = inserts_per_s(READINGS, one_dev, history)
        new = inserts_per_s(STATE_ONLY, one_dev, history)
        old = inserts_per_s(OLD, one_dev, history, runs=1)
        print("| %d rows of history, in memory: plain | %.0f | 1.00 |" % (history, base))
        print("| %d rows of history, in memory: state trigger | %.0f | %.2f |" % (history, new, base / new))
        print("| %d rows of history, in memory: old O(history) trigger | %.0f | %.2f |" % (history, old, base / old))


def part6(con):
    print("\n## 6. Bulk scoring: rnn_scan (1 thread and one per core) against the copy job and the window query, "
          "1,000,000 rows\n")
    con.execute("CREATE TEMP TABLE IF NOT EXISTS p(id, t, y)")

    def insert(sql):
        con.execute("DELETE FROM p")
        t0 = time.perf_counter()
        con.execute("INSERT INTO p " + sql)
        return time.perf_counter() - t0

    def scan_with(threads, name):
        old = os.environ.get("SQLITE_RNN_THREADS")
        os.environ["SQLITE_RNN_THREADS"] = str(threads)
        try:
            return insert("SELECT * FROM rnn_scan('%s', 'series', 'id', 't', 'v')" % name)
        finally:
            if old is None:
                del os.environ["SQLITE_RNN_THREADS"]
            else:
                os.environ["SQLITE_RNN_THREADS"] = old

    copy_sql = "SELECT id, t, v FROM series"

    def paired(jobs, runs):
        """Each job's runs, each right after a run of the copy job: the median copy, and per job its median time
        and the median of its time / the copy's just before (the machine's speed drifts by 20% within seconds
        here; a pair of neighbouring runs sees one speed)."""
        copies, times, ratios = [], [[] for _ in jobs], [[] for _ in jobs]
        for _ in range(runs):
            for i, job in enumerate(jobs):
                c = insert(copy_sql)
                t = job()
                copies.append(c)
                times[i].append(t)
                ratios[i].append(t / c)
        return statistics.median(copies), [(statistics.median(t), statistics.median(r)) for t, r in zip(times, ratios)]

    con.load_extension(os.path.join(ROOT, "build", "bench_floor"))
    floor_jobs = [lambda: insert("SELECT * FROM floor_scan"), lambda: insert("SELECT * FROM floor_scan_step")]
    insert(copy_sql)  # warm-up: the file's pages into the OS cache
    cores = os.cpu_count() or 1
    print("Every timed run follows a run of the copy job; a ratio is the median over the runs of the job's time "
          "divided by that copy's (times: medians).\n")
    print("| job | runs | copy s | scan s, 1 thread | scan s, %d threads | window s | scan / copy (1, %d) "
          "| window / copy | window / scan (1, %d) |\n|---|---|---|---|---|---|---|---|---|" % (cores, cores, cores))
    floors = None
    for name, label, runs, wruns in (("gru8", "GRU(1->8)", 7, 3), ("lstm64", "LSTM(1->64)", 7, 3),
                                     ("lstm256", "LSTM(1->256)", 2, 1)):
        jobs = [lambda: scan_with(1, name), lambda: scan_with(cores, name)]
        base, res = paired(jobs + (floor_jobs if floors is None else []), runs)
        (one_t, one_r), (all_t, all_r) = res[:2]
        if floors is None:
            floors = (base, runs, res[2:])
        win = statistics.median(insert("SELECT id, t, rnn_predict('%s', v) OVER (PARTITION BY id ORDER BY t) "
                                       "FROM series" % name) for _ in range(wruns))
        print("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.2f, %.2f | %.2f | %.2f, %.2f |" % (
            label, runs, base, one_t, all_t, win, one_r, all_r, win / base, win / one_t, win / all_t))
    con.execute("DELETE FROM p")
    print("\nThe floor of this design (bench/bench_floor.c, build/bench_floor.so), measured in GRU(1->8)'s loop: "
          "`floor_scan` reads with the same statement, whose function only stores each row, and returns the rows "
          "through a virtual table that does nothing else, into the same INSERT, no model: what SQLite's function "
          "call and virtual-table row cost over the copy job. `floor_scan_step` reads with one sqlite3_step per "
          "row instead.\n")
    base, runs, res = floors
    print("| job | runs | copy s | s | / copy |\n|---|---|---|---|---|")
    for what, (t, r) in zip(("`INSERT INTO p SELECT * FROM floor_scan`", "`INSERT INTO p SELECT * FROM floor_scan_step`"),
                            res):
        print("| %s | %d | %.3f | %.3f | %.2f |" % (what, runs, base, t, r))
    exe = os.path.join(ROOT, "build", "bench_kernels")
    out = subprocess.run([exe, "batch"], capture_output=True, text=True, check=True).stdout.splitlines()
    print("\nThe gates product alone at batch 16 (gemm_rows, as the scan runs it):\n\n" + out[0] + "\n")
    print("| cell | I | H | batch | ns/product | GFLOP/s | of peak |\n|---|---|---|---|---|---|---|")
    for line in out[2:]:
        print("| " + " | ".join(line.split()) + " |")


# Part 7: 64 series x 400 steps of one feature, task next: 64 x 399 steps, cut into windows of 50 steps (512
# windows, 32 batches of 16 per epoch). A sequence-step is one step of one window, forward and backward.
TRAIN_SERIES, TRAIN_STEPS, TRAIN_WINDOW, TRAIN_BATCH = 64, 400, 50, 16


def train_db():
    con = connect(":memory:")
    con.execute("CREATE TABLE s(id INTEGER, t INTEGER, v REAL)")
    con.execute("INSERT INTO s WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
                "SELECT a.i, b.i, sin(a.i * 0.37 + b.i * 0.05) + 0.1 * cos(b.i * 1.7) FROM n a, n b "
                "WHERE a.i < %d" % (TRAIN_STEPS - 1, TRAIN_SERIES))
    return con


def torch_train_steps(blob, x, epochs):
    """Seconds for `epochs` epochs of the same training in torch: windows x [N, W, 1] (inputs, targets one step on),
    batches of TRAIN_BATCH in a shuffled order, Adam lr 0.001, clip 1.0."""
    import torch
    import train_ref
    torch.set_num_threads(os.cpu_count() or 1)
    model, _ = train_ref.build(blob)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    inp, tgt = x[:, :-1], x[:, 1:]
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(inp.shape[0])
        for a in range(0, inp.shape[0], TRAIN_BATCH):
            idx = order[a:a + TRAIN_BATCH]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(inp[idx]), tgt[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    return time.perf_counter() - t0


def part7():
    print("\n## 7. Training: sequence-steps per second, rnn_train (1 thread, all threads) against torch (all cores)\n")
    print("%d series x %d steps, task next, windows of %d steps, batches of %d, Adam, clip 1.0; a sequence-step is "
          "one step of one window, forward and backward.\n" % (TRAIN_SERIES, TRAIN_STEPS, TRAIN_WINDOW, TRAIN_BATCH))
    con = train_db()
    rows = con.execute("SELECT v FROM s ORDER BY id, t").fetchall()
    try:
        import torch
    except ImportError:
        torch = None
    cores = os.cpu_count() or 1
    print("| model | rnn_train steps/s, 1 thread | rnn_train steps/s, %d threads | torch steps/s (%s threads) | "
          "rnn_train / torch (1, %d) |\n|---|---|---|---|---|" % (cores, cores if torch else "-", cores))

    def train_with(threads, blob, opts, epochs):
        old = os.environ.get("SQLITE_RNN_THREADS")
        os.environ["SQLITE_RNN_THREADS"] = str(threads)
        try:
            t0 = time.perf_counter()
            con.execute("SELECT count(*) FROM rnn_train(?, 'SELECT id, t, v FROM s', ?)", (blob, opts)).fetchall()
            return steps_per_epoch * epochs / (time.perf_counter() - t0)
        finally:
            if old is None:
                del os.environ["SQLITE_RNN_THREADS"]
            else:
                os.environ["SQLITE_RNN_THREADS"] = old

    steps_per_epoch = TRAIN_SERIES * (TRAIN_STEPS - 1)
    for cell in ("gru", "lstm"):
        for hidden in (8, 32, 64):
            spec = json.dumps({"cell": cell, "input_size": 1, "hidden_size": hidden, "output_size": 1, "seed": 1})
            blob = con.execute("SELECT rnn_init(?)", (spec,)).fetchone()[0]
            epochs = max(2, 512 // hidden)
            opts = json.dumps({"epochs": epochs, "window": TRAIN_WINDOW, "batch_size": TRAIN_BATCH, "clip": 1.0,
                               "val_fraction": 0, "standardize": False})
            ours = train_with(1, blob, opts, epochs)
            all_ = train_with(cores, blob, opts, epochs)
            if torch is None:
                print("| %s(1->%d) | %.0f | %.0f | (python3-torch not installed) | |" % (cell.upper(), hidden, ours, all_))
                continue
            # the same windows: each series' 400 rows give 399 steps, cut into 50-step windows (the last 49)
            series = torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(TRAIN_SERIES, TRAIN_STEPS, 1)
            full = [series[:, a:a + TRAIN_WINDOW + 1] for a in range(0, TRAIN_STEPS - 1, TRAIN_WINDOW)]
            x = torch.cat([w for w in full if w.shape[1] == TRAIN_WINDOW + 1])
            t_epochs = max(1, epochs // 4)          # torch is slower: fewer epochs measure its rate
            seconds = torch_train_steps(bytes(blob), x, t_epochs)
            theirs = x.shape[0] * TRAIN_WINDOW * t_epochs / seconds
            print("| %s(1->%d) | %.0f | %.0f | %.0f | %.2f, %.2f |"
                  % (cell.upper(), hidden, ours, all_, theirs, ours / theirs, all_ / theirs))


def main():
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, "series.db")
    parts = set(sys.argv[1:]) or {"1", "2", "3", "4", "5", "6", "7"}
    print("# sqlite-rnn bench: %s, %d cores, SQLite %s, Python %s" % (
        cpu_name(), os.cpu_count(), sqlite3.sqlite_version, platform.python_version()))
    kcon = connect(":memory:")
    kernel = json.loads(kcon.execute("SELECT rnn_info(?)", (models.recurrent("gru", 1, 8, head=1),)).fetchone()[0])
    print("CPU path in use: %s" % kernel["kernel"])
    con = None
    if parts & {"1", "3", "4", "6"}:
        make_db(path)
        con = connect(path)
    if "1" in parts:
        part1(con)
        part1_memory(path)
    if "2" in parts:
        part2()
    if "3" in parts:
        part3(path, con)
    if "4" in parts:
        part4(path)
    if "5" in parts:
        part5()
    if "6" in parts:
        part6(con)
    if "7" in parts:
        part7()


if __name__ == "__main__":
    main()
