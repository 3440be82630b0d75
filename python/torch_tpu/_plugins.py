"""PJRT plugin discovery, from the running interpreter.

Plugins are found through ``importlib`` in the interpreter that imports
``torch_tpu`` (never a ``python3`` from ``PATH``, so a venv's python works
without activation), without importing the plugin packages. The Rust runtime
gets the ordered list and loads the first one that fits ``TORCH_TPU_PLATFORM``
(``TORCH_TPU_PJRT_PLUGIN`` overrides everything).

This file imports nothing but the standard library, so the Rust tests can run
it as a script to find a CPU plugin: ``python3 _plugins.py cpu``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import NamedTuple


class PluginPackage(NamedTuple):
    platform: str
    package: str  # importable module that holds the plugin
    library: str  # the .so, relative to the module's directory
    pjrt_api: tuple[int, int]  # the PJRT C API version the known release implements


# Within a platform, the newest PJRT API first. See docs/plugins.md for why each is trusted.
KNOWN_PLUGINS: tuple[PluginPackage, ...] = (
    PluginPackage("tpu", "libtpu", "libtpu.so", (0, 0)),
    PluginPackage("cuda", "jax_plugins.xla_cuda13", "xla_cuda_plugin.so", (0, 0)),
    PluginPackage("cuda", "jax_plugins.xla_cuda12", "xla_cuda_plugin.so", (0, 0)),
    PluginPackage("cpu", "lammps_jax_pjrt_cpu", "pjrt_c_api_cpu_plugin.so", (0, 115)),
    PluginPackage("cpu", "fastatomstruct_xla_cpu", "libpjrt_cpu.so", (0, 106)),
    PluginPackage("cpu", "xla_plugins.xla_cpu_pjrt", "xla_cpu_pjrt.so", (0, 81)),
)

PLATFORM_ORDER = ("tpu", "cuda", "cpu")


def _module_dir(name: str) -> str | None:
    """The directory of an installed module, found without importing it
    (only its parent packages, which for these are namespace packages)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return next(iter(spec.submodule_search_locations), None)
    return os.path.dirname(spec.origin) if spec.origin else None


def _gpu_visible() -> bool:
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


def candidates() -> list[tuple[str, str]]:
    """``(platform, path)`` of every installed plugin, in the order they are preferred."""
    found: list[tuple[str, str]] = []
    for platform in PLATFORM_ORDER:
        if platform == "cuda" and not _gpu_visible():
            continue
        for p in KNOWN_PLUGINS:
            if p.platform != platform:
                continue
            d = _module_dir(p.package)
            if d is not None and os.path.isfile(os.path.join(d, p.library)):
                found.append((platform, os.path.join(d, p.library)))
    return found


if __name__ == "__main__":
    wanted = sys.argv[1] if len(sys.argv) > 1 else None
    for platform, path in candidates():
        if wanted in (None, platform):
            print(path)
            break
    else:
        sys.exit(f"no PJRT plugin found for {wanted or 'any platform'}")
