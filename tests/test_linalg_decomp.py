"""Linear-algebra decompositions lowered natively (Jacobi SVD and eigh, Householder QR in
compact form, lstsq, LDL^T, matrix functions) against CPU PyTorch in every eager mode:
values, gradients, and errors. Sign-ambiguous outputs (singular and eigen vectors) are
compared through gauge-invariant forms (absolute values, products)."""

from __future__ import annotations

import re

import pytest
import torch

import torch_tpu
from helpers import TPU, assert_same


def _well_conditioned(*shape: int) -> torch.Tensor:
    """A random matrix (batch) with well separated singular values 1..k (distinct, so vectors are unique up to sign)."""
    m, n = shape[-2:]
    k = min(m, n)
    u, _ = torch.linalg.qr(torch.randn(*shape[:-2], m, m))
    v, _ = torch.linalg.qr(torch.randn(*shape[:-2], n, n))
    s = torch.arange(k, 0, -1, dtype=torch.float32) + 0.5
    return u[..., :k] @ torch.diag_embed(s.expand(*shape[:-2], k)) @ v[..., :k].mT


def _symmetric(*shape: int) -> torch.Tensor:
    a = torch.randn(*shape)
    return a + a.mT


def _no_fallback() -> None:
    assert not torch_tpu.metrics().get("cpu_fallbacks"), torch_tpu.metrics().get("cpu_fallbacks")


# --- SVD ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5), (2, 3, 4, 2), (1, 1), (6, 1)])
@pytest.mark.parametrize("full", [False, True])
def test_svd(mode: str, shape: tuple[int, ...], full: bool) -> None:
    a = _well_conditioned(*shape)
    u, s, vh = torch.linalg.svd(a, full_matrices=full)
    tu, ts, tvh = torch.linalg.svd(a.to(TPU), full_matrices=full)
    k = s.shape[-1]
    assert_same(ts, s, "svd S", atol=1e-5, rtol=1e-5)
    assert_same(tu[..., :k].abs(), u[..., :k].abs(), "svd |U|", atol=1e-4, rtol=1e-4)
    assert_same(tvh[..., :k, :].abs(), vh[..., :k, :].abs(), "svd |Vh|", atol=1e-4, rtol=1e-4)
    assert tu.shape == u.shape and tvh.shape == vh.shape
    # The full bases are orthonormal, and U S Vh rebuilds A.
    eye_u = torch.eye(tu.shape[-1]).expand(tu.mT.shape[:-1] + (tu.shape[-1],))
    assert_same(tu.mT @ tu, eye_u, "U^T U", atol=1e-5, rtol=0)
    rebuilt = tu[..., :k] @ torch.diag_embed(ts) @ tvh[..., :k, :]
    assert_same(rebuilt, a, "U S Vh", atol=1e-5, rtol=1e-5)
    _no_fallback()


def test_svd_rank_deficient_and_empty(mode: str) -> None:
    a = torch.randn(5, 2) @ torch.randn(2, 4)  # rank 2
    assert_same(torch.linalg.svdvals(a.to(TPU)), torch.linalg.svdvals(a), "svdvals rank 2", atol=1e-5, rtol=1e-5)
    assert int(torch.linalg.matrix_rank(a.to(TPU))) == 2
    u = torch.linalg.svd(a.to(TPU)).U
    assert_same(u.mT @ u, torch.eye(5), "U^T U (rank deficient)", atol=1e-5, rtol=0)
    for shape in [(3, 0), (0, 3), (2, 0, 0)]:
        e = torch.zeros(shape)
        assert_same(list(torch.linalg.svd(e.to(TPU))), list(torch.linalg.svd(e)), f"svd of {shape}")


def test_svd_grads(mode: str) -> None:
    a = _well_conditioned(2, 4, 3).requires_grad_()
    ta = a.detach().to(TPU).requires_grad_()
    for fn, name in [
        (torch.linalg.svdvals, "svdvals"),
        (torch.linalg.pinv, "pinv"),
        (lambda x: torch.linalg.matrix_norm(x, "nuc"), "nuclear norm"),
        (lambda x: torch.linalg.polar(x)[0], "polar U"),
    ]:
        out = fn(a)
        ct = torch.randn(out.shape)
        (g,) = torch.autograd.grad(out, a, ct)
        tout = fn(ta)
        (tg,) = torch.autograd.grad(tout, ta, ct.to(TPU))
        assert_same(tout, out.detach(), f"{name} value", atol=1e-4, rtol=1e-4)
        assert_same(tg, g, f"{name} grad", atol=1e-3, rtol=1e-3)
    _no_fallback()


