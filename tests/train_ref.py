"""Torch reference of rnn_train (issue 14; the contract is README "Training"): the same training, step by step.

Given the model BLOB rnn_train starts from (e.g. rnn_init(spec)), the rows its query returns and its options, this
module rebuilds in PyTorch exactly what the driver does, so the two can be compared epoch by epoch:

  * rows (key, order, features..., targets...) sorted by (key, order), grouped into series;
  * task next: the target of step t is the features of step t+1; regress: the target columns; classify: one label
    per series, cross-entropy on the output after the series' last step;
  * validation: the chronological tail of each series (the last floor(n * val_fraction) rows, a sequence of its
    own), or with val_split "series" the last fraction of series in key order;
  * standardisation with the training rows' mean and population std (std 0 -> 1), in float32 (next: the
    targets are rows, standardised as inputs);
  * windows: each series' part cut into consecutive windows of `window` steps (the last shorter), each starting
    from a zero state (classify: whole series);
  * batches of batch_size windows, padded; each epoch the listed windows are shuffled afresh by a Fisher-Yates
    shuffle driven by splitmix64(seed) (seeded once, running on across epochs): j = next() % (i + 1) for i
    from n-1 down to 1;
  * loss: torch's reduction='mean' over the counted targets of the batch (MSE on the output after
    output_activation, cross-entropy on the head's output before it); Adam (torch.optim.Adam, L2 weight decay),
    clip_grad_norm_ (global L2 norm) when clip > 0;
  * per epoch: train loss = the batch losses weighted by their counted targets, val loss = the mean loss over
    every validation target with the epoch's final weights.

Also here, without torch: splitmix64, the shuffle, and init_blob(spec), rnn_init's documented initialisation in
Python (used before the C side existed, and by a test to check rnn_init's bytes).

    losses, final = train(blob, rows, options)      # [(train_loss, val_loss), ...], {tensor name: tensor}
"""
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
import gen_grad  # noqa: E402

MASK = (1 << 64) - 1
DEFAULTS = {"task": "next", "loss": None, "epochs": 20, "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8,
            "weight_decay": 0.0, "batch_size": 16, "window": 64, "clip": 0.0, "standardize": True,
            "val_fraction": 0.2, "val_split": None, "patience": 0, "max_seconds": 0, "seed": 0,
            "shuffle": True, "save_as": None, "keep_on_interrupt": False, "labels": None}
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


class SplitMix64:
    """Steele, Lea and Flood's splitmix64 (the generator of java.util.SplittableRandom), 64-bit state."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        """[0, 1) with 24 random bits: exactly representable in float32."""
        return (self.next() >> 40) * 2.0 ** -24


def shuffle(order, rng):
    """Fisher-Yates in place, as rnn_train does between epochs."""
    for i in range(len(order) - 1, 0, -1):
        j = rng.next() % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


# ---------------------------------------------------------------------------------------------------------
# rnn_init's tensors and initialisation, in Python

# rnn_init's defaults, kept in one place: gen_grad.py (the generator of the gradient fixtures)
spec_defaults = gen_grad.full_spec


def tensor_shapes(spec):
    """[(name, shape, bound)] in the BLOB's order: per layer w_ih, w_hh, b_ih, b_hh (w_hr), then the head."""
    s = spec_defaults(spec)
    I, H, L, P, O = s["input_size"], s["hidden_size"], s["num_layers"], s["proj_size"], s["output_size"]
    out = []
    if s["cell"] == "seed":
        k = 1 / math.sqrt(I + H)
        out.append(("i2h.weight", [H, I + H], k))
        if s["bias"]:
            out.append(("i2h.bias", [H], k))
        out.append(("i2o.weight", [O, I + H], k))
        if s["bias"]:
            out.append(("i2o.bias", [O], k))
        return out
    G, hout, k = GATES[s["cell"]], P or H, 1 / math.sqrt(H)
    for layer in range(L):
        inp = I if layer == 0 else hout
        out.append(("rnn.weight_ih_l%d" % layer, [G * H, inp], k))
        out.append(("rnn.weight_hh_l%d" % layer, [G * H, hout], k))
        if s["bias"]:
            out.append(("rnn.bias_ih_l%d" % layer, [G * H], k))
            out.append(("rnn.bias_hh_l%d" % layer, [G * H], k))
        if P:
            out.append(("rnn.weight_hr_l%d" % layer, [P, H], k))
    if O:
        k = 1 / math.sqrt(hout)
        out.append(("fc.weight", [O, hout], k))
        if s["bias"]:
            out.append(("fc.bias", [O], k))
    return out


