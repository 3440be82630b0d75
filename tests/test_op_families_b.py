"""nn op families lowered natively: grid sampling, bicubic / antialiased
resampling, embedding bags, CTC loss, fractional max pooling, margin losses,
cdist / pdist, CPU flash attention, group norm. Each case runs on CPU and on
tpu (no CPU fallback: an unlowered op raises) in every eager mode and
compares the outputs and the gradients of the float inputs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F

import torch_tpu
from helpers import TPU, assert_same

aten = torch.ops.aten


def _check(
    fn: Callable[..., object],
    inputs: Sequence[object],
    grad: Sequence[int] = (),
    what: str = "",
    scale: float = 1.0,
    **tol: float,
) -> None:
    """``fn(*inputs)`` on CPU and tpu: outputs equal, and the gradients of
    ``inputs[i]`` for ``i`` in ``grad`` against one random cotangent per float output."""
    cpu = [
        x.detach().clone().requires_grad_(i in grad) if isinstance(x, torch.Tensor) else x for i, x in enumerate(inputs)
    ]
    dev = [
        x.detach().to(TPU).requires_grad_(i in grad) if isinstance(x, torch.Tensor) else x for i, x in enumerate(inputs)
    ]
    expected, actual = fn(*cpu), fn(*dev)
    assert_same(actual, expected, what, scale, **tol)
    if not grad:
        return
    outs_c = [o for o in (expected if isinstance(expected, (tuple, list)) else [expected]) if o.requires_grad]
    outs_d = [o for o in (actual if isinstance(actual, (tuple, list)) else [actual]) if o.requires_grad]
    cots = [torch.randn(o.shape, dtype=o.dtype) for o in outs_c]
    leaves_c = [cpu[i] for i in grad]
    leaves_d = [dev[i] for i in grad]
    gc = torch.autograd.grad(outs_c, leaves_c, cots, allow_unused=True)
    gd = torch.autograd.grad(outs_d, leaves_d, [c.to(TPU) for c in cots], allow_unused=True)
    for i, (a, e) in zip(grad, zip(gd, gc)):
        if e is None:
            continue
        assert_same(a, e, f"{what}: grad of input {i}", scale, **tol)


def _rand(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape).to(dtype)


# --- group norm -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "groups", "affine"), [((2, 6, 3, 4), 3, True), ((3, 4, 5), 2, False), ((2, 8), 2, True)]
)
def test_group_norm(mode: str, shape: tuple[int, ...], groups: int, affine: bool) -> None:
    c = shape[1]
    w, b = (_rand(c), _rand(c)) if affine else (None, None)
    _check(
        lambda x, w, b: F.group_norm(x, groups, w, b, 1e-5),
        [_rand(*shape), w, b],
        [0, 1, 2] if affine else [0],
        "group_norm",
    )


def test_group_norm_bf16(mode: str) -> None:
    _check(lambda x: F.group_norm(x, 2), [_rand(2, 4, 3, dtype=torch.bfloat16)], what="group_norm bf16")


# --- cdist / pdist --------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 1.0, 2.0, 1.5, 3.0, math.inf])
def test_cdist(mode: str, p: float) -> None:
    x1, x2 = _rand(2, 1, 4, 3), _rand(3, 5, 3)
    _check(
        lambda a, b: torch.cdist(a, b, p, compute_mode="donot_use_mm_for_euclid_dist"), [x1, x2], [0, 1], f"cdist p={p}"
    )


@pytest.mark.parametrize("p", [1.0, 2.0, 2.5, math.inf])
def test_pdist(mode: str, p: float) -> None:
    _check(lambda x: F.pdist(x, p), [_rand(6, 4)], [0], f"pdist p={p}")


def test_cdist_bad_columns(mode: str) -> None:
    with pytest.raises(RuntimeError, match="same number of columns"):
        torch.cdist(_rand(3, 4).to(TPU), _rand(3, 5).to(TPU))
        torch_tpu.sync()


# --- margin losses --------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(("p", "margin", "weighted"), [(1, 1.0, False), (2, 0.5, True)])
def test_multi_margin_loss(mode: str, reduction: str, p: int, margin: float, weighted: bool) -> None:
    x, t = _rand(4, 5), torch.tensor([0, 4, 2, 2])
    w = torch.rand(5) if weighted else None
    _check(
        lambda x, t, w: F.multi_margin_loss(x, t, p, margin, w, reduction=reduction),
        [x, t, w],
        [0],
        f"multi_margin_loss p={p} {reduction}",
    )


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_multilabel_margin_loss(mode: str, reduction: str) -> None:
    x = _rand(3, 5)
    t = torch.tensor([[3, 0, -1, 1, 1], [1, 2, 3, 4, 0], [-1, 2, 2, 2, 2]])
    _check(lambda x, t: F.multilabel_margin_loss(x, t, reduction=reduction), [x, t], [0], f"multilabel {reduction}")
    _check(lambda x, t: F.multilabel_margin_loss(x, t, reduction=reduction), [x[0], t[0]], [0], "multilabel 1d")


def test_multi_margin_loss_bad_p(mode: str) -> None:
    with pytest.raises(RuntimeError, match="only p == 1 and p == 2"):
        aten.multi_margin_loss(_rand(2, 3).to(TPU), torch.tensor([0, 1]).to(TPU), 3)
        torch_tpu.sync()


# --- bicubic / antialiased resampling --------------------------------------------------


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("size", [(7, 9), (3, 2)])
def test_bicubic(mode: str, align: bool, size: tuple[int, int]) -> None:
    _check(
        lambda x: F.interpolate(x, size=size, mode="bicubic", align_corners=align),
        [_rand(2, 3, 5, 4)],
        [0],
        f"bicubic {size}",
    )


def test_bicubic_scale_factor(mode: str) -> None:
    _check(lambda x: F.interpolate(x, scale_factor=1.7, mode="bicubic"), [_rand(1, 2, 4, 5)], [0], "bicubic scale")


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("size", [(9, 11), (2, 3), (6, 2)])
def test_bilinear_antialias(mode: str, align: bool, size: tuple[int, int]) -> None:
    _check(
        lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=align, antialias=True),
        [_rand(2, 2, 7, 5)],
        [0],
        f"bilinear aa {size}",
    )


def test_bicubic_bad_rank(mode: str) -> None:
    with pytest.raises(RuntimeError, match="4D input"):
        aten.upsample_bicubic2d(_rand(2, 3, 4).to(TPU), [4, 4], False)
        torch_tpu.sync()


# --- embedding bag --------------------------------------------------------------------


EB_CASES = [
    ("sum", False, None, False),
    ("mean", False, None, False),
    ("max", False, None, False),
    ("sum", True, None, False),
    ("mean", False, 2, True),
    ("max", False, 2, True),
    ("sum", False, 1, True),
]


@pytest.mark.parametrize(("emb_mode", "psw", "padding_idx", "last"), EB_CASES)
def test_embedding_bag(mode: str, emb_mode: str, psw: bool, padding_idx: int | None, last: bool) -> None:
    weight = _rand(10, 3)
    idx = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9, 2, 0])
    offsets = torch.tensor([0, 3, 3, 7, 10] if last else [0, 3, 3, 7])
    w = torch.rand(10) if psw else None

    def fn(weight: torch.Tensor, idx: torch.Tensor, offsets: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        return F.embedding_bag(
            idx, weight, offsets, mode=emb_mode, per_sample_weights=w, include_last_offset=last, padding_idx=padding_idx
        )

    _check(fn, [weight, idx, offsets, w], [0, 3] if psw else [0], f"embedding_bag {emb_mode}")


def test_embedding_bag_2d_input(mode: str) -> None:
    weight, idx = _rand(8, 4), torch.tensor([[1, 2, 3], [7, 7, 0]])
    _check(
        lambda w, i: F.embedding_bag(i, w, mode="mean", scale_grad_by_freq=True), [weight, idx], [0], "embedding_bag 2d"
    )


def test_embedding_bag_bf16(mode: str) -> None:
    weight, idx = _rand(8, 4, dtype=torch.bfloat16), torch.tensor([[1, 2, 3], [7, 7, 0]])
    _check(lambda w, i: F.embedding_bag(i, w, mode="sum"), [weight, idx], what="embedding_bag bf16")


def test_embedding_bag_bad_index(mode: str) -> None:
    with pytest.raises((IndexError, RuntimeError), match="out of range"):
        out = F.embedding_bag(torch.tensor([[1, 12]]).to(TPU), _rand(8, 4).to(TPU))
        out.cpu()


# --- CTC loss -------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("flat_targets", [False, True])
def test_ctc_loss(mode: str, reduction: str, flat_targets: bool) -> None:
    t_len, n, c = 12, 3, 5
    lp = _rand(t_len, n, c).log_softmax(2).detach()
    il, tl = [12, 9, 6], [4, 2, 3]
    targets = torch.tensor([[1, 2, 2, 3], [4, 4, 0, 0], [1, 3, 1, 0]])
    if flat_targets:
        targets = torch.cat([targets[i, : tl[i]] for i in range(n)])
    _check(
        lambda lp, t: F.ctc_loss(lp, t, il, tl, blank=0, reduction=reduction),
        [lp, targets],
        [0],
        f"ctc_loss {reduction}",
        scale=2.0,
    )


def test_ctc_loss_zero_infinity(mode: str) -> None:
    # Sample 1 cannot fit its target (3 labels with a repeat need 4 steps).
    lp = _rand(3, 2, 4).log_softmax(2).detach()
    targets = torch.tensor([[1, 2, 0], [2, 2, 3]])
    for zi in (False, True):
        _check(
            lambda lp, t, zi=zi: F.ctc_loss(lp, t, [3, 3], [2, 3], blank=0, reduction="none", zero_infinity=zi),
            [lp, targets],
            [0] if zi else [],
            f"ctc_loss zero_infinity={zi}",
        )


def test_ctc_loss_blank_last(mode: str) -> None:
    lp = _rand(6, 2, 4).log_softmax(2).detach()
    targets = torch.tensor([[0, 1], [2, 2]])
    _check(lambda lp, t: F.ctc_loss(lp, t, [6, 5], [2, 2], blank=3), [lp, targets], [0], "ctc_loss blank=3")


def test_ctc_loss_bad_lengths(mode: str) -> None:
    lp = _rand(4, 2, 3).log_softmax(2).to(TPU)
    with pytest.raises(RuntimeError, match="input_lengths"):
        F.ctc_loss(lp, torch.tensor([[1], [2]]).to(TPU), [4, 9], [1, 1])
        torch_tpu.sync()


# --- fractional max pooling -----------------------------------------------------------


@pytest.mark.parametrize(("shape", "kernel", "out"), [((2, 3, 9, 8), (2, 3), (4, 3)), ((2, 7, 6), (3, 2), (3, 5))])
def test_fractional_max_pool2d(
    mode: str, shape: tuple[int, ...], kernel: tuple[int, int], out: tuple[int, int]
) -> None:
    n, c = (shape[0], shape[1]) if len(shape) == 4 else (1, shape[0])
    samples = torch.rand(n, c, 2)
    _check(lambda x, s: aten.fractional_max_pool2d(x, kernel, out, s), [_rand(*shape), samples], [0], "fmp2d")


def test_fractional_max_pool3d(mode: str) -> None:
    samples = torch.rand(2, 2, 3)
    _check(
        lambda x, s: aten.fractional_max_pool3d(x, (2, 2, 3), (3, 2, 2), s),
        [_rand(2, 2, 5, 4, 6), samples],
        [0],
        "fmp3d",
    )


def test_fractional_max_pool2d_functional(mode: str) -> None:
    # Random samples are drawn on the device: only shapes and the pooled values' membership are checked.
    x = _rand(1, 2, 8, 8).to(TPU)
    y, idx = F.fractional_max_pool2d(x, 2, output_size=4, return_indices=True)
    assert y.shape == (1, 2, 4, 4) and idx.dtype == torch.int64
    gathered = x.cpu().flatten(2).gather(2, idx.cpu().flatten(2)).view_as(y)
    torch.testing.assert_close(y.cpu(), gathered)


def test_fractional_max_pool_too_large(mode: str) -> None:
    with pytest.raises(RuntimeError, match="too large"):
        aten.fractional_max_pool2d(_rand(1, 1, 4, 4).to(TPU), (3, 3), (3, 3), torch.rand(1, 1, 2).to(TPU))
        torch_tpu.sync()


# --- CPU flash attention --------------------------------------------------------------


@pytest.mark.parametrize(
    ("causal", "mask", "scale"), [(False, None, None), (True, None, 0.3), (False, "bool", None), (False, "float", None)]
)
def test_flash_attention_for_cpu(mode: str, causal: bool, mask: str | None, scale: float | None) -> None:
    q, k, v = _rand(2, 3, 5, 4), _rand(2, 3, 6, 4), _rand(2, 3, 6, 4)
    m = None
    if mask == "bool":
        # CPU takes masks of the query's dtype: a 0 / -inf one made from a boolean pattern.
        keep = torch.rand(5, 6) > 0.3
        keep[:, 0] = True
        m = torch.zeros(5, 6).masked_fill(~keep, -math.inf)
    elif mask == "float":
        m = _rand(2, 1, 5, 6)
    _check(
        lambda q, k, v, m: aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal, attn_mask=m, scale=scale
        ),
        [q, k, v, m],
        [0, 1, 2],
        f"flash attention causal={causal} mask={mask}",
    )


def test_flash_attention_bad_shapes(mode: str) -> None:
    with pytest.raises(RuntimeError, match="expected query"):
        aten._scaled_dot_product_flash_attention_for_cpu(
            _rand(2, 3, 5, 4).to(TPU), _rand(2, 3, 6, 5).to(TPU), _rand(2, 3, 6, 3).to(TPU)
        )
        torch_tpu.sync()


# --- grid sampling --------------------------------------------------------------------


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("interp", ["bilinear", "nearest", "bicubic"])
def test_grid_sample_2d(mode: str, interp: str, padding: str, align: bool) -> None:
    x = _rand(2, 3, 5, 6)
    # Coordinates beyond [-1, 1] exercise the padding modes.
    grid = torch.rand(2, 4, 7, 2) * 2.6 - 1.3
    _check(
        lambda x, g: F.grid_sample(x, g, mode=interp, padding_mode=padding, align_corners=align),
        [x, grid],
        [0, 1],
        f"grid_sample {interp} {padding} align={align}",
        scale=2.0,
    )


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("interp", ["bilinear", "nearest"])
def test_grid_sample_3d(mode: str, interp: str, padding: str) -> None:
    x = _rand(1, 2, 4, 5, 3)
    grid = torch.rand(1, 3, 2, 4, 3) * 2.4 - 1.2
    _check(
        lambda x, g: F.grid_sample(x, g, mode=interp, padding_mode=padding, align_corners=False),
        [x, grid],
        [0, 1],
        f"grid_sample 3d {interp} {padding}",
        scale=2.0,
    )


def test_grid_sample_bad_grid(mode: str) -> None:
    with pytest.raises(RuntimeError, match="grid"):
        aten.grid_sampler_2d(_rand(1, 2, 4, 4).to(TPU), _rand(1, 3, 3, 3).to(TPU), 0, 0, False)
        torch_tpu.sync()
