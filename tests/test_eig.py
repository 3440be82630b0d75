"""General eigendecomposition (linalg.eig / eigvals, complex Schur form by QR iterations),
special.airy_ai and stft/istft on tpu against CPU PyTorch: values, gradients, batches.

Eigenvalues are compared after a canonical sort (the deflation order may differ from
LAPACK's); eigenvectors through the residual ``A v = w v`` and unit norms, and, where the
eigenvalues are distinct, through ``|v|`` (phase invariant) after the same sort."""

from __future__ import annotations

import pytest
import torch

import torch_tpu
from helpers import TPU, assert_same


def _no_fallback() -> None:
    assert not torch_tpu.metrics().get("cpu_fallbacks"), torch_tpu.metrics().get("cpu_fallbacks")


def _sorted(w: torch.Tensor, v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eigenvalues sorted by (rounded real part, imaginary part), with the vectors' columns."""
    key = torch.round(w.real.double() * 1e4) * 1e3 + w.imag.double()
    idx = torch.argsort(key, dim=-1)
    ws = torch.gather(w, -1, idx)
    if v is None:
        return ws, None
    return ws, torch.gather(v, -1, idx.unsqueeze(-2).expand(v.shape))


def _check_eig(a: torch.Tensor, atol: float) -> None:
    torch_tpu.reset_metrics()
    w, v = torch.linalg.eig(a.to(TPU))
    w, v = w.cpu(), v.cpu()
    _no_fallback()
    we, ve = torch.linalg.eig(a)
    assert w.dtype == we.dtype and v.dtype == ve.dtype and w.shape == we.shape and v.shape == ve.shape
    ws, vs = _sorted(w, v)
    wes, ves = _sorted(we, ve)
    torch.testing.assert_close(ws, wes, atol=atol, rtol=atol)
    ac = a.to(v.dtype)
    res = ac @ v - v * w.unsqueeze(-2)
    assert res.abs().max() <= atol * max(1.0, a.abs().max().item()), res.abs().max()
    torch.testing.assert_close(
        torch.linalg.vector_norm(v, dim=-2), torch.ones(w.shape, dtype=w.real.dtype), atol=atol, rtol=0
    )
    torch.testing.assert_close(vs.abs(), ves.abs(), atol=10 * atol, rtol=10 * atol)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_eig_real(n: int, mode: str) -> None:
    _check_eig(torch.randn(n, n), 1e-4)


def test_eig_float64_batched(mode: str) -> None:
    _check_eig(torch.randn(2, 3, 6, 6, dtype=torch.float64), 1e-9)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_eig_complex(dtype: torch.dtype, mode: str) -> None:
    _check_eig(torch.randn(3, 5, 5, dtype=dtype), 1e-4 if dtype == torch.complex64 else 1e-9)


def test_eig_conjugate_pairs(mode: str) -> None:
    # Rotation blocks: eigenvalues 1 +- 2i, -0.5 +- 1i and 3, mixed by a similarity.
    d = torch.tensor([[1.0, 2.0, 0, 0, 0], [-2.0, 1.0, 0, 0, 0], [0, 0, -0.5, 1.0, 0], [0, 0, -1.0, -0.5, 0]])
    d = torch.cat([d, torch.zeros(1, 5)])
    d[4, 4] = 3.0
    s = torch.randn(5, 5) + 3 * torch.eye(5)
    a = s @ d @ torch.linalg.inv(s)
    _check_eig(a, 1e-3)
    w = torch.linalg.eigvals(a.to(TPU)).cpu()
    # dgeev's convention: each conjugate pair listed with the positive imaginary part first.
    for j in range(4):
        if w[j].imag < -1e-3:
            assert j > 0 and w[j - 1].imag > 1e-3, w


@pytest.mark.parametrize("kind", ["diagonal", "upper", "lower"])
def test_eig_triangular(kind: str, mode: str) -> None:
    a = torch.diag(torch.tensor([3.0, -1.0, 2.0, 0.5]))
    if kind == "upper":
        a = a + torch.triu(torch.randn(4, 4), 1)
    if kind == "lower":
        a = a + torch.tril(torch.randn(4, 4), -1)
    _check_eig(a, 1e-4)


def test_eig_empty_and_errors() -> None:
    for shape in [(0, 0), (0, 3, 3), (2, 0, 0)]:
        w, v = torch.linalg.eig(torch.zeros(shape, device=TPU))
        we, ve = torch.linalg.eig(torch.zeros(shape))
        assert w.shape == we.shape and v.shape == ve.shape and w.dtype == we.dtype
    with pytest.raises(RuntimeError, match="square"):
        torch.linalg.eig(torch.zeros(2, 3, device=TPU))
        torch_tpu.sync()


def test_eigvals(mode: str) -> None:
    a = torch.randn(2, 6, 6)
    torch_tpu.reset_metrics()
    w = torch.linalg.eigvals(a.to(TPU)).cpu()
    _no_fallback()
    torch.testing.assert_close(_sorted(w)[0], _sorted(torch.linalg.eigvals(a))[0], atol=1e-4, rtol=1e-4)


def _well_conditioned(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Distinct real eigenvalues 1..n, well separated, with a well-conditioned basis."""
    s = torch.eye(n, dtype=dtype) * 2 + 0.3 * torch.randn(n, n, dtype=dtype)
    return s @ torch.diag(torch.arange(1, n + 1, dtype=dtype)) @ torch.linalg.inv(s)


@pytest.mark.parametrize(
    "loss",
    [
        lambda w, v: (w.abs() ** 2).sum(),
        lambda w, v: w.real.sum() + (w.real**2).sum(),
        lambda w, v: (v.abs() ** 2 * torch.arange(v.shape[-1], device=v.device)).sum() + w.real.sum(),
    ],
    ids=["abs2", "real", "vabs"],
)
def test_eig_backward(loss, mode: str) -> None:
    a = _well_conditioned(4)
    ta = a.to(TPU).requires_grad_()
    ca = a.clone().requires_grad_()
    (gt,) = torch.autograd.grad(loss(*torch.linalg.eig(ta)), ta)
    (gc,) = torch.autograd.grad(loss(*torch.linalg.eig(ca)), ca)
    assert_same(gt, gc, "eig grad", atol=1e-3, rtol=1e-3)


def test_eig_backward_complex_input(mode: str) -> None:
    a = _well_conditioned(4).to(torch.complex64) + 0.1j * torch.randn(4, 4)
    ta = a.to(TPU).requires_grad_()
    ca = a.clone().requires_grad_()
    (gt,) = torch.autograd.grad((torch.linalg.eigvals(ta).abs() ** 2).sum(), ta)
    (gc,) = torch.autograd.grad((torch.linalg.eigvals(ca).abs() ** 2).sum(), ca)
    assert_same(gt, gc, "eigvals grad (complex)", atol=1e-3, rtol=1e-3)


# --- airy_ai ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_airy_ai(dtype: torch.dtype, mode: str) -> None:
    x = torch.cat(
        [
            torch.linspace(-30.0, 30.0, 601, dtype=dtype),
            torch.tensor(
                [-2.09, 2.09, 8.3203353, 103.0, 104.0, float("inf"), -float("inf"), float("nan")], dtype=dtype
            ),
        ]
    )
    torch_tpu.reset_metrics()
    got = torch.special.airy_ai(x.to(TPU))
    _no_fallback()
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert_same(got, torch.special.airy_ai(x), "airy_ai", atol=tol, rtol=tol * 10)


def test_airy_ai_integer_input(mode: str) -> None:
    x = torch.arange(-5, 6)
    assert_same(torch.special.airy_ai(x.to(TPU)), torch.special.airy_ai(x), "airy_ai int", atol=1e-6, rtol=1e-5)


# --- stft / istft -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
@pytest.mark.parametrize("center", [True, False])
def test_stft_forward(dtype: torch.dtype, center: bool, mode: str) -> None:
    x = torch.randn(2, 200, dtype=dtype)
    win = torch.hann_window(32)
    kw = dict(n_fft=32, hop_length=8, window=win, center=center, return_complex=True)
    torch_tpu.reset_metrics()
    got = torch.stft(x.to(TPU), **{**kw, "window": win.to(TPU)})
    _no_fallback()
    assert_same(got, torch.stft(x, **kw), "stft", atol=1e-4, rtol=1e-4)
    got1 = torch.stft(x.to(TPU), n_fft=16, return_complex=True, onesided=False)
    assert_same(
        got1, torch.stft(x, n_fft=16, return_complex=True, onesided=False), "stft default", atol=1e-4, rtol=1e-4
    )


def test_stft_istft_round_trip(mode: str) -> None:
    x = torch.randn(3, 256)
    win = torch.hann_window(64)
    kw = dict(n_fft=64, hop_length=16, window=win.to(TPU))
    spec = torch.stft(x.to(TPU), return_complex=True, **kw)
    back = torch.istft(spec, length=256, **kw)
    assert_same(back, x, "istft(stft(x))", atol=1e-4, rtol=1e-4)
    cpu = torch.istft(torch.stft(x, n_fft=64, hop_length=16, window=win, return_complex=True), n_fft=64,
                      hop_length=16, window=win, length=256)  # fmt: skip
    assert_same(back, cpu, "istft vs CPU", atol=1e-4, rtol=1e-4)


def test_stft_istft_backward(mode: str) -> None:
    x = torch.randn(2, 128)
    win = torch.hann_window(32)

    def run(dev: str) -> tuple[torch.Tensor, torch.Tensor]:
        xx = x.to(dev).requires_grad_()
        w = win.to(dev).requires_grad_()
        spec = torch.stft(xx, n_fft=32, hop_length=8, window=w, return_complex=True)
        y = torch.istft(spec * 0.5, n_fft=32, hop_length=8, window=w, length=128)
        loss = (spec.abs() ** 2).sum() * 1e-2 + (y * torch.linspace(-1, 1, 128, device=dev)).sum()
        return torch.autograd.grad(loss, (xx, w))

    gt, gc = run(TPU), run("cpu")
    assert_same(gt[0], gc[0], "stft/istft grad x", atol=1e-3, rtol=1e-3)
    assert_same(gt[1], gc[1], "stft/istft grad window", atol=1e-3, rtol=1e-3)
