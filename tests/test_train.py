"""rnn_train(model, query, options): the driver (ext/train.c and train_*.c), issue 14.

  - every bad option, query and model is refused with its exact message;
  - one row per epoch with the contract's columns; improved, patience and max_seconds stop as documented;
  - the last row's BLOB is the saved model, which rnn_predict then scores; the metadata records the options,
    epochs, losses, the data hash (reimplemented here) and the standardisation (recomputed here);
  - same inputs and seed give the same BLOB byte for byte;
  - an interrupt (progress handler) stops the call; keep_on_interrupt keeps the best model so far;
  - classify with TEXT labels;
  - one and two Adam steps with clipping and weight decay equal torch.optim.Adam + clip_grad_norm_, and three
    epochs of a 'next' LSTM (windows, shuffle, batches, standardisation as README "Training" says) equal a torch
    replica (1.2e-7 here; tests allow 1e-6 and 1e-5); live with torch, else the committed fixture
    tests/fixtures/train_adam.json, which `python3 tests/test_train.py` regenerates with torch;
  - a GRU learns a sine ('next'): the loss falls.
"""
import json
import math
import os
import sqlite3
import struct
import sys

import models
import st
from rnnlib import FIXTURES, connect, error_of, have_torch, one

GRU = {"cell": "gru", "input_size": 1, "hidden_size": 6, "output_size": 1, "seed": 3}


def _con(series=4, steps=60):
    con = connect()
    con.execute("CREATE TABLE s(id, t, v)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?)", [(k, t, math.sin(0.3 * t + k))
                                                     for k in range(series) for t in range(steps)])
    models.registry(con)
    con.execute("INSERT INTO rnn_models VALUES ('g', rnn_init(?))", (json.dumps(GRU),))
    return con


def _rows(con, opts, query="SELECT id, t, v FROM s", model="g", cols="*"):
    return con.execute("SELECT %s FROM rnn_train(?, ?, ?)" % cols, (model, query, json.dumps(opts))).fetchall()


def _final(con, opts, query="SELECT id, t, v FROM s", model="g"):
    return one(con, "SELECT model FROM rnn_train(?, ?, ?) WHERE model NOT NULL", (model, query, json.dumps(opts)))


KNOWN = ("task, loss, epochs, lr, betas, eps, weight_decay, batch_size, window, clip, standardize, val_fraction, "
         "val_split, patience, max_seconds, seed, shuffle, save_as, keep_on_interrupt, labels")

