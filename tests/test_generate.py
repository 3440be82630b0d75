"""Hugging Face ``generate()`` on tpu tensors: greedy tokens equal CPU's with
the default dynamic KV cache and with the static cache (whose forward HF
compiles with ``torch.compile``, which resolves to our backend), and every
compile of the loop is counted and named in the metrics."""

from __future__ import annotations

import pytest
import torch

import torch_tpu
from helpers import TPU

transformers = pytest.importorskip("transformers")

NEW_TOKENS = 6


def _pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=96, n_positions=64, bos_token_id=1, eos_token_id=2
    )
    torch.manual_seed(0)
    cpu = transformers.GPT2LMHeadModel(cfg).eval()
    dev = transformers.GPT2LMHeadModel(cfg).eval()
    dev.load_state_dict(cpu.state_dict())
    return cpu, dev.to(TPU)


def _prompt() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, 96, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # the second row is left-padded: HF builds a real padding mask
    ids[1, :3] = 0
    return ids, mask


def _generate(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, **kw: object) -> torch.Tensor:
    return model.generate(
        ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
        pad_token_id=0, **kw,
    )  # fmt: skip


def test_generate_dynamic_cache_matches_cpu_and_counts_its_compiles() -> None:
    cpu, dev = _pair()
    ids, mask = _prompt()
    want = _generate(cpu, ids, mask)
    torch_tpu.reset_metrics()
    got = _generate(dev, ids.to(TPU), mask.to(TPU))
    assert got.device.type == TPU
    assert torch.equal(got.cpu(), want), (got.cpu(), want)
    assert want.shape[1] == ids.shape[1] + NEW_TOKENS
    m = torch_tpu.metrics()
    # Every program compiled for the loop is counted, and each one compiled
    # again for a new length is named with its count: nothing is silent.
    assert m["compiles"] + m["cache_hits_disk"] >= 1
    assert sum(m["recompiles"].values()) <= m["compiles"] + m["cache_hits_disk"]
    assert all(isinstance(name, str) and name for name in m["recompiles"])


def test_generate_static_cache_compiles_its_forward_once() -> None:
    torch._dynamo.reset()
    torch_tpu.reset_metrics()
    cpu, dev = _pair()
    ids, mask = _prompt()
    want = _generate(cpu, ids, mask, cache_implementation="static")
    got = _generate(dev, ids.to(TPU), mask.to(TPU), cache_implementation="static")
    assert torch.equal(got.cpu(), want), (got.cpu(), want)
    stats = torch_tpu.compile_stats()
    # HF compiles the decoding forward (one token, a fixed-size cache): one
    # Dynamo graph, one program, for every new token.
    assert stats["dynamo_graphs"] == 1, stats
    assert stats["graphs_compiled"] == 1, stats
    assert stats["recompile_reasons"] == [], stats
    assert stats["compiled_calls"] >= NEW_TOKENS - 1, stats


@pytest.mark.parametrize("padded", [False, True], ids=["all-ones-mask", "left-padded"])
def test_generate_with_a_compiled_forward_buckets_the_growing_cache(
    monkeypatch: pytest.MonkeyPatch, padded: bool
) -> None:
    """``model.forward = torch.compile(model.forward, backend="tpu")`` with the
    dynamic cache: the KV cache grows by a ``cat`` along the sequence each
    token. The ``cat`` is gathered by the actual sizes and attention masked,
    so lengths share power-of-two programs; the tokens equal CPU's. A
    left-padded prompt makes HF index its padding mask at the cache positions
    and add the cache length as a value: the index counts from the mask's
    actual length and the value is the actual one."""
    from torch_tpu._compile import compile_stats, reset_compile_stats

    monkeypatch.setenv("TORCH_TPU_CACHE_DIR", "0")  # count real compiles
    torch._dynamo.reset()
    reset_compile_stats()
    earlier = {g["name"] for g in compile_stats()["graphs"]}  # other tests' graphs, still alive
    cpu, dev = _pair()
    dev.forward = torch.compile(dev.forward, backend="tpu")
    ids, left_padded = _prompt()
    mask = left_padded if padded else torch.ones_like(ids)
    tokens = 14
    kw = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False, "pad_token_id": 0}
    want = cpu.generate(ids, attention_mask=mask, **kw)
    got = dev.generate(ids.to(TPU), attention_mask=mask.to(TPU), **kw)
    assert torch.equal(got.cpu(), want), (got.cpu(), want)
    decode = [g for g in compile_stats()["graphs"] if g["name"] not in earlier and g["bucketing"].get("bucketed")]
    assert decode and all(g["bucketing"]["masked"] and not g["bucketing"]["exact"] for g in decode), str(
        compile_stats()["graphs"]
    )
    # Cache lengths 7..20 need buckets 8, 16 and 32, times the mask length's
    # bucket where the two cross a power of two apart: far fewer than 13.
    assert sum(g["plans"] for g in decode) <= 6, decode
