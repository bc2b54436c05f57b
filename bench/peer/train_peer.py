#!/usr/bin/env python3
"""The PyTorch peer of bench/bench_train.cu: whole training steps (forward, backward, Adam) of the
same networks, in images per second, so that cuae's figures have a reference on the same GPU.

  python3 bench/peer/train_peer.py --quick --out peer.json     # about 2 minutes on an H100
  python3 bench/peer/train_peer.py --device cpu --smoke        # a seconds-long check without a GPU

The networks are those of bench_train's configs, built as host/models/deep.cpp and
host/models/conv.cpp build them (the initial weights do not matter for speed):
  dense_deep_784        784-1000-500-250-30, sigmoid hidden layers, linear code, mirrored decoder
                        (sigmoid, last layer linear: logits); batch 256 (and 4096: _b4096)
  conv_3x128x128        conv 3x3/2 (pad 1) 32-64-128-128 with ReLU, flatten (NHWC order), dense
                        code 256 (linear), dense back with ReLU, mirrored transposed convolutions
                        (output padding restoring the size; ReLU, last one linear); batch 64;
                        activations NHWC (channels_last), as cuae keeps them
  (full runs also: conv_1x28x28 batch 256, conv_3x256x256 batch 16, ae_784_400_20 batch 128)
Loss: binary cross-entropy on logits, summed over the pixels, averaged over the batch. Adam,
lr 1e-3 (PyTorch's fused implementation on CUDA). The benchmark names are bench_train's:
train/<case>/fp32 (no TF32 anywhere) and train/<case>/tf32 (TF32 in matmuls and convolutions).

Each benchmark runs in three modes: eager, torch.compile() (default mode) and
torch.compile(mode="reduce-overhead") (CUDA graphs). A step runs on a fixed batch already on the
device; after a warm-up (which includes compiling), R runs of N steps are timed with CUDA events
and the median run gives ms per step and images/s. cudnn.benchmark is on (PyTorch's usual
setting for fixed shapes). A mode that fails (a compilation error, for example) is recorded with
its error; the others still run. The JSON is rewritten after every measurement, so a run cut
short keeps what it measured. --budget-s stops starting new measurements once that many seconds
have passed (the rest are recorded as skipped).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("eager", "compile", "compile_reduce_overhead")

CASES = {
    "dense_deep_784": {"kind": "dense", "layers": [784, 1000, 500, 250, 30], "act": "sigmoid", "batch": 256},
    "dense_deep_784_b4096": {"kind": "dense", "layers": [784, 1000, 500, 250, 30], "act": "sigmoid", "batch": 4096},
    "conv_3x128x128": {"kind": "conv", "input": (3, 128, 128), "channels": [32, 64, 128, 128], "code": 256,
                       "act": "relu", "batch": 64},
    "conv_1x28x28": {"kind": "conv", "input": (1, 28, 28), "channels": [32, 64], "code": 30, "act": "relu", "batch": 256},
    "conv_3x256x256": {"kind": "conv", "input": (3, 256, 256), "channels": [32, 64, 128, 128], "code": 256,
                       "act": "relu", "batch": 16},
    "ae_784_400_20": {"kind": "dense", "layers": [784, 400, 20], "act": "relu", "batch": 128},
}
QUICK_CASES = ("dense_deep_784", "dense_deep_784_b4096", "conv_3x128x128")
# --smoke: the same kinds of network, small enough for a CPU in seconds.
SMOKE_CASES = {
    "dense_deep_784": {"kind": "dense", "layers": [64, 32, 16, 8], "act": "sigmoid", "batch": 8},
    "conv_3x128x128": {"kind": "conv", "input": (3, 16, 16), "channels": [4, 8], "code": 6, "act": "relu", "batch": 4},
}
ACT = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "identity": nn.Identity}


# ---------------------------------------------------------------------------------------------
# the networks
# ---------------------------------------------------------------------------------------------

def dense_autoencoder(layers: list[int], act: str) -> nn.Module:
    """Encoder layers[0] -> ... -> layers[-1] (activation on hidden layers, linear code), then the
    mirrored decoder (activation on hidden layers, the last layer linear: logits)."""
    depth = len(layers) - 1
    mods: list[nn.Module] = []
    for i in range(depth):
        mods.append(nn.Linear(layers[i], layers[i + 1]))
        if i + 1 < depth:
            mods.append(ACT[act]())
    for j in range(depth):
        i = depth - 1 - j
        mods.append(nn.Linear(layers[i + 1], layers[i]))
        if i > 0:
            mods.append(ACT[act]())
    return nn.Sequential(*mods)


def conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def deconv_out(n: int, k: int, s: int, p: int, d: int = 1, op: int = 0) -> int:
    return (n - 1) * s - 2 * p + d * (k - 1) + 1 + op


class ConvAutoencoder(nn.Module):
    """cuae's convolutional autoencoder with mirrored decoder: conv k3/2 'same' padding blocks,
    a dense code after flattening the NHWC feature map, and transposed convolutions back. Input
    and output are image rows in HWC order, viewed as channels_last NCHW tensors at no cost."""

    def __init__(self, input_chw, channels, code, act, kernel=3, stride=2):
        super().__init__()
        c, h, w = input_chw
        pad = (kernel - 1) // 2
        self.input_chw = (c, h, w)
        shapes = [(c, h, w)]
        enc: list[nn.Module] = []
        for ch in channels:
            enc += [nn.Conv2d(shapes[-1][0], ch, kernel, stride, pad), ACT[act]()]
            shapes.append((ch, conv_out(shapes[-1][1], kernel, stride, pad), conv_out(shapes[-1][2], kernel, stride, pad)))
        self.encoder = nn.Sequential(*enc)
        self.fmap = shapes[-1]
        flat = self.fmap[0] * self.fmap[1] * self.fmap[2]
        self.code = nn.Linear(flat, code)
        self.expand = nn.Linear(code, flat)
        self.expand_act = ACT[act]()
        dec: list[nn.Module] = []
        for i in reversed(range(len(channels))):
            (tc, th, tw), (cc, chh, cw) = shapes[i], shapes[i + 1]
            op = (th - deconv_out(chh, kernel, stride, pad), tw - deconv_out(cw, kernel, stride, pad))
            dec.append(nn.ConvTranspose2d(cc, tc, kernel, stride, pad, output_padding=op))
            if i > 0:
                dec.append(ACT[act]())
        self.decoder = nn.Sequential(*dec)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        n = rows.shape[0]
        c, h, w = self.input_chw
        x = rows.view(n, h, w, c).permute(0, 3, 1, 2)              # NHWC memory, NCHW view
        f = self.encoder(x).permute(0, 2, 3, 1).reshape(n, -1)     # flattened in NHWC order
        u = self.expand_act(self.expand(self.code(f)))
        fc, fh, fw = self.fmap
        y = self.decoder(u.view(n, fh, fw, fc).permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1).reshape(n, -1)                # logits, image rows (HWC)


class TrainLoss(nn.Module):
    """The model and its loss: BCE on logits summed over pixels, mean over the batch."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.model(x), x, reduction="sum") / x.shape[0]


