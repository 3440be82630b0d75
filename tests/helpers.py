"""Helpers shared by the tests: inputs with chosen layouts, CPU/tpu comparison, subprocess runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
import torch

TPU = "tpu"

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
I32, I64, BOOL = torch.int32, torch.int64, torch.bool
FLOATS = (F32, BF16, F16)
INTS = (I32, I64)
NUMERIC = FLOATS + INTS
ALL = NUMERIC + (BOOL,)


def _available_modes() -> list[str]:
    """debug and strict always; fused when the runtime accepts it."""
    from torch_tpu import _core

    modes = ["debug", "strict"]
    previous = _core.get_eager_mode()
    try:
        _core.set_eager_mode("fused")
        modes.append("fused")
    except Exception:
        pass
    finally:
        _core.set_eager_mode(previous)
    return modes


# Every mode the runtime accepts, and those the tests run in.
ALL_MODES = _available_modes()
MODES = [m for m in ALL_MODES if m in os.environ.get("TORCH_TPU_TEST_MODES", ",".join(ALL_MODES)).split(",")]

DTYPE_NAMES = {F32: "f32", BF16: "bf16", F16: "f16", I32: "i32", I64: "i64", BOOL: "bool", torch.float64: "f64"}


# --- inputs ------------------------------------------------------------------


def make(
    shape: Sequence[int], dtype: torch.dtype, low: float = -3.0, high: float = 3.0, nonzero: bool = False
) -> torch.Tensor:
    """A CPU tensor of random values in [low, high] (integers inclusive), drawn
    from the CPU default generator. ``nonzero`` keeps |x| >= 0.5 (>= 1 for ints)."""
    shape = tuple(shape)
    if dtype == BOOL:
        return torch.rand(shape) < 0.5 if not nonzero else torch.ones(shape, dtype=BOOL)
    if dtype.is_floating_point:
        x = torch.rand(shape) * (high - low) + low
        if nonzero:
            x = torch.where(x < 0, -1.0, 1.0) * x.abs().clamp_min(0.5)
        return x.to(dtype)
    x = torch.randint(int(low), int(high) + 1, shape, dtype=dtype)
    if nonzero:
        x = torch.where(x == 0, torch.ones((), dtype=dtype), x)
    return x


# A layout turns a wanted (logical) shape into a base shape and a view of the
# base with the logical shape; the view is applied to the CPU base and to the
# base copied to tpu, so the tpu input is a real view of a tpu storage.
LAYOUTS: dict[str, Callable[[tuple[int, ...]], tuple[tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]]]] = {
    "contig": lambda s: (s, lambda b: b),
    # transposed: strides swapped
    "t": lambda s: (s[:-2] + (s[-1], s[-2]), lambda b: b.transpose(-1, -2)),
    # a step slice with a storage offset: b[..., 1::2]
    "step": lambda s: (s[:-1] + (2 * s[-1] + 1,), lambda b: b[..., 1::2]),
    # broadcast along dim 0 (stride 0): read-only inputs only
    "expand": lambda s: ((1,) + s[1:], lambda b: b.expand(s)),
    # a select of a bigger tensor: storage offset, contiguous
    "offset": lambda s: ((2,) + s, lambda b: b[1]),
}


@dataclass(frozen=True)
class Spec:
    """One input: shape, layout, value range."""

    shape: tuple[int, ...]
    layout: str = "contig"
    low: float = -3.0
    high: float = 3.0
    nonzero: bool = False

    def __str__(self) -> str:
        s = "x".join(map(str, self.shape)) or "0d"
        return s if self.layout == "contig" else f"{s}:{self.layout}"


def S(shape: Sequence[int], layout: str = "contig", **kw: float) -> Spec:
    return Spec(tuple(shape), layout, **kw)


def make_pair(spec: Spec, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(cpu, tpu) inputs for ``spec``; the tpu one is a view of a tpu storage when the layout says so."""
    base_shape, view = LAYOUTS[spec.layout](spec.shape)
    base = make(base_shape, dtype, spec.low, spec.high, spec.nonzero)
    return view(base), view(base.to(TPU))


