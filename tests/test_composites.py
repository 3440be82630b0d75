"""Fused ATen ops that PyTorch modules call on a PrivateUse1 device
(``python/torch_tpu/_composites.py``), against CPU: nn.Transformer's fast
paths, LSTM/GRU cells (forward and backward) and GradScaler."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

from helpers import TPU, assert_same


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("mask", ["none", "padding", "causal"])
def test_transformer_encoder_layer_fast_path(norm_first: bool, activation: str, mask: str) -> None:
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, batch_first=True, norm_first=norm_first)
    layer.activation = nn.functional.gelu if activation == "gelu" else nn.functional.relu
    layer.activation_relu_or_gelu = 2 if activation == "gelu" else 1
    layer.eval()
    x = torch.randn(3, 6, 16)
    kw: dict[str, torch.Tensor] = {}
    if mask == "padding":
        pad = torch.zeros(3, 6, dtype=torch.bool)
        pad[1, 4:] = True
        kw["src_key_padding_mask"] = pad
    elif mask == "causal":
        kw["src_mask"] = nn.Transformer.generate_square_subsequent_mask(6)
    with torch.no_grad():
        want = layer(x, **kw)
        dev = copy.deepcopy(layer).to(TPU)
        got = dev(x.to(TPU), **{k: v.to(TPU) for k, v in kw.items()})
    assert_same(got, want, f"TransformerEncoderLayer fast path ({mask} mask)", atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"key_padding_mask": "pad"},
        {"attn_mask": "causal"},
        {"need_weights": False},
        {"average_attn_weights": False},
    ],
    ids=["plain", "padding", "causal", "no-weights", "per-head"],
)
def test_multihead_self_attention_fast_path(kw: dict) -> None:
    torch.manual_seed(2)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[0, 3:] = True
    values = {"pad": pad, "causal": nn.Transformer.generate_square_subsequent_mask(5)}
    kw = {k: values.get(v, v) if isinstance(v, str) else v for k, v in kw.items()}
    with torch.no_grad():
        want, want_w = mha(x, x, x, **kw)
        dev = copy.deepcopy(mha).to(TPU)
        xd = x.to(TPU)
        got, got_w = dev(xd, xd, xd, **{k: v.to(TPU) if isinstance(v, torch.Tensor) else v for k, v in kw.items()})
    assert_same(got, want, "MultiheadAttention fast path", atol=1e-5, rtol=1e-4)
    if want_w is None:
        assert got_w is None
    else:
        assert_same(got_w, want_w, "attention weights", atol=1e-5, rtol=1e-4)


def test_transformer_encoder_with_padding_keeps_dense_tensors() -> None:
    torch.manual_seed(3)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, batch_first=True), 2).eval()
    x = torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    with torch.no_grad():
        want = enc(x, src_key_padding_mask=pad)
        dev = copy.deepcopy(enc).to(TPU)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            got = dev(x.to(TPU), src_key_padding_mask=pad.to(TPU))
    keep = ~pad
    torch.testing.assert_close(got.cpu()[keep], want[keep], atol=1e-5, rtol=1e-4)


def _fwd_bwd(make: Callable[[], nn.Module], x: torch.Tensor) -> None:
    torch.manual_seed(0)
    cpu = make()
    dev = copy.deepcopy(cpu).to(TPU)
    want = cpu(x)
    got = dev(x.to(TPU))
    want_out = want[0] if isinstance(want, tuple) else want
    got_out = got[0] if isinstance(got, tuple) else got
    assert_same(got_out, want_out, f"{type(cpu).__name__} output", atol=1e-5, rtol=1e-4)
    if isinstance(want, tuple) and isinstance(want[1], tuple):  # LSTM's (h, c)
        for g, w in zip(got[1], want[1]):
            assert_same(g, w, f"{type(cpu).__name__} final state", atol=1e-5, rtol=1e-4)
    (want_out.square().sum()).backward()
    (got_out.square().sum()).backward()
    for (name, p), q in zip(dev.named_parameters(), cpu.parameters()):
        assert_same(p.grad, q.grad, f"{type(cpu).__name__} gradient of {name}", atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.LSTM(6, 10, 2, batch_first=True),
        lambda: nn.LSTM(6, 10, 1, bidirectional=True, proj_size=4),
        lambda: nn.GRU(6, 10, 2, bidirectional=True),
        lambda: nn.GRU(6, 10, bias=False),
    ],
    ids=["lstm-2-layers", "lstm-bidir-proj", "gru-bidir", "gru-no-bias"],
)
def test_recurrent_layers_forward_backward(make: Callable[[], nn.Module]) -> None:
    torch.manual_seed(4)
    _fwd_bwd(make, torch.randn(4, 3, 6))


@pytest.mark.parametrize("make", [lambda: nn.LSTMCell(6, 10), lambda: nn.GRUCell(6, 10)], ids=["lstm-cell", "gru-cell"])
def test_recurrent_cells_forward_backward(make: Callable[[], nn.Module]) -> None:
    torch.manual_seed(5)
    _fwd_bwd(make, torch.randn(3, 6))


def test_grad_scaler_unscales_skips_overflow_and_grows() -> None:
    """GradScaler on the tpu: the scale backs off after an overflowing step
    (whose update is skipped) and grows every growth_interval clean steps."""

    def run(device: str) -> tuple[list[float], torch.Tensor]:
        torch.manual_seed(6)
        model = nn.Linear(5, 3).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler(device, init_scale=2.0**16, growth_interval=2)
        scales = []
        for step in range(6):
            opt.zero_grad()
            x = torch.randn(4, 5) * (float("inf") if step == 2 else 1.0)
            scaler.scale(model(x.to(device)).sum()).backward()
            scaler.step(opt)
            scaler.update()
            scales.append(scaler.get_scale())
        return scales, model.weight.detach()

    want_scales, want_w = run("cpu")
    got_scales, got_w = run(TPU)
    assert got_scales == want_scales
    assert want_scales[2] < want_scales[1]  # the overflow backed off
    assert_same(got_w, want_w, "weights after scaled steps", atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["tril_indices", "triu_indices"])
@pytest.mark.parametrize(("row", "col", "offset"), [(3, 3, 0), (4, 6, -1), (5, 2, 2), (0, 3, 0)])
def test_triangle_indices(name: str, row: int, col: int, offset: int) -> None:
    fn = getattr(torch, name)
    got = fn(row, col, offset, device=TPU)
    assert got.device.type == TPU
    torch.testing.assert_close(got.cpu(), fn(row, col, offset))
    assert fn(row, col, offset, device=TPU, dtype=torch.int32).dtype == torch.int32
