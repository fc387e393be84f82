"""sqlite_rnn: export PyTorch RNNs for sqlite-rnn and load the extension into Python's sqlite3.

One file, standard library only; torch (numpy, pandas) is imported only when a function is handed its objects.
Run it with Debian's /usr/bin/python3: its sqlite3 can load extensions, and torch is installed for it.

    import sqlite3, torch, sqlite_rnn
    con = sqlite3.connect("sensors.db")
    sqlite_rnn.load(con)                                  # finds and loads rnn.so
    net = MyNet()                                         # e.g. self.rnn = nn.GRU(...), self.fc = nn.Linear(...)
    sqlite_rnn.save(con, "room_temp", net, input_mean=[21.5], input_std=[3.0], check_input=x)
    con.execute("SELECT rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t) FROM readings")

to_blob(module, head=None, readout=None, extra=None, **metadata) -> bytes
    The safetensors BLOB sqlite-rnn reads, from
      - an nn.RNN, nn.LSTM or nn.GRU, with an optional nn.Linear `head` (stored as `rnn.*` and `fc.*`);
      - a module of yours holding one of them and at most one nn.Linear (e.g. self.rnn and self.fc, at any
        depth): exported under its own state_dict names, so nothing is renamed by hand;
      - the RNN of the PyTorch tutorial (children i2h and i2o, both nn.Linear): exported with cell=seed, and
        output_activation=log_softmax (softmax) when it holds an nn.LogSoftmax (nn.Softmax), as the
        tutorial's forward applies it.
    Tensors keep their dtype (float32, float16, bfloat16, float64: call .half() first to export F16).
    readout: 'last_output' (forward computes fc(output[:, -1])) or 'final_states' (fc(torch.cat((h_n[-2],
    h_n[-1]), 1))), stored as metadata `readout`; required for a bidirectional model, where they differ.
    metadata: only the __metadata__ keys sqlite-rnn reads (KNOWN_KEYS: cell, output_activation, input_mean,
    vocab, labels, ...); another key is a ValueError ("did you mean"); keys of your own go under extra={...}.
    Strings are stored as they are; lists, dicts and numbers JSON-encoded (input_mean=[21.5] -> "[21.5]");
    numpy arrays, torch tensors and pandas objects through .tolist(), numpy scalars as numbers; a bare number
    for input_mean, input_std, output_mean or output_std means a one-element list; None means absent; any
    other object is a TypeError, NaN or infinity a ValueError.
    `cell` is set from the module (rnn_relu for nonlinearity='relu'); a different `cell` given is an error.
    Raises ValueError for a module sqlite-rnn could not run, naming what is wrong and what to do: no
    recurrent layer, two heads, an embedding or other parameters the model would not use; chained
    RNN/LSTM/GRU modules (merge_layers() when they are one layer stack); nn.LSTMCell/GRUCell/RNNCell loops
    (the nn.LSTM/GRU/RNN and load_state_dict that hold the same tensors); TorchScript modules.

save(conn, name, module, head=None, readout=None, extra=None, check_input=None, **metadata) -> bytes
    Upserts to_blob(...) (or `module` itself when it is already bytes) as row `name` of rnn_models, creating
    the table if it does not exist (other columns of an existing row are kept). Before writing, the BLOB is
    loaded by the extension (rnn_info, through conn or a private :memory: connection): a refusal is a
    ValueError with the extension's message. With check_input=x (raw inputs, shaped as the module takes
    them), module(x) in torch (float32 copy, eval mode, no grad, inputs standardised and outputs scaled by the
    metadata as SQL does) is compared with rnn_eval of the stored model on each sequence; beyond
    CHECK_TOLERANCE * max(1, |torch|, output_std) it is a ValueError naming the likely cause. All writes are
    in a savepoint: a refusal leaves nothing written. Commits, unless the connection was already inside a
    transaction (then committing is the caller's business).

sequence(values) -> bytes
    The float32 little-endian BLOB of one sequence: a list (one feature per step), nested lists (steps x
    features), a numpy array of any numeric dtype, a torch tensor, a pandas Series/DataFrame. ValueError for
    NaN, infinities, values outside float32 range, ragged or empty rows, more than 2 dimensions.

merge_layers(*rnns) -> nn.RNN/nn.LSTM/nn.GRU
    The single layer stack equal to rnns applied in turn (rnn2(rnn1(x)[0])[0]), or ValueError.

load(conn, path=None) -> str
    Loads the extension into a sqlite3 connection and returns the file loaded. Without `path` it looks in
    $SQLITE_RNN_PATH, next to this file, in the repository root (when this file is python/sqlite_rnn.py of
    a checkout), and where `make install` puts it (<prefix>/lib/sqlite-rnn/, found relative to this file's
    <prefix>/lib/python3.N/dist-packages/, then /usr/local and /usr). Extension loading is switched off again
    afterwards. A Python whose sqlite3 was built without extension loading gets a RuntimeError that says
    which Python to use instead.

dumps(tensors, metadata=None) -> bytes / loads(blob) -> (tensors, metadata)
    A plain safetensors writer and reader. `tensors` maps a name to a torch tensor or to a tuple
    (dtype, shape, data) with dtype "F32", "F16", "BF16" or "F64" and data a flat sequence of numbers (rounded
    to the dtype, to nearest even) or raw little-endian bytes. loads() returns {name: (dtype, shape, floats)}
    and the metadata dict ({} when absent), and raises ValueError on a malformed blob.
"""
import array
import difflib
import json
import math
import os
import sqlite3
import struct
import sys

