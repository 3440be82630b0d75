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


def format_profile(events: Any) -> str:
    """Where device time went in a ``torch.profiler`` run: the runtime's ranges
    (``tpu::compile``, ``tpu::execute``, ``tpu::to_host``, ``tpu::to_device``)
    by kind, with counts and total host time, and the slowest graphs."""
    kinds: dict[str, list[float]] = {}
    graphs: dict[str, float] = {}
    for e in events:
        name = e.name
        if not name.startswith("tpu::"):
            continue
        kind = name.split()[0]
        us = e.cpu_time_total
        kinds.setdefault(kind, []).append(us)
        if kind in ("tpu::compile", "tpu::execute"):
            graphs[name] = graphs.get(name, 0.0) + us
    if not kinds:
        return "no tpu work was recorded (was the profiler running around tpu ops?)"
    lines = [f"{'range':<16} {'count':>7} {'total ms':>10}"]
    for kind, times in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"{kind:<16} {len(times):>7} {sum(times) / 1e3:>10.3f}")
    lines.append("slowest graphs:")
    for name, us in sorted(graphs.items(), key=lambda kv: -kv[1])[:5]:
        lines.append(f"  {us / 1e3:>9.3f} ms  {name}")
    return "\n".join(lines)
