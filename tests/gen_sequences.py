"""Generate the sequence fixtures: PyTorch models and torch's own per-step results for rnn_eval, rnn_steps and
rnn_forecast.

Regenerate (needs torch; the result is committed, so the tests themselves do not need torch):

    /usr/bin/python3 tests/gen_sequences.py [--out tests/fixtures/sequences]

Everything is seeded (torch.manual_seed from a CRC of each case name), so a rerun writes identical files.
Writes one NAME.safetensors per case and expected.json:
    {"steps": {name: {"cell", "bidirectional", "n_in", "n_out", "width", "output_std_max",
                      "sequences": [{"inputs": [[x per feature] per step],
                                     "outputs": [[y per output] per step],
                                     "hidden": [[last layer's output[t] per unit] per step]}, ...]}},
     "forecast": {name: {"n_in", "n_out", "output_std_max", "horizon",
                         "inputs": [[x per feature] per step], "outputs": [[y per output] per forecast step]}}}

steps cases: the model run by torch over each whole sequence (lengths 1, 2 and 50). outputs[t] is the model output
at step t: for a unidirectional model the output after steps 0..t; for a bidirectional one head(output[t]) of the
whole-sequence run, output[t] = cat(forward_t, backward_t) of the last layer (so rnn_eval = outputs[T-1]).
hidden[t] is the last layer's output[t] (the seed cell: its hidden state after step t).
forecast cases (n_out == n_in): outputs[0] is the output after the whole sequence, outputs[k] the output after
feeding outputs[k-1] back in as the next raw input (standardised again on the way in), horizon steps in all.

Unidirectional models are made by gen_conformance.build (some are conformance cases themselves); bidirectional
ones by build_bidirectional here. Either way, torch's results are computed from the tensors read back out of the
safetensors BLOB (weights as the extension sees them), and for gen_conformance models checked against the
conformance generator's own torch run. Floats keep 9 significant digits (every float32 round-trips).

test_sequences.py imports this module to draw fresh random models (random_specs, random_forecast_specs, write).
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
import gen_conformance as gc  # noqa: E402
import st  # noqa: E402

LENGTHS = (1, 2, 50)
HORIZON = 20
FORECAST_STEPS = 12


def spec(name, cell, I, H, bidirectional=False, lengths=LENGTHS, **kw):
    """gen_conformance.spec plus a bidirectional flag and the sequence lengths to run."""
    s = gc.spec(name, cell, I, H, **kw)
    s["bidirectional"] = bidirectional
    s["lengths"] = list(lengths)
    return s


def _conformance(name):
    return spec(name, **{k: v for k, v in next(c for c in gc.CASES if c["name"] == name).items()
                         if k not in ("name", "steps")})


def _step_cases():
    cases = [_conformance(n) for n in (
        "tanh_i1_h7_head1", "relu_i5_h7_l2_sigmoid_std", "lstm_i1_h7_head1", "lstm_proj_i5_h7_p3_l2_head1",
        "gru_i5_h7_l3_tanh", "gru_f16_l3", "lstm_deep_prefix_std50", "seed_tutorial", "seed_hidden_tanh")]
    cases += [
        spec("uni_tanh_i3_h6_l2_nohead", "rnn_tanh", 3, 6, L=2),
        spec("uni_relu_i3_h5_head2", "rnn_relu", 3, 5, O=2),
        spec("uni_lstm_i3_h6_l2_head1_std", "lstm", 3, 6, L=2, O=1, std=4.0),
        spec("uni_lstm_proj_i3_h6_p2_nohead", "lstm", 3, 6, proj=2),
        spec("uni_gru_i1_h6_l2_nohead", "gru", 1, 6, L=2),
        spec("uni_gru_i3_h6_softmax", "gru", 3, 6, O=3, act="softmax"),
        spec("uni_seed_i3_h6_o2_relu", "seed", 3, 6, O=2, hidden_act="relu"),
        spec("uni_seed_i1_h5_o1", "seed", 1, 5, O=1),
    ]
    bi = dict(bidirectional=True)
    cases += [
        spec("bi_tanh_i1_h5_head1", "rnn_tanh", 1, 5, O=1, **bi),
        spec("bi_tanh_i3_h4_l2_head2_std", "rnn_tanh", 3, 4, L=2, O=2, std=5.0, **bi),
        spec("bi_tanh_i3_h4_l3_nohead", "rnn_tanh", 3, 4, L=3, **bi),
        spec("bi_relu_i3_h4_l2_head1", "rnn_relu", 3, 4, L=2, O=1, **bi),
        spec("bi_lstm_i1_h5_head1", "lstm", 1, 5, O=1, **bi),
        spec("bi_lstm_i1_h5_l2_head1_std", "lstm", 1, 5, L=2, O=1, std=10.0, **bi),
        spec("bi_lstm_i3_h6_l3_nohead", "lstm", 3, 6, L=3, **bi),
        spec("bi_lstm_proj_i1_h6_p2_nohead", "lstm", 1, 6, proj=2, **bi),
        spec("bi_lstm_proj_i3_h6_p3_l2_head2", "lstm", 3, 6, L=2, O=2, proj=3, **bi),
        spec("bi_lstm_proj_i3_h5_p4_l3_head1_sigmoid", "lstm", 3, 5, L=3, O=1, proj=4, act="sigmoid", **bi),
        spec("bi_gru_i1_h6_nohead", "gru", 1, 6, **bi),
        spec("bi_gru_i1_h4_l3_head1", "gru", 1, 4, L=3, O=1, **bi),
        spec("bi_gru_i3_h5_l2_head3_softmax", "gru", 3, 5, L=2, O=3, act="softmax", **bi),
        spec("bi_gru_i3_h4_l2_nohead_nobias", "gru", 3, 4, L=2, bias=False, **bi),
    ]
    return cases


def _forecast_cases():
    return [
        spec("fc_gru_i1_h8_head1_std", "gru", 1, 8, O=1, std=3.0, lengths=[FORECAST_STEPS]),
        spec("fc_lstm_i2_h6_head2", "lstm", 2, 6, O=2, lengths=[FORECAST_STEPS]),
        spec("fc_lstm_i2_h6_l2_head2_tanh_std", "lstm", 2, 6, L=2, O=2, act="tanh", std=2.0,
             lengths=[FORECAST_STEPS]),
        spec("fc_tanh_i3_h5_l2_head3", "rnn_tanh", 3, 5, L=2, O=3, lengths=[FORECAST_STEPS]),
        spec("fc_gru_i4_h4_l2_nohead", "gru", 4, 4, L=2, lengths=[FORECAST_STEPS]),
        spec("fc_lstm_proj_i3_h7_p3_nohead", "lstm", 3, 7, proj=3, lengths=[FORECAST_STEPS]),
        spec("fc_seed_i3_h6_o3_tanh_std", "seed", 3, 6, O=3, hidden_act="tanh", std=1.5, lengths=[FORECAST_STEPS]),
        spec("fc_seed_i1_h1_o1", "seed", 1, 1, O=1, lengths=[1]),
    ]


STEP_CASES = _step_cases()
FORECAST_CASES = _forecast_cases()


def random_specs(seed, n):
    """n random steps cases drawn from seed: about half bidirectional, every cell, 1-3 layers, heads or not."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        bidir = rng.random() < 0.5
        cell = rng.choice(["rnn_tanh", "rnn_relu", "lstm", "gru"] + ([] if bidir else ["seed"]))
        I, H = rng.randint(1, 4), rng.randint(1, 8)
        O = rng.randint(1, 4) if cell == "seed" or rng.random() < 0.6 else None
        acts = ["none", "sigmoid", "tanh"] + (["softmax", "log_softmax"] if O is not None and O >= 3 else [])
        out.append(spec(
            "random%d_%s%s" % (k, "bi_" if bidir else "", cell), cell, I, H, bidirectional=bidir,
            lengths=[1, 2, rng.randint(3, 60)], L=1 if cell == "seed" else rng.randint(1, 3), O=O,
            bias=rng.random() < 0.8, head_bias=rng.random() < 0.8, act=rng.choice(acts),
            proj=rng.randint(1, H - 1) if cell == "lstm" and H > 1 and rng.random() < 0.4 else 0,
            std=rng.choice([None, 1.5, 20.0]),
            hidden_act=rng.choice(["none", "tanh", "relu"]) if cell == "seed" else "none"))
    return out


