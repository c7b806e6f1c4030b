"""The mutation table (tools/mutate.py) stays applicable, and the tool tells caught from survived.

The full mutation run (``make mutate``) executes pages against a dozen or more wrong copies
of the package and takes minutes, so CI does not run it. What CI does check:

- every mutant still applies to the package as it is now: each old text occurs exactly
  once, the new text differs, and the mutated file is still valid Python. Without this,
  an edit to the package would silently turn a mutant into a no-op or a crash;
- the names are unique and the pages and test files a mutant names exist;
- the tool itself, end to end on one short page: a real mutant is reported caught
  (exit 0), and a mutant that changes nothing (a comment) is reported survived (exit 1),
  so a tool that reports "caught" for everything cannot pass.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import mutate  # noqa: E402


@pytest.mark.parametrize("mutant", mutate.MUTANTS, ids=lambda m: m.name)
def test_every_mutant_applies_once_and_leaves_valid_python(mutant):
    texts: dict[str, str] = {}
    for rel, old, new in mutant.edits:
        text = texts.setdefault(rel, (ROOT / rel).read_text())
        assert text.count(old) == 1, f"{mutant.name}: {rel} has the old text {text.count(old)} times: {old[:80]!r}"
        assert new != old, f"{mutant.name}: an edit of {rel} changes nothing"
        texts[rel] = text.replace(old, new)
    for rel, text in texts.items():
        ast.parse(text, filename=f"{mutant.name}:{rel}")


def test_mutant_names_pages_and_tests_exist():
    names = [m.name for m in mutate.MUTANTS]
    assert len(names) == len(set(names)), "mutant names repeat"
    pages = mutate._pages()
    assert {"preface", "deriving-rope", "rope-gpu"} <= set(pages), pages  # the page list is not empty or wrong
    for m in mutate.MUTANTS:
        assert m.pages and set(m.pages) <= set(pages), f"{m.name}: pages {m.pages} not among {pages}"
        for rel in m.tests:
            assert (ROOT / rel).is_file(), f"{m.name}: no test file {rel}"


def test_apply_refuses_text_that_is_not_there_exactly_once(tmp_path):
    (tmp_path / "f.py").write_text("a = 1\na = 1\n")
    with pytest.raises(ValueError, match="found it 2 times"):
        mutate.apply(mutate.Mutant("twice", "", (("f.py", "a = 1", "a = 2"),), ("preface",)), tmp_path)
    with pytest.raises(ValueError, match="found it 0 times"):
        mutate.apply(mutate.Mutant("absent", "", (("f.py", "b = 1", "b = 2"),), ("preface",)), tmp_path)


@pytest.mark.book
def test_the_tool_reports_a_real_mutant_caught_and_a_comment_survived(tmp_path, capsys):
    assert mutate.main(["run", "sin-sign", "--pages", "preface", "-j", "1"]) == 0
    out = capsys.readouterr().out
    assert "CAUGHT    sin-sign: preface" in out and "1/1 mutants caught" in out, out

    table = tmp_path / "table.py"
    table.write_text(
        "MUTANTS = [Mutant('comment', 'a comment: changes nothing', "
        "(('ropebook/_rotation.py', " + repr(mutate._ROTATE_DOC) + ", " + repr(mutate._ROTATE_DOC + "    # nothing\n")
        + "),), ('preface',))]\n")
    assert mutate.main(["run", "--table", str(table), "--pages", "preface", "-j", "1", "--no-baseline"]) == 1
    out = capsys.readouterr().out
    assert "SURVIVED  comment" in out and "0/1 mutants caught by a page; survived: comment" in out, out


def test_a_page_that_fails_unmutated_catches_nothing(monkeypatch, capsys):
    """A failing page is a catch only if it passes on the unmutated copy; otherwise exit 2."""
    calls = []

    def fails_everywhere(tree, page, timeout=900):
        calls.append((Path(tree).name, page))
        return {"page": page, "status": "fail", "cell": 3, "source": "x = 1", "error": "AssertionError: load"}

    monkeypatch.setattr(mutate, "execute_page", fails_everywhere)
    assert mutate.main(["run", "sin-sign", "--pages", "preface", "-j", "1"]) == 2
    out = capsys.readouterr().out
    assert calls == [("sin-sign", "preface"), ("_baseline", "preface")], calls
    assert "SURVIVED  sin-sign" in out and "fails unmutated too" in out and "failing unmutated: preface" in out, out