OPTION_ERRORS = [
    ('{"epoch": 3}', "rnn_train(): unknown option 'epoch': the options are " + KNOWN),
    ('[1]', "rnn_train(): options must be a JSON object, got '[1]'"),
    ('{"epochs": 3', "rnn_train(): options are not valid JSON: "),
    ('{"task": "forecast"}', "rnn_train(): option task must be one of next, regress, classify, got 'forecast'"),
    ('{"loss": "l1"}', "rnn_train(): option loss must be one of mse, cross_entropy, got 'l1'"),
    ('{"epochs": 0}', "rnn_train(): option epochs must be an integer from 1 to 1000000, got 0"),
    ('{"epochs": 2.5}', "rnn_train(): option epochs must be an integer from 1 to 1000000, got 2.5"),
    ('{"epochs": "5"}', "rnn_train(): option epochs must be an integer from 1 to 1000000, got '5'"),
    ('{"lr": 0}', "rnn_train(): option lr must be a positive number, got 0"),
    ('{"lr": -0.1}', "rnn_train(): option lr must be a positive number, got -0.1"),
    ('{"betas": [0.9]}', "rnn_train(): option betas must be an array of two numbers in [0, 1), got an array"),
    ('{"betas": [0.9, 1]}', "rnn_train(): option betas must be an array of two numbers in [0, 1), got an array"),
    ('{"eps": -1}', "rnn_train(): option eps must be a number >= 0, got -1"),
    ('{"weight_decay": true}', "rnn_train(): option weight_decay must be a number >= 0, got true"),
    ('{"batch_size": 0}', "rnn_train(): option batch_size must be an integer from 1 to 65536, got 0"),
    ('{"window": 0}', "rnn_train(): option window must be an integer from 1 to 1000000, got 0"),
    ('{"clip": -1}', "rnn_train(): option clip must be a number >= 0, got -1"),
    ('{"standardize": 1}', "rnn_train(): option standardize must be true or false, got 1"),
    ('{"val_fraction": 1}', "rnn_train(): option val_fraction must be a number in [0, 1), got 1"),
    ('{"val_split": "random"}', "rnn_train(): option val_split must be one of tail, series, got 'random'"),
    ('{"patience": -1}', "rnn_train(): option patience must be an integer from 0 to 1000000, got -1"),
    ('{"max_seconds": -5}', "rnn_train(): option max_seconds must be a number >= 0, got -5"),
    ('{"seed": -1}', "rnn_train(): option seed must be an integer from 0 to 9223372036854775807, got -1"),
    ('{"shuffle": null}', "rnn_train(): option shuffle must be true or false, got null"),
    ('{"save_as": ""}', "rnn_train(): option save_as must be a non-empty string (a model name), got ''"),
    ('{"keep_on_interrupt": true}', "rnn_train(): option keep_on_interrupt needs save_as (the name to keep the "
     "best model under)"),
    ('{"labels": ["a", "b"]}', "rnn_train(): option labels needs task classify"),
    ('{"task": "classify", "labels": ["a", "a"]}', "rnn_train(): option labels has 'a' twice"),
    ('{"task": "classify", "labels": []}', "rnn_train(): option labels must be an array of non-empty strings, "
     "got an array"),
    ('{"loss": "cross_entropy"}', "rnn_train(): loss cross_entropy needs task classify (tasks next and regress "
     "predict numbers: use mse)"),
    ('{"task": "classify", "val_split": "tail"}', "rnn_train(): val_split tail needs task next or regress: task "
     "classify holds out whole series (val_split series)"),
]


def test_option_errors():
    con = _con()
    for opts, want in OPTION_ERRORS:
        def case(opts=opts, want=want):
            got = error_of(con, "SELECT * FROM rnn_train('g', 'SELECT id, t, v FROM s', ?)", (opts,))
            if want.endswith(": "):
                assert got.startswith(want), got
            else:
                assert got == want, got
        yield opts, case


QUERY_ERRORS = [
    ("DELETE FROM s", "rnn_train(): query must be read-only (one SELECT), got 'DELETE FROM s'"),
    ("SELECT id, t, v FROM s; SELECT 1", "rnn_train(): query must be one statement, but text follows it: "
     "' SELECT 1'"),
    ("SELECT id, t FROM s", "rnn_train(): query returns 2 columns, task next needs 3: key, order, 1 feature "
     "(input_size)"),
    ("SELECT id, t, v FROM nowhere", "rnn_train(): query: no such table: nowhere"),
    ("", "rnn_train(): query is empty: pass one SELECT statement"),
    ("SELECT id, t, CASE WHEN t = 7 THEN NULL ELSE v END FROM s",
     "rnn_train(): row 8 (key 0, order 7): feature column CASE WHEN t = 7 THEN NULL ELSE v END is NULL, expected "
     "a number (filter NULLs out in the query)"),
    ("SELECT id, t, 'x' AS v FROM s", "rnn_train(): row 1 (key 0, order 0): feature column v is TEXT, expected a "
     "number"),
    ("SELECT id, t, 1e300 AS v FROM s", "rnn_train(): row 1 (key 0, order 0): feature column v is not a finite "
     "float32"),
    ("SELECT id, t / 2, v FROM s", "rnn_train(): row 2 (key 0, order 0): the series has two rows with this order "
     "value: the order column must be unique within a series"),
    ("SELECT id, t, v FROM s WHERE t = 0", "rnn_train(): no training data: the query returned 4 rows in 4 series, "
     "which leave no training window (task next needs 2 rows of a series)"),
]


def test_query_errors():
    con = _con()
    for query, want in QUERY_ERRORS:
        def case(query=query, want=want):
            assert error_of(con, "SELECT * FROM rnn_train('g', ?, '{}')", (query,)) == want
        yield query or "(empty)", case
    yield "not TEXT", lambda: _eq(error_of(con, "SELECT * FROM rnn_train('g', 5)"),
                                  "rnn_train(): query is INTEGER, expected TEXT: one SELECT statement")


