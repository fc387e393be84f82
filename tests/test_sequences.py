"""Whole sequences against PyTorch: rnn_eval, rnn_steps and rnn_forecast on tests/fixtures/sequences (made by
tests/gen_sequences.py: every cell, unidirectional and bidirectional, 1-3 layers, with and without a head, sequences
of 1, 2 and 50 steps; forecast models with n_out == n_in).

  - rnn_eval(model, seq) equals torch's output after the whole sequence (bidirectional: head(output[T-1]));
  - rnn_steps(model, seq) gives steps 0..T-1 in order, echoes each input, and its output and hidden (the last
    layer's output[t] as float32, cat(forward_t, backward_t) for bidirectional models) equal torch's per step;
  - rnn_forecast(model, seq, horizon) equals torch's loop that feeds each de-standardised output back in;
  - the model as a BLOB parameter and by name from rnn_models give the same;
  - the encodings of one sequence (JSON numbers, JSON arrays, float32 BLOB) give bit-identical results;
  - rnn_steps / rnn_forecast joined with a table of sequences give per row what a call per sequence gives;
  - with torch installed, freshly drawn random models (seed from the clock, shown in every label) agree too.
Tolerance (docs/DESIGN.md): |ours - torch| <= 2e-5 * max(1, |torch|, output_std) for outputs; hidden states, which
standardisation does not scale, use max(1, |torch|).
"""
import json
import os
import struct
import tempfile
import time

from rnnlib import FIXTURES, Skip, connect, f32_blob, f32_list, have_torch, one
from test_conformance import as_vector, compare

SEQUENCES = os.path.join(FIXTURES, "sequences")


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def load(directory=SEQUENCES):
    """(steps cases, forecast cases), each [(name, model blob, record)] in the order of expected.json."""
    with open(os.path.join(directory, "expected.json")) as f:
        expected = json.load(f)
    out = []
    for kind in ("steps", "forecast"):
        cases = []
        for name, record in expected[kind].items():
            with open(os.path.join(directory, name + ".safetensors"), "rb") as f:
                cases.append((name, f.read(), record))
        out.append(cases)
    return out


def open_models(models):
    """A connection with rnn_models holding {name: blob}."""
    con = connect()
    con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
    con.executemany("INSERT INTO rnn_models VALUES (?, ?)", list(models.items()))
    return con


def encodings(inputs):
    """{label: SQL value} for one sequence [[x per feature] per step]: every accepted encoding of it."""
    flat = [v for step in inputs for v in step]
    enc = {"json arrays": json.dumps(inputs), "f32 blob": f32_blob(flat)}
    if len(inputs[0]) == 1:
        enc["json numbers"] = json.dumps(flat)
    return enc


def json_sequence(inputs):
    """The natural JSON encoding: numbers for one feature, arrays for several."""
    return json.dumps([s[0] for s in inputs] if len(inputs[0]) == 1 else inputs)


# --- rnn_eval and rnn_steps against torch -------------------------------------------------------------------------

def check_steps(con, model, seq, record, inputs, outputs, hidden, what):
    n_in, n_out, width = record["n_in"], record["n_out"], record["width"]
    T = len(inputs)
    scale = record["output_std_max"]
    got = as_vector(one(con, "SELECT rnn_eval(?, ?)", (model, seq)), n_out, what + " rnn_eval")
    compare([got], [outputs[-1]], scale, what + " rnn_eval")

    rows = con.execute("SELECT step, input, output, hidden FROM rnn_steps(?, ?)", (model, seq)).fetchall()
    assert [r[0] for r in rows] == list(range(T)), "%s: steps %r, want 0..%d" % (what, [r[0] for r in rows], T - 1)
    for t, r in enumerate(rows):
        echo = as_vector(r[1], n_in, "%s rnn_steps input step %d" % (what, t))
        assert [f32(v) for v in echo] == [f32(v) for v in inputs[t]], "%s: input at step %d is %r, want %r" % (
            what, t, r[1], inputs[t])
        assert isinstance(r[3], bytes) and len(r[3]) == 4 * width, "%s: hidden at step %d is %r, want %d float32" % (
            what, t, r[3], width)
    compare([as_vector(r[2], n_out, "%s rnn_steps output step %d" % (what, t)) for t, r in enumerate(rows)],
            outputs, scale, what + " rnn_steps output")
    compare([f32_list(r[3]) for r in rows], hidden, 1.0, what + " rnn_steps hidden")
    # rnn_eval is the last row of rnn_steps, exactly
    assert rows[-1][2] == one(con, "SELECT rnn_eval(?, ?)", (model, seq)), what


