"""The training math (ext/params.c, ext/grad.c, ext/trainsql.c): rnn_init and the gradients of rnn_loss_grad.

  - rnn_init(spec) returns exactly the bytes of tests/gen_grad.py's reimplementation of the documented generator
    (splitmix64, PyTorch's bounds; README "Training"), loads, and rnn_info shows the spec;
  - every bad spec is refused with its exact message;
  - the loss, every gradient and the final states of rnn_loss_grad (through the internal rnn_grad_internal) equal
    torch autograd's float32 ones stored in tests/fixtures/grad/cases.json (made by tests/gen_grad.py: every cell,
    1-3 layers, proj_size, with and without bias and head, every output activation, MSE and cross-entropy, a target
    per step or per sequence, variable lengths, nonzero h0), and with torch installed on freshly drawn cases too;
  - parameters read back from models the exporter wrote (other prefixes, F16/BF16/F64) run the same forward pass
    as inference.
Tolerance of a gradient element: |ours - torch| <= 1e-4 * max(|torch|, 1% of the largest |torch| of its tensor)
+ |torch - torch64|, torch's own float32 error (torch64: torch autograd in float64 on the same float32 weights and
inputs; ours, with double accumulators, is within 1e-4 of it).
"""
import json
import os
import struct
import time

import gen_grad
import models
from rnnlib import FIXTURES, Skip, connect, error_of, f32_list, have_torch, one

CASES = os.path.join(FIXTURES, "grad", "cases.json")
TOL = 1e-4

SPECS = [
    {"cell": "gru", "input_size": 1, "hidden_size": 16, "output_size": 1, "seed": 7},
    {"cell": "rnn_tanh", "input_size": 3, "hidden_size": 5},
    {"cell": "rnn_relu", "input_size": 2, "hidden_size": 4, "num_layers": 3, "bias": False, "output_size": 2},
    {"cell": "lstm", "input_size": 2, "hidden_size": 6, "proj_size": 3, "num_layers": 2, "output_size": 4,
     "output_activation": "log_softmax", "seed": 10 ** 18 - 1},
    {"cell": "lstm", "input_size": 4, "hidden_size": 8, "num_layers": 2, "seed": 1},
    {"cell": "seed", "input_size": 3, "hidden_size": 4, "output_size": 2, "hidden_activation": "relu",
     "output_activation": "softmax", "seed": 3},
    {"cell": "seed", "input_size": 2, "hidden_size": 3, "output_size": 5, "bias": False},
]


def init(con, spec):
    return one(con, "SELECT rnn_init(?)", (json.dumps(spec),))


def test_init_bytes_match_the_documented_generator():
    con = connect()
    for spec in SPECS:
        def case(spec=spec):
            assert init(con, spec) == gen_grad.init_blob(spec)
        yield json.dumps(spec), case


def test_init_seed_changes_every_tensor():
    con = connect()
    a = init(con, {"cell": "gru", "input_size": 2, "hidden_size": 3, "seed": 1})
    b = init(con, {"cell": "gru", "input_size": 2, "hidden_size": 3, "seed": 2})
    assert len(a) == len(b) and a != b
    assert a == init(con, {"cell": "gru", "input_size": 2, "hidden_size": 3, "seed": 1})


def test_init_bounds_are_pytorchs():
    """Every value within PyTorch's bound of its tensor, and the draws spread over it."""
    for spec in SPECS:
        s = gen_grad.full_spec(spec)
        for (name, rows, cols, k), (_, _, vals) in zip(gen_grad.tensors(spec), gen_grad.init_tensors(spec)):
            assert all(abs(v) <= k for v in vals), name
        fan = s["hidden_size"] if s["cell"] != "seed" else s["input_size"] + s["hidden_size"]
        assert gen_grad.tensors(spec)[0][3] == 1 / fan ** 0.5


def test_init_loads_and_info_shows_the_spec():
    con = connect()
    for spec in SPECS:
        s = gen_grad.full_spec(spec)
        info = json.loads(one(con, "SELECT rnn_info(?)", (init(con, spec),)))
        want = {"cell": s["cell"], "input_size": s["input_size"], "hidden_size": s["hidden_size"],
                "proj_size": s["proj_size"], "num_layers": s["num_layers"], "bias": s["bias"],
                "output_size": gen_grad.out_width(spec), "head": bool(s["output_size"]) and s["cell"] != "seed",
                "output_activation": s["output_activation"], "bidirectional": False}
        assert {k: info[k] for k in want} == want, spec
        assert "warnings" not in info
        if s["cell"] == "seed":
            assert info["hidden_activation"] == s["hidden_activation"]