def test_argument_and_model_errors():
    con = _con()
    bi = models.recurrent("gru", 1, 3, head=1, bidirectional=True)
    two = one(con, "SELECT rnn_init(?)", (json.dumps(dict(GRU, output_size=2)),))
    cases = [
        ("SELECT * FROM rnn_train('g')", (), "rnn_train(): missing argument 2 (query)"),
        ("SELECT * FROM rnn_train('nope', 'SELECT id, t, v FROM s')", (),
         "rnn_train(): no model named 'nope' in rnn_models: INSERT INTO rnn_models(name, model) VALUES ('nope', "
         "<safetensors BLOB>)"),
        ("SELECT * FROM rnn_train(?, 'SELECT id, t, v FROM s')", (bi,),
         "rnn_train(): model is bidirectional: training supports unidirectional models only"),
        ("SELECT * FROM rnn_train(?, 'SELECT id, t, v FROM s')", (two,),
         "rnn_train(): task next predicts the next row's features: the model needs as many outputs as inputs (1), "
         "it has 2"),
        ("SELECT * FROM rnn_train('g', 'SELECT id, t, v, 0 FROM s', '{\"task\": \"classify\"}')", (),
         "rnn_train(): task classify needs a model with an output per class (2 or more), it has 1"),
        ("SELECT * FROM rnn_train(?, 'SELECT id, t, v, 0 FROM s', '{\"task\": \"classify\", \"labels\": [\"a\"]}')",
         (two,), "rnn_train(): option labels has 1 label, the model has 2 outputs"),
        ("SELECT * FROM rnn_train('g', 'SELECT id, t, v FROM s', 5)", (),
         "rnn_train(): options is INTEGER, expected TEXT: a JSON object"),
    ]
    con.execute("CREATE VIEW v AS SELECT * FROM rnn_train('g', 'SELECT id, t, v FROM s')")
    for sql, args, want in cases:
        def case(sql=sql, args=args, want=want):
            assert error_of(con, sql, args) == want
        yield want[:60], case
    yield "DIRECTONLY", lambda: _eq(error_of(con, "SELECT * FROM v"), 'unsafe use of virtual table "rnn_train"')
    con2 = _con()
    con2.execute("DROP TABLE rnn_models")
    con2.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, blob BLOB)")
    con2.execute("INSERT INTO rnn_models VALUES ('g', NULL)")
    yield "save_as needs the table", lambda: _eq(error_of(
        con2, "SELECT * FROM rnn_train(rnn_init(?), 'SELECT id, t, v FROM s', '{\"save_as\": \"x\"}')",
        (json.dumps(GRU),)), "rnn_train(): save_as needs a table rnn_models(name, model) to write to: table "
        "rnn_models has no column named model (create it with CREATE TABLE rnn_models(name TEXT PRIMARY KEY, "
        "model BLOB NOT NULL))")


def _eq(got, want):
    assert got == want, (got, want)


def test_epoch_rows():
    con = _con()
    cur = con.execute("SELECT * FROM rnn_train('g', 'SELECT id, t, v FROM s', '{\"epochs\": 4, \"lr\": 0.01}')")
    assert [d[0] for d in cur.description] == ["epoch", "train_loss", "val_loss", "learning_rate", "seconds",
                                               "improved"]
    rows = cur.fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert all(r[3] == 0.01 for r in rows)
    assert all(isinstance(r[1], float) and isinstance(r[2], float) for r in rows)
    best = math.inf
    for r in rows:  # improved: the val loss is below every earlier one
        assert r[5] == (1 if r[2] < best else 0), rows
        best = min(best, r[2])
    secs = [r[4] for r in rows]
    assert secs == sorted(secs) and secs[0] > 0
    blobs = [r[0] for r in _rows(con, {"epochs": 3}, cols="model IS NOT NULL")]
    assert blobs == [0, 0, 1]
    # without validation rows: val_loss NULL, improved follows the train loss
    rows = _rows(con, {"epochs": 3, "val_fraction": 0, "lr": 0.01}, cols="val_loss, improved")
    assert rows == [(None, 1), (None, 1), (None, 1)]