def init_blob(spec):
    """A model BLOB initialised as the README documents rnn_init: splitmix64(seed), u = (next() >> 40) * 2^-24,
    w = (2u - 1) * k tensor by tensor in BLOB order, row-major."""
    s = spec_defaults(spec)
    rng = SplitMix64(s["seed"])
    tensors = {}
    for name, shape, k in tensor_shapes(s):
        n = math.prod(shape)
        tensors[name] = ("F32", shape, [(2 * rng.uniform() - 1) * k for _ in range(n)])
    meta = {"cell": s["cell"], "output_activation": s["output_activation"]}
    if s["cell"] == "seed":
        meta["hidden_activation"] = s["hidden_activation"]
    return st.dumps(tensors, meta)


# ---------------------------------------------------------------------------------------------------------
# The data as rnn_train cuts it

def options_with_defaults(options):
    o = dict(DEFAULTS)
    o.update(options or {})
    if o["loss"] is None:
        o["loss"] = "cross_entropy" if o["task"] == "classify" else "mse"
    if o["val_split"] is None:      # classify holds out whole series (rnn_train refuses tail there)
        o["val_split"] = "series" if o["task"] == "classify" else "tail"
    return o


def series_of(rows):
    """[(key, [row tail...])] in (key, order) order."""
    out = {}
    for r in sorted(rows, key=lambda r: (r[0], r[1])):
        out.setdefault(r[0], []).append(list(r[2:]))
    return sorted(out.items(), key=lambda kv: kv[0])


def split_series(rows, n_in, o, labels):
    """(train, val): lists of parts (xs: rows of features, ys: rows of targets, or a class index), one per series
    and split: the tail split holds out the last floor(n * val_fraction) rows of each series of n rows (the two
    parts are separate sequences); the series split the last floor(S * val_fraction) of the S series."""
    task = o["task"]
    parts = []
    for key, steps in series_of(rows):
        xs = [s[:n_in] for s in steps]
        if task == "classify":
            lab = steps[0][n_in]
            ys = labels.index(lab) if isinstance(lab, str) else int(lab)
        else:
            ys = [s[n_in:] for s in steps] if task == "regress" else None
        parts.append((xs, ys))
    f = o["val_fraction"]
    train, val = [], []
    if o["val_split"] == "series":
        n_val = int(math.floor(len(parts) * f))
        return parts[:len(parts) - n_val], parts[len(parts) - n_val:]
    for xs, ys in parts:
        cut = len(xs) - int(math.floor(len(xs) * f))
        head = ys[:cut] if isinstance(ys, list) else ys
        tail = ys[cut:] if isinstance(ys, list) else ys
        train.append((xs[:cut], head))
        val.append((xs[cut:], tail))
    return train, val


def moments(vectors, width):
    """float32 mean and population std (0 -> 1) of the rows, summed in double as rnn_train does."""
    n = len(vectors)
    mean, std = [], []
    for i in range(width):
        mu = sum(v[i] for v in vectors) / n if n else 0.0
        var = sum((v[i] - mu) ** 2 for v in vectors) / n if n else 0.0
        sd = f32(math.sqrt(var))
        mean.append(f32(mu))
        std.append(sd if sd > 0 and math.isfinite(sd) else 1.0)
    return mean, std


def windows(parts, o):
    """[(xs, ys)] windows of the parts, in order: next pairs row t with row t + 1 (L rows give L - 1 steps);
    each part is cut into consecutive windows of `window` steps; classify: one window per part (not empty)."""
    out = []
    for xs, ys in parts:
        if o["task"] == "classify":
            if xs:
                out.append((xs, ys))
            continue
        if o["task"] == "next":
            xs, ys = xs[:-1], xs[1:]
        for a in range(0, len(xs), o["window"]):
            out.append((xs[a:a + o["window"]], ys[a:a + o["window"]]))
    return out


# ---------------------------------------------------------------------------------------------------------
# Torch

def _act(torch, name, y):
    return {"none": lambda v: v, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
            "softmax": lambda v: torch.softmax(v, -1), "log_softmax": lambda v: torch.log_softmax(v, -1)}[name](y)