def test_init_scores_with_every_function():
    con = connect()
    con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
    con.execute("INSERT INTO rnn_models VALUES ('m', rnn_init('{\"cell\":\"lstm\",\"input_size\":1,"
                "\"hidden_size\":4,\"output_size\":1,\"seed\":5}'))")
    v = one(con, "SELECT rnn_eval('m', '[1, 2, 3]')")
    rows = con.execute("SELECT rnn_predict('m', x) OVER (ORDER BY t) FROM (SELECT 1 t, 1.0 x UNION ALL "
                       "SELECT 2, 2.0 UNION ALL SELECT 3, 3.0)").fetchall()
    assert isinstance(v, float) and rows[-1][0] == v


def test_init_is_deterministic_and_innocuous():
    """Usable in a view under trusted_schema=OFF (DETERMINISTIC|INNOCUOUS: depends on its argument alone)."""
    con = connect()
    con.execute("PRAGMA trusted_schema=OFF")
    con.execute("CREATE VIEW v AS SELECT length(rnn_init('{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2}'))"
                " AS n")
    assert one(con, "SELECT n FROM v") == len(gen_grad.init_blob({"cell": "gru", "input_size": 1,
                                                                   "hidden_size": 2}))


ERRORS = [
    ("NULL", "rnn_init(): spec must be JSON object text, got NULL"),
    ("x'00'", "rnn_init(): spec must be JSON object text, got BLOB"),
    ("'[1]'", "rnn_init(): spec must be a JSON object, got an array"),
    ("'{'", "rnn_init(): spec is not valid JSON: "),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"hiden\":3}'",
     "rnn_init(): unknown key 'hiden' in spec; known keys: cell, input_size, hidden_size, num_layers, proj_size, "
     "bias, output_size, output_activation, hidden_activation, seed"),
    ("'{\"cell\":\"gru\",\"input_size\":1}'",
     "rnn_init(): spec needs 'hidden_size' (required keys: cell, input_size, hidden_size)"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"seed\":1,\"seed\":2}'",
     "rnn_init(): spec is not valid JSON: duplicate key 'seed' at byte 60"),
    ("'{\"cell\":\"transformer\",\"input_size\":1,\"hidden_size\":2}'",
     "rnn_init(): cell is 'transformer', expected one of rnn_tanh, rnn_relu, lstm, gru, seed"),
    ("'{\"cell\":4,\"input_size\":1,\"hidden_size\":2}'",
     "rnn_init(): cell must be a string (one of rnn_tanh, rnn_relu, lstm, gru, seed), got a number"),
    ("'{\"cell\":\"gru\",\"input_size\":1.5,\"hidden_size\":2}'",
     "rnn_init(): input_size must be a non-negative integer, got 1.5"),
    ("'{\"cell\":\"gru\",\"input_size\":-1,\"hidden_size\":2}'",
     "rnn_init(): input_size must be a non-negative integer, got -1"),
    ("'{\"cell\":\"gru\",\"input_size\":\"3\",\"hidden_size\":2}'",
     "rnn_init(): input_size must be a non-negative integer, got a string"),
    ("'{\"cell\":\"gru\",\"input_size\":0,\"hidden_size\":2}'", "rnn_init(): input_size 0 is outside 1..65536"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":8193}'",
     "rnn_init(): hidden_size 8193 is outside 1..8192"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"num_layers\":17}'",
     "rnn_init(): num_layers 17 is outside 1..16"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"num_layers\":0}'",
     "rnn_init(): num_layers 0 is outside 1..16"),
    ("'{\"cell\":\"seed\",\"input_size\":1,\"hidden_size\":2,\"output_size\":1,\"num_layers\":2}'",
     "rnn_init(): num_layers must be 1 for cell seed, got 2"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":4,\"proj_size\":2}'",
     "rnn_init(): proj_size applies only to cell lstm, got cell gru"),
    ("'{\"cell\":\"lstm\",\"input_size\":1,\"hidden_size\":4,\"proj_size\":4}'",
     "rnn_init(): proj_size 4 must be 0 or smaller than hidden_size 4"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"output_size\":65537}'",
     "rnn_init(): output_size 65537 is outside 0..65536"),
    ("'{\"cell\":\"seed\",\"input_size\":1,\"hidden_size\":2}'",
     "rnn_init(): cell seed needs output_size >= 1 (its i2o layer)"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"output_activation\":\"relu\"}'",
     "rnn_init(): output_activation is 'relu', expected one of none, sigmoid, tanh, softmax, log_softmax"),
    ("'{\"cell\":\"seed\",\"input_size\":1,\"hidden_size\":2,\"output_size\":1,\"hidden_activation\":\"softmax\"}'",
     "rnn_init(): hidden_activation is 'softmax', expected one of none, tanh, relu, sigmoid"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"hidden_activation\":\"tanh\"}'",
     "rnn_init(): hidden_activation applies only to cell seed, got cell gru"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"bias\":1}'",
     "rnn_init(): bias must be true or false, got a number"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"seed\":-3}'",
     "rnn_init(): seed must be a non-negative integer of at most 18 digits"),
    ("'{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":2,\"seed\":1000000000000000000}'",
     "rnn_init(): seed must be a non-negative integer of at most 18 digits"),
    ("'{\"cell\":\"gru\",\"input_size\":65536,\"hidden_size\":8192,\"num_layers\":16}'",
     "rnn_init(): model needs 7853064192 floats after padding, more than the limit 134217728"),
]


