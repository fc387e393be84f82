"""python/sqlite_rnn.py: no silent wrong answers from what PyTorch users naturally write (issue 10).

- readout: a bidirectional export must say what forward reads (readout='last_output' | 'final_states', stored as
  metadata `readout`); both readouts against torch on random bidirectional models (the final_states one skips
  while the loaded extension does not report a readout in rnn_info).
- sequence(): float32 little-endian BLOBs from lists, nested lists, numpy arrays of any dtype, torch tensors and
  pandas-like objects (duck-typed), refusing non-finite values and bad shapes by exact message.
- metadata: array-likes and numpy scalars stored as JSON lists/numbers, other objects refused with TypeError;
  unknown keys refused ("did you mean"), user keys under extra=; save() validates the BLOB with the extension
  and writes nothing when it is refused.
- save(check_input=x): the module in torch against the stored model in SQLite; refuses (nothing committed) with
  the likely cause.
- refusals with a way forward: chained nn.RNN/LSTM/GRU (merge_layers), nn.LSTMCell/GRUCell/RNNCell loops,
  TorchScript; each way forward is followed in the test and gives torch's answer.
- the README's Python examples (```pycon blocks) run as doctests.
Tests needing torch or numpy skip when it is absent; the others need neither.
"""
import doctest
import json
import math
import os
import re
import sqlite3
import struct
import sys

from rnnlib import ROOT, Skip, assert_close, connect, f32_blob, one

sys.path.insert(0, os.path.join(ROOT, "python"))
import sqlite_rnn  # noqa: E402

TOL = 2e-5


def need(name):
    try:
        return __import__(name)
    except ImportError:
        raise Skip("%s not installed" % name) from None


def raises(exc, fn, *args, **kwargs):
    """The message of the exc that fn(*args, **kwargs) raises; fails when it raises nothing."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        return str(e)
    raise AssertionError("no %s from %s" % (exc.__name__, getattr(fn, "__name__", fn)))


class FakeArray:
    """What numpy's ndarray offers that the exporter uses: tolist()."""
    def __init__(self, data):
        self.data = data

    def tolist(self):
        return self.data


class FakeSeries:
    """A pandas Series or DataFrame as the exporter sees it (duck-typed: pandas is not imported)."""
    def __init__(self, data):
        self.data = data

    def to_numpy(self):
        return FakeArray(self.data)


# ---------------------------------------------------------------------------------------------------------
# sequence()

def test_sequence_from_lists():
    assert sqlite_rnn.sequence([1, 2.5, -3]) == f32_blob([1.0, 2.5, -3.0])
    assert sqlite_rnn.sequence([[1, 2], [3, 4], [5, 6]]) == f32_blob([1, 2, 3, 4, 5, 6])
    assert sqlite_rnn.sequence(((1, 2), (3, 4))) == f32_blob([1, 2, 3, 4])
    assert sqlite_rnn.sequence([0.1]) == struct.pack("<f", 0.1)          # rounded to float32, little-endian
    assert sqlite_rnn.sequence([3.40282356e38]) == b"\xff\xff\x7f\x7f"   # rounds to FLT_MAX: finite
    assert sqlite_rnn.sequence(FakeSeries([1.5, 2.5])) == f32_blob([1.5, 2.5])          # a Series
    assert sqlite_rnn.sequence(FakeSeries([[1, 2], [3, 4]])) == f32_blob([1, 2, 3, 4])  # a DataFrame
    con = connect()
    con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
    con.execute("INSERT INTO rnn_models VALUES ('room_temp', ?)",
                (open(os.path.join(ROOT, "sql", "demo_model.safetensors"), "rb").read(),))
    temps = [18.4, 18.5, 18.5, 25.0]
    assert one(con, "SELECT rnn_eval('room_temp', ?) = rnn_eval('room_temp', ?)",
               (sqlite_rnn.sequence(temps), json.dumps(temps))) == 1
    assert round(one(con, "SELECT rnn_eval('room_temp', ?)", (sqlite_rnn.sequence(temps),)), 3) == 21.926


def test_sequence_refusals():
    cases = [
        ([], ValueError, "sequence(): no steps: a sequence needs at least one"),
        ([[]], ValueError, "sequence(): step 0 has no features"),
        ([[1, 2], [3]], ValueError, "sequence(): step 1 has 1 features, step 0 has 2"),
        ([[1, 2], 3], ValueError, "sequence(): step 1 is 3, not a list of 2 features like step 0"),
        ([1, [2]], ValueError, "sequence(): step 1 is a list but step 0 is a number"),
        ([[[1]]], ValueError, "sequence(): one sequence is 1-D (steps) or 2-D (steps x features); this one has "
                              "more dimensions (for a batch, call sequence() on each item)"),
        ([1, float("nan")], ValueError, "sequence(): value [1] is nan: sqlite-rnn takes finite values"),
        ([[1, 2], [3, -math.inf]], ValueError, "sequence(): value [1][1] is -inf: sqlite-rnn takes finite values"),
        ([1e39], ValueError, "sequence(): value [0] is 1e+39, outside the float32 range"),
        ([1, "2"], TypeError, "sequence(): value [1] is '2', not a number"),
        ([True], TypeError, "sequence(): value [0] is True, not a number"),
        ([None], TypeError, "sequence(): value [0] is None, not a number"),
        (b"\x00\x00\x80\x3f", TypeError, "sequence(): takes numbers (a list, nested lists, a numpy array, a torch "
                                         "tensor or a pandas Series/DataFrame), got bytes"),
        ("[1, 2]", TypeError, "sequence(): takes numbers (a list, nested lists, a numpy array, a torch tensor or a "
                              "pandas Series/DataFrame), got str"),
        (3.0, TypeError, "sequence(): takes a sequence of steps (a list, nested lists, a numpy array, a torch "
                         "tensor or a pandas Series/DataFrame), got float"),
    ]
    for value, exc, want in cases:
        assert raises(exc, sqlite_rnn.sequence, value) == want, (value, want)


