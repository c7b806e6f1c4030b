"""What the checker tests (tests/test_checks_*.py) assert of a right and of a wrong answer."""

from __future__ import annotations

import pytest


def assert_right(name: str, checker, answer) -> None:
    """A right answer passes, says so, and ``assert_passed`` (what the solution cells call) does not raise."""
    result = checker(answer)
    assert result.passed, f"{name}: a right answer fails its checker:\n{result.message}"
    assert result.message.startswith("Correct"), result.message
    result.assert_passed()


def assert_wrong(name: str, checker, answer, words) -> None:
    """A wrong answer fails without raising, with a ✗ message that holds each of ``words``."""
    result = checker(answer)  # must not raise
    assert not result.passed, f"{name}: a wrong answer passed:\n{result.message}"
    assert result.message.startswith("✗"), result.message
    missing = [w for w in words if w not in result.message]
    assert not missing, f"{name}: message lacks {missing}:\n{result.message}"
    with pytest.raises(AssertionError):
        result.assert_passed()


def checker_tests(solutions: dict, wrong: dict):
    """The two tests of a checker module, parametrized over its tables: ``{name: (checker, answer)}`` of right
    answers and ``{name: (checker, answer, words)}`` of wrong ones. A module binds them to ``test_*`` names."""

    @pytest.mark.parametrize("name", solutions)
    def test_solution_passes(name):
        assert_right(name, *solutions[name])

    @pytest.mark.parametrize("name", wrong)
    def test_wrong_answer_fails_with_a_clear_message(name):
        assert_wrong(name, *wrong[name])

    return test_solution_passes, test_wrong_answer_fails_with_a_clear_message
