"""Shared fixtures: the built site (one full, forced build per test session) and a local server."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def build_book(out: Path, *, source: Path = ROOT, execute: str = "force", extra_env: dict | None = None) -> Path:
    """Build the book strictly (-W -n --keep-going) into ``out``; fail with the execution reports."""
    env = {**os.environ, "ROPEBOOK_EXECUTE": execute, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", **(extra_env or {})}
    proc = subprocess.run(
        [str(BIN / "jupyter-book"), "build", str(source), "--path-output", str(out), "-W", "-n", "--keep-going"],
        cwd=source, env=env, capture_output=True, text=True,
    )
    html = out / "_build" / "html"
    if proc.returncode != 0:
        reports = "".join(f"\n=== {p.name}\n{p.read_text()}" for p in sorted((html / "reports").rglob("*.log")))
        warnings = "\n".join(line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if "WARNING" in line or "ERROR" in line)
        pytest.fail(f"jupyter-book build failed (exit {proc.returncode}):\n{warnings}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}{reports}", pytrace=False)
    return html


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups from the markers
def pytest_collection_modifyitems(config, items):
    """Keep every test that needs the built site on one xdist worker, so the book is built once.

    `make test` runs `pytest -n 2 --dist loadgroup`: the reader's build (and the browser
    tests on it) runs on one core while the student edition and the unit tests share the other.
    """
    for item in items:
        if "site" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("site"))


@pytest.fixture(scope="session")
def site() -> Path:
    """The reader's edition, built once per session with every page executed.

    Set ROPEBOOK_SITE=path/to/html to test an existing build instead (for quick iteration).
    """
    existing = os.environ.get("ROPEBOOK_SITE")
    if existing:
        return Path(existing)
    return build_book(ROOT / "_build" / "test")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="session")
def site_url(site: Path):
    """Serve the built site on 127.0.0.1 at a free port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# --- headless Chromium (Debian's), driven by Playwright -------------------------------

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed: in CI the browser check must run (make test installs Debian's chromium)")
        pytest.skip("Chromium is not installed (make test installs it where it runs as root)")
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def open_page(browser, url: str, base: str):
    """Open ``url`` with every request outside ``base`` blocked; return (page, offsite, errors)."""
    context = browser.new_context()
    page = context.new_page()
    offsite: list[str] = []
    errors: list[str] = []

    def route(r):
        if r.request.url.startswith(base) or r.request.url.startswith("data:") or r.request.url.startswith("blob:"):
            r.continue_()
        else:
            offsite.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}") if r.url.startswith(base) else None)
    page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page, offsite, errors


def wait_for_mathjax(page) -> None:
    """Wait until MathJax has typeset the page (Sphinx loads MathJax only on pages with maths)."""
    if not page.evaluate("() => !!document.querySelector('script[src*=\"mathjax\"]')"):
        return
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
    page.evaluate("() => MathJax.startup.promise")




# The widget frame a reader sees: the SHA-256 of the one visible <img> (a blob: URL made from
# the PNG embedded in the widget state), its caption and the first slider readout under `root`.
VISIBLE_FRAME_JS = """async (root) => {
    const imgs = Array.from(document.querySelectorAll(root + ' img'));
    if (imgs.length !== 1) return {error: 'expected one visible image, found ' + imgs.length};
    const bytes = await (await fetch(imgs[0].src)).arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-256', bytes);
    const hex = Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, '0')).join('');
    const caption = document.querySelector(root + ' .ropebook-caption');
    const readout = document.querySelector(root + ' .widget-readout');
    return {hash: hex, size: bytes.byteLength, caption: caption ? caption.textContent : null,
            readout: readout ? readout.textContent.trim() : null};
}"""