def check_steps_case(name, blob, record, what):
    con = open_models({name: blob})
    try:
        for seq_rec in record["sequences"]:
            inputs = seq_rec["inputs"]
            label = "%s T=%d" % (what, len(inputs))
            for model, how in ((blob, "blob"), (name, "by name")):
                check_steps(con, model, json_sequence(inputs), record, inputs, seq_rec["outputs"],
                            seq_rec["hidden"], "%s (%s)" % (label, how))
    finally:
        con.close()


def test_steps_match_torch():
    for name, blob, record in load()[0]:
        yield name, lambda name=name, blob=blob, record=record: check_steps_case(name, blob, record, name)


# --- rnn_forecast against torch -----------------------------------------------------------------------------------

def forecast_rows(con, model, seq, horizon):
    return con.execute("SELECT step, output FROM rnn_forecast(?, ?, ?)", (model, seq, horizon)).fetchall()


def check_forecast_case(name, blob, record, what):
    con = open_models({name: blob})
    try:
        n_out, H = record["n_out"], record["horizon"]
        seq = json_sequence(record["inputs"])
        for model, how in ((blob, "blob"), (name, "by name")):
            w = "%s (%s)" % (what, how)
            rows = forecast_rows(con, model, seq, H)
            assert [r[0] for r in rows] == list(range(1, H + 1)), "%s: steps %r, want 1..%d" % (
                w, [r[0] for r in rows], H)
            compare([as_vector(r[1], n_out, "%s step %d" % (w, r[0])) for r in rows], record["outputs"],
                    record["output_std_max"], w)
            # step 1 is rnn_eval of the sequence; a shorter horizon is a prefix of a longer one
            assert rows[0][1] == one(con, "SELECT rnn_eval(?, ?)", (model, seq)), w
            for h in (1, 2, 7):
                assert forecast_rows(con, model, seq, h) == rows[:h], "%s: horizon %d is no prefix" % (w, h)
    finally:
        con.close()


def test_forecast_matches_torch():
    for name, blob, record in load()[1]:
        yield name, lambda name=name, blob=blob, record=record: check_forecast_case(name, blob, record, name)


# --- encodings ----------------------------------------------------------------------------------------------------

def check_encodings(blob, inputs, what, horizon=None):
    """Every encoding of inputs gives exactly the same rnn_eval, rnn_steps (and rnn_forecast) results."""
    con = connect()
    try:
        results = {}
        for label, seq in encodings(inputs).items():
            res = [one(con, "SELECT rnn_eval(?, ?)", (blob, seq)),
                   con.execute("SELECT step, input, output, hidden FROM rnn_steps(?, ?)", (blob, seq)).fetchall()]
            if horizon:
                res.append(forecast_rows(con, blob, seq, horizon))
            results[label] = res
        first_label, first = next(iter(results.items()))
        assert len(first[1]) == len(inputs), (what, first[1])
        for label, res in results.items():
            for k, fn in enumerate(("rnn_eval", "rnn_steps", "rnn_forecast")[:len(res)]):
                assert res[k] == first[k], "%s: %s with %s gives %r, with %s %r" % (
                    what, fn, label, res[k], first_label, first[k])
    finally:
        con.close()


