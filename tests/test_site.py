"""The built site, checked as a reader's browser sees it: offline, typeset, without errors.

Every page of the table of contents is loaded in Debian's headless Chromium from a
local HTTP server. A request to anywhere but that server is blocked and recorded;
the test fails on any such request, on any console error, and on maths that MathJax
left as raw TeX. In CI (CI=true) a missing browser fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import open_page, wait_for_mathjax

ROOT = Path(__file__).resolve().parents[1]

# Pages in the table of contents, as HTML paths relative to the site root.
TOC = yaml.safe_load(Path(os.environ.get("ROPEBOOK_TOC", ROOT / "_toc.yml")).read_text())
PAGES = [TOC["root"]] + [c["file"] for part in TOC.get("parts", [TOC]) for c in part.get("chapters", [])]
NOTEBOOK_PAGES = [p for p in PAGES if "kernelspec:" in (ROOT / f"{p}.md").read_text()[:800]]

# --- static checks of the build output (no browser) -------------------------------


def test_every_toc_page_is_built(site: Path):
    missing = [p for p in PAGES if not (site / f"{p}.html").is_file()]
    assert not missing, f"pages in _toc.yml with no HTML: {missing}"


def test_no_page_refers_to_a_cdn(site: Path):
    pattern = re.compile(r"""<(?:script|link)[^>]+(?:src|href)=["'](https?:)?//""")
    offenders = {p: pattern.findall((site / f"{p}.html").read_text()) for p in PAGES}
    offenders = {p: hits for p, hits in offenders.items() if hits}
    assert not offenders, f"pages load scripts or styles from another host: {offenders}"
    for vendored in ["require.min.js", "widgets/embed-amd.js", "mathjax/tex-chtml.js"]:
        assert (site / "_static" / "vendor" / vendored).is_file(), f"vendored file missing from the site: {vendored}"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_no_stderr_or_build_paths_reach_the_reader(site: Path, page: str):
    """A warning printed while the page executed shows the reader the build machine's paths and a message meant
    for the author (Inductor's warning about complex operators did, on a cold compile cache): a page prints
    what it means to say, to stdout."""
    html = (site / f"{page}.html").read_text()
    stderr = [re.sub(r"<[^>]+>", "", m)[:200] for m in re.findall(r'<div class="output stderr[^"]*">(.*?)</pre>', html, flags=re.S)]
    assert not stderr, f"{page}: output on stderr: {stderr[:3]}"
    paths = sorted(set(re.findall(r"[\w./-]*(?:site-packages|\.venv)/[\w./-]*", re.sub(r"<[^>]+>", "", html))))
    assert not paths, f"{page}: paths of the environment that built it: {paths[:5]}"


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_ipynb_download(site: Path, page: str):
    """Each notebook page offers a generated .ipynb: valid, code cells intact, no outputs."""
    path = site / "_sources" / f"{page}.ipynb"
    assert path.is_file(), f"no downloadable notebook at {path}"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells: jupytext read the page as text?"
    assert all(not c.get("outputs") for c in code)
    html = (site / f"{page}.html").read_text()
    assert f"_sources/{page}.ipynb" in html or f"{Path(page).name}.ipynb" in html, f"{page}.html does not link its .ipynb"