def test_init_errors():
    con = connect()
    for arg, want in ERRORS:
        def case(arg=arg, want=want):
            got = error_of(con, "SELECT rnn_init(%s)" % arg)
            assert got == want or (want.endswith(": ") and got.startswith(want)), (got, want)
        yield arg, case


def test_init_length_limit():
    con = connect()
    con.setlimit(0, 100000)  # SQLITE_LIMIT_LENGTH
    assert error_of(con, "SELECT rnn_init('{\"cell\":\"gru\",\"input_size\":1,\"hidden_size\":100}')") == (
        "rnn_init(): the model would be 123600 bytes, more than SQLite's length limit 100000")


# ---- gradients ----

def grad_of(con, blob, batch):
    return json.loads(one(con, "SELECT rnn_grad_internal(?, ?)", (blob, json.dumps(batch))))


def check_against(spec, got, loss, grads, grads64, hT, what):
    """got (rnn_grad_internal's result) equals torch's float32 loss, gradients and final states: each gradient
    element within TOL * max(|torch|, 1% of the tensor's largest) plus torch's own float32 error (its distance
    from the float64 gradient of the same weights and inputs)."""
    assert abs(got["loss"] - loss) <= TOL * abs(loss), (what, got["loss"], loss)
    off = 0
    for name, shape, _ in gen_grad.init_tensors(spec):
        want, exact = grads[name], grads64[name]
        ours = got["grad"][off:off + len(want)]
        off += len(want)
        floor = 0.01 * max(abs(v) for v in want)
        for i, (g, w, e) in enumerate(zip(ours, want, exact)):
            assert abs(g - w) <= TOL * max(abs(w), floor) + abs(w - e), "%s %s[%d]: got %r want %r (float64 %r)" % (
                what, name, i, g, w, e)
            assert abs(g - e) <= TOL * max(abs(e), floor), "%s %s[%d]: got %r, float64 %r" % (what, name, i, g, e)
    assert off == len(got["grad"])
    assert len(got["hT"]) == len(hT)
    for i, (g, w) in enumerate(zip(got["hT"], hT)):
        assert abs(g - w) <= 2e-5 * max(1, abs(w)), (what, "hT", i, g, w)


def test_grad_fixtures():
    """Every case of tests/fixtures/grad/cases.json: loss, gradients and final states equal torch autograd's."""
    con = connect()
    with open(CASES) as f:
        records = json.load(f)
    assert len(records) >= 90
    for r in records:
        def case(r=r):
            got = grad_of(con, init(con, r["spec"]), r["batch"])
            check_against(r["spec"], got, r["loss"], r["grad"], r["grad64"], r["hT"], r["name"])
        yield r["name"], case


