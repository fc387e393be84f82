"""Metadata `readout`: what the head reads after a whole sequence, against PyTorch (tests/fixtures/readout, made
by tests/gen_readout.py from modules written the way PyTorch users write them).

  - final_states is fc(torch.cat((h_n[-2], h_n[-1]), 1)) for a bidirectional model (fc(h_n[-1]) for a
    unidirectional one); last_output (the default) is fc(output[:, -1]). rnn_eval, rnn_classify and
    rnn_forecast equal torch's for both, every cell, 1-3 layers, proj_size, with and without a head;
  - rnn_steps gives the final_states output on the last row and NULL before it (h_n exists once the whole
    sequence is read); `hidden` is output[t] whatever the readout;
  - for unidirectional models both readouts are the same computation: every function gives bit-identical
    results, rnn_predict windows and aggregates included;
  - the same bidirectional BLOB without `readout` gives torch's last_output answer, not final_states': the
    fixtures would fail without the key, which is why the exporter must ask for it;
  - a readout value other than the two is refused, naming both;
  - with torch installed, random bidirectional models of both readouts agree with torch on 1000 random
    sequences: outputs within tolerance and rnn_classify's label where torch's top two are apart.
Tolerance (docs/DESIGN.md): |ours - torch| <= 2e-5 * max(1, |torch|, output_std).
"""
import json
import os
import random
import time

import models
import st
from rnnlib import FIXTURES, Skip, connect, error_of, have_torch, one
from test_conformance import as_vector, compare, load_cases

READOUT = os.path.join(FIXTURES, "readout")


def load():
    return load_cases(READOUT)


def with_metadata(blob, **changes):
    """The BLOB with __metadata__ keys set (None: removed)."""
    tensors, meta = st.loads(blob)
    meta = dict(meta or {})
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    return st.dumps(tensors, meta or None)


def argmax_margin(vec):
    order = sorted(range(len(vec)), key=lambda i: -vec[i])
    return order[0], (vec[order[0]] - vec[order[1]]) if len(vec) > 1 else float("inf")


def check_sequence(con, blob, record, seq, what):
    """rnn_eval, rnn_classify and rnn_steps for one sequence against torch's output."""
    n_out, scale = record["n_out"], record["output_std_max"]
    text = json.dumps(seq["inputs"])
    value = one(con, "SELECT rnn_eval(?, ?)", (blob, text))
    compare([as_vector(value, n_out, what)], [seq["output"]], scale, what + " rnn_eval")
    best, margin = argmax_margin(seq["output"])
    if n_out > 1 and margin > 1e-4 * scale:
        want = record["labels"][best] if record["labels"] else best
        assert one(con, "SELECT rnn_classify(?, ?)", (blob, text)) == want, what + " rnn_classify"
    rows = con.execute("SELECT step, output FROM rnn_steps(?, ?)", (blob, text)).fetchall()
    T = len(seq["inputs"])
    assert [r[0] for r in rows] == list(range(T)), what
    assert rows[-1][1] == value, "%s: rnn_steps' last row %r, rnn_eval %r" % (what, rows[-1][1], value)
    early = [r[1] for r in rows[:-1]]
    if record["bidirectional"] and record["readout"] == "final_states":
        assert early == [None] * (T - 1), "%s: rnn_steps before the last row: %r" % (what, early)
    else:
        assert None not in early, what


def test_fixtures_against_torch():
    for name, blob, record in load():
        for seq in record["sequences"]:
            what = "%s T=%d" % (name, len(seq["inputs"]))
            yield what, (lambda b=blob, r=record, s=seq, w=what: check_sequence(connect(), b, r, s, w))
        if record["forecast"]:
            def forecast(b=blob, r=record, name=name):
                fc = r["forecast"]
                rows = connect().execute("SELECT step, output FROM rnn_forecast(?, ?, ?)",
                                         (b, json.dumps(fc["inputs"]), len(fc["outputs"]))).fetchall()
                assert [s for s, _ in rows] == list(range(1, len(fc["outputs"]) + 1)), name
                compare([as_vector(v, r["n_out"], name) for _, v in rows], fc["outputs"], r["output_std_max"],
                        name + " rnn_forecast")
            yield name + " rnn_forecast", forecast


def test_bidirectional_needs_the_key():
    """Without `readout` a final_states model gives fc(output[:, -1]): the torch answers differ, so the fixtures
    test the key, and with readout=last_output the result is the keyless one bit for bit."""
    con = connect()
    for name, blob, record in load():
        if not (record["bidirectional"] and record["readout"] == "final_states"):
            continue
        seq = record["sequences"][-1]
        text = json.dumps(seq["inputs"])
        keyless = one(con, "SELECT rnn_eval(?, ?)", (with_metadata(blob, readout=None), text))
        explicit = one(con, "SELECT rnn_eval(?, ?)", (with_metadata(blob, readout="last_output"), text))
        assert keyless == explicit, name
        got = as_vector(keyless, record["n_out"], name)
        assert max(abs(g - w) for g, w in zip(got, seq["output"])) > 1e-3, name


