"""rnn_eval, rnn_classify, rnn_sequence, token input and the sequence error paths
(ext/eval.c, ext/sequence.c, ext/tvf.c rules). PyTorch agreement of these functions is in
test_sequences.py; here: properties, encodings, tokenising, exact error messages."""
import json
import random

import models
from rnnlib import connect, error_of, f32_blob, f32_list, one

VOCAB = ["a", "b", "c", "ch", "sch", "\u00e9", "\u00df"]


def vocab_model(labels=True, unknown=None, O=3, seed=3):
    md = {"vocab": json.dumps(VOCAB), "cell": "seed"}
    if labels:
        md["labels"] = json.dumps(["x", "y", "z"][:O])
    if unknown:
        md["unknown_token"] = unknown
    return models.seed_rnn(len(VOCAB), 5, O, seed=seed, metadata=md)


def test_predict_over_any_frame_equals_eval_of_frame():
    """DESIGN: rnn_predict(m, x) OVER w at a row equals rnn_eval(m, <the frame's x values>)."""
    rng = random.Random(5)
    con = connect()
    models.registry(con, m=models.recurrent("lstm", 1, 6, layers=2, head=1, seed=8))
    con.execute("CREATE TABLE d(id INTEGER PRIMARY KEY, p, t, v)")
    con.executemany("INSERT INTO d(p, t, v) VALUES (?,?,?)",
                    [(rng.randint(0, 3), rng.randint(0, 30), None if rng.random() < 0.1 else rng.gauss(0, 1))
                     for _ in range(200)])
    bounds = ["UNBOUNDED PRECEDING", "3 PRECEDING", "1 PRECEDING", "CURRENT ROW", "1 FOLLOWING", "4 FOLLOWING",
              "UNBOUNDED FOLLOWING"]
    checked = 0
    for _ in range(40):
        i = rng.randrange(len(bounds) - 1)
        j = rng.randrange(max(i, 1), len(bounds))
        unit = rng.choice(["ROWS", "RANGE", "GROUPS"])
        order = "t, id" if unit == "ROWS" else "t"
        excl = rng.choice(["", "", " EXCLUDE CURRENT ROW", " EXCLUDE TIES"])
        w = "PARTITION BY p ORDER BY %s %s BETWEEN %s AND %s%s" % (order, unit, bounds[i], bounds[j], excl)
        if unit == "RANGE" and ("PRECEDING" in bounds[i] and bounds[i][0].isdigit() or
                                "FOLLOWING" in bounds[j] and bounds[j][0].isdigit()):
            pass  # numeric RANGE offsets are fine: t is numeric
        rows = con.execute("SELECT rnn_predict('m', v) OVER w, json_group_array(v) OVER w FROM d "
                           "WINDOW w AS (%s)" % w).fetchall()
        for got, frame in rows:
            seq = [v for v in json.loads(frame) if v is not None]
            if not seq:
                assert got is None, (w, got)
            else:
                want = one(con, "SELECT rnn_eval('m', ?)", (f32_blob(seq),))
                assert got == want, (w, frame, got, want)
            checked += 1
    assert checked == 40 * 200


def test_encodings_identical():
    con = connect()
    m1 = models.recurrent("gru", 1, 4, head=1, seed=1)
    m3 = models.recurrent("gru", 3, 4, head=2, seed=2)
    xs = [0.5, -1.25, 2.0, 0.125]
    a = one(con, "SELECT rnn_eval(?, ?)", (m1, json.dumps(xs)))
    b = one(con, "SELECT rnn_eval(?, ?)", (m1, json.dumps([[x] for x in xs])))
    c = one(con, "SELECT rnn_eval(?, ?)", (m1, f32_blob(xs)))
    assert a == b == c
    rows = [[0.5, 1, -2], [0.25, 0, 3]]
    a = one(con, "SELECT rnn_eval(?, ?)", (m3, json.dumps(rows)))
    c = one(con, "SELECT rnn_eval(?, ?)", (m3, f32_blob([v for r in rows for v in r])))
    assert a == c and len(json.loads(a)) == 2


