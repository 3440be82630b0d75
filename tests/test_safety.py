"""No silent wrong answers: disk-cache trust, validated environment variables,
no panic across the C ABI, storage addresses that cannot wrap.

Anything that needs a fresh process (an import, a cache directory, an address
space) runs in a subprocess; results are compared with CPU PyTorch."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
import time
from pathlib import Path

import pytest
import torch

from helpers import TPU, result_line, run_python
from torch_tpu import _core

ROOT = Path(__file__).resolve().parent.parent

# --- the disk cache ----------------------------------------------------------------------

# Program `A` or `B` (same shapes, different ops), on the tpu and on the CPU.
PROGRAM = """
import json, sys, torch, torch_tpu
torch_tpu.set_eager_mode("fused")
x = torch.linspace(-2.0, 2.0, 35).reshape(7, 5)
f = {"A": lambda t: t.sin() * 2, "B": lambda t: t.cos() + 3}[sys.argv[1] if len(sys.argv) > 1 else PROG]
out = f(x.to("tpu")).cpu()
print("RESULT " + json.dumps({
    "ok": torch.allclose(out, f(x), rtol=1e-5, atol=1e-6),
    "tpu": out.flatten().tolist(),
    "metrics": torch_tpu.metrics(),
    "cache_dir": torch_tpu.plugin_info()["cache_dir"],
}))
"""


def _run(prog: str, cache: Path, prelude: str = "") -> tuple[dict, str]:
    r = run_python(prelude + f"PROG = {prog!r}\n" + PROGRAM, env={"TORCH_TPU_CACHE_DIR": str(cache)})
    return result_line(r), r.stderr


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.xexe"))


def _one_entry(cache: Path) -> Path:
    files = _entries(cache)
    assert len(files) == 1, f"expected one compiled graph, found {files}"
    return files[0]


def test_entry_header_names_its_source(tmp_path: Path) -> None:
    """The header holds the hash the entry is filed under, and the payload's length and hash."""
    first, _ = _run("A", tmp_path / "c")
    assert first["ok"], first
    assert first["cache_dir"] == str(tmp_path / "c")
    data = _one_entry(tmp_path / "c").read_bytes()
    assert data[:8] == b"TTPUEXE2"
    assert data[8:40].hex() == _one_entry(tmp_path / "c").stem
    assert int.from_bytes(data[40:48], "little") == len(data) - 80
    assert hashlib.sha256(data[80:]).digest() == data[48:80]
    second, _ = _run("A", tmp_path / "c")
    assert second["metrics"]["cache_hits_disk"] == 1 and second["metrics"]["compiles"] == 0, second
    assert second["tpu"] == first["tpu"]


