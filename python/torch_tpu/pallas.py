"""JAX functions and Pallas kernels on tpu tensors, with TorchTPU's names:
``custom_jax_kernel`` (a decorator, or called with arguments) and ``jax_op``
(a ``torch.library`` custom op, so ``register_fake`` / ``register_autograd``
and ``torch.compile`` work).

How it runs today: the JAX function is jitted once per signature (shapes,
dtypes, static arguments) by JAX itself on its CPU backend; tpu tensors are
handed to it through DLPack after the pending fused graph runs (the call is a
cut point), and its results come back as tpu tensors. Pallas kernels run in
interpret mode there. Values, dtypes (bfloat16 and the integer types included)
and gradients (through ``jax.vjp``) are exact; ``input_output_aliases`` writes
the aliased outputs back into their inputs. Not yet: splicing the exported
StableHLO into our own module, which would fuse a kernel with the ops around
it and let ``donate_argnums`` reuse buffers; until then a kernel costs a
round trip through host memory (``donate_argnums`` is accepted and has no
effect).

Needs the optional extra: ``pip install 'torch-tpu[jax]'``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from torch_tpu import _core

__all__ = ["JaxCallable", "custom_jax_kernel", "jax_op"]


def _jax() -> Any:
    try:
        import jax
    except ImportError as e:
        raise ImportError("torch_tpu.pallas needs JAX: pip install 'torch-tpu[jax]' (or pip install jax)") from e
    return jax


def _x64() -> Any:
    """64-bit types as torch has them (JAX would silently narrow int64/float64 to 32 bits)."""
    jax = _jax()
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


def _to_jax(t: torch.Tensor) -> Any:
    jax = _jax()
    host = t.detach().to("cpu").contiguous()
    if host.dtype == torch.bool:  # DLPack's bool support differs between versions
        return jax.numpy.asarray(host.numpy())
    return jax.dlpack.from_dlpack(host)


def _to_torch(a: Any, device: torch.device) -> torch.Tensor:
    import numpy as np

    jax = _jax()
    if a.dtype == np.bool_:
        return torch.from_numpy(np.asarray(a)).to(device)
    host = torch.from_dlpack(jax.device_put(a, jax.devices("cpu")[0]))
    return host.to(device)


class JaxCallable:
    """A JAX function callable on torch tensors (see the module docstring)."""

    def __init__(
        self,
        jax_fn: Callable[..., Any],
        name: str | None = None,
        static_argnums: Sequence[int] = (),
        donate_argnums: Sequence[int] | None = None,
        input_output_aliases: Mapping[int, int] | None = None,
        **jit_kwargs: Any,
    ) -> None:
        self.jax_fn = jax_fn
        self.name = name or getattr(jax_fn, "__name__", "jax_kernel")
        self.static_argnums = tuple(static_argnums)
        self.donate_argnums = tuple(donate_argnums or ())
        self.input_output_aliases = dict(input_output_aliases or {})
        self._jitted = _jax().jit(jax_fn, static_argnums=self.static_argnums, **jit_kwargs)
        self._vjp_cache: dict[tuple, Any] = {}
        functools.update_wrapper(self, jax_fn, updated=())

    def _split(self, args: Sequence[Any]) -> tuple[list[int], list[torch.Tensor]]:
        idx = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and i not in self.static_argnums]
        return idx, [args[i] for i in idx]

    def _with_tensors(self, args: Sequence[Any], tensors: Sequence[Any]) -> list[Any]:
        """``args`` with its tensor arguments replaced by ``tensors``, in order."""
        full = list(args)
        for i, t in zip(self._split(args)[0], tensors):
            full[i] = t
        return full

    def _run(self, args: Sequence[Any]) -> tuple[Any, list[torch.Tensor]]:
        """Runs the kernel: the output pytree's structure and its leaves as tpu tensors."""
        jax = _jax()
        _, tensors = self._split(args)
        device = tensors[0].device if tensors else torch.device("tpu", torch.tpu.current_device())
        _core.cut("jax kernel")
        with _x64():
            out = self._jitted(*self._with_tensors(args, [_to_jax(t) for t in tensors]))
            leaves, tree = jax.tree_util.tree_flatten(out)
            return tree, [_to_torch(a, device) for a in leaves]

    def _alias(self, tensors: Sequence[torch.Tensor], flat: Sequence[torch.Tensor]) -> None:
        """``input_output_aliases``: aliased outputs are written into their inputs."""
        with torch.no_grad():
            for in_idx, out_idx in self.input_output_aliases.items():
                tensors[in_idx].copy_(flat[out_idx])

    def __call__(self, *args: Any) -> Any:
        _, tensors = self._split(args)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            tree_box: list[Any] = []
            flat = list(_JaxFunction.apply(self, args, tree_box, *tensors))
            tree = tree_box[0]
        else:
            tree, flat = self._run(args)
        self._alias(tensors, flat)
        return _jax().tree_util.tree_unflatten(tree, flat)

    def vjp(self, args: Sequence[Any], cotangents: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """Gradients of the kernel's outputs with respect to its tensor inputs, through ``jax.vjp``."""
        jax = _jax()
        idx, tensors = self._split(args)
        # Every non-tensor argument is a constant of the backward program: part of its key.
        key = tuple(None if i in idx else a for i, a in enumerate(args))
        if key not in self._vjp_cache:

            def grads(xs: Any, cts: Any) -> Any:
                out, pullback = jax.vjp(lambda *ys: self.jax_fn(*self._with_tensors(args, ys)), *xs)
                _, tree = jax.tree_util.tree_flatten(out)
                return pullback(jax.tree_util.tree_unflatten(tree, list(cts)))

            self._vjp_cache[key] = jax.jit(grads)
        _core.cut("jax kernel")
        with _x64():
            gs = self._vjp_cache[key]([_to_jax(t) for t in tensors], [_to_jax(c) for c in cotangents])
            return [_to_torch(g, tensors[0].device) for g in gs]


class _JaxFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, kernel: JaxCallable, args: tuple, tree_box: list, *tensors: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        tree, flat = kernel._run(args)
        tree_box.append(tree)  # autograd.Function returns tensors only: the structure goes back here
        ctx.kernel, ctx.args = kernel, args
        ctx.save_for_backward(*tensors)
        return tuple(flat)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
        args = ctx.kernel._with_tensors(ctx.args, ctx.saved_tensors)
        return (None, None, None, *ctx.kernel.vjp(args, grads))


def custom_jax_kernel(
    jax_fn: Callable[..., Any] | None = None,
    name: str | None = None,
    static_argnums: tuple[int, ...] = (),
    donate_argnums: list[int] | None = None,
    input_output_aliases: dict[int, int] | None = None,
    **jit_kwargs: Any,
) -> JaxCallable | Callable[[Callable[..., Any]], JaxCallable]:
    """Makes a JAX function (a Pallas kernel's JAX wrapper, say) callable on tpu tensors.

    Use as ``@custom_jax_kernel``, ``@custom_jax_kernel(static_argnums=(1,))`` or
    ``custom_jax_kernel(fn, ...)``. Tensor arguments become JAX arrays; static
    arguments are passed as they are and key the per-signature cache."""

    def wrap(fn: Callable[..., Any]) -> JaxCallable:
        return JaxCallable(fn, name, static_argnums, donate_argnums, input_output_aliases, **jit_kwargs)

    return wrap if jax_fn is None else wrap(jax_fn)


_SCALARS = {int: "int", float: "float", bool: "bool", str: "str"}


def _schema_type(annotation: Any, what: str) -> str:
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if annotation is inspect.Parameter.empty:
        return "Tensor"
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if any(k in str(text) for k in ("Array", "ndarray", "Tensor")):
        return "Tensor"
    raise TypeError(f"jax_op: cannot map the annotation {annotation!r} of {what} to a torch type")


def _signature_types(fn: Callable[..., Any]) -> tuple[list[tuple[str, str]], list[str] | None]:
    """``(name, torch type)`` per parameter, and the result types (``None``: one Tensor)."""
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn) if not isinstance(fn, functools.partial) else {}
    params = [(p.name, _schema_type(hints.get(p.name, p.annotation), p.name)) for p in sig.parameters.values()]
    ret = hints.get("return", sig.return_annotation)
    outs = [_schema_type(a, "the result") for a in typing.get_args(ret)] if typing.get_origin(ret) is tuple else None
    return params, outs


