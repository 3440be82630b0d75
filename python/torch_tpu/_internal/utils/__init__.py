"""TorchTPU's ``torch_tpu._internal.utils``."""
