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

import pytest
from opinfo_results import is_worker, out_path, parts_dir


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--opinfo-out", default=None, help="write the OpInfo runner's results (JSON) to this path")


def pytest_configure(config: pytest.Config) -> None:
    parts = parts_dir(config)
    if parts is not None and not is_worker(config):
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True, exist_ok=True)
    config._opinfo_started = time.time()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    parts, out = parts_dir(config), out_path(config)
    if parts is None or out is None or is_worker(config) or not parts.exists():
        return
    import torch
    from opinfo_lib import DTYPE_NAMES, DTYPES, MAX_SAMPLES, MODES, lowered_ops

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
        "dtypes": [DTYPE_NAMES[d] for d in DTYPES],
        "max_samples": MAX_SAMPLES,
        "selection": (
            f"ops: {os.environ['TORCH_TPU_OPINFO_OPS']}"
            if os.environ.get("TORCH_TPU_OPINFO_OPS")
            else "full"
            if os.environ.get("TORCH_TPU_OPINFO_FULL") == "1"
            else "ci"
        )
        + (f", dtypes {os.environ['TORCH_TPU_OPINFO_DTYPES']}" if os.environ.get("TORCH_TPU_OPINFO_DTYPES") else ""),
        "wall_s": round(time.time() - config._opinfo_started, 1),  # type: ignore[attr-defined]
        "lowered_ops": lowered_ops(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "entries": entries, "results": results}, indent=0) + "\n")
    shutil.rmtree(parts, ignore_errors=True)
