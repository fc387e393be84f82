"""A small safetensors writer and reader in pure Python (stdlib only), for building and checking test models.

Format (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N, N bytes of JSON header,
then the raw tensor bytes. The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
(offsets relative to the end of the header) and may hold "__metadata__", a map of string -> string.
Like the reference writer, dumps() writes compact JSON, escapes non-ASCII as \\uXXXX (Python's json default),
lays the tensors out contiguously in header order and pads the header with spaces to a multiple of 8 bytes.

    dumps({"w": ("F32", [2, 2], [1.0, 2.0, 3.0, 4.0])}, {"cell": "lstm"}) -> bytes
    loads(blob) -> ({"w": ("F32", [2, 2], [1.0, 2.0, 3.0, 4.0])}, {"cell": "lstm"})

A tensor's data may be given as raw bytes (written as is, e.g. to build corrupt files) or as a flat list of floats,
converted to the dtype: F32, F64, F16 (IEEE half, round to nearest even) or BF16 (the upper 16 bits of the float32,
round to nearest even).
"""
import json
import math
import struct

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def _f32_bits(v):
    return struct.unpack("<I", struct.pack("<f", v))[0]


def bf16_bits(v):
    """The bfloat16 bit pattern nearest to float v (round to nearest even via float32)."""
    b = _f32_bits(v)
    if (b & 0x7F800000) == 0x7F800000 and (b & 0x007FFFFF):
        return (b >> 16) | 0x0040          # NaN stays a (quiet) NaN
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF


def bf16_value(bits):
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


def encode(dtype, values):
    """Raw little-endian bytes of a flat list of floats in dtype."""
    n = len(values)
    if dtype == "F32":
        return struct.pack("<%df" % n, *values)
    if dtype == "F64":
        return struct.pack("<%dd" % n, *values)
    if dtype == "F16":
        return struct.pack("<%de" % n, *values)
    if dtype == "BF16":
        return struct.pack("<%dH" % n, *[bf16_bits(v) for v in values])
    raise ValueError("unsupported dtype %r" % dtype)


def decode(dtype, raw):
    """Flat list of Python floats from raw little-endian bytes in dtype."""
    n = len(raw) // DTYPE_SIZE[dtype]
    if dtype == "F32":
        return list(struct.unpack("<%df" % n, raw))
    if dtype == "F64":
        return list(struct.unpack("<%dd" % n, raw))
    if dtype == "F16":
        return list(struct.unpack("<%de" % n, raw))
    return [bf16_value(b) for b in struct.unpack("<%dH" % n, raw)]


def dumps(tensors, metadata=None):
    """safetensors bytes for tensors {name: (dtype, shape, floats or raw bytes)} and optional metadata {str: str}."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    chunks = []
    offset = 0
    for name, (dtype, shape, data) in tensors.items():
        raw = bytes(data) if isinstance(data, (bytes, bytearray)) else encode(dtype, list(data))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def loads(blob):
    """({name: (dtype, shape, floats)}, metadata or None) from safetensors bytes; raises ValueError if malformed."""
    blob = bytes(blob)
    if len(blob) < 8:
        raise ValueError("safetensors: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError("safetensors: header length %d exceeds the blob" % n)
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        dtype, shape = info["dtype"], info["shape"]
        if dtype not in DTYPE_SIZE:
            raise ValueError("safetensors: tensor %s has unsupported dtype %s" % (name, dtype))
        begin, end = info["data_offsets"]
        count = math.prod(shape)
        if not 0 <= begin <= end <= len(data) or end - begin != count * DTYPE_SIZE[dtype]:
            raise ValueError("safetensors: tensor %s has bad data_offsets %r" % (name, [begin, end]))
        tensors[name] = (dtype, list(shape), decode(dtype, data[begin:end]))
    return tensors, metadata


def from_state_dict(sd, metadata=None, dtype="F32"):
    """safetensors bytes of a torch state_dict, as safetensors.torch.save would write them.

    dtype is one dtype name for every tensor, or a dict {tensor name: dtype name} (missing names: F32).
    The conversion is torch's own (round to nearest even), so a test can reproduce it with tensor.to(...).
    """
    import torch
    torch_dtype = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16}
    tensors = {}
    for name, t in sd.items():
        dt = dtype.get(name, "F32") if isinstance(dtype, dict) else dtype
        t = t.detach().cpu().to(torch_dtype[dt]).contiguous()
        if dt == "BF16":
            t = t.view(torch.int16)     # numpy has no bfloat16; the bits are what we write
        tensors[name] = (dt, list(t.shape), t.numpy().tobytes())
    return dumps(tensors, metadata)
