"""NaN and infinities inside a model (issue 9): weights and inputs are finite, but sums can overflow
(input_mean -3e38 with input 3e38 standardises to +Inf; 0 * Inf and Inf - Inf are NaN). Every CPU path
(forced by SQLITE_RNN_KERNEL) gives the same answer, and it is PyTorch's: NaN in gives NaN out of tanh,
sigmoid, relu, softmax and log_softmax; tanh(+-Inf) = +-1; softmax of a row holding +Inf or NaN is all
NaN; argmax counts the first NaN as largest. A non-finite output is NULL in JSON (and a NaN REAL is NULL
in SQLite). The per-kernel bit checks are in tests/test_kernels.c."""
import json
import math
import os

import st
from rnnlib import Skip, connect, f32_list, have_torch

PATHS = ("scalar", "avx2", "avx512")
NAN = float("nan")
INF = float("inf")


def rnn_model(cell, wih, whh, head=None, bias=None, metadata=None):
    """safetensors of an nn.RNN (I = len(wih[0]), H = len(wih)) with the given weights, optional
    Linear head (weight rows, bias) and layer biases (b_ih, b_hh)."""
    H, I = len(wih), len(wih[0])
    t = {"weight_ih_l0": ("F32", [H, I], [v for row in wih for v in row]),
         "weight_hh_l0": ("F32", [H, H], [v for row in whh for v in row])}
    if bias:
        t["bias_ih_l0"] = ("F32", [H], bias[0])
        t["bias_hh_l0"] = ("F32", [H], bias[1])
    if head:
        t["fc.weight"] = ("F32", [len(head[0]), H], [v for row in head[0] for v in row])
        t["fc.bias"] = ("F32", [len(head[0])], head[1])
    md = dict(metadata or {})
    if cell == "rnn_relu":
        md["cell"] = "rnn_relu"
    return st.dumps(t, md or None)


def on_every_path(sql, params):
    """{path: rows} for every path this CPU has (a fresh connection each: the path is read at load)."""
    got = {}
    old = os.environ.get("SQLITE_RNN_KERNEL")
    try:
        for path in PATHS:
            os.environ["SQLITE_RNN_KERNEL"] = path
            con = connect()
            if con.execute("SELECT json_extract(rnn_info(?), '$.kernel')", (params[0],)).fetchone()[0] == path:
                got[path] = con.execute(sql, params).fetchall()
            con.close()
    finally:
        if old is None:
            del os.environ["SQLITE_RNN_KERNEL"]
        else:
            os.environ["SQLITE_RNN_KERNEL"] = old
    assert "scalar" in got, got
    return got


