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
