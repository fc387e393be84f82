"""Generate the conformance fixtures: small PyTorch models exported as safetensors, with torch's own outputs.

Regenerate (needs torch; the result is committed, so the tests themselves do not need torch):

    /usr/bin/python3 tests/gen_conformance.py [--out tests/fixtures/conformance]

Writes one NAME.safetensors per case in CASES and expected.json:
    {name: {"inputs": [[x per feature] per step], "outputs": [[y per output] per step],
            "hidden": [last layer's hidden state after the whole sequence], "n_out": O, "output_std_max": s}}
where outputs[t] is the model output after steps 0..t computed by torch in float32, with the output activation
and standardisation of docs/DESIGN.md applied. Models exported in F16/BF16/F64 are run by torch with their weights
rounded to that dtype and then to float32: exactly what the extension sees. Floats keep 9 significant digits,
which round-trips every float32 (so the inputs are bit-exact).

test_conformance.py also imports this module to draw fresh random models (random_specs, build).
"""
import argparse
import json
import os
import random
import sys
import zlib

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

STEPS = 300
TORCH_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
MIXED = ("F16", "BF16", "F32", "F64")   # "mixed" models cycle through these, tensor by tensor


class SeedRNN(nn.Module):
    """The RNN of the PyTorch char-rnn tutorial, minus its LogSoftmax (metadata output_activation says that)."""

    def __init__(self, input_size, hidden_size, output_size, bias=True):
        super().__init__()
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size, bias=bias)
        self.i2o = nn.Linear(input_size + hidden_size, output_size, bias=bias)

    def forward(self, x, h):
        combined = torch.cat((x, h), 1)
        hidden = self.i2h(combined)
        output = self.i2o(combined)
        return output, hidden


class Net(nn.Module):
    """A typical user module: its state_dict names the tensors rnn.weight_ih_l0 ... and fc.weight, fc.bias."""

    def __init__(self, rnn, fc):
        super().__init__()
        self.rnn = rnn
        self.fc = fc


def spec(name, cell, I, H, L=1, O=None, bias=True, head_bias=True, act="none", proj=0, std=None,
         prefix=None, head_prefix=None, dtype="F32", hidden_act="none", meta_cell=False, description=None,
         explicit_act=False, steps=STEPS):
    """One case. O: head outputs (None: no head; the seed cell always has O). std: None, or the output_std scale
    for standardisation metadata. prefix/head_prefix: tensor name prefixes (defaults: 'rnn.'/'fc.' with a head,
    '' without). meta_cell: write the `cell` key even where shapes tell."""
    if prefix is None:
        prefix = "rnn." if (O is not None and cell != "seed") else ""
    if head_prefix is None:
        head_prefix = "fc." if prefix == "rnn." else prefix + "head."
    return dict(name=name, cell=cell, I=I, H=H, L=L, O=O, bias=bias, head_bias=head_bias, act=act, proj=proj,
                std=std, prefix=prefix, head_prefix=head_prefix, dtype=dtype, hidden_act=hidden_act,
                meta_cell=meta_cell, description=description, explicit_act=explicit_act, steps=steps)


