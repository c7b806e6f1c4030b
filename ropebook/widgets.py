"""Explorers: sliders over the book's figures that work live in Jupyter and on the static site.

Each explorer wraps a pure figure function from ``ropebook.plotting``. It has two modes:

- ``live=False`` (what the book's pages use): every figure on a small grid of slider
  values is rendered once, as a small palette PNG, into an ``ipywidgets.Stack``
  (nested, one level per slider). Each slider is a ``SelectionSlider`` over the grid,
  ``jslink``-ed to the ``selected_index`` of the stacks at its level, so the browser
  switches frames with no kernel: this is what works on the published site.
  Every frame carries a caption ``name = value`` for each slider, which is what
  the slider's readout shows.
- ``live=True`` (in a running notebook): continuous sliders, and every change
  re-renders the figure (``observe`` → redraw) for any value, not just the grid.

Chapter: ``ch-long-term-decay``.
"""

from __future__ import annotations

import io
from typing import Callable, Sequence

import ipywidgets as W
import numpy as np
from matplotlib.figure import Figure
from PIL import Image as PILImage

from ropebook.plotting.decay import decay_curves
from ropebook.plotting.gpu import rope_time_model
from ropebook.plotting.rope import rotation_2d, wavelengths

__all__ = ["figure_png", "frame_explorer", "live_explorer", "decay_explorer", "rotation_explorer", "frequency_explorer",
           "gpu_time_explorer"]

Axis = tuple[str, Sequence[tuple[str, object]]]  # (slider name, [(readout label, value), ...])


