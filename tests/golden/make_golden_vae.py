#!/usr/bin/env python3
"""Writes tests/golden/vae_step.safetensors: one training step of a small variational autoencoder in
PyTorch, which tests/test_golden_vae.cpp checks cuae against.

The model (cuae's [model] variational = true, layers = [784, 64, 8]):

  h      = relu(x·W0ᵀ + b0)                 encoder.0   [64, 784]
  stats  = h·W1ᵀ + b1                        encoder.1   [16, 64]: the Gaussian head, 2d outputs
  μ, lv  = stats[:, :8], stats[:, 8:]        (lv = log σ²)
  z      = μ + exp(½·lv)·ε                   the reparameterization node "z"
  g      = relu(z·D0ᵀ + c0)                  decoder.0   [64, 8]
  logits = g·D1ᵀ + c1                        decoder.1   [784, 64]
  loss   = (1/B)·Σ_i Σ_pixels BCEWithLogits(logits, x) + β·(1/B)·Σ_i KL_i,
           KL_i = −½·Σ_j (1 + lv_ij − μ_ij² − exp(lv_ij))

ε is cuae's own noise, reproduced here: the counter-based generator of kernels/philox.hpp
(Philox4x32-10, key = (lo, hi) of the op's seed, counter = (lo, hi) of the group g = e/4 and
(lo, hi) of the step; element e = i·8 + j; Box-Muller on words (0, 1) for elements 4g, 4g+1 and
(2, 3) for 4g+2, 4g+3). The op's seed is philox_mix_seed(run seed, fnv1a("z")) as in
host/graph/executor.cpp, and the first train_step() draws with step 1.

The file holds (float32 unless noted):

  <param>              the initial weights under cuae's names, stored as BF16: they are drawn
                       uniform ±1/sqrt(fan_in) (biases ±0.05) and rounded to bfloat16 *before* use,
                       so the BF16 values are exactly the weights the reference used (this halves
                       the file)
  x                    [16, 784]: the first 16 Fashion-MNIST test images / 255
  eps                  [16, 8]: the ε computed here
  loss0 [1], recon0 [1], kl0 [1]   the objective at the initial weights and its two terms
  grad.<param>         the gradient of every parameter except the two large weights, whose gradients
                       are rank ≤ 16 and stored as their factors (lossless, a fifth of the size):
  grad_dy.<param>      [16, out]: ∂loss/∂(that layer's pre-activation output), from PyTorch's
                       backward; the gradient is grad_dy.<p>ᵀ · <input>, the input tensor named in
                       __metadata__ "grad_in.<param>" ("x" for encoder.0.weight, "act.decoder.0"
                       for decoder.1.weight). This script checks that the product (in float64) equals
                       PyTorch's own weight gradient to float32 rounding.
  act.decoder.0        [16, 64]: g, the input of decoder.1
  __metadata__         config (TOML, cuae's format), torch_version, seed, node, z_seed (the op's
                       seed, decimal), step, seed_derivation, grad_in.<param>, format

A PyTorch rerun in float64 from the same float32 data measures the float32 reference's own error;
it and the gradient changes that plausible engine bugs would cause are printed, to size the test's
tolerances. safetensors is written by hand (json + struct + numpy).

Usage: python3 tests/golden/make_golden_vae.py [--data-dir DIR] [--out-dir DIR]
The data directory defaults to $CUAE_FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist.
"""

import argparse
import gzip
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

BATCH = 16
LAYERS = [784, 64, 8]  # input, hidden, latent d
SEED = 2718
BETA = 1.0
NODE = "z"  # the reparameterization node's name in cuae's graph
STEP = 1  # the first train_step() draws with step 1
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


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

def bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def round_bf16(a):
    """The float32 values nearest to `a` that bfloat16 represents exactly."""
    return (bf16_bits(a).astype("<u4") << 16).view("<f4")


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, float32 ndarray, dtype "F32" | "BF16") in data order."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs = []
    offset = 0
    for name, arr, dtype in tensors:
        a = np.ascontiguousarray(arr, dtype="<f4")
        if dtype == "BF16":
            bits = bf16_bits(a)
            assert np.array_equal((bits.astype("<u4") << 16).view("<f4"), a), f"{name} is not BF16-exact"
            b = bits.tobytes()
        else:
            b = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
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


