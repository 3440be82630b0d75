"""Views read through storage offset and strides; in-place ops on views write
through to the base; version counters and autograd's checks behave as on CPU."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest
import torch

from helpers import F32, I64, TPU, assert_same, make

pytestmark = pytest.mark.usefixtures("mode")

# name, view of a (4, 6) tensor (or a (2, 3, 4) one when the name says 3d)
VIEWS: list[tuple[str, Callable[[torch.Tensor], Any]]] = [
    ("slice_rows", lambda x: x[1:3]),
    ("slice_step", lambda x: x[:, ::2]),
    ("slice_offset_step", lambda x: x[1:, 1::3]),
    ("select_row", lambda x: x[2]),
    ("select_col", lambda x: x.select(1, 4)),
    ("select_scalar", lambda x: x[3, 5]),
    ("t", lambda x: x.t()),
    ("T", lambda x: x.T),
    ("transpose_3d", lambda x: x.view(2, 3, 4).transpose(0, 2)),
    ("permute_3d", lambda x: x.view(2, 3, 4).permute(2, 0, 1)),
    ("movedim", lambda x: x.view(2, 3, 4).movedim(0, -1)),
    ("expand", lambda x: x[:1].expand(3, 6)),
    ("expand_new_dim", lambda x: x[1].expand(2, 5, 6)),
    ("narrow", lambda x: x.narrow(1, 1, 3)),
    ("as_strided", lambda x: x.as_strided((2, 2), (3, 1), 1)),
    ("as_strided_overlap", lambda x: x.as_strided((3, 4), (1, 2), 2)),
    ("view", lambda x: x.view(6, 4)),
    ("view_neg", lambda x: x.view(-1, 3)),
    ("reshape_view", lambda x: x.reshape(2, 12)),
    ("reshape_copy", lambda x: x.t().reshape(-1)),
    ("flatten", lambda x: x.flatten()),
    ("unsqueeze", lambda x: x.unsqueeze(1)),
    ("none_index", lambda x: x[None, :, 1]),
    ("squeeze", lambda x: x[:1].squeeze(0)),
    ("diagonal", lambda x: x.diagonal()),
    ("diagonal_offset", lambda x: x.diagonal(1)),
    ("unfold", lambda x: x[0].unfold(0, 2, 2)),
    ("split", lambda x: x.split(2, dim=1)),
    ("chunk", lambda x: x.chunk(3, dim=0)),
    ("unbind", lambda x: x.unbind(1)),
    ("view_of_view", lambda x: x.t()[1:, ::2].unsqueeze(0)),
    ("view_chain", lambda x: x[1:].view(3, 2, 3).transpose(0, 1)[:, 1:].select(2, 0)),
    ("mT", lambda x: x.view(2, 3, 4).mT),
]


@pytest.mark.parametrize(("name", "fn"), VIEWS, ids=[v[0] for v in VIEWS])
@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
def test_view_reads(name: str, fn: Callable[[torch.Tensor], Any], dtype: torch.dtype) -> None:
    x = make((4, 6), dtype, -50, 50)
    tx = x.to(TPU)
    expected, actual = fn(x), fn(tx)
    assert_same(actual, expected, f"view {name}")
    for e, a in zip(
        expected if isinstance(expected, tuple) else [expected], actual if isinstance(actual, tuple) else [actual]
    ):
        assert a.shape == e.shape, f"view {name}: shape {a.shape} != {e.shape}"
        assert a.stride() == e.stride(), f"view {name}: strides {a.stride()} != {e.stride()}"
        assert a.storage_offset() == e.storage_offset(), (
            f"view {name}: offset {a.storage_offset()} != {e.storage_offset()}"
        )
        assert a.is_contiguous() == e.is_contiguous(), f"view {name}: is_contiguous differs"
        assert (a._base is not None) == (e._base is not None), f"view {name}: _base differs"


# name, in-place write through a view of a (4, 6) tensor
WRITES: list[tuple[str, Callable[[torch.Tensor], Any]]] = [
    ("slice_step_add_", lambda x: x[1:, ::2].add_(1)),
    ("t_mul_", lambda x: x.t().mul_(2)),
    ("row_zero_", lambda x: x[0].zero_()),
    ("diagonal_fill_", lambda x: x.diagonal().fill_(5)),
    ("col_copy_", lambda x: x[:, 1].copy_(torch.arange(4.0, device=x.device).to(x.dtype))),
    ("setitem_scalar", lambda x: x.view(-1).__setitem__(3, 7)),
    ("setitem_rows", lambda x: x.__setitem__(slice(1, 3), torch.ones(2, 6, dtype=x.dtype, device=x.device))),
    ("setitem_broadcast", lambda x: x.__setitem__((slice(None), slice(0, 6, 3)), 9)),
    ("narrow_clamp_", lambda x: x.narrow(1, 2, 2).clamp_(0, 1)),
    ("view_chain_sub_", lambda x: x.unsqueeze(0).transpose(1, 2)[0, 1].sub_(3)),
    ("as_strided_neg_", lambda x: x.as_strided((2, 2), (1, 6), 2).neg_()),
    ("view_reshape_add_", lambda x: x.view(3, 8)[1].add_(x.view(3, 8)[2])),
    (
        "permute_mul_tensor",
        lambda x: x.view(2, 3, 4).permute(2, 0, 1)[1:3].mul_(x.view(2, 3, 4)[1, 0, ::3, None, None]),
    ),
    ("unbind_piece_fill_", lambda x: x.unbind(1)[3].fill_(-1)),
    ("split_piece_add_", lambda x: x.split(4, dim=1)[1].add_(10)),
    ("out_into_view", lambda x: torch.add(x[0], x[1], out=x[2])),
    ("self_overlap_copy", lambda x: x[1:3].copy_(x[0:2].clone())),
    ("masked_fill_", lambda x: x[::2].masked_fill_(torch.arange(6, device=x.device) % 3 == 0, 4)),
]


@pytest.mark.parametrize(("name", "fn"), WRITES, ids=[w[0] for w in WRITES])
@pytest.mark.parametrize("dtype", [F32, I64], ids=["f32", "i64"])
def test_inplace_on_view_writes_base(name: str, fn: Callable[[torch.Tensor], Any], dtype: torch.dtype) -> None:
    x = make((4, 6), dtype, -50, 50)
    tx = x.to(TPU)
    # views taken before the write see it too
    before, tbefore = x[1:].t(), tx[1:].t()
    fn(x)
    fn(tx)
    assert_same(tx, x, f"{name}: base after the write")
    assert_same(tbefore, before, f"{name}: an earlier view after the write")
    assert tx._version == x._version, f"{name}: version {tx._version}, CPU has {x._version}"


def test_write_base_then_read_view() -> None:
    x = make((4, 6), F32)
    tx = x.to(TPU)
    v, tv = x[:, 2:4].t(), tx[:, 2:4].t()
    x.mul_(3).add_(1)
    tx.mul_(3).add_(1)
    assert_same(tv, v, "view read after writes to the base")
    x.fill_(2)
    tx.fill_(2)
    assert_same(tv, v, "view read after fill_ of the base")


def test_view_outlives_base_tensor() -> None:
    x = make((4, 6), F32)
    tv = x.to(TPU)[1:3, ::2]  # the base tensor object is gone at once
    gc.collect()
    assert_same(tv, x[1:3, ::2], "view of a dropped base")
    tv.add_(1)
    assert_same(tv, x[1:3, ::2] + 1, "in-place on a view of a dropped base")


def test_contiguous_copy_is_independent() -> None:
    x = make((4, 6), F32)
    tx = x.to(TPU)
    c = tx.t().contiguous()
    c.fill_(0)
    assert_same(tx, x, "writing a contiguous() copy changed the original")
    d = tx.detach()
    d[0].fill_(1)  # detach shares the storage
    x[0].fill_(1)
    assert_same(tx, x, "detach() does not share the storage")
    cl = tx.clone()
    cl.zero_()
    assert_same(tx, x, "writing a clone changed the original")


def test_inplace_metadata_ops() -> None:
    x = make((4, 6), F32)
    tx = x.to(TPU)
    for name, fn in [
        ("t_", lambda t: t.t_()),
        ("unsqueeze_", lambda t: t.unsqueeze_(0)),
        ("transpose_", lambda t: t.transpose_(0, 2)),
        ("squeeze_", lambda t: t.squeeze_()),
        ("as_strided_", lambda t: t.as_strided_((3, 2), (2, 5), 1)),
    ]:
        fn(x)
        fn(tx)
        assert tx.shape == x.shape and tx.stride() == x.stride(), f"{name}: metadata differs"
        assert_same(tx, x, name)


def test_resize_() -> None:
    t = torch.empty(0, device=TPU)
    t.resize_(3, 4)
    t.fill_(2.5)
    assert_same(t, torch.full((3, 4), 2.5), "resize_ from empty then fill_")
    x = make((2, 3), F32)
    tx = x.to(TPU)
    tx.resize_(6)  # shrinking keeps the data
    assert_same(tx, x.reshape(6), "resize_ to the same number of elements")
    tx.resize_(2)
    assert_same(tx, x.reshape(6)[:2], "resize_ smaller")
    tx.resize_(10)  # growing keeps the prefix
    assert_same(tx[:6], x.reshape(6), "resize_ larger: the old prefix")


def test_version_counters() -> None:
    x = make((4, 6), F32)
    tx = x.to(TPU)
    assert tx._version == 0
    steps: list[tuple[str, Callable[[torch.Tensor], Any]]] = [
        ("add_", lambda t: t.add_(1)),
        ("view mul_", lambda t: t[1].mul_(2)),
        ("setitem", lambda t: t.__setitem__(0, 3.0)),
        ("out=", lambda t: torch.mul(t, 2, out=t)),
        ("copy_", lambda t: t.copy_(torch.zeros(4, 6, device=t.device))),
        ("functional", lambda t: t + 1),
        ("view only", lambda t: t.t()),
    ]
    view, tview = x[2:], tx[2:]
    for name, fn in steps:
        fn(x)
        fn(tx)
        assert tx._version == x._version, f"after {name}: version {tx._version}, CPU has {x._version}"
        assert tview._version == view._version, (
            f"after {name}: the view's version {tview._version}, CPU {view._version}"
        )


def _sigmoid_output(a: torch.Tensor) -> torch.Tensor:
    b = a.sigmoid()  # saves its output
    b.mul_(2)
    return b


def _exp_output_view(a: torch.Tensor) -> torch.Tensor:
    b = a.exp()  # saves its output
    b[0].zero_()  # written through a view
    return b


def _mul_input(a: torch.Tensor) -> torch.Tensor:
    c = a * 1
    d = c * c  # saves c
    c.add_(1)
    return d


def _pow_input_view(a: torch.Tensor) -> torch.Tensor:
    c = a + 0
    d = c.pow(2)  # saves c
    c.t().fill_(0)
    return d


SAVED_MODIFIED = [
    ("sigmoid_output", _sigmoid_output),
    ("exp_output_view", _exp_output_view),
    ("mul_input", _mul_input),
    ("pow_input_view", _pow_input_view),
]


@pytest.mark.parametrize(("name", "fn"), SAVED_MODIFIED, ids=[s[0] for s in SAVED_MODIFIED])
def test_autograd_detects_modified_saved_tensor(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    for device in ("cpu", TPU):
        a = torch.randn(3, 3).to(device).requires_grad_()
        out = fn(a)
        with pytest.raises(RuntimeError, match="modified by an inplace operation") as err:
            out.sum().backward()
        if device == TPU:
            assert "is at version" in str(err.value), str(err.value)


def test_autograd_through_inplace_on_views() -> None:
    base = make((4, 6), F32)
    grads = {}
    outs = {}
    for device in ("cpu", TPU):
        leaf = base.to(device, copy=True).requires_grad_()
        x = leaf * 2  # a non-leaf we may write into
        x[1:].mul_(3)  # CopySlices
        x.t()[2].add_(x[0, 3])  # in-place on a view, reading another element of the base
        y = x.exp().sum() + (x[:, ::2] ** 2).sum()
        y.backward()
        grads[device] = leaf.grad
        outs[device] = y.detach()
    assert_same(outs[TPU], outs["cpu"], "loss through in-place views", scale=10.0)
    assert_same(grads[TPU], grads["cpu"], "gradient through in-place views", scale=10.0)


def test_legal_inplace_keeps_gradients() -> None:
    base = make((3, 4), F32)
    grads = {}
    for device in ("cpu", TPU):
        a = base.to(device, copy=True).requires_grad_()
        b = a * 2
        b.add_(1)  # add saves nothing: legal
        b.relu_()
        b.sum().backward()
        grads[device] = a.grad
    assert_same(grads[TPU], grads["cpu"], "gradient after legal in-place ops")
