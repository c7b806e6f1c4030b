"""The checker machinery: right answers pass, wrong and malformed ones fail with a message, nothing raises."""

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
import torch

from ropebook.checks import Case, CheckResult, check_function, check_sympy_equal


def reference(x):
    return 2 * x


CASES = [Case((torch.arange(6, dtype=torch.float32).reshape(2, 3),), label="x.shape=(2, 3)")]

# (answer, words the message must contain)
WRONG = [
    (lambda x: 3 * x, ["entries differ", "yours", "expected"]),
    (lambda x: (2 * x).T, ["wrong shape", "(3, 2)", "(2, 3)"]),
    (lambda x: (2 * x).double(), ["wrong dtype", "float64", "float32"]),
    (lambda x: (2 * x).numpy(), ["expected a torch.Tensor", "ndarray"]),
    (lambda x: None, ["returned None"]),
    (lambda x: 1 / 0, ["raised ZeroDivisionError"]),
    (lambda x: (_ for _ in ()).throw(NotImplementedError()), ["not implemented yet"]),
    (lambda x: 2 * x + float("nan"), ["NaN"]),
    (42, ["expected a function", "int"]),
]


def test_right_answer_passes():
    result = check_function("double", lambda x: x + x, reference, CASES)
    assert result.passed and bool(result) and result.message.startswith("Correct")
    assert result.assert_passed() is result


@pytest.mark.parametrize("answer, words", WRONG)
def test_wrong_and_malformed_answers_fail_clearly(answer, words):
    result = check_function("double", answer, reference, CASES)
    assert isinstance(result, CheckResult) and not result.passed
    assert result.message.startswith("✗ double")
    for word in words:
        assert word in result.message, f"{word!r} missing from: {result.message}"
    with pytest.raises(AssertionError, match="double"):
        result.assert_passed()


def test_tuple_results_and_numbers_are_compared_item_by_item():
    cases = [Case((np.array([1.0, 2.0]),))]
    pair = lambda x: (x.sum(), x * 2)  # noqa: E731
    assert check_function("pair", pair, pair, cases).passed
    result = check_function("pair", lambda x: (x.sum() + 1, x * 2), pair, cases)
    assert not result.passed and "item 0" in result.message


