"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/ (committed; `make fuzz-corpus`).

Every seed holds a valid model from tests/models.py (each cell, heads, layers, projections, bidirectional, every
dtype, the metadata keys), framed in the input layout its target documents at the top of its .c file:
  fuzz_model     the model BLOB itself
  fuzz_sql       4 control bytes (model, frame, exclusion, partitions/horizon), then for fuzzed models a 2-byte
                 length and the model, then tagged row values
  fuzz_registry  a mode byte, a 2-byte offset, then replacement bytes or a patch
Usage: python3 tests/fuzz/make_corpus.py   (deterministic: rerunning rewrites the same files)
"""
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import models  # noqa: E402

VOCAB = json.dumps(["a", "b", "c"])


def model_seeds():
    r = models.recurrent
    return {
        "rnn_tanh-1x3": r("rnn_tanh", 1, 3, seed=1),
        "rnn_relu-2x3-head1": r("rnn_relu", 2, 3, head=1, seed=2),
        "gru-1x4-head1": r("gru", 1, 4, head=1, seed=3),
        "gru-1x3-2layers-nobias": r("gru", 1, 3, layers=2, head=1, bias=False, seed=4),
        "lstm-2x4-proj2-head3": r("lstm", 2, 4, head=3, proj=2, seed=5),
        "lstm-1x3-bidir-head1": r("lstm", 1, 3, head=1, bidirectional=True, seed=6),
        "gru-1x2-prefix": r("gru", 1, 2, head=1, prefix="net.rnn.", head_prefix="net.fc.", seed=7),
        "gru-1x3-f16": r("gru", 1, 3, head=1, dtype="F16", seed=8),
        "rnn_tanh-1x3-bf16": r("rnn_tanh", 1, 3, head=1, dtype="BF16", seed=9),
        "lstm-1x2-f64": r("lstm", 1, 2, head=1, dtype="F64", seed=10),
        "gru-3x4-vocab-labels": r("gru", 3, 4, head=2, seed=11, metadata={
            "vocab": VOCAB, "labels": json.dumps(["no", "yes"]), "unknown_token": "c",
            "output_activation": "softmax", "description": "caf\u00e9"}),
        "gru-2x3-standardised": r("gru", 2, 3, head=2, seed=12, metadata={
            "input_mean": "[0.5, -1]", "input_std": "[2, 0.5]", "output_mean": "[1, 2]", "output_std": "[3, 4]",
            "output_activation": "tanh"}),
        "seed-1x4x1": models.seed_rnn(1, 4, 1, seed=13),
        "seed-3x4x3-vocab": models.seed_rnn(3, 4, 3, seed=14, metadata={
            "vocab": VOCAB, "hidden_activation": "tanh", "output_activation": "log_softmax"}),
    }


def values(vals):
    """Tagged values (fuzz_sql.c): tag 2 + float32 bits, tag 0 NULL, tag 6 | k << 3 token k, tag 1 | i << 3 int."""
    out = b""
    for v in vals:
        if v is None:
            out += b"\x00"
        elif isinstance(v, str):
            out += bytes([6 | ["a", "b", "c", "ab", ""].index(v) << 3])
        elif isinstance(v, int):
            out += bytes([1 | (v + 16) << 3])
        else:
            out += b"\x02" + struct.pack("<f", v)
    return out


def frame(unit, start, end, excl=0, n1=1, n2=1):
    """The two frame bytes of fuzz_sql.c."""
    return bytes([unit + 3 * start + 12 * end, excl | n1 << 3 | n2 << 5])


def sql_seeds(model_blobs):
    series = [0.5, -1.0, None, 2.0, 0.25, 1.5, -0.75, 3.0, None, 0.125, -2.5, 1.0]
    seeds = {}
    frames = {
        "running": frame(0, 0, 1),
        "rows-2p-1f": frame(0, 1, 2, 0, 2, 1),
        "range-1p": frame(1, 1, 1, 0, 1),
        "groups-excl-group": frame(2, 1, 2, 3, 1, 1),
        "rows-excl-current": frame(0, 1, 2, 2, 2, 2),
        "rows-following": frame(0, 3, 3, 0, 1),
        "default": bytes([200, 0]),
    }
    # built-in models (fuzz_util.h): 0 GRU 1 input, 1 LSTM 2 inputs, 2 RNN, 3 seed, 4 vocab GRU, 5 bidirectional
    for name, fr in frames.items():
        seeds["builtin-gru-" + name] = bytes([0]) + fr + bytes([1 | 5 << 2]) + values(series)
    seeds["builtin-lstm-2f-blob"] = bytes([1 | 1 << 3 | 1 << 4]) + frames["rows-2p-1f"] + bytes([2 | 3 << 2]) + \
        values([0.5, 1.0, -1.0, None, 2.0, 0.25, 3.0, -0.5])
    seeds["builtin-vocab-tokens"] = bytes([4 | 1 << 6]) + frames["running"] + bytes([0 | 2 << 2]) + \
        values(["a", "b", "c", "ab", "a", None, "c"])
    seeds["builtin-seed-ints"] = bytes([3]) + frames["groups-excl-group"] + bytes([1 | 63 << 2]) + \
        values([1, 2, -3, 0, 5])
    seeds["builtin-bidir"] = bytes([5]) + frames["running"] + bytes([0 | 4 << 2]) + values([0.5, 1.0])
    seeds["builtin-rnn-horizon-out-of-range"] = bytes([2]) + frames["running"] + bytes([0]) + values([0.5, 1.0])
    # fuzzed models carried in the input
    for name in ("gru-1x4-head1", "lstm-2x4-proj2-head3", "seed-1x4x1", "gru-3x4-vocab-labels", "rnn_tanh-1x3"):
        blob = model_blobs[name]
        nf = 2 if name.startswith("lstm") else 1
        vals = ["a", "b", "c", "a"] if "vocab" in name else series[:8]
        if nf == 2:
            vals = series[:10]
        for i, (fname, fr) in enumerate(sorted(frames.items())[:3]):
            b0 = 6 | (i & 1) << 3 | (nf - 1) << 4
            seeds["model-%s-%s" % (name, fname)] = bytes([b0]) + fr + bytes([1 | 6 << 2]) + \
                struct.pack("<H", len(blob)) + blob + values(vals)
    return seeds


def registry_seeds(model_blobs):
    seeds = {}
    # mode 0: the row replaced by another valid model (each base model)
    for i, name in enumerate(["gru-1x4-head1", "lstm-2x4-proj2-head3", "gru-3x4-vocab-labels", "seed-1x4x1"]):
        seeds["replace-%s" % name] = bytes([0 | i << 2]) + b"\0\0" + model_blobs[name]
        seeds["replace-%s-txn" % name] = bytes([0 | i << 2 | 1 << 4]) + b"\0\0" + model_blobs[name]
    # mode 1: patches into the header length, the header and the data
    for base in range(4):
        for off, patch in ((0, b"\xff\xff"), (12, b"\"F16\""), (40, b"9"), (200, b"\x00\x00\xc0\x7f")):
            seeds["patch-%d-%d" % (base, off)] = bytes([1 | base << 2]) + struct.pack("<H", off) + patch
    # mode 2: truncations
    for base in range(4):
        for off in (7, 64, 300):
            seeds["cut-%d-%d" % (base, off)] = bytes([2 | base << 2 | (off & 1) << 4]) + struct.pack("<H", off)
    # mode 3: TEXT
    seeds["text"] = bytes([3]) + b"\0\0" + b"not a model"
    return seeds


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return len(seeds), sum(len(v) for v in seeds.values())


def main():
    blobs = model_seeds()
    for target, seeds in (("fuzz_model", {k + ".safetensors": v for k, v in blobs.items()}),
                          ("fuzz_sql", sql_seeds(blobs)), ("fuzz_registry", registry_seeds(blobs))):
        n, size = write(target, seeds)
        print("tests/fuzz/corpus/%s: %d files, %d bytes" % (target, n, size))


if __name__ == "__main__":
    main()