def test_relabelled_entry_is_not_run(tmp_path: Path) -> None:
    """Program A's executable filed under program B's name is refused: B's results stay B's."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a, _ = _run("A", a_dir)
    b, _ = _run("B", b_dir)
    assert a["ok"] and b["ok"] and a["tpu"] != b["tpu"]
    b_entry = _one_entry(b_dir)
    b_entry.write_bytes(_one_entry(a_dir).read_bytes())
    again, _ = _run("B", b_dir)
    m = again["metrics"]
    assert again["ok"], f"B computed A's results from a relabelled cache entry: {again['tpu']}"
    assert m["cache_foreign_disk"] == 1 and m["cache_corrupt_disk"] == 1, m
    assert m["cache_hits_disk"] == 0 and m["compiles"] == 1, m
    # The refused file was replaced by B's own entry, which the next process uses.
    third, _ = _run("B", b_dir)
    assert third["ok"] and third["metrics"]["cache_hits_disk"] == 1, third["metrics"]


def _damage(kind: str, data: bytes) -> bytes:
    d = bytearray(data)
    if kind == "old format":
        d[:8] = b"TTPUEXE1"
    elif kind == "truncated":
        d = d[: len(d) - 7]
    elif kind == "payload byte":
        d[-100] ^= 0x40
    elif kind == "length field":
        d[40] ^= 0x01
    elif kind == "payload hash":
        d[60] ^= 0x01
    elif kind == "header only":
        d = d[:80]
    elif kind == "source hash":
        d[20] ^= 0x01  # an intact entry of some other source
    return bytes(d)


@pytest.mark.parametrize(
    "kind",
    ["old format", "truncated", "payload byte", "length field", "payload hash", "header only", "source hash"],
)
def test_damaged_entry_is_recompiled(tmp_path: Path, kind: str) -> None:
    cache = tmp_path / "c"
    first, _ = _run("A", cache)
    entry = _one_entry(cache)
    entry.write_bytes(_damage(kind, entry.read_bytes()))
    again, _ = _run("A", cache)
    m = again["metrics"]
    assert again["ok"] and again["tpu"] == first["tpu"], again
    assert m["cache_hits_disk"] == 0 and m["cache_corrupt_disk"] == 1 and m["compiles"] == 1, m
    assert m["cache_foreign_disk"] == (1 if kind == "source hash" else 0), m


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_cache_dir_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(mode)
    prelude = "import torch, torch_tpu\n(torch.ones(3, device='tpu') * 5).cpu()\n"
    r, err = _run("A", cache, prelude=prelude)
    assert r["ok"], r
    assert r["cache_dir"] is None and not list(cache.iterdir()), (r, list(cache.iterdir()))
    assert r["metrics"]["cache_misses_disk"] == 0 and r["metrics"]["cache_hits_disk"] == 0, r
    warnings = [line for line in err.splitlines() if "not using the disk cache" in line]
    assert len(warnings) == 1, f"expected one warning, got:\n{err}"
    assert str(cache) in warnings[0] and "writable by group or others" in warnings[0], warnings[0]
    assert oct(mode)[2:] in warnings[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory to another user")
def test_cache_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "theirs"
    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)
    r, err = _run("A", cache)
    assert r["ok"] and r["cache_dir"] is None, r
    assert "owned by uid 65534" in err and str(cache) in err, err


def test_new_cache_dir_is_private(tmp_path: Path) -> None:
    cache = tmp_path / "deep" / "c"
    r, _ = _run("A", cache)
    assert r["ok"]
    assert stat.S_IMODE(cache.stat().st_mode) & 0o077 == 0, oct(cache.stat().st_mode)
    assert stat.S_IMODE(_one_entry(cache).stat().st_mode) & 0o077 == 0


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    """A write that fails half-way (here: a file-size limit, as a full disk would) leaves
    neither an entry nor its temporary file; the run itself is unaffected."""
    cache = tmp_path / "c"
    limit = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))\n"
    )
    r, _ = _run("A", cache, prelude=limit)
    assert r["ok"], r
    assert r["metrics"]["compiles"] == 1, r["metrics"]
    assert list(cache.iterdir()) == [], list(cache.iterdir())
    # Without the limit the same entry is written (so the limit is what stopped it).
    r, _ = _run("A", cache)
    assert r["ok"] and len(_entries(cache)) == 1 and _entries(cache)[0].stat().st_size > 2048


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    cache.mkdir(mode=0o700)
    old, fresh = cache / "dead.tmp123", cache / "live.tmp456"
    for p in (old, fresh):
        p.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    r, _ = _run("A", cache)
    assert r["ok"]
    assert not old.exists(), "a two-hour-old temporary file was kept"
    assert fresh.exists(), "a fresh temporary file (maybe another process's write) was removed"


# --- environment variables -------------------------------------------------------------

BAD_VALUES = [
    ("TORCH_TPU_FUSED_MAX_OPS", "abc", "integer from 1 to"),
    ("TORCH_TPU_FUSED_MAX_OPS", "0", "integer from 1 to"),
    ("TORCH_TPU_CPU_DEVICE_COUNT", "-1", "integer from 1 to 127"),
    ("TORCH_TPU_CPU_DEVICE_COUNT", "100000", "integer from 1 to 127"),
    ("TORCH_TPU_CPU_DEVICE_COUNT", "2.5", "integer from 1 to 127"),
    ("TORCH_TPU_EAGER_MODE", "turbo", "debug, strict, fused"),
    ("TORCH_TPU_PLATFORM", "gpu", "tpu, cuda, cpu"),
    ("TORCH_TPU_NAN_CHECK", "maybe", "boolean"),
    ("TORCH_TPU_CPU_FALLBACK", "enabled", "boolean"),
    ("TORCH_TPU_DEFER_AND_FUSE", "2", "boolean"),
    ("TPU_LAUNCH_BLOCKING", "yes please", "boolean"),
    ("TORCH_TPU_XLA_LOGS", "loud", "boolean"),
    ("TORCH_TPU_CPU_FALLBACK_OPS", "add.Tensor;mm", "op names"),
    ("TORCH_TPU_PJRT_PLUGIN", "/nonexistent/libpjrt.so", "existing file"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD_VALUES, ids=[f"{n}={v}" for n, v, _ in BAD_VALUES])
def test_bad_environment_value_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    """What import runs: the error names the variable, the value and what is accepted."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as e:
        _core.validate_env()
    msg = str(e.value)
    assert name in msg and repr(value).strip("'") in msg and expected in msg, msg


def test_dump_dir_that_is_a_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    monkeypatch.setenv("TORCH_TPU_DUMP_DIR", str(f))
    with pytest.raises(ValueError, match=r"TORCH_TPU_DUMP_DIR.*not one"):
        _core.validate_env()


GOOD_VALUES = [
    ("TORCH_TPU_FUSED_MAX_OPS", " 64"),
    ("TORCH_TPU_EAGER_MODE", "Strict"),
    ("TORCH_TPU_PLATFORM", "CPU"),
    ("TORCH_TPU_NAN_CHECK", "off"),
    ("TORCH_TPU_CPU_FALLBACK", "TRUE"),
    ("TORCH_TPU_CPU_FALLBACK_OPS", "aten::add.Tensor, mm,"),
    ("TORCH_TPU_CPU_DEVICE_COUNT", ""),
]


