"""Conformance with PyTorch: every case of tests/fixtures/conformance (made by tests/gen_conformance.py) through SQL.

For each model and its 300-step input sequence, stored in a table seq(t INTEGER PRIMARY KEY, x1 REAL, ...):
  - rnn_predict(model, x1, ...) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) at row t equals torch's output after
    steps 0..t, with the model given as a BLOB parameter and by name from rnn_models;
  - rnn_hidden(...) over the whole sequence equals torch's final last-layer hidden state (a float32 BLOB);
  - tests/ref.py, the pure-Python oracle, agrees with the same fixtures (no extension needed);
  - with torch installed, freshly drawn random models (seed from the clock, shown in every label) agree too.
Tolerance (docs/DESIGN.md): |ours - torch| <= 2e-5 * max(1, |torch|, output_std).
"""
import json
import os
import tempfile
import time

import ref
from rnnlib import FIXTURES, Skip, assert_close, connect, f32_list, have_torch

CONFORMANCE = os.path.join(FIXTURES, "conformance")
TOL = 2e-5


def load_cases(directory=CONFORMANCE):
    """[(name, model blob, expected record)] in the order of expected.json."""
    with open(os.path.join(directory, "expected.json")) as f:
        expected = json.load(f)
    cases = []
    for name, record in expected.items():
        with open(os.path.join(directory, name + ".safetensors"), "rb") as f:
            cases.append((name, f.read(), record))
    return cases


def features(record):
    return ", ".join("x%d" % (k + 1) for k in range(len(record["inputs"][0])))


def open_sequence(record, blob=None, name=None):
    """A connection holding temp table seq with the record's inputs, and rnn_models with the model if named."""
    con = connect()
    cols = features(record)
    con.execute("CREATE TEMP TABLE seq(t INTEGER PRIMARY KEY, %s)" % ", ".join(
        c + " REAL" for c in cols.split(", ")))
    con.executemany("INSERT INTO seq VALUES (?, %s)" % ", ".join("?" * len(record["inputs"][0])),
                    [[t] + x for t, x in enumerate(record["inputs"])])
    if name is not None:
        con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
        con.execute("INSERT INTO rnn_models VALUES (?, ?)", (name, blob))
    return con


def as_vector(value, n_out, what):
    """rnn_predict's value as a list: REAL for one output, else a JSON array of n_out numbers."""
    if n_out == 1:
        assert isinstance(value, float), "%s: expected a REAL, got %r" % (what, value)
        return [value]
    assert isinstance(value, str), "%s: expected a JSON array, got %r" % (what, value)
    vec = json.loads(value)
    assert isinstance(vec, list) and len(vec) == n_out, "%s: expected %d outputs, got %r" % (what, n_out, value)
    return vec


def compare(got, want, scale, what):
    """Every step within tolerance; on failure, name the first bad step and the worst error in units of the limit."""
    assert len(got) == len(want), "%s: %d steps, want %d" % (what, len(got), len(want))
    bad = []
    worst = 0.0
    for t, (g_step, w_step) in enumerate(zip(got, want)):
        for g, w in zip(g_step, w_step):
            ratio = abs(g - w) / (TOL * max(1.0, abs(w), scale))
            if not ratio <= 1.0:            # also catches NaN
                bad.append(t)
            worst = max(worst, ratio) if ratio == ratio else float("inf")
    if bad:
        t = bad[0]
        try:
            assert_close(got[t], want[t], TOL, scale, "%s step %d" % (what, t))
        except AssertionError as e:
            raise AssertionError("%s; %d bad values from step %d, worst %.3g x the tolerance" % (
                e, len(bad), t, worst)) from None


def check_predict(model, record, con, what):
    n_out = record["n_out"]
    sql = "SELECT rnn_predict(?, %s) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) FROM seq ORDER BY t" % (
        features(record))
    rows = con.execute(sql, (model,)).fetchall()
    got = [as_vector(r[0], n_out, "%s row %d" % (what, t)) for t, r in enumerate(rows)]
    compare(got, record["outputs"], record["output_std_max"], what)


def check_hidden(model, record, con, what):
    sql = ("SELECT rnn_hidden(?, %s) OVER (ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) "
           "FROM seq ORDER BY t LIMIT 1" % features(record))
    rows = con.execute(sql, (model,)).fetchall()
    assert len(rows) == 1 and isinstance(rows[0][0], bytes), "%s: expected a BLOB, got %r" % (what, rows)
    compare([f32_list(rows[0][0])], [record["hidden"]], 1.0, what)


def check_sql(name, blob, record, what):
    """rnn_predict with the BLOB and by name, and rnn_hidden, against torch."""
    con = open_sequence(record, blob, name)
    try:
        check_predict(blob, record, con, what + " (blob)")
        check_predict(name, record, con, what + " (by name)")
        check_hidden(name, record, con, what + " rnn_hidden")
    finally:
        con.close()


def check_ref(blob, record, what):
    model = ref.Model(blob)
    compare(model.run(record["inputs"]), record["outputs"], record["output_std_max"], what + " ref.py")
    compare([model.hidden(record["inputs"])], [record["hidden"]], 1.0, what + " ref.py hidden")


def test_sql_matches_torch():
    for name, blob, record in load_cases():
        yield name, lambda name=name, blob=blob, record=record: check_sql(name, blob, record, name)


def test_ref_matches_torch():
    for name, blob, record in load_cases():
        yield name, lambda name=name, blob=blob, record=record: check_ref(blob, record, name)


def test_fresh_random_models():
    if not have_torch():
        raise Skip("torch not installed")
    return _fresh_cases()


def _fresh_cases():
    import gen_conformance
    seed = int(time.time())
    with tempfile.TemporaryDirectory() as d:
        gen_conformance.write(gen_conformance.random_specs(seed, 12), d, seed)
        cases = load_cases(d)
    for name, blob, record in cases:
        what = "seed %d: %s" % (seed, name)
        yield what + " ref", lambda blob=blob, record=record, what=what: check_ref(blob, record, what)
        yield what + " sql", lambda name=name, blob=blob, record=record, what=what: check_sql(
            name, blob, record, what)
