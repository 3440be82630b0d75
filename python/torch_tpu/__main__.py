"""``python -m torch_tpu``: what a bug report needs (platform, plugin, devices, versions)."""

from __future__ import annotations

import os
import platform as _py_platform
import sys

import torch

import torch_tpu


def report() -> str:
    lines = [f"torch_tpu {torch_tpu.__version__}", f"torch {torch.__version__}"]
    lines.append(f"python {sys.version.split()[0]} ({sys.executable}) on {_py_platform.platform()}")
    try:
        info = torch_tpu.plugin_info()
    except RuntimeError as e:
        lines.append(f"platform: unavailable ({e})")
        info = {}
    keys = ("platform", "plugin", "platform_name", "platform_version", "pjrt_api_version", "device_count", "cache_dir")
    for key in keys:
        if key in info:
            lines.append(f"{key}: {info[key]}")
    for i in range(torch.tpu.device_count()):
        lines.append(f"device {i}: {torch.tpu.get_device_name(i)}")
    lines.append(f"eager mode: {torch_tpu.get_eager_mode()}")
    lines.append("installed plugins: " + (", ".join(p for _, p in torch_tpu._plugins.candidates()) or "none"))
    env = {k: v for k, v in os.environ.items() if k.startswith(("TORCH_TPU_", "TPU_"))}
    lines.append("environment: " + (", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "(none set)"))
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
