"""``torch_tpu._internal.pallas``: TorchTPU's Pallas bridge (``pallas``: ``JaxCallable`` and its helpers;
``tpu_torch_pallas``: the registry of lowered kernels and ``call_custom_kernel``), backed by ``torch_tpu.pallas``."""
