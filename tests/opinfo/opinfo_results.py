"""Where the OpInfo runner's records go: one JSON-lines part file per test
process, merged by ``conftest.pytest_sessionfinish`` into ``--opinfo-out``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def out_path(config: pytest.Config) -> Path | None:
    path = None
    try:
        path = config.getoption("--opinfo-out")
    except ValueError:
        pass
    path = path or os.environ.get("TORCH_TPU_OPINFO_OUT")
    return Path(path).resolve() if path else None


def parts_dir(config: pytest.Config) -> Path | None:
    out = out_path(config)
    return out.with_name(out.name + ".parts") if out else None


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def record(config: pytest.Config, entry: str, info: dict, records: list[dict]) -> None:
    """Appends one entry's records to this process's part file."""
    parts = parts_dir(config)
    if parts is None:
        return
    worker = config.workerinput["workerid"] if is_worker(config) else "main"  # type: ignore[attr-defined]
    with open(parts / f"{worker}.jsonl", "a") as f:
        f.write(json.dumps({"entry": entry, "info": info, "records": records}) + "\n")
