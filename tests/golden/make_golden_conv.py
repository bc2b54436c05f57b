#!/usr/bin/env python3
"""Writes tests/golden/conv_ops.safetensors, the PyTorch reference tests/test_golden_conv.cpp checks
cuae's convolution ops against.

Each named case is one torch.nn.functional.conv2d or conv_transpose2d (float32, CPU, NCHW) with a
bias and an activation, y = act(op(x, w) + b), and a random upstream gradient g. For case <c> the
file holds, in PyTorch's own layouts:

  <c>.input        x   [n, c_in, h, w]
  <c>.weight       w   conv2d: [c_out, c_in, r, s]; conv_transpose2d: [c_in, c_out, r, s]
  <c>.bias         b   [c_out]
  <c>.output       y   [n, c_out, p, q]
  <c>.grad_output  g   like y
  <c>.grad_input   ∂(Σ g⊙y)/∂x, from autograd
  <c>.grad_weight  ∂(Σ g⊙y)/∂w
  <c>.grad_bias    ∂(Σ g⊙y)/∂b

__metadata__ "cases" is a JSON list of {"name", "op" ("conv2d" | "conv_transpose2d"), "stride",
"padding", "dilation", "output_padding" (each [h, w]), "activation" ("identity" | "relu" |
"sigmoid")}; "torch_version" and "format" ("cuae-golden-conv-1") say what wrote it.

The cases cover the edges of the shape arithmetic: stride 2 with padding 1 on an odd input,
dilation 2, 1x1, 5x5 with padding 2, a 3-channel first layer to 16 channels, a non-square filter
with per-axis strides, and transposed convolutions with output padding 1 and 2 (among them the 3x3
stride-2 one that doubles 7 -> 14), dilation, 1x1 and a single output channel.

Inputs come from a seeded torch.Generator (x, g ~ U(-1, 1), w ~ U(-1, 1)/sqrt(fan_in),
b ~ U(-0.5, 0.5)), one thread, so a rerun reproduces the file up to PyTorch's own CPU kernels.
safetensors is written by hand (json + struct + numpy), so no extra package is needed.

Regenerate with: python3 tests/golden/make_golden_conv.py [--out PATH]
"""

import argparse
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20240611

ACTS = {
    "identity": lambda z: z,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}

# name, op, input shape [n, c, h, w], weight shape (PyTorch's), stride, padding, dilation,
# output_padding, activation
CASES = [
    ("conv_s2_p1_odd", "conv2d", [2, 3, 9, 7], [8, 3, 3, 3], [2, 2], [1, 1], [1, 1], [0, 0], "relu"),
    ("conv_5x5_p2", "conv2d", [1, 2, 8, 7], [4, 2, 5, 5], [1, 1], [2, 2], [1, 1], [0, 0], "identity"),
    ("conv_dil2", "conv2d", [2, 3, 10, 9], [5, 3, 3, 3], [1, 1], [2, 2], [2, 2], [0, 0], "sigmoid"),
    ("conv_1x1", "conv2d", [3, 6, 5, 4], [4, 6, 1, 1], [1, 1], [0, 0], [1, 1], [0, 0], "identity"),
    ("conv_c3_k16", "conv2d", [2, 3, 12, 11], [16, 3, 3, 3], [2, 2], [1, 1], [1, 1], [0, 0], "relu"),
    ("conv_3x1_s2x1", "conv2d", [2, 4, 9, 8], [5, 4, 3, 1], [2, 1], [1, 0], [1, 1], [0, 0], "identity"),
    ("conv_s3_nopad", "conv2d", [1, 2, 11, 10], [3, 2, 3, 3], [3, 3], [0, 0], [1, 1], [0, 0], "sigmoid"),
    ("deconv_7_to_14", "conv_transpose2d", [2, 8, 7, 7], [8, 4, 3, 3], [2, 2], [1, 1], [1, 1], [1, 1], "sigmoid"),
    ("deconv_4x4_s2", "conv_transpose2d", [2, 6, 5, 5], [6, 3, 4, 4], [2, 2], [1, 1], [1, 1], [0, 0], "relu"),
    ("deconv_s3_op2x1", "conv_transpose2d", [1, 4, 3, 4], [4, 2, 3, 3], [3, 3], [0, 0], [1, 1], [2, 1], "identity"),
    ("deconv_dil2_op1", "conv_transpose2d", [2, 3, 4, 5], [3, 2, 3, 3], [2, 2], [2, 2], [2, 2], [1, 1], "identity"),
    ("deconv_1x1", "conv_transpose2d", [2, 5, 4, 3], [5, 3, 1, 1], [1, 1], [0, 0], [1, 1], [0, 0], "identity"),
    ("deconv_to_1ch", "conv_transpose2d", [2, 16, 4, 4], [16, 1, 3, 3], [2, 2], [1, 1], [1, 1], [1, 1], "sigmoid"),
    ("deconv_1x5_s1x2", "conv_transpose2d", [1, 3, 4, 6], [3, 2, 1, 5], [1, 2], [0, 2], [1, 1], [0, 1], "relu"),
]


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
    h += b" " * ((-(8 + len(h))) % 8)  # pad so the data start 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def uniform(gen, shape, bound):
    return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound


