"""Streaming state (issue 12, ext/state.c): rnn_state, rnn_step, rnn_output, and rnn_eval / rnn_steps /
rnn_forecast resumed from a state.

Exactness is checked bit for bit: for every split of a sequence, the state after the prefix stepped over the rest
with rnn_step gives the same state BLOB (hex) as rnn_state over the whole frame, the same rnn_output as
rnn_predict's window value (SQL equality of REAL / JSON text), and rnn_eval, rnn_steps and rnn_forecast resumed
from the prefix's state give the values of the whole sequence. Inputs are multiples of 1/8, so the JSON sequences
and the REAL columns hold the same float32 values."""
import json
import os
import random
import sqlite3
import struct

import models
from rnnlib import ROOT, connect, error_of, f32_list, one

T = 8

# (label, model bytes, features): every cell kind, 1-3 layers, proj_size, heads, activations, standardisation
CASES = [
    ("rnn_tanh 1 layer", lambda: models.recurrent("rnn_tanh", 2, 5, head=2, seed=11), 2),
    ("rnn_relu 2 layers", lambda: models.recurrent("rnn_relu", 2, 4, layers=2, head=1, seed=12), 2),
    ("lstm 1 layer no head", lambda: models.recurrent("lstm", 2, 3, seed=13), 2),
    ("lstm 2 layers", lambda: models.recurrent("lstm", 1, 4, layers=2, head=1, seed=14), 1),
    ("lstm 3 layers proj_size", lambda: models.recurrent("lstm", 2, 6, layers=3, proj=3, head=2, seed=15), 2),
    ("lstm proj_size no head", lambda: models.recurrent("lstm", 2, 5, proj=2, seed=16), 2),
    ("gru 1 layer", lambda: models.recurrent("gru", 1, 16, head=1, seed=17), 1),
    ("gru 3 layers standardised", lambda: models.recurrent(
        "gru", 2, 4, layers=3, head=2, seed=18, metadata={
            "input_mean": "[0.5, -1]", "input_std": "[2, 0.5]", "output_mean": "[10, 20]",
            "output_std": "[3, 4]", "output_activation": "tanh"}), 2),
    ("seed tutorial", lambda: models.seed_rnn(2, 6, 2, seed=19, metadata={"output_activation": "log_softmax"}), 2),
    ("seed tutorial relu", lambda: models.seed_rnn(1, 5, 1, seed=20, metadata={"hidden_activation": "relu"}), 1),
    ("named outputs", lambda: models.recurrent("gru", 2, 4, head=2, seed=21,
                                               metadata={"output_names": "[\"lo\", \"hi\"]"}), 2),
]


