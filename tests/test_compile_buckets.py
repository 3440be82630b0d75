"""Shape buckets for torch.compile: dynamic sizes share power-of-two programs
with exact results; graphs that mix rows along a dynamic dim stay exact."""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable

import pytest
import torch
from torch import nn

import torch_tpu
from helpers import TPU, assert_same
from torch_tpu._compile import compile_stats, reset_compile_stats

# Compiled graphs alive before the running test (other tests' graphs may be
# kept alive by their modules): left out of this test's counts.
_EARLIER: set[str] = set()


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    torch._dynamo.reset()
    gc.collect()
    reset_compile_stats()
    _EARLIER.clear()
    _EARLIER.update(g["name"] for g in compile_stats()["graphs"])
    monkeypatch.setenv("TORCH_TPU_CACHE_DIR", "0")  # count real compiles


def _graphs() -> list[dict]:
    """compile_stats()["graphs"] of the graphs this test made."""
    return [g for g in compile_stats()["graphs"] if g["name"] not in _EARLIER]


def _pair(make: Callable[[], nn.Module], train: bool = False) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    cpu = make().train(train)
    return cpu, copy.deepcopy(cpu).to(TPU)


def _plans() -> int:
    return sum(g["plans"] for g in _graphs())


def _graph(kind: str = "forward") -> dict:
    """The last graph of ``kind`` (the dynamic one, after Dynamo's recompile)."""
    return [g for g in _graphs() if g["kind"] == kind][-1]


def _run_sizes(cpu: nn.Module, dev: nn.Module, shapes: list[tuple[int, ...]], ints: bool = False) -> int:
    """Calls the compiled module on each shape, checks against CPU, returns
    the XLA compiles it took."""
    compiled = torch.compile(dev, backend="tpu")
    before = torch_tpu.metrics()["compiles"]
    for shape in shapes:
        x = torch.randint(0, 30, shape) if ints else torch.randn(shape)
        with torch.no_grad():
            got = compiled(x.to(TPU))
            assert_same(got, cpu(x), f"compiled output at input shape {shape}", atol=1e-5, rtol=1e-4)
    return torch_tpu.metrics()["compiles"] - before


def _train_over_lengths(cpu: nn.Module, lengths: tuple[int, ...], batch: Callable[[torch.Tensor], dict]) -> None:
    """Forward and backward of a compiled copy of ``cpu`` at each length,
    loss and every gradient checked against CPU's."""
    dev = copy.deepcopy(cpu).to(TPU)
    compiled = torch.compile(dev, backend="tpu")
    for n in lengths:
        ids = torch.randint(3, 64, (2, n), generator=torch.Generator().manual_seed(n))
        kw = batch(ids)
        got = compiled(**{k: v.to(TPU) for k, v in kw.items()}).loss
        want = cpu(**kw).loss
        got.backward()
        want.backward()
        assert_same(got, want, f"loss at length {n}", atol=1e-5, rtol=1e-4)
        for (name, p), q in zip(dev.named_parameters(), cpu.parameters()):
            assert_same(p.grad, q.grad, f"{name}.grad at length {n}", atol=1e-5, rtol=1e-4)
        dev.zero_grad()
        cpu.zero_grad()


def test_batch_sizes_1_to_16_take_five_programs() -> None:
    cpu, dev = _pair(lambda: nn.Sequential(nn.Linear(7, 13), nn.GELU(), nn.Linear(13, 5), nn.Softmax(-1)))
    compiles = _run_sizes(cpu, dev, [(b, 7) for b in range(1, 17)])
    # b=1 (Dynamo specializes it), then buckets 2, 4, 8, 16.
    assert _plans() == 5, _graphs()
    assert compiles <= 5
    g = _graph()
    assert g["bucketing"]["bucketed"] and not g["bucketing"]["exact"], g
    assert g["direct_calls"] == 15 - 4, g