def test_sequence_numpy():
    np = need("numpy")
    a = np.array([[18.4, 1.0], [18.5, 2.0], [25.0, 3.0]])          # float64, numpy's default
    assert sqlite_rnn.sequence(a) == sqlite_rnn.sequence(a.tolist()) == a.astype("<f4").tobytes()
    assert len(a.tobytes()) == 2 * len(sqlite_rnn.sequence(a))      # what .tobytes() would have sent
    for dtype in ("float16", "float32", ">f8", "int8", "int64", "uint16"):
        b = np.arange(6, dtype=dtype).reshape(3, 2)
        assert sqlite_rnn.sequence(b) == f32_blob([0, 1, 2, 3, 4, 5]), dtype
    assert sqlite_rnn.sequence(np.asfortranarray(a)) == sqlite_rnn.sequence(a.tolist())   # not C-contiguous
    assert sqlite_rnn.sequence(a[:, 0]) == f32_blob([18.4, 18.5, 25.0])
    assert sqlite_rnn.sequence(np.float64(3.4028235e38) * np.ones(1)) == b"\xff\xff\x7f\x7f"
    # refusals say the same as for lists
    assert raises(ValueError, sqlite_rnn.sequence, np.array([[1.0, np.nan]])) == (
        "sequence(): value [0][1] is nan: sqlite-rnn takes finite values")
    assert raises(ValueError, sqlite_rnn.sequence, np.array([1.0, 1e39])) == (
        "sequence(): value [1] is 1e+39, outside the float32 range")
    assert raises(ValueError, sqlite_rnn.sequence, np.zeros((2, 2, 2))).startswith(
        "sequence(): one sequence is 1-D (steps) or 2-D (steps x features)")
    assert raises(TypeError, sqlite_rnn.sequence, np.array([True, False])) == (
        "sequence(): value [0] is True, not a number")
    assert raises(ValueError, sqlite_rnn.sequence, np.zeros(0)) == "sequence(): no steps: a sequence needs at least one"
    assert raises(TypeError, sqlite_rnn.sequence, np.float64(1.0)).endswith("got float")


def test_sequence_torch():
    torch = need("torch")
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    want = sqlite_rnn.sequence(x.tolist())
    assert sqlite_rnn.sequence(x) == want
    assert sqlite_rnn.sequence(x.float()) == want
    assert sqlite_rnn.sequence(x.t().contiguous().t()) == want                 # column-major
    assert sqlite_rnn.sequence(x.bfloat16()) == sqlite_rnn.sequence(x.bfloat16().float().tolist())
    assert sqlite_rnn.sequence(torch.arange(4)) == f32_blob([0, 1, 2, 3])
    assert raises(ValueError, sqlite_rnn.sequence, torch.ones(2, 3, 1)).startswith("sequence(): one sequence is 1-D")


# ---------------------------------------------------------------------------------------------------------
# save() of a BLOB: validated with the extension before anything is written (no torch needed)

def _demo_blob():
    return open(os.path.join(ROOT, "sql", "demo_model.safetensors"), "rb").read()


