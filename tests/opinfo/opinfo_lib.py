"""OpInfo conformance: run PyTorch's OpInfo sample inputs on ``tpu`` and on the
CPU and classify each (entry, dtype, mode, forward/backward).

Statuses:
- ``pass``: every sample (up to ``MAX_SAMPLES``) matches the CPU result.
- ``fail``: an exception or a mismatch; ``reason`` says which (exception type
  and first line, or the mismatch summary).
- ``unsupported``: a ``NotImplementedError`` naming an aten op without a
  lowering (``missing`` lists them), and the entry still fails with CPU fallback.
- ``cpu-fallback``: the entry needs an op without a lowering but passes with
  CPU fallback on (``missing`` lists the ops that ran on the CPU).
- ``skip``: nothing to run (no samples, no differentiable outputs); ``reason`` says why.

Comparison follows PyTorch's own device-vs-CPU test (``test_compare_cpu`` in
``test/test_ops.py``): ``assert_close`` with ``equal_nan``, ``atol=rtol=1e-3``,
never tighter than ``assert_close``'s defaults for the dtype, after the
sample's ``output_process_fn_grad``. Gradients: float32 entries that support
autograd, ``torch.autograd.grad`` of the outputs against a fixed random
cotangent, w.r.t. every tensor input that requires grad.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_map

import torch_tpu
from torch_tpu import _core

TPU = "tpu"
MODES = ("strict", "fused")
DTYPE_NAMES = {
    torch.float32: "float32",
    torch.bfloat16: "bfloat16",
    torch.int64: "int64",
    torch.bool: "bool",
    torch.complex64: "complex64",
}
# ``TORCH_TPU_OPINFO_DTYPES=complex64,float32`` runs those dtypes only (a partial run, merged later).
_ONLY = {n for n in os.environ.get("TORCH_TPU_OPINFO_DTYPES", "").split(",") if n}
DTYPES = tuple(d for d, n in DTYPE_NAMES.items() if not _ONLY or n in _ONLY)
MAX_SAMPLES = 3
SEED = 0

# Outputs whose values are random or uninitialized: only shape and dtype are compared
# (PyTorch's own cross-device tests skip these values for the same reason).
VALUES_NOT_COMPARED = {
    "bernoulli",
    "cauchy",
    "empty",
    "empty_like",
    "empty_permuted",
    "empty_strided",
    "exponential",
    "geometric",
    "log_normal",
    "multinomial",
    "new_empty",
    "new_empty_strided",
    "nn.functional.alpha_dropout",
    "nn.functional.dropout",
    "nn.functional.dropout1d",
    "nn.functional.dropout2d",
    "nn.functional.dropout3d",
    "nn.functional.feature_alpha_dropout",
    "nn.functional.fractional_max_pool2d",
    "nn.functional.fractional_max_pool3d",
    "nn.functional.rrelu",
    "normal",
    "rand_like",
    "randint",
    "randint_like",
    "randn",
    "randn_like",
    "uniform",
    "torch.empty",
}

# Entries whose extra tensor arguments must stay on the CPU (the op requires it).
KEEP_ON_CPU = {"tensor_split"}

_MISSING_RE = re.compile(r"operator '(?:aten::)?([\w.]+)' is not implemented for the tpu device")


def entry_name(op: Any) -> str:
    """The OpInfo entry's unique name: ``name`` or ``name.variant``."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def op_db() -> list[Any]:
    from torch.testing._internal.common_methods_invocations import op_db as db

    return list(db)


def entries() -> dict[str, Any]:
    return {entry_name(op): op for op in op_db()}


def tolerances(dtype: torch.dtype) -> dict[str, float]:
    """``max(assert_close defaults for dtype, test_compare_cpu's 1e-3)``; exact for ints and bool."""
    if not (dtype.is_floating_point or dtype.is_complex):
        return {"rtol": 0.0, "atol": 0.0}
    rtol, atol = torch.testing._comparison.default_tolerances(dtype)
    return {"rtol": max(rtol, 1e-3), "atol": max(atol, 1e-3)}


# --- moving samples -------------------------------------------------------------