def test_query_text_and_limit():
    """A trailing semicolon or comment is part of one statement; LIMIT stops training, without a save."""
    con = _con()
    for q in ("SELECT id, t, v FROM s;", "SELECT id, t, v FROM s -- the rows", "SELECT id, t, v FROM s; /* c */ ",
              "  SELECT id, t, v\n  FROM s  ;  "):
        assert len(_rows(con, {"epochs": 2}, query=q)) == 2, q
    rows = con.execute("SELECT epoch FROM rnn_train('g', 'SELECT id, t, v FROM s', '{\"epochs\": 50, "
                       "\"save_as\": \"cut\"}') LIMIT 2").fetchall()
    assert rows == [(1,), (2,)]
    assert one(con, "SELECT count(*) FROM rnn_models WHERE name = 'cut'") == 0


def test_patience_and_max_seconds():
    con = _con()
    # lr so small that the weights never change: the val loss repeats, so nothing after epoch 1 improves
    rows = _rows(con, {"epochs": 50, "lr": 1e-30, "patience": 3}, cols="epoch, improved")
    assert rows == [(1, 1), (2, 0), (3, 0), (4, 0)]
    assert len(_rows(con, {"epochs": 50, "max_seconds": 1e-9})) == 1
    md = st.loads(_final(con, {"epochs": 50, "lr": 1e-30, "patience": 2}))[1]
    assert (md["train_epochs"], md["train_best_epoch"]) == ("3", "1")


def test_save_as_then_predict():
    con = _con()
    rows = _rows(con, {"epochs": 3, "lr": 0.01, "save_as": "trained"}, cols="epoch, model")
    saved = one(con, "SELECT model FROM rnn_models WHERE name = 'trained'")
    assert rows[-1][1] == saved and all(r[1] is None for r in rows[:-1])
    preds = con.execute("SELECT rnn_predict('trained', v) OVER (PARTITION BY id ORDER BY t ROWS UNBOUNDED "
                        "PRECEDING) FROM s WHERE id = 0 ORDER BY t").fetchall()
    assert len(preds) == 60 and all(isinstance(p[0], float) for p in preds)
    # the saved model scores as its own weights plus metadata say: standardised in, original units out
    md = st.loads(saved)[1]
    assert json.loads(md["input_mean"]) == json.loads(md["output_mean"])
    # INSERT OR REPLACE: saving again under the same name replaces the row
    _rows(con, {"epochs": 1, "save_as": "trained"})
    assert one(con, "SELECT count(*) FROM rnn_models WHERE name = 'trained'") == 1


def test_determinism():
    con = _con()
    opts = {"epochs": 3, "lr": 0.01, "batch_size": 3, "window": 7, "seed": 11, "clip": 0.5}
    a, b = _final(con, opts), _final(_con(), opts)
    assert a == b
    assert _final(con, dict(opts, seed=12)) != a      # another shuffle
    weights = lambda blob: st.loads(blob)[0]  # noqa: E731 (the metadata records the seed)
    assert weights(_final(con, dict(opts, shuffle=False))) == weights(_final(con, dict(opts, shuffle=False, seed=12)))


def test_interrupt():
    con = _con()
    stop = [0]
    con.set_progress_handler(lambda: stop[0], 1)
    seen = []
    try:
        for r in con.execute("SELECT epoch FROM rnn_train('g', 'SELECT id, t, v FROM s', ?)",
                             (json.dumps({"epochs": 1000, "lr": 0.01, "val_fraction": 0, "save_as": "lost"}),)):
            seen.append(r[0])
            stop[0] = len(seen) >= 2
        raise AssertionError("not interrupted")
    except sqlite3.OperationalError as e:
        assert str(e) == "interrupted"
    assert 2 <= len(seen) < 1000
    stop[0] = 0
    assert one(con, "SELECT count(*) FROM rnn_models WHERE name = 'lost'") == 0
    seen = []
    try:
        for r in con.execute("SELECT epoch FROM rnn_train('g', 'SELECT id, t, v FROM s', ?)",
                             (json.dumps({"epochs": 1000, "lr": 0.01, "val_fraction": 0, "save_as": "kept",
                                          "keep_on_interrupt": True}),)):
            seen.append(r[0])
            stop[0] = len(seen) >= 2
        raise AssertionError("not interrupted")
    except sqlite3.OperationalError as e:
        assert str(e) == "interrupted"
    stop[0] = 0
    md = st.loads(one(con, "SELECT model FROM rnn_models WHERE name = 'kept'"))[1]
    assert int(md["train_best_epoch"]) >= 2 and md["train_best_epoch"] == md["train_epochs"]


