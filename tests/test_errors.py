"""Every error path of the core functions, asserted on its exact message: hostile and corrupt
model BLOBs (ext/model.c rules 1-7), registry problems (ext/registry.c rule 1) and bad feature
values (ext/window.c rule 5). The connection must stay usable after each error."""
import json
import struct

import models
import st
from rnnlib import connect, error_of, one

F = "F32"


def raw(header, data=b"", hlen=None):
    """A BLOB with a literal header text (str) and data bytes; hlen overrides the length field."""
    h = header.encode("utf-8") if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def hdr(entries, data_len=None):
    """raw() from a dict, keeping key order; data is zero bytes sized from the offsets."""
    end = max([v["data_offsets"][1] for k, v in entries.items() if k != "__metadata__"] + [0])
    return raw(json.dumps(entries), b"\0" * (end if data_len is None else data_len))


def T(shape, begin, dtype=F):
    n = 1
    for d in shape:
        n *= d
    size = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}.get(dtype, 4)
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + n * size]}


def gru(**kw):
    return models.recurrent("gru", 1, 2, **kw)


def with_values(name, values, dtype="F32"):
    """A valid 1-layer RNN(1->2) whose tensor `name` holds `values` (dtype)."""
    t = {"weight_ih_l0": (F, [2, 1], [0.1, 0.2]), "weight_hh_l0": (F, [2, 2], [0.1] * 4)}
    t[name] = (dtype, t[name][1], values)
    return st.dumps(t)


def rnn_plus(extra, metadata=None):
    t = {"weight_ih_l0": (F, [2, 1], [0.1, 0.2]), "weight_hh_l0": (F, [2, 2], [0.1] * 4)}
    t.update(extra)
    return st.dumps(t, metadata)


def md(metadata, **kw):
    return models.recurrent("gru", 2, 2, head=3, metadata=metadata, **kw)