def random_forecast_specs(seed, n):
    """n random forecast cases (n_out == n_in, unidirectional) drawn from seed."""
    rng = random.Random(seed ^ 0x5EED)
    out = []
    for k in range(n):
        cell = rng.choice(["rnn_tanh", "rnn_relu", "lstm", "gru", "seed"])
        I = rng.randint(1, 3)
        kw = dict(lengths=[rng.randint(1, 15)], std=rng.choice([None, 2.0, 10.0]),
                  act=rng.choice(["none", "tanh"]), L=1 if cell == "seed" else rng.randint(1, 3))
        if cell == "seed" or rng.random() < 0.6:
            H, kw["O"] = rng.randint(1, 8), I
            kw["hidden_act"] = rng.choice(["none", "tanh"]) if cell == "seed" else "none"
        elif cell == "lstm" and rng.random() < 0.5:
            H, kw["proj"] = I + rng.randint(1, 4), I
        else:
            H = I
        if cell == "rnn_relu":
            kw["act"] = "tanh"      # keep an unbounded relu net from blowing up over the horizon
        out.append(spec("random_fc%d_%s" % (k, cell), cell, I, H, **kw))
    return out


# --- models -------------------------------------------------------------------------------------------------------

def _core(s):
    I, H, L, cell = s["I"], s["H"], s["L"], s["cell"]
    if cell == "seed":
        return gc.SeedRNN(I, H, s["O"], bias=s["bias"])
    kw = dict(bias=s["bias"], bidirectional=s["bidirectional"])
    if cell == "lstm":
        return nn.LSTM(I, H, L, proj_size=s["proj"], **kw)
    if cell == "gru":
        return nn.GRU(I, H, L, **kw)
    return nn.RNN(I, H, L, nonlinearity=cell[4:], **kw)


