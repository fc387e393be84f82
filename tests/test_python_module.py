"""python/sqlite_rnn.py, the PyTorch export helper and loader.

- load(): finds the built rnn.so from a checkout, loads it, switches extension loading off again; on a Python
  whose sqlite3 cannot load extensions (simulated: a connection class without enable_load_extension) it raises
  a RuntimeError that says what to use instead; a missing file is a clear error.
- dumps()/loads(): the stdlib safetensors writer and reader round-trip torch tensors of every dtype exactly,
  write the very bytes tests/st.py (an independent, numpy-based path) writes, round to F16/BF16 as torch does,
  escape non-ASCII metadata, and refuse malformed blobs.
- to_blob(): models exported from every cell (RNN tanh and relu, LSTM with and without proj_size, GRU, the
  tutorial's i2h/i2o RNN), with and without a head, F32/F16/BF16/F64, with standardisation, and users' nested
  modules (self.rnn + self.fc, at depth 2) give in SQL -- rnn_eval with the BLOB and rnn_predict by name over a
  running window, at every step -- torch's outputs within 2e-5 * max(1, |torch|, output_std); modules
  sqlite-rnn cannot run are refused with the offending name.
- save(): creates rnn_models if missing, upserts, keeps other columns, commits unless in a transaction.
The torch parts skip when torch is missing.
"""
import json
import os
import random
import sqlite3
import sys

import st
from rnnlib import ROOT, Skip, assert_close, connect, f32_blob, have_torch, one

sys.path.insert(0, os.path.join(ROOT, "python"))
import sqlite_rnn  # noqa: E402

TOL = 2e-5
T = 40   # steps per test sequence


def need_torch():
    if not have_torch():
        raise Skip("torch not installed")


# ---------------------------------------------------------------------------------------------------------
# load()

def test_load_finds_the_built_extension():
    con = sqlite3.connect(":memory:")
    path = sqlite_rnn.load(con)
    assert os.path.samefile(path, os.path.join(ROOT, "rnn.so")), path
    assert one(con, "SELECT rnn_version()") == "0.1.0"
    try:   # loading was switched off again
        con.load_extension(path)
    except sqlite3.OperationalError as e:
        assert "not authorized" in str(e), e
    else:
        raise AssertionError("extension loading left enabled")


def test_load_explicit_path_and_env():
    con = sqlite3.connect(":memory:")
    assert sqlite_rnn.load(con, os.path.join(ROOT, "rnn")) == os.path.join(ROOT, "rnn")
    assert one(con, "SELECT rnn_version()") == "0.1.0"
    old = os.environ.get("SQLITE_RNN_PATH")
    os.environ["SQLITE_RNN_PATH"] = ROOT          # a directory: rnn.so inside it
    try:
        assert sqlite_rnn.candidates()[0] == os.path.join(ROOT, "rnn.so")
    finally:
        if old is None:
            del os.environ["SQLITE_RNN_PATH"]
        else:
            os.environ["SQLITE_RNN_PATH"] = old


def test_load_without_extension_support():
    class NoExtensions:
        """What sqlite3.Connection looks like on a Python built without --enable-loadable-sqlite-extensions."""
        def load_extension(self, path):
            raise AssertionError("must not be reached")

    try:
        sqlite_rnn.load(NoExtensions())
    except RuntimeError as e:
        msg = str(e)
        assert "cannot load" in msg and "/usr/bin/python3" in msg, msg
        assert "--enable-loadable-sqlite-extensions" in msg and sys.executable in msg, msg
    else:
        raise AssertionError("no error")


