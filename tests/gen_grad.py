"""Generate the gradient fixtures: torch autograd's loss, gradients and final states on small random models.

Regenerate (needs torch; the result is committed, so tests/test_grad.py runs without torch):

    /usr/bin/python3 tests/gen_grad.py [--out tests/fixtures/grad/cases.json]

Each case is a model spec for rnn_init (README "Training") and a mini-batch in the format of the internal SQL
function rnn_grad_internal (ext/trainsql.c): {"T", "len", "x", "target", "loss", "y" or "label", "h0"}. The
record holds torch's float32 autograd result for the model rnn_init builds from the spec, and the gradients
torch computes in float64 from the same float32 weights and inputs (how far torch's own float32 result is from
them is allowed on top of the tolerance: test_grad.py):
    {"name", "spec", "batch", "loss", "grad": {tensor name: flat row-major list}, "grad64": {...}, "hT": [...]}.
Floats keep 9 significant digits (float32 round-trips).

Without torch this module still gives what the tests need: init_tensors/init_blob, a reimplementation of rnn_init's
generator (splitmix64; README "Training"), and random_cases.
"""
import argparse
import json
import math
import os
import random
import struct

MASK = (1 << 64) - 1
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "seed")
OUT_ACTS = ("none", "sigmoid", "tanh", "softmax", "log_softmax")
HIDDEN_ACTS = ("none", "tanh", "relu", "sigmoid")


def full_spec(spec):
    """spec with every default filled in."""
    s = {"num_layers": 1, "proj_size": 0, "bias": True, "output_size": 0, "output_activation": "none",
         "hidden_activation": "tanh", "seed": 0}
    s.update(spec)
    return s


def tensors(spec):
    """[(name, rows, cols or None for a vector, bound k)] in the BLOB's order (ext/params.c rule 1)."""
    s = full_spec(spec)
    I, H, P, O = s["input_size"], s["hidden_size"], s["proj_size"], s["output_size"]
    hout = P or H
    out = []
    if s["cell"] == "seed":
        k = 1 / math.sqrt(I + H)
        out.append(("i2h.weight", H, I + H, k))
        if s["bias"]:
            out.append(("i2h.bias", H, None, k))
        out.append(("i2o.weight", O, I + H, k))
        if s["bias"]:
            out.append(("i2o.bias", O, None, k))
        return out
    G = {"lstm": 4, "gru": 3}.get(s["cell"], 1)
    pre = "rnn." if O else ""
    k = 1 / math.sqrt(H)
    for l in range(s["num_layers"]):
        out.append(("%sweight_ih_l%d" % (pre, l), G * H, hout if l else I, k))
        out.append(("%sweight_hh_l%d" % (pre, l), G * H, hout, k))
        if s["bias"]:
            out.append(("%sbias_ih_l%d" % (pre, l), G * H, None, k))
            out.append(("%sbias_hh_l%d" % (pre, l), G * H, None, k))
        if P:
            out.append(("%sweight_hr_l%d" % (pre, l), P, H, k))
    if O:
        out.append(("fc.weight", O, hout, 1 / math.sqrt(hout)))
        if s["bias"]:
            out.append(("fc.bias", O, None, 1 / math.sqrt(hout)))
    return out


