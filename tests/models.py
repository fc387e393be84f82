"""Small random models built without torch (st.dumps), for tests that need many shapes fast."""
import random

import st


def _rand(rng, n, scale=0.5):
    return [rng.uniform(-scale, scale) for _ in range(n)]


def recurrent(cell, I, H, layers=1, head=None, bias=True, seed=1, prefix="", head_prefix="fc.",
              proj=0, bidirectional=False, metadata=None, dtype="F32", scale=0.5):
    """safetensors bytes of an nn.RNN/LSTM/GRU state_dict (+ optional Linear head of `head` outputs)."""
    rng = random.Random(seed)
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[cell]
    hout = proj or H
    dirs = 2 if bidirectional else 1
    t = {}
    for k in range(layers):
        for sfx in ([""] if dirs == 1 else ["", "_reverse"]):
            inp = I if k == 0 else hout * dirs
            t["%sweight_ih_l%d%s" % (prefix, k, sfx)] = (dtype, [G * H, inp], _rand(rng, G * H * inp, scale))
            t["%sweight_hh_l%d%s" % (prefix, k, sfx)] = (dtype, [G * H, hout], _rand(rng, G * H * hout, scale))
            if bias:
                t["%sbias_ih_l%d%s" % (prefix, k, sfx)] = (dtype, [G * H], _rand(rng, G * H))
                t["%sbias_hh_l%d%s" % (prefix, k, sfx)] = (dtype, [G * H], _rand(rng, G * H))
            if proj:
                t["%sweight_hr_l%d%s" % (prefix, k, sfx)] = (dtype, [proj, H], _rand(rng, proj * H))
    if head:
        t[head_prefix + "weight"] = (dtype, [head, hout * dirs], _rand(rng, head * hout * dirs))
        if bias:
            t[head_prefix + "bias"] = (dtype, [head], _rand(rng, head))
    md = dict(metadata or {})
    if cell == "rnn_relu":
        md["cell"] = "rnn_relu"
    return st.dumps(t, md or None)


def seed_rnn(I, H, O, seed=1, bias=True, metadata=None):
    """The tutorial RNN: i2h [H, I+H], i2o [O, I+H]."""
    rng = random.Random(seed)
    t = {"i2h.weight": ("F32", [H, I + H], _rand(rng, H * (I + H))),
         "i2o.weight": ("F32", [O, I + H], _rand(rng, O * (I + H)))}
    if bias:
        t["i2h.bias"] = ("F32", [H], _rand(rng, H))
        t["i2o.bias"] = ("F32", [O], _rand(rng, O))
    return st.dumps(t, metadata)


def registry(con, **models):
    """Create rnn_models and insert name=blob pairs."""
    con.execute("CREATE TABLE IF NOT EXISTS rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
    for name, blob in models.items():
        con.execute("INSERT OR REPLACE INTO rnn_models VALUES (?, ?)", (name, blob))
