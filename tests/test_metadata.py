"""Metadata keys the loader does not read, and `output_names` (ext/model.c rule 6, ext/info.c, ext/util.c).

  - a key the loader does not read is kept (rnn_info's `metadata`), changes no result, and is reported in
    rnn_info's `warnings`, with the known key it is a typo of when one is at most 2 edits away; models whose keys
    are all known have no `warnings` entry;
  - output_names (a JSON array of distinct non-empty strings, one per output) turns every multi-output result
    into a JSON object {name: value} in output order: rnn_eval, rnn_predict (window and aggregate), rnn_steps'
    output (its input stays an array), rnn_forecast; the numbers are those of the positional array, bit for bit;
    one output stays REAL; rnn_info lists the names;
  - bad output_names are refused with a message naming the key.
"""
import json
import os

import models
from rnnlib import ROOT, connect, error_of, one


def info(con, blob):
    return json.loads(one(con, "SELECT rnn_info(?)", (blob,)))


def test_unknown_keys_are_warned():
    con = connect()
    meta = {"input_means": "[1]", "readouts": "final_states", "Cell": "gru", "lables": "[]", "owner": "ops",
            "output_name": "[]", "we\"ird\n": "x", "description": "kept quietly"}
    got = info(con, models.recurrent("gru", 1, 3, metadata=meta))
    assert got["warnings"] == [
        "unknown metadata key 'input_means' (ignored); did you mean 'input_mean'?",
        "unknown metadata key 'readouts' (ignored); did you mean 'readout'?",
        "unknown metadata key 'Cell' (ignored); did you mean 'cell'?",
        "unknown metadata key 'lables' (ignored); did you mean 'labels'?",
        "unknown metadata key 'owner' (ignored)",
        "unknown metadata key 'output_name' (ignored); did you mean 'output_names'?",
        "unknown metadata key 'we\"ird\n' (ignored)",
    ], got["warnings"]
    assert got["metadata"] == meta


def test_known_keys_give_no_warnings():
    con = connect()
    blob = models.recurrent("gru", 2, 3, head=2, bidirectional=True, metadata={
        "cell": "gru", "recurrent_prefix": "", "head_prefix": "fc.", "output_activation": "softmax",
        "readout": "final_states", "input_mean": "[0, 1]", "input_std": "[1, 2]", "output_mean": "[0, 0]",
        "output_std": "[1, 1]", "labels": '["a", "b"]', "output_names": '["a", "b"]', "description": "d"})
    assert "warnings" not in info(con, blob)
    assert "warnings" not in info(con, models.seed_rnn(2, 3, 2, metadata={"hidden_activation": "tanh"}))
    assert "warnings" not in info(con, models.recurrent("gru", 2, 3, metadata={"vocab": '["a", "b"]',
                                                                               "unknown_token": "a"}))


def test_unknown_keys_change_no_result():
    con = connect()
    plain = models.recurrent("lstm", 2, 4, head=2, seed=9)
    extra = models.recurrent("lstm", 2, 4, head=2, seed=9, metadata={"input_means": "[5, 5]", "owner": "ops"})
    seq = "[[1, 2], [3, 4], [0.5, -1]]"
    for q in ("SELECT rnn_eval(?, ?)", "SELECT json_group_array(output) FROM rnn_steps(?, ?)"):
        assert one(con, q, (plain, seq)) == one(con, q, (extra, seq)), q


NAMES = ["temp", "hum\"id", "é"]


def named(names=NAMES, **kw):
    md = {"output_names": json.dumps(names)}
    return models.recurrent("gru", 3, 5, head=3, seed=11, metadata=md, **kw)


def as_object(values, names=NAMES):
    return {n: v for n, v in zip(names, values)}


