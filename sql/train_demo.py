#!/usr/bin/python3
"""Train the model of `make demo` and export it to sql/demo_model.safetensors.

What it does:
  1. Regenerates, in Python, the simulated server-room temperatures of sql/demo.sql: the same 8 sensors, the
     same formula, the same noise generator (an LCG), so that with the demo's seed it gives exactly the
     readings that sql/demo.sql inserts (checked below against section 1 of demo.sql run in Python's sqlite3).
  2. Trains, on 12 other simulated months (other seeds, sensors' offsets, swings, lags, drifts and noise
     jittered around the demo's), a GRU(1 -> 16) with a Linear(16 -> 1) head to predict the next reading
     from the readings so far. Readings are standardised: x' = (x - mean) / std; the model predicts the
     standardised next reading, and the metadata input_mean/input_std/output_mean/output_std let
     sqlite-rnn standardise inputs and de-standardise outputs itself. Validation: the demo's own month
     without its faults, which training never sees. Fixed seeds, CPU, about a minute on 2 cores.
  3. Exports the state_dict (rnn.weight_ih_l0, ..., fc.weight, fc.bias; float32) as safetensors, with a
     small writer of its own (no safetensors package needed), then reads the file back and runs the GRU
     equations step by step in torch on those weights, to check the exported bytes.
  4. Runs that forward over the demo's data (faults included) and writes tests/fixtures/demo_expected.json:
     a few predictions and the 10 most surprising readings, for tests/test_demo.py where torch is absent.

Re-run from the repository root:   /usr/bin/python3 sql/train_demo.py
(needs torch and numpy; it rewrites sql/demo_model.safetensors and tests/fixtures/demo_expected.json).
After a change to demo.sql's faults only, `/usr/bin/python3 sql/train_demo.py --fixture-only` keeps the
model and rewrites the fixture.
tests/test_demo.py imports this file for its data generator and its reference forward: torch is imported
only inside the functions that need it.
"""
import json
import os
import re
import sqlite3
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEMO_SQL = os.path.join(HERE, "demo.sql")
MODEL_PATH = os.path.join(HERE, "demo_model.safetensors")
FIXTURE_PATH = os.path.join(ROOT, "tests", "fixtures", "demo_expected.json")

# ---------------------------------------------------------------------------------------------------------
# The data: the same generator as section 1 of sql/demo.sql.

T0 = 1709251200            # 2024-03-01 00:00 UTC
STEP_SECONDS = 600         # one reading every 10 minutes
STEPS = 4320               # 30 days
DEMO_SEED = 20240301
# (device, base C, daily swing C, drift over the month C, lag minutes, noise C): as in demo.sql
SENSORS = [
    ("cold-a1", 18.5, 1.25, 0.5, 0, 0.25),
    ("cold-a2", 19.0, 1.5, -0.25, 20, 0.25),
    ("cold-b1", 18.0, 1.0, 0.75, 40, 0.3125),
    ("cold-b2", 19.5, 1.75, 0.0, 10, 0.25),
    ("hot-a1", 29.0, 3.0, 1.0, 60, 0.375),
    ("hot-a2", 30.5, 3.5, 0.5, 50, 0.375),
    ("hot-b1", 28.0, 2.5, -0.5, 90, 0.375),
    ("hot-b2", 31.0, 4.0, 0.75, 70, 0.5),
]


def lcg(r):
    return (r * 1103515245 + 12345) % 2147483648


def generate(seed=DEMO_SEED, sensors=SENSORS, steps=STEPS):
    """{device: [temp at k = 0 .. steps-1]}, term for term the expression of sql/demo.sql (faults not included)."""
    out = {}
    r1, r2 = seed, lcg(seed)
    for device, base, amp, drift, lag, noise in sensors:
        temps = []
        for k in range(steps):
            u = (2 * ((10 * k + 1260 - lag) % 1440) - 1440) / 1440.0
            x = (base + amp * (1.0 - u * u) * (1.0 - u * u) + drift * (k / steps)
                 + noise * ((r1 + r2) / 2147483648.0 - 1.0))
            temps.append(int(x * 16 + 0.5) / 16.0)
            r1 = lcg(r2)
            r2 = lcg(r1)
        out[device] = temps
    return out


def demo_sections(path=DEMO_SQL):
    """{section number: SQL text} of demo.sql, without the sqlite3 shell's dot-command lines."""
    sections, cur = {}, 0
    for line in open(path, encoding="utf-8"):
        m = re.match(r"-- == (\d+)\.", line)
        if m:
            cur = int(m.group(1))
        if line.startswith("."):
            continue
        sections.setdefault(cur, []).append(line)
    return {k: "".join(v) for k, v in sections.items()}