def _cases():
    cases = []
    for cell, short in (("rnn_tanh", "tanh"), ("rnn_relu", "relu"), ("lstm", "lstm"), ("gru", "gru")):
        cases += [
            spec(short + "_i1_h7_head1", cell, 1, 7, O=1),
            spec(short + "_i5_h7_l2_nohead", cell, 5, 7, L=2),
            spec(short + "_i5_h1_l3_softmax", cell, 5, 1, L=3, O=3, act="softmax"),
            spec(short + "_i1_h7_nobias_nohead", cell, 1, 7, bias=False, meta_cell=True),
            spec(short + "_i5_h7_l2_sigmoid_std", cell, 5, 7, L=2, O=1, act="sigmoid", std=3.0),
            spec(short + "_i5_h7_logsoftmax_headnobias", cell, 5, 7, O=4, act="log_softmax", head_bias=False),
            spec(short + "_i5_h7_l3_tanh", cell, 5, 7, L=3, O=2, act="tanh"),
        ]
    cases += [
        spec("tanh_i5_h64_nohead", "rnn_tanh", 5, 64),
        spec("tanh_head_at_root", "rnn_tanh", 5, 7, O=2, prefix="", head_prefix="", meta_cell=True),
        spec("tanh_f64", "rnn_tanh", 5, 7, L=2, O=1, dtype="F64"),
        spec("relu_i5_h64_l2_head1", "rnn_relu", 5, 64, L=2, O=1),
        spec("relu_bf16_softmax", "rnn_relu", 5, 7, O=3, act="softmax", dtype="BF16"),
        spec("lstm_i5_h64_l2_head1", "lstm", 5, 64, L=2, O=1),
        spec("lstm_i5_h64_p16_head1", "lstm", 5, 64, O=1, proj=16),
        spec("lstm_proj_i5_h7_p3_l2_head1", "lstm", 5, 7, L=2, O=1, proj=3),
        spec("lstm_proj_i1_h7_p2_nohead", "lstm", 1, 7, proj=2),
        spec("lstm_proj_nobias_i5_h7_p4_l3_softmax", "lstm", 5, 7, L=3, O=3, proj=4, bias=False, act="softmax"),
        spec("lstm_f16", "lstm", 5, 7, L=2, O=1, dtype="F16"),
        spec("lstm_mixed_proj", "lstm", 5, 7, L=2, O=2, proj=3, dtype="mixed",
             description="mixed dtypes: F16, BF16, F32, F64"),
        spec("lstm_deep_prefix_std50", "lstm", 5, 7, O=1, std=50.0, prefix="net.encoder.", head_prefix="net.head.",
             description="température (°C) – prévision"),
        spec("gru_i1_h64_softmax", "gru", 1, 64, O=3, act="softmax"),
        spec("gru_bf16", "gru", 5, 7, L=2, O=1, dtype="BF16"),
        spec("gru_f16_l3", "gru", 5, 7, L=3, O=2, dtype="F16", meta_cell=True),
        spec("seed_tutorial", "seed", 5, 7, O=3, act="log_softmax", meta_cell=True),
        spec("seed_i1_h7_o1_none", "seed", 1, 7, O=1, explicit_act=True),
        spec("seed_nobias", "seed", 5, 7, O=2, bias=False),
        spec("seed_hidden_tanh", "seed", 5, 7, O=1, hidden_act="tanh"),
        spec("seed_hidden_relu_softmax", "seed", 1, 7, O=4, act="softmax", hidden_act="relu"),
        spec("seed_hidden_sigmoid_std", "seed", 5, 7, O=1, hidden_act="sigmoid", std=2.5),
        spec("seed_h64_logsoftmax", "seed", 5, 64, O=3, act="log_softmax", hidden_act="tanh"),
        spec("seed_prefix_f16", "seed", 5, 7, O=2, prefix="model.", dtype="F16"),
        spec("seed_mixed_h1", "seed", 5, 1, O=1, dtype="mixed"),
        spec("seed_bf16_tanh", "seed", 1, 7, O=1, act="tanh", dtype="BF16"),
    ]
    return cases


CASES = _cases()


