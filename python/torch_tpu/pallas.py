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

import contextlib
import functools
import hashlib
import inspect
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "JaxCallable",
    "call_custom_kernel",
    "custom_jax_kernel",
    "get_default_pallas_mesh",
    "jax_op",
    "jax_placeholder",
    "jax_placeholders",
    "lookup_custom_kernel",
    "register_custom_kernel",
    "torch_placeholder",
]


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


# A symbol is a bare identifier or a quoted string (JAX quotes ``<lambda>``).
_FUNC_NAME = re.compile(r'func\.func (?:public |private )?@("[^"]*"|[\w.$-]+)\(')
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
        if name.startswith('"'):
            body = body.replace(f"@{name}", f'@"{symbol}_{name[1:]}')
        else:
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


@contextlib.contextmanager
def _pallas_interpret_off_tpu() -> Iterator[None]:
    """Pallas kernels traced here lower in interpret mode unless the platform is a TPU.

    A kernel written for TPU (Mosaic) then runs on the CPU plugin as plain
    StableHLO, as ``pallas_call(..., interpret=True)`` would; on a TPU nothing
    changes. JAX keeps this switch in ``pallas_tpu_interpret_mode_context_manager``
    (``pallas_call`` reads it while tracing): ``True`` picks the HLO interpreter."""
    try:
        from jax._src import config
    except ImportError:  # pragma: no cover - a JAX without the switch
        yield
        return
    state = getattr(config, "pallas_tpu_interpret_mode_context_manager", None)
    if state is None or _jax_platform() != "cpu" or state.value:
        yield
        return
    previous = state.swap_local(True)
    try:
        yield
    finally:
        state.set_local(previous)


# Primitives of Pallas kernels whose ``interpret`` parameter picks how they lower.
_PALLAS_PRIMITIVES = frozenset({"pallas_call", "core_map", "mpmd_map"})


def _interpreted(fn: Callable[..., Any], args: Sequence[Any]) -> Callable[..., Any]:
    """``fn`` with its Pallas kernels switched to interpret mode, for a plugin that is not a TPU's.

    Kernels built before the call (a Helion kernel's ``pl.kernel`` /
    ``pallas_call``, made for a TPU) carry ``interpret=False`` in their
    primitive; here the traced program is rewritten so they lower to plain
    StableHLO through Pallas's HLO interpreter. ``fn`` itself when it has no
    such kernel."""
    jax = _jax()
    from jax.extend import core

    changed = False

    def rewrite_params(params: Mapping[str, Any]) -> dict[str, Any]:
        return {k: rewrite_value(v) for k, v in params.items()}

    def rewrite_value(v: Any) -> Any:
        if isinstance(v, core.ClosedJaxpr):
            return core.ClosedJaxpr(rewrite_jaxpr(v.jaxpr), v.consts)
        if isinstance(v, core.Jaxpr):
            return rewrite_jaxpr(v)
        if isinstance(v, tuple) and any(isinstance(x, (core.ClosedJaxpr, core.Jaxpr)) for x in v):
            return tuple(rewrite_value(x) for x in v)
        return v

    def rewrite_jaxpr(jaxpr: Any) -> Any:
        nonlocal changed
        eqns = []
        for eqn in jaxpr.eqns:
            params = rewrite_params(eqn.params)
            if eqn.primitive.name in _PALLAS_PRIMITIVES and not params.get("interpret", True):
                params["interpret"] = True
                changed = True
            eqns.append(eqn.replace(params=params))
        return jaxpr.replace(eqns=eqns)

    closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
    new_jaxpr = rewrite_jaxpr(closed.jaxpr)
    if not changed:
        return fn
    tree = jax.tree_util.tree_structure(shapes)

    def run(*arrays: Any) -> Any:
        flat = core.jaxpr_as_fun(core.ClosedJaxpr(new_jaxpr, closed.consts))(*arrays)
        return jax.tree_util.tree_unflatten(tree, flat)

    return run


