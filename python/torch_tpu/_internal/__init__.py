"""TorchTPU's internal module paths, for libraries written against TorchTPU (Helion's Pallas launcher)."""
