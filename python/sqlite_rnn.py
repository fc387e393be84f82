"""sqlite_rnn: export PyTorch RNNs for sqlite-rnn and load the extension into Python's sqlite3.

One file, standard library only; torch is imported only when a function is handed a torch object.

    import sqlite3, torch, sqlite_rnn
    con = sqlite3.connect("sensors.db")
    sqlite_rnn.load(con)                                  # finds and loads rnn.so
    net = MyNet()                                         # e.g. self.rnn = nn.GRU(...), self.fc = nn.Linear(...)
    sqlite_rnn.save(con, "room_temp", net, input_mean=[21.5], input_std=[3.0])
    con.execute("SELECT rnn_predict('room_temp', temp) OVER (PARTITION BY device ORDER BY t) FROM readings")

to_blob(module, head=None, **metadata) -> bytes
    The safetensors BLOB sqlite-rnn reads, from
      - an nn.RNN, nn.LSTM or nn.GRU, with an optional nn.Linear `head` (stored as `rnn.*` and `fc.*`);
      - a module of yours holding one of them and at most one nn.Linear (e.g. self.rnn and self.fc, at any
        depth): exported under its own state_dict names, so nothing is renamed by hand;
      - the RNN of the PyTorch tutorial (children i2h and i2o, both nn.Linear): exported with cell=seed, and
        output_activation=log_softmax (softmax) when it holds an nn.LogSoftmax (nn.Softmax), as the
        tutorial's forward applies it.
    Tensors keep their dtype (float32, float16, bfloat16, float64: call .half() first to export F16).
    metadata: the __metadata__ keys of the README (cell, output_activation, input_mean, vocab, labels, ...).
    Lists and dicts are JSON-encoded (input_mean=[21.5] -> "[21.5]"); a bare number for input_mean,
    input_std, output_mean or output_std means a one-element list; other values are str()-ed.
    `cell` is set from the module (rnn_relu for nonlinearity='relu'); a different `cell` given is an error.
    Raises ValueError for a module sqlite-rnn could not run (no recurrent layer, two of them, two heads, an
    embedding or other parameters the model would not use), naming what is wrong.

save(conn, name, module, head=None, **metadata)
    Upserts to_blob(...) (or `module` itself when it is already bytes) as row `name` of rnn_models, creating
    the table if it does not exist (other columns of an existing row are kept). Commits, unless the
    connection was already inside a transaction (then committing is the caller's business).

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
import json
import math
import os
import sqlite3
import struct
import sys

__all__ = ["to_blob", "save", "load", "dumps", "loads"]

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
VECTOR_KEYS = ("input_mean", "input_std", "output_mean", "output_std")
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
# export from torch

def _meta_value(key, value):
    if isinstance(value, str):
        return value
    if key in VECTOR_KEYS and isinstance(value, (int, float)):
        value = [value]
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _plan(module, head):
    """(state_dict, detected metadata) of what sqlite-rnn can run, or ValueError."""
    import torch.nn as nn
    detected = {}
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
        detected["cell"] = _CELLS[module.mode]
        return state, detected

    if head is not None:
        raise ValueError("head= goes with a bare nn.RNN/nn.LSTM/nn.GRU; %s holds its own head"
                         % type(module).__name__)
    mods = dict(module.named_modules())
    recurrent = [n for n, m in mods.items() if isinstance(m, nn.RNNBase)]
    seeds = [n for n, m in mods.items()
             if isinstance(getattr(m, "i2h", None), nn.Linear) and isinstance(getattr(m, "i2o", None), nn.Linear)]
    if len(recurrent) + len(seeds) != 1:
        found = ", ".join(repr(n or "(top)") for n in recurrent + seeds) or "none"
        raise ValueError("sqlite-rnn runs one nn.RNN, nn.LSTM, nn.GRU or tutorial RNN (i2h/i2o) per model; "
                         "%s holds %s" % (type(module).__name__, found))
    owned = set()          # module names whose tensors the model uses
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
    return dict(state), detected


def to_blob(module, head=None, **metadata):
    """safetensors bytes of a torch RNN (see the module docstring)."""
    state, detected = _plan(module, head)
    md = {k: _meta_value(k, v) for k, v in metadata.items()}
    for k, v in detected.items():
        if k == "cell" and k in md and md[k] != v:
            raise ValueError("cell=%r given, but the module is %s" % (md[k], v))
        md.setdefault(k, v)
    return dumps(state, md)


# ---------------------------------------------------------------------------------------------------------
# sqlite3

def save(conn, name, module, head=None, **metadata):
    """Upsert a model into rnn_models (created if missing); returns the BLOB stored."""
    if isinstance(module, (bytes, bytearray, memoryview)):
        if head is not None or metadata:
            raise ValueError("save(): a BLOB is stored as it is; head and metadata go with a torch module")
        blob = bytes(module)
    else:
        blob = to_blob(module, head, **metadata)
    was_in_transaction = conn.in_transaction
    conn.execute("CREATE TABLE IF NOT EXISTS rnn_models(name TEXT PRIMARY KEY, model BLOB NOT NULL)")
    conn.execute("INSERT INTO rnn_models(name, model) VALUES (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET model = excluded.model", (name, blob))
    if not was_in_transaction and conn.in_transaction:
        conn.commit()
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