def test_encodings_identical():
    steps, forecasts = load()
    for name, blob, record in steps:
        for seq_rec in record["sequences"]:
            inputs = seq_rec["inputs"]
            yield "%s T=%d" % (name, len(inputs)), lambda blob=blob, inputs=inputs, w=name: check_encodings(
                blob, inputs, w)
    for name, blob, record in forecasts:
        yield name, lambda blob=blob, record=record, w=name: check_encodings(
            blob, record["inputs"], w, record["horizon"])


def test_one_feature_spellings():
    """For one feature, [1,2] and [[1],[2]] are the same sequence, also with integers and in a BLOB."""
    steps = {name: blob for name, blob, record in load()[0] if record["n_in"] == 1}
    con = connect()
    for name, blob in steps.items():
        seqs = ["[1, 2, -3]", "[[1], [2], [-3]]", "[1.0, 2.0, -3.0]", "[[1.0],[2.0],[-3.0]]", f32_blob([1, 2, -3])]
        res = [con.execute("SELECT rnn_eval(?1, ?2), (SELECT json_group_array(json_array(step, input, output, "
                           "hex(hidden))) FROM rnn_steps(?1, ?2))", (blob, s)).fetchall() for s in seqs]
        assert all(r == res[0] for r in res), (name, res)


# --- joins --------------------------------------------------------------------------------------------------------

def _join_fixture():
    """A connection with rnn_models (a bidirectional I=3 model 'm', a unidirectional I=1 'u', forecast 'f') and
    seqs(id, model, seq): sequences of mixed encodings and lengths, and a NULL sequence (no rows)."""
    steps, forecasts = load()
    by_name = {name: (blob, record) for name, blob, record in steps + forecasts}
    m_blob, m_rec = by_name["bi_lstm_proj_i3_h6_p3_l2_head2"]
    u_blob, u_rec = by_name["bi_gru_i1_h4_l3_head1"]
    f_blob, f_rec = by_name["fc_gru_i1_h8_head1_std"]
    con = open_models({"m": m_blob, "u": u_blob, "f": f_blob, "uni": by_name["tanh_i1_h7_head1"][0]})
    con.execute("CREATE TABLE seqs(id INTEGER PRIMARY KEY, model TEXT, seq)")
    rows = []
    for k, seq_rec in enumerate(m_rec["sequences"]):
        enc = list(encodings(seq_rec["inputs"]).values())
        rows.append((10 + k, "m", enc[k % len(enc)]))
    for k, seq_rec in enumerate(u_rec["sequences"]):
        enc = list(encodings(seq_rec["inputs"]).values())
        rows.append((20 + k, "u", enc[k % len(enc)]))
    rows.append((30, "u", None))
    rows.append((31, "uni", json.dumps(f_rec["inputs"])))
    rows.append((32, "f", f32_blob([v[0] for v in f_rec["inputs"]])))
    con.executemany("INSERT INTO seqs VALUES (?, ?, ?)", rows)
    return con, {"m": m_blob, "u": u_blob, "f": f_blob}


def check_join_named(model):
    """SELECT s.id, f.step, f.output FROM seqs AS s, rnn_steps('<model>', s.seq) AS f equals the calls per row."""
    con, _ = _join_fixture()
    ids = [r[0] for r in con.execute("SELECT id FROM seqs WHERE model = ? ORDER BY id", (model,))]
    got = con.execute("SELECT s.id, f.step, f.output FROM seqs AS s, rnn_steps(?, s.seq) AS f WHERE s.model = ?",
                      (model, model)).fetchall()
    want = []
    for i in ids:
        seq = one(con, "SELECT seq FROM seqs WHERE id = ?", (i,))
        want += [(i,) + r for r in con.execute("SELECT step, output FROM rnn_steps(?, ?)", (model, seq))]
    assert sorted(got) == sorted(want) and len(got) == len(want), (got, want)
    assert len(want) > 0


