"""Part I pages (and ch-deriving-rope, which builds on them) keep the book's rules without executing them:
header, label, skeleton, checked identities, checkers, exercise names.

Execution itself is tested by the book build; these checks are static and fast, and say
which rule a page broke.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = (ROOT / "CONTRIBUTING.md").read_text().split("```\n  ---\n", 1)[1].split("\n  ```", 1)[0]

# (page, label, needs the chapter skeleton)
PAGES = [("preface", "preface", False), ("why-position", "ch-why-position", True), ("complex-rotations", "ch-complex-rotations", True),
         ("deriving-rope", "ch-deriving-rope", True)]
CHAPTERS = [p for p in PAGES if p[2]]

DISPLAY = re.compile(r"^\$\$\n(.*?)\n\$\$ \((eq-[\w-]+)\)$", re.S | re.M)
CODE_CELL = re.compile(r"^```\{code-cell\} ipython3\n(.*?)^```$", re.S | re.M)
# Displays that define something rather than claim an identity; each names the cell that uses it.
DEFINITIONS = {"eq-rotation-matrix", "eq-shaw", "eq-rope-requirement", "eq-rope-complex-requirement"}


def _text(page: str) -> str:
    return (ROOT / "book" / f"{page}.md").read_text()


@pytest.mark.parametrize("page,label,_", PAGES, ids=[p[0] for p in PAGES])
def test_full_jupytext_header_then_label_and_title(page, label, _):
    text = _text(page)
    expected = "---\n" + "\n".join(line.removeprefix("  ") for line in HEADER.splitlines()) + "\n"  # HEADER ends with ---
    assert text.startswith(expected), f"{page}.md must start with the full jupytext header of CONTRIBUTING.md"
    assert re.search(rf"^\({re.escape(label)}\)=\n# \S", text[len(expected):].lstrip("\n"), re.M), f"{page}.md: ({label})= then # Title"


@pytest.mark.parametrize("page,label,_", CHAPTERS, ids=[p[0] for p in CHAPTERS])
def test_chapter_skeleton(page, label, _):
    headings = re.findall(r"^## (.+)$", _text(page), re.M)
    assert headings[0] == "Overview" and headings[-2:] == ["Summary", "Exercises"], headings
    summary = _text(page).split("## Summary", 1)[1].split("## Exercises", 1)[0]
    assert 3 <= len(re.findall(r"^- ", summary, re.M)) <= 5, "Summary: 3–5 bullets"


@pytest.mark.parametrize("page,label,_", CHAPTERS, ids=[p[0] for p in CHAPTERS])
def test_every_displayed_identity_is_asserted_right_under_it(page, label, _):
    text = _text(page)
    displays = list(DISPLAY.finditer(text))
    assert displays, f"{page}.md has no labelled displays"
    for match in displays:
        if match.group(2) in DEFINITIONS:
            continue
        after = text[match.end():]
        cell = CODE_CELL.search(after)
        assert cell is not None, f"{page}.md: no code cell after {match.group(2)}"
        between = after[: cell.start()]
        assert "$$" not in between, f"{page}.md: {match.group(2)} is followed by another display before its check"
        assert re.search(r"\bassert\b|assert_close", cell.group(1)), f"{page}.md: the cell under {match.group(2)} asserts nothing"


@pytest.mark.parametrize("page,label,_", CHAPTERS, ids=[p[0] for p in CHAPTERS])
def test_exercises_have_solutions_and_an_automatic_checker(page, label, _):
    text = _text(page).split("## Exercises", 1)[1]
    exercises = re.findall(r"^(?:```|:::)\{exercise\}.*\n:label: ([\w-]+)$", text, re.M)
    solutions = re.findall(r"^```\{solution-start\} ([\w-]+)$", text, re.M)
    assert len(exercises) >= 3 and sorted(exercises) == sorted(solutions), (exercises, solutions)
    checked = re.findall(r"rb\.checks\.(check_\w+)\(.*\)\.assert_passed\(\)", text)
    assert checked, f"{page}.md: no exercise solution is run through a checker"
    import ropebook.checks

    assert all(hasattr(ropebook.checks, name) for name in checked), checked


@pytest.mark.parametrize("page,label,_", PAGES, ids=[p[0] for p in PAGES])
def test_exercise_functions_do_not_shadow_imported_names(page, label, _):
    """A stub `def complex_inner(x, y)` overwrote the sympy helper imported at the top of the page, which
    later cells still used: a reader running the page top to bottom after the exercise got the wrong one."""
    text = _text(page)
    imported = set()
    for names in re.findall(r"^from [\w.]+ import (.+)$", text, re.M):
        imported |= {n.strip().split(" as ")[-1] for n in names.split(",")}
    defined = set(re.findall(r"^def (\w+)\(", text.split("## Exercises", 1)[-1], re.M))
    assert not imported & defined, f"{page}.md: exercise functions shadow imports: {sorted(imported & defined)}"