def test_sequence_aggregate_orders_by_key():
    con = connect()
    m = models.recurrent("gru", 2, 4, head=1, seed=4)
    con.execute("CREATE TABLE r(dev, t, a, b)")
    rng = random.Random(2)
    rows = [(d, t, rng.gauss(0, 1), rng.gauss(0, 1)) for d in range(3) for t in range(40)]
    rng.shuffle(rows)
    con.executemany("INSERT INTO r VALUES (?,?,?,?)", rows)
    con.execute("INSERT INTO r VALUES (0, 99, NULL, 1), (0, NULL, 1, 1)")   # skipped: NULL feature, NULL key
    for d in range(3):
        blob = one(con, "SELECT rnn_sequence(t, a, b) FROM r WHERE dev = ?", (d,))
        want = [v for (_, _, a, b) in sorted(x for x in rows if x[0] == d) for v in (a, b)]
        assert f32_list(blob) == [struct_round(v) for v in want]
        assert one(con, "SELECT rnn_eval(?, rnn_sequence(t, a, b)) FROM r WHERE dev = ?", (m, d)) == \
            one(con, "SELECT rnn_eval(?, ?)", (m, blob))
    # text keys (ISO timestamps) sort as text, after numbers; ties broken by the features
    blob = one(con, "SELECT rnn_sequence(column1, column2) FROM (VALUES ('2024-01-02', 2.0), ('2024-01-01', 1.0), "
                    "(5, 0.5), ('2024-01-01', 0.75))")
    assert f32_list(blob) == [0.5, 0.75, 1.0, 2.0]
    assert one(con, "SELECT rnn_sequence(t, v) FROM (SELECT 1 t, 1.0 v) WHERE 0") is None
    assert one(con, "SELECT rnn_sequence(column1, column2) FROM (VALUES (NULL, 1.0))") is None


def struct_round(v):
    return f32_list(f32_blob([v]))[0]


def test_tokens_longest_match():
    con = connect()
    blob = vocab_model()
    # 'schach' -> sch, a, ch ; the one-hot rows equal the explicit float32 encoding
    onehot = []
    for tok in ["sch", "a", "ch"]:
        row = [0.0] * len(VOCAB)
        row[VOCAB.index(tok)] = 1.0
        onehot += row
    assert one(con, "SELECT rnn_eval(?, 'schach')", (blob,)) == one(con, "SELECT rnn_eval(?, ?)", (blob, f32_blob(onehot)))
    steps = con.execute("SELECT step, input FROM rnn_steps(?, 'sch\u00e9\u00dfa')", (blob,)).fetchall()
    assert steps == [(0, "sch"), (1, "\u00e9"), (2, "\u00df"), (3, "a")]
    # window functions take one token or token index per row
    con.execute("CREATE TABLE w(t INTEGER PRIMARY KEY, tok)")
    con.executemany("INSERT INTO w(tok) VALUES (?)", [("sch",), ("a",), (3,)])
    got = one(con, "SELECT rnn_predict(?, tok) OVER (ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED "
                   "FOLLOWING) FROM w LIMIT 1", (blob,))
    assert got == one(con, "SELECT rnn_eval(?, 'schach')", (blob,))


def test_classify():
    con = connect()
    blob = vocab_model()
    out = json.loads(one(con, "SELECT rnn_eval(?, 'abc')", (blob,)))
    assert one(con, "SELECT rnn_classify(?, 'abc')", (blob,)) == ["x", "y", "z"][out.index(max(out))]
    nolabels = vocab_model(labels=False)
    out = json.loads(one(con, "SELECT rnn_eval(?, 'abc')", (nolabels,)))
    assert one(con, "SELECT rnn_classify(?, 'abc')", (nolabels,)) == out.index(max(out))
    assert one(con, "SELECT rnn_classify(?, NULL)", (blob,)) is None
    assert one(con, "SELECT rnn_eval(?, NULL)", (blob,)) is None
    assert con.execute("SELECT * FROM rnn_steps(?, NULL)", (blob,)).fetchall() == []


def test_unknown_token():
    con = connect()
    blob = vocab_model(unknown="\u00df")
    assert one(con, "SELECT rnn_eval(?, 'a?c')", (blob,)) == one(con, "SELECT rnn_eval(?, 'a\u00dfc')", (blob,))
    assert con.execute("SELECT input FROM rnn_steps(?, 'a\u20acc')", (blob,)).fetchall() == \
        [("a",), ("\u00df",), ("c",)]


def test_forecast_feeds_back():
    con = connect()
    m = models.recurrent("gru", 1, 5, head=1, seed=6,
                         metadata={"input_mean": "[2]", "input_std": "[3]", "output_mean": "[2]", "output_std": "[3]"})
    rows = con.execute("SELECT step, output FROM rnn_forecast(?, '[1, 2, 3]', 4)", (m,)).fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    seq = [1.0, 2.0, 3.0]
    for step, out in rows:
        assert out == one(con, "SELECT rnn_eval(?, ?)", (m, f32_blob(seq)))
        seq.append(out)


