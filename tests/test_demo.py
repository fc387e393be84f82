"""The demo of `make demo` (sql/demo.sql, model sql/demo_model.safetensors made by sql/train_demo.py).

The demo's SQL runs here through Python's sqlite3 as the shell runs it: the lines that start with '.'
(shell commands) are skipped and readfile() is supplied. Checked: the data is exactly what
sql/train_demo.py's generator makes (the model was trained on that generator), the injected faults are
where the demo says and are the readings the model finds most surprising, every prediction equals
PyTorch's (live when torch is importable, else tests/fixtures/demo_expected.json, which the training
script writes), and the real sqlite3 shell runs the file as `make demo` does.
"""
import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile

from rnnlib import EXT, FIXTURES, ROOT, Skip, assert_close, connect, have_torch, one

T0 = 1709251200                          # 2024-03-01 00:00 UTC
STEPS = 4320                             # 30 days, every 10 minutes
OUTPUT_STD = 6.5                         # the model's output_std: the scale of the tolerance
MODEL = os.path.join(ROOT, "sql", "demo_model.safetensors")
EXPECTED = os.path.join(FIXTURES, "demo_expected.json")


def at(day, hh, mm):
    """Unix time of 2024-03-<day> hh:mm UTC."""
    return T0 + (day - 1) * 86400 + hh * 3600 + mm * 60


# The faults that sql/demo.sql injects, and where the model must notice them first.
SPIKE = ("hot-a2", at(6, 14, 20))        # +7.5 for one reading
DIP = ("cold-b1", at(11, 3, 40))         # -6 for one reading
STEP = ("hot-b1", at(17, 9, 0))          # +4 from then on
STUCK = ("hot-b2", at(23, 5, 0))         # repeats its 04:50 reading until 14:50 ...
RECOVERY = ("hot-b2", at(23, 15, 0))     # ... and is noticed when it comes back

_train_demo = None
_demo = None


def train_demo():
    """sql/train_demo.py as a module (it imports torch only inside the functions that need it)."""
    global _train_demo
    if _train_demo is None:
        spec = importlib.util.spec_from_file_location("train_demo", os.path.join(ROOT, "sql", "train_demo.py"))
        _train_demo = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_train_demo)
    return _train_demo


def demo():
    """A connection on which all of sql/demo.sql has run (once per test run)."""
    global _demo
    if _demo is None:
        td = train_demo()
        con = connect()
        td.add_readfile(con)
        sections = td.demo_sections()
        assert sorted(sections) == [0, 1, 2, 3, 4], sorted(sections)
        con.executescript("".join(sections[k] for k in sorted(sections)))
        _demo = con
    return _demo


def series(con):
    out = {}
    for device, t, temp in con.execute("SELECT device, t, temp FROM readings ORDER BY device, t"):
        out.setdefault(device, []).append((t, temp))
    return out


