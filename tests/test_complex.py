"""Complex tensors on tpu against CPU PyTorch: storage, views, math, autograd and torch.fft."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import torch_tpu
from helpers import TPU


def _close(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-4) -> None:
    assert got.device.type == "cpu"
    torch.testing.assert_close(got, want, atol=tol, rtol=tol, equal_nan=True)


def _inputs(dtype: torch.dtype = torch.cfloat) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 6, dtype=dtype, generator=g), torch.randn(4, 6, dtype=dtype, generator=g)


CASES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "mul_imaginary_scalar": lambda x, y: x * 1j,
    "add_complex_scalar": lambda x, y: x + (2 - 3j),
    "mul_real_tensor": lambda x, y: x * y.real,
    "abs": lambda x, y: x.abs(),
    "angle": lambda x, y: x.angle(),
    "conj_view_mul": lambda x, y: x.conj() * y,
    "conj_physical": lambda x, y: torch.conj_physical(x),
    "neg_view_imag": lambda x, y: x.conj().imag * 2,
    "exp": lambda x, y: x.exp(),
    "log": lambda x, y: x.log(),
    "sqrt": lambda x, y: x.sqrt(),
    "sin": lambda x, y: x.sin(),
    "tanh": lambda x, y: x.tanh(),
    "sigmoid": lambda x, y: x.sigmoid(),
    "pow_scalar": lambda x, y: x**3,
    "pow_tensor": lambda x, y: x**y,
    "reciprocal": lambda x, y: x.reciprocal(),
    "sgn": lambda x, y: x.sgn(),
    "sum": lambda x, y: x.sum(),
    "sum_dim": lambda x, y: x.sum(0),
    "mean": lambda x, y: x.mean(1),
    "prod": lambda x, y: x.prod(1),
    "cumsum": lambda x, y: x.cumsum(1),
    "matmul": lambda x, y: x @ y.mT,
    "vdot": lambda x, y: torch.vdot(x.flatten(), y.flatten()),
    "norm": lambda x, y: torch.linalg.vector_norm(x, dim=1),
    "eq": lambda x, y: x == y,
    "isfinite": lambda x, y: torch.where(x.real > 0, x / 0, x).isfinite(),
    "isnan": lambda x, y: torch.where(x.real > 0, x * float("nan"), x).isnan(),
    "cat_stack": lambda x, y: torch.stack([torch.cat([x, y]), torch.cat([y, x])]),
    "transpose_slice": lambda x, y: x.t()[1:, ::2] * 1,
    "where": lambda x, y: torch.where(x.real > 0, x, y),
    "to_real_dtype": lambda x, y: x.real.to(torch.float64),
    "to_cdouble": lambda x, y: x.to(torch.cdouble) * 1,
    "real_to_complex": lambda x, y: x.real.to(torch.cfloat),
    "fill": lambda x, y: x.clone().fill_(1 + 2j),
    "polar": lambda x, y: torch.polar(x.abs(), x.angle()),
    "complex": lambda x, y: torch.complex(x.real.contiguous(), y.imag.contiguous()),
    "view_as_real": lambda x, y: torch.view_as_real(x) * 1,
    "view_as_complex": lambda x, y: torch.view_as_complex(torch.view_as_real(y).flip(-1).contiguous()),
    "einsum": lambda x, y: torch.einsum("ij,kj->ik", x, y),
    "index": lambda x, y: x[torch.tensor([3, 0], device=x.device)],
    "fft": lambda x, y: torch.fft.fft(x),
    "ifft": lambda x, y: torch.fft.ifft(x, norm="forward"),
    "fft2": lambda x, y: torch.fft.fft2(x),
    "fftn_ortho": lambda x, y: torch.fft.fftn(x, dim=(0, 1), norm="ortho"),
    "fft_padded": lambda x, y: torch.fft.fft(x, n=9, dim=0),
    "rfft": lambda x, y: torch.fft.rfft(x.real),
    "rfft2": lambda x, y: torch.fft.rfft2(x.real),
    "irfft": lambda x, y: torch.fft.irfft(x),
    "irfftn_n": lambda x, y: torch.fft.irfftn(x, s=(4, 7)),
    "hfft": lambda x, y: torch.fft.hfft(x),
    "ihfft": lambda x, y: torch.fft.ihfft(x.real),
    "fftshift": lambda x, y: torch.fft.fftshift(torch.fft.fft(x)),
    "stft": lambda x, y: torch.stft(
        x.real.flatten(), n_fft=8, hop_length=2, window=torch.hann_window(8, device=x.device), return_complex=True
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_complex_op_matches_cpu(name: str, mode: str) -> None:
    x, y = _inputs()
    f = CASES[name]
    _close(f(x.to(TPU), y.to(TPU)).cpu(), f(x, y))


def test_complex128_keeps_precision() -> None:
    x, y = _inputs(torch.cdouble)
    got = (x.to(TPU) * y.to(TPU)).exp().sum().cpu()
    assert got.dtype == torch.complex128
    torch.testing.assert_close(got, (x * y).exp().sum(), atol=1e-12, rtol=1e-12)


def test_storage_round_trip_and_print() -> None:
    x, _ = _inputs()
    t = x.to(TPU)
    assert t.dtype == torch.complex64 and t.is_complex()
    assert torch.equal(t.cpu(), x)
    assert repr(t) == repr(x)[:-1] + ", device='tpu:0')"
    assert complex(t[1, 2].item()) == complex(x[1, 2].item())
    # view_as_real is a view of the same storage: writing through it changes the complex tensor.
    r = torch.view_as_real(t)
    assert r.shape == (4, 6, 2) and r.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
    r[0, 0, 1] = 5.0
    assert t[0, 0].item() == complex(x[0, 0].real.item(), 5.0)


def test_conjugate_view_written_in_place() -> None:
    x, y = _inputs()
    t = x.to(TPU)
    c = t.conj()
    assert c.is_conj()
    c.mul_(2)  # writes through the lazy conjugate into t
    _close(t.cpu(), x * 2)
    c.copy_(y.to(TPU))
    _close(t.cpu(), y.conj())


def test_cpu_conjugate_view_to_tpu() -> None:
    x, _ = _inputs()
    _close(x.conj().to(TPU).cpu(), x.conj().resolve_conj())
    _close(torch.zeros(4, 6, dtype=torch.cfloat, device=TPU).copy_(x.conj()).cpu(), x.conj().resolve_conj())


def test_complex_gradients_match_cpu(mode: str) -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 5, dtype=torch.cfloat, generator=g)
    x = torch.randn(3, 6, dtype=torch.cfloat, generator=g)

    def loss(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = x @ w
        spec = torch.fft.fft(z * z.conj().angle().exp())
        return (spec.abs() ** 2).sum() + torch.view_as_real(z).sum() + torch.fft.irfft(z).square().sum()

    wc = w.clone().requires_grad_()
    loss(wc, x).backward()
    wt = w.to(TPU).requires_grad_()
    loss(wt, x.to(TPU)).backward()
    _close(wt.grad.cpu(), wc.grad, 1e-3)


def test_complex_random_normal() -> None:
    torch.manual_seed(3)
    z = torch.randn(20000, dtype=torch.cfloat, device=TPU)
    assert z.dtype == torch.complex64
    # E|z|^2 = 1, parts independent with variance 1/2 each (as on CPU).
    assert abs(z.abs().square().mean().item() - 1.0) < 0.05
    assert abs(z.real.var().item() - 0.5) < 0.03 and abs(z.imag.var().item() - 0.5) < 0.03
    torch.manual_seed(3)
    assert torch.equal(torch.randn(20000, dtype=torch.cfloat, device=TPU).cpu(), z.cpu())


def test_rotary_embedding_as_in_llama() -> None:
    """Meta's / TorchTitan's rotary embedding: polar frequencies, view_as_complex, multiply, view_as_real."""

    def rope(xq: torch.Tensor, dim: int, end: int) -> torch.Tensor:
        freqs = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, device=xq.device)[: dim // 2].float() / dim))
        t = torch.arange(end, device=xq.device, dtype=torch.float32)
        freqs_cis = torch.polar(torch.ones(end, dim // 2, device=xq.device), torch.outer(t, freqs))
        xc = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
        out = torch.view_as_real(xc * freqs_cis.view(1, end, 1, dim // 2)).flatten(3)
        return out.type_as(xq)

    xq = torch.randn(2, 16, 4, 8)
    _close(rope(xq.to(TPU), 8, 16).cpu(), rope(xq, 8, 16))


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x: torch.complex(x.real, x.real.double()), "complex"),
        (lambda x: x < x, "lt"),
        (lambda x: torch.fft.fft(x, dim=5), "Dimension out of range"),
    ],
)
def test_complex_errors_name_the_op(fn: Callable[[torch.Tensor], torch.Tensor], match: str) -> None:
    x, _ = _inputs()
    with pytest.raises((RuntimeError, IndexError), match=match):
        fn(x.to(TPU))
        torch_tpu.sync()