def build(blob):
    """(module, meta): a torch module holding the BLOB's tensors; module(x [B, T, I]) -> head outputs before
    output_activation [B, T, O] (no head: the last layer's h)."""
    import torch
    from torch import nn
    tensors, meta = st.loads(blob)
    t = {name: torch.tensor(v, dtype=torch.float32).reshape(shape) for name, (_, shape, v) in tensors.items()}

    def find(suffix):
        hits = [n for n in t if n == suffix or n.endswith("." + suffix)]
        return t[hits[0]] if hits else None

    if find("i2h.weight") is not None:
        hact = meta.get("hidden_activation", "none")

        class Seed(nn.Module):
            def __init__(self):
                super().__init__()
                w = find("i2h.weight")
                self.H = w.shape[0]
                self.i2h = nn.Linear(w.shape[1], w.shape[0], bias=find("i2h.bias") is not None)
                self.i2o = nn.Linear(w.shape[1], find("i2o.weight").shape[0], bias=find("i2o.bias") is not None)

            def forward(self, x):
                h = x.new_zeros(x.shape[0], self.H)
                outs = []
                for step in range(x.shape[1]):
                    u = torch.cat((x[:, step], h), 1)
                    outs.append(self.i2o(u))
                    h = _act(torch, hact, self.i2h(u))
                return torch.stack(outs, 1)

        m = Seed()
    else:
        w0 = find("weight_ih_l0")
        L = sum(1 for n in t if "weight_ih_l" in n)
        proj = find("weight_hr_l0")
        P = proj.shape[0] if proj is not None else 0
        H = proj.shape[1] if P else find("weight_hh_l0").shape[1]
        cell = meta.get("cell") or {1: "rnn_tanh", 4: "lstm", 3: "gru"}[w0.shape[0] // H]
        bias = find("bias_ih_l0") is not None
        if cell == "lstm":
            rnn = nn.LSTM(w0.shape[1], H, L, bias=bias, batch_first=True, proj_size=P)
        elif cell == "gru":
            rnn = nn.GRU(w0.shape[1], H, L, bias=bias, batch_first=True)
        else:
            rnn = nn.RNN(w0.shape[1], H, L, bias=bias, batch_first=True,
                         nonlinearity="relu" if cell == "rnn_relu" else "tanh")
        hw = [n for n in t if n.endswith("weight") and "_l" not in n.rsplit(".", 1)[-1]]
        head = None
        if hw:
            head = nn.Linear(t[hw[0]].shape[1], t[hw[0]].shape[0], bias=find("bias") is not None)

        class Recurrent(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = rnn
                self.fc = head

            def forward(self, x):
                y, _ = self.rnn(x)
                return self.fc(y) if self.fc is not None else y

        m = Recurrent()
    # copy the BLOB's tensors in, matched by name without the BLOB's prefix
    sd = m.state_dict()
    for name in sd:
        if name.startswith("fc."):
            key = [n for n in t if n.rsplit(".", 1)[-1] == name[3:] and "_l" not in n.rsplit(".", 1)[-1]
                   and "i2" not in n][0]
        else:
            bare = name[4:] if name.startswith("rnn.") else name
            key = [n for n in t if n == bare or n.endswith("." + bare)][0]
        sd[name] = t[key].clone()
    m.load_state_dict(sd)
    return m, meta


def _pad(torch, items, n_in, o, n_out):
    """x [B, T, I], targets and a mask, for a list of windows."""
    B, T = len(items), max(len(xs) for xs, _ in items)
    x = torch.zeros(B, T, n_in, dtype=torch.float32)
    lengths = []
    if o["task"] == "classify":
        y = torch.tensor([ys for _, ys in items], dtype=torch.long)
    else:
        y = torch.zeros(B, T, n_out, dtype=torch.float32)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (xs, ys) in enumerate(items):
        x[b, :len(xs)] = torch.tensor(xs, dtype=torch.float32)
        mask[b, :len(xs)] = True
        lengths.append(len(xs))
        if o["task"] != "classify":
            y[b, :len(xs)] = torch.tensor(ys, dtype=torch.float32)
    return x, y, mask, lengths


def batch_loss(torch, model, meta, items, n_in, o, n_out):
    """(loss tensor, counted targets) of one batch: torch's reduction='mean' over the counted targets."""
    x, y, mask, lengths = _pad(torch, items, n_in, o, n_out)
    out = model(x)
    if o["task"] == "classify":
        last = out[torch.arange(len(items)), torch.tensor(lengths) - 1]
        if o["loss"] == "cross_entropy":
            return torch.nn.functional.cross_entropy(last, y), len(items)
        onehot = torch.nn.functional.one_hot(y, last.shape[1]).float()     # mse on the activated output
        diff = _act(torch, meta.get("output_activation", "none"), last) - onehot
        return (diff * diff).mean(), diff.numel()
    if o["loss"] == "cross_entropy":
        raise ValueError("cross_entropy needs classify here")
    pred = _act(torch, meta.get("output_activation", "none"), out)
    diff = (pred - y)[mask]
    return (diff * diff).mean(), diff.numel()


def input_size(tensors):
    for n, (_, shape, _) in tensors.items():
        if n.endswith("weight_ih_l0"):
            return shape[1]
        if n.endswith("i2h.weight"):
            return shape[1] - shape[0]
    raise ValueError("no recurrent input tensor")


def prepare(blob, rows, options, n_in=None):
    """Everything train() needs that is not torch: windows, standardisation, options."""
    tensors, meta = st.loads(blob)
    o = options_with_defaults(options)
    if n_in is None:
        n_in = input_size(tensors)
    labels = o["labels"]
    train, val = split_series(rows, n_in, o, labels or json.loads(meta.get("labels", "[]")))
    std = {}
    if o["standardize"]:
        std["in_mean"], std["in_std"] = moments([x for xs, _ in train for x in xs], n_in)
        if o["task"] == "regress":
            std["out_mean"], std["out_std"] = moments([y for _, ys in train for y in ys], len(train[0][1][0]))
        elif o["task"] == "next":
            std["out_mean"], std["out_std"] = std["in_mean"], std["in_std"]

    def norm(rows_, mean, sd):
        """(v - mean) / std in float32, as rnn_train applies it."""
        return [[f32(f32(f32(v) - m) / s) for v, m, s in zip(r, mean, sd)] for r in rows_]

    def scaled(parts):
        if not std:
            return parts
        out = []
        for xs, ys in parts:
            ys2 = norm(ys, std["out_mean"], std["out_std"]) if o["task"] == "regress" else ys
            out.append((norm(xs, std["in_mean"], std["in_std"]), ys2))
        return out

    train, val = windows(scaled(train), o), windows(scaled(val), o)
    if o["task"] == "classify":
        n_out = None
    else:
        n_out = len(train[0][1][0])
    return {"o": o, "n_in": n_in, "n_out": n_out, "train": train, "val": val, "std": std, "meta": meta}


def train(blob, rows, options, n_in=None, threads=None, epoch_hook=None):
    """Train as rnn_train does. Returns (per-epoch [(train_loss, val_loss or None)], final state_dict, prep).
    Patience and max_seconds are not modelled (compare runs that do not stop early)."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    p = prepare(blob, rows, options, n_in)
    o = p["o"]
    model, meta = build(blob)
    opt = torch.optim.Adam(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                           weight_decay=o["weight_decay"])
    rng = SplitMix64(o["seed"])
    history = []
    for epoch in range(o["epochs"]):
        order = list(range(len(p["train"])))      # each epoch shuffles the listed order afresh
        if o["shuffle"]:
            shuffle(order, rng)
        total, count = 0.0, 0
        for a in range(0, len(order), o["batch_size"]):
            items = [p["train"][i] for i in order[a:a + o["batch_size"]]]
            opt.zero_grad()
            loss, n = batch_loss(torch, model, meta, items, p["n_in"], o, p["n_out"])
            loss.backward()
            if o["clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o["clip"])
            opt.step()
            total += float(loss) * n
            count += n
        val = evaluate(torch, model, meta, p, o)
        history.append((total / count, val))
        if epoch_hook:
            epoch_hook(epoch + 1, total / count, val, model)
    return history, model.state_dict(), p


def evaluate(torch, model, meta, p, o):
    if not p["val"]:
        return None
    total, count = 0.0, 0
    with torch.no_grad():
        for a in range(0, len(p["val"]), o["batch_size"]):
            loss, n = batch_loss(torch, model, meta, p["val"][a:a + o["batch_size"]], p["n_in"], o, p["n_out"])
            total += float(loss) * n
            count += n
    return total / count


def rmse_original_units(val_mse, prep):
    """Validation RMSE in the data's units, from a standardised MSE of a one-output next/regress model."""
    s = prep["std"].get("out_std", [1.0])
    assert len(s) == 1
    return math.sqrt(val_mse) * s[0]


def main():
    """python3 tests/train_ref.py SPEC_JSON: print rnn_init's bytes as this module computes them (hex)."""
    print(init_blob(json.loads(sys.argv[1])).hex())


if __name__ == "__main__":
    main()