def test_save_blob_validated_before_writing():
    blob = _demo_blob()
    bad = sqlite_rnn.dumps(*sqlite_rnn.loads(blob)[:1], {"input_mean": "[1, 2]"})   # one input, two means
    want = ("save(): the extension refuses this model, nothing was written: rnn_info(): invalid model: "
            "__metadata__ input_mean must be a JSON array of 1 finite numbers, got '[1, 2]'")
    con = sqlite3.connect(":memory:")
    sqlite_rnn.load(con)
    assert raises(ValueError, sqlite_rnn.save, con, "m", bad) == want
    assert one(con, "SELECT count(*) FROM sqlite_schema WHERE name = 'rnn_models'") == 0, "table created"
    sqlite_rnn.save(con, "m", blob)
    assert raises(ValueError, sqlite_rnn.save, con, "m", bad) == want
    assert one(con, "SELECT model = ? FROM rnn_models", (blob,)) == 1 and not con.in_transaction
    # a connection without the extension: checked through a private one
    plain = sqlite3.connect(":memory:")
    assert raises(ValueError, sqlite_rnn.save, plain, "m", bad) == want
    assert raises(ValueError, sqlite_rnn.save, plain, "m", blob[:-1]).startswith(
        "save(): the extension refuses this model, nothing was written: rnn_info(): invalid model: tensor ")
    sqlite_rnn.save(plain, "m", blob)
    assert plain.execute("SELECT name, length(model) FROM rnn_models").fetchall() == [("m", len(blob))]
    # ... and when the extension cannot be loaded at all, it says so before writing
    real_load = sqlite_rnn.load

    def no_extension(conn, path=None):
        raise FileNotFoundError("sqlite-rnn: no rnn.so found")
    sqlite_rnn.load = no_extension
    try:
        msg = raises(RuntimeError, sqlite_rnn.save, sqlite3.connect(":memory:"), "m", blob)
    finally:
        sqlite_rnn.load = real_load
    assert msg == ("save(): the model is checked with the extension before it is written, and this connection "
                   "has not loaded it (sqlite_rnn.load(conn)) nor could it be loaded here: sqlite-rnn: no rnn.so "
                   "found"), msg


def test_save_blob_refuses_module_arguments():
    con = sqlite3.connect(":memory:")
    want = ("save(): a BLOB is stored as it is; head, readout, extra, check_input and metadata go with a torch "
            "module")
    for kwargs in ({"readout": "last_output"}, {"extra": {"k": 1}}, {"check_input": [[1.0]]}, {"cell": "gru"}):
        assert raises(ValueError, sqlite_rnn.save, con, "m", _demo_blob(), **kwargs) == want, kwargs


# ---------------------------------------------------------------------------------------------------------
# readout of bidirectional models