def test_forecast_bidirectional_reruns_the_sequence():
    """A bidirectional forecast: step k+1 is rnn_eval over the sequence with steps 1..k appended."""
    con = connect()
    m = models.recurrent("lstm", 2, 4, layers=2, bidirectional=True, head=2, seed=12)
    rows = con.execute("SELECT step, output FROM rnn_forecast(?, '[[1, 0.5], [2, -1]]', 5)", (m,)).fetchall()
    seq = [[1.0, 0.5], [2.0, -1.0]]
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    for step, out in rows:
        assert out == one(con, "SELECT rnn_eval(?, ?)", (m, json.dumps(seq)))
        seq.append(json.loads(out))


def test_steps_in_a_join():
    con = connect()
    models.registry(con, m=models.recurrent("rnn_tanh", 1, 3, head=1, seed=9))
    con.execute("CREATE TABLE seqs(id INTEGER PRIMARY KEY, seq)")
    con.executemany("INSERT INTO seqs(seq) VALUES (?)", [("[1,2,3]",), ("[4]",), (None,), ("[0.5,0.25]",)])
    rows = con.execute("SELECT s.id, f.step, f.output FROM seqs AS s, rnn_steps('m', s.seq) AS f "
                       "ORDER BY s.id, f.step").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, 0), (1, 1), (1, 2), (2, 0), (4, 0), (4, 1)]
    for sid, step, out in rows:
        seq = json.loads(one(con, "SELECT seq FROM seqs WHERE id = ?", (sid,)))[:step + 1]
        assert out == one(con, "SELECT rnn_eval('m', ?)", (json.dumps(seq),))


SEQ_ERRORS = [
    ("rnn_eval(:m1, '[1,2,')", "rnn_eval(): sequence is not valid JSON: unexpected end of text at byte 5"),
    ("rnn_eval(:m1, '{}')", "rnn_eval(): sequence must be a JSON array, got an object"),
    ("rnn_eval(:m1, '[]')", "rnn_eval(): sequence is empty"),
    ("rnn_eval(:m1, x'')", "rnn_eval(): sequence is empty"),
    ("rnn_eval(:m1, '[1, \"a\"]')", "rnn_eval(): sequence step 1 is a string, expected a number or an array"),
    ("rnn_eval(:m1, '[1, 1e39]')", "rnn_eval(): sequence step 1 is not a finite float32 number"),
    ("rnn_eval(:m3, '[1, 2]')", "rnn_eval(): sequence step 0 is a number, but the model expects 3 features per step"),
    ("rnn_eval(:m3, '[[1,2,3],[1,2]]')", "rnn_eval(): sequence step 1 has 2 features, the model expects 3"),
    ("rnn_eval(:m3, '[[1,2,null]]')", "rnn_eval(): sequence step 0 feature 3 is null, expected a finite number"),
    ("rnn_eval(:m3, x'000000000000803f')",
     "rnn_eval(): sequence BLOB has 8 bytes, not a multiple of 12 (3 float32 features per step); float64 values "
     "(numpy's default) take 8 bytes each: pass float32, e.g. sqlite_rnn.sequence(x) or x.astype('<f4').tobytes()"),
    ("rnn_eval(:m1, x'0000807f')", "rnn_eval(): sequence step 0 feature 1 is not finite"),
    ("rnn_eval(:m1, 5)", "rnn_eval(): sequence is INTEGER: pass a JSON array, a float32 BLOB or, for a model with "
                         "a vocab, TEXT"),
    ("rnn_classify(:v, 'abXc')", "rnn_classify(): 'X' at character 3 of the text is not in the model's vocab"),
    ("rnn_classify(:v, 'a\u00e9\u20ac')",
     "rnn_classify(): '\u20ac' at character 3 of the text is not in the model's vocab"),
    ("rnn_classify(:v, '')", "rnn_classify(): sequence is empty"),
    ("rnn_predict(:v, 'zz')", "rnn_predict(): argument 2 'zz' is not a token of the model's vocab"),
    ("rnn_predict(:v, 7)", "rnn_predict(): argument 2 is token index 7, outside 0..6"),
    ("rnn_predict(:v, 1.5)",
     "rnn_predict(): argument 2 is REAL, expected a token (TEXT) or a token index (INTEGER) of the model's vocab"),
    ("rnn_sequence(1)", "rnn_sequence(): expected an ordering key and at least one feature"),
    ("rnn_sequence(x'00', 1)", "rnn_sequence(): argument 1 (the ordering key) is BLOB, expected a number or text"),
    ("rnn_sequence(1, 'a')", "rnn_sequence(): argument 2 (feature 1) is TEXT, expected a number"),
    ("rnn_sequence(1, 9e999)", "rnn_sequence(): argument 2 (feature 1) is Inf, expected a finite float32 number"),
]
TVF_ERRORS = [
    ("SELECT * FROM rnn_steps(:m1)", "rnn_steps(): missing argument 2 (sequence)"),
    ("SELECT * FROM rnn_steps()", "rnn_steps(): missing argument 1 (model)"),
    ("SELECT * FROM rnn_forecast(:m1, '[1]')", "rnn_forecast(): missing argument 3 (horizon)"),
    ("SELECT * FROM rnn_forecast(:m1, '[1]', 0)", "rnn_forecast(): horizon must be an INTEGER from 1 to 1000000, got INTEGER 0"),
    ("SELECT * FROM rnn_forecast(:m1, '[1]', 1000001)",
     "rnn_forecast(): horizon must be an INTEGER from 1 to 1000000, got INTEGER 1000001"),
    ("SELECT * FROM rnn_forecast(:m1, '[1]', 2.5)",
     "rnn_forecast(): horizon must be an INTEGER from 1 to 1000000, got REAL 2.5"),
    ("SELECT * FROM rnn_forecast(:m3, '[[1,2,3]]', 5)",
     "rnn_forecast(): model has 2 outputs but takes 3 inputs: a forecast feeds each output back as the next input"),
    ("SELECT * FROM rnn_steps(:m1, '[1,')", "rnn_steps(): sequence is not valid JSON: unexpected end of text at byte 3"),
    ("SELECT * FROM rnn_steps('nope', '[1]')",
     "rnn_steps(): no table rnn_models: create it with CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB "
     "NOT NULL) (sql/rnn_models.sql), then insert the model"),
    ("SELECT * FROM rnn_steps(x'00', '[1]')",
     "rnn_steps(): invalid model: BLOB is 1 bytes, too short for a safetensors header"),
]


