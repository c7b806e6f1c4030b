"""Long-term decay: the RoFormer bound, the scores it is compared with, and Men et al.'s base lower bound.

RoFormer (§3.4.3) writes the RoPE score at relative distance r = m − n as
Re Σ_i h_i e^{i r θ_i} with h_i = q̃_i conj(k̃_i), sums by parts (Abel) and
bounds it by max_i |h_{i+1} − h_i| · Σ_{j=1}^{d/2} |S_j|, where
S_j = Σ_{i<j} e^{i r θ_i} sums over the pairs i < j. ``decay_bound`` is the
factor (1/(d/2)) Σ_j |S_j| that the paper plots. Men et al. ask instead that a key equal to the query
(plus noise) outscore a random key at every distance below the context length L;
for zero-mean q, k that margin is 2σ² B_r with B_r = Σ_i cos(r θ_i), and
``min_base`` finds the first base b on a fine geometric grid (refined by bisection) for which
B_r ≥ 0 for all r < L. The passing bases have gaps, so narrow windows below it can pass too.

Everything here is numpy float64.

Chapter: ``ch-long-term-decay``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ropebook import _validate
from ropebook._validate import _short_repr

__all__ = ["decay_bound", "relative_scores", "random_score_stats", "cos_sum", "satisfies_base_bound", "min_base"]


# ----------------------------------------------------------------------------- checks


def _check_dim(fn: str, dim) -> int:
    return _validate._check_dim(fn, dim)  # a positive even int (numpy's too), as in ropebook.rope


def _check_base(fn: str, base) -> float:
    return _validate._check_base(fn, base)  # a finite number > 1 (numpy's too), as in ropebook.rope


def _real_array(fn: str, name: str, value) -> np.ndarray:
    """value as a float64 array; an error naming the argument for strings, complex numbers, ragged lists."""
    try:
        if np.iscomplexobj(value):
            raise TypeError("complex")
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{fn}: {name} must be real numbers, got {name}={_short_repr(value)}") from err


def _distances(fn: str, distance) -> np.ndarray:
    r = _real_array(fn, "distance", distance)
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{fn}: distance must be finite real numbers, got distance={distance!r}")
    return r


def _theta(dim: int, base: float) -> np.ndarray:
    return base ** (-np.arange(dim // 2) * 2.0 / dim)  # (d/2,)  θ_i = b^{-2i/d}


# ----------------------------------------------------------------------------- the RoFormer bound


def decay_bound(distance, dim: int, base: float = 10000.0) -> np.ndarray:
    """RoFormer's decay factor (1/(d/2)) Σ_{j=1}^{d/2} |S_j(r)|, S_j(r) = Σ_{i<j} e^{i r θ_i} over pairs i.

    Vectorised over ``distance`` (any shape; the result has the same shape).
    At r = 0 every S_j = j, so the factor is (d/2 + 1)/2.

    Args:
        distance: relative distance(s) r = m − n.
        dim: head dimension d (even).
        base: base b of θ_i = b^{-2i/d}.

    Returns:
        float64 array shaped like ``distance``.

    >>> float(decay_bound(0, 128))
    32.5
    >>> decay_bound([0, 10, 100], 128).round(2)
    array([32.5 , 17.95, 10.23])
    """
    fn = "decay_bound"
    dim, base = _check_dim(fn, dim), _check_base(fn, base)
    r = _distances(fn, distance)
    angles = r.reshape(-1, 1) * _theta(dim, base)  # (R, d/2)
    z = np.empty(angles.shape, dtype=np.complex128)  # e^{i r θ_i}: cos and sin are cheaper than a complex exp
    np.cos(angles, out=z.real)
    np.sin(angles, out=z.imag)
    partial = np.cumsum(z, axis=-1, out=z)  # (R, d/2)  column j-1 holds S_j
    return (np.abs(partial).mean(axis=-1)).reshape(r.shape)


# ----------------------------------------------------------------------------- empirical scores


def relative_scores(q, k, distance, *, base: float = 10000.0) -> np.ndarray:
    """The RoPE score (R_m q)ᵀ(R_n k) as a function of r = m − n, for given q and k.

    Pairs are taken in the ``"interleaved"`` layout (pair i is features 2i, 2i+1),
    so that q̃_i = q_{2i} + i q_{2i+1} and the score is Re Σ_i q̃_i conj(k̃_i) e^{i r θ_i}.

    Shapes:
        q, k: (..., d), broadcastable; distance: (R,) → result (..., R).

    >>> relative_scores([1.0, 1.0], [1.0, 1.0], [0.0, np.pi]).round(6)  # 2·cos(r) for d = 2
    array([ 2., -2.])
    """
    fn = "relative_scores"
    q, k = _real_array(fn, "q", q), _real_array(fn, "k", k)
    if q.ndim < 1 or k.ndim < 1 or q.shape[-1] != k.shape[-1] or q.shape[-1] % 2 or q.shape[-1] == 0:
        raise ValueError(f"relative_scores: q and k must share an even last dimension d, got q.shape={q.shape}, k.shape={k.shape}")
    try:
        np.broadcast_shapes(q.shape, k.shape)
    except ValueError:
        raise ValueError(f"relative_scores: q and k must broadcast, got q.shape={q.shape}, k.shape={k.shape}") from None
    dim, base = q.shape[-1], _check_base(fn, base)
    r = np.atleast_1d(_distances(fn, distance))
    if r.ndim != 1:
        raise ValueError(f"{fn}: distance must be a scalar or 1-D, got distance.shape={r.shape}")
    h = (q[..., 0::2] + 1j * q[..., 1::2]) * np.conj(k[..., 0::2] + 1j * k[..., 1::2])  # (..., d/2)
    rotation = np.exp(1j * np.outer(r, _theta(dim, base)))  # (R, d/2)
    return (h @ rotation.T).real  # (..., R)


def random_score_stats(distance, dim: int, *, base: float = 10000.0, n_samples: int = 2000, seed: int = 0):
    """Mean, standard deviation and standard error of the score over random q, k ~ N(0, I_d).

    One fresh (q, k) per sample, the same samples at every distance. For such q, k
    the expected score is 0 and its variance is d at every distance: RoPE is a
    rotation, and E[(qᵀRk)²] = tr(RRᵀ) = d.

    Returns:
        ``(mean, std, sem)``, each of shape ``(R,)``.

    >>> mean, std, sem = random_score_stats([0, 100], 64, n_samples=4000)
    >>> bool(np.all(np.abs(mean) < 4 * sem)), std.round(0)
    (True, array([8., 8.]))
    """
    fn = "random_score_stats"
    dim, base = _check_dim(fn, dim), _check_base(fn, base)
    if seed is not None and not isinstance(seed, np.random.Generator) and (  # what np.random.default_rng takes
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"{fn}: seed must be None, a non-negative integer or a numpy Generator, got seed={seed!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"{fn}: n_samples must be an integer >= 2, got n_samples={n_samples!r}")
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_samples, dim))  # (N, d)
    k = rng.standard_normal((n_samples, dim))  # (N, d)
    scores = relative_scores(q, k, distance, base=base)  # (N, R)
    std = scores.std(axis=0, ddof=1)
    return scores.mean(axis=0), std, std / math.sqrt(n_samples)


# ----------------------------------------------------------------------------- Men et al.'s base bound


def cos_sum(distance, dim: int, base: float = 10000.0) -> np.ndarray:
    """B_r = Σ_{i<d/2} cos(r θ_i): half the all-ones score, and Men et al.'s B_{m,θ}.

    >>> cos_sum([0, 1], 4, base=100.0).round(4)  # θ = (1, 0.1)
    array([2.    , 1.5353])
    """
    fn = "cos_sum"
    dim, base = _check_dim(fn, dim), _check_base(fn, base)
    r = _distances(fn, distance)
    return np.cos(r.reshape(-1, 1) * _theta(dim, base)).sum(axis=-1).reshape(r.shape)


def satisfies_base_bound(base: float, context_length: int, dim: int = 128) -> bool:
    """Whether B_r ≥ 0 for every integer distance 0 ≤ r < context_length.

    >>> satisfies_base_bound(10_000.0, 1024), satisfies_base_bound(10_000.0, 4096)
    (True, False)
    """
    fn = "satisfies_base_bound"
    dim, base = _check_dim(fn, dim), _check_base(fn, base)
    L = _check_context(fn, context_length)
    theta = _theta(dim, base)  # (d/2,)
    start, chunk, cap = 0, 1024, max(1024, 2**20 // (dim // 2))
    while start < L:  # growing chunks: a failing base usually fails early, and memory stays flat
        r = np.arange(start, min(L, start + chunk), dtype=np.float64)  # (chunk,)
        if np.cos(np.outer(r, theta)).sum(axis=-1).min() < 0:  # (chunk, d/2) → (chunk,)
            return False
        start, chunk = start + chunk, min(2 * chunk, cap)
    return True


def _check_context(fn: str, context_length) -> int:
    if isinstance(context_length, bool) or not isinstance(context_length, (int, np.integer)) or context_length < 1:
        raise ValueError(f"{fn}: context_length must be a positive integer, got context_length={context_length!r}")
    return int(context_length)


def min_base(context_length: int, dim: int = 128, *, per_decade: int = 96, rtol: float = 1e-3,
             max_base: float = 1e12) -> float:
    """The first base b on a fine grid with B_r ≥ 0 for all r < L (Men et al.'s lower bound, as computed).

    The set of passing bases is not an interval (near the edge, windows of passing
    and failing bases alternate), so "smallest" is relative to a grid: a coarse
    geometric scan from b = 2 (6 steps per decade) finds a passing base, a scan with
    ``per_decade`` steps per decade over the decade below it finds the first passing
    grid base, and bisection in log b narrows the bracket [failing, passing] to a
    relative width ``rtol``. The base b returned passes and b·(1 − rtol) fails
    (if that smaller base passes, the search continues below it).

    Args:
        context_length: L, the distances that must be covered are 0 … L − 1.
        dim: head dimension d.
        per_decade: grid points per decade of the first scan.
        rtol: relative precision of the answer.
        max_base: give up above this base.

    >>> b = min_base(1024, 128)
    >>> satisfies_base_bound(b, 1024), satisfies_base_bound(b * (1 - 1e-3), 1024)
    (True, False)
    """
    fn = "min_base"
    L, dim = _check_context(fn, context_length), _check_dim(fn, dim)
    if not (isinstance(rtol, (float, np.floating)) and 0 < rtol < 0.5):
        raise ValueError(f"{fn}: rtol must be a float in (0, 0.5), got rtol={rtol!r}")
    rtol = float(rtol)
    if not _validate._is_int(per_decade) or per_decade < 1:
        raise ValueError(f"{fn}: per_decade must be a positive integer, got per_decade={per_decade!r}")
    if isinstance(max_base, bool) or not isinstance(max_base, numbers.Real) or not max_base > 0:
        # (NaN fails too: it would lift the limit, every comparison with it being False; inf means no limit)
        raise ValueError(f"{fn}: max_base must be a positive number (inf: no limit), got max_base={max_base!r}")
    max_base = float(max_base)  # (a Fraction, say, formats and compares as a float below)
    step = 10 ** (1 / per_decade)
    hi = _first_passing(2.0, 10 ** (1 / 6), L, dim, max_base, fn)  # coarse: 6 per decade
    lo, hi = None, max(2.0, hi / 10)  # fine scan over the decade below the coarse hit
    while True:
        if lo is None:  # scan up from hi for the first passing base; the one before it fails
            lo, hi = _bracket(hi, step, L, dim, max_base, fn)
        while hi / lo > 1 + rtol / 2:  # bisection in log b; invariant: lo fails (or is ~1), hi passes
            mid = math.sqrt(lo * hi)
            lo, hi = (lo, mid) if satisfies_base_bound(mid, L, dim) else (mid, hi)
        below = hi * (1 - rtol)
        if below <= 1 or not satisfies_base_bound(below, L, dim):
            return hi
        # The passing set is not an interval: a smaller base passes too. Search below it.
        hi = below
        while hi / step > 1 and satisfies_base_bound(hi / step, L, dim):
            hi = hi / step
        lo = max(hi / step, 1.0 + 1e-9)


def _bracket(b: float, step: float, L: int, dim: int, max_base: float, fn: str) -> tuple[float, float]:
    """(last failing, first passing) base on the grid b, b·step, b·step², …"""
    lo = 1.0 + 1e-9
    while not satisfies_base_bound(b, L, dim):
        lo, b = b, b * step
        if b > max_base:
            raise ValueError(f"{fn}: no base up to max_base={max_base:g} satisfies the bound "
                             f"for context_length={L}, dim={dim}")
    return lo, b


def _first_passing(b: float, step: float, L: int, dim: int, max_base: float, fn: str) -> float:
    return _bracket(b, step, L, dim, max_base, fn)[1]