def rows_for(n_features, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(T):
        x = [rng.randint(-16, 16) / 8 for _ in range(n_features)]
        if i == 3:
            x[0] = None          # skipped by every function
        rows.append(x)
    return rows


def make_con(blob, n_features, seed):
    con = connect()
    models.registry(con, m=blob)
    cols = ", ".join("x%d REAL" % k for k in range(n_features))
    con.execute("CREATE TABLE d(i INTEGER PRIMARY KEY, %s)" % cols)
    rows = rows_for(n_features, seed)
    con.executemany("INSERT INTO d VALUES (?%s)" % (",?" * n_features), [[i] + r for i, r in enumerate(rows)])
    return con, rows


def seq_json(rows):
    """rnn_eval's sequence for rows, NULL rows left out; None for none."""
    used = [r for r in rows if None not in r]
    if not used:
        return None
    return json.dumps([r[0] if len(r) == 1 else r for r in used])


def test_exact_resume():
    for label, make, nf in CASES:
        def case(make=make, nf=nf):
            con, rows = make_con(make(), nf, len(label))
            feats = ", ".join("x%d" % k for k in range(nf))
            marks = ", ".join("?" * nf)
            window = con.execute("SELECT rnn_predict('m', %s) OVER (ORDER BY i), hex(rnn_state('m', %s) OVER "
                                 "(ORDER BY i)) FROM d ORDER BY i" % (feats, feats)).fetchall()
            n_in, n_out = nf, json.loads(one(con, "SELECT rnn_info('m')"))["output_size"]
            whole = seq_json(rows)
            want_eval = one(con, "SELECT rnn_eval('m', ?)", (whole,))
            want_steps = con.execute("SELECT output, hex(hidden) FROM rnn_steps('m', ?)", (whole,)).fetchall()
            want_fc = (con.execute("SELECT step, output FROM rnn_forecast('m', ?, 3)", (whole,)).fetchall()
                       if n_in == n_out else None)
            for k in range(T + 1):
                state = one(con, "SELECT rnn_state('m', %s) FROM d WHERE i < ?" % feats, (k,))
                done = len([r for r in rows[:k] if None not in r])
                rest = seq_json(rows[k:])
                # rnn_eval, rnn_steps, rnn_forecast resumed from the prefix's state
                assert one(con, "SELECT rnn_eval('m', ?, ?)", (rest, state)) == want_eval, k
                got = con.execute("SELECT output, hex(hidden) FROM rnn_steps('m', ?, ?)", (rest, state)).fetchall()
                assert got == want_steps[done:], k
                if want_fc is not None:
                    got = con.execute("SELECT step, output FROM rnn_forecast('m', ?, 3, ?)", (rest, state)).fetchall()
                    assert got == want_fc, k
                # rnn_step row by row
                for i in range(k, T):
                    state = one(con, "SELECT rnn_step('m', ?, %s)" % marks, [state] + rows[i])
                    out = one(con, "SELECT rnn_output('m', ?)", (state,))
                    assert (state.hex().upper() if state is not None else None, out) == \
                        (window[i][1], window[i][0]), (k, i)
        yield label, case


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_layout():
    """The documented layout: header, then h per layer, c per layer (LSTM), y (tutorial cell)."""
    cases = [
        ("gru", models.recurrent("gru", 1, 4, seed=31), 1, 4, 0, 0),
        ("lstm", models.recurrent("lstm", 1, 3, layers=2, seed=32), 1, 3, 3, 0),
        ("lstm proj", models.recurrent("lstm", 1, 5, layers=2, proj=2, seed=33), 1, 2, 5, 0),
        ("seed", models.seed_rnn(1, 4, 3, seed=34), 1, 4, 0, 3),
    ]
    for label, blob, nf, hout, H_c, n_y in cases:
        def case(blob=blob, hout=hout, H_c=H_c, n_y=n_y):
            con = connect()
            models.registry(con, m=blob)
            con.execute("CREATE TABLE d(i INTEGER PRIMARY KEY, x REAL)")
            con.executemany("INSERT INTO d VALUES (?, ?)", [(0, 0.5), (1, None), (2, -1.25), (3, 2.0)])
            s = one(con, "SELECT rnn_state('m', x) FROM d")
            layers = json.loads(one(con, "SELECT rnn_info('m')")).get("num_layers", 1)
            assert s[:4] == b"RNNS"
            assert struct.unpack("<IQq", s[4:24]) == (1, fnv1a64(blob), 3)
            assert len(s) == 24 + 4 * (layers * hout + layers * H_c + n_y)
            v = f32_list(s[24:])
            hidden = f32_list(one(con, "SELECT rnn_hidden('m', x) FROM d"))
            assert v[(layers - 1) * hout:layers * hout] == hidden
            if n_y:   # the tutorial cell's output is y (no activation here); JSON's 9 digits round-trip float32
                out = json.loads(one(con, "SELECT rnn_predict('m', x) FROM d"))
                assert v[-n_y:] == [struct.unpack("<f", struct.pack("<f", o))[0] for o in out]
        yield label, case


def err_con():
    con = connect()
    models.registry(con, m=models.recurrent("gru", 1, 4, head=1, seed=41),
                    other=models.recurrent("gru", 1, 4, head=1, seed=42),
                    bi=models.recurrent("gru", 1, 3, head=1, bidirectional=True, seed=43),
                    two=models.recurrent("lstm", 2, 3, head=1, seed=44))
    return con


def test_state_errors():
    con = err_con()
    s = one(con, "SELECT rnn_step('m', NULL, 0.5)")
    h_m = "%016x" % fnv1a64(one(con, "SELECT model FROM rnn_models WHERE name = 'm'"))
    h_o = "%016x" % fnv1a64(one(con, "SELECT model FROM rnn_models WHERE name = 'other'"))
    assert len(s) == 40
    cases = {
        "another model": ("SELECT rnn_output('other', ?)", (s,),
                          "rnn_output(): argument 2 is the state of another model (model hash %s, this model's is "
                          "%s)" % (h_m, h_o)),
        "short": ("SELECT rnn_step('m', ?, 1)", (s[:-4],),
                  "rnn_step(): argument 2 is a state of 36 bytes, this model's state has 40"),
        "long": ("SELECT rnn_eval('m', '[1]', ?)", (s + b"\0\0\0\0",),
                 "rnn_eval(): argument 3 is a state of 44 bytes, this model's state has 40"),
        "magic": ("SELECT rnn_output('m', ?)", (b"RNNX" + s[4:],),
                  "rnn_output(): argument 2 is not a state: a state BLOB starts with 'RNNS' and has at least 24 "
                  "bytes (got 40): pass a value from rnn_state() or rnn_step()"),
        "empty blob": ("SELECT rnn_output('m', x'')", (),
                       "rnn_output(): argument 2 is not a state: a state BLOB starts with 'RNNS' and has at least "
                       "24 bytes (got 0): pass a value from rnn_state() or rnn_step()"),
        "a hidden BLOB": ("SELECT rnn_output('m', rnn_hidden('m', 1.0) OVER ())", (),
                          "rnn_output(): argument 2 is not a state: a state BLOB starts with 'RNNS' and has at "
                          "least 24 bytes (got 16): pass a value from rnn_state() or rnn_step()"),
        "version": ("SELECT rnn_output('m', ?)", (s[:4] + b"\2\0\0\0" + s[8:],),
                    "rnn_output(): argument 2 is a state of layout version 2, this sqlite-rnn reads version 1"),
        "negative steps": ("SELECT rnn_output('m', ?)", (s[:16] + struct.pack("<q", -1) + s[24:],),
                           "rnn_output(): argument 2 is not a state: its step count is negative"),
        "TEXT": ("SELECT rnn_step('m', 'state', 1)", (),
                 "rnn_step(): argument 2 (state) is TEXT, expected a state BLOB from rnn_state() or rnn_step(), "
                 "or NULL"),
        "steps TEXT": ("SELECT * FROM rnn_steps('m', '[1]', 3)", (),
                       "rnn_steps(): argument 3 (state) is INTEGER, expected a state BLOB from rnn_state() or "
                       "rnn_step(), or NULL"),
        "forecast other": ("SELECT * FROM rnn_forecast('other', '[1]', 2, ?)", (s,),
                           "rnn_forecast(): argument 4 is the state of another model (model hash %s, this model's "
                           "is %s)" % (h_m, h_o)),
        "NULL feature, bad state": ("SELECT rnn_step('m', x'00', NULL)", (),
                                    "rnn_step(): argument 2 is not a state: a state BLOB starts with 'RNNS' and has "
                                    "at least 24 bytes (got 1): pass a value from rnn_state() or rnn_step()"),
        "no feature": ("SELECT rnn_step('m', NULL)", (),
                       "rnn_step(): expected a model, a state and at least one feature"),
        "feature count": ("SELECT rnn_step('two', NULL, 1)", (), "rnn_step(): model expects 2 features, got 1"),
        "feature TEXT": ("SELECT rnn_step('two', NULL, 1, '2.5')", (),
                         "rnn_step(): argument 4 (feature 2) is TEXT '2.5', expected a number: numbers imported as "
                         "TEXT (e.g. by .import --csv) need CAST(... AS REAL)"),
        "feature BLOB": ("SELECT rnn_step('m', NULL, x'00')", (),
                         "rnn_step(): argument 3 (feature 1) is BLOB, expected a number"),
        "feature inf": ("SELECT rnn_step('m', NULL, 1e39)", (),
                        "rnn_step(): argument 3 (feature 1) is 9.9999999999999994e+38, expected a finite float32 "
                        "number"),
        "missing model": ("SELECT rnn_output('nope', NULL)", (), None),
    }
    bi = ("model is bidirectional: its state after a row depends on the rows after it, so it cannot be kept or "
          "resumed (score whole sequences with rnn_eval instead)")
    cases.update({
        "bi step": ("SELECT rnn_step('bi', NULL, 1)", (), "rnn_step(): " + bi),
        "bi output": ("SELECT rnn_output('bi', NULL)", (), "rnn_output(): " + bi),
        "bi eval": ("SELECT rnn_eval('bi', '[1]', NULL)", (), "rnn_eval(): " + bi),
        "bi steps": ("SELECT * FROM rnn_steps('bi', '[1]', NULL)", (), "rnn_steps(): " + bi),
        "bi forecast": ("SELECT * FROM rnn_forecast('bi', '[1]', 2, NULL)", (), "rnn_forecast(): " + bi),
        "bi state": ("SELECT rnn_state('bi', 1.0)", (),
                     "rnn_state(): model is bidirectional: a window or aggregate cannot see the rows after the "
                     "current one (score whole sequences instead)"),
    })
    for label, (sql, args, want) in cases.items():
        def case(sql=sql, args=args, want=want):
            got = error_of(con, sql, args)
            if want is None:
                assert got.startswith("rnn_output(): no model named 'nope'"), got
            else:
                assert got == want
        yield label, case


def test_null_rules():
    con = err_con()
    s = one(con, "SELECT rnn_step('m', NULL, 0.5)")
    zero = b"RNNS" + struct.pack("<IQq", 1, fnv1a64(one(con, "SELECT model FROM rnn_models WHERE name='m'")), 0) \
        + b"\0" * 16
    assert one(con, "SELECT rnn_step('m', ?, NULL)", (s,)) == s               # a NULL feature: unchanged
    assert one(con, "SELECT rnn_step('two', ?, 1, NULL)", (None,)) is None    # NULL state stays NULL
    assert one(con, "SELECT rnn_output('m', NULL)") is None                   # the zero state: no output yet
    assert one(con, "SELECT rnn_output('m', ?)", (zero,)) is None             # a state of 0 steps likewise
    assert one(con, "SELECT rnn_step('m', ?, 0.5)", (zero,)) == s             # ... and it is the zero state
    assert one(con, "SELECT rnn_step('m', NULL, 0.5)") == s
    assert one(con, "SELECT rnn_eval('m', NULL, ?)", (s,)) == one(con, "SELECT rnn_output('m', ?)", (s,))
    assert one(con, "SELECT rnn_eval('m', '[0.5]', NULL)") == one(con, "SELECT rnn_eval('m', '[0.5]')")
    assert one(con, "SELECT rnn_eval('m', NULL, NULL)") is None
    assert one(con, "SELECT rnn_eval('m', NULL)") is None
    assert one(con, "SELECT rnn_state('m', x) FROM (SELECT NULL AS x)") is None
    assert one(con, "SELECT rnn_state('m', x) FROM (SELECT 1 AS x) WHERE 0") is None
    assert con.execute("SELECT * FROM rnn_steps('m', NULL, ?)", (s,)).fetchall() == []
    assert con.execute("SELECT * FROM rnn_forecast('m', NULL, 2, NULL)").fetchall() == []
    assert con.execute("SELECT step, output FROM rnn_forecast('m', NULL, 2, ?)", (s,)).fetchall() == \
        con.execute("SELECT step, output FROM rnn_forecast('m', '[0.5]', 2)").fetchall()


def test_state_column():
    """The state argument is the HIDDEN column `state` (NULL when not given), and a join can supply it."""
    con = err_con()
    s = one(con, "SELECT rnn_step('m', NULL, 0.5)")
    assert con.execute("SELECT step, state FROM rnn_steps('m', '[1, 2]', ?)", (s,)).fetchall() == \
        [(0, s), (1, s)]
    assert con.execute("SELECT state FROM rnn_steps('m', '[1]')").fetchall() == [(None,)]
    assert con.execute("SELECT state FROM rnn_forecast('m', '[1]', 1)").fetchall() == [(None,)]
    con.execute("CREATE TABLE series_state(device TEXT PRIMARY KEY, t INTEGER, state BLOB)")
    con.execute("INSERT INTO series_state VALUES ('a', 1, ?), ('b', 1, NULL)", (s,))
    got = con.execute("SELECT s.device, f.step, f.output FROM series_state AS s, "
                      "rnn_forecast('m', '[1.5]', 2, s.state) AS f ORDER BY 1, 2").fetchall()
    a = con.execute("SELECT 'a', step, output FROM rnn_forecast('m', '[0.5, 1.5]', 2)").fetchall()
    b = con.execute("SELECT 'b', step, output FROM rnn_forecast('m', '[1.5]', 2)").fetchall()
    assert got == a + b
    # listed first, the table-valued function still waits for the state the join supplies (xBestIndex)
    got = con.execute("SELECT s.device, f.step, f.output FROM rnn_forecast('m', '[1.5]', 2, s.state) AS f, "
                      "series_state AS s ORDER BY 1, 2").fetchall()
    assert got == a + b


def test_vocab_model():
    """A vocab model steps on one token (TEXT or index) per call, as the window functions read it."""
    con = connect()
    models.registry(con, lang=models.recurrent("gru", 3, 4, head=2, seed=51,
                                               metadata={"vocab": "[\"a\", \"b\", \"c\"]"}))
    s = None
    for tok in ["a", "c", 1, "b"]:
        s = one(con, "SELECT rnn_step('lang', ?, ?)", (s, tok))
    assert one(con, "SELECT rnn_output('lang', ?)", (s,)) == one(con, "SELECT rnn_eval('lang', 'acbb')")
    assert error_of(con, "SELECT rnn_step('lang', NULL, 'z')") == \
        "rnn_step(): argument 3 'z' is not a token of the model's vocab"
    assert error_of(con, "SELECT rnn_step('lang', NULL, 3)") == \
        "rnn_step(): argument 3 is token index 3, outside 0..2"
    assert error_of(con, "SELECT rnn_step('lang', NULL, 1.5)") == \
        "rnn_step(): argument 3 is REAL, expected a token (TEXT) or a token index (INTEGER) of the model's vocab"


def test_model_by_blob_and_name():
    """A state names its model by content: the same bytes under another name, or as a BLOB, accept it."""
    con = err_con()
    blob = one(con, "SELECT model FROM rnn_models WHERE name = 'm'")
    con.execute("INSERT INTO rnn_models VALUES ('copy', ?)", (blob,))
    s = one(con, "SELECT rnn_step('m', NULL, 0.5)")
    assert one(con, "SELECT rnn_step('copy', ?, 1)", (s,)) == one(con, "SELECT rnn_step(?, ?, 1)", (blob, s))
    con.execute("UPDATE rnn_models SET model = (SELECT model FROM rnn_models WHERE name = 'other') "
                "WHERE name = 'copy'")
    assert "is the state of another model" in error_of(con, "SELECT rnn_output('copy', ?)", (s,))


def trigger_con():
    """sql/trigger.sql's tables and triggers (the part between its rnn_models and its example rows)."""
    text = open(os.path.join(ROOT, "sql", "trigger.sql"), encoding="utf-8").read()
    schema = text[text.index("CREATE TABLE readings"):text.index("-- Readings arrive")]
    con = connect()
    models.registry(con, room_temp=open(os.path.join(ROOT, "sql", "demo_model.safetensors"), "rb").read())
    con.executescript(schema)
    return con


def test_trigger_matches_window():
    """Readings inserted one at a time, devices interleaved, some NULL: the trigger's stored forecasts and states
    equal the window query's over the same rows, bit for bit."""
    con = trigger_con()
    rng = random.Random(61)
    clocks = {"a": 0, "b": 100, "c": 7}
    for _ in range(300):
        dev = rng.choice(sorted(clocks))
        clocks[dev] += rng.randint(1, 600)
        temp = None if rng.random() < 0.05 else round(rng.gauss(20, 3), 3)
        con.execute("INSERT INTO readings VALUES (?, ?, ?)", (dev, clocks[dev], temp))
    got = con.execute("SELECT device, t, next_temp FROM predictions ORDER BY device, t").fetchall()
    want = con.execute("SELECT device, t, rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t) "
                       "FROM readings ORDER BY device, t").fetchall()
    assert len(got) == 300 and got == want
    got = con.execute("SELECT device, t, hex(state) FROM series_state ORDER BY device").fetchall()
    want = con.execute("SELECT device, t, hex(s) FROM (SELECT device, t, rnn_state('room_temp', temp) OVER "
                       "(PARTITION BY device ORDER BY t) AS s, row_number() OVER (PARTITION BY device ORDER BY t "
                       "DESC) AS r FROM readings) WHERE r = 1 ORDER BY device").fetchall()
    assert got == want
    # the documented rebuild of a device's row gives the same state
    con.execute("UPDATE series_state SET state = NULL, t = 0")
    con.execute("UPDATE series_state SET (t, state) = (SELECT t, rnn_state('room_temp', temp) OVER (ORDER BY t) "
                "FROM readings WHERE device = series_state.device ORDER BY t DESC LIMIT 1)")
    assert con.execute("SELECT device, t, hex(state) FROM series_state ORDER BY device").fetchall() == want


def test_trigger_order():
    """A reading out of order or with a timestamp already seen is refused and nothing is written; a NULL reading
    keeps the state and moves t on."""
    con = trigger_con()
    con.execute("INSERT INTO readings VALUES ('a', 10, 20.5)")
    con.execute("INSERT INTO readings VALUES ('a', 20, 21.0)")
    before = [con.execute("SELECT * FROM %s ORDER BY 1, 2" % t).fetchall()
              for t in ("readings", "series_state", "predictions")]
    msg = "readings: out of order: a reading must be later than the device's last one"
    assert error_of(con, "INSERT INTO readings VALUES ('a', 15, 22.0)") == msg
    assert error_of(con, "INSERT INTO readings VALUES ('a', 20, 22.0)") == msg
    assert error_of(con, "INSERT INTO readings VALUES ('a', 20, NULL)") == msg
    after = [con.execute("SELECT * FROM %s ORDER BY 1, 2" % t).fetchall()
             for t in ("readings", "series_state", "predictions")]
    assert after == before
    state = one(con, "SELECT state FROM series_state WHERE device = 'a'")
    con.execute("INSERT INTO readings VALUES ('a', 30, NULL)")
    assert con.execute("SELECT t, state FROM series_state").fetchall() == [(30, state)]
    con.execute("INSERT INTO readings VALUES ('b', 5, 19.0)")     # another device has its own clock
    assert con.execute("SELECT device, t FROM series_state ORDER BY 1").fetchall() == [("a", 30), ("b", 5)]
