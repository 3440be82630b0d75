"""TorchTPU's ``torch_tpu._internal.utils.hardware``: what chip a Pallas kernel is lowered for."""

from __future__ import annotations

import torch

# The TPU generation Pallas kernels target when the plugin is not a TPU's
# (CPU or GPU: kernels are lowered in interpret mode, and the TPU's sizes,
# VMEM for one, still shape them). Helion names TorchTPU's chip this way.
DEFAULT_TPU_DEVICE_NAME = "TPU v7"


def get_tpu_device_name(device: int | None = None) -> str:
    """The device kind of a TPU as its PJRT plugin reports it (``"TPU v6 lite"``, say);
    ``DEFAULT_TPU_DEVICE_NAME`` when the plugin in use is not a TPU's."""
    import torch_tpu

    if torch_tpu.platform() != "tpu":
        return DEFAULT_TPU_DEVICE_NAME
    return torch.tpu.get_device_name(device)