def _bidi_net(kind, layers, n_in, hidden, classes, final_states, seed):
    import torch
    import torch.nn as nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = kind(n_in, hidden, num_layers=layers, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(2 * hidden, classes)

        def forward(self, x):
            output, h_n = self.rnn(x)
            if isinstance(h_n, tuple):
                h_n = h_n[0]
            if final_states:
                return self.fc(torch.cat((h_n[-2], h_n[-1]), 1))
            return self.fc(output[:, -1])

    torch.manual_seed(seed)
    return Classifier().eval()


def _bidi_models():
    import torch.nn as nn
    return [(kind, layers, n_in, hidden) for kind in (nn.GRU, nn.LSTM, nn.RNN)
            for layers, n_in, hidden in ((1, 2, 6), (2, 3, 5))]


def _labels_agree(net, blob, n_in, count, seed):
    """SQL's rnn_eval against torch on `count` random sequences of random length: every label equal and every
    output within the tolerance."""
    import torch
    g = torch.Generator().manual_seed(seed)
    con = connect()
    for i in range(count):
        x = torch.randn(1, int(torch.randint(1, 12, (1,), generator=g)), n_in, generator=g)
        with torch.no_grad():
            want = net(x)[0].tolist()
        got = json.loads(one(con, "SELECT rnn_eval(?, ?)", (blob, sqlite_rnn.sequence(x[0]))))
        assert_close(got, want, TOL, 1.0, "sequence %d" % i)
        assert max(range(len(got)), key=got.__getitem__) == max(range(len(want)), key=want.__getitem__), i


def test_bidirectional_export_needs_readout():
    need("torch")
    import torch.nn as nn
    net = _bidi_net(nn.GRU, 1, 2, 3, 2, False, 0)
    assert raises(ValueError, sqlite_rnn.to_blob, net) == (
        "Classifier is bidirectional: say what forward reads with readout='last_output' if forward computes "
        "fc(output[:, -1]) (the last step's output: the backward direction has then read only the last step), or "
        "readout='final_states' if it computes fc(torch.cat((h_n[-2], h_n[-1]), 1)) (both directions' final "
        "states); the exporter cannot see forward, and the two give different results")
    assert raises(ValueError, sqlite_rnn.save, sqlite3.connect(":memory:"), "m", net).startswith(
        "Classifier is bidirectional: say what forward reads")
    assert raises(ValueError, sqlite_rnn.to_blob, nn.LSTM(1, 2, bidirectional=True), nn.Linear(4, 1)).startswith(
        "LSTM is bidirectional: say what forward reads")
    assert raises(ValueError, sqlite_rnn.to_blob, net, readout="h_n") == (
        "readout must be 'last_output' or 'final_states', got 'h_n'")
    for readout in ("last_output", "final_states"):
        assert sqlite_rnn.loads(sqlite_rnn.to_blob(net, readout=readout))[1] == {"readout": readout, "cell": "gru"}
    # unidirectional: optional (h_n[-1] is the last output), stored when given, absent otherwise
    assert sqlite_rnn.loads(sqlite_rnn.to_blob(nn.GRU(1, 2)))[1] == {"cell": "gru"}
    assert sqlite_rnn.loads(sqlite_rnn.to_blob(nn.GRU(1, 2), readout="final_states"))[1] == {
        "readout": "final_states", "cell": "gru"}


def test_bidirectional_last_output_against_torch():
    need("torch")
    return _last_output_cases()


def _last_output_cases():
    for i, (kind, layers, n_in, hidden) in enumerate(_bidi_models()):
        net = _bidi_net(kind, layers, n_in, hidden, 4, False, 100 + i)
        def case(net=net, n_in=n_in, i=i):
            _labels_agree(net, sqlite_rnn.to_blob(net, readout="last_output"), n_in, 150, i)
            con = connect()
            sqlite_rnn.save(con, "m", net, readout="last_output", check_input=__import__("torch").randn(6, 9, n_in))
            assert one(con, "SELECT json_extract(rnn_info('m'), '$.metadata.readout')") == "last_output"
        yield "%s %d layers" % (kind.__name__, layers), case


def test_bidirectional_final_states_against_torch():
    need("torch")
    return _final_states_cases()


def _final_states_cases():
    import torch
    for i, (kind, layers, n_in, hidden) in enumerate(_bidi_models()):
        net = _bidi_net(kind, layers, n_in, hidden, 4, True, 200 + i)
        def case(net=net, n_in=n_in, i=i):
            blob = sqlite_rnn.to_blob(net, readout="final_states")
            assert json.loads(one(connect(), "SELECT rnn_info(?)", (blob,)))["readout"] == "final_states"
            _labels_agree(net, blob, n_in, 150, i)
            sqlite_rnn.save(connect(), "m", net, readout="final_states", check_input=torch.randn(6, 9, n_in))
        yield "%s %d layers" % (kind.__name__, layers), case


def test_wrong_readout_caught_by_check_input():
    """The issue's case: fc(torch.cat((h_n[-2], h_n[-1]), 1)) exported as the last output disagrees with torch;
    check_input refuses it and names the readout that matches."""
    torch = need("torch")
    import torch.nn as nn
    net = _bidi_net(nn.GRU, 1, 2, 16, 4, True, 7)
    x = torch.randn(1000, 10, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = net(x).argmax(1).tolist()
    con = connect()
    blob = sqlite_rnn.to_blob(net, readout="last_output")
    got = [json.loads(one(con, "SELECT rnn_eval(?, ?)", (blob, sqlite_rnn.sequence(s)))) for s in x]
    differ = sum(max(range(4), key=g.__getitem__) != w for g, w in zip(got, want))
    assert differ == 440, differ                   # silently wrong without the check
    msg = raises(ValueError, sqlite_rnn.save, con, "m", net, readout="last_output", check_input=x[:8])
    assert re.fullmatch(r"save\(\): the stored model disagrees with module\(check_input\) at sequence \d+, output "
                        r"\d+: SQLite \S+, torch \S+ \(tolerance 2e-05 \* max\(1, \|torch\|, output_std\)\); "
                        r"nothing was saved\. Cause: forward computes fc\(torch\.cat\(\(h_n\[-2\], h_n\[-1\]\), "
                        r"1\)\): pass readout='final_states'", msg), msg
    assert one(con, "SELECT count(*) FROM sqlite_schema WHERE name = 'rnn_models'") == 0 and not con.in_transaction


# ---------------------------------------------------------------------------------------------------------
# metadata values and keys

def test_metadata_array_likes():
    torch = need("torch")
    import torch.nn as nn
    try:
        import numpy as np
    except ImportError:
        np = None                         # the numpy forms are skipped; torch, pandas-like and lists still run
    rnn, head = nn.GRU(2, 3), nn.Linear(3, 2)
    forms = {
        "list": dict(input_mean=[3.5, 4.25], input_std=[2.0, 0.5], output_mean=[1.0, -1.0], output_std=[2.0, 3.0]),
        "torch": dict(input_mean=torch.tensor([3.5, 4.25], requires_grad=True), input_std=torch.tensor([2.0, 0.5]),
                      output_mean=torch.tensor([1.0, -1.0], dtype=torch.float64), output_std=torch.tensor([2, 3])),
        "pandas": dict(input_mean=FakeSeries([3.5, 4.25]), input_std=FakeSeries(FakeArray([2.0, 0.5])),
                       output_mean=FakeSeries([1.0, -1.0]), output_std=FakeSeries([2.0, 3.0])),
    }
    if np is not None:
        forms["numpy"] = dict(input_mean=np.array([3.5, 4.25]), input_std=np.array([2.0, 0.5], dtype=np.float32),
                              output_mean=np.array([1, -1]), output_std=np.array([[2.0, 3.0]])[0])
        forms["mixed"] = dict(input_mean=[np.float32(3.5), np.float64(4.25)], input_std=(torch.tensor(2.0), 0.5),
                              output_mean=[np.int64(1), -1], output_std=[2.0, np.float16(3.0)])
    con = connect()
    x = sqlite_rnn.sequence([[3.0, 4.0], [5.0, 4.5], [1.0, 4.0]])
    want = None
    for label, md in forms.items():
        blob = sqlite_rnn.to_blob(rnn, head, **md)
        stored = sqlite_rnn.loads(blob)[1]
        assert [json.loads(stored[k]) for k in sqlite_rnn.VECTOR_KEYS] == [
            [3.5, 4.25], [2.0, 0.5], [1.0, -1.0], [2.0, 3.0]], (label, stored)
        got = one(con, "SELECT rnn_eval(?, ?)", (blob, x))
        want = want or got
        assert got == want, (label, got, want)
    # scalars: one-element vectors for the standardisation keys, numbers elsewhere
    md = sqlite_rnn.loads(sqlite_rnn.to_blob(nn.GRU(1, 2), nn.Linear(2, 1), input_mean=torch.tensor(0.5),
                                             input_std=torch.tensor([2.0])[0], description=None,
                                             extra={"epochs": torch.tensor(7), "scores": torch.tensor([[1, 2]])}))[1]
    assert md == {"input_mean": "[0.5]", "input_std": "[2.0]", "epochs": "7", "scores": "[[1, 2]]",
                  "cell": "gru"}, md
    if np is None:
        raise Skip("numpy not installed: numpy arrays and scalars as metadata not checked")
    md = sqlite_rnn.loads(sqlite_rnn.to_blob(nn.GRU(1, 2), nn.Linear(2, 1), input_mean=np.float32(0.5),
                                             input_std=np.float64(2), description=np.str_("d"),
                                             extra={"epochs": np.int64(7), "scores": np.array([[1, 2]])}))[1]
    assert md == {"input_mean": "[0.5]", "input_std": "[2.0]", "description": "d", "epochs": "7",
                  "scores": "[[1, 2]]", "cell": "gru"}, md
    assert sqlite_rnn.loads(sqlite_rnn.to_blob(nn.GRU(1, 2), labels=np.array(["up", "down"])))[1]["labels"] == (
        '["up", "down"]')


def test_metadata_refusals():
    need("torch")
    import torch.nn as nn
    gru = nn.GRU(1, 2)
    assert raises(TypeError, sqlite_rnn.to_blob, gru, input_mean=object()) == (
        "metadata input_mean: object is not a str, number, list or dict (array-likes are converted with .tolist())")
    assert raises(TypeError, sqlite_rnn.to_blob, gru, labels=["a", {1, 2}]) == (
        "metadata labels: set is not a str, number, list or dict (array-likes are converted with .tolist())")
    assert raises(TypeError, sqlite_rnn.to_blob, gru, description=b"bytes") == (
        "metadata description: bytes are not stored; give a str")
    assert raises(ValueError, sqlite_rnn.to_blob, gru, input_std=[float("inf")]) == (
        "metadata input_std: NaN or infinite values cannot be stored, got [inf]")
    assert raises(ValueError, sqlite_rnn.to_blob, gru, input_means=[1.0]) == (
        "unknown metadata key 'input_means': did you mean 'input_mean'? known keys are cell, recurrent_prefix, "
        "head_prefix, output_activation, hidden_activation, input_mean, input_std, output_mean, output_std, vocab, "
        "unknown_token, labels, output_names, description, readout; a key of your own goes under "
        "extra={'input_means': ...}")
    assert raises(ValueError, sqlite_rnn.to_blob, gru, output_activaton="sigmoid").startswith(
        "unknown metadata key 'output_activaton': did you mean 'output_activation'? known keys are ")
    assert raises(ValueError, sqlite_rnn.to_blob, gru, version=2).startswith(
        "unknown metadata key 'version': known keys are cell, ")
    assert raises(ValueError, sqlite_rnn.save, sqlite3.connect(":memory:"), "m", gru, lables=["x"]).startswith(
        "unknown metadata key 'lables': did you mean 'labels'?")
    assert raises(ValueError, sqlite_rnn.to_blob, gru, extra={"cell": "gru"}) == (
        "extra: 'cell' is a key sqlite-rnn reads: pass it as cell=..., not under extra")
    assert raises(ValueError, sqlite_rnn.to_blob, gru, extra={"readout": "final_states"}) == (
        "extra: 'readout' is a key sqlite-rnn reads: pass it as readout=..., not under extra")
    assert raises(TypeError, sqlite_rnn.to_blob, gru, extra=["version"]) == (
        "extra must be a dict of your own metadata keys, got list")
    assert raises(TypeError, sqlite_rnn.to_blob, gru, extra={1: "x"}) == "extra: metadata keys are str, got 1"
    assert sqlite_rnn.loads(sqlite_rnn.to_blob(gru, extra={"version": 2, "trained_on": "2024"}))[1] == {
        "version": "2", "trained_on": "2024", "cell": "gru"}


def test_save_validates_module_before_writing():
    need("torch")
    import torch.nn as nn
    con = connect()
    sqlite_rnn.save(con, "m", nn.GRU(2, 3), nn.Linear(3, 1))
    before = one(con, "SELECT model FROM rnn_models")
    assert raises(ValueError, sqlite_rnn.save, con, "m", nn.GRU(2, 3), nn.Linear(3, 1), input_mean=[1, 2, 3]) == (
        "save(): the extension refuses this model, nothing was written: rnn_info(): invalid model: __metadata__ "
        "input_mean must be a JSON array of 2 finite numbers, got '[1, 2, 3]'")
    assert one(con, "SELECT model FROM rnn_models") == before and not con.in_transaction


# ---------------------------------------------------------------------------------------------------------
# save(check_input=)

def _nets():
    torch = need("torch")
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self, rnn, out, act=None, standardise=None):
            super().__init__()
            self.rnn, self.act, self.standardise = rnn, act, standardise
            self.fc = nn.Linear(rnn.hidden_size, out)

        def forward(self, x):
            if self.standardise:
                x = (x - self.standardise[0]) / self.standardise[1]
            out, _ = self.rnn(x)
            y = self.fc(out[:, -1] if self.rnn.batch_first else out[-1])
            return self.act(y) if self.act else y

    return torch, nn, Net


def test_check_input_accepts_what_matches():
    torch, nn, Net = _nets()
    torch.manual_seed(4)
    con = connect()
    g = torch.Generator().manual_seed(9)
    cases = [
        ("batch_first", Net(nn.GRU(2, 6, batch_first=True), 3), {}, torch.randn(5, 8, 2, generator=g)),
        ("seq first", Net(nn.LSTM(2, 5, num_layers=2), 1), {}, torch.randn(8, 5, 2, generator=g)),
        ("one sequence", Net(nn.RNN(2, 4), 2), {}, torch.randn(7, 2, generator=g)),
        ("sigmoid declared", Net(nn.GRU(1, 4, batch_first=True), 2, torch.sigmoid),
         {"output_activation": "sigmoid"}, torch.randn(3, 6, 1, generator=g)),
        ("standardised", Net(nn.GRU(2, 4, batch_first=True), 1),
         {"input_mean": [20.0, -3.0], "input_std": [4.0, 0.5], "output_mean": [21.0], "output_std": [5.0]},
         torch.randn(4, 6, 2, generator=g) * 4 + 20),
        ("numpy-free list input", Net(nn.GRU(1, 3, batch_first=True), 1), {}, [[[1.0], [2.0]], [[0.5], [-1.0]]]),
        ("bare module and head", nn.LSTM(2, 4, bidirectional=True), {"readout": "last_output",
                                                                     "head": nn.Linear(8, 2)},
         torch.randn(6, 3, 2, generator=g)),
        ("bare module no head", nn.GRU(2, 3, num_layers=2), {}, torch.randn(6, 3, 2, generator=g)),
    ]
    for label, module, md, x in cases:
        md = dict(md)
        head = md.pop("head", None)
        sqlite_rnn.save(con, label, module, head, check_input=x, **md)
        assert one(con, "SELECT count(*) FROM rnn_models WHERE name = ?", (label,)) == 1, label
    assert not con.in_transaction
    # the tutorial RNN, stepped as in the tutorial: x is [T, B, I]
    tut = nn.Module()
    tut.i2h, tut.i2o, tut.softmax = nn.Linear(5, 3), nn.Linear(5, 4), nn.LogSoftmax(dim=1)

    class Tutorial(nn.Module):
        def __init__(self):
            super().__init__()
            self.i2h, self.i2o, self.softmax = tut.i2h, tut.i2o, tut.softmax

        def forward(self, input, hidden):
            combined = torch.cat((input, hidden), 1)
            return self.softmax(self.i2o(combined)), self.i2h(combined)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 2, (6, 3), generator=g), 2).float()
    sqlite_rnn.save(con, "tutorial", Tutorial(), check_input=onehot)


