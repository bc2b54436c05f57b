#!/usr/bin/env python3
"""Writes tests/golden/pool_ops.safetensors, the PyTorch reference tests/test_golden_pool.cpp checks
cuae's pooling, unpooling and upsampling ops against.

Each case runs one PyTorch op on a small seeded input, then backpropagates a random upstream
gradient, and stores (NCHW, float32; the C++ test permutes to cuae's NHWC):

  <case>.x      the input
  <case>.y      the op's output
  <case>.index  max pooling and unpooling: the flat h*w position of each maximum within its (n, c)
                plane (PyTorch's convention, the same as cuae's), as float32 (exact below 2^24)
  <case>.dy     the upstream gradient, shaped like y
  <case>.dx     the gradient with respect to x

Ops: F.max_pool2d(return_indices=True) (overlapping windows, padding, a 2x3 window), F.max_unpool2d
(the indices of a max pool over non-overlapping windows, output_size = the pooled input's size;
PyTorch writes overlapping targets in an unspecified order, so only disjoint windows have a
defined answer), F.avg_pool2d (count_include_pad True and False, with padding and overlap) and
F.interpolate (nearest and bilinear with align_corners=False; upscaling, downscaling and mixed,
sizes given explicitly). For max_unpool2d, x is the unpooling layer's input (a pooled-shaped
feature map) and the index comes from pooling a separate random tensor, stored as <case>.pool_x.

__metadata__ holds "cases": a JSON list of {name, op, kernel, stride, padding,
count_include_pad, size, mode}, and "torch_version".

Everything is float32 on the CPU and seeded, so a rerun reproduces the file. safetensors is written
by hand (json + struct + numpy), as in make_golden.py.

Usage: python3 tests/golden/make_golden_pool.py [--out PATH]
"""

import argparse
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, float32 ndarray) in data order; metadata: dict str -> str."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs = []
    offset = 0
    for name, arr in tensors:
        a = np.ascontiguousarray(arr, dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-(8 + len(h))) % 8)  # the data start 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "pool_ops.safetensors"))
    args = ap.parse_args()

    gen = torch.Generator().manual_seed(20240611)

    def randn(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    tensors = []
    cases = []

    def record(name, meta, **ts):
        cases.append(dict(name=name, **meta))
        for k, v in ts.items():
            tensors.append((f"{name}.{k}", v.detach().to(torch.float32).contiguous().numpy()))

    # ---- max pooling ------------------------------------------------------------------------
    for name, shape, k, s, p in [
        ("max_k2s2", (2, 3, 9, 7), 2, 2, 0),
        ("max_k3s2p1", (2, 4, 9, 7), 3, 2, 1),
        ("max_k3s1p1", (1, 3, 7, 9), 3, 1, 1),  # overlapping windows: dx sums
        ("max_k2x3_s1x2_p1x1", (2, 2, 7, 9), (2, 3), (1, 2), (1, 1)),
    ]:
        x = randn(*shape).requires_grad_(True)
        y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
        dy = randn(*y.shape)
        y.backward(dy)
        record(name, dict(op="max_pool", kernel=pair(k), stride=pair(s), padding=pair(p)),
               x=x, y=y, index=idx.to(torch.float32), dy=dy, dx=x.grad)

    # ---- max unpooling (disjoint windows) --------------------------------------------------------
    for name, shape, k, s, p in [
        ("unpool_k2s2", (2, 3, 9, 7), 2, 2, 0),
        ("unpool_k3s3p1", (1, 4, 8, 10), 3, 3, 1),
    ]:
        pool_x = randn(*shape)
        _, idx = F.max_pool2d(pool_x, k, s, p, return_indices=True)
        x = randn(*idx.shape).requires_grad_(True)
        y = F.max_unpool2d(x, idx, k, s, p, output_size=shape[2:])
        dy = randn(*y.shape)
        y.backward(dy)
        record(name, dict(op="max_unpool", kernel=pair(k), stride=pair(s), padding=pair(p)),
               pool_x=pool_x, x=x, y=y, index=idx.to(torch.float32), dy=dy, dx=x.grad)

    # ---- average pooling ----------------------------------------------------------------------
    for name, shape, k, s, p, inc in [
        ("avg_k2s2", (2, 3, 9, 7), 2, 2, 0, True),
        ("avg_k3s2p1_incpad", (2, 3, 9, 7), 3, 2, 1, True),
        ("avg_k3s2p1_nopad", (2, 3, 9, 7), 3, 2, 1, False),
        ("avg_k3s1p1_nopad", (1, 3, 7, 9), 3, 1, 1, False),
        ("avg_k2x3_s2x1_p1x1_incpad", (2, 2, 7, 9), (2, 3), (2, 1), (1, 1), True),
        ("avg_k2x3_s2x1_p1x1_nopad", (2, 2, 7, 9), (2, 3), (2, 1), (1, 1), False),
    ]:
        x = randn(*shape).requires_grad_(True)
        y = F.avg_pool2d(x, k, s, p, count_include_pad=inc)
        dy = randn(*y.shape)
        y.backward(dy)
        record(name, dict(op="avg_pool", kernel=pair(k), stride=pair(s), padding=pair(p), count_include_pad=inc),
               x=x, y=y, dy=dy, dx=x.grad)

    # ---- upsampling -------------------------------------------------------------------------
    for mode in ("nearest", "bilinear"):
        for tag, shape, size in [
            ("up", (2, 3, 7, 5), (14, 12)),
            ("down", (2, 3, 9, 9), (4, 4)),
            ("mixed", (1, 2, 9, 5), (4, 12)),
            ("ae", (1, 2, 14, 14), (28, 28)),
        ]:
            x = randn(*shape).requires_grad_(True)
            if mode == "bilinear":
                y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            else:
                y = F.interpolate(x, size=size, mode="nearest")
            dy = randn(*y.shape)
            y.backward(dy)
            record(f"{mode}_{tag}", dict(op="upsample", mode=mode, size=list(size)), x=x, y=y, dy=dy, dx=x.grad)

    write_safetensors(args.out, tensors,
                      {"cases": json.dumps(cases), "torch_version": torch.__version__})
    print(f"wrote {args.out}: {len(cases)} cases, {len(tensors)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