__all__ = ["to_blob", "save", "sequence", "merge_layers", "load", "dumps", "loads"]

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
VECTOR_KEYS = ("input_mean", "input_std", "output_mean", "output_std")
# the __metadata__ keys the extension reads; any other key is the user's and goes under extra=
KNOWN_KEYS = ("cell", "recurrent_prefix", "head_prefix", "output_activation", "hidden_activation") + VECTOR_KEYS + (
    "vocab", "unknown_token", "labels", "output_names", "description", "readout")
CHECK_TOLERANCE = 2e-5   # save(check_input=): |SQLite - torch| <= CHECK_TOLERANCE * max(1, |torch|, output_std)
_CELLS = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}


# ---------------------------------------------------------------------------------------------------------
# safetensors

def _encode(dtype, values):
    """Little-endian bytes of a flat list of numbers in dtype."""
    if dtype == "F32":
        a = array.array("f", values)
    elif dtype == "F64":
        a = array.array("d", values)
    elif dtype == "F16":
        return struct.pack("<%de" % len(values), *values)
    elif dtype == "BF16":
        a = array.array("H", map(_bf16_bits, values))
    else:
        raise ValueError("unsupported dtype %r: use F32, F16, BF16 or F64" % (dtype,))
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


def _bf16_bits(v):
    """The bfloat16 nearest to v: the float32's upper half, rounded to nearest even; NaN stays NaN."""
    b = struct.unpack("<I", struct.pack("<f", v))[0]
    if (b & 0x7F800000) == 0x7F800000 and (b & 0x007FFFFF):
        return (b >> 16) | 0x0040
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF


def _decode(dtype, raw):
    if dtype == "F16":
        return list(struct.unpack("<%de" % (len(raw) // 2), raw))
    a = array.array({"F32": "f", "F64": "d", "BF16": "H"}[dtype], raw)
    if sys.byteorder == "big":
        a.byteswap()
    if dtype == "BF16":
        a = array.array("f", struct.pack("<%dI" % len(a), *[b << 16 for b in a]))
        if sys.byteorder == "big":
            a.byteswap()
    return a.tolist()


def _torch_tensor(t):
    """(dtype, shape, raw bytes) of a torch tensor, values exact."""
    import torch
    names = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16"}
    if t.dtype not in names:
        raise ValueError("tensor of dtype %s: sqlite-rnn reads float32, float16, bfloat16 and float64" % t.dtype)
    dtype = names[t.dtype]
    flat = t.detach().cpu().reshape(-1)
    if dtype == "BF16":   # exact in float32; the bf16 bits are its upper half
        values = flat.float().tolist()
        raw = array.array("H", [struct.unpack("<I", struct.pack("<f", v))[0] >> 16 for v in values])
        if sys.byteorder == "big":
            raw.byteswap()
        return dtype, list(t.shape), raw.tobytes()
    return dtype, list(t.shape), _encode(dtype, flat.tolist())


def dumps(tensors, metadata=None):
    """safetensors bytes of {name: torch tensor or (dtype, shape, data)} and metadata {str: str}."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError("safetensors metadata maps strings to strings, got %r: %r" % (k, v))
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name, value in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' cannot name a tensor")
        if isinstance(value, tuple):
            dtype, shape, data = value
            if dtype not in DTYPE_SIZE:
                raise ValueError("tensor %s: unsupported dtype %r: use F32, F16, BF16 or F64" % (name, dtype))
            shape = [int(d) for d in shape]
            raw = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else _encode(dtype, list(data))
            if len(raw) != math.prod(shape) * DTYPE_SIZE[dtype]:
                raise ValueError("tensor %s: shape %r needs %d bytes of %s, got %d"
                                 % (name, shape, math.prod(shape) * DTYPE_SIZE[dtype], dtype, len(raw)))
        else:
            dtype, shape, raw = _torch_tensor(value)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def loads(blob):
    """({name: (dtype, shape, floats)}, metadata) of safetensors bytes; ValueError when malformed."""
    blob = bytes(blob)
    if len(blob) < 8:
        raise ValueError("safetensors: %d bytes, shorter than the 8-byte header length" % len(blob))
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError("safetensors: header length %d exceeds the %d bytes that follow" % (n, len(blob) - 8))
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError("safetensors: header is not JSON: %s" % e) from None
    if not isinstance(header, dict):
        raise ValueError("safetensors: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("safetensors: __metadata__ must map strings to strings")
    data = blob[8 + n:]
    tensors, spans = {}, []
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise ValueError("safetensors: tensor %s needs dtype, shape and data_offsets" % name) from None
        if dtype not in DTYPE_SIZE:
            raise ValueError("safetensors: tensor %s has unsupported dtype %r" % (name, dtype))
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError("safetensors: tensor %s has bad shape %r" % (name, shape))
        size = math.prod(shape) * DTYPE_SIZE[dtype]
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= len(data)
                and end - begin == size):
            raise ValueError("safetensors: tensor %s has data_offsets %r, expected %d bytes within %d"
                             % (name, [begin, end], size, len(data)))
        spans.append((begin, end, name))
        tensors[name] = (dtype, list(shape), _decode(dtype, data[begin:end]))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise ValueError("safetensors: tensor %s starts at %d, expected %d (gap or overlap)" % (name, begin, pos))
        pos = end
    if pos != len(data):
        raise ValueError("safetensors: %d bytes after the last tensor" % (len(data) - pos))
    return tensors, metadata


# ---------------------------------------------------------------------------------------------------------
# metadata

def _jsonable(o):
    """json.dumps' default=: array-likes (numpy, torch, pandas) become lists, numpy scalars numbers."""
    if hasattr(o, "to_numpy"):                  # pandas Series / DataFrame, without importing pandas
        o = o.to_numpy()
    if hasattr(o, "detach") and hasattr(o, "cpu"):   # a torch tensor that requires grad
        o = o.detach().cpu()
    if hasattr(o, "tolist"):                    # numpy arrays and scalars, torch tensors
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError("%s is not a str, number, list or dict (array-likes are converted with .tolist())"
                    % type(o).__name__)


def _meta_value(key, value):
    """The __metadata__ string of one value: str as it is, anything else JSON (TypeError/ValueError)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("metadata %s: bytes are not stored; give a str" % key)
    if not isinstance(value, (int, float, list, tuple, dict)):
        try:
            value = _jsonable(value)
        except TypeError as e:
            raise TypeError("metadata %s: %s" % (key, e)) from None
        if isinstance(value, str):
            return value
    if key in VECTOR_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    try:
        return json.dumps(value, default=_jsonable, allow_nan=False)
    except TypeError as e:
        raise TypeError("metadata %s: %s" % (key, e)) from None
    except ValueError:
        raise ValueError("metadata %s: NaN or infinite values cannot be stored, got %r" % (key, value)) from None


def _metadata(metadata, extra):
    """{key: str} of the known keys given as arguments and the user's keys under extra=."""
    md = {}
    for k, v in metadata.items():
        if k not in KNOWN_KEYS:
            close = difflib.get_close_matches(k, KNOWN_KEYS, n=1, cutoff=0.7)
            hint = ("did you mean %r? " % close[0]) if close else ""
            raise ValueError("unknown metadata key %r: %sknown keys are %s; a key of your own goes under "
                             "extra={%r: ...}" % (k, hint, ", ".join(KNOWN_KEYS), k))
        if v is not None:
            md[k] = _meta_value(k, v)
    if extra is not None:
        if not isinstance(extra, dict):
            raise TypeError("extra must be a dict of your own metadata keys, got %s" % type(extra).__name__)
        for k, v in extra.items():
            if not isinstance(k, str):
                raise TypeError("extra: metadata keys are str, got %r" % (k,))
            if k in KNOWN_KEYS:
                raise ValueError("extra: %r is a key sqlite-rnn reads: pass it as %s=..., not under extra" % (k, k))
            if v is not None:
                md[k] = _meta_value(k, v)
    return md


# ---------------------------------------------------------------------------------------------------------
# export from torch

READOUTS = ("last_output", "final_states")
_READOUT_EXPR = {"last_output": "fc(output[:, -1])", "final_states": "fc(torch.cat((h_n[-2], h_n[-1]), 1))"}
_READOUT_HELP = ("readout='last_output' if forward computes %s (the last step's output: the backward direction "
                 "has then read only the last step), or readout='final_states' if it computes %s (both "
                 "directions' final states); the exporter cannot see forward, and the two give different results"
                 % (_READOUT_EXPR["last_output"], _READOUT_EXPR["final_states"]))


class _Plan:
    """What the exporter found in a module: the tensors, detected metadata, the recurrent layer and head."""
    def __init__(self, state, detected, rnn=None, head=None, seed=None):
        self.state, self.detected, self.rnn, self.head, self.seed = state, detected, rnn, head, seed

    @property
    def bidirectional(self):
        return bool(self.rnn is not None and self.rnn.bidirectional)


def _refuse_torchscript(module):
    import torch
    if isinstance(module, torch.jit.ScriptModule):
        raise ValueError(
            "%s is a TorchScript module (torch.jit.script, torch.jit.trace or torch.jit.load): its forward is "
            "compiled, so the exporter cannot tell its layers. Export the eager module instead: to_blob(net) on "
            "the nn.Module you scripted, or net = YourNet(...); net.load_state_dict(scripted.state_dict()) and "
            "then to_blob(net)" % type(module).__name__)


def _cell_refusal(module, cells):
    """ValueError text for nn.RNNCell/LSTMCell/GRUCell stepped in a loop: how to copy them into one layer."""
    import torch.nn as nn
    name, cell = cells[0]
    kind = {nn.LSTMCell: "LSTM", nn.GRUCell: "GRU"}.get(type(cell), "RNN")
    args = "%d, %d" % (cell.input_size, cell.hidden_size)
    if kind == "RNN" and cell.nonlinearity != "tanh":
        args += ", nonlinearity=%r" % cell.nonlinearity
    if not cell.bias:
        args += ", bias=False"
    ref = "net." + name if name else "net"
    keys = ["'weight_ih_l0': %s.weight_ih" % ref, "'weight_hh_l0': %s.weight_hh" % ref]
    if cell.bias:
        keys += ["'bias_ih_l0': %s.bias_ih" % ref, "'bias_hh_l0': %s.bias_hh" % ref]
    more = ""
    if len(cells) > 1:
        more = (" %s holds %d cells (%s): if each feeds the next, use one nn.%s with num_layers=%d and the k-th "
                "cell's tensors as weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}."
                % (type(module).__name__, len(cells), ", ".join(repr(n) for n, _ in cells), kind, len(cells)))
    return ("%r is an nn.%s, stepped by a loop in forward; sqlite-rnn runs whole layers. An nn.%s with "
            "num_layers=1 holding the same tensors computes the same steps (same gate order): layer = nn.%s(%s); "
            "layer.load_state_dict({%s}); then export a module holding layer (and the head) in place of the "
            "cell, its forward reading the layer's output.%s"
            % (name or type(cell).__name__, type(cell).__name__, kind, kind, args, ", ".join(keys), more))


def _out_width(rnn):
    return (rnn.proj_size or rnn.hidden_size) * (2 if rnn.bidirectional else 1)


def _merge_problem(rnns):
    """None when the nn.RNN/LSTM/GRU in rnns, each feeding the next, are one layer stack; else why not."""
    first = rnns[0]
    for prev, nxt in zip(rnns, rnns[1:]):
        for attr in ("mode", "hidden_size", "bidirectional", "bias", "batch_first", "proj_size"):
            if getattr(nxt, attr, None) != getattr(first, attr, None):
                return "they differ in %s (%r and %r)" % (attr, getattr(first, attr, None), getattr(nxt, attr, None))
        if nxt.input_size != _out_width(prev):
            return ("one's input_size (%d) is not the output width of the one before (%d)"
                    % (nxt.input_size, _out_width(prev)))
    return None


def merge_layers(*rnns):
    """One nn.RNN/nn.LSTM/nn.GRU equivalent to rnns applied in turn (each layer's output fed to the next, as
    rnn2(rnn1(x)[0])[0] does): num_layers is their sum, layer k of the i-th comes after all layers before it.
    Dropout between layers is not kept (it is off in eval mode anyway). ValueError when they do not chain."""
    import torch.nn as nn
    if len(rnns) < 2 or not all(isinstance(r, nn.RNNBase) for r in rnns):
        raise ValueError("merge_layers() takes two or more nn.RNN, nn.LSTM or nn.GRU modules")
    problem = _merge_problem(rnns)
    if problem:
        raise ValueError("merge_layers(): these layers cannot be one stack: %s" % problem)
    first = rnns[0]
    kwargs = dict(num_layers=sum(r.num_layers for r in rnns), bias=first.bias, batch_first=first.batch_first,
                  bidirectional=first.bidirectional)
    if first.mode.startswith("RNN_"):
        kwargs["nonlinearity"] = first.nonlinearity
    if first.proj_size:
        kwargs["proj_size"] = first.proj_size
    p = next(first.parameters())
    merged = type(first)(first.input_size, first.hidden_size, **kwargs).to(device=p.device, dtype=p.dtype)
    state, base = {}, 0
    for r in rnns:
        for k, v in r.state_dict().items():
            name, _, layer = k.partition("_l")
            layer, _, rev = layer.partition("_")
            state["%s_l%d%s" % (name, base + int(layer), "_" + rev if rev else "")] = v
        base += r.num_layers
    merged.load_state_dict(state)
    return merged


def _chain_refusal(module, names, rnns):
    problem = _merge_problem(rnns)
    where = "%s holds %s" % (type(module).__name__, ", ".join(repr(n) for n in names))
    if problem:
        return ("sqlite-rnn runs one nn.RNN, nn.LSTM, nn.GRU or tutorial RNN (i2h/i2o) per model; %s, and "
                "they cannot be merged into one layer stack: %s" % (where, problem))
    first = rnns[0]
    total = sum(r.num_layers for r in rnns)
    return ("sqlite-rnn runs one nn.RNN, nn.LSTM, nn.GRU or tutorial RNN (i2h/i2o) per model; %s. If forward "
            "feeds each one's output straight into the next (in this order, nothing in between), they are one "
            "nn.%s(%d, %d, num_layers=%d): merged = sqlite_rnn.merge_layers(%s) builds it with their weights; "
            "export a module holding merged (and the head) instead"
            % (where, type(first).__name__, first.input_size, first.hidden_size, total,
               ", ".join("net." + n for n in names)))


def _plan(module, head):
    """The _Plan of what sqlite-rnn can run, or ValueError saying what is wrong and what to do."""
    import torch.nn as nn
    _refuse_torchscript(module)
    if head is not None:
        _refuse_torchscript(head)
    if isinstance(module, nn.RNNBase):
        if head is not None and not isinstance(head, nn.Linear):
            raise ValueError("head must be an nn.Linear, got %s" % type(head).__name__)
        state = {}
        prefix = "rnn." if head is not None else ""
        for k, v in module.state_dict().items():
            state[prefix + k] = v
        if head is not None:
            for k, v in head.state_dict().items():
                state["fc." + k] = v
        return _Plan(state, {"cell": _CELLS[module.mode]}, module, head)

    if head is not None:
        raise ValueError("head= goes with a bare nn.RNN/nn.LSTM/nn.GRU; %s holds its own head"
                         % type(module).__name__)
    mods = dict(module.named_modules())
    cells = [(n, m) for n, m in mods.items() if isinstance(m, nn.RNNCellBase)]
    if cells:
        raise ValueError(_cell_refusal(module, cells))
    recurrent = [n for n, m in mods.items() if isinstance(m, nn.RNNBase)]
    seeds = [n for n, m in mods.items()
             if isinstance(getattr(m, "i2h", None), nn.Linear) and isinstance(getattr(m, "i2o", None), nn.Linear)]
    if len(recurrent) > 1 and not seeds:
        raise ValueError(_chain_refusal(module, recurrent, [mods[n] for n in recurrent]))
    if len(recurrent) + len(seeds) != 1:
        found = ", ".join(repr(n or "(top)") for n in recurrent + seeds) or "none"
        raise ValueError("sqlite-rnn runs one nn.RNN, nn.LSTM, nn.GRU or tutorial RNN (i2h/i2o) per model; "
                         "%s holds %s" % (type(module).__name__, found))
    owned = set()          # module names whose tensors the model uses
    detected = {}
    if seeds:
        base = seeds[0] + "." if seeds[0] else ""
        owned.update([base + "i2h", base + "i2o"])
        detected["cell"] = "seed"
        for n, m in mods.items():
            if n == seeds[0] or n.startswith(base):
                if isinstance(m, nn.LogSoftmax):
                    detected["output_activation"] = "log_softmax"
                elif isinstance(m, nn.Softmax):
                    detected["output_activation"] = "softmax"
    else:
        owned.add(recurrent[0])
        detected["cell"] = _CELLS[mods[recurrent[0]].mode]
    heads = [n for n, m in mods.items() if isinstance(m, nn.Linear) and n not in owned]
    if len(heads) > 1:
        raise ValueError("sqlite-rnn runs at most one nn.Linear head; %s holds %s"
                         % (type(module).__name__, ", ".join(repr(n) for n in heads)))
    owned.update(heads)
    state = module.state_dict()
    for k in state:
        if k.rpartition(".")[0] not in owned:
            raise ValueError("tensor %r is not part of the recurrent layer or its head: sqlite-rnn would refuse "
                             "it (export a module holding only those)" % k)
    return _Plan(dict(state), detected, None if seeds else mods[recurrent[0]],
                 mods[heads[0]] if heads else None, mods[seeds[0]] if seeds else None)


def _export(module, head, readout, extra, metadata):
    """(blob, plan, metadata written) of to_blob()."""
    plan = _plan(module, head)
    md = _metadata(metadata, extra)
    if readout is not None:
        if readout not in READOUTS:
            raise ValueError("readout must be 'last_output' or 'final_states', got %r" % (readout,))
        md["readout"] = readout
    elif plan.bidirectional:
        raise ValueError("%s is bidirectional: say what forward reads with %s"
                         % (type(module).__name__, _READOUT_HELP))
    for k, v in plan.detected.items():
        if k == "cell" and k in md and md[k] != v:
            raise ValueError("cell=%r given, but the module is %s" % (md[k], v))
        md.setdefault(k, v)
    return dumps(plan.state, md), plan, md


def to_blob(module, head=None, readout=None, extra=None, **metadata):
    """safetensors bytes of a torch RNN (see the module docstring)."""
    return _export(module, head, readout, extra, metadata)[0]


# ---------------------------------------------------------------------------------------------------------
# sequences

def _rows(values):
    """Nested Python lists of an array-like: numpy, torch (any device, with grad), pandas, lists; or straight
    the BLOB when it is a numeric numpy array of finite values."""
    if isinstance(values, (bytes, bytearray, memoryview, str)):
        raise TypeError("sequence(): takes numbers (a list, nested lists, a numpy array, a torch tensor or a "
                        "pandas Series/DataFrame), got %s" % type(values).__name__)
    if hasattr(values, "to_numpy"):                     # pandas, duck-typed
        values = values.to_numpy()
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu()
        if "bfloat16" in str(getattr(values, "dtype", "")):
            values = values.float()
        try:
            values = values.numpy()
        except Exception:       # torch without numpy
            values = values.tolist()
    if type(values).__module__ == "numpy" and hasattr(values, "dtype"):
        blob = _numpy_blob(values)
        if blob is not None:
            return blob
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, tuple):
        values = list(values)
    if not isinstance(values, list):
        raise TypeError("sequence(): takes a sequence of steps (a list, nested lists, a numpy array, a torch "
                        "tensor or a pandas Series/DataFrame), got %s" % type(values).__name__)
    return values


def _number(v, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("sequence(): value %s is %r, not a number" % (where, v))
    f = float(v)
    if not math.isfinite(f):
        raise ValueError("sequence(): value %s is %r: sqlite-rnn takes finite values" % (where, f))
    try:
        struct.pack("<f", f)
    except OverflowError:
        raise ValueError("sequence(): value %s is %r, outside the float32 range" % (where, f)) from None
    return f


def _numpy_blob(a):
    """The BLOB of a numeric 1-D or 2-D numpy array of finite float32 values in one pass; None for anything
    else, which the element-wise path then explains."""
    import numpy as np
    if a.dtype.kind not in "iuf" or a.ndim not in (1, 2) or a.size == 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        f = a.astype("<f4")
    return f.tobytes() if np.isfinite(f).all() else None


def sequence(values):
    """float32 little-endian BLOB of a sequence, as rnn_eval/rnn_classify/rnn_steps/rnn_forecast read it."""
    rows = _rows(values)
    if isinstance(rows, bytes):
        return rows
    if not rows:
        raise ValueError("sequence(): no steps: a sequence needs at least one")
    flat = []
    if isinstance(rows[0], (list, tuple)):
        width = len(rows[0])
        if width == 0:
            raise ValueError("sequence(): step 0 has no features")
        for t, row in enumerate(rows):
            if not isinstance(row, (list, tuple)):
                raise ValueError("sequence(): step %d is %r, not a list of %d features like step 0" % (t, row, width))
            if len(row) != width:
                raise ValueError("sequence(): step %d has %d features, step 0 has %d" % (t, len(row), width))
            for i, v in enumerate(row):
                if isinstance(v, (list, tuple)):
                    raise ValueError("sequence(): one sequence is 1-D (steps) or 2-D (steps x features); this "
                                     "one has more dimensions (for a batch, call sequence() on each item)")
                flat.append(_number(v, "[%d][%d]" % (t, i)))
    else:
        for t, v in enumerate(rows):
            if isinstance(v, (list, tuple)):
                raise ValueError("sequence(): step %d is a list but step 0 is a number" % t)
            flat.append(_number(v, "[%d]" % t))
    return struct.pack("<%df" % len(flat), *flat)


# ---------------------------------------------------------------------------------------------------------
# checking a model before it is stored

def _validate(conn, blob):
    """rnn_info of blob, by the connection's extension or a private :memory: one; ValueError from SQL's text."""
    try:
        return json.loads(conn.execute("SELECT rnn_info(?)", (blob,)).fetchone()[0]), conn
    except sqlite3.OperationalError as e:
        if "no such function: rnn_info" not in str(e):
            raise ValueError("save(): the extension refuses this model, nothing was written: %s" % e) from None
    private = sqlite3.connect(":memory:")
    try:
        load(private)
    except (OSError, RuntimeError, sqlite3.Error) as e:
        raise RuntimeError("save(): the model is checked with the extension before it is written, and this "
                           "connection has not loaded it (sqlite_rnn.load(conn)) nor could it be loaded here: "
                           "%s" % e) from None
    return _validate(private, blob)


def _readout_of(rnn, out, h_n, readout):
    """What the SQL model feeds its head after a batch: [B, width] from rnn's (output, h_n)."""
    import torch
    if readout == "final_states":
        h = h_n[0] if isinstance(h_n, tuple) else h_n          # LSTM: (h_n, c_n)
        if h.dim() == 2:                                      # unbatched
            h = h.unsqueeze(1)
        return torch.cat((h[-2], h[-1]), 1) if rnn.bidirectional else h[-1]
    if out.dim() == 2:
        return out[-1:]
    return out[:, -1] if rnn.batch_first else out[-1]


def _as_batch(x, batch_first):
    """check_input as a float32 tensor [B, T, F] in SQL order, and as the module takes it (unchanged layout)."""
    import torch
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().float()
    else:                                 # numpy, pandas (duck-typed), nested lists
        x = x.to_numpy() if hasattr(x, "to_numpy") else x
        t = torch.as_tensor(x.tolist() if hasattr(x, "tolist") else x, dtype=torch.float32)
    if t.dim() == 2:
        return t.unsqueeze(0), t
    if t.dim() != 3:
        raise ValueError("save(): check_input must be one sequence [T, F] or a batch of them, 3-D as the module "
                         "takes it; got shape %s" % list(t.shape))
    return (t if batch_first else t.transpose(0, 1)), t


def _torch_reference(module, plan, md, x):
    """(sequences [B, T, F] as SQL gets them, torch outputs [B, O]) for check_input x: the module in eval
    mode, float32, no grad, fed (x - input_mean) / input_std; its output scaled by output_std, output_mean."""
    import copy
    import torch

    def vec(key, default):
        return torch.tensor(json.loads(md[key]) if key in md else default, dtype=torch.float32)

    batch_first = plan.rnn.batch_first if plan.rnn is not None else False
    seqs, given = _as_batch(x, batch_first)
    xs = (given - vec("input_mean", [0.0])) / vec("input_std", [1.0])
    net = copy.deepcopy(module).float().eval()
    with torch.no_grad():
        if plan.seed is not None:                     # the tutorial's forward(input, hidden), one step a call
            path = next(n for n, m in module.named_modules() if m is plan.seed)
            step = dict(net.named_modules())[path]
            steps = xs if xs.dim() == 3 else xs.unsqueeze(1)
            h = torch.zeros(steps.shape[1], step.i2h.out_features)
            for t in range(steps.shape[0]):
                y, h = step(steps[t], h)
        elif isinstance(module, torch.nn.RNNBase):    # no forward of the user's: the export says what is run
            out, h_n = net(xs)
            y = _readout_of(net, out, h_n, md.get("readout", "last_output"))
            head = copy.deepcopy(plan.head).float().eval() if plan.head is not None else None
            y = _activation(md.get("output_activation", "none"), head(y) if head is not None else y)
        else:
            y = net(xs)
            if isinstance(y, (tuple, list)):
                y = y[0]
            y = _last_step(y, given.dim() == 3, batch_first)
    y = y.reshape(seqs.shape[0], -1)
    return seqs, y * vec("output_std", [1.0]) + vec("output_mean", [0.0])


def _last_step(y, batched, batch_first):
    """[B, O] of a module's output: [B] and [B, O] as they are, a per-step output [B, T, O] at its last step."""
    if not batched:
        return y.reshape(1, -1) if y.dim() < 2 else y[-1:]
    if y.dim() < 3:
        return y.reshape(y.shape[0], -1) if y.dim() else y.reshape(1, 1)
    return y[:, -1] if batch_first else y[-1]


def _activation(name, y):
    import torch
    return {"none": lambda v: v, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "softmax": lambda v: torch.softmax(v, -1), "log_softmax": lambda v: torch.log_softmax(v, -1)}[name](y)


def _sql_outputs(conn, model, seqs):
    out = []
    for seq in seqs:
        v = conn.execute("SELECT rnn_eval(?, ?)", (model, sequence(seq))).fetchone()[0]
        out.append([v] if isinstance(v, (int, float)) else json.loads(v))
    return out


def _diagnose(module, plan, md, x, sql, want, tol):
    """The one cause found by trying the alternatives, or None."""
    import torch
    if any(v is None for row in sql for v in row):
        return None
    got = torch.tensor(sql, dtype=torch.float32)
    plain = md.get("output_activation", "none") == "none" and not any(k in md for k in ("output_mean", "output_std"))
    if plain:
        for name in ("sigmoid", "tanh", "softmax", "log_softmax"):
            if _close(_activation(name, got), want, tol * 10):
                return ("forward applies %s to the output: pass output_activation=%r so SQL applies it too"
                        % (name, name))
    if plan.bidirectional and not isinstance(module, torch.nn.RNNBase):
        other = "final_states" if md.get("readout") == "last_output" else "last_output"
        alt = dict(md, readout=other)
        try:
            _, y = _torch_reference(plan.rnn, _Plan({}, {}, plan.rnn, plan.head), alt, x)
        except Exception:
            return None
        if _close(y, want, tol * 10):
            return "forward computes %s: pass readout=%r" % (_READOUT_EXPR[other], other)
    return None


def _close(a, b, tol):
    import torch
    return a.shape == b.shape and bool(((a - b).abs() <= tol * torch.clamp(b.abs(), min=1.0)).all())


def _check_against_torch(conn, model, module, plan, md, x):
    """ValueError when the stored model's outputs on check_input differ from the module's beyond
    2e-5 * max(1, |torch|, output_std), naming the likely cause."""
    seqs, want = _torch_reference(module, plan, md, x)
    sql = _sql_outputs(conn, model, seqs)
    scale = max([1.0] + [abs(v) for v in json.loads(md.get("output_std", "[1]"))])
    if any(len(r) != want.shape[1] for r in sql):
        raise ValueError("save(): module(check_input) gives %d outputs per sequence, the stored model %d: the "
                         "module's forward does more than sqlite-rnn runs (one recurrent layer, at most one "
                         "Linear head); nothing was saved" % (want.shape[1], len(sql[0])))
    for b, (row, trow) in enumerate(zip(sql, want.tolist())):
        for i, (s, t) in enumerate(zip(row, trow)):
            if s is None or not abs(s - t) <= CHECK_TOLERANCE * max(scale, abs(t)):   # NaN fails too
                cause = _diagnose(module, plan, md, x, sql, want, CHECK_TOLERANCE * scale)
                raise ValueError(
                    "save(): the stored model disagrees with module(check_input) at sequence %d, output %d: "
                    "SQLite %r, torch %r (tolerance %g * max(1, |torch|, output_std)); nothing was saved. %s"
                    % (b, i, s, t, CHECK_TOLERANCE, ("Cause: " + cause) if cause else _CAUSES))


_CAUSES = ("Likely causes: an activation applied in forward (declare it with output_activation=); the readout "
           "(fc(output[:, -1]) is readout='last_output', fc(torch.cat((h_n[-2], h_n[-1]), 1)) is "
           "readout='final_states'); standardisation (check_input is raw data: the module gets "
           "(x - input_mean) / input_std and its output is scaled by output_std and output_mean, so a forward "
           "that standardises by itself needs no such metadata); or forward does more than one recurrent layer "
           "and one Linear head")


# ---------------------------------------------------------------------------------------------------------
# sqlite3

def save(conn, name, module, head=None, readout=None, extra=None, check_input=None, **metadata):
    """Check a model with the extension (and against the module on check_input), then upsert it into
    rnn_models (created if missing) in a savepoint; returns the BLOB stored."""
    if isinstance(module, (bytes, bytearray, memoryview)):
        if head is not None or metadata or readout is not None or extra is not None or check_input is not None:
            raise ValueError("save(): a BLOB is stored as it is; head, readout, extra, check_input and metadata "
                             "go with a torch module")
        blob, plan, md = bytes(module), None, None
    else:
        blob, plan, md = _export(module, head, readout, extra, metadata)
    checker = _validate(conn, blob)[1]
    conn.execute("SAVEPOINT sqlite_rnn_save")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
        conn.execute("INSERT INTO rnn_models(name, model) VALUES (?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET model = excluded.model", (name, blob))
        if check_input is not None:       # the stored row, by name, when this connection has the extension
            _check_against_torch(conn if checker is conn else checker, name if checker is conn else blob,
                                 module, plan, md, check_input)
    except BaseException:
        conn.execute("ROLLBACK TO sqlite_rnn_save")
        conn.execute("RELEASE sqlite_rnn_save")
        raise
    conn.execute("RELEASE sqlite_rnn_save")
    return blob


def _library_name():
    if sys.platform == "darwin":
        return "rnn.dylib"
    if sys.platform in ("win32", "cygwin"):
        return "rnn.dll"
    return "rnn.so"


def candidates():
    """The files load() tries, in order."""
    lib = _library_name()
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    env = os.environ.get("SQLITE_RNN_PATH")
    if env:
        out.append(os.path.join(env, lib) if os.path.isdir(env) else env)
    out.append(os.path.join(here, lib))
    out.append(os.path.join(os.path.dirname(here), lib))                        # checkout: python/ -> root
    out.append(os.path.join(os.path.dirname(os.path.dirname(here)), "sqlite-rnn", lib))  # lib/python3.N/dist-packages
    for prefix in ("/usr/local", "/usr"):
        out.append(os.path.join(prefix, "lib", "sqlite-rnn", lib))
    return out


def load(conn, path=None):
    """Load sqlite-rnn into a sqlite3 connection; returns the path of the file loaded."""
    if path is None:
        found = [p for p in candidates() if os.path.isfile(p)]
        if not found:
            raise FileNotFoundError("sqlite-rnn: no %s found; looked in: %s. Build it with `make`, install it "
                                    "with `make install`, or pass load(conn, path=...) or set SQLITE_RNN_PATH"
                                    % (_library_name(), ", ".join(candidates())))
        path = found[0]
    try:
        enable = conn.enable_load_extension
    except AttributeError:
        raise RuntimeError(
            "sqlite-rnn: this Python (%s) has a sqlite3 module built without extension loading, so it cannot "
            "load %s. Use Debian's /usr/bin/python3 (apt-get install python3), or a Python built with "
            "./configure --enable-loadable-sqlite-extensions (pyenv: PYTHON_CONFIGURE_OPTS="
            "--enable-loadable-sqlite-extensions pyenv install ...)" % (sys.executable, path)) from None
    enable(True)
    try:
        conn.load_extension(path)
    finally:
        enable(False)
    return path