def same(a, b):
    """Equal, a NaN equal to a NaN (rows of numbers, strings, None)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def hidden_floats(rows):
    return [f32_list(r[-1]) for r in rows]


# x = 3e38 - (-3e38) overflows to +Inf: gates W x = [Inf, -Inf, 0 * Inf = NaN]
OVERFLOW = {"input_mean": "[-3e38]"}
WIH = [[1.0], [-1.0], [0.0]]
WHH = [[0.0] * 3] * 3


def test_overflowed_input_every_path_as_pytorch():
    """The issue's case: scalar gave [null, 1.0], SIMD [-1.0, 1.0]; now tanh(Inf, -Inf, NaN) =
    [1, -1, NaN] on every path, and relu gives [Inf, 0, NaN] (it gave 0 for NaN)."""
    cases = (("rnn_tanh", "[1.0,-1.0,null]", [1.0, -1.0, NAN]), ("rnn_relu", "[null,0.0,null]", [INF, 0.0, NAN]))
    for cell, want_json, want_h in cases:
        blob = rnn_model(cell, WIH, WHH, metadata=OVERFLOW)
        for path, rows in on_every_path("SELECT rnn_eval(?1, '[3e38]'), hidden FROM rnn_steps(?1, '[3e38]')",
                                        (blob,)).items():
            assert rows[0][0] == want_json, (cell, path, rows[0][0])
            assert same(hidden_floats(rows)[0], want_h), (cell, path, hidden_floats(rows))


def test_paths_bit_identical_when_states_go_nan():
    """A NaN in the state spreads (0 * NaN) and the hidden BLOBs stay bit-identical across paths."""
    blob = rnn_model("rnn_tanh", [[1.0], [-1.0], [0.0], [0.5]], [[0.25] * 4] * 4, metadata=OVERFLOW)
    got = on_every_path("SELECT step, output, hex(hidden) FROM rnn_steps(?, '[1, 3e38, 2, -3e38]')", (blob,))
    want = got["scalar"]
    assert want[0][2] != want[1][2], want
    for path, rows in got.items():
        assert rows == want, (path, rows, want)
    # x = [3e38, Inf, 3e38, 0]: step 1's 0 * Inf makes one NaN, W_hh spreads it to all by step 2
    hidden = [f32_list(bytes.fromhex(r[2])) for r in want]
    assert [sum(map(math.isnan, h)) for h in hidden] == [0, 1, 4, 4], want


def test_relu_keeps_negative_zero_as_pytorch():
    """torch.relu(-0.0) is -0.0 (clamp_min): -0.0 + 1 * -0.0 + -1 * 0.0 is -0.0, and relu keeps it
    (it gave +0.0)."""
    blob = rnn_model("rnn_relu", [[1.0]], [[-1.0]], bias=([-0.0], [-0.0]))
    for path, rows in on_every_path("SELECT hex(hidden) FROM rnn_steps(?, '[-0.0]')", (blob,)).items():
        assert rows == [("00000080",)], (path, rows)


def head_model(w, b, act, cell="rnn_tanh", metadata=None):
    """H = 1, h = tanh(x) (1.0 for x = 100) or relu(x); head rows w (one weight each), biases b."""
    md = dict(metadata or {}, output_activation=act)
    return rnn_model(cell, [[1.0]], [[0.0]], head=([[v] for v in w], b), metadata=md)


def test_head_activations_of_infinities_and_nan():
    """Head outputs made non-finite by overflow (3e38 * 1 + 3e38 = Inf), through every output
    activation, each answer PyTorch's (see torch.softmax([inf, 1]) = [nan, nan] etc.)."""
    big, inf_in = 3e38, OVERFLOW
    cases = [
        # (head weights, head biases, activation, cell, metadata, input, expected rnn_eval)
        ([big, 0.0], [big, 1.0], "softmax", "rnn_tanh", None, "[100]", "[null,null]"),
        ([big, 0.0], [big, 1.0], "log_softmax", "rnn_tanh", None, "[100]", "[null,null]"),
        ([-big, 0.0], [-big, 1.0], "softmax", "rnn_tanh", None, "[100]", "[0.0,1.0]"),
        ([-big, 0.0], [-big, 1.0], "log_softmax", "rnn_tanh", None, "[100]", "[null,0.0]"),
        ([1.0, -1.0], [0.0, 0.0], "softmax", "rnn_relu", inf_in, "[3e38]", "[null,null]"),
        ([0.0, 0.0], [0.0, 1.0], "log_softmax", "rnn_relu", inf_in, "[3e38]", "[null,null]"),
        ([0.0, 1.0, -1.0], [1.0, 0.0, 0.0], "sigmoid", "rnn_relu", inf_in, "[3e38]", "[null,1.0,6.05460149e-39]"),
        ([0.0, 1.0, -1.0], [1.0, 0.0, 0.0], "tanh", "rnn_relu", inf_in, "[3e38]", "[null,1.0,-1.0]"),
        ([0.0, 1.0, -1.0], [1.0, 0.0, 0.0], "none", "rnn_relu", inf_in, "[3e38]", "[null,null,null]"),
    ]
    for w, b, act, cell, md, seq, want in cases:
        blob = head_model(w, b, act, cell, md)
        for path, rows in on_every_path("SELECT rnn_eval(?, ?)", (blob, seq)).items():
            yield "%s %s %s %s" % (act, w, seq, path), lambda rows=rows, want=want: _eq(rows[0][0], want)


def _eq(got, want):
    assert got == want, (got, want)


def test_one_output_nan_is_null_and_inf_is_real():
    """A single output is a REAL: NaN becomes NULL in SQLite, +Inf stays +Inf."""
    for w, b, want in (([0.0], [0.0], None), ([1.0], [0.0], INF)):
        blob = head_model(w, b, "none", "rnn_relu", OVERFLOW)
        for path, rows in on_every_path("SELECT rnn_eval(?, '[3e38]')", (blob,)).items():
            assert rows == [(want,)], (path, rows)


def test_classify_first_nan_is_largest_as_torch_argmax():
    """h = relu(Inf) = Inf, head rows [1, 0, 2, -1]: outputs [Inf, 0 * Inf, Inf, -Inf] = [Inf, NaN, Inf,
    -Inf]. torch.argmax gives 1 (the first NaN); rnn_classify said 0 (a NaN was skipped)."""
    for labels, want in ((None, 1), (["a", "b", "c", "d"], "b")):
        md = dict(OVERFLOW, labels=json.dumps(labels)) if labels else OVERFLOW
        blob = head_model([1.0, 0.0, 2.0, -1.0], [0.0] * 4, "none", "rnn_relu", md)
        for path, rows in on_every_path("SELECT rnn_classify(?, '[3e38]'), rnn_eval(?1, '[3e38]')",
                                        (blob,)).items():
            assert rows == [(want, "[null,null,null,null]")], (path, rows)


def test_pytorch_agrees():
    """The same overflowed models in PyTorch give the same NaN/Inf pattern (skipped without torch)."""
    if not have_torch():
        raise Skip("python3-torch is not installed")
    import torch
    for cell in ("rnn_tanh", "rnn_relu"):
        rnn = torch.nn.RNN(1, 3, bias=False, nonlinearity=cell[4:], batch_first=True)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.tensor(WIH))
            rnn.weight_hh_l0.zero_()
            x = torch.tensor([[[3e38]]]) - torch.tensor(-3e38)
            want = rnn(x)[0][0, 0].tolist()
        rows = connect().execute("SELECT hidden FROM rnn_steps(?, '[3e38]')",
                                 (rnn_model(cell, WIH, WHH, metadata=OVERFLOW),)).fetchall()
        assert same(hidden_floats(rows)[0], want), (cell, hidden_floats(rows), want)
        torch_softmax = torch.softmax(torch.tensor([INF, 1.0]), 0).tolist()
        assert all(math.isnan(v) for v in torch_softmax), torch_softmax