def _fnv_rows(rows):
    """README "Training": FNV-1a 64 over each column of each row: type byte, then the value's bytes."""
    h = 0xcbf29ce484222325

    def feed(bs):
        nonlocal h
        for b in bs:
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    for row in rows:
        for v in row:
            if isinstance(v, int):
                feed(b"\x01" + struct.pack("<q", v))
            elif isinstance(v, float):
                feed(b"\x02" + struct.pack("<d", v))
            elif v is None:
                feed(b"\x05")
            else:
                raw = v.encode() if isinstance(v, str) else bytes(v)
                feed((b"\x03" if isinstance(v, str) else b"\x04") + struct.pack("<Q", len(raw)) + raw)
    return "%016x" % h


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def test_metadata():
    con = _con(series=3, steps=20)
    con.execute("UPDATE s SET v = 'x' || v WHERE 0")
    opts = {"epochs": 2, "lr": 0.02, "val_fraction": 0.25, "seed": 5}
    rows = _rows(con, opts, cols="train_loss, val_loss")
    md = st.loads(_final(con, opts))[1]
    assert md["cell"] == "gru" and md["readout"] == "last_output"
    assert "warnings" not in json.loads(one(con, "SELECT rnn_info(?)", (_final(con, opts),)))
    o = json.loads(md["train_options"])
    assert o == {"task": "next", "loss": "mse", "epochs": 2, "lr": 0.02, "betas": [0.9, 0.999], "eps": 1e-08,
                 "weight_decay": 0.0, "batch_size": 16, "window": 64, "clip": 0.0, "standardize": True,
                 "val_fraction": 0.25, "val_split": "tail", "patience": 0, "max_seconds": 0.0, "seed": 5,
                 "shuffle": True, "save_as": None, "keep_on_interrupt": False, "labels": None}
    assert json.loads(md["train_loss_history"]) == [list(r) for r in rows]
    assert (md["train_epochs"], md["train_rows"], md["train_series"]) == ("2", "60", "3")
    data = con.execute("SELECT id, t, v FROM s ORDER BY 1, 2").fetchall()
    assert md["train_data_hash"] == _fnv_rows(data)
    train = [_f32(v) for k, t, v in data if t < 20 - 5]          # the last floor(20 * 0.25) steps are validation
    mean = sum(train) / len(train)
    std = math.sqrt(sum((v - mean) ** 2 for v in train) / len(train))
    assert [_f32(v) for v in json.loads(md["input_mean"])] == [_f32(mean)]
    assert [_f32(v) for v in json.loads(md["input_std"])] == [_f32(std)]
    assert [_f32(v) for v in json.loads(md["output_std"])] == [_f32(std)]
    md = st.loads(_final(con, dict(opts, standardize=False)))[1]
    assert "input_mean" not in md and "output_std" not in md


