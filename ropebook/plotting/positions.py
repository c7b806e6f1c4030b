"""Figures for the encodings before RoPE: sinusoidal table, Shaw's clipped offsets, T5 buckets, ALiBi biases.

Pure functions: arrays in (from ``ropebook.positions``), a Figure out.

Chapter: ``ch-why-position``.
"""

from __future__ import annotations

from itertools import cycle  # more series than colours: the colours repeat, no series is dropped

import numpy as np
from matplotlib.figure import Figure

from ropebook._validate import _check_positive_int, _is_int
from ropebook.plotting._checks import _array, _check_int
from ropebook.plotting._style import COLORS, new_figure

__all__ = ["sinusoidal_figure", "shaw_figure", "t5_bucket_figure", "alibi_figure"]


def sinusoidal_figure(pe, *, starts=(0, 40, 90), max_offset: int = 60) -> Figure:
    """Left: the encoding table PE[m, j]. Right: PE(m)·PE(m + δ) against the shift δ, one curve per start m.

    The curves coincide: the dot product of two sinusoidal encodings depends on the shift δ only.

    >>> import torch
    >>> from ropebook.positions import sinusoidal_encoding
    >>> fig = sinusoidal_figure(sinusoidal_encoding(160, 32))
    >>> len(fig.axes)
    3
    """
    fn = "sinusoidal_figure"
    pe = _array(fn, "pe", pe, ndim=None, nonempty=False)  # (T, D)
    if pe.ndim != 2:
        raise ValueError(f"sinusoidal_figure: pe must be a (T, D) table, got pe.shape={pe.shape}")
    T, D = pe.shape
    given = starts
    starts = tuple(starts) if isinstance(starts, (tuple, list, range, np.ndarray)) else None
    if starts is None or not all(_is_int(m) for m in starts):  # a float would fail as an index, deep in numpy
        raise ValueError(f"{fn}: starts must be a sequence of integer positions, got starts={given!r}")
    starts = tuple(int(m) for m in starts)
    if not _is_int(max_offset):
        raise ValueError(f"{fn}: max_offset must be an integer ≥ 0, got max_offset={max_offset!r}")
    if not starts or min(starts) < 0 or max_offset < 0:  # a negative index would wrap round to the table's end
        raise ValueError(f"sinusoidal_figure: starts must be one or more positions ≥ 0 and max_offset ≥ 0, "
                         f"got starts={starts}, max_offset={max_offset}")
    if max(starts) + max_offset >= T:
        raise ValueError(f"sinusoidal_figure: need max(starts) + max_offset < T={T}, got {max(starts)} + {max_offset}")
    fig, (ax_table, ax_dot) = new_figure(1, 2, width=9.0, height=3.6)
    image = ax_table.imshow(pe.T, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax_table.set(xlabel="position m", ylabel="feature j", title="PE[m, j]: sin (even j), cos (odd j)")
    ax_table.grid(False)
    fig.colorbar(image, ax=ax_table, fraction=0.05)
    offsets = np.arange(max_offset + 1)
    for colour, m in zip(cycle(COLORS), starts):
        dots = pe[m + offsets] @ pe[m]  # (K,)
        ax_dot.plot(offsets, dots, color=colour, lw=2.5 if m == starts[0] else 1.2,
                    ls="-" if m == starts[0] else "--", label=f"m = {m}")
    ax_dot.set(xlabel="shift δ", ylabel="PE(m)·PE(m + δ)", title="depends on δ only")
    ax_dot.legend(frameon=False)
    return fig


def shaw_figure(index, max_relative_position: int) -> Figure:
    """Which learned vector a_{clip(n−m)} Shaw et al. add for query m and key n, as a heat map.

    >>> from ropebook.positions import shaw_relative_index
    >>> shaw_figure(shaw_relative_index(8, 2), 2).axes[0].get_title()
    'index clip(n − m, −κ, κ) + κ, κ = 2'
    """
    fn = "shaw_figure"
    kappa = _check_positive_int(fn, max_relative_position, "max_relative_position")  # κ, the clipping distance, as in shaw_relative_index
    index = _array(fn, "index", index, ndim=None, nonempty=False, finite=False)  # (T, T); NaN: refused below
    if index.size == 0:
        raise ValueError(f"{fn}: index must not be empty, got index.shape={index.shape}")
    if np.isfinite(index).all() and (index != np.round(index)).any():
        bad = index[index != np.round(index)].flat[0]
        raise ValueError(f"{fn}: index must hold integers (indices into the 2κ + 1 learned vectors), got {bad:g} "
                         f"in index of shape {index.shape}")
    if index.ndim != 2 or index.shape[0] != index.shape[1] or (index.size and not 0 <= index.min() <= index.max() <= 2 * kappa):
        raise ValueError(f"shaw_figure: index must be a (T, T) table of clip(n − m, −κ, κ) + κ with values in "
                         f"[0, 2κ] = [0, {2 * kappa}] for max_relative_position={kappa}, got index.shape={index.shape}"
                         + (f", values {index.min():g} … {index.max():g}" if index.size else ""))
    fig, ax = new_figure(width=4.6, height=3.9)
    image = ax.imshow(index, cmap="viridis", vmin=0, vmax=2 * kappa, interpolation="nearest")
    ax.set(xlabel="key position n", ylabel="query position m", title=f"index clip(n − m, −κ, κ) + κ, κ = {kappa}")
    ax.grid(False)
    bar = fig.colorbar(image, ax=ax, ticks=range(0, 2 * kappa + 1))
    bar.set_ticklabels([f"a[{j - kappa:+d}]" if j != kappa else "a[0]" for j in range(2 * kappa + 1)])
    return fig


def t5_bucket_figure(relative, buckets_bidirectional, buckets_causal, *, max_distance: int) -> Figure:
    """T5's bucket against the offset n − m: a staircase, exact near 0, logarithmic, flat past max_distance.

    >>> import torch
    >>> from ropebook.positions import t5_relative_bucket
    >>> r = torch.arange(-200, 201)
    >>> fig = t5_bucket_figure(r, t5_relative_bucket(r), t5_relative_bucket(r, bidirectional=False), max_distance=128)
    >>> len(fig.axes)
    1
    """
    fn = "t5_bucket_figure"
    relative = _array(fn, "relative", relative)
    bi = _array(fn, "buckets_bidirectional", buckets_bidirectional, nonempty=False)
    causal = _array(fn, "buckets_causal", buckets_causal, nonempty=False)
    for name, b in (("buckets_bidirectional", bi), ("buckets_causal", causal)):
        if b.shape != relative.shape:
            raise ValueError(f"{fn}: {name} must have one bucket per offset, len(relative)={len(relative)}, "
                             f"got {name}.shape={b.shape}")
    max_distance = _check_positive_int(fn, max_distance, "max_distance")  # as in t5_relative_bucket
    fig, ax = new_figure(width=7.0, height=3.6)
    ax.step(relative, bi, where="mid", color=COLORS[0], lw=1.8, label="bidirectional (encoder)")
    ax.step(relative, causal, where="mid", color=COLORS[1], lw=1.8, ls="--", label="causal (decoder)")
    for edge in (-max_distance, max_distance):
        if relative.min() <= edge <= relative.max():
            ax.axvline(edge, color="0.5", lw=0.8, ls=":")
    ax.text(max_distance, 1, " max_distance", color="0.35", fontsize=8)
    ax.set(xlabel="offset n − m (key position − query position)", ylabel="bucket", title="T5 relative position buckets")
    ax.legend(frameon=False, loc="lower left")
    return fig


def alibi_figure(bias, *, head: int = 0, max_distance: int | None = None) -> Figure:
    """Left: one head's bias matrix (−inf above the diagonal left blank). Right: bias against distance, every head.

    >>> from ropebook.positions import alibi_bias
    >>> len(alibi_figure(alibi_bias(16, 8)).axes)
    3
    """
    fn = "alibi_figure"
    bias = _array(fn, "bias", bias, ndim=None, nonempty=False, finite=False)  # (H, T, T); −inf: masked
    if bias.ndim != 3 or bias.shape[1] != bias.shape[2] or bias.size == 0:
        raise ValueError(f"{fn}: bias must be a non-empty (H, T, T) array, one (T, T) matrix per head, "
                         f"got bias.shape={bias.shape}")
    if np.isnan(bias).any() or np.isposinf(bias).any():
        bad = bias[np.isnan(bias) | np.isposinf(bias)].flat[0]
        raise ValueError(f"{fn}: bias must be finite or −inf (a masked entry), got {bad} in bias of shape {bias.shape}")
    H, T, _ = bias.shape
    if not _is_int(head):
        raise ValueError(f"{fn}: head must be an integer in [0, {H}), got head={head!r}")
    if max_distance is not None:
        max_distance = _check_int(fn, "max_distance", max_distance)
    if not 0 <= head < H:
        raise ValueError(f"alibi_figure: head must be in [0, {H}), got head={head}")
    fig, (ax_matrix, ax_lines) = new_figure(1, 2, width=9.0, height=3.8)
    shown = np.ma.masked_invalid(np.where(np.isneginf(bias[head]), np.nan, bias[head]))
    image = ax_matrix.imshow(shown, cmap="magma", interpolation="nearest")
    ax_matrix.set(xlabel="key position n", ylabel="query position m",
                  title=f"head {head}: bias −slope·(m − n); blank: masked")
    ax_matrix.grid(False)
    fig.colorbar(image, ax=ax_matrix, fraction=0.05)
    distance = np.arange(T if max_distance is None else min(T, max_distance + 1))
    last_row = bias[:, T - 1, T - 1 - distance]  # (H, K): query at the end, keys further and further back
    for h in range(H):
        ax_lines.plot(distance, last_row[h], color=COLORS[h % len(COLORS)], lw=1.5, label=f"head {h}" if H <= 8 else None)
    ax_lines.set(xlabel="distance m − n", ylabel="bias added to the score", title=f"{H} heads, one slope each")
    if H <= 8:
        ax_lines.legend(frameon=False, fontsize=7, ncol=2)
    return fig
