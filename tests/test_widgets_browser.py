"""The explorers on the built site, in headless Chromium, offline, with no kernel.

For each explorer (the long-term decay page's three, the GPU page's one): focus each slider's handle, move it
with the keyboard (ArrowRight, End, Home), and check that the visible image changes
(its bytes, hashed in the page) and that the frame's caption shows every slider's
readout. Screenshots of the first and last frame of each slider are kept under
``<site>/../widget-screenshots/`` for a person to look at.

Iterate against a single-page build with ROPEBOOK_SITE=/tmp/build-x/_build/html.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import VISIBLE_FRAME_JS, open_page

PAGES = {"book/long-term-decay": ["decay-explorer", "rotation-explorer", "frequency-explorer"],
         "book/rope-gpu": ["gpu-time-explorer"]}
EXPLORERS = [name for names in PAGES.values() for name in names]


SLIDERS = """(root) => Array.from(document.querySelectorAll(root + ' .widget-slider')).map(s => ({
    name: s.querySelector('.widget-label').textContent.trim(),
    readout: s.querySelector('.widget-readout').textContent.trim(),
    now: s.querySelector('.noUi-handle').getAttribute('aria-valuenow'),
    max: s.querySelector('.noUi-handle').getAttribute('aria-valuemax'),
}))"""


def _state(tab, root):
    frame = tab.evaluate(VISIBLE_FRAME_JS, root)
    assert "error" not in frame, frame
    return frame, tab.evaluate(SLIDERS, root)


def _assert_readouts_match(frame, sliders, where):
    for s in sliders:
        assert f"{s['name']} = {s['readout']}" in frame["caption"], (where, s, frame["caption"])


@pytest.fixture(scope="module")
def tabs(browser, site_url):
    """Each page opened once, when its first explorer is tested; every page's errors checked at the end."""
    opened = {}

    def tab_for(name: str):
        path = next(p for p, names in PAGES.items() if name in names)
        if path not in opened:
            page, offsite, errors = open_page(browser, f"{site_url}/{path}.html", site_url)
            page.set_viewport_size({"width": 1200, "height": 900})
            for n in PAGES[path]:
                page.wait_for_selector(f".ropebook-{n} img", timeout=30_000)
            opened[path] = (page, offsite, errors)
        return opened[path][0]

    yield tab_for
    for path, (page, offsite, errors) in opened.items():
        page.context.close()
        assert not offsite, f"{path}: requests left the local server: {offsite}"
        assert not errors, f"{path}: browser errors: {errors}"


@pytest.mark.browser
@pytest.mark.parametrize("name", EXPLORERS)
def test_sliders_switch_frames_without_a_kernel(tabs, site: Path, name: str):
    tab = tabs(name)
    root = f".ropebook-{name}"
    shots = site.parent / "widget-screenshots"
    shots.mkdir(exist_ok=True)
    frame, sliders = _state(tab, root)
    assert len(sliders) >= 2, sliders
    _assert_readouts_match(frame, sliders, "initial")
    for i, slider in enumerate(sliders):
        seen = {frame["hash"]}
        for key in ["ArrowRight", "End", "Home"]:
            before, before_sliders = frame, sliders
            handle = tab.locator(f"{root} .widget-slider").nth(i).locator(".noUi-handle")
            handle.focus()
            handle.press(key)
            expected_now = {"ArrowRight": str(float(before_sliders[i]["now"]) + 1), "End": before_sliders[i]["max"],
                            "Home": "0.0"}[key]
            tab.wait_for_function(
                "([root, i, now]) => document.querySelectorAll(root + ' .noUi-handle')[i]"
                ".getAttribute('aria-valuenow') === now", arg=[root, i, expected_now], timeout=10_000)
            # the Link models and the Stack views update asynchronously: wait for the caption to follow
            tab.wait_for_function(
                "([root, i]) => { const s = document.querySelectorAll(root + ' .widget-slider')[i];"
                " const c = document.querySelector(root + ' .ropebook-caption');"
                " return c && c.textContent.includes(s.querySelector('.widget-label').textContent.trim() + ' = '"
                " + s.querySelector('.widget-readout').textContent.trim()); }",
                arg=[root, i], timeout=10_000)
            frame, sliders = _state(tab, root)
            seen.add(frame["hash"])
            _assert_readouts_match(frame, sliders, f"{slider['name']} after {key}")
            if sliders[i]["readout"] != before_sliders[i]["readout"]:
                assert frame["hash"] != before["hash"], f"{name}: {slider['name']} moved ({key}) but the image did not change"
            if key in ("End", "Home"):
                where = "last" if key == "End" else "first"
                tab.locator(root).screenshot(path=str(shots / f"{name}-{slider['name']}-{where}.png"))
        # after Home the slider is on its first grid value, after End it was on its last: both were seen
        assert sliders[i]["now"] == "0.0"
        assert len(seen) >= 2, f"{name}: moving {slider['name']} never changed the image"
    assert len(list(shots.glob(f"{name}-*.png"))) == 2 * len(sliders)