def test_sequence_errors():
    con = connect()
    params = {"m1": models.recurrent("gru", 1, 3, head=1), "m3": models.recurrent("gru", 3, 3, head=2),
              "v": vocab_model(), "bi": models.recurrent("gru", 1, 2, bidirectional=True, head=1)}
    for expr, msg in SEQ_ERRORS:
        yield expr, (lambda e=expr, m=msg: _eq(error_of(con, "SELECT " + e, params), m))
    for sql, msg in TVF_ERRORS:
        yield sql, (lambda s=sql, m=msg: _eq(error_of(con, s, params), m))


def _eq(got, want):
    assert got == want, "got %r\nwant %r" % (got, want)


BAD_META = [
    ({"vocab": "[\"a\", 1]"}, "__metadata__ vocab must be a JSON array of distinct non-empty strings"),
    ({"vocab": "[\"a\", \"\"]"}, "__metadata__ vocab must be a JSON array of distinct non-empty strings"),
    ({"vocab": "[\"a\", \"a\", \"b\"]"}, "__metadata__ vocab has the token 'a' twice"),
    ({"vocab": "[\"a\", \"b\"]"}, "__metadata__ vocab has 2 tokens but the model takes 3 inputs"),
    ({"labels": "[\"a\"]"}, "__metadata__ labels has 1 names but the model has 2 outputs"),
    ({"labels": "{}"}, "__metadata__ labels must be a JSON array of strings"),
    ({"unknown_token": "a"}, "__metadata__ unknown_token needs a vocab"),
    ({"vocab": "[\"a\",\"b\",\"c\"]", "unknown_token": "d"}, "__metadata__ unknown_token 'd' is not in vocab"),
]


def test_bad_token_metadata():
    con = connect()
    for md, msg in BAD_META:
        blob = models.recurrent("gru", 3, 2, head=2, metadata=md)
        yield msg, (lambda b=blob, m=msg: _eq(error_of(con, "SELECT rnn_info(?)", (b,)),
                                              "rnn_info(): invalid model: " + m))
