"""The linear-attention page on the built site, offline in headless Chromium: its base slider switches frames.

Iterate against a single-page build with ROPEBOOK_SITE=/tmp/build-linear-attention/_build/html.
"""

from __future__ import annotations

import pytest

from conftest import VISIBLE_FRAME_JS, open_page

PAGE = "book/linear-attention"
ROOT = ".ropebook-linear-weights-explorer"



@pytest.mark.browser
def test_base_slider_switches_frames_without_a_kernel(browser, site_url):
    tab, offsite, errors = open_page(browser, f"{site_url}/{PAGE}.html", site_url)
    tab.wait_for_selector(f"{ROOT} img", timeout=30_000)
    first = tab.evaluate(VISIBLE_FRAME_JS, ROOT)
    assert "error" not in first and first["caption"] == f"base = {first['readout']}", first
    handle = tab.locator(f"{ROOT} .noUi-handle")
    handle.focus()
    handle.press("End")
    tab.wait_for_function("(root) => { const c = document.querySelector(root + ' .ropebook-caption');"
                          " return c && c.textContent === 'base = ' + document.querySelector(root + ' .widget-readout')"
                          ".textContent.trim(); }", arg=ROOT, timeout=10_000)
    tab.wait_for_function("(root) => document.querySelector(root + ' .widget-readout').textContent.trim() === '100000'",
                          arg=ROOT, timeout=10_000)
    last = tab.evaluate(VISIBLE_FRAME_JS, ROOT)
    assert last["readout"] == "100000" and last["caption"] == "base = 100000", last
    assert last["hash"] != first["hash"], "moving the base slider did not change the image"
    tab.context.close()
    assert not offsite, f"requests left the local server: {offsite}"
    assert not errors, f"browser errors: {errors}"
