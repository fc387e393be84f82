"""Reference implementation of the model semantics of docs/DESIGN.md, in plain Python floats (float64): a test oracle.

No numpy, no torch: it reads the safetensors BLOB with st.py and runs the cells step by step, written to be read
against PyTorch's documented formulas, not to be fast.

    m = Model(blob)
    m.run([[x0...], [x1...], ...])  -> one output list per step: the output after rows 0..t
    m.hidden(seq)                   -> the last layer's hidden state after the whole sequence

Cells (PyTorch's nn.RNN / nn.LSTM / nn.GRU, per layer k, input x, state h (and c)):
    rnn_tanh  h' = tanh(W_ih x + b_ih + W_hh h + b_hh)            (rnn_relu: relu instead of tanh)
    lstm      i,f,g,o = split(W_ih x + b_ih + W_hh h + b_hh)       (gate order i, f, g, o)
              c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
              h' = sigmoid(o) * tanh(c')                            (with proj_size: h' = W_hr (that))
    gru       r,z,n from W_ih x + b_ih and W_hh h + b_hh             (gate order r, z, n)
              r = sigmoid(ir + hr), z = sigmoid(iz + hz), n = tanh(in + r * hn), h' = (1 - z) * n + z * h
    seed      the PyTorch tutorial RNN: u = [x, h]; h' = act(i2h(u)); output = i2o(u)   (act: hidden_activation)
Layer k > 0 takes layer k-1's h' as input. States start at zero. The output after a step is
activation(head(h')) * output_std + output_mean (no head: h' of the last layer; seed: i2o's output), and inputs
are standardised as (x - input_mean) / input_std first. Weights are rounded to float32 at load, as the extension does.
"""
import json
import math
import re
import struct

import st


def _f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


def relu(v):
    return v if v > 0 else 0.0


def identity(v):
    return v


def softmax(vec):
    m = max(vec)
    e = [math.exp(v - m) for v in vec]
    s = sum(e)
    return [v / s for v in e]


def log_softmax(vec):
    m = max(vec)
    lse = m + math.log(sum(math.exp(v - m) for v in vec))
    return [v - lse for v in vec]


ELEMENTWISE = {"none": identity, "tanh": math.tanh, "sigmoid": sigmoid, "relu": relu}
VECTOR = {"softmax": softmax, "log_softmax": log_softmax}


def apply_activation(name, vec):
    if name in VECTOR:
        return VECTOR[name](vec)
    return [ELEMENTWISE[name](v) for v in vec]


class Linear:
    """y = W x + b, W given as rows."""

    def __init__(self, weight, bias):
        self.rows = weight
        self.bias = bias if bias is not None else [0.0] * len(weight)

    def __call__(self, x):
        return [sum(w * v for w, v in zip(row, x)) + b for row, b in zip(self.rows, self.bias)]


def add(a, b):
    return [u + v for u, v in zip(a, b)]


