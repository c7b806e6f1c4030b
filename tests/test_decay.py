"""ropebook.decay: the RoFormer bound, the empirical scores, Men et al.'s base search; its checkers and figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

import ropebook as rb
from ropebook import decay
from ropebook.checks import check_abel_sum, check_base_ok, check_decay_bound

# (dim, base) pairs the bound is checked on
DIM_BASE = [(2, 10_000.0), (8, 100.0), (64, 10_000.0), (128, 10_000.0), (128, 500_000.0), (256, 1e6)]
# (context_length, dim) for the base search; small enough to run in a second each
SEARCH = [(256, 64), (1024, 128), (2048, 128), (3000, 32)]
# bad input: (callable, kwargs, words the message must contain)
BAD = [
    (decay.decay_bound, dict(distance=[0], dim=7), ["dim", "7"]),
    (decay.decay_bound, dict(distance=[0], dim=128, base=1.0), ["base", "1.0"]),
    (decay.decay_bound, dict(distance=[np.nan], dim=128), ["distance", "nan"]),
    (decay.cos_sum, dict(distance=[0], dim=0), ["dim", "0"]),
    (decay.min_base, dict(context_length=0), ["context_length", "0"]),
    (decay.min_base, dict(context_length=100, rtol=1.0), ["rtol", "1.0"]),
    (decay.min_base, dict(context_length=100, per_decade=0), ["per_decade", "0"]),
    (decay.relative_scores, dict(q=np.ones(4), k=np.ones(6), distance=[0]), ["q.shape=(4,)", "k.shape=(6,)"]),
    (decay.random_score_stats, dict(distance=[0], dim=8, n_samples=1), ["n_samples", "1"]),
]


def bound_by_loop(distances, dim, base):
    """The definition, term by term: (1/(d/2)) Σ_{j=1}^{d/2} |Σ_{i<j} e^{i r θ_i}|."""
    theta = [base ** (-2 * i / dim) for i in range(dim // 2)]
    out = []
    for r in distances:
        total = 0.0
        for j in range(1, dim // 2 + 1):
            total += abs(sum(complex(math.cos(r * t), math.sin(r * t)) for t in theta[:j]))
        out.append(total / (dim // 2))
    return np.array(out)


# ----------------------------------------------------------------------------- the bound


@pytest.mark.parametrize("dim,base", DIM_BASE)
def test_bound_at_distance_zero(dim, base):
    # At r = 0 every e^{i·0·θ_i} = 1, so S_j = j and the factor is (1/N) Σ_{j=1}^{N} j = (N + 1)/2 with N = d/2.
    N = sp.Symbol("N", positive=True, integer=True)
    j = sp.Symbol("j", positive=True, integer=True)
    closed_form = sp.simplify(sp.summation(j, (j, 1, N)) / N)
    assert closed_form == (N + 1) / 2
    assert rb.decay_bound(0, dim, base) == pytest.approx(float(closed_form.subs(N, dim // 2)), rel=1e-15)


@settings(max_examples=40, deadline=None)
@given(dim=st.integers(1, 40).map(lambda h: 2 * h), base=st.floats(2.0, 1e6),
       distances=st.lists(st.floats(-1e5, 1e5, allow_nan=False), min_size=1, max_size=6))
def test_vectorised_equals_loop(dim, base, distances):
    np.testing.assert_allclose(rb.decay_bound(distances, dim, base), bound_by_loop(distances, dim, base),
                               rtol=1e-10, atol=1e-12)


def test_bound_keeps_the_shape_of_distance():
    r = np.arange(12.0).reshape(3, 4)
    assert rb.decay_bound(r, 16).shape == (3, 4)
    assert np.ndim(rb.decay_bound(5, 16)) == 0
    np.testing.assert_allclose(rb.decay_bound(r, 16), rb.decay_bound(-r, 16), rtol=1e-13)  # |S_j| is even in r


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dim=st.sampled_from([4, 16, 64, 128]))
def test_the_bound_bounds_the_score(seed, dim):
    """|score(r)| ≤ max_i |h_{i+1} − h_i| · (d/2) · decay_bound(r) at every distance (RoFormer §3.4.3)."""
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal(dim), rng.standard_normal(dim)
    h = (q[0::2] + 1j * q[1::2]) * np.conj(k[0::2] + 1j * k[1::2])
    r = np.arange(0.0, 3000.0, 7.0)
    bound = np.abs(np.append(h[1:], 0) - h).max() * (dim // 2) * rb.decay_bound(r, dim)
    assert np.all(np.abs(decay.relative_scores(q, k, r)) <= bound * (1 + 1e-12))


@pytest.mark.parametrize("dim", [2, 16, 128])
def test_relative_scores_match_apply_rope(dim):
    torch.manual_seed(dim)
    q, k = torch.randn(dim, dtype=torch.float64), torch.randn(dim, dtype=torch.float64)
    pairs = [(0, 0), (5, 2), (2, 5), (1000, 7), (40_000, 39_000)]
    expected = torch.stack([
        rb.apply_rope(q[None], torch.tensor([m]), layout="interleaved")[0]
        @ rb.apply_rope(k[None], torch.tensor([n]), layout="interleaved")[0] for m, n in pairs])
    got = decay.relative_scores(q.numpy(), k.numpy(), [m - n for m, n in pairs])
    torch.testing.assert_close(torch.from_numpy(got), expected)


def test_all_ones_score_is_twice_the_cos_sum():
    r = np.arange(0.0, 5000.0, 13.0)
    ones = np.ones(128)
    np.testing.assert_allclose(decay.relative_scores(ones, ones, r), 2 * decay.cos_sum(r, 128), rtol=1e-12, atol=1e-9)


def test_random_scores_have_zero_mean_and_spread_sqrt_d():
    r = np.array([0.0, 1.0, 10.0, 100.0, 1000.0, 10_000.0])
    mean, std, sem = decay.random_score_stats(r, 64, n_samples=6000, seed=3)
    assert np.all(np.abs(mean) < 4 * sem), mean / sem
    np.testing.assert_allclose(std, math.sqrt(64), rtol=0.05)  # Var = tr(R Rᵀ) = d
    np.testing.assert_allclose(sem, std / math.sqrt(6000))


# ----------------------------------------------------------------------------- Men et al.'s base search


def test_satisfies_matches_brute_force():
    for base, L, dim in [(1e4, 1024, 128), (1e4, 4096, 128), (2e3, 700, 64), (5e5, 20_000, 128)]:
        brute = bool(decay.cos_sum(np.arange(float(L)), dim, base).min() >= 0)
        assert decay.satisfies_base_bound(base, L, dim) is brute


@pytest.mark.parametrize("L,dim", SEARCH)
def test_min_base_passes_and_slightly_smaller_fails(L, dim):
    b = rb.min_base(L, dim)
    assert decay.satisfies_base_bound(b, L, dim)
    assert not decay.satisfies_base_bound(b * (1 - 1e-3), L, dim)


def test_min_base_is_first_on_its_grid():
    """No base on the coarse grid below the answer (more than one decade down) passes."""
    L, dim = 1024, 128
    b = rb.min_base(L, dim)
    grid = 2.0 * 10 ** (np.arange(0, 60) / 24)
    assert not any(decay.satisfies_base_bound(g, L, dim) for g in grid[grid < b / 10])


def test_passing_bases_are_not_an_interval():
    """Why min_base keeps searching below a hit: near the edge, passing and failing bases alternate."""
    bases = np.geomspace(1e4, 3e4, 120)
    ok = np.array([decay.satisfies_base_bound(b, 2048, 128) for b in bases])
    first = int(np.argmax(ok))
    assert ok.any() and not ok[first:].all()


@pytest.mark.parametrize("fn,kwargs,words", BAD)
def test_bad_input_names_the_argument(fn, kwargs, words):
    with pytest.raises(ValueError) as info:
        fn(**kwargs)
    message = str(info.value)
    assert message.startswith(fn.__name__)
    for w in words:
        assert w in message, (w, message)


# ----------------------------------------------------------------------------- checkers


def test_check_decay_bound_accepts_the_reference_and_rejects_wrong_answers():
    assert check_decay_bound(decay.decay_bound).passed
    wrong_sum = lambda r, d, b: decay.decay_bound(r, d, b) * (d // 2)  # sum instead of mean
    inclusive = lambda r, d, b: np.abs(  # S_j including k = j, and dropping S_1
        np.cumsum(np.exp(1j * np.outer(r, b ** (-2 * np.arange(d // 2) / d))), axis=-1)[:, 1:]).sum(-1) / (d // 2)
    for wrong in (wrong_sum, inclusive, lambda r, d, b: None):
        result = check_decay_bound(wrong)
        assert not result.passed and "✗" in result.message


def test_check_decay_bound_never_raises_on_a_stub():
    def stub(r, d, b):
        raise NotImplementedError
    result = check_decay_bound(stub)
    assert not result.passed and "not implemented" in result.message


def test_check_base_ok():
    assert check_base_ok(decay.satisfies_base_bound).passed
    for wrong in (lambda b, L, d: True, lambda b, L, d: False,
                  lambda b, L, d: bool(decay.cos_sum(np.arange(float(L // 2)), d, b).min() >= 0),  # half the range
                  lambda b, L, d: bool(decay.cos_sum(np.arange(float(L + 1)), d, b).min() >= 0)):  # r <= L
        assert not check_base_ok(wrong).passed


def test_check_abel_sum():
    h, z, S = sp.symbols("h0:4"), sp.symbols("z0:4"), sp.symbols("S1:5")  # S[j] stands for S_{j+1}
    he = list(h) + [0]
    assert check_abel_sum(sum(S[i] * (he[i] - he[i + 1]) for i in range(4)), h, z, S).passed
    assert not check_abel_sum(sum(S[i] * (he[i] + he[i + 1]) for i in range(4)), h, z, S).passed  # a sign
    assert not check_abel_sum(sum(hj * zj for hj, zj in zip(h, z)), h, z, S).passed  # still in z
    substituted = sum(h[i] * (S[i] - (S[i - 1] if i else 0)) for i in range(4))  # equal, not rearranged
    assert not check_abel_sum(substituted, h, z, S).passed
    assert not check_abel_sum(None, h, z, S).passed


# ----------------------------------------------------------------------------- figures


def test_figures_are_figures():
    figs = [
        rb.plotting.decay_curves(dim=64, max_distance=100, show_ones=True, normalise=True),
        rb.plotting.decay_curves(dim=64, max_distance=100_000, log_x=True, n_points=300),
        rb.plotting.random_score_band([1, 2], [0.0, 0.1], [8.0, 8.0], [0.1, 0.1], dim=64),
        rb.plotting.pair_cosines(dim=16, pairs=(0, 7), max_distance=50),
        rb.plotting.min_base_curve([1024, 2048], [4e3, 1e4], fit=(0.0424, 1.628)),
        rb.plotting.rotation_2d([1, 0], [0, 1], 3, 1),
        rb.plotting.wavelengths(context_length=4096),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        assert fig.get_facecolor() == (1.0, 1.0, 1.0, 1.0)


def test_figure_bad_input():
    with pytest.raises(ValueError, match="pairs"):
        rb.plotting.pair_cosines(dim=16, pairs=(8,))
    with pytest.raises(ValueError, match=r"^decay_curves: max_distance must be a positive finite number, got max_distance=-1$"):
        rb.plotting.decay_curves(max_distance=-1)
    # each function names itself, not the one it shares the distance grid with
    for bad, message in [
        (dict(max_distance=-1), r"^pair_cosines: max_distance must be .* got max_distance=-1$"),
        (dict(max_distance=float("inf")), r"^pair_cosines: max_distance .* got max_distance=inf$"),
        (dict(n_points="many"), r"^pair_cosines: n_points must be a positive integer, got n_points='many'$"),
        (dict(dim=15), r"^pair_cosines: dim must be a positive even integer, got dim=15$"),
        (dict(base=1.0), r"^pair_cosines: base must be a finite number > 1, got base=1.0$"),
        (dict(pairs=("a",)), r"^pair_cosines: pairs must be .* in \[0, 8\), got pairs=\('a',\)$"),
        (dict(pairs=(1.5,)), r"^pair_cosines: pairs must be .* got pairs=\(1.5,\)$"),
        (dict(pairs=3), r"^pair_cosines: pairs must be .* got pairs=3$"),
        (dict(pairs=()), r"^pair_cosines: pairs must be a non-empty .* got pairs=\(\)$"),
    ]:
        with pytest.raises(ValueError, match=message):
            rb.plotting.pair_cosines(**{"dim": 16, "pairs": (0, 7), "max_distance": 50, **bad})
    assert isinstance(rb.plotting.pair_cosines(dim=16, pairs=np.array([0, 7]), max_distance=50), Figure)
    with pytest.raises(ValueError, match=r"q must be 2 finite numbers, got q=\[1, 2, 3\]"):
        rb.plotting.rotation_2d([1, 2, 3], [0, 1], 0, 0)
    with pytest.raises(ValueError, match="dims"):
        rb.plotting.wavelengths(dims=(7,))
