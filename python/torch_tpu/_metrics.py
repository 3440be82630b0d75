"""Formatting of the runtime's metrics as a readable table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if key.endswith("_s"):
            return f"{value:.3f} s"
        return f"{value:.6g}"
    if isinstance(value, int) and key.startswith("bytes"):
        return _fmt_bytes(value)
    return str(value)


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit} ({n} B)"
        size /= 1024
    return f"{n} B"


def format_report(metrics: Mapping[str, Any], title: str = "torch_tpu metrics") -> str:
    """Counters first, one per line, then each table (a dict-valued metric)
    with its entries sorted by count, largest first."""
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in metrics.items() if isinstance(v, Mapping)}
    width = max([len(k) for k in scalars] + [len(str(e)) + 2 for t in tables.values() for e in t] + [20])
    lines = [title, "=" * len(title)]
    for key, value in scalars.items():
        lines.append(f"{key:<{width}}  {_fmt(key, value)}")
    for key, table in tables.items():
        lines.append("")
        lines.append(f"{key}:" if table else f"{key}: (none)")
        entries = sorted(
            table.items(), key=lambda kv: (-kv[1], str(kv[0])) if isinstance(kv[1], (int, float)) else (0, str(kv[0]))
        )
        for name, value in entries:
            lines.append(f"  {name!s:<{width - 2}}  {_fmt(key, value)}")
    return "\n".join(lines)