def test_grad_fixtures_cover_the_issue():
    """The fixture set holds every cell, 1-3 layers, proj_size, no bias, no head, every output activation, both
    losses and targets, sequences shorter than the batch, and initial states."""
    with open(CASES) as f:
        records = json.load(f)
    seen = set()
    for r in records:
        s, b = gen_grad.full_spec(r["spec"]), r["batch"]
        seen.update({("cell", s["cell"]), ("layers", s["num_layers"]), ("proj", bool(s["proj_size"])),
                     ("bias", s["bias"]), ("head", bool(s["output_size"])), ("loss", b["loss"]),
                     ("target", b["target"]), ("short", min(b["len"]) < b["T"]), ("h0", "h0" in b)})
        if b["loss"] == "mse":
            seen.add(("act", s["output_activation"]))
        if s["cell"] == "seed":
            seen.add(("hidden_act", s["hidden_activation"]))
    want = ({("cell", c) for c in gen_grad.CELLS} | {("layers", n) for n in (1, 2, 3)} |
            {("act", a) for a in gen_grad.OUT_ACTS} | {("hidden_act", a) for a in gen_grad.HIDDEN_ACTS} |
            {(k, v) for k in ("proj", "bias", "head", "short", "h0") for v in (True, False)} |
            {("loss", "mse"), ("loss", "cross_entropy"), ("target", "step"), ("target", "last")})
    assert want <= seen, want - seen


def test_grad_live_torch():
    """Freshly drawn cases (the seed, from the clock, is in every label) against torch autograd."""
    if not have_torch():
        raise Skip("torch not installed")
    seed = int(time.time())
    con = connect()
    for name, spec, batch in gen_grad.random_cases(seed, 30):
        def case(spec=spec, batch=batch, name=name):
            import torch
            loss, grads, hT = gen_grad.torch_reference(spec, batch)
            grads64 = gen_grad.torch_reference(spec, batch, torch.float64)[1]
            check_against(spec, grad_of(con, init(con, spec), batch), loss, grads, grads64, hT, name)
        yield "seed %d %s" % (seed, name), case


def test_grad_is_deterministic():
    con = connect()
    with open(CASES) as f:
        r = json.load(f)[3]
    blob = init(con, r["spec"])
    a = one(con, "SELECT rnn_grad_internal(?, ?)", (blob, json.dumps(r["batch"])))
    assert a == one(con, "SELECT rnn_grad_internal(?, ?)", (blob, json.dumps(r["batch"])))


def test_steps_beyond_len_do_not_count():
    """Padding after a sequence's length changes nothing: not its loss, gradients nor final state."""
    con = connect()
    spec = {"cell": "lstm", "input_size": 2, "hidden_size": 3, "num_layers": 2, "output_size": 1, "seed": 9}
    blob = init(con, spec)
    batch = {"T": 4, "len": [2, 4], "x": [0.5, -1, 0.25, 2, 9, 9, 9, 9] + [0.1] * 8, "target": "step",
             "loss": "mse", "y": [0.3, -0.2, 7, 7, 0.1, 0.2, 0.3, 0.4]}
    a = grad_of(con, blob, batch)
    batch["x"][4:8] = [-5, 3, 1, 0]
    batch["y"][2:4] = [-100, 100]
    assert grad_of(con, blob, batch) == a


def test_batch_targets():
    """rnn_batch_targets, the count the mean loss divides by: MSE elements of counted steps, CE labels but -1."""
    con = connect()
    blob = init(con, {"cell": "gru", "input_size": 1, "hidden_size": 2, "output_size": 3})
    x = {"T": 3, "len": [3, 1], "x": [1, 2, 3, 4, 5, 6]}
    for batch, want in [
        (dict(x, target="step", loss="mse", y=[0.5] * 18), 12),
        (dict(x, target="last", loss="mse", y=[0.5] * 6), 6),
        (dict(x, target="step", loss="cross_entropy", label=[0, -1, 2, 1, 1, 1]), 3),
        (dict(x, target="last", loss="cross_entropy", label=[-1, 2]), 1),
    ]:
        assert grad_of(con, blob, batch)["targets"] == want, batch


def test_grad_internal_is_direct_only():
    con = connect()
    blob = init(con, {"cell": "gru", "input_size": 1, "hidden_size": 2})
    con.execute("CREATE TABLE m(b BLOB)")
    con.execute("INSERT INTO m VALUES (?)", (blob,))
    con.execute("CREATE VIEW v AS SELECT rnn_grad_internal(b, '{}') FROM m")
    assert error_of(con, "SELECT * FROM v") == "unsafe use of rnn_grad_internal()"


