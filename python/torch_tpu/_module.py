"""Parameter identity across ``Module.to("tpu")`` and back.

PyTorch moves a module's parameters in place (``param.data = moved``) only
between the backends c10 calls "dense" (CPU, CUDA, ...); for PrivateUse1 it
builds new ``Parameter`` objects, so tied weights come apart and optimizers
built before the move update nothing. PyTorch's own answer for such backends is
``torch.utils.swap_tensors`` (``torch.__future__.set_swap_module_params_on_conversion``),
which keeps each Parameter object and swaps its contents. We turn that on for
exactly the conversions that involve a tpu tensor, so every other module
behaves as before.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

_state = threading.local()
_future_lock = threading.Lock()


def any_on_tpu(module: nn.Module) -> bool:
    """True if a parameter or buffer of ``module`` (or its submodules) is on the tpu."""
    return any(t.device.type == "tpu" for t in itertools.chain(module.parameters(), module.buffers()))


@contextlib.contextmanager
def _swapping() -> Iterator[None]:
    """Swap-on-conversion for the duration of one outermost ``_apply``."""
    if torch.__future__.get_swap_module_params_on_conversion():
        yield
        return
    with _future_lock:
        torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        yield
    finally:
        with _future_lock:
            torch.__future__.set_swap_module_params_on_conversion(False)


@contextlib.contextmanager
def _target_is_tpu(flag: bool) -> Iterator[None]:
    previous = getattr(_state, "to_tpu", False)
    _state.to_tpu = previous or flag
    try:
        yield
    finally:
        _state.to_tpu = previous


def _wrap_apply(original: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def _apply(self: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> nn.Module:
        # Only the outermost call decides; the submodules it recurses into follow it.
        if getattr(_state, "inside", False):
            return original(self, fn, recurse)
        _state.inside = True
        try:
            if not (getattr(_state, "to_tpu", False) or any_on_tpu(self)):
                return original(self, fn, recurse)
            try:
                with _swapping():
                    return original(self, fn, recurse)
            except RuntimeError as e:
                # swap_tensors refuses a parameter that something else still holds
                # (typically the autograd graph of an output computed before the
                # move). PyTorch's own fallback for such backends applies then: the
                # remaining parameters become new objects, as without this module.
                if "Couldn't swap" not in str(e):
                    raise
                warnings.warn(
                    f"{type(self).__name__}._apply: {e.__cause__ or e}; the parameters not yet moved are replaced "
                    "by new Parameter objects (free earlier outputs before moving the module to keep them)",
                    stacklevel=3,
                )
            return original(self, fn, recurse)
        finally:
            _state.inside = False

    _apply.__wrapped__ = original  # type: ignore[attr-defined]
    return _apply


def _wrap_to(original: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def to(self: nn.Module, *args: Any, **kwargs: Any) -> nn.Module:
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        with _target_is_tpu(device is not None and device.type == "tpu"):
            return original(self, *args, **kwargs)

    to.__wrapped__ = original  # type: ignore[attr-defined]
    to.__doc__ = original.__doc__
    return to


def _wrap_tpu(original: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def tpu(self: nn.Module, *args: Any, **kwargs: Any) -> nn.Module:
        with _target_is_tpu(True):
            return original(self, *args, **kwargs)

    tpu.__wrapped__ = original  # type: ignore[attr-defined]
    return tpu


def install() -> None:
    """Patches ``nn.Module`` once (safe to call twice)."""
    if getattr(nn.Module._apply, "__wrapped__", None) is not None:
        return
    nn.Module._apply = _wrap_apply(nn.Module._apply)  # type: ignore[method-assign]
    nn.Module.to = _wrap_to(nn.Module.to)  # type: ignore[method-assign]
    if hasattr(nn.Module, "tpu"):
        nn.Module.tpu = _wrap_tpu(nn.Module.tpu)  # type: ignore[attr-defined]
