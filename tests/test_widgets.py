"""ropebook.widgets without a browser: the frame grid, the jslinks the static site relies on, the live redraw.

The embedded state (what myst-nb writes into the page) is inspected with
``ipywidgets.embed.embed_data``: every stack must be linked to its slider there,
or the sliders would do nothing on the site.
"""

from __future__ import annotations

import itertools

import ipywidgets as W
import numpy as np
import pytest
from ipywidgets.embed import embed_data

import ropebook as rb
from ropebook.widgets import figure_png, frame_explorer, live_explorer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# a small grid so the tests stay fast: (keyword, [(label, value), ...])
AXES = [("m", [("0", 0), ("1", 1), ("2", 2)]), ("n", [("0", 0), ("3", 3)])]


def render(m, n):
    return rb.plotting.rotation_2d([1.0, 0.2], [0.3, 0.9], m, n, theta=0.7, width=2.5, height=2.5)


@pytest.fixture(scope="module")
def small():
    return frame_explorer(render, AXES, name="test-explorer", dpi=30)


def leaf(box, indices):
    node = box.children[1]
    for i in indices:
        node = node.children[i]
    caption, image = node.children
    return caption.value, bytes(image.value)


def test_figure_png_is_a_small_palette_png():
    png = figure_png(render(1, 0), dpi=40)
    assert png.startswith(PNG_MAGIC)
    from PIL import Image
    import io
    assert Image.open(io.BytesIO(png)).mode == "P"
    assert len(png) < len(figure_png(render(1, 0), dpi=40, colors=None))


def test_one_frame_per_grid_point_each_with_its_caption(small):
    frames = {}
    for idx in itertools.product(*(range(len(v)) for _, v in AXES)):
        caption, png = leaf(small, idx)
        labels = [AXES[a][1][i][0] for a, i in enumerate(idx)]
        assert caption == f"<span class='ropebook-caption'>m = {labels[0]} · n = {labels[1]}</span>"
        assert png.startswith(PNG_MAGIC)
        frames[idx] = png
    # m − n differs between these frames, so the pictures must differ
    assert len(set(frames.values())) == len(frames)


def test_sliders_snap_to_the_grid_and_start_in_the_middle(small):
    sliders = small.children[0].children
    assert [type(s).__name__ for s in sliders] == ["SelectionSlider", "SelectionSlider"]
    assert [s.options for s in sliders] == [tuple(lab for lab, _ in v) for _, v in AXES]
    assert [s.index for s in sliders] == [1, 1]
    assert small.children[1].selected_index == 1
    assert "ropebook-test-explorer" in small._dom_classes


def test_every_stack_is_jslinked_to_its_slider_in_the_embedded_state(small):
    state = embed_data(views=[small])["manager_state"]["state"]
    sliders = small.children[0].children
    links = [v["state"] for v in state.values() if v["model_name"] == "LinkModel"]
    by_source = {}
    for link in links:
        (src, src_attr), (dst, dst_attr) = link["source"], link["target"]
        assert (src_attr, dst_attr) == ("index", "selected_index")
        by_source.setdefault(src.removeprefix("IPY_MODEL_"), set()).add(dst.removeprefix("IPY_MODEL_"))
    outer = small.children[1]
    inner = list(outer.children)
    assert by_source[sliders[0].model_id] == {outer.model_id}
    assert by_source[sliders[1].model_id] == {s.model_id for s in inner}


def test_frame_explorer_bad_input():
    with pytest.raises(ValueError, match="axes"):
        frame_explorer(render, [("m", [])])
    with pytest.raises(ValueError, match="default"):
        frame_explorer(render, AXES, default=[5, 0])


def test_live_explorer_redraws_on_every_change():
    m, n = W.IntSlider(1, 0, 50), W.IntSlider(0, 0, 50)
    box = live_explorer(render, {"m": m, "n": n}, dpi=30)
    caption, image = box.children[1].children
    before = bytes(image.value)
    m.value = 37  # off any precomputed grid: recomputed
    assert bytes(image.value) != before and bytes(image.value).startswith(PNG_MAGIC)
    assert caption.value == "<span class='ropebook-caption'>m = 37 · n = 0</span>"
    n.value = 36  # m − n = 1 now: same score as m = 1, n = 0, a different picture
    assert "n = 36" in caption.value


def test_rotation_explorer_draws_the_positions_its_sliders_show(monkeypatch):
    """Every frame is rotation_2d at the (m, n) its sliders and caption name, with the θ given (the pages say 0.6)."""
    drawn, real = [], rb.widgets.rotation_2d

    def spy(q, k, m, n, **kwargs):
        drawn.append((m, n, kwargs["theta"]))
        return real(q, k, m, n, **kwargs)

    monkeypatch.setattr(rb.widgets, "rotation_2d", spy)
    rb.widgets.rotation_explorer(positions=range(3), dpi=20)
    assert drawn == [(m, n, 0.6) for m in range(3) for n in range(3)]  # nested: m outer, n inner
    drawn.clear()
    box = rb.widgets.rotation_explorer(live=True, dpi=20)
    m, n = box.children[0].children
    m.value, n.value = 5, 3
    assert drawn == [(2, 0, 0.6), (5, 0, 0.6), (5, 3, 0.6)]


@pytest.mark.parametrize("make", [rb.widgets.decay_explorer, rb.widgets.rotation_explorer, rb.widgets.frequency_explorer])
def test_live_explorers_build(make):
    box = make(live=True)
    first = bytes(box.children[1].children[1].value)
    slider = box.children[0].children[0]
    slider.value = slider.max if not isinstance(slider, W.FloatLogSlider) else 10 ** slider.max
    assert bytes(box.children[1].children[1].value) != first


def test_decay_explorer_frames_weigh_under_two_megabytes():
    box = rb.widgets.decay_explorer(bases=(1e2, 1e6), dims=(16, 256), max_distances=(256,))
    pngs = []

    def walk(w):
        if isinstance(w, W.Image):
            pngs.append(len(w.value))
        for c in getattr(w, "children", ()):
            walk(c)

    walk(box)
    assert len(pngs) == 4
    # base64 in the page adds a third; the default grid has 40 frames
    assert np.mean(pngs) * 4 / 3 * 40 < 2e6, np.mean(pngs)


def test_explorers_refuse_a_fractional_head_dimension():
    """int(dim) turned 16.5 into 16: the slider said 16.5 over a figure for d = 16."""
    for explorer, pattern in ((rb.widgets.decay_explorer, r"dim must be a positive even integer, got dim=16\.5"),
                              (rb.widgets.frequency_explorer, r"dims must be a positive even integer, got dims=\(16\.5,\)")):
        with pytest.raises(ValueError, match=pattern):
            explorer(dims=(16.5,))
