"""Figures for complex numbers as rotations: a product adds angles and multiplies lengths.

Chapter: ``ch-complex-rotations``.
"""

from __future__ import annotations

import cmath
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Arc

from ropebook.plotting._style import COLORS, new_figure

__all__ = ["complex_product"]


def _angle_arc(ax, start: float, end: float, radius: float, colour: str, label: str) -> None:
    """Mark the angle from ``start`` to ``end`` (radians, counter-clockwise) with an arc and a label."""
    lo, hi = sorted((math.degrees(start), math.degrees(end)))
    ax.add_patch(Arc((0, 0), 2 * radius, 2 * radius, theta1=lo, theta2=hi, color=colour, lw=1.5))
    mid = (start + end) / 2
    ax.text(1.18 * radius * math.cos(mid), 1.18 * radius * math.sin(mid), label, color=colour,
            ha="center", va="center", fontsize=10)


def complex_product(z: complex, w: complex) -> Figure:
    """z, w and z·w as arrows in the complex plane, with their angles marked: arg(zw) = arg z + arg w.

    Args:
        z, w: nonzero complex numbers; draw them with positive angles below 180° for clear arcs.

    >>> fig = complex_product(cmath.rect(1.2, 0.5), cmath.rect(0.9, 1.1))
    >>> "arg(zw)" in fig.axes[0].get_title()
    True
    """
    given = {"z": z, "w": w}
    for name, value in given.items():  # complex("1+2j") parses a str, complex(True) is 1: neither is meant here
        if isinstance(value, (str, bytes, bool, np.bool_)) or not hasattr(value, "__complex__") and not hasattr(value, "__float__"):
            raise ValueError(f"complex_product: {name} must be a complex number (or a real one), "
                             f"got {name}={value!r} (a {type(value).__name__})")
    try:
        z, w = complex(z), complex(w)
    except (TypeError, ValueError) as err:  # a tensor of several elements, say
        raise ValueError(f"complex_product: z and w must be complex numbers, got z={z!r}, w={w!r}") from err
    for name, value in (("z", z), ("w", w)):
        if value == 0 or not (math.isfinite(value.real) and math.isfinite(value.imag)):
            raise ValueError(f"complex_product: {name} must be a finite nonzero complex number, got {name}={value!r}")
    zw = z * w
    fig, ax = new_figure(width=4.8, height=4.6)
    r = max(abs(z), abs(w), abs(zw), 1.0)
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="0.6", lw=0.8, ls="--", label="|z| = 1")
    for value, colour, label in ((z, COLORS[0], "z"), (w, COLORS[1], "w"), (zw, COLORS[2], "z·w")):
        ax.annotate("", xy=(value.real, value.imag), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=2.0))
        ax.plot([], [], color=colour, lw=2, label=f"{label} = {abs(value):.2f}·e^(i·{cmath.phase(value):.2f})")
    _angle_arc(ax, 0.0, cmath.phase(z), 0.25 * r, COLORS[0], "α")
    _angle_arc(ax, 0.0, cmath.phase(w), 0.42 * r, COLORS[1], "β")
    _angle_arc(ax, 0.0, cmath.phase(zw), 0.6 * r, COLORS[2], "α+β")
    lim = 1.15 * r
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="real part", ylabel="imaginary part")
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.6, zorder=0)
    ax.axvline(0, color="0.8", lw=0.6, zorder=0)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    ax.set_title(f"arg(zw) = arg z + arg w: {cmath.phase(zw):.2f} = {cmath.phase(z):.2f} + {cmath.phase(w):.2f}\n"
                 f"|zw| = |z|·|w|: {abs(zw):.2f} = {abs(z):.2f} × {abs(w):.2f}", fontsize=10)
    return fig
