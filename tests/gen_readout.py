"""Generate the readout fixtures: PyTorch classifiers and regressors written the way PyTorch users write them,
with torch's own results, for metadata `readout` (tests/test_readout.py).

Regenerate (needs torch; the result is committed, so the tests themselves do not need torch):

    /usr/bin/python3 tests/gen_readout.py [--out tests/fixtures/readout]

Everything is seeded (torch.manual_seed from a CRC of each case name), so a rerun writes identical files.
Each case is an nn.Module holding `rnn` (nn.RNN/LSTM/GRU, batch_first) and an optional Linear `fc`, whose
forward is one of
    final_states:  out, h_n = self.rnn(x); feat = torch.cat((h_n[-2], h_n[-1]), 1)   (bidirectional)
                                           feat = h_n[-1]                            (unidirectional)
    last_output:   out, h_n = self.rnn(x); feat = out[:, -1]
    return self.fc(feat)     (no fc: feat itself)
and the BLOB is its state_dict with __metadata__ readout = that name (plus activation, standardisation and
labels where the case says). Writes NAME.safetensors per case and expected.json:
    {name: {"readout", "bidirectional", "n_in", "n_out", "output_std_max", "labels" (or null),
            "sequences": [{"inputs": [[x per feature] per step], "output": [y per output]}, ...],
            "forecast": null or {"inputs", "outputs": [[y per output] per forecast step]}}}
output is activation(forward(standardised inputs)) * output_std + output_mean, after the whole sequence.
forecast (n_out == n_in): outputs[0] is the output after the sequence, outputs[k] the output after the sequence
with outputs[0..k) appended (a bidirectional model reruns the whole sequence, as torch must).
Floats keep 9 significant digits (every float32 round-trips).

test_readout.py imports this module to draw fresh random models (random_cases, build, run).
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

LENGTHS = (1, 2, 25)
HORIZON = 6


def case(name, cell, I, H, L=1, O=None, bidirectional=True, readout="final_states", proj=0, act="none",
         std=None, labels=False, forecast=False, bias=True):
    return dict(name=name, cell=cell, I=I, H=H, L=L, O=O, bidirectional=bidirectional, readout=readout,
                proj=proj, act=act, std=std, labels=labels, forecast=forecast, bias=bias)


CASES = [
    case("bi_gru_i3_h6_o4_softmax_labels", "gru", 3, 6, O=4, act="softmax", labels=True),
    case("bi_lstm_i2_h5_l2_o3", "lstm", 2, 5, L=2, O=3),
    case("bi_lstm_proj_i2_h6_p3_l2_o2", "lstm", 2, 6, L=2, O=2, proj=3),
    case("bi_tanh_i1_h4_l3_o1_std", "rnn_tanh", 1, 4, L=3, O=1, std=5.0),
    case("bi_relu_i2_h5_o2_nobias", "rnn_relu", 2, 5, O=2, bias=False),
    case("bi_gru_i2_h3_l2_nohead", "gru", 2, 3, L=2),
    case("bi_lstm_proj_i3_h5_p2_nohead", "lstm", 3, 5, proj=2),
    case("bi_gru_i2_h4_o2_forecast", "gru", 2, 4, O=2, forecast=True, std=2.0),
    case("bi_lstm_i2_h4_l2_o2_forecast_tanh", "lstm", 2, 4, L=2, O=2, act="tanh", forecast=True),
    case("bi_gru_i2_h4_l2_o3_last_output", "gru", 2, 4, L=2, O=3, readout="last_output", labels=True),
    case("uni_lstm_i2_h5_l2_o3_final_states", "lstm", 2, 5, L=2, O=3, bidirectional=False),
    case("uni_lstm_proj_i2_h6_p2_l2_final_states", "lstm", 2, 6, L=2, proj=2, bidirectional=False),
]


class Net(nn.Module):
    """What a PyTorch user writes: an RNN and a Linear head, with the readout in forward."""

    def __init__(self, c):
        super().__init__()
        kw = dict(bias=c["bias"], bidirectional=c["bidirectional"], batch_first=True)
        if c["cell"] == "lstm":
            self.rnn = nn.LSTM(c["I"], c["H"], c["L"], proj_size=c["proj"], **kw)
        elif c["cell"] == "gru":
            self.rnn = nn.GRU(c["I"], c["H"], c["L"], **kw)
        else:
            self.rnn = nn.RNN(c["I"], c["H"], c["L"], nonlinearity=c["cell"][4:], **kw)
        width = (2 if c["bidirectional"] else 1) * (c["proj"] or c["H"])
        self.fc = nn.Linear(width, c["O"], bias=c["bias"]) if c["O"] else None
        self.readout = c["readout"]
        self.bidirectional = c["bidirectional"]
        self.n_out = c["O"] or width

    def forward(self, x):
        out, h_n = self.rnn(x)
        if isinstance(h_n, tuple):          # LSTM: (h_n, c_n)
            h_n = h_n[0]
        if self.readout == "final_states":
            feat = torch.cat((h_n[-2], h_n[-1]), 1) if self.bidirectional else h_n[-1]
        else:
            feat = out[:, -1]
        return self.fc(feat) if self.fc is not None else feat


def _activation(name, y):
    return {"none": lambda v: v, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "softmax": lambda v: torch.softmax(v, -1), "log_softmax": lambda v: torch.log_softmax(v, -1)}[name](y)


def build(c):
    """(module, metadata dict, BLOB) for case c, weights seeded from its name."""
    torch.manual_seed(zlib.crc32(c["name"].encode()))
    net = Net(c)
    meta = {"readout": c["readout"]}
    if c["cell"] == "rnn_relu":
        meta["cell"] = "rnn_relu"
    if c["act"] != "none":
        meta["output_activation"] = c["act"]
    if c["std"] is not None:
        rng = random.Random(c["name"])
        meta["input_mean"] = json.dumps([round(rng.uniform(-5, 5), 2) for _ in range(c["I"])])
        meta["input_std"] = json.dumps([round(rng.uniform(0.5, 3), 2) for _ in range(c["I"])])
        meta["output_mean"] = json.dumps([round(rng.uniform(-2, 2) * c["std"], 2) for _ in range(net.n_out)])
        meta["output_std"] = json.dumps([round(rng.uniform(0.5, 1.0) * c["std"], 2) for _ in range(net.n_out)])
    if c["labels"]:
        meta["labels"] = json.dumps(["class%d" % k for k in range(net.n_out)])
    return net, meta, st.from_state_dict(net.state_dict(), meta, "F32")


class Runner:
    """torch's results for a built case: standardise, forward, activation, de-standardise."""

    def __init__(self, c, net, meta):
        self.c, self.net = c, net
        vec = lambda key, n, d: torch.tensor(json.loads(meta[key]) if key in meta else [d] * n)
        self.in_mean, self.in_std = vec("input_mean", c["I"], 0.0), vec("input_std", c["I"], 1.0)
        self.out_mean, self.out_std = vec("output_mean", net.n_out, 0.0), vec("output_std", net.n_out, 1.0)
        self.output_std_max = max([1.0] + [abs(v) for v in self.out_std.tolist()])
        self.act = c["act"]

    def output(self, x):
        """The model output after the whole sequence x [T, I]."""
        with torch.no_grad():
            y = self.net(((x - self.in_mean) / self.in_std).unsqueeze(0))[0]
            return _activation(self.act, y) * self.out_std + self.out_mean

    def forecast(self, x, horizon):
        outs = [self.output(x)]
        for _ in range(horizon - 1):
            x = torch.cat((x, outs[-1].view(1, -1)))
            outs.append(self.output(x))
        return torch.stack(outs)


