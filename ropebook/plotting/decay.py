"""Figures for long-term decay: the RoFormer bound, random-score statistics, per-pair cosines, the base bound.

Pure functions: numbers in, a matplotlib ``Figure`` out. The decay explorer in
``ropebook.widgets`` wraps :func:`decay_curves`.

Chapter: ``ch-long-term-decay``.
"""

from __future__ import annotations

from itertools import cycle  # more series than colours: the colours repeat, no series is dropped

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from ropebook._validate import _check_bool, _check_positive_int
from ropebook.decay import _check_base, _check_dim, cos_sum, decay_bound
from ropebook.plotting._checks import _array, _check_size, _real_number
from ropebook.plotting._style import COLORS, new_figure
from ropebook.plotting.rope import _power_of_ten

__all__ = ["decay_curves", "random_score_band", "pair_cosines", "min_base_curve"]


def _distance_grid(fn: str, max_distance: float, n_points: int, *, log: bool = False) -> np.ndarray:
    """Integer distances in [0, max_distance] (from 1 with ``log``), at most about ``n_points`` of them."""
    if isinstance(max_distance, bool) or not (isinstance(max_distance, (int, float, np.integer, np.floating))
                                              and np.isfinite(max_distance) and max_distance > 0):
        raise ValueError(f"{fn}: max_distance must be a positive finite number, got max_distance={max_distance!r}")
    _check_positive_int(fn, n_points, "n_points")
    if n_points < 2:
        raise ValueError(f"{fn}: n_points must be at least 2 (a curve needs two distances), got n_points={n_points!r}")
    if max_distance < (2 if log else 1):  # the grid would hold one distance: an empty, singular x-axis
        raise ValueError(f"{fn}: max_distance must be at least {2 if log else 1}"
                         f"{' on a log axis (which starts at distance 1)' if log else ''}, got max_distance={max_distance!r}")
    if max_distance + 1 <= n_points:
        r = np.arange(int(max_distance) + 1, dtype=np.float64)  # every integer distance
        return r[r > 0] if log else r
    if log:  # geometric sample from 1, so short distances are not skipped
        return np.unique(np.round(np.geomspace(1, max_distance, n_points)))
    return np.unique(np.round(np.linspace(0, max_distance, n_points)))  # an even sample of integers