@pytest.mark.parametrize(("name", "value"), GOOD_VALUES, ids=[f"{n}={v}" for n, v in GOOD_VALUES])
def test_good_environment_value_is_accepted(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    _core.validate_env()


@pytest.mark.parametrize(
    ("name", "value"), [("TORCH_TPU_CPU_DEVICE_COUNT", "100000"), ("TORCH_TPU_EAGER_MODE", "turbo")]
)
def test_import_fails_on_a_bad_value(name: str, value: str) -> None:
    """`TORCH_TPU_CPU_DEVICE_COUNT=100000` used to crash the process; now import raises."""
    r = run_python("import torch_tpu", env={name: value})
    assert r.returncode == 1, f"rc {r.returncode}:\n{r.stderr[-2000:]}"
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError:") and name in last and value in last, r.stderr[-2000:]


def test_valid_values_take_effect() -> None:
    code = (
        "import torch, torch_tpu\n"
        "print(torch_tpu.get_eager_mode(), torch.tpu.device_count())\n"
        "print((torch.arange(4.0).to('tpu') * 2).cpu().tolist())\n"
    )
    r = run_python(code, env={"TORCH_TPU_EAGER_MODE": "STRICT", "TORCH_TPU_CPU_DEVICE_COUNT": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[:2] == ["strict 3", "[0.0, 2.0, 4.0, 6.0]"], r.stdout


def test_env_doc_lists_every_variable() -> None:
    """docs/env.md documents every variable the runtime and the package read."""
    sources = list((ROOT / "crates" / "tpu-runtime" / "src").glob("*.rs")) + list(
        (ROOT / "python" / "torch_tpu").glob("*.py")
    )
    names = set()
    for p in sources:
        names |= set(re.findall(r"\"((?:TORCH_)?TPU_[A-Z_]+)\"", p.read_text()))
    names -= {"TORCH_TPU_TEST_MODES"}
    doc = (ROOT / "docs" / "env.md").read_text()
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"not in docs/env.md: {missing}"


# --- the C ABI ---------------------------------------------------------------------------


def test_every_c_entry_point_catches_panics() -> None:
    """A panic unwinding into C++ is undefined behaviour: every exported function's
    body runs inside `guarded` (status code) or `guarded_or` (a fallback value)."""
    checked = 0
    for p in (ROOT / "crates" / "tpu-runtime" / "src").glob("*.rs"):
        text = p.read_text()
        for m in re.finditer(r"#\[no_mangle\]\s*pub (?:unsafe )?extern \"C\" fn (\w+)", text):
            body_start = text.index(") ", m.end())
            body = text[text.index("{", body_start) + 1 :]
            body = re.sub(r"^\s*//[^\n]*", "", body)
            # The first statement: a null check may come first (it cannot panic).
            first = re.sub(r"^\s*if \w+\.is_null\(\) \{\s*return[^}]*\}", "", body).lstrip()
            if first.startswith("let mut out"):
                first = first.split(";", 1)[1].lstrip().removeprefix("let code = ")
            assert first.startswith(("guarded(", "guarded_or(")), f"{p.name}: {m.group(1)} is not guarded"
            checked += 1
    assert checked >= 12, f"only {checked} entry points found"


# --- storage addresses -----------------------------------------------------------------

ADDRESSES = """
import json, torch, torch_tpu
ptrs, error = [], None
try:
    for _ in range(8):
        ptrs.append(torch.empty(2**60, dtype=torch.uint8, device="tpu").data_ptr())
except torch.OutOfMemoryError as e:
    error = str(e)
# What is left after the refused request is still usable.
small = (torch.arange(3.0, device="tpu") + 1)
print("RESULT " + json.dumps({"ptrs": ptrs, "error": error, "small": small.data_ptr(), "v": small.tolist()}))
"""


def test_storage_addresses_never_wrap() -> None:
    """Addresses are never reused, so they run out: the allocation that would wrap
    (or leave int64) raises instead of aliasing an earlier storage."""
    r = result_line(run_python(ADDRESSES))
    ptrs = r["ptrs"]
    assert 1 <= len(ptrs) < 8 and r["error"], r
    assert ptrs == sorted(ptrs) and all(0 < p < 2**63 for p in ptrs), ptrs
    assert all(b - a >= 2**60 for a, b in itertools.pairwise(ptrs)), "overlapping storages"
    assert "address space" in r["error"] and "out of memory" in r["error"], r["error"]
    assert ptrs[-1] + 2**60 <= r["small"] < 2**62 and r["v"] == [1.0, 2.0, 3.0], r


def test_huge_request_fails_cleanly() -> None:
    before = torch.tpu.memory_allocated()
    with pytest.raises(torch.OutOfMemoryError, match="address space"):
        torch.empty(2**62, dtype=torch.uint8, device=TPU)
    assert torch.tpu.memory_allocated() == before
    # The failed request used no addresses: the next storage is placed and computes.
    x = torch.arange(6.0).to(TPU)
    assert (x * 3).cpu().tolist() == [0.0, 3.0, 6.0, 9.0, 12.0, 15.0]
