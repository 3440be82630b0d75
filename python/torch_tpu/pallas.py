"""JAX functions and Pallas kernels on tpu tensors, with TorchTPU's names:
``custom_jax_kernel`` (a decorator, or called with arguments) and ``jax_op``
(a ``torch.library`` custom op, so ``register_fake`` / ``register_autograd``
and ``torch.compile`` work).

How it runs: the JAX function is lowered once per signature (shapes, dtypes,
static arguments) to StableHLO for the platform in use (Pallas kernels in
interpret mode on the CPU plugin), its functions are renamed and handed to
the runtime as private functions of our own module (the op
``torch_tpu::stablehlo_call``, lowered to a ``func.call`` in
``crates/tpu-lower/src/external.rs``). So a kernel is recorded like any other
op: in fused mode it runs in the same XLA program as the ops around it, in
strict and debug modes as its own; nothing goes through host memory.
Gradients come from ``jax.vjp``, exported the same way. With
``input_output_aliases`` the aliased results are written straight into their
inputs, whose buffers XLA then updates in place (donation).

Needs the optional extra: ``pip install 'torch-tpu[jax]'``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

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


_FUNC_NAME = re.compile(r"func\.func (?:public |private )?@([\w.$-]+)\(")
# Attribute dictionaries of a signature (``{jax.result_info = ...}``): JAX's
# dialect is unknown to the plugin's parser, and they say nothing we need.
_ATTRS = re.compile(r"\s*\{[^{}]*\}")


def _splice(module_text: str) -> tuple[str, str]:
    """JAX's module as private functions with names of their own: ``(symbol, functions)``.

    Names come from the content, so one kernel always gets the same ones (a
    program calling it twice defines it once; the graph's hash is stable)."""
    symbol = "jax_" + hashlib.sha256(module_text.encode()).hexdigest()[:16]
    lines = module_text.strip().splitlines()
    if not lines[0].startswith("module") or lines[-1].strip() != "}":
        raise RuntimeError("torch_tpu.pallas: unexpected StableHLO module from JAX:\n" + module_text[:400])
    body = "\n".join(lines[1:-1])
    for name in set(_FUNC_NAME.findall(body)):
        body = re.sub(rf"@{re.escape(name)}(?![\w.$-])", f"@{symbol}_{name}", body)
    out = []
    for line in body.splitlines():
        if line.lstrip().startswith("func.func"):
            head = line.rstrip()
            opened = head.endswith("{")
            head = _ATTRS.sub("", head[:-1] if opened else head).replace("func.func public", "func.func private")
            line = head + (" {" if opened else "")
        out.append(line)
    return f"{symbol}_main", "\n".join(out)


def _jax_platform() -> str:
    from torch_tpu import platform

    return {"cuda": "cuda", "rocm": "rocm", "tpu": "tpu"}.get(platform(), "cpu")


_CALL_OP: Any = None


def _call_op() -> Any:
    """``torch_tpu::stablehlo_call``: the runtime records it as a ``func.call`` of the functions given."""
    global _CALL_OP
    if _CALL_OP is None:
        lib = torch.library.Library("torch_tpu", "FRAGMENT")
        lib.define("stablehlo_call(str symbol, str functions, Tensor[] inputs, *, Tensor(a!)[] outs) -> ()")
        _call_op.lib = lib  # keeps the definition alive
        _CALL_OP = torch.ops.torch_tpu.stablehlo_call.default
    return _CALL_OP


class _Exported:
    """One signature of a JAX function, lowered and spliced."""

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any]) -> None:
        jax = _jax()
        with _x64():
            # keep_unused: the call passes every tensor, used or not.
            lowered = jax.jit(fn, keep_unused=True).trace(*args).lower(lowering_platforms=(_jax_platform(),))
            self.symbol, self.functions = _splice(lowered.as_text(debug_info=False))
            self.tree = lowered.out_tree
            self.outs = [(tuple(o.shape), _torch_dtype(o.dtype)) for o in jax.tree_util.tree_leaves(lowered.out_info)]

    def __call__(self, tensors: Sequence[torch.Tensor], outs: Sequence[torch.Tensor | None] = ()) -> list[torch.Tensor]:
        """Runs on ``tensors``; results are written into ``outs`` where given (aliases), else into new tensors."""
        device = tensors[0].device if tensors else torch.device("tpu", torch.tpu.current_device())
        given = list(outs) + [None] * (len(self.outs) - len(outs))
        results = [
            o if o is not None else torch.empty(shape, dtype=dtype, device=device)
            for o, (shape, dtype) in zip(given, self.outs)
        ]
        with torch.no_grad():
            _call_op()(self.symbol, self.functions, [t.detach() for t in tensors], outs=results)
        return results


