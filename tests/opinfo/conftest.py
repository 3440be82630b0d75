"""Result collection for the OpInfo runner.

Every test process (each xdist worker too) appends its records to a JSON-lines
part file next to the output; the controlling process merges them into one
JSON file at the end of the session. Output: ``--opinfo-out PATH`` (when
pytest is started on ``tests/opinfo``) or env ``TORCH_TPU_OPINFO_OUT``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--opinfo-out", default=None, help="write the OpInfo runner's results (JSON) to this path")


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


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    parts = parts_dir(config)
    if parts is not None and not _is_worker(config):
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True, exist_ok=True)
    config._opinfo_started = time.time()  # type: ignore[attr-defined]


def record(config: pytest.Config, entry: str, info: dict, records: list[dict]) -> None:
    """Appends one entry's records to this process's part file."""
    parts = parts_dir(config)
    if parts is None:
        return
    worker = config.workerinput["workerid"] if _is_worker(config) else "main"  # type: ignore[attr-defined]
    with open(parts / f"{worker}.jsonl", "a") as f:
        f.write(json.dumps({"entry": entry, "info": info, "records": records}) + "\n")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    parts, out = parts_dir(config), out_path(config)
    if parts is None or out is None or _is_worker(config) or not parts.exists():
        return
    import torch

    from opinfo_lib import DTYPE_NAMES, MAX_SAMPLES, MODES, lowered_ops

    entries: dict[str, dict] = {}
    results: list[dict] = []
    for part in sorted(parts.glob("*.jsonl")):
        for line in part.read_text().splitlines():
            item = json.loads(line)
            entries[item["entry"]] = item["info"]
            results.extend(item["records"])
    results.sort(key=lambda r: (r["entry"], r["dtype"], r["mode"], r["kind"]))
    meta = {
        "torch": torch.__version__,
        "modes": list(MODES),
        "dtypes": list(DTYPE_NAMES.values()),
        "max_samples": MAX_SAMPLES,
        "selection": "full" if os.environ.get("TORCH_TPU_OPINFO_FULL") == "1" else "ci",
        "wall_s": round(time.time() - config._opinfo_started, 1),  # type: ignore[attr-defined]
        "lowered_ops": lowered_ops(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "entries": entries, "results": results}, indent=0) + "\n")
    shutil.rmtree(parts, ignore_errors=True)