def add_readfile(con, root=ROOT):
    """The sqlite3 shell's readfile(), relative to the repository root, for Python connections."""
    def readfile(p):
        with open(os.path.join(root, p), "rb") as f:
            return f.read()
    con.create_function("readfile", 1, readfile)


def demo_data(con=None):
    """Runs section 1 of demo.sql (no extension needed); returns the connection and {device: [(t, temp)]}."""
    if con is None:
        con = sqlite3.connect(":memory:", isolation_level=None)
    con.executescript(demo_sections()[1])
    series = {}
    for device, t, temp in con.execute("SELECT device, t, temp FROM readings ORDER BY device, t"):
        series.setdefault(device, []).append((t, temp))
    return con, series


# ---------------------------------------------------------------------------------------------------------
# safetensors, written and read by hand.

def save_safetensors(path, tensors, metadata):
    """tensors: list of (name, float32 numpy array), written in that order."""
    import numpy as np
    header, blobs, offset = {}, [], 0
    for name, arr in tensors:
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load_safetensors(path):
    """({name: float32 numpy array}, metadata) of an F32 safetensors file."""
    import numpy as np
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, h in header.items():
        assert h["dtype"] == "F32", (name, h)
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(h["shape"]).copy()
    return out, meta


# ---------------------------------------------------------------------------------------------------------
# The model and its reference forward.