def _spec(t: torch.Tensor) -> Any:
    return _jax().ShapeDtypeStruct(tuple(t.shape), _jax_dtype(t.dtype))


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
        self._exports: dict[tuple, _Exported] = {}
        self._vjp_exports: dict[tuple, _Exported] = {}
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

    def _key(self, args: Sequence[Any]) -> tuple:
        """What a lowering depends on: tensor shapes and dtypes, every other argument's value."""
        return tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a for a in args)

    def _export(self, args: Sequence[Any]) -> _Exported:
        key = self._key(args)
        if key not in self._exports:
            idx = self._split(args)[0]
            fn = functools.partial(self._call_with_tensors, args)
            self._exports[key] = _Exported(fn, [_spec(args[i]) for i in idx])
        return self._exports[key]

    def _call_with_tensors(self, args: Sequence[Any], *arrays: Any) -> Any:
        return self.jax_fn(*self._with_tensors(args, arrays))

    def _run(self, args: Sequence[Any], in_place: bool = False) -> tuple[Any, list[torch.Tensor]]:
        """Runs the kernel: the output pytree's structure and its leaves as tpu tensors.
        ``in_place``: aliased results are written straight into their inputs."""
        exported = self._export(args)
        _, tensors = self._split(args)
        outs: list[torch.Tensor | None] = [None] * len(exported.outs)
        if in_place:
            for in_idx, out_idx in self.input_output_aliases.items():
                outs[out_idx] = tensors[in_idx]
        return exported.tree, exported(tensors, outs)

    def _alias(self, tensors: Sequence[torch.Tensor], flat: Sequence[torch.Tensor]) -> None:
        """``input_output_aliases`` after an out-of-place run: aliased results go into their inputs."""
        with torch.no_grad():
            for in_idx, out_idx in self.input_output_aliases.items():
                if flat[out_idx] is not tensors[in_idx]:
                    tensors[in_idx].copy_(flat[out_idx])

    def __call__(self, *args: Any) -> Any:
        _, tensors = self._split(args)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            tree_box: list[Any] = []
            flat = list(_JaxFunction.apply(self, args, tree_box, *tensors))
            tree = tree_box[0]
            self._alias(tensors, flat)
        else:
            tree, flat = self._run(args, in_place=True)
        return _jax().tree_util.tree_unflatten(tree, flat)

    def vjp(self, args: Sequence[Any], cotangents: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """Gradients of the kernel's outputs with respect to its tensor inputs, through ``jax.vjp``."""
        jax = _jax()
        _, tensors = self._split(args)
        key = (self._key(args), tuple((tuple(c.shape), c.dtype) for c in cotangents))
        if key not in self._vjp_exports:
            n = len(tensors)

            def grads(*arrays: Any) -> Any:
                xs, cts = arrays[:n], arrays[n:]
                out, pullback = jax.vjp(lambda *ys: self.jax_fn(*self._with_tensors(args, ys)), *xs)
                _, tree = jax.tree_util.tree_flatten(out)
                return list(pullback(jax.tree_util.tree_unflatten(tree, list(cts))))

            specs = [_spec(t) for t in tensors] + [_spec(c) for c in cotangents]
            self._vjp_exports[key] = _Exported(grads, specs)
        return self._vjp_exports[key]([*tensors, *cotangents])


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