def test_cnn_in_eval_mode_buckets_its_batch() -> None:
    def cnn() -> nn.Module:
        features = [nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)]
        return nn.Sequential(*features, nn.Flatten(), nn.Linear(6 * 9, 4))

    cpu, dev = _pair(cnn)
    _run_sizes(cpu, dev, [(b, 3, 6, 6) for b in (1, 2, 3, 5, 6, 7, 9, 12)])
    assert _plans() == 5, _graphs()  # 1, 2, 4, 8 and 16


def test_transformer_buckets_batch_but_not_sequence() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(30, 16)
            self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.layer(self.emb(ids)))

    cpu, dev = _pair(Tiny)
    _run_sizes(cpu, dev, [(b, 5) for b in range(1, 10)], ints=True)
    assert _plans() == 5, _graphs()
    torch._dynamo.reset()
    reset_compile_stats()
    _run_sizes(cpu, dev, [(2, n) for n in range(2, 7)], ints=True)
    g = _graph()
    # Attention mixes positions along the sequence: one program per length, exact.
    assert g["bucketing"]["bucketed"] == [] and g["bucketing"]["exact"], g
    assert "mixes a dynamic dim" in next(iter(g["bucketing"]["exact"].values()))


@pytest.mark.parametrize(
    ("fn", "why"),
    [
        (lambda x: x * (x.shape[0] * 0.5), "size as a value"),
        (lambda x: x[1::2] + 1, "slice"),
        (lambda x: torch.cumsum(x.view(-1), 0), "merges the dynamic one"),
        (lambda x: x.var(0), "var"),
        (lambda x: x.sum(), "sum"),
    ],
    ids=["size", "strided-slice", "merged-cumsum", "var", "full-sum"],
)
def test_row_mixing_graphs_stay_exact(fn: Callable[[torch.Tensor], torch.Tensor], why: str) -> None:
    compiled = torch.compile(fn, backend="tpu")
    for b in (1, 2, 3, 5):
        x = torch.randn(b, 4)
        assert_same(compiled(x.to(TPU)), fn(x), f"{why} at batch {b}", atol=1e-5, rtol=1e-4)
    g = _graph()
    assert g["bucketing"]["bucketed"] == [], g
    assert why in " ".join(g["bucketing"]["exact"].values()), g


def test_training_with_a_varying_batch_is_exact() -> None:
    """The forward (row-wise) is bucketed and its saved activations narrowed;
    the backward's weight gradients contract over the batch, masked."""
    cpu, dev = _pair(lambda: nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 2)), train=True)
    compiled = torch.compile(dev, backend="tpu")
    for b in (1, 2, 3, 5, 6):
        x = torch.randn(b, 4)
        compiled(x.to(TPU)).square().mean().backward()
        cpu(x).square().mean().backward()
        for p, q in zip(dev.parameters(), cpu.parameters()):
            assert_same(p.grad, q.grad, f"gradient at batch {b}", atol=1e-5, rtol=1e-4)
            p.grad = q.grad = None
    assert _graph("forward")["bucketing"]["bucketed"], _graphs()
    backward = _graph("backward")["bucketing"]
    assert backward["masked"] and not backward["exact"], backward


def test_mark_dynamic_and_chained_graphs_reuse_the_padding() -> None:
    first = torch.compile(lambda x: torch.tanh(x * 2 + 1), backend="tpu")
    second = torch.compile(lambda y: y.relu() - 3, backend="tpu")
    for b in (3, 5, 6, 7):
        x = torch.randn(b, 3)
        xd = x.to(TPU)
        torch._dynamo.mark_dynamic(xd, 0)
        mid = first(xd)
        assert_same(second(mid), torch.tanh(x * 2 + 1).relu() - 3, f"chained at batch {b}", atol=1e-6, rtol=1e-5)
    graphs = _graphs()
    assert [g["plans"] for g in graphs] == [2, 2], graphs  # buckets 4 and 8, from the first call
    # Only the caller's own tensors were padded on the host; the second graph
    # took the first one's padded outputs as they were.
    assert [g["bucketing"]["padded_inputs"] for g in graphs] == [4, 0], graphs