def build(case: dict, device: str):
    if case["kind"] == "dense":
        model = dense_autoencoder(case["layers"], case["act"])
        d = case["layers"][0]
        desc = "-".join(map(str, case["layers"])) + f" {case['act']}, linear code, mirrored decoder"
    else:
        model = ConvAutoencoder(case["input"], case["channels"], case["code"], case["act"])
        d = math.prod(case["input"])
        desc = (f"{'x'.join(map(str, case['input']))} conv3x3/2 {'-'.join(map(str, case['channels']))} "
                f"{case['act']}, code {case['code']}, mirrored deconv, channels_last")
    model = model.to(device)
    if case["kind"] == "conv":
        model = model.to(memory_format=torch.channels_last)
    g = torch.Generator(device="cpu").manual_seed(7)
    x = torch.rand(case["batch"], d, generator=g).to(device)
    return model, x, desc


# ---------------------------------------------------------------------------------------------
# precision, timing
# ---------------------------------------------------------------------------------------------

def set_tf32(on: bool) -> dict:
    """TF32 in cuBLAS matmuls and cuDNN convolutions on or off (the fp32_precision settings where
    this torch has them, else allow_tf32); returns the settings read back."""
    mm, cd = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(mm, "fp32_precision") and hasattr(getattr(cd, "conv", None), "fp32_precision"):
        mm.fp32_precision = "tf32" if on else "ieee"
        cd.conv.fp32_precision = "tf32" if on else "ieee"
        return {"matmul.fp32_precision": mm.fp32_precision, "cudnn.conv.fp32_precision": cd.conv.fp32_precision}
    mm.allow_tf32 = on
    cd.allow_tf32 = on
    return {"matmul.allow_tf32": mm.allow_tf32, "cudnn.allow_tf32": cd.allow_tf32}


