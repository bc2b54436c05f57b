#!/usr/bin/env python3
"""Cross-checks cuae's safetensors and .npy files against PyTorch and NumPy (a development aid: the
C++ tests never run Python).

  check_safetensors.py make DIR    writes reference files made with torch/numpy into DIR:
                                   py.safetensors (laid out as Hugging Face's safetensors writes
                                   it: names sorted, compact JSON padded with spaces to 8 bytes),
                                   py_<dtype>.npy via numpy.save, and py_expected.json with the
                                   values a reader must recover
  check_safetensors.py check DIR   reads DIR/cuae.safetensors and DIR/cuae*.npy written by cuae
                                   (the tensors listed in CUAE_TENSORS below) and checks every
                                   byte of the layout against the specifications, the values with
                                   torch and numpy.load

The `safetensors` Python package is not needed: the format is small enough that the reader below
follows the specification directly, and torch supplies the BF16/F16 conversions.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def cuae_tensors():
    """The tensors the C++ side writes into cuae.safetensors, in order."""
    return {
        "enc.w": (torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1.0),
        "enc.b": torch.tensor([1.0, -2.0, 0.5, 2.0**100], dtype=torch.bfloat16),
        "half": torch.tensor([1.0, -1.0, 65504.0, 2.0**-24], dtype=torch.float16),
        "empty": torch.zeros((0, 5), dtype=torch.float32),
    }


CUAE_METADATA = {"step": "7", "config": '{"model": "deep"}'}


def read_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {})
    out, spans = {}, []
    for name, e in header.items():
        assert set(e) == {"dtype", "shape", "data_offsets"}, (name, e)
        b, end = e["data_offsets"]
        dt = DTYPES[e["dtype"]]
        count = int(np.prod(e["shape"], dtype=np.int64))
        assert end - b == count * torch.empty((), dtype=dt).element_size(), name
        buf = bytearray(data[b:end])
        t = torch.frombuffer(buf, dtype=dt) if count else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"])
        spans.append((b, end, name))
    spans.sort()
    pos = 0
    for b, end, name in spans:
        assert b == pos, f"{name}: gap or overlap at {b} (expected {pos})"
        pos = end
    assert pos == len(data), f"data section has {len(data)} bytes, tensors cover {pos}"
    return out, meta, n, [s[2] for s in spans]


def make(d):
    d.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    tensors = {
        "weight": torch.randn(5, 7, generator=g),
        "bias": torch.randn(7, generator=g).to(torch.bfloat16),
        "scale": torch.randn(3, generator=g).to(torch.float16),
        "zero_d": torch.tensor(2.5),
    }
    header, blobs, off = {"__metadata__": {"format": "pt", "step": "99"}}, [], 0
    for name in sorted(tensors):  # what the safetensors package does
        t = tensors[name].contiguous()
        b = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        dtype = {v: k for k, v in DTYPES.items()}[t.dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    (d / "py.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    expected = {
        "safetensors": {k: {"dtype": {v: kk for kk, v in DTYPES.items()}[t.dtype], "shape": list(t.shape),
                            "values": t.float().flatten().tolist()} for k, t in tensors.items()},
        "metadata": header["__metadata__"],
        "npy": {},
    }
    arrays = {
        "f4": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
        "f8": np.array([[0.1, -2.5]], dtype=np.float64),
        "u1": np.arange(0, 250, 25, dtype=np.uint8),
        "i4": np.array([-7, 0, 1 << 20], dtype=np.int32),
        "i8": np.array([[-3], [5]], dtype=np.int64),
        "f4_scalar": np.float32(1.25).reshape(()),
    }
    for k, a in arrays.items():
        np.save(d / f"py_{k}.npy", a)
        expected["npy"][f"py_{k}.npy"] = {"shape": list(a.shape), "values": a.astype(np.float32).flatten().tolist()}
    (d / "py_expected.json").write_text(json.dumps(expected, indent=1))
    print(f"wrote reference files to {d}")


def check(d):
    tensors, meta, n, order = read_safetensors(d / "cuae.safetensors")
    assert (8 + n) % 8 == 0, "cuae pads the header to 8 bytes"
    assert meta == CUAE_METADATA, meta
    want = cuae_tensors()
    assert order == list(want), order
    for k, t in want.items():
        got = tensors[k]
        assert got.dtype == t.dtype and list(got.shape) == list(t.shape), (k, got.dtype, got.shape)
        assert torch.equal(got.reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), k
    for name, shape in {"cuae_2d.npy": (5, 3), "cuae_1d.npy": (7,)}.items():
        raw = (d / name).read_bytes()
        assert raw[:8] == b"\x93NUMPY\x01\x00", name
        hlen = int.from_bytes(raw[8:10], "little")
        assert (10 + hlen) % 64 == 0 and raw[10 + hlen - 1 : 10 + hlen] == b"\n", name
        a = np.load(d / name, allow_pickle=False)
        assert a.dtype == np.float32 and a.shape == shape, (name, a.dtype, a.shape)
        ref = (np.arange(np.prod(shape), dtype=np.float32) / 4 - 1).reshape(shape)
        assert np.array_equal(a, ref), name
    print(f"cuae files in {d}: OK (safetensors: {', '.join(order)}; npy: cuae_2d.npy, cuae_1d.npy)")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    (make if sys.argv[1] == "make" else check)(Path(sys.argv[2]))