def _to_tpu(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            raise TypeError(f"{x.layout} input")
        base = x._base
        if base is not None and not x.requires_grad and base.is_contiguous() and base.storage_offset() == 0:
            # A view stays a view: of the base's copy, with the same sizes, strides and offset.
            return base.detach().to(TPU).as_strided(x.size(), x.stride(), x.storage_offset())
        y = x.detach().to(TPU)
        if x.requires_grad:
            y.requires_grad_()
        return y
    if isinstance(x, torch.device) and x.type == "cpu":
        return torch.device(TPU)
    if isinstance(x, str) and x == "cpu":
        return TPU
    return x


def _clone_cpu(x: Any) -> Any:
    """A private copy of a CPU input (the op may write into it); keeps requires_grad leaves."""
    if isinstance(x, torch.Tensor) and x.layout == torch.strided:
        base = x._base
        if base is not None and not x.requires_grad and base.is_contiguous() and base.storage_offset() == 0:
            return base.detach().clone().as_strided(x.size(), x.stride(), x.storage_offset())
        y = x.detach().clone(memory_format=torch.preserve_format)
        if x.requires_grad:
            y.requires_grad_()
        return y
    return x


def _transform(sample: Any, fn: Callable[[Any], Any]) -> tuple[Any, tuple, dict]:
    return tree_map(fn, sample.input), tree_map(fn, tuple(sample.args)), tree_map(fn, dict(sample.kwargs))


def _grad_inputs(inp: Any, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    leaves, _ = tree_flatten((inp, args, kwargs))
    return [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]


# --- comparison ------------------------------------------------------------------


def _to_cpu(x: Any) -> Any:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else x


class Mismatch(AssertionError):
    pass


class CpuReferenceError(Exception):
    """The op fails on the CPU too (e.g. CUDA-only jiterator entries): nothing to compare."""


def compare(actual: Any, expected: Any, dtype: torch.dtype, values: bool = True, path: str = "out") -> None:
    """Compares a tpu result with the CPU result, recursively through tuples, lists and dicts."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            raise Mismatch(f"{path}: expected a tensor, got {type(actual).__name__}")
        if expected.device.type == "cpu" and actual.device.type != TPU and actual.numel() > 0:
            raise Mismatch(f"{path}: result on {actual.device}, expected tpu")
        if actual.shape != expected.shape or actual.dtype != expected.dtype:
            raise Mismatch(
                f"{path}: got {actual.dtype}{list(actual.shape)}, expected {expected.dtype}{list(expected.shape)}"
            )
        if not values:
            return
        got, exp = _to_cpu(actual), expected.detach()
        tol = tolerances(exp.dtype)
        try:
            torch.testing.assert_close(got, exp, equal_nan=True, check_device=False, check_stride=False, **tol)
        except AssertionError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            detail = "; ".join(ln for ln in lines[1:3])
            raise Mismatch(f"{path}: mismatch: {detail or lines[0]}") from None
        return
    if isinstance(expected, (tuple, list)):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            raise Mismatch(f"{path}: expected a sequence of {len(expected)}, got {type(actual).__name__}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            compare(a, e, dtype, values, f"{path}[{i}]")
        return
    if isinstance(expected, dict):
        for k in expected:
            compare(actual[k], expected[k], dtype, values, f"{path}[{k!r}]")
        return
    if isinstance(actual, torch.Tensor):
        actual = actual.item() if actual.numel() == 1 else actual.tolist()
    if values and actual != expected and not (actual != actual and expected != expected):
        if isinstance(expected, float) and isinstance(actual, (int, float)):
            if abs(actual - expected) <= 1e-3 + 1e-3 * abs(expected):
                return
        raise Mismatch(f"{path}: got {actual!r}, expected {expected!r}")


# --- running one (entry, dtype, mode, kind) -----------------------------------------


def _short(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:300]


def missing_op(e: BaseException) -> str | None:
    """The aten op a ``NotImplementedError`` names as having no lowering."""
    if not isinstance(e, NotImplementedError):
        return None
    m = _MISSING_RE.search(str(e))
    return m.group(1) if m else None


def _samples(op: Any, dtype: torch.dtype, requires_grad: bool, limit: int) -> list[Any]:
    torch.manual_seed(SEED)
    out = []
    for s in op.sample_inputs("cpu", dtype, requires_grad=requires_grad):
        out.append(s)
        if len(out) >= limit:
            break
    return out


def _random_sample(op: Any, sample: Any) -> bool:
    """Samples whose result is random: attention with dropout (``dropout_p > 0``, or
    ``multi_head_attention_forward`` in training mode)."""
    kw = sample.kwargs
    if isinstance(kw.get("dropout_p"), float) and kw["dropout_p"] > 0:
        return True
    return op.name == "nn.functional.multi_head_attention_forward" and bool(kw.get("training"))


def _cotangents(outs: list[torch.Tensor]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(SEED + 1)
    return [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]


def _diff_outputs(result: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(result)
    return [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad and t.dtype.is_floating_point]


def _grads(fn: Callable, sample: Any, inp: Any, args: tuple, kwargs: dict, device: str) -> tuple[list, list]:
    """(outputs, gradients) of ``fn`` at (inp, args, kwargs); the cotangent is made on the CPU."""
    result = sample.output_process_fn_grad(fn(inp, *args, **kwargs))
    outs = _diff_outputs(result)
    wrt = _grad_inputs(inp, args, kwargs)
    if not outs or not wrt:
        return outs, []
    cts = [c.to(device) for c in _cotangents(outs)]
    grads = torch.autograd.grad(outs, wrt, grad_outputs=cts, allow_unused=True)
    return outs, list(grads)


def _run_samples(op: Any, dtype: torch.dtype, kind: str, limit: int) -> tuple[str, str]:
    """Runs the samples once in the current mode; returns (status, reason) with status pass/skip,
    or raises (the exception, or a Mismatch)."""
    entry_values = op.name not in VALUES_NOT_COMPARED
    samples = _samples(op, dtype, kind == "bwd", limit)
    if not samples:
        return "skip", "no sample inputs for this dtype"
    ran = 0
    notes: set[str] = set()
    for sample in samples:
        values = entry_values and not _random_sample(op, sample)
        if not values:
            notes.add("values not compared (random or uninitialized output)")
        tpu_in = _transform(sample, _to_tpu)
        if op.name in KEEP_ON_CPU:
            tpu_in = (tpu_in[0], tuple(a.cpu() if isinstance(a, torch.Tensor) else a for a in tpu_in[1]), tpu_in[2])
        cpu_in = _transform(sample, _clone_cpu)
        if kind == "fwd":
            with torch.no_grad():
                try:
                    expected = sample.output_process_fn_grad(op(cpu_in[0], *cpu_in[1], **cpu_in[2]))
                except Exception as e:
                    raise CpuReferenceError(_short(e)) from None
                actual = sample.output_process_fn_grad(op(tpu_in[0], *tpu_in[1], **tpu_in[2]))
                torch_tpu.sync()
            try:
                compare(actual, expected, dtype, values)
            except Mismatch:
                if dtype not in LOW_PRECISION or not _closer_than_cpu(op, sample, actual, expected):
                    raise
                notes.add(f"{DTYPE_NAMES[dtype]}: differs from the CPU but is at least as close to a float64 reference")
            ran += 1
        else:
            try:
                exp_outs, exp_grads = _grads(op, sample, *cpu_in, "cpu")
            except Exception as e:
                raise CpuReferenceError(_short(e)) from None
            if not exp_grads:
                continue
            act_outs, act_grads = _grads(op, sample, *tpu_in, TPU)
            torch_tpu.sync()
            compare(act_outs, exp_outs, dtype, values, "out")
            if values:
                compare(act_grads, exp_grads, dtype, True, "grad")
            ran += 1
    if ran == 0:
        return "skip", "no sample with differentiable outputs and inputs"
    return "pass", "; ".join(sorted(notes))


LOW_PRECISION = (torch.bfloat16, torch.float16)


def _closer_than_cpu(op: Any, sample: Any, actual: Any, expected: Any) -> bool:
    """A low-precision mismatch is accepted when the tpu result is no further from a
    float64 reference than the CPU result (PyTorch's CPU kernels round intermediates
    to bfloat16 where XLA keeps float32): ``|tpu - ref| <= 1.5 |cpu - ref| + atol``."""

    def up(x: Any) -> Any:
        return x.detach().double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    try:
        with torch.no_grad():
            inp, args, kwargs = _transform(sample, up)
            ref = sample.output_process_fn_grad(op(inp, *args, **kwargs))
    except Exception:
        return False
    acts, _ = tree_flatten(actual)
    exps, _ = tree_flatten(expected)
    refs, _ = tree_flatten(ref)
    if not (len(acts) == len(exps) == len(refs)):
        return False
    for a, e, r in zip(acts, exps, refs):
        if not isinstance(e, torch.Tensor) or not e.is_floating_point():
            continue
        if not isinstance(r, torch.Tensor) or r.shape != e.shape:
            return False
        a64, e64, r64 = a.detach().cpu().double(), e.double(), r.double()
        finite = torch.isfinite(r64)
        err_tpu = torch.where(finite, (a64 - r64).abs(), 0.0)
        err_cpu = torch.where(finite, (e64 - r64).abs(), 0.0)
        if not bool((err_tpu <= 1.5 * err_cpu + 1e-3).all()):
            return False
        if not torch.equal(torch.isnan(a64) & ~finite, torch.isnan(e64) & ~finite):
            return False
    return True


def _fallback_ops() -> dict[str, int]:
    return dict(torch_tpu.metrics().get("cpu_fallbacks", {}) or {})


def _attempt(op: Any, dtype: torch.dtype, kind: str, limit: int) -> tuple[str, str, str | None]:
    """One try: (status, reason, missing aten op or None); never raises."""
    try:
        status, reason = _run_samples(op, dtype, kind, limit)
        return status, reason, None
    except Mismatch as e:
        return "fail", str(e)[:300], None
    except CpuReferenceError as e:
        return "skip", f"the CPU reference raises: {e}"[:300], None
    except Exception as e:
        return "fail", _short(e), missing_op(e)
    finally:
        try:
            torch_tpu.sync()
        except Exception:
            pass


def run_case(op: Any, dtype: torch.dtype, mode: str, kind: str, limit: int = MAX_SAMPLES) -> dict[str, Any]:
    """Runs one (entry, dtype, mode, kind); returns its record. Never raises."""
    record: dict[str, Any] = {
        "entry": entry_name(op),
        "dtype": DTYPE_NAMES.get(dtype, str(dtype)),
        "mode": mode,
        "kind": kind,
    }
    with torch_tpu.eager_mode(mode):
        status, reason, missing = _attempt(op, dtype, kind, limit)
        if missing is not None:
            before = _fallback_ops()
            _core.set_cpu_fallback(True)
            try:
                fb_status, fb_reason, _ = _attempt(op, dtype, kind, limit)
            finally:
                _core.set_cpu_fallback(False)
            after = _fallback_ops()
            ran_on_cpu = sorted(k for k, v in after.items() if v > before.get(k, 0))
            record["missing"] = sorted(set(ran_on_cpu) | {missing})
            if fb_status == "pass":
                status, reason = "cpu-fallback", ""
            else:
                status = "unsupported"
                reason = f"no lowering for {missing}" + (f" (with CPU fallback: {fb_reason})" if fb_reason else "")
    record["status"] = status
    if reason:
        record["note" if status in ("pass", "skip") else "reason"] = reason
    return record


def supported_dtypes(op: Any) -> list[torch.dtype]:
    try:
        ok = op.supported_dtypes("cpu")
    except Exception:
        return []
    return [d for d in DTYPES if d in ok]


def run_entry(op: Any, modes: Iterable[str] = MODES, limit: int = MAX_SAMPLES) -> list[dict[str, Any]]:
    """Every (dtype, mode, kind) of one OpInfo entry."""
    out = []
    for dtype in supported_dtypes(op):
        for mode in modes:
            out.append(run_case(op, dtype, mode, "fwd", limit))
            if dtype == torch.float32 and op.supports_autograd:
                out.append(run_case(op, dtype, mode, "bwd", limit))
    return out


def entry_info(op: Any) -> dict[str, Any]:
    return {
        "aten_name": op.aten_name,
        "dtypes": [DTYPE_NAMES[d] for d in supported_dtypes(op)],
        "supports_autograd": bool(op.supports_autograd),
    }


def case_key(r: dict[str, Any]) -> str:
    return f"{r['dtype']}/{r['mode']}/{r['kind']}"


def lowered_ops() -> list[str]:
    return sorted(_core.lowered_ops())


def format_exc() -> str:
    return traceback.format_exc()