def test_the_switch_is_a_boolean_default_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCH_TPU_SHAPE_BUCKETS", raising=False)
    assert torch_tpu._core.env_flag("TORCH_TPU_SHAPE_BUCKETS")
    monkeypatch.setenv("TORCH_TPU_SHAPE_BUCKETS", "OFF")
    assert not torch_tpu._core.env_flag("TORCH_TPU_SHAPE_BUCKETS")
    monkeypatch.setenv("TORCH_TPU_SHAPE_BUCKETS", "maybe")
    with pytest.raises(Exception, match="TORCH_TPU_SHAPE_BUCKETS"):
        torch_tpu._core.env_flag("TORCH_TPU_SHAPE_BUCKETS")


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.sum(0),
        lambda x: torch.softmax(x, 0),
        lambda x: torch.log_softmax(x * 3, 0),
        lambda x: x.t() @ x,
        lambda x: x.amax(0) - x.amin(0),
        lambda x: x.argmax(0),
        lambda x: torch.logsumexp(x, 0),
        lambda x: (x > 0).any(0),
        lambda x: (x * 10).long().amin(0),
        lambda x: (x > 0).sum(0),
        lambda x: x.mean(0) + x.mean((0, 1)),
        lambda x: x[-1] * 2 + x[-2:].sum(0),
        lambda x: (torch.arange(x.shape[0], device=x.device) + (x.shape[0] + 1))[:, None] * x,
    ],
    ids=[
        "sum",
        "softmax",
        "log-softmax",
        "matmul",
        "amax-amin",
        "argmax",
        "logsumexp",
        "any",
        "int-amin",
        "bool-sum",
        "mean",
        "negative-index",
        "size-plus-one-as-a-value",
    ],
)
def test_ops_that_mix_rows_are_masked_and_bucketed(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Padded rows are replaced by the op's neutral element first (-inf before
    a softmax, 0 on both sides of a contraction), so the result is exact
    whatever the padding holds, and sizes 3..8 share buckets 4 and 8."""
    compiled = torch.compile(fn, backend="tpu")
    for b in (2, 3, 4, 5, 7, 8, 6):
        x = torch.randn(b, 4) - 0.5
        assert_same(compiled(x.to(TPU)), fn(x), f"batch {b}", atol=1e-5, rtol=1e-4)
    g = _graph()
    assert g["bucketing"]["masked"] == g["bucketing"]["bucketed"] != [], g
    assert g["plans"] == 2, g  # buckets 4 and 8 (the first call, 2, is Dynamo's static graph)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.cumsum(x, 0) * 2,
        lambda x: x[0] + x[1] + torch.zeros_like(x) + x.new_ones(x.shape),
        lambda x: torch.full_like(x, 2.0) * x,
    ],
    ids=["cumsum", "front-select", "fresh-like"],
)
def test_row_wise_ops_bucket_without_masks(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """A scan reads earlier rows only; ``x[k]`` with k >= 0 is the same row
    padded or not; ``zeros_like`` and friends read no values."""
    compiled = torch.compile(fn, backend="tpu")
    for b in (2, 3, 5, 7, 8, 6):
        x = torch.randn(b, 4)
        assert_same(compiled(x.to(TPU)), fn(x), f"batch {b}", atol=1e-5, rtol=1e-4)
    g = _graph()
    assert g["bucketing"]["bucketed"] and not g["bucketing"]["exact"], g
    assert g["plans"] == 2, g


def test_an_index_along_a_padded_dim_counts_from_the_actual_size() -> None:
    """``x[:, ix]`` with ``x`` padded along dim 1: -1 is the actual last
    column, and an index past the actual size still raises."""
    fn = lambda x, ix: x[:, ix] * 2
    compiled = torch.compile(fn, backend="tpu")
    for n in (3, 5, 6, 7):
        x = torch.randn(2, n)
        ix = torch.tensor([0, -1, n - 2, -n])
        xd = x.to(TPU)
        torch._dynamo.mark_dynamic(xd, 1)
        assert_same(compiled(xd, ix.to(TPU)), fn(x, ix), f"length {n}", atol=0, rtol=0)
    g = _graph()
    assert g["bucketing"]["bucketed"] and not g["bucketing"]["exact"], g
    assert g["plans"] == 2, g  # 4 and 8
    x = torch.randn(2, 6)
    xd = x.to(TPU)
    torch._dynamo.mark_dynamic(xd, 1)
    with pytest.raises(IndexError):
        fn(x, torch.tensor([6]))
    with pytest.raises(IndexError):
        compiled(xd, torch.tensor([6]).to(TPU)).cpu()  # inside the bucket of 8, past the actual 6


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_padding_mask_and_a_table_smaller_than_the_bucket(family: str) -> None:
    """A left-padded attention mask: HF reads the mask at ``arange(s)`` (an
    index along its padded dim; GPT-2's mask and ids get two symbols, BERT's
    one) and the position table at ``arange(s)`` too, whose bucket (32) is
    past the table's 20 rows; padded positions read row 0 instead."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if family == "gpt2":
        cpu = transformers.GPT2Model(
            transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=20)
        )
    else:
        config = transformers.BertConfig(
            num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2, vocab_size=64,
            max_position_embeddings=20,
        )  # fmt: skip
        cpu = transformers.BertModel(config)
    cpu.eval()
    dev = copy.deepcopy(cpu).to(TPU)
    compiled = torch.compile(dev, backend="tpu")
    for n in (5, 9, 12, 17, 7):
        ids = torch.randint(3, 64, (2, n), generator=torch.Generator().manual_seed(n))
        mask = torch.ones_like(ids)
        mask[1, : n // 3] = 0
        with torch.no_grad():
            want = cpu(input_ids=ids, attention_mask=mask).last_hidden_state
            got = compiled(input_ids=ids.to(TPU), attention_mask=mask.to(TPU)).last_hidden_state
        assert_same(got, want, f"hidden states at length {n}", atol=1e-5, rtol=1e-4)
    g = _graph()
    assert g["bucketing"]["bucketed"] and not g["bucketing"]["exact"], g
    assert g["plans"] == 3, g  # 8, 16 and 32


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_pooled_classifier_trains_over_sequence_lengths(family: str) -> None:
    """BERT's pooler reads ``hidden[:, 0]`` (its gradient is a
    ``select_backward``) and its mask is built with ``new_ones``. GPT-2's
    classifier reads the logits at each row's last token,
    ``logits[arange(b), last]`` (an index along the padded dim; its gradient
    an ``index_put``). All keep the sequence bucketed, with CPU's gradients."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if family == "bert":
        config = transformers.BertConfig(
            num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2, vocab_size=64,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        )  # fmt: skip
        cpu = transformers.BertForSequenceClassification(config).train()
    else:
        config = transformers.GPT2Config(
            n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=64, pad_token_id=0,
            attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
        )  # fmt: skip
        cpu = transformers.GPT2ForSequenceClassification(config).train()
    _train_over_lengths(cpu, (5, 9, 12, 7), lambda ids: {"input_ids": ids, "labels": torch.tensor([0, 1])})
    dynamic = [g for g in _graphs() if g["kind"] in ("forward", "backward") and g["bucketing"].get("bucketed")]
    assert len(dynamic) >= 2 and all(not g["bucketing"]["exact"] for g in dynamic), _graphs()
    assert not any(g["bucketing"].get("exact") for g in _graphs()), _graphs()


def test_an_index_put_into_a_padded_dim_counts_from_the_actual_size() -> None:
    fn = lambda x, ix, v: x.index_put((torch.arange(2, device=x.device), ix), v, accumulate=True) * 2
    compiled = torch.compile(fn, backend="tpu")
    for n in (3, 5, 6, 7):
        x, v = torch.randn(2, n), torch.randn(2)
        ix = torch.tensor([-1, n - 2])
        xd = x.to(TPU)
        torch._dynamo.mark_dynamic(xd, 1)
        assert_same(compiled(xd, ix.to(TPU), v.to(TPU)), fn(x, ix, v), f"length {n}", atol=1e-6, rtol=1e-6)
    g = _graph()
    assert g["bucketing"]["bucketed"] and not g["bucketing"]["exact"], g
    xd = torch.randn(2, 6).to(TPU)
    torch._dynamo.mark_dynamic(xd, 1)
    with pytest.raises(IndexError):
        compiled(xd, torch.tensor([0, 6]).to(TPU), torch.ones(2).to(TPU)).cpu()  # past the actual 6, inside bucket 8


def _hf_lengths(model: nn.Module, vocab: int, lengths: list[int]) -> dict:
    """A Hugging Face model compiled with dynamic=True over these sequence
    lengths, checked against CPU; its dynamic graph's stats."""
    dev = copy.deepcopy(model).to(TPU)
    compiled = torch.compile(dev, backend="tpu", dynamic=True)
    for n in lengths:
        ids = torch.randint(0, vocab, (2, n), generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            want = model(ids).logits
            got = compiled(ids.to(TPU)).logits
        assert_same(got, want, f"logits at sequence length {n}", atol=1e-5, rtol=1e-4)
        # Padded along the sequence, an inner dim: returned packed, contiguous as on CPU.
        assert got.is_contiguous() and got.view(-1, got.shape[-1]).shape == want.view(-1, want.shape[-1]).shape
    return _graph()


def test_a_sum_over_two_dynamic_dims_masks_both() -> None:
    fn = lambda x: x.sum((0, 1)) + x.amax(1).sum(0)
    compiled = torch.compile(fn, backend="tpu", dynamic=True)
    for a, b in [(3, 5), (5, 6), (7, 3), (4, 8)]:
        x = torch.randn(a, b)
        assert_same(compiled(x.to(TPU)), fn(x), f"shape {a}x{b}", atol=1e-5, rtol=1e-4)
    g = _graph()
    assert len(g["bucketing"]["masked"]) == 2 and not g["bucketing"]["exact"], g
    assert g["plans"] == 3, g  # (4, 8), (8, 8) and (8, 4)


def _hf_model(family: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if family == "llama":
        sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        config = transformers.LlamaConfig(**sizes, num_key_value_heads=2, vocab_size=64, max_position_embeddings=64)
        return transformers.LlamaForCausalLM(config).eval()
    attention = family.split("-")[1]
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=64, bos_token_id=1, eos_token_id=2
    )
    config._attn_implementation = attention
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize(
    ("family", "lengths", "plans"),
    [
        ("gpt2-sdpa", [3, 5, 7, 9, 12, 16, 17, 23], 4),  # buckets 4, 8, 16 and 32
        ("gpt2-eager", [3, 5, 7, 9, 12, 16, 17, 23], 4),
        ("llama", [5, 6, 7, 9, 13], 2),  # buckets 8 and 16
    ],
)
def test_hf_sequence_lengths_share_buckets(family: str, lengths: list[int], plans: int) -> None:
    """Attention over a dynamic sequence: softmax and the second matmul are masked."""
    g = _hf_lengths(_hf_model(family), 64, lengths)
    assert g["bucketing"]["masked"] and not g["bucketing"]["exact"], g
    assert g["plans"] == plans, g


def test_an_output_padded_along_an_inner_dim_comes_back_contiguous() -> None:
    compiled = torch.compile(lambda x: (x * 2).softmax(-1), backend="tpu")
    for n in (3, 5, 6, 7):
        x = torch.randn(2, n, 3)
        xd = x.to(TPU)
        torch._dynamo.mark_dynamic(xd, 1)
        got = compiled(xd)
        assert got.is_contiguous() and got.stride() == (3 * n, 3, 1), got.stride()
        assert_same(got.view(-1), (x * 2).softmax(-1).view(-1), f"length {n}", atol=1e-6, rtol=1e-5)
    assert _graph()["plans"] == 2, _graph()  # 4 and 8


def test_shifted_cross_entropy_over_sequence_lengths_is_bucketed() -> None:
    """Hugging Face's causal LM loss (labels padded with -100, shifted, cross
    entropy over the merged batch and sequence): padded rows get the ignore
    index as their target, so loss and gradient are exact."""

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].contiguous()
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), shifted.view(-1))

    compiled = torch.compile(loss, backend="tpu")
    for n in (3, 5, 6, 7):
        logits = torch.randn(2, n, 8, requires_grad=True)
        labels = torch.randint(0, 8, (2, n))
        on_tpu = logits.detach().to(TPU).requires_grad_()
        got = compiled(on_tpu, labels.to(TPU))
        want = loss(logits, labels)
        got.backward()
        want.backward()
        assert_same(got, want, f"loss at length {n}", atol=1e-6, rtol=1e-5)
        assert_same(on_tpu.grad, logits.grad, f"gradient at length {n}", atol=1e-6, rtol=1e-5)
    for kind in ("forward", "backward"):
        g = _graph(kind)
        assert g["bucketing"]["masked"] and not g["bucketing"]["exact"], g
        assert g["plans"] == 1, g  # lengths 5, 6 and 7 share bucket 8


