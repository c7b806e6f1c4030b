"""The house style every figure shares: white background, readable sizes, no frame clutter."""

from __future__ import annotations

import matplotlib.pyplot as plt  # never switches the backend: a reader's notebook keeps its own
from matplotlib.figure import Figure

__all__ = ["new_figure", "COLORS"]


def _show_figures_in_notebooks() -> None:
    """Let IPython display a returned Figure as PNG whatever the backend.

    ``MPLBACKEND=Agg`` (set by ``make book`` and the tests) keeps IPython's inline
    backend from registering its PNG formatter; without this a
    page that ends a cell with a Figure shows ``<Figure size ...>`` instead of it.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:  # plain Python: nothing to display
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"}, bbox_inches="tight")


_show_figures_in_notebooks()

# One palette for the whole book (colour-blind safe, Okabe–Ito order).
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 3.6, **kwargs) -> tuple[Figure, object]:
    """Return ``(fig, axes)`` with the book's style: opaque white face, constrained layout.

    >>> fig, ax = new_figure()
    >>> fig.get_facecolor()
    (1.0, 1.0, 1.0, 1.0)
    """
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", facecolor="white", **kwargs)
    for ax in fig.axes:
        ax.set_facecolor("white")
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(True, alpha=0.25)
    plt.close(fig)  # the caller decides when and where to show it
    return fig, axes