def decay_curves(*, dim: int = 128, base: float = 10000.0, max_distance: float = 256, normalise: bool = False,
                 show_ones: bool = False, n_points: int = 1024, log_x: bool = False,
                 width: float = 6.4, height: float = 3.6) -> Figure:
    """RoFormer's decay factor (1/(d/2)) Σ_j |S_j| against relative distance, optionally with the all-ones score.

    Args:
        dim, base: head dimension d and base b.
        max_distance: the x-axis runs from 0 to this distance.
        normalise: divide each curve by its value at distance 0 (so both start at 1).
        show_ones: also draw the score for q = k = all-ones, 2 Σ_i cos(r θ_i).
        n_points: at most this many distances are evaluated (integers, evenly spread).
        log_x: logarithmic distance axis (distance 0 is then left out).

    >>> fig = decay_curves(dim=128, base=10_000.0, max_distance=256)
    >>> fig.axes[0].get_xlabel()
    'relative distance m − n'
    """
    fn = "decay_curves"
    dim, base = _check_dim(fn, dim), _check_base(fn, base)  # here, so that the error names decay_curves
    for name, flag in (("normalise", normalise), ("show_ones", show_ones), ("log_x", log_x)):
        _check_bool(fn, flag, name)
    _check_size(fn, width, height)
    r = _distance_grid(fn, max_distance, n_points, log=log_x)
    bound = decay_bound(r, dim, base)  # (R,)
    fig, ax = new_figure(width=width, height=height)
    scale_b = (dim / 2 + 1) / 2 if normalise else 1.0  # the bound's value at r = 0
    ax.plot(r, bound / scale_b, color=COLORS[0], lw=1.4, label="RoFormer bound")
    if show_ones:
        ones = 2 * cos_sum(r, dim, base)  # score of q = k = 1 at distance r
        scale_o = float(dim) if normalise else 1.0
        ax.plot(r, ones / scale_o, color=COLORS[1], lw=1.0, alpha=0.85, label="score, q = k = 1")
        ax.axhline(0, color="0.3", lw=0.6)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_power_of_ten))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(r[0], r[-1])
    ax.set_xlabel("relative distance m − n")  # plain text: the decay explorer redraws this live
    ax.set_ylabel("value / value at 0" if normalise else "relative upper bound")
    ax.set_title(f"b = {base:g}, d = {dim}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def random_score_band(distance, mean, std, sem, *, dim: int | None = None,
                      width: float = 6.4, height: float = 3.6) -> Figure:
    """Mean score over random q, k with ±2 standard errors (error bars) and ±1 standard deviation (band).

    >>> fig = random_score_band([0, 1], [0.1, -0.2], [8.0, 8.0], [0.2, 0.2], dim=64)
    >>> len(fig.axes)
    1
    """
    fn = "random_score_band"
    r, mean, std, sem = (_array(fn, name, a, ndim=None, nonnegative=name in ("std", "sem"))
                         for name, a in (("distance", distance), ("mean", mean), ("std", std), ("sem", sem)))
    if dim is not None:
        dim = _check_positive_int(fn, dim, "dim")
    _check_size(fn, width, height)
    if not (r.shape == mean.shape == std.shape == sem.shape and r.ndim == 1):
        raise ValueError(f"random_score_band: distance, mean, std, sem must be 1-D of one length, got shapes "
                         f"{r.shape}, {mean.shape}, {std.shape}, {sem.shape}")
    fig, ax = new_figure(width=width, height=height)
    ax.fill_between(r, mean - std, mean + std, color=COLORS[5], alpha=0.25, lw=0, label="±1 standard deviation")
    ax.errorbar(r, mean, yerr=2 * sem, fmt="o", ms=3, color=COLORS[0], capsize=2, lw=1, label="mean ± 2 standard errors")
    ax.axhline(0, color="0.2", lw=0.8)
    if dim is not None:
        for sign in (1, -1):
            ax.axhline(sign * np.sqrt(dim), color=COLORS[1], lw=0.8, ls="--",
                       label=r"$\pm\sqrt{d}$" if sign == 1 else None)
    ax.set_xlabel("relative distance $m - n$")
    ax.set_ylabel(r"score $(R_m\mathbf{q})^\top(R_n\mathbf{k})$")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def pair_cosines(*, dim: int = 128, base: float = 10000.0, pairs=(0, 8, 32, 63), max_distance: int = 4096,
                 n_points: int = 2048, width: float = 6.4, height: float = 4.2) -> Figure:
    """cos(r θ_i) against distance r for a few pairs i: fast pairs spin, slow pairs barely move.

    >>> fig = pair_cosines(dim=16, pairs=(0, 7), max_distance=100)
    >>> len(fig.axes)
    2
    """
    dim, base = _check_dim("pair_cosines", dim), _check_base("pair_cosines", base)
    _check_size("pair_cosines", width, height)
    given = pairs
    pairs = tuple(pairs) if isinstance(pairs, (tuple, list, range, np.ndarray)) else ()
    if not pairs or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < dim // 2
                            for i in pairs):
        raise ValueError(f"pair_cosines: pairs must be a non-empty sequence of integer indices in [0, {dim // 2}), "
                         f"got pairs={given!r}")
    pairs = tuple(int(i) for i in pairs)
    r = _distance_grid("pair_cosines", max_distance, n_points)
    theta = base ** (-2.0 * np.arange(dim // 2) / dim)  # (d/2,)
    fig, axes = new_figure(len(pairs), 1, width=width, height=height, sharex=True)
    axes = np.atleast_1d(axes)
    for ax, i, colour in zip(axes, pairs, cycle(COLORS)):
        ax.plot(r, np.cos(r * theta[i]), color=colour, lw=0.8)
        ax.set_ylim(-1.15, 1.15)
        ax.set_yticks([-1, 0, 1])
        ax.text(1.0, 1.0, f"pair i = {i}, λ = {2 * np.pi / theta[i]:.3g}", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8)
    axes[-1].set_xlabel("relative distance $m - n$")
    axes[len(axes) // 2].set_ylabel(r"$\cos(r\,\theta_i)$")
    return fig


def min_base_curve(context_lengths, bases, *, fit: tuple[float, float] | None = None, label: str = "min_base (ours)",
                   width: float = 6.4, height: float = 3.6) -> Figure:
    """The smallest base against context length on log-log axes, with an optional power-law fit c·L^p.

    >>> fig = min_base_curve([1024, 2048], [4.3e3, 1.4e4], fit=(0.0424, 1.628))
    >>> len(fig.axes[0].lines)
    2
    """
    fn = "min_base_curve"
    L = _array(fn, "context_lengths", context_lengths, ndim=None, positive=True)  # log axes
    b = _array(fn, "bases", bases, ndim=None, positive=True)
    if L.shape != b.shape or L.ndim != 1:
        raise ValueError(f"min_base_curve: context_lengths and bases must be positive 1-D arrays of one length, "
                         f"got shapes {L.shape} and {b.shape}")
    if fit is not None:
        if isinstance(fit, (str, bytes)) or not hasattr(fit, "__len__") or len(fit) != 2:
            raise ValueError(f"{fn}: fit must be None or a pair (c, p) of the power law c·L^p, got fit={fit!r}")
        fit = (_real_number(fn, "fit[0]", fit[0], positive=True), _real_number(fn, "fit[1]", fit[1]))  # (c, p)
    _check_size(fn, width, height)
    fig, ax = new_figure(width=width, height=height)
    ax.plot(L, b, "^", color=COLORS[0], ms=6, label=label)
    if fit is not None:
        c, p = fit
        grid = np.geomspace(L.min(), L.max(), 50)
        ax.plot(grid, c * grid**p, color=COLORS[1], lw=1.2, label=f"$y = {c:g}\\,L^{{{p:g}}}$ (Men et al., Fig. 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("context length $L$")
    ax.set_ylabel("smallest base $b$")
    ax.legend(fontsize=8)
    return fig