def check_join_model_column():
    """Model and sequence both from the row (the name from seqs, the BLOB through a join with rnn_models)."""
    con, blobs = _join_fixture()
    got = con.execute("SELECT s.id, f.step, f.output, f.hidden FROM seqs AS s, rnn_steps(s.model, s.seq) AS f "
                      "WHERE s.model != 'f' ORDER BY s.id, f.step").fetchall()
    via_blob = con.execute("SELECT s.id, f.step, f.output, f.hidden FROM seqs AS s JOIN rnn_models AS r "
                           "ON r.name = s.model, rnn_steps(r.model, s.seq) AS f WHERE s.model != 'f' "
                           "ORDER BY s.id, f.step").fetchall()
    want = []
    for i, model, seq in con.execute("SELECT id, model, seq FROM seqs WHERE model != 'f' ORDER BY id").fetchall():
        want += [(i,) + r for r in con.execute(
            "SELECT step, output, hidden FROM rnn_steps(?, ?)", (blobs.get(model, model), seq))]
    assert got == want, (got[:5], want[:5])
    assert via_blob == want, (via_blob[:5], want[:5])
    assert {r[0] for r in want} == {10, 11, 12, 20, 21, 22, 31}, {r[0] for r in want}


def check_join_counts():
    """A correlated subquery sees each row's own sequence; a NULL sequence has no steps."""
    con, _ = _join_fixture()
    got = con.execute("SELECT id, (SELECT count(*) FROM rnn_steps(s.model, s.seq)) FROM seqs AS s "
                      "WHERE model IN ('m', 'u') ORDER BY id").fetchall()
    assert got == [(10, 1), (11, 2), (12, 50), (20, 1), (21, 2), (22, 50), (30, 0)], got


def check_join_forecast():
    """rnn_forecast in a join equals one call per row."""
    con, _ = _join_fixture()
    got = con.execute("SELECT s.id, f.step, f.output FROM seqs AS s, rnn_forecast('f', s.seq, 5) AS f "
                      "WHERE s.id IN (31, 32) ORDER BY s.id, f.step").fetchall()
    want = []
    for i in (31, 32):
        seq = one(con, "SELECT seq FROM seqs WHERE id = ?", (i,))
        want += [(i,) + r for r in forecast_rows(con, "f", seq, 5)]
    assert got == want and len(got) == 10, (got, want)
    # both rows hold the same sequence (JSON arrays and a BLOB): the same forecast
    assert [r[1:] for r in got[:5]] == [r[1:] for r in got[5:]], got


def test_join():
    yield "rnn_steps('m', s.seq) bidirectional", lambda: check_join_named("m")
    yield "rnn_steps('u', s.seq) with a NULL sequence", lambda: check_join_named("u")
    yield "rnn_steps(s.model, s.seq) and a BLOB from rnn_models", check_join_model_column
    yield "correlated count(*)", check_join_counts
    yield "rnn_forecast('f', s.seq, 5)", check_join_forecast


# --- fresh random models ------------------------------------------------------------------------------------------

def test_fresh_random_models():
    if not have_torch():
        raise Skip("torch not installed")
    return _fresh_cases()


def _fresh_cases():
    import gen_sequences
    seed = int(time.time())
    with tempfile.TemporaryDirectory() as d:
        gen_sequences.write(gen_sequences.random_specs(seed, 12), gen_sequences.random_forecast_specs(seed, 4), d,
                            seed)
        steps, forecasts = load(d)
    for name, blob, record in steps:
        what = "seed %d: %s" % (seed, name)
        yield what, lambda name=name, blob=blob, record=record, what=what: check_steps_case(name, blob, record, what)
        yield what + " encodings", lambda blob=blob, record=record, what=what: [
            check_encodings(blob, s["inputs"], what) for s in record["sequences"]]
    for name, blob, record in forecasts:
        what = "seed %d: %s" % (seed, name)
        yield what, lambda name=name, blob=blob, record=record, what=what: check_forecast_case(
            name, blob, record, what)