def test_classify_labels():
    con = connect()
    con.execute("CREATE TABLE c(id, t, x, label)")
    rows = []
    for k in range(12):
        lab = ["up", "down", "flat"][k % 3]
        slope = {"up": 1, "down": -1, "flat": 0}[lab]
        rows += [(k, t, 0.2 * slope * t + 0.01 * k, lab) for t in range(8)]
    con.executemany("INSERT INTO c VALUES (?, ?, ?, ?)", rows)
    init = one(con, "SELECT rnn_init(?)", (json.dumps(dict(GRU, output_size=3)),))
    opts = {"task": "classify", "labels": ["up", "down", "flat"], "epochs": 30, "lr": 0.05, "val_fraction": 0.25}
    out = con.execute("SELECT epoch, val_loss, model FROM rnn_train(?, 'SELECT * FROM c', ?)",
                      (init, json.dumps(opts))).fetchall()
    assert len(out) == 30 and out[-1][1] < out[0][1]
    md = st.loads(out[-1][2])[1]
    assert json.loads(md["labels"]) == ["up", "down", "flat"]
    assert json.loads(md["train_options"])["val_split"] == "series" and "output_mean" not in md
    got = one(con, "SELECT rnn_classify(?, json_group_array(x)) FROM (SELECT x FROM c WHERE id = 0 ORDER BY t)",
              (out[-1][2],))
    assert got == "up", got
    idx = con.execute("SELECT id, t, x, CASE label WHEN 'up' THEN 0 WHEN 'down' THEN 1 ELSE 2 END FROM c").fetchall()
    con.execute("CREATE TABLE ci(id, t, x, label)")
    con.executemany("INSERT INTO ci VALUES (?, ?, ?, ?)", idx)
    md = st.loads(one(con, "SELECT model FROM rnn_train(?, 'SELECT * FROM ci', ?) WHERE model NOT NULL",
                      (init, json.dumps({"task": "classify", "epochs": 1}))))[1]
    assert "labels" not in md
    errs = [
        ("SELECT id, t, x, CASE WHEN t = 3 THEN 'down' ELSE label END FROM c", opts,
         "rnn_train(): row 4 (key 0, order 3): the label changes within the series: task classify needs one label "
         "per series"),
        ("SELECT * FROM c", dict(opts, labels=["up", "down", "sideways"]),
         "rnn_train(): row 17 (key 2, order 0): label 'flat' is not one of the labels in options.labels"),
        ("SELECT * FROM c", {"task": "classify"},
         "rnn_train(): row 1 (key 0, order 0): label 'up' is TEXT but there are no labels to look it up in: give "
         "options.labels"),
        ("SELECT id, t, x, 3 FROM c", {"task": "classify"},
         "rnn_train(): row 1 (key 0, order 0): label is 3, expected a class index from 0 to 2"),
        ("SELECT id, t, x, 1.5 FROM c", {"task": "classify"},
         "rnn_train(): row 1 (key 0, order 0): label is REAL, expected an INTEGER class index or a TEXT label"),
        ("SELECT id, t, x FROM c", {"task": "classify"},
         "rnn_train(): query returns 3 columns, task classify needs 4: key, order, 1 feature (input_size), 1 label"),
    ]
    for sql, o, want in errs:
        def case(sql=sql, o=o, want=want):
            _eq(error_of(con, "SELECT * FROM rnn_train(?, ?, ?)", (init, sql, json.dumps(o))), want)
        yield want[:70], case


def test_learns_sine():
    con = _con(series=6, steps=80)
    rows = _rows(con, {"epochs": 25, "lr": 0.02, "window": 20, "batch_size": 8}, cols="train_loss, val_loss")
    assert rows[-1][0] < 0.2 * rows[0][0], rows
    assert rows[-1][1] < 0.2 * rows[0][1], rows


# ---- one and two Adam steps against torch ----------------------------------------------------------------------

ADAM_SPEC = {"cell": "gru", "input_size": 2, "hidden_size": 4, "output_size": 1, "seed": 7}
ADAM_OPTS = {"task": "regress", "lr": 0.05, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.1, "clip": 0.05,
             "batch_size": 16, "window": 100, "shuffle": False, "val_fraction": 0, "standardize": False}
ADAM_ROWS = [(s, t, math.sin(t + s), math.cos(0.5 * t * s), 0.3 * t - s) for s, n in ((0, 6), (1, 4))
             for t in range(n)]
ADAM_FIXTURE = os.path.join(FIXTURES, "train_adam.json")


