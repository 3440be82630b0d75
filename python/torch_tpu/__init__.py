"""PyTorch on XLA devices through PJRT, as the native device ``"tpu"``.

``import torch_tpu`` loads the Rust runtime and the C++ shim (which registers
PyTorch's PrivateUse1 backend), names the backend ``"tpu"`` and installs the
``torch.tpu`` device module. After that, ordinary PyTorch code runs on
``device="tpu"``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from torch_tpu import _compile, _composites, _core, _module, _plugins, _safetensors
from torch_tpu import device as _device_module
from torch_tpu._metrics import format_profile, format_report

__all__ = [
    "__version__",
    "compile_stats",
    "eager_mode",
    "get_eager_mode",
    "lowered_ops",
    "metrics",
    "metrics_report",
    "platform",
    "plugin_info",
    "profile_summary",
    "reset_metrics",
    "set_cpu_fallback",
    "set_eager_mode",
    "set_nan_check",
    "sync",
]

EAGER_MODES = ("debug", "strict", "fused")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch-tpu", "torch_tpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "0.0.0+unknown"


__version__: str = _version()


def _register_backend() -> None:
    """Names PrivateUse1 "tpu" and installs ``torch.tpu``; safe to call twice."""
    # Renaming to the same name again is allowed; it also sets up the Python
    # side (torch.device repr, profiler activity) when the shim named it in C++.
    torch.utils.rename_privateuse1_backend("tpu")
    if not hasattr(torch.Tensor, "is_tpu"):
        torch.utils.generate_methods_for_privateuse1_backend()
    if not hasattr(torch, "tpu"):
        torch._register_device_module("tpu", _device_module)


_register_backend()
_module.install()
_compile.install()
_composites.install()
_safetensors.install()

from torch_tpu import distributed as _distributed  # noqa: E402 (needs the backend named)

_distributed.register()


def _start_runtime() -> None:
    """Finds the PJRT plugins of this interpreter and starts the platform now,
    at import (not on whichever thread first touches the device). The plugin's
    own start-up chatter (absl/XLA lines on stderr) is hidden unless
    ``TORCH_TPU_XLA_LOGS=1``. A missing plugin is not an import error: the
    device then reports ``torch.tpu.is_available() == False`` and ops raise."""
    _core.set_plugin_candidates(_plugins.candidates())
    quiet = not _core.env_flag("TORCH_TPU_XLA_LOGS")
    saved = -1
    if quiet:
        # XLA logs errors it recovers from (e.g. CPU feature names of a cached executable).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except OSError:
            saved = -1
    try:
        _core.init()
    except RuntimeError:
        pass  # reported again, with its reason, by the first device call
    finally:
        if saved >= 0:
            os.dup2(saved, 2)
            os.close(saved)


def _pjrt_kv_store_from_env() -> None:
    """``TORCH_TPU_PJRT_KV_STORE=torchrun``: the PJRT client is created with torchrun's
    c10d Store (``MASTER_ADDR``/``MASTER_PORT``) behind the plugin's key-value callbacks,
    ``node_id=RANK`` and ``num_nodes=WORLD_SIZE``, for plugins that bootstrap across
    processes (CUDA/NCCL, multi-host TPU). The CPU plugin ignores them."""
    how = os.environ.get("TORCH_TPU_PJRT_KV_STORE", "")
    if not how:
        return
    if how != "torchrun":
        raise ValueError(f"TORCH_TPU_PJRT_KV_STORE={how!r}: expected 'torchrun' (or unset)")
    from datetime import timedelta

    import torch.distributed as dist

    env = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    missing = [k for k, v in env.items() if not v]
    if missing:
        raise ValueError(f"TORCH_TPU_PJRT_KV_STORE=torchrun needs {', '.join(missing)} (set by torchrun)")
    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False, timeout=timedelta(minutes=5))
    _core.set_kv_store(dist.PrefixStore("torch_tpu/pjrt/", store), int(env["RANK"]), int(env["WORLD_SIZE"]))


# A bad TORCH_TPU_* value is an import error (ValueError naming it), not ignored.
_core.validate_env()
_pjrt_kv_store_from_env()
_start_runtime()
# A child forked after this point cannot use the device (the plugin's threads
# are not copied); it gets a clear error instead of hanging, as CUDA does.
os.register_at_fork(after_in_child=_core.mark_forked)


def _on_optimizer_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """After ``optimizer.step()`` a training step is over: in fused mode the
    pending graph is cut there, so every step runs the same graph."""
    _core.mark_step()


if not getattr(torch.optim.Optimizer, "_torch_tpu_step_hook", False):
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(_on_optimizer_step)
    torch.optim.Optimizer._torch_tpu_step_hook = True  # type: ignore[attr-defined]


def plugin_info() -> dict[str, Any]:
    """The PJRT plugin in use: platform, path, platform version, PJRT API version, devices."""
    return dict(_core.plugin_info())


def platform() -> str:
    """The PJRT platform the device runs on: ``"tpu"``, ``"cuda"`` or ``"cpu"``."""
    return _core.platform()


def set_eager_mode(mode: str) -> None:
    """Selects how ops run: ``"debug"`` (synchronous, raises at the failing op),
    ``"strict"`` (one cached executable per op, asynchronous) or ``"fused"``
    (ops are recorded and run as one program at the next cut point)."""
    if mode not in EAGER_MODES:
        raise ValueError(f"unknown eager mode {mode!r}; expected one of {', '.join(EAGER_MODES)}")
    _core.set_eager_mode(mode)


def get_eager_mode() -> str:
    """The current eager mode."""
    return _core.get_eager_mode()


@contextlib.contextmanager
def eager_mode(mode: str) -> Iterator[None]:
    """Runs the block in ``mode`` and restores the previous mode afterwards,
    also when the block raises."""
    previous = get_eager_mode()
    set_eager_mode(mode)
    try:
        yield
    finally:
        set_eager_mode(previous)


def sync(wait: bool = True) -> None:
    """Runs all pending work now (a cut point); with ``wait``, also waits for
    the device to finish it."""
    _core.sync(wait)


def metrics() -> dict[str, Any]:
    """The runtime's counters: ops dispatched, executions, compiles, cache
    hits and misses, CPU fallbacks by op, bytes moved, cut reasons, ..."""
    return dict(_core.metrics())


def compile_stats() -> dict[str, Any]:
    """The ``torch.compile(backend="tpu")`` counters: Dynamo graphs, programs
    compiled, compiled and direct calls, graph breaks and recompiles with
    Dynamo's reasons, and per graph how its dynamic sizes are bucketed."""
    return _compile.compile_stats()