# ---- cuae's random numbers (kernels/philox.hpp, host/graph/executor.cpp) ------------------------

def fnv1a(s, h=0xCBF29CE484222325):
    for byte in s.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def philox_mix_seed(seed, stream):
    """splitmix64's finaliser over seed and stream, with C++'s wrap-around uint64 arithmetic."""
    z = seed ^ ((stream + 0x9E3779B97F4A7C15 + ((seed << 6) & M64) + (seed >> 2)) & M64)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def philox4x32_10(c, k):
    c0, c1, c2, c3 = c
    k0, k1 = k
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        hi0, lo0 = (p0 >> 32) & M32, p0 & M32
        hi1, lo1 = (p1 >> 32) & M32, p1 & M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def philox_group(seed, step, g):
    return philox4x32_10((g & M32, g >> 32, step & M32, step >> 32), (seed & M32, seed >> 32))


# Random123's known-answer vectors (kat_vectors, philox4x32 10 rounds): the port must reproduce them.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M32, M32, M32, M32), (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def f32(v):
    return np.float32(v)


def philox_normal2(wa, wb):
    """Box-Muller in float32 as philox_normal2 computes it. Each float operation is evaluated in
    float64 and rounded once to float32, i.e. correctly rounded: C's logf/sqrtf/cosf/sinf agree with
    it to an ulp or so (sqrt and the products exactly)."""
    u1 = f32(((wa >> 8) + 1) * 2.0**-24)  # exact
    u2 = f32((wb >> 8) * 2.0**-24)  # exact
    r = f32(np.sqrt(np.float64(f32(-2.0 * np.float64(f32(np.log(np.float64(u1))))))))
    t = f32(np.float64(f32(6.283185307179586)) * np.float64(u2))
    n0 = f32(np.float64(r) * np.float64(f32(np.cos(np.float64(t)))))
    n1 = f32(np.float64(r) * np.float64(f32(np.sin(np.float64(t)))))
    return n0, n1


