"""TorchTPU's ``torch_tpu._internal.pallas.pallas``, as Helion's Pallas launcher imports it.

Everything here is ``torch_tpu.pallas``'s: ``JaxCallable`` (TorchTPU's
constructor: ``name, jit_fn, trace_key, static_argnums, donate_argnums,
input_output_aliases, mesh, input_partition_specs``), the placeholders, the
invocation key and the default mesh."""

from __future__ import annotations

from torch_tpu.pallas import (
    JaxCallable,
    _get_kernel_invocation_key,
    custom_jax_kernel,
    get_default_pallas_mesh,
    jax_op,
    jax_placeholder,
    jax_placeholders,
    torch_placeholder,
)

__all__ = [
    "JaxCallable",
    "_get_kernel_invocation_key",
    "custom_jax_kernel",
    "get_default_pallas_mesh",
    "jax_op",
    "jax_placeholder",
    "jax_placeholders",
    "torch_placeholder",
]