class _Exported:
    """One signature of a JAX function, lowered and spliced."""

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any]) -> None:
        jax = _jax()
        with _x64(), _pallas_interpret_off_tpu():
            if _jax_platform() == "cpu":
                fn = _interpreted(fn, args)
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


# Every kernel lowered in this process, by ``(name, fingerprint)``: what
# ``call_custom_kernel`` runs (TorchTPU's runtime registry of custom kernels).
_KERNELS: dict[tuple[str, str], _Exported] = {}


def register_custom_kernel(name: str, key: str, serialized_mlir_module: str | bytes) -> None:
    """Registers a kernel's StableHLO (text, or MLIR bytecode as ``jax.export`` serializes it) under ``(name, key)``."""
    text = serialized_mlir_module
    if isinstance(text, bytes):
        text = _mlir_text(text)
    exported = _Exported.__new__(_Exported)
    exported.symbol, exported.functions = _splice(text)
    exported.tree, exported.outs = None, _signature_results(exported.functions, exported.symbol)
    _KERNELS[(name, key)] = exported


def lookup_custom_kernel(name: str, key: str) -> bool:
    """Whether a kernel is registered under ``(name, key)``."""
    return (name, key) in _KERNELS


def call_custom_kernel(
    name: str,
    key: str,
    *,
    inputs: Sequence[torch.Tensor],
    output_shapes: Sequence[Any],
    donate_argnums: Sequence[int] = (),
    device_assignment: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """Runs the kernel registered under ``(name, key)`` on ``inputs``: new tensors, one per result.

    ``output_shapes`` (tensors or ``(shape, dtype)`` pairs) must match what the
    kernel returns. ``donate_argnums`` is a hint that the caller is done with
    those inputs: XLA reuses buffers on its own, so it changes nothing here.
    ``device_assignment`` may name one device, the inputs' own."""
    exported = _KERNELS.get((name, key))
    if exported is None:
        raise KeyError(f"call_custom_kernel: no kernel {name!r} registered under {key!r}")
    if device_assignment is not None and len(device_assignment) > 1:
        raise NotImplementedError(
            f"call_custom_kernel: kernel {name!r} asks for {len(device_assignment)} devices; "
            "a kernel runs on one device here (its collectives and remote DMAs are not supported)"
        )
    want = [(tuple(o.shape), o.dtype) if isinstance(o, torch.Tensor) else (tuple(o[0]), o[1]) for o in output_shapes]
    if want != exported.outs:
        raise ValueError(f"call_custom_kernel: kernel {name!r} returns {exported.outs}, asked for {want}")
    return exported(list(inputs))


def _mlir_text(module: bytes) -> str:
    """A StableHLO portable artifact (``jax.export``'s ``mlir_module_serialized``) or MLIR bytecode, as text."""
    from jax._src.interpreters import mlir
    from jax._src.lib import _jax as xla_ext

    with mlir.make_ir_context():
        try:
            parsed = xla_ext.mlir.deserialize_portable_artifact(module)
        except Exception:  # not a portable artifact: plain bytecode
            parsed = mlir.ir.Module.parse(module)
        return mlir.module_to_string(parsed, enable_debug_info=False)


_RESULTS = re.compile(r"->\s*\(?([^{]*?)\)?\s*\{")
_TENSOR = re.compile(r"tensor<([^>]*)>")
_ELEMENT = {"f32": "float32", "f64": "float64", "f16": "float16", "bf16": "bfloat16", "i1": "bool", "i8": "int8"}
_ELEMENT.update({"i16": "int16", "i32": "int32", "i64": "int64", "ui8": "uint8", "ui16": "uint16", "ui32": "uint32"})


def _signature_results(functions: str, symbol: str) -> list[tuple[tuple[int, ...], torch.dtype]]:
    """The result types of ``symbol`` in spliced text: ``(shape, dtype)`` each."""
    head = next(line for line in functions.splitlines() if f"@{symbol}(" in line)
    found = _RESULTS.search(head[head.index(f"@{symbol}(") :].split(")", 1)[1] + " {")
    outs = []
    for t in _TENSOR.findall(found.group(1) if found else ""):
        *dims, element = t.split("x")
        outs.append((tuple(int(d) for d in dims), getattr(torch, _ELEMENT[element])))
    return outs


def jax_placeholder(tensor: Any) -> Any:
    """A ``jax.ShapeDtypeStruct`` standing for a torch tensor while tracing; other values are returned as they are."""
    if not isinstance(tensor, torch.Tensor):
        return tensor
    return _jax().ShapeDtypeStruct(tuple(tensor.shape), _jax_dtype(tensor.dtype))


def jax_placeholders(tensors: Sequence[torch.Tensor] | torch.Tensor) -> Any:
    """``jax_placeholder`` of one tensor, or of each of a sequence."""
    if isinstance(tensors, torch.Tensor):
        return jax_placeholder(tensors)
    return [jax_placeholder(t) for t in tensors]


def torch_placeholder(aval: Any) -> Any:
    """A tensor on the meta device with the shape and dtype of a JAX abstract value; other values as they are."""
    if not hasattr(aval, "shape") or not hasattr(aval, "dtype"):
        return aval
    return torch.empty(tuple(aval.shape), dtype=_torch_dtype(aval.dtype), device="meta")


def _get_kernel_invocation_key(
    trace_key: str,
    input_args: Sequence[Any],
    input_kwargs: Mapping[str, Any],
    static_argnums: Sequence[int] = (),
) -> str:
    """The key of one specialization of a kernel (TorchTPU's format): the trace
    key, each argument's shape and dtype (tensors) or value (the rest; static
    ones marked), and the keyword arguments."""
    static = frozenset(static_argnums)

    def part(i: int, item: Any) -> str:
        if i in static:
            return f"static_{part(-1, item)}"
        if isinstance(item, torch.Tensor):
            return f"{item.shape}x{item.dtype}"
        return str(item)

    kwargs = ";".join(f"{part(-1, k)}:{part(-1, v)}" for k, v in input_kwargs.items())
    return ";".join([trace_key, ",".join(part(i, a) for i, a in enumerate(input_args)), kwargs])


def get_default_pallas_mesh() -> Any:
    """A one-device JAX mesh (axis ``"rank"``) for kernels that want one.

    A kernel runs on one device here: its collectives and remote DMAs across
    processes are not supported, so more than one process is refused."""
    jax = _jax()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if torch.distributed.get_world_size() > 1:
            raise NotImplementedError(
                "get_default_pallas_mesh: Pallas kernels across processes (collectives, remote DMA) "
                "are not supported; a kernel runs on its process's device"
            )
    return jax.make_mesh((1,), ("rank",), devices=jax.devices("cpu")[:1])


def _spec(t: torch.Tensor) -> Any:
    return _jax().ShapeDtypeStruct(tuple(t.shape), _jax_dtype(t.dtype))


class JaxCallable:
    """A JAX function (``jax.jit``-wrapped, a Pallas kernel's, say) callable on tpu tensors.

    TorchTPU's signature: ``JaxCallable(name, jit_fn, trace_key, static_argnums=(), ...)``.
    Each specialization (``_get_kernel_invocation_key``) is lowered once and
    registered for ``call_custom_kernel``; ``output_shapes`` and
    ``kernel_key_to_mlir_fingerprint`` map its key to its results
    (placeholders and tree) and its registered name."""

    def __init__(
        self,
        name: str,
        jit_fn: Callable[..., Any],
        trace_key: str | None = None,
        static_argnums: Sequence[int] = (),
        donate_argnums: Sequence[int] | None = None,
        input_output_aliases: Mapping[int, int] | None = None,
        mesh: Any = None,
        input_partition_specs: Any = None,
    ) -> None:
        self.name = name
        self.jax_fn = jit_fn
        self.trace_key = trace_key if trace_key is not None else f"{name}_{id(jit_fn)}"
        self.static_argnums = tuple(static_argnums)
        self.donate_argnums = tuple(donate_argnums or ())
        self.input_output_aliases = dict(input_output_aliases or {})
        self.mesh = mesh
        self.input_partition_specs = input_partition_specs
        self.output_shapes: dict[str, tuple[list[torch.Tensor], Any]] = {}
        self.kernel_key_to_mlir_fingerprint: dict[str, str] = {}
        self._exports: dict[tuple, _Exported] = {}
        self._vjp_exports: dict[tuple, _Exported] = {}

    def __repr__(self) -> str:
        return f"JaxCallable(name={self.name}, trace_key={self.trace_key}, static_argnums={self.static_argnums})"

    @property
    def _jitted(self) -> Callable[..., Any]:
        return self.jax_fn

    def _split(self, args: Sequence[Any]) -> tuple[list[int], list[torch.Tensor]]:
        idx = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and i not in self.static_argnums]
        return idx, [args[i] for i in idx]

    def _with_tensors(self, args: Sequence[Any], tensors: Sequence[Any]) -> list[Any]:
        """``args`` with its tensor arguments replaced by ``tensors``, in order."""
        full = list(args)
        for i, t in zip(self._split(args)[0], tensors):
            full[i] = t
        return full

    def _key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple:
        """What a lowering depends on: tensor shapes and dtypes, every other argument's value."""
        shaped = tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a for a in args)
        return shaped + tuple(sorted(kwargs.items()))

    def _export(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Exported:
        key = self._key(args, kwargs)
        if key not in self._exports:
            idx = self._split(args)[0]
            fn = functools.partial(self._call_with_tensors, args, kwargs)
            exported = _Exported(fn, [_spec(args[i]) for i in idx])
            self._exports[key] = exported
            # Registered for call_custom_kernel, under TorchTPU's key.
            kernel_key = _get_kernel_invocation_key(self.trace_key, args, kwargs, self.static_argnums)
            _KERNELS[(self.name, exported.symbol)] = exported
            placeholders = [torch.empty(s, dtype=d, device="meta") for s, d in exported.outs]
            self.output_shapes[kernel_key] = (placeholders, exported.tree)
            self.kernel_key_to_mlir_fingerprint[kernel_key] = exported.symbol
        return self._exports[key]

    def _call_with_tensors(self, args: Sequence[Any], kwargs: Mapping[str, Any], *arrays: Any) -> Any:
        return self.jax_fn(*self._with_tensors(args, arrays), **kwargs)

    def _run(
        self, args: Sequence[Any], in_place: bool = False, kwargs: Mapping[str, Any] | None = None
    ) -> tuple[Any, list[torch.Tensor]]:
        """Runs the kernel: the output pytree's structure and its leaves as tpu tensors.
        ``in_place``: aliased results are written straight into their inputs."""
        exported = self._export(args, kwargs or {})
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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs on tensors (and static or constant values). Keyword arguments are constants of the lowering."""
        idx, tensors = self._split(args)
        devices = {t.device for t in tensors}
        if len(devices) > 1 or any(d.type != "tpu" for d in devices):
            where = ", ".join(f"argument {i} on {t.device}" for i, t in zip(idx, tensors))
            raise RuntimeError(f"{self.name}: the tensor arguments must all be on one tpu device; got {where}")
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            if kwargs:
                raise NotImplementedError("JaxCallable: keyword arguments with gradients; pass them positionally")
            tree_box: list[Any] = []
            flat = list(_JaxFunction.apply(self, args, tree_box, *tensors))
            tree = tree_box[0]
            self._alias(tensors, flat)
        else:
            tree, flat = self._run(args, in_place=True, kwargs=kwargs)
        return _jax().tree_util.tree_unflatten(tree, flat)

    def vjp(self, args: Sequence[Any], cotangents: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """Gradients of the kernel's outputs with respect to its tensor inputs, through ``jax.vjp``."""
        jax = _jax()
        _, tensors = self._split(args)
        # Integer inputs (indices) have no gradient: JAX would give them float0
        # cotangents, which have no torch dtype; they are held constant instead.
        wrt = [i for i, t in enumerate(tensors) if t.is_floating_point() or t.is_complex()]
        if not wrt:
            return [None] * len(tensors)
        key = (self._key(args, {}), tuple((tuple(c.shape), c.dtype) for c in cotangents))
        if key not in self._vjp_exports:
            n = len(tensors)

            def grads(*arrays: Any) -> Any:
                xs, cts = list(arrays[:n]), arrays[n:]

                def differentiated(*ys: Any) -> Any:
                    full = list(xs)
                    for i, y in zip(wrt, ys):
                        full[i] = y
                    return self.jax_fn(*self._with_tensors(args, full))

                out, pullback = jax.vjp(differentiated, *[xs[i] for i in wrt])
                _, tree = jax.tree_util.tree_flatten(out)
                return list(pullback(jax.tree_util.tree_unflatten(tree, list(cts))))

            specs = [_spec(t) for t in tensors] + [_spec(c) for c in cotangents]
            self._vjp_exports[key] = _Exported(grads, specs)
        got = iter(self._vjp_exports[key]([*tensors, *cotangents]))
        return [next(got) if i in wrt else None for i in range(len(tensors))]


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
        return _callable(fn, name, static_argnums, donate_argnums, input_output_aliases, jit_kwargs)

    return wrap if jax_fn is None else wrap(jax_fn)


def _callable(
    fn: Callable[..., Any],
    name: str | None,
    static_argnums: Sequence[int],
    donate_argnums: Sequence[int] | None,
    input_output_aliases: Mapping[int, int] | None,
    jit_kwargs: Mapping[str, Any],
) -> JaxCallable:
    """A ``JaxCallable`` of ``jax.jit(fn)``, named after ``fn`` unless ``name`` is given."""
    name = name or getattr(fn, "__name__", "kernel")
    static_argnums = tuple(static_argnums)
    jit_fn = _jax().jit(fn, static_argnums=static_argnums, **jit_kwargs)
    trace_key = _get_kernel_invocation_key(f"{name}_{id(fn)}", [], {**jit_kwargs, "static_argnums": static_argnums})
    kernel = JaxCallable(name, jit_fn, trace_key, static_argnums, donate_argnums, input_output_aliases)
    functools.update_wrapper(kernel, fn, updated=())
    return kernel


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
    kernel = _callable(fn, name, static, donate_argnums, input_output_aliases, jit_kwargs)

    tensor_params = [n for n, t in params if t == "Tensor"]
    mutated = tuple(tensor_params[i] for i in kernel.input_output_aliases)
    if mutated:  # an aliased input is updated in place: the schema says so
        for n in mutated:
            schema = schema.replace(f"Tensor {n}", f"Tensor(a_{n}!) {n}", 1)

    def results(flat: Sequence[Any]) -> Any:
        # The schema was fixed from the annotations before any call: a result
        # count that disagrees would drop results silently.
        want = len(outs) if returns_tuple else 1
        if len(flat) != want:
            said = f"a tuple of {want}" if returns_tuple else "one array (the return is not annotated as a tuple)"
            raise TypeError(
                f"jax_op {name}: {getattr(fn, '__name__', 'the function')} returned {len(flat)} arrays "
                f"but its annotations say {said}; "
                f"annotate the return as tuple[jax.Array, ...] with one entry per result"
            )
        return tuple(flat) if returns_tuple else flat[0]

    def impl(*args: Any) -> Any:
        _, flat = kernel._run(args)
        kernel._alias(kernel._split(args)[1], flat)
        return results(flat)

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
        return results(made)

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