def make_leaf_pair(spec: Spec, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like make_pair, for autograd: (cpu_leaf, cpu_input, tpu_leaf, tpu_input)."""
    base_shape, view = LAYOUTS[spec.layout](spec.shape)
    base = make(base_shape, dtype, spec.low, spec.high, spec.nonzero)
    cpu_leaf = base.clone().requires_grad_()
    tpu_leaf = base.to(TPU).requires_grad_()
    return cpu_leaf, view(cpu_leaf), tpu_leaf, view(tpu_leaf)


def case_id(*parts: object) -> str:
    out = []
    for p in parts:
        if isinstance(p, torch.dtype):
            out.append(DTYPE_NAMES.get(p, str(p)))
        elif isinstance(p, (list, tuple)):
            out.append(",".join(str(q) for q in p))
        else:
            out.append(str(p))
    return "-".join(out)


# --- comparison ------------------------------------------------------------------


def tolerances(dtype: torch.dtype, scale: float = 1.0) -> dict[str, float]:
    """rtol/atol for comparing a tpu result with the CPU result computed in the same dtype;
    ``scale`` loosens them for ops that sum many terms."""
    base = {
        BF16: (1.6e-2, 1e-2),
        F16: (2e-3, 1e-3),
        F32: (1.3e-5, 1e-5),
        torch.float64: (1e-7, 1e-7),
    }.get(dtype)
    if base is None:
        return {"rtol": 0.0, "atol": 0.0}
    return {"rtol": base[0] * scale, "atol": base[1] * scale}


def assert_same(actual: object, expected: object, what: str, scale: float = 1.0, **tol: float) -> None:
    """Compares a tpu result (tensor, number, or nested tuple/list of them) with the CPU one:
    same dtype, shape and values. ``what`` names the op and case in the failure message."""
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)), f"{what}: expected a sequence, got {type(actual).__name__}"
        assert len(actual) == len(expected), f"{what}: {len(actual)} results, expected {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{what}[{i}]", scale, **tol)
        return
    if not isinstance(expected, torch.Tensor):
        assert not isinstance(actual, torch.Tensor), f"{what}: expected a {type(expected).__name__}, got a tensor"
        assert actual == pytest.approx(expected, rel=tol.get("rtol", 1e-6), abs=tol.get("atol", 1e-6)), what
        return
    assert isinstance(actual, torch.Tensor), f"{what}: expected a tensor, got {type(actual).__name__}"
    assert actual.device.type == TPU, f"{what}: result is on {actual.device}, expected tpu"
    got = actual.detach().cpu()
    expected = expected.detach()
    if not tol:
        tol = tolerances(expected.dtype, scale)
    torch.testing.assert_close(got, expected, equal_nan=True, msg=lambda m: f"{what}: {m}", **tol)


def to_tpu(x: object) -> object:
    """Moves tensors (also inside lists and tuples) to tpu; leaves other values alone."""
    if isinstance(x, torch.Tensor):
        return x.to(TPU)
    if isinstance(x, (list, tuple)):
        return type(x)(to_tpu(v) for v in x)
    return x


# --- subprocesses -------------------------------------------------------------------

_ENV_KEYS = (
    "TORCH_TPU_EAGER_MODE",
    "TPU_LAUNCH_BLOCKING",
    "TORCH_TPU_DEFER_AND_FUSE",
    "TORCH_TPU_CPU_FALLBACK",
    "TORCH_TPU_NAN_CHECK",
)


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter; the torch_tpu mode variables are cleared, then ``env`` applied."""
    full_env = {k: v for k, v in os.environ.items() if k not in _ENV_KEYS}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def result_line(r: subprocess.CompletedProcess) -> dict:
    """The JSON a child script printed on its ``RESULT `` line (the script must have succeeded)."""
    assert r.returncode == 0, f"script failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise AssertionError(f"no RESULT line:\n{r.stdout}\n{r.stderr[-2000:]}")