def test_gpt2_training_over_sequence_lengths_matches_cpu() -> None:
    """The model's forward and backward and the loss's are all bucketed
    along the sequence (saved activations merge it with the batch and are
    read through their padded bases); gradients equal CPU's."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        vocab_size=64,
        bos_token_id=1,
        eos_token_id=2,
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
    )
    torch.manual_seed(0)
    cpu = transformers.GPT2LMHeadModel(config).train()
    _train_over_lengths(cpu, (3, 5, 6, 7), lambda ids: {"input_ids": ids, "labels": ids})
    dynamic = [g for g in _graphs() if g["bucketing"].get("bucketed")]
    assert len(dynamic) == 4, _graphs()  # model forward and backward, loss forward and backward
    assert all(g["plans"] == 1 and not g["bucketing"]["exact"] for g in dynamic), dynamic  # 5, 6, 7 -> 8


def test_t5_training_over_encoder_lengths_matches_cpu() -> None:
    """T5's relative position bias breaks its attention into several graphs.
    A backward graph is bucketed while its forward stays exact. It pads the
    saved ``[b*s, d]`` activations along ``s``, factor by factor, not at the
    end of the merged dim (before, the weight gradients were wrong). An
    attention output in per-head layout is a transposed view, packed by
    ``reshape`` (``view`` raised on it)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.T5Config(
        num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2, d_kv=16, vocab_size=64, dropout_rate=0.0
    )
    torch.manual_seed(0)
    cpu = transformers.T5ForConditionalGeneration(config).train()
    _train_over_lengths(
        cpu,
        (5, 9, 12, 7),
        lambda ids: {"input_ids": ids, "decoder_input_ids": ids[:, :4].contiguous(), "labels": ids[:, :4].contiguous()},
    )
    assert any(g["bucketing"].get("bucketed") for g in _graphs()), _graphs()


