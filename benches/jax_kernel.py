"""A JAX-written fused op (RMSNorm) through ``torch_tpu.pallas.custom_jax_kernel``
next to the same op written in torch on tpu (fused mode) and native torch CPU,
side by side in one run. Every timed call's result is read on the host. Ratios
are times over native CPU's, and last the JAX kernel's over torch on tpu's
(1.00x: the spliced kernel costs what the same op recorded from torch does).

    python benches/jax_kernel.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax.numpy as jnp
import torch

import torch_tpu
from torch_tpu import pallas


@pallas.custom_jax_kernel
def rms_norm_jax(x, w):
    return x * jnp.reciprocal(jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6)) * w


def rms_norm_torch(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-6) * w


def bench(fn, iters: int, repeats: int) -> float:
    fn().sum().item()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn().sum().item()
        samples.append((time.perf_counter() - t0) / iters)
    return statistics.median(samples)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    iters, repeats = (3, 1) if args.quick else (50, 5)
    for rows in (8, 512, 4096):
        x, w = torch.randn(rows, 1024), torch.randn(1024)
        xd, wd = x.to("tpu"), w.to("tpu")
        torch.testing.assert_close(rms_norm_jax(xd, wd).cpu(), rms_norm_torch(x, w), atol=1e-4, rtol=1e-4)
        t_cpu = bench(lambda x=x, w=w: rms_norm_torch(x, w), iters, repeats)
        t_tpu = bench(lambda x=xd, w=wd: rms_norm_torch(x, w), iters, repeats)
        t_jax = bench(lambda x=xd, w=wd: rms_norm_jax(x, w), iters, repeats)
        print(
            f"rms_norm [{rows}, 1024]: native cpu {t_cpu * 1e3:.3f} ms | torch on tpu {t_tpu * 1e3:.3f} ms "
            f"({t_tpu / t_cpu:.2f}x) | jax kernel on tpu {t_jax * 1e3:.3f} ms ({t_jax / t_cpu:.2f}x) | "
            f"jax kernel / torch on tpu {t_jax / t_tpu:.2f}x"
        )
    print(f"plugin: {torch_tpu.plugin_info()['plugin']}")


if __name__ == "__main__":
    main()