def test_polar(mode: str) -> None:
    a = torch.randn(3, 5, 3)
    assert_same(list(torch.linalg.polar(a.to(TPU))), list(torch.linalg.polar(a)), "polar", atol=1e-4, rtol=1e-4)


# --- eigh -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (5, 5), (3, 4, 4)])
@pytest.mark.parametrize("uplo", ["L", "U"])
def test_eigh(mode: str, shape: tuple[int, ...], uplo: str) -> None:
    a = torch.randn(*shape)  # not symmetric: only the UPLO triangle counts
    w, v = torch.linalg.eigh(a, UPLO=uplo)
    tw, tv = torch.linalg.eigh(a.to(TPU), UPLO=uplo)
    assert_same(tw, w, "eigh values", atol=1e-5, rtol=1e-5)
    assert_same(tv.abs(), v.abs(), "eigh |vectors|", atol=1e-4, rtol=1e-4)
    assert_same(torch.linalg.eigvalsh(a.to(TPU), UPLO=uplo), w, "eigvalsh", atol=1e-5, rtol=1e-5)
    _no_fallback()


def test_eigh_grads_and_sqrth(mode: str) -> None:
    a = _symmetric(2, 4, 4).requires_grad_()
    ta = a.detach().to(TPU).requires_grad_()
    w = torch.linalg.eigvalsh(a)
    ct = torch.randn(w.shape)
    (g,) = torch.autograd.grad(w, a, ct)
    (tg,) = torch.autograd.grad(torch.linalg.eigvalsh(ta), ta, ct.to(TPU))
    assert_same(tg, g, "eigvalsh grad", atol=1e-4, rtol=1e-4)
    spd = a.detach() @ a.detach().mT + torch.eye(4)
    assert_same(torch.linalg.matrix_sqrth(spd.to(TPU)), torch.linalg.matrix_sqrth(spd), "sqrth", atol=1e-4, rtol=1e-4)


# --- matrix_exp -------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.0, 0.1, 1.0, 8.0])
def test_matrix_exp(mode: str, scale: float) -> None:
    a = (torch.randn(3, 4, 4) * scale).requires_grad_()
    ta = a.detach().to(TPU).requires_grad_()
    e = torch.linalg.matrix_exp(a)
    te = torch.linalg.matrix_exp(ta)
    assert_same(te, e.detach(), "matrix_exp", atol=1e-4, rtol=1e-4)
    ct = torch.randn(e.shape)
    (g,) = torch.autograd.grad(e, a, ct)
    (tg,) = torch.autograd.grad(te, ta, ct.to(TPU))
    assert_same(tg, g, "matrix_exp grad", atol=1e-3, rtol=1e-3)


# --- Householder family ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 5), (5, 3), (3, 5), (2, 4, 3), (4, 1)])
def test_geqrf_householder_product_ormqr(mode: str, shape: tuple[int, ...]) -> None:
    a = torch.randn(*shape)
    qr, tau = torch.geqrf(a)
    tqr, ttau = torch.geqrf(a.to(TPU))
    assert_same(tqr, qr, "geqrf a", atol=1e-5, rtol=1e-5)
    assert_same(ttau, tau, "geqrf tau", atol=1e-5, rtol=1e-5)
    if shape[-2] >= shape[-1]:
        hp = torch.linalg.householder_product(qr, tau)
        assert_same(torch.linalg.householder_product(tqr, ttau), hp, "householder_product", atol=1e-5, rtol=1e-5)
    m = shape[-2]
    for left in (True, False):
        for transpose in (True, False):
            c = torch.randn(*shape[:-2], m, 3) if left else torch.randn(*shape[:-2], 3, m)
            want = torch.ormqr(qr, tau, c, left, transpose)
            got = torch.ormqr(tqr, ttau, c.to(TPU), left, transpose)
            assert_same(got, want, f"ormqr left={left} transpose={transpose}", atol=1e-5, rtol=1e-5)
    _no_fallback()


def test_householder_grads(mode: str) -> None:
    a = torch.randn(5, 3, requires_grad=True)
    tau = torch.randn(3, requires_grad=True)
    ta, ttau = (x.detach().to(TPU).requires_grad_() for x in (a, tau))
    q = torch.linalg.householder_product(a, tau)
    ct = torch.randn(q.shape)
    g = torch.autograd.grad(q, (a, tau), ct)
    tg = torch.autograd.grad(torch.linalg.householder_product(ta, ttau), (ta, ttau), ct.to(TPU))
    assert_same(list(tg), list(g), "householder_product grads", atol=1e-4, rtol=1e-4)


