#!/usr/bin/env python3
"""Writes the golden files that tests/test_golden.cpp checks cuae against (like llm.c's test_gpt2).

An independent PyTorch implementation of two small autoencoders trains on the first 16 Fashion-MNIST
test images, and for each case one safetensors file under tests/golden/ records:

  <param>          initial weights, under cuae's names (encoder.{i}.weight [out, in], encoder.{i}.bias,
                   decoder.{j}.weight, decoder.{j}.bias, j counting from the code outwards; a tied
                   decoder has only its bias)
  x                the batch [16, 784], pixels / 255
  loss0            the loss at the initial weights, shape [1]
  grad.<param>     the gradient of every parameter at the initial weights
  losses           [10]: the loss before each of 10 optimizer steps (losses[0] == loss0)
  final.<param>    the parameters after the 10 steps
  __metadata__     "config": the case as TOML in cuae's config format; "torch_version"; "case"

Cases:
  deep_bce   784-64-16-8, sigmoid hidden, linear code, untied, BCE-with-logits summed over each
             image's pixels and averaged over the batch; Adam lr 1e-3, no weight decay.
  tied_mse   784-48-12, GELU (tanh approximation) hidden, linear code, tied decoder weights (encoder
             weights transposed, own biases), sigmoid output, MSE averaged over every element;
             AdamW lr 2e-3, weight decay 0.05 decoupled, on weights only (biases in a group with 0).

Everything is float32 on the CPU and seeded, so a rerun reproduces the files (up to PyTorch's own
CPU kernels). The weights come from a seeded uniform ±1/sqrt(fan_in) (biases uniform ±0.05), so no
initialisation convention has to match cuae's. safetensors is written by hand (json + struct +
numpy), so no extra package is needed.

Usage: python3 tests/golden/make_golden.py [--data-dir DIR] [--out-dir DIR]
The data directory defaults to $CUAE_FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist.
"""

import argparse
import gzip
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 16
STEPS = 10
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"


# ---- data --------------------------------------------------------------------------------------

def read_idx_images(path, count):
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise ValueError(f"{path}: not an IDX image file (magic {magic})")
        if n < count:
            raise ValueError(f"{path}: {n} images, need {count}")
        raw = f.read(count * rows * cols)
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(count, rows * cols)
    return pixels.astype(np.float32) / np.float32(255.0)


# ---- safetensors -------------------------------------------------------------------------------

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


# ---- the model ---------------------------------------------------------------------------------

ACTS = {
    "identity": lambda z: z,
    "sigmoid": torch.sigmoid,
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
}


class DeepAutoencoder(nn.Module):
    """Encoder layers[0] -> ... -> layers[-1]; the decoder mirrors it. Parameters are registered under
    cuae's names, so state_dict() keys match the engine's."""

    def __init__(self, layers, activation, code_activation, output_activation, tied, bce):
        super().__init__()
        self.layers, self.tied, self.bce = list(layers), tied, bce
        self.activation, self.code_activation, self.output_activation = activation, code_activation, output_activation
        depth = len(layers) - 1
        self.encoder = nn.ModuleList(nn.Linear(layers[i], layers[i + 1]) for i in range(depth))
        if tied:
            # decoder j mirrors encoder i = depth-1-j and only has a bias of width layers[i]
            self.decoder_bias = nn.ParameterList(
                nn.Parameter(torch.empty(layers[depth - 1 - j])) for j in range(depth))
        else:
            self.decoder = nn.ModuleList(
                nn.Linear(layers[depth - j], layers[depth - 1 - j]) for j in range(depth))

    def named_cuae_parameters(self):
        depth = len(self.layers) - 1
        out = []
        for i, lin in enumerate(self.encoder):
            out += [(f"encoder.{i}.weight", lin.weight), (f"encoder.{i}.bias", lin.bias)]
        for j in range(depth):
            if self.tied:
                out.append((f"decoder.{j}.bias", self.decoder_bias[j]))
            else:
                out += [(f"decoder.{j}.weight", self.decoder[j].weight), (f"decoder.{j}.bias", self.decoder[j].bias)]
        return out

    def forward(self, x):
        depth = len(self.layers) - 1
        h = x
        for i, lin in enumerate(self.encoder):
            act = self.code_activation if i + 1 == depth else self.activation
            h = ACTS[act](lin(h))
        for j in range(depth):
            i = depth - 1 - j
            if self.tied:
                z = F.linear(h, self.encoder[i].weight.t(), self.decoder_bias[j])
            else:
                z = self.decoder[j](h)
            if i > 0:
                h = ACTS[self.activation](z)
            else:
                h = z if self.bce else ACTS[self.output_activation](z)  # logits for BCE
        return h


def init_parameters(model, gen):
    with torch.no_grad():
        for name, p in model.named_cuae_parameters():
            if name.endswith(".weight"):
                bound = 1.0 / float(np.sqrt(p.shape[1]))
                p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound)
            else:
                p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float32) * 2 - 1) * 0.05)


