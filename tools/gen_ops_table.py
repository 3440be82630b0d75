#!/usr/bin/env python3
"""Writes docs/ops.md (the OpInfo coverage table) from the OpInfo runner's JSON.

    TORCH_TPU_OPINFO_FULL=1 PYTHONPATH=python pytest tests/opinfo -n 2 -q --opinfo-out build/opinfo.json
    python tools/gen_ops_table.py build/opinfo.json [--out docs/ops.md] [--update-expected]

Several JSON files merge in order: a later run's cases replace an earlier run's
for the same (entry, dtype, mode, kind), so a full run can be refreshed by
partial ones (``TORCH_TPU_OPINFO_OPS=...`` or ``TORCH_TPU_OPINFO_DTYPES=...``);
the table names every run it was built from.

``--update-expected`` also records every case's status in
tests/opinfo/expected.json (the CI slice fails when a case recorded as passing
stops passing); entries absent from the results keep their recorded status.
Needs no torch: it only reads the JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ("float32", "bfloat16", "int64", "bool", "complex64")
SHORT = {"float32": "f32", "bfloat16": "bf16", "int64": "i64", "bool": "bool", "complex64": "c64"}
BAD = ("fail", "unsupported")


def pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100.0 * n / d:.1f}%)" if d else "-"


def esc(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def rate_rows(results: list[dict], modes: list[str]) -> list[str]:
    """Pass rates per (dtype, kind) and mode: entries that pass / entries run (skips excluded)."""
    rows = [
        "| dtype | pass | "
        + " | ".join(f"{m}: pass" for m in modes)
        + " | "
        + " | ".join(f"{m}: pass incl. CPU fallback" for m in modes)
        + " |",
        "|---|---|" + "---|" * (2 * len(modes)),
    ]
    for dtype in DTYPES:
        for kind in ("fwd", "bwd"):
            cells, fb_cells = [], []
            for mode in modes:
                rs = [r for r in results if (r["dtype"], r["kind"], r["mode"]) == (dtype, kind, mode)]
                run = [r for r in rs if r["status"] != "skip"]
                if not run:
                    break
                ok = sum(r["status"] == "pass" for r in run)
                fb = sum(r["status"] in ("pass", "cpu-fallback") for r in run)
                cells.append(pct(ok, len(run)))
                fb_cells.append(pct(fb, len(run)))
            if cells:
                label = "forward" if kind == "fwd" else "gradients"
                rows.append(f"| {dtype} | {label} | " + " | ".join(cells) + " | " + " | ".join(fb_cells) + " |")
    return rows


def status_rows(results: list[dict], modes: list[str]) -> list[str]:
    statuses = ("pass", "cpu-fallback", "unsupported", "fail", "skip")
    rows = ["| mode | dtype | kind | " + " | ".join(statuses) + " |", "|---|---|---|" + "---|" * len(statuses)]
    for mode in modes:
        for dtype in DTYPES:
            for kind in ("fwd", "bwd"):
                c = Counter(r["status"] for r in results if (r["dtype"], r["kind"], r["mode"]) == (dtype, kind, mode))
                if c:
                    rows.append(f"| {mode} | {dtype} | {kind} | " + " | ".join(str(c[s]) for s in statuses) + " |")
    return rows


def blockers(results: list[dict]) -> list[tuple[str, int, int]]:
    """(aten op, entries blocked, float32-forward entries blocked) for ops without a lowering."""
    by_op: dict[str, set[str]] = defaultdict(set)
    f32: dict[str, set[str]] = defaultdict(set)
    for r in results:
        for op in r.get("missing", []):
            by_op[op].add(r["entry"])
            if r["dtype"] == "float32" and r["kind"] == "fwd":
                f32[op].add(r["entry"])
    return sorted(((op, len(es), len(f32[op])) for op, es in by_op.items()), key=lambda t: (-t[1], t[0]))


def failure_reasons(results: list[dict]) -> list[tuple[str, int]]:
    """The most common failure reasons (first words), to point at shared bugs."""
    c: Counter[str] = Counter()
    seen = set()
    for r in results:
        if r["status"] == "fail" and (r["entry"], r.get("reason")) not in seen:
            seen.add((r["entry"], r.get("reason")))
            reason = r.get("reason", "")
            c[reason.split(" (arguments")[0][:110]] += 1
    return c.most_common(25)


def base_names(lowered: list[str]) -> set[str]:
    out = set()
    for name in lowered:
        base = name.split(".")[0]
        out.add(base)
        out.add(base.rstrip("_"))
    return out


def describe(cases: list[dict], kind: str, modes: list[str]) -> str:
    """The dtypes whose `kind` cases pass in every mode; failing ones marked."""
    parts = []
    for dtype in DTYPES:
        cs = [c for c in cases if c["dtype"] == dtype and c["kind"] == kind]
        if not cs:
            continue
        st = {c["status"] for c in cs}
        if st <= {"pass"}:
            parts.append(SHORT[dtype])
        elif st <= {"skip"}:
            parts.append(f"{SHORT[dtype]} (skip)")
        elif st <= {"pass", "cpu-fallback", "skip"}:
            parts.append(f"{SHORT[dtype]} (fallback)")
        else:
            bad = [c["mode"] for c in cs if c["status"] in BAD]
            where = "" if len(bad) == len(modes) else f" {'/'.join(bad)}"
            parts.append(f"~~{SHORT[dtype]}~~{where}")
    return " ".join(parts) or "-"


def entry_row(entry: str, info: dict, cases: list[dict], modes: list[str], native: set[str]) -> tuple[str, str]:
    run = [c for c in cases if c["status"] != "skip"]
    statuses = {c["status"] for c in run}
    ok_modes = [m for m in modes if all(c["status"] == "pass" for c in run if c["mode"] == m)]
    if statuses & set(BAD):
        status = "failing"
    elif "cpu-fallback" in statuses:
        status = "CPU fallback"
    elif not run:
        status = "skipped"
    else:
        aten = info.get("aten_name") or entry.split(".")[0]
        status = "native" if aten in native else "decomposed"
    # Reasons: failing cases grouped by reason, then ops that ran on the CPU, then notes.
    groups: dict[str, list[str]] = defaultdict(list)
    for c in cases:
        if c["status"] in BAD:
            groups[c.get("reason", c["status"])].append(f"{SHORT[c['dtype']]}/{c['mode']}/{c['kind']}")
    reasons = [f"{', '.join(where)}: {reason[:160]}" for reason, where in groups.items()]
    fb = sorted({op for c in cases if c["status"] == "cpu-fallback" for op in c.get("missing", [])})
    if fb:
        reasons.append("on CPU: " + ", ".join(fb))
    notes = sorted({c["note"] for c in cases if c.get("note")})
    reasons.extend(notes)
    bwd = describe(cases, "bwd", modes) if info.get("supports_autograd") else "n/a"
    row = (
        f"| `{entry}` | {' '.join(SHORT[d] for d in info.get('dtypes', []))} | {describe(cases, 'fwd', modes)} "
        f"| {bwd} | {', '.join(ok_modes) or 'none'} | {status} | {esc('; '.join(reasons))} |"
    )
    return status, row


def render(data: dict) -> str:
    meta, results, entries = data["meta"], data["results"], data["entries"]
    modes = meta.get("modes", ["strict", "fused"])
    native = base_names(meta.get("lowered_ops", []))
    by_entry: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_entry[r["entry"]].append(r)
    rows, status_count = [], Counter()
    for entry in sorted(entries):
        status, row = entry_row(entry, entries[entry], by_entry.get(entry, []), modes, native)
        status_count[status] += 1
        rows.append(row)
    out = [
        "# Op coverage: PyTorch's OpInfo database on `tpu`",
        "",
        "Generated by `python tools/gen_ops_table.py <results.json>` from the OpInfo runner",
        "(`tests/opinfo`); do not edit by hand. Reproduce:",
        "",
        "```",
        "TORCH_TPU_OPINFO_FULL=1 PYTHONPATH=python pytest tests/opinfo -n 2 -q --opinfo-out build/opinfo.json",
        "python tools/gen_ops_table.py build/opinfo.json --update-expected",
        "```",
        "",
        f"torch {meta.get('torch')}, selection `{meta.get('selection')}` ({len(entries)} entries), "
        f"modes {', '.join(modes)}, first {meta.get('max_samples')} sample inputs per case, "
        f"{len(meta.get('lowered_ops', []))} lowered overloads; run took {meta.get('wall_s')} s.",
        "",
        "Each case is (entry, dtype, mode, forward or gradients); dtypes are those the entry supports on the",
        "CPU among float32, bfloat16, int64, bool, complex64; gradients are float32, for entries that support",
        "autograd.",
        "Outputs are compared with the CPU with `torch.testing.assert_close(equal_nan=True)` at",
        "`rtol = atol = 1e-3` (PyTorch's `test_compare_cpu`), never tighter than the dtype's default.",
        "Statuses: **pass**; **cpu-fallback** (needs an op with no lowering, passes with",
        "`TORCH_TPU_CPU_FALLBACK=1`); **unsupported** (an op with no lowering, fails even with fallback);",
        "**fail** (error or mismatch); **skip** (no sample inputs or no differentiable output; not counted).",
        "",
        "## Pass rates (entries)",
        "",
        *rate_rows(results, modes),
        "",
        "## Cases by status",
        "",
        *status_rows(results, modes),
        "",
        "## Entries by status",
        "",
        "native: passes and its aten op has a lowering; decomposed: passes through PyTorch's decompositions",
        "into lowered ops; CPU fallback: passes only with fallback; failing: at least one case fails.",
        "",
        "| status | entries |",
        "|---|---|",
        *[f"| {s} | {n} |" for s, n in sorted(status_count.items(), key=lambda kv: -kv[1])],
        "",
        "## Missing lowerings (aten ops without a rule, by entries blocked)",
        "",
        "| aten op | entries | float32 forward entries |",
        "|---|---|---|",
        *[f"| `{op}` | {n} | {n32} |" for op, n, n32 in blockers(results)],
        "",
        "## Most common failure reasons",
        "",
        "| reason | entries |",
        "|---|---|",
        *[f"| {esc(reason)} | {n} |" for reason, n in failure_reasons(results)],
        "",
        "## Entries",
        "",
        "forward / gradients: dtypes that pass in every mode; ~~struck~~ fails (in the modes named, else all);",
        "(fallback) passes with CPU fallback. modes: modes in which every case of the entry passes.",
        "",
        "| entry | dtypes | forward | gradients | modes | status | reasons |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(out)


def expected_from(data: dict) -> dict[str, dict[str, str]]:
    exp: dict[str, dict[str, str]] = defaultdict(dict)
    for r in data["results"]:
        key = f"{r['dtype']}/{r['mode']}/{r['kind']}"
        reason = r.get("reason") or ", ".join(r.get("missing", []))
        exp[r["entry"]][key] = r["status"] + (f": {reason[:200]}" if reason and r["status"] != "pass" else "")
    return exp


def write_expected(path: Path, data: dict) -> None:
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(expected_from(data))
    lines = [f"  {json.dumps(k)}: {json.dumps(old[k], sort_keys=True)}" for k in sorted(old)]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


def merge(runs: list[dict]) -> dict:
    """One result set from several runs, later runs winning case by case."""
    if len(runs) == 1:
        return runs[0]
    cases: dict[tuple, dict] = {}
    entries: dict[str, dict] = {}
    for run in runs:
        for name, info in run["entries"].items():
            old = entries.get(name, {})
            dtypes = list(dict.fromkeys(old.get("dtypes", []) + info.get("dtypes", [])))
            entries[name] = {**old, **info, "dtypes": dtypes}
        for r in run["results"]:
            cases[(r["entry"], r["dtype"], r["mode"], r["kind"])] = r
    meta = dict(runs[-1]["meta"])
    meta["selection"] = " + ".join(f"`{r['meta'].get('selection')}`" for r in runs).strip("`")
    meta["wall_s"] = " + ".join(str(r["meta"].get("wall_s")) for r in runs)
    meta["dtypes"] = list(dict.fromkeys(d for r in runs for d in r["meta"].get("dtypes", [])))
    return {"meta": meta, "entries": entries, "results": [cases[k] for k in sorted(cases)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+", help="JSON written by the OpInfo runner (--opinfo-out)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "ops.md")
    ap.add_argument("--update-expected", action="store_true", help="also update tests/opinfo/expected.json")
    ap.add_argument("--expected", type=Path, default=ROOT / "tests" / "opinfo" / "expected.json")
    args = ap.parse_args()
    data = merge([json.loads(p.read_text()) for p in args.results])
    args.out.write_text(render(data))
    print(f"wrote {args.out} ({len(data['entries'])} entries, {len(data['results'])} cases)")
    if args.update_expected:
        write_expected(args.expected, data)
        print(f"updated {args.expected}")


if __name__ == "__main__":
    main()