def _adam_torch(init, steps):
    """The same batch (two series, lengths 6 and 4, padded) through nn.GRU + nn.Linear, MSE over counted steps,
    clip_grad_norm_, torch.optim.Adam: the parameters after `steps` steps, named as the BLOB names them."""
    import torch
    t0 = st.loads(init)[0]
    gru, fc = torch.nn.GRU(2, 4, batch_first=True), torch.nn.Linear(4, 1)
    gru.load_state_dict({k[4:]: torch.tensor(v[2]).reshape(v[1]) for k, v in t0.items() if k.startswith("rnn.")})
    fc.load_state_dict({k[3:]: torch.tensor(v[2]).reshape(v[1]) for k, v in t0.items() if k.startswith("fc.")})
    params = list(gru.parameters()) + list(fc.parameters())
    o = ADAM_OPTS
    opt = torch.optim.Adam(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])
    for _ in range(steps):
        opt.zero_grad()
        total, count = 0, 0
        for s in (0, 1):
            rows = [r for r in ADAM_ROWS if r[0] == s]
            x = torch.tensor([[[r[2], r[3]] for r in rows]])
            y = torch.tensor([[[r[4]] for r in rows]])
            total = total + ((fc(gru(x)[0]) - y) ** 2).sum()
            count += len(rows)
        (total / count).backward()
        torch.nn.utils.clip_grad_norm_(params, o["clip"])
        opt.step()
    out = {"rnn." + k: v.detach().reshape(-1).tolist() for k, v in gru.state_dict().items()}
    out.update({"fc." + k: v.detach().reshape(-1).tolist() for k, v in fc.state_dict().items()})
    return out


def _adam_ours(steps):
    con = connect()
    con.execute("CREATE TABLE d(k, t, a, b, y)")
    con.executemany("INSERT INTO d VALUES (?, ?, ?, ?, ?)", ADAM_ROWS)
    init = one(con, "SELECT rnn_init(?)", (json.dumps(ADAM_SPEC),))
    out = one(con, "SELECT model FROM rnn_train(?, 'SELECT * FROM d', ?) WHERE model NOT NULL",
              (init, json.dumps(dict(ADAM_OPTS, epochs=steps))))
    return init, {k: v[2] for k, v in st.loads(out)[0].items()}


def test_adam_step_against_torch():
    with open(ADAM_FIXTURE) as f:
        fixture = json.load(f)
    for steps in (1, 2):
        def case(steps=steps):
            init, got = _adam_ours(steps)
            want = _adam_torch(init, steps) if have_torch() else fixture[str(steps)]
            assert sorted(got) == sorted(want)
            for name in want:  # torch's vectorised kernels may fuse a multiply-add: a few ulps
                for g, w in zip(got[name], want[name]):
                    assert abs(g - w) <= 1e-6 * max(1.0, abs(w)), (name, g, w)
            moved = max(abs(a - b) for k in want for a, b in zip(want[k], st.loads(init)[0][k][2]))
            assert moved > 0.04  # the step is lr-sized: a test of the update, not of the initial weights
            if have_torch():  # the committed fixture still says what torch says
                assert all(abs(a - b) <= 1e-7 * max(1.0, abs(b)) for k in want
                           for a, b in zip(fixture[str(steps)][k], want[k]))
        yield "%d step%s" % (steps, "s" if steps > 1 else ""), case


# ---- windows, batches, shuffle and standardisation against torch -----------------------------------------------

BATCH_SPEC = {"cell": "lstm", "input_size": 2, "hidden_size": 3, "output_size": 2, "seed": 9}
BATCH_OPTS = {"task": "next", "epochs": 3, "lr": 0.03, "window": 4, "batch_size": 3, "seed": 5, "val_fraction": 0,
              "clip": 0.5}
BATCH_ROWS = [(s, t, math.sin(0.7 * t + s), 2 + math.cos(0.4 * t) * (1 + s)) for s, n in ((0, 9), (1, 6))
              for t in range(n)]


def _splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return state, z ^ (z >> 31)