def loss_fn(case, out, x):
    if case["loss"] == "bce":
        assert case["reduction"] == "sum"
        # summed over each image's pixels, averaged over the batch
        return F.binary_cross_entropy_with_logits(out, x, reduction="sum") / x.shape[0]
    if case["loss"] == "mse":
        assert case["reduction"] == "mean"
        return F.mse_loss(out, x, reduction="mean")
    raise ValueError(case["loss"])


def config_toml(case):
    layers = ", ".join(str(w) for w in case["layers"])
    opt = case["optimizer"]
    return (
        "# golden case " + case["name"] + " (tests/golden/make_golden.py)\n"
        "[model]\n"
        'type = "deep"\n'
        f"layers = [{layers}]\n"
        f'activation = "{case["activation"]}"\n'
        f'code_activation = "{case["code_activation"]}"\n'
        f'output_activation = "{case["output_activation"]}"\n'
        f'tied_weights = {"true" if case["tied"] else "false"}\n'
        "\n[loss]\n"
        f'type = "{case["loss"]}"\n'
        f'reduction = "{case["reduction"]}"\n'
        "\n[optimizer]\n"
        f'type = "{opt["type"]}"\n'
        f"lr = {opt['lr']!r}\n"
        f"beta1 = {opt['betas'][0]!r}\n"
        f"beta2 = {opt['betas'][1]!r}\n"
        f"eps = {opt['eps']!r}\n"
        f"weight_decay = {opt['weight_decay']!r}\n"
        "\n[train]\n"
        f"batch_size = {BATCH}\n"
        "epochs = 1\n"
        f"seed = {case['seed']}\n"
        'device = "cpu"\n'
    )


def make_optimizer(case, model):
    opt = case["optimizer"]
    params = model.named_cuae_parameters()
    weights = [p for n, p in params if n.endswith(".weight")]
    biases = [p for n, p in params if not n.endswith(".weight")]
    # Two groups: weight decay on weights only, never on biases (cuae's convention).
    groups = [{"params": weights, "weight_decay": opt["weight_decay"]}, {"params": biases, "weight_decay": 0.0}]
    kw = dict(lr=opt["lr"], betas=opt["betas"], eps=opt["eps"], foreach=False)
    if opt["type"] == "adam":
        return torch.optim.Adam(groups, **kw)
    if opt["type"] == "adamw":
        return torch.optim.AdamW(groups, **kw)
    raise ValueError(opt["type"])


def run_case(case, images, out_dir):
    torch.manual_seed(case["seed"])
    gen = torch.Generator().manual_seed(case["seed"])
    model = DeepAutoencoder(case["layers"], case["activation"], case["code_activation"],
                            case["output_activation"], case["tied"], case["loss"] == "bce")
    init_parameters(model, gen)
    params = model.named_cuae_parameters()
    initial = [(n, p.detach().clone()) for n, p in params]
    x = torch.from_numpy(images.copy())

    optimizer = make_optimizer(case, model)
    losses, grads = [], None
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(case, model(x), x)
        losses.append(loss.item())
        loss.backward()
        if step == 0:
            grads = [(n, p.grad.detach().clone()) for n, p in params]
        optimizer.step()
    final = [(n, p.detach().clone()) for n, p in params]

    tensors = [(n, t.numpy()) for n, t in initial]
    tensors.append(("x", x.numpy()))
    tensors.append(("loss0", np.array([losses[0]], dtype=np.float32)))
    tensors += [("grad." + n, g.numpy()) for n, g in grads]
    tensors.append(("losses", np.array(losses, dtype=np.float32)))
    tensors += [("final." + n, t.numpy()) for n, t in final]
    metadata = {"config": config_toml(case), "torch_version": torch.__version__, "case": case["name"],
                "format": "cuae-golden-1"}
    path = os.path.join(out_dir, case["name"] + ".safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {os.path.getsize(path)} bytes; losses {' '.join(f'{l:.6g}' for l in losses)}")


CASES = [
    {
        "name": "deep_bce", "seed": 1234,
        "layers": [784, 64, 16, 8], "activation": "sigmoid", "code_activation": "identity",
        "output_activation": "sigmoid", "tied": False, "loss": "bce", "reduction": "sum",
        "optimizer": {"type": "adam", "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    },
    {
        "name": "tied_mse", "seed": 4321,
        "layers": [784, 48, 12], "activation": "gelu", "code_activation": "identity",
        "output_activation": "sigmoid", "tied": True, "loss": "mse", "reduction": "mean",
        "optimizer": {"type": "adamw", "lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.05},
    },
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("CUAE_FASHION_MNIST_DIR", DEFAULT_DATA_DIR))
    ap.add_argument("--out-dir", default=here)
    args = ap.parse_args()

    torch.set_num_threads(1)  # fixed reduction order, so reruns give the same bytes
    torch.set_default_dtype(torch.float32)
    images = read_idx_images(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz"), BATCH)
    for case in CASES:
        run_case(case, images, args.out_dir)


if __name__ == "__main__":
    main()