class Timer:
    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def measure(self, fn, steps: int) -> float:
        """Milliseconds per step over a run of `steps` steps."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / steps
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - t0) * 1e3 / steps


def measure(case: dict, mode: str, tf32: bool, device: str, reps: dict) -> dict:
    torch._dynamo.reset()
    settings = set_tf32(tf32) if device.startswith("cuda") else {}
    torch.manual_seed(0)
    model, x, _ = build(case, device)
    loss_mod = TrainLoss(model)
    fused = device.startswith("cuda")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    if mode == "eager":
        fwd = loss_mod
    elif mode == "compile":
        fwd = torch.compile(loss_mod, dynamic=False)
    else:
        fwd = torch.compile(loss_mod, mode="reduce-overhead", dynamic=False)
    mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
    graphs = mode == "compile_reduce_overhead" and mark is not None
    last = {}

    def step():
        if graphs:
            mark()
        opt.zero_grad(set_to_none=True)
        loss = fwd(x)
        loss.backward()
        opt.step()
        last["loss"] = loss

    timer = Timer(device)
    t0 = time.perf_counter()
    step()
    timer.sync()
    first_s = time.perf_counter() - t0
    for _ in range(reps["warmup"]):
        step()
    timer.sync()
    runs = [timer.measure(step, reps["steps"]) for _ in range(reps["runs"])]
    loss = float(last["loss"].detach())
    ms = statistics.median(runs)
    out = {"ms_per_step": ms, "images_per_s": case["batch"] / (ms * 1e-3), "runs_ms_per_step": runs,
           "first_step_s": first_s, "final_loss": loss}
    if settings:
        out["tf32_settings"] = settings
    if not math.isfinite(loss):
        out["error"] = f"the loss is not finite ({loss})"
    del opt, fwd, loss_mod, model, x, last
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def write_json(path: str | None, doc: dict):
    text = json.dumps(doc, indent=2) + "\n"
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="PyTorch peer of bench_train: training steps per second")
    ap.add_argument("--quick", action="store_true", help="bench_train's quick cases, fewer repetitions (about 2 minutes)")
    ap.add_argument("--smoke", action="store_true", help="tiny networks and one short run each: checks the script, not speed")
    ap.add_argument("--out", help="JSON file to write (rewritten after every measurement)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (for a smoke test only)")
    ap.add_argument("--cases", help="comma-separated case names (default: all, or the quick ones)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--precisions", default="fp32,tf32", help="fp32, tf32 or both")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no new measurement after this many seconds (default: 110 with --quick, none otherwise)")
    ap.add_argument("--warmup", type=int, help="warm-up steps after the first (compiling) one")
    ap.add_argument("--runs", type=int, help="timed runs (the median is reported)")
    ap.add_argument("--steps", type=int, help="steps per timed run")
    a = ap.parse_args(argv)

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("train_peer: torch sees no CUDA device (use --device cpu for a smoke test)", file=sys.stderr)
        return 2
    cases = SMOKE_CASES if a.smoke else CASES
    names = a.cases.split(",") if a.cases else list(SMOKE_CASES if a.smoke else QUICK_CASES if a.quick else CASES)
    unknown = [n for n in names if n not in cases]
    if unknown:
        print(f"train_peer: unknown case(s) {', '.join(unknown)}; known: {', '.join(cases)}", file=sys.stderr)
        return 2
    modes = [m for m in a.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        print(f"train_peer: modes are {', '.join(MODES)}", file=sys.stderr)
        return 2
    precisions = [p for p in a.precisions.split(",") if p in ("fp32", "tf32")]
    reps = {"warmup": 2, "runs": 2, "steps": 2} if a.smoke else \
        {"warmup": 5, "runs": 5, "steps": 10} if a.quick else {"warmup": 10, "runs": 11, "steps": 20}
    for k in ("warmup", "runs", "steps"):
        if getattr(a, k) is not None:
            reps[k] = max(1, getattr(a, k))
    budget = a.budget_s if a.budget_s is not None else (110.0 if a.quick else None)

    torch.backends.cudnn.benchmark = True
    cuda = a.device.startswith("cuda")
    doc = {
        "tool": "bench/peer/train_peer.py",
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": a.quick,
        "smoke": a.smoke,
        "method": {
            "step": "zero_grad, forward + loss, backward, Adam step on a fixed batch already on the device",
            "loss": "binary_cross_entropy_with_logits summed over pixels / batch",
            "optimizer": "Adam lr 1e-3" + (" (fused)" if cuda else ""),
            "timing": "CUDA events around runs of `steps` steps; median of `runs` runs" if cuda else "perf_counter",
            "cudnn_benchmark": True,
            **reps,
        },
        "benchmarks": {},
        "budget_s": budget,
    }
    for name in names:
        model, _, desc = build(cases[name], "cpu")
        params = sum(p.numel() for p in model.parameters())
        for prec in precisions:
            doc["benchmarks"][f"train/{name}/{prec}"] = {"case": name, "precision": prec, "batch": cases[name]["batch"],
                                                         "model": desc, "params": params, "modes": {}}
    t_start = time.perf_counter()
    for mode in modes:
        for name in names:
            for prec in precisions:
                bname = f"train/{name}/{prec}"
                entry = doc["benchmarks"][bname]
                spent = time.perf_counter() - t_start
                if budget is not None and spent > budget:
                    entry["modes"][mode] = {"skipped": f"the time budget of {budget:.0f} s was used up"}
                    continue
                if mode != "eager" and not hasattr(torch, "compile"):
                    entry["modes"][mode] = {"error": "this torch has no torch.compile"}
                    continue
                try:
                    res = measure(cases[name], mode, prec == "tf32", a.device, reps)
                except Exception as e:  # a failing mode is recorded, the others go on
                    traceback.print_exc()
                    res = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]}
                    try:
                        torch._dynamo.reset()
                        if cuda:
                            torch.cuda.empty_cache()
                    except Exception:
                        pass
                entry["modes"][mode] = res
                shown = f"{res['images_per_s']:12,.0f} images/s  {res['ms_per_step']:8.3f} ms/step  (first step {res['first_step_s']:.1f} s)" \
                    if "images_per_s" in res else f"error: {res.get('error')}"
                print(f"{bname:<36} {mode:<24} {shown}", flush=True)
                doc["elapsed_s"] = round(time.perf_counter() - t_start, 1)
                write_json(a.out, doc)
    doc["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    write_json(a.out, doc)
    if not a.out:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