def test_load_on_a_real_python_without_extension_loading():
    """Where one is installed (e.g. a pyenv build first on PATH), the message is the one a user would see."""
    import shutil
    import subprocess
    probe = "import sqlite3; print(hasattr(sqlite3.connect(':memory:'), 'enable_load_extension'))"
    script = ("import sqlite3, sys; sys.path.insert(0, %r); import sqlite_rnn\n"
              "try:\n    sqlite_rnn.load(sqlite3.connect(':memory:'))\n"
              "except RuntimeError as e:\n    print(e)\n" % os.path.join(ROOT, "python"))
    for name in ("python3", "python"):
        exe = shutil.which(name)
        if not exe or os.path.realpath(exe) == os.path.realpath(sys.executable):
            continue
        r = subprocess.run([exe, "-c", probe], capture_output=True, text=True, timeout=60)
        if r.stdout.strip() != "False":
            continue
        r = subprocess.run([exe, "-c", script], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "cannot load" in r.stdout and "/usr/bin/python3" in r.stdout, (exe, r)
        return
    raise Skip("no Python without extension loading on PATH")


def test_load_missing_file():
    con = sqlite3.connect(":memory:")
    try:
        sqlite_rnn.load(con, os.path.join(ROOT, "build", "no-such-rnn.so"))
    except sqlite3.OperationalError as e:
        assert "no-such-rnn" in str(e), e
    else:
        raise AssertionError("no error")


# ---------------------------------------------------------------------------------------------------------
# dumps() / loads() without torch

def test_writer_reader_stdlib():
    rng = random.Random(5)
    vals = [rng.uniform(-3, 3) for _ in range(24)]
    tensors = {"a": ("F32", [4, 6], vals), "b": ("F64", [24], vals), "c": ("F16", [2, 12], vals),
               "d": ("BF16", [24], vals), "e": ("F32", [3], b"\x00\x00\x80\x3f" * 3)}
    md = {"description": "température, 温度", "input_mean": "[21.5]"}
    blob = sqlite_rnn.dumps(tensors, md)
    assert blob == st.dumps(tensors, md), "differs from tests/st.py"
    assert b"\\u00e9" in blob and b"\\u6e29" in blob, "non-ASCII metadata must be \\u-escaped"
    assert (8 + int.from_bytes(blob[:8], "little")) % 8 == 0, "header padded to 8 bytes"
    got, got_md = sqlite_rnn.loads(blob)
    assert got_md == md
    assert got["a"] == ("F32", [4, 6], st.decode("F32", st.encode("F32", vals)))
    assert got["b"] == ("F64", [24], vals)
    assert got["c"] == ("F16", [2, 12], st.decode("F16", st.encode("F16", vals)))
    assert got["d"] == ("BF16", [24], st.decode("BF16", st.encode("BF16", vals)))
    assert got["e"] == ("F32", [3], [1.0, 1.0, 1.0])
    assert sqlite_rnn.loads(sqlite_rnn.dumps({"x": ("F32", [0], [])})) == ({"x": ("F32", [0], [])}, {})


def test_reader_refuses_malformed():
    good = sqlite_rnn.dumps({"a": ("F32", [2], [1.0, 2.0]), "b": ("F32", [1], [3.0])})
    hlen = int.from_bytes(good[:8], "little")
    header = json.loads(good[8:8 + hlen])

    def with_header(h, data=good[8 + hlen:]):
        text = json.dumps(h).encode()
        return len(text).to_bytes(8, "little") + text + data

    cases = {
        "short": (b"\x01\x00", "shorter than"),
        "length": (b"\xff" * 8 + b"{}", "exceeds"),
        "not json": (b"\x02" + b"\x00" * 7 + b"{x", "not JSON"),
        "dtype": (with_header(dict(header, a=dict(header["a"], dtype="I8"))), "unsupported dtype"),
        "offsets": (with_header(dict(header, a=dict(header["a"], data_offsets=[0, 4]))), "data_offsets"),
        "gap": (with_header(header, good[8 + hlen:] + b"\0" * 4), "after the last tensor"),
        "overlap": (with_header(dict(header, b=dict(header["b"], data_offsets=[4, 8]))), "gap or overlap"),
        "metadata": (with_header(dict(header, __metadata__={"k": 1})), "strings to strings"),
    }
    for label, (blob, want) in cases.items():
        try:
            sqlite_rnn.loads(blob)
        except ValueError as e:
            assert want in str(e), (label, str(e))
        else:
            raise AssertionError("%s: no error" % label)
    for bad in ({"a": ("F32", [3], [1.0])}, {"a": ("I32", [1], [1])}):
        try:
            sqlite_rnn.dumps(bad)
        except ValueError:
            pass
        else:
            raise AssertionError("dumps accepted %r" % bad)


# ---------------------------------------------------------------------------------------------------------
# dumps() / loads() against torch

def test_writer_reader_torch_roundtrip():
    need_torch()
    import torch
    g = torch.Generator().manual_seed(3)
    base = torch.randn(5, 7, generator=g, dtype=torch.float64) * 10
    base[0, :4] = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504.0, -0.0], dtype=torch.float64)  # bf16 ties
    tensors = {"f32": base.float(), "f64": base, "f16": base.half(), "bf16": base.bfloat16(),
               "col": base.float().t()}          # non-contiguous
    blob = sqlite_rnn.dumps(tensors, {"k": "v"})
    # the same bytes as tests/st.py's numpy-based path (which safetensors.torch.save would also write)
    dt = {"f32": "F32", "f64": "F64", "f16": "F16", "bf16": "BF16", "col": "F32"}
    assert blob == st.from_state_dict({k: v.double() for k, v in tensors.items()}, {"k": "v"}, dt)
    got, md = sqlite_rnn.loads(blob)
    assert md == {"k": "v"}
    for name, t in tensors.items():
        dtype, shape, values = got[name]
        assert dtype == dt[name] and shape == list(t.shape), (name, dtype, shape)
        assert values == t.double().reshape(-1).tolist(), name
    # tuple data is rounded as torch rounds
    vals = base.reshape(-1).tolist()
    for dtype, torch_dtype in (("F16", torch.float16), ("BF16", torch.bfloat16), ("F32", torch.float32)):
        _, _, values = sqlite_rnn.loads(sqlite_rnn.dumps({"x": (dtype, [35], vals)}))[0]["x"]
        assert values == base.to(torch_dtype).double().reshape(-1).tolist(), dtype