def cuae_normals(seed, step, count):
    out = np.empty(count, dtype=np.float32)
    for g in range((count + 3) // 4):
        w = philox_group(seed, step, g)
        n = philox_normal2(w[0], w[1]) + philox_normal2(w[2], w[3])
        for j in range(4):
            if 4 * g + j < count:
                out[4 * g + j] = n[j]
    return out


def check_ports():
    for ctr, key, want in KAT:
        got = philox4x32_10(ctr, key)
        assert got == want, f"philox port: {[hex(v) for v in got]} != {[hex(v) for v in want]}"
        # the same through philox_group's (seed, step, g) convention
        got = philox_group(key[0] | key[1] << 32, ctr[2] | ctr[3] << 32, ctr[0] | ctr[1] << 32)
        assert got == want
    # FNV-1a 64 of "a" and "foobar" (the published test values)
    assert fnv1a("") == 0xCBF29CE484222325
    assert fnv1a("a") == 0xAF63DC4C8601EC8C
    assert fnv1a("foobar") == 0x85944171F73967E8
    # splitmix64's first output from state 0 is mix(0x9E3779B97F4A7C15) = 0xE220A8397B1DCDAF; with
    # seed 0 philox_mix_seed(0, s) is exactly that finaliser of s + golden gamma
    assert philox_mix_seed(0, 0) == 0xE220A8397B1DCDAF
    # the normal of the largest radius at angle 0 (tests/test_ops_random.cpp pins this too)
    n0, n1 = philox_normal2(0, 0)
    assert n1 == 0.0 and abs(float(n0) - np.sqrt(-2.0 * np.log(2.0**-24))) < 1e-6


# ---- the model ---------------------------------------------------------------------------------

PARAM_SHAPES = [
    ("encoder.0.weight", (LAYERS[1], LAYERS[0])),
    ("encoder.0.bias", (LAYERS[1],)),
    ("encoder.1.weight", (2 * LAYERS[2], LAYERS[1])),
    ("encoder.1.bias", (2 * LAYERS[2],)),
    ("decoder.0.weight", (LAYERS[1], LAYERS[2])),
    ("decoder.0.bias", (LAYERS[1],)),
    ("decoder.1.weight", (LAYERS[0], LAYERS[1])),
    ("decoder.1.bias", (LAYERS[0],)),
]
FACTORED = {"encoder.0.weight": "x", "decoder.1.weight": "act.decoder.0"}


def init_parameters(gen):
    params = {}
    for name, shape in PARAM_SHAPES:
        u = torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1
        bound = 1.0 / float(np.sqrt(shape[1])) if name.endswith(".weight") else 0.05
        params[name] = round_bf16((u * bound).numpy())
    return params


def objective(p, x, eps, beta=BETA, sigma_power=0.5, kl_lv_half=True):
    """Returns (loss, recon, kl, intermediates). sigma_power and kl_lv_half exist only to measure
    how far plausible engine bugs would move the gradients."""
    d = LAYERS[2]
    B = x.shape[0]
    a0 = F.linear(x, p["encoder.0.weight"], p["encoder.0.bias"])
    h = torch.relu(a0)
    stats = F.linear(h, p["encoder.1.weight"], p["encoder.1.bias"])
    mu, lv = stats[:, :d], stats[:, d:]
    z = mu + torch.exp(sigma_power * lv) * eps
    g = torch.relu(F.linear(z, p["decoder.0.weight"], p["decoder.0.bias"]))
    logits = F.linear(g, p["decoder.1.weight"], p["decoder.1.bias"])
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / B
    ex = torch.exp(lv) if kl_lv_half else torch.exp(lv) ** 2  # second form: a wrong d/dlv
    kl = (-0.5 * (1 + lv - mu * mu - ex).sum(dim=1)).sum() / B
    return recon + beta * kl, recon, kl, {"a0": a0, "g": g, "logits": logits}


def step(params_np, x_np, eps_np, dtype, **kw):
    p = {n: torch.tensor(v, dtype=dtype, requires_grad=True) for n, v in params_np.items()}
    x = torch.tensor(x_np, dtype=dtype)
    eps = torch.tensor(eps_np, dtype=dtype)
    loss, recon, kl, mid = objective(p, x, eps, **kw)
    for t in (mid["a0"], mid["logits"]):
        t.retain_grad()
    loss.backward()
    grads = {n: t.grad.detach().numpy() for n, t in p.items()}
    return {
        "loss": loss.item(), "recon": recon.item(), "kl": kl.item(), "grads": grads,
        "dy.encoder.0.weight": mid["a0"].grad.detach().numpy(),
        "dy.decoder.1.weight": mid["logits"].grad.detach().numpy(),
        "g": mid["g"].detach().numpy(),
    }


def nerr(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def config_toml():
    layers = ", ".join(str(w) for w in LAYERS)
    return (
        "# golden case vae_step (tests/golden/make_golden_vae.py)\n"
        "[model]\n"
        'type = "deep"\n'
        "variational = true\n"
        f"layers = [{layers}]\n"
        'activation = "relu"\n'
        'output_activation = "sigmoid"\n'
        "\n[vae]\n"
        f"beta = {BETA!r}\n"
        'likelihood = "bernoulli"\n'
        "\n[loss]\n"
        'type = "bce"\n'
        'reduction = "sum"\n'
        "\n[train]\n"
        f"batch_size = {BATCH}\n"
        "epochs = 1\n"
        f"seed = {SEED}\n"
        'device = "cpu"\n'
    )


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("CUAE_FASHION_MNIST_DIR", DEFAULT_DATA_DIR))
    ap.add_argument("--out-dir", default=here)
    args = ap.parse_args()

    torch.set_num_threads(1)  # fixed reduction order, so reruns give the same bytes
    check_ports()

    x = read_idx_images(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz"), BATCH)
    params = init_parameters(torch.Generator().manual_seed(SEED))
    z_seed = philox_mix_seed(SEED, fnv1a(NODE))
    eps = cuae_normals(z_seed, STEP, BATCH * LAYERS[2]).reshape(BATCH, LAYERS[2])

    ref = step(params, x, eps, torch.float32)
    r64 = step(params, x, eps, torch.float64)

    # The factored gradients reproduce PyTorch's own weight gradients to float32 rounding.
    inputs = {"x": x, "act.decoder.0": ref["g"]}
    for pname, inp in FACTORED.items():
        prod = ref["dy." + pname].astype(np.float64).T @ inputs[inp].astype(np.float64)
        e = nerr(prod, ref["grads"][pname])
        print(f"factored grad.{pname}: dyᵀ·{inp} vs torch's grad: norm err {e:.3g}")
        assert e < 1e-6, pname

    print(f"seed {SEED}, node {NODE!r}: fnv1a {fnv1a(NODE):#018x}, op seed {z_seed} ({z_seed:#018x}), step {STEP}")
    print(f"eps: mean {eps.mean():.4f} std {eps.std():.4f} range [{eps.min():.4f}, {eps.max():.4f}]")
    print(f"loss0 {ref['loss']:.8g} = recon {ref['recon']:.8g} + kl {ref['kl']:.8g}")
    print("float32 reference vs float64 (same data):")
    print(f"  loss rel err {abs(ref['loss'] - r64['loss']) / abs(r64['loss']):.3g}")
    for n, _ in PARAM_SHAPES:
        print(f"  grad.{n:18s} norm {np.linalg.norm(ref['grads'][n]):.4g}  norm err {nerr(ref['grads'][n], r64['grads'][n]):.3g}")

    # How far plausible bugs move the result (float64), to judge the tolerances.
    def worst(other):
        return max(nerr(other["grads"][n], r64["grads"][n]) for n, _ in PARAM_SHAPES), \
            abs(other["loss"] - r64["loss"]) / abs(r64["loss"])
    bugs = {
        "z = mu (no sampling)": step(params, x, np.zeros_like(eps), torch.float64),
        "eps of step 0": step(params, x, cuae_normals(z_seed, 0, eps.size).reshape(eps.shape), torch.float64),
        "eps of step 2": step(params, x, cuae_normals(z_seed, 2, eps.size).reshape(eps.shape), torch.float64),
        "eps one ulp off everywhere": step(params, x, np.nextafter(eps, np.float32(np.inf)), torch.float64),
        "sigma = exp(lv)": step(params, x, eps, torch.float64, sigma_power=1.0),
        "KL d/dlv wrong": step(params, x, eps, torch.float64, kl_lv_half=False),
        "beta = 0.99": step(params, x, eps, torch.float64, beta=0.99),
    }
    print("bug sensitivity (worst grad norm err, loss rel err vs float64):")
    for name, b in bugs.items():
        g, l = worst(b)
        print(f"  {name:28s} grad {g:.3g}  loss {l:.3g}")

    tensors = [(n, params[n], "BF16") for n, _ in PARAM_SHAPES]
    tensors.append(("x", x, "F32"))
    tensors.append(("eps", eps, "F32"))
    tensors.append(("loss0", np.array([ref["loss"]], dtype=np.float32), "F32"))
    tensors.append(("recon0", np.array([ref["recon"]], dtype=np.float32), "F32"))
    tensors.append(("kl0", np.array([ref["kl"]], dtype=np.float32), "F32"))
    for n, _ in PARAM_SHAPES:
        if n in FACTORED:
            tensors.append(("grad_dy." + n, ref["dy." + n], "F32"))
        else:
            tensors.append(("grad." + n, ref["grads"][n], "F32"))
    tensors.append(("act.decoder.0", ref["g"], "F32"))
    metadata = {
        "config": config_toml(),
        "torch_version": torch.__version__,
        "case": "vae_step",
        "format": "cuae-golden-vae-1",
        "seed": str(SEED),
        "node": NODE,
        "step": str(STEP),
        "z_seed": str(z_seed),
        "seed_derivation": "z_seed = kern::philox_mix_seed(seed, fnv1a64(node)), fnv1a64 from offset "
                           "0xcbf29ce484222325 with prime 0x100000001b3; eps[i, j] = normal of element "
                           "e = i*8 + j drawn from (z_seed, step) as kernels/philox.hpp",
        "param_dtype": "BF16 (the exact values used)",
    }
    for n, inp in FACTORED.items():
        metadata["grad_in." + n] = inp
    path = os.path.join(args.out_dir, "vae_step.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
