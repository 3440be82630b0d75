"""safetensors files straight to the tpu: ``load_file(path, device="tpu")``,
``safe_open(path, framework="pt", device="tpu")`` and, through them, Hugging
Face ``from_pretrained(..., device_map="tpu")``.

safetensors' Rust core knows only the devices it was built for and rejects
"tpu". For a tpu device the file is opened on the CPU, where safetensors
memory-maps it, and each tensor is copied from the mapping to the device once:
no intermediate CPU copy.
"""

from __future__ import annotations

import sys
from typing import Any

import torch


def _is_tpu(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "tpu"
    return isinstance(device, str) and device.split(":", 1)[0] == "tpu"


class _TpuSlice:
    def __init__(self, inner: Any, device: torch.device) -> None:
        self._inner, self._device = inner, device

    def __getitem__(self, index: Any) -> torch.Tensor:
        return self._inner[index].to(self._device)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _wrap_safe_open(original: type) -> type:
    class safe_open:
        """``safetensors.safe_open`` that also accepts a tpu device."""

        def __init__(self, filename: Any, framework: str, device: Any = "cpu", **kwargs: Any) -> None:
            self._device = torch.device(device) if _is_tpu(device) else None
            self._inner = original(filename, framework=framework, device="cpu" if self._device else device, **kwargs)

        def __enter__(self) -> safe_open:
            self._inner.__enter__()
            return self

        def __exit__(self, *exc: Any) -> Any:
            return self._inner.__exit__(*exc)

        def get_tensor(self, name: str) -> torch.Tensor:
            t = self._inner.get_tensor(name)
            return t.to(self._device) if self._device is not None else t

        def get_tensors(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            tensors = self._inner.get_tensors(*args, **kwargs)
            if self._device is None:
                return tensors
            return {k: t.to(self._device) for k, t in tensors.items()}

        def get_slice(self, name: str) -> Any:
            s = self._inner.get_slice(name)
            return _TpuSlice(s, self._device) if self._device is not None else s

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    safe_open._torch_tpu_original = original  # type: ignore[attr-defined]
    return safe_open


def install() -> None:
    """Wraps ``safe_open`` where safetensors and Hugging Face look it up (once)."""
    try:
        import safetensors
        import safetensors.torch as st
    except ImportError:
        return
    if hasattr(safetensors.safe_open, "_torch_tpu_original"):
        return
    wrapped = _wrap_safe_open(safetensors.safe_open)
    safetensors.safe_open = wrapped
    st.safe_open = wrapped
    # Modules that imported the name before torch_tpu did (transformers binds it at import).
    for name in ("transformers.modeling_utils", "transformers.core_model_loading", "accelerate.utils.modeling"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "safe_open", None) is wrapped._torch_tpu_original:
            mod.safe_open = wrapped