# ---------------------------------------------------------------------------------------------------------
# to_blob(): every cell, SQL against torch

def _torch_cases():
    """(label, module, head, metadata, input size, bidirectional) of the export cases."""
    import torch
    import torch.nn as nn

    class Tutorial(nn.Module):        # the PyTorch tutorial's character RNN, as written there
        def __init__(self, input_size, hidden_size, output_size):
            super().__init__()
            self.hidden_size = hidden_size
            self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
            self.i2o = nn.Linear(input_size + hidden_size, output_size)
            self.softmax = nn.LogSoftmax(dim=1)

        def forward(self, input, hidden):
            combined = torch.cat((input, hidden), 1)
            hidden = self.i2h(combined)
            output = self.i2o(combined)
            output = self.softmax(output)
            return output, hidden

    class Net(nn.Module):             # what users write
        def __init__(self, rnn, out):
            super().__init__()
            self.rnn = rnn
            self.drop = nn.Dropout(0.1)
            self.fc = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1)
                                if not getattr(rnn, "proj_size", 0) else rnn.proj_size, out)

    class Wrapper(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

    torch.manual_seed(11)
    std = dict(input_mean=[21.5, -3.0], input_std=[2.0, 0.5], output_mean=[20.0], output_std=[4.0])
    return [
        ("rnn_tanh head", nn.RNN(1, 8), nn.Linear(8, 1), {}, 1, False),
        ("rnn_tanh 2 layers no head", nn.RNN(3, 5, num_layers=2), None, {}, 3, False),
        ("rnn_relu head", nn.RNN(2, 6, nonlinearity="relu"), nn.Linear(6, 3), {}, 2, False),
        ("rnn_relu nested", Net(nn.RNN(1, 7, nonlinearity="relu", num_layers=2), 1), None, {}, 1, False),
        ("lstm no head", nn.LSTM(2, 6), None, {}, 2, False),
        ("lstm no bias head", nn.LSTM(1, 5, bias=False), nn.Linear(5, 2, bias=False), {}, 1, False),
        ("lstm proj_size", nn.LSTM(3, 8, num_layers=2, proj_size=3), nn.Linear(3, 2), {}, 3, False),
        ("lstm proj_size no head", nn.LSTM(2, 6, proj_size=4), None, {}, 2, False),
        ("gru head std", nn.GRU(2, 16), nn.Linear(16, 1), std, 2, False),
        ("gru 3 layers sigmoid", nn.GRU(1, 4, num_layers=3), nn.Linear(4, 2),
         {"output_activation": "sigmoid"}, 1, False),
        ("gru bidirectional", nn.GRU(2, 5, bidirectional=True), nn.Linear(10, 3), {"readout": "last_output"}, 2,
         True),
        ("lstm bidirectional nested", Net(nn.LSTM(1, 4, bidirectional=True, num_layers=2), 2), None,
         {"readout": "last_output"}, 1, True),
        ("gru nested self.rnn self.fc", Net(nn.GRU(2, 9, num_layers=2), 2), None, {}, 2, False),
        ("lstm nested depth 2", Wrapper(Net(nn.LSTM(1, 6, proj_size=2), 1)), None,
         {"description": "a wrapped net"}, 1, False),
        ("gru f16", nn.GRU(2, 6).half(), nn.Linear(6, 1).half(), {}, 2, False),
        ("lstm bf16", nn.LSTM(1, 6).bfloat16(), nn.Linear(6, 1).bfloat16(), {}, 1, False),
        ("rnn f64 nested", Net(nn.RNN(1, 4), 1).double(), None, {}, 1, False),
        ("seed tutorial", Tutorial(3, 12, 4), None,
         {"vocab": ["a", "b", "c"], "labels": ["w", "x", "y", "z"]}, 3, False),
        ("seed tutorial nested", Wrapper(Tutorial(2, 6, 2)), None, {}, 2, False),
    ]


def _torch_outputs(module, head, md, x):
    """torch's output after each prefix of x [T, I] (float32 weights, as exported): [T, O]; the bidirectional
    case only after the whole sequence ([1, O])."""
    import copy
    import torch
    import torch.nn as nn
    module = copy.deepcopy(module).float()
    head = copy.deepcopy(head).float() if head is not None else None
    rnn = module if isinstance(module, nn.RNNBase) else None
    body = module
    if rnn is None:
        body = module.body if hasattr(module, "body") else module
        rnn = getattr(body, "rnn", None)
        head = getattr(body, "fc", None)
    mean = torch.tensor(md.get("input_mean", [0.0]))
    std = torch.tensor(md.get("input_std", [1.0]))
    xs = (x - mean) / std
    with torch.no_grad():
        if rnn is None:                     # tutorial cell
            h = torch.zeros(1, body.hidden_size)
            outs = []
            for t in range(x.shape[0]):
                out, h = body(xs[t:t + 1], h)
                outs.append(out[0])
            return torch.stack(outs)
        out, _ = rnn(xs.unsqueeze(1))       # [T, 1, H*dirs]
        out = out[:, 0]
        if rnn.bidirectional:
            out = out[-1:]
        y = head(out) if head is not None else out
        if md.get("output_activation") == "sigmoid":
            y = torch.sigmoid(y)
        return y * torch.tensor(md.get("output_std", [1.0])) + torch.tensor(md.get("output_mean", [0.0]))


def _sql_vector(value):
    return [value] if isinstance(value, float) else json.loads(value)


def _check_export(label, module, head, md, n_in, bidirectional):
    import torch
    blob = sqlite_rnn.to_blob(module, head, **md)
    g = torch.Generator().manual_seed(len(label))
    if "vocab" in md:
        tokens = torch.randint(0, n_in, (T,), generator=g)
        x = torch.nn.functional.one_hot(tokens, n_in).float()
    else:
        x = torch.randn(T, n_in, generator=g) * 2 + (torch.tensor(md["input_mean"]) if "input_mean" in md else 0)
        x = x.float()
    want = _torch_outputs(module, head, md, x).tolist()
    scale = max(md.get("output_std", [1.0]))
    con = connect()
    info = json.loads(one(con, "SELECT rnn_info(?)", (blob,)))
    assert info["cell"] == sqlite_rnn.loads(blob)[1]["cell"], info
    seq = json.dumps(x.tolist()) if "vocab" not in md else f32_blob(x.reshape(-1).tolist())   # one-hot rows
    got = _sql_vector(one(con, "SELECT rnn_eval(?, ?)", (blob, seq)))
    assert_close(got, want[-1], TOL, scale, label + " rnn_eval")
    if "vocab" in md:                      # TEXT through the vocab, and the label of the largest output
        text = "".join(md["vocab"][i] for i in tokens.tolist())
        assert_close(_sql_vector(one(con, "SELECT rnn_eval(?, ?)", (blob, text))), want[-1], TOL, scale, label)
        best = max(range(len(want[-1])), key=lambda i: want[-1][i])
        assert one(con, "SELECT rnn_classify(?, ?)", (blob, text)) == md["labels"][best]
    if bidirectional:
        return
    sqlite_rnn.save(con, "m", module, head, **md)
    if "vocab" in md:                      # one TEXT token per row
        cols = "tok"
        data = [[t, md["vocab"][i]] for t, i in enumerate(tokens.tolist())]
    else:
        cols = ", ".join("x%d" % i for i in range(n_in))
        data = [[t] + r for t, r in enumerate(x.tolist())]
    con.execute("CREATE TEMP TABLE seq(t INTEGER PRIMARY KEY, %s)" % cols)
    con.executemany("INSERT INTO seq VALUES (?%s)" % (", ?" * (len(data[0]) - 1)), data)
    rows = con.execute("SELECT rnn_predict('m', %s) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) FROM seq ORDER BY t"
                       % cols).fetchall()
    assert len(rows) == T
    for t, (value,) in enumerate(rows):
        assert_close(_sql_vector(value), want[t], TOL, scale, "%s rnn_predict step %d" % (label, t))


def test_export_matches_torch():
    need_torch()          # before any yield: a generator would raise it only when iterated
    return ((case[0], lambda case=case: _check_export(*case)) for case in _torch_cases())


def test_export_metadata_and_names():
    need_torch()
    import torch.nn as nn
    blob = sqlite_rnn.to_blob(nn.RNN(1, 3, nonlinearity="relu"), nn.Linear(3, 1),
                              input_mean=21.5, input_std=[3], labels=["up"], description="été", extra={"version": 2})
    tensors, md = sqlite_rnn.loads(blob)
    assert sorted(tensors) == ["fc.bias", "fc.weight", "rnn.bias_hh_l0", "rnn.bias_ih_l0", "rnn.weight_hh_l0",
                               "rnn.weight_ih_l0"], sorted(tensors)
    assert md == {"cell": "rnn_relu", "input_mean": "[21.5]", "input_std": "[3]", "labels": '["up"]',
                  "description": "été", "version": "2"}, md
    info = json.loads(one(connect(), "SELECT rnn_info(?)", (blob,)))
    assert info["cell"] == "rnn_relu" and info["metadata"]["description"] == "été", info
    # a bare module keeps its state_dict names; the tutorial cell gets cell=seed and its LogSoftmax
    assert sorted(sqlite_rnn.loads(sqlite_rnn.to_blob(nn.GRU(1, 2)))[0])[0] == "bias_hh_l0"
    tut = nn.Module()
    tut.i2h, tut.i2o, tut.softmax = nn.Linear(3, 2), nn.Linear(3, 4), nn.LogSoftmax(dim=1)
    assert sqlite_rnn.loads(sqlite_rnn.to_blob(tut))[1] == {"cell": "seed", "output_activation": "log_softmax"}
    assert sqlite_rnn.loads(sqlite_rnn.to_blob(tut, output_activation="none"))[1]["output_activation"] == "none"


def test_export_refuses_what_sqlite_rnn_cannot_run():
    need_torch()
    import torch.nn as nn

    def holder(**children):
        m = nn.Module()
        for k, v in children.items():
            setattr(m, k, v)
        return m

    cases = [
        ("embedding", holder(emb=nn.Embedding(10, 4), rnn=nn.GRU(4, 3), fc=nn.Linear(3, 1)), None, {},
         "'emb.weight'"),
        ("two heads", holder(rnn=nn.GRU(1, 3), fc1=nn.Linear(3, 3), fc2=nn.Linear(3, 1)), None, {}, "'fc1', 'fc2'"),
        ("two rnns", holder(a=nn.GRU(1, 3), b=nn.LSTM(3, 3)), None, {}, "'a', 'b'"),
        ("no rnn", holder(fc=nn.Linear(3, 1)), None, {}, "holds none"),
        ("cell conflict", nn.RNN(1, 2, nonlinearity="relu"), None, {"cell": "rnn_tanh"}, "rnn_relu"),
        ("head not linear", nn.GRU(1, 2), nn.GRU(2, 2), {}, "nn.Linear"),
        ("head twice", holder(rnn=nn.GRU(1, 2), fc=nn.Linear(2, 1)), nn.Linear(2, 1), {}, "holds its own head"),
    ]
    for label, module, head, md, want in cases:
        try:
            sqlite_rnn.to_blob(module, head, **md)
        except ValueError as e:
            assert want in str(e), (label, str(e))
        else:
            raise AssertionError("%s: no error" % label)


# ---------------------------------------------------------------------------------------------------------
# save()

def test_save_upserts():
    con = sqlite3.connect(":memory:")
    sqlite_rnn.load(con)
    blob = open(os.path.join(ROOT, "sql", "demo_model.safetensors"), "rb").read()
    sqlite_rnn.save(con, "room_temp", blob)              # creates rnn_models, commits
    assert not con.in_transaction
    assert one(con, "SELECT json_extract(rnn_info('room_temp'), '$.cell')") == "gru"
    con.execute("ALTER TABLE rnn_models ADD COLUMN note TEXT")
    con.execute("UPDATE rnn_models SET note = 'kept'")
    con.commit()
    other = sqlite_rnn.dumps(*sqlite_rnn.loads(blob))    # same model, written again by our writer
    con.execute("BEGIN")
    sqlite_rnn.save(con, "room_temp", other)
    assert con.in_transaction, "save() must not commit the caller's transaction"
    con.rollback()
    assert con.execute("SELECT name, note, model = ? FROM rnn_models", (blob,)).fetchall() == [
        ("room_temp", "kept", 1)]
    try:
        sqlite_rnn.save(con, "x", blob, description="d")
    except ValueError:
        pass
    else:
        raise AssertionError("metadata with a BLOB accepted")


def test_save_upserts_a_module():
    """save() of a torch module replaces the row's model and keeps its other columns."""
    need_torch()
    import torch.nn as nn
    con = sqlite3.connect(":memory:")
    sqlite_rnn.load(con)
    sqlite_rnn.save(con, "room_temp", open(os.path.join(ROOT, "sql", "demo_model.safetensors"), "rb").read())
    con.execute("ALTER TABLE rnn_models ADD COLUMN note TEXT")
    con.execute("UPDATE rnn_models SET note = 'kept'")
    con.commit()
    sqlite_rnn.save(con, "room_temp", nn.GRU(1, 2), nn.Linear(2, 1), description="new")
    assert con.execute("SELECT count(*), max(note) FROM rnn_models").fetchall() == [(1, "kept")]
    assert one(con, "SELECT json_extract(rnn_info('room_temp'), '$.hidden_size')") == 2
