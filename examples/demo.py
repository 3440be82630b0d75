"""Trains a small MLP on a synthetic classification task on device "tpu".

    python examples/demo.py [--steps 50]

Prints the loss as it falls, the PJRT platform in use and the runtime's metrics.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

import torch_tpu


def make_data(n: int, d: int, classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs around random class centers."""
    centers = torch.randn(classes, d, generator=generator) * 0.4
    y = torch.randint(0, classes, (n,), generator=generator)
    x = centers[y] + torch.randn(n, d, generator=generator)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--mode", default=None, help="eager mode: debug, strict or fused (default: the runtime's)")
    parser.add_argument("--device", default="tpu", help="run on another device (e.g. cpu) to compare")
    args = parser.parse_args()
    if args.mode:
        torch_tpu.set_eager_mode(args.mode)

    device = torch.device(args.device)
    print(
        f"platform: {torch_tpu.platform()} ({torch.tpu.get_device_name()}), device: {device}, "
        f"mode: {torch_tpu.get_eager_mode()}"
    )

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x_all, y_all = make_data(4096, 32, 8, g)
    x_all, y_all = x_all.to(device), y_all.to(device)

    model = nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 8)
    )
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, x_all.shape[0], (args.batch,), generator=g).to(device)
        x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 1 or step % 10 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    elapsed = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        accuracy = (model(x_all).argmax(1) == y_all).float().mean().item()
    print(f"trained {args.steps} steps in {elapsed:.2f} s; accuracy {accuracy:.1%}")
    print()
    print(torch_tpu.metrics_report())


if __name__ == "__main__":
    main()
