"""Shared fixtures: the eager modes each test runs in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import torch_tpu
from helpers import MODES


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test in each available eager mode, restoring the previous mode after it."""
    with torch_tpu.eager_mode(request.param):
        yield request.param
        torch_tpu.sync()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
