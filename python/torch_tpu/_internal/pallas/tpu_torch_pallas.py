"""TorchTPU's runtime module of custom kernels: ``register_custom_kernel``,
``lookup_custom_kernel``, ``call_custom_kernel`` (keyword arguments ``inputs``,
``output_shapes``, ``donate_argnums``, ``device_assignment``).

A kernel registered here is a spliced StableHLO function called through the op
``torch_tpu::stablehlo_call``: it is recorded like any other op (fused with its
neighbours in fused mode)."""

from __future__ import annotations

from torch_tpu.pallas import call_custom_kernel, lookup_custom_kernel, register_custom_kernel

__all__ = ["call_custom_kernel", "lookup_custom_kernel", "register_custom_kernel"]