def test_a_mutating_answer_is_named_and_cannot_corrupt_the_reference():
    """Rotating the caller's tensor in place is a classic RoPE bug the returned value alone cannot show: the
    answer below returns the right values and passes, with a note that it changed x; the cases stay as they were."""
    def mutate(x):
        x.mul_(2)
        return x

    result = check_function("double", mutate, reference, CASES)  # right: it passes, with a note
    assert result.passed and "changed its input x in place" in result.message, result.message
    assert torch.equal(CASES[0].args[0], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert check_function("double", lambda x: x * 2, reference, CASES).passed  # the same values, made anew


@pytest.mark.parametrize("kind", ["tensor", "array", "keyword"])
def test_the_changed_input_is_named_as_the_reference_names_it(kind):
    def ref(q, positions):
        return q + positions

    def wrong(q, positions):
        out = q + positions
        positions[0] = 5  # then writes into the caller's positions
        return out

    pos = torch.arange(3.0) if kind != "array" else np.arange(3.0)
    q = torch.ones(3) if kind != "array" else np.ones(3)
    case = Case((q,), {"positions": pos}) if kind == "keyword" else Case((q, pos))
    result = check_function("shift", wrong, ref, [case])
    assert result.passed and "changed its input positions in place" in result.message, result.message
    assert "in place" not in check_function("shift", ref, ref, [case]).message


a, b = sp.symbols("a b", real=True)


@pytest.mark.parametrize(
    "answer, passed, words",
    [
        (sp.cos(a) * sp.cos(b) - sp.sin(a) * sp.sin(b), True, ["Correct"]),
        (sp.cos(a) * sp.cos(b), False, ["not identically equal"]),
        (None, False, ["got None"]),
        (torch.ones(2), False, ["expected a sympy expression", "Tensor"]),
        ([1, 2], False, ["expected a sympy expression", "list"]),
        ("cos(a + b)", False, ["expected a sympy expression", "str"]),
        (sp.Matrix([sp.cos(a + b)]), False, ["expected a scalar expression"]),
    ],
)
def test_sympy_checker(answer, passed, words):
    result = check_sympy_equal("angle_sum", answer, sp.cos(a + b))
    assert result.passed is passed
    for word in words:
        assert word in result.message


def test_sympy_checker_matrices():
    R = lambda t: sp.Matrix([[sp.cos(t), -sp.sin(t)], [sp.sin(t), sp.cos(t)]])  # noqa: E731
    assert check_sympy_equal("RaRb", R(a) * R(b), R(a + b)).passed
    assert not check_sympy_equal("RaRb", R(a) * R(b), R(a - b)).passed
    result = check_sympy_equal("RaRb", sp.Matrix([1, 2]), R(a))
    assert not result.passed and "wrong shape" in result.message


# ----------------------------------------------------------------------------- regressions (review of the checkers)


def test_inputs_are_copied_between_the_reference_and_the_answer():
    """A reference that returns its own input, and an answer that zeroes its input after reading it: without
    a copy per call the answer would overwrite the expected value and a right answer would fail."""
    def wipe_after(x):
        out = x.clone()
        x.zero_()
        return out

    cases = [Case((torch.arange(1.0, 4.0),), label="x=[1, 2, 3]")]
    result = check_function("same", wipe_after, lambda x: x, cases)  # the values are right; the wipe is named
    assert result.passed and "changed its input x in place" in result.message, result.message


def test_bool_expected_and_an_array_answer_gives_a_message_not_a_traceback():
    """base_ok-style exercises: returning the array of conditions instead of its reduction crashed _compare
    ("truth value of an array ... is ambiguous")."""
    cases = [Case((np.arange(4.0),), label="x.shape=(4,)")]
    reference = lambda x: bool((x >= 0).all())  # noqa: E731
    for answer in (lambda x: x >= 0, lambda x: torch.from_numpy(x) >= 0):
        result = check_function("all_positive", answer, reference, cases)  # must not raise
        assert not result.passed and "expected True or False, got" in result.message, result.message
    for right in (lambda x: np.bool_(True), lambda x: torch.tensor(True), lambda x: np.all(x >= 0)):
        assert check_function("all_positive", right, reference, cases).passed
    assert "yours False, expected True" in check_function("all_positive", lambda x: False, reference, cases).message


@pytest.mark.parametrize("answer", [Fraction(3, 8), sp.Rational(3, 8), sp.Float(0.375), np.float64(0.375),
                                    torch.tensor(0.375, dtype=torch.float64), np.array(0.375)])
def test_any_kind_of_number_is_a_number(answer):
    """A Fraction or a sympy number was refused with "expected a number, got Rational" (yours 3/8, expected 0.375)."""
    assert check_function("f", lambda: answer, lambda: 0.375, [Case(())]).passed


@pytest.mark.parametrize("answer, words", [("0.375", ["expected a number", "'0.375'"]),
                                           (np.array([0.375]), ["expected a number", "shape=(1,)"]),
                                           (sp.Symbol("r") / 8, ["expected a number", "r/8"])])
def test_what_is_not_one_number_is_named(answer, words):
    result = check_function("f", lambda: answer, lambda: 0.375, [Case(())])
    assert not result.passed and all(w in result.message for w in words), result.message


def test_close_values_are_shown_with_enough_digits_to_differ():
    """The diff printed "yours -0.535669, expected -0.535669" for values 1.9e-7 apart."""
    cases = [Case((torch.tensor([-0.5356690],  dtype=torch.float64),))]
    result = check_function("f", lambda x: x + 2e-7, lambda x: x, cases)
    line = result.message.splitlines()[0]
    yours, expected = line.split("yours ")[1].split(", expected ")
    assert not result.passed and yours != expected, line
    result = check_function("f", lambda: 1073741824 + 1, lambda: 1073741824, [Case(())], rtol=0, atol=0)
    assert "yours 1073741825, expected 1073741824" in result.message, result.message


def test_an_answer_the_comparison_cannot_handle_is_reported():
    class Weird:
        def __eq__(self, other):
            raise RuntimeError("no comparing me")

    result = check_function("f", lambda: Weird(), lambda: "text", [Case(())])
    assert not result.passed and "✗ f" in result.message


@pytest.mark.parametrize("answer, words", [(sp.Eq(a, b), ["an equation"]), ({a}, ["expected a sympy expression", "set"]),
                                           ((a, b), ["expected a sympy expression", "tuple"]), (True, ["expected a sympy expression"])])
def test_sympy_checker_never_raises_on_non_expressions(answer, words):
    """Eq, sets, tuples and booleans raised TypeError from `yours - expected` (check_abel_sum showed the traceback)."""
    result = check_sympy_equal("angle_sum", answer, sp.cos(a + b))
    assert not result.passed and all(w in result.message for w in words), result.message


def test_sympy_checker_takes_matrix_expressions_and_names_what_is_not_a_matrix():
    R = lambda t: sp.Matrix([[sp.cos(t), -sp.sin(t)], [sp.sin(t), sp.cos(t)]])  # noqa: E731
    assert check_sympy_equal("blocks", sp.BlockDiagMatrix(R(a), R(b)), sp.diag(R(a), R(b))).passed
    result = check_sympy_equal("R", [[sp.cos(a), -sp.sin(a)], [sp.sin(a), sp.cos(a)]], R(a))
    assert not result.passed and "expected a 2×2 sympy Matrix, got list" in result.message, result.message


def test_sympy_messages_are_cut_to_a_readable_length():
    """An unsimplified product printed one line of ~3,000 characters: not a short diff."""
    import sympy as sp

    from ropebook.symbolic import rotation_matrix

    a, b = sp.symbols("alpha beta", real=True)
    long = rotation_matrix(a).T * rotation_matrix(b) * rotation_matrix(a) * rotation_matrix(a) * rotation_matrix(b)
    result = check_sympy_equal("M", long, sp.eye(2))
    assert not result.passed
    yours = next(line for line in result.message.splitlines() if line.startswith("  yours:"))
    assert len(str(long)) > 300 and len(yours) <= 320 and "characters in all)" in yours, yours


# ----------------------------------------------------------------------------- forbidden library functions


def test_forbid_catches_every_route_to_the_function_and_restores_it():
    """The code is swapped, so `rb.<name>`, `from ... import <name>` and a call from inside another library
    function are all caught; afterwards (and after an error) the function works again."""
    from ropebook import positions
    from ropebook.checks._core import ForbiddenCall, forbid
    from ropebook.positions import sinusoidal_encoding  # a name bound before the swap

    want = sinusoidal_encoding(3, 4)
    for call in (lambda: sinusoidal_encoding(3, 4), lambda: positions.sinusoidal_encoding(3, 4)):
        with pytest.raises(ForbiddenCall) as caught, forbid([positions.sinusoidal_encoding]):
            call()
        assert caught.value.names == ["sinusoidal_encoding"]
        assert torch.equal(sinusoidal_encoding(3, 4), want)  # restored
    with pytest.raises(KeyError), forbid([positions.sinusoidal_encoding]):
        raise KeyError("an error of the reader's own")
    assert torch.equal(positions.sinusoidal_encoding(3, 4), want)


def test_check_function_names_a_forbidden_call_and_lets_others_through():
    from ropebook import positions

    cases = [Case((3, 4), label="seq_len=3, dim=4")]
    wrapped = lambda seq_len, dim: positions.sinusoidal_encoding(seq_len, dim) + 0  # noqa: E731
    result = check_function("sinusoidal_encoding", wrapped, positions.sinusoidal_encoding, cases,
                            forbidden=(positions.sinusoidal_encoding,))
    assert not result.passed and "calls ropebook's sinusoidal_encoding" in result.message, result.message
    assert check_function("sinusoidal_encoding", wrapped, positions.sinusoidal_encoding, cases).passed  # allowed there