def test_llama_training_over_sequence_lengths_matches_cpu() -> None:
    """Llama's rotary embedding slices the head dim (its gradient, a
    ``slice_backward``, takes the sequence only as a size) and its backward
    fills zeros (``fill``): both keep the sequence bucketed."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=64, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    cpu = transformers.LlamaForCausalLM(config).train()
    _train_over_lengths(cpu, (5, 9, 12, 7), lambda ids: {"input_ids": ids, "labels": ids})
    model = [g for g in _graphs() if g["bucketing"].get("bucketed") or g["bucketing"].get("exact")]
    assert model and all(g["bucketing"]["bucketed"] and not g["bucketing"]["exact"] for g in model), _graphs()


def test_prefix_of_a_table_keeps_buckets_inside_the_table() -> None:
    """``table[:n]`` of a 20-row table: the bucket of 17 is 20, not 32."""
    table = torch.randn(20, 4)
    fn = lambda x: x + table.to(x.device)[: x.shape[0]]
    compiled = torch.compile(fn, backend="tpu")
    for n in (3, 5, 9, 12, 17, 19, 20):
        x = torch.randn(n, 4)
        assert_same(compiled(x.to(TPU)), fn(x), f"{n} rows", atol=0, rtol=0)
    g = _graph()
    assert g["programs_compiled"] == 3, str(g)  # 8, 16 and 20 (the table, a CPU input, is uploaded per call)


def test_buckets_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_TPU_SHAPE_BUCKETS", "0")
    cpu, dev = _pair(lambda: nn.Linear(3, 2))
    _run_sizes(cpu, dev, [(b, 3) for b in (1, 2, 3, 5)])
    assert _plans() == 4, _graphs()


def test_a_slice_of_a_computed_tensor_reads_without_a_program() -> None:
    x = torch.randn(37, 11)
    y = (x.to(TPU) * 3).exp()
    y.cpu()  # computes y
    before = torch_tpu.metrics()["compiles"]
    for n in range(1, 6):
        assert_same(y[:n], (x * 3).exp()[:n], f"y[:{n}]")
        assert_same(y[n::3, 2:], (x * 3).exp()[n::3, 2:], f"y[{n}::3, 2:]")
    assert torch_tpu.metrics()["compiles"] == before


def test_precompile_sizes_compiles_every_bucket_at_the_first_call() -> None:
    cpu, dev = _pair(lambda: nn.Sequential(nn.Linear(5, 11), nn.Tanh(), nn.Linear(11, 2)))
    compiled = torch.compile(dev, backend="tpu", options={"precompile_sizes": range(1, 17)})
    x = torch.randn(3, 5)
    xd = x.to(TPU)
    torch._dynamo.mark_dynamic(xd, 0)
    before = torch_tpu.metrics()["compiles"]
    with torch.no_grad():
        assert_same(compiled(xd), cpu(x), "first call", atol=1e-5, rtol=1e-4)
        torch_tpu._core.wait_background_compiles()
        first = torch_tpu.metrics()["compiles"] - before
        assert first == 4, first  # bucket 4 for the call; 2, 8 and 16 on a background thread
        assert torch_tpu.metrics()["background_compiles"] >= 3
        for b in range(2, 17):
            x = torch.randn(b, 5)
            assert_same(compiled(x.to(TPU)), cpu(x), f"batch {b}", atol=1e-5, rtol=1e-4)
    assert torch_tpu.metrics()["compiles"] - before == first  # no later size waited for a compile
    assert _graph()["bucketing"]["precompiled"] == 3, _graph()


def test_precompile_sizes_when_the_first_call_is_already_a_bucket() -> None:
    cpu, dev = _pair(lambda: nn.Sequential(nn.Linear(5, 7), nn.ReLU()))
    compiled = torch.compile(dev, backend="tpu", options={"precompile_sizes": [3, 8]})
    x = torch.randn(4, 5)
    xd = x.to(TPU)
    torch._dynamo.mark_dynamic(xd, 0)
    with torch.no_grad():
        assert_same(compiled(xd), cpu(x), "first call at bucket 4", atol=1e-5, rtol=1e-4)
    torch_tpu._core.wait_background_compiles()
    assert _graph()["bucketing"]["precompiled"] == 1, _graph()  # 8; 3's bucket is this call's own


def test_precompile_sizes_must_be_positive() -> None:
    compiled = torch.compile(lambda x: x + 1, backend="tpu", options={"precompile_sizes": [0, 4]})
    with pytest.raises(Exception, match="precompile_sizes must be positive"):
        compiled(torch.ones(2, device=TPU))


def test_sizes_read_inside_the_graph_follow_the_bucket() -> None:
    """A graph that reads its batch size (``x.shape[0]``) for a view stays
    bucketed; one that uses it as an elementwise op's value reads the actual
    size there (an extra input), bucketed too."""
    reshaped = torch.compile(lambda x: (x * 2).reshape(x.shape[0], 2, -1).sum(-1), backend="tpu", dynamic=True)
    valued = torch.compile(lambda x: x / x.shape[0], backend="tpu", dynamic=True)
    for b in (2, 3, 5):
        x = torch.randn(b, 6)
        assert_same(reshaped(x.to(TPU)), (x * 2).reshape(b, 2, -1).sum(-1), f"reshape at {b}", atol=1e-6, rtol=1e-5)
        assert_same(valued(x.to(TPU)), x / b, f"size as a value at {b}", atol=1e-6, rtol=1e-5)
    graphs = _graphs()
    assert graphs[0]["bucketing"]["bucketed"], graphs  # the batch; the merged inner dim stays exact
    assert graphs[1]["bucketing"]["masked"] and not graphs[1]["bucketing"]["exact"], graphs
