"""Special functions, random distributions and data-dependent ops against CPU
PyTorch: orthogonal polynomials (bounded while-loop recurrences), igamma and
igammac, cauchy_/geometric_/log_normal_/multinomial/rrelu (statistics and
seeding), nonzero_static, masked_scatter, segment_reduce, and the gradients of
index_fill, masked_select and sgn."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import torch_tpu
from helpers import TPU, assert_same

# --- orthogonal polynomials --------------------------------------------------------

POLYNOMIALS: dict[str, Callable[..., torch.Tensor]] = {
    "chebyshev_t": torch.special.chebyshev_polynomial_t,
    "chebyshev_u": torch.special.chebyshev_polynomial_u,
    "chebyshev_v": torch.special.chebyshev_polynomial_v,
    "chebyshev_w": torch.special.chebyshev_polynomial_w,
    "shifted_chebyshev_t": torch.special.shifted_chebyshev_polynomial_t,
    "shifted_chebyshev_u": torch.special.shifted_chebyshev_polynomial_u,
    "shifted_chebyshev_v": torch.special.shifted_chebyshev_polynomial_v,
    "shifted_chebyshev_w": torch.special.shifted_chebyshev_polynomial_w,
    "hermite_h": torch.special.hermite_polynomial_h,
    "hermite_he": torch.special.hermite_polynomial_he,
    "laguerre_l": torch.special.laguerre_polynomial_l,
    "legendre_p": torch.special.legendre_polynomial_p,
}


def _poly_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """x over [-1.5, 1.5] with the edge points 0, ±1, 0.5; n from -2 to 12 (closed
    forms above 6/8), broadcast as a column against a row."""
    x = torch.cat([torch.linspace(-1.5, 1.5, 13), torch.tensor([-1.0, 0.0, 0.5, 1.0, float("nan")])])
    n = torch.arange(-2, 13, dtype=torch.float32).unsqueeze(1)
    return x, n


@pytest.mark.parametrize("name", sorted(POLYNOMIALS))
def test_polynomials_match_cpu(name: str, mode: str) -> None:
    fn = POLYNOMIALS[name]
    x, n = _poly_inputs()
    expected = fn(x, n)
    assert_same(fn(x.to(TPU), n.to(TPU)), expected, f"{name}({mode})", rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["chebyshev_t", "hermite_he", "legendre_p"])
def test_polynomials_scalar_and_integer_operands(name: str, mode: str) -> None:
    fn = POLYNOMIALS[name]
    x = torch.linspace(-2, 2, 9)
    assert_same(fn(x.to(TPU), 5), fn(x, 5), f"{name}(x, 5)", rtol=1e-4, atol=1e-4)
    xi = torch.arange(-3, 4)
    ni = torch.arange(0, 7)
    assert_same(fn(xi.to(TPU), ni.to(TPU)), fn(xi, ni), f"{name}(int x, int n)", rtol=1e-4, atol=1e-4)


def test_hermite_above_the_degree_limit_is_nan(mode: str) -> None:
    x = torch.tensor([0.1, 0.2])
    n = torch.tensor([129.0, 3.0])
    got = torch.special.hermite_polynomial_h(x.to(TPU), n.to(TPU)).cpu()
    assert math.isnan(got[0].item()) and not math.isnan(got[1].item()), got


def test_polynomial_shape_mismatch_raises() -> None:
    with pytest.raises(RuntimeError, match="size of tensor"):
        torch.special.chebyshev_polynomial_t(torch.ones(3, device=TPU), torch.ones(4, device=TPU))


# --- incomplete gamma ----------------------------------------------------------------


def test_igamma_igammac_match_cpu(mode: str) -> None:
    a = torch.tensor([0.5, 1.0, 2.5, 10.0, 30.0, 0.0, 0.0, -1.0, float("inf"), 3.0, 150.0]).unsqueeze(1)
    x = torch.tensor([0.0, 0.1, 1.0, 2.0, 9.5, 35.0, float("inf"), 160.0])
    for fn in (torch.igamma, torch.igammac):
        assert_same(fn(a.to(TPU), x.to(TPU)), fn(a, x), f"{fn.__name__}({mode})", rtol=2e-4, atol=2e-5)


def test_igamma_shape_mismatch_raises() -> None:
    with pytest.raises(RuntimeError, match="size of tensor"):
        torch.igamma(torch.ones(2, device=TPU), torch.ones(3, device=TPU))


# --- random distributions -------------------------------------------------------------

N = 200_000


def test_cauchy_statistics_and_seed() -> None:
    torch.manual_seed(3)
    x = torch.empty(N, device=TPU).cauchy_(1.0, 2.0).cpu()
    torch.manual_seed(3)
    y = torch.empty(N, device=TPU).cauchy_(1.0, 2.0).cpu()
    assert torch.equal(x, y), "cauchy_ with the same seed differs"
    # Median 1 and quartiles at median ± sigma.
    q = torch.quantile(x[:100_000], torch.tensor([0.25, 0.5, 0.75]))
    assert torch.allclose(q, torch.tensor([-1.0, 1.0, 3.0]), atol=0.06), q


def test_geometric_statistics() -> None:
    p = 0.2
    for dtype in (torch.float32, torch.int64):
        x = torch.empty(N, device=TPU, dtype=dtype).geometric_(p).cpu().double()
        assert x.min() >= 1, f"geometric_ drew {x.min()} trials"
        assert abs(x.mean() - 1 / p) < 0.05, f"geometric_({dtype}) mean {x.mean()}"
        assert abs(x.var() - (1 - p) / p**2) < 0.6, f"geometric_({dtype}) var {x.var()}"


def test_log_normal_statistics() -> None:
    x = torch.empty(N, device=TPU).log_normal_(0.5, 0.25).cpu()
    lx = x.log()
    assert abs(lx.mean() - 0.5) < 0.005 and abs(lx.std() - 0.25) < 0.005, (lx.mean(), lx.std())
    assert abs(x.mean() - math.exp(0.5 + 0.25**2 / 2)) < 0.01


def test_multinomial_frequencies() -> None:
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [1.0, 1.0, 1.0, 1.0]])
    s = torch.multinomial(probs.to(TPU), 50_000, replacement=True).cpu()
    assert s.shape == (2, 50_000) and s.dtype == torch.int64
    f0 = torch.bincount(s[0], minlength=4).double() / 50_000
    f1 = torch.bincount(s[1], minlength=4).double() / 50_000
    assert torch.allclose(f0, torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64), atol=0.01), f0
    assert torch.allclose(f1, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01), f1


def test_multinomial_without_replacement() -> None:
    w = torch.tensor([1.0, 0.0, 3.0, 6.0, 0.0])
    rows = w.expand(20_000, 5).contiguous().to(TPU)
    s = torch.multinomial(rows, 3).cpu()
    assert all(len(set(r)) == 3 for r in s.tolist()[:500]), "samples repeat without replacement"
    assert not ((s == 1) | (s == 4)).any(), "zero-weight categories were drawn"
    first = torch.bincount(s[:, 0], minlength=5).double() / 20_000
    assert torch.allclose(first, (w / w.sum()).double(), atol=0.015), first
    torch.manual_seed(5)
    a = torch.multinomial(rows, 2).cpu()
    torch.manual_seed(5)
    assert torch.equal(a, torch.multinomial(rows, 2).cpu()), "multinomial with the same seed differs"


def test_multinomial_errors() -> None:
    with pytest.raises(RuntimeError, match="without replacement"):
        torch.multinomial(torch.ones(3, device=TPU), 4)
    with pytest.raises(RuntimeError, match="1 or 2 dim"):
        torch.multinomial(torch.ones(2, 2, 2, device=TPU), 1)


def test_rrelu_training_and_eval(mode: str) -> None:
    x = torch.randn(50_000)
    xt = x.to(TPU).requires_grad_()
    y = F.rrelu(xt, 0.1, 0.3, training=True)
    y.sum().backward()
    yc, g = y.detach().cpu(), xt.grad.cpu()
    pos = x > 0
    assert torch.equal(yc[pos], x[pos]), "rrelu changed positive inputs"
    slope = yc[~pos] / x[~pos]
    assert slope.min() >= 0.1 - 1e-6 and slope.max() <= 0.3 + 1e-6, (slope.min(), slope.max())
    assert abs(slope.mean() - 0.2) < 0.005, slope.mean()
    # The gradient is the slope that was drawn.
    torch.testing.assert_close(g[~pos], slope, rtol=1e-5, atol=1e-6)
    assert_same(F.rrelu(x.to(TPU), 0.1, 0.3, training=False), F.rrelu(x, 0.1, 0.3, training=False), "rrelu eval")


# --- data-dependent ops with static shapes ------------------------------------------------


def test_nonzero_static_matches_cpu(mode: str) -> None:
    x = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0], [0.0, 0.0, 3.0]])
    for size, fill in ((2, -1), (4, -1), (7, 9), (0, -1)):
        expected = torch.nonzero_static(x, size=size, fill_value=fill)
        assert_same(torch.nonzero_static(x.to(TPU), size=size, fill_value=fill), expected, f"nonzero_static({size})")
    b = torch.rand(4, 5, 6) < 0.3
    assert_same(torch.nonzero_static(b.to(TPU), size=40), torch.nonzero_static(b, size=40), "nonzero_static(bool 3-d)")


def test_combinations_match_cpu(mode: str) -> None:
    x = torch.randn(5, requires_grad=True)
    xt = x.detach().to(TPU).requires_grad_()
    y, yt = torch.combinations(x, 3), torch.combinations(xt, 3)
    assert_same(yt, y, "combinations")
    ct = torch.randn(y.shape)
    y.backward(ct)
    yt.backward(ct.to(TPU))
    assert_same(xt.grad, x.grad, "combinations grad")


def test_masked_scatter_and_masked_select_grad(mode: str) -> None:
    x = torch.randn(4, 5, requires_grad=True)
    src = torch.randn(25, requires_grad=True)
    mask = torch.rand(4, 5) < 0.5
    xt, st = (t.detach().to(TPU).requires_grad_() for t in (x, src))
    y = x.masked_scatter(mask, src)
    yt = xt.masked_scatter(mask.to(TPU), st)
    assert_same(yt, y, "masked_scatter")
    ct = torch.randn(4, 5)
    y.backward(ct)
    yt.backward(ct.to(TPU))
    assert_same(xt.grad, x.grad, "masked_scatter grad self")
    assert_same(st.grad, src.grad, "masked_scatter grad source")
    # Broadcast mask, in place.
    row = torch.tensor([True, False, True, True, False])
    z = torch.zeros(3, 5)
    zt = z.to(TPU)
    z.masked_scatter_(row, src.detach())
    zt.masked_scatter_(row.to(TPU), src.detach().to(TPU))
    assert_same(zt, z, "masked_scatter_ broadcast mask")
    # masked_select's backward is a masked_scatter.
    x2 = torch.randn(3, 4, requires_grad=True)
    x2t = x2.detach().to(TPU).requires_grad_()
    m2 = torch.rand(3, 4) < 0.5
    x2.masked_select(m2).sum().backward()
    x2t.masked_select(m2.to(TPU)).sum().backward()
    assert_same(x2t.grad, x2.grad, "masked_select grad")


def test_masked_scatter_errors() -> None:
    x = torch.zeros(4, device=TPU)
    with pytest.raises(RuntimeError, match="boolean"):
        x.masked_scatter_(torch.ones(4, dtype=torch.int64, device=TPU), torch.ones(4, device=TPU))
    with pytest.raises(RuntimeError, match="at least as many elements"):
        x.masked_scatter_(torch.ones(4, dtype=torch.bool, device=TPU), torch.ones(2, device=TPU))
        torch_tpu.sync()
        x.cpu()


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "prod"])
@pytest.mark.parametrize("by", ["lengths", "offsets"])
def test_segment_reduce_matches_cpu(reduce: str, by: str, mode: str) -> None:
    data = torch.tensor([[1.0, 3.0, 3.0, 0.0, 5.0, -2.0], [2.0, -1.0, 4.0, 4.0, 0.5, 1.5]]).T.contiguous()
    data.requires_grad_()
    lengths = torch.tensor([0, 3, 2, 1])
    seg = (
        {"lengths": lengths}
        if by == "lengths"
        else {"offsets": torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])}
    )
    for initial in (None, 2.0):
        dt = data.detach().to(TPU).requires_grad_()
        y = torch.segment_reduce(data, reduce, axis=0, initial=initial, **seg)
        yt = torch.segment_reduce(dt, reduce, axis=0, initial=initial, **{k: v.to(TPU) for k, v in seg.items()})
        assert_same(yt, y, f"segment_reduce({reduce}, {by}, {initial})")
        ct = torch.randn(y.shape)
        (g,) = torch.autograd.grad(y, data, ct)
        (gt,) = torch.autograd.grad(yt, dt, ct.to(TPU))
        assert_same(gt, g, f"segment_reduce grad ({reduce}, {by}, {initial})")


def test_segment_reduce_errors() -> None:
    with pytest.raises(RuntimeError, match="not supported"):
        torch.segment_reduce(torch.ones(4, device=TPU), "median", lengths=torch.tensor([4], device=TPU))
    with pytest.raises(RuntimeError, match="do not fit"):
        torch.segment_reduce(
            torch.ones(4, 3, device=TPU), "sum", lengths=torch.ones(2, 2, dtype=torch.int64, device=TPU)
        )


# --- gradients that needed _unique and _efficientzerotensor -----------------------------------


def test_index_fill_and_sgn_grads(mode: str) -> None:
    x = torch.randn(4, 5, requires_grad=True)
    v = torch.tensor(1.5, requires_grad=True)
    xt, vt = (t.detach().to(TPU).requires_grad_() for t in (x, v))
    idx = torch.tensor([0, 2, 2])
    (x.index_fill(1, idx, v) * torch.arange(20.0).view(4, 5)).sum().backward()
    (xt.index_fill(1, idx.to(TPU), vt) * torch.arange(20.0).view(4, 5).to(TPU)).sum().backward()
    assert_same(xt.grad, x.grad, "index_fill grad self")
    assert_same(vt.grad, v.grad, "index_fill grad value")
    s = torch.randn(6, requires_grad=True)
    st = s.detach().to(TPU).requires_grad_()
    torch.sgn(s).sum().backward()
    torch.sgn(st).sum().backward()
    assert_same(st.grad, s.grad, "sgn grad")


# --- histograms -------------------------------------------------------------------------


def test_histogram_matches_cpu(mode: str) -> None:
    x = torch.tensor([1.0, 2.0, 2.5, 3.0, 4.0, -1.0, float("nan"), 3.5])
    w = torch.arange(8.0)
    cases = [
        {"bins": 4},
        {"bins": 3, "range": (1.5, 3.5), "weight": w, "density": True},
        {"bins": torch.tensor([0.0, 2.0, 2.5, 4.0])},
    ]
    for kw in cases:
        exp = torch.histogram(x.nan_to_num(0.0), **kw)
        got = torch.histogram(
            x.nan_to_num(0.0).to(TPU), **{k: v.to(TPU) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        )
        assert_same(list(got), list(exp), f"histogram({kw})")
    same = torch.full((3,), 2.0)
    assert_same(list(torch.histogram(same.to(TPU), 2)), list(torch.histogram(same, 2)), "histogram of equal values")


def test_histogramdd_matches_cpu(mode: str) -> None:
    x = torch.randn(50, 2)
    exp = torch.histogramdd(x, [3, 4])
    got = torch.histogramdd(x.to(TPU), [3, 4])
    assert_same(got.hist, exp.hist, "histogramdd hist")
    assert_same(list(got.bin_edges), list(exp.bin_edges), "histogramdd edges")
    edges = [torch.tensor([-1.0, 0.0, 2.0]), torch.tensor([-2.0, 1.0, 3.0])]
    wt = torch.rand(50)
    exp = torch.histogramdd(x, edges, weight=wt, density=True)
    got = torch.histogramdd(x.to(TPU), [e.to(TPU) for e in edges], weight=wt.to(TPU), density=True)
    assert_same(got.hist, exp.hist, "histogramdd with edges, weight, density")


def test_histogram_errors() -> None:
    with pytest.raises(RuntimeError, match="bins must be a 1D tensor"):
        torch.histogram(torch.ones(3, device=TPU), torch.ones(2, 2, device=TPU))
    with pytest.raises(RuntimeError, match="range"):
        torch.histogram(torch.ones(3, device=TPU), 2, range=(3.0, 1.0))