def test_hidden_does_not_depend_on_readout():
    con = connect()
    for name, blob, record in load():
        if not record["bidirectional"]:
            continue
        text = json.dumps(record["sequences"][-1]["inputs"])
        other = with_metadata(blob, readout="last_output" if record["readout"] == "final_states" else "final_states")
        q = "SELECT hidden FROM rnn_steps(?, ?)"
        assert con.execute(q, (blob, text)).fetchall() == con.execute(q, (other, text)).fetchall(), name


def test_unidirectional_readouts_are_identical():
    """h_n[-1] is the last output: every function gives the same bits under both readouts (and without the key)."""
    con = connect()
    con.execute("CREATE TABLE s(t INTEGER PRIMARY KEY, a REAL, b REAL)")
    rng = random.Random(7)
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(t, rng.uniform(-2, 2), rng.uniform(-2, 2)) for t in range(30)])
    seq = json.dumps([[a, b] for _, a, b in con.execute("SELECT * FROM s ORDER BY t")])
    queries = [
        ("rnn_eval", "SELECT rnn_eval(?1, ?2)"),
        ("rnn_classify", "SELECT rnn_classify(?1, ?2)"),
        ("rnn_steps", "SELECT json_group_array(json_array(step, output, hex(hidden))) FROM rnn_steps(?1, ?2)"),
        ("rnn_forecast", "SELECT json_group_array(output) FROM rnn_forecast(?1, ?2, 5)"),
        ("rnn_predict window", "SELECT json_group_array(p) FROM (SELECT rnn_predict(?1, a, b) "
                               "OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) AS p FROM s)"),
        ("rnn_predict sliding", "SELECT json_group_array(p) FROM (SELECT rnn_predict(?1, a, b) "
                                "OVER (ORDER BY t ROWS 4 PRECEDING) AS p FROM s)"),
        ("rnn_predict aggregate", "SELECT rnn_predict(?1, a, b) FROM (SELECT * FROM s ORDER BY t)"),
    ]
    for label, blob in [("lstm proj l2", models.recurrent("lstm", 2, 6, layers=2, proj=2, seed=3)),
                        ("gru l3 head", models.recurrent("gru", 2, 5, layers=3, head=2, seed=4)),
                        ("tanh head1", models.recurrent("rnn_tanh", 2, 4, head=1, seed=5))]:
        variants = [blob] + [with_metadata(blob, readout=r) for r in ("last_output", "final_states")]
        for qlabel, q in queries:
            if qlabel == "rnn_forecast" and label != "lstm proj l2":
                continue
            got = [one(con, q, (b, seq) if "?2" in q else (b,)) for b in variants]
            assert got[0] == got[1] == got[2], (label, qlabel, got)


def test_readout_value_refused():
    con = connect()
    blob = models.recurrent("gru", 1, 3, bidirectional=True, metadata={"readout": "h_n"})
    assert error_of(con, "SELECT rnn_eval(?, '[1]')", (blob,)) == \
        "rnn_eval(): invalid model: __metadata__ readout is 'h_n', expected one of last_output, final_states"


def test_info_shows_readout():
    con = connect()
    for name, blob, record in load():
        assert one(con, "SELECT json_extract(rnn_info(?), '$.readout')", (blob,)) == record["readout"], name
    assert one(con, "SELECT json_extract(rnn_info(?), '$.readout')", (models.recurrent("gru", 1, 3),)) == "last_output"


def test_torch_random():
    """Random bidirectional models of both readouts, 1000 random sequences in all, against torch. Freshly
    drawn each run (the seed is in each case's label), so the cases run inside this one test (tests/conftest.py:
    a test that returns an iterator of cases)."""
    if not have_torch():
        raise Skip("torch not installed")
    return _torch_random_cases()


def _torch_random_cases():
    import torch
    import gen_readout as g
    torch.set_num_threads(1)
    seed = int(time.time()) % 100000
    con = connect()
    cases = g.random_cases(seed, 8)
    per = 1000 // len(cases)
    checked = []   # labels compared, per model: some random models put their outputs too close to call
    for c in cases:
        def run(c=c):
            net, meta, blob = g.build(c)
            r = g.Runner(c, net, meta)
            rng = random.Random(c["name"])
            labels_checked = 0
            for k in range(per):
                x = g.inputs(c, r, rng.randint(1, 20), "/%d" % k)
                want = r.output(x).tolist()
                text = json.dumps(x.tolist())
                got = as_vector(one(con, "SELECT rnn_eval(?, ?)", (blob, text)), len(want), c["name"])
                compare([got], [want], r.output_std_max, "%s sequence %d" % (c["name"], k))
                best, margin = argmax_margin(want)
                if margin > 1e-4 * r.output_std_max:
                    assert one(con, "SELECT rnn_classify(?, ?)", (blob, text)) == best, (c["name"], k)
                    labels_checked += 1
            checked.append(labels_checked)
        yield "%s (seed %d, %s)" % (c["name"], seed, c["readout"]), run

    def enough_labels():
        assert len(checked) == len(cases) and sum(checked) > len(cases) * per // 4, (seed, checked)
    yield "labels compared on over a quarter of the sequences (seed %d)" % seed, enough_labels