def test_grad_batch_errors():
    con = connect()
    blob = init(con, {"cell": "gru", "input_size": 1, "hidden_size": 2, "output_size": 3})
    base = {"T": 2, "len": [2], "x": [1, 2], "target": "step", "loss": "cross_entropy", "label": [0, 1]}
    for change, want in [
        ({"len": [3]}, "rnn_grad_internal(): sequence 0 has 3 steps, outside 1..2"),
        ({"len": [0]}, "rnn_grad_internal(): sequence 0 has 0 steps, outside 1..2"),
        ({"label": [0, 3]}, "rnn_grad_internal(): label 3 of sequence 0 is outside 0..2 (-1: no target)"),
        ({"label": [-2, 0]}, "rnn_grad_internal(): label -2 of sequence 0 is outside 0..2 (-1: no target)"),
        ({"x": [1]}, "rnn_grad_internal(): batch 'x' must be an array of 2 numbers"),
    ]:
        def case(change=change, want=want):
            b = dict(base, **change)
            assert error_of(con, "SELECT rnn_grad_internal(?, ?)", (blob, json.dumps(b))) == want
        yield want, case


def test_bidirectional_models_cannot_be_trained():
    con = connect()
    blob = models.recurrent("gru", 1, 2, bidirectional=True, metadata={"readout": "last_output"})
    batch = {"T": 1, "len": [1], "x": [1], "y": [0, 0, 0, 0]}
    assert error_of(con, "SELECT rnn_grad_internal(?, ?)", (blob, json.dumps(batch))) == (
        "rnn_grad_internal(): bidirectional models cannot be trained")


def unidirectional_conformance_cases(con):
    """(name, blob, record, rnn_info) of every unidirectional model of tests/test_conformance.py's fixtures."""
    import test_conformance
    for name, blob, rec in test_conformance.load_cases():
        info = json.loads(one(con, "SELECT rnn_info(?)", (blob,)))
        if not info["bidirectional"]:
            yield name, blob, rec, info


def test_params_from_exported_models():
    """Parameters read from every unidirectional conformance model (other prefixes, F16/BF16/F64, heads at the
    root) give inference's final hidden state over its 300 steps, and its output as the loss's target gives a
    zero loss."""
    con = connect()
    for name, blob, rec, info in unidirectional_conformance_cases(con):

        def case(blob=blob, rec=rec, info=info):
            md = info["metadata"]
            mean = json.loads(md.get("input_mean", "null")) or [0.0] * info["input_size"]
            std = json.loads(md.get("input_std", "null")) or [1.0] * info["input_size"]
            xs = [[gen_grad.f32((v - m) / s) for v, m, s in zip(step, mean, std)] for step in rec["inputs"]]
            T, O = len(xs), info["output_size"]
            batch = {"T": T, "len": [T], "x": [v for step in xs for v in step], "target": "last", "loss": "mse",
                     "y": [0.0] * O}
            got = grad_of(con, blob, batch)
            H = info["proj_size"] or info["hidden_size"]
            last = got["hT"][(info["num_layers"] - 1) * H:info["num_layers"] * H]
            for g, w in zip(last, rec["hidden"]):
                assert abs(g - w) <= 2e-5 * max(1, abs(w)), (g, w)
            if "output_mean" not in md and "output_std" not in md and info["output_activation"] == "none":
                batch["y"] = rec["outputs"][-1]
                assert grad_of(con, blob, batch)["loss"] <= 1e-9
        yield name, case


def test_state_floats_layout():
    """hT holds h for every layer, then c for every layer (LSTM): rnn_batch_state_floats."""
    con = connect()
    for spec in SPECS:
        blob = init(con, spec)
        batch = {"T": 1, "len": [1, 1], "x": [0.5] * 2 * spec["input_size"], "target": "last", "loss": "mse",
                 "y": [0.0] * 2 * gen_grad.out_width(spec)}
        assert len(grad_of(con, blob, batch)["hT"]) == 2 * gen_grad.state_floats(spec)