def splitmix64(state):
    """(new state, value): the generator of README "Training"."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def init_tensors(spec):
    """[(name, shape, float32 values)] as rnn_init(spec) draws them."""
    state = full_spec(spec)["seed"]
    out = []
    for name, rows, cols, k in tensors(spec):
        vals = []
        for _ in range(rows * (cols or 1)):
            state, v = splitmix64(state)
            u = (v >> 40) * 2.0 ** -24
            vals.append(f32((2 * u - 1) * k))
        out.append((name, [rows] if cols is None else [rows, cols], vals))
    return out


def init_blob(spec):
    """The bytes rnn_init(spec) returns, written by this reimplementation (safetensors, ext/params.c rule 4)."""
    s = full_spec(spec)
    md = '"cell":"%s"' % s["cell"]
    if s["output_activation"] != "none":
        md += ',"output_activation":"%s"' % s["output_activation"]
    if s["cell"] == "seed":
        md += ',"hidden_activation":"%s"' % s["hidden_activation"]
    head, data, off = '{"__metadata__":{%s}' % md, b"", 0
    for name, shape, vals in init_tensors(spec):
        raw = struct.pack("<%df" % len(vals), *vals)
        head += ',"%s":{"dtype":"F32","shape":[%s],"data_offsets":[%d,%d]}' % (
            name, ",".join(map(str, shape)), off, off + len(raw))
        off += len(raw)
        data += raw
    head += "}"
    head += " " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head.encode() + data


def state_floats(spec):
    s = full_spec(spec)
    H, L = s["hidden_size"], s["num_layers"]
    hout = s["proj_size"] or H
    return L * hout + (L * H if s["cell"] == "lstm" else 0)


def out_width(spec):
    s = full_spec(spec)
    return s["output_size"] or s["proj_size"] or s["hidden_size"]


def r9(v):
    return float("%.9g" % v)


def random_batch(rng, spec, loss, target, h0):
    """A batch in rnn_grad_internal's format, values rounded to float32."""
    s = full_spec(spec)
    B, T = rng.randint(1, 3), rng.randint(1, 5)
    lens = [rng.randint(1, T) for _ in range(B)]
    lens[rng.randrange(B)] = T
    I, O = s["input_size"], out_width(spec)
    b = {"T": T, "len": lens, "target": target, "loss": loss,
         "x": [r9(f32(rng.uniform(-2, 2))) for _ in range(B * T * I)]}
    per = B if target == "last" else B * T
    if loss == "cross_entropy":
        b["label"] = [rng.randrange(O) if rng.random() > 0.15 else -1 for _ in range(per)]
        if all(v < 0 for v in b["label"]):
            b["label"][0] = 0
    else:
        b["y"] = [r9(f32(rng.uniform(-1, 1))) for _ in range(per * O)]
    if h0:
        b["h0"] = [r9(f32(rng.uniform(-0.8, 0.8))) for _ in range(B * state_floats(spec))]
    return b