def test_data_is_the_generators():
    """Section 1 alone (no extension): 8 sensors x 4320 readings, equal to the training generator's except
    the faults, which are exactly as documented."""
    td = train_demo()
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.executescript(td.demo_sections()[1])
    assert one(con, "SELECT count(*) FROM readings") == 8 * STEPS
    data = series(con)
    assert sorted(data) == sorted(s[0] for s in td.SENSORS)
    gen = td.generate()
    faulty = set()
    for device, rows in data.items():
        assert [t for t, _ in rows] == [T0 + 600 * k for k in range(STEPS)], device
        clean = gen[device]
        for k, (t, temp) in enumerate(rows):
            want = clean[k]
            if (device, t) in (SPIKE,):
                want += 7.5
            elif (device, t) == DIP:
                want -= 6.0
            elif device == STEP[0] and t >= STEP[1]:
                want += 4.0
            elif device == STUCK[0] and STUCK[1] <= t < RECOVERY[1]:
                want = clean[(STUCK[1] - T0) // 600 - 1]
            if temp != clean[k]:
                faulty.add((device, t))
            assert temp == want, (device, t, temp, want)
    # every reading is a multiple of 1/16 degree, within a plausible range
    assert all(temp * 16 == int(temp * 16) and 10 < temp < 45 for rows in data.values() for _, temp in rows)
    assert SPIKE in faulty and DIP in faulty and STEP in faulty and RECOVERY not in faulty
    assert one(con, "SELECT count(*) FROM faults") == 4


def test_model_blob():
    """The committed model: a few KB of float32 safetensors with PyTorch's names and the standardisation."""
    size = os.path.getsize(MODEL)
    assert 1000 < size < 16384, size
    raw = open(MODEL, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    shapes = {k: v["shape"] for k, v in header.items()}
    assert shapes == {"rnn.weight_ih_l0": [48, 1], "rnn.weight_hh_l0": [48, 16], "rnn.bias_ih_l0": [48],
                      "rnn.bias_hh_l0": [48], "fc.weight": [1, 16], "fc.bias": [1]}, shapes
    assert all(v["dtype"] == "F32" for v in header.values())
    assert 8 + n + 4 * 929 == size
    for key in ("input_mean", "input_std", "output_mean", "output_std"):
        assert len(json.loads(meta[key])) == 1, (key, meta[key])
    assert json.loads(meta["output_std"]) == [OUTPUT_STD]
    assert meta["description"]


def test_scores_every_row():
    con = demo()
    assert one(con, "SELECT count(*) FROM scored") == 8 * STEPS
    assert one(con, "SELECT count(DISTINCT device) FROM scored") == 8
    # no forecast before a sensor's first reading; one for every other reading
    assert one(con, "SELECT count(*) FROM scored WHERE predicted IS NULL") == 8
    assert one(con, "SELECT count(*) FROM scored WHERE predicted IS NULL AND t <> ?", (T0,)) == 0
    assert one(con, "SELECT count(*) FROM scored WHERE typeof(predicted) = 'real'") == 8 * (STEPS - 1)
    mean = one(con, "SELECT avg(error) FROM scored")
    assert 0.05 < mean < 0.25, mean
    assert one(con, "SELECT model FROM rnn_models WHERE name = 'room_temp'") == open(MODEL, "rb").read()


def test_faults_are_the_top_surprises():
    """The four faults, in order of size, then only readings within the hour after a fault."""
    con = demo()
    top = con.execute("SELECT device, t, error FROM scored ORDER BY error DESC LIMIT 10").fetchall()
    assert [(d, t) for d, t, _ in top[:4]] == [SPIKE, DIP, STEP, RECOVERY], top
    windows = con.execute("SELECT device, t_from, t_to FROM faults").fetchall()
    for d, t, e in top:
        assert any(d == fd and a <= t <= b + 3600 for fd, a, b in windows), (d, t, e)
    # far from the rest: the largest surprise that no fault explains is small
    rest = one(con, "SELECT max(error) FROM scored AS s WHERE NOT EXISTS (SELECT 1 FROM faults AS f "
                    "WHERE f.device = s.device AND s.t BETWEEN f.t_from AND f.t_to + 3600)")
    assert rest < 1.5, rest
    # the stuck sensor is not surprising while it is stuck: a next-reading model cannot see it
    stuck = one(con, "SELECT max(error) FROM scored WHERE device = ? AND t > ? AND t < ?",
                (STUCK[0], STUCK[1] + 3600, RECOVERY[1]))
    assert stuck < 0.5, stuck
    want = json.load(open(EXPECTED))["top10"]
    assert [(d, t) for d, t, _ in top] == [(w["device"], w["t"]) for w in want]
    for (d, t, e), w in zip(top, want):
        assert_close(e, w["error"], scale=OUTPUT_STD, what="error %s %d" % (d, t))


def test_predictions_match_fixture():
    """rnn_predict at the rows the training script saved (first readings, day boundaries, around each
    fault), against its step-by-step torch forward of the exported file."""
    con = demo()
    exp = json.load(open(EXPECTED))
    assert exp["model_sha256"] == hashlib.sha256(open(MODEL, "rb").read()).hexdigest(), \
        "tests/fixtures/demo_expected.json is not of the committed model: re-run sql/train_demo.py"
    assert exp["rows"] == 8 * STEPS and exp["sensors"] == 8
    assert len(exp["next_temp"]) >= 50
    for e in exp["next_temp"]:
        temp, got = con.execute("SELECT temp, predicted FROM scored WHERE device = ? AND t = ?",
                                (e["device"], e["t"] + 600)).fetchone() or (None, None)
        if e["t"] == T0 + 600 * (STEPS - 1):         # the forecast after the last reading: not in scored
            got = one(con, "SELECT rnn_predict('room_temp', temp) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) "
                           "FROM readings WHERE device = ? ORDER BY t DESC LIMIT 1", (e["device"],))
        else:
            assert one(con, "SELECT temp FROM readings WHERE device = ? AND t = ?", (e["device"], e["t"])) \
                == e["temp"]
        assert_close(got, e["next_temp"], scale=OUTPUT_STD, what="%s %d" % (e["device"], e["t"]))
    assert_close(one(con, "SELECT avg(error) FROM scored"), exp["mean_error"], scale=OUTPUT_STD)


def test_predictions_match_torch():
    """Every one of the 34,560 forecasts against torch's nn.GRU loaded from the committed file."""
    if not have_torch():
        raise Skip("torch not installed (test_predictions_match_fixture covers saved rows)")
    con = demo()
    data = series(con)
    devices = sorted(data)
    want = train_demo().torch_forward(MODEL, [[temp for _, temp in data[d]] for d in devices])
    got = {}
    for device, t, p in con.execute("SELECT device, t, predicted FROM scored WHERE predicted IS NOT NULL"):
        got[(device, t)] = p
    for d, w in zip(devices, want):
        for k in range(1, STEPS):
            assert_close(got[(d, T0 + 600 * k)], w[k - 1], scale=OUTPUT_STD, what="%s k=%d" % (d, k))


def test_shell_runs_the_demo():
    """`make demo`: the sqlite3 shell runs sql/demo.sql from the repository root and prints the faults."""
    shell = shutil.which("sqlite3")
    if not shell:
        raise Skip("no sqlite3 shell")
    if os.path.abspath(EXT) != os.path.join(ROOT, "rnn") or not any(
            os.path.exists(os.path.join(ROOT, "rnn" + s)) for s in (".so", ".dylib", ".dll")):
        raise Skip("the demo loads ./rnn from the repository root, not RNN_EXT=%s" % EXT)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(ROOT, "sql", "demo.sql"), "rb") as f:
            res = subprocess.run([shell, os.path.join(tmp, "demo.db")], stdin=f, cwd=ROOT,
                                 capture_output=True, timeout=300)
    out, err = res.stdout.decode("utf-8"), res.stderr.decode("utf-8")
    assert res.returncode == 0 and not err, (res.returncode, err)
    assert "34560 readings from 8 sensors, 2024-03-01 00:00 to 2024-03-30 23:50" in out, out
    lines = [line for line in out.splitlines() if line.startswith("\u2502 ")]
    assert len(lines) == 11, out                      # header + 10 rows
    for line, want in zip(lines[1:5], ["\u2502 hot-a2  \u2502 2024-03-06 14:20",
                                       "\u2502 cold-b1 \u2502 2024-03-11 03:40",
                                       "\u2502 hot-b1  \u2502 2024-03-17 09:00",
                                       "\u2502 hot-b2  \u2502 2024-03-23 15:00"]):
        assert line.startswith(want), (line, want)
    for label in ("spike +7.5", "dip -6", "step +4", "stuck 05:00-14:50"):
        assert label in out, (label, out)