def run_case(gen, name, op, in_shape, w_shape, stride, padding, dilation, output_padding, act):
    # fan_in of an output value: c_in·r·s for conv2d; for conv_transpose2d the weight's first
    # dimension is c_in as well.
    fan_in = w_shape[0 if op == "conv_transpose2d" else 1] * w_shape[2] * w_shape[3]
    x = uniform(gen, in_shape, 1.0).requires_grad_()
    w = uniform(gen, w_shape, 1.0 / np.sqrt(fan_in)).requires_grad_()
    c_out = w_shape[1] if op == "conv_transpose2d" else w_shape[0]
    b = uniform(gen, [c_out], 0.5).requires_grad_()
    if op == "conv2d":
        if output_padding != [0, 0]:
            raise ValueError(f"{name}: output_padding is for conv_transpose2d")
        z = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    else:
        z = F.conv_transpose2d(x, w, b, stride=stride, padding=padding, output_padding=output_padding,
                               dilation=dilation)
    y = ACTS[act](z)
    g = uniform(gen, list(y.shape), 1.0)
    y.backward(g)
    tensors = [
        (f"{name}.input", x.detach().numpy()),
        (f"{name}.weight", w.detach().numpy()),
        (f"{name}.bias", b.detach().numpy()),
        (f"{name}.output", y.detach().numpy()),
        (f"{name}.grad_output", g.numpy()),
        (f"{name}.grad_input", x.grad.numpy()),
        (f"{name}.grad_weight", w.grad.numpy()),
        (f"{name}.grad_bias", b.grad.numpy()),
    ]
    meta = {"name": name, "op": op, "stride": stride, "padding": padding, "dilation": dilation,
            "output_padding": output_padding, "activation": act}
    print(f"{name:18s} {op:17s} x {list(in_shape)} w {list(w_shape)} -> y {list(y.shape)}")
    return tensors, meta


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "conv_ops.safetensors"))
    args = ap.parse_args()

    torch.set_num_threads(1)  # fixed reduction order, so reruns give the same bytes
    gen = torch.Generator().manual_seed(SEED)
    tensors, metas = [], []
    for case in CASES:
        t, m = run_case(gen, *case)
        tensors += t
        metas.append(m)
    metadata = {"cases": json.dumps(metas, separators=(",", ":")), "torch_version": torch.__version__,
                "format": "cuae-golden-conv-1"}
    write_safetensors(args.out, tensors, metadata)
    print(f"{args.out}: {os.path.getsize(args.out)} bytes, {len(metas)} cases")


if __name__ == "__main__":
    main()