def rounded(v):
    if isinstance(v, list):
        return [rounded(u) for u in v]
    return float("%.9g" % v)


def inputs(c, r, T, tag=""):
    torch.manual_seed(zlib.crc32(("%s/%d%s" % (c["name"], T, tag)).encode()))
    return torch.tensor(rounded((torch.randn(T, c["I"]) * r.in_std + r.in_mean).tolist()))


def record(c, net, meta):
    r = Runner(c, net, meta)
    seqs = []
    for T in LENGTHS:
        x = inputs(c, r, T)
        seqs.append({"inputs": x.tolist(), "output": rounded(r.output(x).tolist())})
    fc = None
    if c["forecast"]:
        x = inputs(c, r, 7, "/forecast")
        fc = {"inputs": x.tolist(), "outputs": rounded(r.forecast(x, HORIZON).tolist())}
    return {"readout": c["readout"], "bidirectional": c["bidirectional"], "n_in": c["I"], "n_out": net.n_out,
            "output_std_max": r.output_std_max, "labels": json.loads(meta["labels"]) if c["labels"] else None,
            "sequences": seqs, "forecast": fc}


def random_cases(seed, n):
    """n random bidirectional cases drawn from seed, both readouts, every cell, 1-3 layers, with a head."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        cell = rng.choice(["rnn_tanh", "rnn_relu", "lstm", "gru"])
        H = rng.randint(2, 8)
        out.append(case("random%d_s%d_%s" % (k, seed, cell), cell, rng.randint(1, 4), H, L=rng.randint(1, 3),
                        O=rng.randint(2, 5), readout=rng.choice(["final_states", "last_output"]),
                        proj=rng.randint(1, H - 1) if cell == "lstm" and rng.random() < 0.4 else 0,
                        act=rng.choice(["none", "softmax"]), bias=rng.random() < 0.8))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "fixtures", "readout"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    expected = {}
    for c in CASES:
        net, meta, blob = build(c)
        with open(os.path.join(args.out, c["name"] + ".safetensors"), "wb") as f:
            f.write(blob)
        expected[c["name"]] = record(c, net, meta)
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    print("%d cases in %s" % (len(CASES), args.out))


if __name__ == "__main__":
    main()