IH = "weight_ih_l0"
HH = "weight_hh_l0"
BAD_MODELS = [
    ("empty", b"", "BLOB is 0 bytes, too short for a safetensors header"),
    ("7 bytes", b"\0" * 7, "BLOB is 7 bytes, too short for a safetensors header"),
    ("length beyond blob", raw("{}", hlen=100), "safetensors header length 100 exceeds the BLOB size 10"),
    ("huge length", raw("{}", hlen=2 ** 64 - 1),
     "safetensors header length 18446744073709551615 exceeds the BLOB size 10"),
    ("not json", raw("abcd"), "safetensors header is not valid JSON: unexpected character at byte 0"),
    ("truncated json", raw('{"a":'), "safetensors header is not valid JSON: unexpected end of text at byte 5"),
    ("not an object", raw("[]"), "safetensors header is not a JSON object"),
    ("trailing text", raw("{} x"), "safetensors header is not valid JSON: trailing characters after JSON value at byte 3"),
    ("duplicate tensor", raw('{"a":{},"a":{}}'), "safetensors header is not valid JSON: duplicate key 'a' at byte 11"),
    ("invalid utf-8", raw(b'{"\xff":1}'), "safetensors header is not valid JSON: invalid UTF-8 in string at byte 2"),
    ("lone surrogate", raw('{"\\ud800":1}'), "safetensors header is not valid JSON: lone high surrogate in \\u escape at byte 8"),
    ("control char", raw('{"a\nb":1}'), "safetensors header is not valid JSON: control character in string at byte 3"),
    ("deep nesting", raw('{"a":' + "[" * 40 + "]" * 40 + "}"), "safetensors header is not valid JSON: nesting too deep at byte 20"),
    ("leading zero", raw('{"a":01}'), "safetensors header is not valid JSON: leading zero in number at byte 5"),
    ("NaN literal", raw('{"a":NaN}'), "safetensors header is not valid JSON: unexpected character at byte 5"),
    ("no tensors", raw('{"__metadata__":{}}'), "safetensors header lists no tensors"),
    ("entry not object", raw('{"w":[1]}'), "tensor 'w': entry is not a JSON object"),
    ("missing offsets", raw('{"w":{"dtype":"F32","shape":[1]}}'),
     "tensor 'w': entry must have exactly dtype, shape and data_offsets"),
    ("extra key", raw('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}', b"\0" * 4),
     "tensor 'w': entry must have exactly dtype, shape and data_offsets"),
    ("dtype not string", raw('{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}', b"\0" * 4),
     "tensor 'w': dtype is not a string"),
    ("dtype I64", hdr({"w": T([1], 0, "I64")}), "tensor 'w': dtype I64 is not supported (F32, F16, BF16 or F64)"),
    ("dtype unknown", hdr({"w": T([1], 0, "Q7")}), "tensor 'w': dtype Q7 is not supported (F32, F16, BF16 or F64)"),
    ("shape not array", raw('{"w":{"dtype":"F32","shape":3,"data_offsets":[0,4]}}', b"\0" * 4),
     "tensor 'w': shape is not a JSON array"),
    ("3-d shape", hdr({"w": T([1, 1, 1], 0)}), "tensor 'w': has 3 dimensions, expected 1 or 2"),
    ("scalar shape", raw('{"w":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', b"\0" * 4),
     "tensor 'w': has 0 dimensions, expected 1 or 2"),
    ("zero dim", raw('{"w":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'), "tensor 'w': shape has a zero dimension"),
    ("negative dim", raw('{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', b"\0" * 4),
     "tensor 'w': shape must hold non-negative integers"),
    ("fractional dim", raw('{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', b"\0" * 4),
     "tensor 'w': shape must hold non-negative integers"),
    ("overflowing dims", raw('{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}', b"\0" * 4),
     "tensor 'w': dimension 4294967296 is larger than the limit 134217728"),
    ("too many elements", raw('{"w":{"dtype":"F32","shape":[65536,65536],"data_offsets":[0,4]}}', b"\0" * 4),
     "tensor 'w': more than 134217728 elements"),
    ("offsets not pair", raw('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}', b"\0" * 8),
     "tensor 'w': data_offsets must be a JSON array of 2 integers"),
    ("offsets negative", raw('{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}', b"\0" * 4),
     "tensor 'w': data_offsets must be a JSON array of 2 integers"),
    ("offsets beyond data", raw('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 2),
     "tensor 'w': data_offsets [0, 4] outside the data buffer of 2 bytes"),
    ("offsets reversed", raw('{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', b"\0" * 4),
     "tensor 'w': data_offsets [4, 0] outside the data buffer of 4 bytes"),
    ("size mismatch", raw('{"w":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}}', b"\0" * 4),
     "tensor 'w': data_offsets hold 4 bytes, but F16 with 3 elements needs 6"),
    ("overlap", raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                    '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
     "tensors 'a' and 'b' overlap in the data buffer"),
    ("gap", raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', b"\0" * 12),
     "data buffer has a gap of 4 bytes before tensor 'b'"),
    ("trailing data", raw('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 8),
     "data buffer has 4 bytes after the last tensor"),
    ("metadata not object", raw('{"__metadata__":[1]}'), "__metadata__ is not a JSON object"),
    ("metadata not string", raw('{"__metadata__":{"cell":4}}'), "__metadata__ value of 'cell' is not a string"),
    ("no recurrent layer", st.dumps({"fc.weight": (F, [1, 2], [0.0, 0.0])}),
     "no recurrent layer: expected a tensor '<prefix>weight_ih_l0' (nn.RNN, nn.LSTM, nn.GRU) or "
     "'<prefix>i2h.weight' (the tutorial RNN)"),
    ("missing weight_hh", st.dumps({IH: (F, [6, 1], [0.0] * 6)}), "missing tensor 'weight_hh_l0'"),
    ("two gates", st.dumps({IH: (F, [4, 1], [0.0] * 4), HH: (F, [4, 2], [0.0] * 8)}),
     "tensor 'weight_ih_l0' has shape [4, 1]: rows must be 1, 3 or 4 times the hidden size 2"),
    ("hh wrong rows", st.dumps({IH: (F, [6, 1], [0.0] * 6), HH: (F, [3, 2], [0.0] * 6)}),
     "tensor 'weight_hh_l0' has shape [3, 2], expected [6, 2]"),
    ("bias wrong shape", rnn_plus({"bias_ih_l0": (F, [3], [0.0] * 3)}),
     "tensor 'bias_ih_l0' has shape [3], expected [2]"),
    ("bias as matrix", rnn_plus({"bias_hh_l0": (F, [2, 1], [0.0] * 2)}),
     "tensor 'bias_hh_l0' has shape [2, 1], expected [2]"),
    ("layer 1 inconsistent", rnn_plus({"weight_ih_l1": (F, [2, 3], [0.0] * 6), "weight_hh_l1": (F, [2, 2], [0.0] * 4)}),
     "tensor 'weight_ih_l1' has shape [2, 3], expected [2, 2]"),
    ("layer gap", rnn_plus({"weight_ih_l2": (F, [2, 2], [0.0] * 4), "weight_hh_l2": (F, [2, 2], [0.0] * 4)}),
     "tensor 'weight_ih_l2' is not used by this rnn_tanh model (recurrent prefix ''): refusing to ignore part "
     "of a state_dict"),
    ("unused embedding", rnn_plus({"fc.weight": (F, [1, 2], [0.0] * 2), "emb.weight": (F, [5, 1], [0.0] * 5)}),
     "several candidate heads ('fc.weight' and 'emb.weight'): set __metadata__ head_prefix"),
    ("unused extra", rnn_plus({"fc.weight": (F, [1, 2], [0.0] * 2), "extra": (F, [1], [0.0])}),
     "tensor 'extra' is not used by this rnn_tanh model (recurrent prefix '', head prefix 'fc.'): refusing to "
     "ignore part of a state_dict"),
    ("head wrong shape", rnn_plus({"fc.weight": (F, [1, 3], [0.0] * 3)}),
     "tensor 'fc.weight' has shape [1, 3], expected [1, 2]"),
    ("head bias wrong", rnn_plus({"fc.weight": (F, [1, 2], [0.0] * 2), "fc.bias": (F, [2], [0.0] * 2)}),
     "tensor 'fc.bias' has shape [2], expected [1]"),
    ("two recurrent modules", st.dumps({"a.weight_ih_l0": (F, [2, 1], [0.0] * 2), "a.weight_hh_l0": (F, [2, 2], [0.0] * 4),
                                        "b.weight_ih_l0": (F, [2, 1], [0.0] * 2), "b.weight_hh_l0": (F, [2, 2], [0.0] * 4)}),
     "several recurrent modules ('a.' and 'b.weight_ih_l0'): set __metadata__ recurrent_prefix"),
    ("bad recurrent_prefix", rnn_plus({}, {"recurrent_prefix": "rnn"}),
     "__metadata__ recurrent_prefix 'rnn' must be empty or end with '.'"),
    ("absent recurrent_prefix", rnn_plus({}, {"recurrent_prefix": "x."}),
     "no tensor 'x.weight_ih_l0' or 'x.i2h.weight' for __metadata__ recurrent_prefix"),
    ("absent head_prefix", rnn_plus({}, {"head_prefix": "out."}), "no tensor 'out.weight' for __metadata__ head_prefix"),
    ("proj wrong", st.dumps({IH: (F, [8, 1], [0.0] * 8), HH: (F, [8, 1], [0.0] * 8), "weight_hr_l0": (F, [1, 3], [0.0] * 3)}),
     "tensor 'weight_ih_l0' has shape [8, 1]: rows must be 1, 3 or 4 times the hidden size 3 (4 with weight_hr, LSTM)"),
    ("proj not smaller", st.dumps({IH: (F, [8, 1], [0.0] * 8), HH: (F, [8, 2], [0.0] * 16), "weight_hr_l0": (F, [2, 2], [0.0] * 4)}),
     "tensor 'weight_hr_l0': proj_size 2 must be smaller than hidden size 2"),
    ("cell mismatch", gru(metadata={"cell": "lstm"}),
     "__metadata__ cell is 'lstm' but the tensors under '' have 3 gates (gru)"),
    ("cell unknown", gru(metadata={"cell": "transformer"}),
     "__metadata__ cell is 'transformer', expected one of rnn_tanh, rnn_relu, lstm, gru, seed"),
    ("cell seed on gru", gru(metadata={"cell": "seed"}),
     "__metadata__ cell is 'seed' but the tensors are those of nn.RNN, nn.LSTM or nn.GRU"),
    ("hidden_activation on gru", gru(metadata={"hidden_activation": "tanh"}),
     "__metadata__ hidden_activation applies only to the tutorial (seed) cell"),
    ("bad output_activation", gru(metadata={"output_activation": "swish"}),
     "__metadata__ output_activation is 'swish', expected one of none, sigmoid, tanh, softmax, log_softmax"),
    ("bad hidden_activation", models.seed_rnn(1, 2, 2, metadata={"hidden_activation": "softmax"}),
     "__metadata__ hidden_activation is 'softmax', expected one of none, tanh, relu, sigmoid"),
    ("input_std wrong length", md({"input_std": "[1]"}),
     "__metadata__ input_std must be a JSON array of 2 finite positive numbers, got '[1]'"),
    ("input_std zero", md({"input_std": "[1, 0]"}),
     "__metadata__ input_std must be a JSON array of 2 finite positive numbers, got '[1, 0]'"),
    ("output_std negative", md({"output_std": "[1, -1, 1]"}),
     "__metadata__ output_std must be a JSON array of 3 finite positive numbers, got '[1, -1, 1]'"),
    ("input_mean not json", md({"input_mean": "zero"}),
     "__metadata__ input_mean must be a JSON array of 2 finite numbers, got 'zero'"),
    ("output_mean strings", md({"output_mean": '["a","b","c"]'}),
     "__metadata__ output_mean must be a JSON array of 3 finite numbers, got '[\"a\",\"b\",\"c\"]'"),
    ("output_mean overflow", md({"output_mean": "[1e39, 0, 0]"}),
     "__metadata__ output_mean must be a JSON array of 3 finite numbers, got '[1e39, 0, 0]'"),
    ("NaN weight", with_values(IH, [float("nan"), 0.0]),
     "tensor 'weight_ih_l0' has a NaN, infinite or out-of-range value at index 0"),
    ("Inf weight", with_values(HH, [0.0, 0.0, 0.0, float("inf")]),
     "tensor 'weight_hh_l0' has a NaN, infinite or out-of-range value at index 3"),
    ("F16 Inf", with_values(IH, [0.0, float("inf")], "F16"),
     "tensor 'weight_ih_l0' has a NaN, infinite or out-of-range value at index 1"),
    ("BF16 NaN", with_values(IH, [float("nan"), 0.0], "BF16"),
     "tensor 'weight_ih_l0' has a NaN, infinite or out-of-range value at index 0"),
    ("F64 out of range", with_values(IH, [1e300, 0.0], "F64"),
     "tensor 'weight_ih_l0' has a NaN, infinite or out-of-range value at index 0"),
    ("seed i2h square", st.dumps({"i2h.weight": (F, [2, 2], [0.0] * 4), "i2o.weight": (F, [1, 2], [0.0] * 2)}),
     "tensor 'i2h.weight' has shape [2, 2], expected [hidden, input + hidden]"),
    ("seed without i2o", st.dumps({"i2h.weight": (F, [2, 3], [0.0] * 6)}), "missing tensor 'i2o.weight' [output, 3]"),
    ("seed i2o wrong", st.dumps({"i2h.weight": (F, [2, 3], [0.0] * 6), "i2o.weight": (F, [1, 2], [0.0] * 2)}),
     "tensor 'i2o.weight' has shape [1, 2], expected [1, 3]"),
    ("seed with head", st.dumps({"i2h.weight": (F, [2, 3], [0.0] * 6), "i2o.weight": (F, [1, 3], [0.0] * 3),
                                 "fc.weight": (F, [1, 2], [0.0] * 2)}),
     "tensor 'fc.weight' is not used by this seed model (recurrent prefix ''): refusing to ignore part of a state_dict"),
]


def test_bad_models():
    con = connect()
    models.registry(con)
    for label, blob, msg in BAD_MODELS:
        def case(blob=blob, msg=msg):
            assert error_of(con, "SELECT rnn_info(?)", (blob,)) == "rnn_info(): invalid model: " + msg
            con.execute("INSERT OR REPLACE INTO rnn_models VALUES ('bad', ?)", (blob,))
            assert error_of(con, "SELECT rnn_predict('bad', 1.0)") == "rnn_predict(): invalid model 'bad': " + msg
            assert one(con, "SELECT 1") == 1
        yield label, case


def test_bad_models_count():
    """Issue 5 asks for at least 50 hostile-BLOB cases."""
    assert len(BAD_MODELS) >= 50, len(BAD_MODELS)


def test_registry_errors():
    con = connect()
    assert error_of(con, "SELECT rnn_predict('m', 1.0)") == (
        "rnn_predict(): no table rnn_models: create it with CREATE TABLE rnn_models(name TEXT PRIMARY KEY, "
        "model BLOB NOT NULL) (sql/rnn_models.sql), then insert the model")
    assert error_of(con, "SELECT rnn_info('m')").startswith("rnn_info(): no table rnn_models: ")
    con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, blob BLOB)")
    assert error_of(con, "SELECT rnn_hidden('m', 1.0)") == \
        "rnn_hidden(): cannot read rnn_models(name, model): no such column: model"
    con.execute("DROP TABLE rnn_models")
    models.registry(con, m=gru(head=1))
    con.execute("INSERT INTO rnn_models VALUES ('t', 'text'), ('i', 42)")
    assert error_of(con, "SELECT rnn_predict('nope', 1.0)") == (
        "rnn_predict(): no model named 'nope' in rnn_models: INSERT INTO rnn_models(name, model) VALUES "
        "('nope', <safetensors BLOB>)")
    assert error_of(con, "SELECT rnn_predict('t', 1.0)") == \
        "rnn_predict(): rnn_models.model of 't' is TEXT, expected a safetensors BLOB"
    assert error_of(con, "SELECT rnn_predict('i', 1.0)") == \
        "rnn_predict(): rnn_models.model of 'i' is INTEGER, expected a safetensors BLOB"
    for arg, kind in (("NULL", "NULL"), ("3", "INTEGER"), ("2.5", "REAL")):
        assert error_of(con, "SELECT rnn_predict(%s, 1.0)" % arg) == (
            "rnn_predict(): model argument is %s: pass a safetensors BLOB or the name of a row in rnn_models" % kind)


def test_feature_errors():
    con = connect()
    models.registry(con, m=gru(head=1), two=models.recurrent("lstm", 2, 3, head=1),
                    bi=models.recurrent("gru", 1, 3, bidirectional=True))
    cases = [
        ("rnn_predict('m')", "rnn_predict(): expected a model and at least one feature"),
        ("rnn_predict('m', 1.0, 2.0)", "rnn_predict(): model expects 1 feature, got 2"),
        ("rnn_hidden('two', 1.0)", "rnn_hidden(): model expects 2 features, got 1"),
        ("rnn_predict('m', 'a')", "rnn_predict(): argument 2 (feature 1) is TEXT, expected a number"),
        ("rnn_predict('two', 1.0, x'00')", "rnn_predict(): argument 3 (feature 2) is BLOB, expected a number"),
        ("rnn_predict('m', 9e999)", "rnn_predict(): argument 2 (feature 1) is Inf, expected a finite float32 number"),
        ("rnn_predict('m', -9e999)", "rnn_predict(): argument 2 (feature 1) is -Inf, expected a finite float32 number"),
        ("rnn_predict('m', 1e300)",
         "rnn_predict(): argument 2 (feature 1) is 1.0e+300, expected a finite float32 number"),
        ("rnn_predict('bi', 1.0)", "rnn_predict(): model is bidirectional: a window or aggregate cannot see the "
                                   "rows after the current one (score whole sequences instead)"),
        ("rnn_hidden('bi', 1.0)", "rnn_hidden(): model is bidirectional: a window or aggregate cannot see the "
                                  "rows after the current one (score whole sequences instead)"),
    ]
    for expr, msg in cases:
        assert error_of(con, "SELECT %s" % expr) == msg, expr
        assert error_of(con, "SELECT %s OVER ()" % expr) == msg, expr
    # a NULL feature skips the row even when another feature is not a number
    assert one(con, "SELECT rnn_predict('two', NULL, 'x')") is None
    # the error comes from the row that has it, mid-partition
    con.execute("CREATE TABLE s(t INTEGER PRIMARY KEY, v)")
    con.executemany("INSERT INTO s VALUES (?, ?)", [(i, float(i)) for i in range(100)] + [(100, "oops")])
    assert error_of(con, "SELECT rnn_predict('m', v) OVER (ORDER BY t) FROM s") == \
        "rnn_predict(): argument 2 (feature 1) is TEXT, expected a number"
