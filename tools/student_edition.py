"""Build the student edition of ropebook: the same book with every solution removed.

Hiding a dropdown is not enough: the downloadable ``.ipynb``, the ``_sources/*.md``
copies and the search index are made from the sources, so the solutions have to
go from the sources. This tool

1. copies the book's sources (``_config.yml``, ``_toc.yml``, ``_ext/``, ``_vendor/``,
   ``book/``, and ``ropebook/`` for ``literalinclude``) into ``OUT/source``, with
   ``pyproject.toml``, ``README.md`` and the requirements, so that the folder is what a
   teacher hands out to run: ``pip install -r requirements.txt -r requirements-lab.txt``,
   ``pip install -e .``, ``jupyter lab --notebook-dir=book`` (the pages without solutions);
2. removes every ``{solution-start}`` … ``{solution-end}`` block (the markdown and
   every code cell between them) and every ``{solution}`` block from each page;
3. builds the copy strictly (``jupyter-book build -W -n --keep-going``) with an
   execution cache of its own (``ROPEBOOK_CACHE=OUT/.jupyter_cache``);
4. verifies that no line of a removed block, and no solution markup, is left in
   any file of the site, and moves the site to ``OUT/html``.

Usage::

    python tools/student_edition.py build --out _build/student   # make book-student
    python tools/student_edition.py build --out /tmp/s --toc my_toc.yml   # a few chapters
    python tools/student_edition.py strip book/rope-d-dims.md    # print one stripped page

``ROPEBOOK_EXECUTE`` (``cache`` by default, ``force`` in ``make test``) chooses how
pages are executed. Exit status 0 on success, 1 on a failed build or check.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["_config.yml", "_toc.yml", "_ext", "_vendor", "book", "ropebook",  # what a build reads
           "pyproject.toml", "README.md", "requirements.txt", "requirements-lab.txt"]  # what makes OUT/source installable
_IGNORE = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc", "_build", ".jupyter_cache")

# The folder's README: the repository's own tells of `make`, `tests/` and `tools/`, none of which is handed out.
STUDENT_README = """# ropebook: the student edition

The chapters of *ropebook*, an interactive book about rotary position embedding, with
the solutions removed, and the `ropebook` package the chapters import.

## Run the chapters

With Python 3.11:

```bash
python3 -m venv .venv && . .venv/bin/activate
pip install -r requirements.txt -r requirements-lab.txt
pip install -e .
jupyter lab --notebook-dir=book
```

In JupyterLab, right-click a chapter (`book/*.md`) and choose *Open With → Notebook*.
Nothing is downloaded at run time.

## Exercises

Each chapter ends with exercises. Where an exercise has a checker, the cell below it
calls `rb.checks.check_...(your_function)`: it runs seeded cases against a reference and
prints `Correct: ...` or what differs. A checker tests what your function returns, not
how you wrote it.

Some pages mention commands of the full repository (`make ...`, files under `tests/`
and `tools/`); they are not part of this folder.
"""

_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}")


class StripError(ValueError):
    """A page whose solution blocks cannot be removed safely (unbalanced or unterminated)."""


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` is a bare closing fence for ``fence`` (same character, at least as long)."""
    bare = line.strip()
    return bool(bare) and set(bare) == {fence[0]} and len(bare) >= len(fence)


def strip_solutions(text: str, *, path: str = "<page>") -> tuple[str, list[str]]:
    """Remove solution blocks from a MyST page; return the new text and the removed lines.

    A gated solution runs from the ``{solution-start}`` directive to the closing
    fence of the ``{solution-end}`` directive; a ``{solution}`` directive runs to
    its own closing fence. Raises :class:`StripError` on unbalanced blocks.

    >>> page = "A\\n```{solution-start} ex\\n:class: dropdown\\n```\\nsecret\\n```{solution-end}\\n```\\nB\\n"
    >>> strip_solutions(page)[0]
    'A\\nB\\n'
    """
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    removed: list[str] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        name = match["name"] if match else None
        if name == "solution-end":
            raise StripError(f"{path}:{i + 1}: {{solution-end}} without a {{solution-start}} before it")
        if name not in ("solution-start", "solution"):
            kept.append(lines[i])
            i += 1
            continue
        start, fence = i, match["fence"]
        if name == "solution":  # one directive: up to its closing fence
            i += 1
            while i < len(lines) and not _closes(lines[i], fence):
                i += 1
        else:  # gated: up to {solution-end}, then that directive's closing fence
            i += 1
            while i < len(lines):
                inner = _FENCE.match(lines[i])
                if inner and inner["name"] == "solution-start":
                    raise StripError(f"{path}:{i + 1}: {{solution-start}} inside the solution opened at line {start + 1}")
                if inner and inner["name"] == "solution-end":
                    fence = inner["fence"]
                    i += 1
                    while i < len(lines) and not _closes(lines[i], fence):
                        i += 1
                    break
                i += 1
        if i >= len(lines):
            raise StripError(f"{path}:{start + 1}: the {{{name}}} block opened here is never closed")
        removed.extend(lines[start : i + 1])
        i += 1
    return "".join(kept), removed


def _probes(removed: list[str], kept: str) -> list[str]:
    """Lines of removed blocks that are long enough to recognise and occur nowhere in the kept text.

    A solution often repeats a line of its stub (``def rope_2d(x, m, theta):``); such a
    line proves nothing when found in the output, so it is not a probe.
    """
    kept = " ".join(kept.split())
    probes = []
    for line in removed:
        bare = " ".join(line.split())
        if len(bare) >= 24 and not _FENCE.match(bare) and not bare.startswith(":") and bare not in kept:
            probes.append(bare)
    return probes