def _batches_torch(init, opts):
    """README "Training" step by step in torch: standardise with the float32 mean and population std, cut each
    series into windows of `window` (input t, target t + 1), shuffle the window list every epoch (Fisher-Yates,
    splitmix64 seeded once), batches of batch_size, MSE over counted targets, clip, Adam. Returns the weights
    and the per-epoch train losses."""
    import torch
    t0 = st.loads(init)[0]
    lstm, fc = torch.nn.LSTM(2, 3, batch_first=True), torch.nn.Linear(3, 2)
    lstm.load_state_dict({k[4:]: torch.tensor(v[2]).reshape(v[1]) for k, v in t0.items() if k.startswith("rnn.")})
    fc.load_state_dict({k[3:]: torch.tensor(v[2]).reshape(v[1]) for k, v in t0.items() if k.startswith("fc.")})
    params = list(lstm.parameters()) + list(fc.parameters())
    opt = torch.optim.Adam(params, lr=opts["lr"])
    x = torch.tensor([[r[2], r[3]] for r in BATCH_ROWS], dtype=torch.float64)
    mean = x.mean(0).float()
    std = ((x - x.mean(0)) ** 2).mean(0).sqrt().float()
    xs = (x.float() - mean) / std
    windows = []
    start = 0
    for s, n in ((0, 9), (1, 6)):
        for t in range(0, n - 1, opts["window"]):
            length = min(opts["window"], n - 1 - t)
            windows.append((start + t, length))
        start += n
    state, losses = opts["seed"], []
    for _ in range(opts["epochs"]):
        order = list(range(len(windows)))
        for i in range(len(order) - 1, 0, -1) if opts["shuffle"] else ():
            state, r = _splitmix64(state)
            j = r % (i + 1)
            order[i], order[j] = order[j], order[i]
        total_epoch, count_epoch = 0.0, 0
        for b in range(0, len(order), opts["batch_size"]):
            opt.zero_grad()
            total, count = 0, 0
            for w in order[b:b + opts["batch_size"]]:
                a, length = windows[w]
                out = fc(lstm(xs[a:a + length].unsqueeze(0))[0])
                total = total + ((out - xs[a + 1:a + 1 + length].unsqueeze(0)) ** 2).sum()
                count += length * 2
            loss = total / count
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, opts["clip"])
            opt.step()
            total_epoch += loss.item() * count
            count_epoch += count
        losses.append(total_epoch / count_epoch)
    out = {"rnn." + k: v.detach().reshape(-1).tolist() for k, v in lstm.state_dict().items()}
    out.update({"fc." + k: v.detach().reshape(-1).tolist() for k, v in fc.state_dict().items()})
    return out, losses, mean.tolist(), std.tolist()


def _batches_ours(opts):
    con = connect()
    con.execute("CREATE TABLE d(k, t, a, b)")
    con.executemany("INSERT INTO d VALUES (?, ?, ?, ?)", BATCH_ROWS)
    init = one(con, "SELECT rnn_init(?)", (json.dumps(BATCH_SPEC),))
    rows = con.execute("SELECT train_loss, model FROM rnn_train(?, 'SELECT * FROM d', ?)",
                       (init, json.dumps(opts))).fetchall()
    tensors, md = st.loads(rows[-1][1])
    return init, {k: v[2] for k, v in tensors.items()}, [r[0] for r in rows], md


def test_batches_against_torch():
    """Windows, shuffle, batches and standardisation as README "Training" says, against a torch replica."""
    with open(ADAM_FIXTURE) as f:
        fixture = json.load(f)["batches"]
    for shuffle in (True, False):
        def case(shuffle=shuffle):
            opts = dict(BATCH_OPTS, shuffle=shuffle)
            init, got, losses, md = _batches_ours(opts)
            if have_torch():
                want, want_losses, mean, std = _batches_torch(init, opts)
            else:
                want, want_losses, mean, std = fixture[str(shuffle)]
            assert [_f32(v) for v in json.loads(md["input_mean"])] == mean
            assert [_f32(v) for v in json.loads(md["input_std"])] == std
            for a, b in zip(losses, want_losses):
                assert abs(a - b) <= 1e-5 * b, (losses, want_losses)
            for name in want:
                for g, w in zip(got[name], want[name]):
                    assert abs(g - w) <= 1e-5 * max(1.0, abs(w)), (name, g, w)
        yield "shuffle" if shuffle else "in order", case


if __name__ == "__main__":  # regenerate the fixture (needs torch)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    fx = {}
    for n in (1, 2):
        init, _ = _adam_ours(n)
        fx[str(n)] = _adam_torch(init, n)
    fx["batches"] = {}
    for shuffle in (True, False):
        opts = dict(BATCH_OPTS, shuffle=shuffle)
        fx["batches"][str(shuffle)] = _batches_torch(_batches_ours(opts)[0], opts)
    with open(ADAM_FIXTURE, "w") as f:
        json.dump(fx, f, indent=0, sort_keys=True)
        f.write("\n")
    print("wrote", ADAM_FIXTURE)
