"""Figures about numerical precision: how far low-precision RoPE angles drift from the exact ones.

Pure: numbers in, a matplotlib ``Figure`` out. Chapter: ``ch-rope-d-dims``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from ropebook._validate import _check_positive_number
from ropebook.plotting._checks import _array, _check_size, _mapping
from ropebook.plotting._style import COLORS, new_figure

__all__ = ["angle_errors"]


def angle_errors(positions, errors: Mapping[str, object], *, floor: float = 1e-9,
                 width: float = 6.4, height: float = 3.6) -> Figure:
    """The largest error seen up to each position, one curve per label, on a log y-axis.

    Args:
        positions: the positions m, shape ``(N,)``.
        errors: label → absolute errors at those positions, each shape ``(N,)``
            (for example |cos(m·θ) computed in bf16 − cos(m·θ) exact|).
        floor: errors below this are drawn at it (log axes cannot show zero).

    Returns: a Figure with one axis; curve j is the running maximum of ``errors[label_j]``.

    >>> fig = angle_errors(np.arange(4), {"bf16": np.array([0.0, 0.1, 0.05, 1.0])})
    >>> fig.axes[0].lines[0].get_ydata().tolist()
    [1e-09, 0.1, 0.1, 1.0]
    """
    fn = "angle_errors"
    positions = _array(fn, "positions", positions, ndim=None, nonempty=False)
    if positions.ndim != 1 or positions.size == 0:
        raise ValueError(f"{fn}: positions must be a non-empty 1-D array, got shape {positions.shape}")
    if not errors:
        raise ValueError(f"{fn}: errors must map at least one label to an array, got {errors!r}")
    _mapping(fn, "errors", errors)
    _check_positive_number(fn, floor, "floor")
    _check_size(fn, width, height)
    checked = {}
    for label, err in errors.items():
        err = checked[label] = np.abs(_array(fn, f"errors[{label!r}]", err, ndim=None, nonempty=False))
        if err.shape != positions.shape:
            raise ValueError(f"{fn}: errors[{label!r}] must have the shape of positions {positions.shape}, got {err.shape}")
    fig, ax = new_figure(width=width, height=height)
    for j, (label, err) in enumerate(checked.items()):
        running = np.maximum(np.maximum.accumulate(err), floor)  # (N,) largest error up to position m
        ax.plot(positions, running, color=COLORS[j % len(COLORS)], lw=1.6, label=str(label))
    ax.set_yscale("log")
    ax.set_xlabel("position $m$")
    ax.set_ylabel("largest error up to $m$")
    ax.legend(fontsize=8)
    return fig