def metrics_report() -> str:
    """The metrics as a readable table (print it)."""
    return format_report(metrics())


def profile_summary(prof: Any) -> str:
    """A text summary of the tpu work a ``torch.profiler.profile`` run recorded:
    compiles, executions (per graph, with its cut reason) and transfers."""
    return format_profile(prof.events())


def reset_metrics() -> None:
    """Sets all counters back to zero (also the torch.compile backend's)."""
    _core.reset_metrics()
    _compile.reset_compile_stats()


def set_nan_check(enabled: bool) -> None:
    """In debug mode, raise at the op that produced a NaN or Inf."""
    _core.set_nan_check(bool(enabled))


def set_cpu_fallback(enabled: bool) -> None:
    """Run ops that have no lowering on the CPU (counted in the metrics)
    instead of raising ``NotImplementedError``."""
    _core.set_cpu_fallback(bool(enabled))


def mark_step() -> None:
    """Marks the end of a training step (called after every ``optimizer.step()``):
    in fused mode the pending graph runs now, without waiting for it."""
    _core.mark_step()


def clear_executable_cache() -> None:
    """Drops the in-memory executables (the disk cache stays)."""
    _core.clear_executable_cache()


def lowered_ops() -> list[str]:
    """The ATen ops the runtime can lower to XLA."""
    return list(_core.lowered_ops())
