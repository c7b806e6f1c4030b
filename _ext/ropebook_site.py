"""Sphinx glue for the ropebook site: execution mode from the environment, .ipynb downloads.

- ``ROPEBOOK_EXECUTE`` (``cache``, ``force``, ``off``) overrides the execution mode in
  ``_config.yml``: ``make book`` uses the cache, ``make test`` forces every page to run.
- ``ROPEBOOK_CACHE`` points the execution cache elsewhere (the student edition uses its own).
- Every notebook page gets a downloadable ``.ipynb``, generated at build time from its
  MyST source with jupytext (no outputs: a reader runs it), written to ``_sources/`` and
  offered by the theme's download button.
- Fails the build if the vendored JavaScript (``make vendor``) is missing, instead of
  silently falling back to a CDN.
"""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import nbformat
from sphinx.application import Sphinx
from sphinx.errors import ConfigError

_VENDORED = ["vendor/require.min.js", "vendor/widgets-config.js", "vendor/widgets/embed-amd.js", "vendor/mathjax/tex-chtml.js"]


def _override_execution(app: Sphinx, config) -> None:
    mode = os.environ.get("ROPEBOOK_EXECUTE")
    if mode:
        if mode not in {"cache", "force", "off", "auto", "inline"}:
            raise ConfigError(f"ROPEBOOK_EXECUTE must be one of cache, force, off, auto, inline; got {mode!r}")
        config.nb_execution_mode = mode
    cache = os.environ.get("ROPEBOOK_CACHE")
    if cache:
        config.nb_execution_cache_path = cache
    static_root = Path(app.confdir)
    missing = [f for f in _VENDORED if not any((static_root / p / f).is_file() for p in config.html_static_path)]
    if missing:
        raise ConfigError(f"vendored JavaScript missing: {missing}; run `make vendor` (npm ci, then copy into _vendor/)")


def _is_notebook_source(path: Path) -> bool:
    if path.suffix != ".md":
        return False
    head = path.read_text(encoding="utf-8")[:600]
    return head.startswith("---") and "kernelspec:" in head


def _add_ipynb_download(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if doctree is None or app.builder.format != "html":
        return
    source = Path(app.env.doc2path(pagename))
    if not _is_notebook_source(source):
        return
    notebook = jupytext.read(source)
    notebook.metadata.pop("jupytext", None)  # a plain notebook for readers, not a paired one
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def _drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Remove sphinx-thebe's scripts: the book runs no remote kernels, and thebe's loader
    points at a CDN (and is added twice by Jupyter Book 1, a console error)."""

    def is_thebe(asset) -> bool:
        name = str(getattr(asset, "filename", "") or "")
        body = str(getattr(asset, "attributes", {}).get("body", ""))
        return "thebe" in name or "THEBE_JS_URL" in body

    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [a for a in context[key] if not is_thebe(a)]


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _override_execution)
    # before sphinx-book-theme builds its header buttons (priority 500), so ".ipynb" is offered
    app.connect("html-page-context", _add_ipynb_download, priority=400)
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