def jax_op(
    name: str,
    fn: Callable[..., Any],
    *,
    donate_argnums: Sequence[int] | None = None,
    input_output_aliases: Mapping[int, int] | None = None,
    **jit_kwargs: Any,
) -> Any:
    """A ``torch.library`` custom op ``name`` ("ns::op") running the JAX function ``fn``.

    ``fn``'s type annotations tell arrays (``jax.Array``) from static arguments
    (``int``, ``float``, ``bool``, ``str``). A fake implementation (from
    ``jax.eval_shape``) and an autograd formula (from ``jax.vjp``) are
    registered; ``op.register_fake`` / ``op.register_autograd`` replace them."""
    jax = _jax()
    params, outs = _signature_types(fn)
    returns_tuple = outs is not None
    schema = f"({', '.join(f'{t} {n}' for n, t in params)}) -> " + (f"({', '.join(outs)})" if outs else "Tensor")
    static = tuple(i for i, (_, t) in enumerate(params) if t != "Tensor")
    kernel = JaxCallable(fn, name, static, donate_argnums, input_output_aliases, **jit_kwargs)

    tensor_params = [n for n, t in params if t == "Tensor"]
    mutated = tuple(tensor_params[i] for i in kernel.input_output_aliases)
    if mutated:  # an aliased input is updated in place: the schema says so
        for n in mutated:
            schema = schema.replace(f"Tensor {n}", f"Tensor(a_{n}!) {n}", 1)

    def impl(*args: Any) -> Any:
        _, flat = kernel._run(args)
        kernel._alias(kernel._split(args)[1], flat)
        return tuple(flat) if returns_tuple else flat[0]

    op = torch.library.custom_op(name, impl, mutates_args=mutated, schema=schema)

    def fake(*args: Any) -> Any:
        shaped = [
            jax.ShapeDtypeStruct(tuple(a.shape), _jax_dtype(a.dtype)) if isinstance(a, torch.Tensor) else a
            for a in args
        ]
        with _x64():
            out = jax.eval_shape(kernel._jitted, *shaped)
        leaves = jax.tree_util.tree_leaves(out)
        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        made = [torch.empty(tuple(o.shape), dtype=_torch_dtype(o.dtype), device=device) for o in leaves]
        return tuple(made) if returns_tuple else made[0]

    op.register_fake(fake)

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        ctx.args = inputs

    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        gs = iter(kernel.vjp(ctx.args, grads))
        return tuple(next(gs) if isinstance(a, torch.Tensor) else None for a in ctx.args)

    if not mutated:  # PyTorch takes autograd formulas for functional ops only
        op.register_autograd(backward, setup_context=setup_context)
    return op


def _jax_dtype(d: torch.dtype) -> Any:
    import numpy as np

    if d == torch.bfloat16:
        return _jax().numpy.bfloat16
    return np.dtype(str(d).removeprefix("torch."))


def _torch_dtype(d: Any) -> torch.dtype:
    import numpy as np

    name = np.dtype(d).name
    return torch.bfloat16 if name == "bfloat16" else getattr(torch, name)
