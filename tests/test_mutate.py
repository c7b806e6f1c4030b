"""The mutation table (tools/mutate.py) stays applicable, and the tool tells caught from survived.

The full mutation run (``make mutate``) executes pages against a dozen or more wrong copies
of the package and takes minutes, so CI does not run it. What CI does check:

- every mutant still applies to the package as it is now: each old text occurs exactly
  once, the new text differs, and the mutated file is still valid Python. Without this,
  an edit to the package would silently turn a mutant into a no-op or a crash;
- the names are unique and the pages and test files a mutant names exist;
- the tool itself, end to end on one short page: a real mutant is reported caught
  (exit 0), and a mutant that changes nothing (a comment) is reported survived (exit 1),
  so a tool that reports "caught" for everything cannot pass;
- the same for ``run --test-table`` (TEST_MUTANTS, test files only) on one fast test file.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import mutate  # noqa: E402


@pytest.mark.parametrize("mutant", mutate.MUTANTS + mutate.TEST_MUTANTS, ids=lambda m: m.name)
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
    names = [m.name for m in mutate.MUTANTS + mutate.TEST_MUTANTS]
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"mutant names repeat (across MUTANTS and TEST_MUTANTS): {repeated}"
    pages = mutate._pages()
    assert {"preface", "deriving-rope", "rope-gpu"} <= set(pages), pages  # the page list is not empty or wrong
    for m in mutate.MUTANTS:
        assert m.pages and set(m.pages) <= set(pages), f"{m.name}: pages {m.pages} not among {pages}"
        for rel in m.tests:
            assert (ROOT / rel).is_file(), f"{m.name}: no test file {rel}"
    assert mutate.TEST_MUTANTS, "TEST_MUTANTS is empty"
    for m in mutate.TEST_MUTANTS:  # caught by tests only, so the tests are what must exist
        assert isinstance(m.tests, tuple) and m.tests, f"{m.name}: tests must be a non-empty tuple, got {m.tests!r}"
        assert isinstance(m.pages, tuple) and set(m.pages) <= set(pages), f"{m.name}: pages {m.pages} not among {pages}"
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


def test_the_test_table_reports_a_real_mutant_caught_and_a_comment_survived(tmp_path, capsys):
    """``run --test-table`` with real pytest on one fast file: one mutant caught, one survived, exit 1.

    Each pytest run costs seconds (importing torch), so the unmutated confirmation is skipped
    here; ``test_the_test_table_exit_codes`` checks it with run_tests stubbed.
    """
    real = next(m for m in mutate.MUTANTS if m.name == "reference-freq-off-by-one")
    comment = (("ropebook/_rotation.py", mutate._ROTATE_DOC, mutate._ROTATE_DOC + "    # nothing\n"),)
    table = tmp_path / "table.py"
    table.write_text(f"MUTANTS = [Mutant('off-by-one', {real.why!r}, {real.edits!r}, (), "
                     "('tests/test_reference.py',)),\n"
                     f"           Mutant('comment', 'a comment: changes nothing', {comment!r}, (), "
                     "('tests/test_reference.py',))]\n")
    assert mutate.main(["run", "--test-table", "--table", str(table), "-j", "1", "--no-baseline"]) == 1
    out = capsys.readouterr().out
    assert "CAUGHT    off-by-one: FAILED tests/test_reference.py::" in out, out
    assert "SURVIVED  comment" in out and "1/2 mutants caught by their tests; survived: comment (" in out, out


def test_the_test_table_exit_codes(monkeypatch, capsys):
    """Tests that fail on the mutant only: exit 0; tests that fail unmutated too: no catch, exit 2."""
    calls = []

    def fails_on(where):
        def run_tests(tree, files):
            calls.append((Path(tree).name, files))
            status = "fail" if Path(tree).name in where else "pass"
            return {"status": status, "summary": f"1 {status}ed", "failed": "FAILED t.py::test_x", "seconds": 0.0}
        return run_tests

    def no_pages(tree, page, timeout=900):
        raise AssertionError(f"--test-table ran page {page}")

    mutant = mutate.TEST_MUTANTS[0]
    monkeypatch.setattr(mutate, "execute_page", no_pages)
    monkeypatch.setattr(mutate, "run_tests", fails_on({mutant.name}))
    assert mutate.main(["run", "--test-table", mutant.name, "-j", "1"]) == 0
    out = capsys.readouterr().out
    assert calls == [(mutant.name, mutant.tests), ("_baseline_tests", mutant.tests)], calls
    assert f"CAUGHT    {mutant.name}: FAILED t.py::test_x" in out and "1/1 mutants caught by their tests (" in out, out

    calls.clear()
    monkeypatch.setattr(mutate, "run_tests", fails_on({mutant.name, "_baseline_tests"}))
    assert mutate.main(["run", "--test-table", mutant.name, "-j", "1"]) == 2
    out = capsys.readouterr().out
    assert calls == [(mutant.name, mutant.tests), ("_baseline_tests", mutant.tests)], calls
    assert f"ERROR     {mutant.name}" in out and "fail unmutated too" in out, out
    assert f"0/1 mutants caught by their tests; survived: {mutant.name}; failing unmutated: " in out, out