def make_model(hidden=16):
    import torch.nn as nn

    class NextReading(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(1, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, 1)

        def forward(self, x, h=None):
            y, h = self.rnn(x, h)
            return self.fc(y), h

    return NextReading()


def blob_forward(path, series):
    """Runs the exported model step by step with the GRU equations, in torch float32, as sqlite-rnn must:
    series is a list of sequences of readings (degrees); returns, per sequence, the de-standardised output
    after each reading, i.e. the forecast of the next reading."""
    import torch
    w, meta = load_safetensors(path)
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    in_mean, in_std = json.loads(meta["input_mean"])[0], json.loads(meta["input_std"])[0]
    out_mean, out_std = json.loads(meta["output_mean"])[0], json.loads(meta["output_std"])[0]
    H = t["rnn.weight_hh_l0"].shape[1]
    Wir, Wiz, Win = t["rnn.weight_ih_l0"].split(H)
    Whr, Whz, Whn = t["rnn.weight_hh_l0"].split(H)
    bir, biz, bin_ = t["rnn.bias_ih_l0"].split(H)
    bhr, bhz, bhn = t["rnn.bias_hh_l0"].split(H)
    x_all = torch.tensor(series, dtype=torch.float32)           # [B, T]
    x_all = (x_all - in_mean) / in_std
    h = torch.zeros(x_all.shape[0], H)
    outs = []
    with torch.no_grad():
        for k in range(x_all.shape[1]):
            x = x_all[:, k:k + 1]                                # [B, 1]
            r = torch.sigmoid(x @ Wir.T + bir + h @ Whr.T + bhr)
            z = torch.sigmoid(x @ Wiz.T + biz + h @ Whz.T + bhz)
            n = torch.tanh(x @ Win.T + bin_ + r * (h @ Whn.T + bhn))
            h = (1 - z) * n + z * h
            outs.append((h @ t["fc.weight"].T + t["fc.bias"])[:, 0] * out_std + out_mean)
    return torch.stack(outs, 1).tolist()


def torch_forward(path, series):
    """The same as blob_forward with torch's own nn.GRU (fast: used by tests/test_demo.py)."""
    import torch
    w, meta = load_safetensors(path)
    model = make_model(w["rnn.weight_hh_l0"].shape[1])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    in_mean, in_std = json.loads(meta["input_mean"])[0], json.loads(meta["input_std"])[0]
    out_mean, out_std = json.loads(meta["output_mean"])[0], json.loads(meta["output_std"])[0]
    with torch.no_grad():
        x = (torch.tensor(series, dtype=torch.float32) - in_mean) / in_std
        y, _ = model(x.unsqueeze(-1))
        return (y[..., 0] * out_std + out_mean).tolist()


# ---------------------------------------------------------------------------------------------------------
# Training.

def training_months(n_months, rng):
    """n_months simulated months of the 8 sensors, each with its own seed and jittered sensors."""
    seqs = []
    for i in range(n_months):
        sensors = []
        for device, base, amp, drift, lag, noise in SENSORS:
            sensors.append((device,
                            base + rng.uniform(-3.0, 3.0),
                            amp * rng.uniform(0.6, 1.5),
                            rng.uniform(-1.5, 1.5),
                            int(rng.integers(0, 13)) * 10,
                            noise * rng.uniform(0.7, 1.4)))
        seqs += list(generate(seed=1000 + i, sensors=sensors).values())
    return seqs


def train(months=12, hidden=16, epochs=50, chunk=144, warm_len=36, warm_batch=128, seed=0):
    import numpy as np
    import torch
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)

    train_seqs = training_months(months, rng)
    val_seqs = list(generate().values())                      # the demo month, without its faults
    arr = np.array(train_seqs)
    mean = round(float(arr.mean()) * 4) / 4                    # multiples of 1/4: exact in any float format
    std = round(float(arr.std()) * 4) / 4
    print("train: %d sequences x %d readings; val: %d x %d; standardise with mean %g, std %g"
          % (len(train_seqs), STEPS, len(val_seqs), STEPS, mean, std))

    X = (torch.tensor(train_seqs, dtype=torch.float32) - mean) / std
    V = (torch.tensor(val_seqs, dtype=torch.float32) - mean) / std
    model = make_model(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * ((STEPS - 1) // chunk + 1))

    def mse_deg(seqs):
        with torch.no_grad():
            y, _ = model(seqs[:, :-1].unsqueeze(-1))
            return float(((y[..., 0] - seqs[:, 1:]) ** 2).mean()) * std * std

    t0 = time.time()
    for epoch in range(epochs):
        # truncated backpropagation through time: each month start to end in chunks of a day, the state
        # carried over (detached), as the window query runs it from the sensor's first reading
        perm = torch.randperm(X.shape[0])
        Xe = X[perm]
        h = None
        for a in range(0, STEPS - 1, chunk):
            b = min(a + chunk, STEPS - 1)
            y, h = model(Xe[:, a:b].unsqueeze(-1), h)
            h = h.detach()
            loss = ((y[..., 0] - Xe[:, a + 1:b + 1]) ** 2).mean()
            # plus short windows from a zero state at random places: a month has only one first reading,
            # and without these the first forecasts of every sensor are poor (and look like anomalies)
            rows = torch.randint(0, X.shape[0], (warm_batch,))
            starts = torch.randint(0, STEPS - warm_len, (warm_batch,))
            W = X[rows.unsqueeze(1), starts.unsqueeze(1) + torch.arange(warm_len + 1)]
            yw, _ = model(W[:, :-1].unsqueeze(-1))
            loss = loss + ((yw[..., 0] - W[:, 1:]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        if epoch % 10 == 9 or epoch == epochs - 1:
            print("epoch %3d  train MSE %.4f C^2  val MSE %.4f C^2  (%.0f s)"
                  % (epoch + 1, mse_deg(X), mse_deg(V), time.time() - t0))
    return model, mean, std, mse_deg(X), mse_deg(V)


def main():
    import numpy as np

    # 1. Python's generator gives exactly the demo's readings, faults aside.
    con, demo = demo_data()
    faults = con.execute("SELECT device, t_from, t_to, what FROM faults").fetchall()
    gen = generate()
    differ = 0
    for device, rows in demo.items():
        for k, (t, temp) in enumerate(rows):
            assert t == T0 + STEP_SECONDS * k
            in_fault = any(device == d and a <= t <= b for d, a, b, _ in faults)
            differ += (temp != gen[device][k])
            assert in_fault or temp == gen[device][k], (device, t, temp, gen[device][k])
    print("sql/demo.sql section 1: %d readings, %d sensors; Python's generator matches it except the %d "
          "faulty readings" % (sum(len(r) for r in demo.values()), len(demo), differ))

    # 2. Train.
    model, mean, std, train_mse, val_mse = train()

    # 3. Export, read back, check.
    sd = model.state_dict()
    metadata = {
        "description": "Server-room temperature, one reading every 10 minutes: forecasts the next reading "
                       "(degrees C) from the readings so far. GRU(1->16) + Linear(16->1), trained by "
                       "sql/train_demo.py on simulated months; the model of `make demo`.",
        "input_mean": json.dumps([mean]), "input_std": json.dumps([std]),
        "output_mean": json.dumps([mean]), "output_std": json.dumps([std]),
    }
    save_safetensors(MODEL_PATH, [(k, v.detach().numpy().astype(np.float32)) for k, v in sd.items()], metadata)
    print("wrote %s: %d bytes, %d parameters" % (os.path.relpath(MODEL_PATH, ROOT), os.path.getsize(MODEL_PATH),
                                                  sum(v.numel() for v in sd.values())))

    val = list(generate().values())
    stepwise = blob_forward(MODEL_PATH, val)
    fused = torch_forward(MODEL_PATH, val)
    diff = max(abs(a - b) for sa, sb in zip(stepwise, fused) for a, b in zip(sa, sb))
    mse = np.mean([(p - x) ** 2 for s, ps in zip(val, stepwise) for p, x in zip(ps[:-1], s[1:])])
    print("exported blob, step by step: val MSE %.4f C^2 (RMSE %.3f C); max |step-by-step - nn.GRU| = %.2g"
          % (mse, mse ** 0.5, diff))

    # 4. The demo month with its faults: surprises and the fixture.
    write_fixture(demo, faults)
    print("final: train MSE %.4f C^2, val MSE %.4f C^2" % (train_mse, val_mse))


def write_fixture(demo=None, faults=None):
    """Scores the demo month (faults included) with the exported model, prints the top surprises and
    writes tests/fixtures/demo_expected.json."""
    import hashlib
    if demo is None:
        con, demo = demo_data()
        faults = con.execute("SELECT device, t_from, t_to, what FROM faults").fetchall()
    devices = sorted(demo)
    series = [[temp for _, temp in demo[d]] for d in devices]
    preds = blob_forward(MODEL_PATH, series)
    scored = []                                                 # (error, device, t, temp, predicted)
    for d, s, p in zip(devices, series, preds):
        for k in range(1, STEPS):
            scored.append((abs(s[k] - p[k - 1]), d, T0 + STEP_SECONDS * k, s[k], p[k - 1]))
    scored.sort(reverse=True)
    mae = sum(e for e, *_ in scored) / len(scored)
    print("demo month: mean error %.3f C; the 12 most surprising readings:" % mae)
    for e, d, t, temp, p in scored[:12]:
        label = [w for dd, a, b, w in faults if dd == d and a <= t <= b + 3600]
        print("  %-8s %s  %8.4f  predicted %8.4f  error %.4f  %s"
              % (d, time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)), temp, p, e, label[0] if label else ""))

    picks = {0, 1, 2, 143, 144, 1000, 2500, STEPS - 1}
    expected = {
        "about": "written by sql/train_demo.py: the demo month of sql/demo.sql scored by the exported model "
                 "with torch (step-by-step GRU equations, float32). next_temp is rnn_predict at (device, t): "
                 "the forecast of the reading at t + 600.",
        "model_sha256": hashlib.sha256(open(MODEL_PATH, "rb").read()).hexdigest(),
        "rows": sum(len(s) for s in series), "sensors": len(devices),
        "mean_error": mae,
        "next_temp": [],
        "top10": [{"device": d, "t": t, "temp": temp, "predicted": p, "error": e}
                  for e, d, t, temp, p in scored[:10]],
    }
    fault_ks = set()
    for d, a, b, _ in faults:
        fault_ks.update({(d, (a - T0) // STEP_SECONDS + i) for i in (-1, 0, 1)})
    for d, s, p in zip(devices, series, preds):
        for k in sorted(picks | {k for dd, k in fault_ks if dd == d and 0 <= k < STEPS}):
            expected["next_temp"].append({"device": d, "t": T0 + STEP_SECONDS * k, "temp": s[k],
                                          "next_temp": p[k]})
    os.makedirs(os.path.dirname(FIXTURE_PATH), exist_ok=True)
    with open(FIXTURE_PATH, "w") as f:                          # JSON, one record a line
        f.write("{\n" + ",\n".join(
            "%s: %s" % (json.dumps(k), "[\n  " + ",\n  ".join(json.dumps(r) for r in v) + "\n]"
                        if isinstance(v, list) else json.dumps(v))
            for k, v in expected.items()) + "\n}\n")
    print("wrote %s: %d predictions" % (os.path.relpath(FIXTURE_PATH, ROOT), len(expected["next_temp"])))


if __name__ == "__main__":
    if sys.argv[1:] == ["--fixture-only"]:      # keep the committed model, rewrite the fixture
        write_fixture()
    elif sys.argv[1:]:
        sys.exit("usage: /usr/bin/python3 sql/train_demo.py [--fixture-only]")
    else:
        main()