def test_check_input_refuses_with_the_cause():
    torch, nn, Net = _nets()
    torch.manual_seed(5)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 6, 2, generator=g)
    head = (r"save\(\): the stored model disagrees with module\(check_input\) at sequence 0, output 0: SQLite "
            r"\S+, torch \S+ \(tolerance 2e-05 \* max\(1, \|torch\|, output_std\)\); nothing was saved\. ")
    generic = re.escape(sqlite_rnn._CAUSES)
    cases = [
        ("sigmoid in forward", Net(nn.GRU(2, 4, batch_first=True), 2, torch.sigmoid), {},
         "Cause: forward applies sigmoid to the output: pass output_activation='sigmoid' so SQL applies it too"),
        ("log_softmax in forward", Net(nn.GRU(2, 4, batch_first=True), 3, lambda v: torch.log_softmax(v, 1)), {},
         "Cause: forward applies log_softmax to the output: pass output_activation='log_softmax' so SQL applies "
         "it too"),
        ("standardised twice", Net(nn.GRU(2, 4, batch_first=True), 1, None, (1.0, 2.0)),
         {"input_mean": [1.0, 1.0], "input_std": [2.0, 2.0]}, None),
        ("wrong activation declared", Net(nn.GRU(2, 4, batch_first=True), 1), {"output_activation": "tanh"}, None),
    ]
    for label, module, md, cause in cases:
        con = connect()
        con.execute("CREATE TABLE rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
        con.execute("INSERT INTO rnn_models VALUES ('m', x'00')")
        con.execute("BEGIN")
        con.execute("CREATE TABLE mine(v)")                          # the caller's own uncommitted work
        msg = raises(ValueError, sqlite_rnn.save, con, "m", module, check_input=x, **md)
        assert re.fullmatch(head + (re.escape(cause) if cause else generic), msg), (label, msg)
        assert con.in_transaction, label
        assert con.execute("SELECT name, hex(model) FROM rnn_models").fetchall() == [("m", "00")], label
        assert one(con, "SELECT count(*) FROM mine") == 0, "the caller's transaction was rolled back"
        con.execute("ROLLBACK")
    # outside a transaction: nothing committed, no transaction left open
    con = connect()
    assert raises(ValueError, sqlite_rnn.save, con, "m", cases[0][1], check_input=x).startswith("save(): the stored")
    assert not con.in_transaction and one(con, "SELECT count(*) FROM sqlite_schema WHERE name = 'rnn_models'") == 0
    # more outputs than the model has: forward does more than sqlite-rnn runs
    twice = Net(nn.GRU(2, 4, batch_first=True), 2, lambda v: torch.cat((v, v), 1))
    assert raises(ValueError, sqlite_rnn.save, con, "m", twice, check_input=x) == (
        "save(): module(check_input) gives 4 outputs per sequence, the stored model 2: the module's forward does "
        "more than sqlite-rnn runs (one recurrent layer, at most one Linear head); nothing was saved")
    assert raises(ValueError, sqlite_rnn.save, con, "m", twice, check_input=torch.zeros(2, 2, 2, 2)) == (
        "save(): check_input must be one sequence [T, F] or a batch of them, 3-D as the module takes it; got shape "
        "[2, 2, 2, 2]")


# ---------------------------------------------------------------------------------------------------------
# refusals with a way forward

def test_chained_layers_refused_and_merged():
    torch = need("torch")
    import torch.nn as nn

    class Chain(nn.Module):
        def __init__(self, kind, **kw):
            super().__init__()
            self.a = kind(3, 8, batch_first=True, **kw)
            self.b = kind(8 * (2 if kw.get("bidirectional") else 1), 8, num_layers=2, batch_first=True, **kw)
            self.fc = nn.Linear(8 * (2 if kw.get("bidirectional") else 1), 1)

        def forward(self, x):
            return self.fc(self.b(self.a(x)[0])[0][:, -1])

    torch.manual_seed(8)
    net = Chain(nn.GRU)
    assert raises(ValueError, sqlite_rnn.to_blob, net) == (
        "sqlite-rnn runs one nn.RNN, nn.LSTM, nn.GRU or tutorial RNN (i2h/i2o) per model; Chain holds 'a', 'b'. "
        "If forward feeds each one's output straight into the next (in this order, nothing in between), they are "
        "one nn.GRU(3, 8, num_layers=3): merged = sqlite_rnn.merge_layers(net.a, net.b) builds it with their "
        "weights; export a module holding merged (and the head) instead")
    x = torch.randn(4, 7, 3)
    for label, chain, kw in (("gru", net, {}), ("lstm bidirectional", Chain(nn.LSTM, bidirectional=True), {}),
                             ("rnn relu", Chain(nn.RNN, nonlinearity="relu"), {})):
        merged = sqlite_rnn.merge_layers(chain.a, chain.b)
        assert type(merged) is type(chain.a) and merged.num_layers == 3, label
        with torch.no_grad():
            assert torch.allclose(merged(x)[0], chain.b(chain.a(x)[0])[0], atol=1e-6), label
        fixed = nn.Module()
        fixed.rnn, fixed.fc = merged, chain.fc
        fixed.forward = lambda v, fixed=fixed: fixed.fc(fixed.rnn(v)[0][:, -1])
        with torch.no_grad():
            assert torch.allclose(fixed(x), chain(x), atol=1e-6), label
        sqlite_rnn.save(connect(), "m", fixed, readout="last_output" if merged.bidirectional else None,
                        check_input=x)
    holder = nn.Module()
    holder.a, holder.b = nn.GRU(1, 3), nn.LSTM(3, 3)
    assert raises(ValueError, sqlite_rnn.to_blob, holder) == (
        "sqlite-rnn runs one nn.RNN, nn.LSTM, nn.GRU or tutorial RNN (i2h/i2o) per model; Module holds 'a', 'b', "
        "and they cannot be merged into one layer stack: they differ in mode ('GRU' and 'LSTM')")
    holder.b = nn.GRU(4, 3)
    assert raises(ValueError, sqlite_rnn.to_blob, holder).endswith(
        "they cannot be merged into one layer stack: one's input_size (4) is not the output width of the one "
        "before (3)")
    assert raises(ValueError, sqlite_rnn.merge_layers, nn.GRU(1, 3)) == (
        "merge_layers() takes two or more nn.RNN, nn.LSTM or nn.GRU modules")


def test_cell_loops_refused_with_the_copy():
    torch = need("torch")
    import torch.nn as nn

    class Looped(nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.cell, self.fc = cell, nn.Linear(cell.hidden_size, 1)

        def forward(self, x):                      # x [T, B, I]
            h = torch.zeros(x.shape[1], self.cell.hidden_size)
            c = torch.zeros_like(h)
            for t in range(x.shape[0]):
                if isinstance(self.cell, nn.LSTMCell):
                    h, c = self.cell(x[t], (h, c))
                else:
                    h = self.cell(x[t], h)
            return self.fc(h)

    torch.manual_seed(6)
    net = Looped(nn.LSTMCell(3, 8))
    assert raises(ValueError, sqlite_rnn.to_blob, net) == (
        "'cell' is an nn.LSTMCell, stepped by a loop in forward; sqlite-rnn runs whole layers. An nn.LSTM with "
        "num_layers=1 holding the same tensors computes the same steps (same gate order): layer = nn.LSTM(3, 8); "
        "layer.load_state_dict({'weight_ih_l0': net.cell.weight_ih, 'weight_hh_l0': net.cell.weight_hh, "
        "'bias_ih_l0': net.cell.bias_ih, 'bias_hh_l0': net.cell.bias_hh}); then export a module holding layer "
        "(and the head) in place of the cell, its forward reading the layer's output.")
    x = torch.randn(9, 4, 3)
    cells = (("lstm", net.cell), ("gru", nn.GRUCell(3, 5)),
             ("rnn relu no bias", nn.RNNCell(3, 4, bias=False, nonlinearity="relu")))
    for label, cell in cells:
        net = Looped(cell)
        msg = raises(ValueError, sqlite_rnn.to_blob, net)
        recipe = re.search(r"layer = (nn\.\w+\([^)]*\)); layer\.load_state_dict\((\{.*?\})\)", msg)
        assert recipe, (label, msg)
        layer = eval(recipe.group(1), {"nn": nn})                 # the advice, followed as written
        layer.load_state_dict(eval(recipe.group(2), {"net": net}))
        fixed = nn.Module()
        fixed.rnn, fixed.fc = layer, net.fc
        fixed.forward = lambda v, fixed=fixed: fixed.fc(fixed.rnn(v)[0][-1])
        with torch.no_grad():
            assert torch.allclose(fixed(x), net(x), atol=1e-6), label
        sqlite_rnn.save(connect(), "m", fixed, check_input=x)
    two = nn.Module()
    two.c1, two.c2 = nn.GRUCell(2, 4), nn.GRUCell(4, 4)
    assert raises(ValueError, sqlite_rnn.to_blob, two).endswith(
        "Module holds 2 cells ('c1', 'c2'): if each feeds the next, use one nn.GRU with num_layers=2 and the k-th "
        "cell's tensors as weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}.")


def test_torchscript_refused_with_the_way_back():
    torch = need("torch")
    if os.environ.get("RNN_SANITIZE"):
        raise Skip("torch.jit.trace fails an internal check of a preloaded ASan runtime (in torch, before any "
                   "call into the extension); `make test` runs this test")
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = nn.GRU(2, 4, batch_first=True), nn.Linear(4, 1)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    torch.manual_seed(3)
    net = Net().eval()
    x = torch.randn(2, 5, 2)
    for label, compiled in (("script", torch.jit.script(net)), ("trace", torch.jit.trace(net, x))):
        msg = raises(ValueError, sqlite_rnn.to_blob, compiled)
        assert msg == (
            "%s is a TorchScript module (torch.jit.script, torch.jit.trace or torch.jit.load): its forward is "
            "compiled, so the exporter cannot tell its layers. Export the eager module instead: to_blob(net) on the "
            "nn.Module you scripted, or net = YourNet(...); net.load_state_dict(scripted.state_dict()) and then "
            "to_blob(net)" % type(compiled).__name__), (label, msg)
        eager = Net()
        eager.load_state_dict(compiled.state_dict())
        sqlite_rnn.save(connect(), "m", eager, check_input=x)
        assert sqlite_rnn.to_blob(eager) == sqlite_rnn.to_blob(net), label
    assert raises(ValueError, sqlite_rnn.to_blob, nn.GRU(2, 4), torch.jit.script(nn.Linear(4, 1))).startswith(
        "RecursiveScriptModule is a TorchScript module")


# ---------------------------------------------------------------------------------------------------------
# README

def test_readme_python_examples():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```pycon\n(.*?)```", text, re.S)
    assert len(blocks) >= 2, "README lost its Python examples"
    return _readme_cases(blocks)


def _readme_cases(blocks):
    for i, body in enumerate(blocks):
        def case(body=body, i=i):
            for module in re.findall(r"^>>> import (?:\w+, )*?(numpy|torch)\b", body, re.M):
                need(module)
            test = doctest.DocTestParser().get_doctest(body, {}, "README pycon block %d" % i, "README.md", 0)
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            cwd = os.getcwd()
            os.chdir(ROOT)
            try:
                out = []
                runner.run(test, out=out.append)
            finally:
                os.chdir(cwd)
            assert runner.failures == 0 and runner.tries > 0, "".join(out)
        yield "README pycon %d" % i, case