def _bare(text: str) -> str:
    """Text without whitespace: spaces that markup adds or removes cannot hide a match."""
    return "".join(text.split())


def _html_text(raw: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def _searchable(path: Path) -> str:
    """A file's text as a reader could find it: HTML without tags, notebooks as their cell sources."""
    raw = path.read_text(encoding="utf-8", errors="ignore")
    if path.suffix == ".html":
        return _html_text(raw)
    if path.suffix == ".ipynb":
        try:
            nb = json.loads(raw)
            raw = "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []))
        except json.JSONDecodeError:
            pass
    return raw


def verify(site: Path, probes: list[str]) -> list[str]:
    """Return the problems found: solution markup or removed lines anywhere under ``site``."""
    problems = []
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        if path.suffix in {".png", ".jpg", ".svg", ".woff", ".woff2", ".ttf", ".eot", ".ico", ".gif"}:
            continue
        raw = path.read_text(encoding="utf-8", errors="ignore")
        if "solution-start" in raw or "solution-end" in raw or 'class="solution' in raw:
            problems.append(f"{path.relative_to(site)}: solution markup survived")
        text = _bare(_searchable(path))
        for probe in probes:
            if _bare(probe) in text:
                problems.append(f"{path.relative_to(site)}: removed line survived: {probe[:80]!r}")
    return problems


def prepare(source_root: Path, work: Path, *, toc: Path | None = None) -> tuple[dict[str, int], list[str]]:
    """Copy the sources into ``work`` and strip every page; return blocks removed per page and the probes.

    ``toc`` replaces ``_toc.yml`` in the copy (to build a few chapters only).
    """
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in SOURCES:
        src = source_root / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=_IGNORE)
        elif src.is_file():
            shutil.copy2(src, work / name)
        elif name in ("_config.yml", "_toc.yml", "book"):
            raise FileNotFoundError(f"student_edition: {src} is missing; run from the repository")
    (work / "README.md").write_text(STUDENT_README, encoding="utf-8")  # the repository's speaks of make and tests/
    if toc is not None:
        if not toc.is_file():
            raise FileNotFoundError(f"student_edition: toc must be an existing file, got toc={str(toc)!r}")
        shutil.copy2(toc, work / "_toc.yml")
    counts: dict[str, int] = {}
    removed_all: list[str] = []
    kept_all: list[str] = []
    for page in sorted((work / "book").rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        stripped, removed = strip_solutions(text, path=str(page.relative_to(work)))
        kept_all.append(stripped)
        if removed:
            page.write_text(stripped, encoding="utf-8")
            opened = [m["name"] for m in map(_FENCE.match, removed) if m]
            counts[str(page.relative_to(work))] = opened.count("solution-start") + opened.count("solution")
            removed_all += removed
    return counts, _probes(removed_all, "\n".join(kept_all))


def build(out: Path, *, source_root: Path = ROOT, execute: str | None = None, toc: Path | None = None) -> int:
    """Build the student edition into ``out/html``; return the exit status (0 on success)."""
    out = out.resolve()
    work, staging, site = out / "source", out / "staging", out / "html"
    counts, probes = prepare(source_root, work, toc=toc.resolve() if toc else None)
    print(f"student_edition: removed {sum(counts.values())} solution blocks from {len(counts)} pages: {counts}")
    env = {
        **os.environ,
        "ROPEBOOK_EXECUTE": execute or os.environ.get("ROPEBOOK_EXECUTE", "cache"),
        "ROPEBOOK_CACHE": str(out / ".jupyter_cache"),
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": os.environ.get("MPLBACKEND", "Agg"),
    }
    if staging.exists():
        shutil.rmtree(staging)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jupyter_book), "build", str(work), "--path-output", str(staging), "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=work, env=env)
    built = staging / "_build" / "html"
    if proc.returncode != 0:
        for log in sorted((built / "reports").rglob("*.log")) if built.exists() else []:
            print(f"=== {log.name}\n{log.read_text()}", file=sys.stderr)
        print(f"student_edition: the build failed (exit {proc.returncode})", file=sys.stderr)
        return 1
    problems = verify(built, probes)
    if problems:
        print("student_edition: solutions survived in the output:\n  " + "\n  ".join(problems[:40]), file=sys.stderr)
        return 1
    if site.exists():
        shutil.rmtree(site)
    shutil.move(str(built), str(site))
    print(f"student_edition: checked {len(probes)} removed lines against every file; site at {site}/index.html")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the student edition into OUT/html")
    b.add_argument("--out", type=Path, required=True, help="output folder, e.g. _build/student")
    b.add_argument("--execute", choices=["cache", "force", "off", "auto"], help="default: $ROPEBOOK_EXECUTE or cache")
    b.add_argument("--toc", type=Path, help="a table of contents to use instead of _toc.yml (a few chapters)")
    s = sub.add_parser("strip", help="print one page with its solutions removed")
    s.add_argument("page", type=Path)
    args = parser.parse_args(argv)
    if args.command == "strip":
        sys.stdout.write(strip_solutions(args.page.read_text(encoding="utf-8"), path=str(args.page))[0])
        return 0
    return build(args.out, execute=args.execute, toc=args.toc)


if __name__ == "__main__":
    sys.exit(main())
