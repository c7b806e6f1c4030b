"""Figures of RoPE itself: one 2-D pair rotating with its position, and the wavelength of every pair.

Both are pure: numbers in, a matplotlib ``Figure`` out. The rotation and
frequency explorers in ``ropebook.widgets`` wrap them, so labels are plain text
(no mathtext): mathtext is parsed again for every new figure, which would cost a
live redraw tens of milliseconds.

Chapters: ``ch-deriving-rope``, ``ch-rope-d-dims``, ``ch-long-term-decay``.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Arc
from matplotlib.ticker import FuncFormatter, NullLocator

from ropebook._validate import _check_positive_number
from ropebook.plotting._checks import _array, _check_size, _real_number
from ropebook.plotting._style import COLORS, new_figure

__all__ = ["rotation_2d", "wavelengths"]


def _vector2(fn: str, name: str, v) -> np.ndarray:
    try:
        arr = _array(fn, name, v, ndim=None, nonempty=False, finite=False)
    except ValueError:  # a str, None, complex values: the one message below
        arr = None
    if arr is None or arr.shape != (2,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{fn}: {name} must be 2 finite numbers, got {name}={v!r}")
    return arr


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def rotation_2d(q, k, m: float, n: float, *, theta: float = 0.5, width: float = 4.8, height: float = 4.8) -> Figure:
    """A 2-D query at position m and key at position n, each rotated by its position times θ.

    Draws q and k faintly, R(mθ)q and R(nθ)k as arrows from the origin, the unit
    circle, and an arc marking the angle from R(nθ)k to R(mθ)q. The title gives
    m, n, m − n and the score ⟨R(mθ)q, R(nθ)k⟩, which depends on m − n only.

    Args:
        q, k: 2-vectors (any length; the unit circle is drawn for scale).
        m, n: positions of the query and the key.
        theta: the frequency θ, radians per position.

    Returns:
        A Figure with one square axis.

    >>> fig = rotation_2d([1.0, 0.0], [0.0, 1.0], 3, 1, theta=0.5)
    >>> "m − n = 2" in fig.axes[0].get_title()
    True
    """
    fn = "rotation_2d"
    q, k = _vector2(fn, "q", q), _vector2(fn, "k", k)
    m, n, theta = (_real_number(fn, name, val) for name, val in (("m", m), ("n", n), ("theta", theta)))
    _check_size(fn, width, height)
    qm, kn = _rotate(q, m * theta), _rotate(k, n * theta)
    score = float(qm @ kn)

    fig, ax = new_figure(width=width, height=height)
    r = max(1.0, float(np.linalg.norm(q)), float(np.linalg.norm(k)))
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="0.6", lw=0.8, ls="--", label="unit circle")
    for vec, colour, alpha, label in (
        (q, COLORS[0], 0.3, "q"),
        (k, COLORS[1], 0.3, "k"),
        (qm, COLORS[0], 1.0, "R(mθ) q"),
        (kn, COLORS[1], 1.0, "R(nθ) k"),
    ):
        ax.annotate("", xy=vec, xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=colour, alpha=alpha, lw=2.0 if alpha == 1 else 1.2))
        ax.plot([], [], color=colour, alpha=alpha, lw=2, label=label)  # legend handle for the arrow

    # Arc from the key's direction to the query's, counter-clockwise by the signed angle between them.
    a_k = math.degrees(math.atan2(kn[1], kn[0]))
    gap = (math.degrees(math.atan2(qm[1], qm[0])) - a_k + 180.0) % 360.0 - 180.0  # in (-180, 180]
    start, end = (a_k, a_k + gap) if gap >= 0 else (a_k + gap, a_k)
    ax.add_patch(Arc((0, 0), 0.5 * r, 0.5 * r, theta1=start, theta2=end, color=COLORS[2], lw=1.5))
    mid = math.radians(a_k + gap / 2)
    ax.text(0.4 * r * math.cos(mid), 0.4 * r * math.sin(mid), f"{gap:.0f}°", color=COLORS[2],
            ha="center", va="center", fontsize=9)

    lim = 1.15 * r
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    ax.set_title(f"m = {m:g}, n = {n:g}, m − n = {m - n:g}\nscore (R(mθ) q)·(R(nθ) k) = {score:+.3f}", fontsize=10)
    return fig


def _power_of_ten(value: float, _pos=None) -> str:
    """Tick label '1e3' for 1000: plain text, since a mathtext label is re-parsed for every new figure."""
    exponent = round(math.log10(value)) if value > 0 else 0
    return f"1e{exponent}" if math.isclose(value, 10.0**exponent) else ""


def wavelengths(*, dims=(64, 128), bases=(1e4, 5e5), context_length: float | None = None,
                width: float = 6.4, height: float = 3.6) -> Figure:
    """The wavelength λ_i = 2π/θ_i of every pair i, one curve per (base, dim), on a log y-axis.

    Pairs whose wavelength exceeds a context length L (the dotted line, if given)
    never complete one turn inside it.

    Args:
        dims: head dimensions d (even).
        bases: bases b.
        context_length: draw a horizontal line at this many positions.

    >>> fig = wavelengths(dims=(8,), bases=(10_000.0,), context_length=4096)
    >>> len(fig.axes[0].lines)  # one curve and the context line
    2
    """
    fn = "wavelengths"
    dims, bases = tuple(np.atleast_1d(dims).tolist()), tuple(np.atleast_1d(bases).tolist())
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0 or d % 2:
            raise ValueError(f"{fn}: every entry of dims must be a positive even integer, got dims={dims!r}")
    for b in bases:
        if not (isinstance(b, (int, float)) and math.isfinite(b) and b > 1):
            raise ValueError(f"{fn}: every entry of bases must be a finite number > 1, got bases={bases!r}")
    if not dims or not bases:
        raise ValueError(f"{fn}: dims and bases must be non-empty, got dims={dims!r}, bases={bases!r}")
    _check_positive_number(fn, context_length, "context_length", optional=True)
    _check_size(fn, width, height)

    fig, ax = new_figure(width=width, height=height)
    markers = "os^Dv<>"
    for j, (b, d) in enumerate(product(bases, dims)):
        i = np.arange(d // 2)
        lam = 2 * np.pi * float(b) ** (2 * i / d)  # λ_i = 2π / θ_i = 2π b^{2i/d}
        ax.plot(i, lam, color=COLORS[j % len(COLORS)], marker=markers[j % len(markers)], ms=2.5, lw=1.2,
                label=f"b = {b:g}, d = {d}")
    if context_length is not None:
        ax.axhline(context_length, color="0.2", ls=":", lw=1.2, label=f"L = {context_length:g}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("pair index i")
    ax.set_ylabel("wavelength λ = 2π/θ (positions)")
    ax.legend(fontsize=8, loc="upper left")  # the curves rise to the right; "best" costs a search per draw
    return fig