# --- lstsq ----------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", [None, "gels", "gelsy", "gelsd", "gelss"])
@pytest.mark.parametrize("mn", [(5, 3), (3, 5), (4, 4)])
def test_lstsq(mode: str, driver: str | None, mn: tuple[int, int]) -> None:
    a = _well_conditioned(2, *mn)
    b = torch.randn(2, mn[0], 2)
    want = torch.linalg.lstsq(a, b, driver=driver)
    got = torch.linalg.lstsq(a.to(TPU), b.to(TPU), driver=driver)
    assert_same(list(got), list(want), f"lstsq {driver}", atol=1e-4, rtol=1e-4)
    _no_fallback()


def test_lstsq_rank_deficient_vector_and_grad(mode: str) -> None:
    a = torch.randn(6, 3)
    a[:, 2] = a[:, 1]
    b = torch.randn(6)
    want = torch.linalg.lstsq(a, b, driver="gelsy")
    got = torch.linalg.lstsq(a.to(TPU), b.to(TPU), driver="gelsy")
    assert_same(list(got), list(want), "lstsq rank 2, vector b", atol=1e-4, rtol=1e-4)
    a = _well_conditioned(4, 3).requires_grad_()
    b = torch.randn(4, 2, requires_grad=True)
    ta, tb = (x.detach().to(TPU).requires_grad_() for x in (a, b))
    x = torch.linalg.lstsq(a, b).solution
    ct = torch.randn(x.shape)
    g = torch.autograd.grad(x, (a, b), ct)
    tg = torch.autograd.grad(torch.linalg.lstsq(ta, tb).solution, (ta, tb), ct.to(TPU))
    assert_same(list(tg), list(g), "lstsq grads", atol=1e-3, rtol=1e-3)


# --- LDL^T ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_ldl_factor_and_solve(mode: str, seed: int) -> None:
    torch.manual_seed(seed)
    a = _symmetric(3, 6, 6)  # indefinite: 2x2 pivots happen
    a[1, 2] *= 0.01  # a small row: another pivot pattern
    ld, piv, info = torch.linalg.ldl_factor_ex(a)
    tld, tpiv, tinfo = torch.linalg.ldl_factor_ex(a.to(TPU))
    assert_same(tpiv, piv, "ldl pivots")
    assert_same(tinfo, info, "ldl info")
    assert_same(tld, ld, "ldl LD", atol=1e-4, rtol=1e-4)
    b = torch.randn(3, 6, 2)
    want = torch.linalg.ldl_solve(ld, piv, b)
    assert_same(torch.linalg.ldl_solve(tld, tpiv, b.to(TPU)), want, "ldl_solve", atol=1e-3, rtol=1e-3)
    _no_fallback()


def test_ldl_singular_info(mode: str) -> None:
    a = torch.zeros(2, 3, 3)
    a[1] = _symmetric(3, 3)
    assert_same(list(torch.linalg.ldl_factor_ex(a.to(TPU))), list(torch.linalg.ldl_factor_ex(a)), "ldl of zeros")


# --- errors -------------------------------------------------------------------------------


def test_errors(mode: str) -> None:
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        torch.linalg.svd(torch.randn(3, device=TPU))
    with pytest.raises(RuntimeError, match="square"):
        torch.linalg.eigh(torch.randn(3, 2, device=TPU))
    with pytest.raises(RuntimeError, match="UPLO"):
        torch.linalg.eigh(torch.randn(3, 3, device=TPU), UPLO="X")
    with pytest.raises(RuntimeError, match="square"):
        torch.linalg.matrix_exp(torch.randn(3, 2, device=TPU))
    with pytest.raises(RuntimeError, match=re.escape("other.shape[-2] must be equal to input.shape[-2]")):
        a, tau = torch.geqrf(torch.randn(4, 3, device=TPU))
        torch.ormqr(a, tau, torch.randn(5, 2, device=TPU))
    with pytest.raises(RuntimeError, match=re.escape("input.shape[-2] must be greater")):
        torch.linalg.householder_product(torch.randn(3, 4, device=TPU), torch.randn(3, device=TPU))
    with pytest.raises(RuntimeError, match="driver"):
        torch.linalg.lstsq(torch.randn(3, 3, device=TPU), torch.randn(3, 1, device=TPU), driver="nope")
    with pytest.raises(RuntimeError, match="at least as many rows"):
        torch.linalg.polar(torch.randn(2, 3, device=TPU))
    torch_tpu.sync()
