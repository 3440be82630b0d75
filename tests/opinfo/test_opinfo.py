"""PyTorch's OpInfo database on ``tpu``: each entry's sample inputs against CPU
PyTorch, per dtype (float32, bfloat16, int64, bool where the entry supports
them on CPU), in strict and fused modes, forward and (float32) backward.

CI runs a slice (``CI_ENTRIES`` and every ``CI_STRIDE``-th entry) and fails on a regression against
``expected.json`` (a case recorded there as passing that no longer passes);
known failures are listed in ``expected.json`` and in ``docs/ops.md`` with
their reasons.

Full run (every OpInfo entry; a few minutes per 100 entries and core)::

    TORCH_TPU_OPINFO_FULL=1 PYTHONPATH=python pytest tests/opinfo -n 2 -q \\
        --opinfo-out build/opinfo.json
    python tools/gen_ops_table.py build/opinfo.json --update-expected

Other knobs: ``TORCH_TPU_OPINFO_OPS=add,mm`` runs the named entries only;
``TORCH_TPU_OPINFO_OUT`` is the same as ``--opinfo-out``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import opinfo_lib as L
import pytest
from opinfo_results import record

EXPECTED_PATH = Path(__file__).with_name("expected.json")

# The CI slice: these common elementwise, reduction, linear algebra, nn, shape
# and indexing entries, plus every CI_STRIDE-th entry of the sorted database
# (about 230 entries; under two minutes on two cores with a cold compile cache).
CI_STRIDE = 4
CI_ENTRIES = [
    "abs", "add", "addcmul", "addmm", "all", "amax", "any", "argmax", "bmm", "cat", "clamp", "cos",
    "cumsum", "div.no_rounding_mode", "eq", "exp", "expand", "flatten", "gather", "ge", "index_select",
    "log", "log_softmax", "logical_not", "masked_fill", "matmul", "max.reduction_no_dim", "maximum",
    "mean", "mm", "mul", "neg", "nn.functional.conv2d", "nn.functional.cross_entropy",
    "nn.functional.embedding", "nn.functional.gelu", "nn.functional.layer_norm", "nn.functional.linear",
    "nn.functional.relu", "nn.functional.silu", "permute", "pow", "reshape", "rsqrt", "scatter_add",
    "sigmoid", "sin", "softmax", "sqrt", "squeeze", "stack", "sub", "sum", "tanh", "transpose", "tril",
    "unsqueeze", "var", "view", "where",
]  # fmt: skip


def _selection() -> list[str]:
    names = os.environ.get("TORCH_TPU_OPINFO_OPS")
    if names:
        return [n for n in names.split(",") if n]
    names = sorted(L.entries())
    if os.environ.get("TORCH_TPU_OPINFO_FULL") == "1":
        return names
    # CI: the common entries, and every CI_STRIDE-th entry for breadth.
    return sorted(set(CI_ENTRIES) | set(names[::CI_STRIDE]))


ENTRIES = L.entries()
SELECTED = _selection()

# A lower rank is worse; a case that drops below its recorded rank is a regression.
RANK = {"pass": 3, "cpu-fallback": 2, "unsupported": 1, "fail": 1, "skip": 0}


def _expected() -> dict[str, dict[str, str]]:
    if not EXPECTED_PATH.exists():
        return {}
    return json.loads(EXPECTED_PATH.read_text())


EXPECTED = _expected()


def test_ci_entries_exist() -> None:
    """The CI slice names real OpInfo entries (catches renames between torch versions)."""
    missing = [n for n in CI_ENTRIES if n not in ENTRIES]
    assert not missing, f"not OpInfo entries in this torch: {missing}"


@pytest.mark.parametrize("entry", SELECTED)
def test_opinfo(entry: str, request: pytest.FixtureRequest) -> None:
    op = ENTRIES.get(entry)
    if op is None:
        pytest.skip(f"{entry} is not an OpInfo entry in this torch")
    records = L.run_entry(op)
    record(request.config, entry, L.entry_info(op), records)
    expected = EXPECTED.get(entry, {})
    regressions = []
    for r in records:
        want = expected.get(L.case_key(r))
        if want is None:
            continue
        want_status = want.split(":", 1)[0]
        if RANK[r["status"]] < RANK.get(want_status, 0):
            regressions.append(f"{L.case_key(r)}: {r['status']} (expected {want_status}) {r.get('reason', '')}")
    assert not regressions, f"{entry} regressed:\n" + "\n".join(regressions)
