#!/usr/bin/env python3
"""PyTorch eager's side of bench/cpu/compare.sh: trains the network of a cuae config on
Fashion-MNIST on the CPU, as `cuae train` does (shuffled mini-batches gathered from the training
images in memory, BCE on logits summed per image and averaged over the batch, Adam), and prints
one JSON line per epoch with the training loop's images per second (data loading excluded, as in
cuae's metrics.csv).

  torch_epoch.py --model deep|conv --batch 128 --lr 1e-3 --epochs 1 --max-train 60000 --threads 2

The networks are bench/peer/train_peer.py's (the PyTorch peer of bench_train): configs/deep.toml
is dense_deep_784's 784-1000-500-250-30 sigmoid stack, configs/conv.toml conv_1x28x28's two
strided 3x3 convolutions (32, 64 channels, ReLU) around a 30-unit code, channels_last.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peer"))
import train_peer  # noqa: E402  (the networks)


def load_idx_images(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051:
        raise SystemExit(f"{path}: not an IDX image file (magic {magic})")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols).astype(np.float32) / 255.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("deep", "conv"), required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-train", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default=os.environ.get("CUAE_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images = torch.from_numpy(load_idx_images(os.path.join(args.data, "train-images-idx3-ubyte.gz")))
    if args.max_train > 0:
        images = images[: args.max_train]
    case = dict(train_peer.CASES["dense_deep_784" if args.model == "deep" else "conv_1x28x28"])
    case["batch"] = args.batch
    model, _, desc = train_peer.build(case, "cpu")
    step_loss = train_peer.TrainLoss(model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    n = images.shape[0]
    steps = n // args.batch
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        t0 = time.perf_counter()
        for s in range(steps):
            x = images[order[s * args.batch:(s + 1) * args.batch]]
            if args.model == "conv":
                x = x.contiguous()
            loss = step_loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        dt = time.perf_counter() - t0
        print(json.dumps({"framework": "pytorch-eager", "torch": torch.__version__, "model": args.model,
                          "network": desc, "epoch": epoch, "images": steps * args.batch,
                          "images_per_sec": steps * args.batch / dt, "seconds": dt,
                          "train_loss": total / steps, "threads": torch.get_num_threads()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