class Model:
    def __init__(self, blob):
        tensors, metadata = st.loads(blob)
        self.meta = metadata or {}
        # name -> (shape, float32-rounded values); the extension converts every dtype to float32 at load
        self.t = {name: (shape, [_f32(v) for v in vals]) for name, (_, shape, vals) in tensors.items()}
        self.used = set()
        cell = self.meta.get("cell")
        if cell == "seed" or (cell is None and any(n.endswith("i2h.weight") for n in self.t)):
            self._load_seed()
        else:
            self._load_recurrent(cell)
        self._load_head()
        leftover = set(self.t) - self.used
        if leftover:
            raise ValueError("unused tensors: %s" % sorted(leftover))
        self.output_activation = self.meta.get("output_activation", "none")
        self.in_mean = self._vector("input_mean", self.input_size, 0.0)
        self.in_std = self._vector("input_std", self.input_size, 1.0)
        self.out_mean = self._vector("output_mean", self.output_size, 0.0)
        self.out_std = self._vector("output_std", self.output_size, 1.0)

    # ---- loading

    def _take(self, name, required=True):
        """The tensor as a matrix (list of rows) or vector; None if absent and not required."""
        if name not in self.t:
            if required:
                raise ValueError("missing tensor %s" % name)
            return None
        self.used.add(name)
        shape, vals = self.t[name]
        if len(shape) == 1:
            return vals
        rows, cols = shape
        return [vals[r * cols:(r + 1) * cols] for r in range(rows)]

    def _vector(self, key, n, default):
        if key not in self.meta:
            return [default] * n
        vec = [float(v) for v in json.loads(self.meta[key])]
        if len(vec) != n:
            raise ValueError("%s has %d values, expected %d" % (key, len(vec), n))
        return vec

    def _prefix(self, key, pattern, names):
        if key in self.meta:
            return self.meta[key]
        found = sorted({m.group(1) for m in (re.fullmatch(pattern, n) for n in names) if m})
        if len(found) != 1:
            raise ValueError("cannot find the prefix (%s): %r" % (pattern, found))
        return found[0]

    def _load_seed(self):
        p = self._prefix("recurrent_prefix", r"(|.*\.)i2h\.weight", self.t)
        self.cell = "seed"
        self.i2h = Linear(self._take(p + "i2h.weight"), self._take(p + "i2h.bias", False))
        self.i2o = Linear(self._take(p + "i2o.weight"), self._take(p + "i2o.bias", False))
        self.hidden_size = len(self.i2h.rows)
        self.input_size = len(self.i2h.rows[0]) - self.hidden_size
        self.output_size = len(self.i2o.rows)
        self.hidden_act = ELEMENTWISE[self.meta.get("hidden_activation", "none")]
        self.layers = []

    def _load_recurrent(self, cell):
        p = self._prefix("recurrent_prefix", r"(|.*\.)weight_ih_l0", self.t)
        if any(n.startswith(p) and n.endswith("_reverse") for n in self.t):
            raise ValueError("bidirectional models are not implemented in ref.py")
        self.layers = []
        k = 0
        while p + "weight_ih_l%d" % k in self.t:
            layer = {
                "w_ih": self._take(p + "weight_ih_l%d" % k),
                "w_hh": self._take(p + "weight_hh_l%d" % k),
                "b_ih": self._take(p + "bias_ih_l%d" % k, False),
                "b_hh": self._take(p + "bias_hh_l%d" % k, False),
                "w_hr": self._take(p + "weight_hr_l%d" % k, False),
            }
            for b in ("b_ih", "b_hh"):
                if layer[b] is None:
                    layer[b] = [0.0] * len(layer["w_ih"])
            self.layers.append(layer)
            k += 1
        first = self.layers[0]
        if first["w_hr"] is not None:
            hidden = len(first["w_hr"][0])
        else:
            hidden = len(first["w_hh"][0])
        gates = len(first["w_ih"]) // hidden
        if cell is None:
            cell = {1: "rnn_tanh", 3: "gru", 4: "lstm"}[gates]
        self.cell = cell
        self.hidden_size = hidden
        self.input_size = len(first["w_ih"][0])
        # the size of h: proj_size for LSTM with projections
        self.output_size = len(first["w_hr"]) if first["w_hr"] is not None else hidden

    def _load_head(self):
        rest = sorted(set(self.t) - self.used)
        if not rest and "head_prefix" not in self.meta:
            self.head = None
            return
        q = self._prefix("head_prefix", r"(|.*\.)weight", rest)
        self.head = Linear(self._take(q + "weight"), self._take(q + "bias", False))
        self.output_size = len(self.head.rows)

    # ---- running

    def initial_state(self):
        if self.cell == "seed":
            return [0.0] * self.hidden_size
        return [([0.0] * len(layer["w_hh"][0]), [0.0] * self.hidden_size) for layer in self.layers]

    def step(self, state, x):
        """(new state, model output) after one input row x (a list of input_size floats)."""
        if len(x) != self.input_size:
            raise ValueError("model expects %d features, got %d" % (self.input_size, len(x)))
        x = [(v - m) / s for v, m, s in zip(x, self.in_mean, self.in_std)]
        if self.cell == "seed":
            u = x + state
            h = [self.hidden_act(v) for v in self.i2h(u)]
            y = self.i2o(u)
            return h, self._finish(y)
        new_state = []
        for layer, (h, c) in zip(self.layers, state):
            h, c = self._cell(layer, x, h, c)
            new_state.append((h, c))
            x = h
        y = self.head(x) if self.head is not None else x
        return new_state, self._finish(y)

    def _finish(self, y):
        y = apply_activation(self.output_activation, y)
        return [v * s + m for v, s, m in zip(y, self.out_std, self.out_mean)]

    def _cell(self, layer, x, h, c):
        gi = Linear(layer["w_ih"], layer["b_ih"])(x)
        gh = Linear(layer["w_hh"], layer["b_hh"])(h)
        H = self.hidden_size
        if self.cell in ("rnn_tanh", "rnn_relu"):
            act = math.tanh if self.cell == "rnn_tanh" else relu
            return [act(v) for v in add(gi, gh)], c
        if self.cell == "gru":
            r = [sigmoid(a + b) for a, b in zip(gi[0:H], gh[0:H])]
            z = [sigmoid(a + b) for a, b in zip(gi[H:2 * H], gh[H:2 * H])]
            n = [math.tanh(a + rr * b) for a, rr, b in zip(gi[2 * H:], r, gh[2 * H:])]
            return [(1.0 - zz) * nn + zz * hh for zz, nn, hh in zip(z, n, h)], c
        if self.cell == "lstm":
            g = add(gi, gh)
            i = [sigmoid(v) for v in g[0:H]]
            f = [sigmoid(v) for v in g[H:2 * H]]
            gg = [math.tanh(v) for v in g[2 * H:3 * H]]
            o = [sigmoid(v) for v in g[3 * H:4 * H]]
            c = [ff * cc + ii * vv for ff, cc, ii, vv in zip(f, c, i, gg)]
            h = [oo * math.tanh(cc) for oo, cc in zip(o, c)]
            if layer["w_hr"] is not None:
                h = Linear(layer["w_hr"], None)(h)
            return h, c
        raise ValueError("unknown cell %r" % self.cell)

    def run(self, seq):
        state = self.initial_state()
        outputs = []
        for x in seq:
            state, y = self.step(state, x)
            outputs.append(y)
        return outputs

    def hidden(self, seq):
        state = self.initial_state()
        for x in seq:
            state, _ = self.step(state, x)
        if self.cell == "seed":
            return state
        return state[-1][0]