def figure_png(fig: Figure, *, dpi: int = 80, colors: int = 48, margins: dict | None = None) -> bytes:
    """Render ``fig`` to a small PNG: fixed margins (faster than constrained layout) and a colour palette.

    >>> from ropebook.plotting import new_figure
    >>> fig, ax = new_figure(width=2, height=1)
    >>> figure_png(fig, dpi=50)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    if margins is not None:
        fig.set_layout_engine(None)  # no engine: savefig then draws once, not twice
        fig.subplots_adjust(**margins)
    buf = io.BytesIO()
    if colors is None:  # the live path: full colour, light compression (encoding is a third of a redraw)
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white", pil_kwargs={"compress_level": 1})
        return buf.getvalue()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    image = PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=colors)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _caption(names: Sequence[str], labels: Sequence[str]) -> str:
    return " · ".join(f"{n} = {lab}" for n, lab in zip(names, labels))


def frame_explorer(render: Callable[..., Figure], axes: Sequence[Axis], *, default: Sequence[int] | None = None,
                   name: str = "explorer", dpi: int = 80, margins: dict | None = None) -> W.VBox:
    """Precompute ``render(**values)`` on the grid ``axes`` and link one snapping slider per axis to nested Stacks.

    Args:
        render: a pure figure function taking one keyword argument per axis.
        axes: ``[(keyword, [(label, value), ...]), ...]``; the keyword is also the slider's description.
        default: the starting index on each axis (default: the middle).
        name: a CSS class ``ropebook-<name>`` on the returned box, for tests and styling.

    Returns:
        ``VBox([sliders, frames])`` that works without a kernel.

    >>> box = frame_explorer(lambda a: rotation_2d([1, 0], [0, 1], a, 0), [("a", [("0", 0), ("1", 1)])], dpi=30)
    >>> [type(w).__name__ for w in box.children]
    ['HBox', 'Stack']
    """
    axes = [(str(key), list(values)) for key, values in axes]
    if not axes or any(not values for _, values in axes):
        raise ValueError(f"frame_explorer: axes must be non-empty, each with at least one value, got axes={axes!r}")
    default = [len(v) // 2 for _, v in axes] if default is None else list(default)
    if len(default) != len(axes) or any(not 0 <= d < len(v) for d, (_, v) in zip(default, axes)):
        raise ValueError(f"frame_explorer: default must give one valid index per axis, got default={default!r}")
    names = [key for key, _ in axes]
    sliders = [
        W.SelectionSlider(options=[label for label, _ in values], index=d, description=key,
                          continuous_update=True, layout=W.Layout(width="300px"),
                          style={"description_width": "70px"})
        for (key, values), d in zip(axes, default)
    ]
    stacks: list[list[W.Stack]] = [[] for _ in axes]

    def build(level: int, chosen: list[int]):
        if level == len(axes):
            labels = [axes[a][1][j][0] for a, j in enumerate(chosen)]
            kwargs = {axes[a][0]: axes[a][1][j][1] for a, j in enumerate(chosen)}
            png = figure_png(render(**kwargs), dpi=dpi, margins=margins)
            return W.VBox([W.HTML(f"<span class='ropebook-caption'>{_caption(names, labels)}</span>"),
                           W.Image(value=png, format="png")])
        stack = W.Stack([build(level + 1, chosen + [j]) for j in range(len(axes[level][1]))],
                        selected_index=default[level])
        stacks[level].append(stack)
        return stack

    root = build(0, [])
    for slider, level_stacks in zip(sliders, stacks):
        for stack in level_stacks:
            W.jslink((slider, "index"), (stack, "selected_index"))
    box = W.VBox([W.HBox(sliders, layout=W.Layout(flex_flow="row wrap")), root])
    box.add_class("ropebook-explorer")
    box.add_class(f"ropebook-{name}")
    return box


def live_explorer(render: Callable[..., Figure], controls: dict[str, W.ValueWidget], *, name: str = "explorer",
                  dpi: int = 80, margins: dict | None = None, colors: int | None = None) -> W.VBox:
    """Continuous sliders; every change calls ``render(**values)`` again and shows the new figure (needs a kernel).

    The returned box has a ``redraw()`` attribute (what a slider change calls), for timing.

    >>> box = live_explorer(lambda m: rotation_2d([1, 0], [0, 1], m, 0), {"m": W.IntSlider(2, 0, 9)}, dpi=30)
    >>> box.children[0].children[0].value = 5  # the caption follows
    >>> box.children[1].children[0].value
    "<span class='ropebook-caption'>m = 5</span>"
    """
    caption, image = W.HTML(), W.Image(format="png")

    def redraw(change=None):
        values = {key: c.value for key, c in controls.items()}
        image.value = figure_png(render(**values), dpi=dpi, margins=margins, colors=colors)  # full colour: faster
        caption.value = f"<span class='ropebook-caption'>{_caption(list(values), [f'{v:g}' for v in values.values()])}</span>"

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap")), W.VBox([caption, image])])
    box.add_class("ropebook-explorer")
    box.add_class(f"ropebook-{name}")
    box.redraw = redraw
    return box


def _base_label(b: float) -> str:
    exponent = int(np.floor(np.log10(b)))
    mantissa = b / 10**exponent
    return f"{mantissa:.2g}e{exponent}"


# ----------------------------------------------------------------------------- the explorers

_WIDE = dict(left=0.12, right=0.97, bottom=0.16, top=0.9)


def decay_explorer(*, live: bool = False, bases=(1e2, 1e3, 1e4, 1e5, 1e6), dims=(16, 64, 128, 256),
                   max_distances=(256, 8192), dpi: int = 72) -> W.VBox:
    """RoFormer's decay bound and the all-ones score (both divided by their value at 0) over base, d and distance range.

    Wraps :func:`ropebook.plotting.decay_curves`.
    """
    def render(base, dim, distance):
        return decay_curves(dim=dim, base=float(base), max_distance=float(distance), normalise=True,
                            show_ones=True, n_points=512, width=5.6, height=3.0)

    if live:
        controls = {
            "base": W.FloatLogSlider(value=1e4, base=10, min=2, max=6, step=0.05, description="base"),
            "dim": W.IntSlider(value=128, min=16, max=256, step=2, description="dim"),
            "distance": W.FloatLogSlider(value=256, base=10, min=1.5, max=5, step=0.05, description="distance"),
        }
        return live_explorer(render, controls, name="decay-explorer", dpi=dpi, margins=_WIDE)
    axes = [("base", [(_base_label(b), b) for b in bases]), ("dim", [(str(d), d) for d in dims]),
            ("distance", [(f"0–{r:g}", r) for r in max_distances])]
    return frame_explorer(render, axes, name="decay-explorer", dpi=dpi, margins=_WIDE,
                          default=[list(bases).index(1e4) if 1e4 in bases else len(bases) // 2,
                                   list(dims).index(128) if 128 in dims else len(dims) // 2, 0])


def rotation_explorer(*, live: bool = False, positions=range(5), theta: float = 0.6, q=(1.0, 0.25), k=(0.45, 0.85),
                      dpi: int = 72) -> W.VBox:
    """A 2-D query at position m and key at position n; the score depends on m − n only.

    Wraps :func:`ropebook.plotting.rotation_2d`.
    """
    def render(m, n):
        return rotation_2d(q, k, m, n, theta=theta, width=3.8, height=3.8)

    margins = dict(left=0.12, right=0.97, bottom=0.08, top=0.86)
    if live:
        controls = {"m": W.IntSlider(value=2, min=0, max=64, description="m"),
                    "n": W.IntSlider(value=0, min=0, max=64, description="n")}
        return live_explorer(render, controls, name="rotation-explorer", dpi=dpi, margins=margins)
    positions = list(positions)
    axes = [("m", [(str(p), p) for p in positions]), ("n", [(str(p), p) for p in positions])]
    return frame_explorer(render, axes, name="rotation-explorer", dpi=dpi, margins=margins, default=[2, 0])


def frequency_explorer(*, live: bool = False, bases=(1e2, 1e3, 1e4, 1e5, 1e6), dims=(16, 64, 128, 256),
                       context_length: int = 4096, dpi: int = 72) -> W.VBox:
    """The wavelength of every pair for one base and head dimension, against a context length.

    Wraps :func:`ropebook.plotting.wavelengths`.
    """
    def render(base, dim):
        return wavelengths(dims=(dim,), bases=(float(base),), context_length=context_length, width=5.6, height=3.0)

    margins = dict(left=0.13, right=0.97, bottom=0.16, top=0.96)
    if live:
        controls = {"base": W.FloatLogSlider(value=1e4, base=10, min=2, max=6, step=0.05, description="base"),
                    "dim": W.IntSlider(value=128, min=16, max=256, step=2, description="dim")}
        return live_explorer(render, controls, name="frequency-explorer", dpi=dpi, margins=margins)
    axes = [("base", [(_base_label(b), b) for b in bases]), ("dim", [(str(d), d) for d in dims])]
    return frame_explorer(render, axes, name="frequency-explorer", dpi=dpi, margins=margins,
                          default=[list(bases).index(1e4) if 1e4 in bases else len(bases) // 2,
                                   list(dims).index(128) if 128 in dims else len(dims) // 2])


GPU_MODELS = (("32 q, 8 k heads", (32, 8)), ("64 q, 8 k heads", (64, 8)), ("32 q, 32 k heads", (32, 32)))
"""Head counts for :func:`gpu_time_explorer`: the benchmark's (Llama 3 8B's), Llama 3 70B's, and no grouped keys."""