def _width(s):
    """Units of the last layer's output[t]: dirs * (proj or H); the seed cell's hidden state: H."""
    if s["cell"] == "seed":
        return s["H"]
    return (2 if s["bidirectional"] else 1) * (s["proj"] or s["H"])


def _head(s):
    if s["cell"] == "seed" or s["O"] is None:
        return None
    return nn.Linear(_width(s), s["O"], bias=s["head_bias"])


def build_bidirectional(s):
    """safetensors bytes of a bidirectional nn.RNN/LSTM/GRU (+ optional head) for spec s, all F32."""
    torch.manual_seed(zlib.crc32(s["name"].encode()))
    core, head = _core(s), _head(s)
    tensors = {s["prefix"] + n: t for n, t in core.state_dict().items()}
    if head is not None:
        tensors.update({s["head_prefix"] + n: t for n, t in head.state_dict().items()})
    out_size = s["O"] if head is not None else _width(s)
    meta = {}
    if s["meta_cell"] or s["cell"] == "rnn_relu":
        meta["cell"] = s["cell"]
    if s["act"] != "none":
        meta["output_activation"] = s["act"]
    if s["std"] is not None:
        rng = random.Random(s["name"])
        meta["input_mean"] = json.dumps([round(rng.uniform(-5, 5), 2) for _ in range(s["I"])])
        meta["input_std"] = json.dumps([round(rng.uniform(0.5, 3), 2) for _ in range(s["I"])])
        meta["output_mean"] = json.dumps([round(rng.uniform(-2, 2) * s["std"], 2) for _ in range(out_size)])
        meta["output_std"] = json.dumps([round(rng.uniform(0.5, 1.0) * s["std"], 2) for _ in range(out_size)])
    return st.from_state_dict(tensors, meta or None, "F32")


class TorchModel:
    """The spec's torch modules with the weights of a safetensors BLOB loaded into them, and its metadata."""

    def __init__(self, s, blob):
        self.s = s
        self.core, self.head = _core(s), _head(s)
        tensors, meta = st.loads(blob)
        meta = meta or {}
        parts = {id(self.core): {}, id(self.head): {}}
        for name, (_, shape, values) in tensors.items():
            t = torch.tensor(values, dtype=torch.float32).reshape(shape)
            local = name[len(s["prefix"]):] if name.startswith(s["prefix"]) else None
            if local is not None and local in self.core.state_dict():
                parts[id(self.core)][local] = t
            elif self.head is not None and name.startswith(s["head_prefix"]):
                parts[id(self.head)][name[len(s["head_prefix"]):]] = t
            else:
                raise ValueError("%s: tensor %s belongs to no module" % (s["name"], name))
        self.core.load_state_dict(parts[id(self.core)])
        if self.head is not None:
            self.head.load_state_dict(parts[id(self.head)])
        self.n_in = s["I"]
        self.n_out = s["O"] if (s["cell"] == "seed" or self.head is not None) else _width(s)
        vec = lambda key, n, default: torch.tensor(json.loads(meta[key]) if key in meta else [default] * n)
        self.in_mean, self.in_std = vec("input_mean", self.n_in, 0.0), vec("input_std", self.n_in, 1.0)
        self.out_mean, self.out_std = vec("output_mean", self.n_out, 0.0), vec("output_std", self.n_out, 1.0)
        self.output_std_max = max([1.0] + [abs(v) for v in self.out_std.tolist()])
        self.act = meta.get("output_activation", "none")
        self.hidden_act = meta.get("hidden_activation", "none")

    def _finish(self, y):
        return gc._activation(self.act, y) * self.out_std + self.out_mean

    def _seed_step(self, x_raw, h):
        y, h = self.core(((x_raw - self.in_mean) / self.in_std).view(1, -1), h)
        return y[0], gc._activation(self.hidden_act, h)

    def steps(self, x):
        """(outputs [T, O], hidden [T, width]) of torch over the whole sequence x [T, I]."""
        with torch.no_grad():
            if self.s["cell"] == "seed":
                h = torch.zeros(1, self.s["H"])
                ys, hs = [], []
                for t in range(x.shape[0]):
                    y, h = self._seed_step(x[t], h)
                    ys.append(y)
                    hs.append(h[0])
                return self._finish(torch.stack(ys)), torch.stack(hs)
            seq, _ = self.core(((x - self.in_mean) / self.in_std).unsqueeze(1))
            seq = seq[:, 0, :]
            return self._finish(self.head(seq) if self.head is not None else seq), seq

    def forecast(self, x, horizon):
        """The torch loop: run x [T, I], then feed each de-standardised output back as the next raw input."""
        assert not self.s["bidirectional"] and self.n_out == self.n_in
        with torch.no_grad():
            if self.s["cell"] == "seed":
                h = torch.zeros(1, self.s["H"])
                for t in range(x.shape[0]):
                    y, h = self._seed_step(x[t], h)
                y = self._finish(y)
                outs = [y]
                for _ in range(horizon - 1):
                    y, h = self._seed_step(y, h)
                    y = self._finish(y)
                    outs.append(y)
                return torch.stack(outs)
            state = None          # zeros, as nn.RNN/LSTM/GRU start

            def run(xs, state):
                seq, state = self.core(((xs - self.in_mean) / self.in_std).unsqueeze(1), state)
                last = seq[-1, 0, :]
                return self._finish(self.head(last) if self.head is not None else last), state

            y, state = run(x, state)
            outs = [y]
            for _ in range(horizon - 1):
                y, state = run(y.view(1, -1), state)     # y is the raw value: standardised again in run()
                outs.append(y)
            return torch.stack(outs)