def test_output_names_make_objects():
    con = connect()
    plain = models.recurrent("gru", 3, 5, head=3, seed=11)
    blob = named()
    seq = "[[1, 2, 3], [0.5, -1, 2], [2, 2, 2]]"
    cases = [
        ("rnn_eval", "SELECT rnn_eval(?1, ?2)"),
        ("rnn_steps", "SELECT json_group_array(json(output)) FROM rnn_steps(?1, ?2)"),
        ("rnn_forecast", "SELECT json_group_array(json(output)) FROM rnn_forecast(?1, ?2, 4)"),
        ("rnn_predict window", "SELECT json_group_array(json(p)) FROM (SELECT rnn_predict(?1, a, b, c) "
                               "OVER (ORDER BY t) AS p FROM s)"),
        ("rnn_predict sliding", "SELECT json_group_array(json(p)) FROM (SELECT rnn_predict(?1, a, b, c) "
                                "OVER (ORDER BY t ROWS 1 PRECEDING) AS p FROM s)"),
        ("rnn_predict aggregate", "SELECT rnn_predict(?1, a, b, c) FROM (SELECT * FROM s ORDER BY t)"),
    ]
    con.execute("CREATE TABLE s(t INTEGER PRIMARY KEY, a, b, c)")
    con.executemany("INSERT INTO s VALUES (?, ?, ?, ?)", [(t,) + tuple(x) for t, x in enumerate(json.loads(seq))])
    for label, q in cases:
        params = (plain, seq) if "?2" in q else (plain,)
        want = json.loads(one(con, q, params))
        got = json.loads(one(con, q, (blob,) + params[1:]))
        if label in ("rnn_eval", "rnn_predict aggregate"):
            assert got == as_object(want), (label, got, want)
            assert list(got) == NAMES, label            # output order, not sorted
        else:
            assert got == [as_object(w) for w in want], (label, got, want)
    # rnn_steps' input is not an output: still an array
    assert one(con, "SELECT input FROM rnn_steps(?, ?) WHERE step = 0", (blob, seq)) == "[1.0,2.0,3.0]"
    assert one(con, "SELECT json_type(rnn_eval(?, ?))", (blob, seq)) == "object"
    assert one(con, "SELECT rnn_eval(?, ?) ->> '$.temp'", (blob, seq)) == json.loads(
        one(con, "SELECT rnn_eval(?, ?)", (plain, seq)))[0]


def test_output_names_in_info_and_one_output():
    con = connect()
    assert info(con, named())["output_names"] == NAMES
    assert "output_names" not in info(con, models.recurrent("gru", 3, 5, head=3))
    one_out = models.recurrent("gru", 1, 4, head=1, metadata={"output_names": '["temp"]'})
    assert one(con, "SELECT rnn_eval(?, '[1, 2]')", (one_out,)) == \
        one(con, "SELECT rnn_eval(?, '[1, 2]')", (models.recurrent("gru", 1, 4, head=1),))
    assert info(con, one_out)["output_names"] == ["temp"]


def test_bad_output_names_refused():
    con = connect()
    bad = [
        ('["a", "b"]', "__metadata__ output_names has 2 names but the model has 3 outputs"),
        ('["a", "b", "a"]', "__metadata__ output_names has the name \"a\" twice"),
        ('["a", "", "c"]', "__metadata__ output_names must be a JSON array of distinct non-empty strings"),
        ('["a", 2, "c"]', "__metadata__ output_names must be a JSON array of distinct non-empty strings"),
        ('{"a": 1}', "__metadata__ output_names must be a JSON array of distinct non-empty strings"),
        ('[]', "__metadata__ output_names must be a JSON array of distinct non-empty strings"),
        ('a, b, c', "__metadata__ output_names must be a JSON array of distinct non-empty strings"),
    ]
    for value, msg in bad:
        blob = models.recurrent("gru", 3, 5, head=3, metadata={"output_names": value})
        assert error_of(con, "SELECT rnn_eval(?, '[[1, 2, 3]]')", (blob,)) == "rnn_eval(): invalid model: " + msg, value


def test_readme_model_is_current():
    """sql/weather_model.safetensors is what tests/gen_weather_model.py writes."""
    import gen_weather_model
    with open(os.path.join(ROOT, "sql", "weather_model.safetensors"), "rb") as f:
        assert f.read() == gen_weather_model.blob()