def test_params_blob_round_trip():
    """rnn_params_from_model then rnn_params_to_blob (through the internal rnn_params_internal) on every
    unidirectional conformance model, its metadata passed back: the rewritten BLOB scores every step exactly as the
    original, and rnn_init's BLOBs come back byte for byte."""
    con = connect()
    for name, blob, rec, info in unidirectional_conformance_cases(con):

        def case(blob=blob, rec=rec, info=info):
            again = one(con, "SELECT rnn_params_internal(?, ?)", (blob, json.dumps(info["metadata"])))
            seq = json.dumps(rec["inputs"][:40])
            want = one(con, "SELECT rnn_eval(?, ?)", (blob, seq))
            assert one(con, "SELECT rnn_eval(?, ?)", (again, seq)) == want
            new = json.loads(one(con, "SELECT rnn_info(?)", (again,)))
            skip = ("recurrent_prefix", "head_prefix", "metadata", "tensors", "dtypes", "parameters", "bias")
            assert {k: v for k, v in new.items() if k not in skip} == {k: v for k, v in info.items() if k not in skip}
            # one bias flag for the whole model: bias in some modules only comes back as bias everywhere (zeros)
            assert new["parameters"] == info["parameters"] or (new["bias"] and new["parameters"] > info["parameters"])
        yield name, case
    for spec in SPECS:
        def case(spec=spec):
            blob = init(con, spec)
            assert one(con, "SELECT rnn_params_internal(?, NULL)", (blob,)) == blob
        yield json.dumps(spec), case


def test_params_blob_metadata():
    """Metadata members: strings stored as they are, other JSON values as their text; the keys the parameters decide
    (cell, activations, prefixes) are the parameters' own."""
    con = connect()
    blob = init(con, {"cell": "gru", "input_size": 2, "hidden_size": 3, "output_size": 1})
    meta = '{"cell": "lstm", "input_mean": [1.5, -2e0], "input_std" : [ 2, 4 ], "note": "a \\"b\\"", ' \
           '"n": 3, "nested": {"a": [1, {"b": null}]}, "head_prefix": "x."}'
    again = one(con, "SELECT rnn_params_internal(?, ?)", (blob, meta))
    info = json.loads(one(con, "SELECT rnn_info(?)", (again,)))
    assert info["metadata"] == {"cell": "gru", "input_mean": "[1.5, -2e0]", "input_std": "[ 2, 4 ]",
                                "note": 'a "b"', "n": "3", "nested": '{"a": [1, {"b": null}]}'}
    assert one(con, "SELECT rnn_eval(?, '[[3.5, 0]]')", (again,)) == one(con, "SELECT rnn_eval(?, '[[1, 0.5]]')",
                                                                         (blob,))
    assert error_of(con, "SELECT rnn_params_internal(?, '[1]')", (blob,)) == (
        "rnn_params_internal(): metadata must be a JSON object")
    assert error_of(con, "SELECT rnn_params_internal(?, '{')", (blob,)).startswith(
        "rnn_params_internal(): metadata is not valid JSON: ")


def test_init_equals_the_exporters_blob():
    """With torch: the nn.RNN/LSTM/GRU (+ nn.Linear head) holding rnn_init's weights, exported by
    sqlite_rnn.to_blob, is rnn_init's BLOB byte for byte."""
    if not have_torch():
        raise Skip("torch not installed")
    import sys
    import torch
    from rnnlib import ROOT
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import sqlite_rnn
    con = connect()
    for spec in SPECS:
        if spec["cell"] == "seed":
            continue

        def case(spec=spec):
            s = gen_grad.full_spec(spec)
            m = gen_grad._module(s, torch.float32)
            head = None
            if s["output_size"]:
                head = torch.nn.Linear(s["proj_size"] or s["hidden_size"], s["output_size"], bias=s["bias"])
                vals = {name: (shape, v) for name, shape, v in gen_grad.init_tensors(spec)}
                with torch.no_grad():
                    for n, prm in head.named_parameters():
                        prm.copy_(torch.tensor(vals["fc." + n][1]).reshape(vals["fc." + n][0]))
            md = {"cell": s["cell"]}  # first, as rnn_init orders its metadata
            if s["output_activation"] != "none":
                md["output_activation"] = s["output_activation"]
            assert sqlite_rnn.to_blob(m, head=head, **md) == init(con, spec)
        yield json.dumps(spec), case