def random_specs(seed, n, steps=40):
    """n random cases drawn from seed, covering the same dimensions as CASES at smaller sizes."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        cell = rng.choice(["rnn_tanh", "rnn_relu", "lstm", "gru", "seed"])
        I, H = rng.randint(1, 6), rng.randint(1, 16)
        head = cell == "seed" or rng.random() < 0.6
        O = rng.randint(1, 5) if head else None
        acts = ["none", "sigmoid", "tanh"] + (["softmax", "log_softmax"] if head and O >= 3 else [])
        if cell == "seed":
            prefix = rng.choice(["", "model."])
        else:
            prefix = rng.choice(["", "rnn.", "net.encoder."])
        head_prefix = rng.choice(["fc.", "head.", "net.decoder."]) if prefix == "" else prefix + "out."
        out.append(spec(
            "random%d_%s" % (k, cell), cell, I, H, L=1 if cell == "seed" else rng.randint(1, 3), O=O,
            bias=rng.random() < 0.8, head_bias=rng.random() < 0.8, act=rng.choice(acts),
            proj=rng.randint(1, H - 1) if cell == "lstm" and H > 1 and rng.random() < 0.4 else 0,
            std=rng.choice([None, 1.5, 20.0]), prefix=prefix, head_prefix=head_prefix,
            dtype=rng.choice(["F32", "F32", "F16", "BF16", "F64", "mixed"]),
            hidden_act=rng.choice(["none", "tanh", "relu", "sigmoid"]) if cell == "seed" else "none",
            meta_cell=rng.random() < 0.3, steps=steps))
    return out


def _activation(name, y):
    return {"none": lambda v: v, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
            "softmax": lambda v: torch.softmax(v, -1), "log_softmax": lambda v: torch.log_softmax(v, -1)}[name](y)


def build(s, seed=None):
    """(safetensors bytes, expected record) for one spec; seed defaults to a hash of the case name."""
    torch.manual_seed(zlib.crc32(s["name"].encode()) if seed is None else seed)
    I, H, L, O, cell = s["I"], s["H"], s["L"], s["O"], s["cell"]
    if cell == "seed":
        core, head = SeedRNN(I, H, O, bias=s["bias"]), None
        out_size = O
    else:
        if cell == "lstm":
            core = nn.LSTM(I, H, L, bias=s["bias"], proj_size=s["proj"])
        elif cell == "gru":
            core = nn.GRU(I, H, L, bias=s["bias"])
        else:
            core = nn.RNN(I, H, L, nonlinearity=cell[4:], bias=s["bias"])
        h_out = s["proj"] or H
        head = nn.Linear(h_out, O, bias=s["head_bias"]) if O is not None else None
        out_size = O if O is not None else h_out

    # exported name -> (module, its own name for the tensor)
    if s["prefix"] == "rnn." and s["head_prefix"] == "fc." and head is not None:
        net = Net(core, head)
        where = {n: (net, n) for n in net.state_dict()}
    else:
        where = {s["prefix"] + n: (core, n) for n in core.state_dict()}
        if head is not None:
            where.update({s["head_prefix"] + n: (head, n) for n in head.state_dict()})

    if s["dtype"] == "mixed":
        dtypes = {n: MIXED[k % len(MIXED)] for k, n in enumerate(where)}
    else:
        dtypes = {n: s["dtype"] for n in where}
    exported = {}
    for n, (mod, local) in where.items():
        t = mod.state_dict()[local]
        if dtypes[n] == "F64":
            # a double-precision model carries more digits than float32 holds
            t = t.double() + 1e-9 * torch.randn(t.shape, dtype=torch.float64)
        exported[n] = t
    # run torch with the weights the extension will see: rounded to the stored dtype, then to float32
    for mod in {id(m): m for m, _ in where.values()}.values():
        mod.load_state_dict({local: exported[n].to(TORCH_DTYPE[dtypes[n]]).float()
                             for n, (m, local) in where.items() if m is mod})

    meta = {}
    if s["meta_cell"] or cell == "rnn_relu":
        meta["cell"] = cell
    if s["act"] != "none" or s["explicit_act"]:
        meta["output_activation"] = s["act"]
    if s["hidden_act"] != "none":
        meta["hidden_activation"] = s["hidden_act"]
    if s["description"]:
        meta["description"] = s["description"]
    in_mean, in_std = [0.0] * I, [1.0] * I
    out_mean, out_std = [0.0] * out_size, [1.0] * out_size
    if s["std"] is not None:
        # two decimals keep the metadata short; torch uses their float32 roundings, which differ by < 1e-7
        in_mean = [round(random.Random(k).uniform(-3, 3), 2) for k in range(I)]
        in_std = [round(random.Random(k + 100).uniform(0.5, 4), 2) for k in range(I)]
        out_mean = [round(random.Random(k + 200).uniform(-2, 2) * s["std"], 2) for k in range(out_size)]
        out_std = [round(random.Random(k + 300).uniform(0.5, 1.0) * s["std"], 2) for k in range(out_size)]
        meta["input_mean"] = json.dumps(in_mean)
        meta["input_std"] = json.dumps(in_std)
        meta["output_mean"] = json.dumps(out_mean)
        meta["output_std"] = json.dumps(out_std)
    output_std_max = max([1.0] + [abs(v) for v in out_std])
    in_mean, in_std, out_mean, out_std = map(torch.tensor, (in_mean, in_std, out_mean, out_std))
    blob = st.from_state_dict(exported, meta or None, dtypes)

    x = torch.randn(s["steps"], I)
    with torch.no_grad():
        xin = (x - in_mean) / in_std
        if cell == "seed":
            h = torch.zeros(1, H)
            ys = []
            for t in range(s["steps"]):
                y, h = core(xin[t:t + 1], h)
                h = _activation(s["hidden_act"], h)
                ys.append(y)
            y = torch.cat(ys)
            hidden = h[0]
        else:
            seq, _ = core(xin.unsqueeze(1))
            seq = seq[:, 0, :]
            hidden = seq[-1]
            y = head(seq) if head is not None else seq
        y = _activation(s["act"], y) * out_std + out_mean
    record = {
        "inputs": _rounded(x.tolist()),
        "outputs": _rounded(y.tolist()),
        "hidden": _rounded(hidden.tolist()),
        "n_out": out_size,
        "output_std_max": output_std_max,
    }
    return blob, record


def _rounded(v):
    if isinstance(v, list):
        return [_rounded(u) for u in v]
    return float("%.9g" % v)


def write(specs, out_dir, seed=None):
    """Build every spec into out_dir (NAME.safetensors + expected.json); returns the expected dict.
    seed None: each case seeds torch from its name; else case k uses seed + k."""
    os.makedirs(out_dir, exist_ok=True)
    expected = {}
    for k, s in enumerate(specs):
        blob, record = build(s, None if seed is None else seed + k)
        with open(os.path.join(out_dir, s["name"] + ".safetensors"), "wb") as f:
            f.write(blob)
        expected[s["name"]] = record
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    return expected


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "fixtures", "conformance"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    write(CASES, args.out)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print("%d cases, %d bytes in %s" % (len(CASES), total, args.out))


if __name__ == "__main__":
    main()
