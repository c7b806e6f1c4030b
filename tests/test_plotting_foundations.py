"""Part I figures: white faces, the claims in their titles, and clear errors on bad input."""

from __future__ import annotations

import cmath

import numpy as np
import pytest
import torch

from ropebook import plotting
from ropebook.positions import alibi_bias, shaw_relative_index, sinusoidal_encoding, t5_relative_bucket

R = torch.arange(-150, 151)
FIGURES = [
    ("sinusoidal", lambda: plotting.sinusoidal_figure(sinusoidal_encoding(160, 16))),
    ("shaw", lambda: plotting.shaw_figure(shaw_relative_index(8, 2), 2)),
    ("t5", lambda: plotting.t5_bucket_figure(R, t5_relative_bucket(R), t5_relative_bucket(R, bidirectional=False), max_distance=128)),
    ("alibi", lambda: plotting.alibi_figure(alibi_bias(12, 4), head=1)),
    ("complex", lambda: plotting.complex_product(cmath.rect(1.2, 0.5), cmath.rect(0.9, 1.1))),
]


@pytest.mark.parametrize("name,make", FIGURES, ids=[f[0] for f in FIGURES])
def test_figures_have_white_faces(name, make):
    fig = make()
    assert fig.get_facecolor() == (1.0, 1.0, 1.0, 1.0)
    assert all(ax.get_facecolor() == (1.0, 1.0, 1.0, 1.0) for ax in fig.axes if ax.get_label() != "<colorbar>")


def test_sinusoidal_figure_curves_coincide():
    """The right panel's curves (one per start m) are the same curve: the dot product depends on the shift δ only."""
    fig = plotting.sinusoidal_figure(sinusoidal_encoding(160, 16), starts=(0, 40, 90))
    ys = [line.get_ydata() for line in fig.axes[1].get_lines()]
    assert len(ys) == 3
    for y in ys[1:]:
        np.testing.assert_allclose(y, ys[0], rtol=0, atol=1e-4)  # float32 table: a few ulps of a sum of 8 terms


def test_complex_product_title_adds_angles():
    z, w = cmath.rect(1.0, 0.3), cmath.rect(2.0, 0.4)
    assert "0.70 = 0.30 + 0.40" in plotting.complex_product(z, w).axes[0].get_title()


BAD = [
    (lambda: plotting.sinusoidal_figure(sinusoidal_encoding(50, 8)), "need max(starts) + max_offset < T=50"),
    (lambda: plotting.alibi_figure(alibi_bias(4, 2), head=2), "head must be in [0, 2), got head=2"),
    (lambda: plotting.complex_product(0, 1j), "z must be a finite nonzero complex number, got z=0j"),
]


@pytest.mark.parametrize("call,message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_input(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


def test_figures_draw_every_series_past_the_eighth_colour():
    """zip(..., COLORS) stopped at the 8 colours: a 10-encoding bar chart drew 8 bars under 10 labels."""
    rows = {f"variant {j}": np.linspace(0, 1, 5) + j for j in range(10)}
    fig = plotting.plot_weight_rows(range(5), rows)
    assert len([line for line in fig.axes[0].lines if line.get_label().startswith("variant")]) == 10
    fig = plotting.offset_task_figure({f"run {j}": [2.0, 1.0] for j in range(10)},
                                         {f"m {j}": ([0, 1], [0.5, 0.5]) for j in range(10)})
    assert len(fig.axes[0].lines) == 10 and len(fig.axes[1].patches) == 20
    fig = plotting.pair_cosines(dim=32, pairs=tuple(range(10)), max_distance=50)
    assert len(fig.axes) == 10 and all(ax.lines for ax in fig.axes), "a pair's panel was left empty"


def test_position_figures_refuse_what_they_would_draw_wrong():
    """A negative start wrapped to the table's end under the label m = −10; an index built for κ = 3 drawn with
    κ = 2 was clipped at 4 under the title κ = 2."""
    pe = sinusoidal_encoding(160, 32)
    with pytest.raises(ValueError, match=r"sinusoidal_figure: starts must be one or more positions ≥ 0 .* got starts=\(-10, 0\)"):
        plotting.sinusoidal_figure(pe, starts=(-10, 0))
    with pytest.raises(ValueError, match=r"shaw_figure: index must be .* values in \[0, 2κ\] = \[0, 4\] .* values 0 … 6"):
        plotting.shaw_figure(shaw_relative_index(8, 3), 2)
    assert plotting.shaw_figure(shaw_relative_index(8, 3), 3).axes[0].get_title().endswith("κ = 3")