# --- the browser ------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_page_offline_typeset_and_clean(browser, site_url: str, page: str):
    tab, offsite, errors = open_page(browser, f"{site_url}/{page}.html", site_url)
    try:
        wait_for_mathjax(tab)
        tab.wait_for_load_state("networkidle")
        raw = tab.evaluate(
            """() => Array.from(document.querySelectorAll('span.math, div.math'))
                    .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))"""
        )
        typeset = tab.evaluate("() => document.querySelectorAll('mjx-container').length")
        tex_errors = tab.evaluate(
            "() => Array.from(document.querySelectorAll('mjx-merror')).map(e => e.getAttribute('data-mjx-error') || e.textContent)"
        )
        has_math = tab.evaluate("() => document.querySelectorAll('span.math, div.math').length")
        widgets_expected = tab.evaluate(
            "() => document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]').length"
        )
        widgets_rendered = tab.evaluate("() => document.querySelectorAll('.jupyter-widgets, .widget-container').length")
    finally:
        tab.context.close()
    assert not offsite, f"{page}: requests left the local server: {offsite}"
    assert not errors, f"{page}: browser errors: {errors}"
    assert not raw, f"{page}: maths left as raw TeX: {raw[:5]}"
    assert not tex_errors, f"{page}: MathJax could not typeset: {tex_errors[:5]}"
    if has_math:
        assert typeset >= has_math, f"{page}: {has_math} maths elements but only {typeset} typeset by MathJax"
    if widgets_expected:
        assert widgets_rendered > 0, f"{page}: {widgets_expected} embedded widgets, none rendered"


@pytest.mark.browser
def test_search_works_offline(browser, site_url: str):
    tab, offsite, errors = open_page(browser, f"{site_url}/search.html?q=rotation", site_url)
    try:
        tab.wait_for_selector("#search-results li", timeout=20_000)
        hits = tab.evaluate("() => document.querySelectorAll('#search-results li').length")
    finally:
        tab.context.close()
    assert not offsite, f"search: requests left the local server: {offsite}"
    assert not errors, f"search: browser errors: {errors}"
    assert hits > 0, "searching the site for 'rotation' found nothing"


@pytest.mark.browser
def test_screenshots_for_inspection(browser, site_url: str, site: Path):
    """Keep a screenshot of every page under _build/ so a person can look at what readers see."""
    shots = site.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    for page in PAGES:
        tab, _, _ = open_page(browser, f"{site_url}/{page}.html", site_url)
        try:
            wait_for_mathjax(tab)
            path = shots / f"{Path(page).name}.png"
            tab.screenshot(path=str(path), full_page=False)
        finally:
            tab.context.close()
        assert path.stat().st_size > 10_000, f"screenshot of {page} is suspiciously small"
    (shots / "index.json").write_text(json.dumps(PAGES))


# --- figures: caption, alt text, opaque white background ----------------------------

_IMG = re.compile(r"<img\b[^>]*>", re.S)


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_output_images_have_alt_text_and_captions(site: Path, page: str):
    """Every image a cell outputs is a numbered figure with a caption and alt text."""
    html = (site / f"{page}.html").read_text()
    problems = []
    for figure in re.findall(r"<figure\b.*?</figure>", html, flags=re.S):
        for img in _IMG.findall(figure):
            alt = re.search(r'alt="([^"]*)"', img)
            if not alt or len(alt.group(1).strip()) < 10:
                problems.append(f"figure image without a real alt text: {img[:120]}")
        if "<figcaption" not in figure:
            problems.append(f"figure without a caption: {figure[:120]}")
    outside = re.sub(r"<figure\b.*?</figure>", "", html, flags=re.S)
    for output in re.findall(r'<div class="cell_output[^"]*">(.*?)</div>\s*</div>', outside, flags=re.S):
        for img in _IMG.findall(output):
            problems.append(f"output image outside a captioned figure: {img[:120]}")
    assert not problems, f"{page}: " + "; ".join(problems)


def test_figures_are_opaque_on_white(site: Path):
    """Figures stay readable in the site's dark mode: opaque, white at the corners."""
    from PIL import Image

    pngs = sorted((site / "_images").glob("*.png"))
    assert pngs, "the site has no figures at all"
    bad = []
    for path in pngs:
        with Image.open(path) as im:
            rgba = im.convert("RGBA")
            w, h = rgba.size
            corners = [rgba.getpixel(p) for p in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)]]
        if any(px[3] < 255 or min(px[:3]) < 245 for px in corners):
            bad.append(f"{path.name}: corners {corners}")
    assert not bad, f"figures that are transparent or not white-backed: {bad}"