def make_blob(s):
    """safetensors bytes for spec s, its weights seeded from its name."""
    if s["bidirectional"]:
        return build_bidirectional(s)
    blob, record = gc.build(s)
    # our torch run from the BLOB must agree with the conformance generator's own run of the same model
    m = TorchModel(s, blob)
    ys, hs = m.steps(torch.tensor(record["inputs"]))
    ys_want = torch.tensor(record["outputs"])
    lim = 1e-6 * torch.clamp(ys_want.abs(), min=m.output_std_max)
    assert bool(((ys - ys_want).abs() <= lim).all()), "%s: outputs differ from gen_conformance" % s["name"]
    assert bool(((hs[-1] - torch.tensor(record["hidden"])).abs() <= 1e-6).all()), s["name"]
    return blob


def _inputs(s, m, T):
    torch.manual_seed(zlib.crc32(("%s/%d" % (s["name"], T)).encode()))
    return torch.randn(T, s["I"]) * m.in_std + m.in_mean


def step_record(s, blob):
    m = TorchModel(s, blob)
    seqs = []
    for T in s["lengths"]:
        x = _inputs(s, m, T)
        ys, hs = m.steps(x)
        seqs.append({"inputs": gc._rounded(x.tolist()), "outputs": gc._rounded(ys.tolist()),
                     "hidden": gc._rounded(hs.tolist())})
    return {"cell": s["cell"], "bidirectional": s["bidirectional"], "n_in": m.n_in, "n_out": m.n_out,
            "width": _width(s), "output_std_max": m.output_std_max, "sequences": seqs}


def forecast_record(s, blob, horizon=HORIZON):
    m = TorchModel(s, blob)
    x = _inputs(s, m, s["lengths"][0])
    ys = m.forecast(x, horizon)
    return {"n_in": m.n_in, "n_out": m.n_out, "output_std_max": m.output_std_max, "horizon": horizon,
            "inputs": gc._rounded(x.tolist()), "outputs": gc._rounded(ys.tolist())}


def write(step_specs, forecast_specs, out_dir, seed=None):
    """Build every spec into out_dir (NAME.safetensors + expected.json); returns the expected dict.
    Weights and inputs are seeded from each case's name; with seed, case k is renamed NAME_s<seed + k> first
    (steps first, then forecasts), so a new seed draws new weights and inputs."""
    os.makedirs(out_dir, exist_ok=True)
    expected = {"steps": {}, "forecast": {}}
    for k, (s, kind) in enumerate([(s, "steps") for s in step_specs] + [(s, "forecast") for s in forecast_specs]):
        if seed is not None:
            s = dict(s, name="%s_s%d" % (s["name"], seed + k))    # weights and inputs are seeded from the name
        blob = make_blob(s)
        with open(os.path.join(out_dir, s["name"] + ".safetensors"), "wb") as f:
            f.write(blob)
        expected[kind][s["name"]] = step_record(s, blob) if kind == "steps" else forecast_record(s, blob)
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    return expected


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "fixtures", "sequences"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    write(STEP_CASES, FORECAST_CASES, args.out)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print("%d steps cases (%d sequences), %d forecast cases, %d bytes in %s" % (
        len(STEP_CASES), sum(len(s["lengths"]) for s in STEP_CASES), len(FORECAST_CASES), total, args.out))


if __name__ == "__main__":
    main()