def gpu_time_explorer(bench, *, live: bool = False, tokens=(1, 16, 64, 256, 1024, 4096, 16384, 65536),
                      models=GPU_MODELS, dpi: int = 72) -> W.VBox:
    """Where RoPE's time goes: the copy model ``t0 + bytes / W`` at a number of tokens a call, for a model's heads.

    Wraps :func:`ropebook.plotting.rope_time_model`; ``bench`` is the benchmark's results
    (``book/data/gpu_bench.json``). Measured points appear for the benchmark's own head counts only.
    """
    def render(tokens, heads):
        return rope_time_model(bench, tokens=int(tokens), heads=heads, width=5.6, height=3.4)

    margins = dict(left=0.12, right=0.97, bottom=0.15, top=0.97)
    models = list(models)
    if live:  # any head counts: one slider each
        def render_live(tokens, q_heads, k_heads):
            return render(tokens, (int(q_heads), int(k_heads)))

        controls = {"tokens": W.IntSlider(value=64, min=1, max=65536, description="tokens"),
                    "q_heads": W.IntSlider(value=models[0][1][0], min=1, max=128, description="q heads"),
                    "k_heads": W.IntSlider(value=models[0][1][1], min=1, max=128, description="k heads")}
        return live_explorer(render_live, controls, name="gpu-time-explorer", dpi=dpi, margins=margins)
    tokens = list(tokens)
    axes = [("tokens", [(str(n), n) for n in tokens]), ("heads", models)]
    return frame_explorer(render, axes, name="gpu-time-explorer", dpi=dpi, margins=margins,
                          default=[tokens.index(64) if 64 in tokens else len(tokens) // 2, 0])