def random_cases(seed, n):
    """n (name, spec, batch) covering every cell, 1-3 layers, proj_size, bias, head, activation, loss, target."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        cell = CELLS[i % len(CELLS)]
        spec = {"cell": cell, "input_size": rng.randint(1, 3), "hidden_size": rng.randint(2, 5),
                "seed": rng.randrange(1 << 40)}
        if cell != "seed":
            spec["num_layers"] = 1 + (i // len(CELLS)) % 3
            if cell == "lstm" and rng.random() < 0.5:
                spec["proj_size"] = rng.randint(1, spec["hidden_size"] - 1)
        if rng.random() < 0.3:
            spec["bias"] = False
        if cell == "seed" or rng.random() < 0.6:
            spec["output_size"] = rng.randint(1, 4)
        loss = "cross_entropy" if rng.random() < 0.35 else "mse"
        if loss == "mse":
            spec["output_activation"] = OUT_ACTS[(i // 2) % len(OUT_ACTS)]
        if cell == "seed":
            spec["hidden_activation"] = HIDDEN_ACTS[(i // len(CELLS)) % len(HIDDEN_ACTS)]
        target = "last" if rng.random() < 0.4 else "step"
        batch = random_batch(rng, spec, loss, target, h0=rng.random() < 0.6)
        name = "%02d_%s_l%d%s%s_%s_%s_%s" % (i, cell, spec.get("num_layers", 1),
                                            "_p%d" % spec["proj_size"] if spec.get("proj_size") else "",
                                            "" if spec.get("bias", True) else "_nobias",
                                            "head%d" % spec.get("output_size", 0),
                                            loss if loss == "mse" else "ce", target)
        if loss == "mse":
            name += "_" + spec["output_activation"]
        cases.append((name, spec, batch))
    return cases


# ---- torch side (only the generator and the live test import torch) ----

def torch_reference(spec, batch, dtype=None):
    """(loss, {name: grad list}, hT list) by torch autograd over the model rnn_init(spec) builds."""
    import torch
    dtype = dtype or torch.float32
    s = full_spec(spec)
    params = {name: torch.tensor(vals, dtype=dtype).reshape(shape).requires_grad_(True)
              for name, shape, vals in init_tensors(spec)}
    if s["cell"] != "seed":
        m = _module(s, dtype)
        pre = "rnn." if s["output_size"] else ""
        for n, prm in m.named_parameters():  # the module's own parameters are the leaves whose grads are read
            params[pre + n] = prm
        params["module"] = m
    B, T, I, O = len(batch["len"]), batch["T"], s["input_size"], out_width(spec)
    x = torch.tensor(batch["x"], dtype=dtype).reshape(B, T, I)
    per = state_floats(spec)
    h0 = torch.tensor(batch["h0"], dtype=dtype).reshape(B, per) if "h0" in batch else torch.zeros(B, per, dtype=dtype)
    total, count, hT = 0, 0, []
    for b in range(B):
        n = batch["len"][b]
        z, state = _forward(s, params, x[b, :n], h0[b])
        hT.append(state)
        steps = [n - 1] if batch["target"] == "last" else range(n)
        for t in steps:
            at = b if batch["target"] == "last" else b * T + t
            if batch["loss"] == "cross_entropy":
                lab = batch["label"][at]
                if lab >= 0:
                    total = total + torch.nn.functional.cross_entropy(z[t:t + 1], torch.tensor([lab]),
                                                                      reduction="sum")
                    count += 1
            else:
                y = torch.tensor(batch["y"][at * O:(at + 1) * O], dtype=dtype)
                total = total + ((_act(s["output_activation"], z[t]) - y) ** 2).sum()
                count += O
    loss = total / count
    loss.backward()
    params.pop("module", None)
    grads = {name: p.grad.reshape(-1).tolist() if p.grad is not None else [0.0] * p.numel()
             for name, p in params.items()}
    return float(loss), grads, torch.cat(hT).tolist()


def _act(name, v):
    import torch
    return {"none": lambda a: a, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
            "softmax": lambda a: torch.softmax(a, -1), "log_softmax": lambda a: torch.log_softmax(a, -1)}[name](v)


def _forward(s, params, x, h0):
    """(z [n, O] pre-activation outputs, final state) of one sequence x [n, I] from state h0."""
    import torch
    H, L, P = s["hidden_size"], s["num_layers"], s["proj_size"]
    hout = P or H
    if s["cell"] == "seed":
        lin = torch.nn.functional.linear
        h, zs = h0[:H], []
        for t in range(x.shape[0]):
            xh = torch.cat([x[t], h])
            zs.append(lin(xh, params["i2o.weight"], params.get("i2o.bias")))
            h = _act(s["hidden_activation"], lin(xh, params["i2h.weight"], params.get("i2h.bias")))
        return torch.stack(zs), h
    out, state = params["module"](x.unsqueeze(0), _h0(s, h0))
    if s["cell"] == "lstm":
        final = torch.cat([state[0].reshape(-1), state[1].reshape(-1)])
    else:
        final = state.reshape(-1)
    z = out[0]
    if s["output_size"]:
        z = torch.nn.functional.linear(z, params["fc.weight"], params.get("fc.bias"))
    assert final.numel() == L * hout + (L * H if s["cell"] == "lstm" else 0)
    return z, final


def _module(s, dtype):
    """The nn.RNN/LSTM/GRU of spec s, built once per spec and dtype, its weights set from init_tensors."""
    import torch
    if True:
        H, L, P = s["hidden_size"], s["num_layers"], s["proj_size"]
        mode = {"rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
        kw = {"nonlinearity": "relu" if s["cell"] == "rnn_relu" else "tanh"} if s["cell"].startswith("rnn") else {}
        if P:
            kw["proj_size"] = P
        m = mode[s["cell"]](s["input_size"], H, num_layers=L, bias=s["bias"], batch_first=True, **kw).to(dtype)
        pre = "rnn." if s["output_size"] else ""
        vals = {name: (shape, v) for name, shape, v in init_tensors(s)}
        with torch.no_grad():
            for n, prm in m.named_parameters():
                shape, v = vals[pre + n]
                prm.copy_(torch.tensor(v, dtype=dtype).reshape(shape))
        return m


def _h0(s, h0):
    H, L = s["hidden_size"], s["num_layers"]
    hout = s["proj_size"] or H
    h = h0[:L * hout].reshape(L, 1, hout)
    if s["cell"] == "lstm":
        return (h, h0[L * hout:].reshape(L, 1, H))
    return h


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "fixtures", "grad", "cases.json"))
    args = ap.parse_args()
    import torch
    records = []
    for name, spec, batch in random_cases(20261203, 90):
        loss, grads, hT = torch_reference(spec, batch)
        grads64 = torch_reference(spec, batch, torch.float64)[1]
        records.append({"name": name, "spec": spec, "batch": batch, "loss": r9(loss),
                        "grad": {k: [r9(v) for v in g] for k, g in grads.items()},
                        "grad64": {k: [r9(v) for v in g] for k, g in grads64.items()}, "hT": [r9(v) for v in hT]})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(records, f, separators=(",", ":"))
        f.write("\n")
    print("wrote %d cases to %s" % (len(records), args.out))


if __name__ == "__main__":
    main()
